//! The fixture StoppableContainers of `fixtures/` and `invalid/`, and the pods the pure builders
//! make of them, shared by the builder tests and the PodSecurity test.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use sc_api::storage::{ClaimRecord, InstanceStorage, claim_name};
use sc_api::{StoppableContainer, StoppableContainerInstance};
use sc_operator::consumer_pod::build_consumer_pod;
use sc_operator::instance_builder::build_instance;
use sc_operator::provider_pod::build_provider_pod;
use sc_operator::settings::PodSettings;
use sc_operator::validate::{ValidatedSpec, describe_problems, validate};

pub const NAMESPACE: &str = "team-a";
pub const SC_UID: &str = "0b7e2a55-0000-4000-8000-000000000001";
pub const SCI_UID: &str = "0b7e2a55-0000-4000-8000-000000000002";
pub const NODE: &str = "worker-1";

fn dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join(name)
}

/// Every `*.yaml` in a test directory, as (file stem, StoppableContainer as the API server would
/// hand it over: namespaced, with a UID).
pub fn load(name: &str) -> Vec<(String, StoppableContainer)> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir(name))
        .expect("test directory exists")
        .map(|entry| entry.expect("readable entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no fixtures in {name}");
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("readable fixture");
            let sc: StoppableContainer = serde_yaml::from_str(&text).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
            let stem = path.file_stem().expect("file name").to_string_lossy().into_owned();
            (stem, as_stored(sc))
        })
        .collect()
}

/// `sc` as the API server hands it to the operator: in [`NAMESPACE`], with [`SC_UID`].
pub fn as_stored(mut sc: StoppableContainer) -> StoppableContainer {
    sc.metadata.namespace = Some(NAMESPACE.into());
    sc.metadata.uid = Some(SC_UID.into());
    sc
}

/// The UID of the claim of a fixture with `spec.storage`.
pub const CLAIM_UID: &str = "0b7e2a55-0000-4000-8000-000000000003";

/// The instance of `sc` as a start deploys it; with `spec.storage`, once the claim is created
/// and recorded.
pub fn instance_of(sc: &StoppableContainer) -> StoppableContainerInstance {
    let mut instance = build_instance(sc, None, true);
    instance.metadata.uid = Some(SCI_UID.into());
    instance.spec.storage = sc.spec.storage.clone().map(|requested| InstanceStorage {
        requested,
        claim: ClaimRecord { claim_name: claim_name(&sc.name_any()), claim_uid: Some(CLAIM_UID.into()) },
        pinned_image: None,
    });
    instance
}

/// Every fixture a start builds pods of: `fixtures/` and `storage/` (with `spec.storage`).
pub fn startable() -> Vec<(String, StoppableContainer)> {
    let mut all = load("fixtures");
    all.extend(load("storage"));
    all
}

/// What a start of one StoppableContainer builds.
pub struct Built {
    pub valid: ValidatedSpec,
    pub instance: StoppableContainerInstance,
    /// The consumer pod of the first start (placed by the scheduler).
    pub consumer: Pod,
    /// The consumer pod of a later start (pinned to [`NODE`]).
    pub consumer_pinned: Pod,
    pub provider: Pod,
}

pub fn build(sc: &StoppableContainer) -> Built {
    let valid = validate(sc).unwrap_or_else(|problems| panic!("{}: {}", sc.name_any(), describe_problems(&problems)));
    let settings = PodSettings::for_tests();
    let instance = instance_of(sc);
    let consumer = build_consumer_pod(&valid.workload, &instance, None, &settings);
    let consumer_pinned = build_consumer_pod(&valid.workload, &instance, Some(NODE), &settings);
    let provider = build_provider_pod(&valid.workload, &instance, NODE, &settings);
    Built { valid, instance, consumer, consumer_pinned, provider }
}
