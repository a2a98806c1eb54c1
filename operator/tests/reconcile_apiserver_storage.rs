//! Reconcile tests of `spec.storage` (issue 13) against a real Kubernetes 1.20 API server (see
//! `reconcile_apiserver.rs` and `support::apiserver` for the binaries and environment it needs):
//! the claim created, recorded and mounted, a stop that leaves no pod, the claim deleted with
//! `Delete` and kept with `Retain`, and a claim of that name the operator did not create never
//! used. The tests play scheduler and kubelet; no controller-manager runs, so a deleted claim
//! stays Terminating (its `kubernetes.io/pvc-protection` finalizer) and nothing binds a claim.

mod support;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{DeleteParams, PostParams};
use kube::{Api, ResourceExt};
use sc_api::consts::{NODE_DATA_FINALIZER, provider_pod_name};
use sc_api::storage::{STORAGE_VOLUME_MOUNT_PATH, STORAGE_VOLUME_NAME};
use sc_operator::consumer_pod::pinned_node;
use serde_json::{Value, json};
use support::cluster::{TestEnv, condition_of, eventually, message, phase, sc_manifest};

/// `sc_manifest` with `spec.storage` (2Gi of class `loop-ext4`, whenDeleted as given).
fn on_claim(name: &str, running: bool, when_deleted: &str) -> Value {
    let mut manifest = sc_manifest(name, running, "busybox:1.36");
    manifest["spec"]["storage"] = json!({ "size": "2Gi", "storageClassName": "loop-ext4", "whenDeleted": when_deleted });
    manifest
}

fn claims(env: &TestEnv) -> Api<PersistentVolumeClaim> {
    Api::namespaced(env.client.clone(), &env.namespace)
}

async fn wait_claim(env: &TestEnv, name: &str, what: &str, check: impl Fn(&PersistentVolumeClaim) -> bool) -> PersistentVolumeClaim {
    eventually(&format!("claim {name}: {what}"), || async {
        match claims(env).get_opt(name).await.map_err(|error| error.to_string())? {
            Some(claim) if check(&claim) => Ok(claim),
            Some(claim) => Err(format!("{:?}", claim.metadata)),
            None => Err("absent".to_owned()),
        }
    })
    .await
}

/// The claim UID the instance records (what the node plugin trusts).
async fn recorded_claim_uid(env: &TestEnv, name: &str) -> Option<String> {
    let instance = env.instances.get_opt(name).await.expect("read the instance")?;
    instance.spec.storage.and_then(|storage| storage.claim.claim_uid)
}

/// A first start on a claim, played until Running on `node`: the claim (recorded before the
/// consumer pod exists), the consumer pod (mounting it, unpinned), the provider on its node.
async fn start_on_claim(env: &TestEnv, name: &str, node: &str) -> (PersistentVolumeClaim, Pod) {
    let claim_name = format!("{name}-rootfs");
    let consumer = env.wait_pod(name, "created by the operator", |pod| pod.metadata.deletion_timestamp.is_none()).await;
    let claim = claims(env).get(&claim_name).await.expect("the claim exists before the consumer pod");
    assert_eq!(recorded_claim_uid(env, name).await, claim.uid(), "the claim's UID is recorded before any pod mounts it");
    assert_eq!(pinned_node(&consumer), None, "the scheduler places it by the claim");
    let spec = consumer.spec.as_ref().expect("spec");
    let volume = spec.volumes.iter().flatten().find(|volume| volume.name == STORAGE_VOLUME_NAME).expect("the claim's volume");
    assert_eq!(volume.persistent_volume_claim.as_ref().map(|source| source.claim_name.clone()), Some(claim_name));
    assert!(
        spec.containers[0]
            .volume_mounts
            .iter()
            .flatten()
            .any(|mount| mount.mount_path == STORAGE_VOLUME_MOUNT_PATH && mount.read_only == Some(true)),
        "mounted read-only in the workload container"
    );
    env.bind(name, node).await;
    let provider_name = provider_pod_name(name);
    env.wait_pod(&provider_name, "on the consumer pod's node", |pod| pinned_node(pod).as_deref() == Some(node)).await;
    env.bind(&provider_name, node).await;
    env.set_pod_ready(&provider_name).await;
    env.set_pod_ready(name).await;
    let sc = env.wait_sc(name, "phase Running", |sc| phase(sc) == "Running").await;
    let status = sc.status.clone().unwrap_or_default();
    assert_eq!(status.data_node_name, None, "no node holds the data");
    assert!(!sc.finalizers().iter().any(|f| f == NODE_DATA_FINALIZER), "no node data to wait for");
    let storage = status.storage.expect("status.storage");
    assert_eq!((storage.claim.claim_uid, storage.storage_class_name.as_deref()), (claim.uid(), Some("loop-ext4")));
    (claim, consumer)
}

#[tokio::test]
async fn a_claim_is_created_recorded_mounted_left_alone_by_a_stop_and_deleted_with_the_sc() {
    let Some(env) = TestEnv::with_operator("storage-delete").await else { return };
    let node = env.create_node("n1").await;
    let sc = env.create_sc(on_claim("dev", true, "Delete")).await;
    let (claim, _) = start_on_claim(&env, "dev", &node).await;
    let owners = claim.owner_references();
    assert_eq!((owners.len(), owners.first().map(|owner| owner.uid.clone())), (1, sc.uid()), "owned by the SC");
    assert_eq!(condition_of(&env.scs.get("dev").await.expect("sc"), "Storage"), Some(("False".into(), "ClaimPending".into())));

    // A stop leaves no pod: the consumer pod, then the provider.
    env.patch_spec("dev", json!({ "running": false })).await;
    env.wait_pod_terminating("dev").await;
    let provider = env.pod("dev-provider").await.expect("the provider stays while the consumer pod terminates");
    assert!(provider.metadata.deletion_timestamp.is_none());
    env.finish_termination("dev").await;
    env.finish_termination("dev-provider").await;
    env.wait_sc("dev", "Stopped with no pod", |sc| {
        phase(sc) == "Stopped" && message(sc) == "stopped; the root filesystem is kept on its claim, and no pod runs"
    })
    .await;
    assert!(claims(&env).get("dev-rootfs").await.expect("the claim").metadata.deletion_timestamp.is_none(), "a stop keeps the claim");

    env.scs.delete("dev", &DeleteParams::default()).await.expect("delete");
    env.wait_sc_gone("dev").await;
    let deleted = claims(&env).get_opt("dev-rootfs").await.expect("read the claim");
    assert!(deleted.is_none_or(|claim| claim.metadata.deletion_timestamp.is_some()), "whenDeleted Delete: the claim is deleted");
    env.wait_event("dev", "ClaimDeleted").await;
}

#[tokio::test]
async fn a_retained_claim_stays_and_a_new_sc_of_the_same_name_never_adopts_it() {
    let Some(env) = TestEnv::with_operator("storage-retain").await else { return };
    let node = env.create_node("n1").await;
    env.create_sc(on_claim("dev", true, "Retain")).await;
    let (claim, _) = start_on_claim(&env, "dev", &node).await;
    assert_eq!(claim.metadata.owner_references, None, "nothing owns a retained claim");

    env.scs.delete("dev", &DeleteParams::default()).await.expect("delete");
    env.finish_termination("dev").await;
    env.finish_termination("dev-provider").await;
    env.wait_sc_gone("dev").await;
    let kept = claims(&env).get("dev-rootfs").await.expect("whenDeleted Retain: the claim stays");
    assert_eq!((kept.uid(), kept.metadata.deletion_timestamp), (claim.uid(), None));

    // A new SC of the same name: the retained claim is an earlier SC's.
    env.create_sc(on_claim("dev", true, "Delete")).await;
    let sc = env.wait_sc("dev", "Failed on the claim", |sc| phase(sc) == "Failed").await;
    assert!(
        message(&sc).starts_with("PersistentVolumeClaim \"dev-rootfs\" exists and is not the claim the operator created for this StoppableContainer (it was created for an earlier StoppableContainer of this name"),
        "{}",
        message(&sc)
    );
    assert_eq!(condition_of(&sc, "Storage"), Some(("False".into(), "ClaimNotOwned".into())));
    let event = env.wait_event("dev", "ClaimConflict").await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert!(env.pod("dev").await.is_none(), "no pod mounts it");
    assert_eq!(recorded_claim_uid(&env, "dev").await, None, "its UID is never recorded");

    // Deleting this SC leaves the retained claim alone too.
    env.scs.delete("dev", &DeleteParams::default()).await.expect("delete");
    env.wait_sc_gone("dev").await;
    let kept = claims(&env).get("dev-rootfs").await.expect("the claim stays");
    assert_eq!((kept.uid(), kept.metadata.deletion_timestamp), (claim.uid(), None));
}

#[tokio::test]
async fn a_tenants_claim_of_that_name_is_refused_until_it_is_deleted() {
    let Some(env) = TestEnv::with_operator("storage-tenant").await else { return };
    let planted: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": { "name": "dev-rootfs", "labels": { "stoppablecontainer.xtlsoft.top/instance": "dev" } },
        "spec": { "accessModes": ["ReadWriteOnce"], "resources": { "requests": { "storage": "1Gi" } } }
    }))
    .expect("a claim");
    let planted = claims(&env).create(&PostParams::default(), &planted).await.expect("the tenant's claim");
    env.create_sc(on_claim("dev", true, "Delete")).await;
    let sc = env.wait_sc("dev", "Failed on the claim", |sc| phase(sc) == "Failed").await;
    assert!(message(&sc).contains("Delete or rename that claim"), "{}", message(&sc));
    assert!(env.pod("dev").await.is_none());

    claims(&env).delete("dev-rootfs", &DeleteParams::default()).await.expect("delete the tenant's claim");
    // No controller-manager: the tenant's claim keeps its pvc-protection finalizer; remove it.
    let patch = kube::api::Patch::Merge(json!({ "metadata": { "finalizers": null } }));
    claims(&env).patch("dev-rootfs", &kube::api::PatchParams::default(), &patch).await.ok();
    let claim = wait_claim(&env, "dev-rootfs", "the operator's own", |claim| {
        claim.uid().as_deref() != planted.uid().as_deref() && claim.labels().contains_key("stoppablecontainer.xtlsoft.top/managed-by")
    })
    .await;
    env.wait_pod("dev", "the consumer pod", |_| true).await;
    assert_eq!(recorded_claim_uid(&env, "dev").await, claim.uid());
}

/// Wakes the SC's reconcile at once (an annotation change), as the eviction of its pods by
/// Kubernetes (or the operator's requeue while on a claim) would, without waiting for either.
async fn wake(env: &TestEnv, name: &str, why: &str) {
    let patch = kube::api::Patch::Merge(json!({ "metadata": { "annotations": { "test/wake": why } } }));
    env.scs.patch(name, &kube::api::PatchParams::default(), &patch).await.expect("annotate the SC");
}

#[tokio::test]
async fn pods_on_a_lost_node_go_at_once_and_the_workload_comes_back_elsewhere() {
    let Some(env) = TestEnv::with_operator("storage-node-loss").await else { return };
    let first = env.create_node("n1").await;
    let second = env.create_node("n2").await;
    env.create_sc(on_claim("dev", true, "Delete")).await;
    let (_, consumer) = start_on_claim(&env, "dev", &first).await;

    // Out of service (an administrator's word that the node is down): both pods go, no grace.
    let taint =
        json!({ "spec": { "taints": [{ "key": "node.kubernetes.io/out-of-service", "effect": "NoExecute", "value": "nodeshutdown" }] } });
    env.nodes.patch(&first, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(taint)).await.expect("taint the node");
    wake(&env, "dev", "tainted").await;
    let replacement = env.wait_pod("dev", "a new consumer pod", |pod| pod.uid() != consumer.uid()).await;
    assert_eq!(pinned_node(&replacement), None, "placed anywhere the claim can go");
    assert!(env.pod("dev-provider").await.is_none(), "the provider of the lost node is gone too");
    let event = env.wait_event("dev", "PodDeleted").await;
    assert!(event.note.unwrap_or_default().contains("is out of service"), "the Event says why");

    // On the second node; then that Node object is deleted (the machine replaced): again.
    let (_, consumer) = start_on_claim(&env, "dev", &second).await;
    env.delete_node(&second).await;
    wake(&env, "dev", "deleted").await;
    let replacement = env.wait_pod("dev", "another consumer pod", |pod| pod.uid() != consumer.uid()).await;
    assert_eq!(replacement.spec.as_ref().and_then(|spec| spec.node_name.clone()), None, "not yet placed");
}

#[tokio::test]
async fn a_node_that_is_only_not_ready_keeps_the_pods() {
    let Some(env) = TestEnv::with_operator("storage-not-ready").await else { return };
    let node = env.create_node("n1").await;
    env.create_sc(on_claim("dev", true, "Delete")).await;
    let (_, consumer) = start_on_claim(&env, "dev", &node).await;
    let taint = json!({ "spec": { "taints": [{ "key": "node.kubernetes.io/unreachable", "effect": "NoExecute" }] } });
    env.nodes.patch(&node, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(taint)).await.expect("taint the node");
    // A reconcile sees the node (a spec change wakes it), and leaves the pods.
    env.patch_spec("dev", json!({ "template": { "metadata": { "labels": { "app": "dev", "touched": "yes" } } } })).await;
    env.wait_sc("dev", "RestartRequired", |sc| condition_of(sc, "RestartRequired").is_some_and(|(status, _)| status == "True")).await;
    let still = env.pod("dev").await.expect("the consumer pod stays");
    assert_eq!((still.uid(), still.metadata.deletion_timestamp), (consumer.uid(), None));
}

#[tokio::test]
async fn the_storage_fixture_applies_unchanged_and_its_claim_and_consumer_pod_bodies_are_accepted_by_1_20() {
    let Some(env) = TestEnv::new("storage-bodies").await else { return };
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/storage/dev-on-claim.yaml");
    let mut manifest: Value = serde_yaml::from_str(&std::fs::read_to_string(&path).expect("the fixture")).expect("yaml");
    manifest["spec"]["running"] = json!(false);
    let sc = env.create_sc(manifest.clone()).await;
    let stored = serde_json::to_value(&sc.spec.storage).expect("json");
    assert_eq!(stored, manifest["spec"]["storage"], "the CRD keeps spec.storage as written");

    let valid = sc_operator::validate::validate(&sc).expect("valid");
    let resolved = sc_api::storage::resolve(sc.spec.storage.as_ref().expect("storage")).expect("resolved");
    let claim = sc_operator::storage::claim::build_claim(&sc, &resolved);
    let created = claims(&env)
        .create(&PostParams { dry_run: true, field_manager: None }, &claim)
        .await
        .unwrap_or_else(|error| panic!("the claim on 1.20: {error}"));
    assert_eq!(created.spec.as_ref().and_then(|spec| spec.volume_mode.clone()).as_deref(), Some("Filesystem"));
    let mut instance = sc_operator::instance_builder::build_instance(&sc, None, true);
    instance.metadata.uid = Some("00000000-0000-4000-8000-00000000000a".into());
    instance.spec.storage = Some(sc_api::storage::InstanceStorage {
        requested: sc.spec.storage.clone().expect("storage"),
        claim: sc_api::storage::ClaimRecord { claim_name: "dev-rootfs".into(), claim_uid: Some("claim-uid".into()) },
        pinned_image: None,
    });
    let consumer = sc_operator::consumer_pod::build_consumer_pod(&valid.workload, &instance, None, &support::cluster::settings());
    let created = env
        .pods
        .create(&PostParams { dry_run: true, field_manager: None }, &consumer)
        .await
        .unwrap_or_else(|error| panic!("the consumer pod on 1.20: {error}"));
    let volumes = created.spec.and_then(|spec| spec.volumes).unwrap_or_default();
    assert!(volumes.iter().any(|volume| volume.persistent_volume_claim.as_ref().is_some_and(|source| source.claim_name == "dev-rootfs")));
}
