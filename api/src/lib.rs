//! The StoppableContainer API shared by the operator, the CSI node plugin, `sc-exec` and
//! `kubectl sc`: the identifiers they agree on ([`consts`]), the workload settings the operator
//! hands to `sc-exec` ([`exec_config`]) and, with the `crd` feature, the custom resource types
//! (`stoppable_container`, `instance`, `template`), their CustomResourceDefinitions (`crd`) and
//! the node plugin's data-deletion reports (`node_report`).
//!
//! One vocabulary throughout, after the status fields the old operator's users already read
//! (`consumerPodName`, `ConsumerReady`):
//! - the **workload** is what the user declared: the template's first container, its process;
//! - the **consumer pod** is the pod the operator builds from the template to run the workload
//!   over the persistent rootfs (it consumes the CSI volume);
//! - the **provider pod** runs the workload's image with a pause process, so its root filesystem
//!   is the lower layer.

pub mod consts;
pub mod exec_config;
pub mod image_config;
pub mod layer_diff;
pub mod lifecycle;
pub mod names;
pub mod process;
pub mod rootfs_size;

#[cfg(feature = "crd")]
pub mod crd;
#[cfg(feature = "crd")]
pub mod instance;
#[cfg(feature = "crd")]
pub mod node_report;
#[cfg(feature = "crd")]
pub mod stoppable_container;
#[cfg(feature = "crd")]
pub mod storage;
#[cfg(feature = "crd")]
pub mod template;

#[cfg(feature = "crd")]
pub use instance::{InstancePhase, StoppableContainerInstance, StoppableContainerInstanceSpec, StoppableContainerInstanceStatus};
#[cfg(feature = "crd")]
pub use stoppable_container::{Phase, RootfsStatus, StoppableContainer, StoppableContainerSpec, StoppableContainerStatus};
#[cfg(feature = "crd")]
pub use template::{LegacyContainer, ProviderSpec, TemplateMetadata, WorkloadTemplate};
