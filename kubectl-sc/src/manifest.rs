//! The StoppableContainer that `kubectl sc create` sends: the current schema
//! (`spec.template.spec`, a PodSpec whose `containers[0]` is the workload), built by a pure
//! function so that what `--dry-run` prints is exactly what is created.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, ContainerPort, EnvVar, PodSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::ObjectMeta;
use sc_api::storage::StorageSpec;
use sc_api::{StoppableContainer, StoppableContainerSpec, WorkloadTemplate};

use crate::cli::ManifestFormat;
use crate::error::CliError;
use crate::validate::{EnvVarArg, PortArg};

/// What the user asked `create` for, already validated by the argument parser.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CreateRequest {
    pub name: String,
    pub namespace: String,
    pub image: String,
    pub running: bool,
    pub workdir: Option<String>,
    pub env: Vec<EnvVarArg>,
    pub ports: Vec<PortArg>,
    pub cpu_request: Option<String>,
    pub memory_request: Option<String>,
    /// `spec.rootfsSize` as written (checked by `validate::parse_rootfs_size`); None: the
    /// cluster's default.
    pub rootfs_size: Option<String>,
    /// `spec.storage` (checked by `validate::storage_from_flags`); None: node-local.
    pub storage: Option<StorageSpec>,
    /// The workload's command (`command:`, no `args:`); empty writes neither, so the workload runs
    /// the image's ENTRYPOINT + CMD, as a plain container of the template would.
    pub command: Vec<String>,
}

/// Builds the StoppableContainer. The workload container is named like the StoppableContainer
/// (as `kubectl run` names its container), so `kubectl sc logs -c <name>` is predictable.
pub fn build_stoppable_container(request: &CreateRequest) -> StoppableContainer {
    let requests: BTreeMap<String, Quantity> = [("cpu", &request.cpu_request), ("memory", &request.memory_request)]
        .into_iter()
        .filter_map(|(resource, amount)| amount.as_ref().map(|amount| (resource.to_owned(), Quantity(amount.clone()))))
        .collect();
    let workload = Container {
        name: request.name.clone(),
        image: Some(request.image.clone()),
        command: (!request.command.is_empty()).then(|| request.command.clone()),
        working_dir: request.workdir.clone(),
        env: (!request.env.is_empty()).then(|| {
            request.env.iter().map(|var| EnvVar { name: var.name.clone(), value: Some(var.value.clone()), value_from: None }).collect()
        }),
        ports: (!request.ports.is_empty()).then(|| {
            request
                .ports
                .iter()
                .map(|port| ContainerPort { container_port: i32::from(port.number), name: port.name.clone(), ..ContainerPort::default() })
                .collect()
        }),
        resources: (!requests.is_empty()).then(|| ResourceRequirements { requests: Some(requests), ..ResourceRequirements::default() }),
        ..Container::default()
    };
    let spec = StoppableContainerSpec {
        running: request.running,
        template: WorkloadTemplate {
            metadata: None,
            spec: Some(PodSpec { containers: vec![workload], ..PodSpec::default() }),
            container: None,
        },
        provider: None,
        rootfs_size: request.rootfs_size.clone().map(Quantity),
        storage: request.storage.clone(),
        host_path_prefix: None,
    };
    let mut stoppable_container = StoppableContainer::new(&request.name, spec);
    stoppable_container.metadata =
        ObjectMeta { name: Some(request.name.clone()), namespace: Some(request.namespace.clone()), ..ObjectMeta::default() };
    stoppable_container
}

/// Serializes a manifest for printing (no status, no empty fields).
pub fn render_manifest<T: serde::Serialize>(object: &T, format: ManifestFormat) -> Result<String, CliError> {
    match format {
        ManifestFormat::Yaml => serde_yaml::to_string(object).map_err(CliError::from),
        ManifestFormat::Json => serde_json::to_string_pretty(object).map(|json| json + "\n").map_err(CliError::from),
    }
}

#[cfg(test)]
mod tests {
    use sc_api::exec_config::ArgvSource;
    use sc_api::image_config::ImageConfig;
    use sc_api::process::workload_argv;
    use sc_api::storage::ClaimRetention;

    use super::*;

    fn dev_box() -> CreateRequest {
        CreateRequest {
            name: "dev-box".into(),
            namespace: "team-a".into(),
            image: "ubuntu:22.04".into(),
            running: true,
            workdir: Some("/root".into()),
            env: vec![EnvVarArg { name: "EDITOR".into(), value: "vim".into() }],
            ports: vec![PortArg { number: 8080, name: Some("http".into()) }, PortArg { number: 22, name: None }],
            cpu_request: Some("500m".into()),
            memory_request: Some("1Gi".into()),
            rootfs_size: Some("20Gi".into()),
            storage: None,
            command: vec!["sleep".into(), "infinity".into()],
        }
    }

    fn workload(stoppable_container: &StoppableContainer) -> &Container {
        let pod_spec = stoppable_container.spec.template.spec.as_ref().expect("template.spec is set");
        assert_eq!(pod_spec.containers.len(), 1);
        &pod_spec.containers[0]
    }

    #[test]
    fn the_command_after_double_dash_is_the_workload_command() {
        let stoppable_container = build_stoppable_container(&dev_box());
        assert_eq!(workload(&stoppable_container).command.as_deref(), Some(&["sleep".to_owned(), "infinity".to_owned()][..]));
        assert_eq!(workload(&stoppable_container).args, None);

        // Also after a round trip through the printed YAML, as `kubectl apply` would read it.
        let yaml = render_manifest(&stoppable_container, ManifestFormat::Yaml).expect("serializes");
        let parsed: StoppableContainer = serde_yaml::from_str(&yaml).expect("parses back");
        assert_eq!(parsed, stoppable_container);
        assert_eq!(workload(&parsed).command, Some(vec!["sleep".to_owned(), "infinity".to_owned()]));
    }

    #[test]
    fn uses_the_current_schema_and_every_requested_setting() {
        let stoppable_container = build_stoppable_container(&dev_box());
        assert!(stoppable_container.spec.template.container.is_none(), "the legacy shorthand is not emitted");
        assert!(stoppable_container.spec.running);
        assert_eq!(stoppable_container.metadata.namespace.as_deref(), Some("team-a"));
        let container = workload(&stoppable_container);
        assert_eq!(container.name, "dev-box");
        assert_eq!(container.image.as_deref(), Some("ubuntu:22.04"));
        assert_eq!(container.working_dir.as_deref(), Some("/root"));
        let ports = container.ports.as_ref().expect("ports");
        assert_eq!((ports[0].container_port, ports[0].name.as_deref()), (8080, Some("http")));
        assert_eq!((ports[1].container_port, ports[1].name.as_deref()), (22, None));
        let requests = container.resources.as_ref().and_then(|r| r.requests.as_ref()).expect("requests");
        assert_eq!(requests.get("cpu"), Some(&Quantity("500m".into())));
        assert_eq!(requests.get("memory"), Some(&Quantity("1Gi".into())));
        assert_eq!(stoppable_container.spec.rootfs_size, Some(Quantity("20Gi".into())));
        let default_size = build_stoppable_container(&CreateRequest { rootfs_size: None, ..dev_box() });
        assert_eq!(default_size.spec.rootfs_size, None, "no --size: the cluster's default");
    }

    #[test]
    fn without_a_command_the_image_default_runs() {
        let request = CreateRequest { command: vec![], running: false, image: "nginx:1.25".into(), ..dev_box() };
        let stoppable_container = build_stoppable_container(&request);
        assert!(!stoppable_container.spec.running);
        // Neither command nor args, also as `kubectl apply` reads the printed manifest back ...
        let yaml = render_manifest(&stoppable_container, ManifestFormat::Yaml).expect("serializes");
        assert!(!yaml.contains("command") && !yaml.contains("args"), "{yaml}");
        let parsed: StoppableContainer = serde_yaml::from_str(&yaml).expect("parses back");
        let container = workload(&parsed);
        assert_eq!((container.command.as_deref(), container.args.as_deref()), (None, None));
        // ... so the operator tells sc-exec to run the image's own ENTRYPOINT + CMD, by the rule a
        // plain container of this template follows.
        let source = ArgvSource::of(container.command.as_deref(), container.args.as_deref());
        assert_eq!(source, ArgvSource::ImageDefault);
        let words = |list: &[&str]| list.iter().map(|word| (*word).to_owned()).collect::<Vec<_>>();
        let nginx = ImageConfig {
            entrypoint: words(&["/docker-entrypoint.sh"]),
            cmd: words(&["nginx", "-g", "daemon off;"]),
            ..ImageConfig::default()
        };
        assert_eq!(workload_argv(source, &[], Some(&nginx)), Ok(words(&["/docker-entrypoint.sh", "nginx", "-g", "daemon off;"])));
        // With a command after `--`, the image's ENTRYPOINT and CMD are both replaced.
        let with_command = build_stoppable_container(&dev_box());
        let container = workload(&with_command);
        assert_eq!(ArgvSource::of(container.command.as_deref(), container.args.as_deref()), ArgvSource::Command);
    }

    fn on_a_claim(class: Option<&str>, when_deleted: ClaimRetention) -> CreateRequest {
        let storage = StorageSpec {
            size: Quantity("20Gi".into()),
            storage_class_name: class.map(str::to_owned),
            access_modes: vec![],
            when_deleted: Some(when_deleted),
        };
        CreateRequest { rootfs_size: None, storage: Some(storage), ..dev_box() }
    }

    #[test]
    fn storage_puts_the_root_filesystem_on_a_claim_and_node_local_has_none() {
        let node_local = build_stoppable_container(&dev_box());
        assert_eq!(node_local.spec.storage, None);
        let yaml = render_manifest(&node_local, ManifestFormat::Yaml).expect("serializes");
        assert!(!yaml.contains("storage"), "{yaml}");

        let request = on_a_claim(Some("fast-ssd"), ClaimRetention::Retain);
        let on_claim = build_stoppable_container(&request);
        assert_eq!(on_claim.spec.storage, request.storage);
        assert_eq!(on_claim.spec.rootfs_size, None, "the claim's size is the limit");
        // What the operator makes of it: a claim of that size and class, kept at deletion.
        let resolved = sc_api::storage::resolve(on_claim.spec.storage.as_ref().expect("storage")).expect("the operator accepts it");
        assert_eq!((resolved.size_bytes, resolved.storage_class_name.as_deref()), (20 << 30, Some("fast-ssd")));
        assert_eq!((resolved.access_modes, resolved.when_deleted), (vec!["ReadWriteOnce".to_owned()], ClaimRetention::Retain));
        // And as `kubectl apply` reads the printed manifest back.
        let yaml = render_manifest(&on_claim, ManifestFormat::Yaml).expect("serializes");
        let parsed: StoppableContainer = serde_yaml::from_str(&yaml).expect("parses back");
        assert_eq!(parsed.spec.storage, request.storage);
    }

    #[test]
    fn manifest_snapshots() {
        insta::assert_snapshot!(
            "dev_box_yaml",
            render_manifest(&build_stoppable_container(&dev_box()), ManifestFormat::Yaml).expect("yaml")
        );
        let minimal = CreateRequest {
            name: "tiny".into(),
            namespace: "default".into(),
            image: "busybox".into(),
            running: false,
            ..CreateRequest::default()
        };
        insta::assert_snapshot!("minimal_json", render_manifest(&build_stoppable_container(&minimal), ManifestFormat::Json).expect("json"));
        insta::assert_snapshot!(
            "storage_default_class_yaml",
            render_manifest(&build_stoppable_container(&on_a_claim(None, ClaimRetention::Delete)), ManifestFormat::Yaml).expect("yaml")
        );
        insta::assert_snapshot!(
            "storage_kept_json",
            render_manifest(&build_stoppable_container(&on_a_claim(Some("fast-ssd"), ClaimRetention::Retain)), ManifestFormat::Json)
                .expect("json")
        );
    }
}
