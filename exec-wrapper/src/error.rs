//! The wrapper's own failures, each with the exit code a user or the kubelet sees.
//!
//! Codes follow `sysexits.h` where one fits, and the shell's conventions for commands: 127 for a
//! command that does not exist, 126 for one that cannot be executed, 128+N for a signal.

use std::path::PathBuf;

use nix::errno::Errno;
use sc_api::layer_diff::PathListError;

use crate::layer::diff::LowerError;
use crate::layer::walk::WalkError;

/// `EX_USAGE`: the command line was wrong.
pub const EX_USAGE: i32 = 64;
/// `EX_DATAERR`: an input file (a path list) is malformed.
pub const EX_DATAERR: i32 = 65;
/// `EX_UNAVAILABLE`: the rootfs never became ready.
pub const EX_UNAVAILABLE: i32 = 69;
/// `EX_OSERR`: a system call the wrapper depends on failed.
pub const EX_OSERR: i32 = 71;
/// `EX_CANTCREAT`: `install` could not write the binary.
pub const EX_CANTCREAT: i32 = 73;
/// `EX_IOERR`: reading or writing a file failed.
pub const EX_IOERR: i32 = 74;
/// `EX_NOPERM`: the container lacks a capability the wrapper needs.
pub const EX_NOPERM: i32 = 77;
/// `EX_CONFIG`: the workload's settings are invalid or cannot be honoured.
pub const EX_CONFIG: i32 = 78;
/// The command could not be executed (found, but not executable).
pub const EXIT_NOT_EXECUTABLE: i32 = 126;
/// The command was not found.
pub const EXIT_COMMAND_NOT_FOUND: i32 = 127;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}\nRun `sc-exec help` for the accepted forms.")]
    Usage(String),

    #[error(
        "invalid workload settings in ${variable}: {message}. The operator writes this variable; \
         check the StoppableContainer's pod template and the operator's version."
    )]
    Config { variable: &'static str, message: String },

    /// Kubelet's own words (`verifyRunAsNonRoot`), so the refusal reads as it would for a plain
    /// container of the same template.
    #[error("{0}")]
    RunAsNonRoot(String),

    #[error("cannot start the workload: {0}")]
    NoCommand(String),

    #[error(
        "the image's config at {path} cannot be used: {message}. The CSI node plugin writes it when \
         it publishes the rootfs; restart the pod to have it written again, and check the node \
         plugin's logs if this persists."
    )]
    ImageConfig { path: PathBuf, message: String },

    /// Resolving the user failed as containerd's would (its words first, then what to do).
    #[error("cannot run as the requested user: {0}")]
    Account(String),

    #[error(
        "the rootfs is not ready after {waited_seconds}s: {what}. The CSI node plugin \
         (rootfs.stoppablecontainer.xtlsoft.top) mounts and prepares it: check that its DaemonSet \
         pod runs on this node (`kubectl -n <system namespace> logs <node plugin pod>`) and the \
         events of this pod (`kubectl describe pod`)."
    )]
    RootfsNotReady { waited_seconds: u64, what: String },

    #[error(
        "the CSI node plugin refused to prepare the rootfs: {message}. Fix the cause it names, then \
         restart the pod (or the StoppableContainer)."
    )]
    PrepareFailed { message: String },

    #[error(
        "the rootfs at {path} is not mounted yet, so there is nothing to run `{command}` in. The \
         container's PID 1 is still waiting for it (see `kubectl logs`); retry in a few seconds."
    )]
    RootfsNotMounted { path: PathBuf, command: String },

    #[error(
        "`{command}`: command not found in the rootfs (searched PATH={search_path}). Install it \
         in the container (it persists) or give its full path."
    )]
    CommandNotFound { command: String, search_path: String },

    #[error("`{path}` inside the rootfs cannot be executed: {reason}.")]
    NotExecutable { path: PathBuf, reason: String },

    #[error(
        "chroot into {path} was denied: the container needs the SYS_CHROOT capability (the operator \
         adds it to the consumer container; a policy or a securityContext edit removed it)."
    )]
    ChrootDenied { path: PathBuf },

    #[error(
        "cannot {action}: {reason}. The consumer container lacks a privilege sc-exec needs to apply \
         the workload's securityContext; keep the capabilities the operator gives it."
    )]
    PrivilegeChange { action: String, reason: String },

    #[error("{action} failed: {source}")]
    Os { action: String, source: Errno },

    #[error("{action}: {source}")]
    Io { action: String, source: std::io::Error },

    #[error("cannot install sc-exec into {dir}: {source}. The directory (or its parent, to create it) must exist and be writable.")]
    Install { dir: PathBuf, source: std::io::Error },

    /// Reading the user's layer (the overlay's upper directory) failed.
    #[error(transparent)]
    WalkUpper(#[from] WalkError),

    /// Looking into the image's root directory failed.
    #[error(transparent)]
    ReadImage(#[from] LowerError),

    #[error(
        "cannot use {what} listed in {file}: {source}. The node plugin writes this file \
         (sc_api::layer_diff::encode_path_list); a hand-made one needs NUL-terminated entries (`find -print0`)."
    )]
    PathList { file: PathBuf, what: &'static str, source: PathListError },
}

impl Error {
    /// The process exit code for this failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => EX_USAGE,
            Error::Config { .. } | Error::RunAsNonRoot(_) | Error::NoCommand(_) | Error::ImageConfig { .. } | Error::Account(_) => {
                EX_CONFIG
            }
            Error::RootfsNotReady { .. } | Error::PrepareFailed { .. } | Error::RootfsNotMounted { .. } => EX_UNAVAILABLE,
            Error::CommandNotFound { .. } => EXIT_COMMAND_NOT_FOUND,
            Error::NotExecutable { .. } => EXIT_NOT_EXECUTABLE,
            Error::ChrootDenied { .. } | Error::PrivilegeChange { .. } => EX_NOPERM,
            Error::Os { .. } => EX_OSERR,
            Error::Io { .. } | Error::WalkUpper(_) | Error::ReadImage(_) => EX_IOERR,
            Error::PathList { .. } => EX_DATAERR,
            Error::Install { .. } => EX_CANTCREAT,
        }
    }

    pub(crate) fn os(action: impl Into<String>, source: Errno) -> Self {
        Error::Os { action: action.into(), source }
    }

    pub(crate) fn io(action: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { action: action.into(), source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failure_maps_to_its_documented_exit_code() {
        let cases: Vec<(Error, i32)> = vec![
            (Error::Usage("x".into()), 64),
            (Error::Config { variable: "V", message: "m".into() }, 78),
            (Error::RunAsNonRoot("container has runAsNonRoot and image will run as root".into()), 78),
            (Error::NoCommand("no command specified".into()), 78),
            (Error::ImageConfig { path: "/x".into(), message: "m".into() }, 78),
            (Error::Account("no users found".into()), 78),
            (Error::RootfsNotReady { waited_seconds: 1, what: "w".into() }, 69),
            (Error::PrepareFailed { message: "m".into() }, 69),
            (Error::RootfsNotMounted { path: "/r".into(), command: "ls".into() }, 69),
            (Error::CommandNotFound { command: "c".into(), search_path: "/bin".into() }, 127),
            (Error::NotExecutable { path: "/x".into(), reason: "r".into() }, 126),
            (Error::ChrootDenied { path: "/r".into() }, 77),
            (Error::PrivilegeChange { action: "a".into(), reason: "EPERM".into() }, 77),
            (Error::os("a", Errno::EIO), 71),
            (Error::io("a", std::io::Error::other("x")), 74),
            (Error::Install { dir: "/d".into(), source: std::io::Error::other("x") }, 73),
            (Error::WalkUpper(WalkError::OpenUpper { upper: "/u".into(), source: Errno::ENOENT }), 74),
            (Error::ReadImage(LowerError::Root { root: "/".into(), source: std::io::Error::other("x") }), 74),
            (Error::PathList { file: "/o".into(), what: "w", source: PathListError::Unterminated { entries: 0 } }, 65),
        ];
        for (error, code) in cases {
            assert_eq!(error.exit_code(), code, "{error}");
        }
    }

    #[test]
    fn messages_say_what_to_do() {
        let image = Error::ImageConfig { path: "/.sc/control/image-config.json".into(), message: "not JSON".into() };
        assert!(image.to_string().contains("restart the pod"), "{image}");
        let not_found = Error::CommandNotFound { command: "vim".into(), search_path: "/usr/bin".into() };
        assert!(not_found.to_string().contains("Install it"), "{not_found}");
        let chroot = Error::ChrootDenied { path: "/.sc/rootfs".into() };
        assert!(chroot.to_string().contains("SYS_CHROOT"), "{chroot}");
    }
}
