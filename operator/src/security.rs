//! The workload's security settings, split in two: what `sc-exec` applies to the workload inside
//! the rootfs ([`ExecConfig`]), and the consumer container's own securityContext (root, with the
//! runtime's default capabilities, what the template adds, and what `sc-exec` needs to chroot and
//! switch user; never privileged).
//!
//! The consumer asks Kubernetes for no more than the template asks: PodSecurity *baseline* limits
//! what `capabilities.add` may name, not what a container keeps from the runtime's default set, so
//! a template that passes baseline gives a consumer that passes it too.

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

/// The bare names of a `capabilities.add` or `capabilities.drop` list.
fn bare_names(list: Option<&Vec<String>>) -> BTreeSet<String> {
    list.into_iter().flatten().map(|name| bare_capability_name(name)).collect()
}

/// The workload's effective capabilities (bare names, sorted), computed as containerd and CRI-O
/// compute a container's: start from the runtime default set, or every capability when `add`
/// holds `ALL`, or nothing when `drop` holds `ALL` (which wins over `add: [ALL]`); then add the
/// named `add` entries; then remove the named `drop` entries (so a capability both added and
/// dropped is dropped).
pub fn effective_capabilities(capabilities: Option<&Capabilities>) -> BTreeSet<String> {
    let add = bare_names(capabilities.and_then(|caps| caps.add.as_ref()));
    let drop = bare_names(capabilities.and_then(|caps| caps.drop.as_ref()));
    let mut effective: BTreeSet<String> = if drop.contains("ALL") {
        BTreeSet::new()
    } else if add.contains("ALL") {
        ALL_CAPABILITIES.iter().map(|name| (*name).to_owned()).collect()
    } else {
        RUNTIME_DEFAULT_CAPABILITIES.iter().map(|name| bare_capability_name(name)).collect()
    };
    effective.extend(add.into_iter().filter(|name| name != "ALL"));
    effective.retain(|name| !drop.contains(name));
    effective
}

/// How kubelet names a pod in its messages (`name_namespace`; kubelet adds the UID in
/// parentheses, which is not known before the pod exists).
pub fn kubelet_pod_name(name: &str, namespace: &str) -> String {
    format!("{name}_{namespace}")
}

/// What `sc-exec` must apply to the workload: container settings win over pod settings. `pod` is
/// the consumer pod as kubelet names it ([`kubelet_pod_name`]), for refusals worded as kubelet's.
#[allow(clippy::needless_update, reason = "a field a later ExecConfig gains keeps its default until the operator sets it")]
pub fn exec_config(workload: &Container, pod_security: Option<&PodSecurityContext>, pod: &str, rootfs_wait_seconds: u32) -> ExecConfig {
    let container = workload.security_context.as_ref();
    let to_id = |id: Option<i64>| id.and_then(|id| u32::try_from(id).ok());
    let mut supplemental_groups: Vec<u32> = pod_security
        .and_then(|pod| pod.supplemental_groups.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|id| u32::try_from(*id).ok())
        .collect();
    if let Some(fs_group) = to_id(pod_security.and_then(|pod| pod.fs_group)) {
        supplemental_groups.push(fs_group);
    }
    supplemental_groups.sort_unstable();
    supplemental_groups.dedup();
    ExecConfig {
        argv: ArgvSource::of(workload.command.as_deref(), workload.args.as_deref()),
        working_dir: workload.working_dir.clone().filter(|dir| !dir.is_empty()),
        run_as_user: to_id(container.and_then(|c| c.run_as_user).or_else(|| pod_security.and_then(|p| p.run_as_user))),
        run_as_group: to_id(container.and_then(|c| c.run_as_group).or_else(|| pod_security.and_then(|p| p.run_as_group))),
        supplemental_groups,
        run_as_non_root: container
            .and_then(|c| c.run_as_non_root)
            .or_else(|| pod_security.and_then(|p| p.run_as_non_root))
            .unwrap_or(false),
        no_new_privileges: container.and_then(|c| c.allow_privilege_escalation) == Some(false),
        capabilities: effective_capabilities(container.and_then(|c| c.capabilities.as_ref()))
            .into_iter()
            .map(|name| format!("CAP_{name}"))
            .collect(),
        added_capabilities: container.and_then(|c| c.capabilities.as_ref()).and_then(|caps| caps.add.clone()).unwrap_or_default(),
        pod: pod.to_owned(),
        container: workload.name.clone(),
        rootfs_wait_seconds,
        ..ExecConfig::default()
    }
}

/// The consumer container's capabilities: exactly what the template asked for, plus
/// [`WRAPPER_CAPABILITIES`].
///
/// - `add`: the template's `add` entries as written (so the pod asks for exactly what the template
///   asks, and a PodSecurity check reads the same names), then each wrapper capability the
///   template did not already name. The wrapper's are listed even though containerd's default set
///   holds them, because CRI-O's default set has no `SYS_CHROOT`.
/// - `drop`: the template's `drop` entries without the wrapper capabilities; `ALL` stays, and then
///   `add` holds everything the consumer keeps.
///
/// The container runtime then gives the consumer the workload's effective set
/// ([`effective_capabilities`]) plus the wrapper capabilities, and `sc-exec` drops the wrapper's
/// from the workload (unless the workload keeps them itself).
fn consumer_capabilities(template: Option<&Capabilities>) -> Capabilities {
    let template_add = template.and_then(|caps| caps.add.clone()).unwrap_or_default();
    let template_drop = template.and_then(|caps| caps.drop.clone()).unwrap_or_default();
    let named: BTreeSet<String> = template_add.iter().map(|name| bare_capability_name(name)).collect();
    let mut add = template_add;
    add.extend(WRAPPER_CAPABILITIES.iter().filter(|wrapper| !named.contains(**wrapper)).map(|wrapper| (*wrapper).to_owned()));
    let drop: Vec<String> =
        template_drop.into_iter().filter(|name| !WRAPPER_CAPABILITIES.contains(&bare_capability_name(name).as_str())).collect();
    Capabilities { add: Some(add), drop: (!drop.is_empty()).then_some(drop) }
}

/// The consumer container's own securityContext: it starts as root (`sc-exec` must chroot), with
/// the capabilities of [`consumer_capabilities`]; never privileged. Other settings the user gave
/// (seccomp, SELinux, AppArmor, read-only root, `allowPrivilegeEscalation`) are kept as written.
pub fn consumer_security_context(workload: &Container) -> SecurityContext {
    let user = workload.security_context.clone().unwrap_or_default();
    SecurityContext {
        capabilities: Some(consumer_capabilities(user.capabilities.as_ref())),
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
    fn named_drops_win_over_adds_and_drop_all_over_add_all_as_in_the_runtimes() {
        let effective = effective_capabilities(Some(&caps(&["NET_ADMIN", "SYS_TIME"], &["net_admin"])));
        assert!(!effective.contains("NET_ADMIN") && effective.contains("SYS_TIME"), "added then dropped: dropped");
        let effective = effective_capabilities(Some(&caps(&["ALL", "KILL"], &["ALL"])));
        assert_eq!(effective.into_iter().collect::<Vec<_>>(), ["KILL"], "drop ALL empties, then the named adds");
        let effective = effective_capabilities(Some(&caps(&["ALL"], &["SYS_ADMIN"])));
        assert!(effective.contains("BPF") && !effective.contains("SYS_ADMIN"), "every capability but the dropped one");
    }

    fn workload_with(capabilities: Option<Capabilities>) -> Container {
        Container {
            name: "app".into(),
            security_context: Some(SecurityContext { capabilities, ..SecurityContext::default() }),
            ..Container::default()
        }
    }

    fn consumer_caps(capabilities: Option<Capabilities>) -> (Vec<String>, Option<Vec<String>>) {
        let context = consumer_security_context(&workload_with(capabilities));
        let capabilities = context.capabilities.expect("always set");
        (capabilities.add.unwrap_or_default(), capabilities.drop)
    }

    fn strings(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| (*name).to_owned()).collect()
    }

    #[test]
    #[allow(clippy::needless_update, reason = "a field a later ExecConfig gains keeps its default")]
    fn container_settings_win_over_pod_settings() {
        let workload = Container {
            name: "app".into(),
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
        let config = exec_config(&workload, Some(&pod), &kubelet_pod_name("box", "team-a"), 90);
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
                added_capabilities: vec![],
                pod: "box_team-a".into(),
                container: "app".into(),
                rootfs_wait_seconds: 90,
                argv: ArgvSource::ImageDefault,
                ..ExecConfig::default()
            }
        );
    }

    #[test]
    fn the_templates_own_adds_travel_as_written_for_sc_exec_to_warn_about() {
        let workload = workload_with(Some(caps(&["net_admin", "CAP_SYS_TIME"], &["ALL"])));
        let config = exec_config(&workload, None, "p_n", 1);
        assert_eq!(config.added_capabilities, strings(&["net_admin", "CAP_SYS_TIME"]));
        assert_eq!(config.capabilities, strings(&["CAP_NET_ADMIN", "CAP_SYS_TIME"]));
        assert_eq!(exec_config(&workload_with(None), None, "p_n", 1).added_capabilities, Vec::<String>::new());
    }

    #[test]
    fn the_argv_source_follows_the_templates_command_and_args() {
        let words = |list: &[&str]| Some(strings(list));
        for (command, args, source) in [
            (words(&["sleep"]), words(&["infinity"]), ArgvSource::Command),
            (words(&["sleep", "infinity"]), None, ArgvSource::Command),
            (None, words(&["-v"]), ArgvSource::ArgsOnly),
            (Some(vec![]), words(&["-v"]), ArgvSource::ArgsOnly),
            (None, None, ArgvSource::ImageDefault),
        ] {
            let workload = Container { command: command.clone(), args: args.clone(), ..Container::default() };
            assert_eq!(exec_config(&workload, None, "p_n", 1).argv, source, "command {command:?}, args {args:?}");
        }
    }

    #[test]
    fn by_default_the_consumer_adds_only_the_wrappers_baseline_capabilities() {
        for template in [None, Some(Capabilities::default()), Some(caps(&[], &[]))] {
            let (add, drop) = consumer_caps(template.clone());
            assert_eq!(add, strings(WRAPPER_CAPABILITIES), "{template:?}");
            assert_eq!(drop, None, "the runtime's default set is kept without listing it: {template:?}");
        }
        let (add, drop) = consumer_caps(Some(caps(&[], &["NET_RAW", "SETUID", "cap_sys_chroot", "MKNOD"])));
        assert_eq!(add, strings(WRAPPER_CAPABILITIES));
        assert_eq!(drop, Some(strings(&["NET_RAW", "MKNOD"])), "sc-exec needs its own; it drops them from the workload");
    }

    #[test]
    fn the_consumer_asks_for_exactly_what_the_template_adds() {
        let (add, drop) = consumer_caps(Some(caps(&["NET_ADMIN", "SYS_PTRACE"], &[])));
        assert_eq!(add, strings(&["NET_ADMIN", "SYS_PTRACE", "SYS_CHROOT", "SETUID", "SETGID", "SETPCAP"]));
        assert_eq!(drop, None);
        let (add, _) = consumer_caps(Some(caps(&["setuid", "KILL"], &[])));
        assert_eq!(add, strings(&["setuid", "KILL", "SYS_CHROOT", "SETGID", "SETPCAP"]), "as written, never twice");
    }

    #[test]
    fn a_template_that_drops_all_keeps_drop_all_and_adds_what_the_workload_keeps() {
        let (add, drop) = consumer_caps(Some(caps(&["NET_BIND_SERVICE"], &["ALL"])));
        assert_eq!(add, strings(&["NET_BIND_SERVICE", "SYS_CHROOT", "SETUID", "SETGID", "SETPCAP"]));
        assert_eq!(drop, Some(strings(&["ALL"])));
    }

    #[test]
    fn the_consumer_holds_every_capability_the_workload_keeps() {
        // The runtime's computation of the consumer's set from its securityContext must cover the
        // workload's effective set, or sc-exec could not grant it.
        let templates = [
            None,
            Some(caps(&["NET_ADMIN"], &[])),
            Some(caps(&["NET_ADMIN"], &["NET_ADMIN"])),
            Some(caps(&[], &["ALL"])),
            Some(caps(&["CHOWN"], &["ALL"])),
            Some(caps(&["ALL"], &["ALL"])),
            Some(caps(&["ALL"], &["SETUID", "NET_RAW"])),
            Some(caps(&[], &["SETUID", "SETGID", "SYS_CHROOT", "SETPCAP"])),
        ];
        for template in templates {
            let workload = effective_capabilities(template.as_ref());
            let mut consumer = effective_capabilities(Some(&consumer_capabilities(template.as_ref())));
            for wrapper in WRAPPER_CAPABILITIES {
                assert!(consumer.remove(*wrapper), "{template:?}: the consumer holds {wrapper}");
            }
            let workload_without_wrapper: BTreeSet<String> =
                workload.into_iter().filter(|name| !WRAPPER_CAPABILITIES.contains(&name.as_str())).collect();
            assert_eq!(consumer, workload_without_wrapper, "{template:?}: the workload's set plus the wrapper's, nothing more");
        }
    }

    #[test]
    fn consumer_runs_as_root_and_keeps_the_users_other_settings() {
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
    }
}
