//! Preparing a consumer's view of its rootfs, in the consumer's own namespaces: its `/proc`, `/dev`
//! and `/sys`, and kubelet's `/etc/hosts`, `/etc/resolv.conf`, `/etc/hostname` and service-account
//! token directory, mounted at the same paths inside `/.sc/rootfs`.
//!
//! Only a privileged process can mount in another process's mount namespace, and `setns` into a
//! mount namespace needs a single-threaded process: the plugin's async runtime cannot do it. So
//! the control socket ([`crate::control`]) starts this file's helper as a fresh process, in two
//! stages:
//!
//! 1. `sc-csi-driver __prepare --pid N --pod-uid U` pins `/proc/N`, checks again that N is in a
//!    container of pod U, enters N's PID namespace (which only applies to children) and starts
//!    stage 2 (`std::process::Command`: fork and exec, no Rust code runs between them).
//! 2. `sc-csi-driver __prepare-in-namespaces ...`, now a member of that PID namespace, pins
//!    `/proc/N` again, enters N's mount namespace and its root directory — it then sees exactly
//!    what the container sees, including the container's `/proc`, whose `/proc/self/fd/<fd>`
//!    magic links address the mount points — and mounts, following the [`PLAN`].
//!
//! Each stage prints one [`HelperReport`] JSON line on stdout; the plugin turns it into the
//! `ControlResponse` the consumer gets.
//!
//! `/proc` is a recursive bind of the container's own `/proc`, not a fresh proc mount: it shows
//! the same PID namespace, and keeps what the container runtime masked or made read-only in it
//! (`/proc/sysrq-trigger`, `/proc/sys`, `/proc/kcore`, ...), which a fresh mount would expose to a
//! workload running as uid 0.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{Command, ExitCode, Stdio};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, open, openat, openat2};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns};
use nix::sys::stat::{Mode, SFlag, fstat};
use nix::sys::statfs::{FsType, OVERLAYFS_SUPER_MAGIC, PROC_SUPER_MAGIC, fstatfs};
use nix::sys::statvfs::{FsFlags, fstatvfs};
use sc_api::consts::CONSUMER_ROOTFS_PATH;
use serde::{Deserialize, Serialize};

use crate::cgroup;
use crate::inroot::{self, Destination, FdTree, Kind, ResolveError, Resolved, Symlinks, Tree};

/// First argument that turns `sc-csi-driver` into the prepare helper's first stage.
pub const HELPER_SUBCOMMAND: &str = "__prepare";
/// First argument of the second stage (started by the first, inside the PID namespace).
pub const IN_NAMESPACES_SUBCOMMAND: &str = "__prepare-in-namespaces";

/// Why preparing a consumer's rootfs failed. The message goes to the consumer (its `sc-exec`
/// prints it) and to the plugin's log, so each says what was wrong and what to do.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error("the control socket could not tell which process connected; connect from a process of the consumer pod")]
    NoPeerProcess,
    #[error("the request was not one JSON line of at most {max} bytes ({reason}); send {{\"op\":\"prepare\"}} and a newline")]
    BadRequest { max: usize, reason: String },
    #[error("no request arrived within {waited:?}; send {{\"op\":\"prepare\"}} and a newline right after connecting")]
    RequestTimeout { waited: std::time::Duration },
    #[error("process {pid} exited before it could be checked; ask again from a live process")]
    PeerGone { pid: i32 },
    #[error(
        "process {pid} is not in a container of pod {pod}, the pod this volume was published for ({found}); only that pod's containers may have its rootfs prepared"
    )]
    NotThisPod { pid: i32, pod: String, found: String },
    #[error("process {pid} changed while the rootfs was being prepared (it exited and its number was reused); ask again")]
    PeerChanged { pid: i32 },
    #[error("could not start the prepare helper {helper}: {source}")]
    HelperSpawn { helper: String, source: io::Error },
    #[error("preparing the rootfs did not finish within {waited:?}; a mount in the container may be hanging — see the node plugin's log")]
    HelperTimeout { waited: std::time::Duration },
    #[error("the prepare helper ended without an answer ({status}); see the node plugin's log: {stderr}")]
    HelperCrashed { status: String, stderr: String },
    /// A failure the helper process reported; its message is passed on verbatim.
    #[error("{0}")]
    Reported(String),
    #[error("{action} of process {pid}: {source}; the node plugin needs CAP_SYS_ADMIN and hostPID")]
    Namespace { action: &'static str, pid: i32, source: io::Error },
    #[error("the container's {path} is {found}, not {expected}; the consumer container must mount the StoppableContainer volume at {volume} and keep the runtime's {path}", volume = sc_api::consts::ROOTFS_VOLUME_MOUNT_PATH)]
    UnexpectedContainer { path: String, found: String, expected: &'static str },
    #[error("cannot prepare {destination} in the rootfs: {problem}")]
    Destination { destination: &'static str, problem: ResolveError },
    #[error("{action} {path} in the rootfs: {source}")]
    Mount { action: &'static str, path: String, source: io::Error },
    #[error(
        "this volume's rootfs was asked to be prepared too often (at most {burst} times in a row, then once every {every:?}); ask again in {retry_after:?}"
    )]
    RateLimited { burst: u32, every: std::time::Duration, retry_after: std::time::Duration },
    #[error("{limit} preparations are running on this node, the most it runs at once; ask again shortly (sc-exec does so by itself)")]
    NodeBusy { limit: usize },
    #[error("could not {action} in the prepare helper: {source}; see the node plugin's log")]
    Hardening { action: &'static str, source: io::Error },
    #[error("the node plugin exited before its prepare helper started; nothing was prepared, ask again")]
    ParentGone,
}

/// Who is to blame for a [`PrepareError`], for the log level and the operator's first question.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The connecting process (not of this pod, a malformed request): refused.
    Caller,
    /// The user's rootfs (a symlinked `/proc` ...): the user must fix it.
    Rootfs,
    /// The node or the plugin: an administrator must look.
    Node,
}

impl PrepareError {
    pub fn fault(&self) -> Fault {
        match self {
            PrepareError::NoPeerProcess
            | PrepareError::BadRequest { .. }
            | PrepareError::RequestTimeout { .. }
            | PrepareError::PeerGone { .. }
            | PrepareError::NotThisPod { .. }
            | PrepareError::PeerChanged { .. }
            | PrepareError::UnexpectedContainer { .. } => Fault::Caller,
            PrepareError::Destination { .. } | PrepareError::Reported(_) => Fault::Rootfs,
            PrepareError::HelperSpawn { .. }
            | PrepareError::HelperTimeout { .. }
            | PrepareError::HelperCrashed { .. }
            | PrepareError::Namespace { .. }
            | PrepareError::Mount { .. }
            | PrepareError::NodeBusy { .. }
            | PrepareError::Hardening { .. }
            | PrepareError::ParentGone => Fault::Node,
            PrepareError::RateLimited { .. } => Fault::Caller,
        }
    }

    /// Whether the request was only refused for now (a bound was reached): the consumer is told
    /// to ask again instead of failing.
    pub fn is_retryable(&self) -> bool {
        matches!(self, PrepareError::RateLimited { .. } | PrepareError::NodeBusy { .. })
    }
}

/// What a helper stage prints, as one JSON line on stdout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "outcome")]
pub enum HelperReport {
    #[serde(rename_all = "camelCase")]
    Prepared {
        /// Destinations mounted now (paths as resolved inside the rootfs).
        mounted: Vec<String>,
        /// Destinations that were already mounted (an earlier request from the same container).
        already_mounted: Vec<String>,
        /// Optional sources the container does not have (no service-account token, ...).
        absent: Vec<String>,
    },
    Failed {
        message: String,
    },
}

/// How a source is mounted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mounting {
    /// Recursive bind: with the mounts below it (`/dev/pts`, `/dev/shm`, `/proc`'s masks).
    RecursiveBind,
    /// Recursive bind, then the top remounted read-only (`/sys`; what is mounted below it keeps
    /// the flags the runtime gave it, read-only in an unprivileged container).
    RecursiveBindReadOnly,
}

/// One mount: a path of the container, bound at the same path inside the rootfs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    pub destination: Destination<'static>,
    pub mounting: Mounting,
    /// Kubelet's files exist only when the pod has them (no token without a service account).
    pub optional: bool,
    /// Follow in-root symlinks in the container's own path (`/var/run -> /run` in its image).
    pub source_follows_symlinks: bool,
}

const fn special_directory(path: &'static str, mounting: Mounting) -> Step {
    Step {
        destination: Destination { path, kind: Kind::Directory, symlinks: Symlinks::Refuse },
        mounting,
        optional: false,
        source_follows_symlinks: false,
    }
}

const fn kubelet_file(path: &'static str) -> Step {
    Step {
        destination: Destination { path, kind: Kind::RegularFile, symlinks: Symlinks::FollowAll },
        mounting: Mounting::RecursiveBind,
        optional: true,
        source_follows_symlinks: true,
    }
}

/// Where kubelet mounts the service-account token in every container that has one.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Everything mounted, in order. `/proc`, `/dev` and `/sys` come first: a kubelet file whose
/// symlink leads into them then crosses a mount and is refused, rather than being mounted over a
/// device node or a proc file.
pub const PLAN: &[Step] = &[
    special_directory("/proc", Mounting::RecursiveBind),
    special_directory("/dev", Mounting::RecursiveBind),
    special_directory("/sys", Mounting::RecursiveBindReadOnly),
    kubelet_file("/etc/hosts"),
    kubelet_file("/etc/resolv.conf"),
    kubelet_file("/etc/hostname"),
    Step {
        destination: Destination { path: SERVICE_ACCOUNT_DIR, kind: Kind::Directory, symlinks: Symlinks::FollowParents },
        mounting: Mounting::RecursiveBind,
        optional: true,
        source_follows_symlinks: true,
    },
];

/// Checks that a process's cgroup puts it in a container of the pod with UID `pod_uid`. The
/// cgroup is set by the runtime and cannot be changed from inside an unprivileged container.
pub fn authenticate(cgroup_text: &str, pid: i32, pod: &str, pod_uid: &str) -> Result<String, PrepareError> {
    let parsed = cgroup::parse(cgroup_text);
    let found = match (&parsed.pod_uid, &parsed.container_id) {
        (Some(uid), Some(container)) if uid == pod_uid => return Ok(container.clone()),
        (Some(uid), None) if uid == pod_uid => "it is in the pod's cgroup but in none of its containers".to_owned(),
        (Some(uid), _) => format!("its cgroup belongs to pod {uid}"),
        (None, _) => "its cgroup belongs to no pod".to_owned(),
    };
    Err(PrepareError::NotThisPod { pid, pod: pod.to_owned(), found })
}

/// Arguments of both helper stages.
#[derive(Clone, Debug, clap::Parser)]
#[command(name = "sc-csi-driver __prepare", about = "internal: prepares a consumer's rootfs in its namespaces")]
pub struct HelperArgs {
    /// The consumer's process, as a pid of the plugin's (the host's) PID namespace.
    #[arg(long)]
    pub pid: i32,
    /// The UID of the pod the process must belong to.
    #[arg(long)]
    pub pod_uid: String,
    /// The pod, for messages (`namespace/name`).
    #[arg(long)]
    pub pod: String,
    /// The process that started this stage (the plugin, for stage 1): the stage gives up if it
    /// is already gone, as its parent-death signal would then never come. Stage 2 has none: its
    /// parent is outside its PID namespace, where it has no pid.
    #[arg(long)]
    pub parent_pid: Option<u32>,
}

impl HelperArgs {
    pub fn to_args(&self) -> Vec<String> {
        let mut args =
            vec!["--pid".into(), self.pid.to_string(), "--pod-uid".into(), self.pod_uid.clone(), "--pod".into(), self.pod.clone()];
        if let Some(parent) = self.parent_pid {
            args.extend(["--parent-pid".into(), parent.to_string()]);
        }
        args
    }
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
pub fn harden_helper(parent_pid: Option<u32>) -> Result<(), PrepareError> {
    let hardening = |action: &'static str| move |errno: Errno| PrepareError::Hardening { action, source: errno.into() };
    nix::sys::prctl::set_dumpable(false).map_err(hardening("make itself non-dumpable"))?;
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).map_err(hardening("ask for a parent-death signal"))?;
    // A parent that died before the signal was asked for never sends it.
    if let Some(parent) = parent_pid
        && u32::try_from(nix::unistd::getppid().as_raw()).ok() != Some(parent)
    {
        return Err(PrepareError::ParentGone);
    }
    Ok(())
}

/// Runs a helper stage when the command line asks for one; `None` for the plugin itself.
pub fn run_if_helper(mut args: impl Iterator<Item = std::ffi::OsString>) -> Option<ExitCode> {
    let program = args.next()?;
    let stage = args.next()?;
    let stage: fn(&HelperArgs) -> HelperReport = if stage == HELPER_SUBCOMMAND {
        enter_pid_namespace
    } else if stage == IN_NAMESPACES_SUBCOMMAND {
        prepare_in_namespaces
    } else {
        return None;
    };
    let parsed = <HelperArgs as clap::Parser>::parse_from(std::iter::once(program).chain(args));
    let report = stage(&parsed);
    let line = serde_json::to_string(&report)
        .unwrap_or_else(|error| format!(r#"{{"outcome":"failed","message":"encoding the report: {error}"}}"#));
    // Not println!: it panics when the plugin is gone (EPIPE), and then there is nobody to tell.
    use std::io::Write;
    match writeln!(io::stdout(), "{line}") {
        Ok(()) => Some(ExitCode::SUCCESS),
        Err(_) => Some(ExitCode::FAILURE),
    }
}

fn failed(error: PrepareError) -> HelperReport {
    HelperReport::Failed { message: error.to_string() }
}

/// `/proc/<pid>` held open: whatever is opened through it belongs to that very process, and fails
/// once it exited — even if its number is reused meanwhile.
struct PinnedProcess {
    pid: i32,
    dir: OwnedFd,
}

impl PinnedProcess {
    fn open(pid: i32, pod: &str, pod_uid: &str) -> Result<(Self, String), PrepareError> {
        let dir = open(format!("/proc/{pid}").as_str(), OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|_| PrepareError::PeerGone { pid })?;
        let process = Self { pid, dir };
        let cgroup = process.read("cgroup")?;
        let container = authenticate(&cgroup, pid, pod, pod_uid)?;
        Ok((process, container))
    }

    fn read(&self, name: &str) -> Result<String, PrepareError> {
        let file = openat(&self.dir, name, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|_| PrepareError::PeerGone { pid: self.pid })?;
        io::read_to_string(std::fs::File::from(file)).map_err(|_| PrepareError::PeerGone { pid: self.pid })
    }

    fn open_entry(&self, name: &str, flags: OFlag, action: &'static str) -> Result<OwnedFd, PrepareError> {
        openat(&self.dir, name, flags | OFlag::O_CLOEXEC, Mode::empty()).map_err(|errno| match errno {
            Errno::ENOENT | Errno::ESRCH => PrepareError::PeerGone { pid: self.pid },
            other => PrepareError::Namespace { action, pid: self.pid, source: other.into() },
        })
    }
}

/// Stage 1: enter the caller's PID namespace and run stage 2 in it.
fn enter_pid_namespace(args: &HelperArgs) -> HelperReport {
    let run = || -> Result<HelperReport, PrepareError> {
        harden_helper(args.parent_pid)?;
        let (process, _container) = PinnedProcess::open(args.pid, &args.pod, &args.pod_uid)?;
        let namespace = process.open_entry("ns/pid", OFlag::O_RDONLY, "opening the PID namespace")?;
        setns(&namespace, CloneFlags::CLONE_NEWPID).map_err(|errno| PrepareError::Namespace {
            action: "entering the PID namespace",
            pid: args.pid,
            source: errno.into(),
        })?;
        let helper = "/proc/self/exe";
        let stage_2 = HelperArgs { parent_pid: None, ..args.clone() };
        let output = Command::new(helper)
            .arg(IN_NAMESPACES_SUBCOMMAND)
            .args(stage_2.to_args())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .map_err(|source| PrepareError::HelperSpawn { helper: helper.into(), source })?;
        parse_report(&output.stdout)
            .ok_or_else(|| PrepareError::HelperCrashed { status: output.status.to_string(), stderr: tail(&output.stderr) })
    };
    run().unwrap_or_else(failed)
}

/// The end of a helper's stderr, short enough for a message.
pub fn tail(stderr: &[u8]) -> String {
    const KEEP: usize = 2000;
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim();
    let start = text.char_indices().rev().nth(KEEP).map_or(0, |(index, _)| index);
    text[start..].to_owned()
}

/// The last line of a helper's stdout as a report.
pub fn parse_report(stdout: &[u8]) -> Option<HelperReport> {
    let text = String::from_utf8_lossy(stdout);
    text.lines().rev().find(|line| !line.trim().is_empty()).and_then(|line| serde_json::from_str(line.trim()).ok())
}

/// Stage 2: enter the caller's mount namespace and root, and mount.
fn prepare_in_namespaces(args: &HelperArgs) -> HelperReport {
    let run = || -> Result<HelperReport, PrepareError> {
        // If stage 1 is killed (the plugin's timeout), so are we.
        harden_helper(None)?;
        let (process, _container) = PinnedProcess::open(args.pid, &args.pod, &args.pod_uid)?;
        check_same_pid_namespace(&process)?;
        let mount_namespace = process.open_entry("ns/mnt", OFlag::O_RDONLY, "opening the mount namespace")?;
        let root = process.open_entry("root", OFlag::O_PATH | OFlag::O_DIRECTORY, "opening the root directory")?;
        let enter = |action: &'static str, result: nix::Result<()>| {
            result.map_err(|errno| PrepareError::Namespace { action, pid: args.pid, source: errno.into() })
        };
        enter("entering the mount namespace", setns(&mount_namespace, CloneFlags::CLONE_NEWNS))?;
        enter("entering the root directory", nix::unistd::fchdir(&root))?;
        enter("entering the root directory", nix::unistd::chroot("."))?;
        enter("entering the root directory", nix::unistd::chdir("/"))?;
        check_proc_is_ours()?;
        let container_root = open("/", OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|errno| PrepareError::Namespace { action: "opening the root directory", pid: args.pid, source: errno.into() })?;
        prepare_rootfs(container_root)
    };
    run().unwrap_or_else(failed)
}

fn check_same_pid_namespace(process: &PinnedProcess) -> Result<(), PrepareError> {
    let theirs = process.open_entry("ns/pid", OFlag::O_RDONLY, "opening the PID namespace")?;
    let ours = open("/proc/self/ns/pid", OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty());
    let inode = |fd: &OwnedFd| fstat(fd).map(|stat| (stat.st_dev, stat.st_ino)).ok();
    match ours {
        Ok(ours) if inode(&ours).is_some() && inode(&ours) == inode(&theirs) => Ok(()),
        _ => Err(PrepareError::PeerChanged { pid: process.pid }),
    }
}

/// The mounts are addressed through `/proc/self/fd/<fd>` of the container's `/proc`: check that
/// it is a proc filesystem that knows us (we are in its PID namespace), so those magic links are
/// the kernel's and not files of the container.
fn check_proc_is_ours() -> Result<(), PrepareError> {
    let unexpected = |found: String| PrepareError::UnexpectedContainer {
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

fn filesystem_name(kind: FsType) -> String {
    format!("a filesystem of type {:#x}", kind.0)
}

fn fd_path(fd: &OwnedFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// Opens the rootfs in the container, checks it is the overlay, and mounts the [`PLAN`] in it.
fn prepare_rootfs(container_root: OwnedFd) -> Result<HelperReport, PrepareError> {
    let mounts = FdMounts { container_root };
    let rootfs = mounts
        .container_source(CONSUMER_ROOTFS_PATH, false, Kind::Directory)
        .map_err(|found| PrepareError::UnexpectedContainer { path: CONSUMER_ROOTFS_PATH.into(), found, expected: "a directory" })?
        .ok_or_else(|| PrepareError::UnexpectedContainer {
            path: CONSUMER_ROOTFS_PATH.into(),
            found: "missing".into(),
            expected: "the rootfs volume",
        })?;
    let kind = fstatfs(&rootfs).map(|stat| stat.filesystem_type()).map_err(|errno| mount_error("inspecting", "/", errno.into()))?;
    if kind != OVERLAYFS_SUPER_MAGIC {
        return Err(PrepareError::UnexpectedContainer {
            path: CONSUMER_ROOTFS_PATH.into(),
            found: filesystem_name(kind),
            expected: "the StoppableContainer overlay",
        });
    }
    // Nothing we mount below the rootfs may propagate out of this mount namespace, even if the
    // volume was mounted with shared propagation.
    mount(None::<&str>, fd_path(&rootfs).as_str(), None::<&str>, MsFlags::MS_SLAVE, None::<&str>)
        .map_err(|errno| mount_error("making mounts below the rootfs local to the container", "/", errno.into()))?;
    mount_plan(&mounts, &rootfs, PLAN)
}

/// The mount operations of a preparation, behind a trait so that the plan's logic (order,
/// optional sources, all or nothing) is unit-tested with a fake; [`FdMounts`] is the real one.
pub trait Mounts: Tree {
    /// The container's own `path` (what gets mounted): `Ok(None)` when the container has none,
    /// `Err` with what it is instead when it is not of `kind`.
    fn container_source(&self, path: &str, follow_symlinks: bool, kind: Kind) -> Result<Option<Self::Node>, String>;
    /// Whether `node` is on a proc filesystem.
    fn is_proc(&self, node: &Self::Node) -> io::Result<bool>;
    /// Recursively bind-mounts `source` on `destination`.
    fn bind(&self, source: &Self::Node, destination: &Self::Node) -> io::Result<()>;
    /// Makes the mount now on `parent/name` read-only.
    fn remount_read_only(&self, parent: &Self::Node, name: &str) -> io::Result<()>;
    /// Detaches the mount now on `parent/name`, with everything below it.
    fn unmount(&self, parent: &Self::Node, name: &str) -> io::Result<()>;
}

/// Mounts `plan` below `rootfs`; all or nothing: on a failure, what this call mounted is
/// unmounted again. Destinations that are already mounted (an earlier request of the same
/// container) are left as they are.
pub fn mount_plan<M: Mounts>(mounts: &M, rootfs: &M::Node, plan: &[Step]) -> Result<HelperReport, PrepareError> {
    let mut done: Vec<(M::Node, String, String)> = Vec::new();
    let (mut mounted, mut already_mounted, mut absent) = (Vec::new(), Vec::new(), Vec::new());
    for step in plan {
        let outcome = prepare_step(mounts, rootfs, step);
        match outcome {
            Ok(StepOutcome::Mounted { parent, name, resolved_path }) => {
                mounted.push(resolved_path.clone());
                done.push((parent, name, resolved_path));
            }
            Ok(StepOutcome::AlreadyMounted { resolved_path }) => already_mounted.push(resolved_path),
            Ok(StepOutcome::Absent) => absent.push(step.destination.path.to_owned()),
            Err(error) => {
                for (parent, name, path) in done.iter().rev() {
                    if let Err(undo) = mounts.unmount(parent, name) {
                        eprintln!("sc-csi-driver: could not undo the mount at {path} in the rootfs: {undo}");
                    }
                }
                return Err(error);
            }
        }
    }
    Ok(HelperReport::Prepared { mounted, already_mounted, absent })
}

enum StepOutcome<N> {
    Mounted { parent: N, name: String, resolved_path: String },
    AlreadyMounted { resolved_path: String },
    Absent,
}

fn prepare_step<M: Mounts>(mounts: &M, rootfs: &M::Node, step: &Step) -> Result<StepOutcome<M::Node>, PrepareError> {
    let path = step.destination.path;
    let source = match mounts.container_source(path, step.source_follows_symlinks, step.destination.kind) {
        Ok(Some(source)) => source,
        Ok(None) if step.optional => return Ok(StepOutcome::Absent),
        Ok(None) => {
            return Err(PrepareError::UnexpectedContainer {
                path: path.into(),
                found: "missing".into(),
                expected: "a directory the container runtime provides",
            });
        }
        Err(found) => {
            return Err(PrepareError::UnexpectedContainer { path: path.into(), found, expected: "what the runtime mounts there" });
        }
    };
    if path == "/proc"
        && !mounts.is_proc(&source).map_err(|source| PrepareError::Mount {
            action: "inspecting the container's",
            path: path.into(),
            source,
        })?
    {
        return Err(PrepareError::UnexpectedContainer {
            path: "/proc".into(),
            found: "not a proc filesystem".into(),
            expected: "a proc filesystem",
        });
    }
    let (parent, name, node, resolved_path) = match inroot::resolve(mounts, rootfs, step.destination, true) {
        Ok(Resolved::Ready { parent, name, node, resolved_path }) => (parent, name, node, resolved_path),
        Ok(Resolved::AlreadyMounted { resolved_path }) => return Ok(StepOutcome::AlreadyMounted { resolved_path }),
        Err(problem) => return Err(PrepareError::Destination { destination: path, problem }),
    };
    mounts.bind(&source, &node).map_err(|source| mount_error("bind-mounting the container's files at", &resolved_path, source))?;
    if step.mounting == Mounting::RecursiveBindReadOnly
        && let Err(source) = mounts.remount_read_only(&parent, &name)
    {
        if let Err(undo) = mounts.unmount(&parent, &name) {
            eprintln!("sc-csi-driver: could not undo the mount at {resolved_path} in the rootfs: {undo}");
        }
        return Err(mount_error("making read-only", &resolved_path, source));
    }
    Ok(StepOutcome::Mounted { parent, name, resolved_path })
}

/// The real mounts: file descriptors, mounted on through `/proc/self/fd/<fd>`.
struct FdMounts {
    container_root: OwnedFd,
}

impl Tree for FdMounts {
    type Node = OwnedFd;
    fn lookup(&self, dir: &OwnedFd, name: &str) -> Result<inroot::Entry<OwnedFd>, inroot::LookupError> {
        FdTree.lookup(dir, name)
    }
    fn make_directory(&self, dir: &OwnedFd, name: &str) -> io::Result<()> {
        FdTree.make_directory(dir, name)
    }
    fn make_file(&self, dir: &OwnedFd, name: &str) -> io::Result<()> {
        FdTree.make_file(dir, name)
    }
    fn duplicate(&self, node: &OwnedFd) -> io::Result<OwnedFd> {
        FdTree.duplicate(node)
    }
}

impl Mounts for FdMounts {
    /// In-root symlinks are followed only when asked (kubelet resolves its mount points that way
    /// too); magic links never.
    fn container_source(&self, path: &str, follow_symlinks: bool, kind: Kind) -> Result<Option<OwnedFd>, String> {
        let mut resolve = ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS;
        if !follow_symlinks {
            resolve |= ResolveFlag::RESOLVE_NO_SYMLINKS;
        }
        let how = OpenHow::new().flags(OFlag::O_PATH | OFlag::O_CLOEXEC).resolve(resolve);
        let fd = match openat2(&self.container_root, path.trim_start_matches('/'), how) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(None),
            Err(Errno::ELOOP) => return Err("a symlink".into()),
            Err(errno) => return Err(format!("unusable ({errno})")),
        };
        let mode = fstat(&fd).map_err(|errno| format!("unusable ({errno})"))?.st_mode;
        let found = SFlag::from_bits_truncate(mode) & SFlag::S_IFMT;
        match (found, kind) {
            (SFlag::S_IFDIR, Kind::Directory) | (SFlag::S_IFREG, Kind::RegularFile) => Ok(Some(fd)),
            (SFlag::S_IFDIR, _) => Err("a directory".into()),
            _ => Err("not a directory or regular file".into()),
        }
    }

    fn is_proc(&self, node: &OwnedFd) -> io::Result<bool> {
        Ok(fstatfs(node)?.filesystem_type() == PROC_SUPER_MAGIC)
    }

    fn bind(&self, source: &OwnedFd, destination: &OwnedFd) -> io::Result<()> {
        let flags = MsFlags::MS_BIND | MsFlags::MS_REC;
        Ok(mount(Some(fd_path(source).as_str()), fd_path(destination).as_str(), None::<&str>, flags, None::<&str>)?)
    }

    fn remount_read_only(&self, parent: &OwnedFd, name: &str) -> io::Result<()> {
        let top = reopen_mount(parent, name)?;
        let kept = kept_flags(fstatvfs(&top)?.flags());
        let flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | kept;
        Ok(mount(None::<&str>, fd_path(&top).as_str(), None::<&str>, flags, None::<&str>)?)
    }

    fn unmount(&self, parent: &OwnedFd, name: &str) -> io::Result<()> {
        let top = reopen_mount(parent, name)?;
        Ok(umount2(fd_path(&top).as_str(), MntFlags::MNT_DETACH)?)
    }
}

/// The mount now on `parent/name` (opening the name again crosses into it).
fn reopen_mount(parent: &OwnedFd, name: &str) -> nix::Result<OwnedFd> {
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
    openat2(parent, name, how)
}

/// Per-mount flags a read-only remount must repeat (a bind remount replaces them all).
fn kept_flags(flags: FsFlags) -> MsFlags {
    [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ]
    .into_iter()
    .filter(|(statvfs_flag, _)| flags.contains(*statvfs_flag))
    .fold(MsFlags::empty(), |kept, (_, mount_flag)| kept | mount_flag)
}

fn mount_error(action: &'static str, path: &str, source: io::Error) -> PrepareError {
    PrepareError::Mount { action, path: path.to_owned(), source }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;
    use crate::inroot::fake::{FakeEntry, FakeTree};

    const POD_UID: &str = "6d1c2b7e-43a1-4e5e-9d63-0c5a3f1b2e7d";
    const CONTAINER: &str = "8b7e0f6ad23b2c1bd3c0b1e6f84a3d7c1e3f0aa1c19f8c2de5d9a4b7f2c61e0a";

    #[test]
    fn only_a_container_of_the_publications_pod_is_authenticated() {
        let inside = format!("3:pids:/kubepods/besteffort/pod{POD_UID}/{CONTAINER}\n");
        assert_eq!(authenticate(&inside, 42, "ns/dev", POD_UID).expect("a container of the pod"), CONTAINER);

        let other_pod = format!("3:pids:/kubepods/besteffort/pod11111111-2222-3333-4444-555555555555/{CONTAINER}\n");
        let error = authenticate(&other_pod, 42, "ns/dev", POD_UID).expect_err("another pod");
        assert_eq!(
            error.to_string(),
            "process 42 is not in a container of pod ns/dev, the pod this volume was published for (its cgroup belongs to pod \
             11111111-2222-3333-4444-555555555555); only that pod's containers may have its rootfs prepared"
        );
        let pod_only = format!("3:pids:/kubepods/besteffort/pod{POD_UID}\n");
        let error = authenticate(&pod_only, 42, "ns/dev", POD_UID).expect_err("not in a container");
        assert!(error.to_string().contains("in the pod's cgroup but in none of its containers"), "{error}");
        let error = authenticate("0::/user.slice/session-1.scope\n", 42, "ns/dev", POD_UID).expect_err("a host process");
        assert!(error.to_string().contains("belongs to no pod"), "{error}");
        assert_eq!(error.fault(), Fault::Caller);
    }

    #[test]
    fn reports_round_trip_and_the_last_line_wins() {
        let prepared =
            HelperReport::Prepared { mounted: vec!["/proc".into()], already_mounted: vec![], absent: vec![SERVICE_ACCOUNT_DIR.into()] };
        let text = serde_json::to_string(&prepared).expect("serializes");
        assert!(text.starts_with(r#"{"outcome":"prepared","mounted":["/proc"],"alreadyMounted":[]"#), "{text}");
        let stdout = format!("noise\n{text}\n\n");
        assert_eq!(parse_report(stdout.as_bytes()), Some(prepared));
        assert_eq!(parse_report(br#"{"outcome":"failed","message":"no"}"#), Some(HelperReport::Failed { message: "no".into() }));
        assert_eq!(parse_report(b"thread 'main' panicked\n"), None);
        assert_eq!(parse_report(b""), None);
    }

    #[test]
    fn the_plan_mounts_the_special_directories_first_and_never_follows_their_links() {
        let paths: Vec<_> = PLAN.iter().map(|step| step.destination.path).collect();
        assert_eq!(paths, ["/proc", "/dev", "/sys", "/etc/hosts", "/etc/resolv.conf", "/etc/hostname", SERVICE_ACCOUNT_DIR]);
        for step in &PLAN[..3] {
            assert_eq!(step.destination.symlinks, Symlinks::Refuse);
            assert!(!step.optional && !step.source_follows_symlinks);
        }
        assert_eq!(PLAN[2].mounting, Mounting::RecursiveBindReadOnly, "/sys is read-only");
        assert_eq!(PLAN[6].destination.symlinks, Symlinks::FollowParents, "the token dir's own name is never a link");
    }

    /// A container and its rootfs in memory: binding marks the destination as mounted, so a
    /// second run sees what the first did.
    struct FakeMounts {
        rootfs: FakeTree,
        /// The container's paths: (kind, on a proc filesystem).
        container: Vec<(&'static str, Kind, bool)>,
        /// A destination whose bind fails.
        failing: Option<&'static str>,
        log: RefCell<Vec<String>>,
        covered: RefCell<Vec<(String, FakeEntry)>>,
    }

    impl FakeMounts {
        fn new(container: Vec<(&'static str, Kind, bool)>) -> Self {
            let rootfs = FakeTree::with(&[
                ("/proc", FakeEntry::Directory),
                ("/dev", FakeEntry::Directory),
                ("/sys", FakeEntry::Directory),
                ("/etc", FakeEntry::Directory),
            ]);
            Self { rootfs, container, failing: None, log: RefCell::default(), covered: RefCell::default() }
        }
        fn full_container() -> Self {
            Self::new(vec![
                ("/proc", Kind::Directory, true),
                ("/dev", Kind::Directory, false),
                ("/sys", Kind::Directory, false),
                ("/etc/hosts", Kind::RegularFile, false),
                ("/etc/resolv.conf", Kind::RegularFile, false),
                ("/etc/hostname", Kind::RegularFile, false),
                (SERVICE_ACCOUNT_DIR, Kind::Directory, false),
            ])
        }
        fn log(&self) -> Vec<String> {
            self.log.borrow().clone()
        }
    }

    impl Tree for FakeMounts {
        type Node = String;
        fn lookup(&self, dir: &String, name: &str) -> Result<inroot::Entry<String>, inroot::LookupError> {
            self.rootfs.lookup(dir, name)
        }
        fn make_directory(&self, dir: &String, name: &str) -> io::Result<()> {
            self.rootfs.make_directory(dir, name)
        }
        fn make_file(&self, dir: &String, name: &str) -> io::Result<()> {
            self.rootfs.make_file(dir, name)
        }
        fn duplicate(&self, node: &String) -> io::Result<String> {
            Ok(node.clone())
        }
    }

    impl Mounts for FakeMounts {
        fn container_source(&self, path: &str, _follow_symlinks: bool, kind: Kind) -> Result<Option<String>, String> {
            match self.container.iter().find(|(known, _, _)| *known == path) {
                None => Ok(None),
                Some((_, found, _)) if *found == kind => Ok(Some(format!("container:{path}"))),
                Some(_) => Err("of another kind".into()),
            }
        }
        fn is_proc(&self, node: &String) -> io::Result<bool> {
            Ok(self.container.iter().any(|(path, _, proc)| *proc && node == &format!("container:{path}")))
        }
        fn bind(&self, source: &String, destination: &String) -> io::Result<()> {
            if self.failing == Some(destination.as_str()) {
                return Err(io::Error::from_raw_os_error(nix::libc::EPERM));
            }
            let previous = self.rootfs.has(destination).expect("binds onto what exists");
            self.covered.borrow_mut().push((destination.clone(), previous));
            self.rootfs.entries.borrow_mut().insert(destination.clone(), FakeEntry::Mounted);
            self.log.borrow_mut().push(format!("bind {source} {destination}"));
            Ok(())
        }
        fn remount_read_only(&self, parent: &String, name: &str) -> io::Result<()> {
            self.log.borrow_mut().push(format!("read-only {}", FakeTree::child(parent, name)));
            Ok(())
        }
        fn unmount(&self, parent: &String, name: &str) -> io::Result<()> {
            let path = FakeTree::child(parent, name);
            let mut covered = self.covered.borrow_mut();
            let index = covered.iter().rposition(|(point, _)| *point == path).expect("unmounts only what it mounted");
            let (_, previous) = covered.remove(index);
            self.rootfs.entries.borrow_mut().insert(path.clone(), previous);
            self.log.borrow_mut().push(format!("unmount {path}"));
            Ok(())
        }
    }

    #[test]
    fn the_whole_plan_is_mounted_once_and_a_second_run_changes_nothing() {
        let mounts = FakeMounts::full_container();
        let report = mount_plan(&mounts, &"/".to_owned(), PLAN).expect("prepared");
        let HelperReport::Prepared { mounted, already_mounted, absent } = report else { panic!("{report:?}") };
        assert_eq!(mounted, PLAN.iter().map(|step| step.destination.path).collect::<Vec<_>>());
        assert!(already_mounted.is_empty() && absent.is_empty());
        assert_eq!(
            mounts.log()[..4],
            ["bind container:/proc /proc", "bind container:/dev /dev", "bind container:/sys /sys", "read-only /sys"]
        );
        assert_eq!(mounts.rootfs.has("/etc/hosts"), Some(FakeEntry::Mounted), "the mount point file was created, then covered");

        let again = mount_plan(&mounts, &"/".to_owned(), PLAN).expect("prepared again");
        let HelperReport::Prepared { mounted, already_mounted, .. } = again else { panic!("{again:?}") };
        assert!(mounted.is_empty(), "nothing is stacked: {mounted:?}");
        assert_eq!(already_mounted.len(), PLAN.len());
        assert_eq!(mounts.log().len(), PLAN.len() + 1, "no new operation");
    }

    #[test]
    fn kubelet_files_the_pod_lacks_are_skipped() {
        let mut mounts = FakeMounts::full_container();
        mounts.container.retain(|(path, _, _)| !path.starts_with("/var") && *path != "/etc/hostname");
        let report = mount_plan(&mounts, &"/".to_owned(), PLAN).expect("prepared");
        let HelperReport::Prepared { absent, .. } = report else { panic!("{report:?}") };
        assert_eq!(absent, ["/etc/hostname", SERVICE_ACCOUNT_DIR]);
        assert_eq!(mounts.rootfs.has("/var"), None, "nothing is created for an absent source");
    }

    #[test]
    fn a_failure_undoes_every_mount_of_the_request() {
        let mut mounts = FakeMounts::full_container();
        mounts.failing = Some("/etc/resolv.conf");
        let error = mount_plan(&mounts, &"/".to_owned(), PLAN).expect_err("fails");
        assert!(error.to_string().starts_with("bind-mounting the container's files at /etc/resolv.conf in the rootfs"), "{error}");
        assert_eq!(error.fault(), Fault::Node);
        let undone: Vec<_> = mounts.log().into_iter().filter(|entry| entry.starts_with("unmount")).collect();
        assert_eq!(undone, ["unmount /etc/hosts", "unmount /sys", "unmount /dev", "unmount /proc"], "in reverse order");
        assert!(mounts.covered.borrow().is_empty(), "nothing stays mounted");
    }

    #[test]
    fn the_container_must_have_a_real_proc_dev_and_sys() {
        let mut mounts = FakeMounts::full_container();
        mounts.container[0].2 = false;
        let error = mount_plan(&mounts, &"/".to_owned(), PLAN).expect_err("not procfs");
        assert!(error.to_string().starts_with("the container's /proc is not a proc filesystem"), "{error}");
        let mut mounts = FakeMounts::full_container();
        mounts.container.retain(|(path, _, _)| *path != "/dev");
        let error = mount_plan(&mounts, &"/".to_owned(), PLAN).expect_err("no /dev");
        assert!(
            error.to_string().starts_with("the container's /dev is missing, not a directory the container runtime provides"),
            "{error}"
        );
        assert!(mounts.covered.borrow().is_empty(), "/proc was undone");
    }

    #[test]
    fn a_read_only_remount_keeps_the_other_flags() {
        assert_eq!(kept_flags(FsFlags::ST_NOSUID | FsFlags::ST_NOEXEC | FsFlags::ST_RDONLY), MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC);
        assert_eq!(kept_flags(FsFlags::empty()), MsFlags::empty());
    }

    #[test]
    fn helper_arguments_round_trip() {
        for parent_pid in [None, Some(4242)] {
            let args = HelperArgs { pid: 7, pod_uid: POD_UID.into(), pod: "ns/dev".into(), parent_pid };
            let parsed = <HelperArgs as clap::Parser>::parse_from(std::iter::once("x".to_owned()).chain(args.to_args()));
            assert_eq!(
                (parsed.pid, parsed.pod_uid, parsed.pod, parsed.parent_pid),
                (7, POD_UID.to_owned(), "ns/dev".to_owned(), parent_pid)
            );
        }
    }

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
                .args(["prepare::tests::hardening_child", "--exact", "--nocapture", "--test-threads=1"])
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
