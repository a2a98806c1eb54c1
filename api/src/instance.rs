//! `StoppableContainerInstance`: the live incarnation of a StoppableContainer, created by the
//! operator with the same name. It records what is actually deployed.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::template::{ProviderSpec, WorkloadTemplate};

fn default_running() -> bool {
    true
}

/// What the operator deployed for a StoppableContainer: the template snapshot the consumer pod
/// was built from. Created and owned by the operator; do not edit.
// kube's repeated `printcolumn(...)` arguments look like duplicated attributes to clippy.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "stoppablecontainer.xtlsoft.top",
    version = "v1alpha1",
    kind = "StoppableContainerInstance",
    plural = "stoppablecontainerinstances",
    namespaced,
    status = "StoppableContainerInstanceStatus",
    derive = "PartialEq",
    doc = "The live incarnation of a StoppableContainer (same name), created and owned by the operator: the template snapshot in use and the pods and node that run it.",
    printcolumn(name = "SC", type_ = "string", json_path = ".spec.stoppableContainerName"),
    printcolumn(name = "Running", type_ = "boolean", json_path = ".spec.running"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Node", type_ = "string", json_path = ".status.nodeName"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct StoppableContainerInstanceSpec {
    /// Name of the StoppableContainer this instance belongs to (same namespace).
    pub stoppable_container_name: String,
    /// Whether the consumer pod should exist.
    #[serde(default = "default_running")]
    #[schemars(default = "default_running")]
    pub running: bool,
    /// Snapshot of the StoppableContainer's template taken when the consumer pod was last
    /// created. The StoppableContainer's `RestartRequired` condition compares against it.
    pub template: WorkloadTemplate,
    /// Snapshot of the StoppableContainer's provider settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<ProviderSpec>,
    /// Copy of the StoppableContainer's (ignored) `hostPathPrefix`, kept for compatibility.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path_prefix: Option<String>,
    /// The workload's image: the provider runs it, so its root filesystem is the lower layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_image: Option<String>,
    /// The size in bytes of the node-local root filesystem the node plugin makes (or grows to):
    /// the StoppableContainer's `rootfsSize`, or the cluster's default, within its maximum.
    /// Unset in instances of earlier releases: the node plugin's default applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rootfs_size_bytes: Option<u64>,
    /// The claim that holds the root filesystem (with the StoppableContainer's `spec.storage`).
    /// Unset: node-local.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<crate::storage::InstanceStorage>,
}

/// Lifecycle phase of a StoppableContainerInstance (the same values as earlier releases).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum InstancePhase {
    /// The consumer pod is not scheduled yet.
    #[default]
    Pending,
    /// The provider pod is created on the workload's node and starting.
    ProviderStarting,
    /// The provider pod runs; the consumer pod is not running yet.
    ProviderReady,
    /// The consumer pod's containers are starting.
    ConsumerStarting,
    /// The consumer pod is running and ready.
    Running,
    /// The consumer and provider pods are being deleted.
    Stopping,
    /// No pod runs.
    Stopped,
    /// The consumer pod failed or cannot be created.
    Failed,
}

/// Observed state of a StoppableContainerInstance, written by the operator.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StoppableContainerInstanceStatus {
    /// Lifecycle phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<InstancePhase>,
    /// Human-readable summary of the current state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Node of the consumer and provider pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// Name of the provider pod while it exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_pod_name: Option<String>,
    /// UID of the provider pod while it exists.
    #[serde(default, rename = "providerPodUID", skip_serializing_if = "Option::is_none")]
    pub provider_pod_uid: Option<String>,
    /// Name of the consumer pod while it exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_pod_name: Option<String>,
    /// UID of the consumer pod while it exists.
    #[serde(default, rename = "consumerPodUID", skip_serializing_if = "Option::is_none")]
    pub consumer_pod_uid: Option<String>,
    /// Conditions: Ready, ProviderReady, ConsumerReady.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
