//! `sc-operator run` reconciles StoppableContainers; `sc-operator crd` prints the CRDs.

use std::process::ExitCode;
use std::sync::Arc;

use clap::{CommandFactory, Parser};
use kube::runtime::events::Reporter;
use sc_operator::cli::{Cli, Command, LogFormat, RunArgs};
use sc_operator::settings::PodSettings;
use sc_operator::{controller, http};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => print_crds(),
        Command::Run(args) => match args.pod_settings() {
            Ok(settings) => run(args, settings),
            // Flags that contradict each other: a usage error, like a malformed flag.
            Err(problem) => Cli::command().error(clap::error::ErrorKind::ArgumentConflict, problem).exit(),
        },
    }
}

fn print_crds() -> ExitCode {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    for crd in sc_api::crd::crds() {
        let yaml = match sc_api::crd::crd_yaml(&crd) {
            Ok(yaml) => yaml,
            Err(error) => {
                eprintln!("sc-operator: rendering the CRDs as YAML failed: {error}");
                return ExitCode::FAILURE;
            }
        };
        // A closed pipe (`sc-operator crd | head`) is the reader's choice, not an error to report.
        if write!(stdout, "---\n{yaml}").is_err() {
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

fn run(args: RunArgs, settings: PodSettings) -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,kube=warn".into());
    match args.log_format {
        LogFormat::Json => tracing_subscriber::fmt().json().with_env_filter(filter).init(),
        LogFormat::Plain => tracing_subscriber::fmt().with_env_filter(filter).init(),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "starting the async runtime failed");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let client = match kube::Client::try_default().await {
            Ok(client) => client,
            Err(error) => {
                tracing::error!(%error, "no Kubernetes client: run in a pod with a service account or set KUBECONFIG");
                return ExitCode::FAILURE;
            }
        };
        let health = Arc::new(http::Health::default());
        let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(http::serve(args.listen, health.clone(), async move {
            let _ = http_stopped.await;
        }));
        let reporter = Reporter { controller: sc_api::consts::OPERATOR_FIELD_MANAGER.into(), instance: args.instance_id.clone() };
        let report_namespace = args.report_namespace.clone().unwrap_or_else(|| client.default_namespace().to_owned());
        tracing::info!(rootfs_sizes = %settings.rootfs, %report_namespace, "starting");
        // Returns on SIGTERM/SIGINT, after in-flight reconciles finish.
        controller::run(client, settings, health, args.namespace.clone(), report_namespace, reporter).await;
        let _ = stop_http.send(());
        match server.await {
            Ok(Ok(())) => ExitCode::SUCCESS,
            Ok(Err(error)) => {
                tracing::error!(%error, address = %args.listen, "the health/metrics endpoint failed");
                ExitCode::FAILURE
            }
            Err(error) => {
                tracing::error!(%error, "the health/metrics endpoint panicked");
                ExitCode::FAILURE
            }
        }
    })
}
