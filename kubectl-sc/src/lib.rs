//! `kubectl sc`: the kubectl plugin for StoppableContainers.
//!
//! Parsing ([`cli`], [`validate`]), the manifest `create` sends ([`manifest`]), what is printed
//! ([`render`]) and the kubectl argument lists ([`kubectl`]) are pure and unit-tested; the
//! [`commands`] glue them to the API server through [`cluster`].

pub mod cli;
pub mod cluster;
pub mod commands;
pub mod error;
pub mod kubectl;
pub mod layer;
pub mod layer_pod;
pub mod manifest;
pub mod render;
pub mod validate;
pub mod version;
pub mod wait;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::error::CliError;
use crate::wait::Target;

/// Parses the process arguments, runs the command and turns the outcome into an exit status.
pub async fn main_with_args(args: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        // Prints help/version to stdout and usage errors to stderr, with clap's exit codes.
        Err(error) => error.exit(),
    };
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            if error.should_print() {
                eprintln!("error: {error}");
            }
            ExitCode::from(error.exit_code())
        }
    }
}

/// Runs one parsed command.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    let global = &cli.global;
    if global.all_namespaces && !matches!(cli.command, Command::List(_)) {
        return Err(CliError::AllNamespacesNotSupported { command: command_name(&cli.command) });
    }
    match cli.command {
        Command::Create(args) => commands::create(global, args).await,
        Command::List(args) => commands::list(global, args).await,
        Command::Status(args) => commands::status(global, args).await,
        Command::Start(args) => commands::lifecycle(global, &args.name, Target::Running, args.wait, args.timeout).await,
        Command::Stop(args) => commands::lifecycle(global, &args.name, Target::Stopped, args.wait, args.timeout).await,
        Command::Restart(args) => commands::restart(global, &args.name, args.wait, args.timeout, args.stop_timeout).await,
        Command::Exec(args) => commands::exec(global, args).await,
        Command::Logs(args) => commands::logs(global, args).await,
        Command::Delete(args) => commands::delete(global, args).await,
        Command::Diff(args) => layer::diff(global, args).await,
        Command::Version => {
            println!("{}", version::version_line());
            Ok(())
        }
    }
}

fn command_name(command: &Command) -> &'static str {
    match command {
        Command::Create(_) => "create",
        Command::List(_) => "list",
        Command::Status(_) => "status",
        Command::Start(_) => "start",
        Command::Stop(_) => "stop",
        Command::Restart(_) => "restart",
        Command::Exec(_) => "exec",
        Command::Logs(_) => "logs",
        Command::Delete(_) => "delete",
        Command::Diff(_) => "diff",
        Command::Version => "version",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn all_namespaces_is_refused_outside_list() {
        let cli = Cli::try_parse_from(["kubectl-sc", "-A", "status", "box"]).expect("parses");
        let error = run(cli).await.expect_err("refused");
        assert_eq!(error.to_string(), "--all-namespaces (-A) applies to `list` only; use -n <namespace> with `status`");
    }
}
