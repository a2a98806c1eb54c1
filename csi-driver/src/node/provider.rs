//! Finding a running provider container's root filesystem: its process (by the container ID
//! kubelet reported, through its cgroup), and where that process's actual root directory is
//! mounted in the host's mount namespace, which becomes the overlay's lower layer.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tracing::debug;

use super::error::{Context, IoError, PublishError};
use super::shape::host_mounts;
use crate::cgroup::{self, KubeletCgroups};
use crate::layout::ScKey;
use crate::mountinfo::{self, MountEntry};
use crate::sys::{FileIdentity, System};

/// The running provider container a publish uses.
pub struct ProviderContainer {
    pub container_id: String,
    /// Its pod's UID, when the cluster view knows it.
    pub pod_uid: Option<String>,
    /// Its image, as kubelet reports it.
    pub image_ref: String,
}

/// Where a provider container's root filesystem is mounted in the host's namespace, and what it
/// was when it was found: the directory the process had as `/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderLower {
    pub path: PathBuf,
    pub root: FileIdentity,
}

impl ProviderLower {
    /// Whether `path` still is the container's root filesystem. Kubelet never starts a container
    /// ID twice, and the runtime mounts a container's rootfs at a path named by its ID once: once
    /// unmounted (the container exited), the path is an empty directory of the node's disk or is
    /// gone, and never that root again. So a lower found before a mount and still there after it
    /// was there during the mount.
    pub(super) fn is_still_mounted(&self, system: &dyn System) -> bool {
        system.identity_of(&self.path).is_ok_and(|identity| identity == self.root)
    }
}

/// The longest pause between two looks at a provider that is still starting.
pub const MAX_PROVIDER_POLL: Duration = Duration::from_secs(2);

/// The pause after `delay`: doubled, at most [`MAX_PROVIDER_POLL`].
pub(super) fn next_poll_delay(delay: Duration) -> Duration {
    (delay * 2).min(MAX_PROVIDER_POLL)
}

/// Where each provider container's root filesystem is mounted in the host namespace. Finding it
/// costs a look into the container's cgroup directory (a process scan when that fails) and two
/// mount tables; a known provider is re-checked with two `stat`s.
pub struct ProviderCache {
    kubelet_cgroups: KubeletCgroups,
    entries: std::sync::Mutex<HashMap<String, KnownProvider>>,
}

#[derive(Clone)]
struct KnownProvider {
    pid: u32,
    lower: PathBuf,
    /// The directory the process had as `/`, which the lower is: checked again on every use.
    root: FileIdentity,
}

/// Providers are remembered until this many are known, then forgotten all at once (a node runs
/// far fewer; this only bounds memory if containers churn for months).
const PROVIDER_CACHE_LIMIT: usize = 4096;

impl ProviderCache {
    pub fn new(kubelet_cgroups: KubeletCgroups) -> Self {
        Self { kubelet_cgroups, entries: std::sync::Mutex::default() }
    }

    pub(super) fn lower_dir(&self, system: &dyn System, sc: &ScKey, provider: &ProviderContainer) -> Result<ProviderLower, PublishError> {
        let container_id = provider.container_id.as_str();
        let known = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(container_id).cloned();
        if let Some(known) = known {
            // Still the same process of that container, whose root is still the very directory
            // the lower is.
            let same_root = is_process_of_container(system, known.pid, container_id)
                && system.process_root_identity(known.pid).is_ok_and(|root| root == known.root)
                && system.identity_of(&known.lower).is_ok_and(|lower| lower == known.root);
            if same_root {
                return Ok(ProviderLower { path: known.lower, root: known.root });
            }
        }
        let pid = find_provider_pid(system, &self.kubelet_cgroups, container_id, provider.pod_uid.as_deref())?
            .ok_or_else(|| PublishError::ProviderProcessNotFound { sc: sc.clone(), container_id: container_id.to_owned() })?;
        let (lower, root) = find_provider_rootfs(system, &host_mounts(system)?, sc, container_id, pid)?;
        let mut entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if entries.len() >= PROVIDER_CACHE_LIMIT {
            entries.clear();
        }
        entries.insert(container_id.to_owned(), KnownProvider { pid, lower: lower.clone(), root });
        Ok(ProviderLower { path: lower, root })
    }
}

/// Whether `/proc/<pid>/cgroup` puts process `pid` in the container `container_id`: the proof
/// that a pid (remembered, or listed by a cgroup directory) is the container's.
fn is_process_of_container(system: &dyn System, pid: u32, container_id: &str) -> bool {
    system.process_cgroup(pid).is_ok_and(|text| cgroup::parse(&text).container_id.as_deref() == Some(container_id))
}

/// A process of the provider container. With the pod UID, it is one of the pids listed by the
/// container's cgroup directory under kubelet's cgroup root (a few `stat`s and two small reads).
/// Without it, or when no candidate directory exists (a layout this plugin does not know), every
/// process's `/proc/<pid>/cgroup` is read, which costs milliseconds on a busy node.
fn find_provider_pid(
    system: &dyn System,
    kubelet_cgroups: &KubeletCgroups,
    container_id: &str,
    pod_uid: Option<&str>,
) -> Result<Option<u32>, IoError> {
    if let Some(pod_uid) = pod_uid {
        let candidates = kubelet_cgroups.container_dirs(pod_uid, container_id);
        match system.first_cgroup_procs(&candidates) {
            Ok(Some((dir, procs))) => {
                // The directory's name is only a hint: a pid counts once its own cgroup file
                // names the container (the directory may list a pid that has since been reused).
                let pid = procs
                    .lines()
                    .filter_map(|line| line.trim().parse::<u32>().ok())
                    .find(|&pid| is_process_of_container(system, pid, container_id));
                if pid.is_some() {
                    return Ok(pid);
                }
                debug!(dir = %dir.display(), container_id, "no process of the container in its cgroup directory; scanning every process");
            }
            Ok(None) => {
                debug!(pod_uid, container_id, "no cgroup directory of the container under the kubelet cgroup root; scanning every process")
            }
            Err(error) => debug!(pod_uid, container_id, %error, "cannot read the container's cgroup directory; scanning every process"),
        }
    }
    let cgroups = system.process_cgroups().context("listing processes in", Path::new("/proc"))?;
    Ok(cgroups.iter().find(|(_, text)| cgroup::parse(text).container_id.as_deref() == Some(container_id)).map(|(pid, _)| *pid))
}

/// Finds where, in this mount namespace, the provider process `pid`'s actual root directory is
/// mounted: a mount showing the same directory of the same filesystem as the process's `/` entry
/// (device, type and root inside the filesystem), whose mount point is that very directory (the
/// device and inode of `/proc/<pid>/root`). Anything else is refused: a process that `chroot`ed
/// into a directory of the node's disk (an emptyDir) has the disk's device, and a device match
/// alone would make the node's whole filesystem the lower layer.
fn find_provider_rootfs(
    system: &dyn System,
    host: &[MountEntry],
    sc: &ScKey,
    container_id: &str,
    pid: u32,
) -> Result<(PathBuf, FileIdentity), PublishError> {
    let not_found = || PublishError::ProviderProcessNotFound { sc: sc.clone(), container_id: container_id.to_owned() };
    let text = system.process_mountinfo(pid).map_err(|_| not_found())?;
    let root_identity = system.process_root_identity(pid).map_err(|_| not_found())?;
    let process_mounts = mountinfo::parse(&text).map_err(IoError::from)?;
    let refused = || PublishError::LowerNotFound { sc: sc.clone() };
    // A process chrooted below a mount's root sees no mount at `/` at all.
    let root = mountinfo::root_mount(&process_mounts).ok_or_else(refused)?;
    let lower = mountinfo::mounts_showing(root, host)
        .into_iter()
        .find(|entry| system.identity_of(&entry.mount_point).is_ok_and(|identity| identity == root_identity))
        .ok_or_else(refused)?;
    let path = lower.mount_point.clone();
    if path.to_string_lossy().contains([',', ':']) {
        return Err(PublishError::UnusableLower { sc: sc.clone() });
    }
    Ok((path, root_identity))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::fake::FakeSystem;

    const ID: &str = "8b7e0f6ad23b2c1bd3c0b1e6f84a3d7c1e3f0aa1c19f8c2de5d9a4b7f2c61e0a";
    const OTHER_ID: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    const POD_UID: &str = "6d1c2b7e-43a1-4e5e-9d63-0c5a3f1b2e7d";

    /// A node with these cgroup directories (and their `cgroup.procs`) and processes (and their
    /// `/proc/<pid>/cgroup`).
    fn node(cgroup_dirs: HashMap<PathBuf, String>, processes: Vec<(u32, String)>) -> FakeSystem {
        let node = FakeSystem::default();
        let mut state = node.state();
        state.cgroup_dirs = cgroup_dirs;
        for (pid, cgroup) in processes {
            state.processes.insert(pid, crate::sys::fake::FakeProcess { cgroup, ..Default::default() });
        }
        drop(state);
        node
    }

    fn kubelet_cgroups() -> KubeletCgroups {
        KubeletCgroups { hierarchies: vec![PathBuf::from("/sys/fs/cgroup/pids")], root: PathBuf::from("/") }
    }

    fn container_dir(container_id: &str) -> PathBuf {
        PathBuf::from(format!("/sys/fs/cgroup/pids/kubepods/besteffort/pod{POD_UID}/{container_id}"))
    }

    fn cgroup_file(container_id: &str) -> String {
        format!("12:pids:/kubepods/besteffort/pod{POD_UID}/{container_id}\n0::/\n")
    }

    #[test]
    fn a_known_pod_uid_finds_the_process_through_its_cgroup_directory_without_a_scan() {
        let node = node(HashMap::from([(container_dir(ID), "17\n18\n".to_owned())]), vec![(17, cgroup_file(ID)), (18, cgroup_file(ID))]);
        assert_eq!(find_provider_pid(&node, &kubelet_cgroups(), ID, Some(POD_UID)).expect("lookup"), Some(17));
        assert_eq!(node.state().scans, 0, "no process scan");
    }

    #[test]
    fn a_listed_pid_that_is_not_the_containers_is_skipped() {
        // Pid 17 exited and was reused by a process of another container.
        let node =
            node(HashMap::from([(container_dir(ID), "17\n18\n".to_owned())]), vec![(17, cgroup_file(OTHER_ID)), (18, cgroup_file(ID))]);
        assert_eq!(find_provider_pid(&node, &kubelet_cgroups(), ID, Some(POD_UID)).expect("lookup"), Some(18));
        assert_eq!(node.state().scans, 0);
    }

    #[test]
    fn an_unknown_layout_falls_back_to_scanning_every_process() {
        let elsewhere = "5:pids:/custom-runtime/8b7e0f6ad23b2c1bd3c0b1e6f84a3d7c1e3f0aa1c19f8c2de5d9a4b7f2c61e0a\n";
        let node = node(HashMap::new(), vec![(1, "0::/\n".to_owned()), (42, elsewhere.to_owned())]);
        assert_eq!(find_provider_pid(&node, &kubelet_cgroups(), ID, Some(POD_UID)).expect("lookup"), Some(42));
        assert_eq!(node.state().scans, 1);
    }

    #[test]
    fn a_cgroup_directory_without_the_containers_process_falls_back_to_the_scan() {
        let node = node(HashMap::from([(container_dir(ID), "17\n".to_owned())]), vec![(17, cgroup_file(OTHER_ID)), (42, cgroup_file(ID))]);
        assert_eq!(find_provider_pid(&node, &kubelet_cgroups(), ID, Some(POD_UID)).expect("lookup"), Some(42));
        assert_eq!(node.state().scans, 1);
    }

    #[test]
    fn without_a_pod_uid_every_process_is_scanned() {
        let node = node(HashMap::from([(container_dir(ID), "17\n".to_owned())]), vec![(17, cgroup_file(ID))]);
        assert_eq!(find_provider_pid(&node, &kubelet_cgroups(), ID, None).expect("lookup"), Some(17));
        assert_eq!(node.state().scans, 1);
    }

    #[test]
    fn a_container_with_no_process_anywhere_is_not_found() {
        let node = node(HashMap::new(), vec![(17, cgroup_file(OTHER_ID))]);
        assert_eq!(find_provider_pid(&node, &kubelet_cgroups(), ID, Some(POD_UID)).expect("lookup"), None);
    }

    #[test]
    fn the_poll_delay_doubles_up_to_its_bound() {
        let mut delay = Duration::from_millis(100);
        let delays: Vec<u128> = (0..7)
            .map(|_| {
                delay = next_poll_delay(delay);
                delay.as_millis()
            })
            .collect();
        assert_eq!(delays, vec![200, 400, 800, 1600, 2000, 2000, 2000]);
    }
}
