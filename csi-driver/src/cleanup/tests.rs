use std::path::Path;

use tokio::sync::Mutex;

use super::*;
use crate::node::IoError;

fn key(namespace: &str, name: &str, uid: &str) -> ScKey {
    ScKey { namespace: namespace.into(), name: name.into(), uid: uid.into() }
}

fn facts(deleting: bool, has_finalizer: bool, data_here: bool, status_node: Option<&str>, reported: bool) -> ScFacts<'_> {
    ScFacts { deleting, has_finalizer, data_here, status_node, reported, on_claim: false }
}

#[test]
fn an_sc_on_a_claim_has_no_node_data_to_report_but_data_found_for_it_is_deleted() {
    use Decision::*;
    let on_claim = |data_here| ScFacts { on_claim: true, ..facts(true, true, data_here, Some("n1"), false) };
    assert_eq!(decide(&on_claim(false), "n1"), Skip, "no NoData report even where its status names this node");
    // spec.storage is the tenant's to write: added to a node-local SC being deleted, it does not keep the data.
    assert_eq!(decide(&on_claim(true), "n1"), Delete { then_report: true });
}

#[test]
fn only_the_data_node_or_the_holder_reports_and_every_holder_deletes() {
    use Decision::*;
    let n1 = Some("n1");
    assert_eq!(decide(&facts(false, true, true, n1, false), "n1"), Skip, "not being deleted");
    assert_eq!(decide(&facts(true, true, true, n1, false), "n1"), Delete { then_report: true });
    assert_eq!(
        decide(&facts(true, true, true, Some("n2"), false), "n1"),
        Delete { then_report: true },
        "the data is here whatever the status says"
    );
    assert_eq!(
        decide(&facts(true, false, true, n1, false), "n1"),
        Delete { then_report: false },
        "finalizer removed by hand: delete, nobody to tell"
    );
    assert_eq!(decide(&facts(true, true, true, n1, true), "n1"), Delete { then_report: false }, "already reported");
    assert_eq!(decide(&facts(true, true, false, n1, false), "n1"), ReportNoData, "our node, nothing written");
    assert_eq!(decide(&facts(true, true, false, n1, true), "n1"), Skip, "reported once");
    assert_eq!(decide(&facts(true, true, false, Some("n2"), false), "n1"), Skip, "another node's data: never released from here");
    assert_eq!(decide(&facts(true, true, false, None, false), "n1"), Skip, "never started: the operator releases it");
    assert_eq!(decide(&facts(true, false, false, n1, false), "n1"), Skip, "finalizer already gone");
}

#[test]
fn the_orphan_clock_honours_the_grace_and_restarts_on_any_gap() {
    let grace = Duration::from_secs(3600);
    let start = Instant::now();
    let (a, b) = (key("ns", "a", "uid-a"), key("ns", "b", "uid-b"));
    let mut clock = OrphanClock::default();
    assert!(clock.observe(&[a.clone(), b.clone()], start, grace).is_empty(), "first seen now");
    assert!(clock.observe(&[a.clone(), b.clone()], start + grace - Duration::from_secs(1), grace).is_empty(), "one second short");
    // b is live in this sweep (its SC showed up in the cache): its clock starts again.
    assert_eq!(clock.observe(std::slice::from_ref(&a), start + grace, grace), vec![a.clone()]);
    assert!(clock.observe(&[a.clone(), b.clone()], start + grace, grace).contains(&a));
    assert!(!clock.observe(&[a.clone(), b.clone()], start + grace * 2 - Duration::from_secs(1), grace).contains(&b));
    assert!(clock.observe(&[a.clone(), b.clone()], start + grace * 2 + Duration::from_secs(1), grace).contains(&b));
    clock.forget(&a);
    assert!(!clock.observe(std::slice::from_ref(&a), start + grace * 3, grace).contains(&a), "forgotten: starts again");
    assert_eq!(clock.tracked(), 1, "b is no longer a candidate");
}

#[test]
fn a_zero_grace_turns_the_orphan_deletion_off() {
    assert_eq!(orphan_grace(0), None);
    assert_eq!(orphan_grace(3600), Some(Duration::from_secs(3600)));
}

#[test]
fn candidates_are_directories_whose_uid_is_not_live() {
    let dirs = [key("ns", "a", "uid-a"), key("ns", "b", "uid-b")];
    let live = HashSet::from(["uid-a".to_owned()]);
    assert_eq!(orphan_candidates(&dirs, &live), vec![key("ns", "b", "uid-b")]);
}

#[test]
fn only_a_404_or_another_uid_confirms_that_an_sc_is_gone() {
    let orphan = key("ns", "a", "uid-a");
    assert!(confirmed_gone(&orphan, None), "404");
    assert!(confirmed_gone(&orphan, Some("uid-new")), "deleted and recreated");
    assert!(!confirmed_gone(&orphan, Some("uid-a")), "the cache was behind: the SC is live");
}

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(seconds).expect("timestamp")
}

fn entry(node: &str, seconds: i64) -> String {
    DataReport {
        namespace: "ns".into(),
        name: "a".into(),
        node: node.into(),
        time: Time(at(seconds)),
        outcome: Outcome::Deleted,
        bytes: None,
    }
    .to_value()
}

#[test]
fn old_and_unreadable_entries_expire_unless_their_sc_still_waits() {
    let day = 86_400;
    let data = BTreeMap::from([
        ("fresh".to_owned(), entry("n1", 10 * day)),
        ("old".to_owned(), entry("n1", 10 * day - day - 1)),
        ("old-pending".to_owned(), entry("n1", 0)),
        ("garbage".to_owned(), "deleted".to_owned()),
    ]);
    let pending = HashSet::from(["old-pending".to_owned()]);
    let expired = expired_reports(&data, at(10 * day), REPORT_MAX_AGE, &pending);
    assert_eq!(expired, vec!["garbage".to_owned(), "old".to_owned()]);
}

#[test]
fn a_report_counts_only_if_it_is_this_nodes_and_readable() {
    let data = BTreeMap::from([
        ("ours".to_owned(), entry("n1", 0)),
        ("theirs".to_owned(), entry("n2", 0)),
        ("garbage".to_owned(), "x".to_owned()),
    ]);
    assert!(still_reported(&data, "ours", "n1"));
    assert!(!still_reported(&data, "theirs", "n1"));
    assert!(!still_reported(&data, "garbage", "n1"));
    assert!(!still_reported(&data, "missing", "n1"));
}

#[test]
fn the_report_configmap_is_named_for_the_node_and_says_which_node_it_is() {
    let configmap = report_configmap("node-1", "sc-system", "uid-a", "{}".into());
    assert_eq!(configmap.metadata.name.as_deref(), Some(report_configmap_name("node-1").as_str()));
    assert_eq!(configmap.metadata.namespace.as_deref(), Some("sc-system"));
    assert_eq!(
        configmap.metadata.annotations.as_ref().and_then(|a| a.get(NODE_REPORT_NODE_ANNOTATION)).map(String::as_str),
        Some("node-1")
    );
    assert_eq!(configmap.metadata.labels.as_ref().and_then(|l| l.get(LABEL_COMPONENT)).map(String::as_str), Some(NODE_REPORT_COMPONENT));
    assert_eq!(configmap.data, Some(BTreeMap::from([("uid-a".to_owned(), "{}".to_owned())])));
}

// -- the disk, with a real directory tree and fakes for the mount table and the API server

#[derive(Default)]
struct FakeGuard {
    lock: Mutex<()>,
    /// UIDs whose data an overlay uses (a running consumer).
    mounted: HashSet<String>,
    /// UIDs whose own filesystem is mounted with no overlay on it (a stopped SC's).
    idle: std::sync::Mutex<HashSet<String>>,
}

impl DataGuard for FakeGuard {
    fn mount_lock(&self) -> &Mutex<()> {
        &self.lock
    }
    fn is_data_mounted(&self, sc: &ScKey) -> Result<bool, IoError> {
        Ok(self.mounted.contains(&sc.uid) || self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner).contains(&sc.uid))
    }
    fn release_idle_filesystem(&self, sc: &ScKey) {
        self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner).retain(|uid| uid != &sc.uid);
    }
}

/// The API server: each `namespace/name` answers a UID, 404 (absent) or an error.
#[derive(Default)]
struct FakeLookup {
    current: HashMap<String, Result<String, ()>>,
}

impl ScLookup for FakeLookup {
    async fn current_uid(&self, namespace: &str, name: &str) -> Result<Option<String>, kube::Error> {
        match self.current.get(&format!("{namespace}/{name}")) {
            None => Ok(None),
            Some(Ok(uid)) => Ok(Some(uid.clone())),
            Some(Err(())) => Err(kube::Error::TlsRequired),
        }
    }
}

fn make_data(root: &Path, key: &ScKey) -> PathBuf {
    let dir = DataRoot::new(root).container_dir(key);
    std::fs::create_dir_all(dir.join("upper/etc")).expect("mkdir");
    std::fs::write(dir.join("upper/etc/motd"), vec![b'x'; 10_000]).expect("write");
    std::fs::create_dir_all(dir.join("work")).expect("mkdir");
    dir
}

#[tokio::test]
async fn the_sweep_deletes_only_confirmed_unmounted_orphans_after_the_grace() {
    let root = tempfile::tempdir().expect("tempdir");
    let data = DataRoot::new(root.path());
    let live = key("team-a", "live", "uid-live");
    let gone = key("team-a", "gone", "uid-gone");
    let recreated = key("team-a", "recreated", "uid-old");
    let stale = key("team-a", "stale", "uid-stale");
    let mounted = key("team-b", "mounted", "uid-mounted");
    let unconfirmed = key("team-b", "unconfirmed", "uid-unconfirmed");
    for sc in [&live, &gone, &recreated, &stale, &mounted, &unconfirmed] {
        make_data(root.path(), sc);
    }
    // Not the plugin's: never touched.
    let foreign = root.path().join("containers/Not_A_Label/x/uid-x");
    std::fs::create_dir_all(&foreign).expect("mkdir");
    std::fs::write(data.containers_dir().join("team-a/gone/stray-file"), b"").expect("write");

    let guard = FakeGuard { mounted: HashSet::from(["uid-mounted".to_owned()]), ..FakeGuard::default() };
    let lookup = FakeLookup {
        current: HashMap::from([
            ("team-a/live".to_owned(), Ok("uid-live".to_owned())),
            ("team-a/recreated".to_owned(), Ok("uid-new".to_owned())),
            // The cache missed it, the API server has it.
            ("team-a/stale".to_owned(), Ok("uid-stale".to_owned())),
            ("team-b/unconfirmed".to_owned(), Err(())),
        ]),
    };
    // The cache knows only `live` (and, to it, `stale` is gone).
    let live_uids = HashSet::from(["uid-live".to_owned()]);
    let grace = Duration::from_secs(3600);
    let start = Instant::now();
    let mut clock = OrphanClock::default();

    // Before the cache's first list, nothing is tracked, whatever the time.
    assert!(sweep_orphans(&guard, &lookup, &data, false, &live_uids, &mut clock, start, grace).await.is_empty());
    assert_eq!(clock.tracked(), 0);
    // Grace not over: nothing deleted.
    assert!(sweep_orphans(&guard, &lookup, &data, true, &live_uids, &mut clock, start, grace).await.is_empty());
    let almost = start + grace - Duration::from_secs(1);
    assert!(sweep_orphans(&guard, &lookup, &data, true, &live_uids, &mut clock, almost, grace).await.is_empty());
    for sc in [&live, &gone, &recreated, &stale, &mounted, &unconfirmed] {
        assert!(data.container_dir(sc).exists(), "{sc} kept during the grace");
    }

    let removed = sweep_orphans(&guard, &lookup, &data, true, &live_uids, &mut clock, start + grace, grace).await;
    let removed_keys: Vec<&ScKey> = removed.iter().map(|orphan| &orphan.key).collect();
    assert_eq!(removed_keys, vec![&gone, &recreated], "404 and another UID, unmounted, after the grace");
    assert!(removed.iter().all(|orphan| orphan.bytes >= 10_000), "{removed:?}");
    assert!(!data.container_dir(&gone).exists());
    assert!(data.containers_dir().join("team-a/gone/stray-file").exists(), "a non-empty parent stays");
    assert!(!data.containers_dir().join("team-a/recreated").exists(), "an empty parent goes");
    assert!(data.container_dir(&live).join("upper/etc/motd").exists(), "live SC");
    assert!(data.container_dir(&stale).join("upper/etc/motd").exists(), "the cache was behind: the GET saved it");
    assert!(data.container_dir(&mounted).join("upper/etc/motd").exists(), "mounted");
    assert!(data.container_dir(&unconfirmed).join("upper/etc/motd").exists(), "the GET failed");
    assert!(foreign.exists(), "not a name the plugin makes");
    assert_eq!(std::fs::read_dir(data.containers_dir().join(TRASH_DIR_NAME)).expect("trash").count(), 0);

    // The stale one's clock started again: it is not due a grace later than its first look.
    let later = sweep_orphans(&guard, &lookup, &data, true, &live_uids, &mut clock, start + grace + Duration::from_secs(1), grace).await;
    assert!(later.is_empty(), "{later:?}");
    assert!(data.container_dir(&stale).exists());
}

#[tokio::test]
async fn a_deletion_keeps_mounted_data_and_finishes_an_interrupted_one() {
    let root = tempfile::tempdir().expect("tempdir");
    let data = DataRoot::new(root.path());
    let sc = key("team-a", "dev", "uid-1");
    let dir = make_data(root.path(), &sc);

    let mounted = FakeGuard { mounted: HashSet::from(["uid-1".to_owned()]), ..FakeGuard::default() };
    assert_eq!(remove_data(&mounted, &data, &sc).await.expect("remove"), Removal::Mounted);
    assert!(dir.join("upper/etc/motd").exists(), "mounted data is never touched");
    // An earlier run moved data of the same UID aside and was killed while removing it.
    let trash = trash_path(&data, &sc);
    std::fs::create_dir_all(trash.join("upper/half-removed")).expect("mkdir");
    // No overlay uses it; its own filesystem is still mounted (a stopped SC's): the deletion
    // releases that first, and then the data goes.
    let unmounted = FakeGuard { idle: std::sync::Mutex::new(HashSet::from(["uid-1".to_owned()])), ..FakeGuard::default() };
    match remove_data(&unmounted, &data, &sc).await.expect("remove") {
        Removal::Removed { bytes } => assert!(bytes >= 10_000, "{bytes}"),
        other => panic!("{other:?}"),
    }
    assert!(!dir.exists());
    assert!(!trash.exists());
    assert!(!data.containers_dir().join("team-a").exists(), "empty name and namespace directories go");
    assert_eq!(remove_data(&unmounted, &data, &sc).await.expect("remove"), Removal::Absent, "idempotent");

    // A leftover on its own is finished by the next sweep, even before the cache is synced.
    std::fs::create_dir_all(data.containers_dir().join(TRASH_DIR_NAME).join("uid-9/upper")).expect("mkdir");
    let mut clock = OrphanClock::default();
    let removed =
        sweep_orphans(&unmounted, &FakeLookup::default(), &data, false, &HashSet::new(), &mut clock, Instant::now(), Duration::ZERO).await;
    assert!(removed.is_empty());
    assert_eq!(std::fs::read_dir(data.containers_dir().join(TRASH_DIR_NAME)).expect("trash").count(), 0);
}

#[test]
fn the_scan_lists_only_directories_the_plugin_makes_and_never_follows_symlinks() {
    let root = tempfile::tempdir().expect("tempdir");
    let data = DataRoot::new(root.path());
    assert_eq!(scan(&data).expect("scan"), DataDirs::default(), "no containers directory yet");
    make_data(root.path(), &key("ns", "a", "uid-a"));
    let outside = root.path().join("outside/x");
    std::fs::create_dir_all(&outside).expect("mkdir");
    std::os::unix::fs::symlink(root.path().join("outside"), data.containers_dir().join("ns/linked")).expect("symlink");
    std::os::unix::fs::symlink(&outside, data.containers_dir().join("ns/a/uid-link")).expect("symlink");
    std::fs::write(data.containers_dir().join("ns/a/uid-file"), b"").expect("write");
    let found = scan(&data).expect("scan");
    assert_eq!(found.dirs, vec![key("ns", "a", "uid-a")]);
    assert!(found.trash.is_empty());
}
