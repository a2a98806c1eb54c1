//! The StoppableContainer's status: its conditions, assembled with the phase from what was observed.

use super::*;
use sc_api::lifecycle::reason;

/// Everything the status depends on.
#[derive(Clone, Debug)]
pub struct Observed<'a> {
    /// `spec.running`.
    pub running: bool,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// Validation problems, rendered (None when the spec is valid).
    pub spec_problems: Option<String>,
    /// Whether the instance exists.
    pub instance_exists: bool,
    /// Name of an instance named like the StoppableContainer that it does not control (a
    /// leftover of an earlier StoppableContainer of the same name): never adopted or touched.
    pub foreign_instance: Option<String>,
    /// The consumer pod.
    pub consumer: Found<'a>,
    /// The provider pod.
    pub provider: Found<'a>,
    /// Node holding the data (from the previous status or the consumer pod's node).
    pub data_node: Option<String>,
    /// False when the data node is known to be gone from the cluster.
    pub data_node_exists: bool,
    /// The template changed since the running consumer pod was created.
    pub restart_required: bool,
    /// A `hostPathPrefix` that is ignored.
    pub ignored_host_path_prefix: Option<String>,
    /// The provider of the running workload, lost as found at the start of this reconcile
    /// (before it was replaced).
    pub provider_loss: Option<ProviderLoss>,
    /// The image's config, judged against the template the consumer pod runs (or a start would
    /// run).
    pub image: ImageCheck,
    /// The root filesystem is (or is to be) on a claim: no node holds data, and a stop leaves no
    /// pod.
    pub on_claim: bool,
    /// On a claim: the claim's condition.
    pub claim: Option<crate::storage::claim::ClaimCondition>,
}

pub(super) struct ConditionSet {
    now: Time,
    previous: Vec<Condition>,
    generation: Option<i64>,
    conditions: Vec<Condition>,
}

impl ConditionSet {
    /// Adds a condition, keeping the previous transition time when the status did not change.
    fn set(&mut self, type_: &str, status: bool, reason: &str, message: impl Into<String>) {
        self.set_status(type_, if status { "True" } else { "False" }, reason, message);
    }

    /// Adds a condition whose status is `True`, `False` or `Unknown`.
    fn set_status(&mut self, type_: &str, status: &str, reason: &str, message: impl Into<String>) {
        let last_transition_time = self
            .previous
            .iter()
            .find(|old| old.type_ == type_ && old.status == status)
            .map(|old| old.last_transition_time.clone())
            .unwrap_or_else(|| self.now.clone());
        self.conditions.push(Condition {
            type_: type_.to_owned(),
            status: status.to_owned(),
            reason: reason.to_owned(),
            message: message.into(),
            last_transition_time,
            observed_generation: self.generation,
        });
    }
}

/// The StoppableContainer's status. `previous` supplies the condition transition times and the
/// recorded data node; `now` is the time of this observation.
pub fn sc_status(
    observed: &Observed<'_>,
    instance_name: Option<String>,
    previous: Option<&StoppableContainerStatus>,
    now: Time,
) -> StoppableContainerStatus {
    let mut conditions = ConditionSet {
        now,
        previous: previous.map(|status| status.conditions.clone()).unwrap_or_default(),
        generation: observed.generation,
        conditions: Vec::new(),
    };
    let consumer = observed.consumer.owned();
    let provider = observed.provider.owned();
    let consumer_progress = consumer.map(pod_progress);
    let provider_progress = provider.map(pod_progress);

    let (phase, mut message) = phase_and_message(observed, consumer_progress.as_ref(), provider_progress.as_ref());
    let (provider_lost, provider_lost_reason, provider_lost_message) =
        provider_lost_condition(observed, &conditions.previous, provider_progress.as_ref());
    if provider_lost && phase == Phase::Running {
        message = format!("running; {provider_lost_message}");
    }

    conditions.set(condition::READY, phase == Phase::Running, phase.as_str(), message.clone());
    match &observed.spec_problems {
        Some(problems) => conditions.set(condition::SPEC_VALID, false, reason::INVALID_SPEC, problems.clone()),
        None => conditions.set(condition::SPEC_VALID, true, reason::VALID, "the spec is valid"),
    }
    let not_ours = |pod: &Pod| {
        (false, reason::POD_NOT_OWNED.to_owned(), format!("pod {:?} exists and is not this StoppableContainer's", pod_name(pod)))
    };
    let (consumer_ready, consumer_reason, consumer_message) = match (&observed.consumer, &consumer_progress) {
        (Found::Foreign(pod), _) => not_ours(pod),
        (Found::Unrecorded(pod), _) => (false, reason::NOT_CREATED_BY_OPERATOR.to_owned(), unrecorded_pod_message(pod, "consumer pod")),
        (_, None) => (false, reason::NOT_CREATED.to_owned(), "no consumer pod".to_owned()),
        (_, Some(progress)) => progress_condition(progress),
    };
    conditions.set(condition::CONSUMER_READY, consumer_ready, &consumer_reason, consumer_message);
    let (provider_ready, provider_reason, provider_message) = match (&observed.provider, &provider_progress) {
        (Found::Foreign(pod), _) => not_ours(pod),
        (Found::Unrecorded(pod), _) => (false, reason::NOT_CREATED_BY_OPERATOR.to_owned(), unrecorded_pod_message(pod, "provider pod")),
        (_, None) => (
            false,
            reason::NOT_CREATED.to_owned(),
            "no provider pod (it is created on the data node with the consumer pod; at the first start, once that pod is scheduled)"
                .to_owned(),
        ),
        (_, Some(progress)) => progress_condition(progress),
    };
    conditions.set(condition::PROVIDER_READY, provider_ready, &provider_reason, provider_message);
    match &consumer_progress {
        Some(PodProgress::Ready | PodProgress::NotReady) => {
            conditions.set(condition::ROOTFS_VOLUME, true, reason::MOUNTED, "the persistent root filesystem is mounted in the consumer pod")
        }
        Some(PodProgress::Creating) if provider_ready => conditions.set(
            condition::ROOTFS_VOLUME,
            false,
            reason::MOUNTING,
            "waiting for the CSI node plugin to mount the persistent root filesystem (see `kubectl describe pod` for FailedMount events)",
        ),
        _ => conditions.set(condition::ROOTFS_VOLUME, false, reason::NOT_MOUNTED, "no running consumer pod"),
    }
    match (&observed.data_node, observed.data_node_exists) {
        (None, _) if observed.on_claim => conditions.set(
            condition::DATA_NODE,
            false,
            reason::NOT_ASSIGNED,
            "the root filesystem is on a claim, not on a node: the workload runs on any node that can attach the claim",
        ),
        (None, _) => conditions.set(condition::DATA_NODE, false, reason::NOT_ASSIGNED, "no data yet: the first start places the workload and creates the root filesystem there"),
        (Some(node), true) => conditions.set(condition::DATA_NODE, true, reason::ASSIGNED, format!("the root filesystem is on node {node:?}; starts are pinned to it")),
        (Some(node), false) => conditions.set(
            condition::DATA_NODE,
            false,
            reason::NODE_GONE,
            format!("node {node:?}, which holds the root filesystem, no longer exists; the data is lost with it. Delete and recreate this StoppableContainer to start over"),
        ),
    }
    if observed.restart_required {
        conditions.set(
            condition::RESTART_REQUIRED,
            true,
            reason::TEMPLATE_CHANGED,
            "the template, the provider settings or spec.rootfsSize changed since the consumer pod was created; stop and start to apply them",
        );
    } else {
        conditions.set(condition::RESTART_REQUIRED, false, reason::UP_TO_DATE, "the consumer pod runs the current template");
    }
    let foreign: Vec<String> = [observed.consumer, observed.provider]
        .iter()
        .filter_map(|found| if let Found::Foreign(pod) = found { Some(pod_name(pod)) } else { None })
        .collect();
    if let Some(instance) = &observed.foreign_instance {
        conditions.set(
            condition::NAME_CONFLICT,
            true,
            reason::INSTANCE_NOT_OWNED,
            format!("StoppableContainerInstance {instance:?} exists and is not controlled by this StoppableContainer (a leftover of an earlier one with this name?); it and its pods are left alone: delete them, or rename this StoppableContainer"),
        );
    } else if foreign.is_empty() {
        conditions.set(condition::NAME_CONFLICT, false, reason::NO_CONFLICT, "no foreign pod uses this StoppableContainer's pod names");
    } else {
        conditions.set(
            condition::NAME_CONFLICT,
            true,
            reason::POD_NOT_OWNED,
            format!("pods {foreign:?} exist and are not owned by this StoppableContainer; they are left alone: delete or rename them, or rename this StoppableContainer"),
        );
    }
    conditions.set(condition::PROVIDER_LOST, provider_lost, &provider_lost_reason, provider_lost_message);
    match &observed.image {
        ImageCheck::NotReported => conditions.set_status(
            condition::IMAGE_CONFIG,
            "Unknown",
            reason::NOT_REPORTED,
            "the config of the image the provider pod runs is not known yet: the data node's CSI plugin reports it when a consumer pod mounts the root filesystem",
        ),
        ImageCheck::Known { outcome: ImageOutcome::Runs { summary }, .. } => {
            conditions.set(condition::IMAGE_CONFIG, true, reason::RESOLVED, summary.clone())
        }
        ImageCheck::Known { outcome: ImageOutcome::RunsWithoutConfig { reason }, status } => conditions.set(
            condition::IMAGE_CONFIG,
            true,
            reason::TEMPLATE_COMMAND,
            format!(
                "the container runtime gave no config for image {:?} ({reason}); the template's command runs as written, and the image's ENV, USER and WORKDIR are unknown",
                status.image_ref
            ),
        ),
        ImageCheck::Known { outcome: ImageOutcome::Cannot(problem), .. } => {
            conditions.set(condition::IMAGE_CONFIG, false, problem.reason, problem.message.clone())
        }
        ImageCheck::Known { outcome: ImageOutcome::NotEvaluated, .. } => conditions.set_status(
            condition::IMAGE_CONFIG,
            "Unknown",
            reason::INVALID_SPEC,
            "the image's config is known, and what the spec would run with it is not evaluated while the spec is invalid (see SpecValid)",
        ),
    }
    if let Some(claim) = &observed.claim {
        conditions.set(condition::STORAGE, claim.bound, claim.reason, claim.message.clone());
    }
    if let Some(prefix) = &observed.ignored_host_path_prefix {
        conditions.set(
            condition::HOST_PATH_PREFIX_IGNORED,
            true,
            reason::ADMIN_SETTING,
            format!("spec.hostPathPrefix {prefix:?} is ignored: where data is stored on a node is the CSI node plugin's --data-root, an administrator's setting; remove the field"),
        );
    }

    let node_name = consumer.and_then(|pod| pod.spec.as_ref()).and_then(|spec| spec.node_name.clone());
    StoppableContainerStatus {
        phase: Some(phase),
        message: Some(message),
        node_name,
        data_node_name: observed.data_node.clone(),
        instance_name: instance_name.filter(|_| observed.instance_exists),
        provider_pod_name: provider.map(pod_name),
        consumer_pod_name: consumer.map(pod_name),
        conditions: conditions.conditions,
        observed_generation: observed.generation,
        // Kept until the data node reports newer figures (see `rootfs_usage`).
        rootfs: previous.and_then(|status| status.rootfs.clone()),
        image: observed.image.status(),
        // The report sets it from the claim (`controller::report`).
        storage: previous.and_then(|status| status.storage.clone()),
    }
}

/// A pod's readiness condition: ready or not, the reason and the message. A stuck container's
/// reason is kubelet's own (`ErrImageNeverPull`, `CrashLoopBackOff`, ...), with kubelet's message.
pub(super) fn progress_condition(progress: &PodProgress) -> (bool, String, String) {
    let (ready, reason, message) = match progress {
        PodProgress::Terminating => (false, reason::TERMINATING, "the pod is terminating".to_owned()),
        PodProgress::Unscheduled { unschedulable: Some(why) } => (false, reason::UNSCHEDULABLE, why.clone()),
        PodProgress::Unscheduled { unschedulable: None } => (false, reason::SCHEDULING, "waiting for the scheduler".to_owned()),
        PodProgress::Stuck { reason, message } => return (false, reason.clone(), message.clone()),
        PodProgress::Creating => (false, reason::CONTAINER_CREATING, "containers are being created".to_owned()),
        PodProgress::NotReady => (false, reason::NOT_READY, "containers run but are not ready".to_owned()),
        PodProgress::Ready => (true, reason::POD_READY, "the pod is ready".to_owned()),
        PodProgress::Finished { message, .. } => (false, reason::POD_FINISHED, message.clone()),
    };
    (ready, reason.to_owned(), message)
}

#[cfg(test)]
mod tests;
