//! Root tests of the rootfs size limit (`csi_driver::quota`): real sparse images, real mkfs.ext4,
//! real loop devices and ext4 mounts, and an overlay over them mounted exactly as the node plugin
//! mounts a consumer's rootfs. Each test skips with a message when not run as root. Every loop
//! device and mount a test makes is removed when it ends, also when it fails.

mod common;

use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use csi_driver::quota::{self, LoopSystem, RealLoopSystem, RootfsFs};
use csi_driver::sys::{OverlayDirs, overlay_mount_data};
use sys_mount::{Mount, UnmountFlags};

/// What these tests need root for, said when they skip as a normal user.
const NEEDS_ROOT: &str = "loop devices, mkfs, mounts";

const NOBODY: u32 = 65534;

/// A test's directory, on the node's real disk (not a tmpfs: the image is a sparse file on the
/// data root's filesystem). On drop, everything mounted below it is unmounted and any loop
/// device still backed by a file in it is detached, whatever the test did.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Self {
        let dir = tempfile::Builder::new().prefix("sc-quota-").tempdir_in("/var/tmp").expect("scratch dir");
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn rootfs(&self, name: &str) -> RootfsFs {
        RootfsFs::new(self.path().join("containers/team-a").join(name).join("6d1c2b7e-uid"))
    }

    /// A small "image": the overlay's lower layer.
    fn lower(&self) -> PathBuf {
        let lower = self.path().join("lower");
        for dir in ["etc", "bin", "usr/share/doc"] {
            std::fs::create_dir_all(lower.join(dir)).expect("lower dir");
        }
        std::fs::write(lower.join("etc/os-release"), "NAME=lower\n").expect("lower file");
        for index in 0..50 {
            std::fs::write(lower.join(format!("usr/share/doc/file-{index}")), "doc\n").expect("lower file");
        }
        lower
    }

    fn mounts_below(&self) -> Vec<PathBuf> {
        let text = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        let entries = csi_driver::mountinfo::parse(&text).expect("parse mountinfo");
        csi_driver::mountinfo::mounts_under(&entries, self.path()).into_iter().map(|entry| entry.mount_point.clone()).collect()
    }

    fn loops_below(&self) -> Vec<quota::AttachedLoop> {
        RealLoopSystem::default()
            .attached_loops()
            .expect("loop devices")
            .into_iter()
            .filter(|attached| attached.backing_file.starts_with(self.path()))
            .collect()
    }

    /// Waits for the kernel to detach the loop devices of this scratch directory's images (an
    /// autoclear detach follows the unmount, not always at once).
    fn wait_for_no_loops(&self) -> Vec<quota::AttachedLoop> {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let left = self.loops_below();
            if left.is_empty() || Instant::now() > deadline {
                return left;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for mount in self.mounts_below() {
            if sys_mount::unmount(&mount, UnmountFlags::empty()).is_err() {
                let _ = sys_mount::unmount(&mount, UnmountFlags::DETACH);
            }
        }
        for attached in self.wait_for_no_loops() {
            let _ = Command::new("losetup").arg("-d").arg(attached.device.path()).status();
        }
    }
}

fn mount_overlay(lower: &Path, mounted: &quota::Mounted, target: &Path) {
    std::fs::create_dir_all(target).expect("overlay target");
    let data = overlay_mount_data(&OverlayDirs { lower, upper: &mounted.upper, work: &mounted.work });
    Mount::builder().fstype("overlay").data(&data).mount("overlay", target).expect("mount the overlay");
}

fn unmount(target: &Path) {
    sys_mount::unmount(target, UnmountFlags::empty()).expect("unmount");
}

fn size(text: &str) -> quota::RootfsSize {
    quota::parse_size(text).expect("size")
}

fn mkfs() -> quota::E2fsprogs {
    quota::resolve_e2fsprogs(&RealLoopSystem::default(), None).expect("mkfs.ext4 (e2fsprogs) on this machine")
}

fn sysfs_loop_attribute(device: quota::LoopDevice, attribute: &str) -> String {
    std::fs::read_to_string(format!("/sys/block/loop{}/loop/{attribute}", device.index)).expect("sysfs attribute").trim().to_owned()
}

/// Writes 1 MiB chunks to `path` until the first error, which it returns with the bytes written.
fn fill(path: &Path) -> (u64, std::io::Error) {
    let mut file = std::fs::File::create(path).expect("create the filler");
    let chunk = vec![0x5au8; 1 << 20];
    let mut written = 0u64;
    loop {
        match file.write_all(&chunk).and_then(|()| file.sync_data()) {
            Ok(()) => written += chunk.len() as u64,
            Err(error) => return (written, error),
        }
    }
}

#[test]
fn a_rootfs_stops_at_its_size_with_enospc_and_keeps_its_data_across_a_reattach_as_root() {
    if common::skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let scratch = Scratch::new();
    let system = RealLoopSystem::default();
    let rootfs = scratch.rootfs("dev");
    let lower = scratch.lower();
    let started = Instant::now();
    let mounted = quota::ensure_mounted(&system, &rootfs, size("96Mi"), &mkfs()).expect("create, attach and mount");
    eprintln!("96Mi rootfs created, attached and mounted in {:?}", started.elapsed());
    assert!(mounted.created);

    // The image: a sparse 0600 file in a 0700 directory; the mount point root-only.
    let image = std::fs::metadata(rootfs.image()).expect("image");
    assert_eq!((image.len(), image.mode() & 0o7777), (96 << 20, 0o600));
    assert!(image.blocks() * 512 < 8 << 20, "sparse: {} bytes allocated", image.blocks() * 512);
    assert_eq!(std::fs::metadata(rootfs.container_dir()).expect("dir").mode() & 0o777, 0o700);
    assert_eq!(std::fs::metadata(rootfs.fs_dir()).expect("fs").mode() & 0o777, 0o700);
    assert_eq!(std::fs::metadata(&mounted.upper).expect("upper").mode() & 0o777, 0o755);
    assert!(!mounted.upper.join("lost+found").exists(), "lost+found is not in the rootfs");

    // Autoclear and direct I/O on the device; ext4 with d_type and xattrs, mounted nosuid,nodev.
    assert_eq!(sysfs_loop_attribute(mounted.device, "autoclear"), "1");
    assert_eq!(sysfs_loop_attribute(mounted.device, "dio"), "1");
    let features = Command::new("dumpe2fs").arg("-h").arg(rootfs.image()).output().expect("dumpe2fs");
    let features = String::from_utf8_lossy(&features.stdout);
    let features = features.lines().find(|line| line.starts_with("Filesystem features:")).expect("features line");
    for feature in ["filetype", "ext_attr", "extent", "has_journal"] {
        assert!(features.split_whitespace().any(|word| word == feature), "{feature} in {features}");
    }
    let entries = csi_driver::mountinfo::parse(&std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo")).expect("parse");
    let fs_mount = csi_driver::mountinfo::mount_at(&entries, &rootfs.fs_dir()).expect("the fs is mounted");
    assert_eq!(fs_mount.fs_type, "ext4");
    assert!(
        fs_mount.mount_options.iter().any(|option| option == "nosuid") && fs_mount.mount_options.iter().any(|option| option == "nodev")
    );
    assert!(fs_mount.super_options.iter().any(|option| option == "discard"), "{:?}", fs_mount.super_options);

    // The consumer's view, mounted as the plugin mounts it.
    let view = scratch.path().join("view");
    mount_overlay(&lower, &mounted, &view);
    assert_eq!(std::fs::read_to_string(view.join("etc/os-release")).expect("lower file"), "NAME=lower\n");

    // A writer in the container fills it: ENOSPC for that writer, and it goes on running.
    let (written, error) = fill(&view.join("fill"));
    assert_eq!(error.raw_os_error(), Some(nix::libc::ENOSPC), "{error}");
    assert!((70 << 20..96 << 20).contains(&written), "{written} bytes before ENOSPC");
    let host = nix::sys::statvfs::statvfs(scratch.path()).expect("statvfs of the host disk");
    assert!(host.blocks_available() * host.fragment_size() > 1 << 30, "the node's disk still has space");
    let dd = Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", view.join("dd-fill").display()))
        .args(["bs=1M", "count=200", "conv=fsync"])
        .output()
        .expect("dd");
    assert!(!dd.status.success());
    assert!(String::from_utf8_lossy(&dd.stderr).contains("No space left on device"), "{}", String::from_utf8_lossy(&dd.stderr));

    // Stats are the filesystem's own, and it is full.
    let usage = quota::usage(&system, &rootfs).expect("usage");
    eprintln!("full: {usage:?}");
    assert_eq!(usage.limit_bytes, 96 << 20);
    assert!(usage.bytes_total <= 96 << 20 && usage.bytes_total > 80 << 20, "{usage:?}");
    assert!(usage.bytes_available < 1 << 20, "{usage:?}");
    assert!(usage.bytes_used >= written, "{usage:?}");
    assert!(usage.inodes_used >= 4 && usage.inodes_total >= 16384, "{usage:?}");
    assert!(usage.node_bytes_allocated <= (96 << 20) + (1 << 20), "{usage:?}");

    // Deleting a file makes room again.
    std::fs::remove_file(view.join("fill")).expect("remove the filler");
    std::fs::remove_file(view.join("dd-fill")).expect("remove dd's file");
    // ... and gives the node its disk back (mounted with discard), at the next journal commit.
    nix::unistd::sync();
    let allocated = quota::usage(&system, &rootfs).expect("usage").node_bytes_allocated;
    assert!(allocated < 16 << 20, "{allocated} bytes of the node's disk after the delete");
    std::fs::write(view.join("after"), vec![1u8; 10 << 20]).expect("a write after the delete");
    std::fs::write(view.join("etc/motd"), "kept\n").expect("write");
    std::fs::remove_file(view.join("etc/os-release")).expect("whiteout a lower file");

    // A node reboot: everything unmounted and detached, then attached and mounted again.
    unmount(&view);
    quota::unmount(&system, &rootfs).expect("unmount the rootfs");
    assert!(scratch.mounts_below().is_empty(), "{:?}", scratch.mounts_below());
    assert!(scratch.wait_for_no_loops().is_empty(), "autoclear detached the device");
    let again = quota::ensure_mounted(&system, &rootfs, size("96Mi"), &mkfs()).expect("attach and mount again");
    assert!(!again.created);
    mount_overlay(&lower, &again, &view);
    assert_eq!(std::fs::read_to_string(view.join("etc/motd")).expect("kept file"), "kept\n");
    assert_eq!(std::fs::metadata(view.join("after")).expect("kept file").len(), 10 << 20);
    assert!(!view.join("etc/os-release").exists(), "the whiteout is kept");

    // A second publish while mounted (another consumer, a retry, a plugin restart) reuses it.
    let reused = quota::ensure_mounted(&system, &rootfs, size("96Mi"), &mkfs()).expect("reuse");
    assert_eq!(reused.device, again.device);
    assert_eq!(scratch.loops_below().len(), 1, "attached once");

    // While the overlay is up, the rootfs is neither unmounted (the kernel would let it go, and
    // the overlay would keep it alive out of sight) nor deleted.
    assert!(matches!(quota::unmount(&system, &rootfs), Err(quota::QuotaError::InUse { .. })));
    assert!(matches!(quota::delete(&system, &rootfs), Err(quota::QuotaError::InUse { .. })));
    assert!(rootfs.image().exists() && !scratch.mounts_below().is_empty());

    // Teardown: no mount, no loop device, no image.
    unmount(&view);
    quota::delete(&system, &rootfs).expect("delete");
    assert!(!rootfs.image().exists() && !rootfs.fs_dir().exists());
    assert!(scratch.mounts_below().is_empty(), "{:?}", scratch.mounts_below());
    assert!(scratch.loops_below().is_empty(), "{:?}", scratch.loops_below());
}

/// `id` reports `euid=` only when the effective uid differs from the real one.
fn euid_of(binary: &Path, as_uid: Option<u32>) -> String {
    let mut command = Command::new(binary);
    if let Some(uid) = as_uid {
        command.uid(uid).gid(uid);
    }
    let output = command.output().expect("run id");
    assert!(output.status.success(), "{}: {}", binary.display(), String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.split_whitespace().find_map(|word| word.strip_prefix("euid=")).unwrap_or("same").to_owned()
}

fn install_setuid_id(path: &Path, owner: u32) {
    std::fs::copy("/usr/bin/id", path).expect("copy id");
    nix::unistd::chown(path, Some(nix::unistd::Uid::from_raw(owner)), None).expect("chown");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o4755)).expect("setuid");
}

#[test]
fn setuid_binaries_and_device_nodes_work_in_the_container_but_not_through_the_nosuid_nodev_host_path_as_root() {
    if common::skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let scratch = Scratch::new();
    // Only the overlay's mount point is reachable for an unprivileged user: the scratch dir is
    // opened up to 0755 like a kubelet pod directory, the data root below stays as quota makes it.
    std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod scratch");
    let system = RealLoopSystem::default();
    let rootfs = scratch.rootfs("suid");
    let lower = scratch.lower();
    std::fs::set_permissions(&lower, std::fs::Permissions::from_mode(0o755)).expect("chmod lower");
    install_setuid_id(&lower.join("bin/id-root-lower"), 0);
    let mounted = quota::ensure_mounted(&system, &rootfs, size("64Mi"), &mkfs()).expect("mounted");
    let view = scratch.path().join("view");
    mount_overlay(&lower, &mounted, &view);

    // Made inside the container, so they live in the upper, on the nosuid,nodev filesystem.
    install_setuid_id(&view.join("bin/id-root-upper"), 0);
    install_setuid_id(&view.join("bin/id-nobody-upper"), NOBODY);
    nix::sys::stat::mknod(
        &view.join("null-upper"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 3),
    )
    .expect("mknod in the container");
    let upper = &mounted.upper;
    assert!(upper.join("bin/id-root-upper").exists() && upper.join("null-upper").exists(), "both are in the upper");

    // In the container's view, exactly as in a plain container.
    assert_eq!(euid_of(&view.join("bin/id-root-lower"), Some(NOBODY)), "0(root)", "setuid root binary of the image");
    assert_eq!(euid_of(&view.join("bin/id-root-upper"), Some(NOBODY)), "0(root)", "setuid root binary made in the container");
    assert!(euid_of(&view.join("bin/id-nobody-upper"), None).starts_with("65534"), "setuid to another user");
    let mut null = std::fs::OpenOptions::new().write(true).open(view.join("null-upper")).expect("open the device node in the container");
    null.write_all(b"discarded").expect("write to /dev/null");
    drop(null);
    // A whiteout (a 0:0 character device in the upper) still hides a lower file on nodev.
    std::fs::remove_file(view.join("etc/os-release")).expect("delete a lower file");
    unmount(&view);
    mount_overlay(&lower, &mounted, &view);
    assert!(!view.join("etc/os-release").exists(), "the whiteout works on a nodev upper");
    assert_eq!(euid_of(&view.join("bin/id-root-upper"), Some(NOBODY)), "0(root)", "after a remount");

    // Through the host path, setuid bits and device nodes do nothing (root runs them: an
    // unprivileged user cannot even reach them, the mount point is 0700).
    assert_eq!(euid_of(&upper.join("bin/id-nobody-upper"), None), "same", "nosuid on the host path");
    let opened = std::fs::OpenOptions::new().write(true).open(upper.join("null-upper"));
    assert_eq!(opened.map(drop).map_err(|error| error.raw_os_error()), Err(Some(nix::libc::EACCES)), "nodev on the host path");
    let as_nobody = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("test -e {}", upper.join("bin/id-root-upper").display()))
        .uid(NOBODY)
        .gid(NOBODY)
        .status()
        .expect("sh");
    assert!(!as_nobody.success(), "an unprivileged user reaches nothing in the data root");

    unmount(&view);
    quota::delete(&system, &rootfs).expect("delete");
    assert!(scratch.wait_for_no_loops().is_empty());
}

fn e2fsck_is_clean(image: &Path) {
    let fsck = Command::new("e2fsck").arg("-fn").arg(image).output().expect("e2fsck");
    assert!(fsck.status.success(), "e2fsck: {}{}", String::from_utf8_lossy(&fsck.stdout), String::from_utf8_lossy(&fsck.stderr));
}

#[test]
fn a_rootfs_grows_at_its_next_start_and_never_shrinks_as_root() {
    if common::skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let scratch = Scratch::new();
    let system = RealLoopSystem::default();
    let rootfs = scratch.rootfs("grow");
    let lower = scratch.lower();
    let mounted = quota::ensure_mounted(&system, &rootfs, size("64Mi"), &mkfs()).expect("mounted");
    let view = scratch.path().join("view");
    mount_overlay(&lower, &mounted, &view);
    std::fs::write(view.join("before"), vec![7u8; 20 << 20]).expect("data before the grow");

    // Not while it is in use: the image and the filesystem stay as they are.
    let refused = quota::ensure_mounted(&system, &rootfs, size("256Mi"), &mkfs()).expect_err("in use");
    assert!(matches!(refused, quota::QuotaError::GrowWhileInUse { .. }), "{refused}");
    assert_eq!(std::fs::metadata(rootfs.image()).expect("image").len(), 64 << 20);

    // At the next start it grows, before it is attached.
    unmount(&view);
    quota::unmount(&system, &rootfs).expect("unmount");
    assert!(scratch.wait_for_no_loops().is_empty());
    let started = Instant::now();
    let grown = quota::ensure_mounted(&system, &rootfs, size("256Mi"), &mkfs()).expect("grow");
    eprintln!("64Mi -> 256Mi grown and mounted in {:?}", started.elapsed());
    assert_eq!((grown.grown_from, grown.size), (Some(64 << 20), 256 << 20));
    let after = quota::usage(&system, &rootfs).expect("usage");
    assert!(after.bytes_total > 240 << 20 && after.limit_bytes == 256 << 20, "{after:?}");
    mount_overlay(&lower, &grown, &view);
    assert!(std::fs::read(view.join("before")).expect("data kept").iter().all(|byte| *byte == 7));
    std::fs::write(view.join("after"), vec![8u8; 150 << 20]).expect("more than the old size fits now");
    let (_, error) = fill(&view.join("fill"));
    assert_eq!(error.raw_os_error(), Some(nix::libc::ENOSPC), "the new size is the limit");
    std::fs::remove_file(view.join("fill")).expect("remove the filler");

    // A smaller size is refused and changes nothing.
    let refused = quota::ensure_mounted(&system, &rootfs, size("128Mi"), &mkfs()).expect_err("shrink");
    assert!(matches!(refused, quota::QuotaError::CannotShrink { .. }), "{refused}");
    assert_eq!(std::fs::metadata(rootfs.image()).expect("image").len(), 256 << 20);
    unmount(&view);
    quota::unmount(&system, &rootfs).expect("unmount");
    assert!(scratch.wait_for_no_loops().is_empty());
    e2fsck_is_clean(&rootfs.image());

    // A crash between lengthening the image and growing the filesystem: the next start finishes it.
    std::fs::OpenOptions::new().write(true).open(rootfs.image()).expect("image").set_len(320 << 20).expect("lengthen");
    let healed = quota::ensure_mounted(&system, &rootfs, size("320Mi"), &mkfs()).expect("heal");
    assert_eq!(healed.grown_from, None);
    assert!(quota::usage(&system, &rootfs).expect("usage").bytes_total > 300 << 20);
    mount_overlay(&lower, &healed, &view);
    assert_eq!(std::fs::metadata(view.join("after")).expect("data kept").len(), 150 << 20);
    unmount(&view);
    quota::unmount(&system, &rootfs).expect("unmount");
    assert!(scratch.wait_for_no_loops().is_empty());
    e2fsck_is_clean(&rootfs.image());
    quota::delete(&system, &rootfs).expect("delete");

    // mke2fs leaves out a too-small last block group (128Mi + 4Ki makes a 128Mi filesystem):
    // that is no grow to finish at the next start.
    let odd = scratch.rootfs("odd");
    let first = quota::ensure_mounted(&system, &odd, size("131076Ki"), &mkfs()).expect("odd size");
    let geometry = quota::parse_ext4_superblock(&system.read_superblock_area(&first.device.path()).expect("superblock")).expect("ext4");
    assert_eq!(geometry.bytes(), 128 << 20, "{geometry:?}");
    quota::unmount(&system, &odd).expect("unmount");
    assert!(scratch.wait_for_no_loops().is_empty());
    let image_before = std::fs::metadata(odd.image()).expect("image").modified().expect("mtime");
    quota::ensure_mounted(&system, &odd, size("131076Ki"), &mkfs()).expect("mount again");
    quota::unmount(&system, &odd).expect("unmount");
    assert!(scratch.wait_for_no_loops().is_empty());
    let geometry = quota::parse_ext4_superblock(&system.read_superblock_area(&odd.image()).expect("superblock")).expect("ext4");
    assert_eq!(geometry.bytes(), 128 << 20, "not resized");
    assert!(std::fs::metadata(odd.image()).expect("image").modified().expect("mtime") >= image_before);
    quota::delete(&system, &odd).expect("delete");
}

#[test]
fn the_legacy_attach_of_kernels_before_5_8_also_autoclears_as_root() {
    if common::skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let scratch = Scratch::new();
    let system = RealLoopSystem::with_legacy_attach();
    let rootfs = scratch.rootfs("legacy");
    let mounted = quota::ensure_mounted(&system, &rootfs, size("64Mi"), &mkfs()).expect("mounted");
    assert_eq!(sysfs_loop_attribute(mounted.device, "autoclear"), "1");
    assert_eq!(sysfs_loop_attribute(mounted.device, "dio"), "1");
    std::fs::write(mounted.upper.join("file"), "data\n").expect("write");
    quota::unmount(&system, &rootfs).expect("unmount");
    assert!(scratch.wait_for_no_loops().is_empty(), "autoclear set by LOOP_SET_STATUS64");
    quota::delete(&system, &rootfs).expect("delete");
}

#[test]
fn concurrent_attaches_racing_for_free_devices_each_get_their_own_as_root() {
    if common::skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let scratch = Scratch::new();
    let system = RealLoopSystem::default();
    let images: Vec<(RootfsFs, quota::FileId)> = (0..6)
        .map(|index| {
            let rootfs = scratch.rootfs(&format!("race-{index}"));
            let (info, _) = quota::ensure_image(&system, &rootfs, size("64Mi"), &mkfs()).expect("image");
            (rootfs, info.id)
        })
        .collect();
    // Both threads ask LOOP_CTL_GET_FREE at once and often get the same index; the loser's
    // attach fails with EBUSY and is retried.
    let handles: Vec<quota::LoopHandle> = std::thread::scope(|scope| {
        let (left, right) = images.split_at(3);
        let workers: Vec<_> = [left, right]
            .into_iter()
            .map(|half| {
                scope.spawn(move || {
                    half.iter()
                        .map(|(rootfs, id)| quota::attach(&RealLoopSystem::default(), rootfs, *id).expect("attach"))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers.into_iter().flat_map(|worker| worker.join().expect("worker")).collect()
    });
    let mut devices: Vec<u32> = handles.iter().map(|handle| handle.device.index).collect();
    devices.sort_unstable();
    devices.dedup();
    assert_eq!(devices.len(), 6, "one device per image: {devices:?}");
    for ((_, id), handle) in images.iter().zip(&handles) {
        assert_eq!(handle.backing, Some(*id));
    }
    // An image already attached is found, not attached again.
    let found = quota::attach(&system, &images[0].0, images[0].1).expect("attach again");
    assert_eq!(found.device, handles[0].device);
    // Closing the last descriptor of an unmounted autoclear device detaches it.
    drop(found);
    drop(handles);
    assert!(scratch.wait_for_no_loops().is_empty(), "{:?}", scratch.loops_below());
}

#[test]
fn a_missing_mkfs_names_the_flag_to_set_as_root() {
    if common::skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let error = quota::resolve_e2fsprogs(&RealLoopSystem::default(), Some(Path::new("/nonexistent/mkfs.ext4"))).expect_err("missing");
    assert_eq!(
        error.to_string(),
        "mkfs.ext4 is not at /nonexistent/mkfs.ext4: install e2fsprogs on the node, or set --mkfs-ext4 to the path of mkfs.ext4 \
         (e2fsck and resize2fs are used from the same directory)"
    );
    // A file that is not an executable is not a mkfs either.
    let scratch = Scratch::new();
    let not_executable = scratch.path().join("mkfs.ext4");
    std::fs::OpenOptions::new().create_new(true).write(true).mode(0o644).open(&not_executable).expect("file");
    assert!(quota::resolve_e2fsprogs(&RealLoopSystem::default(), Some(&not_executable)).is_err());
}

fn drop_caches() {
    nix::unistd::sync();
    // Best effort: a machine that forbids it still gives figures, only warmer ones.
    let _ = std::fs::write("/proc/sys/vm/drop_caches", "3");
}

fn min_and_median(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort_unstable();
    (samples[0], samples[samples.len() / 2])
}

/// The cost of a first publish's rootfs: create + format + attach + mount of a 1 GiB and a 20
/// GiB image, and the disk the empty image takes (after the kernel had time for any lazy
/// initialisation). A measurement, not a check: run with
/// `cargo test -p csi-driver --test quota_root -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement; prints figures"]
fn measure_create_format_attach_mount_as_root() {
    if common::skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let scratch = Scratch::new();
    let system = RealLoopSystem::default();
    let tools = mkfs();
    for text in ["1Gi", "20Gi"] {
        let mut creates = Vec::new();
        let mut remounts = Vec::new();
        let mut allocated = Vec::new();
        for repeat in 0..5 {
            let rootfs = scratch.rootfs(&format!("measure-{text}-{repeat}"));
            drop_caches();
            let started = Instant::now();
            quota::ensure_mounted(&system, &rootfs, size(text), &tools).expect("create");
            creates.push(started.elapsed());
            // ext4lazyinit would zero inode tables now if mke2fs had not marked them zeroed.
            std::thread::sleep(Duration::from_secs(2));
            allocated.push(std::fs::metadata(rootfs.image()).expect("image").blocks() * 512);
            quota::unmount(&system, &rootfs).expect("unmount");
            assert!(scratch.wait_for_no_loops().is_empty());
            drop_caches();
            let started = Instant::now();
            quota::ensure_mounted(&system, &rootfs, size(text), &tools).expect("attach and mount");
            remounts.push(started.elapsed());
            quota::delete(&system, &rootfs).expect("delete");
        }
        let (create_min, create_median) = min_and_median(creates);
        let (remount_min, remount_median) = min_and_median(remounts);
        allocated.sort_unstable();
        eprintln!(
            "{text}: create+format+attach+mount min {create_min:?} median {create_median:?}; attach+mount of an existing image min \
             {remount_min:?} median {remount_median:?}; empty image on disk {} KiB (max of 5)",
            allocated[allocated.len() - 1] / 1024
        );
    }
}
