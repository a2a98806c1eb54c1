//! Shared harness for the node plugin's root integration tests and benchmark: a provider-like
//! process whose root is a real overlay mount (like a containerd container) inside a real cgroup
//! named by a container id, the real `sc-csi-driver` binary serving gRPC on a Unix socket, and a
//! CSI client. Everything is torn down on drop. Needs root.
#![allow(dead_code)]

pub mod fake_cri;

use std::collections::HashMap;
use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use csi_driver::cluster::{BoundClaim, StaticCluster, StaticConsumer, StaticLayer};
use csi_driver::validate::{PodRef, context_keys};
use hyper_util::rt::TokioIo;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};
use nix::sys::signal::{Signal, kill};
use nix::unistd::{ForkResult, Pid, chdir, chroot, fork};
use sc_api::consts::VOLUME_ATTR_SC_NAME;
use sc_proto::csi::{
    NodePublishVolumeRequest, NodeUnpublishVolumeRequest, VolumeCapability,
    identity_client::IdentityClient,
    node_client::NodeClient,
    volume_capability::{AccessMode, AccessType, MountVolume, access_mode::Mode},
};
use tonic::transport::{Channel, Endpoint};

/// Whether a test that needs root must skip because this process is not root. Then it says so,
/// naming the test and `why` it needs root, so that `cargo test` as a normal user passes without
/// hiding that these tests did not run. Call it first: `if skip_unless_root(WHY) { return; }`.
pub fn skip_unless_root(why: &str) -> bool {
    use std::io::Write as _;
    if nix::unistd::geteuid().is_root() {
        return false;
    }
    // The harness runs each test on a thread named after it.
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("this test");
    let line = format!("skipped: {test} needs root ({why}); run as root (CI does)\n");
    // Written to the process's stderr itself, not with eprintln!: the harness captures eprintln!
    // of a passing test, and a skip that nobody sees looks like a pass. One write, so that lines of
    // tests running in parallel do not interleave.
    let _ = std::io::stderr().write_all(line.as_bytes());
    true
}

/// The size of every test SC's own filesystem (a sparse image: it costs the disk almost nothing).
pub const ROOTFS_SIZE_BYTES: u64 = 128 << 20;

/// The cgroup v1 hierarchy the test processes are placed in (this machine runs cgroup v1).
pub const PIDS_HIERARCHY: &str = "/sys/fs/cgroup/pids";

static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// A unique lowercase-hex string of `len` characters.
pub fn unique_hex(len: usize) -> String {
    let seed =
        format!("{}-{}-{:?}", std::process::id(), NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed), std::time::SystemTime::now());
    let mut out = String::new();
    let mut counter = 0u64;
    while out.len() < len {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (seed.as_str(), counter).hash(&mut hasher);
        out.push_str(&format!("{:016x}", hasher.finish()));
        counter += 1;
    }
    out.truncate(len);
    out
}

pub fn uid() -> String {
    let hex = unique_hex(32);
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

/// Where a provider-like process's cgroup is, below its world's test cgroup root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProviderCgroup {
    /// Kubelet's cgroupfs layout, `kubepods/besteffort/pod<uid>/<container id>`: the plugin finds
    /// the process through this directory.
    Kubelet,
    /// `elsewhere/<container id>`, a layout the plugin does not know: it finds the process only
    /// by scanning every process's cgroup file.
    Elsewhere,
}

/// What a provider-like process has as its root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProviderRoot {
    /// An overlay of the image, mounted in the host namespace first (containerd's overlayfs
    /// snapshotter): the normal case.
    Overlay,
    /// The image directory itself, bind-mounted in the host namespace (containerd's `native`
    /// snapshotter): the root is a directory of the node's disk, not a whole filesystem.
    BindOfDirectory,
    /// The attack: the container root is an overlay as usual, but the process binds this host
    /// directory (like an emptyDir, a directory of the node's disk) in its own mount namespace
    /// and `chroot`s into it.
    ChrootIntoHostDirectory(PathBuf),
}

/// A container-like process: its root is an overlay of an "image" directory, mounted in the host
/// mount namespace the way containerd mounts a container's rootfs, and it lives in a cgroup (of
/// the v1 `pids` hierarchy) whose last component is its container id.
pub struct ProviderProcess {
    pub container_id: String,
    /// Its image as kubelet would report it (`imageID`), which the plugin asks the runtime about.
    pub image_ref: String,
    /// UID of the (pretend) provider pod, as the API would report it.
    pub pod_uid: String,
    pub pid: Pid,
    pub rootfs_mount: PathBuf,
    /// The process's cgroup and its parents up to the test cgroup root, leaf first: removed in
    /// this order on drop (a parent still holding another provider's cgroup stays).
    cgroup_dirs: Vec<PathBuf>,
}

impl ProviderProcess {
    /// A provider in kubelet's cgroup layout. `image` is filled by the caller; it becomes the
    /// provider's read-only image layer.
    pub fn start(world: &World, image: &Path) -> Self {
        Self::start_in(world, image, ProviderCgroup::Kubelet)
    }

    pub fn start_in(world: &World, image: &Path, placement: ProviderCgroup) -> Self {
        Self::start_with(world, image, placement, ProviderRoot::Overlay)
    }

    pub fn start_with(world: &World, image: &Path, placement: ProviderCgroup, root_kind: ProviderRoot) -> Self {
        let container_id = unique_hex(64);
        let pod_uid = uid();
        let layer = world.dir.path().join(format!("layer-{}", &container_id[..8]));
        let (upper, work, rootfs) = (layer.join("upper"), layer.join("work"), layer.join("rootfs"));
        for path in [&upper, &work, &rootfs] {
            std::fs::create_dir_all(path).expect("provider layer dirs");
        }
        if root_kind == ProviderRoot::BindOfDirectory {
            mount(Some(image), &rootfs, None::<&str>, MsFlags::MS_BIND, None::<&str>).expect("bind provider rootfs");
        } else {
            let data = format!("lowerdir={},upperdir={},workdir={}", image.display(), upper.display(), work.display());
            mount(Some("overlay"), &rootfs, Some("overlay"), MsFlags::empty(), Some(data.as_str())).expect("mount provider rootfs");
        }
        let chroot_into = match &root_kind {
            ProviderRoot::ChrootIntoHostDirectory(host_dir) => Some(host_dir.clone()),
            ProviderRoot::Overlay | ProviderRoot::BindOfDirectory => None,
        };
        let escape_c = chroot_into.as_ref().map(|dir| CString::new(dir.as_os_str().as_encoded_bytes()).expect("path"));

        let root = Path::new(PIDS_HIERARCHY).join(&world.cgroup_root);
        let cgroup_dir = match placement {
            ProviderCgroup::Kubelet => root.join("kubepods/besteffort").join(format!("pod{pod_uid}")).join(&container_id),
            ProviderCgroup::Elsewhere => root.join("elsewhere").join(&container_id),
        };
        let cgroup_dirs: Vec<PathBuf> = cgroup_dir.ancestors().take_while(|dir| dir.starts_with(&root)).map(Path::to_path_buf).collect();
        std::fs::create_dir_all(&cgroup_dir).expect("create cgroup (cgroup v1 pids hierarchy)");
        let rootfs_c = CString::new(rootfs.as_os_str().as_encoded_bytes()).expect("path");
        // SAFETY: the child only makes raw syscalls (no allocation, no locks) before pausing forever.
        #[allow(unsafe_code)]
        let forked = unsafe { fork() };
        let pid = match forked.expect("fork") {
            ForkResult::Child => {
                let _ = unshare(CloneFlags::CLONE_NEWNS);
                let _ = mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>);
                match &escape_c {
                    // Like a pod's process that chroots into its emptyDir.
                    Some(dir) => {
                        let _ = mount(Some(dir.as_c_str()), dir.as_c_str(), None::<&str>, MsFlags::MS_BIND, None::<&str>);
                        let _ = chroot(dir.as_c_str());
                    }
                    None => {
                        let _ = chroot(rootfs_c.as_c_str());
                    }
                }
                let _ = chdir("/");
                loop {
                    nix::unistd::pause();
                }
            }
            ForkResult::Parent { child } => child,
        };
        std::fs::write(cgroup_dir.join("cgroup.procs"), pid.to_string()).expect("join cgroup");
        // Wait until the child is chrooted: its mountinfo then has a mount at "/" and no more
        // than the few mounts below it.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let text = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap_or_default();
            let root_is_mounted = text.lines().any(|line| line.split(' ').nth(4) == Some("/"));
            if text.lines().count() < 5 && root_is_mounted {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let image_ref = format!("sha256:{}", unique_hex(64));
        Self { container_id, image_ref, pod_uid, pid, rootfs_mount: rootfs, cgroup_dirs }
    }
}

impl Drop for ProviderProcess {
    fn drop(&mut self) {
        let _ = kill(self.pid, Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(self.pid, None);
        for dir in &self.cgroup_dirs {
            let _ = std::fs::remove_dir(dir);
        }
        let _ = umount2(&self.rootfs_mount, MntFlags::MNT_DETACH);
    }
}

/// One consumer the static cluster knows.
#[derive(Clone, Debug)]
pub struct ConsumerPod {
    pub pod: PodRef,
    pub sc_name: String,
    pub sc_uid: String,
}

impl ConsumerPod {
    pub fn new(namespace: &str, sc_name: &str) -> Self {
        Self { pod: PodRef { namespace: namespace.into(), name: sc_name.into(), uid: uid() }, sc_name: sc_name.into(), sc_uid: uid() }
    }

    /// The same SC, a new consumer pod (a restart).
    pub fn next_pod(&self) -> Self {
        Self { pod: PodRef { uid: uid(), ..self.pod.clone() }, ..self.clone() }
    }
}

/// The start most tests share: a world whose plugin serves one StoppableContainer's consumer
/// pod over a running provider of the image `base`. Fields drop in order: the client, the
/// provider (its process and rootfs), then the world (the plugin and every mount below it).
pub struct Serving {
    pub client: Client,
    pub consumer: ConsumerPod,
    pub provider: ProviderProcess,
    pub world: World,
}

impl Serving {
    pub async fn start(namespace: &str, sc_name: &str) -> Self {
        let mut world = World::new();
        let image = world.image("base");
        let provider = ProviderProcess::start(&world, &image);
        let consumer = ConsumerPod::new(namespace, sc_name);
        world.set_cluster(&[(consumer.clone(), Some(&provider))]);
        world.start_driver();
        let client = world.client().await;
        Self { client, consumer, provider, world }
    }
}

/// A test world: temp dirs, a static cluster file, the driver process and a client.
pub struct World {
    pub dir: tempfile::TempDir,
    pub data_root: PathBuf,
    pub kubelet_dir: PathBuf,
    pub socket: PathBuf,
    pub cluster_file: PathBuf,
    /// The plugin's `--runtime-endpoint`: a socket of this world's, where a test may serve a
    /// [`fake_cri::FakeRuntime`]; nothing listens there otherwise (images are then unavailable),
    /// and the node's own runtime is never asked.
    pub runtime_socket: PathBuf,
    pub provider_wait_seconds: u64,
    /// This world's kubelet cgroup root (`--kubelet-cgroup-root`), a cgroup of its own so tests
    /// never touch the node's real `kubepods` tree (which kubelet garbage-collects).
    pub cgroup_root: String,
    driver: Option<Child>,
}

impl World {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new().prefix("sc-csi-").tempdir().expect("tempdir");
        let world = Self {
            data_root: dir.path().join("data"),
            kubelet_dir: dir.path().join("kubelet"),
            socket: dir.path().join("csi.sock"),
            cluster_file: dir.path().join("cluster.json"),
            runtime_socket: dir.path().join("runtime.sock"),
            provider_wait_seconds: 2,
            cgroup_root: format!("sc-test-{}", unique_hex(12)),
            dir,
            driver: None,
        };
        std::fs::create_dir_all(world.kubelet_dir.join("pods")).expect("kubelet dir");
        world.set_cluster(&[]);
        world
    }

    /// An "image" directory with a few files, as the provider's lower layer.
    pub fn image(&self, name: &str) -> PathBuf {
        let image = self.dir.path().join(format!("image-{name}"));
        for sub in ["bin", "etc", "usr/bin", "tmp", "proc", "dev", "sys"] {
            std::fs::create_dir_all(image.join(sub)).expect("image dirs");
        }
        std::fs::write(image.join("etc/os-release"), format!("NAME={name}\n")).expect("image file");
        image
    }

    pub fn set_cluster(&self, consumers: &[(ConsumerPod, Option<&ProviderProcess>)]) {
        let without_claims: Vec<_> = consumers.iter().map(|(consumer, provider)| (consumer.clone(), *provider, None)).collect();
        self.set_cluster_with_claims(&without_claims);
    }

    /// The cluster, where a consumer with a claim is of an SC with `spec.storage` whose claim
    /// is bound as given.
    pub fn set_cluster_with_claims(&self, consumers: &[(ConsumerPod, Option<&ProviderProcess>, Option<BoundClaim>)]) {
        self.set_cluster_with_layers(consumers, Vec::new());
    }

    /// The cluster with `layers`: the StoppableContainers whose layer pods of their namespace may
    /// read (the layer volume).
    pub fn set_cluster_with_layers(
        &self,
        consumers: &[(ConsumerPod, Option<&ProviderProcess>, Option<BoundClaim>)],
        layers: Vec<StaticLayer>,
    ) {
        let cluster = StaticCluster {
            consumers: consumers
                .iter()
                .map(|(consumer, provider, claim)| StaticConsumer {
                    pod: consumer.pod.clone(),
                    sc_name: consumer.sc_name.clone(),
                    sc_uid: consumer.sc_uid.clone(),
                    provider_container_id: provider.map(|provider| provider.container_id.clone()),
                    provider_pod_uid: provider.map(|provider| provider.pod_uid.clone()),
                    provider_image_ref: provider.map(|provider| provider.image_ref.clone()),
                    rootfs_size_bytes: Some(ROOTFS_SIZE_BYTES),
                    claim: claim.clone(),
                })
                .collect(),
            layers,
        };
        let temporary = self.cluster_file.with_extension("tmp");
        std::fs::write(&temporary, serde_json::to_vec(&cluster).expect("json")).expect("write cluster");
        std::fs::rename(&temporary, &self.cluster_file).expect("rename cluster");
    }

    pub fn start_driver(&mut self) {
        let child = Command::new(env!("CARGO_BIN_EXE_sc-csi-driver"))
            .args(["--endpoint", &format!("unix://{}", self.socket.display())])
            .args(["--node-id", "test-node"])
            .args(["--data-root", &self.data_root.display().to_string()])
            .args(["--kubelet-dir", &self.kubelet_dir.display().to_string()])
            .args(["--static-cluster", &self.cluster_file.display().to_string()])
            .args(["--provider-wait-seconds", &self.provider_wait_seconds.to_string()])
            .args(["--kubelet-cgroup-root", &format!("/{}", self.cgroup_root)])
            .args(["--runtime-endpoint", &format!("unix://{}", self.runtime_socket.display())])
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn sc-csi-driver");
        self.driver = Some(child);
    }

    pub fn driver_pid(&self) -> Option<u32> {
        self.driver.as_ref().map(Child::id)
    }

    /// kill -9, the way a crash or OOM kill ends the plugin.
    pub fn kill_driver(&mut self) {
        if let Some(mut child) = self.driver.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, and the exit status.
    pub fn stop_driver(&mut self) -> std::process::ExitStatus {
        let mut child = self.driver.take().expect("driver running");
        kill(Pid::from_raw(i32::try_from(child.id()).expect("pid")), Signal::SIGTERM).expect("SIGTERM");
        child.wait().expect("wait")
    }

    /// A connected client, waiting for the socket and for Probe to report ready.
    pub async fn client(&self) -> Client {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(channel) = connect(&self.socket).await {
                let mut identity = IdentityClient::new(channel.clone());
                if let Ok(response) = identity.probe(sc_proto::csi::ProbeRequest {}).await
                    && response.into_inner().ready == Some(true)
                {
                    return Client { node: NodeClient::new(channel.clone()), identity, channel };
                }
            }
            assert!(Instant::now() < deadline, "driver did not become ready on {}", self.socket.display());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn target_for(&self, consumer: &ConsumerPod) -> PathBuf {
        self.kubelet_dir.join("pods").join(&consumer.pod.uid).join("volumes/kubernetes.io~csi/sc-rootfs/mount")
    }

    pub fn publish_request(&self, consumer: &ConsumerPod, volume_id: &str) -> NodePublishVolumeRequest {
        let target = self.target_for(consumer);
        std::fs::create_dir_all(target.parent().expect("parent")).expect("kubelet creates the parent");
        NodePublishVolumeRequest {
            volume_id: volume_id.into(),
            target_path: target.display().to_string(),
            volume_capability: Some(VolumeCapability {
                access_type: Some(AccessType::Mount(MountVolume::default())),
                access_mode: Some(AccessMode { mode: Mode::SingleNodeWriter as i32 }),
            }),
            volume_context: HashMap::from([
                (context_keys::EPHEMERAL.to_owned(), "true".to_owned()),
                (context_keys::POD_NAME.to_owned(), consumer.pod.name.clone()),
                (context_keys::POD_NAMESPACE.to_owned(), consumer.pod.namespace.clone()),
                (context_keys::POD_UID.to_owned(), consumer.pod.uid.clone()),
                (VOLUME_ATTR_SC_NAME.to_owned(), consumer.sc_name.clone()),
            ]),
            ..Default::default()
        }
    }

    pub fn unpublish_request(&self, consumer: &ConsumerPod, volume_id: &str) -> NodeUnpublishVolumeRequest {
        NodeUnpublishVolumeRequest { volume_id: volume_id.into(), target_path: self.target_for(consumer).display().to_string() }
    }

    /// Mount points below this world's directory, from the host's mountinfo.
    pub fn mounts_below(&self, path: &Path) -> Vec<String> {
        let text = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        csi_driver::mountinfo::parse(&text)
            .expect("parse")
            .into_iter()
            .filter(|entry| entry.mount_point.starts_with(path))
            .map(|entry| entry.mount_point.display().to_string())
            .collect()
    }

    /// The SC's upper, on its own size-limited filesystem.
    pub fn upper_dir(&self, consumer: &ConsumerPod) -> PathBuf {
        self.sc_dir(consumer).join("fs/upper")
    }

    /// Whether the SC's own filesystem is mounted (at `<sc-dir>/fs`).
    pub fn sc_filesystem_mounted(&self, consumer: &ConsumerPod) -> bool {
        let fs_dir = self.sc_dir(consumer).join("fs");
        let text = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        csi_driver::mountinfo::parse(&text).expect("parse").iter().any(|entry| entry.mount_point == fs_dir)
    }

    /// A file of the SC's upper as it is kept on the node, also while no consumer has it: the
    /// SC's filesystem image is then mounted read-only for the read, as an administrator would.
    pub fn read_kept(&self, consumer: &ConsumerPod, path: &str) -> String {
        if self.sc_filesystem_mounted(consumer) {
            return std::fs::read_to_string(self.upper_dir(consumer).join(path)).unwrap_or_else(|error| panic!("{path}: {error}"));
        }
        let mount_point = tempfile::tempdir().expect("tempdir");
        let image = self.sc_dir(consumer).join("rootfs.img");
        // A test process that made its own mount namespace while the filesystem was mounted (a
        // provider-like process of a test running alongside) keeps it, and its loop device, alive
        // after the plugin's unmount: mount that device (its superblock is shared, read-write),
        // else the image read-only.
        let status = match attached_loop_device(&image) {
            Some(device) => Command::new("mount").arg(&device).arg(mount_point.path()).status(),
            None => Command::new("mount").args(["-o", "ro,loop,noload"]).arg(&image).arg(mount_point.path()).status(),
        }
        .expect("run mount");
        assert!(status.success(), "mounting {} for a read", image.display());
        let read = std::fs::read_to_string(mount_point.path().join("upper").join(path));
        let _ = umount2(mount_point.path(), MntFlags::empty());
        read.unwrap_or_else(|error| panic!("{path} in {}: {error}", image.display()))
    }

    /// Where the image config file of a volume's publication is on the node.
    pub fn image_config_file(&self, volume_id: &str) -> PathBuf {
        self.data_root.join("control").join(volume_id).join(sc_api::image_config::IMAGE_CONFIG_FILE_NAME)
    }

    /// What the image config file of a volume's publication says.
    pub fn image_config(&self, volume_id: &str) -> Option<sc_api::image_config::PublishedImage> {
        let text = std::fs::read(self.image_config_file(volume_id)).ok()?;
        Some(serde_json::from_slice(&text).expect("the image config file parses"))
    }

    /// All data of the SC on the node.
    pub fn sc_dir(&self, consumer: &ConsumerPod) -> PathBuf {
        self.data_root.join("containers").join(&consumer.pod.namespace).join(&consumer.sc_name).join(&consumer.sc_uid)
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.kill_driver();
        // Unmount whatever a failed test left below the kubelet dir, deepest first, and the
        // plugin's nosuid,nodev mount of the data root's containers/ (in the host namespace, it
        // outlives the plugin, as on a node).
        let mut leftovers = self.mounts_below(&self.kubelet_dir);
        leftovers.extend(self.mounts_below(&self.data_root));
        leftovers.sort_by_key(|path| std::cmp::Reverse(path.len()));
        for path in leftovers {
            let _ = umount2(path.as_str(), MntFlags::MNT_DETACH);
        }
    }
}

pub struct Client {
    pub node: NodeClient<Channel>,
    pub identity: IdentityClient<Channel>,
    pub channel: Channel,
}

/// The loop device `image` is attached to, if any (`/sys/block/loopN/loop/backing_file`).
fn attached_loop_device(image: &Path) -> Option<PathBuf> {
    std::fs::read_dir("/sys/block").ok()?.filter_map(Result::ok).find_map(|entry| {
        let name = entry.file_name().into_string().ok()?;
        let backing = std::fs::read_to_string(entry.path().join("loop/backing_file")).ok()?;
        (name.starts_with("loop") && Path::new(backing.trim_end()) == image).then(|| PathBuf::from("/dev").join(name))
    })
}

pub async fn connect(socket: &Path) -> Result<Channel, tonic::transport::Error> {
    let socket = socket.to_path_buf();
    // The URI is required by the API but unused: the connector dials the Unix socket.
    Endpoint::try_from("http://localhost")?
        .connect_with_connector(tower::service_fn(move |_| {
            let socket = socket.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(socket).await?)) }
        }))
        .await
}

/// The kubelet-managed files a consumer container gets, on the "host": what the node plugin must
/// bind into the rootfs (and never copy into the persistent layer).
pub struct KubeletFiles {
    pub dir: PathBuf,
}

impl KubeletFiles {
    pub const HOSTS: &'static str = "127.0.0.1 localhost\n10.0.0.7 dev-pod # kubelet-managed\n";
    pub const RESOLV_CONF: &'static str = "nameserver 10.96.0.10\nsearch ns.svc.cluster.local\n";
    pub const HOSTNAME: &'static str = "dev-pod\n";
    pub const TOKEN: &'static str = "eyJhbGciOiJSUzI1NiJ9.test-token";

    pub fn create(parent: &Path) -> Self {
        let dir = parent.join("kubelet-files");
        std::fs::create_dir_all(dir.join("serviceaccount")).expect("kubelet files dir");
        for (name, text) in [
            ("hosts", Self::HOSTS),
            ("resolv.conf", Self::RESOLV_CONF),
            ("hostname", Self::HOSTNAME),
            ("serviceaccount/token", Self::TOKEN),
        ] {
            std::fs::write(dir.join(name), text).expect("kubelet file");
        }
        Self { dir }
    }
}

/// Set in a consumer's environment to the control socket it should talk to: the test binary run
/// as the consumer's `/client` then acts as the client instead of testing.
pub const CONSUMER_CLIENT_ENV: &str = "SC_TEST_CONTROL_CLIENT";

/// Which cgroup a consumer-like process is put in.
#[derive(Clone, Debug)]
pub enum ConsumerCgroup {
    /// A container of this pod: `/sc-test/kubepods/pod<uid>/<container-id>`.
    Container { pod_uid: String },
    /// The pod's own cgroup, in no container: `/sc-test/kubepods/pod<uid>`.
    PodOnly { pod_uid: String },
}

/// A consumer container simulated the way a runtime builds one: new mount and PID namespaces, a
/// root of its own (a tmpfs) with the published volume at `/.sc`, its own `/proc`, a `/dev` with a
/// private devpts and a termination log, `/sys` read-only, kubelet's files bind-mounted, and the
/// whole thing in a pod container's cgroup. Its PID 1 is `client` (a path on the host, run as
/// `/client` inside), so the peer of the control socket is that container's process.
pub struct ConsumerProcess {
    child: Child,
    /// PID 1 of the container, as a host pid.
    pub pid: u32,
    cgroup_dirs: Vec<PathBuf>,
    lines: std::sync::mpsc::Receiver<String>,
    stdin: std::process::ChildStdin,
}

impl ConsumerProcess {
    pub fn start(
        root_dir: &Path,
        target: &Path,
        kubelet: &KubeletFiles,
        cgroup: &ConsumerCgroup,
        client: &Path,
        client_args: &[&str],
    ) -> Self {
        use std::io::BufRead;
        std::fs::create_dir_all(root_dir).expect("container root dir");
        let base = PathBuf::from("/sys/fs/cgroup/pids/sc-test/kubepods");
        let (cgroup_dir, cgroup_dirs) = match cgroup {
            ConsumerCgroup::Container { pod_uid } => {
                let pod = base.join(format!("pod{pod_uid}"));
                let container = pod.join(unique_hex(64));
                (container.clone(), vec![container, pod])
            }
            ConsumerCgroup::PodOnly { pod_uid } => {
                let pod = base.join(format!("pod{pod_uid}"));
                (pod.clone(), vec![pod])
            }
        };
        std::fs::create_dir_all(&cgroup_dir).expect("create cgroup (cgroup v1 pids hierarchy)");
        // Runs as PID 1 of the new PID namespace, in the new mount namespace, with the host root.
        let setup = r#"set -e
mount -t tmpfs -o mode=0755 container "$C"
cd "$C"
mkdir -p .sc proc dev sys etc usr tmp var/run/secrets/kubernetes.io/serviceaccount
ln -s usr/bin bin; ln -s usr/lib lib; ln -s usr/lib64 lib64
mount --bind /usr usr
mount --rbind "$TARGET" .sc
mount -t proc -o nosuid,nodev,noexec proc proc
# What runtimes do to a container's /proc: mask and make read-only.
mount --bind proc/sys proc/sys
mount -o remount,bind,ro proc/sys
mount -t tmpfs -o mode=0755,nosuid dev dev
mkdir dev/pts dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts dev/pts
mount -t tmpfs -o nosuid,nodev shm dev/shm
touch dev/null && mount --bind /dev/null dev/null
echo "the container's termination log" > dev/termination-log
mount --rbind /sys sys
mount -o remount,bind,ro sys
for file in hosts resolv.conf hostname; do touch "etc/$file"; mount --bind "$KUBELET/$file" "etc/$file"; done
mount --bind "$KUBELET/serviceaccount" var/run/secrets/kubernetes.io/serviceaccount
touch client && mount --bind "$CLIENT" client
exec chroot . /client "$@""#;
        let launcher = r#"echo $$ > "$CGROUP/cgroup.procs" && exec unshare --mount --pid --kill-child --propagation private /bin/sh -c "$SETUP" sh "$@""#;
        let mut child = Command::new("/bin/sh")
            .args(["-c", launcher, "sh"])
            .args(client_args)
            .env("C", root_dir)
            .env("TARGET", target)
            .env("KUBELET", &kubelet.dir)
            .env("CLIENT", client)
            .env("CGROUP", &cgroup_dir)
            .env("SETUP", setup)
            .env(CONSUMER_CLIENT_ENV, sc_api::consts::CONSUMER_CONTROL_SOCKET_PATH)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn the consumer");
        let stdout = child.stdout.take().expect("stdout");
        let stdin = child.stdin.take().expect("stdin");
        let (sender, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let mut consumer = Self { child, pid: 0, cgroup_dirs, lines, stdin };
        consumer.wait_for_line("CLIENT READY");
        consumer.pid = consumer.find_init(&cgroup_dir);
        consumer
    }

    /// The process of the cgroup that lives in another PID namespace: the container's PID 1.
    fn find_init(&self, cgroup_dir: &Path) -> u32 {
        let ours = std::fs::read_link("/proc/self/ns/pid").expect("own pid ns");
        let procs = std::fs::read_to_string(cgroup_dir.join("cgroup.procs")).expect("cgroup.procs");
        procs
            .lines()
            .filter_map(|line| line.trim().parse::<u32>().ok())
            .find(|pid| std::fs::read_link(format!("/proc/{pid}/ns/pid")).is_ok_and(|ns| ns != ours))
            .expect("the container's init is in the cgroup")
    }

    /// Waits (bounded) for a stdout line containing `prefix`; returns what follows it.
    pub fn wait_for_line(&self, prefix: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(remaining) {
                Ok(line) => {
                    // Anywhere in the line: a test harness may have printed "test x ... " first.
                    if let Some(start) = line.find(prefix) {
                        return line[start + prefix.len()..].trim().to_owned();
                    }
                }
                Err(error) => panic!("the consumer printed no {prefix:?} line: {error}"),
            }
        }
    }

    /// Sends one command line to the client.
    pub fn send(&mut self, line: &str) {
        use std::io::Write;
        writeln!(self.stdin, "{line}").expect("write to the consumer");
        self.stdin.flush().expect("flush");
    }

    /// A path inside the container, reachable from the host through `/proc/<pid>/root`.
    pub fn path(&self, inside: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root", self.pid)).join(inside.trim_start_matches('/'))
    }

    /// The container's mounts, as it sees them.
    pub fn mounts(&self) -> Vec<csi_driver::mountinfo::MountEntry> {
        let text = std::fs::read_to_string(format!("/proc/{}/mountinfo", self.pid)).expect("consumer mountinfo");
        csi_driver::mountinfo::parse(&text).expect("parse")
    }

    /// The container's mounts below `/.sc/rootfs` (not the rootfs itself).
    pub fn rootfs_mounts(&self) -> Vec<csi_driver::mountinfo::MountEntry> {
        let rootfs = Path::new(sc_api::consts::CONSUMER_ROOTFS_PATH);
        self.mounts().into_iter().filter(|entry| entry.mount_point.starts_with(rootfs) && entry.mount_point != rootfs).collect()
    }
}

impl Drop for ConsumerProcess {
    fn drop(&mut self) {
        // Killing the container's init ends its PID namespace; its mount namespace goes with it.
        if self.pid != 0 {
            let _ = kill(Pid::from_raw(i32::try_from(self.pid).unwrap_or(0)), Signal::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The own cgroup empties once the processes are reaped; the pod's may still hold another
        // container of the same pod (its last one removes it).
        let mut dirs = self.cgroup_dirs.iter();
        if let Some(own) = dirs.next() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while std::fs::remove_dir(own).is_err() && own.exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        for dir in dirs {
            let _ = std::fs::remove_dir(dir);
        }
        // The shared parents go with the last consumer; while another test's consumer still uses
        // them, rmdir fails harmlessly.
        for shared in ["/sys/fs/cgroup/pids/sc-test/kubepods", "/sys/fs/cgroup/pids/sc-test"] {
            let _ = std::fs::remove_dir(shared);
        }
    }
}

/// Host mount points, except those of test worlds (other tests running in parallel make and
/// remove those): what must be the same before and after a consumer is prepared.
pub fn host_mounts_outside_test_worlds() -> Vec<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let temp = std::env::temp_dir();
    let mut points: Vec<String> = csi_driver::mountinfo::parse(&text)
        .expect("parse")
        .into_iter()
        .filter(|entry| !entry.mount_point.strip_prefix(&temp).is_ok_and(|rest| rest.to_string_lossy().starts_with("sc-csi-")))
        .map(|entry| format!("{} {} {}", entry.mount_point.display(), entry.fs_type, entry.mount_options.join(",")))
        .collect();
    points.sort();
    points
}
