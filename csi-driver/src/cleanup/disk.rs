//! The node's disk: moving a StoppableContainer's data out of reach under the mount lock, removing
//! it, and listing what the data root holds.

use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use sc_api::names::is_dns_label;
use sc_api::node_report::is_valid_key;
use tokio::sync::Mutex;

use super::TRASH_DIR_NAME;
use crate::cluster::ClusterView;
use crate::layout::{DataRoot, ScKey};
use crate::node::{IoError, NodeCore};
use crate::sys::System;

/// What a deletion needs from the node: the lock publishes hold while they check and change
/// mounts, and the mount table.
pub trait DataGuard: Send + Sync {
    fn mount_lock(&self) -> &Mutex<()>;
    /// Whether anything mounts the SC's data (an overlay over its upper, or a mount below its
    /// directory).
    fn is_data_mounted(&self, sc: &ScKey) -> Result<bool, IoError>;
    /// Unmounts the SC's own filesystem if no overlay uses it (a stopped SC's), so that only a
    /// consumer still running keeps the data from being deleted.
    fn release_idle_filesystem(&self, sc: &ScKey);
}

impl<C: ClusterView, S: System> DataGuard for NodeCore<C, S> {
    fn mount_lock(&self) -> &Mutex<()> {
        NodeCore::mount_lock(self)
    }

    fn is_data_mounted(&self, sc: &ScKey) -> Result<bool, IoError> {
        NodeCore::is_data_mounted(self, sc)
    }

    fn release_idle_filesystem(&self, sc: &ScKey) {
        NodeCore::release_idle_filesystem(self, sc);
    }
}

/// What a deletion did.
#[derive(Debug, PartialEq, Eq)]
pub enum Removal {
    /// Deleted; this many bytes of the node's disk were freed.
    Removed { bytes: u64 },
    /// There was nothing to delete.
    Absent,
    /// Something mounts it: nothing was touched.
    Mounted,
}

fn io_error<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> IoError + 'a {
    move |source| IoError { action, path: path.display().to_string(), source }
}

/// Where `key`'s data goes while it is being removed.
pub fn trash_path(data: &DataRoot, key: &ScKey) -> PathBuf {
    data.containers_dir().join(TRASH_DIR_NAME).join(&key.uid)
}

/// Deletes `key`'s data directory unless something mounts it, then its name and namespace
/// directories if they became empty.
pub async fn remove_data<G: DataGuard + ?Sized>(guard: &G, data: &DataRoot, key: &ScKey) -> Result<Removal, IoError> {
    let dir = data.container_dir(key);
    let trash = trash_path(data, key);
    // What an interrupted removal of the same UID left behind is garbage: it goes first, so the
    // rename below has its place.
    if tokio::fs::symlink_metadata(&trash).await.is_ok() {
        remove_tree(trash.clone()).await?;
    }
    {
        let _mounts = guard.mount_lock().lock().await;
        match std::fs::symlink_metadata(&dir) {
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Removal::Absent),
            Err(error) => return Err(io_error("looking at", &dir)(error)),
            Ok(_) => {}
        }
        guard.release_idle_filesystem(key);
        if guard.is_data_mounted(key)? {
            return Ok(Removal::Mounted);
        }
        let trash_dir = data.containers_dir().join(TRASH_DIR_NAME);
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&trash_dir).map_err(io_error("creating", &trash_dir))?;
        std::fs::rename(&dir, &trash).map_err(io_error("moving out of the way", &dir))?;
        // Publishes create these directories under the same lock, so an rmdir here never races a
        // publish that is about to use them.
        for parent in dir.ancestors().skip(1).take(2) {
            if std::fs::remove_dir(parent).is_err() {
                break;
            }
        }
    }
    Ok(Removal::Removed { bytes: remove_tree(trash).await? })
}

/// Removes a tree in a blocking thread; returns the bytes it occupied on disk (best effort).
pub(super) async fn remove_tree(path: PathBuf) -> Result<u64, IoError> {
    let shown = path.clone();
    tokio::task::spawn_blocking(move || {
        let bytes = disk_usage(&path);
        // std's remove_dir_all never follows a symlink out of the tree.
        std::fs::remove_dir_all(&path).map(|()| bytes)
    })
    .await
    .map_err(|join| IoError { action: "joining the removal of", path: shown.display().to_string(), source: io::Error::other(join) })?
    .map_err(io_error("removing", &shown))
}

/// The disk space of everything below `root` (symlinks are counted, never followed; unreadable
/// parts are skipped: the number is for the log).
fn disk_usage(root: &Path) -> u64 {
    let mut total = 0u64;
    // A stack, not recursion: a rootfs can be deeper than a thread's stack allows.
    let mut pending = vec![root.to_path_buf()];
    while let Some(path) = pending.pop() {
        let Ok(metadata) = std::fs::symlink_metadata(&path) else { continue };
        total = total.saturating_add(metadata.blocks().saturating_mul(512));
        if metadata.is_dir()
            && let Ok(entries) = std::fs::read_dir(&path)
        {
            pending.extend(entries.flatten().map(|entry| entry.path()));
        }
    }
    total
}

/// What is under `containers/`: the data directories this plugin could have made, and the
/// leftovers of interrupted removals. Anything else (names that are not DNS labels, files) is
/// never touched.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DataDirs {
    pub dirs: Vec<ScKey>,
    pub trash: Vec<PathBuf>,
}

/// Lists `containers/<ns>/<name>/<uid>` directories without following symlinks.
pub fn scan(data: &DataRoot) -> io::Result<DataDirs> {
    let containers = data.containers_dir();
    let mut found = DataDirs::default();
    let namespaces = match std::fs::read_dir(&containers) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(found),
        other => other?,
    };
    for namespace in subdirectories(namespaces) {
        if namespace == TRASH_DIR_NAME {
            if let Ok(entries) = std::fs::read_dir(containers.join(TRASH_DIR_NAME)) {
                found.trash.extend(entries.flatten().map(|entry| entry.path()));
            }
            continue;
        }
        if !is_dns_label(&namespace) {
            continue;
        }
        let Ok(names) = std::fs::read_dir(containers.join(&namespace)) else { continue };
        for name in subdirectories(names).filter(|name| is_dns_label(name)) {
            let Ok(uids) = std::fs::read_dir(containers.join(&namespace).join(&name)) else { continue };
            for uid in subdirectories(uids).filter(|uid| is_valid_key(uid) && !uid.starts_with('.')) {
                found.dirs.push(ScKey { namespace: namespace.clone(), name: name.clone(), uid });
            }
        }
    }
    found.dirs.sort_by(|a, b| (&a.namespace, &a.name, &a.uid).cmp(&(&b.namespace, &b.name, &b.uid)));
    Ok(found)
}

/// The names of the real directories (not symlinks) among `entries` that are valid UTF-8.
fn subdirectories(entries: std::fs::ReadDir) -> impl Iterator<Item = String> {
    entries
        .flatten()
        .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_dir()))
        .filter_map(|entry| entry.file_name().into_string().ok())
}
