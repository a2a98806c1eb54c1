//! Plan: what a reconcile does, decided from what was fetched, as data. Pure: the executor
//! (`apply`) carries the steps out, and only it talks to the API server.
//!
//! A plan ends where the next decision needs an answer only the API server has: a pod deleted may
//! be gone at once or terminate for a while ([`Then::Refetch`]), a created pod's or an applied
//! instance's UID comes with the response ([`Then::Replan`]). The executor then plans again, from
//! the children as read or as the responses left them, until a plan ends in [`Then::Report`].

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::ResourceExt;
use sc_api::consts::{NODE_DATA_FINALIZER, provider_pod_name};
use sc_api::storage::{ClaimRecord, InstanceStorage, ResolvedStorage, claim_name};
use sc_api::{StoppableContainer, StoppableContainerInstance, StoppableContainerInstanceSpec};

use super::fetch::{Children, Facts};
use crate::consumer_pod::build_consumer_pod;
use crate::data_report;
use crate::instance_builder::{build_instance, restart_required};
use crate::ownership::Role;
use crate::provider_pod::{build_provider_pod, has_terminated, provider_is_current, provider_node};
use crate::rootfs_usage;
use crate::status::{Found, ImageCheck, WorkloadProcess, check_image, is_terminating, start_to_redo, unrecorded_pod_message};
use crate::storage::claim::{self, ClaimFound, build_claim};
use crate::storage::{pin, spec as storage_spec};
use crate::validate::{SpecProblem, StartSpec, Workload, describe_problems, validate_start};

/// One thing the executor does.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Adds (`present`) or removes a finalizer, conditioned on the resourceVersion read.
    SetFinalizer { on: Object, finalizer: &'static str, present: bool },
    /// Applies the instance (metadata and spec) with server-side apply.
    ApplyInstance(Box<StoppableContainerInstance>),
    /// Creates `role`'s pod and records its UID, from the create response, in the instance
    /// status: from then on it is the operator's pod (for the node plugin too), and only that
    /// pod. `starting` (a consumer pod only) is the Starting Event's note, said once it exists.
    CreatePod { role: Role, pod: Box<Pod>, starting: Option<String> },
    /// Deletes a pod, preconditioned on its UID.
    DeletePod(PodDeletion),
    /// Records in the StoppableContainer's status the node that is to hold the data, before
    /// anything exists there (so the data is never on a node the status does not name).
    RecordDataNode(String),
    /// A stop began: the stop-duration metric starts counting.
    StopBegan,
    /// Deletes the instance.
    DeleteInstance,
    /// Creates the claim, then at once records its UID, from the create response, in
    /// `instance` (the instance to apply, with `spec.storage` naming the claim, its UID unset):
    /// from then on it is the operator's claim, and only that claim. A claim that already holds
    /// the name is read, never recorded.
    CreateClaim { claim: Box<PersistentVolumeClaim>, instance: Box<StoppableContainerInstance> },
    /// Deletes the claim, preconditioned on its UID.
    DeleteClaim { name: String, uid: String },
    /// Sets the claim's owner references, conditioned on the resourceVersion read.
    SetClaimOwners { name: String, owner_references: Vec<OwnerReference>, resource_version: Option<String> },
    /// Publishes an Event about the StoppableContainer.
    Event(Announcement),
    /// Logs what the reconcile waits for (at info).
    Note(String),
}

/// The object a finalizer step changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Object {
    /// The StoppableContainer.
    StoppableContainer,
    /// Its instance.
    Instance,
}

/// A pod to delete, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodDeletion {
    /// Whose place the pod holds.
    pub role: Role,
    /// The pod's name.
    pub name: String,
    /// The UID that was judged: the delete is preconditioned on it, so a pod recreated by
    /// someone else in between is never deleted.
    pub uid: Option<String>,
    /// None keeps the pod's own terminationGracePeriodSeconds.
    pub grace_period_seconds: Option<u32>,
    /// What is said once the delete is sent.
    pub why: Why,
}

/// Why a pod is deleted, as said once the delete was sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Why {
    /// One of the operator's pods: a Normal `PodDeleted` Event with the reason.
    Lifecycle(String),
    /// A pod that claims to be the operator's without its UID being recorded: a Warning
    /// `UnrecordedPod` Event with this note.
    Unrecorded(String),
}

/// An Event to publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announcement {
    /// A Warning (else Normal).
    pub warning: bool,
    /// The Event's reason.
    pub reason: String,
    /// The Event's action.
    pub action: &'static str,
    /// The Event's note.
    pub note: String,
}

impl Announcement {
    fn normal(reason: &str, action: &'static str, note: impl Into<String>) -> Step {
        Step::Event(Announcement { warning: false, reason: reason.to_owned(), action, note: note.into() })
    }

    fn warning(reason: &str, action: &'static str, note: impl Into<String>) -> Step {
        Step::Event(Announcement { warning: true, reason: reason.to_owned(), action, note: note.into() })
    }
}

/// What the executor does once a plan's steps are carried out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Then {
    /// Read the children again and plan again: a pod was deleted, and whether it is gone or
    /// still terminating decides what comes next.
    Refetch,
    /// Plan again from the children as the responses left them (a created pod, an applied
    /// instance, with their UIDs).
    Replan,
    /// Nothing more to do: write the status.
    Report,
}

/// The steps of one pass, in order, and what follows them.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Carried out in order; the first error ends the reconcile.
    pub steps: Vec<Step>,
    /// What follows.
    pub then: Then,
}

/// The start as the spec asks for it: validated against the cluster's rootfs limits and the
/// size the root filesystem already has (the one its instance last deployed: a filesystem only
/// grows, so no start may ask for less).
pub fn validation(sc: &StoppableContainer, children: &Children, facts: &Facts<'_>) -> Result<StartSpec, Vec<SpecProblem>> {
    let current_rootfs_bytes = children.instance.as_ref().and_then(|instance| instance.spec.rootfs_size_bytes);
    let start = validate_start(sc, &facts.settings.rootfs, current_rootfs_bytes);
    match (start, storage_spec::refusal(sc, children.instance.as_ref())) {
        (start, None) => start,
        (Ok(_), Some(refused)) => Err(vec![refused]),
        (Err(mut problems), Some(refused)) => {
            problems.push(refused);
            Err(problems)
        }
    }
}

/// Whether the StoppableContainer is to run: `spec.running`, unless its instance is being
/// deleted (a deleted instance takes its pods with it).
pub fn wants_running(sc: &StoppableContainer, children: &Children) -> bool {
    sc.spec.running && !children.instance_deleting()
}

/// The data node whose existence the plan needs to know (a start pinned to it), if any.
pub fn node_to_check<'a>(sc: &'a StoppableContainer, children: &Children, facts: &Facts<'_>) -> Option<&'a str> {
    let starting = wants_running(sc, children) && children.foreign_instance.is_none() && validation(sc, children, facts).is_ok();
    data_report::data_node(sc).filter(|_| starting)
}

/// The image's config judged against the template the consumer pod runs (the deployed snapshot
/// while it exists) or a start would run (the current one), for the image the provider runs now:
/// from the data node's usage report, or the status's own memory of it.
pub fn image_check(sc: &StoppableContainer, children: &Children, facts: &Facts<'_>) -> ImageCheck {
    let template = match (children.consumer().owned(), &children.instance) {
        (Some(_), Some(instance)) => &instance.spec.template,
        _ => &sc.spec.template,
    };
    let workload = Workload::from_template(template, None).ok();
    let kubelet_pod = format!("{}_{}", sc.name_any(), sc.namespace().unwrap_or_default());
    let process = workload.as_ref().map(|workload| WorkloadProcess {
        container: workload.container(),
        pod_security: workload.pod_spec.security_context.as_ref(),
        pod: &kubelet_pod,
    });
    let image_id = children.provider().owned().and_then(rootfs_usage::provider_image_id);
    let summary = rootfs_usage::image_summary(sc, children.usage_node(sc), facts.usage, image_id.as_deref());
    check_image(summary.as_ref(), process)
}

/// The next pass of the reconcile of `sc` (the working copy: as read, then as this reconcile's
/// writes answered), from its children and the facts.
pub fn plan(sc: &StoppableContainer, children: &Children, facts: &Facts<'_>) -> Plan {
    let mut steps = Vec::new();
    // Whether running or not: a pod that claims to be ours is never left to look like it. An
    // unscheduled one goes at once, so the name may be free for ours already.
    for role in [Role::Consumer, Role::Provider] {
        if let Some(pod) = children.found(role).unrecorded() {
            steps.extend(delete(pod, role, Why::Unrecorded(unrecorded_pod_message(pod, role.describe()))));
        }
    }
    if !steps.is_empty() {
        return Plan { steps, then: Then::Refetch };
    }
    if children.on_claim(sc) {
        steps.extend(pods_of_lost_nodes(children, facts));
        if !steps.is_empty() {
            return Plan { steps, then: Then::Refetch };
        }
    }
    if !wants_running(sc, children) {
        return stop(sc, children);
    }
    if let Some(then) = start(sc, children, facts, &mut steps) {
        return Plan { steps, then };
    }
    if let Some(then) = ensure_provider(sc, children, facts, &mut steps) {
        return Plan { steps, then };
    }
    if let Some(then) = record_pinned_image(sc, children, &mut steps) {
        return Plan { steps, then };
    }
    // The image cannot run as the deployed template says (no command anywhere, runAsNonRoot
    // against a root image user, a config the argv needs and the runtime did not give): the
    // consumer pod goes rather than crash-looping; the provider and the data stay.
    if let Some(consumer) = children.consumer().owned()
        && let Some(problem) = image_check(sc, children, facts).blocking(Some(consumer))
        && let Some(deletion) = delete(consumer, Role::Consumer, Why::Lifecycle(problem.message.clone()))
    {
        steps.push(deletion);
        return Plan { steps, then: Then::Refetch };
    }
    Plan { steps, then: Then::Report }
}

/// The start's steps up to the consumer pod; Some when the pass ends there.
fn start(sc: &StoppableContainer, children: &Children, facts: &Facts<'_>, steps: &mut Vec<Step>) -> Option<Then> {
    if let Some(foreign) = &children.foreign_instance {
        let note = format!(
            "StoppableContainerInstance {:?} exists and is not controlled by this StoppableContainer; it and its pods are left alone",
            foreign.name_any()
        );
        steps.push(Announcement::warning("NameConflict", "Start", note));
        return None;
    }
    let Ok(start) = validation(sc, children, facts) else { return None };
    // On a claim, no node holds data for the node plugin to delete: no data finalizer.
    let on_claim = children.on_claim(sc);
    if !on_claim && !sc.finalizers().iter().any(|f| f == NODE_DATA_FINALIZER) {
        steps.push(Step::SetFinalizer { on: Object::StoppableContainer, finalizer: NODE_DATA_FINALIZER, present: true });
    }
    // A start stuck on an image or a container config, whose template the user changed since:
    // made again from the new template (kubelet would retry the old one forever).
    let template_changed =
        children.instance.as_ref().is_some_and(|instance| restart_required(sc, &instance.spec, Some(start.rootfs_size_bytes)));
    if let Some(stuck) = start_to_redo(children.consumer(), children.provider(), template_changed) {
        let why = stuck.why();
        if let Some(consumer) = children.consumer().owned() {
            steps.extend(delete(consumer, Role::Consumer, Why::Lifecycle(why.clone())));
        }
        if stuck.replace_provider
            && let Some(provider) = children.provider().owned()
        {
            steps.extend(delete(provider, Role::Provider, Why::Lifecycle(why)));
        }
        return Some(Then::Refetch);
    }
    // The instance: a fresh snapshot at a start, the deployed one while the pod exists (its
    // rootfs size included: the node plugin applies a new size at a start only).
    let deployed = children.consumer().owned().and(children.instance.as_ref()).map(|instance| &instance.spec);
    let mut desired = build_instance(sc, deployed, true);
    if deployed.is_none() {
        // A node-local size only: on a claim the claim's size is the limit.
        desired.spec.rootfs_size_bytes = start.storage.is_none().then_some(start.rootfs_size_bytes);
        // The claim's record (what it was created with, its UID, the pinned image) outlives
        // every snapshot of the template.
        desired.spec.storage = children.instance.as_ref().and_then(|instance| instance.spec.storage.clone());
    }
    match &children.instance {
        Some(instance) if instance.spec == desired.spec => {}
        _ => {
            steps.push(Step::ApplyInstance(Box::new(desired)));
            return Some(Then::Replan);
        }
    }
    let instance = children.instance.as_ref()?;
    if let Some(storage) = &start.storage
        && let Some(then) = ensure_claim(sc, children, instance, storage, steps)
    {
        return Some(then);
    }
    let data_node = data_report::data_node(sc).filter(|_| !on_claim);
    let data_node_exists = facts.data_node_exists();
    // The provider the stop kept (or one left by a stop that had not finished, or by a workload
    // pod deleted by hand) is reused when it is what this start would build, on the data node:
    // the start is then just the consumer pod and a mount. Otherwise (the image or provider
    // settings changed while stopped, an older operator made it, it terminated or is on its way
    // out) it is removed before the consumer pod is created, so that both pods always come from
    // the same snapshot. No consumer pod exists, so nothing uses its lower layer.
    let mut reusing_provider = false;
    let mut old_provider_in_the_way = false;
    if matches!(children.consumer(), Found::Absent)
        && let Found::Owned(provider) = children.provider()
    {
        let reusable = data_node
            .filter(|_| data_node_exists)
            .and_then(|node| desired_provider(instance, node, facts).ok())
            .is_some_and(|desired| provider_is_current(provider, &desired));
        if reusable {
            reusing_provider = true;
        } else {
            old_provider_in_the_way = true;
            let why = "a start needs a provider built from the new snapshot on the data node, and this one is not (changed image or provider settings, made by an older operator, or terminated)";
            steps.extend(delete(provider, Role::Provider, Why::Lifecycle(why.to_owned())));
        }
    }
    // Wait until our old provider is gone; a stranger named like it is reported below and must
    // not block the consumer pod's creation. An image that cannot run as templated would only
    // crash-loop: no consumer pod is made until the template (or the provider's image) changes.
    if matches!(children.consumer(), Found::Absent)
        && !old_provider_in_the_way
        && data_node_exists
        && image_check(sc, children, facts).blocking(None).is_none()
    {
        let pod = build_consumer_pod(&start.valid.workload, instance, data_node, facts.settings);
        let pin = data_node.map(|node| format!(", pinned to node {node:?}")).unwrap_or_default();
        let reuse = if reusing_provider { ", reusing the provider pod kept by the stop" } else { "" };
        let starting = format!("starting the workload{pin}{reuse}");
        steps.push(Step::CreatePod { role: Role::Consumer, pod: Box::new(pod), starting: Some(starting) });
        return Some(Then::Replan);
    }
    if matches!(children.consumer(), Found::Foreign(_)) {
        let note = format!("pod {:?} exists and is not owned by this StoppableContainer; it is left alone", sc.name_any());
        steps.push(Announcement::warning("NameConflict", "Start", note));
    }
    None
}

/// The provider pod a start with `instance`'s snapshot builds on `node`.
fn desired_provider(instance: &StoppableContainerInstance, node: &str, facts: &Facts<'_>) -> Result<Pod, Vec<SpecProblem>> {
    // The provider runs the deployed snapshot's image, which the consumer pod uses.
    let mut workload = Workload::from_template(&instance.spec.template, instance.spec.provider.as_ref())?;
    pin::provider_image(&mut workload, instance.spec.storage.as_ref().and_then(|storage| storage.pinned_image.as_ref()));
    Ok(build_provider_pod(&workload, instance, node, facts.settings))
}

/// While the consumer pod exists, makes sure the provider runs on its node; Some when the pass
/// ends there. At the first start that is the node the consumer pod gets bound to, recorded as
/// the data node before the provider exists. At later starts the data node is already recorded
/// and the consumer pod is pinned to it, so the provider is created at once, while the workload
/// pod is still being scheduled.
fn ensure_provider(sc: &StoppableContainer, children: &Children, facts: &Facts<'_>, steps: &mut Vec<Step>) -> Option<Then> {
    let consumer = children.consumer().owned().filter(|pod| !is_terminating(pod))?;
    let bound_to = consumer.spec.as_ref().and_then(|spec| spec.node_name.as_deref());
    // On a claim no node holds data: the consumer pod goes where the scheduler puts it.
    let on_claim = children.on_claim(sc);
    let recorded = data_report::data_node(sc).filter(|_| !on_claim);
    // Where the consumer pod is: a provider anywhere else would be of no use to it.
    let node = bound_to.or(recorded.filter(|_| facts.data_node_exists()))?;
    if recorded.is_none() && !on_claim {
        steps.push(Step::RecordDataNode(node.to_owned()));
        let note = format!("the root filesystem is created on node {node:?}; later starts are pinned there");
        steps.push(Announcement::normal("DataNodeAssigned", "Start", note));
    }
    match children.provider() {
        // Evicted, preempted or rejected: it never runs again, and its containers have stopped,
        // so it goes at once (as the pod garbage collector removes terminated pods) and its
        // replacement keeps the image in use without delay. A deletion sent with no grace
        // already is not sent again.
        Found::Owned(provider) if has_terminated(provider) => {
            let deleted_at_once = is_terminating(provider) && provider.metadata.deletion_grace_period_seconds == Some(0);
            if deleted_at_once {
                return None;
            }
            let why = "it terminated and never runs again; a new provider pod replaces it";
            steps.push(Step::DeletePod(PodDeletion {
                grace_period_seconds: Some(0),
                ..deletion(provider, Role::Provider, Why::Lifecycle(why.to_owned()))
            }));
            Some(Then::Refetch)
        }
        Found::Owned(provider) => {
            let why = "it is not on the node the consumer pod runs on or is pinned to";
            let deletion = delete(provider, Role::Provider, Why::Lifecycle(why.to_owned()));
            match deletion.filter(|_| provider_node(provider).as_deref() != Some(node)) {
                Some(deletion) => {
                    steps.push(deletion);
                    Some(Then::Refetch)
                }
                None => None,
            }
        }
        // Being deleted (see the start of `plan`); ours follows once the name is free.
        Found::Unrecorded(_) => None,
        Found::Foreign(_) => {
            let note =
                format!("pod {:?} exists and is not owned by this StoppableContainer; it is left alone", provider_pod_name(&sc.name_any()));
            steps.push(Announcement::warning("NameConflict", "Start", note));
            None
        }
        Found::Absent => match desired_provider(children.instance.as_ref()?, node, facts) {
            Ok(pod) => {
                steps.push(Step::CreatePod { role: Role::Provider, pod: Box::new(pod), starting: None });
                Some(Then::Replan)
            }
            Err(problems) => {
                steps.push(Announcement::warning("InvalidSpec", "Start", describe_problems(&problems)));
                None
            }
        },
    }
}

/// Stop: delete the consumer pod. A plain stop keeps the provider: it is a pause process (10m
/// CPU, 16Mi requested) whose only job is to keep the image mounted as the overlay's lower layer,
/// and keeping it makes the next start just the consumer pod and a mount (the persistent data is
/// in the upper dir on the node, not in the provider). When the instance is being deleted the
/// provider goes too, only once the consumer pod is gone (it keeps the image and the lower layer
/// alive while the workload runs); then the instance's finalizer is released.
///
/// On a claim, a stop takes the provider too, once the consumer pod is gone: the data is on the
/// claim, and a stopped StoppableContainer then holds no pod, so its node can be drained or
/// removed; the next start runs wherever the claim can be attached.
fn stop(sc: &StoppableContainer, children: &Children) -> Plan {
    let instance_deleting = children.instance_deleting();
    let on_claim = children.on_claim(sc);
    let mut steps = Vec::new();
    // The provider goes only once the consumer pod is gone; a consumer pod already terminating
    // is waited for.
    if let Found::Owned(consumer) = children.consumer() {
        if let Some(deletion) = delete(consumer, Role::Consumer, Why::Lifecycle("running is false".to_owned())) {
            steps.push(Step::StopBegan);
            steps.push(Announcement::normal("Stopping", "Stop", "stopping the workload; the root filesystem is kept"));
            steps.push(deletion);
            return Plan { steps, then: Then::Refetch };
        }
    } else if (instance_deleting || on_claim)
        && let Found::Owned(provider) = children.provider()
        && let Some(deletion) = delete(provider, Role::Provider, Why::Lifecycle(provider_goes(instance_deleting).to_owned()))
    {
        return Plan { steps: vec![deletion], then: Then::Refetch };
    }
    if let Some(instance) = &children.instance {
        if instance_deleting && children.consumer().owned().is_none() && children.provider().owned().is_none() {
            steps.push(Step::SetFinalizer { on: Object::Instance, finalizer: sc_api::consts::SCI_FINALIZER, present: false });
        } else if !instance_deleting && instance.spec.running {
            steps.push(Step::ApplyInstance(Box::new(build_instance(sc, Some(&instance.spec), false))));
        }
    }
    Plan { steps, then: Then::Report }
}

/// Why a stop deletes the provider pod once the consumer pod is gone.
fn provider_goes(instance_deleting: bool) -> &'static str {
    if instance_deleting {
        "its instance is being deleted and the consumer pod is gone"
    } else {
        "running is false and the consumer pod is gone: with spec.storage a stopped StoppableContainer holds no pod"
    }
}

/// With the root filesystem on a claim, makes sure the claim is the operator's and recorded
/// before any consumer pod mounts it; Some when the pass ends there. Creates it at the first
/// start; records one created before the operator could record it; refuses any other claim of
/// that name, and a recorded claim that is gone (its data with it), making nothing.
fn ensure_claim(
    sc: &StoppableContainer,
    children: &Children,
    instance: &StoppableContainerInstance,
    storage: &ResolvedStorage,
    steps: &mut Vec<Step>,
) -> Option<Then> {
    let name = claim_name(&sc.name_any());
    // The instance with the claim recorded; what it was created with, and a pinned image, kept.
    let with_record = |claim_uid: Option<String>| {
        let kept = instance.spec.storage.clone();
        let record = InstanceStorage {
            requested: kept.as_ref().map_or_else(|| sc.spec.storage.clone().unwrap_or_default(), |kept| kept.requested.clone()),
            claim: ClaimRecord { claim_name: name.clone(), claim_uid },
            pinned_image: kept.and_then(|kept| kept.pinned_image),
        };
        let spec = StoppableContainerInstanceSpec { storage: Some(record), ..instance.spec.clone() };
        Box::new(build_instance(sc, Some(&spec), instance.spec.running))
    };
    match children.claim_found(sc) {
        ClaimFound::Absent => {
            steps.push(Step::CreateClaim { claim: Box::new(build_claim(sc, storage)), instance: with_record(None) });
            Some(Then::Replan)
        }
        ClaimFound::Unrecorded(claim) => {
            steps.push(Step::ApplyInstance(with_record(claim.uid())));
            let note = format!(
                "recorded the claim {name:?} (uid {}): it carries this StoppableContainer's UID and was created after it, so it is the \
                 one the operator created before it could record it",
                claim.uid().unwrap_or_default()
            );
            steps.push(Announcement::normal("ClaimRecorded", "Start", note));
            Some(Then::Replan)
        }
        // Recorded in the SC's status only (the instance was made again): into the instance too,
        // where the node plugin reads it.
        ClaimFound::Ours(claim)
            if instance.spec.storage.as_ref().and_then(|storage| storage.claim.claim_uid.as_deref()) != claim.uid().as_deref() =>
        {
            steps.push(Step::ApplyInstance(with_record(claim.uid())));
            Some(Then::Replan)
        }
        ClaimFound::Ours(claim) if claim::is_terminating(claim) && children.consumer().owned().is_none() => {
            let note = claim::condition(sc, ClaimFound::Ours(claim)).message;
            steps.push(Announcement::warning("ClaimLost", "Start", note));
            Some(Then::Report)
        }
        ClaimFound::Ours(_) => None,
        found @ (ClaimFound::Lost { .. } | ClaimFound::Foreign(_)) => {
            // A consumer pod that runs already keeps what it mounted, and its provider (the
            // status says what is wrong); a start makes nothing.
            if children.consumer().owned().is_some() {
                return None;
            }
            let reason = if matches!(found, ClaimFound::Lost { .. }) { "ClaimLost" } else { "ClaimConflict" };
            steps.push(Announcement::warning(reason, "Start", found.problem(sc).unwrap_or_default()));
            Some(Then::Report)
        }
    }
}

/// On a claim: the operator's pods bound to a node that is gone or out of service go at once
/// (no grace: nothing runs there to honour one, as Kubernetes itself deletes them), so that a
/// running StoppableContainer's next consumer pod can be placed elsewhere. Both go together:
/// on a node that is down the order that protects the lower layer protects nothing.
fn pods_of_lost_nodes(children: &Children, facts: &Facts<'_>) -> Vec<Step> {
    [Role::Consumer, Role::Provider]
        .into_iter()
        .filter_map(|role| children.found(role).owned().map(|pod| (role, pod)))
        .filter(|(_, pod)| !(is_terminating(pod) && pod.metadata.deletion_grace_period_seconds == Some(0)))
        .filter_map(|(role, pod)| {
            let node = pod.spec.as_ref()?.node_name.as_deref()?;
            let why = facts.node_state(node).loss(node)?;
            Some(Step::DeletePod(PodDeletion { grace_period_seconds: Some(0), ..deletion(pod, role, Why::Lifecycle(why)) }))
        })
        .collect()
}

/// On a claim, once the provider runs the template's image: the digest it ran, recorded in the
/// instance so later providers run the same lower layer (see [`pin`]); Some when the pass ends
/// there.
fn record_pinned_image(sc: &StoppableContainer, children: &Children, steps: &mut Vec<Step>) -> Option<Then> {
    let instance = children.instance.as_ref()?;
    let storage = instance.spec.storage.as_ref()?;
    children.consumer().owned()?;
    let provider = children.provider().owned().filter(|pod| !is_terminating(pod))?;
    let workload = Workload::from_template(&instance.spec.template, None).ok()?;
    let pinned = pin::pin_to_record(storage.pinned_image.as_ref(), workload.image(), provider)?;
    let note = format!(
        "image {:?} is {:?}: later provider pods run that digest while the template names this image",
        pinned.image, pinned.digest_ref
    );
    let spec = StoppableContainerInstanceSpec {
        storage: Some(InstanceStorage { pinned_image: Some(pinned), ..storage.clone() }),
        ..instance.spec.clone()
    };
    steps.push(Step::ApplyInstance(Box::new(build_instance(sc, Some(&spec), instance.spec.running))));
    steps.push(Announcement::normal("ImagePinned", "Start", note));
    Some(Then::Replan)
}

/// The deletion of `pod` in `role`'s place, saying `why`.
pub(super) fn deletion(pod: &Pod, role: Role, why: Why) -> PodDeletion {
    PodDeletion { role, name: pod.name_any(), uid: pod.uid(), grace_period_seconds: None, why }
}

/// Deletes `pod` unless it is being deleted already (its own grace period then runs its course).
pub(super) fn delete(pod: &Pod, role: Role, why: Why) -> Option<Step> {
    (!is_terminating(pod)).then(|| Step::DeletePod(deletion(pod, role, why)))
}
