# shellcheck shell=bash disable=SC2034  # PENDING_SCENARIOS is read by run.sh
# The scenarios of issue 13 (`spec.storage`: the persistent layer on a PersistentVolumeClaim) and
# the harness's own block storage and node replacement they stand on (11, 12, 13 in the SCENARIOS
# table of lib/scenarios.sh). Sourced by tests/e2e/run.sh after lib/scenarios.sh, whose helpers
# (kc, in_sc, wait_for, expect_*, step, fail) they use.
#
# The claims bind the pool of cluster.sh (lib/cluster/pv-pool.sh): loop-device-backed `local`
# PersistentVolumes of the default StorageClass $E2E_STORAGE_CLASS, formatted ext4 by kubelet.

readonly STORAGE_HARNESS_NS=e2e-storage-harness
readonly STORAGE_NS=e2e-storage
readonly STORAGE_NODE_NS=e2e-storage-node
# The workload image of the storage scenarios exists only in the cluster's registry (pushed, never
# imported), so the first node pulls it as every later node does: the digest kubelet reports is a
# registry digest a new node can pull (an imported image's is not).
readonly STORAGE_IMAGE=sc-test/registry-busybox:1
readonly STORAGE_POOL_LABEL=stoppablecontainer.test/e2e-pool=loop-disks

# --- helpers -----------------------------------------------------------------------------------

# Pushes $STORAGE_IMAGE (the busybox base image under another name) to the registry.
storage_push_image() {
  local tag archive
  while read -r tag archive; do
    if [[ "$tag" == sc-test/busybox:1 ]]; then
      "$PRODUCT_CLUSTER" push-image "$archive" "$STORAGE_IMAGE" >&2
      return 0
    fi
  done < <("$E2E_DIR/images/base-images.sh" "$E2E_WORK_DIR/images")
  fail "base-images.sh listed no sc-test/busybox:1 to push as $STORAGE_IMAGE"
}

claim_field() { kc -n "$1" get pvc "$2" -o "jsonpath=$3" 2>/dev/null; }
claim_exists() { kc -n "$1" get pvc "$2" >/dev/null 2>&1; }
claim_gone() { ! claim_exists "$1" "$2"; }
claim_bound() { [[ "$(claim_field "$1" "$2" '{.status.phase}')" == Bound ]]; }
# claim_disk NAMESPACE CLAIM: the loop device of the pool PV the claim is bound to.
claim_disk() {
  local volume
  volume="$(claim_field "$1" "$2" '{.spec.volumeName}')"
  [[ -n "$volume" ]] || return 1
  kc get pv "$volume" -o 'jsonpath={.spec.local.path}'
}
# claim_mount_dir NAMESPACE CLAIM: where kubelet mounts the claim's filesystem on the node.
claim_mount_dir() {
  echo "$SC_E2E_KUBELET_ROOT/plugins/kubernetes.io/local-volume/mounts/$(claim_field "$1" "$2" '{.spec.volumeName}')"
}
device_mounted() {
  local number
  number="$(printf '%d:%d' "0x$(stat -c %t "$1")" "0x$(stat -c %T "$1")")"
  awk -v device="$number" '$3 == device { found = 1 } END { exit !found }' /proc/self/mountinfo
}
device_unmounted() { ! device_mounted "$1"; }

# with_disk_mounted DEVICE COMMAND...: runs COMMAND with a read-only mount of an unused disk of
# the pool as its last argument, as an admin looks at a detached disk.
with_disk_mounted() {
  local device="$1" mount_point status=0
  shift
  mount_point="$(mktemp -d)"
  mount -o ro,noload "$device" "$mount_point"
  "$@" "$mount_point" || status=$?
  umount "$mount_point"
  rmdir "$mount_point"
  return "$status"
}
cat_in() { cat "$2/$1"; }

pool_available() {
  kc get pv -l "$STORAGE_POOL_LABEL" \
    -o 'jsonpath={range .items[?(@.status.phase=="Available")]}{.metadata.name}{"\n"}{end}' 2>/dev/null |
    grep -c . || true
}
pool_volume_available() { [[ "$(kc get pv "$1" -o 'jsonpath={.status.phase}' 2>/dev/null)" == Available ]]; }

# sc_messages NAMESPACE NAME: the status message and the conditions' messages.
sc_messages() { sc_field "$1" "$2" '{.status.message}{"\n"}{range .status.conditions[*]}{.message}{"\n"}{end}'; }
# The operator's words for a claim of the SC's claim name that it did not create (operator/src/storage/claim.rs).
readonly FOREIGN_CLAIM_WORDS="is not the claim the operator created"
# status_refuses_claim NAMESPACE NAME CLAIM: the status says CLAIM is not this SC's.
status_refuses_claim() {
  local messages
  messages="$(sc_messages "$1" "$2")"
  [[ "$messages" == *"$3"* && "$messages" == *"$FOREIGN_CLAIM_WORDS"* ]]
}

instance_pods() { kc -n "$1" get pods -l "stoppablecontainer.xtlsoft.top/instance=$2" -o name 2>/dev/null; }
no_pod_of() { [[ -z "$(instance_pods "$1" "$2")" ]]; }
pod_node() { kc -n "$1" get pod "$2" -o 'jsonpath={.spec.nodeName}' 2>/dev/null; }

node_plugin_on() {
  local node="$1"
  [[ "$(kc -n "$PRODUCT_NAMESPACE" get pods -l app.kubernetes.io/component=node --field-selector "spec.nodeName=$node" \
    -o 'jsonpath={.items[*].status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == True ]] &&
    kc get csinode "$node" -o 'jsonpath={.spec.drivers[*].name}' 2>/dev/null | grep -qw rootfs.stoppablecontainer.xtlsoft.top
}

# sc_with_storage NAMESPACE NAME SIZE WHEN_DELETED: a StoppableContainer whose rootfs is on a claim.
sc_with_storage() {
  kc apply -f - >/dev/null <<YAML
apiVersion: stoppablecontainer.xtlsoft.top/v1alpha1
kind: StoppableContainer
metadata: {name: $2, namespace: $1}
spec:
  running: true
  storage: {size: $3, whenDeleted: $4}
  template:
    spec:
      terminationGracePeriodSeconds: 5
      containers:
        - name: main
          image: $STORAGE_IMAGE
          command: ["sleep", "1000000"]
YAML
}

# write_files NAMESPACE NAME TOKEN: a note, a directory tree, an 8 MiB blob and its checksum file,
# synced; prints the blob's sha256.
write_files() {
  in_sc "$1" "$2" sh -c "echo $3 > /root/note.txt && mkdir -p /srv/a/b && echo deep > /srv/a/b/c.txt &&
    dd if=/dev/urandom of=/root/blob bs=1M count=8 2>/dev/null && cd /root && sha256sum blob > blob.sha256 && sync"
  in_sc "$1" "$2" cat /root/blob.sha256 | cut -d' ' -f1
}

expect_files() {
  local ns="$1" name="$2" token="$3" blob_sha="$4" when="$5"
  expect_eq "the note $when" "$token" "$(in_sc "$ns" "$name" cat /root/note.txt)"
  expect_eq "the directory tree $when" deep "$(in_sc "$ns" "$name" cat /srv/a/b/c.txt)"
  expect_eq "the 8 MiB blob's sha256 $when" "$blob_sha" "$(in_sc "$ns" "$name" sha256sum /root/blob | cut -d' ' -f1)"
  expect_eq "the checksum file $when" "$blob_sha" "$(in_sc "$ns" "$name" cat /root/blob.sha256 | cut -d' ' -f1)"
}

# --- 11. the harness: block storage through a StorageClass, and node replacement --------------

scenario_storage_harness() {
  local ns=$STORAGE_HARNESS_NS pod old_node new_node available_before
  fresh_namespace "$ns"
  available_before="$(pool_available)"
  ((available_before > 0)) || fail "no Available volume in the pool: $("$PRODUCT_CLUSTER" volumes)"
  step "a claim of the default class ($E2E_STORAGE_CLASS) and a Deployment that mounts it"
  kc -n "$ns" apply -f - >/dev/null <<'YAML'
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 200Mi}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: plain}
spec:
  replicas: 1
  selector: {matchLabels: {app: plain}}
  template:
    metadata: {labels: {app: plain}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: main
          image: sc-test/busybox:1
          imagePullPolicy: IfNotPresent
          command: ["sleep", "1000000"]
          volumeMounts: [{name: data, mountPath: /data}]
      volumes: [{name: data, persistentVolumeClaim: {claimName: data}}]
YAML
  wait_for "the Deployment's pod to be Ready" 120 kc -n "$ns" wait --for=condition=Available deployment/plain --timeout=5s
  pod="$(kc -n "$ns" get pods -l app=plain -o 'jsonpath={.items[0].metadata.name}')"
  expect_eq "the claim's class" "$E2E_STORAGE_CLASS" "$(claim_field "$ns" data '{.spec.storageClassName}')"
  expect_eq "the claim's phase" Bound "$(claim_field "$ns" data '{.status.phase}')"
  expect_eq "the smallest volume that fits" 256Mi "$(claim_field "$ns" data '{.status.capacity.storage}')"
  local disk
  disk="$(claim_disk "$ns" data)"
  [[ -b "$disk" ]] || fail "the claim's volume names $disk, not a block device"
  expect_contains "the disk's backing file" "$(losetup -n -O BACK-FILE "$disk")" "$E2E_WORK_DIR/run/disks/"
  # shellcheck disable=SC2016  # awk's fields, in the pod
  expect_eq "the filesystem kubelet made on the disk" ext4 \
    "$(kc -n "$ns" exec "$pod" -- awk '$2 == "/data" { print $3 }' /proc/mounts)"
  local size_kib
  size_kib="$(kc -n "$ns" exec "$pod" -- df -k /data | awk 'NR == 2 { print $2 }')"
  ((size_kib > 200 * 1024 && size_kib <= 256 * 1024)) || fail "df shows $size_kib KiB for a 256Mi disk"
  kc -n "$ns" exec "$pod" -- sh -c 'echo on-the-disk > /data/proof && dd if=/dev/urandom of=/data/blob bs=1M count=4 conv=fsync 2>/dev/null'
  local blob_sha
  blob_sha="$(kc -n "$ns" exec "$pod" -- sha256sum /data/blob | cut -d' ' -f1)"

  old_node="$(e2e_node_name)"
  step "cluster.sh replace-node: $old_node's disk wiped, a node with a new name joins"
  local marker
  for marker in "$SC_E2E_KUBELET_ROOT" "$NODE_DATA_ROOT"; do touch "$marker/.e2e-old-node"; done
  "$PRODUCT_CLUSTER" replace-node >&2
  for marker in "$SC_E2E_KUBELET_ROOT" "$NODE_DATA_ROOT"; do
    [[ ! -e "$marker/.e2e-old-node" ]] || fail "$marker/.e2e-old-node survived the node replacement"
  done
  new_node="$(e2e_node_name)"
  [[ "$new_node" != "$old_node" ]] || fail "the node kept its name $old_node"
  kc get node "$old_node" >/dev/null 2>&1 && fail "the Node $old_node still exists"
  expect_eq "the new node's pool label" "$E2E_NODE_POOL_LABEL_VALUE" \
    "$(kc get node "$new_node" -o "jsonpath={.metadata.labels.${E2E_NODE_POOL_LABEL_KEY//./\\.}}")"
  step "the node plugin DaemonSet runs on $new_node and kubelet lists the driver"
  wait_for "the node plugin on $new_node" 240 node_plugin_on "$new_node"
  step "the Deployment's pod comes back on $new_node with the disk's files"
  wait_for "a Ready pod of the Deployment on $new_node" 240 bash -c \
    "kubectl -n $ns get pods -l app=plain --field-selector spec.nodeName=$new_node -o 'jsonpath={.items[*].status.conditions[?(@.type==\"Ready\")].status}' | grep -qx True"
  pod="$(kc -n "$ns" get pods -l app=plain --field-selector "spec.nodeName=$new_node" -o 'jsonpath={.items[0].metadata.name}')"
  expect_eq "the file on the disk after the node replacement" on-the-disk "$(kc -n "$ns" exec "$pod" -- cat /data/proof)"
  expect_eq "the fsync'ed blob after the node replacement" "$blob_sha" \
    "$(kc -n "$ns" exec "$pod" -- sha256sum /data/blob | cut -d' ' -f1)"

  step "the claim deleted: the harness wipes its volume and the pool gets it back"
  local volume
  volume="$(claim_field "$ns" data '{.spec.volumeName}')"
  kc -n "$ns" delete deployment plain --wait=true >/dev/null
  kc -n "$ns" delete pvc data --wait=true --timeout=120s >/dev/null
  wait_for "PV $volume to be Available again" 120 pool_volume_available "$volume"
  expect_eq "Available volumes in the pool" "$available_before" "$(pool_available)"
  blkid -p "$disk" >/dev/null 2>&1 && fail "the recycled disk $disk still holds a filesystem: $(blkid -p "$disk")"
  return 0
}

# --- 12. spec.storage: stop holds no pod, start brings every file back; quota; deletion --

scenario_storage_journey() {
  local ns=$STORAGE_NS token blob_sha claim uid
  token="$(random_token)"
  fresh_namespace "$ns"
  storage_push_image
  step "kubectl sc create journey --storage 256Mi (the default class), from an image only the registry has"
  kc sc -n "$ns" create journey --image "$STORAGE_IMAGE" --storage 256Mi -- sleep 1000000 >/dev/null
  wait_running "$ns" journey 240
  claim="$(sc_field "$ns" journey '{.status.storage.claimName}')"
  expect_eq "the claim's name" journey-rootfs "$claim"
  uid="$(claim_field "$ns" "$claim" '{.metadata.uid}')"
  expect_eq "the claim the SC records" "$uid" "$(sc_field "$ns" journey '{.status.storage.claimUID}')"
  expect_eq "the claim's class (the default)" "$E2E_STORAGE_CLASS" "$(claim_field "$ns" "$claim" '{.spec.storageClassName}')"
  expect_eq "the claim's phase" Bound "$(claim_field "$ns" "$claim" '{.status.phase}')"
  expect_eq "the claim's owner (whenDeleted: Delete)" StoppableContainer/journey \
    "$(claim_field "$ns" "$claim" '{.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}')"
  local status
  status="$(kc sc -n "$ns" status journey)"
  expect_contains "kubectl sc status: the claim" "$status" "PersistentVolumeClaim $claim, Bound"
  expect_contains "kubectl sc status: its capacity" "$status" "256Mi requested, 256Mi capacity"
  expect_contains "kubectl sc status: its class" "$status" "$E2E_STORAGE_CLASS"

  step "write files, an 8 MiB blob and its checksum; they land on the claim, not on the node's disk"
  blob_sha="$(write_files "$ns" journey "$token")"
  expect_eq "the note in the claim's upper layer (on the node: $(claim_mount_dir "$ns" "$claim"))" "$token" \
    "$(cat "$(claim_mount_dir "$ns" "$claim")/stoppablecontainer/upper/root/note.txt")"

  step "kubectl sc stop --wait: no pod of the SC exists, nothing holds the disk"
  local disk
  disk="$(claim_disk "$ns" "$claim")"
  kc sc -n "$ns" stop journey --wait --timeout 2m >/dev/null
  expect_eq "phase after stop" Stopped "$(sc_phase "$ns" journey)"
  wait_for "every pod of journey to be gone" 90 no_pod_of "$ns" journey
  wait_for "the claim's disk $disk to be unmounted from the node" 90 device_unmounted "$disk"
  expect_eq "the claim while stopped" Bound "$(claim_field "$ns" "$claim" '{.status.phase}')"
  expect_eq "the note on the stopped SC's disk" "$token" \
    "$(with_disk_mounted "$disk" cat_in stoppablecontainer/upper/root/note.txt)"

  step "kubectl sc start --wait: every file and the checksum intact"
  kc sc -n "$ns" start journey --wait --timeout 3m >/dev/null
  wait_running "$ns" journey 180
  expect_files "$ns" journey "$token" "$blob_sha" "after stop and start"

  step "quota: dd past the claim's 256Mi gives ENOSPC inside the rootfs; the workload survives"
  local restarts dd_output
  restarts="$(restart_count "$ns" journey)"
  dd_output="$(in_sc "$ns" journey sh -c 'dd if=/dev/zero of=/root/fill bs=1M count=512 2>&1; sync' || true)"
  expect_contains "dd past the claim's size" "$dd_output" "No space left on device"
  expect_eq "the workload still runs" alive "$(in_sc "$ns" journey echo alive)"
  expect_eq "the workload container did not restart" "$restarts" "$(restart_count "$ns" journey)"
  expect_eq "phase with a full claim" Running "$(sc_phase "$ns" journey)"
  expect_files "$ns" journey "$token" "$blob_sha" "with the claim full"
  in_sc "$ns" journey rm /root/fill
  expect_eq "freeing space makes writes work again" ok \
    "$(in_sc "$ns" journey sh -c 'dd if=/dev/zero of=/root/after bs=1M count=20 2>/dev/null && sync && echo ok')"

  step "kubectl sc delete (whenDeleted: Delete): the claim goes with it"
  local volume
  volume="$(claim_field "$ns" "$claim" '{.spec.volumeName}')"
  kc sc -n "$ns" delete journey --timeout 3m >/dev/null
  wait_for "the claim $claim to be deleted" 120 claim_gone "$ns" "$claim"
  wait_for "its volume $volume back in the pool (the harness wipes it)" 120 pool_volume_available "$volume"

  step "whenDeleted: Retain: the claim and its data stay after the delete"
  sc_with_storage "$ns" keeper 256Mi Retain
  wait_running "$ns" keeper 240
  local keeper_token keeper_claim_uid keeper_disk
  keeper_token="$(random_token)"
  in_sc "$ns" keeper sh -c "echo $keeper_token > /root/kept.txt && sync"
  keeper_claim_uid="$(claim_field "$ns" keeper-rootfs '{.metadata.uid}')"
  [[ -n "$keeper_claim_uid" ]] || fail "no claim keeper-rootfs for the Retain SC"
  keeper_disk="$(claim_disk "$ns" keeper-rootfs)"
  kc sc -n "$ns" delete keeper --timeout 3m >/dev/null
  wait_for "StoppableContainer keeper to be gone" 120 bash -c "! kubectl -n $ns get stoppablecontainer keeper >/dev/null 2>&1"
  wait_for "every pod of keeper to be gone" 90 no_pod_of "$ns" keeper
  sleep 5
  expect_eq "the retained claim (same UID)" "$keeper_claim_uid" "$(claim_field "$ns" keeper-rootfs '{.metadata.uid}')"
  expect_eq "the retained claim's owners" "" "$(claim_field "$ns" keeper-rootfs '{.metadata.ownerReferences}')"
  expect_eq "the retained claim is still Bound" Bound "$(claim_field "$ns" keeper-rootfs '{.status.phase}')"
  wait_for "the retained disk $keeper_disk to be unmounted" 90 device_unmounted "$keeper_disk"
  expect_eq "the data on the retained claim" "$keeper_token" \
    "$(with_disk_mounted "$keeper_disk" cat_in stoppablecontainer/upper/root/kept.txt)"

  step "a new SC named keeper does not adopt the retained claim; its status says why"
  sc_with_storage "$ns" keeper 256Mi Delete
  wait_for "keeper's status to name the retained claim" 90 status_refuses_claim "$ns" keeper keeper-rootfs
  kc sc -n "$ns" status keeper >&2 || true
  [[ "$(sc_phase "$ns" keeper)" != Running ]] || fail "the new keeper runs, on a claim it did not create"
  [[ "$(sc_field "$ns" keeper '{.status.storage.claimUID}')" != "$keeper_claim_uid" ]] ||
    fail "the new keeper recorded the retained claim as its own"
  expect_eq "the retained claim is untouched" "$keeper_claim_uid/" \
    "$(claim_field "$ns" keeper-rootfs '{.metadata.uid}/{.metadata.ownerReferences}')"
  local consumer_claims
  consumer_claims="$(kc -n "$ns" get pods -o 'jsonpath={.items[*].spec.volumes[*].persistentVolumeClaim.claimName}')"
  expect_not_contains "claims mounted by the namespace's pods" "$consumer_claims" keeper-rootfs
  kc sc -n "$ns" delete keeper --timeout 3m >/dev/null
  expect_eq "the retained claim after the new keeper's delete" "$keeper_claim_uid" \
    "$(claim_field "$ns" keeper-rootfs '{.metadata.uid}')"
  kc -n "$ns" delete pvc keeper-rootfs --wait=true --timeout=120s >/dev/null
}

# --- 13. node replacement with spec.storage: a running and a stopped SC come back -----

scenario_storage_node_replacement() {
  local ns=$STORAGE_NODE_NS old_node new_node runner_token sleeper_token runner_sha sleeper_sha pinned
  runner_token="$(random_token)"
  sleeper_token="$(random_token)"
  fresh_namespace "$ns"
  storage_push_image
  step "two SCs with storage: runner keeps running, sleeper is stopped (holds no pod)"
  sc_with_storage "$ns" runner 256Mi Delete
  sc_with_storage "$ns" sleeper 256Mi Delete
  wait_running "$ns" runner 240
  wait_running "$ns" sleeper 240
  runner_sha="$(write_files "$ns" runner "$runner_token")"
  sleeper_sha="$(write_files "$ns" sleeper "$sleeper_token")"
  kc sc -n "$ns" stop sleeper --wait --timeout 2m >/dev/null
  wait_for "every pod of sleeper to be gone" 90 no_pod_of "$ns" sleeper
  old_node="$(e2e_node_name)"
  expect_eq "runner's node" "$old_node" "$(pod_node "$ns" runner)"
  step "the first start recorded the digest the provider ran: later starts on other nodes run it"
  pinned="$(kc -n "$ns" get stoppablecontainerinstance runner -o 'jsonpath={.spec.storage.pinnedImage.digestRef}')"
  [[ "$pinned" == *@sha256:* ]] || fail "runner's instance records no pullable digest of its image (pinnedImage.digestRef: '$pinned')"
  step "an fsync'ed file written just before the node goes"
  in_sc "$ns" runner sh -c "echo last-words-$runner_token | dd of=/root/fsynced conv=fsync 2>/dev/null"

  step "cluster.sh replace-node: kubelet and containerd stop, Node deleted, disk wiped, a new node joins"
  "$PRODUCT_CLUSTER" replace-node >&2
  new_node="$(e2e_node_name)"
  [[ "$new_node" != "$old_node" ]] || fail "the node kept its name $old_node"
  wait_for "the node plugin on $new_node" 240 node_plugin_on "$new_node"

  step "runner comes back Running on $new_node by itself, with every file"
  wait_for "runner's consumer pod on $new_node" 420 bash -c \
    "[[ \$(kubectl -n $ns get pod runner -o 'jsonpath={.spec.nodeName}' 2>/dev/null) == $new_node ]]"
  wait_running "$ns" runner 300
  expect_files "$ns" runner "$runner_token" "$runner_sha" "on the new node"
  expect_eq "the fsync'ed file on the new node" "last-words-$runner_token" "$(in_sc "$ns" runner cat /root/fsynced)"
  expect_eq "runner's provider's node" "$new_node" "$(pod_node "$ns" runner-provider)"
  expect_eq "the image runner's provider runs on the new node (the recorded digest, not the tag)" "$pinned" \
    "$(kc -n "$ns" get pod runner-provider -o 'jsonpath={.spec.containers[0].image}')"

  step "sleeper stays Stopped until started; then Running on $new_node with every file"
  expect_eq "sleeper after the node replacement" Stopped "$(sc_phase "$ns" sleeper)"
  kc sc -n "$ns" start sleeper --wait --timeout 5m >/dev/null
  wait_running "$ns" sleeper 300
  expect_eq "sleeper's node" "$new_node" "$(pod_node "$ns" sleeper)"
  expect_files "$ns" sleeper "$sleeper_token" "$sleeper_sha" "on the new node"
  in_sc "$ns" sleeper sh -c 'echo written-on-the-new-node > /root/new.txt'
  expect_eq "a write on the new node" written-on-the-new-node "$(in_sc "$ns" sleeper cat /root/new.txt)"

  kc sc -n "$ns" delete runner --timeout 3m >/dev/null
  kc sc -n "$ns" delete sleeper --timeout 3m >/dev/null
  wait_for "the claims to be deleted" 120 bash -c "[[ -z \$(kubectl -n $ns get pvc -o name) ]]"
}

# Scenarios that run only when named (tests/e2e/run.sh ID), in the format of SCENARIOS: those of
# a feature whose product parts have not landed yet. Each moves into SCENARIOS once it passes.
readonly PENDING_SCENARIOS=(
  "14||scenario_layer_diff|kubectl sc diff of a running and a stopped SC as a tenant; another namespace's pod gets no layer"
)
