//! The PodSecurity *baseline* level as the Pod Security Admission controller defines it (the
//! checks of `k8s.io/pod-security-admission/policy`, at its latest version), as a pure function
//! of a Pod: which rules it breaks, with the field paths that break them. Only for tests: the
//! operator must build pods that a namespace enforcing baseline admits.
//!
//! The relaxations PSA grants to pods in a user namespace (`hostUsers: false`) are not applied:
//! the check is as strict as it is for every other pod, which is what a consumer (root in the
//! host's user namespace) gets.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::{ContainerPort, Lifecycle, LifecycleHandler, Pod, PodSpec, Probe, SELinuxOptions, SecurityContext};

/// Capabilities baseline allows in `capabilities.add` (exactly these spellings: PSA compares the
/// strings as written).
pub const ALLOWED_ADDED_CAPABILITIES: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// The safe sysctls baseline allows: the 1.0 set, `ip_local_reserved_ports` (1.27), the TCP
/// keepalive and FIN timeout ones (1.29), `tcp_rmem`/`tcp_wmem` (1.32).
pub const ALLOWED_SYSCTLS: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
];

/// SELinux types baseline allows (besides none).
const ALLOWED_SELINUX_TYPES: &[&str] = &["container_t", "container_init_t", "container_kvm_t"];

/// Annotation prefix of the deprecated per-container AppArmor profile.
const APPARMOR_ANNOTATION_PREFIX: &str = "container.apparmor.security.beta.kubernetes.io/";
/// Annotations of the deprecated seccomp profile, which older kubelets (the e2e cluster's 1.20
/// among them) still honour: checked as PSA checks them for the versions that read them.
const SECCOMP_POD_ANNOTATION: &str = "seccomp.security.alpha.kubernetes.io/pod";
const SECCOMP_CONTAINER_ANNOTATION_PREFIX: &str = "container.seccomp.security.alpha.kubernetes.io/";

/// One baseline rule a pod breaks at one field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The check's ID in PSA (`capabilities_baseline`, `hostNamespaces`, ...).
    pub rule: &'static str,
    /// The offending field (`spec.containers[0].securityContext.capabilities.add`).
    pub field: String,
    /// The offending value and what baseline allows instead.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}: {}: {}", self.rule, self.field, self.detail)
    }
}

/// The rules `pod` breaks, one per offending field, in the order of the checks below.
pub fn baseline_violations(pod: &Pod) -> Vec<Violation> {
    let mut violations = Vec::new();
    let annotations = pod.metadata.annotations.clone().unwrap_or_default();
    let Some(spec) = pod.spec.as_ref() else {
        return violations;
    };
    let containers = containers_of(spec);
    host_namespaces(spec, &mut violations);
    for container in &containers {
        container_checks(container, &mut violations);
    }
    host_path_volumes(spec, &mut violations);
    pod_security_context(spec, &mut violations);
    annotation_checks(&annotations, &containers, &mut violations);
    violations
}

/// The parts of a container, init container or ephemeral container that baseline looks at.
struct ContainerView<'a> {
    path: String,
    name: &'a str,
    security_context: Option<&'a SecurityContext>,
    ports: &'a [ContainerPort],
    probes: [(&'static str, Option<&'a Probe>); 3],
    lifecycle: Option<&'a Lifecycle>,
}

/// Every container of the pod (containers, init containers, ephemeral containers), as PSA's
/// `visitContainers` walks them.
fn containers_of(spec: &PodSpec) -> Vec<ContainerView<'_>> {
    let regular = spec.containers.iter().enumerate().map(|(index, c)| ("containers", index, c));
    let init = spec.init_containers.iter().flatten().enumerate().map(|(index, c)| ("initContainers", index, c));
    let mut views: Vec<ContainerView<'_>> = regular
        .chain(init)
        .map(|(list, index, container)| ContainerView {
            path: format!("spec.{list}[{index}]"),
            name: &container.name,
            security_context: container.security_context.as_ref(),
            ports: container.ports.as_deref().unwrap_or_default(),
            probes: [
                ("livenessProbe", container.liveness_probe.as_ref()),
                ("readinessProbe", container.readiness_probe.as_ref()),
                ("startupProbe", container.startup_probe.as_ref()),
            ],
            lifecycle: container.lifecycle.as_ref(),
        })
        .collect();
    views.extend(spec.ephemeral_containers.iter().flatten().enumerate().map(|(index, container)| ContainerView {
        path: format!("spec.ephemeralContainers[{index}]"),
        name: &container.name,
        security_context: container.security_context.as_ref(),
        ports: container.ports.as_deref().unwrap_or_default(),
        probes: [
            ("livenessProbe", container.liveness_probe.as_ref()),
            ("readinessProbe", container.readiness_probe.as_ref()),
            ("startupProbe", container.startup_probe.as_ref()),
        ],
        lifecycle: container.lifecycle.as_ref(),
    }));
    views
}

fn violation(rule: &'static str, field: impl Into<String>, detail: impl Into<String>) -> Violation {
    Violation { rule, field: field.into(), detail: detail.into() }
}

fn host_namespaces(spec: &PodSpec, violations: &mut Vec<Violation>) {
    for (field, value) in [("spec.hostNetwork", spec.host_network), ("spec.hostPID", spec.host_pid), ("spec.hostIPC", spec.host_ipc)] {
        if value == Some(true) {
            violations.push(violation("hostNamespaces", field, "is true; baseline allows only false or unset"));
        }
    }
}

fn container_checks(container: &ContainerView<'_>, violations: &mut Vec<Violation>) {
    let path = &container.path;
    if let Some(context) = container.security_context {
        if context.privileged == Some(true) {
            violations.push(violation(
                "privileged",
                format!("{path}.securityContext.privileged"),
                "is true; baseline allows only false or unset",
            ));
        }
        let added = context.capabilities.as_ref().and_then(|caps| caps.add.as_ref()).into_iter().flatten();
        let forbidden: Vec<&String> = added.filter(|name| !ALLOWED_ADDED_CAPABILITIES.contains(&name.as_str())).collect();
        if !forbidden.is_empty() {
            violations.push(violation(
                "capabilities_baseline",
                format!("{path}.securityContext.capabilities.add"),
                format!(
                    "container {:?} must not include {forbidden:?}; baseline allows only {ALLOWED_ADDED_CAPABILITIES:?}",
                    container.name
                ),
            ));
        }
        if let Some(options) = context.se_linux_options.as_ref() {
            se_linux_options(options, &format!("{path}.securityContext.seLinuxOptions"), violations);
        }
        if let Some(proc_mount) = context.proc_mount.as_deref().filter(|mount| *mount != "Default") {
            violations.push(violation(
                "procMount",
                format!("{path}.securityContext.procMount"),
                format!("is {proc_mount:?}; baseline allows only \"Default\" or unset"),
            ));
        }
        if let Some(kind) =
            context.seccomp_profile.as_ref().map(|profile| profile.type_.as_str()).filter(|kind| !allowed_profile_type(kind))
        {
            violations.push(violation(
                "seccompProfile_baseline",
                format!("{path}.securityContext.seccompProfile.type"),
                format!("is {kind:?}; baseline allows only \"RuntimeDefault\", \"Localhost\" or unset"),
            ));
        }
        if let Some(kind) =
            context.app_armor_profile.as_ref().map(|profile| profile.type_.as_str()).filter(|kind| !allowed_profile_type(kind))
        {
            violations.push(violation(
                "appArmorProfile",
                format!("{path}.securityContext.appArmorProfile.type"),
                format!("is {kind:?}; baseline allows only \"RuntimeDefault\", \"Localhost\" or unset"),
            ));
        }
        if context.windows_options.as_ref().and_then(|options| options.host_process) == Some(true) {
            violations.push(violation(
                "windowsHostProcess",
                format!("{path}.securityContext.windowsOptions.hostProcess"),
                "is true; baseline allows only false or unset",
            ));
        }
    }
    for (index, port) in container.ports.iter().enumerate() {
        if let Some(host_port) = port.host_port.filter(|port| *port != 0) {
            violations.push(violation(
                "hostPorts",
                format!("{path}.ports[{index}].hostPort"),
                format!("is {host_port}; baseline allows only 0 or unset"),
            ));
        }
    }
    for (name, probe) in container.probes {
        if let Some(probe) = probe {
            probe_hosts(&format!("{path}.{name}"), probe.http_get.as_ref().and_then(|get| get.host.as_deref()), violations);
            probe_hosts(&format!("{path}.{name}"), probe.tcp_socket.as_ref().and_then(|socket| socket.host.as_deref()), violations);
        }
    }
    if let Some(lifecycle) = container.lifecycle {
        for (name, handler) in [("postStart", lifecycle.post_start.as_ref()), ("preStop", lifecycle.pre_stop.as_ref())] {
            if let Some(LifecycleHandler { http_get, tcp_socket, .. }) = handler {
                let field = format!("{path}.lifecycle.{name}");
                probe_hosts(&field, http_get.as_ref().and_then(|get| get.host.as_deref()), violations);
                probe_hosts(&field, tcp_socket.as_ref().and_then(|socket| socket.host.as_deref()), violations);
            }
        }
    }
}

/// A probe or lifecycle handler that names a host other than the pod's own (PSA 1.34+): kubelet
/// would connect from the node to any address.
fn probe_hosts(field: &str, host: Option<&str>, violations: &mut Vec<Violation>) {
    if let Some(host) = host.filter(|host| !host.is_empty()) {
        violations.push(violation(
            "hostProbesAndHostLifecycle",
            format!("{field}.host"),
            format!("is {host:?}; baseline allows only an empty or unset host"),
        ));
    }
}

fn allowed_profile_type(kind: &str) -> bool {
    kind == "RuntimeDefault" || kind == "Localhost"
}

fn se_linux_options(options: &SELinuxOptions, field: &str, violations: &mut Vec<Violation>) {
    if let Some(kind) = options.type_.as_deref().filter(|kind| !kind.is_empty() && !ALLOWED_SELINUX_TYPES.contains(kind)) {
        violations.push(violation(
            "seLinuxOptions",
            format!("{field}.type"),
            format!("is {kind:?}; baseline allows only {ALLOWED_SELINUX_TYPES:?} or unset"),
        ));
    }
    for (name, value) in [("user", options.user.as_deref()), ("role", options.role.as_deref())] {
        if let Some(value) = value.filter(|value| !value.is_empty()) {
            violations.push(violation("seLinuxOptions", format!("{field}.{name}"), format!("is {value:?}; baseline allows no {name}")));
        }
    }
}

fn host_path_volumes(spec: &PodSpec, violations: &mut Vec<Violation>) {
    for (index, volume) in spec.volumes.iter().flatten().enumerate() {
        if let Some(host_path) = volume.host_path.as_ref() {
            violations.push(violation(
                "hostPathVolumes",
                format!("spec.volumes[{index}].hostPath"),
                format!("volume {:?} mounts the node's {:?}; baseline allows no hostPath volume", volume.name, host_path.path),
            ));
        }
    }
}

fn pod_security_context(spec: &PodSpec, violations: &mut Vec<Violation>) {
    let Some(context) = spec.security_context.as_ref() else {
        return;
    };
    if let Some(options) = context.se_linux_options.as_ref() {
        se_linux_options(options, "spec.securityContext.seLinuxOptions", violations);
    }
    if let Some(kind) = context.seccomp_profile.as_ref().map(|profile| profile.type_.as_str()).filter(|kind| !allowed_profile_type(kind)) {
        violations.push(violation(
            "seccompProfile_baseline",
            "spec.securityContext.seccompProfile.type",
            format!("is {kind:?}; baseline allows only \"RuntimeDefault\", \"Localhost\" or unset"),
        ));
    }
    if let Some(kind) = context.app_armor_profile.as_ref().map(|profile| profile.type_.as_str()).filter(|kind| !allowed_profile_type(kind))
    {
        violations.push(violation(
            "appArmorProfile",
            "spec.securityContext.appArmorProfile.type",
            format!("is {kind:?}; baseline allows only \"RuntimeDefault\", \"Localhost\" or unset"),
        ));
    }
    if context.windows_options.as_ref().and_then(|options| options.host_process) == Some(true) {
        violations.push(violation(
            "windowsHostProcess",
            "spec.securityContext.windowsOptions.hostProcess",
            "is true; baseline allows only false or unset",
        ));
    }
    for (index, sysctl) in context.sysctls.iter().flatten().enumerate() {
        if !ALLOWED_SYSCTLS.contains(&sysctl.name.as_str()) {
            violations.push(violation(
                "sysctls",
                format!("spec.securityContext.sysctls[{index}].name"),
                format!("{:?} is not one of the safe sysctls baseline allows ({ALLOWED_SYSCTLS:?})", sysctl.name),
            ));
        }
    }
}

fn annotation_checks(annotations: &BTreeMap<String, String>, containers: &[ContainerView<'_>], violations: &mut Vec<Violation>) {
    for (key, value) in annotations {
        if key.starts_with(APPARMOR_ANNOTATION_PREFIX)
            && !(value.is_empty() || value == "runtime/default" || value.starts_with("localhost/"))
        {
            violations.push(violation(
                "appArmorProfile",
                format!("metadata.annotations[{key:?}]"),
                format!("is {value:?}; baseline allows only \"runtime/default\", \"localhost/*\" or unset"),
            ));
        }
    }
    let seccomp_allowed = |value: &str| value == "runtime/default" || value == "docker/default" || value.starts_with("localhost/");
    let container_keys = containers.iter().map(|container| format!("{SECCOMP_CONTAINER_ANNOTATION_PREFIX}{}", container.name));
    for key in std::iter::once(SECCOMP_POD_ANNOTATION.to_owned()).chain(container_keys) {
        if let Some(value) = annotations.get(&key).filter(|value| !seccomp_allowed(value)) {
            violations.push(violation(
                "seccompProfile_baseline",
                format!("metadata.annotations[{key:?}]"),
                format!("is {value:?}; baseline allows only \"runtime/default\", \"docker/default\", \"localhost/*\" or unset"),
            ));
        }
    }
}
