//! Sections 6 and 7: many StoppableContainers at once. Density: N started together, the time
//! until all run and the peak memory of the operator and the node plugin. Churn: N each stopped
//! and started M times concurrently, checking that nothing fails, nothing stays mounted and no
//! data is lost.

use std::time::{Duration, SystemTime};

use futures::future::join_all;

use crate::cluster::{Cluster, OPERATOR_CONTAINER, PLUGIN_CONTAINER};
use crate::error::BenchError;
use crate::host;
use crate::report::{Target, mib, table};
use crate::stats::{format_ratio, ratio, seconds};
use crate::subjects::{container_id, sc_phase, sc_workload_ready};

/// The long-running process of the product's container, by its container name.
async fn product_process(cluster: &Cluster, container: &str) -> Result<i32, BenchError> {
    let pod = cluster.product_pod_object(container).await?;
    let id = container_id(&pod, container).ok_or_else(|| BenchError::Setup(format!("the {container} container has no ID yet")))?;
    host::container_pids(&id)?
        .first()
        .copied()
        .ok_or_else(|| BenchError::Setup(format!("no process of the {container} container on this node")))
}

pub async fn density(cluster: &Cluster, count: usize) -> Result<Vec<Target>, BenchError> {
    println!("\n== 6. Density: {count} StoppableContainers started together, vs {count} plain pods");
    let operator = product_process(cluster, OPERATOR_CONTAINER).await?;
    let plugin = product_process(cluster, PLUGIN_CONTAINER).await?;
    let before = (host::peak_rss_kib(operator)?, host::peak_rss_kib(plugin)?);
    host::reset_peak_rss(operator)?;
    host::reset_peak_rss(plugin)?;
    let names: Vec<String> = (0..count).map(|index| format!("dense-{index:02}")).collect();
    let timeout = cluster.settings.timeout * 10;

    let started = SystemTime::now();
    for result in join_all(names.iter().map(|name| cluster.create_sc(name, true))).await {
        result?;
    }
    let pods_ready = cluster
        .pod_watch
        .wait(&format!("all {count} consumer pods to be Ready"), timeout, |pods| names.iter().all(|name| sc_workload_ready(pods, name)))
        .await
        .map_err(|error| BenchError::Setup(format!("{error} (pods now: {})", cluster.describe_pods())))?;
    let phases_running = cluster
        .sc_watch
        .wait(&format!("all {count} StoppableContainers to report phase Running"), timeout, |scs| {
            names.iter().all(|name| scs.get(name).is_some_and(|sc| sc_phase(sc) == Some(sc_api::Phase::Running)))
        })
        .await?;
    let sc_elapsed = pods_ready.max(phases_running).duration_since(started).unwrap_or_default();
    let peaks = (host::peak_rss_kib(operator)?, host::peak_rss_kib(plugin)?);
    cluster.delete_scs(&names).await?;

    let plain: Vec<String> = (0..count).map(|index| format!("dense-plain-{index:02}")).collect();
    let started = SystemTime::now();
    for result in join_all(plain.iter().map(|name| cluster.create_pod(name))).await {
        result?;
    }
    let ready = cluster
        .pod_watch
        .wait(&format!("all {count} plain pods to be Ready"), timeout, |pods| {
            plain.iter().all(|name| pods.get(name).is_some_and(|pod| crate::subjects::is_ready(pod)))
        })
        .await?;
    let plain_elapsed = ready.duration_since(started).unwrap_or_default();
    cluster.delete_pods(&plain).await?;
    cluster.wait_pods_gone(&plain).await?;

    let value = ratio(sc_elapsed, plain_elapsed);
    println!(
        "{}",
        table(
            &["", "time until all Running", "ratio"],
            &[
                vec![format!("{count} plain pods"), seconds(plain_elapsed), String::new()],
                vec![format!("{count} StoppableContainers"), seconds(sc_elapsed), format_ratio(value)]
            ]
        )
    );
    println!(
        "{}",
        table(
            &["peak RSS (VmHWM)", "before (lifetime)", "while starting the SCs"],
            &[vec!["operator".into(), mib(before.0), mib(peaks.0)], vec!["node plugin".into(), mib(before.1), mib(peaks.1)]]
        )
    );
    Ok(vec![
        Target::informative(
            &format!("6. {count} SCs all Running / {count} plain pods Ready"),
            format!("{} ({} vs {})", format_ratio(value), seconds(sc_elapsed), seconds(plain_elapsed)),
        ),
        Target::below_mib(&format!("6. operator peak RSS, {count} SCs"), Some(peaks.0.max(before.0)), 64),
        Target::below_mib(&format!("6. node plugin peak RSS, {count} SCs"), Some(peaks.1.max(before.1)), 32),
    ])
}

/// What went wrong in one SC's cycles.
struct ChurnOutcome {
    errors: Vec<String>,
    cycles_done: usize,
}

fn marker_of(name: &str) -> String {
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_nanos();
    format!("{name}-{nanos}")
}

/// The lines a churned SC's log file must hold after `cycles` cycles.
pub fn expected_cycle_log(cycles: usize) -> String {
    (1..=cycles).map(|cycle| format!("cycle-{cycle}\n")).collect()
}

async fn churn_one(cluster: &Cluster, name: &str, marker: &str, cycles: usize) -> ChurnOutcome {
    let mut outcome = ChurnOutcome { errors: Vec::new(), cycles_done: 0 };
    for cycle in 1..=cycles {
        let result: Result<(), BenchError> = async {
            cluster.set_running(name, false).await?;
            cluster.wait_sc_stopped(name).await?;
            cluster.set_running(name, true).await?;
            cluster.wait_sc_ready(name).await?;
            // Read the marker and append this cycle's line: both must survive every later stop.
            let seen = cluster.exec(name, &format!("cat /bench-marker && echo cycle-{cycle} >> /bench-cycles")).await?;
            if seen.trim() != marker {
                return Err(BenchError::Output { what: format!("{name}: the marker after cycle {cycle}"), output: seen });
            }
            Ok(())
        }
        .await;
        match result {
            Ok(()) => outcome.cycles_done += 1,
            Err(error) => outcome.errors.push(format!("{name} cycle {cycle}: {error}")),
        }
    }
    outcome
}

/// The product's mounts on the node, its publication records and its control directories.
fn leftovers(data_root: &str) -> Result<Vec<String>, BenchError> {
    let root = std::path::Path::new(data_root);
    let mut found = host::mounts_left(data_root)?;
    found.extend(host::entries(&root.join("publications"))?.into_iter().map(|record| format!("record {record}")));
    found.extend(host::entries(&root.join("control"))?.into_iter().map(|dir| format!("control directory {dir}")));
    Ok(found)
}

pub struct ChurnFigures {
    pub targets: Vec<Target>,
    /// Errors, leaks or lost data: the product misbehaved (the run fails).
    pub failures: usize,
}

pub async fn churn(cluster: &Cluster, count: usize, cycles: usize) -> Result<ChurnFigures, BenchError> {
    println!("\n== 7. Churn: {count} StoppableContainers, each stopped and started {cycles} times, all concurrently");
    let names: Vec<String> = (0..count).map(|index| format!("churn-{index:02}")).collect();
    for result in join_all(names.iter().map(|name| cluster.create_sc(name, true))).await {
        result?;
    }
    let timeout = cluster.settings.timeout * 10;
    cluster
        .pod_watch
        .wait(&format!("all {count} churn workloads to be Ready"), timeout, |pods| names.iter().all(|name| sc_workload_ready(pods, name)))
        .await?;
    let markers: Vec<String> = names.iter().map(|name| marker_of(name)).collect();
    for (name, marker) in names.iter().zip(&markers) {
        cluster.exec(name, &format!("echo {marker} > /bench-marker && sync")).await?;
    }

    // What the product has on the node before the churn (other namespaces' running
    // StoppableContainers): only what the churn adds and leaves is a leak.
    let before = leftovers(&cluster.settings.data_root)?;
    let started = SystemTime::now();
    let outcomes = join_all(names.iter().zip(&markers).map(|(name, marker)| churn_one(cluster, name, marker, cycles))).await;
    let elapsed = started.elapsed().unwrap_or_default();
    let warnings = cluster.warnings_since(started).await?;

    // Every container's data, read back once more after all the cycles.
    let mut intact = 0;
    let mut lost = Vec::new();
    let expected_log = expected_cycle_log(cycles);
    for ((name, marker), outcome) in names.iter().zip(&markers).zip(&outcomes) {
        let check = async {
            cluster.wait_sc_ready(name).await?;
            cluster.exec(name, "cat /bench-marker; echo ---; cat /bench-cycles").await
        };
        match check.await {
            Ok(text) => {
                let (seen_marker, log) = text.split_once("---\n").unwrap_or((text.as_str(), ""));
                // A cycle that failed before its append legitimately has no line.
                let log_ok = outcome.cycles_done < cycles || log == expected_log;
                if seen_marker.trim() == marker && log_ok {
                    intact += 1;
                } else {
                    lost.push(format!("{name}: marker {:?}, cycle log {:?}", seen_marker.trim(), log));
                }
            }
            Err(error) => lost.push(format!("{name}: {error}")),
        }
    }

    // Stop everything: no mount of the product may remain, nor any record of a publication.
    for name in &names {
        cluster.set_running(name, false).await?;
    }
    for name in &names {
        cluster.wait_sc_stopped(name).await?;
    }
    let data_root = std::path::Path::new(&cluster.settings.data_root);
    let mut leaks: Vec<String> = leftovers(&cluster.settings.data_root)?.into_iter().filter(|entry| !before.contains(entry)).collect();
    cluster.delete_scs(&names).await?;
    // Deleting an SC removes its data on the node.
    let namespace_data = data_root.join("containers").join(&cluster.settings.namespace);
    leaks.extend(host::entries(&namespace_data)?.into_iter().map(|dir| format!("data of deleted StoppableContainer {dir}")));

    let errors: Vec<&String> = outcomes.iter().flat_map(|outcome| &outcome.errors).collect();
    let cycles_done: usize = outcomes.iter().map(|outcome| outcome.cycles_done).sum();
    println!(
        "{}",
        table(
            &["", "value"],
            &[
                vec!["stop/start cycles completed".into(), format!("{cycles_done} of {}", count * cycles)],
                vec!["wall time for all cycles".into(), seconds(elapsed)],
                vec!["mean time per cycle and container".into(), seconds(elapsed.checked_div(cycles as u32).unwrap_or(Duration::ZERO))],
                vec!["errors".into(), errors.len().to_string()],
                vec!["leaked mounts, records, directories".into(), leaks.len().to_string()],
                vec!["containers with marker and cycle log intact".into(), format!("{intact} of {count}")],
            ]
        )
    );
    for error in &errors {
        println!("  error: {error}");
    }
    for leak in &leaks {
        println!("  leaked: {leak}");
    }
    for loss in &lost {
        println!("  data: {loss}");
    }
    if warnings.is_empty() {
        println!("  warning events during the churn: none");
    }
    for (reason, (count, example)) in &warnings {
        println!("  warning events {reason} x{count}, e.g.: {example}");
    }
    Ok(ChurnFigures {
        failures: errors.len() + leaks.len() + lost.len(),
        targets: vec![
            Target::zero(&format!("7. churn errors ({count} SCs x {cycles} cycles)"), errors.len()),
            Target::zero("7. churn leaked mounts, records, data", leaks.len()),
            Target::zero("7. churn containers with lost data", lost.len()),
            Target::informative("7. churn warning events", warnings.values().map(|(count, _)| count).sum::<u32>().to_string()),
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cycle_log_has_one_line_per_cycle() {
        assert_eq!(expected_cycle_log(3), "cycle-1\ncycle-2\ncycle-3\n");
        assert_eq!(expected_cycle_log(0), "");
        assert!(marker_of("churn-01").starts_with("churn-01-"));
    }
}
