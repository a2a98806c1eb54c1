#!/usr/bin/env bash
# StoppableContainer's end-to-end suite, in one command, on a fresh Debian bookworm machine (root):
# installs the packages, builds (or reuses the cached) Kubernetes 1.20.2 binaries, starts the
# single-node cluster (tests/e2e/cluster.sh), builds the static binaries and the images and
# imports them, installs the chart, runs the scenarios and tears everything down, also when
# something fails, after printing the logs that explain it.
#
# Usage: tests/e2e/run.sh [SCENARIO_NUMBER...]     e.g. tests/e2e/run.sh 6 (runs 1, which 6 needs, then 6)
# With no number it runs the SCENARIOS table; a pending scenario (PENDING_SCENARIOS) runs only when named.
# Environment: SC_E2E_KEEP=1 leaves the cluster up afterwards (tear down: tests/e2e/cluster.sh down).
# Ends with "e2e: N passed, N failed"; exits non-zero unless every scenario passed.
set -euo pipefail

# shellcheck source=tests/e2e/lib/product.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/product.sh"
# shellcheck source=tests/e2e/lib/scenarios.sh
source "$E2E_DIR/lib/scenarios.sh"
# shellcheck source=tests/e2e/lib/scenarios-storage.sh
source "$E2E_DIR/lib/scenarios-storage.sh"
# shellcheck source=tests/e2e/lib/scenarios-layer.sh
source "$E2E_DIR/lib/scenarios-layer.sh"

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

# scenarios_to_run ID...: the entries to run, in table order (SCENARIOS, then PENDING_SCENARIOS):
# the ones named and, before them, every one they need (transitively); all of SCENARIOS when none
# is named. Fails on an unknown ID, and on a table whose scenario needs one that does not run
# before it.
scenarios_to_run() {
  local -A wanted=() needs_of=() pending=()
  local entry id needs need rest changed=1 ids=()
  for entry in "${PENDING_SCENARIOS[@]}"; do pending[${entry%%|*}]=1; done
  for entry in "${SCENARIOS[@]}" "${PENDING_SCENARIOS[@]}"; do
    IFS='|' read -r id needs rest <<<"$entry"
    for need in $needs; do
      [[ -n "${needs_of[$need]+listed}" ]] || die "SCENARIOS: scenario $id needs $need, which is not listed before it"
    done
    needs_of[$id]="$needs"
    ids+=("$id")
  done
  for id in "$@"; do
    [[ -n "${needs_of[$id]+listed}" ]] || die "no scenario $id; the scenarios are: ${ids[*]}"
    wanted[$id]=1
  done
  while ((changed)); do
    changed=0
    for id in "${!wanted[@]}"; do
      for need in ${needs_of[$id]}; do
        [[ -n "${wanted[$need]:-}" ]] || { wanted[$need]=1; changed=1; }
      done
    done
  done
  for entry in "${SCENARIOS[@]}" "${PENDING_SCENARIOS[@]}"; do
    id="${entry%%|*}"
    if { (($# == 0)) && [[ -z "${pending[$id]:-}" ]]; } || [[ -n "${wanted[$id]:-}" ]]; then
      printf '%s\n' "$entry"
    fi
  done
}

main() {
  local selected=()
  mapfile -t selected < <(scenarios_to_run "$@")
  ((${#selected[@]} > 0)) || exit 2
  product_require_root
  trap finish EXIT
  product_setup
  setup_done=1

  local entry id function title started=$SECONDS
  for entry in "${selected[@]}"; do
    IFS='|' read -r id _ function title <<<"$entry"
    run_scenario "$id $title" "$function"
  done
  PRODUCT_TIMINGS+=("scenarios: $((SECONDS - started)) s")
}

main "$@"
