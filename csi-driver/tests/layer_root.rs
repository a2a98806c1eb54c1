//! Root integration test of the layer volume (`kubectl sc diff`): the real binary, real gRPC over a
//! Unix socket, a real upper made by a real overlay (a file added, a directory of the image
//! removed and made again, which overlayfs marks opaque, a file of the image deleted, which it
//! whites out) on the SC's own loop-device filesystem; the layer volume of the stopped SC (its
//! filesystem mounted for the read), a start and a stop while it is mounted, a plugin restart,
//! the unpublish, and the refusals. Run as root (CI does); as a normal user it skips with a message.

mod common;

use std::collections::HashMap;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use common::{ConsumerPod, ProviderProcess, World};
use csi_driver::cluster::StaticLayer;
use csi_driver::validate::context_keys;
use sc_api::consts::VOLUME_ATTR_LAYER_OF;
use sc_proto::csi::volume_capability::{AccessMode, AccessType, MountVolume, access_mode::Mode};
use sc_proto::csi::{NodeGetVolumeStatsRequest, NodePublishVolumeRequest, NodeUnpublishVolumeRequest, VolumeCapability};
use tonic::Code;

/// What this test needs root for, said when it skips as a normal user.
const NEEDS_ROOT: &str = "overlay, loop and bind mounts, trusted.* xattrs";

/// The `kubectl sc diff` pod.
const READER_UID: &str = "5d4c3b2a-1f0e-4d9c-8b7a-6f5e4d3c2b1a";

fn target(world: &World) -> PathBuf {
    world.kubelet_dir.join("pods").join(READER_UID).join("volumes/kubernetes.io~csi/sc-layer/mount")
}

/// What kubelet sends for the reader pod's `sc-layer` volume (`readOnly: true`).
fn layer_request(world: &World, sc_name: &str) -> NodePublishVolumeRequest {
    let target = target(world);
    std::fs::create_dir_all(target.parent().expect("parent")).expect("kubelet creates the parent");
    NodePublishVolumeRequest {
        volume_id: "csi-layer".into(),
        target_path: target.display().to_string(),
        volume_capability: Some(VolumeCapability {
            access_type: Some(AccessType::Mount(MountVolume::default())),
            access_mode: Some(AccessMode { mode: Mode::SingleNodeWriter as i32 }),
        }),
        readonly: true,
        volume_context: HashMap::from([
            (context_keys::EPHEMERAL.to_owned(), "true".to_owned()),
            (context_keys::POD_NAME.to_owned(), "box-diff-x7k2p".to_owned()),
            (context_keys::POD_NAMESPACE.to_owned(), "team-a".to_owned()),
            (context_keys::POD_UID.to_owned(), READER_UID.to_owned()),
            (VOLUME_ATTR_LAYER_OF.to_owned(), sc_name.to_owned()),
        ]),
        ..Default::default()
    }
}

fn unpublish_request(world: &World) -> NodeUnpublishVolumeRequest {
    NodeUnpublishVolumeRequest { volume_id: "csi-layer".into(), target_path: target(world).display().to_string() }
}

/// The mount options of the mount at `at` in the host's mount table.
fn mount_options(at: &Path) -> Option<Vec<String>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let mounts = csi_driver::mountinfo::parse(&text).expect("parse");
    csi_driver::mountinfo::mount_at(&mounts, at).map(|entry| entry.mount_options.clone())
}

#[tokio::test]
async fn a_stopped_scs_layer_is_read_only_with_its_opaque_directories_and_survives_a_restart_as_root() {
    if common::skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let mut world = World::new();
    let image = world.image("box");
    std::fs::create_dir_all(image.join("var/cache/apt")).expect("image dir");
    std::fs::write(image.join("var/cache/apt/pkgcache.bin"), "old cache").expect("image file");
    let provider = ProviderProcess::start(&world, &image);
    let consumer = ConsumerPod::new("team-a", "box");
    let layers = vec![
        StaticLayer {
            namespace: "team-a".into(),
            sc_name: "box".into(),
            sc_uid: consumer.sc_uid.clone(),
            data_node: Some("test-node".into()),
            claim: None,
        },
        StaticLayer {
            namespace: "team-a".into(),
            sc_name: "far".into(),
            sc_uid: common::uid(),
            data_node: Some("node-7".into()),
            claim: None,
        },
    ];
    world.set_cluster_with_layers(&[(consumer.clone(), Some(&provider), None)], layers);
    world.start_driver();
    let mut client = world.client().await;

    // The user's changes, made through the real overlay of the SC's rootfs.
    client.node.node_publish_volume(world.publish_request(&consumer, "csi-rootfs")).await.expect("rootfs publish");
    let rootfs = world.target_for(&consumer).join("rootfs");
    std::fs::write(rootfs.join("etc/added"), "mine\n").expect("a file added");
    std::fs::remove_dir_all(rootfs.join("var/cache")).expect("the image's directory removed");
    std::fs::create_dir(rootfs.join("var/cache")).expect("and made again: opaque");
    std::fs::write(rootfs.join("var/cache/fresh"), "new").expect("a file in it");
    std::fs::remove_file(rootfs.join("etc/os-release")).expect("a file of the image deleted: a whiteout");
    client.node.node_unpublish_volume(world.unpublish_request(&consumer, "csi-rootfs")).await.expect("stopped");
    assert!(!world.sc_filesystem_mounted(&consumer), "a stopped SC's filesystem is unmounted");

    // The layer volume of the stopped SC mounts its filesystem for the read.
    client.node.node_publish_volume(layer_request(&world, "box")).await.expect("layer publish");
    let target = target(&world);
    let upper = target.join("upper");
    assert!(world.sc_filesystem_mounted(&consumer), "mounted for the layer volume");
    let options = mount_options(&upper).expect("the upper is bound");
    for option in ["ro", "nosuid", "nodev", "noexec"] {
        assert!(options.iter().any(|mounted| mounted == option), "{option} in {options:?}");
    }
    let tmpfs = mount_options(&target).expect("the tmpfs");
    assert!(tmpfs.iter().any(|mounted| mounted == "ro"), "the tmpfs is read-only too: {tmpfs:?}");
    assert_eq!(std::fs::read(target.join("opaque-dirs")).expect("the list"), b"/var/cache\0", "exactly the opaque directory");
    assert_eq!(std::fs::read_to_string(upper.join("etc/added")).expect("the added file"), "mine\n");
    let whiteout = std::fs::symlink_metadata(upper.join("etc/os-release")).expect("the whiteout");
    assert!(whiteout.file_type().is_char_device(), "a deletion is a 0:0 character device in the upper");
    assert!(!upper.join("var/cache/apt").exists(), "the opaque directory holds only what the user put there");
    let write = std::fs::write(upper.join("etc/planted"), "x").expect_err("the bind is read-only");
    assert_eq!(write.raw_os_error(), Some(nix::libc::EROFS));
    let write = std::fs::write(target.join("planted"), "x").expect_err("the tmpfs is read-only");
    assert_eq!(write.raw_os_error(), Some(nix::libc::EROFS));
    let stats = client
        .node
        .node_get_volume_stats(NodeGetVolumeStatsRequest {
            volume_id: "csi-layer".into(),
            volume_path: target.display().to_string(),
            ..Default::default()
        })
        .await
        .expect("stats")
        .into_inner();
    assert!(!stats.volume_condition.expect("condition").abnormal);
    assert!(stats.usage[0].used > 0 && stats.usage[0].total > 0, "the upper's filesystem is measured: {:?}", stats.usage);
    client.node.node_publish_volume(layer_request(&world, "box")).await.expect("a repeated publish");
    assert_eq!(world.mounts_below(&target).len(), 2, "one tmpfs, one bind");

    // A start and a stop while the layer volume is mounted: the rootfs is published beside it,
    // and the stop leaves the filesystem to the layer volume.
    client.node.node_publish_volume(world.publish_request(&consumer, "csi-rootfs")).await.expect("a start beside the layer volume");
    assert_eq!(std::fs::read_to_string(rootfs.join("etc/added")).expect("the user's file"), "mine\n");
    client.node.node_unpublish_volume(world.unpublish_request(&consumer, "csi-rootfs")).await.expect("stopped");
    assert!(world.sc_filesystem_mounted(&consumer), "the layer volume still reads it");
    assert_eq!(std::fs::read_to_string(upper.join("etc/added")).expect("still readable"), "mine\n");

    // A plugin restart (nothing recorded) keeps it, and its unpublish still finds it.
    world.kill_driver();
    world.start_driver();
    let mut client = world.client().await;
    assert!(mount_options(&upper).is_some(), "the restart leaves the layer volume alone");
    client.node.node_unpublish_volume(unpublish_request(&world)).await.expect("unpublish");
    assert!(world.mounts_below(&target).is_empty(), "{:?}", world.mounts_below(&target));
    assert!(!target.exists(), "the target directory is removed");
    assert!(!world.sc_filesystem_mounted(&consumer), "its last reader gone, the filesystem is unmounted");
    client.node.node_unpublish_volume(unpublish_request(&world)).await.expect("a repeated unpublish");
    assert_eq!(world.read_kept(&consumer, "etc/added"), "mine\n", "the layer is kept");

    // Refused: another node's layer (named), a writable volume, an SC of another namespace.
    let far = client.node.node_publish_volume(layer_request(&world, "far")).await.expect_err("elsewhere");
    assert_eq!(far.code(), Code::FailedPrecondition, "{far:?}");
    assert!(far.message().contains("is on node \"node-7\", not on this node \"test-node\""), "{}", far.message());
    let mut writable = layer_request(&world, "box");
    writable.readonly = false;
    let refused = client.node.node_publish_volume(writable).await.expect_err("read-only only");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(refused.message().contains("set readOnly: true on the pod's csi volume"), "{}", refused.message());
    let mut other_namespace = layer_request(&world, "box");
    other_namespace.volume_context.insert(context_keys::POD_NAMESPACE.into(), "team-b".into());
    let denied = client.node.node_publish_volume(other_namespace).await.expect_err("another namespace");
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    assert!(world.mounts_below(&target).is_empty(), "nothing mounted by a refused publish");
}

const CLAIM_VOLUME: &str = "pv-layer-root-test";

fn run(command: &mut std::process::Command) {
    let output = command.output().unwrap_or_else(|error| panic!("{command:?}: {error}"));
    assert!(output.status.success(), "{command:?}: {}", String::from_utf8_lossy(&output.stderr));
}

#[tokio::test]
async fn a_claims_layer_is_read_through_the_readers_own_mount_and_a_planted_symlink_is_refused_as_root() {
    if common::skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let mut world = World::new();
    let claim =
        csi_driver::cluster::BoundClaim { claim_name: "box-rootfs".into(), claim_uid: common::uid(), volume_name: CLAIM_VOLUME.into() };
    let layers =
        vec![StaticLayer { namespace: "team-a".into(), sc_name: "box".into(), sc_uid: common::uid(), data_node: None, claim: Some(claim) }];
    world.set_cluster_with_layers(&[], layers);
    // Kubelet's mount of the claim (an ext4 on a loop device) for the reader pod.
    let mount = world.kubelet_dir.join("pods").join(READER_UID).join("volumes/kubernetes.io~local-volume").join(CLAIM_VOLUME);
    let image = world.dir.path().join("claim.img");
    run(std::process::Command::new("truncate").arg("-s").arg("64M").arg(&image));
    run(std::process::Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&image));
    std::fs::create_dir_all(&mount).expect("kubelet's volume directory");
    run(std::process::Command::new("mount").args(["-o", "loop"]).arg(&image).arg(&mount));
    // The SC's upper on the claim, written through a real overlay: an opaque directory.
    let data = mount.join("stoppablecontainer");
    let (upper, work, merged, lower) = (data.join("upper"), data.join("work"), world.dir.path().join("merged"), world.image("base"));
    std::fs::create_dir_all(lower.join("opt/tool")).expect("image dir");
    for dir in [&upper, &work, &merged] {
        std::fs::create_dir_all(dir).expect("overlay dirs");
    }
    let options = format!("lowerdir={},upperdir={},workdir={}", lower.display(), upper.display(), work.display());
    nix::mount::mount(Some("overlay"), &merged, Some("overlay"), nix::mount::MsFlags::empty(), Some(options.as_str())).expect("overlay");
    std::fs::remove_dir_all(merged.join("opt")).expect("remove");
    std::fs::create_dir_all(merged.join("opt/mine")).expect("made again: opaque");
    nix::mount::umount2(&merged, nix::mount::MntFlags::empty()).expect("umount overlay");

    world.start_driver();
    let mut client = world.client().await;
    client.node.node_publish_volume(layer_request(&world, "box")).await.expect("layer publish");
    let target = target(&world);
    assert_eq!(std::fs::read(target.join("opaque-dirs")).expect("the list"), b"/opt\0");
    assert!(target.join("upper/opt/mine").is_dir());
    let options = mount_options(&target.join("upper")).expect("bound");
    assert!(options.iter().any(|option| option == "ro"), "{options:?}");
    client.node.node_unpublish_volume(unpublish_request(&world)).await.expect("unpublish");
    assert!(world.mounts_below(&target).is_empty());
    assert!(mount_options(&mount).is_some(), "the claim's mount is kubelet's");

    // A pod that mounted the claim swapped the upper for a symlink to the node's data root.
    std::fs::rename(&upper, data.join("upper.old")).expect("move away");
    std::os::unix::fs::symlink(&world.data_root, &upper).expect("plant");
    let refused = client.node.node_publish_volume(layer_request(&world, "box")).await.expect_err("refused");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains("is never followed"), "{}", refused.message());
    assert!(world.mounts_below(&target).is_empty(), "nothing mounted");
}
