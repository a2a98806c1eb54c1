//! Every syscall, `/proc` read and file operation of the node plugin's publish, unpublish and
//! recovery, behind one trait, so their decisions are unit-tested against a fake node (an
//! in-memory mount table, files and processes: [`fake`]) and the real thing ([`RealSystem`]) is
//! tested as root. Only the control sockets ([`crate::control`]) and the size-limited
//! filesystems (their own trait, [`crate::quota::LoopSystem`]) are outside it.

use std::io;
use std::path::{Path, PathBuf};

use crate::layout::DataRoot;
use crate::node::UpperSupport;

#[cfg(test)]
pub(crate) mod fake;
mod real;
mod real_claim;
mod real_layer;

pub use real::RealSystem;

/// The lower, upper and work directories of one overlay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OverlayDirs<'a> {
    pub lower: &'a Path,
    pub upper: &'a Path,
    pub work: &'a Path,
}

/// Overlay options that let a persistent upper be reused over a lower that changed (a restarted
/// provider, a new image): no inode index, no metacopy, no redirects, no xino.
pub const OVERLAY_COMPAT_OPTIONS: &str = "index=off,metacopy=off,redirect_dir=off,xino=off";

/// The mount data string for an overlay.
pub fn overlay_mount_data(dirs: &OverlayDirs<'_>) -> String {
    format!("lowerdir={},upperdir={},workdir={},{OVERLAY_COMPAT_OPTIONS}", dirs.lower.display(), dirs.upper.display(), dirs.work.display())
}

/// What makes a directory the same directory: its filesystem's device and its inode. A device
/// number alone is not an identity: every directory of a filesystem shares it (a provider that
/// `chroot`s into an emptyDir has the device of the node's disk).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileIdentity {
    pub device: u64,
    pub inode: u64,
}

impl FileIdentity {
    pub fn of(metadata: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        Self { device: metadata.dev(), inode: metadata.ino() }
    }
}

/// What the kernel says of a mounted filesystem, read through its mount point opened without
/// following a symlink: `st_dev` of the directory (which is the mount's root only if it equals
/// the mount table's `major:minor` for it) and `statfs`'s `f_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MountedFilesystem {
    pub device: (u32, u32),
    pub magic: i64,
}

/// An overlay whose upper and work directories are `<claim_root>/stoppablecontainer/{upper,work}`
/// on the claim's filesystem (device `device`), mounted with the source `source`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimOverlayDirs<'a> {
    pub lower: &'a Path,
    pub claim_root: &'a Path,
    pub device: (u32, u32),
    pub source: &'a str,
}

/// The upper directory a layer volume reads, and how it is reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LayerUpper {
    /// A node-local StoppableContainer's upper, below the root-only data root.
    DataRoot(PathBuf),
    /// `<claim_root>/stoppablecontainer/upper` on the claim's filesystem (device `device`): each
    /// directory on the way is opened without following a symlink and must be on the claim, as
    /// for [`System::mount_claim_overlay`] (a tenant writes the claim from any pod of theirs).
    Claim { claim_root: PathBuf, device: (u32, u32) },
}

impl LayerUpper {
    /// The upper's path (for messages and identity checks; the mounts never go by it).
    pub fn path(&self) -> PathBuf {
        match self {
            LayerUpper::DataRoot(path) => path.clone(),
            LayerUpper::Claim { claim_root, .. } => claim_root.join(sc_api::storage::CLAIM_DATA_DIR).join("upper"),
        }
    }
}

/// The extended attribute overlayfs marks an opaque directory of an upper with (value `y`): what
/// was below it in the lower layers is hidden. Only a process with `CAP_SYS_ADMIN` reads it.
pub const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// What `lstat` says of a path: its kind (a final symlink is not followed), owner and mode bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileStatus {
    pub kind: FileKind,
    pub uid: u32,
    /// The permission bits (`st_mode & 0o7777`).
    pub mode: u32,
}

/// The kind of a file, as `lstat` tells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    Directory,
    Regular,
    Symlink,
    /// A device, socket or FIFO.
    Other,
}

/// What `statvfs` says of a filesystem.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FsStats {
    /// Mounted read-only (`ST_RDONLY`).
    pub read_only: bool,
    pub bytes_total: u64,
    pub bytes_free: u64,
    pub bytes_available: u64,
    pub inodes_total: u64,
    pub inodes_free: u64,
}

/// Mount operations, process introspection and file operations in the mount namespace the
/// plugin runs in (the host's, in production). Errors are the syscalls' own (`raw_os_error`
/// kept); callers add what they were doing.
pub trait System: Send + Sync + 'static {
    /// Mounts an overlay of `dirs` at `target`.
    fn mount_overlay(&self, dirs: &OverlayDirs<'_>, target: &Path) -> io::Result<()>;
    /// Mounts an overlay whose upper is on a claim, `nodev,nosuid` (a tenant can write the claim
    /// from any pod of theirs: a device node or setuid program planted there must give nothing).
    /// The upper and work directories are opened without following a symlink (each must be a
    /// directory on the claim's device) and handed to overlayfs as `/proc/self/fd/<fd>`, so a
    /// tenant who swaps one for a symlink between a check and the mount changes nothing.
    fn mount_claim_overlay(&self, dirs: &ClaimOverlayDirs<'_>, target: &Path) -> io::Result<()>;
    /// `st_dev` and `f_type` of the filesystem mounted at `mount_point`, opened without
    /// following a symlink.
    fn mounted_filesystem(&self, mount_point: &Path) -> io::Result<MountedFilesystem>;
    /// Creates `<claim_root>/stoppablecontainer` (root-only) and its `upper` (0755) and `work`
    /// (0700) if missing, following no symlink below `claim_root`; each must be a directory on
    /// `device` (`NotADirectory` otherwise).
    fn create_claim_dirs(&self, claim_root: &Path, device: (u32, u32)) -> io::Result<()>;
    /// Whether the filesystem of the directory `dir` gives file types in listings and holds a
    /// `trusted.*` xattr: a probe file is made, tried and removed.
    fn probe_upper_support(&self, dir: &Path) -> io::Result<UpperSupport>;
    /// Mounts the small tmpfs that holds a published volume's `rootfs/` and `control/`.
    fn mount_target_tmpfs(&self, target: &Path) -> io::Result<()>;
    /// Mounts the tmpfs of a layer volume at `target` (its source is
    /// [`crate::layout::LAYER_TMPFS_SOURCE`], `nosuid,nodev,noexec`), which holds `upper/` and
    /// the opaque-directory list; at most `size_bytes` can be written to it.
    fn mount_layer_tmpfs(&self, target: &Path, size_bytes: u64) -> io::Result<()>;
    /// Remounts the filesystem mounted at `target` read-only, `nosuid,nodev,noexec`.
    fn remount_read_only(&self, target: &Path) -> io::Result<()>;
    /// Bind-mounts `upper` at `target` read-only, without setuid, devices or exec. The upper is
    /// opened without following a symlink (`NotFound` when it does not exist, `NotADirectory`
    /// when something else is there or, on a claim, it is not on the claim's filesystem) and the
    /// bind made from that descriptor, so no path is resolved again between the check and the
    /// mount.
    fn bind_layer_read_only(&self, upper: &LayerUpper, target: &Path) -> io::Result<()>;
    /// The directories of the tree at `dir` (a layer volume's bind of an upper) marked opaque
    /// ([`OPAQUE_XATTR`] is `y`), as paths of the rootfs (`/` for `dir` itself), sorted. Every
    /// directory is opened beneath `dir` without following a symlink or crossing a mount; one that
    /// is removed or replaced during the walk (a running workload) is skipped.
    fn opaque_directories(&self, dir: &Path) -> io::Result<Vec<PathBuf>>;
    /// Bind-mounts `source` at `target` read-only, without setuid, devices or exec (the control
    /// directory: the pod may connect to the socket in it and change nothing).
    fn bind_mount_read_only(&self, source: &Path, target: &Path) -> io::Result<()>;
    /// Bind-mounts `source` at `target` read-only, without setuid or devices but executable (the
    /// exec-wrapper directory: the provider runs the `sc-exec` in it).
    fn bind_mount_read_only_executable(&self, source: &Path, target: &Path) -> io::Result<()>;
    /// Bind-mounts the directory `dir` onto itself without setuid programs and device files
    /// (the data root's `containers/`: the uppers hold what tenants put in their rootfs; through
    /// their overlays both still work, as the overlay mount's own flags are what count there).
    fn bind_mount_nosuid_nodev(&self, dir: &Path) -> io::Result<()>;
    /// Unmounts the topmost mount at `target` (never lazily: a detached overlay would keep its
    /// upper directory in use where nobody can see it).
    fn unmount(&self, target: &Path) -> io::Result<()>;
    /// The mountinfo of this process's mount namespace.
    fn own_mountinfo(&self) -> io::Result<String>;
    /// The mountinfo of process `pid`, as that process sees its mounts.
    fn process_mountinfo(&self, pid: u32) -> io::Result<String>;
    /// The `/proc/<pid>/cgroup` text of every process: finds a container's processes when its
    /// cgroup directory cannot be found (slow on a busy node).
    fn process_cgroups(&self) -> io::Result<Vec<(u32, String)>>;
    /// The `/proc/<pid>/cgroup` text of one process.
    fn process_cgroup(&self, pid: u32) -> io::Result<String>;
    /// The first of `dirs` that exists, with the text of its `cgroup.procs` (the pids in it), or
    /// `None` when none exists: a container's processes without scanning `/proc`.
    fn first_cgroup_procs(&self, dirs: &[PathBuf]) -> io::Result<Option<(PathBuf, String)>>;
    /// The identity of the directory process `pid` sees as its `/` (its `/proc/<pid>/root`).
    fn process_root_identity(&self, pid: u32) -> io::Result<FileIdentity>;
    /// The identity of the directory at `path`, without following a final symlink.
    fn identity_of(&self, path: &Path) -> io::Result<FileIdentity>;

    /// Kind, owner and mode of `path`, without following a final symlink.
    fn file_status(&self, path: &Path) -> io::Result<FileStatus>;
    /// Whether anything is at `path` (a final symlink is not followed).
    fn exists(&self, path: &Path) -> bool;
    /// Whether `path` is a directory (a final symlink is not followed).
    fn is_directory(&self, path: &Path) -> bool;
    /// Creates the directory `path`; its parent must exist.
    fn create_dir(&self, path: &Path) -> io::Result<()>;
    /// Creates `dir` and its missing parents with `mode` (less the umask).
    fn create_dir_all(&self, dir: &Path, mode: u32) -> io::Result<()>;
    /// Creates `dir` below `base` root-only without following a symlink below `base`, then each
    /// of `children` in it with exactly its mode if missing (see [`crate::dirs`]).
    fn create_private_dirs(&self, base: &Path, dir: &Path, children: &[(&str, u32)]) -> io::Result<()>;
    /// Makes the data root and its top directories exist and root-only
    /// ([`crate::dirs::secure_data_root`]).
    fn secure_data_root(&self, data: &DataRoot) -> io::Result<()>;
    /// Removes the empty directory `path`.
    fn remove_dir(&self, path: &Path) -> io::Result<()>;
    /// The contents of the file at `path`.
    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Replaces the file at `path` with `contents` durably and atomically: `temporary` (in the
    /// same directory) is opened without following a symlink, given exactly `mode`, written,
    /// fsynced and renamed over `path`, then the directory is fsynced. A crash at any point
    /// leaves the old file or the new one.
    fn write_file_durably(&self, path: &Path, temporary: &Path, contents: &[u8], mode: u32) -> io::Result<()>;
    /// Renames `from` to `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes the file (or socket, or symlink) at `path`.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Makes a rename or unlink in `dir` durable.
    fn sync_directory(&self, dir: &Path) -> io::Result<()>;
    /// The paths of the entries of the directory `dir`.
    fn list_directory(&self, dir: &Path) -> io::Result<Vec<PathBuf>>;
    /// `statvfs` of the filesystem holding `path`.
    fn statvfs(&self, path: &Path) -> io::Result<FsStats>;
}

/// Whether the node runs cgroup v2 (the unified hierarchy is mounted at `mount_root`), which
/// decides where kubelet's pod cgroups are (see [`crate::cgroup::hierarchies`]).
pub fn is_cgroup_unified(mount_root: &Path) -> bool {
    mount_root.join("cgroup.controllers").exists()
}

/// Enters the mount namespace at `namespace_path` (e.g. `/proc/1/ns/mnt`). Must be called before
/// any other thread exists: `setns(CLONE_NEWNS)` fails in a multi-threaded process.
pub fn enter_mount_namespace(namespace_path: &Path) -> io::Result<()> {
    let file = std::fs::File::open(namespace_path)?;
    nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNS).map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_data_carries_the_compat_options() {
        let data = overlay_mount_data(&OverlayDirs { lower: Path::new("/l"), upper: Path::new("/u"), work: Path::new("/w") });
        assert_eq!(data, "lowerdir=/l,upperdir=/u,workdir=/w,index=off,metacopy=off,redirect_dir=off,xino=off");
    }
}
