//! Where the node plugin keeps things under its data root (`--data-root`, an admin setting):
//!
//! ```text
//! <data-root>/containers/<namespace>/<sc-name>/<sc-uid>/rootfs.img  the SC's own filesystem (size-limited, see crate::quota)
//! <data-root>/containers/<namespace>/<sc-name>/<sc-uid>/fs/upper   persistent rootfs changes, on that filesystem
//! <data-root>/containers/<namespace>/<sc-name>/<sc-uid>/fs/work    overlayfs work dir
//! <data-root>/containers/<namespace>/<sc-name>/<sc-uid>/upper      (rootfs created before size limits: no limit)
//! <data-root>/containers/<namespace>/<sc-name>/<sc-uid>/work
//! <data-root>/publications/<volume-id>.json                     one record per published volume
//! <data-root>/publications/quarantine/                          records that did not parse, kept for inspection
//! <data-root>/control/<volume-id>/                              control socket dir, bound into the volume
//! ```
//!
//! Persistent data is keyed by the StoppableContainer's UID, not only its name, so a deleted and
//! recreated SC with the same name never sees the old one's files. Every directory above the
//! uppers is root-only (see [`crate::dirs`]). `volume_id` is new for every
//! pod and keys only what lives as long as one publication.

use std::path::{Path, PathBuf};

/// The identity of a StoppableContainer's persistent data.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct ScKey {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl std::fmt::Display for ScKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}/{} (uid {})", self.namespace, self.name, self.uid)
    }
}

/// The driver-owned directory tree on the node.
#[derive(Clone, Debug)]
pub struct DataRoot {
    root: PathBuf,
}

impl DataRoot {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    /// All data of one StoppableContainer incarnation. The key's parts are validated DNS labels
    /// and a UID before they get here, so they cannot climb out of the data root.
    pub fn container_dir(&self, key: &ScKey) -> PathBuf {
        self.containers_dir().join(&key.namespace).join(&key.name).join(&key.uid)
    }

    /// The directory holding only `sc-exec`, filled by the node DaemonSet's init container
    /// (`sc-exec install`) and bind-mounted read-only into every provider pod.
    pub fn exec_wrapper_dir(&self) -> PathBuf {
        self.root.join("exec-wrapper")
    }

    /// The parent of every StoppableContainer's data.
    pub fn containers_dir(&self) -> PathBuf {
        self.root.join("containers")
    }

    /// How the SC's data is kept. A rootfs created before size limits existed has its upper
    /// directly in the SC's directory and keeps it (its data is never moved); every other one is
    /// on its own filesystem. One `stat` (the node plugin's publish path asks its
    /// [`System`](crate::sys::System) instead: `DataLayout::of(is_directory(legacy_upper_dir))`).
    pub fn layout(&self, key: &ScKey) -> DataLayout {
        DataLayout::of(std::fs::symlink_metadata(self.legacy_upper_dir(key)).is_ok_and(|metadata| metadata.is_dir()))
    }

    /// The overlay's upper directory of the SC's data, in its [`layout`](Self::layout).
    pub fn upper_dir(&self, key: &ScKey) -> PathBuf {
        self.upper_dir_in(key, self.layout(key))
    }

    /// The overlay's work directory, next to the upper.
    pub fn work_dir(&self, key: &ScKey) -> PathBuf {
        self.work_dir_in(key, self.layout(key))
    }

    /// The upper directory of the SC's data kept in `layout`.
    pub fn upper_dir_in(&self, key: &ScKey, layout: DataLayout) -> PathBuf {
        match layout {
            DataLayout::OwnFilesystem => crate::quota::RootfsFs::new(self.container_dir(key)).upper_dir(),
            DataLayout::Unlimited => self.legacy_upper_dir(key),
        }
    }

    /// The work directory of the SC's data kept in `layout`.
    pub fn work_dir_in(&self, key: &ScKey, layout: DataLayout) -> PathBuf {
        match layout {
            DataLayout::OwnFilesystem => crate::quota::RootfsFs::new(self.container_dir(key)).work_dir(),
            DataLayout::Unlimited => self.container_dir(key).join("work"),
        }
    }

    /// Where the upper of a rootfs made before size limits is: its existence decides the layout.
    pub fn legacy_upper_dir(&self, key: &ScKey) -> PathBuf {
        self.container_dir(key).join("upper")
    }

    pub fn records_dir(&self) -> PathBuf {
        self.root.join("publications")
    }

    pub fn record_path(&self, volume_id: &str) -> PathBuf {
        self.records_dir().join(format!("{volume_id}.json"))
    }

    /// Where unreadable records are moved, so a torn record never blocks its volume.
    pub fn quarantine_dir(&self) -> PathBuf {
        self.records_dir().join("quarantine")
    }

    /// The parent of every publication's control directory.
    pub fn control_root(&self) -> PathBuf {
        self.root.join("control")
    }

    pub fn control_dir(&self, volume_id: &str) -> PathBuf {
        self.control_root().join(volume_id)
    }
}

/// How one StoppableContainer's data is kept on the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataLayout {
    /// On its own size-limited filesystem (an image on a loop device): `<uid>/fs/{upper,work}`.
    OwnFilesystem,
    /// `<uid>/{upper,work}` on the data root's filesystem, without a limit: a rootfs created by
    /// a release before size limits, kept as it is so that no data is moved or lost.
    Unlimited,
}

impl DataLayout {
    /// The layout of data whose legacy upper directory exists or not.
    pub fn of(legacy_upper_exists: bool) -> Self {
        if legacy_upper_exists { DataLayout::Unlimited } else { DataLayout::OwnFilesystem }
    }
}

/// What a published volume's target holds: a small tmpfs with the overlay and the control dir
/// mounted inside it, so the consumer gets both through one volume.
pub fn target_rootfs(target: &Path) -> PathBuf {
    target.join(sc_api::consts::ROOTFS_SUBDIR)
}

pub fn target_control(target: &Path) -> PathBuf {
    target.join(sc_api::consts::CONTROL_SUBDIR)
}

/// The `source` field of the tmpfs the plugin mounts at each target, so its mounts are
/// recognisable in mountinfo.
pub const TARGET_TMPFS_SOURCE: &str = "stoppablecontainer";

/// The `source` field of the tmpfs at a layer volume's target: another marker than the rootfs
/// volume's, so that recovery, the sweeps and the usage reports, which go by that one, never take
/// a layer volume for a (half-done) rootfs publication.
pub const LAYER_TMPFS_SOURCE: &str = "stoppablecontainer-layer";

/// Where a layer volume binds the upper, read-only: `<target>/upper` (`kubectl sc diff` reads it
/// at `/.sc-layer/upper`).
pub fn target_layer_upper(target: &Path) -> PathBuf {
    target.join("upper")
}

/// The list of the upper's opaque directories in a layer volume: `<target>/opaque-dirs`, NUL
/// separated ([`sc_api::layer_diff::encode_path_list`]).
pub fn target_opaque_dirs(target: &Path) -> PathBuf {
    target.join("opaque-dirs")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_is_keyed_by_namespace_name_and_uid() {
        let data = DataRoot::new("/var/lib/stoppablecontainer");
        let key = ScKey { namespace: "team-a".into(), name: "dev".into(), uid: "6d1c2b7e-43a1-4e5e-9d63-0c5a3f1b2e7d".into() };
        assert_eq!(
            data.upper_dir(&key),
            Path::new("/var/lib/stoppablecontainer/containers/team-a/dev/6d1c2b7e-43a1-4e5e-9d63-0c5a3f1b2e7d/fs/upper")
        );
        assert_eq!(data.work_dir(&key).parent(), data.upper_dir(&key).parent());
        assert_eq!(data.record_path("csi-1"), Path::new("/var/lib/stoppablecontainer/publications/csi-1.json"));
        assert_eq!(target_rootfs(Path::new("/t")), Path::new("/t/rootfs"));
        assert_eq!(target_control(Path::new("/t")), Path::new("/t/control"));
    }

    #[test]
    fn a_rootfs_made_before_size_limits_keeps_its_unlimited_layout() {
        assert_eq!(DataLayout::of(true), DataLayout::Unlimited);
        assert_eq!(DataLayout::of(false), DataLayout::OwnFilesystem);
        let root = tempfile::tempdir().expect("tempdir");
        let data = DataRoot::new(root.path());
        let key = ScKey { namespace: "team-a".into(), name: "old".into(), uid: "u".into() };
        std::fs::create_dir_all(root.path().join("containers/team-a/old/u/upper")).expect("legacy upper");
        assert_eq!(data.layout(&key), DataLayout::Unlimited);
        assert_eq!(data.upper_dir(&key), root.path().join("containers/team-a/old/u/upper"));
        assert_eq!(data.work_dir(&key), root.path().join("containers/team-a/old/u/work"));
    }
}
