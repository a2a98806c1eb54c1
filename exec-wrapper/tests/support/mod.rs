//! A consumer container simulated on this machine, for the `*_root.rs` tests (run as root).
//!
//! Layout, built in a temp dir:
//!   container/                the consumer container's own `/` (what the exec-wrapper image is)
//!     .sc-bin/sc-exec         the binary under test
//!     .sc/rootfs              where the rootfs is bind-mounted (the CSI volume's overlay)
//!     .sc/control/prepare.sock  a fake node plugin answering Prepared / Failed, or absent
//!     .sc/control/image-config.json  the image's config, when a test publishes one
//!     dev/termination-log     the file kubelet would mount, for PID 1's termination message
//!   rootfs/                   a merged-/usr busybox rootfs (the persistent root filesystem)
//! Each run happens in `unshare --mount --pid --fork`: a fresh PID namespace whose init becomes
//! `sc-exec`, with /proc mounted for that namespace inside the rootfs (as the node plugin does)
//! and in the container, then `chroot container /.sc-bin/sc-exec ...`.

#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use sc_api::consts::{WRAPPER_IMAGE_HOME, WRAPPER_IMAGE_PATH};

pub const BUSYBOX: &str = "/bin/busybox";
const APPLETS: &[&str] = &[
    "sh", "ls", "id", "ps", "cat", "sleep", "tty", "echo", "kill", "grep", "true", "false", "env", "pwd", "tar", "head", "chmod", "mkdir",
    "sed", "wc",
];

/// How the fake node plugin answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodePlugin {
    Prepared,
    Failed,
    Absent,
}

pub struct Consumer {
    pub base: tempfile::TempDir,
    pub container: PathBuf,
    pub rootfs: PathBuf,
    /// Bind-mount the rootfs (false: the volume never gets mounted).
    pub mount_rootfs: bool,
}

fn write_file(path: &Path, text: &str, mode: u32) {
    fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    fs::write(path, text).expect("write");
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Whether a test that needs root must skip because this process is not root. Then it says so,
/// naming the test and `why` it needs root, so that `cargo test` as a normal user passes without
/// hiding that these tests did not run. Call it first: `if skip_unless_root(WHY) { return; }`.
pub fn skip_unless_root(why: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return false;
    }
    // The harness runs each test on a thread named after it.
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("this test");
    let line = format!("skipped: {test} needs root ({why}); run as root (CI does)\n");
    // Written to the process's stderr itself, not with eprintln!: the harness captures eprintln!
    // of a passing test, and a skip that nobody sees looks like a pass. One write, so that lines of
    // tests running in parallel do not interleave.
    let _ = std::io::stderr().write_all(line.as_bytes());
    true
}

pub fn require_busybox() {
    assert!(Path::new(BUSYBOX).is_file(), "these tests need a static busybox at {BUSYBOX}: `apt-get install busybox-static`");
}

impl Consumer {
    pub fn new(plugin: NodePlugin) -> Self {
        require_busybox();
        let base = tempfile::tempdir().expect("tempdir");
        let container = base.path().join("container");
        let rootfs = base.path().join("rootfs");

        for dir in ["usr/bin", "usr/sbin", "etc", "proc", "dev", "home/alice", "tmp", "root"] {
            fs::create_dir_all(rootfs.join(dir)).expect("mkdir rootfs");
        }
        fs::set_permissions(rootfs.join("tmp"), fs::Permissions::from_mode(0o1777)).expect("chmod");
        fs::copy(BUSYBOX, rootfs.join("usr/bin/busybox")).expect("copy busybox");
        for applet in APPLETS {
            symlink("busybox", rootfs.join("usr/bin").join(applet)).expect("applet");
        }
        symlink("usr/bin", rootfs.join("bin")).expect("merged usr");
        symlink("usr/sbin", rootfs.join("sbin")).expect("merged usr");
        write_file(&rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000:Alice:/home/alice:/bin/sh\n", 0o644);
        write_file(&rootfs.join("etc/group"), "root:x:0:\nwheel:x:10:alice\nalice:x:1000:\n", 0o644);

        for dir in [".sc-bin", ".sc/rootfs", ".sc/control", "proc", "tmp", "dev"] {
            fs::create_dir_all(container.join(dir)).expect("mkdir container");
        }
        write_file(&container.join("dev/termination-log"), "", 0o666);
        let binary = binary_under_test();
        fs::copy(&binary, container.join(".sc-bin/sc-exec")).expect("copy sc-exec");
        copy_shared_libraries(&binary, &container);

        if plugin != NodePlugin::Absent {
            serve_control_socket(&container.join(".sc/control/prepare.sock"), plugin);
        }
        Consumer { base, container, rootfs, mount_rootfs: true }
    }

    /// Publishes the image's config as the node plugin does (a `PublishedImage` JSON).
    pub fn publish_image(&self, config_json: &str) {
        let published = format!(r#"{{"source":"runtime","imageRef":"sha256:test","config":{config_json}}}"#);
        write_file(&self.container.join(".sc/control/image-config.json"), &published, 0o444);
    }

    /// Writes an executable file into the rootfs.
    pub fn rootfs_program(&self, path: &str, text: &str) {
        write_file(&self.rootfs.join(path), text, 0o755);
    }

    /// What PID 1 left as the container's termination message.
    pub fn termination_message(&self) -> String {
        fs::read_to_string(self.container.join("dev/termination-log")).expect("read termination-log")
    }

    /// The `unshare` command that runs `/.sc-bin/sc-exec <args>` as init of a new PID namespace.
    pub fn command(&self, config_json: &str, args: &[&str]) -> Command {
        let prepare_rootfs = if self.mount_rootfs {
            r#"mount --bind "$R" "$C/.sc/rootfs"
mount -t proc proc "$C/.sc/rootfs/proc"
mount --rbind /dev "$C/.sc/rootfs/dev""#
        } else {
            ""
        };
        let script = format!(
            r#"set -e
{prepare_rootfs}
mount -t proc proc "$C/proc"
exec chroot "$C" /.sc-bin/sc-exec "$@""#
        );
        let mut command = Command::new("unshare");
        command
            .args(["--mount", "--pid", "--fork", "--propagation", "private", "/bin/sh", "-c", &script, "sh"])
            .args(args)
            .env_clear()
            .env("C", &self.container)
            .env("R", &self.rootfs)
            // The consumer container's environment when the pod sets neither PATH nor HOME: the
            // exec-wrapper image's.
            .env("PATH", WRAPPER_IMAGE_PATH)
            .env("HOME", WRAPPER_IMAGE_HOME)
            .env("SC_EXEC_CONFIG", config_json);
        command
    }

    /// Runs to completion and returns the output.
    pub fn run(&self, config_json: &str, args: &[&str]) -> Output {
        self.command(config_json, args).stdin(Stdio::null()).output().expect("run unshare")
    }

    /// Starts in the background with piped stdout/stderr.
    pub fn spawn(&self, config_json: &str, args: &[&str]) -> Child {
        self.command(config_json, args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn unshare")
    }

    /// `kubectl exec` as runc does it: enter the namespaces and root of `sc-exec` (PID 1) and
    /// exec `args` through the container's own PATH (the exec-wrapper image's), in the consumer
    /// container's working directory `workdir`.
    pub fn kubectl_exec(&self, init_pid: u32, config_json: &str, workdir: &str, args: &[&str]) -> Output {
        Command::new("nsenter")
            .args(["--target", &init_pid.to_string(), "--mount", "--pid", "--root"])
            // nsenter opens the directory before entering the root, so name it from outside.
            .arg(format!("--wd={}", self.container.join(workdir.trim_start_matches('/')).display()))
            .args(args)
            .env_clear()
            .env("PATH", WRAPPER_IMAGE_PATH)
            .env("HOME", WRAPPER_IMAGE_HOME)
            .env("SC_EXEC_CONFIG", config_json)
            .stdin(Stdio::null())
            .output()
            .expect("run nsenter")
    }
}

/// The binary to test: `$SC_EXEC_BINARY` (for example the static release build), else this
/// test build's.
pub fn binary_under_test() -> PathBuf {
    std::env::var_os("SC_EXEC_BINARY").map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_sc-exec")), PathBuf::from)
}

/// The test build of sc-exec is dynamically linked (only the release build is static): give the
/// simulated container the libraries `ldd` names, at the same paths, as a glibc base image would.
fn copy_shared_libraries(binary: &Path, container: &Path) {
    let output = Command::new("ldd").arg(binary).output().expect("run ldd");
    for word in String::from_utf8_lossy(&output.stdout).split_whitespace() {
        if word.starts_with('/') && Path::new(word).is_file() {
            let target = container.join(word.trim_start_matches('/'));
            fs::create_dir_all(target.parent().expect("parent")).expect("mkdir lib dir");
            fs::copy(word, &target).expect("copy library");
        }
    }
}

/// A fake node plugin: answers every connection's request line with one fixed response.
fn serve_control_socket(path: &Path, plugin: NodePlugin) {
    let listener = UnixListener::bind(path).expect("bind control socket");
    let answer = match plugin {
        NodePlugin::Prepared => "{\"result\":\"prepared\"}\n",
        _ => "{\"result\":\"failed\",\"message\":\"pod default/x is not the consumer of StoppableContainer x\"}\n",
    };
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut request = String::new();
            if BufReader::new(&stream).read_line(&mut request).is_ok() && request.contains("\"op\":\"prepare\"") {
                let _ = stream.write_all(answer.as_bytes());
            }
        }
    });
}

/// The host PID of the namespace's init (`sc-exec`) started by an `unshare --fork` child.
pub fn init_pid(unshare: &Child) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let children = fs::read_to_string(format!("/proc/{0}/task/{0}/children", unshare.id())).unwrap_or_default();
        if let Some(pid) = children.split_whitespace().next().and_then(|pid| pid.parse::<u32>().ok()) {
            let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim() == "sc-exec" {
                return pid;
            }
        }
        assert!(Instant::now() < deadline, "sc-exec never started under unshare pid {}", unshare.id());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads lines from a child's stdout until one contains `marker`.
pub fn wait_for_line(reader: &mut impl BufRead, marker: &str) -> String {
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        let read = reader.read_line(&mut line).expect("read stdout");
        assert!(read > 0, "stdout closed before {marker:?}; got {seen:?}");
        seen.push_str(&line);
        if line.contains(marker) {
            return seen;
        }
    }
}

/// Waits until `condition` holds, or fails after `seconds`.
pub fn eventually(seconds: u64, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out after {seconds}s waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}
