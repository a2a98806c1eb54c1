//! The status of a StoppableContainer and its instance, computed from what the operator observed.
//! Pure: the controller gathers the facts, this module says what they mean.

use k8s_openapi::api::core::v1::{Container, Pod, PodSecurityContext};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use sc_api::exec_config::ArgvSource;
use sc_api::image_config::ImageSummary;
use sc_api::process::{ArgvError, ContainerRef, verify_run_as_non_root, working_dir, workload_argv};
use sc_api::stoppable_container::ImageStatus;
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
    /// Whether the workload can run as templated with its image's config (ENTRYPOINT, CMD, USER)
    /// as the data node's container runtime reported it; Unknown until it is reported.
    pub const IMAGE_CONFIG: &str = "ImageConfig";
}

/// Kubelet's waiting reasons for a container whose image is missing or cannot be pulled: the
/// container was never created.
const IMAGE_WAITING_REASONS: &[&str] =
    &["ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName", "ImageInspectError", "RegistryUnavailable"];
/// Kubelet's waiting reasons for a container that could not be created or started from its
/// config (a missing ConfigMap or Secret key, a runtime refusal): it never ran.
const CONFIG_WAITING_REASONS: &[&str] = &["CreateContainerConfigError", "CreateContainerError", "PreCreateHookError", "PreStartHookError"];
/// Kubelet's waiting reasons for a container that ran and keeps failing.
const FAILURE_WAITING_REASONS: &[&str] = &["CrashLoopBackOff", "RunContainerError", "PostStartHookError"];

/// Whether a container waiting for `reason` cannot run until someone acts (fixes the image, the
/// config, or the program): every reason of the three lists above. Others (`ContainerCreating`,
/// `PodInitializing`) pass by themselves.
pub fn is_failing_reason(reason: &str) -> bool {
    [IMAGE_WAITING_REASONS, CONFIG_WAITING_REASONS, FAILURE_WAITING_REASONS].iter().any(|reasons| reasons.contains(&reason))
}

/// Whether a container waiting for `reason` has never run: its image or its config is the
/// problem, not the program.
pub fn is_never_started_reason(reason: &str) -> bool {
    IMAGE_WAITING_REASONS.contains(&reason) || CONFIG_WAITING_REASONS.contains(&reason)
}

/// Reasons that are one problem to a user: kubelet alternates `ErrImagePull` (a pull just
/// failed) and `ImagePullBackOff` (waiting to retry it) for as long as an image cannot be pulled,
/// and an Event per flip would say the same thing over and over.
fn reason_family(reason: &str) -> &str {
    if reason == "ImagePullBackOff" { "ErrImagePull" } else { reason }
}

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

/// The workload container's settings that decide what its image runs, with kubelet's names for
/// its messages.
#[derive(Clone, Copy, Debug)]
pub struct WorkloadProcess<'a> {
    /// The template's workload container (`containers[0]`).
    pub container: &'a Container,
    /// The template's pod securityContext (container settings win over it).
    pub pod_security: Option<&'a PodSecurityContext>,
    /// The workload pod as kubelet names it: `<name>_<namespace>`.
    pub pod: &'a str,
}

impl WorkloadProcess<'_> {
    fn argv_source(&self) -> ArgvSource {
        ArgvSource::of(self.container.command.as_deref(), self.container.args.as_deref())
    }

    /// The words that follow `sc-exec run --`: `command` + `args`, `args` alone, or nothing.
    fn words(&self) -> Vec<String> {
        let list = |words: &Option<Vec<String>>| words.clone().unwrap_or_default();
        match self.argv_source() {
            ArgvSource::Command => [list(&self.container.command), list(&self.container.args)].concat(),
            ArgvSource::ArgsOnly => list(&self.container.args),
            ArgvSource::ImageDefault => Vec::new(),
        }
    }

    fn security<T>(
        &self,
        container: impl Fn(&k8s_openapi::api::core::v1::SecurityContext) -> Option<T>,
        pod: impl Fn(&PodSecurityContext) -> Option<T>,
    ) -> Option<T> {
        self.container.security_context.as_ref().and_then(container).or_else(|| self.pod_security.and_then(pod))
    }

    /// The effective `runAsUser` (container, then pod); a negative one (the API server refuses
    /// it) counts as unset.
    fn run_as_user(&self) -> Option<u32> {
        self.security(|c| c.run_as_user, |p| p.run_as_user).and_then(|uid| u32::try_from(uid).ok())
    }

    fn run_as_non_root(&self) -> bool {
        self.security(|c| c.run_as_non_root, |p| p.run_as_non_root).unwrap_or(false)
    }
}

/// Why the workload cannot run as templated with its image: the `ImageConfig` condition's reason
/// and a message that says what to set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageProblem {
    /// `NoCommand`, `RunAsNonRoot` or `ConfigUnavailable`.
    pub reason: &'static str,
    /// What is wrong and what to set.
    pub message: String,
}

impl ImageProblem {
    /// The status message while the problem holds: no workload pod runs until the template
    /// changes (a start would only crash-loop), and nothing else is undone.
    pub fn phase_message(&self) -> String {
        format!(
            "{}. The workload pod is not started until the template changes; the provider pod and the root filesystem are kept",
            self.message
        )
    }
}

/// What the image's config means for the workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageOutcome {
    /// It runs: the condition's message says what, as whom and where.
    Runs { summary: String },
    /// The runtime gave no config, and the template's `command` does not need it.
    RunsWithoutConfig { reason: String },
    /// It cannot run as templated.
    Cannot(ImageProblem),
    /// The spec is invalid, so what it would run is not evaluated.
    NotEvaluated,
}

/// The image's config as this reconcile judged it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageCheck {
    /// No config of the image the provider runs now is known (none reported yet, or only one of
    /// another image).
    NotReported,
    /// The config of the provider's current image, and what it means for the workload.
    Known { status: Box<ImageStatus>, outcome: ImageOutcome },
}

impl ImageCheck {
    /// What keeps the workload from running, if anything.
    pub fn problem(&self) -> Option<&ImageProblem> {
        match self {
            ImageCheck::Known { outcome: ImageOutcome::Cannot(problem), .. } => Some(problem),
            ImageCheck::NotReported | ImageCheck::Known { .. } => None,
        }
    }

    /// `status.image`.
    pub fn status(&self) -> Option<ImageStatus> {
        match self {
            ImageCheck::Known { status, .. } => Some((**status).clone()),
            ImageCheck::NotReported => None,
        }
    }

    /// The problem that stops the workload pod, given that pod as found: a workload pod that
    /// runs and is ready is never stopped for it (the check is the operator's reading of the
    /// image, and a ready workload proves it ran); any other one, or none, is.
    pub fn blocking(&self, consumer: Option<&Pod>) -> Option<&ImageProblem> {
        self.problem().filter(|_| consumer.map(pod_progress) != Some(PodProgress::Ready))
    }
}

/// `status.image` for a reported summary (no argv yet).
pub fn image_status(summary: &ImageSummary) -> ImageStatus {
    let non_empty = |text: &str| (!text.is_empty()).then(|| text.to_owned());
    ImageStatus {
        image_ref: summary.image_ref.clone(),
        entrypoint: summary.entrypoint.clone(),
        cmd: summary.cmd.clone(),
        user: non_empty(&summary.user),
        working_dir: non_empty(&summary.working_dir),
        command: None,
        unavailable: summary.unavailable.clone(),
    }
}

/// The summary a `status.image` was made from (to judge a new template against the image the
/// status already describes).
pub fn image_summary(status: &ImageStatus) -> ImageSummary {
    ImageSummary {
        image_ref: status.image_ref.clone(),
        entrypoint: status.entrypoint.clone(),
        cmd: status.cmd.clone(),
        user: status.user.clone().unwrap_or_default(),
        working_dir: status.working_dir.clone().unwrap_or_default(),
        unavailable: status.unavailable.clone(),
    }
}

/// Judges the workload `process` (None: the spec is invalid) against `summary`, the config of the
/// image the provider runs now (None: not known), by Kubernetes' rules: what argv the template
/// and the image make, and kubelet's `runAsNonRoot` check.
pub fn check_image(summary: Option<&ImageSummary>, process: Option<WorkloadProcess<'_>>) -> ImageCheck {
    let Some(summary) = summary else { return ImageCheck::NotReported };
    let mut status = image_status(summary);
    let outcome = match process {
        Some(process) => judge_image(summary, process, &mut status),
        None => ImageOutcome::NotEvaluated,
    };
    ImageCheck::Known { status: Box::new(status), outcome }
}

/// [`check_image`] for a known image and a valid spec; `status` gets the argv when there is one.
fn judge_image(summary: &ImageSummary, process: WorkloadProcess<'_>, status: &mut ImageStatus) -> ImageOutcome {
    let cannot = |reason, message| ImageOutcome::Cannot(ImageProblem { reason, message });
    let config = summary.config();
    let runtime_said = || summary.unavailable.clone().unwrap_or_default();
    let argv = match workload_argv(process.argv_source(), &process.words(), config.as_ref()) {
        Ok(argv) => argv,
        Err(error @ ArgvError::NoCommand) => {
            return cannot("NoCommand", format!("image {:?} cannot run as templated: {error}", summary.image_ref));
        }
        Err(error @ ArgvError::ImageConfigUnknown { .. }) => {
            let message = format!("image {:?} cannot run as templated: {error} (the runtime said: {})", summary.image_ref, runtime_said());
            return cannot("ConfigUnavailable", message);
        }
    };
    status.command = Some(argv.clone());
    let container = process.container.name.as_str();
    let non_root = process.run_as_non_root();
    let run_as_user = process.run_as_user();
    let Some(config) = config else {
        if non_root && run_as_user.is_none() {
            let message = format!(
                "image {:?} cannot run as templated: the container runtime gave no config for the image, so its USER is unknown and runAsNonRoot cannot be verified (the runtime said: {}); set `runAsUser` to a non-zero uid in the container's or the pod's securityContext",
                summary.image_ref,
                runtime_said()
            );
            return cannot("ConfigUnavailable", message);
        }
        return ImageOutcome::RunsWithoutConfig { reason: runtime_said() };
    };
    if let Err(refusal) = verify_run_as_non_root(non_root, run_as_user, &config.user, ContainerRef { pod: process.pod, container }) {
        let message = format!(
            "image {:?} cannot run as templated: {refusal}; set `runAsUser` to a non-zero uid in the container's or the pod's securityContext, or use an image whose USER is a non-zero numeric uid",
            summary.image_ref
        );
        return cannot("RunAsNonRoot", message);
    }
    let user = match (run_as_user, config.user.as_str()) {
        (Some(uid), _) => format!("uid {uid} (runAsUser)"),
        (None, "") => "root (the image sets no USER)".to_owned(),
        (None, user) => format!("the image's user {user:?}"),
    };
    let directory = working_dir(process.container.working_dir.as_deref(), Some(&config));
    ImageOutcome::Runs { summary: format!("the workload runs {argv:?} as {user}, in {directory:?}") }
}

/// Why a start that never got going is to be redone, if it is: the template (or the provider
/// settings) changed since it was deployed, and its provider or workload pod waits on an image or
/// a container config (`ErrImageNeverPull`, `CreateContainerConfigError`, ...) with no workload
/// container ever having run. Kubelet would retry the old image forever; the user fixed the
/// template, so the start is made again from it. Nothing ran, so nothing is lost: the workload pod
/// goes (which is a stop), and a provider whose container was never created goes with it.
pub fn start_to_redo(consumer: Found<'_>, provider: Found<'_>, template_changed: bool) -> Option<StuckStart> {
    let consumer = consumer.owned().filter(|pod| template_changed && !is_terminating(pod))?;
    let stuck = |pod: &Pod| match pod_progress(pod) {
        PodProgress::Stuck { reason, message } if is_never_started_reason(&reason) => Some((reason, message)),
        _ => None,
    };
    if let Some((reason, message)) = stuck(consumer) {
        return Some(StuckStart { role: "workload", reason, message, replace_provider: false });
    }
    let provider = provider.owned()?;
    let consumer_never_ran = matches!(pod_progress(consumer), PodProgress::Creating | PodProgress::Unscheduled { .. });
    let (reason, message) = stuck(provider).filter(|_| consumer_never_ran)?;
    Some(StuckStart { role: "provider", reason, message, replace_provider: provider_container_never_created(provider) })
}

/// A start stuck before anything ran (see [`start_to_redo`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StuckStart {
    /// Which pod is stuck: `workload` or `provider`.
    pub role: &'static str,
    /// Kubelet's reason.
    pub reason: String,
    /// Kubelet's message, with the container's name.
    pub message: String,
    /// The provider's container was never created (no root filesystem of it ever existed, so no
    /// overlay can use it): it can go at once, with the workload pod.
    pub replace_provider: bool,
}

impl StuckStart {
    /// Why the pods are deleted, for the Events.
    pub fn why(&self) -> String {
        format!(
            "the start never got going (the {} pod is in {}: {}) and the template changed since: the start is made again from the new template",
            self.role, self.reason, self.message
        )
    }
}

/// Whether no container of the provider's image was ever created: the provider container's
/// status has no container ID (kubelet sets it when the runtime created the container).
fn provider_container_never_created(provider: &Pod) -> bool {
    let statuses = provider.status.as_ref().and_then(|status| status.container_statuses.as_ref());
    let rootfs = statuses.into_iter().flatten().find(|status| status.name == sc_api::consts::PROVIDER_CONTAINER_NAME);
    rootfs.is_none_or(|status| status.container_id.as_deref().is_none_or(str::is_empty))
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
    /// The image's config, judged against the template the workload pod runs (or a start would
    /// run).
    pub image: ImageCheck,
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
            if is_failing_reason(&reason) {
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
        Some(problems) => conditions.set(condition::SPEC_VALID, false, "InvalidSpec", problems.clone()),
        None => conditions.set(condition::SPEC_VALID, true, "Valid", "the spec is valid"),
    }
    let not_ours =
        |pod: &Pod| (false, "PodNotOwned".to_owned(), format!("pod {:?} exists and is not this StoppableContainer's", pod_name(pod)));
    let (consumer_ready, consumer_reason, consumer_message) = match (&observed.consumer, &consumer_progress) {
        (Found::Foreign(pod), _) => not_ours(pod),
        (Found::Unrecorded(pod), _) => (false, "NotCreatedByOperator".to_owned(), unrecorded_pod_message(pod, "workload pod")),
        (_, None) => (false, "NotCreated".to_owned(), "no workload pod".to_owned()),
        (_, Some(progress)) => progress_condition(progress),
    };
    conditions.set(condition::CONSUMER_READY, consumer_ready, &consumer_reason, consumer_message);
    let (provider_ready, provider_reason, provider_message) = match (&observed.provider, &provider_progress) {
        (Found::Foreign(pod), _) => not_ours(pod),
        (Found::Unrecorded(pod), _) => (false, "NotCreatedByOperator".to_owned(), unrecorded_pod_message(pod, "provider pod")),
        (_, None) => (
            false,
            "NotCreated".to_owned(),
            "no provider pod (it is created on the data node with the workload pod; at the first start, once that pod is scheduled)"
                .to_owned(),
        ),
        (_, Some(progress)) => progress_condition(progress),
    };
    conditions.set(condition::PROVIDER_READY, provider_ready, &provider_reason, provider_message);
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
    match &observed.image {
        ImageCheck::NotReported => conditions.set_status(
            condition::IMAGE_CONFIG,
            "Unknown",
            "NotReported",
            "the config of the image the provider pod runs is not known yet: the data node's CSI plugin reports it when a workload pod mounts the root filesystem",
        ),
        ImageCheck::Known { outcome: ImageOutcome::Runs { summary }, .. } => {
            conditions.set(condition::IMAGE_CONFIG, true, "Resolved", summary.clone())
        }
        ImageCheck::Known { outcome: ImageOutcome::RunsWithoutConfig { reason }, status } => conditions.set(
            condition::IMAGE_CONFIG,
            true,
            "TemplateCommand",
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
            "InvalidSpec",
            "the image's config is known, and what the spec would run with it is not evaluated while the spec is invalid (see SpecValid)",
        ),
    }
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
        image: observed.image.status(),
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

/// A pod's readiness condition: ready or not, the reason and the message. A stuck container's
/// reason is kubelet's own (`ErrImageNeverPull`, `CrashLoopBackOff`, ...), with kubelet's message.
fn progress_condition(progress: &PodProgress) -> (bool, String, String) {
    let (ready, reason, message) = match progress {
        PodProgress::Terminating => (false, "Terminating", "the pod is terminating".to_owned()),
        PodProgress::Unscheduled { unschedulable: Some(why) } => (false, "Unschedulable", why.clone()),
        PodProgress::Unscheduled { unschedulable: None } => (false, "Scheduling", "waiting for the scheduler".to_owned()),
        PodProgress::Stuck { reason, message } => return (false, reason.clone(), message.clone()),
        PodProgress::Creating => (false, "ContainerCreating", "containers are being created".to_owned()),
        PodProgress::NotReady => (false, "NotReady", "containers run but are not ready".to_owned()),
        PodProgress::Ready => (true, "PodReady", "the pod is ready".to_owned()),
        PodProgress::Finished { message, .. } => (false, "PodFinished", message.clone()),
    };
    (ready, reason.to_owned(), message)
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
    if let Some(problem) = observed.image.blocking(observed.consumer.owned()) {
        return (Phase::Failed, problem.phase_message());
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

/// An Event to publish about a change of status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// A Warning (else Normal).
    pub warning: bool,
    /// The Event's reason.
    pub reason: String,
    /// The Event's note.
    pub note: String,
}

impl Notice {
    fn warning(reason: &str, note: impl Into<String>) -> Self {
        Notice { warning: true, reason: reason.to_owned(), note: note.into() }
    }
}

/// The Events that the change from `previous` to `status` calls for. The previous status is the
/// memory (so an operator restart repeats nothing): each is said once, when it becomes true.
///
/// - A pod that gets stuck on a failing reason (`ErrImageNeverPull`, `CrashLoopBackOff`, ...): a
///   Warning with kubelet's reason and message, once per transition into that reason
///   (`ErrImagePull` and `ImagePullBackOff`, which kubelet alternates, are one).
/// - `ImageConfig` turning False, or False for another reason: a Warning with that reason.
/// - A phase change: an Event named after the new phase (a Warning for Failed, unless one of the
///   Warnings above already says why).
/// - `ProviderLost` whenever what is lost changes; `RestartRequired`, `NameConflict`,
///   `HostPathPrefixIgnored` turning True; `SpecValid` turning False (or False at the first
///   status).
pub fn transition_notices(previous: Option<&StoppableContainerStatus>, status: &StoppableContainerStatus) -> Vec<Notice> {
    let before = |type_: &str| previous.and_then(|previous| previous.conditions.iter().find(|c| c.type_ == type_));
    let mut notices = Vec::new();
    for (type_, role) in [(condition::CONSUMER_READY, "workload"), (condition::PROVIDER_READY, "provider")] {
        let Some(current) = status.conditions.iter().find(|c| c.type_ == type_) else { continue };
        if current.status != "False" || !is_failing_reason(&current.reason) {
            continue;
        }
        let was = before(type_).filter(|old| old.status == "False").map(|old| reason_family(&old.reason));
        if was != Some(reason_family(&current.reason)) {
            notices.push(Notice::warning(&current.reason, format!("the {role} pod is in {}: {}", current.reason, current.message)));
        }
    }
    if let Some(current) = status.conditions.iter().find(|c| c.type_ == condition::IMAGE_CONFIG && c.status == "False") {
        let was = before(condition::IMAGE_CONFIG).filter(|old| old.status == "False").map(|old| old.reason.as_str());
        if was != Some(current.reason.as_str()) {
            notices.push(Notice::warning(&current.reason, current.message.clone()));
        }
    }
    let explained = !notices.is_empty();
    let old_phase = previous.and_then(|status| status.phase);
    let new_phase = status.phase.unwrap_or_default();
    if old_phase != Some(new_phase) && !(new_phase == Phase::Failed && explained) {
        notices.push(Notice {
            warning: new_phase == Phase::Failed,
            reason: new_phase.as_str().to_owned(),
            note: status.message.clone().unwrap_or_default(),
        });
    }
    let was_true = |type_: &str| before(type_).is_some_and(|old| old.status == "True");
    for current in &status.conditions {
        if current.type_ == condition::PROVIDER_LOST {
            // Whenever what is lost changes (a provider being deleted, then gone; a replacement
            // lost before it was ready), not again while the same loss lasts.
            let unchanged = before(&current.type_)
                .is_some_and(|old| old.status == current.status && old.reason == current.reason && old.message == current.message);
            if current.status == "True" && !unchanged {
                notices.push(Notice::warning(condition::PROVIDER_LOST, current.message.clone()));
            }
            continue;
        }
        let newly = match (current.type_.as_str(), current.status.as_str()) {
            (condition::RESTART_REQUIRED | condition::NAME_CONFLICT | condition::HOST_PATH_PREFIX_IGNORED, "True") => {
                !was_true(&current.type_)
            }
            (condition::SPEC_VALID, "False") => previous.is_none() || was_true(&current.type_),
            _ => false,
        };
        if newly {
            notices.push(Notice::warning(&current.reason, current.message.clone()));
        }
    }
    notices
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
            image: ImageCheck::NotReported,
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

    /// A pod bound to n1 whose container `container` waits with `reason` (in its init containers
    /// when `init`).
    fn waiting(name: &str, container: &str, init: bool, reason: &str, message: &str) -> Pod {
        let statuses = Some(vec![ContainerStatus {
            name: container.into(),
            state: Some(ContainerState {
                waiting: Some(ContainerStateWaiting { reason: Some(reason.into()), message: Some(message.into()) }),
                ..ContainerState::default()
            }),
            ..ContainerStatus::default()
        }]);
        let status = if init {
            PodStatus { phase: Some("Pending".into()), init_container_statuses: statuses, ..PodStatus::default() }
        } else {
            PodStatus { phase: Some("Pending".into()), container_statuses: statuses, ..PodStatus::default() }
        };
        pod(name, Some("n1"), status)
    }

    fn creating_consumer() -> Pod {
        waiting("sc", "main", false, "ContainerCreating", "")
    }

    const NEVER_PULL: &str = "Container image \"registry.test/missing:1\" is not present with pull policy of Never";

    #[test]
    fn every_failing_reason_of_either_pod_reaches_the_phase_the_condition_and_the_message() {
        for reason in [
            "ErrImagePull",
            "ImagePullBackOff",
            "ErrImageNeverPull",
            "InvalidImageName",
            "CreateContainerConfigError",
            "CreateContainerError",
            "CrashLoopBackOff",
        ] {
            let kubelet_says = format!("{reason} said by kubelet");
            let consumer = creating_consumer();
            let provider = waiting("sc-provider", "rootfs", false, reason, &kubelet_says);
            let status = sc_status(&observed(true, Found::Owned(&consumer), Found::Owned(&provider)), None, None, now());
            assert_eq!(status.phase, Some(Phase::Failed), "{reason}");
            assert_eq!(
                status.message.as_deref(),
                Some(format!("the provider pod is in {reason}: container \"rootfs\": {kubelet_says}").as_str())
            );
            let provider_ready = find(&status, condition::PROVIDER_READY);
            assert_eq!((provider_ready.status.as_str(), provider_ready.reason.as_str()), ("False", reason));
            assert_eq!(provider_ready.message, format!("container \"rootfs\": {kubelet_says}"));

            let stuck = waiting("sc", "main", false, reason, &kubelet_says);
            let status = sc_status(&observed(true, Found::Owned(&stuck), Found::Absent), None, None, now());
            assert_eq!(status.phase, Some(Phase::Failed), "{reason}");
            assert_eq!(
                status.message.as_deref(),
                Some(format!("the workload pod is in {reason}: container \"main\": {kubelet_says}").as_str())
            );
            assert_eq!(find(&status, condition::CONSUMER_READY).reason, reason);
        }
    }

    #[test]
    fn a_missing_image_under_pull_policy_never_fails_the_start_instead_of_leaving_it_starting() {
        let consumer = creating_consumer();
        let provider = waiting("sc-provider", "rootfs", false, "ErrImageNeverPull", NEVER_PULL);
        let status = sc_status(&observed(true, Found::Owned(&consumer), Found::Owned(&provider)), None, None, now());
        assert_eq!(status.phase, Some(Phase::Failed));
        assert_eq!(
            status.message.as_deref(),
            Some(format!("the provider pod is in ErrImageNeverPull: container \"rootfs\": {NEVER_PULL}").as_str())
        );
        // Passing states are still just starting.
        let pulling = waiting("sc-provider", "rootfs", false, "ContainerCreating", "");
        let status = sc_status(&observed(true, Found::Owned(&consumer), Found::Owned(&pulling)), None, None, now());
        assert_eq!(status.phase, Some(Phase::Pending));
        assert_eq!(status.message.as_deref(), Some("the provider pod is starting on the workload pod's node"));
    }

    #[test]
    fn an_init_containers_waiting_state_counts_too() {
        let consumer = creating_consumer();
        let provider = waiting("sc-provider", "install-sc-exec", true, "ImagePullBackOff", "Back-off pulling image \"wrapper:1\"");
        let status = sc_status(&observed(true, Found::Owned(&consumer), Found::Owned(&provider)), None, None, now());
        assert_eq!(status.phase, Some(Phase::Failed));
        assert_eq!(
            status.message.as_deref(),
            Some("the provider pod is in ImagePullBackOff: container \"install-sc-exec\": Back-off pulling image \"wrapper:1\"")
        );
        let sidecar_init = waiting("sc", "fetch-config", true, "CreateContainerConfigError", "secret \"db\" not found");
        let status = sc_status(&observed(true, Found::Owned(&sidecar_init), Found::Absent), None, None, now());
        assert_eq!(status.phase, Some(Phase::Failed));
        assert_eq!(find(&status, condition::CONSUMER_READY).reason, "CreateContainerConfigError");
        assert_eq!(find(&status, condition::CONSUMER_READY).message, "container \"fetch-config\": secret \"db\" not found");
    }

    fn notice_reasons(notices: &[Notice]) -> Vec<(bool, &str)> {
        notices.iter().map(|notice| (notice.warning, notice.reason.as_str())).collect()
    }

    #[test]
    fn a_stuck_pod_is_warned_about_once_per_transition_into_its_reason() {
        let consumer = creating_consumer();
        let provider = pod("sc-provider", Some("n1"), PodStatus::default());
        let starting = sc_status(&observed(true, Found::Owned(&consumer), Found::Owned(&provider)), None, None, now());
        let stuck_provider = waiting("sc-provider", "rootfs", false, "ErrImageNeverPull", NEVER_PULL);
        let stuck = sc_status(&observed(true, Found::Owned(&consumer), Found::Owned(&stuck_provider)), None, Some(&starting), now());

        let notices = transition_notices(Some(&starting), &stuck);
        assert_eq!(
            notices,
            [Notice {
                warning: true,
                reason: "ErrImageNeverPull".into(),
                note: format!("the provider pod is in ErrImageNeverPull: container \"rootfs\": {NEVER_PULL}"),
            }],
            "one Warning, in kubelet's words; no second, generic one for the phase"
        );
        // The next reconcile, or an operator restarted since: the status remembers it was said.
        let again = sc_status(&observed(true, Found::Owned(&consumer), Found::Owned(&stuck_provider)), None, Some(&stuck), now());
        assert_eq!(transition_notices(Some(&stuck), &again), []);

        // Kubelet alternates ErrImagePull and ImagePullBackOff while a pull keeps failing: one problem.
        let pull_failed = waiting("sc-provider", "rootfs", false, "ErrImagePull", "pull access denied");
        let pull = sc_status(&observed(true, Found::Owned(&consumer), Found::Owned(&pull_failed)), None, Some(&starting), now());
        assert_eq!(notice_reasons(&transition_notices(Some(&starting), &pull)), [(true, "ErrImagePull")]);
        let backing_off = waiting("sc-provider", "rootfs", false, "ImagePullBackOff", "Back-off pulling image");
        let backoff = sc_status(&observed(true, Found::Owned(&consumer), Found::Owned(&backing_off)), None, Some(&pull), now());
        assert_eq!(find(&backoff, condition::PROVIDER_READY).reason, "ImagePullBackOff", "the condition shows kubelet's current reason");
        assert_eq!(transition_notices(Some(&pull), &backoff), []);
        let pull_again = sc_status(&observed(true, Found::Owned(&consumer), Found::Owned(&pull_failed)), None, Some(&backoff), now());
        assert_eq!(transition_notices(Some(&backoff), &pull_again), []);

        // Another reason is another transition.
        let config_error = waiting("sc-provider", "rootfs", false, "CreateContainerError", "no such file");
        let other = sc_status(&observed(true, Found::Owned(&consumer), Found::Owned(&config_error)), None, Some(&pull_again), now());
        assert_eq!(notice_reasons(&transition_notices(Some(&pull_again), &other)), [(true, "CreateContainerError")]);

        // Fixed: the phases are reported as before, and getting stuck again is a new transition.
        let ready_provider = ready_pod("sc-provider");
        let mounting = sc_status(&observed(true, Found::Owned(&consumer), Found::Owned(&ready_provider)), None, Some(&other), now());
        assert_eq!(notice_reasons(&transition_notices(Some(&other), &mounting)), [(false, "ProviderReady")]);
        let relapse = sc_status(&observed(true, Found::Owned(&consumer), Found::Owned(&config_error)), None, Some(&mounting), now());
        assert_eq!(notice_reasons(&transition_notices(Some(&mounting), &relapse)), [(true, "CreateContainerError")]);
    }

    #[test]
    fn a_crash_loop_is_warned_about_when_it_starts_and_after_each_recovery() {
        let running = sc_status(&observed(true, Found::Owned(&ready_pod("sc")), Found::Absent), None, None, now());
        let crashing = waiting("sc", "main", false, "CrashLoopBackOff", "back-off 20s restarting failed container=main");
        let looping = sc_status(&observed(true, Found::Owned(&crashing), Found::Absent), None, Some(&running), now());
        let notices = transition_notices(Some(&running), &looping);
        assert_eq!(notice_reasons(&notices), [(true, "CrashLoopBackOff")]);
        assert_eq!(
            notices[0].note,
            "the workload pod is in CrashLoopBackOff: container \"main\": back-off 20s restarting failed container=main"
        );
        let still = sc_status(&observed(true, Found::Owned(&crashing), Found::Absent), None, Some(&looping), now());
        assert_eq!(transition_notices(Some(&looping), &still), []);
    }

    #[test]
    fn the_other_transitions_are_reported_as_before() {
        let consumer = ready_pod("sc");
        let mut facts = observed(true, Found::Owned(&consumer), Found::Absent);
        facts.spec_problems = Some("invalid spec: x".into());
        let first = sc_status(&facts, None, None, now());
        assert_eq!(notice_reasons(&transition_notices(None, &first)), [(false, "Running"), (true, "InvalidSpec")]);
        assert_eq!(transition_notices(Some(&first), &first), []);
        facts.spec_problems = None;
        facts.restart_required = true;
        let changed = sc_status(&facts, None, Some(&first), now());
        assert_eq!(notice_reasons(&transition_notices(Some(&first), &changed)), [(true, "TemplateChanged")]);
        let failed = sc_status(&observed(true, Found::Absent, Found::Foreign(&ready_pod("sc-provider"))), None, Some(&changed), now());
        assert_eq!(notice_reasons(&transition_notices(Some(&changed), &failed)), [(true, "Failed"), (true, "PodNotOwned")]);
    }

    fn summary(entrypoint: &[&str], cmd: &[&str], user: &str) -> ImageSummary {
        let words = |list: &[&str]| list.iter().map(|word| (*word).to_owned()).collect();
        ImageSummary {
            image_ref: "registry.test/app@sha256:1111".into(),
            entrypoint: words(entrypoint),
            cmd: words(cmd),
            user: user.into(),
            working_dir: "/srv".into(),
            unavailable: None,
        }
    }

    fn unavailable() -> ImageSummary {
        ImageSummary {
            image_ref: "registry.test/app@sha256:1111".into(),
            unavailable: Some("the runtime does not answer ImageStatus with verbose info".into()),
            ..ImageSummary::default()
        }
    }

    fn container(command: Option<&[&str]>, args: Option<&[&str]>) -> Container {
        let words = |list: &[&str]| list.iter().map(|word| (*word).to_owned()).collect();
        Container { name: "main".into(), command: command.map(words), args: args.map(words), ..Container::default() }
    }

    fn non_root(mut container: Container, run_as_user: Option<i64>) -> Container {
        container.security_context =
            Some(k8s_openapi::api::core::v1::SecurityContext { run_as_non_root: Some(true), run_as_user, ..Default::default() });
        container
    }

    fn check(summary: Option<&ImageSummary>, container: &Container) -> ImageCheck {
        check_image(summary, Some(WorkloadProcess { container, pod_security: None, pod: "sc_team-a" }))
    }

    fn problem_of(check: &ImageCheck) -> (&'static str, String) {
        let problem = check.problem().unwrap_or_else(|| panic!("a problem: {check:?}"));
        (problem.reason, problem.message.clone())
    }

    #[test]
    fn the_image_config_resolves_the_command_the_workload_runs() {
        let nginx = summary(&["/docker-entrypoint.sh"], &["nginx", "-g", "daemon off;"], "");
        let resolved = check(Some(&nginx), &container(None, None));
        let ImageCheck::Known { status, outcome } = &resolved else { panic!("known: {resolved:?}") };
        assert_eq!(
            status.command.as_deref(),
            Some(&["/docker-entrypoint.sh".to_owned(), "nginx".into(), "-g".into(), "daemon off;".into()][..])
        );
        assert_eq!(
            (status.image_ref.as_str(), status.working_dir.as_deref(), status.user.as_deref()),
            (nginx.image_ref.as_str(), Some("/srv"), None)
        );
        assert_eq!(
            outcome,
            &ImageOutcome::Runs {
                summary: r#"the workload runs ["/docker-entrypoint.sh", "nginx", "-g", "daemon off;"] as root (the image sets no USER), in "/srv""#.into()
            }
        );
        let args_only = check(Some(&nginx), &container(None, Some(&["nginx-debug"])));
        assert_eq!(
            args_only.status().and_then(|status| status.command),
            Some(vec!["/docker-entrypoint.sh".to_owned(), "nginx-debug".into()])
        );
        let jovyan = summary(&[], &["start-notebook.sh"], "jovyan");
        let mut own_dir = container(Some(&["sleep"]), Some(&["infinity"]));
        own_dir.working_dir = Some("/work".into());
        let ImageCheck::Known { outcome: ImageOutcome::Runs { summary }, .. } = check(Some(&jovyan), &own_dir) else { panic!("runs") };
        assert_eq!(summary, r#"the workload runs ["sleep", "infinity"] as the image's user "jovyan", in "/work""#);
        let as_uid = non_root(container(None, None), Some(1000));
        let ImageCheck::Known { outcome: ImageOutcome::Runs { summary }, .. } = check(Some(&jovyan), &as_uid) else { panic!("runs") };
        assert_eq!(summary, r#"the workload runs ["start-notebook.sh"] as uid 1000 (runAsUser), in "/srv""#);

        let status = sc_status(
            &Observed {
                image: check(Some(&nginx), &container(None, None)),
                ..observed(true, Found::Owned(&ready_pod("sc")), Found::Absent)
            },
            None,
            None,
            now(),
        );
        let image_config = find(&status, condition::IMAGE_CONFIG);
        assert_eq!((image_config.status.as_str(), image_config.reason.as_str()), ("True", "Resolved"));
        assert_eq!(status.image.and_then(|image| image.command).map(|argv| argv.len()), Some(4));
        assert_eq!(status.phase, Some(Phase::Running));
    }

    #[test]
    fn an_image_with_no_command_and_a_template_without_one_cannot_run() {
        let scratch = summary(&[], &[], "");
        let (reason, message) = problem_of(&check(Some(&scratch), &container(None, None)));
        assert_eq!(reason, "NoCommand");
        assert_eq!(
            message,
            "image \"registry.test/app@sha256:1111\" cannot run as templated: no command specified: the image defines neither ENTRYPOINT nor CMD and the container sets no `command`; set `command` (and `args`) in the pod template"
        );
        assert_eq!(check(Some(&scratch), &container(Some(&["/bin/app"]), None)).problem(), None, "the template's command is enough");
        let (reason, _) = problem_of(&check(Some(&summary(&[""], &[], "")), &container(None, None)));
        assert_eq!(reason, "NoCommand", "an empty ENTRYPOINT is none");
    }

    #[test]
    fn run_as_non_root_refuses_a_root_or_unverifiable_image_user_in_kubelets_words() {
        let cases = [
            ("", None, "container has runAsNonRoot and image will run as root (pod: \"sc_team-a\", container: main)"),
            ("0:0", None, "container has runAsNonRoot and image will run as root (pod: \"sc_team-a\", container: main)"),
            (
                "jovyan",
                None,
                "container has runAsNonRoot and image has non-numeric user (jovyan), cannot verify user is non-root (pod: \"sc_team-a\", container: main)",
            ),
            ("1000", Some(0), "container's runAsUser breaks non-root policy (pod: \"sc_team-a\", container: main)"),
        ];
        for (user, run_as_user, kubelet) in cases {
            let image = summary(&["/init"], &[], user);
            let (reason, message) = problem_of(&check(Some(&image), &non_root(container(None, None), run_as_user)));
            assert_eq!(reason, "RunAsNonRoot", "{user:?}");
            assert_eq!(
                message,
                format!(
                    "image \"registry.test/app@sha256:1111\" cannot run as templated: {kubelet}; set `runAsUser` to a non-zero uid in the container's or the pod's securityContext, or use an image whose USER is a non-zero numeric uid"
                )
            );
        }
        // The pod's securityContext counts when the container sets nothing.
        let image = summary(&["/init"], &[], "");
        let pod_security = PodSecurityContext { run_as_non_root: Some(true), ..PodSecurityContext::default() };
        let plain = container(None, None);
        let from_pod =
            check_image(Some(&image), Some(WorkloadProcess { container: &plain, pod_security: Some(&pod_security), pod: "sc_team-a" }));
        assert_eq!(problem_of(&from_pod).0, "RunAsNonRoot");
        assert_eq!(check(Some(&summary(&["/init"], &[], "1000:100")), &non_root(container(None, None), None)).problem(), None);
        assert_eq!(check(Some(&image), &non_root(container(None, None), Some(1000))).problem(), None);
    }

    #[test]
    fn a_config_the_runtime_did_not_give_blocks_only_what_needs_it() {
        let missing = unavailable();
        let (reason, message) = problem_of(&check(Some(&missing), &container(None, None)));
        assert_eq!(reason, "ConfigUnavailable");
        assert_eq!(
            message,
            "image \"registry.test/app@sha256:1111\" cannot run as templated: the container runtime gave no config for the image, so its ENTRYPOINT and CMD is unknown; set `command` in the pod template (the runtime said: the runtime does not answer ImageStatus with verbose info)"
        );
        assert_eq!(problem_of(&check(Some(&missing), &container(None, Some(&["-v"])))).0, "ConfigUnavailable");
        let (reason, message) = problem_of(&check(Some(&missing), &non_root(container(Some(&["app"]), None), None)));
        assert_eq!(reason, "ConfigUnavailable");
        assert!(
            message.contains("its USER is unknown and runAsNonRoot cannot be verified") && message.contains("set `runAsUser`"),
            "{message}"
        );

        // Not needed: said in the condition only.
        let with_command = check(Some(&missing), &container(Some(&["sleep", "infinity"]), None));
        assert_eq!(with_command.problem(), None);
        let consumer = ready_pod("sc");
        let status =
            sc_status(&Observed { image: with_command, ..observed(true, Found::Owned(&consumer), Found::Absent) }, None, None, now());
        assert_eq!(status.phase, Some(Phase::Running));
        let image_config = find(&status, condition::IMAGE_CONFIG);
        assert_eq!((image_config.status.as_str(), image_config.reason.as_str()), ("True", "TemplateCommand"));
        assert_eq!(
            image_config.message,
            "the container runtime gave no config for image \"registry.test/app@sha256:1111\" (the runtime does not answer ImageStatus with verbose info); the template's command runs as written, and the image's ENV, USER and WORKDIR are unknown"
        );
        let image = status.image.expect("status.image");
        assert_eq!((image.unavailable.is_some(), image.command), (true, Some(vec!["sleep".to_owned(), "infinity".into()])));
    }

    #[test]
    fn an_image_that_cannot_run_fails_the_start_says_what_to_set_and_is_warned_about_once() {
        let blocked = check(Some(&summary(&[], &[], "")), &container(None, None));
        let crashing = waiting("sc", "main", false, "CrashLoopBackOff", "back-off 10s");
        let provider = ready_pod("sc-provider");
        let before = sc_status(&observed(true, Found::Owned(&crashing), Found::Owned(&provider)), None, None, now());
        let facts = Observed { image: blocked.clone(), ..observed(true, Found::Owned(&crashing), Found::Owned(&provider)) };
        let status = sc_status(&facts, None, Some(&before), now());
        assert_eq!(status.phase, Some(Phase::Failed));
        let message = status.message.clone().unwrap_or_default();
        assert!(message.starts_with("image \"registry.test/app@sha256:1111\" cannot run as templated: no command specified"), "{message}");
        assert!(
            message.ends_with("set `command` (and `args`) in the pod template. The workload pod is not started until the template changes; the provider pod and the root filesystem are kept"),
            "{message}"
        );
        let image_config = find(&status, condition::IMAGE_CONFIG);
        assert_eq!((image_config.status.as_str(), image_config.reason.as_str()), ("False", "NoCommand"));
        assert_eq!(notice_reasons(&transition_notices(Some(&before), &status)), [(true, "NoCommand")]);

        // The workload pod is deleted; with none, the start stays failed, and nothing is said again.
        let gone = sc_status(
            &Observed { image: blocked.clone(), ..observed(true, Found::Absent, Found::Owned(&provider)) },
            None,
            Some(&status),
            now(),
        );
        assert_eq!((gone.phase, gone.message.clone()), (status.phase, status.message.clone()));
        assert_eq!(transition_notices(Some(&status), &gone), []);
        assert_eq!(blocked.blocking(None).map(|problem| problem.reason), Some("NoCommand"));
        assert_eq!(blocked.blocking(Some(&crashing)).map(|problem| problem.reason), Some("NoCommand"));
        // A ready workload is never stopped by the operator's reading of its image.
        assert_eq!(blocked.blocking(Some(&ready_pod("sc"))), None);
        // Stopped: the problem stays in the condition, the phase is the stop's.
        let stopped =
            sc_status(&Observed { image: blocked, ..observed(false, Found::Absent, Found::Owned(&provider)) }, None, Some(&gone), now());
        assert_eq!(stopped.phase, Some(Phase::Stopped));
        assert_eq!(find(&stopped, condition::IMAGE_CONFIG).reason, "NoCommand");
    }

    #[test]
    fn an_unreported_image_is_unknown_and_not_guessed() {
        let status = sc_status(&observed(true, Found::Owned(&creating_consumer()), Found::Absent), None, None, now());
        let image_config = find(&status, condition::IMAGE_CONFIG);
        assert_eq!((image_config.status.as_str(), image_config.reason.as_str()), ("Unknown", "NotReported"));
        assert_eq!(status.image, None);
        assert_eq!(check_image(None, None), ImageCheck::NotReported);
        let not_evaluated = check_image(Some(&summary(&[], &[], "")), None);
        assert_eq!(not_evaluated.problem(), None, "an invalid spec is SpecValid's to report");
        assert_eq!(not_evaluated.status().map(|image| image.command), Some(None));
    }

    #[test]
    fn the_status_image_round_trips_to_the_summary_it_was_made_from() {
        for reported in [summary(&["/init"], &["serve"], "1000:100"), summary(&[], &[], ""), unavailable()] {
            assert_eq!(image_summary(&image_status(&reported)), reported);
        }
    }

    fn with_container_id(mut pod: Pod, id: &str) -> Pod {
        if let Some(statuses) = pod.status.as_mut().and_then(|status| status.container_statuses.as_mut()) {
            statuses[0].container_id = Some(id.into());
        }
        pod
    }

    #[test]
    fn a_start_stuck_on_an_image_is_made_again_once_the_template_changed() {
        let consumer = creating_consumer();
        let stuck_provider = waiting("sc-provider", "rootfs", false, "ErrImageNeverPull", NEVER_PULL);
        let redo = start_to_redo(Found::Owned(&consumer), Found::Owned(&stuck_provider), true).expect("redone");
        assert_eq!((redo.role, redo.reason.as_str(), redo.replace_provider), ("provider", "ErrImageNeverPull", true));
        assert_eq!(
            redo.why(),
            format!(
                "the start never got going (the provider pod is in ErrImageNeverPull: container \"rootfs\": {NEVER_PULL}) and the template changed since: the start is made again from the new template"
            )
        );
        assert_eq!(start_to_redo(Found::Owned(&consumer), Found::Owned(&stuck_provider), false), None, "kubelet retries by itself");
        // A provider container that was created once had a root filesystem: it goes only with
        // the usual replacement, once the workload pod is gone.
        let restarted = with_container_id(stuck_provider.clone(), "containerd://abc");
        assert_eq!(start_to_redo(Found::Owned(&consumer), Found::Owned(&restarted), true).map(|redo| redo.replace_provider), Some(false));
        // The workload pod stuck on its own images or config.
        let stuck_consumer = waiting("sc", "sidecar", false, "ErrImagePull", "not found");
        let redo = start_to_redo(Found::Owned(&stuck_consumer), Found::Owned(&ready_pod("sc-provider")), true).expect("redone");
        assert_eq!((redo.role, redo.replace_provider), ("workload", false));

        // What ran is not redone: RestartRequired says a restart is needed.
        let crash_looping = waiting("sc", "main", false, "CrashLoopBackOff", "back-off");
        assert_eq!(start_to_redo(Found::Owned(&crash_looping), Found::Owned(&ready_pod("sc-provider")), true), None);
        let provider_crashing = waiting("sc-provider", "rootfs", false, "CrashLoopBackOff", "back-off");
        assert_eq!(start_to_redo(Found::Owned(&consumer), Found::Owned(&provider_crashing), true), None);
        let running = pod(
            "sc",
            Some("n1"),
            PodStatus {
                container_statuses: Some(vec![ContainerStatus {
                    name: "main".into(),
                    state: Some(ContainerState {
                        running: Some(k8s_openapi::api::core::v1::ContainerStateRunning::default()),
                        ..ContainerState::default()
                    }),
                    ..ContainerStatus::default()
                }]),
                ..PodStatus::default()
            },
        );
        assert_eq!(start_to_redo(Found::Owned(&running), Found::Owned(&stuck_provider), true), None, "the workload runs");
        let mut leaving = creating_consumer();
        leaving.metadata.deletion_timestamp = Some(now());
        assert_eq!(start_to_redo(Found::Owned(&leaving), Found::Owned(&stuck_provider), true), None, "already going");
        assert_eq!(start_to_redo(Found::Absent, Found::Owned(&stuck_provider), true), None, "a start replaces a stale provider itself");
    }
}
