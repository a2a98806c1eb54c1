//! The node plugin's work, independent of gRPC: publish (authorise, find the provider's root
//! filesystem, mount the overlay), unpublish, volume stats and start-up recovery.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sc_api::image_config::{ImageSummary, PublishedImage};
use tokio::sync::Mutex;
use tracing::{debug, info, warn};

use crate::cgroup::{self, KubeletCgroups};
use crate::cluster::{ClusterError, ClusterView, Consumer, Provider};
use crate::control::{ControlSettings, ControlSockets};
use crate::cri::ImageConfigReader;
use crate::dirs;
use crate::layout::{self, DataLayout, DataRoot, ScKey, TARGET_TMPFS_SOURCE};
use crate::mountinfo::{self, MountEntry};
use crate::published_image;
use crate::quota::{self, RootfsFs, RootfsSize};
use crate::records::{Record, Records};
use crate::sys::{FileIdentity, OverlayDirs, System};
use crate::validate::{PodRef, PublishRequest, UnpublishRequest};

/// Why a publish failed. Each variant maps to one gRPC code in `server.rs`.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error("provider of StoppableContainer {sc} is not ready after waiting {waited:?}: {reason}; kubelet will retry")]
    ProviderNotReady { sc: ScKey, waited: Duration, reason: String },
    #[error("provider of StoppableContainer {sc} cannot run now: {reason}; kubelet will retry (see the provider pod's events)")]
    ProviderStuck { sc: ScKey, reason: String },
    #[error(
        "provider container {container_id} of StoppableContainer {sc} has no process on this node; is the provider pod really running here?"
    )]
    ProviderProcessNotFound { sc: ScKey, container_id: String },
    #[error(
        "the root directory of the provider's process for StoppableContainer {sc} is not a container root filesystem mounted in the node's mount namespace; refusing to use it as the lower layer (the provider pod must run the operator's pause in its own image; if it does, the plugin must run in the host mount namespace next to the container runtime: --host-mount-namespace)"
    )]
    LowerNotFound { sc: ScKey },
    #[error(
        "the provider's root filesystem for StoppableContainer {sc} is mounted at a path that contains ',' or ':', which cannot be an overlay lower directory"
    )]
    UnusableLower { sc: ScKey },
    #[error("volume {volume_id} is already published at {existing} (for {existing_sc}); refusing to publish it at {requested}")]
    // Boxed: the error is returned on every publish path, and this variant would make it large.
    VolumeConflict { volume_id: String, existing: String, existing_sc: Box<ScKey>, requested: String },
    #[error("target {target} already has a mount this plugin did not make ({fs_type} from {device}); refusing to mount over it")]
    ForeignMount { target: String, fs_type: String, device: String },
    #[error(
        "the rootfs of StoppableContainer {sc} is already mounted at {mounted_at}: only one consumer may use it at a time; stop the other consumer pod first"
    )]
    UpperInUse { sc: ScKey, mounted_at: String },
    #[error("the overlay at {0} came up read-only; check the data root's filesystem (overlayfs needs a writable upper on ext4/xfs/btrfs)")]
    ReadOnly(String),
    #[error("the rootfs size of StoppableContainer {sc} cannot be used: {problem}")]
    RootfsSize { sc: ScKey, problem: String },
    #[error("the size-limited filesystem of the rootfs: {0}")]
    Rootfs(#[from] quota::QuotaError),
    #[error(transparent)]
    Io(#[from] IoError),
}

/// Why an unpublish failed.
#[derive(Debug, thiserror::Error)]
pub enum UnpublishError {
    #[error("target {target} is still in use ({source}); stop the processes using it (kubelet retries)")]
    Busy { target: String, source: io::Error },
    #[error("target {target} holds a mount this plugin did not make ({fs_type} from {device}); not touching it")]
    ForeignMount { target: String, fs_type: String, device: String },
    #[error(transparent)]
    Io(#[from] IoError),
}

/// Why a stats request failed.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    #[error("volume {volume_id} is not published at {path} on this node")]
    NotFound { volume_id: String, path: String },
    #[error(transparent)]
    Io(#[from] IoError),
}

/// An I/O failure with what was being done and where.
#[derive(Debug, thiserror::Error)]
#[error("{action} {path}: {source}")]
pub struct IoError {
    pub action: &'static str,
    pub path: String,
    #[source]
    pub source: io::Error,
}

trait Context<T> {
    fn context(self, action: &'static str, path: &Path) -> Result<T, IoError>;
}

impl<T> Context<T> for io::Result<T> {
    fn context(self, action: &'static str, path: &Path) -> Result<T, IoError> {
        self.map_err(|source| IoError { action, path: path.display().to_string(), source })
    }
}

impl From<mountinfo::ParseError> for IoError {
    fn from(error: mountinfo::ParseError) -> Self {
        IoError { action: "parsing", path: "mountinfo".into(), source: io::Error::new(io::ErrorKind::InvalidData, error) }
    }
}

/// Usage of a published volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeStats {
    pub bytes_total: u64,
    pub bytes_available: u64,
    pub bytes_used: u64,
    pub inodes_total: u64,
    pub inodes_free: u64,
    pub inodes_used: u64,
    /// Set when the volume is not mounted the way it was published.
    pub abnormal: Option<String>,
}

/// Settings of the node plugin's work.
#[derive(Clone, Debug)]
pub struct NodeSettings {
    pub data_root: DataRoot,
    /// Kubelet's root directory: volume targets, and so this plugin's mounts, are below `pods/`.
    pub kubelet_dir: PathBuf,
    /// How long a publish waits for a provider that is still starting.
    pub provider_wait: Duration,
    /// How often it looks again while waiting.
    pub provider_poll: Duration,
    /// Where kubelet puts pod cgroups: the provider's processes are looked up there first.
    pub kubelet_cgroups: KubeletCgroups,
    /// How each StoppableContainer's size-limited filesystem is made.
    pub rootfs: RootfsSettings,
    /// Where the provider image's config is read from (the container runtime).
    pub images: ImageConfigReader,
}

/// How node-local root filesystems are made and sized (see [`crate::quota`]).
#[derive(Clone, Debug)]
pub struct RootfsSettings {
    /// mkfs.ext4 (and e2fsck, resize2fs), or why they cannot be used: then only root filesystems
    /// made before size limits can be published, and a new one fails with this message.
    pub tools: Result<quota::E2fsprogs, String>,
    /// The size of a rootfs whose instance names none (one made by an earlier operator).
    pub default_size: RootfsSize,
    /// The largest rootfs this node makes, whatever an instance says: the operator enforces the
    /// cluster's maximum, and this is the node's own bound on its disk.
    pub max_size: RootfsSize,
}

/// The size of `consumer`'s rootfs: what the operator resolved, else the node's default, never
/// above the node's maximum.
fn rootfs_size(settings: &RootfsSettings, consumer: &Consumer) -> Result<RootfsSize, PublishError> {
    let problem = |problem: String| PublishError::RootfsSize { sc: consumer.sc.clone(), problem };
    let size = match consumer.rootfs_size_bytes {
        Some(bytes) => RootfsSize::from_bytes(bytes).map_err(|error| problem(error.to_string()))?,
        None => settings.default_size,
    };
    if size > settings.max_size {
        return Err(problem(format!(
            "{size} is more than this node's maximum of {} (the node plugin's --max-rootfs-size); ask for at most that",
            settings.max_size
        )));
    }
    Ok(size)
}

/// The node plugin's state: shared by every RPC.
pub struct NodeCore<C, S> {
    cluster: C,
    system: Arc<S>,
    settings: NodeSettings,
    records: Records,
    /// Serialises the check-then-mount phase of publishes and unpublishes: "at most one live
    /// overlay per upper" is read from the mount table and must not race another mount.
    mount_lock: Mutex<()>,
    /// The control socket of every live publication, through which its consumer asks to have
    /// its rootfs prepared.
    controls: ControlSockets,
    providers: Arc<ProviderCache>,
    live: Arc<LiveUppers>,
    /// The loop devices and ext4 mounts of the size-limited filesystems.
    loops: Arc<quota::RealLoopSystem>,
    /// Woken when a publish completes or an unpublish is done, so the usage reports follow at
    /// once (see [`crate::usage`]).
    publications_changed: tokio::sync::Notify,
    /// What each live publication's image config file says, for the usage reports.
    images: KnownImages,
}

impl<C: ClusterView, S: System> NodeCore<C, S> {
    pub fn new(cluster: C, system: S, settings: NodeSettings) -> Self {
        let records = Records::new(settings.data_root.clone());
        let controls = ControlSockets::new(settings.data_root.clone(), ControlSettings::default());
        let providers = Arc::new(ProviderCache::new(settings.kubelet_cgroups.clone()));
        Self {
            cluster,
            system: Arc::new(system),
            settings,
            records,
            mount_lock: Mutex::new(()),
            controls,
            providers,
            live: Arc::default(),
            loops: Arc::default(),
            publications_changed: tokio::sync::Notify::new(),
            images: KnownImages::default(),
        }
    }

    pub fn data_root(&self) -> &DataRoot {
        &self.settings.data_root
    }

    /// Publishes a consumer's rootfs at the request's target.
    pub async fn publish(&self, request: &PublishRequest) -> Result<(), PublishError> {
        let started = Instant::now();
        let consumer = self.cluster.authorize_consumer(&request.pod, &request.sc_name).await?;
        // Answer a repeated publish without waiting on the provider again.
        let repeated = {
            let _guard = self.mount_lock.lock().await;
            let repeated = self.already_published(request, &consumer.sc)?;
            if repeated {
                // After a plugin restart the socket is served again by recovery; this covers a
                // socket that failed to open the first time.
                self.open_control(&request.volume_id, &request.pod)?;
            }
            repeated
        };
        if repeated {
            return self.keep_image_config(request, &consumer).await;
        }
        let size = rootfs_size(&self.settings.rootfs, &consumer)?;
        let waiting = Instant::now();
        let provider = self.wait_for_provider(&consumer).await?;
        let provider_wait = waiting.elapsed();
        // The runtime is asked while the overlay is mounted, without the mount lock: a publish
        // takes the longer of the two, and a slow runtime never holds up other publishes.
        let reading = Instant::now();
        let image_ref = provider.image_ref.clone();
        let image = async {
            let image = self.settings.images.read(&image_ref).await;
            (image, reading.elapsed())
        };
        let (system, records, data) = (Arc::clone(&self.system), self.records.clone(), self.settings.data_root.clone());
        let (providers, live) = (Arc::clone(&self.providers), Arc::clone(&self.live));
        let (loops, rootfs) = (Arc::clone(&self.loops), self.settings.rootfs.clone());
        let task_request = request.clone();
        let (volume_id, pod, target) = (request.volume_id.clone(), request.pod.clone(), request.target_path.clone());
        let sc = consumer.sc.clone();
        let mount = async {
            let guard = self.mount_lock.lock().await;
            let mounted = tokio::task::spawn_blocking(move || {
                let context = MountContext {
                    system: &*system,
                    records: &records,
                    data: &data,
                    providers: &providers,
                    live: &live,
                    filesystem: RootfsFilesystem { loops: &*loops, settings: &rootfs, size },
                };
                mount_publication(&context, &task_request, &consumer.sc, &provider)
            })
            .await;
            (guard, mounted)
        };
        let ((image, image_read), (guard, mounted)) = tokio::join!(image, mount);
        let lower = mounted.map_err(|join| IoError {
            action: "joining the mount task for",
            path: "publish".into(),
            source: io::Error::other(join),
        })??;
        self.open_control(&volume_id, &pod)?;
        drop(guard);
        log_image(&volume_id, &sc, &image);
        self.publish_image_config(request, &sc, &image)?;
        // The durations let an operator (and the cluster benchmark) see where a start's time goes.
        info!(
            volume_id = %volume_id,
            sc = %sc,
            target = %target.display(),
            lower = %lower.display(),
            elapsed_ms = millis(started.elapsed()),
            provider_wait_ms = millis(provider_wait),
            image_read_ms = millis(image_read),
            "published"
        );
        self.publications_changed.notify_one();
        Ok(())
    }

    /// Writes the image config file of a publication whose mounts are in place, before the
    /// publish returns: kubelet starts the consumer only then, and its `sc-exec` reads the file.
    /// A file that cannot be written fails the publish (kubelet's retry writes it, see
    /// [`Self::keep_image_config`]).
    fn publish_image_config(&self, request: &PublishRequest, sc: &ScKey, image: &PublishedImage) -> Result<(), PublishError> {
        let control = self.settings.data_root.control_dir(&request.volume_id);
        published_image::write(&control, image).context("writing the image config file into", &control)?;
        self.images.remember(&request.target_path, sc, image);
        Ok(())
    }

    /// For a repeated publish of a live publication: keeps its image config file as it is, or
    /// writes it if it is missing (a publish whose write failed, a publication made by a release
    /// before image configs) or unreadable. Only a provider running now is asked about: a live
    /// consumer is never failed for an image config, and the next repeated publish tries again.
    async fn keep_image_config(&self, request: &PublishRequest, consumer: &Consumer) -> Result<(), PublishError> {
        let control = self.settings.data_root.control_dir(&request.volume_id);
        match published_image::read(&control) {
            Ok(Some(image)) => {
                self.images.remember(&request.target_path, &consumer.sc, &image);
                return Ok(());
            }
            Ok(None) => {}
            Err(error) => warn!(volume_id = %request.volume_id, %error, "the image config file is unreadable; writing it again"),
        }
        let image_ref = match self.cluster.provider(consumer).await {
            Ok(Provider::Running { image_ref, .. }) => image_ref,
            Ok(Provider::NotReady { reason } | Provider::Stuck { reason }) => {
                warn!(volume_id = %request.volume_id, sc = %consumer.sc, %reason, "the published volume has no image config file and its provider is not running; the next publish tries again");
                return Ok(());
            }
            Err(error) => {
                warn!(volume_id = %request.volume_id, sc = %consumer.sc, %error, "the published volume has no image config file and its provider cannot be looked up; the next publish tries again");
                return Ok(());
            }
        };
        let image = self.settings.images.read(&image_ref).await;
        log_image(&request.volume_id, &consumer.sc, &image);
        self.publish_image_config(request, &consumer.sc, &image)?;
        self.publications_changed.notify_one();
        Ok(())
    }

    /// Serves a published volume's control socket. A failure fails the publish: kubelet retries
    /// it, and a consumer without the socket could never start.
    fn open_control(&self, volume_id: &str, pod: &crate::validate::PodRef) -> Result<(), PublishError> {
        self.controls
            .open(volume_id, pod)
            .context("serving the control socket in", &self.settings.data_root.control_dir(volume_id))
            .map_err(PublishError::from)
    }

    /// Unmounts a published volume; never touches the persistent upper directory.
    pub async fn unpublish(&self, request: &UnpublishRequest) -> Result<(), UnpublishError> {
        let _guard = self.mount_lock.lock().await;
        // A consumer that is going away needs no more preparing.
        self.controls.close(&request.volume_id);
        let system = Arc::clone(&self.system);
        let records = self.records.clone();
        let (volume_id, target) = (request.volume_id.clone(), request.target_path.clone());
        let request = request.clone();
        let (loops, data) = (Arc::clone(&self.loops), self.settings.data_root.clone());
        tokio::task::spawn_blocking(move || {
            let unmounted = unmount_publication(&*system, &records, &request)?;
            // A stopped StoppableContainer holds no loop device, and its filesystem can grow at
            // the next start. Never fails the unpublish: the pod's mounts are gone either way.
            if let Some(sc) = unmounted {
                release_idle_filesystem(&*loops, &data, &sc);
            }
            Ok::<(), UnpublishError>(())
        })
        .await
        .map_err(|join| IoError {
            action: "joining the unmount task for",
            path: "unpublish".into(),
            source: io::Error::other(join),
        })??;
        self.controls.remove_dir(&volume_id);
        self.live.remove_target(&target);
        self.images.forget(&target);
        self.publications_changed.notify_one();
        Ok(())
    }

    /// Unmounts the StoppableContainer's own filesystem if no overlay uses it (a stopped SC's,
    /// before its data is deleted). Call with the mount lock held.
    pub fn release_idle_filesystem(&self, sc: &ScKey) {
        release_idle_filesystem(&*self.loops, &self.settings.data_root, sc);
    }

    /// Usage of the filesystem holding a published volume's upper layer.
    pub async fn stats(&self, volume_id: &str, volume_path: &Path) -> Result<VolumeStats, StatsError> {
        let not_found = || StatsError::NotFound { volume_id: volume_id.to_owned(), path: volume_path.display().to_string() };
        let record = self.records.load(volume_id).context("reading the record of", Path::new(volume_id))?.ok_or_else(not_found)?;
        if record.target_path != volume_path {
            return Err(not_found());
        }
        let host = self.host_mounts()?;
        let abnormal = check_published_shape(&host, &record.target_path, &self.settings.data_root.upper_dir(&record.sc)).err();
        let upper = self.settings.data_root.upper_dir(&record.sc);
        let stat = nix::sys::statvfs::statvfs(&upper).map_err(io::Error::from).context("statvfs of", &upper)?;
        let fragment = stat.fragment_size();
        Ok(VolumeStats {
            bytes_total: stat.blocks() * fragment,
            bytes_available: stat.blocks_available() * fragment,
            bytes_used: (stat.blocks() - stat.blocks_free()) * fragment,
            inodes_total: stat.files(),
            inodes_free: stat.files_free(),
            inodes_used: stat.files() - stat.files_free(),
            abnormal,
        })
    }

    /// Finishes or undoes whatever a previous run of the plugin left half done, from the records
    /// and the mount table, after making the data root root-only. Returns how many publications
    /// are live.
    ///
    /// A record that does not parse is quarantined, and its target is then judged by its mounts
    /// like any unrecorded one: a complete publication is live (recorded again from the mount
    /// table, its control socket served), never unwound; only a half-done one is unwound. Only
    /// making the data root private and reading the mount table can fail start-up: the rest is
    /// logged and left for the next attempt.
    pub async fn recover(&self) -> Result<usize, IoError> {
        let _guard = self.mount_lock.lock().await;
        let data = &self.settings.data_root;
        dirs::secure_data_root(data).context("making root-only (0700)", data.path())?;
        self.seal_containers_dir(&self.host_mounts()?);
        let listing = self.records.all().context("listing", &data.records_dir())?;
        for (path, error) in &listing.unreadable {
            warn!(path = %path.display(), %error, "a publication record cannot be read; left in place, its target is judged by its mounts");
        }
        let host = self.host_mounts()?;
        let mut live = 0;
        for record in listing.records {
            match check_published_shape(&host, &record.target_path, &data.upper_dir(&record.sc)) {
                Ok(()) => {
                    self.reopen_control(&record);
                    self.recall_image(&record);
                    self.live.insert(data.upper_dir(&record.sc), record.target_path.clone());
                    live += 1;
                }
                Err(problem) => {
                    info!(volume_id = %record.volume_id, %problem, "cleaning up a broken or vanished publication");
                    if let Err(error) = unwind_target(&*self.system, &record.target_path) {
                        warn!(volume_id = %record.volume_id, %error, "could not clean up; keeping its record for the next attempt");
                        continue;
                    }
                    if let Err(error) = self.records.remove(&record.volume_id) {
                        warn!(volume_id = %record.volume_id, %error, "could not remove the record of a cleaned-up publication; the next start-up does");
                    }
                    self.controls.close(&record.volume_id);
                    self.controls.remove_dir(&record.volume_id);
                }
            }
        }
        // Mounts of this plugin's kind with no record: a publish killed before it recorded
        // itself, or one whose record was quarantined.
        let recorded = self.live.targets();
        let host = self.host_mounts()?;
        let unrecorded: Vec<PathBuf> = host
            .iter()
            .filter(|entry| {
                is_our_tmpfs(entry)
                    && entry.mount_point.starts_with(self.settings.kubelet_dir.join("pods"))
                    && !recorded.contains(&entry.mount_point)
            })
            .map(|entry| entry.mount_point.clone())
            .collect();
        for target in unrecorded {
            match published_mounts(&host, &target) {
                Ok(mounts) => {
                    live += 1;
                    self.live.insert(mounts.upper.to_path_buf(), target.clone());
                    self.keep_unrecorded(&target, &mounts);
                }
                Err(problem) => {
                    info!(target = %target.display(), %problem, "unwinding a publish that was interrupted before it was recorded");
                    if let Err(error) = unwind_target(&*self.system, &target) {
                        warn!(target = %target.display(), %error, "could not unwind an interrupted publish");
                    }
                }
            }
        }
        Ok(live)
    }

    /// Records again, and serves the control socket of, a complete publication found with no
    /// readable record. Failures are logged: the consumer keeps its mounts either way, and an
    /// unpublish goes by the mount table.
    fn keep_unrecorded(&self, target: &Path, mounts: &PublishedMounts<'_>) {
        let Some(record) = record_from_mounts(mounts, target, &self.settings.data_root, &self.settings.kubelet_dir) else {
            warn!(
                target = %target.display(),
                upper = %mounts.upper.display(),
                "kept a live publication with no readable record whose mounts do not name its volume and pod (was --data-root or --kubelet-dir changed?); its consumer cannot be prepared again until the pod is recreated"
            );
            return;
        };
        info!(volume_id = %record.volume_id, target = %target.display(), "kept a live publication that had no readable record; recorded it again from the mount table");
        if let Err(error) = self.records.save(&record) {
            warn!(volume_id = %record.volume_id, %error, "could not record the kept publication again; unpublish goes by the mount table");
        }
        self.reopen_control(&record);
        self.recall_image(&record);
    }

    /// Reads a live publication's image config file again after a restart, for the usage
    /// reports. The file itself stays as the publish wrote it: the consumer reads it at each start.
    fn recall_image(&self, record: &Record) {
        let control = self.settings.data_root.control_dir(&record.volume_id);
        match published_image::read(&control) {
            Ok(Some(image)) => self.images.remember(&record.target_path, &record.sc, &image),
            Ok(None) => {
                debug!(volume_id = %record.volume_id, "the live publication has no image config file (published by an earlier release)")
            }
            Err(error) => {
                warn!(volume_id = %record.volume_id, %error, "the image config file of a live publication is unreadable; the next publish of the volume writes it again")
            }
        }
    }

    /// Mounts the data root's `containers/` onto itself with `nosuid,nodev`, once per boot: a
    /// setuid program or device node in an upper then means nothing to anyone who reaches it
    /// there (through the overlays, whose own flags count, both keep working). A failure is only
    /// warned about: the 0700 modes already keep the node's other users out.
    fn seal_containers_dir(&self, host: &[MountEntry]) {
        let dir = self.settings.data_root.containers_dir();
        match containers_seal(host, &dir) {
            Seal::Sealed => {}
            Seal::Mount => match self.system.bind_mount_nosuid_nodev(&dir) {
                Ok(()) => info!(dir = %dir.display(), "mounted the rootfs data nosuid,nodev"),
                Err(error) => {
                    warn!(dir = %dir.display(), %error, "could not mount the rootfs data nosuid,nodev; it stays root-only (0700)")
                }
            },
            Seal::Leave(reason) => {
                warn!(dir = %dir.display(), reason, "not mounting the rootfs data nosuid,nodev; it stays root-only (0700)")
            }
        }
    }

    /// Serves a live publication's control socket again after a restart: consumers that restart
    /// later must still get their rootfs prepared. A failure is logged, not fatal: the other
    /// volumes must still be served (the consumer's `sc-exec` reports the silent socket).
    fn reopen_control(&self, record: &Record) {
        if let Err(error) = self.controls.open(&record.volume_id, &record.pod) {
            warn!(volume_id = %record.volume_id, %error, "could not serve the control socket again; the consumer cannot be prepared until it is");
        }
    }

    /// Whether the StoppableContainer's persistent data is mounted anywhere on this node.
    pub fn is_data_in_use(&self, sc: &ScKey) -> Result<bool, IoError> {
        Ok(!mountinfo::overlays_with_upper(&self.host_mounts()?, &self.settings.data_root.upper_dir(sc)).is_empty())
    }

    fn host_mounts(&self) -> Result<Vec<MountEntry>, IoError> {
        host_mounts(&*self.system)
    }

    /// Whether the request's volume is published as asked: by its record, or, with no readable
    /// record, by the mount table (the publication is then recorded again).
    fn already_published(&self, request: &PublishRequest, sc: &ScKey) -> Result<bool, PublishError> {
        let Some(record) = self.records.load(&request.volume_id).context("reading the record of", Path::new(&request.volume_id))? else {
            // Kubelet creates only the target's parent: a fresh publish costs one stat here.
            if !request.target_path.exists() {
                return Ok(false);
            }
            let (system, data) = (&*self.system, &self.settings.data_root);
            return Ok(adopt_unrecorded(system, &self.records, data, &self.live, request, sc)?.is_some());
        };
        check_same_volume(&record, request, sc)?;
        Ok(check_published_shape(&self.host_mounts()?, &request.target_path, &self.settings.data_root.upper_dir(sc)).is_ok())
    }

    /// Waits for the provider to run, asking again after a delay that doubles from
    /// `provider_poll` up to [`MAX_PROVIDER_POLL`]: a provider that starts asks little of the API
    /// server, one that never does (a typo in the image) costs a handful of requests per minute
    /// per waiting publish, and a stuck one ends the wait at once.
    async fn wait_for_provider(&self, consumer: &Consumer) -> Result<ProviderContainer, PublishError> {
        let started = tokio::time::Instant::now();
        let mut delay = self.settings.provider_poll;
        loop {
            match self.cluster.provider(consumer).await? {
                Provider::Running { container_id, pod_uid, image_ref } => {
                    return Ok(ProviderContainer { container_id, pod_uid, image_ref });
                }
                Provider::Stuck { reason } => return Err(PublishError::ProviderStuck { sc: consumer.sc.clone(), reason }),
                Provider::NotReady { reason } => {
                    let waited = started.elapsed();
                    if waited >= self.settings.provider_wait {
                        return Err(PublishError::ProviderNotReady { sc: consumer.sc.clone(), waited, reason });
                    }
                    tokio::time::sleep(delay.min(self.settings.provider_wait.saturating_sub(waited))).await;
                    delay = next_poll_delay(delay);
                }
            }
        }
    }

    /// The lock publishes, unpublishes and recovery hold while they check and change mounts. The
    /// data cleanup holds it while it checks that data is unused and moves it away, so no publish
    /// mounts the data in between.
    pub fn mount_lock(&self) -> &Mutex<()> {
        &self.mount_lock
    }

    /// Whether anything mounts the StoppableContainer's data: an overlay over its upper, or a
    /// mount on or below its data directory (its own filesystem, a bind). Data is deleted only
    /// when neither is there.
    pub fn is_data_mounted(&self, sc: &ScKey) -> Result<bool, IoError> {
        let mounts = self.host_mounts()?;
        let dir = self.settings.data_root.container_dir(sc);
        Ok(!mountinfo::overlays_with_upper(&mounts, &self.settings.data_root.upper_dir(sc)).is_empty()
            || mounts.iter().any(|entry| entry.mount_point.starts_with(&dir)))
    }

    /// The StoppableContainers published on this node, each with what its own filesystem holds
    /// (`Ok(None)`: a rootfs made before size limits, which has none). Each is measured under the
    /// mount lock, taken once per SC: an unpublish cannot unmount the filesystem between the
    /// check that it is mounted and the `statvfs`, which would then measure the node's disk.
    pub async fn published_usage(&self) -> Vec<(ScKey, Result<Option<quota::RootfsUsage>, quota::QuotaError>)> {
        let data = &self.settings.data_root;
        let mut scs: Vec<ScKey> = self.live.uppers().iter().filter_map(|upper| sc_of_upper(data, upper)).collect();
        scs.sort_by(|a, b| (&a.namespace, &a.name, &a.uid).cmp(&(&b.namespace, &b.name, &b.uid)));
        scs.dedup();
        let mut measured = Vec::with_capacity(scs.len());
        for sc in scs {
            let _guard = self.mount_lock.lock().await;
            // Unpublished since the list was taken: nothing to measure.
            if self.live.target_of(&data.upper_dir(&sc)).is_none() {
                continue;
            }
            let figures = match data.layout(&sc) {
                DataLayout::Unlimited => Ok(None),
                DataLayout::OwnFilesystem => quota::usage(&*self.loops, &RootfsFs::new(data.container_dir(&sc))).map(Some),
            };
            measured.push((sc, figures));
        }
        measured
    }

    /// Resolves once a publish completed or an unpublish was done since the last call.
    pub async fn publications_changed(&self) {
        self.publications_changed.notified().await;
    }

    /// What the image config file of each StoppableContainer published here says, by SC UID (for
    /// the usage reports).
    pub fn published_images(&self) -> HashMap<String, ImageSummary> {
        self.images.by_sc_uid()
    }
}

/// Logs what a publish learnt of the provider's image: a config, or why there is none (which the
/// consumer and the SC's status then show).
fn log_image(volume_id: &str, sc: &ScKey, image: &PublishedImage) {
    match image {
        PublishedImage::Runtime { image_ref, .. } => {
            debug!(volume_id, sc = %sc, image = %image_ref, "read the image's config from the container runtime")
        }
        PublishedImage::Unavailable { image_ref, reason } => {
            warn!(volume_id, sc = %sc, image = %image_ref, %reason, "the container runtime gave no config for the provider's image")
        }
    }
}

/// The image config of every live publication, by target, as its file says: what the usage
/// reports tell the operator. Kept by publish and unpublish, rebuilt by start-up recovery from
/// the files.
#[derive(Default)]
struct KnownImages {
    by_target: std::sync::Mutex<HashMap<PathBuf, (ScKey, ImageSummary)>>,
}

impl KnownImages {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, (ScKey, ImageSummary)>> {
        self.by_target.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn remember(&self, target: &Path, sc: &ScKey, image: &PublishedImage) {
        self.lock().insert(target.to_path_buf(), (sc.clone(), image.summary()));
    }

    fn forget(&self, target: &Path) {
        self.lock().remove(target);
    }

    fn by_sc_uid(&self) -> HashMap<String, ImageSummary> {
        self.lock().values().map(|(sc, summary)| (sc.uid.clone(), summary.clone())).collect()
    }
}

/// The longest pause between two looks at a provider that is still starting.
pub const MAX_PROVIDER_POLL: Duration = Duration::from_secs(2);

/// The pause after `delay`: doubled, at most [`MAX_PROVIDER_POLL`].
fn next_poll_delay(delay: Duration) -> Duration {
    (delay * 2).min(MAX_PROVIDER_POLL)
}

fn host_mounts(system: &dyn System) -> Result<Vec<MountEntry>, IoError> {
    let text = system.own_mountinfo().context("reading", Path::new("/proc/self/mountinfo"))?;
    Ok(mountinfo::parse(&text)?)
}

fn check_same_volume(record: &Record, request: &PublishRequest, sc: &ScKey) -> Result<(), PublishError> {
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
fn check_published_shape(host: &[MountEntry], target: &Path, upper: &Path) -> Result<(), String> {
    if published_mounts(host, target)?.upper != upper {
        return Err("the rootfs mount is not this StoppableContainer's overlay".into());
    }
    Ok(())
}

/// The mounts of a complete publication at a target, as the mount table shows them.
struct PublishedMounts<'a> {
    /// The overlay's upper directory.
    upper: &'a Path,
    overlay: &'a MountEntry,
    control: &'a MountEntry,
}

/// The mounts at `target` if they are a complete publication of this plugin's (whichever
/// StoppableContainer's), or what is missing.
fn published_mounts<'a>(host: &'a [MountEntry], target: &Path) -> Result<PublishedMounts<'a>, String> {
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
    Ok(PublishedMounts { upper: Path::new(upper), overlay, control })
}

/// The record a publish would have written for the complete publication `mounts` at `target`,
/// read back from the mounts themselves: the StoppableContainer from the upper's path below
/// the data root, the volume from the control directory's name, the consumer pod's UID from
/// kubelet's target path (the consumer pod is named and namespaced like its StoppableContainer).
/// `None` when the paths are not the ones this plugin makes with these settings.
fn record_from_mounts(mounts: &PublishedMounts<'_>, target: &Path, data: &DataRoot, kubelet_dir: &Path) -> Option<Record> {
    let sc = sc_of_upper(data, mounts.upper)?;
    // The control mount shows the directory it binds, `.../control/<volume-id>`, as its root.
    let volume_id = mounts.control.root.file_name()?.to_str()?.to_owned();
    if mounts.control.root.parent()?.file_name()? != "control" {
        return None;
    }
    let pod_uid = crate::validate::pod_uid_in_target(kubelet_dir, target)?.to_owned();
    let lower_dir = PathBuf::from(mounts.overlay.super_option("lowerdir")?);
    let pod = PodRef { namespace: sc.namespace.clone(), name: sc.name.clone(), uid: pod_uid };
    Some(Record { volume_id, target_path: target.to_path_buf(), pod, sc, lower_dir })
}

/// The StoppableContainer whose data holds the upper directory `upper`: the first three names
/// below `<data-root>/containers/` are its namespace, name and UID (whatever the layout below
/// them).
fn sc_of_upper(data: &DataRoot, upper: &Path) -> Option<ScKey> {
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

/// Takes a complete publication of exactly this request, found at its target with no readable
/// record (quarantined, or a publish killed between its last mount and its record), as
/// published: records it again and returns its lower directory. `None` when the target does not
/// hold a complete publication; a complete one of another volume or StoppableContainer is a
/// conflict, never unwound.
fn adopt_unrecorded(
    system: &dyn System,
    records: &Records,
    data: &DataRoot,
    live: &LiveUppers,
    request: &PublishRequest,
    sc: &ScKey,
) -> Result<Option<PathBuf>, PublishError> {
    let target = &request.target_path;
    let host = host_mounts(system)?;
    let Ok(mounts) = published_mounts(&host, target) else { return Ok(None) };
    let upper = data.upper_dir(sc);
    let volume = mounts.control.root.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
    if mounts.upper != upper || volume != request.volume_id {
        return Err(PublishError::VolumeConflict {
            volume_id: volume,
            existing: target.display().to_string(),
            existing_sc: Box::new(sc_of_upper(data, mounts.upper).unwrap_or_else(|| sc.clone())),
            requested: format!("{} for volume {}", target.display(), request.volume_id),
        });
    }
    if let Some(mounted_at) = live.target_of(&upper).filter(|mounted_at| mounted_at != target) {
        return Err(PublishError::UpperInUse { sc: sc.clone(), mounted_at: layout::target_rootfs(&mounted_at).display().to_string() });
    }
    let lower_dir = mounts.overlay.super_option("lowerdir").map(PathBuf::from).unwrap_or_default();
    let record = Record {
        volume_id: request.volume_id.clone(),
        target_path: target.clone(),
        pod: request.pod.clone(),
        sc: sc.clone(),
        lower_dir: lower_dir.clone(),
    };
    records.save(&record).context("saving the record of", Path::new(&request.volume_id))?;
    live.insert(upper, target.clone());
    info!(volume_id = %request.volume_id, target = %target.display(), "found the volume published with no readable record; recorded it again");
    Ok(Some(lower_dir))
}

/// What to do about `containers/` being mounted `nosuid,nodev`.
#[derive(Debug, PartialEq, Eq)]
enum Seal {
    /// It is.
    Sealed,
    /// Bind it onto itself with those flags.
    Mount,
    /// Leave it as it is, for this reason.
    Leave(String),
}

/// Decides from the mount table (pure, for tests). A bind onto itself would hide whatever is
/// mounted below `containers/` already, and another mount there is not the plugin's to change.
fn containers_seal(host: &[MountEntry], dir: &Path) -> Seal {
    let flag = |entry: &MountEntry, name: &str| entry.mount_options.iter().any(|option| option == name);
    match mountinfo::mount_at(host, dir) {
        Some(entry) if flag(entry, "nosuid") && flag(entry, "nodev") => Seal::Sealed,
        Some(entry) => {
            Seal::Leave(format!("a {} mount from {} is there without nosuid,nodev; mount it with both", entry.fs_type, entry.source))
        }
        None => match host.iter().find(|entry| entry.mount_point.starts_with(dir)) {
            Some(below) => Seal::Leave(format!("{} is mounted below it and would be hidden", below.mount_point.display())),
            None => Seal::Mount,
        },
    }
}

fn is_our_tmpfs(entry: &MountEntry) -> bool {
    entry.fs_type == "tmpfs" && entry.source == TARGET_TMPFS_SOURCE
}

/// Clears a target this plugin left half-published, so a publish can start from nothing.
fn unwind_before_publish(system: &dyn System, target: &Path) -> Result<(), PublishError> {
    unwind_target(system, target).map_err(|error| match error {
        UnpublishError::Io(io) => PublishError::Io(io),
        other => PublishError::Io(IoError {
            action: "cleaning up",
            path: target.display().to_string(),
            source: io::Error::other(other.to_string()),
        }),
    })
}

/// What the mount phase of a publish needs from the plugin's state.
struct MountContext<'a> {
    system: &'a dyn System,
    records: &'a Records,
    data: &'a DataRoot,
    providers: &'a ProviderCache,
    live: &'a LiveUppers,
    filesystem: RootfsFilesystem<'a>,
}

/// What making and mounting a StoppableContainer's own filesystem needs.
#[derive(Clone, Copy)]
struct RootfsFilesystem<'a> {
    loops: &'a dyn quota::LoopSystem,
    settings: &'a RootfsSettings,
    size: RootfsSize,
}

/// The running provider container a publish uses.
struct ProviderContainer {
    container_id: String,
    /// Its pod's UID, when the cluster view knows it.
    pod_uid: Option<String>,
    /// Its image, as kubelet reports it.
    image_ref: String,
}

/// Mounts one publication; returns the lower directory it uses.
fn mount_publication(
    context: &MountContext<'_>,
    request: &PublishRequest,
    sc: &ScKey,
    provider: &ProviderContainer,
) -> Result<PathBuf, PublishError> {
    let MountContext { system, records, data, providers, live, filesystem } = *context;
    let target = &request.target_path;
    let upper = data.upper_dir(sc);
    let record = records.load(&request.volume_id).context("reading the record of", Path::new(&request.volume_id))?;
    if let Some(record) = record {
        check_same_volume(&record, request, sc)?;
        if check_published_shape(&host_mounts(system)?, target, &upper).is_ok() {
            return Ok(record.lower_dir);
        }
        // A recorded publication whose mounts are broken: start again from nothing.
        unwind_before_publish(system, target)?;
        records.remove(&request.volume_id).context("removing the record of", Path::new(&request.volume_id))?;
        live.remove(&upper);
    }
    // Kubelet creates only the target's parent, so normally nothing can be mounted on the target
    // and the (large, slow to read) mount table is not needed; an existing target is checked.
    if target.exists() {
        let host = host_mounts(system)?;
        match mountinfo::mount_at(&host, target) {
            // Ours, unrecorded (a publish of this volume killed before it recorded itself, or its
            // record quarantined): complete, it is the live publication; half done, undone.
            Some(existing) if is_our_tmpfs(existing) => {
                if let Some(lower) = adopt_unrecorded(system, records, data, live, request, sc)? {
                    return Ok(lower);
                }
                unwind_before_publish(system, target)?;
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
    if let Some(mounted_at) = live.target_of(&upper) {
        return Err(PublishError::UpperInUse { sc: sc.clone(), mounted_at: layout::target_rootfs(&mounted_at).display().to_string() });
    }
    let lower = providers.lower_dir(system, sc, provider)?;

    let record = Record {
        volume_id: request.volume_id.clone(),
        target_path: target.clone(),
        pod: request.pod.clone(),
        sc: sc.clone(),
        lower_dir: lower.clone(),
    };
    let mounted = mount_layers(system, filesystem, data, request, sc, &lower)
        .and_then(|()| records.save(&record).context("saving the record of", Path::new(&request.volume_id)).map_err(PublishError::from));
    if let Err(error) = mounted {
        // Nothing may stay mounted after a failed publish.
        if let Err(cleanup) = unwind_target(system, target) {
            warn!(target = %target.display(), %cleanup, "cleanup after a failed publish failed; start-up recovery or kubelet's retry unwinds it");
            return Err(error);
        }
        if let Err(cleanup) = records.remove(&request.volume_id) {
            warn!(volume_id = %request.volume_id, %cleanup, "could not remove the record after a failed publish");
        }
        return Err(error);
    }
    live.insert(upper, target.clone());
    Ok(lower)
}

/// A duration in milliseconds with microsecond precision, for log fields.
pub(crate) fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// The target of every live publication, by upper directory: "one live overlay per upper"
/// without reading the mount table on every publish. Built from the records by start-up
/// recovery (which checks them against the mount table) and kept by publish and unpublish,
/// all under the mount lock.
#[derive(Default)]
pub struct LiveUppers {
    targets: std::sync::Mutex<HashMap<PathBuf, PathBuf>>,
}

impl LiveUppers {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, PathBuf>> {
        self.targets.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn target_of(&self, upper: &Path) -> Option<PathBuf> {
        self.lock().get(upper).cloned()
    }

    fn insert(&self, upper: PathBuf, target: PathBuf) {
        self.lock().insert(upper, target);
    }

    fn remove(&self, upper: &Path) {
        self.lock().remove(upper);
    }

    fn targets(&self) -> Vec<PathBuf> {
        self.lock().values().cloned().collect()
    }

    fn uppers(&self) -> Vec<PathBuf> {
        self.lock().keys().cloned().collect()
    }

    fn remove_target(&self, target: &Path) {
        self.lock().retain(|_, live_target| live_target != target);
    }
}

/// Where each provider container's root filesystem is mounted in the host namespace. Finding it
/// costs a look into the container's cgroup directory (a process scan when that fails) and two
/// mount tables; a known provider is re-checked with two `stat`s.
pub struct ProviderCache {
    kubelet_cgroups: KubeletCgroups,
    entries: std::sync::Mutex<HashMap<String, KnownProvider>>,
}

#[derive(Clone)]
struct KnownProvider {
    pid: u32,
    lower: PathBuf,
    /// The directory the process had as `/`, which the lower is: checked again on every use.
    root: FileIdentity,
}

/// Providers are remembered until this many are known, then forgotten all at once (a node runs
/// far fewer; this only bounds memory if containers churn for months).
const PROVIDER_CACHE_LIMIT: usize = 4096;

impl ProviderCache {
    pub fn new(kubelet_cgroups: KubeletCgroups) -> Self {
        Self { kubelet_cgroups, entries: std::sync::Mutex::default() }
    }

    fn lower_dir(&self, system: &dyn System, sc: &ScKey, provider: &ProviderContainer) -> Result<PathBuf, PublishError> {
        let container_id = provider.container_id.as_str();
        let known = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(container_id).cloned();
        if let Some(known) = known {
            // Still the same process of that container, whose root is still the very directory
            // the lower is.
            let same_root = is_process_of_container(system, known.pid, container_id)
                && system.process_root_identity(known.pid).is_ok_and(|root| root == known.root)
                && system.identity_of(&known.lower).is_ok_and(|lower| lower == known.root);
            if same_root {
                return Ok(known.lower);
            }
        }
        let pid = find_provider_pid(system, &self.kubelet_cgroups, container_id, provider.pod_uid.as_deref())?
            .ok_or_else(|| PublishError::ProviderProcessNotFound { sc: sc.clone(), container_id: container_id.to_owned() })?;
        let (lower, root) = find_provider_rootfs(system, &host_mounts(system)?, sc, container_id, pid)?;
        let mut entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if entries.len() >= PROVIDER_CACHE_LIMIT {
            entries.clear();
        }
        entries.insert(container_id.to_owned(), KnownProvider { pid, lower: lower.clone(), root });
        Ok(lower)
    }
}

fn mount_layers(
    system: &dyn System,
    filesystem: RootfsFilesystem<'_>,
    data: &DataRoot,
    request: &PublishRequest,
    sc: &ScKey,
    lower: &Path,
) -> Result<(), PublishError> {
    let target = &request.target_path;
    let control = data.control_dir(&request.volume_id);
    let (upper, work) = match data.layout(sc) {
        DataLayout::Unlimited => {
            warn!(sc = %sc, "this rootfs was created before size limits and has none; its data is kept as it is");
            create_private_dir_all(data, &data.container_dir(sc), &[("upper", dirs::ROOTFS_ROOT_MODE), ("work", dirs::PRIVATE_DIR_MODE)])?;
            (data.upper_dir(sc), data.work_dir(sc))
        }
        DataLayout::OwnFilesystem => {
            create_private_dir_all(data, &data.container_dir(sc), &[])?;
            let tools = filesystem.settings.tools.as_ref().map_err(|problem| PublishError::RootfsSize {
                sc: sc.clone(),
                problem: format!("this node cannot make size-limited filesystems: {problem}"),
            })?;
            let mounted = quota::ensure_mounted(filesystem.loops, &RootfsFs::new(data.container_dir(sc)), filesystem.size, tools)?;
            if mounted.created {
                info!(sc = %sc, size = %filesystem.size, "made the rootfs's own filesystem");
            }
            (mounted.upper, mounted.work)
        }
    };
    create_private_dir_all(data, &control, &[])?;
    match std::fs::create_dir(target) {
        Err(error) if error.kind() != io::ErrorKind::AlreadyExists => {
            return Err(IoError { action: "creating", path: target.display().to_string(), source: error }.into());
        }
        _ => {}
    }
    system.mount_target_tmpfs(target).context("mounting the volume tmpfs at", target)?;
    let (rootfs, control_target) = (layout::target_rootfs(target), layout::target_control(target));
    for dir in [&rootfs, &control_target] {
        std::fs::create_dir(dir).context("creating", dir)?;
    }
    system.mount_overlay(&OverlayDirs { lower, upper: &upper, work: &work }, &rootfs).context("mounting the overlay at", &rootfs)?;
    // Read-only: the pod only connects to the socket in it, and must not plant anything there.
    system.bind_mount_read_only(&control, &control_target).context("bind-mounting the control directory read-only at", &control_target)?;
    // statvfs answers "is it writable" for the new mount without reading the mount table.
    let flags = nix::sys::statvfs::statvfs(&rootfs).map_err(io::Error::from).context("statvfs of the new overlay at", &rootfs)?.flags();
    if flags.contains(nix::sys::statvfs::FsFlags::ST_RDONLY) {
        return Err(PublishError::ReadOnly(rootfs.display().to_string()));
    }
    Ok(())
}

/// Creates `dir` below the data root and its parents, root-only (0700) where this call creates
/// them, then each of `children` in it with its mode (the upper's is the rootfs's `/`, so 0755)
/// if missing. No symlink below the data root is followed.
fn create_private_dir_all(data: &DataRoot, dir: &Path, children: &[(&str, u32)]) -> Result<(), IoError> {
    let parent = dirs::create_private_dirs(data.path(), dir).context("creating", dir)?;
    for (name, mode) in children {
        dirs::make_directory(&parent, Path::new(name), *mode).context("creating", &dir.join(name))?;
    }
    Ok(())
}

/// Whether `/proc/<pid>/cgroup` puts process `pid` in the container `container_id`: the proof
/// that a pid (remembered, or listed by a cgroup directory) is the container's.
fn is_process_of_container(system: &dyn System, pid: u32, container_id: &str) -> bool {
    system.process_cgroup(pid).is_ok_and(|text| cgroup::parse(&text).container_id.as_deref() == Some(container_id))
}

/// A process of the provider container. With the pod UID, it is one of the pids listed by the
/// container's cgroup directory under kubelet's cgroup root (a few `stat`s and two small reads).
/// Without it, or when no candidate directory exists (a layout this plugin does not know), every
/// process's `/proc/<pid>/cgroup` is read, which costs milliseconds on a busy node.
fn find_provider_pid(
    system: &dyn System,
    kubelet_cgroups: &KubeletCgroups,
    container_id: &str,
    pod_uid: Option<&str>,
) -> Result<Option<u32>, IoError> {
    if let Some(pod_uid) = pod_uid {
        let candidates = kubelet_cgroups.container_dirs(pod_uid, container_id);
        match system.first_cgroup_procs(&candidates) {
            Ok(Some((dir, procs))) => {
                // The directory's name is only a hint: a pid counts once its own cgroup file
                // names the container (the directory may list a pid that has since been reused).
                let pid = procs
                    .lines()
                    .filter_map(|line| line.trim().parse::<u32>().ok())
                    .find(|&pid| is_process_of_container(system, pid, container_id));
                if pid.is_some() {
                    return Ok(pid);
                }
                debug!(dir = %dir.display(), container_id, "no process of the container in its cgroup directory; scanning every process");
            }
            Ok(None) => {
                debug!(pod_uid, container_id, "no cgroup directory of the container under the kubelet cgroup root; scanning every process")
            }
            Err(error) => debug!(pod_uid, container_id, %error, "cannot read the container's cgroup directory; scanning every process"),
        }
    }
    let cgroups = system.process_cgroups().context("listing processes in", Path::new("/proc"))?;
    Ok(cgroups.iter().find(|(_, text)| cgroup::parse(text).container_id.as_deref() == Some(container_id)).map(|(pid, _)| *pid))
}

/// Finds where, in this mount namespace, the provider process `pid`'s actual root directory is
/// mounted: a mount showing the same directory of the same filesystem as the process's `/` entry
/// (device, type and root inside the filesystem), whose mount point is that very directory (the
/// device and inode of `/proc/<pid>/root`). Anything else is refused: a process that `chroot`ed
/// into a directory of the node's disk (an emptyDir) has the disk's device, and a device match
/// alone would make the node's whole filesystem the lower layer.
fn find_provider_rootfs(
    system: &dyn System,
    host: &[MountEntry],
    sc: &ScKey,
    container_id: &str,
    pid: u32,
) -> Result<(PathBuf, FileIdentity), PublishError> {
    let not_found = || PublishError::ProviderProcessNotFound { sc: sc.clone(), container_id: container_id.to_owned() };
    let text = system.process_mountinfo(pid).map_err(|_| not_found())?;
    let root_identity = system.process_root_identity(pid).map_err(|_| not_found())?;
    let process_mounts = mountinfo::parse(&text).map_err(IoError::from)?;
    let refused = || PublishError::LowerNotFound { sc: sc.clone() };
    // A process chrooted below a mount's root sees no mount at `/` at all.
    let root = mountinfo::root_mount(&process_mounts).ok_or_else(refused)?;
    let lower = mountinfo::mounts_showing(root, host)
        .into_iter()
        .find(|entry| system.identity_of(&entry.mount_point).is_ok_and(|identity| identity == root_identity))
        .ok_or_else(refused)?;
    let path = lower.mount_point.clone();
    if path.to_string_lossy().contains([',', ':']) {
        return Err(PublishError::UnusableLower { sc: sc.clone() });
    }
    Ok((path, root_identity))
}

/// Unmounts one publication; returns the StoppableContainer it belonged to, when its record
/// says so.
fn unmount_publication(system: &dyn System, records: &Records, request: &UnpublishRequest) -> Result<Option<ScKey>, UnpublishError> {
    let record = records.load(&request.volume_id).context("reading the record of", Path::new(&request.volume_id))?;
    let ours = record.as_ref().filter(|record| record.target_path == request.target_path);
    match ours {
        // The record says exactly what this plugin mounted there: unmount that, without reading
        // the node's whole mount table. The record goes last, so an interrupted unpublish is
        // finished by kubelet's retry.
        Some(_) => unmount_published(system, &request.target_path)?,
        None => unwind_target(system, &request.target_path)?,
    }
    if ours.is_some() {
        records.remove(&request.volume_id).context("removing the record of", Path::new(&request.volume_id))?;
        info!(volume_id = %request.volume_id, target = %request.target_path.display(), "unpublished");
    }
    Ok(ours.map(|record| record.sc.clone()))
}

/// Unmounts `sc`'s own filesystem unless an overlay still uses it (then it stays: unmounting
/// under an overlay would only hide it). Logs, never fails: what it leaves mounted is reused by
/// the next publish and unmounted before the data is deleted.
fn release_idle_filesystem(loops: &dyn quota::LoopSystem, data: &DataRoot, sc: &ScKey) {
    if data.layout(sc) != DataLayout::OwnFilesystem {
        return;
    }
    match quota::unmount(loops, &RootfsFs::new(data.container_dir(sc))) {
        Ok(()) => debug!(sc = %sc, "the rootfs's own filesystem is unmounted"),
        Err(quota::QuotaError::InUse { overlay, .. }) => debug!(sc = %sc, %overlay, "the rootfs's own filesystem is still in use"),
        Err(error) => warn!(sc = %sc, %error, "could not unmount the rootfs's own filesystem; it stays mounted until the next try"),
    }
}

/// Unmounts the three mounts a completed publish made at `target`, innermost first, and removes
/// the target directory. One that is already gone (`EINVAL`: not a mount point) is skipped, so a
/// repeated or interrupted unpublish converges.
fn unmount_published(system: &dyn System, target: &Path) -> Result<(), UnpublishError> {
    for mount_point in [layout::target_control(target), layout::target_rootfs(target), target.to_path_buf()] {
        match system.unmount(&mount_point) {
            Ok(()) => {}
            Err(error) if matches!(error.raw_os_error(), Some(nix::libc::EINVAL | nix::libc::ENOENT)) => {}
            Err(source) => return Err(unmount_error(&mount_point, source)),
        }
    }
    remove_target_dir(target)
}

fn unmount_error(mount_point: &Path, source: io::Error) -> UnpublishError {
    if source.raw_os_error() == Some(nix::libc::EBUSY) {
        UnpublishError::Busy { target: mount_point.display().to_string(), source }
    } else {
        IoError { action: "unmounting", path: mount_point.display().to_string(), source }.into()
    }
}

/// Unmounts everything this plugin mounted at and under `target` (deepest first) and removes the
/// target directory. A target with no mount is fine; a foreign mount there is left alone.
fn unwind_target(system: &dyn System, target: &Path) -> Result<(), UnpublishError> {
    let host = host_mounts(system)?;
    if let Some(top) = mountinfo::mount_at(&host, target) {
        if !is_our_tmpfs(top) {
            return Err(UnpublishError::ForeignMount {
                target: target.display().to_string(),
                fs_type: top.fs_type.clone(),
                device: top.source.clone(),
            });
        }
        for entry in mountinfo::mounts_under(&host, target) {
            system.unmount(&entry.mount_point).map_err(|source| unmount_error(&entry.mount_point, source))?;
        }
    }
    remove_target_dir(target)
}

fn remove_target_dir(target: &Path) -> Result<(), UnpublishError> {
    match std::fs::remove_dir(target) {
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    const ID: &str = "8b7e0f6ad23b2c1bd3c0b1e6f84a3d7c1e3f0aa1c19f8c2de5d9a4b7f2c61e0a";
    const OTHER_ID: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    const POD_UID: &str = "6d1c2b7e-43a1-4e5e-9d63-0c5a3f1b2e7d";

    /// Processes and cgroup directories of a made-up node; counts full process scans.
    #[derive(Default)]
    struct FakeNode {
        cgroup_dirs: HashMap<PathBuf, String>,
        process_cgroups: Vec<(u32, String)>,
        scans: AtomicUsize,
    }

    fn not_part_of_this_fake() -> io::Error {
        io::Error::new(io::ErrorKind::Unsupported, "the pid lookup tests make no mounts")
    }

    impl System for FakeNode {
        fn mount_overlay(&self, _: &OverlayDirs<'_>, _: &Path) -> io::Result<()> {
            Err(not_part_of_this_fake())
        }
        fn mount_target_tmpfs(&self, _: &Path) -> io::Result<()> {
            Err(not_part_of_this_fake())
        }
        fn bind_mount_read_only(&self, _: &Path, _: &Path) -> io::Result<()> {
            Err(not_part_of_this_fake())
        }
        fn bind_mount_nosuid_nodev(&self, _: &Path) -> io::Result<()> {
            Err(not_part_of_this_fake())
        }
        fn unmount(&self, _: &Path) -> io::Result<()> {
            Err(not_part_of_this_fake())
        }
        fn own_mountinfo(&self) -> io::Result<String> {
            Err(not_part_of_this_fake())
        }
        fn process_mountinfo(&self, _: u32) -> io::Result<String> {
            Err(not_part_of_this_fake())
        }
        fn process_cgroups(&self) -> io::Result<Vec<(u32, String)>> {
            self.scans.fetch_add(1, Ordering::Relaxed);
            Ok(self.process_cgroups.clone())
        }
        fn process_cgroup(&self, pid: u32) -> io::Result<String> {
            self.process_cgroups
                .iter()
                .find(|(candidate, _)| *candidate == pid)
                .map(|(_, text)| text.clone())
                .ok_or_else(|| io::ErrorKind::NotFound.into())
        }
        fn first_cgroup_procs(&self, dirs: &[PathBuf]) -> io::Result<Option<(PathBuf, String)>> {
            Ok(dirs.iter().find_map(|dir| self.cgroup_dirs.get(dir).map(|procs| (dir.clone(), procs.clone()))))
        }
        fn process_root_identity(&self, _: u32) -> io::Result<FileIdentity> {
            Err(not_part_of_this_fake())
        }
        fn identity_of(&self, _: &Path) -> io::Result<FileIdentity> {
            Err(not_part_of_this_fake())
        }
    }

    fn kubelet_cgroups() -> KubeletCgroups {
        KubeletCgroups { hierarchies: vec![PathBuf::from("/sys/fs/cgroup/pids")], root: PathBuf::from("/") }
    }

    fn container_dir(container_id: &str) -> PathBuf {
        PathBuf::from(format!("/sys/fs/cgroup/pids/kubepods/besteffort/pod{POD_UID}/{container_id}"))
    }

    fn cgroup_file(container_id: &str) -> String {
        format!("12:pids:/kubepods/besteffort/pod{POD_UID}/{container_id}\n0::/\n")
    }

    #[test]
    fn a_known_pod_uid_finds_the_process_through_its_cgroup_directory_without_a_scan() {
        let node = FakeNode {
            cgroup_dirs: HashMap::from([(container_dir(ID), "17\n18\n".to_owned())]),
            process_cgroups: vec![(17, cgroup_file(ID)), (18, cgroup_file(ID))],
            ..FakeNode::default()
        };
        assert_eq!(find_provider_pid(&node, &kubelet_cgroups(), ID, Some(POD_UID)).expect("lookup"), Some(17));
        assert_eq!(node.scans.load(Ordering::Relaxed), 0, "no process scan");
    }

    #[test]
    fn a_listed_pid_that_is_not_the_containers_is_skipped() {
        // Pid 17 exited and was reused by a process of another container.
        let node = FakeNode {
            cgroup_dirs: HashMap::from([(container_dir(ID), "17\n18\n".to_owned())]),
            process_cgroups: vec![(17, cgroup_file(OTHER_ID)), (18, cgroup_file(ID))],
            ..FakeNode::default()
        };
        assert_eq!(find_provider_pid(&node, &kubelet_cgroups(), ID, Some(POD_UID)).expect("lookup"), Some(18));
        assert_eq!(node.scans.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn an_unknown_layout_falls_back_to_scanning_every_process() {
        let elsewhere = "5:pids:/custom-runtime/8b7e0f6ad23b2c1bd3c0b1e6f84a3d7c1e3f0aa1c19f8c2de5d9a4b7f2c61e0a\n";
        let node = FakeNode { process_cgroups: vec![(1, "0::/\n".to_owned()), (42, elsewhere.to_owned())], ..FakeNode::default() };
        assert_eq!(find_provider_pid(&node, &kubelet_cgroups(), ID, Some(POD_UID)).expect("lookup"), Some(42));
        assert_eq!(node.scans.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_cgroup_directory_without_the_containers_process_falls_back_to_the_scan() {
        let node = FakeNode {
            cgroup_dirs: HashMap::from([(container_dir(ID), "17\n".to_owned())]),
            process_cgroups: vec![(17, cgroup_file(OTHER_ID)), (42, cgroup_file(ID))],
            ..FakeNode::default()
        };
        assert_eq!(find_provider_pid(&node, &kubelet_cgroups(), ID, Some(POD_UID)).expect("lookup"), Some(42));
        assert_eq!(node.scans.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn without_a_pod_uid_every_process_is_scanned() {
        let node = FakeNode {
            cgroup_dirs: HashMap::from([(container_dir(ID), "17\n".to_owned())]),
            process_cgroups: vec![(17, cgroup_file(ID))],
            ..FakeNode::default()
        };
        assert_eq!(find_provider_pid(&node, &kubelet_cgroups(), ID, None).expect("lookup"), Some(17));
        assert_eq!(node.scans.load(Ordering::Relaxed), 1);
    }

    /// A cluster whose provider never runs (or is stuck); counts the questions.
    struct WaitingCluster {
        answer: Provider,
        asked: AtomicUsize,
    }

    impl ClusterView for WaitingCluster {
        async fn authorize_consumer(&self, _: &crate::validate::PodRef, _: &str) -> Result<Consumer, ClusterError> {
            Err(ClusterError::Denied("not part of this fake".into()))
        }
        async fn provider(&self, _: &Consumer) -> Result<Provider, ClusterError> {
            self.asked.fetch_add(1, Ordering::Relaxed);
            Ok(self.answer.clone())
        }
    }

    fn waiting_core(answer: Provider, wait: Duration) -> NodeCore<WaitingCluster, FakeNode> {
        let settings = NodeSettings {
            data_root: DataRoot::new("/nonexistent/data-root"),
            kubelet_dir: PathBuf::from("/nonexistent/kubelet"),
            provider_wait: wait,
            provider_poll: Duration::from_millis(10),
            kubelet_cgroups: kubelet_cgroups(),
            rootfs: rootfs_settings(),
            images: ImageConfigReader::new(crate::cri::RuntimeEndpoint::Socket(PathBuf::from("/nonexistent/runtime.sock"))),
        };
        NodeCore::new(WaitingCluster { answer, asked: AtomicUsize::new(0) }, FakeNode::default(), settings)
    }

    fn consumer() -> Consumer {
        Consumer {
            sc: ScKey { namespace: "team-a".into(), name: "dev".into(), uid: POD_UID.into() },
            instance_uid: POD_UID.into(),
            rootfs_size_bytes: None,
        }
    }

    fn rootfs_settings() -> RootfsSettings {
        RootfsSettings {
            tools: Err("not part of this fake".into()),
            default_size: quota::parse_size("10Gi").expect("size"),
            max_size: quota::parse_size("100Gi").expect("size"),
        }
    }

    #[test]
    fn the_rootfs_size_is_the_instances_else_the_default_never_above_the_nodes_maximum() {
        let settings = rootfs_settings();
        let sized = |bytes: Option<u64>| rootfs_size(&settings, &Consumer { rootfs_size_bytes: bytes, ..consumer() });
        assert_eq!(sized(None).expect("default").to_string(), "10Gi");
        assert_eq!(sized(Some(20 << 30)).expect("the operator's").to_string(), "20Gi");
        let too_large = sized(Some(200 << 30)).expect_err("above the maximum").to_string();
        assert!(too_large.contains("200Gi is more than this node's maximum of 100Gi (the node plugin's --max-rootfs-size)"), "{too_large}");
        let too_small = sized(Some(1 << 20)).expect_err("below the minimum").to_string();
        assert!(too_small.contains("below the minimum of 64Mi"), "{too_small}");
        assert!(too_small.starts_with("the rootfs size of StoppableContainer team-a/dev"), "{too_small}");
    }

    #[tokio::test]
    async fn a_provider_that_never_starts_is_asked_about_a_bounded_number_of_times() {
        let core = waiting_core(Provider::NotReady { reason: "ContainerCreating".into() }, Duration::from_millis(700));
        let error = core.wait_for_provider(&consumer()).await.err().expect("times out");
        assert!(error.to_string().contains("is not ready after waiting"), "{error}");
        assert!(error.to_string().contains("ContainerCreating"), "{error}");
        // 10, 20, 40, ... ms: about 7 questions in 700 ms, where a fixed 10 ms poll asks 70 times.
        let asked = core.cluster.asked.load(Ordering::Relaxed);
        assert!((5..=9).contains(&asked), "asked {asked} times");
    }

    #[tokio::test]
    async fn a_stuck_provider_ends_the_wait_at_once() {
        let core = waiting_core(Provider::Stuck { reason: "provider container is ImagePullBackOff".into() }, Duration::from_secs(60));
        let started = Instant::now();
        let error = core.wait_for_provider(&consumer()).await.err().expect("fails");
        assert!(matches!(error, PublishError::ProviderStuck { .. }), "{error}");
        assert!(error.to_string().contains("ImagePullBackOff"), "{error}");
        assert_eq!(core.cluster.asked.load(Ordering::Relaxed), 1);
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn the_poll_delay_doubles_up_to_its_bound() {
        let mut delay = Duration::from_millis(100);
        let delays: Vec<u128> = (0..7)
            .map(|_| {
                delay = next_poll_delay(delay);
                delay.as_millis()
            })
            .collect();
        assert_eq!(delays, vec![200, 400, 800, 1600, 2000, 2000, 2000]);
    }

    #[test]
    fn a_container_with_no_process_anywhere_is_not_found() {
        let node = FakeNode { process_cgroups: vec![(17, cgroup_file(OTHER_ID))], ..FakeNode::default() };
        assert_eq!(find_provider_pid(&node, &kubelet_cgroups(), ID, Some(POD_UID)).expect("lookup"), None);
    }

    const DATA: &str = "/var/lib/stoppablecontainer";
    const KUBELET: &str = "/var/lib/kubelet";
    const SC_UID: &str = "0f4c1a52-9d5e-4b7a-8c3e-2a6b5d7e9f10";

    fn target() -> PathBuf {
        PathBuf::from(format!("{KUBELET}/pods/{POD_UID}/volumes/kubernetes.io~csi/sc-rootfs/mount"))
    }

    /// The three mounts of a complete publication of volume `csi-1` of `ns/dev`, as mountinfo
    /// shows them (the data root on the root filesystem, so the control bind's root is its path).
    fn published(overlay_options: &str) -> Vec<MountEntry> {
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
    fn a_complete_publication_is_read_back_from_its_mounts() {
        let host = published("rw,relatime");
        let data = DataRoot::new(DATA);
        let mounts = published_mounts(&host, &target()).expect("complete");
        let record = record_from_mounts(&mounts, &target(), &data, Path::new(KUBELET)).expect("recognised");
        assert_eq!(
            record,
            Record {
                volume_id: "csi-1".into(),
                target_path: target(),
                pod: PodRef { namespace: "ns".into(), name: "dev".into(), uid: POD_UID.into() },
                sc: ScKey { namespace: "ns".into(), name: "dev".into(), uid: SC_UID.into() },
                lower_dir: "/run/containerd/x/rootfs".into(),
            }
        );
        let sc = record.sc.clone();
        assert_eq!(check_published_shape(&host, &target(), &data.upper_dir(&sc)), Ok(()));
        // Another data root or kubelet dir (the flags changed since): live, but not recognised.
        assert_eq!(record_from_mounts(&mounts, &target(), &DataRoot::new("/srv/sc"), Path::new(KUBELET)), None);
        assert_eq!(record_from_mounts(&mounts, &target(), &data, Path::new("/srv/kubelet")), None);
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
            check_published_shape(&published("rw"), &target(), &other_upper).err().as_deref(),
            Some("the rootfs mount is not this StoppableContainer's overlay")
        );
    }

    #[test]
    fn containers_are_sealed_once_and_never_over_other_mounts() {
        let dir = Path::new("/var/lib/stoppablecontainer/containers");
        let parse = |text: &str| mountinfo::parse(text).expect("parses");
        assert_eq!(containers_seal(&parse("1 0 254:0 / / rw - ext4 /dev/vda rw\n"), dir), Seal::Mount);
        let sealed = format!("1 0 254:0 / / rw - ext4 /dev/vda rw\n2 1 254:0 {0} {0} rw,nosuid,nodev - ext4 /dev/vda rw\n", dir.display());
        assert_eq!(containers_seal(&parse(&sealed), dir), Seal::Sealed);
        let plain = format!("2 1 8:16 / {} rw - xfs /dev/sdb rw\n", dir.display());
        let Seal::Leave(reason) = containers_seal(&parse(&plain), dir) else { panic!("an admin's mount is left alone") };
        assert_eq!(reason, "a xfs mount from /dev/sdb is there without nosuid,nodev; mount it with both");
        let below = format!("2 1 7:0 / {}/ns/dev/uid rw - ext4 /dev/loop0 rw\n", dir.display());
        let Seal::Leave(reason) = containers_seal(&parse(&below), dir) else { panic!("a bind would hide what is below") };
        assert!(reason.ends_with("/ns/dev/uid is mounted below it and would be hidden"), "{reason}");
    }

    #[test]
    fn the_image_of_each_live_publication_is_known_by_sc_uid_until_it_is_unpublished() {
        let images = KnownImages::default();
        let (first, second) = (PathBuf::from("/kubelet/pods/a/volumes/x/mount"), PathBuf::from("/kubelet/pods/b/volumes/x/mount"));
        let sc = |uid: &str| ScKey { namespace: "team-a".into(), name: uid.into(), uid: uid.into() };
        let runs = PublishedImage::Runtime {
            image_ref: "sha256:1".into(),
            config: sc_api::image_config::ImageConfig {
                cmd: vec!["sh".into()],
                env: vec!["TOKEN=secret".into()],
                ..sc_api::image_config::ImageConfig::default()
            },
        };
        let unknown = PublishedImage::Unavailable { image_ref: "sha256:2".into(), reason: "no runtime socket".into() };
        images.remember(&first, &sc("uid-a"), &runs);
        images.remember(&second, &sc("uid-b"), &unknown);
        let known = images.by_sc_uid();
        assert_eq!(known.get("uid-a"), Some(&runs.summary()), "the summary: no environment");
        assert_eq!(known.get("uid-b").and_then(|summary| summary.unavailable.as_deref()), Some("no runtime socket"));
        images.forget(&first);
        assert_eq!(images.by_sc_uid().keys().map(String::as_str).collect::<Vec<_>>(), ["uid-b"]);
    }

    #[tokio::test]
    async fn published_usage_measures_each_live_publication_once_and_an_unlimited_one_has_no_figures() {
        let root = tempfile::tempdir().expect("tempdir");
        let data = DataRoot::new(root.path());
        let mut core = waiting_core(Provider::NotReady { reason: String::new() }, Duration::ZERO);
        core.settings.data_root = data.clone();
        let legacy = ScKey { namespace: "team-a".into(), name: "old".into(), uid: "uid-old".into() };
        let limited = ScKey { namespace: "team-a".into(), name: "new".into(), uid: "uid-new".into() };
        std::fs::create_dir_all(data.container_dir(&legacy).join("upper")).expect("a rootfs made before size limits");
        core.live.insert(data.upper_dir(&legacy), PathBuf::from("/kubelet/pods/a/volumes/x/mount"));
        core.live.insert(data.upper_dir(&limited), PathBuf::from("/kubelet/pods/b/volumes/x/mount"));
        core.live.insert(PathBuf::from("/elsewhere/upper"), PathBuf::from("/kubelet/pods/c/volumes/x/mount"));
        let measured = core.published_usage().await;
        let keys: Vec<&ScKey> = measured.iter().map(|(sc, _)| sc).collect();
        assert_eq!(keys, [&limited, &legacy], "sorted; an upper outside the data root names no SC");
        assert!(matches!(measured[1].1, Ok(None)), "no limit, no figures: {:?}", measured[1].1);
        // Its own filesystem is not mounted here: an error, never the figures of the disk below.
        assert!(matches!(measured[0].1, Err(quota::QuotaError::NotMounted { .. })), "{:?}", measured[0].1);
        core.live.remove_target(Path::new("/kubelet/pods/a/volumes/x/mount"));
        assert_eq!(core.published_usage().await.len(), 1, "an unpublished SC is not measured");
        core.publications_changed.notify_one();
        tokio::time::timeout(Duration::from_secs(5), core.publications_changed()).await.expect("a change wakes the usage reports");
    }
}
