//! Finding a command the way `execvp(3)` does, through the workload's own `PATH`, in a directory
//! tree seen as `/` (the rootfs after `chroot`, or a fixture tree in tests).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use crate::error::Error;

/// `PATH` when the workload's environment has none (the value container runtimes default to).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Maps a path as the workload sees it (absolute, or relative to `cwd`) into `root`.
fn host_path(root: &Path, cwd: &Path, path: &Path) -> PathBuf {
    let absolute = if path.is_absolute() { path.to_path_buf() } else { cwd.join(path) };
    let mut mapped = root.to_path_buf();
    for component in absolute.components() {
        if let Component::Normal(part) = component {
            mapped.push(part);
        }
    }
    mapped
}

enum Candidate {
    Executable,
    NotExecutable(String),
    Missing,
}

fn inspect(path: &Path) -> Candidate {
    match std::fs::metadata(path) {
        Err(_) => Candidate::Missing,
        Ok(metadata) if metadata.is_dir() => Candidate::NotExecutable("it is a directory".into()),
        Ok(metadata) if !metadata.is_file() => Candidate::NotExecutable("it is not a regular file".into()),
        Ok(metadata) if metadata.permissions().mode() & 0o111 == 0 => {
            Candidate::NotExecutable("it has no execute permission (fix it with `chmod +x`)".into())
        }
        Ok(_) => Candidate::Executable,
    }
}

/// Resolves `command` inside `root`: a name with a `/` is taken as a path (relative to `cwd`); a
/// bare name is searched in each `PATH` entry in order (an empty entry meaning the current
/// directory, as `execvp` does). Returns the path to execute as the workload sees it.
pub fn resolve_command(root: &Path, cwd: &Path, command: &OsStr, search_path: Option<&OsStr>) -> Result<PathBuf, Error> {
    let shown = command.to_string_lossy().into_owned();
    if command.is_empty() {
        return Err(Error::CommandNotFound { command: shown, search_path: String::new() });
    }
    if command.as_bytes().contains(&b'/') {
        let path = PathBuf::from(command);
        return match inspect(&host_path(root, cwd, &path)) {
            Candidate::Executable => Ok(path),
            Candidate::NotExecutable(reason) => Err(Error::NotExecutable { path, reason }),
            Candidate::Missing => {
                Err(Error::CommandNotFound { command: shown, search_path: "(not searched: the command is a path)".into() })
            }
        };
    }
    let search_path = search_path.unwrap_or(OsStr::new(DEFAULT_PATH));
    let mut first_not_executable = None;
    for directory in search_path.as_bytes().split(|&byte| byte == b':') {
        let directory = if directory.is_empty() { cwd } else { Path::new(OsStr::from_bytes(directory)) };
        let candidate = directory.join(command);
        match inspect(&host_path(root, cwd, &candidate)) {
            Candidate::Executable => return Ok(candidate),
            Candidate::NotExecutable(reason) => {
                first_not_executable.get_or_insert((candidate, reason));
            }
            Candidate::Missing => {}
        }
    }
    // Like execvp: a match that cannot be executed is reported only when nothing better exists.
    match first_not_executable {
        Some((path, reason)) => Err(Error::NotExecutable { path, reason }),
        None => Err(Error::CommandNotFound { command: shown, search_path: search_path.to_string_lossy().into_owned() }),
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::symlink;

    use super::*;

    fn fixture() -> tempfile::TempDir {
        let root = tempfile::tempdir().expect("tempdir");
        let write = |path: &str, mode: u32| {
            let full = root.path().join(path);
            fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
            fs::write(&full, "#!/bin/sh\n").expect("write");
            fs::set_permissions(&full, fs::Permissions::from_mode(mode)).expect("chmod");
        };
        write("usr/bin/ls", 0o755);
        write("usr/local/bin/tool", 0o755);
        write("usr/bin/tool", 0o755);
        write("usr/bin/notes.txt", 0o644);
        write("opt/app/bin/notes.txt", 0o700);
        write("srv/run.sh", 0o755);
        fs::create_dir_all(root.path().join("usr/bin/adir")).expect("mkdir");
        symlink("usr/bin", root.path().join("bin")).expect("merged-usr link");
        symlink("ls", root.path().join("usr/bin/dir")).expect("applet link");
        root
    }

    fn resolve(root: &Path, command: &str, path: Option<&str>) -> Result<PathBuf, Error> {
        resolve_command(root, Path::new("/srv"), OsStr::new(command), path.map(OsStr::new))
    }

    #[test]
    fn path_is_searched_in_order() {
        let root = fixture();
        assert_eq!(resolve(root.path(), "tool", None).expect("found"), PathBuf::from("/usr/local/bin/tool"));
        assert_eq!(resolve(root.path(), "tool", Some("/usr/bin:/usr/local/bin")).expect("found"), PathBuf::from("/usr/bin/tool"));
        assert_eq!(resolve(root.path(), "dir", Some("/bin")).expect("via links"), PathBuf::from("/bin/dir"));
    }

    #[test]
    fn the_workloads_own_path_is_used_not_a_fixed_list() {
        let root = fixture();
        assert_eq!(resolve(root.path(), "notes.txt", Some("/opt/app/bin")).expect("found"), PathBuf::from("/opt/app/bin/notes.txt"));
    }

    #[test]
    fn a_non_executable_match_is_skipped_when_a_later_one_works() {
        let root = fixture();
        assert_eq!(
            resolve(root.path(), "notes.txt", Some("/usr/bin:/opt/app/bin")).expect("found"),
            PathBuf::from("/opt/app/bin/notes.txt")
        );
        let error = resolve(root.path(), "notes.txt", Some("/usr/bin")).expect_err("not executable");
        assert_eq!(error.exit_code(), 126);
        assert!(error.to_string().contains("chmod +x"), "{error}");
        let directory = resolve(root.path(), "adir", Some("/usr/bin")).expect_err("directory");
        assert!(directory.to_string().contains("directory"), "{directory}");
    }

    #[test]
    fn a_missing_command_names_the_searched_path() {
        let root = fixture();
        let error = resolve(root.path(), "vim", Some("/usr/bin:/bin")).expect_err("missing");
        assert_eq!(error.exit_code(), 127);
        assert!(error.to_string().contains("PATH=/usr/bin:/bin"), "{error}");
        assert_eq!(resolve(root.path(), "", None).expect_err("empty").exit_code(), 127);
    }

    #[test]
    fn paths_are_used_as_given_relative_to_the_working_directory() {
        let root = fixture();
        assert_eq!(resolve(root.path(), "/usr/bin/ls", None).expect("abs"), PathBuf::from("/usr/bin/ls"));
        assert_eq!(resolve(root.path(), "./run.sh", None).expect("rel"), PathBuf::from("./run.sh"));
        assert_eq!(resolve(root.path(), "/nope/ls", None).expect_err("missing").exit_code(), 127);
        assert_eq!(resolve(root.path(), "/usr/bin/notes.txt", None).expect_err("mode").exit_code(), 126);
    }

    #[test]
    fn an_empty_path_entry_means_the_working_directory() {
        let root = fixture();
        assert_eq!(resolve(root.path(), "run.sh", Some(":/usr/bin")).expect("cwd"), PathBuf::from("/srv/run.sh"));
    }
}
