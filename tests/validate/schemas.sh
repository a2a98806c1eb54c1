#!/usr/bin/env bash
# Checks that the product runs on current Kubernetes, not only on the 1.20 of the e2e cluster:
# validates strictly, against the published schemas of every minor release from 1.25 that PyPI's
# kubernetes-validate ships (installed once into a venv in the build cache),
#   - the rendered chart, with its default values and with the e2e values (tests/e2e/lib/chart.py render),
#   - the CRDs (charts/stoppablecontainer/crds/, as CustomResourceDefinition objects),
#   - every pod the operator's builders make of the fixtures (operator/tests/builders.rs writes
#     them into SC_DUMP_PODS_DIR).
# StoppableContainer and StoppableContainerInstance objects have no upstream schema: not checked
# here (their CRDs' own schemas are tested by the apiserver tests and the e2e suite).
#
# Usage: tests/validate/schemas.sh   (about 15 s once built; needs cargo, python3 and PyPI once)
set -euo pipefail
# shellcheck source=tests/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
: "${SC_LOG_TAG:=validate}"

readonly CHART="$REPO_DIR/charts/stoppablecontainer"
readonly MIN_VERSION=1.25

main() {
  [[ $# -eq 0 ]] || { print_usage >&2; exit 2; }
  local started=$SECONDS work helm_python validate_python output
  work="$(mktemp -d)"
  # shellcheck disable=SC2064  # the path is fixed now
  trap "rm -rf '$work'" EXIT
  helm_python="$("$E2E_DIR/lib/helm-python.sh")"
  validate_python="$("$REPO_DIR/tests/lib/python-venv.sh" kubernetes-validate-venv kubernetes-validate kubernetes_validate)"

  log "the validator's own tests (it must reject what Kubernetes rejects)"
  if ! output="$("$validate_python" "$REPO_DIR/tests/validate/test_validate.py" 2>&1)"; then
    printf '%s\n' "$output" >&2
    die "tests/validate/test_validate.py failed (above): until it passes, a green validation means nothing"
  fi

  log "rendering the chart (default values, e2e values)"
  "$helm_python" "$E2E_DIR/lib/chart.py" render "$CHART" --namespace stoppablecontainer-system \
    --output "$work/chart-default-values.yaml"
  "$helm_python" "$E2E_DIR/lib/chart.py" render "$CHART" --namespace stoppablecontainer-system \
    -f "$E2E_DIR/values-e2e.yaml" --output "$work/chart-e2e-values.yaml"

  log "the pods the operator's builders make of every fixture (cargo test -p operator --test builders)"
  SC_DUMP_PODS_DIR="$work/pods" cargo test --locked --quiet -p operator --test builders >&2 ||
    die "the operator's builder tests failed (above): fix them first; they write the pods validated here"
  compgen -G "$work/pods/*.json" >/dev/null ||
    die "operator/tests/builders.rs wrote no pod into SC_DUMP_PODS_DIR ($work/pods)"

  log "validating against Kubernetes $MIN_VERSION and later (kubernetes-validate, strict)"
  if ! "$validate_python" "$REPO_DIR/tests/validate/validate.py" --min-version "$MIN_VERSION" \
    "$work/chart-default-values.yaml" "$work/chart-e2e-values.yaml" "$CHART/crds" "$work/pods"; then
    die "objects the product installs or creates are not valid on current Kubernetes (each FAIL line above names" \
      "the object, the release and the field): fix the chart template, the CRD generator or the pod builder" \
      "(the pods: operator/tests/fixtures/<fixture> through build() in operator/tests/fixture_pods)"
  fi
  log "valid on every release from $MIN_VERSION ($((SECONDS - started)) s)"
}

main "$@"
