//! Publications whose persistent layer is on a claim (`spec.storage`), against a fake node: the
//! claim's mount found, its filesystem judged, the tenant's plants refused, the overlay mounted
//! `nodev,nosuid`, one live overlay per claim, unpublish and recovery.

use std::path::{Path, PathBuf};

use super::{KUBELET, POD_UID, PROVIDER_ROOTFS, mounter_on, node, provider, request, sc};
use crate::authorize::BoundClaim;
use crate::layout;
use crate::mountinfo;
use crate::node::{ClaimLayer, Found, Mounter, PersistentLayer, PublishError, UpperKey, UpperSupport};
use crate::sys::System;
use crate::sys::fake::FakeSystem;
use crate::validate::{PublishRequest, UnpublishRequest};

const OTHER_POD_UID: &str = "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a";
const EXT4: i64 = 0xEF53;

fn claim() -> BoundClaim {
    BoundClaim { claim_name: "dev-rootfs".into(), claim_uid: "77777777-7777-4777-8777-777777777777".into(), volume_name: "pv-17".into() }
}

/// Kubelet's mount of the claim for pod `pod_uid` (a local volume).
fn claim_mount_of(pod_uid: &str) -> PathBuf {
    PathBuf::from(format!("{KUBELET}/pods/{pod_uid}/volumes/kubernetes.io~local-volume/pv-17"))
}

/// A node where kubelet mounted the claim for [`POD_UID`], a filesystem of this type.
fn node_with_claim(fs_type: &str, magic: i64) -> Mounter<FakeSystem> {
    let node = node();
    node.system().add_claim_mount(&claim_mount_of(POD_UID), fs_type, magic);
    node
}

/// Publishes as the RPC side does, once the claim's mount is found.
fn publish_on_claim(node: &Mounter<FakeSystem>, request: &PublishRequest) -> Result<PathBuf, PublishError> {
    match node.inspect(request, &sc(), Some(&claim()))? {
        Found::Published { lower } => Ok(lower),
        Found::Clear => {
            let layer = node.find_claim(&request.pod.uid, &claim()).expect("mountinfo").expect("the claim is mounted");
            node.mount(request, &sc(), &provider(), &PersistentLayer::Claim(layer))
        }
    }
}

#[test]
fn the_claim_is_found_only_at_kubelets_path_of_the_consumer_pod() {
    let node = node();
    let request = request("csi-1", POD_UID);
    assert_eq!(node.find_claim(&request.pod.uid, &claim()).expect("mountinfo"), None, "not mounted yet");
    // A tenant's pod on this node mounting the same claim is not the consumer.
    node.system().add_claim_mount(&claim_mount_of(OTHER_POD_UID), "ext4", EXT4);
    assert_eq!(node.find_claim(&request.pod.uid, &claim()).expect("mountinfo"), None);
    node.system().add_claim_mount(&claim_mount_of(POD_UID), "ext4", EXT4);
    assert_eq!(
        node.find_claim(&request.pod.uid, &claim()).expect("mountinfo"),
        Some(ClaimLayer { claim: claim(), mount_path: claim_mount_of(POD_UID) })
    );
}

#[test]
fn a_claim_publish_puts_upper_and_work_on_the_claim_and_mounts_the_overlay_nodev_nosuid() {
    let node = node_with_claim("ext4", EXT4);
    let request = request("csi-1", POD_UID);
    assert_eq!(publish_on_claim(&node, &request).expect("published"), Path::new(PROVIDER_ROOTFS));
    let target = &request.target_path;
    assert_eq!(node.system().mounts_under(target), [target.clone(), layout::target_rootfs(target), layout::target_control(target)]);
    let data_dir = claim_mount_of(POD_UID).join("stoppablecontainer");
    for dir in [data_dir.join("upper"), data_dir.join("work")] {
        assert!(node.system().is_directory(&dir), "{} made on the claim", dir.display());
    }
    let host = node.host_mounts().expect("mountinfo");
    let overlay = mountinfo::mount_at(&host, &layout::target_rootfs(target)).expect("the overlay");
    assert_eq!(overlay.source, "sc-claim:pv-17", "the mount table names the claim's volume");
    for flag in ["nodev", "nosuid"] {
        assert!(overlay.mount_options.iter().any(|option| option == flag), "a planted device node or setuid file is inert: {flag}");
    }
    assert_eq!(overlay.super_option("lowerdir"), Some(PROVIDER_ROOTFS));
    let record = node.records.load("csi-1").expect("load").expect("recorded");
    assert_eq!(record.claim, Some(ClaimLayer { claim: claim(), mount_path: claim_mount_of(POD_UID) }));
    assert_eq!(node.live.target_of(&UpperKey::Claim("pv-17".into())).as_ref(), Some(target));
    // Nothing of the SC on the node's disk, and no loop device.
    assert!(!node.system().exists(&super::data().container_dir(&sc()).join("fs")));
    // A repeated publish finds it.
    let calls = node.system().state().calls.len();
    assert_eq!(node.inspect(&request, &sc(), Some(&claim())).expect("inspected"), Found::Published { lower: PROVIDER_ROOTFS.into() });
    assert_eq!(node.system().state().calls.len(), calls);
}

#[test]
fn a_symlinked_data_directory_planted_on_the_claim_is_refused_not_followed() {
    // While the SC was stopped, the tenant mounted the claim in a pod of its own and replaced
    // `stoppablecontainer` with a symlink to another SC's data on this node.
    let node = node_with_claim("ext4", EXT4);
    let victim = super::data().container_dir(&sc());
    node.system().add_symlink(&claim_mount_of(POD_UID).join("stoppablecontainer"), &victim);
    let request = request("csi-1", POD_UID);
    let error = publish_on_claim(&node, &request).expect_err("refused");
    assert!(matches!(error, PublishError::ClaimDataDir { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.starts_with("claim team-a/dev-rootfs of StoppableContainer team-a/dev (uid "), "{message}");
    assert!(
        message.ends_with(&format!(
            "at {}/stoppablecontainer, where the plugin needs directories of its own (a symlink or a file planted by a pod that mounted the claim is never followed); remove it from a pod that mounts the claim, then start the StoppableContainer again",
            claim_mount_of(POD_UID).display()
        )),
        "{message}"
    );
    assert!(node.system().mounts_under(&request.target_path).is_empty(), "nothing mounted");
    assert_eq!(node.records.load("csi-1").expect("load"), None);
}

#[test]
fn a_symlinked_upper_or_work_planted_on_the_claim_is_refused() {
    for planted in ["upper", "work"] {
        let node = node_with_claim("ext4", EXT4);
        let data_dir = claim_mount_of(POD_UID).join("stoppablecontainer");
        node.system().add_directory(&data_dir);
        node.system().add_symlink(&data_dir.join(planted), Path::new("/var/lib/stoppablecontainer/containers"));
        let request = request("csi-1", POD_UID);
        let error = publish_on_claim(&node, &request).expect_err("refused");
        assert!(matches!(error, PublishError::ClaimDataDir { .. }), "{planted}: {error:?}");
        assert!(node.system().mounts_under(&request.target_path).is_empty(), "{planted}: nothing mounted");
    }
}

#[test]
fn a_claim_on_a_memory_or_network_filesystem_is_refused_with_what_to_do() {
    for (fs_type, magic) in [("tmpfs", 0x0102_1994), ("nfs4", 0x6969), ("fuse.sshfs", 0x6573_5546)] {
        let node = node_with_claim(fs_type, magic);
        let request = request("csi-1", POD_UID);
        let error = publish_on_claim(&node, &request).expect_err("refused");
        assert!(matches!(error, PublishError::ClaimFilesystem { .. }), "{error:?}");
        let message = error.to_string();
        assert!(message.starts_with("claim team-a/dev-rootfs of StoppableContainer team-a/dev (uid "), "{message}");
        assert!(
            message.ends_with(&format!(
                "cannot hold the rootfs: an overlay upper needs a local block filesystem with d_type and xattrs (ext4, xfs, btrfs); the claim's StorageClass gives {fs_type}: use a block StorageClass"
            )),
            "{message}"
        );
        assert!(node.system().mounts_under(&request.target_path).is_empty(), "{fs_type}: nothing mounted");
        assert!(!node.system().exists(&claim_mount_of(POD_UID).join("stoppablecontainer")), "{fs_type}: nothing written to the claim");
    }
}

#[test]
fn an_unknown_filesystem_is_probed_and_used_only_with_d_type_and_trusted_xattrs() {
    let zfs = 0x2FC1_2FC1;
    let node = node_with_claim("zfs", zfs);
    node.system().state().upper_support = Some(UpperSupport { d_type: true, trusted_xattr: false });
    let request = request("csi-1", POD_UID);
    let message = publish_on_claim(&node, &request).expect_err("refused").to_string();
    assert!(
        message.ends_with("the claim's StorageClass gives zfs (it cannot hold trusted.* extended attributes): use a block StorageClass"),
        "{message}"
    );
    assert!(node.system().mounts_under(&request.target_path).is_empty());
    node.system().state().upper_support = None;
    publish_on_claim(&node, &request).expect("a filesystem that passes the probe");
    assert!(node.system().state().calls.iter().any(|call| call.starts_with("probe ")));
}

#[test]
fn one_live_overlay_per_claim_even_through_another_pods_path_to_it() {
    let node = node_with_claim("ext4", EXT4);
    publish_on_claim(&node, &request("csi-1", POD_UID)).expect("the first consumer");
    // A second consumer pod on this node, with kubelet's mount of the same volume at its own path.
    node.system().add_claim_mount(&claim_mount_of(OTHER_POD_UID), "ext4", EXT4);
    let second = request("csi-2", OTHER_POD_UID);
    let error = publish_on_claim(&node, &second).expect_err("refused");
    assert!(matches!(error, PublishError::UpperInUse { .. }), "{error:?}");
    assert!(error.to_string().contains("only one consumer may use it at a time"), "{error}");
    assert!(node.system().mounts_under(&second.target_path).is_empty());
}

#[test]
fn unpublish_unmounts_the_overlay_and_leaves_the_claim_to_kubelet() {
    let node = node_with_claim("ext4", EXT4);
    let request = request("csi-1", POD_UID);
    publish_on_claim(&node, &request).expect("published");
    node.unpublish(&UnpublishRequest { volume_id: "csi-1".into(), target_path: request.target_path.clone() }).expect("unpublished");
    assert!(node.system().mounts_under(&request.target_path).is_empty());
    assert_eq!(node.system().mounts_under(&claim_mount_of(POD_UID)), [claim_mount_of(POD_UID)], "the claim stays mounted");
    assert!(node.system().is_directory(&claim_mount_of(POD_UID).join("stoppablecontainer/upper")), "the data stays");
    assert_eq!(node.records.load("csi-1").expect("load"), None);
    assert_eq!(node.live.target_of(&UpperKey::Claim("pv-17".into())), None);
}

#[test]
fn stats_and_usage_measure_the_claims_filesystem() {
    let node = node_with_claim("ext4", EXT4);
    let request = request("csi-1", POD_UID);
    publish_on_claim(&node, &request).expect("published");
    let stats = node.stats("csi-1", &request.target_path).expect("stats");
    assert_eq!((stats.bytes_total, stats.bytes_used, stats.abnormal), (10 << 30, 2 << 30, None));
    assert_eq!(node.published_scs(), [sc()]);
    let usage = node.usage(&sc()).expect("published").expect("measured").expect("figures");
    assert_eq!((usage.limit_bytes, usage.bytes_used, usage.node_bytes_allocated), (10 << 30, 2 << 30, 0));
}

#[test]
fn a_claim_publication_survives_a_restart_and_a_half_done_one_is_unwound() {
    let before = node_with_claim("ext4", EXT4);
    let request = request("csi-1", POD_UID);
    publish_on_claim(&before, &request).expect("published");
    let record = before.records.load("csi-1").expect("load").expect("recorded");
    let after = mounter_on(before.system().clone());
    let recovered = after.recover().expect("recovered");
    assert_eq!((recovered.live, recovered.serve, recovered.unwound), (1, vec![record], vec![]));
    assert_eq!(after.live.target_of(&UpperKey::Claim("pv-17".into())).as_ref(), Some(&request.target_path));
    assert_eq!(after.published_scs(), [sc()]);
    assert_eq!(after.inspect(&request, &sc(), Some(&claim())).expect("inspected"), Found::Published { lower: PROVIDER_ROOTFS.into() });

    // Killed between the overlay and the control bind, with no record: unwound at start-up, the
    // claim and its data untouched.
    after.unpublish(&UnpublishRequest { volume_id: "csi-1".into(), target_path: request.target_path.clone() }).expect("unpublished");
    let layer = after.find_claim(&request.pod.uid, &claim()).expect("mountinfo").expect("mounted");
    let rootfs = after.mount_target(&request).expect("the target's tmpfs");
    let device = after.system().mounted_filesystem(&layer.mount_path).expect("facts").device;
    let dirs =
        crate::sys::ClaimOverlayDirs { lower: Path::new(PROVIDER_ROOTFS), claim_root: &layer.mount_path, device, source: "sc-claim:pv-17" };
    after.system().mount_claim_overlay(&dirs, &rootfs).expect("overlay");
    let again = mounter_on(after.system().clone());
    let recovered = again.recover().expect("recovered");
    assert_eq!(recovered.live, 0);
    assert!(again.system().mounts_under(&request.target_path).is_empty(), "unwound");
    assert_eq!(again.system().mounts_under(&claim_mount_of(POD_UID)), [claim_mount_of(POD_UID)]);
    assert!(again.system().is_directory(&claim_mount_of(POD_UID).join("stoppablecontainer/upper")));
}

#[test]
fn a_node_local_publication_is_not_taken_for_the_claims() {
    // A record of a node-local publication of this volume (the SC's storage cannot change, but
    // the plugin does not rely on that): the claim's publish does not take it as published.
    let node = node_with_claim("ext4", EXT4);
    let request = request("csi-1", POD_UID);
    super::publish(&node, &request).expect("published node-local");
    assert_eq!(node.inspect(&request, &sc(), Some(&claim())).expect("inspected"), Found::Clear, "undone, to be mounted on the claim");
    assert!(node.system().mounts_under(&request.target_path).is_empty());
}

#[test]
fn a_claim_path_that_is_not_the_root_of_kubelets_mount_is_refused() {
    let node = node_with_claim("ext4", EXT4);
    node.system().state().devices.insert(claim_mount_of(POD_UID), (254, 0));
    let request = request("csi-1", POD_UID);
    let message = publish_on_claim(&node, &request).expect_err("refused").to_string();
    assert!(
        message.contains(&format!(
            "cannot hold the rootfs: {} is not the root of kubelet's mount of it (device 254:0, the mount table says 0:",
            claim_mount_of(POD_UID).display()
        )),
        "{message}"
    );
    assert!(message.ends_with("; kubelet will retry"), "{message}");
    assert!(node.system().mounts_under(&request.target_path).is_empty());
}

#[test]
fn a_claim_kubelet_mounted_read_only_is_refused_with_what_the_pod_must_say() {
    let node = node_with_claim("ext4", EXT4);
    node.system().state().mounts.last_mut().expect("the claim's mount").options = "ro,relatime".into();
    let request = request("csi-1", POD_UID);
    let message = publish_on_claim(&node, &request).expect_err("refused").to_string();
    assert!(message.contains("cannot hold the rootfs: kubelet mounted it read-only at "), "{message}");
    assert!(message.ends_with("mount it read-only only in the container (volumeMounts[].readOnly)"), "{message}");
    assert!(!node.system().exists(&claim_mount_of(POD_UID).join("stoppablecontainer")));
}

#[test]
fn a_complete_claim_publication_whose_record_is_unreadable_stays_live_after_a_restart() {
    let before = node_with_claim("ext4", EXT4);
    let request = request("csi-1", POD_UID);
    publish_on_claim(&before, &request).expect("published");
    before.system().put_file(&super::data().record_path("csi-1"), b"{torn");
    let after = mounter_on(before.system().clone());
    let recovered = after.recover().expect("recovered");
    assert_eq!((recovered.live, recovered.unwound.len()), (1, 0));
    assert_eq!(after.system().mounts_under(&request.target_path).len(), 3, "the consumer's mounts stay");
    // Still one overlay per claim: another consumer of the claim is refused.
    assert_eq!(after.live.target_of(&UpperKey::Claim("pv-17".into())).as_ref(), Some(&request.target_path));
}
