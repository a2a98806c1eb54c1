//! The upper walk and the diff rules against the kernel: a real overlay is mounted, changed
//! through its merged directory (create, modify, delete, `rm -r` then `mkdir`, hard link, symlink,
//! fifo, socket), unmounted, and what overlayfs left in the upper must read back as exactly the
//! expected changes, through the real `sc-exec layer diff`. Needs root (mount); as a normal user
//! each test skips with a message.

mod support;

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use exec_wrapper::layer::UpperKind;
use exec_wrapper::layer::walk::{kubelet_managed_paths, walk_upper};
use sc_api::layer_diff::{DiffEntry, DiffReport, encode_path_list};
use support::skip_unless_root;

const NEEDS_ROOT: &str = "mounting an overlay";
/// The node plugin's overlay options (csi-driver `OVERLAY_COMPAT_OPTIONS`): no index, no
/// metacopy, no redirects, so the upper holds whole files and real directories.
const OVERLAY_OPTIONS: &str = "index=off,metacopy=off,redirect_dir=off,xino=off";
const SC_EXEC: &str = env!("CARGO_BIN_EXE_sc-exec");
/// `nobody`, for the walk of a directory it may not read.
const NOBODY: u32 = 65534;

/// lower/, upper/, work/ and merged/ in a temp dir; the overlay is unmounted on drop.
struct Overlay {
    base: tempfile::TempDir,
    mounted: bool,
}

impl Overlay {
    fn new() -> Self {
        let base = tempfile::tempdir().expect("tempdir");
        for dir in ["lower", "upper", "work", "merged"] {
            fs::create_dir(base.path().join(dir)).expect("mkdir");
        }
        Self { base, mounted: false }
    }

    fn lower(&self) -> PathBuf {
        self.base.path().join("lower")
    }

    fn upper(&self) -> PathBuf {
        self.base.path().join("upper")
    }

    fn merged(&self, path: &str) -> PathBuf {
        self.base.path().join("merged").join(path.trim_start_matches('/'))
    }

    fn mount(&mut self) {
        let options = format!(
            "lowerdir={},upperdir={},workdir={},{OVERLAY_OPTIONS}",
            self.lower().display(),
            self.upper().display(),
            self.base.path().join("work").display()
        );
        let output =
            Command::new("mount").args(["-t", "overlay", "overlay", "-o", &options]).arg(self.merged("")).output().expect("runs mount");
        assert!(output.status.success(), "mount -t overlay: {}", String::from_utf8_lossy(&output.stderr));
        self.mounted = true;
    }

    fn unmount(&mut self) {
        let output = Command::new("umount").arg(self.merged("")).output().expect("runs umount");
        assert!(output.status.success(), "umount: {}", String::from_utf8_lossy(&output.stderr));
        self.mounted = false;
    }

    /// `sc-exec layer diff` of this upper against this lower, with `opaque` as the node plugin
    /// would list them.
    fn diff(&self, opaque: &[&str]) -> Vec<String> {
        let opaque_file = self.base.path().join("opaque-dirs");
        let opaque: Vec<PathBuf> = opaque.iter().map(PathBuf::from).collect();
        fs::write(&opaque_file, encode_path_list(opaque.iter().map(PathBuf::as_path)).expect("encodes")).expect("write");
        let output = Command::new(SC_EXEC)
            .args(["layer", "diff", "--upper"])
            .arg(self.upper())
            .arg("--opaque-dirs")
            .arg(&opaque_file)
            .arg(format!("--lower={}", self.lower().display()))
            .output()
            .expect("runs sc-exec");
        assert!(output.status.success(), "sc-exec layer diff: {}", String::from_utf8_lossy(&output.stderr));
        let report = DiffReport::from_json(&output.stdout).expect("a diff report");
        report.entries.iter().map(line).collect()
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        if self.mounted {
            let _ = Command::new("umount").arg("-l").arg(self.merged("")).status();
        }
    }
}

fn line(entry: &DiffEntry) -> String {
    let mut text = format!("{} {} {:?}", entry.change.letter(), entry.path.display(), entry.file_type);
    if let Some(size) = entry.size {
        text.push_str(&format!(" {size}"));
    }
    if entry.opaque {
        text.push_str(" opaque");
    }
    if let Some(target) = &entry.link_target {
        text.push_str(&format!(" -> {}", target.display()));
    }
    text
}

fn write(path: PathBuf, content: &str) {
    fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    fs::write(path, content).expect("write");
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn changes_made_through_a_real_overlay_read_back_as_exactly_the_expected_diff() {
    if skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let mut overlay = Overlay::new();
    let lower = |path: &str| overlay.lower().join(path.trim_start_matches('/'));
    write(lower("/etc/motd"), "hello\n");
    write(lower("/etc/os-release"), "v1\n");
    write(lower("/etc/nginx/nginx.conf"), "events {}\n");
    write(lower("/var/cache/apt/pkgcache.bin"), "cache");
    write(lower("/var/cache/other"), "other");
    write(lower("/data/dir-to-delete/x"), "x");
    write(lower("/data/y"), "y");
    write(lower("/usr/bin/old-tool"), "#!/bin/sh\n");
    overlay.mount();

    let merged = |path: &str| overlay.merged(path);
    fs::write(merged("/etc/new.conf"), "new\n").expect("create");
    fs::write(merged("/etc/os-release"), "v2\n").expect("modify");
    fs::remove_file(merged("/etc/motd")).expect("rm");
    // The mount point the node plugin creates for kubelet's file: never part of the diff.
    fs::write(merged("/etc/hosts"), "").expect("mount point");
    fs::remove_dir_all(merged("/var/cache")).expect("rm -r");
    fs::create_dir(merged("/var/cache")).expect("mkdir over the whiteout: opaque");
    fs::write(merged("/var/cache/mine"), "m").expect("create");
    fs::remove_dir_all(merged("/data/dir-to-delete")).expect("rm -r");
    fs::create_dir(merged("/srv")).expect("mkdir");
    fs::write(merged("/srv/a"), "ab").expect("create");
    fs::hard_link(merged("/srv/a"), merged("/srv/b")).expect("ln");
    symlink("vim", merged("/usr/bin/vi")).expect("ln -s");
    fs::create_dir(merged("/run")).expect("mkdir");
    nix::unistd::mkfifo(&merged("/run/fifo"), nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    drop(UnixListener::bind(merged("/run/sock")).expect("a socket"));
    overlay.unmount();

    // The kernel made /var/cache opaque (the node plugin reads that from its xattr): mounted
    // again, the image's files in it are gone, only the user's is there.
    overlay.mount();
    let names = |dir: PathBuf| {
        let mut names: Vec<String> =
            fs::read_dir(dir).expect("readdir").map(|entry| entry.expect("entry").file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    };
    assert_eq!(names(overlay.merged("/var/cache")), ["mine"]);
    assert_eq!(names(overlay.merged("/data")), ["y"]);
    overlay.unmount();

    assert_eq!(
        overlay.diff(&["/var/cache"]),
        [
            "C /data Directory",
            "D /data/dir-to-delete Directory",
            "C /etc Directory",
            "D /etc/motd File",
            "A /etc/new.conf File 4",
            "C /etc/os-release File 3",
            "A /run Directory",
            "A /run/fifo Fifo",
            "A /run/sock Socket",
            "A /srv Directory",
            "A /srv/a File 2",
            "A /srv/b Hardlink -> /srv/a",
            "C /usr Directory",
            "C /usr/bin Directory",
            "A /usr/bin/vi Symlink -> vim",
            "C /var Directory",
            "C /var/cache Directory opaque",
            "A /var/cache/mine File 1",
        ]
    );
    // What overlayfs wrote for the deletions are whiteouts (0/0 character devices), read as such.
    let entries = walk_upper(&overlay.upper(), &Default::default(), &kubelet_managed_paths()).expect("walks");
    let whiteouts: Vec<&Path> =
        entries.iter().filter(|entry| entry.kind == UpperKind::Whiteout).map(|entry| entry.path.as_path()).collect();
    assert_eq!(whiteouts, [Path::new("/data/dir-to-delete"), Path::new("/etc/motd")]);
}

#[test]
fn a_symlinked_parent_in_the_image_does_not_make_a_path_exist() {
    if skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let mut overlay = Overlay::new();
    // The image's /opt leads out of the image, to this machine's /etc, which has a passwd.
    symlink("/etc", overlay.lower().join("opt")).expect("symlink");
    fs::create_dir(overlay.lower().join("lib")).expect("mkdir");
    symlink("/etc", overlay.lower().join("lib/escape")).expect("symlink");
    assert!(Path::new("/etc/passwd").exists());
    overlay.mount();
    fs::remove_file(overlay.merged("/opt")).expect("rm the symlink");
    fs::create_dir(overlay.merged("/opt")).expect("mkdir in its place");
    fs::write(overlay.merged("/opt/passwd"), "mine\n").expect("create");
    fs::remove_file(overlay.merged("/lib/escape")).expect("rm the symlink");
    fs::create_dir(overlay.merged("/lib/escape")).expect("mkdir in its place");
    fs::write(overlay.merged("/lib/escape/passwd"), "mine\n").expect("create");
    overlay.unmount();
    assert_eq!(
        overlay.diff(&["/opt", "/lib/escape"]),
        [
            "C /lib Directory",
            "C /lib/escape Directory opaque",
            "A /lib/escape/passwd File 5",
            "C /opt Directory opaque",
            "A /opt/passwd File 5",
        ]
    );
}

#[test]
fn a_directory_the_walk_may_not_read_fails_the_diff_naming_it() {
    if skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let overlay = Overlay::new();
    for dir in [overlay.base.path(), &overlay.upper(), &overlay.lower()] {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    fs::create_dir(overlay.upper().join("locked")).expect("mkdir");
    fs::set_permissions(overlay.upper().join("locked"), fs::Permissions::from_mode(0o700)).expect("chmod");
    let output = Command::new(SC_EXEC)
        .args(["layer", "diff", "--upper"])
        .arg(overlay.upper())
        .arg("--lower")
        .arg(overlay.lower())
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .expect("runs sc-exec");
    assert_eq!(output.status.code(), Some(74), "EX_IOERR: {}", stderr(&output));
    assert!(output.stdout.is_empty(), "no partial report");
    let message = stderr(&output);
    assert!(message.contains("cannot read the directory /locked of the upper") && message.contains("Permission denied"), "{message}");
}

#[test]
fn facts_of_an_image_are_printed_for_the_listed_paths() {
    if skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let overlay = Overlay::new();
    write(overlay.lower().join("etc/with\nnewline"), "n");
    let paths_file = overlay.base.path().join("paths");
    let paths = [Path::new("/etc/with\nnewline"), Path::new("/nothing")];
    fs::write(&paths_file, encode_path_list(paths).expect("encodes")).expect("write");
    let output = Command::new(SC_EXEC)
        .args(["layer", "facts", "--paths"])
        .arg(&paths_file)
        .arg("--root")
        .arg(overlay.lower())
        .output()
        .expect("runs sc-exec");
    assert!(output.status.success(), "{}", stderr(&output));
    let facts = sc_api::layer_diff::FactsReport::from_json(&output.stdout).expect("a facts report").into_map();
    let with_newline = &facts[Path::new("/etc/with\nnewline")];
    assert_eq!((with_newline.exists, with_newline.size), (true, Some(1)));
    assert_eq!(with_newline.sha256.as_deref(), Some("1b16b1df538ba12dc3f97edbb85caa7050d46c148134290feba80f8236c83db9"));
    assert!(!facts[Path::new("/nothing")].exists);
}
