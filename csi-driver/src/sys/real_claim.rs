//! The real syscalls of a claim-backed overlay (see [`super::System::mount_claim_overlay`]):
//! everything on the claim is reached through directories opened without following a symlink,
//! because a tenant can write the claim from any pod of theirs while the StoppableContainer is
//! stopped (and, on this node, while it runs).

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, OFlag, openat};
use nix::sys::stat::{Mode, fstat};
use nix::unistd::UnlinkatFlags;
use sc_api::storage::CLAIM_DATA_DIR;
use sys_mount::{Mount, MountFlags};

use super::{ClaimOverlayDirs, MountedFilesystem, OVERLAY_COMPAT_OPTIONS};
use crate::dirs::{self, PRIVATE_DIR_MODE, ROOTFS_ROOT_MODE};
use crate::node::UpperSupport;

/// The probe file [`probe_upper_support`] makes and removes.
const PROBE_NAME: &str = ".sc-upper-probe";
/// The xattr the probe sets: overlayfs keeps its own (`trusted.overlay.*`) in this namespace.
const PROBE_XATTR: &std::ffi::CStr = c"trusted.stoppablecontainer.probe";

pub(super) fn open_directory(parent: impl AsFd, name: &Path) -> io::Result<OwnedFd> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    openat(parent, name, flags, Mode::empty()).map_err(|errno| match errno {
        Errno::ELOOP | Errno::ENOTDIR => io::Error::new(io::ErrorKind::NotADirectory, format!("{} is not a directory", name.display())),
        other => io::Error::new(io::Error::from(other).kind(), format!("{}: {other}", name.display())),
    })
}

fn device_of(fd: &OwnedFd) -> io::Result<(u32, u32)> {
    let stat = fstat(fd)?;
    let number = |value: u64| u32::try_from(value).unwrap_or(u32::MAX);
    Ok((number(nix::sys::stat::major(stat.st_dev)), number(nix::sys::stat::minor(stat.st_dev))))
}

pub(super) fn require_device(fd: &OwnedFd, name: &Path, device: (u32, u32)) -> io::Result<()> {
    let found = device_of(fd)?;
    if found != device {
        return Err(io::Error::new(
            io::ErrorKind::NotADirectory,
            format!("{} is on device {}:{}, not on the claim's filesystem ({}:{})", name.display(), found.0, found.1, device.0, device.1),
        ));
    }
    Ok(())
}

/// Opens `<claim_root>/stoppablecontainer`, a directory on `device`.
fn open_data_dir(claim_root: &Path, device: (u32, u32)) -> io::Result<OwnedFd> {
    let root = open_directory(AT_FDCWD, claim_root)?;
    require_device(&root, claim_root, device)?;
    let data = open_directory(&root, Path::new(CLAIM_DATA_DIR))?;
    require_device(&data, Path::new(CLAIM_DATA_DIR), device)?;
    Ok(data)
}

/// Opens `name` in the claim's data directory `data`, a directory on `device`.
fn open_layer_dir(data: &OwnedFd, name: &str, device: (u32, u32)) -> io::Result<OwnedFd> {
    let dir = open_directory(data, Path::new(name))?;
    require_device(&dir, Path::new(name), device)?;
    Ok(dir)
}

/// Opens `<claim_root>/stoppablecontainer/upper`, a directory on `device` as each on the way.
pub(super) fn open_upper(claim_root: &Path, device: (u32, u32)) -> io::Result<OwnedFd> {
    open_layer_dir(&open_data_dir(claim_root, device)?, "upper", device)
}

/// Opens `<claim_root>/stoppablecontainer/{upper,work}`, each a directory on `device`.
fn open_layers(claim_root: &Path, device: (u32, u32)) -> io::Result<(OwnedFd, OwnedFd)> {
    let data = open_data_dir(claim_root, device)?;
    Ok((open_layer_dir(&data, "upper", device)?, open_layer_dir(&data, "work", device)?))
}

pub(super) fn mount_claim_overlay(dirs: &ClaimOverlayDirs<'_>, target: &Path) -> io::Result<()> {
    let (upper, work) = open_layers(dirs.claim_root, dirs.device)?;
    let data = format!(
        "lowerdir={},upperdir=/proc/self/fd/{},workdir=/proc/self/fd/{},{OVERLAY_COMPAT_OPTIONS}",
        dirs.lower.display(),
        upper.as_raw_fd(),
        work.as_raw_fd()
    );
    Mount::builder().fstype("overlay").flags(MountFlags::NOSUID | MountFlags::NODEV).data(&data).mount(dirs.source, target).map(drop)
}

pub(super) fn mounted_filesystem(mount_point: &Path) -> io::Result<MountedFilesystem> {
    let dir = open_directory(AT_FDCWD, mount_point)?;
    let device = device_of(&dir)?;
    let statfs = nix::sys::statfs::fstatfs(&dir)?;
    #[allow(clippy::unnecessary_cast)] // `f_type` is a c_long, 32 bits on some targets.
    let magic = statfs.filesystem_type().0 as i64;
    Ok(MountedFilesystem { device, magic })
}

pub(super) fn create_claim_dirs(claim_root: &Path, device: (u32, u32)) -> io::Result<()> {
    let data_dir = claim_root.join(CLAIM_DATA_DIR);
    let data = dirs::create_private_dirs(claim_root, &data_dir)?;
    require_device(&data, Path::new(CLAIM_DATA_DIR), device)?;
    for (name, mode) in [("upper", ROOTFS_ROOT_MODE), ("work", PRIVATE_DIR_MODE)] {
        dirs::make_directory(&data, Path::new(name), mode).map_err(|error| io::Error::new(error.kind(), format!("{name}: {error}")))?;
    }
    // What was there already must be a directory on the claim: checked again, race-free, by the mount.
    open_layers(claim_root, device).map(drop)
}

pub(super) fn probe_upper_support(dir: &Path) -> io::Result<UpperSupport> {
    let dir = open_directory(AT_FDCWD, dir)?;
    let probe = Path::new(PROBE_NAME);
    match nix::unistd::unlinkat(&dir, probe, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => {}
        Err(errno) => return Err(errno.into()),
    }
    let flags = OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let file = openat(&dir, probe, flags, Mode::from_bits_truncate(0o600))?;
    let trusted_xattr = set_probe_xattr(&file);
    drop(file);
    let d_type = {
        let mut listing = nix::dir::Dir::openat(&dir, ".", OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())?;
        listing
            .iter()
            .filter_map(Result::ok)
            .find(|entry| entry.file_name().to_bytes() == PROBE_NAME.as_bytes())
            .is_some_and(|entry| entry.file_type().is_some())
    };
    nix::unistd::unlinkat(&dir, probe, UnlinkatFlags::NoRemoveDir)?;
    Ok(UpperSupport { d_type, trusted_xattr: trusted_xattr? })
}

/// Sets the probe xattr on `file`: `Ok(false)` when the filesystem has no such xattrs.
#[allow(unsafe_code)]
fn set_probe_xattr(file: &OwnedFd) -> io::Result<bool> {
    let value = b"1";
    // SAFETY: `file` is an open descriptor, the name is a NUL-terminated C string and `value`
    // is a live buffer of the length passed; fsetxattr only reads them.
    let result = unsafe { nix::libc::fsetxattr(file.as_raw_fd(), PROBE_XATTR.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    if result == 0 {
        return Ok(true);
    }
    match Errno::last() {
        Errno::EOPNOTSUPP | Errno::EPERM => Ok(false),
        other => Err(other.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_finds_d_type_and_trusted_xattrs_on_the_test_machines_filesystem_and_leaves_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let support = probe_upper_support(dir.path()).expect("probe");
        assert!(support.d_type, "{support:?}");
        // trusted.* needs CAP_SYS_ADMIN: as a normal user the probe says no.
        assert_eq!(support.trusted_xattr, nix::unistd::geteuid().is_root(), "{support:?}");
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 0, "the probe file is removed");
    }

    #[test]
    fn claim_directories_are_made_and_a_planted_symlink_is_refused() {
        let claim = tempfile::tempdir().expect("tempdir");
        let device = device_of(&open_directory(AT_FDCWD, claim.path()).expect("open")).expect("device");
        create_claim_dirs(claim.path(), device).expect("made");
        let data = claim.path().join(CLAIM_DATA_DIR);
        let mode = |path: &Path| std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(path).expect("stat").permissions()) & 0o7777;
        assert_eq!((mode(&data), mode(&data.join("upper")), mode(&data.join("work"))), (0o700, 0o755, 0o700));
        create_claim_dirs(claim.path(), device).expect("twice is fine");

        let elsewhere = tempfile::tempdir().expect("tempdir");
        std::fs::remove_dir(data.join("work")).expect("rmdir");
        std::os::unix::fs::symlink(elsewhere.path(), data.join("work")).expect("symlink");
        let error = create_claim_dirs(claim.path(), device).expect_err("a planted symlink");
        assert_eq!(error.kind(), io::ErrorKind::NotADirectory, "{error}");
        assert_eq!(error.to_string(), "work is not a directory");
        let error = create_claim_dirs(claim.path(), (device.0, device.1.wrapping_add(1))).expect_err("another device");
        assert!(error.to_string().contains("not on the claim's filesystem"), "{error}");
    }
}
