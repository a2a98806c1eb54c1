//! Reading the workload's settings ([`ExecConfig`]) from the environment, and the environment the
//! workload itself gets.

use std::ffi::{OsStr, OsString};

use sc_api::consts::{WRAPPER_IMAGE_HOME, WRAPPER_IMAGE_PATH};
use sc_api::exec_config::{EXEC_CONFIG_ENV, ExecConfig};

use crate::error::Error;
use crate::lookup::DEFAULT_PATH;

/// Parses the value of [`EXEC_CONFIG_ENV`]. A missing variable is an error: without it the
/// wrapper cannot know the workload's user and capabilities, and guessing would run it as root
/// with every capability of the container.
pub fn parse_exec_config(value: Option<&OsStr>) -> Result<ExecConfig, Error> {
    let Some(value) = value else {
        return Err(config_error(
            "the variable is not set; sc-exec must run in a consumer container created by the \
             StoppableContainer operator"
                .into(),
        ));
    };
    let text = value.to_str().ok_or_else(|| config_error("the value is not valid UTF-8".into()))?;
    let config: ExecConfig =
        serde_json::from_str(text).map_err(|error| config_error(format!("not a valid ExecConfig JSON object ({error})")))?;
    if let Some(working_dir) = &config.working_dir
        && !working_dir.starts_with('/')
    {
        return Err(config_error(format!("workingDir {working_dir:?} is not an absolute path; use a path starting with `/`")));
    }
    Ok(config)
}

pub(crate) fn config_error(message: String) -> Error {
    Error::Config { variable: EXEC_CONFIG_ENV, message }
}

/// The variable container runtimes set before the image's `Env` (containerd's CRI plugin: the
/// default `PATH`, then `HOSTNAME`), kept in that place so the order matches a plain container.
const RUNTIME_SET_BEFORE_IMAGE_ENV: &str = "HOSTNAME";

/// Sets `key` as containerd's `replaceOrAppendEnvValues` does: in place when present, else at
/// the end. `None` removes it (an image `Env` entry without `=` unsets a variable).
fn replace_or_append(environment: &mut Vec<(OsString, OsString)>, key: &OsStr, value: Option<&OsStr>) {
    let position = environment.iter().position(|(existing, _)| existing == key);
    match (position, value) {
        (Some(index), Some(value)) => environment[index].1 = value.to_os_string(),
        (Some(index), None) => {
            environment.remove(index);
        }
        (None, Some(value)) => environment.push((key.to_os_string(), value.to_os_string())),
        (None, None) => {}
    }
}

/// The workload's environment, built as containerd builds a plain container's: the runtime's
/// default `PATH`, `HOSTNAME`, then the image's `Env`, then every variable the container got from
/// the pod, each replacing one of the same name or appended. The consumer container's own
/// environment is the pod's plus what the exec-wrapper image adds, so [`EXEC_CONFIG_ENV`] is left
/// out, and so are `PATH` and `HOME` when they still hold the exec-wrapper image's values
/// ([`WRAPPER_IMAGE_PATH`], [`WRAPPER_IMAGE_HOME`]): then the pod did not set them. `HOME`, when
/// unset, is the account's ([`with_home`]).
pub fn workload_environment(container: &[(OsString, OsString)], image_env: &[String]) -> Vec<(OsString, OsString)> {
    let mut environment = vec![(OsString::from("PATH"), OsString::from(DEFAULT_PATH))];
    if let Some((key, value)) = container.iter().find(|(key, _)| key == RUNTIME_SET_BEFORE_IMAGE_ENV) {
        environment.push((key.clone(), value.clone()));
    }
    for entry in image_env {
        match entry.split_once('=') {
            Some((key, value)) => replace_or_append(&mut environment, OsStr::new(key), Some(OsStr::new(value))),
            None => replace_or_append(&mut environment, OsStr::new(entry), None),
        }
    }
    for (key, value) in container {
        let from_wrapper_image = (key == "PATH" && value == WRAPPER_IMAGE_PATH) || (key == "HOME" && value == WRAPPER_IMAGE_HOME);
        if key != EXEC_CONFIG_ENV && !from_wrapper_image {
            replace_or_append(&mut environment, key, Some(value));
        }
    }
    environment
}

/// Adds `HOME` when the environment lacks it, as runc does (the account's home, or `/`). No
/// runtime sets `USER`, so neither does this.
pub fn with_home(mut environment: Vec<(OsString, OsString)>, home: &str) -> Vec<(OsString, OsString)> {
    if !environment.iter().any(|(key, _)| key == "HOME") {
        environment.push(("HOME".into(), home.into()));
    }
    environment
}

/// The value of `PATH` in an environment, if set.
pub fn path_variable(environment: &[(OsString, OsString)]) -> Option<&OsStr> {
    environment.iter().find(|(key, _)| key == "PATH").map(|(_, value)| value.as_os_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_config_parses() {
        let config = parse_exec_config(Some(OsStr::new(r#"{"runAsUser":1000,"workingDir":"/srv"}"#))).expect("valid");
        assert_eq!(config.run_as_user, Some(1000));
        assert_eq!(config.working_dir.as_deref(), Some("/srv"));
    }

    #[test]
    fn a_missing_variable_is_a_config_error_naming_it() {
        let error = parse_exec_config(None).expect_err("missing");
        assert_eq!(error.exit_code(), 78);
        assert!(error.to_string().contains("SC_EXEC_CONFIG"), "{error}");
        assert!(error.to_string().contains("not set"), "{error}");
    }

    #[test]
    fn invalid_json_and_unknown_fields_are_rejected() {
        let garbage = parse_exec_config(Some(OsStr::new("{"))).expect_err("garbage");
        assert!(garbage.to_string().contains("not a valid ExecConfig"), "{garbage}");
        let typo = parse_exec_config(Some(OsStr::new(r#"{"runAsUsr":1}"#))).expect_err("typo");
        assert!(typo.to_string().contains("runAsUsr"), "{typo}");
    }

    #[test]
    fn a_relative_working_dir_is_rejected() {
        let error = parse_exec_config(Some(OsStr::new(r#"{"workingDir":"srv"}"#))).expect_err("relative");
        assert!(error.to_string().contains("not an absolute path"), "{error}");
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        list.iter().map(|(key, value)| (OsString::from(key), OsString::from(value))).collect()
    }

    fn image_env(list: &[&str]) -> Vec<String> {
        list.iter().map(|entry| (*entry).to_owned()).collect()
    }

    #[test]
    fn without_image_or_pod_values_the_runtime_default_path_applies() {
        let container = pairs(&[("PATH", WRAPPER_IMAGE_PATH), ("HOSTNAME", "box"), ("HOME", WRAPPER_IMAGE_HOME), (EXEC_CONFIG_ENV, "{}")]);
        assert_eq!(workload_environment(&container, &[]), pairs(&[("PATH", DEFAULT_PATH), ("HOSTNAME", "box")]));
    }

    #[test]
    fn the_images_env_comes_after_hostname_and_replaces_the_default_path_in_place() {
        let container = pairs(&[("PATH", WRAPPER_IMAGE_PATH), ("HOSTNAME", "box"), ("KUBERNETES_PORT", "tcp://10.0.0.1:443")]);
        let image = image_env(&["PATH=/opt/conda/bin:/usr/bin:/bin", "LANG=C.UTF-8", "CONDA_DIR=/opt/conda"]);
        assert_eq!(
            workload_environment(&container, &image),
            pairs(&[
                ("PATH", "/opt/conda/bin:/usr/bin:/bin"),
                ("HOSTNAME", "box"),
                ("LANG", "C.UTF-8"),
                ("CONDA_DIR", "/opt/conda"),
                ("KUBERNETES_PORT", "tcp://10.0.0.1:443"),
            ])
        );
    }

    #[test]
    fn the_pods_variables_override_the_images_by_name() {
        let container = pairs(&[("PATH", "/custom/bin:/usr/bin"), ("LANG", "de_DE.UTF-8"), ("HOME", "/data"), ("EXTRA", "1")]);
        let image = image_env(&["PATH=/opt/conda/bin:/usr/bin", "LANG=C.UTF-8", "HOME=/home/jovyan"]);
        assert_eq!(
            workload_environment(&container, &image),
            pairs(&[("PATH", "/custom/bin:/usr/bin"), ("LANG", "de_DE.UTF-8"), ("HOME", "/data"), ("EXTRA", "1")])
        );
    }

    #[test]
    fn an_image_entry_without_a_value_unsets_and_an_empty_value_is_kept() {
        let image = image_env(&["PATH", "EMPTY=", "A=b=c"]);
        assert_eq!(workload_environment(&[], &image), pairs(&[("EMPTY", ""), ("A", "b=c")]));
    }

    #[test]
    fn home_is_the_accounts_only_when_unset_and_user_is_never_added() {
        let environment = with_home(pairs(&[("PATH", "/bin")]), "/home/alice");
        assert_eq!(environment, pairs(&[("PATH", "/bin"), ("HOME", "/home/alice")]));
        assert_eq!(path_variable(&environment), Some(OsStr::new("/bin")));
        let environment = with_home(workload_environment(&pairs(&[("HOME", WRAPPER_IMAGE_HOME)]), &image_env(&["HOME=/srv"])), "/root");
        assert_eq!(environment, pairs(&[("PATH", DEFAULT_PATH), ("HOME", "/srv")]), "the image's HOME is a set HOME");
        assert_eq!(path_variable(&pairs(&[("HOME", "/")])), None);
    }
}
