//! Who may read a StoppableContainer's persistent layer through the layer volume, and where that
//! layer is. Pure, like the rest of [`super`].
//!
//! Any pod of the SC's own namespace may read it (`kubectl sc diff` creates such a pod with the
//! user's own rights; a user who may create pods there could as well start the SC and look). The
//! pod's labels, annotations and owner references are its author's and prove nothing, so they are
//! not looked at; what is: the namespace kubelet reports for the pod, the SC of that name in that
//! namespace, and what the operator recorded where tenants cannot write: the SC's status (its data
//! node, its claim) and its instance (the claim, while it exists).

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::ResourceExt;
use sc_api::storage::ClaimRecord;
use sc_api::{StoppableContainer, StoppableContainerInstance};

use super::claim::{BoundClaim, ClaimUser, bound_claim, check_claim_volumes};
use super::{Refusal, is_own_instance, live_sc};
use crate::layout::ScKey;
use crate::validate::PodRef;

/// A pod that may read a StoppableContainer's layer, and where the layer is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerSource {
    pub sc: ScKey,
    pub data: LayerData,
}

/// Where a StoppableContainer's persistent layer is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LayerData {
    /// On this node's disk: the SC's recorded data node is this node.
    Node,
    /// On the SC's claim (`spec.storage`), checked bound, which the reading pod mounts.
    Claim(BoundClaim),
}

/// What the API holds for a layer read: the StoppableContainer of the requested name in the
/// pod's namespace, its instance, the claim named as [`recorded_claim`] says, and the reading pod
/// itself (fetched only when there is a claim, whose mount by the pod its volumes must explain).
/// `None`: there is none (or it was not fetched).
#[derive(Clone, Copy, Debug, Default)]
pub struct LayerFacts<'a> {
    pub sc: Option<&'a StoppableContainer>,
    pub instance: Option<&'a StoppableContainerInstance>,
    pub claim: Option<&'a PersistentVolumeClaim>,
    pub reader_pod: Option<&'a Pod>,
}

/// The claim the operator recorded for `sc`: in its instance's spec (the instance must be the
/// SC's own), or, for a stopped SC whose instance went, in the SC's status; a record with the
/// claim's UID wins over one without (the operator's `recorded_claim` reads them in this order).
/// `None`: the SC keeps its layer on a node.
pub fn recorded_claim<'a>(sc: &'a StoppableContainer, instance: Option<&'a StoppableContainerInstance>) -> Option<&'a ClaimRecord> {
    let sc_uid = sc.uid().unwrap_or_default();
    let instance = instance.filter(|instance| is_own_instance(instance, &sc_uid));
    let from_instance = instance.and_then(|instance| instance.spec.storage.as_ref()).map(|storage| &storage.claim);
    let from_status = sc.status.as_ref().and_then(|status| status.storage.as_ref()).map(|storage| &storage.claim);
    let with_uid = |record: &&ClaimRecord| record.claim_uid.is_some();
    from_instance.filter(with_uid).or(from_status.filter(with_uid)).or(from_instance).or(from_status)
}

/// Checks that `reader` (as kubelet reported it) may read the layer of the StoppableContainer
/// `sc_name` of its own namespace, and says where the layer is for a publish on `this_node`:
/// a node-local layer only on its recorded data node (else the refusal names that node, where the
/// pod is to run), a claim's only through the pod's own mount of the claim.
pub fn authorize_layer_reader(reader: &PodRef, sc_name: &str, facts: LayerFacts<'_>, this_node: &str) -> Result<LayerSource, Refusal> {
    let namespace = &reader.namespace;
    let denied = |why: String| {
        Refusal::Denied(format!(
            "pod {namespace}/{} (UID {}) may not read the layer of StoppableContainer {namespace}/{sc_name}: {why}",
            reader.name, reader.uid
        ))
    };
    let (sc_object, sc) = live_sc(namespace, sc_name, facts.sc, &denied)?;
    if sc.uid.is_empty() {
        return Err(denied("the StoppableContainer has no UID, so its data cannot be told apart from an earlier one's".into()));
    }
    if let Some(record) = recorded_claim(sc_object, facts.instance) {
        let claim = bound_claim(&sc, record, facts.claim)?;
        let Some(pod) = facts.reader_pod else {
            return Err(Refusal::NotNow(format!("pod {namespace}/{} is gone while its volume was being published", reader.name)));
        };
        check_claim_volumes(pod, &reader.uid, &claim, ClaimUser::LayerReader)?;
        return Ok(LayerSource { sc, data: LayerData::Claim(claim) });
    }
    let data_node = sc_object.status.as_ref().and_then(|status| status.data_node_name.as_deref()).filter(|node| !node.is_empty());
    match data_node {
        Some(node) if node == this_node => Ok(LayerSource { sc, data: LayerData::Node }),
        Some(node) => Err(Refusal::NotNow(format!(
            "the layer of StoppableContainer {sc} is on node {node:?}, not on this node {this_node:?}: run the pod on node {node} (spec.nodeName: {node})"
        ))),
        None => Err(Refusal::NotNow(format!(
            "StoppableContainer {sc} has no layer yet: it has never been started (its status names no data node); start it once, then read its layer"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{
        PersistentVolumeClaimSpec, PersistentVolumeClaimStatus, PersistentVolumeClaimVolumeSource, PodSpec, Volume,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
    use k8s_openapi::jiff::Timestamp;
    use sc_api::storage::{InstanceStorage, StorageStatus};
    use sc_api::{StoppableContainerInstanceSpec, StoppableContainerSpec, StoppableContainerStatus};

    use super::*;

    const SC_UID: &str = "11111111-1111-4111-8111-111111111111";
    const READER_UID: &str = "33333333-3333-4333-8333-333333333333";
    const CLAIM_UID: &str = "77777777-7777-4777-8777-777777777777";

    fn reader() -> PodRef {
        PodRef { namespace: "team-a".into(), name: "dev-diff-x7k2p".into(), uid: READER_UID.into() }
    }

    fn sc_on(data_node: Option<&str>) -> StoppableContainer {
        let mut sc = StoppableContainer::new("dev", StoppableContainerSpec::default());
        sc.metadata.namespace = Some("team-a".into());
        sc.metadata.uid = Some(SC_UID.into());
        sc.status = Some(StoppableContainerStatus { data_node_name: data_node.map(Into::into), ..StoppableContainerStatus::default() });
        sc
    }

    fn key() -> ScKey {
        ScKey { namespace: "team-a".into(), name: "dev".into(), uid: SC_UID.into() }
    }

    fn record(uid: Option<&str>) -> ClaimRecord {
        ClaimRecord { claim_name: "dev-rootfs".into(), claim_uid: uid.map(str::to_owned) }
    }

    fn instance_with_claim(owner: &str) -> StoppableContainerInstance {
        StoppableContainerInstance {
            metadata: ObjectMeta {
                name: Some("dev".into()),
                owner_references: Some(vec![OwnerReference { uid: owner.into(), controller: Some(true), ..OwnerReference::default() }]),
                ..ObjectMeta::default()
            },
            spec: StoppableContainerInstanceSpec {
                storage: Some(InstanceStorage { claim: record(Some(CLAIM_UID)), ..InstanceStorage::default() }),
                ..StoppableContainerInstanceSpec::default()
            },
            status: None,
        }
    }

    fn bound_claim_object() -> PersistentVolumeClaim {
        PersistentVolumeClaim {
            metadata: ObjectMeta { name: Some("dev-rootfs".into()), uid: Some(CLAIM_UID.into()), ..ObjectMeta::default() },
            spec: Some(PersistentVolumeClaimSpec { volume_name: Some("pv-17".into()), ..PersistentVolumeClaimSpec::default() }),
            status: Some(PersistentVolumeClaimStatus { phase: Some("Bound".into()), ..PersistentVolumeClaimStatus::default() }),
        }
    }

    fn reader_pod(claim_name: Option<&str>) -> Pod {
        let volumes = claim_name.map(|claim_name| Volume {
            name: "sc-claim".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource { claim_name: claim_name.into(), read_only: Some(true) }),
            ..Volume::default()
        });
        Pod {
            metadata: ObjectMeta { name: Some("dev-diff-x7k2p".into()), uid: Some(READER_UID.into()), ..ObjectMeta::default() },
            spec: Some(PodSpec { volumes: Some(volumes.into_iter().collect()), ..PodSpec::default() }),
            status: None,
        }
    }

    fn bound() -> BoundClaim {
        BoundClaim { claim_name: "dev-rootfs".into(), claim_uid: CLAIM_UID.into(), volume_name: "pv-17".into() }
    }

    fn refusal(result: Result<LayerSource, Refusal>) -> Refusal {
        result.expect_err("must be refused")
    }

    #[test]
    fn any_pod_of_the_namespace_reads_a_node_local_layer_on_its_data_node() {
        let sc = sc_on(Some("node-1"));
        let facts = LayerFacts { sc: Some(&sc), ..LayerFacts::default() };
        assert_eq!(authorize_layer_reader(&reader(), "dev", facts, "node-1"), Ok(LayerSource { sc: key(), data: LayerData::Node }));
    }

    #[test]
    fn a_pod_in_another_namespace_naming_the_sc_finds_nothing() {
        // The cluster view looks in the pod's own namespace, team-b, where there is no `dev`.
        let thief = PodRef { namespace: "team-b".into(), ..reader() };
        let Refusal::Denied(message) = refusal(authorize_layer_reader(&thief, "dev", LayerFacts::default(), "node-1")) else {
            panic!("denied")
        };
        assert_eq!(
            message,
            format!(
                "pod team-b/dev-diff-x7k2p (UID {READER_UID}) may not read the layer of StoppableContainer team-b/dev: no such StoppableContainer in the pod's namespace"
            )
        );
    }

    #[test]
    fn a_node_local_layer_elsewhere_says_which_node_to_run_on() {
        let sc = sc_on(Some("node-2"));
        let Refusal::NotNow(message) =
            refusal(authorize_layer_reader(&reader(), "dev", LayerFacts { sc: Some(&sc), ..LayerFacts::default() }, "node-1"))
        else {
            panic!("a precondition")
        };
        assert_eq!(
            message,
            format!(
                "the layer of StoppableContainer team-a/dev (uid {SC_UID}) is on node \"node-2\", not on this node \"node-1\": run the pod on node node-2 (spec.nodeName: node-2)"
            )
        );
    }

    #[test]
    fn an_sc_never_started_or_being_deleted_has_no_layer_to_read() {
        let never = sc_on(None);
        let message = refusal(authorize_layer_reader(&reader(), "dev", LayerFacts { sc: Some(&never), ..LayerFacts::default() }, "node-1"));
        assert!(
            message.to_string().ends_with(
                "has no layer yet: it has never been started (its status names no data node); start it once, then read its layer"
            ),
            "{message}"
        );
        let mut deleting = sc_on(Some("node-1"));
        deleting.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
        assert_eq!(
            authorize_layer_reader(&reader(), "dev", LayerFacts { sc: Some(&deleting), ..LayerFacts::default() }, "node-1"),
            Err(Refusal::NotNow("StoppableContainer team-a/dev is being deleted".into()))
        );
    }

    #[test]
    fn a_claim_layer_is_read_through_the_pods_own_mount_of_the_recorded_claim() {
        let (sc, instance, claim) = (sc_on(None), instance_with_claim(SC_UID), bound_claim_object());
        let pod = reader_pod(Some("dev-rootfs"));
        let facts = LayerFacts { sc: Some(&sc), instance: Some(&instance), claim: Some(&claim), reader_pod: Some(&pod) };
        // Wherever the pod runs: the claim's node is kubelet's business (it attaches it).
        assert_eq!(
            authorize_layer_reader(&reader(), "dev", facts, "node-9"),
            Ok(LayerSource { sc: key(), data: LayerData::Claim(bound()) })
        );
        // A pod that does not mount the claim gets nothing.
        let without = reader_pod(None);
        let message = refusal(authorize_layer_reader(&reader(), "dev", LayerFacts { reader_pod: Some(&without), ..facts }, "node-9"));
        assert!(message.to_string().starts_with("pod dev-diff-x7k2p does not mount claim dev-rootfs"), "{message}");
        // One that mounts another claim of the tenant's, neither.
        let other = reader_pod(Some("my-own"));
        assert!(matches!(
            authorize_layer_reader(&reader(), "dev", LayerFacts { reader_pod: Some(&other), ..facts }, "node-9"),
            Err(Refusal::Denied(_))
        ));
        // A claim the tenant recreated under the recorded name is never read.
        let mut recreated = bound_claim_object();
        recreated.metadata.uid = Some("88888888-8888-4888-8888-888888888888".into());
        let message = refusal(authorize_layer_reader(&reader(), "dev", LayerFacts { claim: Some(&recreated), ..facts }, "node-9"));
        assert!(message.to_string().contains("it was deleted and recreated"), "{message}");
    }

    #[test]
    fn the_claim_record_of_a_stopped_sc_is_read_from_its_status_and_a_foreign_instance_is_ignored() {
        let mut sc = sc_on(Some("node-1"));
        sc.status.as_mut().expect("status").storage = Some(StorageStatus { claim: record(Some(CLAIM_UID)), ..StorageStatus::default() });
        assert_eq!(recorded_claim(&sc, None), Some(&record(Some(CLAIM_UID))));
        // A leftover instance of an earlier SC of the same name does not speak for this one.
        let leftover = instance_with_claim("99999999-9999-4999-8999-999999999999");
        assert_eq!(recorded_claim(&sc_on(None), Some(&leftover)), None);
        assert_eq!(recorded_claim(&sc_on(None), Some(&instance_with_claim(SC_UID))), Some(&record(Some(CLAIM_UID))));
        let (claim, pod) = (bound_claim_object(), reader_pod(Some("dev-rootfs")));
        let facts = LayerFacts { sc: Some(&sc), claim: Some(&claim), reader_pod: Some(&pod), ..LayerFacts::default() };
        assert_eq!(
            authorize_layer_reader(&reader(), "dev", facts, "node-1"),
            Ok(LayerSource { sc: key(), data: LayerData::Claim(bound()) })
        );
        // Without the pod (deleted meanwhile), nothing is published.
        assert!(matches!(
            authorize_layer_reader(&reader(), "dev", LayerFacts { reader_pod: None, ..facts }, "node-1"),
            Err(Refusal::NotNow(message)) if message.ends_with("is gone while its volume was being published")
        ));
    }
}
