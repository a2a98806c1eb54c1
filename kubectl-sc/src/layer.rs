//! Running a layer pod ([`crate::layer_pod`]) to its end: create it, follow it until its
//! container exits (saying what it waits for, when it waits), read what it printed, delete it.
//! Whether it is done, failed or still waiting is decided by a pure function over the pod.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::Api;
use kube::api::{DeleteParams, ListParams, LogParams, PostParams};
use sc_api::consts::{CLI_FIELD_MANAGER, SC_KIND};
use sc_api::layer_diff::{DiffReport, diff_stat, filter_by_prefix};

use crate::cli::{DiffArgs, GlobalArgs, OutputFormat};
use crate::cluster::Cluster;
use crate::error::CliError;
use crate::layer_pod::{LayerTask, build_layer_pod};
use crate::render::diff::{render_diff, render_diff_stat};

/// `kubectl sc diff`: what changed in the rootfs against the image.
pub async fn diff(global: &GlobalArgs, args: DiffArgs) -> Result<(), CliError> {
    let cluster = Cluster::connect(global).await?;
    let namespace = cluster.namespace(global);
    let action = format!("get {SC_KIND} {:?}", args.name);
    let sc = cluster
        .stoppable_containers(&namespace)
        .get(&args.name)
        .await
        .map_err(|error| cluster.explain(error, &action, &namespace, Some(&args.name)))?;
    let pod = build_layer_pod(&sc, LayerTask::Diff)?;
    let what = format!("the root filesystem of {SC_KIND} {:?}", args.name);
    let output = run_layer_pod(&cluster, &namespace, &pod, args.timeout, &what).await?;
    let mut report = DiffReport::from_json(output.as_bytes())?;
    report.entries = filter_by_prefix(&report.entries, &args.paths);
    let stat = diff_stat(&report.entries);
    let text = match (args.output, args.stat) {
        (OutputFormat::Json, false) => serde_json::to_string_pretty(&report)? + "\n",
        (OutputFormat::Json, true) => serde_json::to_string_pretty(&stat)? + "\n",
        (OutputFormat::Yaml, false) => serde_yaml::to_string(&report)?,
        (OutputFormat::Yaml, true) => serde_yaml::to_string(&stat)?,
        (OutputFormat::Table, false) => render_diff(&report.entries),
        (OutputFormat::Table, true) => render_diff_stat(&stat),
    };
    print!("{text}");
    Ok(())
}

/// How often the pod is fetched while it runs.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Where a layer pod stands after one look.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PodStep {
    /// Its container exited 0.
    Succeeded,
    /// It cannot finish, and why.
    Failed(String),
    /// Still going; what it waits for, when kubelet or the scheduler says.
    Waiting(Option<String>),
}

/// Decides from the pod.
pub fn assess_layer_pod(pod: &Pod) -> PodStep {
    let Some(status) = &pod.status else { return PodStep::Waiting(None) };
    let container = status.container_statuses.as_ref().and_then(|statuses| statuses.first());
    let terminated = container.and_then(|container| container.state.as_ref()?.terminated.as_ref());
    match (status.phase.as_deref(), terminated) {
        (Some("Succeeded"), _) => return PodStep::Succeeded,
        (_, Some(terminated)) if terminated.exit_code == 0 => return PodStep::Succeeded,
        (_, Some(terminated)) => {
            let why = terminated.message.clone().filter(|message| !message.trim().is_empty());
            let reason = terminated.reason.clone().unwrap_or_else(|| "Error".into());
            return PodStep::Failed(match why {
                Some(message) => format!("exited with status {} ({reason}): {}", terminated.exit_code, message.trim()),
                None => format!("exited with status {} ({reason})", terminated.exit_code),
            });
        }
        (Some("Failed"), None) => {
            return PodStep::Failed(status.message.clone().or(status.reason.clone()).unwrap_or_else(|| "the pod failed".into()));
        }
        _ => {}
    }
    // A waiting container names its reason; the ones that do not pass by themselves end the run.
    if let Some(waiting) = container.and_then(|container| container.state.as_ref()?.waiting.as_ref()) {
        let reason = waiting.reason.clone().unwrap_or_default();
        let message = waiting.message.clone().unwrap_or_default();
        let text = if message.is_empty() { reason.clone() } else { format!("{reason}: {message}") };
        return match reason.as_str() {
            "ErrImagePull" | "ImagePullBackOff" | "InvalidImageName" | "CreateContainerConfigError" | "CreateContainerError" => {
                PodStep::Failed(text)
            }
            _ => PodStep::Waiting(Some(text)),
        };
    }
    let unschedulable = status.conditions.iter().flatten().find(|condition| {
        condition.type_ == "PodScheduled" && condition.status == "False" && condition.reason.as_deref() == Some("Unschedulable")
    });
    if let Some(condition) = unschedulable {
        return PodStep::Waiting(Some(format!("not scheduled: {}", condition.message.clone().unwrap_or_default())));
    }
    PodStep::Waiting(status.phase.clone())
}

/// What a `FailedMount` event of the pod means for the run: the node plugin's refusals that no
/// retry changes (the volume's request is wrong, or refused) end it; the rest is progress.
pub fn assess_mount_failure(message: &str) -> PodStep {
    const FINAL_CODES: [&str; 3] = ["code = FailedPrecondition", "code = PermissionDenied", "code = InvalidArgument"];
    if FINAL_CODES.iter().any(|code| message.contains(code)) {
        let reason = message.split_once(" desc = ").map_or(message, |(_, desc)| desc);
        return PodStep::Failed(format!("cannot mount the layer: {reason}"));
    }
    PodStep::Waiting(Some(format!("volumes not mounted yet: {message}")))
}

/// The newest `FailedMount` event of pod `name`, if any.
async fn last_mount_failure(cluster: &Cluster, namespace: &str, name: &str) -> Option<String> {
    let events: Api<Event> = Api::namespaced(cluster.client.clone(), namespace);
    let params = ListParams::default().fields(&format!("involvedObject.kind=Pod,involvedObject.name={name},reason=FailedMount"));
    let listed = events.list(&params).await.ok()?;
    listed.items.into_iter().max_by_key(|event| event.last_timestamp.clone().map(|time| time.0)).and_then(|event| event.message)
}

/// Runs the pod to its end and returns what its container printed. The pod is deleted whatever
/// the outcome; a pod that fails to be deleted is named, so the user can delete it.
pub async fn run_layer_pod(cluster: &Cluster, namespace: &str, pod: &Pod, timeout: Duration, what: &str) -> Result<String, CliError> {
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), namespace);
    let params = PostParams { field_manager: Some(CLI_FIELD_MANAGER.to_owned()), ..PostParams::default() };
    let created = pods
        .create(&params, pod)
        .await
        .map_err(|error| cluster.explain(error, &format!("create the pod that reads {what}"), namespace, None))?;
    let name = created.metadata.name.clone().unwrap_or_default();
    let outcome = follow(cluster, &pods, namespace, &name, timeout, what).await;
    let deleted = pods.delete(&name, &DeleteParams { grace_period_seconds: Some(0), ..DeleteParams::default() }).await;
    if let Err(error) = deleted {
        eprintln!("warning: could not delete pod {namespace}/{name} ({error}); delete it with: kubectl delete pod -n {namespace} {name}");
    }
    outcome
}

async fn follow(
    cluster: &Cluster,
    pods: &Api<Pod>,
    namespace: &str,
    name: &str,
    timeout: Duration,
    what: &str,
) -> Result<String, CliError> {
    let started = Instant::now();
    let mut said: Option<String> = None;
    loop {
        let pod = pods.get(name).await.map_err(|error| cluster.explain(error, &format!("get pod {name}"), namespace, None))?;
        match assess_layer_pod(&pod) {
            PodStep::Succeeded => {
                let logs = pods.logs(name, &LogParams::default()).await;
                return logs.map_err(|error| cluster.explain(error, &format!("read the output of pod {name}"), namespace, None));
            }
            PodStep::Failed(why) => {
                let output = pods.logs(name, &LogParams { tail_lines: Some(20), ..LogParams::default() }).await.unwrap_or_default();
                return Err(CliError::LayerPod { pod: format!("{namespace}/{name}"), what: what.to_owned(), why, output });
            }
            PodStep::Waiting(waiting) => {
                let mut progress = waiting;
                if progress.as_deref() == Some("ContainerCreating")
                    && let Some(failure) = last_mount_failure(cluster, namespace, name).await
                {
                    match assess_mount_failure(&failure) {
                        PodStep::Failed(why) => {
                            return Err(CliError::LayerPod {
                                pod: format!("{namespace}/{name}"),
                                what: what.to_owned(),
                                why,
                                output: String::new(),
                            });
                        }
                        PodStep::Waiting(mount_progress) => progress = mount_progress,
                        PodStep::Succeeded => {}
                    }
                }
                if progress.is_some() && progress != said {
                    eprintln!("pod {name}: {}", progress.as_deref().unwrap_or_default());
                    said = progress;
                }
            }
        }
        if started.elapsed() >= timeout {
            return Err(CliError::LayerPod {
                pod: format!("{namespace}/{name}"),
                what: what.to_owned(),
                why: format!("not done after {}s (last: {}); raise --timeout", timeout.as_secs(), said.as_deref().unwrap_or("pending")),
                output: String::new(),
            });
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus, PodCondition, PodStatus,
    };

    use super::*;

    fn pod_with(phase: &str, state: Option<ContainerState>, conditions: Vec<PodCondition>) -> Pod {
        Pod {
            status: Some(PodStatus {
                phase: Some(phase.into()),
                container_statuses: state
                    .map(|state| vec![ContainerStatus { name: "layer".into(), state: Some(state), ..ContainerStatus::default() }]),
                conditions: Some(conditions),
                ..PodStatus::default()
            }),
            ..Pod::default()
        }
    }

    fn waiting(reason: &str, message: &str) -> Option<ContainerState> {
        Some(ContainerState {
            waiting: Some(ContainerStateWaiting { reason: Some(reason.into()), message: Some(message.into()) }),
            ..ContainerState::default()
        })
    }

    fn exited(code: i32, message: &str) -> Option<ContainerState> {
        Some(ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: code,
                reason: Some(if code == 0 { "Completed" } else { "Error" }.into()),
                message: Some(message.into()),
                ..ContainerStateTerminated::default()
            }),
            ..ContainerState::default()
        })
    }

    #[test]
    fn an_exit_decides_the_run() {
        assert_eq!(assess_layer_pod(&pod_with("Succeeded", exited(0, ""), vec![])), PodStep::Succeeded);
        assert_eq!(assess_layer_pod(&pod_with("Running", exited(0, ""), vec![])), PodStep::Succeeded, "before the phase follows");
        assert_eq!(
            assess_layer_pod(&pod_with("Failed", exited(66, "sc-exec: cannot read /.sc-layer/upper/etc: Permission denied\n"), vec![])),
            PodStep::Failed("exited with status 66 (Error): sc-exec: cannot read /.sc-layer/upper/etc: Permission denied".into())
        );
    }

    #[test]
    fn a_refused_mount_ends_the_run_and_a_retried_one_is_progress() {
        let refused = "MountVolume.SetUp failed for volume \"sc-layer\" : rpc error: code = FailedPrecondition desc = the data of StoppableContainer team-a/dev is on node node-2, not on node-1";
        assert_eq!(
            assess_mount_failure(refused),
            PodStep::Failed("cannot mount the layer: the data of StoppableContainer team-a/dev is on node node-2, not on node-1".into())
        );
        let retried = "MountVolume.SetUp failed for volume \"sc-claim\" : rpc error: code = Unavailable desc = not attached yet";
        assert_eq!(assess_mount_failure(retried), PodStep::Waiting(Some(format!("volumes not mounted yet: {retried}"))));
    }

    #[test]
    fn a_pull_or_volume_wait_is_progress_and_a_pull_error_ends_it() {
        assert_eq!(
            assess_layer_pod(&pod_with("Pending", waiting("ContainerCreating", ""), vec![])),
            PodStep::Waiting(Some("ContainerCreating".into()))
        );
        assert_eq!(
            assess_layer_pod(&pod_with("Pending", waiting("ErrImagePull", "not found"), vec![])),
            PodStep::Failed("ErrImagePull: not found".into())
        );
        let unschedulable = PodCondition {
            type_: "PodScheduled".into(),
            status: "False".into(),
            reason: Some("Unschedulable".into()),
            message: Some("0/1 nodes are available: 1 node(s) had volume node affinity conflict.".into()),
            ..PodCondition::default()
        };
        assert_eq!(
            assess_layer_pod(&pod_with("Pending", None, vec![unschedulable])),
            PodStep::Waiting(Some("not scheduled: 0/1 nodes are available: 1 node(s) had volume node affinity conflict.".into()))
        );
        assert_eq!(assess_layer_pod(&Pod::default()), PodStep::Waiting(None));
    }
}
