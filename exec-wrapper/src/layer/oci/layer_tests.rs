use std::fs;
use std::io::Read;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;
use sha2::{Digest, Sha256};
use tar::{Archive, EntryType};

use super::*;

const MTIME: i64 = 1_700_000_000;

fn entry(path: &str, kind: UpperKind, mode: u32) -> UpperEntry {
    UpperEntry { path: PathBuf::from(path), kind, mode, uid: 1000, gid: 1001, mtime: MTIME }
}

fn directory(path: &str) -> UpperEntry {
    entry(path, UpperKind::Directory { opaque: false }, 0o040755)
}

/// A regular file entry whose content is written to `upper` at the same relative path.
fn file(upper: &Path, path: &str, content: &[u8]) -> UpperEntry {
    let source = upper.join(path.trim_start_matches('/'));
    fs::create_dir_all(source.parent().expect("parent")).expect("mkdir");
    fs::write(&source, content).expect("write");
    entry(path, UpperKind::File { size: content.len() as u64, source }, 0o100644)
}

fn layer_bytes(entries: &[UpperEntry]) -> (Vec<u8>, LayerDigests) {
    let mut out = Vec::new();
    let digests = write_layer(entries, &mut out).expect("write layer");
    (out, digests)
}

fn gunzip(blob: &[u8]) -> Vec<u8> {
    let mut tar = Vec::new();
    GzDecoder::new(blob).read_to_end(&mut tar).expect("gunzip");
    tar
}

/// What the tar crate reads back of one entry.
#[derive(Debug)]
struct ReadEntry {
    name: String,
    entry_type: EntryType,
    link_name: Option<String>,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    device: Option<(u32, u32)>,
    username_empty: bool,
    content: Vec<u8>,
}

fn read_back(blob: &[u8]) -> Vec<ReadEntry> {
    let mut archive = Archive::new(GzDecoder::new(blob));
    let mut entries = Vec::new();
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let header = entry.header().clone();
        let mut content = Vec::new();
        entry.read_to_end(&mut content).expect("content");
        let device = match header.entry_type() {
            EntryType::Char | EntryType::Block => {
                Some((header.device_major().expect("major").expect("has major"), header.device_minor().expect("minor").expect("has minor")))
            }
            _ => None,
        };
        entries.push(ReadEntry {
            name: String::from_utf8(entry.path_bytes().into_owned()).expect("utf-8 name"),
            entry_type: header.entry_type(),
            link_name: entry.link_name_bytes().map(|bytes| String::from_utf8(bytes.into_owned()).expect("utf-8 link")),
            mode: header.mode().expect("mode"),
            uid: header.uid().expect("uid"),
            gid: header.gid().expect("gid"),
            mtime: header.mtime().expect("mtime"),
            device,
            username_empty: header.username_bytes().is_none_or(<[u8]>::is_empty) && header.groupname_bytes().is_none_or(<[u8]>::is_empty),
            content,
        });
    }
    entries
}

fn names(entries: &[ReadEntry]) -> Vec<&str> {
    entries.iter().map(|entry| entry.name.as_str()).collect()
}

#[test]
fn directories_are_relative_with_a_trailing_slash_and_keep_owner_mode_and_mtime() {
    let entries = [directory("/etc"), entry("/etc/ssl", UpperKind::Directory { opaque: false }, 0o041750)];
    let (blob, _) = layer_bytes(&entries);
    let read = read_back(&blob);
    assert_eq!(names(&read), ["etc/", "etc/ssl/"]);
    assert!(read.iter().all(|entry| entry.entry_type == EntryType::Directory));
    assert_eq!(read[1].mode, 0o1750, "permission and sticky bits, not the type bits of st_mode");
    assert_eq!((read[0].uid, read[0].gid, read[0].mtime), (1000, 1001, MTIME as u64));
    assert!(read.iter().all(|entry| entry.username_empty), "uname and gname stay empty");
}

#[test]
fn regular_files_carry_their_content() {
    let upper = tempfile::tempdir().expect("tempdir");
    let entries = [directory("/etc"), file(upper.path(), "/etc/hosts", b"127.0.0.1 localhost\n"), file(upper.path(), "/empty", b"")];
    let (blob, _) = layer_bytes(&entries);
    let read = read_back(&blob);
    assert_eq!(names(&read), ["etc/", "etc/hosts", "empty"]);
    assert_eq!(read[1].entry_type, EntryType::Regular);
    assert_eq!(read[1].content, b"127.0.0.1 localhost\n");
    assert_eq!(read[1].mode, 0o644);
    assert!(read[2].content.is_empty());
}

#[test]
fn symlinks_keep_their_target_as_written() {
    let entries = [
        entry("/lib", UpperKind::Symlink { target: PathBuf::from("usr/lib") }, 0o120777),
        entry("/etc-link", UpperKind::Symlink { target: PathBuf::from("/etc/") }, 0o120777),
        entry("/up", UpperKind::Symlink { target: PathBuf::from("../x") }, 0o120777),
    ];
    let (blob, _) = layer_bytes(&entries);
    let read = read_back(&blob);
    assert_eq!(names(&read), ["lib", "etc-link", "up"]);
    assert!(read.iter().all(|entry| entry.entry_type == EntryType::Symlink));
    let targets: Vec<_> = read.iter().map(|entry| entry.link_name.as_deref()).collect();
    assert_eq!(targets, [Some("usr/lib"), Some("/etc/"), Some("../x")]);
    assert_eq!(read[0].mode, 0o777);
}

#[test]
fn hard_links_name_their_target_relative_to_the_layer_root() {
    let upper = tempfile::tempdir().expect("tempdir");
    let entries = [
        directory("/bin"),
        file(upper.path(), "/bin/tool", b"#!/bin/sh\n"),
        entry("/bin/tool-alias", UpperKind::HardLink { target: PathBuf::from("/bin/tool") }, 0o100755),
    ];
    let (blob, _) = layer_bytes(&entries);
    let read = read_back(&blob);
    assert_eq!(read[2].name, "bin/tool-alias");
    assert_eq!(read[2].entry_type, EntryType::Link);
    assert_eq!(read[2].link_name.as_deref(), Some("bin/tool"));
    assert!(read[2].content.is_empty(), "a hard link carries no content of its own");
}

#[test]
fn a_hard_link_to_a_file_not_written_before_is_refused() {
    let entries = [entry("/alias", UpperKind::HardLink { target: PathBuf::from("/missing") }, 0o100644)];
    let error = write_layer(&entries, Vec::new()).expect_err("dangling hard link");
    assert!(matches!(error, LayerError::HardLinkTargetMissing { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("/alias") && message.contains("/missing"), "{message}");
}

#[test]
fn devices_and_fifos_keep_their_numbers_and_type() {
    let entries = [
        entry("/dev-null", UpperKind::CharDevice { major: 1, minor: 3 }, 0o020666),
        entry("/disk", UpperKind::BlockDevice { major: 8, minor: 1 }, 0o060660),
        entry("/pipe", UpperKind::Fifo, 0o010600),
    ];
    let (blob, _) = layer_bytes(&entries);
    let read = read_back(&blob);
    assert_eq!(names(&read), ["dev-null", "disk", "pipe"]);
    assert_eq!((read[0].entry_type, read[0].device, read[0].mode), (EntryType::Char, Some((1, 3)), 0o666));
    assert_eq!((read[1].entry_type, read[1].device, read[1].mode), (EntryType::Block, Some((8, 1)), 0o660));
    assert_eq!((read[2].entry_type, read[2].mode), (EntryType::Fifo, 0o600));
}

#[test]
fn sockets_are_left_out_and_counted() {
    let entries =
        [directory("/run"), entry("/run/app.sock", UpperKind::Socket, 0o140755), entry("/run/db.sock", UpperKind::Socket, 0o140755)];
    let (blob, digests) = layer_bytes(&entries);
    assert_eq!(names(&read_back(&blob)), ["run/"]);
    assert_eq!(digests.skipped_sockets, [PathBuf::from("/run/app.sock"), PathBuf::from("/run/db.sock")]);
}

#[test]
fn whiteouts_are_empty_wh_files_in_the_parent() {
    let entries =
        [directory("/etc"), entry("/etc/motd", UpperKind::Whiteout, 0o020000), entry("/top-level", UpperKind::Whiteout, 0o020000)];
    let (blob, _) = layer_bytes(&entries);
    let read = read_back(&blob);
    assert_eq!(names(&read), ["etc/", "etc/.wh.motd", ".wh.top-level"]);
    for whiteout in &read[1..] {
        assert_eq!(whiteout.entry_type, EntryType::Regular);
        assert!(whiteout.content.is_empty());
        assert_eq!(whiteout.mode, 0o600);
        assert_eq!((whiteout.uid, whiteout.gid), (1000, 1001));
    }
}

#[test]
fn an_opaque_directory_is_followed_by_its_marker_before_its_content() {
    let upper = tempfile::tempdir().expect("tempdir");
    let entries =
        [entry("/opt", UpperKind::Directory { opaque: true }, 0o040755), file(upper.path(), "/opt/new", b"fresh"), directory("/srv")];
    let (blob, _) = layer_bytes(&entries);
    let read = read_back(&blob);
    assert_eq!(names(&read), ["opt/", "opt/.wh..wh..opq", "opt/new", "srv/"]);
    assert_eq!(read[1].entry_type, EntryType::Regular);
    assert!(read[1].content.is_empty());
    assert_eq!(read[1].mode, 0o755);
}

#[test]
fn the_root_directory_is_not_written_even_when_opaque() {
    let entries = [entry("/", UpperKind::Directory { opaque: true }, 0o040755), directory("/etc")];
    let (blob, _) = layer_bytes(&entries);
    assert_eq!(names(&read_back(&blob)), ["etc/"]);
}

#[test]
fn long_names_and_link_targets_survive() {
    let upper = tempfile::tempdir().expect("tempdir");
    let long_name = "n".repeat(150);
    let long_dir = format!("/{}", "d".repeat(120));
    let long_file = format!("{long_dir}/{long_name}");
    let long_target = format!("/{}/{}", "t".repeat(90), "u".repeat(90));
    let entries = [
        directory(&long_dir),
        file(upper.path(), &long_file, b"long"),
        entry(&format!("{long_dir}/link"), UpperKind::Symlink { target: PathBuf::from(&long_target) }, 0o120777),
        entry(&format!("{long_dir}/hard"), UpperKind::HardLink { target: PathBuf::from(&long_file) }, 0o100644),
        entry(&format!("{long_dir}/.wh-free/{long_name}"), UpperKind::Whiteout, 0o020000),
    ];
    let (blob, _) = layer_bytes(&entries);
    let read = read_back(&blob);
    let long_dir = &long_dir[1..];
    assert_eq!(read[0].name, format!("{long_dir}/"));
    assert_eq!(read[1].name, format!("{long_dir}/{long_name}"));
    assert_eq!(read[1].content, b"long");
    assert_eq!(read[2].link_name.as_deref(), Some(long_target.as_str()));
    assert_eq!(read[3].link_name.as_deref(), Some(&long_file[1..]));
    assert_eq!(read[4].name, format!("{long_dir}/.wh-free/.wh.{long_name}"));
}

#[test]
fn numbers_beyond_octal_fields_survive() {
    let mut big = directory("/big");
    big.uid = 3_000_000;
    big.gid = u32::MAX;
    big.mtime = 1 << 34;
    let (blob, _) = layer_bytes(&[big]);
    let read = read_back(&blob);
    assert_eq!((read[0].uid, read[0].gid, read[0].mtime), (3_000_000, u64::from(u32::MAX), 1 << 34));
}

#[test]
fn an_mtime_before_1970_is_written_as_1970() {
    let mut old = directory("/old");
    old.mtime = -86_400;
    let (blob, _) = layer_bytes(&[old]);
    assert_eq!(read_back(&blob)[0].mtime, 0);
}

#[test]
fn headers_carry_no_access_or_change_time() {
    let (blob, _) = layer_bytes(&[directory("/etc")]);
    let tar = gunzip(&blob);
    let header = tar::Header::from_byte_slice(&tar[..512]);
    let gnu = header.as_gnu().expect("a GNU header");
    assert!(gnu.atime.iter().chain(gnu.ctime.iter()).all(|byte| *byte == 0), "{:?} {:?}", gnu.atime, gnu.ctime);
}

#[test]
fn the_same_entries_give_the_same_digests_and_an_mtime_changes_them() {
    let upper = tempfile::tempdir().expect("tempdir");
    let entries = vec![
        directory("/etc"),
        file(upper.path(), "/etc/hosts", b"127.0.0.1 localhost\n"),
        entry("/etc/motd", UpperKind::Whiteout, 0o020000),
    ];
    let (first_blob, first) = layer_bytes(&entries);
    let (second_blob, second) = layer_bytes(&entries);
    assert_eq!(first, second);
    assert_eq!(first_blob, second_blob);

    let mut touched = entries.clone();
    touched[1].mtime += 1;
    let (_, changed) = layer_bytes(&touched);
    assert_ne!(changed.diff_id, first.diff_id);
    assert_ne!(changed.blob_digest, first.blob_digest);
}

#[test]
fn the_digests_are_those_of_the_bytes_written() {
    let upper = tempfile::tempdir().expect("tempdir");
    // Incompressible content of several buffers' length, so the streams are written in many pieces.
    let content: Vec<u8> = (0..300_000u32).map(|index| (index.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let entries = [directory("/data"), file(upper.path(), "/data/blob", &content)];
    let (blob, digests) = layer_bytes(&entries);
    assert_eq!(digests.blob_digest, format!("sha256:{}", hex::encode(Sha256::digest(&blob))));
    assert_eq!(digests.blob_size, blob.len() as u64);
    let tar = gunzip(&blob);
    assert_eq!(digests.diff_id, format!("sha256:{}", hex::encode(Sha256::digest(&tar))));
    assert_eq!(digests.tar_size, tar.len() as u64);
    assert_eq!(read_back(&blob)[1].content, content);
}

#[test]
fn the_gzip_header_has_no_mtime_and_no_file_name() {
    let (blob, _) = layer_bytes(&[directory("/etc")]);
    assert_eq!(&blob[..3], &[0x1f, 0x8b, 8], "gzip magic and deflate");
    assert_eq!(blob[3], 0, "no flags: no file name, comment or extra field");
    assert_eq!(&blob[4..8], &[0, 0, 0, 0], "mtime 0");
}

#[test]
fn a_source_replaced_by_a_symlink_is_not_followed() {
    let upper = tempfile::tempdir().expect("tempdir");
    let outside = upper.path().join("outside-secret");
    fs::write(&outside, b"secret").expect("write");
    let mut hosts = file(upper.path(), "/etc/hosts", b"secret");
    let UpperKind::File { source, .. } = &hosts.kind else { unreachable!("a file entry") };
    let source = source.clone();
    fs::remove_file(&source).expect("remove");
    symlink(&outside, &source).expect("symlink");
    hosts.kind = UpperKind::File { size: 6, source: source.clone() };

    let error = write_layer(&[directory("/etc"), hosts], Vec::new()).expect_err("a symlink source");
    assert!(matches!(error, LayerError::SourceIsSymlink { .. }), "{error:?}");
    assert!(error.to_string().contains(&source.display().to_string()), "{error}");
}

#[test]
fn a_source_under_a_directory_replaced_by_a_symlink_is_not_followed() {
    let upper = tempfile::tempdir().expect("tempdir");
    let elsewhere = upper.path().join("elsewhere");
    fs::create_dir(&elsewhere).expect("mkdir");
    fs::write(elsewhere.join("hosts"), b"secret").expect("write");
    symlink(&elsewhere, upper.path().join("etc")).expect("symlink");
    let source = upper.path().join("etc/hosts");
    let hosts = entry("/etc/hosts", UpperKind::File { size: 6, source: source.clone() }, 0o100644);

    let error = write_layer(&[hosts], Vec::new()).expect_err("a symlink on the way");
    assert!(matches!(error, LayerError::SourceIsSymlink { .. }), "{error:?}");
    assert!(error.to_string().contains(&source.display().to_string()), "{error}");
}

#[test]
fn a_source_whose_size_changed_since_the_walk_is_refused() {
    let upper = tempfile::tempdir().expect("tempdir");
    let mut hosts = file(upper.path(), "/hosts", b"12345");
    hosts.kind = UpperKind::File { size: 3, source: upper.path().join("hosts") };
    let error = write_layer(&[hosts], Vec::new()).expect_err("size changed");
    assert!(matches!(error, LayerError::SourceSizeChanged { expected: 3, found: 5, .. }), "{error:?}");
    assert!(error.to_string().contains("/hosts"), "{error}");
}

#[test]
fn a_source_replaced_by_a_fifo_is_refused_without_blocking() {
    let upper = tempfile::tempdir().expect("tempdir");
    let source = upper.path().join("pipe");
    nix::unistd::mkfifo(&source, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    let pipe = entry("/pipe", UpperKind::File { size: 0, source }, 0o100644);
    let error = write_layer(&[pipe], Vec::new()).expect_err("a FIFO source");
    assert!(matches!(error, LayerError::SourceNotRegular { found: "FIFO", .. }), "{error:?}");
}

#[test]
fn a_missing_source_names_the_path() {
    let missing = entry("/gone", UpperKind::File { size: 1, source: PathBuf::from("/nonexistent/upper/gone") }, 0o100644);
    let error = write_layer(&[missing], Vec::new()).expect_err("missing source");
    assert!(matches!(error, LayerError::OpenSource { .. }), "{error:?}");
    assert!(error.to_string().contains("/nonexistent/upper/gone"), "{error}");
}

#[test]
fn a_file_that_grows_or_shrinks_while_read_fails_the_layer() {
    let upper = tempfile::tempdir().expect("tempdir");
    let source = upper.path().join("log");
    fs::write(&source, b"0123456789").expect("write");
    let file = File::open(&source).expect("open");

    let mut failure = None;
    let mut grown = SourceReader { file, expected: 4, remaining: 4, failure: &mut failure };
    let mut content = Vec::new();
    assert!(grown.read_to_end(&mut content).is_err(), "more bytes than the walk found");
    assert!(matches!(failure, Some(SourceFailure::SizeChanged)));

    let file = File::open(&source).expect("open");
    let mut failure = None;
    let mut shrunk = SourceReader { file, expected: 20, remaining: 20, failure: &mut failure };
    assert!(shrunk.read_to_end(&mut Vec::new()).is_err(), "fewer bytes than the walk found");
    assert!(matches!(failure, Some(SourceFailure::SizeChanged)));

    let file = File::open(&source).expect("open");
    let mut failure = None;
    let mut exact = SourceReader { file, expected: 10, remaining: 10, failure: &mut failure };
    let mut content = Vec::new();
    exact.read_to_end(&mut content).expect("exactly the walk's size");
    assert_eq!(content, b"0123456789");
    assert!(failure.is_none());
}

#[test]
fn a_user_file_named_like_a_whiteout_is_refused() {
    let upper = tempfile::tempdir().expect("tempdir");
    let entries = [file(upper.path(), "/.wh.notes", b"mine")];
    let error = write_layer(&entries, Vec::new()).expect_err("reserved name");
    assert!(matches!(error, LayerError::ReservedName { .. }), "{error:?}");
    assert!(error.to_string().contains("/.wh.notes"), "{error}");
}

#[test]
fn paths_that_are_relative_or_climb_are_refused() {
    for path in ["etc/hosts", "/etc/../../hosts"] {
        let error = write_layer(&[directory(path)], Vec::new()).expect_err("invalid path");
        assert!(matches!(error, LayerError::InvalidPath { .. }), "{path}: {error:?}");
        assert!(error.to_string().contains(path), "{error}");
    }
}

#[test]
fn an_empty_upper_is_an_empty_archive() {
    let (blob, digests) = layer_bytes(&[]);
    assert!(read_back(&blob).is_empty());
    assert_eq!(digests.tar_size, 1024, "the two zero blocks that end a tar");
}
