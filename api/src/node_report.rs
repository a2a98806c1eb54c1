//! The node plugin's reports to the operator: "node N deleted the data of the StoppableContainer
//! with UID X". The operator releases [`NODE_DATA_FINALIZER`](crate::consts::NODE_DATA_FINALIZER)
//! on reading one from the SC's data node; the plugin never writes a StoppableContainer (so its
//! ServiceAccount needs no write access to any tenant's workload spec).
//!
//! Each node writes one ConfigMap in the release namespace, named by [`report_configmap_name`]:
//!
//! ```text
//! metadata.name: sc-node-data.<node>            (cut and hashed when the node's name is too long)
//! metadata.annotations[stoppablecontainer.xtlsoft.top/node]: <node>
//! data[<sc-uid>]: {"namespace":"team-a","name":"dev","node":"<node>","time":"2025-01-01T00:00:00Z","outcome":"deleted","bytes":123}
//! ```
//!
//! Both sides compute the name with the same function, so the operator reads only the ConfigMap
//! of the node its status names. Every node plugin shares one ServiceAccount, so RBAC cannot
//! stop one node from writing another's ConfigMap: the report also names its node, and the
//! operator accepts it only for the node the status names and only while the SC is being
//! deleted.
//!
//! Each node also keeps a second ConfigMap, [`usage_configmap_name`], with what each SC's own
//! filesystem published on that node uses ([`UsageReport`]), for the SC's `status.rootfs`:
//!
//! ```text
//! metadata.name: sc-node-usage.<node>           (the same name rules)
//! data[<sc-uid>]: {"namespace":"team-a","name":"dev","node":"<node>","limitBytes":10737418240,"usedBytes":1073741824,
//!                  "availableBytes":9663676416,"inodesUsed":1200,"inodesTotal":655360,"observedTime":"2025-01-01T00:00:00Z"}
//! ```
//!
//! The same trust rule holds: the operator takes an entry only from the ConfigMap of the node the
//! SC's status names, and only if the entry names that node and this SC's namespace and name.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::consts::{NODE_REPORT_NAME_PREFIX, NODE_USAGE_NAME_PREFIX};
use crate::names::{MAX_OBJECT_NAME_LEN, is_dns_subdomain};

/// Hex digits of the node name's SHA-256 in a hashed ConfigMap name (64 bits).
const HASH_HEX_LEN: usize = 16;

/// The name of the ConfigMap in which node `node` reports deleted data: the prefix and the node's
/// name when that fits in 253 characters; otherwise the prefix, as much of the node's name as
/// fits, `.` and the first 16 hex digits of the SHA-256 of the whole name. The prefix ends in
/// `.`, so it is a label of its own and the node's labels stay whole. A node name that is not a
/// DNS subdomain (Kubernetes never makes one) gets the prefix and the hash alone, so the result
/// is always a valid object name.
pub fn report_configmap_name(node: &str) -> String {
    per_node_name(NODE_REPORT_NAME_PREFIX, node)
}

/// The name of the ConfigMap in which node `node` reports its StoppableContainers' rootfs use
/// ([`UsageReport`]): the rules of [`report_configmap_name`], with [`NODE_USAGE_NAME_PREFIX`].
pub fn usage_configmap_name(node: &str) -> String {
    per_node_name(NODE_USAGE_NAME_PREFIX, node)
}

/// `prefix` (which ends in `.`) and `node`, cut and hashed as [`report_configmap_name`] says.
fn per_node_name(prefix: &str, node: &str) -> String {
    if !is_dns_subdomain(node) {
        return format!("{prefix}{}", node_hash(node));
    }
    if prefix.len() + node.len() <= MAX_OBJECT_NAME_LEN {
        return format!("{prefix}{node}");
    }
    let room = MAX_OBJECT_NAME_LEN - prefix.len() - 1 - HASH_HEX_LEN;
    // A subdomain is ASCII, so any byte index is a character boundary. The cut part must end in a
    // letter or digit to end its label; every label before it is whole.
    let kept = node[..room].trim_end_matches(['.', '-']);
    format!("{prefix}{kept}.{}", node_hash(node))
}

fn node_hash(node: &str) -> String {
    hex::encode(Sha256::digest(node.as_bytes()))[..HASH_HEX_LEN].to_owned()
}

/// Whether `key` may be a ConfigMap data key (`[-._a-zA-Z0-9]+`, at most 253). SC UIDs are.
pub fn is_valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_OBJECT_NAME_LEN
        && key != "."
        && key != ".."
        && key.bytes().all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_'))
}

/// What a node did with a StoppableContainer's data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Outcome {
    /// The SC was being deleted and the node deleted its data directory.
    Deleted,
    /// The SC was being deleted, its status names this node, and the node held no data of it.
    NoData,
    /// The node's orphan sweep deleted data whose SC no longer exists.
    Orphan,
}

/// One entry of a node's report ConfigMap: the value under the SC's UID.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataReport {
    /// Namespace of the StoppableContainer.
    pub namespace: String,
    /// Name of the StoppableContainer.
    pub name: String,
    /// The node that wrote this (two nodes can share a ConfigMap only if hashed names collide).
    pub node: String,
    /// When the data was found deleted.
    pub time: Time,
    /// What happened to the data.
    pub outcome: Outcome,
    /// Bytes freed on the node's disk, when the node deleted something.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
}

/// An entry as stored in a node's ConfigMap: its JSON. Strings, numbers, timestamps and unit
/// enums: serialising them cannot fail.
fn entry_value(entry: &impl Serialize) -> String {
    serde_json::to_string(entry).unwrap_or_default()
}

/// Parses a stored entry of the kind `what`; the error says what is wrong with it.
fn parse_entry<T: serde::de::DeserializeOwned>(value: &str, what: &str) -> Result<T, String> {
    serde_json::from_str(value).map_err(|error| format!("not a {what} ({error}): {value:?}"))
}

impl DataReport {
    /// The entry as stored in the ConfigMap.
    pub fn to_value(&self) -> String {
        entry_value(self)
    }

    /// Parses a stored entry; the error says what is wrong with it.
    pub fn parse(value: &str) -> Result<Self, String> {
        parse_entry(value, "node data report")
    }

    /// Whether this report says that `node` deleted the data of the SC `namespace/name`.
    pub fn is_from(&self, node: &str, namespace: &str, name: &str) -> bool {
        self.node == node && self.namespace == namespace && self.name == name
    }
}

/// The entry for `uid` in a report ConfigMap's data, parsed. `None` when there is none.
pub fn find_report(data: &BTreeMap<String, String>, uid: &str) -> Option<Result<DataReport, String>> {
    data.get(uid).map(|value| DataReport::parse(value))
}

/// One entry of a node's usage ConfigMap ([`usage_configmap_name`]): the value under the SC's
/// UID, what the SC's own filesystem held when the node plugin last measured it. A rootfs made
/// before size limits has no limit and no figures (only its namespace, name, node and time).
/// The plugin removes the entry when the SC is no longer published on its node (stopped).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageReport {
    /// Namespace of the StoppableContainer.
    pub namespace: String,
    /// Name of the StoppableContainer.
    pub name: String,
    /// The node that measured it (the operator accepts only the SC's data node's word).
    pub node: String,
    /// The filesystem's size (its image's length); absent for a rootfs without a limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_bytes: Option<u64>,
    /// Bytes in use on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_bytes: Option<u64>,
    /// Bytes the workload can still write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_bytes: Option<u64>,
    /// Inodes in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inodes_used: Option<u64>,
    /// Inodes the filesystem has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inodes_total: Option<u64>,
    /// When the figures were measured.
    pub observed_time: Time,
    /// What the plugin learnt of the published rootfs's image from the container runtime (absent
    /// from reports of earlier releases).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<crate::image_config::ImageSummary>,
}

impl UsageReport {
    /// The entry as stored in the ConfigMap.
    pub fn to_value(&self) -> String {
        entry_value(self)
    }

    /// Parses a stored entry; the error says what is wrong with it.
    pub fn parse(value: &str) -> Result<Self, String> {
        parse_entry(value, "node rootfs usage entry")
    }

    /// Whether this entry is `node`'s measure of the SC `namespace/name`.
    pub fn is_from(&self, node: &str, namespace: &str, name: &str) -> bool {
        self.node == node && self.namespace == namespace && self.name == name
    }
}

/// The entry for `uid` in a usage ConfigMap's data, parsed. `None` when there is none.
pub fn find_usage(data: &BTreeMap<String, String>, uid: &str) -> Option<Result<UsageReport, String>> {
    data.get(uid).map(|value| UsageReport::parse(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn example() -> DataReport {
        DataReport {
            namespace: "team-a".into(),
            name: "dev".into(),
            node: "node-1".into(),
            time: Time(Timestamp::from_second(1_735_689_600).expect("timestamp")),
            outcome: Outcome::Deleted,
            bytes: Some(4096),
        }
    }

    #[test]
    fn short_node_names_are_kept_whole() {
        assert_eq!(report_configmap_name("node-1"), "sc-node-data.node-1");
        assert_eq!(report_configmap_name("ip-10-0-0-1.eu-west-1.compute.internal"), "sc-node-data.ip-10-0-0-1.eu-west-1.compute.internal");
        // A first label of 63 characters stays whole: the prefix is a label of its own.
        let longest_whole = format!("{}.{}.{}.{}", "a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(48));
        assert_eq!(NODE_REPORT_NAME_PREFIX.len() + longest_whole.len(), MAX_OBJECT_NAME_LEN);
        let name = report_configmap_name(&longest_whole);
        assert_eq!(name, format!("{NODE_REPORT_NAME_PREFIX}{longest_whole}"));
        assert!(is_dns_subdomain(&name), "{name}");
    }

    #[test]
    fn long_node_names_are_cut_and_hashed_into_a_valid_distinct_name() {
        let long = format!("{}.{}", "a".repeat(63), ["b".repeat(63), "c".repeat(63), "d".repeat(60)].join("."));
        assert!(is_dns_subdomain(&long), "a node name Kubernetes accepts");
        let name = report_configmap_name(&long);
        assert_eq!(name.len(), MAX_OBJECT_NAME_LEN);
        assert!(is_dns_subdomain(&name), "{name}");
        assert!(name.starts_with(NODE_REPORT_NAME_PREFIX));
        let other = format!("{}e", &long[..long.len() - 1]);
        assert_ne!(report_configmap_name(&other), name, "same cut part, different hash");
        assert_eq!(report_configmap_name(&long), name, "stable");
    }

    #[test]
    fn a_cut_part_always_ends_its_label() {
        let room = MAX_OBJECT_NAME_LEN - NODE_REPORT_NAME_PREFIX.len() - 1 - HASH_HEX_LEN;
        // The cut falls right after a '.' and after a '-' (which the cut part must not end in).
        for filler in [".", "-"] {
            let head = ["a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(room - 1 - 3 * 64)].join(".");
            assert_eq!(head.len(), room - 1);
            let node = format!("{head}{filler}{}", "e".repeat(30));
            assert!(is_dns_subdomain(&node), "{node}");
            let name = report_configmap_name(&node);
            assert!(is_dns_subdomain(&name), "{filler:?}: {name}");
        }
    }

    #[test]
    fn names_that_are_not_subdomains_still_give_a_valid_name() {
        for node in ["", "Node_1", "a..b", "-a", &"x".repeat(300)] {
            let name = report_configmap_name(node);
            assert!(is_dns_subdomain(&name), "{node:?} -> {name}");
        }
    }

    #[test]
    fn reports_round_trip_and_name_their_node() {
        let report = example();
        let value = report.to_value();
        assert_eq!(
            value,
            r#"{"namespace":"team-a","name":"dev","node":"node-1","time":"2025-01-01T00:00:00Z","outcome":"deleted","bytes":4096}"#
        );
        assert_eq!(DataReport::parse(&value), Ok(report.clone()));
        assert!(report.is_from("node-1", "team-a", "dev"));
        assert!(!report.is_from("node-2", "team-a", "dev"));
        assert!(!report.is_from("node-1", "team-b", "dev"));
        assert!(!report.is_from("node-1", "team-a", "other"));
        let no_bytes = DataReport { outcome: Outcome::NoData, bytes: None, ..report };
        assert_eq!(DataReport::parse(&no_bytes.to_value()), Ok(no_bytes));
        assert!(DataReport::parse("deleted").is_err());
    }

    #[test]
    fn usage_configmaps_follow_the_same_name_rules_with_their_own_prefix() {
        assert_eq!(usage_configmap_name("node-1"), "sc-node-usage.node-1");
        let long = format!("{}.{}", "a".repeat(63), ["b".repeat(63), "c".repeat(63), "d".repeat(60)].join("."));
        let name = usage_configmap_name(&long);
        assert_eq!(name.len(), MAX_OBJECT_NAME_LEN);
        assert!(is_dns_subdomain(&name), "{name}");
        assert!(name.starts_with(NODE_USAGE_NAME_PREFIX));
        assert_eq!(name[NODE_USAGE_NAME_PREFIX.len()..].rsplit('.').next(), report_configmap_name(&long).rsplit('.').next(), "same hash");
        for node in ["", "Node_1", &"x".repeat(300)] {
            assert!(is_dns_subdomain(&usage_configmap_name(node)), "{node:?}");
        }
        assert_ne!(usage_configmap_name("node-1"), report_configmap_name("node-1"));
    }

    #[test]
    fn usage_entries_round_trip_and_an_unlimited_one_has_no_figures() {
        let usage = UsageReport {
            namespace: "team-a".into(),
            name: "dev".into(),
            node: "node-1".into(),
            limit_bytes: Some(10 << 30),
            used_bytes: Some(1 << 30),
            available_bytes: Some(9 << 30),
            inodes_used: Some(1200),
            inodes_total: Some(655_360),
            observed_time: Time(Timestamp::from_second(1_735_689_600).expect("timestamp")),
            image: None,
        };
        let value = usage.to_value();
        assert_eq!(
            value,
            r#"{"namespace":"team-a","name":"dev","node":"node-1","limitBytes":10737418240,"usedBytes":1073741824,"availableBytes":9663676416,"inodesUsed":1200,"inodesTotal":655360,"observedTime":"2025-01-01T00:00:00Z"}"#
        );
        assert_eq!(UsageReport::parse(&value), Ok(usage.clone()));
        let unlimited = UsageReport {
            limit_bytes: None,
            used_bytes: None,
            available_bytes: None,
            inodes_used: None,
            inodes_total: None,
            ..usage.clone()
        };
        assert_eq!(unlimited.to_value(), r#"{"namespace":"team-a","name":"dev","node":"node-1","observedTime":"2025-01-01T00:00:00Z"}"#);
        assert_eq!(UsageReport::parse(&unlimited.to_value()), Ok(unlimited));
        assert!(usage.is_from("node-1", "team-a", "dev"));
        assert!(!usage.is_from("node-2", "team-a", "dev"));
        assert!(!usage.is_from("node-1", "team-b", "dev"));
        assert!(!usage.is_from("node-1", "team-a", "prod"));
        let data = BTreeMap::from([("uid-1".to_owned(), value), ("uid-2".to_owned(), "12%".to_owned())]);
        assert_eq!(find_usage(&data, "uid-1"), Some(Ok(usage)));
        assert!(matches!(find_usage(&data, "uid-2"), Some(Err(message)) if message.contains("not a node rootfs usage entry")));
        assert_eq!(find_usage(&data, "uid-3"), None);
    }

    #[test]
    fn uids_are_valid_keys() {
        assert!(is_valid_key("6d1c2b7e-43a1-4e5e-9d63-0c5a3f1b2e7d"));
        assert!(!is_valid_key("a/b"));
        assert!(!is_valid_key(".."));
        assert!(!is_valid_key(""));
    }
}
