#!/usr/bin/env bash
# Installs the Debian packages the e2e cluster needs. Idempotent: packages already
# installed are skipped, and `apt-get update` runs only when something is missing.
#
# Usage: tests/e2e/lib/deps.sh            (install the runtime/build packages)
#        tests/e2e/lib/deps.sh --deb-src  (also make sure bookworm deb-src is enabled)
set -euo pipefail
# shellcheck source=tests/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/common.sh"
: "${SC_LOG_TAG:=deps}"

# The packages, and why each one is here.
readonly SC_E2E_PACKAGES=(
  golang-1.19-go               # builds Kubernetes 1.20.2 (the version its source expects)
  golang-github-modern-go-reflect2-dev  # reflect2 1.0.2 replaces Kubernetes' vendored 1.0.1 (crashes under Go 1.18+)
  rsync                        # the Kubernetes Makefile rsyncs generated files; must exist before the first make
  make
  jq
  containerd                   # CRI runtime (run with our own root/state/socket, not the packaged service)
  runc
  etcd-server
  containernetworking-plugins  # bridge, host-local, loopback, portmap
  iptables                     # kube-proxy iptables mode, CNI bridge masquerade, portmap
  conntrack                    # kube-proxy clears stale UDP conntrack entries with it
  busybox-static               # the sc-test/busybox image
  debootstrap                  # the sc-test/debian image
  openssl                      # cluster PKI
  iproute2                     # netns + veth
  util-linux                   # nsenter, umount -R, mountpoint
  procps                       # ps/kill in teardown diagnostics
  gcc                          # the static pause binary
  libc6-dev                    # static libc for the pause binary
  python3                      # images/pack-image.py
  ca-certificates
  curl                         # health checks of etcd inside the netns
  debian-archive-keyring       # debootstrap verifies the sc-test/debian image's packages
  tar
  gzip
  shellcheck                   # tests/run.sh lints every shell script
  docker-registry              # the cluster's own OCI registry (docker.io's mirror inside the netns)
  skopeo                       # pushes test images into that registry
  e2fsprogs                    # mkfs.ext4 for the node plugin's per-rootfs filesystems (root tests, e2e node)
)

is_installed() {
  local status
  status="$(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null || true)"
  [[ "$status" == "ii "* ]]
}

apt_updated=0
apt_update_once() {
  if [[ "$apt_updated" -eq 0 ]]; then
    log "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq </dev/null
    apt_updated=1
  fi
}

# Adds a deb-src stanza of our own (never edits the system's sources) by copying the
# URIs/Signed-By of the stanza in debian.sources that carries the plain `bookworm` suite.
ensure_deb_src() {
  local ours=/etc/apt/sources.list.d/stoppablecontainer-e2e-deb-src.sources
  if [[ -f "$ours" ]]; then
    return 0
  fi
  local system=/etc/apt/sources.list.d/debian.sources
  local uri="" signed_by=""
  if [[ -f "$system" ]]; then
    # Paragraph mode: pick the deb stanza whose Suites list holds the word `bookworm`.
    uri="$(awk -v RS= '/(^|\n)Types:[^\n]*deb/ && /(^|\n)Suites:[^\n]*(^| )bookworm( |\n|$)/ {
              if (match($0, /URIs:[ \t]*[^ \t\n]+/)) { s = substr($0, RSTART, RLENGTH); sub(/URIs:[ \t]*/, "", s); print s; exit } }' "$system")"
    signed_by="$(awk -v RS= '/(^|\n)Suites:[^\n]*(^| )bookworm( |\n|$)/ {
              if (match($0, /Signed-By:[ \t]*[^ \t\n]+/)) { s = substr($0, RSTART, RLENGTH); sub(/Signed-By:[ \t]*/, "", s); print s; exit } }' "$system")"
  elif [[ -f /etc/apt/sources.list ]]; then
    uri="$(awk '$1 == "deb" && $3 == "bookworm" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' /etc/apt/sources.list)"
  fi
  if [[ -z "$uri" ]]; then
    echo "deps.sh: cannot find the Debian bookworm mirror in $system or /etc/apt/sources.list;" \
         "add a 'deb-src' line for bookworm main yourself and rerun" >&2
    return 1
  fi
  log "enabling deb-src for bookworm from $uri in $ours"
  {
    echo "# Added by StoppableContainer tests/e2e/lib/deps.sh to fetch the kubernetes source package."
    echo "Types: deb-src"
    echo "URIs: $uri"
    echo "Suites: bookworm"
    echo "Components: main"
    if [[ -n "$signed_by" ]]; then echo "Signed-By: $signed_by"; fi
  } >"$ours.tmp"
  mv "$ours.tmp" "$ours"
  apt_updated=0
  apt_update_once
}

# Prints the mirror URI apt uses for bookworm (debootstrap uses the same one).
debian_mirror() {
  local system=/etc/apt/sources.list.d/debian.sources
  local uri=""
  if [[ -f "$system" ]]; then
    uri="$(awk -v RS= '/(^|\n)Suites:[^\n]*(^| )bookworm( |\n|$)/ {
              if (match($0, /URIs:[ \t]*[^ \t\n]+/)) { s = substr($0, RSTART, RLENGTH); sub(/URIs:[ \t]*/, "", s); print s; exit } }' "$system")"
  fi
  if [[ -z "$uri" && -f /etc/apt/sources.list ]]; then
    uri="$(awk '$1 == "deb" && $3 == "bookworm" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' /etc/apt/sources.list)"
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}

install_packages() {
  local missing=() pkg
  for pkg in "${SC_E2E_PACKAGES[@]}"; do
    is_installed "$pkg" || missing+=("$pkg")
  done
  if [[ "${#missing[@]}" -eq 0 ]]; then
    log "all ${#SC_E2E_PACKAGES[@]} packages present"
    return 0
  fi
  apt_update_once
  log "installing: ${missing[*]}"
  # policy-rc.d (if the machine has one) keeps the packaged containerd/etcd services from
  # starting; the cluster runs its own instances with private sockets and data dirs.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}" </dev/null
}

main() {
  require_root "it installs packages"
  install_packages
  if [[ "${1:-}" == "--deb-src" ]]; then
    ensure_deb_src
  fi
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
