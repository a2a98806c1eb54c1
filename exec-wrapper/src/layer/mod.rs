//! The user's layer: what an overlay's upper directory holds, read as changes against the image
//! (`kubectl sc diff`, the rebase report) and written as one OCI image layer (`kubectl sc export`).
//!
//! The upper is read from inside a pod of the tenant's namespace, where `trusted.overlay.*`
//! xattrs cannot be read (they need `CAP_SYS_ADMIN`); the node plugin, which can, hands the list
//! of opaque directories over beside the upper. Whiteouts are character devices 0/0 and are seen
//! by anyone.

pub mod conflicts;
pub mod diff;
pub mod oci;
pub mod walk;

use std::path::PathBuf;

/// One entry of an upper directory, as the walk found it (no symlink followed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpperEntry {
    /// Path inside the rootfs, absolute (`/etc/hosts`).
    pub path: PathBuf,
    pub kind: UpperKind,
    /// `st_mode` as `lstat` gives it (file type and permission bits).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Seconds since the epoch (the file's `st_mtime`).
    pub mtime: i64,
}

/// What an upper entry means to the merged rootfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpperKind {
    /// A regular file, `size` bytes; `source` is where to read it (inside the upper).
    File {
        size: u64,
        source: PathBuf,
    },
    /// A second or later name of a regular file already listed at `target` (same inode).
    HardLink {
        target: PathBuf,
    },
    /// A directory; `opaque` when it hides the image's directory of the same path entirely.
    Directory {
        opaque: bool,
    },
    Symlink {
        target: PathBuf,
    },
    CharDevice {
        major: u32,
        minor: u32,
    },
    BlockDevice {
        major: u32,
        minor: u32,
    },
    Fifo,
    Socket,
    /// A whiteout: the image's entry at this path is deleted.
    Whiteout,
}
