//! Unix listening sockets for the plugin's gRPC services and the per-volume control sockets.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::socket::{AddressFamily, Backlog, SockFlag, SockType, UnixAddr};
use nix::sys::stat::{Mode, fchmod};

/// Every socket the plugin serves is readable and writable by root only.
pub const SOCKET_MODE: u32 = 0o600;

/// Why `--endpoint` names no socket the plugin can serve on.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("endpoint {endpoint:?} must be a unix socket URL like unix:///csi/csi.sock")]
    NotUnix { endpoint: String },
    #[error("endpoint {endpoint:?} must name an absolute socket path")]
    NotAbsolute { endpoint: String },
}

/// A socket path from a `unix://` endpoint URL (`unix:///path` or `unix:/path`).
pub fn endpoint_path(endpoint: &str) -> Result<PathBuf, EndpointError> {
    let path = endpoint
        .strip_prefix("unix://")
        .or_else(|| endpoint.strip_prefix("unix:"))
        .ok_or_else(|| EndpointError::NotUnix { endpoint: endpoint.to_owned() })?;
    let path = Path::new(path);
    if !path.is_absolute() {
        return Err(EndpointError::NotAbsolute { endpoint: endpoint.to_owned() });
    }
    Ok(path.to_path_buf())
}

/// Binds a listening socket at `path`, replacing a stale socket a previous run left there (but
/// never another kind of file), readable and writable by root only.
///
/// The mode is set on the socket *before* `bind`: Linux creates the socket file with the
/// socket's own mode (masked by the umask), so the file is 0600 from its first instant and
/// nothing `chmod`s a path afterwards. A `chmod` of the path after `bind` would follow whatever
/// is at that name by then (a symlink planted in a directory someone else can write), and a
/// `fchmod` after `bind` does not reach the file at all (both measured on Linux 6.18).
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
    let socket = nix::sys::socket::socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK, None)?;
    fchmod(&socket, Mode::from_bits_truncate(SOCKET_MODE))?;
    // bind(2) never follows a symlink at the name: anything there makes it fail (EADDRINUSE).
    nix::sys::socket::bind(socket.as_raw_fd(), &UnixAddr::new(path)?)?;
    check_mode(path)?;
    nix::sys::socket::listen(&socket, Backlog::MAXCONN)?;
    tokio::net::UnixListener::from_std(std::os::unix::net::UnixListener::from(socket))
}

/// The socket file must have come out root-only; a kernel that ignored the socket's mode would
/// otherwise serve it to everyone. Only a `stat`, never a change, so it cannot be misled into
/// touching anything else.
fn check_mode(path: &Path) -> io::Result<()> {
    let metadata = std::fs::symlink_metadata(path)?;
    let mode = metadata.permissions().mode() & 0o7777;
    if metadata.file_type().is_socket() && mode == SOCKET_MODE {
        return Ok(());
    }
    let _ = std::fs::remove_file(path);
    Err(io::Error::other(format!(
        "{} came out with mode {mode:o}, not {SOCKET_MODE:o}: this kernel does not create sockets with the socket's mode; the plugin refuses to serve it",
        path.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_must_be_absolute_unix_urls() {
        assert_eq!(endpoint_path("unix:///csi/csi.sock").expect("ok"), PathBuf::from("/csi/csi.sock"));
        assert_eq!(endpoint_path("unix:/csi/csi.sock").expect("ok"), PathBuf::from("/csi/csi.sock"));
        assert!(endpoint_path("tcp://127.0.0.1:10000").expect_err("tcp").to_string().contains("must be a unix socket URL"));
        assert!(endpoint_path("unix://relative.sock").expect_err("relative").to_string().contains("absolute"));
    }

    #[tokio::test]
    async fn bind_replaces_stale_sockets_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("csi.sock");
        drop(bind(&path).expect("first bind"));
        let listener = bind(&path).expect("rebinding over a stale socket");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let client = tokio::net::UnixStream::connect(&path).await.expect("it listens");
        let (_server, _) = listener.accept().await.expect("accept");
        drop((client, listener));
        let file = dir.path().join("regular");
        std::fs::write(&file, b"keep me").expect("write");
        let error = bind(&file).expect_err("a regular file is not replaced");
        assert!(error.to_string().contains("is not a socket"), "{error}");
        assert_eq!(std::fs::read(&file).expect("read"), b"keep me");
    }

    #[tokio::test]
    async fn a_symlink_at_the_name_is_never_followed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"keep me").expect("write");
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let path = dir.path().join("prepare.sock");
        std::os::unix::fs::symlink(&victim, &path).expect("symlink");
        let error = bind(&path).expect_err("a symlink is not a socket");
        assert!(error.to_string().contains("is not a socket"), "{error}");
        assert_eq!(std::fs::metadata(&victim).expect("stat").permissions().mode() & 0o777, 0o644, "its target keeps its mode");
        assert_eq!(std::fs::read(&victim).expect("read"), b"keep me");
    }
}
