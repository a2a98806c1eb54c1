//! `sc-exec run` as the init of a real PID namespace over a real busybox rootfs. Needs root; as a
//! normal user each test skips with a message.

mod support;

use std::io::BufReader;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use support::{Consumer, NodePlugin, init_pid, stderr, stdout, wait_for_line};

/// What these tests need root for, said when they skip as a normal user.
const NEEDS_ROOT: &str = "mount and PID namespaces, chroot";

const ROOT_CONFIG: &str = r#"{"capabilities":["CAP_CHOWN","CAP_KILL","CAP_SETUID","CAP_SETGID"]}"#;

#[test]
fn exit_codes_propagate_as_root() {
    if support::skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let consumer = Consumer::new(NodePlugin::Prepared);
    for (script, code) in [("exit 0", 0), ("exit 3", 3), ("kill -USR1 $$", 128 + 10), ("kill -KILL $$", 137)] {
        let output = consumer.run(ROOT_CONFIG, &["run", "--", "sh", "-c", script]);
        assert_eq!(output.status.code(), Some(code), "{script}: {}", stderr(&output));
    }
}

#[test]
fn the_workload_runs_inside_the_rootfs_with_its_own_pid_namespace_as_root() {
    if support::skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let consumer = Consumer::new(NodePlugin::Prepared);
    let output = consumer.run(ROOT_CONFIG, &["run", "--", "sh", "-c", "cat /etc/passwd | head -n 2; echo cwd=$(pwd); ps -o pid,args"]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(text.contains("alice:x:1000"), "rootfs /etc/passwd: {text}");
    assert!(text.contains("cwd=/\n"), "{text}");
    let processes: Vec<&str> = text.lines().skip_while(|line| !line.contains("PID")).skip(1).collect();
    assert!(processes.len() <= 4, "only the namespace's processes: {processes:?}");
    assert!(
        processes.iter().any(|line| line.trim_start().starts_with("1 ") && line.contains("sc-exec run")),
        "PID 1 is sc-exec: {processes:?}"
    );
}

#[test]
fn sigterm_reaches_the_workload_as_root() {
    if support::skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let consumer = Consumer::new(NodePlugin::Prepared);
    let mut child = consumer
        .spawn(ROOT_CONFIG, &["run", "--", "sh", "-c", "trap 'echo got-term; exit 42' TERM; echo ready; while :; do sleep 0.1; done"]);
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    wait_for_line(&mut out, "ready");
    kill(Pid::from_raw(i32::try_from(init_pid(&child)).expect("pid")), Signal::SIGTERM).expect("kill");
    let seen = wait_for_line(&mut out, "got-term");
    assert!(seen.contains("got-term"));
    assert_eq!(child.wait().expect("wait").code(), Some(42));
}

#[test]
fn a_workload_ignoring_sigterm_is_waited_for_and_sigkill_ends_everything_as_root() {
    if support::skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let consumer = Consumer::new(NodePlugin::Prepared);
    let mut child = consumer.spawn(ROOT_CONFIG, &["run", "--", "sh", "-c", "trap '' TERM; echo ready; sleep 1; echo still-here; exit 5"]);
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    wait_for_line(&mut out, "ready");
    let init = Pid::from_raw(i32::try_from(init_pid(&child)).expect("pid"));
    kill(init, Signal::SIGTERM).expect("kill");
    wait_for_line(&mut out, "still-here");
    assert_eq!(child.wait().expect("wait").code(), Some(5), "the wrapper neither hung nor died early");

    // The runtime's SIGKILL after the grace period ends the namespace at once.
    let mut child = consumer.spawn(ROOT_CONFIG, &["run", "--", "sh", "-c", "trap '' TERM; echo ready; sleep 60"]);
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    wait_for_line(&mut out, "ready");
    let started = Instant::now();
    kill(Pid::from_raw(i32::try_from(init_pid(&child)).expect("pid")), Signal::SIGKILL).expect("kill");
    child.wait().expect("wait");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn orphaned_grandchildren_are_reaped_as_root() {
    if support::skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let consumer = Consumer::new(NodePlugin::Prepared);
    // The inner shell exits at once, orphaning its background sleeps; they exit after 0.2s and
    // become zombies unless PID 1 reaps them.
    let script = "sh -c 'sleep 0.2 & sleep 0.2 & exit 0'; sleep 1; cat /proc/[0-9]*/stat";
    let output = consumer.run(ROOT_CONFIG, &["run", "--", "sh", "-c", script]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let states: Vec<String> = stdout(&output)
        .lines()
        .filter_map(|line| line.rsplit_once(") ").map(|(_, rest)| rest.split(' ').next().unwrap_or("").to_string()))
        .collect();
    assert!(!states.is_empty());
    assert!(!states.iter().any(|state| state == "Z"), "zombies left: {states:?}");
}

#[test]
fn the_requested_user_groups_and_home_apply_as_root() {
    if support::skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let consumer = Consumer::new(NodePlugin::Prepared);
    let config = r#"{"runAsUser":1000,"supplementalGroups":[3000],"workingDir":"/home/alice"}"#;
    let output = consumer.run(config, &["run", "--", "sh", "-c", "id; echo home=$HOME user=${USER-unset} cwd=$(pwd)"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("uid=1000(alice) gid=1000(alice) groups=10(wheel),1000(alice),3000"), "{text}");
    // No runtime sets USER, so a plain container has none either.
    assert!(text.contains("home=/home/alice user=unset cwd=/home/alice"), "{text}");
}

/// An image like a real one: an entrypoint script that execs its arguments, a user given by
/// name, a PATH with its own directory, a working directory that does not exist yet.
fn image_like_a_real_one(consumer: &Consumer) {
    consumer.publish_image(
        r#"{"Entrypoint":["/usr/local/bin/entrypoint.sh"],"Cmd":["serve","--port","8080"],
            "Env":["PATH=/opt/tools/bin:/usr/bin:/bin","GREETING=hello"],"User":"alice","WorkingDir":"/srv/app"}"#,
    );
    consumer.rootfs_program("usr/local/bin/entrypoint.sh", "#!/bin/sh\necho entrypoint got: \"$@\"\nexec \"$@\"\n");
    consumer.rootfs_program("opt/tools/bin/serve", "#!/bin/sh\necho serve $*; id; echo cwd=$(pwd); env\n");
}

#[test]
fn without_words_the_images_entrypoint_and_cmd_run_as_its_user_with_its_env_and_workdir_as_root() {
    if support::skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let consumer = Consumer::new(NodePlugin::Prepared);
    image_like_a_real_one(&consumer);
    let output = consumer.run(r#"{"argv":"imageDefault"}"#, &["run", "--"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("entrypoint got: serve --port 8080\nserve --port 8080\n"), "{text}");
    assert!(text.contains("uid=1000(alice) gid=1000(alice) groups=10(wheel),1000(alice)"), "{text}");
    assert!(text.contains("cwd=/srv/app\n"), "created as runc does: {text}");
    for line in ["GREETING=hello\n", "HOME=/home/alice\n", "PATH=/opt/tools/bin:/usr/bin:/bin\n"] {
        assert!(text.contains(line), "missing {line:?} in {text}");
    }
    for absent in ["SC_EXEC_CONFIG", "USER=", "/.sc-path", "/.sc-home-unset"] {
        assert!(!text.contains(absent), "{absent:?} leaked into {text}");
    }
}

#[test]
fn args_only_follow_the_entrypoint_and_the_pods_env_wins_as_root() {
    if support::skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let consumer = Consumer::new(NodePlugin::Prepared);
    image_like_a_real_one(&consumer);
    let mut command = consumer.command(r#"{"argv":"argsOnly","runAsUser":0}"#, &["run", "--", "serve", "--debug"]);
    command.env("GREETING", "from-the-pod").env("HOME", "/data");
    let output = command.stdin(std::process::Stdio::null()).output().expect("run");
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("entrypoint got: serve --debug\n"), "{text}");
    assert!(text.contains("uid=0(root) gid=0(root)"), "runAsUser wins over the image's user: {text}");
    assert!(text.contains("GREETING=from-the-pod\n") && text.contains("HOME=/data\n"), "{text}");
}

#[test]
fn an_argv_that_cannot_be_made_fails_at_once_saying_what_to_set_as_root() {
    if support::skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let consumer = Consumer::new(NodePlugin::Absent);
    // No image config published (an older node plugin): nothing is guessed.
    let output = consumer.run(r#"{"argv":"imageDefault"}"#, &["run", "--"]);
    assert_eq!(output.status.code(), Some(78), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("set `command` in the pod template") && stderr(&output).contains("upgrade the node plugin"),
        "{}",
        stderr(&output)
    );
    assert!(consumer.termination_message().contains("ENTRYPOINT and CMD"), "{}", consumer.termination_message());

    consumer.publish_image("{}");
    let output = consumer.run(r#"{"argv":"imageDefault"}"#, &["run", "--"]);
    assert_eq!(output.status.code(), Some(78));
    assert!(stderr(&output).contains("neither ENTRYPOINT nor CMD"), "{}", stderr(&output));
}

#[test]
fn an_unknown_image_user_is_refused_as_containerd_does_as_root() {
    if support::skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let consumer = Consumer::new(NodePlugin::Prepared);
    consumer.publish_image(r#"{"Cmd":["id"],"User":"jovyan"}"#);
    let output = consumer.run(r#"{"argv":"imageDefault"}"#, &["run", "--"]);
    assert_eq!(output.status.code(), Some(78), "{}", stderr(&output));
    assert!(stderr(&output).contains("no users found") && stderr(&output).contains("useradd"), "{}", stderr(&output));
}

#[test]
fn capabilities_are_dropped_and_no_new_privs_is_set_as_root() {
    if support::skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let consumer = Consumer::new(NodePlugin::Prepared);
    let read_status = ["run", "--", "grep", "-E", "^(Cap|NoNewPrivs)", "/proc/self/status"];
    let output = consumer.run(r#"{"capabilities":["CAP_CHOWN","CAP_KILL"],"noNewPrivileges":true}"#, &read_status);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    for line in [
        "CapInh:\t0000000000000000",
        "CapPrm:\t0000000000000021",
        "CapEff:\t0000000000000021",
        "CapBnd:\t0000000000000021",
        "CapAmb:\t0000000000000000",
        "NoNewPrivs:\t1",
    ] {
        assert!(text.contains(line), "missing {line:?} in {text}");
    }

    // A non-root workload keeps the bounding set but, as under runc, holds nothing after exec.
    let output = consumer.run(r#"{"runAsUser":1000,"capabilities":["CAP_NET_BIND_SERVICE"]}"#, &read_status);
    let text = stdout(&output);
    for line in ["CapEff:\t0000000000000000", "CapBnd:\t0000000000000400", "NoNewPrivs:\t0"] {
        assert!(text.contains(line), "missing {line:?} in {text}");
    }
}

#[test]
fn run_as_non_root_refuses_with_kubelets_words_and_a_termination_message_as_root() {
    if support::skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let consumer = Consumer::new(NodePlugin::Absent);
    let output = consumer.run(r#"{"runAsNonRoot":true,"pod":"box_team-a","container":"main"}"#, &["run", "--", "id"]);
    assert_eq!(output.status.code(), Some(78));
    let refusal = r#"container has runAsNonRoot and image will run as root (pod: "box_team-a", container: main)"#;
    assert!(stderr(&output).contains(refusal), "{}", stderr(&output));
    assert_eq!(consumer.termination_message(), refusal, "refused before waiting for the rootfs");

    consumer.publish_image(r#"{"User":"alice"}"#);
    let output = consumer.run(r#"{"runAsNonRoot":true,"pod":"box_team-a","container":"main"}"#, &["run", "--", "id"]);
    assert!(stderr(&output).contains("image has non-numeric user (alice), cannot verify user is non-root"), "{}", stderr(&output));
}

#[test]
fn wrapper_failures_have_their_exit_codes_as_root() {
    if support::skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let consumer = Consumer::new(NodePlugin::Prepared);
    let cases: [(&str, &[&str], i32, &str); 4] = [
        (ROOT_CONFIG, &["run", "--", "no-such-program"], 127, "command not found in the rootfs"),
        (ROOT_CONFIG, &["run", "--", "/etc/passwd"], 126, "no execute permission"),
        ("{not json", &["run", "--", "id"], 78, "SC_EXEC_CONFIG"),
        (r#"{"capabilities":["CAP_WINGS"]}"#, &["run", "--", "id"], 78, "CAP_WINGS"),
    ];
    for (config, args, code, message) in cases {
        let output = consumer.run(config, args);
        assert_eq!(output.status.code(), Some(code), "{args:?}: {}", stderr(&output));
        assert!(stderr(&output).contains(message), "{args:?}: {}", stderr(&output));
    }
}

#[test]
fn a_refusing_node_plugin_fails_at_once_with_its_message_as_root() {
    if support::skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let consumer = Consumer::new(NodePlugin::Failed);
    let output = consumer.run(r#"{"rootfsWaitSeconds":30}"#, &["run", "--", "id"]);
    assert_eq!(output.status.code(), Some(69));
    assert!(stderr(&output).contains("is not the consumer of StoppableContainer x"), "{}", stderr(&output));
}

#[test]
fn an_absent_control_socket_fails_after_the_bounded_wait_as_root() {
    if support::skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let consumer = Consumer::new(NodePlugin::Absent);
    let started = Instant::now();
    let output = consumer.run(r#"{"rootfsWaitSeconds":2}"#, &["run", "--", "id"]);
    assert_eq!(output.status.code(), Some(69));
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(stderr(&output).contains("not ready after 2s"), "{}", stderr(&output));
    assert!(stderr(&output).contains("control socket does not answer"), "{}", stderr(&output));
}

#[test]
fn an_unmounted_rootfs_fails_after_the_bounded_wait_with_progress_as_root() {
    if support::skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let mut consumer = Consumer::new(NodePlugin::Prepared);
    consumer.mount_rootfs = false;
    let output = consumer.run(r#"{"rootfsWaitSeconds":6}"#, &["run", "--", "id"]);
    assert_eq!(output.status.code(), Some(69));
    let text = stderr(&output);
    assert!(text.contains("waiting for the rootfs (5s of 6s)"), "{text}");
    assert!(text.contains("/.sc/rootfs is not mounted yet"), "{text}");
}

#[test]
fn sigterm_while_waiting_for_the_rootfs_exits_at_once_as_root() {
    if support::skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let mut consumer = Consumer::new(NodePlugin::Prepared);
    consumer.mount_rootfs = false;
    let child = consumer.spawn(r#"{"rootfsWaitSeconds":60}"#, &["run", "--", "id"]);
    let init = Pid::from_raw(i32::try_from(init_pid(&child)).expect("pid"));
    std::thread::sleep(Duration::from_millis(300));
    kill(init, Signal::SIGTERM).expect("kill");
    let output = child.wait_with_output().expect("wait");
    assert_eq!(output.status.code(), Some(143), "{}", stderr(&output));
}

#[test]
fn the_workload_gets_a_terminal_under_a_pty_as_root() {
    if support::skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let consumer = Consumer::new(NodePlugin::Prepared);
    let command = consumer.command(ROOT_CONFIG, &["run", "--", "sh", "-c", "tty; test -t 0 && echo stdin-is-a-tty"]);
    let output = under_pty(command);
    assert!(output.contains("/dev/pts/"), "{output}");
    assert!(output.contains("stdin-is-a-tty"), "{output}");
}

/// Runs a command under `script` (util-linux), which gives it a fresh pty.
pub fn under_pty(command: std::process::Command) -> String {
    let mut line = String::new();
    for (key, value) in command.get_envs() {
        if let (Some(key), Some(value)) = (key.to_str(), value.and_then(|value| value.to_str())) {
            line.push_str(&format!("{key}={} ", support::shell_quote(value)));
        }
    }
    line.push_str(&support::shell_quote(command.get_program().to_str().expect("utf-8")));
    for arg in command.get_args() {
        line.push(' ');
        line.push_str(&support::shell_quote(arg.to_str().expect("utf-8")));
    }
    let output = std::process::Command::new("script")
        .args(["-qec", &format!("env -i {line}"), "/dev/null"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run script");
    String::from_utf8_lossy(&output.stdout).into_owned()
}
