//! What the node plugin asks the Kubernetes API: is this pod really a StoppableContainer's
//! consumer, and which container is its provider? Behind a trait so the mount logic is tested
//! without an API server (see [`StaticClusterView`]).

use std::future::Future;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, ResourceExt};
use sc_api::consts;
use serde::Deserialize;

use crate::cgroup::container_id_from_status;
use crate::layout::ScKey;
use crate::validate::PodRef;

/// A consumer pod that passed authorisation, and the incarnation it belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Consumer {
    pub sc: ScKey,
    /// UID of the StoppableContainerInstance owning both pods.
    pub instance_uid: String,
}

/// The provider container's state on this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Provider {
    /// Running with this CRI container id, in the pod with this UID (when known: it locates the
    /// container's cgroup directory; without it the plugin scans every process).
    Running { container_id: String, pod_uid: Option<String> },
    /// Not (yet) usable; the reason is shown to the user if waiting times out.
    NotReady { reason: String },
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The pod may not have this rootfs.
    #[error("{0}")]
    Denied(String),
    /// The SC exists but cannot be published now (being deleted).
    #[error("{0}")]
    NotNow(String),
    #[error("Kubernetes API request failed: {0}")]
    Api(#[from] kube::Error),
    #[error("reading the static cluster file {path}: {message}")]
    StaticFile { path: PathBuf, message: String },
}

/// The questions the node plugin asks the cluster.
pub trait ClusterView: Send + Sync + 'static {
    /// Checks that `pod` is the consumer pod of the StoppableContainer `sc_name` in the pod's own
    /// namespace, and returns that SC's identity.
    fn authorize_consumer(&self, pod: &PodRef, sc_name: &str) -> impl Future<Output = Result<Consumer, ClusterError>> + Send;
    /// The state of the consumer's provider container on this node.
    fn provider(&self, consumer: &Consumer) -> impl Future<Output = Result<Provider, ClusterError>> + Send;
}

fn gvk(kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(consts::GROUP, consts::VERSION, kind))
}

/// The StoppableContainer API resource, for metadata-level access without the CRD types.
pub fn sc_api_resource() -> ApiResource {
    gvk(consts::SC_KIND)
}

/// The real cluster, through the API server.
#[derive(Clone)]
pub struct KubeClusterView {
    client: Client,
    node_name: String,
}

impl KubeClusterView {
    pub fn new(client: Client, node_name: String) -> Self {
        Self { client, node_name }
    }
}

fn controller_uid(owner: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta, kind: &str, name: &str) -> Option<String> {
    owner.owner_references.as_ref()?.iter().find_map(|reference| {
        (reference.controller == Some(true) && reference.kind == kind && reference.name == name).then(|| reference.uid.clone())
    })
}

impl ClusterView for KubeClusterView {
    async fn authorize_consumer(&self, pod: &PodRef, sc_name: &str) -> Result<Consumer, ClusterError> {
        let namespace = &pod.namespace;
        let denied = |why: String| {
            ClusterError::Denied(format!(
                "pod {namespace}/{} may not mount the rootfs of StoppableContainer {namespace}/{sc_name}: {why}",
                pod.name
            ))
        };
        let scs: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), namespace, &sc_api_resource());
        let Some(sc) = scs.get_opt(sc_name).await? else {
            return Err(denied("no such StoppableContainer in the pod's namespace".into()));
        };
        if sc.metadata.deletion_timestamp.is_some() {
            return Err(ClusterError::NotNow(format!("StoppableContainer {namespace}/{sc_name} is being deleted")));
        }
        if pod.name != sc_name {
            return Err(denied(format!("its consumer pod is named {sc_name:?}")));
        }
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let Some(live_pod) = pods.get_opt(&pod.name).await? else {
            return Err(denied("the pod does not exist".into()));
        };
        if live_pod.uid().as_deref() != Some(pod.uid.as_str()) {
            return Err(denied(format!("pod UID {} is not the live pod's", pod.uid)));
        }
        if live_pod.labels().get(consts::LABEL_ROLE).map(String::as_str) != Some(consts::ROLE_CONSUMER) {
            return Err(denied(format!("the pod lacks the label {}={}", consts::LABEL_ROLE, consts::ROLE_CONSUMER)));
        }
        let Some(instance_uid) = controller_uid(&live_pod.metadata, consts::SCI_KIND, sc_name) else {
            return Err(denied("the pod is not controlled by the StoppableContainerInstance".into()));
        };
        let instances: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), namespace, &gvk(consts::SCI_KIND));
        let instance = instances.get_opt(sc_name).await?;
        let sc_uid = sc.uid().unwrap_or_default();
        let chain_ok = instance.as_ref().is_some_and(|instance| {
            instance.uid().as_deref() == Some(instance_uid.as_str())
                && controller_uid(&instance.metadata, consts::SC_KIND, sc_name).as_deref() == Some(sc_uid.as_str())
        });
        if !chain_ok {
            return Err(denied("its owner is not this StoppableContainer's instance".into()));
        }
        Ok(Consumer { sc: ScKey { namespace: namespace.clone(), name: sc_name.to_owned(), uid: sc_uid }, instance_uid })
    }

    async fn provider(&self, consumer: &Consumer) -> Result<Provider, ClusterError> {
        let name = consts::provider_pod_name(&consumer.sc.name);
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &consumer.sc.namespace);
        let Some(provider) = pods.get_opt(&name).await? else {
            return Ok(Provider::NotReady { reason: format!("provider pod {name} does not exist yet") });
        };
        if controller_uid(&provider.metadata, consts::SCI_KIND, &consumer.sc.name).as_deref() != Some(consumer.instance_uid.as_str()) {
            return Err(ClusterError::Denied(format!(
                "pod {name} is not the provider of StoppableContainer {}: it is not controlled by its instance",
                consumer.sc
            )));
        }
        let node = provider.spec.as_ref().and_then(|spec| spec.node_name.clone());
        if node.as_deref() != Some(self.node_name.as_str()) {
            return Ok(Provider::NotReady {
                reason: format!("provider pod {name} is on node {:?}, not on this node {:?}", node.unwrap_or_default(), self.node_name),
            });
        }
        let status = provider
            .status
            .as_ref()
            .and_then(|status| status.container_statuses.as_ref())
            .and_then(|statuses| statuses.iter().find(|status| status.name == consts::PROVIDER_CONTAINER_NAME));
        let Some(status) = status else {
            return Ok(Provider::NotReady { reason: format!("provider pod {name} has no container status yet") });
        };
        let running = status.state.as_ref().is_some_and(|state| state.running.is_some());
        match (running, status.container_id.as_deref().and_then(container_id_from_status)) {
            (true, Some(id)) => Ok(Provider::Running { container_id: id.to_owned(), pod_uid: provider.uid() }),
            _ => {
                let waiting = status.state.as_ref().and_then(|state| state.waiting.as_ref());
                let reason = waiting.and_then(|waiting| waiting.reason.clone()).unwrap_or_else(|| "not running".into());
                let message = waiting.and_then(|waiting| waiting.message.clone()).map(|message| format!(": {message}")).unwrap_or_default();
                Ok(Provider::NotReady { reason: format!("provider container of pod {name} is {reason}{message}") })
            }
        }
    }
}

/// A cluster described by a JSON file, re-read on every question, for running the plugin without
/// an API server (root integration tests, benchmarks). Selected with `--static-cluster`.
#[derive(Debug)]
pub struct StaticClusterView {
    path: PathBuf,
    /// The last parse, keyed by the file's modification time and length, so a benchmark's
    /// publishes do not re-parse an unchanged file.
    cache: std::sync::Mutex<Option<(std::time::SystemTime, u64, std::sync::Arc<StaticCluster>)>>,
}

/// The file format of [`StaticClusterView`].
#[derive(Clone, Debug, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StaticCluster {
    pub consumers: Vec<StaticConsumer>,
}

#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StaticConsumer {
    pub pod: PodRef,
    pub sc_name: String,
    pub sc_uid: String,
    /// The provider container's id, once "running".
    #[serde(default)]
    pub provider_container_id: Option<String>,
    /// The provider pod's UID, as the API would give it; without it the plugin finds the provider
    /// by scanning every process.
    #[serde(default)]
    pub provider_pod_uid: Option<String>,
}

impl StaticClusterView {
    pub fn new(path: PathBuf) -> Self {
        Self { path, cache: std::sync::Mutex::new(None) }
    }

    fn read(&self) -> Result<std::sync::Arc<StaticCluster>, ClusterError> {
        let error = |message: String| ClusterError::StaticFile { path: self.path.clone(), message };
        let metadata = std::fs::metadata(&self.path).map_err(|io| error(io.to_string()))?;
        let stamp = (metadata.modified().map_err(|io| error(io.to_string()))?, metadata.len());
        let mut cache = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((modified, len, cluster)) = cache.as_ref() {
            if (*modified, *len) == stamp {
                return Ok(std::sync::Arc::clone(cluster));
            }
        }
        let text = std::fs::read_to_string(&self.path).map_err(|io| error(io.to_string()))?;
        let cluster = std::sync::Arc::new(serde_json::from_str::<StaticCluster>(&text).map_err(|json| error(json.to_string()))?);
        *cache = Some((stamp.0, stamp.1, std::sync::Arc::clone(&cluster)));
        Ok(cluster)
    }
}

impl ClusterView for StaticClusterView {
    async fn authorize_consumer(&self, pod: &PodRef, sc_name: &str) -> Result<Consumer, ClusterError> {
        let cluster = self.read()?;
        let consumer = cluster.consumers.iter().find(|consumer| &consumer.pod == pod && consumer.sc_name == sc_name);
        match consumer {
            Some(consumer) => Ok(Consumer {
                sc: ScKey { namespace: pod.namespace.clone(), name: consumer.sc_name.clone(), uid: consumer.sc_uid.clone() },
                instance_uid: consumer.sc_uid.clone(),
            }),
            None => Err(ClusterError::Denied(format!(
                "pod {}/{} may not mount the rootfs of StoppableContainer {}/{sc_name}: it is not its consumer",
                pod.namespace, pod.name, pod.namespace
            ))),
        }
    }

    async fn provider(&self, consumer: &Consumer) -> Result<Provider, ClusterError> {
        let cluster = self.read()?;
        let candidate = cluster
            .consumers
            .iter()
            .find(|candidate| candidate.sc_name == consumer.sc.name && candidate.pod.namespace == consumer.sc.namespace);
        Ok(
            match candidate.and_then(|candidate| candidate.provider_container_id.clone().map(|id| (id, candidate.provider_pod_uid.clone())))
            {
                Some((container_id, pod_uid)) => Provider::Running { container_id, pod_uid },
                None => Provider::NotReady { reason: "provider container is not running yet".into() },
            },
        )
    }
}
