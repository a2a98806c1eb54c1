//! The `kubectl exec` path (the symlink farm, `sc-exec <cmd>`), `pause` and `install`, with the
//! real binary in real namespaces. Needs root; as a normal user each test skips with a message.

mod support;

use std::fs;
use std::io::BufReader;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use support::{Consumer, NodePlugin, eventually, init_pid, stderr, stdout, wait_for_line};

/// What these tests need root for, said when they skip as a normal user.
const NEEDS_ROOT: &str = "mount and PID namespaces, chroot";

const CONFIG: &str = r#"{"capabilities":["CAP_CHOWN","CAP_SETUID","CAP_SETGID"]}"#;
const WRAPPER: &str = "/.sc-bin/sc-exec";

fn link_target(path: PathBuf) -> Option<PathBuf> {
    fs::read_link(path).ok()
}

/// A consumer whose PID 1 runs `sleep` until the test ends; returns it with sc-exec's host pid.
fn running_consumer() -> (Consumer, std::process::Child, u32) {
    start(Consumer::new(NodePlugin::Prepared), CONFIG)
}

fn start(consumer: Consumer, config: &str) -> (Consumer, std::process::Child, u32) {
    let mut child = consumer.spawn(config, &["run", "--", "sh", "-c", "echo ready; exec sleep 120"]);
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    wait_for_line(&mut out, "ready");
    let pid = init_pid(&child);
    (consumer, child, pid)
}

fn stop(mut child: std::process::Child, pid: u32) {
    let _ = kill(Pid::from_raw(i32::try_from(pid).expect("pid")), Signal::SIGKILL);
    let _ = child.wait();
}

#[test]
fn the_farm_mirrors_the_rootfs_and_plain_exec_lands_inside_it_as_root() {
    if support::skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let (consumer, child, pid) = running_consumer();
    let container = &consumer.container;
    assert_eq!(link_target(container.join("bin")), Some(PathBuf::from("usr/bin")), "merged /usr mirrored");
    for program in ["usr/bin/ls", "usr/bin/tar", "usr/bin/ps", "usr/bin/busybox"] {
        assert_eq!(link_target(container.join(program)), Some(PathBuf::from(WRAPPER)), "{program}");
    }
    assert!(container.join(".sc-bin/sc-exec").is_file(), "the wrapper itself is untouched");

    // `kubectl exec <pod> -- cat /etc/passwd`: the runtime finds `cat` in the container's PATH.
    let output = consumer.kubectl_exec(pid, CONFIG, "/", &["cat", "/etc/passwd"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stdout(&output).contains("alice:x:1000"), "ran inside the rootfs: {}", stdout(&output));

    // Absolute paths through the mirrored /bin link, and `sc-exec <cmd>` directly.
    let output = consumer.kubectl_exec(pid, CONFIG, "/", &["/bin/sh", "-c", "echo $0 in $(cat /etc/group | head -n 1)"]);
    assert!(stdout(&output).contains("/bin/sh in root:x:0:"), "{} {}", stdout(&output), stderr(&output));
    let output = consumer.kubectl_exec(pid, CONFIG, "/", &[WRAPPER, "id", "-u"]);
    assert_eq!(stdout(&output).trim(), "0", "{}", stderr(&output));

    // `kubectl cp` runs `tar` in the container: it must see the rootfs.
    let output = consumer.kubectl_exec(pid, CONFIG, "/", &["tar", "cf", "-", "-C", "/etc", "passwd"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("alice:x:1000"));

    // `ps` shows the pod's processes: sc-exec as PID 1 and the workload.
    let output = consumer.kubectl_exec(pid, CONFIG, "/", &["ps", "-o", "pid,args"]);
    let text = stdout(&output);
    assert!(text.lines().any(|line| line.trim_start().starts_with("1 ") && line.contains("sc-exec run")), "{text}");
    assert!(text.contains("sleep 120"), "{text}");
    stop(child, pid);
}

#[test]
fn a_program_installed_after_start_gets_a_link_and_runs_as_root() {
    if support::skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let (consumer, child, pid) = running_consumer();
    let installed = consumer.rootfs.join("usr/bin/newprog");
    fs::write(&installed, "#!/bin/sh\necho hello-from-newprog \"$@\" uid=$(id -u)\n").expect("write");
    fs::set_permissions(&installed, fs::Permissions::from_mode(0o755)).expect("chmod");
    let link = consumer.container.join("usr/bin/newprog");
    eventually(5, "the farm link for newprog", || link_target(link.clone()) == Some(PathBuf::from(WRAPPER)));

    for command in
        [&["newprog", "a", "b"][..], &["/usr/bin/newprog", "a", "b"], &["/bin/newprog", "a", "b"], &[WRAPPER, "newprog", "a", "b"]]
    {
        let output = consumer.kubectl_exec(pid, CONFIG, "/", command);
        assert_eq!(output.status.code(), Some(0), "{command:?}: {}", stderr(&output));
        assert!(stdout(&output).contains("hello-from-newprog a b uid=0"), "{command:?}: {}", stdout(&output));
    }

    // Removing it removes the link (and only it).
    fs::remove_file(&installed).expect("rm");
    eventually(5, "the stale link to go", || !link.is_symlink());
    assert!(consumer.container.join("usr/bin/ls").is_symlink());
    stop(child, pid);
}

#[test]
fn exec_starts_in_the_workloads_directory_and_applies_the_user_as_root() {
    if support::skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let (consumer, child, pid) = running_consumer();
    // Wherever the runtime starts the exec (the consumer container's own working directory), the
    // command starts where a plain container's exec would: in the workload's directory, `/` here.
    for container_cwd in ["/tmp", "/.sc-bin"] {
        let output = consumer.kubectl_exec(pid, CONFIG, container_cwd, &["pwd"]);
        assert_eq!(stdout(&output).trim(), "/", "{}", stderr(&output));
    }
    let output = consumer.kubectl_exec(pid, r#"{"workingDir":"/tmp"}"#, "/", &["pwd"]);
    assert_eq!(stdout(&output).trim(), "/tmp", "{}", stderr(&output));
    let output = consumer.kubectl_exec(pid, r#"{"workingDir":"/not/created/yet"}"#, "/", &["pwd"]);
    assert_eq!(stdout(&output).trim(), "/", "an exec never creates it: {}", stderr(&output));

    let user_config = r#"{"runAsUser":1000,"noNewPrivileges":true}"#;
    let output = consumer.kubectl_exec(pid, user_config, "/", &["sh", "-c", "id; grep -E '^(CapBnd|NoNewPrivs)' /proc/self/status"]);
    let text = stdout(&output);
    assert!(text.contains("uid=1000(alice) gid=1000(alice)"), "{text} {}", stderr(&output));
    assert!(text.contains("CapBnd:\t0000000000000000") && text.contains("NoNewPrivs:\t1"), "{text}");

    let output = consumer.kubectl_exec(pid, CONFIG, "/", &[WRAPPER, "vim"]);
    assert_eq!(output.status.code(), Some(127));
    assert!(stderr(&output).contains("`vim`: command not found in the rootfs"), "{}", stderr(&output));
    stop(child, pid);
}

#[test]
fn exec_sees_the_images_path_user_and_working_directory_as_root() {
    if support::skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let consumer = Consumer::new(NodePlugin::Prepared);
    consumer.publish_image(r#"{"Env":["PATH=/opt/tools/bin:/usr/bin:/bin","LANG=C.UTF-8"],"User":"alice","WorkingDir":"/srv/app"}"#);
    consumer.rootfs_program("opt/tools/bin/toolonly", "#!/bin/sh\necho toolonly ran as $(id -u) in $(pwd) with \"$@\"\n");
    let config = r#"{"capabilities":["CAP_CHOWN"]}"#;
    let (consumer, child, pid) = start(consumer, config);

    // `kubectl exec <pod> -- toolonly`: the runtime looks `toolonly` up through the consumer's
    // PATH, which ends in the by-name directory.
    let by_name = consumer.container.join(".sc-path/toolonly");
    eventually(5, "the by-name link for toolonly", || link_target(by_name.clone()) == Some(PathBuf::from(WRAPPER)));
    assert_eq!(link_target(consumer.container.join("opt/tools/bin/toolonly")), Some(PathBuf::from(WRAPPER)), "mirrored too");
    let output = consumer.kubectl_exec(pid, config, "/", &["toolonly", "a b"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stdout(&output).trim(), "toolonly ran as 1000 in /srv/app with a b");

    let output = consumer.kubectl_exec(pid, config, "/", &["sh", "-c", "id; pwd; env"]);
    let text = stdout(&output);
    assert!(text.contains("uid=1000(alice) gid=1000(alice) groups=10(wheel),1000(alice)"), "{text} {}", stderr(&output));
    for line in ["/srv/app\n", "PATH=/opt/tools/bin:/usr/bin:/bin\n", "LANG=C.UTF-8\n", "HOME=/home/alice\n"] {
        assert!(text.contains(line), "missing {line:?} in {text}");
    }
    assert!(!text.contains("SC_EXEC_CONFIG") && !text.contains("USER="), "{text}");

    // A program that is on no PATH at all is still not found by name.
    consumer.rootfs_program("opt/hidden/secret", "#!/bin/sh\necho no\n");
    let output = consumer.kubectl_exec(pid, config, "/", &[WRAPPER, "secret"]);
    assert_eq!(output.status.code(), Some(127), "{}", stdout(&output));
    stop(child, pid);
}

#[test]
fn exec_works_under_a_pty_as_root() {
    if support::skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let (_consumer, child, pid) = running_consumer();
    let line = format!(
        "env -i PATH=/usr/bin:/bin SC_EXEC_CONFIG={} nsenter --target {pid} --mount --pid --root --wd=/ tty",
        support::shell_quote(CONFIG)
    );
    let output = Command::new("script").args(["-qec", &line, "/dev/null"]).stdin(Stdio::null()).output().expect("run script");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("/dev/pts/"), "{text}");
    stop(child, pid);
}

#[test]
fn exec_before_the_rootfs_is_mounted_says_to_retry_as_root() {
    if support::skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let mut consumer = Consumer::new(NodePlugin::Prepared);
    consumer.mount_rootfs = false;
    let output = consumer.run(CONFIG, &["ls"]);
    assert_eq!(output.status.code(), Some(69));
    assert!(stderr(&output).contains("retry in a few seconds"), "{}", stderr(&output));
}

#[test]
fn pause_exits_zero_on_sigterm_and_sigint_as_root() {
    if support::skip_unless_root(NEEDS_ROOT) {
        return;
    }
    for signal in [Signal::SIGTERM, Signal::SIGINT] {
        let mut child = Command::new(support::binary_under_test()).arg("pause").spawn().expect("spawn pause");
        std::thread::sleep(Duration::from_millis(200));
        // Other signals do not end it.
        kill(Pid::from_raw(i32::try_from(child.id()).expect("pid")), Signal::SIGHUP).expect("kill");
        std::thread::sleep(Duration::from_millis(100));
        assert!(child.try_wait().expect("try_wait").is_none(), "SIGHUP must not stop pause");
        kill(Pid::from_raw(i32::try_from(child.id()).expect("pid")), signal).expect("kill");
        assert_eq!(child.wait().expect("wait").code(), Some(0), "{signal}");
    }
}

#[test]
fn install_copies_the_running_binary_as_root() {
    if support::skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let target = tempfile::tempdir().expect("tmp");
    let output =
        Command::new(support::binary_under_test()).args(["install", target.path().to_str().expect("utf-8")]).output().expect("run install");
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let installed = target.path().join("sc-exec");
    assert_eq!(fs::read(&installed).expect("read"), fs::read(support::binary_under_test()).expect("read"));
    assert_eq!(fs::metadata(&installed).expect("stat").permissions().mode() & 0o777, 0o755);
    let version = Command::new(&installed).arg("version").output().expect("run installed");
    assert_eq!(stdout(&version).trim(), format!("sc-exec {}", env!("CARGO_PKG_VERSION")));
    // A missing directory is made (the node DaemonSet's first install), not its missing parents.
    let made = target.path().join("exec-wrapper");
    let output = Command::new(support::binary_under_test()).args(["install", made.to_str().expect("utf-8")]).output().expect("run install");
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(fs::metadata(&made).expect("stat").permissions().mode() & 0o777, 0o755);
    assert!(made.join("sc-exec").is_file());
    let missing = Command::new(support::binary_under_test()).args(["install", "/nonexistent/exec-wrapper"]).output().expect("run");
    assert_eq!(missing.status.code(), Some(73));
    assert!(!Path::new("/nonexistent").exists(), "no parent is made");
}
