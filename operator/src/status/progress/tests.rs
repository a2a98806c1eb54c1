use crate::status::fixtures::*;
use crate::status::*;

#[test]
fn every_failing_reason_of_either_pod_reaches_the_phase_the_condition_and_the_message() {
    for reason in [
        "ErrImagePull",
        "ImagePullBackOff",
        "ErrImageNeverPull",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "CrashLoopBackOff",
    ] {
        let kubelet_says = format!("{reason} said by kubelet");
        let consumer = creating_consumer();
        let provider = waiting("sc-provider", "rootfs", false, reason, &kubelet_says);
        let status = sc_status(&observed(true, Found::Owned(&consumer), Found::Owned(&provider)), None, None, now());
        assert_eq!(status.phase, Some(Phase::Failed), "{reason}");
        assert_eq!(
            status.message.as_deref(),
            Some(format!("the provider pod is in {reason}: container \"rootfs\": {kubelet_says}").as_str())
        );
        let provider_ready = find(&status, condition::PROVIDER_READY);
        assert_eq!((provider_ready.status.as_str(), provider_ready.reason.as_str()), ("False", reason));
        assert_eq!(provider_ready.message, format!("container \"rootfs\": {kubelet_says}"));

        let stuck = waiting("sc", "main", false, reason, &kubelet_says);
        let status = sc_status(&observed(true, Found::Owned(&stuck), Found::Absent), None, None, now());
        assert_eq!(status.phase, Some(Phase::Failed), "{reason}");
        assert_eq!(
            status.message.as_deref(),
            Some(format!("the consumer pod is in {reason}: container \"main\": {kubelet_says}").as_str())
        );
        assert_eq!(find(&status, condition::CONSUMER_READY).reason, reason);
    }
}

#[test]
fn a_missing_image_under_pull_policy_never_fails_the_start_instead_of_leaving_it_starting() {
    let consumer = creating_consumer();
    let provider = waiting("sc-provider", "rootfs", false, "ErrImageNeverPull", NEVER_PULL);
    let status = sc_status(&observed(true, Found::Owned(&consumer), Found::Owned(&provider)), None, None, now());
    assert_eq!(status.phase, Some(Phase::Failed));
    assert_eq!(
        status.message.as_deref(),
        Some(format!("the provider pod is in ErrImageNeverPull: container \"rootfs\": {NEVER_PULL}").as_str())
    );
    // Passing states are still just starting.
    let pulling = waiting("sc-provider", "rootfs", false, "ContainerCreating", "");
    let status = sc_status(&observed(true, Found::Owned(&consumer), Found::Owned(&pulling)), None, None, now());
    assert_eq!(status.phase, Some(Phase::Pending));
    assert_eq!(status.message.as_deref(), Some("the provider pod is starting on the consumer pod's node"));
}

#[test]
fn an_init_containers_waiting_state_counts_too() {
    let consumer = creating_consumer();
    let provider = waiting("sc-provider", "install-sc-exec", true, "ImagePullBackOff", "Back-off pulling image \"wrapper:1\"");
    let status = sc_status(&observed(true, Found::Owned(&consumer), Found::Owned(&provider)), None, None, now());
    assert_eq!(status.phase, Some(Phase::Failed));
    assert_eq!(
        status.message.as_deref(),
        Some("the provider pod is in ImagePullBackOff: container \"install-sc-exec\": Back-off pulling image \"wrapper:1\"")
    );
    let sidecar_init = waiting("sc", "fetch-config", true, "CreateContainerConfigError", "secret \"db\" not found");
    let status = sc_status(&observed(true, Found::Owned(&sidecar_init), Found::Absent), None, None, now());
    assert_eq!(status.phase, Some(Phase::Failed));
    assert_eq!(find(&status, condition::CONSUMER_READY).reason, "CreateContainerConfigError");
    assert_eq!(find(&status, condition::CONSUMER_READY).message, "container \"fetch-config\": secret \"db\" not found");
}
