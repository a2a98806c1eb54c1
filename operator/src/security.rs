//! The workload's security settings, split in two: what `sc-exec` applies to the workload inside
//! the rootfs ([`ExecConfig`]), and the consumer container's own securityContext (root with just
//! the capabilities `sc-exec` needs to chroot and switch user, plus those the workload keeps).

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{Capabilities, Container, PodSecurityContext, SecurityContext};
use sc_api::exec_config::{ArgvSource, ExecConfig, RUNTIME_DEFAULT_CAPABILITIES};

/// Capabilities `sc-exec` needs on top of the workload's: `chroot` into the rootfs, then switch
/// user and groups and shrink the bounding set. All are in the PodSecurity *baseline* allow-list.
pub const WRAPPER_CAPABILITIES: &[&str] = &["SYS_CHROOT", "SETUID", "SETGID", "SETPCAP"];

/// Every Linux capability, for `capabilities.add: ["ALL"]`.
const ALL_CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// `net_admin`, `CAP_NET_ADMIN` and `NET_ADMIN` all name one capability: `NET_ADMIN`.
fn bare_capability_name(name: &str) -> String {
    let upper = name.trim().to_ascii_uppercase();
    upper.strip_prefix("CAP_").map(str::to_owned).unwrap_or(upper)
}

/// The workload's effective capabilities (bare names, sorted): the runtime default set, plus
/// `add`, minus `drop`, where `ALL` in `drop` starts from nothing and `ALL` in `add` means every
/// capability. As in the container runtimes, `drop` applies to the defaults before `add`.
pub fn effective_capabilities(capabilities: Option<&Capabilities>) -> BTreeSet<String> {
    let names =
        |list: Option<&Vec<String>>| -> BTreeSet<String> { list.into_iter().flatten().map(|name| bare_capability_name(name)).collect() };
    let add = names(capabilities.and_then(|caps| caps.add.as_ref()));
    let drop = names(capabilities.and_then(|caps| caps.drop.as_ref()));
    let mut effective: BTreeSet<String> = if drop.contains("ALL") {
        BTreeSet::new()
    } else {
        RUNTIME_DEFAULT_CAPABILITIES.iter().map(|name| bare_capability_name(name)).filter(|name| !drop.contains(name)).collect()
    };
    if add.contains("ALL") {
        effective.extend(ALL_CAPABILITIES.iter().map(|name| (*name).to_owned()));
    }
    effective.extend(add.into_iter().filter(|name| name != "ALL"));
    effective
}

/// What `sc-exec` must apply to the workload: container settings win over pod settings.
pub fn exec_config(workload: &Container, pod: Option<&PodSecurityContext>, rootfs_wait_seconds: u32) -> ExecConfig {
    let container = workload.security_context.as_ref();
    let to_id = |id: Option<i64>| id.and_then(|id| u32::try_from(id).ok());
    let mut supplemental_groups: Vec<u32> =
        pod.and_then(|pod| pod.supplemental_groups.as_ref()).into_iter().flatten().filter_map(|id| u32::try_from(*id).ok()).collect();
    if let Some(fs_group) = to_id(pod.and_then(|pod| pod.fs_group)) {
        supplemental_groups.push(fs_group);
    }
    supplemental_groups.sort_unstable();
    supplemental_groups.dedup();
    ExecConfig {
        argv: ArgvSource::of(workload.command.as_deref(), workload.args.as_deref()),
        working_dir: workload.working_dir.clone().filter(|dir| !dir.is_empty()),
        run_as_user: to_id(container.and_then(|c| c.run_as_user).or_else(|| pod.and_then(|p| p.run_as_user))),
        run_as_group: to_id(container.and_then(|c| c.run_as_group).or_else(|| pod.and_then(|p| p.run_as_group))),
        supplemental_groups,
        run_as_non_root: container.and_then(|c| c.run_as_non_root).or_else(|| pod.and_then(|p| p.run_as_non_root)).unwrap_or(false),
        no_new_privileges: container.and_then(|c| c.allow_privilege_escalation) == Some(false),
        capabilities: effective_capabilities(container.and_then(|c| c.capabilities.as_ref()))
            .into_iter()
            .map(|name| format!("CAP_{name}"))
            .collect(),
        rootfs_wait_seconds,
        ..ExecConfig::default()
    }
}

/// The consumer container's own securityContext: it starts as root (`sc-exec` must chroot), with
/// every capability dropped except the workload's effective set and [`WRAPPER_CAPABILITIES`];
/// never privileged. Other settings the user gave (seccomp, SELinux, AppArmor, read-only root,
/// `allowPrivilegeEscalation`) are kept as written.
pub fn consumer_security_context(workload: &Container) -> SecurityContext {
    let user = workload.security_context.clone().unwrap_or_default();
    let mut keep = effective_capabilities(user.capabilities.as_ref());
    keep.extend(WRAPPER_CAPABILITIES.iter().map(|name| (*name).to_owned()));
    SecurityContext {
        capabilities: Some(Capabilities { add: Some(keep.into_iter().collect()), drop: Some(vec!["ALL".to_owned()]) }),
        privileged: Some(false),
        run_as_user: Some(0),
        run_as_group: Some(0),
        run_as_non_root: Some(false),
        ..user
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(add: &[&str], drop: &[&str]) -> Capabilities {
        let list = |names: &[&str]| Some(names.iter().map(|name| (*name).to_owned()).collect());
        Capabilities { add: list(add), drop: list(drop) }
    }

    #[test]
    fn defaults_are_the_runtime_set() {
        let effective = effective_capabilities(None);
        assert_eq!(effective.len(), RUNTIME_DEFAULT_CAPABILITIES.len());
        assert!(effective.contains("CHOWN") && effective.contains("SYS_CHROOT"));
    }

    #[test]
    fn drop_all_then_add_keeps_only_the_added() {
        let effective = effective_capabilities(Some(&caps(&["net_bind_service", "CAP_NET_ADMIN"], &["ALL"])));
        assert_eq!(effective.into_iter().collect::<Vec<_>>(), ["NET_ADMIN", "NET_BIND_SERVICE"]);
    }

    #[test]
    fn add_all_grants_every_capability() {
        let effective = effective_capabilities(Some(&caps(&["ALL"], &[])));
        assert!(effective.contains("SYS_ADMIN") && effective.contains("BPF"));
        assert!(!effective.contains("ALL"));
    }

    #[test]
    fn drop_removes_single_defaults() {
        let effective = effective_capabilities(Some(&caps(&[], &["NET_RAW", "cap_mknod"])));
        assert!(!effective.contains("NET_RAW") && !effective.contains("MKNOD"));
        assert!(effective.contains("CHOWN"));
    }

    #[test]
    fn container_settings_win_over_pod_settings() {
        let workload = Container {
            working_dir: Some("/srv".into()),
            security_context: Some(SecurityContext {
                run_as_user: Some(1000),
                allow_privilege_escalation: Some(false),
                capabilities: Some(caps(&[], &["ALL"])),
                ..SecurityContext::default()
            }),
            ..Container::default()
        };
        let pod = PodSecurityContext {
            run_as_user: Some(5),
            run_as_group: Some(2000),
            run_as_non_root: Some(true),
            supplemental_groups: Some(vec![3000, 10]),
            fs_group: Some(10),
            ..PodSecurityContext::default()
        };
        let config = exec_config(&workload, Some(&pod), 90);
        assert_eq!(
            config,
            ExecConfig {
                working_dir: Some("/srv".into()),
                run_as_user: Some(1000),
                run_as_group: Some(2000),
                supplemental_groups: vec![10, 3000],
                run_as_non_root: true,
                no_new_privileges: true,
                capabilities: vec![],
                rootfs_wait_seconds: 90,
                argv: ArgvSource::ImageDefault,
                ..ExecConfig::default()
            }
        );
    }

    #[test]
    fn consumer_runs_as_root_with_wrapper_capabilities_only() {
        let workload = Container {
            security_context: Some(SecurityContext {
                run_as_user: Some(1000),
                run_as_non_root: Some(true),
                capabilities: Some(caps(&["NET_BIND_SERVICE"], &["ALL"])),
                read_only_root_filesystem: Some(true),
                ..SecurityContext::default()
            }),
            ..Container::default()
        };
        let context = consumer_security_context(&workload);
        assert_eq!(context.run_as_user, Some(0));
        assert_eq!(context.run_as_non_root, Some(false));
        assert_eq!(context.privileged, Some(false));
        assert_eq!(context.read_only_root_filesystem, Some(true));
        let capabilities = context.capabilities.expect("set");
        assert_eq!(capabilities.drop, Some(vec!["ALL".to_owned()]));
        assert_eq!(capabilities.add, Some(["NET_BIND_SERVICE", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"].map(String::from).to_vec()));
    }
}
