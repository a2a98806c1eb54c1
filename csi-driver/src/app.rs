//! Start-up: flags, the host mount namespace, the Kubernetes client, recovery, and the gRPC
//! servers until SIGTERM.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use sc_api::consts::CSI_DRIVER_NAME;
use sc_proto::csi::{identity_server::IdentityServer, node_server::NodeServer};
use sc_proto::registration::registration_server::RegistrationServer;
use tracing::{info, warn};

use crate::cgroup::{self, CGROUP_MOUNT_ROOT, KubeletCgroups};
use crate::cluster::{ClusterView, KubeClusterView, StaticClusterView};
use crate::layout::DataRoot;
use crate::node::{NodeCore, NodeSettings, RootfsSettings};
use crate::prepare::{HelperStage, SERVICE_ACCOUNT_DIR};
use crate::quota::RootfsSize;
use crate::registration::{RegistrationService, registration_socket_name};
use crate::server::{IdentityService, NodeService};
use crate::sys::{RealSystem, enter_mount_namespace, is_cgroup_unified};
use crate::validate::TargetPolicy;
use crate::{cleanup, socket, usage};

/// What the binary was started as: the plugin, or (started by the plugin itself) one of its
/// prepare helper's stages. One parser for both: the stages are hidden subcommands, and plugin
/// flags and a stage exclude each other.
#[derive(Debug)]
pub enum Invocation {
    /// Boxed: the plugin's flags are many, a stage's few.
    Plugin(Box<Args>),
    Helper(HelperStage),
}

impl CommandFactory for Invocation {
    fn command() -> clap::Command {
        let command = clap::Command::new("sc-csi-driver")
            .version(env!("CARGO_PKG_VERSION"))
            .args_conflicts_with_subcommands(true)
            .subcommand_negates_reqs(true);
        // The plugin's flags last: their doc comment is the command's `about`.
        <Args as clap::Args>::augment_args(HelperStage::augment_subcommands(command))
    }

    fn command_for_update() -> clap::Command {
        Self::command()
    }
}

impl FromArgMatches for Invocation {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        match matches.subcommand_name() {
            Some(_) => HelperStage::from_arg_matches(matches).map(Invocation::Helper),
            None => Args::from_arg_matches(matches).map(|args| Invocation::Plugin(Box::new(args))),
        }
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl Parser for Invocation {}

/// StoppableContainer CSI node plugin: mounts each consumer's persistent root filesystem.
#[derive(Debug, Parser)]
#[command(name = "sc-csi-driver", version)]
pub struct Args {
    /// CSI endpoint to serve on, as a path valid in the mount namespace the plugin ends up in.
    #[arg(long, env = "CSI_ENDPOINT", default_value_t = default_endpoint())]
    pub endpoint: String,
    /// This node's Kubernetes name (NodeGetInfo's node id; providers must run here).
    #[arg(long, env = "NODE_NAME")]
    pub node_id: String,
    /// Directory holding every StoppableContainer's persistent data on this node.
    #[arg(long, env = "SC_DATA_ROOT", default_value = sc_api::consts::DEFAULT_DATA_ROOT)]
    pub data_root: PathBuf,
    /// Kubelet's root directory; volumes are only ever mounted below `<kubelet-dir>/pods`.
    #[arg(long, default_value = DEFAULT_KUBELET_DIR)]
    pub kubelet_dir: PathBuf,
    /// Enter this mount namespace (the host's: /proc/1/ns/mnt with hostPID) before anything else,
    /// so mounts outlive the plugin's container and see the runtime's rootfs mounts.
    #[arg(long)]
    pub host_mount_namespace: Option<PathBuf>,
    /// Register with kubelet through <kubelet-dir>/plugins_registry (for clusters without the
    /// node-driver-registrar sidecar).
    #[arg(long)]
    pub register_with_kubelet: bool,
    /// Kubelet's --cgroup-root: the cgroup (in every hierarchy) that holds `kubepods` or
    /// `kubepods.slice`. The provider's processes are looked up in its container's cgroup
    /// directory below it, falling back to scanning every process.
    #[arg(long, default_value = "/")]
    pub kubelet_cgroup_root: PathBuf,
    /// How long NodePublishVolume waits for a provider that is still starting.
    #[arg(long, default_value_t = 60)]
    pub provider_wait_seconds: u64,
    /// Namespace of the per-node ConfigMaps in which the plugin reports deleted data to the
    /// operator: the release namespace (the chart sets it from the downward API). Default: the
    /// client's namespace (in a pod, its service account's).
    #[arg(long, env = "POD_NAMESPACE")]
    pub report_namespace: Option<String>,
    /// How often the plugin looks for orphaned StoppableContainer data (and prunes its reports).
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
    pub orphan_sweep_interval_seconds: u64,
    /// How long data must be seen orphaned (its StoppableContainer gone) by this plugin process
    /// before it is deleted; 0 never deletes orphaned data.
    #[arg(long, default_value_t = 3600)]
    pub orphan_grace_seconds: u64,
    /// How often the plugin measures the own filesystem of every StoppableContainer published
    /// here and reports what changed to the operator (a ConfigMap per node, next to the data
    /// reports), for the SCs' status.rootfs; publishes and unpublishes report at once. 0 turns
    /// the reports off.
    #[arg(long, default_value_t = 60)]
    pub rootfs_usage_interval_seconds: u64,
    /// mkfs.ext4, which makes each StoppableContainer's size-limited filesystem (e2fsck and
    /// resize2fs, for a grow, are taken from the same directory). Default: /usr/sbin/mkfs.ext4,
    /// else /sbin/mkfs.ext4, of the node (the plugin runs them in the host mount namespace).
    #[arg(long = crate::quota::MKFS_FLAG)]
    pub mkfs_ext4: Option<PathBuf>,
    /// The size of a rootfs whose StoppableContainerInstance names none (one made by an earlier
    /// operator; the operator's --default-rootfs-size applies to every other).
    #[arg(long, default_value = "10Gi", value_parser = parse_rootfs_size)]
    pub default_rootfs_size: RootfsSize,
    /// The largest rootfs this node makes, whatever an instance asks for (the operator enforces
    /// the cluster's maximum; this bounds this node's disk).
    #[arg(long, default_value = "100Gi", value_parser = parse_rootfs_size)]
    pub max_rootfs_size: RootfsSize,
    /// The container runtime's CRI socket (`unix:///run/containerd/containerd.sock` or a plain
    /// path), which the plugin asks for the config (ENTRYPOINT, CMD, ENV, USER, WORKDIR) of each
    /// provider's image. Empty: the first that exists of /run/containerd/containerd.sock,
    /// /run/k3s/containerd/containerd.sock, /var/run/crio/crio.sock, /run/crio/crio.sock and
    /// /var/run/cri-dockerd.sock. A path in the host mount namespace.
    #[arg(long = "runtime-endpoint", default_value = "")]
    pub runtime_endpoint: String,
    /// Answer cluster questions from this JSON file instead of the API server (tests and
    /// benchmarks without a cluster; disables the data cleanup and the orphan sweep).
    #[arg(long)]
    pub static_cluster: Option<PathBuf>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Plain, env = "SC_LOG_FORMAT")]
    pub log_format: LogFormat,
}

/// Kubelet's default `--root-dir`.
const DEFAULT_KUBELET_DIR: &str = "/var/lib/kubelet";

/// Where kubelet expects a CSI driver's socket by default: its plugin directory, named after the
/// driver.
fn default_endpoint() -> String {
    format!("unix://{DEFAULT_KUBELET_DIR}/plugins/{CSI_DRIVER_NAME}/csi.sock")
}

fn parse_rootfs_size(text: &str) -> Result<RootfsSize, String> {
    crate::quota::parse_size(text).map_err(|error| error.to_string())
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    Plain,
    Json,
}

/// Why the plugin could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Endpoint(#[from] socket::EndpointError),
    #[error("entering the mount namespace {path}: {source}; the plugin needs privileges and hostPID")]
    MountNamespace { path: PathBuf, source: std::io::Error },
    #[error("building the Kubernetes client: {0}; set KUBECONFIG or run in a pod")]
    InClusterConfig(#[source] kube::config::InClusterError),
    #[error("building the Kubernetes client: opening {path}: {source}; set KUBECONFIG or run in a pod")]
    ServiceAccountDir { path: &'static str, source: std::io::Error },
    #[error("building the Kubernetes client: {0}; set KUBECONFIG or run in a pod")]
    InferConfig(#[source] kube::config::InferConfigError),
    #[error("building the Kubernetes client: {0}; set KUBECONFIG or run in a pod")]
    Client(#[source] kube::Error),
    #[error("listening on {path}: {source}")]
    Listen { path: PathBuf, source: std::io::Error },
    #[error("start-up recovery: {0}")]
    Recovery(#[from] crate::node::IoError),
    #[error("gRPC server: {0}")]
    Serve(#[from] tonic::transport::Error),
    #[error("starting the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("{0}")]
    Settings(String),
}

pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Plain => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Runs the plugin until SIGTERM/SIGINT. Synchronous on purpose: the mount namespace must be
/// entered before the async runtime starts its threads.
pub fn run(args: Args) -> Result<(), StartError> {
    let endpoint = socket::endpoint_path(&args.endpoint)?;
    // In a pod, the service-account files live in the container's filesystem, which the host
    // mount namespace cannot see: read the in-cluster config now and keep a handle on the
    // service-account directory to re-read the (rotating) token and the CA through it. A handle
    // on the container's root would not do: once in another mount namespace, a path walk from it
    // does not cross into mounts of the container's namespace (the token directory is one).
    let in_cluster = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() && args.static_cluster.is_none();
    let mut kube_config = None;
    let mut _token_dir: Option<OwnedFd> = None;
    if let Some(namespace) = &args.host_mount_namespace {
        if in_cluster {
            let mut config = kube::Config::incluster().map_err(StartError::InClusterConfig)?;
            let token_dir = open_directory(SERVICE_ACCOUNT_DIR)
                .map_err(|source| StartError::ServiceAccountDir { path: SERVICE_ACCOUNT_DIR, source })?;
            config.auth_info.token_file = Some(format!("/proc/self/fd/{}/token", token_dir.as_raw_fd()));
            // kube re-reads the CA bundle from this file (it takes precedence over root_cert).
            config.root_cert_file = Some(format!("/proc/self/fd/{}/ca.crt", token_dir.as_raw_fd()).into());
            kube_config = Some(config);
            _token_dir = Some(token_dir);
        }
        enter_mount_namespace(namespace).map_err(|source| StartError::MountNamespace { path: namespace.clone(), source })?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(StartError::Runtime)?;
    runtime.block_on(serve(args, endpoint, kube_config))
}

fn open_directory(path: &str) -> std::io::Result<OwnedFd> {
    use nix::fcntl::{OFlag, open};
    use nix::sys::stat::Mode;
    open(path, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()).map_err(std::io::Error::from)
}

async fn serve(args: Args, endpoint: PathBuf, kube_config: Option<kube::Config>) -> Result<(), StartError> {
    let settings = NodeSettings {
        data_root: DataRoot::new(&args.data_root),
        kubelet_dir: args.kubelet_dir.clone(),
        provider_wait: Duration::from_secs(args.provider_wait_seconds),
        // Each look is one GET of the provider pod; every poll interval a start waits on a
        // provider adds half of it on average to the start (the benchmark's publish step).
        provider_poll: Duration::from_millis(100),
        // Read after entering the host mount namespace: the host's cgroup mounts, not the pod's.
        kubelet_cgroups: KubeletCgroups {
            hierarchies: cgroup::hierarchies(Path::new(CGROUP_MOUNT_ROOT), is_cgroup_unified(Path::new(CGROUP_MOUNT_ROOT))),
            root: args.kubelet_cgroup_root.clone(),
        },
        rootfs: rootfs_settings(&args)?,
        images: crate::cri::ImageConfigReader::new(runtime_endpoint(&args)?),
        runtime: std::sync::Arc::new(crate::runtime_containers::CriContainerRuntime::new(runtime_endpoint(&args)?)),
    };
    match &args.static_cluster {
        Some(path) => serve_with(&args, endpoint, StaticClusterView::new(path.clone(), args.node_id.clone()), settings, None).await,
        None => {
            let config = match kube_config {
                Some(config) => config,
                None => kube::Config::infer().await.map_err(StartError::InferConfig)?,
            };
            let client = kube::Client::try_from(config).map_err(StartError::Client)?;
            let cluster = KubeClusterView::new(client.clone(), args.node_id.clone());
            serve_with(&args, endpoint, cluster, settings, Some(client)).await
        }
    }
}

/// The container runtime's socket from `--runtime-endpoint`; says at start-up which one is used
/// (read after entering the host mount namespace: the node's sockets, not the pod's).
fn runtime_endpoint(args: &Args) -> Result<crate::cri::RuntimeEndpoint, StartError> {
    use crate::cri::RuntimeEndpoint;
    let endpoint = RuntimeEndpoint::parse(&args.runtime_endpoint).map_err(StartError::Settings)?;
    match (&endpoint, endpoint.socket()) {
        (RuntimeEndpoint::Socket(socket), _) => {
            info!(socket = %socket.display(), "reading image configs from the container runtime at this socket")
        }
        (RuntimeEndpoint::Detect, Ok(socket)) => {
            info!(socket = %socket.display(), "found the container runtime's socket; reading image configs from it")
        }
        (RuntimeEndpoint::Detect, Err(problem)) => {
            warn!(%problem, "no container runtime socket yet: images have no config until one appears (it is looked for at every publish)")
        }
    }
    Ok(endpoint)
}

/// The rootfs sizes and the e2fsprogs of this node. Tools that are missing are not fatal: a
/// rootfs made before size limits still works, and a new one fails with the reason.
fn rootfs_settings(args: &Args) -> Result<RootfsSettings, StartError> {
    if args.default_rootfs_size > args.max_rootfs_size {
        return Err(StartError::Settings(format!(
            "--default-rootfs-size {} is more than --max-rootfs-size {}",
            args.default_rootfs_size, args.max_rootfs_size
        )));
    }
    let tools = crate::quota::resolve_e2fsprogs(&crate::quota::RealLoopSystem::default(), args.mkfs_ext4.as_deref())
        .map_err(|error| error.to_string());
    if let Err(problem) = &tools {
        warn!(%problem, "no size-limited root filesystems can be made on this node");
    }
    Ok(RootfsSettings { tools, default_size: args.default_rootfs_size, max_size: args.max_rootfs_size })
}

async fn serve_with<C: ClusterView>(
    args: &Args,
    endpoint: PathBuf,
    cluster: C,
    settings: NodeSettings,
    client: Option<kube::Client>,
) -> Result<(), StartError> {
    let core = Arc::new(NodeCore::new(cluster, RealSystem::default(), settings));
    let ready = Arc::new(AtomicBool::new(false));
    let listen = |path: &PathBuf| socket::bind(path).map_err(|source| StartError::Listen { path: path.clone(), source });
    let csi_listener = listen(&endpoint)?;
    info!(endpoint = %endpoint.display(), node = %args.node_id, data_root = %args.data_root.display(), "serving CSI");

    let live = core.recover().await?;
    ready.store(true, Ordering::Release);
    info!(live_volumes = live, "start-up recovery done; ready");

    if let Some(client) = client {
        let settings = cleanup::CleanupSettings {
            node_name: args.node_id.clone(),
            report_namespace: args.report_namespace.clone().unwrap_or_else(|| client.default_namespace().to_owned()),
            sweep_interval: Duration::from_secs(args.orphan_sweep_interval_seconds),
            orphan_grace: cleanup::orphan_grace(args.orphan_grace_seconds),
        };
        match usage::usage_interval(args.rootfs_usage_interval_seconds) {
            Some(interval) => {
                let reporting =
                    usage::UsageSettings { node_name: settings.node_name.clone(), namespace: settings.report_namespace.clone(), interval };
                tokio::spawn(usage::run(client.clone(), Arc::clone(&core), reporting));
            }
            None => info!("rootfs usage reports are off (--rootfs-usage-interval-seconds 0)"),
        }
        tokio::spawn(cleanup::run(client, Arc::clone(&core), settings));
    }
    let shutdown = shutdown_signal();
    let shutdown_for_drain = shutdown.clone();
    let csi = tonic::transport::Server::builder()
        .add_service(IdentityServer::new(IdentityService { ready: Arc::clone(&ready) }))
        .add_service(NodeServer::new(NodeService {
            core,
            node_id: args.node_id.clone(),
            policy: TargetPolicy { kubelet_dir: args.kubelet_dir.clone() },
        }))
        .serve_with_incoming_shutdown(crate::transport::authority::incoming(csi_listener), shutdown.clone());
    if args.register_with_kubelet {
        let path = args.kubelet_dir.join("plugins_registry").join(registration_socket_name());
        let registration_listener = listen(&path)?;
        info!(socket = %path.display(), "registering with kubelet");
        let registration = tonic::transport::Server::builder()
            .add_service(RegistrationServer::new(RegistrationService { csi_endpoint_path: endpoint.display().to_string() }))
            .serve_with_incoming_shutdown(crate::transport::authority::incoming(registration_listener), shutdown);
        let (csi, registration) =
            bounded_drain(async { tokio::join!(csi, registration) }, shutdown_for_drain).await.unwrap_or((Ok(()), Ok(())));
        // Unregister: kubelet drops the plugin when its socket disappears.
        if let Err(error) = std::fs::remove_file(&path) {
            warn!(socket = %path.display(), %error, "could not remove the registration socket");
        }
        csi?;
        registration?;
    } else {
        bounded_drain(csi, shutdown_for_drain).await.unwrap_or(Ok(()))?;
    }
    info!("stopped");
    Ok(())
}

/// How long in-flight calls may take to finish after SIGTERM before the plugin exits anyway
/// (kubelet retries whatever was cut off; every RPC is idempotent).
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs `servers` to completion, but gives up `DRAIN_TIMEOUT` after `shutdown` fired: a client
/// keeping an idle connection open must not keep the plugin alive forever.
async fn bounded_drain<T>(servers: impl std::future::Future<Output = T>, shutdown: impl std::future::Future<Output = ()>) -> Option<T> {
    tokio::select! {
        result = servers => Some(result),
        () = async { shutdown.await; tokio::time::sleep(DRAIN_TIMEOUT).await } => {
            warn!("in-flight calls did not finish in time after the shutdown signal; exiting");
            None
        }
    }
}

/// Resolves on the first SIGTERM or SIGINT; cloneable so every server stops on the same signal.
fn shutdown_signal() -> futures::future::Shared<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>> {
    use futures::FutureExt;
    let signal: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> = Box::pin(async {
        use tokio::signal::unix::{SignalKind, signal};
        match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
            }
            _ => std::future::pending::<()>().await,
        }
        info!("shutting down");
    });
    signal.shared()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prepare::{HELPER_SUBCOMMAND, HelperArgs, IN_NAMESPACES_SUBCOMMAND};

    const POD_UID: &str = "6d1c2b7e-43a1-4e5e-9d63-0c5a3f1b2e7d";

    #[test]
    fn helper_stages_are_hidden_subcommands_whose_arguments_round_trip() {
        for subcommand in [HELPER_SUBCOMMAND, IN_NAMESPACES_SUBCOMMAND] {
            for parent_pid in [None, Some(4242)] {
                let args = HelperArgs { pid: 7, pod_uid: POD_UID.into(), pod: "ns/dev".into(), parent_pid };
                // What the control socket (stage 1) and stage 1 (stage 2) run.
                let argv = ["sc-csi-driver".to_owned(), subcommand.to_owned()].into_iter().chain(args.to_args());
                let invocation = Invocation::try_parse_from(argv).expect("parses");
                let Invocation::Helper(stage) = &invocation else { panic!("{subcommand} parsed as {invocation:?}") };
                let again = Invocation::try_parse_from(std::iter::once("sc-csi-driver".to_owned()).chain(stage.to_args())).expect("parses");
                assert!(matches!(&again, Invocation::Helper(same) if same == stage), "{again:?}");
                let parsed = match invocation {
                    Invocation::Helper(HelperStage::EnterPidNamespace(parsed)) if subcommand == HELPER_SUBCOMMAND => parsed,
                    Invocation::Helper(HelperStage::PrepareInNamespaces(parsed)) if subcommand == IN_NAMESPACES_SUBCOMMAND => parsed,
                    other => panic!("{subcommand} parsed as {other:?}"),
                };
                assert_eq!(
                    (parsed.pid, parsed.pod_uid, parsed.pod, parsed.parent_pid),
                    (7, POD_UID.to_owned(), "ns/dev".to_owned(), parent_pid)
                );
            }
        }
        let help = Invocation::command().render_help().to_string();
        assert!(help.starts_with("StoppableContainer CSI node plugin"), "{help}");
        assert!(!help.contains("__prepare") && help.contains("--node-id"), "{help}");
    }

    #[test]
    fn start_errors_keep_their_cause_and_say_what_to_do() {
        let error = StartError::from(socket::endpoint_path("tcp://10.0.0.1:1").expect_err("not a unix socket"));
        assert_eq!(error.to_string(), r#"endpoint "tcp://10.0.0.1:1" must be a unix socket URL like unix:///csi/csi.sock"#);
        let error = StartError::ServiceAccountDir { path: SERVICE_ACCOUNT_DIR, source: std::io::ErrorKind::NotFound.into() };
        let message = error.to_string();
        assert!(
            message.starts_with("building the Kubernetes client: opening /var/run/secrets/kubernetes.io/serviceaccount: "),
            "{message}"
        );
        assert!(message.ends_with("; set KUBECONFIG or run in a pod"), "{message}");
        assert!(std::error::Error::source(&error).is_some(), "the I/O error is kept as the source");
    }

    #[test]
    fn without_a_stage_the_binary_is_the_plugin_and_plugin_flags_exclude_a_stage() {
        let Invocation::Plugin(args) = Invocation::try_parse_from(["sc-csi-driver", "--node-id", "node-1"]).expect("parses") else {
            panic!("not the plugin")
        };
        assert_eq!(args.node_id, "node-1");
        // Where kubelet (and the chart's default kubelet dir) looks for this driver.
        assert_eq!(args.endpoint, "unix:///var/lib/kubelet/plugins/rootfs.stoppablecontainer.xtlsoft.top/csi.sock");
        assert_eq!(args.kubelet_dir, Path::new("/var/lib/kubelet"));
        let mixed = ["sc-csi-driver", "--node-id", "node-1", HELPER_SUBCOMMAND, "--pid", "7", "--pod-uid", POD_UID, "--pod", "ns/dev"];
        let error = Invocation::try_parse_from(mixed).expect_err("plugin flags and a stage");
        assert_eq!(error.kind(), clap::error::ErrorKind::ArgumentConflict, "{error}");
        let error = Invocation::try_parse_from(["sc-csi-driver", HELPER_SUBCOMMAND, "--pid", "7"]).expect_err("a stage lacks its flags");
        assert_eq!(error.kind(), clap::error::ErrorKind::MissingRequiredArgument, "{error}");
    }

    #[test]
    fn the_charts_empty_runtime_endpoint_means_detect_and_a_path_is_taken_as_it_is() {
        // The chart always passes the flag, empty by default.
        let args = Args::try_parse_from(["sc-csi-driver", "--node-id", "node-1", "--runtime-endpoint="]).expect("parses");
        assert_eq!(runtime_endpoint(&args).expect("valid"), crate::cri::RuntimeEndpoint::Detect);
        let args = Args::try_parse_from(["sc-csi-driver", "--node-id", "node-1"]).expect("parses");
        assert_eq!(runtime_endpoint(&args).expect("valid"), crate::cri::RuntimeEndpoint::Detect);
        let args = Args::try_parse_from(["sc-csi-driver", "--node-id", "node-1", "--runtime-endpoint", "unix:///run/k0s/containerd.sock"])
            .expect("parses");
        assert_eq!(runtime_endpoint(&args).expect("valid"), crate::cri::RuntimeEndpoint::Socket("/run/k0s/containerd.sock".into()));
        let args =
            Args::try_parse_from(["sc-csi-driver", "--node-id", "node-1", "--runtime-endpoint", "tcp://10.0.0.1:1"]).expect("parses");
        let error = runtime_endpoint(&args).expect_err("not a socket").to_string();
        assert!(error.starts_with("--runtime-endpoint \"tcp://10.0.0.1:1\" is neither"), "{error}");
    }
}
