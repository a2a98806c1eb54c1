//! `sc-exec install <dir>`: copies the running binary into a directory, atomically, so a
//! container starting concurrently never executes a half-written file. The node DaemonSet's
//! init container installs it into `<data-root>/exec-wrapper/`, which the node plugin then
//! bind-mounts read-only into every provider pod: a provider running the old binary keeps it (a
//! rename replaces the name, not the file it runs).

use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::cli::BINARY_NAME;
use crate::error::Error;

/// Copies `source` (normally `/proc/self/exe`) to `<dir>/sc-exec` with mode 0755 via a temporary
/// file and a rename. Returns the installed path.
/// A missing `dir` is created (0755; its parent must exist), and temporaries left by an install
/// that was killed are removed: the node plugin publishes the directory only when it holds
/// nothing but `sc-exec`.
pub fn install(source: &Path, dir: &Path) -> Result<PathBuf, Error> {
    let destination = dir.join(BINARY_NAME);
    let temporary_prefix = format!(".{BINARY_NAME}.tmp.");
    let temporary = dir.join(format!("{temporary_prefix}{}", std::process::id()));
    let result = (|| {
        match fs::DirBuilder::new().mode(0o755).create(dir) {
            Err(error) if error.kind() != std::io::ErrorKind::AlreadyExists => return Err(error),
            _ => {}
        }
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with(&temporary_prefix) {
                fs::remove_file(entry.path())?;
            }
        }
        fs::copy(source, &temporary)?;
        fs::set_permissions(&temporary, fs::Permissions::from_mode(0o755))?;
        fs::File::open(&temporary)?.sync_all()?;
        fs::rename(&temporary, &destination)
    })();
    if let Err(source) = result {
        let _ = fs::remove_file(&temporary);
        return Err(Error::Install { dir: dir.to_path_buf(), source });
    }
    Ok(destination)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    #[test]
    fn the_copy_is_executable_identical_and_leaves_no_temporary() {
        let source_dir = tempfile::tempdir().expect("tmp");
        let source = source_dir.path().join("binary");
        fs::write(&source, b"\x7fELF pretend").expect("write");
        let target = tempfile::tempdir().expect("tmp");
        fs::write(target.path().join("sc-exec"), b"old").expect("old version");
        let installed = install(&source, target.path()).expect("installs");
        assert_eq!(installed, target.path().join("sc-exec"));
        assert_eq!(fs::read(&installed).expect("read"), b"\x7fELF pretend");
        assert_eq!(fs::metadata(&installed).expect("stat").permissions().mode() & 0o7777, 0o755);
        assert_eq!(fs::read_dir(target.path()).expect("list").count(), 1);
    }

    #[test]
    fn a_missing_directory_is_made_and_a_killed_installs_temporary_removed() {
        let source_dir = tempfile::tempdir().expect("tmp");
        let source = source_dir.path().join("binary");
        fs::write(&source, b"\x7fELF new").expect("write");
        let data_root = tempfile::tempdir().expect("tmp");
        let dir = data_root.path().join("exec-wrapper");
        install(&source, &dir).expect("installs into a new directory");
        assert_eq!(fs::metadata(&dir).expect("stat").permissions().mode() & 0o7777, 0o755);
        fs::write(dir.join(".sc-exec.tmp.1"), b"half").expect("a killed install's temporary");
        // A provider that runs the old binary keeps its file: the new one is renamed over the name.
        let running = fs::File::open(dir.join("sc-exec")).expect("open the old binary");
        install(&source, &dir).expect("installs again");
        let names: Vec<_> = fs::read_dir(&dir).expect("list").map(|entry| entry.expect("entry").file_name()).collect();
        assert_eq!(names, ["sc-exec"]);
        assert_ne!(running.metadata().expect("stat").ino(), fs::metadata(dir.join("sc-exec")).expect("stat").ino(), "replaced by a rename");
    }

    #[test]
    fn a_missing_directory_is_reported_with_what_to_do() {
        let source_dir = tempfile::tempdir().expect("tmp");
        let source = source_dir.path().join("binary");
        fs::write(&source, b"x").expect("write");
        let error = install(&source, Path::new("/nonexistent/dir")).expect_err("no parent");
        assert_eq!(error.exit_code(), 73);
        assert!(error.to_string().contains("(or its parent, to create it) must exist and be writable"), "{error}");
    }
}
