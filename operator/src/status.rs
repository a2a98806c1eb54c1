//! The status of a StoppableContainer and its instance, computed from what the operator observed.
//! Pure: the controller gathers the facts, this module says what they mean.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use sc_api::{InstancePhase, Phase, StoppableContainerInstanceStatus, StoppableContainerStatus};

use crate::ownership::RecordedPods;
use crate::provider_pod::has_terminated;

/// Condition types of a StoppableContainer.
pub mod condition {
    /// True only when the phase is Running; the reason is the phase (as earlier releases).
    pub const READY: &str = "Ready";
    /// Whether the spec passed validation.
    pub const SPEC_VALID: &str = "SpecValid";
    /// Whether the workload pod is ready.
    pub const CONSUMER_READY: &str = "ConsumerReady";
    /// Whether the provider pod is ready.
    pub const PROVIDER_READY: &str = "ProviderReady";
    /// Whether the persistent rootfs is mounted in the workload pod.
    pub const ROOTFS_VOLUME: &str = "RootfsVolume";
    /// Whether a node holds the data, and whether that node still exists.
    pub const DATA_NODE: &str = "DataNode";
    /// True when the template changed since the running workload pod was created.
    pub const RESTART_REQUIRED: &str = "RestartRequired";
    /// True when a pod the operator must create exists and is not its own.
    pub const NAME_CONFLICT: &str = "NameConflict";
    /// True when `spec.hostPathPrefix` is set to a value other than the legacy default.
    pub const HOST_PATH_PREFIX_IGNORED: &str = "HostPathPrefixIgnored";
    /// True while the provider of a running workload is lost (deleted, terminated or being
    /// deleted) and until its replacement is ready.
    pub const PROVIDER_LOST: &str = "ProviderLost";
}

/// Container waiting reasons that mean the workload cannot run until someone acts.
const FAILING_WAITING_REASONS: &[&str] = &[
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// A pod the operator looked for, as found (see [`crate::ownership::classify`]).
#[derive(Clone, Copy, Debug)]
pub enum Found<'a> {
    /// No pod by that name.
    Absent,
    /// The operator's pod: its UID is the one the instance status records.
    Owned(&'a Pod),
    /// A pod by that name that claims to be the operator's (controller reference to the instance,
    /// or the operator's labels) but whose UID is not recorded: forged, or created by an operator
    /// that crashed before recording it. Never trusted; deleted and replaced.
    Unrecorded(&'a Pod),
    /// A pod by that name that does not claim to be the operator's: never touched.
    Foreign(&'a Pod),
}

impl<'a> Found<'a> {
    /// The operator's pod, if that is what was found.
    pub fn owned(self) -> Option<&'a Pod> {
        match self {
            Found::Owned(pod) => Some(pod),
            Found::Absent | Found::Unrecorded(_) | Found::Foreign(_) => None,
        }
    }

    /// The pod that claims to be the operator's without being it, if that is what was found.
    pub fn unrecorded(self) -> Option<&'a Pod> {
        match self {
            Found::Unrecorded(pod) => Some(pod),
            Found::Absent | Found::Owned(_) | Found::Foreign(_) => None,
        }
    }
}

/// The message about a pod that claims to be ours and is not, for conditions, status and Events.
pub fn unrecorded_pod_message(pod: &Pod, what: &str) -> String {
    format!(
        "pod {:?} (uid {}) claims to be this StoppableContainer's {what} but was not created by the operator (its UID is not the one recorded in the instance status); it is deleted and the operator creates its own",
        pod_name(pod),
        pod.metadata.uid.as_deref().unwrap_or("unknown")
    )
}

/// How the provider of a running workload was lost: each is a fault, since the provider is what
/// keeps the image (the running workload's lower layer) in use for kubelet's image garbage
/// collection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProviderLoss {
    /// The recorded provider pod no longer exists (deleted by someone, or evicted or preempted
    /// and removed).
    Deleted { pod: String, uid: String },
    /// The provider pod terminated for good (`Failed` or `Succeeded`: evicted, preempted,
    /// rejected by the kubelet); `detail` is its phase, reason and message.
    Terminated { pod: String, detail: String },
    /// The provider pod is being deleted.
    Terminating { pod: String },
}

impl ProviderLoss {
    /// Reason of the `ProviderLost` condition.
    pub fn reason(&self) -> &'static str {
        match self {
            ProviderLoss::Deleted { .. } => "ProviderDeleted",
            ProviderLoss::Terminated { .. } => "ProviderTerminated",
            ProviderLoss::Terminating { .. } => "ProviderTerminating",
        }
    }

    /// What happened and what the operator does about it.
    pub fn message(&self) -> String {
        const CONSEQUENCE: &str = "so that the image stays in use (the running workload keeps the root filesystem it mounted and sees the new provider's image only after its next restart)";
        match self {
            ProviderLoss::Deleted { pod, uid } => {
                format!(
                    "provider pod {pod:?} (uid {uid}) was deleted while the workload runs; a new provider pod is created at once, {CONSEQUENCE}"
                )
            }
            ProviderLoss::Terminated { pod, detail } => format!(
                "provider pod {pod:?} terminated while the workload runs ({detail}); it is removed and a new provider pod is created at once, {CONSEQUENCE}"
            ),
            ProviderLoss::Terminating { pod } => format!(
                "provider pod {pod:?} is being deleted while the workload runs; a new provider pod is created as soon as it is gone, {CONSEQUENCE}"
            ),
        }
    }
}

/// Whether the workload pod uses, or may mount at any moment, its provider's root filesystem:
/// the operator's own, bound to a node, not being deleted and not finished.
pub fn workload_runs(consumer: Found<'_>) -> bool {
    consumer.owned().is_some_and(|pod| {
        let bound = pod.spec.as_ref().is_some_and(|spec| spec.node_name.is_some());
        bound && !is_terminating(pod) && !has_terminated(pod)
    })
}

/// Whether the provider of a running workload is lost, from what was found at the start of a
/// reconcile and the provider UID the instance status records. A provider that was never created
/// (or never recorded) is not lost: it is simply created.
pub fn detect_provider_loss(
    consumer: Found<'_>,
    recorded_provider_uid: Option<&str>,
    provider: Found<'_>,
    provider_name: &str,
) -> Option<ProviderLoss> {
    if !workload_runs(consumer) {
        return None;
    }
    match provider {
        Found::Owned(pod) if has_terminated(pod) => {
            let status = pod.status.clone().unwrap_or_default();
            let detail = [status.phase, status.reason, status.message].into_iter().flatten().collect::<Vec<_>>().join(": ");
            Some(ProviderLoss::Terminated { pod: pod_name(pod), detail })
        }
        Found::Owned(pod) if is_terminating(pod) => Some(ProviderLoss::Terminating { pod: pod_name(pod) }),
        Found::Owned(_) => None,
        Found::Absent | Found::Unrecorded(_) | Found::Foreign(_) => {
            recorded_provider_uid.map(|uid| ProviderLoss::Deleted { pod: provider_name.to_owned(), uid: uid.to_owned() })
        }
    }
}

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
    /// The workload pod.
    pub consumer: Found<'a>,
    /// The provider pod.
    pub provider: Found<'a>,
    /// Node holding the data (from the previous status or the workload pod's node).
    pub data_node: Option<String>,
    /// False when the data node is known to be gone from the cluster.
    pub data_node_exists: bool,
    /// The template changed since the running workload pod was created.
    pub restart_required: bool,
    /// A `hostPathPrefix` that is ignored.
    pub ignored_host_path_prefix: Option<String>,
    /// The provider of the running workload, lost as found at the start of this reconcile
    /// (before it was replaced).
    pub provider_loss: Option<ProviderLoss>,
}

/// What a pod is doing, in the terms the status needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PodProgress {
    /// Deleted, waiting for kubelet to finish.
    Terminating,
    /// Not bound to a node; the scheduler's message when it gave up for now.
    Unscheduled { unschedulable: Option<String> },
    /// A container waits for a reason that needs action (CrashLoopBackOff, ImagePullBackOff...).
    Stuck { reason: String, message: String },
    /// Containers are being created (volumes mounting, images pulling).
    Creating,
    /// Running but not ready yet.
    NotReady,
    /// Running and ready.
    Ready,
    /// Terminal: every container exited and will not restart.
    Finished { succeeded: bool, message: String },
}

/// Classifies a pod from its status.
pub fn pod_progress(pod: &Pod) -> PodProgress {
    if pod.metadata.deletion_timestamp.is_some() {
        return PodProgress::Terminating;
    }
    let status = pod.status.clone().unwrap_or_default();
    match status.phase.as_deref() {
        Some("Succeeded") => return PodProgress::Finished { succeeded: true, message: "the workload exited successfully".into() },
        Some("Failed") => {
            let detail = [status.reason.clone(), status.message.clone()].into_iter().flatten().collect::<Vec<_>>().join(": ");
            let message =
                if detail.is_empty() { "the workload pod failed".to_owned() } else { format!("the workload pod failed: {detail}") };
            return PodProgress::Finished { succeeded: false, message };
        }
        _ => {}
    }
    let bound = pod.spec.as_ref().and_then(|spec| spec.node_name.as_ref()).is_some();
    if !bound {
        let unschedulable = status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "PodScheduled" && c.status == "False")
            .map(|c| c.message.clone().unwrap_or_else(|| c.reason.clone().unwrap_or_else(|| "unschedulable".into())));
        return PodProgress::Unscheduled { unschedulable };
    }
    let all_statuses = status.init_container_statuses.iter().flatten().chain(status.container_statuses.iter().flatten());
    for container in all_statuses {
        if let Some(waiting) = container.state.as_ref().and_then(|state| state.waiting.as_ref()) {
            let reason = waiting.reason.clone().unwrap_or_default();
            if FAILING_WAITING_REASONS.contains(&reason.as_str()) {
                let message = format!("container {:?}: {}", container.name, waiting.message.clone().unwrap_or_else(|| reason.clone()));
                return PodProgress::Stuck { reason, message };
            }
        }
    }
    let ready = status.conditions.iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True");
    if ready {
        return PodProgress::Ready;
    }
    let started =
        status.container_statuses.iter().flatten().any(|c| c.state.as_ref().is_some_and(|s| s.running.is_some() || s.terminated.is_some()));
    if started { PodProgress::NotReady } else { PodProgress::Creating }
}

/// Whether the pod is being deleted (it has a deletion timestamp).
pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

fn pod_name(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}

struct ConditionSet {
    now: Time,
    previous: Vec<Condition>,
    generation: Option<i64>,
    conditions: Vec<Condition>,
}

impl ConditionSet {
    /// Adds a condition, keeping the previous transition time when the status did not change.
    fn set(&mut self, type_: &str, status: bool, reason: &str, message: impl Into<String>) {
        let status = if status { "True" } else { "False" };
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
        Some(problems) => conditions.set(condition::SPEC_VALID, false, "InvalidSpec", problems.clone()),
        None => conditions.set(condition::SPEC_VALID, true, "Valid", "the spec is valid"),
    }
    let (consumer_ready, consumer_reason, consumer_message) = match (&observed.consumer, &consumer_progress) {
        (Found::Foreign(pod), _) => (false, "PodNotOwned", format!("pod {:?} exists and is not this StoppableContainer's", pod_name(pod))),
        (Found::Unrecorded(pod), _) => (false, "NotCreatedByOperator", unrecorded_pod_message(pod, "workload pod")),
        (_, None) => (false, "NotCreated", "no workload pod".to_owned()),
        (_, Some(progress)) => progress_condition(progress),
    };
    conditions.set(condition::CONSUMER_READY, consumer_ready, consumer_reason, consumer_message);
    let (provider_ready, provider_reason, provider_message) = match (&observed.provider, &provider_progress) {
        (Found::Foreign(pod), _) => (false, "PodNotOwned", format!("pod {:?} exists and is not this StoppableContainer's", pod_name(pod))),
        (Found::Unrecorded(pod), _) => (false, "NotCreatedByOperator", unrecorded_pod_message(pod, "provider pod")),
        (_, None) => (
            false,
            "NotCreated",
            "no provider pod (it is created on the data node with the workload pod; at the first start, once that pod is scheduled)"
                .to_owned(),
        ),
        (_, Some(progress)) => progress_condition(progress),
    };
    conditions.set(condition::PROVIDER_READY, provider_ready, provider_reason, provider_message);
    match &consumer_progress {
        Some(PodProgress::Ready | PodProgress::NotReady) => {
            conditions.set(condition::ROOTFS_VOLUME, true, "Mounted", "the persistent root filesystem is mounted in the workload pod")
        }
        Some(PodProgress::Creating) if provider_ready => conditions.set(
            condition::ROOTFS_VOLUME,
            false,
            "Mounting",
            "waiting for the CSI node plugin to mount the persistent root filesystem (see `kubectl describe pod` for FailedMount events)",
        ),
        _ => conditions.set(condition::ROOTFS_VOLUME, false, "NotMounted", "no running workload pod"),
    }
    match (&observed.data_node, observed.data_node_exists) {
        (None, _) => conditions.set(condition::DATA_NODE, false, "NotAssigned", "no data yet: the first start places the workload and creates the root filesystem there"),
        (Some(node), true) => conditions.set(condition::DATA_NODE, true, "Assigned", format!("the root filesystem is on node {node:?}; starts are pinned to it")),
        (Some(node), false) => conditions.set(
            condition::DATA_NODE,
            false,
            "NodeGone",
            format!("node {node:?}, which holds the root filesystem, no longer exists; the data is lost with it. Delete and recreate this StoppableContainer to start over"),
        ),
    }
    if observed.restart_required {
        conditions.set(
            condition::RESTART_REQUIRED,
            true,
            "TemplateChanged",
            "the template, the provider settings or spec.rootfsSize changed since the workload pod was created; stop and start to apply them",
        );
    } else {
        conditions.set(condition::RESTART_REQUIRED, false, "UpToDate", "the workload pod runs the current template");
    }
    let foreign: Vec<String> = [observed.consumer, observed.provider]
        .iter()
        .filter_map(|found| if let Found::Foreign(pod) = found { Some(pod_name(pod)) } else { None })
        .collect();
    if let Some(instance) = &observed.foreign_instance {
        conditions.set(
            condition::NAME_CONFLICT,
            true,
            "InstanceNotOwned",
            format!("StoppableContainerInstance {instance:?} exists and is not controlled by this StoppableContainer (a leftover of an earlier one with this name?); it and its pods are left alone: delete them, or rename this StoppableContainer"),
        );
    } else if foreign.is_empty() {
        conditions.set(condition::NAME_CONFLICT, false, "NoConflict", "no foreign pod uses this StoppableContainer's pod names");
    } else {
        conditions.set(
            condition::NAME_CONFLICT,
            true,
            "PodNotOwned",
            format!("pods {foreign:?} exist and are not owned by this StoppableContainer; they are left alone: delete or rename them, or rename this StoppableContainer"),
        );
    }
    conditions.set(condition::PROVIDER_LOST, provider_lost, &provider_lost_reason, provider_lost_message);
    if let Some(prefix) = &observed.ignored_host_path_prefix {
        conditions.set(
            condition::HOST_PATH_PREFIX_IGNORED,
            true,
            "AdminSetting",
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
    }
}

/// The `ProviderLost` condition: True from the moment the provider of a running workload is found
/// lost until its replacement is ready (the replacement is created in the same reconcile, so the
/// loss itself is seen once: the previous condition carries it until then).
fn provider_lost_condition(observed: &Observed<'_>, previous: &[Condition], provider: Option<&PodProgress>) -> (bool, String, String) {
    let runs = workload_runs(observed.consumer);
    let still_lost = previous.iter().find(|c| c.type_ == condition::PROVIDER_LOST && c.status == "True");
    match (&observed.provider_loss, still_lost) {
        (Some(loss), _) => (true, loss.reason().to_owned(), loss.message()),
        (None, Some(lost)) if runs && provider != Some(&PodProgress::Ready) => (true, lost.reason.clone(), lost.message.clone()),
        _ if runs => (false, "ProviderInPlace".to_owned(), "the running workload's provider pod is in place".to_owned()),
        _ => (false, "NoWorkload".to_owned(), "no workload pod runs, so no provider pod is in use".to_owned()),
    }
}

fn progress_condition(progress: &PodProgress) -> (bool, &'static str, String) {
    match progress {
        PodProgress::Terminating => (false, "Terminating", "the pod is terminating".into()),
        PodProgress::Unscheduled { unschedulable: Some(why) } => (false, "Unschedulable", why.clone()),
        PodProgress::Unscheduled { unschedulable: None } => (false, "Scheduling", "waiting for the scheduler".into()),
        PodProgress::Stuck { message, .. } => (false, "ContainerWaiting", message.clone()),
        PodProgress::Creating => (false, "ContainerCreating", "containers are being created".into()),
        PodProgress::NotReady => (false, "NotReady", "containers run but are not ready".into()),
        PodProgress::Ready => (true, "PodReady", "the pod is ready".into()),
        PodProgress::Finished { message, .. } => (false, "PodFinished", message.clone()),
    }
}

fn phase_and_message(observed: &Observed<'_>, consumer: Option<&PodProgress>, provider: Option<&PodProgress>) -> (Phase, String) {
    if let Some(instance) = &observed.foreign_instance {
        return (
            Phase::Failed,
            format!(
                "StoppableContainerInstance {instance:?} already exists and is not controlled by this StoppableContainer; it and its pods were left alone. Delete them, or rename this StoppableContainer"
            ),
        );
    }
    if let Found::Foreign(pod) = observed.consumer {
        return (
            Phase::Failed,
            format!(
                "pod {:?} already exists and is not owned by this StoppableContainer; it was left alone. Delete or rename it, or rename this StoppableContainer",
                pod_name(pod)
            ),
        );
    }
    if let Found::Foreign(pod) = observed.provider {
        return (
            Phase::Failed,
            format!(
                "pod {:?} already exists and is not owned by this StoppableContainer; it was left alone. Delete or rename it, or rename this StoppableContainer",
                pod_name(pod)
            ),
        );
    }
    if !observed.running {
        // The provider a stop keeps is part of the stopped state; only a workload pod, or a
        // provider being deleted (its instance is), is something to wait for.
        // Pods that claim to be ours without being it are deleted, stopped or not: wait for them too.
        let remaining: Vec<String> = [
            observed.consumer.owned(),
            observed.consumer.unrecorded(),
            observed.provider.owned().filter(|pod| is_terminating(pod)),
            observed.provider.unrecorded(),
        ]
        .into_iter()
        .flatten()
        .map(pod_name)
        .collect();
        if remaining.is_empty() {
            let message = if observed.data_node.is_some() { "stopped; the root filesystem is kept" } else { "not started yet" };
            return (Phase::Stopped, message.to_owned());
        }
        return (Phase::Stopped, format!("stopping: waiting for pods {remaining:?} to terminate"));
    }
    if let Found::Unrecorded(pod) = observed.consumer {
        return (Phase::Pending, format!("replacing the workload pod: {}", unrecorded_pod_message(pod, "workload pod")));
    }
    let Some(consumer) = consumer else {
        if let Some(problems) = &observed.spec_problems {
            return (Phase::Failed, problems.clone());
        }
        if !observed.data_node_exists {
            let node = observed.data_node.clone().unwrap_or_default();
            return (
                Phase::Failed,
                format!(
                    "cannot start: node {node:?}, which holds the root filesystem, no longer exists. Delete and recreate this StoppableContainer to start over"
                ),
            );
        }
        return (Phase::Pending, "creating the workload pod".to_owned());
    };
    let base = match consumer {
        PodProgress::Terminating => (Phase::Pending, "waiting for the previous workload pod to terminate".to_owned()),
        PodProgress::Unscheduled { unschedulable: Some(why) } => {
            let pin = observed
                .data_node
                .as_ref()
                .map(|node| format!(" (it is pinned to node {node:?}, which holds the root filesystem)"))
                .unwrap_or_default();
            (Phase::Pending, format!("the workload pod cannot be scheduled{pin}: {why}"))
        }
        PodProgress::Unscheduled { unschedulable: None } => {
            (Phase::Pending, "waiting for the scheduler to place the workload pod".to_owned())
        }
        PodProgress::Stuck { reason, message } => (Phase::Failed, format!("the workload pod is in {reason}: {message}")),
        PodProgress::Finished { succeeded: true, message } => {
            (Phase::Stopped, format!("{message}; set running to false and back to true to start again"))
        }
        PodProgress::Finished { succeeded: false, message } => {
            (Phase::Failed, format!("{message}; set running to false and back to true to start again"))
        }
        PodProgress::Ready => (Phase::Running, "running".to_owned()),
        PodProgress::Creating | PodProgress::NotReady => match provider {
            Some(PodProgress::Ready) if *consumer == PodProgress::Creating => {
                (Phase::ProviderReady, "the provider is ready; the workload pod is mounting the root filesystem and starting".to_owned())
            }
            Some(PodProgress::Ready) => (Phase::ProviderReady, "the workload runs and is not ready yet".to_owned()),
            Some(PodProgress::Stuck { reason, message }) => (Phase::Failed, format!("the provider pod is in {reason}: {message}")),
            Some(PodProgress::Unscheduled { unschedulable: Some(why) }) => (Phase::Pending, format!("the provider pod cannot run: {why}")),
            Some(_) => (Phase::Pending, "the provider pod is starting on the workload pod's node".to_owned()),
            None => match observed.provider {
                Found::Unrecorded(pod) => {
                    (Phase::Pending, format!("replacing the provider pod: {}", unrecorded_pod_message(pod, "provider pod")))
                }
                _ => (Phase::Pending, "creating the provider pod on the workload pod's node".to_owned()),
            },
        },
    };
    match (&observed.spec_problems, base) {
        (Some(problems), (phase, message)) => {
            (phase, format!("{message}; the current spec is invalid and will not start again until fixed: {problems}"))
        }
        (None, base) => base,
    }
}

/// The instance's status, following the StoppableContainer's. `consumer` and `provider` are the
/// operator's own pods; the UIDs written are `recorded` (see [`crate::ownership::recorded_uid`]),
/// never those of pods that were merely found.
pub fn instance_status(
    sc: &StoppableContainerStatus,
    consumer: Option<&Pod>,
    provider: Option<&Pod>,
    recorded: &RecordedPods,
    generation: Option<i64>,
    running: bool,
) -> StoppableContainerInstanceStatus {
    let provider_ready = provider.map(pod_progress) == Some(PodProgress::Ready);
    let phase = match sc.phase.unwrap_or_default() {
        Phase::Running => InstancePhase::Running,
        Phase::Failed => InstancePhase::Failed,
        // The provider a stop keeps does not make the instance Stopping; one being deleted does.
        Phase::Stopped if consumer.is_some() || provider.is_some_and(is_terminating) => InstancePhase::Stopping,
        Phase::Stopped => InstancePhase::Stopped,
        Phase::ProviderReady => InstancePhase::ConsumerStarting,
        Phase::Pending if !running => InstancePhase::Stopping,
        Phase::Pending if provider_ready => InstancePhase::ProviderReady,
        Phase::Pending if provider.is_some() => InstancePhase::ProviderStarting,
        Phase::Pending => InstancePhase::Pending,
    };
    let keep = |wanted: &[&str]| sc.conditions.iter().filter(|c| wanted.contains(&c.type_.as_str())).cloned().collect::<Vec<_>>();
    StoppableContainerInstanceStatus {
        phase: Some(phase),
        message: sc.message.clone(),
        node_name: sc.node_name.clone(),
        provider_pod_name: provider.and_then(|pod| pod.metadata.name.clone()).filter(|_| recorded.provider.is_some()),
        provider_pod_uid: recorded.provider.clone(),
        consumer_pod_name: consumer.and_then(|pod| pod.metadata.name.clone()).filter(|_| recorded.consumer.is_some()),
        consumer_pod_uid: recorded.consumer.clone(),
        conditions: keep(&[condition::READY, condition::PROVIDER_READY, condition::CONSUMER_READY])
            .into_iter()
            .map(|c| Condition { observed_generation: generation, ..c })
            .collect(),
        observed_generation: generation,
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{ContainerState, ContainerStateWaiting, ContainerStatus, PodCondition, PodSpec, PodStatus};
    use k8s_openapi::jiff::Timestamp;

    use super::*;

    fn pod(name: &str, node: Option<&str>, status: PodStatus) -> Pod {
        let mut pod = Pod {
            spec: Some(PodSpec { node_name: node.map(str::to_owned), ..PodSpec::default() }),
            status: Some(status),
            ..Pod::default()
        };
        pod.metadata.name = Some(name.to_owned());
        pod
    }

    fn condition(type_: &str, status: &str, reason: Option<&str>, message: Option<&str>) -> PodCondition {
        PodCondition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.map(str::to_owned),
            message: message.map(str::to_owned),
            ..PodCondition::default()
        }
    }

    fn ready_pod(name: &str) -> Pod {
        pod(
            name,
            Some("n1"),
            PodStatus {
                phase: Some("Running".into()),
                conditions: Some(vec![condition("Ready", "True", None, None)]),
                ..PodStatus::default()
            },
        )
    }

    fn observed<'a>(running: bool, consumer: Found<'a>, provider: Found<'a>) -> Observed<'a> {
        Observed {
            running,
            generation: Some(3),
            spec_problems: None,
            instance_exists: true,
            foreign_instance: None,
            consumer,
            provider,
            data_node: Some("n1".into()),
            data_node_exists: true,
            restart_required: false,
            ignored_host_path_prefix: None,
            provider_loss: None,
        }
    }

    /// The record of an operator that created `consumer` and `provider`.
    fn recorded(consumer: Option<&Pod>, provider: Option<&Pod>) -> RecordedPods {
        let uid = |pod: Option<&Pod>| pod.map(|pod| pod.metadata.uid.clone().unwrap_or_else(|| format!("uid-of-{}", pod_name(pod))));
        RecordedPods { consumer: uid(consumer), provider: uid(provider) }
    }

    fn now() -> Time {
        Time(Timestamp::UNIX_EPOCH)
    }

    fn find<'a>(status: &'a StoppableContainerStatus, type_: &str) -> &'a Condition {
        status.conditions.iter().find(|c| c.type_ == type_).expect("condition present")
    }

    #[test]
    fn ready_pods_make_running_and_ready_true() {
        let (consumer, provider) = (ready_pod("sc"), ready_pod("sc-provider"));
        let status = sc_status(&observed(true, Found::Owned(&consumer), Found::Owned(&provider)), Some("sc".into()), None, now());
        assert_eq!(status.phase, Some(Phase::Running));
        assert_eq!(find(&status, condition::READY).status, "True");
        assert_eq!(find(&status, condition::READY).reason, "Running");
        assert_eq!(find(&status, condition::ROOTFS_VOLUME).reason, "Mounted");
        assert_eq!(status.node_name.as_deref(), Some("n1"));
        assert_eq!(status.observed_generation, Some(3));
    }

    #[test]
    fn crash_loop_and_unschedulable_reasons_reach_the_message() {
        let crashing = pod(
            "sc",
            Some("n1"),
            PodStatus {
                container_statuses: Some(vec![ContainerStatus {
                    name: "main".into(),
                    state: Some(ContainerState {
                        waiting: Some(ContainerStateWaiting {
                            reason: Some("CrashLoopBackOff".into()),
                            message: Some("back-off 40s".into()),
                        }),
                        ..ContainerState::default()
                    }),
                    ..ContainerStatus::default()
                }]),
                ..PodStatus::default()
            },
        );
        let status = sc_status(&observed(true, Found::Owned(&crashing), Found::Absent), None, None, now());
        assert_eq!(status.phase, Some(Phase::Failed));
        assert!(status.message.as_deref().is_some_and(|m| m.contains("CrashLoopBackOff")), "{status:?}");

        let pending = pod(
            "sc",
            None,
            PodStatus {
                conditions: Some(vec![condition(
                    "PodScheduled",
                    "False",
                    Some("Unschedulable"),
                    Some("0/1 nodes are available: 1 Insufficient cpu."),
                )]),
                ..PodStatus::default()
            },
        );
        let status = sc_status(&observed(true, Found::Owned(&pending), Found::Absent), None, None, now());
        assert_eq!(status.phase, Some(Phase::Pending));
        let message = status.message.clone().unwrap_or_default();
        assert!(message.contains("Insufficient cpu") && message.contains("pinned to node \"n1\""), "{message}");
        assert_eq!(find(&status, condition::CONSUMER_READY).reason, "Unschedulable");
    }

    #[test]
    fn foreign_pod_is_a_name_conflict() {
        let stranger = ready_pod("sc");
        let status = sc_status(&observed(true, Found::Foreign(&stranger), Found::Absent), None, None, now());
        assert_eq!(status.phase, Some(Phase::Failed));
        assert_eq!(find(&status, condition::NAME_CONFLICT).status, "True");
        assert_eq!(status.consumer_pod_name, None, "a stranger is not reported as our pod");
    }

    #[test]
    fn foreign_instance_is_a_name_conflict_even_when_stopped() {
        let mut facts = observed(false, Found::Absent, Found::Absent);
        facts.instance_exists = false;
        facts.foreign_instance = Some("sc".into());
        let status = sc_status(&facts, Some("sc".into()), None, now());
        assert_eq!(status.phase, Some(Phase::Failed));
        let conflict = find(&status, condition::NAME_CONFLICT);
        assert_eq!((conflict.status.as_str(), conflict.reason.as_str()), ("True", "InstanceNotOwned"));
        assert_eq!(status.instance_name, None, "a foreign instance is not reported as ours");
    }

    #[test]
    fn stopping_waits_for_pods_and_stopped_keeps_the_data_node() {
        let consumer = ready_pod("sc");
        let stopping = sc_status(&observed(false, Found::Owned(&consumer), Found::Absent), None, None, now());
        assert_eq!(stopping.phase, Some(Phase::Stopped));
        assert!(stopping.message.as_deref().is_some_and(|m| m.starts_with("stopping")));
        let stopped = sc_status(&observed(false, Found::Absent, Found::Absent), None, None, now());
        assert_eq!(stopped.message.as_deref(), Some("stopped; the root filesystem is kept"));
        assert_eq!(stopped.data_node_name.as_deref(), Some("n1"));
    }

    #[test]
    fn a_kept_provider_is_part_of_the_stopped_state_and_a_deleted_one_is_waited_for() {
        let (consumer, provider) = (ready_pod("sc"), ready_pod("sc-provider"));
        let stopping = sc_status(&observed(false, Found::Owned(&consumer), Found::Owned(&provider)), None, None, now());
        assert_eq!(
            stopping.message.as_deref(),
            Some("stopping: waiting for pods [\"sc\"] to terminate"),
            "only the workload pod is waited for"
        );
        assert_eq!(
            instance_status(&stopping, Some(&consumer), Some(&provider), &recorded(Some(&consumer), Some(&provider)), Some(1), false).phase,
            Some(InstancePhase::Stopping)
        );

        let stopped = sc_status(&observed(false, Found::Absent, Found::Owned(&provider)), Some("sc".into()), None, now());
        assert_eq!(stopped.phase, Some(Phase::Stopped));
        assert_eq!(stopped.message.as_deref(), Some("stopped; the root filesystem is kept"));
        assert_eq!(stopped.provider_pod_name.as_deref(), Some("sc-provider"), "the kept provider is reported while it exists");
        assert_eq!(stopped.consumer_pod_name, None);
        assert_eq!(stopped.node_name, None, "no workload pod runs");
        assert_eq!(find(&stopped, condition::READY).status, "False");
        assert_eq!(find(&stopped, condition::PROVIDER_READY).status, "True");
        let instance = instance_status(&stopped, None, Some(&provider), &recorded(None, Some(&provider)), Some(1), false);
        assert_eq!(instance.phase, Some(InstancePhase::Stopped));
        assert_eq!(instance.provider_pod_name.as_deref(), Some("sc-provider"));

        // The instance is being deleted: its provider goes, and that is waited for.
        let mut leaving = ready_pod("sc-provider");
        leaving.metadata.deletion_timestamp = Some(now());
        let stopping = sc_status(&observed(false, Found::Absent, Found::Owned(&leaving)), None, None, now());
        assert_eq!(stopping.phase, Some(Phase::Stopped));
        assert_eq!(stopping.message.as_deref(), Some("stopping: waiting for pods [\"sc-provider\"] to terminate"));
        assert_eq!(
            instance_status(&stopping, None, Some(&leaving), &recorded(None, Some(&leaving)), Some(1), false).phase,
            Some(InstancePhase::Stopping)
        );
    }

    #[test]
    fn gone_data_node_fails_the_start_and_restart_required_is_reported() {
        let mut facts = observed(true, Found::Absent, Found::Absent);
        facts.data_node_exists = false;
        let status = sc_status(&facts, None, None, now());
        assert_eq!(status.phase, Some(Phase::Failed));
        assert_eq!(find(&status, condition::DATA_NODE).reason, "NodeGone");

        let consumer = ready_pod("sc");
        let mut facts = observed(true, Found::Owned(&consumer), Found::Absent);
        facts.restart_required = true;
        facts.ignored_host_path_prefix = Some("/etc".into());
        let status = sc_status(&facts, None, None, now());
        assert_eq!(find(&status, condition::RESTART_REQUIRED).status, "True");
        assert_eq!(find(&status, condition::HOST_PATH_PREFIX_IGNORED).status, "True");
    }

    #[test]
    fn transition_time_is_kept_while_a_condition_holds() {
        let consumer = ready_pod("sc");
        let facts = observed(true, Found::Owned(&consumer), Found::Absent);
        let first = sc_status(&facts, None, None, now());
        let later = Time(Timestamp::from_second(1_000).expect("valid"));
        let second = sc_status(&facts, None, Some(&first), later);
        assert_eq!(find(&second, condition::READY).last_transition_time, now());
    }

    #[test]
    fn instance_phase_follows_the_pods() {
        let consumer = ready_pod("sc");
        let sc = sc_status(&observed(true, Found::Owned(&consumer), Found::Absent), None, None, now());
        let instance = instance_status(&sc, Some(&consumer), None, &recorded(Some(&consumer), None), Some(1), true);
        assert_eq!(instance.phase, Some(InstancePhase::Running));
        assert_eq!(instance.consumer_pod_name.as_deref(), Some("sc"));
        let stopping = sc_status(&observed(false, Found::Owned(&consumer), Found::Absent), None, None, now());
        assert_eq!(
            instance_status(&stopping, Some(&consumer), None, &recorded(Some(&consumer), None), Some(1), false).phase,
            Some(InstancePhase::Stopping)
        );
    }

    #[test]
    fn a_pod_that_claims_to_be_ours_is_reported_as_being_replaced_not_as_ours() {
        let mut forged = ready_pod("sc");
        forged.metadata.uid = Some("forged-uid".into());
        let status = sc_status(&observed(true, Found::Unrecorded(&forged), Found::Absent), Some("sc".into()), None, now());
        assert_eq!(status.phase, Some(Phase::Pending));
        let message = status.message.clone().unwrap_or_default();
        assert!(message.starts_with("replacing the workload pod: pod \"sc\" (uid forged-uid)"), "{message}");
        assert!(message.contains("was not created by the operator"), "{message}");
        assert_eq!(find(&status, condition::CONSUMER_READY).reason, "NotCreatedByOperator");
        assert_eq!(find(&status, condition::NAME_CONFLICT).status, "False", "it is replaced, not a conflict to resolve by hand");
        assert_eq!(status.consumer_pod_name, None, "never reported as ours");
        assert_eq!(status.node_name, None, "its node is not ours either");

        let consumer = ready_pod("sc");
        let mut forged_provider = ready_pod("sc-provider");
        forged_provider.spec = Some(PodSpec::default());
        let status = sc_status(&observed(true, Found::Owned(&consumer), Found::Unrecorded(&forged_provider)), None, None, now());
        assert_eq!(find(&status, condition::PROVIDER_READY).reason, "NotCreatedByOperator");
        assert_eq!(status.provider_pod_name, None);
        let creating = pod("sc", Some("n1"), PodStatus::default());
        let status = sc_status(&observed(true, Found::Owned(&creating), Found::Unrecorded(&forged_provider)), None, None, now());
        assert!(status.message.as_deref().is_some_and(|m| m.starts_with("replacing the provider pod: pod \"sc-provider\"")), "{status:?}");

        let stopping = sc_status(&observed(false, Found::Unrecorded(&forged), Found::Absent), None, None, now());
        assert_eq!(stopping.message.as_deref(), Some("stopping: waiting for pods [\"sc\"] to terminate"), "its deletion is waited for");
    }

    #[test]
    fn the_instance_status_writes_the_recorded_uids_only() {
        let (consumer, provider) = (ready_pod("sc"), ready_pod("sc-provider"));
        let sc = sc_status(&observed(true, Found::Owned(&consumer), Found::Owned(&provider)), None, None, now());
        let record = RecordedPods { consumer: Some("c-uid".into()), provider: Some("p-uid".into()) };
        let instance = instance_status(&sc, Some(&consumer), Some(&provider), &record, Some(1), true);
        assert_eq!((instance.consumer_pod_uid.as_deref(), instance.provider_pod_uid.as_deref()), (Some("c-uid"), Some("p-uid")));
        assert_eq!((instance.consumer_pod_name.as_deref(), instance.provider_pod_name.as_deref()), (Some("sc"), Some("sc-provider")));
        let cleared = instance_status(&sc, None, None, &RecordedPods::default(), Some(1), true);
        assert_eq!((cleared.consumer_pod_uid, cleared.provider_pod_uid, cleared.consumer_pod_name), (None, None, None));
    }

    fn running_consumer() -> Pod {
        ready_pod("sc")
    }

    fn with_phase(mut pod: Pod, phase: &str, reason: &str) -> Pod {
        pod.status = Some(PodStatus {
            phase: Some(phase.into()),
            reason: Some(reason.into()),
            message: Some("The node was low on resource: memory.".into()),
            ..PodStatus::default()
        });
        pod
    }

    #[test]
    fn a_provider_is_lost_only_while_its_workload_runs() {
        let consumer = running_consumer();
        let detect = |consumer: Found<'_>, provider: Found<'_>| detect_provider_loss(consumer, Some("p-uid"), provider, "sc-provider");
        assert_eq!(
            detect(Found::Owned(&consumer), Found::Absent),
            Some(ProviderLoss::Deleted { pod: "sc-provider".into(), uid: "p-uid".into() })
        );
        let stranger = ready_pod("sc-provider");
        assert!(
            matches!(detect(Found::Owned(&consumer), Found::Unrecorded(&stranger)), Some(ProviderLoss::Deleted { .. })),
            "a pod in its place is not it"
        );
        let evicted = with_phase(ready_pod("sc-provider"), "Failed", "Evicted");
        assert_eq!(
            detect(Found::Owned(&consumer), Found::Owned(&evicted)),
            Some(ProviderLoss::Terminated {
                pod: "sc-provider".into(),
                detail: "Failed: Evicted: The node was low on resource: memory.".into()
            })
        );
        let mut leaving = ready_pod("sc-provider");
        leaving.metadata.deletion_timestamp = Some(now());
        assert_eq!(detect(Found::Owned(&consumer), Found::Owned(&leaving)), Some(ProviderLoss::Terminating { pod: "sc-provider".into() }));
        assert_eq!(detect(Found::Owned(&consumer), Found::Owned(&ready_pod("sc-provider"))), None);

        // Never created, or never recorded: created, not lost.
        assert_eq!(detect_provider_loss(Found::Owned(&consumer), None, Found::Absent, "sc-provider"), None);
        // No running workload: nothing uses the lower layer.
        let unbound = pod("sc", None, PodStatus::default());
        let mut stopping = running_consumer();
        stopping.metadata.deletion_timestamp = Some(now());
        let finished = with_phase(running_consumer(), "Succeeded", "Completed");
        for consumer in [&unbound, &stopping, &finished] {
            assert_eq!(detect(Found::Owned(consumer), Found::Absent), None, "{:?}", consumer.status);
        }
        assert_eq!(detect(Found::Absent, Found::Absent), None);
        assert_eq!(detect(Found::Unrecorded(&consumer), Found::Absent), None, "a forged workload pod is not ours to serve");
    }

    #[test]
    fn provider_lost_is_reported_until_the_replacement_is_ready() {
        let consumer = running_consumer();
        let mut facts = observed(true, Found::Owned(&consumer), Found::Absent);
        facts.provider_loss = Some(ProviderLoss::Deleted { pod: "sc-provider".into(), uid: "p-uid".into() });
        let lost = sc_status(&facts, None, None, now());
        let condition = find(&lost, condition::PROVIDER_LOST);
        assert_eq!((condition.status.as_str(), condition.reason.as_str()), ("True", "ProviderDeleted"));
        assert!(condition.message.contains("\"sc-provider\" (uid p-uid) was deleted while the workload runs"), "{}", condition.message);
        assert!(condition.message.contains("a new provider pod is created at once"), "{}", condition.message);
        assert_eq!(lost.phase, Some(Phase::Running), "the workload itself runs on");
        assert!(lost.message.as_deref().is_some_and(|m| m.starts_with("running; provider pod \"sc-provider\"")), "{lost:?}");

        // The next reconcile: the replacement exists and starts; the loss is remembered.
        let starting = pod("sc-provider", Some("n1"), PodStatus::default());
        let replacing = sc_status(&observed(true, Found::Owned(&consumer), Found::Owned(&starting)), None, Some(&lost), now());
        assert_eq!(find(&replacing, condition::PROVIDER_LOST), condition, "unchanged while the replacement starts");
        // Ready: the image is in use again.
        let replacement = ready_pod("sc-provider");
        let recovered = sc_status(&observed(true, Found::Owned(&consumer), Found::Owned(&replacement)), None, Some(&replacing), now());
        let condition = find(&recovered, condition::PROVIDER_LOST);
        assert_eq!((condition.status.as_str(), condition.reason.as_str()), ("False", "ProviderInPlace"));
        assert_eq!(recovered.message.as_deref(), Some("running"));

        // A stop ends it too.
        let stopped = sc_status(&observed(false, Found::Absent, Found::Owned(&starting)), None, Some(&lost), now());
        assert_eq!(find(&stopped, condition::PROVIDER_LOST).reason, "NoWorkload");
    }
}
