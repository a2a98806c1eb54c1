//! The mount plan: what a preparation mounts, in which order, and how (pure data, [`PLAN`]), and
//! carrying it out all or nothing through the [`Mounts`] trait, so that the order, the optional
//! sources and the undoing are unit-tested with a fake; `super::fd_mounts` holds the real one.

use std::io;

use super::error::{HelperError, mount_error};
use super::protocol::HelperReport;
use crate::inroot::{self, Destination, Kind, Resolved, Symlinks, Tree};

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
pub fn mount_plan<M: Mounts>(mounts: &M, rootfs: &M::Node, plan: &[Step]) -> Result<HelperReport, HelperError> {
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

fn prepare_step<M: Mounts>(mounts: &M, rootfs: &M::Node, step: &Step) -> Result<StepOutcome<M::Node>, HelperError> {
    let path = step.destination.path;
    let source = match mounts.container_source(path, step.source_follows_symlinks, step.destination.kind) {
        Ok(Some(source)) => source,
        Ok(None) if step.optional => return Ok(StepOutcome::Absent),
        Ok(None) => {
            return Err(HelperError::UnexpectedContainer {
                path: path.into(),
                found: "missing".into(),
                expected: "a directory the container runtime provides",
            });
        }
        Err(found) => {
            return Err(HelperError::UnexpectedContainer { path: path.into(), found, expected: "what the runtime mounts there" });
        }
    };
    if path == "/proc"
        && !mounts.is_proc(&source).map_err(|source| HelperError::Mount {
            action: "inspecting the container's",
            path: path.into(),
            source,
        })?
    {
        return Err(HelperError::UnexpectedContainer {
            path: "/proc".into(),
            found: "not a proc filesystem".into(),
            expected: "a proc filesystem",
        });
    }
    let (parent, name, node, resolved_path) = match inroot::resolve(mounts, rootfs, step.destination, true) {
        Ok(Resolved::Ready { parent, name, node, resolved_path }) => (parent, name, node, resolved_path),
        Ok(Resolved::AlreadyMounted { resolved_path }) => return Ok(StepOutcome::AlreadyMounted { resolved_path }),
        Err(problem) => return Err(HelperError::Destination { destination: path, problem }),
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

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;
    use crate::inroot::fake::{FakeEntry, FakeTree};
    use crate::prepare::Fault;

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
}
