//! The upper's entries as changes against the image (`kubectl sc diff`): added, changed, deleted.
//!
//! The rules ([`diff_entries`]) are pure over [`LowerView`], what the image has at a path; the
//! real view ([`ImageRoot`]) looks into an image's root directory (`/` of a pod that runs the
//! image) without ever leaving it.

use std::collections::BTreeSet;
use std::fs::Metadata;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

pub use sc_api::layer_diff::filter_by_prefix;
use sc_api::layer_diff::{Change, DiffEntry, DiffReport, FileType, parse_path_list};

use super::walk::{kubelet_managed_paths, walk_upper};
use super::{UpperEntry, UpperKind};
use crate::error::Error;

/// What the image has at a path, as `lstat` would say (no symlink followed for the last
/// component).
pub trait LowerView {
    /// The type of the image's entry at `path` (absolute, in the rootfs), `None` when the image
    /// has nothing there.
    fn file_type(&self, path: &Path) -> Result<Option<FileType>, LowerError>;
}

#[derive(Debug, thiserror::Error)]
pub enum LowerError {
    #[error(
        "cannot use {root} as the image's root directory: {source}. It must be a directory this process may read; check \
         --lower (or --root)"
    )]
    Root { root: PathBuf, source: io::Error },
    #[error("cannot look up {path} in the image (at {host_path}): {source}")]
    Lookup { path: PathBuf, host_path: PathBuf, source: io::Error },
}

/// An image's root directory, looked into component by component.
///
/// The image is the tenant's content: a symlink in it (`/opt/app -> /`) must not make a path of
/// the user's layer resolve somewhere else. So every component is `lstat`ed, and a path whose
/// parent is not a plain directory of the image (a symlink, a file) is one the image does not
/// have: overlayfs itself never follows a lower symlink to merge a directory. A directory on
/// another filesystem than the root is a mount of the pod that runs the image (its `/proc`, the
/// upper's own mount point), not the image's, so nothing is looked up below it either.
pub struct ImageRoot {
    root: PathBuf,
    device: u64,
}

impl ImageRoot {
    pub fn open(root: &Path) -> Result<Self, LowerError> {
        let root_error = |source| LowerError::Root { root: root.to_owned(), source };
        let metadata = std::fs::symlink_metadata(root).map_err(root_error)?;
        if !metadata.is_dir() {
            return Err(root_error(io::Error::new(io::ErrorKind::NotADirectory, "not a directory")));
        }
        Ok(Self { root: root.to_owned(), device: metadata.dev() })
    }

    /// Where the image's `path` is on this machine, with its `lstat`, when the image has it.
    pub fn resolve(&self, path: &Path) -> Result<Option<(PathBuf, Metadata)>, LowerError> {
        let mut host_path = self.root.clone();
        let mut components = path.components().filter(|component| !matches!(component, Component::RootDir)).peekable();
        let mut found = None;
        while let Some(component) = components.next() {
            let Component::Normal(name) = component else {
                // `.` and `..` are never part of a walked or listed path; refusing them keeps
                // `..` from climbing out of the root.
                return Ok(None);
            };
            host_path.push(name);
            let metadata = match std::fs::symlink_metadata(&host_path) {
                Ok(metadata) => metadata,
                Err(error) if matches!(error.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => return Ok(None),
                Err(source) => return Err(LowerError::Lookup { path: path.to_owned(), host_path, source }),
            };
            if components.peek().is_some() && (!metadata.is_dir() || metadata.dev() != self.device) {
                return Ok(None);
            }
            found = Some(metadata);
        }
        Ok(found.map(|metadata| (host_path, metadata)))
    }
}

impl LowerView for ImageRoot {
    fn file_type(&self, path: &Path) -> Result<Option<FileType>, LowerError> {
        Ok(self.resolve(path)?.map(|(_, metadata)| file_type_of(&metadata)))
    }
}

/// The file type of an `lstat` result.
pub fn file_type_of(metadata: &Metadata) -> FileType {
    let file_type = metadata.file_type();
    if file_type.is_dir() {
        FileType::Directory
    } else if file_type.is_symlink() {
        FileType::Symlink
    } else if file_type.is_char_device() {
        FileType::CharDevice
    } else if file_type.is_block_device() {
        FileType::BlockDevice
    } else if file_type.is_fifo() {
        FileType::Fifo
    } else if file_type.is_socket() {
        FileType::Socket
    } else {
        FileType::File
    }
}

/// The changes the upper's entries (as [`walk_upper`] lists them) make to the image, in their
/// order:
/// - a whiteout deletes the image's entry (`D`, typed as what the image has there; `whiteout`
///   when it has nothing, a deletion that hides nothing now but would hide what a later image
///   brings to that path);
/// - any other entry is `C` where the image has the path (whatever the image has there: a file
///   replaced by a directory is changed too) and `A` where it has not;
/// - so a directory of the image is `C` when something in it changed, as in `docker diff`, and
///   an opaque directory is `C` with `opaque` (it hides everything the image had in it), or `A`
///   when the image has no such directory.
pub fn diff_entries(upper: &[UpperEntry], lower: &dyn LowerView) -> Result<Vec<DiffEntry>, LowerError> {
    upper
        .iter()
        .map(|entry| {
            let in_image = lower.file_type(&entry.path)?;
            let added_or_changed = if in_image.is_some() { Change::Changed } else { Change::Added };
            let diff_entry =
                |change, file_type| DiffEntry { change, path: entry.path.clone(), file_type, size: None, opaque: false, link_target: None };
            Ok(match &entry.kind {
                UpperKind::Whiteout => diff_entry(Change::Deleted, in_image.unwrap_or(FileType::Whiteout)),
                UpperKind::Directory { opaque } => DiffEntry { opaque: *opaque, ..diff_entry(added_or_changed, FileType::Directory) },
                UpperKind::File { size, .. } => DiffEntry { size: Some(*size), ..diff_entry(added_or_changed, FileType::File) },
                UpperKind::HardLink { target } => {
                    DiffEntry { link_target: Some(target.clone()), ..diff_entry(added_or_changed, FileType::Hardlink) }
                }
                UpperKind::Symlink { target } => {
                    DiffEntry { link_target: Some(target.clone()), ..diff_entry(added_or_changed, FileType::Symlink) }
                }
                UpperKind::CharDevice { .. } => diff_entry(added_or_changed, FileType::CharDevice),
                UpperKind::BlockDevice { .. } => diff_entry(added_or_changed, FileType::BlockDevice),
                UpperKind::Fifo => diff_entry(added_or_changed, FileType::Fifo),
                UpperKind::Socket => diff_entry(added_or_changed, FileType::Socket),
            })
        })
        .collect()
}

/// `sc-exec layer diff`: walks `upper` (leaving kubelet's files out), reads the opaque
/// directories from `opaque_dirs_file` (a path list; none: the upper has no opaque directory)
/// and compares with the image at `lower`.
pub fn diff_report(upper: &Path, opaque_dirs_file: Option<&Path>, lower: &Path) -> Result<DiffReport, Error> {
    let opaque_dirs: BTreeSet<PathBuf> = match opaque_dirs_file {
        Some(file) => read_path_list(file, "the opaque directories")?.into_iter().collect(),
        None => BTreeSet::new(),
    };
    let image = ImageRoot::open(lower)?;
    let excluded = kubelet_managed_paths();
    let entries = walk_upper(upper, &opaque_dirs, &excluded)?;
    Ok(DiffReport::new(diff_entries(&entries, &image)?, excluded))
}

/// Reads a path list file (`sc_api::layer_diff::encode_path_list`'s format).
pub fn read_path_list(file: &Path, what: &'static str) -> Result<Vec<PathBuf>, Error> {
    let bytes = std::fs::read(file).map_err(|source| Error::io(format!("reading {what} from {}", file.display()), source))?;
    parse_path_list(&bytes).map_err(|source| Error::PathList { file: file.to_owned(), what, source })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::fs;
    use std::os::unix::fs::symlink;

    use super::*;

    /// An image as a map of paths to their types.
    struct FakeImage(BTreeMap<PathBuf, FileType>);

    impl FakeImage {
        fn new(entries: &[(&str, FileType)]) -> Self {
            Self(entries.iter().map(|(path, file_type)| (PathBuf::from(path), *file_type)).collect())
        }
    }

    impl LowerView for FakeImage {
        fn file_type(&self, path: &Path) -> Result<Option<FileType>, LowerError> {
            Ok(self.0.get(path).copied())
        }
    }

    fn upper(path: &str, kind: UpperKind) -> UpperEntry {
        UpperEntry { path: path.into(), kind, mode: 0o644, uid: 0, gid: 0, mtime: 0 }
    }

    fn file(size: u64) -> UpperKind {
        UpperKind::File { size, source: "/upper/x".into() }
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

    #[test]
    fn whiteouts_delete_image_paths_present_ones_change_and_new_ones_add() {
        let image = FakeImage::new(&[
            ("/etc", FileType::Directory),
            ("/etc/motd", FileType::File),
            ("/etc/nginx", FileType::Directory),
            ("/etc/nginx/nginx.conf", FileType::File),
            ("/var", FileType::Directory),
            ("/var/cache", FileType::Directory),
            ("/opt/tool", FileType::Symlink),
        ]);
        let entries = vec![
            upper("/etc", UpperKind::Directory { opaque: false }),
            upper("/etc/motd", UpperKind::Whiteout),
            upper("/etc/nginx", UpperKind::Directory { opaque: false }),
            upper("/etc/nginx/nginx.conf", file(120)),
            upper("/etc/nginx/site.conf", file(40)),
            upper("/etc/nginx/site-link.conf", UpperKind::HardLink { target: "/etc/nginx/site.conf".into() }),
            upper("/etc/stale", UpperKind::Whiteout),
            upper("/opt", UpperKind::Directory { opaque: false }),
            upper("/opt/tool", UpperKind::Directory { opaque: false }),
            upper("/srv", UpperKind::Directory { opaque: true }),
            upper("/srv/fifo", UpperKind::Fifo),
            upper("/usr-local-bin-vi", UpperKind::Symlink { target: "vim".into() }),
            upper("/var", UpperKind::Directory { opaque: false }),
            upper("/var/cache", UpperKind::Directory { opaque: true }),
            upper("/var/cache/apt", UpperKind::Directory { opaque: false }),
            upper("/var/null", UpperKind::CharDevice { major: 1, minor: 3 }),
        ];
        let lines: Vec<String> = diff_entries(&entries, &image).expect("diffs").iter().map(line).collect();
        assert_eq!(
            lines,
            [
                "C /etc Directory",
                "D /etc/motd File",
                "C /etc/nginx Directory",
                "C /etc/nginx/nginx.conf File 120",
                "A /etc/nginx/site.conf File 40",
                "A /etc/nginx/site-link.conf Hardlink -> /etc/nginx/site.conf",
                "D /etc/stale Whiteout",
                // The image has no /opt directory (only a path below one, which cannot be): added;
                // its symlink replaced by a directory: changed.
                "A /opt Directory",
                "C /opt/tool Directory",
                "A /srv Directory opaque",
                "A /srv/fifo Fifo",
                "A /usr-local-bin-vi Symlink -> vim",
                "C /var Directory",
                "C /var/cache Directory opaque",
                "A /var/cache/apt Directory",
                "A /var/null CharDevice",
            ]
        );
    }

    #[test]
    fn the_image_root_resolves_inside_itself_and_never_through_a_symlink() {
        let image = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("tempdir");
        fs::write(outside.path().join("secret"), b"s").expect("write");
        let at = |relative: &str| image.path().join(relative);
        fs::create_dir_all(at("etc/ssl")).expect("mkdir");
        fs::write(at("etc/ssl/cert.pem"), b"c").expect("write");
        fs::write(at("etc/file"), b"f").expect("write");
        symlink(outside.path(), at("escape")).expect("symlink");
        symlink("/etc", at("etc-link")).expect("symlink");
        symlink("ssl", at("etc/ssl-link")).expect("symlink");
        let root = ImageRoot::open(image.path()).expect("opens");
        let lookup = |path: &str| root.file_type(Path::new(path)).expect("looks up");
        assert_eq!(lookup("/etc/ssl/cert.pem"), Some(FileType::File));
        assert_eq!(lookup("/etc"), Some(FileType::Directory));
        assert_eq!(lookup("/etc/ssl-link"), Some(FileType::Symlink), "the last component is not followed");
        assert_eq!(lookup("/escape/secret"), None, "a symlinked parent leads nowhere");
        assert_eq!(lookup("/etc-link/file"), None);
        assert_eq!(lookup("/etc/ssl-link/cert.pem"), None);
        assert_eq!(lookup("/etc/file/below-a-file"), None);
        assert_eq!(lookup("/etc/../escape"), None);
        assert_eq!(lookup("/missing/x"), None);
        let (host_path, _) = root.resolve(Path::new("/etc/file")).expect("resolves").expect("exists");
        assert_eq!(host_path, at("etc/file"));
        assert!(matches!(ImageRoot::open(&at("etc/file")), Err(LowerError::Root { .. })));
    }

    #[test]
    fn a_report_leaves_kubelets_files_out_and_reads_the_opaque_list() {
        let base = tempfile::tempdir().expect("tempdir");
        let (upper_dir, lower_dir) = (base.path().join("upper"), base.path().join("lower"));
        fs::create_dir_all(upper_dir.join("etc")).expect("mkdir");
        fs::create_dir_all(upper_dir.join("cache")).expect("mkdir");
        fs::create_dir_all(lower_dir.join("etc")).expect("mkdir");
        fs::write(upper_dir.join("etc/hosts"), b"").expect("write");
        fs::write(upper_dir.join("etc/app.conf"), b"x=1\n").expect("write");
        let opaque_file = base.path().join("opaque");
        fs::write(&opaque_file, b"/cache\0").expect("write");
        let report = diff_report(&upper_dir, Some(&opaque_file), &lower_dir).expect("reports");
        let lines: Vec<String> = report.entries.iter().map(line).collect();
        assert_eq!(lines, ["A /cache Directory opaque", "C /etc Directory", "A /etc/app.conf File 4"]);
        assert!(report.excluded_paths.contains(&PathBuf::from("/etc/hosts")));
        fs::write(&opaque_file, b"/cache\n").expect("write");
        let error = diff_report(&upper_dir, Some(&opaque_file), &lower_dir).expect_err("not NUL-terminated");
        assert_eq!(error.exit_code(), crate::error::EX_DATAERR);
        assert!(error.to_string().contains("the opaque directories") && error.to_string().contains(&opaque_file.display().to_string()));
    }
}
