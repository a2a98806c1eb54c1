//! The helper stages' processes: each hardens itself, pins the consumer's process and checks it
//! again, enters one of its namespaces, and prints one report line (see the module comment of
//! `crate::prepare` for why there are two).

use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::process::{Command, ExitCode, Stdio};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, open, openat2};
use nix::sched::{CloneFlags, setns};
use nix::sys::stat::{Mode, fstat};
use nix::sys::statfs::{PROC_SUPER_MAGIC, fstatfs};

use super::error::HelperError;
use super::fd_mounts::{filesystem_name, prepare_rootfs};
use super::peer::PinnedProcess;
use super::protocol::{HelperArgs, HelperReport, HelperStage, parse_report, report_line, tail};

/// Runs a helper stage and prints its report. It must run in a fresh single-threaded process
/// (`setns` into a mount namespace refuses a threaded one): `main` calls it before anything else.
pub fn run_stage(stage: &HelperStage) -> ExitCode {
    let report = match stage {
        HelperStage::EnterPidNamespace(args) => enter_pid_namespace(args),
        HelperStage::PrepareInNamespaces(args) => prepare_in_namespaces(args),
    };
    // Not println!: it panics when the plugin is gone (EPIPE), and then there is nobody to tell.
    match writeln!(io::stdout(), "{}", report_line(&report)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}

fn failed(error: HelperError) -> HelperReport {
    HelperReport::Failed { message: error.to_string() }
}

/// Makes a helper stage non-dumpable and killed with its parent, before it touches anything of
/// the caller's.
///
/// Non-dumpable (as runc makes `runc init`): stage 2 holds every capability while it is a member
/// of the tenant's PID namespace, so nothing there may ptrace it, read its memory through
/// `/proc` or get a core of it. The parent-death signal ends a stage whose parent (the plugin's
/// timeout killed stage 1, or the plugin died) is gone, so no half-done preparation goes on
/// alone. Linux sends it when the parent *thread* ends: the plugin spawns helpers from its async
/// runtime's worker threads, which live as long as the plugin, and stage 1 from its only thread.
pub fn harden_helper(parent_pid: Option<u32>) -> Result<(), HelperError> {
    let hardening = |action: &'static str| move |errno: Errno| HelperError::Hardening { action, source: errno.into() };
    nix::sys::prctl::set_dumpable(false).map_err(hardening("make itself non-dumpable"))?;
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).map_err(hardening("ask for a parent-death signal"))?;
    // A parent that died before the signal was asked for never sends it.
    if let Some(parent) = parent_pid
        && u32::try_from(nix::unistd::getppid().as_raw()).ok() != Some(parent)
    {
        return Err(HelperError::ParentGone);
    }
    Ok(())
}

/// Stage 1: enter the caller's PID namespace and run stage 2 in it.
fn enter_pid_namespace(args: &HelperArgs) -> HelperReport {
    let run = || -> Result<HelperReport, HelperError> {
        harden_helper(args.parent_pid)?;
        let process = PinnedProcess::open(args.pid, &args.pod, &args.pod_uid)?;
        let namespace = process.open_entry("ns/pid", OFlag::O_RDONLY, "opening the PID namespace")?;
        setns(&namespace, CloneFlags::CLONE_NEWPID).map_err(|errno| HelperError::Namespace {
            action: "entering the PID namespace",
            pid: args.pid,
            source: errno.into(),
        })?;
        let helper = "/proc/self/exe";
        let stage_2 = HelperStage::PrepareInNamespaces(HelperArgs { parent_pid: None, ..args.clone() });
        let output = Command::new(helper)
            .args(stage_2.to_args())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .map_err(|source| HelperError::StageSpawn { helper: helper.into(), source })?;
        parse_report(&output.stdout)
            .ok_or_else(|| HelperError::StageCrashed { status: output.status.to_string(), stderr: tail(&output.stderr) })
    };
    run().unwrap_or_else(failed)
}

/// Stage 2: enter the caller's mount namespace and root, and mount.
fn prepare_in_namespaces(args: &HelperArgs) -> HelperReport {
    let run = || -> Result<HelperReport, HelperError> {
        // If stage 1 is killed (the plugin's timeout), so are we.
        harden_helper(None)?;
        let process = PinnedProcess::open(args.pid, &args.pod, &args.pod_uid)?;
        check_same_pid_namespace(&process)?;
        let mount_namespace = process.open_entry("ns/mnt", OFlag::O_RDONLY, "opening the mount namespace")?;
        let root = process.open_entry("root", OFlag::O_PATH | OFlag::O_DIRECTORY, "opening the root directory")?;
        let enter = |action: &'static str, result: nix::Result<()>| {
            result.map_err(|errno| HelperError::Namespace { action, pid: args.pid, source: errno.into() })
        };
        enter("entering the mount namespace", setns(&mount_namespace, CloneFlags::CLONE_NEWNS))?;
        enter("entering the root directory", nix::unistd::fchdir(&root))?;
        enter("entering the root directory", nix::unistd::chroot("."))?;
        enter("entering the root directory", nix::unistd::chdir("/"))?;
        check_proc_is_ours()?;
        let container_root = open("/", OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|errno| HelperError::Namespace { action: "opening the root directory", pid: args.pid, source: errno.into() })?;
        prepare_rootfs(container_root)
    };
    run().unwrap_or_else(failed)
}

fn check_same_pid_namespace(process: &PinnedProcess) -> Result<(), HelperError> {
    let theirs = process.open_entry("ns/pid", OFlag::O_RDONLY, "opening the PID namespace")?;
    let ours = open("/proc/self/ns/pid", OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty());
    let inode = |fd: &OwnedFd| fstat(fd).map(|stat| (stat.st_dev, stat.st_ino)).ok();
    match ours {
        Ok(ours) if inode(&ours).is_some() && inode(&ours) == inode(&theirs) => Ok(()),
        _ => Err(HelperError::PeerChanged { pid: process.pid }),
    }
}

/// The mounts are addressed through `/proc/self/fd/<fd>` of the container's `/proc`: check that
/// it is a proc filesystem that knows us (we are in its PID namespace), so those magic links are
/// the kernel's and not files of the container.
fn check_proc_is_ours() -> Result<(), HelperError> {
    let unexpected = |found: String| HelperError::UnexpectedContainer {
        path: "/proc".into(),
        found,
        expected: "the proc filesystem of its PID namespace",
    };
    let how = OpenHow::new().flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC).resolve(ResolveFlag::RESOLVE_NO_SYMLINKS);
    let proc = openat2(nix::fcntl::AT_FDCWD, "/proc", how).map_err(|errno| unexpected(format!("unusable ({errno})")))?;
    let kind = fstatfs(&proc).map_err(|errno| unexpected(format!("unusable ({errno})")))?.filesystem_type();
    if kind != PROC_SUPER_MAGIC {
        return Err(unexpected(filesystem_name(kind)));
    }
    let me = nix::fcntl::readlinkat(&proc, "self").map_err(|errno| unexpected(format!("without /proc/self ({errno})")))?;
    if me.to_string_lossy() != nix::unistd::getpid().to_string() {
        return Err(unexpected(format!("a proc filesystem of another PID namespace (/proc/self is {me:?})")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Set when this test binary runs as the child of [`a_hardened_helper_is_non_dumpable_and_dies_with_its_parent`].
    const HARDENING_CHILD_ENV: &str = "SC_TEST_HARDENING_CHILD";

    #[test]
    fn hardening_child() {
        // Only meaningful as the child the test below starts: hardening the test harness itself
        // would change every other test's process.
        let Ok(parent) = std::env::var(HARDENING_CHILD_ENV) else { return };
        let parent = parent.parse().ok();
        let outcome = harden_helper(parent).map_err(|error| error.to_string());
        let dumpable = nix::sys::prctl::get_dumpable().ok();
        let signal = nix::sys::prctl::get_pdeathsig().ok().flatten();
        println!("HARDENED {outcome:?} dumpable={dumpable:?} pdeathsig={signal:?}");
    }

    #[test]
    fn a_hardened_helper_is_non_dumpable_and_dies_with_its_parent() {
        let run_child = |parent: u32| {
            let output = Command::new(std::env::current_exe().expect("the test binary"))
                .args(["prepare::stages::tests::hardening_child", "--exact", "--nocapture", "--test-threads=1"])
                .env(HARDENING_CHILD_ENV, parent.to_string())
                .output()
                .expect("run the child");
            let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
            stdout.lines().find_map(|line| line.find("HARDENED ").map(|start| line[start..].to_owned())).unwrap_or(stdout)
        };
        assert_eq!(run_child(std::process::id()), "HARDENED Ok(()) dumpable=Some(false) pdeathsig=Some(SIGKILL)");
        // Started by someone else than the process it was told about: its parent is gone.
        let line = run_child(1);
        assert!(line.starts_with("HARDENED Err(\"the node plugin exited before its prepare helper started"), "{line}");
    }
}
