//! Root integration tests of preparing a consumer's view of its rootfs: the real plugin binary
//! publishes a real overlay, a consumer container is simulated in real mount and PID namespaces
//! inside a pod container's cgroup, and it asks over the real control socket, as `sc-exec` does.
//! Everything it checks, it checks from the host through `/proc/<pid>/root` and the consumer's
//! mountinfo. Run as root (CI does); as a normal user each test skips with a message (but the
//! wire-format test, which needs no root).
//!
//! The consumer's PID 1 is this very test binary, run inside the container as `/client` with
//! [`common::CONSUMER_CLIENT_ENV`] set: `control_client_speaks_the_wire_format` then acts as the
//! consumer's client, one exchange per `prepare` line on its stdin.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{
    CONSUMER_CLIENT_ENV, ConsumerCgroup, ConsumerPod, ConsumerProcess, KubeletFiles, ProviderProcess, Serving, World,
    host_mounts_outside_test_worlds,
};
use sc_api::exec_config::{ControlRequest, ControlResponse};

/// What these tests need root for, said when they skip as a normal user.
const NEEDS_ROOT: &str = "mounts, mount and PID namespaces, cgroups";

const PREPARED: &str = r#"{"result":"prepared"}"#;
const CLIENT_TEST: &str = "control_client_speaks_the_wire_format";

/// One exchange on the control socket, the way `sc-exec` makes it: the response line, or what
/// went wrong.
fn exchange(socket: &Path, request: &[u8]) -> String {
    let attempt = || -> std::io::Result<String> {
        let mut stream = UnixStream::connect(socket)?;
        stream.set_read_timeout(Some(Duration::from_secs(40)))?;
        stream.write_all(request)?;
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line)?;
        Ok(line.trim().to_owned())
    };
    attempt().unwrap_or_else(|error| format!("ERROR {error}"))
}

fn run_as_consumer_client(socket: &str) -> ! {
    let prepare = serde_json::to_string(&ControlRequest::Prepare).expect("serializes") + "\n";
    println!("CLIENT READY");
    for line in std::io::stdin().lock().lines().map_while(Result::ok) {
        match line.trim() {
            "prepare" => println!("RESPONSE {}", exchange(Path::new(socket), prepare.as_bytes())),
            "garbage" => println!("RESPONSE {}", exchange(Path::new(socket), b"rm -rf /\n")),
            _ => {}
        }
    }
    std::process::exit(0)
}

#[test]
fn control_client_speaks_the_wire_format() {
    if let Ok(socket) = std::env::var(CONSUMER_CLIENT_ENV) {
        run_as_consumer_client(&socket);
    }
    // Outside a consumer: the client against a stand-in server speaking sc_api's wire format.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("prepare.sock");
    let listener = UnixListener::bind(&path).expect("bind");
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).expect("request");
        let request: ControlRequest = serde_json::from_str(line.trim()).expect("a ControlRequest");
        let mut answer = serde_json::to_vec(&ControlResponse::Prepared).expect("serializes");
        answer.push(b'\n');
        reader.get_mut().write_all(&answer).expect("answer");
        request
    });
    let answer = exchange(&path, b"{\"op\":\"prepare\"}\n");
    assert_eq!(server.join().expect("server"), ControlRequest::Prepare);
    assert_eq!(serde_json::from_str::<ControlResponse>(&answer).expect("a ControlResponse"), ControlResponse::Prepared);
}

/// Starts a consumer container of `cgroup` with the published `target` at `/.sc`.
fn start_consumer(world: &World, kubelet: &KubeletFiles, target: &Path, cgroup: &ConsumerCgroup, name: &str) -> ConsumerProcess {
    let client = std::env::current_exe().expect("the test binary");
    ConsumerProcess::start(
        &world.dir.path().join(name),
        target,
        kubelet,
        cgroup,
        &client,
        &[CLIENT_TEST, "--exact", "--nocapture", "--test-threads=1"],
    )
}

fn container_of(consumer: &ConsumerPod) -> ConsumerCgroup {
    ConsumerCgroup::Container { pod_uid: consumer.pod.uid.clone() }
}

fn prepare(container: &mut ConsumerProcess) -> String {
    container.send("prepare");
    container.wait_for_line("RESPONSE ")
}

fn failure_message(response: &str) -> String {
    match serde_json::from_str::<ControlResponse>(response) {
        Ok(ControlResponse::Failed { message }) => message,
        other => panic!("expected a failure, got {response} ({other:?})"),
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// The numeric entries of a proc directory: the processes it shows.
fn processes_in(proc_dir: &Path) -> Vec<String> {
    let mut pids: Vec<String> = std::fs::read_dir(proc_dir)
        .unwrap_or_else(|error| panic!("{}: {error}", proc_dir.display()))
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.bytes().all(|byte| byte.is_ascii_digit()))
        .collect();
    pids.sort();
    pids
}

/// Fields drop in this order: the provider's rootfs is unmounted before the world removes its
/// temporary directory.
struct Published {
    _provider: ProviderProcess,
    world: World,
    consumer: ConsumerPod,
    target: PathBuf,
    kubelet: KubeletFiles,
}

async fn publish(volume_id: &str) -> (Published, common::Client) {
    let Serving { mut client, consumer, provider, world } = Serving::start("team-a", "dev").await;
    client.node.node_publish_volume(world.publish_request(&consumer, volume_id)).await.expect("publish");
    let target = world.target_for(&consumer);
    let kubelet = KubeletFiles::create(world.dir.path());
    (Published { _provider: provider, world, consumer, target, kubelet }, client)
}

#[tokio::test]
async fn the_consumer_gets_its_own_proc_dev_sys_and_kubelet_files_as_root() {
    if common::skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let (mut published, _first_client) = publish("csi-prep").await;
    let world = &published.world;
    let socket = world.data_root.join("control/csi-prep/prepare.sock");
    assert_eq!(std::fs::metadata(&socket).expect("the control socket exists").permissions().mode() & 0o777, 0o600);
    let host_before = host_mounts_outside_test_worlds();
    let world_before = world.mounts_below(world.dir.path());

    let mut container = start_consumer(world, &published.kubelet, &published.target, &container_of(&published.consumer), "c1");
    assert_eq!(prepare(&mut container), PREPARED);

    // /proc is the container's: its own PID namespace only (PID 1, the client), with the
    // runtime's read-only /proc/sys kept.
    assert_eq!(processes_in(&container.path("/.sc/rootfs/proc")), ["1"]);
    assert!(processes_in(Path::new("/proc")).len() > 5, "the host has more processes");
    let mounts = container.rootfs_mounts();
    let at = |point: &str| {
        mounts.iter().find(|entry| entry.mount_point == Path::new(point)).unwrap_or_else(|| panic!("nothing at {point}: {mounts:#?}"))
    };
    assert_eq!(at("/.sc/rootfs/proc").fs_type, "proc");
    assert!(!at("/.sc/rootfs/proc/sys").is_read_write(), "the runtime's mask of /proc/sys is kept");
    // /dev is the container's, with its private devpts, shm and termination log.
    assert_eq!(read(&container.path("/.sc/rootfs/dev/termination-log")), "the container's termination log\n");
    assert_eq!(at("/.sc/rootfs/dev/pts").fs_type, "devpts");
    assert_eq!(at("/.sc/rootfs/dev/shm").fs_type, "tmpfs");
    // /sys is read-only.
    assert_eq!(at("/.sc/rootfs/sys").fs_type, "sysfs");
    assert!(!at("/.sc/rootfs/sys").is_read_write());
    assert_eq!(
        nix::unistd::access(&container.path("/.sc/rootfs/sys/kernel"), nix::unistd::AccessFlags::W_OK),
        Err(nix::errno::Errno::EROFS)
    );
    // Kubelet's files are visible at their paths, and the persistent layer holds no copy.
    assert_eq!(read(&container.path("/.sc/rootfs/etc/hosts")), KubeletFiles::HOSTS);
    assert_eq!(read(&container.path("/.sc/rootfs/etc/resolv.conf")), KubeletFiles::RESOLV_CONF);
    assert_eq!(read(&container.path("/.sc/rootfs/etc/hostname")), KubeletFiles::HOSTNAME);
    assert_eq!(read(&container.path("/.sc/rootfs/var/run/secrets/kubernetes.io/serviceaccount/token")), KubeletFiles::TOKEN);
    let upper = world.upper_dir(&published.consumer);
    for file in ["etc/hosts", "etc/resolv.conf", "etc/hostname"] {
        assert_eq!(
            std::fs::metadata(upper.join(file)).map(|metadata| metadata.len()).unwrap_or(0),
            0,
            "{file} is only a mount point in the upper"
        );
    }
    assert!(!upper.join("var/run/secrets/kubernetes.io/serviceaccount/token").exists(), "the token is not in the upper");
    assert_eq!(read(&published.target.join("rootfs/etc/hosts")), "", "outside the container the rootfs has no kubelet content");

    // A second request from the same container changes nothing.
    let count = mounts.len();
    assert_eq!(prepare(&mut container), PREPARED);
    assert_eq!(container.rootfs_mounts().len(), count, "no mount is stacked");

    // Nothing was mounted anywhere but inside the consumer's namespace.
    assert_eq!(host_mounts_outside_test_worlds(), host_before);
    assert_eq!(world.mounts_below(world.dir.path()), world_before);

    // A container restart (a new mount namespace in the same pod) is prepared again.
    drop(container);
    let mut restarted = start_consumer(world, &published.kubelet, &published.target, &container_of(&published.consumer), "c2");
    assert!(restarted.rootfs_mounts().is_empty());
    assert_eq!(prepare(&mut restarted), PREPARED);
    assert_eq!(restarted.rootfs_mounts().len(), count);
    drop(restarted);

    // The plugin is killed and restarted: recovery serves the socket again for later restarts.
    published.world.kill_driver();
    published.world.start_driver();
    let mut client = published.world.client().await;
    let world = &published.world;
    let mut after_crash = start_consumer(world, &published.kubelet, &published.target, &container_of(&published.consumer), "c3");
    assert_eq!(prepare(&mut after_crash), PREPARED);
    assert_eq!(processes_in(&after_crash.path("/.sc/rootfs/proc")), ["1"]);
    drop(after_crash);

    client.node.node_unpublish_volume(world.unpublish_request(&published.consumer, "csi-prep")).await.expect("unpublish");
    assert!(!socket.exists(), "unpublish removes the socket");
    assert!(!world.data_root.join("control/csi-prep").exists(), "and its directory");
    assert!(world.mounts_below(&world.kubelet_dir).is_empty());
}

#[tokio::test]
async fn only_containers_of_the_publications_pod_are_prepared_as_root() {
    if common::skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let (published, mut client) = publish("csi-auth").await;
    let world = &published.world;
    let host_before = host_mounts_outside_test_worlds();

    // A container of another pod, reaching the socket somehow.
    let other_pod = common::uid();
    let mut stranger =
        start_consumer(world, &published.kubelet, &published.target, &ConsumerCgroup::Container { pod_uid: other_pod.clone() }, "stranger");
    let message = failure_message(&prepare(&mut stranger));
    assert!(
        message.starts_with(&format!("process {} is not in a container of pod team-a/dev, the pod this volume was published for (its cgroup belongs to pod {other_pod})", stranger.pid)),
        "{message}"
    );
    assert!(stranger.rootfs_mounts().is_empty(), "nothing was mounted for it");

    // A process in the pod's cgroup but in none of its containers.
    let mut loose = start_consumer(
        world,
        &published.kubelet,
        &published.target,
        &ConsumerCgroup::PodOnly { pod_uid: published.consumer.pod.uid.clone() },
        "loose",
    );
    let message = failure_message(&prepare(&mut loose));
    assert!(message.contains("it is in the pod's cgroup but in none of its containers"), "{message}");
    assert!(loose.rootfs_mounts().is_empty());

    // A host process (this test).
    let socket = world.data_root.join("control/csi-auth/prepare.sock");
    let message = failure_message(&exchange(&socket, b"{\"op\":\"prepare\"}\n"));
    assert!(message.contains("its cgroup belongs to no pod"), "{message}");

    // The right container with a malformed request is refused, and may then ask properly.
    let mut container = start_consumer(world, &published.kubelet, &published.target, &container_of(&published.consumer), "right");
    container.send("garbage");
    let message = failure_message(&container.wait_for_line("RESPONSE "));
    assert!(message.starts_with("the request was not one JSON line of at most 1024 bytes"), "{message}");
    assert!(container.rootfs_mounts().is_empty());
    assert_eq!(prepare(&mut container), PREPARED);
    assert!(!container.rootfs_mounts().is_empty());

    assert_eq!(host_mounts_outside_test_worlds(), host_before);
    drop((stranger, loose, container));
    client.node.node_unpublish_volume(world.unpublish_request(&published.consumer, "csi-auth")).await.expect("unpublish");
}

/// Replaces `path` (a directory or file of the rootfs, or nothing) with a symlink to `target`.
fn plant_symlink(rootfs: &Path, path: &str, target: &str) {
    let full = rootfs.join(path);
    std::fs::create_dir_all(full.parent().expect("parent")).expect("parents");
    match std::fs::symlink_metadata(&full) {
        Ok(metadata) if metadata.is_dir() => std::fs::remove_dir_all(&full).expect("remove dir"),
        Ok(_) => std::fs::remove_file(&full).expect("remove file"),
        Err(_) => {}
    }
    symlink(target, &full).expect("symlink");
}

/// Puts back what the image had: a real directory, or nothing.
fn remove_symlink(rootfs: &Path, path: &str, directory: bool) {
    let full = rootfs.join(path);
    std::fs::remove_file(&full).expect("remove symlink");
    if directory {
        std::fs::create_dir(&full).expect("directory again");
    }
}

#[tokio::test]
async fn symlink_attacks_on_the_rootfs_fail_safely_as_root() {
    if common::skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let (published, mut client) = publish("csi-evil").await;
    let world = &published.world;
    let rootfs = published.target.join("rootfs");
    let host_before = host_mounts_outside_test_worlds();
    let shadow_before = std::fs::read("/etc/shadow").unwrap_or_default();
    let mut container = start_consumer(world, &published.kubelet, &published.target, &container_of(&published.consumer), "evil");

    // Every mount point a careless plugin would follow out of the rootfs (or onto it, or into a
    // mount of its own) is refused, and nothing stays mounted: all or nothing.
    let token_dir = "var/run/secrets/kubernetes.io/serviceaccount";
    for (path, target, directory, expected) in [
        ("proc", "/", true, "the rootfs's /proc is a symlink; a root filesystem needs a real /proc directory"),
        ("dev", "..", true, "the rootfs's /dev is a symlink; a root filesystem needs a real /dev directory"),
        ("sys", "/etc", true, "the rootfs's /sys is a symlink; a root filesystem needs a real /sys directory"),
        ("etc/hosts", "/", false, "cannot prepare /etc/hosts in the rootfs: the path resolves to the rootfs's directory / itself"),
        ("etc/hosts", "..", false, "cannot prepare /etc/hosts in the rootfs: the path resolves to the rootfs's directory / itself"),
        ("etc/hosts", "/proc/self/root/etc/shadow", false, "the rootfs's /proc is a mount point"),
        ("etc/resolv.conf", "/sys/kernel/uevent_helper", false, "the rootfs's /sys is a mount point"),
        ("etc/hostname", "/dev/null", false, "the rootfs's /dev is a mount point"),
        (token_dir, "/", false, "the rootfs's /var/run/secrets/kubernetes.io/serviceaccount is a symlink"),
        (token_dir, "../../../../../..", false, "the rootfs's /var/run/secrets/kubernetes.io/serviceaccount is a symlink"),
    ] {
        plant_symlink(&rootfs, path, target);
        let message = failure_message(&prepare(&mut container));
        assert!(message.contains(expected), "{path} -> {target}: {message}");
        assert!(container.rootfs_mounts().is_empty(), "{path} -> {target}: everything was undone: {:#?}", container.rootfs_mounts());
        assert_eq!(host_mounts_outside_test_worlds(), host_before, "{path} -> {target}: the host is untouched");
        remove_symlink(&rootfs, path, directory);
    }

    // Links that stay inside the rootfs are followed there — never to the host's files.
    plant_symlink(&rootfs, "etc/hosts", "/etc/shadow");
    plant_symlink(&rootfs, "etc/resolv.conf", "../run/systemd/resolve/stub-resolv.conf");
    plant_symlink(&rootfs, "var/run", "/run");
    assert_eq!(prepare(&mut container), PREPARED);
    assert_eq!(read(&container.path("/.sc/rootfs/etc/shadow")), KubeletFiles::HOSTS, "bound over the rootfs's own /etc/shadow");
    assert_eq!(read(&container.path("/.sc/rootfs/run/systemd/resolve/stub-resolv.conf")), KubeletFiles::RESOLV_CONF);
    assert_eq!(read(&container.path("/.sc/rootfs/run/secrets/kubernetes.io/serviceaccount/token")), KubeletFiles::TOKEN);
    assert_eq!(std::fs::read("/etc/shadow").unwrap_or_default(), shadow_before, "the host's /etc/shadow is untouched");
    let upper = world.upper_dir(&published.consumer);
    assert_eq!(read(&upper.join("run/systemd/resolve/stub-resolv.conf")), "", "the dangling link's target was created empty");
    assert_eq!(
        std::fs::read_link(upper.join("etc/resolv.conf")).expect("still a link"),
        Path::new("../run/systemd/resolve/stub-resolv.conf")
    );
    assert_eq!(host_mounts_outside_test_worlds(), host_before);

    drop(container);
    client.node.node_unpublish_volume(world.unpublish_request(&published.consumer, "csi-evil")).await.expect("unpublish");
    assert!(world.mounts_below(&world.kubelet_dir).is_empty());
}

#[tokio::test]
async fn the_control_directory_is_read_only_from_the_consumer_as_root() {
    if common::skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let (published, mut client) = publish("csi-ro").await;
    let world = &published.world;
    let mut container = start_consumer(world, &published.kubelet, &published.target, &container_of(&published.consumer), "ro");
    let control = container.path("/.sc/control");
    let socket = control.join("prepare.sock");
    // Everything a pod could do to the directory its socket is in, to have the plugin follow it
    // on the next bind or chmod: refused by the mount.
    let attempts: Vec<(&str, std::io::Result<()>)> = vec![
        ("create a file", std::fs::write(control.join("planted"), b"x")),
        ("plant a symlink", symlink("/etc/shadow", control.join("shadow"))),
        ("make a directory", std::fs::create_dir(control.join("dir"))),
        ("remove the socket", std::fs::remove_file(&socket)),
        ("rename the socket", std::fs::rename(&socket, control.join("moved"))),
        ("chmod the socket", std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666))),
    ];
    for (what, result) in attempts {
        assert_eq!(result.map_err(|error| error.raw_os_error()), Err(Some(nix::libc::EROFS)), "{what}");
    }
    let mounts = container.mounts();
    let entry = mounts.iter().rev().find(|entry| entry.mount_point == Path::new("/.sc/control")).expect("the control mount");
    for option in ["ro", "nosuid", "nodev", "noexec"] {
        assert!(entry.mount_options.iter().any(|found| found == option), "{option} in {:?}", entry.mount_options);
    }
    // Connecting to a socket on a read-only mount works: the consumer is prepared through it.
    assert_eq!(prepare(&mut container), PREPARED);
    let host_socket = world.data_root.join("control/csi-ro/prepare.sock");
    assert_eq!(std::fs::metadata(&host_socket).expect("socket").permissions().mode() & 0o777, 0o600);
    drop(container);
    client.node.node_unpublish_volume(world.unpublish_request(&published.consumer, "csi-ro")).await.expect("unpublish");
}
