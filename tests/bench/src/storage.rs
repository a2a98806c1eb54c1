//! Section 8: resume of a StoppableContainer on a claim (`spec.storage`), which holds no pod while
//! stopped, vs creating a plain pod that mounts a claim of the same class on the same node. Both
//! claims stay bound across the rounds, so both sides pay kubelet's mount of a claim and neither
//! pays for a binding.

use crate::cluster::Cluster;
use crate::error::BenchError;
use crate::measure::{ScStartKind, settle, start_sc, stop_plain, stop_sc};
use crate::report::{LATENCY_HEADER, Target, latency_row, steps_table, table};
use crate::stats::{Summary, format_ratio, ratio};
use crate::timeline::{PlainStart, offset, sc_steps};

const SC_NAME: &str = "claim-sc";
const PLAIN_CLAIM: &str = "claim-plain-data";
/// The smallest volumes of the e2e cluster's pool; a claim binds to any volume at least as large.
const CLAIM_SIZE: &str = "256Mi";

/// Which side goes first in a round: they take turns.
pub fn sc_first(round: usize) -> bool {
    round.is_multiple_of(2)
}

pub async fn resume_on_claim(cluster: &Cluster, rounds: usize) -> Result<Vec<Target>, BenchError> {
    println!(
        "\n== 8. Resume on a claim ({rounds} rounds): a stopped StoppableContainer with spec.storage (no pod left) until Ready, vs a plain pod that mounts a claim of the same class"
    );
    if !cluster.has_default_storage_class().await? {
        println!("  skipped: the cluster has no default StorageClass, so neither side's claim would bind");
        return Ok(vec![Target::informative(
            "8. resume on a claim / plain pod with a claim, median",
            "no default StorageClass".to_owned(),
        )]);
    }
    // The first start binds the SC's claim; the warm-up pod binds the plain side's.
    cluster.create_sc_on_claim(SC_NAME, CLAIM_SIZE).await?;
    cluster.wait_sc_ready(SC_NAME).await?;
    stop_sc(cluster, SC_NAME).await?;
    cluster.create_claim(PLAIN_CLAIM, CLAIM_SIZE).await?;
    start_plain_with_claim(cluster, "claim-plain-warmup").await?;
    stop_plain(cluster, "claim-plain-warmup").await?;
    start_sc(cluster, SC_NAME, ScStartKind::Resume).await?;
    stop_sc(cluster, SC_NAME).await?;
    settle().await;

    let mut sc_starts = Vec::new();
    let mut plain_starts = Vec::new();
    for round in 0..rounds {
        for sc_turn in [sc_first(round), !sc_first(round)] {
            if sc_turn {
                sc_starts.push(start_sc(cluster, SC_NAME, ScStartKind::Resume).await?);
                settle().await;
                stop_sc(cluster, SC_NAME).await?;
            } else {
                let name = format!("claim-plain-{round}");
                plain_starts.push(start_plain_with_claim(cluster, &name).await?);
                settle().await;
                stop_plain(cluster, &name).await?;
            }
            settle().await;
        }
        eprintln!("sc-bench: resume-on-a-claim round {}/{rounds} done", round + 1);
    }
    cluster.delete_scs(&[SC_NAME.to_owned()]).await?;

    let plain = Summary::of(&plain_starts.iter().map(|start| start.ready).collect::<Vec<_>>());
    let sc = Summary::of(&sc_starts.iter().map(|start| start.ready).collect::<Vec<_>>());
    println!(
        "{}",
        table(
            &LATENCY_HEADER,
            &[
                latency_row("plain pod with a claim (create)", plain, None),
                latency_row("StoppableContainer on a claim (resume)", sc, plain)
            ]
        )
    );
    println!("{}", steps_table(&["resume on a claim"], &[sc_steps(&sc_starts)]));
    let of = |pick: fn(&Summary) -> std::time::Duration| sc.zip(plain).and_then(|(sc, plain)| ratio(pick(&sc), pick(&plain)));
    Ok(vec![
        Target::ratio("8. resume on a claim / plain pod with a claim, median", of(|s| s.median), 1.3),
        Target::ratio("8. resume on a claim / plain pod with a claim, p90", of(|s| s.p90), 1.3),
        Target::informative("8. (min ratio)", format_ratio(of(|s| s.min))),
    ])
}

/// Creating a plain pod that mounts the plain side's claim, until it is Ready.
async fn start_plain_with_claim(cluster: &Cluster, name: &str) -> Result<PlainStart, BenchError> {
    let requested = std::time::SystemTime::now();
    cluster.create_pod_with_claim(name, PLAIN_CLAIM).await?;
    let ready = cluster.wait_pod_ready(name).await?;
    Ok(PlainStart { scheduled: None, container_started: None, ready: offset(requested, ready) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subjects::{claim, plain_pod_with_claim, stoppable_container_on_claim};

    #[test]
    fn the_sides_take_turns() {
        assert_eq!((0..10).filter(|round| sc_first(*round)).count(), 5);
    }

    #[test]
    fn both_sides_ask_for_a_claim_of_the_same_size_and_class() {
        let sc = stoppable_container_on_claim(SC_NAME, "img", true, CLAIM_SIZE).expect("manifest");
        let storage = sc.spec.storage.expect("spec.storage");
        assert_eq!((storage.size.0.as_str(), storage.storage_class_name), (CLAIM_SIZE, None));
        let claim = claim(PLAIN_CLAIM, CLAIM_SIZE).expect("claim");
        let spec = claim.spec.expect("spec");
        assert_eq!(spec.storage_class_name, None, "the default class, like the SC's");
        let requested = spec.resources.and_then(|resources| resources.requests).expect("requests");
        assert_eq!(requested["storage"].0, CLAIM_SIZE);
        let pod = plain_pod_with_claim("p", "img", PLAIN_CLAIM).expect("pod");
        let volumes = pod.spec.expect("spec").volumes.expect("volumes");
        assert_eq!(volumes[0].persistent_volume_claim.as_ref().map(|claim| claim.claim_name.as_str()), Some(PLAIN_CLAIM));
    }
}
