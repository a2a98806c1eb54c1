//! The metadata every object the operator writes shares, in one place: the controller owner
//! reference, the system labels, the finalizer patch and the server-side apply of a status. Pure:
//! these build what is sent; the controller sends it.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::Patch;
use kube::{Resource, ResourceExt};
use sc_api::consts::{LABEL_INSTANCE, LABEL_MANAGED_BY, LABEL_ROLE, MANAGED_BY_VALUE};
use serde::Serialize;
use serde_json::{Value, json};

/// A controller owner reference to `owner` (which must have a name and a UID, as every object
/// read from the API server has).
pub fn controller_reference<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: owner.name_any(),
        uid: owner.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// True when `owner_uid` is the controller of `object` (the only pods and instances the operator
/// ever changes or deletes).
pub fn is_controlled_by(object: &impl Resource, owner_uid: &str) -> bool {
    object.meta().owner_references.iter().flatten().any(|reference| reference.controller == Some(true) && reference.uid == owner_uid)
}

/// Labels every object the operator makes for a StoppableContainer carries (its pods, its claim).
pub fn sc_labels(sc_name: &str) -> BTreeMap<String, String> {
    [(LABEL_MANAGED_BY.to_owned(), MANAGED_BY_VALUE.to_owned()), (LABEL_INSTANCE.to_owned(), sc_name.to_owned())].into()
}

/// Labels every pod of a StoppableContainer carries: [`sc_labels`] and its role. They win over
/// the template's labels.
pub fn system_labels(sc_name: &str, role: &str) -> BTreeMap<String, String> {
    let mut labels = sc_labels(sc_name);
    labels.insert(LABEL_ROLE.to_owned(), role.to_owned());
    labels
}

/// The server-side apply of `status` to an object of kind `K` (send it to the status subresource
/// with the operator's field manager, forced). The whole status goes in every apply: an apply
/// that named only some fields would drop the others this manager owns.
pub fn status_apply<K: Resource<DynamicType = ()>>(status: &impl Serialize) -> Patch<Value> {
    Patch::Apply(json!({ "apiVersion": K::api_version(&()), "kind": K::kind(&()), "status": status }))
}

/// The server-side apply of `object` itself (its metadata and spec), with its type spelled out
/// as an apply body needs.
pub fn object_apply<K: Resource<DynamicType = ()> + Serialize>(object: &K) -> Patch<Value> {
    let mut body = serde_json::to_value(object).unwrap_or_default();
    body["apiVersion"] = json!(K::api_version(&()));
    body["kind"] = json!(K::kind(&()));
    Patch::Apply(body)
}

/// The merge patch that adds (`present`) or removes `finalizer` on `object`, conditioned on the
/// resourceVersion that was read, so that a finalizer list changed in between is never
/// overwritten (the API server answers 409 and the next reconcile reads it again). None when the
/// finalizer already is as wanted.
pub fn finalizer_patch(object: &impl Resource, finalizer: &str, present: bool) -> Option<Patch<Value>> {
    let current = object.meta().finalizers.clone().unwrap_or_default();
    if current.iter().any(|f| f == finalizer) == present {
        return None;
    }
    let mut wanted: Vec<String> = current.into_iter().filter(|f| f != finalizer).collect();
    if present {
        wanted.push(finalizer.to_owned());
    }
    Some(Patch::Merge(json!({ "metadata": { "finalizers": wanted, "resourceVersion": object.meta().resource_version } })))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::ObjectMeta;
    use sc_api::StoppableContainerInstance;

    use super::*;

    fn with_finalizers(finalizers: &[&str]) -> Pod {
        Pod {
            metadata: ObjectMeta {
                finalizers: Some(finalizers.iter().map(|f| (*f).to_owned()).collect()),
                resource_version: Some("42".into()),
                ..ObjectMeta::default()
            },
            ..Pod::default()
        }
    }

    fn merge_body(patch: Option<Patch<Value>>) -> Value {
        match patch {
            Some(Patch::Merge(body)) => body,
            other => panic!("a merge patch: {other:?}"),
        }
    }

    #[test]
    fn a_finalizer_patch_keeps_the_others_and_is_conditioned_on_the_version_read() {
        let added = merge_body(finalizer_patch(&with_finalizers(&["other"]), "ours", true));
        assert_eq!(added, json!({ "metadata": { "finalizers": ["other", "ours"], "resourceVersion": "42" } }));
        let removed = merge_body(finalizer_patch(&with_finalizers(&["ours", "other"]), "ours", false));
        assert_eq!(removed, json!({ "metadata": { "finalizers": ["other"], "resourceVersion": "42" } }));
        assert!(finalizer_patch(&with_finalizers(&["ours"]), "ours", true).is_none(), "already there");
        assert!(finalizer_patch(&with_finalizers(&[]), "ours", false).is_none(), "already gone");
    }

    #[test]
    fn a_status_apply_names_the_type() {
        let Patch::Apply(body) = status_apply::<StoppableContainerInstance>(&json!({ "phase": "Running" })) else { panic!("an apply") };
        assert_eq!(body["apiVersion"], sc_api::consts::API_VERSION);
        assert_eq!(body["kind"], sc_api::consts::SCI_KIND);
        assert_eq!(body["status"]["phase"], "Running");
    }
}
