//! Snapshot tests of the pure builders over every fixture StoppableContainer in `fixtures/`
//! (including every example manifest of the earlier release's docs), property tests of the
//! invariants every built pod must keep, and the message of every rejected input in `invalid/`
//! (as a start checks it: the spec and the rootfs size against a default install's limits).

mod fixture_pods;

use fixture_pods::{NAMESPACE, NODE, SC_UID, SCI_UID, as_stored, build, instance_of, load, startable};
use k8s_openapi::api::core::v1::{Container, Pod};
use kube::ResourceExt;
use sc_api::StoppableContainer;
use sc_api::consts::{
    CSI_DRIVER_NAME, EXEC_WRAPPER_PATH, GROUP, LABEL_INSTANCE, LABEL_MANAGED_BY, LABEL_ROLE, MANAGED_BY_VALUE, ROLE_CONSUMER,
    ROLE_PROVIDER, ROOTFS_VOLUME_MOUNT_PATH, ROOTFS_VOLUME_NAME, VOLUME_ATTR_SC_NAME,
};
use sc_api::exec_config::{ArgvSource, EXEC_CONFIG_ENV, ExecConfig};
use sc_api::image_config::ImageConfig;
use sc_api::process::workload_argv;
use sc_operator::consumer_pod::pinned_node;
use sc_operator::meta::is_controlled_by;
use sc_operator::provider_pod::{PROVIDER_HASH_ANNOTATION, build_provider_pod, provider_is_current};
use sc_operator::settings::PodSettings;
use sc_operator::validate::{describe_problems, validate, validate_start};

/// The exec config the consumer's workload container hands to sc-exec.
fn exec_config_of(workload: &Container) -> ExecConfig {
    let config = workload.env.iter().flatten().find(|e| e.name == EXEC_CONFIG_ENV).and_then(|e| e.value.clone()).expect("exec config env");
    serde_json::from_str(&config).unwrap_or_else(|error| panic!("sc-exec cannot read its config: {error}"))
}

#[test]
fn snapshots_of_every_fixture() {
    for (stem, sc) in startable() {
        let built = build(&sc);
        let mut documents = serde_yaml::to_string(&built.instance).expect("yaml");
        documents.push_str("---\n");
        documents.push_str(&serde_yaml::to_string(&built.consumer).expect("yaml"));
        documents.push_str("---\n");
        documents.push_str(&serde_yaml::to_string(&built.provider).expect("yaml"));
        insta::assert_snapshot!(stem, documents);
    }
}

#[test]
fn every_consumer_has_the_rootfs_volume_mounted_in_the_workload() {
    for (stem, sc) in startable() {
        let built = build(&sc);
        for pod in [&built.consumer, &built.consumer_pinned] {
            let spec = pod.spec.as_ref().expect("spec");
            let rootfs: Vec<_> = spec.volumes.iter().flatten().filter(|v| v.name == ROOTFS_VOLUME_NAME).collect();
            assert_eq!(rootfs.len(), 1, "{stem}: exactly one rootfs volume");
            let csi = rootfs[0].csi.as_ref().expect("inline CSI volume");
            assert_eq!(csi.driver, CSI_DRIVER_NAME, "{stem}");
            assert_eq!(csi.volume_attributes.as_ref().and_then(|a| a.get(VOLUME_ATTR_SC_NAME)), Some(&sc.name_any()), "{stem}");
            let workload = &spec.containers[0];
            assert!(
                workload.volume_mounts.iter().flatten().any(|m| m.name == ROOTFS_VOLUME_NAME && m.mount_path == ROOTFS_VOLUME_MOUNT_PATH),
                "{stem}: the workload container mounts the rootfs"
            );
            assert_eq!(workload.image.as_deref(), Some(PodSettings::for_tests().exec_wrapper_image.as_str()), "{stem}");
            assert_eq!(
                workload.command.as_ref().map(|c| c[..3].to_vec()),
                Some(vec![EXEC_WRAPPER_PATH.to_owned(), "run".into(), "--".into()]),
                "{stem}"
            );
            let config = exec_config_of(workload);
            assert_eq!(config.pod, format!("{}_{NAMESPACE}", sc.name_any()), "{stem}: the pod as kubelet names it");
            assert_eq!(config.container, built.valid.workload.container().name, "{stem}: the workload container keeps its name");
            // Every volume a container mounts exists in the pod (old defect 9: sidecar mounts
            // referenced renamed volumes).
            let containers = spec.containers.iter().chain(spec.init_containers.iter().flatten());
            for mount in containers.flat_map(|c| c.volume_mounts.iter().flatten()) {
                assert!(spec.volumes.iter().flatten().any(|v| v.name == mount.name), "{stem}: mount of unknown volume {:?}", mount.name);
            }
        }
    }
}

/// A StoppableContainer of `nginx:1.25` whose workload sets this `command` and `args`.
fn nginx_with(command: Option<&[&str]>, args: Option<&[&str]>) -> StoppableContainer {
    let sc: StoppableContainer = serde_json::from_value(serde_json::json!({
        "apiVersion": sc_api::consts::API_VERSION, "kind": sc_api::consts::SC_KIND,
        "metadata": { "name": "web" },
        "spec": { "running": true, "template": { "spec": { "containers": [{
            "name": "nginx", "image": "nginx:1.25", "command": command, "args": args
        }] } } }
    }))
    .expect("a StoppableContainer");
    as_stored(sc)
}

fn words(list: &[&str]) -> Vec<String> {
    list.iter().map(|word| (*word).to_owned()).collect()
}

#[test]
fn without_a_command_the_image_default_runs() {
    // nginx:1.25's config, as the node plugin publishes it to sc-exec.
    let nginx = ImageConfig {
        entrypoint: words(&["/docker-entrypoint.sh"]),
        cmd: words(&["nginx", "-g", "daemon off;"]),
        ..ImageConfig::default()
    };
    let wrapper = [EXEC_WRAPPER_PATH, "run", "--"];
    /// A template's command and args, the argv source the operator hands sc-exec, and what runs.
    struct Case {
        command: Option<&'static [&'static str]>,
        args: Option<&'static [&'static str]>,
        source: ArgvSource,
        runs: &'static [&'static str],
    }
    let cases = [
        Case {
            command: Some(&["nginx-debug"]),
            args: Some(&["-g", "daemon off;"]),
            source: ArgvSource::Command,
            runs: &["nginx-debug", "-g", "daemon off;"],
        },
        Case { command: Some(&["sleep", "infinity"]), args: None, source: ArgvSource::Command, runs: &["sleep", "infinity"] },
        Case {
            command: None,
            args: Some(&["nginx-debug", "-T"]),
            source: ArgvSource::ArgsOnly,
            runs: &["/docker-entrypoint.sh", "nginx-debug", "-T"],
        },
        Case {
            command: None,
            args: None,
            source: ArgvSource::ImageDefault,
            runs: &["/docker-entrypoint.sh", "nginx", "-g", "daemon off;"],
        },
    ];
    for Case { command, args, source, runs } in cases {
        let case = format!("command {command:?}, args {args:?}");
        let built = build(&nginx_with(command, args));
        let workload = &built.consumer.spec.as_ref().expect("spec").containers[0];
        let expected_command: Vec<String> =
            wrapper.iter().copied().chain(command.unwrap_or_default().iter().copied()).map(String::from).collect();
        assert_eq!(workload.command.as_ref(), Some(&expected_command), "{case}: the template's command follows `--`");
        assert_eq!(workload.args, args.map(words), "{case}: the template's args stay the container's args, for kubelet to expand");
        let config = exec_config_of(workload);
        assert_eq!(config.argv, source, "{case}");
        // What sc-exec then runs: the words kubelet passes after `--` (command, then args) with
        // the image's ENTRYPOINT and CMD.
        let after_dashes: Vec<String> =
            workload.command.iter().flatten().skip(wrapper.len()).chain(workload.args.iter().flatten()).cloned().collect();
        assert_eq!(workload_argv(config.argv, &after_dashes, Some(&nginx)), Ok(words(runs)), "{case}");
    }
    // The fixture without either (the seed's Istio and Vault examples, `kubectl sc create` with no
    // command) runs its image's default too.
    let (_, no_command) = load("fixtures").into_iter().find(|(stem, _)| stem == "no-command").expect("fixture");
    let built = build(&no_command);
    let workload = &built.consumer.spec.as_ref().expect("spec").containers[0];
    assert_eq!(workload.command.as_ref().map(Vec::len), Some(wrapper.len()), "nothing follows `--`");
    assert_eq!(workload.args, None);
    assert_eq!(exec_config_of(workload).argv, ArgvSource::ImageDefault);
}

#[test]
fn template_labels_and_annotations_reach_the_pod_and_system_labels_win() {
    for (stem, sc) in load("fixtures") {
        let built = build(&sc);
        let labels = built.consumer.labels();
        for (key, value) in &built.valid.workload.labels {
            if key == LABEL_MANAGED_BY || key == LABEL_INSTANCE || key == LABEL_ROLE {
                continue;
            }
            assert_eq!(labels.get(key), Some(value), "{stem}: template label {key}");
        }
        for (key, value) in &built.valid.workload.annotations {
            assert_eq!(built.consumer.annotations().get(key), Some(value), "{stem}: template annotation {key}");
        }
        assert_eq!(labels.get(LABEL_MANAGED_BY).map(String::as_str), Some(MANAGED_BY_VALUE), "{stem}");
        assert_eq!(labels.get(LABEL_INSTANCE), Some(&sc.name_any()), "{stem}");
        assert_eq!(labels.get(LABEL_ROLE).map(String::as_str), Some(ROLE_CONSUMER), "{stem}");
        assert_eq!(built.provider.labels().get(LABEL_ROLE).map(String::as_str), Some(ROLE_PROVIDER), "{stem}");
    }
}

#[test]
fn pods_are_owned_by_the_instance_and_placed_as_designed() {
    for (stem, sc) in load("fixtures") {
        let built = build(&sc);
        assert!(is_controlled_by(&built.instance, SC_UID), "{stem}: the instance is owned by the SC");
        for pod in [&built.consumer, &built.consumer_pinned, &built.provider] {
            assert!(is_controlled_by(pod, SCI_UID), "{stem}: {} is owned by the instance", pod.name_any());
            assert_eq!(pod.namespace().as_deref(), Some(NAMESPACE), "{stem}");
        }
        assert_eq!(built.consumer.name_any(), sc.name_any(), "{stem}: the consumer pod is named like the SC");
        assert_eq!(built.consumer.spec.as_ref().and_then(|s| s.node_name.clone()), None, "{stem}: the scheduler places the first start");
        assert_eq!(pinned_node(&built.consumer), None, "{stem}");
        assert_eq!(pinned_node(&built.consumer_pinned).as_deref(), Some(NODE), "{stem}: later starts are pinned");
        let provider = built.provider.spec.as_ref().expect("spec");
        assert_eq!(provider.node_name, None, "{stem}: the scheduler places the provider (accounting, preemption)");
        assert_eq!(pinned_node(&built.provider).as_deref(), Some(NODE), "{stem}: ... on the consumer's node only");
        assert_eq!(
            provider.priority_class_name, built.valid.workload.pod_spec.priority_class_name,
            "{stem}: the provider is preempted no sooner than its workload"
        );
        assert_eq!(provider.automount_service_account_token, Some(false), "{stem}");
        assert_eq!(
            provider.containers[0].image.as_deref(),
            Some(built.valid.workload.image()),
            "{stem}: the provider runs the workload image"
        );
        let caps = provider.containers[0].security_context.as_ref().and_then(|s| s.capabilities.as_ref()).and_then(|c| c.drop.clone());
        assert_eq!(caps, Some(vec!["ALL".to_owned()]), "{stem}: the provider has no capabilities");
    }
}

#[test]
fn user_affinity_terms_are_kept_and_narrowed_to_the_data_node() {
    let (_, sc) = load("fixtures").into_iter().find(|(stem, _)| stem == "sidecars-and-init-containers").expect("fixture");
    let built = build(&sc);
    let terms = built
        .consumer_pinned
        .spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| n.required_during_scheduling_ignored_during_execution.as_ref())
        .expect("required node affinity")
        .node_selector_terms
        .clone();
    assert_eq!(terms.len(), 1);
    assert_eq!(terms[0].match_expressions.as_ref().map(|m| m[0].key.as_str()), Some("disktype"), "the user's requirement stays");
    assert_eq!(terms[0].match_fields.as_ref().map(|m| m[0].values.clone()), Some(Some(vec![NODE.to_owned()])));
}

#[test]
fn rejected_inputs_say_what_to_fix() {
    let mut messages = String::new();
    // What the operator checks before a start: the spec and the rootfs size, with the limits of a
    // default install (10Gi, at most 100Gi) and no filesystem yet.
    let limits = PodSettings::for_tests().rootfs;
    for (stem, sc) in load("invalid") {
        let problems = validate_start(&sc, &limits, None).expect_err(&format!("{stem} must be rejected"));
        messages.push_str(&format!("{stem}: {}\n", describe_problems(&problems)));
    }
    insta::assert_snapshot!("rejected_inputs", messages);
}

#[test]
fn ignored_host_path_prefix_is_reported_and_the_legacy_default_is_not() {
    let fixtures = load("fixtures");
    let custom = fixtures.iter().find(|(stem, _)| stem == "custom-host-path-prefix").expect("fixture");
    assert_eq!(validate(&custom.1).expect("valid").ignored_host_path_prefix.as_deref(), Some("/etc"));
    let legacy = fixtures.iter().find(|(stem, _)| stem == "development-env").expect("fixture");
    assert_eq!(validate(&legacy.1).expect("valid").ignored_host_path_prefix, None);
}

fn provider_hash(pod: &Pod) -> &str {
    pod.annotations().get(PROVIDER_HASH_ANNOTATION).map(String::as_str).unwrap_or_default()
}

/// The provider built for `sc` on `node`, as a start would build it (a fresh instance snapshot).
fn provider_for(sc: &StoppableContainer, node: &str) -> Pod {
    let valid = validate(sc).unwrap_or_else(|problems| panic!("{}: {}", sc.name_any(), describe_problems(&problems)));
    build_provider_pod(&valid.workload, &instance_of(sc), node, &PodSettings::for_tests())
}

fn with_image(sc: &StoppableContainer, image: &str) -> StoppableContainer {
    let mut changed = sc.clone();
    let mut template = serde_json::to_value(&changed.spec.template).expect("template serializes");
    if template["spec"]["containers"][0]["image"].is_string() {
        template["spec"]["containers"][0]["image"] = image.into();
    } else {
        template["container"]["image"] = image.into();
    }
    changed.spec.template = serde_json::from_value(template).expect("template deserializes");
    changed
}

#[test]
fn the_provider_records_the_hash_of_its_spec_stable_for_equal_inputs() {
    assert!(PROVIDER_HASH_ANNOTATION.starts_with(&format!("{GROUP}/")), "the annotation is under the API group");
    for (stem, sc) in load("fixtures") {
        let provider = provider_for(&sc, NODE);
        let hash = provider_hash(&provider);
        assert_eq!(hash.len(), 64, "{stem}: hex SHA-256, got {hash:?}");
        assert!(hash.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()), "{stem}: lowercase hex, got {hash:?}");
        // A later start from the same spec builds the same provider, with the same hash.
        let again = provider_for(&sc, NODE);
        assert_eq!(provider_hash(&again), hash, "{stem}: equal inputs, equal hash");
        assert!(provider_is_current(&provider, &again), "{stem}: a provider built from the same inputs is reused");
    }
}

#[test]
fn an_image_or_provider_change_makes_the_kept_provider_stale() {
    for (stem, sc) in load("fixtures") {
        let kept = provider_for(&sc, NODE);
        let new_image = provider_for(&with_image(&sc, "registry.example/other:2"), NODE);
        assert_ne!(provider_hash(&new_image), provider_hash(&kept), "{stem}: a new image changes the hash");
        assert!(!provider_is_current(&kept, &new_image), "{stem}: an image change replaces the provider");

        let mut more_memory = sc.clone();
        let provider: sc_api::ProviderSpec =
            serde_json::from_value(serde_json::json!({ "resources": { "limits": { "memory": "1234Mi" } } })).expect("provider spec");
        more_memory.spec.provider = Some(provider);
        let resized = provider_for(&more_memory, NODE);
        assert_ne!(provider_hash(&resized), provider_hash(&kept), "{stem}: provider settings change the hash");
        assert!(!provider_is_current(&kept, &resized), "{stem}: a provider settings change replaces the provider");

        let elsewhere = provider_for(&sc, "worker-2");
        assert!(!provider_is_current(&kept, &elsewhere), "{stem}: a provider on another node is not the data node's");
    }
}

#[test]
fn only_a_live_annotated_provider_is_reused() {
    let (_, sc) = load("fixtures").into_iter().next().expect("a fixture");
    let desired = provider_for(&sc, NODE);
    assert!(provider_is_current(&desired, &desired));

    let mut from_an_older_operator = desired.clone();
    from_an_older_operator.metadata.annotations = None;
    assert!(!provider_is_current(&from_an_older_operator, &desired), "no hash: made by an older operator, never reused");

    let mut terminating = desired.clone();
    terminating.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
    assert!(!provider_is_current(&terminating, &desired), "a provider being deleted is waited out, not reused");

    for phase in ["Failed", "Succeeded"] {
        let mut evicted = desired.clone();
        evicted.status =
            Some(k8s_openapi::api::core::v1::PodStatus { phase: Some(phase.into()), reason: Some("Evicted".into()), ..Default::default() });
        assert!(!provider_is_current(&evicted, &desired), "a {phase} provider never runs again: replaced");
    }
    let mut running = desired.clone();
    running.status = Some(k8s_openapi::api::core::v1::PodStatus { phase: Some("Running".into()), ..Default::default() });
    assert!(provider_is_current(&running, &desired), "the status of a live provider does not matter");
}

#[test]
fn a_copied_hash_annotation_does_not_make_another_image_reusable() {
    for (stem, sc) in load("fixtures") {
        let desired = provider_for(&sc, NODE);
        // The operator's provider after `kubectl set image` (or a tenant's pod with a copy of its
        // metadata): the annotation matches, the image the node plugin would take as the lower
        // layer does not.
        let mut swapped = desired.clone();
        if let Some(spec) = swapped.spec.as_mut() {
            spec.containers[0].image = Some("registry.example/tenant/rootfs:1".into());
        }
        assert_eq!(provider_hash(&swapped), provider_hash(&desired), "{stem}");
        assert!(!provider_is_current(&swapped, &desired), "{stem}: another image is never reused");
    }
}

/// Where `tests/validate/schemas.sh` wants the built pods, to check them against the schemas of
/// current Kubernetes releases (this crate only knows the one `k8s-openapi` was built for).
const DUMP_PODS_DIR_ENV: &str = "SC_DUMP_PODS_DIR";

#[test]
fn every_built_pod_is_a_v1_pod_and_is_written_where_sc_dump_pods_dir_says() {
    let dump_dir = std::env::var_os(DUMP_PODS_DIR_ENV).map(std::path::PathBuf::from);
    if let Some(dir) = &dump_dir {
        std::fs::create_dir_all(dir).unwrap_or_else(|error| panic!("{DUMP_PODS_DIR_ENV}={}: {error}", dir.display()));
    }
    for (stem, sc) in startable() {
        let built = build(&sc);
        for (role, pod) in [("consumer", &built.consumer), ("consumer-pinned", &built.consumer_pinned), ("provider", &built.provider)] {
            let json = serde_json::to_value(pod).expect("a pod serializes");
            // What a schema validator needs to pick the schema: the object names its kind.
            assert_eq!((json["apiVersion"].as_str(), json["kind"].as_str()), (Some("v1"), Some("Pod")), "{stem} {role}");
            if let Some(dir) = &dump_dir {
                let path = dir.join(format!("{stem}-{role}.json"));
                let text = serde_json::to_string_pretty(&json).expect("json");
                std::fs::write(&path, text).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
            }
        }
    }
}
