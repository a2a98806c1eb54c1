//! Root integration tests of what the node plugin keeps from the node's other users and what it
//! survives: the data root is root-only (a root tenant's setuid programs and device nodes are
//! reachable through the overlay only), and a publication record that does not parse never
//! costs a live consumer its mounts. The real binary, real gRPC over a Unix socket, real mounts.
//! Run as root (CI does); as a normal user each test skips with a message.

mod common;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{ConsumerPod, ProviderProcess, Serving, World};
use csi_driver::records::Record;

/// What these tests need root for, said when they skip as a normal user.
const NEEDS_ROOT: &str = "mounts, chown and running as nobody, cgroups";

/// The unprivileged user the checks run as (`nobody`).
const NOBODY: u32 = 65534;

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap_or_else(|error| panic!("{}: {error}", path.display())).permissions().mode() & 0o7777
}

/// Runs `program args` as uid and gid 65534 with no supplementary groups (std drops them when
/// root sets a uid); returns (success, stdout, stderr), or the error of exec itself.
fn run_as_nobody(program: impl AsRef<std::ffi::OsStr>, args: &[&std::ffi::OsStr]) -> std::io::Result<(bool, String, String)> {
    let output = Command::new(program).args(args).uid(NOBODY).gid(NOBODY).output()?;
    Ok((
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).trim().to_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}

fn as_nobody(program: impl AsRef<std::ffi::OsStr>, args: &[&std::ffi::OsStr]) -> (bool, String, String) {
    run_as_nobody(program, args).expect("run a system program as nobody")
}

/// What `stat` tells uid 65534 about `path`: the file type and mode, or the error.
fn stat_as_nobody(path: &Path) -> Result<String, String> {
    match as_nobody("stat", &["--format=%A".as_ref(), path.as_os_str()]) {
        (true, stdout, _) => Ok(stdout),
        (false, _, stderr) => Err(stderr),
    }
}

/// Whether uid 65534 can open `path` for writing (a device node) or reading.
fn open_as_nobody(path: &Path, write: bool) -> Result<(), String> {
    let script = if write { r#": > "$1""# } else { r#": < "$1""# };
    match as_nobody("/bin/sh", &["-c".as_ref(), script.as_ref(), "sh".as_ref(), path.as_os_str()]) {
        (true, _, _) => Ok(()),
        (false, _, stderr) => Err(stderr),
    }
}

fn denied<T: std::fmt::Debug>(result: Result<T, String>, what: &str) {
    match result {
        Err(message) if message.contains("Permission denied") => {}
        other => panic!("{what}: expected EACCES for uid {NOBODY}, got {other:?}"),
    }
}

#[tokio::test]
async fn nothing_under_the_data_root_is_reachable_for_other_users_but_the_rootfs_works_as_root() {
    if common::skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let Serving { mut client, consumer, provider: _provider, world } = Serving::start("team-a", "dev").await;
    // A temporary directory is private; open the world like a node's /var/lib, so that only the
    // plugin's own modes stand between uid 65534 and the data root.
    std::fs::set_permissions(world.dir.path(), std::fs::Permissions::from_mode(0o755)).expect("open the world");
    client.node.node_publish_volume(world.publish_request(&consumer, "csi-1")).await.expect("publish");

    // What a root tenant puts in its rootfs: a setuid-root program and a device node anyone may
    // open (runc lets a root container mknod), next to an ordinary file.
    let rootfs = world.target_for(&consumer).join("rootfs");
    std::fs::copy("/usr/bin/id", rootfs.join("usr/bin/root-shell")).expect("copy through the overlay");
    std::fs::set_permissions(rootfs.join("usr/bin/root-shell"), std::fs::Permissions::from_mode(0o4755)).expect("setuid");
    let null = nix::sys::stat::makedev(1, 3);
    nix::sys::stat::mknod(
        &rootfs.join("dev/anyone"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        null,
    )
    .expect("mknod through the overlay");
    std::fs::set_permissions(rootfs.join("dev/anyone"), std::fs::Permissions::from_mode(0o666)).expect("past the umask");
    std::fs::write(rootfs.join("etc/motd"), "hello\n").expect("write through the overlay");
    std::fs::set_permissions(rootfs.join("etc/motd"), std::fs::Permissions::from_mode(0o644)).expect("chmod");

    // Directly on the node: nothing of it, at any depth.
    let upper = world.upper_dir(&consumer);
    denied(stat_as_nobody(&upper.join("etc/motd")), "stat of an upper file");
    denied(open_as_nobody(&upper.join("etc/motd"), false), "reading an upper file");
    denied(stat_as_nobody(&upper.join("usr/bin/root-shell")), "stat of the setuid program in the upper");
    let run = run_as_nobody(upper.join("usr/bin/root-shell"), &["-u".as_ref()]);
    assert_eq!(run.as_ref().map_err(std::io::Error::kind).err(), Some(std::io::ErrorKind::PermissionDenied), "running it: {run:?}");
    denied(stat_as_nobody(&upper.join("dev/anyone")), "stat of the device node in the upper");
    denied(open_as_nobody(&upper.join("dev/anyone"), true), "opening the device node in the upper");
    for path in [
        world.data_root.join("containers"),
        world.data_root.join("publications/csi-1.json"),
        world.data_root.join("control/csi-1/prepare.sock"),
    ] {
        denied(stat_as_nobody(&path), &path.display().to_string());
    }

    // Through the overlay, the rootfs is what the tenant made it: the setuid program still
    // raises its user to root, the device node opens, the file reads.
    assert_eq!(stat_as_nobody(&rootfs.join("usr/bin/root-shell")), Ok("-rwsr-xr-x".to_owned()));
    let (ran, euid, stderr) = as_nobody(rootfs.join("usr/bin/root-shell"), &["-u".as_ref()]);
    assert!(ran, "{stderr}");
    assert_eq!(euid, "0", "setuid works through the overlay");
    assert_eq!(stat_as_nobody(&rootfs.join("dev/anyone")), Ok("crw-rw-rw-".to_owned()));
    open_as_nobody(&rootfs.join("dev/anyone"), true).expect("the device node works through the overlay");
    open_as_nobody(&rootfs.join("etc/motd"), false).expect("the file reads through the overlay");
    // An unprivileged workload still writes where the rootfs lets it.
    std::fs::set_permissions(rootfs.join("tmp"), std::fs::Permissions::from_mode(0o1777)).expect("chmod /tmp");
    open_as_nobody(&rootfs.join("tmp/mine"), true).expect("a write through the overlay as uid 65534");
    assert_eq!(std::fs::metadata(upper.join("tmp/mine")).map(|metadata| std::os::unix::fs::MetadataExt::uid(&metadata)).ok(), Some(NOBODY));

    // The modes that do it: root-only above the upper, the upper as the rootfs's `/`.
    let sc_dir = upper.parent().expect("the SC's dir");
    for dir in [
        world.data_root.clone(),
        world.data_root.join("containers"),
        world.data_root.join("containers/team-a"),
        world.data_root.join("containers/team-a/dev"),
        sc_dir.to_path_buf(),
        sc_dir.join("work"),
        world.data_root.join("control"),
        world.data_root.join("control/csi-1"),
        world.data_root.join("publications"),
    ] {
        assert_eq!(mode(&dir), 0o700, "{}", dir.display());
    }
    assert_eq!(mode(&upper), 0o755, "the upper is the rootfs's /");
    assert_eq!(mode(&world.data_root.join("publications/csi-1.json")), 0o600);
    assert_eq!(mode(&world.data_root.join("control/csi-1/prepare.sock")), 0o600);
    // And, in depth: the uppers' filesystem is mounted nosuid,nodev where they live.
    let containers = world.data_root.join("containers");
    let text = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let sealed = csi_driver::mountinfo::parse(&text).expect("parse").into_iter().rev().find(|entry| entry.mount_point == containers);
    let options = sealed.map(|entry| entry.mount_options).unwrap_or_default();
    assert!(options.iter().any(|option| option == "nosuid") && options.iter().any(|option| option == "nodev"), "{options:?}");

    client.node.node_unpublish_volume(world.unpublish_request(&consumer, "csi-1")).await.expect("unpublish");
}

#[tokio::test]
async fn the_data_root_is_made_root_only_at_start_up_as_root() {
    if common::skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let mut world = World::new();
    // What an earlier version or kubelet's DirectoryOrCreate left: all world-traversable.
    for dir in ["", "containers/ns/old/uid/upper", "control", "publications"] {
        let path = world.data_root.join(dir);
        std::fs::create_dir_all(&path).expect("mkdir");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    std::fs::set_permissions(world.data_root.join("containers"), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    world.start_driver();
    let _client = world.client().await;
    for dir in ["", "containers", "control", "publications"] {
        assert_eq!(mode(&world.data_root.join(dir)), 0o700, "{dir:?}");
    }
    assert_eq!(mode(&world.data_root.join("containers/ns/old/uid/upper")), 0o755, "existing data is left as it is");
}

/// Mount ids and points at and below `target`: the same ids mean the very same mounts.
fn mounts_at(target: &Path) -> Vec<(u32, PathBuf)> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let mut mounts: Vec<(u32, PathBuf)> = csi_driver::mountinfo::parse(&text)
        .expect("parse")
        .into_iter()
        .filter(|entry| entry.mount_point.starts_with(target))
        .map(|entry| (entry.mount_id, entry.mount_point))
        .collect();
    mounts.sort();
    mounts
}

fn quarantined(world: &World) -> Vec<(String, Vec<u8>)> {
    let dir = world.data_root.join("publications/quarantine");
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok())
                .map(|entry| (entry.file_name().to_string_lossy().into_owned(), std::fs::read(entry.path()).expect("read")))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

#[tokio::test]
async fn garbage_in_a_live_publications_record_never_costs_the_consumer_its_mounts_as_root() {
    if common::skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let Serving { mut client, consumer, provider, mut world } = Serving::start("ns", "dev").await;
    client.node.node_publish_volume(world.publish_request(&consumer, "csi-live")).await.expect("publish");
    let target = world.target_for(&consumer);
    let rootfs = target.join("rootfs");
    std::fs::write(rootfs.join("etc/alive"), "before\n").expect("write");
    let live_mounts = mounts_at(&target);
    assert_eq!(live_mounts.len(), 3);

    // A torn record (a power loss mid-write on a filesystem that reorders), then a restart.
    world.kill_driver();
    let record = world.data_root.join("publications/csi-live.json");
    let torn = b"{\n  \"volumeId\": \"csi-live\",\n  \"targetPa".to_vec();
    std::fs::write(&record, &torn).expect("tear the record");
    world.start_driver();
    let mut client = world.client().await;

    assert_eq!(mounts_at(&target), live_mounts, "the live consumer's mounts were not touched");
    std::fs::write(rootfs.join("etc/alive"), "after\n").expect("the consumer still writes");
    let moved = quarantined(&world);
    assert_eq!(moved.len(), 1, "{moved:?}");
    assert!(moved[0].0.starts_with("csi-live.json."), "{moved:?}");
    assert_eq!(moved[0].1, torn, "kept for inspection as it was");
    // Recorded again from the mount table, and its consumer can still be prepared.
    let again: Record = serde_json::from_slice(&std::fs::read(&record).expect("recorded again")).expect("a record");
    assert_eq!((again.volume_id.as_str(), again.target_path.as_path()), ("csi-live", target.as_path()));
    assert_eq!(again.pod, consumer.pod, "the consumer pod, from kubelet's target path");
    assert_eq!((again.sc.namespace.as_str(), again.sc.name.as_str(), again.sc.uid.as_str()), ("ns", "dev", consumer.sc_uid.as_str()));
    let socket = world.data_root.join("control/csi-live/prepare.sock");
    assert!(std::fs::symlink_metadata(&socket).expect("the control socket").file_type().is_socket());
    assert!(std::os::unix::net::UnixStream::connect(&socket).is_ok(), "and it is served");

    // Kubelet's publish of the volume is answered as done, nothing remounted.
    client.node.node_publish_volume(world.publish_request(&consumer, "csi-live")).await.expect("publish again");
    assert_eq!(mounts_at(&target), live_mounts);

    // Garbage while the plugin runs: publish and unpublish both go by the mount table.
    std::fs::write(&record, b"\0\0\0\0").expect("garbage");
    client.node.node_publish_volume(world.publish_request(&consumer, "csi-live")).await.expect("publish over garbage");
    assert_eq!(mounts_at(&target), live_mounts, "still the same mounts");
    assert_eq!(quarantined(&world).len(), 2);
    std::fs::write(&record, b"").expect("an empty record");
    client.node.node_unpublish_volume(world.unpublish_request(&consumer, "csi-live")).await.expect("unpublish over garbage");
    assert!(mounts_at(&target).is_empty(), "unpublished");
    assert!(!target.exists());
    assert!(!record.exists(), "no record left");
    assert_eq!(quarantined(&world).len(), 3);
    assert_eq!(world.read_kept(&consumer, "etc/alive"), "after\n");

    // And the StoppableContainer starts again normally.
    let next = consumer.next_pod();
    world.set_cluster(&[(next.clone(), Some(&provider))]);
    client.node.node_publish_volume(world.publish_request(&next, "csi-next")).await.expect("a new consumer");
    assert_eq!(std::fs::read_to_string(world.target_for(&next).join("rootfs/etc/alive")).expect("read"), "after\n");
    client.node.node_unpublish_volume(world.unpublish_request(&next, "csi-next")).await.expect("unpublish");
}

#[tokio::test]
async fn a_half_done_publish_with_a_garbage_record_is_still_unwound_as_root() {
    if common::skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let mut world = World::new();
    let image = world.image("base");
    let provider = ProviderProcess::start(&world, &image);
    let consumer = ConsumerPod::new("ns", "half");
    world.set_cluster(&[(consumer.clone(), Some(&provider))]);
    // Our tmpfs at the target and nothing in it, and a record that does not parse.
    let target = world.target_for(&consumer);
    std::fs::create_dir_all(&target).expect("target");
    nix::mount::mount(Some("stoppablecontainer"), &target, Some("tmpfs"), nix::mount::MsFlags::empty(), None::<&str>).expect("tmpfs");
    std::fs::create_dir_all(world.data_root.join("publications")).expect("records dir");
    std::fs::write(world.data_root.join("publications/csi-half.json"), b"not json").expect("garbage");
    world.start_driver();
    let mut client = world.client().await;
    assert!(mounts_at(&target).is_empty(), "a half-done publication is unwound, record or not");
    assert_eq!(quarantined(&world).len(), 1);
    client.node.node_publish_volume(world.publish_request(&consumer, "csi-half")).await.expect("kubelet's retry");
    assert_eq!(mounts_at(&target).len(), 3);
    client.node.node_unpublish_volume(world.unpublish_request(&consumer, "csi-half")).await.expect("unpublish");
}
