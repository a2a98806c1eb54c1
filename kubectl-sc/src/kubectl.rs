//! `exec` and `logs` hand over to kubectl, which already implements the streaming protocols,
//! terminal handling and resizing. The argument lists are built by pure functions.

use sc_api::consts::EXEC_WRAPPER_PATH;

use crate::error::CliError;

/// Program run for kubectl: `$KUBECTL` if set (lets tests and wrappers pin a binary), else
/// `kubectl` from PATH.
pub fn kubectl_program() -> String {
    std::env::var("KUBECTL").ok().filter(|program| !program.is_empty()).unwrap_or_else(|| "kubectl".to_owned())
}

/// The shell `exec` opens when no command is given: the image's bash as a login shell when it
/// has one, else `/bin/sh` (as a login shell, so the profile's PATH and prompt apply).
pub const LOGIN_SHELL_GUESS: [&str; 3] = ["/bin/sh", "-c", "if command -v bash >/dev/null 2>&1; then exec bash -l; fi; exec /bin/sh -l"];

/// Which cluster and namespace kubectl must use: the same ones the plugin resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubectlTarget {
    pub kubeconfig: Option<String>,
    pub context: Option<String>,
    pub namespace: String,
}

impl KubectlTarget {
    fn connection_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(kubeconfig) = &self.kubeconfig {
            args.push(format!("--kubeconfig={kubeconfig}"));
        }
        if let Some(context) = &self.context {
            args.push(format!("--context={context}"));
        }
        args.push(format!("--namespace={}", self.namespace));
        args
    }
}

/// What `kubectl sc exec` asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecRequest {
    pub pod: String,
    pub container: Option<String>,
    pub stdin: bool,
    pub tty: bool,
    pub command: Vec<String>,
}

impl ExecRequest {
    /// Without a command the user wants a shell: open the login-shell guess, interactive when
    /// the plugin itself runs in a terminal (a shell without stdin would exit at once).
    pub fn with_defaults(mut self, stdin_is_terminal: bool) -> Self {
        if self.command.is_empty() {
            self.command = LOGIN_SHELL_GUESS.iter().map(|part| (*part).to_owned()).collect();
            if !self.stdin && !self.tty && stdin_is_terminal {
                self.stdin = true;
                self.tty = true;
            }
        }
        self
    }
}

/// `kubectl exec ... <pod> -- /.sc-bin/sc-exec <command...>`: the wrapper enters the
/// persistent root filesystem and runs the command there.
pub fn exec_args(target: &KubectlTarget, request: &ExecRequest) -> Vec<String> {
    let mut args = target.connection_args();
    args.push("exec".to_owned());
    if request.stdin {
        args.push("--stdin".to_owned());
    }
    if request.tty {
        args.push("--tty".to_owned());
    }
    if let Some(container) = &request.container {
        args.push(format!("--container={container}"));
    }
    args.push(request.pod.clone());
    args.push("--".to_owned());
    args.push(EXEC_WRAPPER_PATH.to_owned());
    args.extend(request.command.iter().cloned());
    args
}

/// What `kubectl sc logs` asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogsRequest {
    pub pod: String,
    pub container: Option<String>,
    pub follow: bool,
    pub tail: Option<i64>,
    pub previous: bool,
    pub timestamps: bool,
}

pub fn logs_args(target: &KubectlTarget, request: &LogsRequest) -> Vec<String> {
    let mut args = target.connection_args();
    args.push("logs".to_owned());
    if request.follow {
        args.push("--follow".to_owned());
    }
    if let Some(tail) = request.tail {
        args.push(format!("--tail={tail}"));
    }
    if request.previous {
        args.push("--previous".to_owned());
    }
    if request.timestamps {
        args.push("--timestamps".to_owned());
    }
    if let Some(container) = &request.container {
        args.push(format!("--container={container}"));
    }
    args.push(request.pod.clone());
    args
}

/// Runs kubectl with the terminal handed over, and returns once it exits. Ctrl-C reaches
/// kubectl (same process group) and is ignored here, so the plugin outlives kubectl and
/// reports its exit status instead of dying first.
pub async fn run_kubectl(args: &[String], command_name: &'static str) -> Result<(), CliError> {
    run_program(&kubectl_program(), args, command_name).await
}

async fn run_program(program: &str, args: &[String], command_name: &'static str) -> Result<(), CliError> {
    let mut child = tokio::process::Command::new(program).args(args).spawn().map_err(|error| CliError::KubectlMissing {
        program: program.to_owned(),
        command: command_name,
        cause: error.to_string(),
    })?;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status?,
            interrupted = tokio::signal::ctrl_c() => interrupted?,
        }
    };
    if status.success() {
        return Ok(());
    }
    // A kubectl killed by a signal has no exit code; report it as a shell would (128 + signal).
    let code = status.code().unwrap_or_else(|| {
        use std::os::unix::process::ExitStatusExt;
        status.signal().map_or(1, |signal| 128 + signal)
    });
    Err(CliError::KubectlFailed { code })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> KubectlTarget {
        KubectlTarget { kubeconfig: Some("/tmp/kc".into()), context: Some("e2e".into()), namespace: "team".into() }
    }

    #[test]
    fn exec_runs_the_command_through_the_wrapper() {
        let request = ExecRequest {
            pod: "box".into(),
            container: Some("main".into()),
            stdin: true,
            tty: false,
            command: vec!["ls".into(), "-la".into(), "/root".into()],
        };
        assert_eq!(
            exec_args(&target(), &request),
            [
                "--kubeconfig=/tmp/kc",
                "--context=e2e",
                "--namespace=team",
                "exec",
                "--stdin",
                "--container=main",
                "box",
                "--",
                EXEC_WRAPPER_PATH,
                "ls",
                "-la",
                "/root",
            ]
        );
    }

    #[test]
    fn exec_without_a_command_opens_a_login_shell() {
        let plain = KubectlTarget { kubeconfig: None, context: None, namespace: "default".into() };
        let interactive = ExecRequest { pod: "box".into(), ..ExecRequest::default() }.with_defaults(true);
        assert!(interactive.stdin && interactive.tty);
        let args = exec_args(&plain, &interactive);
        assert_eq!(args[..6], ["--namespace=default", "exec", "--stdin", "--tty", "box", "--"]);
        assert_eq!(args[6..], [EXEC_WRAPPER_PATH, LOGIN_SHELL_GUESS[0], LOGIN_SHELL_GUESS[1], LOGIN_SHELL_GUESS[2]]);

        // Piped into: the user decides about -i; no terminal is forced on them.
        let piped = ExecRequest { pod: "box".into(), ..ExecRequest::default() }.with_defaults(false);
        assert!(!piped.stdin && !piped.tty);
        // An explicit command is never replaced, nor its flags changed.
        let explicit = ExecRequest { pod: "box".into(), command: vec!["id".into()], ..ExecRequest::default() }.with_defaults(true);
        assert_eq!((explicit.command, explicit.stdin, explicit.tty), (vec!["id".to_owned()], false, false));
    }

    #[test]
    fn logs_passes_every_option() {
        let request = LogsRequest {
            pod: "box".into(),
            container: Some("side".into()),
            follow: true,
            tail: Some(20),
            previous: true,
            timestamps: true,
        };
        assert_eq!(
            logs_args(&target(), &request),
            [
                "--kubeconfig=/tmp/kc",
                "--context=e2e",
                "--namespace=team",
                "logs",
                "--follow",
                "--tail=20",
                "--previous",
                "--timestamps",
                "--container=side",
                "box",
            ]
        );
        let plain = LogsRequest { pod: "box".into(), ..LogsRequest::default() };
        assert_eq!(logs_args(&target(), &plain)[3..], ["logs", "box"]);
    }

    #[tokio::test]
    async fn kubectl_exit_statuses_pass_through_and_a_missing_kubectl_says_how_to_fix_it() {
        // `sh -c 'exit "$1"' sh N` stands in for a kubectl whose remote command exited with N.
        let exit_with = |code: &str| ["-c".to_owned(), "exit \"$1\"".to_owned(), "sh".to_owned(), code.to_owned()];
        assert!(run_program("sh", &exit_with("0"), "exec").await.is_ok());
        let failed = run_program("sh", &exit_with("3"), "exec").await.expect_err("fails");
        assert_eq!(failed.exit_code(), 3);
        assert!(!failed.should_print());

        let missing = run_program("/nonexistent/kubectl", &[], "logs").await.expect_err("cannot spawn");
        let message = missing.to_string();
        assert!(message.contains("/nonexistent/kubectl") && message.contains("kubectl sc logs"), "{message}");
        assert!(message.contains("Install kubectl or put it on PATH"), "{message}");
    }
}
