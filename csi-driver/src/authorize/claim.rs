//! The claim of a StoppableContainer with `spec.storage`: accepted only as the operator recorded
//! it (its UID in the instance's spec) and bound to a volume. Pure, like the rest of
//! [`super`].

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::ResourceExt;
use sc_api::storage::ClaimRecord;
use serde::{Deserialize, Serialize};

use super::Refusal;
use crate::layout::ScKey;

/// The claim of a StoppableContainer with `spec.storage`: the one the operator created (its UID
/// recorded in the instance), bound to a PersistentVolume.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BoundClaim {
    pub claim_name: String,
    #[serde(rename = "claimUID")]
    pub claim_uid: String,
    /// The PersistentVolume the claim is bound to: kubelet names the pod's volume directory of
    /// the claim after it.
    pub volume_name: String,
}

/// Checks that `claim` (the live claim named as `recorded` says) is the claim the operator
/// created for `sc`, bound to a volume and not going away.
pub fn bound_claim(sc: &ScKey, recorded: &ClaimRecord, claim: Option<&PersistentVolumeClaim>) -> Result<BoundClaim, Refusal> {
    let name = &recorded.claim_name;
    let Some(recorded_uid) = recorded.claim_uid.as_deref() else {
        return Err(Refusal::NotNow(format!(
            "the operator has not recorded the UID of claim {}/{name} of StoppableContainer {sc} yet; kubelet retries once it has (see the StoppableContainer's status)",
            sc.namespace
        )));
    };
    let Some(claim) = claim else {
        return Err(Refusal::NotNow(format!(
            "claim {}/{name} of StoppableContainer {sc} does not exist; the operator recreates it only while the StoppableContainer has none (see its status)",
            sc.namespace
        )));
    };
    let uid = claim.uid().unwrap_or_default();
    if uid != recorded_uid {
        return Err(Refusal::Denied(format!(
            "claim {}/{name} has UID {uid}, but the operator created the claim of StoppableContainer {sc} with UID {recorded_uid}: it was deleted and recreated; a claim the operator did not create is never used. Delete this claim and the StoppableContainer, or restore the original claim",
            sc.namespace
        )));
    }
    if claim.metadata.deletion_timestamp.is_some() {
        return Err(Refusal::NotNow(format!(
            "claim {}/{name} of StoppableContainer {sc} is being deleted; its data goes with it, so the rootfs is not published on it",
            sc.namespace
        )));
    }
    let phase = claim.status.as_ref().and_then(|status| status.phase.as_deref()).unwrap_or("Pending");
    let volume_name = claim.spec.as_ref().and_then(|spec| spec.volume_name.as_deref()).filter(|volume| !volume.is_empty());
    match (phase, volume_name) {
        ("Bound", Some(volume)) => Ok(BoundClaim { claim_name: name.clone(), claim_uid: uid, volume_name: volume.to_owned() }),
        ("Lost", _) => Err(Refusal::NotNow(format!(
            "claim {}/{name} of StoppableContainer {sc} is Lost: its PersistentVolume is gone; restore the volume (see `kubectl describe pvc {name}`)",
            sc.namespace
        ))),
        (phase, _) => Err(Refusal::NotNow(format!(
            "claim {}/{name} of StoppableContainer {sc} is {phase}, not bound to a volume yet; kubelet retries (see `kubectl describe pvc {name}` for its StorageClass's provisioning)",
            sc.namespace
        ))),
    }
}

/// The pod that mounts a StoppableContainer's claim, which words the refusals of
/// [`check_claim_volumes`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClaimUser {
    /// The consumer pod, created by the operator with the claim among its volumes.
    Consumer,
    /// A pod of the SC's namespace reading its layer (the layer volume): its author lists the
    /// claim among its volumes (`kubectl sc diff` does).
    LayerReader,
}

/// Checks the pod's volumes as the API shows them (kubelet mounts what the spec says, and a pod's
/// volumes cannot change): exactly the claim's volume may be named like the claim's
/// PersistentVolume. Kubelet names an inline volume's directory after the volume, a claim's after
/// its PV, so a volume of the pod author's named like the PV would put a mount of the author's
/// choosing where the plugin looks for the claim. `pod` must be the pod kubelet asked for
/// (`pod_uid`).
pub fn check_claim_volumes(pod: &Pod, pod_uid: &str, claim: &BoundClaim, user: ClaimUser) -> Result<(), Refusal> {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let who = match user {
        ClaimUser::Consumer => "consumer pod",
        ClaimUser::LayerReader => "pod",
    };
    if pod.uid().as_deref() != Some(pod_uid) {
        return Err(Refusal::NotNow(format!("{who} {name} (UID {pod_uid}) was replaced while its volume was being published")));
    }
    let volumes = pod.spec.as_ref().map(|spec| spec.volumes.as_deref().unwrap_or_default()).unwrap_or_default();
    let claims_volume = |volume: &k8s_openapi::api::core::v1::Volume| {
        volume.persistent_volume_claim.as_ref().is_some_and(|source| source.claim_name == claim.claim_name)
    };
    if let Some(clash) = volumes.iter().find(|volume| volume.name == claim.volume_name && !claims_volume(volume)) {
        let rename = match user {
            ClaimUser::Consumer => "rename that volume in the StoppableContainer's template",
            ClaimUser::LayerReader => "rename that volume",
        };
        return Err(Refusal::Denied(format!(
            "{who} {name} has a volume {:?} named like the claim's PersistentVolume, which kubelet would mount where the claim's volume goes; {rename}",
            clash.name
        )));
    }
    if !volumes.iter().any(claims_volume) {
        let advice = match user {
            ClaimUser::Consumer => "the operator that created the pod does not know spec.storage (upgrade it)",
            ClaimUser::LayerReader => {
                "the layer of a StoppableContainer with spec.storage is on its claim: add the claim to the pod's volumes (persistentVolumeClaim, readOnly: true) and mount it in a container"
            }
        };
        return Err(Refusal::Denied(format!(
            "{who} {name} does not mount claim {}, so kubelet never mounts it for the pod; {advice}",
            claim.claim_name
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{PersistentVolumeClaimSpec, PersistentVolumeClaimStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
    use k8s_openapi::jiff::Timestamp;

    use super::*;

    const CLAIM_UID: &str = "77777777-7777-4777-8777-777777777777";
    const RECREATED_UID: &str = "88888888-8888-4888-8888-888888888888";

    fn sc() -> ScKey {
        ScKey { namespace: "team-a".into(), name: "dev".into(), uid: "11111111-1111-4111-8111-111111111111".into() }
    }

    fn recorded(uid: Option<&str>) -> ClaimRecord {
        ClaimRecord { claim_name: "dev-rootfs".into(), claim_uid: uid.map(str::to_owned) }
    }

    fn claim(uid: &str, phase: &str, volume: Option<&str>) -> PersistentVolumeClaim {
        PersistentVolumeClaim {
            metadata: ObjectMeta { name: Some("dev-rootfs".into()), uid: Some(uid.into()), ..ObjectMeta::default() },
            spec: Some(PersistentVolumeClaimSpec { volume_name: volume.map(str::to_owned), ..PersistentVolumeClaimSpec::default() }),
            status: Some(PersistentVolumeClaimStatus { phase: Some(phase.into()), ..PersistentVolumeClaimStatus::default() }),
        }
    }

    fn refusal(result: Result<BoundClaim, Refusal>) -> Refusal {
        result.expect_err("must be refused")
    }

    fn consumer_pod(volumes: Vec<k8s_openapi::api::core::v1::Volume>) -> Pod {
        Pod {
            metadata: ObjectMeta { name: Some("dev".into()), uid: Some("pod-uid".into()), ..ObjectMeta::default() },
            spec: Some(k8s_openapi::api::core::v1::PodSpec { volumes: Some(volumes), ..Default::default() }),
            status: None,
        }
    }

    fn claim_volume(name: &str, claim_name: &str) -> k8s_openapi::api::core::v1::Volume {
        k8s_openapi::api::core::v1::Volume {
            name: name.into(),
            persistent_volume_claim: Some(k8s_openapi::api::core::v1::PersistentVolumeClaimVolumeSource {
                claim_name: claim_name.into(),
                read_only: Some(true),
            }),
            ..Default::default()
        }
    }

    fn bound() -> BoundClaim {
        BoundClaim { claim_name: "dev-rootfs".into(), claim_uid: CLAIM_UID.into(), volume_name: "pv-17".into() }
    }

    #[test]
    fn the_consumer_pod_must_mount_the_claim_and_no_template_volume_may_take_the_pvs_name() {
        let good = consumer_pod(vec![claim_volume("sc-storage", "dev-rootfs")]);
        assert_eq!(check_claim_volumes(&good, "pod-uid", &bound(), ClaimUser::Consumer), Ok(()));
        // The tenant's template adds a memory emptyDir named like the PV (`pvc-<uid>` is visible
        // to it): kubelet would mount it at .../kubernetes.io~empty-dir/pv-17.
        let shadow = k8s_openapi::api::core::v1::Volume { name: "pv-17".into(), empty_dir: Some(Default::default()), ..Default::default() };
        let forged = consumer_pod(vec![claim_volume("sc-storage", "dev-rootfs"), shadow]);
        let Err(Refusal::Denied(message)) = check_claim_volumes(&forged, "pod-uid", &bound(), ClaimUser::Consumer) else {
            panic!("denied")
        };
        assert_eq!(
            message,
            "consumer pod dev has a volume \"pv-17\" named like the claim's PersistentVolume, which kubelet would mount where the claim's volume goes; rename that volume in the StoppableContainer's template"
        );
        // Another claim of the tenant's under the PV's name is no better.
        let other_claim = consumer_pod(vec![claim_volume("sc-storage", "dev-rootfs"), claim_volume("pv-17", "mine")]);
        assert!(check_claim_volumes(&other_claim, "pod-uid", &bound(), ClaimUser::Consumer).is_err());
        let without = consumer_pod(vec![]);
        let message = check_claim_volumes(&without, "pod-uid", &bound(), ClaimUser::Consumer).expect_err("refused").to_string();
        assert!(message.starts_with("consumer pod dev does not mount claim dev-rootfs, so kubelet never mounts it"), "{message}");
        let replaced = check_claim_volumes(&good, "another-uid", &bound(), ClaimUser::Consumer).expect_err("refused");
        assert!(matches!(replaced, Refusal::NotNow(_)), "{replaced:?}");
    }

    #[test]
    fn a_layer_reader_must_mount_the_claim_too_and_is_told_how() {
        let mut reader = consumer_pod(vec![claim_volume("sc-claim", "dev-rootfs")]);
        reader.metadata.name = Some("dev-diff-x7k2p".into());
        assert_eq!(check_claim_volumes(&reader, "pod-uid", &bound(), ClaimUser::LayerReader), Ok(()));
        let mut without = consumer_pod(vec![]);
        without.metadata.name = Some("dev-diff-x7k2p".into());
        assert_eq!(
            check_claim_volumes(&without, "pod-uid", &bound(), ClaimUser::LayerReader).expect_err("refused").to_string(),
            "pod dev-diff-x7k2p does not mount claim dev-rootfs, so kubelet never mounts it for the pod; the layer of a StoppableContainer with spec.storage is on its claim: add the claim to the pod's volumes (persistentVolumeClaim, readOnly: true) and mount it in a container"
        );
        // An emptyDir of the reader's named like the PV would be found where the claim goes.
        let shadow = k8s_openapi::api::core::v1::Volume { name: "pv-17".into(), empty_dir: Some(Default::default()), ..Default::default() };
        let mut forged = consumer_pod(vec![claim_volume("sc-claim", "dev-rootfs"), shadow]);
        forged.metadata.name = Some("dev-diff-x7k2p".into());
        assert_eq!(
            check_claim_volumes(&forged, "pod-uid", &bound(), ClaimUser::LayerReader).expect_err("refused").to_string(),
            "pod dev-diff-x7k2p has a volume \"pv-17\" named like the claim's PersistentVolume, which kubelet would mount where the claim's volume goes; rename that volume"
        );
    }

    #[test]
    fn the_recorded_claim_bound_to_a_volume_is_used_with_the_volume_name() {
        let bound = bound_claim(&sc(), &recorded(Some(CLAIM_UID)), Some(&claim(CLAIM_UID, "Bound", Some("pv-17"))));
        assert_eq!(bound, Ok(BoundClaim { claim_name: "dev-rootfs".into(), claim_uid: CLAIM_UID.into(), volume_name: "pv-17".into() }));
    }

    #[test]
    fn a_claim_the_tenant_recreated_under_the_same_name_is_denied() {
        // The tenant deleted the operator's claim and created its own, bound to a volume of its
        // choosing (a statically provisioned PV pointing at someone else's disk).
        let recreated = claim(RECREATED_UID, "Bound", Some("pv-someone-elses"));
        let Refusal::Denied(message) = refusal(bound_claim(&sc(), &recorded(Some(CLAIM_UID)), Some(&recreated))) else {
            panic!("a forged claim is denied, not retried")
        };
        assert_eq!(
            message,
            format!(
                "claim team-a/dev-rootfs has UID {RECREATED_UID}, but the operator created the claim of StoppableContainer team-a/dev (uid 11111111-1111-4111-8111-111111111111) with UID {CLAIM_UID}: it was deleted and recreated; a claim the operator did not create is never used. Delete this claim and the StoppableContainer, or restore the original claim"
            )
        );
    }

    #[test]
    fn without_a_recorded_uid_nothing_is_trusted_yet() {
        // Even a bound claim of that name: the operator's record is what makes it the SC's.
        let Refusal::NotNow(message) = refusal(bound_claim(&sc(), &recorded(None), Some(&claim(CLAIM_UID, "Bound", Some("pv-17"))))) else {
            panic!("retried once the operator records it")
        };
        assert!(message.starts_with("the operator has not recorded the UID of claim team-a/dev-rootfs"), "{message}");
        assert!(message.ends_with("kubelet retries once it has (see the StoppableContainer's status)"), "{message}");
    }

    #[test]
    fn a_missing_pending_lost_or_deleted_claim_is_not_published_on() {
        let message = |result| refusal(result).to_string();
        let missing = message(bound_claim(&sc(), &recorded(Some(CLAIM_UID)), None));
        assert!(
            missing.starts_with(
                "claim team-a/dev-rootfs of StoppableContainer team-a/dev (uid 11111111-1111-4111-8111-111111111111) does not exist"
            ),
            "{missing}"
        );
        assert!(
            missing.ends_with("does not exist; the operator recreates it only while the StoppableContainer has none (see its status)"),
            "{missing}"
        );
        let pending = message(bound_claim(&sc(), &recorded(Some(CLAIM_UID)), Some(&claim(CLAIM_UID, "Pending", None))));
        assert!(pending.ends_with("is Pending, not bound to a volume yet; kubelet retries (see `kubectl describe pvc dev-rootfs` for its StorageClass's provisioning)"), "{pending}");
        // Bound without a volume name is not usable: the volume's directory is named after it.
        let nameless = message(bound_claim(&sc(), &recorded(Some(CLAIM_UID)), Some(&claim(CLAIM_UID, "Bound", Some("")))));
        assert!(nameless.contains("is Bound, not bound to a volume yet"), "{nameless}");
        let lost = message(bound_claim(&sc(), &recorded(Some(CLAIM_UID)), Some(&claim(CLAIM_UID, "Lost", Some("pv-17")))));
        assert!(
            lost.ends_with("is Lost: its PersistentVolume is gone; restore the volume (see `kubectl describe pvc dev-rootfs`)"),
            "{lost}"
        );
        let mut deleting = claim(CLAIM_UID, "Bound", Some("pv-17"));
        deleting.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
        let deleting = message(bound_claim(&sc(), &recorded(Some(CLAIM_UID)), Some(&deleting)));
        assert!(deleting.ends_with("is being deleted; its data goes with it, so the rootfs is not published on it"), "{deleting}");
    }
}
