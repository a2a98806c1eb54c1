//! The node plugin's work, independent of gRPC: publish (authorise, find the provider's root
//! filesystem, mount the overlay), unpublish, volume stats and start-up recovery.
//!
//! - [`NodeCore`] (`rpc.rs`): the async side the RPCs call: authorisation, the wait for the
//!   provider, the mount lock, the control sockets, the image config, the usage figures.
//! - [`Mounter`] (`mounter.rs`): every mount, record and file, synchronous and through the
//!   [`System`](crate::sys::System), held once behind an `Arc` for the blocking tasks;
//!   `recovery.rs` is its start-up recovery, `shape.rs` what a complete publication looks like.
//! - `provider.rs`: the provider container's process and root filesystem.
//! - `exec_wrapper.rs`: the provider pod's read-only volume holding `sc-exec`.
//! - `layer.rs`: the layer volume, a StoppableContainer's upper read-only for a pod of its
//!   namespace (`kubectl sc diff`).
//! - `live.rs`: the in-memory tables of live publications; `error.rs`: the RPC error types.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::cgroup::KubeletCgroups;
use crate::cluster::Consumer;
use crate::cri::ImageConfigReader;
use crate::layout::DataRoot;
use crate::quota::{self, RootfsSize};
use crate::runtime_containers::ContainerRuntime;

mod claim;
mod claim_layers;
mod error;
mod exec_wrapper;
mod layer;
mod live;
mod mounter;
mod provider;
mod recovery;
mod rpc;
mod shape;
#[cfg(test)]
mod tests;

pub use self::claim::{ClaimLayer, FsVerdict, UpperSupport};
pub use self::error::{IoError, PublishError, StatsError, UnpublishError};
pub use self::layer::{LayerStep, MAX_OPAQUE_LIST_BYTES, opaque_list};
pub use self::live::{LiveTarget, LiveUppers, UpperKey};
pub use self::mounter::{Found, Mounter, PersistentLayer};
pub use self::provider::{MAX_PROVIDER_POLL, ProviderCache, ProviderContainer};
pub use self::recovery::Recovered;
pub use self::rpc::NodeCore;

/// Usage of a published volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeStats {
    pub bytes_total: u64,
    pub bytes_available: u64,
    pub bytes_used: u64,
    pub inodes_total: u64,
    pub inodes_free: u64,
    pub inodes_used: u64,
    /// Set when the volume is not mounted the way it was published.
    pub abnormal: Option<String>,
}

/// Settings of the node plugin's work.
#[derive(Clone, Debug)]
pub struct NodeSettings {
    pub data_root: DataRoot,
    /// Kubelet's root directory: volume targets, and so this plugin's mounts, are below `pods/`.
    pub kubelet_dir: PathBuf,
    /// How long a publish waits for a provider that is still starting.
    pub provider_wait: Duration,
    /// How often it looks again while waiting.
    pub provider_poll: Duration,
    /// Where kubelet puts pod cgroups: the provider's processes are looked up there first.
    pub kubelet_cgroups: KubeletCgroups,
    /// How each StoppableContainer's size-limited filesystem is made.
    pub rootfs: RootfsSettings,
    /// Where the provider image's config is read from (the container runtime).
    pub images: ImageConfigReader,
    /// Where a starting provider container is looked up before kubelet reports it.
    pub runtime: Arc<dyn ContainerRuntime>,
}

/// How node-local root filesystems are made and sized (see [`crate::quota`]).
#[derive(Clone, Debug)]
pub struct RootfsSettings {
    /// mkfs.ext4 (and e2fsck, resize2fs), or why they cannot be used: then only root filesystems
    /// made before size limits can be published, and a new one fails with this message.
    pub tools: Result<quota::E2fsprogs, String>,
    /// The size of a rootfs whose instance names none (one made by an earlier operator).
    pub default_size: RootfsSize,
    /// The largest rootfs this node makes, whatever an instance says: the operator enforces the
    /// cluster's maximum, and this is the node's own bound on its disk.
    pub max_size: RootfsSize,
}

/// The size of `consumer`'s rootfs: what the operator resolved, else the node's default, never
/// above the node's maximum.
fn rootfs_size(settings: &RootfsSettings, consumer: &Consumer) -> Result<RootfsSize, PublishError> {
    let problem = |problem: String| PublishError::RootfsSize { sc: consumer.sc.clone(), problem };
    let size = match consumer.rootfs_size_bytes {
        Some(bytes) => RootfsSize::from_bytes(bytes).map_err(|error| problem(error.to_string()))?,
        None => settings.default_size,
    };
    if size > settings.max_size {
        return Err(problem(format!(
            "{size} is more than this node's maximum of {} (the node plugin's --max-rootfs-size); ask for at most that",
            settings.max_size
        )));
    }
    Ok(size)
}
