//! The ext4 side of a rootfs's own filesystem: how `mkfs.ext4` is asked to make it, and what
//! its superblock says of its size (pure, for tests).

use super::*;

/// The number of inodes to make for a filesystem of `size`.
pub fn inode_count(size: RootfsSize) -> u64 {
    (size.bytes() / BYTES_PER_INODE).max(MIN_INODES)
}

/// The mkfs.ext4 arguments for a new rootfs image (the features come from the node's
/// `mke2fs.conf`, which its distribution matched to its kernel; `d_type` (`filetype`) and
/// `ext_attr`, which overlayfs needs, are in every ext4's defaults and checked by the root test).
pub fn mkfs_args(image: &Path, size: RootfsSize) -> Vec<OsString> {
    let mut args: Vec<OsString> = [
        "-t", "ext4", // The target is a regular file; old mke2fs asks before formatting one.
        "-F", "-q",
        // Explicit, because mke2fs picks 1 KiB blocks and 128-byte inodes for "small"
        // filesystems (under 512 MiB), and 128-byte inodes have no nanosecond timestamps.
        "-b", "4096", "-I", "256", "-N",
    ]
    .into_iter()
    .map(OsString::from)
    .collect();
    args.push(inode_count(size).to_string().into());
    args.extend(
        [
            // No blocks reserved for root: the tenant's root is the one who writes here, and the
            // limit is the size the tenant asked for.
            "-m",
            "0",
            // A damaged filesystem stops taking writes instead of spreading the damage.
            "-e",
            "remount-ro",
            // root_owner: the filesystem's root is root's, whoever runs mkfs. lazy_journal_init:
            // the journal is not zeroed, which would write 32-128 MiB into the sparse image; the
            // file is new and reads as zeros. The inode tables are not written either: mke2fs's
            // discard of the new file marks them zeroed, so the kernel has no lazy init to do
            // after the first mount (measured: the image stays under 1 MiB per GiB).
            "-E",
            "root_owner=0:0,lazy_itable_init=1,lazy_journal_init=1",
            "--",
        ]
        .into_iter()
        .map(OsString::from),
    );
    args.push(image.as_os_str().to_owned());
    args
}

/// The geometry an ext4 superblock records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ext4Geometry {
    pub block_size: u64,
    pub blocks: u64,
}

impl Ext4Geometry {
    pub fn bytes(self) -> u64 {
        self.block_size.saturating_mul(self.blocks)
    }
}

/// Where the primary superblock starts on the device.
pub const SUPERBLOCK_OFFSET: usize = 1024;
/// How many bytes of the device [`parse_ext4_superblock`] needs.
pub const SUPERBLOCK_READ_LEN: usize = SUPERBLOCK_OFFSET + 1024;

/// The block size and count from the first [`SUPERBLOCK_READ_LEN`] bytes of a device, or `None`
/// when they hold no ext2/3/4 superblock.
pub fn parse_ext4_superblock(device_start: &[u8]) -> Option<Ext4Geometry> {
    let superblock = device_start.get(SUPERBLOCK_OFFSET..SUPERBLOCK_READ_LEN)?;
    let u32_at = |offset: usize| superblock.get(offset..offset + 4).and_then(|bytes| bytes.try_into().ok()).map(u32::from_le_bytes);
    let magic = superblock.get(0x38..0x3a).map(|bytes| u16::from_le_bytes([bytes[0], bytes[1]]))?;
    if magic != 0xef53 {
        return None;
    }
    let log_block_size = u32_at(0x18)?;
    if log_block_size > 6 {
        return None;
    }
    const INCOMPAT_64BIT: u32 = 0x80;
    let blocks_high = if u32_at(0x60)? & INCOMPAT_64BIT != 0 { u64::from(u32_at(0x150)?) } else { 0 };
    Some(Ext4Geometry { block_size: 1024 << log_block_size, blocks: (blocks_high << 32) | u64::from(u32_at(0x04)?) })
}
