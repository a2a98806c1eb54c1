//! What the node plugin asks the Kubernetes API: is this pod really a StoppableContainer's
//! consumer, and which container is its provider? It fetches the objects; [`crate::authorize`]
//! decides. Behind a trait so the mount logic is tested without an API server (see
//! [`StaticClusterView`]).

use std::future::Future;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::Client;
use kube::api::Api;
use kube::core::{ApiResource, GroupVersionKind};
use sc_api::{StoppableContainer, StoppableContainerInstance, consts};
use serde::Deserialize;

pub use crate::authorize::{BoundClaim, Consumer, Provider, Refusal};
use crate::authorize::{authorize_consumer, check_consumer_volumes, provider_state, recorded_claim_name};
use crate::layout::ScKey;
use crate::validate::PodRef;

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

impl From<Refusal> for ClusterError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Denied(message) => ClusterError::Denied(message),
            Refusal::NotNow(message) => ClusterError::NotNow(message),
        }
    }
}

/// The questions the node plugin asks the cluster.
pub trait ClusterView: Send + Sync + 'static {
    /// Checks that `pod` is the consumer pod of the StoppableContainer `sc_name` in the pod's own
    /// namespace, and returns that SC's identity.
    fn authorize_consumer(&self, pod: &PodRef, sc_name: &str) -> impl Future<Output = Result<Consumer, ClusterError>> + Send;
    /// The state of the consumer's provider container on this node.
    fn provider(&self, consumer: &Consumer) -> impl Future<Output = Result<Provider, ClusterError>> + Send;
}

/// The StoppableContainer API resource, for metadata-level access without the CRD types.
pub fn sc_api_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(consts::GROUP, consts::VERSION, consts::SC_KIND))
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

impl ClusterView for KubeClusterView {
    async fn authorize_consumer(&self, pod: &PodRef, sc_name: &str) -> Result<Consumer, ClusterError> {
        if pod.name != sc_name {
            // Refused before any request: the answer cannot depend on what the API holds.
            return Ok(authorize_consumer(pod, sc_name, None, None, None)?);
        }
        let scs: Api<StoppableContainer> = Api::namespaced(self.client.clone(), &pod.namespace);
        let instances: Api<StoppableContainerInstance> = Api::namespaced(self.client.clone(), &pod.namespace);
        let (sc, instance) = futures::try_join!(scs.get_opt(sc_name), instances.get_opt(sc_name))?;
        // The claim is looked up by the name the operator recorded, in the SC's own namespace.
        let claim = match instance.as_ref().and_then(recorded_claim_name) {
            Some(claim_name) => {
                let claims: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), &pod.namespace);
                claims.get_opt(claim_name).await?
            }
            None => None,
        };
        let consumer = authorize_consumer(pod, sc_name, sc.as_ref(), instance.as_ref(), claim.as_ref())?;
        if let Some(claim) = &consumer.claim {
            let pods: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace);
            let consumer_pod = pods.get_opt(&pod.name).await?.ok_or_else(|| {
                ClusterError::NotNow(format!("consumer pod {}/{} is gone while its volume was being published", pod.namespace, pod.name))
            })?;
            check_consumer_volumes(&consumer_pod, &pod.uid, claim)?;
        }
        Ok(consumer)
    }

    async fn provider(&self, consumer: &Consumer) -> Result<Provider, ClusterError> {
        let instances: Api<StoppableContainerInstance> = Api::namespaced(self.client.clone(), &consumer.sc.namespace);
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &consumer.sc.namespace);
        let provider_name = consts::provider_pod_name(&consumer.sc.name);
        let (instance, provider) = futures::try_join!(instances.get_opt(&consumer.sc.name), pods.get_opt(&provider_name))?;
        Ok(provider_state(consumer, instance.as_ref(), provider.as_ref(), &self.node_name)?)
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
    /// The provider container's image as kubelet would report it (`imageID`); empty without.
    #[serde(default)]
    pub provider_image_ref: Option<String>,
    /// The rootfs size the operator would have resolved (`rootfsSizeBytes`); without it the
    /// plugin's default applies.
    #[serde(default)]
    pub rootfs_size_bytes: Option<u64>,
    /// With `spec.storage`: the claim as the plugin would have found it bound.
    #[serde(default)]
    pub claim: Option<BoundClaim>,
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
        if let Some((modified, len, cluster)) = cache.as_ref()
            && (*modified, *len) == stamp
        {
            return Ok(std::sync::Arc::clone(cluster));
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
                rootfs_size_bytes: consumer.rootfs_size_bytes,
                claim: consumer.claim.clone(),
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
        Ok(match candidate.and_then(|candidate| candidate.provider_container_id.clone().map(|id| (id, candidate))) {
            Some((container_id, candidate)) => Provider::Running {
                container_id,
                pod_uid: candidate.provider_pod_uid.clone(),
                image_ref: candidate.provider_image_ref.clone().unwrap_or_default(),
            },
            None => Provider::NotReady { reason: "provider container is not running yet".into() },
        })
    }
}
