# shellcheck shell=bash
# Builds StoppableContainer's binaries and images, and installs the chart on the e2e cluster the
# way a user installs it on theirs: CRDs applied server-side, then the rendered chart. Sourced by
# tests/e2e/run.sh, tests/e2e/demo.sh and tests/e2e/bench.sh (after `set -euo pipefail`), with
# tests/lib/common.sh.

# shellcheck source=tests/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/common.sh"
: "${SC_LOG_TAG:=e2e}"

readonly PRODUCT_CHART="$REPO_DIR/charts/stoppablecontainer"
readonly PRODUCT_NAMESPACE=stoppablecontainer-system
readonly PRODUCT_RELEASE=stoppablecontainer
readonly PRODUCT_CLUSTER="$E2E_DIR/cluster.sh"
readonly PRODUCT_IMAGE_DIR="$E2E_WORK_DIR/project-images"
PRODUCT_RELEASE_DIR=""   # set by product_build: where kubectl-sc and the static binaries are
PRODUCT_PYTHON=""        # set by product_build: a python3 that imports helm_python
PRODUCT_EXTRA_PACKAGES=() # more workspace packages product_build builds alongside (sc-bench)
PRODUCT_TIMINGS=()       # "label: N s" of each product_setup step

# Exits unless root; puts cargo on PATH.
product_require_root() {
  require_root "the cluster needs a network namespace, mounts and cgroups"
  export PATH="$HOME/.cargo/bin:$PATH"
}

# Static release binaries (cached by cargo) and the Python that renders the chart; lints the chart.
product_build() {
  PRODUCT_PYTHON="$("$E2E_DIR/lib/helm-python.sh")"
  "$PRODUCT_PYTHON" "$E2E_DIR/lib/chart.py" lint "$PRODUCT_CHART"
  local started=$SECONDS
  PRODUCT_RELEASE_DIR="$("$REPO_DIR/images/build.sh" binaries "${PRODUCT_EXTRA_PACKAGES[@]}" | tail -n 1)"
  log "binaries ready in $((SECONDS - started)) s: $PRODUCT_RELEASE_DIR"
}

# Packs the images from images/*.Containerfile and imports them into the cluster's containerd.
product_import_images() {
  local listing archives=()
  listing="$("$REPO_DIR/images/build.sh" archives "$PRODUCT_IMAGE_DIR")"
  local ref archive
  while read -r ref archive; do
    archives+=("$archive")
    log "image $ref ($(basename "$archive"))"
  done <<<"$listing"
  "$PRODUCT_CLUSTER" import-image "${archives[@]}" 2>&1 | grep -v '^unpacking' >&2 || true
  # The archives are named by content: their names change exactly when an image changes, and
  # the pods' annotation below then rolls them, although the tag stays the same.
  PRODUCT_IMAGES_ID="$(printf '%s\n' "${archives[@]}" | xargs -n1 basename | sha256sum | cut -c1-16)"
}

# product_step LABEL COMMAND...: runs it and records how long it took in PRODUCT_TIMINGS.
product_step() {
  local label="$1" started=$SECONDS
  shift
  log "== $label"
  "$@"
  PRODUCT_TIMINGS+=("$label: $((SECONDS - started)) s")
}

# Everything before the first test: packages, the cached Kubernetes build, our binaries, the
# cluster (reused when it is up), the images and the chart. Then kubectl (the cluster's wrapper)
# and the binaries just built are on PATH, and KUBECONFIG points at the cluster.
product_setup() {
  product_step "packages" "$E2E_DIR/lib/deps.sh"
  product_step "Kubernetes binaries (cached in $CACHE_ROOT)" "$E2E_DIR/lib/k8s-binaries.sh" >/dev/null
  product_step "chart lint and static release binaries" product_build
  product_step "cluster up" "$PRODUCT_CLUSTER" up
  product_step "images" product_import_images
  product_step "chart install" product_install
  eval "$("$PRODUCT_CLUSTER" env)"
  export PATH="$PATH:$PRODUCT_RELEASE_DIR"
}

product_print_timings() {
  local timing
  for timing in "${PRODUCT_TIMINGS[@]}"; do printf '  %s\n' "$timing" >&2; done
}

# Polled: `kubectl wait` fails instead of waiting while a new CRD has no conditions yet.
crd_established() {
  [[ "$(e2e_kubectl get crd "$1" -o 'jsonpath={.status.conditions[?(@.type=="Established")].status}' 2>/dev/null)" == True ]]
}

product_install() {
  log "applying the CRDs (server-side: they are too big for client-side apply)"
  e2e_kubectl apply --server-side --force-conflicts -f "$PRODUCT_CHART/crds/" >/dev/null
  local crd
  for crd in stoppablecontainers stoppablecontainerinstances; do
    wait_until --every 0.5 "CRD $crd to be established" 60 crd_established "$crd.stoppablecontainer.xtlsoft.top"
  done

  local values manifest containerd_socket
  values="$(mktemp)"
  manifest="$E2E_WORK_DIR/stoppablecontainer-chart.yaml"
  # The cluster's containerd listens under its work dir, where no default finds it.
  containerd_socket="$("$PRODUCT_CLUSTER" env | sed -n 's/^export SC_E2E_CONTAINERD_SOCK=//p')"
  cat >"$values" <<EOF
node:
  runtimeEndpoint: unix://$containerd_socket
  podAnnotations:
    stoppablecontainer.xtlsoft.top/e2e-images: "${PRODUCT_IMAGES_ID:-none}"
operator:
  podAnnotations:
    stoppablecontainer.xtlsoft.top/e2e-images: "${PRODUCT_IMAGES_ID:-none}"
EOF
  "$PRODUCT_PYTHON" "$E2E_DIR/lib/chart.py" render "$PRODUCT_CHART" \
    --name "$PRODUCT_RELEASE" --namespace "$PRODUCT_NAMESPACE" \
    -f "$E2E_DIR/values-e2e.yaml" -f "$values" --output "$manifest"
  rm -f "$values"
  log "installing the chart ($manifest)"
  e2e_kubectl apply -f "$manifest" >/dev/null
  product_wait_ready
}

csi_driver_registered() {
  e2e_kubectl get csinode -o jsonpath='{.items[*].spec.drivers[*].name}' 2>/dev/null |
    grep -qw rootfs.stoppablecontainer.xtlsoft.top
}

product_wait_ready() {
  log "waiting for the node plugin and the operator"
  e2e_kubectl -n "$PRODUCT_NAMESPACE" rollout status "daemonset/$PRODUCT_RELEASE-node" --timeout=180s >&2
  e2e_kubectl -n "$PRODUCT_NAMESPACE" rollout status "deployment/$PRODUCT_RELEASE-operator" --timeout=180s >&2
  wait_until "kubelet to register the CSI driver (see: kubectl get csinode -o yaml)" 90 csi_driver_registered
  log "StoppableContainer is installed; kubelet registered the CSI driver"
}

# Everything that explains a failure: the product's logs, kubelet's view, pods and events.
product_diagnostics() {
  local namespaces=("$@")
  {
    printf '\n===== pods (all namespaces) =====\n'
    e2e_kubectl get pods -A -o wide 2>&1
    printf '\n===== StoppableContainers =====\n'
    e2e_kubectl get stoppablecontainers -A -o wide 2>&1
    local namespace
    for namespace in "${namespaces[@]}"; do
      e2e_kubectl get namespace "$namespace" >/dev/null 2>&1 || continue
      printf '\n===== %s: StoppableContainers (yaml) =====\n' "$namespace"
      e2e_kubectl -n "$namespace" get stoppablecontainers -o yaml 2>&1 | grep -v '^\s*f:' | tail -n 120
      printf '\n===== %s: pods (describe) =====\n' "$namespace"
      e2e_kubectl -n "$namespace" describe pods 2>&1 | tail -n 150
      printf '\n===== %s: events =====\n' "$namespace"
      e2e_kubectl -n "$namespace" get events --sort-by=.lastTimestamp 2>&1 | tail -n 40
    done
    printf '\n===== operator log =====\n'
    e2e_kubectl -n "$PRODUCT_NAMESPACE" logs "deployment/$PRODUCT_RELEASE-operator" --tail=80 2>&1
    printf '\n===== node plugin log =====\n'
    e2e_kubectl -n "$PRODUCT_NAMESPACE" logs "daemonset/$PRODUCT_RELEASE-node" --tail=120 2>&1
    printf '\n===== node plugin log (previous container) =====\n'
    e2e_kubectl -n "$PRODUCT_NAMESPACE" logs "daemonset/$PRODUCT_RELEASE-node" --previous --tail=40 2>&1
    printf '\n===== kubelet log (CSI, volumes, errors) =====\n'
    "$PRODUCT_CLUSTER" logs kubelet 3000 2>&1 | grep -iE 'csi|volume|mount|stoppable|rootfs' |
      grep -v 'Loaded volume plugin' | tail -n 60
  } | grep -v 'Warning: .*version' >&2
}
