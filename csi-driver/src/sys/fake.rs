//! A made-up node for unit tests: an in-memory mount table (rendered as mountinfo, so the real
//! parser reads it), directories and files, and processes with their cgroups, mount tables and
//! root directories. It behaves as the kernel does where the node plugin's decisions depend on
//! it: a mount needs an existing directory, `umount` of something that is not a mount point is
//! `EINVAL` and of a mount with mounts below it `EBUSY`, `rmdir` of a mount point is `EBUSY` and
//! of a non-empty directory `ENOTEMPTY`, and what was made on a tmpfs goes with it. Any operation
//! can be made to fail once ([`FakeSystem::fail_next`]) to cut a publish short.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::{
    ClaimOverlayDirs, FileIdentity, FileKind, FileStatus, FsStats, LayerUpper, MountedFilesystem, OVERLAY_COMPAT_OPTIONS, OverlayDirs,
    System, overlay_mount_data,
};
use crate::layout::{DataRoot, LAYER_TMPFS_SOURCE, TARGET_TMPFS_SOURCE};
use crate::node::UpperSupport;

/// One mount, as a mountinfo line shows it.
#[derive(Clone, Debug)]
pub struct FakeMount {
    pub id: u32,
    pub device: (u32, u32),
    pub root: PathBuf,
    pub mount_point: PathBuf,
    pub options: String,
    pub fs_type: String,
    pub source: String,
    pub super_options: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FakeEntry {
    Directory {
        mode: u32,
    },
    File {
        contents: Vec<u8>,
        mode: u32,
    },
    /// Planted by a tenant; the plugin must never follow it.
    Symlink {
        target: PathBuf,
    },
}

#[derive(Clone, Debug, Default)]
pub struct FakeProcess {
    pub cgroup: String,
    pub mountinfo: String,
    pub root: Option<FileIdentity>,
}

#[derive(Default)]
pub struct FakeState {
    pub entries: BTreeMap<PathBuf, FakeEntry>,
    pub mounts: Vec<FakeMount>,
    pub processes: BTreeMap<u32, FakeProcess>,
    /// `cgroup.procs` of the cgroup directories that exist.
    pub cgroup_dirs: HashMap<PathBuf, String>,
    /// The identities `identity_of` answers (directories without one are `NotFound`).
    pub identities: HashMap<PathBuf, FileIdentity>,
    /// Operations that fail the next time they are called, with this errno.
    pub failures: HashMap<&'static str, i32>,
    /// `statfs` magic numbers of mounted filesystems, by mount point (ext4's when not set).
    pub magics: HashMap<PathBuf, i64>,
    /// `st_dev` that `mounted_filesystem` answers for a path instead of its mount's device (a
    /// path that is not the root of the mount the table shows there).
    pub devices: HashMap<PathBuf, (u32, u32)>,
    /// What a probe of an unknown filesystem finds (both supported when not set).
    pub upper_support: Option<UpperSupport>,
    /// Overlays come up read-only (a data root on a filesystem overlayfs cannot write to).
    pub read_only_overlays: bool,
    /// The provider container exits at the worst moment of a publish: just before the overlay is
    /// mounted on its root filesystem, the runtime unmounts that root.
    pub provider_exits_at_mount: Option<ProviderExit>,
    /// Owners of entries other than root's (uid 0).
    pub owners: HashMap<PathBuf, u32>,
    /// Targets of the exec-wrapper's and the layer volumes' binds, with their sources: while
    /// mounted, `identity_of` answers the source's identity there, as a real mount point shows
    /// the root of what is mounted on it, and a walk of the target walks the source.
    pub binds: HashMap<PathBuf, PathBuf>,
    /// Directories marked opaque (`trusted.overlay.opaque` is `y`).
    pub opaque: std::collections::BTreeSet<PathBuf>,
    /// Every mount and unmount, in order (`mount tmpfs /t`, `umount /t`).
    pub calls: Vec<String>,
    /// Full process scans.
    pub scans: usize,
    next_mount_id: u32,
    next_device: u32,
}

/// What the runtime leaves of a container's root filesystem when the container exits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProviderExit {
    /// The mount point stays, an empty directory of the node's disk.
    EmptyDirectoryLeft,
    /// The mount point is removed too.
    DirectoryRemoved,
}

/// See the module comment. Clones share one node: a plugin restart is a new mounter over a
/// clone.
#[derive(Clone)]
pub struct FakeSystem {
    state: Arc<Mutex<FakeState>>,
}

impl Default for FakeSystem {
    /// A node with only its root filesystem mounted and `/` as its only directory.
    fn default() -> Self {
        let mut state = FakeState { next_mount_id: 1, next_device: 100, ..FakeState::default() };
        state.entries.insert(PathBuf::from("/"), FakeEntry::Directory { mode: 0o755 });
        state.push_mount((254, 0), Path::new("/"), Path::new("/"), "rw,relatime", "ext4", "/dev/vda", "rw");
        Self { state: Arc::new(Mutex::new(state)) }
    }
}

fn errno(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

impl FakeState {
    #[allow(clippy::too_many_arguments)]
    fn push_mount(&mut self, device: (u32, u32), root: &Path, at: &Path, options: &str, fs_type: &str, source: &str, super_options: &str) {
        self.mounts.push(FakeMount {
            id: self.next_mount_id,
            device,
            root: root.to_path_buf(),
            mount_point: at.to_path_buf(),
            options: options.into(),
            fs_type: fs_type.into(),
            source: source.into(),
            super_options: super_options.into(),
        });
        self.next_mount_id += 1;
    }

    fn new_device(&mut self) -> (u32, u32) {
        self.next_device += 1;
        (0, self.next_device)
    }

    fn failure(&mut self, operation: &'static str) -> io::Result<()> {
        match self.failures.remove(operation) {
            Some(code) => Err(errno(code)),
            None => Ok(()),
        }
    }

    /// Carries out [`FakeState::provider_exits_at_mount`] if `lower` is a mounted provider rootfs.
    fn provider_exit_before_mounting_on(&mut self, lower: &Path) {
        let Some(exit) = self.provider_exits_at_mount else { return };
        let Some(index) = self.mount_at(lower) else { return };
        self.provider_exits_at_mount = None;
        self.mounts.remove(index);
        self.processes.retain(|_, process| process.root != self.identities.get(lower).copied());
        match exit {
            ProviderExit::EmptyDirectoryLeft => {
                self.identities.insert(lower.to_path_buf(), FileIdentity { device: 0xfe00, inode: 4242 });
            }
            ProviderExit::DirectoryRemoved => {
                self.identities.remove(lower);
                self.entries.remove(lower);
            }
        }
    }

    fn is_directory(&self, path: &Path) -> bool {
        matches!(self.entries.get(path), Some(FakeEntry::Directory { .. }))
    }

    fn require_directory(&self, path: &Path) -> io::Result<()> {
        match self.entries.get(path) {
            Some(FakeEntry::Directory { .. }) => Ok(()),
            Some(FakeEntry::File { .. }) => Err(errno(nix::libc::ENOTDIR)),
            // Every lookup of the plugin's that matters is O_NOFOLLOW.
            Some(FakeEntry::Symlink { .. }) => Err(errno(nix::libc::ELOOP)),
            None => Err(errno(nix::libc::ENOENT)),
        }
    }

    /// A directory on the claim mounted at `claim_root` (device `device`), or `NotADirectory`.
    fn require_claim_directory(&self, claim_root: &Path, path: &Path, device: (u32, u32)) -> io::Result<()> {
        self.require_directory(path)
            .map_err(|error| io::Error::new(io::ErrorKind::NotADirectory, format!("{}: {error}", path.display())))?;
        let holder = self.mounts.iter().rev().find(|mount| path.starts_with(&mount.mount_point)).map(|mount| mount.device);
        if holder != Some(device) || !path.starts_with(claim_root) {
            return Err(io::Error::new(io::ErrorKind::NotADirectory, format!("{} is not on the claim's filesystem", path.display())));
        }
        Ok(())
    }

    /// `EROFS` when the mount holding `path` is read-only.
    fn require_writable(&self, path: &Path) -> io::Result<()> {
        let holder = self.mounts.iter().rev().find(|mount| path.starts_with(&mount.mount_point));
        match holder {
            Some(mount) if mount.options.starts_with("ro") => Err(errno(nix::libc::EROFS)),
            _ => Ok(()),
        }
    }

    fn make_directory(&mut self, path: &Path, mode: u32) -> io::Result<()> {
        if self.entries.contains_key(path) {
            return Err(errno(nix::libc::EEXIST));
        }
        self.require_writable(path)?;
        self.require_directory(path.parent().ok_or_else(|| errno(nix::libc::EEXIST))?)?;
        self.entries.insert(path.to_path_buf(), FakeEntry::Directory { mode });
        Ok(())
    }

    fn make_directories(&mut self, path: &Path, mode: u32) -> io::Result<()> {
        let missing: Vec<&Path> = path.ancestors().take_while(|dir| !self.entries.contains_key(*dir)).collect();
        for dir in missing.into_iter().rev() {
            self.make_directory(dir, mode)?;
        }
        self.require_directory(path)
    }

    fn mount_at(&self, path: &Path) -> Option<usize> {
        self.mounts.iter().rposition(|mount| mount.mount_point == path)
    }

    fn mountinfo(&self) -> String {
        let mut text = String::new();
        for (index, mount) in self.mounts.iter().enumerate() {
            let parent = self.mounts[..index]
                .iter()
                .rev()
                .find(|below| mount.mount_point.starts_with(&below.mount_point))
                .map_or(0, |below| below.id);
            let FakeMount { id, device: (major, minor), root, mount_point, options, fs_type, source, super_options } = mount;
            text.push_str(&format!(
                "{id} {parent} {major}:{minor} {} {} {options} - {fs_type} {source} {super_options}\n",
                root.display(),
                mount_point.display()
            ));
        }
        text
    }
}

impl FakeSystem {
    pub fn state(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes the next call of `operation` (a [`System`] method's name) fail with `code`.
    pub fn fail_next(&self, operation: &'static str, code: i32) {
        self.state().failures.insert(operation, code);
    }

    /// Creates a directory and its missing parents.
    pub fn add_directory(&self, path: &Path) {
        self.state().make_directories(path, 0o755).expect("a directory of the fake node");
    }

    /// Mounts a filesystem this plugin did not make.
    pub fn add_foreign_mount(&self, fs_type: &str, source: &str, at: &Path) {
        let mut state = self.state();
        let device = state.new_device();
        state.push_mount(device, Path::new("/"), at, "rw,relatime", fs_type, source, "rw");
    }

    /// A running provider container: its root filesystem mounted by the runtime at `rootfs` in
    /// the host's namespace, and process `pid`, whose cgroup names `container_id` and whose `/`
    /// is that very directory.
    pub fn add_provider(&self, pid: u32, container_id: &str, rootfs: &Path) {
        self.add_directory(rootfs);
        let mut state = self.state();
        let device = state.new_device();
        let overlay = "rw,lowerdir=/var/lib/containerd/snapshots/1/fs,upperdir=/var/lib/containerd/snapshots/2/fs,workdir=/var/lib/containerd/snapshots/2/work";
        state.push_mount(device, Path::new("/"), rootfs, "rw,relatime", "overlay", "overlay", overlay);
        let identity = FileIdentity { device: u64::from(device.1), inode: 2 };
        state.identities.insert(rootfs.to_path_buf(), identity);
        let process = FakeProcess {
            cgroup: format!("0::/kubepods/besteffort/pod-provider/{container_id}\n"),
            mountinfo: format!("1 0 {}:{} / / rw,relatime - overlay overlay {overlay}\n", device.0, device.1),
            root: Some(identity),
        };
        state.processes.insert(pid, process);
    }

    /// Kubelet's mount of a claim's volume at `at` (made with its parents), of a filesystem with
    /// this `statfs` magic; returns its device.
    pub fn add_claim_mount(&self, at: &Path, fs_type: &str, magic: i64) -> (u32, u32) {
        self.add_directory(at);
        let mut state = self.state();
        let device = state.new_device();
        let source = format!("/dev/loop{}", device.1);
        state.push_mount(device, Path::new("/"), at, "rw,relatime", fs_type, &source, "rw");
        state.magics.insert(at.to_path_buf(), magic);
        device
    }

    /// A symlink planted at `path` (its directory must exist).
    pub fn add_symlink(&self, path: &Path, target: &Path) {
        let mut state = self.state();
        state.require_directory(path.parent().expect("a parent")).expect("the link's directory exists");
        state.entries.insert(path.to_path_buf(), FakeEntry::Symlink { target: target.to_path_buf() });
    }

    /// The mount points at and below `path`, in mount order.
    pub fn mounts_under(&self, path: &Path) -> Vec<PathBuf> {
        self.state().mounts.iter().filter(|mount| mount.mount_point.starts_with(path)).map(|mount| mount.mount_point.clone()).collect()
    }

    /// The `lowerdir` of the overlay mounted at `at`, if one is.
    pub fn mounted_overlay_lower(&self, at: &Path) -> Option<PathBuf> {
        let state = self.state();
        let overlay = state.mounts.iter().rev().find(|mount| mount.mount_point == at && mount.fs_type == "overlay")?;
        overlay.super_options.split(',').find_map(|option| option.strip_prefix("lowerdir=")).map(PathBuf::from)
    }

    /// Writes a file (its directory must exist).
    pub fn put_file(&self, path: &Path, contents: &[u8]) {
        let mut state = self.state();
        state.require_directory(path.parent().expect("a parent")).expect("the file's directory exists");
        state.entries.insert(path.to_path_buf(), FakeEntry::File { contents: contents.to_vec(), mode: 0o600 });
    }
}

impl System for FakeSystem {
    fn mount_overlay(&self, dirs: &OverlayDirs<'_>, target: &Path) -> io::Result<()> {
        let mut state = self.state();
        state.failure("mount_overlay")?;
        state.provider_exit_before_mounting_on(dirs.lower);
        for dir in [dirs.lower, dirs.upper, dirs.work, target] {
            state.require_directory(dir)?;
        }
        let options = if state.read_only_overlays { "ro,relatime" } else { "rw,relatime" };
        let device = state.new_device();
        state.push_mount(device, Path::new("/"), target, options, "overlay", "overlay", &format!("rw,{}", overlay_mount_data(dirs)));
        state.calls.push(format!("mount overlay {}", target.display()));
        Ok(())
    }

    fn mount_claim_overlay(&self, dirs: &ClaimOverlayDirs<'_>, target: &Path) -> io::Result<()> {
        let mut state = self.state();
        state.failure("mount_claim_overlay")?;
        state.provider_exit_before_mounting_on(dirs.lower);
        let data_dir = dirs.claim_root.join(sc_api::storage::CLAIM_DATA_DIR);
        for dir in [data_dir.clone(), data_dir.join("upper"), data_dir.join("work")] {
            state.require_claim_directory(dirs.claim_root, &dir, dirs.device)?;
        }
        state.require_directory(dirs.lower)?;
        state.require_directory(target)?;
        let options = if state.read_only_overlays { "ro,nosuid,nodev,relatime" } else { "rw,nosuid,nodev,relatime" };
        let device = state.new_device();
        let data =
            format!("rw,lowerdir={},upperdir=/proc/self/fd/7,workdir=/proc/self/fd/8,{OVERLAY_COMPAT_OPTIONS}", dirs.lower.display());
        state.push_mount(device, Path::new("/"), target, options, "overlay", dirs.source, &data);
        state.calls.push(format!("mount claim overlay {}", target.display()));
        Ok(())
    }

    fn mounted_filesystem(&self, mount_point: &Path) -> io::Result<MountedFilesystem> {
        let mut state = self.state();
        state.failure("mounted_filesystem")?;
        state.require_directory(mount_point)?;
        let holder = state.mounts.iter().rev().find(|mount| mount_point.starts_with(&mount.mount_point)).expect("/ is mounted");
        let magic = state.magics.get(&holder.mount_point).copied().unwrap_or(0xEF53);
        let device = state.devices.get(mount_point).copied().unwrap_or(holder.device);
        Ok(MountedFilesystem { device, magic })
    }

    fn create_claim_dirs(&self, claim_root: &Path, device: (u32, u32)) -> io::Result<()> {
        let mut state = self.state();
        state.failure("create_claim_dirs")?;
        let data_dir = claim_root.join(sc_api::storage::CLAIM_DATA_DIR);
        for (dir, mode) in [(data_dir.clone(), 0o700), (data_dir.join("upper"), 0o755), (data_dir.join("work"), 0o700)] {
            if !state.entries.contains_key(&dir) {
                state.make_directory(&dir, mode)?;
            }
            state.require_claim_directory(claim_root, &dir, device)?;
        }
        Ok(())
    }

    fn probe_upper_support(&self, dir: &Path) -> io::Result<UpperSupport> {
        let mut state = self.state();
        state.failure("probe_upper_support")?;
        state.require_directory(dir)?;
        state.calls.push(format!("probe {}", dir.display()));
        Ok(state.upper_support.unwrap_or(UpperSupport { d_type: true, trusted_xattr: true }))
    }

    fn mount_target_tmpfs(&self, target: &Path) -> io::Result<()> {
        let mut state = self.state();
        state.failure("mount_target_tmpfs")?;
        state.require_directory(target)?;
        let device = state.new_device();
        state.push_mount(device, Path::new("/"), target, "rw,nosuid,nodev,noexec", "tmpfs", TARGET_TMPFS_SOURCE, "rw,size=64k,mode=755");
        state.calls.push(format!("mount tmpfs {}", target.display()));
        Ok(())
    }

    fn mount_layer_tmpfs(&self, target: &Path, size_bytes: u64) -> io::Result<()> {
        let mut state = self.state();
        state.failure("mount_layer_tmpfs")?;
        state.require_directory(target)?;
        let device = state.new_device();
        let super_options = format!("rw,size={}k,nr_inodes=16,mode=755", size_bytes / 1024);
        state.push_mount(device, Path::new("/"), target, "rw,nosuid,nodev,noexec", "tmpfs", LAYER_TMPFS_SOURCE, &super_options);
        state.calls.push(format!("mount layer tmpfs {}", target.display()));
        Ok(())
    }

    fn remount_read_only(&self, target: &Path) -> io::Result<()> {
        let mut state = self.state();
        state.failure("remount_read_only")?;
        let index = state.mount_at(target).ok_or_else(|| errno(nix::libc::EINVAL))?;
        let mount = &mut state.mounts[index];
        mount.options = format!("ro{}", mount.options.strip_prefix("rw").unwrap_or(&mount.options));
        state.calls.push(format!("remount ro {}", target.display()));
        Ok(())
    }

    fn bind_layer_read_only(&self, upper: &LayerUpper, target: &Path) -> io::Result<()> {
        let mut state = self.state();
        state.failure("bind_layer_read_only")?;
        let source = upper.path();
        let (device, root) = match upper {
            LayerUpper::DataRoot(path) => {
                state.require_directory(path)?;
                // The data root is on the root filesystem: the bind shows the upper's path as root.
                ((254, 0), path.clone())
            }
            LayerUpper::Claim { claim_root, device } => {
                let data_dir = claim_root.join(sc_api::storage::CLAIM_DATA_DIR);
                for dir in [&data_dir, &source] {
                    if !state.entries.contains_key(dir) {
                        return Err(io::Error::new(io::ErrorKind::NotFound, format!("{}: no such directory", dir.display())));
                    }
                    state.require_claim_directory(claim_root, dir, *device)?;
                }
                let below = source.strip_prefix(claim_root).map_err(|_| errno(nix::libc::EINVAL))?;
                (*device, Path::new("/").join(below))
            }
        };
        state.require_directory(target)?;
        state.push_mount(device, &root, target, "ro,nosuid,nodev,noexec", "ext4", "/dev/vda", "rw");
        state.binds.insert(target.to_path_buf(), source.clone());
        state.calls.push(format!("bind-layer {} {}", source.display(), target.display()));
        Ok(())
    }

    fn opaque_directories(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let mut state = self.state();
        state.failure("opaque_directories")?;
        let source = state.binds.get(dir).cloned().unwrap_or_else(|| dir.to_path_buf());
        state.require_directory(&source)?;
        state.calls.push(format!("walk {}", dir.display()));
        // Only directories are walked into, and a symlink is never one.
        let mut opaque: Vec<PathBuf> = state
            .entries
            .iter()
            .filter(|(path, entry)| matches!(entry, FakeEntry::Directory { .. }) && path.starts_with(&source))
            .filter(|(path, _)| state.opaque.contains(*path))
            .filter_map(|(path, _)| path.strip_prefix(&source).ok().map(|below| Path::new("/").join(below)))
            .collect();
        opaque.sort();
        Ok(opaque)
    }

    fn bind_mount_read_only(&self, source: &Path, target: &Path) -> io::Result<()> {
        let mut state = self.state();
        state.failure("bind_mount_read_only")?;
        state.require_directory(source)?;
        state.require_directory(target)?;
        // The data root is on the root filesystem: a bind of its directory shows that path as root.
        state.push_mount((254, 0), source, target, "ro,nosuid,nodev,noexec", "ext4", "/dev/vda", "rw");
        state.calls.push(format!("bind {} {}", source.display(), target.display()));
        Ok(())
    }

    fn bind_mount_read_only_executable(&self, source: &Path, target: &Path) -> io::Result<()> {
        let mut state = self.state();
        state.failure("bind_mount_read_only_executable")?;
        state.require_directory(source)?;
        state.require_directory(target)?;
        state.push_mount((254, 0), source, target, "ro,nosuid,nodev", "ext4", "/dev/vda", "rw");
        state.binds.insert(target.to_path_buf(), source.to_path_buf());
        state.calls.push(format!("bind-exec {} {}", source.display(), target.display()));
        Ok(())
    }

    fn bind_mount_nosuid_nodev(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.state();
        state.failure("bind_mount_nosuid_nodev")?;
        state.require_directory(dir)?;
        state.push_mount((254, 0), dir, dir, "rw,nosuid,nodev", "ext4", "/dev/vda", "rw");
        state.calls.push(format!("seal {}", dir.display()));
        Ok(())
    }

    fn unmount(&self, target: &Path) -> io::Result<()> {
        let mut state = self.state();
        state.failure("unmount")?;
        let index = state.mount_at(target).ok_or_else(|| errno(nix::libc::EINVAL))?;
        let below = state.mounts[index + 1..].iter().any(|mount| mount.mount_point != target && mount.mount_point.starts_with(target));
        if below {
            return Err(errno(nix::libc::EBUSY));
        }
        let mount = state.mounts.remove(index);
        if state.mount_at(target).is_none() {
            state.binds.remove(target);
        }
        if mount.fs_type == "tmpfs" {
            // What was made on the tmpfs goes with it.
            state.entries.retain(|path, _| path == target || !path.starts_with(target));
        }
        state.calls.push(format!("umount {}", target.display()));
        Ok(())
    }

    fn own_mountinfo(&self) -> io::Result<String> {
        let mut state = self.state();
        state.failure("own_mountinfo")?;
        Ok(state.mountinfo())
    }

    fn process_mountinfo(&self, pid: u32) -> io::Result<String> {
        self.state().processes.get(&pid).map(|process| process.mountinfo.clone()).ok_or_else(|| errno(nix::libc::ENOENT))
    }

    fn process_cgroups(&self) -> io::Result<Vec<(u32, String)>> {
        let mut state = self.state();
        state.scans += 1;
        Ok(state.processes.iter().map(|(pid, process)| (*pid, process.cgroup.clone())).collect())
    }

    fn process_cgroup(&self, pid: u32) -> io::Result<String> {
        self.state().processes.get(&pid).map(|process| process.cgroup.clone()).ok_or_else(|| errno(nix::libc::ENOENT))
    }

    fn first_cgroup_procs(&self, dirs: &[PathBuf]) -> io::Result<Option<(PathBuf, String)>> {
        let state = self.state();
        Ok(dirs.iter().find_map(|dir| state.cgroup_dirs.get(dir).map(|procs| (dir.clone(), procs.clone()))))
    }

    fn process_root_identity(&self, pid: u32) -> io::Result<FileIdentity> {
        self.state().processes.get(&pid).and_then(|process| process.root).ok_or_else(|| errno(nix::libc::ENOENT))
    }

    fn identity_of(&self, path: &Path) -> io::Result<FileIdentity> {
        let state = self.state();
        let path = state.binds.get(path).map_or(path, PathBuf::as_path);
        state.identities.get(path).copied().ok_or_else(|| errno(nix::libc::ENOENT))
    }

    fn file_status(&self, path: &Path) -> io::Result<FileStatus> {
        let state = self.state();
        let uid = state.owners.get(path).copied().unwrap_or(0);
        match state.entries.get(path) {
            Some(FakeEntry::Directory { mode }) => Ok(FileStatus { kind: FileKind::Directory, uid, mode: *mode }),
            Some(FakeEntry::File { mode, .. }) => Ok(FileStatus { kind: FileKind::Regular, uid, mode: *mode }),
            Some(FakeEntry::Symlink { .. }) => Ok(FileStatus { kind: FileKind::Symlink, uid, mode: 0o777 }),
            None => Err(errno(nix::libc::ENOENT)),
        }
    }

    fn exists(&self, path: &Path) -> bool {
        self.state().entries.contains_key(path)
    }

    fn is_directory(&self, path: &Path) -> bool {
        self.state().is_directory(path)
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state();
        state.failure("create_dir")?;
        state.make_directory(path, 0o755)
    }

    fn create_dir_all(&self, dir: &Path, mode: u32) -> io::Result<()> {
        let mut state = self.state();
        state.failure("create_dir_all")?;
        state.make_directories(dir, mode)
    }

    fn create_private_dirs(&self, base: &Path, dir: &Path, children: &[(&str, u32)]) -> io::Result<()> {
        let mut state = self.state();
        state.failure("create_private_dirs")?;
        state.require_directory(base)?;
        if !dir.starts_with(base) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{} is not below the data root", dir.display())));
        }
        state.make_directories(dir, 0o700)?;
        for (name, mode) in children {
            let child = dir.join(name);
            if !state.entries.contains_key(&child) {
                state.make_directory(&child, *mode)?;
            }
        }
        Ok(())
    }

    fn secure_data_root(&self, data: &DataRoot) -> io::Result<()> {
        let mut state = self.state();
        state.failure("secure_data_root")?;
        for dir in [data.path().to_path_buf(), data.containers_dir(), data.control_root(), data.records_dir()] {
            state.make_directories(&dir, 0o700)?;
            state.entries.insert(dir, FakeEntry::Directory { mode: 0o700 });
        }
        Ok(())
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state();
        state.failure("remove_dir")?;
        state.require_directory(path)?;
        if state.mount_at(path).is_some() {
            return Err(errno(nix::libc::EBUSY));
        }
        if state.entries.keys().any(|entry| entry.parent() == Some(path)) {
            return Err(errno(nix::libc::ENOTEMPTY));
        }
        state.entries.remove(path);
        Ok(())
    }

    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        match self.state().entries.get(path) {
            Some(FakeEntry::File { contents, .. }) => Ok(contents.clone()),
            Some(FakeEntry::Directory { .. }) => Err(errno(nix::libc::EISDIR)),
            Some(FakeEntry::Symlink { .. }) => Err(errno(nix::libc::ELOOP)),
            None => Err(errno(nix::libc::ENOENT)),
        }
    }

    fn write_file_durably(&self, path: &Path, _temporary: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
        let mut state = self.state();
        state.failure("write_file_durably")?;
        state.require_directory(path.parent().unwrap_or(Path::new("/")))?;
        state.require_writable(path)?;
        state.entries.insert(path.to_path_buf(), FakeEntry::File { contents: contents.to_vec(), mode });
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.state();
        state.require_directory(to.parent().unwrap_or(Path::new("/")))?;
        let entry = state.entries.remove(from).ok_or_else(|| errno(nix::libc::ENOENT))?;
        state.entries.insert(to.to_path_buf(), entry);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state();
        state.failure("remove_file")?;
        match state.entries.get(path) {
            Some(FakeEntry::File { .. } | FakeEntry::Symlink { .. }) => {
                state.entries.remove(path);
                Ok(())
            }
            Some(FakeEntry::Directory { .. }) => Err(errno(nix::libc::EISDIR)),
            None => Err(errno(nix::libc::ENOENT)),
        }
    }

    fn sync_directory(&self, dir: &Path) -> io::Result<()> {
        self.state().require_directory(dir)
    }

    fn list_directory(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let state = self.state();
        state.require_directory(dir)?;
        Ok(state.entries.keys().filter(|entry| entry.parent() == Some(dir)).cloned().collect())
    }

    fn statvfs(&self, path: &Path) -> io::Result<FsStats> {
        let state = self.state();
        if !state.entries.contains_key(path) {
            return Err(errno(nix::libc::ENOENT));
        }
        let holder = state.mounts.iter().rev().find(|mount| path.starts_with(&mount.mount_point)).expect("/ is mounted");
        Ok(FsStats {
            read_only: holder.options.starts_with("ro"),
            bytes_total: 10 << 30,
            bytes_free: 8 << 30,
            bytes_available: 7 << 30,
            inodes_total: 1 << 20,
            inodes_free: 1 << 19,
        })
    }
}
