//! The mounts of a claim-backed publication (`spec.storage`): the claim's filesystem checked,
//! the upper and work directories made on it, the overlay over them. See [`super::claim`] for
//! the decisions.

use std::io;
use std::path::Path;

use super::claim::{ClaimLayer, FsVerdict, claim_overlay_source, find_claim_mount, judge_filesystem, probe_problem, unusable_filesystem};
use super::error::{Context, IoError, PublishError, claim_of_sc};
use super::mounter::Mounter;
use crate::authorize::BoundClaim;
use crate::layout::{self, ScKey};
use crate::mountinfo;
use crate::quota::{QuotaError, RootfsUsage};
use crate::sys::{ClaimOverlayDirs, System};
use crate::validate::PublishRequest;

impl<S: System> Mounter<S> {
    /// Where kubelet mounted `claim` for the pod `pod_uid`, `None` while it has not (yet).
    pub fn find_claim(&self, pod_uid: &str, claim: &BoundClaim) -> Result<Option<ClaimLayer>, IoError> {
        let host = self.host_mounts()?;
        Ok(find_claim_mount(&host, &self.kubelet_dir, pod_uid, claim)
            .map(|mount| ClaimLayer { claim: claim.clone(), mount_path: mount.mount_point.clone() }))
    }

    /// Checks the claim's filesystem, makes the upper and work directories on it and mounts the
    /// publication: the target's tmpfs, the overlay (`nodev,nosuid`), the control directory.
    pub(super) fn mount_claim_layers(
        &self,
        request: &PublishRequest,
        sc: &ScKey,
        layer: &ClaimLayer,
        lower: &Path,
    ) -> Result<(), PublishError> {
        let system = &*self.system;
        let claim = claim_of_sc(sc, &layer.claim.claim_name);
        let refused = |problem: String| PublishError::ClaimFilesystem { claim: claim.clone(), problem };
        let planted = |error: io::Error, path: &Path| match error.kind() {
            io::ErrorKind::NotADirectory => {
                PublishError::ClaimDataDir { claim: claim.clone(), path: path.display().to_string(), problem: error.to_string() }
            }
            _ => IoError { action: "preparing the claim's directories in", path: path.display().to_string(), source: error }.into(),
        };
        let mount_path = &layer.mount_path;
        let host = self.host_mounts()?;
        let entry = mountinfo::mount_at(&host, mount_path)
            .ok_or_else(|| refused(format!("kubelet's mount of it at {} is gone; kubelet will retry", mount_path.display())))?;
        if !entry.is_read_write() {
            return Err(refused(format!(
                "kubelet mounted it read-only at {} (the pod's volume has persistentVolumeClaim.readOnly, or the volume is read-only); the upper must be writable: mount it read-only only in the container (volumeMounts[].readOnly)",
                mount_path.display()
            )));
        }
        let facts = system.mounted_filesystem(mount_path).map_err(|error| planted(error, mount_path))?;
        let device = (entry.major, entry.minor);
        if facts.device != device {
            return Err(refused(format!(
                "{} is not the root of kubelet's mount of it (device {}:{}, the mount table says {}:{}); kubelet will retry",
                mount_path.display(),
                facts.device.0,
                facts.device.1,
                device.0,
                device.1
            )));
        }
        let verdict = judge_filesystem(facts.magic);
        if verdict == FsVerdict::Refused {
            return Err(refused(unusable_filesystem(&entry.fs_type, None)));
        }
        let data_dir = layer.data_dir();
        system.create_claim_dirs(mount_path, device).map_err(|error| planted(error, &data_dir))?;
        if verdict == FsVerdict::Unknown {
            let support = system.probe_upper_support(&data_dir).context("probing the claim's filesystem in", &data_dir)?;
            if let Some(why) = probe_problem(support) {
                return Err(refused(unusable_filesystem(&entry.fs_type, Some(why))));
            }
        }
        let rootfs = self.mount_target(request)?;
        let source = claim_overlay_source(&layer.claim.volume_name);
        let dirs = ClaimOverlayDirs { lower, claim_root: mount_path, device, source: &source };
        system.mount_claim_overlay(&dirs, &rootfs).map_err(|error| match error.kind() {
            io::ErrorKind::NotADirectory => planted(error, &data_dir),
            _ => IoError { action: "mounting the overlay at", path: rootfs.display().to_string(), source: error }.into(),
        })?;
        self.mount_control(request, &rootfs)
    }

    /// What the claim's filesystem holds, measured through the live overlay at `target` (its
    /// statfs is its upper's filesystem's): the claim's size is the rootfs's limit.
    pub(super) fn claim_usage(&self, target: &Path) -> Result<RootfsUsage, QuotaError> {
        let path = &layout::target_rootfs(target);
        let fs = self.system.statvfs(path).map_err(|source| QuotaError::Io {
            action: "statvfs of",
            path: path.display().to_string(),
            source,
        })?;
        // The claim's size is the limit, and none of it is on the node's disk.
        Ok(RootfsUsage::measured(fs.bytes_total, fs.into(), 0))
    }
}
