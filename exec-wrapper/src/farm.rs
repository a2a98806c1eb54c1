//! The symlink farm: makes plain `kubectl exec <pod> -- <anything>` land inside the rootfs.
//!
//! The runtime resolves an exec'd command with the container's `PATH` in the consumer
//! container's *own* filesystem (the exec-wrapper image), not in the rootfs. So for every program
//! in the rootfs's `PATH` directories, PID 1 keeps a symlink at the same absolute path in its own
//! filesystem pointing to `sc-exec`, which then runs the same name inside the rootfs. Symlinked
//! directories of the rootfs (merged `/usr`: `/bin -> usr/bin`) are mirrored as the same
//! symlinks, so `/bin/ls` and `/usr/bin/ls` both resolve.
//!
//! A program that lives only on the image's `PATH` (`/opt/conda/bin/python`) is mirrored too, but
//! the consumer's `PATH` does not name that directory when the pod leaves `PATH` alone (it is the
//! exec-wrapper image's, [`WRAPPER_IMAGE_PATH`]). So every program name on the workload's `PATH`
//! also gets a link in [`FARM_BY_NAME_DIR`], the last entry of that `PATH`: `kubectl exec <pod> --
//! python` finds `/.sc-path/python`, and `sc-exec`, called as `python`, resolves the name with the
//! workload's own `PATH` inside the rootfs.
//!
//! Safety: the rootfs is the workload's, so it is read without ever leaving it (symlinks are
//! resolved inside it), only file *names* cross over, and nothing is ever written under the
//! wrapper's own directories, the volume, or the kernel filesystems.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::ErrorKind;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Component, Path, PathBuf};

#[cfg(doc)]
use sc_api::consts::WRAPPER_IMAGE_PATH;
use sc_api::consts::{EXEC_WRAPPER_PATH, FARM_BY_NAME_DIR};

use crate::cli::BINARY_NAME;
use crate::lookup::DEFAULT_PATH;

/// Top-level directories of the consumer's own filesystem that mirroring never writes into (nor
/// into the by-name directory, which only its own links fill).
const PROTECTED_TOP_LEVEL: &[&str] = &[".sc", ".sc-bin", "proc", "sys", "dev"];
/// Symlink hops allowed while resolving one path (Linux's own limit).
const MAX_SYMLINK_HOPS: usize = 40;

/// The directories whose programs get farm links: the standard ones plus the absolute entries of
/// the workload's `PATH`, without duplicates, in order.
pub fn farm_directories(workload_path: Option<&OsStr>) -> Vec<PathBuf> {
    let mut directories = path_directories(Some(OsStr::new(DEFAULT_PATH)));
    for directory in workload_path.map(|path| path_directories(Some(path))).unwrap_or_default() {
        if !directories.contains(&directory) {
            directories.push(directory);
        }
    }
    directories
}

/// Resolves `path` (absolute, as seen inside `root`) to the real directory inside `root`,
/// following symlinks as the kernel would after `chroot(root)`: an absolute target restarts at
/// `root`, `..` never climbs above it. Returns the path relative to `root`, or `None` when it does
/// not exist, is not a directory, or loops.
pub fn resolve_directory_in_root(root: &Path, path: &Path) -> Option<PathBuf> {
    let mut pending: VecDeque<OsString> = normal_components(path);
    let mut current = PathBuf::new();
    let mut hops = 0;
    while let Some(part) = pending.pop_front() {
        if part == ".." {
            current.pop();
            continue;
        }
        let candidate = current.join(&part);
        let metadata = fs::symlink_metadata(root.join(&candidate)).ok()?;
        if metadata.file_type().is_symlink() {
            hops += 1;
            if hops > MAX_SYMLINK_HOPS {
                return None;
            }
            let target = fs::read_link(root.join(&candidate)).ok()?;
            if target.is_absolute() {
                current = PathBuf::new();
            }
            for component in normal_components(&target).into_iter().rev() {
                pending.push_front(component);
            }
        } else if metadata.is_dir() {
            current = candidate;
        } else {
            return None;
        }
    }
    Some(current)
}

/// The components of a path, `.` and the root dropped, `..` kept for the resolver.
fn normal_components(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|component| match component {
            Component::Normal(part) => Some(part.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

/// Names in a rootfs directory that deserve a farm link: executable regular files and symlinks
/// (busybox applets, alternatives), never `sc-exec` itself nor hidden temporary names.
fn program_names(directory: &Path) -> BTreeSet<OsString> {
    let Ok(entries) = fs::read_dir(directory) else {
        return BTreeSet::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|entry| {
            let name = entry.file_name();
            if name == BINARY_NAME || name.as_bytes().starts_with(b".") {
                return false;
            }
            match entry.metadata() {
                Ok(metadata) if metadata.file_type().is_symlink() => true,
                Ok(metadata) => metadata.is_file() && metadata.permissions().mode() & 0o111 != 0,
                Err(_) => false,
            }
        })
        .map(|entry| entry.file_name())
        .collect()
}

/// Outcome of one synchronisation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub created: usize,
    pub removed: usize,
    /// Rootfs directories (host paths) to watch for new programs.
    pub watched: Vec<PathBuf>,
    /// Directories skipped, with the reason (printed once by the caller).
    pub problems: Vec<String>,
}

/// The farm of one consumer container.
#[derive(Clone, Debug)]
pub struct SymlinkFarm {
    /// The consumer container's own `/` (`/` in production, a temp dir in tests).
    pub outer_root: PathBuf,
    /// The rootfs as a host path (`/.sc/rootfs`).
    pub rootfs: PathBuf,
    /// The symlink target: where `sc-exec` is in the consumer container (`/.sc-bin/sc-exec`).
    pub wrapper: PathBuf,
    /// Rootfs directories mirrored at the same absolute path ([`farm_directories`]).
    pub directories: Vec<PathBuf>,
    /// The workload's `PATH` directories, whose program names also get a link in `by_name`.
    pub by_name_sources: Vec<PathBuf>,
    /// The by-name directory, absolute in the consumer's filesystem, one component below `/`
    /// ([`FARM_BY_NAME_DIR`]).
    pub by_name: PathBuf,
}

/// The absolute entries of a `PATH` (the runtime default when unset), in order, once each.
pub fn path_directories(path: Option<&OsStr>) -> Vec<PathBuf> {
    let mut directories: Vec<PathBuf> = Vec::new();
    for entry in path.unwrap_or(OsStr::new(DEFAULT_PATH)).as_bytes().split(|&byte| byte == b':') {
        let directory = PathBuf::from(OsStr::from_bytes(entry));
        if directory.is_absolute() && !directories.contains(&directory) {
            directories.push(directory);
        }
    }
    directories
}

impl SymlinkFarm {
    /// The farm of the consumer container whose workload has this `PATH` (the merged one, as the
    /// workload sees it): `outer_root` is `/` in production.
    pub fn for_workload(outer_root: PathBuf, rootfs: PathBuf, workload_path: Option<&OsStr>) -> Self {
        SymlinkFarm {
            outer_root,
            rootfs,
            wrapper: PathBuf::from(EXEC_WRAPPER_PATH),
            directories: farm_directories(workload_path),
            by_name_sources: path_directories(workload_path),
            by_name: PathBuf::from(FARM_BY_NAME_DIR),
        }
    }

    /// Brings the farm in line with the rootfs: a link for every program, none for programs gone.
    pub fn sync(&self) -> SyncReport {
        let mut report = self.sync_mirrors();
        self.sync_by_name(&mut report);
        report
    }

    fn sync_mirrors(&self) -> SyncReport {
        let mut report = SyncReport::default();
        let mut names_by_outer_directory: BTreeMap<PathBuf, BTreeSet<OsString>> = BTreeMap::new();
        for directory in &self.directories {
            let Some(inside_rootfs) = resolve_directory_in_root(&self.rootfs, directory) else {
                continue;
            };
            let rootfs_directory = self.rootfs.join(&inside_rootfs);
            if !report.watched.contains(&rootfs_directory) {
                report.watched.push(rootfs_directory.clone());
            }
            match self.ensure_outer_directory(directory) {
                Ok(outer_directory) => {
                    names_by_outer_directory.entry(outer_directory).or_default().extend(program_names(&rootfs_directory))
                }
                Err(problem) => report.problems.push(format!("{}: {problem}", directory.display())),
            }
        }
        for (outer_directory, names) in names_by_outer_directory {
            self.link_programs(&outer_directory, &names, &mut report);
        }
        report
    }

    /// One link per program name of the workload's `PATH` directories, in the by-name directory
    /// (a real directory of the consumer's own filesystem, created when missing, never followed
    /// when it is anything else).
    fn sync_by_name(&self, report: &mut SyncReport) {
        let mut names = BTreeSet::new();
        for directory in &self.by_name_sources {
            let Some(inside_rootfs) = resolve_directory_in_root(&self.rootfs, directory) else {
                continue;
            };
            let rootfs_directory = self.rootfs.join(&inside_rootfs);
            names.extend(program_names(&rootfs_directory));
            if !report.watched.contains(&rootfs_directory) {
                report.watched.push(rootfs_directory);
            }
        }
        let relative: PathBuf = normal_components(&self.by_name).into_iter().collect();
        let directory = self.outer_root.join(&relative);
        match fs::symlink_metadata(&directory) {
            Ok(metadata) if metadata.is_dir() => {}
            Ok(_) => {
                report.problems.push(format!("{}: exists and is not a directory, so it gets no by-name links", self.by_name.display()));
                return;
            }
            Err(error) if error.kind() == ErrorKind::NotFound => {
                if let Err(error) = fs::create_dir(&directory) {
                    report.problems.push(format!("{}: cannot create it ({error})", self.by_name.display()));
                    return;
                }
            }
            Err(error) => {
                report.problems.push(format!("{}: {error}", self.by_name.display()));
                return;
            }
        }
        self.link_programs(&relative, &names, report);
    }

    fn refuse_protected(&self, outer_relative: &Path) -> Result<(), String> {
        let top = outer_relative.components().next();
        let by_name_top = normal_components(&self.by_name).pop_front();
        match top {
            None => Err("resolves to / of the container, which the farm never fills".into()),
            Some(Component::Normal(top)) if PROTECTED_TOP_LEVEL.iter().any(|name| top == *name) || by_name_top.as_deref() == Some(top) => {
                Err(format!("resolves into /{}, which the farm never writes", outer_relative.display()))
            }
            _ => Ok(()),
        }
    }

    /// Makes `logical` (absolute) a directory in the consumer's filesystem, mirroring the rootfs's
    /// symlinks for the parts that do not exist yet, and returns its real path relative to
    /// `outer_root`.
    fn ensure_outer_directory(&self, logical: &Path) -> Result<PathBuf, String> {
        let mut pending = normal_components(logical);
        let mut current = PathBuf::new();
        let mut hops = 0;
        while let Some(part) = pending.pop_front() {
            if part == ".." {
                current.pop();
                continue;
            }
            let candidate = current.join(&part);
            let outer_path = self.outer_root.join(&candidate);
            match fs::symlink_metadata(&outer_path) {
                Ok(metadata) if metadata.file_type().is_symlink() => {
                    hops += 1;
                    if hops > MAX_SYMLINK_HOPS {
                        return Err("too many levels of symbolic links".into());
                    }
                    let target = fs::read_link(&outer_path).map_err(|error| error.to_string())?;
                    if target.is_absolute() {
                        current = PathBuf::new();
                    }
                    for component in normal_components(&target).into_iter().rev() {
                        pending.push_front(component);
                    }
                }
                Ok(metadata) if metadata.is_dir() => current = candidate,
                Ok(_) => {
                    return Err(format!("{} exists and is not a directory", outer_path.display()));
                }
                Err(error) if error.kind() == ErrorKind::NotFound => {
                    self.refuse_protected(&candidate)?;
                    match self.rootfs_symlink_at(&current, &part) {
                        Some(target) => {
                            symlink(&target, &outer_path)
                                .map_err(|error| format!("cannot mirror the symlink {}: {error}", outer_path.display()))?;
                            // Resolve the new link on the next round.
                            pending.push_front(part);
                        }
                        None => {
                            fs::create_dir(&outer_path).map_err(|error| format!("cannot create {}: {error}", outer_path.display()))?;
                            current = candidate;
                        }
                    }
                }
                Err(error) => return Err(format!("{}: {error}", outer_path.display())),
            }
        }
        self.refuse_protected(&current)?;
        Ok(current)
    }

    /// The target of `<parent>/<name>` in the rootfs when that entry is a symlink.
    fn rootfs_symlink_at(&self, parent: &Path, name: &OsStr) -> Option<PathBuf> {
        let parent_in_rootfs = resolve_directory_in_root(&self.rootfs, &Path::new("/").join(parent))?;
        let entry = self.rootfs.join(parent_in_rootfs).join(name);
        let metadata = fs::symlink_metadata(&entry).ok()?;
        if metadata.file_type().is_symlink() { fs::read_link(entry).ok() } else { None }
    }

    fn is_farm_link(&self, path: &Path) -> bool {
        fs::read_link(path).is_ok_and(|target| target == self.wrapper)
    }

    fn link_programs(&self, outer_relative: &Path, names: &BTreeSet<OsString>, report: &mut SyncReport) {
        let directory = self.outer_root.join(outer_relative);
        for name in names {
            let link = directory.join(name);
            match fs::symlink_metadata(&link) {
                Ok(_) if self.is_farm_link(&link) => {}
                Ok(metadata) if metadata.is_dir() => {}
                Ok(_) => {
                    // The image's own file: replace it atomically, so the name lands in the rootfs.
                    let temporary = directory.join(format!(".{}.sc-exec-link", name.to_string_lossy()));
                    let _ = fs::remove_file(&temporary);
                    match symlink(&self.wrapper, &temporary).and_then(|()| fs::rename(&temporary, &link)) {
                        Ok(()) => report.created += 1,
                        Err(error) => report.problems.push(format!("{}: {error}", link.display())),
                    }
                }
                Err(_) => match symlink(&self.wrapper, &link) {
                    Ok(()) => report.created += 1,
                    Err(error) => report.problems.push(format!("{}: {error}", link.display())),
                },
            }
        }
        let Ok(entries) = fs::read_dir(&directory) else {
            return;
        };
        for entry in entries.filter_map(Result::ok) {
            if !names.contains(&entry.file_name()) && self.is_farm_link(&entry.path()) && fs::remove_file(entry.path()).is_ok() {
                report.removed += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Trees {
        outer: tempfile::TempDir,
        rootfs: tempfile::TempDir,
    }

    fn program(root: &Path, path: &str) {
        let full = root.join(path);
        fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
        fs::write(&full, "#!/bin/sh\n").expect("write");
        fs::set_permissions(&full, fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    /// A merged-/usr rootfs: /bin -> usr/bin, /sbin -> usr/sbin.
    fn merged_usr() -> Trees {
        let trees = Trees { outer: tempfile::tempdir().expect("tmp"), rootfs: tempfile::tempdir().expect("tmp") };
        let rootfs = trees.rootfs.path();
        program(rootfs, "usr/bin/busybox");
        program(rootfs, "usr/bin/tar");
        program(rootfs, "usr/sbin/nginx");
        program(rootfs, "opt/app/bin/app");
        fs::write(rootfs.join("usr/bin/README"), "not a program").expect("write");
        symlink("busybox", rootfs.join("usr/bin/ls")).expect("link");
        symlink("usr/bin", rootfs.join("bin")).expect("link");
        symlink("/usr/sbin", rootfs.join("sbin")).expect("link");
        fs::create_dir_all(trees.outer.path().join(".sc-bin")).expect("mkdir");
        trees
    }

    fn farm(trees: &Trees, path: Option<&str>) -> SymlinkFarm {
        SymlinkFarm::for_workload(trees.outer.path().to_path_buf(), trees.rootfs.path().to_path_buf(), path.map(OsStr::new))
    }

    fn link_target(path: PathBuf) -> Option<PathBuf> {
        fs::read_link(path).ok()
    }

    #[test]
    fn farm_directories_add_the_workload_path_once() {
        assert_eq!(
            farm_directories(Some(OsStr::new("/opt/app/bin:/usr/bin:relative:"))),
            ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin", "/opt/app/bin"].map(PathBuf::from).to_vec()
        );
    }

    #[test]
    fn resolution_stays_inside_the_root() {
        let trees = merged_usr();
        let rootfs = trees.rootfs.path();
        assert_eq!(resolve_directory_in_root(rootfs, Path::new("/bin")), Some(PathBuf::from("usr/bin")));
        assert_eq!(resolve_directory_in_root(rootfs, Path::new("/sbin")), Some(PathBuf::from("usr/sbin")));
        symlink("../../../../../..", rootfs.join("escape")).expect("link");
        assert_eq!(resolve_directory_in_root(rootfs, Path::new("/escape")), Some(PathBuf::new()));
        symlink("/etc", rootfs.join("etc-link")).expect("link");
        assert_eq!(resolve_directory_in_root(rootfs, Path::new("/etc-link")), None, "no /etc in the rootfs");
        symlink("loop", rootfs.join("loop")).expect("link");
        assert_eq!(resolve_directory_in_root(rootfs, Path::new("/loop")), None);
        assert_eq!(resolve_directory_in_root(rootfs, Path::new("/usr/bin/tar")), None, "a file");
    }

    #[test]
    fn a_merged_usr_rootfs_is_mirrored_with_the_same_symlinks() {
        let trees = merged_usr();
        let report = farm(&trees, Some("/opt/app/bin")).sync();
        let outer = trees.outer.path();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert_eq!(link_target(outer.join("bin")), Some(PathBuf::from("usr/bin")));
        assert_eq!(link_target(outer.join("sbin")), Some(PathBuf::from("/usr/sbin")));
        for program in ["usr/bin/busybox", "usr/bin/tar", "usr/bin/ls", "usr/sbin/nginx", "opt/app/bin/app"] {
            assert_eq!(link_target(outer.join(program)), Some(PathBuf::from("/.sc-bin/sc-exec")), "{program}");
        }
        assert!(!outer.join("usr/bin/README").exists(), "not executable");
        assert_eq!(link_target(outer.join(".sc-path/app")), Some(PathBuf::from("/.sc-bin/sc-exec")), "the workload PATH's name");
        assert!(!outer.join(".sc-path/tar").exists(), "/usr/bin is not on this workload's PATH");
        assert_eq!(report.created, 6);
        assert!(report.watched.contains(&trees.rootfs.path().join("usr/bin")));
        assert!(!outer.join("usr/local/bin").exists(), "absent in the rootfs, so not created");
    }

    #[test]
    fn a_second_sync_adds_new_programs_and_removes_gone_ones_only() {
        let trees = merged_usr();
        let farm = farm(&trees, None);
        farm.sync();
        program(trees.rootfs.path(), "usr/bin/vim");
        fs::remove_file(trees.rootfs.path().join("usr/bin/tar")).expect("rm");
        let outer = trees.outer.path();
        fs::write(outer.join("usr/bin/unrelated"), "the image's own").expect("write");
        let report = farm.sync();
        assert_eq!((report.created, report.removed), (2, 2), "the mirror and the by-name link each");
        assert!(outer.join("usr/bin/vim").is_symlink() && outer.join(".sc-path/vim").is_symlink());
        assert!(!outer.join("usr/bin/tar").is_symlink() && !outer.join(".sc-path/tar").is_symlink());
        assert!(outer.join("usr/bin/unrelated").is_file(), "never removes what it did not create");
        assert_eq!(farm.sync(), SyncReport { watched: report.watched.clone(), ..SyncReport::default() });
    }

    #[test]
    fn an_image_file_with_a_rootfs_name_is_replaced_by_a_link() {
        let trees = merged_usr();
        program(trees.outer.path(), "usr/bin/tar");
        farm(&trees, None).sync();
        assert_eq!(link_target(trees.outer.path().join("usr/bin/tar")), Some(PathBuf::from("/.sc-bin/sc-exec")));
    }

    #[test]
    fn an_existing_outer_real_directory_is_filled_through_the_rootfs_symlink() {
        let trees = merged_usr();
        fs::create_dir_all(trees.outer.path().join("bin")).expect("mkdir");
        farm(&trees, None).sync();
        assert!(trees.outer.path().join("bin/ls").is_symlink());
        assert!(trees.outer.path().join("usr/bin/ls").is_symlink());
    }

    #[test]
    fn a_hostile_rootfs_cannot_make_the_farm_write_into_protected_places() {
        let trees = merged_usr();
        let rootfs = trees.rootfs.path();
        program(rootfs, ".sc-bin/sc-exec");
        program(rootfs, ".sc-bin/evil");
        symlink("/.sc-bin", rootfs.join("hostile")).expect("link");
        symlink("/proc/self", rootfs.join("procdir")).expect("link");
        symlink("/", rootfs.join("rootdir")).expect("link");
        program(rootfs, "proc/self/x");
        program(rootfs, "sc-exec-dir/sc-exec");
        let report = farm(&trees, Some("/hostile:/procdir:/rootdir:/sc-exec-dir")).sync();
        let outer = trees.outer.path();
        assert_eq!(report.problems.len(), 3, "{:?}", report.problems);
        assert!(report.problems.iter().any(|problem| problem.contains("never writes")), "{:?}", report.problems);
        assert!(report.problems.iter().any(|problem| problem.contains("never fills")), "{:?}", report.problems);
        assert!(!outer.join(".sc-bin/evil").exists());
        assert!(!outer.join("proc").exists());
        assert!(!outer.join("sc-exec-dir/sc-exec").exists(), "sc-exec is never a farm name");
    }

    #[test]
    fn a_program_only_on_the_images_path_gets_a_by_name_link_once_per_name() {
        let trees = merged_usr();
        let rootfs = trees.rootfs.path();
        program(rootfs, "opt/conda/bin/python");
        program(rootfs, "opt/conda/bin/tar");
        symlink("/opt/conda", rootfs.join("conda")).expect("link");
        let farm = farm(&trees, Some("/conda/bin:/usr/bin:relative"));
        let report = farm.sync();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        let outer = trees.outer.path();
        assert!(outer.join(".sc-path").is_dir() && !outer.join(".sc-path").is_symlink());
        for name in ["python", "tar", "ls", "busybox"] {
            assert_eq!(link_target(outer.join(".sc-path").join(name)), Some(PathBuf::from("/.sc-bin/sc-exec")), "{name}");
        }
        assert!(!outer.join(".sc-path/nginx").exists(), "/usr/sbin is not on the workload's PATH");
        assert_eq!(link_target(outer.join("conda")), Some(PathBuf::from("/opt/conda")), "mirrored as the rootfs has it");
        assert!(outer.join("opt/conda/bin/python").is_symlink());
        assert!(report.watched.contains(&rootfs.join("opt/conda/bin")));

        fs::remove_file(rootfs.join("opt/conda/bin/python")).expect("rm");
        farm.sync();
        assert!(!outer.join(".sc-path/python").is_symlink(), "a gone program loses its by-name link");
    }

    #[test]
    fn the_by_name_directory_is_never_a_mirror_target_nor_followed() {
        let trees = merged_usr();
        let rootfs = trees.rootfs.path();
        program(rootfs, ".sc-path/planted");
        symlink("/.sc-path", rootfs.join("sneaky")).expect("link");
        let report = farm(&trees, Some("/.sc-path:/sneaky")).sync();
        let outer = trees.outer.path();
        assert_eq!(
            report.problems.iter().filter(|problem| problem.contains("/.sc-path, which the farm never writes")).count(),
            2,
            "{:?}",
            report.problems
        );
        // Only the name crossed over, as a link to sc-exec (never the rootfs's file).
        assert_eq!(link_target(outer.join(".sc-path/planted")), Some(PathBuf::from("/.sc-bin/sc-exec")));

        let trees = merged_usr();
        let elsewhere = tempfile::tempdir().expect("tmp");
        symlink(elsewhere.path(), trees.outer.path().join(".sc-path")).expect("link");
        let report = farm(&trees, None).sync();
        assert!(report.problems.iter().any(|problem| problem.contains("not a directory")), "{:?}", report.problems);
        assert_eq!(fs::read_dir(elsewhere.path()).expect("list").count(), 0, "a symlinked by-name directory is not followed");
    }

    #[test]
    fn path_directories_default_to_the_runtimes() {
        assert_eq!(
            path_directories(None),
            ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from)
        );
        assert_eq!(path_directories(Some(OsStr::new("/a::/b:/a:c"))), ["/a", "/b"].map(PathBuf::from));
    }
}
