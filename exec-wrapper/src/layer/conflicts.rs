//! The rebase report: where the user's changes meet what an image change changed.
//!
//! When a start applies a new image, the user's layer stays on top of it, so the user's version
//! of every path wins. That is right, but it must not be silent: a path the user changed that the
//! new image changes too now hides the image's new version. [`path_facts`] gathers what one image
//! has at the user's paths (run once per image, each in a pod whose root is that image, each
//! hashing its own files); [`conflicts`] compares the two images' facts at the user's paths.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;
use sc_api::layer_diff::{Change, Conflict, ConflictKind, DiffEntry, FileType, PathFacts};
use sha2::{Digest, Sha256};

use super::diff::{ImageRoot, LowerError, file_type_of};

/// Permission, set-id and sticky bits of `st_mode`.
const PERMISSION_BITS: u32 = 0o7777;

/// What the image rooted at `root` has at each of `paths`, resolved as [`ImageRoot`] does (inside
/// the root, no symlink followed). Regular files are hashed. A path that cannot be looked up or
/// read gets facts marked `unreadable` (and is then reported as not compared); only a root that
/// cannot be used is an error.
pub fn path_facts(root: &Path, paths: &[PathBuf]) -> Result<BTreeMap<PathBuf, PathFacts>, LowerError> {
    let image = ImageRoot::open(root)?;
    Ok(paths.iter().map(|path| (path.clone(), facts_at(&image, path))).collect())
}

fn facts_at(image: &ImageRoot, path: &Path) -> PathFacts {
    let unreadable = |reason: String| PathFacts { unreadable: Some(reason), ..PathFacts::absent(path.to_owned()) };
    let (host_path, metadata) = match image.resolve(path) {
        Ok(Some(found)) => found,
        Ok(None) => return PathFacts::absent(path.to_owned()),
        Err(error) => return unreadable(error.to_string()),
    };
    let file_type = file_type_of(&metadata);
    let mut facts = PathFacts {
        exists: true,
        file_type: Some(file_type),
        mode: Some(metadata.mode() & PERMISSION_BITS),
        ..PathFacts::absent(path.to_owned())
    };
    match file_type {
        FileType::File => {
            facts.size = Some(metadata.size());
            match sha256_of(&host_path) {
                Ok(digest) => facts.sha256 = Some(digest),
                Err(error) => facts.unreadable = Some(format!("cannot read {} to hash it: {error}", host_path.display())),
            }
        }
        FileType::Symlink => match std::fs::read_link(&host_path) {
            Ok(target) => facts.link_target = Some(target),
            Err(error) => facts.unreadable = Some(format!("cannot read the symlink {}: {error}", host_path.display())),
        },
        _ => {}
    }
    facts
}

/// Lowercase hex SHA-256 of the regular file at `path`, opened without following a symlink.
fn sha256_of(path: &Path) -> io::Result<String> {
    let fd = open(path, OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NOCTTY | OFlag::O_CLOEXEC, Mode::empty())?;
    let mut file = File::from(fd);
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}

/// The paths where `user`'s changes (diff entries against the old image) meet a change from
/// `old_image` to `new_image` (the facts of each at the user's paths), in the user's order:
/// - a path the user added or changed that the new image changed (exists, type, size, mode,
///   content or symlink target differ from the old image's), or that the new image adds where the
///   old one had nothing;
/// - a path the user deleted that the new image changes, or brings where the old one had nothing.
///
/// A directory is a container of other entries, each listed on its own: two directories differ
/// only in being one (a child's change is its own entry, a directory's mode is not compared), and
/// a directory the user added merges with the new image's one unless the user's is opaque. A path
/// whose facts are missing or unreadable on either side is reported as not compared.
pub fn conflicts(user: &[DiffEntry], old_image: &BTreeMap<PathBuf, PathFacts>, new_image: &BTreeMap<PathBuf, PathFacts>) -> Vec<Conflict> {
    user.iter().filter_map(|entry| conflict_at(entry, old_image.get(&entry.path), new_image.get(&entry.path))).collect()
}

fn conflict_at(entry: &DiffEntry, old: Option<&PathFacts>, new: Option<&PathFacts>) -> Option<Conflict> {
    let conflict = |kind, description: String| Some(Conflict { path: entry.path.clone(), kind, description });
    let (old, new) = match (old, new) {
        (Some(old), Some(new)) => (old, new),
        (old, _) => {
            let side = if old.is_none() { "old" } else { "new" };
            return conflict(
                ConflictKind::NotCompared,
                format!("no facts of the {side} image were gathered for it, so it was not compared"),
            );
        }
    };
    if let Some((side, reason)) =
        [("old", old), ("new", new)].into_iter().find_map(|(side, facts)| facts.unreadable.as_ref().map(|reason| (side, reason)))
    {
        return conflict(
            ConflictKind::NotCompared,
            format!("the {side} image's side could not be read ({reason}), so it was not compared"),
        );
    }
    let image_changed = !both_directories(old, new) && old.differs_from(new);
    if entry.change == Change::Deleted {
        return match (old.exists, new.exists) {
            (false, true) => conflict(
                ConflictKind::DeletedButImageAdded,
                format!("you deleted it and the new image brings it back ({}); it stays deleted", type_noun(new)),
            ),
            (true, true) if image_changed => conflict(
                ConflictKind::DeletedButImageChanged,
                format!("you deleted it and the new image changes it ({}); it stays deleted", differences(old, new)),
            ),
            _ => None,
        };
    }
    let user_directory = entry.file_type == FileType::Directory;
    if !old.exists {
        let merges = user_directory && !entry.opaque && new.file_type == Some(FileType::Directory);
        if !new.exists || merges {
            return None;
        }
        if user_directory && entry.opaque {
            return conflict(
                ConflictKind::AddedButImageAdded,
                "you made this directory and the new image adds one too; yours replaces it (it is opaque)".to_owned(),
            );
        }
        return conflict(
            ConflictKind::AddedButImageAdded,
            format!("you added it and the new image adds it too ({}); your version is kept", type_noun(new)),
        );
    }
    match (image_changed, new.exists) {
        (false, _) => None,
        (true, false) => conflict(
            ConflictKind::ChangedButImageDeleted,
            "you changed it and the new image no longer has it; your version is kept".to_owned(),
        ),
        (true, true) => conflict(
            ConflictKind::BothChanged,
            format!("you changed it and the new image changes it too ({}); your version is kept", differences(old, new)),
        ),
    }
}

fn both_directories(old: &PathFacts, new: &PathFacts) -> bool {
    old.file_type == Some(FileType::Directory) && new.file_type == Some(FileType::Directory)
}

fn type_noun(facts: &PathFacts) -> &'static str {
    facts.file_type.map_or("nothing", FileType::noun)
}

/// What differs between two images' facts at one path, for a person: `size 10 -> 12 bytes`.
fn differences(old: &PathFacts, new: &PathFacts) -> String {
    if old.file_type != new.file_type {
        return format!("{} becomes {}", type_noun(old), type_noun(new));
    }
    let mut parts = Vec::new();
    if let (Some(old_size), Some(new_size)) = (old.size, new.size)
        && old_size != new_size
    {
        parts.push(format!("size {old_size} -> {new_size} bytes"));
    } else if old.sha256 != new.sha256 {
        parts.push("content".to_owned());
    }
    if old.mode != new.mode {
        let octal = |mode: Option<u32>| mode.map_or_else(|| "?".to_owned(), |mode| format!("{mode:04o}"));
        parts.push(format!("mode {} -> {}", octal(old.mode), octal(new.mode)));
    }
    if old.link_target != new.link_target {
        let target = |facts: &PathFacts| facts.link_target.as_deref().map_or_else(|| "?".to_owned(), |target| target.display().to_string());
        parts.push(format!("target {} -> {}", target(old), target(new)));
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::{PermissionsExt, symlink};

    use super::*;

    fn file(path: &str, size: u64, sha256: &str) -> PathFacts {
        PathFacts {
            exists: true,
            file_type: Some(FileType::File),
            size: Some(size),
            mode: Some(0o644),
            sha256: Some(sha256.into()),
            ..PathFacts::absent(path.into())
        }
    }

    fn directory(path: &str, mode: u32) -> PathFacts {
        PathFacts { exists: true, file_type: Some(FileType::Directory), mode: Some(mode), ..PathFacts::absent(path.into()) }
    }

    fn absent(path: &str) -> PathFacts {
        PathFacts::absent(path.into())
    }

    fn user(change: Change, path: &str, file_type: FileType) -> DiffEntry {
        DiffEntry { change, path: path.into(), file_type, size: None, opaque: false, link_target: None }
    }

    fn by_path(facts: Vec<PathFacts>) -> BTreeMap<PathBuf, PathFacts> {
        facts.into_iter().map(|facts| (facts.path.clone(), facts)).collect()
    }

    fn lines(conflicts: &[Conflict]) -> Vec<String> {
        conflicts.iter().map(|conflict| format!("{} {:?}: {}", conflict.path.display(), conflict.kind, conflict.description)).collect()
    }

    #[test]
    fn each_way_a_users_change_meets_an_image_change() {
        let opaque = DiffEntry { opaque: true, ..user(Change::Added, "/srv/www", FileType::Directory) };
        let changes = vec![
            user(Change::Changed, "/etc/app.conf", FileType::File),
            user(Change::Changed, "/etc/same.conf", FileType::File),
            user(Change::Changed, "/etc/retouched.conf", FileType::File),
            user(Change::Changed, "/etc/gone.conf", FileType::File),
            user(Change::Added, "/usr/bin/tool", FileType::File),
            user(Change::Added, "/usr/share/mine", FileType::File),
            user(Change::Deleted, "/etc/motd", FileType::File),
            user(Change::Deleted, "/etc/issue", FileType::File),
            user(Change::Deleted, "/etc/cron.daily", FileType::Whiteout),
            user(Change::Deleted, "/etc/unchanged", FileType::File),
            opaque,
        ];
        let old = by_path(vec![
            file("/etc/app.conf", 10, "a"),
            file("/etc/same.conf", 10, "s"),
            file("/etc/retouched.conf", 10, "r"),
            file("/etc/gone.conf", 3, "g"),
            absent("/usr/bin/tool"),
            absent("/usr/share/mine"),
            file("/etc/motd", 5, "m"),
            file("/etc/issue", 5, "i"),
            absent("/etc/cron.daily"),
            file("/etc/unchanged", 1, "u"),
            absent("/srv/www"),
        ]);
        let new = by_path(vec![
            file("/etc/app.conf", 12, "b"),
            file("/etc/same.conf", 10, "s"),
            PathFacts { mode: Some(0o600), ..file("/etc/retouched.conf", 10, "x") },
            absent("/etc/gone.conf"),
            file("/usr/bin/tool", 100, "t"),
            absent("/usr/share/mine"),
            file("/etc/motd", 5, "n"),
            absent("/etc/issue"),
            directory("/etc/cron.daily", 0o755),
            file("/etc/unchanged", 1, "u"),
            directory("/srv/www", 0o755),
        ]);
        assert_eq!(
            lines(&conflicts(&changes, &old, &new)),
            [
                "/etc/app.conf BothChanged: you changed it and the new image changes it too (size 10 -> 12 bytes); your version is kept",
                "/etc/retouched.conf BothChanged: you changed it and the new image changes it too (content, mode 0644 -> 0600); your version is kept",
                "/etc/gone.conf ChangedButImageDeleted: you changed it and the new image no longer has it; your version is kept",
                "/usr/bin/tool AddedButImageAdded: you added it and the new image adds it too (a file); your version is kept",
                "/etc/motd DeletedButImageChanged: you deleted it and the new image changes it (content); it stays deleted",
                "/etc/cron.daily DeletedButImageAdded: you deleted it and the new image brings it back (a directory); it stays deleted",
                "/srv/www AddedButImageAdded: you made this directory and the new image adds one too; yours replaces it (it is opaque)",
            ]
        );
    }

    #[test]
    fn directories_conflict_only_when_they_stop_being_directories() {
        let changes = vec![
            user(Change::Changed, "/etc", FileType::Directory),
            user(Change::Added, "/opt/app", FileType::Directory),
            user(Change::Changed, "/var/lib/thing", FileType::Directory),
            user(Change::Deleted, "/usr/share/doc", FileType::Directory),
            user(Change::Changed, "/srv", FileType::Directory),
        ];
        let old = by_path(vec![
            directory("/etc", 0o755),
            absent("/opt/app"),
            directory("/var/lib/thing", 0o755),
            directory("/usr/share/doc", 0o755),
            directory("/srv", 0o755),
        ]);
        let new = by_path(vec![
            // A new mode (or new children) of a directory is not a conflict of the directory.
            directory("/etc", 0o750),
            // The user's directory merges with the image's new one.
            directory("/opt/app", 0o755),
            file("/var/lib/thing", 4, "f"),
            directory("/usr/share/doc", 0o700),
            absent("/srv"),
        ]);
        assert_eq!(
            lines(&conflicts(&changes, &old, &new)),
            [
                "/var/lib/thing BothChanged: you changed it and the new image changes it too (a directory becomes a file); your version is kept",
                "/srv ChangedButImageDeleted: you changed it and the new image no longer has it; your version is kept",
            ]
        );
    }

    #[test]
    fn a_side_that_was_not_read_is_reported_not_compared() {
        let changes = vec![user(Change::Changed, "/etc/shadow", FileType::File), user(Change::Added, "/new", FileType::File)];
        let old = by_path(vec![PathFacts { unreadable: Some("permission denied".into()), ..file("/etc/shadow", 1, "") }]);
        let new = by_path(vec![file("/etc/shadow", 1, "z"), absent("/new")]);
        assert_eq!(
            lines(&conflicts(&changes, &old, &new)),
            [
                "/etc/shadow NotCompared: the old image's side could not be read (permission denied), so it was not compared",
                "/new NotCompared: no facts of the old image were gathered for it, so it was not compared",
            ]
        );
    }

    #[test]
    fn facts_hash_regular_files_read_symlinks_and_never_leave_the_root() {
        let image = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("tempdir");
        fs::write(outside.path().join("secret"), b"s").expect("write");
        let at = |relative: &str| image.path().join(relative);
        fs::create_dir_all(at("etc")).expect("mkdir");
        fs::write(at("etc/hello"), b"hello\n").expect("write");
        fs::set_permissions(at("etc/hello"), fs::Permissions::from_mode(0o640)).expect("chmod");
        symlink("hello", at("etc/greeting")).expect("symlink");
        symlink(outside.path(), at("escape")).expect("symlink");
        let paths: Vec<PathBuf> = ["/etc/hello", "/etc/greeting", "/etc", "/escape/secret", "/missing"].iter().map(PathBuf::from).collect();
        let facts = path_facts(image.path(), &paths).expect("gathers");
        let hello = &facts[Path::new("/etc/hello")];
        assert_eq!((hello.exists, hello.file_type, hello.size, hello.mode), (true, Some(FileType::File), Some(6), Some(0o640)));
        // sha256("hello\n")
        assert_eq!(hello.sha256.as_deref(), Some("5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"));
        let greeting = &facts[Path::new("/etc/greeting")];
        assert_eq!(
            (greeting.file_type, greeting.link_target.as_deref(), greeting.sha256.as_deref()),
            (Some(FileType::Symlink), Some(Path::new("hello")), None)
        );
        let etc = &facts[Path::new("/etc")];
        assert_eq!((etc.file_type, etc.size, etc.sha256.as_deref()), (Some(FileType::Directory), None, None));
        assert_eq!(facts[Path::new("/escape/secret")], PathFacts::absent("/escape/secret".into()));
        assert_eq!(facts[Path::new("/missing")], PathFacts::absent("/missing".into()));
        assert!(path_facts(&image.path().join("missing-root"), &paths).is_err());
    }
}
