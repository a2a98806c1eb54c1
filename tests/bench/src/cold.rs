//! Section 9: start with no provider left. A node-local StoppableContainer started once (so its
//! data node is recorded), stopped, and its kept provider pod then deleted (a node drain, a user's
//! `kubectl delete`): the next start must create the provider as well as the consumer pod.
//! Measured against creating a plain pod in the same rounds, the sides taking turns.

use std::time::Duration;

use crate::cluster::Cluster;
use crate::error::BenchError;
use crate::measure::{ScStartKind, settle, start_plain, start_sc, stop_plain, stop_sc};
use crate::report::{LATENCY_HEADER, Target, latency_row, steps_table, table};
use crate::stats::{Summary, format_ratio, ratio};
use crate::storage::sc_first;
use crate::subjects::provider_name;
use crate::timeline::{plain_steps, sc_side_facts, sc_steps};

const SC_NAME: &str = "cold-sc";

pub async fn start_without_provider(cluster: &Cluster, rounds: usize) -> Result<Vec<Target>, BenchError> {
    println!(
        "\n== 9. Start with no provider left ({rounds} rounds): a stopped node-local StoppableContainer whose provider pod was deleted, until Ready, vs a new plain pod"
    );
    // The first start records the data node, so the measured starts are pinned starts that
    // create the provider at once, not first starts that wait for the consumer pod's binding.
    cluster.create_sc(SC_NAME, true).await?;
    cluster.wait_sc_ready(SC_NAME).await?;
    let node = data_node(cluster)?;
    println!("  {SC_NAME}: data node {node} recorded by its first start");
    stop_sc(cluster, SC_NAME).await?;
    // One unmeasured start of each side, so that neither pays for cold caches alone.
    remove_provider(cluster).await?;
    start_sc(cluster, SC_NAME, ScStartKind::Resume).await?;
    stop_sc(cluster, SC_NAME).await?;
    start_plain(cluster, "cold-plain-warmup").await?;
    stop_plain(cluster, "cold-plain-warmup").await?;
    settle().await;

    let mut sc_starts = Vec::new();
    let mut plain_starts = Vec::new();
    for round in 0..rounds {
        for sc_turn in [sc_first(round), !sc_first(round)] {
            if sc_turn {
                remove_provider(cluster).await?;
                settle().await;
                provider_still_gone(cluster)?;
                sc_starts.push(start_sc(cluster, SC_NAME, ScStartKind::Resume).await?);
                settle().await;
                stop_sc(cluster, SC_NAME).await?;
            } else {
                let name = format!("cold-plain-{round}");
                plain_starts.push(start_plain(cluster, &name).await?);
                settle().await;
                stop_plain(cluster, &name).await?;
            }
            settle().await;
        }
        eprintln!("sc-bench: start-with-no-provider round {}/{rounds} done", round + 1);
    }
    cluster.delete_scs(&[SC_NAME.to_owned()]).await?;

    let plain = Summary::of(&plain_starts.iter().map(|start| start.ready).collect::<Vec<_>>());
    let sc = Summary::of(&sc_starts.iter().map(|start| start.ready).collect::<Vec<_>>());
    println!(
        "{}",
        table(
            &LATENCY_HEADER,
            &[latency_row("plain pod (create)", plain, None), latency_row("StoppableContainer, no provider left (start)", sc, plain)]
        )
    );
    println!("{}", steps_table(&["no provider left"], &[sc_steps(&sc_starts)]));
    println!("{}", steps_table(&["no provider left"], &[sc_side_facts(&sc_starts)]));
    println!("  plain pod, for comparison:");
    println!("{}", steps_table(&["plain pod"], &[plain_steps(&plain_starts)]));
    let of = |pick: fn(&Summary) -> Duration| sc.zip(plain).and_then(|(sc, plain)| ratio(pick(&sc), pick(&plain)));
    Ok(vec![
        Target::ratio("9. start with no provider left / plain pod start, median", of(|s| s.median), 1.3),
        Target::ratio("9. start with no provider left / plain pod start, p90", of(|s| s.p90), 1.3),
        Target::informative("9. (min ratio)", format_ratio(of(|s| s.min))),
    ])
}

/// The data node the SC's status records; without one the rounds would measure first starts.
fn data_node(cluster: &Cluster) -> Result<String, BenchError> {
    let sc = cluster.sc_watch.get(SC_NAME);
    sc.as_deref().and_then(|sc| sc.status.as_ref()?.data_node_name.clone()).ok_or_else(|| {
        BenchError::Setup(format!(
            "StoppableContainer {SC_NAME} is Ready but its status records no data node (status.dataNodeName); \
             a start with no provider left needs a pinned start: check the operator's log"
        ))
    })
}

/// Deletes the provider pod the stop kept and waits until it is gone.
async fn remove_provider(cluster: &Cluster) -> Result<(), BenchError> {
    let provider = [provider_name(SC_NAME)];
    cluster.delete_pods(&provider).await?;
    cluster.wait_pods_gone(&provider).await?;
    Ok(())
}

/// The operator does not recreate the provider of a stopped SC; if it did, the start would find
/// one and the row would measure a start with a provider under this row's name.
fn provider_still_gone(cluster: &Cluster) -> Result<(), BenchError> {
    let provider = provider_name(SC_NAME);
    match cluster.pod_watch.get(&provider) {
        None => Ok(()),
        Some(_) => Err(BenchError::Setup(format!(
            "pod {provider} was created again while StoppableContainer {SC_NAME} was stopped, before the start was requested; \
             this row needs a stopped SC with no provider: check the operator's log for why it recreated the provider"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_provider_deleted_is_the_one_the_operator_names() {
        assert_eq!(provider_name(SC_NAME), "cold-sc-provider");
    }
}
