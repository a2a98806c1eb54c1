//! Runs the `kubectl-sc` binary as a user would: against no cluster (`--dry-run`, argument
//! errors), against an unreachable one, and against a small fake API server on loopback that
//! answers the few requests each command makes. A real cluster is exercised by tests/e2e.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use sc_api::StoppableContainer;
use serde_json::{Value, json};

const SC_PATH: &str = "/apis/stoppablecontainer.xtlsoft.top/v1alpha1/namespaces/team/stoppablecontainers";

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(args: &[&str]) -> Run {
    run_with_env(args, &[])
}

fn run_with_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    let home = tempfile::tempdir().expect("temp home");
    let output: Output = Command::new(env!("CARGO_BIN_EXE_kubectl-sc"))
        .args(args)
        .envs(env.iter().copied())
        .env_remove("KUBECONFIG")
        .env("HOME", home.path())
        .output()
        .expect("the binary runs");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A kubeconfig for `server`, whose context's namespace is `team`.
fn kubeconfig(directory: &tempfile::TempDir, server: &str) -> String {
    let path = directory.path().join("kubeconfig");
    let text = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: test\n\
         clusters:\n- name: test\n  cluster: {{server: '{server}'}}\n\
         contexts:\n- name: test\n  context: {{cluster: test, user: test, namespace: team}}\n\
         users:\n- name: test\n  user: {{token: secret}}\n"
    );
    std::fs::write(&path, text).expect("write kubeconfig");
    path.to_string_lossy().into_owned()
}

#[derive(Clone, Debug)]
struct Request {
    method: String,
    path: String,
    content_type: String,
    body: String,
}

/// A one-request-per-connection HTTP/1.1 server answering from `route`, recording requests.
fn fake_api_server(route: impl Fn(&Request) -> (u16, Value) + Send + Sync + 'static) -> (String, Arc<Mutex<Vec<Request>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let address = listener.local_addr().expect("address");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorder = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let mut parts = request_line.split_whitespace();
            let (method, path) = (parts.next().unwrap_or_default().to_owned(), parts.next().unwrap_or_default().to_owned());
            let (mut content_length, mut content_type) = (0usize, String::new());
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
                    break;
                }
                if let Some((name, value)) = header.split_once(':') {
                    match name.trim().to_ascii_lowercase().as_str() {
                        "content-length" => content_length = value.trim().parse().unwrap_or(0),
                        "content-type" => content_type = value.trim().to_owned(),
                        _ => {}
                    }
                }
            }
            let mut body = vec![0; content_length];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            let request = Request { method, path, content_type, body: String::from_utf8_lossy(&body).into_owned() };
            let (code, response) = route(&request);
            recorder.lock().expect("lock").push(request);
            // A JSON string is sent as a raw (non-JSON) body, as API servers do for some errors.
            let response = match response {
                Value::String(raw) => raw,
                json => json.to_string(),
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{response}",
                response.len()
            );
        }
    });
    (format!("http://{address}"), seen)
}

/// The 404 of a missing object, or (`None`) the plain-text 404 of a resource type the API
/// server does not know, which is what a cluster without the CRD answers.
fn not_found(name: Option<&str>) -> (u16, Value) {
    if name.is_none() {
        return (404, Value::String("404 page not found\n".to_owned()));
    }
    let details = name.map_or_else(
        || json!({}),
        |name| json!({ "name": name, "group": "stoppablecontainer.xtlsoft.top", "kind": "stoppablecontainers" }),
    );
    (
        404,
        json!({ "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found", "details": details }),
    )
}

fn stoppable_container(name: &str, running: bool, generation: i64, phase: &str) -> Value {
    json!({
        "apiVersion": "stoppablecontainer.xtlsoft.top/v1alpha1",
        "kind": "StoppableContainer",
        "metadata": { "name": name, "namespace": "team", "generation": generation, "uid": "u-1",
                      "creationTimestamp": "2020-01-01T00:00:00Z" },
        "spec": { "running": running, "template": { "spec": { "containers": [{ "name": name, "image": "busybox" }] } } },
        "status": { "phase": phase, "observedGeneration": generation, "nodeName": "node-1" }
    })
}

/// A running StoppableContainer whose root filesystem is on a bound claim.
fn on_a_claim(name: &str, when_deleted: &str) -> Value {
    let mut object = stoppable_container(name, true, 1, "Running");
    object["spec"]["storage"] = json!({ "size": "20Gi", "storageClassName": "fast-ssd", "whenDeleted": when_deleted });
    object["status"]["storage"] = json!({ "claimName": format!("{name}-rootfs"), "claimUID": "c-1", "phase": "Bound",
                                          "capacity": "20Gi", "storageClassName": "fast-ssd" });
    object["status"]["rootfs"] = json!({ "sizeBytes": 21_474_836_480_u64, "usedBytes": 2_147_483_648_u64 });
    object
}

#[test]
fn version_names_the_crate_version() {
    let result = run(&["version"]);
    assert_eq!(result.code, 0, "{}", result.stderr);
    assert!(result.stdout.starts_with(&format!("kubectl-sc version {} (git ", env!("CARGO_PKG_VERSION"))), "{}", result.stdout);
}

#[test]
fn dry_run_prints_the_manifest_with_the_command_after_double_dash() {
    let result =
        run(&["create", "box", "-n", "team", "--image", "busybox", "--size", "20Gi", "--dry-run", "-e", "A=1", "--", "sleep", "infinity"]);
    assert_eq!(result.code, 0, "{}", result.stderr);
    assert!(result.stdout.contains("\n  rootfsSize: 20Gi\n"), "{}", result.stdout);
    let manifest: StoppableContainer = serde_yaml::from_str(&result.stdout).expect("YAML of a StoppableContainer");
    let pod_spec = manifest.spec.template.spec.expect("current schema: template.spec");
    assert_eq!(pod_spec.containers[0].command, Some(vec!["sleep".to_owned(), "infinity".to_owned()]));
    assert_eq!(manifest.metadata.namespace.as_deref(), Some("team"));
    assert!(manifest.spec.running);
}

#[test]
fn dry_run_prints_the_storage_on_a_claim() {
    let result =
        run(&["create", "box", "-n", "team", "--image", "busybox", "--storage", "20Gi", "--storage-class", "fast-ssd", "--dry-run"]);
    assert_eq!(result.code, 0, "{}", result.stderr);
    assert!(
        result.stdout.contains("\n  storage:\n    size: 20Gi\n    storageClassName: fast-ssd\n    whenDeleted: Delete\n"),
        "{}",
        result.stdout
    );
    assert!(!result.stdout.contains("rootfsSize"), "{}", result.stdout);
    let kept = run(&["create", "box", "-n", "team", "--image", "busybox", "--storage", "5Gi", "--keep-storage", "--dry-run", "-o", "json"]);
    assert_eq!(kept.code, 0, "{}", kept.stderr);
    let manifest: Value = serde_json::from_str(&kept.stdout).expect("JSON");
    assert_eq!(manifest["spec"]["storage"], json!({ "size": "5Gi", "whenDeleted": "Retain" }));
}

#[test]
fn storage_flags_that_do_not_go_together_are_refused_before_any_request() {
    let (server, seen) = fake_api_server(|request| (201, serde_json::from_str(&request.body).unwrap_or(Value::Null)));
    let directory = tempfile::tempdir().expect("tempdir");
    let config = kubeconfig(&directory, &server);
    let cases: [(&[&str], &str); 5] = [
        (
            &["--storage-class", "fast"],
            "error: --storage-class needs --storage: it names the StorageClass of the PersistentVolumeClaim that --storage creates, \
             and without --storage the root filesystem is on its node; add --storage SIZE (e.g. --storage 20Gi), or drop --storage-class",
        ),
        (
            &["--keep-storage"],
            "error: --keep-storage needs --storage: it keeps the PersistentVolumeClaim that --storage creates when the StoppableContainer \
             is deleted, and without --storage there is no claim to keep; add --storage SIZE (e.g. --storage 20Gi), or drop --keep-storage",
        ),
        (
            &["--storage", "20Gi", "--size", "10Gi"],
            "error: --size cannot be used with --storage: --size limits a root filesystem on its node, and on a PersistentVolumeClaim \
             the claim's size is the limit; drop --size and give the size you want to --storage",
        ),
        (
            &["--storage", "20Gi", "--storage-class", "Fast_Disks"],
            "error: spec.storage.storageClassName \"Fast_Disks\": must be lowercase letters, digits, '-' and '.', starting and ending \
             with a letter or digit",
        ),
        (
            &["--storage", "20GB"],
            "error: invalid value '20GB' for '--storage <SIZE>': spec.storage.size: the rootfs size \"20GB\" is not a Kubernetes quantity",
        ),
    ];
    for (flags, expected) in cases {
        let mut args = vec!["--kubeconfig", &config, "create", "box", "--image", "busybox"];
        args.extend_from_slice(flags);
        let result = run(&args);
        assert_eq!(result.code, 2, "{flags:?}: {}", result.stderr);
        assert!(result.stderr.starts_with(expected), "{flags:?}: expected {expected:?} in:\n{}", result.stderr);
        // Also with --dry-run, which sends nothing anyway but must not print a refused manifest.
        args.push("--dry-run");
        let dry_run = run(&args);
        assert_eq!((dry_run.code, dry_run.stdout.as_str()), (2, ""), "{flags:?}");
    }
    assert!(seen.lock().expect("lock").is_empty(), "nothing was sent");
}

#[test]
fn create_with_storage_posts_it_and_names_the_claim() {
    let (server, seen) = fake_api_server(|request| (201, serde_json::from_str(&request.body).unwrap_or(Value::Null)));
    let directory = tempfile::tempdir().expect("tempdir");
    let config = kubeconfig(&directory, &server);
    let result = run(&["--kubeconfig", &config, "create", "box", "--image", "busybox", "--storage", "20Gi", "--keep-storage"]);
    assert_eq!(result.code, 0, "{}", result.stderr);
    assert!(
        result
            .stdout
            .contains("Its root filesystem is on the PersistentVolumeClaim box-rootfs (20Gi, the default class), kept when it is deleted"),
        "{}",
        result.stdout
    );
    let post = seen.lock().expect("lock").iter().find(|request| request.method == "POST").cloned().expect("a POST was sent");
    let sent: Value = serde_json::from_str(&post.body).expect("JSON");
    assert_eq!(sent["spec"]["storage"], json!({ "size": "20Gi", "whenDeleted": "Retain" }));
}

#[test]
fn status_on_a_claim_shows_the_claim_and_its_use() {
    let (server, _) = fake_api_server(|request| {
        if request.path.starts_with("/api/v1/namespaces/team/events") {
            return (200, json!({ "apiVersion": "v1", "kind": "EventList", "metadata": {}, "items": [] }));
        }
        (200, on_a_claim("box", "Retain"))
    });
    let directory = tempfile::tempdir().expect("tempdir");
    let config = kubeconfig(&directory, &server);
    let result = run(&["--kubeconfig", &config, "status", "box"]);
    assert_eq!(result.code, 0, "{}", result.stderr);
    for expected in [
        "Storage:       PersistentVolumeClaim box-rootfs, Bound\n",
        "Claim size:    20Gi requested, 20Gi capacity\n",
        "Claim class:   fast-ssd\n",
        "When deleted:  Retain (the claim and its data are kept when the StoppableContainer is deleted)\n",
        "Rootfs:        2Gi of 20Gi used (10%)\n",
    ] {
        assert!(result.stdout.contains(expected), "{expected:?} missing from:\n{}", result.stdout);
    }
    assert!(!result.stdout.contains("Rootfs size:"), "{}", result.stdout);
}

#[test]
fn delete_of_a_retained_claim_names_the_claim_that_stays() {
    let (server, _) = fake_api_server(|request| match request.method.as_str() {
        "DELETE" => {
            let mut terminating = on_a_claim("box", "Retain");
            terminating["metadata"]["deletionTimestamp"] = json!("2020-01-01T00:00:00Z");
            (200, terminating)
        }
        _ => not_found(Some("box")),
    });
    let directory = tempfile::tempdir().expect("tempdir");
    let config = kubeconfig(&directory, &server);
    let result = run(&["--kubeconfig", &config, "delete", "box"]);
    assert_eq!(result.code, 0, "{}", result.stderr);
    assert!(
        result.stdout.ends_with(
            "StoppableContainer \"box\" deleted\n\
             Its PersistentVolumeClaim \"box-rootfs\" is kept, with the data (whenDeleted: Retain); no new StoppableContainer adopts it. \
             Delete it when the data is no longer wanted: kubectl delete pvc box-rootfs -n team\n"
        ),
        "{}",
        result.stdout
    );
    let (deleting, _) = fake_api_server(|_| (200, on_a_claim("box", "Delete")));
    let config = kubeconfig(&directory, &deleting);
    let result = run(&["--kubeconfig", &config, "delete", "box", "--wait=false"]);
    assert_eq!(result.code, 0, "{}", result.stderr);
    assert_eq!(result.stdout, "StoppableContainer \"box\" is being deleted (its pods and root filesystem are removed first)\n");
}

#[test]
fn dry_run_takes_the_namespace_from_the_kubeconfig_context() {
    let directory = tempfile::tempdir().expect("tempdir");
    let config = kubeconfig(&directory, "https://127.0.0.1:1");
    let result = run(&["--kubeconfig", &config, "create", "box", "--image", "busybox", "--dry-run", "-o", "json"]);
    assert_eq!(result.code, 0, "{}", result.stderr);
    let manifest: Value = serde_json::from_str(&result.stdout).expect("JSON");
    assert_eq!(manifest["metadata"]["namespace"], "team");
}

#[test]
fn invalid_arguments_fail_before_any_request() {
    let cases: [(&[&str], &str); 5] = [
        (&["create", "box", "--image", "x", "-e", "FOO"], "has no '=': expected KEY=VALUE"),
        (
            &["create", "box", "--image", "x", "--size", "10GB"],
            "invalid value '10GB' for '--size <SIZE>': the rootfs size \"10GB\" is not a Kubernetes quantity",
        ),
        (&["create", "box", "--image", "x", "-p", "70000"], "is not a port number"),
        (&["create", "Bad_Name", "--image", "x"], "is not a valid name"),
        (&["create", "box"], "--image <IMAGE>"),
    ];
    for (args, expected) in cases {
        let result = run(args);
        assert_eq!(result.code, 2, "{args:?}");
        assert!(result.stderr.contains(expected), "{args:?}: {}", result.stderr);
    }
}

#[test]
fn an_unreachable_cluster_is_named_with_its_kubeconfig() {
    let directory = tempfile::tempdir().expect("tempdir");
    // Port 1 on loopback: nothing listens there, so the connection is refused at once.
    let config = kubeconfig(&directory, "https://127.0.0.1:1");
    let result = run(&["--kubeconfig", &config, "list"]);
    assert_eq!(result.code, 1);
    assert!(result.stderr.contains("cannot reach the Kubernetes API server at https://127.0.0.1:1/"), "{}", result.stderr);
    assert!(result.stderr.contains(&config) && result.stderr.contains("KUBECONFIG"), "{}", result.stderr);
}

#[test]
fn a_missing_object_and_a_missing_crd_have_their_own_errors() {
    let (server, _) = fake_api_server(|request| match request.path.as_str() {
        path if path.ends_with("/ghost") => not_found(Some("ghost")),
        _ => not_found(None),
    });
    let directory = tempfile::tempdir().expect("tempdir");
    let config = kubeconfig(&directory, &server);

    let missing = run(&["--kubeconfig", &config, "status", "ghost"]);
    assert_eq!(missing.code, 1);
    assert_eq!(
        missing.stderr.trim(),
        r#"error: StoppableContainer "ghost" not found in namespace "team" (list them with: kubectl sc list)"#
    );

    let no_crd = run(&["--kubeconfig", &config, "list"]);
    assert_eq!(no_crd.code, 1);
    assert!(no_crd.stderr.contains("install the stoppablecontainer Helm chart"), "{}", no_crd.stderr);
}

#[test]
fn list_renders_the_table() {
    let (server, seen) = fake_api_server(|_| {
        (
            200,
            json!({ "apiVersion": "stoppablecontainer.xtlsoft.top/v1alpha1", "kind": "StoppableContainerList",
                      "metadata": {}, "items": [stoppable_container("box", true, 1, "Running"), on_a_claim("claimy", "Delete")] }),
        )
    });
    let directory = tempfile::tempdir().expect("tempdir");
    let config = kubeconfig(&directory, &server);
    let result = run(&["--kubeconfig", &config, "ls"]);
    assert_eq!(result.code, 0, "{}", result.stderr);
    let lines: Vec<&str> = result.stdout.lines().collect();
    assert_eq!(lines[0], "NAME     RUNNING   PHASE     NODE     STORAGE      AGE");
    assert!(lines[1].starts_with("box      Yes       Running   node-1   node-local   ") && lines[1].ends_with('d'), "{}", lines[1]);
    assert!(lines[2].starts_with("claimy   Yes       Running   node-1   claim:20Gi   ") && lines[2].ends_with('d'), "{}", lines[2]);
    assert_eq!(seen.lock().expect("lock")[0].path.trim_end_matches('?'), SC_PATH);
}

#[test]
fn start_sends_a_merge_patch_and_waits_for_running() {
    // Stopped until the PATCH arrives; then the status lags one poll behind (the old
    // generation's Stopped) before it reports Running, as an operator would.
    let gets_since_patch: Arc<Mutex<Option<u32>>> = Arc::new(Mutex::new(None));
    let counter = Arc::clone(&gets_since_patch);
    let (server, seen) = fake_api_server(move |request| {
        let mut gets_since_patch = counter.lock().expect("lock");
        let mut stale = stoppable_container("box", true, 2, "Stopped");
        stale["status"]["observedGeneration"] = json!(1);
        match (request.method.as_str(), *gets_since_patch) {
            ("PATCH", _) => {
                *gets_since_patch = Some(0);
                (200, stale)
            }
            (_, None) => (200, stoppable_container("box", false, 1, "Stopped")),
            (_, Some(0)) => {
                *gets_since_patch = Some(1);
                (200, stale)
            }
            (_, Some(_)) => (200, stoppable_container("box", true, 2, "Running")),
        }
    });
    let directory = tempfile::tempdir().expect("tempdir");
    let config = kubeconfig(&directory, &server);
    let result = run(&["--kubeconfig", &config, "start", "box", "--wait", "--timeout", "10s"]);
    assert_eq!(result.code, 0, "{}", result.stderr);
    assert!(result.stdout.contains("StoppableContainer \"box\" starting..."), "{}", result.stdout);
    assert!(result.stdout.contains("StoppableContainer \"box\" is running on node node-1"), "{}", result.stdout);

    let requests = seen.lock().expect("lock").clone();
    let patch = requests.iter().find(|request| request.method == "PATCH").expect("a PATCH was sent");
    assert!(patch.path.starts_with(&format!("{SC_PATH}/box?")) && patch.path.contains("fieldManager=kubectl-sc"), "{}", patch.path);
    assert_eq!(patch.content_type, "application/merge-patch+json");
    assert_eq!(serde_json::from_str::<Value>(&patch.body).expect("JSON body"), json!({ "spec": { "running": true } }));
}

#[test]
fn stop_of_a_stopped_container_says_so_and_sends_nothing() {
    let (server, seen) = fake_api_server(|_| (200, stoppable_container("box", false, 3, "Stopped")));
    let directory = tempfile::tempdir().expect("tempdir");
    let config = kubeconfig(&directory, &server);
    let result = run(&["--kubeconfig", &config, "stop", "box"]);
    assert_eq!(result.code, 0, "{}", result.stderr);
    assert_eq!(result.stdout.trim(), "StoppableContainer \"box\" is already stopped");
    assert!(seen.lock().expect("lock").iter().all(|request| request.method == "GET"));
}

#[test]
fn a_wait_that_sees_failed_reports_the_message() {
    let (server, _) = fake_api_server(|_| {
        let mut failed = stoppable_container("box", true, 2, "Failed");
        failed["status"]["message"] = json!("image busybox:nope cannot be pulled");
        (200, failed)
    });
    let directory = tempfile::tempdir().expect("tempdir");
    let config = kubeconfig(&directory, &server);
    let result = run(&["--kubeconfig", &config, "start", "box", "-w"]);
    assert_eq!(result.code, 1);
    assert!(result.stdout.contains("StoppableContainer \"box\" is already running"), "{}", result.stdout);
    assert!(result.stderr.contains("failed while waiting for it to be running: image busybox:nope cannot be pulled"), "{}", result.stderr);
}

#[test]
fn status_shows_fields_conditions_and_events() {
    let (server, _) = fake_api_server(|request| {
        if request.path.starts_with("/api/v1/namespaces/team/events") {
            assert!(request.path.contains("fieldSelector=involvedObject.uid%3Du-1"), "{}", request.path);
            return (
                200,
                json!({ "apiVersion": "v1", "kind": "EventList", "metadata": {}, "items": [{
                "metadata": { "name": "e1", "namespace": "team" },
                "involvedObject": { "kind": "StoppableContainer", "name": "box", "uid": "u-1" },
                "type": "Normal", "reason": "Started", "message": "consumer pod started", "count": 2,
                "lastTimestamp": "2020-01-01T00:00:00Z" }] }),
            );
        }
        let mut object = stoppable_container("box", true, 1, "Running");
        object["spec"]["rootfsSize"] = json!("20Gi");
        object["status"]["conditions"] = json!([{ "type": "Ready", "status": "True", "reason": "Running",
            "message": "the workload is ready", "lastTransitionTime": "2020-01-01T00:00:00Z" }]);
        (200, object)
    });
    let directory = tempfile::tempdir().expect("tempdir");
    let config = kubeconfig(&directory, &server);
    let result = run(&["--kubeconfig", &config, "status", "box"]);
    assert_eq!(result.code, 0, "{}", result.stderr);
    for expected in [
        "Name:         box",
        "Namespace:    team",
        "Running:      true",
        "Phase:        Running",
        "Node:         node-1",
        "Rootfs size:  20Gi",
        "  Ready: True (Running) the workload is ready",
        "Started",
        "consumer pod started",
    ] {
        assert!(result.stdout.contains(expected), "{expected:?} missing from:\n{}", result.stdout);
    }

    let yaml = run(&["--kubeconfig", &config, "status", "box", "-o", "yaml"]);
    let object: StoppableContainer = serde_yaml::from_str(&yaml.stdout).expect("YAML of the object");
    assert_eq!(object.status.and_then(|status| status.conditions.first().map(|c| c.type_.clone())).as_deref(), Some("Ready"));
}

#[test]
fn delete_waits_for_the_finalizers_and_reports_them() {
    let gets = Arc::new(Mutex::new(0u32));
    let counter = Arc::clone(&gets);
    let (server, seen) = fake_api_server(move |request| {
        let mut terminating = stoppable_container("box", true, 2, "Running");
        terminating["metadata"]["deletionTimestamp"] = json!("2020-01-01T00:00:00Z");
        terminating["metadata"]["finalizers"] =
            json!(["stoppablecontainer.xtlsoft.top/finalizer", "rootfs.stoppablecontainer.xtlsoft.top/node-data"]);
        if request.method == "DELETE" {
            return (200, terminating);
        }
        let mut gets = counter.lock().expect("lock");
        *gets += 1;
        match *gets {
            1 => (200, terminating),
            2 => {
                terminating["metadata"]["finalizers"] = json!(["rootfs.stoppablecontainer.xtlsoft.top/node-data"]);
                (200, terminating)
            }
            _ => not_found(Some("box")),
        }
    });
    let directory = tempfile::tempdir().expect("tempdir");
    let config = kubeconfig(&directory, &server);
    let result = run(&["--kubeconfig", &config, "rm", "box", "--force"]);
    assert_eq!(result.code, 0, "{}", result.stderr);
    let expected = "StoppableContainer \"box\" is being deleted; waiting until its pods and root filesystem are gone...\n\
                    \x20 waiting for finalizers: stoppablecontainer.xtlsoft.top/finalizer, rootfs.stoppablecontainer.xtlsoft.top/node-data\n\
                    \x20 waiting for finalizers: rootfs.stoppablecontainer.xtlsoft.top/node-data\n\
                    StoppableContainer \"box\" deleted\n";
    assert_eq!(result.stdout, expected);
    let requests = seen.lock().expect("lock").clone();
    let delete = requests.iter().find(|request| request.method == "DELETE").expect("a DELETE was sent");
    assert_eq!(serde_json::from_str::<Value>(&delete.body).expect("JSON body")["gracePeriodSeconds"], 0);
}

#[test]
fn exec_hands_over_to_kubectl_through_the_wrapper_and_returns_its_status() {
    let (server, _) = fake_api_server(|_| {
        let mut object = stoppable_container("box", true, 1, "Running");
        object["status"]["consumerPodName"] = json!("box");
        (200, object)
    });
    let directory = tempfile::tempdir().expect("tempdir");
    let config = kubeconfig(&directory, &server);
    // A stand-in kubectl that records its arguments, one per line, and exits with 5.
    let recorded = directory.path().join("kubectl-args");
    let fake_kubectl = directory.path().join("kubectl");
    std::fs::write(&fake_kubectl, format!("#!/bin/sh\nprintf '%s\\n' \"$@\" > '{}'\nexit 5\n", recorded.display())).expect("write script");
    std::fs::set_permissions(&fake_kubectl, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");

    let kubectl = fake_kubectl.to_string_lossy().into_owned();
    let result = run_with_env(&["--kubeconfig", &config, "exec", "box", "--", "sh", "-c", "exit 5"], &[("KUBECTL", &kubectl)]);
    assert_eq!(result.code, 5, "{}", result.stderr);
    assert_eq!(result.stderr, "", "kubectl's failure is not repeated");
    let args = std::fs::read_to_string(&recorded).expect("kubectl ran");
    let expected = [&format!("--kubeconfig={config}"), "--namespace=team", "exec", "box", "--", "/.sc-bin/sc-exec", "sh", "-c", "exit 5"];
    assert_eq!(args.lines().collect::<Vec<_>>(), expected);
}

#[test]
fn exec_into_a_stopped_container_says_how_to_start_it() {
    let (server, _) = fake_api_server(|_| (200, stoppable_container("box", false, 1, "Stopped")));
    let directory = tempfile::tempdir().expect("tempdir");
    let config = kubeconfig(&directory, &server);
    let result = run_with_env(&["--kubeconfig", &config, "exec", "box", "--", "true"], &[("KUBECTL", "/nonexistent")]);
    assert_eq!(result.code, 1);
    assert!(
        result.stderr.contains("is stopped, so there is no consumer pod to exec into; start it with: kubectl sc start box -n team"),
        "{}",
        result.stderr
    );
}

#[test]
fn create_posts_the_manifest_and_explains_a_name_clash() {
    let (server, seen) = fake_api_server(|request| {
        let sent: Value = serde_json::from_str(&request.body).unwrap_or(Value::Null);
        match sent["metadata"]["name"].as_str() {
            Some("taken") => (
                409,
                json!({ "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "AlreadyExists",
                                           "code": 409, "message": "already exists", "details": { "name": "taken" } }),
            ),
            _ => (201, sent),
        }
    });
    let directory = tempfile::tempdir().expect("tempdir");
    let config = kubeconfig(&directory, &server);

    let created = run(&["--kubeconfig", &config, "create", "box", "--image", "busybox", "--running=false", "--", "sleep", "infinity"]);
    assert_eq!(created.code, 0, "{}", created.stderr);
    assert!(created.stdout.contains("StoppableContainer \"box\" created in namespace \"team\""), "{}", created.stdout);
    assert!(created.stdout.contains("kubectl sc start box -n team"), "{}", created.stdout);
    let post = seen.lock().expect("lock").iter().find(|request| request.method == "POST").cloned().expect("a POST was sent");
    assert!(post.path.starts_with(SC_PATH) && post.path.contains("fieldManager=kubectl-sc"), "{}", post.path);
    let sent: StoppableContainer = serde_json::from_str(&post.body).expect("a StoppableContainer");
    assert!(!sent.spec.running);
    assert_eq!(
        sent.spec.template.spec.expect("template.spec").containers[0].command,
        Some(vec!["sleep".to_owned(), "infinity".to_owned()])
    );

    let clash = run(&["--kubeconfig", &config, "create", "taken", "--image", "busybox"]);
    assert_eq!(clash.code, 1);
    assert!(clash.stderr.contains("StoppableContainer \"taken\" already exists in namespace \"team\""), "{}", clash.stderr);
}
