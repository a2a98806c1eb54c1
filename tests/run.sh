#!/usr/bin/env bash
# The project's test command. Run as root on Debian bookworm; installs what it needs.
#
#   tests/run.sh            lint (rustfmt, clippy, shellcheck), the product against current
#                           Kubernetes schemas, unit tests, root integration tests (real mounts,
#                           real processes, real gRPC), then the end-to-end suite on a local
#                           Kubernetes cluster
#   tests/run.sh --no-e2e   everything but the end-to-end suite
set -euo pipefail
# shellcheck source=tests/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$REPO_DIR"

run_e2e=1
for arg in "$@"; do
  case "$arg" in
    --no-e2e) run_e2e=0 ;;
    -h|--help) print_usage; exit 0 ;;
    *) echo "tests/run.sh: unknown argument $arg (try --help)" >&2; exit 2 ;;
  esac
done
require_root "the integration tests mount filesystems and enter namespaces"
export PATH="$HOME/.cargo/bin:$PATH"

step() { printf '\n=== %s\n' "$*"; }

step "packages"
tests/e2e/lib/deps.sh --deb-src

# The operator's reconcile tests run a real kube-apiserver 1.20 (built once, cached by version
# outside the checkout); the e2e suite runs the whole cluster from the same binaries.
step "Kubernetes $K8S_VERSION binaries"
SC_K8S_BIN="$(tests/e2e/lib/k8s-binaries.sh)"
export SC_K8S_BIN

# The code's shape is checked before anything runs, so a red CI names the cheapest fix first.
step "lint (cargo fmt --check, cargo clippy -D warnings, shellcheck)"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
git ls-files -z '*.sh' .ci/run | xargs -0 shellcheck -x

# The live cluster is 1.20; the chart, the CRDs and the pods the operator makes must also be
# valid on every current release.
step "the chart, the CRDs and the built pods against Kubernetes 1.25+ schemas (tests/validate/schemas.sh)"
tests/validate/schemas.sh

step "unit and root integration tests (cargo test --workspace)"
cargo test --workspace --locked

if [[ "$run_e2e" -eq 1 && -x tests/e2e/run.sh ]]; then
  step "end-to-end suite (tests/e2e/run.sh)"
  tests/e2e/run.sh
fi
