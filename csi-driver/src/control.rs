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
use crate::prepare::{self, Fault, HELPER_SUBCOMMAND, HelperArgs, HelperReport, PrepareError};
use crate::sys::System;
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
    fn admit(&self, now: Instant) -> Result<OwnedSemaphorePermit, PrepareError> {
        let refuse = |error: PrepareError| {
            self.refused.fetch_add(1, Ordering::Relaxed);
            error
        };
        let permit = Arc::clone(&self.helpers)
            .try_acquire_owned()
            .map_err(|_| refuse(PrepareError::NodeBusy { limit: self.settings.max_helpers }))?;
        let taken = self.bucket.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take(now);
        taken.map_err(|retry_after| {
            refuse(PrepareError::RateLimited {
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
async fn handle(peer: Option<i32>, reader: impl AsyncRead + Unpin, publication: &Publication) -> Result<Vec<String>, PrepareError> {
    let pid = peer.ok_or(PrepareError::NoPeerProcess)?;
    match read_request(reader, publication.settings.request_timeout).await? {
        ControlRequest::Prepare => {}
    }
    let cgroup = tokio::fs::read_to_string(format!("/proc/{pid}/cgroup")).await.map_err(|_| PrepareError::PeerGone { pid })?;
    // Only the publication's own pod gets this far, so a stranger cannot use up its tokens.
    prepare::authenticate(&cgroup, pid, &pod_name(&publication.pod), &publication.pod.uid)?;
    prepare_for(publication, pid).await
}

/// Runs the helper for an authenticated caller, if the bounds admit it now.
async fn prepare_for(publication: &Publication, pid: i32) -> Result<Vec<String>, PrepareError> {
    let _one_at_a_time = publication.preparing.lock().await;
    let _helper_permit = publication.admit(Instant::now())?;
    let args =
        HelperArgs { pid, pod_uid: publication.pod.uid.clone(), pod: pod_name(&publication.pod), parent_pid: Some(std::process::id()) };
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

    #[test]
    fn a_bucket_gives_a_burst_then_one_token_per_interval() {
        let start = Instant::now();
        let rate = PrepareRate { burst: 3, every: Duration::from_secs(1) };
        let mut bucket = TokenBucket::full(rate, start);
        for _ in 0..3 {
            bucket.take(start).expect("the burst");
        }
        assert_eq!(bucket.take(start), Err(Duration::from_secs(1)), "empty: the next token in a second");
        let later = start + Duration::from_millis(400);
        assert_eq!(bucket.take(later), Err(Duration::from_millis(600)), "the wait already done counts");
        let second = start + Duration::from_millis(1000);
        bucket.take(second).expect("one token after one interval");
        assert!(bucket.take(second).is_err(), "and only one");
        // A long quiet spell refills to the burst, never beyond it.
        let much_later = second + Duration::from_secs(3600);
        for _ in 0..3 {
            bucket.take(much_later).expect("a full burst again");
        }
        assert!(bucket.take(much_later).is_err());
    }

    #[test]
    fn a_busy_answer_is_retried_by_sc_exec_not_taken_as_final() {
        let line = serde_json::to_string(&BusyAnswer::new("slow down".into())).expect("serializes");
        assert_eq!(line, r#"{"result":"busy","message":"slow down"}"#);
        // sc-exec reads the answer as a ControlResponse: a "failed" would end the container,
        // an answer that is neither is an exchange failure, which it retries.
        assert!(serde_json::from_str::<ControlResponse>(&line).is_err(), "not a ControlResponse: {line}");
        let limited = PrepareError::RateLimited { burst: 16, every: Duration::from_secs(1), retry_after: Duration::from_millis(300) };
        assert!(limited.is_retryable());
        assert_eq!(
            limited.to_string(),
            "this volume's rootfs was asked to be prepared too often (at most 16 times in a row, then once every 1s); ask again in 300ms"
        );
        let busy = PrepareError::NodeBusy { limit: 8 };
        assert!(busy.is_retryable());
        assert!(busy.to_string().contains("8 preparations are running on this node"), "{busy}");
        assert!(!PrepareError::NoPeerProcess.is_retryable());
    }

    /// A stand-in helper: appends a line to `spawned` each time it runs, waits until `release`
    /// exists (when there is one to wait for), then reports success as the real one does.
    struct CountingHelper {
        dir: tempfile::TempDir,
    }

    impl CountingHelper {
        fn new(waits: bool) -> Self {
            let dir = tempfile::tempdir().expect("tempdir");
            let (spawned, release) = (dir.path().join("spawned"), dir.path().join("release"));
            let wait = if waits { format!("while [ ! -e '{}' ]; do sleep 0.01; done\n", release.display()) } else { String::new() };
            let script = format!(
                "#!/bin/sh\necho \"$*\" >> '{}'\n{wait}echo '{{\"outcome\":\"prepared\",\"mounted\":[],\"alreadyMounted\":[],\"absent\":[]}}'\n",
                spawned.display()
            );
            let path = dir.path().join("helper");
            std::fs::write(&path, script).expect("write helper");
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod helper");
            Self { dir }
        }
        fn path(&self) -> PathBuf {
            self.dir.path().join("helper")
        }
        fn spawned(&self) -> usize {
            std::fs::read_to_string(self.dir.path().join("spawned")).map(|text| text.lines().count()).unwrap_or(0)
        }
        fn release(&self) {
            std::fs::write(self.dir.path().join("release"), b"").expect("release");
        }
    }

    fn pod() -> PodRef {
        PodRef { namespace: "ns".into(), name: "dev".into(), uid: "6d1c2b7e-43a1-4e5e-9d63-0c5a3f1b2e7d".into() }
    }

    fn limited_settings(helper: &CountingHelper, burst: u32, max_helpers: usize) -> ControlSettings {
        ControlSettings {
            helper: helper.path(),
            prepare_rate: PrepareRate { burst, every: Duration::from_secs(3600) },
            max_helpers,
            ..ControlSettings::default()
        }
    }

    #[tokio::test]
    async fn the_request_after_the_burst_is_refused_without_spawning_a_helper() {
        let helper = CountingHelper::new(false);
        let settings = limited_settings(&helper, 3, 8);
        let publication = Publication::new("csi-1", &pod(), &settings, Arc::new(Semaphore::new(8)));
        for round in 1..=3 {
            prepare_for(&publication, 42).await.expect("within the burst");
            assert_eq!(helper.spawned(), round);
        }
        let error = prepare_for(&publication, 42).await.expect_err("the 4th within the window");
        assert!(matches!(error, PrepareError::RateLimited { burst: 3, .. }), "{error}");
        assert_eq!(helper.spawned(), 3, "nothing was spawned for it");
        assert_eq!(publication.refused.load(Ordering::Relaxed), 1);
        // Another volume has a bucket of its own.
        let other = Publication::new("csi-2", &pod(), &settings, Arc::clone(&publication.helpers));
        prepare_for(&other, 43).await.expect("another volume");
        assert_eq!(helper.spawned(), 4);
        // The helper was told who its parent is, so that it can tell when it outlived it.
        let arguments = std::fs::read_to_string(helper.dir.path().join("spawned")).expect("read");
        assert!(arguments.lines().all(|line| line.ends_with(&format!("--parent-pid {}", std::process::id()))), "{arguments}");
    }

    #[tokio::test]
    async fn the_node_wide_bound_holds_across_many_volumes() {
        const LIMIT: usize = 3;
        const VOLUMES: usize = 12;
        let helper = CountingHelper::new(true);
        let settings = limited_settings(&helper, 16, LIMIT);
        let helpers = Arc::new(Semaphore::new(LIMIT));
        let publications: Vec<Publication> =
            (0..VOLUMES).map(|index| Publication::new(&format!("csi-{index}"), &pod(), &settings, Arc::clone(&helpers))).collect();
        let requests = futures::future::join_all(publications.iter().map(|publication| prepare_for(publication, 42)));
        let check = async {
            // Every request has been decided once the admitted ones are all running.
            let deadline = Instant::now() + Duration::from_secs(10);
            while helper.spawned() < LIMIT && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            let running = helper.spawned();
            helper.release();
            running
        };
        let (results, running) = tokio::join!(requests, check);
        assert_eq!(running, LIMIT, "at most {LIMIT} helpers at once");
        assert_eq!(helper.spawned(), LIMIT, "the refused requests spawned nothing");
        let refused: Vec<_> = results.iter().filter_map(|result| result.as_ref().err()).collect();
        assert_eq!(results.iter().filter(|result| result.is_ok()).count(), LIMIT);
        assert_eq!(refused.len(), VOLUMES - LIMIT);
        assert!(refused.iter().all(|error| matches!(error, PrepareError::NodeBusy { limit: LIMIT })), "{refused:?}");
        // A refusal by the node-wide bound cost the volume no token; with the helpers done, the
        // next request is admitted.
        assert_eq!(helpers.available_permits(), LIMIT);
        let refused_volume = publications.iter().zip(&results).find(|(_, result)| result.is_err()).map(|(publication, _)| publication);
        prepare_for(refused_volume.expect("a refused volume"), 42).await.expect("admitted now");
        assert_eq!(helper.spawned(), LIMIT + 1);
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
        remove_control_dir(&crate::sys::RealSystem::default(), &data, &volume_id);
        assert!(!data.control_dir(&volume_id).exists());
    }
}
