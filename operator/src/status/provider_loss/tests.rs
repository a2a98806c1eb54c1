use k8s_openapi::api::core::v1::PodStatus;

use crate::status::fixtures::*;
use crate::status::*;

#[test]
fn a_provider_is_lost_only_while_its_workload_runs() {
    let consumer = running_consumer();
    let detect = |consumer: Found<'_>, provider: Found<'_>| detect_provider_loss(consumer, Some("p-uid"), provider, "sc-provider");
    assert_eq!(
        detect(Found::Owned(&consumer), Found::Absent),
        Some(ProviderLoss::Deleted { pod: "sc-provider".into(), uid: "p-uid".into() })
    );
    let stranger = ready_pod("sc-provider");
    assert!(
        matches!(detect(Found::Owned(&consumer), Found::Unrecorded(&stranger)), Some(ProviderLoss::Deleted { .. })),
        "a pod in its place is not it"
    );
    let evicted = with_phase(ready_pod("sc-provider"), "Failed", "Evicted");
    assert_eq!(
        detect(Found::Owned(&consumer), Found::Owned(&evicted)),
        Some(ProviderLoss::Terminated {
            pod: "sc-provider".into(),
            detail: "Failed: Evicted: The node was low on resource: memory.".into()
        })
    );
    let mut leaving = ready_pod("sc-provider");
    leaving.metadata.deletion_timestamp = Some(now());
    assert_eq!(detect(Found::Owned(&consumer), Found::Owned(&leaving)), Some(ProviderLoss::Terminating { pod: "sc-provider".into() }));
    assert_eq!(detect(Found::Owned(&consumer), Found::Owned(&ready_pod("sc-provider"))), None);

    // Never created, or never recorded: created, not lost.
    assert_eq!(detect_provider_loss(Found::Owned(&consumer), None, Found::Absent, "sc-provider"), None);
    // No running workload: nothing uses the lower layer.
    let unbound = pod("sc", None, PodStatus::default());
    let mut stopping = running_consumer();
    stopping.metadata.deletion_timestamp = Some(now());
    let finished = with_phase(running_consumer(), "Succeeded", "Completed");
    for consumer in [&unbound, &stopping, &finished] {
        assert_eq!(detect(Found::Owned(consumer), Found::Absent), None, "{:?}", consumer.status);
    }
    assert_eq!(detect(Found::Absent, Found::Absent), None);
    assert_eq!(detect(Found::Unrecorded(&consumer), Found::Absent), None, "a forged consumer pod is not ours to serve");
}

#[test]
fn provider_lost_is_reported_until_the_replacement_is_ready() {
    let consumer = running_consumer();
    let mut facts = observed(true, Found::Owned(&consumer), Found::Absent);
    facts.provider_loss = Some(ProviderLoss::Deleted { pod: "sc-provider".into(), uid: "p-uid".into() });
    let lost = sc_status(&facts, None, None, now());
    let condition = find(&lost, condition::PROVIDER_LOST);
    assert_eq!((condition.status.as_str(), condition.reason.as_str()), ("True", "ProviderDeleted"));
    assert!(condition.message.contains("\"sc-provider\" (uid p-uid) was deleted while the workload runs"), "{}", condition.message);
    assert!(condition.message.contains("a new provider pod is created at once"), "{}", condition.message);
    assert_eq!(lost.phase, Some(Phase::Running), "the workload itself runs on");
    assert!(lost.message.as_deref().is_some_and(|m| m.starts_with("running; provider pod \"sc-provider\"")), "{lost:?}");

    // The next reconcile: the replacement exists and starts; the loss is remembered.
    let starting = pod("sc-provider", Some("n1"), PodStatus::default());
    let replacing = sc_status(&observed(true, Found::Owned(&consumer), Found::Owned(&starting)), None, Some(&lost), now());
    assert_eq!(find(&replacing, condition::PROVIDER_LOST), condition, "unchanged while the replacement starts");
    // Ready: the image is in use again.
    let replacement = ready_pod("sc-provider");
    let recovered = sc_status(&observed(true, Found::Owned(&consumer), Found::Owned(&replacement)), None, Some(&replacing), now());
    let condition = find(&recovered, condition::PROVIDER_LOST);
    assert_eq!((condition.status.as_str(), condition.reason.as_str()), ("False", "ProviderInPlace"));
    assert_eq!(recovered.message.as_deref(), Some("running"));

    // A stop ends it too.
    let stopped = sc_status(&observed(false, Found::Absent, Found::Owned(&starting)), None, Some(&lost), now());
    assert_eq!(find(&stopped, condition::PROVIDER_LOST).reason, "NoWorkload");
}
