//! What the operator tells `sc-exec` (the consumer's PID 1) about the workload it must run.
//!
//! The consumer container itself runs as root with a small fixed capability set (it must
//! `chroot`); the workload's own security settings travel in the [`EXEC_CONFIG_ENV`] environment
//! variable as JSON, and `sc-exec` applies them after entering the rootfs. `sc-exec` removes the
//! variable from the workload's environment.

use serde::{Deserialize, Serialize};

/// Environment variable of the consumer's workload container holding an [`ExecConfig`] as JSON.
pub const EXEC_CONFIG_ENV: &str = "SC_EXEC_CONFIG";

/// The workload's process settings, resolved by the operator from the pod template (container
/// settings win over pod settings, as in Kubernetes).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecConfig {
    /// How the words after `sc-exec run --` make the workload's argv, with the image's
    /// `Entrypoint`/`Cmd` (the consumer container's `command`/`args` carry the template's own, so
    /// kubelet expands `$(VAR)` in them as it does for any container).
    #[serde(default)]
    pub argv: ArgvSource,
    /// Working directory inside the rootfs (`workingDir`); `None` takes the image's `WorkingDir`,
    /// else `/` ([`crate::process::working_dir`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// `runAsUser`; `None` takes the user part of the image's `User`, else root (uid 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_user: Option<u32>,
    /// `runAsGroup`; `None` uses the primary group of the user in the rootfs's `/etc/passwd`, or
    /// 0 when the uid is not listed there (containerd's `WithUserID`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_group: Option<u32>,
    /// Pod `supplementalGroups` (plus `fsGroup`), added to the groups from `/etc/group`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub supplemental_groups: Vec<u32>,
    /// `runAsNonRoot`: refuse to start the workload when it would run as uid 0.
    #[serde(default)]
    pub run_as_non_root: bool,
    /// `allowPrivilegeEscalation: false`: set `no_new_privs` before executing the workload.
    #[serde(default)]
    pub no_new_privileges: bool,
    /// The workload's effective capability names (`CAP_CHOWN`, ...): the runtime's default set
    /// plus `capabilities.add` minus `capabilities.drop`. Every other capability is dropped from
    /// all sets, the bounding set included.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// The template's own `capabilities.add` (names as written there). Only these are worth a
    /// warning when the consumer container lacks them: a runtime whose default set is smaller
    /// than [`RUNTIME_DEFAULT_CAPABILITIES`] (CRI-O's lacks `NET_RAW`, `MKNOD`, ...) gives a plain
    /// container just as little of the default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub added_capabilities: Vec<String>,
    /// The consumer pod as kubelet names it in messages (`name_namespace`), for refusals worded as
    /// kubelet's ([`crate::process::verify_run_as_non_root`]).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pod: String,
    /// The workload container's name, for the same messages.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub container: String,
    /// How long PID 1 waits for the node plugin to prepare the rootfs before failing.
    #[serde(default = "default_rootfs_wait_seconds")]
    pub rootfs_wait_seconds: u32,
}

/// Which of the template's `command` and `args` are set (an empty list counts as unset, as in
/// Kubernetes), which decides what the image's `Entrypoint` and `Cmd` contribute.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ArgvSource {
    /// `command` is set: the words are `command` + `args`; the image's `Entrypoint` and `Cmd` are
    /// ignored. (The default: what every consumer of an earlier release ran.)
    #[default]
    Command,
    /// Only `args` is set: the image's `Entrypoint` + the words.
    ArgsOnly,
    /// Neither: the image's `Entrypoint` + `Cmd`; there are no words.
    ImageDefault,
}

impl ArgvSource {
    /// The source for a container with these `command` and `args`.
    pub fn of(command: Option<&[String]>, args: Option<&[String]>) -> Self {
        let set = |list: Option<&[String]>| list.is_some_and(|list| !list.is_empty());
        match (set(command), set(args)) {
            (true, _) => ArgvSource::Command,
            (false, true) => ArgvSource::ArgsOnly,
            (false, false) => ArgvSource::ImageDefault,
        }
    }
}

fn default_rootfs_wait_seconds() -> u32 {
    120
}

/// The capability set a container runtime (containerd, CRI-O, Docker) gives a container that asks
/// for nothing: what "the workload's default" means in [`ExecConfig::capabilities`].
pub const RUNTIME_DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Messages on the node plugin's per-volume control socket
/// ([`crate::consts::CONSUMER_CONTROL_SOCKET_PATH`]): one JSON object per line, request then
/// response, one exchange per connection. The plugin authenticates the caller with `SO_PEERCRED`
/// and the caller's cgroup, then prepares the rootfs in the caller's mount and PID namespaces.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "op")]
pub enum ControlRequest {
    /// Mount `/proc`, `/dev`, `/sys` and kubelet's files inside the rootfs for the caller's
    /// container. Idempotent for one container.
    Prepare,
}

/// Answer to a [`ControlRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "result")]
pub enum ControlResponse {
    /// The rootfs is ready to `chroot` into.
    Prepared,
    /// Preparation failed; `message` says why and what to do.
    Failed { message: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_config_round_trips_and_defaults_the_wait() {
        let config: ExecConfig = serde_json::from_str(r#"{"runAsUser":1000}"#).expect("parses");
        assert_eq!(config.run_as_user, Some(1000));
        assert_eq!(config.rootfs_wait_seconds, 120);
        let text = serde_json::to_string(&config).expect("serializes");
        assert_eq!(serde_json::from_str::<ExecConfig>(&text).expect("parses"), config);
    }

    #[test]
    fn the_argv_source_follows_which_of_command_and_args_are_set() {
        let words = ["x".to_owned()];
        assert_eq!(ArgvSource::of(Some(&words), Some(&words)), ArgvSource::Command);
        assert_eq!(ArgvSource::of(Some(&words), None), ArgvSource::Command);
        assert_eq!(ArgvSource::of(Some(&[]), Some(&words)), ArgvSource::ArgsOnly);
        assert_eq!(ArgvSource::of(None, Some(&[])), ArgvSource::ImageDefault);
        let config: ExecConfig = serde_json::from_str(r#"{"argv":"argsOnly"}"#).expect("parses");
        assert_eq!(config.argv, ArgvSource::ArgsOnly);
        assert_eq!(serde_json::from_str::<ExecConfig>("{}").expect("parses").argv, ArgvSource::Command, "earlier releases");
    }

    #[test]
    fn added_capabilities_are_optional_on_the_wire() {
        let config: ExecConfig = serde_json::from_str(r#"{"addedCapabilities":["NET_ADMIN"]}"#).expect("parses");
        assert_eq!(config.added_capabilities, vec!["NET_ADMIN".to_owned()]);
        let text = serde_json::to_string(&ExecConfig::default()).expect("serializes");
        assert!(!text.contains("addedCapabilities"), "{text}");
    }

    #[test]
    fn exec_config_rejects_unknown_fields() {
        let error = serde_json::from_str::<ExecConfig>(r#"{"runAsUsr":1}"#).expect_err("typo");
        assert!(error.to_string().contains("runAsUsr"), "{error}");
    }

    #[test]
    fn control_messages_have_a_stable_wire_form() {
        assert_eq!(serde_json::to_string(&ControlRequest::Prepare).expect("ser"), r#"{"op":"prepare"}"#);
        let failed = ControlResponse::Failed { message: "no".into() };
        assert_eq!(serde_json::to_string(&failed).expect("ser"), r#"{"result":"failed","message":"no"}"#);
    }
}
