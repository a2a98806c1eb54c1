//! What the control socket answers a consumer with when it refuses or fails a request to prepare
//! its rootfs: a refused or malformed request, a bound reached, a helper that could not run or did
//! not answer, or what the helper reported. Every message goes to the consumer (its `sc-exec`
//! prints it) and to the plugin's log, so each says what was wrong and what to do.

use std::io;
use std::time::Duration;

use crate::prepare::{Fault, NotThisPod};

/// Why the control socket refused or failed a request to prepare a consumer's rootfs.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("the control socket could not tell which process connected; connect from a process of the consumer pod")]
    NoPeerProcess,
    #[error("the request was not one JSON line of at most {max} bytes ({reason}); send {{\"op\":\"prepare\"}} and a newline")]
    BadRequest { max: usize, reason: String },
    #[error("no request arrived within {waited:?}; send {{\"op\":\"prepare\"}} and a newline right after connecting")]
    RequestTimeout { waited: Duration },
    #[error("process {pid} exited before it could be checked; ask again from a live process")]
    PeerGone { pid: i32 },
    #[error(transparent)]
    NotThisPod(#[from] NotThisPod),
    #[error("could not start the prepare helper {helper}: {source}")]
    HelperSpawn { helper: String, source: io::Error },
    #[error("preparing the rootfs did not finish within {waited:?}; a mount in the container may be hanging — see the node plugin's log")]
    HelperTimeout { waited: Duration },
    #[error("the prepare helper ended without an answer ({status}); see the node plugin's log: {stderr}")]
    HelperCrashed { status: String, stderr: String },
    /// A failure the helper process reported (a [`HelperError`]'s message); passed on verbatim.
    #[error("{0}")]
    Reported(String),
    #[error(
        "this volume's rootfs was asked to be prepared too often (at most {burst} times in a row, then once every {every:?}); ask again in {retry_after:?}"
    )]
    RateLimited { burst: u32, every: Duration, retry_after: Duration },
    #[error("{limit} preparations are running on this node, the most it runs at once; ask again shortly (sc-exec does so by itself)")]
    NodeBusy { limit: usize },
}

impl ControlError {
    pub fn fault(&self) -> Fault {
        match self {
            ControlError::NoPeerProcess
            | ControlError::BadRequest { .. }
            | ControlError::RequestTimeout { .. }
            | ControlError::PeerGone { .. }
            | ControlError::NotThisPod(_)
            | ControlError::RateLimited { .. } => Fault::Caller,
            ControlError::Reported(_) => Fault::Rootfs,
            ControlError::HelperSpawn { .. }
            | ControlError::HelperTimeout { .. }
            | ControlError::HelperCrashed { .. }
            | ControlError::NodeBusy { .. } => Fault::Node,
        }
    }

    /// Whether the request was only refused for now (a bound was reached): the consumer is told
    /// to ask again instead of failing.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ControlError::RateLimited { .. } | ControlError::NodeBusy { .. })
    }
}
