//! Report: the status the reconcile ends with, from the children as its steps left them. Pure:
//! the executor writes it (once), and the Events and the requeue it calls for.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use sc_api::{Phase, StoppableContainer, StoppableContainerInstanceStatus, StoppableContainerStatus};

use super::fetch::{Children, Facts};
use super::plan::{image_check, validation, wants_running};
use crate::data_report;
use crate::instance_builder::restart_required;
use crate::rootfs_usage;
use crate::status::{Found, Notice, Observed, ProviderLoss, condition, instance_status, is_terminating, sc_status, transition_notices};
use crate::storage::{
    self,
    claim::{self, ClaimFound},
};
use crate::validate::describe_problems;
use sc_api::storage::{ClaimRecord, claim_name};

/// Requeue while something is in motion (pods starting or terminating); pod watches usually
/// trigger a reconcile sooner.
pub const REQUEUE_IN_MOTION: Duration = Duration::from_secs(5);
/// Requeue when steady, to notice what watches cannot (a node that disappeared).
pub const REQUEUE_STEADY: Duration = Duration::from_secs(300);
/// Requeue when steady with the root filesystem on a claim and a pod bound to a node: a node
/// that goes (Node deleted, out-of-service taint) changes no object the operator watches until
/// Kubernetes removes its pods, and the workload is to come back elsewhere sooner than that.
pub const REQUEUE_STEADY_ON_CLAIM: Duration = Duration::from_secs(60);
/// Requeue while a foreign object holds one of our names: no watch tells when a stranger pod
/// (unlabelled) or a leftover instance goes away, and the start should follow soon when it does.
pub const REQUEUE_NAME_CONFLICT: Duration = Duration::from_secs(10);

/// What a reconcile reports.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// The StoppableContainer's status.
    pub status: StoppableContainerStatus,
    /// The Events the change of status calls for.
    pub notices: Vec<Notice>,
    /// The instance's status, when it is to be written (changed, and the instance is not being
    /// deleted).
    pub instance_status: Option<StoppableContainerInstanceStatus>,
    /// When to look again.
    pub requeue: Duration,
}

/// The report of a reconcile of `sc` (the working copy), whose status read at the start of the
/// reconcile was `previous`; `provider_loss` is what was lost as found before anything was
/// replaced.
pub fn report(
    sc: &StoppableContainer,
    previous: Option<&StoppableContainerStatus>,
    children: &Children,
    facts: &Facts<'_>,
    provider_loss: Option<ProviderLoss>,
    now: Time,
) -> Report {
    let validation = validation(sc, children, facts);
    let running = wants_running(sc, children);
    let on_claim = children.on_claim(sc);
    let data_node = data_report::data_node(sc).map(str::to_owned);
    // A consumer pod being deleted (a stop, or a stuck start made again) needs no restart: the
    // next pod is made from the current template anyway.
    let restart_required = match (children.consumer().owned().filter(|pod| !is_terminating(pod)), &children.instance) {
        (Some(_), Some(instance)) => restart_required(sc, &instance.spec, validation.as_ref().ok().map(|start| start.rootfs_size_bytes)),
        _ => false,
    };
    let observed = Observed {
        running,
        generation: sc.metadata.generation,
        spec_problems: validation.as_ref().err().map(|problems| describe_problems(problems)),
        instance_exists: children.instance.is_some(),
        foreign_instance: children.foreign_instance.as_ref().map(|instance| instance.name_any()),
        consumer: children.consumer(),
        provider: children.provider(),
        data_node: data_node.clone(),
        data_node_exists: facts.data_node_exists(),
        restart_required,
        ignored_host_path_prefix: validation.as_ref().ok().and_then(|start| start.valid.ignored_host_path_prefix.clone()),
        provider_loss,
        image: image_check(sc, children, facts),
        on_claim,
        claim: on_claim.then(|| claim::condition(sc, children.claim_found(sc))),
    };
    let mut status = sc_status(&observed, Some(sc.name_any()), previous, now);
    status.rootfs = match (on_claim, children.usage_node(sc)) {
        // On a claim and stopped: no node has it; the last figures stay.
        (true, None) => previous.and_then(|status| status.rootfs.clone()),
        (_, usage_node) => rootfs_usage::rootfs_status(sc, usage_node, facts.usage),
    };
    status.storage = on_claim.then(|| {
        let unrecorded = ClaimRecord { claim_name: claim_name(&sc.name_any()), claim_uid: None };
        let record = storage::recorded_claim(sc, children.instance.as_ref()).cloned().unwrap_or(unrecorded);
        claim::storage_status(&record, children.claim_found(sc).ours())
    });
    let notices = transition_notices(previous, &status);
    let instance_status =
        children.instance.as_ref().filter(|instance| instance.metadata.deletion_timestamp.is_none()).and_then(|instance| {
            let wanted = instance_status(
                &status,
                children.consumer().owned(),
                children.provider().owned(),
                &children.recorded_after_reconcile(),
                instance.metadata.generation,
                running,
            );
            (instance.status.as_ref() != Some(&wanted)).then_some(wanted)
        });
    let requeue = requeue(sc, &status, children);
    Report { status, notices, instance_status, requeue }
}

/// When to look again after a reconcile that ended with `status`.
fn requeue(sc: &StoppableContainer, status: &StoppableContainerStatus, children: &Children) -> Duration {
    let phase = status.phase.unwrap_or_default();
    // Stopped is steady once the consumer pod is gone: the provider a stop keeps does not change
    // by itself (its watch reports what does), only one being deleted is in motion.
    let provider_leaving = children.provider().owned().is_some_and(is_terminating);
    // An unrecorded pod being deleted may have no label the pod watch selects.
    let replacing_unrecorded = children.consumer().unrecorded().is_some() || children.provider().unrecorded().is_some();
    let provider_lost = status.conditions.iter().any(|c| c.type_ == condition::PROVIDER_LOST && c.status == "True");
    let steady = matches!(phase, Phase::Running | Phase::Stopped | Phase::Failed)
        && !replacing_unrecorded
        && !provider_lost
        && !(phase == Phase::Stopped && (children.consumer().owned().is_some() || provider_leaving));
    let name_conflict = children.foreign_instance.is_some()
        || matches!(children.consumer(), Found::Foreign(_))
        || matches!(children.provider(), Found::Foreign(_))
        // A tenant's claim need not carry the labels the claim watch selects.
        || matches!(children.claim_found(sc), ClaimFound::Foreign(_));
    let pods_on_a_node = [children.consumer().owned(), children.provider().owned()]
        .into_iter()
        .flatten()
        .any(|pod| pod.spec.as_ref().is_some_and(|spec| spec.node_name.is_some()));
    match (name_conflict, steady) {
        (true, _) => REQUEUE_NAME_CONFLICT,
        (false, true) if children.on_claim(sc) && pods_on_a_node => REQUEUE_STEADY_ON_CLAIM,
        (false, true) => REQUEUE_STEADY,
        (false, false) => REQUEUE_IN_MOTION,
    }
}
