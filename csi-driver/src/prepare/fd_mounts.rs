//! The real mounts of a preparation, made from inside the container's mount namespace and root:
//! every path is an `O_PATH` file descriptor opened with `openat2` (beneath the rootfs, no magic
//! links, symlinks only where the plan allows them), and mounted on through
//! `/proc/self/fd/<fd>` of the container's own `/proc`, so a path the tenant controls is never
//! resolved again between the check and the mount.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::stat::{SFlag, fstat};
use nix::sys::statfs::{FsType, OVERLAYFS_SUPER_MAGIC, PROC_SUPER_MAGIC, fstatfs};
use nix::sys::statvfs::{FsFlags, fstatvfs};
use sc_api::consts::CONSUMER_ROOTFS_PATH;

use super::error::{HelperError, mount_error};
use super::plan::{Mounts, PLAN, mount_plan};
use super::protocol::HelperReport;
use crate::inroot::{self, FdTree, Kind, Tree};

/// Opens the rootfs in the container, checks it is the overlay, and mounts the [`PLAN`] in it.
pub(super) fn prepare_rootfs(container_root: OwnedFd) -> Result<HelperReport, HelperError> {
    let mounts = FdMounts { container_root };
    let rootfs = mounts
        .container_source(CONSUMER_ROOTFS_PATH, false, Kind::Directory)
        .map_err(|found| HelperError::UnexpectedContainer { path: CONSUMER_ROOTFS_PATH.into(), found, expected: "a directory" })?
        .ok_or_else(|| HelperError::UnexpectedContainer {
            path: CONSUMER_ROOTFS_PATH.into(),
            found: "missing".into(),
            expected: "the rootfs volume",
        })?;
    let kind = fstatfs(&rootfs).map(|stat| stat.filesystem_type()).map_err(|errno| mount_error("inspecting", "/", errno.into()))?;
    if kind != OVERLAYFS_SUPER_MAGIC {
        return Err(HelperError::UnexpectedContainer {
            path: CONSUMER_ROOTFS_PATH.into(),
            found: filesystem_name(kind),
            expected: "the StoppableContainer overlay",
        });
    }
    // Nothing we mount below the rootfs may propagate out of this mount namespace, even if the
    // volume was mounted with shared propagation.
    mount(None::<&str>, fd_path(&rootfs).as_str(), None::<&str>, MsFlags::MS_SLAVE, None::<&str>)
        .map_err(|errno| mount_error("making mounts below the rootfs local to the container", "/", errno.into()))?;
    mount_plan(&mounts, &rootfs, PLAN)
}

/// The real mounts: file descriptors, mounted on through `/proc/self/fd/<fd>`.
struct FdMounts {
    container_root: OwnedFd,
}

impl Tree for FdMounts {
    type Node = OwnedFd;
    fn lookup(&self, dir: &OwnedFd, name: &str) -> Result<inroot::Entry<OwnedFd>, inroot::LookupError> {
        FdTree.lookup(dir, name)
    }
    fn make_directory(&self, dir: &OwnedFd, name: &str) -> io::Result<()> {
        FdTree.make_directory(dir, name)
    }
    fn make_file(&self, dir: &OwnedFd, name: &str) -> io::Result<()> {
        FdTree.make_file(dir, name)
    }
    fn duplicate(&self, node: &OwnedFd) -> io::Result<OwnedFd> {
        FdTree.duplicate(node)
    }
}

impl Mounts for FdMounts {
    /// In-root symlinks are followed only when asked (kubelet resolves its mount points that way
    /// too); magic links never.
    fn container_source(&self, path: &str, follow_symlinks: bool, kind: Kind) -> Result<Option<OwnedFd>, String> {
        let mut resolve = ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS;
        if !follow_symlinks {
            resolve |= ResolveFlag::RESOLVE_NO_SYMLINKS;
        }
        let how = OpenHow::new().flags(OFlag::O_PATH | OFlag::O_CLOEXEC).resolve(resolve);
        let fd = match openat2(&self.container_root, path.trim_start_matches('/'), how) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(None),
            Err(Errno::ELOOP) => return Err("a symlink".into()),
            Err(errno) => return Err(format!("unusable ({errno})")),
        };
        let mode = fstat(&fd).map_err(|errno| format!("unusable ({errno})"))?.st_mode;
        let found = SFlag::from_bits_truncate(mode) & SFlag::S_IFMT;
        match (found, kind) {
            (SFlag::S_IFDIR, Kind::Directory) | (SFlag::S_IFREG, Kind::RegularFile) => Ok(Some(fd)),
            (SFlag::S_IFDIR, _) => Err("a directory".into()),
            _ => Err("not a directory or regular file".into()),
        }
    }

    fn is_proc(&self, node: &OwnedFd) -> io::Result<bool> {
        Ok(fstatfs(node)?.filesystem_type() == PROC_SUPER_MAGIC)
    }

    fn bind(&self, source: &OwnedFd, destination: &OwnedFd) -> io::Result<()> {
        let flags = MsFlags::MS_BIND | MsFlags::MS_REC;
        Ok(mount(Some(fd_path(source).as_str()), fd_path(destination).as_str(), None::<&str>, flags, None::<&str>)?)
    }

    fn remount_read_only(&self, parent: &OwnedFd, name: &str) -> io::Result<()> {
        let top = reopen_mount(parent, name)?;
        let kept = kept_flags(fstatvfs(&top)?.flags());
        let flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | kept;
        Ok(mount(None::<&str>, fd_path(&top).as_str(), None::<&str>, flags, None::<&str>)?)
    }

    fn unmount(&self, parent: &OwnedFd, name: &str) -> io::Result<()> {
        let top = reopen_mount(parent, name)?;
        Ok(umount2(fd_path(&top).as_str(), MntFlags::MNT_DETACH)?)
    }
}

/// The mount now on `parent/name` (opening the name again crosses into it).
fn reopen_mount(parent: &OwnedFd, name: &str) -> nix::Result<OwnedFd> {
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
    openat2(parent, name, how)
}

/// Per-mount flags a read-only remount must repeat (a bind remount replaces them all).
fn kept_flags(flags: FsFlags) -> MsFlags {
    [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ]
    .into_iter()
    .filter(|(statvfs_flag, _)| flags.contains(*statvfs_flag))
    .fold(MsFlags::empty(), |kept, (_, mount_flag)| kept | mount_flag)
}

pub(super) fn filesystem_name(kind: FsType) -> String {
    format!("a filesystem of type {:#x}", kind.0)
}

fn fd_path(fd: &OwnedFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_only_remount_keeps_the_other_flags() {
        assert_eq!(kept_flags(FsFlags::ST_NOSUID | FsFlags::ST_NOEXEC | FsFlags::ST_RDONLY), MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC);
        assert_eq!(kept_flags(FsFlags::empty()), MsFlags::empty());
    }
}
