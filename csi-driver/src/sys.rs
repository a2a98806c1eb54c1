//! Every mount-related syscall and `/proc` read the node plugin makes, behind one trait, so the
//! publish logic is tested with a fake mount table and the real thing is tested as root.

use std::io;
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use sys_mount::{Mount, MountFlags, UnmountFlags};

use crate::layout::TARGET_TMPFS_SOURCE;

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

/// Mount operations and process introspection in the mount namespace the plugin runs in (the
/// host's, in production).
pub trait System: Send + Sync + 'static {
    /// Mounts an overlay of `dirs` at `target`.
    fn mount_overlay(&self, dirs: &OverlayDirs<'_>, target: &Path) -> io::Result<()>;
    /// Mounts the small tmpfs that holds a published volume's `rootfs/` and `control/`.
    fn mount_target_tmpfs(&self, target: &Path) -> io::Result<()>;
    /// Bind-mounts `source` at `target` read-only, without setuid, devices or exec (the control
    /// directory: the pod may connect to the socket in it and change nothing).
    fn bind_mount_read_only(&self, source: &Path, target: &Path) -> io::Result<()>;
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
}

/// The real syscalls.
#[derive(Clone, Debug)]
pub struct RealSystem {
    proc_root: PathBuf,
}

impl Default for RealSystem {
    fn default() -> Self {
        Self { proc_root: PathBuf::from("/proc") }
    }
}

impl System for RealSystem {
    fn mount_overlay(&self, dirs: &OverlayDirs<'_>, target: &Path) -> io::Result<()> {
        let data = overlay_mount_data(dirs);
        Mount::builder().fstype("overlay").data(&data).mount("overlay", target).map(drop)
    }

    fn mount_target_tmpfs(&self, target: &Path) -> io::Result<()> {
        Mount::builder()
            .fstype("tmpfs")
            .flags(MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC)
            .data("mode=0755,size=64k,nr_inodes=64")
            .mount(TARGET_TMPFS_SOURCE, target)
            .map(drop)
    }

    fn bind_mount_read_only(&self, source: &Path, target: &Path) -> io::Result<()> {
        let restricted = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        bind_then_restrict(source, target, restricted)
    }

    fn bind_mount_nosuid_nodev(&self, dir: &Path) -> io::Result<()> {
        bind_then_restrict(dir, dir, MsFlags::MS_NOSUID | MsFlags::MS_NODEV)
    }

    fn unmount(&self, target: &Path) -> io::Result<()> {
        sys_mount::unmount(target, UnmountFlags::empty())
    }

    fn own_mountinfo(&self) -> io::Result<String> {
        std::fs::read_to_string(self.proc_root.join("self/mountinfo"))
    }

    fn process_mountinfo(&self, pid: u32) -> io::Result<String> {
        std::fs::read_to_string(self.proc_root.join(pid.to_string()).join("mountinfo"))
    }

    fn process_cgroups(&self) -> io::Result<Vec<(u32, String)>> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&self.proc_root)? {
            let Some(pid) = entry?.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else { continue };
            // Processes exit while we scan; a vanished one is simply not a candidate.
            if let Ok(text) = std::fs::read_to_string(self.proc_root.join(pid.to_string()).join("cgroup")) {
                found.push((pid, text));
            }
        }
        Ok(found)
    }

    fn process_cgroup(&self, pid: u32) -> io::Result<String> {
        std::fs::read_to_string(self.proc_root.join(pid.to_string()).join("cgroup"))
    }

    fn first_cgroup_procs(&self, dirs: &[PathBuf]) -> io::Result<Option<(PathBuf, String)>> {
        // A missing directory is the common case (another layout, another hierarchy): one stat
        // each, and only the directory that exists is read.
        let Some(dir) = dirs.iter().find(|dir| std::fs::metadata(dir).is_ok_and(|metadata| metadata.is_dir())) else {
            return Ok(None);
        };
        let procs = std::fs::read_to_string(dir.join("cgroup.procs"))?;
        Ok(Some((dir.clone(), procs)))
    }

    fn process_root_identity(&self, pid: u32) -> io::Result<FileIdentity> {
        // `/proc/<pid>/root` is a magic link to the process's root: stat follows it to that
        // directory, whatever mount namespace it lives in.
        let metadata = std::fs::metadata(self.proc_root.join(pid.to_string()).join("root"))?;
        Ok(FileIdentity::of(&metadata))
    }

    fn identity_of(&self, path: &Path) -> io::Result<FileIdentity> {
        std::fs::symlink_metadata(path).map(|metadata| FileIdentity::of(&metadata))
    }
}

/// A bind mount's flags other than `MS_BIND` take effect only through a remount of the bind; if
/// that fails the bind is undone, so no unrestricted bind is ever left behind.
fn bind_then_restrict(source: &Path, target: &Path, flags: MsFlags) -> io::Result<()> {
    nix::mount::mount(Some(source), target, None::<&str>, MsFlags::MS_BIND, None::<&str>)?;
    let restricted = nix::mount::mount(None::<&str>, target, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags, None::<&str>);
    match restricted {
        Ok(()) => Ok(()),
        Err(errno) => match nix::mount::umount2(target, nix::mount::MntFlags::empty()) {
            Ok(()) => Err(errno.into()),
            Err(undo) => Err(io::Error::new(
                io::Error::from(errno).kind(),
                format!("restricting the bind mount: {errno}; undoing the bind failed too ({undo}), so it is still mounted"),
            )),
        },
    }
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
