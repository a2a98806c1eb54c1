//! The real [`LoopSystem`]: files, programs, loop devices (their ioctls, the only `unsafe` of
//! the crate's size limits) and ext4 mounts, tested as root by `tests/quota_root.rs`.

use super::*;

/// The real [`LoopSystem`].
#[derive(Clone, Debug, Default)]
pub struct RealLoopSystem {
    legacy_attach: bool,
}

impl RealLoopSystem {
    /// Attaches with `LOOP_SET_FD` + `LOOP_SET_STATUS64` (what kernels before 5.8, which have no
    /// `LOOP_CONFIGURE`, get); for testing that path on a newer kernel.
    pub fn with_legacy_attach() -> Self {
        Self { legacy_attach: true }
    }
}

impl LoopSystem for RealLoopSystem {
    fn file_info(&self, path: &Path) -> io::Result<Option<FileInfo>> {
        use std::os::unix::fs::MetadataExt;
        match std::fs::metadata(path) {
            Ok(metadata) => Ok(Some(FileInfo {
                id: FileId {
                    major: nix::sys::stat::major(metadata.dev()),
                    minor: nix::sys::stat::minor(metadata.dev()),
                    inode: metadata.ino(),
                },
                len: metadata.len(),
                allocated: metadata.blocks() * 512,
            })),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error),
        }
    }

    fn create_dir_all(&self, path: &Path, mode: u32) -> io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().recursive(true).mode(mode).create(path)
    }

    fn set_dir_mode(&self, path: &Path, mode: u32) -> io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        // Through an open directory, not the path: the mode goes to the directory that was
        // opened, whatever a rename does meanwhile.
        let dir = std::fs::File::open(path)?;
        if !dir.metadata()?.is_dir() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a directory"));
        }
        dir.set_permissions(std::fs::Permissions::from_mode(mode))
    }

    fn create_sparse_file(&self, path: &Path, len: u64) -> io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
        // ftruncate, not fallocate: the blocks are allocated only as the filesystem writes them.
        file.set_len(len)?;
        file.sync_all()
    }

    fn set_len(&self, path: &Path, len: u64) -> io::Result<()> {
        let file = std::fs::OpenOptions::new().write(true).open(path)?;
        file.set_len(len)?;
        file.sync_all()
    }

    fn rename_durably(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::File::open(from)?.sync_all()?;
        std::fs::rename(from, to)?;
        std::fs::File::open(to.parent().unwrap_or(Path::new("/")))?.sync_all()
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        match std::fs::remove_file(path) {
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        match std::fs::remove_dir(path) {
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    fn is_executable(&self, path: &Path) -> bool {
        nix::unistd::access(path, nix::unistd::AccessFlags::X_OK).is_ok() && path.is_file()
    }

    fn run(&self, program: &Path, args: &[OsString]) -> io::Result<ProgramResult> {
        let output = std::process::Command::new(program)
            .args(args)
            .stdin(std::process::Stdio::null())
            // Messages in English, for the error the plugin reports.
            .env("LC_ALL", "C")
            .output()?;
        let mut stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        if stderr.trim().is_empty() {
            stderr = String::from_utf8_lossy(&output.stdout).into_owned();
        }
        Ok(ProgramResult { success: output.status.success(), code: output.status.code(), status: output.status.to_string(), stderr })
    }

    fn attached_loops(&self) -> io::Result<Vec<AttachedLoop>> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/sys/block")? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(index) = name.to_str().and_then(|name| name.strip_prefix("loop")).and_then(|index| index.parse::<u32>().ok()) else {
                continue;
            };
            // Only an attached device has `loop/backing_file`; a device may also be detached or
            // removed while we look.
            let Ok(backing) = std::fs::read_to_string(entry.path().join("loop/backing_file")) else { continue };
            let Ok(dev) = std::fs::read_to_string(entry.path().join("dev")) else { continue };
            let Some((major, minor)) = dev.trim().split_once(':') else { continue };
            let (Ok(major), Ok(minor)) = (major.parse(), minor.parse()) else { continue };
            found.push(AttachedLoop {
                device: LoopDevice { index, major, minor },
                backing_file: PathBuf::from(backing.trim_end_matches('\n')),
            });
        }
        Ok(found)
    }

    fn open_loop(&self, device: LoopDevice) -> io::Result<LoopHandle> {
        let open = open_device(&device.path())?;
        let backing = match loop_ioctl::get_status(&open) {
            Ok(info) => Some(loop_ioctl::backing_id(&info)),
            Err(nix::errno::Errno::ENXIO) => None,
            Err(errno) => return Err(errno.into()),
        };
        Ok(LoopHandle { device, backing, _open: Some(open) })
    }

    fn free_loop(&self) -> io::Result<u32> {
        let control = open_device(Path::new("/dev/loop-control"))?;
        let index = loop_ioctl::get_free(&control)?;
        u32::try_from(index).map_err(io::Error::other)
    }

    fn configure_loop(&self, index: u32, image: &Path, options: LoopOptions) -> io::Result<LoopHandle> {
        use std::os::unix::fs::MetadataExt;
        let device_path = PathBuf::from(format!("/dev/loop{index}"));
        let device = open_device(&device_path)?;
        let backing = std::fs::OpenOptions::new().read(true).write(true).open(image)?;
        let mut name = [0u8; loop_ioctl::LO_NAME_SIZE];
        let image_bytes = image.as_os_str().as_encoded_bytes();
        let kept = image_bytes.len().min(loop_ioctl::LO_NAME_SIZE - 1);
        name[..kept].copy_from_slice(&image_bytes[..kept]);
        let configured =
            if self.legacy_attach { Err(nix::errno::Errno::EINVAL) } else { loop_ioctl::configure(&device, &backing, options, name) };
        match configured {
            Ok(()) => {}
            // No LOOP_CONFIGURE before Linux 5.8 (EINVAL there, ENOTTY on some): the two-step
            // attach, as losetup does.
            Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOTTY) => loop_ioctl::legacy_attach(&device, &backing, options, name)?,
            Err(errno) => return Err(errno.into()),
        }
        let rdev = std::fs::metadata(&device_path)?.rdev();
        let device_id = LoopDevice {
            index,
            major: u32::try_from(nix::sys::stat::major(rdev)).map_err(io::Error::other)?,
            minor: u32::try_from(nix::sys::stat::minor(rdev)).map_err(io::Error::other)?,
        };
        let info = loop_ioctl::get_status(&device)?;
        Ok(LoopHandle { device: device_id, backing: Some(loop_ioctl::backing_id(&info)), _open: Some(device) })
    }

    fn read_superblock_area(&self, path: &Path) -> io::Result<Vec<u8>> {
        use std::io::Read;
        let mut start = vec![0u8; SUPERBLOCK_READ_LEN];
        std::fs::File::open(path)?.read_exact(&mut start)?;
        Ok(start)
    }

    fn mountinfo(&self) -> io::Result<String> {
        std::fs::read_to_string("/proc/self/mountinfo")
    }

    fn mount_ext4(&self, device: LoopDevice, target: &Path, nosuid_nodev: bool) -> io::Result<()> {
        use sys_mount::{Mount, MountFlags};
        let flags = if nosuid_nodev { MountFlags::NOSUID | MountFlags::NODEV } else { MountFlags::empty() };
        Mount::builder().fstype("ext4").flags(flags).data(EXT4_MOUNT_DATA).mount(device.path(), target).map(drop)
    }

    fn unmount(&self, target: &Path) -> io::Result<()> {
        sys_mount::unmount(target, sys_mount::UnmountFlags::empty())
    }

    fn statvfs(&self, path: &Path) -> io::Result<FsUsage> {
        let stat = nix::sys::statvfs::statvfs(path)?;
        let fragment = stat.fragment_size();
        Ok(FsUsage {
            bytes_total: stat.blocks() * fragment,
            bytes_free: stat.blocks_free() * fragment,
            bytes_available: stat.blocks_available() * fragment,
            inodes_total: stat.files(),
            inodes_free: stat.files_free(),
        })
    }

    fn sleep(&self, duration: Duration) {
        std::thread::sleep(duration);
    }
}

fn open_device(path: &Path) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    // O_CLOEXEC (std's default): mkfs and other children must not inherit a loop device and
    // keep it attached.
    std::fs::OpenOptions::new().read(true).write(true).custom_flags(nix::libc::O_CLOEXEC).open(path).map(Into::into)
}

/// The loop ioctls. nix's `ioctl_*!` macros generate `unsafe fn`s (an ioctl's argument
/// is a raw pointer the kernel reads or writes); each is wrapped here once, in a safe function
/// whose `// SAFETY:` comment says why the call is sound, and nothing else in the crate is
/// `unsafe`.
#[allow(unsafe_code)]
mod loop_ioctl {
    use std::os::fd::{AsFd, AsRawFd};

    use nix::errno::Errno;

    use super::{FileId, LoopOptions};

    pub const LO_NAME_SIZE: usize = 64;
    const LO_KEY_SIZE: usize = 32;
    const LO_FLAGS_AUTOCLEAR: u32 = 4;
    const LO_FLAGS_DIRECT_IO: u32 = 16;

    /// `struct loop_info64` from `<linux/loop.h>`.
    #[repr(C)]
    #[derive(Clone, Copy)]
    pub struct LoopInfo64 {
        lo_device: u64,
        lo_inode: u64,
        lo_rdevice: u64,
        lo_offset: u64,
        lo_sizelimit: u64,
        lo_number: u32,
        lo_encrypt_type: u32,
        lo_encrypt_key_size: u32,
        lo_flags: u32,
        lo_file_name: [u8; LO_NAME_SIZE],
        lo_crypt_name: [u8; LO_NAME_SIZE],
        lo_encrypt_key: [u8; LO_KEY_SIZE],
        lo_init: [u64; 2],
    }

    /// `struct loop_config` from `<linux/loop.h>` (Linux 5.8).
    #[repr(C)]
    struct LoopConfig {
        fd: u32,
        block_size: u32,
        info: LoopInfo64,
        reserved: [u64; 8],
    }

    // The kernel's sizes: a wrong layout would make the kernel read or write past the structs.
    const _: () = assert!(size_of::<LoopInfo64>() == 232);
    const _: () = assert!(size_of::<LoopConfig>() == 304);

    impl LoopInfo64 {
        fn empty() -> Self {
            Self {
                lo_device: 0,
                lo_inode: 0,
                lo_rdevice: 0,
                lo_offset: 0,
                lo_sizelimit: 0,
                lo_number: 0,
                lo_encrypt_type: 0,
                lo_encrypt_key_size: 0,
                lo_flags: 0,
                lo_file_name: [0; LO_NAME_SIZE],
                lo_crypt_name: [0; LO_NAME_SIZE],
                lo_encrypt_key: [0; LO_KEY_SIZE],
                lo_init: [0; 2],
            }
        }
    }

    // <linux/loop.h> numbers these without the _IOC encoding ("bad" ioctls in nix's words).
    nix::ioctl_none_bad!(loop_ctl_get_free, 0x4C82);
    nix::ioctl_write_ptr_bad!(loop_configure, 0x4C0A, LoopConfig);
    nix::ioctl_write_int_bad!(loop_set_fd, 0x4C00);
    nix::ioctl_none_bad!(loop_clr_fd, 0x4C01);
    nix::ioctl_write_ptr_bad!(loop_set_status64, 0x4C04, LoopInfo64);
    nix::ioctl_read_bad!(loop_get_status64, 0x4C05, LoopInfo64);
    nix::ioctl_write_int_bad!(loop_set_direct_io, 0x4C08);
    nix::ioctl_write_int_bad!(loop_set_block_size, 0x4C09);

    pub fn get_free(control: &impl AsFd) -> nix::Result<i32> {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument; the fd is open (borrowed for the call).
        unsafe { loop_ctl_get_free(control.as_fd().as_raw_fd()) }
    }

    pub fn configure(device: &impl AsFd, backing: &impl AsFd, options: LoopOptions, name: [u8; LO_NAME_SIZE]) -> nix::Result<()> {
        let mut info = LoopInfo64::empty();
        info.lo_flags = LO_FLAGS_AUTOCLEAR | if options.direct_io { LO_FLAGS_DIRECT_IO } else { 0 };
        info.lo_file_name = name;
        let fd = u32::try_from(backing.as_fd().as_raw_fd()).map_err(|_| Errno::EBADF)?;
        let config = LoopConfig { fd, block_size: options.block_size, info, reserved: [0; 8] };
        // SAFETY: `config` is a live, fully initialised `struct loop_config` (layout checked
        // above) that the kernel only reads during the call; both fds are open for its duration.
        unsafe { loop_configure(device.as_fd().as_raw_fd(), &config) }.map(drop)
    }

    /// `LOOP_SET_FD`, then autoclear with `LOOP_SET_STATUS64`, then the block size and direct
    /// I/O where the kernel has them. Detaches again if the status cannot be set, so a device is
    /// never left attached without autoclear.
    pub fn legacy_attach(device: &impl AsFd, backing: &impl AsFd, options: LoopOptions, name: [u8; LO_NAME_SIZE]) -> nix::Result<()> {
        let device_fd = device.as_fd().as_raw_fd();
        // SAFETY: LOOP_SET_FD takes the backing fd by value; both fds are open for the call.
        unsafe { loop_set_fd(device_fd, backing.as_fd().as_raw_fd()) }?;
        let mut info = LoopInfo64::empty();
        info.lo_flags = LO_FLAGS_AUTOCLEAR;
        info.lo_file_name = name;
        // SAFETY: `info` is a live, initialised `struct loop_info64` the kernel only reads.
        if let Err(errno) = unsafe { loop_set_status64(device_fd, &info) } {
            // SAFETY: LOOP_CLR_FD takes no argument; the fd is open.
            let _ = unsafe { loop_clr_fd(device_fd) };
            return Err(errno);
        }
        // Both are optimisations, absent before Linux 4.14 and 4.4: without them the device
        // works with 512-byte sectors and buffered I/O.
        // SAFETY: LOOP_SET_BLOCK_SIZE takes the size by value; the fd is open.
        let _ = unsafe { loop_set_block_size(device_fd, i32::try_from(options.block_size).unwrap_or(512)) };
        if options.direct_io {
            // SAFETY: LOOP_SET_DIRECT_IO takes 0 or 1 by value; the fd is open.
            let _ = unsafe { loop_set_direct_io(device_fd, 1) };
        }
        Ok(())
    }

    pub fn get_status(device: &impl AsFd) -> nix::Result<LoopInfo64> {
        let mut info = LoopInfo64::empty();
        // SAFETY: `info` is a live `struct loop_info64` the kernel writes whole; the fd is open.
        unsafe { loop_get_status64(device.as_fd().as_raw_fd(), &mut info) }?;
        Ok(info)
    }

    /// The backing file's identity. The kernel encodes `lo_device` with `new_encode_dev` (12-bit
    /// major and 20-bit minor, interleaved as in `stat`'s `st_dev`).
    pub fn backing_id(info: &LoopInfo64) -> FileId {
        let dev = info.lo_device;
        FileId { major: (dev & 0xfff00) >> 8, minor: (dev & 0xff) | ((dev >> 12) & 0xfff00), inode: info.lo_inode }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn backing_device_numbers_decode_like_stat() {
            let mut info = LoopInfo64::empty();
            // 259:65537 (an NVMe partition beyond minor 255), encoded the kernel's way.
            let (major, minor) = (259u64, 65537u64);
            info.lo_device = (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12);
            info.lo_inode = 12;
            assert_eq!(backing_id(&info), FileId { major, minor, inode: 12 });
            let stat_dev = nix::sys::stat::makedev(major, minor);
            assert_eq!((nix::sys::stat::major(stat_dev), nix::sys::stat::minor(stat_dev)), (major, minor));
        }
    }
}
