//! What to create, reuse, grow, refuse and remove, decided over a [`LoopSystem`]: the calls the
//! node plugin makes, in the order the module comment of [`crate::quota`] lists.

use super::*;

/// The e2fsprogs binaries: mkfs.ext4, and e2fsck and resize2fs from the same directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct E2fsprogs {
    pub mkfs: PathBuf,
}

impl E2fsprogs {
    fn sibling(&self, system: &dyn LoopSystem, tool: &'static str) -> Result<PathBuf, QuotaError> {
        let path = self.mkfs.with_file_name(tool);
        if system.is_executable(&path) { Ok(path) } else { Err(QuotaError::ToolNotFound { tool, tried: path.display().to_string() }) }
    }
}

/// Finds mkfs.ext4: `configured` (the [`MKFS_FLAG`] setting) or the first of
/// [`DEFAULT_MKFS_PATHS`] that exists. Call it once at start-up, so that a node without
/// e2fsprogs says so before the first publish.
pub fn resolve_e2fsprogs(system: &dyn LoopSystem, configured: Option<&Path>) -> Result<E2fsprogs, QuotaError> {
    let candidates: Vec<PathBuf> = match configured {
        Some(path) => vec![path.to_owned()],
        None => DEFAULT_MKFS_PATHS.iter().map(PathBuf::from).collect(),
    };
    match candidates.iter().find(|path| system.is_executable(path)) {
        Some(mkfs) => Ok(E2fsprogs { mkfs: mkfs.clone() }),
        None => Err(QuotaError::ToolNotFound {
            tool: "mkfs.ext4",
            tried: candidates.iter().map(|path| path.display().to_string()).collect::<Vec<_>>().join(" or "),
        }),
    }
}

/// Whether [`ensure_image`] made the image or found it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageOrigin {
    Created,
    Existing,
}

/// Makes the formatted image of `size` if there is none (an existing one is left as it is,
/// whatever its size). Returns the image's file information.
pub fn ensure_image(
    system: &dyn LoopSystem,
    rootfs: &RootfsFs,
    size: RootfsSize,
    tools: &E2fsprogs,
) -> Result<(FileInfo, ImageOrigin), QuotaError> {
    let mkfs = tools.mkfs.as_path();
    let image = rootfs.image();
    if let Some(info) = system.file_info(&image).context("looking at", &image)? {
        return Ok((info, ImageOrigin::Existing));
    }
    let dir = rootfs.container_dir();
    // The data of one SC is root-only: its upper holds setuid binaries and device nodes a root
    // tenant made.
    system.create_dir_all(dir, 0o700).context("creating", dir)?;
    let partial = rootfs.partial_image();
    // Left by a crash while formatting: start again.
    system.remove_file(&partial).context("removing the unfinished image", &partial)?;
    system.create_sparse_file(&partial, size.bytes()).context("creating the sparse image", &partial)?;
    let formatted = system.run(mkfs, &mkfs_args(&partial, size)).context("running", mkfs).and_then(|result| {
        if result.success {
            Ok(())
        } else {
            Err(QuotaError::ToolFailed {
                action: "formatting the rootfs image",
                image: partial.display().to_string(),
                tool: mkfs.display().to_string(),
                status: result.status,
                output: result.stderr.trim().to_owned(),
            })
        }
    });
    if let Err(error) = formatted {
        // Best effort: the next attempt removes it anyway, and the mkfs error is the one to tell.
        let _ = system.remove_file(&partial);
        return Err(error);
    }
    system.rename_durably(&partial, &image).context("renaming the new image to", &image)?;
    let info = system.file_info(&image).context("looking at", &image)?.ok_or_else(|| QuotaError::Io {
        action: "finding the just-made image",
        path: image.display().to_string(),
        source: io::ErrorKind::NotFound.into(),
    })?;
    Ok((info, ImageOrigin::Created))
}

/// The loop device already attached to the image `id`, open (so that it stays attached).
pub fn find_attachment(system: &dyn LoopSystem, id: FileId) -> Result<Option<LoopHandle>, QuotaError> {
    let attached = system.attached_loops().context("listing", Path::new("/sys/block/loop*"))?;
    for candidate in attached {
        // Only images of this module are candidates: opening other loop devices is harmless, but
        // there is no reason to.
        let name = candidate.backing_file.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
        if !name.starts_with(IMAGE_FILE_NAME) {
            continue;
        }
        match system.open_loop(candidate.device) {
            // It may have been detached and reused since it was listed: trust what the open
            // device says.
            Ok(handle) if handle.backing == Some(id) => return Ok(Some(handle)),
            Ok(_) => {}
            // Detached and removed between the listing and the open.
            Err(error) if matches!(error.raw_os_error(), Some(nix::libc::ENXIO | nix::libc::ENOENT)) => {}
            Err(error) => return Err(error).context("opening", &candidate.device.path()),
        }
    }
    Ok(None)
}

/// Attaches the image to a loop device, or returns the device it is already attached to.
pub fn attach(system: &dyn LoopSystem, rootfs: &RootfsFs, id: FileId) -> Result<LoopHandle, QuotaError> {
    if let Some(handle) = find_attachment(system, id)? {
        return Ok(handle);
    }
    let image = rootfs.image();
    for _ in 0..ATTACH_ATTEMPTS {
        let index = system.free_loop().context("asking for a free loop device at", Path::new("/dev/loop-control"))?;
        match system.configure_loop(index, &image, LOOP_OPTIONS) {
            Ok(handle) => return Ok(handle),
            // Another process (losetup, another plugin thread, a CSI driver) attached the free
            // device between our two calls: ask again.
            Err(error) if error.raw_os_error() == Some(nix::libc::EBUSY) => continue,
            Err(error) => return Err(error).context("attaching a loop device to", &image),
        }
    }
    Err(QuotaError::NoFreeLoop { image: image.display().to_string(), attempts: ATTACH_ATTEMPTS })
}

/// The loop device whose filesystem is mounted at the rootfs's mount point, or `None` when
/// nothing is mounted there. A mount there that is not this image's is an error.
pub fn mounted_device(system: &dyn LoopSystem, rootfs: &RootfsFs) -> Result<Option<LoopDevice>, QuotaError> {
    let fs_dir = rootfs.fs_dir();
    let entries = mountinfo::parse(&system.mountinfo().context("reading", Path::new("/proc/self/mountinfo"))?)?;
    let Some(entry) = mountinfo::mount_at(&entries, &fs_dir) else { return Ok(None) };
    let foreign =
        || QuotaError::ForeignMount { fs_dir: fs_dir.display().to_string(), fs_type: entry.fs_type.clone(), device: entry.source.clone() };
    if entry.fs_type != "ext4" {
        return Err(foreign());
    }
    let image = rootfs.image();
    let Some(id) = system.file_info(&image).context("looking at", &image)?.map(|info| info.id) else { return Err(foreign()) };
    let attached = system.attached_loops().context("listing", Path::new("/sys/block/loop*"))?;
    let Some(candidate) =
        attached.into_iter().find(|attached| (attached.device.major, attached.device.minor) == (entry.major, entry.minor))
    else {
        return Err(foreign());
    };
    let handle = system.open_loop(candidate.device).context("opening", &candidate.device.path())?;
    if handle.backing != Some(id) {
        return Err(foreign());
    }
    Ok(Some(handle.device))
}

/// A mounted rootfs filesystem, ready to be an overlay's upper.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mounted {
    pub device: LoopDevice,
    pub upper: PathBuf,
    pub work: PathBuf,
    /// The image's (and so the filesystem's) size.
    pub size: u64,
    /// Whether this call made the image (a new, empty rootfs).
    pub created: bool,
    /// The size before this call grew it.
    pub grown_from: Option<u64>,
}

/// Publish: makes the image if there is none, grows it if `size` is larger than it is, attaches
/// and mounts it unless it is mounted already, and makes the upper and work directories. Calling
/// it again (a second consumer, a kubelet retry, a plugin restart) reuses what is there. A
/// smaller `size` than the image's is refused before anything is changed, and so is a larger
/// one while the image is in use.
pub fn ensure_mounted(system: &dyn LoopSystem, rootfs: &RootfsFs, size: RootfsSize, tools: &E2fsprogs) -> Result<Mounted, QuotaError> {
    let image = rootfs.image();
    let (info, origin) = ensure_image(system, rootfs, size, tools)?;
    let change = plan_size(&image, info.len, size)?;
    let refuse_grow_while = |in_use: String| match change {
        SizeChange::Grow { from, to } => {
            Err(QuotaError::GrowWhileInUse { image: image.display().to_string(), in_use, from: format_bytes(from), to: format_bytes(to) })
        }
        SizeChange::Keep => Ok(()),
    };
    let fs_dir = rootfs.fs_dir();
    system.create_dir_all(&fs_dir, 0o700).context("creating", &fs_dir)?;
    let device = match mounted_device(system, rootfs)? {
        Some(device) => {
            refuse_grow_while(format!("mounted at {}", fs_dir.display()))?;
            device
        }
        None => {
            let start = system.read_superblock_area(&image).context("reading the superblock of", &image)?;
            // A clear error for a file that is not ours, rather than mount's EINVAL.
            let geometry = parse_ext4_superblock(&start).ok_or_else(|| QuotaError::NotExt4 { image: image.display().to_string() })?;
            if needs_offline_resize(geometry, info.len, change) {
                if let Some(handle) = find_attachment(system, info.id)? {
                    refuse_grow_while(format!("attached to {}", handle.device.path().display()))?;
                } else {
                    grow_offline(system, &image, change, tools)?;
                }
            }
            let handle = attach(system, rootfs, info.id)?;
            system.mount_ext4(handle.device, &fs_dir, MOUNT_NOSUID_NODEV).context("mounting the rootfs filesystem at", &fs_dir)?;
            // Dropped here: the mount holds the device from now on.
            handle.device
        }
    };
    // The mount root is root-only from the host's side (an unprivileged node user must not
    // reach setuid files in the upper); the overlay uses the mounter's credentials, so the
    // container is not affected.
    system.set_dir_mode(&fs_dir, 0o700).context("making root-only", &fs_dir)?;
    let (upper, work) = (rootfs.upper_dir(), rootfs.work_dir());
    // The upper's mode is the rootfs's `/`.
    system.create_dir_all(&upper, 0o755).context("creating", &upper)?;
    system.create_dir_all(&work, 0o700).context("creating", &work)?;
    let grown_from = match change {
        SizeChange::Grow { from, .. } => Some(from),
        SizeChange::Keep => None,
    };
    Ok(Mounted { device, upper, work, size: size.bytes(), created: origin == ImageOrigin::Created, grown_from })
}

/// How much smaller than its image a filesystem may be without being grown: mke2fs and
/// resize2fs leave out a last block group smaller than its own metadata + 50 blocks (3 + inode
/// table + reserved GDT blocks: at most about 2100 blocks, 8.2 MiB, at this inode density).
pub const RESIZE_SLACK_BYTES: u64 = 16 << 20;

/// Whether the (unattached) image's filesystem must be grown before it is mounted: a larger
/// size was asked for, or a grow was cut short after the image was lengthened (a crash between
/// the two steps), which leaves the filesystem smaller than its image by more than
/// [`RESIZE_SLACK_BYTES`]. A grow by less than that, cut short, is left as it is: the rootfs is
/// then that much smaller than asked, never larger.
pub fn needs_offline_resize(geometry: Ext4Geometry, image_len: u64, change: SizeChange) -> bool {
    matches!(change, SizeChange::Grow { .. }) || geometry.bytes().saturating_add(RESIZE_SLACK_BYTES) < image_len
}

/// Grows an unattached image: lengthens the file (sparsely), checks the filesystem (resize2fs
/// grows only one checked since it was last mounted; `-p` replays the journal of one that was not
/// cleanly unmounted and fixes only what is safe without asking), and grows it to the file's
/// length. Growing online (`EXT4_IOC_RESIZE_FS`) would need `CAP_SYS_RESOURCE`, which the
/// machines this is tested on do not grant, so it is not done.
fn grow_offline(system: &dyn LoopSystem, image: &Path, change: SizeChange, tools: &E2fsprogs) -> Result<(), QuotaError> {
    let (e2fsck, resize2fs) = (tools.sibling(system, "e2fsck")?, tools.sibling(system, "resize2fs")?);
    if let SizeChange::Grow { to, .. } = change {
        system.set_len(image, to).context("lengthening", image)?;
    }
    let failed = |action: &'static str, tool: &Path, result: ProgramResult| QuotaError::ToolFailed {
        action,
        image: image.display().to_string(),
        tool: tool.display().to_string(),
        status: result.status,
        output: result.stderr.trim().to_owned(),
    };
    let checked = system.run(&e2fsck, &["-f".into(), "-p".into(), image.into()]).context("running", &e2fsck)?;
    // 0: clean; 1: errors fixed; 2: fixed, "reboot" (meant for a mounted root filesystem).
    if !matches!(checked.code, Some(0..=2)) {
        return Err(failed("checking (before growing it) the rootfs image", &e2fsck, checked));
    }
    let resized = system.run(&resize2fs, &[image.into()]).context("running", &resize2fs)?;
    if !resized.success {
        return Err(failed("growing the rootfs image", &resize2fs, resized));
    }
    Ok(())
}

/// The rootfs filesystems mounted below `data_root` (`<data-root>/containers/<ns>/<name>/<uid>/fs`
/// with ext4 on it), from the mount table: what a restarted plugin finds mounted, to unmount
/// those no publication uses.
pub fn mounted_rootfs_filesystems(entries: &[mountinfo::MountEntry], data_root: &Path) -> Vec<RootfsFs> {
    let containers = data_root.join("containers");
    let mut found: Vec<RootfsFs> = entries
        .iter()
        .filter(|entry| entry.fs_type == "ext4" && entry.mount_point.file_name().is_some_and(|name| name == FS_DIR_NAME))
        .filter_map(|entry| {
            let container_dir = entry.mount_point.parent()?;
            // Exactly <ns>/<name>/<uid> below containers/.
            (container_dir.strip_prefix(&containers).ok()?.components().count() == 3).then(|| RootfsFs::new(container_dir))
        })
        .collect();
    found.dedup();
    found
}

fn device_of(system: &dyn LoopSystem, rootfs: &RootfsFs, fs_dir: &Path) -> Result<LoopDevice, QuotaError> {
    mounted_device(system, rootfs)?.ok_or_else(|| QuotaError::NotMounted { fs_dir: fs_dir.display().to_string() })
}

/// What a rootfs takes, for `NodeGetVolumeStats` and `kubectl sc status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RootfsUsage {
    /// The size asked for (the image's length).
    pub limit_bytes: u64,
    /// The filesystem's own figures (its metadata is not counted in `bytes_total`).
    pub bytes_total: u64,
    pub bytes_used: u64,
    pub bytes_available: u64,
    pub inodes_total: u64,
    pub inodes_used: u64,
    pub inodes_free: u64,
    /// What the sparse image takes of the node's disk.
    pub node_bytes_allocated: u64,
}

impl RootfsUsage {
    /// The figures of a filesystem `statvfs` measured, against `limit_bytes`, taking
    /// `node_bytes_allocated` of the node's disk.
    pub fn measured(limit_bytes: u64, fs: FsUsage, node_bytes_allocated: u64) -> Self {
        RootfsUsage {
            limit_bytes,
            bytes_total: fs.bytes_total,
            bytes_used: fs.bytes_total.saturating_sub(fs.bytes_free),
            bytes_available: fs.bytes_available,
            inodes_total: fs.inodes_total,
            inodes_used: fs.inodes_total.saturating_sub(fs.inodes_free),
            inodes_free: fs.inodes_free,
            node_bytes_allocated,
        }
    }
}

/// Stats: the usage of a mounted rootfs (an error when it is not mounted: `statvfs` of the bare
/// mount point would report the node's disk).
pub fn usage(system: &dyn LoopSystem, rootfs: &RootfsFs) -> Result<RootfsUsage, QuotaError> {
    let fs_dir = rootfs.fs_dir();
    device_of(system, rootfs, &fs_dir)?;
    let image = rootfs.image();
    let info = system
        .file_info(&image)
        .context("looking at", &image)?
        .ok_or_else(|| QuotaError::NotMounted { fs_dir: fs_dir.display().to_string() })?;
    let fs = system.statvfs(&fs_dir).context("statvfs of", &fs_dir)?;
    Ok(RootfsUsage::measured(info.len, fs, info.allocated))
}

/// Unpublish of the last consumer: unmounts the rootfs filesystem (its loop device detaches by
/// itself). Nothing mounted is not an error. Refused while an overlay in this mount namespace
/// has its upper there, or a directory of it is bind-mounted elsewhere (a layer volume reading
/// the upper): unmount those first.
pub fn unmount(system: &dyn LoopSystem, rootfs: &RootfsFs) -> Result<(), QuotaError> {
    let fs_dir = rootfs.fs_dir();
    // A second mount of it stacked on the first (never made by this module, but cheap to undo).
    for _ in 0..4 {
        let Some(device) = mounted_device(system, rootfs)? else {
            return Ok(());
        };
        // The kernel would unmount it (an overlay holds a private clone of its upper's mount,
        // not this one), and the filesystem would live on, out of sight, with the overlay.
        let entries = mountinfo::parse(&system.mountinfo().context("reading", Path::new("/proc/self/mountinfo"))?)?;
        if let Some(overlay) = entries.iter().find(|entry| {
            entry.fs_type == "overlay" && entry.super_option("upperdir").is_some_and(|upper| Path::new(upper).starts_with(&fs_dir))
        }) {
            return Err(QuotaError::InUse { fs_dir: fs_dir.display().to_string(), overlay: overlay.mount_point.display().to_string() });
        }
        // Likewise a bind of one of its directories: the mount table shows the device and, as the
        // bind's root, the directory (the layer volume's `/upper`), never `/` as for the
        // filesystem's own mount or a propagated copy of it.
        if let Some(bind) = entries.iter().find(|entry| {
            (entry.major, entry.minor) == (device.major, device.minor) && entry.mount_point != fs_dir && entry.root != Path::new("/")
        }) {
            return Err(QuotaError::BoundElsewhere {
                fs_dir: fs_dir.display().to_string(),
                directory: bind.root.display().to_string(),
                bind: bind.mount_point.display().to_string(),
            });
        }
        system.unmount(&fs_dir).context("unmounting the rootfs filesystem at", &fs_dir)?;
    }
    Ok(())
}

/// Delete: unmounts the filesystem if it is mounted and removes the image and the mount point,
/// leaving the (then empty of rootfs files) StoppableContainer directory to the caller. Refuses
/// while the image is still attached, so that its data is removed only once nothing uses it.
pub fn delete(system: &dyn LoopSystem, rootfs: &RootfsFs) -> Result<(), QuotaError> {
    unmount(system, rootfs)?;
    let image = rootfs.image();
    if let Some(info) = system.file_info(&image).context("looking at", &image)? {
        // The kernel detaches an autoclear device when the filesystem is released, which may
        // come a moment after the unmount.
        let mut waited = Duration::ZERO;
        loop {
            match find_attachment(system, info.id)? {
                None => break,
                Some(handle) if waited >= DETACH_WAIT => {
                    return Err(QuotaError::StillAttached {
                        image: image.display().to_string(),
                        device: handle.device.path().display().to_string(),
                        fs_dir: rootfs.fs_dir().display().to_string(),
                    });
                }
                Some(handle) => {
                    // Our open handle must not be what keeps it attached while we wait.
                    drop(handle);
                    system.sleep(DETACH_POLL);
                    waited += DETACH_POLL;
                }
            }
        }
        system.remove_file(&image).context("removing", &image)?;
    }
    let partial = rootfs.partial_image();
    system.remove_file(&partial).context("removing", &partial)?;
    let fs_dir = rootfs.fs_dir();
    system.remove_dir(&fs_dir).context("removing", &fs_dir)?;
    Ok(())
}
