#!/usr/bin/env bash
# The project's test command. Run as root on Debian bookworm; installs what it needs.
#
#   tests/run.sh            lint (rustfmt, clippy, shellcheck), unit tests, root integration tests
#                           (real mounts, real processes, real gRPC), then the end-to-end suite on
#                           a local Kubernetes cluster
#   tests/run.sh --no-e2e   everything but the end-to-end suite
set -euo pipefail
cd "$(dirname "$0")/.."

run_e2e=1
for arg in "$@"; do
  case "$arg" in
    --no-e2e) run_e2e=0 ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "tests/run.sh: unknown argument $arg (try --help)" >&2; exit 2 ;;
  esac
done
if [[ "$(id -u)" -ne 0 ]]; then
  echo "tests/run.sh: run as root: the integration tests mount filesystems and enter namespaces" >&2
  exit 1
fi
export PATH="$HOME/.cargo/bin:$PATH"

step() { printf '\n=== %s\n' "$*"; }

step "packages"
tests/e2e/lib/deps.sh --deb-src

# The operator's reconcile tests run a real kube-apiserver 1.20 (built once, cached by version
# outside the checkout); the e2e suite runs the whole cluster from the same binaries.
step "Kubernetes 1.20 binaries"
SC_K8S_BIN="$(tests/e2e/lib/k8s-binaries.sh)"
export SC_K8S_BIN

# The code's shape is checked before anything runs, so a red CI names the cheapest fix first.
step "lint (cargo fmt --check, cargo clippy -D warnings, shellcheck)"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
git ls-files -z '*.sh' .ci/run | xargs -0 shellcheck -x

step "unit and root integration tests (cargo test --workspace)"
cargo test --workspace --locked

if [[ "$run_e2e" -eq 1 && -x tests/e2e/run.sh ]]; then
  step "end-to-end suite (tests/e2e/run.sh)"
  tests/e2e/run.sh
fi
