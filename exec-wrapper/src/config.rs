//! Reading the workload's settings ([`ExecConfig`]) from the environment, and the environment the
//! workload itself gets.

use std::ffi::{OsStr, OsString};

use sc_api::exec_config::{EXEC_CONFIG_ENV, ExecConfig};

use crate::error::Error;

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

/// The workload's environment: the container's, without [`EXEC_CONFIG_ENV`], with `HOME` and
/// `USER` filled from the account when the pod did not set them (as container runtimes do).
pub fn workload_environment(
    inherited: impl IntoIterator<Item = (OsString, OsString)>,
    home: &str,
    user_name: Option<&str>,
) -> Vec<(OsString, OsString)> {
    let mut environment: Vec<(OsString, OsString)> = inherited.into_iter().filter(|(key, _)| key != EXEC_CONFIG_ENV).collect();
    if !environment.iter().any(|(key, _)| key == "HOME") {
        environment.push(("HOME".into(), home.into()));
    }
    if let Some(user_name) = user_name
        && !environment.iter().any(|(key, _)| key == "USER")
    {
        environment.push(("USER".into(), user_name.into()));
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

    #[test]
    fn the_workload_environment_drops_the_config_and_fills_home_and_user() {
        let inherited = vec![(OsString::from("PATH"), OsString::from("/bin")), (OsString::from(EXEC_CONFIG_ENV), OsString::from("{}"))];
        let environment = workload_environment(inherited, "/home/alice", Some("alice"));
        assert_eq!(
            environment,
            vec![("PATH".into(), "/bin".into()), ("HOME".into(), "/home/alice".into()), ("USER".into(), "alice".into()),]
        );
        assert_eq!(path_variable(&environment), Some(OsStr::new("/bin")));
    }

    #[test]
    fn the_pods_own_home_and_user_win() {
        let inherited = vec![(OsString::from("HOME"), OsString::from("/data")), (OsString::from("USER"), OsString::from("me"))];
        let environment = workload_environment(inherited.clone(), "/home/alice", Some("alice"));
        assert_eq!(environment, inherited);
        assert_eq!(path_variable(&environment), None);
    }
}
