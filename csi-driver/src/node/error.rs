//! Why a node RPC failed: one enum per RPC, each variant mapped to one gRPC code in
//! `server.rs`, and the I/O failure they share, which names what was being done where.

use std::io;
use std::path::Path;
use std::time::Duration;

use crate::cluster::ClusterError;
use crate::layout::ScKey;
use crate::mountinfo;
use crate::quota;

/// Why a publish failed. Each variant maps to one gRPC code in `server.rs`.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error("provider of StoppableContainer {sc} is not ready after waiting {waited:?}: {reason}; kubelet will retry")]
    ProviderNotReady { sc: ScKey, waited: Duration, reason: String },
    #[error("provider of StoppableContainer {sc} cannot run now: {reason}; kubelet will retry (see the provider pod's events)")]
    ProviderStuck { sc: ScKey, reason: String },
    #[error(
        "provider container {container_id} of StoppableContainer {sc} has no process on this node; is the provider pod really running here?"
    )]
    ProviderProcessNotFound { sc: ScKey, container_id: String },
    #[error(
        "provider container {container_id} of StoppableContainer {sc} exited while its root filesystem was being mounted as the lower layer; nothing was left mounted and kubelet will retry with the provider's next container"
    )]
    ProviderReplaced { sc: ScKey, container_id: String },
    #[error(
        "the root directory of the provider's process for StoppableContainer {sc} is not a container root filesystem mounted in the node's mount namespace; refusing to use it as the lower layer (the provider pod must run the operator's pause in its own image; if it does, the plugin must run in the host mount namespace next to the container runtime: --host-mount-namespace)"
    )]
    LowerNotFound { sc: ScKey },
    #[error(
        "the provider's root filesystem for StoppableContainer {sc} is mounted at a path that contains ',' or ':', which cannot be an overlay lower directory"
    )]
    UnusableLower { sc: ScKey },
    #[error("volume {volume_id} is already published at {existing} (for {existing_sc}); refusing to publish it at {requested}")]
    // Boxed: the error is returned on every publish path, and this variant would make it large.
    VolumeConflict { volume_id: String, existing: String, existing_sc: Box<ScKey>, requested: String },
    #[error("target {target} already has a mount this plugin did not make ({fs_type} from {device}); refusing to mount over it")]
    ForeignMount { target: String, fs_type: String, device: String },
    #[error(
        "the rootfs of StoppableContainer {sc} is already mounted at {mounted_at}: only one consumer may use it at a time; stop the other consumer pod first"
    )]
    UpperInUse { sc: ScKey, mounted_at: String },
    #[error("the overlay at {0} came up read-only; check the data root's filesystem (overlayfs needs a writable upper on ext4/xfs/btrfs)")]
    ReadOnly(String),
    #[error(
        "{claim} (volume {volume}) is not mounted for {pod} after waiting {waited:?}: kubelet mounts it at {expected} once the volume is attached; kubelet will retry (see the events of {pod})"
    )]
    // `claim` is [`claim_of_sc`]'s words, `pod` names the pod (`consumer pod <ns>/<name>`): one
    // string each keeps the error small.
    ClaimNotMounted { claim: String, pod: String, volume: String, waited: Duration, expected: String },
    #[error("{claim} cannot hold the rootfs: {problem}")]
    ClaimFilesystem { claim: String, problem: String },
    #[error(
        "{claim}: {problem} at {path}, where the plugin needs directories of its own (a symlink or a file planted by a pod that mounted the claim is never followed); remove it from a pod that mounts the claim, then start the StoppableContainer again"
    )]
    ClaimDataDir { claim: String, path: String, problem: String },
    #[error(
        "the exec-wrapper directory {dir} cannot be published: {problem}; the node DaemonSet's init container fills it (sc-exec install {dir}): restart the node plugin pod, or remove what does not belong there"
    )]
    ExecWrapperSource { dir: String, problem: String },
    #[error(
        "StoppableContainer {sc} has no layer at {looked} yet: its data is made by its first start (on its data node, or on its claim); start it once, then read its layer"
    )]
    NoLayer { sc: ScKey, looked: String },
    #[error(
        "the list of the opaque directories in the layer of StoppableContainer {sc} takes {bytes} bytes, more than the layer volume holds ({max} bytes): a directory removed and made again in the rootfs is opaque; remove some of them (or their contents' parents) from the rootfs"
    )]
    OpaqueListTooLarge { sc: ScKey, bytes: usize, max: usize },
    #[error(
        "the layer volume at {target} was unmounted while the opaque directories of its upper were listed (its pod went away?); kubelet will retry"
    )]
    LayerGone { target: String },
    #[error("the rootfs size of StoppableContainer {sc} cannot be used: {problem}")]
    RootfsSize { sc: ScKey, problem: String },
    #[error("the size-limited filesystem of the rootfs: {0}")]
    Rootfs(#[from] quota::QuotaError),
    #[error(transparent)]
    Io(#[from] IoError),
}

/// How the claim errors name the claim: `claim <ns>/<name> of StoppableContainer <sc>`.
pub(crate) fn claim_of_sc(sc: &ScKey, claim_name: &str) -> String {
    format!("claim {}/{claim_name} of StoppableContainer {sc}", sc.namespace)
}

/// Why an unpublish failed.
#[derive(Debug, thiserror::Error)]
pub enum UnpublishError {
    #[error("target {target} is still in use ({source}); stop the processes using it (kubelet retries)")]
    Busy { target: String, source: io::Error },
    #[error("target {target} holds a mount this plugin did not make ({fs_type} from {device}); not touching it")]
    ForeignMount { target: String, fs_type: String, device: String },
    #[error(transparent)]
    Io(#[from] IoError),
}

/// Why a stats request failed.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    #[error("volume {volume_id} is not published at {path} on this node")]
    NotFound { volume_id: String, path: String },
    #[error(transparent)]
    Io(#[from] IoError),
}

/// An I/O failure with what was being done and where.
#[derive(Debug, thiserror::Error)]
#[error("{action} {path}: {source}")]
pub struct IoError {
    pub action: &'static str,
    pub path: String,
    #[source]
    pub source: io::Error,
}

impl IoError {
    /// A blocking task of an RPC that panicked or was cancelled.
    pub(crate) fn joining(action: &'static str, rpc: &str, join: tokio::task::JoinError) -> Self {
        IoError { action, path: rpc.into(), source: io::Error::other(join) }
    }
}

/// Says what was being done, and where, when an I/O call fails.
pub(crate) trait Context<T> {
    fn context(self, action: &'static str, path: &Path) -> Result<T, IoError>;
}

impl<T> Context<T> for io::Result<T> {
    fn context(self, action: &'static str, path: &Path) -> Result<T, IoError> {
        self.map_err(|source| IoError { action, path: path.display().to_string(), source })
    }
}

impl From<mountinfo::ParseError> for IoError {
    fn from(error: mountinfo::ParseError) -> Self {
        IoError { action: "parsing", path: "mountinfo".into(), source: io::Error::new(io::ErrorKind::InvalidData, error) }
    }
}

impl PublishError {
    /// A target that a publish found half done and could not clear, as an I/O failure of the
    /// publish (what was in the way is in the message).
    pub(crate) fn clearing(target: &Path, error: UnpublishError) -> Self {
        match error {
            UnpublishError::Io(io) => PublishError::Io(io),
            other => PublishError::Io(IoError {
                action: "cleaning up",
                path: target.display().to_string(),
                source: io::Error::other(other.to_string()),
            }),
        }
    }
}
