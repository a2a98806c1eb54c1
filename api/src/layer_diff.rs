//! What `kubectl sc diff` shows and the rebase report compares: the user's changes against the
//! image, as `sc-exec layer diff` prints them ([`DiffReport`]) and `kubectl sc` reads them; the
//! facts `sc-exec layer facts` gathers about paths of an image ([`FactsReport`]); the conflicts
//! between the user's changes and an image change ([`Conflict`]); and the path-list file format
//! the node plugin and `sc-exec` exchange paths in ([`encode_path_list`], [`parse_path_list`]).
//!
//! Paths are the rootfs's own (`/etc/hosts`), byte strings as the kernel keeps them. In JSON a
//! path is a string when it is UTF-8 (nearly always) and `{"bytes": [..]}` when it is not, so a
//! file with a Latin-1 name neither breaks the report nor comes back under another name.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The version of the JSON documents of this module ([`DiffReport`], [`FactsReport`]). A reader
/// refuses another version rather than misreading it; bump it on any change that an older reader
/// would misread (a renamed field, a new meaning).
pub const LAYER_DIFF_FORMAT_VERSION: u32 = 1;

// ---------------------------------------------------------------------------------------------
// The path-list file
// ---------------------------------------------------------------------------------------------

/// A path list file: absolute paths, each followed by one NUL byte (`/var/cache\0/opt/app\0`),
/// as `find -print0` writes them. NUL is the one byte a path cannot hold, so any path (one with
/// a newline, one that is not UTF-8) is written as it is; the terminator after the last entry too
/// tells a complete file from one cut short. An empty file is an empty list.
///
/// Every path is in the one form [`parse_path_list`] accepts: absolute, no `.` or `..`
/// component, no doubled or trailing `/`.
pub fn encode_path_list<'a>(paths: impl IntoIterator<Item = &'a Path>) -> Result<Vec<u8>, PathListError> {
    let mut encoded = Vec::new();
    for (index, path) in paths.into_iter().enumerate() {
        check_list_path(index, path.as_os_str().as_bytes())?;
        encoded.extend_from_slice(path.as_os_str().as_bytes());
        encoded.push(0);
    }
    Ok(encoded)
}

/// Reads a path list file (see [`encode_path_list`] for the format).
pub fn parse_path_list(bytes: &[u8]) -> Result<Vec<PathBuf>, PathListError> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let Some(body) = bytes.strip_suffix(&[0]) else {
        return Err(PathListError::Unterminated { entries: bytes.iter().filter(|&&byte| byte == 0).count() });
    };
    body.split(|&byte| byte == 0)
        .enumerate()
        .map(|(index, entry)| check_list_path(index, entry).map(|()| PathBuf::from(OsStr::from_bytes(entry))))
        .collect()
}

fn check_list_path(index: usize, bytes: &[u8]) -> Result<(), PathListError> {
    // By bytes, not through `Path::components`, which would hide a `.` or a doubled `/`.
    let components = || bytes.get(1..).unwrap_or_default().split(|&byte| byte == b'/');
    let problem = if bytes.is_empty() {
        Some("it is empty")
    } else if bytes.contains(&0) {
        Some("it contains a NUL byte")
    } else if bytes[0] != b'/' {
        Some("it is not absolute")
    } else if components().any(|component| component == b"." || component == b"..") {
        Some("it has a `.` or `..` component")
    } else if bytes != b"/" && components().any(<[u8]>::is_empty) {
        Some("it has a doubled or trailing `/`")
    } else {
        None
    };
    match problem {
        Some(problem) => {
            Err(PathListError::InvalidPath { index, path: Path::new(OsStr::from_bytes(bytes)).display().to_string(), problem })
        }
        None => Ok(()),
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PathListError {
    #[error(
        "the path list does not end with a NUL byte after {entries} complete entries: every path is followed by one NUL \
         byte, so the file was cut short (or written as lines); write it again with encode_path_list"
    )]
    Unterminated { entries: usize },
    #[error(
        "entry {index} of the path list ({path:?}) cannot be used: {problem}; every entry must be an absolute path inside \
         the rootfs, without `.`, `..`, doubled or trailing `/`"
    )]
    InvalidPath { index: usize, path: String, problem: &'static str },
}

// ---------------------------------------------------------------------------------------------
// Paths in JSON
// ---------------------------------------------------------------------------------------------

/// Serde for a path: a string when it is UTF-8, else `{"bytes": [...]}` (lossless either way).
pub mod json_path {
    use std::ffi::OsString;
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    use std::path::{Path, PathBuf};

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum JsonPath<'a> {
        Text(std::borrow::Cow<'a, str>),
        Bytes { bytes: std::borrow::Cow<'a, [u8]> },
    }

    fn to_json(path: &Path) -> JsonPath<'_> {
        match path.to_str() {
            Some(text) => JsonPath::Text(text.into()),
            None => JsonPath::Bytes { bytes: path.as_os_str().as_bytes().into() },
        }
    }

    fn from_json(json: JsonPath<'_>) -> PathBuf {
        match json {
            JsonPath::Text(text) => PathBuf::from(text.into_owned()),
            JsonPath::Bytes { bytes } => PathBuf::from(OsString::from_vec(bytes.into_owned())),
        }
    }

    pub fn serialize<S: Serializer>(path: &Path, serializer: S) -> Result<S::Ok, S::Error> {
        to_json(path).serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<PathBuf, D::Error> {
        JsonPath::deserialize(deserializer).map(from_json)
    }

    /// The same for an optional path.
    pub mod optional {
        use super::*;

        pub fn serialize<S: Serializer>(path: &Option<PathBuf>, serializer: S) -> Result<S::Ok, S::Error> {
            path.as_deref().map(to_json).serialize(serializer)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<PathBuf>, D::Error> {
            Option::<JsonPath<'_>>::deserialize(deserializer).map(|json| json.map(from_json))
        }
    }

    /// The same for a list of paths.
    pub mod list {
        use super::*;

        pub fn serialize<S: Serializer>(paths: &[PathBuf], serializer: S) -> Result<S::Ok, S::Error> {
            serializer.collect_seq(paths.iter().map(|path| to_json(path)))
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<PathBuf>, D::Error> {
            Vec::<JsonPath<'_>>::deserialize(deserializer).map(|list| list.into_iter().map(from_json).collect())
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Diff entries
// ---------------------------------------------------------------------------------------------

/// How a path of the rootfs differs from the image (`docker diff`'s `A`, `C`, `D`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "camelCase")]
pub enum Change {
    /// The image has nothing at this path; the user created it.
    Added,
    /// The image has this path; the user's version replaces it (for a directory: something in
    /// it, or the directory itself, changed).
    Changed,
    /// The user deleted the image's entry at this path.
    Deleted,
}

impl Change {
    /// `A`, `C` or `D`, as `docker diff` prints them.
    pub fn letter(self) -> char {
        match self {
            Change::Added => 'A',
            Change::Changed => 'C',
            Change::Deleted => 'D',
        }
    }
}

/// What a path is (the file type of `lstat`), plus the two things only an upper holds: a second
/// name of a file the layer already lists, and a whiteout.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum FileType {
    File,
    Directory,
    Symlink,
    /// Another name of a regular file listed earlier (`link_target`).
    Hardlink,
    CharDevice,
    BlockDevice,
    Fifo,
    Socket,
    /// A deletion marker whose path the image does not have (any more): it hides nothing now, but
    /// would hide an entry a later image brings to that path.
    Whiteout,
}

impl FileType {
    /// The word for it in a sentence (`a directory`).
    pub fn noun(self) -> &'static str {
        match self {
            FileType::File => "a file",
            FileType::Directory => "a directory",
            FileType::Symlink => "a symlink",
            FileType::Hardlink => "a hard link",
            FileType::CharDevice => "a character device",
            FileType::BlockDevice => "a block device",
            FileType::Fifo => "a fifo",
            FileType::Socket => "a socket",
            FileType::Whiteout => "a whiteout",
        }
    }
}

/// One changed path.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DiffEntry {
    pub change: Change,
    #[serde(with = "json_path")]
    pub path: PathBuf,
    /// What the user's layer has at the path; for a deletion, what the image has there (what was
    /// deleted), or `whiteout` when the image has nothing there.
    pub file_type: FileType,
    /// Bytes of a regular file (not for a hard link: its bytes are the target's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// A directory that replaces the image's directory of the same path: nothing the image has in
    /// it is visible (the user removed the directory and made a new one).
    #[serde(default)]
    pub opaque: bool,
    /// A symlink's target, or the path a hard link shares its file with.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "json_path::optional")]
    pub link_target: Option<PathBuf>,
}

/// What `sc-exec layer diff` prints: every changed path, in path order (a directory right before
/// what is in it).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DiffReport {
    /// [`LAYER_DIFF_FORMAT_VERSION`] of the writer.
    pub format_version: u32,
    pub entries: Vec<DiffEntry>,
    /// Paths (and everything below them) left out of the comparison: the files kubelet mounts into
    /// every container, which the user's layer holds only as mount points.
    #[serde(default, with = "json_path::list")]
    pub excluded_paths: Vec<PathBuf>,
}

impl DiffReport {
    pub fn new(entries: Vec<DiffEntry>, excluded_paths: Vec<PathBuf>) -> Self {
        Self { format_version: LAYER_DIFF_FORMAT_VERSION, entries, excluded_paths }
    }

    /// Reads a report, refusing one of another format version.
    pub fn from_json(json: &[u8]) -> Result<Self, ReportError> {
        let report: Self = read_versioned(json, "diff report")?;
        Ok(report)
    }
}

/// A document of this module that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("the {document} is not valid JSON of the expected shape: {source}. It should be what `sc-exec layer` printed.")]
    Json { document: &'static str, source: serde_json::Error },
    #[error(
        "the {document} has format version {found}, this program reads version {expected}: sc-exec and kubectl sc are of \
         different releases; use a kubectl sc of the cluster's release"
    )]
    Version { document: &'static str, found: u32, expected: u32 },
}

fn read_versioned<T: serde::de::DeserializeOwned>(json: &[u8], document: &'static str) -> Result<T, ReportError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Versioned {
        format_version: u32,
    }
    // The version first, so that a document of another version is refused for what it is, not
    // for the first field it names differently.
    let versioned: Versioned = serde_json::from_slice(json).map_err(|source| ReportError::Json { document, source })?;
    if versioned.format_version != LAYER_DIFF_FORMAT_VERSION {
        return Err(ReportError::Version { document, found: versioned.format_version, expected: LAYER_DIFF_FORMAT_VERSION });
    }
    serde_json::from_slice(json).map_err(|source| ReportError::Json { document, source })
}

/// Whether `path` is `prefix` or below it, by whole components: `/etc` covers `/etc` and
/// `/etc/x`, not `/etcx`.
pub fn is_at_or_below(path: &Path, prefix: &Path) -> bool {
    path.starts_with(prefix)
}

/// The entries at or below any of `prefixes` (all of them when `prefixes` is empty), in their
/// order.
pub fn filter_by_prefix(entries: &[DiffEntry], prefixes: &[PathBuf]) -> Vec<DiffEntry> {
    entries
        .iter()
        .filter(|entry| prefixes.is_empty() || prefixes.iter().any(|prefix| is_at_or_below(&entry.path, prefix)))
        .cloned()
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The stat
// ---------------------------------------------------------------------------------------------

/// Counts of changed entries and the bytes the user's layer holds for them.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ChangeCounts {
    pub added: u64,
    pub changed: u64,
    pub deleted: u64,
    /// Bytes of the regular files added or changed: what the user's layer holds for them (a hard
    /// link's bytes are its target's and count once).
    pub bytes_added: u64,
}

impl ChangeCounts {
    fn count(&mut self, entry: &DiffEntry) {
        match entry.change {
            Change::Added => self.added += 1,
            Change::Changed => self.changed += 1,
            Change::Deleted => self.deleted += 1,
        }
        if entry.change != Change::Deleted && entry.file_type == FileType::File {
            self.bytes_added += entry.size.unwrap_or(0);
        }
    }
}

/// The counts of one top-level directory of the rootfs (`/etc`), or of a top-level entry that
/// is not a directory (`/data.bin`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DirectoryStat {
    #[serde(with = "json_path")]
    pub directory: PathBuf,
    #[serde(flatten)]
    pub counts: ChangeCounts,
}

/// `kubectl sc diff --stat`: the counts per top-level directory, in path order, and in all.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DiffStat {
    pub directories: Vec<DirectoryStat>,
    pub total: ChangeCounts,
}

/// Counts `entries` per top-level directory. Every entry counts, directories too (a directory
/// listed as changed because something in it changed counts as one change), so the counts are
/// those of the list `kubectl sc diff` prints.
pub fn diff_stat(entries: &[DiffEntry]) -> DiffStat {
    let mut per_directory: BTreeMap<PathBuf, ChangeCounts> = BTreeMap::new();
    let mut total = ChangeCounts::default();
    for entry in entries {
        per_directory.entry(top_level(&entry.path)).or_default().count(entry);
        total.count(entry);
    }
    let directories = per_directory.into_iter().map(|(directory, counts)| DirectoryStat { directory, counts }).collect();
    DiffStat { directories, total }
}

/// `/etc` for `/etc/nginx/nginx.conf`; `/` for `/` itself.
fn top_level(path: &Path) -> PathBuf {
    let mut components = path.components().skip_while(|component| matches!(component, Component::RootDir));
    match components.next() {
        Some(first) => Path::new("/").join(first),
        None => PathBuf::from("/"),
    }
}

// ---------------------------------------------------------------------------------------------
// Facts and conflicts (the rebase report)
// ---------------------------------------------------------------------------------------------

/// What an image has at one path: enough to tell whether an image change changed it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PathFacts {
    #[serde(with = "json_path")]
    pub path: PathBuf,
    pub exists: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_type: Option<FileType>,
    /// Bytes of a regular file (a directory's size depends on the filesystem, not on the image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Permission, set-id and sticky bits (`0o7777` of `st_mode`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    /// Lowercase hex SHA-256 of a regular file's content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "json_path::optional")]
    pub link_target: Option<PathBuf>,
    /// Why the facts are incomplete (a file that could not be read to be hashed): such a path is
    /// reported as not compared rather than as unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<String>,
}

impl PathFacts {
    /// The image has nothing at `path`.
    pub fn absent(path: PathBuf) -> Self {
        Self { path, exists: false, file_type: None, size: None, mode: None, sha256: None, link_target: None, unreadable: None }
    }

    /// Whether `other` (the same path in another image) differs in anything an image change
    /// is judged by: all but the path they are about and why they are incomplete.
    pub fn differs_from(&self, other: &PathFacts) -> bool {
        PathFacts { path: PathBuf::new(), unreadable: None, ..self.clone() }
            != PathFacts { path: PathBuf::new(), unreadable: None, ..other.clone() }
    }
}

/// What `sc-exec layer facts` prints: the facts of the listed paths in one image.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct FactsReport {
    /// [`LAYER_DIFF_FORMAT_VERSION`] of the writer.
    pub format_version: u32,
    /// In path order.
    pub facts: Vec<PathFacts>,
}

impl FactsReport {
    pub fn new(facts: &BTreeMap<PathBuf, PathFacts>) -> Self {
        Self { format_version: LAYER_DIFF_FORMAT_VERSION, facts: facts.values().cloned().collect() }
    }

    /// Reads a report, refusing one of another format version.
    pub fn from_json(json: &[u8]) -> Result<Self, ReportError> {
        read_versioned(json, "facts report")
    }

    /// The facts by path, as the conflict computation takes them.
    pub fn into_map(self) -> BTreeMap<PathBuf, PathFacts> {
        self.facts.into_iter().map(|facts| (facts.path.clone(), facts)).collect()
    }
}

/// How the user's change and the image change meet at one path.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "camelCase")]
pub enum ConflictKind {
    /// The user changed a path of the old image and the new image changes it too.
    BothChanged,
    /// The user changed a path of the old image and the new image no longer has it.
    ChangedButImageDeleted,
    /// The user added a path the old image did not have and the new image adds it too.
    AddedButImageAdded,
    /// The user deleted a path and the new image changes what it had there.
    DeletedButImageChanged,
    /// The user's whiteout hides a path the old image did not have and the new image brings.
    DeletedButImageAdded,
    /// The image's side could not be read completely, so whether it changed is unknown.
    NotCompared,
}

/// One path where the user's change hides an image change. The user's version still wins; this
/// says what it hides.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Conflict {
    #[serde(with = "json_path")]
    pub path: PathBuf,
    pub kind: ConflictKind,
    /// One line for a person: what each side did and which version the rootfs shows.
    pub description: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(change: Change, path: &str, file_type: FileType, size: Option<u64>) -> DiffEntry {
        DiffEntry { change, path: path.into(), file_type, size, opaque: false, link_target: None }
    }

    #[test]
    fn a_path_list_round_trips_any_path_even_one_with_a_newline() {
        let paths = vec![
            PathBuf::from("/var/cache"),
            PathBuf::from("/opt/with\nnewline"),
            PathBuf::from(OsStr::from_bytes(b"/latin1-\xe9t\xe9")),
            PathBuf::from("/"),
        ];
        let encoded = encode_path_list(paths.iter().map(PathBuf::as_path)).expect("valid paths");
        assert_eq!(&encoded[..11], b"/var/cache\0");
        assert_eq!(encoded.last(), Some(&0));
        assert_eq!(parse_path_list(&encoded).expect("parses"), paths);
        assert_eq!(parse_path_list(b"").expect("an empty file"), Vec::<PathBuf>::new());
        assert_eq!(encode_path_list(std::iter::empty()).expect("nothing"), b"");
    }

    #[test]
    fn a_path_list_cut_short_or_with_odd_paths_is_refused() {
        assert_eq!(parse_path_list(b"/a\0/b").expect_err("cut"), PathListError::Unterminated { entries: 1 });
        assert!(parse_path_list(b"/a\n/b\n").expect_err("lines").to_string().contains("cut short (or written as lines)"));
        for (bad, problem) in [
            (&b"/a\0\0"[..], "it is empty"),
            (b"relative\0", "it is not absolute"),
            (b"/a/../b\0", "`.` or `..`"),
            (b"/a/./b\0", "`.` or `..`"),
            (b"/a//b\0", "doubled or trailing"),
            (b"/a/\0", "doubled or trailing"),
        ] {
            let error = parse_path_list(bad).expect_err("refused");
            assert!(error.to_string().contains(problem), "{bad:?}: {error}");
        }
        let error = encode_path_list([Path::new("/ok"), Path::new("etc")]).expect_err("relative");
        assert_eq!(error, PathListError::InvalidPath { index: 1, path: "etc".into(), problem: "it is not absolute" });
    }

    #[test]
    fn entries_are_camel_case_json_and_a_non_utf8_path_survives() {
        let mut symlink = entry(Change::Added, "/usr/bin/vi", FileType::Symlink, None);
        symlink.link_target = Some("vim.basic".into());
        let mut opaque = entry(Change::Changed, "/var/cache", FileType::Directory, None);
        opaque.opaque = true;
        let strange = entry(Change::Deleted, "", FileType::CharDevice, None);
        let strange = DiffEntry { path: PathBuf::from(OsStr::from_bytes(b"/dev/\xff")), ..strange };
        let report = DiffReport::new(vec![symlink, opaque, strange], vec!["/etc/hosts".into()]);
        let json = serde_json::to_value(&report).expect("serializes");
        assert_eq!(
            json,
            serde_json::json!({
                "formatVersion": 1,
                "entries": [
                    { "change": "added", "path": "/usr/bin/vi", "fileType": "symlink", "opaque": false, "linkTarget": "vim.basic" },
                    { "change": "changed", "path": "/var/cache", "fileType": "directory", "opaque": true },
                    { "change": "deleted", "path": { "bytes": [47, 100, 101, 118, 47, 255] }, "fileType": "char-device", "opaque": false },
                ],
                "excludedPaths": ["/etc/hosts"],
            })
        );
        let bytes = serde_json::to_vec(&report).expect("serializes");
        assert_eq!(DiffReport::from_json(&bytes).expect("reads back"), report);
    }

    #[test]
    fn a_report_of_another_version_is_refused_as_such() {
        let error = DiffReport::from_json(br#"{"formatVersion": 2, "items": []}"#).expect_err("version 2");
        assert!(matches!(error, ReportError::Version { found: 2, expected: 1, .. }), "{error}");
        assert!(error.to_string().contains("different releases"), "{error}");
        let error = FactsReport::from_json(b"not json").expect_err("garbage");
        assert!(error.to_string().starts_with("the facts report is not valid JSON"), "{error}");
    }

    #[test]
    fn the_prefix_filter_matches_whole_components() {
        let entries = vec![
            entry(Change::Changed, "/etc", FileType::Directory, None),
            entry(Change::Added, "/etc/x", FileType::File, Some(1)),
            entry(Change::Added, "/etcx", FileType::File, Some(1)),
            entry(Change::Deleted, "/var/lib/apt", FileType::Directory, None),
        ];
        let paths = |filtered: Vec<DiffEntry>| filtered.into_iter().map(|entry| entry.path).collect::<Vec<_>>();
        assert_eq!(paths(filter_by_prefix(&entries, &["/etc".into()])), [PathBuf::from("/etc"), "/etc/x".into()]);
        assert_eq!(
            paths(filter_by_prefix(&entries, &["/etcx".into(), "/var/lib".into()])),
            [PathBuf::from("/etcx"), "/var/lib/apt".into()]
        );
        assert_eq!(filter_by_prefix(&entries, &[]).len(), 4);
        assert!(filter_by_prefix(&entries, &["/et".into()]).is_empty());
    }

    #[test]
    fn the_stat_counts_per_top_level_directory_and_in_all() {
        let mut link = entry(Change::Added, "/usr/bin/python", FileType::Hardlink, None);
        link.link_target = Some("/usr/bin/python3".into());
        let entries = vec![
            entry(Change::Added, "/data.bin", FileType::File, Some(1000)),
            entry(Change::Changed, "/etc", FileType::Directory, None),
            entry(Change::Changed, "/etc/hosts.allow", FileType::File, Some(20)),
            entry(Change::Deleted, "/etc/motd", FileType::File, None),
            entry(Change::Changed, "/usr", FileType::Directory, None),
            entry(Change::Added, "/usr/bin/python3", FileType::File, Some(300)),
            link,
        ];
        let stat = diff_stat(&entries);
        let counts = |added, changed, deleted, bytes_added| ChangeCounts { added, changed, deleted, bytes_added };
        assert_eq!(
            stat.directories,
            vec![
                DirectoryStat { directory: "/data.bin".into(), counts: counts(1, 0, 0, 1000) },
                DirectoryStat { directory: "/etc".into(), counts: counts(0, 2, 1, 20) },
                DirectoryStat { directory: "/usr".into(), counts: counts(2, 1, 0, 300) },
            ]
        );
        assert_eq!(stat.total, counts(3, 3, 1, 1320));
        assert_eq!(diff_stat(&[]), DiffStat::default());
        let json = serde_json::to_value(&stat.directories[1]).expect("serializes");
        assert_eq!(json, serde_json::json!({"directory": "/etc", "added": 0, "changed": 2, "deleted": 1, "bytesAdded": 20}));
    }

    #[test]
    fn facts_compare_everything_but_the_path_and_round_trip_by_path() {
        let file = PathFacts {
            path: "/etc/os-release".into(),
            exists: true,
            file_type: Some(FileType::File),
            size: Some(10),
            mode: Some(0o644),
            sha256: Some("ab".into()),
            link_target: None,
            unreadable: None,
        };
        assert!(!file.differs_from(&PathFacts { path: "/elsewhere".into(), ..file.clone() }));
        assert!(file.differs_from(&PathFacts { sha256: Some("cd".into()), ..file.clone() }));
        assert!(file.differs_from(&PathFacts { mode: Some(0o600), ..file.clone() }));
        assert!(file.differs_from(&PathFacts::absent("/etc/os-release".into())));
        let map: BTreeMap<PathBuf, PathFacts> =
            [file.clone(), PathFacts::absent("/opt".into())].into_iter().map(|facts| (facts.path.clone(), facts)).collect();
        let json = serde_json::to_vec(&FactsReport::new(&map)).expect("serializes");
        assert_eq!(FactsReport::from_json(&json).expect("reads").into_map(), map);
    }
}
