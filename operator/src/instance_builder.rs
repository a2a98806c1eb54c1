//! The StoppableContainerInstance a StoppableContainer deploys through. Pure.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use sc_api::consts::{LABEL_INSTANCE, LABEL_MANAGED_BY, MANAGED_BY_VALUE, SCI_FINALIZER};
use sc_api::{StoppableContainer, StoppableContainerInstance, StoppableContainerInstanceSpec};

use crate::meta::controller_reference;

/// The instance for a start of `sc`: a snapshot of its template and provider settings. While the
/// consumer pod runs, the previous snapshot is kept (pass it as `deployed`), so the instance keeps
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
            // Resolved against the cluster's limits by the reconcile, which knows them
            // (`validate::effective_rootfs_size`).
            rootfs_size_bytes: None,
            // Recorded by the reconcile once it has created the claim.
            storage: None,
        },
    };
    StoppableContainerInstance {
        metadata: ObjectMeta {
            name: Some(sc.name_any()),
            namespace: sc.namespace(),
            labels: Some([(LABEL_MANAGED_BY.to_owned(), MANAGED_BY_VALUE.to_owned()), (LABEL_INSTANCE.to_owned(), sc.name_any())].into()),
            owner_references: Some(vec![controller_reference(sc)]),
            // Keeps the instance (and so the order: consumer pod, then provider pod) until the
            // operator has removed its pods, even if someone deletes the instance directly.
            finalizers: Some(vec![SCI_FINALIZER.to_owned()]),
            ..ObjectMeta::default()
        },
        spec,
        status: None,
    }
}

/// Whether the running consumer pod, deployed from `deployed`, is older than what `sc` asks for:
/// its template or provider settings changed, or its `spec.rootfsSize` now resolves to another
/// size than the deployed one (`rootfs_size_bytes`, what a start would use; None while the spec
/// has problems). A size that differs only because the administrator changed the default is not
/// the user's change and does not ask for a restart: it applies at the next start anyway.
pub fn restart_required(sc: &StoppableContainer, deployed: &StoppableContainerInstanceSpec, rootfs_size_bytes: Option<u64>) -> bool {
    let size_changed = sc.spec.rootfs_size.is_some() && rootfs_size_bytes.is_some_and(|bytes| deployed.rootfs_size_bytes != Some(bytes));
    deployed.template != sc.spec.template || deployed.provider != sc.spec.provider || size_changed
}

fn workload_image(sc: &StoppableContainer) -> Option<String> {
    let template = &sc.spec.template;
    let from_spec = template.spec.as_ref().and_then(|spec| spec.containers.first()).and_then(|c| c.image.clone());
    from_spec.or_else(|| template.container.as_ref().and_then(|legacy| legacy.0.image.clone()))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    use super::*;

    const GI: u64 = 1 << 30;

    fn sc(rootfs_size: Option<&str>) -> StoppableContainer {
        let mut sc: StoppableContainer = serde_json::from_value(serde_json::json!({
            "metadata": { "name": "box", "namespace": "team-a", "uid": "uid-1" },
            "spec": { "running": true, "template": { "spec": { "containers": [{ "name": "main", "image": "alpine" }] } } }
        }))
        .expect("a StoppableContainer");
        sc.spec.rootfs_size = rootfs_size.map(|size| Quantity(size.into()));
        sc
    }

    fn deployed(sc: &StoppableContainer, rootfs_size_bytes: Option<u64>) -> StoppableContainerInstanceSpec {
        StoppableContainerInstanceSpec { rootfs_size_bytes, ..build_instance(sc, None, true).spec }
    }

    #[test]
    fn a_fresh_snapshot_leaves_the_size_to_the_start_and_a_deployed_one_keeps_it() {
        let sc = sc(Some("20Gi"));
        assert_eq!(build_instance(&sc, None, true).spec.rootfs_size_bytes, None);
        let running = deployed(&sc, Some(20 * GI));
        let stopped = build_instance(&sc, Some(&running), false);
        assert_eq!((stopped.spec.running, stopped.spec.rootfs_size_bytes), (false, Some(20 * GI)));
    }

    #[test]
    fn a_changed_template_provider_or_requested_size_requires_a_restart() {
        let current = sc(Some("20Gi"));
        let spec = deployed(&current, Some(20 * GI));
        assert!(!restart_required(&current, &spec, Some(20 * GI)), "nothing changed");
        assert!(restart_required(&sc(Some("30Gi")), &spec, Some(30 * GI)), "a grow asked for");
        assert!(!restart_required(&sc(Some("30Gi")), &spec, None), "an invalid size is SpecValid's to report");
        let mut image_changed = current.clone();
        if let Some(pod) = image_changed.spec.template.spec.as_mut() {
            pod.containers[0].image = Some("ubuntu".into());
        }
        assert!(restart_required(&image_changed, &spec, Some(20 * GI)));
        let mut provider_changed = current.clone();
        provider_changed.spec.provider = Some(sc_api::ProviderSpec::default());
        assert!(restart_required(&provider_changed, &spec, Some(20 * GI)));
        // Unset: a default the administrator changed is no change of the user's.
        let unset = sc(None);
        assert!(!restart_required(&unset, &deployed(&unset, Some(10 * GI)), Some(20 * GI)));
        // Set on a workload deployed before sizes existed: the next start applies a limit.
        assert!(restart_required(&current, &deployed(&current, None), Some(20 * GI)));
    }
}
