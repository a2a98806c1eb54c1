use super::*;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use sc_api::storage::ClaimRecord;
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
        storage: None,
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

fn storage_spec(class: Option<&str>, when_deleted: Option<ClaimRetention>) -> StorageSpec {
    StorageSpec { size: Quantity("20Gi".into()), storage_class_name: class.map(str::to_owned), access_modes: vec![], when_deleted }
}

fn bound_claim(name: &str) -> StorageStatus {
    StorageStatus {
        claim: ClaimRecord { claim_name: name.into(), claim_uid: Some("c-1".into()) },
        phase: Some("Bound".into()),
        capacity: Some(Quantity("21Gi".into())),
        storage_class_name: Some("standard".into()),
    }
}

/// An SC on a claim, running, with its use reported.
fn on_a_claim(requested: Option<StorageSpec>, reported: Option<StorageStatus>) -> ScView {
    let mut view = view("dev", "team-a", true, Some(Phase::Running), Some("node-3"), 600);
    view.storage = Some(StorageView { requested, reported });
    view
}

#[test]
fn status_snapshots_on_a_claim() {
    let mut bound = on_a_claim(Some(storage_spec(None, Some(ClaimRetention::Retain))), Some(bound_claim("dev-rootfs")));
    bound.rootfs_use = Some(RootfsStatus {
        size_bytes: Some(21 << 30),
        used_bytes: Some(1_288_490_189),
        available_bytes: Some((21 << 30) - 1_288_490_189),
        observed_time: seconds_ago(40).map(Time),
    });
    insta::assert_snapshot!("status_claim_bound", render_status(&bound, &[], now()));
    let mut pending = on_a_claim(Some(storage_spec(Some("fast-ssd"), None)), None);
    pending.phase = Some(Phase::Pending);
    pending.node = None;
    // A rootfsSize next to spec.storage does not apply: the claim's lines say the size.
    pending.rootfs_size = Some("10Gi".into());
    insta::assert_snapshot!("status_claim_not_created", render_status(&pending, &[], now()));
}

#[test]
fn the_storage_lines_say_where_the_root_filesystem_is() {
    let mut node_local = view("dev", "team-a", false, Some(Phase::Stopped), None, 600);
    assert_eq!(storage_fields(&node_local), [("Storage:", "node-local (the first start chooses the node)".to_owned())]);
    node_local.data_node = Some("node-2".into());
    assert_eq!(storage_fields(&node_local), [("Storage:", "node-local on node-2".to_owned())]);

    let bound = on_a_claim(Some(storage_spec(None, None)), Some(bound_claim("dev-rootfs")));
    assert_eq!(
        storage_fields(&bound),
        [
            ("Storage:", "PersistentVolumeClaim dev-rootfs, Bound".to_owned()),
            ("Claim size:", "20Gi requested, 21Gi capacity".to_owned()),
            ("Claim class:", "standard".to_owned()),
            ("When deleted:", "Delete (the claim and its data are deleted with the StoppableContainer)".to_owned()),
        ]
    );
    let created = on_a_claim(
        Some(storage_spec(Some("fast-ssd"), Some(ClaimRetention::Retain))),
        Some(StorageStatus { claim: ClaimRecord { claim_name: "dev-rootfs".into(), claim_uid: None }, ..StorageStatus::default() }),
    );
    assert_eq!(
        storage_fields(&created),
        [
            ("Storage:", "PersistentVolumeClaim dev-rootfs, phase not reported".to_owned()),
            ("Claim size:", "20Gi requested, no capacity yet (not bound)".to_owned()),
            ("Claim class:", "fast-ssd".to_owned()),
            ("When deleted:", "Retain (the claim and its data are kept when the StoppableContainer is deleted)".to_owned()),
        ]
    );
    let not_created = on_a_claim(Some(storage_spec(None, None)), None);
    assert_eq!(storage_fields(&not_created)[0], ("Storage:", "PersistentVolumeClaim dev-rootfs, not created yet".to_owned()));
    assert_eq!(storage_fields(&not_created)[2], ("Claim class:", "the cluster's default class".to_owned()));
    // spec.storage removed after the claim was made (the operator refuses that): the claim is
    // still where the data is, and its fate is not guessed.
    let removed = on_a_claim(None, Some(bound_claim("dev-rootfs")));
    assert_eq!(
        storage_fields(&removed),
        [
            ("Storage:", "PersistentVolumeClaim dev-rootfs, Bound".to_owned()),
            ("Claim size:", "size not in spec.storage, 21Gi capacity".to_owned()),
            ("Claim class:", "standard".to_owned()),
        ]
    );
}

#[test]
fn on_a_claim_the_rootfs_line_does_not_fall_back_to_rootfs_size() {
    let mut unreported = on_a_claim(Some(storage_spec(None, None)), None);
    unreported.rootfs_size = Some("10Gi".into());
    assert_eq!(rootfs_use_text(&unreported, now()), "no use reported yet");
    unreported.rootfs_use = Some(RootfsStatus { size_bytes: Some(20 << 30), used_bytes: Some(5 << 30), ..RootfsStatus::default() });
    assert_eq!(rootfs_use_text(&unreported, now()), "5Gi of 20Gi used (25%)");
}

#[test]
fn table_snapshot_with_storage() {
    let mut views = sample_views();
    views[1].storage =
        Some(StorageView { requested: Some(storage_spec(None, None)), reported: Some(bound_claim("builder-with-a-long-name-rootfs")) });
    views[3].storage = Some(StorageView { requested: None, reported: Some(bound_claim("fresh-rootfs")) });
    insta::assert_snapshot!("table_storage", render_table(&views, false, now()));
}

#[test]
fn views_take_the_storage_from_spec_and_status() {
    assert_eq!(ScView::from_object(&object()).storage, None);
    let mut on_claim = object();
    on_claim.spec.storage = Some(storage_spec(None, None));
    assert_eq!(ScView::from_object(&on_claim).storage, Some(StorageView { requested: Some(storage_spec(None, None)), reported: None }));
    on_claim.status.as_mut().expect("a status").storage = Some(bound_claim("dev-box-rootfs"));
    let view = ScView::from_object(&on_claim);
    assert_eq!(view.storage.as_ref().and_then(|storage| storage.reported.clone()), Some(bound_claim("dev-box-rootfs")));
    assert_eq!(storage_cell(&view), "claim:20Gi");
    on_claim.spec.storage = None;
    assert_eq!(ScView::from_object(&on_claim).storage.map(|storage| storage.requested), Some(None));
}

#[test]
fn create_says_where_the_claim_is_and_what_happens_to_it() {
    assert_eq!(
        created_claim_text("dev", &storage_spec(None, Some(ClaimRetention::Delete))),
        "Its root filesystem is on the PersistentVolumeClaim dev-rootfs (20Gi, the default class), deleted with it"
    );
    assert_eq!(
        created_claim_text("dev", &storage_spec(Some("fast-ssd"), Some(ClaimRetention::Retain))),
        "Its root filesystem is on the PersistentVolumeClaim dev-rootfs (20Gi, class fast-ssd), kept when it is deleted"
    );
}

#[test]
fn delete_names_a_kept_claim_and_says_nothing_of_others() {
    let mut kept = object();
    kept.spec.storage = Some(storage_spec(None, Some(ClaimRetention::Retain)));
    assert_eq!(
        kept_claim_text(&kept).as_deref(),
        Some(
            "Its PersistentVolumeClaim \"dev-box-rootfs\" is kept, with the data (whenDeleted: Retain); no new StoppableContainer \
             adopts it. Delete it when the data is no longer wanted: kubectl delete pvc dev-box-rootfs -n team-a"
        )
    );
    // The name the operator reported wins over the one it would give.
    kept.status.as_mut().expect("a status").storage = Some(bound_claim("reported-rootfs"));
    assert!(kept_claim_text(&kept).expect("kept").contains("kubectl delete pvc reported-rootfs -n team-a"));
    let mut deleted = object();
    deleted.spec.storage = Some(storage_spec(None, None));
    assert_eq!(kept_claim_text(&deleted), None, "Delete is the default");
    deleted.spec.storage = Some(storage_spec(None, Some(ClaimRetention::Delete)));
    assert_eq!(kept_claim_text(&deleted), None);
    assert_eq!(kept_claim_text(&object()), None, "node-local");
}
