//! The image's config (ENTRYPOINT, CMD, USER) judged against the template, by Kubernetes' rules.

use super::*;
use sc_api::lifecycle::reason;

/// The workload container's settings that decide what its image runs, with kubelet's names for
/// its messages.
#[derive(Clone, Copy, Debug)]
pub struct WorkloadProcess<'a> {
    /// The template's workload container (`containers[0]`).
    pub container: &'a Container,
    /// The template's pod securityContext (container settings win over it).
    pub pod_security: Option<&'a PodSecurityContext>,
    /// The consumer pod as kubelet names it: `<name>_<namespace>`.
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
    /// The status message while the problem holds: no consumer pod runs until the template
    /// changes (a start would only crash-loop), and nothing else is undone.
    pub fn phase_message(&self) -> String {
        format!(
            "{}. The consumer pod is not started until the template changes; the provider pod and the root filesystem are kept",
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

    /// The problem that stops the consumer pod, given that pod as found: a consumer pod that
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
pub(super) fn judge_image(summary: &ImageSummary, process: WorkloadProcess<'_>, status: &mut ImageStatus) -> ImageOutcome {
    let cannot = |reason, message| ImageOutcome::Cannot(ImageProblem { reason, message });
    let config = summary.config();
    let runtime_said = || summary.unavailable.clone().unwrap_or_default();
    let argv = match workload_argv(process.argv_source(), &process.words(), config.as_ref()) {
        Ok(argv) => argv,
        Err(error @ ArgvError::NoCommand) => {
            return cannot(reason::NO_COMMAND, format!("image {:?} cannot run as templated: {error}", summary.image_ref));
        }
        Err(error @ ArgvError::ImageConfigUnknown { .. }) => {
            let message = format!("image {:?} cannot run as templated: {error} (the runtime said: {})", summary.image_ref, runtime_said());
            return cannot(reason::CONFIG_UNAVAILABLE, message);
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
            return cannot(reason::CONFIG_UNAVAILABLE, message);
        }
        return ImageOutcome::RunsWithoutConfig { reason: runtime_said() };
    };
    if let Err(refusal) = verify_run_as_non_root(non_root, run_as_user, &config.user, ContainerRef { pod: process.pod, container }) {
        let message = format!(
            "image {:?} cannot run as templated: {refusal}; set `runAsUser` to a non-zero uid in the container's or the pod's securityContext, or use an image whose USER is a non-zero numeric uid",
            summary.image_ref
        );
        return cannot(reason::RUN_AS_NON_ROOT, message);
    }
    let user = match (run_as_user, config.user.as_str()) {
        (Some(uid), _) => format!("uid {uid} (runAsUser)"),
        (None, "") => "root (the image sets no USER)".to_owned(),
        (None, user) => format!("the image's user {user:?}"),
    };
    let directory = working_dir(process.container.working_dir.as_deref(), Some(&config));
    ImageOutcome::Runs { summary: format!("the workload runs {argv:?} as {user}, in {directory:?}") }
}

#[cfg(test)]
mod tests;
