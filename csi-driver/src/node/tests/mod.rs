//! Unit tests of the node plugin that need no root: the RPC side with a fake cluster, and
//! publish, unpublish and recovery against a fake node ([`crate::sys::fake::FakeSystem`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cgroup::KubeletCgroups;
use crate::cri::{ImageConfigReader, RuntimeEndpoint};
use crate::layout::{DataLayout, DataRoot, ScKey};
use crate::node::{Found, Mounter, NodeSettings, PersistentLayer, ProviderContainer, PublishError, RootfsSettings};
use crate::quota::{self, RootfsSize};
use crate::sys::fake::FakeSystem;
use crate::sys::{OverlayDirs, System};
use crate::validate::{PodRef, PublishRequest};

mod claim;
mod exec_wrapper;
mod layer;
mod publish;
mod recovery;
mod rpc;

const POD_UID: &str = "6d1c2b7e-43a1-4e5e-9d63-0c5a3f1b2e7d";

fn kubelet_cgroups() -> KubeletCgroups {
    KubeletCgroups { hierarchies: vec![PathBuf::from("/sys/fs/cgroup/pids")], root: PathBuf::from("/") }
}

fn rootfs_settings() -> RootfsSettings {
    RootfsSettings {
        tools: Err("not part of this fake".into()),
        default_size: quota::parse_size("10Gi").expect("size"),
        max_size: quota::parse_size("100Gi").expect("size"),
    }
}

const DATA: &str = "/var/lib/stoppablecontainer";
const KUBELET: &str = "/var/lib/kubelet";
const SC_UID: &str = "0f4c1a52-9d5e-4b7a-8c3e-2a6b5d7e9f10";
const CONTAINER_ID: &str = "8b7e0f6ad23b2c1bd3c0b1e6f84a3d7c1e3f0aa1c19f8c2de5d9a4b7f2c61e0a";
const PROVIDER_ROOTFS: &str =
    "/run/containerd/io.containerd.runtime.v2.task/k8s.io/8b7e0f6ad23b2c1bd3c0b1e6f84a3d7c1e3f0aa1c19f8c2de5d9a4b7f2c61e0a/rootfs";

fn data() -> DataRoot {
    DataRoot::new(DATA)
}

fn sc() -> ScKey {
    ScKey { namespace: "team-a".into(), name: "dev".into(), uid: SC_UID.into() }
}

/// Kubelet's target for the rootfs volume of pod `pod_uid`.
fn target_of(pod_uid: &str) -> PathBuf {
    PathBuf::from(format!("{KUBELET}/pods/{pod_uid}/volumes/kubernetes.io~csi/sc-rootfs/mount"))
}

fn request(volume_id: &str, pod_uid: &str) -> PublishRequest {
    PublishRequest {
        volume_id: volume_id.into(),
        target_path: target_of(pod_uid),
        pod: PodRef { namespace: "team-a".into(), name: "dev".into(), uid: pod_uid.into() },
        sc_name: "dev".into(),
    }
}

fn provider() -> ProviderContainer {
    ProviderContainer { container_id: CONTAINER_ID.into(), pod_uid: None, image_ref: "sha256:1".into() }
}

fn size() -> RootfsSize {
    quota::parse_size("10Gi").expect("size")
}

/// The persistent layer of a node-local SC of [`size`].
fn node_layer() -> PersistentLayer {
    PersistentLayer::Node { size: size() }
}

fn settings() -> NodeSettings {
    NodeSettings {
        data_root: data(),
        kubelet_dir: PathBuf::from(KUBELET),
        provider_wait: Duration::from_secs(1),
        provider_poll: Duration::from_millis(10),
        kubelet_cgroups: kubelet_cgroups(),
        rootfs: rootfs_settings(),
        images: ImageConfigReader::new(RuntimeEndpoint::Socket(PathBuf::from("/nonexistent/runtime.sock"))),
        runtime: std::sync::Arc::new(FakeRuntime::default()),
    }
}

/// A container runtime that runs the provider container of [`FakeRuntime::runs`] once asked
/// [`FakeRuntime::after`] times (0: at once; None: never), and counts the questions.
#[derive(Debug, Default)]
pub(super) struct FakeRuntime {
    pub runs: Option<(String, crate::runtime_containers::RuntimeContainer)>,
    pub after: usize,
    pub asked: std::sync::atomic::AtomicUsize,
}

impl crate::runtime_containers::ContainerRuntime for FakeRuntime {
    fn running_container<'a>(&'a self, pod_uid: &'a str, name: &'a str) -> crate::runtime_containers::RuntimeFuture<'a> {
        let asked = self.asked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let answer = match &self.runs {
            Some((uid, container)) if uid == pod_uid && name == sc_api::consts::PROVIDER_CONTAINER_NAME && asked >= self.after => {
                Some(container.clone())
            }
            _ => None,
        };
        Box::pin(async move { Ok(answer) })
    }
}

/// A mounter (a plugin start) on `system`.
fn mounter_on(system: FakeSystem) -> Mounter<FakeSystem> {
    Mounter::new(system, &settings(), Box::new(quota::RealLoopSystem::default()))
}

/// A node with a running provider, kubelet's pod directories, a secured data root and the data
/// of [`sc`] made before size limits (so no loop device is needed).
fn node() -> Mounter<FakeSystem> {
    let system = FakeSystem::default();
    system.add_provider(17, CONTAINER_ID, Path::new(PROVIDER_ROOTFS));
    system.add_directory(&PathBuf::from(format!("{KUBELET}/pods")));
    system.secure_data_root(&data()).expect("data root");
    system.add_directory(&data().legacy_upper_dir(&sc()));
    system.add_directory(&data().work_dir_in(&sc(), DataLayout::Unlimited));
    for uid in [POD_UID, "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a"] {
        system.add_directory(target_of(uid).parent().expect("kubelet's volume directory"));
    }
    mounter_on(system)
}

/// Publishes as the RPC side does: looks at the target, then mounts if it is clear.
fn publish(node: &Mounter<FakeSystem>, request: &PublishRequest) -> Result<PathBuf, PublishError> {
    match node.inspect(request, &sc(), None)? {
        Found::Published { lower } => Ok(lower),
        Found::Clear => node.mount(request, &sc(), &provider(), &node_layer()),
    }
}

/// What a publish killed between its overlay mount and its control bind left: the tmpfs and the
/// overlay at the request's target, and no record. Returns the target.
fn half_published(node: &Mounter<FakeSystem>, request: &PublishRequest) -> PathBuf {
    let (system, target) = (node.system(), &request.target_path);
    system.create_dir(target).expect("target");
    system.mount_target_tmpfs(target).expect("tmpfs");
    let rootfs = crate::layout::target_rootfs(target);
    system.create_dir(&rootfs).expect("rootfs dir");
    let upper = data().upper_dir_in(&sc(), DataLayout::Unlimited);
    let work = data().work_dir_in(&sc(), DataLayout::Unlimited);
    let dirs = OverlayDirs { lower: Path::new(PROVIDER_ROOTFS), upper: &upper, work: &work };
    system.mount_overlay(&dirs, &rootfs).expect("overlay");
    target.clone()
}
