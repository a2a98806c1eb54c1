//! The layer volume against a fake cluster (the real authorisation over objects as the API would
//! hold them) and a fake node: the attacks first (another namespace, a name that does not exist,
//! data on another node, a claim the pod does not mount, symlinks planted on the claim), then the
//! publish (tmpfs, read-only bind, opaque-directory list), its repetition, unpublish, a restart,
//! the stats, the data cleanup's view and a rootfs publish alongside.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PersistentVolumeClaimStatus, PersistentVolumeClaimVolumeSource, Pod, PodSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use sc_api::storage::{ClaimRecord, InstanceStorage};
use sc_api::{
    StoppableContainer, StoppableContainerInstance, StoppableContainerInstanceSpec, StoppableContainerSpec, StoppableContainerStatus,
};

use super::{DATA, KUBELET, POD_UID, SC_UID, data, mounter_on, publish, request, sc, settings};
use crate::authorize::{LayerFacts, authorize_layer_reader};
use crate::cluster::{ClusterError, ClusterView, Consumer, LayerSource, Provider};
use crate::layout::{self, DataLayout, LAYER_TMPFS_SOURCE};
use crate::mountinfo;
use crate::node::{LayerStep, MAX_OPAQUE_LIST_BYTES, NodeCore, PublishError, opaque_list};
use crate::sys::fake::FakeSystem;
use crate::sys::{FileIdentity, System};
use crate::validate::{LayerRequest, PodRef, UnpublishRequest};

/// The `kubectl sc diff` pod: its own UID, in the SC's namespace.
const READER_UID: &str = "2a3b4c5d-6e7f-4a8b-9c0d-1e2f3a4b5c6d";
const CLAIM_UID: &str = "77777777-7777-4777-8777-777777777777";
const INSTANCE_UID: &str = "22222222-2222-4222-8222-222222222222";
const EXT4: i64 = 0xEF53;

/// The API's objects of namespace `team-a`, answered by the plugin's own authorisation.
#[derive(Clone, Default)]
struct Objects {
    sc: Option<StoppableContainer>,
    instance: Option<StoppableContainerInstance>,
    claim: Option<PersistentVolumeClaim>,
    reader_pod: Option<Pod>,
}

/// A cluster whose namespace `team-a` holds [`Objects`] (and no other namespace anything), seen
/// from node `node-1`.
struct Cluster(Objects);

impl ClusterView for Cluster {
    async fn authorize_consumer(&self, _: &PodRef, _: &str) -> Result<Consumer, ClusterError> {
        Err(ClusterError::Denied("not part of this fake".into()))
    }

    async fn provider(&self, _: &Consumer) -> Result<Provider, ClusterError> {
        Err(ClusterError::Denied("not part of this fake".into()))
    }

    async fn authorize_layer_reader(&self, pod: &PodRef, sc_name: &str) -> Result<LayerSource, ClusterError> {
        // As the API does: only the pod's namespace is looked in, only the name asked for.
        let objects = &self.0;
        let here = pod.namespace == "team-a";
        let sc = objects.sc.as_ref().filter(|sc| here && sc.metadata.name.as_deref() == Some(sc_name));
        let facts = LayerFacts {
            sc,
            instance: objects.instance.as_ref().filter(|_| sc.is_some()),
            claim: objects.claim.as_ref().filter(|_| sc.is_some()),
            reader_pod: objects.reader_pod.as_ref().filter(|pod| here && pod.metadata.uid.is_some()),
        };
        Ok(authorize_layer_reader(pod, sc_name, facts, "node-1")?)
    }
}

fn sc_object(data_node: Option<&str>) -> StoppableContainer {
    let mut object = StoppableContainer::new("dev", StoppableContainerSpec::default());
    object.metadata.namespace = Some("team-a".into());
    object.metadata.uid = Some(SC_UID.into());
    object.status = Some(StoppableContainerStatus { data_node_name: data_node.map(Into::into), ..StoppableContainerStatus::default() });
    object
}

/// A node-local SC whose data is on `data_node`.
fn node_local(data_node: &str) -> Objects {
    Objects { sc: Some(sc_object(Some(data_node))), ..Objects::default() }
}

/// An SC with `spec.storage`, its claim bound to `pv-17`, read by a pod whose volumes are
/// `reader_volumes` (claim names).
fn on_claim(reader_volumes: &[&str]) -> Objects {
    let instance = StoppableContainerInstance {
        metadata: ObjectMeta {
            name: Some("dev".into()),
            uid: Some(INSTANCE_UID.into()),
            owner_references: Some(vec![OwnerReference { uid: SC_UID.into(), controller: Some(true), ..OwnerReference::default() }]),
            ..ObjectMeta::default()
        },
        spec: StoppableContainerInstanceSpec {
            storage: Some(InstanceStorage {
                claim: ClaimRecord { claim_name: "dev-rootfs".into(), claim_uid: Some(CLAIM_UID.into()) },
                ..InstanceStorage::default()
            }),
            ..StoppableContainerInstanceSpec::default()
        },
        status: None,
    };
    let claim = PersistentVolumeClaim {
        metadata: ObjectMeta { name: Some("dev-rootfs".into()), uid: Some(CLAIM_UID.into()), ..ObjectMeta::default() },
        spec: Some(PersistentVolumeClaimSpec { volume_name: Some("pv-17".into()), ..PersistentVolumeClaimSpec::default() }),
        status: Some(PersistentVolumeClaimStatus { phase: Some("Bound".into()), ..PersistentVolumeClaimStatus::default() }),
    };
    let volumes = reader_volumes
        .iter()
        .map(|claim_name| Volume {
            name: format!("vol-{claim_name}"),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource { claim_name: (*claim_name).into(), read_only: Some(true) }),
            ..Volume::default()
        })
        .collect();
    let reader_pod = Pod {
        metadata: ObjectMeta { name: Some("dev-diff".into()), uid: Some(READER_UID.into()), ..ObjectMeta::default() },
        spec: Some(PodSpec { volumes: Some(volumes), ..PodSpec::default() }),
        status: None,
    };
    Objects { sc: Some(sc_object(None)), instance: Some(instance), claim: Some(claim), reader_pod: Some(reader_pod) }
}

fn target() -> PathBuf {
    PathBuf::from(format!("{KUBELET}/pods/{READER_UID}/volumes/kubernetes.io~csi/sc-layer/mount"))
}

fn layer_request(namespace: &str, sc_name: &str) -> LayerRequest {
    LayerRequest {
        volume_id: "csi-layer".into(),
        target_path: target(),
        pod: PodRef { namespace: namespace.into(), name: "dev-diff".into(), uid: READER_UID.into() },
        sc_name: sc_name.into(),
    }
}

fn unpublish_request() -> UnpublishRequest {
    UnpublishRequest { volume_id: "csi-layer".into(), target_path: target() }
}

/// Kubelet's mount of the claim for the reader pod (a local volume).
fn reader_claim_mount() -> PathBuf {
    PathBuf::from(format!("{KUBELET}/pods/{READER_UID}/volumes/kubernetes.io~local-volume/pv-17"))
}

/// The node-local upper of [`sc`] (made before size limits, so no loop device is involved).
fn upper() -> PathBuf {
    data().upper_dir_in(&sc(), DataLayout::Unlimited)
}

/// A node with a running provider, [`sc`]'s node-local data holding an opaque `/var/cache`, a
/// plain `/etc` and a file, and kubelet's volume directory of the reader pod.
fn layer_node() -> FakeSystem {
    let node = super::node();
    let system = node.system().clone();
    system.add_directory(target().parent().expect("kubelet's volume directory"));
    for dir in ["var/cache", "etc", "home/user"] {
        system.add_directory(&upper().join(dir));
    }
    system.put_file(&upper().join("etc/motd"), b"hi\n");
    let mut state = system.state();
    state.opaque.insert(upper().join("var/cache"));
    state.identities.insert(upper(), FileIdentity { device: 254, inode: 5150 });
    drop(state);
    system
}

fn core_on(system: &FakeSystem, objects: Objects) -> NodeCore<Cluster, FakeSystem> {
    NodeCore::new(Cluster(objects), system.clone(), settings())
}

fn mounted_at(system: &FakeSystem, path: &Path) -> Option<mountinfo::MountEntry> {
    let text = system.own_mountinfo().expect("mountinfo");
    mountinfo::mount_at(&mountinfo::parse(&text).expect("parses"), path).cloned()
}

/// Nothing of a layer volume was left at the target.
fn assert_nothing_left(system: &FakeSystem) {
    assert!(system.mounts_under(&target()).is_empty(), "{:?}", system.mounts_under(&target()));
    assert!(!system.exists(&target()), "the target directory is not left behind");
}

fn the_list(system: &FakeSystem) -> Vec<u8> {
    system.read_file(&layout::target_opaque_dirs(&target())).expect("the list")
}

#[tokio::test]
async fn a_pod_in_another_namespace_naming_the_sc_gets_nothing() {
    let system = layer_node();
    let core = core_on(&system, node_local("node-1"));
    let error = core.publish_layer(&layer_request("team-b", "dev")).await.expect_err("refused");
    let PublishError::Cluster(ClusterError::Denied(message)) = &error else { panic!("{error:?}") };
    assert!(
        message.ends_with("may not read the layer of StoppableContainer team-b/dev: no such StoppableContainer in the pod's namespace"),
        "{message}"
    );
    assert_nothing_left(&system);
}

#[tokio::test]
async fn an_sc_name_that_does_not_exist_gets_nothing() {
    let system = layer_node();
    let core = core_on(&system, node_local("node-1"));
    let error = core.publish_layer(&layer_request("team-a", "prod")).await.expect_err("refused");
    assert!(
        matches!(&error, PublishError::Cluster(ClusterError::Denied(message)) if message.contains("team-a/prod: no such StoppableContainer")),
        "{error:?}"
    );
    assert_nothing_left(&system);
}

#[tokio::test]
async fn a_node_local_layer_on_another_node_is_refused_naming_that_node() {
    let system = layer_node();
    let core = core_on(&system, node_local("node-2"));
    let error = core.publish_layer(&layer_request("team-a", "dev")).await.expect_err("refused");
    let PublishError::Cluster(ClusterError::NotNow(message)) = &error else { panic!("{error:?}") };
    assert!(
        message.ends_with("is on node \"node-2\", not on this node \"node-1\": run the pod on node node-2 (spec.nodeName: node-2)"),
        "{message}"
    );
    assert_eq!(tonic::Status::from(error).code(), tonic::Code::FailedPrecondition);
    assert_nothing_left(&system);
}

#[tokio::test]
async fn a_claim_the_pod_does_not_list_or_kubelet_did_not_mount_for_it_is_not_read() {
    let system = layer_node();
    // The consumer's mount of the claim is on this node, but it is not the reader's.
    system.add_claim_mount(&PathBuf::from(format!("{KUBELET}/pods/{POD_UID}/volumes/kubernetes.io~local-volume/pv-17")), "ext4", EXT4);
    let core = core_on(&system, on_claim(&[]));
    let error = core.publish_layer(&layer_request("team-a", "dev")).await.expect_err("the pod does not list the claim");
    assert!(
        matches!(&error, PublishError::Cluster(ClusterError::Denied(message)) if message.starts_with("pod dev-diff does not mount claim dev-rootfs")),
        "{error:?}"
    );
    let core = core_on(&system, on_claim(&["my-own-claim"]));
    assert!(matches!(core.publish_layer(&layer_request("team-a", "dev")).await, Err(PublishError::Cluster(ClusterError::Denied(_)))));
    // Listed, but kubelet has not mounted it for this pod: waited for, then retried by kubelet.
    let core = core_on(&system, on_claim(&["dev-rootfs"]));
    let error = core.publish_layer(&layer_request("team-a", "dev")).await.expect_err("not mounted for the reader");
    let message = error.to_string();
    assert!(matches!(error, PublishError::ClaimNotMounted { .. }), "{message}");
    assert!(message.contains("is not mounted for pod team-a/dev-diff after waiting"), "{message}");
    assert_nothing_left(&system);
}

#[tokio::test]
async fn a_symlink_planted_on_the_claim_is_refused_not_followed() {
    for planted in ["stoppablecontainer", "stoppablecontainer/upper"] {
        let system = layer_node();
        system.add_claim_mount(&reader_claim_mount(), "ext4", EXT4);
        let link = reader_claim_mount().join(planted);
        system.add_directory(link.parent().expect("parent"));
        // Another SC's data on this node, which the tenant would like to read.
        system.add_symlink(&link, &upper());
        let core = core_on(&system, on_claim(&["dev-rootfs"]));
        let error = core.publish_layer(&layer_request("team-a", "dev")).await.expect_err("refused");
        assert!(matches!(error, PublishError::ClaimDataDir { .. }), "{planted}: {error:?}");
        assert!(error.to_string().contains("a symlink or a file planted by a pod that mounted the claim is never followed"), "{error}");
        assert_nothing_left(&system);
        assert!(!system.state().calls.iter().any(|call| call.starts_with("bind-layer")), "{planted}: nothing bound");
    }
}

#[tokio::test]
async fn a_node_local_layer_is_bound_read_only_with_its_opaque_directories_listed() {
    let system = layer_node();
    let core = core_on(&system, node_local("node-1"));
    core.publish_layer(&layer_request("team-a", "dev")).await.expect("published");
    let tmpfs = mounted_at(&system, &target()).expect("the tmpfs");
    assert_eq!((tmpfs.fs_type.as_str(), tmpfs.source.as_str()), ("tmpfs", LAYER_TMPFS_SOURCE));
    assert!(!tmpfs.is_read_write(), "the tmpfs is made read-only once the list is written");
    let bind_point = layout::target_layer_upper(&target());
    let bind = mounted_at(&system, &bind_point).expect("the bind");
    assert_eq!(bind.root, upper());
    assert!(!bind.is_read_write());
    for flag in ["nosuid", "nodev", "noexec"] {
        assert!(bind.mount_options.iter().any(|option| option == flag), "{flag}");
    }
    assert_eq!(the_list(&system), b"/var/cache\0");
    assert_eq!(system.file_status(&layout::target_opaque_dirs(&target())).expect("stat").mode, 0o444);
    // The walk went through the volume's own bind, not the data root.
    assert!(system.state().calls.contains(&format!("walk {}", bind_point.display())));
    // Not a live overlay, no record: nothing the rootfs side counts.
    assert!(core.mounter.live.targets().is_empty());
    assert_eq!(core.mounter.records.load("csi-layer").expect("load"), None);
    assert!(core.published_usage().await.is_empty(), "the usage reports do not measure it");

    // A repeated publish finds it and changes nothing.
    let calls = system.state().calls.len();
    core.publish_layer(&layer_request("team-a", "dev")).await.expect("published again");
    assert_eq!(system.state().calls.len(), calls, "{:?}", &system.state().calls[calls..]);

    let stats = core.stats("csi-layer", &target()).await.expect("stats");
    assert_eq!((stats.abnormal, stats.bytes_used), (None, 2 << 30));

    core.unpublish(&unpublish_request()).await.expect("unpublished");
    assert_nothing_left(&system);
    assert!(system.is_directory(&upper().join("var/cache")), "the upper is untouched");
    core.unpublish(&unpublish_request()).await.expect("a repeated unpublish converges");
}

#[tokio::test]
async fn a_restart_keeps_the_layer_volume_and_its_unpublish_still_finds_it() {
    let system = layer_node();
    core_on(&system, node_local("node-1")).publish_layer(&layer_request("team-a", "dev")).await.expect("published");
    let restarted = mounter_on(system.clone());
    let recovered = restarted.recover().expect("recovered");
    assert_eq!((recovered.live, recovered.serve.len(), recovered.unwound.len()), (0, 0, 0), "not a rootfs publication");
    assert!(mounted_at(&system, &layout::target_layer_upper(&target())).is_some(), "recovery leaves it mounted");
    assert!(restarted.stats("csi-layer", &target()).expect("stats").abnormal.is_none());
    restarted.unpublish(&unpublish_request()).expect("unpublished");
    assert_nothing_left(&system);
}

#[tokio::test]
async fn a_claim_layer_is_bound_from_the_pods_own_mount_of_the_claim() {
    let system = layer_node();
    let device = system.add_claim_mount(&reader_claim_mount(), "ext4", EXT4);
    let claim_upper = reader_claim_mount().join("stoppablecontainer/upper");
    system.add_directory(&claim_upper.join("opt/app"));
    system.add_directory(&claim_upper.join("srv"));
    system.state().opaque.extend([claim_upper.join("opt"), claim_upper.clone()]);
    system.state().identities.insert(claim_upper.clone(), FileIdentity { device: u64::from(device.1), inode: 2 });
    let core = core_on(&system, on_claim(&["dev-rootfs"]));
    core.publish_layer(&layer_request("team-a", "dev")).await.expect("published");
    let bind = mounted_at(&system, &layout::target_layer_upper(&target())).expect("the bind");
    assert_eq!(((bind.major, bind.minor), bind.root.as_path()), (device, Path::new("/stoppablecontainer/upper")));
    // An opaque root of the upper is listed as `/`.
    assert_eq!(the_list(&system), b"/\0/opt\0");
    core.unpublish(&unpublish_request()).await.expect("unpublished");
    assert_nothing_left(&system);
    assert!(mounted_at(&system, &reader_claim_mount()).is_some(), "the claim's mount is kubelet's");
}

#[tokio::test]
async fn a_layer_that_does_not_exist_yet_is_a_precondition_not_an_empty_volume() {
    // On a claim: no `stoppablecontainer/upper` yet (the SC never started on it).
    let system = layer_node();
    system.add_claim_mount(&reader_claim_mount(), "ext4", EXT4);
    let error = core_on(&system, on_claim(&["dev-rootfs"])).publish_layer(&layer_request("team-a", "dev")).await.expect_err("none");
    assert!(matches!(error, PublishError::NoLayer { .. }), "{error:?}");
    assert!(error.to_string().contains("has no layer at /var/lib/kubelet/pods/"), "{error}");
    assert_eq!(tonic::Status::from(error).code(), tonic::Code::FailedPrecondition);
    assert_nothing_left(&system);
    // On this node: neither an upper of an earlier release nor an image of its own filesystem.
    let system = layer_node();
    system.state().entries.retain(|path, _| !path.starts_with(data().container_dir(&sc())));
    let error = core_on(&system, node_local("node-1")).publish_layer(&layer_request("team-a", "dev")).await.expect_err("none");
    assert_eq!(
        error.to_string(),
        format!(
            "StoppableContainer team-a/dev (uid {SC_UID}) has no layer at {DATA}/containers/team-a/dev/{SC_UID}/rootfs.img yet: its data is made by its first start (on its data node, or on its claim); start it once, then read its layer"
        )
    );
    assert_nothing_left(&system);
}

#[tokio::test]
async fn a_failed_walk_bind_or_list_leaves_nothing_mounted() {
    for operation in ["opaque_directories", "bind_layer_read_only", "write_file_durably", "remount_read_only", "mount_layer_tmpfs"] {
        let system = layer_node();
        system.fail_next(operation, nix::libc::EIO);
        let error = core_on(&system, node_local("node-1")).publish_layer(&layer_request("team-a", "dev")).await.expect_err(operation);
        assert!(matches!(error, PublishError::Io(_)), "{operation}: {error:?}");
        assert_nothing_left(&system);
    }
}

#[tokio::test]
async fn a_half_done_layer_volume_is_unwound_and_published_anew_and_a_foreign_mount_refused() {
    let system = layer_node();
    let core = core_on(&system, node_local("node-1"));
    // What a publish killed between its bind and its list left.
    let step = core.mounter.bind_layer(&layer_request("team-a", "dev"), &sc(), None).expect("bound");
    assert_eq!(step, LayerStep::Bound);
    core.publish_layer(&layer_request("team-a", "dev")).await.expect("published");
    assert_eq!(the_list(&system), b"/var/cache\0");
    assert_eq!(system.mounts_under(&target()).len(), 2, "one tmpfs, one bind");
    core.unpublish(&unpublish_request()).await.expect("unpublished");

    system.add_directory(&target());
    system.add_foreign_mount("nfs", "srv:/x", &target());
    let error = core.publish_layer(&layer_request("team-a", "dev")).await.expect_err("refused");
    assert!(matches!(error, PublishError::ForeignMount { .. }), "{error:?}");
}

#[test]
fn a_volume_unpublished_while_its_upper_was_walked_is_not_written_to() {
    let system = layer_node();
    let node = mounter_on(system.clone());
    let request = layer_request("team-a", "dev");
    node.bind_layer(&request, &sc(), None).expect("bound");
    node.unpublish(&unpublish_request()).expect("kubelet gave up on the pod");
    let error = node.finish_layer(&request, &sc(), &["/var/cache".into()]).expect_err("gone");
    assert!(matches!(error, PublishError::LayerGone { .. }), "{error:?}");
    assert_nothing_left(&system);
}

#[tokio::test]
async fn a_rootfs_publish_goes_ahead_while_a_layer_volume_reads_the_upper_and_the_cleanup_waits_for_both() {
    let system = layer_node();
    let core = core_on(&system, node_local("node-1"));
    core.publish_layer(&layer_request("team-a", "dev")).await.expect("published");
    // The SC starts: its consumer's overlay over the same upper is not refused.
    let node = &core.mounter;
    publish(node, &request("csi-1", POD_UID)).expect("the rootfs is published beside the layer volume");
    assert!(node.is_data_mounted(&sc()).expect("mountinfo"));
    node.unpublish(&UnpublishRequest { volume_id: "csi-1".into(), target_path: request("csi-1", POD_UID).target_path }).expect("stopped");
    // Stopped, the layer volume still reads the upper: its data is not deleted under it.
    assert!(node.is_data_mounted(&sc()).expect("mountinfo"), "the layer volume's bind counts");
    core.unpublish(&unpublish_request()).await.expect("unpublished");
    assert!(!node.is_data_mounted(&sc()).expect("mountinfo"));
}

#[tokio::test]
async fn stats_of_a_layer_volume_whose_bind_is_gone_say_so() {
    let system = layer_node();
    let core = core_on(&system, node_local("node-1"));
    core.publish_layer(&layer_request("team-a", "dev")).await.expect("published");
    system.unmount(&layout::target_layer_upper(&target())).expect("someone unmounted the bind");
    let stats = core.stats("csi-layer", &target()).await.expect("stats");
    assert_eq!(
        stats.abnormal.as_deref(),
        Some(format!("the layer volume's upper is not mounted at {}/upper", target().display()).as_str())
    );
    let missing = core.stats("csi-layer", Path::new("/var/lib/kubelet/pods/x/volumes/kubernetes.io~csi/y/mount")).await;
    assert!(matches!(missing, Err(crate::node::StatsError::NotFound { .. })), "{missing:?}");
}

#[test]
fn the_opaque_list_is_the_shared_nul_separated_format_and_bounded() {
    let opaque: Vec<PathBuf> = ["/var/cache", "/opt/a dir\nwith a newline"].iter().map(PathBuf::from).collect();
    let bytes = opaque_list(&sc(), &opaque).expect("encoded");
    assert_eq!(sc_api::layer_diff::parse_path_list(&bytes).expect("parses"), opaque);
    let name = "d".repeat(200);
    let many: Vec<PathBuf> = (0..MAX_OPAQUE_LIST_BYTES / 200).map(|index| PathBuf::from(format!("/{index}{name}"))).collect();
    let error = opaque_list(&sc(), &many).expect_err("too large");
    assert!(matches!(error, PublishError::OpaqueListTooLarge { max: MAX_OPAQUE_LIST_BYTES, .. }), "{error:?}");
    assert!(error.to_string().contains("a directory removed and made again in the rootfs is opaque"), "{error}");
}
