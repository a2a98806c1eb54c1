//! The synchronous half of the node plugin: every mount, record and file of a publication, made
//! and undone through the [`System`] (so it is unit-tested against a fake node), held once behind
//! an `Arc` that the RPC side hands to its blocking tasks. Call every method that changes mounts
//! with the mount lock held (see [`super::NodeCore::mount_lock`]).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sc_api::image_config::PublishedImage;
use tracing::{debug, info, warn};

use super::claim::{ClaimLayer, find_claim_mount};
use super::error::{Context, IoError, PublishError, StatsError, UnpublishError};
use super::live::{LiveTarget, LiveUppers, UpperKey};
use super::provider::{ProviderCache, ProviderContainer, ProviderLower};
use super::shape::{check_published_shape, check_same_volume, host_mounts, is_our_tmpfs, published_mounts, sc_of_upper};
use super::{NodeSettings, RootfsSettings, VolumeStats};
use crate::authorize::BoundClaim;
use crate::control;
use crate::dirs;
use crate::layout::{self, DataLayout, DataRoot, ScKey};
use crate::mountinfo::{self, MountEntry};
use crate::published_image;
use crate::quota::{self, LoopSystem, RootfsFs, RootfsSize};
use crate::records::{Record, Records};
use crate::sys::{FsStats, OverlayDirs, System};
use crate::validate::{PublishRequest, UnpublishRequest};

/// What a publish finds at its target before it waits for the provider.
#[derive(Debug, PartialEq, Eq)]
pub enum Found {
    /// The volume is published as asked (a repeated publish), over this lower directory.
    Published { lower: PathBuf },
    /// Nothing of this plugin's is there (a half-done publication was undone): mount it.
    Clear,
}

/// Where a publication's persistent layer (the overlay's upper and work directories) is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PersistentLayer {
    /// On this node, in the StoppableContainer's own filesystem of this size (or its directory
    /// of an earlier release).
    Node { size: RootfsSize },
    /// On the claim's filesystem, where kubelet mounted it for the consumer pod.
    Claim(ClaimLayer),
}

/// See the module comment.
pub struct Mounter<S> {
    pub(super) system: Arc<S>,
    pub(super) data: DataRoot,
    /// Kubelet's root directory: volume targets are below its `pods/`.
    pub(super) kubelet_dir: PathBuf,
    pub(super) records: Records,
    providers: ProviderCache,
    pub(super) live: LiveUppers,
    /// The loop devices and ext4 mounts of the size-limited filesystems.
    pub(super) loops: Box<dyn LoopSystem>,
    pub(super) rootfs: RootfsSettings,
}

impl<S: System> Mounter<S> {
    pub fn new(system: S, settings: &NodeSettings, loops: Box<dyn LoopSystem>) -> Self {
        let system = Arc::new(system);
        let records = Records::new(settings.data_root.clone(), Arc::clone(&system) as Arc<dyn System>);
        Self {
            system,
            data: settings.data_root.clone(),
            kubelet_dir: settings.kubelet_dir.clone(),
            records,
            providers: ProviderCache::new(settings.kubelet_cgroups.clone()),
            live: LiveUppers::default(),
            loops,
            rootfs: settings.rootfs.clone(),
        }
    }

    pub fn system(&self) -> &S {
        &self.system
    }

    /// How the SC's data is kept, asked of the system (one `stat`).
    pub(super) fn layout(&self, sc: &ScKey) -> DataLayout {
        DataLayout::of(self.system.is_directory(&self.data.legacy_upper_dir(sc)))
    }

    pub(super) fn upper_dir(&self, sc: &ScKey) -> PathBuf {
        self.data.upper_dir_in(sc, self.layout(sc))
    }

    pub(super) fn host_mounts(&self) -> Result<Vec<MountEntry>, IoError> {
        host_mounts(&*self.system)
    }

    /// What the one-live-overlay rule keys `sc`'s upper on: its claim's volume, or its directory.
    pub(super) fn upper_key(&self, sc: &ScKey, claim: Option<&BoundClaim>) -> UpperKey {
        match claim {
            Some(claim) => UpperKey::Claim(claim.volume_name.clone()),
            None => UpperKey::Dir(self.upper_dir(sc)),
        }
    }

    /// The key of the upper a record's publication uses.
    pub(super) fn record_key(&self, record: &Record) -> UpperKey {
        match &record.claim {
            Some(layer) => UpperKey::of_claim(layer),
            None => UpperKey::Dir(self.upper_dir(&record.sc)),
        }
    }

    /// Looks, once, at what the request's target holds: published as asked (by its record, or,
    /// with no readable record, by the mount table, and then recorded again), or clear. A
    /// recorded publication whose mounts are broken, and a half-done one of this plugin's with
    /// no record, are undone here; anything that is not this plugin's is refused. `claim` is the
    /// consumer's claim with `spec.storage`.
    pub fn inspect(&self, request: &PublishRequest, sc: &ScKey, claim: Option<&BoundClaim>) -> Result<Found, PublishError> {
        let target = &request.target_path;
        let upper = self.upper_key(sc, claim);
        let record = self.records.load(&request.volume_id).context("reading the record of", Path::new(&request.volume_id))?;
        if let Some(record) = record {
            check_same_volume(&record, request, sc)?;
            if check_published_shape(&self.host_mounts()?, target, &upper).is_ok() {
                return Ok(Found::Published { lower: record.lower_dir });
            }
            // A recorded publication whose mounts are broken: start again from nothing.
            self.unwind_before_publish(target)?;
            self.records.remove(&request.volume_id).context("removing the record of", Path::new(&request.volume_id))?;
            self.live.remove(&upper);
        }
        // Kubelet creates only the target's parent, so normally nothing can be mounted on the
        // target and the (large, slow to read) mount table is not needed: a fresh publish costs
        // one stat here. An existing target is checked.
        if !self.system.exists(target) {
            return Ok(Found::Clear);
        }
        let host = self.host_mounts()?;
        match mountinfo::mount_at(&host, target) {
            // Ours, unrecorded (a publish of this volume killed before it recorded itself, or its
            // record quarantined): complete, it is the live publication; half done, undone.
            Some(existing) if is_our_tmpfs(existing) => {
                if let Some(lower) = self.adopt_unrecorded(&host, request, sc, claim)? {
                    return Ok(Found::Published { lower });
                }
                self.unwind_before_publish(target)?;
                Ok(Found::Clear)
            }
            Some(existing) => Err(PublishError::ForeignMount {
                target: target.display().to_string(),
                fs_type: existing.fs_type.clone(),
                device: existing.source.clone(),
            }),
            None => Ok(Found::Clear),
        }
    }

    /// Mounts a publication that [`Self::inspect`] found clear; returns the lower directory it
    /// uses. What changed since is known from the live table, kept under the same lock: a
    /// concurrent publish of this very volume that finished meanwhile is the publication, and
    /// the upper live at another target is refused (one live overlay per upper).
    pub fn mount(
        &self,
        request: &PublishRequest,
        sc: &ScKey,
        provider: &ProviderContainer,
        layer: &PersistentLayer,
    ) -> Result<PathBuf, PublishError> {
        let target = &request.target_path;
        let (upper, on_claim) = match layer {
            PersistentLayer::Node { .. } => (UpperKey::Dir(self.upper_dir(sc)), None),
            PersistentLayer::Claim(claim) => (UpperKey::of_claim(claim), Some((sc.clone(), claim.clone()))),
        };
        if let Some(live) = self.live.get(&upper) {
            if &live.target == target {
                return Ok(live.lower);
            }
            return Err(PublishError::UpperInUse { sc: sc.clone(), mounted_at: layout::target_rootfs(&live.target).display().to_string() });
        }
        // Only a target that exists can hold a mount made while the publish waited.
        if self.system.exists(target) {
            match mountinfo::mount_at(&self.host_mounts()?, target) {
                Some(existing) if !is_our_tmpfs(existing) => {
                    return Err(PublishError::ForeignMount {
                        target: target.display().to_string(),
                        fs_type: existing.fs_type.clone(),
                        device: existing.source.clone(),
                    });
                }
                // Left by a concurrent publish of this volume that failed and could not clean up.
                Some(_) => self.unwind_before_publish(target)?,
                None => {}
            }
        }
        let provider_lower = self.providers.lower_dir(&*self.system, sc, provider)?;
        let lower = provider_lower.path.clone();
        let record = Record {
            volume_id: request.volume_id.clone(),
            target_path: target.clone(),
            pod: request.pod.clone(),
            sc: sc.clone(),
            lower_dir: lower.clone(),
            claim: on_claim.as_ref().map(|(_, claim)| claim.clone()),
        };
        // The container may exit between the lookup and the mount: the overlay would then have
        // an empty directory as its lower (a rootfs with no image in it), or fail for want of one.
        // Either way the exit is the reason to report, and kubelet's retry finds the next container.
        let mounted =
            match (self.mount_layers(request, sc, layer, &lower), self.require_lower_still_mounted(sc, provider, &provider_lower)) {
                (_, Err(replaced)) => Err(replaced),
                (mounted, Ok(())) => mounted,
            }
            .and_then(|()| {
                self.records.save(&record).context("saving the record of", Path::new(&request.volume_id)).map_err(PublishError::from)
            });
        if let Err(error) = mounted {
            // Nothing may stay mounted after a failed publish.
            if let Err(cleanup) = self.unwind_target(target) {
                warn!(target = %target.display(), %cleanup, "cleanup after a failed publish failed; start-up recovery or kubelet's retry unwinds it");
                return Err(error);
            }
            if let Err(cleanup) = self.records.remove(&request.volume_id) {
                warn!(volume_id = %request.volume_id, %cleanup, "could not remove the record after a failed publish");
            }
            return Err(error);
        }
        self.live.insert_key(upper, LiveTarget { target: target.clone(), lower: lower.clone(), on_claim });
        Ok(lower)
    }

    fn require_lower_still_mounted(&self, sc: &ScKey, provider: &ProviderContainer, lower: &ProviderLower) -> Result<(), PublishError> {
        if lower.is_still_mounted(&*self.system) {
            return Ok(());
        }
        warn!(sc = %sc, container_id = %provider.container_id, lower = %lower.path.display(), "the provider container's root filesystem went away during the publish");
        Err(PublishError::ProviderReplaced { sc: sc.clone(), container_id: provider.container_id.clone() })
    }

    fn mount_layers(&self, request: &PublishRequest, sc: &ScKey, layer: &PersistentLayer, lower: &Path) -> Result<(), PublishError> {
        let size = match layer {
            PersistentLayer::Node { size } => *size,
            PersistentLayer::Claim(claim) => return self.mount_claim_layers(request, sc, claim, lower),
        };
        let (system, data) = (&*self.system, &self.data);
        let (upper, work) = match self.layout(sc) {
            DataLayout::Unlimited => {
                warn!(sc = %sc, "this rootfs was created before size limits and has none; its data is kept as it is");
                let children = [("upper", dirs::ROOTFS_ROOT_MODE), ("work", dirs::PRIVATE_DIR_MODE)];
                self.create_private_dirs(&data.container_dir(sc), &children)?;
                (data.upper_dir_in(sc, DataLayout::Unlimited), data.work_dir_in(sc, DataLayout::Unlimited))
            }
            DataLayout::OwnFilesystem => {
                self.create_private_dirs(&data.container_dir(sc), &[])?;
                let tools = self.rootfs.tools.as_ref().map_err(|problem| PublishError::RootfsSize {
                    sc: sc.clone(),
                    problem: format!("this node cannot make size-limited filesystems: {problem}"),
                })?;
                let mounted = quota::ensure_mounted(&*self.loops, &RootfsFs::new(data.container_dir(sc)), size, tools)?;
                if mounted.created {
                    info!(sc = %sc, size = %size, "made the rootfs's own filesystem");
                }
                (mounted.upper, mounted.work)
            }
        };
        let rootfs = self.mount_target(request)?;
        system.mount_overlay(&OverlayDirs { lower, upper: &upper, work: &work }, &rootfs).context("mounting the overlay at", &rootfs)?;
        self.mount_control(request, &rootfs)
    }

    /// Makes the target and the control directory, mounts the target's tmpfs and makes its
    /// `rootfs/` and `control/` in it; returns `rootfs/`, where the overlay goes.
    pub(super) fn mount_target(&self, request: &PublishRequest) -> Result<PathBuf, PublishError> {
        let system = &*self.system;
        let target = &request.target_path;
        self.create_private_dirs(&self.data.control_dir(&request.volume_id), &[])?;
        match system.create_dir(target) {
            Err(error) if error.kind() != io::ErrorKind::AlreadyExists => {
                return Err(IoError { action: "creating", path: target.display().to_string(), source: error }.into());
            }
            _ => {}
        }
        system.mount_target_tmpfs(target).context("mounting the volume tmpfs at", target)?;
        let (rootfs, control_target) = (layout::target_rootfs(target), layout::target_control(target));
        for dir in [&rootfs, &control_target] {
            system.create_dir(dir).context("creating", dir)?;
        }
        Ok(rootfs)
    }

    /// With the overlay at `rootfs`: binds the control directory and checks the overlay is writable.
    pub(super) fn mount_control(&self, request: &PublishRequest, rootfs: &Path) -> Result<(), PublishError> {
        let system = &*self.system;
        let control = self.data.control_dir(&request.volume_id);
        let control_target = layout::target_control(&request.target_path);
        // Read-only: the pod only connects to the socket in it, and must not plant anything there.
        system
            .bind_mount_read_only(&control, &control_target)
            .context("bind-mounting the control directory read-only at", &control_target)?;
        // statvfs answers "is it writable" for the new mount without reading the mount table.
        if system.statvfs(rootfs).context("statvfs of the new overlay at", rootfs)?.read_only {
            return Err(PublishError::ReadOnly(rootfs.display().to_string()));
        }
        Ok(())
    }

    /// Creates `dir` below the data root and its parents, root-only (0700) where this call
    /// creates them, then each of `children` in it with its mode (the upper's is the rootfs's
    /// `/`, so 0755) if missing. No symlink below the data root is followed.
    fn create_private_dirs(&self, dir: &Path, children: &[(&str, u32)]) -> Result<(), IoError> {
        self.system.create_private_dirs(self.data.path(), dir, children).context("creating", dir)
    }

    /// Takes a complete publication of exactly this request, found at its target with no
    /// readable record (quarantined, or a publish killed between its last mount and its record),
    /// as published: records it again and returns its lower directory. `None` when the target
    /// does not hold a complete publication; a complete one of another volume or
    /// StoppableContainer is a conflict, never unwound.
    fn adopt_unrecorded(
        &self,
        host: &[MountEntry],
        request: &PublishRequest,
        sc: &ScKey,
        claim: Option<&BoundClaim>,
    ) -> Result<Option<PathBuf>, PublishError> {
        let target = &request.target_path;
        let Ok(mounts) = published_mounts(host, target) else { return Ok(None) };
        let upper = self.upper_key(sc, claim);
        let volume = mounts.control.root.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
        if mounts.key != upper || volume != request.volume_id {
            return Err(PublishError::VolumeConflict {
                volume_id: volume,
                existing: target.display().to_string(),
                existing_sc: Box::new(sc_of_upper(&self.data, mounts.upper).unwrap_or_else(|| sc.clone())),
                requested: format!("{} for volume {}", target.display(), request.volume_id),
            });
        }
        if let Some(mounted_at) = self.live.target_of(&upper).filter(|mounted_at| mounted_at != target) {
            return Err(PublishError::UpperInUse { sc: sc.clone(), mounted_at: layout::target_rootfs(&mounted_at).display().to_string() });
        }
        let lower_dir = mounts.overlay.super_option("lowerdir").map(PathBuf::from).unwrap_or_default();
        // A claim's mount is kubelet's, at a path of the pod: where it is now is where it was.
        let claim = match claim {
            Some(claim) => match find_claim_mount(host, &self.kubelet_dir, &request.pod.uid, claim) {
                Some(mount) => Some(ClaimLayer { claim: claim.clone(), mount_path: mount.mount_point.clone() }),
                None => return Ok(None),
            },
            None => None,
        };
        let record = Record {
            volume_id: request.volume_id.clone(),
            target_path: target.clone(),
            pod: request.pod.clone(),
            sc: sc.clone(),
            lower_dir: lower_dir.clone(),
            claim: claim.clone(),
        };
        self.records.save(&record).context("saving the record of", Path::new(&request.volume_id))?;
        let on_claim = claim.map(|claim| (sc.clone(), claim));
        self.live.insert_key(upper, LiveTarget { target: target.clone(), lower: lower_dir.clone(), on_claim });
        info!(volume_id = %request.volume_id, target = %target.display(), "found the volume published with no readable record; recorded it again");
        Ok(Some(lower_dir))
    }

    /// Clears a target this plugin left half-published, so a publish can start from nothing.
    fn unwind_before_publish(&self, target: &Path) -> Result<(), PublishError> {
        self.unwind_target(target).map_err(|error| PublishError::clearing(target, error))
    }

    /// Unmounts a published volume and removes its control directory; never touches the
    /// persistent upper directory. A stopped StoppableContainer then holds no loop device, and
    /// its filesystem can grow at the next start.
    pub fn unpublish(&self, request: &UnpublishRequest) -> Result<(), UnpublishError> {
        let record = self.records.load(&request.volume_id).context("reading the record of", Path::new(&request.volume_id))?;
        let ours = record.filter(|record| record.target_path == request.target_path);
        match ours {
            // The record says exactly what this plugin mounted there: unmount that, without
            // reading the node's whole mount table. The record goes last, so an interrupted
            // unpublish is finished by kubelet's retry.
            Some(_) => self.unmount_published(&request.target_path)?,
            // The provider's exec-wrapper bind, which has no record (see `exec_wrapper.rs`).
            None if self.holds_exec_wrapper(&request.target_path) => {
                return self.unpublish_exec_wrapper(&request.volume_id, &request.target_path);
            }
            // A layer volume, which has no record either (see `layer.rs`).
            None if self.system.exists(&request.target_path) && self.is_layer_at(&self.host_mounts()?, &request.target_path) => {
                return self.unpublish_layer(&request.volume_id, &request.target_path);
            }
            None => self.unwind_target(&request.target_path)?,
        }
        if let Some(record) = ours {
            self.records.remove(&request.volume_id).context("removing the record of", Path::new(&request.volume_id))?;
            info!(volume_id = %request.volume_id, target = %request.target_path.display(), "unpublished");
            // Never fails the unpublish: the pod's mounts are gone either way. A claim's mount is
            // kubelet's to unmount.
            if record.claim.is_none() {
                self.release_idle_filesystem(&record.sc);
            }
        }
        self.remove_control_dir(&request.volume_id);
        self.live.remove_target(&request.target_path);
        Ok(())
    }

    /// Unmounts the three mounts a completed publish made at `target`, innermost first, and
    /// removes the target directory. One that is already gone (`EINVAL`: not a mount point) is
    /// skipped, so a repeated or interrupted unpublish converges.
    fn unmount_published(&self, target: &Path) -> Result<(), UnpublishError> {
        for mount_point in [layout::target_control(target), layout::target_rootfs(target), target.to_path_buf()] {
            match self.system.unmount(&mount_point) {
                Ok(()) => {}
                Err(error) if matches!(error.raw_os_error(), Some(nix::libc::EINVAL | nix::libc::ENOENT)) => {}
                Err(source) => return Err(unmount_error(&mount_point, source)),
            }
        }
        self.remove_target_dir(target)
    }

    /// Unmounts everything this plugin mounted at and under `target` (deepest first) and
    /// removes the target directory. A target with no mount is fine; a foreign mount there is
    /// left alone.
    pub(super) fn unwind_target(&self, target: &Path) -> Result<(), UnpublishError> {
        let host = self.host_mounts()?;
        if let Some(top) = mountinfo::mount_at(&host, target) {
            if !is_our_tmpfs(top) {
                return Err(UnpublishError::ForeignMount {
                    target: target.display().to_string(),
                    fs_type: top.fs_type.clone(),
                    device: top.source.clone(),
                });
            }
            for entry in mountinfo::mounts_under(&host, target) {
                self.system.unmount(&entry.mount_point).map_err(|source| unmount_error(&entry.mount_point, source))?;
            }
        }
        self.remove_target_dir(target)
    }

    fn remove_target_dir(&self, target: &Path) -> Result<(), UnpublishError> {
        match self.system.remove_dir(target) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(error) if error.kind() == io::ErrorKind::DirectoryNotEmpty => {
                // Not a directory this plugin made (it creates it empty): nothing of ours is there.
                warn!(target = %target.display(), "target directory is not empty; leaving it");
                Ok(())
            }
            Err(error) => Err(IoError { action: "removing", path: target.display().to_string(), source: error }.into()),
        }
    }

    /// Removes a publication's control directory (see [`control::remove_control_dir`]).
    pub(super) fn remove_control_dir(&self, volume_id: &str) {
        control::remove_control_dir(&*self.system, &self.data, volume_id);
    }

    /// Unmounts `sc`'s own filesystem unless an overlay still uses it (then it stays:
    /// unmounting under an overlay would only hide it). Logs, never fails: what it leaves
    /// mounted is reused by the next publish and unmounted before the data is deleted.
    pub fn release_idle_filesystem(&self, sc: &ScKey) {
        if self.layout(sc) != DataLayout::OwnFilesystem {
            return;
        }
        match quota::unmount(&*self.loops, &RootfsFs::new(self.data.container_dir(sc))) {
            Ok(()) => debug!(sc = %sc, "the rootfs's own filesystem is unmounted"),
            Err(quota::QuotaError::InUse { overlay, .. }) => debug!(sc = %sc, %overlay, "the rootfs's own filesystem is still in use"),
            Err(quota::QuotaError::BoundElsewhere { bind, .. }) => {
                debug!(sc = %sc, %bind, "the rootfs's own filesystem is still read by a layer volume")
            }
            Err(error) => warn!(sc = %sc, %error, "could not unmount the rootfs's own filesystem; it stays mounted until the next try"),
        }
    }

    /// Writes a publication's image config file into its control directory.
    pub fn write_image_config(&self, volume_id: &str, image: &PublishedImage) -> Result<(), IoError> {
        let control = self.data.control_dir(volume_id);
        published_image::write(&*self.system, &control, image).context("writing the image config file into", &control)
    }

    /// A publication's image config file, `None` when there is none.
    pub fn read_image_config(&self, volume_id: &str) -> io::Result<Option<PublishedImage>> {
        published_image::read(&*self.system, &self.data.control_dir(volume_id))
    }

    /// Usage of the filesystem holding a published volume's upper layer.
    pub fn stats(&self, volume_id: &str, volume_path: &Path) -> Result<VolumeStats, StatsError> {
        let not_found = || StatsError::NotFound { volume_id: volume_id.to_owned(), path: volume_path.display().to_string() };
        let Some(record) = self.records.load(volume_id).context("reading the record of", Path::new(volume_id))? else {
            if let Some(dir) = self.exec_wrapper_at(volume_path) {
                return self.exec_wrapper_stats(&dir);
            }
            let host = self.host_mounts()?;
            if self.is_layer_at(&host, volume_path) {
                return Ok(self.layer_stats(&host, volume_path)?);
            }
            return Err(not_found());
        };
        if record.target_path != volume_path {
            return Err(not_found());
        }
        // A claim's upper is measured through the overlay, whose statfs is its upper's
        // filesystem's: how much of the claim the rootfs uses, with no path on the claim a tenant
        // could swap, and right even once kubelet has unmounted the claim's own mount of the pod.
        let upper = match &record.claim {
            Some(_) => layout::target_rootfs(&record.target_path),
            None => self.upper_dir(&record.sc),
        };
        let abnormal = check_published_shape(&self.host_mounts()?, &record.target_path, &self.record_key(&record)).err();
        let stat = self.system.statvfs(&upper).context("statvfs of", &upper)?;
        Ok(VolumeStats { abnormal, ..volume_stats(&stat) })
    }

    /// Usage of the filesystem holding the exec-wrapper directory, the source of the bind.
    fn exec_wrapper_stats(&self, dir: &Path) -> Result<VolumeStats, StatsError> {
        let stat = self.system.statvfs(dir).context("statvfs of", dir)?;
        Ok(volume_stats(&stat))
    }

    /// Whether the StoppableContainer's persistent data is mounted anywhere on this node.
    pub fn is_data_in_use(&self, sc: &ScKey) -> Result<bool, IoError> {
        Ok(!mountinfo::overlays_with_upper(&self.host_mounts()?, &self.upper_dir(sc)).is_empty())
    }

    /// Whether anything mounts the StoppableContainer's data: an overlay over its upper, a mount
    /// on or below its data directory (its own filesystem, a bind), or a layer volume's bind of
    /// its upper. Data is deleted only when none is there.
    pub fn is_data_mounted(&self, sc: &ScKey) -> Result<bool, IoError> {
        let mounts = self.host_mounts()?;
        let dir = self.data.container_dir(sc);
        Ok(!mountinfo::overlays_with_upper(&mounts, &self.upper_dir(sc)).is_empty()
            || mounts.iter().any(|entry| entry.mount_point.starts_with(&dir))
            || self.is_layer_read(&mounts, sc))
    }

    /// The StoppableContainers with a live publication here, sorted, each once.
    pub fn published_scs(&self) -> Vec<ScKey> {
        let mut scs: Vec<ScKey> = self.live.uppers().iter().filter_map(|upper| sc_of_upper(&self.data, upper)).collect();
        scs.extend(self.live.claims().into_iter().map(|(sc, _)| sc));
        scs.sort_by(|a, b| (&a.namespace, &a.name, &a.uid).cmp(&(&b.namespace, &b.name, &b.uid)));
        scs.dedup();
        scs
    }

    /// What the StoppableContainer's own filesystem holds (`Ok(None)`: a rootfs made before
    /// size limits, which has none), or `None` when it is not published any more.
    pub fn usage(&self, sc: &ScKey) -> Option<Result<Option<quota::RootfsUsage>, quota::QuotaError>> {
        if let Some((_, target)) = self.live.claims().into_iter().find(|(published, _)| published == sc) {
            return Some(self.claim_usage(&target).map(Some));
        }
        let layout = self.layout(sc);
        self.live.target_of(&UpperKey::Dir(self.data.upper_dir_in(sc, layout)))?;
        Some(match layout {
            DataLayout::Unlimited => Ok(None),
            DataLayout::OwnFilesystem => quota::usage(&*self.loops, &RootfsFs::new(self.data.container_dir(sc))).map(Some),
        })
    }
}

/// A volume's usage from its filesystem's `statvfs`, as mounted as published.
pub(super) fn volume_stats(stat: &FsStats) -> VolumeStats {
    VolumeStats {
        bytes_total: stat.bytes_total,
        bytes_available: stat.bytes_available,
        bytes_used: stat.bytes_total - stat.bytes_free,
        inodes_total: stat.inodes_total,
        inodes_free: stat.inodes_free,
        inodes_used: stat.inodes_total - stat.inodes_free,
        abnormal: None,
    }
}

fn unmount_error(mount_point: &Path, source: io::Error) -> UnpublishError {
    if source.raw_os_error() == Some(nix::libc::EBUSY) {
        UnpublishError::Busy { target: mount_point.display().to_string(), source }
    } else {
        IoError { action: "unmounting", path: mount_point.display().to_string(), source }.into()
    }
}
