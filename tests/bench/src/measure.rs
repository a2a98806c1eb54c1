//! One start or stop, measured from the request the user would make to the state the user waits
//! for, the same way for a StoppableContainer and for a plain pod.

use std::time::{Duration, SystemTime};

use crate::cluster::Cluster;
use crate::error::BenchError;
use crate::host;
use crate::plugin_log::{self, PluginEvent};
use crate::subjects::{WORKLOAD_CONTAINER, container_id, containers_running, is_consumer_of, is_scheduled, provider_name};
use crate::timeline::{PlainStart, ScStart, offset, plugin_moments};

/// How the SC is started: a resume of a stopped one, or the first start of a new one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ScStartKind {
    Resume,
    Create,
}

/// `running: true` on a stopped SC (or creating it running) until its consumer pod is Ready.
pub async fn start_sc(cluster: &Cluster, name: &str, kind: ScStartKind) -> Result<ScStart, BenchError> {
    let requested = SystemTime::now();
    match kind {
        ScStartKind::Resume => cluster.set_running(name, true).await?,
        ScStartKind::Create => cluster.create_sc(name, true).await?,
    }
    let ready = cluster.wait_sc_ready(name).await?;
    sc_timeline(cluster, name, requested, ready).await
}

/// `running: false` until the phase is Stopped (the consumer pod is gone; the kept provider stays).
pub async fn stop_sc(cluster: &Cluster, name: &str) -> Result<Duration, BenchError> {
    let requested = SystemTime::now();
    cluster.set_running(name, false).await?;
    Ok(offset(requested, cluster.wait_sc_stopped(name).await?))
}

/// Creating a plain pod until it is Ready.
pub async fn start_plain(cluster: &Cluster, name: &str) -> Result<PlainStart, BenchError> {
    let requested = SystemTime::now();
    cluster.create_pod(name).await?;
    let ready = cluster.wait_pod_ready(name).await?;
    let pod = cluster.pod_watch.get(name);
    let container_started = pod
        .as_deref()
        .and_then(|pod| container_id(pod, WORKLOAD_CONTAINER))
        .and_then(|id| host::container_pids(&id).ok()?.first().copied())
        .and_then(|pid| host::process_start(pid).ok());
    Ok(PlainStart {
        scheduled: cluster.pod_watch.first_seen(name, requested, |pod| pod.is_some_and(is_scheduled)).map(|at| offset(requested, at)),
        container_started: container_started.map(|at| offset(requested, at)),
        ready: offset(requested, ready),
    })
}

/// Deleting a plain pod until it is gone.
pub async fn stop_plain(cluster: &Cluster, name: &str) -> Result<Duration, BenchError> {
    let requested = SystemTime::now();
    let names = [name.to_owned()];
    cluster.delete_pods(&names).await?;
    Ok(offset(requested, cluster.wait_pods_gone(&names).await?))
}

/// The moments of an SC start, read right after it (the wrapper process is still running).
async fn sc_timeline(cluster: &Cluster, name: &str, requested: SystemTime, ready: SystemTime) -> Result<ScStart, BenchError> {
    let at = |moment: Option<SystemTime>| moment.map(|moment| offset(requested, moment));
    let pods = &cluster.pod_watch;
    let provider = provider_name(name);
    let log_window = offset(requested, SystemTime::now()).as_secs() as i64 + 5;
    let lines = plugin_log::parse_log(&cluster.plugin_log(log_window).await?);
    let sc_key = format!("{}/{name}", cluster.settings.namespace);
    let (published, prepared) = plugin_moments(&lines, &sc_key, requested);
    let wrapper_pid = prepared.and_then(|line| match line.event {
        PluginEvent::Prepared { pid, .. } => pid,
        PluginEvent::Published { .. } => None,
    });
    let workload_started =
        wrapper_pid.and_then(|pid| host::children(pid).into_iter().filter_map(|child| host::process_start(child).ok()).min());
    Ok(ScStart {
        consumer_created: at(pods.first_seen(name, requested, |pod| pod.is_some_and(|pod| is_consumer_of(pod, name)))),
        consumer_scheduled: at(
            pods.first_seen(name, requested, |pod| pod.is_some_and(|pod| is_consumer_of(pod, name) && is_scheduled(pod)))
        ),
        provider_created: at(pods.first_seen(&provider, requested, |pod| pod.is_some())),
        provider_running: at(pods.first_seen(&provider, requested, |pod| pod.is_some_and(containers_running))),
        publish_began: at(published.map(|line| line.began())),
        publish_ended: at(published.map(|line| line.at)),
        provider_wait: published.and_then(|line| match line.event {
            PluginEvent::Published { provider_wait, .. } => Some(provider_wait),
            PluginEvent::Prepared { .. } => None,
        }),
        wrapper_started: at(wrapper_pid.and_then(|pid| host::process_start(pid).ok())),
        prepare_began: at(prepared.map(|line| line.began())),
        prepare_ended: at(prepared.map(|line| line.at)),
        workload_started: at(workload_started),
        ready: offset(requested, ready),
    })
}

/// A pause between measurements, so that one start's clean-up (containerd shims exiting, kubelet
/// removing cgroups) does not land in the next measurement.
pub async fn settle() {
    tokio::time::sleep(Duration::from_secs(2)).await;
}
