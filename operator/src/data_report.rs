//! When the operator may release [`NODE_DATA_FINALIZER`] of a StoppableContainer being deleted.
//!
//! The node plugin never writes a StoppableContainer: after deleting the data of a deleted SC it
//! reports so in its node's ConfigMap in the release namespace ([`sc_api::node_report`]), and the
//! operator releases the finalizer on reading that report. Only the data node's report counts:
//! the operator reads the ConfigMap of the node `status.dataNodeName` names (a status tenants
//! cannot write) and accepts an entry only if it names that node and this SC's UID, namespace and
//! name. [`decide`] is pure; [`fetch_report`] is the one request it needs.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use kube::runtime::reflector::ObjectRef;
use kube::{Client, ResourceExt};
use sc_api::StoppableContainer;
use sc_api::consts::{NODE_DATA_FINALIZER, NODE_REPORT_NAME_PREFIX};
use sc_api::node_report::{DataReport, find_report, report_configmap_name};

/// What to do with [`NODE_DATA_FINALIZER`] of a StoppableContainer being deleted, once its pods
/// and instance are gone.
#[derive(Clone, Debug, PartialEq)]
pub enum DataRelease {
    /// Remove the finalizer now.
    Release(ReleaseReason),
    /// Keep it and look again later; the message says what is awaited (for the log).
    Wait(String),
}

/// Why the finalizer may go.
#[derive(Clone, Debug, PartialEq)]
pub enum ReleaseReason {
    /// The SC never got a data node (it never started), so no node holds data of it.
    NeverPlaced,
    /// The data node's plugin reported the data deleted (or that it held none).
    Reported(DataReport),
    /// The data node no longer exists in the cluster: nobody is left to delete the data. If the
    /// node comes back with its disk, its plugin's orphan sweep collects the data.
    NodeGone(String),
}

impl ReleaseReason {
    /// Whether the Event for this release is a Warning (data may be left on a disk).
    pub fn is_warning(&self) -> bool {
        matches!(self, ReleaseReason::NodeGone(_))
    }

    /// The Event's reason.
    pub fn event_reason(&self) -> &'static str {
        match self {
            ReleaseReason::NeverPlaced => "NoData",
            ReleaseReason::Reported(_) => "DataDeleted",
            ReleaseReason::NodeGone(_) => "DataNodeGone",
        }
    }

    /// The Event's note.
    pub fn note(&self) -> String {
        match self {
            ReleaseReason::NeverPlaced => {
                format!(
                    "the StoppableContainer never started on a node, so no node holds its root filesystem; released {NODE_DATA_FINALIZER}"
                )
            }
            ReleaseReason::Reported(report) => {
                let freed = report.bytes.map(|bytes| format!(" ({bytes} bytes)")).unwrap_or_default();
                format!(
                    "the node plugin on {:?} deleted the root filesystem{freed} at {}; released {NODE_DATA_FINALIZER}",
                    report.node, report.time.0
                )
            }
            ReleaseReason::NodeGone(node) => format!(
                "node {node:?}, which held the root filesystem, no longer exists; released {NODE_DATA_FINALIZER} so the deletion can \
                 finish (if the node comes back, its node plugin deletes the data as orphaned)"
            ),
        }
    }
}

/// The node the SC's data lives on (`status.dataNodeName`), whose report [`decide`] reads.
pub fn data_node(sc: &StoppableContainer) -> Option<&str> {
    sc.status.as_ref().and_then(|status| status.data_node_name.as_deref())
}

/// Decides from the SC, whether its data node (see [`data_node`]) still exists, and the data of
/// that node's report ConfigMap (`None` when there is none). `data_node_exists` is not read when
/// the SC has no data node. Call it only for an SC being deleted whose pods and instance are gone.
pub fn decide(sc: &StoppableContainer, data_node_exists: bool, report: Option<&BTreeMap<String, String>>) -> DataRelease {
    let Some(node) = data_node(sc) else {
        return DataRelease::Release(ReleaseReason::NeverPlaced);
    };
    let (Some(uid), Some(namespace)) = (sc.uid(), sc.namespace()) else {
        return DataRelease::Wait("the StoppableContainer has no UID or namespace yet".into());
    };
    let name = sc.name_any();
    let not_yet = match report.and_then(|data| find_report(data, &uid)) {
        Some(Ok(report)) if report.is_from(node, &namespace, &name) => return DataRelease::Release(ReleaseReason::Reported(report)),
        Some(Ok(report)) => format!(
            "the report for UID {uid} in node {node:?}'s ConfigMap names {}/{} on node {:?}, not this StoppableContainer on its data \
             node; it is ignored",
            report.namespace, report.name, report.node
        ),
        Some(Err(problem)) => format!("the report for UID {uid} in node {node:?}'s ConfigMap is unreadable ({problem}); it is ignored"),
        None => format!("no report from node {node:?} yet"),
    };
    if !data_node_exists {
        return DataRelease::Release(ReleaseReason::NodeGone(node.to_owned()));
    }
    DataRelease::Wait(format!(
        "waiting for the node plugin on {node:?} to delete the root filesystem ({not_yet}); if that node is down for good, delete its \
         Node object"
    ))
}

/// The data of node `node`'s report ConfigMap in `namespace` (the release namespace: in the
/// cluster, the operator's own, `Client::default_namespace`), or `None` when the node has not
/// reported anything yet.
pub async fn fetch_report(client: &Client, namespace: &str, node: &str) -> Result<Option<BTreeMap<String, String>>, kube::Error> {
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    Ok(configmaps.get_opt(&report_configmap_name(node)).await?.map(|configmap| configmap.data.unwrap_or_default()))
}

/// The StoppableContainers a report ConfigMap names (one per readable entry), for a watch of the
/// release namespace's ConfigMaps to wake their deletions when a report arrives. Other ConfigMaps
/// name none. Only a wake-up: [`decide`] still judges each report.
pub fn reported_stoppable_containers(configmap: ConfigMap) -> Vec<ObjectRef<StoppableContainer>> {
    if !configmap.name_any().starts_with(NODE_REPORT_NAME_PREFIX) {
        return Vec::new();
    }
    let mut reported: Vec<ObjectRef<StoppableContainer>> = configmap
        .data
        .iter()
        .flatten()
        .filter_map(|(_, value)| DataReport::parse(value).ok())
        .map(|report| ObjectRef::new(&report.name).within(&report.namespace))
        .collect();
    reported.dedup();
    reported
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;
    use sc_api::node_report::Outcome;
    use sc_api::{StoppableContainerSpec, StoppableContainerStatus};

    use super::*;

    const UID: &str = "6d1c2b7e-43a1-4e5e-9d63-0c5a3f1b2e7d";

    fn sc(data_node: Option<&str>) -> StoppableContainer {
        let mut sc = StoppableContainer::new("dev", StoppableContainerSpec::default());
        sc.metadata.namespace = Some("team-a".into());
        sc.metadata.uid = Some(UID.into());
        sc.status = Some(StoppableContainerStatus { data_node_name: data_node.map(Into::into), ..StoppableContainerStatus::default() });
        sc
    }

    fn report(node: &str, namespace: &str, name: &str) -> DataReport {
        DataReport {
            namespace: namespace.into(),
            name: name.into(),
            node: node.into(),
            time: Time(Timestamp::from_second(1_735_689_600).expect("timestamp")),
            outcome: Outcome::Deleted,
            bytes: Some(8192),
        }
    }

    fn data(entries: &[(&str, String)]) -> BTreeMap<String, String> {
        entries.iter().map(|(key, value)| (key.to_string(), value.clone())).collect()
    }

    fn is_wait(decision: &DataRelease) -> bool {
        matches!(decision, DataRelease::Wait(_))
    }

    #[test]
    fn the_data_nodes_report_of_this_uid_releases() {
        let reported = report("node-1", "team-a", "dev");
        let entries = data(&[(UID, reported.to_value())]);
        assert_eq!(decide(&sc(Some("node-1")), true, Some(&entries)), DataRelease::Release(ReleaseReason::Reported(reported.clone())));
        let no_data = DataReport { outcome: Outcome::NoData, bytes: None, ..reported };
        let entries = data(&[(UID, no_data.to_value())]);
        assert_eq!(decide(&sc(Some("node-1")), true, Some(&entries)), DataRelease::Release(ReleaseReason::Reported(no_data)));
    }

    #[test]
    fn without_a_matching_report_it_waits_while_the_node_exists() {
        let node = Some("node-1");
        assert!(is_wait(&decide(&sc(node), true, None)), "no ConfigMap yet");
        assert!(is_wait(&decide(&sc(node), true, Some(&BTreeMap::new()))), "no entry yet");
        let other_uid = data(&[("another-uid", report("node-1", "team-a", "dev").to_value())]);
        assert!(is_wait(&decide(&sc(node), true, Some(&other_uid))), "a report for a recreated SC of the same name");
        for (reason, wrong) in [
            ("another node wrote into this node's ConfigMap", report("node-2", "team-a", "dev")),
            ("another namespace", report("node-1", "team-b", "dev")),
            ("another name", report("node-1", "team-a", "prod")),
        ] {
            let entries = data(&[(UID, wrong.to_value())]);
            match decide(&sc(node), true, Some(&entries)) {
                DataRelease::Wait(message) => assert!(message.contains("ignored"), "{reason}: {message}"),
                other => panic!("{reason}: {other:?}"),
            }
        }
        let garbage = data(&[(UID, "deleted".into())]);
        match decide(&sc(node), true, Some(&garbage)) {
            DataRelease::Wait(message) => assert!(message.contains("unreadable"), "{message}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_gone_node_or_no_data_node_releases_and_the_gone_node_warns() {
        let released = decide(&sc(Some("node-1")), false, None);
        assert_eq!(released, DataRelease::Release(ReleaseReason::NodeGone("node-1".into())));
        let garbage = data(&[(UID, "deleted".into())]);
        assert_eq!(decide(&sc(Some("node-1")), false, Some(&garbage)), released, "an unreadable report does not keep a gone node");
        assert_eq!(decide(&sc(None), true, None), DataRelease::Release(ReleaseReason::NeverPlaced));
        let mut unstarted = sc(None);
        unstarted.status = None;
        assert_eq!(decide(&unstarted, false, None), DataRelease::Release(ReleaseReason::NeverPlaced));
        assert!(ReleaseReason::NodeGone("node-1".into()).is_warning());
        assert!(!ReleaseReason::NeverPlaced.is_warning());
        assert!(!ReleaseReason::Reported(report("node-1", "team-a", "dev")).is_warning());
    }

    #[test]
    fn a_report_in_force_wins_over_a_gone_node() {
        let reported = report("node-1", "team-a", "dev");
        let entries = data(&[(UID, reported.to_value())]);
        assert_eq!(decide(&sc(Some("node-1")), false, Some(&entries)), DataRelease::Release(ReleaseReason::Reported(reported)));
    }

    #[test]
    fn notes_say_what_happened() {
        let note = ReleaseReason::Reported(report("node-1", "team-a", "dev")).note();
        assert_eq!(
            note,
            format!(
                "the node plugin on \"node-1\" deleted the root filesystem (8192 bytes) at 2025-01-01T00:00:00Z; released {NODE_DATA_FINALIZER}"
            )
        );
        assert!(ReleaseReason::NodeGone("node-1".into()).note().contains("no longer exists"));
        assert_eq!(ReleaseReason::NodeGone("n".into()).event_reason(), "DataNodeGone");
    }

    #[test]
    fn a_report_configmap_wakes_the_scs_it_names_and_nothing_else_does() {
        let configmap = |name: &str, entries: BTreeMap<String, String>| ConfigMap {
            metadata: kube::api::ObjectMeta { name: Some(name.into()), ..kube::api::ObjectMeta::default() },
            data: Some(entries),
            ..ConfigMap::default()
        };
        let entries = data(&[
            (UID, report("node-1", "team-a", "dev").to_value()),
            ("another-uid", report("node-1", "team-b", "db").to_value()),
            ("garbage", "deleted".into()),
        ]);
        let woken = reported_stoppable_containers(configmap(&report_configmap_name("node-1"), entries.clone()));
        assert_eq!(woken, [ObjectRef::new("dev").within("team-a"), ObjectRef::new("db").within("team-b")]);
        assert!(reported_stoppable_containers(configmap("kube-root-ca.crt", entries)).is_empty());
        assert!(reported_stoppable_containers(configmap(&report_configmap_name("node-1"), BTreeMap::new())).is_empty());
    }
}
