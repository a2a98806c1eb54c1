//! Command-line interface of `kubectl sc` (the flags and commands of the Go plugin it replaces,
//! plus `restart`, `--context`, resources and output formats).

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::validate::{
    EnvVarArg, PortArg, StorageFlags, parse_env_var, parse_namespace, parse_port, parse_quantity, parse_rootfs_size, parse_sc_name,
    parse_storage_size,
};

/// Manage StoppableContainers: containers whose root filesystem survives stop and start.
#[derive(Debug, Parser)]
#[command(name = "kubectl-sc", bin_name = "kubectl sc", version = crate::version::VERSION_LINE_SHORT)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Where to find the cluster and which namespace to use (accepted before or after the command).
#[derive(Clone, Debug, Default, Args)]
pub struct GlobalArgs {
    /// Namespace of the StoppableContainer (default: the kubeconfig context's namespace, else
    /// `default`).
    #[arg(short = 'n', long, global = true, value_parser = parse_namespace)]
    pub namespace: Option<String>,
    /// Path of the kubeconfig file (default: $KUBECONFIG, else ~/.kube/config).
    #[arg(long, global = true, value_name = "PATH")]
    pub kubeconfig: Option<String>,
    /// Kubeconfig context to use (default: the current context).
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// List StoppableContainers of every namespace (only `list` uses it).
    #[arg(short = 'A', long, global = true)]
    pub all_namespaces: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a StoppableContainer.
    Create(CreateArgs),
    /// List StoppableContainers.
    #[command(visible_aliases = ["ls", "get"])]
    List(ListArgs),
    /// Show the state of a StoppableContainer, its conditions and recent events.
    Status(StatusArgs),
    /// Start the workload (sets spec.running=true).
    Start(LifecycleArgs<StartTimeout>),
    /// Stop the workload, keeping its root filesystem (sets spec.running=false).
    Stop(LifecycleArgs<StopTimeout>),
    /// Stop the workload, wait until it is stopped, then start it again.
    Restart(RestartArgs),
    /// Run a command inside the StoppableContainer's persistent root filesystem.
    Exec(ExecArgs),
    /// Print the workload's logs (kubectl logs of the consumer pod).
    Logs(LogsArgs),
    /// Delete a StoppableContainer and its persistent root filesystem.
    #[command(visible_aliases = ["rm", "remove"])]
    Delete(DeleteArgs),
    /// Show what changed in the root filesystem against the image (A added, C changed, D
    /// deleted), running or stopped, through a short-lived pod in the StoppableContainer's
    /// namespace.
    Diff(DiffArgs),
    /// Print the plugin's version.
    Version,
}

/// Output format of commands that print objects.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Human-readable text.
    #[default]
    Table,
    Json,
    Yaml,
}

/// Format of a printed manifest (`create --dry-run`, `create -o`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ManifestFormat {
    Json,
    Yaml,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Name of the StoppableContainer (a DNS-1123 label).
    #[arg(value_parser = parse_sc_name)]
    pub name: String,
    /// Image of the workload; its root filesystem is the starting point of the persistent one.
    #[arg(long)]
    pub image: String,
    /// Start the workload right away (`--running=false` creates it stopped).
    #[arg(long, num_args = 0..=1, require_equals = true, default_value_t = true,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub running: bool,
    /// Working directory of the workload.
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    pub workdir: Option<String>,
    /// Environment variable of the workload, KEY=VALUE (repeatable).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE", value_parser = parse_env_var)]
    pub env: Vec<EnvVarArg>,
    /// Container port of the workload, port[:name] (repeatable).
    #[arg(short = 'p', long = "port", value_name = "PORT[:NAME]", value_parser = parse_port)]
    pub ports: Vec<PortArg>,
    /// CPU request of the workload (e.g. 500m, 2).
    #[arg(long, value_name = "QUANTITY", value_parser = parse_quantity)]
    pub cpu: Option<String>,
    /// Memory request of the workload (e.g. 256Mi, 1Gi).
    #[arg(long, value_name = "QUANTITY", value_parser = parse_quantity)]
    pub memory: Option<String>,
    /// Most the persistent root filesystem may hold (spec.rootfsSize, e.g. 20Gi; at least 64Mi,
    /// at most the cluster's maximum). Default: the cluster's default.
    #[arg(long, value_name = "SIZE", value_parser = parse_rootfs_size)]
    pub size: Option<String>,
    /// Put the persistent root filesystem on a PersistentVolumeClaim of this size instead of the
    /// node's disk (spec.storage, e.g. 20Gi; the operator creates the claim `<name>-rootfs`).
    /// The claim's size is the most the root filesystem holds, so --size does not go with it.
    /// Default: on the node's disk.
    #[arg(long, value_name = "SIZE", value_parser = parse_storage_size)]
    pub storage: Option<String>,
    /// StorageClass of the claim (only with --storage). Default: the cluster's default class.
    #[arg(long, value_name = "NAME")]
    pub storage_class: Option<String>,
    /// Keep the claim and its data when the StoppableContainer is deleted (only with --storage;
    /// spec.storage.whenDeleted: Retain). Default: the claim is deleted with it.
    #[arg(long)]
    pub keep_storage: bool,
    /// Print the manifest instead of creating it (nothing is sent to the cluster).
    #[arg(long)]
    pub dry_run: bool,
    /// Print the manifest (with --dry-run) or the created object in this format.
    #[arg(short = 'o', long = "output", value_enum)]
    pub output: Option<ManifestFormat>,
    /// The workload's command and arguments, after `--` (default: the image's ENTRYPOINT/CMD).
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

impl CreateArgs {
    /// The storage flags, for [`crate::validate::storage_from_flags`] (which refuses the
    /// combinations clap cannot explain).
    pub fn storage_flags(&self) -> StorageFlags<'_> {
        StorageFlags {
            size: self.storage.as_deref(),
            class: self.storage_class.as_deref(),
            keep: self.keep_storage,
            rootfs_size: self.size.as_deref(),
        }
    }
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Name of the StoppableContainer.
    #[arg(value_parser = parse_sc_name)]
    pub name: String,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    pub output: OutputFormat,
}

/// Default `--timeout` of a lifecycle command (a type parameter, so `start` and `stop` share
/// one argument struct but document their own defaults in `--help`).
pub trait DefaultTimeout: Clone + Send + Sync + 'static {
    const DEFAULT: &'static str;
}

#[derive(Clone, Debug)]
pub struct StartTimeout;
impl DefaultTimeout for StartTimeout {
    const DEFAULT: &'static str = "2m";
}

#[derive(Clone, Debug)]
pub struct StopTimeout;
impl DefaultTimeout for StopTimeout {
    const DEFAULT: &'static str = "30s";
}

#[derive(Debug, Args)]
pub struct LifecycleArgs<T: DefaultTimeout> {
    /// Name of the StoppableContainer.
    #[arg(value_parser = parse_sc_name)]
    pub name: String,
    /// Wait until the StoppableContainer reaches the target phase, printing progress.
    #[arg(short = 'w', long)]
    pub wait: bool,
    /// How long --wait waits (e.g. 90s, 2m, 1h).
    #[arg(long, default_value = T::DEFAULT, value_parser = parse_duration)]
    pub timeout: Duration,
    #[arg(skip)]
    pub _default: std::marker::PhantomData<T>,
}

#[derive(Debug, Args)]
pub struct RestartArgs {
    /// Name of the StoppableContainer.
    #[arg(value_parser = parse_sc_name)]
    pub name: String,
    /// Also wait until the workload is Running again (the stop is always waited for).
    #[arg(short = 'w', long)]
    pub wait: bool,
    /// How long to wait for the start (with --wait).
    #[arg(long, default_value = StartTimeout::DEFAULT, value_parser = parse_duration)]
    pub timeout: Duration,
    /// How long to wait for the stop.
    #[arg(long, default_value = StopTimeout::DEFAULT, value_parser = parse_duration)]
    pub stop_timeout: Duration,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Name of the StoppableContainer.
    #[arg(value_parser = parse_sc_name)]
    pub name: String,
    /// Pass stdin to the command.
    #[arg(short = 'i', long)]
    pub stdin: bool,
    /// Allocate a terminal.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Container of the consumer pod (default: the workload container).
    #[arg(short = 'c', long, value_name = "NAME")]
    pub container: Option<String>,
    /// The command, after `--` (or directly after the name). Without one, a login shell.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Name of the StoppableContainer.
    #[arg(value_parser = parse_sc_name)]
    pub name: String,
    /// Stream the logs.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Number of recent lines to show (default, or -1: all).
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = clap::value_parser!(i64).range(-1..))]
    pub tail: Option<i64>,
    /// Print the logs of the previous (crashed) run of the workload container.
    #[arg(short = 'p', long)]
    pub previous: bool,
    /// Prefix each line with its timestamp.
    #[arg(long)]
    pub timestamps: bool,
    /// Container of the consumer pod (default: the workload container).
    #[arg(short = 'c', long, value_name = "NAME")]
    pub container: Option<String>,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Name of the StoppableContainer.
    #[arg(value_parser = parse_sc_name)]
    pub name: String,
    /// Wait until the StoppableContainer is gone (`--wait=false` returns at once).
    #[arg(short = 'w', long, num_args = 0..=1, require_equals = true, default_value_t = true,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub wait: bool,
    /// Ask for immediate deletion (grace period 0). Finalizers still run: they remove the
    /// persistent root filesystem from the node.
    #[arg(long)]
    pub force: bool,
    /// How long --wait waits.
    #[arg(long, default_value = "2m", value_parser = parse_duration)]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// Name of the StoppableContainer.
    #[arg(value_parser = parse_sc_name)]
    pub name: String,
    /// Only these paths and what is below them (absolute paths in the rootfs, e.g. /etc).
    #[arg(value_name = "PATH", value_parser = parse_rootfs_path)]
    pub paths: Vec<std::path::PathBuf>,
    /// Counts and bytes per top-level directory instead of every path.
    #[arg(long)]
    pub stat: bool,
    /// Output format (json: the report as sc-exec wrote it, filtered by the paths).
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// How long to wait for the pod that reads the layer (an image pull can take a while).
    #[arg(long, default_value = "3m", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// A path filter of `diff`: absolute, normalised (no `.`, `..` or trailing `/` kept).
pub fn parse_rootfs_path(raw: &str) -> Result<std::path::PathBuf, String> {
    use std::path::{Component, Path, PathBuf};
    let path = Path::new(raw);
    if !path.is_absolute() {
        return Err(format!("{raw:?} is not an absolute path in the root filesystem: write it from /, e.g. /etc"));
    }
    if path.components().any(|component| matches!(component, Component::ParentDir)) {
        return Err(format!("{raw:?} contains \"..\": write the path without it"));
    }
    Ok(path.components().collect::<PathBuf>())
}

/// Parses `90s`, `2m`, `1h`, `1m30s`, `500ms` or a bare number of seconds.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let invalid = || format!("{raw:?} is not a duration: expected e.g. 30s, 2m, 1m30s or 1h");
    if raw.is_empty() {
        return Err(invalid());
    }
    if let Ok(seconds) = raw.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    let mut total = Duration::ZERO;
    let mut rest = raw;
    while !rest.is_empty() {
        let digits_len = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(invalid)?;
        if digits_len == 0 {
            return Err(invalid());
        }
        let (digits, after_digits) = rest.split_at(digits_len);
        let amount: u64 = digits.parse().map_err(|_| invalid())?;
        let unit_len = after_digits.find(|c: char| c.is_ascii_digit()).unwrap_or(after_digits.len());
        let (unit, after_unit) = after_digits.split_at(unit_len);
        let unit_duration = match unit {
            "ms" => Duration::from_millis(1),
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            _ => return Err(invalid()),
        };
        let amount = u32::try_from(amount).map_err(|_| invalid())?;
        total += unit_duration * amount;
        rest = after_unit;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("kubectl-sc").chain(args.iter().copied()))
    }

    fn parse_ok(args: &[&str]) -> Cli {
        match parse(args) {
            Ok(cli) => cli,
            Err(error) => panic!("{args:?} was rejected: {error}"),
        }
    }

    /// The rendered clap error for rejected arguments.
    fn rejection(args: &[&str]) -> String {
        match parse(args) {
            Ok(cli) => panic!("{args:?} was accepted: {cli:?}"),
            Err(error) => error.to_string(),
        }
    }

    fn create_args(args: &[&str]) -> CreateArgs {
        match parse_ok(args).command {
            Command::Create(create) => create,
            other => panic!("not create: {other:?}"),
        }
    }

    #[test]
    fn create_takes_the_command_after_the_double_dash() {
        let create = create_args(&["create", "box", "--image", "ubuntu:22.04", "--", "sleep", "infinity"]);
        assert_eq!(create.command, ["sleep", "infinity"]);
        assert!(create.running);

        // Flags after `--` belong to the workload, not to kubectl sc.
        let create = create_args(&["create", "box", "--image", "x", "--", "sh", "-c", "echo --image -n"]);
        assert_eq!(create.command, ["sh", "-c", "echo --image -n"]);
    }

    #[test]
    fn create_parses_every_flag() {
        let create = create_args(&[
            "create",
            "box",
            "--image=alpine",
            "--running=false",
            "-w",
            "/src",
            "-e",
            "A=1",
            "--env",
            "B=",
            "-p",
            "8080:http",
            "--port",
            "22",
            "--cpu",
            "500m",
            "--memory",
            "1Gi",
            "--size",
            "20Gi",
            "--dry-run",
            "-o",
            "json",
        ]);
        assert!(!create.running);
        assert_eq!(create.workdir.as_deref(), Some("/src"));
        assert_eq!(create.env.len(), 2);
        assert_eq!(create.ports, [PortArg { number: 8080, name: Some("http".into()) }, PortArg { number: 22, name: None }]);
        assert_eq!((create.cpu.as_deref(), create.memory.as_deref()), (Some("500m"), Some("1Gi")));
        assert_eq!(create.size.as_deref(), Some("20Gi"));
        assert_eq!(create_args(&["create", "box", "--image", "x"]).size, None, "the cluster's default");
        assert!(create.dry_run);
        assert_eq!(create.output, Some(ManifestFormat::Json));
        assert!(create.command.is_empty());
    }

    #[test]
    fn create_rejects_invalid_input_with_a_useful_message() {
        let cases: [(&[&str], &str); 12] = [
            (&["create", "box"], "--image <IMAGE>"),
            (&["create", "Bad_Name", "--image", "x"], "\"Bad_Name\" is not a valid name"),
            (&["create", "box", "--image", "x", "-e", "FOO"], "\"FOO\" has no '=': expected KEY=VALUE"),
            (&["create", "box", "--image", "x", "-p", "abc"], "\"abc\" is not a port number"),
            (&["create", "box", "--image", "x", "-p", "70000"], "\"70000\" is not a port number"),
            (&["create", "box", "--image", "x", "-p", "80:Web_UI"], "not a valid port name"),
            (&["create", "box", "--image", "x", "--cpu", "lots"], "\"lots\" is not a resource quantity"),
            (&["create", "box", "--image", "x", "--memory", "1GB"], "\"1GB\" is not a resource quantity"),
            (
                &["create", "box", "--image", "x", "--size", "20GB"],
                "invalid value '20GB' for '--size <SIZE>': the rootfs size \"20GB\" is not a Kubernetes quantity (unknown suffix \"GB\"; \
                 use Ki, Mi, Gi, Ti, Pi, Ei, or k, M, G, T, P, E); write it like 10Gi, 512Mi or 20G",
            ),
            (
                &["create", "box", "--image", "x", "--size=32Mi"],
                "invalid value '32Mi' for '--size <SIZE>': the rootfs size \"32Mi\" is 33554432 bytes, below the minimum of 64Mi",
            ),
            (&["create", "box", "--image", "x", "--running=maybe"], "invalid value 'maybe' for '--running"),
            (&["create", "box", "--image", "x", "sleep"], "unexpected argument 'sleep'"),
        ];
        for (args, expected) in cases {
            let message = rejection(args);
            assert!(message.contains(expected), "{args:?}: expected {expected:?} in:\n{message}");
        }
        let too_long = "a".repeat(sc_api::consts::MAX_SC_NAME_LEN + 1);
        assert!(rejection(&["create", &too_long, "--image", "x"]).contains("at most"));
    }

    #[test]
    fn create_parses_the_storage_flags() {
        let create = create_args(&["create", "box", "--image", "x", "--storage", "20Gi", "--storage-class", "fast", "--keep-storage"]);
        assert_eq!(create.storage_flags(), StorageFlags { size: Some("20Gi"), class: Some("fast"), keep: true, rootfs_size: None });
        let node_local = create_args(&["create", "box", "--image", "x", "--size", "5Gi"]);
        assert_eq!(node_local.storage_flags(), StorageFlags { rootfs_size: Some("5Gi"), ..StorageFlags::default() });
        assert_eq!(
            rejection(&["create", "box", "--image", "x", "--storage", "20GB"]).lines().next(),
            Some(
                "error: invalid value '20GB' for '--storage <SIZE>': spec.storage.size: the rootfs size \"20GB\" is not a Kubernetes \
                 quantity (unknown suffix \"GB\"; use Ki, Mi, Gi, Ti, Pi, Ei, or k, M, G, T, P, E); write it like 10Gi, 512Mi or 20G"
            )
        );
        assert!(rejection(&["create", "box", "--image", "x", "--storage"]).contains("a value is required for '--storage <SIZE>'"));
        assert!(
            rejection(&["create", "box", "--image", "x", "--keep-storage=yes"]).contains("unexpected value 'yes' for '--keep-storage'")
        );
    }

    #[test]
    fn global_flags_are_accepted_before_and_after_the_command() {
        let before = parse_ok(&["-n", "team", "--context", "kind", "--kubeconfig", "/k", "list"]);
        let after = parse_ok(&["list", "-n", "team", "--context", "kind", "--kubeconfig", "/k"]);
        for cli in [before, after] {
            assert_eq!(cli.global.namespace.as_deref(), Some("team"));
            assert_eq!(cli.global.context.as_deref(), Some("kind"));
            assert_eq!(cli.global.kubeconfig.as_deref(), Some("/k"));
        }
        assert!(parse_ok(&["get", "-A", "-o", "yaml"]).global.all_namespaces);
        assert!(rejection(&["list", "-n", "Bad_NS"]).contains("not a valid namespace"));
    }

    #[test]
    fn list_has_its_aliases_and_output_formats() {
        for alias in ["list", "ls", "get"] {
            assert!(matches!(parse_ok(&[alias]).command, Command::List(ListArgs { output: OutputFormat::Table })));
        }
        assert!(rejection(&["list", "-o", "wide"]).contains("invalid value 'wide'"));
    }

    #[test]
    fn exec_takes_the_command_with_or_without_double_dash() {
        let exec = |args: &[&str]| match parse_ok(args).command {
            Command::Exec(exec) => exec,
            other => panic!("not exec: {other:?}"),
        };
        let with_dash = exec(&["exec", "box", "-it", "-c", "main", "--", "ls", "-la", "/"]);
        assert!(with_dash.stdin && with_dash.tty);
        assert_eq!(with_dash.container.as_deref(), Some("main"));
        assert_eq!(with_dash.command, ["ls", "-la", "/"]);

        // Without `--`, everything from the first command word on belongs to the command, so
        // its own flags (-i, -t, -c) are not taken as ours.
        let without_dash = exec(&["exec", "box", "ps", "-t", "-i", "-c", "x"]);
        assert!(!without_dash.stdin && !without_dash.tty && without_dash.container.is_none());
        assert_eq!(without_dash.command, ["ps", "-t", "-i", "-c", "x"]);

        // A command that itself starts with a dash still needs `--`.
        assert_eq!(exec(&["exec", "box", "--", "-weird"]).command, ["-weird"]);
        assert!(exec(&["exec", "box", "-i"]).command.is_empty());
    }

    #[test]
    fn diff_takes_path_filters_and_refuses_relative_ones() {
        match parse_ok(&["diff", "box", "/etc/", "/var/./lib", "--stat"]).command {
            Command::Diff(diff) => {
                assert_eq!(diff.paths, [std::path::PathBuf::from("/etc"), std::path::PathBuf::from("/var/lib")]);
                assert!(diff.stat);
                assert_eq!(diff.timeout, Duration::from_secs(180));
            }
            other => panic!("not diff: {other:?}"),
        }
        assert_eq!(
            parse_rootfs_path("etc").expect_err("relative"),
            "\"etc\" is not an absolute path in the root filesystem: write it from /, e.g. /etc"
        );
        assert_eq!(parse_rootfs_path("/etc/../root").expect_err("dotdot"), "\"/etc/../root\" contains \"..\": write the path without it");
    }

    #[test]
    fn lifecycle_commands_have_their_default_timeouts() {
        match parse_ok(&["start", "box", "-w"]).command {
            Command::Start(start) => {
                assert!(start.wait);
                assert_eq!(start.timeout, Duration::from_secs(120));
            }
            other => panic!("not start: {other:?}"),
        }
        match parse_ok(&["stop", "box", "--timeout", "1m30s"]).command {
            Command::Stop(stop) => assert_eq!(stop.timeout, Duration::from_secs(90)),
            other => panic!("not stop: {other:?}"),
        }
        match parse_ok(&["stop", "box"]).command {
            Command::Stop(stop) => assert_eq!(stop.timeout, Duration::from_secs(30)),
            other => panic!("not stop: {other:?}"),
        }
        match parse_ok(&["restart", "box"]).command {
            Command::Restart(restart) => {
                assert_eq!(restart.timeout, Duration::from_secs(120));
                assert_eq!(restart.stop_timeout, Duration::from_secs(30));
            }
            other => panic!("not restart: {other:?}"),
        }
        assert!(rejection(&["start", "box", "--timeout", "soon"]).contains("is not a duration"));
    }

    #[test]
    fn logs_and_delete_flags() {
        match parse_ok(&["logs", "box", "-f", "--tail", "20", "-p", "--timestamps", "-c", "side"]).command {
            Command::Logs(logs) => {
                assert!(logs.follow && logs.previous && logs.timestamps);
                assert_eq!((logs.tail, logs.container.as_deref()), (Some(20), Some("side")));
            }
            other => panic!("not logs: {other:?}"),
        }
        for (alias, args, wait) in [("delete", &[][..], true), ("rm", &["--wait=false"][..], false), ("remove", &["--force"][..], true)] {
            let mut all = vec![alias, "box"];
            all.extend_from_slice(args);
            match parse_ok(&all).command {
                Command::Delete(delete) => assert_eq!(delete.wait, wait, "{all:?}"),
                other => panic!("not delete: {other:?}"),
            }
        }
        assert!(rejection(&["logs", "box", "--tail", "-3"]).contains("invalid value '-3' for '--tail <N>'"));
        match parse_ok(&["logs", "box", "--tail", "-1"]).command {
            Command::Logs(logs) => assert_eq!(logs.tail, Some(-1)),
            other => panic!("not logs: {other:?}"),
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h2m3s"), Ok(Duration::from_secs(3723)));
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        for bad in ["", "m", "5x", "1.5m", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_command_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
