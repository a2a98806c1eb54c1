//! The persistent layer on a claim (`spec.storage`): where kubelet mounted the claim for the
//! consumer pod, and whether its filesystem can hold an overlay's upper directory. Pure
//! decisions over the mount table and what the kernel says of the filesystem; the
//! [`System`](crate::sys::System) gathers the facts, [`super::Mounter`] acts on them.
//!
//! Kubelet mounts a claim's volume for each pod that uses it at
//! `<kubelet-dir>/pods/<pod-uid>/volumes/<plugin>/<pv-name>` (in-tree plugins, such as
//! `kubernetes.io~local-volume`) or `.../kubernetes.io~csi/<pv-name>/mount` (CSI drivers), and
//! only if a container mounts it (kubelet 1.20's volume manager skips unused volumes,
//! `desired_state_of_world_populator.go`: "Skipping unused volume"), which is why the operator
//! mounts it read-only in the consumer container. The pod UID is kubelet's (from the
//! publish's target path) and the PV name the control plane's (the claim's `spec.volumeName`):
//! neither is the tenant's to choose.

use std::path::{Path, PathBuf};

use sc_api::storage::CLAIM_DATA_DIR;

use crate::authorize::BoundClaim;
use crate::mountinfo::{MountEntry, mount_at};

/// The directory of the in-tree plugin kubelet puts CSI volumes under.
const CSI_PLUGIN_DIR: &str = "kubernetes.io~csi";

/// The source of a claim-backed overlay: `sc-claim:<pv-name>`, so the mount table says which
/// claim's volume an overlay's upper is on (its `upperdir` names only a file descriptor, see
/// [`crate::sys::System::mount_claim_overlay`]).
pub const CLAIM_OVERLAY_SOURCE_PREFIX: &str = "sc-claim:";

/// The overlay source for the claim bound to `volume_name`.
pub fn claim_overlay_source(volume_name: &str) -> String {
    format!("{CLAIM_OVERLAY_SOURCE_PREFIX}{volume_name}")
}

/// Where the publication of a claim-backed rootfs keeps its layers: the claim as authorised and
/// where kubelet mounted it for the consumer pod.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimLayer {
    #[serde(flatten)]
    pub claim: BoundClaim,
    /// Kubelet's mount of the claim for the consumer pod: the claim's filesystem.
    pub mount_path: PathBuf,
}

impl ClaimLayer {
    /// `<claim>/stoppablecontainer`: the directory of the upper and work directories.
    pub fn data_dir(&self) -> PathBuf {
        self.mount_path.join(CLAIM_DATA_DIR)
    }

    pub fn upper_dir(&self) -> PathBuf {
        self.data_dir().join("upper")
    }
}

/// `<kubelet>/pods/<uid>/volumes`: where kubelet mounts every volume of pod `pod_uid`.
fn pod_volumes_dir(kubelet_dir: &Path, pod_uid: &str) -> PathBuf {
    kubelet_dir.join("pods").join(pod_uid).join("volumes")
}

/// Whether `mount_point` is where kubelet mounts the volume `volume_name` for pod `pod_uid`:
/// exactly `<kubelet>/pods/<uid>/volumes/kubernetes.io~csi/<pv>/mount`, or
/// `<kubelet>/pods/<uid>/volumes/kubernetes.io~<plugin>/<pv>` for another plugin.
pub fn is_claim_mount_point(kubelet_dir: &Path, pod_uid: &str, volume_name: &str, mount_point: &Path) -> bool {
    let volumes = pod_volumes_dir(kubelet_dir, pod_uid);
    let Ok(below) = mount_point.strip_prefix(&volumes) else { return false };
    let names: Vec<&str> = below.iter().filter_map(|name| name.to_str()).collect();
    if names.len() != below.iter().count() {
        return false;
    }
    match names.as_slice() {
        [CSI_PLUGIN_DIR, volume, "mount"] => *volume == volume_name,
        [plugin, volume] => *plugin != CSI_PLUGIN_DIR && plugin.starts_with("kubernetes.io~") && *volume == volume_name,
        _ => false,
    }
}

/// Kubelet's mount of `claim` for the pod `pod_uid` in the host mount table, or `None` while it
/// is not mounted (yet). The topmost mount at the path counts, as for any path lookup.
pub fn find_claim_mount<'a>(host: &'a [MountEntry], kubelet_dir: &Path, pod_uid: &str, claim: &BoundClaim) -> Option<&'a MountEntry> {
    let candidate = host.iter().rev().find(|entry| is_claim_mount_point(kubelet_dir, pod_uid, &claim.volume_name, &entry.mount_point))?;
    mount_at(host, &candidate.mount_point)
}

/// The paths kubelet would mount the claim at, for the message of a publish that waited in vain.
pub fn expected_mount_points(kubelet_dir: &Path, pod_uid: &str, volume_name: &str) -> String {
    let volumes = pod_volumes_dir(kubelet_dir, pod_uid);
    format!(
        "{} or {}",
        volumes.join(CSI_PLUGIN_DIR).join(volume_name).join("mount").display(),
        volumes.join("kubernetes.io~<plugin>").join(volume_name).display()
    )
}

/// Filesystem magic numbers (`statfs(2)`'s `f_type`, linux/magic.h).
mod magic {
    pub const EXT: i64 = 0xEF53;
    pub const XFS: i64 = 0x5846_5342;
    pub const BTRFS: i64 = 0x9123_683E;
    pub const F2FS: i64 = 0xF2F5_2010;
    pub const NFS: i64 = 0x6969;
    pub const CIFS: i64 = 0xFF53_4D42;
    pub const SMB2: i64 = 0xFE53_4D42;
    pub const SMB: i64 = 0x517B;
    pub const FUSE: i64 = 0x6573_5546;
    pub const TMPFS: i64 = 0x0102_1994;
    pub const RAMFS: i64 = 0x8584_58F6;
    pub const OVERLAY: i64 = 0x794C_7630;
    pub const V9FS: i64 = 0x0102_1997;
    pub const CEPH: i64 = 0x00C3_6400;
    pub const AFS: i64 = 0x5346_414F;
    pub const SQUASHFS: i64 = 0x7371_7368;
    pub const ISOFS: i64 = 0x9660;
    pub const MSDOS: i64 = 0x4D44;
}

/// What the filesystem's type says about holding an overlay upper.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsVerdict {
    /// A local block filesystem with `d_type` and xattrs.
    Accepted,
    /// A network, userspace, memory or read-only filesystem: never an upper.
    Refused,
    /// Not known here: probe it (a file's `d_type`, a `trusted.*` xattr).
    Unknown,
}

/// Decides by the kernel's `f_type` of the claim's filesystem.
pub fn judge_filesystem(fs_magic: i64) -> FsVerdict {
    match fs_magic {
        magic::EXT | magic::XFS | magic::BTRFS | magic::F2FS => FsVerdict::Accepted,
        magic::NFS
        | magic::CIFS
        | magic::SMB2
        | magic::SMB
        | magic::FUSE
        | magic::TMPFS
        | magic::RAMFS
        | magic::OVERLAY
        | magic::V9FS
        | magic::CEPH
        | magic::AFS
        | magic::SQUASHFS
        | magic::ISOFS
        | magic::MSDOS => FsVerdict::Refused,
        _ => FsVerdict::Unknown,
    }
}

/// What a probe of an unknown filesystem found (see [`crate::sys::System::probe_upper_support`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UpperSupport {
    /// `readdir` gives a file's type (`d_type`): overlayfs needs it to see whiteouts.
    pub d_type: bool,
    /// A `trusted.*` extended attribute can be set: overlayfs marks opaque directories with one.
    pub trusted_xattr: bool,
}

/// Why a probed filesystem cannot hold the upper, `None` when it can.
pub fn probe_problem(support: UpperSupport) -> Option<&'static str> {
    match (support.d_type, support.trusted_xattr) {
        (true, true) => None,
        (false, true) => Some("it gives no file types in directory listings (d_type)"),
        (true, false) => Some("it cannot hold trusted.* extended attributes"),
        (false, false) => Some("it gives no file types in directory listings (d_type) and cannot hold trusted.* extended attributes"),
    }
}

/// The message of a claim whose filesystem cannot hold the upper: what the kernel says it is,
/// why, and what to do (a publish error: kubelet shows it in the consumer pod's FailedMount Event).
pub fn unusable_filesystem(fs_type: &str, why: Option<&str>) -> String {
    let why = why.map(|why| format!(" ({why})")).unwrap_or_default();
    format!(
        "an overlay upper needs a local block filesystem with d_type and xattrs (ext4, xfs, btrfs); the claim's StorageClass gives {fs_type}{why}: use a block StorageClass"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mountinfo;

    const KUBELET: &str = "/var/lib/kubelet";
    const POD: &str = "6d1c2b7e-43a1-4e5e-9d63-0c5a3f1b2e7d";

    fn claim() -> BoundClaim {
        BoundClaim { claim_name: "dev-rootfs".into(), claim_uid: "u".into(), volume_name: "pv-17".into() }
    }

    fn yes(path: &str) -> bool {
        is_claim_mount_point(Path::new(KUBELET), POD, "pv-17", Path::new(path))
    }

    #[test]
    fn only_kubelets_two_volume_paths_of_this_pod_and_volume_are_the_claim() {
        assert!(yes(&format!("{KUBELET}/pods/{POD}/volumes/kubernetes.io~csi/pv-17/mount")));
        assert!(yes(&format!("{KUBELET}/pods/{POD}/volumes/kubernetes.io~local-volume/pv-17")));
        // Another pod's mount of the same claim (a tenant's pod on this node) is not the consumer's.
        assert!(!yes(&format!("{KUBELET}/pods/9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a/volumes/kubernetes.io~local-volume/pv-17")));
        // Another volume, the CSI volume without its mount, deeper paths, a subPath bind.
        assert!(!yes(&format!("{KUBELET}/pods/{POD}/volumes/kubernetes.io~local-volume/pv-18")));
        assert!(!yes(&format!("{KUBELET}/pods/{POD}/volumes/kubernetes.io~csi/pv-17")));
        assert!(!yes(&format!("{KUBELET}/pods/{POD}/volumes/kubernetes.io~local-volume/pv-17/mount")));
        assert!(!yes(&format!("{KUBELET}/pods/{POD}/volume-subpaths/pv-17/workload/0")));
        assert!(!yes(&format!("{KUBELET}/pods/{POD}/volumes/not-a-plugin/pv-17")));
        assert!(!yes("/mnt/pv-17"));
    }

    #[test]
    fn the_claim_mount_is_found_in_the_host_mount_table_or_not_yet() {
        let text = format!(
            "1 0 254:0 / / rw - ext4 /dev/vda rw\n\
             2 1 7:3 / {KUBELET}/pods/9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a/volumes/kubernetes.io~local-volume/pv-17 rw - ext4 /dev/loop3 rw\n"
        );
        let host = mountinfo::parse(&text).expect("parses");
        assert_eq!(find_claim_mount(&host, Path::new(KUBELET), POD, &claim()), None, "only another pod mounts it");
        let text = format!("{text}3 1 7:3 / {KUBELET}/pods/{POD}/volumes/kubernetes.io~local-volume/pv-17 rw - ext4 /dev/loop3 rw\n");
        let host = mountinfo::parse(&text).expect("parses");
        let found = find_claim_mount(&host, Path::new(KUBELET), POD, &claim()).expect("the consumer's mount");
        assert_eq!(found.mount_id, 3);
        assert_eq!(
            expected_mount_points(Path::new(KUBELET), POD, "pv-17"),
            format!(
                "{KUBELET}/pods/{POD}/volumes/kubernetes.io~csi/pv-17/mount or {KUBELET}/pods/{POD}/volumes/kubernetes.io~<plugin>/pv-17"
            )
        );
    }

    #[test]
    fn local_block_filesystems_are_accepted_shared_and_memory_ones_refused() {
        for accepted in [magic::EXT, magic::XFS, magic::BTRFS, magic::F2FS] {
            assert_eq!(judge_filesystem(accepted), FsVerdict::Accepted, "{accepted:#x}");
        }
        for refused in [magic::NFS, magic::CIFS, magic::SMB2, magic::FUSE, magic::TMPFS, magic::OVERLAY, magic::V9FS, magic::CEPH] {
            assert_eq!(judge_filesystem(refused), FsVerdict::Refused, "{refused:#x}");
        }
        // ZFS: not known here, so probed.
        assert_eq!(judge_filesystem(0x2FC1_2FC1), FsVerdict::Unknown);
    }

    #[test]
    fn a_probe_needs_both_d_type_and_trusted_xattrs() {
        assert_eq!(probe_problem(UpperSupport { d_type: true, trusted_xattr: true }), None);
        assert_eq!(
            probe_problem(UpperSupport { d_type: true, trusted_xattr: false }),
            Some("it cannot hold trusted.* extended attributes")
        );
        assert_eq!(
            probe_problem(UpperSupport { d_type: false, trusted_xattr: true }),
            Some("it gives no file types in directory listings (d_type)")
        );
        assert!(probe_problem(UpperSupport::default()).is_some());
    }

    #[test]
    fn the_refusal_says_what_the_class_gives_and_what_to_use() {
        assert_eq!(
            unusable_filesystem("nfs4", None),
            "an overlay upper needs a local block filesystem with d_type and xattrs (ext4, xfs, btrfs); the claim's StorageClass gives nfs4: use a block StorageClass"
        );
        assert_eq!(
            unusable_filesystem("zfs", Some("it cannot hold trusted.* extended attributes")),
            "an overlay upper needs a local block filesystem with d_type and xattrs (ext4, xfs, btrfs); the claim's StorageClass gives zfs (it cannot hold trusted.* extended attributes): use a block StorageClass"
        );
    }
}
