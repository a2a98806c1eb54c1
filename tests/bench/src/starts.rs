//! Sections 1–4: resume, diff-size independence, stop, and first start, each against a plain pod
//! of the same image measured in the same rounds.

use std::time::Duration;

use crate::cluster::Cluster;
use crate::error::BenchError;
use crate::measure::{ScStartKind, settle, start_plain, start_sc, stop_plain, stop_sc};
use crate::paired::alternate;
use crate::report::{LATENCY_HEADER, Target, latency_row, steps_table, table};
use crate::stats::{Summary, ratio};
use crate::timeline::{PlainStart, ScStart, plain_steps, sc_side_facts, sc_steps};

/// An SC whose rootfs holds `mib` MiB the workload wrote before the measured rounds.
struct Loaded {
    name: &'static str,
    label: &'static str,
    mib: u64,
}

const LOADED: [Loaded; 3] = [
    Loaded { name: "resume-0", label: "0 MiB", mib: 0 },
    Loaded { name: "resume-100m", label: "100 MiB", mib: 100 },
    Loaded { name: "resume-1g", label: "1 GiB", mib: 1024 },
];

/// A fifth of the data in 4 KiB files, the rest in four large files: what installing packages
/// and downloading a few artefacts leaves behind. Written with urandom, synced to disk.
pub fn fill_script(mib: u64) -> String {
    let small_bytes = mib * 1024 * 1024 / 5;
    let large_each = (mib * 1024 * 1024 - small_bytes) / 4;
    format!(
        "set -e; mkdir -p /bench-data/small /bench-data/large; cd /bench-data/small; \
         head -c {small_bytes} /dev/urandom | split -b 4096 -a 5 - f; \
         for i in 1 2 3 4; do head -c {large_each} /dev/urandom > /bench-data/large/f$i; done; sync; \
         echo \"$(du -sm /bench-data | cut -f1) $(find /bench-data -type f | wc -l)\""
    )
}

/// Parses the fill script's "<MiB> <files>" answer.
pub fn parse_fill(output: &str) -> Option<(u64, u64)> {
    let mut words = output.split_whitespace();
    Some((words.next()?.parse().ok()?, words.next()?.parse().ok()?))
}

#[derive(Default)]
struct Series {
    starts: Vec<ScStart>,
    stops: Vec<Duration>,
}

pub struct StartFigures {
    pub targets: Vec<Target>,
}

/// Sections 1, 2 and 3: every round starts and stops each subject once, in a rotating order.
pub async fn resume_and_stop(cluster: &Cluster, rounds: usize) -> Result<StartFigures, BenchError> {
    println!(
        "\n== 1-3. Resume, diff-size independence, stop ({rounds} rounds; each round starts and stops every subject once, rotating the order)"
    );
    println!(
        "  workload: `{}` in {} (no readiness probe: Ready = running)",
        crate::subjects::WORKLOAD_COMMAND.join(" "),
        cluster.settings.image
    );
    for loaded in &LOADED {
        cluster.create_sc(loaded.name, true).await?;
    }
    for loaded in &LOADED {
        cluster.wait_sc_ready(loaded.name).await?;
        if loaded.mib > 0 {
            let answer = cluster.exec(loaded.name, &fill_script(loaded.mib)).await?;
            let (mib, files) = parse_fill(&answer)
                .ok_or_else(|| BenchError::Output { what: format!("filling {}", loaded.name), output: answer.clone() })?;
            println!("  {}: the workload wrote {mib} MiB in {files} files into its rootfs", loaded.name);
        }
    }
    for loaded in &LOADED {
        cluster.set_running(loaded.name, false).await?;
    }
    for loaded in &LOADED {
        cluster.wait_sc_stopped(loaded.name).await?;
    }
    // One unmeasured start and stop of each, so that no subject pays for cold caches alone.
    for loaded in &LOADED {
        start_sc(cluster, loaded.name, ScStartKind::Resume).await?;
        stop_sc(cluster, loaded.name).await?;
    }
    start_plain(cluster, "plain-warmup").await?;
    stop_plain(cluster, "plain-warmup").await?;
    settle().await;

    let mut plain_starts: Vec<PlainStart> = Vec::new();
    let mut plain_stops = Vec::new();
    let mut series: Vec<Series> = LOADED.iter().map(|_| Series::default()).collect();
    let subjects = LOADED.len() + 1;
    for round in 0..rounds {
        for position in 0..subjects {
            let subject = (position + round) % subjects;
            if subject == LOADED.len() {
                let name = format!("plain-{round}");
                plain_starts.push(start_plain(cluster, &name).await?);
                settle().await;
                plain_stops.push(stop_plain(cluster, &name).await?);
            } else {
                let name = LOADED[subject].name;
                series[subject].starts.push(start_sc(cluster, name, ScStartKind::Resume).await?);
                settle().await;
                series[subject].stops.push(stop_sc(cluster, name).await?);
            }
            settle().await;
        }
        eprintln!("sc-bench: resume round {}/{rounds} done", round + 1);
    }
    let names: Vec<String> = LOADED.iter().map(|loaded| loaded.name.to_owned()).collect();
    cluster.delete_scs(&names).await?;

    let plain_start = Summary::of(&plain_starts.iter().map(|start| start.ready).collect::<Vec<_>>());
    let plain_stop = Summary::of(&plain_stops);
    let start_summaries: Vec<Option<Summary>> =
        series.iter().map(|s| Summary::of(&s.starts.iter().map(|start| start.ready).collect::<Vec<_>>())).collect();

    println!("\n-- 1. Resume latency: `running: false -> true` until the consumer pod is Ready, vs creating a plain pod until Ready");
    let mut rows = vec![latency_row("plain pod (create)", plain_start, None)];
    for (loaded, summary) in LOADED.iter().zip(&start_summaries) {
        rows.push(latency_row(&format!("StoppableContainer, {} written", loaded.label), *summary, plain_start));
    }
    println!("{}", table(&LATENCY_HEADER, &rows));

    println!("\n-- 2. Diff-size independence: resume latency by data written, vs the empty rootfs");
    let rows: Vec<Vec<String>> = LOADED
        .iter()
        .zip(&start_summaries)
        .map(|(loaded, summary)| latency_row(&format!("{} written", loaded.label), *summary, start_summaries[0]))
        .collect();
    println!("{}", table(&LATENCY_HEADER, &rows));

    println!(
        "\n-- 3. Stop latency: `running: true -> false` until phase Stopped (published once the consumer pod is gone), vs deleting a plain pod until gone"
    );
    let mut rows = vec![latency_row("plain pod (delete)", plain_stop, None)];
    for (loaded, s) in LOADED.iter().zip(&series) {
        rows.push(latency_row(&format!("StoppableContainer, {} written", loaded.label), Summary::of(&s.stops), plain_stop));
    }
    println!("{}", table(&LATENCY_HEADER, &rows));

    println!("\n-- Where a resume's time goes (offsets measured on one clock: watch, node plugin log, /proc)");
    let columns: Vec<&str> = LOADED.iter().map(|loaded| loaded.label).collect();
    let steps: Vec<_> = series.iter().map(|s| sc_steps(&s.starts)).collect();
    println!("{}", steps_table(&columns, &steps));
    let facts: Vec<_> = series.iter().map(|s| sc_side_facts(&s.starts)).collect();
    println!("{}", steps_table(&columns, &facts));
    println!("  plain pod, for comparison:");
    println!("{}", steps_table(&["plain pod"], &[plain_steps(&plain_starts)]));

    let median_ratio = |index: usize, base: Option<Summary>, pick: fn(&Summary) -> Duration| {
        let (subject, base) = (start_summaries[index]?, base?);
        ratio(pick(&subject), pick(&base))
    };
    let last = LOADED.len() - 1;
    let stop_ratio = Summary::of(&series[0].stops).zip(plain_stop).and_then(|(sc, plain)| ratio(sc.median, plain.median));
    Ok(StartFigures {
        targets: vec![
            Target::ratio("1. resume / plain pod start, median (0 MiB)", median_ratio(0, plain_start, |s| s.median), 1.3),
            Target::ratio("1. resume / plain pod start, p90 (0 MiB)", median_ratio(0, plain_start, |s| s.p90), 1.3),
            Target::ratio("1. resume / plain pod start, median (1 GiB)", median_ratio(last, plain_start, |s| s.median), 1.3),
            Target::ratio("2. resume 1 GiB / 0 MiB, median", median_ratio(last, start_summaries[0], |s| s.median), 1.1),
            Target::ratio("2. resume 100 MiB / 0 MiB, median", median_ratio(1, start_summaries[0], |s| s.median), 1.1),
            Target::informative("3. stop / plain pod delete, median (0 MiB)", crate::stats::format_ratio(stop_ratio)),
        ],
    })
}

/// Section 4: creating a new SC (running) until Ready, vs creating a plain pod; the image is on
/// the node already. Each round's SC is deleted (with its data) before the next.
pub async fn first_start(cluster: &Cluster, rounds: usize) -> Result<StartFigures, BenchError> {
    println!("\n== 4. First start ({rounds} rounds): a new StoppableContainer until its workload is Ready, vs a new plain pod");
    let paired = alternate(
        "first-start",
        rounds,
        async |round| {
            let sc = format!("first-{round}");
            let start = start_sc(cluster, &sc, ScStartKind::Create).await?;
            cluster.delete_scs(std::slice::from_ref(&sc)).await?;
            Ok(start)
        },
        async |round| {
            let plain = format!("first-plain-{round}");
            let start = start_plain(cluster, &plain).await?;
            stop_plain(cluster, &plain).await?;
            Ok(start)
        },
    )
    .await?;
    paired.print("plain pod (create)", "StoppableContainer (create)", "first start");
    Ok(StartFigures { targets: paired.targets("4. first start / plain pod start", 1.3) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fill_writes_the_requested_size_in_small_and_large_files() {
        let script = fill_script(100);
        assert!(script.contains("head -c 20971520 /dev/urandom | split -b 4096"), "{script}");
        assert!(script.contains("head -c 20971520 /dev/urandom > /bench-data/large/f$i"), "{script}");
        assert_eq!(parse_fill("101 5124\n"), Some((101, 5124)));
        assert_eq!(parse_fill("du: cannot access"), None);
    }
}
