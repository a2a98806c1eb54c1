//! From a StoppableContainer (as written by a user) to a typed, checked description of the
//! workload. Everything the schema cannot express is checked here; every rejection says what is
//! wrong and what to do. No I/O.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, PodSpec, VolumeMount};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::ResourceExt;
use sc_api::consts::{CSI_DRIVER_NAME, EXEC_WRAPPER_DIR, LEGACY_HOST_PATH_PREFIX, ROOTFS_VOLUME_MOUNT_PATH, ROOTFS_VOLUME_NAME};
use sc_api::names::check_sc_name;
use sc_api::rootfs_size::{format_bytes, parse_size};
use sc_api::storage::ResolvedStorage;
use sc_api::{ProviderSpec, StoppableContainer, WorkloadTemplate};

use crate::settings::RootfsLimits;

/// Mount paths no container of the consumer pod may use: the rootfs volume (with the node
/// plugin's control socket) and `sc-exec`'s directory.
const RESERVED_MOUNT_PATHS: [&str; 2] = [ROOTFS_VOLUME_MOUNT_PATH, EXEC_WRAPPER_DIR];

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
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
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
        // Every container of the pod, not only the workload: a sidecar, init or ephemeral
        // container that mounted the rootfs volume would reach the node plugin's control socket
        // and the persistent root filesystem without sc-exec.
        for (field, mounts) in container_mounts(&pod_spec, spec_field, &workload_field) {
            check_volume_mounts(mounts, &field, &mut problems);
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
            if volume.csi.as_ref().is_some_and(|csi| csi.driver == CSI_DRIVER_NAME) {
                problems.push(SpecProblem::new(
                    format!("{spec_field}.volumes[{index}].csi.driver"),
                    format!(
                        "{CSI_DRIVER_NAME:?} is the driver of the persistent root filesystem, which the operator adds itself (volume {ROOTFS_VOLUME_NAME:?}); a second volume of it can never be mounted (one root filesystem, one live mount), so the pod would never start: remove the volume {:?}",
                        volume.name
                    ),
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
}

/// The volume mounts of every container of `pod_spec`, each with the field path of its
/// container: the workload (`workload_field`), sidecars, init and ephemeral containers.
pub(crate) fn container_mounts<'a>(pod_spec: &'a PodSpec, spec_field: &str, workload_field: &str) -> Vec<(String, &'a [VolumeMount])> {
    let mounts = |mounts: &'a Option<Vec<VolumeMount>>| mounts.as_deref().unwrap_or_default();
    let containers = pod_spec.containers.iter().enumerate().map(|(index, container)| {
        let field = if index == 0 { workload_field.to_owned() } else { format!("{spec_field}.containers[{index}]") };
        (field, mounts(&container.volume_mounts))
    });
    let init_containers = pod_spec
        .init_containers
        .iter()
        .flatten()
        .enumerate()
        .map(|(index, container)| (format!("{spec_field}.initContainers[{index}]"), mounts(&container.volume_mounts)));
    let ephemeral_containers = pod_spec
        .ephemeral_containers
        .iter()
        .flatten()
        .enumerate()
        .map(|(index, container)| (format!("{spec_field}.ephemeralContainers[{index}]"), mounts(&container.volume_mounts)));
    containers.chain(init_containers).chain(ephemeral_containers).collect()
}

/// The reserved-name and reserved-path rules, for the mounts of one container (`field`).
fn check_volume_mounts(mounts: &[VolumeMount], field: &str, problems: &mut Vec<SpecProblem>) {
    for (index, mount) in mounts.iter().enumerate() {
        let path_field = format!("{field}.volumeMounts[{index}].mountPath");
        match normalize_mount_path(&mount.mount_path) {
            Err(why) => problems.push(SpecProblem::new(path_field, why)),
            Ok(normalized) if is_reserved_mount_path(&normalized) => {
                let spelled = if normalized == mount.mount_path {
                    format!("{normalized:?}")
                } else {
                    format!("{:?} (that is {normalized:?})", mount.mount_path)
                };
                problems.push(SpecProblem::new(
                    path_field,
                    format!("{spelled} is reserved ({ROOTFS_VOLUME_MOUNT_PATH} and {EXEC_WRAPPER_DIR}); mount the volume elsewhere"),
                ));
            }
            Ok(_) => {}
        }
        if mount.name == ROOTFS_VOLUME_NAME {
            problems.push(SpecProblem::new(
                format!("{field}.volumeMounts[{index}].name"),
                format!("{ROOTFS_VOLUME_NAME:?} is reserved for the persistent root filesystem; rename the volume"),
            ));
        }
    }
}

/// A mount path as the container runtime resolves it: absolute (runtimes resolve a relative
/// destination from `/`), without empty or `.` components. A `..` component is refused rather
/// than resolved: the workload's mounts are placed below the rootfs by prefixing their path, where
/// `..` would climb out of it, and `/x/../.sc` must not get round the reserved-path check.
pub fn normalize_mount_path(path: &str) -> Result<String, String> {
    let mut components = Vec::new();
    for component in path.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                return Err(format!(
                    "{path:?} has a \"..\" component, which a mount path may not have (it could reach a reserved path); write the directory it means without \"..\""
                ));
            }
            component => components.push(component),
        }
    }
    Ok(format!("/{}", components.join("/")))
}

/// Whether a normalized mount path is, or is below, one of [`RESERVED_MOUNT_PATHS`].
fn is_reserved_mount_path(normalized: &str) -> bool {
    RESERVED_MOUNT_PATHS
        .iter()
        .any(|reserved| normalized.strip_prefix(reserved).is_some_and(|rest| rest.is_empty() || rest.starts_with('/')))
}

/// A StoppableContainer checked and normalized: what the builders need.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidatedSpec {
    /// Name of the StoppableContainer (also of its instance and consumer pod).
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
    // The rule every component applies (the node plugin refuses any other name, forever).
    if let Err(message) = check_sc_name(&name) {
        problems.push(SpecProblem::new("metadata.name", message));
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

/// The field [`effective_rootfs_size`] checks.
const ROOTFS_SIZE_FIELD: &str = "spec.rootfsSize";

/// The size in bytes the root filesystem is to have from its next start: `requested` (the SC's
/// `spec.rootfsSize`, read with [`parse_size`], the parser the node plugin uses), else the
/// administrator's default; never less than `current_bytes`, the size its deployed instance
/// already records (a filesystem can grow but never shrink, and an administrator who lowers the
/// default must not make existing StoppableContainers unstartable). A requested size above the
/// maximum is refused unless the filesystem already has it (a maximum lowered since must not make
/// an existing StoppableContainer unstartable either, and it cannot shrink to fit).
pub fn effective_rootfs_size(requested: Option<&Quantity>, limits: &RootfsLimits, current_bytes: Option<u64>) -> Result<u64, SpecProblem> {
    let current = current_bytes.unwrap_or(0);
    let Some(Quantity(text)) = requested else {
        return Ok(limits.default_bytes().max(current));
    };
    let bytes = parse_size(text).map_err(|error| SpecProblem::new(ROOTFS_SIZE_FIELD, error.to_string()))?.bytes();
    let max = limits.max_bytes();
    if bytes > max && bytes > current {
        let what_to_do = if current > max {
            format!(
                "its root filesystem already has {}, more than that maximum, and can never shrink: set {0} or remove the field",
                format_bytes(current)
            )
        } else {
            format!("ask for at most {}", format_bytes(max))
        };
        return Err(SpecProblem::new(
            ROOTFS_SIZE_FIELD,
            format!("{text} is more than this cluster's maximum of {} (an administrator's setting); {what_to_do}", format_bytes(max)),
        ));
    }
    if bytes < current {
        return Err(SpecProblem::new(
            ROOTFS_SIZE_FIELD,
            format!(
                "{text} is less than the {0} its root filesystem already has: a root filesystem can grow but never shrink; set at least {0}",
                format_bytes(current)
            ),
        ));
    }
    Ok(bytes)
}

/// A StoppableContainer checked for a start: its spec and the size of its root filesystem.
#[derive(Clone, Debug, PartialEq)]
pub struct StartSpec {
    /// The spec, as [`validate`] checked it.
    pub valid: ValidatedSpec,
    /// The root filesystem's size in bytes: as [`effective_rootfs_size`] resolved it, or with
    /// `spec.storage` the claim's size.
    pub rootfs_size_bytes: u64,
    /// `spec.storage` with its defaults (None: the root filesystem is node-local).
    pub storage: Option<ResolvedStorage>,
}

/// [`validate`] and [`effective_rootfs_size`] (or, with `spec.storage`, the storage's rules:
/// [`crate::storage::spec::check`]) together, with the problems of all: what the operator checks
/// before it starts a StoppableContainer whose deployed instance records `current_rootfs_bytes`.
pub fn validate_start(
    sc: &StoppableContainer,
    limits: &RootfsLimits,
    current_rootfs_bytes: Option<u64>,
) -> Result<StartSpec, Vec<SpecProblem>> {
    let valid = validate(sc);
    let size = match &sc.spec.storage {
        None => effective_rootfs_size(sc.spec.rootfs_size.as_ref(), limits, current_rootfs_bytes),
        // A size problem (rootfsSize set as well) is the storage check's to report.
        Some(_) => Ok(0),
    };
    let storage = crate::storage::spec::check(sc, valid.as_ref().ok().map(|valid| &valid.workload));
    let mut problems = Vec::new();
    let valid = valid.map_err(|mut found| problems.append(&mut found)).ok();
    let size = size.map_err(|problem| problems.push(problem)).ok();
    let storage = storage.map_err(|mut found| problems.append(&mut found)).ok();
    match (valid, size, storage) {
        (Some(valid), Some(bytes), Some(storage)) if problems.is_empty() => {
            let rootfs_size_bytes = storage.as_ref().map_or(bytes, |storage| storage.size_bytes);
            Ok(StartSpec { valid, rootfs_size_bytes, storage })
        }
        _ => Err(problems),
    }
}

#[cfg(test)]
mod tests {
    use crate::settings::PodSettings;

    use super::*;

    /// A StoppableContainer named `name` whose template is `spec` (a PodSpec as JSON).
    fn sc(name: &str, spec: serde_json::Value) -> StoppableContainer {
        serde_json::from_value(serde_json::json!({
            "apiVersion": sc_api::consts::API_VERSION, "kind": sc_api::consts::SC_KIND,
            "metadata": { "name": name, "namespace": "team-a" },
            "spec": { "template": { "spec": spec } }
        }))
        .expect("a StoppableContainer")
    }

    fn workload(extra: serde_json::Value) -> serde_json::Value {
        let mut spec = serde_json::json!({ "containers": [{ "name": "main", "image": "alpine" }] });
        if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
            spec.extend(extra.clone());
        }
        spec
    }

    /// The fields of the problems `validate` finds.
    fn problem_fields(sc: &StoppableContainer) -> Vec<String> {
        validate(sc).err().unwrap_or_default().into_iter().map(|problem| problem.field).collect()
    }

    #[test]
    fn mount_paths_are_normalized_and_dotdot_is_refused() {
        for (path, normalized) in
            [("/data", "/data"), ("//.sc//", "/.sc"), ("/./.sc-bin/./x", "/.sc-bin/x"), ("relative/dir", "/relative/dir"), ("/", "/")]
        {
            assert_eq!(normalize_mount_path(path).as_deref(), Ok(normalized), "{path}");
        }
        for path in ["/x/../.sc", "..", "/data/..", "/a/../../b"] {
            let why = normalize_mount_path(path).expect_err(path);
            assert!(why.contains("\"..\" component"), "{path}: {why}");
        }
    }

    #[test]
    fn reserved_paths_are_the_directories_and_what_is_below_them_only() {
        for reserved in ["/.sc", "/.sc/rootfs", "/.sc-bin", "/.sc-bin/sc-exec"] {
            assert!(is_reserved_mount_path(reserved), "{reserved}");
        }
        for free in ["/", "/.scratch", "/.sc-binaries", "/data/.sc", "/sc"] {
            assert!(!is_reserved_mount_path(free), "{free}");
        }
    }

    #[test]
    fn the_name_follows_the_shared_rule() {
        assert_eq!(problem_fields(&sc("my.box", workload(serde_json::json!({})))), ["metadata.name"]);
        assert!(validate(&sc("my-box", workload(serde_json::json!({})))).is_ok());
        let problems = validate(&sc("my.box", workload(serde_json::json!({})))).expect_err("dotted");
        assert!(problems[0].message.contains("dots are not allowed"), "{problems:?}");
    }

    #[test]
    fn every_container_is_held_to_the_reserved_name_and_path_rules() {
        let reserved_mounts = serde_json::json!([{ "name": "sc-rootfs", "mountPath": "/logs/../.sc" }]);
        let spec = serde_json::json!({
            "containers": [
                { "name": "main", "image": "alpine", "volumeMounts": [{ "name": "data", "mountPath": "/x/.././.sc-bin" }] },
                { "name": "sidecar", "image": "busybox", "volumeMounts": [{ "name": "data", "mountPath": "//.sc/control" }] }
            ],
            "initContainers": [{ "name": "init", "image": "busybox", "volumeMounts": reserved_mounts }],
            "ephemeralContainers": [{ "name": "debug", "image": "busybox", "volumeMounts": [{ "name": "sc-rootfs", "mountPath": "/debug" }] }],
            "volumes": [{ "name": "data", "emptyDir": {} }]
        });
        assert_eq!(
            problem_fields(&sc("box", spec)),
            [
                "spec.template.spec.containers[0].volumeMounts[0].mountPath",
                "spec.template.spec.containers[1].volumeMounts[0].mountPath",
                "spec.template.spec.initContainers[0].volumeMounts[0].mountPath",
                "spec.template.spec.initContainers[0].volumeMounts[0].name",
                "spec.template.spec.ephemeralContainers[0].volumeMounts[0].name",
            ]
        );
    }

    #[test]
    fn a_reserved_path_reached_by_another_spelling_names_both() {
        let spec = workload(serde_json::json!({
            "containers": [{ "name": "main", "image": "alpine", "volumeMounts": [{ "name": "data", "mountPath": "//.sc/./rootfs" }] }],
            "volumes": [{ "name": "data", "emptyDir": {} }]
        }));
        let problems = validate(&sc("box", spec)).expect_err("reserved");
        assert_eq!(
            problems[0].message,
            "\"//.sc/./rootfs\" (that is \"/.sc/rootfs\") is reserved (/.sc and /.sc-bin); mount the volume elsewhere"
        );
    }

    #[test]
    fn the_legacy_shorthand_is_checked_like_the_workload_container() {
        let legacy: StoppableContainer = serde_json::from_value(serde_json::json!({
            "metadata": { "name": "old", "namespace": "team-a" },
            "spec": { "template": { "container": { "image": "alpine", "volumeMounts": [{ "name": "x", "mountPath": "/../etc" }] } } }
        }))
        .expect("a StoppableContainer");
        assert_eq!(problem_fields(&legacy), ["spec.template.container.volumeMounts[0].mountPath"]);
    }

    #[test]
    fn a_volume_of_this_driver_is_refused_under_any_name() {
        let spec = workload(serde_json::json!({
            "volumes": [
                { "name": "second-root", "csi": { "driver": CSI_DRIVER_NAME } },
                { "name": "other", "csi": { "driver": "secrets-store.csi.k8s.io" } }
            ]
        }));
        assert_eq!(problem_fields(&sc("box", spec)), ["spec.template.spec.volumes[0].csi.driver"]);
    }

    const GI: u64 = 1 << 30;

    fn size(text: &str, current_bytes: Option<u64>) -> Result<u64, String> {
        let limits = PodSettings::for_tests().rootfs;
        let requested = (!text.is_empty()).then(|| Quantity(text.to_owned()));
        effective_rootfs_size(requested.as_ref(), &limits, current_bytes).map_err(|problem| problem.to_string())
    }

    #[test]
    fn an_unset_rootfs_size_is_the_default_but_never_less_than_the_filesystem_has() {
        assert_eq!(size("", None), Ok(10 * GI), "the default");
        assert_eq!(size("", Some(4 * GI)), Ok(10 * GI), "a raised default grows it");
        assert_eq!(size("", Some(20 * GI)), Ok(20 * GI), "a lowered default never shrinks it");
        assert_eq!(size("", Some(150 * GI)), Ok(150 * GI), "nor does a lowered maximum");
    }

    #[test]
    fn a_set_rootfs_size_is_used_rounded_up_to_a_block() {
        assert_eq!(size("20Gi", None), Ok(20 * GI));
        assert_eq!(size("1.5Gi", None), Ok(3 << 29));
        assert_eq!(size("100Gi", None), Ok(100 * GI), "the maximum itself");
        assert_eq!(size("64Mi", None), Ok(64 << 20), "below the default is fine for a new filesystem");
        assert_eq!(size("500M", None), Ok(500_002_816));
        assert_eq!(size("20Gi", Some(20 * GI)), Ok(20 * GI), "the size it has");
        assert_eq!(size("30Gi", Some(20 * GI)), Ok(30 * GI), "a grow");
        assert_eq!(size("150Gi", Some(150 * GI)), Ok(150 * GI), "above a lowered maximum, but what it already has");
    }

    #[test]
    fn a_malformed_rootfs_size_says_what_parse_size_says() {
        assert_eq!(
            size("10GB", None),
            Err(r#"spec.rootfsSize: the rootfs size "10GB" is not a Kubernetes quantity (unknown suffix "GB"; use Ki, Mi, Gi, Ti, Pi, Ei, or k, M, G, T, P, E); write it like 10Gi, 512Mi or 20G"#.to_owned())
        );
        assert_eq!(
            size("1Mi", None),
            Err(r#"spec.rootfsSize: the rootfs size "1Mi" is 1048576 bytes, below the minimum of 64Mi: the filesystem's journal and metadata and a usable upper layer need at least that"#.to_owned())
        );
        assert_eq!(
            size("-5Gi", None),
            Err(r#"spec.rootfsSize: the rootfs size "-5Gi" is not positive; give a size of at least 64Mi"#.to_owned())
        );
        // Malformed is refused even when the filesystem exists: nothing is guessed.
        assert!(size("lots", Some(20 * GI)).is_err_and(|message| message.contains("is not a Kubernetes quantity")));
    }

    #[test]
    fn a_rootfs_size_above_the_maximum_is_refused() {
        assert_eq!(
            size("200Gi", None),
            Err("spec.rootfsSize: 200Gi is more than this cluster's maximum of 100Gi (an administrator's setting); ask for at most 100Gi"
                .to_owned())
        );
        assert_eq!(
            size("200Gi", Some(20 * GI)),
            Err("spec.rootfsSize: 200Gi is more than this cluster's maximum of 100Gi (an administrator's setting); ask for at most 100Gi"
                .to_owned())
        );
        assert_eq!(
            size("200Gi", Some(150 * GI)),
            Err("spec.rootfsSize: 200Gi is more than this cluster's maximum of 100Gi (an administrator's setting); its root filesystem \
                 already has 150Gi, more than that maximum, and can never shrink: set 150Gi or remove the field"
                .to_owned())
        );
    }

    #[test]
    fn a_rootfs_size_below_what_the_filesystem_has_is_refused() {
        assert_eq!(
            size("10Gi", Some(20 * GI)),
            Err("spec.rootfsSize: 10Gi is less than the 20Gi its root filesystem already has: a root filesystem can grow but never \
                 shrink; set at least 20Gi"
                .to_owned())
        );
        assert_eq!(
            size("120Gi", Some(150 * GI)),
            Err("spec.rootfsSize: 120Gi is less than the 150Gi its root filesystem already has: a root filesystem can grow but never \
                 shrink; set at least 150Gi"
                .to_owned())
        );
    }

    #[test]
    fn a_start_reports_the_spec_and_the_size_problems_together() {
        let limits = PodSettings::for_tests().rootfs;
        let mut both = sc("my.box", workload(serde_json::json!({})));
        both.spec.rootfs_size = Some(Quantity("200Gi".into()));
        let fields: Vec<String> = validate_start(&both, &limits, None).expect_err("invalid").into_iter().map(|p| p.field).collect();
        assert_eq!(fields, ["metadata.name", "spec.rootfsSize"]);

        let mut good = sc("box", workload(serde_json::json!({})));
        let start = validate_start(&good, &limits, None).expect("valid");
        assert_eq!((start.valid.name.as_str(), start.rootfs_size_bytes), ("box", 10 * GI));
        good.spec.rootfs_size = Some(Quantity("10Gi".into()));
        let problems = validate_start(&good, &limits, Some(20 * GI)).expect_err("a shrink");
        assert_eq!(problems.len(), 1);
        assert!(describe_problems(&problems).starts_with("invalid spec: spec.rootfsSize: 10Gi is less than"), "{problems:?}");
        let bad_template = sc("box", serde_json::json!({ "containers": [] }));
        assert_eq!(validate_start(&bad_template, &limits, None).expect_err("invalid").len(), 1);
    }
}
