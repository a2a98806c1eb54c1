//! Deletes StoppableContainers' persistent data on this node, and tells the operator.
//!
//! Data goes in two ways:
//!
//! - **An SC being deleted.** Once nothing mounts its `<ns>/<name>/<uid>` directory, the plugin
//!   deletes it and reports "node N deleted the data of UID X" in this node's report ConfigMap
//!   ([`sc_api::node_report`]); it also reports when the SC's status names this node and there is
//!   no data here. The operator releases the node-data finalizer on reading the report of the
//!   node `status.dataNodeName` names. The plugin never writes a StoppableContainer, so its
//!   ServiceAccount needs no write access to any tenant's workload.
//! - **Orphaned data** (finalizer removed by hand, a node that came back after its Node object
//!   was deleted): a periodic sweep deletes a directory whose SC UID is not in the SC cache, but
//!   only after the cache's first list, after it has been orphaned in every sweep of this process
//!   for the grace period, when a direct GET of `<ns>/<name>` answers 404 or another UID (a stale
//!   cache never deletes a live SC's data), and when nothing mounts it.
//!
//! A deletion holds the mount lock while it checks that nothing mounts the directory and moves it
//! into `containers/.deleting/`, so no publish mounts it in between; the (possibly long) removal
//! runs afterwards in a blocking thread. A removal cut short by a restart is finished by the next
//! sweep. Only SCs being deleted cost a look at the mount table.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Client, ResourceExt};
use sc_api::StoppableContainer;
use sc_api::consts::{CSI_FIELD_MANAGER, NODE_DATA_FINALIZER, NODE_REPORT_COMPONENT, NODE_REPORT_NODE_ANNOTATION};
use sc_api::node_report::{DataReport, Outcome, is_valid_key, report_configmap_name};
use tracing::{info, warn};

use crate::cluster::ClusterView;
use crate::layout::{DataRoot, ScKey};
use crate::node::NodeCore;
use crate::sys::System;

mod disk;
pub use disk::*;

/// How often deleting StoppableContainers are looked at again when nothing changed (their data
/// may have been in use the last time, or a report may have failed).
const RESYNC: Duration = Duration::from_secs(10);

/// Report entries older than this are pruned, unless their SC still waits for its finalizer.
pub const REPORT_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// Directory in `containers/` into which data is moved to be removed. Namespaces are DNS labels,
/// so it can never be one.
pub const TRASH_DIR_NAME: &str = ".deleting";

/// How many times a report write is tried when it races another write (409) or a creation.
const REPORT_WRITE_ATTEMPTS: u32 = 4;

/// Well-known labels of the report ConfigMaps (and of the usage ConfigMaps, `crate::usage`).
pub(crate) const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
pub(crate) const LABEL_PART_OF: &str = "app.kubernetes.io/part-of";
pub(crate) const PART_OF_VALUE: &str = "stoppablecontainer";

/// How the cleanup runs (from the plugin's flags).
#[derive(Clone, Debug)]
pub struct CleanupSettings {
    /// This node's name: reports name it, and it is the data node some statuses name.
    pub node_name: String,
    /// Where the report ConfigMaps live (the release namespace).
    pub report_namespace: String,
    /// How often the orphan sweep and the report upkeep run.
    pub sweep_interval: Duration,
    /// How long data must be seen orphaned before it is deleted; `None` never deletes it.
    pub orphan_grace: Option<Duration>,
}

// ---------------------------------------------------------------------------------------------
// Decisions (pure)

/// The orphan grace from its flag: 0 turns the deletion of orphaned data off.
pub fn orphan_grace(seconds: u64) -> Option<Duration> {
    (seconds > 0).then(|| Duration::from_secs(seconds))
}

/// What this node knows about one StoppableContainer from the cache and its own disk.
#[derive(Clone, Copy, Debug)]
pub struct ScFacts<'a> {
    /// It has a deletionTimestamp.
    pub deleting: bool,
    /// It still carries the node-data finalizer.
    pub has_finalizer: bool,
    /// Its `<ns>/<name>/<uid>` directory exists on this node.
    pub data_here: bool,
    /// Its `status.dataNodeName`.
    pub status_node: Option<&'a str>,
    /// This process has already reported it (and the report was still there at the last look).
    pub reported: bool,
    /// It has `spec.storage`: its persistent layer is on its claim, and no node holds its data.
    pub on_claim: bool,
}

/// What to do for one StoppableContainer.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nothing to do here.
    Skip,
    /// Delete its data (once nothing mounts it), then report it if `then_report`.
    Delete { then_report: bool },
    /// Report that this node, which its status names, holds no data of it.
    ReportNoData,
}

/// Decides for one StoppableContainer. Data of an SC being deleted is deleted wherever it is, even
/// if its finalizer was removed by hand (a deletion is never undone); only the finalizer's holder
/// is reported, once, and only by a node that holds the data or that its status names.
///
/// An SC with `spec.storage` has no data on any node: nothing is reported for it (its claim goes
/// by its `whenDeleted`). Data found for it anyway is deleted like any other: `spec.storage` is
/// the tenant's to write, so it never keeps data from being deleted.
pub fn decide(facts: &ScFacts<'_>, this_node: &str) -> Decision {
    if !facts.deleting || (facts.on_claim && !facts.data_here) {
        return Decision::Skip;
    }
    let report = facts.has_finalizer && !facts.reported;
    if facts.data_here {
        Decision::Delete { then_report: report }
    } else if report && facts.status_node == Some(this_node) {
        Decision::ReportNoData
    } else {
        Decision::Skip
    }
}

/// Data directories whose SC UID is not live: candidates for the orphan sweep.
pub fn orphan_candidates(dirs: &[ScKey], live_uids: &HashSet<String>) -> Vec<ScKey> {
    dirs.iter().filter(|key| !live_uids.contains(&key.uid)).cloned().collect()
}

/// When each orphan candidate was first seen, by this process, in an unbroken run of sweeps.
#[derive(Debug, Default)]
pub struct OrphanClock {
    first_seen: HashMap<ScKey, Instant>,
}

impl OrphanClock {
    /// Records this sweep's candidates and returns those that have been candidates in every sweep
    /// for at least `grace`. A directory that is not a candidate this time starts again the next.
    pub fn observe(&mut self, candidates: &[ScKey], now: Instant, grace: Duration) -> Vec<ScKey> {
        let current: HashSet<&ScKey> = candidates.iter().collect();
        self.first_seen.retain(|key, _| current.contains(key));
        let mut due = Vec::new();
        for key in candidates {
            let first = *self.first_seen.entry(key.clone()).or_insert(now);
            if now.saturating_duration_since(first) >= grace {
                due.push(key.clone());
            }
        }
        due
    }

    /// Starts `key`'s clock again (it turned out to be live, or it is gone).
    pub fn forget(&mut self, key: &ScKey) {
        self.first_seen.remove(key);
    }

    pub fn tracked(&self) -> usize {
        self.first_seen.len()
    }
}

/// Whether a direct read of the SC `key.namespace/key.name` (its UID now, `None` for 404) proves
/// that `key`'s SC is gone: none by that name, or one with another UID (deleted and recreated).
pub fn confirmed_gone(key: &ScKey, current_uid: Option<&str>) -> bool {
    current_uid != Some(key.uid.as_str())
}

/// The report entries to prune: older than `max_age` or unreadable, and not of an SC that still
/// waits for its finalizer (`pending`).
pub fn expired_reports(data: &BTreeMap<String, String>, now: Timestamp, max_age: Duration, pending: &HashSet<String>) -> Vec<String> {
    let max_age = i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX);
    data.iter()
        .filter(|(uid, _)| !pending.contains(*uid))
        .filter(|(_, value)| match DataReport::parse(value) {
            Ok(report) => now.as_second().saturating_sub(report.time.0.as_second()) > max_age,
            Err(_) => true,
        })
        .map(|(uid, _)| uid.clone())
        .collect()
}

/// Whether `data` holds this node's report for `uid` (a report the operator accepts).
pub fn still_reported(data: &BTreeMap<String, String>, uid: &str, node: &str) -> bool {
    data.get(uid).and_then(|value| DataReport::parse(value).ok()).is_some_and(|report| report.node == node)
}

/// The report ConfigMap of `node`, created holding its first entry.
pub fn report_configmap(node: &str, namespace: &str, uid: &str, value: String) -> ConfigMap {
    node_configmap(report_configmap_name(node), NODE_REPORT_COMPONENT, node, namespace, BTreeMap::from([(uid.to_owned(), value)]))
}

/// A ConfigMap one node plugin writes in the release namespace (its data reports, its usage
/// figures): labelled with what it is, annotated with its node, holding `data`.
pub fn node_configmap(name: String, component: &str, node: &str, namespace: &str, data: BTreeMap<String, String>) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(namespace.to_owned()),
            labels: Some(BTreeMap::from([
                (LABEL_COMPONENT.to_owned(), component.to_owned()),
                (LABEL_PART_OF.to_owned(), PART_OF_VALUE.to_owned()),
            ])),
            annotations: Some(BTreeMap::from([(NODE_REPORT_NODE_ANNOTATION.to_owned(), node.to_owned())])),
            ..ObjectMeta::default()
        },
        data: Some(data),
        ..ConfigMap::default()
    }
}

// ---------------------------------------------------------------------------------------------
// The orphan sweep

/// The one question the orphan sweep asks the API server before deleting.
pub trait ScLookup: Send + Sync {
    /// The UID of the StoppableContainer `namespace/name` now; `None` when there is none.
    fn current_uid(&self, namespace: &str, name: &str) -> impl Future<Output = Result<Option<String>, kube::Error>> + Send;
}

/// [`ScLookup`] through the API server.
pub struct KubeScLookup {
    client: Client,
}

impl ScLookup for KubeScLookup {
    async fn current_uid(&self, namespace: &str, name: &str) -> Result<Option<String>, kube::Error> {
        let api: Api<StoppableContainer> = Api::namespaced(self.client.clone(), namespace);
        Ok(api.get_metadata_opt(name).await?.and_then(|sc| sc.uid()))
    }
}

/// Orphaned data this sweep deleted.
#[derive(Debug, PartialEq, Eq)]
pub struct OrphanRemoved {
    pub key: ScKey,
    pub path: PathBuf,
    pub bytes: u64,
}

/// One orphan sweep: finishes interrupted removals, then deletes data directories that are due
/// (see the module's documentation). `synced` says whether the SC cache has completed its first
/// list (`live_uids` is its every SC UID); before that nothing is tracked or deleted.
#[allow(clippy::too_many_arguments)]
pub async fn sweep_orphans<G: DataGuard + ?Sized, L: ScLookup>(
    guard: &G,
    lookup: &L,
    data: &DataRoot,
    synced: bool,
    live_uids: &HashSet<String>,
    clock: &mut OrphanClock,
    now: Instant,
    grace: Duration,
) -> Vec<OrphanRemoved> {
    let scan_data = data.clone();
    let found = match tokio::task::spawn_blocking(move || scan(&scan_data)).await {
        Ok(Ok(found)) => found,
        Ok(Err(error)) => {
            warn!(dir = %data.containers_dir().display(), %error, "could not list the rootfs data for the orphan sweep; trying again next time");
            return Vec::new();
        }
        Err(join) => {
            warn!(error = %join, "the orphan sweep's listing failed; trying again next time");
            return Vec::new();
        }
    };
    for leftover in found.trash {
        match remove_tree(leftover.clone()).await {
            Ok(bytes) => info!(path = %leftover.display(), bytes, "finished removing rootfs data an earlier run had started to remove"),
            Err(error) => warn!(%error, "could not finish removing rootfs data; trying again next time"),
        }
    }
    if !synced {
        return Vec::new();
    }
    let mut removed = Vec::new();
    for key in clock.observe(&orphan_candidates(&found.dirs, live_uids), now, grace) {
        let path = data.container_dir(&key);
        match lookup.current_uid(&key.namespace, &key.name).await {
            Err(error) => {
                warn!(sc = %key, %error, "could not confirm that the StoppableContainer of orphaned-looking data is gone; keeping the data");
                continue;
            }
            Ok(current) if !confirmed_gone(&key, current.as_deref()) => {
                info!(sc = %key, "the StoppableContainer of orphaned-looking data exists (the cache was behind); keeping the data");
                clock.forget(&key);
                continue;
            }
            Ok(_) => {}
        }
        match remove_data(guard, data, &key).await {
            Ok(Removal::Removed { bytes }) => {
                info!(sc = %key, path = %path.display(), bytes, "removed orphaned rootfs data: its StoppableContainer no longer exists");
                clock.forget(&key);
                removed.push(OrphanRemoved { key, path, bytes });
            }
            Ok(Removal::Absent) => clock.forget(&key),
            Ok(Removal::Mounted) => {
                info!(sc = %key, path = %path.display(), "orphaned rootfs data is still mounted; keeping it until it is not")
            }
            Err(error) => warn!(sc = %key, %error, "could not remove orphaned rootfs data; trying again next time"),
        }
    }
    removed
}

// ---------------------------------------------------------------------------------------------
// Reports

/// This node's report ConfigMap.
pub struct Reports {
    api: Api<ConfigMap>,
    namespace: String,
    name: String,
    node: String,
}

fn is_status(error: &kube::Error, code: u16) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == code)
}

impl Reports {
    pub fn new(client: Client, namespace: &str, node: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
            name: report_configmap_name(node),
            node: node.to_owned(),
        }
    }

    /// Writes one entry (a merge patch of that key alone), creating the ConfigMap if it is missing.
    pub async fn record(&self, uid: &str, report: &DataReport) -> Result<(), kube::Error> {
        let value = report.to_value();
        let params = PatchParams { field_manager: Some(CSI_FIELD_MANAGER.to_owned()), ..PatchParams::default() };
        let patch = serde_json::json!({ "data": { uid: &value } });
        let mut attempt = 1;
        loop {
            let conflict = match self.api.patch(&self.name, &params, &Patch::Merge(&patch)).await {
                Ok(_) => return Ok(()),
                Err(error) if is_status(&error, 404) => {
                    let post = PostParams { field_manager: Some(CSI_FIELD_MANAGER.to_owned()), ..PostParams::default() };
                    match self.api.create(&post, &report_configmap(&self.node, &self.namespace, uid, value.clone())).await {
                        Ok(_) => return Ok(()),
                        // Created in between: patch it.
                        Err(error) if is_status(&error, 409) => error,
                        Err(error) => return Err(error),
                    }
                }
                Err(error) if is_status(&error, 409) => error,
                Err(error) => return Err(error),
            };
            if attempt >= REPORT_WRITE_ATTEMPTS {
                return Err(conflict);
            }
            attempt += 1;
        }
    }

    /// The ConfigMap's data and resourceVersion; empty when it does not exist.
    pub async fn fetch(&self) -> Result<(BTreeMap<String, String>, Option<String>), kube::Error> {
        Ok(match self.api.get_opt(&self.name).await? {
            Some(configmap) => (configmap.data.clone().unwrap_or_default(), configmap.resource_version()),
            None => (BTreeMap::new(), None),
        })
    }

    /// Removes entries, if the ConfigMap is still at `resource_version`.
    pub async fn remove(&self, uids: &[String], resource_version: Option<String>) -> Result<(), kube::Error> {
        let data: serde_json::Map<String, serde_json::Value> = uids.iter().map(|uid| (uid.clone(), serde_json::Value::Null)).collect();
        let patch = serde_json::json!({ "metadata": { "resourceVersion": resource_version }, "data": data });
        let params = PatchParams { field_manager: Some(CSI_FIELD_MANAGER.to_owned()), ..PatchParams::default() };
        self.api.patch(&self.name, &params, &Patch::Merge(&patch)).await.map(|_| ())
    }
}

fn now_timestamp() -> Timestamp {
    let seconds = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|since| since.as_secs()).unwrap_or(0);
    Timestamp::from_second(i64::try_from(seconds).unwrap_or(i64::MAX)).unwrap_or(Timestamp::UNIX_EPOCH)
}

// ---------------------------------------------------------------------------------------------
// The loop

struct Cleaner<C, S> {
    core: Arc<NodeCore<C, S>>,
    lookup: KubeScLookup,
    reports: Reports,
    settings: CleanupSettings,
    /// UIDs whose report was written by this process (and still there at the last look).
    reported: HashSet<String>,
    /// Reports that could not be written yet, by UID: sent again as they were.
    unsent: HashMap<String, DataReport>,
    clock: OrphanClock,
}

/// Watches StoppableContainers forever: deletes the data of the ones being deleted, reports it,
/// and sweeps orphaned data.
pub async fn run<C: ClusterView, S: System>(client: Client, core: Arc<NodeCore<C, S>>, settings: CleanupSettings) {
    let api: Api<StoppableContainer> = Api::all(client.clone());
    let writer = reflector::store::Writer::default();
    let store = writer.as_reader();
    let stream =
        reflector(writer, watcher(api, watcher::Config::default())).default_backoff().touched_objects().filter_map(|event| async move {
            if let Err(error) = &event {
                warn!(%error, "watching StoppableContainers failed; retrying");
            }
            event.ok()
        });
    let mut stream = std::pin::pin!(stream);
    let mut resync = tokio::time::interval(RESYNC);
    let mut sweep = tokio::time::interval(settings.sweep_interval);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    info!(
        report_configmap = %format!("{}/{}", settings.report_namespace, report_configmap_name(&settings.node_name)),
        sweep_interval_seconds = settings.sweep_interval.as_secs(),
        orphan_grace_seconds = settings.orphan_grace.map(|grace| grace.as_secs()),
        "cleaning up deleted StoppableContainers' data"
    );
    let mut cleaner = Cleaner {
        core,
        lookup: KubeScLookup { client: client.clone() },
        reports: Reports::new(client, &settings.report_namespace, &settings.node_name),
        settings,
        reported: HashSet::new(),
        unsent: HashMap::new(),
        clock: OrphanClock::default(),
    };
    loop {
        tokio::select! {
            next = stream.next() => match next {
                Some(sc) => cleaner.handle(&sc).await,
                None => return,
            },
            _ = resync.tick() => {
                let state = store.state();
                cleaner.forget_gone(&state);
                for sc in state.iter().filter(|sc| sc.metadata.deletion_timestamp.is_some()) {
                    cleaner.handle(sc).await;
                }
            }
            _ = sweep.tick() => {
                // Ready once the first list is in; a later re-list swaps the cache only when it is
                // complete, so the cache never looks empty again.
                let synced = store.wait_until_ready().now_or_never().is_some_and(|ready| ready.is_ok());
                cleaner.sweep(&store.state(), synced).await;
            }
        }
    }
}

fn has_node_data_finalizer(sc: &StoppableContainer) -> bool {
    sc.finalizers().iter().any(|finalizer| finalizer == NODE_DATA_FINALIZER)
}

impl<C: ClusterView, S: System> Cleaner<C, S> {
    async fn handle(&mut self, sc: &StoppableContainer) {
        // Only SCs being deleted cost anything: a stat, and a look at the mount table when there is data.
        if sc.metadata.deletion_timestamp.is_none() {
            return;
        }
        let (Some(namespace), Some(uid)) = (sc.namespace(), sc.uid()) else { return };
        let key = ScKey { namespace, name: sc.name_any(), uid };
        let data = self.core.data_root().clone();
        let dir = data.container_dir(&key);
        let facts = ScFacts {
            deleting: true,
            has_finalizer: has_node_data_finalizer(sc),
            data_here: dir.exists(),
            status_node: sc.status.as_ref().and_then(|status| status.data_node_name.as_deref()),
            reported: self.reported.contains(&key.uid),
            on_claim: sc.spec.storage.is_some(),
        };
        let status_names_us = facts.status_node == Some(self.settings.node_name.as_str());
        match decide(&facts, &self.settings.node_name) {
            Decision::Skip => {}
            Decision::Delete { then_report } => match remove_data(&*self.core, &data, &key).await {
                Ok(Removal::Mounted) => {
                    info!(sc = %key, "StoppableContainer is being deleted but its rootfs is still mounted; waiting for the consumer to stop")
                }
                Ok(Removal::Removed { bytes }) => {
                    info!(sc = %key, path = %dir.display(), bytes, "deleted the rootfs data");
                    if then_report {
                        self.report(&key, Outcome::Deleted, Some(bytes)).await;
                    }
                }
                Ok(Removal::Absent) if then_report && status_names_us => self.report(&key, Outcome::NoData, None).await,
                Ok(Removal::Absent) => {}
                Err(error) => warn!(sc = %key, %error, "could not delete the rootfs data; will retry"),
            },
            Decision::ReportNoData => self.report(&key, Outcome::NoData, None).await,
        }
    }

    /// Writes `key`'s report (or the one that could not be written before).
    async fn report(&mut self, key: &ScKey, outcome: Outcome, bytes: Option<u64>) {
        if !is_valid_key(&key.uid) {
            warn!(sc = %key, "the StoppableContainer's UID cannot be a ConfigMap key; its data deletion cannot be reported");
            return;
        }
        let report = self.unsent.remove(&key.uid).unwrap_or_else(|| DataReport {
            namespace: key.namespace.clone(),
            name: key.name.clone(),
            node: self.settings.node_name.clone(),
            time: Time(now_timestamp()),
            outcome,
            bytes,
        });
        match self.reports.record(&key.uid, &report).await {
            Ok(()) => {
                info!(sc = %key, outcome = ?report.outcome, "reported the rootfs data deleted; the operator releases the node-data finalizer");
                self.reported.insert(key.uid.clone());
            }
            Err(error) => {
                warn!(sc = %key, %error, "could not report the rootfs data deleted (the SC's deletion waits for it); will retry");
                self.unsent.insert(key.uid.clone(), report);
            }
        }
    }

    /// Drops what is remembered about SCs that are gone from the cache.
    fn forget_gone(&mut self, state: &[Arc<StoppableContainer>]) {
        let uids: HashSet<String> = state.iter().filter_map(|sc| sc.uid()).collect();
        self.reported.retain(|uid| uids.contains(uid));
        self.unsent.retain(|uid, _| uids.contains(uid));
    }

    async fn sweep(&mut self, state: &[Arc<StoppableContainer>], synced: bool) {
        let data = self.core.data_root().clone();
        let live: HashSet<String> = state.iter().filter_map(|sc| sc.uid()).collect();
        if let Some(grace) = self.settings.orphan_grace {
            let removed = sweep_orphans(&*self.core, &self.lookup, &data, synced, &live, &mut self.clock, Instant::now(), grace).await;
            for orphan in removed {
                self.report(&orphan.key, Outcome::Orphan, Some(orphan.bytes)).await;
            }
        } else {
            // Still finish removals an earlier run started.
            sweep_orphans(&*self.core, &self.lookup, &data, false, &live, &mut self.clock, Instant::now(), Duration::MAX).await;
        }
        self.upkeep_reports(state).await;
    }

    /// Prunes old entries, and forgets reports that are no longer there so they are written again.
    async fn upkeep_reports(&mut self, state: &[Arc<StoppableContainer>]) {
        let (data, resource_version) = match self.reports.fetch().await {
            Ok(found) => found,
            Err(error) => {
                warn!(%error, "could not read this node's report ConfigMap; trying again next time");
                return;
            }
        };
        let node = self.settings.node_name.clone();
        self.reported.retain(|uid| still_reported(&data, uid, &node));
        let pending: HashSet<String> = state
            .iter()
            .filter(|sc| sc.metadata.deletion_timestamp.is_some() && has_node_data_finalizer(sc))
            .filter_map(|sc| sc.uid())
            .collect();
        let expired = expired_reports(&data, now_timestamp(), REPORT_MAX_AGE, &pending);
        if expired.is_empty() {
            return;
        }
        match self.reports.remove(&expired, resource_version).await {
            Ok(()) => info!(entries = expired.len(), "pruned old entries of this node's report ConfigMap"),
            Err(error) => warn!(%error, "could not prune this node's report ConfigMap; trying again next time"),
        }
    }
}

#[cfg(test)]
mod tests;
