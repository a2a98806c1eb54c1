//! Parser for `/proc/<pid>/mountinfo` (proc(5)), and the lookups the node plugin makes in it.
//!
//! Mountinfo, not `/proc/mounts`, because it carries the device (`major:minor`) and the root of
//! each mount inside its filesystem — the two facts that identify a container's root filesystem
//! across mount namespaces.

use std::path::{Path, PathBuf};

/// One line of a mountinfo file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountEntry {
    pub mount_id: u32,
    pub parent_id: u32,
    pub major: u32,
    pub minor: u32,
    /// The directory of the filesystem that is mounted here (`/` unless this is a bind mount of
    /// a subdirectory).
    pub root: PathBuf,
    /// Where it is mounted, relative to the reading process's root.
    pub mount_point: PathBuf,
    /// Per-mount options (`rw`, `nosuid`, ...).
    pub mount_options: Vec<String>,
    pub fs_type: String,
    pub source: String,
    /// Per-superblock options (for overlayfs: `lowerdir=`, `upperdir=`, `workdir=`, ...).
    pub super_options: Vec<String>,
}

impl MountEntry {
    /// Whether this mount is writable through this mount point.
    pub fn is_read_write(&self) -> bool {
        self.mount_options.iter().any(|option| option == "rw") && !self.super_options.iter().any(|option| option == "ro")
    }

    /// Value of a `key=value` superblock option.
    pub fn super_option(&self, key: &str) -> Option<&str> {
        self.super_options.iter().find_map(|option| option.strip_prefix(key)?.strip_prefix('='))
    }
}

/// A line of mountinfo that does not follow proc(5).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed mountinfo line {line_number} ({reason}): {line:?}")]
pub struct ParseError {
    pub line_number: usize,
    pub reason: &'static str,
    pub line: String,
}

/// Parses a whole mountinfo file. Blank lines are skipped; any malformed line is an error,
/// because a silently skipped mount could make the plugin mount over something it did not see.
pub fn parse(text: &str) -> Result<Vec<MountEntry>, ParseError> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| parse_line(line).map_err(|reason| ParseError { line_number: index + 1, reason, line: line.to_owned() }))
        .collect()
}

fn parse_line(line: &str) -> Result<MountEntry, &'static str> {
    // Fields: id parent major:minor root mount_point options [optional fields...] - fstype source super_options
    let (before, after) = line.split_once(" - ").ok_or("no ' - ' separator")?;
    let mut fields = before.split(' ');
    let mut next = |what: &'static str| fields.next().filter(|field| !field.is_empty()).ok_or(what);
    let mount_id = next("no mount id")?.parse().map_err(|_| "mount id is not a number")?;
    let parent_id = next("no parent id")?.parse().map_err(|_| "parent id is not a number")?;
    let (major, minor) = next("no major:minor")?.split_once(':').ok_or("device is not major:minor")?;
    let major = major.parse().map_err(|_| "major is not a number")?;
    let minor = minor.parse().map_err(|_| "minor is not a number")?;
    let root = PathBuf::from(unescape(next("no root")?));
    let mount_point = PathBuf::from(unescape(next("no mount point")?));
    let mount_options = next("no mount options")?.split(',').map(str::to_owned).collect();

    let mut tail = after.split(' ');
    let fs_type = tail.next().filter(|field| !field.is_empty()).ok_or("no filesystem type")?;
    let source = tail.next().ok_or("no mount source")?;
    let super_options = tail.next().ok_or("no superblock options")?.split(',').map(unescape).collect();
    Ok(MountEntry {
        mount_id,
        parent_id,
        major,
        minor,
        root,
        mount_point,
        mount_options,
        fs_type: unescape(fs_type),
        source: unescape(source),
        super_options,
    })
}

/// Undoes the kernel's octal escaping of space, tab, newline and backslash (`\040` ...).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let octal = bytes
            .get(index + 1..index + 4)
            .filter(|digits| bytes[index] == b'\\' && digits.iter().all(|digit| (b'0'..=b'7').contains(digit)));
        match octal {
            Some(digits) => {
                let value = digits.iter().fold(0u32, |acc, digit| acc * 8 + u32::from(digit - b'0'));
                out.push(u8::try_from(value).unwrap_or(b'?'));
                index += 4;
            }
            None => {
                out.push(bytes[index]);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount a process sees as its `/`: the last (topmost) entry mounted at `/`.
pub fn root_mount(entries: &[MountEntry]) -> Option<&MountEntry> {
    entries.iter().rev().find(|entry| entry.mount_point == Path::new("/"))
}

/// The mounts in `host_entries` (another namespace's mountinfo) that show the same directory of
/// the same filesystem as `root`: same device, same filesystem type and the same **root** inside
/// that filesystem. Container runtimes mount every container's root filesystem in the host mount
/// namespace too; this finds that mount whatever the runtime's directory layout, including a
/// container root that is a bind of a directory (containerd's `native` snapshotter), where a
/// match on the device alone would give the whole disk. Several mounts can match (propagated
/// copies, binds of the same directory): the caller picks the one whose mount point is the very
/// directory the process sees as `/` (same device and inode).
pub fn mounts_showing<'a>(root: &MountEntry, host_entries: &'a [MountEntry]) -> Vec<&'a MountEntry> {
    host_entries
        .iter()
        .filter(|entry| entry.major == root.major && entry.minor == root.minor && entry.root == root.root && entry.fs_type == root.fs_type)
        .collect()
}

/// The mount at exactly `path`, topmost first.
pub fn mount_at<'a>(entries: &'a [MountEntry], path: &Path) -> Option<&'a MountEntry> {
    entries.iter().rev().find(|entry| entry.mount_point == path)
}

/// Every mount at or below `path`, deepest first — the order to unmount them in.
pub fn mounts_under<'a>(entries: &'a [MountEntry], path: &Path) -> Vec<&'a MountEntry> {
    let mut found: Vec<&MountEntry> = entries.iter().filter(|entry| entry.mount_point.starts_with(path)).collect();
    // Later lines are mounted later (possibly on top of earlier ones): unmount them first.
    found.reverse();
    found.sort_by_key(|entry| std::cmp::Reverse(entry.mount_point.components().count()));
    found
}

/// Overlay mounts whose upper directory is `upper_dir`.
pub fn overlays_with_upper<'a>(entries: &'a [MountEntry], upper_dir: &Path) -> Vec<&'a MountEntry> {
    entries.iter().filter(|entry| entry.fs_type == "overlay" && entry.super_option("upperdir").map(Path::new) == Some(upper_dir)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = include_str!("../tests/fixtures/mountinfo-host-containerd.txt");
    const CONTAINER: &str = include_str!("../tests/fixtures/mountinfo-container.txt");

    #[test]
    fn parses_optional_fields_and_super_options() {
        let entries = parse(HOST).expect("fixture parses");
        let overlay = entries.iter().find(|entry| entry.fs_type == "overlay").expect("an overlay");
        assert_eq!(overlay.major, 0);
        assert_eq!(overlay.super_option("upperdir"), Some("/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/40/fs"));
        assert!(overlay.is_read_write());
        let shared = entries.iter().find(|entry| entry.mount_point == Path::new("/var/lib/kubelet")).expect("kubelet");
        assert_eq!(shared.root, Path::new("/var/lib/kubelet"));
    }

    #[test]
    fn unescapes_octal_sequences() {
        let entries = parse("36 35 98:0 /a\\040b /mnt/with\\040space\\011tab rw,noatime master:1 - ext3 /dev/root rw,errors=continue")
            .expect("parses");
        assert_eq!(entries[0].root, Path::new("/a b"));
        assert_eq!(entries[0].mount_point, Path::new("/mnt/with space\ttab"));
        assert_eq!(unescape("back\\134slash"), "back\\slash");
        assert_eq!(unescape("not\\9octal"), "not\\9octal");
    }

    #[test]
    fn finds_the_host_path_of_a_container_root_by_device_and_root() {
        let container = parse(CONTAINER).expect("container fixture");
        let host = parse(HOST).expect("host fixture");
        let root = root_mount(&container).expect("a root");
        assert_eq!((root.major, root.minor), (0, 187));
        let candidates: Vec<&Path> = mounts_showing(root, &host).iter().map(|entry| entry.mount_point.as_path()).collect();
        assert_eq!(
            candidates,
            vec![Path::new(
                "/run/containerd/io.containerd.runtime.v2.task/k8s.io/8b7e0f6ad23b2c1bd3c0b1e6f84a3d7c1e3f0aa1c19f8c2de5d9a4b7f2c61e0a/rootfs"
            )]
        );
    }

    #[test]
    fn a_bind_of_a_subdirectory_is_not_the_whole_filesystem() {
        let host = parse("10 1 0:187 /etc /somewhere rw - overlay overlay rw\n").expect("parses");
        let root = parse("1 0 0:187 / / rw - overlay overlay rw\n").expect("parses");
        assert!(mounts_showing(&root[0], &host).is_empty());
    }

    #[test]
    fn a_process_chrooted_into_a_directory_of_the_nodes_disk_never_matches_the_nodes_root() {
        // The attack: a pod's process chroots into its emptyDir, a directory of the node's disk.
        // Its `/` entry then has the disk's device and the emptyDir's path as its root; the host's
        // `/` mount of that disk (root `/`) must not be taken for it.
        let host = parse(
            "22 1 253:0 / / rw,relatime - ext4 /dev/vda rw\n\
             23 22 253:0 /var/lib/kubelet /var/lib/kubelet rw,relatime shared:5 - ext4 /dev/vda rw\n",
        )
        .expect("parses");
        let chrooted =
            parse("900 899 253:0 /var/lib/kubelet/pods/p/volumes/kubernetes.io~empty-dir/x / rw - ext4 /dev/vda rw\n").expect("parses");
        assert!(mounts_showing(&chrooted[0], &host).is_empty());
    }

    #[test]
    fn a_container_root_that_is_a_bind_of_a_directory_matches_that_bind_not_the_disk() {
        // containerd's native snapshotter: the container's root is a bind of a snapshot directory.
        let host = parse(
            "22 1 253:0 / / rw,relatime - ext4 /dev/vda rw\n\
             40 22 253:0 /var/lib/containerd/snapshots/7/fs /run/containerd/task/k8s.io/abc/rootfs rw - ext4 /dev/vda rw\n",
        )
        .expect("parses");
        let root = parse("1 0 253:0 /var/lib/containerd/snapshots/7/fs / rw - ext4 /dev/vda rw\n").expect("parses");
        let found: Vec<u32> = mounts_showing(&root[0], &host).iter().map(|entry| entry.mount_id).collect();
        assert_eq!(found, vec![40]);
    }

    #[test]
    fn mounts_under_lists_deepest_first() {
        let entries = parse(
            "1 0 8:1 / / rw - ext4 /dev/sda rw\n\
             2 1 0:50 / /t rw - tmpfs t rw\n\
             3 2 0:51 / /t/rootfs rw - overlay overlay rw,upperdir=/u\n\
             4 2 8:1 /x /t/control rw - ext4 /dev/sda rw\n",
        )
        .expect("parses");
        let order: Vec<_> = mounts_under(&entries, Path::new("/t")).iter().map(|entry| entry.mount_id).collect();
        assert_eq!(order, vec![4, 3, 2]);
        assert_eq!(overlays_with_upper(&entries, Path::new("/u")).len(), 1);
        assert_eq!(mount_at(&entries, Path::new("/t")).map(|entry| entry.mount_id), Some(2));
    }

    #[test]
    fn rejects_malformed_lines_with_the_reason() {
        let error = parse("1 0 8:1 / / rw\n").expect_err("no separator");
        assert_eq!(error.reason, "no ' - ' separator");
        assert_eq!(error.line_number, 1);
        let error = parse("x 0 8:1 / / rw - ext4 /dev/sda rw").expect_err("bad id");
        assert!(error.to_string().contains("mount id is not a number"), "{error}");
        let error = parse("1 0 81 / / rw - ext4 /dev/sda rw").expect_err("bad device");
        assert!(error.to_string().contains("major:minor"), "{error}");
        let error = parse("1 0 8:1 / / rw - ext4").expect_err("no source");
        assert!(error.to_string().contains("no mount source"), "{error}");
    }
}
