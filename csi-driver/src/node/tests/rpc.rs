//! The RPC side: the wait for the provider, the rootfs size, the usage figures.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::{POD_UID, kubelet_cgroups, rootfs_settings};
use crate::cluster::{ClusterError, ClusterView, Consumer, Provider};
use crate::cri::ImageConfigReader;
use crate::layout::{DataLayout, DataRoot, ScKey};
use crate::node::{NodeCore, NodeSettings, PublishError, rootfs_size};
use crate::quota;
use crate::sys::fake::FakeSystem;

/// A cluster whose provider never runs (or is stuck); counts the questions.
struct WaitingCluster {
    answer: Provider,
    asked: AtomicUsize,
}

impl ClusterView for WaitingCluster {
    async fn authorize_consumer(&self, _: &crate::validate::PodRef, _: &str) -> Result<Consumer, ClusterError> {
        Err(ClusterError::Denied("not part of this fake".into()))
    }
    async fn provider(&self, _: &Consumer) -> Result<Provider, ClusterError> {
        self.asked.fetch_add(1, Ordering::Relaxed);
        Ok(self.answer.clone())
    }
    async fn authorize_layer_reader(&self, _: &crate::validate::PodRef, _: &str) -> Result<crate::cluster::LayerSource, ClusterError> {
        Err(ClusterError::Denied("not part of this fake".into()))
    }
}

fn waiting_core(answer: Provider, wait: Duration) -> NodeCore<WaitingCluster, FakeSystem> {
    waiting_core_in(DataRoot::new("/nonexistent/data-root"), answer, wait)
}

fn waiting_core_in(data_root: DataRoot, answer: Provider, wait: Duration) -> NodeCore<WaitingCluster, FakeSystem> {
    waiting_core_with(data_root, answer, wait, &std::sync::Arc::new(super::FakeRuntime::default()))
}

fn waiting_core_with(
    data_root: DataRoot,
    answer: Provider,
    wait: Duration,
    runtime: &std::sync::Arc<super::FakeRuntime>,
) -> NodeCore<WaitingCluster, FakeSystem> {
    let settings = NodeSettings {
        data_root,
        kubelet_dir: PathBuf::from("/nonexistent/kubelet"),
        provider_wait: wait,
        provider_poll: Duration::from_millis(10),
        kubelet_cgroups: kubelet_cgroups(),
        rootfs: rootfs_settings(),
        images: ImageConfigReader::new(crate::cri::RuntimeEndpoint::Socket(PathBuf::from("/nonexistent/runtime.sock"))),
        runtime: runtime.clone(),
    };
    NodeCore::new(WaitingCluster { answer, asked: AtomicUsize::new(0) }, FakeSystem::default(), settings)
}

fn consumer() -> Consumer {
    Consumer {
        sc: ScKey { namespace: "team-a".into(), name: "dev".into(), uid: POD_UID.into() },
        instance_uid: POD_UID.into(),
        rootfs_size_bytes: None,
        claim: None,
    }
}

#[test]
fn the_rootfs_size_is_the_instances_else_the_default_never_above_the_nodes_maximum() {
    let settings = rootfs_settings();
    let sized = |bytes: Option<u64>| rootfs_size(&settings, &Consumer { rootfs_size_bytes: bytes, ..consumer() });
    assert_eq!(sized(None).expect("default").to_string(), "10Gi");
    assert_eq!(sized(Some(20 << 30)).expect("the operator's").to_string(), "20Gi");
    let too_large = sized(Some(200 << 30)).expect_err("above the maximum").to_string();
    assert!(too_large.contains("200Gi is more than this node's maximum of 100Gi (the node plugin's --max-rootfs-size)"), "{too_large}");
    let too_small = sized(Some(1 << 20)).expect_err("below the minimum").to_string();
    assert!(too_small.contains("below the minimum of 64Mi"), "{too_small}");
    assert!(too_small.starts_with("the rootfs size of StoppableContainer team-a/dev"), "{too_small}");
}

#[tokio::test]
async fn a_provider_that_never_starts_is_asked_about_a_bounded_number_of_times() {
    let core = waiting_core(Provider::NotReady { reason: "ContainerCreating".into() }, Duration::from_millis(700));
    let error = core.wait_for_provider(&consumer()).await.err().expect("times out");
    assert!(error.to_string().contains("is not ready after waiting"), "{error}");
    assert!(error.to_string().contains("ContainerCreating"), "{error}");
    // 10, 20, 40, ... ms: about 7 questions in 700 ms, where a fixed 10 ms poll asks 70 times.
    let asked = core.cluster.asked.load(Ordering::Relaxed);
    assert!((5..=9).contains(&asked), "asked {asked} times");
}

#[tokio::test]
async fn a_stuck_provider_ends_the_wait_at_once() {
    let core = waiting_core(Provider::Stuck { reason: "provider container is ImagePullBackOff".into() }, Duration::from_secs(60));
    let started = Instant::now();
    let error = core.wait_for_provider(&consumer()).await.err().expect("fails");
    assert!(matches!(error, PublishError::ProviderStuck { .. }), "{error}");
    assert!(error.to_string().contains("ImagePullBackOff"), "{error}");
    assert_eq!(core.cluster.asked.load(Ordering::Relaxed), 1);
    assert!(started.elapsed() < Duration::from_secs(1));
}

const PROVIDER_POD_UID: &str = "77777777-7777-4777-8777-777777777777";

fn runtime_running_provider_after(after: usize) -> std::sync::Arc<super::FakeRuntime> {
    let container = crate::runtime_containers::RuntimeContainer { container_id: "c0ffee".into(), image_ref: "sha256:abc".into() };
    std::sync::Arc::new(super::FakeRuntime { runs: Some((PROVIDER_POD_UID.into(), container)), after, ..Default::default() })
}

#[tokio::test]
async fn a_starting_provider_is_taken_from_the_runtime_before_kubelet_reports_it() {
    let runtime = runtime_running_provider_after(3);
    let starting =
        Provider::Starting { pod_uid: PROVIDER_POD_UID.into(), reason: "provider pod dev-provider has no container status yet".into() };
    let core = waiting_core_with(DataRoot::new("/nonexistent/data-root"), starting, Duration::from_secs(10), &runtime);
    let started = Instant::now();
    let provider = core.wait_for_provider(&consumer()).await.expect("found through the runtime");
    assert_eq!(
        (provider.container_id.as_str(), provider.pod_uid.as_deref(), provider.image_ref.as_str()),
        ("c0ffee", Some(PROVIDER_POD_UID), "sha256:abc")
    );
    // The runtime is asked every RUNTIME_POLL; the API server only on its own back-off.
    assert_eq!(runtime.asked.load(Ordering::Relaxed), 4);
    assert!(core.cluster.asked.load(Ordering::Relaxed) <= 4, "asked the API {} times", core.cluster.asked.load(Ordering::Relaxed));
    assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
}

#[tokio::test]
async fn the_runtime_is_never_asked_before_the_operators_provider_pod_exists_nor_about_another_pod() {
    // NotReady: nothing recorded yet, or a pod that is not the operator's: no pod UID to ask about.
    let runtime = runtime_running_provider_after(0);
    let core = waiting_core_with(
        DataRoot::new("/nonexistent/data-root"),
        Provider::NotReady { reason: "the operator has not created the provider pod dev-provider yet".into() },
        Duration::from_millis(100),
        &runtime,
    );
    let error = core.wait_for_provider(&consumer()).await.err().expect("times out");
    assert!(error.to_string().contains("has not created the provider pod"), "{error}");
    assert_eq!(runtime.asked.load(Ordering::Relaxed), 0);
    // Starting, for a pod whose container the runtime does not run: a timeout naming kubelet's view.
    let core = waiting_core_with(
        DataRoot::new("/nonexistent/data-root"),
        Provider::Starting { pod_uid: "88888888-8888-4888-8888-888888888888".into(), reason: "ContainerCreating".into() },
        Duration::from_millis(200),
        &runtime,
    );
    let error = core.wait_for_provider(&consumer()).await.err().expect("times out");
    assert!(error.to_string().contains("ContainerCreating"), "{error}");
    assert!(runtime.asked.load(Ordering::Relaxed) >= 2, "the runtime was asked while waiting");
}

#[tokio::test]
async fn published_usage_measures_each_live_publication_once_and_an_unlimited_one_has_no_figures() {
    let root = tempfile::tempdir().expect("tempdir");
    let data = DataRoot::new(root.path());
    let core = waiting_core_in(data.clone(), Provider::NotReady { reason: String::new() }, Duration::ZERO);
    let legacy = ScKey { namespace: "team-a".into(), name: "old".into(), uid: "uid-old".into() };
    let limited = ScKey { namespace: "team-a".into(), name: "new".into(), uid: "uid-new".into() };
    // A rootfs made before size limits, on the node the plugin sees through its System.
    core.mounter.system().add_directory(&data.legacy_upper_dir(&legacy));
    let live = &core.mounter.live;
    let lower = PathBuf::from("/run/containerd/x/rootfs");
    live.insert(data.upper_dir_in(&legacy, DataLayout::Unlimited), PathBuf::from("/kubelet/pods/a/volumes/x/mount"), lower.clone());
    live.insert(data.upper_dir_in(&limited, DataLayout::OwnFilesystem), PathBuf::from("/kubelet/pods/b/volumes/x/mount"), lower.clone());
    live.insert(PathBuf::from("/elsewhere/upper"), PathBuf::from("/kubelet/pods/c/volumes/x/mount"), lower);
    let measured = core.published_usage().await;
    let keys: Vec<&ScKey> = measured.iter().map(|(sc, _)| sc).collect();
    assert_eq!(keys, [&limited, &legacy], "sorted; an upper outside the data root names no SC");
    assert!(matches!(measured[1].1, Ok(None)), "no limit, no figures: {:?}", measured[1].1);
    // Its own filesystem is not mounted here: an error, never the figures of the disk below.
    assert!(matches!(measured[0].1, Err(quota::QuotaError::NotMounted { .. })), "{:?}", measured[0].1);
    core.mounter.live.remove_target(Path::new("/kubelet/pods/a/volumes/x/mount"));
    assert_eq!(core.published_usage().await.len(), 1, "an unpublished SC is not measured");
    core.publications_changed.notify_one();
    tokio::time::timeout(Duration::from_secs(5), core.publications_changed()).await.expect("a change wakes the usage reports");
}

#[tokio::test]
async fn a_claim_kubelet_has_not_mounted_is_waited_for_and_then_named_in_a_retryable_error() {
    let core = waiting_core(Provider::NotReady { reason: "starting".into() }, Duration::from_millis(50));
    let claim = crate::cluster::BoundClaim { claim_name: "dev-rootfs".into(), claim_uid: "u".into(), volume_name: "pv-17".into() };
    let request = crate::validate::PublishRequest {
        volume_id: "csi-1".into(),
        target_path: PathBuf::from(format!("/nonexistent/kubelet/pods/{POD_UID}/volumes/kubernetes.io~csi/sc-rootfs/mount")),
        pod: crate::validate::PodRef { namespace: "team-a".into(), name: "dev".into(), uid: POD_UID.into() },
        sc_name: "dev".into(),
    };
    let started = Instant::now();
    let error = core.wait_for_claim(&request.pod, "consumer pod team-a/dev", &consumer().sc, &claim).await.expect_err("never mounted");
    assert!(started.elapsed() >= Duration::from_millis(50), "it waited");
    assert!(matches!(error, PublishError::ClaimNotMounted { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.starts_with("claim team-a/dev-rootfs of StoppableContainer team-a/dev (uid "), "{message}");
    assert!(
        message.ends_with(&format!(
            "kubelet mounts it at /nonexistent/kubelet/pods/{POD_UID}/volumes/kubernetes.io~csi/pv-17/mount or /nonexistent/kubelet/pods/{POD_UID}/volumes/kubernetes.io~<plugin>/pv-17 once the volume is attached; kubelet will retry (see the events of consumer pod team-a/dev)"
        )),
        "{message}"
    );
    assert_eq!(tonic::Status::from(error).code(), tonic::Code::Unavailable, "kubelet retries");
}
