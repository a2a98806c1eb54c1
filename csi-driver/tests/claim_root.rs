//! Root integration tests of a rootfs on a claim (`spec.storage`): the real binary over a real
//! ext4 filesystem on a loop device, mounted where kubelet mounts a claim's volume for the
//! consumer pod, with a static cluster view that says the claim is bound. Run as root (CI does);
//! as a normal user each test skips with a message.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{ConsumerPod, ProviderProcess, World};
use csi_driver::cluster::BoundClaim;
use sc_proto::csi::NodeGetVolumeStatsRequest;
use tonic::Code;

/// What these tests need root for, said when they skip as a normal user.
const NEEDS_ROOT: &str = "loop devices, mkfs, overlay mounts";

const VOLUME: &str = "pv-claim-root-test";

fn claim() -> BoundClaim {
    BoundClaim { claim_name: "dev-rootfs".into(), claim_uid: common::uid(), volume_name: VOLUME.into() }
}

/// Where kubelet mounts the claim's (local) volume for the consumer pod.
fn claim_mount(world: &World, consumer: &ConsumerPod) -> PathBuf {
    world.kubelet_dir.join("pods").join(&consumer.pod.uid).join("volumes/kubernetes.io~local-volume").join(VOLUME)
}

fn run(command: &mut Command) {
    let output = command.output().unwrap_or_else(|error| panic!("{command:?}: {error}"));
    assert!(output.status.success(), "{command:?}: {}", String::from_utf8_lossy(&output.stderr));
}

/// Mounts a fresh 64 MiB ext4 on a loop device at `at`, as kubelet mounts a block volume (the
/// world's drop unmounts it, and the loop device detaches with it).
fn mount_ext4_claim(world: &World, at: &Path) {
    let image = world.dir.path().join("claim.img");
    run(Command::new("truncate").arg("-s").arg("64M").arg(&image));
    run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&image));
    std::fs::create_dir_all(at).expect("kubelet's volume directory");
    run(Command::new("mount").args(["-o", "loop"]).arg(&image).arg(at));
}

/// A world serving `consumer` of an SC on the claim, over a running provider.
fn world_with_claim() -> (World, ProviderProcess, ConsumerPod) {
    let world = World::new();
    let provider = ProviderProcess::start(&world, &world.image("base"));
    let consumer = ConsumerPod::new("team-a", "dev");
    world.set_cluster_with_claims(&[(consumer.clone(), Some(&provider), Some(claim()))]);
    (world, provider, consumer)
}

fn mount_options_at(path: &Path) -> (Vec<String>, String) {
    let text = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let mounts = csi_driver::mountinfo::parse(&text).expect("parse");
    let entry = csi_driver::mountinfo::mount_at(&mounts, path).unwrap_or_else(|| panic!("nothing mounted at {}", path.display()));
    (entry.mount_options.clone(), entry.source.clone())
}

#[tokio::test]
async fn files_written_in_the_rootfs_land_on_the_claim_and_a_planted_device_node_is_inert() {
    if common::skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let (mut world, _provider, consumer) = world_with_claim();
    let mount = claim_mount(&world, &consumer);
    mount_ext4_claim(&world, &mount);
    // While the SC was stopped, the tenant mounted the claim in a pod of its own and planted the
    // node's memory device in the upper.
    let upper = mount.join("stoppablecontainer/upper");
    std::fs::create_dir_all(&upper).expect("the tenant's upper");
    let planted = upper.join("mem");
    nix::sys::stat::mknod(
        &planted,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 1),
    )
    .expect("mknod");
    world.start_driver();
    let mut client = world.client().await;
    client.node.node_publish_volume(world.publish_request(&consumer, "csi-claim")).await.expect("publish");

    let rootfs = world.target_for(&consumer).join("rootfs");
    std::fs::write(rootfs.join("hello.txt"), "kept on the claim\n").expect("write in the rootfs");
    assert_eq!(std::fs::read_to_string(upper.join("hello.txt")).expect("on the claim"), "kept on the claim\n");
    assert!(std::fs::read_to_string(rootfs.join("etc/os-release")).expect("the lower").contains("NAME=base"));
    let (options, source) = mount_options_at(&rootfs);
    assert_eq!(source, format!("sc-claim:{VOLUME}"));
    assert!(options.iter().any(|option| option == "nodev") && options.iter().any(|option| option == "nosuid"), "{options:?}");
    let opened = std::fs::File::open(rootfs.join("mem")).expect_err("a device node on a nodev mount cannot be opened");
    assert_eq!(opened.raw_os_error(), Some(nix::libc::EACCES), "{opened}");
    let data_dir = std::fs::metadata(mount.join("stoppablecontainer")).expect("stat");
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&data_dir), 0, "root-owned");
    assert!(!world.sc_dir(&consumer).exists(), "nothing of the SC on the node's data root");

    // The stats are the claim's filesystem's: at most its 64 MiB.
    let stats = client
        .node
        .node_get_volume_stats(NodeGetVolumeStatsRequest {
            volume_id: "csi-claim".into(),
            volume_path: world.target_for(&consumer).display().to_string(),
            ..Default::default()
        })
        .await
        .expect("stats")
        .into_inner();
    let bytes = stats.usage.iter().find(|usage| usage.unit == 1).expect("bytes");
    assert!(bytes.total > 0 && bytes.total <= 64 << 20, "{bytes:?}");

    client.node.node_unpublish_volume(world.unpublish_request(&consumer, "csi-claim")).await.expect("unpublish");
    assert!(world.mounts_below(&world.target_for(&consumer)).is_empty(), "the overlay is gone");
    assert_eq!(world.mounts_below(&mount), [mount.display().to_string()], "the claim's mount is kubelet's: it stays");
    assert_eq!(std::fs::read_to_string(upper.join("hello.txt")).expect("kept"), "kept on the claim\n");
}

#[tokio::test]
async fn a_tmpfs_claim_is_refused_with_the_message_kubelet_shows() {
    if common::skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let (mut world, _provider, consumer) = world_with_claim();
    let mount = claim_mount(&world, &consumer);
    std::fs::create_dir_all(&mount).expect("kubelet's volume directory");
    nix::mount::mount(Some("claim"), &mount, Some("tmpfs"), nix::mount::MsFlags::empty(), Some("size=16m")).expect("tmpfs");
    world.start_driver();
    let mut client = world.client().await;
    let status = client.node.node_publish_volume(world.publish_request(&consumer, "csi-tmpfs")).await.expect_err("refused");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().starts_with("claim team-a/dev-rootfs of StoppableContainer team-a/dev (uid "), "{}", status.message());
    assert!(
        status.message().ends_with(
            "cannot hold the rootfs: an overlay upper needs a local block filesystem with d_type and xattrs (ext4, xfs, btrfs); the claim's StorageClass gives tmpfs: use a block StorageClass"
        ),
        "{}",
        status.message()
    );
    assert!(world.mounts_below(&world.target_for(&consumer)).is_empty(), "nothing mounted");
    assert!(!mount.join("stoppablecontainer").exists(), "nothing written to the claim");
}

#[tokio::test]
async fn a_symlinked_data_directory_on_the_claim_is_refused_and_its_target_untouched() {
    if common::skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let (mut world, _provider, consumer) = world_with_claim();
    let mount = claim_mount(&world, &consumer);
    mount_ext4_claim(&world, &mount);
    // The tenant points the data directory at a directory of the node (another SC's data).
    let victim = world.dir.path().join("victim");
    std::fs::create_dir_all(victim.join("upper")).expect("victim");
    std::fs::create_dir_all(victim.join("work")).expect("victim");
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    std::os::unix::fs::symlink(&victim, mount.join("stoppablecontainer")).expect("symlink");
    world.start_driver();
    let mut client = world.client().await;
    let status = client.node.node_publish_volume(world.publish_request(&consumer, "csi-link")).await.expect_err("refused");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(
        status.message().contains(&format!("at {}/stoppablecontainer, where the plugin needs directories of its own", mount.display())),
        "{}",
        status.message()
    );
    assert!(world.mounts_below(&world.target_for(&consumer)).is_empty(), "nothing mounted");
    assert_eq!(std::fs::read_dir(victim.join("upper")).expect("list").count(), 0, "nothing written through the link");
}
