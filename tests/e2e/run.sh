#!/usr/bin/env bash
# StoppableContainer's end-to-end suite, in one command, on a fresh Debian bookworm machine (root):
# installs the packages, builds (or reuses the cached) Kubernetes 1.20.2 binaries, starts the
# single-node cluster (tests/e2e/cluster.sh), builds the static binaries and the images and
# imports them, installs the chart, runs the scenarios and tears everything down, also when
# something fails, after printing the logs that explain it.
#
# Usage: tests/e2e/run.sh [SCENARIO_NUMBER...]     e.g. tests/e2e/run.sh 1 6
# Environment: SC_E2E_KEEP=1 leaves the cluster up afterwards (tear down: tests/e2e/cluster.sh down).
# Ends with "e2e: N passed, N failed"; exits non-zero unless every scenario passed.
set -euo pipefail

# shellcheck source=tests/e2e/lib/product.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/product.sh"
# shellcheck source=tests/e2e/lib/scenarios.sh
source "$E2E_DIR/lib/scenarios.sh"

readonly KEEP="${SC_E2E_KEEP:-0}"
passed=0
failed=0
failed_names=()
setup_done=0

run_scenario() {
  local title="$1" function="$2" started=$SECONDS status
  printf '\n=== scenario %s\n' "$title" >&2
  set +e
  (
    set -eEuo pipefail
    trap 'printf "  FAIL: line %s: %s (exit %s)\n" "$LINENO" "$BASH_COMMAND" "$?" >&2' ERR
    "$function"
  )
  status=$?
  set -e
  if ((status == 0)); then
    passed=$((passed + 1))
    printf '=== PASS %s (%s s)\n' "$title" "$((SECONDS - started))" >&2
  else
    failed=$((failed + 1))
    failed_names+=("$title")
    printf '=== FAIL %s (%s s)\n' "$title" "$((SECONDS - started))" >&2
  fi
}

finish() {
  local status=$?
  if ((setup_done == 0)); then
    log "setup failed (exit $status) before the scenarios could run"
    failed=$((failed + 1))
  fi
  if ((failed > 0)) && [[ -d "$E2E_WORK_DIR/run" ]]; then
    log "collecting diagnostics"
    product_diagnostics "${SCENARIO_NAMESPACES[@]}" || true
  fi
  if [[ "$KEEP" == 1 ]]; then
    log "SC_E2E_KEEP=1: the cluster stays up. Use it:  eval \"\$($PRODUCT_CLUSTER env)\"; kubectl get pods -A"
    log "tear it down with: $PRODUCT_CLUSTER down"
  else
    "$PRODUCT_CLUSTER" down >&2 || log "warning: cluster.sh down reported a problem"
  fi
  printf '\n' >&2
  product_print_timings
  local name
  for name in "${failed_names[@]}"; do printf '  failed: %s\n' "$name" >&2; done
  echo "e2e: $passed passed, $failed failed"
  if ((failed > 0 || status != 0)); then
    exit 1
  fi
}

selected() {
  # selected TITLE: true when no scenario numbers were given, or the title's number is one of them.
  ((${#SELECTION[@]} == 0)) && return 0
  local number="${1%% *}" wanted
  for wanted in "${SELECTION[@]}"; do
    [[ "$wanted" == "$number" ]] && return 0
  done
  return 1
}

main() {
  SELECTION=("$@")
  product_require_root
  trap finish EXIT
  product_setup
  setup_done=1

  local entry title function started=$SECONDS
  for entry in "${SCENARIOS[@]}"; do
    title="${entry%%|*}"
    function="${entry##*|}"
    selected "$title" || continue
    run_scenario "$title" "$function"
  done
  PRODUCT_TIMINGS+=("scenarios: $((SECONDS - started)) s")
}

main "$@"
