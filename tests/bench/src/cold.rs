//! Section 9: start with no provider left. A node-local StoppableContainer started once (so its
//! data node is recorded), stopped, and its kept provider pod then deleted (a node drain, a user's
//! `kubectl delete`): the next start must create the provider as well as the consumer pod.
//! Measured against creating a plain pod in the same rounds, the sides taking turns.

use crate::cluster::Cluster;
use crate::error::BenchError;
use crate::measure::{ScStartKind, settle, start_plain, start_sc, stop_plain, stop_sc};
use crate::paired::alternate;
use crate::report::{Target, steps_table};
use crate::subjects::provider_name;
use crate::timeline::{plain_steps, sc_side_facts};

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

    let paired = alternate(
        "start-with-no-provider",
        rounds,
        async |_| {
            remove_provider(cluster).await?;
            settle().await;
            provider_still_gone(cluster)?;
            let start = start_sc(cluster, SC_NAME, ScStartKind::Resume).await?;
            settle().await;
            stop_sc(cluster, SC_NAME).await?;
            Ok(start)
        },
        async |round| {
            let name = format!("cold-plain-{round}");
            let start = start_plain(cluster, &name).await?;
            settle().await;
            stop_plain(cluster, &name).await?;
            Ok(start)
        },
    )
    .await?;
    cluster.delete_scs(&[SC_NAME.to_owned()]).await?;

    paired.print("plain pod (create)", "StoppableContainer, no provider left (start)", "no provider left");
    println!("{}", steps_table(&["no provider left"], &[sc_side_facts(&paired.sc)]));
    println!("  plain pod, for comparison:");
    println!("{}", steps_table(&["plain pod"], &[plain_steps(&paired.plain)]));
    Ok(paired.targets("9. start with no provider left / plain pod start", 1.3))
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
