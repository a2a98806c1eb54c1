//! One JSON record per published volume, written once every mount is in place and removed after
//! the last unmount. A plugin killed before the record was written left only mounts of its own
//! kind (recognised by the tmpfs source marker), which start-up recovery unwinds.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::layout::{DataRoot, ScKey};
use crate::validate::PodRef;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub volume_id: String,
    pub target_path: PathBuf,
    pub pod: PodRef,
    pub sc: ScKey,
    /// The provider root filesystem used as lower layer when published.
    pub lower_dir: PathBuf,
}

/// The records directory of a data root.
#[derive(Clone, Debug)]
pub struct Records {
    data: DataRoot,
}

impl Records {
    pub fn new(data: DataRoot) -> Self {
        Self { data }
    }

    pub fn load(&self, volume_id: &str) -> io::Result<Option<Record>> {
        read_record(&self.data.record_path(volume_id))
    }

    /// Writes a record atomically (temp file, then rename), so a plugin killed at any point
    /// leaves either the old or the new record, never half of one. No fsync: records protect
    /// against the *plugin* dying, which keeps the page cache; a machine crash takes every mount
    /// with it, and recovery drops records whose mounts are gone — so durability would buy
    /// nothing and cost milliseconds per publish.
    pub fn save(&self, record: &Record) -> io::Result<()> {
        let dir = self.data.records_dir();
        let path = self.data.record_path(&record.volume_id);
        let temporary = dir.join(format!(".{}.tmp", record.volume_id));
        let body = serde_json::to_vec_pretty(record).map_err(io::Error::other)?;
        match std::fs::write(&temporary, &body) {
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                std::fs::create_dir_all(&dir)?;
                std::fs::write(&temporary, &body)?;
            }
            other => other?,
        }
        std::fs::rename(&temporary, &path)
    }

    pub fn remove(&self, volume_id: &str) -> io::Result<()> {
        match std::fs::remove_file(self.data.record_path(volume_id)) {
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    /// Every record, for start-up recovery. Unreadable records are returned as errors with their
    /// path so recovery can report them instead of silently forgetting a mount.
    pub fn all(&self) -> io::Result<Vec<Result<Record, (PathBuf, io::Error)>>> {
        let dir = self.data.records_dir();
        let entries = match std::fs::read_dir(&dir) {
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            other => other?,
        };
        let mut records = Vec::new();
        for entry in entries {
            let path = entry?.path();
            if path.extension().is_some_and(|extension| extension == "json") {
                records.push(match read_record(&path) {
                    Ok(Some(record)) => Ok(record),
                    Ok(None) => continue,
                    Err(error) => Err((path, error)),
                });
            } else if path.file_name().is_some_and(|name| name.to_string_lossy().ends_with(".tmp")) {
                // A temp file left by a crash mid-save: the rename never happened, so it is garbage.
                std::fs::remove_file(&path)?;
            }
        }
        Ok(records)
    }
}

fn read_record(path: &Path) -> io::Result<Option<Record>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {error}", path.display()))),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(volume_id: &str) -> Record {
        Record {
            volume_id: volume_id.into(),
            target_path: "/t".into(),
            pod: PodRef { namespace: "ns".into(), name: "dev".into(), uid: "u".into() },
            sc: ScKey { namespace: "ns".into(), name: "dev".into(), uid: "s".into() },
            lower_dir: "/l".into(),
        }
    }

    #[test]
    fn save_load_list_remove() {
        let dir = tempfile::tempdir().expect("tempdir");
        let records = Records::new(DataRoot::new(dir.path()));
        assert_eq!(records.load("csi-1").expect("load"), None);
        records.save(&record("csi-1")).expect("save");
        let mut updated = record("csi-1");
        updated.lower_dir = "/new-lower".into();
        records.save(&updated).expect("save again");
        assert_eq!(records.load("csi-1").expect("load"), Some(updated));
        std::fs::write(dir.path().join("publications/.csi-2.tmp"), b"{half").expect("write");
        std::fs::write(dir.path().join("publications/csi-3.json"), b"{broken").expect("write");
        let all = records.all().expect("list");
        assert_eq!(all.iter().filter(|entry| entry.is_ok()).count(), 1);
        let broken = all.iter().find_map(|entry| entry.as_ref().err()).expect("one broken");
        assert!(broken.1.to_string().contains("csi-3.json"), "{}", broken.1);
        assert!(!dir.path().join("publications/.csi-2.tmp").exists(), "temp files are cleaned");
        records.remove("csi-1").expect("remove");
        records.remove("csi-1").expect("remove twice is fine");
        assert_eq!(records.load("csi-1").expect("load"), None);
    }
}
