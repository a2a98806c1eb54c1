use crate::status::fixtures::*;
use crate::status::*;

#[test]
fn instance_phase_follows_the_pods() {
    let consumer = ready_pod("sc");
    let sc = sc_status(&observed(true, Found::Owned(&consumer), Found::Absent), None, None, now());
    let instance = instance_status(&sc, Some(&consumer), None, &recorded(Some(&consumer), None), Some(1), true);
    assert_eq!(instance.phase, Some(InstancePhase::Running));
    assert_eq!(instance.consumer_pod_name.as_deref(), Some("sc"));
    let stopping = sc_status(&observed(false, Found::Owned(&consumer), Found::Absent), None, None, now());
    assert_eq!(
        instance_status(&stopping, Some(&consumer), None, &recorded(Some(&consumer), None), Some(1), false).phase,
        Some(InstancePhase::Stopping)
    );
}

#[test]
fn the_instance_status_writes_the_recorded_uids_only() {
    let (consumer, provider) = (ready_pod("sc"), ready_pod("sc-provider"));
    let sc = sc_status(&observed(true, Found::Owned(&consumer), Found::Owned(&provider)), None, None, now());
    let record = RecordedPods { consumer: Some("c-uid".into()), provider: Some("p-uid".into()) };
    let instance = instance_status(&sc, Some(&consumer), Some(&provider), &record, Some(1), true);
    assert_eq!((instance.consumer_pod_uid.as_deref(), instance.provider_pod_uid.as_deref()), (Some("c-uid"), Some("p-uid")));
    assert_eq!((instance.consumer_pod_name.as_deref(), instance.provider_pod_name.as_deref()), (Some("sc"), Some("sc-provider")));
    let cleared = instance_status(&sc, None, None, &RecordedPods::default(), Some(1), true);
    assert_eq!((cleared.consumer_pod_uid, cleared.provider_pod_uid, cleared.consumer_pod_name), (None, None, None));
}
