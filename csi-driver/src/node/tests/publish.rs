//! Publish and unpublish against a fake node: what is mounted, recorded and refused.

use std::path::Path;

use super::{PROVIDER_ROOTFS, data, node, publish, request, sc, target_of};
use crate::layout::{self, DataLayout};
use crate::node::{Found, ProviderContainer, PublishError, UnpublishError, UpperKey};
use crate::sys::System;
use crate::sys::fake::ProviderExit;
use crate::validate::UnpublishRequest;

const NEXT_CONTAINER_ID: &str = "5c0ffee5c0ffee5c0ffee5c0ffee5c0ffee5c0ffee5c0ffee5c0ffee5c0ffee5";
const OTHER_POD_UID: &str = "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a";

fn unpublish_request(volume_id: &str, pod_uid: &str) -> UnpublishRequest {
    UnpublishRequest { volume_id: volume_id.into(), target_path: target_of(pod_uid) }
}

#[test]
fn a_publish_mounts_the_tmpfs_the_overlay_and_the_control_directory_and_records_them() {
    let node = node();
    let request = request("csi-1", super::POD_UID);
    assert_eq!(publish(&node, &request).expect("published"), Path::new(PROVIDER_ROOTFS));
    let target = &request.target_path;
    assert_eq!(node.system().mounts_under(target), [target.clone(), layout::target_rootfs(target), layout::target_control(target)]);
    let host = node.host_mounts().expect("mountinfo");
    let overlay = crate::mountinfo::mount_at(&host, &layout::target_rootfs(target)).expect("the overlay");
    assert_eq!(overlay.super_option("lowerdir"), Some(PROVIDER_ROOTFS));
    assert_eq!(overlay.super_option("upperdir").map(Path::new), Some(data().upper_dir_in(&sc(), DataLayout::Unlimited).as_path()));
    let control = crate::mountinfo::mount_at(&host, &layout::target_control(target)).expect("the control bind");
    assert_eq!(control.root, data().control_dir("csi-1"));
    assert!(!control.is_read_write(), "the pod cannot plant anything in the control directory");
    let record = node.records.load("csi-1").expect("load").expect("recorded");
    assert_eq!((record.target_path, record.sc, record.lower_dir), (target.clone(), sc(), PROVIDER_ROOTFS.into()));
    assert_eq!(node.live.target_of(&UpperKey::Dir(data().upper_dir_in(&sc(), DataLayout::Unlimited))).as_ref(), Some(target));
}

#[test]
fn a_repeated_publish_finds_the_publication_and_mounts_nothing_more() {
    let node = node();
    let request = request("csi-1", super::POD_UID);
    publish(&node, &request).expect("published");
    let calls = node.system().state().calls.len();
    assert_eq!(node.inspect(&request, &sc(), None).expect("inspected"), Found::Published { lower: PROVIDER_ROOTFS.into() });
    assert_eq!(publish(&node, &request).expect("published again"), Path::new(PROVIDER_ROOTFS));
    assert_eq!(node.system().state().calls.len(), calls, "no mount or unmount");
}

#[test]
fn a_concurrent_publish_of_the_same_volume_that_finished_first_is_the_publication() {
    let node = node();
    let request = request("csi-1", super::POD_UID);
    // Both found the target clear, then waited for the provider; the first one mounted.
    assert_eq!(node.inspect(&request, &sc(), None).expect("first"), Found::Clear);
    assert_eq!(node.inspect(&request, &sc(), None).expect("second"), Found::Clear);
    node.mount(&request, &sc(), &super::provider(), &super::node_layer()).expect("first mounts");
    let mounts = node.system().mounts_under(&request.target_path);
    assert_eq!(node.mount(&request, &sc(), &super::provider(), &super::node_layer()).expect("second"), Path::new(PROVIDER_ROOTFS));
    assert_eq!(node.system().mounts_under(&request.target_path), mounts, "nothing mounted twice");
}

#[test]
fn the_rootfs_is_live_at_one_target_at_a_time() {
    let node = node();
    let first = request("csi-1", super::POD_UID);
    publish(&node, &first).expect("published");
    let second = request("csi-2", OTHER_POD_UID);
    let error = publish(&node, &second).expect_err("a second consumer");
    let PublishError::UpperInUse { mounted_at, .. } = &error else { panic!("{error}") };
    assert_eq!(Path::new(mounted_at), layout::target_rootfs(&first.target_path));
    assert!(error.to_string().contains("only one consumer may use it at a time; stop the other consumer pod first"), "{error}");
    assert!(node.system().mounts_under(&second.target_path).is_empty(), "nothing mounted for the second");
    // Once the first is unpublished, the second gets the rootfs.
    node.unpublish(&unpublish_request("csi-1", super::POD_UID)).expect("unpublished");
    publish(&node, &second).expect("the second consumer now");
}

#[test]
fn a_foreign_mount_on_the_target_is_refused_and_left_alone() {
    let node = node();
    let request = request("csi-1", super::POD_UID);
    node.system().add_directory(&request.target_path);
    node.system().add_foreign_mount("ext4", "/dev/sdb1", &request.target_path);
    let error = publish(&node, &request).expect_err("refused");
    assert!(matches!(error, PublishError::ForeignMount { .. }), "{error}");
    assert!(error.to_string().contains("already has a mount this plugin did not make (ext4 from /dev/sdb1)"), "{error}");
    assert_eq!(node.system().mounts_under(&request.target_path), std::slice::from_ref(&request.target_path), "the foreign mount stays");
    let unpublished = node.unpublish(&unpublish_request("csi-1", super::POD_UID)).expect_err("not ours to unmount");
    assert!(matches!(unpublished, UnpublishError::ForeignMount { .. }), "{unpublished}");
    assert_eq!(node.system().mounts_under(&request.target_path), std::slice::from_ref(&request.target_path));
}

#[test]
fn a_volume_recorded_at_another_target_is_a_conflict() {
    let node = node();
    publish(&node, &request("csi-1", super::POD_UID)).expect("published");
    let elsewhere = request("csi-1", OTHER_POD_UID);
    let error = publish(&node, &elsewhere).expect_err("conflict");
    assert!(matches!(error, PublishError::VolumeConflict { .. }), "{error}");
    assert!(node.system().mounts_under(&elsewhere.target_path).is_empty());
}

#[test]
fn a_publish_cut_short_leaves_nothing_mounted_and_no_record() {
    for operation in ["mount_overlay", "bind_mount_read_only", "write_file_durably"] {
        let node = node();
        let request = request("csi-1", super::POD_UID);
        node.system().fail_next(operation, nix::libc::EIO);
        let error = publish(&node, &request).expect_err(operation);
        assert!(matches!(error, PublishError::Io(_)), "{operation}: {error}");
        assert!(node.system().mounts_under(&request.target_path).is_empty(), "{operation}: nothing stays mounted");
        assert!(!node.system().exists(&request.target_path), "{operation}: the target directory is removed");
        assert_eq!(node.records.load("csi-1").expect("load"), None, "{operation}: no record");
        // Kubelet's retry publishes it.
        publish(&node, &request).expect("the retry");
    }
}

/// The provider container exits between the lookup of its rootfs and the overlay's mount (the
/// worst moment): the overlay would have an empty directory, or nothing, as its lower. The
/// publish fails with the reason kubelet retries on, leaves nothing mounted and no record, and
/// the retry uses the provider's next container, never the old path.
#[test]
fn a_provider_that_exits_while_its_rootfs_is_being_mounted_fails_the_publish_and_the_retry_uses_its_next_container() {
    for exit in [ProviderExit::EmptyDirectoryLeft, ProviderExit::DirectoryRemoved] {
        let node = node();
        let request = request("csi-1", super::POD_UID);
        node.system().state().provider_exits_at_mount = Some(exit);
        let error = publish(&node, &request).expect_err("the lower went away");
        assert!(matches!(error, PublishError::ProviderReplaced { .. }), "{exit:?}: {error}");
        assert!(error.to_string().contains("exited while its root filesystem was being mounted"), "{error}");
        assert_eq!(tonic::Status::from(error).code(), tonic::Code::Unavailable, "kubelet retries");
        assert!(node.system().mounts_under(&request.target_path).is_empty(), "{exit:?}: nothing stays mounted");
        assert_eq!(node.records.load("csi-1").expect("load"), None, "{exit:?}: no record");
        assert!(node.live.get(&UpperKey::Dir(data().upper_dir_in(&sc(), DataLayout::Unlimited))).is_none(), "{exit:?}: not live");

        // Kubelet restarts the container: a new ID, a new rootfs path, a new process.
        let next_rootfs = Path::new("/run/containerd/io.containerd.runtime.v2.task/k8s.io/next/rootfs");
        node.system().add_provider(18, NEXT_CONTAINER_ID, next_rootfs);
        let next = ProviderContainer { container_id: NEXT_CONTAINER_ID.into(), pod_uid: None, image_ref: "sha256:1".into() };
        let lower = node.mount(&request, &sc(), &next, &super::node_layer()).expect("the retry");
        assert_eq!(lower, next_rootfs, "{exit:?}");
        assert_eq!(node.system().mounted_overlay_lower(&layout::target_rootfs(&request.target_path)).as_deref(), Some(next_rootfs));
    }
}

#[test]
fn a_read_only_overlay_fails_the_publish_and_is_undone() {
    let node = node();
    node.system().state().read_only_overlays = true;
    let request = request("csi-1", super::POD_UID);
    let error = publish(&node, &request).expect_err("read-only");
    assert!(matches!(error, PublishError::ReadOnly(_)), "{error}");
    assert!(node.system().mounts_under(&request.target_path).is_empty());
}

#[test]
fn a_recorded_publication_with_a_missing_mount_is_undone_and_published_again() {
    let node = node();
    let request = request("csi-1", super::POD_UID);
    publish(&node, &request).expect("published");
    // Someone unmounted the control bind.
    node.system().unmount(&layout::target_control(&request.target_path)).expect("unmount");
    assert_eq!(node.inspect(&request, &sc(), None).expect("inspected"), Found::Clear);
    assert!(node.system().mounts_under(&request.target_path).is_empty(), "the broken publication is undone");
    assert_eq!(node.records.load("csi-1").expect("load"), None);
    publish(&node, &request).expect("published again");
    assert_eq!(node.system().mounts_under(&request.target_path).len(), 3);
}

#[test]
fn a_half_done_publish_with_no_record_is_undone_before_the_target_is_published() {
    let node = node();
    let request = request("csi-1", super::POD_UID);
    let target = super::half_published(&node, &request);
    assert_eq!(node.inspect(&request, &sc(), None).expect("inspected"), Found::Clear);
    assert!(node.system().mounts_under(&target).is_empty());
    publish(&node, &request).expect("published");
    assert_eq!(node.system().mounts_under(&target).len(), 3);
}

#[test]
fn a_complete_publication_whose_record_is_gone_is_adopted_and_recorded_again() {
    let node = node();
    let request = request("csi-1", super::POD_UID);
    publish(&node, &request).expect("published");
    let recorded = node.records.load("csi-1").expect("load");
    node.records.remove("csi-1").expect("the record is lost");
    node.live.remove_target(&request.target_path);
    let calls = node.system().state().calls.len();
    assert_eq!(node.inspect(&request, &sc(), None).expect("inspected"), Found::Published { lower: PROVIDER_ROOTFS.into() });
    assert_eq!(node.records.load("csi-1").expect("load"), recorded, "recorded again as it was");
    assert_eq!(node.system().state().calls.len(), calls, "nothing unmounted");
}

#[test]
fn unpublish_unmounts_everything_removes_the_control_directory_and_converges() {
    let node = node();
    let request = request("csi-1", super::POD_UID);
    publish(&node, &request).expect("published");
    let image = sc_api::image_config::PublishedImage::Unavailable { image_ref: "sha256:1".into(), reason: "no runtime".into() };
    node.write_image_config("csi-1", &image).expect("image config");
    assert_eq!(node.read_image_config("csi-1").expect("read"), Some(image));
    let unpublish = unpublish_request("csi-1", super::POD_UID);
    node.unpublish(&unpublish).expect("unpublished");
    assert!(node.system().mounts_under(&request.target_path).is_empty());
    assert!(!node.system().exists(&request.target_path));
    assert!(!node.system().exists(&data().control_dir("csi-1")), "the control directory and its files are gone");
    assert_eq!(node.records.load("csi-1").expect("load"), None);
    assert!(node.live.uppers().is_empty());
    assert!(node.system().exists(&data().legacy_upper_dir(&sc())), "the persistent upper is kept");
    node.unpublish(&unpublish).expect("a repeated unpublish");
}

#[test]
fn a_busy_unmount_fails_the_unpublish_and_the_retry_finishes_it() {
    let node = node();
    publish(&node, &request("csi-1", super::POD_UID)).expect("published");
    let unpublish = unpublish_request("csi-1", super::POD_UID);
    node.system().fail_next("unmount", nix::libc::EBUSY);
    let error = node.unpublish(&unpublish).expect_err("busy");
    assert!(matches!(error, UnpublishError::Busy { .. }), "{error}");
    assert!(node.records.load("csi-1").expect("load").is_some(), "the record stays until the mounts are gone");
    node.unpublish(&unpublish).expect("kubelet's retry");
    assert!(node.system().mounts_under(&unpublish.target_path).is_empty());
}

#[test]
fn a_provider_whose_root_is_not_its_container_rootfs_is_refused() {
    let node = node();
    // The provider's process chrooted into a directory of the node's disk (an emptyDir).
    node.system().state().processes.get_mut(&17).expect("the provider").root = Some(crate::sys::FileIdentity { device: 2049, inode: 77 });
    let request = request("csi-1", super::POD_UID);
    let error = publish(&node, &request).expect_err("refused");
    assert!(matches!(error, PublishError::LowerNotFound { .. }), "{error}");
    assert!(node.system().mounts_under(&request.target_path).is_empty());
}

#[test]
fn a_new_rootfs_on_a_node_that_cannot_make_filesystems_is_refused_before_anything_is_mounted() {
    let node = node();
    node.system().state().entries.remove(&data().legacy_upper_dir(&sc()));
    let request = request("csi-1", super::POD_UID);
    let error = publish(&node, &request).expect_err("no mkfs");
    assert!(error.to_string().contains("this node cannot make size-limited filesystems: not part of this fake"), "{error}");
    assert!(node.system().mounts_under(&request.target_path).is_empty());
}
