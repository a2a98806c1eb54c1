//! What `kubectl sc diff` prints: the changed paths (`A`/`C`/`D`, as `docker diff`), the
//! `--stat` table and the `--conflicts` table of a rebase.

use std::path::Path;

use sc_api::layer_diff::{Change, ChangeCounts, Conflict, ConflictKind, DiffEntry, DiffStat, FileType};

use super::{align_columns, format_bytes};

/// One line per changed path: `A /etc/app.conf`, `C /var/cache (opaque: replaces the image's
/// directory)`, `A /usr/bin/vi -> vim`, `D /etc/motd`.
pub fn render_diff(entries: &[DiffEntry]) -> String {
    if entries.is_empty() {
        return "No changes against the image.\n".to_owned();
    }
    let mut output = String::new();
    for entry in entries {
        output.push(entry.change.letter());
        output.push(' ');
        output.push_str(&display_path(&entry.path));
        match (&entry.link_target, entry.file_type) {
            (Some(target), FileType::Hardlink) => output.push_str(&format!(" (hard link to {})", display_path(target))),
            (Some(target), _) => output.push_str(&format!(" -> {}", display_path(target))),
            (None, _) => {}
        }
        if entry.opaque {
            output.push_str(match entry.change {
                Change::Changed => " (opaque: replaces the image's directory)",
                _ => " (opaque)",
            });
        }
        output.push('\n');
    }
    output
}

/// `--stat`: per top-level directory, the counts of added, changed and deleted paths and the
/// bytes of the files added or changed; then the totals.
pub fn render_diff_stat(stat: &DiffStat) -> String {
    if stat.directories.is_empty() {
        return "No changes against the image.\n".to_owned();
    }
    let row = |name: String, counts: &ChangeCounts| {
        vec![name, counts.added.to_string(), counts.changed.to_string(), counts.deleted.to_string(), format_bytes(counts.bytes_added)]
    };
    let header = ["DIRECTORY", "ADDED", "CHANGED", "DELETED", "BYTES"].map(str::to_owned).to_vec();
    let rows = stat.directories.iter().map(|directory| row(display_path(&directory.directory), &directory.counts));
    let total = row("TOTAL".to_owned(), &stat.total);
    align_columns(std::iter::once(header).chain(rows).chain(std::iter::once(total)).collect())
}

/// `--conflicts`: the paths where the user's version hides what the new image changed.
pub fn render_conflicts(conflicts: &[Conflict]) -> String {
    if conflicts.is_empty() {
        return "No conflicts: the image change touches none of the paths you changed.\n".to_owned();
    }
    let header = ["PATH", "CONFLICT", "WHAT HAPPENED"].map(str::to_owned).to_vec();
    let rows = conflicts
        .iter()
        .map(|conflict| vec![display_path(&conflict.path), conflict_words(conflict.kind).to_owned(), conflict.description.clone()]);
    align_columns(std::iter::once(header).chain(rows).collect())
}

fn conflict_words(kind: ConflictKind) -> &'static str {
    match kind {
        ConflictKind::BothChanged => "both changed",
        ConflictKind::ChangedButImageDeleted => "image deleted",
        ConflictKind::AddedButImageAdded => "both added",
        ConflictKind::DeletedButImageChanged => "image changed",
        ConflictKind::DeletedButImageAdded => "image brought back",
        ConflictKind::NotCompared => "not compared",
    }
}

/// A path on one line: a control character (a newline in a file name) is written as an escape
/// (`\n`, `\x1b`) so that it can neither split the line nor move the terminal's cursor; bytes
/// that are not UTF-8 show as `\u{fffd}`.
fn display_path(path: &Path) -> String {
    let mut shown = String::new();
    for character in path.to_string_lossy().chars() {
        match character {
            '\n' => shown.push_str("\\n"),
            '\t' => shown.push_str("\\t"),
            '\r' => shown.push_str("\\r"),
            control if control.is_control() => shown.push_str(&format!("\\x{:02x}", u32::from(control))),
            other => shown.push(other),
        }
    }
    shown
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use sc_api::layer_diff::diff_stat;

    use super::*;

    fn entry(change: Change, path: &str, file_type: FileType, size: Option<u64>) -> DiffEntry {
        DiffEntry { change, path: path.into(), file_type, size, opaque: false, link_target: None }
    }

    fn sample_entries() -> Vec<DiffEntry> {
        vec![
            entry(Change::Changed, "/etc", FileType::Directory, None),
            entry(Change::Deleted, "/etc/motd", FileType::File, None),
            entry(Change::Added, "/etc/new.conf", FileType::File, Some(4)),
            entry(Change::Changed, "/etc/os-release", FileType::File, Some(3)),
            entry(Change::Added, "/opt/with\nnewline", FileType::File, Some(0)),
            entry(Change::Added, "/srv", FileType::Directory, None),
            entry(Change::Added, "/srv/a", FileType::File, Some(3 << 20)),
            DiffEntry { link_target: Some("/srv/a".into()), ..entry(Change::Added, "/srv/b", FileType::Hardlink, None) },
            DiffEntry { opaque: true, ..entry(Change::Added, "/srv/cache", FileType::Directory, None) },
            DiffEntry { link_target: Some("vim".into()), ..entry(Change::Added, "/usr/bin/vi", FileType::Symlink, None) },
            entry(Change::Changed, "/var", FileType::Directory, None),
            DiffEntry { opaque: true, ..entry(Change::Changed, "/var/cache", FileType::Directory, None) },
            entry(Change::Added, "/var/cache/mine", FileType::File, Some(1536)),
            entry(Change::Deleted, "/var/lib/stale", FileType::Whiteout, None),
        ]
    }

    #[test]
    fn the_diff_lists_each_path_with_its_letter() {
        insta::assert_snapshot!("diff", render_diff(&sample_entries()));
        insta::assert_snapshot!("diff_empty", render_diff(&[]));
    }

    #[test]
    fn the_stat_table_counts_per_top_level_directory() {
        insta::assert_snapshot!("diff_stat", render_diff_stat(&diff_stat(&sample_entries())));
        insta::assert_snapshot!("diff_stat_empty", render_diff_stat(&DiffStat::default()));
    }

    #[test]
    fn the_conflicts_table_says_what_each_side_did() {
        let conflict = |path: &str, kind, description: &str| Conflict { path: PathBuf::from(path), kind, description: description.into() };
        let conflicts = vec![
            conflict(
                "/etc/nginx/nginx.conf",
                ConflictKind::BothChanged,
                "you changed it and the new image changes it too (size 120 -> 140 bytes); your version is kept",
            ),
            conflict(
                "/etc/motd",
                ConflictKind::DeletedButImageChanged,
                "you deleted it and the new image changes it (content); it stays deleted",
            ),
            conflict(
                "/usr/bin/tool",
                ConflictKind::AddedButImageAdded,
                "you added it and the new image adds it too (a file); your version is kept",
            ),
        ];
        insta::assert_snapshot!("conflicts", render_conflicts(&conflicts));
        insta::assert_snapshot!("conflicts_none", render_conflicts(&[]));
    }

    #[test]
    fn a_path_never_breaks_its_line() {
        assert_eq!(display_path(Path::new("/a\nb\tc\u{1b}[2J")), "/a\\nb\\tc\\x1b[2J");
        use std::os::unix::ffi::OsStrExt;
        assert_eq!(display_path(Path::new(std::ffi::OsStr::from_bytes(b"/\xff"))), "/\u{fffd}");
    }
}
