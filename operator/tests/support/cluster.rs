//! One test's view of the shared API server: its own namespace, the operator's controller running
//! in-process and scoped to that namespace, and the parts of a cluster that are missing played
//! by hand — the scheduler (`bind`, `set_unschedulable`), the kubelet (`set_pod_ready`,
//! `set_container_waiting`, `finish_termination`) and the node plugin (`release_node_data`,
//! `write_data_report`, `write_usage`: the report and usage ConfigMaps, in the test's namespace,
//! which the in-process operator is configured with as its release namespace). Without controller-manager nothing is
//! garbage collected.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::events::Reporter;
use kube::{Api, Client, ResourceExt};
use sc_api::consts::NODE_REPORT_NODE_ANNOTATION;
use sc_api::node_report::{DataReport, Outcome, UsageReport, report_configmap_name, usage_configmap_name};
use sc_api::{StoppableContainer, StoppableContainerInstance};
use sc_operator::http::Health;
use sc_operator::settings::PodSettings;
use serde_json::{Value, json};

use super::apiserver::ApiServer;

/// The exec-wrapper image the in-process operator is configured with.
pub const WRAPPER_IMAGE: &str = "registry.test/sc/exec-wrapper:1";
/// How long a wait may take before the test fails (the operator requeues every 5 s at most while
/// something is in motion; watches usually make it react within milliseconds).
pub const WAIT: Duration = Duration::from_secs(30);

/// The operator settings used by the tests.
pub fn settings() -> PodSettings {
    PodSettings {
        exec_wrapper_image: WRAPPER_IMAGE.into(),
        exec_wrapper_pull_policy: "IfNotPresent".into(),
        rootfs_wait_seconds: 30,
        provider_grace_period_seconds: 3,
        // A default install's: 10Gi, at most 100Gi.
        rootfs: PodSettings::for_tests().rootfs,
    }
}

/// A test namespace on the shared API server.
pub struct TestEnv {
    pub client: Client,
    pub namespace: String,
    pub scs: Api<StoppableContainer>,
    pub instances: Api<StoppableContainerInstance>,
    pub pods: Api<Pod>,
    pub nodes: Api<Node>,
    pub events: Api<Event>,
    /// The node plugins' report ConfigMaps (this namespace is the operator's release namespace).
    pub reports: Api<ConfigMap>,
    pub health: Arc<Health>,
    operator: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if let Some(operator) = self.operator.take() {
            operator.abort();
        }
    }
}

/// A manifest of a StoppableContainer running `image` (a long sleep).
pub fn sc_manifest(name: &str, running: bool, image: &str) -> Value {
    json!({
        "apiVersion": "stoppablecontainer.xtlsoft.top/v1alpha1",
        "kind": "StoppableContainer",
        "metadata": { "name": name },
        "spec": {
            "running": running,
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": {
                    "terminationGracePeriodSeconds": 7,
                    "containers": [{ "name": "main", "image": image, "command": ["sleep", "infinity"] }]
                }
            }
        }
    })
}

fn condition<'a>(sc: &'a StoppableContainer, type_: &str) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    sc.status.as_ref()?.conditions.iter().find(|condition| condition.type_ == type_)
}

/// `(status, reason)` of a condition of `sc`, e.g. `("True", "Running")`.
pub fn condition_of(sc: &StoppableContainer, type_: &str) -> Option<(String, String)> {
    condition(sc, type_).map(|condition| (condition.status.clone(), condition.reason.clone()))
}

/// The message of a condition of `sc`.
pub fn condition_message(sc: &StoppableContainer, type_: &str) -> String {
    condition(sc, type_).map(|condition| condition.message.clone()).unwrap_or_default()
}

/// The phase of `sc` as written (`"Running"`, ...), empty before the first status.
pub fn phase(sc: &StoppableContainer) -> String {
    sc.status.as_ref().and_then(|status| status.phase).map(|phase| phase.as_str().to_owned()).unwrap_or_default()
}

/// The status message of `sc`.
pub fn message(sc: &StoppableContainer) -> String {
    sc.status.as_ref().and_then(|status| status.message.clone()).unwrap_or_default()
}

/// Polls `probe` until it returns Some, failing the test after [`WAIT`] with `what` and the last
/// thing `describe` said about the state.
pub async fn eventually<T, D: Debug, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, D>>,
{
    let started = Instant::now();
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(last) if started.elapsed() > WAIT => panic!("timed out after {WAIT:?} waiting for {what}; last state: {last:#?}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

fn now() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
}

impl TestEnv {
    /// A fresh namespace (named after the test) with no operator yet. None when the API server
    /// tests are skipped.
    pub async fn new(namespace: &str) -> Option<Self> {
        let server = ApiServer::shared()?;
        let client = server.client().await;
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let body: Namespace = serde_json::from_value(json!({ "metadata": { "name": namespace } })).expect("a namespace");
        namespaces.create(&PostParams::default(), &body).await.unwrap_or_else(|error| panic!("creating namespace {namespace}: {error}"));
        Some(Self {
            scs: Api::namespaced(client.clone(), namespace),
            instances: Api::namespaced(client.clone(), namespace),
            pods: Api::namespaced(client.clone(), namespace),
            nodes: Api::all(client.clone()),
            events: Api::namespaced(client.clone(), namespace),
            reports: Api::namespaced(client.clone(), namespace),
            health: Arc::new(Health::default()),
            namespace: namespace.to_owned(),
            client,
            operator: None,
        })
    }

    /// Like [`TestEnv::new`], with the operator running (watching this namespace only).
    pub async fn with_operator(namespace: &str) -> Option<Self> {
        let mut env = Self::new(namespace).await?;
        env.start_operator();
        Some(env)
    }

    /// Starts the operator (watching this namespace only), for a test that first sets the scene
    /// as another operator version would have left it.
    pub fn start_operator(&mut self) {
        let reporter = Reporter { controller: "sc-operator-test".into(), instance: Some(self.namespace.clone()) };
        let run = sc_operator::controller::run(
            self.client.clone(),
            settings(),
            self.health.clone(),
            Some(self.namespace.clone()),
            self.namespace.clone(),
            reporter,
        );
        self.operator = Some(tokio::spawn(run));
    }

    /// Stops the operator and starts a fresh one: nothing survives but what is in the API server.
    pub fn restart_operator(&mut self) {
        if let Some(operator) = self.operator.take() {
            operator.abort();
        }
        self.start_operator();
    }

    /// A node name unique to this test (nodes are cluster-scoped).
    pub fn node_name(&self, short: &str) -> String {
        format!("{}-{short}", self.namespace)
    }

    /// Creates a Node object (nothing runs behind it).
    pub async fn create_node(&self, short: &str) -> String {
        let name = self.node_name(short);
        let node: Node =
            serde_json::from_value(json!({ "metadata": { "name": name, "labels": { "kubernetes.io/hostname": name } } })).expect("a node");
        self.nodes.create(&PostParams::default(), &node).await.unwrap_or_else(|error| panic!("creating node {name}: {error}"));
        name
    }

    /// Deletes a Node object (the machine is gone).
    pub async fn delete_node(&self, name: &str) {
        self.nodes.delete(name, &DeleteParams::default()).await.unwrap_or_else(|error| panic!("deleting node {name}: {error}"));
    }

    /// Creates a StoppableContainer from a manifest.
    pub async fn create_sc(&self, manifest: Value) -> StoppableContainer {
        let sc: StoppableContainer = serde_json::from_value(manifest).expect("a StoppableContainer manifest");
        self.scs.create(&PostParams::default(), &sc).await.unwrap_or_else(|error| panic!("creating {}: {error}", sc.name_any()))
    }

    /// Merge-patches a StoppableContainer's spec, as `kubectl patch --type merge` would.
    pub async fn patch_spec(&self, name: &str, spec: Value) -> StoppableContainer {
        self.scs
            .patch(name, &PatchParams::default(), &Patch::Merge(json!({ "spec": spec })))
            .await
            .unwrap_or_else(|error| panic!("patching {name}: {error}"))
    }

    /// Waits until the StoppableContainer satisfies `check`.
    pub async fn wait_sc(&self, name: &str, what: &str, check: impl Fn(&StoppableContainer) -> bool) -> StoppableContainer {
        eventually(&format!("StoppableContainer {name}: {what}"), || async {
            let sc = self.scs.get_opt(name).await.map_err(|error| format!("{error}"))?;
            match sc {
                Some(sc) if check(&sc) => Ok(sc),
                Some(sc) => Err(format!(
                    "metadata.finalizers={:?} generation={:?} status={}",
                    sc.finalizers(),
                    sc.metadata.generation,
                    serde_yaml::to_string(&sc.status).unwrap_or_default()
                )),
                None => Err("absent".to_owned()),
            }
        })
        .await
    }

    /// Waits until the StoppableContainer is gone.
    pub async fn wait_sc_gone(&self, name: &str) {
        eventually(&format!("StoppableContainer {name} to disappear"), || async {
            match self.scs.get_opt(name).await.map_err(|error| format!("{error}"))? {
                None => Ok(()),
                Some(sc) => {
                    Err(format!("finalizers={:?} status={}", sc.finalizers(), serde_yaml::to_string(&sc.status).unwrap_or_default()))
                }
            }
        })
        .await
    }

    /// Waits until pod `name` exists and satisfies `check`.
    pub async fn wait_pod(&self, name: &str, what: &str, check: impl Fn(&Pod) -> bool) -> Pod {
        eventually(&format!("pod {name}: {what}"), || async {
            match self.pods.get_opt(name).await.map_err(|error| format!("{error}"))? {
                Some(pod) if check(&pod) => Ok(pod),
                Some(pod) => Err(format!(
                    "deletionTimestamp={:?} nodeName={:?}",
                    pod.metadata.deletion_timestamp,
                    pod.spec.as_ref().and_then(|s| s.node_name.clone())
                )),
                None => Err("absent".to_owned()),
            }
        })
        .await
    }

    /// Waits until pod `name` is being deleted (the operator deleted it; a kubelet would now stop
    /// its containers).
    pub async fn wait_pod_terminating(&self, name: &str) -> Pod {
        self.wait_pod(name, "deleted by the operator (deletionTimestamp set)", |pod| pod.metadata.deletion_timestamp.is_some()).await
    }

    /// Whether pod `name` exists.
    pub async fn pod(&self, name: &str) -> Option<Pod> {
        self.pods.get_opt(name).await.unwrap_or_else(|error| panic!("reading pod {name}: {error}"))
    }

    /// The scheduler: binds pod `name` to `node` through the binding subresource.
    pub async fn bind(&self, name: &str, node: &str) {
        let binding = json!({ "apiVersion": "v1", "kind": "Binding", "metadata": { "name": name }, "target": { "apiVersion": "v1", "kind": "Node", "name": node } });
        self.pods
            .create_subresource::<_, Value>("binding", name, &PostParams::default(), &binding)
            .await
            .unwrap_or_else(|error| panic!("binding pod {name} to {node}: {error}"));
    }

    async fn patch_pod_status(&self, name: &str, status: Value) {
        self.pods
            .patch_status(name, &PatchParams::default(), &Patch::Merge(json!({ "status": status })))
            .await
            .unwrap_or_else(|error| panic!("patching the status of pod {name}: {error}"));
    }

    /// The scheduler gave up for now on pod `name`.
    pub async fn set_unschedulable(&self, name: &str, why: &str) {
        let status = json!({
            "phase": "Pending",
            "conditions": [{ "type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": why, "lastTransitionTime": now() }]
        });
        self.patch_pod_status(name, status).await;
    }

    fn container_statuses(pod: &Pod, state: &Value, ready: bool) -> Vec<Value> {
        pod.spec
            .iter()
            .flat_map(|spec| spec.containers.iter())
            .map(|container| {
                json!({
                    "name": container.name, "image": container.image.clone().unwrap_or_default(), "imageID": "",
                    "ready": ready, "restartCount": 0, "state": state
                })
            })
            .collect()
    }

    /// The kubelet: pod `name` runs and is ready.
    pub async fn set_pod_ready(&self, name: &str) {
        let pod = self.pod(name).await.unwrap_or_else(|| panic!("pod {name} does not exist"));
        let state = json!({ "running": { "startedAt": now() } });
        let conditions: Vec<Value> = ["PodScheduled", "Initialized", "ContainersReady", "Ready"]
            .iter()
            .map(|type_| json!({ "type": type_, "status": "True", "lastTransitionTime": now() }))
            .collect();
        let status =
            json!({ "phase": "Running", "conditions": conditions, "containerStatuses": Self::container_statuses(&pod, &state, true) });
        self.patch_pod_status(name, status).await;
    }

    /// The kubelet: pod `name` runs and is ready, its containers created from the image the
    /// runtime resolved to `image_id` (what kubelet reports as each container's `imageID`).
    pub async fn set_pod_ready_with_image(&self, name: &str, image_id: &str) {
        self.set_pod_ready(name).await;
        let pod = self.pod(name).await.unwrap_or_else(|| panic!("pod {name} does not exist"));
        let mut statuses = Self::container_statuses(&pod, &json!({ "running": { "startedAt": now() } }), true);
        for (index, status) in statuses.iter_mut().enumerate() {
            status["imageID"] = json!(image_id);
            status["containerID"] = json!(format!("containerd://{name}-{index}"));
        }
        self.patch_pod_status(name, json!({ "containerStatuses": statuses })).await;
    }

    /// The kubelet: every container of pod `name` waits with `reason` (ContainerCreating,
    /// CrashLoopBackOff, ImagePullBackOff, ...).
    pub async fn set_container_waiting(&self, name: &str, reason: &str, message: &str) {
        let pod = self.pod(name).await.unwrap_or_else(|| panic!("pod {name} does not exist"));
        let state = json!({ "waiting": { "reason": reason, "message": message } });
        let status = json!({
            "phase": "Pending",
            "conditions": [
                { "type": "PodScheduled", "status": "True", "lastTransitionTime": now() },
                { "type": "Ready", "status": "False", "reason": "ContainersNotReady", "lastTransitionTime": now() }
            ],
            "containerStatuses": Self::container_statuses(&pod, &state, false)
        });
        self.patch_pod_status(name, status).await;
    }

    /// The kubelet: pod `name` failed for good (evicted, rejected at admission, ...).
    pub async fn set_pod_failed(&self, name: &str, reason: &str, message: &str) {
        let status = json!({ "phase": "Failed", "reason": reason, "message": message, "conditions": [
            { "type": "Ready", "status": "False", "reason": "PodFailed", "lastTransitionTime": now() }
        ] });
        self.patch_pod_status(name, status).await;
    }

    /// The kubelet: the containers of a terminating pod stopped; the pod object goes away.
    pub async fn finish_termination(&self, name: &str) {
        let pod = self.wait_pod_terminating(name).await;
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: pod.uid().map(|uid| kube::api::Preconditions { uid: Some(uid), resource_version: None }),
            ..DeleteParams::default()
        };
        match self.pods.delete(name, &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(error) => panic!("removing terminated pod {name}: {error}"),
        }
        eventually(&format!("pod {name} to be gone"), || async {
            match self.pods.get_opt(name).await.map_err(|error| format!("{error}"))? {
                None => Ok(()),
                Some(_) => Err("still there".to_owned()),
            }
        })
        .await;
    }

    /// The node plugin of the SC's data node: the data is deleted and reported so in that
    /// node's ConfigMap, for the operator to release the node-data finalizer.
    pub async fn release_node_data(&self, name: &str) {
        let sc = self.scs.get(name).await.unwrap_or_else(|error| panic!("reading {name}: {error}"));
        let node = sc.status.as_ref().and_then(|status| status.data_node_name.clone()).expect("the SC has a data node");
        let uid = sc.uid().expect("the SC has a UID");
        self.write_data_report(&node, &uid, &self.report(&node, &self.namespace, name)).await;
    }

    /// A report as node `node`'s plugin writes it: the data of SC `namespace/name` deleted now.
    pub fn report(&self, node: &str, namespace: &str, name: &str) -> DataReport {
        DataReport {
            namespace: namespace.into(),
            name: name.into(),
            node: node.into(),
            time: Time(k8s_openapi::jiff::Timestamp::now()),
            outcome: Outcome::Deleted,
            bytes: Some(4096),
        }
    }

    /// Writes `report` under `uid` into the report ConfigMap of node `in_configmap_of` (named
    /// and keyed as csi-driver's cleanup does: `report_configmap_name`, the UID, `to_value`),
    /// creating it if missing; other entries are kept.
    pub async fn write_data_report(&self, in_configmap_of: &str, uid: &str, report: &DataReport) {
        self.write_node_entry(&report_configmap_name(in_configmap_of), in_configmap_of, uid, report.to_value()).await;
    }

    /// A usage entry as node `node`'s plugin writes it: SC `namespace/name`'s 10Gi filesystem
    /// holds `used_bytes`, measured now (to the second, as the ConfigMap stores it).
    pub fn usage(&self, node: &str, namespace: &str, name: &str, used_bytes: u64) -> UsageReport {
        let now = k8s_openapi::jiff::Timestamp::now().as_second();
        UsageReport {
            namespace: namespace.into(),
            name: name.into(),
            node: node.into(),
            limit_bytes: Some(10 << 30),
            used_bytes: Some(used_bytes),
            available_bytes: Some((10 << 30) - used_bytes),
            inodes_used: Some(1000),
            inodes_total: Some(655_360),
            observed_time: Time(k8s_openapi::jiff::Timestamp::from_second(now).expect("a timestamp")),
            image: None,
        }
    }

    /// Writes `usage` under `uid` into the usage ConfigMap of node `in_configmap_of` (named and
    /// keyed as csi-driver's usage reports do), creating it if missing; `None` removes the entry.
    pub async fn write_usage(&self, in_configmap_of: &str, uid: &str, usage: Option<&UsageReport>) {
        let name = usage_configmap_name(in_configmap_of);
        match usage {
            Some(usage) => self.write_node_entry(&name, in_configmap_of, uid, usage.to_value()).await,
            None => {
                let patch = json!({ "data": { uid: null } });
                self.reports
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .unwrap_or_else(|error| panic!("removing {uid} from usage ConfigMap {name}: {error}"));
            }
        }
    }

    /// Writes `value` under `uid` into the per-node ConfigMap `name` of node `node`, creating it
    /// if missing; other entries are kept.
    async fn write_node_entry(&self, name: &str, node: &str, uid: &str, value: String) {
        let patch = json!({ "data": { uid: &value } });
        match self.reports.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {
                let configmap = ConfigMap {
                    metadata: ObjectMeta {
                        name: Some(name.to_owned()),
                        annotations: Some([(NODE_REPORT_NODE_ANNOTATION.to_owned(), node.to_owned())].into()),
                        ..ObjectMeta::default()
                    },
                    data: Some([(uid.to_owned(), value)].into()),
                    ..ConfigMap::default()
                };
                self.reports
                    .create(&PostParams::default(), &configmap)
                    .await
                    .unwrap_or_else(|error| panic!("creating ConfigMap {name}: {error}"));
            }
            Err(error) => panic!("writing ConfigMap {name}: {error}"),
        }
    }

    /// Events about object `name` in this namespace.
    pub async fn events_for(&self, name: &str) -> Vec<Event> {
        let list = self.events.list(&ListParams::default()).await.unwrap_or_else(|error| panic!("listing events: {error}"));
        list.items
            .into_iter()
            .filter(|event| event.regarding.as_ref().and_then(|regarding| regarding.name.as_deref()) == Some(name))
            .collect()
    }

    /// Waits for an Event with `reason` about object `name`; returns it.
    pub async fn wait_event(&self, name: &str, reason: &str) -> Event {
        eventually(&format!("an Event {reason} about {name}"), || async {
            let events = self.events_for(name).await;
            let seen: Vec<String> = events.iter().filter_map(|event| event.reason.clone()).collect();
            events.into_iter().find(|event| event.reason.as_deref() == Some(reason)).ok_or(seen)
        })
        .await
    }
}
