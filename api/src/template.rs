//! Parts shared by both custom resources: the workload's pod template (full `PodSpec` or the
//! legacy one-container shorthand) and the provider pod's settings.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, PodSpec, ResourceRequirements, Toleration};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Name given to the workload container of the legacy `template.container` shorthand when the
/// manifest does not name it (the shorthand had no `name` field).
pub const LEGACY_CONTAINER_DEFAULT_NAME: &str = "main";

/// The workload's pod template.
///
/// Either `spec` (a full Kubernetes PodSpec whose first container is the workload) or the legacy
/// shorthand `container` (one container, as in manifests written for early releases) must be
/// given; when both are given the operator reports the StoppableContainer as invalid.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadTemplate {
    /// Labels and annotations for the consumer pod. They pass through to the pod, so
    /// admission webhooks and schedulers that key on them (Istio, Vault, Kueue, ...) see them.
    /// Labels under `stoppablecontainer.xtlsoft.top/` that the operator sets itself are
    /// overridden. Other metadata fields are accepted and ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<TemplateMetadata>,
    /// The consumer pod's spec. `containers[0]` is the workload: it runs inside the persistent
    /// root filesystem built from its image. Every other field (sidecars, init containers,
    /// volumes, service account, affinity, tolerations, priority, scheduler name, security
    /// context, ...) is honoured on the consumer pod. `nodeName` must not be set: the scheduler
    /// places the first start and later starts are pinned to the node that holds the data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<PodSpec>,
    /// Legacy shorthand for a pod with a single container: the container's fields (`image`,
    /// `command`, `args`, `env`, `workingDir`, `ports`, `resources`, ...). `name` is optional and
    /// defaults to `main`. Use `spec` for anything more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<LegacyContainer>,
}

/// Labels and annotations of the consumer pod.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct TemplateMetadata {
    /// Labels copied onto the consumer pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Annotations copied onto the consumer pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// A Kubernetes container whose `name` may be omitted (legacy `template.container`).
#[derive(Clone, Debug, PartialEq)]
pub struct LegacyContainer(pub Container);

impl Serialize for LegacyContainer {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for LegacyContainer {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut value = serde_json::Value::deserialize(deserializer)?;
        if let serde_json::Value::Object(fields) = &mut value {
            let unnamed = fields.get("name").is_none_or(|name| name.as_str().is_none_or(str::is_empty));
            if unnamed {
                fields.insert("name".into(), LEGACY_CONTAINER_DEFAULT_NAME.into());
            }
        }
        Container::deserialize(value).map(LegacyContainer).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for LegacyContainer {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "LegacyContainer".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        // The Container schema, minus the requirement to name it: the shorthand never had a name.
        let mut schema = Container::json_schema(generator);
        if let Some(required) = schema.get_mut("required").and_then(serde_json::Value::as_array_mut) {
            required.retain(|field| field != "name");
            if required.is_empty() {
                schema.remove("required");
            }
        }
        schema
    }
}

/// Settings of the provider pod, which runs the workload's image with a tiny pause process so that
/// its root filesystem can serve as the read-only lower layer of the persistent rootfs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderSpec {
    /// Resources of the provider container. Default: requests cpu 10m, memory 16Mi; limits cpu
    /// 100m, memory 64Mi. The provider only sleeps; it never runs the workload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Extra node selector of the provider pod. The provider always runs on the node the workload
    /// pod was scheduled to; a selector that node does not match keeps the provider pending and
    /// is reported in the status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    /// Tolerations of the provider pod (it must tolerate the taints of the workload's node).
    /// When unset, the consumer pod's tolerations are used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,
}
