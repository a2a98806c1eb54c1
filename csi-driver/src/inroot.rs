//! Resolving a path inside a root directory that someone else controls, without ever leaving it.
//!
//! The consumer's rootfs belongs to the user: any of its directories may be a symlink to `/`, to
//! `..` or to a host path, and the consumer may swap them while we look. Where the node plugin
//! mounts inside it is therefore chosen one component at a time from file descriptors we hold:
//! each step opens exactly one name beneath the directory opened by the previous step
//! (`openat2` with `RESOLVE_BENEATH | RESOLVE_NO_XDEV | RESOLVE_NO_MAGICLINKS` and `O_NOFOLLOW`),
//! `..` returns to a descriptor already held (never above the root), and a symlink is read and
//! spliced into the remaining path as if the root were `/` — the kernel's `RESOLVE_IN_ROOT`
//! semantics, done by hand so that a missing component can be created on the way (a dangling
//! `/etc/resolv.conf -> ../run/systemd/resolve/stub-resolv.conf`) and so that every refusal can
//! name the component at fault. The caller then mounts onto `/proc/self/fd/<fd>` of the result,
//! so what it checked is exactly what it mounts on.
//!
//! The walk itself ([`resolve`]) is pure logic over the small [`Tree`] trait; [`FdTree`] is the
//! real one.

use std::collections::VecDeque;
use std::io;
use std::os::fd::OwnedFd;

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat, openat2, readlinkat};
use nix::sys::stat::{Mode, SFlag, fstat, mkdirat};

/// How many symlinks one resolution may follow (Linux's own limit).
pub const MAX_SYMLINKS: usize = 40;

/// What a destination must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Directory,
    RegularFile,
}

impl Kind {
    fn noun(self) -> &'static str {
        match self {
            Kind::Directory => "directory",
            Kind::RegularFile => "regular file",
        }
    }
}

/// Which components of a path may be symlinks (always followed inside the root, never out of it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Symlinks {
    /// None: `/proc`, `/dev` and `/sys` must be real directories of the rootfs.
    Refuse,
    /// Every component but the last (`/var/run -> /run` on the way to the token directory, whose
    /// own name must be a real directory: a link there could aim the mount at `/`).
    FollowParents,
    /// Every component (`/etc/resolv.conf -> ../run/systemd/resolve/stub-resolv.conf`).
    FollowAll,
}

/// One destination to resolve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Destination<'a> {
    /// Absolute path as the workload will see it (`/etc/hosts`).
    pub path: &'a str,
    pub kind: Kind,
    pub symlinks: Symlinks,
}

/// Where a destination ended up.
#[derive(Debug, PartialEq, Eq)]
pub enum Resolved<N> {
    /// It exists (or was created), is of the wanted kind, and nothing is mounted on it. `parent`
    /// and `name` let the caller reopen it after mounting (to reach the new mount's root).
    Ready { parent: N, name: String, node: N, resolved_path: String },
    /// Something is already mounted on it (an earlier preparation of this mount namespace).
    AlreadyMounted { resolved_path: String },
}

/// What one component turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub enum Entry<N> {
    Directory(N),
    RegularFile(N),
    Symlink(String),
    /// A device, socket, FIFO: never a mount point we want.
    Other(&'static str),
}

/// Why a single component could not be looked up.
#[derive(Debug)]
pub enum LookupError {
    Missing,
    /// Something is mounted on it.
    MountPoint,
    Io(io::Error),
}

/// The filesystem operations a walk needs, one component at a time.
pub trait Tree {
    type Node;
    /// Opens `name` (one component, never `.` or `..`) in `dir` without following a symlink or
    /// crossing into a mount.
    fn lookup(&self, dir: &Self::Node, name: &str) -> Result<Entry<Self::Node>, LookupError>;
    fn make_directory(&self, dir: &Self::Node, name: &str) -> io::Result<()>;
    /// Creates an empty file, failing if anything (even a dangling symlink) already has the name.
    fn make_file(&self, dir: &Self::Node, name: &str) -> io::Result<()>;
    fn duplicate(&self, node: &Self::Node) -> io::Result<Self::Node>;
}

/// Why a destination was refused. `at` is the offending path as resolved inside the root.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("the rootfs's {at} is a symlink; a root filesystem needs a real {at} {wanted} (replace the link with an empty {wanted})")]
    Symlink { at: String, wanted: &'static str },
    #[error("the rootfs's {at} is a {found}, not a {wanted}; make it a {wanted}")]
    WrongKind { at: String, found: &'static str, wanted: &'static str },
    #[error("the rootfs's {at} is not a directory, but the path continues below it")]
    NotADirectory { at: String },
    #[error("the rootfs's {at} is a mount point (a volume, or /proc, /dev, /sys); the path must stay on the rootfs's own filesystem")]
    CrossesMount { at: String },
    #[error("the rootfs's {at} does not exist")]
    Missing { at: String },
    #[error("the path resolves to the rootfs's directory {at} itself (through a symlink or `..`), not to a {wanted} below it")]
    ResolvesToAncestor { at: String, wanted: &'static str },
    #[error("more than {MAX_SYMLINKS} symlinks while resolving it (a symlink loop?)")]
    TooManyLinks,
    #[error("{action} the rootfs's {at}: {source}")]
    Io { action: &'static str, at: String, source: io::Error },
}

/// Resolves `destination` beneath `root`, creating what is missing when `create` is set.
pub fn resolve<T: Tree>(tree: &T, root: &T::Node, destination: Destination<'_>, create: bool) -> Result<Resolved<T::Node>, ResolveError> {
    let mut stack: Vec<(String, T::Node)> = Vec::new();
    let mut pending: VecDeque<String> = components(destination.path).collect();
    let mut links = 0;
    // A creation that loses a race (the name appeared meanwhile) is looked up again, a bounded
    // number of times.
    let mut creations = 0;
    let here = |stack: &[(String, T::Node)], name: &str| display(stack.iter().map(|(walked, _)| walked.as_str()).chain([name]));
    while let Some(name) = pending.pop_front() {
        if name == ".." {
            stack.pop();
            continue;
        }
        let is_last = pending.is_empty();
        let dir = stack.last().map_or(root, |(_, node)| node);
        match tree.lookup(dir, &name) {
            Ok(Entry::Symlink(target)) => {
                let may_follow = match destination.symlinks {
                    Symlinks::Refuse => false,
                    Symlinks::FollowParents => !is_last,
                    Symlinks::FollowAll => true,
                };
                if !may_follow {
                    return Err(ResolveError::Symlink { at: here(&stack, &name), wanted: destination.kind.noun() });
                }
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(ResolveError::TooManyLinks);
                }
                if target.starts_with('/') {
                    stack.clear();
                }
                for component in components(&target).collect::<Vec<_>>().into_iter().rev() {
                    pending.push_front(component);
                }
            }
            Ok(Entry::Directory(node)) if !is_last => stack.push((name, node)),
            Ok(_) if !is_last => return Err(ResolveError::NotADirectory { at: here(&stack, &name) }),
            Ok(entry) => {
                let resolved_path = here(&stack, &name);
                let node = match (entry, destination.kind) {
                    (Entry::Directory(node), Kind::Directory) | (Entry::RegularFile(node), Kind::RegularFile) => node,
                    (entry, wanted) => {
                        let found = match entry {
                            Entry::Directory(_) => "directory",
                            Entry::RegularFile(_) => "regular file",
                            Entry::Symlink(_) => "symlink",
                            Entry::Other(kind) => kind,
                        };
                        return Err(ResolveError::WrongKind { at: resolved_path, found, wanted: wanted.noun() });
                    }
                };
                let parent = tree.duplicate(dir).map_err(|source| ResolveError::Io {
                    action: "reopening the parent of",
                    at: resolved_path.clone(),
                    source,
                })?;
                return Ok(Resolved::Ready { parent, name, node, resolved_path });
            }
            Err(LookupError::MountPoint) if is_last => return Ok(Resolved::AlreadyMounted { resolved_path: here(&stack, &name) }),
            Err(LookupError::MountPoint) => return Err(ResolveError::CrossesMount { at: here(&stack, &name) }),
            Err(LookupError::Missing) if create && creations < MAX_SYMLINKS => {
                creations += 1;
                let at = here(&stack, &name);
                let made = if is_last && destination.kind == Kind::RegularFile {
                    tree.make_file(dir, &name)
                } else {
                    tree.make_directory(dir, &name)
                };
                match made {
                    Ok(()) => {}
                    Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(source) => return Err(ResolveError::Io { action: "creating", at, source }),
                }
                pending.push_front(name);
            }
            Err(LookupError::Missing) => return Err(ResolveError::Missing { at: here(&stack, &name) }),
            Err(LookupError::Io(source)) => return Err(ResolveError::Io { action: "opening", at: here(&stack, &name), source }),
        }
    }
    // The path ran out on a directory we had already entered (`/`, `..`, `etc/..`).
    Err(ResolveError::ResolvesToAncestor { at: display(stack.iter().map(|(walked, _)| walked.as_str())), wanted: destination.kind.noun() })
}

/// The components of a path, without empty and `.` ones (`..` is kept: it means something).
fn components(path: &str) -> impl Iterator<Item = String> + '_ {
    path.split('/').filter(|component| !component.is_empty() && *component != ".").map(str::to_owned)
}

fn display<'a>(components: impl Iterator<Item = &'a str>) -> String {
    let mut path = String::new();
    for component in components {
        path.push('/');
        path.push_str(component);
    }
    if path.is_empty() { "/".to_owned() } else { path }
}

/// The real tree: `O_PATH` file descriptors and one `openat2` per component.
#[derive(Clone, Copy, Debug, Default)]
pub struct FdTree;

impl Tree for FdTree {
    type Node = OwnedFd;

    fn lookup(&self, dir: &OwnedFd, name: &str) -> Result<Entry<OwnedFd>, LookupError> {
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_XDEV | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        let fd = match openat2(dir, name, how) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Err(LookupError::Missing),
            Err(Errno::EXDEV) => return Err(LookupError::MountPoint),
            Err(errno) => return Err(LookupError::Io(errno.into())),
        };
        let stat = fstat(&fd).map_err(|errno| LookupError::Io(errno.into()))?;
        Ok(match SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT {
            SFlag::S_IFDIR => Entry::Directory(fd),
            SFlag::S_IFREG => Entry::RegularFile(fd),
            SFlag::S_IFLNK => {
                let target = readlinkat(&fd, "").map_err(|errno| LookupError::Io(errno.into()))?;
                Entry::Symlink(target.to_string_lossy().into_owned())
            }
            SFlag::S_IFCHR => Entry::Other("character device"),
            SFlag::S_IFBLK => Entry::Other("block device"),
            SFlag::S_IFSOCK => Entry::Other("socket"),
            SFlag::S_IFIFO => Entry::Other("FIFO"),
            _ => Entry::Other("file of unknown type"),
        })
    }

    fn make_directory(&self, dir: &OwnedFd, name: &str) -> io::Result<()> {
        mkdirat(dir, name, Mode::from_bits_truncate(0o755)).map_err(io::Error::from)
    }

    fn make_file(&self, dir: &OwnedFd, name: &str) -> io::Result<()> {
        // O_EXCL | O_NOFOLLOW: never create through a symlink that appeared since the lookup.
        let flags = OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_WRONLY | OFlag::O_CLOEXEC;
        openat(dir, name, flags, Mode::from_bits_truncate(0o644)).map(drop).map_err(io::Error::from)
    }

    fn duplicate(&self, node: &OwnedFd) -> io::Result<OwnedFd> {
        node.try_clone()
    }
}

/// An in-memory [`Tree`] for unit tests (here and in `prepare`): paths (`/etc/hosts`) to what is
/// there; nodes are the paths themselves.
#[cfg(test)]
pub mod fake {
    use std::cell::RefCell;
    use std::collections::BTreeMap;
    use std::io;

    use super::{Entry, LookupError, Tree};

    /// An in-memory tree: paths (`/etc/hosts`) to what is there. Nodes are the paths themselves.
    #[derive(Default)]
    pub struct FakeTree {
        pub entries: RefCell<BTreeMap<String, FakeEntry>>,
    }

    #[derive(Clone, Debug, PartialEq, Eq)]
    pub enum FakeEntry {
        Directory,
        File,
        Link(&'static str),
        Device,
        Mounted,
    }

    impl FakeTree {
        pub fn with(entries: &[(&str, FakeEntry)]) -> Self {
            let tree = Self::default();
            tree.entries.borrow_mut().extend(entries.iter().map(|(path, entry)| ((*path).to_owned(), entry.clone())));
            tree
        }
        pub fn child(dir: &str, name: &str) -> String {
            if dir == "/" { format!("/{name}") } else { format!("{dir}/{name}") }
        }
        pub fn has(&self, path: &str) -> Option<FakeEntry> {
            self.entries.borrow().get(path).cloned()
        }
    }

    impl Tree for FakeTree {
        type Node = String;
        fn lookup(&self, dir: &String, name: &str) -> Result<Entry<String>, LookupError> {
            assert!(name != ".." && name != "." && !name.contains('/'), "one plain component at a time: {name:?}");
            let path = Self::child(dir, name);
            match self.has(&path) {
                None => Err(LookupError::Missing),
                Some(FakeEntry::Directory) => Ok(Entry::Directory(path)),
                Some(FakeEntry::File) => Ok(Entry::RegularFile(path)),
                Some(FakeEntry::Link(target)) => Ok(Entry::Symlink(target.to_owned())),
                Some(FakeEntry::Device) => Ok(Entry::Other("character device")),
                Some(FakeEntry::Mounted) => Err(LookupError::MountPoint),
            }
        }
        fn make_directory(&self, dir: &String, name: &str) -> io::Result<()> {
            self.entries.borrow_mut().insert(Self::child(dir, name), FakeEntry::Directory);
            Ok(())
        }
        fn make_file(&self, dir: &String, name: &str) -> io::Result<()> {
            self.entries.borrow_mut().insert(Self::child(dir, name), FakeEntry::File);
            Ok(())
        }
        fn duplicate(&self, node: &String) -> io::Result<String> {
            Ok(node.clone())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::{FakeEntry, FakeTree};
    use super::*;

    const PROC: Destination<'static> = Destination { path: "/proc", kind: Kind::Directory, symlinks: Symlinks::Refuse };
    const HOSTS: Destination<'static> = Destination { path: "/etc/hosts", kind: Kind::RegularFile, symlinks: Symlinks::FollowAll };
    const TOKEN: Destination<'static> =
        Destination { path: "/var/run/secrets/kubernetes.io/serviceaccount", kind: Kind::Directory, symlinks: Symlinks::FollowParents };

    fn ready_path(resolved: Resolved<String>) -> String {
        match resolved {
            Resolved::Ready { node, resolved_path, parent, name } => {
                assert_eq!(node, resolved_path);
                assert_eq!(FakeTree::child(&parent, &name), node);
                node
            }
            Resolved::AlreadyMounted { resolved_path } => panic!("unexpectedly mounted: {resolved_path}"),
        }
    }

    #[test]
    fn plain_directories_resolve_and_missing_ones_are_created() {
        let tree = FakeTree::with(&[("/proc", FakeEntry::Directory)]);
        assert_eq!(ready_path(resolve(&tree, &"/".to_owned(), PROC, true).expect("resolves")), "/proc");
        let tree = FakeTree::default();
        assert_eq!(ready_path(resolve(&tree, &"/".to_owned(), PROC, true).expect("created")), "/proc");
        assert_eq!(tree.has("/proc"), Some(FakeEntry::Directory));
        let error = resolve(&FakeTree::default(), &"/".to_owned(), PROC, false).expect_err("not created");
        assert!(matches!(error, ResolveError::Missing { ref at } if at == "/proc"), "{error}");
    }

    #[test]
    fn special_directories_may_not_be_symlinks_at_all() {
        for target in ["/", "..", "/etc", "proc-real"] {
            let tree = FakeTree::with(&[("/proc", FakeEntry::Link(target)), ("/proc-real", FakeEntry::Directory)]);
            let error = resolve(&tree, &"/".to_owned(), PROC, true).expect_err("a symlink");
            assert_eq!(
                error.to_string(),
                "the rootfs's /proc is a symlink; a root filesystem needs a real /proc directory (replace the link with an empty directory)"
            );
        }
    }

    #[test]
    fn file_symlinks_are_followed_inside_the_root_only() {
        // Absolute and relative links, `..` above the root: all land inside the root.
        for (target, expected) in [
            ("/etc/shadow", "/etc/shadow"),
            ("../../../../etc/shadow", "/etc/shadow"),
            ("../run/systemd/resolve/stub-resolv.conf", "/run/systemd/resolve/stub-resolv.conf"),
            ("./hosts.real", "/etc/hosts.real"),
        ] {
            let tree = FakeTree::with(&[
                ("/etc", FakeEntry::Directory),
                ("/etc/hosts", FakeEntry::Link(target)),
                ("/etc/shadow", FakeEntry::File),
                ("/etc/hosts.real", FakeEntry::File),
            ]);
            assert_eq!(ready_path(resolve(&tree, &"/".to_owned(), HOSTS, true).expect("resolves")), expected, "{target}");
        }
    }

    #[test]
    fn a_dangling_link_gets_its_target_created_inside_the_root() {
        let tree = FakeTree::with(&[
            ("/etc", FakeEntry::Directory),
            ("/etc/resolv.conf", FakeEntry::Link("../run/systemd/resolve/stub-resolv.conf")),
        ]);
        let resolv = Destination { path: "/etc/resolv.conf", ..HOSTS };
        assert_eq!(ready_path(resolve(&tree, &"/".to_owned(), resolv, true).expect("created")), "/run/systemd/resolve/stub-resolv.conf");
        assert_eq!(tree.has("/run/systemd/resolve"), Some(FakeEntry::Directory));
        assert_eq!(tree.has("/run/systemd/resolve/stub-resolv.conf"), Some(FakeEntry::File));
        assert_eq!(tree.has("/etc/resolv.conf"), Some(FakeEntry::Link("../run/systemd/resolve/stub-resolv.conf")), "the link is kept");
    }

    #[test]
    fn links_to_the_root_or_above_are_refused() {
        for target in ["/", "..", "../..", "/etc/.."] {
            let tree = FakeTree::with(&[("/etc", FakeEntry::Directory), ("/etc/hosts", FakeEntry::Link(target))]);
            let error = resolve(&tree, &"/".to_owned(), HOSTS, true).expect_err("the root is no file");
            assert!(matches!(error, ResolveError::ResolvesToAncestor { .. }), "{target}: {error}");
        }
        // A link to a directory is no file either.
        let tree = FakeTree::with(&[("/etc", FakeEntry::Directory), ("/etc/hosts", FakeEntry::Link("/etc"))]);
        let error = resolve(&tree, &"/".to_owned(), HOSTS, true).expect_err("a directory");
        assert_eq!(error.to_string(), "the rootfs's /etc is a directory, not a regular file; make it a regular file");
    }

    #[test]
    fn the_token_directory_follows_parent_links_but_not_its_own() {
        let tree = FakeTree::with(&[("/var", FakeEntry::Directory), ("/var/run", FakeEntry::Link("/run")), ("/run", FakeEntry::Directory)]);
        assert_eq!(
            ready_path(resolve(&tree, &"/".to_owned(), TOKEN, true).expect("created under /run")),
            "/run/secrets/kubernetes.io/serviceaccount"
        );
        let tree = FakeTree::with(&[
            ("/var", FakeEntry::Directory),
            ("/var/run", FakeEntry::Directory),
            ("/var/run/secrets", FakeEntry::Directory),
            ("/var/run/secrets/kubernetes.io", FakeEntry::Directory),
            ("/var/run/secrets/kubernetes.io/serviceaccount", FakeEntry::Link("/")),
        ]);
        let error = resolve(&tree, &"/".to_owned(), TOKEN, true).expect_err("its own name is a link");
        assert!(matches!(error, ResolveError::Symlink { ref at, .. } if at == "/var/run/secrets/kubernetes.io/serviceaccount"), "{error}");
    }

    #[test]
    fn mounts_on_the_way_are_refused_and_on_the_destination_mean_done() {
        let tree = FakeTree::with(&[("/proc", FakeEntry::Mounted)]);
        assert!(
            matches!(resolve(&tree, &"/".to_owned(), PROC, true), Ok(Resolved::AlreadyMounted { ref resolved_path }) if resolved_path == "/proc")
        );
        let tree = FakeTree::with(&[
            ("/etc", FakeEntry::Directory),
            ("/etc/hosts", FakeEntry::Link("/proc/sys/kernel/hostname")),
            ("/proc", FakeEntry::Mounted),
        ]);
        let error = resolve(&tree, &"/".to_owned(), HOSTS, true).expect_err("through a mount");
        assert!(matches!(error, ResolveError::CrossesMount { ref at } if at == "/proc"), "{error}");
    }

    #[test]
    fn loops_devices_and_files_in_the_way_are_refused() {
        let tree = FakeTree::with(&[("/etc", FakeEntry::Directory), ("/etc/hosts", FakeEntry::Link("hosts"))]);
        assert!(matches!(resolve(&tree, &"/".to_owned(), HOSTS, true), Err(ResolveError::TooManyLinks)));
        let tree = FakeTree::with(&[("/etc", FakeEntry::Directory), ("/etc/hosts", FakeEntry::Device)]);
        let error = resolve(&tree, &"/".to_owned(), HOSTS, true).expect_err("a device");
        assert!(error.to_string().contains("is a character device, not a regular file"), "{error}");
        let tree = FakeTree::with(&[("/etc", FakeEntry::File)]);
        let error = resolve(&tree, &"/".to_owned(), HOSTS, true).expect_err("a file on the way");
        assert!(matches!(error, ResolveError::NotADirectory { ref at } if at == "/etc"), "{error}");
    }
}
