//! The real syscalls and files behind [`System`], exercised by the `*_root.rs` tests.

use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use sys_mount::{Mount, MountFlags, UnmountFlags};

use super::{
    ClaimOverlayDirs, FileIdentity, FileKind, FileStatus, FsStats, LayerUpper, MountedFilesystem, OverlayDirs, System, overlay_mount_data,
    real_claim, real_layer,
};
use crate::dirs;
use crate::layout::{DataRoot, LAYER_TMPFS_SOURCE, TARGET_TMPFS_SOURCE};
use crate::node::UpperSupport;

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

    fn mount_claim_overlay(&self, dirs: &ClaimOverlayDirs<'_>, target: &Path) -> io::Result<()> {
        real_claim::mount_claim_overlay(dirs, target)
    }

    fn mounted_filesystem(&self, mount_point: &Path) -> io::Result<MountedFilesystem> {
        real_claim::mounted_filesystem(mount_point)
    }

    fn create_claim_dirs(&self, claim_root: &Path, device: (u32, u32)) -> io::Result<()> {
        real_claim::create_claim_dirs(claim_root, device)
    }

    fn probe_upper_support(&self, dir: &Path) -> io::Result<UpperSupport> {
        real_claim::probe_upper_support(dir)
    }

    fn mount_target_tmpfs(&self, target: &Path) -> io::Result<()> {
        Mount::builder()
            .fstype("tmpfs")
            .flags(MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC)
            .data("mode=0755,size=64k,nr_inodes=64")
            .mount(TARGET_TMPFS_SOURCE, target)
            .map(drop)
    }

    fn mount_layer_tmpfs(&self, target: &Path, size_bytes: u64) -> io::Result<()> {
        // Four inodes are used (its root, `upper/`, the list and its temporary file).
        Mount::builder()
            .fstype("tmpfs")
            .flags(MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC)
            .data(&format!("mode=0755,size={size_bytes},nr_inodes=16"))
            .mount(LAYER_TMPFS_SOURCE, target)
            .map(drop)
    }

    fn remount_read_only(&self, target: &Path) -> io::Result<()> {
        let flags = MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        nix::mount::mount(None::<&str>, target, None::<&str>, flags, None::<&str>).map_err(io::Error::from)
    }

    fn bind_layer_read_only(&self, upper: &LayerUpper, target: &Path) -> io::Result<()> {
        real_layer::bind_layer_read_only(upper, target)
    }

    fn opaque_directories(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        real_layer::opaque_directories(dir)
    }

    fn bind_mount_read_only(&self, source: &Path, target: &Path) -> io::Result<()> {
        let restricted = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        bind_then_restrict(source, target, restricted)
    }

    fn bind_mount_read_only_executable(&self, source: &Path, target: &Path) -> io::Result<()> {
        bind_then_restrict(source, target, MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV)
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

    fn file_status(&self, path: &Path) -> io::Result<FileStatus> {
        use std::os::unix::fs::MetadataExt;
        let metadata = std::fs::symlink_metadata(path)?;
        let file_type = metadata.file_type();
        let kind = if file_type.is_symlink() {
            FileKind::Symlink
        } else if file_type.is_dir() {
            FileKind::Directory
        } else if file_type.is_file() {
            FileKind::Regular
        } else {
            FileKind::Other
        };
        Ok(FileStatus { kind, uid: metadata.uid(), mode: metadata.mode() & 0o7777 })
    }

    fn exists(&self, path: &Path) -> bool {
        std::fs::symlink_metadata(path).is_ok()
    }

    fn is_directory(&self, path: &Path) -> bool {
        std::fs::symlink_metadata(path).is_ok_and(|metadata| metadata.is_dir())
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir(path)
    }

    fn create_dir_all(&self, dir: &Path, mode: u32) -> io::Result<()> {
        std::fs::DirBuilder::new().recursive(true).mode(mode).create(dir)
    }

    fn create_private_dirs(&self, base: &Path, dir: &Path, children: &[(&str, u32)]) -> io::Result<()> {
        let parent = dirs::create_private_dirs(base, dir)?;
        for (name, mode) in children {
            dirs::make_directory(&parent, Path::new(name), *mode).map_err(|error| in_path(&dir.join(name), error))?;
        }
        Ok(())
    }

    fn secure_data_root(&self, data: &DataRoot) -> io::Result<()> {
        dirs::secure_data_root(data)
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir(path)
    }

    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn write_file_durably(&self, path: &Path, temporary: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
            .open(temporary)?;
        // The mode given to `open` is masked by the umask, and a temporary file a crash left
        // behind keeps the mode it had.
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.write_all(contents)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(temporary, path)?;
        self.sync_directory(path.parent().unwrap_or(Path::new("/")))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn sync_directory(&self, dir: &Path) -> io::Result<()> {
        std::fs::File::open(dir)?.sync_all()
    }

    fn list_directory(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        std::fs::read_dir(dir)?.map(|entry| entry.map(|entry| entry.path())).collect()
    }

    fn statvfs(&self, path: &Path) -> io::Result<FsStats> {
        let stat = nix::sys::statvfs::statvfs(path)?;
        let fragment = stat.fragment_size();
        Ok(FsStats {
            read_only: stat.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY),
            bytes_total: stat.blocks() * fragment,
            bytes_free: stat.blocks_free() * fragment,
            bytes_available: stat.blocks_available() * fragment,
            inodes_total: stat.files(),
            inodes_free: stat.files_free(),
        })
    }
}

fn in_path(path: &Path, error: io::Error) -> io::Error {
    io::Error::new(error.kind(), format!("{}: {error}", path.display()))
}

/// A bind mount's flags other than `MS_BIND` take effect only through a remount of the bind; if
/// that fails the bind is undone, so no unrestricted bind is ever left behind.
pub(super) fn bind_then_restrict(source: &Path, target: &Path, flags: MsFlags) -> io::Result<()> {
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
