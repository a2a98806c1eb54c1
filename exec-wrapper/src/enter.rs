//! Entering the rootfs and becoming the workload: chroot, working directory, command lookup,
//! identity, capabilities, no_new_privs, exec — in the order runc uses, so the result matches
//! what the same securityContext gives an ordinary container.

use std::ffi::OsString;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use sc_api::exec_config::{ExecConfig, RUNTIME_DEFAULT_CAPABILITIES};
use sc_api::image_config::ImageConfig;
use sc_api::process::{ContainerRef, verify_run_as_non_root};

use crate::accounts::{parse_group, parse_passwd, requested_user, resolve_identity};
use crate::capabilities::{CapabilityMask, parse_capability_names, plan_capabilities};
use crate::cli::CommandLine;
use crate::config::{path_variable, with_home, workload_environment};
use crate::error::Error;
use crate::lookup::resolve_command;
use crate::sys::System;

/// Where the workload starts, inside the rootfs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WorkingDirectory {
    /// The workload's working directory (`workingDir`, the image's, or `/`): created when
    /// missing, as runc does.
    Workload(PathBuf),
    /// `kubectl exec`: the workload's working directory when the rootfs has it, else `/`.
    KeepIfPresent(PathBuf),
}

/// Everything needed to turn this process into the workload.
#[derive(Clone, Debug)]
pub struct EnterRequest {
    pub rootfs: PathBuf,
    pub working_directory: WorkingDirectory,
    pub command: CommandLine,
    pub config: ExecConfig,
    /// The image's config, when the node plugin published one.
    pub image: Option<ImageConfig>,
    /// The consumer container's own environment.
    pub inherited_environment: Vec<(OsString, OsString)>,
    /// Hand the terminal's foreground to the workload (PID 1 starts it in its own process group).
    pub take_terminal: bool,
}

/// Kubelet's `runAsNonRoot` check, with kubelet's words, against the image's `User` (empty, so
/// root, when the image's config is unknown: that is what would run).
pub fn check_run_as_non_root(config: &ExecConfig, image: Option<&ImageConfig>) -> Result<(), Error> {
    let image_user = image.map_or("", |image| image.user.as_str());
    let at = ContainerRef { pod: &config.pod, container: &config.container };
    verify_run_as_non_root(config.run_as_non_root, config.run_as_user, image_user, at).map_err(Error::RunAsNonRoot)
}

/// The capabilities the template added itself: `addedCapabilities`, and whatever the workload
/// holds beyond the runtime default (which only an `add` can bring, so an operator that does not
/// fill `addedCapabilities` still gets its warnings).
fn explicitly_added_capabilities(config: &ExecConfig, wanted: CapabilityMask) -> Result<CapabilityMask, Error> {
    let runtime_default: Vec<String> = RUNTIME_DEFAULT_CAPABILITIES.iter().map(|name| (*name).to_owned()).collect();
    let beyond_default = wanted.without(parse_capability_names(&runtime_default)?);
    Ok(CapabilityMask(parse_capability_names(&config.added_capabilities)?.0 | beyond_default.0))
}

/// Enters the rootfs and execs the command. Returns only on failure.
pub fn enter_and_exec(system: &mut impl System, request: EnterRequest) -> Error {
    match prepare(system, &request) {
        Ok(prepared) => {
            let failure = system.exec(&prepared.program, &request.command.program, &request.command.args, &prepared.environment);
            exec_error(&prepared.program, prepared.uid, failure)
        }
        Err(error) => error,
    }
}

struct Prepared {
    program: PathBuf,
    environment: Vec<(OsString, OsString)>,
    uid: u32,
}

fn prepare(system: &mut impl System, request: &EnterRequest) -> Result<Prepared, Error> {
    let config = &request.config;
    let image = request.image.as_ref();
    // Validate everything that needs no syscall first, so a bad config changes nothing.
    check_run_as_non_root(config, image)?;
    let wanted_capabilities = parse_capability_names(&config.capabilities)?;
    let explicitly_added = explicitly_added_capabilities(config, wanted_capabilities)?;
    let requested = requested_user(config, image.map_or("", |image| image.user.as_str()))?;
    let environment = workload_environment(&request.inherited_environment, image.map_or(&[], |image| image.env.as_slice()));

    system.chroot(&request.rootfs).map_err(|errno| match errno {
        Errno::EPERM => Error::ChrootDenied { path: request.rootfs.clone() },
        other => Error::os(format!("chroot into {}", request.rootfs.display()), other),
    })?;
    system.chdir(Path::new("/")).map_err(|errno| Error::os("chdir to / of the rootfs", errno))?;

    let root = system.root();
    let passwd = parse_passwd(&std::fs::read_to_string(root.join("etc/passwd")).unwrap_or_default());
    let groups = parse_group(&std::fs::read_to_string(root.join("etc/group")).unwrap_or_default());
    let identity = resolve_identity(requested.as_ref(), &config.supplemental_groups, &passwd, &groups)?;
    let environment = with_home(environment, &identity.home);

    let working_directory = enter_working_directory(system, &root, &request.working_directory)?;
    let program = resolve_command(&root, &working_directory, &request.command.program, path_variable(&environment))?;

    let plan = plan_capabilities(
        wanted_capabilities,
        system.bounding_set().map_err(|reason| privilege("read the bounding set", reason))?,
        system.permitted_set().map_err(|reason| privilege("read the permitted set", reason))?,
    );
    // A default capability the container lacks is one this runtime does not give a plain
    // container either; only what the template added itself is worth a word.
    let missing_additions = plan.unavailable.intersection(explicitly_added);
    if !missing_additions.is_empty() {
        eprintln!(
            "sc-exec: warning: the pod template adds {missing_additions} but the consumer container does not \
             hold them, so the workload runs without them; add them to the consumer container's capabilities"
        );
    }
    for capability in plan.drop_from_bounding.capabilities() {
        system
            .drop_from_bounding_set(capability)
            .map_err(|reason| privilege(&format!("drop {capability} from the bounding set"), reason))?;
    }
    // Keep the permitted set across setuid so the wanted capabilities can be set afterwards.
    system.set_keep_capabilities(true).map_err(|reason| privilege("set keepcaps", reason))?;
    system.set_groups(&identity.groups).map_err(|reason| privilege(&format!("set supplementary groups {:?}", identity.groups), reason))?;
    system.set_gid(identity.gid).map_err(|reason| privilege(&format!("switch to gid {}", identity.gid), reason))?;
    system.set_uid(identity.uid).map_err(|reason| privilege(&format!("switch to uid {}", identity.uid), reason))?;
    system.set_keep_capabilities(false).map_err(|reason| privilege("clear keepcaps", reason))?;
    system
        .set_process_capabilities(plan.process_set)
        .map_err(|reason| privilege(&format!("set capabilities to {}", plan.process_set), reason))?;
    if config.no_new_privileges {
        system.set_no_new_privileges().map_err(|reason| privilege("set no_new_privs", reason))?;
    }
    if request.take_terminal {
        system.take_foreground_terminal();
    }
    Ok(Prepared { program, environment, uid: identity.uid })
}

fn privilege(action: &str, reason: String) -> Error {
    Error::PrivilegeChange { action: action.to_string(), reason }
}

fn enter_working_directory(system: &mut impl System, root: &Path, requested: &WorkingDirectory) -> Result<PathBuf, Error> {
    let inside = |path: &Path| root.join(path.strip_prefix("/").unwrap_or(path));
    let directory = match requested {
        WorkingDirectory::Workload(directory) => {
            if !inside(directory).is_dir() {
                system
                    .create_dir_all(directory)
                    .map_err(|error| Error::io(format!("create the working directory {} in the rootfs", directory.display()), error))?;
            }
            directory.clone()
        }
        WorkingDirectory::KeepIfPresent(directory) if inside(directory).is_dir() => directory.clone(),
        WorkingDirectory::KeepIfPresent(_) => PathBuf::from("/"),
    };
    system.chdir(&directory).map_err(|errno| Error::os(format!("chdir to the working directory {}", directory.display()), errno))?;
    Ok(directory)
}

fn exec_error(program: &Path, uid: u32, failure: std::io::Error) -> Error {
    match failure.kind() {
        ErrorKind::NotFound => Error::NotExecutable {
            path: program.to_path_buf(),
            reason: format!(
                "executing it failed with {failure} (for a script, its interpreter on the `#!` \
                 line is missing)"
            ),
        },
        ErrorKind::PermissionDenied => {
            Error::NotExecutable { path: program.to_path_buf(), reason: format!("uid {uid} may not execute it ({failure})") }
        }
        _ => Error::NotExecutable { path: program.to_path_buf(), reason: failure.to_string() },
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::capabilities::CapabilityMask;
    use crate::sys::SysResult;

    /// Records every call; `/` is a fixture directory.
    struct FakeSystem {
        root: tempfile::TempDir,
        calls: Vec<String>,
        fail_chroot: Option<Errno>,
        fail_set_uid: bool,
        exec_result: Option<std::io::ErrorKind>,
    }

    impl FakeSystem {
        fn new() -> Self {
            let root = tempfile::tempdir().expect("tempdir");
            let write = |path: &str, text: &str, mode: u32| {
                let full = root.path().join(path);
                fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
                fs::write(&full, text).expect("write");
                fs::set_permissions(&full, fs::Permissions::from_mode(mode)).expect("chmod");
            };
            write("etc/passwd", "root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n", 0o644);
            write("etc/group", "wheel:x:10:alice\n", 0o644);
            write("usr/bin/app", "#!/bin/sh\n", 0o755);
            fs::create_dir_all(root.path().join("home/alice")).expect("mkdir");
            FakeSystem { root, calls: Vec::new(), fail_chroot: None, fail_set_uid: false, exec_result: None }
        }
    }

    impl System for FakeSystem {
        fn root(&self) -> PathBuf {
            self.root.path().to_path_buf()
        }
        fn chroot(&mut self, path: &Path) -> Result<(), Errno> {
            self.calls.push(format!("chroot {}", path.display()));
            self.fail_chroot.map_or(Ok(()), Err)
        }
        fn chdir(&mut self, path: &Path) -> Result<(), Errno> {
            self.calls.push(format!("chdir {}", path.display()));
            Ok(())
        }
        fn create_dir_all(&mut self, path: &Path) -> std::io::Result<()> {
            self.calls.push(format!("mkdir {}", path.display()));
            Ok(())
        }
        fn is_mount_point(&self, _path: &Path) -> bool {
            true
        }
        fn bounding_set(&self) -> SysResult<CapabilityMask> {
            Ok(CapabilityMask(0b1111))
        }
        fn permitted_set(&self) -> SysResult<CapabilityMask> {
            Ok(CapabilityMask(0b1111))
        }
        fn drop_from_bounding_set(&mut self, capability: caps::Capability) -> SysResult<()> {
            self.calls.push(format!("drop-bounding {capability}"));
            Ok(())
        }
        fn set_keep_capabilities(&mut self, keep: bool) -> SysResult<()> {
            self.calls.push(format!("keepcaps {keep}"));
            Ok(())
        }
        fn set_groups(&mut self, groups: &[u32]) -> SysResult<()> {
            self.calls.push(format!("setgroups {groups:?}"));
            Ok(())
        }
        fn set_gid(&mut self, gid: u32) -> SysResult<()> {
            self.calls.push(format!("setgid {gid}"));
            Ok(())
        }
        fn set_uid(&mut self, uid: u32) -> SysResult<()> {
            self.calls.push(format!("setuid {uid}"));
            if self.fail_set_uid { Err("EPERM: Operation not permitted".into()) } else { Ok(()) }
        }
        fn set_process_capabilities(&mut self, capabilities: CapabilityMask) -> SysResult<()> {
            self.calls.push(format!("capset {capabilities}"));
            Ok(())
        }
        fn set_no_new_privileges(&mut self) -> SysResult<()> {
            self.calls.push("no_new_privs".into());
            Ok(())
        }
        fn take_foreground_terminal(&mut self) {
            self.calls.push("tcsetpgrp".into());
        }
        fn exec(&mut self, program: &Path, argv0: &OsString, args: &[OsString], environment: &[(OsString, OsString)]) -> std::io::Error {
            self.calls.push(format!("exec {} argv0={argv0:?} args={args:?} env={environment:?}", program.display()));
            std::io::Error::from(self.exec_result.unwrap_or(ErrorKind::Other))
        }
    }

    fn request(config_json: &str, working_directory: WorkingDirectory, program: &str) -> EnterRequest {
        EnterRequest {
            rootfs: PathBuf::from("/.sc/rootfs"),
            working_directory,
            command: CommandLine { program: program.into(), args: vec!["-x".into()] },
            config: serde_json::from_str(config_json).expect("config"),
            image: None,
            inherited_environment: vec![("PATH".into(), "/usr/bin".into()), ("SC_EXEC_CONFIG".into(), "{}".into())],
            take_terminal: false,
        }
    }

    fn image(json: &str) -> Option<ImageConfig> {
        Some(serde_json::from_str(json).expect("image config"))
    }

    #[test]
    fn the_full_sequence_runs_in_runc_order() {
        let mut system = FakeSystem::new();
        let mut enter = request(
            r#"{"runAsUser":1000,"supplementalGroups":[3000],"capabilities":["CAP_CHOWN","CAP_FOWNER"],"noNewPrivileges":true,"workingDir":"/home/alice"}"#,
            WorkingDirectory::Workload(PathBuf::from("/home/alice")),
            "app",
        );
        enter.take_terminal = true;
        let error = enter_and_exec(&mut system, enter);
        assert_eq!(error.exit_code(), 126, "the fake exec fails: {error}");
        assert_eq!(
            system.calls,
            vec![
                "chroot /.sc/rootfs",
                "chdir /",
                "chdir /home/alice",
                "drop-bounding CAP_DAC_OVERRIDE",
                "drop-bounding CAP_DAC_READ_SEARCH",
                "keepcaps true",
                "setgroups [1000, 10, 3000]",
                "setgid 1000",
                "setuid 1000",
                "keepcaps false",
                "capset CAP_CHOWN,CAP_FOWNER",
                "no_new_privs",
                "tcsetpgrp",
                r#"exec /usr/bin/app argv0="app" args=["-x"] env=[("PATH", "/usr/bin"), ("HOME", "/home/alice")]"#,
            ]
        );
    }

    #[test]
    fn a_missing_workload_directory_is_created_and_a_missing_exec_cwd_falls_back_to_root() {
        let mut system = FakeSystem::new();
        enter_and_exec(&mut system, request("{}", WorkingDirectory::Workload("/srv/new".into()), "app"));
        assert!(system.calls.contains(&"mkdir /srv/new".to_string()), "{:?}", system.calls);
        assert!(system.calls.contains(&"chdir /srv/new".to_string()));

        let mut system = FakeSystem::new();
        enter_and_exec(&mut system, request("{}", WorkingDirectory::KeepIfPresent("/outer/only".into()), "app"));
        assert_eq!(system.calls[2], "chdir /");
        assert!(!system.calls.iter().any(|call| call.starts_with("mkdir")));

        let mut system = FakeSystem::new();
        enter_and_exec(&mut system, request("{}", WorkingDirectory::KeepIfPresent("/home/alice".into()), "app"));
        assert_eq!(system.calls[2], "chdir /home/alice");
    }

    #[test]
    fn root_without_no_new_privs_keeps_root_and_skips_prctl() {
        let mut system = FakeSystem::new();
        enter_and_exec(&mut system, request(r#"{"capabilities":["CAP_CHOWN"]}"#, WorkingDirectory::Workload("/".into()), "app"));
        assert!(system.calls.contains(&"setuid 0".to_string()));
        assert!(system.calls.contains(&"setgroups [0]".to_string()));
        assert!(!system.calls.contains(&"no_new_privs".to_string()));
        assert!(system.calls.iter().any(|call| call.contains("HOME\", \"/root")), "{:?}", system.calls);
    }

    #[test]
    fn a_bad_capability_name_fails_before_any_syscall() {
        let mut system = FakeSystem::new();
        let error = enter_and_exec(&mut system, request(r#"{"capabilities":["CAP_NOPE"]}"#, WorkingDirectory::Workload("/".into()), "app"));
        assert_eq!(error.exit_code(), 78);
        assert!(system.calls.is_empty(), "{:?}", system.calls);
    }

    #[test]
    fn run_as_non_root_refuses_with_kubelets_words_before_any_syscall() {
        let mut system = FakeSystem::new();
        let mut enter =
            request(r#"{"runAsNonRoot":true,"pod":"box_team-a","container":"main"}"#, WorkingDirectory::Workload("/".into()), "app");
        let error = enter_and_exec(&mut system, enter.clone());
        assert_eq!(error.exit_code(), 78);
        assert_eq!(error.to_string(), r#"container has runAsNonRoot and image will run as root (pod: "box_team-a", container: main)"#);
        assert!(system.calls.is_empty(), "{:?}", system.calls);

        enter.image = image(r#"{"User":"alice"}"#);
        let error = enter_and_exec(&mut system, enter.clone());
        assert!(error.to_string().contains("image has non-numeric user (alice), cannot verify user is non-root"), "{error}");
        enter.image = image(r#"{"User":"1000"}"#);
        assert_eq!(enter_and_exec(&mut system, enter).exit_code(), 126, "uid 1000 passes the check; the fake exec fails");
        assert!(system.calls.contains(&"setuid 1000".to_string()), "{:?}", system.calls);
    }

    #[test]
    fn the_images_user_env_and_path_apply_when_the_pod_sets_none() {
        let mut system = FakeSystem::new();
        let program = system.root.path().join("opt/app/bin/tool");
        fs::create_dir_all(program.parent().expect("parent")).expect("mkdir");
        fs::write(&program, "#!/bin/sh\n").expect("write");
        fs::set_permissions(&program, fs::Permissions::from_mode(0o755)).expect("chmod");
        let mut enter = request("{}", WorkingDirectory::Workload("/home/alice".into()), "tool");
        enter.image = image(r#"{"User":"alice","Env":["PATH=/opt/app/bin:/usr/bin","LANG=C.UTF-8"]}"#);
        enter.inherited_environment = vec![
            ("PATH".into(), sc_api::consts::WRAPPER_IMAGE_PATH.into()),
            ("HOSTNAME".into(), "box".into()),
            ("LANG".into(), "de".into()),
        ];
        enter_and_exec(&mut system, enter);
        assert!(system.calls.contains(&"setgroups [1000, 10]".to_string()), "{:?}", system.calls);
        assert!(system.calls.contains(&"setgid 1000".to_string()) && system.calls.contains(&"setuid 1000".to_string()));
        let exec = system.calls.last().expect("exec");
        assert_eq!(
            exec,
            r#"exec /opt/app/bin/tool argv0="tool" args=["-x"] env=[("PATH", "/opt/app/bin:/usr/bin"), ("HOSTNAME", "box"), ("LANG", "de"), ("HOME", "/home/alice")]"#
        );
    }

    #[test]
    fn an_unknown_image_user_fails_before_changing_identity() {
        let mut system = FakeSystem::new();
        let mut enter = request("{}", WorkingDirectory::Workload("/".into()), "app");
        enter.image = image(r#"{"User":"jovyan"}"#);
        let error = enter_and_exec(&mut system, enter);
        assert_eq!(error.exit_code(), 78);
        assert!(error.to_string().contains("no users found"), "{error}");
        assert_eq!(system.calls, vec!["chroot /.sc/rootfs", "chdir /"]);
    }

    #[test]
    fn only_capabilities_the_template_added_count_as_missing_additions() {
        let config: ExecConfig =
            serde_json::from_str(r#"{"capabilities":["CAP_CHOWN","CAP_NET_RAW","CAP_SYS_PTRACE"],"addedCapabilities":["NET_RAW"]}"#)
                .expect("config");
        let wanted = parse_capability_names(&config.capabilities).expect("names");
        let added = explicitly_added_capabilities(&config, wanted).expect("names");
        assert_eq!(added.to_string(), "CAP_NET_RAW,CAP_SYS_PTRACE", "SYS_PTRACE is beyond any runtime default; CHOWN is a default");
        let older_operator: ExecConfig = serde_json::from_str(r#"{"capabilities":["CAP_CHOWN","CAP_NET_ADMIN"]}"#).expect("config");
        let wanted = parse_capability_names(&older_operator.capabilities).expect("names");
        assert_eq!(explicitly_added_capabilities(&older_operator, wanted).expect("names").to_string(), "CAP_NET_ADMIN");
    }

    #[test]
    fn a_denied_chroot_names_the_missing_capability() {
        let mut system = FakeSystem::new();
        system.fail_chroot = Some(Errno::EPERM);
        let error = enter_and_exec(&mut system, request("{}", WorkingDirectory::Workload("/".into()), "app"));
        assert_eq!(error.exit_code(), 77);
        assert!(error.to_string().contains("SYS_CHROOT"), "{error}");
        system.fail_chroot = Some(Errno::ENOENT);
        let error = enter_and_exec(&mut system, request("{}", WorkingDirectory::Workload("/".into()), "app"));
        assert_eq!(error.exit_code(), 71);
    }

    #[test]
    fn a_failed_uid_switch_stops_before_exec() {
        let mut system = FakeSystem::new();
        system.fail_set_uid = true;
        let error = enter_and_exec(&mut system, request(r#"{"runAsUser":1000}"#, WorkingDirectory::Workload("/".into()), "app"));
        assert_eq!(error.exit_code(), 77);
        assert!(error.to_string().contains("switch to uid 1000"), "{error}");
        assert!(!system.calls.iter().any(|call| call.starts_with("exec")));
    }

    #[test]
    fn an_unknown_command_is_127_and_nothing_is_dropped() {
        let mut system = FakeSystem::new();
        let error = enter_and_exec(&mut system, request("{}", WorkingDirectory::Workload("/".into()), "vim"));
        assert_eq!(error.exit_code(), 127);
        assert!(!system.calls.iter().any(|call| call.starts_with("setuid")));
    }

    #[test]
    fn exec_failures_are_126_with_the_reason() {
        let mut system = FakeSystem::new();
        system.exec_result = Some(ErrorKind::PermissionDenied);
        let error = enter_and_exec(&mut system, request(r#"{"runAsUser":1000}"#, WorkingDirectory::Workload("/".into()), "app"));
        assert_eq!(error.exit_code(), 126);
        assert!(error.to_string().contains("uid 1000 may not execute"), "{error}");
    }
}
