//! The claim `<name>-rootfs`: what the operator creates, and whether a claim found by that name
//! is the one it created.
//!
//! A claim's name, labels, annotations and owner references are written by whoever creates it,
//! and a tenant may create claims in its namespace (or keep the retained claim of an earlier SC
//! of the same name): none of them proves anything. The operator records the UID of the claim it
//! created, from its own create response, in the instance (`spec.storage.claimUID`) and the SC's
//! status, and a claim is this SC's exactly when its UID is the recorded one.

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, PersistentVolumeClaimSpec, VolumeResourceRequirements};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::ResourceExt;
use sc_api::StoppableContainer;
use sc_api::storage::{ClaimRecord, ClaimRetention, ResolvedStorage, StorageStatus, claim_name};

use sc_api::lifecycle::reason;

use crate::meta::{controller_reference, sc_labels};

/// Annotation on the claim: the UID of the StoppableContainer it was created for. Read only by
/// the operator, and only to close one gap (see [`judge`]): it proves nothing by itself.
pub const CLAIM_SC_UID_ANNOTATION: &str = "stoppablecontainer.xtlsoft.top/stoppablecontainer-uid";

/// The claim a first start of `sc` creates: `<name>-rootfs` in its namespace, of the size,
/// access modes and class asked for (no class: the cluster's default), a filesystem. With
/// `whenDeleted: Delete` it is owned by the SC, so the garbage collector deletes it after the SC
/// should the operator not (it deletes it itself, see the teardown); with `Retain` nothing owns it.
pub fn build_claim(sc: &StoppableContainer, storage: &ResolvedStorage) -> PersistentVolumeClaim {
    let sc_name = sc.name_any();
    let owner_references = match storage.when_deleted {
        ClaimRetention::Delete => Some(vec![controller_reference(sc)]),
        ClaimRetention::Retain => None,
    };
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(claim_name(&sc_name)),
            namespace: sc.namespace(),
            labels: Some(sc_labels(&sc_name)),
            annotations: Some([(CLAIM_SC_UID_ANNOTATION.to_owned(), sc.uid().unwrap_or_default())].into()),
            owner_references,
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(storage.access_modes.clone()),
            resources: Some(VolumeResourceRequirements {
                requests: Some([("storage".to_owned(), storage.size.clone())].into()),
                limits: None,
            }),
            storage_class_name: storage.storage_class_name.clone(),
            volume_mode: Some("Filesystem".to_owned()),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    }
}

/// A claim looked for by the claim's name, as judged.
#[derive(Clone, Copy, Debug)]
pub enum ClaimFound<'a> {
    /// No claim by that name, and none recorded: the first start creates it.
    Absent,
    /// The claim the operator created: its UID is the recorded one.
    Ours(&'a PersistentVolumeClaim),
    /// No UID recorded yet, and this claim is one the operator created for this very SC and
    /// crashed before recording (see [`judge`]): its UID is recorded now.
    Unrecorded(&'a PersistentVolumeClaim),
    /// The recorded claim is gone (deleted by someone): so is the data. Never replaced by an
    /// empty one in silence.
    Lost { name: &'a str, uid: &'a str },
    /// A claim by that name that is not this SC's: never used, changed or deleted.
    Foreign(&'a PersistentVolumeClaim),
}

impl<'a> ClaimFound<'a> {
    /// The operator's claim, if that is what was found.
    pub fn ours(self) -> Option<&'a PersistentVolumeClaim> {
        match self {
            ClaimFound::Ours(claim) => Some(claim),
            ClaimFound::Absent | ClaimFound::Unrecorded(_) | ClaimFound::Lost { .. } | ClaimFound::Foreign(_) => None,
        }
    }

    /// Why this claim cannot hold `sc`'s root filesystem, in words a user can act on (None: it
    /// can, or will once created).
    pub fn problem(self, sc: &StoppableContainer) -> Option<String> {
        match self {
            ClaimFound::Absent | ClaimFound::Ours(_) | ClaimFound::Unrecorded(_) => None,
            ClaimFound::Lost { name, uid } => Some(format!(
                "PersistentVolumeClaim {name:?} (uid {uid}), which held the root filesystem, no longer exists: the data is gone with \
                 it. Delete and recreate this StoppableContainer to start over"
            )),
            ClaimFound::Foreign(claim) => {
                let created_for = claim.annotations().get(CLAIM_SC_UID_ANNOTATION).filter(|uid| Some(uid.as_str()) != sc.uid().as_deref());
                let whose = match created_for {
                    Some(uid) => format!(" (it was created for an earlier StoppableContainer of this name, uid {uid}, and retained)"),
                    None => String::new(),
                };
                Some(format!(
                    "PersistentVolumeClaim {:?} exists and is not the claim the operator created for this StoppableContainer{whose}; \
                     it is never used. Delete or rename that claim, or delete this StoppableContainer and create it under another name",
                    claim.name_any()
                ))
            }
        }
    }
}

/// Judges the claim found by the claim's name against the claim the operator `recorded` for `sc`.
///
/// Only the recorded UID makes a claim ours. The one exception is the window between the
/// create response and the record (an operator that crashed there, or an apply that failed):
/// with no UID recorded, a claim that carries this SC's UID in [`CLAIM_SC_UID_ANNOTATION`] and
/// was created no earlier than this SC is taken as the operator's own. A retained claim of an
/// earlier SC of the same name is older than this SC and carries that SC's UID, so it is never
/// taken; a tenant could forge such a claim only for this SC, in its own namespace, of its own
/// volume, which gives it nothing it does not have.
pub fn judge<'a>(sc: &StoppableContainer, recorded: Option<&'a ClaimRecord>, claim: Option<&'a PersistentVolumeClaim>) -> ClaimFound<'a> {
    let recorded_uid = recorded.and_then(|record| record.claim_uid.as_deref());
    match (claim, recorded_uid) {
        (None, None) => ClaimFound::Absent,
        (None, Some(uid)) => ClaimFound::Lost { name: recorded.map(|record| record.claim_name.as_str()).unwrap_or_default(), uid },
        (Some(claim), Some(uid)) if claim.uid().as_deref() == Some(uid) => ClaimFound::Ours(claim),
        (Some(claim), Some(_)) => ClaimFound::Foreign(claim),
        (Some(claim), None) => {
            let created_for_us = sc.uid().is_some_and(|uid| claim.annotations().get(CLAIM_SC_UID_ANNOTATION) == Some(&uid));
            let created_after_us = match (&claim.metadata.creation_timestamp, &sc.metadata.creation_timestamp) {
                (Some(claim_time), Some(sc_time)) => claim_time.0 >= sc_time.0,
                _ => false,
            };
            if created_for_us && created_after_us { ClaimFound::Unrecorded(claim) } else { ClaimFound::Foreign(claim) }
        }
    }
}

/// The claim's owner references as `when_deleted` wants them: the SC's reference with
/// `Delete`, none of the SC's with `Retain` (references of others are kept). None when they
/// already are so.
pub fn wanted_owner_references(
    claim: &PersistentVolumeClaim,
    sc: &StoppableContainer,
    when_deleted: ClaimRetention,
) -> Option<Vec<OwnerReference>> {
    let sc_uid = sc.uid().unwrap_or_default();
    let current = claim.metadata.owner_references.clone().unwrap_or_default();
    let mut wanted: Vec<OwnerReference> = current.iter().filter(|reference| reference.uid != sc_uid).cloned().collect();
    if when_deleted == ClaimRetention::Delete {
        wanted.push(controller_reference(sc));
    }
    (wanted != current).then_some(wanted)
}

/// The claim as the SC's status shows it: the record, and what Kubernetes reports of our claim
/// (its phase, the bound volume's capacity, its class).
pub fn storage_status(record: &ClaimRecord, claim: Option<&PersistentVolumeClaim>) -> StorageStatus {
    let status = claim.and_then(|claim| claim.status.as_ref());
    StorageStatus {
        claim: record.clone(),
        phase: status.and_then(|status| status.phase.clone()),
        capacity: status.and_then(|status| status.capacity.as_ref()).and_then(|capacity| capacity.get("storage").cloned()),
        storage_class_name: claim.and_then(|claim| claim.spec.as_ref()).and_then(|spec| spec.storage_class_name.clone()),
    }
}

/// Whether the claim is being deleted.
pub fn is_terminating(claim: &PersistentVolumeClaim) -> bool {
    claim.metadata.deletion_timestamp.is_some()
}

/// The `Storage` condition of an SC on a claim, from the claim as judged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimCondition {
    /// True only when the claim is ours and bound.
    pub bound: bool,
    /// The reason (`sc_api::lifecycle::reason`).
    pub reason: &'static str,
    /// What it means, and what to do.
    pub message: String,
    /// The claim can never hold this SC's root filesystem: a start makes nothing, and the phase
    /// is Failed with [`ClaimCondition::message`].
    pub blocking: bool,
}

/// The `Storage` condition for `found`.
pub fn condition(sc: &StoppableContainer, found: ClaimFound<'_>) -> ClaimCondition {
    let name = claim_name(&sc.name_any());
    let fine = |bound, reason, message: String| ClaimCondition { bound, reason, message, blocking: false };
    match found {
        ClaimFound::Absent => fine(false, reason::CLAIM_NOT_CREATED, format!("the claim {name:?} is created at the first start")),
        ClaimFound::Ours(claim) | ClaimFound::Unrecorded(claim) if is_terminating(claim) => ClaimCondition {
            bound: false,
            reason: reason::CLAIM_LOST,
            message: format!(
                "the claim {name:?} is being deleted (not by the operator): once no pod uses it, it and the root filesystem are \
                 gone, and no new pod is made on it. Delete and recreate this StoppableContainer to start over"
            ),
            // A running workload keeps its mount (the claim stays while a pod uses it).
            blocking: false,
        },
        ClaimFound::Ours(claim) | ClaimFound::Unrecorded(claim) => {
            let status = claim.status.as_ref();
            match status.and_then(|status| status.phase.as_deref()) {
                Some("Bound") => {
                    let volume = claim.spec.as_ref().and_then(|spec| spec.volume_name.clone()).unwrap_or_default();
                    let capacity = status.and_then(|status| status.capacity.as_ref()).and_then(|capacity| capacity.get("storage"));
                    let capacity = capacity.map(|quantity| format!(" ({})", quantity.0)).unwrap_or_default();
                    fine(
                        true,
                        reason::CLAIM_BOUND,
                        format!("the root filesystem is on the claim {name:?}, bound to volume {volume:?}{capacity}"),
                    )
                }
                Some("Lost") => ClaimCondition {
                    bound: false,
                    reason: reason::CLAIM_LOST,
                    message: format!(
                        "Kubernetes reports the claim {name:?} Lost: its PersistentVolume is gone, and the root filesystem with it. \
                         Restore the volume, or delete and recreate this StoppableContainer to start over"
                    ),
                    blocking: true,
                },
                _ => fine(
                    false,
                    reason::CLAIM_PENDING,
                    format!(
                        "the claim {name:?} waits for a volume (a class that binds on first use binds it when the consumer pod is \
                         scheduled; see `kubectl describe pvc {name}`)"
                    ),
                ),
            }
        }
        ClaimFound::Lost { .. } => {
            ClaimCondition { bound: false, reason: reason::CLAIM_LOST, message: found.problem(sc).unwrap_or_default(), blocking: true }
        }
        ClaimFound::Foreign(_) => {
            ClaimCondition { bound: false, reason: reason::CLAIM_NOT_OWNED, message: found.problem(sc).unwrap_or_default(), blocking: true }
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;
    use sc_api::StoppableContainerSpec;

    use super::*;

    const SC_UID: &str = "sc-uid";

    fn at(second: i64) -> Option<Time> {
        Some(Time(Timestamp::from_second(second).expect("a time")))
    }

    fn sc() -> StoppableContainer {
        let mut sc = StoppableContainer::new("dev", StoppableContainerSpec::default());
        sc.metadata.namespace = Some("team-a".into());
        sc.metadata.uid = Some(SC_UID.into());
        sc.metadata.creation_timestamp = at(100);
        sc
    }

    fn claim(uid: &str, annotation: Option<&str>, created: i64) -> PersistentVolumeClaim {
        let mut claim = PersistentVolumeClaim::default();
        claim.metadata.name = Some("dev-rootfs".into());
        claim.metadata.uid = Some(uid.into());
        claim.metadata.creation_timestamp = at(created);
        claim.metadata.annotations = annotation.map(|sc_uid| [(CLAIM_SC_UID_ANNOTATION.to_owned(), sc_uid.to_owned())].into());
        claim
    }

    fn record(uid: Option<&str>) -> ClaimRecord {
        ClaimRecord { claim_name: "dev-rootfs".into(), claim_uid: uid.map(Into::into) }
    }

    #[test]
    fn only_the_recorded_uid_makes_a_claim_ours() {
        let sc = sc();
        let ours = claim("c1", Some(SC_UID), 200);
        assert!(matches!(judge(&sc, Some(&record(Some("c1"))), Some(&ours)), ClaimFound::Ours(_)));
        assert!(matches!(judge(&sc, Some(&record(Some("c0"))), Some(&ours)), ClaimFound::Foreign(_)), "another UID, whatever it carries");
        assert!(matches!(judge(&sc, Some(&record(Some("c1"))), None), ClaimFound::Lost { uid: "c1", .. }));
        assert!(matches!(judge(&sc, None, None), ClaimFound::Absent));
    }

    #[test]
    fn with_no_uid_recorded_only_a_newer_claim_made_for_this_sc_is_taken() {
        let sc = sc();
        assert!(matches!(judge(&sc, None, Some(&claim("c1", Some(SC_UID), 100))), ClaimFound::Unrecorded(_)), "the same second");
        assert!(matches!(judge(&sc, None, Some(&claim("c1", Some(SC_UID), 99))), ClaimFound::Foreign(_)), "older than the SC");
        assert!(matches!(judge(&sc, None, Some(&claim("c1", Some("earlier-sc"), 200))), ClaimFound::Foreign(_)), "another SC's");
        assert!(matches!(judge(&sc, None, Some(&claim("c1", None, 200))), ClaimFound::Foreign(_)), "no annotation");
        let mut undated = claim("c1", Some(SC_UID), 200);
        undated.metadata.creation_timestamp = None;
        assert!(matches!(judge(&sc, None, Some(&undated)), ClaimFound::Foreign(_)), "no proof of its age");
    }

    #[test]
    fn owner_references_follow_when_deleted_and_keep_the_others() {
        let sc = sc();
        let mut claim = claim("c1", Some(SC_UID), 200);
        let other = OwnerReference { uid: "other".into(), name: "backup".into(), kind: "Backup".into(), ..OwnerReference::default() };
        claim.metadata.owner_references = Some(vec![other.clone(), controller_reference(&sc)]);
        assert_eq!(wanted_owner_references(&claim, &sc, ClaimRetention::Delete), None, "already so");
        assert_eq!(wanted_owner_references(&claim, &sc, ClaimRetention::Retain), Some(vec![other.clone()]));
        claim.metadata.owner_references = Some(vec![other.clone()]);
        assert_eq!(wanted_owner_references(&claim, &sc, ClaimRetention::Delete), Some(vec![other, controller_reference(&sc)]));
    }
}
