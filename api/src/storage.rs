//! `spec.storage`: the persistent layer on a PersistentVolumeClaim instead of a node's disk, so
//! the root filesystem outlives its node. The types the user writes and the operator records,
//! and the pure rules over them (defaults, validation, the claim's name, the refusal of a
//! change), shared by the operator, the node plugin and `kubectl sc`.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::names::{MAX_OBJECT_NAME_LEN, is_dns_subdomain};
use crate::rootfs_size::{RootfsSize, parse_size};

/// The suffix of the claim's name: `<sc-name>-rootfs`. An SC name is at most
/// [`crate::consts::MAX_SC_NAME_LEN`] (54) characters, so the claim's name always fits in 63.
pub const CLAIM_NAME_SUFFIX: &str = "-rootfs";
/// The consumer pod's volume that mounts the claim (kubelet mounts it; the node plugin finds
/// that mount and puts the overlay's upper and work directories on it).
pub const STORAGE_VOLUME_NAME: &str = "sc-storage";
/// Where the consumer container sees the claim (read-only; the workload never sees it, it runs
/// in the overlay). A volume no container mounts is not mounted by kubelet at all.
pub const STORAGE_VOLUME_MOUNT_PATH: &str = "/.sc-storage";
/// The directory on the claim's filesystem that holds the overlay's upper and work directories.
pub const CLAIM_DATA_DIR: &str = "stoppablecontainer";
/// The access mode a claim gets when `accessModes` is empty.
pub const DEFAULT_ACCESS_MODE: &str = "ReadWriteOnce";
/// The access modes a PersistentVolumeClaim may ask for.
pub const ACCESS_MODES: [&str; 4] = ["ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod"];

/// Where the persistent layer lives when it is not on the node: a PersistentVolumeClaim the
/// operator creates as `<name>-rootfs` in the StoppableContainer's namespace. Fixed at creation:
/// a change is refused (the `SpecValid` condition says what to do).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// The claim's requested size (a quantity such as `20Gi`): the most the root filesystem can
    /// hold. Writes past it fail inside the container with "No space left on device".
    pub size: Quantity,
    /// The StorageClass of the claim. Unset: the cluster's default class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub storage_class_name: Option<String>,
    /// The claim's access modes. Unset or empty: `ReadWriteOnce`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access_modes: Vec<String>,
    /// What happens to the claim when the StoppableContainer is deleted: `Delete` (the default)
    /// deletes it with its data; `Retain` keeps it (and the data), unused: a new
    /// StoppableContainer never adopts it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when_deleted: Option<ClaimRetention>,
}

/// What happens to the claim when its StoppableContainer is deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ClaimRetention {
    /// The claim is deleted with the StoppableContainer (an owner reference: the garbage
    /// collector deletes it once the StoppableContainer is gone).
    #[default]
    Delete,
    /// The claim stays, with the data, and nothing owns it.
    Retain,
}

impl ClaimRetention {
    pub fn as_str(self) -> &'static str {
        match self {
            ClaimRetention::Delete => "Delete",
            ClaimRetention::Retain => "Retain",
        }
    }
}

/// The operator's record of the claim it created: what the node plugin trusts (it publishes a
/// claim only with this UID) and what `kubectl sc status` shows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClaimRecord {
    /// The claim's name.
    pub claim_name: String,
    /// The claim's UID, recorded when the operator created it. A claim with this name and
    /// another UID is not this StoppableContainer's and is never used.
    #[serde(default, rename = "claimUID", skip_serializing_if = "Option::is_none")]
    pub claim_uid: Option<String>,
}

/// What the instance records of the storage: `spec.storage` as it was when the claim was
/// created (a later change is refused against it) and the claim the operator created. The node
/// plugin reads it: it publishes only the claim with this UID, mounted in the consumer pod.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceStorage {
    /// `spec.storage` as it was when the claim was created.
    pub requested: StorageSpec,
    #[serde(flatten)]
    pub claim: ClaimRecord,
    /// The image the provider pod ran, by digest, recorded once it ran: later provider pods run
    /// this digest while the template's image is still `image`, so a moved tag never changes the
    /// lower layer under the files on the claim. A changed template image replaces it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned_image: Option<PinnedImage>,
}

/// The digest a template image resolved to when the provider first ran it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PinnedImage {
    /// The template's image, as written (a tag, or a digest reference itself).
    pub image: String,
    /// What kubelet reported the provider's container ran (`status.containerStatuses[].imageID`):
    /// a pullable `name@sha256:<hex>` reference.
    pub digest_ref: String,
}

/// The claim as the StoppableContainer's status shows it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageStatus {
    #[serde(flatten)]
    pub claim: ClaimRecord,
    /// The claim's phase (Pending, Bound, Lost) as Kubernetes reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// The bound volume's capacity (can be more than requested).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<Quantity>,
    /// The claim's StorageClass (the default class's name when the spec names none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

/// `spec.storage` with its defaults applied and its size checked: what the claim is made of.
#[derive(Clone, Debug, PartialEq)]
pub struct ResolvedStorage {
    pub size_bytes: u64,
    /// The size as the user wrote it, for the claim's request (so `kubectl get pvc` shows it).
    pub size: Quantity,
    pub storage_class_name: Option<String>,
    pub access_modes: Vec<String>,
    pub when_deleted: ClaimRetention,
}

/// The name of the claim of the StoppableContainer `sc_name`.
pub fn claim_name(sc_name: &str) -> String {
    format!("{sc_name}{CLAIM_NAME_SUFFIX}")
}

/// Checks `spec.storage` and applies its defaults. Every problem is named by its field, in
/// words a user can act on.
pub fn resolve(storage: &StorageSpec) -> Result<ResolvedStorage, Vec<String>> {
    let mut problems = Vec::new();
    let size_bytes = match parse_size(&storage.size.0) {
        Ok(size) => Some(size),
        Err(error) => {
            problems.push(format!("spec.storage.size: {error}"));
            None
        }
    };
    if let Some(class) = &storage.storage_class_name
        && let Err(problem) = check_dns_subdomain(class)
    {
        problems.push(format!("spec.storage.storageClassName {class:?}: {problem}"));
    }
    for mode in &storage.access_modes {
        if !ACCESS_MODES.contains(&mode.as_str()) {
            problems.push(format!("spec.storage.accessModes: {mode:?} is not an access mode; use one of {}", ACCESS_MODES.join(", ")));
        }
    }
    if storage.access_modes.iter().any(|mode| mode == "ReadOnlyMany") {
        problems.push("spec.storage.accessModes: ReadOnlyMany cannot hold a writable root filesystem; use ReadWriteOnce".to_string());
    }
    match (size_bytes, problems.is_empty()) {
        (Some(size), true) => Ok(ResolvedStorage {
            size_bytes: RootfsSize::bytes(size),
            size: storage.size.clone(),
            storage_class_name: storage.storage_class_name.clone(),
            access_modes: if storage.access_modes.is_empty() {
                vec![DEFAULT_ACCESS_MODE.to_string()]
            } else {
                storage.access_modes.clone()
            },
            when_deleted: storage.when_deleted.unwrap_or_default(),
        }),
        _ => Err(problems),
    }
}

/// Why the storage of an existing StoppableContainer cannot change: its data is where it was
/// created (on its node, or on its claim), and nothing moves it. `recorded` is what the
/// operator set up (`None`: node-local); `None` here when nothing changed that matters. The
/// words follow the field's name (`spec.storage: cannot ...`).
///
/// Only `whenDeleted` may change: it decides the claim's fate at deletion, not where the data is.
pub fn refuse_change(recorded: Option<&StorageSpec>, requested: Option<&StorageSpec>) -> Option<String> {
    let fixed = |spec: &StorageSpec| StorageSpec { when_deleted: None, ..spec.clone() };
    match (recorded, requested) {
        (None, None) => None,
        (None, Some(_)) => Some(
            "cannot be added to a StoppableContainer whose root filesystem is already on its node; \
             remove spec.storage, or create a new StoppableContainer with spec.storage and copy the files over"
                .to_string(),
        ),
        (Some(_), None) => Some("cannot be removed: the root filesystem is on its claim; put spec.storage back as it was".to_string()),
        (Some(recorded), Some(requested)) if fixed(recorded) != fixed(requested) => Some(format!(
            "cannot change after creation (only whenDeleted can): it was {}; put it back, \
             or create a new StoppableContainer with the storage you want",
            describe(recorded)
        )),
        (Some(_), Some(_)) => None,
    }
}

/// `spec.storage` in one line, as the user wrote it: `size 1Gi, class fast, ReadWriteOnce`.
pub fn describe(storage: &StorageSpec) -> String {
    let mut parts = vec![format!("size {}", storage.size.0)];
    parts.push(match &storage.storage_class_name {
        Some(class) => format!("class {class}"),
        None => "the default class".to_string(),
    });
    if !storage.access_modes.is_empty() {
        parts.push(storage.access_modes.join("+"));
    }
    parts.join(", ")
}

/// A DNS subdomain (RFC 1123, [`is_dns_subdomain`]): what StorageClass names are; the error
/// says which rule the name breaks.
fn check_dns_subdomain(value: &str) -> Result<(), String> {
    if value.is_empty() || value.len() > MAX_OBJECT_NAME_LEN {
        Err(format!("must be 1 to {MAX_OBJECT_NAME_LEN} characters"))
    } else if !is_dns_subdomain(value) {
        Err("must be lowercase letters, digits, '-' and '.', starting and ending with a letter or digit".to_string())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(size: &str) -> StorageSpec {
        StorageSpec { size: Quantity(size.to_string()), ..StorageSpec::default() }
    }

    #[test]
    fn defaults_are_read_write_once_the_default_class_and_delete() {
        let resolved = resolve(&spec("1Gi")).expect("valid");
        assert_eq!(resolved.size_bytes, 1 << 30);
        assert_eq!(resolved.access_modes, vec!["ReadWriteOnce".to_string()]);
        assert_eq!(resolved.storage_class_name, None);
        assert_eq!(resolved.when_deleted, ClaimRetention::Delete);
    }

    #[test]
    fn every_bad_field_is_named_with_what_to_do() {
        let bad = StorageSpec {
            size: Quantity("lots".to_string()),
            storage_class_name: Some("Fast_Disks".to_string()),
            access_modes: vec!["ReadWriteSometimes".to_string(), "ReadOnlyMany".to_string()],
            when_deleted: None,
        };
        let problems = resolve(&bad).expect_err("invalid");
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems[0].starts_with("spec.storage.size: "), "{problems:?}");
        assert!(problems[1].starts_with("spec.storage.storageClassName \"Fast_Disks\": must be lowercase"), "{problems:?}");
        assert_eq!(
            problems[2],
            "spec.storage.accessModes: \"ReadWriteSometimes\" is not an access mode; use one of ReadWriteOnce, ReadOnlyMany, ReadWriteMany, ReadWriteOncePod"
        );
        assert_eq!(problems[3], "spec.storage.accessModes: ReadOnlyMany cannot hold a writable root filesystem; use ReadWriteOnce");
    }

    #[test]
    fn a_size_below_the_smallest_rootfs_is_refused() {
        let problems = resolve(&spec("1Mi")).expect_err("too small");
        assert!(problems[0].starts_with("spec.storage.size: "), "{problems:?}");
    }

    #[test]
    fn the_claim_of_the_longest_sc_name_fits_a_dns_label() {
        let name = "a".repeat(crate::consts::MAX_SC_NAME_LEN);
        assert_eq!(claim_name(&name).len(), 61);
        assert!(crate::names::is_dns_label(&claim_name(&name)));
        assert_eq!(claim_name("dev"), "dev-rootfs");
    }

    #[test]
    fn storage_cannot_be_added_removed_or_changed_but_when_deleted_can() {
        let recorded = StorageSpec { storage_class_name: Some("fast".to_string()), ..spec("1Gi") };
        assert_eq!(refuse_change(None, None), None);
        assert_eq!(refuse_change(Some(&recorded), Some(&recorded)), None);
        let retain = StorageSpec { when_deleted: Some(ClaimRetention::Retain), ..recorded.clone() };
        assert_eq!(refuse_change(Some(&recorded), Some(&retain)), None);
        assert!(refuse_change(None, Some(&recorded)).expect("refused").starts_with("cannot be added"));
        assert!(refuse_change(Some(&recorded), None).expect("refused").starts_with("cannot be removed"));
        let bigger = StorageSpec { size: Quantity("2Gi".to_string()), ..recorded.clone() };
        assert_eq!(
            refuse_change(Some(&recorded), Some(&bigger)).expect("refused"),
            "cannot change after creation (only whenDeleted can): it was size 1Gi, class fast; put it back, \
             or create a new StoppableContainer with the storage you want"
        );
    }
}
