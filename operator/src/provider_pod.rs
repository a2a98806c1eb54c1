//! The provider pod: the workload's image running `sc-exec pause`, on the data node, so that the
//! node plugin can use its root filesystem as the overlay's lower layer. Pure.
//!
//! It is placed by the scheduler, pinned to the data node by required node affinity (not bound
//! with `nodeName`, which would skip the scheduler's accounting and preemption), with the
//! workload's priority class: while the workload runs, its provider keeps the image in use for
//! kubelet's image garbage collection and must not be the first pod to go.
//!
//! A stop keeps the provider (it is tiny, and it keeps the image mounted and in use for kubelet's
//! image garbage collection); a start reuses it only when it is [`provider_is_current`]: the
//! operator's own pod (the caller checks its recorded UID), built from the very spec the start
//! would build ([`PROVIDER_HASH_ANNOTATION`]), and still running that spec, read from the live pod
//! ([`provider_spec_differences`]): the annotation is copyable and an image can be changed on a
//! live pod.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    CSIVolumeSource, Capabilities, Container, Pod, PodSpec, ResourceRequirements, SecurityContext, Toleration, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use sc_api::StoppableContainerInstance;
use sc_api::consts::{
    CSI_DRIVER_NAME, EXEC_WRAPPER_DIR, EXEC_WRAPPER_PATH, PROVIDER_CONTAINER_NAME, ROLE_PROVIDER, VOLUME_ATTR_EXEC_WRAPPER,
    provider_pod_name,
};
use sha2::{Digest, Sha256};

use crate::consumer_pod::{pin_to_node, pinned_node};
use crate::meta::{controller_reference, system_labels};
use crate::settings::PodSettings;
use crate::validate::Workload;

/// The provider's inline CSI volume through which the node plugin hands it `sc-exec`, read-only
/// (a bind of the plugin's own copy: no init container, no hostPath in the tenant's pod).
pub const EXEC_WRAPPER_VOLUME_NAME: &str = "sc-bin";
/// Taint of a cordoned node.
const UNSCHEDULABLE_TAINT: &str = "node.kubernetes.io/unschedulable";
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

/// The node a provider is on, or is placed on: the scheduler's `spec.nodeName` once it is bound,
/// before that the node its required affinity pins it to.
pub fn provider_node(pod: &Pod) -> Option<String> {
    pod.spec.as_ref().and_then(|spec| spec.node_name.clone()).or_else(|| pinned_node(pod))
}

/// Whether the provider has terminated for good: an evicted, preempted or kubelet-rejected pod
/// stays `Failed` and never runs again (its restart policy does not apply to the pod).
pub fn has_terminated(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|status| status.phase.as_deref()).is_some_and(|phase| phase == "Succeeded" || phase == "Failed")
}

/// Whether `existing`, the operator's own provider pod left by an earlier run (its UID is the
/// recorded one: the caller checks), can serve a start that would build `desired`: it is not being
/// deleted and has not terminated, it is on (or pinned to) the desired node, it was built from the
/// same spec (same [`PROVIDER_HASH_ANNOTATION`]; a pod without it was made by an older operator and
/// is never reused), and its live spec is still that spec ([`provider_spec_differences`]).
pub fn provider_is_current(existing: &Pod, desired: &Pod) -> bool {
    let hash = |pod: &Pod| pod.annotations().get(PROVIDER_HASH_ANNOTATION).cloned();
    let desired_node = provider_node(desired);
    let live_spec_matches = match (&existing.spec, &desired.spec) {
        (Some(live), Some(desired)) => provider_spec_differences(live, desired).is_empty(),
        _ => false,
    };
    existing.metadata.deletion_timestamp.is_none()
        && !has_terminated(existing)
        && desired_node.is_some()
        && provider_node(existing) == desired_node
        && hash(existing).is_some()
        && hash(existing) == hash(desired)
        && live_spec_matches
}

/// The security-relevant fields of a provider's live spec that differ from the spec the operator
/// builds, as field paths (empty: the live pod runs what the operator would build). These decide
/// what the provider's root filesystem is and what its process may do: every container's and init
/// container's name, image, command, args, volume mounts and securityContext; ephemeral
/// containers (there must be none); volumes; host namespaces; the pod securityContext; the service
/// account token; the runtime class; the node placement (selector and affinity; the bound node
/// itself is checked by [`provider_is_current`]).
///
/// Values the API server fills in when a field is omitted (a `procMount` of `Default`, a
/// `mountPropagation` of `None`, an empty pod securityContext, ...) count as omitted, so a
/// genuine provider read back from the API server has no differences. Fields the API server or
/// admission set on their own (tolerations, priority, DNS policy, scheduler, service account
/// name, termination message settings, requests copied from limits) are not compared: they do not
/// change what the root filesystem is, and the hash covers everything the operator wrote.
pub fn provider_spec_differences(live: &PodSpec, desired: &PodSpec) -> Vec<String> {
    let mut differences = Vec::new();
    compare_containers("containers", &live.containers, &desired.containers, &mut differences);
    let none = Vec::new();
    compare_containers(
        "initContainers",
        live.init_containers.as_ref().unwrap_or(&none),
        desired.init_containers.as_ref().unwrap_or(&none),
        &mut differences,
    );
    let ephemeral_count = |spec: &PodSpec| spec.ephemeral_containers.as_ref().map_or(0, Vec::len);
    if ephemeral_count(live) != ephemeral_count(desired) {
        differences.push("ephemeralContainers".to_owned());
    }
    let or_empty = |volumes: &Option<Vec<Volume>>| volumes.clone().unwrap_or_default();
    let checks = [
        ("volumes", or_empty(&live.volumes) == or_empty(&desired.volumes)),
        ("hostNetwork", live.host_network.unwrap_or(false) == desired.host_network.unwrap_or(false)),
        ("hostPID", live.host_pid.unwrap_or(false) == desired.host_pid.unwrap_or(false)),
        ("hostIPC", live.host_ipc.unwrap_or(false) == desired.host_ipc.unwrap_or(false)),
        ("hostUsers", live.host_users.unwrap_or(true) == desired.host_users.unwrap_or(true)),
        ("shareProcessNamespace", live.share_process_namespace.unwrap_or(false) == desired.share_process_namespace.unwrap_or(false)),
        ("securityContext", live.security_context.clone().unwrap_or_default() == desired.security_context.clone().unwrap_or_default()),
        ("automountServiceAccountToken", live.automount_service_account_token == desired.automount_service_account_token),
        ("runtimeClassName", live.runtime_class_name == desired.runtime_class_name),
        ("nodeSelector", live.node_selector.clone().unwrap_or_default() == desired.node_selector.clone().unwrap_or_default()),
        ("affinity", live.affinity == desired.affinity),
    ];
    differences.extend(checks.into_iter().filter(|(_, equal)| !equal).map(|(field, _)| field.to_owned()));
    differences
}

fn compare_containers(field: &str, live: &[Container], desired: &[Container], differences: &mut Vec<String>) {
    if live.len() != desired.len() {
        differences.push(field.to_owned());
        return;
    }
    let or_empty = |list: &Option<Vec<String>>| list.clone().unwrap_or_default();
    let mounts = |container: &Container| container.volume_mounts.iter().flatten().map(normalized_mount).collect::<Vec<_>>();
    let security = |container: &Container| container.security_context.clone().map(normalized_security_context);
    for (index, (live, desired)) in live.iter().zip(desired).enumerate() {
        let checks = [
            ("name", live.name == desired.name),
            ("image", live.image == desired.image),
            ("command", or_empty(&live.command) == or_empty(&desired.command)),
            ("args", or_empty(&live.args) == or_empty(&desired.args)),
            ("volumeMounts", mounts(live) == mounts(desired)),
            ("securityContext", security(live) == security(desired)),
        ];
        differences.extend(checks.into_iter().filter(|(_, equal)| !equal).map(|(name, _)| format!("{field}[{index}].{name}")));
    }
}

/// A volume mount with the values Kubernetes assumes for omitted fields written out.
fn normalized_mount(mount: &VolumeMount) -> VolumeMount {
    VolumeMount {
        read_only: Some(mount.read_only.unwrap_or(false)),
        mount_propagation: Some(mount.mount_propagation.clone().unwrap_or_else(|| "None".to_owned())),
        recursive_read_only: Some(mount.recursive_read_only.clone().unwrap_or_else(|| "Disabled".to_owned())),
        sub_path: mount.sub_path.clone().filter(|path| !path.is_empty()),
        sub_path_expr: mount.sub_path_expr.clone().filter(|path| !path.is_empty()),
        ..mount.clone()
    }
}

/// A container securityContext with the API server's `procMount` default taken out.
fn normalized_security_context(context: SecurityContext) -> SecurityContext {
    SecurityContext { proc_mount: context.proc_mount.filter(|mount| mount != "Default"), ..context }
}

/// The inline CSI volume holding `sc-exec`: the node plugin publishes its own copy there,
/// read-only (see the node plugin's `exec_wrapper.rs`). The attribute tells it from a rootfs.
fn exec_wrapper_volume() -> Volume {
    Volume {
        name: EXEC_WRAPPER_VOLUME_NAME.to_owned(),
        csi: Some(CSIVolumeSource {
            driver: CSI_DRIVER_NAME.to_owned(),
            read_only: Some(true),
            volume_attributes: Some([(VOLUME_ATTR_EXEC_WRAPPER.to_owned(), "true".to_owned())].into()),
            ..CSIVolumeSource::default()
        }),
        ..Volume::default()
    }
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
    let mut tolerations = workload.provider.tolerations.clone().or_else(|| template_spec.tolerations.clone()).unwrap_or_default();
    // The provider follows its consumer pod, which respects a cordon by itself: a provider lost
    // while the workload runs on a cordoned node must still be replaced there (as DaemonSet pods
    // tolerate it).
    tolerations.push(Toleration {
        key: Some(UNSCHEDULABLE_TAINT.to_owned()),
        operator: Some("Exists".to_owned()),
        effect: Some("NoSchedule".to_owned()),
        ..Toleration::default()
    });
    let mut spec = PodSpec {
        node_selector: workload.provider.node_selector.clone().filter(|selector| !selector.is_empty()),
        tolerations: Some(tolerations),
        // Preempted no sooner than the workload that needs it.
        priority_class_name: template_spec.priority_class_name.clone(),
        image_pull_secrets: template_spec.image_pull_secrets.clone(),
        // The same runtime as the consumer, so the node plugin finds the rootfs where it looks.
        runtime_class_name: template_spec.runtime_class_name.clone(),
        containers: vec![pause],
        volumes: Some(vec![exec_wrapper_volume()]),
        restart_policy: Some("Always".to_owned()),
        termination_grace_period_seconds: Some(settings.provider_grace_period_seconds),
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        ..PodSpec::default()
    };
    // Through the scheduler, which must place it on the data node and nowhere else.
    pin_to_node(&mut spec, node);
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

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{EphemeralContainer, HostPathVolumeSource, PodStatus};
    use sc_api::StoppableContainer;

    use super::*;
    use crate::instance_builder::build_instance;
    use crate::validate::validate;

    const NODE: &str = "worker-1";

    /// The provider a start of a small StoppableContainer builds on [`NODE`].
    fn desired() -> Pod {
        let sc: StoppableContainer = serde_json::from_value(serde_json::json!({
            "apiVersion": sc_api::consts::API_VERSION, "kind": sc_api::consts::SC_KIND,
            "metadata": { "name": "box", "namespace": "team-a", "uid": "sc-uid" },
            "spec": { "running": true, "template": { "spec": {
                "runtimeClassName": "runc",
                "containers": [{ "name": "main", "image": "ubuntu:22.04", "command": ["sleep", "infinity"] }]
            } } }
        }))
        .expect("a StoppableContainer");
        let valid = validate(&sc).expect("valid");
        let mut instance = build_instance(&sc, None, true);
        instance.metadata.uid = Some("instance-uid".into());
        build_provider_pod(&valid.workload, &instance, NODE, &PodSettings::for_tests())
    }

    /// `pod` as the API server hands it back: everything it fills in or admission adds.
    fn as_stored(mut pod: Pod) -> Pod {
        pod.metadata.uid = Some("provider-uid".into());
        pod.metadata.resource_version = Some("42".into());
        let spec = pod.spec.get_or_insert_with(PodSpec::default);
        spec.node_name.get_or_insert_with(|| NODE.to_owned());
        spec.dns_policy = Some("ClusterFirst".into());
        spec.scheduler_name = Some("default-scheduler".into());
        spec.security_context = Some(Default::default());
        spec.service_account_name = Some("default".into());
        spec.service_account = Some("default".into());
        spec.priority = Some(0);
        spec.preemption_policy = Some("PreemptLowerPriority".into());
        spec.tolerations.get_or_insert_with(Vec::new).push(Toleration {
            key: Some("node.kubernetes.io/not-ready".into()),
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            toleration_seconds: Some(300),
            value: None,
        });
        for container in spec.containers.iter_mut().chain(spec.init_containers.iter_mut().flatten()) {
            container.termination_message_path = Some("/dev/termination-log".into());
            container.termination_message_policy = Some("File".into());
            container.image_pull_policy.get_or_insert_with(|| "IfNotPresent".into());
            if let Some(context) = container.security_context.as_mut() {
                context.proc_mount = Some("Default".into());
            }
            for mount in container.volume_mounts.iter_mut().flatten() {
                mount.mount_propagation = Some("None".into());
                mount.read_only.get_or_insert(false);
            }
        }
        pod.status = Some(PodStatus { phase: Some("Running".into()), ..PodStatus::default() });
        pod
    }

    /// An edit of a live provider's spec, as a test applies it.
    type SpecChange = dyn Fn(&mut PodSpec);

    fn live_spec(pod: &mut Pod) -> &mut PodSpec {
        pod.spec.as_mut().expect("a spec")
    }

    #[test]
    fn a_genuine_provider_read_back_from_the_api_server_is_reused() {
        let desired = desired();
        let stored = as_stored(desired.clone());
        assert_eq!(
            provider_spec_differences(stored.spec.as_ref().expect("spec"), desired.spec.as_ref().expect("spec")),
            Vec::<String>::new()
        );
        assert!(provider_is_current(&stored, &desired));
    }

    #[test]
    fn a_copied_hash_annotation_on_a_pod_with_another_image_is_not_reused() {
        let desired = desired();
        let mut swapped = as_stored(desired.clone());
        // `kubectl set image pod/box-provider rootfs=attacker/rootfs`: the one container field a
        // pod update may change; the annotation stays as the operator wrote it.
        live_spec(&mut swapped).containers[0].image = Some("attacker.example/rootfs:1".into());
        assert_eq!(swapped.annotations().get(PROVIDER_HASH_ANNOTATION), desired.annotations().get(PROVIDER_HASH_ANNOTATION));
        assert_eq!(
            provider_spec_differences(swapped.spec.as_ref().expect("spec"), desired.spec.as_ref().expect("spec")),
            ["containers[0].image"]
        );
        assert!(!provider_is_current(&swapped, &desired));

        let mut init_added = as_stored(desired.clone());
        live_spec(&mut init_added).init_containers =
            Some(vec![Container { name: "x".into(), image: Some("attacker.example/sc-exec".into()), ..Container::default() }]);
        assert!(!provider_is_current(&init_added, &desired), "an init container could replace sc-exec: it counts too");
    }

    #[test]
    fn the_provider_gets_sc_exec_from_the_node_plugin_with_no_init_container() {
        let desired = desired();
        let spec = desired.spec.as_ref().expect("spec");
        assert_eq!(spec.init_containers, None, "no container start and exit before the provider's");
        let volumes = spec.volumes.as_ref().expect("volumes");
        assert_eq!(volumes.len(), 1);
        let csi = volumes[0].csi.as_ref().expect("an inline CSI volume, allowed under PodSecurity baseline and restricted");
        assert_eq!(csi.driver, CSI_DRIVER_NAME);
        assert_eq!(csi.read_only, Some(true));
        assert_eq!(csi.volume_attributes, Some([(VOLUME_ATTR_EXEC_WRAPPER.to_owned(), "true".to_owned())].into()));
        assert_eq!(volumes[0].host_path, None);
        let mounts = spec.containers[0].volume_mounts.as_ref().expect("mounts");
        assert_eq!(mounts.len(), 1);
        assert_eq!(
            (mounts[0].name.as_str(), mounts[0].mount_path.as_str(), mounts[0].read_only),
            (EXEC_WRAPPER_VOLUME_NAME, EXEC_WRAPPER_DIR, Some(true))
        );
        assert_eq!(spec.containers[0].command.as_deref(), Some(&[EXEC_WRAPPER_PATH.to_owned(), "pause".to_owned()][..]));
    }

    /// A provider the operator built before the exec-wrapper volume: `sc-exec` installed by an
    /// init container into an emptyDir. A start never reuses it; it replaces it.
    #[test]
    fn a_provider_of_the_older_operator_with_its_init_container_is_not_current() {
        let desired = desired();
        let mut older = as_stored(desired.clone());
        let spec = live_spec(&mut older);
        spec.init_containers = Some(vec![Container {
            name: "install-sc-exec".into(),
            image: Some("stoppablecontainer/exec-wrapper:1".into()),
            command: Some(vec![EXEC_WRAPPER_PATH.into(), "install".into(), "/sc-bin".into()]),
            volume_mounts: Some(vec![VolumeMount {
                name: EXEC_WRAPPER_VOLUME_NAME.into(),
                mount_path: "/sc-bin".into(),
                ..VolumeMount::default()
            }]),
            ..Container::default()
        }]);
        spec.volumes =
            Some(vec![Volume { name: EXEC_WRAPPER_VOLUME_NAME.into(), empty_dir: Some(Default::default()), ..Volume::default() }]);
        let hash = provider_spec_hash(spec);
        older.metadata.annotations = Some([(PROVIDER_HASH_ANNOTATION.to_owned(), hash)].into());
        assert_eq!(
            provider_spec_differences(older.spec.as_ref().expect("spec"), desired.spec.as_ref().expect("spec")),
            ["initContainers", "volumes"]
        );
        assert!(!provider_is_current(&older, &desired));
    }

    #[test]
    fn every_security_relevant_field_counts() {
        let desired = desired();
        let changes: Vec<(&str, Box<SpecChange>)> = vec![
            ("containers[0].command", Box::new(|spec| spec.containers[0].command = Some(vec!["/bin/sh".into()]))),
            ("containers[0].args", Box::new(|spec| spec.containers[0].args = Some(vec!["-c".into(), "chroot /data".into()]))),
            ("containers[0].name", Box::new(|spec| spec.containers[0].name = "other".into())),
            (
                "containers[0].volumeMounts",
                Box::new(|spec| {
                    spec.containers[0].volume_mounts.get_or_insert_with(Vec::new).push(VolumeMount {
                        name: "host".into(),
                        mount_path: "/host".into(),
                        ..VolumeMount::default()
                    })
                }),
            ),
            (
                "containers[0].securityContext",
                Box::new(|spec| spec.containers[0].security_context.get_or_insert_with(Default::default).privileged = Some(true)),
            ),
            ("containers", Box::new(|spec| spec.containers.push(Container { name: "extra".into(), ..Container::default() }))),
            (
                "initContainers",
                Box::new(|spec| spec.init_containers = Some(vec![Container { name: "extra".into(), ..Container::default() }])),
            ),
            (
                "ephemeralContainers",
                Box::new(|spec| spec.ephemeral_containers = Some(vec![EphemeralContainer { name: "debug".into(), ..Default::default() }])),
            ),
            (
                "volumes",
                Box::new(|spec| {
                    spec.volumes.get_or_insert_with(Vec::new).push(Volume {
                        name: "host".into(),
                        host_path: Some(HostPathVolumeSource { path: "/".into(), type_: None }),
                        ..Volume::default()
                    })
                }),
            ),
            ("hostNetwork", Box::new(|spec| spec.host_network = Some(true))),
            ("hostPID", Box::new(|spec| spec.host_pid = Some(true))),
            ("hostIPC", Box::new(|spec| spec.host_ipc = Some(true))),
            ("hostUsers", Box::new(|spec| spec.host_users = Some(false))),
            ("shareProcessNamespace", Box::new(|spec| spec.share_process_namespace = Some(true))),
            ("securityContext", Box::new(|spec| spec.security_context.get_or_insert_with(Default::default).run_as_user = Some(0))),
            ("automountServiceAccountToken", Box::new(|spec| spec.automount_service_account_token = Some(true))),
            ("runtimeClassName", Box::new(|spec| spec.runtime_class_name = Some("kata".into()))),
            ("nodeSelector", Box::new(|spec| spec.node_selector = Some([("pool".to_owned(), "other".to_owned())].into()))),
            ("affinity", Box::new(|spec| spec.affinity = Some(Default::default()))),
        ];
        for (field, change) in changes {
            let mut changed = as_stored(desired.clone());
            change(live_spec(&mut changed));
            let differences = provider_spec_differences(changed.spec.as_ref().expect("spec"), desired.spec.as_ref().expect("spec"));
            assert_eq!(differences, [field], "{field}");
            assert!(!provider_is_current(&changed, &desired), "{field}");
        }
    }

    #[test]
    fn the_provider_is_placed_by_the_scheduler_on_the_data_node_only() {
        let desired = desired();
        let spec = desired.spec.as_ref().expect("spec");
        assert_eq!(spec.node_name, None, "not bound directly: the scheduler accounts for it and can preempt for it");
        assert_eq!(pinned_node(&desired).as_deref(), Some(NODE));
        let terms = &spec
            .affinity
            .as_ref()
            .and_then(|affinity| affinity.node_affinity.as_ref())
            .and_then(|node| node.required_during_scheduling_ignored_during_execution.as_ref())
            .expect("required node affinity")
            .node_selector_terms;
        assert_eq!(terms.len(), 1);
        assert_eq!(terms[0].match_expressions, None, "the node's name, not its hostname label");
        let cordon = spec.tolerations.iter().flatten().find(|toleration| toleration.key.as_deref() == Some(UNSCHEDULABLE_TAINT));
        assert_eq!(cordon.and_then(|toleration| toleration.effect.as_deref()), Some("NoSchedule"));
    }

    #[test]
    fn the_node_is_the_bound_one_or_else_the_pinned_one() {
        let desired = desired();
        let stored = as_stored(desired.clone());
        assert_eq!(provider_node(&stored).as_deref(), Some(NODE));
        let mut elsewhere = stored.clone();
        live_spec(&mut elsewhere).node_name = Some("worker-2".into());
        assert_eq!(provider_node(&elsewhere).as_deref(), Some("worker-2"), "the scheduler's choice is what counts once made");
        assert!(!provider_is_current(&elsewhere, &desired), "on another node");
        // Not scheduled yet: starting on the data node, not on a wrong one.
        let mut starting = stored.clone();
        live_spec(&mut starting).node_name = None;
        assert_eq!(provider_node(&starting).as_deref(), Some(NODE));
        assert!(provider_is_current(&starting, &desired));
        let mut nowhere = starting.clone();
        live_spec(&mut nowhere).affinity = None;
        assert_eq!(provider_node(&nowhere), None, "neither bound nor pinned");
    }

    #[test]
    fn the_provider_has_the_workloads_priority_class() {
        let sc: StoppableContainer = serde_json::from_value(serde_json::json!({
            "metadata": { "name": "box", "namespace": "team-a" },
            "spec": { "template": { "spec": { "priorityClassName": "dev", "containers": [{ "name": "main", "image": "alpine" }] } } }
        }))
        .expect("a StoppableContainer");
        let valid = validate(&sc).expect("valid");
        let provider = build_provider_pod(&valid.workload, &build_instance(&sc, None, true), NODE, &PodSettings::for_tests());
        assert_eq!(provider.spec.and_then(|spec| spec.priority_class_name).as_deref(), Some("dev"));
    }

    #[test]
    fn terminated_providers_are_recognised() {
        let mut pod = as_stored(desired());
        assert!(!has_terminated(&pod));
        for phase in ["Failed", "Succeeded"] {
            pod.status = Some(PodStatus { phase: Some(phase.into()), ..PodStatus::default() });
            assert!(has_terminated(&pod), "{phase}");
        }
    }
}
