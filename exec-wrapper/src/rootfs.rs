//! Waiting, bounded, until the rootfs is mounted and the node plugin has prepared it (`/proc`,
//! `/dev`, ... inside it) — asked over the control socket the plugin publishes in the volume.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sc_api::exec_config::{ControlRequest, ControlResponse};

use crate::error::Error;

/// One request/response exchange on a connected control socket: a JSON line each way.
pub fn exchange(stream: &mut (impl Read + Write)) -> std::io::Result<ControlResponse> {
    let mut request = serde_json::to_vec(&ControlRequest::Prepare).map_err(std::io::Error::other)?;
    request.push(b'\n');
    stream.write_all(&request)?;
    stream.flush()?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    if line.trim().is_empty() {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the node plugin closed the control socket without answering"));
    }
    serde_json::from_str(line.trim()).map_err(|error| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, format!("unexpected answer {:?} from the node plugin ({error})", line.trim()))
    })
}

/// The result of one attempt to ask the node plugin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PrepareAttempt {
    /// No one listens yet (socket missing or refusing): the plugin has not published it.
    NotListening(String),
    /// Connected, but the exchange failed (timeout, garbage): worth retrying.
    ExchangeFailed(String),
    Answered(ControlResponse),
}

/// Connects to the control socket and asks once.
pub fn ask_node_plugin(socket: &Path, timeout: Duration) -> PrepareAttempt {
    let mut stream = match UnixStream::connect(socket) {
        Ok(stream) => stream,
        Err(error) => {
            return PrepareAttempt::NotListening(format!("{}: {error}", socket.display()));
        }
    };
    let timeout = Some(timeout.max(Duration::from_millis(100)));
    if let Err(error) = stream.set_read_timeout(timeout).and_then(|()| stream.set_write_timeout(timeout)) {
        return PrepareAttempt::ExchangeFailed(error.to_string());
    }
    match exchange(&mut stream) {
        Ok(response) => PrepareAttempt::Answered(response),
        Err(error) => PrepareAttempt::ExchangeFailed(format!("{}: {error}", socket.display())),
    }
}

/// What the wait needs from the outside world.
pub trait WaitHost {
    fn now(&self) -> Instant;
    fn sleep(&mut self, duration: Duration);
    fn is_mount_point(&self, path: &Path) -> bool;
    fn ask_node_plugin(&mut self, socket: &Path, timeout: Duration) -> PrepareAttempt;
    /// A signal number that asks us to stop (SIGTERM, SIGINT, ...) received while waiting.
    fn stop_signal(&mut self) -> Option<i32>;
    fn progress(&mut self, message: &str);
}

#[derive(Clone, Debug)]
pub struct WaitSettings {
    pub rootfs: PathBuf,
    pub control_socket: PathBuf,
    pub timeout: Duration,
    pub poll_interval: Duration,
    pub progress_interval: Duration,
}

/// How the wait ended other than with a ready rootfs.
#[derive(Debug)]
pub enum WaitFailure {
    Failed(Error),
    /// Stopped by this signal number before the rootfs was ready.
    Stopped(i32),
}

/// Waits until the rootfs is a mount point and the node plugin answers `Prepared`.
pub fn wait_for_rootfs(host: &mut impl WaitHost, settings: &WaitSettings) -> Result<(), WaitFailure> {
    let started = host.now();
    let mut last_progress = started;
    let mut mounted = false;
    loop {
        if let Some(signal) = host.stop_signal() {
            return Err(WaitFailure::Stopped(signal));
        }
        let elapsed = host.now().duration_since(started);
        let remaining = settings.timeout.saturating_sub(elapsed);
        let waiting_for = if !mounted && !host.is_mount_point(&settings.rootfs) {
            format!("{} is not mounted yet", settings.rootfs.display())
        } else {
            mounted = true;
            match host.ask_node_plugin(&settings.control_socket, remaining) {
                PrepareAttempt::Answered(ControlResponse::Prepared) => return Ok(()),
                PrepareAttempt::Answered(ControlResponse::Failed { message }) => {
                    return Err(WaitFailure::Failed(Error::PrepareFailed { message }));
                }
                PrepareAttempt::NotListening(detail) => {
                    format!("the node plugin's control socket does not answer yet ({detail})")
                }
                PrepareAttempt::ExchangeFailed(detail) => {
                    format!("asking the node plugin to prepare it failed ({detail})")
                }
            }
        };
        let elapsed = host.now().duration_since(started);
        if elapsed >= settings.timeout {
            return Err(WaitFailure::Failed(Error::RootfsNotReady { waited_seconds: elapsed.as_secs(), what: waiting_for }));
        }
        if host.now().duration_since(last_progress) >= settings.progress_interval {
            last_progress = host.now();
            host.progress(&format!(
                "sc-exec: waiting for the rootfs ({}s of {}s): {waiting_for}",
                elapsed.as_secs(),
                settings.timeout.as_secs()
            ));
        }
        host.sleep(settings.poll_interval.min(settings.timeout - elapsed));
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    struct Duplex {
        input: Cursor<Vec<u8>>,
        output: Vec<u8>,
    }
    impl Read for Duplex {
        fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
            self.input.read(buffer)
        }
    }
    impl Write for Duplex {
        fn write(&mut self, buffer: &[u8]) -> std::io::Result<usize> {
            self.output.write(buffer)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn duplex(answer: &str) -> Duplex {
        Duplex { input: Cursor::new(answer.as_bytes().to_vec()), output: Vec::new() }
    }

    #[test]
    fn the_exchange_sends_one_line_and_parses_the_answer() {
        let mut stream = duplex("{\"result\":\"prepared\"}\n");
        assert_eq!(exchange(&mut stream).expect("answer"), ControlResponse::Prepared);
        assert_eq!(stream.output, b"{\"op\":\"prepare\"}\n");
        let mut stream = duplex("{\"result\":\"failed\",\"message\":\"not your rootfs\"}\n");
        assert_eq!(exchange(&mut stream).expect("answer"), ControlResponse::Failed { message: "not your rootfs".into() });
    }

    #[test]
    fn an_empty_or_garbled_answer_is_an_error() {
        let closed = exchange(&mut duplex("")).expect_err("eof");
        assert!(closed.to_string().contains("without answering"), "{closed}");
        let garbage = exchange(&mut duplex("hello\n")).expect_err("garbage");
        assert!(garbage.to_string().contains("unexpected answer \"hello\""), "{garbage}");
    }

    struct FakeHost {
        started: Instant,
        elapsed: Duration,
        mounted_after: Duration,
        answers: Vec<PrepareAttempt>,
        stop_at: Option<(Duration, i32)>,
        messages: Vec<String>,
        asked: usize,
    }

    impl FakeHost {
        fn new(mounted_after_secs: u64, answers: Vec<PrepareAttempt>) -> Self {
            FakeHost {
                started: Instant::now(),
                elapsed: Duration::ZERO,
                mounted_after: Duration::from_secs(mounted_after_secs),
                answers,
                stop_at: None,
                messages: Vec::new(),
                asked: 0,
            }
        }
    }

    impl WaitHost for FakeHost {
        fn now(&self) -> Instant {
            self.started + self.elapsed
        }
        fn sleep(&mut self, duration: Duration) {
            self.elapsed += duration;
        }
        fn is_mount_point(&self, _path: &Path) -> bool {
            self.elapsed >= self.mounted_after
        }
        fn ask_node_plugin(&mut self, _socket: &Path, _timeout: Duration) -> PrepareAttempt {
            self.asked += 1;
            if self.answers.len() > 1 { self.answers.remove(0) } else { self.answers[0].clone() }
        }
        fn stop_signal(&mut self) -> Option<i32> {
            self.stop_at.and_then(|(at, signal)| (self.elapsed >= at).then_some(signal))
        }
        fn progress(&mut self, message: &str) {
            self.messages.push(message.to_string());
        }
    }

    fn settings(timeout_secs: u64) -> WaitSettings {
        WaitSettings {
            rootfs: "/.sc/rootfs".into(),
            control_socket: "/.sc/control/prepare.sock".into(),
            timeout: Duration::from_secs(timeout_secs),
            poll_interval: Duration::from_millis(500),
            progress_interval: Duration::from_secs(5),
        }
    }

    fn absent() -> PrepareAttempt {
        PrepareAttempt::NotListening("No such file or directory".into())
    }

    #[test]
    fn waits_for_the_mount_then_retries_the_socket_until_prepared() {
        let mut host = FakeHost::new(
            3,
            vec![
                absent(),
                absent(),
                PrepareAttempt::ExchangeFailed("timed out".into()),
                PrepareAttempt::Answered(ControlResponse::Prepared),
            ],
        );
        wait_for_rootfs(&mut host, &settings(60)).expect("ready");
        assert_eq!(host.asked, 4);
        assert_eq!(host.elapsed, Duration::from_millis(4500));
        assert!(host.messages.is_empty(), "{:?}", host.messages);
    }

    #[test]
    fn a_rootfs_that_never_mounts_fails_after_the_timeout_with_progress_on_the_way() {
        let mut host = FakeHost::new(1000, vec![absent()]);
        let Err(WaitFailure::Failed(error)) = wait_for_rootfs(&mut host, &settings(12)) else {
            panic!("expected a failure");
        };
        assert_eq!(error.exit_code(), 69);
        assert!(error.to_string().contains("not ready after 12s"), "{error}");
        assert!(error.to_string().contains("/.sc/rootfs is not mounted yet"), "{error}");
        assert_eq!(host.asked, 0);
        assert_eq!(host.messages.len(), 2, "{:?}", host.messages);
        assert!(host.messages[0].contains("(5s of 12s)"), "{:?}", host.messages);
    }

    #[test]
    fn an_absent_socket_fails_after_the_timeout_naming_it() {
        let mut host = FakeHost::new(0, vec![absent()]);
        let Err(WaitFailure::Failed(error)) = wait_for_rootfs(&mut host, &settings(2)) else {
            panic!("expected a failure");
        };
        assert!(error.to_string().contains("control socket does not answer"), "{error}");
    }

    #[test]
    fn a_refusal_fails_at_once_with_the_plugins_message() {
        let mut host =
            FakeHost::new(0, vec![PrepareAttempt::Answered(ControlResponse::Failed { message: "pod is not the consumer".into() })]);
        let Err(WaitFailure::Failed(error)) = wait_for_rootfs(&mut host, &settings(60)) else {
            panic!("expected a failure");
        };
        assert_eq!(error.exit_code(), 69);
        assert!(error.to_string().contains("pod is not the consumer"), "{error}");
        assert_eq!(host.elapsed, Duration::ZERO);
    }

    #[test]
    fn a_stop_signal_ends_the_wait() {
        let mut host = FakeHost::new(1000, vec![absent()]);
        host.stop_at = Some((Duration::from_secs(2), 15));
        assert!(matches!(wait_for_rootfs(&mut host, &settings(60)), Err(WaitFailure::Stopped(15))));
    }
}
