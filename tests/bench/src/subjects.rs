//! What is measured: a StoppableContainer and a plain pod running the same image and the same
//! command, and the states of their pods the measurements wait for.

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use sc_api::consts::{LABEL_INSTANCE, LABEL_ROLE, ROLE_CONSUMER, provider_pod_name};
use sc_api::{Phase, StoppableContainer};
use serde_json::json;

use crate::observe::Objects;

/// Labels every object the benchmark creates, so its watches see nothing else.
pub const BENCH_LABEL: &str = "stoppablecontainer.xtlsoft.top/bench";

/// The workload of both sides: it exits on SIGTERM (a bare `sleep` as a plain pod's PID 1 would
/// ignore it and make every plain-pod deletion take the whole grace period), and has no
/// readiness probe, so Ready means "the container runs".
pub const WORKLOAD_COMMAND: [&str; 3] = ["sh", "-c", "trap 'exit 0' TERM; sleep infinity & wait"];
pub const WORKLOAD_CONTAINER: &str = "workload";

pub fn stoppable_container(name: &str, image: &str, running: bool) -> Result<StoppableContainer, serde_json::Error> {
    serde_json::from_value(json!({
        "apiVersion": sc_api::consts::API_VERSION,
        "kind": sc_api::consts::SC_KIND,
        "metadata": { "name": name, "labels": { BENCH_LABEL: "true" } },
        "spec": {
            "running": running,
            "template": {
                "metadata": { "labels": { BENCH_LABEL: "true" } },
                "spec": { "containers": [workload_container(image)] }
            }
        }
    }))
}

/// The same StoppableContainer with its persistent layer on a claim of the default class.
pub fn stoppable_container_on_claim(name: &str, image: &str, running: bool, size: &str) -> Result<StoppableContainer, serde_json::Error> {
    let mut sc = stoppable_container(name, image, running)?;
    sc.spec.storage = Some(sc_api::storage::StorageSpec {
        size: k8s_openapi::apimachinery::pkg::api::resource::Quantity(size.to_owned()),
        ..sc_api::storage::StorageSpec::default()
    });
    Ok(sc)
}

/// A claim of the default class, for the plain pod that mounts one.
pub fn claim(name: &str, size: &str) -> Result<PersistentVolumeClaim, serde_json::Error> {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": { "name": name, "labels": { BENCH_LABEL: "true" } },
        "spec": { "accessModes": ["ReadWriteOnce"], "resources": { "requests": { "storage": size } } }
    }))
}

/// The plain pod with `claim` mounted at `/data`: the baseline of a resume on a claim.
pub fn plain_pod_with_claim(name: &str, image: &str, claim: &str) -> Result<Pod, serde_json::Error> {
    let mut container = workload_container(image);
    container["volumeMounts"] = json!([{ "name": "data", "mountPath": "/data" }]);
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name, "labels": { BENCH_LABEL: "true" } },
        "spec": { "containers": [container], "volumes": [{ "name": "data", "persistentVolumeClaim": { "claimName": claim } }] }
    }))
}

pub fn plain_pod(name: &str, image: &str) -> Result<Pod, serde_json::Error> {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name, "labels": { BENCH_LABEL: "true" } },
        "spec": { "containers": [workload_container(image)] }
    }))
}

fn workload_container(image: &str) -> serde_json::Value {
    json!({ "name": WORKLOAD_CONTAINER, "image": image, "imagePullPolicy": "IfNotPresent", "command": WORKLOAD_COMMAND })
}

pub fn provider_name(sc: &str) -> String {
    provider_pod_name(sc)
}

/// The pod that runs an SC's workload (named like the SC) and is labelled as its consumer; the
/// label keeps a plain pod of the same name from counting.
pub fn is_consumer_of(pod: &Pod, sc: &str) -> bool {
    let labels = pod.metadata.labels.as_ref();
    let label = |key: &str| labels.and_then(|labels| labels.get(key)).map(String::as_str);
    label(LABEL_ROLE) == Some(ROLE_CONSUMER) && label(LABEL_INSTANCE) == Some(sc)
}

pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|status| status.conditions.as_ref())
        .is_some_and(|conditions| conditions.iter().any(|condition| condition.type_ == "Ready" && condition.status == "True"))
}

pub fn is_scheduled(pod: &Pod) -> bool {
    pod.spec.as_ref().and_then(|spec| spec.node_name.as_ref()).is_some()
}

/// Whether kubelet reports every container of the pod as running.
pub fn containers_running(pod: &Pod) -> bool {
    let statuses = pod.status.as_ref().and_then(|status| status.container_statuses.as_ref());
    statuses.is_some_and(|statuses| {
        !statuses.is_empty() && statuses.iter().all(|status| status.state.as_ref().is_some_and(|state| state.running.is_some()))
    })
}

/// The runtime's ID of a pod's container (`containerd://<id>` without the scheme).
pub fn container_id(pod: &Pod, container: &str) -> Option<String> {
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    let id = statuses.iter().find(|status| status.name == container)?.container_id.as_ref()?;
    Some(id.split_once("://").map_or(id.as_str(), |(_, id)| id).to_owned())
}

/// Whether a pod has failed for good (a measurement waiting for it would only time out).
pub fn has_failed(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    if status.phase.as_deref() == Some("Failed") {
        return Some(format!("pod failed: {}", status.message.clone().unwrap_or_default()));
    }
    let waiting = status.container_statuses.as_ref()?.iter().find_map(|status| status.state.as_ref()?.waiting.as_ref())?;
    let reason = waiting.reason.as_deref()?;
    matches!(reason, "ErrImageNeverPull" | "ImagePullBackOff" | "ErrImagePull" | "CreateContainerConfigError" | "InvalidImageName")
        .then(|| format!("container waiting: {reason}: {}", waiting.message.clone().unwrap_or_default()))
}

pub fn sc_phase(sc: &StoppableContainer) -> Option<Phase> {
    sc.status.as_ref().and_then(|status| status.phase)
}

/// The SC's consumer pod is Ready: what a user waits for after `kubectl sc start`.
pub fn sc_workload_ready(pods: &Objects<Pod>, sc: &str) -> bool {
    pods.get(sc).is_some_and(|pod| is_consumer_of(pod, sc) && is_ready(pod))
}

/// Both of the SC's pods are gone: the end of a deletion.
pub fn sc_pods_gone(pods: &Objects<Pod>, sc: &str) -> bool {
    !pods.contains_key(sc) && !pods.contains_key(&provider_name(sc))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateRunning, ContainerStateWaiting, ContainerStatus, PodCondition, PodStatus,
    };
    use std::collections::{BTreeMap, HashMap};
    use std::sync::Arc;

    use super::*;

    fn consumer(name: &str, ready: &str) -> Pod {
        let mut pod = plain_pod(name, "img").expect("a valid pod");
        pod.metadata.labels = Some(BTreeMap::from([(LABEL_ROLE.into(), ROLE_CONSUMER.into()), (LABEL_INSTANCE.into(), name.into())]));
        pod.status = Some(PodStatus {
            conditions: Some(vec![PodCondition { type_: "Ready".into(), status: ready.into(), ..PodCondition::default() }]),
            ..PodStatus::default()
        });
        pod
    }

    fn with_container(state: ContainerState) -> Pod {
        let mut pod = plain_pod("p", "img").expect("a valid pod");
        pod.status = Some(PodStatus {
            container_statuses: Some(vec![ContainerStatus {
                name: WORKLOAD_CONTAINER.into(),
                container_id: Some("containerd://abc123".into()),
                state: Some(state),
                ..ContainerStatus::default()
            }]),
            ..PodStatus::default()
        });
        pod
    }

    #[test]
    fn both_sides_run_the_same_image_and_command() {
        let sc = stoppable_container("dev", "sc-test/debian:bookworm", false).expect("a valid StoppableContainer");
        let pod = plain_pod("dev-plain", "sc-test/debian:bookworm").expect("a valid pod");
        let sc_container = &sc.spec.template.spec.as_ref().expect("the PodSpec form").containers[0];
        let pod_container = &pod.spec.as_ref().expect("a spec").containers[0];
        assert_eq!(sc_container, pod_container);
        assert_eq!(pod_container.command.as_deref(), Some(WORKLOAD_COMMAND.map(String::from).as_slice()));
        assert!(!sc.spec.running);
        for labels in [&sc.metadata.labels, &pod.metadata.labels] {
            assert_eq!(labels.as_ref().and_then(|labels| labels.get(BENCH_LABEL)).map(String::as_str), Some("true"));
        }
    }

    #[test]
    fn workload_ready_needs_the_consumer_label_and_the_ready_condition() {
        let pods = |pod: Pod| HashMap::from([(pod.metadata.name.clone().expect("named"), Arc::new(pod))]);
        assert!(sc_workload_ready(&pods(consumer("dev", "True")), "dev"));
        assert!(!sc_workload_ready(&pods(consumer("dev", "False")), "dev"));
        assert!(!sc_workload_ready(&pods(plain_pod("dev", "img").expect("a valid pod")), "dev"));
        assert!(!sc_pods_gone(&pods(consumer("dev", "True")), "dev"));
        assert!(sc_pods_gone(&pods(consumer("other", "True")), "dev"));
        let provider = pods(plain_pod(&provider_name("dev"), "img").expect("a valid pod"));
        assert!(!sc_pods_gone(&provider, "dev"), "a deletion waits for the provider too");
    }

    #[test]
    fn container_ids_lose_their_runtime_scheme() {
        let pod = with_container(ContainerState { running: Some(ContainerStateRunning::default()), ..ContainerState::default() });
        assert_eq!(container_id(&pod, WORKLOAD_CONTAINER).as_deref(), Some("abc123"));
        assert_eq!(container_id(&pod, "other"), None);
        assert!(containers_running(&pod));
        assert_eq!(has_failed(&pod), None);
    }

    #[test]
    fn a_pod_that_cannot_start_is_reported_with_the_reason() {
        let waiting = ContainerStateWaiting { reason: Some("ErrImageNeverPull".into()), message: Some("image not present".into()) };
        let pod = with_container(ContainerState { waiting: Some(waiting), ..ContainerState::default() });
        assert_eq!(has_failed(&pod).as_deref(), Some("container waiting: ErrImageNeverPull: image not present"));
        assert!(!containers_running(&pod));
        let creating = ContainerStateWaiting { reason: Some("ContainerCreating".into()), message: None };
        assert_eq!(has_failed(&with_container(ContainerState { waiting: Some(creating), ..ContainerState::default() })), None);
    }
}
