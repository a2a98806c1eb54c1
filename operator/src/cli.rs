//! Command line of `sc-operator`.

use std::net::SocketAddr;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::settings::PodSettings;

/// The StoppableContainer operator.
#[derive(Debug, Parser)]
#[command(name = "sc-operator", version)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the controller.
    Run(RunArgs),
    /// Print both CustomResourceDefinitions as YAML documents.
    Crd,
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Plain,
    /// One JSON object per line.
    Json,
}

/// Flags of `sc-operator run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Image that holds /.sc-bin/sc-exec (the exec-wrapper image).
    #[arg(long, env = "SC_EXEC_WRAPPER_IMAGE")]
    pub exec_wrapper_image: String,
    /// imagePullPolicy of the exec-wrapper image.
    #[arg(long, env = "SC_EXEC_WRAPPER_PULL_POLICY", default_value = "IfNotPresent", value_parser = ["Always", "IfNotPresent", "Never"])]
    pub exec_wrapper_pull_policy: String,
    /// Seconds sc-exec waits for the node plugin to prepare the rootfs before failing.
    #[arg(long, env = "SC_ROOTFS_WAIT_SECONDS", default_value_t = 120)]
    pub rootfs_wait_seconds: u32,
    /// Grace period of provider pods, in seconds.
    #[arg(long, env = "SC_PROVIDER_GRACE_PERIOD_SECONDS", default_value_t = 5)]
    pub provider_grace_period_seconds: i64,
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "SC_WATCH_NAMESPACE")]
    pub namespace: Option<String>,
    /// Address of the /livez, /readyz and /metrics endpoint.
    #[arg(long, env = "SC_HTTP_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Log format.
    #[arg(long, env = "SC_LOG_FORMAT", value_enum, default_value_t = LogFormat::Plain)]
    pub log_format: LogFormat,
    /// Name reported in Events (the operator pod's name is a good value).
    #[arg(long, env = "POD_NAME")]
    pub instance_id: Option<String>,
}

impl RunArgs {
    /// The pod-shaping part of the flags.
    pub fn pod_settings(&self) -> PodSettings {
        PodSettings {
            exec_wrapper_image: self.exec_wrapper_image.clone(),
            exec_wrapper_pull_policy: self.exec_wrapper_pull_policy.clone(),
            rootfs_wait_seconds: self.rootfs_wait_seconds,
            provider_grace_period_seconds: self.provider_grace_period_seconds,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_needs_the_exec_wrapper_image_and_defaults_the_rest() {
        let cli = Cli::try_parse_from(["sc-operator", "run", "--exec-wrapper-image", "wrapper:1"]).expect("parses");
        let Command::Run(args) = cli.command else { panic!("expected run") };
        assert_eq!(args.pod_settings().exec_wrapper_pull_policy, "IfNotPresent");
        assert_eq!(args.listen.port(), 8080);
        assert!(
            Cli::try_parse_from(["sc-operator", "run", "--exec-wrapper-image", "w", "--exec-wrapper-pull-policy", "Sometimes"]).is_err()
        );
        assert!(matches!(Cli::try_parse_from(["sc-operator", "crd"]).expect("parses").command, Command::Crd));
    }
}
