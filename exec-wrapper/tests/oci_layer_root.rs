//! The OCI layer of `kubectl sc export` from a real upper directory (with the device nodes only
//! root can make: an overlay whiteout, a character device), listed and extracted by GNU tar, the
//! reader most unlike the `tar` crate that wrote it. Needs root; as a normal user each test skips
//! with a message.

mod support;

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt, symlink};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use exec_wrapper::layer::oci::{LayerError, write_layer};
use exec_wrapper::layer::{UpperEntry, UpperKind};
use nix::sys::stat::{Mode, SFlag, makedev, mknod};
use support::skip_unless_root;

/// What these tests need root for, said when they skip as a normal user.
const NEEDS_ROOT: &str = "mknod of the whiteout and device nodes";

/// Longer than a tar header's 100-byte name field: written as a GNU long name.
const LONG_NAME: &str = "a-file-name-of-a-hundred-and-fifty-characters-that-no-tar-header-name-field-can-hold-so-it-goes-into-a-gnu-longlink-entry-before-the-header-of-the-file";

/// 2023-11-14 22:13:20 UTC: every entry's mtime, so the listing's dates are known.
const MTIME: i64 = 1_700_000_000;

/// The upper's entries, relative paths in walk order (parents first), with the opaque ones named:
/// what the walk and the node plugin's list of opaque directories would give.
fn entries_of(upper: &Path, paths: &[&str], opaque: &[&str]) -> Vec<UpperEntry> {
    let mut first_name_of_inode: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let mut entries = Vec::new();
    for relative in paths {
        let on_disk = upper.join(relative);
        let path = Path::new("/").join(relative);
        let metadata = fs::symlink_metadata(&on_disk).expect("lstat");
        let file_type = metadata.file_type();
        let device = || (nix::sys::stat::major(metadata.rdev()) as u32, nix::sys::stat::minor(metadata.rdev()) as u32);
        let kind = if file_type.is_dir() {
            UpperKind::Directory { opaque: opaque.contains(relative) }
        } else if file_type.is_symlink() {
            UpperKind::Symlink { target: fs::read_link(&on_disk).expect("readlink") }
        } else if file_type.is_file() {
            match first_name_of_inode.get(&(metadata.dev(), metadata.ino())) {
                Some(first) => UpperKind::HardLink { target: first.clone() },
                None => {
                    first_name_of_inode.insert((metadata.dev(), metadata.ino()), path.clone());
                    UpperKind::File { size: metadata.len(), source: on_disk.clone() }
                }
            }
        } else if file_type.is_char_device() && device() == (0, 0) {
            UpperKind::Whiteout
        } else if file_type.is_char_device() {
            let (major, minor) = device();
            UpperKind::CharDevice { major, minor }
        } else if file_type.is_block_device() {
            let (major, minor) = device();
            UpperKind::BlockDevice { major, minor }
        } else if file_type.is_fifo() {
            UpperKind::Fifo
        } else {
            UpperKind::Socket
        };
        entries.push(UpperEntry { path, kind, mode: metadata.mode(), uid: metadata.uid(), gid: metadata.gid(), mtime: MTIME });
    }
    entries
}

fn make_node(path: &Path, kind: SFlag, mode: u32, major: u64, minor: u64) {
    mknod(path, kind, Mode::from_bits_truncate(mode), makedev(major, minor)).expect("mknod");
    // mknod's mode is masked by the umask; the test wants exactly `mode`.
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// An upper as the overlay leaves it after a user added, changed, linked and deleted files.
fn populated_upper(upper: &Path) -> Vec<UpperEntry> {
    fs::create_dir_all(upper.join("etc")).expect("mkdir");
    fs::write(upper.join("etc/hosts"), "127.0.0.1 localhost\n10.0.0.1 db\n").expect("write");
    fs::hard_link(upper.join("etc/hosts"), upper.join("etc/hosts.bak")).expect("hard link");
    symlink("hosts", upper.join("etc/hosts.link")).expect("symlink");
    make_node(&upper.join("etc/motd"), SFlag::S_IFCHR, 0, 0, 0);
    fs::create_dir(upper.join("opt")).expect("mkdir");
    fs::write(upper.join("opt/tool"), "#!/bin/sh\necho tool\n").expect("write");
    fs::set_permissions(upper.join("opt/tool"), fs::Permissions::from_mode(0o755)).expect("chmod");
    fs::write(upper.join("opt").join(LONG_NAME), "long\n").expect("write");
    fs::create_dir(upper.join("dev")).expect("mkdir");
    make_node(&upper.join("dev/null"), SFlag::S_IFCHR, 0o666, 1, 3);
    nix::unistd::mkfifo(&upper.join("dev/pipe"), Mode::from_bits_truncate(0o600)).expect("mkfifo");
    let _listener = UnixListener::bind(upper.join("dev/app.sock")).expect("socket");
    nix::unistd::chown(&upper.join("opt/tool"), Some(1000.into()), Some(1001.into())).expect("chown");

    let long_path = format!("opt/{LONG_NAME}");
    let paths = [
        "etc",
        "etc/hosts",
        "etc/hosts.bak",
        "etc/hosts.link",
        "etc/motd",
        "opt",
        &long_path,
        "opt/tool",
        "dev",
        "dev/app.sock",
        "dev/null",
        "dev/pipe",
    ];
    entries_of(upper, &paths, &["opt"])
}

fn gnu_tar(arguments: &[&str]) -> String {
    let output = Command::new("tar").args(arguments).env("TZ", "UTC").env("LC_ALL", "C").output().expect("run GNU tar");
    assert!(output.status.success(), "tar {arguments:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("utf-8 listing")
}

#[test]
fn gnu_tar_lists_and_extracts_the_layer_of_a_real_upper() {
    if skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let base = tempfile::tempdir().expect("tempdir");
    let upper = base.path().join("upper");
    fs::create_dir(&upper).expect("mkdir");
    let entries = populated_upper(&upper);
    let layer_path = base.path().join("layer.tar.gz");
    let digests = write_layer(&entries, fs::File::create(&layer_path).expect("create layer")).expect("write layer");
    assert_eq!(digests.skipped_sockets, [PathBuf::from("/dev/app.sock")]);
    assert_eq!(digests.blob_size, fs::metadata(&layer_path).expect("stat layer").len());

    let layer = layer_path.to_str().expect("utf-8 path");
    let listing = gnu_tar(&["-tvzf", layer, "--numeric-owner"]);
    let lines: Vec<&str> = listing.lines().collect();
    let long_path = format!("opt/{LONG_NAME}");
    let expected = [
        ("drwxr-xr-x 0/0", "etc/"),
        ("-rw-r--r-- 0/0", "etc/hosts"),
        ("hrw-r--r-- 0/0", "etc/hosts.bak link to etc/hosts"),
        ("lrwxrwxrwx 0/0", "etc/hosts.link -> hosts"),
        ("-rw------- 0/0", "etc/.wh.motd"),
        ("drwxr-xr-x 0/0", "opt/"),
        ("-rwxr-xr-x 0/0", "opt/.wh..wh..opq"),
        ("-rw-r--r-- 0/0", long_path.as_str()),
        ("-rwxr-xr-x 1000/1001", "opt/tool"),
        ("drwxr-xr-x 0/0", "dev/"),
        ("crw-rw-rw- 0/0", "dev/null"),
        ("prw------- 0/0", "dev/pipe"),
    ];
    assert_eq!(lines.len(), expected.len(), "{listing}");
    for (line, (mode_and_owner, name)) in lines.iter().zip(expected) {
        assert!(line.starts_with(mode_and_owner), "{line:?} should start with {mode_and_owner:?}\n{listing}");
        assert!(line.ends_with(&format!("2023-11-14 22:13 {name}")), "{line:?} should end with {name:?}\n{listing}");
    }
    assert!(lines[10].contains(" 1,3 "), "the device numbers: {}", lines[10]);

    let extracted = base.path().join("extracted");
    fs::create_dir(&extracted).expect("mkdir");
    gnu_tar(&["-xzf", layer, "-C", extracted.to_str().expect("utf-8 path"), "--numeric-owner", "--same-permissions"]);
    assert_eq!(fs::read_to_string(extracted.join("etc/hosts")).expect("hosts"), "127.0.0.1 localhost\n10.0.0.1 db\n");
    let hosts = fs::metadata(extracted.join("etc/hosts")).expect("stat");
    assert_eq!(fs::metadata(extracted.join("etc/hosts.bak")).expect("stat").ino(), hosts.ino(), "one inode, two names");
    assert_eq!(fs::read_link(extracted.join("etc/hosts.link")).expect("readlink"), Path::new("hosts"));
    let tool = fs::metadata(extracted.join("opt/tool")).expect("stat");
    assert_eq!((tool.uid(), tool.gid(), tool.mode() & 0o7777, tool.mtime()), (1000, 1001, 0o755, MTIME));
    let null = fs::metadata(extracted.join("dev/null")).expect("stat");
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), makedev(1, 3));
    assert_eq!(fs::metadata(extracted.join("etc/.wh.motd")).expect("whiteout").len(), 0);
    assert_eq!(fs::read_to_string(extracted.join("opt").join(LONG_NAME)).expect("long name"), "long\n");
}

#[test]
fn a_file_replaced_by_a_symlink_after_the_walk_is_not_followed() {
    if skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let base = tempfile::tempdir().expect("tempdir");
    let upper = base.path().join("upper");
    fs::create_dir(&upper).expect("mkdir");
    let entries = populated_upper(&upper);
    // The tenant swaps a file for a link to something only the exporting pod can read.
    let secret = base.path().join("service-account-token");
    fs::write(&secret, "x".repeat(31)).expect("write");
    fs::remove_file(upper.join("etc/hosts")).expect("remove");
    symlink(&secret, upper.join("etc/hosts")).expect("symlink");

    let error = write_layer(&entries, Vec::new()).expect_err("a symlink source");
    assert!(matches!(error, LayerError::SourceIsSymlink { .. }), "{error:?}");
    assert!(error.to_string().contains(&upper.join("etc/hosts").display().to_string()), "{error}");
}
