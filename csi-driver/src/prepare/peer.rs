//! Which process may have a rootfs prepared: one in a container of the publication's pod, as its
//! cgroup says, held by `/proc/<pid>` so that it cannot be swapped for another meanwhile.

use std::io;
use std::os::fd::OwnedFd;

use nix::errno::Errno;
use nix::fcntl::{OFlag, open, openat};
use nix::sys::stat::Mode;

use super::error::{HelperError, NotThisPod};
use crate::cgroup;

/// Checks that a process's cgroup puts it in a container of the pod with UID `pod_uid`, and
/// returns that container's id. The cgroup is set by the runtime and cannot be changed from
/// inside an unprivileged container.
pub fn authenticate(cgroup_text: &str, pid: i32, pod: &str, pod_uid: &str) -> Result<String, NotThisPod> {
    let parsed = cgroup::parse(cgroup_text);
    let found = match (&parsed.pod_uid, &parsed.container_id) {
        (Some(uid), Some(container)) if uid == pod_uid => return Ok(container.clone()),
        (Some(uid), None) if uid == pod_uid => "it is in the pod's cgroup but in none of its containers".to_owned(),
        (Some(uid), _) => format!("its cgroup belongs to pod {uid}"),
        (None, _) => "its cgroup belongs to no pod".to_owned(),
    };
    Err(NotThisPod { pid, pod: pod.to_owned(), found })
}

/// `/proc/<pid>` held open: whatever is opened through it belongs to that very process, and fails
/// once it exited — even if its number is reused meanwhile.
pub(super) struct PinnedProcess {
    pub pid: i32,
    dir: OwnedFd,
}

impl PinnedProcess {
    /// Pins the process and checks that it is in a container of the pod.
    pub fn open(pid: i32, pod: &str, pod_uid: &str) -> Result<Self, HelperError> {
        let dir = open(format!("/proc/{pid}").as_str(), OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|_| HelperError::PeerGone { pid })?;
        let process = Self { pid, dir };
        let cgroup = process.read("cgroup")?;
        authenticate(&cgroup, pid, pod, pod_uid)?;
        Ok(process)
    }

    fn read(&self, name: &str) -> Result<String, HelperError> {
        let file = openat(&self.dir, name, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|_| HelperError::PeerGone { pid: self.pid })?;
        io::read_to_string(std::fs::File::from(file)).map_err(|_| HelperError::PeerGone { pid: self.pid })
    }

    /// Opens `/proc/<pid>/<name>` (a namespace, the root directory).
    pub fn open_entry(&self, name: &str, flags: OFlag, action: &'static str) -> Result<OwnedFd, HelperError> {
        openat(&self.dir, name, flags | OFlag::O_CLOEXEC, Mode::empty()).map_err(|errno| match errno {
            Errno::ENOENT | Errno::ESRCH => HelperError::PeerGone { pid: self.pid },
            other => HelperError::Namespace { action, pid: self.pid, source: other.into() },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prepare::Fault;

    const POD_UID: &str = "6d1c2b7e-43a1-4e5e-9d63-0c5a3f1b2e7d";
    const CONTAINER: &str = "8b7e0f6ad23b2c1bd3c0b1e6f84a3d7c1e3f0aa1c19f8c2de5d9a4b7f2c61e0a";

    #[test]
    fn only_a_container_of_the_publications_pod_is_authenticated() {
        let inside = format!("3:pids:/kubepods/besteffort/pod{POD_UID}/{CONTAINER}\n");
        assert_eq!(authenticate(&inside, 42, "ns/dev", POD_UID).expect("a container of the pod"), CONTAINER);

        let other_pod = format!("3:pids:/kubepods/besteffort/pod11111111-2222-3333-4444-555555555555/{CONTAINER}\n");
        let error = authenticate(&other_pod, 42, "ns/dev", POD_UID).expect_err("another pod");
        assert_eq!(
            error.to_string(),
            "process 42 is not in a container of pod ns/dev, the pod this volume was published for (its cgroup belongs to pod \
             11111111-2222-3333-4444-555555555555); only that pod's containers may have its rootfs prepared"
        );
        let pod_only = format!("3:pids:/kubepods/besteffort/pod{POD_UID}\n");
        let error = authenticate(&pod_only, 42, "ns/dev", POD_UID).expect_err("not in a container");
        assert!(error.to_string().contains("in the pod's cgroup but in none of its containers"), "{error}");
        let error = authenticate("0::/user.slice/session-1.scope\n", 42, "ns/dev", POD_UID).expect_err("a host process");
        assert!(error.to_string().contains("belongs to no pod"), "{error}");
        // The control socket refuses such a caller, and so does the helper.
        assert_eq!(HelperError::from(error).fault(), Fault::Caller);
    }
}
