//! `sc-exec install <dir>`: copies the running binary into a shared volume, atomically, so a
//! container starting concurrently never executes a half-written file.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::cli::BINARY_NAME;
use crate::error::Error;

/// Copies `source` (normally `/proc/self/exe`) to `<dir>/sc-exec` with mode 0755 via a temporary
/// file and a rename. Returns the installed path.
pub fn install(source: &Path, dir: &Path) -> Result<PathBuf, Error> {
    let destination = dir.join(BINARY_NAME);
    let temporary = dir.join(format!(".{BINARY_NAME}.tmp.{}", std::process::id()));
    let result = (|| {
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
    fn a_missing_directory_is_reported_with_what_to_do() {
        let source_dir = tempfile::tempdir().expect("tmp");
        let source = source_dir.path().join("binary");
        fs::write(&source, b"x").expect("write");
        let error = install(&source, Path::new("/nonexistent/dir")).expect_err("no dir");
        assert_eq!(error.exit_code(), 73);
        assert!(error.to_string().contains("must exist and be writable"), "{error}");
    }
}
