//! `status.rootfs`: what the persistent root filesystem holds against its size, from its data
//! node's usage ConfigMap ([`sc_api::node_report::usage_configmap_name`]).
//!
//! The node plugin measures every SC published on its node and keeps one entry per SC UID in
//! that ConfigMap; the operator reads it from a cache of the release namespace's ConfigMaps (the
//! watch that also carries the data reports), never with a request per reconcile. The trust rule
//! is data_report's: only the data node's word counts, so an entry is taken only from the
//! ConfigMap of the node `status.dataNodeName` names, and only if it names that node and this
//! SC's UID, namespace and name. The plugin removes an SC's entry when the SC is no longer
//! published there (stopped): the status then keeps the last figures, with the time they were
//! measured. [`rootfs_status`] is pure.
//!
//! The same entry carries what the plugin learnt of the published rootfs's image from the
//! container runtime ([`sc_api::image_config::ImageSummary`]), for `status.image`.
//! [`image_summary`] takes it under the same trust rule, and only while it is about the image the
//! provider container runs now (its `imageID` in the provider pod's status, which kubelet writes):
//! the summary of an image the template no longer names must not judge the one that replaced it.
//! The status keeps the last trusted summary while stopped (the plugin removes the entry), as
//! long as the kept provider still runs that image.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use sc_api::consts::{NODE_USAGE_NAME_PREFIX, PROVIDER_CONTAINER_NAME};
use sc_api::image_config::ImageSummary;
use sc_api::node_report::{UsageReport, find_usage};
use sc_api::{RootfsStatus, StoppableContainer};

use crate::status::image_summary as summary_of_status;

/// The `status.rootfs` of `sc`, whose data node is `data_node` (as this reconcile knows it),
/// from the data of that node's usage ConfigMap (`None` when there is none or it is not cached
/// yet). An entry counts only if it names the data node and this SC (its UID is the key) and is
/// not older than the figures the status has; otherwise the status keeps what it has.
pub fn rootfs_status(sc: &StoppableContainer, data_node: Option<&str>, usage: Option<&BTreeMap<String, String>>) -> Option<RootfsStatus> {
    let previous = sc.status.as_ref().and_then(|status| status.rootfs.clone());
    // No data node: the SC never started, and no node holds a root filesystem of it.
    data_node?;
    let Some(report) = trusted_entry(sc, data_node, usage) else { return previous };
    let older = previous.as_ref().and_then(|rootfs| rootfs.observed_time.as_ref()).is_some_and(|seen| report.observed_time.0 < seen.0);
    if older {
        return previous;
    }
    Some(from_report(&report))
}

/// This SC's entry in the data node's usage ConfigMap data, if it names that node and this SC's
/// UID (its key), namespace and name.
fn trusted_entry(sc: &StoppableContainer, data_node: Option<&str>, usage: Option<&BTreeMap<String, String>>) -> Option<UsageReport> {
    let (node, uid, namespace) = (data_node?, sc.uid()?, sc.namespace()?);
    let report = find_usage(usage?, &uid)?.ok()?;
    report.is_from(node, &namespace, &sc.name_any()).then_some(report)
}

/// The image the provider container runs, as kubelet reports it (`imageID`, set once the runtime
/// resolved the image; empty while it is being pulled or cannot be).
pub fn provider_image_id(provider: &Pod) -> Option<String> {
    let statuses = provider.status.as_ref()?.container_statuses.as_ref()?;
    let rootfs = statuses.iter().find(|status| status.name == PROVIDER_CONTAINER_NAME)?;
    Some(rootfs.image_id.clone()).filter(|id| !id.is_empty())
}

/// Whether two image references name the same image: equal once Docker's `docker-pullable://`
/// scheme (which dockershim puts before an `imageID`) is taken off.
fn same_image(reported: &str, running: &str) -> bool {
    let bare = |reference: &str| reference.strip_prefix("docker-pullable://").unwrap_or(reference).to_owned();
    !reported.is_empty() && bare(reported) == bare(running)
}

/// The config summary of the image the provider runs now (`provider_image_id`; None: not known,
/// so no summary is trusted): the data node's entry for this SC if it is about that image, else
/// the one the status already shows if that is. Any other is of an earlier image.
pub fn image_summary(
    sc: &StoppableContainer,
    data_node: Option<&str>,
    usage: Option<&BTreeMap<String, String>>,
    provider_image_id: Option<&str>,
) -> Option<ImageSummary> {
    let running = provider_image_id?;
    let reported = trusted_entry(sc, data_node, usage).and_then(|report| report.image);
    let shown = sc.status.as_ref().and_then(|status| status.image.as_ref()).map(summary_of_status);
    [reported, shown].into_iter().flatten().find(|summary| same_image(&summary.image_ref, running))
}

fn from_report(report: &UsageReport) -> RootfsStatus {
    RootfsStatus {
        size_bytes: report.limit_bytes,
        used_bytes: report.used_bytes,
        available_bytes: report.available_bytes,
        observed_time: Some(report.observed_time.clone()),
    }
}

/// Whether `configmap` is a node's usage ConfigMap (by its name).
pub fn is_usage_configmap(configmap: &ConfigMap) -> bool {
    configmap.name_any().starts_with(NODE_USAGE_NAME_PREFIX)
}

/// The SCs named by the entries of `after` that are new or differ from `before` (a usage
/// ConfigMap as last seen and now): only they have new figures to put in their status.
/// Unreadable entries name nobody.
pub fn changed_entries(before: Option<&BTreeMap<String, String>>, after: &BTreeMap<String, String>) -> Vec<ObjectRef<StoppableContainer>> {
    let mut woken: Vec<ObjectRef<StoppableContainer>> = after
        .iter()
        .filter(|(uid, value)| before.and_then(|before| before.get(*uid)) != Some(*value))
        .filter_map(|(_, value)| UsageReport::parse(value).ok())
        .map(|report| ObjectRef::new(&report.name).within(&report.namespace))
        .collect();
    woken.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    woken.dedup();
    woken
}

/// Remembers each usage ConfigMap's data as last seen by the watch, so that a change of one
/// entry wakes its SC alone, not every SC of the node.
#[derive(Debug, Default)]
pub struct UsageWakeups {
    seen: Mutex<HashMap<String, BTreeMap<String, String>>>,
}

impl UsageWakeups {
    /// The SCs to reconcile for this event of `configmap` (none for other ConfigMaps).
    pub fn woken(&self, configmap: &ConfigMap) -> Vec<ObjectRef<StoppableContainer>> {
        if !is_usage_configmap(configmap) {
            return Vec::new();
        }
        let data = configmap.data.clone().unwrap_or_default();
        let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let woken = changed_entries(seen.get(&configmap.name_any()), &data);
        seen.insert(configmap.name_any(), data);
        woken
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;
    use sc_api::node_report::usage_configmap_name;
    use sc_api::{StoppableContainerSpec, StoppableContainerStatus};

    use super::*;

    const UID: &str = "6d1c2b7e-43a1-4e5e-9d63-0c5a3f1b2e7d";
    const GIB: u64 = 1 << 30;

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).expect("timestamp"))
    }

    fn sc(rootfs: Option<RootfsStatus>) -> StoppableContainer {
        let mut sc = StoppableContainer::new("dev", StoppableContainerSpec::default());
        sc.metadata.namespace = Some("team-a".into());
        sc.metadata.uid = Some(UID.into());
        sc.status = Some(StoppableContainerStatus { data_node_name: Some("node-1".into()), rootfs, ..StoppableContainerStatus::default() });
        sc
    }

    fn usage(node: &str, namespace: &str, name: &str, used: u64, seconds: i64) -> UsageReport {
        UsageReport {
            namespace: namespace.into(),
            name: name.into(),
            node: node.into(),
            limit_bytes: Some(10 * GIB),
            used_bytes: Some(used),
            available_bytes: Some(9 * GIB - used),
            inodes_used: Some(100),
            inodes_total: Some(655_360),
            observed_time: at(seconds),
            image: None,
        }
    }

    fn data(entries: &[(&str, String)]) -> BTreeMap<String, String> {
        entries.iter().map(|(key, value)| (key.to_string(), value.clone())).collect()
    }

    fn status(used: u64, seconds: i64) -> RootfsStatus {
        RootfsStatus {
            size_bytes: Some(10 * GIB),
            used_bytes: Some(used),
            available_bytes: Some(9 * GIB - used),
            observed_time: Some(at(seconds)),
        }
    }

    #[test]
    fn the_data_nodes_entry_for_this_sc_becomes_the_status() {
        let entries = data(&[(UID, usage("node-1", "team-a", "dev", GIB, 100).to_value())]);
        assert_eq!(rootfs_status(&sc(None), Some("node-1"), Some(&entries)), Some(status(GIB, 100)));
        assert_eq!(rootfs_status(&sc(Some(status(GIB / 2, 50))), Some("node-1"), Some(&entries)), Some(status(GIB, 100)), "newer figures");
        // A rootfs made before size limits: no limit, no figures, only the time.
        let unlimited = UsageReport {
            limit_bytes: None,
            used_bytes: None,
            available_bytes: None,
            inodes_used: None,
            inodes_total: None,
            ..usage("node-1", "team-a", "dev", 0, 100)
        };
        let entries = data(&[(UID, unlimited.to_value())]);
        assert_eq!(
            rootfs_status(&sc(None), Some("node-1"), Some(&entries)),
            Some(RootfsStatus { observed_time: Some(at(100)), ..RootfsStatus::default() })
        );
    }

    #[test]
    fn only_the_data_nodes_word_counts_and_otherwise_the_status_keeps_its_figures() {
        let kept = Some(status(GIB / 2, 50));
        for (reason, entries) in [
            ("another node's entry", data(&[(UID, usage("node-2", "team-a", "dev", GIB, 100).to_value())])),
            ("another namespace", data(&[(UID, usage("node-1", "team-b", "dev", GIB, 100).to_value())])),
            ("another name", data(&[(UID, usage("node-1", "team-a", "prod", GIB, 100).to_value())])),
            ("another UID (a recreated SC)", data(&[("another-uid", usage("node-1", "team-a", "dev", GIB, 100).to_value())])),
            ("unreadable", data(&[(UID, "12%".into())])),
            ("older than the status", data(&[(UID, usage("node-1", "team-a", "dev", GIB, 40).to_value())])),
            ("removed: the SC stopped", BTreeMap::new()),
        ] {
            assert_eq!(rootfs_status(&sc(kept.clone()), Some("node-1"), Some(&entries)), kept, "{reason}");
        }
        assert_eq!(rootfs_status(&sc(kept.clone()), Some("node-1"), None), kept, "no ConfigMap (yet)");
        assert_eq!(rootfs_status(&sc(None), Some("node-1"), None), None);
        let entries = data(&[(UID, usage("node-1", "team-a", "dev", GIB, 100).to_value())]);
        assert_eq!(rootfs_status(&sc(None), None, Some(&entries)), None, "no data node: no root filesystem");
        // The entry is judged against the node this reconcile knows (the status's, or the one
        // just recorded), not against the ConfigMap it was found in.
        assert_eq!(rootfs_status(&sc(kept.clone()), Some("node-2"), Some(&entries)), kept);
    }

    fn configmap(name: &str, entries: BTreeMap<String, String>) -> ConfigMap {
        ConfigMap {
            metadata: kube::api::ObjectMeta { name: Some(name.into()), ..kube::api::ObjectMeta::default() },
            data: Some(entries),
            ..ConfigMap::default()
        }
    }

    #[test]
    fn a_usage_configmap_wakes_only_the_scs_whose_entry_changed() {
        let name = usage_configmap_name("node-1");
        let first = data(&[
            (UID, usage("node-1", "team-a", "dev", GIB, 100).to_value()),
            ("uid-2", usage("node-1", "team-b", "db", GIB, 100).to_value()),
            ("garbage", "12%".into()),
        ]);
        let wakeups = UsageWakeups::default();
        assert_eq!(
            wakeups.woken(&configmap(&name, first.clone())),
            [ObjectRef::new("dev").within("team-a"), ObjectRef::new("db").within("team-b")]
        );
        assert!(wakeups.woken(&configmap(&name, first.clone())).is_empty(), "nothing changed");
        let mut second = first.clone();
        second.insert("uid-2".into(), usage("node-1", "team-b", "db", 2 * GIB, 160).to_value());
        second.remove(UID);
        assert_eq!(wakeups.woken(&configmap(&name, second)), [ObjectRef::new("db").within("team-b")]);
        assert!(wakeups.woken(&configmap("kube-root-ca.crt", first.clone())).is_empty(), "not a usage ConfigMap");
        assert!(UsageWakeups::default().woken(&configmap(&sc_api::node_report::report_configmap_name("node-1"), first)).is_empty());
    }

    const RUNNING_IMAGE: &str = "registry.test/app@sha256:2222";

    fn summary(image_ref: &str, user: &str) -> ImageSummary {
        ImageSummary { image_ref: image_ref.into(), cmd: vec!["serve".into()], user: user.into(), ..ImageSummary::default() }
    }

    fn with_image(report: UsageReport, image: ImageSummary) -> UsageReport {
        UsageReport { image: Some(image), ..report }
    }

    fn provider(image_id: &str) -> Pod {
        Pod {
            status: Some(k8s_openapi::api::core::v1::PodStatus {
                container_statuses: Some(vec![
                    k8s_openapi::api::core::v1::ContainerStatus {
                        name: "sidecar".into(),
                        image_id: "other@sha256:9".into(),
                        ..Default::default()
                    },
                    k8s_openapi::api::core::v1::ContainerStatus {
                        name: PROVIDER_CONTAINER_NAME.into(),
                        image_id: image_id.into(),
                        ..Default::default()
                    },
                ]),
                ..Default::default()
            }),
            ..Pod::default()
        }
    }

    #[test]
    fn the_provider_image_is_the_one_kubelet_reports_for_its_container() {
        assert_eq!(provider_image_id(&provider(RUNNING_IMAGE)).as_deref(), Some(RUNNING_IMAGE));
        assert_eq!(provider_image_id(&provider("")), None, "still pulling, or it cannot be");
        assert_eq!(provider_image_id(&Pod::default()), None);
    }

    #[test]
    fn only_the_data_nodes_summary_of_the_image_the_provider_runs_now_is_trusted() {
        let reported = summary(RUNNING_IMAGE, "jovyan");
        let entries = data(&[(UID, with_image(usage("node-1", "team-a", "dev", GIB, 100), reported.clone()).to_value())]);
        assert_eq!(image_summary(&sc(None), Some("node-1"), Some(&entries), Some(RUNNING_IMAGE)), Some(reported.clone()));
        assert_eq!(
            image_summary(&sc(None), Some("node-1"), Some(&entries), Some(&format!("docker-pullable://{RUNNING_IMAGE}"))),
            Some(reported.clone()),
            "dockershim's scheme"
        );
        assert_eq!(image_summary(&sc(None), Some("node-1"), Some(&entries), None), None, "the provider's image is not known yet");
        assert_eq!(
            image_summary(&sc(None), Some("node-1"), Some(&entries), Some("registry.test/app@sha256:3333")),
            None,
            "the summary of an earlier image does not judge the one that replaced it"
        );
        for (reason, entries) in [
            ("another node's entry", data(&[(UID, with_image(usage("node-2", "team-a", "dev", GIB, 100), reported.clone()).to_value())])),
            ("another name", data(&[(UID, with_image(usage("node-1", "team-a", "prod", GIB, 100), reported.clone()).to_value())])),
            ("another UID", data(&[("another-uid", with_image(usage("node-1", "team-a", "dev", GIB, 100), reported.clone()).to_value())])),
            ("no image in the entry", data(&[(UID, usage("node-1", "team-a", "dev", GIB, 100).to_value())])),
        ] {
            assert_eq!(image_summary(&sc(None), Some("node-1"), Some(&entries), Some(RUNNING_IMAGE)), None, "{reason}");
        }
        let empty_ref = data(&[(UID, with_image(usage("node-1", "team-a", "dev", GIB, 100), summary("", "x")).to_value())]);
        assert_eq!(image_summary(&sc(None), Some("node-1"), Some(&empty_ref), Some(RUNNING_IMAGE)), None, "an image named by nothing");
    }

    #[test]
    fn the_status_remembers_the_summary_while_the_provider_runs_that_image() {
        let mut remembered = sc(None);
        let shown = crate::status::image_status(&summary(RUNNING_IMAGE, "1000"));
        remembered.status.as_mut().expect("a status").image = Some(shown);
        // Stopped: the plugin removed the entry.
        assert_eq!(
            image_summary(&remembered, Some("node-1"), Some(&BTreeMap::new()), Some(RUNNING_IMAGE)),
            Some(summary(RUNNING_IMAGE, "1000"))
        );
        assert_eq!(image_summary(&remembered, Some("node-1"), None, Some("registry.test/app@sha256:3333")), None, "a new image");
        // A fresh report of the same image wins over the memory.
        let fresh = summary(RUNNING_IMAGE, "1001");
        let entries = data(&[(UID, with_image(usage("node-1", "team-a", "dev", GIB, 100), fresh.clone()).to_value())]);
        assert_eq!(image_summary(&remembered, Some("node-1"), Some(&entries), Some(RUNNING_IMAGE)), Some(fresh));
    }
}
