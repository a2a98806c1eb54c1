//! Section 8: resume of a StoppableContainer on a claim (`spec.storage`), which holds no pod while
//! stopped, vs creating a plain pod that mounts a claim of the same class on the same node. Both
//! claims stay bound across the rounds, so both sides pay kubelet's mount of a claim and neither
//! pays for a binding.

use crate::cluster::Cluster;
use crate::error::BenchError;
use crate::measure::{ScStartKind, settle, start_sc, stop_plain, stop_sc};
use crate::paired::alternate;
use crate::report::Target;
use crate::timeline::{PlainStart, offset};

const SC_NAME: &str = "claim-sc";
const PLAIN_CLAIM: &str = "claim-plain-data";
/// The smallest volumes of the e2e cluster's pool; a claim binds to any volume at least as large.
const CLAIM_SIZE: &str = "256Mi";

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

    let paired = alternate(
        "resume-on-a-claim",
        rounds,
        async |_| {
            let start = start_sc(cluster, SC_NAME, ScStartKind::Resume).await?;
            settle().await;
            stop_sc(cluster, SC_NAME).await?;
            Ok(start)
        },
        async |round| {
            let name = format!("claim-plain-{round}");
            let start = start_plain_with_claim(cluster, &name).await?;
            settle().await;
            stop_plain(cluster, &name).await?;
            Ok(start)
        },
    )
    .await?;
    cluster.delete_scs(&[SC_NAME.to_owned()]).await?;

    paired.print("plain pod with a claim (create)", "StoppableContainer on a claim (resume)", "resume on a claim");
    Ok(paired.targets("8. resume on a claim / plain pod with a claim", 1.3))
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
