//! The consumer pod: the template's pod, with the workload container running `sc-exec`
//! over the persistent rootfs. Pure.

use k8s_openapi::api::core::v1::{
    Affinity, CSIVolumeSource, Container, EnvVar, ExecAction, Lifecycle, LifecycleHandler, NodeAffinity, NodeSelector,
    NodeSelectorRequirement, NodeSelectorTerm, PersistentVolumeClaimVolumeSource, Pod, PodSpec, Probe, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use sc_api::StoppableContainerInstance;
use sc_api::consts::{
    CONSUMER_ROOTFS_PATH, CSI_DRIVER_NAME, EXEC_WRAPPER_PATH, ROLE_CONSUMER, ROOTFS_VOLUME_MOUNT_PATH, ROOTFS_VOLUME_NAME,
    VOLUME_ATTR_SC_NAME,
};
use sc_api::exec_config::EXEC_CONFIG_ENV;
use sc_api::storage::{STORAGE_VOLUME_MOUNT_PATH, STORAGE_VOLUME_NAME};

use crate::meta::{controller_reference, system_labels};
use crate::security::{consumer_security_context, exec_config, kubelet_pod_name};
use crate::settings::PodSettings;
use crate::validate::Workload;

/// Field of a node that required node affinity can match exactly (`matchFields`).
const NODE_NAME_FIELD: &str = "metadata.name";

/// The consumer pod for `workload`, owned by `instance`. `data_node` pins it (required node
/// affinity) to the node that already holds the StoppableContainer's data; without it (first
/// start, or the data on a claim) the scheduler places it by the workload's own needs. With
/// `spec.storage` recorded in the instance, the claim is mounted too (see [`mount_claim`]).
pub fn build_consumer_pod(
    workload: &Workload,
    instance: &StoppableContainerInstance,
    data_node: Option<&str>,
    settings: &PodSettings,
) -> Pod {
    let sc_name = instance.spec.stoppable_container_name.clone();
    let mut labels = workload.labels.clone();
    labels.extend(system_labels(&sc_name, ROLE_CONSUMER));
    let annotations = (!workload.annotations.is_empty()).then(|| workload.annotations.clone());

    let mut spec = workload.pod_spec.clone();
    spec.node_name = None;
    if spec.restart_policy.is_none() {
        spec.restart_policy = Some("Always".into());
    }
    let kubelet_name = kubelet_pod_name(&sc_name, instance.namespace().as_deref().unwrap_or_default());
    let workload_container = wrap_workload_container(workload.container(), spec.security_context.as_ref(), &kubelet_name, settings);
    spec.containers[0] = workload_container;
    spec.volumes.get_or_insert_with(Vec::new).push(rootfs_volume(&sc_name));
    if let Some(storage) = &instance.spec.storage {
        mount_claim(&mut spec, &storage.claim.claim_name);
    }
    if let Some(node) = data_node {
        pin_to_node(&mut spec, node);
    }
    Pod {
        metadata: ObjectMeta {
            name: Some(sc_name),
            namespace: instance.namespace(),
            labels: Some(labels),
            annotations,
            owner_references: Some(vec![controller_reference(instance)]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// With `spec.storage`: the claim as a volume of the pod, mounted read-only in the workload
/// container (kubelet mounts only a volume some container uses). The node plugin finds that
/// mount and puts the overlay's upper and work directories on the claim's filesystem; the
/// workload, in the overlay, never sees it. The scheduler places the pod by the claim (its
/// topology and attach limits).
fn mount_claim(spec: &mut PodSpec, claim_name: &str) {
    spec.volumes.get_or_insert_with(Vec::new).push(Volume {
        name: STORAGE_VOLUME_NAME.to_owned(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource { claim_name: claim_name.to_owned(), read_only: None }),
        ..Volume::default()
    });
    spec.containers[0].volume_mounts.get_or_insert_with(Vec::new).push(VolumeMount {
        name: STORAGE_VOLUME_NAME.to_owned(),
        mount_path: STORAGE_VOLUME_MOUNT_PATH.to_owned(),
        read_only: Some(true),
        ..VolumeMount::default()
    });
}

/// The inline CSI volume through which the node plugin provides the persistent rootfs.
fn rootfs_volume(sc_name: &str) -> Volume {
    Volume {
        name: ROOTFS_VOLUME_NAME.to_owned(),
        csi: Some(CSIVolumeSource {
            driver: CSI_DRIVER_NAME.to_owned(),
            volume_attributes: Some([(VOLUME_ATTR_SC_NAME.to_owned(), sc_name.to_owned())].into()),
            ..CSIVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// The workload container running `sc-exec run -- <command>` with `args`, in the pod kubelet calls
/// `kubelet_name` ([`kubelet_pod_name`]).
fn wrap_workload_container(
    workload: &Container,
    pod_security: Option<&k8s_openapi::api::core::v1::PodSecurityContext>,
    kubelet_name: &str,
    settings: &PodSettings,
) -> Container {
    let config = exec_config(workload, pod_security, kubelet_name, settings.rootfs_wait_seconds);
    // Serializing a struct of plain fields cannot fail; an empty object would still be valid.
    let config_json = serde_json::to_string(&config).unwrap_or_else(|_| "{}".to_owned());
    let mut env = workload.env.clone().unwrap_or_default();
    env.retain(|var| var.name != EXEC_CONFIG_ENV);
    env.push(EnvVar { name: EXEC_CONFIG_ENV.to_owned(), value: Some(config_json), value_from: None });

    // `sc-exec run -- <command>` with the template's `args` as the container's args: the words
    // after `--` are the template's own, where kubelet expands `$(VAR)` as for any container.
    // Which of command and args were set travels in the exec config (`argv`), so sc-exec runs
    // the image's ENTRYPOINT + args when only args are set, and ENTRYPOINT + CMD when neither is
    // (read from the image's config the node plugin publishes in the rootfs's control directory).
    let mut command = vec![EXEC_WRAPPER_PATH.to_owned(), "run".to_owned(), "--".to_owned()];
    command.extend(workload.command.clone().unwrap_or_default());

    let mut volume_mounts: Vec<VolumeMount> = workload
        .volume_mounts
        .iter()
        .flatten()
        .map(|mount| VolumeMount { mount_path: inside_rootfs(&mount.mount_path), ..mount.clone() })
        .collect();
    volume_mounts.push(VolumeMount {
        name: ROOTFS_VOLUME_NAME.to_owned(),
        mount_path: ROOTFS_VOLUME_MOUNT_PATH.to_owned(),
        ..VolumeMount::default()
    });

    Container {
        image: Some(settings.exec_wrapper_image.clone()),
        image_pull_policy: Some(settings.exec_wrapper_pull_policy.clone()),
        command: Some(command),
        args: workload.args.clone().filter(|args| !args.is_empty()),
        // The working directory is a path in the rootfs; sc-exec changes to it after chroot.
        working_dir: None,
        env: Some(env),
        volume_mounts: Some(volume_mounts),
        security_context: Some(consumer_security_context(workload)),
        liveness_probe: workload.liveness_probe.clone().map(probe_inside_rootfs),
        readiness_probe: workload.readiness_probe.clone().map(probe_inside_rootfs),
        startup_probe: workload.startup_probe.clone().map(probe_inside_rootfs),
        lifecycle: workload.lifecycle.clone().map(lifecycle_inside_rootfs),
        ..workload.clone()
    }
}

/// Where a volume the workload mounts at `path` must be mounted so that it appears at `path`
/// inside the rootfs.
pub fn inside_rootfs(path: &str) -> String {
    format!("{CONSUMER_ROOTFS_PATH}/{}", path.trim_start_matches('/'))
}

/// Exec handlers must run in the rootfs (where the workload's programs are), through sc-exec.
fn exec_inside_rootfs(exec: ExecAction) -> ExecAction {
    let mut command = vec![EXEC_WRAPPER_PATH.to_owned(), "--".to_owned()];
    command.extend(exec.command.unwrap_or_default());
    ExecAction { command: Some(command) }
}

fn probe_inside_rootfs(probe: Probe) -> Probe {
    Probe { exec: probe.exec.clone().map(exec_inside_rootfs), ..probe }
}

fn lifecycle_inside_rootfs(lifecycle: Lifecycle) -> Lifecycle {
    let handler = |handler: LifecycleHandler| LifecycleHandler { exec: handler.exec.clone().map(exec_inside_rootfs), ..handler };
    Lifecycle { post_start: lifecycle.post_start.map(handler), pre_stop: lifecycle.pre_stop.map(handler), ..lifecycle }
}

/// Adds "must run on `node`" to the pod's required node affinity. Terms of a required node
/// selector are ORed, so the node requirement is added to each of the user's terms (AND), or
/// becomes the only term. It matches the Node object's name (`matchFields`), not its
/// `kubernetes.io/hostname` label, which may differ from the name.
pub fn pin_to_node(spec: &mut PodSpec, node: &str) {
    let requirement =
        NodeSelectorRequirement { key: NODE_NAME_FIELD.to_owned(), operator: "In".to_owned(), values: Some(vec![node.to_owned()]) };
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    let node_affinity = affinity.node_affinity.get_or_insert_with(NodeAffinity::default);
    let required = node_affinity
        .required_during_scheduling_ignored_during_execution
        .get_or_insert_with(|| NodeSelector { node_selector_terms: Vec::new() });
    if required.node_selector_terms.is_empty() {
        required.node_selector_terms.push(NodeSelectorTerm::default());
    }
    for term in &mut required.node_selector_terms {
        term.match_fields.get_or_insert_with(Vec::new).push(requirement.clone());
    }
}

/// The node a pod is pinned to by [`pin_to_node`], if any (used to tell a pinned pod from one the
/// scheduler may place anywhere).
pub fn pinned_node(pod: &Pod) -> Option<String> {
    let terms =
        pod.spec.as_ref()?.affinity.as_ref()?.node_affinity.as_ref()?.required_during_scheduling_ignored_during_execution.as_ref()?;
    terms.node_selector_terms.iter().flat_map(|term| term.match_fields.iter().flatten()).find_map(|requirement| {
        (requirement.key == NODE_NAME_FIELD && requirement.operator == "In")
            .then(|| requirement.values.as_ref().and_then(|values| values.first().cloned()))
            .flatten()
    })
}
