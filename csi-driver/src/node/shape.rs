//! What a complete publication looks like in the mount table: this plugin's tmpfs at the
//! target, the StoppableContainer's overlay read-write at `rootfs/` and the control directory at
//! `control/`. Pure functions over parsed mountinfo, shared by publish, unpublish and recovery.

use std::path::Path;

use super::claim::CLAIM_OVERLAY_SOURCE_PREFIX;
use super::error::{Context, IoError, PublishError};
use super::live::UpperKey;
use crate::layout::{self, DataRoot, ScKey, TARGET_TMPFS_SOURCE};
use crate::mountinfo::{self, MountEntry};
use crate::records::Record;
use crate::sys::System;
use crate::validate::PublishRequest;

/// The mount table of the plugin's mount namespace (the host's).
pub(super) fn host_mounts(system: &dyn System) -> Result<Vec<MountEntry>, IoError> {
    let text = system.own_mountinfo().context("reading", Path::new("/proc/self/mountinfo"))?;
    Ok(mountinfo::parse(&text)?)
}

/// Refuses a request for a volume recorded at another target or for another StoppableContainer.
pub(super) fn check_same_volume(record: &Record, request: &PublishRequest, sc: &ScKey) -> Result<(), PublishError> {
    if record.target_path != request.target_path || &record.sc != sc {
        return Err(PublishError::VolumeConflict {
            volume_id: request.volume_id.clone(),
            existing: record.target_path.display().to_string(),
            existing_sc: Box::new(record.sc.clone()),
            requested: request.target_path.display().to_string(),
        });
    }
    Ok(())
}

/// Checks that `target` holds exactly what a publish puts there: our tmpfs, the overlay of
/// `upper` mounted read-write at `rootfs/`, and the control directory at `control/`.
pub(super) fn check_published_shape(host: &[MountEntry], target: &Path, upper: &UpperKey) -> Result<(), String> {
    if &published_mounts(host, target)?.key != upper {
        return Err("the rootfs mount is not this StoppableContainer's overlay".into());
    }
    Ok(())
}

/// The mounts of a complete publication at a target, as the mount table shows them.
pub(super) struct PublishedMounts<'a> {
    /// The overlay's upper directory as its options name it (for an upper on a claim, a
    /// `/proc/self/fd/<fd>` of the plugin at the time of the mount: see `key`).
    pub upper: &'a Path,
    /// Which upper it is: the directory, or the claim's volume as the overlay's source names it.
    pub key: UpperKey,
    pub overlay: &'a MountEntry,
    pub control: &'a MountEntry,
}

/// The mounts at `target` if they are a complete publication of this plugin's (whichever
/// StoppableContainer's), or what is missing.
pub(super) fn published_mounts<'a>(host: &'a [MountEntry], target: &Path) -> Result<PublishedMounts<'a>, String> {
    let tmpfs = mountinfo::mount_at(host, target).ok_or("the target is not mounted")?;
    if !is_our_tmpfs(tmpfs) {
        return Err(format!("the target holds a foreign {} mount", tmpfs.fs_type));
    }
    let overlay = mountinfo::mount_at(host, &layout::target_rootfs(target)).ok_or("the overlay is not mounted")?;
    let upper = overlay.super_option("upperdir").filter(|_| overlay.fs_type == "overlay").ok_or("the rootfs mount is not an overlay")?;
    if !overlay.is_read_write() {
        return Err("the overlay is read-only".into());
    }
    let control = mountinfo::mount_at(host, &layout::target_control(target)).ok_or("the control directory is not mounted")?;
    let key = match overlay.source.strip_prefix(CLAIM_OVERLAY_SOURCE_PREFIX) {
        Some(volume) => UpperKey::Claim(volume.to_owned()),
        None => UpperKey::Dir(Path::new(upper).to_path_buf()),
    };
    Ok(PublishedMounts { upper: Path::new(upper), key, overlay, control })
}

/// The StoppableContainer whose data holds the upper directory `upper`: the first three names
/// below `<data-root>/containers/` are its namespace, name and UID (whatever the layout below
/// them).
pub(super) fn sc_of_upper(data: &DataRoot, upper: &Path) -> Option<ScKey> {
    let names = path_names(upper.strip_prefix(data.containers_dir()).ok()?)?;
    let [namespace, name, uid, _, ..] = names.as_slice() else { return None };
    Some(ScKey { namespace: namespace.clone(), name: name.clone(), uid: uid.clone() })
}

/// The components of a relative path, if all are plain UTF-8 names.
fn path_names(path: &Path) -> Option<Vec<String>> {
    path.components()
        .map(|component| match component {
            std::path::Component::Normal(name) => name.to_str().map(str::to_owned),
            _ => None,
        })
        .collect()
}

/// Whether a mount is the tmpfs this plugin puts at each target.
pub(super) fn is_our_tmpfs(entry: &MountEntry) -> bool {
    entry.fs_type == "tmpfs" && entry.source == TARGET_TMPFS_SOURCE
}

#[cfg(test)]
pub(super) mod tests {
    use std::path::PathBuf;

    use super::*;

    pub const POD_UID: &str = "6d1c2b7e-43a1-4e5e-9d63-0c5a3f1b2e7d";
    pub const DATA: &str = "/var/lib/stoppablecontainer";
    pub const KUBELET: &str = "/var/lib/kubelet";
    pub const SC_UID: &str = "0f4c1a52-9d5e-4b7a-8c3e-2a6b5d7e9f10";

    pub fn target() -> PathBuf {
        PathBuf::from(format!("{KUBELET}/pods/{POD_UID}/volumes/kubernetes.io~csi/sc-rootfs/mount"))
    }

    /// The three mounts of a complete publication of volume `csi-1` of `ns/dev`, as mountinfo
    /// shows them (the data root on the root filesystem, so the control bind's root is its path).
    pub fn published(overlay_options: &str) -> Vec<MountEntry> {
        let target = target().display().to_string();
        let upper = format!("{DATA}/containers/ns/dev/{SC_UID}/fs/upper");
        let text = format!(
            "900 30 0:90 / {target} rw,nosuid,nodev,noexec - tmpfs stoppablecontainer rw,size=64k,mode=755\n\
             901 900 0:91 / {target}/rootfs {overlay_options} - overlay overlay rw,lowerdir=/run/containerd/x/rootfs,upperdir={upper},workdir={DATA}/containers/ns/dev/{SC_UID}/fs/work\n\
             902 900 254:0 {DATA}/control/csi-1 {target}/control ro,nosuid,nodev,noexec - ext4 /dev/vda rw\n"
        );
        mountinfo::parse(&text).expect("parses")
    }

    #[test]
    fn a_half_done_publication_is_not_live() {
        let host = published("ro,relatime");
        assert_eq!(published_mounts(&host, &target()).err().as_deref(), Some("the overlay is read-only"));
        let host: Vec<MountEntry> = published("rw").into_iter().filter(|entry| entry.fs_type != "overlay").collect();
        assert_eq!(published_mounts(&host, &target()).err().as_deref(), Some("the overlay is not mounted"));
        let host: Vec<MountEntry> = published("rw").into_iter().filter(|entry| entry.fs_type != "ext4").collect();
        assert_eq!(published_mounts(&host, &target()).err().as_deref(), Some("the control directory is not mounted"));
        let other_upper = DataRoot::new(DATA).upper_dir(&ScKey { namespace: "ns".into(), name: "dev".into(), uid: "other".into() });
        assert_eq!(
            check_published_shape(&published("rw"), &target(), &UpperKey::Dir(other_upper)).err().as_deref(),
            Some("the rootfs mount is not this StoppableContainer's overlay")
        );
    }
}
