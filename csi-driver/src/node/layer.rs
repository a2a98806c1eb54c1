//! The layer volume: a StoppableContainer's persistent layer, read-only, for a pod of its
//! namespace (`kubectl sc diff`, later `export` and `cp`), while the SC runs and while it is
//! stopped. At the target, a small tmpfs of its own kind ([`LAYER_TMPFS_SOURCE`]) holds:
//!
//! ```text
//! <target>/upper        the upper, bound read-only, nosuid, nodev, noexec
//! <target>/opaque-dirs  its opaque directories (NUL-separated rootfs paths), which the pod
//!                       cannot read itself: the xattr needs CAP_SYS_ADMIN
//! ```
//!
//! The tmpfs is remounted read-only once the list is written. The pod's own root filesystem is
//! the SC's image, so it compares the upper with `/`: no lower layer is needed from here, and the
//! volume is no live overlay (the one-live-overlay-per-upper rule does not count it, and a rootfs
//! publish of the SC while it is mounted goes ahead).
//!
//! Nothing is recorded: the volume is recognised at its target by its tmpfs's source, and which
//! SC's own filesystem the bind reads (to release it at the unpublish) by the bind's device in the
//! mount table; both hold after a plugin restart. Recovery, the sweeps and the usage reports go
//! by the rootfs volume's tmpfs and by records, so they never see a layer volume; the data
//! cleanup sees it ([`Mounter::is_layer_read`]) and waits, and a stopped SC's own filesystem,
//! which the publish mounts, stays mounted while a bind of it exists (`quota::unmount` refuses).
//!
//! The walk for the opaque directories runs without the mount lock, through the volume's own
//! bind (which keeps the filesystem mounted meanwhile): an upper with a million directories must
//! not hold up every other publish on the node.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use tracing::{debug, info, warn};

use super::VolumeStats;
use super::claim::ClaimLayer;
use super::error::{Context, IoError, PublishError, UnpublishError, claim_of_sc};
use super::mounter::{Mounter, volume_stats};
use super::rpc::NodeCore;
use crate::cluster::{ClusterView, LayerData};
use crate::layout::{self, DataLayout, LAYER_TMPFS_SOURCE, ScKey};
use crate::mountinfo::{self, MountEntry};
use crate::quota::{self, RootfsFs, RootfsSize};
use crate::sys::{LayerUpper, System};
use crate::timing::millis;
use crate::validate::LayerRequest;

/// The most the opaque-directory list may take (about 400 000 paths): the tmpfs is sized for it
/// and costs only what is written.
pub const MAX_OPAQUE_LIST_BYTES: usize = 16 << 20;

/// The layer tmpfs's size: the list and, while it is renamed into place, its temporary copy.
const LAYER_TMPFS_BYTES: u64 = 2 * MAX_OPAQUE_LIST_BYTES as u64 + (64 << 10);

/// The list's mode: anyone in the pod may read it, nobody write it.
const OPAQUE_LIST_MODE: u32 = 0o444;

/// Whether a mount is the tmpfs of a layer volume.
pub(super) fn is_layer_tmpfs(entry: &MountEntry) -> bool {
    entry.fs_type == "tmpfs" && entry.source == LAYER_TMPFS_SOURCE
}

/// What the first step of a layer publish found or made at the target.
#[derive(Debug, PartialEq, Eq)]
pub enum LayerStep {
    /// The volume is published as asked (a repeated publish).
    Published,
    /// The tmpfs and the bind are mounted; the list of opaque directories is to be written.
    Bound,
}

/// The opaque-directory list file's content ([`sc_api::layer_diff::encode_path_list`]), or why
/// it cannot be written.
pub fn opaque_list(sc: &ScKey, opaque: &[PathBuf]) -> Result<Vec<u8>, PublishError> {
    let bytes = sc_api::layer_diff::encode_path_list(opaque.iter().map(PathBuf::as_path)).map_err(|error| IoError {
        action: "listing the opaque directories of the layer of",
        path: sc.to_string(),
        source: io::Error::new(io::ErrorKind::InvalidData, error),
    })?;
    if bytes.len() > MAX_OPAQUE_LIST_BYTES {
        return Err(PublishError::OpaqueListTooLarge { sc: sc.clone(), bytes: bytes.len(), max: MAX_OPAQUE_LIST_BYTES });
    }
    Ok(bytes)
}

impl<S: System> Mounter<S> {
    /// Where the SC's upper is for a layer volume: on the claim's filesystem where kubelet mounted
    /// it for the pod (`claim`), or on this node, where a stopped SC's own filesystem is mounted
    /// for the read. Only existing data is read: nothing is created.
    fn layer_upper(&self, sc: &ScKey, claim: Option<&ClaimLayer>) -> Result<LayerUpper, PublishError> {
        if let Some(layer) = claim {
            return self.claim_layer_upper(sc, layer);
        }
        match self.layout(sc) {
            DataLayout::Unlimited => Ok(LayerUpper::DataRoot(self.data.legacy_upper_dir(sc))),
            DataLayout::OwnFilesystem => {
                let fs = RootfsFs::new(self.data.container_dir(sc));
                let image = fs.image();
                let Some(info) = self.loops.file_info(&image).context("looking at", &image)? else {
                    return Err(PublishError::NoLayer { sc: sc.clone(), looked: image.display().to_string() });
                };
                let tools = self.rootfs.tools.as_ref().map_err(|problem| PublishError::RootfsSize {
                    sc: sc.clone(),
                    problem: format!("this node cannot mount size-limited filesystems: {problem}"),
                })?;
                // Its own size: reading the layer never grows (or shrinks) it.
                let size = RootfsSize::from_bytes(info.len)
                    .map_err(|error| PublishError::RootfsSize { sc: sc.clone(), problem: error.to_string() })?;
                let mounted = quota::ensure_mounted(&*self.loops, &fs, size, tools)?;
                Ok(LayerUpper::DataRoot(mounted.upper))
            }
        }
    }

    /// The upper on the claim: kubelet's mount of it for the pod must still be there, and be
    /// the root of that filesystem (as for a rootfs publish on a claim).
    fn claim_layer_upper(&self, sc: &ScKey, layer: &ClaimLayer) -> Result<LayerUpper, PublishError> {
        let claim = claim_of_sc(sc, &layer.claim.claim_name);
        let refused = |problem: String| PublishError::ClaimFilesystem { claim: claim.clone(), problem };
        let mount_path = &layer.mount_path;
        let host = self.host_mounts()?;
        let entry = mountinfo::mount_at(&host, mount_path)
            .ok_or_else(|| refused(format!("kubelet's mount of it at {} is gone; kubelet will retry", mount_path.display())))?;
        let device = (entry.major, entry.minor);
        let facts = self.system.mounted_filesystem(mount_path).context("examining the claim's mount at", mount_path)?;
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
        Ok(LayerUpper::Claim { claim_root: mount_path.clone(), device })
    }

    /// Whether `target` holds a complete layer volume of `upper`: its tmpfs, read-only, with the
    /// list written and the bind of this very upper (by identity) in place.
    fn holds_layer_of(&self, host: &[MountEntry], target: &Path, upper: &LayerUpper) -> bool {
        let system = &*self.system;
        let bind_point = layout::target_layer_upper(target);
        let complete = mountinfo::mount_at(host, target).is_some_and(|tmpfs| is_layer_tmpfs(tmpfs) && !tmpfs.is_read_write())
            && mountinfo::mount_at(host, &bind_point).is_some()
            && system.exists(&layout::target_opaque_dirs(target));
        complete
            && match (system.identity_of(&bind_point), system.identity_of(&upper.path())) {
                (Ok(bound), Ok(source)) => bound == source,
                _ => false,
            }
    }

    /// The first step of a layer publish, under the mount lock: finds the upper (mounting a
    /// stopped SC's own filesystem), clears what a failed publish left at the target, and mounts
    /// the tmpfs and the read-only bind of the upper. A target that holds the complete volume
    /// already is [`LayerStep::Published`].
    pub fn bind_layer(&self, request: &LayerRequest, sc: &ScKey, claim: Option<&ClaimLayer>) -> Result<LayerStep, PublishError> {
        let target = &request.target_path;
        let upper = match self.layer_upper(sc, claim) {
            Ok(upper) => upper,
            Err(error) => {
                self.release_after_failed_layer(sc, claim);
                return Err(error);
            }
        };
        if self.system.exists(target) {
            let host = self.host_mounts()?;
            match mountinfo::mount_at(&host, target) {
                Some(_) if self.holds_layer_of(&host, target, &upper) => return Ok(LayerStep::Published),
                // Half done (a publish killed midway, or one that failed and could not clean up).
                Some(existing) if is_layer_tmpfs(existing) => {
                    self.unwind_layer(target).map_err(|error| PublishError::clearing(target, error))?;
                }
                Some(existing) => {
                    return Err(PublishError::ForeignMount {
                        target: target.display().to_string(),
                        fs_type: existing.fs_type.clone(),
                        device: existing.source.clone(),
                    });
                }
                None => {}
            }
        }
        if let Err(error) = self.mount_layer(target, sc, &upper, claim) {
            self.abandon_layer(target, sc, claim);
            return Err(error);
        }
        Ok(LayerStep::Bound)
    }

    fn mount_layer(&self, target: &Path, sc: &ScKey, upper: &LayerUpper, claim: Option<&ClaimLayer>) -> Result<(), PublishError> {
        let system = &*self.system;
        // Kubelet creates only the target's parent.
        match system.create_dir(target) {
            Err(error) if error.kind() != io::ErrorKind::AlreadyExists => {
                return Err(IoError { action: "creating", path: target.display().to_string(), source: error }.into());
            }
            _ => {}
        }
        system.mount_layer_tmpfs(target, LAYER_TMPFS_BYTES).context("mounting the layer volume's tmpfs at", target)?;
        let bind_point = layout::target_layer_upper(target);
        system.create_dir(&bind_point).context("creating", &bind_point)?;
        system.bind_layer_read_only(upper, &bind_point).map_err(|error| match error.kind() {
            io::ErrorKind::NotFound => PublishError::NoLayer { sc: sc.clone(), looked: upper.path().display().to_string() },
            io::ErrorKind::NotADirectory if claim.is_some() => PublishError::ClaimDataDir {
                claim: claim_of_sc(sc, &claim.map(|layer| layer.claim.claim_name.clone()).unwrap_or_default()),
                path: upper.path().display().to_string(),
                problem: error.to_string(),
            },
            _ => IoError { action: "bind-mounting the upper read-only at", path: bind_point.display().to_string(), source: error }.into(),
        })?;
        Ok(())
    }

    /// The opaque directories of the upper bound at `target` (the second step, without the lock).
    pub fn list_opaque_directories(&self, target: &Path) -> Result<Vec<PathBuf>, PublishError> {
        let bind_point = layout::target_layer_upper(target);
        Ok(self.system.opaque_directories(&bind_point).context("listing the opaque directories of the upper at", &bind_point)?)
    }

    /// The last step, under the mount lock: writes the list and makes the tmpfs read-only. The
    /// volume must still be there (an unpublish may have come while the upper was walked).
    pub fn finish_layer(&self, request: &LayerRequest, sc: &ScKey, opaque: &[PathBuf]) -> Result<(), PublishError> {
        let target = &request.target_path;
        let host = self.host_mounts()?;
        let mounted = mountinfo::mount_at(&host, target).is_some_and(is_layer_tmpfs)
            && mountinfo::mount_at(&host, &layout::target_layer_upper(target)).is_some();
        if !mounted {
            return Err(PublishError::LayerGone { target: target.display().to_string() });
        }
        let list = layout::target_opaque_dirs(target);
        let written = opaque_list(sc, opaque).and_then(|bytes| {
            let temporary = target.join(".opaque-dirs.tmp");
            self.system.write_file_durably(&list, &temporary, &bytes, OPAQUE_LIST_MODE).context("writing", &list)?;
            self.system.remount_read_only(target).context("remounting read-only", target)?;
            Ok(())
        });
        if let Err(error) = written {
            self.abandon_layer(target, sc, None);
            return Err(error);
        }
        Ok(())
    }

    /// Undoes a layer publish that failed after its first step (nothing may stay mounted).
    pub fn abandon_layer(&self, target: &Path, sc: &ScKey, claim: Option<&ClaimLayer>) {
        if let Err(cleanup) = self.unwind_layer(target) {
            warn!(target = %target.display(), %cleanup, "cleanup after a failed layer publish failed; kubelet's retry or unpublish unwinds it");
        }
        self.release_after_failed_layer(sc, claim);
    }

    /// A stopped SC's own filesystem that a failed layer publish mounted is unmounted again,
    /// unless something else uses it.
    fn release_after_failed_layer(&self, sc: &ScKey, claim: Option<&ClaimLayer>) {
        if claim.is_none() {
            self.release_idle_filesystem(sc);
        }
    }

    /// The SC's own filesystem whose directory is bound at `bind_point`, by the bind's device.
    fn filesystem_behind(&self, host: &[MountEntry], bind_point: &Path) -> Option<RootfsFs> {
        let bind = mountinfo::mount_at(host, bind_point)?;
        quota::mounted_rootfs_filesystems(host, self.data.path())
            .into_iter()
            .find(|fs| mountinfo::mount_at(host, &fs.fs_dir()).is_some_and(|mount| (mount.major, mount.minor) == (bind.major, bind.minor)))
    }

    /// Unmounts a layer volume at `target` (the bind, then the tmpfs; either may be missing) and
    /// removes the target, then unmounts the SC's own filesystem that the bind read, unless an
    /// overlay or another layer volume still uses it.
    pub(super) fn unwind_layer(&self, target: &Path) -> Result<(), UnpublishError> {
        let host = self.host_mounts()?;
        let bind_point = layout::target_layer_upper(target);
        let behind = self.filesystem_behind(&host, &bind_point);
        for mount_point in [bind_point.as_path(), target] {
            match self.system.unmount(mount_point) {
                Ok(()) => {}
                Err(error) if matches!(error.raw_os_error(), Some(nix::libc::EINVAL | nix::libc::ENOENT)) => {}
                Err(source) if source.raw_os_error() == Some(nix::libc::EBUSY) => {
                    return Err(UnpublishError::Busy { target: mount_point.display().to_string(), source });
                }
                Err(source) => return Err(IoError { action: "unmounting", path: mount_point.display().to_string(), source }.into()),
            }
        }
        match self.system.remove_dir(target) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(IoError { action: "removing", path: target.display().to_string(), source }.into()),
        }
        if let Some(fs) = behind {
            match quota::unmount(&*self.loops, &fs) {
                Ok(()) => debug!(dir = %fs.container_dir().display(), "the rootfs's own filesystem is unmounted after its last reader"),
                Err(quota::QuotaError::InUse { overlay, .. }) => {
                    debug!(dir = %fs.container_dir().display(), %overlay, "the rootfs's own filesystem is still in use")
                }
                Err(quota::QuotaError::BoundElsewhere { bind, .. }) => {
                    debug!(dir = %fs.container_dir().display(), %bind, "the rootfs's own filesystem is still read by another layer volume")
                }
                Err(error) => {
                    warn!(dir = %fs.container_dir().display(), %error, "could not unmount the rootfs's own filesystem; it stays mounted until the next try")
                }
            }
        }
        Ok(())
    }

    /// Whether the host's mount table shows a layer volume at `target`.
    pub(super) fn is_layer_at(&self, host: &[MountEntry], target: &Path) -> bool {
        mountinfo::mount_at(host, target).is_some_and(is_layer_tmpfs)
    }

    /// Unpublishes the layer volume at `target`. Call only when [`Self::is_layer_at`] says it is
    /// there.
    pub(super) fn unpublish_layer(&self, volume_id: &str, target: &Path) -> Result<(), UnpublishError> {
        self.unwind_layer(target)?;
        info!(volume_id, target = %target.display(), "unpublished the layer volume");
        Ok(())
    }

    /// The usage of the filesystem of the upper a layer volume reads (for the volume stats); with
    /// the bind missing, the tmpfs's, marked abnormal.
    pub(super) fn layer_stats(&self, host: &[MountEntry], target: &Path) -> Result<VolumeStats, IoError> {
        let bind_point = layout::target_layer_upper(target);
        if mountinfo::mount_at(host, &bind_point).is_none() {
            let stat = self.system.statvfs(target).context("statvfs of", target)?;
            let abnormal = Some(format!("the layer volume's upper is not mounted at {}", bind_point.display()));
            return Ok(VolumeStats { abnormal, ..volume_stats(&stat) });
        }
        let stat = self.system.statvfs(&bind_point).context("statvfs of", &bind_point)?;
        Ok(volume_stats(&stat))
    }

    /// Whether a layer volume reads the node-local upper of `sc` (by the identity of what is
    /// bound, so also for an upper on the data root's own filesystem, whose bind names no SC).
    pub(super) fn is_layer_read(&self, host: &[MountEntry], sc: &ScKey) -> bool {
        let Ok(upper) = self.system.identity_of(&self.upper_dir(sc)) else { return false };
        let pods = self.kubelet_dir.join("pods");
        host.iter()
            .filter(|entry| is_layer_tmpfs(entry) && entry.mount_point.starts_with(&pods))
            .any(|entry| self.system.identity_of(&layout::target_layer_upper(&entry.mount_point)).is_ok_and(|bound| bound == upper))
    }
}

impl<C: ClusterView, S: System> NodeCore<C, S> {
    /// Publishes a layer volume: authorises the pod (the SC of its namespace, where its data is),
    /// waits for kubelet's mount of the claim with `spec.storage`, binds the upper under the mount
    /// lock, lists its opaque directories without it, and writes the list under it again.
    pub async fn publish_layer(&self, request: &LayerRequest) -> Result<(), PublishError> {
        let started = Instant::now();
        let source = self.cluster.authorize_layer_reader(&request.pod, &request.sc_name).await?;
        let sc = source.sc.clone();
        let claim = match &source.data {
            LayerData::Node => None,
            LayerData::Claim(claim) => {
                let who = format!("pod {}/{}", request.pod.namespace, request.pod.name);
                Some(self.wait_for_claim(&request.pod, &who, &sc, claim).await?)
            }
        };
        let step = {
            let _guard = self.mount_lock().lock().await;
            let (mounter, task_request, task_sc, task_claim) = (Arc::clone(&self.mounter), request.clone(), sc.clone(), claim.clone());
            tokio::task::spawn_blocking(move || mounter.bind_layer(&task_request, &task_sc, task_claim.as_ref()))
                .await
                .map_err(|join| IoError::joining("joining the layer mount task for", "publish", join))??
        };
        if step == LayerStep::Published {
            return Ok(());
        }
        let (mounter, target) = (Arc::clone(&self.mounter), request.target_path.clone());
        let walked = tokio::task::spawn_blocking(move || mounter.list_opaque_directories(&target))
            .await
            .map_err(|join| IoError::joining("joining the opaque-directory walk for", "publish", join));
        let opaque_count = walked.as_ref().ok().and_then(|walked| walked.as_ref().ok()).map(Vec::len);
        {
            let _guard = self.mount_lock().lock().await;
            let (mounter, task_request, task_sc) = (Arc::clone(&self.mounter), request.clone(), sc.clone());
            tokio::task::spawn_blocking(move || match walked {
                Ok(Ok(opaque)) => mounter.finish_layer(&task_request, &task_sc, &opaque),
                Ok(Err(error)) => {
                    mounter.abandon_layer(&task_request.target_path, &task_sc, claim.as_ref());
                    Err(error)
                }
                Err(join) => {
                    mounter.abandon_layer(&task_request.target_path, &task_sc, claim.as_ref());
                    Err(join.into())
                }
            })
            .await
            .map_err(|join| IoError::joining("joining the layer list task for", "publish", join))??;
        }
        info!(
            volume_id = %request.volume_id,
            sc = %sc,
            pod = %format!("{}/{}", request.pod.namespace, request.pod.name),
            target = %request.target_path.display(),
            opaque_directories = opaque_count.unwrap_or_default(),
            elapsed_ms = millis(started.elapsed()),
            "published the layer volume"
        );
        Ok(())
    }
}
