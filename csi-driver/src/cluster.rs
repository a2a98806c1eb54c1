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

pub use crate::authorize::{BoundClaim, Consumer, LayerData, LayerSource, Provider, Refusal};
use crate::authorize::{
    ClaimUser, LayerFacts, authorize_consumer, authorize_layer_reader, check_claim_volumes, provider_state, recorded_claim,
    recorded_claim_name,
};
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
    /// Checks that `pod` may read the layer of the StoppableContainer `sc_name` in the pod's own
    /// namespace on this node (the layer volume), and says where that layer is.
    fn authorize_layer_reader(&self, pod: &PodRef, sc_name: &str) -> impl Future<Output = Result<LayerSource, ClusterError>> + Send;
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
        let (sc, instance) = self.sc_and_instance(&pod.namespace, sc_name).await?;
        // The claim is looked up by the name the operator recorded, in the SC's own namespace.
        let claim = self.claim(&pod.namespace, instance.as_ref().and_then(recorded_claim_name)).await?;
        let consumer = authorize_consumer(pod, sc_name, sc.as_ref(), instance.as_ref(), claim.as_ref())?;
        if let Some(claim) = &consumer.claim {
            let pods: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace);
            let consumer_pod = pods.get_opt(&pod.name).await?.ok_or_else(|| {
                ClusterError::NotNow(format!("consumer pod {}/{} is gone while its volume was being published", pod.namespace, pod.name))
            })?;
            check_claim_volumes(&consumer_pod, &pod.uid, claim, ClaimUser::Consumer)?;
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

    async fn authorize_layer_reader(&self, pod: &PodRef, sc_name: &str) -> Result<LayerSource, ClusterError> {
        // Only the pod's own namespace is asked: a pod never reaches another namespace's SC.
        let (sc, instance) = self.sc_and_instance(&pod.namespace, sc_name).await?;
        let record = sc.as_ref().and_then(|sc| recorded_claim(sc, instance.as_ref()));
        let (claim, reader_pod) = match record {
            Some(record) => {
                let pods: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace);
                futures::try_join!(self.claim(&pod.namespace, Some(&record.claim_name)), pods.get_opt(&pod.name))?
            }
            None => (None, None),
        };
        let facts = LayerFacts { sc: sc.as_ref(), instance: instance.as_ref(), claim: claim.as_ref(), reader_pod: reader_pod.as_ref() };
        Ok(authorize_layer_reader(pod, sc_name, facts, &self.node_name)?)
    }
}

impl KubeClusterView {
    /// The StoppableContainer `name` of `namespace` and its instance, as the API holds them now.
    async fn sc_and_instance(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<(Option<StoppableContainer>, Option<StoppableContainerInstance>), kube::Error> {
        let scs: Api<StoppableContainer> = Api::namespaced(self.client.clone(), namespace);
        let instances: Api<StoppableContainerInstance> = Api::namespaced(self.client.clone(), namespace);
        futures::try_join!(scs.get_opt(name), instances.get_opt(name))
    }

    /// The claim `name` of `namespace` (`None` when no name is recorded or there is no such claim).
    async fn claim(&self, namespace: &str, name: Option<&str>) -> Result<Option<PersistentVolumeClaim>, kube::Error> {
        match name {
            Some(name) => Api::<PersistentVolumeClaim>::namespaced(self.client.clone(), namespace).get_opt(name).await,
            None => Ok(None),
        }
    }
}

/// A cluster described by a JSON file, re-read on every question, for running the plugin without
/// an API server (root integration tests, benchmarks). Selected with `--static-cluster`.
#[derive(Debug)]
pub struct StaticClusterView {
    path: PathBuf,
    /// This node's name (`--node-id`): a node-local layer is published only on its data node.
    node_name: String,
    /// The last parse, keyed by the file's modification time and length, so a benchmark's
    /// publishes do not re-parse an unchanged file.
    cache: std::sync::Mutex<Option<(std::time::SystemTime, u64, std::sync::Arc<StaticCluster>)>>,
}

/// The file format of [`StaticClusterView`].
#[derive(Clone, Debug, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StaticCluster {
    pub consumers: Vec<StaticConsumer>,
    /// The StoppableContainers whose layer any pod of their namespace may read (the layer volume).
    #[serde(default)]
    pub layers: Vec<StaticLayer>,
}

/// A StoppableContainer whose layer the static cluster lets pods of its namespace read.
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StaticLayer {
    pub namespace: String,
    pub sc_name: String,
    pub sc_uid: String,
    /// The node its status names as holding its data (node-local).
    #[serde(default)]
    pub data_node: Option<String>,
    /// With `spec.storage`: the claim as the plugin would have found it bound.
    #[serde(default)]
    pub claim: Option<BoundClaim>,
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
    pub fn new(path: PathBuf, node_name: String) -> Self {
        Self { path, node_name, cache: std::sync::Mutex::new(None) }
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

    async fn authorize_layer_reader(&self, pod: &PodRef, sc_name: &str) -> Result<LayerSource, ClusterError> {
        let cluster = self.read()?;
        let Some(layer) = cluster.layers.iter().find(|layer| layer.namespace == pod.namespace && layer.sc_name == sc_name) else {
            return Err(ClusterError::Denied(format!(
                "pod {}/{} may not read the layer of StoppableContainer {}/{sc_name}: no such StoppableContainer in the pod's namespace",
                pod.namespace, pod.name, pod.namespace
            )));
        };
        let sc = ScKey { namespace: layer.namespace.clone(), name: layer.sc_name.clone(), uid: layer.sc_uid.clone() };
        let data = match (&layer.claim, &layer.data_node) {
            (Some(claim), _) => LayerData::Claim(claim.clone()),
            (None, Some(node)) if *node == self.node_name => LayerData::Node,
            (None, Some(node)) => {
                return Err(ClusterError::NotNow(format!(
                    "the layer of StoppableContainer {sc} is on node {node:?}, not on this node {:?}: run the pod on node {node}",
                    self.node_name
                )));
            }
            (None, None) => {
                return Err(ClusterError::NotNow(format!("StoppableContainer {sc} has no layer yet: it has never been started")));
            }
        };
        Ok(LayerSource { sc, data })
    }
}
