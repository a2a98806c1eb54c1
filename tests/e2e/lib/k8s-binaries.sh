#!/usr/bin/env bash
# Builds the Kubernetes 1.20.2 server binaries from Debian bookworm's `kubernetes` source
# package into a cache outside the checkout, keyed by version:
#   ${SC_CACHE_DIR:-/var/cache/stoppablecontainer}/kubernetes-1.20.2/bin/
# Prints that bin directory on stdout when done. Skips everything when it is already there.
#
# Safe after an interrupted run: the source is unpacked and built in a fresh temporary tree
# and bin/ only appears by rename once every binary exists; a lock serialises parallel runs.
set -euo pipefail
# shellcheck source=tests/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/common.sh"
: "${SC_LOG_TAG:=k8s-binaries}"

readonly K8S_COMPONENTS=(kube-apiserver kubelet kube-controller-manager kube-scheduler kube-proxy)
readonly K8S_CACHE="${K8S_BIN_DIR%/bin}"
readonly K8S_BIN="$K8S_BIN_DIR"
# Bump when the build recipe changes, so cached binaries of an older recipe are rebuilt.
# 2: vendored reflect2 1.0.1 replaced by 1.0.2 (1.0.1 crashes under Go >= 1.18).
readonly K8S_BUILD_REVISION=2
# Kubernetes 1.20 vendors github.com/modern-go/reflect2 v1.0.1, whose map iteration faults under
# Go 1.18+ ("unexpected fault address" in mapiterinit): kube-apiserver dies as soon as it encodes
# certain maps (seen on the first StoppableContainer create). Debian's 1.0.2 fixes it.
readonly REFLECT2_SOURCE=/usr/share/gocode/src/github.com/modern-go/reflect2
readonly GO_ROOT_BIN=/usr/lib/go-1.19/bin

binaries_complete() {
  local component
  for component in "${K8S_COMPONENTS[@]}"; do
    [[ -x "$K8S_BIN/$component" ]] || return 1
  done
  [[ "$(cat "$K8S_BIN/.build-revision" 2>/dev/null)" == "$K8S_BUILD_REVISION" ]]
}

# Replaces vendored packages that do not work with the Go we build with (see REFLECT2_SOURCE).
patch_vendor() {
  local vendored="$1/vendor/github.com/modern-go/reflect2"
  [[ -f "$REFLECT2_SOURCE/go_above_118.go" ]] ||
    { echo "k8s-binaries.sh: $REFLECT2_SOURCE is missing; apt-get install golang-github-modern-go-reflect2-dev" >&2; return 1; }
  [[ -d "$vendored" ]] || { echo "k8s-binaries.sh: $vendored is not in the source tree" >&2; return 1; }
  log "replacing vendored reflect2 1.0.1 with Debian's $(basename "$(dirname "$REFLECT2_SOURCE")")/reflect2 (Go 1.18+ fix)"
  rm -rf "$vendored"
  mkdir -p "$vendored"
  # Package sources only: a vendored module carries no go.mod and no tests.
  find "$REFLECT2_SOURCE" -maxdepth 1 -type f \( -name '*.go' -o -name '*.s' -o -name LICENSE \) \
    ! -name '*_test.go' -exec cp {} "$vendored/" \;
}

# Downloads the source package once into $K8S_CACHE/src (kept: it is the slow download).
fetch_source() {
  local src="$K8S_CACHE/src"
  if compgen -G "$src/kubernetes_*${K8S_VERSION}.orig.tar.gz" >/dev/null; then
    return 0
  fi
  local download="$K8S_CACHE/src.partial"
  rm -rf "$download"
  mkdir -p "$download"
  # apt downloads as the unprivileged _apt user when it can write the directory.
  chown _apt "$download" 2>/dev/null || true
  log "downloading the kubernetes source package (bookworm, $K8S_VERSION)"
  (cd "$download" && apt-get source --download-only -qq "kubernetes/bookworm" </dev/null)
  if ! compgen -G "$download/kubernetes_*${K8S_VERSION}.orig.tar.gz" >/dev/null; then
    echo "k8s-binaries.sh: bookworm's kubernetes source package is not version $K8S_VERSION" \
         "(got: $(ls "$download")); update K8S_VERSION in tests/lib/common.sh and the docs" >&2
    return 1
  fi
  rm -rf "$src"
  mv "$download" "$src"
}

build() {
  local work
  work="$(mktemp -d "$K8S_CACHE/build.XXXXXX")"
  # Leave no half-built tree behind whatever happens (the Go build cache stays, it is safe).
  BUILD_WORK_DIR="$work"
  trap 'rm -rf "$BUILD_WORK_DIR"' EXIT

  local orig
  orig="$(compgen -G "$K8S_CACHE/src/kubernetes_*${K8S_VERSION}.orig.tar.gz" | head -n1)"
  log "unpacking $(basename "$orig")"
  mkdir -p "$work/tree"
  tar -xzf "$orig" -C "$work/tree" --strip-components=1
  patch_vendor "$work/tree"

  # The Kubernetes build insists on living at $GOPATH/src/k8s.io/kubernetes.
  mkdir -p "$work/gopath/src/k8s.io"
  ln -s "$work/tree" "$work/gopath/src/k8s.io/kubernetes"

  local targets=() component
  for component in "${K8S_COMPONENTS[@]}"; do targets+=("cmd/$component"); done

  log "building ${K8S_COMPONENTS[*]} (several minutes; log: $K8S_CACHE/build.log)"
  local started=$SECONDS
  if ! (
    cd "$work/gopath/src/k8s.io/kubernetes"
    export PATH="$GO_ROOT_BIN:$PATH" GOPATH="$work/gopath" CGO_ENABLED=0 \
      KUBE_GIT_VERSION="v$K8S_VERSION" KUBE_GIT_TREE_STATE=clean
    make WHAT="${targets[*]}"
  ) >"$K8S_CACHE/build.log" 2>&1; then
    tail -n 40 "$K8S_CACHE/build.log" >&2
    echo "k8s-binaries.sh: the Kubernetes build failed; full log in $K8S_CACHE/build.log" >&2
    return 1
  fi
  log "build took $((SECONDS - started)) s"

  mkdir -p "$work/bin"
  for component in "${K8S_COMPONENTS[@]}"; do
    local built
    built="$(find "$work/tree/_output" -type f -name "$component" -perm -u+x | head -n1)"
    if [[ -z "$built" ]]; then
      echo "k8s-binaries.sh: $component was not produced by the build; see $K8S_CACHE/build.log" >&2
      return 1
    fi
    cp "$built" "$work/bin/$component"
  done
  echo "$K8S_BUILD_REVISION" >"$work/bin/.build-revision"
  rm -rf "$K8S_BIN"
  mv "$work/bin" "$K8S_BIN"
}

main() {
  if binaries_complete; then
    echo "$K8S_BIN"
    return 0
  fi
  require_root "it installs packages and writes $CACHE_ROOT"
  mkdir -p "$K8S_CACHE"
  exec 9>"$K8S_CACHE/.lock"
  flock 9
  # Another run may have finished while we waited for the lock.
  if binaries_complete; then
    echo "$K8S_BIN"
    return 0
  fi
  "$E2E_DIR/lib/deps.sh" --deb-src >&2
  # Temp trees of an interrupted earlier run.
  rm -rf "$K8S_CACHE"/build.*/
  fetch_source
  build
  binaries_complete
  echo "$K8S_BIN"
}

main "$@"
