#!/usr/bin/env bash
# StoppableContainer end to end, narrated, on a local single-node Kubernetes cluster (Debian
# bookworm, root). It installs what it needs, builds everything, starts the cluster, installs the
# chart, then creates a StoppableContainer with `kubectl sc`, writes a file and installs a program
# in it, stops it, starts it again and shows that both are still there. The cluster stays up
# afterwards so that you can try `kubectl sc` yourself.
#
# Usage: tests/e2e/demo.sh          run the demo (again: it reuses a running cluster)
#        tests/e2e/demo.sh --down   tear the cluster down (same as tests/e2e/cluster.sh down)
set -euo pipefail

# shellcheck source=tests/e2e/lib/product.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/product.sh"

readonly DEMO_NAMESPACE=demo
readonly DEMO_NAME=dev

if [[ -t 1 ]]; then
  BOLD=$'\e[1m' DIM=$'\e[2m' RESET=$'\e[0m'
else
  BOLD="" DIM="" RESET=""
fi

narrate() { printf '\n%s== %s%s\n' "$BOLD" "$*" "$RESET"; }
# Shows a command the way a user would type it, then runs it.
show() {
  printf '%s$ %s%s\n' "$DIM" "$*" "$RESET"
  "$@"
}

on_failure() {
  local status=$?
  ((status == 0)) && return 0
  printf '\n%sThe demo failed (exit %s).%s What the components said:\n' "$BOLD" "$status" "$RESET" >&2
  if [[ -d "$E2E_WORK_DIR/run" ]]; then
    product_diagnostics "$DEMO_NAMESPACE" || true
  fi
  printf '\nThe cluster is left up for a look. Tear it down with: %s --down\n' "$0" >&2
}

# show_changes UPPER: what the demo wrote, as the node keeps it.
show_changes() { show ls "$1/root" "$1/usr/local/bin"; }

main() {
  if [[ "${1:-}" == --down ]]; then
    exec "$PRODUCT_CLUSTER" down
  fi
  if [[ $# -gt 0 ]]; then
    print_usage >&2
    exit 2
  fi
  product_require_root
  trap on_failure EXIT

  narrate "Setting up: packages, Kubernetes 1.20.2 (built once, then cached), our binaries and images"
  "$E2E_DIR/lib/deps.sh"
  "$E2E_DIR/lib/k8s-binaries.sh" >/dev/null
  product_build
  narrate "Starting a single-node Kubernetes cluster in its own network namespace"
  "$PRODUCT_CLUSTER" up 2>&1 | grep -v '^  \|^The e2e cluster\|^or$\|^Images:\|^Logs:' >&2 || true
  "$PRODUCT_CLUSTER" status >/dev/null || { echo "demo.sh: the cluster did not come up" >&2; exit 1; }
  narrate "Installing StoppableContainer: CRDs, operator, CSI node plugin (the Helm chart, rendered)"
  product_import_images
  product_install
  eval "$("$PRODUCT_CLUSTER" env)"
  export PATH="$PATH:$PRODUCT_RELEASE_DIR"
  show kubectl -n "$PRODUCT_NAMESPACE" get pods

  kubectl delete namespace "$DEMO_NAMESPACE" --ignore-not-found --wait=true >/dev/null 2>&1
  kubectl create namespace "$DEMO_NAMESPACE" >/dev/null 2>&1

  narrate "Create a StoppableContainer from a Debian image (it plays ubuntu:22.04 here) and start it"
  show kubectl sc -n "$DEMO_NAMESPACE" create "$DEMO_NAME" --image sc-test/debian:bookworm --running=false -- sleep infinity
  show kubectl sc -n "$DEMO_NAMESPACE" start "$DEMO_NAME" --wait --timeout 4m
  show kubectl sc -n "$DEMO_NAMESPACE" list

  narrate "Write a file, add a user and install a program inside it"
  # shellcheck disable=SC2016  # expanded inside the container
  show kubectl sc -n "$DEMO_NAMESPACE" exec "$DEMO_NAME" -- sh -c 'echo "written at $(date -u +%H:%M:%S) before the stop" > /root/hello.txt'
  show kubectl sc -n "$DEMO_NAMESPACE" exec "$DEMO_NAME" -- useradd --create-home alice
  show kubectl cp /bin/busybox "$DEMO_NAMESPACE/$DEMO_NAME:/usr/local/bin/busybox"
  show kubectl sc -n "$DEMO_NAMESPACE" exec "$DEMO_NAME" -- chmod +x /usr/local/bin/busybox
  show kubectl sc -n "$DEMO_NAMESPACE" exec "$DEMO_NAME" -- busybox uname -a

  narrate "Stop it: the pods go away, the root filesystem stays on the node"
  show kubectl sc -n "$DEMO_NAMESPACE" stop "$DEMO_NAME" --wait
  show kubectl -n "$DEMO_NAMESPACE" get pods
  local uid
  uid="$(kubectl -n "$DEMO_NAMESPACE" get stoppablecontainer "$DEMO_NAME" -o 'jsonpath={.metadata.uid}' 2>/dev/null)"
  # The changes are the overlay's upper layer, on the SC's own filesystem image on the node.
  with_kept_upper "$DEMO_NAMESPACE" "$DEMO_NAME" "$uid" show_changes

  narrate "Start it again: a fresh pod, the same root filesystem"
  show kubectl sc -n "$DEMO_NAMESPACE" start "$DEMO_NAME" --wait --timeout 4m
  show kubectl sc -n "$DEMO_NAMESPACE" exec "$DEMO_NAME" -- cat /root/hello.txt
  show kubectl sc -n "$DEMO_NAMESPACE" exec "$DEMO_NAME" -- id alice
  show kubectl sc -n "$DEMO_NAMESPACE" exec "$DEMO_NAME" -- busybox echo "busybox is still installed"
  show kubectl sc -n "$DEMO_NAMESPACE" status "$DEMO_NAME"

  trap - EXIT
  cat <<EOF

${BOLD}Done. The cluster is still up: try it yourself.${RESET}
  eval "\$($PRODUCT_CLUSTER env)"                    # KUBECONFIG + kubectl for this cluster
  export PATH="\$PATH:$PRODUCT_RELEASE_DIR"   # kubectl-sc
  kubectl sc -n $DEMO_NAMESPACE list
  kubectl sc -n $DEMO_NAMESPACE exec $DEMO_NAME -it -- bash
  kubectl sc -n $DEMO_NAMESPACE stop $DEMO_NAME --wait; kubectl sc -n $DEMO_NAMESPACE start $DEMO_NAME --wait
  kubectl sc create mine --image sc-test/busybox:1 -- sleep 1000000
Images in the cluster: sc-test/debian:bookworm, sc-test/busybox:1; its own registry (docker.io's mirror):
  $PRODUCT_CLUSTER push-image IMAGE.tar docker.io/library/NAME:TAG
Tear it down: $0 --down
EOF
}

main "$@"
