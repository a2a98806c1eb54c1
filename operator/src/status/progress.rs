//! What a pod is doing, in the terms the status needs, and kubelet's waiting reasons.

use super::*;

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
pub(super) fn reason_family(reason: &str) -> &str {
    if reason == "ImagePullBackOff" { "ErrImagePull" } else { reason }
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
                if detail.is_empty() { "the consumer pod failed".to_owned() } else { format!("the consumer pod failed: {detail}") };
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

#[cfg(test)]
mod tests;
