# shellcheck shell=bash disable=SC2154  # the paths and names are cluster.sh's constants
# The e2e cluster's block storage: a pool of static `local` PersistentVolumes of the default
# StorageClass, each a loop device over a sparse image file in the run dir (outside the node's
# kubelet root and data root, so a disk outlives its node, as a cloud disk does). Kubelet formats
# each one ext4 the first time a pod mounts it (a `local` PV whose path is a block device, with
# fsType, in Filesystem mode) and mounts it. The PVs require the label every node of the harness
# carries instead of a hostname, so a replacement node attaches them (like a zonal cloud disk).
# The recycler (component pv-recycler, `cluster.sh recycle-volumes --loop`) wipes a volume whose
# claim is gone and puts a fresh PV object in its place, as a cloud deletes a disk and the pool
# gets a new one, so a CI run never runs out. Sourced by cluster.sh after its constants.

readonly POOL_DISK_DIR="$RUN_DIR/disks"
# "SIZE COUNT": the sizes a claim can bind (the smallest one that fits is chosen).
readonly POOL_SIZES=("256Mi 6" "1Gi 4")
# Labels the pool's PV objects, so the recycler and `volumes` find exactly them.
readonly POOL_PV_LABEL_KEY=stoppablecontainer.test/e2e-pool
readonly POOL_PV_LABEL_VALUE=loop-disks
readonly POOL_RECYCLE_EVERY=2

# pool_pv_names: every PV name of the pool, e2e-disk-256mi-1 ... e2e-disk-1gi-4, with its size.
pool_pv_names() {
  local entry size count index
  for entry in "${POOL_SIZES[@]}"; do
    read -r size count <<<"$entry"
    for index in $(seq 1 "$count"); do
      echo "e2e-disk-${size,,}-$index $size"
    done
  done
}

pool_image() { echo "$POOL_DISK_DIR/$1.img"; }

# pool_device NAME: the loop device attached to NAME's image (nothing when none is).
pool_device() { losetup -n -O NAME -j "$(pool_image "$1")" 2>/dev/null | head -n 1; }

# pool_device_mounted DEVICE: whether any mount (in this mount namespace, the node's) uses it.
pool_device_mounted() {
  local device_number
  device_number="$(printf '%d:%d' "0x$(stat -c %t "$1")" "0x$(stat -c %T "$1")")"
  awk -v device="$device_number" '$3 == device { found = 1 } END { exit !found }' /proc/self/mountinfo
}

pool_storage_class_manifest() {
  cat <<EOF
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: $E2E_STORAGE_CLASS
  annotations:
    storageclass.kubernetes.io/is-default-class: "true"
provisioner: kubernetes.io/no-provisioner
# Bound when a pod is scheduled: the scheduler sees the volumes' topology, as with cloud disks.
volumeBindingMode: WaitForFirstConsumer
# A released volume keeps its data until the harness's recycler wipes it and makes a fresh PV.
reclaimPolicy: Retain
EOF
}

# pool_pv_manifest NAME SIZE DEVICE
pool_pv_manifest() {
  local name="$1" size="$2" device="$3"
  cat <<EOF
---
apiVersion: v1
kind: PersistentVolume
metadata:
  name: $name
  labels:
    $POOL_PV_LABEL_KEY: $POOL_PV_LABEL_VALUE
spec:
  capacity:
    storage: $size
  volumeMode: Filesystem
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: $E2E_STORAGE_CLASS
  local:
    path: $device
    fsType: ext4
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions:
        - key: $E2E_NODE_POOL_LABEL_KEY
          operator: In
          values: [$E2E_NODE_POOL_LABEL_VALUE]
EOF
}

# Makes the disks (sparse images on loop devices) and applies the StorageClass and the PVs.
pool_create() {
  mkdir -p "$POOL_DISK_DIR"
  local name size image device manifest
  manifest="$(pool_storage_class_manifest)"
  while read -r name size; do
    image="$(pool_image "$name")"
    # truncate's M and G are MiB and GiB.
    truncate -s "${size%i}" "$image"
    device="$(losetup --find --show "$image")"
    manifest+=$'\n'"$(pool_pv_manifest "$name" "$size" "$device")"
  done < <(pool_pv_names)
  e2e_kubectl apply -f - >/dev/null <<<"$manifest"
  log "storage: StorageClass $E2E_STORAGE_CLASS (default), $(pool_pv_names | wc -l) loop-backed PVs (${POOL_SIZES[*]/ /×})"
}

# pool_recycle NAME SIZE: wipes a released volume's disk and replaces its PV object by a fresh,
# Available one. Skipped (tried again on the next pass) while kubelet still has the disk mounted.
pool_recycle() {
  local name="$1" size="$2" device recorded_path
  device="$(pool_device "$name")"
  [[ -n "$device" ]] || { log "warning: $name has no loop device; not recycling it"; return 1; }
  recorded_path="$(e2e_kubectl get pv "$name" -o 'jsonpath={.spec.local.path}')"
  if [[ "$recorded_path" != "$device" ]]; then
    log "warning: PV $name names $recorded_path, but its disk is $device; not recycling it"
    return 1
  fi
  pool_device_mounted "$device" && return 0
  # A discard punches the image file's blocks out: the disk reads as zeros (no filesystem, so
  # kubelet formats it again) and gives the space back.
  blkdiscard "$device" 2>/dev/null || wipefs -a -q "$device"
  e2e_kubectl delete pv "$name" --wait=true >/dev/null
  e2e_kubectl apply -f - >/dev/null <<<"$(pool_pv_manifest "$name" "$size" "$device")"
  log "recycled $name ($size, $device): wiped, Available again"
}

# One pass: recycles every pool PV that is Released (its claim was deleted).
pool_recycle_released() {
  local released name size
  released="$(e2e_kubectl get pv -l "$POOL_PV_LABEL_KEY=$POOL_PV_LABEL_VALUE" \
    -o 'jsonpath={range .items[?(@.status.phase=="Released")]}{.metadata.name} {.spec.capacity.storage}{"\n"}{end}')" ||
    return 1
  while read -r name size; do
    [[ -z "$name" ]] || pool_recycle "$name" "$size" || true
  done <<<"$released"
}

pool_recycle_loop() {
  log "recycling the released volumes of $E2E_STORAGE_CLASS every ${POOL_RECYCLE_EVERY} s"
  while true; do
    pool_recycle_released || log "warning: could not list the PVs; trying again"
    sleep "$POOL_RECYCLE_EVERY"
  done
}

# The pool as it is: each PV's phase, claim and disk.
pool_list() {
  e2e_kubectl get pv -l "$POOL_PV_LABEL_KEY=$POOL_PV_LABEL_VALUE" -o custom-columns='NAME:.metadata.name,SIZE:.spec.capacity.storage,PHASE:.status.phase,CLAIM:.spec.claimRef.name,NAMESPACE:.spec.claimRef.namespace,DISK:.spec.local.path'
}

# Detaches every loop device over a pool image (found by backing file, never by number).
pool_detach() {
  local image device
  for image in "$POOL_DISK_DIR"/*.img; do
    [[ -e "$image" ]] || continue
    while read -r device; do
      [[ -z "$device" ]] || losetup -d "$device" || log "warning: could not detach $device ($image)"
    done < <(losetup -n -O NAME -j "$image" 2>/dev/null)
  done
}

# pool_disks_mounted: the pool's devices some mount still uses (none once the node is gone).
pool_disks_mounted() {
  local name device
  while read -r name _; do
    device="$(pool_device "$name")"
    [[ -n "$device" ]] && pool_device_mounted "$device" && echo "$device ($name)"
  done < <(pool_pv_names)
  return 0
}
