//! `StoppableContainer`: what users write. A container whose root filesystem survives stop/start.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::template::{ProviderSpec, WorkloadTemplate};

/// Desired state of a StoppableContainer: a container whose root filesystem survives stop and
/// start (packages installed, files edited and users added are still there after `running: false`
/// then `running: true`, after a crash and after a node reboot).
// kube's repeated `printcolumn(...)` arguments look like duplicated attributes to clippy.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "stoppablecontainer.xtlsoft.top",
    version = "v1alpha1",
    kind = "StoppableContainer",
    plural = "stoppablecontainers",
    namespaced,
    status = "StoppableContainerStatus",
    derive = "PartialEq",
    doc = "A container whose root filesystem survives stop and start. The operator runs the workload in a pod named like this object, over a persistent root filesystem built from the workload's image.",
    printcolumn(name = "Running", type_ = "boolean", json_path = ".spec.running"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Node", type_ = "string", json_path = ".status.nodeName"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct StoppableContainerSpec {
    /// Whether the workload runs. `true` starts the consumer pod (the first start also creates the
    /// persistent root filesystem); `false` stops it gracefully and keeps the root filesystem.
    #[serde(default)]
    pub running: bool,
    /// The consumer pod's template: labels, annotations and a PodSpec whose first container is the
    /// workload (or the legacy `container` shorthand). Edits take effect at the next start; while
    /// the workload runs, the `RestartRequired` condition says that a restart is needed.
    pub template: WorkloadTemplate,
    /// Settings of the provider pod that keeps the workload's image available as the root
    /// filesystem's lower layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<ProviderSpec>,
    /// The most the persistent root filesystem may hold on its node (a quantity such as `20Gi`):
    /// writes past it fail inside the container with "No space left on device" and touch nothing
    /// else of the node. Unset: the cluster's default (an administrator's setting, 10Gi unless
    /// changed); at most the cluster's maximum. It can grow while the StoppableContainer is stopped
    /// (the next start applies it); it can never shrink. Root filesystems created before this
    /// field existed keep their data and have no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rootfs_size: Option<k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    /// Put the persistent root filesystem on a PersistentVolumeClaim (`<name>-rootfs`) instead of
    /// a node's disk: it then survives the loss of its node, a stopped StoppableContainer holds
    /// no pod, and a start runs on any node that can attach the claim. Unset: node-local (the
    /// default). Fixed at creation; `rootfsSize` does not apply (the claim's size is the limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<crate::storage::StorageSpec>,
    /// Deprecated and ignored. Accepted so that manifests written for earlier releases still
    /// apply. Where the root filesystem is stored on a node is an administrator's setting of the
    /// CSI node plugin (`--data-root`), never a user's: a value other than
    /// `/var/lib/stoppablecontainer` is reported by the `HostPathPrefixIgnored` condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub host_path_prefix: Option<String>,
}

/// Lifecycle phase of a StoppableContainer (the values of earlier releases, and `Stopping`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Phase {
    /// Not running yet: waiting for the consumer pod to be scheduled or the provider pod to start,
    /// or for the previous consumer pod to terminate.
    #[default]
    Pending,
    /// The provider pod runs on the workload's node; the consumer pod is starting.
    ProviderReady,
    /// The consumer pod is running and ready.
    Running,
    /// `running` is false and the consumer pod (or a pod being removed with it) still
    /// terminates: the workload may still be writing. Stopped follows once it is gone.
    Stopping,
    /// Nothing runs: the consumer pod is gone (a stop keeps only the provider pod, a pause
    /// process), or the workload exited successfully; the root filesystem is kept. Safe to act
    /// on: the workload has flushed what it wrote.
    Stopped,
    /// The workload cannot start or run: the spec is invalid, a pod waits on an image or a
    /// container config it cannot get (kubelet's reason and message are in `message` and the
    /// pod's condition), the workload crash-loops or failed, the image cannot run as templated
    /// (the `ImageConfig` condition), or another object is in the way. `message` and the
    /// conditions say what to fix.
    Failed,
}

impl Phase {
    /// The phase as written in the status.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::ProviderReady => "ProviderReady",
            Phase::Running => "Running",
            Phase::Stopping => "Stopping",
            Phase::Stopped => "Stopped",
            Phase::Failed => "Failed",
        }
    }

    /// Every phase, in lifecycle order (for metrics that report a count per phase).
    pub const ALL: [Phase; 6] = [Phase::Pending, Phase::ProviderReady, Phase::Running, Phase::Stopping, Phase::Stopped, Phase::Failed];
}

/// Observed state of a StoppableContainer, written by the operator.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StoppableContainerStatus {
    /// Lifecycle phase: Pending, ProviderReady, Running, Stopping, Stopped or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// Human-readable summary of the current state; when something is wrong, what to do about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Node the consumer pod runs on (empty while stopped or not yet scheduled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// Node that holds the persistent root filesystem. Set at the first start; later starts are
    /// pinned to this node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_node_name: Option<String>,
    /// Name of the StoppableContainerInstance (the same as this object's name once started).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_name: Option<String>,
    /// Name of the provider pod while it exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_pod_name: Option<String>,
    /// Name of the consumer pod while it exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_pod_name: Option<String>,
    /// Conditions, one per part: Ready, SpecValid, ConsumerReady, ProviderReady, RootfsVolume,
    /// DataNode, RestartRequired, NameConflict, HostPathPrefixIgnored, ProviderLost, ImageConfig, Storage.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// What the persistent root filesystem holds against its size, as its data node's CSI
    /// plugin last measured it. While the workload runs the plugin measures about once a minute
    /// and sends new figures when they changed by more than 1% of the size (at least 1 MiB), so
    /// a quiet root filesystem keeps an older `observedTime`. A stopped StoppableContainer keeps
    /// the figures of its last measure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rootfs: Option<RootfsStatus>,
    /// What the workload's image defines for its process and what the workload therefore runs,
    /// as the data node's container runtime reported the image the provider pod runs. Reported
    /// once a consumer pod has mounted the root filesystem, kept while stopped, and dropped when
    /// the provider runs another image (until that image is reported). When the image cannot run
    /// as templated, the `ImageConfig` condition says why and what to set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageStatus>,
    /// The PersistentVolumeClaim that holds the root filesystem (with `spec.storage`): its name,
    /// phase and capacity. How much of it the root filesystem uses is in `rootfs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<crate::storage::StorageStatus>,
}

/// The workload image's process defaults (the OCI image config) and the command they make with
/// the template's `command` and `args`, by Kubernetes' rules.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageStatus {
    /// The image as the node's container runtime knows it: the provider container's `imageID`
    /// (a digest reference), which this report is about.
    pub image_ref: String,
    /// The image's `ENTRYPOINT` (empty: none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entrypoint: Vec<String>,
    /// The image's `CMD` (empty: none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cmd: Vec<String>,
    /// The image's `USER` (`name`, `uid`, `uid:gid`, `name:group`, ...; absent: root). A
    /// `runAsUser` in the template wins over it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The image's `WORKDIR` (absent: `/`). A `workingDir` in the template wins over it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// The argv the workload runs: the template's `command` and `args` with the image's
    /// `ENTRYPOINT` and `CMD`, as Kubernetes combines them (`command` replaces both; `args` alone
    /// follow the `ENTRYPOINT`; neither runs `ENTRYPOINT` then `CMD`), before `$(VAR)`
    /// expansion. Absent when no argv can be made (the `ImageConfig` condition says why).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Set when the container runtime gave no config for the image: why. The image's fields
    /// above are then unknown and empty; nothing is guessed in their place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
}

/// The persistent root filesystem's use, as measured on its data node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RootfsStatus {
    /// The filesystem's size in bytes: the most it may hold. Absent for a root filesystem made
    /// before size limits existed, which has no limit (and no other figures).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    /// Bytes in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_bytes: Option<u64>,
    /// Bytes the workload can still write before "No space left on device".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_bytes: Option<u64>,
    /// When the node plugin measured these figures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_time: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
}
