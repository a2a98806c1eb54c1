//! Start-up recovery against a fake node: a restart is a new mounter over the same node.

use super::{POD_UID, PROVIDER_ROOTFS, data, mounter_on, node, publish, request, sc};
use crate::layout::{self, DataLayout};
use crate::node::{Found, Mounter, UpperKey};
use crate::sys::System;
use crate::sys::fake::FakeSystem;

/// The plugin restarts on the same node.
fn restart(node: &Mounter<FakeSystem>) -> Mounter<FakeSystem> {
    mounter_on(node.system().clone())
}

#[test]
fn a_live_publication_survives_a_restart_and_is_served_again() {
    let before = node();
    let request = request("csi-1", POD_UID);
    publish(&before, &request).expect("published");
    let record = before.records.load("csi-1").expect("load").expect("recorded");
    let after = restart(&before);
    let recovered = after.recover().expect("recovered");
    assert_eq!((recovered.live, recovered.serve, recovered.unwound), (1, vec![record], vec![]));
    assert_eq!(after.system().mounts_under(&request.target_path).len(), 3, "nothing unmounted");
    assert_eq!(
        after.live.target_of(&UpperKey::Dir(data().upper_dir_in(&sc(), DataLayout::Unlimited))).as_ref(),
        Some(&request.target_path)
    );
    assert_eq!(after.inspect(&request, &sc(), None).expect("inspected"), Found::Published { lower: PROVIDER_ROOTFS.into() });
}

#[test]
fn a_recorded_publication_whose_overlay_vanished_is_undone() {
    let before = node();
    let request = request("csi-1", POD_UID);
    publish(&before, &request).expect("published");
    before.system().unmount(&layout::target_rootfs(&request.target_path)).expect("the overlay goes");
    let after = restart(&before);
    let recovered = after.recover().expect("recovered");
    assert_eq!((recovered.live, recovered.unwound), (0, vec!["csi-1".to_owned()]));
    assert!(after.system().mounts_under(&request.target_path).is_empty());
    assert!(!after.system().exists(&request.target_path));
    assert!(!after.system().exists(&data().control_dir("csi-1")));
    assert_eq!(after.records.load("csi-1").expect("load"), None);
    assert!(after.live.uppers().is_empty());
}

#[test]
fn a_publish_killed_before_it_recorded_itself_is_unwound() {
    let before = node();
    let target = super::half_published(&before, &request("csi-1", POD_UID));
    let after = restart(&before);
    assert_eq!(after.recover().expect("recovered").live, 0);
    assert!(after.system().mounts_under(&target).is_empty());
    assert!(!after.system().exists(&target));
}

#[test]
fn a_complete_publication_with_an_unreadable_record_is_kept_and_recorded_again() {
    let before = node();
    let request = request("csi-1", POD_UID);
    publish(&before, &request).expect("published");
    let record = before.records.load("csi-1").expect("load").expect("recorded");
    // A torn record: recovery quarantines it and goes by the mount table.
    before.system().put_file(&data().record_path("csi-1"), b"{\"volumeId\": \"csi-1\", \"targ");
    let after = restart(&before);
    let recovered = after.recover().expect("recovered");
    assert_eq!((recovered.live, recovered.serve.clone()), (1, vec![record.clone()]));
    assert_eq!(after.records.load("csi-1").expect("load"), Some(record), "recorded again from the mounts");
    assert_eq!(after.system().list_directory(&data().quarantine_dir()).expect("quarantine").len(), 1);
    assert_eq!(after.system().mounts_under(&request.target_path).len(), 3, "the consumer keeps its mounts");
}

#[test]
fn the_rootfs_data_is_sealed_nosuid_nodev_once() {
    let node = node();
    node.recover().expect("recovered");
    node.recover().expect("recovered again");
    let seals: Vec<String> = node.system().state().calls.iter().filter(|call| call.starts_with("seal ")).cloned().collect();
    assert_eq!(seals, [format!("seal {}", data().containers_dir().display())]);
}

#[test]
fn a_foreign_mount_below_kubelets_pods_is_not_touched() {
    let node = node();
    let target = super::target_of(POD_UID);
    node.system().add_directory(&target);
    node.system().add_foreign_mount("nfs", "server:/export", &target);
    assert_eq!(node.recover().expect("recovered").live, 0);
    assert_eq!(node.system().mounts_under(&target), std::slice::from_ref(&target));
}
