//! Teardown: the deletion of a StoppableContainer, as its own plan. Pure. The order protects the
//! lower layer and the data: the consumer pod, then the provider pod, then the instance, then the
//! node plugin's report that the data is deleted (which releases `NODE_DATA_FINALIZER`), or, with
//! the data on a claim, the claim as `whenDeleted` says.

use kube::ResourceExt;
use sc_api::StoppableContainer;
use sc_api::consts::{NODE_DATA_FINALIZER, SCI_FINALIZER};
use sc_api::storage::ClaimRetention;

use super::fetch::Children;
use super::plan::{Announcement, Object, Step, Why, delete};
use crate::data_report::DataRelease;
use crate::ownership::Role;
use crate::status::{Found, unrecorded_pod_message};
use crate::storage::claim::{self, ClaimFound};

/// The next steps of a deletion, and where it stands once they are carried out.
#[derive(Clone, Debug, PartialEq)]
pub struct Teardown {
    /// Carried out in order.
    pub steps: Vec<Step>,
    /// Where the deletion stands.
    pub stage: Stage,
}

/// Where a deletion stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Pods or the instance are still being removed: look again soon.
    Removing,
    /// Only the data remains: what to do depends on the data node's report (see
    /// [`release_data`]).
    DataRemains,
    /// Nothing remains: `SC_FINALIZER` may go.
    Done,
}

/// The next steps of deleting `sc`.
pub fn teardown(sc: &StoppableContainer, children: &Children) -> Teardown {
    // No overlay can use an unrecorded pod (the node plugin refuses it), so there is no order to
    // keep with them: they go at once, and are not waited for.
    let mut steps: Vec<Step> = [Role::Consumer, Role::Provider]
        .into_iter()
        .filter_map(|role| children.found(role).unrecorded().map(|pod| (role, pod)))
        .filter_map(|(role, pod)| delete(pod, role, Why::Unrecorded(unrecorded_pod_message(pod, role.describe()))))
        .collect();
    let removing = |steps| Teardown { steps, stage: Stage::Removing };
    if let Found::Owned(consumer) = children.consumer() {
        steps.extend(delete(consumer, Role::Consumer, Why::Lifecycle("the StoppableContainer is being deleted".to_owned())));
        return removing(steps);
    }
    if let Found::Owned(provider) = children.provider() {
        let why = "the StoppableContainer is being deleted and its consumer pod is gone";
        steps.extend(delete(provider, Role::Provider, Why::Lifecycle(why.to_owned())));
        return removing(steps);
    }
    if let Some(instance) = &children.instance {
        steps.push(Step::SetFinalizer { on: Object::Instance, finalizer: SCI_FINALIZER, present: false });
        if instance.metadata.deletion_timestamp.is_none() {
            steps.push(Step::DeleteInstance);
        }
        return removing(steps);
    }
    if let Some(claim_step) = claim_teardown(sc, children) {
        steps.push(claim_step);
        return removing(steps);
    }
    // On a claim no node holds data, and the data finalizer is never set.
    let stage = if sc.finalizers().iter().any(|f| f == NODE_DATA_FINALIZER) { Stage::DataRemains } else { Stage::Done };
    Teardown { steps, stage }
}

/// What the claim's `whenDeleted` asks once pods and instance are gone: `Delete` deletes the
/// operator's claim (its owner reference would have the garbage collector do it after the SC;
/// this is sooner); `Retain` takes the SC's owner reference off it (whenDeleted may have
/// changed since its creation), so nothing deletes it. A claim that is not the operator's is
/// never touched.
fn claim_teardown(sc: &StoppableContainer, children: &Children) -> Option<Step> {
    let claim = match children.claim_found(sc) {
        ClaimFound::Ours(claim) | ClaimFound::Unrecorded(claim) => claim,
        ClaimFound::Absent | ClaimFound::Lost { .. } | ClaimFound::Foreign(_) => return None,
    };
    if claim::is_terminating(claim) {
        return None;
    }
    match retention_at_deletion(sc) {
        ClaimRetention::Delete => Some(Step::DeleteClaim { name: claim.name_any(), uid: claim.uid()? }),
        ClaimRetention::Retain => claim::wanted_owner_references(claim, sc, ClaimRetention::Retain).map(|owner_references| {
            Step::SetClaimOwners { name: claim.name_any(), owner_references, resource_version: claim.resource_version() }
        }),
    }
}

/// The claim's fate as the spec says at the deletion (whenDeleted is the one field of
/// `spec.storage` that may change). With `spec.storage` removed (a change the operator refused),
/// nothing says Delete: the data is kept.
pub fn retention_at_deletion(sc: &StoppableContainer) -> ClaimRetention {
    sc.spec.storage.as_ref().map_or(ClaimRetention::Retain, |storage| storage.when_deleted.unwrap_or_default())
}

/// What the data node's report (as `data_report::decide` read it) calls for: the data finalizer
/// released with an Event saying why, or a note of what is waited for. Either way the deletion is
/// looked at again soon.
pub fn release_data(release: DataRelease) -> Vec<Step> {
    match release {
        DataRelease::Release(reason) => {
            let event = Announcement {
                warning: reason.is_warning(),
                reason: reason.event_reason().to_owned(),
                action: "Delete",
                note: reason.note(),
            };
            vec![Step::SetFinalizer { on: Object::StoppableContainer, finalizer: NODE_DATA_FINALIZER, present: false }, Step::Event(event)]
        }
        DataRelease::Wait(message) => vec![Step::Note(message)],
    }
}
