use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

async fn request_from(bytes: &[u8]) -> Result<ControlRequest, ControlError> {
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
    assert!(matches!(error, ControlError::RequestTimeout { .. }), "{error}");
    drop(client);
    // A half-written line is still bounded by the same timeout.
    let (mut client, server) = tokio::io::duplex(64);
    client.write_all(b"{\"op\":").await.expect("write");
    let error = read_request(server, Duration::from_millis(50)).await.expect_err("timeout");
    assert!(matches!(error, ControlError::RequestTimeout { .. }), "{error}");
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
    let limited = ControlError::RateLimited { burst: 16, every: Duration::from_secs(1), retry_after: Duration::from_millis(300) };
    assert!(limited.is_retryable());
    assert_eq!(
        limited.to_string(),
        "this volume's rootfs was asked to be prepared too often (at most 16 times in a row, then once every 1s); ask again in 300ms"
    );
    let busy = ControlError::NodeBusy { limit: 8 };
    assert!(busy.is_retryable());
    assert!(busy.to_string().contains("8 preparations are running on this node"), "{busy}");
    assert!(!ControlError::NoPeerProcess.is_retryable());
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
    assert!(matches!(error, ControlError::RateLimited { burst: 3, .. }), "{error}");
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
    assert!(refused.iter().all(|error| matches!(error, ControlError::NodeBusy { limit: LIMIT })), "{refused:?}");
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

#[test]
fn a_process_of_another_pod_is_the_callers_fault_not_the_nodes() {
    let error = prepare::authenticate("0::/user.slice/session-1.scope\n", 42, "ns/dev", "6d1c2b7e-43a1-4e5e-9d63-0c5a3f1b2e7d")
        .expect_err("a host process");
    let refused = ControlError::from(error);
    assert_eq!(refused.fault(), Fault::Caller);
    assert!(!refused.is_retryable());
    assert!(refused.to_string().contains("only that pod's containers may have its rootfs prepared"), "{refused}");
}
