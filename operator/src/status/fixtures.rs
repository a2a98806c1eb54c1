//! Pods, statuses and image configs the status tests share.

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateWaiting, ContainerStatus, Pod, PodCondition, PodSpec, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use crate::status::*;

pub fn pod(name: &str, node: Option<&str>, status: PodStatus) -> Pod {
    let mut pod =
        Pod { spec: Some(PodSpec { node_name: node.map(str::to_owned), ..PodSpec::default() }), status: Some(status), ..Pod::default() };
    pod.metadata.name = Some(name.to_owned());
    pod
}

pub fn condition(type_: &str, status: &str, reason: Option<&str>, message: Option<&str>) -> PodCondition {
    PodCondition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.map(str::to_owned),
        message: message.map(str::to_owned),
        ..PodCondition::default()
    }
}

pub fn ready_pod(name: &str) -> Pod {
    pod(
        name,
        Some("n1"),
        PodStatus { phase: Some("Running".into()), conditions: Some(vec![condition("Ready", "True", None, None)]), ..PodStatus::default() },
    )
}

pub fn observed<'a>(running: bool, consumer: Found<'a>, provider: Found<'a>) -> Observed<'a> {
    Observed {
        running,
        generation: Some(3),
        spec_problems: None,
        instance_exists: true,
        foreign_instance: None,
        consumer,
        provider,
        data_node: Some("n1".into()),
        data_node_exists: true,
        restart_required: false,
        ignored_host_path_prefix: None,
        provider_loss: None,
        image: ImageCheck::NotReported,
        on_claim: false,
        claim: None,
    }
}

/// The record of an operator that created `consumer` and `provider`.
pub fn recorded(consumer: Option<&Pod>, provider: Option<&Pod>) -> RecordedPods {
    let uid = |pod: Option<&Pod>| pod.map(|pod| pod.metadata.uid.clone().unwrap_or_else(|| format!("uid-of-{}", pod_name(pod))));
    RecordedPods { consumer: uid(consumer), provider: uid(provider) }
}

pub fn now() -> Time {
    Time(Timestamp::UNIX_EPOCH)
}

pub fn find<'a>(status: &'a StoppableContainerStatus, type_: &str) -> &'a Condition {
    status.conditions.iter().find(|c| c.type_ == type_).expect("condition present")
}

pub fn running_consumer() -> Pod {
    ready_pod("sc")
}

pub fn with_phase(mut pod: Pod, phase: &str, reason: &str) -> Pod {
    pod.status = Some(PodStatus {
        phase: Some(phase.into()),
        reason: Some(reason.into()),
        message: Some("The node was low on resource: memory.".into()),
        ..PodStatus::default()
    });
    pod
}

/// A pod bound to n1 whose container `container` waits with `reason` (in its init containers
/// when `init`).
pub fn waiting(name: &str, container: &str, init: bool, reason: &str, message: &str) -> Pod {
    let statuses = Some(vec![ContainerStatus {
        name: container.into(),
        state: Some(ContainerState {
            waiting: Some(ContainerStateWaiting { reason: Some(reason.into()), message: Some(message.into()) }),
            ..ContainerState::default()
        }),
        ..ContainerStatus::default()
    }]);
    let status = if init {
        PodStatus { phase: Some("Pending".into()), init_container_statuses: statuses, ..PodStatus::default() }
    } else {
        PodStatus { phase: Some("Pending".into()), container_statuses: statuses, ..PodStatus::default() }
    };
    pod(name, Some("n1"), status)
}

pub fn creating_consumer() -> Pod {
    waiting("sc", "main", false, "ContainerCreating", "")
}

pub const NEVER_PULL: &str = "Container image \"registry.test/missing:1\" is not present with pull policy of Never";

pub fn notice_reasons(notices: &[Notice]) -> Vec<(bool, &str)> {
    notices.iter().map(|notice| (notice.warning, notice.reason.as_str())).collect()
}

pub fn summary(entrypoint: &[&str], cmd: &[&str], user: &str) -> ImageSummary {
    let words = |list: &[&str]| list.iter().map(|word| (*word).to_owned()).collect();
    ImageSummary {
        image_ref: "registry.test/app@sha256:1111".into(),
        entrypoint: words(entrypoint),
        cmd: words(cmd),
        user: user.into(),
        working_dir: "/srv".into(),
        unavailable: None,
    }
}

pub fn unavailable() -> ImageSummary {
    ImageSummary {
        image_ref: "registry.test/app@sha256:1111".into(),
        unavailable: Some("the runtime does not answer ImageStatus with verbose info".into()),
        ..ImageSummary::default()
    }
}

pub fn container(command: Option<&[&str]>, args: Option<&[&str]>) -> Container {
    let words = |list: &[&str]| list.iter().map(|word| (*word).to_owned()).collect();
    Container { name: "main".into(), command: command.map(words), args: args.map(words), ..Container::default() }
}

pub fn non_root(mut container: Container, run_as_user: Option<i64>) -> Container {
    container.security_context =
        Some(k8s_openapi::api::core::v1::SecurityContext { run_as_non_root: Some(true), run_as_user, ..Default::default() });
    container
}

pub fn check(summary: Option<&ImageSummary>, container: &Container) -> ImageCheck {
    check_image(summary, Some(WorkloadProcess { container, pod_security: None, pod: "sc_team-a" }))
}

pub fn problem_of(check: &ImageCheck) -> (&'static str, String) {
    let problem = check.problem().unwrap_or_else(|| panic!("a problem: {check:?}"));
    (problem.reason, problem.message.clone())
}

pub fn with_container_id(mut pod: Pod, id: &str) -> Pod {
    if let Some(statuses) = pod.status.as_mut().and_then(|status| status.container_statuses.as_mut()) {
        statuses[0].container_id = Some(id.into());
    }
    pod
}
