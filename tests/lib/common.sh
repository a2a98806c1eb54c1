# shellcheck shell=bash disable=SC2034  # the constants are read by the scripts that source this
# What every script of the test harness shares: logging, failing, the root check, the usage
# printer, polling, kubectl against the e2e cluster, and the paths they must agree on (the work
# dir, the caches, the node's data root). Sourced after `set -euo pipefail` by tests/run.sh,
# tests/validate/*.sh, tests/e2e/*.sh, tests/e2e/lib/*.sh and tests/e2e/images/*.sh. A script
# names its log lines by setting SC_LOG_TAG (default: its file name).

# Sourced once per shell: the constants are readonly, and libraries source each other.
[[ -z "${SC_COMMON_SOURCED:-}" ]] || return 0
SC_COMMON_SOURCED=1

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
readonly REPO_DIR
readonly E2E_DIR="$REPO_DIR/tests/e2e"

# The e2e cluster's work dir: state of one `up` (run/), component logs, image caches. Resolved,
# so it matches the mount points the kernel reports in mountinfo.
E2E_WORK_DIR="$(realpath -m "${SC_E2E_DIR:-/var/tmp/sc-e2e}")"
readonly E2E_WORK_DIR
# Build caches outside the checkout, keyed by version: Kubernetes, debootstrap, Python venvs.
readonly CACHE_ROOT="${SC_CACHE_DIR:-/var/cache/stoppablecontainer}"
readonly K8S_VERSION=1.20.2
readonly K8S_BIN_DIR="$CACHE_ROOT/kubernetes-$K8S_VERSION/bin"
# The chart's node.dataRoot default: where the node plugin keeps each root filesystem, and its
# layout (containers/<namespace>/<name>/<uid>/, as csi-driver/src/layout.rs writes it).
readonly NODE_DATA_ROOT=/var/lib/stoppablecontainer
# The e2e cluster's first node. `cluster.sh replace-node` replaces it the way a cloud does, by a
# node with a new name (sc-e2e-node-2, -3, ...), recorded in run/node-name: e2e_node_name prints
# the node of now, so read it after a replacement rather than caching it.
readonly E2E_FIRST_NODE_NAME=sc-e2e-node
e2e_node_name() { cat "$E2E_WORK_DIR/run/node-name" 2>/dev/null || echo "$E2E_FIRST_NODE_NAME"; }
# Every node the harness starts carries this label; the pool's PersistentVolumes require it
# instead of a hostname, so a replacement node can attach them (like a zonal cloud disk).
readonly E2E_NODE_POOL_LABEL_KEY=topology.stoppablecontainer.test/pool
readonly E2E_NODE_POOL_LABEL_VALUE=e2e
# The default StorageClass of the e2e cluster: loop-device-backed local PersistentVolumes.
readonly E2E_STORAGE_CLASS=sc-e2e-block
# The e2e cluster's network namespace and admin kubeconfig (written by cluster.sh up).
readonly E2E_NETNS="${SC_E2E_NETNS:-sc-e2e}"
readonly E2E_NETNS_PATH="/var/run/netns/$E2E_NETNS"
readonly E2E_ADMIN_KUBECONFIG="$E2E_WORK_DIR/run/conf/admin.kubeconfig"
readonly E2E_HOST_KUBECTL="${SC_E2E_KUBECTL:-/usr/bin/kubectl}"

# sc_data_dir NAMESPACE NAME UID: a StoppableContainer's data directory on the node.
sc_data_dir() { echo "$NODE_DATA_ROOT/containers/$1/$2/$3"; }

# with_kept_upper NAMESPACE NAME UID COMMAND...: runs COMMAND with the SC's upper directory, as
# the node keeps it, as its last argument. The upper lives on the SC's own filesystem
# (<data dir>/rootfs.img), mounted at fs/ only while a workload runs: for a stopped SC the image is
# mounted read-only for the command, as an admin would.
with_kept_upper() {
  local dir mount_point status=0
  dir="$(sc_data_dir "$1" "$2" "$3")"
  shift 3
  if mountpoint -q "$dir/fs"; then
    "$@" "$dir/fs/upper"
    return
  fi
  mount_point="$(mktemp -d)"
  mount -o ro,loop,noload "$dir/rootfs.img" "$mount_point"
  "$@" "$mount_point/upper" || status=$?
  umount "$mount_point"
  rmdir "$mount_point"
  return "$status"
}

# log MESSAGE...: one line on stderr, "[TAG HH:MM:SS] MESSAGE".
log() { printf '[%s %s] %s\n' "${SC_LOG_TAG:-$(basename "$0" .sh)}" "$(date +%H:%M:%S)" "$*" >&2; }

# die MESSAGE...: "<script>: MESSAGE" on stderr, exit 1. Say what was wrong and what to do.
die() {
  printf '%s: %s\n' "$(basename "$0")" "$*" >&2
  exit 1
}

# require_root WHY: exits unless root, saying why root is needed.
require_root() {
  [[ "$(id -u)" -eq 0 ]] || die "must run as root ($*)"
}

# print_usage: the calling script's header comment, from line 2 to the `set -euo` line.
print_usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

# wait_until [--every SECONDS] [--guard COMMAND] [--fail FUNCTION] DESCRIPTION TIMEOUT COMMAND...
# Runs COMMAND (output discarded) until it succeeds. Between tries it runs the guard (which fails
# fast, e.g. when a component died) and sleeps (default 1 s). After TIMEOUT seconds it calls the
# fail function (default die) with "timed out after TIMEOUTs waiting for DESCRIPTION".
wait_until() {
  local every=1 guard="" on_timeout=die
  while [[ "${1:-}" == --* ]]; do
    case "$1" in
      --every) every="$2" ;;
      --guard) guard="$2" ;;
      --fail) on_timeout="$2" ;;
      *) die "wait_until: unknown option $1" ;;
    esac
    shift 2
  done
  local description="$1" timeout="$2"
  shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      "$on_timeout" "timed out after ${timeout}s waiting for $description"
      return 1
    fi
    [[ -z "$guard" ]] || "$guard"
    sleep "$every"
  done
}

# e2e_in_netns COMMAND...: runs COMMAND in the e2e cluster's network namespace (the host's mounts).
e2e_in_netns() { nsenter --net="$E2E_NETNS_PATH" -- "$@"; }

# e2e_kubectl ARGS...: kubectl as the cluster admin of the e2e cluster, whose apiserver listens
# only inside its netns. `e2e_kubectl sc ...` runs the kubectl-sc plugin found on PATH.
e2e_kubectl() {
  if [[ ! -e "$E2E_NETNS_PATH" || ! -f "$E2E_ADMIN_KUBECONFIG" ]]; then
    printf '%s: the e2e cluster is not up (no %s or %s); run: %s up\n' \
      "$(basename "$0")" "$E2E_NETNS_PATH" "$E2E_ADMIN_KUBECONFIG" "$E2E_DIR/cluster.sh" >&2
    return 1
  fi
  # KUBECONFIG rather than --kubeconfig: kubectl refuses flags before a plugin's name (`kubectl sc`).
  KUBECONFIG="$E2E_ADMIN_KUBECONFIG" e2e_in_netns "$E2E_HOST_KUBECTL" "$@"
}
