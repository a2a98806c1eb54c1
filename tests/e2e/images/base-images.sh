#!/usr/bin/env bash
# Builds the base images the e2e cluster needs without any registry, as docker-archive tars:
#   sc-test/pause:1          containerd's sandbox image (static C program, images/pause.c)
#   sc-test/busybox:1        Debian's busybox-static with its applet links
#   sc-test/debian:bookworm  debootstrap --variant=minbase (plays "ubuntu:22.04" in tests)
#
# Usage: base-images.sh OUT_DIR
# Each archive is named after a hash of everything it is built from, so an unchanged input
# reuses the archive already in OUT_DIR. The debootstrap rootfs (the slow part) is cached as a
# tar in ${SC_CACHE_DIR:-/var/cache/stoppablecontainer}/debootstrap/, keyed by suite.
# Prints one line per image on stdout: "<tag> <archive path>".
set -euo pipefail

IMAGES_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly IMAGES_DIR
readonly PACK="$IMAGES_DIR/pack-image.py"
readonly DEBIAN_SUITE=bookworm

SC_LOG_TAG=images
# Sourced for debian_mirror (it brings tests/lib/common.sh: log, CACHE_ROOT).
# shellcheck source=tests/e2e/lib/deps.sh
source "$IMAGES_DIR/../lib/deps.sh"
# shellcheck source=tests/e2e/images/rootfs.sh
source "$IMAGES_DIR/rootfs.sh"

pack_pause() {
  local out_dir="$1" tag=sc-test/pause:1
  local key archive
  key="$(content_key "$tag v1 gcc-static" "$IMAGES_DIR/pause.c" "$PACK")"
  archive="$out_dir/pause-$key.tar"
  if [[ ! -f "$archive" ]]; then
    log "building $tag"
    local rootfs
    rootfs="$(mktemp -d "$out_dir/.pause-rootfs.XXXXXX")"
    gcc -static -O2 -Wall -Werror -o "$rootfs/pause" "$IMAGES_DIR/pause.c"
    strip "$rootfs/pause"
    python3 "$PACK" --rootfs "$rootfs" --tag "$tag" --output "$archive" --entrypoint '["/pause"]'
    rm -rf "$rootfs"
  fi
  echo "$tag $archive"
}

pack_busybox() {
  local out_dir="$1" tag=sc-test/busybox:1 busybox=/bin/busybox
  local key archive
  key="$(content_key "$tag v1" "$busybox" "$PACK" "$IMAGES_DIR/rootfs.sh")"
  archive="$out_dir/busybox-$key.tar"
  if [[ ! -f "$archive" ]]; then
    log "building $tag"
    local rootfs
    rootfs="$(mktemp -d "$out_dir/.busybox-rootfs.XXXXXX")"
    busybox_rootfs "$rootfs" "$busybox"
    python3 "$PACK" --rootfs "$rootfs" --tag "$tag" --output "$archive" \
      --cmd '["/bin/sh"]' --env PATH=/bin --workdir /
    rm -rf "$rootfs"
  fi
  echo "$tag $archive"
}

# Unmounts whatever debootstrap left mounted below a target (it mounts /proc and /sys).
unmount_below() {
  local target="$1" mount_point
  while read -r mount_point; do
    umount "$mount_point" 2>/dev/null || umount -l "$mount_point"
  done < <(awk -v prefix="$target/" 'index($5, prefix) == 1 { print $5 }' /proc/self/mountinfo | sort -r)
}

debootstrap_rootfs_tar() {
  local tarball="$CACHE_ROOT/debootstrap/$DEBIAN_SUITE-minbase-rootfs.tar"
  if [[ -f "$tarball" ]]; then
    echo "$tarball"
    return 0
  fi
  mkdir -p "$CACHE_ROOT/debootstrap"
  local target mirror
  target="$(mktemp -d "$CACHE_ROOT/debootstrap/.$DEBIAN_SUITE.XXXXXX")"
  mirror="$(debian_mirror)"
  log "debootstrap --variant=minbase $DEBIAN_SUITE from $mirror (a minute or two, once)"
  if ! debootstrap --variant=minbase "$DEBIAN_SUITE" "$target" "$mirror" \
      >"$CACHE_ROOT/debootstrap/$DEBIAN_SUITE.log" 2>&1; then
    tail -n 30 "$CACHE_ROOT/debootstrap/$DEBIAN_SUITE.log" >&2
    unmount_below "$target"
    rm -rf --one-file-system "$target"
    echo "base-images.sh: debootstrap failed; log: $CACHE_ROOT/debootstrap/$DEBIAN_SUITE.log" >&2
    return 1
  fi
  unmount_below "$target"
  # Numeric owners; no device nodes or downloaded .debs (the runtime provides /dev).
  tar --numeric-owner --xattrs -C "$target" -cf "$tarball.partial" \
    --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' \
    --exclude='./var/cache/apt/archives/*.deb' --exclude='./var/lib/apt/lists/*_Packages' .
  rm -rf --one-file-system "$target"
  mv "$tarball.partial" "$tarball"
  echo "$tarball"
}

pack_debian() {
  local out_dir="$1" tag="sc-test/debian:$DEBIAN_SUITE"
  local rootfs_tar key archive
  rootfs_tar="$(debootstrap_rootfs_tar)"
  key="$(content_key "$tag v1" "$rootfs_tar" "$PACK")"
  archive="$out_dir/debian-$DEBIAN_SUITE-$key.tar"
  if [[ ! -f "$archive" ]]; then
    log "packing $tag"
    python3 "$PACK" --rootfs "$rootfs_tar" --tag "$tag" --output "$archive" \
      --cmd '["/bin/bash"]' --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
      --workdir /
  fi
  echo "$tag $archive"
}

main() {
  if [[ $# -ne 1 ]]; then
    echo "usage: $0 OUT_DIR" >&2
    exit 2
  fi
  local out_dir="$1"
  mkdir -p "$out_dir"
  # Leftovers of an interrupted run.
  rm -rf "$out_dir"/.pause-rootfs.* "$out_dir"/.busybox-rootfs.* "$out_dir"/.pack-image.*
  local built
  built="$(pack_pause "$out_dir"; pack_busybox "$out_dir"; pack_debian "$out_dir")"
  # Archives built from older inputs are stale: keep only the ones just listed.
  local archive
  for archive in "$out_dir"/*.tar; do
    [[ -e "$archive" ]] || continue
    grep -qF " $archive" <<<"$built" || rm -f "$archive"
  done
  echo "$built"
}

main "$@"
