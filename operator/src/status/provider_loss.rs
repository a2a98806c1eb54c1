//! The provider of a running workload, lost: how, and the `ProviderLost` condition.

use super::*;
use sc_api::lifecycle::reason;

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
            ProviderLoss::Deleted { .. } => reason::PROVIDER_DELETED,
            ProviderLoss::Terminated { .. } => reason::PROVIDER_TERMINATED,
            ProviderLoss::Terminating { .. } => reason::PROVIDER_TERMINATING,
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

/// Whether the consumer pod uses, or may mount at any moment, its provider's root filesystem:
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

/// The `ProviderLost` condition: True from the moment the provider of a running workload is found
/// lost until its replacement is ready (the replacement is created in the same reconcile, so the
/// loss itself is seen once: the previous condition carries it until then).
pub(super) fn provider_lost_condition(
    observed: &Observed<'_>,
    previous: &[Condition],
    provider: Option<&PodProgress>,
) -> (bool, String, String) {
    let runs = workload_runs(observed.consumer);
    let still_lost = previous.iter().find(|c| c.type_ == condition::PROVIDER_LOST && c.status == "True");
    match (&observed.provider_loss, still_lost) {
        (Some(loss), _) => (true, loss.reason().to_owned(), loss.message()),
        (None, Some(lost)) if runs && provider != Some(&PodProgress::Ready) => (true, lost.reason.clone(), lost.message.clone()),
        _ if runs => (false, reason::PROVIDER_IN_PLACE.to_owned(), "the running workload's provider pod is in place".to_owned()),
        _ => (false, reason::NO_WORKLOAD.to_owned(), "no consumer pod runs, so no provider pod is in use".to_owned()),
    }
}

#[cfg(test)]
mod tests;
