#!/usr/bin/env bash
# A real single-node Kubernetes 1.20.2 cluster for StoppableContainer's end-to-end tests:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd, kubelet and
# kube-proxy, all inside a private network namespace (no byte leaves it), sharing the host's
# mount namespace (kubelet, containerd and the CSI driver must see the same mounts).
#
# Usage: tests/e2e/cluster.sh COMMAND
#   up                 install deps, build/cached binaries and images, start, wait until Ready
#   down               stop everything (by PID), unmount, remove the netns; leave the machine as found
#   status             what runs, and the node
#   kubectl ARGS...    kubectl against the cluster (inside the netns)
#   env                shell exports: eval "$(tests/e2e/cluster.sh env)"
#   import-image TAR.. import docker-archive tars into the cluster's containerd (k8s.io)
#   push-image TAR REF push a docker-archive tar to the cluster's registry as REF (docker.io/library/x:1)
#   netns CMD...       run a command inside the cluster's network namespace
#   reboot-node        simulate a node reboot: kill pods, kubelet, containerd; unmount; start again
#   replace-node       replace the node as a cloud does: the node's disk wiped, a node with a new name
#   volumes            the block storage pool: each PersistentVolume's phase, claim and loop device
#   recycle-volumes [--loop]  wipe the pool's released volumes and make them Available (the
#                      component pv-recycler runs it with --loop)
#   logs [COMPONENT]   list the component logs, or print the tail of one
#
# See tests/e2e/README.md for the environment variables.
set -euo pipefail
# shellcheck source=tests/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
SC_LOG_TAG=cluster

# From tests/lib/common.sh: E2E_WORK_DIR, E2E_NETNS(_PATH), e2e_node_name, NODE_DATA_ROOT,
# E2E_ADMIN_KUBECONFIG, E2E_HOST_KUBECTL, K8S_VERSION, E2E_NODE_POOL_LABEL_*, E2E_STORAGE_CLASS.
readonly ROOT_REASON="it creates a network namespace, mounts, cgroups"
readonly RUN_DIR="$E2E_WORK_DIR/run"          # volatile state of one `up`; removed by `down`
readonly LOG_DIR="$E2E_WORK_DIR/logs"         # one log per component; kept after `down`
readonly IMAGE_DIR="$E2E_WORK_DIR/images"     # base image archives, cached by content
readonly BIN_DIR="$E2E_WORK_DIR/bin"          # the kubectl wrapper
readonly PID_DIR="$RUN_DIR/pids"
readonly PKI_DIR="$RUN_DIR/pki"
readonly CONF_DIR="$RUN_DIR/conf"
readonly NODE_IP=10.250.0.1
readonly NODE_CIDR=10.250.0.1/24
readonly NETNS_GATEWAY=10.250.0.2         # never answers: the netns is a dead end on purpose
readonly POD_SUBNET=10.251.0.0/24
readonly SERVICE_RANGE=10.96.0.0/16
readonly KUBERNETES_SERVICE_IP=10.96.0.1
readonly SANDBOX_IMAGE=sc-test/pause:1   # built by images/base-images.sh
readonly APISERVER_URL="https://$NODE_IP:6443"
readonly KUBELET_ROOT=/var/lib/kubelet
readonly CONTAINERD_DIR="$RUN_DIR/containerd"
readonly CONTAINERD_SOCK="$CONTAINERD_DIR/containerd.sock"
readonly KUBECTL_WRAPPER="$BIN_DIR/kubectl"
readonly UP_TIMEOUT="${SC_E2E_UP_TIMEOUT:-180}"
# etcd fsyncs on every write; on tmpfs it does not wait for a disk shared with compilers.
if [[ -z "${SC_E2E_ETCD_DIR:-}" && "$(stat -fc %T /dev/shm 2>/dev/null)" == tmpfs ]]; then
  ETCD_DIR="/dev/shm/sc-e2e-etcd-$(printf '%s' "$E2E_WORK_DIR" | sha256sum | cut -c1-8)"
else
  ETCD_DIR="${SC_E2E_ETCD_DIR:-$RUN_DIR/etcd}"
fi
readonly ETCD_DIR
# Paths outside the work dir that the cluster may create; `down` removes the ones `up` created.
readonly HOST_PATHS=("$KUBELET_ROOT" "$NODE_DATA_ROOT" /var/log/pods /var/log/containers /var/lib/cni
  /run/containerd /run/netns /etc/cni /usr/libexec/kubernetes)
# Kernel settings kubelet changes at start; `down` puts back what `up` found.
readonly KUBELET_SYSCTLS=(vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops
  kernel/keys/root_maxkeys kernel/keys/root_maxbytes)
# Start order; `down` stops in reverse.
IMAGE_IMPORT_PID=""
readonly COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler registry pv-recycler containerd kubelet kube-proxy)
# The node of now: `up` starts $E2E_FIRST_NODE_NAME, `replace-node` a new name each time.
NODE_NAME="$(e2e_node_name)"
# Every image imported into the node's containerd: "<tag> <config digest> <archive>" per line.
# replace-node pushes them to the registry first, so the new node pulls what the old one had.
readonly IMPORTED_IMAGES="$RUN_DIR/imported-images"
# A real OCI registry (Debian's docker-registry) inside the netns. containerd uses it as the mirror
# of docker.io, so a pod can name `nginx:1.25` or `my-app:latest` (pulled on every start) and get
# an image pushed here, and nothing is ever fetched from outside.
readonly REGISTRY_ADDR=127.0.0.1:5000
readonly REGISTRY_DIR="$RUN_DIR/registry"

# shellcheck source=tests/e2e/lib/cluster/supervise.sh
source "$E2E_DIR/lib/cluster/supervise.sh"
# shellcheck source=tests/e2e/lib/cluster/configs.sh
source "$E2E_DIR/lib/cluster/configs.sh"
# shellcheck source=tests/e2e/lib/cluster/pv-pool.sh
source "$E2E_DIR/lib/cluster/pv-pool.sh"

# --- up ----------------------------------------------------------------------------------

record_host_state() {
  : >"$RUN_DIR/created-paths"
  local path
  for path in "${HOST_PATHS[@]}"; do
    [[ -e "$path" ]] || echo "$path" >>"$RUN_DIR/created-paths"
  done
  local controller_dir
  : >"$RUN_DIR/created-cgroups"
  for controller_dir in /sys/fs/cgroup/*/; do
    [[ -e "${controller_dir}kubepods" ]] || echo "${controller_dir}kubepods" >>"$RUN_DIR/created-cgroups"
  done
  : >"$RUN_DIR/sysctls"
  local key
  for key in "${KUBELET_SYSCTLS[@]}"; do
    [[ -r "/proc/sys/$key" ]] && echo "$key $(<"/proc/sys/$key")" >>"$RUN_DIR/sysctls"
  done
  # A later `up` after a crash must not mistake our netns for a foreign one.
  [[ -e "$E2E_NETNS_PATH" ]] || touch "$RUN_DIR/netns-created"
  return 0
}

setup_netns() {
  log "network namespace $E2E_NETNS ($NODE_CIDR)"
  ip netns add "$E2E_NETNS"
  ip -n "$E2E_NETNS" link set lo up
  # Both veth ends stay inside the namespace; the default route points at an address nobody
  # holds, so nothing can leave (the kernel has no dummy module here).
  ip -n "$E2E_NETNS" link add v0 type veth peer name v1
  ip -n "$E2E_NETNS" addr add "$NODE_CIDR" dev v0
  ip -n "$E2E_NETNS" link set v0 up
  ip -n "$E2E_NETNS" link set v1 up
  ip -n "$E2E_NETNS" route add default via "$NETNS_GATEWAY"
}

# wait_for_cluster DESCRIPTION TIMEOUT_SECONDS COMMAND...: wait_until that fails at once when a
# component started by this `up` has died.
wait_for_cluster() { wait_until --every 0.5 --guard started_components_alive "$@"; }

etcd_healthy() { e2e_in_netns curl -fsS --max-time 2 http://127.0.0.1:2379/health; }
registry_ready() { e2e_in_netns curl -fsS --max-time 2 "http://$REGISTRY_ADDR/v2/"; }
kubelet_healthy() { e2e_in_netns curl -fsS --max-time 2 http://127.0.0.1:10248/healthz; }
apiserver_ready() { e2e_kubectl get --raw /readyz; }
node_ready() {
  [[ "$(e2e_kubectl get node "$NODE_NAME" \
    -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == True ]]
}
default_service_account_exists() { e2e_kubectl -n default get serviceaccount default; }
kubernetes_service_routed() {
  # kube-proxy's DNAT rule for the `kubernetes` Service, which in-cluster clients dial.
  e2e_in_netns iptables-save -t nat | grep -q -- "-d $KUBERNETES_SERVICE_IP/32 .*--dport 443"
}

start_control_plane() {
  local k8s_bin="$1"
  mkdir -p "$ETCD_DIR"
  start_component etcd /usr/bin/etcd --name sc-e2e --data-dir "$ETCD_DIR" \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster sc-e2e=http://127.0.0.1:2380 --listen-metrics-urls http://127.0.0.1:2381
  wait_for_cluster "etcd" 60 etcd_healthy

  start_component kube-apiserver "$k8s_bin/kube-apiserver" \
    --advertise-address="$NODE_IP" --bind-address=0.0.0.0 --secure-port=6443 --insecure-port=0 \
    --etcd-servers=http://127.0.0.1:2379 \
    --tls-cert-file="$PKI_DIR/apiserver.crt" --tls-private-key-file="$PKI_DIR/apiserver.key" \
    --client-ca-file="$PKI_DIR/ca.crt" \
    --kubelet-client-certificate="$PKI_DIR/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$PKI_DIR/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types=InternalIP \
    --service-account-key-file="$PKI_DIR/sa.pub" \
    --service-account-signing-key-file="$PKI_DIR/sa.key" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-cluster-ip-range="$SERVICE_RANGE" \
    --authorization-mode=Node,RBAC --allow-privileged=true \
    --enable-admission-plugins=NodeRestriction \
    --v=1
  wait_for_cluster "kube-apiserver /readyz" 90 apiserver_ready

  start_component registry /usr/bin/docker-registry serve "$CONF_DIR/registry.yml"
  wait_for_cluster "the registry" 30 registry_ready

  start_component kube-controller-manager "$k8s_bin/kube-controller-manager" \
    --kubeconfig="$CONF_DIR/kube-controller-manager.kubeconfig" \
    --authentication-kubeconfig="$CONF_DIR/kube-controller-manager.kubeconfig" \
    --authorization-kubeconfig="$CONF_DIR/kube-controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --port=0 \
    --controllers='*,-nodeipam' --leader-elect=false --use-service-account-credentials=true \
    --service-account-private-key-file="$PKI_DIR/sa.key" --root-ca-file="$PKI_DIR/ca.crt" \
    --cluster-signing-cert-file="$PKI_DIR/ca.crt" --cluster-signing-key-file="$PKI_DIR/ca.key" \
    --flex-volume-plugin-dir="$RUN_DIR/flexvolume" \
    --v=1
  start_component kube-scheduler "$k8s_bin/kube-scheduler" \
    --kubeconfig="$CONF_DIR/kube-scheduler.kubeconfig" \
    --authentication-kubeconfig="$CONF_DIR/kube-scheduler.kubeconfig" \
    --authorization-kubeconfig="$CONF_DIR/kube-scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --port=0 --leader-elect=false --v=1
}

start_node() {
  local k8s_bin="$1" base_images="$2"
  start_component containerd /usr/bin/containerd --config "$CONTAINERD_DIR/config.toml"
  wait_for_cluster "containerd" 60 ctr -a "$CONTAINERD_SOCK" version

  if [[ -n "$base_images" ]]; then
    # The sandbox image must be there before kubelet starts; the others (the Debian one takes
    # a while to unpack) are imported while kubelet registers, and waited for at the end of `up`.
    local tag archive others=()
    while read -r tag archive; do
      if [[ "$tag" == "$SANDBOX_IMAGE" ]]; then
        import_images "$archive"
      else
        others+=("$archive")
      fi
    done <<<"$base_images"
    log "importing ${#others[@]} more base images in the background"
    import_images "${others[@]}" >"$LOG_DIR/image-import.log" 2>&1 &
    IMAGE_IMPORT_PID=$!
  fi

  start_component kubelet "$k8s_bin/kubelet" \
    --config="$CONF_DIR/kubelet.yaml" --kubeconfig="$CONF_DIR/kubelet.kubeconfig" \
    --root-dir="$KUBELET_ROOT" --container-runtime=remote \
    --container-runtime-endpoint="unix://$CONTAINERD_SOCK" \
    --node-ip="$NODE_IP" --hostname-override="$NODE_NAME" \
    --node-labels="$E2E_NODE_POOL_LABEL_KEY=$E2E_NODE_POOL_LABEL_VALUE" --v=1
  start_component kube-proxy "$k8s_bin/kube-proxy" --config="$CONF_DIR/kube-proxy.yaml" --v=1
}

start_pv_recycler() {
  local bash_exe
  bash_exe="$(readlink -f "$BASH")"
  start_component pv-recycler "$bash_exe" "$E2E_DIR/cluster.sh" recycle-volumes --loop
}

cluster_healthy() {
  local component
  for component in "${COMPONENTS[@]}"; do
    is_running "$component" || return 1
  done
  apiserver_ready >/dev/null 2>&1 && node_ready
}

print_log_tails() {
  local log_file
  for log_file in "$LOG_DIR"/*.log; do
    [[ -f "$log_file" ]] || continue
    printf '\n===== tail of %s =====\n' "$log_file" >&2
    tail -n "${SC_E2E_LOG_TAIL:-25}" "$log_file" >&2
  done
}

on_up_failure() {
  local status=$?
  if [[ $status -ne 0 ]]; then
    print_log_tails
    printf '\ncluster.sh up failed (exit %s). Logs: %s; clean up with: %s down\n' \
      "$status" "$LOG_DIR" "$0" >&2
  fi
}

cmd_up() {
  require_root "$ROOT_REASON"
  if [[ -d "$RUN_DIR" ]] && cluster_healthy; then
    log "already up"
    print_usage_hint
    return 0
  fi
  if [[ -d "$RUN_DIR" || -e "$E2E_NETNS_PATH" ]]; then
    log "found leftovers of an earlier run; tearing them down first"
    cmd_down
  fi
  local started=$SECONDS
  "$E2E_DIR/lib/deps.sh"
  local k8s_bin base_images
  k8s_bin="$("$E2E_DIR/lib/k8s-binaries.sh")"
  base_images="$("$E2E_DIR/images/base-images.sh" "$IMAGE_DIR")"

  trap on_up_failure EXIT
  mkdir -p "$RUN_DIR" "$PID_DIR" "$LOG_DIR" "$IMAGE_DIR"
  rm -f "$LOG_DIR"/*.log
  record_host_state
  NODE_NAME="$E2E_FIRST_NODE_NAME"
  echo "$NODE_NAME" >"$RUN_DIR/node-name"
  setup_netns
  log "PKI and configuration in $RUN_DIR"
  write_pki
  write_configs
  start_control_plane "$k8s_bin"
  pool_create
  start_pv_recycler
  start_node "$k8s_bin" "$base_images"
  wait_for_cluster "kubelet /healthz" "$UP_TIMEOUT" kubelet_healthy
  wait_for_cluster "node $NODE_NAME Ready" "$UP_TIMEOUT" node_ready
  wait_for_cluster "the default service account" 60 default_service_account_exists
  wait_for_cluster "kube-proxy's rule for the kubernetes Service ($KUBERNETES_SERVICE_IP:443)" 60 \
    kubernetes_service_routed
  if [[ -n "$IMAGE_IMPORT_PID" ]]; then
    wait "$IMAGE_IMPORT_PID" || die "importing the base images failed; see $LOG_DIR/image-import.log"
  fi
  trap - EXIT
  log "cluster up in $((SECONDS - started)) s"
  print_usage_hint
}

print_usage_hint() {
  cat >&2 <<EOF

The e2e cluster is up (node $NODE_NAME, Kubernetes 1.20.2, network namespace $E2E_NETNS).
  $0 kubectl get pods -A
or
  export KUBECONFIG=$E2E_ADMIN_KUBECONFIG   # reachable only inside the netns:
  $KUBECTL_WRAPPER get pods -A          # (nsenter --net=$E2E_NETNS_PATH kubectl ...)
Images: $0 import-image IMAGE.tar (docker-archive); pods use imagePullPolicy IfNotPresent (a node
from replace-node pulls them from the registry) or Never. Storage: the default class $E2E_STORAGE_CLASS.
Logs: $LOG_DIR/<component>.log. Tear down: $0 down
EOF
}

# --- down --------------------------------------------------------------------------------

# Stops the node's processes (kube-proxy, kubelet, every pod, containerd and its shims).
stop_node() {
  stop_component kube-proxy
  stop_component kubelet
  # Pod processes first, while containerd still knows its shims.
  kill_pod_processes
  stop_component containerd
  kill_containerd_shims
}

remove_pod_cgroups() {
  [[ -f "$RUN_DIR/created-cgroups" ]] || return 0
  local cgroup_root
  while IFS= read -r cgroup_root; do
    [[ -d "$cgroup_root" ]] || continue
    # Children first; a cgroup directory is removed with rmdir, never rm.
    find "$cgroup_root" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    [[ ! -d "$cgroup_root" ]] || log "warning: could not remove cgroup $cgroup_root"
  done <"$RUN_DIR/created-cgroups"
}

# Simulates a node reboot while the control plane keeps running: every pod process dies, every
# mount under the kubelet root, the StoppableContainer data root and containerd's state goes
# away (as /run and mounts do on a reboot), disk state stays (images, kubelet root contents,
# $NODE_DATA_ROOT); then containerd, kubelet and kube-proxy start again and kubelet recreates
# the pods bound to the node.
cmd_reboot_node() {
  require_root "$ROOT_REASON"
  require_up
  log "rebooting the node: stopping kubelet, pods and containerd"
  local started=$SECONDS
  stop_node
  unmount_tree "$KUBELET_ROOT"
  unmount_tree "$NODE_DATA_ROOT"
  unmount_tree "$CONTAINERD_DIR/state"
  remove_pod_cgroups
  remove_tree "$CONTAINERD_DIR/state"
  log "starting containerd, kubelet and kube-proxy again"
  local k8s_bin
  k8s_bin="$("$E2E_DIR/lib/k8s-binaries.sh")"
  trap on_up_failure EXIT
  start_node "$k8s_bin" ""
  wait_for_cluster "kubelet /healthz" "$UP_TIMEOUT" kubelet_healthy
  wait_for_cluster "node $NODE_NAME Ready" "$UP_TIMEOUT" node_ready
  trap - EXIT
  log "node rebooted in $((SECONDS - started)) s"
}

# next_node_name NAME: the name of the node that replaces NAME (sc-e2e-node -> sc-e2e-node-2 -> -3).
next_node_name() {
  local name="$1"
  if [[ "$name" =~ ^(.*)-([0-9]+)$ && "${BASH_REMATCH[1]}" == "$E2E_FIRST_NODE_NAME" ]]; then
    echo "$E2E_FIRST_NODE_NAME-$((BASH_REMATCH[2] + 1))"
  else
    echo "$E2E_FIRST_NODE_NAME-2"
  fi
}

# created_by_up PATH: whether this `up` created PATH (so the harness may wipe it).
created_by_up() { grep -qxF -- "$1" "$RUN_DIR/created-paths" 2>/dev/null; }

# Replaces the node the way a cloud does (a node-pool upgrade, a spot reclaim): the node's
# processes die, its Node object is deleted, its disk is wiped (kubelet root, container images
# and state, the StoppableContainer data root, pod logs, pod IP allocations), and a node with a
# new name, a new kubelet certificate and an empty containerd joins on the same machine. The
# control plane, the registry and the pool's disks (loop devices over images in the run dir, as
# cloud disks are outside the node) stay. Every image the old node had is pushed to the registry
# first: the new node pulls what a pod names, as a fresh cloud node does. Kubernetes' pod garbage
# collector removes the old node's pods (after its 40 s quarantine); their controllers recreate
# them on the new node.
cmd_replace_node() {
  require_root "$ROOT_REASON"
  require_up
  local path
  for path in "$KUBELET_ROOT" "$NODE_DATA_ROOT"; do
    [[ ! -e "$path" ]] || created_by_up "$path" ||
      die "replace-node wipes $path, which existed before this cluster's up: it is not the harness's to wipe"
  done
  local started=$SECONDS old_name="$NODE_NAME" new_name k8s_bin
  new_name="$(next_node_name "$old_name")"
  k8s_bin="$("$E2E_DIR/lib/k8s-binaries.sh")"
  log "replacing node $old_name by $new_name"
  push_imported_images

  log "node $old_name goes: kube-proxy, kubelet, every pod and containerd stopped"
  stop_node
  unmount_tree "$KUBELET_ROOT"
  unmount_tree "$NODE_DATA_ROOT"
  unmount_tree "$CONTAINERD_DIR"
  unmount_tree /run/containerd
  remove_pod_cgroups
  local still_mounted
  still_mounted="$(pool_disks_mounted)"
  [[ -z "$still_mounted" ]] || die "the pool's disks are still mounted after the node went: $still_mounted"
  e2e_kubectl delete node "$old_name" --wait=true >/dev/null
  log "Node $old_name deleted; wiping its disk: $KUBELET_ROOT, $NODE_DATA_ROOT, containerd's images and state"
  remove_tree "$KUBELET_ROOT"
  remove_tree "$NODE_DATA_ROOT"
  remove_tree "$CONTAINERD_DIR/root"
  remove_tree "$CONTAINERD_DIR/state"
  remove_tree "$CONTAINERD_DIR/opt"
  remove_tree /run/containerd/runc/k8s.io
  remove_tree /var/log/pods
  remove_tree /var/log/containers
  # host-local's IP allocations of the old node's pods, which never got a CNI DEL.
  find "$RUN_DIR/cni/networks" -mindepth 1 -delete

  NODE_NAME="$new_name"
  echo "$NODE_NAME" >"$RUN_DIR/node-name"
  write_kubelet_cert
  write_kube_proxy_config
  log "node $new_name joins: an empty containerd, kubelet (pulls from the registry), kube-proxy"
  trap on_up_failure EXIT
  start_node "$k8s_bin" ""
  wait_for_cluster "kubelet /healthz" "$UP_TIMEOUT" kubelet_healthy
  wait_for_cluster "node $NODE_NAME Ready" "$UP_TIMEOUT" node_ready
  trap - EXIT
  log "node $old_name replaced by $new_name in $((SECONDS - started)) s"
}

cmd_down() {
  require_root "$ROOT_REASON"
  if [[ ! -d "$RUN_DIR" && ! -e "$E2E_NETNS_PATH" ]]; then
    log "nothing to tear down"
    return 0
  fi
  log "tearing down"
  stop_node
  local component
  for component in pv-recycler registry kube-scheduler kube-controller-manager kube-apiserver etcd; do
    stop_component "$component"
  done

  local unmount_ok=0
  unmount_tree "$KUBELET_ROOT" || unmount_ok=1
  unmount_tree "$NODE_DATA_ROOT" || unmount_ok=1
  unmount_tree "$RUN_DIR" || unmount_ok=1
  unmount_tree /run/containerd || unmount_ok=1
  remove_pod_cgroups
  pool_detach

  if [[ -e "$E2E_NETNS_PATH" ]]; then
    if [[ -f "$RUN_DIR/netns-created" || ! -d "$RUN_DIR" ]]; then
      log "removing network namespace $E2E_NETNS"
      ip netns delete "$E2E_NETNS" || log "warning: could not delete netns $E2E_NETNS"
    fi
  fi

  if [[ -f "$RUN_DIR/sysctls" ]]; then
    local key value
    while read -r key value; do
      [[ "$(<"/proc/sys/$key")" == "$value" ]] || echo "$value" >"/proc/sys/$key" 2>/dev/null ||
        log "warning: could not restore $key to $value"
    done <"$RUN_DIR/sysctls"
  fi

  if [[ -f "$RUN_DIR/created-paths" ]]; then
    local path
    while IFS= read -r path; do
      if [[ "$path" == /run/netns ]]; then
        # `ip netns add` bind-mounts /run/netns on itself the first time.
        if [[ -z "$(ls -A /run/netns 2>/dev/null)" ]]; then
          unmount_tree /run/netns || true
          rmdir /run/netns 2>/dev/null || true
        fi
        continue
      fi
      remove_tree "$path" || unmount_ok=1
    done <"$RUN_DIR/created-paths"
  fi

  if ((unmount_ok == 0)); then
    remove_tree "$RUN_DIR"
    remove_tree "$ETCD_DIR"
    rm -f "$KUBECTL_WRAPPER"
    rmdir "$BIN_DIR" 2>/dev/null || true
    log "down; logs kept in $LOG_DIR"
  else
    log "down, but some mounts could not be removed (see warnings); state kept in $RUN_DIR"
    return 1
  fi
}

# --- other commands ----------------------------------------------------------------------

cmd_status() {
  local component pid any=1
  for component in "${COMPONENTS[@]}"; do
    if pid="$(component_pid "$component")"; then
      printf '%-24s running (pid %s)\n' "$component" "$pid"
      any=0
    else
      printf '%-24s stopped\n' "$component"
    fi
  done
  if ((any == 0)) && [[ -e "$E2E_NETNS_PATH" ]]; then
    e2e_kubectl get nodes -o wide 2>&1 || true
  fi
  cluster_healthy
}

require_up() {
  [[ -e "$E2E_NETNS_PATH" && -f "$E2E_ADMIN_KUBECONFIG" ]] ||
    die "the e2e cluster is not up (no $E2E_NETNS_PATH or $E2E_ADMIN_KUBECONFIG); run: $0 up"
}

import_images() {
  SC_E2E_CONTAINERD_SOCK="$CONTAINERD_SOCK" "$E2E_DIR/images/import.sh" "$@"
  record_imported_images "$@"
}

# record_imported_images ARCHIVE...: appends each archive's tags, with its config digest, to
# $IMPORTED_IMAGES.
record_imported_images() {
  local archive
  for archive in "$@"; do
    # shellcheck disable=SC2016  # jq's variables
    tar -xOf "$archive" manifest.json | jq -r --arg archive "$archive" \
      '.[] | (.Config | ltrimstr("blobs/sha256/") | rtrimstr(".json")) as $config
        | .RepoTags[]? | "\(.) sha256:\($config) \($archive)"' >>"$IMPORTED_IMAGES"
  done
}

# registry_path REF: where the registry stores an image that pods name REF (docker.io's rules:
# `busybox:1` is `library/busybox:1`).
registry_path() {
  local path="${1#docker.io/}"
  path="${path#"$REGISTRY_ADDR"/}"
  [[ "$path" == */* ]] || path="library/$path"
  echo "$path"
}

# registry_config_digest REPOSITORY TAG: the config digest of the registry's image (empty: none).
registry_config_digest() {
  e2e_in_netns curl -fsS --max-time 10 \
    -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    "http://$REGISTRY_ADDR/v2/$1/manifests/$2" 2>/dev/null | jq -r '.config.digest // empty' 2>/dev/null || true
}

# Pushes every image the node imported (the last import of each tag) that the registry does not
# hold as it is, so that a new node can pull it.
push_imported_images() {
  [[ -f "$IMPORTED_IMAGES" ]] || return 0
  local tag digest archive path pushed=0 kept=0 started=$SECONDS
  while read -r tag digest archive; do
    path="$(registry_path "$tag")"
    if [[ "$(registry_config_digest "${path%:*}" "${path##*:}")" == "$digest" ]]; then
      kept=$((kept + 1))
      continue
    fi
    [[ -f "$archive" ]] || die "the node's image $tag was imported from $archive, which is gone; cannot push it"
    push_image "$archive" "$tag"
    pushed=$((pushed + 1))
  done < <(tac "$IMPORTED_IMAGES" | awk '!seen[$1]++')
  log "registry: pushed $pushed of the node's images, $kept already there ($((SECONDS - started)) s)"
}

# push_image TAR REF: copies a docker-archive into the registry. REF names it as pods do
# (`docker.io/library/my-app:latest`, or `my-app:latest`); the registry stores it under the path.
push_image() {
  local archive="$1" ref="$2" path
  [[ -f "$archive" ]] || die "push-image: $archive is not a file"
  path="$(registry_path "$ref")"
  e2e_in_netns skopeo --insecure-policy copy --quiet --dest-tls-verify=false \
    "docker-archive:$archive" "docker://$REGISTRY_ADDR/$path"
}

cmd_env() {
  cat <<EOF
export SC_E2E_DIR=$E2E_WORK_DIR
export SC_E2E_NETNS=$E2E_NETNS
export SC_E2E_NETNS_PATH=$E2E_NETNS_PATH
export SC_E2E_CONTAINERD_SOCK=$CONTAINERD_SOCK
export SC_E2E_REGISTRY=$REGISTRY_ADDR
export SC_E2E_NODE_NAME=$NODE_NAME
export SC_E2E_STORAGE_CLASS=$E2E_STORAGE_CLASS
export SC_E2E_KUBELET_ROOT=$KUBELET_ROOT
export KUBECONFIG=$E2E_ADMIN_KUBECONFIG
export PATH=$BIN_DIR:\$PATH
EOF
}

cmd_logs() {
  if [[ $# -eq 0 ]]; then
    ls -1 "$LOG_DIR"
    return 0
  fi
  local log_file="$LOG_DIR/$1.log"
  [[ -f "$log_file" ]] || die "no log $log_file; components: ${COMPONENTS[*]}"
  tail -n "${2:-100}" "$log_file"
}

main() {
  local command="${1:-}"
  [[ $# -eq 0 ]] || shift
  case "$command" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    kubectl) require_up; e2e_kubectl "$@" ;;
    env) cmd_env ;;
    import-image)
      require_root "$ROOT_REASON"
      [[ $# -gt 0 ]] || die "usage: $0 import-image IMAGE.tar..."
      is_running containerd || die "containerd of the e2e cluster is not running; run: $0 up"
      import_images "$@"
      ;;
    push-image)
      require_root "$ROOT_REASON"
      [[ $# -eq 2 ]] || die "usage: $0 push-image IMAGE.tar REF"
      is_running registry || die "the registry of the e2e cluster is not running; run: $0 up"
      push_image "$1" "$2"
      ;;
    netns) require_up; e2e_in_netns "$@" ;;
    reboot-node) cmd_reboot_node ;;
    replace-node) cmd_replace_node ;;
    volumes) require_up; pool_list ;;
    recycle-volumes)
      require_root "$ROOT_REASON"
      require_up
      if [[ "${1:-}" == --loop ]]; then pool_recycle_loop; else pool_recycle_released; fi
      ;;
    logs) cmd_logs "$@" ;;
    *)
      print_usage >&2
      [[ -z "$command" || "$command" == help || "$command" == -h || "$command" == --help ]]
      ;;
  esac
}

main "$@"
