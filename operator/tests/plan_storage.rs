//! Unit tests of the plan for `spec.storage` (issue 13): the claim (created before the first
//! consumer pod, recorded, never adopted), the consumer pod on it, stop leaving no pod, the
//! teardown by whenDeleted, node loss and the pinned base image. Each trust decision has its
//! attack here first.

#[allow(dead_code, reason = "the builder tests use the rest of the shared fixture helpers")]
mod fixture_pods;
#[allow(dead_code, reason = "the node-local plan tests use the rest of the world")]
mod world;

use fixture_pods::{NODE, SC_UID, load};
use k8s_openapi::api::core::v1::{Node, NodeSpec, PersistentVolumeClaim, PersistentVolumeClaimStatus, Pod, Taint};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use sc_api::consts::{NODE_DATA_FINALIZER, PROVIDER_CONTAINER_NAME};
use sc_api::lifecycle::{condition, reason};
use sc_api::storage::{ClaimRetention, STORAGE_VOLUME_MOUNT_PATH, STORAGE_VOLUME_NAME, StorageSpec};
use sc_api::{Phase, StoppableContainer, StoppableContainerStatus};
use sc_operator::consumer_pod::pinned_node;
use sc_operator::controller::fetch::Facts;
use sc_operator::controller::plan::Step;
use sc_operator::controller::report::report;
use sc_operator::controller::teardown::{Stage, teardown};
use sc_operator::ownership::Role;
use sc_operator::provider_pod::provider_node;
use sc_operator::settings::PodSettings;
use sc_operator::storage::claim::CLAIM_SC_UID_ANNOTATION;
use sc_operator::storage::node_loss::{NodeState, OUT_OF_SERVICE_TAINT};
use world::*;

const DIGEST_REF: &str = "registry.test/dev@sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";

fn on_claim() -> StoppableContainer {
    let (_, mut sc) = load("storage").into_iter().find(|(stem, _)| stem == "dev-on-claim").expect("the storage fixture");
    sc.metadata.creation_timestamp = Some(at(100));
    sc
}

fn at(second: i64) -> Time {
    Time(Timestamp::from_second(second).expect("a time"))
}

fn status_of(world: &World) -> StoppableContainerStatus {
    let settings = PodSettings::for_tests();
    let facts = Facts {
        settings: &settings,
        data_node_exists: world.data_node_exists,
        usage: world.usage.as_ref(),
        pod_nodes: Some(&world.pod_nodes),
    };
    report(&world.sc, world.sc.status.as_ref(), &world.children, &facts, None, epoch()).status
}

/// Writes the reconcile's status, as the executor does at its end.
fn report_status(world: &mut World) {
    let status = status_of(world);
    world.sc.status = Some(status);
}

fn condition_of(status: &StoppableContainerStatus, type_: &str) -> (String, String, String) {
    let found = status.conditions.iter().find(|c| c.type_ == type_).unwrap_or_else(|| panic!("no {type_} condition"));
    (found.status.clone(), found.reason.clone(), found.message.clone())
}

fn created_claims(steps: &[Step]) -> Vec<&PersistentVolumeClaim> {
    steps.iter().filter_map(|step| if let Step::CreateClaim { claim, .. } = step { Some(claim.as_ref()) } else { None }).collect()
}

/// A claim named like ours that the operator did not create, carrying `annotation` (an SC UID).
fn claim_by_someone(annotation: Option<&str>, created: i64) -> PersistentVolumeClaim {
    let mut claim = PersistentVolumeClaim::default();
    claim.metadata.name = Some("dev-rootfs".into());
    claim.metadata.namespace = Some(fixture_pods::NAMESPACE.into());
    claim.metadata.uid = Some("claim-uid-planted".into());
    claim.metadata.creation_timestamp = Some(at(created));
    claim.metadata.annotations = annotation.map(|uid| [(CLAIM_SC_UID_ANNOTATION.to_owned(), uid.to_owned())].into());
    claim
}

fn spec_problem(world: &World) -> String {
    let (valid, why, message) = condition_of(&status_of(world), condition::SPEC_VALID);
    assert_eq!((valid.as_str(), why.as_str()), ("False", reason::INVALID_SPEC));
    message
}

#[test]
fn rootfs_size_with_storage_is_refused_and_nothing_is_made() {
    let mut sc = on_claim();
    sc.spec.rootfs_size = Some(Quantity("5Gi".into()));
    let mut world = World::new(sc, true);
    assert_eq!(world.reconcile(), []);
    assert_eq!(
        spec_problem(&world),
        "invalid spec: spec.rootfsSize: is not used with spec.storage: the claim's size (spec.storage.size) is the limit; remove rootfsSize"
    );
}

#[test]
fn a_bad_storage_spec_and_the_reserved_names_are_refused_with_what_to_do() {
    let mut sc = on_claim();
    sc.spec.storage = Some(StorageSpec { size: Quantity("lots".into()), ..StorageSpec::default() });
    let template = sc.spec.template.spec.as_mut().expect("a pod spec");
    template.volumes.as_mut().expect("volumes")[0].name = STORAGE_VOLUME_NAME.into();
    template.containers[0].volume_mounts.as_mut().expect("mounts")[0].mount_path = format!("{STORAGE_VOLUME_MOUNT_PATH}/x");
    let mut world = World::new(sc, true);
    assert_eq!(world.reconcile(), []);
    let message = spec_problem(&world);
    assert!(message.starts_with("invalid spec: spec.storage.size: "), "{message}");
    assert!(
        message.contains(
            "spec.template.spec.volumes[0].name: \"sc-storage\" is reserved with spec.storage for the claim that holds the root filesystem; rename the volume"
        ),
        "{message}"
    );
    assert!(
        message.contains(
            "spec.template.spec.containers[0].volumeMounts[0].mountPath: \"/.sc-storage/x\" is reserved with spec.storage (/.sc-storage, the claim); mount the volume elsewhere"
        ),
        "{message}"
    );
}

#[test]
fn a_first_start_creates_the_claim_then_the_consumer_pod_on_it_unpinned() {
    let mut world = World::new(on_claim(), true);
    let steps = world.reconcile();
    assert!(
        !steps.iter().any(|step| matches!(step, Step::SetFinalizer { finalizer: NODE_DATA_FINALIZER, .. })),
        "no node data: {steps:#?}"
    );
    let claims = created_claims(&steps);
    assert_eq!(claims.len(), 1);
    let claim = claims[0];
    assert_eq!((claim.name_any(), claim.namespace().as_deref()), ("dev-rootfs".to_owned(), Some(fixture_pods::NAMESPACE)));
    assert_eq!(claim.annotations().get(CLAIM_SC_UID_ANNOTATION).map(String::as_str), Some(SC_UID));
    assert_eq!(claim.labels().get(sc_api::consts::LABEL_INSTANCE).map(String::as_str), Some("dev"));
    assert_eq!(claim.labels().get(sc_api::consts::LABEL_MANAGED_BY).map(String::as_str), Some(sc_api::consts::MANAGED_BY_VALUE));
    let owners = claim.owner_references();
    assert_eq!(owners.len(), 1, "whenDeleted Delete: owned by the SC");
    assert_eq!((owners[0].kind.as_str(), owners[0].uid.as_str()), ("StoppableContainer", SC_UID));
    let spec = claim.spec.as_ref().expect("a claim spec");
    assert_eq!(spec.access_modes.as_deref(), Some(&["ReadWriteOnce".to_owned()][..]));
    assert_eq!(spec.storage_class_name.as_deref(), Some("loop-ext4"));
    assert_eq!(spec.volume_mode.as_deref(), Some("Filesystem"));
    let requests = spec.resources.as_ref().and_then(|resources| resources.requests.as_ref()).expect("requests");
    assert_eq!(requests.get("storage"), Some(&Quantity("2Gi".into())));

    // The claim is created before the consumer pod, and its UID is recorded in the instance.
    let claim_at = steps.iter().position(|step| matches!(step, Step::CreateClaim { .. })).expect("the claim");
    let pod_at = steps.iter().position(|step| matches!(step, Step::CreatePod { role: Role::Consumer, .. })).expect("the consumer pod");
    assert!(claim_at < pod_at);
    let record = world.children.instance.as_ref().and_then(|instance| instance.spec.storage.clone()).expect("the record");
    assert_eq!(record.claim.claim_uid, world.children.claim.as_ref().and_then(|claim| claim.uid()));
    assert_eq!(record.requested, world.sc.spec.storage.clone().expect("spec.storage"));
    assert_eq!(world.children.instance.as_ref().and_then(|instance| instance.spec.rootfs_size_bytes), None, "no node-local size");

    let consumer = world.children.consumer.clone().expect("the consumer pod");
    assert_eq!(pinned_node(&consumer), None, "never pinned: the scheduler places it by the claim");
    let spec = consumer.spec.as_ref().expect("spec");
    let volume = spec.volumes.iter().flatten().find(|volume| volume.name == STORAGE_VOLUME_NAME).expect("the claim's volume");
    assert_eq!(volume.persistent_volume_claim.as_ref().map(|source| source.claim_name.as_str()), Some("dev-rootfs"));
    let mount = spec.containers[0].volume_mounts.iter().flatten().find(|mount| mount.name == STORAGE_VOLUME_NAME).expect("mounted");
    assert_eq!((mount.mount_path.as_str(), mount.read_only), (STORAGE_VOLUME_MOUNT_PATH, Some(true)));
    world.settled();

    // Bound: no data node is recorded; the provider follows the consumer pod's node.
    world.bind(Role::Consumer, NODE);
    let steps = world.reconcile();
    assert!(!steps.iter().any(|step| matches!(step, Step::RecordDataNode(_))), "{steps:#?}");
    let pods = created(&steps);
    assert_eq!((pods.len(), pods[0].0, provider_node(pods[0].1).as_deref()), (1, Role::Provider, Some(NODE)));
    world.settled();
}

#[test]
fn a_retained_claim_has_no_owner() {
    let mut sc = on_claim();
    sc.spec.storage.as_mut().expect("storage").when_deleted = Some(ClaimRetention::Retain);
    let mut world = World::new(sc, true);
    let steps = world.reconcile();
    assert_eq!(created_claims(&steps)[0].metadata.owner_references, None);
}

#[test]
fn a_claim_someone_else_made_is_never_adopted_and_fails_the_start_with_what_to_do() {
    for (case, planted) in [
        ("a tenant's claim with no annotation", claim_by_someone(None, 200)),
        ("the retained claim of an earlier SC of this name", claim_by_someone(Some("uid-of-the-earlier-sc"), 50)),
        ("our annotation forged on a claim older than the SC", claim_by_someone(Some(SC_UID), 50)),
    ] {
        let mut world = World::new(on_claim(), true);
        world.children.claim = Some(planted);
        let steps = world.reconcile();
        assert_eq!(created(&steps).len(), 0, "{case}: no pod mounts it");
        assert_eq!(created_claims(&steps).len(), 0, "{case}");
        assert_eq!(events(&steps), [(true, "ClaimConflict")], "{case}");
        let record = world.children.instance.as_ref().and_then(|instance| instance.spec.storage.as_ref());
        assert_eq!(record, None, "{case}: its UID is never recorded");
        let status = status_of(&world);
        assert_eq!(status.phase, Some(Phase::Failed), "{case}");
        let message = status.message.clone().unwrap_or_default();
        assert!(
            message.starts_with(
                "PersistentVolumeClaim \"dev-rootfs\" exists and is not the claim the operator created for this StoppableContainer"
            ),
            "{case}: {message}"
        );
        assert!(
            message.ends_with("Delete or rename that claim, or delete this StoppableContainer and create it under another name"),
            "{case}"
        );
        assert_eq!(condition_of(&status, condition::STORAGE).1, reason::CLAIM_NOT_OWNED, "{case}");
    }
    let mut world = World::new(on_claim(), true);
    world.children.claim = Some(claim_by_someone(Some("uid-of-the-earlier-sc"), 50));
    world.reconcile();
    assert!(
        status_of(&world)
            .message
            .unwrap_or_default()
            .contains("created for an earlier StoppableContainer of this name, uid uid-of-the-earlier-sc, and retained")
    );
}

#[test]
fn a_claim_swapped_after_the_record_is_refused() {
    let mut world = World::running(on_claim());
    report_status(&mut world);
    world.stopped_on_claim();
    // Someone deleted our claim and made one of the same name, with our annotation, newer.
    world.children.claim = Some(claim_by_someone(Some(SC_UID), 300));
    world.sc.spec.running = true;
    let steps = world.reconcile();
    assert_eq!(created(&steps).len(), 0);
    assert_eq!(condition_of(&status_of(&world), condition::STORAGE).1, reason::CLAIM_NOT_OWNED);
}

#[test]
fn a_recorded_claim_that_is_gone_is_not_replaced_by_an_empty_one() {
    let mut world = World::running(on_claim());
    world.stopped_on_claim();
    world.children.claim = None;
    world.sc.spec.running = true;
    let steps = world.reconcile();
    assert_eq!((created(&steps).len(), created_claims(&steps).len()), (0, 0));
    assert_eq!(events(&steps), [(true, "ClaimLost")]);
    let status = status_of(&world);
    assert_eq!(status.phase, Some(Phase::Failed));
    assert!(status.message.unwrap_or_default().contains("which held the root filesystem, no longer exists: the data is gone with it"));
}

#[test]
fn the_claim_created_before_an_operator_crash_is_recorded_once_then_used() {
    let mut world = World::new(on_claim(), true);
    // The crash window: the claim exists, created for this SC after it, and no UID is recorded.
    let mut ours = claim_by_someone(Some(SC_UID), 200);
    ours.metadata.uid = Some("claim-uid-created-before-the-crash".into());
    world.children.claim = Some(ours);
    let steps = world.reconcile();
    assert_eq!(created_claims(&steps).len(), 0);
    assert!(events(&steps).contains(&(false, "ClaimRecorded")), "{steps:#?}");
    let record = world.children.instance.as_ref().and_then(|instance| instance.spec.storage.clone()).expect("recorded");
    assert_eq!(record.claim.claim_uid.as_deref(), Some("claim-uid-created-before-the-crash"));
    assert_eq!(created(&steps).len(), 1, "then the consumer pod");
}

#[test]
fn a_changed_storage_is_refused_a_running_sc_keeps_running_and_a_start_waits() {
    let mut world = World::running(on_claim());
    world.sc.spec.storage.as_mut().expect("storage").size = Quantity("4Gi".into());
    world.settled();
    let status = status_of(&world);
    assert_eq!(status.phase, Some(Phase::Running), "the running SC keeps running");
    assert!(spec_problem(&world).ends_with(
        "spec.storage: cannot change after creation (only whenDeleted can): it was size 2Gi, class loop-ext4; put it back, \
         or create a new StoppableContainer with the storage you want"
    ));
    world.stopped_on_claim();
    world.sc.spec.running = true;
    assert_eq!(created(&world.reconcile()).len(), 0, "a start waits for the spec to be put back");
    world.sc.spec.storage.as_mut().expect("storage").size = Quantity("2Gi".into());
    world.sc.spec.storage.as_mut().expect("storage").when_deleted = Some(ClaimRetention::Retain);
    assert_eq!(created(&world.reconcile()).len(), 1, "put back (whenDeleted may change): it starts");
}

#[test]
fn removing_storage_is_refused() {
    let mut world = World::running(on_claim());
    world.sc.spec.storage = None;
    world.settled();
    assert!(
        spec_problem(&world)
            .ends_with("spec.storage: cannot be removed: the root filesystem is on its claim; put spec.storage back as it was")
    );
}

#[test]
fn a_stop_deletes_the_consumer_pod_then_the_provider_and_is_stopped_only_when_both_are_gone() {
    let mut world = World::running(on_claim());
    world.sc.spec.running = false;
    let steps = world.reconcile();
    assert_eq!(deleted(&steps).iter().map(|(role, _)| *role).collect::<Vec<_>>(), [Role::Consumer], "the consumer pod first");
    assert_eq!(status_of(&world).phase, Some(Phase::Stopping));
    world.gone(Role::Consumer);
    let steps = world.reconcile();
    let deletions = deleted(&steps);
    assert_eq!(deletions.len(), 1);
    assert_eq!(deletions[0].0, Role::Provider);
    assert!(lifecycle_why(deletions[0].1).ends_with("with spec.storage a stopped StoppableContainer holds no pod"));
    assert_eq!(status_of(&world).phase, Some(Phase::Stopping), "the provider terminates");
    world.gone(Role::Provider);
    world.settled();
    let status = status_of(&world);
    assert_eq!(status.phase, Some(Phase::Stopped));
    assert_eq!(status.message.as_deref(), Some("stopped; the root filesystem is kept on its claim, and no pod runs"));

    // A start: the consumer pod, unpinned, then the provider on whatever node it gets.
    world.sc.spec.running = true;
    let steps = world.reconcile();
    let pods = created(&steps);
    assert_eq!(pods.len(), 1);
    assert_eq!((pods[0].0, pinned_node(pods[0].1)), (Role::Consumer, None));
    assert_eq!(created_claims(&steps).len(), 0, "the claim is the one recorded");
    world.bind(Role::Consumer, OTHER_NODE);
    let pods = created(&world.reconcile()).into_iter().map(|(role, pod, _)| (role, provider_node(pod))).collect::<Vec<_>>();
    assert_eq!(pods, [(Role::Provider, Some(OTHER_NODE.to_owned()))]);
}

#[test]
fn the_status_shows_the_claim_as_kubernetes_reports_it() {
    let mut world = World::running(on_claim());
    let claim = world.children.claim.as_mut().expect("the claim");
    claim.spec.get_or_insert_default().volume_name = Some("pv-7".into());
    claim.status = Some(PersistentVolumeClaimStatus {
        phase: Some("Bound".into()),
        capacity: Some([("storage".to_owned(), Quantity("2Gi".into()))].into()),
        ..PersistentVolumeClaimStatus::default()
    });
    let status = status_of(&world);
    let storage = status.storage.clone().expect("status.storage");
    assert_eq!(storage.claim.claim_name, "dev-rootfs");
    assert_eq!(storage.claim.claim_uid, world.children.claim.as_ref().and_then(|claim| claim.uid()));
    assert_eq!((storage.phase.as_deref(), storage.capacity), (Some("Bound"), Some(Quantity("2Gi".into()))));
    assert_eq!(storage.storage_class_name.as_deref(), Some("loop-ext4"));
    assert_eq!(
        condition_of(&status, condition::STORAGE),
        (
            "True".into(),
            reason::CLAIM_BOUND.into(),
            "the root filesystem is on the claim \"dev-rootfs\", bound to volume \"pv-7\" (2Gi)".into()
        )
    );
}

#[test]
fn a_deletion_removes_pods_and_instance_then_deletes_the_claim_with_delete_and_keeps_it_with_retain() {
    let mut world = World::running(on_claim());
    report_status(&mut world);
    let order = |world: &World| teardown(&world.sc, &world.children);
    world.steps_done(&order(&world).steps);
    world.gone(Role::Consumer);
    world.steps_done(&order(&world).steps);
    world.gone(Role::Provider);
    world.steps_done(&order(&world).steps);
    world.children.instance = None;
    let claim_uid = world.children.claim.as_ref().and_then(|claim| claim.uid()).expect("uid");
    let delete = order(&world);
    assert_eq!((delete.stage, delete.steps), (Stage::Removing, vec![Step::DeleteClaim { name: "dev-rootfs".into(), uid: claim_uid }]));
    world.steps_done(&[Step::DeleteClaim {
        name: "dev-rootfs".into(),
        uid: world.children.claim.as_ref().and_then(|c| c.uid()).expect("uid"),
    }]);
    assert_eq!(order(&world).stage, Stage::Done, "no node data to wait for");

    // Retain (whenDeleted may change after creation): the SC's owner reference comes off.
    let mut world = World::running(on_claim());
    report_status(&mut world);
    world.sc.spec.storage.as_mut().expect("storage").when_deleted = Some(ClaimRetention::Retain);
    world.steps_done(&order(&world).steps);
    world.gone(Role::Consumer);
    world.steps_done(&order(&world).steps);
    world.gone(Role::Provider);
    world.steps_done(&order(&world).steps);
    world.children.instance = None;
    let retain = order(&world);
    assert!(matches!(&retain.steps[..], [Step::SetClaimOwners { owner_references, .. }] if owner_references.is_empty()), "{retain:?}");
    world.steps_done(&retain.steps);
    let done = order(&world);
    assert_eq!((done.stage, done.steps), (Stage::Done, vec![]), "the claim stays");
    assert!(world.children.claim.as_ref().is_some_and(|claim| claim.metadata.deletion_timestamp.is_none()));
}

#[test]
fn a_claim_that_is_not_ours_is_never_deleted_with_the_sc() {
    let mut world = World::new(on_claim(), true);
    world.children.claim = Some(claim_by_someone(Some("uid-of-the-earlier-sc"), 50));
    world.reconcile();
    world.children.instance = None;
    let done = teardown(&world.sc, &world.children);
    assert_eq!((done.stage, done.steps), (Stage::Done, vec![]));
}

fn node(taints: &[&str]) -> Node {
    let taints = taints.iter().map(|key| Taint { key: (*key).to_owned(), effect: "NoExecute".into(), ..Taint::default() }).collect();
    Node { spec: Some(NodeSpec { taints: Some(taints), ..NodeSpec::default() }), ..Node::default() }
}

#[test]
fn the_pods_of_a_gone_or_out_of_service_node_go_at_once_and_the_workload_comes_back_elsewhere() {
    assert_eq!(NodeState::of(None), NodeState::Gone);
    assert_eq!(NodeState::of(Some(&node(&[OUT_OF_SERVICE_TAINT]))), NodeState::OutOfService);
    assert_eq!(NodeState::of(Some(&node(&["node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready"]))), NodeState::Present);
    for lost in [NodeState::Gone, NodeState::OutOfService] {
        let mut world = World::running(on_claim());
        world.pod_nodes.insert(NODE.into(), lost);
        let steps = world.reconcile();
        let deletions: Vec<(Role, Option<u32>)> = steps
            .iter()
            .filter_map(
                |step| if let Step::DeletePod(deletion) = step { Some((deletion.role, deletion.grace_period_seconds)) } else { None },
            )
            .collect();
        assert_eq!(deletions, [(Role::Consumer, Some(0)), (Role::Provider, Some(0))], "{lost:?}");
        let pods = created(&steps);
        assert_eq!((pods.len(), pods[0].0, pinned_node(pods[0].1)), (1, Role::Consumer, None), "{lost:?}: a new consumer pod, anywhere");
        world.pod_nodes.clear();
        world.bind(Role::Consumer, OTHER_NODE);
        let pods = created(&world.reconcile()).into_iter().map(|(role, pod, _)| (role, provider_node(pod))).collect::<Vec<_>>();
        assert_eq!(pods, [(Role::Provider, Some(OTHER_NODE.to_owned()))], "{lost:?}");
    }
}

#[test]
fn a_node_that_is_merely_not_ready_keeps_its_pods_and_node_local_scs_are_left_as_today() {
    let mut world = World::running(on_claim());
    world.pod_nodes.insert(NODE.into(), NodeState::Present);
    world.settled();
    let (_, node_local) = load("fixtures").remove(0);
    let mut world = World::running(node_local);
    world.pod_nodes.insert(NODE.into(), NodeState::Gone);
    world.settled();
}

fn provider_ran(world: &mut World, image_id: &str) {
    let provider = world.pod_mut(Role::Provider);
    let statuses = provider.status.get_or_insert_default().container_statuses.get_or_insert_default();
    statuses.retain(|status| status.name != PROVIDER_CONTAINER_NAME);
    statuses.push(k8s_openapi::api::core::v1::ContainerStatus {
        name: PROVIDER_CONTAINER_NAME.into(),
        image_id: image_id.into(),
        ..Default::default()
    });
}

fn provider_image(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref()?.containers[0].image.as_deref()
}

#[test]
fn the_digest_the_provider_ran_is_pinned_and_later_providers_run_it_until_the_template_image_changes() {
    let mut world = World::running(on_claim());
    provider_ran(&mut world, &format!("docker-pullable://{DIGEST_REF}"));
    let steps = world.reconcile();
    assert_eq!(events(&steps), [(false, "ImagePinned")]);
    let pin = world.children.instance.as_ref().and_then(|i| i.spec.storage.as_ref()).and_then(|s| s.pinned_image.clone()).expect("pinned");
    assert_eq!((pin.image.as_str(), pin.digest_ref.as_str()), ("registry.test/dev:1", DIGEST_REF));
    world.settled();

    // A provider lost and made again, on another node: the digest, not the tag.
    world.children.provider = None;
    let steps = world.reconcile();
    assert_eq!(provider_image(created(&steps)[0].1), Some(DIGEST_REF));
    world.bind(Role::Provider, NODE);
    provider_ran(&mut world, DIGEST_REF);
    world.settled();

    // The template's image changed, and a stop and start apply it: the tag runs, then is pinned anew.
    change_image(&mut world.sc);
    world.stopped_on_claim();
    world.sc.spec.running = true;
    world.reconcile();
    world.bind(Role::Consumer, NODE);
    let steps = world.reconcile();
    assert_eq!(provider_image(created(&steps)[0].1), Some("registry.test/changed:2"));
    let moved = "registry.test/changed@sha256:fcde2b2edba56bf408601fb721fe9b5c338d10ee429ea04fae5511b68fbf8fb9";
    provider_ran(&mut world, moved);
    world.reconcile();
    let pin = world.children.instance.as_ref().and_then(|i| i.spec.storage.as_ref()).and_then(|s| s.pinned_image.clone()).expect("pinned");
    assert_eq!((pin.image.as_str(), pin.digest_ref.as_str()), ("registry.test/changed:2", moved));
}

#[test]
fn a_local_image_id_is_never_pinned() {
    let mut world = World::running(on_claim());
    provider_ran(&mut world, "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae");
    world.settled();
}

fn change_image(sc: &mut StoppableContainer) {
    sc.spec.template.spec.as_mut().expect("a pod spec").containers[0].image = Some("registry.test/changed:2".into());
}

fn usage_entry(node: &str, used_bytes: u64) -> std::collections::BTreeMap<String, String> {
    let report = sc_api::node_report::UsageReport {
        namespace: fixture_pods::NAMESPACE.into(),
        name: "dev".into(),
        node: node.into(),
        limit_bytes: Some(2 << 30),
        used_bytes: Some(used_bytes),
        available_bytes: Some((2 << 30) - used_bytes),
        inodes_used: None,
        inodes_total: None,
        observed_time: at(500),
        image: None,
    };
    [(SC_UID.to_owned(), report.to_value())].into()
}

#[test]
fn the_usage_the_consumer_pods_node_reports_is_shown_and_kept_while_stopped() {
    let mut world = World::running(on_claim());
    // Another node's word does not count.
    world.usage = Some(usage_entry(OTHER_NODE, 1 << 20));
    assert_eq!(status_of(&world).rootfs, None);
    world.usage = Some(usage_entry(NODE, 1 << 20));
    report_status(&mut world);
    assert_eq!(world.sc.status.as_ref().and_then(|status| status.rootfs.as_ref()).and_then(|rootfs| rootfs.used_bytes), Some(1 << 20));
    world.stopped_on_claim();
    world.usage = None;
    assert_eq!(status_of(&world).rootfs.and_then(|rootfs| rootfs.used_bytes), Some(1 << 20), "the last figures stay");
}

#[test]
fn a_running_sc_on_a_claim_is_looked_at_every_minute_for_node_loss() {
    let settings = PodSettings::for_tests();
    let requeue = |world: &World| {
        let facts = Facts { settings: &settings, data_node_exists: None, usage: None, pod_nodes: Some(&world.pod_nodes) };
        report(&world.sc, world.sc.status.as_ref(), &world.children, &facts, None, epoch()).requeue
    };
    let mut world = World::running(on_claim());
    assert_eq!(requeue(&world), sc_operator::controller::report::REQUEUE_STEADY_ON_CLAIM);
    world.stopped_on_claim();
    assert_eq!(requeue(&world), sc_operator::controller::report::REQUEUE_STEADY, "no pod, no node to lose");
    let (_, node_local) = load("fixtures").remove(0);
    assert_eq!(requeue(&World::running(node_local)), sc_operator::controller::report::REQUEUE_STEADY, "node-local: as today");
}

#[test]
fn a_claim_someone_deletes_keeps_the_running_workload_and_gets_no_new_pod() {
    let mut world = World::running(on_claim());
    world.children.claim.as_mut().expect("the claim").metadata.deletion_timestamp = Some(epoch());
    world.settled();
    let status = status_of(&world);
    assert_eq!(status.phase, Some(Phase::Running), "the running workload keeps its mount");
    let (bound, why, message) = condition_of(&status, condition::STORAGE);
    assert_eq!((bound.as_str(), why.as_str()), ("False", reason::CLAIM_LOST));
    assert!(message.starts_with("the claim \"dev-rootfs\" is being deleted (not by the operator)"), "{message}");
    world.stopped_on_claim();
    world.sc.spec.running = true;
    let steps = world.reconcile();
    assert_eq!(created(&steps).len(), 0, "no pod on a claim being deleted");
    assert_eq!(events(&steps), [(true, "ClaimLost")]);
}

#[test]
fn a_claim_refused_under_a_running_workload_still_lets_its_lost_provider_be_replaced() {
    let mut world = World::running(on_claim());
    world.children.claim = Some(claim_by_someone(Some(SC_UID), 300));
    world.children.provider = None;
    let steps = world.reconcile();
    assert_eq!(created(&steps).iter().map(|(role, ..)| *role).collect::<Vec<_>>(), [Role::Provider]);
    assert_eq!(condition_of(&status_of(&world), condition::STORAGE).1, reason::CLAIM_NOT_OWNED, "the status says so");
}
