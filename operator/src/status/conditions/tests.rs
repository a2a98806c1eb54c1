use k8s_openapi::api::core::v1::{ContainerState, ContainerStateWaiting, ContainerStatus, PodSpec, PodStatus};
use k8s_openapi::jiff::Timestamp;

use crate::status::fixtures::*;
use crate::status::*;

#[test]
fn ready_pods_make_running_and_ready_true() {
    let (consumer, provider) = (ready_pod("sc"), ready_pod("sc-provider"));
    let status = sc_status(&observed(true, Found::Owned(&consumer), Found::Owned(&provider)), Some("sc".into()), None, now());
    assert_eq!(status.phase, Some(Phase::Running));
    assert_eq!(find(&status, condition::READY).status, "True");
    assert_eq!(find(&status, condition::READY).reason, "Running");
    assert_eq!(find(&status, condition::ROOTFS_VOLUME).reason, "Mounted");
    assert_eq!(status.node_name.as_deref(), Some("n1"));
    assert_eq!(status.observed_generation, Some(3));
}

#[test]
fn crash_loop_and_unschedulable_reasons_reach_the_message() {
    let crashing = pod(
        "sc",
        Some("n1"),
        PodStatus {
            container_statuses: Some(vec![ContainerStatus {
                name: "main".into(),
                state: Some(ContainerState {
                    waiting: Some(ContainerStateWaiting { reason: Some("CrashLoopBackOff".into()), message: Some("back-off 40s".into()) }),
                    ..ContainerState::default()
                }),
                ..ContainerStatus::default()
            }]),
            ..PodStatus::default()
        },
    );
    let status = sc_status(&observed(true, Found::Owned(&crashing), Found::Absent), None, None, now());
    assert_eq!(status.phase, Some(Phase::Failed));
    assert!(status.message.as_deref().is_some_and(|m| m.contains("CrashLoopBackOff")), "{status:?}");

    let pending = pod(
        "sc",
        None,
        PodStatus {
            conditions: Some(vec![condition(
                "PodScheduled",
                "False",
                Some("Unschedulable"),
                Some("0/1 nodes are available: 1 Insufficient cpu."),
            )]),
            ..PodStatus::default()
        },
    );
    let status = sc_status(&observed(true, Found::Owned(&pending), Found::Absent), None, None, now());
    assert_eq!(status.phase, Some(Phase::Pending));
    let message = status.message.clone().unwrap_or_default();
    assert!(message.contains("Insufficient cpu") && message.contains("pinned to node \"n1\""), "{message}");
    assert_eq!(find(&status, condition::CONSUMER_READY).reason, "Unschedulable");
}

#[test]
fn foreign_pod_is_a_name_conflict() {
    let stranger = ready_pod("sc");
    let status = sc_status(&observed(true, Found::Foreign(&stranger), Found::Absent), None, None, now());
    assert_eq!(status.phase, Some(Phase::Failed));
    assert_eq!(find(&status, condition::NAME_CONFLICT).status, "True");
    assert_eq!(status.consumer_pod_name, None, "a stranger is not reported as our pod");
}

#[test]
fn foreign_instance_is_a_name_conflict_even_when_stopped() {
    let mut facts = observed(false, Found::Absent, Found::Absent);
    facts.instance_exists = false;
    facts.foreign_instance = Some("sc".into());
    let status = sc_status(&facts, Some("sc".into()), None, now());
    assert_eq!(status.phase, Some(Phase::Failed));
    let conflict = find(&status, condition::NAME_CONFLICT);
    assert_eq!((conflict.status.as_str(), conflict.reason.as_str()), ("True", "InstanceNotOwned"));
    assert_eq!(status.instance_name, None, "a foreign instance is not reported as ours");
}

#[test]
fn stopping_waits_for_pods_and_stopped_keeps_the_data_node() {
    let consumer = ready_pod("sc");
    // Stopped is published only once the consumer pod is gone: until then it is Stopping.
    let stopping = sc_status(&observed(false, Found::Owned(&consumer), Found::Absent), None, None, now());
    assert_eq!(stopping.phase, Some(Phase::Stopping));
    assert!(stopping.message.as_deref().is_some_and(|m| m.starts_with("stopping")));
    assert_eq!(find(&stopping, condition::READY).reason, "Stopping");
    let stopped = sc_status(&observed(false, Found::Absent, Found::Absent), None, None, now());
    assert_eq!(stopped.phase, Some(Phase::Stopped));
    assert_eq!(stopped.message.as_deref(), Some("stopped; the root filesystem is kept"));
    assert_eq!(stopped.data_node_name.as_deref(), Some("n1"));
}

#[test]
fn a_kept_provider_is_part_of_the_stopped_state_and_a_deleted_one_is_waited_for() {
    let (consumer, provider) = (ready_pod("sc"), ready_pod("sc-provider"));
    let stopping = sc_status(&observed(false, Found::Owned(&consumer), Found::Owned(&provider)), None, None, now());
    assert_eq!(stopping.phase, Some(Phase::Stopping));
    assert_eq!(
        stopping.message.as_deref(),
        Some("stopping: waiting for pods [\"sc\"] to terminate"),
        "only the consumer pod is waited for"
    );
    assert_eq!(
        instance_status(&stopping, Some(&consumer), Some(&provider), &recorded(Some(&consumer), Some(&provider)), Some(1), false).phase,
        Some(InstancePhase::Stopping)
    );

    let stopped = sc_status(&observed(false, Found::Absent, Found::Owned(&provider)), Some("sc".into()), None, now());
    assert_eq!(stopped.phase, Some(Phase::Stopped));
    assert_eq!(stopped.message.as_deref(), Some("stopped; the root filesystem is kept"));
    assert_eq!(stopped.provider_pod_name.as_deref(), Some("sc-provider"), "the kept provider is reported while it exists");
    assert_eq!(stopped.consumer_pod_name, None);
    assert_eq!(stopped.node_name, None, "no consumer pod runs");
    assert_eq!(find(&stopped, condition::READY).status, "False");
    assert_eq!(find(&stopped, condition::PROVIDER_READY).status, "True");
    let instance = instance_status(&stopped, None, Some(&provider), &recorded(None, Some(&provider)), Some(1), false);
    assert_eq!(instance.phase, Some(InstancePhase::Stopped));
    assert_eq!(instance.provider_pod_name.as_deref(), Some("sc-provider"));

    // The instance is being deleted: its provider goes, and that is waited for.
    let mut leaving = ready_pod("sc-provider");
    leaving.metadata.deletion_timestamp = Some(now());
    let stopping = sc_status(&observed(false, Found::Absent, Found::Owned(&leaving)), None, None, now());
    assert_eq!(stopping.phase, Some(Phase::Stopping));
    assert_eq!(stopping.message.as_deref(), Some("stopping: waiting for pods [\"sc-provider\"] to terminate"));
    assert_eq!(
        instance_status(&stopping, None, Some(&leaving), &recorded(None, Some(&leaving)), Some(1), false).phase,
        Some(InstancePhase::Stopping)
    );
}

#[test]
fn gone_data_node_fails_the_start_and_restart_required_is_reported() {
    let mut facts = observed(true, Found::Absent, Found::Absent);
    facts.data_node_exists = false;
    let status = sc_status(&facts, None, None, now());
    assert_eq!(status.phase, Some(Phase::Failed));
    assert_eq!(find(&status, condition::DATA_NODE).reason, "NodeGone");

    let consumer = ready_pod("sc");
    let mut facts = observed(true, Found::Owned(&consumer), Found::Absent);
    facts.restart_required = true;
    facts.ignored_host_path_prefix = Some("/etc".into());
    let status = sc_status(&facts, None, None, now());
    assert_eq!(find(&status, condition::RESTART_REQUIRED).status, "True");
    assert_eq!(find(&status, condition::HOST_PATH_PREFIX_IGNORED).status, "True");
}

#[test]
fn transition_time_is_kept_while_a_condition_holds() {
    let consumer = ready_pod("sc");
    let facts = observed(true, Found::Owned(&consumer), Found::Absent);
    let first = sc_status(&facts, None, None, now());
    let later = Time(Timestamp::from_second(1_000).expect("valid"));
    let second = sc_status(&facts, None, Some(&first), later);
    assert_eq!(find(&second, condition::READY).last_transition_time, now());
}

#[test]
fn a_pod_that_claims_to_be_ours_is_reported_as_being_replaced_not_as_ours() {
    let mut forged = ready_pod("sc");
    forged.metadata.uid = Some("forged-uid".into());
    let status = sc_status(&observed(true, Found::Unrecorded(&forged), Found::Absent), Some("sc".into()), None, now());
    assert_eq!(status.phase, Some(Phase::Pending));
    let message = status.message.clone().unwrap_or_default();
    assert!(message.starts_with("replacing the consumer pod: pod \"sc\" (uid forged-uid)"), "{message}");
    assert!(message.contains("was not created by the operator"), "{message}");
    assert_eq!(find(&status, condition::CONSUMER_READY).reason, "NotCreatedByOperator");
    assert_eq!(find(&status, condition::NAME_CONFLICT).status, "False", "it is replaced, not a conflict to resolve by hand");
    assert_eq!(status.consumer_pod_name, None, "never reported as ours");
    assert_eq!(status.node_name, None, "its node is not ours either");

    let consumer = ready_pod("sc");
    let mut forged_provider = ready_pod("sc-provider");
    forged_provider.spec = Some(PodSpec::default());
    let status = sc_status(&observed(true, Found::Owned(&consumer), Found::Unrecorded(&forged_provider)), None, None, now());
    assert_eq!(find(&status, condition::PROVIDER_READY).reason, "NotCreatedByOperator");
    assert_eq!(status.provider_pod_name, None);
    let creating = pod("sc", Some("n1"), PodStatus::default());
    let status = sc_status(&observed(true, Found::Owned(&creating), Found::Unrecorded(&forged_provider)), None, None, now());
    assert!(status.message.as_deref().is_some_and(|m| m.starts_with("replacing the provider pod: pod \"sc-provider\"")), "{status:?}");

    let stopping = sc_status(&observed(false, Found::Unrecorded(&forged), Found::Absent), None, None, now());
    assert_eq!(stopping.message.as_deref(), Some("stopping: waiting for pods [\"sc\"] to terminate"), "its deletion is waited for");
    assert_eq!(stopping.phase, Some(Phase::Stopping));
}
