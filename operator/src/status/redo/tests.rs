use k8s_openapi::api::core::v1::{ContainerState, ContainerStatus, PodStatus};

use crate::status::fixtures::*;
use crate::status::*;

#[test]
fn a_start_stuck_on_an_image_is_made_again_once_the_template_changed() {
    let consumer = creating_consumer();
    let stuck_provider = waiting("sc-provider", "rootfs", false, "ErrImageNeverPull", NEVER_PULL);
    let redo = start_to_redo(Found::Owned(&consumer), Found::Owned(&stuck_provider), true).expect("redone");
    assert_eq!((redo.role, redo.reason.as_str(), redo.replace_provider), ("provider", "ErrImageNeverPull", true));
    assert_eq!(
        redo.why(),
        format!(
            "the start never got going (the provider pod is in ErrImageNeverPull: container \"rootfs\": {NEVER_PULL}) and the template changed since: the start is made again from the new template"
        )
    );
    assert_eq!(start_to_redo(Found::Owned(&consumer), Found::Owned(&stuck_provider), false), None, "kubelet retries by itself");
    // A provider container that was created once had a root filesystem: it goes only with
    // the usual replacement, once the consumer pod is gone.
    let restarted = with_container_id(stuck_provider.clone(), "containerd://abc");
    assert_eq!(start_to_redo(Found::Owned(&consumer), Found::Owned(&restarted), true).map(|redo| redo.replace_provider), Some(false));
    // The consumer pod stuck on its own images or config.
    let stuck_consumer = waiting("sc", "sidecar", false, "ErrImagePull", "not found");
    let redo = start_to_redo(Found::Owned(&stuck_consumer), Found::Owned(&ready_pod("sc-provider")), true).expect("redone");
    assert_eq!((redo.role, redo.replace_provider), ("consumer", false));

    // What ran is not redone: RestartRequired says a restart is needed.
    let crash_looping = waiting("sc", "main", false, "CrashLoopBackOff", "back-off");
    assert_eq!(start_to_redo(Found::Owned(&crash_looping), Found::Owned(&ready_pod("sc-provider")), true), None);
    let provider_crashing = waiting("sc-provider", "rootfs", false, "CrashLoopBackOff", "back-off");
    assert_eq!(start_to_redo(Found::Owned(&consumer), Found::Owned(&provider_crashing), true), None);
    let running = pod(
        "sc",
        Some("n1"),
        PodStatus {
            container_statuses: Some(vec![ContainerStatus {
                name: "main".into(),
                state: Some(ContainerState {
                    running: Some(k8s_openapi::api::core::v1::ContainerStateRunning::default()),
                    ..ContainerState::default()
                }),
                ..ContainerStatus::default()
            }]),
            ..PodStatus::default()
        },
    );
    assert_eq!(start_to_redo(Found::Owned(&running), Found::Owned(&stuck_provider), true), None, "the workload runs");
    let mut leaving = creating_consumer();
    leaving.metadata.deletion_timestamp = Some(now());
    assert_eq!(start_to_redo(Found::Owned(&leaving), Found::Owned(&stuck_provider), true), None, "already going");
    assert_eq!(start_to_redo(Found::Absent, Found::Owned(&stuck_provider), true), None, "a start replaces a stale provider itself");
}
