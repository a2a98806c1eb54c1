//! `spec.storage`: the persistent layer on a PersistentVolumeClaim instead of a node's disk.
//! Pure, by concern: [`spec`] (what the spec may say, and the refusal of a change), [`claim`]
//! (the claim the operator creates, and whether a claim found by its name is the one it
//! created), [`node_loss`] (the pods of a node that is gone) and [`pin`] (the base image by
//! digest).
//!
//! Whether an SC's root filesystem is on a claim is decided by [`on_claim`]: by what the
//! operator recorded where it can (the instance, the SC's status), by the spec only before
//! anything exists.

pub mod claim;
pub mod node_loss;
pub mod pin;
pub mod spec;

use sc_api::storage::ClaimRecord;
use sc_api::{StoppableContainer, StoppableContainerInstance};

/// The claim the operator recorded for `sc`: the instance's record, else the SC status's (the
/// instance goes before the claim at a deletion, and a status is what tenants cannot write).
pub fn recorded_claim<'a>(sc: &'a StoppableContainer, instance: Option<&'a StoppableContainerInstance>) -> Option<&'a ClaimRecord> {
    let from_instance = instance.and_then(|instance| instance.spec.storage.as_ref()).map(|storage| &storage.claim);
    let from_status = sc.status.as_ref().and_then(|status| status.storage.as_ref()).map(|storage| &storage.claim);
    from_instance.filter(|record| record.claim_uid.is_some()).or(from_status.filter(|record| record.claim_uid.is_some())).or(from_instance)
}

/// Whether `sc`'s root filesystem is (or, before its first start, is to be) on a claim: a claim
/// recorded says so; node-local data recorded (`status.dataNodeName`) says not; before either,
/// the spec decides. A spec that adds or removes `spec.storage` later changes nothing here (the
/// change is refused: see [`spec::refusal`]).
pub fn on_claim(sc: &StoppableContainer, instance: Option<&StoppableContainerInstance>) -> bool {
    if recorded_claim(sc, instance).is_some() {
        return true;
    }
    if sc.status.as_ref().is_some_and(|status| status.data_node_name.is_some()) {
        return false;
    }
    sc.spec.storage.is_some()
}
