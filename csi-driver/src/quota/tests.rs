use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use super::*;

const DEV: (u64, u64) = (8, 1);

struct FakeFile {
    inode: u64,
    len: u64,
    /// The size of the filesystem in it; `None` until formatted.
    fs_bytes: Option<u64>,
}

#[derive(Default)]
struct State {
    files: BTreeMap<PathBuf, FakeFile>,
    dirs: BTreeMap<PathBuf, u32>,
    programs: BTreeSet<PathBuf>,
    mkfs_failure: Option<String>,
    fsck_failure: Option<String>,
    /// Attached loop devices: index → backing file.
    loops: BTreeMap<u32, PathBuf>,
    /// Free devices that another process attaches between our `free_loop` and our attach.
    taken_by_others: Vec<u32>,
    /// Devices that a mount in another namespace keeps attached after ours is gone.
    held_elsewhere: BTreeSet<u32>,
    /// Mounts, oldest first: (target, loop index), or a foreign mount.
    mounts: Vec<(PathBuf, Option<u32>)>,
    /// Overlay mounts: (target, upper directory).
    overlays: Vec<(PathBuf, PathBuf)>,
    /// Binds of a directory of a mounted image's filesystem: (target, loop index, the directory).
    binds: Vec<(PathBuf, u32, PathBuf)>,
    /// Mounts of a loop device's whole filesystem elsewhere (propagated copies): (target, index).
    copies: Vec<(PathBuf, u32)>,
    unmount_busy: bool,
    calls: Vec<String>,
    next_inode: u64,
    sleeps: u32,
}

#[derive(Default)]
struct Fake(Mutex<State>);

fn loop_device(index: u32) -> LoopDevice {
    LoopDevice { index, major: 7, minor: index }
}

fn superblock(geometry: Ext4Geometry) -> Vec<u8> {
    let mut start = vec![0u8; SUPERBLOCK_READ_LEN];
    let superblock = &mut start[SUPERBLOCK_OFFSET..];
    superblock[0x38..0x3a].copy_from_slice(&0xef53u16.to_le_bytes());
    superblock[0x18..0x1c].copy_from_slice(&(geometry.block_size.trailing_zeros() - 10).to_le_bytes());
    superblock[0x60..0x64].copy_from_slice(&0x80u32.to_le_bytes());
    superblock[0x04..0x08].copy_from_slice(&(geometry.blocks as u32).to_le_bytes());
    superblock[0x150..0x154].copy_from_slice(&((geometry.blocks >> 32) as u32).to_le_bytes());
    start
}

impl Fake {
    fn with(configure: impl FnOnce(&mut State)) -> Self {
        let fake = Fake::default();
        {
            let mut state = fake.state();
            for tool in ["mkfs.ext4", "e2fsck", "resize2fs"] {
                state.programs.insert(Path::new("/usr/sbin").join(tool));
            }
            state.next_inode = 100;
            configure(&mut state);
        }
        fake
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().expect("fake state")
    }

    fn calls(&self) -> Vec<String> {
        std::mem::take(&mut self.state().calls)
    }

    fn id_of(state: &State, path: &Path) -> Option<FileId> {
        state.files.get(path).map(|file| FileId { major: DEV.0, minor: DEV.1, inode: file.inode })
    }

    fn log(&self, call: String) {
        self.state().calls.push(call);
    }
}

impl LoopSystem for Fake {
    fn file_info(&self, path: &Path) -> io::Result<Option<FileInfo>> {
        let state = self.state();
        Ok(state.files.get(path).map(|file| FileInfo {
            id: FileId { major: DEV.0, minor: DEV.1, inode: file.inode },
            len: file.len,
            allocated: 4096,
        }))
    }

    fn create_dir_all(&self, path: &Path, mode: u32) -> io::Result<()> {
        self.log(format!("mkdir {} {mode:o}", path.display()));
        self.state().dirs.entry(path.to_owned()).or_insert(mode);
        Ok(())
    }

    fn set_dir_mode(&self, path: &Path, mode: u32) -> io::Result<()> {
        self.log(format!("chmod {} {mode:o}", path.display()));
        self.state().dirs.insert(path.to_owned(), mode);
        Ok(())
    }

    fn create_sparse_file(&self, path: &Path, len: u64) -> io::Result<()> {
        self.log(format!("truncate {} {len}", path.display()));
        let mut state = self.state();
        if state.files.contains_key(path) {
            return Err(io::ErrorKind::AlreadyExists.into());
        }
        state.next_inode += 1;
        let inode = state.next_inode;
        state.files.insert(path.to_owned(), FakeFile { inode, len, fs_bytes: None });
        Ok(())
    }

    fn set_len(&self, path: &Path, len: u64) -> io::Result<()> {
        self.log(format!("set_len {} {len}", path.display()));
        self.state().files.get_mut(path).ok_or(io::ErrorKind::NotFound)?.len = len;
        Ok(())
    }

    fn rename_durably(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.log(format!("rename {} {}", from.display(), to.display()));
        let mut state = self.state();
        let file = state.files.remove(from).ok_or(io::ErrorKind::NotFound)?;
        state.files.insert(to.to_owned(), file);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state();
        if state.files.remove(path).is_some() {
            state.calls.push(format!("rm {}", path.display()));
        }
        Ok(())
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        self.log(format!("rmdir {}", path.display()));
        self.state().dirs.remove(path);
        Ok(())
    }

    fn is_executable(&self, path: &Path) -> bool {
        self.state().programs.contains(path)
    }

    fn run(&self, program: &Path, args: &[OsString]) -> io::Result<ProgramResult> {
        self.log(format!("run {}", program.display()));
        let mut state = self.state();
        let tool = program.file_name().and_then(|name| name.to_str()).unwrap_or_default();
        let failure = match tool {
            "mkfs.ext4" => state.mkfs_failure.clone().map(|stderr| (1, stderr)),
            "e2fsck" => state.fsck_failure.clone().map(|stderr| (4, stderr)),
            _ => None,
        };
        if let Some((code, stderr)) = failure {
            return Ok(ProgramResult { success: false, code: Some(code), status: format!("exit status: {code}"), stderr });
        }
        let image = PathBuf::from(args.last().ok_or(io::ErrorKind::InvalidInput)?);
        let file = state.files.get_mut(&image).ok_or(io::ErrorKind::NotFound)?;
        if tool != "e2fsck" {
            // mkfs makes, and resize2fs grows, the filesystem to the file's length.
            file.fs_bytes = Some(file.len);
        }
        Ok(ProgramResult { success: true, code: Some(0), status: "exit status: 0".into(), stderr: String::new() })
    }

    fn attached_loops(&self) -> io::Result<Vec<AttachedLoop>> {
        let state = self.state();
        Ok(state.loops.iter().map(|(index, backing)| AttachedLoop { device: loop_device(*index), backing_file: backing.clone() }).collect())
    }

    fn open_loop(&self, device: LoopDevice) -> io::Result<LoopHandle> {
        let state = self.state();
        let backing = state.loops.get(&device.index).and_then(|path| Self::id_of(&state, path));
        Ok(LoopHandle { device, backing, _open: None })
    }

    fn free_loop(&self) -> io::Result<u32> {
        let state = self.state();
        Ok((0..).find(|index| !state.loops.contains_key(index)).unwrap_or(0))
    }

    fn configure_loop(&self, index: u32, image: &Path, options: LoopOptions) -> io::Result<LoopHandle> {
        assert_eq!(options, LOOP_OPTIONS);
        let mut state = self.state();
        if let Some(position) = state.taken_by_others.iter().position(|taken| *taken == index) {
            state.taken_by_others.remove(position);
            state.loops.insert(index, PathBuf::from("/elsewhere/disk.img"));
            return Err(io::Error::from_raw_os_error(nix::libc::EBUSY));
        }
        state.calls.push(format!("attach loop{index} {}", image.display()));
        state.loops.insert(index, image.to_owned());
        let backing = Self::id_of(&state, image);
        Ok(LoopHandle { device: loop_device(index), backing, _open: None })
    }

    fn read_superblock_area(&self, path: &Path) -> io::Result<Vec<u8>> {
        let state = self.state();
        let image = match path.to_str().and_then(|path| path.strip_prefix("/dev/loop")) {
            Some(index) => state.loops.get(&index.parse().map_err(io::Error::other)?).cloned().ok_or(io::ErrorKind::NotFound)?,
            None => path.to_owned(),
        };
        let file = state.files.get(&image).ok_or(io::ErrorKind::NotFound)?;
        Ok(match file.fs_bytes {
            Some(bytes) => superblock(Ext4Geometry { block_size: BLOCK_SIZE, blocks: bytes / BLOCK_SIZE }),
            None => vec![0; SUPERBLOCK_READ_LEN],
        })
    }

    fn mountinfo(&self) -> io::Result<String> {
        let state = self.state();
        let mut text = String::from("1 0 8:1 / / rw - ext4 /dev/sda1 rw\n");
        for (id, (target, index)) in state.mounts.iter().enumerate() {
            text.push_str(&match index {
                Some(index) => format!("{} 1 7:{index} / {} rw,nosuid,nodev - ext4 /dev/loop{index} rw\n", id + 2, target.display()),
                None => format!("{} 1 0:55 / {} rw - tmpfs tmpfs rw\n", id + 2, target.display()),
            });
        }
        for (id, (target, index, directory)) in state.binds.iter().enumerate() {
            text.push_str(&format!(
                "{} 1 7:{index} {} {} ro,nosuid,nodev,noexec - ext4 /dev/loop{index} rw\n",
                id + 200,
                directory.display(),
                target.display()
            ));
        }
        for (id, (target, index)) in state.copies.iter().enumerate() {
            text.push_str(&format!("{} 1 7:{index} / {} rw,nosuid,nodev - ext4 /dev/loop{index} rw\n", id + 300, target.display()));
        }
        for (id, (target, upper)) in state.overlays.iter().enumerate() {
            text.push_str(&format!(
                "{} 1 0:60 / {} rw - overlay overlay rw,lowerdir=/l,upperdir={},workdir=/w\n",
                id + 100,
                target.display(),
                upper.display()
            ));
        }
        Ok(text)
    }

    fn mount_ext4(&self, device: LoopDevice, target: &Path, nosuid_nodev: bool) -> io::Result<()> {
        assert!(nosuid_nodev);
        self.log(format!("mount loop{} {}", device.index, target.display()));
        self.state().mounts.push((target.to_owned(), Some(device.index)));
        Ok(())
    }

    fn unmount(&self, target: &Path) -> io::Result<()> {
        let mut state = self.state();
        if state.unmount_busy {
            return Err(io::Error::from_raw_os_error(nix::libc::EBUSY));
        }
        state.calls.push(format!("umount {}", target.display()));
        let position = state.mounts.iter().rposition(|(mounted, _)| mounted == target).ok_or(io::ErrorKind::InvalidInput)?;
        let (_, index) = state.mounts.remove(position);
        // Autoclear: the device goes with its last mount, unless held elsewhere.
        if let Some(index) = index
            && !state.held_elsewhere.contains(&index)
            && !state.mounts.iter().any(|(_, other)| *other == Some(index))
        {
            state.loops.remove(&index);
        }
        Ok(())
    }

    fn statvfs(&self, _path: &Path) -> io::Result<FsUsage> {
        Ok(FsUsage {
            bytes_total: 1000 * 4096,
            bytes_free: 600 * 4096,
            bytes_available: 600 * 4096,
            inodes_total: 16384,
            inodes_free: 16000,
        })
    }

    fn sleep(&self, _duration: Duration) {
        self.state().sleeps += 1;
    }
}

fn rootfs() -> RootfsFs {
    RootfsFs::new("/data/containers/team-a/dev/uid-1")
}

fn size(text: &str) -> RootfsSize {
    parse_size(text).expect("a valid size")
}

fn mkfs() -> E2fsprogs {
    E2fsprogs { mkfs: PathBuf::from("/usr/sbin/mkfs.ext4") }
}

/// A fake whose image exists (formatted, `bytes` long) and is mounted on loop `index`.
fn mounted_fake(bytes: u64, index: u32) -> Fake {
    Fake::with(|state| {
        state.files.insert(rootfs().image(), FakeFile { inode: 7, len: bytes, fs_bytes: Some(bytes) });
        state.loops.insert(index, rootfs().image());
        state.mounts.push((rootfs().fs_dir(), Some(index)));
    })
}

#[test]
fn the_layout_puts_image_mount_point_upper_and_work_in_the_sc_directory() {
    let rootfs = rootfs();
    assert_eq!(rootfs.image(), Path::new("/data/containers/team-a/dev/uid-1/rootfs.img"));
    assert_eq!(rootfs.partial_image(), Path::new("/data/containers/team-a/dev/uid-1/rootfs.img.partial"));
    assert_eq!(rootfs.fs_dir(), Path::new("/data/containers/team-a/dev/uid-1/fs"));
    assert_eq!(rootfs.upper_dir(), Path::new("/data/containers/team-a/dev/uid-1/fs/upper"));
    assert_eq!(rootfs.work_dir(), Path::new("/data/containers/team-a/dev/uid-1/fs/work"));
}

#[test]
fn mounted_rootfs_filesystems_are_the_ext4_mounts_at_sc_mount_points() {
    let text = "1 0 8:1 / / rw - ext4 /dev/sda1 rw
2 1 7:0 / /data/containers/team-a/dev/uid-1/fs rw,nosuid,nodev - ext4 /dev/loop0 rw,discard
3 1 7:1 / /data/containers/team-b/web/uid-2/fs rw,nosuid,nodev - ext4 /dev/loop1 rw,discard
4 1 0:50 / /data/containers/team-c/x/uid-3/fs rw - tmpfs tmpfs rw
5 1 7:2 / /data/containers/team-a/fs rw - ext4 /dev/loop2 rw
6 1 7:3 / /elsewhere/containers/team-a/dev/uid-1/fs rw - ext4 /dev/loop3 rw
";
    let entries = mountinfo::parse(text).expect("mountinfo");
    assert_eq!(
        mounted_rootfs_filesystems(&entries, Path::new("/data")),
        [RootfsFs::new("/data/containers/team-a/dev/uid-1"), RootfsFs::new("/data/containers/team-b/web/uid-2")]
    );
}

#[test]
fn mkfs_gets_4k_blocks_a_dense_inode_table_no_reserve_and_no_zeroing() {
    let args: Vec<String> =
        mkfs_args(Path::new("/d/rootfs.img.partial"), size("1Gi")).into_iter().map(|arg| arg.into_string().expect("utf-8")).collect();
    assert_eq!(
        args.join(" "),
        "-t ext4 -F -q -b 4096 -I 256 -N 131072 -m 0 -e remount-ro -E root_owner=0:0,lazy_itable_init=1,lazy_journal_init=1 -- \
         /d/rootfs.img.partial"
    );
    assert_eq!(inode_count(size("64Mi")), 16384, "small filesystems still hold a source tree");
    assert_eq!(inode_count(size("128Mi")), 16384);
    assert_eq!(inode_count(size("20Gi")), 20 << 17);
}

#[test]
fn superblocks_are_read_for_block_size_and_count() {
    let geometry = Ext4Geometry { block_size: 4096, blocks: (1 << 32) + 5 };
    assert_eq!(parse_ext4_superblock(&superblock(geometry)), Some(geometry));
    assert_eq!(geometry.bytes(), ((1 << 32) + 5) * 4096);
    let mut without_64bit = superblock(Ext4Geometry { block_size: 1024, blocks: 77 });
    without_64bit[SUPERBLOCK_OFFSET + 0x60] = 0;
    // The high word is ignored without the 64bit feature.
    without_64bit[SUPERBLOCK_OFFSET + 0x150] = 9;
    assert_eq!(parse_ext4_superblock(&without_64bit), Some(Ext4Geometry { block_size: 1024, blocks: 77 }));
    assert_eq!(parse_ext4_superblock(&vec![0; SUPERBLOCK_READ_LEN]), None, "no magic");
    assert_eq!(parse_ext4_superblock(&superblock(geometry)[..1500]), None, "too short");
    let mut huge_blocks = superblock(geometry);
    huge_blocks[SUPERBLOCK_OFFSET + 0x18] = 40;
    assert_eq!(parse_ext4_superblock(&huge_blocks), None, "no such block size");
}

#[test]
fn a_size_grows_stays_or_is_refused() {
    let image = Path::new("/d/rootfs.img");
    assert_eq!(plan_size(image, 1 << 30, size("1Gi")).ok(), Some(SizeChange::Keep));
    assert_eq!(plan_size(image, 1 << 30, size("2Gi")).ok(), Some(SizeChange::Grow { from: 1 << 30, to: 2 << 30 }));
    assert_eq!(
        plan_size(image, 2 << 30, size("1Gi")).map_err(|error| error.to_string()).err().as_deref(),
        Some(
            "the rootfs image /d/rootfs.img is 2Gi, and 1Gi was asked for: a rootfs cannot be made smaller; ask for 2Gi \
             or more, or delete the StoppableContainer to start with a new rootfs"
        )
    );
    let filesystem = |bytes: u64| Ext4Geometry { block_size: 4096, blocks: bytes / 4096 };
    let grow = SizeChange::Grow { from: 1 << 30, to: 2 << 30 };
    assert!(needs_offline_resize(filesystem(1 << 30), 2 << 30, grow));
    assert!(!needs_offline_resize(filesystem(1 << 30), 1 << 30, SizeChange::Keep));
    // mke2fs left out a too-small last block group: not worth an e2fsck -f at every start.
    assert!(!needs_offline_resize(filesystem((128 << 20) - (8 << 20)), 128 << 20, SizeChange::Keep));
    // A grow that a crash cut short after the image was lengthened.
    assert!(needs_offline_resize(filesystem(1 << 30), 2 << 30, SizeChange::Keep));
}

#[test]
fn mkfs_is_the_setting_or_the_first_default_that_exists() {
    let fake = Fake::with(|state| {
        state.programs.clear();
        state.programs.insert(PathBuf::from("/sbin/mkfs.ext4"));
    });
    assert_eq!(resolve_e2fsprogs(&fake, None).ok(), Some(E2fsprogs { mkfs: PathBuf::from("/sbin/mkfs.ext4") }));
    assert_eq!(
        resolve_e2fsprogs(&fake, Some(Path::new("/opt/e2fs/mkfs.ext4"))).map_err(|error| error.to_string()).err().as_deref(),
        Some(
            "mkfs.ext4 is not at /opt/e2fs/mkfs.ext4: install e2fsprogs on the node, or set --mkfs-ext4 to the path of \
             mkfs.ext4 (e2fsck and resize2fs are used from the same directory)"
        )
    );
    fake.state().programs.clear();
    assert_eq!(
        resolve_e2fsprogs(&fake, None).map_err(|error| error.to_string()).err().as_deref(),
        Some(
            "mkfs.ext4 is not at /usr/sbin/mkfs.ext4 or /sbin/mkfs.ext4: install e2fsprogs on the node, or set \
             --mkfs-ext4 to the path of mkfs.ext4 (e2fsck and resize2fs are used from the same directory)"
        )
    );
}

#[test]
fn a_first_publish_makes_formats_attaches_and_mounts() {
    let fake = Fake::with(|_| {});
    let mounted = ensure_mounted(&fake, &rootfs(), size("1Gi"), &mkfs()).expect("mounted");
    assert_eq!(
        mounted,
        Mounted {
            device: loop_device(0),
            upper: rootfs().upper_dir(),
            work: rootfs().work_dir(),
            size: 1 << 30,
            created: true,
            grown_from: None
        }
    );
    let dir = "/data/containers/team-a/dev/uid-1";
    assert_eq!(
        fake.calls(),
        [
            format!("mkdir {dir} 700"),
            format!("truncate {dir}/rootfs.img.partial 1073741824"),
            "run /usr/sbin/mkfs.ext4".to_owned(),
            format!("rename {dir}/rootfs.img.partial {dir}/rootfs.img"),
            format!("mkdir {dir}/fs 700"),
            format!("attach loop0 {dir}/rootfs.img"),
            format!("mount loop0 {dir}/fs"),
            format!("chmod {dir}/fs 700"),
            format!("mkdir {dir}/fs/upper 755"),
            format!("mkdir {dir}/fs/work 700"),
        ]
    );
}

#[test]
fn a_publish_of_a_mounted_rootfs_reuses_it() {
    let fake = mounted_fake(1 << 30, 3);
    let mounted = ensure_mounted(&fake, &rootfs(), size("1Gi"), &mkfs()).expect("mounted");
    assert_eq!((mounted.device, mounted.created), (loop_device(3), false));
    let calls = fake.calls();
    assert!(calls.iter().all(|call| !call.starts_with("run") && !call.starts_with("attach") && !call.starts_with("mount")), "{calls:?}");
}

#[test]
fn an_image_still_attached_after_a_restart_is_mounted_from_that_device() {
    // Its mount here is gone, but a mount elsewhere (another namespace) keeps loop5 attached:
    // a second device over the same image would corrupt it.
    let fake = mounted_fake(1 << 30, 5);
    fake.state().mounts.clear();
    let mounted = ensure_mounted(&fake, &rootfs(), size("1Gi"), &mkfs()).expect("mounted");
    assert_eq!(mounted.device, loop_device(5));
    let calls = fake.calls();
    assert!(calls.contains(&"mount loop5 /data/containers/team-a/dev/uid-1/fs".to_owned()), "{calls:?}");
    assert!(calls.iter().all(|call| !call.starts_with("attach")), "{calls:?}");
}

#[test]
fn an_attachment_to_another_file_of_the_same_name_is_not_reused() {
    let fake = Fake::with(|state| {
        state.files.insert(rootfs().image(), FakeFile { inode: 7, len: 1 << 30, fs_bytes: Some(1 << 30) });
        state.files.insert(PathBuf::from("/other/rootfs.img"), FakeFile { inode: 8, len: 1 << 30, fs_bytes: Some(1 << 30) });
        state.loops.insert(0, PathBuf::from("/other/rootfs.img"));
    });
    let mounted = ensure_mounted(&fake, &rootfs(), size("1Gi"), &mkfs()).expect("mounted");
    assert_eq!(mounted.device, loop_device(1));
}

#[test]
fn a_free_device_taken_by_another_process_is_retried() {
    let fake = Fake::with(|state| state.taken_by_others = vec![0, 1]);
    let mounted = ensure_mounted(&fake, &rootfs(), size("64Mi"), &mkfs()).expect("mounted");
    assert_eq!(mounted.device, loop_device(2));

    let fake = Fake::with(|state| state.taken_by_others = (0..ATTACH_ATTEMPTS).collect());
    let error = ensure_mounted(&fake, &rootfs(), size("64Mi"), &mkfs()).expect_err("no device");
    assert_eq!(
        error.to_string(),
        "no loop device could be attached to /data/containers/team-a/dev/uid-1/rootfs.img after 16 tries (another \
         process took each free one first); kubelet will retry"
    );
}

#[test]
fn a_failed_mkfs_leaves_no_image_and_says_why() {
    let fake = Fake::with(|state| state.mkfs_failure = Some("mke2fs: Device size reported to be zero.\n".into()));
    let error = ensure_mounted(&fake, &rootfs(), size("64Mi"), &mkfs()).expect_err("mkfs fails");
    assert_eq!(
        error.to_string(),
        "formatting the rootfs image /data/containers/team-a/dev/uid-1/rootfs.img.partial with /usr/sbin/mkfs.ext4 \
         failed (exit status: 1): mke2fs: Device size reported to be zero."
    );
    assert!(fake.state().files.is_empty(), "the partial image is removed");
    // The next attempt starts again.
    fake.state().mkfs_failure = None;
    ensure_mounted(&fake, &rootfs(), size("64Mi"), &mkfs()).expect("mounted");
}

#[test]
fn a_partial_image_left_by_a_crash_is_made_again() {
    let fake = Fake::with(|state| {
        state.files.insert(rootfs().partial_image(), FakeFile { inode: 3, len: 1 << 30, fs_bytes: None });
    });
    ensure_mounted(&fake, &rootfs(), size("64Mi"), &mkfs()).expect("mounted");
    let calls = fake.calls();
    assert!(calls.contains(&"rm /data/containers/team-a/dev/uid-1/rootfs.img.partial".to_owned()), "{calls:?}");
    assert_eq!(fake.state().files.get(&rootfs().image()).map(|file| file.len), Some(64 << 20));
}

#[test]
fn an_image_that_is_not_ext4_is_refused_before_it_is_attached() {
    let fake = Fake::with(|state| {
        state.files.insert(rootfs().image(), FakeFile { inode: 7, len: 1 << 30, fs_bytes: None });
    });
    let error = ensure_mounted(&fake, &rootfs(), size("1Gi"), &mkfs()).expect_err("not ext4");
    assert_eq!(
        error.to_string(),
        "the rootfs image /data/containers/team-a/dev/uid-1/rootfs.img holds no ext4 filesystem; it was not made by \
         this plugin or is damaged: move it away to start with an empty rootfs"
    );
    assert!(fake.state().loops.is_empty());
}

/// A fake whose image exists, formatted, unattached.
fn unmounted_fake(bytes: u64, fs_bytes: u64) -> Fake {
    Fake::with(|state| {
        state.files.insert(rootfs().image(), FakeFile { inode: 7, len: bytes, fs_bytes: Some(fs_bytes) });
    })
}

#[test]
fn a_larger_size_grows_the_image_before_it_is_attached() {
    let fake = unmounted_fake(1 << 30, 1 << 30);
    let mounted = ensure_mounted(&fake, &rootfs(), size("2Gi"), &mkfs()).expect("grown");
    assert_eq!((mounted.size, mounted.grown_from), (2 << 30, Some(1 << 30)));
    let dir = "/data/containers/team-a/dev/uid-1";
    let calls: Vec<String> = fake.calls().into_iter().filter(|call| !call.starts_with("mkdir") && !call.starts_with("chmod")).collect();
    assert_eq!(
        calls,
        [
            format!("set_len {dir}/rootfs.img 2147483648"),
            "run /usr/sbin/e2fsck".to_owned(),
            "run /usr/sbin/resize2fs".to_owned(),
            format!("attach loop0 {dir}/rootfs.img"),
            format!("mount loop0 {dir}/fs"),
        ]
    );
    assert_eq!(fake.state().files.get(&rootfs().image()).and_then(|file| file.fs_bytes), Some(2 << 30));
}

#[test]
fn a_grow_cut_short_by_a_crash_is_finished_at_the_next_publish() {
    let fake = unmounted_fake(2 << 30, 1 << 30);
    let mounted = ensure_mounted(&fake, &rootfs(), size("2Gi"), &mkfs()).expect("mounted");
    assert_eq!(mounted.grown_from, None);
    assert!(fake.calls().contains(&"run /usr/sbin/resize2fs".to_owned()));
    assert_eq!(fake.state().files.get(&rootfs().image()).and_then(|file| file.fs_bytes), Some(2 << 30));
}

#[test]
fn a_grow_is_refused_while_the_image_is_in_use() {
    let fake = mounted_fake(1 << 30, 0);
    assert_eq!(
        ensure_mounted(&fake, &rootfs(), size("2Gi"), &mkfs()).map_err(|error| error.to_string()).err().as_deref(),
        Some(
            "the rootfs image /data/containers/team-a/dev/uid-1/rootfs.img is mounted at \
             /data/containers/team-a/dev/uid-1/fs, so it cannot grow from 1Gi to 2Gi now: an image grows only while \
             nothing has it mounted, so at the next start of the StoppableContainer once its current consumer is gone \
             (kubelet retries)"
        )
    );
    // Unmounted here, but a mount in another namespace keeps it attached.
    fake.state().mounts.clear();
    assert_eq!(
        ensure_mounted(&fake, &rootfs(), size("2Gi"), &mkfs()).map_err(|error| error.to_string()).err().as_deref(),
        Some(
            "the rootfs image /data/containers/team-a/dev/uid-1/rootfs.img is attached to /dev/loop0, so it cannot grow \
             from 1Gi to 2Gi now: an image grows only while nothing has it mounted, so at the next start of the \
             StoppableContainer once its current consumer is gone (kubelet retries)"
        )
    );
    let state = fake.state();
    assert_eq!(state.files.get(&rootfs().image()).map(|file| file.len), Some(1 << 30), "unchanged");
    assert!(state.calls.iter().all(|call| !call.starts_with("set_len") && !call.starts_with("run")), "{:?}", state.calls);
}

#[test]
fn a_grow_stops_at_a_filesystem_e2fsck_cannot_fix_or_without_resize2fs() {
    let fake = unmounted_fake(1 << 30, 1 << 30);
    fake.state().fsck_failure = Some("rootfs.img: UNEXPECTED INCONSISTENCY; RUN fsck MANUALLY.\n".into());
    assert_eq!(
        ensure_mounted(&fake, &rootfs(), size("2Gi"), &mkfs()).map_err(|error| error.to_string()).err().as_deref(),
        Some(
            "checking (before growing it) the rootfs image /data/containers/team-a/dev/uid-1/rootfs.img with \
             /usr/sbin/e2fsck failed (exit status: 4): rootfs.img: UNEXPECTED INCONSISTENCY; RUN fsck MANUALLY."
        )
    );
    assert!(fake.state().mounts.is_empty(), "not mounted");

    let fake = unmounted_fake(1 << 30, 1 << 30);
    fake.state().programs.remove(Path::new("/usr/sbin/resize2fs"));
    assert_eq!(
        ensure_mounted(&fake, &rootfs(), size("2Gi"), &mkfs()).map_err(|error| error.to_string()).err().as_deref(),
        Some(
            "resize2fs is not at /usr/sbin/resize2fs: install e2fsprogs on the node, or set --mkfs-ext4 to the path of \
             mkfs.ext4 (e2fsck and resize2fs are used from the same directory)"
        )
    );
    assert_eq!(fake.state().files.get(&rootfs().image()).map(|file| file.len), Some(1 << 30), "not lengthened");
}

#[test]
fn a_smaller_size_is_refused_before_anything_changes() {
    let fake = Fake::with(|state| {
        state.files.insert(rootfs().image(), FakeFile { inode: 7, len: 2 << 30, fs_bytes: Some(2 << 30) });
    });
    let error = ensure_mounted(&fake, &rootfs(), size("1Gi"), &mkfs()).expect_err("shrink");
    assert!(matches!(error, QuotaError::CannotShrink { .. }), "{error}");
    assert!(fake.calls().is_empty());
}

#[test]
fn a_foreign_mount_on_the_mount_point_is_never_used_or_unmounted() {
    let fake = Fake::with(|state| {
        state.files.insert(rootfs().image(), FakeFile { inode: 7, len: 1 << 30, fs_bytes: Some(1 << 30) });
        state.mounts.push((rootfs().fs_dir(), None));
    });
    let message = "/data/containers/team-a/dev/uid-1/fs already has a mount this plugin did not make (tmpfs from tmpfs); \
                   refusing to mount the rootfs image over it";
    let errors = [
        ensure_mounted(&fake, &rootfs(), size("1Gi"), &mkfs()).map(drop),
        usage(&fake, &rootfs()).map(drop),
        unmount(&fake, &rootfs()),
        delete(&fake, &rootfs()),
    ];
    for error in errors {
        assert_eq!(error.map_err(|error| error.to_string()).err().as_deref(), Some(message));
    }
    // Another image's filesystem there is foreign too.
    let fake = mounted_fake(1 << 30, 2);
    fake.state().loops.insert(2, PathBuf::from("/other/rootfs.img"));
    fake.state().files.insert(PathBuf::from("/other/rootfs.img"), FakeFile { inode: 9, len: 1 << 30, fs_bytes: Some(1 << 30) });
    assert!(matches!(usage(&fake, &rootfs()), Err(QuotaError::ForeignMount { .. })));
}

#[test]
fn usage_is_the_mounted_filesystems_own() {
    let fake = mounted_fake(1 << 30, 0);
    assert_eq!(
        usage(&fake, &rootfs()).ok(),
        Some(RootfsUsage {
            limit_bytes: 1 << 30,
            bytes_total: 1000 * 4096,
            bytes_used: 400 * 4096,
            bytes_available: 600 * 4096,
            inodes_total: 16384,
            inodes_used: 384,
            inodes_free: 16000,
            node_bytes_allocated: 4096,
        })
    );
    fake.state().mounts.clear();
    assert_eq!(
        usage(&fake, &rootfs()).map_err(|error| error.to_string()).err().as_deref(),
        Some("the rootfs filesystem /data/containers/team-a/dev/uid-1/fs is not mounted"),
        "statvfs of the bare mount point would be the node's disk"
    );
}

#[test]
fn unmount_is_idempotent_and_reports_a_busy_filesystem() {
    let fake = mounted_fake(1 << 30, 0);
    fake.state().unmount_busy = true;
    assert_eq!(
        unmount(&fake, &rootfs()).map_err(|error| error.to_string()).err().as_deref(),
        Some("unmounting the rootfs filesystem at /data/containers/team-a/dev/uid-1/fs: Device or resource busy (os error 16)")
    );
    fake.state().unmount_busy = false;
    unmount(&fake, &rootfs()).expect("unmounted");
    assert!(fake.state().loops.is_empty(), "autoclear");
    unmount(&fake, &rootfs()).expect("nothing to unmount");
}

#[test]
fn unmount_and_delete_are_refused_while_an_overlay_uses_the_upper() {
    let fake = mounted_fake(1 << 30, 0);
    fake.state().overlays.push((PathBuf::from("/var/lib/kubelet/pods/p/volumes/v/rootfs"), rootfs().upper_dir()));
    let message = "the rootfs filesystem at /data/containers/team-a/dev/uid-1/fs is still the upper layer of the overlay \
                   at /var/lib/kubelet/pods/p/volumes/v/rootfs; unmount that first (an unmount now would only hide the \
                   filesystem: the overlay keeps it, and its loop device, alive)";
    assert_eq!(unmount(&fake, &rootfs()).map_err(|error| error.to_string()).err().as_deref(), Some(message));
    assert_eq!(delete(&fake, &rootfs()).map_err(|error| error.to_string()).err().as_deref(), Some(message));
    assert!(fake.calls().iter().all(|call| !call.starts_with("umount") && !call.starts_with("rm")));
}

#[test]
fn unmount_and_delete_are_refused_while_a_layer_volume_binds_the_upper_but_not_for_a_copy_of_the_mount() {
    let fake = mounted_fake(1 << 30, 3);
    // A propagated copy of the filesystem's own mount (its root is `/`) is not a reader.
    fake.state().copies.push((PathBuf::from("/run/elsewhere/fs"), 3));
    fake.state().binds.push((PathBuf::from("/var/lib/kubelet/pods/p/volumes/kubernetes.io~csi/sc-layer/mount/upper"), 3, "/upper".into()));
    let message = "the rootfs filesystem at /data/containers/team-a/dev/uid-1/fs has its /upper bind-mounted at \
                   /var/lib/kubelet/pods/p/volumes/kubernetes.io~csi/sc-layer/mount/upper (a layer volume reading the upper); \
                   it stays mounted until that volume is unpublished (an unmount now would only hide the filesystem: the bind \
                   keeps it, and its loop device, alive)";
    assert_eq!(unmount(&fake, &rootfs()).map_err(|error| error.to_string()).err().as_deref(), Some(message));
    assert_eq!(delete(&fake, &rootfs()).map_err(|error| error.to_string()).err().as_deref(), Some(message));
    assert!(fake.calls().iter().all(|call| !call.starts_with("umount") && !call.starts_with("rm")));
    // A bind of another filesystem's directory is no reason to keep this one.
    fake.state().binds[0].1 = 5;
    unmount(&fake, &rootfs()).expect("unmounted once the layer volume's bind is of another filesystem");
}

#[test]
fn delete_unmounts_and_removes_image_and_mount_point() {
    let fake = mounted_fake(1 << 30, 0);
    delete(&fake, &rootfs()).expect("deleted");
    let dir = "/data/containers/team-a/dev/uid-1";
    assert_eq!(fake.calls(), [format!("umount {dir}/fs"), format!("rm {dir}/rootfs.img"), format!("rmdir {dir}/fs")]);
    assert!(fake.state().files.is_empty());
    delete(&fake, &rootfs()).expect("deleting again");
}

#[test]
fn delete_keeps_an_image_a_mount_elsewhere_still_holds() {
    let fake = mounted_fake(1 << 30, 4);
    fake.state().held_elsewhere.insert(4);
    let error = delete(&fake, &rootfs()).expect_err("held");
    assert_eq!(
        error.to_string(),
        "the rootfs image /data/containers/team-a/dev/uid-1/rootfs.img is still attached to /dev/loop4 after its mount \
         at /data/containers/team-a/dev/uid-1/fs is gone: a mount of it in another mount namespace holds it (a \
         container started with the data root mounted without HostToContainer propagation); not deleting it"
    );
    let state = fake.state();
    assert!(state.files.contains_key(&rootfs().image()));
    assert_eq!(state.sleeps, (DETACH_WAIT.as_millis() / DETACH_POLL.as_millis()) as u32, "a bounded wait");
}
