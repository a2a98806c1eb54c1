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
#   logs [COMPONENT]   list the component logs, or print the tail of one
#
# See tests/e2e/README.md for the environment variables.
set -euo pipefail

E2E_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly E2E_DIR
# Resolved, so it matches the mount points the kernel reports in mountinfo.
WORK_DIR="$(realpath -m "${SC_E2E_DIR:-/var/tmp/sc-e2e}")"
readonly WORK_DIR
readonly RUN_DIR="$WORK_DIR/run"          # volatile state of one `up`; removed by `down`
readonly LOG_DIR="$WORK_DIR/logs"         # one log per component; kept after `down`
readonly IMAGE_DIR="$WORK_DIR/images"     # base image archives, cached by content
readonly BIN_DIR="$WORK_DIR/bin"          # the kubectl wrapper
readonly PID_DIR="$RUN_DIR/pids"
readonly PKI_DIR="$RUN_DIR/pki"
readonly CONF_DIR="$RUN_DIR/conf"
readonly NETNS="${SC_E2E_NETNS:-sc-e2e}"
readonly NETNS_PATH="/var/run/netns/$NETNS"
readonly NODE_NAME=sc-e2e-node
readonly NODE_IP=10.250.0.1
readonly NODE_CIDR=10.250.0.1/24
readonly NETNS_GATEWAY=10.250.0.2         # never answers: the netns is a dead end on purpose
readonly POD_SUBNET=10.251.0.0/24
readonly SERVICE_RANGE=10.96.0.0/16
readonly KUBERNETES_SERVICE_IP=10.96.0.1
readonly SANDBOX_IMAGE=sc-test/pause:1   # built by images/base-images.sh
readonly APISERVER_URL="https://$NODE_IP:6443"
readonly KUBELET_ROOT=/var/lib/kubelet
readonly SC_DATA_ROOT=/var/lib/stoppablecontainer
readonly CONTAINERD_DIR="$RUN_DIR/containerd"
readonly CONTAINERD_SOCK="$CONTAINERD_DIR/containerd.sock"
readonly ADMIN_KUBECONFIG="$CONF_DIR/admin.kubeconfig"
readonly KUBECTL_WRAPPER="$BIN_DIR/kubectl"
readonly HOST_KUBECTL="${SC_E2E_KUBECTL:-/usr/bin/kubectl}"
readonly UP_TIMEOUT="${SC_E2E_UP_TIMEOUT:-180}"
# etcd fsyncs on every write; on tmpfs it does not wait for a disk shared with compilers.
if [[ -z "${SC_E2E_ETCD_DIR:-}" && "$(stat -fc %T /dev/shm 2>/dev/null)" == tmpfs ]]; then
  ETCD_DIR="/dev/shm/sc-e2e-etcd-$(printf '%s' "$WORK_DIR" | sha256sum | cut -c1-8)"
else
  ETCD_DIR="${SC_E2E_ETCD_DIR:-$RUN_DIR/etcd}"
fi
readonly ETCD_DIR
# Paths outside the work dir that the cluster may create; `down` removes the ones `up` created.
readonly HOST_PATHS=("$KUBELET_ROOT" "$SC_DATA_ROOT" /var/log/pods /var/log/containers /var/lib/cni
  /run/containerd /run/netns /etc/cni /usr/libexec/kubernetes)
# Kernel settings kubelet changes at start; `down` puts back what `up` found.
readonly KUBELET_SYSCTLS=(vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops
  kernel/keys/root_maxkeys kernel/keys/root_maxbytes)
# Start order; `down` stops in reverse.
IMAGE_IMPORT_PID=""
readonly COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler registry containerd kubelet kube-proxy)
# A real OCI registry (Debian's docker-registry) inside the netns. containerd uses it as the mirror
# of docker.io, so a pod can name `nginx:1.25` or `my-app:latest` (pulled on every start) and get
# an image pushed here, and nothing is ever fetched from outside.
readonly REGISTRY_ADDR=127.0.0.1:5000
readonly REGISTRY_DIR="$RUN_DIR/registry"

log() { printf '[cluster %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
  printf 'cluster.sh: %s\n' "$*" >&2
  exit 1
}

require_root() {
  [[ "$(id -u)" -eq 0 ]] || die "must run as root (it creates a network namespace, mounts, cgroups)"
}

in_netns() { nsenter --net="$NETNS_PATH" -- "$@"; }

# KUBECONFIG rather than --kubeconfig: kubectl refuses flags before a plugin's name (`kubectl sc`).
kubectl_admin() { KUBECONFIG="$ADMIN_KUBECONFIG" in_netns "$HOST_KUBECTL" "$@"; }

# --- processes ---------------------------------------------------------------------------

# A component is ours only if its recorded PID still runs the recorded executable, so a
# reused PID is never signalled.
component_pid() {
  local name="$1" pid exe
  [[ -f "$PID_DIR/$name.pid" && -f "$PID_DIR/$name.exe" ]] || return 1
  pid="$(<"$PID_DIR/$name.pid")"
  exe="$(readlink "/proc/$pid/exe" 2>/dev/null)" || return 1
  [[ "${exe% (deleted)}" == "$(<"$PID_DIR/$name.exe")" ]] || return 1
  echo "$pid"
}

is_running() { component_pid "$1" >/dev/null; }

# Fails fast when a component started by this `up` has died, instead of waiting for a timeout.
started_components_alive() {
  local pid_file name
  for pid_file in "$PID_DIR"/*.pid; do
    [[ -e "$pid_file" ]] || continue
    name="$(basename "$pid_file" .pid)"
    is_running "$name" || die "$name exited; see $LOG_DIR/$name.log"
  done
}

# Starts a long-running component inside the netns, in its own session (so it outlives this
# script and ignores the terminal's signals), logging to $LOG_DIR/<name>.log.
start_component() {
  local name="$1" exe="$2"
  shift 2
  [[ -x "$exe" ]] || die "$exe is missing; did the build succeed?"
  local log_file="$LOG_DIR/$name.log"
  # Without job control the background child is not a group leader, so setsid does not fork
  # and nsenter execs in place: $! is the component's own PID.
  setsid nsenter --net="$NETNS_PATH" -- "$exe" "$@" </dev/null >>"$log_file" 2>&1 &
  echo "$!" >"$PID_DIR/$name.pid"
  echo "$exe" >"$PID_DIR/$name.exe"
  for _ in $(seq 1 20); do
    is_running "$name" && return 0
    kill -0 "$(<"$PID_DIR/$name.pid")" 2>/dev/null || break
    sleep 0.1
  done
  is_running "$name" || die "$name exited right after start; see $log_file"
}

wait_for_pid_exit() {
  local pid="$1" timeout_tenths="$2" waited=0
  while [[ -d "/proc/$pid" ]] && ((waited < timeout_tenths)); do
    # A zombie whose parent is gone is reaped by init; treat it as exited.
    [[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" == Z ]] && return 0
    sleep 0.1
    waited=$((waited + 1))
  done
  [[ ! -d "/proc/$pid" ]]
}

stop_component() {
  local name="$1" pid
  if pid="$(component_pid "$name")"; then
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_for_pid_exit "$pid" 150; then
      log "$name did not exit after SIGTERM; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      wait_for_pid_exit "$pid" 50 || log "warning: $name (pid $pid) is still there"
    fi
  fi
  rm -f "$PID_DIR/$name.pid" "$PID_DIR/$name.exe"
}

# Containers are not children of containerd: kill what runs in kubelet's pod cgroups.
kill_pod_processes() {
  local round pids
  for round in 1 2 3 4 5 6 7 8 9 10; do
    pids="$(find /sys/fs/cgroup/*/kubepods -name cgroup.procs -exec cat {} + 2>/dev/null |
      sort -un || true)"
    [[ -n "$pids" ]] || return 0
    ((round == 1)) && log "killing $(wc -w <<<"$pids") pod processes"
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    sleep 0.3
  done
  log "warning: pod processes survived SIGKILL: $pids"
}

# containerd's shims outlive containerd; each one recorded its PID under containerd's state.
kill_containerd_shims() {
  local pid_file pid
  while IFS= read -r pid_file; do
    pid="$(<"$pid_file")"
    [[ "$pid" =~ ^[0-9]+$ ]] || continue
    # Only a shim started for our containerd carries our socket in its command line.
    if tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF -- "$CONTAINERD_SOCK"; then
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done < <(find "$CONTAINERD_DIR/state" -name shim.pid 2>/dev/null)
  # Shims whose state dir was already gone: find them by our (unique) socket path.
  local proc
  for proc in /proc/[0-9]*; do
    if tr '\0' ' ' 2>/dev/null <"$proc/cmdline" | grep -qF -- "-address $CONTAINERD_SOCK "; then
      kill -KILL "${proc#/proc/}" 2>/dev/null || true
    fi
  done
}

# --- mounts ------------------------------------------------------------------------------

mounts_under() {
  # Field 5 of mountinfo is the mount point (octal-escaped; our paths have no spaces).
  awk -v dir="$1" '$5 == dir || index($5, dir "/") == 1 { print $5 }' /proc/self/mountinfo
}

unmount_tree() {
  local dir="$1" mount_point
  for _ in 1 2 3 4 5; do
    local remaining
    remaining="$(mounts_under "$dir" | sort -ru)"
    [[ -n "$remaining" ]] || return 0
    while IFS= read -r mount_point; do
      umount "$mount_point" 2>/dev/null || umount -l "$mount_point" 2>/dev/null || true
    done <<<"$remaining"
  done
  if [[ -n "$(mounts_under "$dir")" ]]; then
    log "warning: still mounted under $dir:"
    mounts_under "$dir" >&2
    return 1
  fi
}

# Deletes a directory tree only when nothing is mounted below it (never crosses into a mount).
remove_tree() {
  local dir="$1"
  [[ -e "$dir" ]] || return 0
  if [[ -n "$(mounts_under "$dir")" ]]; then
    log "warning: not removing $dir: something is still mounted below it"
    return 1
  fi
  rm -rf --one-file-system "$dir"
}

# --- configuration -----------------------------------------------------------------------

make_cert() {
  # make_cert NAME CN ORG(or "") EXTENDED_KEY_USAGE [SUBJECT_ALT_NAMES]
  local name="$1" cn="$2" org="$3" usage="$4" sans="${5:-}" subject
  subject="/CN=$cn"
  [[ -z "$org" ]] || subject="/O=$org$subject"
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$usage"
    [[ -z "$sans" ]] || echo "subjectAltName=$sans"
  } >"$PKI_DIR/$name.ext"
  # EC keys: generated instantly, unlike RSA on two busy cores; Kubernetes accepts them.
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$PKI_DIR/$name.key" -out "$PKI_DIR/$name.csr" -subj "$subject" 2>/dev/null
  openssl x509 -req -in "$PKI_DIR/$name.csr" -CA "$PKI_DIR/ca.crt" -CAkey "$PKI_DIR/ca.key" \
    -CAcreateserial -days 3650 -sha256 -extfile "$PKI_DIR/$name.ext" -out "$PKI_DIR/$name.crt" 2>/dev/null
  rm -f "$PKI_DIR/$name.csr" "$PKI_DIR/$name.ext"
}

write_pki() {
  mkdir -p "$PKI_DIR"
  chmod 0700 "$PKI_DIR"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$PKI_DIR/ca.key" -out "$PKI_DIR/ca.crt" \
    -days 3650 -subj "/CN=sc-e2e-ca" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null
  make_cert apiserver kube-apiserver "" serverAuth \
    "DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:$KUBERNETES_SERVICE_IP,IP:$NODE_IP"
  make_cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters clientAuth
  make_cert admin sc-e2e-admin system:masters clientAuth
  make_cert kube-controller-manager system:kube-controller-manager "" clientAuth
  make_cert kube-scheduler system:kube-scheduler "" clientAuth
  make_cert kube-proxy system:kube-proxy "" clientAuth
  make_cert kubelet "system:node:$NODE_NAME" system:nodes clientAuth
  openssl genrsa -out "$PKI_DIR/sa.key" 2048 2>/dev/null
  openssl rsa -in "$PKI_DIR/sa.key" -pubout -out "$PKI_DIR/sa.pub" 2>/dev/null
}

write_kubeconfig() {
  local name="$1"
  cat >"$CONF_DIR/$name.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: sc-e2e
  cluster:
    certificate-authority: $PKI_DIR/ca.crt
    server: $APISERVER_URL
users:
- name: $name
  user:
    client-certificate: $PKI_DIR/$name.crt
    client-key: $PKI_DIR/$name.key
contexts:
- name: sc-e2e
  context:
    cluster: sc-e2e
    user: $name
current-context: sc-e2e
EOF
}

write_configs() {
  mkdir -p "$CONF_DIR" "$RUN_DIR/cni/net.d" "$RUN_DIR/cni/networks" "$RUN_DIR/flexvolume"
  local component
  for component in admin kube-controller-manager kube-scheduler kube-proxy kubelet; do
    write_kubeconfig "$component"
  done

  # Pods get a resolver that answers nothing (there is no cluster DNS), never the host's.
  echo "nameserver $NODE_IP" >"$CONF_DIR/resolv.conf"

  cat >"$RUN_DIR/cni/net.d/10-sc-e2e.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "sc-e2e",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{ "subnet": "$POD_SUBNET" }]],
        "routes": [{ "dst": "0.0.0.0/0" }],
        "dataDir": "$RUN_DIR/cni/networks"
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } }
  ]
}
EOF

  mkdir -p "$CONTAINERD_DIR"
  cat >"$CONTAINERD_DIR/config.toml" <<EOF
version = 2
root = "$CONTAINERD_DIR/root"
state = "$CONTAINERD_DIR/state"

[grpc]
  address = "$CONTAINERD_SOCK"

[plugins."io.containerd.internal.v1.opt"]
  path = "$CONTAINERD_DIR/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$SANDBOX_IMAGE"
  # These machines drop CAP_SYS_RESOURCE: runc cannot lower oom_score_adj, and every sandbox
  # would fail with "can't get final child's PID from pipe" without this.
  restrict_oom_score_adj = true
  # Pod network namespaces live under our state dir, so teardown finds them all.
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  # docker.io and the registry's own address resolve to the registry in the netns (plain HTTP on
  # loopback). An image it lacks fails to pull at once instead of waiting on a DNS that never answers.
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]
    endpoint = ["http://$REGISTRY_ADDR"]
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."$REGISTRY_ADDR"]
    endpoint = ["http://$REGISTRY_ADDR"]
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$RUN_DIR/cni/net.d"
    max_conf_num = 1
EOF

  mkdir -p "$REGISTRY_DIR"
  cat >"$CONF_DIR/registry.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $REGISTRY_DIR
  delete:
    enabled: true
http:
  addr: $REGISTRY_ADDR
EOF

  cat >"$CONF_DIR/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
failSwapOn: false
address: $NODE_IP
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: $PKI_DIR/ca.crt
authorization:
  mode: AlwaysAllow
clusterDomain: cluster.local
resolvConf: $CONF_DIR/resolv.conf
volumePluginDir: $RUN_DIR/flexvolume
# The images cannot be pulled again: never garbage-collect them, evict only on a full disk.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: "50Mi"
  nodefs.available: "1%"
  nodefs.inodesFree: "1%"
  imagefs.available: "1%"
serializeImagePulls: false
maxPods: 110
EOF

  cat >"$CONF_DIR/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: $CONF_DIR/kube-proxy.kubeconfig
hostnameOverride: $NODE_NAME
mode: iptables
clusterCIDR: $POD_SUBNET
bindAddress: $NODE_IP
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
# Zero: leave the host-wide conntrack table size and timeouts alone.
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
EOF

  mkdir -p "$BIN_DIR"
  cat >"$KUBECTL_WRAPPER.tmp" <<EOF
#!/bin/sh
# kubectl against the StoppableContainer e2e cluster (written by tests/e2e/cluster.sh up).
# KUBECONFIG rather than --kubeconfig: kubectl refuses flags before a plugin's name (kubectl sc).
KUBECONFIG=$ADMIN_KUBECONFIG exec nsenter --net=$NETNS_PATH -- $HOST_KUBECTL "\$@"
EOF
  chmod +x "$KUBECTL_WRAPPER.tmp"
  mv "$KUBECTL_WRAPPER.tmp" "$KUBECTL_WRAPPER"
}

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
  [[ -e "$NETNS_PATH" ]] || touch "$RUN_DIR/netns-created"
  return 0
}

setup_netns() {
  log "network namespace $NETNS ($NODE_CIDR)"
  ip netns add "$NETNS"
  ip -n "$NETNS" link set lo up
  # Both veth ends stay inside the namespace; the default route points at an address nobody
  # holds, so nothing can leave (the kernel has no dummy module here).
  ip -n "$NETNS" link add v0 type veth peer name v1
  ip -n "$NETNS" addr add "$NODE_CIDR" dev v0
  ip -n "$NETNS" link set v0 up
  ip -n "$NETNS" link set v1 up
  ip -n "$NETNS" route add default via "$NETNS_GATEWAY"
}

wait_until() {
  # wait_until DESCRIPTION TIMEOUT_SECONDS COMMAND...
  local description="$1" timeout="$2"
  shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "timed out after ${timeout}s waiting for $description"
    started_components_alive
    sleep 0.5
  done
}

etcd_healthy() { in_netns curl -fsS --max-time 2 http://127.0.0.1:2379/health; }
registry_ready() { in_netns curl -fsS --max-time 2 "http://$REGISTRY_ADDR/v2/"; }
kubelet_healthy() { in_netns curl -fsS --max-time 2 http://127.0.0.1:10248/healthz; }
apiserver_ready() { kubectl_admin get --raw /readyz; }
node_ready() {
  [[ "$(kubectl_admin get node "$NODE_NAME" \
    -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == True ]]
}
default_service_account_exists() { kubectl_admin -n default get serviceaccount default; }
kubernetes_service_routed() {
  # kube-proxy's DNAT rule for the `kubernetes` Service, which in-cluster clients dial.
  in_netns iptables-save -t nat | grep -q -- "-d $KUBERNETES_SERVICE_IP/32 .*--dport 443"
}

start_control_plane() {
  local k8s_bin="$1"
  mkdir -p "$ETCD_DIR"
  start_component etcd /usr/bin/etcd --name sc-e2e --data-dir "$ETCD_DIR" \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster sc-e2e=http://127.0.0.1:2380 --listen-metrics-urls http://127.0.0.1:2381
  wait_until "etcd" 60 etcd_healthy

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
  wait_until "kube-apiserver /readyz" 90 apiserver_ready

  start_component registry /usr/bin/docker-registry serve "$CONF_DIR/registry.yml"
  wait_until "the registry" 30 registry_ready

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
  wait_until "containerd" 60 ctr -a "$CONTAINERD_SOCK" version

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
    --node-ip="$NODE_IP" --hostname-override="$NODE_NAME" --v=1
  start_component kube-proxy "$k8s_bin/kube-proxy" --config="$CONF_DIR/kube-proxy.yaml" --v=1
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
  require_root
  if [[ -d "$RUN_DIR" ]] && cluster_healthy; then
    log "already up"
    print_usage_hint
    return 0
  fi
  if [[ -d "$RUN_DIR" || -e "$NETNS_PATH" ]]; then
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
  setup_netns
  log "PKI and configuration in $RUN_DIR"
  write_pki
  write_configs
  start_control_plane "$k8s_bin"
  start_node "$k8s_bin" "$base_images"
  wait_until "kubelet /healthz" "$UP_TIMEOUT" kubelet_healthy
  wait_until "node $NODE_NAME Ready" "$UP_TIMEOUT" node_ready
  wait_until "the default service account" 60 default_service_account_exists
  wait_until "kube-proxy's rule for the kubernetes Service ($KUBERNETES_SERVICE_IP:443)" 60 \
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

The e2e cluster is up (node $NODE_NAME, Kubernetes 1.20.2, network namespace $NETNS).
  $0 kubectl get pods -A
or
  export KUBECONFIG=$ADMIN_KUBECONFIG   # reachable only inside the netns:
  $KUBECTL_WRAPPER get pods -A          # (nsenter --net=$NETNS_PATH kubectl ...)
Images: $0 import-image IMAGE.tar (docker-archive); pods use imagePullPolicy: Never.
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
# $SC_DATA_ROOT); then containerd, kubelet and kube-proxy start again and kubelet recreates
# the pods bound to the node.
cmd_reboot_node() {
  require_root
  require_up
  log "rebooting the node: stopping kubelet, pods and containerd"
  local started=$SECONDS
  stop_node
  unmount_tree "$KUBELET_ROOT"
  unmount_tree "$SC_DATA_ROOT"
  unmount_tree "$CONTAINERD_DIR/state"
  remove_pod_cgroups
  remove_tree "$CONTAINERD_DIR/state"
  log "starting containerd, kubelet and kube-proxy again"
  local k8s_bin
  k8s_bin="$("$E2E_DIR/lib/k8s-binaries.sh")"
  trap on_up_failure EXIT
  start_node "$k8s_bin" ""
  wait_until "kubelet /healthz" "$UP_TIMEOUT" kubelet_healthy
  wait_until "node $NODE_NAME Ready" "$UP_TIMEOUT" node_ready
  trap - EXIT
  log "node rebooted in $((SECONDS - started)) s"
}

cmd_down() {
  require_root
  if [[ ! -d "$RUN_DIR" && ! -e "$NETNS_PATH" ]]; then
    log "nothing to tear down"
    return 0
  fi
  log "tearing down"
  stop_node
  local component
  for component in registry kube-scheduler kube-controller-manager kube-apiserver etcd; do
    stop_component "$component"
  done

  local unmount_ok=0
  unmount_tree "$KUBELET_ROOT" || unmount_ok=1
  unmount_tree "$SC_DATA_ROOT" || unmount_ok=1
  unmount_tree "$RUN_DIR" || unmount_ok=1
  unmount_tree /run/containerd || unmount_ok=1
  remove_pod_cgroups

  if [[ -e "$NETNS_PATH" ]]; then
    if [[ -f "$RUN_DIR/netns-created" || ! -d "$RUN_DIR" ]]; then
      log "removing network namespace $NETNS"
      ip netns delete "$NETNS" || log "warning: could not delete netns $NETNS"
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
  if ((any == 0)) && [[ -e "$NETNS_PATH" ]]; then
    kubectl_admin get nodes -o wide 2>&1 || true
  fi
  cluster_healthy
}

require_up() {
  [[ -e "$NETNS_PATH" && -f "$ADMIN_KUBECONFIG" ]] ||
    die "the e2e cluster is not up (no $NETNS_PATH or $ADMIN_KUBECONFIG); run: $0 up"
}

import_images() {
  SC_E2E_CONTAINERD_SOCK="$CONTAINERD_SOCK" "$E2E_DIR/images/import.sh" "$@"
}

# push_image TAR REF: copies a docker-archive into the registry. REF names it as pods do
# (`docker.io/library/my-app:latest`, or `my-app:latest`); the registry stores it under the path.
push_image() {
  local archive="$1" ref="$2" path
  [[ -f "$archive" ]] || die "push-image: $archive is not a file"
  path="${ref#docker.io/}"
  path="${path#"$REGISTRY_ADDR"/}"
  [[ "$path" == */* ]] || path="library/$path"
  in_netns skopeo --insecure-policy copy --quiet --dest-tls-verify=false \
    "docker-archive:$archive" "docker://$REGISTRY_ADDR/$path"
}

cmd_env() {
  cat <<EOF
export SC_E2E_DIR=$WORK_DIR
export SC_E2E_NETNS=$NETNS
export SC_E2E_NETNS_PATH=$NETNS_PATH
export SC_E2E_CONTAINERD_SOCK=$CONTAINERD_SOCK
export SC_E2E_REGISTRY=$REGISTRY_ADDR
export SC_E2E_NODE_NAME=$NODE_NAME
export SC_E2E_KUBELET_ROOT=$KUBELET_ROOT
export KUBECONFIG=$ADMIN_KUBECONFIG
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
    kubectl) require_up; kubectl_admin "$@" ;;
    env) cmd_env ;;
    import-image)
      require_root
      [[ $# -gt 0 ]] || die "usage: $0 import-image IMAGE.tar..."
      is_running containerd || die "containerd of the e2e cluster is not running; run: $0 up"
      import_images "$@"
      ;;
    push-image)
      require_root
      [[ $# -eq 2 ]] || die "usage: $0 push-image IMAGE.tar REF"
      is_running registry || die "the registry of the e2e cluster is not running; run: $0 up"
      push_image "$1" "$2"
      ;;
    netns) require_up; in_netns "$@" ;;
    reboot-node) cmd_reboot_node ;;
    logs) cmd_logs "$@" ;;
    *)
      sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
      [[ -z "$command" || "$command" == help || "$command" == -h || "$command" == --help ]]
      ;;
  esac
}

main "$@"
