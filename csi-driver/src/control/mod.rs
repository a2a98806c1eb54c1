//! The per-publication control socket: `<data-root>/control/<volume-id>/prepare.sock`, which the
//! consumer sees as `/.sc/control/prepare.sock` through the volume.
//!
//! One exchange per connection: a [`ControlRequest`] JSON line in, a [`ControlResponse`] JSON
//! line out. Nothing the peer sends is trusted but the op: the caller is identified by the kernel
//! (`SO_PEERCRED` gives its pid in the plugin's PID namespace, the host's under hostPID), and
//! accepted only when its cgroup puts it in a container of the pod the volume was published for.
//! The preparation itself runs in a helper process ([`crate::prepare`]), because entering another
//! mount namespace is impossible for the multi-threaded plugin.
//!
//! Helpers are privileged processes charged to the plugin's cgroup, and a tenant can connect as
//! often as it likes, so they are bounded twice: per volume by a token bucket (a burst, then one
//! per interval) and per node by a semaphore. A request over either bound is answered at once,
//! without spawning anything, with a "busy" line that `sc-exec` retries (see [`BusyAnswer`]).
//! The socket is bound 0600 (mode set before `bind`, see [`crate::socket::bind`]), and the
//! control directory is bound into the volume read-only, so the pod cannot plant anything in it.

use std::collections::HashMap;
use std::io;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;
use sc_api::consts::CONTROL_SOCKET_NAME;
use sc_api::exec_config::{ControlRequest, ControlResponse};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use crate::layout::DataRoot;
use crate::prepare::{self, Fault, HELPER_SUBCOMMAND, HelperArgs, HelperReport};
use crate::sys::System;
use crate::validate::PodRef;

mod error;

pub use self::error::ControlError;

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
    /// How often one volume's consumer may have its rootfs prepared.
    pub prepare_rate: PrepareRate,
    /// Helper runs at once on the node, across every volume.
    pub max_helpers: usize,
}

impl Default for ControlSettings {
    fn default() -> Self {
        Self {
            helper: PathBuf::from("/proc/self/exe"),
            request_timeout: Duration::from_secs(5),
            prepare_timeout: Duration::from_secs(30),
            max_connections: 4,
            // A consumer asks once per container start; a restart after a crash, an `sc-exec`
            // retrying a busy answer and a rootfs the user is fixing stay far below this.
            prepare_rate: PrepareRate { burst: 16, every: Duration::from_secs(1) },
            // Each run is two short-lived processes of this binary, charged to the plugin's
            // cgroup: about 1.8 MiB each once the binary is in the page cache (measured, memory
            // cgroup max_usage of one stage), so the bound costs at most about 30 MiB.
            max_helpers: 8,
        }
    }
}

/// A token bucket's shape: `burst` runs in a row, then one more every `every`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrepareRate {
    pub burst: u32,
    pub every: Duration,
}

/// The per-volume token bucket (pure: the caller passes the time).
#[derive(Debug)]
pub struct TokenBucket {
    rate: PrepareRate,
    tokens: u32,
    /// When the last token was added (or the bucket was last full).
    refilled: Instant,
}

impl TokenBucket {
    pub fn full(rate: PrepareRate, now: Instant) -> Self {
        Self { rate, tokens: rate.burst.max(1), refilled: now }
    }

    /// Takes a token, or says how long until the next one.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let every = self.rate.every.max(Duration::from_millis(1));
        let elapsed = now.saturating_duration_since(self.refilled);
        let earned = u32::try_from(elapsed.as_nanos() / every.as_nanos()).unwrap_or(u32::MAX);
        let burst = self.rate.burst.max(1);
        if earned > 0 {
            self.tokens = self.tokens.saturating_add(earned).min(burst);
            // Keep the part of an interval already waited; a full bucket earns nothing more.
            self.refilled = if self.tokens == burst { now } else { self.refilled + every * earned };
        }
        if self.tokens == 0 {
            return Err(every.saturating_sub(now.saturating_duration_since(self.refilled)));
        }
        self.tokens -= 1;
        Ok(())
    }
}

/// The answer to a request refused for now (rate limit, node-wide bound). Deliberately not a
/// [`ControlResponse`]: `sc-exec` takes `failed` as final and ends the container, while an
/// answer it does not know is, to it, a failed exchange, which it retries after its poll
/// interval (200 ms) and shows in its progress line with this message. So every released
/// `sc-exec` waits the refusal out, and nothing of the wire format changes.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BusyAnswer {
    /// Always [`BusyAnswer::RESULT`].
    pub result: String,
    pub message: String,
}

impl BusyAnswer {
    pub const RESULT: &'static str = "busy";

    pub fn new(message: String) -> Self {
        Self { result: Self::RESULT.to_owned(), message }
    }
}

/// The live control sockets, one per published volume.
pub struct ControlSockets {
    data: DataRoot,
    settings: ControlSettings,
    /// Helper runs at once across every volume.
    helpers: Arc<Semaphore>,
    live: std::sync::Mutex<HashMap<String, JoinHandle<()>>>,
}

/// What the connections of one socket share.
struct Publication {
    volume_id: String,
    pod: PodRef,
    settings: ControlSettings,
    /// One preparation at a time: two concurrent ones could both find a destination unmounted.
    preparing: Mutex<()>,
    bucket: std::sync::Mutex<TokenBucket>,
    helpers: Arc<Semaphore>,
    /// Requests refused since the last admitted one, for one log line instead of one per request.
    refused: AtomicU32,
}

impl Publication {
    fn new(volume_id: &str, pod: &PodRef, settings: &ControlSettings, helpers: Arc<Semaphore>) -> Self {
        Self {
            volume_id: volume_id.to_owned(),
            pod: pod.clone(),
            settings: settings.clone(),
            preparing: Mutex::new(()),
            bucket: std::sync::Mutex::new(TokenBucket::full(settings.prepare_rate, Instant::now())),
            helpers,
            refused: AtomicU32::new(0),
        }
    }

    /// Admits one helper run now, or refuses it; never waits (a refused consumer asks again).
    /// The node-wide permit is taken first, so a request the node cannot serve costs the
    /// volume no token.
    fn admit(&self, now: Instant) -> Result<OwnedSemaphorePermit, ControlError> {
        let refuse = |error: ControlError| {
            self.refused.fetch_add(1, Ordering::Relaxed);
            error
        };
        let permit = Arc::clone(&self.helpers)
            .try_acquire_owned()
            .map_err(|_| refuse(ControlError::NodeBusy { limit: self.settings.max_helpers }))?;
        let taken = self.bucket.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take(now);
        taken.map_err(|retry_after| {
            refuse(ControlError::RateLimited {
                burst: self.settings.prepare_rate.burst,
                every: self.settings.prepare_rate.every,
                retry_after,
            })
        })?;
        let refused = self.refused.swap(0, Ordering::Relaxed);
        if refused > 0 {
            info!(volume_id = %self.volume_id, refused, "prepare requests were refused (rate limit or node-wide bound) before this one was admitted");
        }
        Ok(permit)
    }
}

impl ControlSockets {
    pub fn new(data: DataRoot, settings: ControlSettings) -> Self {
        let helpers = Arc::new(Semaphore::new(settings.max_helpers.max(1)));
        Self { data, settings, helpers, live: std::sync::Mutex::new(HashMap::new()) }
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
        let publication = Arc::new(Publication::new(volume_id, pod, &self.settings, Arc::clone(&self.helpers)));
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
}

/// Removes a publication's control directory, with its socket and image config file, once
/// nothing is mounted from it any more. Failures are logged: an empty directory left behind
/// costs nothing, and the next publish of the volume reuses it.
pub fn remove_control_dir(system: &dyn System, data: &DataRoot, volume_id: &str) {
    let dir = data.control_dir(volume_id);
    let socket = dir.join(CONTROL_SOCKET_NAME);
    match system.remove_file(&socket) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => {
            warn!(socket = %socket.display(), %error, "could not remove the control socket");
        }
        _ => {}
    }
    if let Err(error) = crate::published_image::remove(system, &dir) {
        warn!(dir = %dir.display(), %error, "could not remove the image config file");
    }
    match system.remove_dir(&dir) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => {
            warn!(dir = %dir.display(), %error, "could not remove the control directory");
        }
        _ => {}
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
    let encoded = match handle(peer, reader, publication).await {
        Ok(report) => {
            let elapsed_ms = crate::timing::millis(started.elapsed());
            info!(volume_id = %publication.volume_id, pod = %pod_name(&publication.pod), pid = peer, elapsed_ms, ?report, "prepared the consumer's rootfs");
            serde_json::to_vec(&ControlResponse::Prepared)
        }
        Err(problem) if problem.is_retryable() => {
            // One line per refused request would let a flooding tenant flood the log too; the
            // next admitted request logs how many were refused.
            debug!(volume_id = %publication.volume_id, pid = peer, message = %problem, "refused a prepare request for now");
            serde_json::to_vec(&BusyAnswer::new(problem.to_string()))
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
            serde_json::to_vec(&ControlResponse::Failed { message })
        }
    };
    let mut line = encoded.unwrap_or_else(|_| br#"{"result":"failed","message":"encoding the answer failed"}"#.to_vec());
    line.push(b'\n');
    let written = tokio::time::timeout(publication.settings.request_timeout, writer.write_all(&line)).await;
    if !matches!(written, Ok(Ok(()))) {
        debug!(volume_id = %publication.volume_id, pid = peer, "the peer left before the answer");
    }
}

/// Reads, authenticates and carries out one request.
async fn handle(peer: Option<i32>, reader: impl AsyncRead + Unpin, publication: &Publication) -> Result<Vec<String>, ControlError> {
    let pid = peer.ok_or(ControlError::NoPeerProcess)?;
    match read_request(reader, publication.settings.request_timeout).await? {
        ControlRequest::Prepare => {}
    }
    let cgroup = tokio::fs::read_to_string(format!("/proc/{pid}/cgroup")).await.map_err(|_| ControlError::PeerGone { pid })?;
    // Only the publication's own pod gets this far, so a stranger cannot use up its tokens.
    prepare::authenticate(&cgroup, pid, &pod_name(&publication.pod), &publication.pod.uid)?;
    prepare_for(publication, pid).await
}

/// Runs the helper for an authenticated caller, if the bounds admit it now.
async fn prepare_for(publication: &Publication, pid: i32) -> Result<Vec<String>, ControlError> {
    let _one_at_a_time = publication.preparing.lock().await;
    let _helper_permit = publication.admit(Instant::now())?;
    let args =
        HelperArgs { pid, pod_uid: publication.pod.uid.clone(), pod: pod_name(&publication.pod), parent_pid: Some(std::process::id()) };
    match run_helper(&publication.settings, &args).await? {
        HelperReport::Prepared { mounted, already_mounted, absent } => {
            debug!(volume_id = %publication.volume_id, pid, ?already_mounted, ?absent, "prepare details");
            Ok(mounted)
        }
        HelperReport::Failed { message } => Err(ControlError::Reported(message)),
    }
}

fn pod_name(pod: &PodRef) -> String {
    format!("{}/{}", pod.namespace, pod.name)
}

/// Reads one request line, bounded in size and time.
pub async fn read_request(reader: impl AsyncRead + Unpin, timeout: Duration) -> Result<ControlRequest, ControlError> {
    let bad = |reason: String| ControlError::BadRequest { max: MAX_REQUEST_BYTES, reason };
    let limit = u64::try_from(MAX_REQUEST_BYTES + 1).unwrap_or(u64::MAX);
    let mut line = Vec::new();
    let mut bounded = BufReader::new(reader.take(limit));
    match tokio::time::timeout(timeout, bounded.read_until(b'\n', &mut line)).await {
        Err(_) => return Err(ControlError::RequestTimeout { waited: timeout }),
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

async fn run_helper(settings: &ControlSettings, args: &HelperArgs) -> Result<HelperReport, ControlError> {
    let child = tokio::process::Command::new(&settings.helper)
        .arg(HELPER_SUBCOMMAND)
        .args(args.to_args())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        // On timeout the future is dropped: the helper dies with it, and its child with it.
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| ControlError::HelperSpawn { helper: settings.helper.display().to_string(), source })?;
    let output = match tokio::time::timeout(settings.prepare_timeout, child.wait_with_output()).await {
        Err(_) => return Err(ControlError::HelperTimeout { waited: settings.prepare_timeout }),
        Ok(Err(source)) => return Err(ControlError::HelperSpawn { helper: settings.helper.display().to_string(), source }),
        Ok(Ok(output)) => output,
    };
    if !output.stderr.is_empty() {
        debug!(stderr = %prepare::tail(&output.stderr), "prepare helper output");
    }
    prepare::parse_report(&output.stdout)
        .ok_or_else(|| ControlError::HelperCrashed { status: output.status.to_string(), stderr: prepare::tail(&output.stderr) })
}

#[cfg(test)]
mod tests;
