//! The consumer's PID 1 (`sc-exec run`) and the provider's pause: signals, reaping, exit status.
//!
//! All catchable signals are blocked and read from a signalfd, so nothing is lost between
//! spawning the workload and waiting for it, and no async-signal-safety concerns arise. PID 1
//! stays outside the rootfs with the container's privileges (it maintains the symlink farm); the
//! workload is a fresh `sc-exec` process that enters the rootfs, drops privileges and execs.

use std::ffi::OsStr;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use sc_api::consts::{CONSUMER_CONTROL_SOCKET_PATH, CONSUMER_ROOTFS_PATH};
use sc_api::exec_config::ExecConfig;

use crate::cli::{BINARY_NAME, CommandLine, START_WORKLOAD_MODE};
use crate::error::{EX_OSERR, Error};
use crate::farm::SymlinkFarm;
use crate::rootfs::{PrepareAttempt, WaitFailure, WaitHost, WaitSettings, ask_node_plugin, wait_for_rootfs};
use crate::sys::{RealSystem, System};

/// How often the farm is rebuilt from scratch, for directories created after start (inotify
/// only sees the ones that existed when the watch was added).
const FARM_RESCAN_INTERVAL: Duration = Duration::from_secs(10);

/// The exit code of a process that ended with `status`, as a shell reports it.
pub fn exit_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, signal, _) => Some(128 + signal as i32),
        _ => None,
    }
}

/// Signals that are forwarded (or, for SIGCHLD, handled): everything catchable except the
/// synchronous fault signals, which only make sense for the process that caused them.
pub fn forwarded_signals() -> SigSet {
    let mut set = SigSet::empty();
    for signal in Signal::iterator() {
        if !matches!(
            signal,
            Signal::SIGKILL
                | Signal::SIGSTOP
                | Signal::SIGSEGV
                | Signal::SIGBUS
                | Signal::SIGILL
                | Signal::SIGFPE
                | Signal::SIGTRAP
                | Signal::SIGSYS
        ) {
            set.add(signal);
        }
    }
    set
}

/// Blocks `signals` and returns a signalfd that reads them.
fn signal_fd(signals: &SigSet, flags: SfdFlags) -> Result<SignalFd, Error> {
    signals.thread_block().map_err(|errno| Error::os("block signals", errno))?;
    SignalFd::with_flags(signals, flags | SfdFlags::SFD_CLOEXEC).map_err(|errno| Error::os("create a signalfd", errno))
}

/// Reaps every exited child; returns the exit code of `workload` if it was among them.
fn reap_children(workload: Option<Pid>) -> Option<i32> {
    let mut workload_exit = None;
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return workload_exit,
            Ok(status) => {
                if status.pid().is_some() && status.pid() == workload {
                    workload_exit = exit_code(status).or(workload_exit);
                }
            }
        }
    }
}

fn stop_signal_number(signal: u32) -> Option<i32> {
    let signal = i32::try_from(signal).ok()?;
    let stop = [Signal::SIGTERM, Signal::SIGINT, Signal::SIGQUIT, Signal::SIGHUP];
    stop.iter().any(|candidate| *candidate as i32 == signal).then_some(signal)
}

struct RealWaitHost<'a> {
    system: &'a RealSystem,
    signals: &'a SignalFd,
}

impl WaitHost for RealWaitHost<'_> {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn sleep(&mut self, duration: Duration) {
        std::thread::sleep(duration);
    }
    fn is_mount_point(&self, path: &Path) -> bool {
        self.system.is_mount_point(path)
    }
    fn ask_node_plugin(&mut self, socket: &Path, timeout: Duration) -> PrepareAttempt {
        ask_node_plugin(socket, timeout)
    }
    fn stop_signal(&mut self) -> Option<i32> {
        // Reap strays and drain everything pending; only a stop request matters before start.
        while let Ok(Some(info)) = self.signals.read_signal() {
            reap_children(None);
            if let Some(signal) = stop_signal_number(info.ssi_signo) {
                return Some(signal);
            }
        }
        None
    }
    fn progress(&mut self, message: &str) {
        eprintln!("{message}");
    }
}

/// `sc-exec run`: runs `command` (the workload's argv, already decided) and returns the process
/// exit code. `workload_path` is the `PATH` the workload gets, whose directories the farm serves.
pub fn run_as_init(config: &ExecConfig, command: &CommandLine, workload_path: Option<&OsStr>) -> Result<i32, Error> {
    let signals = signal_fd(&forwarded_signals(), SfdFlags::SFD_NONBLOCK)?;
    // When PID 1 of the pod is someone else (shareProcessNamespace), orphans still come to us.
    if let Err(errno) = nix::sys::prctl::set_child_subreaper(true) {
        eprintln!("sc-exec: warning: cannot become a child subreaper ({errno}); orphans go to PID 1");
    }
    let system = RealSystem;
    let settings = WaitSettings {
        rootfs: PathBuf::from(CONSUMER_ROOTFS_PATH),
        control_socket: PathBuf::from(CONSUMER_CONTROL_SOCKET_PATH),
        timeout: Duration::from_secs(u64::from(config.rootfs_wait_seconds)),
        poll_interval: Duration::from_millis(200),
        progress_interval: Duration::from_secs(5),
    };
    match wait_for_rootfs(&mut RealWaitHost { system: &system, signals: &signals }, &settings) {
        Ok(()) => {}
        Err(WaitFailure::Failed(error)) => return Err(error),
        Err(WaitFailure::Stopped(signal)) => {
            eprintln!("sc-exec: stopped by signal {signal} while waiting for the rootfs");
            return Ok(128 + signal);
        }
    }

    let farm = SymlinkFarm::for_workload(PathBuf::from("/"), settings.rootfs.clone(), workload_path);
    let mut watcher = FarmWatcher::new(farm);
    watcher.sync();

    // A fresh sc-exec enters the rootfs and becomes the workload, in its own process group so
    // that a terminal's job control and Ctrl-C reach the workload, not PID 1.
    let workload = Command::new("/proc/self/exe")
        .arg0(BINARY_NAME)
        .arg(START_WORKLOAD_MODE)
        .arg("--")
        .arg(&command.program)
        .args(&command.args)
        .process_group(0)
        .spawn()
        .map_err(|error| Error::io("start the workload process (/proc/self/exe)", error))?;
    let workload = Pid::from_raw(i32::try_from(workload.id()).map_err(|_| Error::os("read the workload pid", Errno::EOVERFLOW))?);
    supervise(workload, &signals, &mut watcher)
}

fn supervise(workload: Pid, signals: &SignalFd, watcher: &mut FarmWatcher) -> Result<i32, Error> {
    let mut next_rescan = Instant::now() + FARM_RESCAN_INTERVAL;
    loop {
        let timeout = next_rescan.saturating_duration_since(Instant::now());
        let timeout = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
        let (signal_ready, farm_ready) = {
            let mut descriptors = vec![PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
            if let Some(inotify) = &watcher.inotify {
                descriptors.push(PollFd::new(inotify.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut descriptors, timeout) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(errno) => return Err(Error::os("poll for signals", errno)),
            }
            let ready = |descriptor: &PollFd| descriptor.revents().is_some_and(|events| !events.is_empty());
            (ready(&descriptors[0]), descriptors.get(1).is_some_and(ready))
        };
        if signal_ready {
            while let Ok(Some(info)) = signals.read_signal() {
                let number = i32::try_from(info.ssi_signo).unwrap_or_default();
                if number == Signal::SIGCHLD as i32 {
                    if let Some(code) = reap_children(Some(workload)) {
                        return Ok(code);
                    }
                } else if let Ok(signal) = Signal::try_from(number) {
                    // ESRCH: the workload just exited; its SIGCHLD is next.
                    let _ = kill(workload, signal);
                }
            }
        }
        if farm_ready {
            watcher.drain_events();
            watcher.sync();
        }
        if Instant::now() >= next_rescan {
            watcher.sync();
            next_rescan = Instant::now() + FARM_RESCAN_INTERVAL;
        }
    }
}

/// The farm plus an inotify watch on the rootfs's program directories.
struct FarmWatcher {
    farm: SymlinkFarm,
    inotify: Option<Inotify>,
    reported: Vec<String>,
}

impl FarmWatcher {
    fn new(farm: SymlinkFarm) -> Self {
        let inotify = match Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC) {
            Ok(inotify) => Some(inotify),
            Err(errno) => {
                eprintln!(
                    "sc-exec: warning: inotify unavailable ({errno}); new programs get `kubectl exec` \
                     links within {}s",
                    FARM_RESCAN_INTERVAL.as_secs()
                );
                None
            }
        };
        FarmWatcher { farm, inotify, reported: Vec::new() }
    }

    fn sync(&mut self) {
        let report = self.farm.sync();
        for problem in report.problems {
            // Each problem once: the rescan would otherwise repeat it every interval.
            if !self.reported.contains(&problem) {
                eprintln!("sc-exec: warning: no `kubectl exec` links for {problem}");
                self.reported.push(problem);
            }
        }
        if let Some(inotify) = &self.inotify {
            let events = AddWatchFlags::IN_CREATE
                | AddWatchFlags::IN_DELETE
                | AddWatchFlags::IN_MOVED_TO
                | AddWatchFlags::IN_MOVED_FROM
                | AddWatchFlags::IN_ATTRIB
                | AddWatchFlags::IN_ONLYDIR
                | AddWatchFlags::IN_DONT_FOLLOW;
            for directory in &report.watched {
                // Re-adding an existing watch is a no-op; a vanished directory is seen next scan.
                let _ = inotify.add_watch(directory, events);
            }
        }
    }

    fn drain_events(&self) {
        if let Some(inotify) = &self.inotify {
            while inotify.read_events().is_ok_and(|events| !events.is_empty()) {}
        }
    }
}

/// `sc-exec pause`: blocks until SIGTERM or SIGINT, reaping any child meanwhile; exits 0.
pub fn pause() -> Result<i32, Error> {
    let signals = signal_fd(&forwarded_signals(), SfdFlags::empty())?;
    loop {
        match signals.read_signal() {
            Ok(Some(info)) => {
                let number = i32::try_from(info.ssi_signo).unwrap_or_default();
                if number == Signal::SIGTERM as i32 || number == Signal::SIGINT as i32 {
                    return Ok(0);
                }
                if number == Signal::SIGCHLD as i32 {
                    reap_children(None);
                }
            }
            Ok(None) | Err(Errno::EINTR) => {}
            Err(errno) => {
                eprintln!("sc-exec: reading signals failed: {errno}");
                return Ok(EX_OSERR);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_shell_convention() {
        let pid = Pid::from_raw(42);
        assert_eq!(exit_code(WaitStatus::Exited(pid, 0)), Some(0));
        assert_eq!(exit_code(WaitStatus::Exited(pid, 3)), Some(3));
        assert_eq!(exit_code(WaitStatus::Signaled(pid, Signal::SIGTERM, false)), Some(143));
        assert_eq!(exit_code(WaitStatus::Signaled(pid, Signal::SIGKILL, true)), Some(137));
        assert_eq!(exit_code(WaitStatus::Stopped(pid, Signal::SIGSTOP)), None);
        assert_eq!(exit_code(WaitStatus::StillAlive), None);
    }

    #[test]
    fn every_catchable_signal_is_forwarded_but_faults_and_uncatchables_are_not() {
        let set = forwarded_signals();
        for signal in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP, Signal::SIGUSR1, Signal::SIGWINCH, Signal::SIGCHLD, Signal::SIGTSTP]
        {
            assert!(set.contains(signal), "{signal}");
        }
        for signal in [Signal::SIGKILL, Signal::SIGSTOP, Signal::SIGSEGV] {
            assert!(!set.contains(signal), "{signal}");
        }
    }

    #[test]
    fn only_termination_requests_stop_the_rootfs_wait() {
        assert_eq!(stop_signal_number(15), Some(15));
        assert_eq!(stop_signal_number(2), Some(2));
        assert_eq!(stop_signal_number(10), None);
        assert_eq!(stop_signal_number(17), None);
    }
}
