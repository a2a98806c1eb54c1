//! From a StoppableContainer (as written by a user) to a typed, checked description of the
//! workload. Everything the schema cannot express is checked here; every rejection says what is
//! wrong and what to do. No I/O.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, PodSpec};
use kube::ResourceExt;
use sc_api::consts::{EXEC_WRAPPER_DIR, LEGACY_HOST_PATH_PREFIX, MAX_SC_NAME_LEN, ROOTFS_VOLUME_MOUNT_PATH, ROOTFS_VOLUME_NAME};
use sc_api::{ProviderSpec, StoppableContainer, WorkloadTemplate};

/// One thing wrong with a StoppableContainer's spec, with the field it concerns.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SpecProblem {
    /// Path of the offending field, as in the manifest (`spec.template.spec.containers[0].image`).
    pub field: String,
    /// What is wrong and what to do about it.
    pub message: String,
}

impl SpecProblem {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

/// All problems of one spec, rendered as one message (for a condition, an Event and the status).
pub fn describe_problems(problems: &[SpecProblem]) -> String {
    let listed: Vec<String> = problems.iter().map(SpecProblem::to_string).collect();
    format!("invalid spec: {}", listed.join("; "))
}

/// The workload, normalized from either template form: pod metadata and a PodSpec whose first
/// container is the workload.
#[derive(Clone, Debug, PartialEq)]
pub struct Workload {
    /// Labels from the template (system labels are added by the pod builder).
    pub labels: BTreeMap<String, String>,
    /// Annotations from the template.
    pub annotations: BTreeMap<String, String>,
    /// The pod spec; `containers` has at least one entry, whose image is set.
    pub pod_spec: PodSpec,
    /// Provider pod settings.
    pub provider: ProviderSpec,
}

impl Workload {
    /// The workload container (`containers[0]`).
    pub fn container(&self) -> &Container {
        // `from_template` guarantees one container; an empty list cannot reach here.
        &self.pod_spec.containers[0]
    }

    /// The workload's image (the provider runs it; it is the rootfs's lower layer).
    pub fn image(&self) -> &str {
        self.container().image.as_deref().unwrap_or_default()
    }

    /// Checks a template and normalizes the legacy `container` shorthand into a PodSpec.
    pub fn from_template(template: &WorkloadTemplate, provider: Option<&ProviderSpec>) -> Result<Self, Vec<SpecProblem>> {
        let mut problems = Vec::new();
        let (pod_spec, spec_field) = match (&template.spec, &template.container) {
            (Some(_), Some(_)) => {
                problems.push(SpecProblem::new(
                    "spec.template",
                    "both `spec` and the legacy `container` shorthand are set; keep only `spec` (move the container into spec.containers)",
                ));
                return Err(problems);
            }
            (None, None) => {
                problems.push(SpecProblem::new(
                    "spec.template",
                    "no workload: set `spec.template.spec.containers` (a PodSpec whose first container is the workload) or the legacy `spec.template.container`",
                ));
                return Err(problems);
            }
            (Some(spec), None) => (spec.clone(), "spec.template.spec"),
            (None, Some(legacy)) => (PodSpec { containers: vec![legacy.0.clone()], ..PodSpec::default() }, "spec.template.container"),
        };
        let workload_field =
            if spec_field == "spec.template.container" { spec_field.to_owned() } else { format!("{spec_field}.containers[0]") };

        match pod_spec.containers.first() {
            None => problems.push(SpecProblem::new(
                format!("{spec_field}.containers"),
                "is empty; the first container is the workload, add one with at least `name` and `image`",
            )),
            Some(workload) => check_workload_container(workload, &workload_field, &mut problems),
        }
        if let Some(node_name) = pod_spec.node_name.as_deref().filter(|name| !name.is_empty()) {
            problems.push(SpecProblem::new(
                format!("{spec_field}.nodeName"),
                format!(
                    "is set to {node_name:?}; remove it: the scheduler places the first start and later starts are pinned to the node that holds the data (use nodeSelector or affinity to steer placement)"
                ),
            ));
        }
        for (index, volume) in pod_spec.volumes.iter().flatten().enumerate() {
            if volume.name == ROOTFS_VOLUME_NAME {
                problems.push(SpecProblem::new(
                    format!("{spec_field}.volumes[{index}].name"),
                    format!("{ROOTFS_VOLUME_NAME:?} is reserved for the persistent root filesystem; rename the volume"),
                ));
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let metadata = template.metadata.clone().unwrap_or_default();
        Ok(Self {
            labels: metadata.labels.unwrap_or_default(),
            annotations: metadata.annotations.unwrap_or_default(),
            pod_spec,
            provider: provider.cloned().unwrap_or_default(),
        })
    }
}

fn check_workload_container(workload: &Container, field: &str, problems: &mut Vec<SpecProblem>) {
    if workload.image.as_deref().is_none_or(|image| image.trim().is_empty()) {
        problems.push(SpecProblem::new(
            format!("{field}.image"),
            "is empty; set the image whose root filesystem the workload starts from (e.g. ubuntu:22.04)",
        ));
    }
    if workload.security_context.as_ref().and_then(|context| context.privileged) == Some(true) {
        problems.push(SpecProblem::new(
            format!("{field}.securityContext.privileged"),
            "privileged workloads are not supported (the workload runs in a chroot of an unprivileged container); remove it and add only the capabilities it needs",
        ));
    }
    for (index, mount) in workload.volume_mounts.iter().flatten().enumerate() {
        let reserved = [ROOTFS_VOLUME_MOUNT_PATH, EXEC_WRAPPER_DIR]
            .iter()
            .any(|reserved| mount.mount_path == *reserved || mount.mount_path.starts_with(&format!("{reserved}/")));
        if reserved {
            problems.push(SpecProblem::new(
                format!("{field}.volumeMounts[{index}].mountPath"),
                format!(
                    "{:?} is reserved ({ROOTFS_VOLUME_MOUNT_PATH} and {EXEC_WRAPPER_DIR}); mount the volume elsewhere",
                    mount.mount_path
                ),
            ));
        }
        if mount.name == ROOTFS_VOLUME_NAME {
            problems.push(SpecProblem::new(
                format!("{field}.volumeMounts[{index}].name"),
                format!("{ROOTFS_VOLUME_NAME:?} is reserved for the persistent root filesystem; rename the volume"),
            ));
        }
    }
}

/// A StoppableContainer checked and normalized: what the builders need.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidatedSpec {
    /// Name of the StoppableContainer (also of its instance and workload pod).
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// `spec.running`.
    pub running: bool,
    /// The workload as currently written.
    pub workload: Workload,
    /// `spec.hostPathPrefix` when it is set to something other than the legacy default (it is
    /// ignored; the status says so).
    pub ignored_host_path_prefix: Option<String>,
}

/// Checks a whole StoppableContainer.
pub fn validate(sc: &StoppableContainer) -> Result<ValidatedSpec, Vec<SpecProblem>> {
    let name = sc.name_any();
    let mut problems = Vec::new();
    if name.len() > MAX_SC_NAME_LEN {
        problems.push(SpecProblem::new(
            "metadata.name",
            format!(
                "is {} characters long; at most {MAX_SC_NAME_LEN} are allowed (it becomes a label value and the provider pod's name adds \"-provider\"); recreate it with a shorter name",
                name.len()
            ),
        ));
    }
    let workload = Workload::from_template(&sc.spec.template, sc.spec.provider.as_ref());
    let workload = match workload {
        Ok(workload) if problems.is_empty() => workload,
        Ok(_) => return Err(problems),
        Err(mut template_problems) => {
            problems.append(&mut template_problems);
            return Err(problems);
        }
    };
    let ignored_host_path_prefix =
        sc.spec.host_path_prefix.clone().filter(|prefix| !prefix.is_empty() && prefix != LEGACY_HOST_PATH_PREFIX);
    Ok(ValidatedSpec { name, namespace: sc.namespace().unwrap_or_default(), running: sc.spec.running, workload, ignored_host_path_prefix })
}
