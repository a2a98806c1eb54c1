//! Reconcile tests against a real Kubernetes 1.20 API server (etcd + kube-apiserver, started
//! privately by `support::apiserver`; see there for the binaries and environment it needs).
//!
//! The CRDs are installed exactly as the chart ships them. Every test gets its own namespace and
//! its own in-process operator scoped to it; the tests play scheduler, kubelet and node plugin.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use sc_api::consts::{
    LABEL_INSTANCE, LABEL_MANAGED_BY, LABEL_ROLE, MANAGED_BY_VALUE, NODE_DATA_FINALIZER, OPERATOR_FIELD_MANAGER, ROLE_CONSUMER,
    ROLE_PROVIDER, SC_FINALIZER, SCI_FINALIZER, provider_pod_name,
};
use sc_api::image_config::ImageSummary;
use sc_api::node_report::UsageReport;
use sc_api::{RootfsStatus, StoppableContainer, StoppableContainerInstance};
use sc_operator::consumer_pod::{build_consumer_pod, pinned_node};
use sc_operator::instance_builder::build_instance;
use sc_operator::meta::is_controlled_by;
use sc_operator::ownership::Role;
use sc_operator::provider_pod::{PROVIDER_HASH_ANNOTATION, build_provider_pod};
use sc_operator::validate::validate;
use serde_json::{Value, json};
use support::apiserver::ApiServer;
use support::cluster::{TestEnv, WRAPPER_IMAGE, condition_message, condition_of, eventually, message, phase, sc_manifest, settings};

fn fixture_paths(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join(dir);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
        .map(|entry| entry.expect("readable entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    paths.sort();
    paths
}

fn read_manifest(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).expect("readable fixture");
    serde_yaml::from_str(&text).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// Fields of `sent` that `stored` lacks or holds differently (the API server may add defaults,
/// never drop or change what was sent).
fn lost_fields(sent: &Value, stored: &Value, path: &str, lost: &mut Vec<String>) {
    match (sent, stored) {
        (Value::Object(sent), Value::Object(stored)) => {
            for (key, value) in sent {
                match stored.get(key) {
                    Some(stored_value) => lost_fields(value, stored_value, &format!("{path}.{key}"), lost),
                    None => lost.push(format!("{path}.{key}")),
                }
            }
        }
        (Value::Array(sent), Value::Array(stored)) if sent.len() == stored.len() => {
            for (index, (value, stored_value)) in sent.iter().zip(stored).enumerate() {
                lost_fields(value, stored_value, &format!("{path}[{index}]"), lost);
            }
        }
        // Admission may add items (DefaultTolerationSeconds adds tolerations): each sent item
        // must still be there.
        (Value::Array(sent), Value::Array(stored)) => {
            for (index, value) in sent.iter().enumerate() {
                let kept = stored.iter().any(|stored_value| {
                    let mut item_lost = Vec::new();
                    lost_fields(value, stored_value, "", &mut item_lost);
                    item_lost.is_empty()
                });
                if !kept {
                    lost.push(format!("{path}[{index}]: sent {value}, stored {}", Value::Array(stored.clone())));
                }
            }
        }
        (sent, stored) if sent == stored => {}
        (sent, stored) => lost.push(format!("{path}: sent {sent}, stored {stored}")),
    }
}

fn owned_by(pod: &Pod, instance: &StoppableContainerInstance) -> bool {
    instance.uid().is_some_and(|uid| is_controlled_by(pod, &uid))
}

fn node_of(pod: &Pod) -> Option<String> {
    pod.spec.as_ref().and_then(|spec| spec.node_name.clone())
}

fn image_of(pod: &Pod, container: usize) -> String {
    pod.spec.as_ref().and_then(|spec| spec.containers.get(container)).and_then(|c| c.image.clone()).unwrap_or_default()
}

/// Plays the cluster through a first or later start until the SC is Running on `node`.
/// Returns the consumer and provider pods.
async fn start_until_running(env: &TestEnv, name: &str, node: &str) -> (Pod, Pod) {
    let consumer = env.wait_pod(name, "created by the operator", |pod| pod.metadata.deletion_timestamp.is_none()).await;
    let instance = env.instances.get(name).await.expect("the instance exists once a consumer pod does");
    assert!(owned_by(&consumer, &instance), "the consumer pod is controlled by the instance");
    wait_recorded(env, name, Role::Consumer, &consumer).await;
    env.bind(name, node).await;
    let provider_name = provider_pod_name(name);
    let provider = env
        .wait_pod(&provider_name, "pinned to the workload's node", |pod| {
            pod.metadata.deletion_timestamp.is_none() && node_of(pod).or_else(|| pinned_node(pod)).as_deref() == Some(node)
        })
        .await;
    wait_recorded(env, name, Role::Provider, &provider).await;
    let provider = schedule_provider(env, name, node).await;
    env.set_pod_ready(&provider_name).await;
    env.set_pod_ready(name).await;
    env.wait_sc(name, "phase Running", |sc| phase(sc) == "Running").await;
    (consumer, provider)
}

/// The scheduler: binds `name`'s provider to `node`, the only node its required affinity allows
/// (a provider kept bound by a stop stays where it is). Returns it as bound.
async fn schedule_provider(env: &TestEnv, name: &str, node: &str) -> Pod {
    let provider_name = provider_pod_name(name);
    let provider = env.pod(&provider_name).await.unwrap_or_else(|| panic!("pod {provider_name} exists"));
    assert_eq!(pinned_node(&provider).as_deref(), Some(node), "the provider may only be placed on the workload's node");
    if node_of(&provider).is_none() {
        env.bind(&provider_name, node).await;
    }
    env.pod(&provider_name).await.unwrap_or_else(|| panic!("pod {provider_name} exists"))
}

/// The UID the instance status records for `role`'s pod (what the node plugin trusts).
async fn recorded_uid(env: &TestEnv, name: &str, role: Role) -> Option<String> {
    let instance = env.instances.get_opt(name).await.expect("read the instance")?;
    role.recorded_uid(instance.status.as_ref()).map(str::to_owned)
}

/// Waits until the instance status records `pod` (the operator records a pod it created at once).
async fn wait_recorded(env: &TestEnv, name: &str, role: Role, pod: &Pod) {
    eventually(&format!("the instance status to record {} {:?}", role.describe(), pod.uid()), || async {
        let recorded = recorded_uid(env, name, role).await;
        if recorded == pod.uid() { Ok(()) } else { Err(recorded) }
    })
    .await;
}

/// `pod` as a tenant would copy it into a pod of its own: everything but what the API server
/// assigns (UID, resourceVersion, creation time, managed fields) and the status.
fn forged_copy(pod: &Pod) -> Pod {
    let mut forged = pod.clone();
    forged.metadata = kube::api::ObjectMeta {
        name: forged.metadata.name.clone(),
        labels: forged.metadata.labels.clone(),
        annotations: forged.metadata.annotations.clone(),
        owner_references: forged.metadata.owner_references.clone(),
        ..kube::api::ObjectMeta::default()
    };
    forged.status = None;
    forged
}

/// Deletes pod `name` at once, as a tenant (or a completed eviction) would, and waits until it is
/// gone (the operator may already have created another pod of that name). Returns the deleted pod.
async fn delete_now(env: &TestEnv, name: &str) -> Pod {
    let pod = env.pod(name).await.unwrap_or_else(|| panic!("pod {name} exists"));
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: pod.uid().map(|uid| kube::api::Preconditions { uid: Some(uid), resource_version: None }),
        ..DeleteParams::default()
    };
    env.pods.delete(name, &params).await.unwrap_or_else(|error| panic!("deleting pod {name}: {error}"));
    eventually(&format!("pod {name} ({:?}) to be gone", pod.uid()), || async {
        match env.pods.get_opt(name).await.map_err(|error| error.to_string())? {
            Some(found) if found.uid() == pod.uid() => Err(format!("still there: {:?}", found.metadata.deletion_timestamp)),
            _ => Ok(()),
        }
    })
    .await;
    pod
}

/// Waits until `name`'s provider is a pod other than `lost`, pinned to `node`, and recorded.
async fn wait_replacement_provider(env: &TestEnv, name: &str, lost: &Pod, node: &str) -> Pod {
    let replacement = env
        .wait_pod(&provider_pod_name(name), "replaced", |pod| pod.uid() != lost.uid() && pod.metadata.deletion_timestamp.is_none())
        .await;
    assert_eq!(pinned_node(&replacement).as_deref(), Some(node), "the replacement is for the workload's node");
    wait_recorded(env, name, Role::Provider, &replacement).await;
    replacement
}

fn provider_lost(sc: &StoppableContainer) -> Option<(String, String)> {
    condition_of(sc, "ProviderLost")
}

/// Plays the kubelet while the operator removes the pods for good (the SC or its instance is
/// being deleted): it must delete the consumer first and the provider only once the consumer is
/// gone.
async fn terminate_in_order(env: &TestEnv, name: &str) {
    let provider_name = provider_pod_name(name);
    env.wait_pod_terminating(name).await;
    let provider = env.pod(&provider_name).await.expect("the provider still exists while the consumer pod terminates");
    assert!(provider.metadata.deletion_timestamp.is_none(), "the provider is deleted only after the consumer pod is gone");
    env.finish_termination(name).await;
    env.finish_termination(&provider_name).await;
}

/// A stop, played through until the SC reports Stopped: the consumer pod goes, the provider is
/// kept (not even being deleted). Returns the kept provider.
async fn stop_until_stopped(env: &TestEnv, name: &str) -> Pod {
    let provider_name = provider_pod_name(name);
    env.wait_pod_terminating(name).await;
    // While the consumer pod terminates the workload may still write: Stopping, not Stopped.
    env.wait_sc(name, "phase Stopping while the consumer pod terminates", |sc| {
        phase(sc) == "Stopping" && message(sc).starts_with("stopping: waiting for pods")
    })
    .await;
    env.finish_termination(name).await;
    let sc = env
        .wait_sc(name, "phase Stopped with the consumer pod gone", |sc| {
            phase(sc) == "Stopped" && message(sc) == "stopped; the root filesystem is kept"
        })
        .await;
    assert_eq!(sc.status.as_ref().and_then(|s| s.consumer_pod_name.clone()), None);
    assert_eq!(
        sc.status.as_ref().and_then(|s| s.provider_pod_name.as_deref()),
        Some(provider_name.as_str()),
        "the kept provider is reported"
    );
    eventually("the instance to be Stopped (not Stopping) with the provider kept", || async {
        let instance = env.instances.get(name).await.map_err(|error| error.to_string())?;
        match instance.status.as_ref().and_then(|status| status.phase) {
            Some(sc_api::InstancePhase::Stopped) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    // Give the operator time to do something wrong.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let provider = env.pod(&provider_name).await.expect("a stop keeps the provider");
    assert!(provider.metadata.deletion_timestamp.is_none(), "a stop does not delete the provider");
    provider
}

#[tokio::test]
async fn chart_crds_are_established_and_every_fixture_applies_unchanged() {
    let Some(env) = TestEnv::new("fixtures").await else { return };
    let crds: Api<CustomResourceDefinition> = Api::all(env.client.clone());
    for name in ["stoppablecontainers.stoppablecontainer.xtlsoft.top", "stoppablecontainerinstances.stoppablecontainer.xtlsoft.top"] {
        let crd = crds.get(name).await.unwrap_or_else(|error| panic!("CRD {name} is installed: {error}"));
        let conditions = crd.status.and_then(|status| status.conditions).unwrap_or_default();
        assert!(!conditions.iter().any(|c| c.type_ == "NonStructuralSchema"), "{name} is structural on 1.20: {conditions:?}");
        assert!(conditions.iter().any(|c| c.type_ == "Established" && c.status == "True"), "{name} is established: {conditions:?}");
    }

    let resource = ApiResource::erase::<StoppableContainer>(&());
    let untyped: Api<DynamicObject> = Api::namespaced_with(env.client.clone(), &env.namespace, &resource);
    let paths = fixture_paths("fixtures");
    assert!(paths.len() >= 10, "every example manifest of the earlier release is a fixture");
    for path in paths {
        let manifest = read_manifest(&path);
        let object: DynamicObject = serde_json::from_value(manifest.clone()).expect("a manifest");
        let name = object.name_any();
        // Server-side apply compares against the schema and fails on fields it does not declare
        // (a POST would silently prune them); dry-run first, then really create it.
        untyped
            .patch(&name, &PatchParams::apply("fixture-test").dry_run(), &Patch::Apply(&manifest))
            .await
            .unwrap_or_else(|error| panic!("{}: server-side apply on 1.20 failed: {error}", path.display()));
        let created = untyped
            .create(&PostParams::default(), &object)
            .await
            .unwrap_or_else(|error| panic!("{}: rejected by the 1.20 API server: {error}", path.display()));
        let mut lost = Vec::new();
        lost_fields(&manifest["spec"], &created.data["spec"], "spec", &mut lost);
        assert!(lost.is_empty(), "{}: the API server dropped or changed fields (pruned by the CRD schema?): {lost:#?}", path.display());
        // And the typed view the operator works with reads it back.
        let typed =
            env.scs.get(&name).await.unwrap_or_else(|error| panic!("{}: the operator's type cannot read it back: {error}", path.display()));
        assert!(validate(&typed).is_ok(), "{}: valid", path.display());
    }
}

#[tokio::test]
async fn operator_pod_bodies_are_accepted_by_kubernetes_1_20() {
    let Some(env) = TestEnv::new("pod-bodies").await else { return };
    let node = "worker-1";
    // The check has teeth: a field 1.20 does not know (schedulingGates, 1.26) fails the apply.
    let from_the_future = json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "future" },
        "spec": { "schedulingGates": [{ "name": "example.com/gate" }], "containers": [{ "name": "c", "image": "busybox" }] }
    });
    let refused = env.pods.patch("future", &PatchParams::apply("pod-body-test").dry_run(), &Patch::Apply(&from_the_future)).await;
    assert!(refused.is_err(), "server-side apply on 1.20 refuses fields it does not know");
    // The Priority admission plugin resolves priorityClassName: the classes the fixtures name
    // must exist (as they would in the clusters those manifests were written for).
    let classes: Api<PriorityClass> = Api::all(env.client.clone());
    for name in ["high-priority", "dev"] {
        let class: PriorityClass = serde_json::from_value(json!({ "metadata": { "name": name }, "value": 1000 })).expect("a PriorityClass");
        classes.create(&PostParams::default(), &class).await.unwrap_or_else(|error| panic!("creating PriorityClass {name}: {error}"));
    }
    for path in fixture_paths("fixtures") {
        let mut manifest = read_manifest(&path);
        manifest["spec"]["running"] = json!(false);
        let sc = env.create_sc(manifest).await;
        let valid = validate(&sc).unwrap_or_else(|problems| panic!("{}: {problems:?}", path.display()));
        let mut instance = build_instance(&sc, None, true);
        instance.metadata.uid = Some("00000000-0000-4000-8000-00000000000a".into());
        let pods = [
            ("first-start consumer", build_consumer_pod(&valid.workload, &instance, None, &settings())),
            ("pinned consumer", build_consumer_pod(&valid.workload, &instance, Some(node), &settings())),
            ("provider", build_provider_pod(&valid.workload, &instance, node, &settings())),
        ];
        for (role, pod) in pods {
            let name = pod.name_any();
            let sent = serde_json::to_value(&pod).expect("pod serializes");
            // Server-side apply fails on any field unknown to 1.20 (a POST would drop it silently).
            env.pods
                .patch(&name, &PatchParams::apply("pod-body-test").dry_run(), &Patch::Apply(&sent))
                .await
                .unwrap_or_else(|error| panic!("{} {role}: server-side apply on 1.20 failed: {error}", path.display()));
            // What the operator really sends: a POST. Nothing it sends may be dropped.
            let created = env
                .pods
                .create(&PostParams { dry_run: true, field_manager: Some(OPERATOR_FIELD_MANAGER.into()) }, &pod)
                .await
                .unwrap_or_else(|error| panic!("{} {role}: creating the pod on 1.20 failed: {error}", path.display()));
            let stored = serde_json::to_value(&created).expect("pod serializes");
            let mut lost = Vec::new();
            lost_fields(&sent["spec"], &stored["spec"], "spec", &mut lost);
            assert!(lost.is_empty(), "{} {role}: the 1.20 API server dropped or changed fields: {lost:#?}", path.display());
        }
    }
}

#[tokio::test]
async fn create_stopped_provisions_nothing() {
    let Some(env) = TestEnv::with_operator("create-stopped").await else { return };
    env.create_sc(sc_manifest("idle", false, "busybox:1.36")).await;
    let sc = env.wait_sc("idle", "phase Stopped, not started yet", |sc| phase(sc) == "Stopped" && message(sc) == "not started yet").await;
    let status = sc.status.clone().expect("status");
    assert_eq!(status.observed_generation, sc.metadata.generation);
    assert_eq!(status.data_node_name, None);
    assert_eq!(condition_of(&sc, "DataNode"), Some(("False".into(), "NotAssigned".into())));
    assert_eq!(condition_of(&sc, "Ready"), Some(("False".into(), "Stopped".into())));
    assert_eq!(condition_of(&sc, "SpecValid"), Some(("True".into(), "Valid".into())));
    assert_eq!(sc.finalizers(), [SC_FINALIZER], "only the operator's finalizer before the first start");
    // Give the operator time to do something wrong.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(env.instances.get_opt("idle").await.expect("read").is_none(), "no instance before the first start");
    assert!(env.pods.list(&Default::default()).await.expect("list").items.is_empty(), "no pods before the first start");
    // The status is the operator's, written by server-side apply.
    let managed = sc.metadata.managed_fields.clone().unwrap_or_default();
    assert!(
        managed.iter().any(|entry| entry.manager.as_deref() == Some(OPERATOR_FIELD_MANAGER)
            && entry.operation.as_deref() == Some("Apply")
            && entry.fields_v1.as_ref().is_some_and(|fields| fields.0.get("f:status").is_some())),
        "status is applied by {OPERATOR_FIELD_MANAGER}: {managed:#?}"
    );
    env.wait_event("idle", "Stopped").await;
}

#[tokio::test]
async fn start_reports_every_step_until_running() {
    let Some(env) = TestEnv::with_operator("start").await else { return };
    let node = env.create_node("n1").await;
    env.create_sc(sc_manifest("web", true, "busybox:1.36")).await;

    // The consumer first, placed by the scheduler: not bound, not pinned.
    let consumer = env.wait_pod("web", "created", |_| true).await;
    let sc = env
        .wait_sc("web", "both finalizers", |sc| {
            sc.finalizers().iter().any(|f| f == SC_FINALIZER) && sc.finalizers().iter().any(|f| f == NODE_DATA_FINALIZER)
        })
        .await;
    let instance = env.instances.get("web").await.expect("the instance exists once started");
    assert_eq!(instance.finalizers(), [SCI_FINALIZER]);
    assert!(is_controlled_by(&instance, &sc.uid().expect("uid")), "the instance is controlled by the SC");
    assert_eq!(instance.spec.base_image.as_deref(), Some("busybox:1.36"));
    assert!(owned_by(&consumer, &instance), "the consumer pod is controlled by the instance");
    let labels = consumer.labels();
    assert_eq!(labels.get(LABEL_MANAGED_BY).map(String::as_str), Some(MANAGED_BY_VALUE));
    assert_eq!(labels.get(LABEL_INSTANCE).map(String::as_str), Some("web"));
    assert_eq!(labels.get(LABEL_ROLE).map(String::as_str), Some(ROLE_CONSUMER));
    assert_eq!(labels.get("app").map(String::as_str), Some("web"), "the template's labels pass through");
    assert_eq!(node_of(&consumer), None, "the first start is placed by the scheduler");
    assert_eq!(pinned_node(&consumer), None, "nothing to pin to before the data exists");
    assert_eq!(image_of(&consumer, 0), WRAPPER_IMAGE);
    let command = consumer.spec.as_ref().and_then(|spec| spec.containers[0].command.clone()).unwrap_or_default();
    assert_eq!(command, ["/.sc-bin/sc-exec", "run", "--", "sleep", "infinity"]);
    assert_eq!(consumer.spec.as_ref().and_then(|spec| spec.termination_grace_period_seconds), Some(7));
    assert!(env.pod("web-provider").await.is_none(), "no provider before the consumer pod has a node");
    let sc =
        env.wait_sc("web", "Pending, waiting for the scheduler", |sc| phase(sc) == "Pending" && message(sc).contains("scheduler")).await;
    assert_eq!(sc.status.as_ref().and_then(|s| s.instance_name.as_deref()), Some("web"));
    assert_eq!(sc.status.as_ref().and_then(|s| s.consumer_pod_name.as_deref()), Some("web"));
    env.wait_event("web", "Starting").await;
    env.wait_event("web", "PodCreated").await;

    // The scheduler cannot place it yet: its reason shows.
    env.set_unschedulable("web", "0/1 nodes are available: 1 Insufficient cpu.").await;
    let sc = env.wait_sc("web", "Unschedulable in the message", |sc| message(sc).contains("Insufficient cpu")).await;
    assert_eq!(phase(&sc), "Pending");
    assert_eq!(condition_of(&sc, "ConsumerReady"), Some(("False".into(), "Unschedulable".into())));

    // Bound: the data node is recorded, the provider is created for that node and placed by the
    // scheduler (which accounts for it and can preempt for it), with the workload's priority.
    env.bind("web", &node).await;
    let provider = env.wait_pod("web-provider", "created", |_| true).await;
    assert_eq!(node_of(&provider), None, "the provider goes through the scheduler");
    assert_eq!(pinned_node(&provider).as_deref(), Some(node.as_str()), "... which may place it on the workload's node only");
    assert_eq!(provider.spec.as_ref().and_then(|spec| spec.priority_class_name.clone()), None, "the workload has no priority class");
    assert!(owned_by(&provider, &instance));
    assert_eq!(provider.labels().get(LABEL_ROLE).map(String::as_str), Some(ROLE_PROVIDER));
    assert_eq!(image_of(&provider, 0), "busybox:1.36", "the provider runs the workload image");
    // The node is recorded on its own first (before the provider exists), the condition follows.
    env.wait_sc("web", "data node recorded", |sc| {
        sc.status.as_ref().and_then(|s| s.data_node_name.as_deref()) == Some(node.as_str())
            && condition_of(sc, "DataNode") == Some(("True".into(), "Assigned".into()))
    })
    .await;
    env.wait_event("web", "DataNodeAssigned").await;
    env.wait_sc("web", "Pending while the provider is scheduled", |sc| {
        phase(sc) == "Pending" && message(sc).contains("provider pod is starting")
    })
    .await;
    env.set_unschedulable("web-provider", "0/1 nodes are available: 1 Insufficient memory.").await;
    let sc = env.wait_sc("web", "the provider's scheduling problem", |sc| message(sc).contains("Insufficient memory")).await;
    assert_eq!(message(&sc), "the provider pod cannot run: 0/1 nodes are available: 1 Insufficient memory.");
    assert_eq!(condition_of(&sc, "ProviderReady"), Some(("False".into(), "Unschedulable".into())));
    env.bind("web-provider", &node).await;

    // Containers being created while the provider starts.
    env.set_container_waiting("web", "ContainerCreating", "").await;
    env.set_container_waiting("web-provider", "ContainerCreating", "").await;
    env.wait_sc("web", "Pending while the provider starts", |sc| {
        phase(sc) == "Pending" && message(sc).contains("provider pod is starting")
    })
    .await;
    env.set_pod_ready("web-provider").await;
    let sc = env.wait_sc("web", "ProviderReady", |sc| phase(sc) == "ProviderReady").await;
    assert_eq!(condition_of(&sc, "ProviderReady"), Some(("True".into(), "PodReady".into())));
    assert_eq!(condition_of(&sc, "RootfsVolume"), Some(("False".into(), "Mounting".into())));

    // Stuck containers surface with their reason, and recover.
    env.set_container_waiting("web", "ImagePullBackOff", "Back-off pulling image \"busybox:1.36\"").await;
    let sc =
        env.wait_sc("web", "Failed with ImagePullBackOff", |sc| phase(sc) == "Failed" && message(sc).contains("ImagePullBackOff")).await;
    assert_eq!(condition_of(&sc, "ConsumerReady"), Some(("False".into(), "ImagePullBackOff".into())));
    assert_eq!(condition_message(&sc, "ConsumerReady"), "container \"main\": Back-off pulling image \"busybox:1.36\"");
    let event = env.wait_event("web", "ImagePullBackOff").await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    env.set_container_waiting("web", "CrashLoopBackOff", "back-off 10s restarting failed container").await;
    env.wait_sc("web", "Failed with CrashLoopBackOff", |sc| phase(sc) == "Failed" && message(sc).contains("CrashLoopBackOff")).await;

    env.set_pod_ready("web").await;
    let sc = env.wait_sc("web", "Running", |sc| phase(sc) == "Running").await;
    let status = sc.status.clone().expect("status");
    assert_eq!(status.node_name.as_deref(), Some(node.as_str()));
    assert_eq!(status.observed_generation, sc.metadata.generation);
    assert_eq!(status.provider_pod_name.as_deref(), Some("web-provider"));
    for (type_, expected) in [
        ("Ready", ("True", "Running")),
        ("SpecValid", ("True", "Valid")),
        ("ConsumerReady", ("True", "PodReady")),
        ("ProviderReady", ("True", "PodReady")),
        ("RootfsVolume", ("True", "Mounted")),
        ("DataNode", ("True", "Assigned")),
        ("RestartRequired", ("False", "UpToDate")),
        ("NameConflict", ("False", "NoConflict")),
    ] {
        assert_eq!(condition_of(&sc, type_), Some((expected.0.to_owned(), expected.1.to_owned())), "condition {type_}");
    }
    assert!(status.conditions.iter().all(|c| c.observed_generation == sc.metadata.generation));
    env.wait_event("web", "Running").await;
    let instance = eventually("the instance status to follow", || async {
        let instance = env.instances.get("web").await.map_err(|error| error.to_string())?;
        match instance.status.as_ref().and_then(|status| status.phase) {
            Some(sc_api::InstancePhase::Running) => Ok(instance),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let instance_status = instance.status.expect("status");
    assert_eq!(instance_status.consumer_pod_uid, consumer.uid());
    assert_eq!(instance_status.provider_pod_uid, provider.uid());
    let metrics = env.health.metrics.render();
    assert!(env.health.ready.load(std::sync::atomic::Ordering::Relaxed), "ready once the caches synced");
    assert!(metrics.contains("sc_operator_start_seconds_count 1"), "{metrics}");
    assert!(metrics.contains("sc_operator_stoppablecontainers{phase=\"Running\"} 1"), "{metrics}");
}

#[tokio::test]
async fn stop_then_start_is_pinned_and_applies_the_template_change() {
    let Some(env) = TestEnv::with_operator("stop-start").await else { return };
    let node = env.create_node("n1").await;
    env.create_node("n2").await;
    env.create_sc(sc_manifest("dev", true, "busybox:1.36")).await;
    let (consumer, _) = start_until_running(&env, "dev", &node).await;

    // A template change while running: reported, not applied.
    let changed = env
        .patch_spec("dev", json!({ "template": { "spec": { "containers": [{ "name": "main", "image": "busybox:1.37", "command": ["sleep", "infinity"] }] } } }))
        .await;
    let sc =
        env.wait_sc("dev", "RestartRequired", |sc| condition_of(sc, "RestartRequired").is_some_and(|(status, _)| status == "True")).await;
    assert_eq!(condition_of(&sc, "RestartRequired"), Some(("True".into(), "TemplateChanged".into())));
    assert_eq!(sc.status.as_ref().and_then(|s| s.observed_generation), changed.metadata.generation);
    assert_eq!(phase(&sc), "Running", "a template change does not stop the workload");
    env.wait_event("dev", "TemplateChanged").await;
    assert_eq!(env.pod("dev").await.and_then(|pod| pod.uid()), consumer.uid(), "the running pod is not touched");
    let instance = env.instances.get("dev").await.expect("instance");
    assert_eq!(instance.spec.base_image.as_deref(), Some("busybox:1.36"), "the instance keeps describing what runs");

    // Stop: the consumer goes, the provider is kept; the data stays.
    env.patch_spec("dev", json!({ "running": false })).await;
    env.wait_event("dev", "Stopping").await;
    let kept = stop_until_stopped(&env, "dev").await;
    assert_eq!(image_of(&kept, 0), "busybox:1.36", "the kept provider runs the image of the run that stopped");
    let sc = env.scs.get("dev").await.expect("sc");
    let status = sc.status.clone().expect("status");
    assert_eq!(status.data_node_name.as_deref(), Some(node.as_str()), "the data node is kept");
    assert_eq!(status.consumer_pod_name, None);
    assert_eq!(condition_of(&sc, "RestartRequired"), Some(("False".into(), "UpToDate".into())), "nothing runs: nothing to restart");
    assert!(sc.finalizers().iter().any(|f| f == NODE_DATA_FINALIZER), "the data is still on the node");
    let instance = env.instances.get("dev").await.expect("the instance outlives a stop");
    assert!(!instance.spec.running);
    let metrics = env.health.metrics.render();
    assert!(metrics.contains("sc_operator_stop_seconds_count 1"), "{metrics}");

    // Start again: the kept provider runs the old image, so it is replaced, and the consumer pod
    // waits until it is gone (both pods always come from the same snapshot).
    env.patch_spec("dev", json!({ "running": true })).await;
    env.wait_pod_terminating("dev-provider").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(env.pod("dev").await.is_none(), "no consumer pod while the stale provider terminates");
    env.finish_termination("dev-provider").await;
    // Pinned to the data node, with the new template.
    let consumer = env.wait_pod("dev", "recreated", |_| true).await;
    assert_eq!(pinned_node(&consumer).as_deref(), Some(node.as_str()), "later starts are pinned to the data node");
    let instance = env.instances.get("dev").await.expect("instance");
    assert_eq!(instance.spec.base_image.as_deref(), Some("busybox:1.37"), "the new image is applied at the next start");
    assert!(instance.spec.running);
    // The data node is known: the new provider does not wait for the consumer pod to be scheduled.
    let provider = env
        .wait_pod("dev-provider", "created for the data node before the consumer pod is scheduled", |pod| {
            pinned_node(pod).as_deref() == Some(node.as_str())
        })
        .await;
    assert_ne!(provider.uid(), kept.uid(), "a new provider");
    assert_eq!(node_of(&consumer), None, "the consumer pod is not bound yet");
    assert_eq!(image_of(&provider, 0), "busybox:1.37", "the provider (lower layer) runs the new image");
    // The data node is full: the scheduler's reason and the pinning are both in the message.
    env.set_unschedulable("dev", "0/2 nodes are available: 1 Insufficient memory, 1 node(s) didn't match node selector.").await;
    let sc = env.wait_sc("dev", "Unschedulable, pinned", |sc| message(sc).contains("Insufficient memory")).await;
    assert!(message(&sc).contains(&format!("pinned to node {node:?}")), "{}", message(&sc));
    env.bind("dev", &node).await;
    schedule_provider(&env, "dev", &node).await;
    env.set_pod_ready("dev-provider").await;
    env.set_pod_ready("dev").await;
    let sc = env.wait_sc("dev", "Running again", |sc| phase(sc) == "Running").await;
    assert_eq!(condition_of(&sc, "RestartRequired"), Some(("False".into(), "UpToDate".into())));
}

#[tokio::test]
async fn a_start_after_a_stop_reuses_the_kept_provider() {
    let Some(env) = TestEnv::with_operator("reuse").await else { return };
    let node = env.create_node("n1").await;
    env.create_sc(sc_manifest("quick", true, "busybox:1.36")).await;
    let (first_consumer, provider) = start_until_running(&env, "quick", &node).await;
    env.patch_spec("quick", json!({ "running": false })).await;
    let kept = stop_until_stopped(&env, "quick").await;
    assert_eq!(kept.uid(), provider.uid(), "the provider of the run that stopped");
    let sc = env.scs.get("quick").await.expect("sc");
    assert_eq!(condition_of(&sc, "ProviderReady"), Some(("True".into(), "PodReady".into())), "the kept provider stays ready");
    assert_eq!(condition_of(&sc, "Ready"), Some(("False".into(), "Stopped".into())));

    // Start: the consumer pod at once, next to the same provider.
    env.patch_spec("quick", json!({ "running": true })).await;
    let consumer = env.wait_pod("quick", "created without waiting for a new provider", |pod| pod.uid() != first_consumer.uid()).await;
    assert_eq!(pinned_node(&consumer).as_deref(), Some(node.as_str()));
    let provider = env.pod("quick-provider").await.expect("the kept provider");
    assert_eq!(provider.uid(), kept.uid(), "the same provider pod serves the new start");
    assert!(provider.metadata.deletion_timestamp.is_none());
    env.bind("quick", &node).await;
    env.set_pod_ready("quick").await;
    env.wait_sc("quick", "Running again", |sc| phase(sc) == "Running").await;
    assert_eq!(env.pod("quick-provider").await.and_then(|pod| pod.uid()), kept.uid(), "still the same provider");

    // A provider without the hash annotation (made by an older operator) is not trusted: the next
    // start replaces it before creating the consumer pod.
    env.patch_spec("quick", json!({ "running": false })).await;
    stop_until_stopped(&env, "quick").await;
    let unmarked = json!({ "metadata": { "annotations": { PROVIDER_HASH_ANNOTATION: null } } });
    env.pods.patch("quick-provider", &PatchParams::default(), &Patch::Merge(unmarked)).await.expect("remove the annotation");
    env.patch_spec("quick", json!({ "running": true })).await;
    env.wait_pod_terminating("quick-provider").await;
    assert!(env.pod("quick").await.is_none(), "no consumer pod while the old provider terminates");
    env.finish_termination("quick-provider").await;
    let (_, replaced) = start_until_running(&env, "quick", &node).await;
    assert_ne!(replaced.uid(), kept.uid());
    assert!(replaced.annotations().contains_key(PROVIDER_HASH_ANNOTATION), "the new provider records its hash");
}

/// The root filesystem's size the instance records for the node plugin.
async fn instance_rootfs_bytes(env: &TestEnv, name: &str) -> Option<u64> {
    env.instances.get(name).await.expect("the instance").spec.rootfs_size_bytes
}

fn spec_invalid(sc: &StoppableContainer) -> bool {
    condition_of(sc, "SpecValid").is_some_and(|(status, _)| status == "False")
}

#[tokio::test]
async fn the_rootfs_size_is_resolved_at_each_start_grows_and_never_shrinks() {
    const GI: u64 = 1 << 30;
    let Some(env) = TestEnv::with_operator("rootfs-size").await else { return };
    let node = env.create_node("n1").await;
    env.create_sc(sc_manifest("sized", true, "busybox:1.36")).await;
    let (consumer, _) = start_until_running(&env, "sized", &node).await;
    assert_eq!(instance_rootfs_bytes(&env, "sized").await, Some(10 * GI), "no spec.rootfsSize: the cluster's default");

    // A grow asked for while running: reported, applied at the next start.
    env.patch_spec("sized", json!({ "rootfsSize": "20Gi" })).await;
    let sc =
        env.wait_sc("sized", "RestartRequired", |sc| condition_of(sc, "RestartRequired").is_some_and(|(status, _)| status == "True")).await;
    assert!(condition_message(&sc, "RestartRequired").contains("spec.rootfsSize"), "{}", condition_message(&sc, "RestartRequired"));
    assert_eq!(instance_rootfs_bytes(&env, "sized").await, Some(10 * GI), "the running workload keeps the size it started with");

    // A shrink or more than the maximum is refused; the running workload is not touched.
    for (size, expected) in [
        (
            "5Gi",
            "invalid spec: spec.rootfsSize: 5Gi is less than the 10Gi its root filesystem already has: a root filesystem can grow but \
             never shrink; set at least 10Gi",
        ),
        (
            "200Gi",
            "invalid spec: spec.rootfsSize: 200Gi is more than this cluster's maximum of 100Gi (an administrator's setting); ask for at \
             most 100Gi",
        ),
    ] {
        env.patch_spec("sized", json!({ "rootfsSize": size })).await;
        let sc = env
            .wait_sc("sized", &format!("SpecValid=False for {size}"), |sc| {
                spec_invalid(sc) && condition_message(sc, "SpecValid") == expected
            })
            .await;
        assert_eq!(phase(&sc), "Running", "{size}: the workload keeps running");
        assert_eq!(env.pod("sized").await.and_then(|pod| pod.uid()), consumer.uid(), "{size}");
    }
    env.wait_event("sized", "InvalidSpec").await;

    // Stopped with a grow asked for: the next start records it for the node plugin.
    env.patch_spec("sized", json!({ "rootfsSize": "20Gi", "running": false })).await;
    stop_until_stopped(&env, "sized").await;
    assert_eq!(instance_rootfs_bytes(&env, "sized").await, Some(10 * GI), "a stop keeps the deployed size");
    env.patch_spec("sized", json!({ "running": true })).await;
    start_until_running(&env, "sized", &node).await;
    assert_eq!(instance_rootfs_bytes(&env, "sized").await, Some(20 * GI), "the start applied the grow");
    let sc = env.scs.get("sized").await.expect("sc");
    assert_eq!(condition_of(&sc, "SpecValid"), Some(("True".into(), "Valid".into())));
    assert_eq!(condition_of(&sc, "RestartRequired"), Some(("False".into(), "UpToDate".into())));

    // Back to the default (10Gi), which is less than the filesystem has: it keeps 20Gi, valid.
    env.patch_spec("sized", json!({ "rootfsSize": null, "running": false })).await;
    stop_until_stopped(&env, "sized").await;
    env.patch_spec("sized", json!({ "running": true })).await;
    start_until_running(&env, "sized", &node).await;
    assert_eq!(instance_rootfs_bytes(&env, "sized").await, Some(20 * GI), "an unset size never shrinks the filesystem");
}

#[tokio::test]
async fn deleting_the_instance_of_a_stopped_sc_removes_the_kept_provider() {
    let Some(env) = TestEnv::with_operator("stopped-instance-deleted").await else { return };
    let node = env.create_node("n1").await;
    env.create_sc(sc_manifest("idle", true, "busybox:1.36")).await;
    start_until_running(&env, "idle", &node).await;
    env.patch_spec("idle", json!({ "running": false })).await;
    stop_until_stopped(&env, "idle").await;
    let instance = env.instances.get("idle").await.expect("instance");

    env.instances.delete("idle", &DeleteParams::default()).await.expect("delete the instance");
    env.finish_termination("idle-provider").await;
    eventually("the instance to be released and gone", || async {
        match env.instances.get_opt("idle").await.map_err(|error| error.to_string())? {
            Some(found) if found.uid() == instance.uid() => Err(format!("finalizers={:?}", found.finalizers())),
            Some(_) => Err("recreated while stopped".to_owned()),
            None => Ok(()),
        }
    })
    .await;
    env.wait_sc("idle", "Stopped", |sc| phase(sc) == "Stopped" && message(sc) == "stopped; the root filesystem is kept").await;
}

#[tokio::test]
async fn delete_removes_pods_then_instance_then_waits_for_the_node_plugin() {
    let Some(env) = TestEnv::with_operator("delete").await else { return };
    let node = env.create_node("n1").await;
    env.create_sc(sc_manifest("doomed", true, "busybox:1.36")).await;
    start_until_running(&env, "doomed", &node).await;

    env.scs.delete("doomed", &DeleteParams::default()).await.expect("delete");
    terminate_in_order(&env, "doomed").await;
    // No garbage collector runs here: the operator deletes the instance itself.
    eventually("the instance to be gone", || async {
        match env.instances.get_opt("doomed").await.map_err(|error| error.to_string())? {
            None => Ok(()),
            Some(instance) => Err(format!("finalizers={:?}", instance.finalizers())),
        }
    })
    .await;
    // The SC waits for the node plugin.
    let sc = env
        .wait_sc("doomed", "only the finalizers of the operator and the node plugin left", |sc| {
            sc.finalizers().iter().any(|f| f == NODE_DATA_FINALIZER)
        })
        .await;
    assert!(sc.metadata.deletion_timestamp.is_some());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sc = env.scs.get("doomed").await.expect("held by the node-data finalizer");
    assert!(sc.finalizers().iter().any(|f| f == NODE_DATA_FINALIZER), "the operator does not release the data of an existing node");
    env.release_node_data("doomed").await;
    env.wait_sc_gone("doomed").await;
    let reasons: Vec<String> = env.events_for("doomed").await.into_iter().filter_map(|event| event.reason).collect();
    assert!(!reasons.iter().any(|reason| reason == "DataNodeGone"), "{reasons:?}");
    let released = env.wait_event("doomed", "DataDeleted").await;
    assert_eq!(released.type_.as_deref(), Some("Normal"));
    let note = released.note.unwrap_or_default();
    assert!(note.contains(&format!("the node plugin on {node:?} deleted the root filesystem (4096 bytes)")), "{note}");
}

#[tokio::test]
async fn only_the_data_nodes_report_for_this_uid_releases_the_data_finalizer() {
    let Some(env) = TestEnv::with_operator("reports").await else { return };
    let node = env.create_node("n1").await;
    let other = env.create_node("n2").await;
    let uid = env.create_sc(sc_manifest("box", true, "busybox:1.36")).await.uid().expect("a UID");
    start_until_running(&env, "box", &node).await;
    env.scs.delete("box", &DeleteParams::default()).await.expect("delete");
    terminate_in_order(&env, "box").await;
    env.wait_sc("box", "waiting for the node plugin", |sc| sc.metadata.deletion_timestamp.is_some() && env_has_only_data_finalizers(sc))
        .await;

    // Every node plugin shares one ServiceAccount, so any of them can write any node's ConfigMap;
    // none of these is the data node's report of this SC's data.
    let namespace = env.namespace.clone();
    env.write_data_report(&other, &uid, &env.report(&other, &namespace, "box")).await;
    env.write_data_report(&node, &uid, &env.report(&other, &namespace, "box")).await;
    env.write_data_report(&node, "0b7e2a55-0000-4000-8000-00000000dead", &env.report(&node, &namespace, "box")).await;
    env.write_data_report(&node, &format!("{uid}-x"), &env.report(&node, &namespace, "box")).await;
    // Each write wakes the operator (it watches the report ConfigMaps): give it time to act.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sc = env.scs.get("box").await.expect("still held");
    assert!(env_has_only_data_finalizers(&sc), "a report of another node or for another UID released nothing: {:?}", sc.finalizers());
    let reasons: Vec<String> = env.events_for("box").await.into_iter().filter_map(|event| event.reason).collect();
    assert!(!reasons.iter().any(|reason| reason == "DataDeleted" || reason == "DataNodeGone"), "{reasons:?}");

    // The data node's own report (replacing the forged entry under this UID) releases it.
    env.release_node_data("box").await;
    env.wait_sc_gone("box").await;
    let note = env.wait_event("box", "DataDeleted").await.note.unwrap_or_default();
    assert!(note.contains(&format!("the node plugin on {node:?}")), "{note}");
}

#[tokio::test]
async fn the_data_nodes_rootfs_usage_shows_in_the_status_and_another_nodes_does_not() {
    let Some(env) = TestEnv::with_operator("usage").await else { return };
    let node = env.create_node("n1").await;
    let other = env.create_node("n2").await;
    let uid = env.create_sc(sc_manifest("box", true, "busybox:1.36")).await.uid().expect("a UID");
    start_until_running(&env, "box", &node).await;

    // Any node plugin can write any node's ConfigMap; another node's word is never taken, in
    // its own ConfigMap or in the data node's.
    let namespace = env.namespace.clone();
    env.write_usage(&other, &uid, Some(&env.usage(&other, &namespace, "box", 5 << 30))).await;
    env.write_usage(&node, &uid, Some(&env.usage(&other, &namespace, "box", 5 << 30))).await;
    env.write_usage(&node, "0b7e2a55-0000-4000-8000-00000000dead", Some(&env.usage(&node, &namespace, "box", 6 << 30))).await;
    // Each write wakes the operator (it watches the release namespace's ConfigMaps).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sc = env.scs.get("box").await.expect("read");
    assert_eq!(sc.status.as_ref().and_then(|status| status.rootfs.clone()), None, "no figures of another node or UID");

    // The data node's own entry shows, without a requeue (the watch wakes the SC).
    let measured = env.usage(&node, &namespace, "box", 1 << 30);
    env.write_usage(&node, &uid, Some(&measured)).await;
    let sc = env
        .wait_sc("box", "status.rootfs from the data node", |sc| {
            sc.status.as_ref().and_then(|status| status.rootfs.as_ref()).is_some_and(|rootfs| rootfs.used_bytes == Some(1 << 30))
        })
        .await;
    let expected = RootfsStatus {
        size_bytes: Some(10 << 30),
        used_bytes: Some(1 << 30),
        available_bytes: Some(9 << 30),
        observed_time: Some(measured.observed_time.clone()),
    };
    assert_eq!(sc.status.and_then(|status| status.rootfs), Some(expected.clone()));

    // Stopped, the plugin removes the entry; the status keeps the last figures.
    env.patch_spec("box", json!({ "running": false })).await;
    stop_until_stopped(&env, "box").await;
    env.write_usage(&node, &uid, None).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sc = env.wait_sc("box", "Stopped", |sc| phase(sc) == "Stopped").await;
    assert_eq!(sc.status.and_then(|status| status.rootfs), Some(expected), "the last figures are kept while stopped");
}

/// Events with `reason` about `name`, counting repeats kubelet-style (`count`, or the series').
async fn times_said(env: &TestEnv, name: &str, reason: &str) -> i32 {
    let events = env.events_for(name).await;
    events
        .iter()
        .filter(|event| event.reason.as_deref() == Some(reason))
        .map(|event| event.series.as_ref().map_or(1, |series| series.count))
        .sum()
}

#[tokio::test]
async fn a_missing_image_fails_the_start_within_seconds_and_a_fixed_template_brings_it_up() {
    let Some(env) = TestEnv::with_operator("missing-image").await else { return };
    let node = env.create_node("n1").await;
    env.create_sc(sc_manifest("app", true, "registry.test/missing:1")).await;
    env.wait_pod("app", "created", |_| true).await;
    env.bind("app", &node).await;
    env.wait_pod("app-provider", "created", |_| true).await;
    let stuck_provider = schedule_provider(&env, "app", &node).await;
    env.set_container_waiting("app", "ContainerCreating", "").await;

    // The e2e cluster's images are local, with pull policy Never: kubelet says ErrImageNeverPull.
    let kubelet_says = "Container image \"registry.test/missing:1\" is not present with pull policy of Never";
    let stuck_at = std::time::Instant::now();
    env.set_container_waiting("app-provider", "ErrImageNeverPull", kubelet_says).await;
    let sc = env.wait_sc("app", "Failed with kubelet's reason", |sc| phase(sc) == "Failed").await;
    assert!(stuck_at.elapsed() < Duration::from_secs(10), "the pod watch reports it, no requeue is waited for: {:?}", stuck_at.elapsed());
    assert_eq!(message(&sc), format!("the provider pod is in ErrImageNeverPull: container \"rootfs\": {kubelet_says}"));
    assert_eq!(condition_of(&sc, "ProviderReady"), Some(("False".into(), "ErrImageNeverPull".into())));
    assert_eq!(condition_message(&sc, "ProviderReady"), format!("container \"rootfs\": {kubelet_says}"));
    let event = env.wait_event("app", "ErrImageNeverPull").await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert_eq!(event.note.as_deref(), Some(message(&sc).as_str()));
    // More reconciles (kubelet rewrites the status as it retries), and the operator restarts:
    // said once.
    env.set_container_waiting("app-provider", "ErrImageNeverPull", kubelet_says).await;
    env.set_container_waiting("app", "ContainerCreating", "").await;
    let mut env = env;
    env.restart_operator();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(times_said(&env, "app", "ErrImageNeverPull").await, 1);
    assert_eq!(times_said(&env, "app", "Failed").await, 0, "no second, generic Warning");

    // The user names an image that exists: the start is made again from the new template, with
    // no stop asked for. Nothing ran, so both pods go at once.
    let stuck_consumer = env.pod("app").await.expect("the stuck start's consumer pod");
    env.patch_spec("app", json!({ "template": { "spec": { "containers": [{ "name": "main", "image": "busybox:1.36", "command": ["sleep", "infinity"] }] } } }))
        .await;
    env.wait_pod_terminating("app").await;
    env.wait_pod_terminating("app-provider").await;
    env.finish_termination("app").await;
    env.finish_termination("app-provider").await;
    let consumer = env.wait_pod("app", "made again", |pod| pod.uid() != stuck_consumer.uid()).await;
    assert_eq!(pinned_node(&consumer).as_deref(), Some(node.as_str()));
    let (_, provider) = start_until_running(&env, "app", &node).await;
    assert_ne!(provider.uid(), stuck_provider.uid());
    assert_eq!(image_of(&provider, 0), "busybox:1.36");
    let sc = env.scs.get("app").await.expect("sc");
    assert_eq!(condition_of(&sc, "RestartRequired"), Some(("False".into(), "UpToDate".into())));
    assert_eq!(times_said(&env, "app", "TemplateChanged").await, 0, "the change is being applied: no 'stop and start' is asked for");
    assert_eq!(env.instances.get("app").await.expect("instance").spec.base_image.as_deref(), Some("busybox:1.36"));
}

#[tokio::test]
async fn a_pull_error_of_the_consumer_pod_is_one_problem_while_kubelet_retries() {
    let Some(env) = TestEnv::with_operator("pull-backoff").await else { return };
    let node = env.create_node("n1").await;
    env.create_sc(sc_manifest("web", true, "busybox:1.36")).await;
    let (_, _) = start_until_running(&env, "web", &node).await;
    for (reason, says) in [
        ("ErrImagePull", "rpc error: pull access denied"),
        ("ImagePullBackOff", "Back-off pulling image \"registry.test/sidecar:1\""),
        ("ErrImagePull", "rpc error: pull access denied"),
    ] {
        env.set_container_waiting("web", reason, says).await;
        let sc = env.wait_sc("web", reason, |sc| condition_of(sc, "ConsumerReady").is_some_and(|(_, r)| r == reason)).await;
        assert_eq!(phase(&sc), "Failed");
        assert_eq!(message(&sc), format!("the consumer pod is in {reason}: container \"main\": {says}"));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(times_said(&env, "web", "ErrImagePull").await, 1, "kubelet's alternation is one problem");
    assert_eq!(times_said(&env, "web", "ImagePullBackOff").await, 0);
}

#[tokio::test]
async fn an_image_that_cannot_run_as_templated_is_failed_once_without_a_crash_loop_and_a_command_brings_it_up() {
    let Some(env) = TestEnv::with_operator("image-config").await else { return };
    let node = env.create_node("n1").await;
    let mut manifest = sc_manifest("app", true, "registry.test/scratch-app:1");
    manifest["spec"]["template"]["spec"]["containers"][0].as_object_mut().expect("a container").remove("command");
    let uid = env.create_sc(manifest).await.uid().expect("a UID");
    env.wait_pod("app", "created", |_| true).await;
    env.bind("app", &node).await;
    env.wait_pod("app-provider", "created", |_| true).await;
    schedule_provider(&env, "app", &node).await;
    let image_id = "registry.test/scratch-app@sha256:aaaa";
    env.set_pod_ready_with_image("app-provider", image_id).await;
    let sc = env.wait_sc("app", "ProviderReady", |sc| phase(sc) == "ProviderReady").await;
    assert_eq!(condition_of(&sc, "ImageConfig"), Some(("Unknown".into(), "NotReported".into())));

    // The node plugin's summary of an earlier image is not this image's: never trusted.
    let namespace = env.namespace.clone();
    let scratch = |image_ref: &str| ImageSummary { image_ref: image_ref.into(), ..ImageSummary::default() };
    let stale =
        UsageReport { image: Some(scratch("registry.test/scratch-app@sha256:0000")), ..env.usage(&node, &namespace, "app", 1 << 20) };
    env.write_usage(&node, &uid, Some(&stale)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sc = env.scs.get("app").await.expect("sc");
    assert_eq!(sc.status.as_ref().and_then(|status| status.image.clone()), None);
    assert_eq!(condition_of(&sc, "ImageConfig"), Some(("Unknown".into(), "NotReported".into())));
    assert!(env.pod("app").await.is_some_and(|pod| pod.metadata.deletion_timestamp.is_none()), "nothing is decided on it");

    // The image it runs has neither ENTRYPOINT nor CMD and the template no command: sc-exec
    // refuses, and the consumer pod would crash-loop forever.
    let published = UsageReport { image: Some(scratch(image_id)), ..env.usage(&node, &namespace, "app", 1 << 20) };
    env.write_usage(&node, &uid, Some(&published)).await;
    env.set_container_waiting("app", "CrashLoopBackOff", "back-off 10s restarting failed container=main").await;
    let sc = env
        .wait_sc("app", "ImageConfig NoCommand", |sc| condition_of(sc, "ImageConfig") == Some(("False".into(), "NoCommand".into())))
        .await;
    assert_eq!(phase(&sc), "Failed");
    assert!(message(&sc).contains("neither ENTRYPOINT nor CMD") && message(&sc).contains("set `command`"), "{}", message(&sc));
    let image = sc.status.as_ref().and_then(|status| status.image.clone()).expect("status.image");
    assert_eq!((image.image_ref.as_str(), image.command), (image_id, None));
    env.wait_pod_terminating("app").await;
    env.finish_termination("app").await;
    env.write_usage(&node, &uid, None).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(env.pod("app").await.is_none(), "no consumer pod is made again until the template changes");
    let sc = env.scs.get("app").await.expect("sc");
    assert_eq!(phase(&sc), "Failed");
    assert_eq!(sc.status.as_ref().and_then(|status| status.image.as_ref()).map(|image| image.image_ref.as_str()), Some(image_id), "kept");
    let provider = env.pod("app-provider").await.expect("the provider is kept");
    assert!(provider.metadata.deletion_timestamp.is_none());
    assert_eq!(times_said(&env, "app", "NoCommand").await, 1);

    // The template gains a command: the kept provider (same image) serves a new consumer pod.
    env.patch_spec("app", json!({ "template": { "spec": { "containers": [{ "name": "main", "image": "registry.test/scratch-app:1", "command": ["/app", "serve"] }] } } }))
        .await;
    env.wait_pod("app", "made again", |pod| pod.metadata.deletion_timestamp.is_none()).await;
    env.bind("app", &node).await;
    env.set_pod_ready("app").await;
    let sc = env.wait_sc("app", "Running", |sc| phase(sc) == "Running").await;
    assert_eq!(condition_of(&sc, "ImageConfig"), Some(("True".into(), "Resolved".into())));
    assert_eq!(
        sc.status.and_then(|status| status.image).and_then(|image| image.command),
        Some(vec!["/app".to_owned(), "serve".to_owned()])
    );
    assert_eq!(env.pod("app-provider").await.and_then(|pod| pod.uid()), provider.uid(), "the same provider");
}

#[tokio::test]
async fn delete_with_the_data_node_gone_releases_the_data_finalizer() {
    let Some(env) = TestEnv::with_operator("node-gone").await else { return };
    let node = env.create_node("n1").await;
    env.create_sc(sc_manifest("orphan", true, "busybox:1.36")).await;
    start_until_running(&env, "orphan", &node).await;
    env.patch_spec("orphan", json!({ "running": false })).await;
    stop_until_stopped(&env, "orphan").await;

    // The node disappears; a start cannot happen, and the provider kept there is not reused
    // (pod garbage collection would remove it anyway).
    env.delete_node(&node).await;
    env.patch_spec("orphan", json!({ "running": true })).await;
    env.finish_termination("orphan-provider").await;
    let sc = env.wait_sc("orphan", "Failed: data node gone", |sc| phase(sc) == "Failed").await;
    assert_eq!(condition_of(&sc, "DataNode"), Some(("False".into(), "NodeGone".into())));
    assert!(message(&sc).contains("no longer exists"), "{}", message(&sc));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(env.pod("orphan").await.is_none(), "no pod is created for a node that is gone");

    env.scs.delete("orphan", &DeleteParams::default()).await.expect("delete");
    env.wait_sc_gone("orphan").await;
    let event = env.wait_event("orphan", "DataNodeGone").await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert!(event.note.unwrap_or_default().contains(&node));
}

#[tokio::test]
async fn delete_of_a_never_started_sc_needs_no_node_plugin() {
    let Some(env) = TestEnv::with_operator("delete-idle").await else { return };
    env.create_sc(sc_manifest("idle", false, "busybox:1.36")).await;
    env.wait_sc("idle", "Stopped", |sc| phase(sc) == "Stopped").await;
    env.scs.delete("idle", &DeleteParams::default()).await.expect("delete");
    env.wait_sc_gone("idle").await;
}

#[tokio::test]
async fn a_stranger_pod_is_reported_and_never_touched() {
    let Some(env) = TestEnv::with_operator("stranger").await else { return };
    let stranger: Pod = serde_json::from_value(json!({
        "metadata": { "name": "app", "labels": { "owner": "someone-else" } },
        "spec": { "containers": [{ "name": "c", "image": "nginx" }] }
    }))
    .expect("a pod");
    let stranger = env.pods.create(&PostParams::default(), &stranger).await.expect("create the stranger");
    env.create_sc(sc_manifest("app", true, "busybox:1.36")).await;

    let sc = env.wait_sc("app", "NameConflict", |sc| condition_of(sc, "NameConflict").is_some_and(|(status, _)| status == "True")).await;
    assert_eq!(condition_of(&sc, "NameConflict"), Some(("True".into(), "PodNotOwned".into())));
    assert_eq!(condition_of(&sc, "ConsumerReady"), Some(("False".into(), "PodNotOwned".into())));
    assert_eq!(phase(&sc), "Failed");
    assert!(message(&sc).contains("not owned"), "{}", message(&sc));
    assert!(condition_message(&sc, "NameConflict").contains("\"app\""));
    assert_eq!(sc.status.as_ref().and_then(|s| s.consumer_pod_name.clone()), None, "a stranger is not reported as ours");
    let event = env.wait_event("app", "NameConflict").await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));

    // Stop and delete: the stranger stays exactly as it was.
    env.patch_spec("app", json!({ "running": false })).await;
    env.wait_sc("app", "Failed still (the conflict remains)", |sc| phase(sc) == "Failed").await;
    env.scs.delete("app", &DeleteParams::default()).await.expect("delete");
    env.wait_sc_gone("app").await;
    let after = env.pod("app").await.expect("the stranger still exists");
    assert_eq!(after.uid(), stranger.uid());
    assert_eq!(after.resource_version(), stranger.resource_version(), "the stranger was not modified");
    assert!(after.metadata.deletion_timestamp.is_none());

    // Once its owner removes the stranger (no watch sees an unlabelled pod go), a start proceeds
    // without waiting for the steady-state resync.
    env.create_sc(sc_manifest("app", true, "busybox:1.36")).await;
    env.wait_sc("app", "NameConflict again", |sc| condition_of(sc, "NameConflict").is_some_and(|(status, _)| status == "True")).await;
    env.pods.delete("app", &DeleteParams { grace_period_seconds: Some(0), ..DeleteParams::default() }).await.expect("delete the stranger");
    let instance = env.instances.get("app").await.expect("instance");
    env.wait_pod("app", "created by the operator once the name is free", |pod| owned_by(pod, &instance)).await;
    let sc = env
        .wait_sc("app", "NameConflict cleared", |sc| condition_of(sc, "NameConflict").is_some_and(|(status, _)| status == "False"))
        .await;
    assert_eq!(phase(&sc), "Pending");
}

#[tokio::test]
async fn a_foreign_instance_is_reported_and_never_adopted() {
    let Some(env) = TestEnv::with_operator("foreign-instance").await else { return };
    // An instance named like the SC but controlled by another object (a StoppableContainer of an
    // earlier incarnation whose instance survived, e.g. finalizers removed by hand without a
    // garbage collector), with a consumer pod of its own.
    let leftover: StoppableContainerInstance = serde_json::from_value(json!({
        "apiVersion": sc_api::consts::API_VERSION, "kind": "StoppableContainerInstance",
        "metadata": {
            "name": "reborn",
            "ownerReferences": [{ "apiVersion": sc_api::consts::API_VERSION, "kind": "StoppableContainer", "name": "reborn", "uid": "00000000-0000-4000-8000-0000000000aa", "controller": true }]
        },
        "spec": { "stoppableContainerName": "reborn", "running": true, "template": { "spec": { "containers": [{ "name": "main", "image": "busybox:1.35" }] } } }
    }))
    .expect("an instance");
    let leftover = env.instances.create(&PostParams::default(), &leftover).await.expect("create the leftover instance");
    let mut old_pod = serde_json::to_value(Pod::default()).expect("pod");
    old_pod["metadata"] = json!({
        "name": "reborn",
        "labels": { LABEL_MANAGED_BY: MANAGED_BY_VALUE, LABEL_INSTANCE: "reborn", LABEL_ROLE: ROLE_CONSUMER },
        "ownerReferences": [{ "apiVersion": sc_api::consts::API_VERSION, "kind": "StoppableContainerInstance", "name": "reborn", "uid": leftover.uid(), "controller": true }]
    });
    old_pod["spec"] = json!({ "containers": [{ "name": "main", "image": WRAPPER_IMAGE }] });
    let old_pod: Pod = serde_json::from_value(old_pod).expect("a pod");
    let old_pod = env.pods.create(&PostParams::default(), &old_pod).await.expect("create the old pod");

    env.create_sc(sc_manifest("reborn", true, "busybox:1.36")).await;
    let sc = env.wait_sc("reborn", "NameConflict", |sc| condition_of(sc, "NameConflict").is_some_and(|(status, _)| status == "True")).await;
    assert_eq!(phase(&sc), "Failed");
    assert!(condition_message(&sc, "NameConflict").contains("StoppableContainerInstance"), "{}", condition_message(&sc, "NameConflict"));
    env.wait_event("reborn", "NameConflict").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let instance = env.instances.get("reborn").await.expect("the leftover instance");
    assert_eq!(instance.resource_version(), leftover.resource_version(), "the foreign instance is not adopted or changed");
    let pod = env.pod("reborn").await.expect("the old pod");
    assert_eq!(pod.resource_version(), old_pod.resource_version(), "the old pod is not adopted or changed");

    // Deleting the SC leaves both alone.
    env.scs.delete("reborn", &DeleteParams::default()).await.expect("delete");
    env.wait_sc_gone("reborn").await;
    assert_eq!(env.instances.get("reborn").await.expect("still there").resource_version(), leftover.resource_version());
    assert_eq!(env.pod("reborn").await.expect("still there").resource_version(), old_pod.resource_version());
}

#[tokio::test]
async fn a_deleted_instance_is_held_until_its_pods_are_gone() {
    let Some(env) = TestEnv::with_operator("instance-deleted").await else { return };
    let node = env.create_node("n1").await;
    env.create_sc(sc_manifest("held", true, "busybox:1.36")).await;
    start_until_running(&env, "held", &node).await;
    let first = env.instances.get("held").await.expect("instance");

    env.instances.delete("held", &DeleteParams::default()).await.expect("delete the instance");
    terminate_in_order(&env, "held").await;
    eventually("the old instance to be released and gone", || async {
        match env.instances.get_opt("held").await.map_err(|error| error.to_string())? {
            Some(instance) if instance.uid() == first.uid() => Err(format!("finalizers={:?}", instance.finalizers())),
            _ => Ok(()),
        }
    })
    .await;
    // running is still true: a new instance and consumer pod, pinned to the data node.
    let second = eventually("a new instance", || async {
        env.instances.get_opt("held").await.map_err(|error| error.to_string())?.ok_or_else(|| "absent".to_owned())
    })
    .await;
    assert_ne!(second.uid(), first.uid());
    let consumer = env.wait_pod("held", "recreated under the new instance", |pod| owned_by(pod, &second)).await;
    assert_eq!(pinned_node(&consumer).as_deref(), Some(node.as_str()));
}

#[tokio::test]
async fn a_stranger_provider_is_reported_and_never_touched() {
    let Some(env) = TestEnv::with_operator("stranger-provider").await else { return };
    let node = env.create_node("n1").await;
    let stranger: Pod = serde_json::from_value(json!({
        "metadata": { "name": "box-provider" },
        "spec": { "containers": [{ "name": "c", "image": "nginx" }] }
    }))
    .expect("a pod");
    let stranger = env.pods.create(&PostParams::default(), &stranger).await.expect("create the stranger");
    env.create_sc(sc_manifest("box", true, "busybox:1.36")).await;
    env.wait_pod("box", "created", |_| true).await;
    env.bind("box", &node).await;
    let sc = env.wait_sc("box", "NameConflict", |sc| condition_of(sc, "NameConflict").is_some_and(|(status, _)| status == "True")).await;
    assert_eq!(condition_of(&sc, "ProviderReady"), Some(("False".into(), "PodNotOwned".into())));
    assert_eq!(phase(&sc), "Failed");
    env.wait_event("box", "NameConflict").await;

    env.scs.delete("box", &DeleteParams::default()).await.expect("delete");
    env.finish_termination("box").await;
    let sc = env
        .wait_sc("box", "waiting for the node plugin", |sc| {
            sc.finalizers() == [SC_FINALIZER, NODE_DATA_FINALIZER] || sc.finalizers() == [NODE_DATA_FINALIZER, SC_FINALIZER]
        })
        .await;
    assert!(sc.metadata.deletion_timestamp.is_some());
    env.release_node_data("box").await;
    env.wait_sc_gone("box").await;
    let after = env.pod("box-provider").await.expect("the stranger still exists");
    assert_eq!(after.resource_version(), stranger.resource_version(), "the stranger was not modified");
}

#[tokio::test]
async fn a_recreated_sc_gets_a_new_identity_and_never_adopts_the_old_pods() {
    let Some(env) = TestEnv::with_operator("recreate").await else { return };
    let node = env.create_node("n1").await;
    let first = env.create_sc(sc_manifest("again", true, "busybox:1.36")).await;
    start_until_running(&env, "again", &node).await;
    let old_instance = env.instances.get("again").await.expect("instance");
    env.scs.delete("again", &DeleteParams::default()).await.expect("delete");
    env.finish_termination("again").await;
    env.finish_termination("again-provider").await;
    env.wait_sc("again", "waiting for the node plugin", |sc| sc.metadata.deletion_timestamp.is_some() && env_has_only_data_finalizers(sc))
        .await;
    env.release_node_data("again").await;
    env.wait_sc_gone("again").await;

    // A leftover of the old incarnation (as if someone had removed the finalizers by hand while
    // the operator was down): a consumer pod controlled by the old instance.
    let mut leftover = serde_json::to_value(Pod::default()).expect("pod");
    leftover["metadata"] = json!({
        "name": "again",
        "labels": { LABEL_MANAGED_BY: MANAGED_BY_VALUE, LABEL_INSTANCE: "again", LABEL_ROLE: ROLE_CONSUMER },
        "ownerReferences": [{ "apiVersion": sc_api::consts::API_VERSION, "kind": "StoppableContainerInstance", "name": "again", "uid": old_instance.uid(), "controller": true }]
    });
    leftover["spec"] = json!({ "containers": [{ "name": "main", "image": WRAPPER_IMAGE }] });
    let leftover: Pod = serde_json::from_value(leftover).expect("a pod");
    let leftover = env.pods.create(&PostParams::default(), &leftover).await.expect("create the leftover");

    let second = env.create_sc(sc_manifest("again", true, "busybox:1.36")).await;
    assert_ne!(first.uid(), second.uid(), "a recreated SC has a new UID, so the node plugin's data key differs");
    let sc = env
        .wait_sc("again", "NameConflict over the leftover", |sc| {
            condition_of(sc, "NameConflict").is_some_and(|(status, _)| status == "True")
        })
        .await;
    assert_eq!(sc.status.as_ref().and_then(|s| s.data_node_name.clone()), None, "the new SC knows nothing of the old data");
    let new_instance = env.instances.get("again").await.expect("a new instance");
    assert_ne!(new_instance.uid(), old_instance.uid());
    assert!(is_controlled_by(&new_instance, &second.uid().expect("uid")));
    let after = env.pod("again").await.expect("the leftover still exists");
    assert_eq!(after.resource_version(), leftover.resource_version(), "the leftover is neither adopted nor deleted");

    // Once the leftover is removed (by whoever owns the problem), the new SC starts fresh.
    env.pods
        .delete("again", &DeleteParams { grace_period_seconds: Some(0), ..DeleteParams::default() })
        .await
        .expect("delete the leftover");
    let consumer = env.wait_pod("again", "created for the new SC", |pod| owned_by(pod, &new_instance)).await;
    assert_eq!(pinned_node(&consumer), None, "not pinned to the old SC's node");
}

#[tokio::test]
async fn a_forged_provider_is_never_adopted_but_deleted_and_replaced() {
    let Some(env) = TestEnv::with_operator("forged-provider").await else { return };
    let node = env.create_node("n1").await;
    env.create_sc(sc_manifest("victim", true, "busybox:1.36")).await;
    start_until_running(&env, "victim", &node).await;
    env.patch_spec("victim", json!({ "running": false })).await;
    let kept = stop_until_stopped(&env, "victim").await;

    // The tenant deletes the kept provider and puts its own pod in its place: the same name,
    // labels, hash annotation, controller reference to the instance and spec (bound to the data
    // node) — everything but the UID, which only the API server assigns.
    delete_now(&env, "victim-provider").await;
    let forged = env.pods.create(&PostParams::default(), &forged_copy(&kept)).await.expect("create the forged provider");
    assert_eq!(forged.annotations().get(PROVIDER_HASH_ANNOTATION), kept.annotations().get(PROVIDER_HASH_ANNOTATION));
    assert_eq!(node_of(&forged).as_deref(), Some(node.as_str()));

    // Even while stopped, it is deleted (by its UID), with a Warning, and never recorded.
    let deleted = env.wait_pod_terminating("victim-provider").await;
    assert_eq!(deleted.uid(), forged.uid());
    let event = env.wait_event("victim", "UnrecordedPod").await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    let note = event.note.unwrap_or_default();
    assert!(note.contains("\"victim-provider\"") && note.contains("was not created by the operator"), "{note}");
    assert_ne!(recorded_uid(&env, "victim", Role::Provider).await, forged.uid(), "the forged pod is never recorded");
    // The Event goes out before that reconcile writes the status: wait for the status.
    let sc = env
        .wait_sc("victim", "ProviderReady=False/NotCreatedByOperator", |sc| {
            condition_of(sc, "ProviderReady") == Some(("False".into(), "NotCreatedByOperator".into()))
        })
        .await;
    assert_eq!(sc.status.as_ref().and_then(|status| status.provider_pod_name.clone()), None, "never reported as ours");

    // Once it is gone, a start gets the operator's own provider, recorded by its UID.
    env.finish_termination("victim-provider").await;
    env.patch_spec("victim", json!({ "running": true })).await;
    let (_, provider) = start_until_running(&env, "victim", &node).await;
    assert_ne!(provider.uid(), forged.uid());
    assert_ne!(provider.uid(), kept.uid());
}

#[tokio::test]
async fn a_forged_consumer_pod_is_never_adopted_but_deleted_and_replaced() {
    let Some(env) = TestEnv::with_operator("forged-consumer").await else { return };
    let node = env.create_node("n1").await;
    env.create_sc(sc_manifest("victim", true, "busybox:1.36")).await;
    let (consumer, _) = start_until_running(&env, "victim", &node).await;
    env.patch_spec("victim", json!({ "running": false })).await;
    stop_until_stopped(&env, "victim").await;

    // A pod named like the stopped SC, with the operator's labels and a controller reference to
    // the instance: what a tenant writes to be mounted as this SC's workload without sc-exec.
    let forged = env.pods.create(&PostParams::default(), &forged_copy(&consumer)).await.expect("create the forged consumer pod");
    env.bind("victim", &node).await;
    let deleted = env.wait_pod_terminating("victim").await;
    assert_eq!(deleted.uid(), forged.uid());
    let event = env.wait_event("victim", "UnrecordedPod").await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert!(event.note.unwrap_or_default().contains("consumer pod"));
    assert_eq!(recorded_uid(&env, "victim", Role::Consumer).await, None);
    let sc = env.wait_sc("victim", "waiting for the forged pod to go", |sc| message(sc).contains("waiting for pods [\"victim\"]")).await;
    assert_eq!(sc.status.as_ref().and_then(|status| status.consumer_pod_name.clone()), None, "never reported as ours");

    // A start while it terminates waits for the name, then creates and records its own.
    env.patch_spec("victim", json!({ "running": true })).await;
    env.wait_sc("victim", "replacing the forged pod", |sc| message(sc).starts_with("replacing the consumer pod")).await;
    env.finish_termination("victim").await;
    let (replacement, _) = start_until_running(&env, "victim", &node).await;
    assert_ne!(replacement.uid(), forged.uid());
}

#[tokio::test]
async fn a_provider_deleted_while_the_workload_runs_is_replaced_at_once_and_reported() {
    let Some(env) = TestEnv::with_operator("provider-deleted").await else { return };
    let node = env.create_node("n1").await;
    env.create_sc(sc_manifest("busy", true, "busybox:1.36")).await;
    let (consumer, provider) = start_until_running(&env, "busy", &node).await;
    let sc = env.scs.get("busy").await.expect("sc");
    assert_eq!(provider_lost(&sc), Some(("False".into(), "ProviderInPlace".into())));

    // Deleted for good (a completed eviction, `kubectl delete --force`): a new provider at once.
    delete_now(&env, "busy-provider").await;
    let replacement = wait_replacement_provider(&env, "busy", &provider, &node).await;
    let sc = env.wait_sc("busy", "ProviderLost", |sc| provider_lost(sc) == Some(("True".into(), "ProviderDeleted".into()))).await;
    assert_eq!(phase(&sc), "Running", "the workload itself runs on");
    assert!(message(&sc).contains("was deleted while the workload runs"), "{}", message(&sc));
    let event = env.wait_event("busy", "ProviderLost").await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert!(event.note.unwrap_or_default().contains(provider.uid().as_deref().unwrap_or("?")), "the event names the lost pod");
    // The loss lasts until the replacement runs; then it is over.
    schedule_provider(&env, "busy", &node).await;
    env.set_pod_ready("busy-provider").await;
    let sc = env.wait_sc("busy", "ProviderLost over", |sc| provider_lost(sc) == Some(("False".into(), "ProviderInPlace".into()))).await;
    assert_eq!(message(&sc), "running");

    // Being deleted (a graceful eviction, `kubectl delete`): reported at once, replaced once gone.
    env.pods.delete("busy-provider", &DeleteParams::default()).await.expect("delete the replacement");
    env.wait_sc("busy", "ProviderLost while it terminates", |sc| provider_lost(sc) == Some(("True".into(), "ProviderTerminating".into())))
        .await;
    env.finish_termination("busy-provider").await;
    let third = wait_replacement_provider(&env, "busy", &replacement, &node).await;
    schedule_provider(&env, "busy", &node).await;
    env.set_pod_ready("busy-provider").await;
    env.wait_sc("busy", "ProviderLost over again", |sc| provider_lost(sc).is_some_and(|(status, _)| status == "False")).await;
    // Repeats of an Event with the same reason are one Event object with a series count.
    let lost_events: Vec<_> =
        env.events_for("busy").await.into_iter().filter(|event| event.reason.as_deref() == Some("ProviderLost")).collect();
    let occurrences: i32 = lost_events.iter().map(|event| event.series.as_ref().map_or(1, |series| series.count)).sum();
    assert_eq!(occurrences, 3, "one Warning for the deletion, one when the next provider was being deleted, one when it was gone");

    let now = env.pod("busy").await.expect("the consumer pod");
    assert_eq!(now.uid(), consumer.uid(), "the consumer pod is never touched");
    assert!(now.metadata.deletion_timestamp.is_none());
    assert_ne!(third.uid(), provider.uid());
}

#[tokio::test]
async fn an_evicted_provider_is_removed_and_replaced_at_once() {
    let Some(env) = TestEnv::with_operator("provider-evicted").await else { return };
    let node = env.create_node("n1").await;
    env.create_sc(sc_manifest("busy", true, "busybox:1.36")).await;
    let (_, provider) = start_until_running(&env, "busy", &node).await;

    // The kubelet evicts it: the pod stays, Failed, forever, and its image is no longer in use.
    env.set_pod_failed("busy-provider", "Evicted", "The node was low on resource: memory.").await;
    let replacement = wait_replacement_provider(&env, "busy", &provider, &node).await;
    let sc = env.wait_sc("busy", "ProviderLost", |sc| provider_lost(sc) == Some(("True".into(), "ProviderTerminated".into()))).await;
    assert!(condition_message(&sc, "ProviderLost").contains("Failed: Evicted: The node was low on resource: memory."));
    assert_eq!(env.wait_event("busy", "ProviderLost").await.type_.as_deref(), Some("Warning"));
    schedule_provider(&env, "busy", &node).await;
    env.set_pod_ready("busy-provider").await;
    env.wait_sc("busy", "ProviderLost over", |sc| provider_lost(sc).is_some_and(|(status, _)| status == "False")).await;
    assert_eq!(env.pod("busy-provider").await.and_then(|pod| pod.uid()), replacement.uid());
}

#[tokio::test]
async fn a_kept_provider_whose_image_was_changed_in_place_is_not_reused() {
    let Some(env) = TestEnv::with_operator("provider-set-image").await else { return };
    let node = env.create_node("n1").await;
    env.create_sc(sc_manifest("box", true, "busybox:1.36")).await;
    start_until_running(&env, "box", &node).await;
    env.patch_spec("box", json!({ "running": false })).await;
    let kept = stop_until_stopped(&env, "box").await;

    // `kubectl set image pod/box-provider rootfs=...`: the pod keeps its UID, labels and hash
    // annotation, and now runs another image.
    let swap = json!({ "spec": { "containers": [{ "name": "rootfs", "image": "registry.test/tenant/rootfs:1" }] } });
    let swapped = env.pods.patch("box-provider", &PatchParams::default(), &Patch::Strategic(swap)).await.expect("set image");
    assert_eq!(swapped.uid(), kept.uid());
    assert_eq!(swapped.annotations().get(PROVIDER_HASH_ANNOTATION), kept.annotations().get(PROVIDER_HASH_ANNOTATION));

    env.patch_spec("box", json!({ "running": true })).await;
    let deleted = env.wait_pod_terminating("box-provider").await;
    assert_eq!(deleted.uid(), kept.uid(), "the swapped provider is replaced, not reused");
    assert!(env.pod("box").await.is_none(), "no consumer pod while it terminates");
    env.finish_termination("box-provider").await;
    let (_, provider) = start_until_running(&env, "box", &node).await;
    assert_ne!(provider.uid(), kept.uid());
    assert_eq!(image_of(&provider, 0), "busybox:1.36");
}

#[tokio::test]
async fn pods_recorded_by_the_previous_operator_version_are_kept_across_an_upgrade() {
    let Some(mut env) = TestEnv::new("upgrade").await else { return };
    let node = env.create_node("n1").await;
    // What the previous version left of a running SC: the instance, both pods (the provider bound
    // with nodeName), the pods' UIDs in the instance status and the data node in the SC status.
    let sc = env.create_sc(sc_manifest("kept", true, "busybox:1.36")).await;
    let valid = validate(&sc).expect("valid");
    let instance = env.instances.create(&PostParams::default(), &build_instance(&sc, None, true)).await.expect("create the instance");
    let consumer = build_consumer_pod(&valid.workload, &instance, None, &settings());
    let consumer = env.pods.create(&PostParams::default(), &consumer).await.expect("create the consumer pod");
    env.bind("kept", &node).await;
    let mut provider = build_provider_pod(&valid.workload, &instance, &node, &settings());
    if let Some(spec) = provider.spec.as_mut() {
        spec.affinity = None;
        spec.node_name = Some(node.clone());
    }
    let provider = env.pods.create(&PostParams::default(), &provider).await.expect("create the provider");
    env.set_pod_ready("kept-provider").await;
    env.set_pod_ready("kept").await;
    let apply = PatchParams::apply(OPERATOR_FIELD_MANAGER).force();
    let instance_status = json!({
        "apiVersion": sc_api::consts::API_VERSION, "kind": "StoppableContainerInstance",
        "status": { "phase": "Running", "consumerPodName": "kept", "consumerPodUID": consumer.uid(), "providerPodName": "kept-provider", "providerPodUID": provider.uid() }
    });
    env.instances.patch_status("kept", &apply, &Patch::Apply(instance_status)).await.expect("the previous version's instance status");
    let sc_status = json!({ "apiVersion": sc_api::consts::API_VERSION, "kind": "StoppableContainer", "status": { "phase": "Running", "dataNodeName": node } });
    env.scs.patch_status("kept", &apply, &Patch::Apply(sc_status)).await.expect("the previous version's SC status");

    env.start_operator();
    let sc = env
        .wait_sc("kept", "Running under the new operator", |sc| {
            phase(sc) == "Running" && sc.status.as_ref().is_some_and(|status| status.observed_generation.is_some())
        })
        .await;
    assert_eq!(condition_of(&sc, "ProviderReady"), Some(("True".into(), "PodReady".into())));
    // Give the operator time to do something wrong.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for (name, before) in [("kept", &consumer), ("kept-provider", &provider)] {
        let now = env.pod(name).await.expect("still there");
        assert_eq!(now.uid(), before.uid(), "{name} is the same pod");
        assert!(now.metadata.deletion_timestamp.is_none(), "{name} is not deleted");
    }
    assert_eq!(recorded_uid(&env, "kept", Role::Consumer).await, consumer.uid());
    assert_eq!(recorded_uid(&env, "kept", Role::Provider).await, provider.uid());
    let reasons: Vec<String> = env.events_for("kept").await.into_iter().filter_map(|event| event.reason).collect();
    assert!(!reasons.iter().any(|reason| reason == "UnrecordedPod" || reason == "PodDeleted"), "{reasons:?}");
}

fn env_has_only_data_finalizers(sc: &StoppableContainer) -> bool {
    let mut finalizers = sc.finalizers().to_vec();
    finalizers.sort();
    finalizers == [NODE_DATA_FINALIZER, SC_FINALIZER]
}

#[tokio::test]
async fn invalid_specs_are_rejected_by_the_schema_or_reported() {
    let Some(env) = TestEnv::with_operator("invalid").await else { return };
    let mut reported = BTreeMap::new();
    for path in fixture_paths("invalid") {
        let mut manifest = read_manifest(&path);
        manifest["spec"]["running"] = json!(true);
        let sc: StoppableContainer = serde_json::from_value(manifest).expect("a manifest");
        match env.scs.create(&PostParams::default(), &sc).await {
            Err(kube::Error::Api(status)) => {
                assert_eq!(status.code, 422, "{}: {status:?}", path.display());
                reported.insert(sc.name_any(), format!("schema: {}", status.message));
            }
            Err(error) => panic!("{}: {error}", path.display()),
            Ok(created) => {
                let name = created.name_any();
                let sc = env
                    .wait_sc(&name, "SpecValid=False", |sc| condition_of(sc, "SpecValid").is_some_and(|(status, _)| status == "False"))
                    .await;
                assert_eq!(condition_of(&sc, "SpecValid"), Some(("False".into(), "InvalidSpec".into())));
                assert_eq!(phase(&sc), "Failed");
                let event = env.wait_event(&name, "InvalidSpec").await;
                assert_eq!(event.type_.as_deref(), Some("Warning"));
                assert!(env.pod(&name).await.is_none(), "{name}: no pod for an invalid spec");
                reported.insert(name, format!("operator: {}", message(&sc)));
            }
        }
    }
    assert!(
        reported.get("no-containers").is_some_and(|how| how.starts_with("schema:")),
        "minItems rejects an empty containers list: {reported:#?}"
    );
    assert!(reported.get("privileged").is_some_and(|how| how.starts_with("operator:")), "{reported:#?}");
    assert_eq!(reported.len(), fixture_paths("invalid").len());
}

/// The `rules` of the chart's operator role of `kind`: the ClusterRole, or the Role that reads
/// the node plugins' reports in the release namespace (the templated metadata is not needed).
fn chart_operator_rules(kind: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/stoppablecontainer/templates/operator-rbac.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    let role = text
        .split("\n---")
        .find(|document| document.contains(&format!("\nkind: {kind}\n")))
        .unwrap_or_else(|| panic!("the chart has an operator {kind}"));
    let rules = &role[role.find("\nrules:").unwrap_or_else(|| panic!("the {kind} has rules"))..];
    let parsed: Value = serde_yaml::from_str(rules).unwrap_or_else(|error| panic!("{}: rules: {error}", path.display()));
    parsed["rules"].clone()
}

#[tokio::test]
async fn the_binary_runs_with_the_charts_rbac_serves_health_and_stops_on_sigterm() {
    let Some(env) = TestEnv::new("binary").await else { return };
    let server = ApiServer::shared().expect("not skipped");
    // The operator's own user gets exactly the chart's ClusterRole.
    let roles: Api<DynamicObject> = Api::all_with(env.client.clone(), &ApiResource::erase::<k8s_openapi::api::rbac::v1::ClusterRole>(&()));
    let role: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": { "name": "sc-operator-test" }, "rules": chart_operator_rules("ClusterRole")
    }))
    .expect("a ClusterRole");
    roles.create(&PostParams::default(), &role).await.expect("create the chart's ClusterRole");
    let bindings: Api<k8s_openapi::api::rbac::v1::ClusterRoleBinding> = Api::all(env.client.clone());
    let binding = serde_json::from_value(json!({
        "metadata": { "name": "sc-operator-test" },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "sc-operator-test" },
        "subjects": [{ "apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": support::apiserver::OPERATOR_USER }]
    }))
    .expect("a ClusterRoleBinding");
    bindings.create(&PostParams::default(), &binding).await.expect("bind the operator's user");
    // ... and the chart's Role for the reports, in the namespace that plays the release namespace.
    let report_roles: Api<k8s_openapi::api::rbac::v1::Role> = Api::namespaced(env.client.clone(), &env.namespace);
    let report_role =
        serde_json::from_value(json!({ "metadata": { "name": "sc-operator-reports" }, "rules": chart_operator_rules("Role") }))
            .expect("a Role");
    report_roles.create(&PostParams::default(), &report_role).await.expect("create the chart's Role");
    let report_bindings: Api<k8s_openapi::api::rbac::v1::RoleBinding> = Api::namespaced(env.client.clone(), &env.namespace);
    let report_binding = serde_json::from_value(json!({
        "metadata": { "name": "sc-operator-reports" },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "sc-operator-reports" },
        "subjects": [{ "apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": support::apiserver::OPERATOR_USER }]
    }))
    .expect("a RoleBinding");
    report_bindings.create(&PostParams::default(), &report_binding).await.expect("bind the operator's user in the release namespace");

    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address").port();
    let operator = tokio::process::Command::new(env!("CARGO_BIN_EXE_sc-operator"))
        .args(["run", "--exec-wrapper-image", WRAPPER_IMAGE, "--namespace", &env.namespace, "--log-format", "json"])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("KUBECONFIG", server.operator_kubeconfig())
        .env("RUST_LOG", "info")
        .env("POD_NAME", "sc-operator-0")
        // As the chart sets it from the downward API: the release namespace, where the reports are.
        .env("POD_NAMESPACE", &env.namespace)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start sc-operator");
    let pid = operator.id().expect("pid");
    let stop = |signal: &str| {
        let sent = std::process::Command::new("kill").args([signal, &pid.to_string()]).status().expect("run kill");
        assert!(sent.success(), "signal {signal} sent to {pid}");
    };

    let get = |path: &'static str| async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.map_err(|error| error.to_string())?;
        stream
            .write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.map_err(|error| error.to_string())?;
        Ok::<String, String>(answer)
    };
    let livez = eventually("/livez to answer", || async { get("/livez").await }).await;
    assert!(livez.starts_with("HTTP/1.1 200"), "{livez}");
    let mut readyz = String::new();
    for _ in 0..300 {
        readyz = get("/readyz").await.unwrap_or_else(|error| error);
        if readyz.starts_with("HTTP/1.1 200") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !readyz.starts_with("HTTP/1.1 200") {
        stop("-TERM");
        let output = operator.wait_with_output().await.expect("wait");
        panic!(
            "/readyz did not turn 200 within 30 s: {readyz}\nlogs:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    // A whole lifecycle with nothing but the chart's permissions.
    let node = env.create_node("n1").await;
    env.create_sc(sc_manifest("probe", true, "busybox:1.36")).await;
    start_until_running(&env, "probe", &node).await;
    let event = env.wait_event("probe", "Running").await;
    assert_eq!(event.reporting_instance.as_deref(), Some("sc-operator-0"), "POD_NAME is the reporting instance");
    env.scs.delete("probe", &DeleteParams::default()).await.expect("delete");
    env.finish_termination("probe").await;
    env.finish_termination("probe-provider").await;
    env.wait_sc("probe", "waiting for the node plugin", |sc| sc.metadata.deletion_timestamp.is_some() && env_has_only_data_finalizers(sc))
        .await;
    env.release_node_data("probe").await;
    env.wait_sc_gone("probe").await;

    let metrics = eventually("/metrics to show the lifecycle", || async {
        let answer = get("/metrics").await?;
        if answer.contains("sc_operator_start_seconds_count 1") { Ok(answer) } else { Err(answer) }
    })
    .await;
    assert!(metrics.contains("text/plain; version=0.0.4"), "{metrics}");
    assert!(!metrics.contains("sc_operator_reconciles_total 0\n"), "{metrics}");
    let not_found = get("/nope").await.expect("answer");
    assert!(not_found.starts_with("HTTP/1.1 404"), "{not_found}");

    stop("-TERM");
    let output = tokio::time::timeout(Duration::from_secs(20), operator.wait_with_output())
        .await
        .expect("exits within 20 s of SIGTERM")
        .expect("wait");
    let logs = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    // A failed reconcile is retried (a conflict with a concurrent writer is normal); one the
    // chart's RBAC forbids would be retried forever.
    assert!(!logs.contains("forbidden"), "a request was forbidden by the chart's ClusterRole: {metrics}\nlogs:\n{logs}");
    assert!(output.status.success(), "exit status {:?} after SIGTERM; logs:\n{logs}", output.status);
    assert!(logs.lines().filter(|line| !line.trim().is_empty()).all(|line| line.starts_with('{')), "JSON logs:\n{logs}");
    assert!(logs.contains("caches synced; ready") && logs.contains("controller stopped"), "{logs}");
}
