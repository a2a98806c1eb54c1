//! The StoppableContainer CSI node plugin (`rootfs.stoppablecontainer.xtlsoft.top`).
//!
//! On `NodePublishVolume` for a consumer pod's inline volume it authorises the pod, finds the
//! provider container's root filesystem as a mount in the host mount namespace, and mounts an
//! overlay of it with a persistent upper directory from the node's data root; then, over a
//! per-volume control socket, it prepares the consumer's view of that rootfs (`/proc`, `/dev`,
//! `/sys`, kubelet's files) in the consumer's own namespaces. See the crate
//! README for flags, the data layout and error codes.

pub mod app;
pub mod authorize;
pub mod cgroup;
pub mod cleanup;
pub mod cluster;
pub mod control;
pub mod cri;
pub mod dirs;
pub mod inroot;
pub mod layout;
pub mod mountinfo;
pub mod node;
pub mod prepare;
pub mod published_image;
pub mod quota;
pub mod records;
pub mod registration;
pub mod runtime_containers;
pub mod server;
pub mod socket;
pub mod sys;
pub mod timing;
pub mod transport;
pub mod usage;
pub mod validate;
