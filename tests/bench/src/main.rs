//! `sc-bench`: StoppableContainer's cluster benchmark. Every figure is a ratio against a plain
//! pod (or the empty rootfs) measured side by side in the same run, on the same node: absolute
//! times on a shared 2-core machine mean little, ratios do. Run it through `tests/e2e/bench.sh`,
//! which starts the cluster, installs the product and runs this on the node, as root.

mod cluster;
mod cold;
mod error;
mod host;
mod io;
mod measure;
mod observe;
mod paired;
mod plugin_log;
mod report;
mod scale;
mod starts;
mod stats;
mod storage;
mod subjects;
mod timeline;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};

use crate::cluster::{Cluster, Settings};
use crate::error::BenchError;
use crate::report::{Target, summary_table};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Section {
    /// 1-3: resume latency, diff-size independence, stop latency
    Resume,
    /// 4: first start
    FirstStart,
    /// 5: I/O inside the rootfs
    Io,
    /// 6: density and memory footprint
    Density,
    /// 7: concurrent stop/start churn
    Churn,
    /// 8: resume of a StoppableContainer on a claim (spec.storage)
    Storage,
    /// 9: start of a stopped StoppableContainer whose provider pod was deleted
    Cold,
}

#[derive(Debug, Parser)]
#[command(version, about = "StoppableContainer's cluster benchmark: each figure side by side with a plain pod")]
struct Args {
    /// Sections to run (comma-separated); all by default.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Section::Resume, Section::FirstStart, Section::Io, Section::Density, Section::Churn, Section::Storage, Section::Cold])]
    sections: Vec<Section>,
    /// Measured rounds of sections 1-3, 8 and 9 (median and p90 are taken over them).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..))]
    rounds: u16,
    /// Measured rounds of section 4 (each creates and deletes a StoppableContainer: slower).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..))]
    first_start_rounds: u16,
    /// Repeats of each I/O operation on each side (about 40 s each on these machines).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    io_repeats: u16,
    /// StoppableContainers started together in the density section.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u16).range(1..=100))]
    density: u16,
    /// StoppableContainers churned concurrently.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=100))]
    churn: u16,
    /// Stop/start cycles of each churned StoppableContainer.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..))]
    cycles: u16,
    /// The image of both sides (must be on the node: nothing is pulled).
    #[arg(long, default_value = "sc-test/debian:bookworm")]
    image: String,
    /// The namespace the benchmark creates, uses and deletes.
    #[arg(long, default_value = "sc-bench")]
    namespace: String,
    /// Where the chart installed the operator and the node plugin.
    #[arg(long, default_value = "stoppablecontainer-system")]
    product_namespace: String,
    /// The node plugin's data root on this node.
    #[arg(long, default_value = sc_api::consts::DEFAULT_DATA_ROOT)]
    data_root: String,
    /// kubectl for `kubectl exec`.
    #[arg(long, default_value = "kubectl")]
    kubectl: String,
    /// Seconds one pod may take to start or stop before the measurement fails.
    #[arg(long, default_value_t = 180)]
    timeout_seconds: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("sc-bench: {error}");
            ExitCode::from(2)
        }
    }
}

/// Ok(false) when the product misbehaved (errors, leaks, lost data); a missed speed or memory
/// target is reported, not a failure: these are measurements, not assertions.
async fn run(args: Args) -> Result<bool, BenchError> {
    let began = Instant::now();
    let settings = Settings {
        namespace: args.namespace.clone(),
        image: args.image.clone(),
        product_namespace: args.product_namespace.clone(),
        data_root: args.data_root.clone(),
        kubectl: args.kubectl.clone(),
        timeout: Duration::from_secs(args.timeout_seconds),
    };
    println!("StoppableContainer cluster benchmark, sc-bench {}", env!("CARGO_PKG_VERSION"));
    println!("machine: {}", host::machine());
    let cluster = Cluster::connect(settings).await?;
    let rounds = usize::from(args.rounds);
    let mut targets: Vec<Target> = Vec::new();
    let mut healthy = true;
    for section in &args.sections {
        cluster.pod_watch.clear_history();
        cluster.sc_watch.clear_history();
        let outcome = match section {
            Section::Resume => starts::resume_and_stop(&cluster, rounds).await.map(|figures| figures.targets),
            Section::FirstStart => starts::first_start(&cluster, usize::from(args.first_start_rounds)).await.map(|figures| figures.targets),
            Section::Io => io::io(&cluster, usize::from(args.io_repeats)).await,
            Section::Density => scale::density(&cluster, usize::from(args.density)).await,
            Section::Storage => storage::resume_on_claim(&cluster, rounds).await,
            Section::Cold => cold::start_without_provider(&cluster, rounds).await,
            Section::Churn => scale::churn(&cluster, usize::from(args.churn), usize::from(args.cycles)).await.map(|figures| {
                healthy &= figures.failures == 0;
                figures.targets
            }),
        };
        match outcome {
            Ok(section_targets) => targets.extend(section_targets),
            Err(error) => {
                // One section's failure is reported and the others still run, after a clean-up.
                println!("\n  section {section:?} FAILED: {error}");
                healthy = false;
                if let Err(cleanup) = cluster.delete_everything().await {
                    println!("  and cleaning up after it failed: {cleanup}; stopping here");
                    break;
                }
            }
        }
    }
    println!("\n== Summary ({:.1} min)", began.elapsed().as_secs_f64() / 60.0);
    println!("{}", summary_table(&targets));
    cluster.remove_namespace().await?;
    Ok(healthy)
}
