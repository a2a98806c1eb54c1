//! How a preparation fails: [`HelperError`] is why a helper stage itself failed (its message
//! reaches the control socket inside the stage's report, and the socket answers the consumer with
//! its own `control::ControlError`). The one check both sides run, that a process belongs to the
//! publication's pod, fails with [`NotThisPod`] on both; [`Fault`] says who is to blame.
//!
//! Every message goes to the consumer (its `sc-exec` prints it) and to the plugin's log, so each
//! says what was wrong and what to do.

use std::io;

use crate::inroot::ResolveError;

/// Who is to blame for a failed preparation, for the log level and the operator's first question.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The connecting process (not of this pod, a malformed request): refused.
    Caller,
    /// The user's rootfs (a symlinked `/proc` ...): the user must fix it.
    Rootfs,
    /// The node or the plugin: an administrator must look.
    Node,
}

/// A process that is not in a container of the pod the volume was published for.
#[derive(Debug, thiserror::Error)]
#[error(
    "process {pid} is not in a container of pod {pod}, the pod this volume was published for ({found}); only that pod's containers may have its rootfs prepared"
)]
pub struct NotThisPod {
    pub pid: i32,
    pub pod: String,
    /// Where the process's cgroup puts it instead.
    pub found: String,
}

/// Why a helper stage could not prepare the rootfs.
#[derive(Debug, thiserror::Error)]
pub enum HelperError {
    #[error("could not {action} in the prepare helper: {source}; see the node plugin's log")]
    Hardening { action: &'static str, source: io::Error },
    #[error("the node plugin exited before its prepare helper started; nothing was prepared, ask again")]
    ParentGone,
    #[error("process {pid} exited before it could be checked; ask again from a live process")]
    PeerGone { pid: i32 },
    #[error(transparent)]
    NotThisPod(#[from] NotThisPod),
    #[error("process {pid} changed while the rootfs was being prepared (it exited and its number was reused); ask again")]
    PeerChanged { pid: i32 },
    #[error("{action} of process {pid}: {source}; the node plugin needs CAP_SYS_ADMIN and hostPID")]
    Namespace { action: &'static str, pid: i32, source: io::Error },
    /// Stage 1 could not start stage 2.
    #[error("could not start the prepare helper {helper}: {source}")]
    StageSpawn { helper: String, source: io::Error },
    /// Stage 2 ended without a report.
    #[error("the prepare helper ended without an answer ({status}); see the node plugin's log: {stderr}")]
    StageCrashed { status: String, stderr: String },
    #[error("the container's {path} is {found}, not {expected}; the consumer container must mount the StoppableContainer volume at {volume} and keep the runtime's {path}", volume = sc_api::consts::ROOTFS_VOLUME_MOUNT_PATH)]
    UnexpectedContainer { path: String, found: String, expected: &'static str },
    #[error("cannot prepare {destination} in the rootfs: {problem}")]
    Destination { destination: &'static str, problem: ResolveError },
    #[error("{action} {path} in the rootfs: {source}")]
    Mount { action: &'static str, path: String, source: io::Error },
}

impl HelperError {
    /// Who is to blame. The stage's report carries only the message, so the control socket files
    /// every reported failure under [`Fault::Rootfs`] (`PrepareError::Reported`); this is the
    /// finer answer, next to the variants so that a new one must be classified.
    pub fn fault(&self) -> Fault {
        match self {
            HelperError::PeerGone { .. }
            | HelperError::NotThisPod(_)
            | HelperError::PeerChanged { .. }
            | HelperError::UnexpectedContainer { .. } => Fault::Caller,
            HelperError::Destination { .. } => Fault::Rootfs,
            HelperError::Hardening { .. }
            | HelperError::ParentGone
            | HelperError::Namespace { .. }
            | HelperError::StageSpawn { .. }
            | HelperError::StageCrashed { .. }
            | HelperError::Mount { .. } => Fault::Node,
        }
    }
}

pub(super) fn mount_error(action: &'static str, path: &str, source: io::Error) -> HelperError {
    HelperError::Mount { action, path: path.to_owned(), source }
}
