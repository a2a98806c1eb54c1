use crate::status::fixtures::*;
use crate::status::*;

#[test]
fn the_image_config_resolves_the_command_the_workload_runs() {
    let nginx = summary(&["/docker-entrypoint.sh"], &["nginx", "-g", "daemon off;"], "");
    let resolved = check(Some(&nginx), &container(None, None));
    let ImageCheck::Known { status, outcome } = &resolved else { panic!("known: {resolved:?}") };
    assert_eq!(
        status.command.as_deref(),
        Some(&["/docker-entrypoint.sh".to_owned(), "nginx".into(), "-g".into(), "daemon off;".into()][..])
    );
    assert_eq!(
        (status.image_ref.as_str(), status.working_dir.as_deref(), status.user.as_deref()),
        (nginx.image_ref.as_str(), Some("/srv"), None)
    );
    assert_eq!(
        outcome,
        &ImageOutcome::Runs {
            summary:
                r#"the workload runs ["/docker-entrypoint.sh", "nginx", "-g", "daemon off;"] as root (the image sets no USER), in "/srv""#
                    .into()
        }
    );
    let args_only = check(Some(&nginx), &container(None, Some(&["nginx-debug"])));
    assert_eq!(args_only.status().and_then(|status| status.command), Some(vec!["/docker-entrypoint.sh".to_owned(), "nginx-debug".into()]));
    let jovyan = summary(&[], &["start-notebook.sh"], "jovyan");
    let mut own_dir = container(Some(&["sleep"]), Some(&["infinity"]));
    own_dir.working_dir = Some("/work".into());
    let ImageCheck::Known { outcome: ImageOutcome::Runs { summary }, .. } = check(Some(&jovyan), &own_dir) else { panic!("runs") };
    assert_eq!(summary, r#"the workload runs ["sleep", "infinity"] as the image's user "jovyan", in "/work""#);
    let as_uid = non_root(container(None, None), Some(1000));
    let ImageCheck::Known { outcome: ImageOutcome::Runs { summary }, .. } = check(Some(&jovyan), &as_uid) else { panic!("runs") };
    assert_eq!(summary, r#"the workload runs ["start-notebook.sh"] as uid 1000 (runAsUser), in "/srv""#);

    let status = sc_status(
        &Observed { image: check(Some(&nginx), &container(None, None)), ..observed(true, Found::Owned(&ready_pod("sc")), Found::Absent) },
        None,
        None,
        now(),
    );
    let image_config = find(&status, condition::IMAGE_CONFIG);
    assert_eq!((image_config.status.as_str(), image_config.reason.as_str()), ("True", "Resolved"));
    assert_eq!(status.image.and_then(|image| image.command).map(|argv| argv.len()), Some(4));
    assert_eq!(status.phase, Some(Phase::Running));
}

#[test]
fn an_image_with_no_command_and_a_template_without_one_cannot_run() {
    let scratch = summary(&[], &[], "");
    let (reason, message) = problem_of(&check(Some(&scratch), &container(None, None)));
    assert_eq!(reason, "NoCommand");
    assert_eq!(
        message,
        "image \"registry.test/app@sha256:1111\" cannot run as templated: no command specified: the image defines neither ENTRYPOINT nor CMD and the container sets no `command`; set `command` (and `args`) in the pod template"
    );
    assert_eq!(check(Some(&scratch), &container(Some(&["/bin/app"]), None)).problem(), None, "the template's command is enough");
    let (reason, _) = problem_of(&check(Some(&summary(&[""], &[], "")), &container(None, None)));
    assert_eq!(reason, "NoCommand", "an empty ENTRYPOINT is none");
}

#[test]
fn run_as_non_root_refuses_a_root_or_unverifiable_image_user_in_kubelets_words() {
    let cases = [
        ("", None, "container has runAsNonRoot and image will run as root (pod: \"sc_team-a\", container: main)"),
        ("0:0", None, "container has runAsNonRoot and image will run as root (pod: \"sc_team-a\", container: main)"),
        (
            "jovyan",
            None,
            "container has runAsNonRoot and image has non-numeric user (jovyan), cannot verify user is non-root (pod: \"sc_team-a\", container: main)",
        ),
        ("1000", Some(0), "container's runAsUser breaks non-root policy (pod: \"sc_team-a\", container: main)"),
    ];
    for (user, run_as_user, kubelet) in cases {
        let image = summary(&["/init"], &[], user);
        let (reason, message) = problem_of(&check(Some(&image), &non_root(container(None, None), run_as_user)));
        assert_eq!(reason, "RunAsNonRoot", "{user:?}");
        assert_eq!(
            message,
            format!(
                "image \"registry.test/app@sha256:1111\" cannot run as templated: {kubelet}; set `runAsUser` to a non-zero uid in the container's or the pod's securityContext, or use an image whose USER is a non-zero numeric uid"
            )
        );
    }
    // The pod's securityContext counts when the container sets nothing.
    let image = summary(&["/init"], &[], "");
    let pod_security = PodSecurityContext { run_as_non_root: Some(true), ..PodSecurityContext::default() };
    let plain = container(None, None);
    let from_pod =
        check_image(Some(&image), Some(WorkloadProcess { container: &plain, pod_security: Some(&pod_security), pod: "sc_team-a" }));
    assert_eq!(problem_of(&from_pod).0, "RunAsNonRoot");
    assert_eq!(check(Some(&summary(&["/init"], &[], "1000:100")), &non_root(container(None, None), None)).problem(), None);
    assert_eq!(check(Some(&image), &non_root(container(None, None), Some(1000))).problem(), None);
}

#[test]
fn a_config_the_runtime_did_not_give_blocks_only_what_needs_it() {
    let missing = unavailable();
    let (reason, message) = problem_of(&check(Some(&missing), &container(None, None)));
    assert_eq!(reason, "ConfigUnavailable");
    assert_eq!(
        message,
        "image \"registry.test/app@sha256:1111\" cannot run as templated: the container runtime gave no config for the image, so its ENTRYPOINT and CMD is unknown; set `command` in the pod template (the runtime said: the runtime does not answer ImageStatus with verbose info)"
    );
    assert_eq!(problem_of(&check(Some(&missing), &container(None, Some(&["-v"])))).0, "ConfigUnavailable");
    let (reason, message) = problem_of(&check(Some(&missing), &non_root(container(Some(&["app"]), None), None)));
    assert_eq!(reason, "ConfigUnavailable");
    assert!(
        message.contains("its USER is unknown and runAsNonRoot cannot be verified") && message.contains("set `runAsUser`"),
        "{message}"
    );

    // Not needed: said in the condition only.
    let with_command = check(Some(&missing), &container(Some(&["sleep", "infinity"]), None));
    assert_eq!(with_command.problem(), None);
    let consumer = ready_pod("sc");
    let status = sc_status(&Observed { image: with_command, ..observed(true, Found::Owned(&consumer), Found::Absent) }, None, None, now());
    assert_eq!(status.phase, Some(Phase::Running));
    let image_config = find(&status, condition::IMAGE_CONFIG);
    assert_eq!((image_config.status.as_str(), image_config.reason.as_str()), ("True", "TemplateCommand"));
    assert_eq!(
        image_config.message,
        "the container runtime gave no config for image \"registry.test/app@sha256:1111\" (the runtime does not answer ImageStatus with verbose info); the template's command runs as written, and the image's ENV, USER and WORKDIR are unknown"
    );
    let image = status.image.expect("status.image");
    assert_eq!((image.unavailable.is_some(), image.command), (true, Some(vec!["sleep".to_owned(), "infinity".into()])));
}

#[test]
fn an_image_that_cannot_run_fails_the_start_says_what_to_set_and_is_warned_about_once() {
    let blocked = check(Some(&summary(&[], &[], "")), &container(None, None));
    let crashing = waiting("sc", "main", false, "CrashLoopBackOff", "back-off 10s");
    let provider = ready_pod("sc-provider");
    let before = sc_status(&observed(true, Found::Owned(&crashing), Found::Owned(&provider)), None, None, now());
    let facts = Observed { image: blocked.clone(), ..observed(true, Found::Owned(&crashing), Found::Owned(&provider)) };
    let status = sc_status(&facts, None, Some(&before), now());
    assert_eq!(status.phase, Some(Phase::Failed));
    let message = status.message.clone().unwrap_or_default();
    assert!(message.starts_with("image \"registry.test/app@sha256:1111\" cannot run as templated: no command specified"), "{message}");
    assert!(
        message.ends_with("set `command` (and `args`) in the pod template. The consumer pod is not started until the template changes; the provider pod and the root filesystem are kept"),
        "{message}"
    );
    let image_config = find(&status, condition::IMAGE_CONFIG);
    assert_eq!((image_config.status.as_str(), image_config.reason.as_str()), ("False", "NoCommand"));
    assert_eq!(notice_reasons(&transition_notices(Some(&before), &status)), [(true, "NoCommand")]);

    // The consumer pod is deleted; with none, the start stays failed, and nothing is said again.
    let gone = sc_status(
        &Observed { image: blocked.clone(), ..observed(true, Found::Absent, Found::Owned(&provider)) },
        None,
        Some(&status),
        now(),
    );
    assert_eq!((gone.phase, gone.message.clone()), (status.phase, status.message.clone()));
    assert_eq!(transition_notices(Some(&status), &gone), []);
    assert_eq!(blocked.blocking(None).map(|problem| problem.reason), Some("NoCommand"));
    assert_eq!(blocked.blocking(Some(&crashing)).map(|problem| problem.reason), Some("NoCommand"));
    // A ready workload is never stopped by the operator's reading of its image.
    assert_eq!(blocked.blocking(Some(&ready_pod("sc"))), None);
    // Stopped: the problem stays in the condition, the phase is the stop's.
    let stopped =
        sc_status(&Observed { image: blocked, ..observed(false, Found::Absent, Found::Owned(&provider)) }, None, Some(&gone), now());
    assert_eq!(stopped.phase, Some(Phase::Stopped));
    assert_eq!(find(&stopped, condition::IMAGE_CONFIG).reason, "NoCommand");
}

#[test]
fn an_unreported_image_is_unknown_and_not_guessed() {
    let status = sc_status(&observed(true, Found::Owned(&creating_consumer()), Found::Absent), None, None, now());
    let image_config = find(&status, condition::IMAGE_CONFIG);
    assert_eq!((image_config.status.as_str(), image_config.reason.as_str()), ("Unknown", "NotReported"));
    assert_eq!(status.image, None);
    assert_eq!(check_image(None, None), ImageCheck::NotReported);
    let not_evaluated = check_image(Some(&summary(&[], &[], "")), None);
    assert_eq!(not_evaluated.problem(), None, "an invalid spec is SpecValid's to report");
    assert_eq!(not_evaluated.status().map(|image| image.command), Some(None));
}

#[test]
fn the_status_image_round_trips_to_the_summary_it_was_made_from() {
    for reported in [summary(&["/init"], &["serve"], "1000:100"), summary(&[], &[], ""), unavailable()] {
        assert_eq!(image_summary(&image_status(&reported)), reported);
    }
}
