//! Waiting for a StoppableContainer to reach a phase (`start/stop/restart --wait`) or to
//! disappear (`delete --wait`). What counts as done, failed or still waiting is decided by pure
//! functions over the fetched object; the loops only fetch, print progress and keep time.

use std::time::Duration;

use sc_api::{Phase, StoppableContainer};

use crate::cluster::Cluster;
use crate::error::{CliError, WaitTimeout};

/// How often the object is fetched while waiting.
const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// The state a lifecycle command waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Running,
    Stopped,
}

impl Target {
    pub fn phase(self) -> Phase {
        match self {
            Target::Running => Phase::Running,
            Target::Stopped => Phase::Stopped,
        }
    }

    pub fn wants_running(self) -> bool {
        self == Target::Running
    }

    pub fn describe(self) -> &'static str {
        match self {
            Target::Running => "running",
            Target::Stopped => "stopped",
        }
    }
}

/// Where a wait stands after one look at the object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WaitStep {
    Reached,
    Failed(String),
    Waiting,
}

/// Decides a wait from the object. `min_generation` is the generation our own change produced:
/// a status computed from an older generation describes the state before the change (for
/// example `Stopped` right after `start`), so it neither finishes nor fails the wait.
pub fn assess(target: Target, object: &StoppableContainer, min_generation: Option<i64>) -> WaitStep {
    if object.spec.running != target.wants_running() {
        return WaitStep::Failed(format!("spec.running was changed to {} by someone else while waiting", object.spec.running));
    }
    let Some(status) = &object.status else {
        return WaitStep::Waiting;
    };
    let status_is_stale = match (min_generation, status.observed_generation) {
        (Some(wanted), Some(observed)) => observed < wanted,
        // Without observedGeneration (an operator that does not write it) the phase is all
        // there is to go by.
        _ => false,
    };
    if status_is_stale {
        return WaitStep::Waiting;
    }
    // Stopped is the operator's word that the consumer pod is gone (its resources freed); while
    // it terminates the phase is Stopping, which is waited through like any other. The provider
    // pod, a pause process that keeps the image as the lower layer so the next start is only a
    // mount, stays.
    match status.phase {
        Some(phase) if phase == target.phase() => WaitStep::Reached,
        Some(Phase::Failed) => WaitStep::Failed(
            status.message.clone().filter(|message| !message.is_empty()).unwrap_or_else(|| "no message in the status".to_owned()),
        ),
        _ => WaitStep::Waiting,
    }
}

/// The phase and message, as shown in progress lines and in a timeout error.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    pub phase: String,
    pub message: String,
}

impl Observed {
    pub fn of(object: &StoppableContainer) -> Self {
        let status = object.status.as_ref();
        Self {
            phase: status.and_then(|status| status.phase).unwrap_or(Phase::Pending).as_str().to_owned(),
            message: status.and_then(|status| status.message.clone()).unwrap_or_default(),
        }
    }

    pub fn progress_line(&self) -> String {
        if self.message.is_empty() { format!("  phase {}", self.phase) } else { format!("  phase {}: {}", self.phase, self.message) }
    }
}

/// Polls until the target phase, printing each new phase/message; fails on `Failed`, on a
/// deleted object and at the timeout. Returns the last object (for its node name).
pub async fn wait_for_phase(
    cluster: &Cluster,
    namespace: &str,
    name: &str,
    target: Target,
    min_generation: Option<i64>,
    timeout: Duration,
) -> Result<StoppableContainer, CliError> {
    let api = cluster.stoppable_containers(namespace);
    let mut last_seen: Option<Observed> = None;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let action = format!("get StoppableContainer {name:?}");
        let object = api.get(name).await.map_err(|error| cluster.explain(error, &action, namespace, Some(name)))?;
        let observed = Observed::of(&object);
        if last_seen.as_ref() != Some(&observed) {
            println!("{}", observed.progress_line());
            last_seen = Some(observed.clone());
        }
        match assess(target, &object, min_generation) {
            WaitStep::Reached => return Ok(object),
            WaitStep::Failed(message) => {
                return Err(CliError::WorkloadFailed {
                    name: name.to_owned(),
                    namespace: namespace.to_owned(),
                    target: target.describe(),
                    message,
                });
            }
            WaitStep::Waiting => {}
        }
        if tokio::time::Instant::now() + POLL_INTERVAL > deadline {
            return Err(CliError::WaitTimeout(Box::new(WaitTimeout {
                name: name.to_owned(),
                namespace: namespace.to_owned(),
                target: target.describe(),
                timeout,
                last_phase: observed.phase,
                last_message: if observed.message.is_empty() { "none".to_owned() } else { observed.message },
            })));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Polls until the object is gone, printing the finalizers still holding it whenever they change.
pub async fn wait_for_deletion(cluster: &Cluster, namespace: &str, name: &str, timeout: Duration) -> Result<(), CliError> {
    let api = cluster.stoppable_containers(namespace);
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last_finalizers: Option<Vec<String>> = None;
    loop {
        let action = format!("get StoppableContainer {name:?}");
        let Some(object) = api.get_opt(name).await.map_err(|error| cluster.explain(error, &action, namespace, Some(name)))? else {
            return Ok(());
        };
        let finalizers = object.metadata.finalizers.clone().unwrap_or_default();
        if last_finalizers.as_ref() != Some(&finalizers) {
            println!("{}", deletion_progress_line(&finalizers));
            last_finalizers = Some(finalizers.clone());
        }
        if tokio::time::Instant::now() + POLL_INTERVAL > deadline {
            return Err(CliError::DeleteTimeout { name: name.to_owned(), timeout, finalizers: finalizers.join(", ") });
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// What a deletion is waiting for, in words.
pub fn deletion_progress_line(finalizers: &[String]) -> String {
    if finalizers.is_empty() {
        "  waiting for the API server to remove the object".to_owned()
    } else {
        format!("  waiting for finalizers: {}", finalizers.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sc_api::{StoppableContainerSpec, StoppableContainerStatus};

    fn object(running: bool, phase: Option<Phase>, observed_generation: Option<i64>, message: Option<&str>) -> StoppableContainer {
        let mut object = StoppableContainer::new("box", StoppableContainerSpec { running, ..Default::default() });
        object.metadata.generation = Some(4);
        object.status =
            Some(StoppableContainerStatus { phase, observed_generation, message: message.map(str::to_owned), ..Default::default() });
        object
    }

    #[test]
    fn the_target_phase_at_the_current_generation_finishes_the_wait() {
        assert_eq!(assess(Target::Running, &object(true, Some(Phase::Running), Some(4), None), Some(4)), WaitStep::Reached);
        assert_eq!(assess(Target::Stopped, &object(false, Some(Phase::Stopped), Some(5), None), Some(4)), WaitStep::Reached);
    }

    #[test]
    fn a_status_from_before_our_change_is_not_trusted() {
        // Right after `start`, the status may still say Running from an earlier run... or Failed.
        assert_eq!(assess(Target::Stopped, &object(false, Some(Phase::Stopped), Some(3), None), Some(4)), WaitStep::Waiting);
        assert_eq!(assess(Target::Running, &object(true, Some(Phase::Failed), Some(3), Some("old")), Some(4)), WaitStep::Waiting);
        // An operator that writes no observedGeneration is taken at its word.
        assert_eq!(assess(Target::Running, &object(true, Some(Phase::Running), None, None), Some(4)), WaitStep::Reached);
    }

    #[test]
    fn intermediate_phases_keep_waiting_and_failed_fails_with_the_message() {
        for phase in [None, Some(Phase::Pending), Some(Phase::ProviderReady), Some(Phase::Stopping), Some(Phase::Stopped)] {
            assert_eq!(assess(Target::Running, &object(true, phase, Some(4), None), Some(4)), WaitStep::Waiting, "{phase:?}");
        }
        let mut no_status = object(true, None, None, None);
        no_status.status = None;
        assert_eq!(assess(Target::Running, &no_status, Some(4)), WaitStep::Waiting);
        assert_eq!(
            assess(Target::Running, &object(true, Some(Phase::Failed), Some(4), Some("image pull failed")), Some(4)),
            WaitStep::Failed("image pull failed".into())
        );
        assert_eq!(
            assess(Target::Running, &object(true, Some(Phase::Failed), Some(4), None), Some(4)),
            WaitStep::Failed("no message in the status".into())
        );
    }

    #[test]
    fn someone_else_flipping_running_ends_the_wait() {
        let step = assess(Target::Running, &object(false, Some(Phase::Stopped), Some(4), None), Some(4));
        assert_eq!(step, WaitStep::Failed("spec.running was changed to false by someone else while waiting".into()));
    }

    #[test]
    fn a_stop_is_reached_once_the_consumer_pod_is_gone_and_the_provider_may_stay() {
        let mut stopping = object(false, Some(Phase::Stopping), Some(4), Some("stopping: waiting for pods"));
        if let Some(status) = stopping.status.as_mut() {
            status.consumer_pod_name = Some("box".into());
            status.provider_pod_name = Some("box-provider".into());
        }
        assert_eq!(assess(Target::Stopped, &stopping, Some(4)), WaitStep::Waiting);
        let mut stopped = object(false, Some(Phase::Stopped), Some(4), Some("stopped; the root filesystem is kept"));
        if let Some(status) = stopped.status.as_mut() {
            status.provider_pod_name = Some("box-provider".into());
        }
        assert_eq!(assess(Target::Stopped, &stopped, Some(4)), WaitStep::Reached);
        // A start waits through a stop still under way.
        assert_eq!(assess(Target::Running, &object(true, Some(Phase::Stopping), Some(4), None), Some(4)), WaitStep::Waiting);
    }

    #[test]
    fn progress_lines_show_phase_and_message() {
        assert_eq!(Observed::of(&object(true, None, None, None)).progress_line(), "  phase Pending");
        let starting = Observed::of(&object(true, Some(Phase::ProviderReady), None, Some("waiting for the consumer pod")));
        assert_eq!(starting.progress_line(), "  phase ProviderReady: waiting for the consumer pod");
        assert_eq!(
            deletion_progress_line(&["a/finalizer".into(), "b/node-data".into()]),
            "  waiting for finalizers: a/finalizer, b/node-data"
        );
        assert_eq!(deletion_progress_line(&[]), "  waiting for the API server to remove the object");
    }
}
