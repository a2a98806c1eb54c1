#!/usr/bin/env bash
# Builds StoppableContainer's container images: one layout (images/*.Containerfile: FROM scratch
# plus one static binary), two ways to pack it.
#
# Usage: images/build.sh COMMAND
#   binaries [PKG...]  static release binaries (sc-csi-driver, sc-operator, sc-exec, kubectl-sc),
#                      and of more workspace packages if named (tests/e2e/bench.sh: sc-bench)
#   engine [--push]    build the images with docker, podman or buildah (and push them)
#   archives OUT_DIR   docker-archive tars without a container engine (what the e2e tests import);
#                      prints "<image> <archive>" per image, reuses unchanged archives
#   list               the image references that would be built
#
# Environment:
#   SC_IMAGE_PREFIX      registry and path in front of each name (default: stoppablecontainer)
#   SC_IMAGE_TAG         tag (default: the Cargo workspace version)
#   SC_CONTAINER_ENGINE  docker, podman or buildah (default: the first one found)
#   CARGO_TARGET_DIR     cargo's target dir (default: target)
# Images: <prefix>/csi-driver, <prefix>/operator, <prefix>/exec-wrapper; chart values
# image.repositoryPrefix and image.tag select them.
set -euo pipefail

IMAGES_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly IMAGES_DIR
REPO_DIR="$(dirname "$IMAGES_DIR")"
readonly REPO_DIR
readonly TARGET_TRIPLE=x86_64-unknown-linux-gnu
readonly PACKER="$REPO_DIR/tests/e2e/images/pack-containerfile.py"
# component  binary  Containerfile
readonly IMAGES=(
  "csi-driver sc-csi-driver"
  "operator sc-operator"
  "exec-wrapper sc-exec"
)

log() { printf '[images] %s\n' "$*" >&2; }
die() {
  printf 'images/build.sh: %s\n' "$*" >&2
  exit 1
}

workspace_version() {
  awk '/^\[workspace.package\]/ { in_section = 1; next }
       /^\[/ { in_section = 0 }
       in_section && $1 == "version" { gsub(/"/, "", $3); print $3; exit }' "$REPO_DIR/Cargo.toml"
}

readonly PREFIX="${SC_IMAGE_PREFIX:-stoppablecontainer}"
TAG="${SC_IMAGE_TAG:-$(workspace_version)}"
readonly TAG
[[ -n "$TAG" ]] || die "cannot read the version from $REPO_DIR/Cargo.toml; set SC_IMAGE_TAG"

release_dir() {
  local target_dir="${CARGO_TARGET_DIR:-$REPO_DIR/target}"
  [[ "$target_dir" == /* ]] || target_dir="$REPO_DIR/$target_dir"
  echo "$target_dir/$TARGET_TRIPLE/release"
}

cmd_binaries() {
  log "static release build (cargo build --release --target $TARGET_TRIPLE, crt-static)"
  local extra=() package
  # Built in the same invocation, so they share the product's compiled dependencies.
  for package in "$@"; do extra+=(-p "$package"); done
  # An explicit --target gets its own target dir, so these flags never rebuild the host's
  # debug/test artifacts. glibc linked statically: the images are FROM scratch.
  (cd "$REPO_DIR" && RUSTFLAGS="-C target-feature=+crt-static${RUSTFLAGS:+ $RUSTFLAGS}" \
    cargo build --release --locked --target "$TARGET_TRIPLE" \
      -p csi-driver -p operator -p exec-wrapper -p kubectl-sc "${extra[@]}")
  local binary file_output
  for binary in sc-csi-driver sc-operator sc-exec kubectl-sc; do
    [[ -x "$(release_dir)/$binary" ]] || die "cargo did not produce $(release_dir)/$binary"
    # A dynamic binary would start in no FROM scratch image.
    if file_output="$(file -b "$(release_dir)/$binary" 2>/dev/null)" && [[ "$file_output" == *dynamically* ]] &&
      [[ "$file_output" != *static-pie* ]]; then
      die "$binary is dynamically linked ($file_output); build with RUSTFLAGS=-C target-feature=+crt-static"
    fi
  done
  release_dir
}

# Copies one binary, stripped, into a fresh build context directory.
stage_context() {
  local binary="$1" context="$2"
  local source
  source="$(release_dir)/$binary"
  [[ -x "$source" ]] || die "$source is missing; run: $0 binaries"
  mkdir -p "$context"
  cp "$source" "$context/$binary"
  strip --strip-unneeded "$context/$binary" 2>/dev/null || log "strip not available; $binary stays unstripped"
}

image_ref() { echo "$PREFIX/$1:$TAG"; }

cmd_list() {
  local entry component
  for entry in "${IMAGES[@]}"; do
    read -r component _ <<<"$entry"
    image_ref "$component"
  done
}

cmd_archives() {
  local out_dir="${1:-}"
  [[ -n "$out_dir" ]] || die "usage: $0 archives OUT_DIR"
  mkdir -p "$out_dir"
  local entry component binary context key archive ref
  for entry in "${IMAGES[@]}"; do
    read -r component binary <<<"$entry"
    ref="$(image_ref "$component")"
    # Reuse an archive packed from the same binary, recipe, packers and reference.
    key="$( { echo "$ref"; cat "$(release_dir)/$binary" "$IMAGES_DIR/$component.Containerfile" \
      "$PACKER" "$REPO_DIR/tests/e2e/images/pack-image.py"; } | sha256sum | cut -c1-16)"
    archive="$out_dir/$component-$key.tar"
    if [[ ! -f "$archive" ]]; then
      rm -f "$out_dir/$component"-*.tar
      context="$(mktemp -d)"
      stage_context "$binary" "$context"
      python3 "$PACKER" --file "$IMAGES_DIR/$component.Containerfile" --context "$context" \
        --tag "$ref" --output "$archive"
      rm -rf "$context"
    fi
    echo "$ref $archive"
  done
}

find_engine() {
  if [[ -n "${SC_CONTAINER_ENGINE:-}" ]]; then
    command -v "$SC_CONTAINER_ENGINE" >/dev/null || die "SC_CONTAINER_ENGINE=$SC_CONTAINER_ENGINE is not installed"
    echo "$SC_CONTAINER_ENGINE"
    return
  fi
  local engine
  for engine in docker podman buildah; do
    if command -v "$engine" >/dev/null; then
      echo "$engine"
      return
    fi
  done
  die "no docker, podman or buildah found; install one, or use: $0 archives OUT_DIR"
}

cmd_engine() {
  local push=0
  [[ "${1:-}" == --push ]] && push=1
  local engine entry component binary context ref
  engine="$(find_engine)"
  for entry in "${IMAGES[@]}"; do
    read -r component binary <<<"$entry"
    ref="$(image_ref "$component")"
    context="$(mktemp -d)"
    stage_context "$binary" "$context"
    log "$engine: building $ref"
    if [[ "$engine" == buildah ]]; then
      buildah bud -f "$IMAGES_DIR/$component.Containerfile" -t "$ref" "$context"
    else
      "$engine" build -f "$IMAGES_DIR/$component.Containerfile" -t "$ref" "$context"
    fi
    rm -rf "$context"
    if ((push)); then
      log "$engine: pushing $ref"
      "$engine" push "$ref"
    fi
  done
}

main() {
  local command="${1:-}"
  [[ $# -eq 0 ]] || shift
  case "$command" in
    binaries) cmd_binaries "$@" ;;
    archives) cmd_archives "$@" ;;
    engine) cmd_engine "$@" ;;
    list) cmd_list ;;
    *)
      sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
      [[ -z "$command" || "$command" == help || "$command" == -h || "$command" == --help ]]
      ;;
  esac
}

main "$@"
