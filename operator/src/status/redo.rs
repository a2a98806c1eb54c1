//! A start stuck before anything ran, made again once the template changed.

use super::*;

/// Why a start that never got going is to be redone, if it is: the template (or the provider
/// settings) changed since it was deployed, and its provider or consumer pod waits on an image or
/// a container config (`ErrImageNeverPull`, `CreateContainerConfigError`, ...) with no workload
/// container ever having run. Kubelet would retry the old image forever; the user fixed the
/// template, so the start is made again from it. Nothing ran, so nothing is lost: the consumer pod
/// goes (which is a stop), and a provider whose container was never created goes with it.
pub fn start_to_redo(consumer: Found<'_>, provider: Found<'_>, template_changed: bool) -> Option<StuckStart> {
    let consumer = consumer.owned().filter(|pod| template_changed && !is_terminating(pod))?;
    let stuck = |pod: &Pod| match pod_progress(pod) {
        PodProgress::Stuck { reason, message } if is_never_started_reason(&reason) => Some((reason, message)),
        _ => None,
    };
    if let Some((reason, message)) = stuck(consumer) {
        return Some(StuckStart { role: "consumer", reason, message, replace_provider: false });
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
    /// overlay can use it): it can go at once, with the consumer pod.
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
pub(super) fn provider_container_never_created(provider: &Pod) -> bool {
    let statuses = provider.status.as_ref().and_then(|status| status.container_statuses.as_ref());
    let rootfs = statuses.into_iter().flatten().find(|status| status.name == sc_api::consts::PROVIDER_CONTAINER_NAME);
    rootfs.is_none_or(|status| status.container_id.as_deref().is_none_or(str::is_empty))
}

#[cfg(test)]
mod tests;
