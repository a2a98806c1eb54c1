//! The async side of the node plugin, which the RPCs call: authorise the consumer, look once
//! under the mount lock at what its target holds, wait for the provider without the lock, then
//! mount under it in a blocking task (the [`Mounter`], held once), serve the control socket and
//! write the image config file.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use sc_api::consts::PROVIDER_CONTAINER_NAME;
use sc_api::image_config::{ImageSummary, PublishedImage};
use tokio::sync::{Mutex, Notify};
use tracing::{debug, info, warn};

use super::claim::{ClaimLayer, expected_mount_points};
use super::error::{Context, IoError, PublishError, StatsError, UnpublishError, claim_of_sc};
use super::live::KnownImages;
use super::mounter::{Found, Mounter, PersistentLayer};
use super::provider::{ProviderContainer, next_poll_delay};
use super::{NodeSettings, VolumeStats, rootfs_size};
use crate::cluster::{BoundClaim, ClusterView, Consumer, Provider};
use crate::control::{ControlSettings, ControlSockets};
use crate::layout::{DataRoot, ScKey};
use crate::quota;
use crate::records::Record;
use crate::sys::System;
use crate::timing::millis;
use crate::validate::{PodRef, PublishRequest, UnpublishRequest};

/// How often a publish asks the container runtime for a provider container that is starting.
pub const RUNTIME_POLL: std::time::Duration = std::time::Duration::from_millis(50);

/// The node plugin's state: shared by every RPC.
pub struct NodeCore<C, S> {
    pub(super) cluster: C,
    pub(super) settings: NodeSettings,
    pub(super) mounter: Arc<Mounter<S>>,
    /// Serialises the check-then-mount phases of publishes and unpublishes: "at most one live
    /// overlay per upper" is read from the mount table and the live table, and must not race
    /// another mount.
    mount_lock: Mutex<()>,
    /// The control socket of every live publication, through which its consumer asks to have
    /// its rootfs prepared.
    controls: ControlSockets,
    /// Woken when a publish completes or an unpublish is done, so the usage reports follow at
    /// once (see [`crate::usage`]).
    pub(super) publications_changed: Notify,
    /// What each live publication's image config file says, for the usage reports.
    images: KnownImages,
}

impl<C: ClusterView, S: System> NodeCore<C, S> {
    pub fn new(cluster: C, system: S, settings: NodeSettings) -> Self {
        let mounter = Arc::new(Mounter::new(system, &settings, Box::new(quota::RealLoopSystem::default())));
        let controls = ControlSockets::new(settings.data_root.clone(), ControlSettings::default());
        Self {
            cluster,
            settings,
            mounter,
            mount_lock: Mutex::new(()),
            controls,
            publications_changed: Notify::new(),
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
        let sc = consumer.sc.clone();
        // A repeated publish is answered without waiting on the provider again.
        let found = {
            let _guard = self.mount_lock.lock().await;
            let found = self.mounter.inspect(request, &sc, consumer.claim.as_ref())?;
            if matches!(found, Found::Published { .. }) {
                // After a plugin restart the socket is served again by recovery; this covers a
                // socket that failed to open the first time.
                self.open_control(&request.volume_id, &request.pod)?;
            }
            found
        };
        if let Found::Published { .. } = found {
            return self.keep_image_config(request, &consumer).await;
        }
        let waiting = Instant::now();
        let (provider, layer) = match &consumer.claim {
            None => {
                let size = rootfs_size(&self.settings.rootfs, &consumer)?;
                (self.wait_for_provider(&consumer).await?, PersistentLayer::Node { size })
            }
            // Kubelet mounts the claim for the pod while this publish waits for the provider.
            Some(claim) => {
                let pod = format!("consumer pod {}/{}", request.pod.namespace, request.pod.name);
                let (provider, layer) =
                    tokio::try_join!(self.wait_for_provider(&consumer), self.wait_for_claim(&request.pod, &pod, &consumer.sc, claim))?;
                (provider, PersistentLayer::Claim(layer))
            }
        };
        let provider_wait = waiting.elapsed();
        // The runtime is asked while the overlay is mounted, without the mount lock: a publish
        // takes the longer of the two, and a slow runtime never holds up other publishes.
        let reading = Instant::now();
        let image_ref = provider.image_ref.clone();
        let image = async {
            let image = self.settings.images.read(&image_ref).await;
            (image, reading.elapsed())
        };
        let mount = async {
            let guard = self.mount_lock.lock().await;
            let (mounter, task_request, task_sc) = (Arc::clone(&self.mounter), request.clone(), sc.clone());
            let mounted = tokio::task::spawn_blocking(move || mounter.mount(&task_request, &task_sc, &provider, &layer)).await;
            (guard, mounted)
        };
        let ((image, image_read), (guard, mounted)) = tokio::join!(image, mount);
        let lower = mounted.map_err(|join| IoError::joining("joining the mount task for", "publish", join))??;
        self.open_control(&request.volume_id, &request.pod)?;
        drop(guard);
        log_image(&request.volume_id, &sc, &image);
        self.publish_image_config(request, &sc, &image)?;
        // The durations let an operator (and the cluster benchmark) see where a start's time goes.
        info!(
            volume_id = %request.volume_id,
            sc = %sc,
            target = %request.target_path.display(),
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
        self.mounter.write_image_config(&request.volume_id, image)?;
        self.images.remember(&request.target_path, sc, image);
        Ok(())
    }

    /// For a repeated publish of a live publication: keeps its image config file as it is, or
    /// writes it if it is missing (a publish whose write failed, a publication made by a release
    /// before image configs) or unreadable. Only a provider running now is asked about: a live
    /// consumer is never failed for an image config, and the next repeated publish tries again.
    async fn keep_image_config(&self, request: &PublishRequest, consumer: &Consumer) -> Result<(), PublishError> {
        match self.mounter.read_image_config(&request.volume_id) {
            Ok(Some(image)) => {
                self.images.remember(&request.target_path, &consumer.sc, &image);
                return Ok(());
            }
            Ok(None) => {}
            Err(error) => warn!(volume_id = %request.volume_id, %error, "the image config file is unreadable; writing it again"),
        }
        let image_ref = match self.cluster.provider(consumer).await {
            Ok(Provider::Running { image_ref, .. }) => image_ref,
            Ok(Provider::Starting { reason, .. } | Provider::NotReady { reason } | Provider::Stuck { reason }) => {
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
    fn open_control(&self, volume_id: &str, pod: &PodRef) -> Result<(), PublishError> {
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
        let (mounter, task_request) = (Arc::clone(&self.mounter), request.clone());
        tokio::task::spawn_blocking(move || mounter.unpublish(&task_request))
            .await
            .map_err(|join| IoError::joining("joining the unmount task for", "unpublish", join))??;
        self.images.forget(&request.target_path);
        self.publications_changed.notify_one();
        Ok(())
    }

    /// Unmounts the StoppableContainer's own filesystem if no overlay uses it (a stopped SC's,
    /// before its data is deleted). Call with the mount lock held.
    pub fn release_idle_filesystem(&self, sc: &ScKey) {
        self.mounter.release_idle_filesystem(sc);
    }

    /// Usage of the filesystem holding a published volume's upper layer.
    pub async fn stats(&self, volume_id: &str, volume_path: &Path) -> Result<VolumeStats, StatsError> {
        self.mounter.stats(volume_id, volume_path)
    }

    /// Finishes or undoes whatever a previous run of the plugin left half done (see
    /// [`Mounter::recover`]), then serves the control socket of every live publication again and
    /// reads its image config file. Returns how many publications are live.
    pub async fn recover(&self) -> Result<usize, IoError> {
        let _guard = self.mount_lock.lock().await;
        let recovered = self.mounter.recover()?;
        for volume_id in &recovered.unwound {
            self.controls.close(volume_id);
        }
        for record in &recovered.serve {
            self.reopen_control(record);
            self.recall_image(record);
        }
        Ok(recovered.live)
    }

    /// Reads a live publication's image config file again after a restart, for the usage
    /// reports. The file itself stays as the publish wrote it: the consumer reads it at each start.
    fn recall_image(&self, record: &Record) {
        match self.mounter.read_image_config(&record.volume_id) {
            Ok(Some(image)) => self.images.remember(&record.target_path, &record.sc, &image),
            Ok(None) => {
                debug!(volume_id = %record.volume_id, "the live publication has no image config file (published by an earlier release)")
            }
            Err(error) => {
                warn!(volume_id = %record.volume_id, %error, "the image config file of a live publication is unreadable; the next publish of the volume writes it again")
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
        self.mounter.is_data_in_use(sc)
    }

    /// Waits for the provider to run. The API server (the operator's record, the pod, kubelet's
    /// status) is asked again after a delay that doubles from `provider_poll` up to
    /// [`super::MAX_PROVIDER_POLL`]: a provider that never starts (a typo in the image) costs a
    /// handful of requests per minute per waiting publish, and a stuck one ends the wait at once.
    /// Once the operator's provider pod exists, the node's container runtime is asked every
    /// [`RUNTIME_POLL`] too: it runs the container a PLEG relist (up to a second) before kubelet
    /// reports it, and asking it costs the API server nothing.
    pub(super) async fn wait_for_provider(&self, consumer: &Consumer) -> Result<ProviderContainer, PublishError> {
        let started = tokio::time::Instant::now();
        let mut api_delay = self.settings.provider_poll;
        let mut next_api_look = started;
        let mut starting_pod: Option<String> = None;
        let mut reason = String::new();
        loop {
            let now = tokio::time::Instant::now();
            if now >= next_api_look {
                match self.cluster.provider(consumer).await? {
                    Provider::Running { container_id, pod_uid, image_ref } => {
                        return Ok(ProviderContainer { container_id, pod_uid, image_ref });
                    }
                    Provider::Stuck { reason } => return Err(PublishError::ProviderStuck { sc: consumer.sc.clone(), reason }),
                    Provider::Starting { pod_uid, reason: why } => (starting_pod, reason) = (Some(pod_uid), why),
                    Provider::NotReady { reason: why } => (starting_pod, reason) = (None, why),
                }
                next_api_look = tokio::time::Instant::now() + api_delay;
                api_delay = next_poll_delay(api_delay);
            }
            if let Some(pod_uid) = &starting_pod {
                match self.settings.runtime.running_container(pod_uid, PROVIDER_CONTAINER_NAME).await {
                    Ok(Some(container)) => {
                        debug!(sc = %consumer.sc, container_id = %container.container_id, waited_ms = millis(started.elapsed()), "the runtime runs the provider container before kubelet reports it");
                        return Ok(ProviderContainer {
                            container_id: container.container_id,
                            pod_uid: Some(pod_uid.clone()),
                            image_ref: container.image_ref,
                        });
                    }
                    Ok(None) => {}
                    // Kubelet's status still tells; the runtime is asked again at the next look.
                    Err(error) => debug!(sc = %consumer.sc, %error, "cannot ask the container runtime for the provider container"),
                }
            }
            let waited = started.elapsed();
            if waited >= self.settings.provider_wait {
                return Err(PublishError::ProviderNotReady { sc: consumer.sc.clone(), waited, reason });
            }
            let until_api = next_api_look.saturating_duration_since(tokio::time::Instant::now());
            let pause = if starting_pod.is_some() { until_api.min(RUNTIME_POLL) } else { until_api };
            tokio::time::sleep(pause.min(self.settings.provider_wait.saturating_sub(waited))).await;
        }
    }

    /// Waits, like [`Self::wait_for_provider`] and as long, for kubelet to mount `claim` (of the
    /// StoppableContainer `sc`) for `pod` (called `who` in the error): kubelet sets up a pod's
    /// volumes side by side, so this plugin's volume may be published first.
    pub(super) async fn wait_for_claim(&self, pod: &PodRef, who: &str, sc: &ScKey, claim: &BoundClaim) -> Result<ClaimLayer, PublishError> {
        let started = tokio::time::Instant::now();
        let mut delay = self.settings.provider_poll;
        loop {
            if let Some(layer) = self.mounter.find_claim(&pod.uid, claim)? {
                return Ok(layer);
            }
            let waited = started.elapsed();
            if waited >= self.settings.provider_wait {
                return Err(PublishError::ClaimNotMounted {
                    claim: claim_of_sc(sc, &claim.claim_name),
                    pod: who.to_owned(),
                    volume: claim.volume_name.clone(),
                    waited,
                    expected: expected_mount_points(&self.settings.kubelet_dir, &pod.uid, &claim.volume_name),
                });
            }
            tokio::time::sleep(delay.min(self.settings.provider_wait.saturating_sub(waited))).await;
            delay = next_poll_delay(delay);
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
        self.mounter.is_data_mounted(sc)
    }

    /// The StoppableContainers published on this node, each with what its own filesystem holds
    /// (`Ok(None)`: a rootfs made before size limits, which has none). Each is measured under the
    /// mount lock, taken once per SC: an unpublish cannot unmount the filesystem between the
    /// check that it is mounted and the `statvfs`, which would then measure the node's disk.
    pub async fn published_usage(&self) -> Vec<(ScKey, Result<Option<quota::RootfsUsage>, quota::QuotaError>)> {
        let scs = self.mounter.published_scs();
        let mut measured = Vec::with_capacity(scs.len());
        for sc in scs {
            let _guard = self.mount_lock.lock().await;
            // Unpublished since the list was taken: nothing to measure.
            if let Some(figures) = self.mounter.usage(&sc) {
                measured.push((sc, figures));
            }
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
