//! Root integration tests of the node plugin: the real binary, real gRPC over a Unix socket, real
//! overlay mounts over a provider-like process's real root filesystem. Run as root (CI does); as a
//! normal user each test skips with a message.

mod common;

use std::path::Path;
use std::time::Duration;

use common::fake_cri::{CONTAINERD_FIXTURE, FakeRuntime, Serves, fixture};
use common::{ConsumerPod, ProviderCgroup, ProviderProcess, ProviderRoot, Serving, World};
use sc_api::image_config::{IMAGE_CONFIG_FILE_NAME, PublishedImage};
use sc_proto::csi::{
    GetPluginInfoRequest, NodeGetCapabilitiesRequest, NodeGetInfoRequest, NodeGetVolumeStatsRequest, NodeStageVolumeRequest,
};
use tonic::Code;

/// What these tests need root for, said when they skip as a normal user.
const NEEDS_ROOT: &str = "overlay mounts, cgroups";

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

#[tokio::test]
async fn a_publish_writes_the_image_config_the_runtime_gave_and_keeps_it_as_root() {
    if common::skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let mut world = World::new();
    // CRI-O 1.20's shape of service: runtime.v1 is refused, runtime.v1alpha2 answers.
    let runtime = FakeRuntime::serve(&world.runtime_socket, Serves::V1alpha2Only);
    let image = world.image("notebook");
    let provider = ProviderProcess::start(&world, &image);
    runtime.add_image(&provider.image_ref, Some(&fixture(CONTAINERD_FIXTURE)));
    let consumer = ConsumerPod::new("team-a", "notebook");
    world.set_cluster(&[(consumer.clone(), Some(&provider))]);
    world.start_driver();
    let mut client = world.client().await;
    client.node.node_publish_volume(world.publish_request(&consumer, "csi-image")).await.expect("publish");

    let file = world.image_config_file("csi-image");
    let Some(PublishedImage::Runtime { image_ref, config }) = world.image_config("csi-image") else {
        panic!("the publish wrote the runtime's config: {:?}", std::fs::read_to_string(&file))
    };
    assert_eq!(image_ref, provider.image_ref, "the image kubelet reports for the provider container");
    assert_eq!(
        (config.entrypoint.as_slice(), config.cmd.as_slice()),
        (&["tini".to_owned(), "-g".into(), "--".into()][..], &["start-notebook.sh".to_owned()][..])
    );
    assert_eq!((config.user.as_str(), config.working_dir.as_str()), ("1000", "/home/jovyan"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&file).expect("stat").permissions().mode() & 0o7777, 0o444);
    // The consumer reads the same file through the volume's read-only control bind.
    let in_volume = world.target_for(&consumer).join("control").join(IMAGE_CONFIG_FILE_NAME);
    let written = std::fs::read(&file).expect("read");
    assert_eq!(std::fs::read(&in_volume).expect("read through the volume"), written);
    assert!(runtime.asked().iter().all(|asked| asked.verbose && asked.image == provider.image_ref), "{:?}", runtime.asked());

    // A repeated publish leaves the file alone, whatever the runtime would answer now.
    runtime.add_image(&provider.image_ref, Some(r#"{"imageSpec":{"config":{"Cmd":["changed"]}}}"#));
    client.node.node_publish_volume(world.publish_request(&consumer, "csi-image")).await.expect("publish again");
    assert_eq!(std::fs::read(&file).expect("read"), written, "a repeated publish keeps the file");
    // So does a plugin restart (the file lives on the data root), and the publish after it.
    world.kill_driver();
    world.start_driver();
    let mut client = world.client().await;
    assert_eq!(std::fs::read(&in_volume).expect("read"), written, "kept across the restart");
    client.node.node_publish_volume(world.publish_request(&consumer, "csi-image")).await.expect("publish after the restart");
    assert_eq!(std::fs::read(&file).expect("read"), written);
    // A live publication without the file (one of an earlier release): the repeated publish
    // writes it, from the runtime's answer of now.
    std::fs::remove_file(&file).expect("remove the file");
    client.node.node_publish_volume(world.publish_request(&consumer, "csi-image")).await.expect("publish without the file");
    let Some(PublishedImage::Runtime { config, .. }) = world.image_config("csi-image") else { panic!("written again") };
    assert_eq!(config.cmd, ["changed"]);

    client.node.node_unpublish_volume(world.unpublish_request(&consumer, "csi-image")).await.expect("unpublish");
    assert!(!world.data_root.join("control/csi-image").exists(), "unpublish removes the control directory with the file");
}

#[tokio::test]
async fn without_a_runtime_the_publish_succeeds_and_the_file_says_why_there_is_no_config_as_root() {
    if common::skip_unless_root(NEEDS_ROOT) {
        return;
    }
    // Nothing listens on the world's runtime socket.
    let Serving { mut client, consumer, provider, world } = Serving::start("team-a", "dev").await;
    client.node.node_publish_volume(world.publish_request(&consumer, "csi-none")).await.expect("publish without a runtime");
    let Some(PublishedImage::Unavailable { image_ref, reason }) = world.image_config("csi-none") else {
        panic!("an unavailable image: {:?}", world.image_config("csi-none"))
    };
    assert_eq!(image_ref, provider.image_ref);
    assert!(reason.starts_with(&format!("cannot connect to the container runtime at {}", world.runtime_socket.display())), "{reason}");
    assert!(read(&world.target_for(&consumer).join("rootfs/etc/os-release")).starts_with("NAME=base"), "the rootfs is there all the same");
    client.node.node_unpublish_volume(world.unpublish_request(&consumer, "csi-none")).await.expect("unpublish");
}

#[tokio::test]
async fn publish_write_unpublish_republish_keeps_files_as_root() {
    if common::skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let Serving { mut client, consumer: first, provider, world } = Serving::start("team-a", "dev").await;

    client.node.node_publish_volume(world.publish_request(&first, "csi-first")).await.expect("publish");
    let rootfs = world.target_for(&first).join("rootfs");
    assert_eq!(read(&rootfs.join("etc/os-release")), "NAME=base\n", "the provider's image is the lower layer");
    assert!(world.target_for(&first).join("control").is_dir(), "the control directory is part of the volume");
    std::fs::write(rootfs.join("etc/motd"), "kept\n").expect("write through the overlay");
    std::fs::create_dir_all(rootfs.join("home/user")).expect("mkdir through the overlay");
    std::fs::write(rootfs.join("home/user/notes"), "hello\n").expect("write");
    std::fs::remove_file(rootfs.join("etc/os-release")).expect("delete a lower file");

    let stats = client
        .node
        .node_get_volume_stats(NodeGetVolumeStatsRequest {
            volume_id: "csi-first".into(),
            volume_path: world.target_for(&first).display().to_string(),
            ..Default::default()
        })
        .await
        .expect("stats")
        .into_inner();
    assert_eq!(stats.usage.len(), 2);
    assert!(stats.usage[0].total > 0 && stats.usage[0].used > 0);
    assert_eq!(stats.volume_condition.map(|condition| condition.abnormal), Some(false));

    client.node.node_unpublish_volume(world.unpublish_request(&first, "csi-first")).await.expect("unpublish");
    assert!(!world.target_for(&first).exists(), "unpublish removes the target directory");
    assert!(world.mounts_below(world.dir.path()).iter().all(|mount| !mount.starts_with(&world.kubelet_dir.display().to_string())));
    assert!(!world.sc_filesystem_mounted(&first), "a stopped SC holds no mount and no loop device");
    assert_eq!(world.read_kept(&first, "etc/motd"), "kept\n", "the upper layer stays on the node");

    // A new consumer pod of the same StoppableContainer (a stop/start) sees everything.
    let second = first.next_pod();
    world.set_cluster(&[(second.clone(), Some(&provider))]);
    client.node.node_publish_volume(world.publish_request(&second, "csi-second")).await.expect("publish again");
    let rootfs = world.target_for(&second).join("rootfs");
    assert_eq!(read(&rootfs.join("etc/motd")), "kept\n");
    assert_eq!(read(&rootfs.join("home/user/notes")), "hello\n");
    assert!(!rootfs.join("etc/os-release").exists(), "a deletion (whiteout) persists too");
    client.node.node_unpublish_volume(world.unpublish_request(&second, "csi-second")).await.expect("unpublish");
}

#[tokio::test]
async fn a_new_provider_image_is_the_base_under_the_same_upper_as_root() {
    if common::skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let mut world = World::new();
    let old_image = world.image("old");
    std::fs::write(old_image.join("etc/version"), "1\n").expect("write");
    let old_provider = ProviderProcess::start(&world, &old_image);
    let consumer = ConsumerPod::new("ns", "app");
    world.set_cluster(&[(consumer.clone(), Some(&old_provider))]);
    world.start_driver();
    let mut client = world.client().await;
    client.node.node_publish_volume(world.publish_request(&consumer, "csi-1")).await.expect("publish");
    std::fs::write(world.target_for(&consumer).join("rootfs/etc/mine"), "user data\n").expect("write");
    client.node.node_unpublish_volume(world.unpublish_request(&consumer, "csi-1")).await.expect("unpublish");
    drop(old_provider);

    let new_image = world.image("new");
    std::fs::write(new_image.join("etc/version"), "2\n").expect("write");
    // In a cgroup layout the plugin does not know: it is found only by the fallback scan of
    // every process's cgroup file.
    let new_provider = ProviderProcess::start_in(&world, &new_image, ProviderCgroup::Elsewhere);
    let restarted = consumer.next_pod();
    world.set_cluster(&[(restarted.clone(), Some(&new_provider))]);
    client.node.node_publish_volume(world.publish_request(&restarted, "csi-2")).await.expect("publish over the new image");
    let rootfs = world.target_for(&restarted).join("rootfs");
    assert_eq!(read(&rootfs.join("etc/version")), "2\n", "the new image is the base");
    assert_eq!(read(&rootfs.join("etc/os-release")), "NAME=new\n");
    assert_eq!(read(&rootfs.join("etc/mine")), "user data\n", "the user's files stay on top");
    client.node.node_unpublish_volume(world.unpublish_request(&restarted, "csi-2")).await.expect("unpublish");
}

#[tokio::test]
async fn idempotency_matrix_as_root() {
    if common::skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let mut world = World::new();
    let image = world.image("base");
    let provider = ProviderProcess::start(&world, &image);
    let consumer = ConsumerPod::new("ns", "dev");
    let other_pod = consumer.next_pod();
    world.set_cluster(&[(consumer.clone(), Some(&provider)), (other_pod.clone(), Some(&provider))]);
    world.start_driver();
    let mut client = world.client().await;
    let node = &mut client.node;

    // Unpublish of a volume that was never published, of a missing target: OK.
    node.node_unpublish_volume(world.unpublish_request(&consumer, "csi-never")).await.expect("unknown volume is OK");

    node.node_publish_volume(world.publish_request(&consumer, "csi-1")).await.expect("publish");
    node.node_publish_volume(world.publish_request(&consumer, "csi-1")).await.expect("the same publish twice is OK");

    // Same volume id, another target: AlreadyExists.
    let mut moved = world.publish_request(&other_pod, "csi-1");
    moved.volume_context = world.publish_request(&other_pod, "csi-1").volume_context;
    let error = node.node_publish_volume(moved).await.expect_err("conflicting target");
    assert_eq!(error.code(), Code::AlreadyExists, "{error:?}");
    assert!(error.message().contains("already published at"), "{}", error.message());

    // Another pod of the same StoppableContainer while the first is live: one overlay per upper.
    let error = node.node_publish_volume(world.publish_request(&other_pod, "csi-2")).await.expect_err("second live overlay");
    assert_eq!(error.code(), Code::FailedPrecondition, "{error:?}");
    assert!(error.message().contains("only one consumer may use it at a time"), "{}", error.message());
    assert!(!world.target_for(&other_pod).exists(), "a refused publish leaves no target behind");

    node.node_unpublish_volume(world.unpublish_request(&consumer, "csi-1")).await.expect("unpublish");
    node.node_unpublish_volume(world.unpublish_request(&consumer, "csi-1")).await.expect("unpublish twice is OK");
    node.node_publish_volume(world.publish_request(&other_pod, "csi-2")).await.expect("now the other pod may publish");
    node.node_unpublish_volume(world.unpublish_request(&other_pod, "csi-2")).await.expect("unpublish");

    // Stats of a volume that is not published: NotFound.
    let error = node
        .node_get_volume_stats(NodeGetVolumeStatsRequest { volume_id: "csi-2".into(), volume_path: "/x".into(), ..Default::default() })
        .await
        .expect_err("not published");
    assert_eq!(error.code(), Code::NotFound);
    assert!(world.mounts_below(&world.kubelet_dir).is_empty(), "nothing left mounted");
}

#[tokio::test]
async fn malformed_unauthorised_and_unsupported_requests_as_root() {
    if common::skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let mut world = World::new();
    let image = world.image("base");
    let provider = ProviderProcess::start(&world, &image);
    let consumer = ConsumerPod::new("ns", "dev");
    world.set_cluster(&[(consumer.clone(), Some(&provider))]);
    world.start_driver();
    let mut client = world.client().await;

    let mut requests = Vec::new();
    let mut request = world.publish_request(&consumer, "csi-1");
    request.volume_id.clear();
    requests.push((request, "invalid volume_id: missing"));
    let mut request = world.publish_request(&consumer, "csi-1");
    request.target_path = "/etc".into();
    requests.push((request, "invalid target_path: \"/etc\" is outside"));
    let mut request = world.publish_request(&consumer, "csi-1");
    request.readonly = true;
    requests.push((request, "invalid readonly: must be false"));
    let mut request = world.publish_request(&consumer, "csi-1");
    request.volume_capability = None;
    requests.push((request, "invalid volume_capability: missing"));
    let mut request = world.publish_request(&consumer, "csi-1");
    request.volume_context.remove("csi.storage.k8s.io/pod.uid");
    requests.push((request, "podInfoOnMount: true"));
    for (request, expected) in requests {
        let error = client.node.node_publish_volume(request).await.expect_err("rejected");
        assert_eq!(error.code(), Code::InvalidArgument, "{error:?}");
        assert!(error.message().contains(expected), "{:?} should contain {expected:?}", error.message());
    }

    // A pod of another namespace naming this SC, and an impostor pod in the same namespace.
    let mut stranger = ConsumerPod::new("other-ns", "dev");
    stranger.sc_uid = consumer.sc_uid.clone();
    let error = client.node.node_publish_volume(world.publish_request(&stranger, "csi-2")).await.expect_err("denied");
    assert_eq!(error.code(), Code::PermissionDenied);
    assert!(error.message().contains("may not mount the rootfs of StoppableContainer other-ns/dev"), "{}", error.message());
    let impostor = consumer.next_pod();
    let error = client.node.node_publish_volume(world.publish_request(&impostor, "csi-3")).await.expect_err("denied");
    assert_eq!(error.code(), Code::PermissionDenied);
    assert!(world.mounts_below(&world.kubelet_dir).is_empty());

    let error = client.node.node_stage_volume(NodeStageVolumeRequest::default()).await.expect_err("no staging");
    assert_eq!(error.code(), Code::Unimplemented);
    assert!(error.message().contains("only serves inline (ephemeral) volumes"));

    let info = client.node.node_get_info(NodeGetInfoRequest {}).await.expect("info").into_inner();
    assert_eq!(info.node_id, "test-node");
    assert!(info.max_volumes_per_node > 0, "kubelet 1.20 rejects 0");
    let capabilities = client.node.node_get_capabilities(NodeGetCapabilitiesRequest {}).await.expect("caps").into_inner();
    assert_eq!(capabilities.capabilities.len(), 2);
    let plugin = client.identity.get_plugin_info(GetPluginInfoRequest {}).await.expect("plugin info").into_inner();
    assert_eq!(plugin.name, "rootfs.stoppablecontainer.xtlsoft.top");
}

#[tokio::test]
async fn a_starting_provider_is_waited_for_then_unavailable_as_root() {
    if common::skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let mut world = World::new();
    world.provider_wait_seconds = 1;
    let image = world.image("base");
    let consumer = ConsumerPod::new("ns", "slow");
    world.set_cluster(&[(consumer.clone(), None)]);
    world.start_driver();
    let mut client = world.client().await;

    let started = std::time::Instant::now();
    let error = client.node.node_publish_volume(world.publish_request(&consumer, "csi-1")).await.expect_err("no provider");
    assert_eq!(error.code(), Code::Unavailable);
    assert!(error.message().contains("is not ready after waiting"), "{}", error.message());
    assert!(started.elapsed() >= Duration::from_secs(1), "it waited");
    assert!(world.mounts_below(&world.kubelet_dir).is_empty());

    // The provider comes up while kubelet retries: the publish now waits for it and succeeds.
    let provider = ProviderProcess::start(&world, &image);
    let publish = client.node.node_publish_volume(world.publish_request(&consumer, "csi-1"));
    let cluster = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        world.set_cluster(&[(consumer.clone(), Some(&provider))]);
    };
    let (result, ()) = tokio::join!(publish, cluster);
    result.expect("publish after the provider started");
    client.node.node_unpublish_volume(world.unpublish_request(&consumer, "csi-1")).await.expect("unpublish");
}

/// The attack of a forged provider (security review, finding 1): a process whose root is a bind
/// of a directory of the node's disk (as when a pod's process chroots into its emptyDir). Its `/`
/// has the device of the node's root filesystem; a lookup by device alone made the node's `/` the
/// lower layer, and the consumer read the node's files.
#[tokio::test]
async fn a_provider_chrooted_into_a_host_directory_is_refused_as_root() {
    if common::skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let mut world = World::new();
    let image = world.image("honest");
    let empty_dir = world.dir.path().join("pods/p/volumes/kubernetes.io~empty-dir/x");
    std::fs::create_dir_all(&empty_dir).expect("emptyDir");
    std::fs::write(empty_dir.join("planted"), "tenant file").expect("emptyDir file");
    let provider =
        ProviderProcess::start_with(&world, &image, ProviderCgroup::Kubelet, ProviderRoot::ChrootIntoHostDirectory(empty_dir.clone()));
    let consumer = ConsumerPod::new("ns", "forged");
    world.set_cluster(&[(consumer.clone(), Some(&provider))]);
    world.start_driver();
    let mut client = world.client().await;

    let error = client.node.node_publish_volume(world.publish_request(&consumer, "csi-1")).await.expect_err("refused");
    assert_eq!(error.code(), Code::FailedPrecondition, "{error:?}");
    assert!(error.message().contains("is not a container root filesystem mounted in the node's mount namespace"), "{}", error.message());
    assert!(!error.message().contains(&empty_dir.display().to_string()), "no host path in what the tenant sees: {}", error.message());
    assert!(world.mounts_below(&world.kubelet_dir).is_empty(), "nothing mounted");
    let host = csi_driver::mountinfo::parse(&read(Path::new("/proc/self/mountinfo"))).expect("mountinfo");
    let node_root_lowers: Vec<_> = host.iter().filter(|entry| entry.super_option("lowerdir") == Some("/")).collect();
    assert!(node_root_lowers.is_empty(), "an overlay of the node's root: {node_root_lowers:?}");
    assert!(!world.data_root.join("publications/csi-1.json").exists(), "no record");
}

/// A container root that is a bind of a directory (containerd's `native` snapshotter) is used
/// as what it is, that directory, and not the whole filesystem that holds it.
#[tokio::test]
async fn a_bind_mounted_container_root_is_that_directory_not_its_disk_as_root() {
    if common::skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let mut world = World::new();
    let image = world.image("native");
    let provider = ProviderProcess::start_with(&world, &image, ProviderCgroup::Kubelet, ProviderRoot::BindOfDirectory);
    let consumer = ConsumerPod::new("ns", "native");
    world.set_cluster(&[(consumer.clone(), Some(&provider))]);
    world.start_driver();
    let mut client = world.client().await;

    client.node.node_publish_volume(world.publish_request(&consumer, "csi-1")).await.expect("publish");
    let rootfs = world.target_for(&consumer).join("rootfs");
    assert_eq!(read(&rootfs.join("etc/os-release")), "NAME=native\n");
    let entries: Vec<String> = std::fs::read_dir(&rootfs)
        .expect("list rootfs")
        .map(|entry| entry.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!entries.iter().any(|name| name == "var" || name == "home" || name == "root"), "the node's / leaked in: {entries:?}");
    let record = read(&world.data_root.join("publications/csi-1.json"));
    assert!(record.contains(&provider.rootfs_mount.display().to_string()), "the lower is the provider's bind: {record}");
    client.node.node_unpublish_volume(world.unpublish_request(&consumer, "csi-1")).await.expect("unpublish");
}

#[tokio::test]
async fn a_failed_mount_leaves_nothing_mounted_as_root() {
    if common::skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let mut world = World::new();
    // A provider whose image is itself an overlay: its rootfs is then two overlays deep and ours
    // would be a third, which the kernel refuses (stacking depth limit) — a real mount failure.
    let image = world.image("deep");
    let stacked = world.dir.path().join("stacked");
    for sub in ["upper", "work", "merged"] {
        std::fs::create_dir_all(stacked.join(sub)).expect("dirs");
    }
    let data =
        format!("lowerdir={},upperdir={},workdir={}", image.display(), stacked.join("upper").display(), stacked.join("work").display());
    nix::mount::mount(Some("overlay"), &stacked.join("merged"), Some("overlay"), nix::mount::MsFlags::empty(), Some(data.as_str()))
        .expect("stacked image");
    let provider = ProviderProcess::start(&world, &stacked.join("merged"));
    let consumer = ConsumerPod::new("ns", "deep");
    world.set_cluster(&[(consumer.clone(), Some(&provider))]);
    world.start_driver();
    let mut client = world.client().await;
    let error = client.node.node_publish_volume(world.publish_request(&consumer, "csi-1")).await.expect_err("too deep");
    assert_eq!(error.code(), Code::Internal, "{error:?}");
    assert!(error.message().contains("mounting the overlay at"), "{}", error.message());
    assert!(world.mounts_below(&world.kubelet_dir).is_empty(), "everything was unwound");
    assert!(!world.data_root.join("publications/csi-1.json").exists(), "no record left");
    drop(provider);
    nix::mount::umount2(&stacked.join("merged"), nix::mount::MntFlags::MNT_DETACH).expect("umount stacked");
}

#[tokio::test]
async fn a_symlink_laden_rootfs_mounts_nothing_outside_the_target_as_root() {
    if common::skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let mut world = World::new();
    let image = world.image("evil");
    // Every path a careless plugin might mount on is a symlink out of the rootfs.
    for (link, destination) in
        [("proc", "/"), ("dev", ".."), ("sys", "/etc"), ("rootfs", "/"), ("control", "/tmp"), ("etc/hosts", "/etc/shadow")]
    {
        let path = image.join(link);
        let _ = std::fs::remove_dir(&path);
        std::os::unix::fs::symlink(destination, &path).expect("symlink");
    }
    let provider = ProviderProcess::start(&world, &image);
    let consumer = ConsumerPod::new("ns", "evil");
    world.set_cluster(&[(consumer.clone(), Some(&provider))]);
    world.start_driver();
    let mut client = world.client().await;
    // Counted once the plugin is ready: its start-up mounts the data root's containers/ nosuid,nodev.
    let host_mounts_before = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo").lines().count();
    client.node.node_publish_volume(world.publish_request(&consumer, "csi-1")).await.expect("publish");

    let target = world.target_for(&consumer);
    let mut ours = world.mounts_below(&target);
    ours.sort();
    let expected: Vec<String> = ["", "/control", "/rootfs"].iter().map(|suffix| format!("{}{suffix}", target.display())).collect();
    assert_eq!(ours, expected, "exactly three mounts, all at the target");
    let host_mounts_after = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo").lines().count();
    // The three at the target, and the SC's own filesystem in its data directory.
    assert_eq!(host_mounts_after, host_mounts_before + 4, "no mount anywhere else");
    assert!(world.sc_filesystem_mounted(&consumer));
    let link = std::fs::read_link(target.join("rootfs/proc")).expect("still a symlink");
    assert_eq!(link, Path::new("/"));
    client.node.node_unpublish_volume(world.unpublish_request(&consumer, "csi-1")).await.expect("unpublish");
    assert!(world.mounts_below(&world.kubelet_dir).is_empty());
}

#[tokio::test]
async fn kill_9_at_any_point_then_restart_keeps_consumers_working_as_root() {
    if common::skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let mut world = World::new();
    let image = world.image("base");
    let provider = ProviderProcess::start(&world, &image);
    let steady = ConsumerPod::new("ns", "steady");
    let churn: Vec<ConsumerPod> = (0..6).map(|index| ConsumerPod::new("ns", &format!("churn-{index}"))).collect();
    let mut cluster: Vec<(ConsumerPod, Option<&ProviderProcess>)> = vec![(steady.clone(), Some(&provider))];
    cluster.extend(churn.iter().map(|consumer| (consumer.clone(), Some(&provider))));
    world.set_cluster(&cluster);
    world.start_driver();
    let mut client = world.client().await;
    client.node.node_publish_volume(world.publish_request(&steady, "csi-steady")).await.expect("publish");
    let steady_rootfs = world.target_for(&steady).join("rootfs");
    std::fs::write(steady_rootfs.join("etc/alive"), "0\n").expect("write");

    // Kill the plugin at varying points of publishes and unpublishes in flight.
    for round in 0..12u64 {
        let consumer = &churn[usize::try_from(round).expect("small") % churn.len()];
        let volume_id = format!("csi-churn-{round}");
        let publish = world.publish_request(consumer, &volume_id);
        let mut node = client.node.clone();
        let in_flight = tokio::spawn(async move { node.node_publish_volume(publish).await });
        tokio::time::sleep(Duration::from_micros(700 * round)).await;
        world.kill_driver();
        let _ = in_flight.await;
        world.start_driver();
        client = world.client().await;
        // Whatever state the kill left, kubelet's retry must succeed and then clean up fully.
        client.node.node_publish_volume(world.publish_request(consumer, &volume_id)).await.expect("retried publish");
        assert!(world.target_for(consumer).join("rootfs/etc/os-release").exists());
        let unpublish = world.unpublish_request(consumer, &volume_id);
        let mut node = client.node.clone();
        let in_flight = tokio::spawn(async move { node.node_unpublish_volume(unpublish).await });
        tokio::time::sleep(Duration::from_micros(300 * round)).await;
        world.kill_driver();
        let _ = in_flight.await;
        world.start_driver();
        client = world.client().await;
        client.node.node_unpublish_volume(world.unpublish_request(consumer, &volume_id)).await.expect("retried unpublish");
        assert!(world.mounts_below(&world.target_for(consumer)).is_empty(), "round {round}: nothing left mounted");

        // The steady consumer never noticed.
        std::fs::write(steady_rootfs.join("etc/alive"), format!("{round}\n")).expect("steady consumer still writes");
    }
    client.node.node_publish_volume(world.publish_request(&steady, "csi-steady")).await.expect("still published after restarts");
    client.node.node_unpublish_volume(world.unpublish_request(&steady, "csi-steady")).await.expect("unpublish");
    assert_eq!(world.read_kept(&steady, "etc/alive"), "11\n");
    assert!(world.mounts_below(&world.kubelet_dir).is_empty());
    let records: Vec<_> = std::fs::read_dir(world.data_root.join("publications")).expect("records").collect();
    assert!(records.is_empty(), "no record left: {records:?}");
}

#[tokio::test]
async fn recovery_unwinds_a_half_done_publish_and_sigterm_stops_cleanly_as_root() {
    if common::skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let mut world = World::new();
    let image = world.image("base");
    let provider = ProviderProcess::start(&world, &image);
    let consumer = ConsumerPod::new("ns", "dev");
    world.set_cluster(&[(consumer.clone(), Some(&provider))]);
    // What a crash between the first mount and the overlay leaves: our tmpfs at the target and no
    // record (the record is written only once every mount is in place).
    let target = world.target_for(&consumer);
    std::fs::create_dir_all(&target).expect("target");
    nix::mount::mount(Some("stoppablecontainer"), &target, Some("tmpfs"), nix::mount::MsFlags::empty(), None::<&str>).expect("tmpfs");
    std::fs::create_dir_all(target.join("rootfs")).expect("half-made rootfs dir");

    world.start_driver();
    let mut client = world.client().await;
    assert!(world.mounts_below(&world.kubelet_dir).is_empty(), "recovery unwound the half-done publish");
    client.node.node_publish_volume(world.publish_request(&consumer, "csi-1")).await.expect("kubelet's retry works");
    let status = world.stop_driver();
    assert!(status.success(), "SIGTERM exits 0: {status:?}");
    assert!(!world.socket.exists() || std::os::unix::net::UnixStream::connect(&world.socket).is_err(), "no longer serving");
    assert_eq!(world.mounts_below(&target).len(), 3, "mounts outlive the plugin");
    world.start_driver();
    let mut client = world.client().await;
    client.node.node_unpublish_volume(world.unpublish_request(&consumer, "csi-1")).await.expect("unpublish after restart");
}
