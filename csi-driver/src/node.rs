//! The node plugin's work, independent of gRPC: publish (authorise, find the provider's root
//! filesystem, mount the overlay), unpublish, volume stats and start-up recovery.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use tracing::{debug, info, warn};

use crate::cgroup::{self, KubeletCgroups};
use crate::cluster::{ClusterError, ClusterView, Consumer, Provider};
use crate::control::{ControlSettings, ControlSockets};
use crate::layout::{self, DataRoot, ScKey, TARGET_TMPFS_SOURCE};
use crate::mountinfo::{self, MountEntry};
use crate::records::{Record, Records};
use crate::sys::{FileIdentity, OverlayDirs, System};
use crate::validate::{PublishRequest, UnpublishRequest};

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
    VolumeConflict { volume_id: String, existing: String, existing_sc: ScKey, requested: String },
    #[error("target {target} already has a mount this plugin did not make ({fs_type} from {device}); refusing to mount over it")]
    ForeignMount { target: String, fs_type: String, device: String },
    #[error(
        "the rootfs of StoppableContainer {sc} is already mounted at {mounted_at}: only one consumer may use it at a time; stop the other consumer pod first"
    )]
    UpperInUse { sc: ScKey, mounted_at: String },
    #[error("the overlay at {0} came up read-only; check the data root's filesystem (overlayfs needs a writable upper on ext4/xfs/btrfs)")]
    ReadOnly(String),
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
}

impl<C: ClusterView, S: System> NodeCore<C, S> {
    pub fn new(cluster: C, system: S, settings: NodeSettings) -> Self {
        let records = Records::new(settings.data_root.clone());
        let controls = ControlSockets::new(settings.data_root.clone(), ControlSettings::default());
        let providers = Arc::new(ProviderCache::new(settings.kubelet_cgroups.clone()));
        Self { cluster, system: Arc::new(system), settings, records, mount_lock: Mutex::new(()), controls, providers, live: Arc::default() }
    }

    pub fn data_root(&self) -> &DataRoot {
        &self.settings.data_root
    }

    /// Publishes a consumer's rootfs at the request's target.
    pub async fn publish(&self, request: &PublishRequest) -> Result<(), PublishError> {
        let started = Instant::now();
        let consumer = self.cluster.authorize_consumer(&request.pod, &request.sc_name).await?;
        // Answer a repeated publish without waiting on the provider again.
        {
            let _guard = self.mount_lock.lock().await;
            if self.already_published(request, &consumer.sc)? {
                // After a plugin restart the socket is served again by recovery; this covers a
                // socket that failed to open the first time.
                return self.open_control(&request.volume_id, &request.pod);
            }
        }
        let waiting = Instant::now();
        let provider = self.wait_for_provider(&consumer).await?;
        let provider_wait = waiting.elapsed();
        let _guard = self.mount_lock.lock().await;
        let (system, records, data) = (Arc::clone(&self.system), self.records.clone(), self.settings.data_root.clone());
        let (providers, live) = (Arc::clone(&self.providers), Arc::clone(&self.live));
        let request = request.clone();
        let (volume_id, pod, target) = (request.volume_id.clone(), request.pod.clone(), request.target_path.clone());
        let sc = consumer.sc.clone();
        let lower = tokio::task::spawn_blocking(move || {
            let context = MountContext { system: &*system, records: &records, data: &data, providers: &providers, live: &live };
            mount_publication(&context, &request, &consumer.sc, &provider)
        })
        .await
        .map_err(|join| IoError {
            action: "joining the mount task for",
            path: "publish".into(),
            source: io::Error::other(join),
        })??;
        self.open_control(&volume_id, &pod)?;
        // The durations let an operator (and the cluster benchmark) see where a start's time goes.
        info!(
            volume_id = %volume_id,
            sc = %sc,
            target = %target.display(),
            lower = %lower.display(),
            elapsed_ms = millis(started.elapsed()),
            provider_wait_ms = millis(provider_wait),
            "published"
        );
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
        tokio::task::spawn_blocking(move || unmount_publication(&*system, &records, &request)).await.map_err(|join| IoError {
            action: "joining the unmount task for",
            path: "unpublish".into(),
            source: io::Error::other(join),
        })??;
        self.controls.remove_dir(&volume_id);
        self.live.remove_target(&target);
        Ok(())
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

    /// Finishes or undoes whatever a previous run of the plugin left half done, from the records.
    /// Returns how many publications are live.
    pub async fn recover(&self) -> Result<usize, IoError> {
        let _guard = self.mount_lock.lock().await;
        let mut live = 0;
        for entry in self.records.all().context("listing", &self.settings.data_root.records_dir())? {
            let record = match entry {
                Ok(record) => record,
                Err((path, error)) => {
                    warn!(path = %path.display(), %error, "unreadable publication record left in place; inspect and remove it by hand");
                    continue;
                }
            };
            let host = self.host_mounts()?;
            match check_published_shape(&host, &record.target_path, &self.settings.data_root.upper_dir(&record.sc)) {
                Ok(()) => {
                    self.reopen_control(&record);
                    self.live.insert(self.settings.data_root.upper_dir(&record.sc), record.target_path.clone());
                    live += 1;
                }
                Err(problem) => {
                    info!(volume_id = %record.volume_id, %problem, "cleaning up a broken or vanished publication");
                    if let Err(error) = unwind_target(&*self.system, &record.target_path) {
                        warn!(volume_id = %record.volume_id, %error, "could not clean up; keeping its record for the next attempt");
                        continue;
                    }
                    self.records.remove(&record.volume_id).context("removing the record of", Path::new(&record.volume_id))?;
                    self.controls.close(&record.volume_id);
                    self.controls.remove_dir(&record.volume_id);
                }
            }
        }
        // Mounts of this plugin's kind with no record: a publish killed before it recorded itself.
        let recorded = self.live.targets();
        let host = self.host_mounts()?;
        let orphans: Vec<PathBuf> = host
            .iter()
            .filter(|entry| {
                is_our_tmpfs(entry)
                    && entry.mount_point.starts_with(self.settings.kubelet_dir.join("pods"))
                    && !recorded.contains(&entry.mount_point)
            })
            .map(|entry| entry.mount_point.clone())
            .collect();
        for target in orphans {
            info!(target = %target.display(), "unwinding a publish that was interrupted before it was recorded");
            if let Err(error) = unwind_target(&*self.system, &target) {
                warn!(target = %target.display(), %error, "could not unwind an interrupted publish");
            }
        }
        Ok(live)
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

    fn already_published(&self, request: &PublishRequest, sc: &ScKey) -> Result<bool, PublishError> {
        let Some(record) = self.records.load(&request.volume_id).context("reading the record of", Path::new(&request.volume_id))? else {
            return Ok(false);
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
                Provider::Running { container_id, pod_uid } => return Ok(ProviderContainer { container_id, pod_uid }),
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
            existing_sc: record.sc.clone(),
            requested: request.target_path.display().to_string(),
        });
    }
    Ok(())
}

/// Checks that `target` holds exactly what a publish puts there: our tmpfs, the overlay of
/// `upper` mounted read-write at `rootfs/`, and the control directory at `control/`.
fn check_published_shape(host: &[MountEntry], target: &Path, upper: &Path) -> Result<(), String> {
    let tmpfs = mountinfo::mount_at(host, target).ok_or("the target is not mounted")?;
    if !is_our_tmpfs(tmpfs) {
        return Err(format!("the target holds a foreign {} mount", tmpfs.fs_type));
    }
    let rootfs = mountinfo::mount_at(host, &layout::target_rootfs(target)).ok_or("the overlay is not mounted")?;
    if rootfs.fs_type != "overlay" || rootfs.super_option("upperdir").map(Path::new) != Some(upper) {
        return Err("the rootfs mount is not this StoppableContainer's overlay".into());
    }
    if !rootfs.is_read_write() {
        return Err("the overlay is read-only".into());
    }
    mountinfo::mount_at(host, &layout::target_control(target)).ok_or("the control directory is not mounted")?;
    Ok(())
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
}

/// The running provider container a publish uses.
struct ProviderContainer {
    container_id: String,
    /// Its pod's UID, when the cluster view knows it.
    pod_uid: Option<String>,
}

/// Mounts one publication; returns the lower directory it uses.
fn mount_publication(
    context: &MountContext<'_>,
    request: &PublishRequest,
    sc: &ScKey,
    provider: &ProviderContainer,
) -> Result<PathBuf, PublishError> {
    let MountContext { system, records, data, providers, live } = *context;
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
            // Ours, unrecorded: a publish of this volume killed before it recorded itself.
            Some(existing) if is_our_tmpfs(existing) => unwind_before_publish(system, target)?,
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
    let mounted = mount_layers(system, data, request, sc, &lower)
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

fn mount_layers(system: &dyn System, data: &DataRoot, request: &PublishRequest, sc: &ScKey, lower: &Path) -> Result<(), PublishError> {
    let target = &request.target_path;
    let (upper, work, control) = (data.upper_dir(sc), data.work_dir(sc), data.control_dir(&request.volume_id));
    for dir in [&upper, &work, &control] {
        create_private_dir_all(dir)?;
    }
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
    system.bind_mount(&control, &control_target).context("bind-mounting the control directory at", &control_target)?;
    // statvfs answers "is it writable" for the new mount without reading the mount table.
    let flags = nix::sys::statvfs::statvfs(&rootfs).map_err(io::Error::from).context("statvfs of the new overlay at", &rootfs)?.flags();
    if flags.contains(nix::sys::statvfs::FsFlags::ST_RDONLY) {
        return Err(PublishError::ReadOnly(rootfs.display().to_string()));
    }
    Ok(())
}

/// Creates a directory and its parents, root-only where this call creates them (the rootfs root
/// directory's own mode comes from the upper dir, so that one is 0755).
fn create_private_dir_all(dir: &Path) -> Result<(), IoError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o755).create(dir).context("creating", dir)
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

fn unmount_publication(system: &dyn System, records: &Records, request: &UnpublishRequest) -> Result<(), UnpublishError> {
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
    Ok(())
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
        fn bind_mount(&self, _: &Path, _: &Path) -> io::Result<()> {
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
        };
        NodeCore::new(WaitingCluster { answer, asked: AtomicUsize::new(0) }, FakeNode::default(), settings)
    }

    fn consumer() -> Consumer {
        Consumer { sc: ScKey { namespace: "team-a".into(), name: "dev".into(), uid: POD_UID.into() }, instance_uid: POD_UID.into() }
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
}
