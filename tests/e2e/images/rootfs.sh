# shellcheck shell=bash
# What the e2e image builders share: the root filesystems they pack, and how archives are named.
# Sourced by base-images.sh and config-images.sh.

# content_key EXTRA FILE...: 16 hex digits of the sha256 over EXTRA (the recipe's knobs) and the
# files' contents, so an archive is named after everything it is built from.
content_key() {
  local extra="$1"
  shift
  { printf '%s\n' "$extra"; cat "$@"; } | sha256sum | cut -c1-16
}


# busybox_rootfs DIR [BUSYBOX]: a minimal rootfs in DIR (which exists and is empty): Debian's
# static busybox with every applet linked in /bin, /sbin, /usr/bin and /usr/sbin (the last three
# are symlinks to /bin), root and nobody in /etc/passwd and /etc/group.
busybox_rootfs() {
  local rootfs="$1" busybox="${2:-/bin/busybox}" applet
  mkdir -p "$rootfs"/{bin,etc,root,tmp,var,proc,sys,dev,usr}
  chmod 1777 "$rootfs/tmp"
  chmod 0700 "$rootfs/root"
  cp "$busybox" "$rootfs/bin/busybox"
  # `busybox --list` names `busybox` itself: linking it would replace the binary with a
  # link to itself ("too many levels of symbolic links").
  while read -r applet; do
    [[ -n "$applet" && "$applet" != busybox ]] || continue
    ln -s busybox "$rootfs/bin/$applet"
  done < <("$busybox" --list)
  ln -s bin "$rootfs/sbin"
  ln -s ../bin "$rootfs/usr/bin"
  ln -s ../bin "$rootfs/usr/sbin"
  printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' 'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' \
    >"$rootfs/etc/passwd"
  printf '%s\n' 'root:x:0:' 'nogroup:x:65534:' >"$rootfs/etc/group"
}
