//! Unix listening sockets for the plugin's gRPC services.

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A socket path from a `unix://` endpoint URL (`unix:///path` or `unix:/path`).
pub fn endpoint_path(endpoint: &str) -> Result<PathBuf, String> {
    let path = endpoint
        .strip_prefix("unix://")
        .or_else(|| endpoint.strip_prefix("unix:"))
        .ok_or_else(|| format!("endpoint {endpoint:?} must be a unix socket URL like unix:///csi/csi.sock"))?;
    let path = Path::new(path);
    if !path.is_absolute() {
        return Err(format!("endpoint {endpoint:?} must name an absolute socket path"));
    }
    Ok(path.to_path_buf())
}

/// Binds a listening socket at `path`, replacing a stale socket a previous run left there (but
/// never another kind of file), readable and writable by root only.
pub fn bind(path: &Path) -> io::Result<tokio::net::UnixListener> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(metadata) if metadata.file_type().is_socket() => std::fs::remove_file(path)?,
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket; remove it or choose another endpoint", path.display()),
            ));
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    let listener = tokio::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_must_be_absolute_unix_urls() {
        assert_eq!(endpoint_path("unix:///csi/csi.sock").expect("ok"), PathBuf::from("/csi/csi.sock"));
        assert_eq!(endpoint_path("unix:/csi/csi.sock").expect("ok"), PathBuf::from("/csi/csi.sock"));
        assert!(endpoint_path("tcp://127.0.0.1:10000").expect_err("tcp").contains("must be a unix socket URL"));
        assert!(endpoint_path("unix://relative.sock").expect_err("relative").contains("absolute"));
    }

    #[tokio::test]
    async fn bind_replaces_stale_sockets_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("csi.sock");
        drop(bind(&path).expect("first bind"));
        let listener = bind(&path).expect("rebinding over a stale socket");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        drop(listener);
        let file = dir.path().join("regular");
        std::fs::write(&file, b"keep me").expect("write");
        let error = bind(&file).expect_err("a regular file is not replaced");
        assert!(error.to_string().contains("is not a socket"), "{error}");
        assert_eq!(std::fs::read(&file).expect("read"), b"keep me");
    }
}
