//! The per-publication control socket: `<data-root>/control/<volume-id>/prepare.sock`, which the
//! consumer sees as `/.sc/control/prepare.sock` through the volume.
//!
//! One exchange per connection: a [`ControlRequest`] JSON line in, a [`ControlResponse`] JSON
//! line out. Nothing the peer sends is trusted but the op: the caller is identified by the kernel
//! (`SO_PEERCRED` gives its pid in the plugin's PID namespace, the host's under hostPID), and
//! accepted only when its cgroup puts it in a container of the pod the volume was published for.
//! The preparation itself runs in a helper process ([`crate::prepare`]), because entering another
//! mount namespace is impossible for the multi-threaded plugin.

use std::collections::HashMap;
use std::io;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;
use sc_api::consts::CONTROL_SOCKET_NAME;
use sc_api::exec_config::{ControlRequest, ControlResponse};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Mutex, Semaphore};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use crate::layout::DataRoot;
use crate::prepare::{self, Fault, HELPER_SUBCOMMAND, HelperArgs, HelperReport, PrepareError};
use crate::validate::PodRef;

/// Longest request line accepted (`{"op":"prepare"}` is 16 bytes).
pub const MAX_REQUEST_BYTES: usize = 1024;

/// Limits of the control sockets.
#[derive(Clone, Debug)]
pub struct ControlSettings {
    /// The program run as the prepare helper (this binary).
    pub helper: PathBuf,
    /// How long a peer may take to send its request.
    pub request_timeout: Duration,
    /// How long one preparation may take before its helper is killed.
    pub prepare_timeout: Duration,
    /// Connections served at once per socket; more wait in the listen backlog.
    pub max_connections: usize,
}

impl Default for ControlSettings {
    fn default() -> Self {
        Self {
            helper: PathBuf::from("/proc/self/exe"),
            request_timeout: Duration::from_secs(5),
            prepare_timeout: Duration::from_secs(30),
            max_connections: 4,
        }
    }
}

/// The live control sockets, one per published volume.
pub struct ControlSockets {
    data: DataRoot,
    settings: ControlSettings,
    live: std::sync::Mutex<HashMap<String, JoinHandle<()>>>,
}

/// What the connections of one socket share.
struct Publication {
    volume_id: String,
    pod: PodRef,
    settings: ControlSettings,
    /// One preparation at a time: two concurrent ones could both find a destination unmounted.
    preparing: Mutex<()>,
}

impl ControlSockets {
    pub fn new(data: DataRoot, settings: ControlSettings) -> Self {
        Self { data, settings, live: std::sync::Mutex::new(HashMap::new()) }
    }

    pub fn socket_path(&self, volume_id: &str) -> PathBuf {
        self.data.control_dir(volume_id).join(CONTROL_SOCKET_NAME)
    }

    /// Starts serving the volume's control socket (again after a restart; a no-op while it is
    /// served). Must run inside the Tokio runtime.
    pub fn open(&self, volume_id: &str, pod: &PodRef) -> io::Result<()> {
        let mut live = self.live.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if live.get(volume_id).is_some_and(|task| !task.is_finished()) {
            return Ok(());
        }
        let listener = bind_in(&self.data.control_dir(volume_id))?;
        let publication = Arc::new(Publication {
            volume_id: volume_id.to_owned(),
            pod: pod.clone(),
            settings: self.settings.clone(),
            preparing: Mutex::new(()),
        });
        live.insert(volume_id.to_owned(), tokio::spawn(accept_loop(listener, publication)));
        debug!(volume_id, socket = %self.socket_path(volume_id).display(), "serving the control socket");
        Ok(())
    }

    /// Stops serving the volume's control socket and removes it. Connections already accepted
    /// finish on their own (each is bounded in time).
    pub fn close(&self, volume_id: &str) {
        if let Some(task) = self.live.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(volume_id) {
            task.abort();
        }
        let socket = self.socket_path(volume_id);
        match std::fs::remove_file(&socket) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => warn!(socket = %socket.display(), %error, "could not remove the control socket"),
        }
    }

    /// Removes the volume's control directory once nothing is mounted from it any more.
    pub fn remove_dir(&self, volume_id: &str) {
        let dir = self.data.control_dir(volume_id);
        match std::fs::remove_dir(&dir) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => warn!(dir = %dir.display(), %error, "could not remove the control directory"),
        }
    }
}

impl Drop for ControlSockets {
    fn drop(&mut self) {
        for task in self.live.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner).values() {
            task.abort();
        }
    }
}

/// Binds `<dir>/prepare.sock` through `/proc/self/fd/<dir-fd>/`: a Unix socket address holds at
/// most 107 bytes, and `<data-root>/control/csi-<64 hex>/prepare.sock` is longer than that.
fn bind_in(dir: &std::path::Path) -> io::Result<UnixListener> {
    let dir_fd = open(dir, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|errno| io::Error::new(io::Error::from(errno).kind(), format!("opening {}: {errno}", dir.display())))?;
    let short = PathBuf::from(format!("/proc/self/fd/{}/{CONTROL_SOCKET_NAME}", dir_fd.as_raw_fd()));
    crate::socket::bind(&short).map_err(|error| io::Error::new(error.kind(), format!("{}/{CONTROL_SOCKET_NAME}: {error}", dir.display())))
}

async fn accept_loop(listener: UnixListener, publication: Arc<Publication>) {
    let permits = Arc::new(Semaphore::new(publication.settings.max_connections.max(1)));
    loop {
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else { return };
        match listener.accept().await {
            Ok((stream, _)) => {
                let publication = Arc::clone(&publication);
                tokio::spawn(async move {
                    serve_connection(stream, &publication).await;
                    drop(permit);
                });
            }
            Err(error) => {
                // EMFILE and friends: back off instead of spinning.
                warn!(volume_id = %publication.volume_id, %error, "accepting on the control socket failed");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

async fn serve_connection(mut stream: UnixStream, publication: &Publication) {
    let started = std::time::Instant::now();
    let peer = stream.peer_cred().ok().and_then(|credentials| credentials.pid()).filter(|pid| *pid > 0);
    let (reader, mut writer) = stream.split();
    let response = match handle(peer, reader, publication).await {
        Ok(report) => {
            let elapsed_ms = crate::node::millis(started.elapsed());
            info!(volume_id = %publication.volume_id, pod = %pod_name(&publication.pod), pid = peer, elapsed_ms, ?report, "prepared the consumer's rootfs");
            ControlResponse::Prepared
        }
        Err(problem) => {
            let message = problem.to_string();
            match problem.fault() {
                Fault::Caller => warn!(volume_id = %publication.volume_id, pid = peer, %message, "refused a control request"),
                Fault::Rootfs => {
                    warn!(volume_id = %publication.volume_id, pid = peer, %message, "the consumer's rootfs cannot be prepared")
                }
                Fault::Node => error!(volume_id = %publication.volume_id, pid = peer, %message, "preparing the consumer's rootfs failed"),
            }
            ControlResponse::Failed { message }
        }
    };
    let mut line =
        serde_json::to_vec(&response).unwrap_or_else(|_| br#"{"result":"failed","message":"encoding the answer failed"}"#.to_vec());
    line.push(b'\n');
    let written = tokio::time::timeout(publication.settings.request_timeout, writer.write_all(&line)).await;
    if !matches!(written, Ok(Ok(()))) {
        debug!(volume_id = %publication.volume_id, pid = peer, "the peer left before the answer");
    }
}

/// Reads, authenticates and carries out one request.
async fn handle(peer: Option<i32>, reader: impl AsyncRead + Unpin, publication: &Publication) -> Result<Vec<String>, PrepareError> {
    let pid = peer.ok_or(PrepareError::NoPeerProcess)?;
    match read_request(reader, publication.settings.request_timeout).await? {
        ControlRequest::Prepare => {}
    }
    let cgroup = tokio::fs::read_to_string(format!("/proc/{pid}/cgroup")).await.map_err(|_| PrepareError::PeerGone { pid })?;
    prepare::authenticate(&cgroup, pid, &pod_name(&publication.pod), &publication.pod.uid)?;
    let _one_at_a_time = publication.preparing.lock().await;
    let args = HelperArgs { pid, pod_uid: publication.pod.uid.clone(), pod: pod_name(&publication.pod) };
    match run_helper(&publication.settings, &args).await? {
        HelperReport::Prepared { mounted, already_mounted, absent } => {
            debug!(volume_id = %publication.volume_id, pid, ?already_mounted, ?absent, "prepare details");
            Ok(mounted)
        }
        HelperReport::Failed { message } => Err(PrepareError::Reported(message)),
    }
}

fn pod_name(pod: &PodRef) -> String {
    format!("{}/{}", pod.namespace, pod.name)
}

/// Reads one request line, bounded in size and time.
pub async fn read_request(reader: impl AsyncRead + Unpin, timeout: Duration) -> Result<ControlRequest, PrepareError> {
    let bad = |reason: String| PrepareError::BadRequest { max: MAX_REQUEST_BYTES, reason };
    let limit = u64::try_from(MAX_REQUEST_BYTES + 1).unwrap_or(u64::MAX);
    let mut line = Vec::new();
    let mut bounded = BufReader::new(reader.take(limit));
    match tokio::time::timeout(timeout, bounded.read_until(b'\n', &mut line)).await {
        Err(_) => return Err(PrepareError::RequestTimeout { waited: timeout }),
        Ok(Err(error)) => return Err(bad(error.to_string())),
        Ok(Ok(_)) => {}
    }
    if line.len() > MAX_REQUEST_BYTES {
        return Err(bad("too long".into()));
    }
    if line.iter().all(u8::is_ascii_whitespace) {
        return Err(bad("nothing was sent".into()));
    }
    serde_json::from_slice(&line).map_err(|error| bad(error.to_string()))
}

async fn run_helper(settings: &ControlSettings, args: &HelperArgs) -> Result<HelperReport, PrepareError> {
    let child = tokio::process::Command::new(&settings.helper)
        .arg(HELPER_SUBCOMMAND)
        .args(args.to_args())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        // On timeout the future is dropped: the helper dies with it, and its child with it.
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| PrepareError::HelperSpawn { helper: settings.helper.display().to_string(), source })?;
    let output = match tokio::time::timeout(settings.prepare_timeout, child.wait_with_output()).await {
        Err(_) => return Err(PrepareError::HelperTimeout { waited: settings.prepare_timeout }),
        Ok(Err(source)) => return Err(PrepareError::HelperSpawn { helper: settings.helper.display().to_string(), source }),
        Ok(Ok(output)) => output,
    };
    if !output.stderr.is_empty() {
        debug!(stderr = %prepare::tail(&output.stderr), "prepare helper output");
    }
    prepare::parse_report(&output.stdout)
        .ok_or_else(|| PrepareError::HelperCrashed { status: output.status.to_string(), stderr: prepare::tail(&output.stderr) })
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn request_from(bytes: &[u8]) -> Result<ControlRequest, PrepareError> {
        read_request(bytes, Duration::from_secs(1)).await
    }

    #[tokio::test]
    async fn a_prepare_line_is_read() {
        assert_eq!(request_from(b"{\"op\":\"prepare\"}\n").await.expect("parses"), ControlRequest::Prepare);
        assert_eq!(request_from(b"{\"op\":\"prepare\"}").await.expect("EOF ends the line too"), ControlRequest::Prepare);
        assert_eq!(request_from(b"{\"op\":\"prepare\"}\ntrailing junk").await.expect("one line only"), ControlRequest::Prepare);
    }

    #[tokio::test]
    async fn malformed_oversized_and_empty_requests_are_refused() {
        let error = request_from(b"{\"op\":\"format-the-disk\"}\n").await.expect_err("unknown op");
        assert!(error.to_string().starts_with("the request was not one JSON line of at most 1024 bytes"), "{error}");
        assert!(error.to_string().ends_with("send {\"op\":\"prepare\"} and a newline"), "{error}");
        let huge = vec![b' '; 10 * MAX_REQUEST_BYTES];
        let error = request_from(&huge).await.expect_err("too long");
        assert!(error.to_string().contains("(too long)"), "{error}");
        let error = request_from(b"").await.expect_err("nothing");
        assert!(error.to_string().contains("nothing was sent"), "{error}");
    }

    #[tokio::test]
    async fn a_silent_peer_times_out() {
        let (client, server) = tokio::io::duplex(64);
        let error = read_request(server, Duration::from_millis(50)).await.expect_err("timeout");
        assert!(matches!(error, PrepareError::RequestTimeout { .. }), "{error}");
        drop(client);
        // A half-written line is still bounded by the same timeout.
        let (mut client, server) = tokio::io::duplex(64);
        client.write_all(b"{\"op\":").await.expect("write");
        let error = read_request(server, Duration::from_millis(50)).await.expect_err("timeout");
        assert!(matches!(error, PrepareError::RequestTimeout { .. }), "{error}");
    }

    #[tokio::test]
    async fn sockets_with_long_paths_open_close_and_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        // As deep as a real data root with a real volume id: longer than a socket address allows.
        let data = DataRoot::new(dir.path().join("var/lib/stoppablecontainer"));
        let volume_id = format!("csi-{}", "a".repeat(64));
        std::fs::create_dir_all(data.control_dir(&volume_id)).expect("control dir");
        let sockets = ControlSockets::new(data.clone(), ControlSettings::default());
        let pod = PodRef { namespace: "ns".into(), name: "dev".into(), uid: "6d1c2b7e-43a1-4e5e-9d63-0c5a3f1b2e7d".into() };
        let path = sockets.socket_path(&volume_id);
        assert!(path.as_os_str().len() > 108, "the test needs a path too long for sockaddr_un");
        sockets.open(&volume_id, &pod).expect("open");
        sockets.open(&volume_id, &pod).expect("opening twice is a no-op");
        use std::os::unix::fs::{FileTypeExt, PermissionsExt};
        let metadata = std::fs::metadata(&path).expect("socket exists");
        assert!(metadata.file_type().is_socket());
        assert_eq!(metadata.permissions().mode() & 0o777, 0o600);
        // This test process is in no pod: it is refused, with the reason.
        let dir_fd = std::fs::File::open(data.control_dir(&volume_id)).expect("open dir");
        let short = format!("/proc/self/fd/{}/{CONTROL_SOCKET_NAME}", dir_fd.as_raw_fd());
        let mut stream = UnixStream::connect(&short).await.expect("connect");
        stream.write_all(b"{\"op\":\"prepare\"}\n").await.expect("send");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.expect("answer");
        let response: ControlResponse = serde_json::from_str(answer.trim()).expect("a response line");
        let ControlResponse::Failed { message } = response else { panic!("a stranger was prepared: {answer}") };
        assert!(message.contains("is not in a container of pod ns/dev, the pod this volume was published for"), "{message}");
        sockets.close(&volume_id);
        assert!(!path.exists(), "closed sockets are removed");
        sockets.open(&volume_id, &pod).expect("reopen");
        assert!(path.exists());
        sockets.close(&volume_id);
        sockets.remove_dir(&volume_id);
        assert!(!data.control_dir(&volume_id).exists());
    }
}
