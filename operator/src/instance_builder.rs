//! The StoppableContainerInstance a StoppableContainer deploys through. Pure.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};
use sc_api::consts::{LABEL_INSTANCE, LABEL_MANAGED_BY, MANAGED_BY_VALUE, SCI_FINALIZER};
use sc_api::{StoppableContainer, StoppableContainerInstance, StoppableContainerInstanceSpec};

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

/// The instance for a start of `sc`: a snapshot of its template and provider settings. While the
/// workload pod runs, the previous snapshot is kept (pass it as `deployed`), so the instance keeps
/// describing what actually runs.
pub fn build_instance(
    sc: &StoppableContainer,
    deployed: Option<&StoppableContainerInstanceSpec>,
    running: bool,
) -> StoppableContainerInstance {
    let spec = match deployed {
        Some(deployed) => StoppableContainerInstanceSpec { running, ..deployed.clone() },
        None => StoppableContainerInstanceSpec {
            stoppable_container_name: sc.name_any(),
            running,
            template: sc.spec.template.clone(),
            provider: sc.spec.provider.clone(),
            host_path_prefix: sc.spec.host_path_prefix.clone(),
            base_image: workload_image(sc),
            // Resolved against the cluster's limits by the reconcile, which knows them.
            rootfs_size_bytes: None,
        },
    };
    StoppableContainerInstance {
        metadata: ObjectMeta {
            name: Some(sc.name_any()),
            namespace: sc.namespace(),
            labels: Some([(LABEL_MANAGED_BY.to_owned(), MANAGED_BY_VALUE.to_owned()), (LABEL_INSTANCE.to_owned(), sc.name_any())].into()),
            owner_references: Some(vec![controller_reference(sc)]),
            // Keeps the instance (and so the order: workload pod, then provider pod) until the
            // operator has removed its pods, even if someone deletes the instance directly.
            finalizers: Some(vec![SCI_FINALIZER.to_owned()]),
            ..ObjectMeta::default()
        },
        spec,
        status: None,
    }
}

fn workload_image(sc: &StoppableContainer) -> Option<String> {
    let template = &sc.spec.template;
    let from_spec = template.spec.as_ref().and_then(|spec| spec.containers.first()).and_then(|c| c.image.clone());
    from_spec.or_else(|| template.container.as_ref().and_then(|legacy| legacy.0.image.clone()))
}
