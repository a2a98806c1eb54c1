#!/usr/bin/env bash
# Proves the e2e harness end to end: brings the cluster up, runs a busybox pod (Running,
# `kubectl exec`, `kubectl logs`, TCP to the `kubernetes` Service at 10.96.0.1:443 reaching the apiserver,
# the service-account files in-cluster clients read),
# runs the Debian image to completion, binds a claim of the default StorageClass to a loop-backed
# ext4 volume of the pool, replaces the node (a Deployment's pod comes back on the new node with
# the claim's file), gets the volume back after the claim's deletion, deletes the pods, tears the
# cluster down and checks that no mount, no process and no loop device of the cluster is left.
#
# Usage: tests/e2e/smoke.sh   (SC_E2E_KEEP=1 leaves the cluster up for a look afterwards)
set -euo pipefail

# shellcheck source=tests/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
readonly CLUSTER="$E2E_DIR/cluster.sh"

passed=0
failed=0

check() {
  # check DESCRIPTION COMMAND...: runs one check, records the outcome, never aborts the run.
  local description="$1"
  shift
  local output
  if output="$("$@" 2>&1)"; then
    passed=$((passed + 1))
    printf 'ok   - %s\n' "$description"
  else
    failed=$((failed + 1))
    printf 'FAIL - %s\n%s\n' "$description" "$(tail -n 20 <<<"$output" | sed 's/^/       /')"
  fi
}

pod_running() {
  e2e_kubectl wait --for=condition=Ready pod/smoke-busybox --timeout=120s
}

exec_works() {
  local output
  # shellcheck disable=SC2016 # expanded by the pod's shell
  output="$(e2e_kubectl exec smoke-busybox -- sh -c 'echo exec-ok-$((6 * 7))')"
  [[ "$output" == exec-ok-42 ]] || { echo "kubectl exec printed: $output"; return 1; }
}

logs_work() {
  local output
  output="$(e2e_kubectl logs smoke-busybox)"
  grep -qx 'smoke-log-line' <<<"$output" || { echo "kubectl logs printed: $output"; return 1; }
}

service_tcp_connect() {
  # -e runs a program once connected: exit 0 means the TCP handshake with the apiserver
  # (through kube-proxy's DNAT) succeeded.
  e2e_kubectl exec smoke-busybox -- nc -w 5 10.96.0.1 443 -e true
}

service_reaches_apiserver() {
  # Busybox's own HTTPS client crashes (Debian 1.35 static), so speak plain HTTP to the TLS
  # port: Go's TLS server answers exactly this, which only the apiserver would say here.
  local output
  output="$(e2e_kubectl exec smoke-busybox -- sh -c "printf 'GET /version HTTP/1.0\r\n\r\n' | nc -w 5 10.96.0.1 443")"
  grep -q 'Client sent an HTTP request to an HTTPS server' <<<"$output" ||
    { echo "10.96.0.1:443 answered: $output"; return 1; }
}

in_cluster_config_present() {
  # What kube-rs' in-cluster config reads: the Service env and the service-account files.
  local output
  # shellcheck disable=SC2016 # expanded by the pod's shell
  output="$(e2e_kubectl exec smoke-busybox -- sh -c 'd=/var/run/secrets/kubernetes.io/serviceaccount;
    test -s $d/token && test -s $d/ca.crt && test -s $d/namespace &&
    echo "$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT $(cat $d/namespace)"')"
  [[ "$output" == "10.96.0.1:443 default" ]] || { echo "in-cluster config: $output"; return 1; }
}

debian_pod_completes() {
  e2e_kubectl wait --for=jsonpath='{.status.phase}'=Succeeded pod/smoke-debian --timeout=120s 2>/dev/null ||
    # kubectl 1.32 knows jsonpath waits; fall back to polling in case of an older client.
    for _ in $(seq 1 120); do
      [[ "$(e2e_kubectl get pod smoke-debian -o 'jsonpath={.status.phase}')" == Succeeded ]] && break
      sleep 1
    done
  local output
  output="$(e2e_kubectl logs smoke-debian)"
  grep -q '^bookworm-ok 12' <<<"$output" || { echo "debian pod printed: $output"; return 1; }
}

busybox_container_id() {
  e2e_kubectl get pod smoke-busybox -o 'jsonpath={.status.containerStatuses[0].containerID}'
}

pod_recreated_after_node_reboot() {
  local before after
  before="$(busybox_container_id)"
  "$CLUSTER" reboot-node
  # Kubelet has to notice the dead sandbox and start a new container: wait for a new ID.
  for _ in $(seq 1 120); do
    after="$(busybox_container_id)"
    [[ -n "$after" && "$after" != "$before" ]] && break
    sleep 1
  done
  [[ -n "$after" && "$after" != "$before" ]] || { echo "container ID still $after"; return 1; }
  e2e_kubectl wait --for=condition=Ready pod/smoke-busybox --timeout=120s
  exec_works
}

# A Deployment mounting a claim of the default class (nothing names the class or a volume).
apply_claim_deployment() {
  e2e_kubectl apply -f - <<'EOF'
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: smoke-data, namespace: default}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 100Mi}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: smoke-disk, namespace: default}
spec:
  replicas: 1
  selector: {matchLabels: {app: smoke-disk}}
  template:
    metadata: {labels: {app: smoke-disk}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: sc-test/busybox:1
        imagePullPolicy: IfNotPresent
        command: ["sleep", "3600"]
        volumeMounts: [{name: data, mountPath: /data}]
      volumes: [{name: data, persistentVolumeClaim: {claimName: smoke-data}}]
EOF
}

# disk_pod [NODE]: the Deployment's Ready pod (on NODE, when given).
disk_pod() {
  local selector=()
  [[ -z "${1:-}" ]] || selector=(--field-selector "spec.nodeName=$1")
  e2e_kubectl get pods -l app=smoke-disk "${selector[@]}" \
    -o 'jsonpath={range .items[*]}{.metadata.name} {.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' |
    awk '$2 == "True" { print $1; exit }'
}

claim_binds_a_loop_disk() {
  apply_claim_deployment >/dev/null
  local pod="" volume disk fstype
  for _ in $(seq 1 120); do
    pod="$(disk_pod)"
    [[ -z "$pod" ]] || break
    sleep 1
  done
  [[ -n "$pod" ]] || { e2e_kubectl describe pvc smoke-data; return 1; }
  volume="$(e2e_kubectl get pvc smoke-data -o 'jsonpath={.spec.volumeName}')"
  disk="$(e2e_kubectl get pv "$volume" -o 'jsonpath={.spec.local.path}')"
  [[ -b "$disk" && "$(losetup -n -O BACK-FILE "$disk")" == "$E2E_WORK_DIR/run/disks/"* ]] ||
    { echo "PV $volume names $disk, which is not a loop device over the pool's images"; return 1; }
  # shellcheck disable=SC2016 # awk's fields, in the pod
  fstype="$(e2e_kubectl exec "$pod" -- awk '$2 == "/data" { print $3 }' /proc/mounts)"
  [[ "$fstype" == ext4 ]] || { echo "/data is $fstype, not ext4"; return 1; }
  e2e_kubectl exec "$pod" -- sh -c 'echo smoke-on-disk > /data/proof && sync && df -k /data'
}

pod_and_disk_on_the_new_node() {
  local old_node new_node pod=""
  old_node="$(e2e_node_name)"
  "$CLUSTER" replace-node
  new_node="$(e2e_node_name)"
  [[ "$new_node" != "$old_node" ]] || { echo "the node kept its name $old_node"; return 1; }
  if e2e_kubectl get node "$old_node" >/dev/null 2>&1; then echo "Node $old_node still exists"; return 1; fi
  # The pod garbage collector removes the old node's pod after its 40 s quarantine.
  for _ in $(seq 1 240); do
    pod="$(disk_pod "$new_node")"
    [[ -z "$pod" ]] || break
    sleep 1
  done
  [[ -n "$pod" ]] || { e2e_kubectl get pods -o wide; return 1; }
  [[ "$(e2e_kubectl exec "$pod" -- cat /data/proof)" == smoke-on-disk ]]
}

released_volume_recycled() {
  local volume phase=""
  volume="$(e2e_kubectl get pvc smoke-data -o 'jsonpath={.spec.volumeName}')"
  e2e_kubectl delete deployment smoke-disk --wait=true --timeout=60s
  e2e_kubectl delete pvc smoke-data --wait=true --timeout=60s
  for _ in $(seq 1 60); do
    phase="$(e2e_kubectl get pv "$volume" -o 'jsonpath={.status.phase}' 2>/dev/null || true)"
    [[ "$phase" != Available ]] || return 0
    sleep 1
  done
  echo "PV $volume is $phase, not Available, a minute after its claim was deleted"
  "$CLUSTER" logs pv-recycler 20
  return 1
}

pods_deleted() {
  # After replace-node the pod garbage collector may have removed them already.
  e2e_kubectl delete pod smoke-busybox smoke-debian --ignore-not-found --wait=true --timeout=60s
}

no_kubelet_mounts_left() {
  local count
  count="$(grep -c /var/lib/kubelet /proc/self/mountinfo || true)"
  [[ "$count" -eq 0 ]] || { echo "$count mounts under /var/lib/kubelet remain:"; grep /var/lib/kubelet /proc/self/mountinfo; return 1; }
}

no_cluster_mounts_left() {
  local remaining
  remaining="$(grep -E " ($E2E_WORK_DIR|$NODE_DATA_ROOT|/run/containerd|/run/netns/$E2E_NETNS)" /proc/self/mountinfo || true)"
  [[ -z "$remaining" ]] || { echo "mounts remain: $remaining"; return 1; }
}

no_cluster_processes_left() {
  local proc exe cmdline leftovers=""
  for proc in /proc/[0-9]*; do
    exe="$(readlink "$proc/exe" 2>/dev/null)" || continue
    cmdline="$(tr '\0' ' ' 2>/dev/null <"$proc/cmdline")" || continue
    # Our binaries, or anything whose command line names the cluster's work dir (containerd,
    # its shims, etcd) — but not this check's own shell.
    if [[ "$exe" == "$K8S_BIN_DIR/"* || ( "$cmdline" == *"$E2E_WORK_DIR/run"* && "${proc#/proc/}" != "$$" ) ]]; then
      leftovers+="${proc#/proc/} $exe $cmdline"$'\n'
    fi
  done
  [[ -z "$leftovers" ]] || { echo "processes left: $leftovers"; return 1; }
}

netns_removed() {
  [[ ! -e "$E2E_NETNS_PATH" ]]
}

no_pool_disk_left() {
  local leftovers
  leftovers="$(losetup -n -O NAME,BACK-FILE | grep -F "$E2E_WORK_DIR/run/disks/" || true)"
  [[ -z "$leftovers" ]] || { echo "loop devices left: $leftovers"; return 1; }
}

teardown() {
  local status=$?
  trap - EXIT
  if [[ "${SC_E2E_KEEP:-0}" == 1 ]]; then
    echo "SC_E2E_KEEP=1: leaving the cluster up; tear it down with $CLUSTER down" >&2
  else
    local down_started=$SECONDS
    check "cluster.sh down succeeds" "$CLUSTER" down
    echo "down took $((SECONDS - down_started)) s" >&2
    check "no mount under /var/lib/kubelet is left" no_kubelet_mounts_left
    check "no other cluster mount is left" no_cluster_mounts_left
    check "no cluster process is left" no_cluster_processes_left
    check "the network namespace is gone" netns_removed
    check "no loop device of the storage pool is left" no_pool_disk_left
  fi
  echo
  echo "smoke: $passed passed, $failed failed"
  if ((failed > 0 || status != 0)); then
    exit 1
  fi
  exit 0
}

main() {
  trap teardown EXIT
  local up_started=$SECONDS
  if ! "$CLUSTER" up; then
    failed=$((failed + 1))
    echo "FAIL - cluster.sh up"
    return 1
  fi
  passed=$((passed + 1))
  echo "ok   - cluster.sh up ($((SECONDS - up_started)) s)"

  e2e_kubectl apply -f - <<'EOF'
apiVersion: v1
kind: Pod
metadata:
  name: smoke-busybox
  namespace: default
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: sc-test/busybox:1
    imagePullPolicy: Never
    command: ["/bin/sh", "-c", "echo smoke-log-line; exec sleep 3600"]
---
apiVersion: v1
kind: Pod
metadata:
  name: smoke-debian
  namespace: default
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: sc-test/debian:bookworm
    imagePullPolicy: Never
    command: ["/bin/bash", "-c", "echo bookworm-ok $(cut -d. -f1 /etc/debian_version)"]
EOF
  check "busybox pod reaches Running/Ready" pod_running
  check "kubectl exec runs a command in the pod" exec_works
  check "kubectl logs shows the pod's output" logs_work
  check "a pod connects to the kubernetes Service (10.96.0.1:443, TCP)" service_tcp_connect
  check "the kubernetes Service leads to the apiserver's TLS port" service_reaches_apiserver
  check "pods get the in-cluster config (Service env, token, CA)" in_cluster_config_present
  check "the Debian image runs to completion" debian_pod_completes
  check "after reboot-node the pod runs again (new container, exec works)" pod_recreated_after_node_reboot
  check "a claim of the default class binds a loop-backed volume, ext4 in the pod" claim_binds_a_loop_disk
  check "after replace-node the Deployment's pod runs on the new node, with the disk's file" pod_and_disk_on_the_new_node
  check "the claim deleted, the harness wipes its volume and makes it Available" released_volume_recycled
  check "pods are deleted" pods_deleted
}

main "$@"
