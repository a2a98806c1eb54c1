//! The phase and its message, and the instance's status that follows them.

use super::*;

pub(super) fn phase_and_message(
    observed: &Observed<'_>,
    consumer: Option<&PodProgress>,
    provider: Option<&PodProgress>,
) -> (Phase, String) {
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
        // The provider a stop keeps is part of the stopped state; only a consumer pod, or a
        // provider being deleted (its instance is), is something to wait for.
        // Pods that claim to be ours without being it are deleted, stopped or not: wait for them too.
        let remaining: Vec<String> = [
            observed.consumer.owned(),
            observed.consumer.unrecorded(),
            // On a claim a stop leaves no pod: the provider too must be gone.
            observed.provider.owned().filter(|pod| observed.on_claim || is_terminating(pod)),
            observed.provider.unrecorded(),
        ]
        .into_iter()
        .flatten()
        .map(pod_name)
        .collect();
        // Stopped is published only once they are gone: a user who acts on it (drains the node,
        // snapshots the volume) must not act while the workload may still be writing.
        if remaining.is_empty() {
            let claim_made = observed.claim.as_ref().is_some_and(|claim| claim.reason != sc_api::lifecycle::reason::CLAIM_NOT_CREATED);
            let message = match (observed.on_claim, observed.data_node.is_some() || claim_made) {
                (true, true) => "stopped; the root filesystem is kept on its claim, and no pod runs",
                (false, true) => "stopped; the root filesystem is kept",
                (_, false) => "not started yet",
            };
            return (Phase::Stopped, message.to_owned());
        }
        return (Phase::Stopping, format!("stopping: waiting for pods {remaining:?} to terminate"));
    }
    if let Some(claim) = observed.claim.as_ref().filter(|claim| claim.blocking) {
        return (Phase::Failed, claim.message.clone());
    }
    if let Found::Unrecorded(pod) = observed.consumer {
        return (Phase::Pending, format!("replacing the consumer pod: {}", unrecorded_pod_message(pod, "consumer pod")));
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
        return (Phase::Pending, "creating the consumer pod".to_owned());
    };
    let base = match consumer {
        PodProgress::Terminating => (Phase::Pending, "waiting for the previous consumer pod to terminate".to_owned()),
        PodProgress::Unscheduled { unschedulable: Some(why) } => {
            let pin = observed
                .data_node
                .as_ref()
                .map(|node| format!(" (it is pinned to node {node:?}, which holds the root filesystem)"))
                .unwrap_or_default();
            (Phase::Pending, format!("the consumer pod cannot be scheduled{pin}: {why}"))
        }
        PodProgress::Unscheduled { unschedulable: None } => {
            (Phase::Pending, "waiting for the scheduler to place the consumer pod".to_owned())
        }
        PodProgress::Stuck { reason, message } => (Phase::Failed, format!("the consumer pod is in {reason}: {message}")),
        PodProgress::Finished { succeeded: true, message } => {
            (Phase::Stopped, format!("{message}; set running to false and back to true to start again"))
        }
        PodProgress::Finished { succeeded: false, message } => {
            (Phase::Failed, format!("{message}; set running to false and back to true to start again"))
        }
        PodProgress::Ready => (Phase::Running, "running".to_owned()),
        PodProgress::Creating | PodProgress::NotReady => match provider {
            Some(PodProgress::Ready) if *consumer == PodProgress::Creating => {
                (Phase::ProviderReady, "the provider is ready; the consumer pod is mounting the root filesystem and starting".to_owned())
            }
            Some(PodProgress::Ready) => (Phase::ProviderReady, "the workload runs and is not ready yet".to_owned()),
            Some(PodProgress::Stuck { reason, message }) => (Phase::Failed, format!("the provider pod is in {reason}: {message}")),
            Some(PodProgress::Unscheduled { unschedulable: Some(why) }) => (Phase::Pending, format!("the provider pod cannot run: {why}")),
            Some(_) => (Phase::Pending, "the provider pod is starting on the consumer pod's node".to_owned()),
            None => match observed.provider {
                Found::Unrecorded(pod) => {
                    (Phase::Pending, format!("replacing the provider pod: {}", unrecorded_pod_message(pod, "provider pod")))
                }
                _ => (Phase::Pending, "creating the provider pod on the consumer pod's node".to_owned()),
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
        Phase::Stopping => InstancePhase::Stopping,
        // The provider a stop keeps does not make the instance Stopping; one being deleted does,
        // and so does a consumer pod that finished and is still there.
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
mod tests;
