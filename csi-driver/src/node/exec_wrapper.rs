//! The exec-wrapper volume: the provider pod's inline CSI volume holding only `sc-exec`, which it
//! runs as its pause. It is a read-only, `nosuid,nodev` bind of `<data-root>/exec-wrapper/`,
//! which the node DaemonSet's init container fills (`sc-exec install`), so a provider starts
//! with no init container of its own, under any container runtime and PodSecurity level (the
//! tenant's pod has no hostPath).
//!
//! No authorisation is needed: any pod may have this static binary. What matters is that the
//! bind exposes nothing else, so the source is checked at every publish: a root-owned directory,
//! writable by nobody else, not a symlink, holding exactly one root-owned regular file `sc-exec`
//! that nobody else can write.
//!
//! Nothing is recorded: the bind is recognised at its target by identity (the mount point shows
//! the root of what is mounted on it, so `(st_dev, st_ino)` of the target equals the source's
//! only while the bind is there). That holds after a plugin restart too, and the recovery and the
//! sweeps, which look at records and at this plugin's tmpfs, never take it for a rootfs
//! publication.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::info;

use super::error::{Context, IoError, PublishError, UnpublishError};
use super::mounter::Mounter;
use super::rpc::NodeCore;
use crate::cluster::ClusterView;
use crate::mountinfo;
use crate::sys::{FileKind, FileStatus, System};
use crate::validate::ExecWrapperRequest;

/// The binary's file name, as `sc-exec install` writes it (and the provider runs it, at
/// `sc_api::consts::EXEC_WRAPPER_PATH`).
const BINARY: &str = "sc-exec";

/// Whether a file's mode lets anyone but its owner write it.
fn writable_by_others(status: &FileStatus) -> bool {
    status.mode & 0o022 != 0
}

impl<S: System> Mounter<S> {
    /// Why the exec-wrapper directory cannot be bind-mounted into pods, or `None` when it can.
    fn exec_wrapper_source_problem(&self, dir: &Path) -> Option<String> {
        let system = &*self.system;
        let binary = dir.join(BINARY);
        let status = match system.file_status(dir) {
            Ok(status) => status,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Some("it does not exist".into()),
            Err(error) => return Some(format!("it cannot be examined: {error}")),
        };
        match status.kind {
            FileKind::Directory => {}
            FileKind::Symlink => return Some("it is a symlink, which is never followed".into()),
            FileKind::Regular | FileKind::Other => return Some("it is not a directory".into()),
        }
        if status.uid != 0 || writable_by_others(&status) {
            return Some(format!(
                "it must be owned by root and writable by nobody else (it is uid {}, mode {:o})",
                status.uid, status.mode
            ));
        }
        let entries = match system.list_directory(dir) {
            Ok(entries) => entries,
            Err(error) => return Some(format!("it cannot be listed: {error}")),
        };
        if let Some(other) = entries.iter().find(|entry| **entry != binary) {
            return Some(format!("it holds {} besides {BINARY}; it must hold nothing else", other.display()));
        }
        let status = match system.file_status(&binary) {
            Ok(status) => status,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Some(format!("it holds no {BINARY}")),
            Err(error) => return Some(format!("its {BINARY} cannot be examined: {error}")),
        };
        if status.kind != FileKind::Regular {
            return Some(format!("its {BINARY} is not a regular file ({:?})", status.kind));
        }
        if status.uid != 0 || writable_by_others(&status) || status.mode & 0o111 == 0 {
            return Some(format!(
                "its {BINARY} must be owned by root, executable and writable by nobody else (it is uid {}, mode {:o})",
                status.uid, status.mode
            ));
        }
        None
    }

    /// Whether `target` holds the exec-wrapper bind (see the module comment).
    pub(super) fn holds_exec_wrapper(&self, target: &Path) -> bool {
        let system = &*self.system;
        match (system.identity_of(target), system.identity_of(&self.data.exec_wrapper_dir())) {
            (Ok(target), Ok(source)) => target == source,
            _ => false,
        }
    }

    /// Bind-mounts the exec-wrapper directory read-only at the request's target, after checking
    /// it. A target that already holds it is published (a repeated publish).
    pub fn publish_exec_wrapper(&self, request: &ExecWrapperRequest) -> Result<(), PublishError> {
        let (source, target) = (self.data.exec_wrapper_dir(), &request.target_path);
        if let Some(problem) = self.exec_wrapper_source_problem(&source) {
            return Err(PublishError::ExecWrapperSource { dir: source.display().to_string(), problem });
        }
        if self.system.exists(target) {
            if self.holds_exec_wrapper(target) {
                return Ok(());
            }
            if let Some(existing) = mountinfo::mount_at(&self.host_mounts()?, target) {
                return Err(PublishError::ForeignMount {
                    target: target.display().to_string(),
                    fs_type: existing.fs_type.clone(),
                    device: existing.source.clone(),
                });
            }
        }
        // Kubelet creates only the target's parent.
        match self.system.create_dir(target) {
            Err(error) if error.kind() != io::ErrorKind::AlreadyExists => {
                return Err(IoError { action: "creating", path: target.display().to_string(), source: error }.into());
            }
            _ => {}
        }
        self.system
            .bind_mount_read_only_executable(&source, target)
            .context("bind-mounting the exec-wrapper directory read-only at", target)?;
        info!(volume_id = %request.volume_id, target = %target.display(), "published the exec wrapper");
        Ok(())
    }

    /// Unmounts the exec-wrapper bind at `target` and removes the target directory. Call only when
    /// [`Self::holds_exec_wrapper`] says it is there.
    pub(super) fn unpublish_exec_wrapper(&self, volume_id: &str, target: &Path) -> Result<(), UnpublishError> {
        match self.system.unmount(target) {
            Ok(()) => {}
            Err(error) if matches!(error.raw_os_error(), Some(nix::libc::EINVAL | nix::libc::ENOENT)) => {}
            Err(source) if source.raw_os_error() == Some(nix::libc::EBUSY) => {
                return Err(UnpublishError::Busy { target: target.display().to_string(), source });
            }
            Err(source) => return Err(IoError { action: "unmounting", path: target.display().to_string(), source }.into()),
        }
        match self.system.remove_dir(target) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(IoError { action: "removing", path: target.display().to_string(), source }.into()),
        }
        info!(volume_id, target = %target.display(), "unpublished the exec wrapper");
        Ok(())
    }

    /// The exec-wrapper directory, when `target` holds its bind (for the volume stats).
    pub(super) fn exec_wrapper_at(&self, target: &Path) -> Option<PathBuf> {
        self.holds_exec_wrapper(target).then(|| self.data.exec_wrapper_dir())
    }
}

impl<C: ClusterView, S: System> NodeCore<C, S> {
    /// Publishes the exec-wrapper volume at the request's target.
    pub async fn publish_exec_wrapper(&self, request: &ExecWrapperRequest) -> Result<(), PublishError> {
        let _guard = self.mount_lock().lock().await;
        let (mounter, task_request) = (Arc::clone(&self.mounter), request.clone());
        tokio::task::spawn_blocking(move || mounter.publish_exec_wrapper(&task_request))
            .await
            .map_err(|join| IoError::joining("joining the exec-wrapper mount task for", "publish", join))?
    }
}
