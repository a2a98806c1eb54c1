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
//!
//! The same table, read the other way, says where a known container's cgroup directory can be
//! ([`KubeletCgroups::container_dirs`]): its `cgroup.procs` lists the container's processes
//! without reading the cgroup file of every process on the node.

use std::path::{Component, Path, PathBuf};

/// Where a node mounts its cgroup hierarchies.
pub const CGROUP_MOUNT_ROOT: &str = "/sys/fs/cgroup";

/// The cgroup v1 hierarchies kubelet creates pod cgroups in, in the order they are tried: every
/// runtime puts containers in `pids`; `systemd` and `memory` cover nodes that lack it.
const V1_HIERARCHIES: [&str; 3] = ["pids", "systemd", "memory"];

/// The hierarchies to look for a container's cgroup directory in: the unified hierarchy itself on
/// cgroup v2 (`unified`: `<mount_root>/cgroup.controllers` exists), else the v1 ones.
pub fn hierarchies(mount_root: &Path, unified: bool) -> Vec<PathBuf> {
    if unified { vec![mount_root.to_path_buf()] } else { V1_HIERARCHIES.iter().map(|name| mount_root.join(name)).collect() }
}

/// Where kubelet creates pod cgroups on this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubeletCgroups {
    /// Mount point of each hierarchy to look in (see [`hierarchies`]).
    pub hierarchies: Vec<PathBuf>,
    /// Kubelet's `--cgroup-root`: where `kubepods` is, relative to each hierarchy's root.
    pub root: PathBuf,
}

impl KubeletCgroups {
    /// Every directory the container `container_id` of pod `pod_uid` can have, in every hierarchy,
    /// for each layout of the table above (cgroupfs and systemd drivers, each QoS class,
    /// containerd, CRI-O and Docker naming). Empty when either id is malformed, so neither can
    /// steer the path anywhere else.
    pub fn container_dirs(&self, pod_uid: &str, container_id: &str) -> Vec<PathBuf> {
        if !is_uid(pod_uid) || !is_container_id(container_id) {
            return Vec::new();
        }
        let systemd_uid = pod_uid.replace('-', "_");
        let cgroupfs_pods = ["kubepods", "kubepods/besteffort", "kubepods/burstable"].map(|parent| format!("{parent}/pod{pod_uid}"));
        let cgroupfs_containers = [container_id.to_owned(), format!("crio-{container_id}"), format!("docker-{container_id}")];
        let systemd_pods = [
            format!("kubepods.slice/kubepods-pod{systemd_uid}.slice"),
            format!("kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{systemd_uid}.slice"),
            format!("kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{systemd_uid}.slice"),
        ];
        let systemd_containers = ["cri-containerd", "crio", "docker"].map(|runtime| format!("{runtime}-{container_id}.scope"));
        let relative: Vec<String> = cgroupfs_pods
            .iter()
            .flat_map(|pod| cgroupfs_containers.iter().map(move |container| format!("{pod}/{container}")))
            .chain(systemd_pods.iter().flat_map(|pod| systemd_containers.iter().map(move |container| format!("{pod}/{container}"))))
            .collect();
        // Only plain names of the root count: it is a path inside each hierarchy, never above it.
        let root: PathBuf = self.root.components().filter(|component| matches!(component, Component::Normal(_))).collect();
        self.hierarchies
            .iter()
            .flat_map(|hierarchy| {
                let base = hierarchy.join(&root);
                relative.iter().map(move |path| base.join(path))
            })
            .collect()
    }
}

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
    let id = ["cri-containerd-", "crio-", "docker-", "containerd-"].iter().find_map(|prefix| name.strip_prefix(prefix)).unwrap_or(name);
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

    /// Fixtures of a container cgroup as kubelet lays it out, one per runtime and cgroup driver.
    const KUBELET_LAYOUT_FIXTURES: &[&str] = &[
        "v1-cgroupfs-containerd",
        "v1-systemd-containerd",
        "v1-cgroupfs-crio",
        "v1-systemd-crio",
        "v1-systemd-docker",
        "v2-cgroupfs-containerd",
        "v2-systemd-containerd",
        "v2-systemd-crio",
    ];

    #[test]
    fn every_runtime_and_driver_layout_yields_container_and_pod() {
        // Plus a path read from inside another cgroup namespace (relative, with `..`).
        for name in KUBELET_LAYOUT_FIXTURES.iter().copied().chain(["v2-nested-cgroupns"]) {
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

    fn kubelet_cgroups(unified: bool, root: &str) -> KubeletCgroups {
        KubeletCgroups { hierarchies: hierarchies(Path::new(CGROUP_MOUNT_ROOT), unified), root: PathBuf::from(root) }
    }

    /// The directory a fixture's process is in, in the hierarchy the plugin looks in first.
    fn fixture_dir(name: &str, root: &str) -> PathBuf {
        let text = fixture(name);
        let (hierarchy, line_prefix) = if name.starts_with("v2-") { ("", "0::") } else { ("pids", "12:pids:") };
        let path =
            text.lines().find_map(|line| line.strip_prefix(line_prefix)).unwrap_or_else(|| panic!("{name} has a {line_prefix} line"));
        Path::new(CGROUP_MOUNT_ROOT).join(hierarchy).join(root.trim_start_matches('/')).join(path.trim_start_matches('/'))
    }

    #[test]
    fn container_dirs_cover_every_kubelet_layout_of_the_fixtures() {
        for name in KUBELET_LAYOUT_FIXTURES.iter().copied() {
            for root in ["/", "/sc-test-1234"] {
                let candidates = kubelet_cgroups(name.starts_with("v2-"), root).container_dirs(UID, ID);
                let expected = fixture_dir(name, root);
                assert!(candidates.contains(&expected), "{name} under {root}: {} is not a candidate", expected.display());
            }
        }
    }

    #[test]
    fn container_dirs_never_name_conmon() {
        let conmon = fixture_dir("v2-systemd-crio-conmon", "/");
        assert!(!kubelet_cgroups(true, "/").container_dirs(UID, ID).contains(&conmon));
    }

    #[test]
    fn every_container_dir_parses_back_to_its_container_and_pod() {
        for unified in [true, false] {
            let cgroups = kubelet_cgroups(unified, "/");
            let candidates = cgroups.container_dirs(UID, ID);
            assert_eq!(candidates.len(), 18 * cgroups.hierarchies.len(), "3 cgroupfs + 3 systemd pod dirs x 3 runtimes, per hierarchy");
            for dir in candidates {
                let hierarchy = cgroups.hierarchies.iter().find(|hierarchy| dir.starts_with(hierarchy)).expect("below a hierarchy");
                let line = format!("0::/{}\n", dir.strip_prefix(hierarchy).expect("prefix").display());
                let parsed = parse(&line);
                assert_eq!(parsed.container_id.as_deref(), Some(ID), "{line}");
                assert_eq!(parsed.pod_uid.as_deref(), Some(UID), "{line}");
            }
        }
    }

    #[test]
    fn container_dirs_use_the_hierarchies_of_the_cgroup_version() {
        let v2 = kubelet_cgroups(true, "/").container_dirs(UID, ID);
        assert!(
            v2.iter().all(|dir| dir.starts_with("/sys/fs/cgroup/kubepods") || dir.starts_with("/sys/fs/cgroup/kubepods.slice")),
            "{v2:?}"
        );
        let v1 = kubelet_cgroups(false, "/").container_dirs(UID, ID);
        for hierarchy in ["pids", "systemd", "memory"] {
            assert_eq!(v1.iter().filter(|dir| dir.starts_with(format!("/sys/fs/cgroup/{hierarchy}"))).count(), 18, "{hierarchy}");
        }
        assert!(v1[0].starts_with("/sys/fs/cgroup/pids"), "pids is tried first");
    }

    #[test]
    fn container_dirs_stay_inside_the_hierarchies() {
        let escaping = kubelet_cgroups(false, "/../../etc").container_dirs(UID, ID);
        assert!(escaping.iter().all(|dir| dir.starts_with("/sys/fs/cgroup/pids/etc")
            || dir.starts_with("/sys/fs/cgroup/systemd/etc")
            || dir.starts_with("/sys/fs/cgroup/memory/etc")));
        assert!(kubelet_cgroups(true, "/").container_dirs("../../../../etc/passwd-xxxx-xxxx-xxxxxxxxxxxx", ID).is_empty());
        assert!(kubelet_cgroups(true, "/").container_dirs(UID, "../short").is_empty());
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
