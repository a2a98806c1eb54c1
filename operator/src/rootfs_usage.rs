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

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use sc_api::consts::NODE_USAGE_NAME_PREFIX;
use sc_api::node_report::{UsageReport, find_usage};
use sc_api::{RootfsStatus, StoppableContainer};

/// The `status.rootfs` of `sc`, whose data node is `data_node` (as this reconcile knows it),
/// from the data of that node's usage ConfigMap (`None` when there is none or it is not cached
/// yet). An entry counts only if it names the data node and this SC (its UID is the key) and is
/// not older than the figures the status has; otherwise the status keeps what it has.
pub fn rootfs_status(sc: &StoppableContainer, data_node: Option<&str>, usage: Option<&BTreeMap<String, String>>) -> Option<RootfsStatus> {
    let previous = sc.status.as_ref().and_then(|status| status.rootfs.clone());
    // No data node: the SC never started, and no node holds a root filesystem of it.
    let node = data_node?;
    let (Some(uid), Some(namespace)) = (sc.uid(), sc.namespace()) else { return previous };
    let Some(Ok(report)) = usage.and_then(|data| find_usage(data, &uid)) else { return previous };
    if !report.is_from(node, &namespace, &sc.name_any()) {
        return previous;
    }
    let older = previous.as_ref().and_then(|rootfs| rootfs.observed_time.as_ref()).is_some_and(|seen| report.observed_time.0 < seen.0);
    if older {
        return previous;
    }
    Some(from_report(&report))
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
}
