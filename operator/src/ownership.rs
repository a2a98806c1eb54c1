//! Which pods are the operator's. Pure.
//!
//! A pod's name, labels, annotations and owner references are written by whoever creates it, and
//! a tenant may create pods in its namespace: none of them proves anything. What a tenant cannot
//! write is the instance's status. So the operator records there the UID of every pod it creates,
//! taken from its own create response (`status.consumerPodUID`, `status.providerPodUID`), and a
//! pod is the operator's exactly when its UID is the recorded one. The node plugin applies the
//! same rule before it mounts anything.
//!
//! Metadata only decides what to do with a pod that is *not* ours: one that claims to be ours
//! (a controller reference to our instance, or our labels) is deleted and replaced, since it is
//! either a forgery or a pod the operator created and crashed before recording; one that does not
//! claim to be ours is somebody else's and is left alone.

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use sc_api::consts::{LABEL_INSTANCE, LABEL_MANAGED_BY, MANAGED_BY_VALUE, ROLE_CONSUMER, ROLE_PROVIDER};
use sc_api::{StoppableContainerInstance, StoppableContainerInstanceStatus};

use crate::status::Found;

/// The two pods of a StoppableContainer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The consumer pod, named like the StoppableContainer.
    Consumer,
    /// The pod whose root filesystem is the overlay's lower layer, `<name>-provider`.
    Provider,
}

impl Role {
    /// Value of the role label on the operator's pods.
    pub fn label_value(self) -> &'static str {
        match self {
            Role::Consumer => ROLE_CONSUMER,
            Role::Provider => ROLE_PROVIDER,
        }
    }

    /// How the pod is called in messages.
    pub fn describe(self) -> &'static str {
        match self {
            Role::Consumer => "consumer pod",
            Role::Provider => "provider pod",
        }
    }

    /// The UID the instance status records for this role's pod.
    pub fn recorded_uid(self, status: Option<&StoppableContainerInstanceStatus>) -> Option<&str> {
        let status = status?;
        match self {
            Role::Consumer => status.consumer_pod_uid.as_deref(),
            Role::Provider => status.provider_pod_uid.as_deref(),
        }
    }

    /// Sets this role's recorded UID (and the pod name that goes with it) in `status`.
    pub fn record(self, status: &mut StoppableContainerInstanceStatus, pod_name: Option<String>, uid: Option<String>) {
        let pod_name = pod_name.filter(|_| uid.is_some());
        match self {
            Role::Consumer => (status.consumer_pod_name, status.consumer_pod_uid) = (pod_name, uid),
            Role::Provider => (status.provider_pod_name, status.provider_pod_uid) = (pod_name, uid),
        }
    }
}

/// The UIDs of the operator's pods, as recorded in the instance status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecordedPods {
    /// `status.consumerPodUID`.
    pub consumer: Option<String>,
    /// `status.providerPodUID`.
    pub provider: Option<String>,
}

/// The UID to record for one pod after a reconcile step, from the previous record, the pod that
/// now holds the name (`live`, as read) and the pod the operator has just created (from the
/// create response). A created pod is recorded; a recorded UID is kept while a pod with that UID
/// holds the name (also while it terminates) and cleared once it is gone. A UID is never taken
/// from a pod that was found rather than created.
pub fn recorded_uid(previous: Option<&str>, live: Option<&Pod>, created: Option<&Pod>) -> Option<String> {
    if let Some(created) = created {
        return created.uid();
    }
    let previous = previous?;
    live.and_then(|pod| pod.metadata.uid.as_deref()).filter(|uid| *uid == previous).map(str::to_owned)
}

/// Whether `pod` presents itself as `instance`'s pod of `role`: it names the instance as its
/// controller, or it carries the operator's labels for this StoppableContainer (the labels its
/// watch maps to the StoppableContainer) and is controlled by nothing else. A pod controlled by
/// another object (a leftover of an earlier instance of the same name, another controller's pod)
/// belongs to that object, whatever its labels say.
pub fn claims_to_be_ours(pod: &Pod, instance: &StoppableContainerInstance, role: Role) -> bool {
    let instance_uid = instance.metadata.uid.as_deref();
    let controllers: Vec<&str> = pod
        .owner_references()
        .iter()
        .filter(|reference| reference.controller == Some(true))
        .map(|reference| reference.uid.as_str())
        .collect();
    if instance_uid.is_some_and(|uid| controllers.contains(&uid)) {
        return true;
    }
    let labels = pod.labels();
    let labelled_ours = labels.get(LABEL_INSTANCE) == Some(&instance.spec.stoppable_container_name)
        || labels.get(LABEL_MANAGED_BY).map(String::as_str) == Some(MANAGED_BY_VALUE)
        || labels.get(sc_api::consts::LABEL_ROLE).map(String::as_str) == Some(role.label_value());
    labelled_ours && controllers.is_empty()
}

/// What a pod found under one of our names is, given the UID recorded for it. Without an instance
/// of ours there is no record and nothing to claim, so every pod is foreign.
pub fn classify<'a>(pod: Option<&'a Pod>, recorded: Option<&str>, instance: Option<&StoppableContainerInstance>, role: Role) -> Found<'a> {
    let Some(pod) = pod else { return Found::Absent };
    let Some(instance) = instance else { return Found::Foreign(pod) };
    match (recorded, pod.metadata.uid.as_deref()) {
        (Some(recorded), Some(uid)) if recorded == uid => Found::Owned(pod),
        _ if claims_to_be_ours(pod, instance, role) => Found::Unrecorded(pod),
        _ => Found::Foreign(pod),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use sc_api::consts::LABEL_ROLE;

    use super::*;

    const INSTANCE_UID: &str = "11111111-0000-4000-8000-000000000001";

    fn instance() -> StoppableContainerInstance {
        let mut instance = StoppableContainerInstance::new(
            "box",
            sc_api::StoppableContainerInstanceSpec { stoppable_container_name: "box".into(), ..Default::default() },
        );
        instance.metadata.uid = Some(INSTANCE_UID.into());
        instance
    }

    fn pod(uid: &str) -> Pod {
        let mut pod = Pod::default();
        pod.metadata.name = Some("box".into());
        pod.metadata.uid = Some(uid.into());
        pod
    }

    fn controlled_by(mut pod: Pod, owner_uid: &str) -> Pod {
        pod.metadata.owner_references = Some(vec![OwnerReference {
            api_version: sc_api::consts::API_VERSION.into(),
            kind: sc_api::consts::SCI_KIND.into(),
            name: "box".into(),
            uid: owner_uid.into(),
            controller: Some(true),
            block_owner_deletion: None,
        }]);
        pod
    }

    fn labelled(mut pod: Pod, key: &str, value: &str) -> Pod {
        pod.metadata.labels.get_or_insert_with(Default::default).insert(key.into(), value.into());
        pod
    }

    #[test]
    fn a_created_pod_is_recorded_from_the_create_response() {
        let created = pod("new");
        assert_eq!(recorded_uid(None, None, Some(&created)).as_deref(), Some("new"));
        // Even over a previous record: the old pod is gone, or the create would have failed.
        assert_eq!(recorded_uid(Some("old"), None, Some(&created)).as_deref(), Some("new"));
    }

    #[test]
    fn a_record_is_kept_while_its_pod_exists_and_cleared_when_it_is_gone() {
        let live = pod("ours");
        assert_eq!(recorded_uid(Some("ours"), Some(&live), None).as_deref(), Some("ours"));
        let mut terminating = pod("ours");
        terminating.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        assert_eq!(recorded_uid(Some("ours"), Some(&terminating), None).as_deref(), Some("ours"), "kept while it terminates");
        assert_eq!(recorded_uid(Some("ours"), None, None), None, "cleared when the name is free");
        let successor = pod("someone-elses");
        assert_eq!(recorded_uid(Some("ours"), Some(&successor), None), None, "cleared when another pod holds the name");
    }

    #[test]
    fn a_found_pod_is_never_recorded() {
        let found = controlled_by(labelled(pod("forged"), LABEL_INSTANCE, "box"), INSTANCE_UID);
        assert_eq!(recorded_uid(None, Some(&found), None), None);
    }

    #[test]
    fn only_the_recorded_uid_makes_a_pod_ours() {
        let instance = instance();
        let genuine = controlled_by(pod("ours"), INSTANCE_UID);
        assert!(matches!(classify(Some(&genuine), Some("ours"), Some(&instance), Role::Consumer), Found::Owned(_)));
        // The UID alone decides: a recorded pod whose owner reference and labels were edited
        // away is still the one the operator created.
        assert!(matches!(classify(Some(&pod("ours")), Some("ours"), Some(&instance), Role::Consumer), Found::Owned(_)));
        assert!(matches!(classify(None, Some("ours"), Some(&instance), Role::Consumer), Found::Absent));
    }

    #[test]
    fn a_pod_that_claims_to_be_ours_without_the_recorded_uid_is_unrecorded() {
        let instance = instance();
        let forged = [
            controlled_by(pod("forged"), INSTANCE_UID),
            labelled(pod("forged"), LABEL_INSTANCE, "box"),
            labelled(pod("forged"), LABEL_MANAGED_BY, MANAGED_BY_VALUE),
            labelled(pod("forged"), LABEL_ROLE, ROLE_PROVIDER),
            controlled_by(labelled(pod("forged"), LABEL_INSTANCE, "box"), INSTANCE_UID),
        ];
        for pod in &forged {
            for recorded in [None, Some("ours")] {
                assert!(
                    matches!(classify(Some(pod), recorded, Some(&instance), Role::Provider), Found::Unrecorded(_)),
                    "{recorded:?}: {:?}",
                    pod.metadata
                );
            }
        }
    }

    #[test]
    fn a_pod_that_does_not_claim_to_be_ours_or_is_controlled_by_another_object_is_foreign() {
        let instance = instance();
        let stranger = labelled(pod("stranger"), "app", "box");
        assert!(matches!(classify(Some(&stranger), Some("ours"), Some(&instance), Role::Consumer), Found::Foreign(_)));
        let other_role = labelled(pod("stranger"), LABEL_ROLE, ROLE_CONSUMER);
        assert!(matches!(classify(Some(&other_role), None, Some(&instance), Role::Provider), Found::Foreign(_)));
        let of_an_earlier_instance = controlled_by(labelled(pod("leftover"), LABEL_INSTANCE, "box"), "an-earlier-instance");
        assert!(matches!(classify(Some(&of_an_earlier_instance), None, Some(&instance), Role::Consumer), Found::Foreign(_)));
        // Without an instance of ours (a foreign one holds the name) nothing is ours to judge.
        let forged = controlled_by(pod("forged"), INSTANCE_UID);
        assert!(matches!(classify(Some(&forged), None, None, Role::Consumer), Found::Foreign(_)));
    }

    #[test]
    fn recording_sets_the_uid_and_the_name_together() {
        let mut status = StoppableContainerInstanceStatus { message: Some("kept".into()), ..Default::default() };
        Role::Provider.record(&mut status, Some("box-provider".into()), Some("p".into()));
        Role::Consumer.record(&mut status, Some("box".into()), None);
        assert_eq!(Role::Provider.recorded_uid(Some(&status)), Some("p"));
        assert_eq!(status.provider_pod_name.as_deref(), Some("box-provider"));
        assert_eq!((status.consumer_pod_name.clone(), Role::Consumer.recorded_uid(Some(&status))), (None, None));
        assert_eq!(status.message.as_deref(), Some("kept"), "the other fields stay");
    }
}
