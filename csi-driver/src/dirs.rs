//! Root-only directories of the data root, made and tightened through file descriptors.
//!
//! Every directory above the uppers is root-only (0700). An upper holds whatever a root tenant
//! put in its rootfs (setuid binaries, device nodes); a path to it that any local user of the
//! node may walk would make those theirs, and so host root. Through the overlay nothing changes:
//! overlayfs reaches its layers with the credentials of the process that mounted it, so the
//! modes above `upper` never show inside the rootfs.
//!
//! Nothing here follows a symlink below the data root, and modes are set with `fchmod` on a
//! directory just opened with `O_NOFOLLOW`, never by path: a path can be swapped between a check
//! and a `chmod`.

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Component, Path};

use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, OFlag, openat};
use nix::sys::stat::{Mode, fchmod, mkdirat};

use crate::layout::DataRoot;

/// The mode of every directory above the uppers.
pub const PRIVATE_DIR_MODE: u32 = 0o700;

/// The mode of a new upper directory: it is the rootfs's `/` as the workload sees it, which
/// images have as 0755.
pub const ROOTFS_ROOT_MODE: u32 = 0o755;

/// Creates the data root and its top-level directories if they are missing and makes all four
/// root-only (0700), also when an earlier version or kubelet's `DirectoryOrCreate` made them 0755.
pub fn secure_data_root(data: &DataRoot) -> io::Result<()> {
    // The data root itself is the admin's choice and may be reached through a symlink; its
    // parents are not the plugin's, so they keep whatever modes they get.
    std::fs::create_dir_all(data.path()).map_err(|error| in_path(data.path(), error))?;
    let root = open_directory(AT_FDCWD, data.path(), true).map_err(|errno| in_path(data.path(), errno.into()))?;
    set_mode(&root, PRIVATE_DIR_MODE).map_err(|errno| in_path(data.path(), errno.into()))?;
    for top in [data.containers_dir(), data.control_root(), data.records_dir()] {
        let dir = create_private_dirs(data.path(), &top)?;
        set_mode(&dir, PRIVATE_DIR_MODE).map_err(|errno| in_path(&top, errno.into()))?;
    }
    Ok(())
}

/// Opens the directory `dir` below `base`, creating each missing directory on the way root-only
/// (0700, whatever the umask: the mode is set with `fchmod` after `mkdir`). No symlink below `base` is followed: a component that is one
/// fails with `ELOOP`. Existing directories keep their modes.
pub fn create_private_dirs(base: &Path, dir: &Path) -> io::Result<OwnedFd> {
    let relative = dir.strip_prefix(base).map_err(|_| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("{} is not below the data root {}", dir.display(), base.display()))
    })?;
    let mut current = open_directory(AT_FDCWD, base, true).map_err(|errno| in_path(base, errno.into()))?;
    for component in relative.components() {
        let Component::Normal(name) = component else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{} is not a plain path below the data root", dir.display())));
        };
        let name = Path::new(name);
        make_directory(&current, name, PRIVATE_DIR_MODE).map_err(|error| in_path(dir, error))?;
        current = open_directory(&current, name, false).map_err(|errno| match errno {
            Errno::ENOTDIR | Errno::ELOOP => io::Error::new(
                io::ErrorKind::NotADirectory,
                format!(
                    "{}: {} is not a directory (a symlink or a file where the data root needs a directory of its own); remove it",
                    dir.display(),
                    name.display()
                ),
            ),
            other => in_path(dir, other.into()),
        })?;
    }
    Ok(current)
}

/// Creates the directory `name` in `parent` with exactly `mode` if it is missing; returns whether
/// this call created it. An existing directory keeps its mode (an upper's is the rootfs's `/`,
/// which the workload may have changed).
pub fn make_directory(parent: &OwnedFd, name: &Path, mode: u32) -> io::Result<bool> {
    match mkdirat(parent, name, Mode::from_bits_truncate(mode)) {
        Ok(()) => {}
        Err(Errno::EEXIST) => return Ok(false),
        Err(errno) => return Err(errno.into()),
    }
    // mkdir's mode is masked by the umask; set it exactly on what was just made.
    let created = open_directory(parent, name, false)?;
    set_mode(&created, mode)?;
    Ok(true)
}

/// Opens a directory for `fchmod` (which an `O_PATH` descriptor cannot do).
fn open_directory(parent: impl std::os::fd::AsFd, name: &Path, follow: bool) -> nix::Result<OwnedFd> {
    let mut flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    if !follow {
        flags |= OFlag::O_NOFOLLOW;
    }
    openat(parent, name, flags, Mode::empty())
}

fn set_mode(dir: &OwnedFd, mode: u32) -> nix::Result<()> {
    fchmod(dir, Mode::from_bits_truncate(mode))
}

fn in_path(path: &Path, error: io::Error) -> io::Error {
    io::Error::new(error.kind(), format!("{}: {error}", path.display()))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path).unwrap_or_else(|error| panic!("{}: {error}", path.display())).permissions().mode() & 0o7777
    }

    #[test]
    fn the_data_root_and_its_top_directories_become_root_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = DataRoot::new(dir.path().join("var/lib/stoppablecontainer"));
        // What an earlier version (or kubelet's DirectoryOrCreate) left: world-traversable.
        std::fs::create_dir_all(data.containers_dir()).expect("mkdir");
        for path in [data.path(), &data.containers_dir()] {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        secure_data_root(&data).expect("secure");
        for path in [data.path().to_path_buf(), data.containers_dir(), data.control_root(), data.records_dir()] {
            assert_eq!(mode(&path), 0o700, "{}", path.display());
        }
        secure_data_root(&data).expect("twice is fine");
    }

    #[test]
    fn a_symlinked_data_root_is_followed_but_symlinks_below_it_are_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let real = dir.path().join("disk/sc");
        std::fs::create_dir_all(&real).expect("mkdir");
        std::os::unix::fs::symlink(&real, dir.path().join("sc")).expect("symlink");
        let data = DataRoot::new(dir.path().join("sc"));
        secure_data_root(&data).expect("an admin's symlinked data root");
        assert_eq!(mode(&real), 0o700);

        // A symlink where a top-level directory belongs: refused, and its target untouched.
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).expect("mkdir");
        std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::fs::remove_dir(data.control_root()).expect("rmdir");
        std::os::unix::fs::symlink(&elsewhere, data.control_root()).expect("symlink");
        let error = secure_data_root(&data).expect_err("a symlinked control directory");
        assert_eq!(error.kind(), io::ErrorKind::NotADirectory, "{error}");
        assert!(error.to_string().contains("control is not a directory (a symlink or a file"), "{error}");
        assert_eq!(mode(&elsewhere), 0o755, "the symlink's target was not chmod-ed");
    }

    #[test]
    fn new_directories_are_root_only_and_existing_ones_keep_their_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = DataRoot::new(dir.path());
        let existing = data.containers_dir().join("ns");
        std::fs::create_dir_all(&existing).expect("mkdir");
        std::fs::set_permissions(&existing, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let uid_dir = existing.join("dev/6d1c2b7e");
        let fd = create_private_dirs(data.path(), &uid_dir).expect("create");
        assert_eq!(mode(&existing.join("dev")), 0o700);
        assert_eq!(mode(&uid_dir), 0o700);
        assert_eq!(mode(&existing), 0o755, "an existing directory is left as it is");
        assert!(make_directory(&fd, Path::new("upper"), ROOTFS_ROOT_MODE).expect("upper"));
        assert_eq!(mode(&uid_dir.join("upper")), 0o755);
        std::fs::set_permissions(uid_dir.join("upper"), std::fs::Permissions::from_mode(0o1777)).expect("the workload's chmod /");
        assert!(!make_directory(&fd, Path::new("upper"), ROOTFS_ROOT_MODE).expect("again"));
        assert_eq!(mode(&uid_dir.join("upper")), 0o1777, "the rootfs's own mode is kept");

        let outside = create_private_dirs(data.path(), Path::new("/etc")).expect_err("outside the data root");
        assert!(outside.to_string().contains("is not below the data root"), "{outside}");
        let elsewhere = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::symlink(elsewhere.path(), data.containers_dir().join("link")).expect("symlink");
        let error = create_private_dirs(data.path(), &data.containers_dir().join("link/x")).expect_err("through a symlink");
        assert_eq!(error.kind(), io::ErrorKind::NotADirectory, "{error}");
        assert!(!elsewhere.path().join("x").exists(), "nothing was created through the symlink");
    }
}
