//! The short-lived pod through which `kubectl sc diff` reads a StoppableContainer's persistent
//! layer (the overlay's upper directory), running or stopped, without node access: a pod in the
//! SC's own namespace whose root filesystem is the SC's image (so `/` is the lower to compare
//! with), with `sc-exec` from the node plugin's exec-wrapper volume and the upper from its
//! read-only layer volume. Built by a pure function from the SC's recorded status.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    CSIVolumeSource, Capabilities, Container, PersistentVolumeClaimVolumeSource, Pod, PodSpec, ResourceRequirements, SecurityContext,
    Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::ObjectMeta;
use sc_api::StoppableContainer;
use sc_api::consts::{
    API_VERSION, CSI_DRIVER_NAME, EXEC_WRAPPER_DIR, EXEC_WRAPPER_PATH, SC_KIND, VOLUME_ATTR_EXEC_WRAPPER, VOLUME_ATTR_LAYER_OF,
};

/// Where the layer volume is mounted in the pod: `upper/` and `opaque-dirs` are in it.
pub const LAYER_MOUNT_PATH: &str = "/.sc-layer";
/// Where a claim-backed SC's claim is mounted in the pod (kubelet mounts a claim only for a pod
/// that uses it; the node plugin finds the upper on it).
pub const CLAIM_MOUNT_PATH: &str = "/.sc-claim";
/// The label that names the StoppableContainer a layer pod reads, so leftovers can be listed.
pub const LABEL_LAYER_OF: &str = "stoppablecontainer.xtlsoft.top/layer-of";
const CONTAINER_NAME: &str = "layer";

/// What the pod runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerTask {
    /// `sc-exec layer diff`: the changes against the image, as JSON on stdout.
    Diff,
}

impl LayerTask {
    fn name(self) -> &'static str {
        match self {
            Self::Diff => "diff",
        }
    }

    fn argv(self) -> Vec<String> {
        let upper = format!("{LAYER_MOUNT_PATH}/upper");
        let opaque = format!("{LAYER_MOUNT_PATH}/opaque-dirs");
        match self {
            Self::Diff => [EXEC_WRAPPER_PATH, "layer", "diff", "--upper", &upper, "--opaque-dirs", &opaque, "--lower", "/"]
                .map(str::to_owned)
                .to_vec(),
        }
    }
}

/// Why no layer pod can be made for this StoppableContainer (yet).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum LayerPodError {
    #[error("StoppableContainer {name:?} has no UID yet (it is being created); try again in a moment")]
    NotCreated { name: String },
    #[error(
        "StoppableContainer {name:?} has not run yet, so its root filesystem holds no changes and no image is recorded for it; start it once (kubectl sc start {name} --wait)"
    )]
    NeverRan { name: String },
}

/// The pod for `task` over `sc`'s layer. Node-local data is read on its recorded data node; a
/// claim is read wherever it can be attached (on the node it runs on while it runs, since a
/// ReadWriteOnce claim is attached there).
pub fn build_layer_pod(sc: &StoppableContainer, task: LayerTask) -> Result<Pod, LayerPodError> {
    let name = sc.metadata.name.clone().unwrap_or_default();
    let uid = sc.metadata.uid.clone().ok_or_else(|| LayerPodError::NotCreated { name: name.clone() })?;
    let status = sc.status.clone().unwrap_or_default();
    let image = status.image.as_ref().map(|image| image.image_ref.clone()).filter(|image| !image.is_empty());
    let claim = status.storage.as_ref().map(|storage| storage.claim.claim_name.clone());
    let node = match &claim {
        None => status.data_node_name.clone(),
        Some(_) => status.node_name.clone().filter(|_| sc.spec.running),
    };
    let (Some(image), true) = (image, claim.is_some() || node.is_some()) else {
        return Err(LayerPodError::NeverRan { name });
    };

    let mut volumes = vec![csi_volume("sc-bin", VOLUME_ATTR_EXEC_WRAPPER, "true"), csi_volume("sc-layer", VOLUME_ATTR_LAYER_OF, &name)];
    let mut mounts = vec![read_only_mount("sc-bin", EXEC_WRAPPER_DIR), read_only_mount("sc-layer", LAYER_MOUNT_PATH)];
    if let Some(claim_name) = claim {
        volumes.push(Volume {
            name: "sc-claim".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource { claim_name, read_only: Some(true) }),
            ..Volume::default()
        });
        mounts.push(read_only_mount("sc-claim", CLAIM_MOUNT_PATH));
    }
    let container = Container {
        name: CONTAINER_NAME.into(),
        image: Some(image),
        image_pull_policy: Some("IfNotPresent".into()),
        command: Some(task.argv()),
        volume_mounts: Some(mounts),
        resources: Some(ResourceRequirements {
            requests: Some(quantities(&[("cpu", "10m"), ("memory", "32Mi")])),
            limits: Some(quantities(&[("memory", "512Mi")])),
            ..ResourceRequirements::default()
        }),
        // Root reads every file of the layer whatever its owner and mode (DAC_OVERRIDE, which
        // PodSecurity baseline admits); nothing else is needed, and nothing is written.
        security_context: Some(SecurityContext {
            run_as_user: Some(0),
            run_as_non_root: Some(false),
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), add: Some(vec!["DAC_OVERRIDE".into()]) }),
            ..SecurityContext::default()
        }),
        ..Container::default()
    };
    Ok(Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-{}-", truncated(&name, 40), task.name())),
            namespace: sc.metadata.namespace.clone(),
            labels: Some([(LABEL_LAYER_OF.to_owned(), name.clone())].into()),
            // Goes with the StoppableContainer if this command is interrupted before it deletes it.
            owner_references: Some(vec![OwnerReference {
                api_version: API_VERSION.into(),
                kind: SC_KIND.into(),
                name,
                uid,
                ..OwnerReference::default()
            }]),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers: vec![container],
            restart_policy: Some("Never".into()),
            node_name: node,
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            termination_grace_period_seconds: Some(1),
            volumes: Some(volumes),
            ..PodSpec::default()
        }),
        status: None,
    })
}

fn csi_volume(name: &str, attribute: &str, value: &str) -> Volume {
    Volume {
        name: name.into(),
        csi: Some(CSIVolumeSource {
            driver: CSI_DRIVER_NAME.into(),
            read_only: Some(true),
            volume_attributes: Some([(attribute.to_owned(), value.to_owned())].into()),
            ..CSIVolumeSource::default()
        }),
        ..Volume::default()
    }
}

fn read_only_mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount { name: name.into(), mount_path: path.into(), read_only: Some(true), ..VolumeMount::default() }
}

fn quantities(pairs: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    pairs.iter().map(|(resource, amount)| ((*resource).to_owned(), Quantity((*amount).to_owned()))).collect()
}

/// A prefix of `name` short enough for `<prefix>-<task>-<5 random>` to stay a valid pod name.
fn truncated(name: &str, max: usize) -> &str {
    let cut = name.char_indices().nth(max).map_or(name.len(), |(index, _)| index);
    name[..cut].trim_end_matches('-')
}

#[cfg(test)]
mod tests {
    use sc_api::stoppable_container::ImageStatus;
    use sc_api::storage::{ClaimRecord, StorageStatus};
    use sc_api::{StoppableContainerStatus, WorkloadTemplate};

    use super::*;

    fn sc(status: Option<StoppableContainerStatus>, running: bool) -> StoppableContainer {
        let mut sc = StoppableContainer::new(
            "dev",
            sc_api::StoppableContainerSpec { running, template: WorkloadTemplate::default(), ..Default::default() },
        );
        sc.metadata.namespace = Some("team-a".into());
        sc.metadata.uid = Some("uid-1".into());
        sc.status = status;
        sc
    }

    fn ran_on(node: &str) -> StoppableContainerStatus {
        StoppableContainerStatus {
            data_node_name: Some(node.into()),
            node_name: Some(node.into()),
            image: Some(ImageStatus { image_ref: "docker.io/library/ubuntu@sha256:abc".into(), ..ImageStatus::default() }),
            ..StoppableContainerStatus::default()
        }
    }

    fn spec(pod: &Pod) -> &PodSpec {
        pod.spec.as_ref().expect("spec")
    }

    #[test]
    fn a_node_local_layer_is_read_on_its_data_node_from_the_image_it_runs_over() {
        let pod = build_layer_pod(&sc(Some(ran_on("node-1")), false), LayerTask::Diff).expect("pod");
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("dev-diff-"));
        assert_eq!(pod.metadata.namespace.as_deref(), Some("team-a"));
        let owner = &pod.metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!((owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()), ("StoppableContainer", "dev", "uid-1"));
        let spec = spec(&pod);
        assert_eq!(spec.node_name.as_deref(), Some("node-1"));
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
        let container = &spec.containers[0];
        assert_eq!(container.image.as_deref(), Some("docker.io/library/ubuntu@sha256:abc"));
        let argv = container.command.as_ref().expect("command");
        assert_eq!(argv[..3], ["/.sc-bin/sc-exec", "layer", "diff"]);
        assert!(argv.windows(2).any(|pair| pair == ["--upper", "/.sc-layer/upper"]), "{argv:?}");
        let volumes = spec.volumes.as_ref().expect("volumes");
        let attributes: Vec<_> = volumes.iter().filter_map(|volume| volume.csi.as_ref()?.volume_attributes.clone()).collect();
        assert_eq!(
            attributes,
            [
                BTreeMap::from([(VOLUME_ATTR_EXEC_WRAPPER.to_owned(), "true".to_owned())]),
                BTreeMap::from([(VOLUME_ATTR_LAYER_OF.to_owned(), "dev".to_owned())])
            ]
        );
        assert!(volumes.iter().all(|volume| volume.csi.as_ref().is_some_and(|csi| csi.read_only == Some(true))));
        assert!(container.volume_mounts.as_ref().expect("mounts").iter().all(|mount| mount.read_only == Some(true)));
        let security = container.security_context.as_ref().expect("security context");
        assert_eq!(security.allow_privilege_escalation, Some(false));
        assert_eq!(security.capabilities.as_ref().and_then(|caps| caps.add.clone()), Some(vec!["DAC_OVERRIDE".to_owned()]));
    }

    #[test]
    fn a_claim_is_mounted_by_the_pod_and_read_where_the_sc_runs_or_anywhere_while_stopped() {
        let mut status = ran_on("node-1");
        status.storage =
            Some(StorageStatus { claim: ClaimRecord { claim_name: "dev-rootfs".into(), claim_uid: None }, ..StorageStatus::default() });
        let running = build_layer_pod(&sc(Some(status.clone()), true), LayerTask::Diff).expect("pod");
        assert_eq!(spec(&running).node_name.as_deref(), Some("node-1"), "a ReadWriteOnce claim is attached there");
        let claim = spec(&running).volumes.as_ref().expect("volumes").iter().find_map(|volume| volume.persistent_volume_claim.clone());
        assert_eq!(claim.map(|claim| (claim.claim_name, claim.read_only)), Some(("dev-rootfs".to_owned(), Some(true))));
        let stopped = build_layer_pod(&sc(Some(status), false), LayerTask::Diff).expect("pod");
        assert_eq!(spec(&stopped).node_name, None, "the scheduler places it by the claim's topology");
    }

    #[test]
    fn an_sc_that_never_ran_or_is_not_created_says_so() {
        assert_eq!(
            build_layer_pod(&sc(None, true), LayerTask::Diff).expect_err("never ran").to_string(),
            "StoppableContainer \"dev\" has not run yet, so its root filesystem holds no changes and no image is recorded for it; start it once (kubectl sc start dev --wait)"
        );
        let mut no_image = ran_on("node-1");
        no_image.image = None;
        assert!(matches!(build_layer_pod(&sc(Some(no_image), true), LayerTask::Diff), Err(LayerPodError::NeverRan { .. })));
        let mut not_created = sc(Some(ran_on("node-1")), true);
        not_created.metadata.uid = None;
        assert!(matches!(build_layer_pod(&not_created, LayerTask::Diff), Err(LayerPodError::NotCreated { .. })));
    }

    #[test]
    fn a_long_name_leaves_room_for_the_generated_suffix() {
        let mut long = sc(Some(ran_on("node-1")), false);
        long.metadata.name = Some("a".repeat(58));
        let prefix = build_layer_pod(&long, LayerTask::Diff).expect("pod").metadata.generate_name.expect("prefix");
        assert!(prefix.len() + 5 <= 63, "{prefix}");
    }
}
