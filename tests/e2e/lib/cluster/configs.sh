# shellcheck shell=bash disable=SC2154  # the paths, names and addresses are cluster.sh's constants
# The e2e cluster's PKI and configuration files: certificates, kubeconfigs, CNI, containerd,
# registry, kubelet and kube-proxy configs, and the kubectl wrapper. Sourced by cluster.sh after
# its constants; `up` calls write_pki and write_configs.

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
  write_kubelet_cert
  openssl genrsa -out "$PKI_DIR/sa.key" 2048 2>/dev/null
  openssl rsa -in "$PKI_DIR/sa.key" -pubout -out "$PKI_DIR/sa.pub" 2>/dev/null
}

# The kubelet's client certificate names its node (the Node authorizer and NodeRestriction let it
# act only for that node), so a node with a new name needs a new one.
write_kubelet_cert() {
  make_cert kubelet "system:node:$NODE_NAME" system:nodes clientAuth
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

# kube-proxy reports for its node, by name.
write_kube_proxy_config() {
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

  write_kube_proxy_config

  mkdir -p "$BIN_DIR"
  cat >"$KUBECTL_WRAPPER.tmp" <<EOF
#!/bin/sh
# kubectl against the StoppableContainer e2e cluster (written by tests/e2e/cluster.sh up).
# KUBECONFIG rather than --kubeconfig: kubectl refuses flags before a plugin's name (kubectl sc).
KUBECONFIG=$E2E_ADMIN_KUBECONFIG exec nsenter --net=$E2E_NETNS_PATH -- $E2E_HOST_KUBECTL "\$@"
EOF
  chmod +x "$KUBECTL_WRAPPER.tmp"
  mv "$KUBECTL_WRAPPER.tmp" "$KUBECTL_WRAPPER"
}
