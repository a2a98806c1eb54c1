//! The provider pod: the workload's image running `sc-exec pause`, on the data node, so that the
//! node plugin can use its root filesystem as the overlay's lower layer. Pure.
//!
//! A stop keeps the provider (it is tiny, and it keeps the image mounted and in use for kubelet's
//! image garbage collection); a start reuses it only when it is [`provider_is_current`], i.e. it
//! was built from the very spec the start would build, which [`PROVIDER_HASH_ANNOTATION`] records.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, Pod, PodSpec, ResourceRequirements, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use sc_api::StoppableContainerInstance;
use sc_api::consts::{EXEC_WRAPPER_DIR, EXEC_WRAPPER_PATH, PROVIDER_CONTAINER_NAME, ROLE_PROVIDER, provider_pod_name};
use sha2::{Digest, Sha256};

use crate::consumer_pod::system_labels;
use crate::instance_builder::controller_reference;
use crate::settings::PodSettings;
use crate::validate::Workload;

/// Volume (an emptyDir) through which the init container hands `sc-exec` to the provider.
pub const EXEC_WRAPPER_VOLUME_NAME: &str = "sc-bin";
/// Where the init container sees that volume (it must not shadow its own `/.sc-bin`).
const INSTALL_DIR: &str = "/sc-bin";
/// Name of the init container that installs `sc-exec`.
pub const INSTALL_CONTAINER_NAME: &str = "install-sc-exec";
/// Annotation on the provider pod: hex SHA-256 of the JSON of the PodSpec it was built with. Only
/// the operator reads it (to decide whether a start can reuse a provider kept by the stop), so it
/// lives here rather than in `sc_api::consts`; a test keeps it under the API group.
pub const PROVIDER_HASH_ANNOTATION: &str = "stoppablecontainer.xtlsoft.top/provider-hash";

fn quantities(cpu: &str, memory: &str) -> BTreeMap<String, Quantity> {
    [("cpu".to_owned(), Quantity(cpu.to_owned())), ("memory".to_owned(), Quantity(memory.to_owned()))].into()
}

/// Default resources of the provider container: it only sleeps.
pub fn default_provider_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(quantities("10m", "16Mi")),
        limits: Some(quantities("100m", "64Mi")),
        ..ResourceRequirements::default()
    }
}

/// No capabilities, no privilege escalation. `runAsNonRoot` is not forced: the image's own user
/// is kept, whatever it is.
fn unprivileged() -> SecurityContext {
    SecurityContext {
        capabilities: Some(Capabilities { drop: Some(vec!["ALL".to_owned()]), add: None }),
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        ..SecurityContext::default()
    }
}

/// Hex SHA-256 of the provider's PodSpec as JSON. k8s-openapi serializes struct fields in a
/// fixed order and maps as sorted `BTreeMap`s, so equal specs always give the same hash.
fn provider_spec_hash(spec: &PodSpec) -> String {
    // Serializing plain data (string-keyed maps, no fallible Serialize impls) cannot fail.
    let json = serde_json::to_vec(spec).unwrap_or_default();
    hex::encode(Sha256::digest(&json))
}

/// Whether `existing`, an owned provider pod left by an earlier run, can serve a start that would
/// build `desired`: it is not being deleted and has not terminated (an evicted pod stays `Failed`
/// forever), it runs on the desired node, and it was built from the same spec (same
/// [`PROVIDER_HASH_ANNOTATION`]; a pod without it was made by an older operator and is never
/// reused).
pub fn provider_is_current(existing: &Pod, desired: &Pod) -> bool {
    let node = |pod: &Pod| pod.spec.as_ref().and_then(|spec| spec.node_name.clone());
    let hash = |pod: &Pod| pod.annotations().get(PROVIDER_HASH_ANNOTATION).cloned();
    let terminated =
        existing.status.as_ref().and_then(|status| status.phase.as_deref()).is_some_and(|phase| phase == "Succeeded" || phase == "Failed");
    existing.metadata.deletion_timestamp.is_none()
        && !terminated
        && node(existing).is_some()
        && node(existing) == node(desired)
        && hash(existing).is_some()
        && hash(existing) == hash(desired)
}

/// The provider pod for `workload`, on `node` (the data node, where its consumer runs).
pub fn build_provider_pod(workload: &Workload, instance: &StoppableContainerInstance, node: &str, settings: &PodSettings) -> Pod {
    let sc_name = &instance.spec.stoppable_container_name;
    let template_spec = &workload.pod_spec;
    let workload_container = workload.container();
    let resources = workload
        .provider
        .resources
        .clone()
        .filter(|resources| resources.requests.is_some() || resources.limits.is_some())
        .unwrap_or_else(default_provider_resources);
    let install = Container {
        name: INSTALL_CONTAINER_NAME.to_owned(),
        image: Some(settings.exec_wrapper_image.clone()),
        image_pull_policy: Some(settings.exec_wrapper_pull_policy.clone()),
        command: Some(vec![EXEC_WRAPPER_PATH.to_owned(), "install".to_owned(), INSTALL_DIR.to_owned()]),
        volume_mounts: Some(vec![VolumeMount {
            name: EXEC_WRAPPER_VOLUME_NAME.to_owned(),
            mount_path: INSTALL_DIR.to_owned(),
            ..VolumeMount::default()
        }]),
        resources: Some(default_provider_resources()),
        security_context: Some(unprivileged()),
        ..Container::default()
    };
    let pause = Container {
        name: PROVIDER_CONTAINER_NAME.to_owned(),
        image: workload_container.image.clone(),
        image_pull_policy: workload_container.image_pull_policy.clone(),
        command: Some(vec![EXEC_WRAPPER_PATH.to_owned(), "pause".to_owned()]),
        volume_mounts: Some(vec![VolumeMount {
            name: EXEC_WRAPPER_VOLUME_NAME.to_owned(),
            mount_path: EXEC_WRAPPER_DIR.to_owned(),
            read_only: Some(true),
            ..VolumeMount::default()
        }]),
        resources: Some(resources),
        security_context: Some(unprivileged()),
        ..Container::default()
    };
    let spec = PodSpec {
        // Bound directly: it must run on the data node, whatever the scheduler thinks.
        node_name: Some(node.to_owned()),
        node_selector: workload.provider.node_selector.clone().filter(|selector| !selector.is_empty()),
        tolerations: workload.provider.tolerations.clone().or_else(|| template_spec.tolerations.clone()),
        image_pull_secrets: template_spec.image_pull_secrets.clone(),
        // The same runtime as the consumer, so the node plugin finds the rootfs where it looks.
        runtime_class_name: template_spec.runtime_class_name.clone(),
        init_containers: Some(vec![install]),
        containers: vec![pause],
        volumes: Some(vec![Volume {
            name: EXEC_WRAPPER_VOLUME_NAME.to_owned(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        }]),
        restart_policy: Some("Always".to_owned()),
        termination_grace_period_seconds: Some(settings.provider_grace_period_seconds),
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        ..PodSpec::default()
    };
    Pod {
        metadata: ObjectMeta {
            name: Some(provider_pod_name(sc_name)),
            namespace: instance.namespace(),
            labels: Some(system_labels(sc_name, ROLE_PROVIDER)),
            annotations: Some([(PROVIDER_HASH_ANNOTATION.to_owned(), provider_spec_hash(&spec))].into()),
            owner_references: Some(vec![controller_reference(instance)]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    }
}
