use k8s_openapi::api::core::v1::PodStatus;

use crate::status::fixtures::*;
use crate::status::*;

#[test]
fn a_stuck_pod_is_warned_about_once_per_transition_into_its_reason() {
    let consumer = creating_consumer();
    let provider = pod("sc-provider", Some("n1"), PodStatus::default());
    let starting = sc_status(&observed(true, Found::Owned(&consumer), Found::Owned(&provider)), None, None, now());
    let stuck_provider = waiting("sc-provider", "rootfs", false, "ErrImageNeverPull", NEVER_PULL);
    let stuck = sc_status(&observed(true, Found::Owned(&consumer), Found::Owned(&stuck_provider)), None, Some(&starting), now());

    let notices = transition_notices(Some(&starting), &stuck);
    assert_eq!(
        notices,
        [Notice {
            warning: true,
            reason: "ErrImageNeverPull".into(),
            note: format!("the provider pod is in ErrImageNeverPull: container \"rootfs\": {NEVER_PULL}"),
        }],
        "one Warning, in kubelet's words; no second, generic one for the phase"
    );
    // The next reconcile, or an operator restarted since: the status remembers it was said.
    let again = sc_status(&observed(true, Found::Owned(&consumer), Found::Owned(&stuck_provider)), None, Some(&stuck), now());
    assert_eq!(transition_notices(Some(&stuck), &again), []);

    // Kubelet alternates ErrImagePull and ImagePullBackOff while a pull keeps failing: one problem.
    let pull_failed = waiting("sc-provider", "rootfs", false, "ErrImagePull", "pull access denied");
    let pull = sc_status(&observed(true, Found::Owned(&consumer), Found::Owned(&pull_failed)), None, Some(&starting), now());
    assert_eq!(notice_reasons(&transition_notices(Some(&starting), &pull)), [(true, "ErrImagePull")]);
    let backing_off = waiting("sc-provider", "rootfs", false, "ImagePullBackOff", "Back-off pulling image");
    let backoff = sc_status(&observed(true, Found::Owned(&consumer), Found::Owned(&backing_off)), None, Some(&pull), now());
    assert_eq!(find(&backoff, condition::PROVIDER_READY).reason, "ImagePullBackOff", "the condition shows kubelet's current reason");
    assert_eq!(transition_notices(Some(&pull), &backoff), []);
    let pull_again = sc_status(&observed(true, Found::Owned(&consumer), Found::Owned(&pull_failed)), None, Some(&backoff), now());
    assert_eq!(transition_notices(Some(&backoff), &pull_again), []);

    // Another reason is another transition.
    let config_error = waiting("sc-provider", "rootfs", false, "CreateContainerError", "no such file");
    let other = sc_status(&observed(true, Found::Owned(&consumer), Found::Owned(&config_error)), None, Some(&pull_again), now());
    assert_eq!(notice_reasons(&transition_notices(Some(&pull_again), &other)), [(true, "CreateContainerError")]);

    // Fixed: the phases are reported as before, and getting stuck again is a new transition.
    let ready_provider = ready_pod("sc-provider");
    let mounting = sc_status(&observed(true, Found::Owned(&consumer), Found::Owned(&ready_provider)), None, Some(&other), now());
    assert_eq!(notice_reasons(&transition_notices(Some(&other), &mounting)), [(false, "ProviderReady")]);
    let relapse = sc_status(&observed(true, Found::Owned(&consumer), Found::Owned(&config_error)), None, Some(&mounting), now());
    assert_eq!(notice_reasons(&transition_notices(Some(&mounting), &relapse)), [(true, "CreateContainerError")]);
}

#[test]
fn a_crash_loop_is_warned_about_when_it_starts_and_after_each_recovery() {
    let running = sc_status(&observed(true, Found::Owned(&ready_pod("sc")), Found::Absent), None, None, now());
    let crashing = waiting("sc", "main", false, "CrashLoopBackOff", "back-off 20s restarting failed container=main");
    let looping = sc_status(&observed(true, Found::Owned(&crashing), Found::Absent), None, Some(&running), now());
    let notices = transition_notices(Some(&running), &looping);
    assert_eq!(notice_reasons(&notices), [(true, "CrashLoopBackOff")]);
    assert_eq!(
        notices[0].note,
        "the consumer pod is in CrashLoopBackOff: container \"main\": back-off 20s restarting failed container=main"
    );
    let still = sc_status(&observed(true, Found::Owned(&crashing), Found::Absent), None, Some(&looping), now());
    assert_eq!(transition_notices(Some(&looping), &still), []);
}

#[test]
fn the_other_transitions_are_reported_as_before() {
    let consumer = ready_pod("sc");
    let mut facts = observed(true, Found::Owned(&consumer), Found::Absent);
    facts.spec_problems = Some("invalid spec: x".into());
    let first = sc_status(&facts, None, None, now());
    assert_eq!(notice_reasons(&transition_notices(None, &first)), [(false, "Running"), (true, "InvalidSpec")]);
    assert_eq!(transition_notices(Some(&first), &first), []);
    facts.spec_problems = None;
    facts.restart_required = true;
    let changed = sc_status(&facts, None, Some(&first), now());
    assert_eq!(notice_reasons(&transition_notices(Some(&first), &changed)), [(true, "TemplateChanged")]);
    let failed = sc_status(&observed(true, Found::Absent, Found::Foreign(&ready_pod("sc-provider"))), None, Some(&changed), now());
    assert_eq!(notice_reasons(&transition_notices(Some(&changed), &failed)), [(true, "Failed"), (true, "PodNotOwned")]);
}
