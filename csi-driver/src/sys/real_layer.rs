//! The real syscalls of a layer volume (see [`super::System::bind_layer_read_only`] and
//! [`super::System::opaque_directories`]). The upper is the tenant's: while its StoppableContainer
//! runs, the workload can rename a directory and put a symlink in its place at any moment, and a
//! claim's is writable from any pod that mounts the claim. So nothing is reached by a path that a
//! symlink could redirect: the upper is opened without following one and bound from that
//! descriptor, and the walk opens each directory beneath the bind with `openat2`'s
//! `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV`.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::dir::{Dir, Type};
use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, AtFlags, OFlag, OpenHow, ResolveFlag, openat2};
use nix::mount::MsFlags;
use nix::sys::stat::{Mode, SFlag, fstatat};

use super::{LayerUpper, real, real_claim};

/// [`super::OPAQUE_XATTR`], for `fgetxattr`.
const OPAQUE_XATTR: &std::ffi::CStr = c"trusted.overlay.opaque";

fn open_upper(upper: &LayerUpper) -> io::Result<OwnedFd> {
    match upper {
        LayerUpper::DataRoot(path) => real_claim::open_directory(AT_FDCWD, path),
        LayerUpper::Claim { claim_root, device } => real_claim::open_upper(claim_root, *device),
    }
}

pub(super) fn bind_layer_read_only(upper: &LayerUpper, target: &Path) -> io::Result<()> {
    let upper = open_upper(upper)?;
    // The magic link names the opened directory itself, whatever its path is by now.
    let source = PathBuf::from(format!("/proc/self/fd/{}", upper.as_raw_fd()));
    real::bind_then_restrict(&source, target, MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC)
}

/// Opens the directory `relative` beneath `root` (`.` for `root` itself).
fn open_beneath(root: &OwnedFd, relative: &Path) -> nix::Result<OwnedFd> {
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_XDEV);
    let path = if relative.as_os_str().is_empty() { Path::new(".") } else { relative };
    openat2(root, path, how)
}

pub(super) fn opaque_directories(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let root = real_claim::open_directory(AT_FDCWD, dir)?;
    let mut opaque = Vec::new();
    // Relative paths of the directories still to read; one descriptor is open at a time, so a
    // deep tree cannot run the plugin out of them.
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let directory = match open_beneath(&root, &relative) {
            Ok(directory) => directory,
            // Removed, replaced by a symlink or a file, or a mount point (an upper has none)
            // since its parent was listed: there is no directory of the upper to report there.
            Err(Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP | Errno::EXDEV) if !relative.as_os_str().is_empty() => continue,
            Err(errno) => return Err(in_upper(&relative, errno)),
        };
        if is_opaque(&directory).map_err(|errno| in_upper(&relative, errno))? {
            opaque.push(Path::new("/").join(&relative));
        }
        let mut listing = Dir::openat(&directory, ".", OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|errno| in_upper(&relative, errno))?;
        for entry in listing.iter() {
            let entry = entry.map_err(|errno| in_upper(&relative, errno))?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            let is_directory = match entry.file_type() {
                Some(kind) => kind == Type::Directory,
                // A filesystem without d_type (overlayfs refuses such an upper, but be exact).
                None => fstatat(&directory, name, AtFlags::AT_SYMLINK_NOFOLLOW)
                    .is_ok_and(|stat| SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR),
            };
            if is_directory {
                pending.push(relative.join(OsStr::from_bytes(name)));
            }
        }
    }
    opaque.sort();
    Ok(opaque)
}

fn in_upper(relative: &Path, errno: Errno) -> io::Error {
    io::Error::new(io::Error::from(errno).kind(), format!("{}: {errno}", Path::new("/").join(relative).display()))
}

/// Whether the open directory carries [`OPAQUE_XATTR`] = `y`.
#[allow(unsafe_code)]
fn is_opaque(directory: &OwnedFd) -> Result<bool, Errno> {
    // One byte more than "y": a longer value is not "y", and reads as such rather than ERANGE.
    let mut value = [0u8; 2];
    // SAFETY: `directory` is an open descriptor, the name is a NUL-terminated C string and
    // `value` is a live, writable buffer of the length passed; fgetxattr writes at most that.
    let length = unsafe { nix::libc::fgetxattr(directory.as_raw_fd(), OPAQUE_XATTR.as_ptr(), value.as_mut_ptr().cast(), value.len()) };
    if let Ok(length) = usize::try_from(length) {
        return Ok(value.get(..length) == Some(b"y".as_slice()));
    }
    match Errno::last() {
        // No such attribute, a longer value, a filesystem without xattrs: not opaque.
        Errno::ENODATA | Errno::ERANGE | Errno::EOPNOTSUPP => Ok(false),
        other => Err(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_without_the_xattr_has_no_opaque_directories_and_a_symlink_is_not_followed() {
        let upper = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(upper.path().join("etc/apt")).expect("dirs");
        std::fs::write(upper.path().join("etc/hostname"), "box\n").expect("file");
        let elsewhere = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::symlink(elsewhere.path(), upper.path().join("escape")).expect("symlink");
        assert_eq!(opaque_directories(upper.path()).expect("walked"), Vec::<PathBuf>::new());
        let error = opaque_directories(&upper.path().join("escape")).expect_err("a symlink as the root is refused");
        assert_eq!(error.kind(), io::ErrorKind::NotADirectory, "{error}");
    }

    #[test]
    fn the_upper_on_a_claim_is_opened_only_through_directories_on_the_claim() {
        let claim = tempfile::tempdir().expect("tempdir");
        let missing = open_upper(&LayerUpper::Claim { claim_root: claim.path().into(), device: (0, 0) }).expect_err("another device");
        assert!(missing.to_string().contains("not on the claim's filesystem"), "{missing}");
        let stat = nix::sys::stat::stat(claim.path()).expect("stat");
        let device = (
            u32::try_from(nix::sys::stat::major(stat.st_dev)).expect("major"),
            u32::try_from(nix::sys::stat::minor(stat.st_dev)).expect("minor"),
        );
        let upper = LayerUpper::Claim { claim_root: claim.path().into(), device };
        assert_eq!(open_upper(&upper).expect_err("no layer yet").kind(), io::ErrorKind::NotFound);
        std::fs::create_dir(claim.path().join("stoppablecontainer")).expect("data dir");
        let elsewhere = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::symlink(elsewhere.path(), claim.path().join("stoppablecontainer/upper")).expect("planted");
        assert_eq!(open_upper(&upper).expect_err("planted").kind(), io::ErrorKind::NotADirectory);
        std::fs::remove_file(claim.path().join("stoppablecontainer/upper")).expect("rm");
        std::fs::create_dir(claim.path().join("stoppablecontainer/upper")).expect("upper");
        open_upper(&upper).expect("the claim's upper");
    }
}
