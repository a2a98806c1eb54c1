//! Command line of `sc-operator`.

use std::net::SocketAddr;

use clap::{Args, Parser, Subcommand, ValueEnum};
use sc_api::rootfs_size::{RootfsSize, parse_size};

use crate::settings::{PodSettings, RootfsLimits};

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
    /// Namespace of the node plugins' data reports (one ConfigMap per node; the release
    /// namespace). Default: the client's namespace (in a pod, its own).
    #[arg(long, env = "POD_NAMESPACE", value_name = "NAMESPACE")]
    pub report_namespace: Option<String>,
    /// Size of the root filesystem of a StoppableContainer without spec.rootfsSize (a quantity
    /// such as 10Gi).
    #[arg(long, env = "SC_DEFAULT_ROOTFS_SIZE", value_name = "SIZE", default_value = "10Gi", value_parser = parse_size)]
    pub default_rootfs_size: RootfsSize,
    /// The most a StoppableContainer's spec.rootfsSize may ask for (a quantity such as 100Gi).
    #[arg(long, env = "SC_MAX_ROOTFS_SIZE", value_name = "SIZE", default_value = "100Gi", value_parser = parse_size)]
    pub max_rootfs_size: RootfsSize,
}

impl RunArgs {
    /// The pod-shaping part of the flags; an error (naming the flags) when they contradict each
    /// other.
    pub fn pod_settings(&self) -> Result<PodSettings, String> {
        Ok(PodSettings {
            exec_wrapper_image: self.exec_wrapper_image.clone(),
            exec_wrapper_pull_policy: self.exec_wrapper_pull_policy.clone(),
            rootfs_wait_seconds: self.rootfs_wait_seconds,
            provider_grace_period_seconds: self.provider_grace_period_seconds,
            rootfs: RootfsLimits::new(self.default_rootfs_size, self.max_rootfs_size)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_args(flags: &[&str]) -> Result<RunArgs, clap::Error> {
        let cli = Cli::try_parse_from(["sc-operator", "run", "--exec-wrapper-image", "wrapper:1"].iter().chain(flags))?;
        let Command::Run(args) = cli.command else { panic!("expected run") };
        Ok(args)
    }

    #[test]
    fn run_needs_the_exec_wrapper_image_and_defaults_the_rest() {
        let args = run_args(&[]).expect("parses");
        let settings = args.pod_settings().expect("the defaults are consistent");
        assert_eq!(settings.exec_wrapper_pull_policy, "IfNotPresent");
        assert_eq!((settings.rootfs.default_bytes(), settings.rootfs.max_bytes()), (10 << 30, 100 << 30));
        assert_eq!(args.listen.port(), 8080);
        assert_eq!(args.report_namespace, None, "the client's namespace");
        assert!(Cli::try_parse_from(["sc-operator", "run"]).is_err(), "the exec-wrapper image is required");
        assert!(
            Cli::try_parse_from(["sc-operator", "run", "--exec-wrapper-image", "w", "--exec-wrapper-pull-policy", "Sometimes"]).is_err()
        );
        assert!(matches!(Cli::try_parse_from(["sc-operator", "crd"]).expect("parses").command, Command::Crd));
    }

    #[test]
    fn rootfs_sizes_are_parsed_at_start_up_and_a_bad_one_names_its_flag() {
        let args =
            run_args(&["--default-rootfs-size", "1.5Gi", "--max-rootfs-size=2Ti", "--report-namespace", "sc-system"]).expect("parses");
        let settings = args.pod_settings().expect("consistent");
        assert_eq!((settings.rootfs.default_bytes(), settings.rootfs.max_bytes()), (3 << 29, 2 << 40));
        assert_eq!(args.report_namespace.as_deref(), Some("sc-system"));

        let cases: [(&[&str], &str); 3] = [
            (
                &["--default-rootfs-size", "10GB"],
                "invalid value '10GB' for '--default-rootfs-size <SIZE>': the rootfs size \"10GB\" is not a Kubernetes quantity \
                 (unknown suffix \"GB\"; use Ki, Mi, Gi, Ti, Pi, Ei, or k, M, G, T, P, E); write it like 10Gi, 512Mi or 20G",
            ),
            (
                &["--max-rootfs-size", "1Mi"],
                "invalid value '1Mi' for '--max-rootfs-size <SIZE>': the rootfs size \"1Mi\" is 1048576 bytes, below the \
                 minimum of 64Mi",
            ),
            (&["--max-rootfs-size", ""], "invalid value '' for '--max-rootfs-size <SIZE>': the rootfs size is empty"),
        ];
        for (flags, expected) in cases {
            let error = run_args(flags).expect_err("refused").to_string();
            assert!(error.contains(expected), "{flags:?}: expected {expected:?} in:\n{error}");
        }

        let contradicting = run_args(&["--default-rootfs-size", "200Gi"]).expect("each value is valid");
        assert_eq!(
            contradicting.pod_settings().map(|_| ()),
            Err("--default-rootfs-size 200Gi is more than --max-rootfs-size 100Gi: every StoppableContainer without \
                 spec.rootfsSize would ask for more than it may have; lower the default or raise the maximum"
                .to_owned())
        );
    }
}
