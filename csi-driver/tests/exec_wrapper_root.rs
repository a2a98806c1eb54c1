//! Root integration test of the provider's exec-wrapper volume: the real binary, real gRPC over a
//! Unix socket, a real read-only bind of `<data-root>/exec-wrapper/`, its unpublish after a plugin
//! restart, and the refusal of a directory holding anything else. Run as root (CI does); as a
//! normal user it skips with a message.

mod common;

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::World;
use csi_driver::validate::context_keys;
use sc_api::consts::VOLUME_ATTR_EXEC_WRAPPER;
use sc_proto::csi::volume_capability::{AccessMode, AccessType, MountVolume, access_mode::Mode};
use sc_proto::csi::{NodePublishVolumeRequest, NodeUnpublishVolumeRequest, VolumeCapability};
use tonic::Code;

/// What this test needs root for, said when it skips as a normal user.
const NEEDS_ROOT: &str = "bind mounts";

const POD_UID: &str = "4c3b2a19-0f8e-4d7c-9b6a-5e4d3c2b1a09";

fn target(world: &World) -> PathBuf {
    world.kubelet_dir.join("pods").join(POD_UID).join("volumes/kubernetes.io~csi/sc-bin/mount")
}

/// What kubelet sends for the provider pod's `sc-bin` volume (`readOnly: true`).
fn publish_request(world: &World) -> NodePublishVolumeRequest {
    let target = target(world);
    std::fs::create_dir_all(target.parent().expect("parent")).expect("kubelet creates the parent");
    NodePublishVolumeRequest {
        volume_id: "csi-bin".into(),
        target_path: target.display().to_string(),
        volume_capability: Some(VolumeCapability {
            access_type: Some(AccessType::Mount(MountVolume::default())),
            access_mode: Some(AccessMode { mode: Mode::SingleNodeWriter as i32 }),
        }),
        readonly: true,
        volume_context: HashMap::from([
            (context_keys::EPHEMERAL.to_owned(), "true".to_owned()),
            (context_keys::POD_NAME.to_owned(), "box-provider".to_owned()),
            (context_keys::POD_NAMESPACE.to_owned(), "team-a".to_owned()),
            (context_keys::POD_UID.to_owned(), POD_UID.to_owned()),
            (VOLUME_ATTR_EXEC_WRAPPER.to_owned(), "true".to_owned()),
        ]),
        ..Default::default()
    }
}

fn unpublish_request(world: &World) -> NodeUnpublishVolumeRequest {
    NodeUnpublishVolumeRequest { volume_id: "csi-bin".into(), target_path: target(world).display().to_string() }
}

/// The mount options of the mount at `at` in the host's mount table.
fn mount_options(at: &Path) -> Option<Vec<String>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let mounts = csi_driver::mountinfo::parse(&text).expect("parse");
    csi_driver::mountinfo::mount_at(&mounts, at).map(|entry| entry.mount_options.clone())
}

#[tokio::test]
async fn the_exec_wrapper_is_bound_read_only_executable_and_unbound_after_a_restart_as_root() {
    if common::skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let mut world = World::new();
    world.start_driver();
    let mut client = world.client().await;
    // What the DaemonSet's init container leaves (`sc-exec install <data-root>/exec-wrapper`).
    let dir = world.data_root.join("exec-wrapper");
    std::fs::create_dir(&dir).expect("the exec-wrapper directory");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::write(dir.join("sc-exec"), "#!/bin/sh\necho wrapped \"$@\"\n").expect("sc-exec");
    std::fs::set_permissions(dir.join("sc-exec"), std::fs::Permissions::from_mode(0o755)).expect("chmod");

    client.node.node_publish_volume(publish_request(&world)).await.expect("publish");
    let target = target(&world);
    let options = mount_options(&target).expect("the bind is mounted");
    for option in ["ro", "nosuid", "nodev"] {
        assert!(options.iter().any(|mounted| mounted == option), "{option} in {options:?}");
    }
    assert!(!options.iter().any(|mounted| mounted == "noexec"), "{options:?}");
    let listed: Vec<_> = std::fs::read_dir(&target).expect("list").map(|entry| entry.expect("entry").file_name()).collect();
    assert_eq!(listed, ["sc-exec"], "only sc-exec");
    let run = std::process::Command::new(target.join("sc-exec")).arg("pause").output().expect("the provider runs sc-exec from it");
    assert_eq!(String::from_utf8_lossy(&run.stdout), "wrapped pause\n");
    let write = std::fs::write(target.join("planted"), "x").expect_err("read-only");
    assert_eq!(write.raw_os_error(), Some(nix::libc::EROFS));
    client.node.node_publish_volume(publish_request(&world)).await.expect("a repeated publish");
    assert_eq!(world.mounts_below(&target).len(), 1, "nothing more is mounted");

    // After a plugin restart (no record: the bind is known by its identity), the unpublish
    // still unmounts it.
    world.kill_driver();
    world.start_driver();
    let mut client = world.client().await;
    assert!(mount_options(&target).is_some(), "the restart leaves the provider's bind alone");
    client.node.node_unpublish_volume(unpublish_request(&world)).await.expect("unpublish");
    assert!(world.mounts_below(&target).is_empty());
    assert!(!target.exists(), "the target directory is removed");
    client.node.node_unpublish_volume(unpublish_request(&world)).await.expect("a repeated unpublish");

    // A directory holding anything besides sc-exec is never published.
    std::fs::write(dir.join("kubeconfig"), "secret").expect("a stray file");
    let refused = client.node.node_publish_volume(publish_request(&world)).await.expect_err("refused");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains("kubeconfig besides sc-exec; it must hold nothing else"), "{}", refused.message());
    assert!(world.mounts_below(&target).is_empty(), "nothing mounted");
}
