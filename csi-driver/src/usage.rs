//! Tells the operator what each StoppableContainer's own filesystem on this node holds, for the
//! SC's `status.rootfs` and `kubectl sc status`.
//!
//! The plugin never writes a StoppableContainer. Every round (`--rootfs-usage-interval-seconds`,
//! and right after a publish or an unpublish) it measures the filesystem of every SC published
//! here ([`NodeCore::published_usage`]) and keeps one entry per SC UID in this node's usage
//! ConfigMap in the release namespace ([`sc_api::node_report::usage_configmap_name`]). One merge
//! patch per round carries only what changed enough to matter ([`worth_sending`]: the figures,
//! or what the publication learnt of the provider's image, [`NodeCore::published_images`]) and
//! the removal of SCs no longer published here (a stopped SC's status keeps its last figures), so a node
//! whose SCs are quiet writes nothing. The operator takes an entry only from the ConfigMap of the
//! SC's data node, and only if it names that node and the SC.
//!
//! The plugin reads the ConfigMap back at its first round, after a failed write and every
//! [`REREAD_EVERY`] rounds (a ConfigMap deleted by hand is written again then); otherwise it goes
//! by what it wrote.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use sc_api::consts::{CSI_FIELD_MANAGER, NODE_USAGE_COMPONENT};
use sc_api::image_config::ImageSummary;
use sc_api::node_report::{UsageReport, is_valid_key, usage_configmap_name};
use tracing::{debug, info, warn};

use crate::cleanup::node_configmap;
use crate::cluster::ClusterView;
use crate::layout::ScKey;
use crate::node::NodeCore;
use crate::quota::RootfsUsage;
use crate::sys::System;

/// A byte figure is sent again when it moved by more than this, or by more than 1% of the size
/// when that is larger.
pub const MIN_BYTES_CHANGE: u64 = 1 << 20;

/// Every this many rounds the ConfigMap is read back instead of trusting what was written.
pub const REREAD_EVERY: u32 = 10;

/// How the usage reports run (from the plugin's flags).
#[derive(Clone, Debug)]
pub struct UsageSettings {
    /// This node's name: the entries name it.
    pub node_name: String,
    /// Where the usage ConfigMap lives (the release namespace).
    pub namespace: String,
    /// How often every published SC is measured.
    pub interval: Duration,
}

/// The interval from its flag: 0 turns the usage reports off.
pub fn usage_interval(seconds: u64) -> Option<Duration> {
    (seconds > 0).then(|| Duration::from_secs(seconds))
}

// ---------------------------------------------------------------------------------------------
// Decisions (pure)

/// The entry for `sc` as measured by `node` at `now`; `figures` is `None` for a rootfs made
/// before size limits (no limit, no figures); `image` is what its publication learnt of the
/// provider's image (`None` for a publication of an earlier release, which wrote no image config).
pub fn usage_entry(sc: &ScKey, node: &str, figures: Option<&RootfsUsage>, image: Option<ImageSummary>, now: Timestamp) -> UsageReport {
    UsageReport {
        namespace: sc.namespace.clone(),
        name: sc.name.clone(),
        node: node.to_owned(),
        limit_bytes: figures.map(|usage| usage.limit_bytes),
        used_bytes: figures.map(|usage| usage.bytes_used),
        available_bytes: figures.map(|usage| usage.bytes_available),
        inodes_used: figures.map(|usage| usage.inodes_used),
        inodes_total: figures.map(|usage| usage.inodes_total),
        observed_time: Time(now),
        image,
    }
}

/// Whether `measured` is worth writing over `written`: another SC, node, size or image, a figure
/// that appeared or went, a byte figure moved by more than 1% of the size (at least
/// [`MIN_BYTES_CHANGE`]), or the inodes in use moved by more than 1% of the inodes.
pub fn worth_sending(written: &UsageReport, measured: &UsageReport) -> bool {
    if !written.is_from(&measured.node, &measured.namespace, &measured.name)
        || written.limit_bytes != measured.limit_bytes
        || written.inodes_total != measured.inodes_total
        || written.image != measured.image
    {
        return true;
    }
    let bytes_step = MIN_BYTES_CHANGE.max(measured.limit_bytes.unwrap_or(0) / 100);
    let inodes_step = measured.inodes_total.unwrap_or(0) / 100;
    let moved = |old: Option<u64>, new: Option<u64>, step: u64| match (old, new) {
        (Some(old), Some(new)) => old.abs_diff(new) > step,
        (None, None) => false,
        _ => true,
    };
    moved(written.used_bytes, measured.used_bytes, bytes_step)
        || moved(written.available_bytes, measured.available_bytes, bytes_step)
        || moved(written.inodes_used, measured.inodes_used, inodes_step)
}

/// One round's merge patch of the ConfigMap's data, by UID: `Some(value)` to write, `None` to
/// remove. `written` is what the ConfigMap holds; `measured` has every SC published here, with
/// its entry, or `None` when it could not be measured this time (its entry stays as it is).
/// Entries of SCs not published here, and unreadable ones, are removed.
pub fn plan_round(
    written: &BTreeMap<String, String>,
    measured: &BTreeMap<String, Option<UsageReport>>,
) -> BTreeMap<String, Option<String>> {
    let mut patch = BTreeMap::new();
    for uid in written.keys().filter(|uid| !measured.contains_key(*uid)) {
        patch.insert(uid.clone(), None);
    }
    for (uid, entry) in measured {
        let Some(entry) = entry else { continue };
        let send = match written.get(uid).map(|value| UsageReport::parse(value)) {
            Some(Ok(old)) => worth_sending(&old, entry),
            Some(Err(_)) | None => true,
        };
        if send {
            patch.insert(uid.clone(), Some(entry.to_value()));
        }
    }
    patch
}

/// What the ConfigMap holds once `patch` is applied to `data`.
pub fn apply_patch(data: &mut BTreeMap<String, String>, patch: &BTreeMap<String, Option<String>>) {
    for (uid, value) in patch {
        match value {
            Some(value) => data.insert(uid.clone(), value.clone()),
            None => data.remove(uid),
        };
    }
}

/// The usage ConfigMap of `node`, created holding `data`.
pub fn usage_configmap(node: &str, namespace: &str, data: BTreeMap<String, String>) -> ConfigMap {
    node_configmap(usage_configmap_name(node), NODE_USAGE_COMPONENT, node, namespace, data)
}

// ---------------------------------------------------------------------------------------------
// The API server

fn is_status(error: &kube::Error, code: u16) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == code)
}

/// This node's usage ConfigMap.
struct UsageConfigMap {
    api: Api<ConfigMap>,
    namespace: String,
    name: String,
    node: String,
}

impl UsageConfigMap {
    fn new(client: Client, namespace: &str, node: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
            name: usage_configmap_name(node),
            node: node.to_owned(),
        }
    }

    /// The ConfigMap's data; empty when it does not exist.
    async fn fetch(&self) -> Result<BTreeMap<String, String>, kube::Error> {
        Ok(self.api.get_opt(&self.name).await?.and_then(|configmap| configmap.data).unwrap_or_default())
    }

    /// Sends one round's patch, creating the ConfigMap if it is missing. Returns what the
    /// ConfigMap holds afterwards when that is known without a read (a creation), else `None`.
    async fn write(&self, patch: &BTreeMap<String, Option<String>>) -> Result<Option<BTreeMap<String, String>>, kube::Error> {
        let body = serde_json::json!({ "data": patch });
        let params = PatchParams { field_manager: Some(CSI_FIELD_MANAGER.to_owned()), ..PatchParams::default() };
        match self.api.patch(&self.name, &params, &Patch::Merge(&body)).await {
            Ok(_) => return Ok(None),
            Err(error) if is_status(&error, 404) => {}
            Err(error) => return Err(error),
        }
        let data: BTreeMap<String, String> =
            patch.iter().filter_map(|(uid, value)| value.as_ref().map(|value| (uid.clone(), value.clone()))).collect();
        if data.is_empty() {
            // Only removals, from a ConfigMap that is gone: nothing to do.
            return Ok(Some(data));
        }
        let post = PostParams { field_manager: Some(CSI_FIELD_MANAGER.to_owned()), ..PostParams::default() };
        match self.api.create(&post, &usage_configmap(&self.node, &self.namespace, data.clone())).await {
            Ok(_) => Ok(Some(data)),
            // Created in between (by an earlier process of this node): patch it.
            Err(error) if is_status(&error, 409) => self.api.patch(&self.name, &params, &Patch::Merge(&body)).await.map(|_| None),
            Err(error) => Err(error),
        }
    }
}

fn now_timestamp() -> Timestamp {
    let seconds = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|since| since.as_secs()).unwrap_or(0);
    Timestamp::from_second(i64::try_from(seconds).unwrap_or(i64::MAX)).unwrap_or(Timestamp::UNIX_EPOCH)
}

// ---------------------------------------------------------------------------------------------
// The loop

/// Measures and reports forever: every `settings.interval`, and after each publish or unpublish.
pub async fn run<C: ClusterView, S: System>(client: Client, core: Arc<NodeCore<C, S>>, settings: UsageSettings) {
    let configmap = UsageConfigMap::new(client, &settings.namespace, &settings.node_name);
    info!(
        usage_configmap = %format!("{}/{}", settings.namespace, configmap.name),
        interval_seconds = settings.interval.as_secs(),
        "reporting the StoppableContainers' rootfs use"
    );
    let mut tick = tokio::time::interval(settings.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // What the ConfigMap holds, as far as this process knows; `None`: read it first.
    let mut written: Option<BTreeMap<String, String>> = None;
    let mut rounds: u32 = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = core.publications_changed() => {}
        }
        rounds = rounds.wrapping_add(1);
        if rounds.is_multiple_of(REREAD_EVERY) {
            written = None;
        }
        let mut known = match written.take() {
            Some(known) => known,
            None => match configmap.fetch().await {
                Ok(known) => known,
                Err(error) => {
                    warn!(%error, configmap = %configmap.name, "could not read this node's rootfs usage ConfigMap; trying again next round");
                    continue;
                }
            },
        };
        let measured = measure(&core, &settings.node_name).await;
        let patch = plan_round(&known, &measured);
        if patch.is_empty() {
            written = Some(known);
            continue;
        }
        match configmap.write(&patch).await {
            Ok(created) => {
                debug!(entries = patch.len(), "updated this node's rootfs usage ConfigMap");
                written = Some(created.unwrap_or_else(|| {
                    apply_patch(&mut known, &patch);
                    known
                }));
            }
            Err(error) => {
                warn!(%error, configmap = %configmap.name, "could not update this node's rootfs usage ConfigMap; trying again next round");
            }
        }
    }
}

/// Every SC published here, by UID, with its entry (`None`: it could not be measured now).
async fn measure<C: ClusterView, S: System>(core: &NodeCore<C, S>, node: &str) -> BTreeMap<String, Option<UsageReport>> {
    let now = now_timestamp();
    let mut measured = BTreeMap::new();
    let mut images = core.published_images();
    for (sc, figures) in core.published_usage().await {
        if !is_valid_key(&sc.uid) {
            debug!(sc = %sc, "the StoppableContainer's UID cannot be a ConfigMap key; its rootfs use is not reported");
            continue;
        }
        let entry = match figures {
            Ok(figures) => Some(usage_entry(&sc, node, figures.as_ref(), images.remove(&sc.uid), now)),
            Err(error) => {
                warn!(sc = %sc, %error, "could not measure the rootfs's own filesystem; its last reported use stays");
                None
            }
        };
        measured.insert(sc.uid.clone(), entry);
    }
    measured
}

#[cfg(test)]
mod tests {
    use sc_api::consts::NODE_REPORT_NODE_ANNOTATION;

    use super::*;
    use crate::cleanup::LABEL_COMPONENT;

    const GIB: u64 = 1 << 30;

    fn sc(uid: &str) -> ScKey {
        ScKey { namespace: "team-a".into(), name: "dev".into(), uid: uid.into() }
    }

    fn figures(limit: u64, used: u64, inodes_used: u64) -> RootfsUsage {
        RootfsUsage {
            limit_bytes: limit,
            bytes_total: limit - limit / 50,
            bytes_used: used,
            bytes_available: limit - limit / 50 - used,
            inodes_total: 655_360,
            inodes_used,
            inodes_free: 655_360 - inodes_used,
            node_bytes_allocated: used,
        }
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).expect("timestamp")
    }

    fn entry(used: u64, seconds: i64) -> UsageReport {
        usage_entry(&sc("uid-1"), "node-1", Some(&figures(10 * GIB, used, 1000)), None, at(seconds))
    }

    #[test]
    fn an_entry_carries_the_filesystems_figures_or_none_for_an_unlimited_rootfs() {
        let measured = entry(GIB, 100);
        assert_eq!((measured.namespace.as_str(), measured.name.as_str(), measured.node.as_str()), ("team-a", "dev", "node-1"));
        assert_eq!(measured.limit_bytes, Some(10 * GIB));
        assert_eq!(measured.used_bytes, Some(GIB));
        assert_eq!(measured.available_bytes, Some(10 * GIB - 10 * GIB / 50 - GIB));
        assert_eq!((measured.inodes_used, measured.inodes_total), (Some(1000), Some(655_360)));
        assert_eq!(measured.observed_time, Time(at(100)));
        let unlimited = usage_entry(&sc("uid-1"), "node-1", None, None, at(100));
        assert_eq!(
            (unlimited.limit_bytes, unlimited.used_bytes, unlimited.available_bytes, unlimited.inodes_used, unlimited.inodes_total),
            (None, None, None, None, None)
        );
    }

    #[test]
    fn only_a_change_of_more_than_one_percent_or_one_mebibyte_is_sent() {
        let written = entry(GIB, 100);
        // 1% of 10 GiB is about 102 MiB: the step for this size.
        let step = 10 * GIB / 100;
        assert!(!worth_sending(&written, &entry(GIB, 200)), "the same figures at a later time");
        assert!(!worth_sending(&written, &entry(GIB + step, 200)), "exactly the step");
        assert!(worth_sending(&written, &entry(GIB + step + 1, 200)));
        assert!(worth_sending(&written, &entry(GIB - step - 1, 200)), "freed space counts too");
        // A small filesystem: the step is 1 MiB.
        let small = |used| usage_entry(&sc("uid-1"), "node-1", Some(&figures(64 << 20, used, 10)), None, at(0));
        assert!(!worth_sending(&small(1 << 20), &small(2 << 20)));
        assert!(worth_sending(&small(1 << 20), &small((2 << 20) + 1)));
        // Inodes: 1% of them.
        let inodes = |count| usage_entry(&sc("uid-1"), "node-1", Some(&figures(10 * GIB, GIB, count)), None, at(0));
        assert!(!worth_sending(&inodes(1000), &inodes(1000 + 6553)));
        assert!(worth_sending(&inodes(1000), &inodes(1000 + 6554)));
        // Another size, node or SC, or a figure that appears: always.
        let grown = usage_entry(&sc("uid-1"), "node-1", Some(&figures(20 * GIB, GIB, 1000)), None, at(0));
        assert!(worth_sending(&written, &grown));
        assert!(worth_sending(&UsageReport { node: "node-2".into(), ..written.clone() }, &written), "another node wrote it");
        assert!(worth_sending(&UsageReport { name: "prod".into(), ..written.clone() }, &written));
        let unlimited = usage_entry(&sc("uid-1"), "node-1", None, None, at(0));
        assert!(worth_sending(&unlimited, &written));
        assert!(!worth_sending(&unlimited, &usage_entry(&sc("uid-1"), "node-1", None, None, at(500))));
    }

    #[test]
    fn a_new_or_changed_image_is_sent_even_when_the_figures_did_not_move() {
        let with = |image: Option<ImageSummary>, seconds| {
            usage_entry(&sc("uid-1"), "node-1", Some(&figures(10 * GIB, GIB, 1000)), image, at(seconds))
        };
        let runs = ImageSummary { image_ref: "sha256:1".into(), cmd: vec!["sh".into()], ..ImageSummary::default() };
        assert!(worth_sending(&with(None, 100), &with(Some(runs.clone()), 200)), "the image became known");
        assert!(!worth_sending(&with(Some(runs.clone()), 100), &with(Some(runs.clone()), 200)), "the same image");
        let unknown =
            ImageSummary { image_ref: "sha256:1".into(), unavailable: Some("no runtime socket".into()), ..ImageSummary::default() };
        assert!(worth_sending(&with(Some(runs), 100), &with(Some(unknown.clone()), 200)));
        let entry = with(Some(unknown), 100);
        assert_eq!(UsageReport::parse(&entry.to_value()), Ok(entry.clone()), "the image travels in the entry");
        assert!(entry.to_value().contains(r#""image":{"imageRef":"sha256:1","unavailable":"no runtime socket"}"#), "{}", entry.to_value());
    }

    #[test]
    fn a_round_writes_what_changed_and_removes_what_is_no_longer_published() {
        let written = BTreeMap::from([
            ("steady".to_owned(), entry(GIB, 100).to_value()),
            ("grown".to_owned(), entry(GIB, 100).to_value()),
            ("stopped".to_owned(), entry(GIB, 100).to_value()),
            ("unmeasured".to_owned(), entry(GIB, 100).to_value()),
            ("garbage".to_owned(), "12%".to_owned()),
        ]);
        let measured = BTreeMap::from([
            ("steady".to_owned(), Some(entry(GIB + 4096, 200))),
            ("grown".to_owned(), Some(entry(3 * GIB, 200))),
            ("unmeasured".to_owned(), None),
            ("garbage".to_owned(), Some(entry(GIB, 200))),
            ("new".to_owned(), Some(entry(0, 200))),
        ]);
        let patch = plan_round(&written, &measured);
        assert_eq!(
            patch,
            BTreeMap::from([
                ("garbage".to_owned(), Some(entry(GIB, 200).to_value())),
                ("grown".to_owned(), Some(entry(3 * GIB, 200).to_value())),
                ("new".to_owned(), Some(entry(0, 200).to_value())),
                ("stopped".to_owned(), None),
            ])
        );
        let mut after = written.clone();
        apply_patch(&mut after, &patch);
        assert_eq!(after.keys().map(String::as_str).collect::<Vec<_>>(), ["garbage", "grown", "new", "steady", "unmeasured"]);
        assert_eq!(after["steady"], entry(GIB, 100).to_value(), "a steady entry keeps its first time");
        // The next round with the same figures: nothing to write.
        assert!(plan_round(&after, &measured).is_empty(), "a steady node writes nothing");
        assert!(plan_round(&BTreeMap::new(), &BTreeMap::new()).is_empty());
    }

    #[test]
    fn the_usage_configmap_is_named_for_the_node_and_says_which_node_it_is() {
        let configmap = usage_configmap("node-1", "sc-system", BTreeMap::from([("uid-a".to_owned(), "{}".to_owned())]));
        assert_eq!(configmap.metadata.name.as_deref(), Some("sc-node-usage.node-1"));
        assert_eq!(configmap.metadata.namespace.as_deref(), Some("sc-system"));
        assert_eq!(
            configmap.metadata.annotations.as_ref().and_then(|a| a.get(NODE_REPORT_NODE_ANNOTATION)).map(String::as_str),
            Some("node-1")
        );
        assert_eq!(configmap.metadata.labels.as_ref().and_then(|l| l.get(LABEL_COMPONENT)).map(String::as_str), Some(NODE_USAGE_COMPONENT));
    }

    #[test]
    fn a_zero_interval_turns_the_reports_off() {
        assert_eq!(usage_interval(0), None);
        assert_eq!(usage_interval(60), Some(Duration::from_secs(60)));
    }
}
