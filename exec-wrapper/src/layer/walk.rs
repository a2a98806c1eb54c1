//! Reading an overlay's upper directory into [`UpperEntry`]s.
//!
//! The upper is the tenant's: while its StoppableContainer runs, the workload can rename a
//! directory and put a symlink in its place at any moment. So the walk never resolves a path
//! through the upper: each directory is opened relative to its parent's descriptor with
//! `O_NOFOLLOW | O_DIRECTORY`, each entry is `fstatat`ed with `AT_SYMLINK_NOFOLLOW`, and a symlink
//! is read with `readlinkat`. A swapped directory then fails to open (or is read as the symlink
//! it now is); it never leads the walk elsewhere.

use std::collections::{BTreeSet, HashMap};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, AtFlags, OFlag, readlinkat};
use nix::sys::stat::{FileStat, Mode, SFlag, fstatat, major, minor};

use super::{UpperEntry, UpperKind};

/// The files kubelet mounts into every container, which the node plugin bind-mounts at the same
/// paths inside the rootfs (`csi-driver/src/prepare/plan.rs`, `PLAN`). Where the image lacks one,
/// the node plugin creates an empty mount point in the rootfs, so the upper holds it although the
/// user never made it; its content is the pod's (this pod's addresses, DNS, token), never the
/// user's. The diff and the exported layer leave these paths, and all below them, out.
///
/// The service-account directory is mounted at `/var/run/secrets/kubernetes.io/serviceaccount`
/// following the image's symlinks, so in an image whose `/var/run` links to `/run` (most of
/// them) the mount point is under `/run`: both are listed. `/dev/termination-log` sits in the
/// container's `/dev`, which is mounted over the rootfs's: it is listed so that a rootfs whose
/// `/dev` was once written without that mount still never exports it.
pub const KUBELET_MANAGED_PATHS: &[&str] = &[
    "/etc/hosts",
    "/etc/hostname",
    "/etc/resolv.conf",
    "/dev/termination-log",
    "/run/secrets/kubernetes.io",
    "/var/run/secrets/kubernetes.io",
];

/// [`KUBELET_MANAGED_PATHS`] as paths, for [`walk_upper`]'s `exclude`.
pub fn kubelet_managed_paths() -> Vec<PathBuf> {
    KUBELET_MANAGED_PATHS.iter().map(PathBuf::from).collect()
}

#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    #[error(
        "cannot open the upper directory {upper}: {source}. It must be a directory (not a symlink to one) that this \
         process may read; check the path given with --upper and how the pod mounts the upper"
    )]
    OpenUpper { upper: PathBuf, source: Errno },
    #[error(
        "cannot read the directory {path} of the upper ({upper_path}): {source}. The walk needs to read every directory \
         of the upper; run it as a user that may (the upper's owner or root)"
    )]
    ReadDirectory { path: PathBuf, upper_path: PathBuf, source: Errno },
    #[error(
        "cannot inspect {path} of the upper ({upper_path}): {source}. If the StoppableContainer is running, the entry may \
         have changed during the walk; run the diff again"
    )]
    Inspect { path: PathBuf, upper_path: PathBuf, source: Errno },
    #[error("{path} of the upper has a file type this walk does not know (st_mode {mode:#o})")]
    UnknownType { path: PathBuf, mode: u32 },
}

/// Every entry of the upper directory `upper`, in path order (component by component, each by
/// bytes, which puts a directory right before what it holds), with paths as the rootfs has them
/// (`/etc/hosts`). The upper's root itself is not an entry.
///
/// `opaque_dirs` are the rootfs paths of the directories marked opaque (read by the node plugin:
/// the xattr is not readable here). `exclude` paths are left out with everything below them.
/// Of the names of a regular file with several links, the first in path order is its
/// [`UpperKind::File`] and each later one a [`UpperKind::HardLink`] to it; other file types are
/// listed per name (overlayfs itself links whiteouts to one shared inode).
pub fn walk_upper(upper: &Path, opaque_dirs: &BTreeSet<PathBuf>, exclude: &[PathBuf]) -> Result<Vec<UpperEntry>, WalkError> {
    let root = Dir::openat(AT_FDCWD, upper, directory_flags(), Mode::empty())
        .map_err(|source| WalkError::OpenUpper { upper: upper.to_owned(), source })?;
    let mut walk = Walk { upper, opaque_dirs, exclude, entries: Vec::new(), first_names: HashMap::new() };
    walk.directory(root, Path::new("/"))?;
    Ok(walk.entries)
}

/// Opening a directory of the upper: never through a symlink, never a non-directory.
fn directory_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

struct Walk<'a> {
    upper: &'a Path,
    opaque_dirs: &'a BTreeSet<PathBuf>,
    exclude: &'a [PathBuf],
    entries: Vec<UpperEntry>,
    /// (device, inode) of each multiply-linked regular file -> its first path.
    first_names: HashMap<(u64, u64), PathBuf>,
}

impl Walk<'_> {
    /// Where `path` (of the rootfs) is in the upper, for messages and for reading a file later.
    fn upper_path(&self, path: &Path) -> PathBuf {
        self.upper.join(path.strip_prefix("/").unwrap_or(path))
    }

    fn directory(&mut self, mut dir: Dir, path: &Path) -> Result<(), WalkError> {
        let read_error = |source| WalkError::ReadDirectory { path: path.to_owned(), upper_path: self.upper_path(path), source };
        let mut names: Vec<OsString> = Vec::new();
        for entry in dir.iter() {
            let name = entry.map_err(read_error)?.file_name().to_bytes().to_owned();
            if name != b"." && name != b".." {
                names.push(OsStr::from_bytes(&name).to_owned());
            }
        }
        names.sort();
        for name in names {
            let child = path.join(&name);
            if self.exclude.iter().any(|excluded| child.starts_with(excluded)) {
                continue;
            }
            let stat = match fstatat(&dir, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(stat) => stat,
                // Removed since the directory was listed (a running workload's temporary file):
                // it is not part of the upper any more.
                Err(Errno::ENOENT) => continue,
                Err(source) => return Err(WalkError::Inspect { upper_path: self.upper_path(&child), path: child, source }),
            };
            self.entry(&dir, &name, child, &stat)?;
        }
        Ok(())
    }

    fn entry(&mut self, dir: &Dir, name: &OsStr, path: PathBuf, stat: &FileStat) -> Result<(), WalkError> {
        let inspect_error = |path: &Path, source| WalkError::Inspect { path: path.to_owned(), upper_path: self.upper_path(path), source };
        let file_type = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT;
        let kind = match file_type {
            SFlag::S_IFDIR => UpperKind::Directory { opaque: self.opaque_dirs.contains(&path) },
            SFlag::S_IFREG => {
                let first_name = if stat.st_nlink > 1 { self.first_names.get(&(stat.st_dev, stat.st_ino)).cloned() } else { None };
                match first_name {
                    Some(target) => UpperKind::HardLink { target },
                    None => {
                        if stat.st_nlink > 1 {
                            self.first_names.insert((stat.st_dev, stat.st_ino), path.clone());
                        }
                        UpperKind::File { size: u64::try_from(stat.st_size).unwrap_or(0), source: self.upper_path(&path) }
                    }
                }
            }
            SFlag::S_IFLNK => {
                let target = readlinkat(dir, name).map_err(|source| inspect_error(&path, source))?;
                UpperKind::Symlink { target: PathBuf::from(target) }
            }
            SFlag::S_IFCHR => match device_numbers(stat) {
                // overlayfs's whiteout: the lower entry of this name is deleted.
                (0, 0) => UpperKind::Whiteout,
                (major, minor) => UpperKind::CharDevice { major, minor },
            },
            SFlag::S_IFBLK => {
                let (major, minor) = device_numbers(stat);
                UpperKind::BlockDevice { major, minor }
            }
            SFlag::S_IFIFO => UpperKind::Fifo,
            SFlag::S_IFSOCK => UpperKind::Socket,
            _ => return Err(WalkError::UnknownType { path, mode: stat.st_mode }),
        };
        let is_directory = matches!(kind, UpperKind::Directory { .. });
        self.entries.push(UpperEntry {
            path: path.clone(),
            kind,
            mode: stat.st_mode,
            uid: stat.st_uid,
            gid: stat.st_gid,
            mtime: stat.st_mtime,
        });
        if is_directory {
            let child = match Dir::openat(dir, name, directory_flags(), Mode::empty()) {
                Ok(child) => child,
                Err(source) => {
                    return Err(WalkError::ReadDirectory { upper_path: self.upper_path(&path), path, source });
                }
            };
            self.directory(child, &path)?;
        }
        Ok(())
    }
}

/// Major and minor of a device's `st_rdev` (Linux's are 32 bits at most).
fn device_numbers(stat: &FileStat) -> (u32, u32) {
    let narrow = |number: u64| u32::try_from(number).unwrap_or(u32::MAX);
    (narrow(major(stat.st_rdev)), narrow(minor(stat.st_rdev)))
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::symlink;

    use super::*;

    fn kinds(entries: &[UpperEntry]) -> Vec<(String, UpperKind)> {
        entries.iter().map(|entry| (entry.path.display().to_string(), entry.kind.clone())).collect()
    }

    #[test]
    fn entries_come_in_path_order_with_hard_links_after_their_first_name() {
        let upper = tempfile::tempdir().expect("tempdir");
        let at = |relative: &str| upper.path().join(relative);
        fs::create_dir_all(at("a/b")).expect("mkdir");
        fs::create_dir(at("a-b")).expect("mkdir");
        fs::write(at("a/b/z"), b"12345").expect("write");
        fs::hard_link(at("a/b/z"), at("a-b/first-by-bytes")).expect("link");
        fs::hard_link(at("a/b/z"), at("c")).expect("link");
        symlink("../outside", at("a/link")).expect("symlink");
        nix::unistd::mkfifo(&at("a/fifo"), Mode::from_bits_truncate(0o600)).expect("mkfifo");
        let entries = walk_upper(upper.path(), &BTreeSet::from([PathBuf::from("/a/b")]), &[]).expect("walks");
        assert_eq!(
            kinds(&entries),
            vec![
                ("/a".into(), UpperKind::Directory { opaque: false }),
                ("/a/b".into(), UpperKind::Directory { opaque: true }),
                ("/a/b/z".into(), UpperKind::File { size: 5, source: at("a/b/z") }),
                ("/a/fifo".into(), UpperKind::Fifo),
                ("/a/link".into(), UpperKind::Symlink { target: "../outside".into() }),
                ("/a-b".into(), UpperKind::Directory { opaque: false }),
                ("/a-b/first-by-bytes".into(), UpperKind::HardLink { target: "/a/b/z".into() }),
                ("/c".into(), UpperKind::HardLink { target: "/a/b/z".into() }),
            ]
        );
        let file = &entries[2];
        assert_eq!(file.mode & 0o170000, 0o100000, "st_mode as lstat gives it: {:o}", file.mode);
        assert!(file.mtime > 0);
    }

    #[test]
    fn excluded_paths_are_left_out_with_everything_below_them() {
        let upper = tempfile::tempdir().expect("tempdir");
        let at = |relative: &str| upper.path().join(relative);
        fs::create_dir_all(at("etc")).expect("mkdir");
        fs::create_dir_all(at("run/secrets/kubernetes.io/serviceaccount")).expect("mkdir");
        fs::write(at("etc/hosts"), b"").expect("write");
        fs::write(at("etc/hosts.allow"), b"x").expect("write");
        fs::write(at("run/secrets/kubernetes.io/serviceaccount/token"), b"t").expect("write");
        let entries = walk_upper(upper.path(), &BTreeSet::new(), &kubelet_managed_paths()).expect("walks");
        let paths: Vec<String> = kinds(&entries).into_iter().map(|(path, _)| path).collect();
        assert_eq!(paths, ["/etc", "/etc/hosts.allow", "/run", "/run/secrets"]);
    }

    #[test]
    fn a_symlinked_upper_or_a_missing_one_is_refused_naming_it() {
        let base = tempfile::tempdir().expect("tempdir");
        fs::create_dir(base.path().join("real")).expect("mkdir");
        symlink("real", base.path().join("link")).expect("symlink");
        let error = walk_upper(&base.path().join("link"), &BTreeSet::new(), &[]).expect_err("a symlink");
        assert!(matches!(error, WalkError::OpenUpper { source: Errno::ELOOP | Errno::ENOTDIR, .. }), "{error}");
        let error = walk_upper(&base.path().join("missing"), &BTreeSet::new(), &[]).expect_err("missing");
        assert!(error.to_string().contains("missing") && error.to_string().contains("--upper"), "{error}");
    }

    #[test]
    fn an_unreadable_directory_is_an_error_naming_its_path() {
        if nix::unistd::geteuid().is_root() {
            // Root reads any directory (CAP_DAC_READ_SEARCH); the root test covers the walk.
            eprintln!("an_unreadable_directory_is_an_error_naming_its_path: skipped as root, which may read any directory");
            return;
        }
        use std::os::unix::fs::PermissionsExt;
        let upper = tempfile::tempdir().expect("tempdir");
        fs::create_dir(upper.path().join("locked")).expect("mkdir");
        fs::set_permissions(upper.path().join("locked"), fs::Permissions::from_mode(0o000)).expect("chmod");
        let error = walk_upper(upper.path(), &BTreeSet::new(), &[]).expect_err("unreadable");
        fs::set_permissions(upper.path().join("locked"), fs::Permissions::from_mode(0o755)).expect("chmod back");
        assert!(matches!(&error, WalkError::ReadDirectory { path, source: Errno::EACCES, .. } if path == Path::new("/locked")), "{error}");
    }
}
