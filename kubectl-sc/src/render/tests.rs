use super::*;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use sc_api::{StoppableContainerSpec, StoppableContainerStatus};

fn now() -> Timestamp {
    "2024-05-01T12:00:00Z".parse().expect("valid timestamp")
}

fn seconds_ago(seconds: i64) -> Option<Timestamp> {
    Some(Timestamp::from_second(now().as_second() - seconds).expect("in range"))
}

fn view(name: &str, namespace: &str, running: bool, phase: Option<Phase>, node: Option<&str>, age_seconds: i64) -> ScView {
    ScView {
        name: name.into(),
        namespace: namespace.into(),
        running,
        phase,
        message: None,
        instance: None,
        node: node.map(str::to_owned),
        data_node: None,
        rootfs_size: None,
        rootfs_use: None,
        image: None,
        created: seconds_ago(age_seconds),
        conditions: vec![],
    }
}

#[test]
fn ages_use_the_largest_whole_unit() {
    let cases = [
        (0, "0s"),
        (59, "59s"),
        (60, "1m"),
        (3599, "59m"),
        (3600, "1h"),
        (86_399, "23h"),
        (86_400, "1d"),
        (90 * 86_400, "90d"),
        (-30, "0s"),
    ];
    for (seconds, expected) in cases {
        assert_eq!(format_age(seconds_ago(seconds), now()), expected, "{seconds}s");
    }
    assert_eq!(format_age(None, now()), "<unknown>");
}

fn sample_views() -> Vec<ScView> {
    vec![
        view("dev-box", "team-a", true, Some(Phase::Running), Some("node-1"), 3 * 86_400),
        view("builder-with-a-long-name", "team-b", false, Some(Phase::Stopped), None, 125),
        view("winding-down", "team-a", false, Some(Phase::Stopping), Some("node-1"), 30),
        view("fresh", "default", true, None, None, 4),
    ]
}

#[test]
fn table_snapshots() {
    insta::assert_snapshot!("table", render_table(&sample_views(), false, now()));
    insta::assert_snapshot!("table_all_namespaces", render_table(&sample_views(), true, now()));
    insta::assert_snapshot!("table_empty", render_table(&[], false, now()));
}

#[test]
fn status_snapshots() {
    let mut failed = view("dev-box", "team-a", true, Some(Phase::Failed), Some("node-1"), 7200);
    failed.message = Some("consumer pod failed: OutOfcpu; lower the cpu request or free the node".into());
    failed.instance = Some("dev-box".into());
    failed.data_node = Some("node-2".into());
    failed.rootfs_size = Some("20Gi".into());
    failed.rootfs_use = Some(RootfsStatus {
        size_bytes: Some(20 << 30),
        used_bytes: Some(2_576_980_378),
        available_bytes: Some((20 << 30) - 2_576_980_378),
        observed_time: seconds_ago(40).map(Time),
    });
    failed.conditions = vec![
        ConditionView { type_: "Ready".into(), status: "False".into(), reason: "Failed".into(), message: "consumer pod failed".into() },
        ConditionView { type_: "SpecValid".into(), status: "True".into(), reason: "".into(), message: "".into() },
    ];
    let events = vec![
        EventView {
            type_: "Normal".into(),
            reason: "Started".into(),
            last_seen: seconds_ago(600),
            count: 1,
            message: "consumer pod created".into(),
        },
        EventView {
            type_: "Warning".into(),
            reason: "ConsumerFailed".into(),
            last_seen: seconds_ago(30),
            count: 3,
            message: "OutOfcpu".into(),
        },
    ];
    insta::assert_snapshot!("status_failed", render_status(&failed, &events, now()));
    let fresh = view("fresh", "default", false, None, None, 5);
    insta::assert_snapshot!("status_fresh", render_status(&fresh, &[], now()));
    let mut serving = view("web", "team-a", true, Some(Phase::Running), Some("node-1"), 600);
    serving.image = Some(nginx_image());
    serving.conditions = vec![ConditionView {
        type_: "ImageConfig".into(),
        status: "True".into(),
        reason: "Resolved".into(),
        message: r#"the workload runs ["/docker-entrypoint.sh", "nginx", "-g", "daemon off;"] as root (the image sets no USER), in "/usr/share/nginx""#.into(),
    }];
    insta::assert_snapshot!("status_image", render_status(&serving, &[], now()));
}

#[test]
fn byte_counts_use_the_largest_binary_unit() {
    let cases = [
        (0, "0B"),
        (1023, "1023B"),
        (1024, "1Ki"),
        (1536, "1.5Ki"),
        (10 << 30, "10Gi"),
        (1_288_490_189, "1.2Gi"),
        ((1 << 30) - 1, "1Gi"),
        (u64::MAX, "16Ei"),
    ];
    for (bytes, expected) in cases {
        assert_eq!(format_bytes(bytes), expected, "{bytes}");
    }
}

#[test]
fn the_rootfs_line_shows_the_use_against_the_size_or_what_is_known() {
    let mut sized = view("dev", "team-a", true, Some(Phase::Running), Some("node-1"), 600);
    sized.rootfs_use = Some(RootfsStatus {
        size_bytes: Some(10 << 30),
        used_bytes: Some(1_288_490_189),
        available_bytes: Some((10 << 30) - 1_288_490_189),
        observed_time: seconds_ago(40).map(Time),
    });
    assert_eq!(rootfs_use_text(&sized, now()), "1.2Gi of 10Gi used (12%), observed 40s ago");
    let mut unlimited = sized.clone();
    unlimited.rootfs_use = Some(RootfsStatus { observed_time: seconds_ago(7200).map(Time), ..RootfsStatus::default() });
    assert_eq!(rootfs_use_text(&unlimited, now()), "no size limit (made before size limits), observed 2h ago");
    let mut unreported = sized.clone();
    unreported.rootfs_use = None;
    assert_eq!(rootfs_use_text(&unreported, now()), "no use reported yet");
    unreported.rootfs_size = Some("10Gi".into());
    assert_eq!(rootfs_use_text(&unreported, now()), "10Gi, no use reported yet");
    let mut full = sized;
    full.rootfs_use = Some(RootfsStatus { size_bytes: Some(1 << 30), used_bytes: Some(1 << 30), ..RootfsStatus::default() });
    assert_eq!(rootfs_use_text(&full, now()), "1Gi of 1Gi used (100%)");
}

#[test]
fn recent_events_keeps_the_newest_in_order() {
    let event = |reason: &str, age: i64| EventView {
        type_: "Normal".into(),
        reason: reason.into(),
        last_seen: seconds_ago(age),
        count: 1,
        message: String::new(),
    };
    let kept = recent_events(vec![event("b", 20), event("newest", 1), event("oldest", 300), event("a", 50)], 3);
    let reasons: Vec<&str> = kept.iter().map(|event| event.reason.as_str()).collect();
    assert_eq!(reasons, ["a", "b", "newest"]);
}

fn object() -> StoppableContainer {
    let mut object = StoppableContainer::new("dev-box", StoppableContainerSpec { running: true, ..Default::default() });
    object.metadata.namespace = Some("team-a".into());
    object.metadata.creation_timestamp = seconds_ago(60).map(Time);
    object.metadata.managed_fields = Some(vec![Default::default()]);
    object.status = Some(StoppableContainerStatus {
        phase: Some(Phase::Running),
        node_name: Some("node-1".into()),
        instance_name: Some("dev-box".into()),
        conditions: vec![Condition {
            type_: "Ready".into(),
            status: "True".into(),
            reason: "Running".into(),
            message: "".into(),
            last_transition_time: Time(now()),
            observed_generation: Some(1),
        }],
        ..Default::default()
    });
    object
}

#[test]
fn views_take_what_the_status_says() {
    let view = ScView::from_object(&object());
    assert_eq!((view.name.as_str(), view.namespace.as_str(), view.running), ("dev-box", "team-a", true));
    assert_eq!((view.phase_text(), view.node.as_deref()), ("Running", Some("node-1")));
    assert_eq!(view.conditions[0].reason, "Running");
    assert_eq!(view.rootfs_size, None);
    assert_eq!(view.rootfs_use, None);
    let mut measured = object();
    let figures = RootfsStatus { size_bytes: Some(10 << 30), used_bytes: Some(1 << 30), ..RootfsStatus::default() };
    measured.status.as_mut().expect("a status").rootfs = Some(figures.clone());
    assert_eq!(ScView::from_object(&measured).rootfs_use, Some(figures));
    assert_eq!(view.image, None);
    measured.status.as_mut().expect("a status").image = Some(nginx_image());
    assert_eq!(ScView::from_object(&measured).image, Some(nginx_image()));
    let mut sized = object();
    sized.spec.rootfs_size = Some(k8s_openapi::apimachinery::pkg::api::resource::Quantity("50Gi".into()));
    assert_eq!(ScView::from_object(&sized).rootfs_size.as_deref(), Some("50Gi"));
    let bare = ScView::from_object(&StoppableContainer::new("new", Default::default()));
    assert_eq!(bare.phase_text(), "Pending");
}

#[test]
fn objects_render_as_themselves_or_as_a_list_without_managed_fields() {
    let single_yaml = render_objects(&[object()], true, OutputFormat::Yaml).expect("yaml");
    let single: StoppableContainer = serde_yaml::from_str(&single_yaml).expect("parses back");
    assert_eq!(single.metadata.managed_fields, None);
    assert_eq!(single.status, object().status);

    let list_json = render_objects(&[object(), object()], false, OutputFormat::Json).expect("json");
    let list: serde_json::Value = serde_json::from_str(&list_json).expect("json");
    assert_eq!(list["kind"], "List");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(2));
    assert_eq!(list["items"][0]["spec"]["running"], true);
    let empty: serde_json::Value = serde_json::from_str(&render_objects(&[], false, OutputFormat::Json).expect("json")).expect("json");
    assert_eq!(empty["items"], serde_json::json!([]));
}

fn nginx_image() -> ImageStatus {
    ImageStatus {
        image_ref: "docker.io/library/nginx@sha256:0a1b".into(),
        entrypoint: vec!["/docker-entrypoint.sh".into()],
        cmd: vec!["nginx".into(), "-g".into(), "daemon off;".into()],
        user: None,
        working_dir: Some("/usr/share/nginx".into()),
        command: Some(vec!["/docker-entrypoint.sh".into(), "nginx".into(), "-g".into(), "daemon off;".into()]),
        unavailable: None,
    }
}

#[test]
fn argv_words_are_quoted_only_where_a_shell_needs_it() {
    assert_eq!(shell_word("/usr/bin/python3"), "/usr/bin/python3");
    assert_eq!(shell_word("--port=8080"), "--port=8080");
    assert_eq!(shell_word("daemon off;"), "'daemon off;'");
    assert_eq!(shell_word("it's"), r"'it'\''s'");
    assert_eq!(shell_word("$(HOME)"), "'$(HOME)'");
    assert_eq!(shell_word(""), "''");
}

#[test]
fn the_image_lines_show_what_runs_or_why_it_is_unknown() {
    let mut running = view("web", "team-a", true, Some(Phase::Running), Some("node-1"), 60);
    assert_eq!(
        image_fields(&running),
        [("Image:", "config not reported yet (the data node reports it when the consumer pod mounts the root filesystem)".to_owned())]
    );
    running.image = Some(nginx_image());
    assert_eq!(
        image_fields(&running),
        [
            ("Image:", "docker.io/library/nginx@sha256:0a1b".to_owned()),
            ("Command:", "/docker-entrypoint.sh nginx -g 'daemon off;'".to_owned()),
            ("Image user:", "root (no USER)".to_owned()),
            ("Image workdir:", "/usr/share/nginx".to_owned()),
        ]
    );
    let mut blocked = running.clone();
    blocked.image = Some(ImageStatus { entrypoint: vec![], cmd: vec![], user: Some("jovyan".into()), command: None, ..nginx_image() });
    blocked.conditions = vec![ConditionView {
        type_: "ImageConfig".into(),
        status: "False".into(),
        reason: "NoCommand".into(),
        message: "no command specified".into(),
    }];
    let fields = image_fields(&blocked);
    assert_eq!(fields[1], ("Command:", "none: NoCommand (see the ImageConfig condition)".to_owned()));
    assert_eq!(fields[2], ("Image user:", "jovyan".to_owned()));
    let mut unknown = running.clone();
    unknown.image = Some(ImageStatus {
        image_ref: "registry.test/app@sha256:9".into(),
        command: Some(vec!["sleep".into(), "infinity".into()]),
        unavailable: Some("the runtime answered without a config".into()),
        ..ImageStatus::default()
    });
    assert_eq!(
        image_fields(&unknown),
        [
            (
                "Image:",
                "registry.test/app@sha256:9 (the container runtime gave no config: the runtime answered without a config)".to_owned()
            ),
            ("Command:", "sleep infinity".to_owned()),
            ("Image user:", "unknown".to_owned()),
            ("Image workdir:", "unknown".to_owned()),
        ]
    );
    let mut invalid = running;
    invalid.image = Some(ImageStatus { command: None, ..nginx_image() });
    assert_eq!(image_fields(&invalid)[1], ("Command:", "not evaluated (see the ImageConfig condition)".to_owned()));
}
