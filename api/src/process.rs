//! Kubernetes' rules for the process a container runs, given the pod template's container and the
//! image's config: argv, working directory, the image's user, and kubelet's `runAsNonRoot` check.
//! One pure place, used by `sc-exec` (which applies them inside the rootfs) and by the operator
//! (which tells the user, before a crash loop, what cannot run).
//!
//! The rules are those of containerd's CRI plugin (`WithProcessArgs`, `WithProcessCwd`,
//! `WithUser`) and kubelet (`verifyRunAsNonRoot`), which CRI-O follows too.

use std::fmt;

use crate::exec_config::ArgvSource;
use crate::image_config::ImageConfig;

/// Why no argv can be made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArgvError {
    /// Neither the template nor the image gives a command.
    NoCommand,
    /// The image's `Entrypoint`/`Cmd` are needed and the runtime gave no config.
    ImageConfigUnknown { needed: &'static str },
}

impl fmt::Display for ArgvError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgvError::NoCommand => formatter.write_str(
                "no command specified: the image defines neither ENTRYPOINT nor CMD and the container sets no `command`; set `command` (and `args`) in the pod template",
            ),
            ArgvError::ImageConfigUnknown { needed } => write!(
                formatter,
                "the container runtime gave no config for the image, so its {needed} is unknown; set `command` in the pod template"
            ),
        }
    }
}

impl std::error::Error for ArgvError {}

/// The image's `Entrypoint`, where `[""]` means none (as containerd and Docker read it).
fn entrypoint(image: &ImageConfig) -> &[String] {
    if image.entrypoint.len() == 1 && image.entrypoint[0].is_empty() { &[] } else { &image.entrypoint }
}

/// The workload's argv: the template's words (`command` + `args`, as `source` says which are
/// set) with the image's `Entrypoint` and `Cmd`:
///
/// | template          | argv                         |
/// |-------------------|------------------------------|
/// | command (+ args)  | command + args               |
/// | args only         | image Entrypoint + args      |
/// | neither           | image Entrypoint + image Cmd |
pub fn workload_argv(source: ArgvSource, words: &[String], image: Option<&ImageConfig>) -> Result<Vec<String>, ArgvError> {
    let argv = match source {
        ArgvSource::Command => words.to_vec(),
        ArgvSource::ArgsOnly => {
            let image = image.ok_or(ArgvError::ImageConfigUnknown { needed: "ENTRYPOINT" })?;
            entrypoint(image).iter().chain(words).cloned().collect()
        }
        ArgvSource::ImageDefault => {
            let image = image.ok_or(ArgvError::ImageConfigUnknown { needed: "ENTRYPOINT and CMD" })?;
            entrypoint(image).iter().chain(&image.cmd).cloned().collect()
        }
    };
    if argv.is_empty() { Err(ArgvError::NoCommand) } else { Ok(argv) }
}

/// The working directory: the container's `workingDir`, else the image's `WorkingDir`, else `/`.
pub fn working_dir(container: Option<&str>, image: Option<&ImageConfig>) -> String {
    container
        .filter(|dir| !dir.is_empty())
        .or_else(|| image.map(|image| image.working_dir.as_str()).filter(|dir| !dir.is_empty()))
        .unwrap_or("/")
        .to_owned()
}

/// A user or group as an image's `User` names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Account {
    Id(u32),
    Name(String),
}

impl Account {
    fn parse(text: &str) -> Self {
        text.parse().map_or_else(|_| Account::Name(text.to_owned()), Account::Id)
    }
}

impl fmt::Display for Account {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Account::Id(id) => write!(formatter, "{id}"),
            Account::Name(name) => formatter.write_str(name),
        }
    }
}

/// An image's `User` (`name`, `uid`, `uid:gid`, `name:group`, ...). Resolved against the rootfs's
/// `/etc/passwd` and `/etc/group` by `sc-exec` at each start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageUser {
    pub user: Account,
    pub group: Option<Account>,
}

impl ImageUser {
    /// `None` for an empty `User` (the image runs as root).
    pub fn parse(user: &str) -> Option<Self> {
        let user = user.trim();
        if user.is_empty() {
            return None;
        }
        let (name, group) = match user.split_once(':') {
            Some((name, group)) => (name, (!group.is_empty()).then(|| Account::parse(group))),
            None => (user, None),
        };
        Some(ImageUser { user: Account::parse(name), group })
    }
}

/// Where a refusal happened, for kubelet's wording: `pod` is `name_namespace` (kubelet adds the
/// pod's UID in parentheses), `container` the container's name.
#[derive(Clone, Copy, Debug)]
pub struct ContainerRef<'a> {
    pub pod: &'a str,
    pub container: &'a str,
}

/// Kubelet's `runAsNonRoot` check, with kubelet's messages. `run_as_user` is the effective
/// `runAsUser` (container, then pod); without one, the image's `User` decides: an empty one is
/// root, a name cannot be verified and is refused.
pub fn verify_run_as_non_root(
    run_as_non_root: bool,
    run_as_user: Option<u32>,
    image_user: &str,
    at: ContainerRef<'_>,
) -> Result<(), String> {
    if !run_as_non_root {
        return Ok(());
    }
    let ContainerRef { pod, container } = at;
    if let Some(uid) = run_as_user {
        return if uid == 0 {
            Err(format!("container's runAsUser breaks non-root policy (pod: {pod:?}, container: {container})"))
        } else {
            Ok(())
        };
    }
    match ImageUser::parse(image_user).map(|user| user.user) {
        None | Some(Account::Id(0)) => {
            Err(format!("container has runAsNonRoot and image will run as root (pod: {pod:?}, container: {container})"))
        }
        Some(Account::Name(name)) => Err(format!(
            "container has runAsNonRoot and image has non-numeric user ({name}), cannot verify user is non-root (pod: {pod:?}, container: {container})"
        )),
        Some(Account::Id(_)) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(list: &[&str]) -> Vec<String> {
        list.iter().map(|word| (*word).to_owned()).collect()
    }

    fn image(entrypoint: &[&str], cmd: &[&str]) -> ImageConfig {
        ImageConfig { entrypoint: words(entrypoint), cmd: words(cmd), ..ImageConfig::default() }
    }

    #[test]
    fn command_and_args_replace_both_entrypoint_and_cmd() {
        let nginx = image(&["/docker-entrypoint.sh"], &["nginx", "-g", "daemon off;"]);
        assert_eq!(workload_argv(ArgvSource::Command, &words(&["sh", "-c", "x"]), Some(&nginx)), Ok(words(&["sh", "-c", "x"])));
        assert_eq!(workload_argv(ArgvSource::Command, &words(&["sleep"]), None), Ok(words(&["sleep"])), "no config needed");
    }

    #[test]
    fn args_only_follow_the_entrypoint_and_drop_cmd() {
        let nginx = image(&["/docker-entrypoint.sh"], &["nginx", "-g", "daemon off;"]);
        assert_eq!(
            workload_argv(ArgvSource::ArgsOnly, &words(&["nginx-debug"]), Some(&nginx)),
            Ok(words(&["/docker-entrypoint.sh", "nginx-debug"]))
        );
        let no_entrypoint = image(&[], &["bash"]);
        assert_eq!(workload_argv(ArgvSource::ArgsOnly, &words(&["python", "x.py"]), Some(&no_entrypoint)), Ok(words(&["python", "x.py"])));
    }

    #[test]
    fn neither_runs_entrypoint_then_cmd() {
        assert_eq!(
            workload_argv(ArgvSource::ImageDefault, &[], Some(&image(&["/init"], &["serve", "-v"]))),
            Ok(words(&["/init", "serve", "-v"]))
        );
        assert_eq!(workload_argv(ArgvSource::ImageDefault, &[], Some(&image(&["/pause"], &[]))), Ok(words(&["/pause"])));
        assert_eq!(workload_argv(ArgvSource::ImageDefault, &[], Some(&image(&[], &["bash"]))), Ok(words(&["bash"])));
        assert_eq!(
            workload_argv(ArgvSource::ImageDefault, &[], Some(&image(&[""], &["bash"]))),
            Ok(words(&["bash"])),
            "an empty entrypoint"
        );
    }

    #[test]
    fn an_image_with_no_command_and_no_template_command_is_an_error_that_says_what_to_set() {
        let error = workload_argv(ArgvSource::ImageDefault, &[], Some(&image(&[], &[]))).expect_err("nothing to run");
        assert_eq!(error, ArgvError::NoCommand);
        assert!(error.to_string().contains("neither ENTRYPOINT nor CMD") && error.to_string().contains("set `command`"), "{error}");
    }

    #[test]
    fn an_unknown_image_config_is_never_guessed() {
        let error = workload_argv(ArgvSource::ImageDefault, &[], None).expect_err("unknown");
        assert!(error.to_string().contains("gave no config") && error.to_string().contains("ENTRYPOINT and CMD"), "{error}");
        let error = workload_argv(ArgvSource::ArgsOnly, &words(&["-v"]), None).expect_err("unknown");
        assert_eq!(error, ArgvError::ImageConfigUnknown { needed: "ENTRYPOINT" });
    }

    #[test]
    fn the_working_directory_is_the_containers_then_the_images_then_root() {
        let image = ImageConfig { working_dir: "/home/jovyan".into(), ..ImageConfig::default() };
        assert_eq!(working_dir(Some("/srv"), Some(&image)), "/srv");
        assert_eq!(working_dir(Some(""), Some(&image)), "/home/jovyan");
        assert_eq!(working_dir(None, Some(&image)), "/home/jovyan");
        assert_eq!(working_dir(None, Some(&ImageConfig::default())), "/");
        assert_eq!(working_dir(None, None), "/");
    }

    #[test]
    fn image_users_parse_in_every_form() {
        assert_eq!(ImageUser::parse(""), None);
        assert_eq!(ImageUser::parse("jovyan"), Some(ImageUser { user: Account::Name("jovyan".into()), group: None }));
        assert_eq!(ImageUser::parse("1000"), Some(ImageUser { user: Account::Id(1000), group: None }));
        assert_eq!(ImageUser::parse("1000:100"), Some(ImageUser { user: Account::Id(1000), group: Some(Account::Id(100)) }));
        assert_eq!(
            ImageUser::parse("postgres:ssl-cert"),
            Some(ImageUser { user: Account::Name("postgres".into()), group: Some(Account::Name("ssl-cert".into())) })
        );
        assert_eq!(ImageUser::parse("1000:"), Some(ImageUser { user: Account::Id(1000), group: None }));
    }

    #[test]
    fn run_as_non_root_refuses_as_kubelet_does_with_its_words() {
        let at = ContainerRef { pod: "dev_team-a", container: "main" };
        assert_eq!(verify_run_as_non_root(false, None, "", at), Ok(()));
        assert_eq!(verify_run_as_non_root(true, Some(1000), "", at), Ok(()));
        assert_eq!(verify_run_as_non_root(true, None, "1000:1000", at), Ok(()));
        assert_eq!(
            verify_run_as_non_root(true, Some(0), "1000", at),
            Err(r#"container's runAsUser breaks non-root policy (pod: "dev_team-a", container: main)"#.to_owned())
        );
        let root = Err(r#"container has runAsNonRoot and image will run as root (pod: "dev_team-a", container: main)"#.to_owned());
        assert_eq!(verify_run_as_non_root(true, None, "", at), root);
        assert_eq!(verify_run_as_non_root(true, None, "0:0", at), root);
        assert_eq!(
            verify_run_as_non_root(true, None, "jovyan", at),
            Err(r#"container has runAsNonRoot and image has non-numeric user (jovyan), cannot verify user is non-root (pod: "dev_team-a", container: main)"#.to_owned())
        );
    }
}
