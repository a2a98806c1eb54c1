//! Who may have a StoppableContainer's rootfs, and which pod is its provider, decided only from
//! facts a tenant cannot write. Pure: [`crate::cluster`] fetches the objects, these functions
//! decide, and every refusal has a unit test.
//!
//! A tenant may create pods in its namespace with any name, labels, annotations and
//! `ownerReferences` (a controller reference to the instance's UID included), so none of those
//! count. What counts:
//! - kubelet's word on which pod the volume is mounted for (`podInfoOnMount`, cross-checked
//!   against kubelet's target path by [`crate::validate`]);
//! - the StoppableContainer (its UID, whether it is being deleted), written by its owner but
//!   never its status;
//! - the StoppableContainerInstance, created only by the operator, and in its **status** the UIDs
//!   of the consumer and provider pods the operator created (`consumerPodUID`,
//!   `providerPodUID`), recorded from the API server's answer to the operator's own create;
//! - kubelet's status of the provider pod (its container id, whether it runs) and the node it is
//!   bound to;
//! - with `spec.storage`, the claim the operator recorded in the instance's spec (its name and
//!   UID, from the API server's answer to the operator's own create) and the claim's binding as
//!   the API shows it (its UID, phase and `spec.volumeName`, which only the control plane
//!   writes once bound). A tenant may delete the claim and create one of the same name: its UID
//!   differs, and it is never used;
//! - for the layer volume ([`authorize_layer_reader`]), which any pod of the SC's namespace may
//!   have: the SC's status, which only the operator writes (the node that holds a node-local
//!   SC's data, `dataNodeName`; the claim record, kept there too for a stopped SC).

use k8s_openapi::api::core::v1::{ContainerStatus, PersistentVolumeClaim, Pod};
use kube::{Resource, ResourceExt};
use sc_api::consts::{PROVIDER_CONTAINER_NAME, provider_pod_name};
use sc_api::{StoppableContainer, StoppableContainerInstance};

mod claim;
mod layer;

pub use self::claim::{BoundClaim, ClaimUser, bound_claim, check_claim_volumes};
pub use self::layer::{LayerData, LayerFacts, LayerSource, authorize_layer_reader, recorded_claim};
use crate::cgroup::container_id_from_status;
use crate::layout::ScKey;
use crate::validate::PodRef;

/// A consumer pod that passed authorisation, and the incarnation it belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Consumer {
    pub sc: ScKey,
    /// UID of the StoppableContainerInstance whose status recorded the pod.
    pub instance_uid: String,
    /// The size the operator resolved for the rootfs (the instance's `rootfsSizeBytes`); `None`
    /// from an instance of an earlier release, which leaves it to the node plugin's default.
    pub rootfs_size_bytes: Option<u64>,
    /// With `spec.storage`: the claim that holds the persistent layer, checked bound. `None`: the
    /// persistent layer is on this node (the data root).
    pub claim: Option<BoundClaim>,
}

/// The provider container's state on this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Provider {
    /// Running with this CRI container id, in the pod with this UID (when known: it locates the
    /// container's cgroup directory; without it the plugin scans every process), from the image
    /// `image_ref` as kubelet reports it (its `imageID`, a digest reference; its `image` when
    /// kubelet gives no `imageID`), which the plugin asks the container runtime for the config of.
    Running { container_id: String, pod_uid: Option<String>, image_ref: String },
    /// The operator's provider pod (its UID is the recorded one, and it is not being deleted) is
    /// on this node, or not yet bound, and kubelet has not reported its container running: the
    /// runtime may already run it, so the plugin may look it up there by the pod's UID
    /// (see [`crate::runtime_containers`]). Otherwise like `NotReady`.
    Starting { pod_uid: String, reason: String },
    /// Not (yet) usable; waiting may help. The reason is shown to the user if waiting times out.
    NotReady { reason: String },
    /// Not usable until something changes that waiting here will not change (an image that
    /// cannot be pulled, an evicted pod): the publish fails at once and kubelet retries later.
    Stuck { reason: String },
}

/// Why a pod may not have a rootfs, or not now.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The pod may not have this rootfs.
    #[error("{0}")]
    Denied(String),
    /// The StoppableContainer exists but cannot be published now (being deleted).
    #[error("{0}")]
    NotNow(String),
}

/// Waiting reasons of a container that do not end by themselves within a publish's wait: kubelet
/// retries them on its own back-off, and so does its retry of the publish.
const STUCK_WAITING_REASONS: &[&str] = &[
    "ImagePullBackOff",
    "ErrImagePull",
    "ErrImageNeverPull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
    "CrashLoopBackOff",
];

/// Whether `object` has a controller reference to the object with UID `owner_uid`. Only used for
/// the instance, which tenants cannot create: on a pod it would prove nothing.
fn is_controlled_by(object: &impl Resource, owner_uid: &str) -> bool {
    object.meta().owner_references.iter().flatten().any(|reference| reference.controller == Some(true) && reference.uid == owner_uid)
}

/// Checks that `pod` (as kubelet reported it) is the consumer pod the operator created for the
/// StoppableContainer `sc_name` in the pod's own namespace, and, with `spec.storage`, that the
/// claim the operator recorded is the one bound now. `sc` and `instance` are the live objects of
/// that name in that namespace, `claim` the live claim named as the instance records (None: they
/// do not exist, or the instance records no claim).
pub fn authorize_consumer(
    pod: &PodRef,
    sc_name: &str,
    sc: Option<&StoppableContainer>,
    instance: Option<&StoppableContainerInstance>,
    claim: Option<&PersistentVolumeClaim>,
) -> Result<Consumer, Refusal> {
    let namespace = &pod.namespace;
    let denied = |why: String| {
        Refusal::Denied(format!(
            "pod {namespace}/{} (UID {}) may not mount the rootfs of StoppableContainer {namespace}/{sc_name}: {why}",
            pod.name, pod.uid
        ))
    };
    if pod.name != sc_name {
        return Err(denied(format!("its consumer pod is named {sc_name:?}")));
    }
    let (_, sc) = live_sc(namespace, sc_name, sc, &denied)?;
    let Some(instance) = instance else {
        return Err(denied("it has no instance: the operator has not started it".into()));
    };
    if !is_own_instance(instance, &sc.uid) {
        return Err(denied(
            "its instance was not created for this StoppableContainer (a leftover of an earlier one of the same name)".into(),
        ));
    }
    if instance.metadata.deletion_timestamp.is_some() {
        return Err(denied("its instance is being deleted".into()));
    }
    let recorded = instance.status.as_ref().and_then(|status| status.consumer_pod_uid.as_deref());
    match recorded {
        Some(recorded) if recorded == pod.uid => {}
        Some(recorded) => {
            return Err(denied(format!(
                "it is not the consumer pod the operator created (that one has UID {recorded}); only pods the operator creates get the rootfs"
            )));
        }
        None => {
            return Err(denied(
                "the operator has recorded no consumer pod for it (it is stopped, or this pod was not created by the operator)".into(),
            ));
        }
    }
    let instance_uid = instance.uid().unwrap_or_default();
    let claim = match &instance.spec.storage {
        Some(storage) => Some(bound_claim(&sc, &storage.claim, claim)?),
        None => None,
    };
    Ok(Consumer { sc, instance_uid, rootfs_size_bytes: instance.spec.rootfs_size_bytes, claim })
}

/// The StoppableContainer `sc_name` of `namespace` as the API holds it (`sc`: `None` when there is
/// none there), its identity and its object: it must exist and not be being deleted. Only the
/// pod's own namespace is ever looked in, so a pod never reaches another namespace's SC.
fn live_sc<'a>(
    namespace: &str,
    sc_name: &str,
    sc: Option<&'a StoppableContainer>,
    denied: &dyn Fn(String) -> Refusal,
) -> Result<(&'a StoppableContainer, ScKey), Refusal> {
    let Some(sc) = sc else {
        return Err(denied("no such StoppableContainer in the pod's namespace".into()));
    };
    if sc.metadata.deletion_timestamp.is_some() {
        return Err(Refusal::NotNow(format!("StoppableContainer {namespace}/{sc_name} is being deleted")));
    }
    Ok((sc, ScKey { namespace: namespace.to_owned(), name: sc_name.to_owned(), uid: sc.uid().unwrap_or_default() }))
}

/// Whether `instance` is the operator's instance of the StoppableContainer `sc` (not a leftover
/// of an earlier SC of the same name): only the operator creates instances, with a controller
/// reference to the SC's UID.
fn is_own_instance(instance: &StoppableContainerInstance, sc_uid: &str) -> bool {
    !sc_uid.is_empty() && is_controlled_by(instance, sc_uid)
}

/// The name of the claim the instance records, which [`authorize_consumer`] is to be given.
pub fn recorded_claim_name(instance: &StoppableContainerInstance) -> Option<&str> {
    instance.spec.storage.as_ref().map(|storage| storage.claim.claim_name.as_str())
}

/// The state of `consumer`'s provider for a publish on `this_node`, from the live instance and
/// the live pod named like the provider (None: it does not exist).
pub fn provider_state(
    consumer: &Consumer,
    instance: Option<&StoppableContainerInstance>,
    provider: Option<&Pod>,
    this_node: &str,
) -> Result<Provider, Refusal> {
    let name = provider_pod_name(&consumer.sc.name);
    let instance = instance.filter(|instance| instance.uid().as_deref() == Some(consumer.instance_uid.as_str()));
    let Some(instance) = instance else {
        return Err(Refusal::Denied(format!(
            "the instance of StoppableContainer {} was replaced or deleted while its consumer pod was being started",
            consumer.sc
        )));
    };
    let Some(recorded) = instance.status.as_ref().and_then(|status| status.provider_pod_uid.as_deref()) else {
        return Ok(Provider::NotReady { reason: format!("the operator has not created the provider pod {name} yet") });
    };
    let Some(provider) = provider else {
        return Ok(Provider::NotReady { reason: format!("provider pod {name} does not exist yet") });
    };
    let uid = provider.uid().unwrap_or_default();
    if uid != recorded {
        // Either the operator's record of a provider it has just replaced is on its way, or a
        // tenant's pod took the name: never use it, wait for the operator's own.
        return Ok(Provider::NotReady {
            reason: format!(
                "pod {name} (UID {uid}) is not the provider pod the operator created (UID {recorded}); a pod the operator did not create is never used as the lower layer"
            ),
        });
    }
    let phase = provider.status.as_ref().and_then(|status| status.phase.as_deref());
    if let Some(phase @ ("Failed" | "Succeeded")) = phase {
        let why = provider.status.as_ref().and_then(|status| status.reason.clone().or(status.message.clone())).unwrap_or_default();
        return Ok(Provider::Stuck { reason: format!("provider pod {name} has ended ({phase} {why}); the operator replaces it") });
    }
    let deleting = provider.metadata.deletion_timestamp.is_some();
    match provider.spec.as_ref().and_then(|spec| spec.node_name.as_deref()) {
        // Bound in a moment, and started here at once if here is where it goes.
        None if !deleting => {
            return Ok(Provider::Starting { pod_uid: uid, reason: format!("provider pod {name} is not scheduled yet") });
        }
        None => return Ok(Provider::NotReady { reason: format!("provider pod {name} is not scheduled yet") }),
        Some(node) if node != this_node => {
            return Ok(Provider::NotReady { reason: format!("provider pod {name} is on node {node:?}, not on this node {this_node:?}") });
        }
        Some(_) => {}
    }
    let status = provider
        .status
        .as_ref()
        .and_then(|status| status.container_statuses.as_ref())
        .and_then(|statuses| statuses.iter().find(|status| status.name == PROVIDER_CONTAINER_NAME));
    let Some(status) = status else {
        let reason = format!("provider pod {name} has no container status yet");
        return Ok(if deleting { Provider::NotReady { reason } } else { Provider::Starting { pod_uid: uid, reason } });
    };
    Ok(match container_state(&name, uid.clone(), status) {
        Provider::NotReady { reason } if !deleting => Provider::Starting { pod_uid: uid, reason },
        state => state,
    })
}

/// The image a running container runs, as kubelet reports it: `imageID` (the digest the runtime
/// resolved, so a tag moved since is not mistaken for it), else `image`. Kubelet writes both; the
/// tenant writes neither.
fn running_image_ref(status: &ContainerStatus) -> String {
    if status.image_id.is_empty() { status.image.clone() } else { status.image_id.clone() }
}

fn container_state(pod_name: &str, pod_uid: String, status: &ContainerStatus) -> Provider {
    let running = status.state.as_ref().is_some_and(|state| state.running.is_some());
    if let (true, Some(id)) = (running, status.container_id.as_deref().and_then(container_id_from_status)) {
        return Provider::Running { container_id: id.to_owned(), pod_uid: Some(pod_uid), image_ref: running_image_ref(status) };
    }
    let waiting = status.state.as_ref().and_then(|state| state.waiting.as_ref());
    let reason = waiting.and_then(|waiting| waiting.reason.clone()).unwrap_or_else(|| "not running".into());
    let message = waiting.and_then(|waiting| waiting.message.clone()).map(|message| format!(": {message}")).unwrap_or_default();
    let reason_text = format!("provider container of pod {pod_name} is {reason}{message}");
    if STUCK_WAITING_REASONS.contains(&reason.as_str()) {
        Provider::Stuck { reason: reason_text }
    } else {
        Provider::NotReady { reason: reason_text }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{ContainerState, ContainerStateRunning, ContainerStateWaiting, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
    use k8s_openapi::jiff::Timestamp;
    use sc_api::{StoppableContainerInstanceSpec, StoppableContainerInstanceStatus, StoppableContainerSpec};

    use super::*;

    const SC_UID: &str = "11111111-1111-4111-8111-111111111111";
    const INSTANCE_UID: &str = "22222222-2222-4222-8222-222222222222";
    const CONSUMER_UID: &str = "33333333-3333-4333-8333-333333333333";
    const PROVIDER_UID: &str = "44444444-4444-4444-8444-444444444444";
    const FORGED_UID: &str = "55555555-5555-4555-8555-555555555555";
    const CONTAINER_ID: &str = "8b7e0f6ad23b2c1bd3c0b1e6f84a3d7c1e3f0aa1c19f8c2de5d9a4b7f2c61e0a";
    const IMAGE_ID: &str = "docker.io/library/python@sha256:2e2f2a0b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f";

    fn controller(uid: &str) -> Option<Vec<OwnerReference>> {
        Some(vec![OwnerReference { uid: uid.into(), controller: Some(true), ..OwnerReference::default() }])
    }

    fn sc() -> StoppableContainer {
        let mut sc = StoppableContainer::new("dev", StoppableContainerSpec::default());
        sc.metadata.namespace = Some("team-a".into());
        sc.metadata.uid = Some(SC_UID.into());
        sc
    }

    fn instance(consumer: Option<&str>, provider: Option<&str>) -> StoppableContainerInstance {
        StoppableContainerInstance {
            metadata: ObjectMeta {
                name: Some("dev".into()),
                namespace: Some("team-a".into()),
                uid: Some(INSTANCE_UID.into()),
                owner_references: controller(SC_UID),
                ..ObjectMeta::default()
            },
            spec: StoppableContainerInstanceSpec { rootfs_size_bytes: Some(20 << 30), ..StoppableContainerInstanceSpec::default() },
            status: Some(StoppableContainerInstanceStatus {
                consumer_pod_uid: consumer.map(str::to_owned),
                provider_pod_uid: provider.map(str::to_owned),
                ..StoppableContainerInstanceStatus::default()
            }),
        }
    }

    fn pod(uid: &str) -> PodRef {
        PodRef { namespace: "team-a".into(), name: "dev".into(), uid: uid.into() }
    }

    fn consumer() -> Consumer {
        Consumer {
            sc: ScKey { namespace: "team-a".into(), name: "dev".into(), uid: SC_UID.into() },
            instance_uid: INSTANCE_UID.into(),
            rootfs_size_bytes: Some(20 << 30),
            claim: None,
        }
    }

    fn refusal(result: Result<Consumer, Refusal>) -> String {
        result.expect_err("must be refused").to_string()
    }

    #[test]
    fn the_consumer_pod_the_operator_recorded_is_authorised() {
        let instance = instance(Some(CONSUMER_UID), None);
        assert_eq!(authorize_consumer(&pod(CONSUMER_UID), "dev", Some(&sc()), Some(&instance), None), Ok(consumer()));
    }

    #[test]
    fn with_storage_the_consumer_carries_the_recorded_claim_once_bound() {
        use k8s_openapi::api::core::v1::{PersistentVolumeClaim, PersistentVolumeClaimSpec, PersistentVolumeClaimStatus};
        use sc_api::storage::{ClaimRecord, InstanceStorage, StorageSpec};
        const CLAIM_UID: &str = "77777777-7777-4777-8777-777777777777";
        let mut with_storage = instance(Some(CONSUMER_UID), None);
        with_storage.spec.storage = Some(InstanceStorage {
            requested: StorageSpec::default(),
            claim: ClaimRecord { claim_name: "dev-rootfs".into(), claim_uid: Some(CLAIM_UID.into()) },
            ..InstanceStorage::default()
        });
        assert_eq!(recorded_claim_name(&with_storage), Some("dev-rootfs"));
        let claim = PersistentVolumeClaim {
            metadata: ObjectMeta { name: Some("dev-rootfs".into()), uid: Some(CLAIM_UID.into()), ..ObjectMeta::default() },
            spec: Some(PersistentVolumeClaimSpec { volume_name: Some("pv-17".into()), ..PersistentVolumeClaimSpec::default() }),
            status: Some(PersistentVolumeClaimStatus { phase: Some("Bound".into()), ..PersistentVolumeClaimStatus::default() }),
        };
        let consumer = authorize_consumer(&pod(CONSUMER_UID), "dev", Some(&sc()), Some(&with_storage), Some(&claim)).expect("authorised");
        assert_eq!(
            consumer.claim,
            Some(BoundClaim { claim_name: "dev-rootfs".into(), claim_uid: CLAIM_UID.into(), volume_name: "pv-17".into() })
        );
        // The claim is required: without it the consumer is not published (on the node's disk or anywhere).
        let refused = authorize_consumer(&pod(CONSUMER_UID), "dev", Some(&sc()), Some(&with_storage), None);
        assert!(matches!(refused, Err(Refusal::NotNow(ref message)) if message.contains("does not exist")), "{refused:?}");
        // A node-local SC ignores any claim.
        assert_eq!(
            authorize_consumer(&pod(CONSUMER_UID), "dev", Some(&sc()), Some(&instance(Some(CONSUMER_UID), None)), Some(&claim)),
            Ok(super::tests::consumer())
        );
    }

    #[test]
    fn a_pod_in_another_namespace_finds_no_such_sc() {
        // The cluster view looks the SC up in the pod's own namespace; there is none there.
        let thief = PodRef { namespace: "team-b".into(), ..pod(CONSUMER_UID) };
        let message = refusal(authorize_consumer(&thief, "dev", None, None, None));
        assert!(message.contains("no such StoppableContainer in the pod's namespace"), "{message}");
        assert!(message.contains("team-b/dev"), "{message}");
    }

    #[test]
    fn a_pod_with_another_name_is_refused() {
        let other = PodRef { name: "dev-provider".into(), ..pod(CONSUMER_UID) };
        let instance = instance(Some(CONSUMER_UID), None);
        let message = refusal(authorize_consumer(&other, "dev", Some(&sc()), Some(&instance), None));
        assert!(message.contains("its consumer pod is named \"dev\""), "{message}");
    }

    #[test]
    fn a_forged_pod_with_the_right_name_labels_and_owner_but_another_uid_is_refused() {
        // Labels and ownerReferences are not even looked at: only the recorded UID counts.
        let instance = instance(Some(CONSUMER_UID), None);
        let message = refusal(authorize_consumer(&pod(FORGED_UID), "dev", Some(&sc()), Some(&instance), None));
        assert!(message.contains("is not the consumer pod the operator created"), "{message}");
    }

    #[test]
    fn a_stale_pod_uid_is_refused_once_the_operator_recorded_a_new_pod() {
        let instance = instance(Some(FORGED_UID), None);
        let message = refusal(authorize_consumer(&pod(CONSUMER_UID), "dev", Some(&sc()), Some(&instance), None));
        assert!(message.contains("that one has UID 55555555"), "{message}");
    }

    #[test]
    fn a_pod_named_like_a_stopped_sc_is_refused() {
        let instance = instance(None, Some(PROVIDER_UID));
        let message = refusal(authorize_consumer(&pod(FORGED_UID), "dev", Some(&sc()), Some(&instance), None));
        assert!(message.contains("the operator has recorded no consumer pod for it (it is stopped"), "{message}");
        let message = refusal(authorize_consumer(&pod(FORGED_UID), "dev", Some(&sc()), None, None));
        assert!(message.contains("it has no instance"), "{message}");
    }

    #[test]
    fn an_instance_of_an_earlier_sc_of_the_same_name_does_not_count() {
        let mut leftover = instance(Some(CONSUMER_UID), None);
        leftover.metadata.owner_references = controller("99999999-9999-4999-8999-999999999999");
        let message = refusal(authorize_consumer(&pod(CONSUMER_UID), "dev", Some(&sc()), Some(&leftover), None));
        assert!(message.contains("not created for this StoppableContainer"), "{message}");
        // An owner reference that is not a controller reference does not count either.
        let mut weak = instance(Some(CONSUMER_UID), None);
        weak.metadata.owner_references =
            Some(vec![OwnerReference { uid: SC_UID.into(), controller: Some(false), ..OwnerReference::default() }]);
        assert!(refusal(authorize_consumer(&pod(CONSUMER_UID), "dev", Some(&sc()), Some(&weak), None)).contains("not created for this"));
    }

    #[test]
    fn an_sc_or_instance_being_deleted_is_refused() {
        let mut deleting = sc();
        deleting.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
        let instance_ok = instance(Some(CONSUMER_UID), None);
        let refused = authorize_consumer(&pod(CONSUMER_UID), "dev", Some(&deleting), Some(&instance_ok), None);
        assert_eq!(refused, Err(Refusal::NotNow("StoppableContainer team-a/dev is being deleted".into())));
        let mut instance_deleting = instance(Some(CONSUMER_UID), None);
        instance_deleting.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
        let message = refusal(authorize_consumer(&pod(CONSUMER_UID), "dev", Some(&sc()), Some(&instance_deleting), None));
        assert!(message.contains("its instance is being deleted"), "{message}");
    }

    fn provider_pod(uid: &str, node: Option<&str>, state: ContainerState) -> Pod {
        Pod {
            metadata: ObjectMeta { name: Some("dev-provider".into()), uid: Some(uid.into()), ..ObjectMeta::default() },
            spec: Some(PodSpec { node_name: node.map(str::to_owned), ..PodSpec::default() }),
            status: Some(PodStatus {
                phase: Some("Running".into()),
                container_statuses: Some(vec![ContainerStatus {
                    name: PROVIDER_CONTAINER_NAME.into(),
                    container_id: Some(format!("containerd://{CONTAINER_ID}")),
                    image: "docker.io/library/python:3.12".into(),
                    image_id: IMAGE_ID.into(),
                    state: Some(state),
                    ..ContainerStatus::default()
                }]),
                ..PodStatus::default()
            }),
        }
    }

    fn running() -> ContainerState {
        ContainerState { running: Some(ContainerStateRunning::default()), ..ContainerState::default() }
    }

    fn waiting(reason: &str) -> ContainerState {
        ContainerState { waiting: Some(ContainerStateWaiting { reason: Some(reason.into()), message: None }), ..ContainerState::default() }
    }

    fn state(provider: &Pod, recorded: Option<&str>) -> Provider {
        provider_state(&consumer(), Some(&instance(Some(CONSUMER_UID), recorded)), Some(provider), "node-1").expect("not refused")
    }

    fn not_ready_reason(provider: Provider) -> String {
        match provider {
            Provider::NotReady { reason } => reason,
            other => panic!("expected NotReady, got {other:?}"),
        }
    }

    #[test]
    fn the_recorded_running_provider_on_this_node_is_used() {
        let provider = provider_pod(PROVIDER_UID, Some("node-1"), running());
        assert_eq!(
            state(&provider, Some(PROVIDER_UID)),
            Provider::Running { container_id: CONTAINER_ID.into(), pod_uid: Some(PROVIDER_UID.into()), image_ref: IMAGE_ID.into() }
        );
    }

    #[test]
    fn the_image_is_kubelets_image_id_else_its_image() {
        let mut provider = provider_pod(PROVIDER_UID, Some("node-1"), running());
        let status = &mut provider.status.as_mut().expect("status").container_statuses.as_mut().expect("statuses")[0];
        status.image_id = String::new();
        match state(&provider, Some(PROVIDER_UID)) {
            Provider::Running { image_ref, .. } => assert_eq!(image_ref, "docker.io/library/python:3.12"),
            other => panic!("expected Running, got {other:?}"),
        }
    }

    #[test]
    fn a_forged_provider_is_never_used() {
        // A tenant's pod named like the provider, running on this node.
        let forged = provider_pod(FORGED_UID, Some("node-1"), running());
        let reason = not_ready_reason(state(&forged, Some(PROVIDER_UID)));
        assert!(reason.contains("is not the provider pod the operator created"), "{reason}");
        let reason = not_ready_reason(state(&forged, None));
        assert!(reason.contains("the operator has not created the provider pod dev-provider yet"), "{reason}");
    }

    #[test]
    fn a_provider_elsewhere_or_unscheduled_is_waited_for() {
        let elsewhere = provider_pod(PROVIDER_UID, Some("node-2"), running());
        assert!(not_ready_reason(state(&elsewhere, Some(PROVIDER_UID))).contains("is on node \"node-2\", not on this node \"node-1\""));
        // The operator's own pod, not bound yet: the runtime may be asked about it by its UID.
        let unscheduled = provider_pod(PROVIDER_UID, None, running());
        match state(&unscheduled, Some(PROVIDER_UID)) {
            Provider::Starting { pod_uid, reason } => {
                assert_eq!(pod_uid, PROVIDER_UID);
                assert!(reason.contains("not scheduled yet"), "{reason}");
            }
            other => panic!("expected Starting, got {other:?}"),
        }
        let missing = provider_state(&consumer(), Some(&instance(Some(CONSUMER_UID), Some(PROVIDER_UID))), None, "node-1");
        assert!(not_ready_reason(missing.expect("not refused")).contains("does not exist yet"));
    }

    #[test]
    fn a_starting_provider_is_waited_for_and_a_stuck_one_is_not() {
        let mut starting = provider_pod(PROVIDER_UID, Some("node-1"), waiting("ContainerCreating"));
        match state(&starting, Some(PROVIDER_UID)) {
            Provider::Starting { pod_uid, reason } => {
                assert!(pod_uid == PROVIDER_UID && reason.contains("is ContainerCreating"), "{reason}")
            }
            other => panic!("expected Starting, got {other:?}"),
        }
        // Being deleted: its container is about to stop, so the runtime is not asked about it.
        starting.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
        assert!(not_ready_reason(state(&starting, Some(PROVIDER_UID))).contains("is ContainerCreating"));
        for reason in ["ImagePullBackOff", "ErrImagePull", "InvalidImageName", "CreateContainerConfigError"] {
            let stuck = provider_pod(PROVIDER_UID, Some("node-1"), waiting(reason));
            match state(&stuck, Some(PROVIDER_UID)) {
                Provider::Stuck { reason: text } => assert!(text.contains(reason), "{text}"),
                other => panic!("{reason}: expected Stuck, got {other:?}"),
            }
        }
        let mut evicted = provider_pod(PROVIDER_UID, Some("node-1"), running());
        let status = evicted.status.as_mut().expect("status");
        status.phase = Some("Failed".into());
        status.reason = Some("Evicted".into());
        match state(&evicted, Some(PROVIDER_UID)) {
            Provider::Stuck { reason } => assert!(reason.contains("has ended (Failed Evicted)"), "{reason}"),
            other => panic!("expected Stuck, got {other:?}"),
        }
    }

    #[test]
    fn a_replaced_instance_refuses_the_provider_lookup() {
        let mut replaced = instance(Some(CONSUMER_UID), Some(PROVIDER_UID));
        replaced.metadata.uid = Some("66666666-6666-4666-8666-666666666666".into());
        let provider = provider_pod(PROVIDER_UID, Some("node-1"), running());
        let refused = provider_state(&consumer(), Some(&replaced), Some(&provider), "node-1").expect_err("refused");
        assert!(refused.to_string().contains("was replaced or deleted"), "{refused}");
        assert!(provider_state(&consumer(), None, Some(&provider), "node-1").is_err());
    }
}
