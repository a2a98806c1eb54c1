//! One JSON record per published volume, written once every mount is in place and removed after
//! the last unmount. A plugin killed before the record was written left only mounts of its own
//! kind (recognised by the tmpfs source marker), which start-up recovery unwinds or, when they
//! are a complete publication, records again.
//!
//! Records are durable: written to a temporary file, fsynced, renamed, and the directory fsynced,
//! so after a power loss a record is the old one or the new one. One that still does not parse
//! (a disk error, a hand edit) is moved to `publications/quarantine/` with a warning naming it,
//! and the callers fall back to the mount table: a torn record must never block its volume's
//! publish or unpublish, nor make recovery unwind a live consumer.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::layout::{DataRoot, ScKey};
use crate::sys::System;
use crate::validate::PodRef;

/// Records are root-only: they name pods, targets and the provider's root filesystem.
pub const RECORD_MODE: u32 = 0o600;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub volume_id: String,
    pub target_path: PathBuf,
    pub pod: PodRef,
    pub sc: ScKey,
    /// The provider root filesystem used as lower layer when published.
    pub lower_dir: PathBuf,
    /// With `spec.storage`: the claim whose filesystem holds the upper (a record without it is of
    /// a node-local upper, as every record of earlier releases is). Unpublish unmounts only the
    /// overlay of such a publication: the claim's own mount is kubelet's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<crate::node::ClaimLayer>,
}

/// The records directory of a data root, read and written through the node's [`System`].
#[derive(Clone)]
pub struct Records {
    data: DataRoot,
    system: Arc<dyn System>,
}

/// Every record found at start-up.
#[derive(Debug, Default)]
pub struct Listing {
    pub records: Vec<Record>,
    /// Records that do not parse, moved to the quarantine directory: `(from, to)`.
    pub quarantined: Vec<(PathBuf, PathBuf)>,
    /// Files that could not be read or moved, left in place, with the reason.
    pub unreadable: Vec<(PathBuf, io::Error)>,
}

impl Records {
    pub fn new(data: DataRoot, system: Arc<dyn System>) -> Self {
        Self { data, system }
    }

    /// The record of `volume_id`, or `None` when there is none. A record that does not parse is
    /// quarantined (with a warning that names it) and reported as `None`: the caller then goes by
    /// the mount table, as for a publish that was killed before it recorded itself.
    pub fn load(&self, volume_id: &str) -> io::Result<Option<Record>> {
        let path = self.data.record_path(volume_id);
        match self.read_record(&path)? {
            Read::Missing => Ok(None),
            Read::Record(record) => Ok(Some(*record)),
            Read::Garbage(problem) => match self.quarantine(&path, &problem) {
                // Gone meanwhile: a concurrent reader (a stats call) moved it first.
                Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
                _ => Ok(None),
            },
        }
    }

    /// Writes a record durably and atomically: a root-only temporary file, fsynced, renamed over
    /// the record, then the directory fsynced. A plugin killed, or a node losing power, at any
    /// point leaves the old record or the new one, never half of one. (The cost is two fsyncs
    /// per publish; without them a power loss can leave an empty record on ext4 or XFS.)
    pub fn save(&self, record: &Record) -> io::Result<()> {
        let dir = self.data.records_dir();
        let path = self.data.record_path(&record.volume_id);
        let temporary = dir.join(format!(".{}.tmp", record.volume_id));
        let body = serde_json::to_vec_pretty(record).map_err(io::Error::other)?;
        match self.system.write_file_durably(&path, &temporary, &body, RECORD_MODE) {
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                self.system.create_dir_all(&dir, crate::dirs::PRIVATE_DIR_MODE)?;
                self.system.write_file_durably(&path, &temporary, &body, RECORD_MODE)
            }
            other => other,
        }
    }

    /// Removes a record, durably (a record that comes back after a power loss would make recovery
    /// look for mounts that are gone, which it handles, but costs a wrong log line).
    pub fn remove(&self, volume_id: &str) -> io::Result<()> {
        match self.system.remove_file(&self.data.record_path(volume_id)) {
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(error),
            Ok(()) => self.system.sync_directory(&self.data.records_dir()),
        }
    }

    /// Every record, for start-up recovery. Records that do not parse are quarantined; files
    /// that cannot be read at all are reported, left in place. A temporary file a crash left
    /// behind is removed, and one that cannot be is only warned about: it never stops start-up.
    pub fn all(&self) -> io::Result<Listing> {
        let dir = self.data.records_dir();
        let entries = match self.system.list_directory(&dir) {
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Listing::default()),
            other => other?,
        };
        let mut listing = Listing::default();
        for path in entries {
            if path.extension().is_some_and(|extension| extension == "json") {
                match self.read_record(&path) {
                    Ok(Read::Record(record)) => listing.records.push(*record),
                    Ok(Read::Missing) => {}
                    Ok(Read::Garbage(problem)) => match self.quarantine(&path, &problem) {
                        Ok(to) => listing.quarantined.push((path, to)),
                        Err(error) => listing.unreadable.push((path, error)),
                    },
                    Err(error) => listing.unreadable.push((path, error)),
                }
            } else if path.file_name().is_some_and(|name| name.to_string_lossy().ends_with(".tmp")) {
                // A temp file left by a crash mid-save: the rename never happened, so it is garbage.
                if let Err(error) = self.system.remove_file(&path) {
                    warn!(path = %path.display(), %error, "could not remove a temporary record a crash left behind; it is ignored");
                }
            }
        }
        Ok(listing)
    }

    /// Moves a record that does not parse out of the way, keeping it for inspection.
    fn quarantine(&self, path: &Path, problem: &str) -> io::Result<PathBuf> {
        let quarantine = self.data.quarantine_dir();
        self.system.create_dir_all(&quarantine, crate::dirs::PRIVATE_DIR_MODE)?;
        let name = path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
        // Timestamped: the same volume's record may go bad twice.
        let stamp = SystemTime::now().duration_since(UNIX_EPOCH).map(|since| since.as_nanos()).unwrap_or_default();
        let to = quarantine.join(format!("{name}.{stamp}"));
        self.system.rename(path, &to)?;
        self.system.sync_directory(&quarantine)?;
        self.system.sync_directory(&self.data.records_dir())?;
        warn!(
            record = %path.display(),
            moved_to = %to.display(),
            problem,
            "a publication record does not parse; moved it to quarantine, going by the mount table for its volume (inspect it, then delete it)"
        );
        Ok(to)
    }
}

enum Read {
    Missing,
    // Boxed: a record (with a claim) is much larger than the other answers.
    Record(Box<Record>),
    /// The file exists but is not a record (why, for the warning).
    Garbage(String),
}

impl Records {
    fn read_record(&self, path: &Path) -> io::Result<Read> {
        match self.system.read_file(path) {
            Ok(bytes) => Ok(serde_json::from_slice(&bytes)
                .map_or_else(|error| Read::Garbage(error.to_string()), |record| Read::Record(Box::new(record)))),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(Read::Missing),
            Err(error) => Err(io::Error::new(error.kind(), format!("reading {}: {error}", path.display()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::sys::RealSystem;

    fn record(volume_id: &str) -> Record {
        Record {
            volume_id: volume_id.into(),
            target_path: "/t".into(),
            pod: PodRef { namespace: "ns".into(), name: "dev".into(), uid: "u".into() },
            sc: ScKey { namespace: "ns".into(), name: "dev".into(), uid: "s".into() },
            lower_dir: "/l".into(),
            claim: None,
        }
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).expect("stat").permissions().mode() & 0o7777
    }

    fn quarantined(data: &DataRoot) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(data.quarantine_dir())
            .map(|entries| entries.filter_map(|entry| entry.ok()?.file_name().into_string().ok()).collect())
            .unwrap_or_default();
        names.sort();
        names
    }

    #[test]
    fn save_load_list_remove() {
        let dir = tempfile::tempdir().expect("tempdir");
        let records = Records::new(DataRoot::new(dir.path()), Arc::new(RealSystem::default()));
        assert_eq!(records.load("csi-1").expect("load"), None);
        records.save(&record("csi-1")).expect("save");
        let mut updated = record("csi-1");
        updated.lower_dir = "/new-lower".into();
        records.save(&updated).expect("save again");
        assert_eq!(records.load("csi-1").expect("load"), Some(updated));
        std::fs::write(dir.path().join("publications/.csi-2.tmp"), b"{half").expect("write");
        let listing = records.all().expect("list");
        assert_eq!(listing.records.len(), 1);
        assert!(listing.quarantined.is_empty() && listing.unreadable.is_empty());
        assert!(!dir.path().join("publications/.csi-2.tmp").exists(), "temp files are cleaned");
        records.remove("csi-1").expect("remove");
        records.remove("csi-1").expect("remove twice is fine");
        assert_eq!(records.load("csi-1").expect("load"), None);
    }

    #[test]
    fn records_are_root_only_even_over_an_old_temporary_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = DataRoot::new(dir.path());
        let records = Records::new(data.clone(), Arc::new(RealSystem::default()));
        std::fs::create_dir_all(data.records_dir()).expect("mkdir");
        // What an older version left: a world-readable temporary file.
        let temporary = data.records_dir().join(".csi-1.tmp");
        std::fs::write(&temporary, b"{").expect("write");
        std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        records.save(&record("csi-1")).expect("save");
        assert_eq!(mode(&data.record_path("csi-1")), 0o600);
        // A symlink planted at the temporary name is not written through.
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"keep").expect("write");
        std::os::unix::fs::symlink(&victim, &temporary).expect("symlink");
        let error = records.save(&record("csi-1")).expect_err("refused");
        assert_eq!(error.raw_os_error(), Some(nix::libc::ELOOP), "{error}");
        assert_eq!(std::fs::read(&victim).expect("read"), b"keep");
    }

    #[test]
    fn a_record_that_does_not_parse_is_quarantined_and_reads_as_absent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = DataRoot::new(dir.path());
        let records = Records::new(data.clone(), Arc::new(RealSystem::default()));
        records.save(&record("csi-1")).expect("save");
        // A torn write after a power loss, then a hand edit gone wrong.
        for garbage in [&b""[..], b"{\"volumeId\": \"csi-1\", \"targ"] {
            std::fs::write(data.record_path("csi-1"), garbage).expect("write");
            assert_eq!(records.load("csi-1").expect("garbage is not an error"), None);
            assert!(!data.record_path("csi-1").exists(), "moved out of the way");
        }
        let moved = quarantined(&data);
        assert_eq!(moved.len(), 2, "{moved:?}");
        assert!(moved.iter().all(|name| name.starts_with("csi-1.json.")), "{moved:?}");
        assert_eq!(mode(&data.quarantine_dir()), 0o700);
        // The volume can be recorded again.
        records.save(&record("csi-1")).expect("save");
        assert_eq!(records.load("csi-1").expect("load"), Some(record("csi-1")));
    }

    #[test]
    fn listing_quarantines_garbage_and_survives_a_temporary_file_it_cannot_remove() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = DataRoot::new(dir.path());
        let records = Records::new(data.clone(), Arc::new(RealSystem::default()));
        records.save(&record("csi-1")).expect("save");
        std::fs::write(data.record_path("csi-3"), b"{broken").expect("write");
        // A "temporary file" that remove_file cannot remove (a non-empty directory).
        std::fs::create_dir_all(data.records_dir().join(".csi-4.tmp/x")).expect("mkdir");
        let listing = records.all().expect("listing does not fail on it");
        assert_eq!(listing.records, [record("csi-1")]);
        assert_eq!(listing.quarantined.len(), 1);
        assert_eq!(listing.quarantined[0].0, data.record_path("csi-3"));
        assert!(listing.quarantined[0].1.starts_with(data.quarantine_dir()));
        assert!(listing.unreadable.is_empty());
        assert!(!data.record_path("csi-3").exists());
        // A quarantined record is not listed again.
        assert!(records.all().expect("list").quarantined.is_empty());
    }
}
