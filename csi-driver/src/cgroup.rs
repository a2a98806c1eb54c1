//! Parser for `/proc/<pid>/cgroup`: which Kubernetes container (and pod) a process belongs to.
//!
//! The container id comes from the pod's `status.containerStatuses[].containerID`, which kubelet
//! sets and a workload cannot forge; the process whose cgroup names that id is the container's.
//! Cgroup paths differ by cgroup version, cgroup driver and runtime:
//!
//! | driver   | runtime    | last path component                         | pod component                           |
//! |----------|------------|---------------------------------------------|-----------------------------------------|
//! | cgroupfs | containerd | `<id>`                                      | `pod<uid>`                              |
//! | cgroupfs | CRI-O      | `crio-<id>`                                 | `pod<uid>`                              |
//! | systemd  | containerd | `cri-containerd-<id>.scope`                 | `kubepods-<qos>-pod<uid with _>.slice`  |
//! | systemd  | CRI-O      | `crio-<id>.scope` (`crio-conmon-*` is not the container) | same                       |
//! | either   | Docker     | `<id>` / `docker-<id>.scope`                | same                                    |
//!
//! Paths may be relative (`/../..`) when read from inside another cgroup namespace, so only the
//! components are trusted, never the prefix.

/// What a process's cgroup file says about its container.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerCgroup {
    /// The 64-hex-digit container id, when the process is in a container's cgroup.
    pub container_id: Option<String>,
    /// The pod UID (with dashes), when the process is in a pod's cgroup.
    pub pod_uid: Option<String>,
}

/// Reads the container and pod a process belongs to from the text of its `/proc/<pid>/cgroup`.
pub fn parse(text: &str) -> ContainerCgroup {
    let mut found = ContainerCgroup::default();
    for line in text.lines() {
        // hierarchy-id:controllers:path — the path may itself contain ':'.
        let Some(path) = line.splitn(3, ':').nth(2) else { continue };
        let components: Vec<&str> = path.split('/').filter(|component| !component.is_empty()).collect();
        if found.container_id.is_none() {
            found.container_id = components.last().and_then(|last| container_id_of_component(last));
        }
        if found.pod_uid.is_none() {
            found.pod_uid = components.iter().rev().find_map(|component| pod_uid_of_component(component));
        }
        if found.container_id.is_some() && found.pod_uid.is_some() {
            break;
        }
    }
    found
}

fn container_id_of_component(component: &str) -> Option<String> {
    let name = component.strip_suffix(".scope").unwrap_or(component);
    if name.starts_with("crio-conmon-") {
        return None;
    }
    let id = ["cri-containerd-", "crio-", "docker-", "containerd-"]
        .iter()
        .find_map(|prefix| name.strip_prefix(prefix))
        .unwrap_or(name);
    is_container_id(id).then(|| id.to_owned())
}

fn pod_uid_of_component(component: &str) -> Option<String> {
    // cgroupfs: `pod<uid>`; systemd: `kubepods-<qos>-pod<uid_with_underscores>.slice` or `kubepods-pod<uid>.slice`.
    let name = component.strip_suffix(".slice").unwrap_or(component);
    let uid = match name.rfind("pod") {
        Some(start) if start == 0 || name[..start].ends_with('-') => &name[start + 3..],
        _ => return None,
    };
    let uid = uid.replace('_', "-");
    is_uid(&uid).then_some(uid)
}

/// A container id as CRI runtimes print it: 64 lowercase hex digits.
pub fn is_container_id(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
}

/// A Kubernetes UID: 36 characters, lowercase hex digits and dashes in the 8-4-4-4-12 layout.
pub fn is_uid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups.iter().zip([8, 4, 4, 4, 12]).all(|(group, length)| {
            group.len() == length && group.bytes().all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
        })
}

/// The container id inside a pod status `containerID` (`containerd://<id>`, `cri-o://<id>`,
/// `docker://<id>`), when it is well formed.
pub fn container_id_from_status(container_id: &str) -> Option<&str> {
    let (_runtime, id) = container_id.split_once("://")?;
    is_container_id(id).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "8b7e0f6ad23b2c1bd3c0b1e6f84a3d7c1e3f0aa1c19f8c2de5d9a4b7f2c61e0a";
    const UID: &str = "6d1c2b7e-43a1-4e5e-9d63-0c5a3f1b2e7d";

    fn fixture(name: &str) -> String {
        let path = format!("{}/tests/fixtures/cgroup/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{path}: {error}"))
    }

    #[test]
    fn every_runtime_and_driver_layout_yields_container_and_pod() {
        for name in [
            "v1-cgroupfs-containerd",
            "v1-systemd-containerd",
            "v1-cgroupfs-crio",
            "v1-systemd-crio",
            "v1-systemd-docker",
            "v2-cgroupfs-containerd",
            "v2-systemd-containerd",
            "v2-systemd-crio",
            "v2-nested-cgroupns",
        ] {
            let parsed = parse(&fixture(name));
            assert_eq!(parsed.container_id.as_deref(), Some(ID), "{name}");
            assert_eq!(parsed.pod_uid.as_deref(), Some(UID), "{name}");
        }
    }

    #[test]
    fn crio_conmon_is_not_the_container() {
        let parsed = parse(&fixture("v2-systemd-crio-conmon"));
        assert_eq!(parsed.container_id, None);
        assert_eq!(parsed.pod_uid.as_deref(), Some(UID));
    }

    #[test]
    fn host_processes_belong_to_no_container() {
        let parsed = parse(&fixture("v1-host-process"));
        assert_eq!(parsed, ContainerCgroup::default());
        assert_eq!(parse("0::/\n"), ContainerCgroup::default());
        assert_eq!(parse("garbage"), ContainerCgroup::default());
    }

    #[test]
    fn guaranteed_pods_have_no_qos_level() {
        let parsed = parse(&format!("0::/kubepods.slice/kubepods-pod{}.slice/cri-containerd-{ID}.scope\n", UID.replace('-', "_")));
        assert_eq!(parsed.pod_uid.as_deref(), Some(UID));
        let parsed = parse(&format!("3:pids:/kubepods/pod{UID}/{ID}\n"));
        assert_eq!(parsed.container_id.as_deref(), Some(ID));
        assert_eq!(parsed.pod_uid.as_deref(), Some(UID));
    }

    #[test]
    fn ids_must_be_exact() {
        assert!(is_container_id(ID));
        assert!(!is_container_id(&ID[1..]));
        assert!(!is_container_id(&ID.to_uppercase()));
        assert!(is_uid(UID));
        assert!(!is_uid("6d1c2b7e43a14e5e9d630c5a3f1b2e7d"));
        assert!(!is_uid("../../../../etc/passwd-xxxx-xxxx-xxxxxxxxxxxx"));
        assert!(parse(&format!("0::/kubepods/besteffort/podnot-a-uid/{ID}\n")).pod_uid.is_none());
    }

    #[test]
    fn status_container_ids_of_every_runtime() {
        assert_eq!(container_id_from_status(&format!("containerd://{ID}")), Some(ID));
        assert_eq!(container_id_from_status(&format!("cri-o://{ID}")), Some(ID));
        assert_eq!(container_id_from_status(&format!("docker://{ID}")), Some(ID));
        assert_eq!(container_id_from_status(ID), None);
        assert_eq!(container_id_from_status("containerd://short"), None);
    }
}
