//! The benchmark's handle on the cluster: its namespace, the watches, and the few operations
//! every section uses (start, stop, create, delete, wait, exec), each measured the same way for
//! the StoppableContainer and the plain pod.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::{Event as CoreEvent, Namespace, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use sc_api::{Phase, StoppableContainer};
use serde_json::json;

use crate::error::{BenchError, api};
use crate::observe::{Objects, Observer};
use crate::subjects::{self, BENCH_LABEL, has_failed, is_ready, sc_phase, sc_pods_gone, sc_workload_ready};

/// The annotation that makes a StorageClass the cluster's default.
const DEFAULT_CLASS_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";

#[derive(Clone, Debug)]
pub struct Settings {
    pub namespace: String,
    pub image: String,
    pub product_namespace: String,
    pub data_root: String,
    pub kubectl: String,
    /// How long one pod may take to start or stop before the measurement counts as failed.
    pub timeout: Duration,
}

pub struct Cluster {
    pub settings: Settings,
    pub pods: Api<Pod>,
    pub scs: Api<StoppableContainer>,
    pub product_pods: Api<Pod>,
    pub pod_watch: Observer<Pod>,
    pub sc_watch: Observer<StoppableContainer>,
    events: Api<CoreEvent>,
}

impl Cluster {
    /// Creates the benchmark's namespace (removing what an interrupted run left in it) and
    /// starts the watches.
    pub async fn connect(settings: Settings) -> Result<Self, BenchError> {
        let client = Client::try_default().await.map_err(BenchError::Connect)?;
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let namespace = &settings.namespace;
        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        let scs: Api<StoppableContainer> = Api::namespaced(client.clone(), namespace);
        if namespaces.get_opt(namespace).await.map_err(api(format!("reading namespace {namespace}")))?.is_some() {
            eprintln!("sc-bench: namespace {namespace} exists (an earlier run?); emptying it first");
        } else {
            let body: Namespace = serde_json::from_value(json!({ "metadata": { "name": namespace, "labels": { BENCH_LABEL: "true" } } }))
                .map_err(|error| BenchError::Setup(format!("namespace manifest: {error}")))?;
            namespaces.create(&PostParams::default(), &body).await.map_err(api(format!("creating namespace {namespace}")))?;
        }
        // Every pod of the namespace: the providers do not carry the template's labels.
        let pod_watch = Observer::start(pods.clone()).await?;
        let sc_watch = Observer::start(scs.clone()).await?;
        let cluster = Self {
            product_pods: Api::namespaced(client.clone(), &settings.product_namespace),
            events: Api::namespaced(client, namespace),
            settings,
            pods,
            scs,
            pod_watch,
            sc_watch,
        };
        cluster.delete_everything().await?;
        Ok(cluster)
    }

    // --- StoppableContainers ---------------------------------------------------------------

    pub async fn create_sc(&self, name: &str, running: bool) -> Result<(), BenchError> {
        self.create_sc_from(name, subjects::stoppable_container(name, &self.settings.image, running)).await
    }

    /// Creates a running SC whose persistent layer is on a claim of `size` (default class).
    pub async fn create_sc_on_claim(&self, name: &str, size: &str) -> Result<(), BenchError> {
        self.create_sc_from(name, subjects::stoppable_container_on_claim(name, &self.settings.image, true, size)).await
    }

    async fn create_sc_from(&self, name: &str, manifest: Result<StoppableContainer, serde_json::Error>) -> Result<(), BenchError> {
        let body = manifest.map_err(|error| BenchError::Setup(format!("StoppableContainer manifest: {error}")))?;
        self.scs.create(&PostParams::default(), &body).await.map_err(api(format!("creating StoppableContainer {name}")))?;
        Ok(())
    }

    pub async fn set_running(&self, name: &str, running: bool) -> Result<(), BenchError> {
        let patch = Patch::Merge(json!({ "spec": { "running": running } }));
        self.scs.patch(name, &PatchParams::default(), &patch).await.map_err(api(format!("setting running={running} on {name}")))?;
        Ok(())
    }

    /// Start (or first start) of an SC until its consumer pod is Ready; returns when that was seen.
    pub async fn wait_sc_ready(&self, name: &str) -> Result<SystemTime, BenchError> {
        self.wait_pods(&format!("the workload of StoppableContainer {name} to be Ready"), &[name.to_owned()], |pods| {
            sc_workload_ready(pods, name)
        })
        .await
    }

    /// A stop until the phase is Stopped: the operator publishes it once the consumer pod is
    /// gone (the provider a stop keeps stays, and does not count).
    pub async fn wait_sc_stopped(&self, name: &str) -> Result<SystemTime, BenchError> {
        self.sc_watch
            .wait(&format!("StoppableContainer {name} to report phase Stopped"), self.settings.timeout, |scs| {
                scs.get(name).is_some_and(|sc| !sc.spec.running && sc_phase(sc) == Some(Phase::Stopped))
            })
            .await
    }

    /// Deletes SCs and waits until they are gone (the node plugin has removed their data).
    pub async fn delete_scs(&self, names: &[String]) -> Result<(), BenchError> {
        delete_all(&self.scs, "StoppableContainer", names).await?;
        self.sc_watch
            .wait("the deleted StoppableContainers to be gone", self.settings.timeout * 2, |scs| {
                names.iter().all(|name| !scs.contains_key(name))
            })
            .await?;
        self.wait_pods("the deleted StoppableContainers' pods to terminate", &[], |pods| names.iter().all(|name| sc_pods_gone(pods, name)))
            .await?;
        Ok(())
    }

    // --- plain pods ------------------------------------------------------------------------

    pub async fn create_pod(&self, name: &str) -> Result<(), BenchError> {
        let body = subjects::plain_pod(name, &self.settings.image).map_err(|error| BenchError::Setup(format!("pod manifest: {error}")))?;
        self.pods.create(&PostParams::default(), &body).await.map_err(api(format!("creating pod {name}")))?;
        Ok(())
    }

    /// Creates a claim of the default class (removed with the namespace at the end).
    pub async fn create_claim(&self, name: &str, size: &str) -> Result<(), BenchError> {
        let body = subjects::claim(name, size).map_err(|error| BenchError::Setup(format!("claim manifest: {error}")))?;
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(self.pods.clone().into_client(), &self.settings.namespace);
        claims.create(&PostParams::default(), &body).await.map_err(api(format!("creating claim {name}")))?;
        Ok(())
    }

    /// Creates a plain pod that mounts `claim`.
    pub async fn create_pod_with_claim(&self, name: &str, claim: &str) -> Result<(), BenchError> {
        let body = subjects::plain_pod_with_claim(name, &self.settings.image, claim)
            .map_err(|error| BenchError::Setup(format!("pod manifest: {error}")))?;
        self.pods.create(&PostParams::default(), &body).await.map_err(api(format!("creating pod {name}")))?;
        Ok(())
    }

    /// Whether the cluster has a default StorageClass (a claim that names none binds only then).
    pub async fn has_default_storage_class(&self) -> Result<bool, BenchError> {
        let classes: Api<StorageClass> = Api::all(self.pods.clone().into_client());
        let list = classes.list(&ListParams::default()).await.map_err(api("listing StorageClasses".to_owned()))?;
        Ok(list.items.iter().any(|class| {
            class.metadata.annotations.as_ref().and_then(|annotations| annotations.get(DEFAULT_CLASS_ANNOTATION)).map(String::as_str)
                == Some("true")
        }))
    }

    pub async fn wait_pod_ready(&self, name: &str) -> Result<SystemTime, BenchError> {
        self.wait_pods(&format!("pod {name} to be Ready"), &[name.to_owned()], |pods| pods.get(name).is_some_and(|pod| is_ready(pod))).await
    }

    pub async fn delete_pods(&self, names: &[String]) -> Result<(), BenchError> {
        delete_all(&self.pods, "pod", names).await
    }

    pub async fn wait_pods_gone(&self, names: &[String]) -> Result<SystemTime, BenchError> {
        self.wait_pods("the deleted pods to terminate", &[], |pods| names.iter().all(|name| !pods.contains_key(name))).await
    }

    // --- waiting ---------------------------------------------------------------------------

    /// Waits on the pod watch; a pod in `watched` that fails for good ends the wait at once, and
    /// a timeout names the states of the pods involved.
    async fn wait_pods(&self, what: &str, watched: &[String], holds: impl Fn(&Objects<Pod>) -> bool) -> Result<SystemTime, BenchError> {
        let failed = |pods: &Objects<Pod>| watched.iter().any(|name| pods.get(name).is_some_and(|pod| has_failed(pod).is_some()));
        let result = self.pod_watch.wait(what, self.settings.timeout, |pods| holds(pods) || failed(pods)).await;
        let failure = watched.iter().find_map(|name| Some(format!("{name}: {}", has_failed(&*self.pod_watch.get(name)?)?)));
        match (result, failure) {
            (Ok(_), Some(failure)) => Err(BenchError::Setup(format!("while waiting for {what}: {failure}"))),
            (Ok(at), None) => Ok(at),
            (Err(BenchError::Timeout { what, after }), None) => {
                Err(BenchError::Timeout { what: format!("{what} (pods now: {})", self.describe_pods()), after })
            }
            (Err(error), _) => Err(error),
        }
    }

    /// One line per pod of the namespace: phase and waiting reasons.
    pub fn describe_pods(&self) -> String {
        let mut lines: Vec<String> = self
            .pod_watch
            .all()
            .iter()
            .map(|pod| {
                let name = pod.metadata.name.clone().unwrap_or_default();
                let status = pod.status.as_ref();
                let phase = status.and_then(|status| status.phase.clone()).unwrap_or_else(|| "-".into());
                let waiting: Vec<String> = status
                    .and_then(|status| status.container_statuses.as_ref())
                    .into_iter()
                    .flatten()
                    .filter_map(|status| status.state.as_ref()?.waiting.as_ref()?.reason.clone())
                    .collect();
                let deleting = if pod.metadata.deletion_timestamp.is_some() { " (terminating)" } else { "" };
                format!("{name} {phase}{deleting} {}", waiting.join(","))
            })
            .collect();
        lines.sort();
        if lines.is_empty() { "none".into() } else { lines.join("; ") }
    }

    // --- everything else -------------------------------------------------------------------

    /// Removes every SC and pod of the namespace (what an interrupted run left behind).
    pub async fn delete_everything(&self) -> Result<(), BenchError> {
        let scs: Vec<String> = self.sc_watch.all().iter().filter_map(|sc| sc.metadata.name.clone()).collect();
        self.delete_scs(&scs).await?;
        let pods: Vec<String> = self.pod_watch.all().iter().filter_map(|pod| pod.metadata.name.clone()).collect();
        self.delete_pods(&pods).await?;
        self.wait_pods_gone(&pods).await?;
        Ok(())
    }

    /// Runs a shell script in a pod's workload container with `kubectl exec` (for an SC: inside
    /// its persistent rootfs, the way users exec into it) and returns its standard output.
    pub async fn exec(&self, pod: &str, script: &str) -> Result<String, BenchError> {
        let args = ["exec", "-n", &self.settings.namespace, pod, "--", "sh", "-c", script];
        let shown = format!("exec -n {} {pod} -- sh -c '{}'", self.settings.namespace, script.chars().take(60).collect::<String>());
        let output = tokio::process::Command::new(&self.settings.kubectl)
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|error| BenchError::Kubectl {
                args: shown.clone(),
                message: format!("cannot run {}: {error}", self.settings.kubectl),
            })?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(BenchError::Kubectl { args: shown, message: format!("{}: {}", output.status, stderr.trim()) });
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// The node plugin's log of the last `seconds` seconds.
    pub async fn plugin_log(&self, seconds: i64) -> Result<String, BenchError> {
        let pod = self.product_pod(PLUGIN_CONTAINER).await?;
        let params = LogParams { container: Some(PLUGIN_CONTAINER.into()), since_seconds: Some(seconds.max(1)), ..LogParams::default() };
        self.product_pods.logs(&pod, &params).await.map_err(api(format!("reading the log of {pod}")))
    }

    /// The pod of the product's namespace that runs the named container (the operator or the
    /// node plugin; one node, one of each).
    pub async fn product_pod_object(&self, container: &str) -> Result<Pod, BenchError> {
        let pods = self.product_pods.list(&ListParams::default()).await.map_err(api("listing the product's pods"))?;
        pods.items
            .into_iter()
            .filter(|pod| pod.metadata.deletion_timestamp.is_none())
            .find(|pod| pod.spec.as_ref().is_some_and(|spec| spec.containers.iter().any(|c| c.name == container)))
            .ok_or_else(|| {
                BenchError::Setup(format!(
                    "no pod with a {container:?} container in namespace {}; is the chart installed?",
                    self.settings.product_namespace
                ))
            })
    }

    async fn product_pod(&self, container: &str) -> Result<String, BenchError> {
        Ok(self.product_pod_object(container).await?.metadata.name.unwrap_or_default())
    }

    /// Warning events of the namespace since `since`: count and one example message, by reason.
    pub async fn warnings_since(&self, since: SystemTime) -> Result<BTreeMap<String, (u32, String)>, BenchError> {
        let events = self.events.list(&ListParams::default().fields("type=Warning")).await.map_err(api("listing warning events"))?;
        let since = k8s_openapi::jiff::Timestamp::try_from(since).map_err(|error| BenchError::Setup(format!("clock: {error}")))?;
        let mut counts = BTreeMap::new();
        for event in events.items {
            let last = event.last_timestamp.as_ref().map(|time| time.0).or(event.event_time.as_ref().map(|time| time.0));
            // Event times have one-second resolution: keep the events of the second `since` is in.
            if last.is_some_and(|last| last.as_second() >= since.as_second()) {
                let reason = event.reason.unwrap_or_default();
                let entry = counts.entry(reason).or_insert_with(|| (0, event.message.unwrap_or_default().chars().take(120).collect()));
                entry.0 += event.count.unwrap_or(1).max(1) as u32;
            }
        }
        Ok(counts)
    }

    /// Deletes the namespace at the end of the run.
    pub async fn remove_namespace(&self) -> Result<(), BenchError> {
        let client = self.pods.clone().into_client();
        let namespaces: Api<Namespace> = Api::all(client);
        match namespaces.delete(&self.settings.namespace, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(error) => Err(api(format!("deleting namespace {}", self.settings.namespace))(error)),
        }
    }
}

/// Requests the deletion of each named object; one already gone is fine.
async fn delete_all<K>(api_of: &Api<K>, kind: &str, names: &[String]) -> Result<(), BenchError>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    for name in names {
        match api_of.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(error) => return Err(api(format!("deleting {kind} {name}"))(error)),
        }
    }
    Ok(())
}

pub const PLUGIN_CONTAINER: &str = "csi-plugin";
pub const OPERATOR_CONTAINER: &str = "operator";
