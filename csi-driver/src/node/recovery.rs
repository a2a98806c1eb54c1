//! Start-up recovery: finishing or undoing whatever a previous run of the plugin left half
//! done, from the records and the mount table. A record that does not parse is quarantined, and
//! its target is then judged by its mounts like any unrecorded one: a complete publication is
//! live (recorded again from the mount table), never unwound; only a half-done one is unwound.

use std::path::{Path, PathBuf};

use tracing::{info, warn};

use super::error::{Context, IoError};
use super::live::{LiveTarget, UpperKey};
use super::mounter::Mounter;
use super::shape::{PublishedMounts, check_published_shape, is_our_tmpfs, published_mounts, sc_of_upper};
use crate::layout::DataRoot;
use crate::mountinfo::{self, MountEntry};
use crate::records::Record;
use crate::sys::System;
use crate::validate::PodRef;

/// What recovery found, for the RPC side to act on.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// How many publications are live.
    pub live: usize,
    /// The live publications whose consumers must be served again (their control sockets).
    pub serve: Vec<Record>,
    /// Volumes whose broken publication was undone (its control directory removed).
    pub unwound: Vec<String>,
}

impl<S: System> Mounter<S> {
    /// Recovers after making the data root root-only and sealing its `containers/`. Only making
    /// the data root private and reading the mount table can fail start-up: the rest is logged
    /// and left for the next attempt.
    pub fn recover(&self) -> Result<Recovered, IoError> {
        let data = &self.data;
        self.system.secure_data_root(data).context("making root-only (0700)", data.path())?;
        self.seal_containers_dir(&self.host_mounts()?);
        let listing = self.records.all().context("listing", &data.records_dir())?;
        for (path, error) in &listing.unreadable {
            warn!(path = %path.display(), %error, "a publication record cannot be read; left in place, its target is judged by its mounts");
        }
        let host = self.host_mounts()?;
        let mut recovered = Recovered::default();
        for record in listing.records {
            let upper = self.record_key(&record);
            match check_published_shape(&host, &record.target_path, &upper) {
                Ok(()) => {
                    let on_claim = record.claim.clone().map(|claim| (record.sc.clone(), claim));
                    let live = LiveTarget { target: record.target_path.clone(), lower: record.lower_dir.clone(), on_claim };
                    self.live.insert_key(upper, live);
                    recovered.live += 1;
                    recovered.serve.push(record);
                }
                Err(problem) => {
                    info!(volume_id = %record.volume_id, %problem, "cleaning up a broken or vanished publication");
                    if let Err(error) = self.unwind_target(&record.target_path) {
                        warn!(volume_id = %record.volume_id, %error, "could not clean up; keeping its record for the next attempt");
                        continue;
                    }
                    if let Err(error) = self.records.remove(&record.volume_id) {
                        warn!(volume_id = %record.volume_id, %error, "could not remove the record of a cleaned-up publication; the next start-up does");
                    }
                    self.remove_control_dir(&record.volume_id);
                    recovered.unwound.push(record.volume_id);
                }
            }
        }
        // Mounts of this plugin's kind with no record: a publish killed before it recorded
        // itself, or one whose record was quarantined.
        let recorded = self.live.targets();
        let host = self.host_mounts()?;
        let unrecorded: Vec<PathBuf> = host
            .iter()
            .filter(|entry| {
                is_our_tmpfs(entry)
                    && entry.mount_point.starts_with(self.kubelet_dir.join("pods"))
                    && !recorded.contains(&entry.mount_point)
            })
            .map(|entry| entry.mount_point.clone())
            .collect();
        for target in unrecorded {
            match published_mounts(&host, &target) {
                Ok(mounts) => {
                    recovered.live += 1;
                    let lower = mounts.overlay.super_option("lowerdir").map(PathBuf::from).unwrap_or_default();
                    // A claim-backed one names no StoppableContainer in its mounts: it stays live
                    // (one overlay per claim) but is not measured.
                    self.live.insert_key(mounts.key.clone(), LiveTarget { target: target.clone(), lower, on_claim: None });
                    recovered.serve.extend(self.keep_unrecorded(&target, &mounts));
                }
                Err(problem) => {
                    info!(target = %target.display(), %problem, "unwinding a publish that was interrupted before it was recorded");
                    if let Err(error) = self.unwind_target(&target) {
                        warn!(target = %target.display(), %error, "could not unwind an interrupted publish");
                    }
                }
            }
        }
        Ok(recovered)
    }

    /// Records again a complete publication found with no readable record, and returns the
    /// record to serve it by. Failures are logged: the consumer keeps its mounts either way, and
    /// an unpublish goes by the mount table.
    fn keep_unrecorded(&self, target: &Path, mounts: &PublishedMounts<'_>) -> Option<Record> {
        if let UpperKey::Claim(volume) = &mounts.key {
            warn!(
                target = %target.display(),
                volume = %volume,
                "kept a live publication on a claim with no readable record (its StoppableContainer is not in its mounts); it stays mounted until unpublished, and its consumer cannot be prepared again until the pod is recreated"
            );
            return None;
        }
        let Some(record) = record_from_mounts(mounts, target, &self.data, &self.kubelet_dir) else {
            warn!(
                target = %target.display(),
                upper = %mounts.upper.display(),
                "kept a live publication with no readable record whose mounts do not name its volume and pod (was --data-root or --kubelet-dir changed?); its consumer cannot be prepared again until the pod is recreated"
            );
            return None;
        };
        info!(volume_id = %record.volume_id, target = %target.display(), "kept a live publication that had no readable record; recorded it again from the mount table");
        if let Err(error) = self.records.save(&record) {
            warn!(volume_id = %record.volume_id, %error, "could not record the kept publication again; unpublish goes by the mount table");
        }
        Some(record)
    }

    /// Mounts the data root's `containers/` onto itself with `nosuid,nodev`, once per boot: a
    /// setuid program or device node in an upper then means nothing to anyone who reaches it
    /// there (through the overlays, whose own flags count, both keep working). A failure is only
    /// warned about: the 0700 modes already keep the node's other users out.
    fn seal_containers_dir(&self, host: &[MountEntry]) {
        let dir = self.data.containers_dir();
        match containers_seal(host, &dir) {
            Seal::Sealed => {}
            Seal::Mount => match self.system.bind_mount_nosuid_nodev(&dir) {
                Ok(()) => info!(dir = %dir.display(), "mounted the rootfs data nosuid,nodev"),
                Err(error) => {
                    warn!(dir = %dir.display(), %error, "could not mount the rootfs data nosuid,nodev; it stays root-only (0700)")
                }
            },
            Seal::Leave(reason) => {
                warn!(dir = %dir.display(), reason, "not mounting the rootfs data nosuid,nodev; it stays root-only (0700)")
            }
        }
    }
}

/// The record a publish would have written for the complete publication `mounts` at `target`,
/// read back from the mounts themselves: the StoppableContainer from the upper's path below
/// the data root, the volume from the control directory's name, the consumer pod's UID from
/// kubelet's target path (the consumer pod is named and namespaced like its StoppableContainer).
/// `None` when the paths are not the ones this plugin makes with these settings.
pub(super) fn record_from_mounts(mounts: &PublishedMounts<'_>, target: &Path, data: &DataRoot, kubelet_dir: &Path) -> Option<Record> {
    let sc = sc_of_upper(data, mounts.upper)?;
    // The control mount shows the directory it binds, `.../control/<volume-id>`, as its root.
    let volume_id = mounts.control.root.file_name()?.to_str()?.to_owned();
    if mounts.control.root.parent()?.file_name()? != "control" {
        return None;
    }
    let pod_uid = crate::validate::pod_uid_in_target(kubelet_dir, target)?.to_owned();
    let lower_dir = PathBuf::from(mounts.overlay.super_option("lowerdir")?);
    let pod = PodRef { namespace: sc.namespace.clone(), name: sc.name.clone(), uid: pod_uid };
    Some(Record { volume_id, target_path: target.to_path_buf(), pod, sc, lower_dir, claim: None })
}

/// What to do about `containers/` being mounted `nosuid,nodev`.
#[derive(Debug, PartialEq, Eq)]
enum Seal {
    /// It is.
    Sealed,
    /// Bind it onto itself with those flags.
    Mount,
    /// Leave it as it is, for this reason.
    Leave(String),
}

/// Decides from the mount table (pure, for tests). A bind onto itself would hide whatever is
/// mounted below `containers/` already, and another mount there is not the plugin's to change.
fn containers_seal(host: &[MountEntry], dir: &Path) -> Seal {
    let flag = |entry: &MountEntry, name: &str| entry.mount_options.iter().any(|option| option == name);
    match mountinfo::mount_at(host, dir) {
        Some(entry) if flag(entry, "nosuid") && flag(entry, "nodev") => Seal::Sealed,
        Some(entry) => {
            Seal::Leave(format!("a {} mount from {} is there without nosuid,nodev; mount it with both", entry.fs_type, entry.source))
        }
        None => match host.iter().find(|entry| entry.mount_point.starts_with(dir)) {
            Some(below) => Seal::Leave(format!("{} is mounted below it and would be hidden", below.mount_point.display())),
            None => Seal::Mount,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::super::shape::tests::{DATA, KUBELET, POD_UID, SC_UID, published, target};
    use super::*;
    use crate::layout::ScKey;

    #[test]
    fn a_complete_publication_is_read_back_from_its_mounts() {
        let host = published("rw,relatime");
        let data = DataRoot::new(DATA);
        let mounts = published_mounts(&host, &target()).expect("complete");
        let record = record_from_mounts(&mounts, &target(), &data, Path::new(KUBELET)).expect("recognised");
        assert_eq!(
            record,
            Record {
                volume_id: "csi-1".into(),
                target_path: target(),
                pod: PodRef { namespace: "ns".into(), name: "dev".into(), uid: POD_UID.into() },
                sc: ScKey { namespace: "ns".into(), name: "dev".into(), uid: SC_UID.into() },
                lower_dir: "/run/containerd/x/rootfs".into(),
                claim: None,
            }
        );
        let sc = record.sc.clone();
        assert_eq!(check_published_shape(&host, &target(), &UpperKey::Dir(data.upper_dir(&sc))), Ok(()));
        // Another data root or kubelet dir (the flags changed since): live, but not recognised.
        assert_eq!(record_from_mounts(&mounts, &target(), &DataRoot::new("/srv/sc"), Path::new(KUBELET)), None);
        assert_eq!(record_from_mounts(&mounts, &target(), &data, Path::new("/srv/kubelet")), None);
    }

    #[test]
    fn containers_are_sealed_once_and_never_over_other_mounts() {
        let dir = Path::new("/var/lib/stoppablecontainer/containers");
        let parse = |text: &str| mountinfo::parse(text).expect("parses");
        assert_eq!(containers_seal(&parse("1 0 254:0 / / rw - ext4 /dev/vda rw\n"), dir), Seal::Mount);
        let sealed = format!("1 0 254:0 / / rw - ext4 /dev/vda rw\n2 1 254:0 {0} {0} rw,nosuid,nodev - ext4 /dev/vda rw\n", dir.display());
        assert_eq!(containers_seal(&parse(&sealed), dir), Seal::Sealed);
        let plain = format!("2 1 8:16 / {} rw - xfs /dev/sdb rw\n", dir.display());
        let Seal::Leave(reason) = containers_seal(&parse(&plain), dir) else { panic!("an admin's mount is left alone") };
        assert_eq!(reason, "a xfs mount from /dev/sdb is there without nosuid,nodev; mount it with both");
        let below = format!("2 1 7:0 / {}/ns/dev/uid rw - ext4 /dev/loop0 rw\n", dir.display());
        let Seal::Leave(reason) = containers_seal(&parse(&below), dir) else { panic!("a bind would hide what is below") };
        assert!(reason.ends_with("/ns/dev/uid is mounted below it and would be hidden"), "{reason}");
    }
}
