#!/usr/bin/env bash
# StoppableContainer's cluster benchmark, in one command, on a fresh Debian bookworm machine
# (root): sets up exactly what tests/e2e/run.sh sets up (packages, cached Kubernetes 1.20.2 build,
# single-node cluster, images, chart), then runs sc-bench (tests/bench) on the node. Every figure
# is measured side by side with a plain pod of the same image in the same run and printed as a
# ratio: resume, diff-size independence, stop, first start, I/O, density and memory, churn,
# resume on a claim (spec.storage), start with no provider left.
#
# Usage: tests/e2e/bench.sh [SC_BENCH_OPTION...]
#        e.g. tests/e2e/bench.sh --sections resume,io --rounds 5
#        (every option: cargo run -p sc-bench -- --help)
# Environment:
#   SC_E2E_KEEP=1        leave the cluster up afterwards (tear down: tests/e2e/cluster.sh down)
#   SC_BENCH_REPORT=F    also write the report to F (default: $SC_E2E_DIR/bench-<time>.txt)
# Takes about 40 minutes with the defaults on 2 cores. Exits 1 when the product misbehaved
# (churn errors, leaked mounts, lost data), 2 when the benchmark could not run; a missed speed
# or memory target is printed as MISSED, not turned into a failure.
set -euo pipefail

# shellcheck source=tests/e2e/lib/product.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/product.sh"

readonly KEEP="${SC_E2E_KEEP:-0}"

finish() {
  local status=$?
  if [[ "$KEEP" == 1 ]]; then
    log "SC_E2E_KEEP=1: the cluster stays up; tear it down with: $PRODUCT_CLUSTER down"
  else
    "$PRODUCT_CLUSTER" down >&2 || log "warning: cluster.sh down reported a problem"
  fi
  product_print_timings
  exit "$status"
}

main() {
  if [[ "${1:-}" == -h || "${1:-}" == --help ]]; then
    print_usage
    return 0
  fi
  product_require_root
  trap finish EXIT
  PRODUCT_EXTRA_PACKAGES=(sc-bench)
  product_setup
  local report="${SC_BENCH_REPORT:-$E2E_WORK_DIR/bench-$(date +%Y%m%d-%H%M%S).txt}"
  log "running sc-bench; the report is also written to $report"
  # In the cluster's network namespace (the API server is only reachable there), on the node's
  # mount and PID namespaces (it reads /proc and the mount table as kubelet sees them).
  local started=$SECONDS status=0
  "$PRODUCT_CLUSTER" netns "$PRODUCT_RELEASE_DIR/sc-bench" --kubectl "$(command -v kubectl)" "$@" | tee "$report" || status=$?
  PRODUCT_TIMINGS+=("benchmark: $((SECONDS - started)) s")
  log "report: $report"
  return "$status"
}

main "$@"
