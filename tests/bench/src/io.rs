//! Section 5: file-system work inside the StoppableContainer's rootfs (the overlay the node
//! plugin mounts) vs inside a plain container's root (containerd's overlay snapshot), both on the
//! node's disk. Each operation is timed inside the container, so `kubectl exec` does not count.
//! These machines' disks are noisy (the same `dd` varies 2-3x between runs), so each measurement
//! starts on a settled disk (written back, caches dropped), the sides are interleaved per
//! operation, and the minimum is reported beside the median.

use std::time::Duration;

use crate::cluster::Cluster;
use crate::error::BenchError;
use crate::host;
use crate::report::{Target, millis, table};
use crate::stats::{Summary, format_ratio, ratio, verdict};

const TREE_DIRS: u32 = 100;
const FILES_PER_DIR: u32 = 200;
const FILE_BYTES: u32 = 2048;

/// Builds the 20 000-file tarball the untar step extracts (not measured).
pub fn tree_script() -> String {
    let dir_bytes = FILES_PER_DIR * FILE_BYTES;
    format!(
        "set -e; rm -rf /bench-io; mkdir -p /bench-io/src; cd /bench-io/src; \
         for d in $(seq 1 {TREE_DIRS}); do mkdir d$d; head -c {dir_bytes} /dev/urandom | split -b {FILE_BYTES} -a 3 - d$d/f; done; \
         tar cf /bench-io/tree.tar -C /bench-io src; rm -rf /bench-io/src; sync; find /bench-io -type f | wc -l"
    )
}

/// One measured operation: its preparation (not measured) and the command whose wall time counts.
pub struct Operation {
    pub name: &'static str,
    pub prepare: &'static str,
    pub measured: &'static str,
}

pub const OPERATIONS: [Operation; 4] = [
    Operation {
        name: "untar 20k files (+ sync)",
        prepare: "rm -rf /bench-io/x; mkdir -p /bench-io/x",
        measured: "tar xf /bench-io/tree.tar -C /bench-io/x && sync",
    },
    Operation { name: "find over them (cold)", prepare: "true", measured: "find /bench-io/x | wc -l" },
    Operation {
        name: "1 GiB sequential write (fsync)",
        prepare: "rm -f /bench-io/big",
        measured: "dd if=/dev/zero of=/bench-io/big bs=1M count=1024 conv=fsync 2>/dev/null",
    },
    Operation { name: "1 GiB sequential read (cold)", prepare: "true", measured: "dd if=/bench-io/big of=/dev/null bs=1M 2>/dev/null" },
];

/// Times `command` inside the container with nanosecond clocks; prints the nanoseconds last.
pub fn timed_script(command: &str) -> String {
    format!("set -e; s=$(date +%s%N); {command} >/dev/null; e=$(date +%s%N); echo $((e - s))")
}

pub fn parse_nanos(output: &str) -> Option<Duration> {
    output.lines().last()?.trim().parse().ok().map(Duration::from_nanos)
}

const SC_NAME: &str = "io-sc";
const PLAIN_NAME: &str = "io-plain";

/// Which side is measured first in a repeat of an operation: the sides take turns per repeat,
/// and operations alternate too, so over an even number of repeats each side goes first equally
/// often for every operation, and neither always runs right after the other's writes.
pub fn order(repeat: usize, operation: usize) -> [&'static str; 2] {
    if (repeat + operation).is_multiple_of(2) { [SC_NAME, PLAIN_NAME] } else { [PLAIN_NAME, SC_NAME] }
}

pub async fn io(cluster: &Cluster, repeats: usize) -> Result<Vec<Target>, BenchError> {
    println!(
        "\n== 5. I/O inside the rootfs vs inside a plain container ({repeats} repeats of each operation on each side, interleaved; \
         before each measurement: sync, writeback drained, caches dropped)"
    );
    cluster.create_sc(SC_NAME, true).await?;
    cluster.create_pod(PLAIN_NAME).await?;
    cluster.wait_sc_ready(SC_NAME).await?;
    cluster.wait_pod_ready(PLAIN_NAME).await?;
    for subject in [SC_NAME, PLAIN_NAME] {
        let files = cluster.exec(subject, &tree_script()).await?;
        if files.trim() != "1" {
            return Err(BenchError::Output { what: format!("building the tarball in {subject}"), output: files });
        }
    }
    let mut sc: Vec<Vec<Duration>> = OPERATIONS.iter().map(|_| Vec::new()).collect();
    let mut plain = sc.clone();
    let mut settling = Duration::ZERO;
    for repeat in 0..repeats {
        for (index, operation) in OPERATIONS.iter().enumerate() {
            // Both sides are prepared (their deletions made) before either is measured, and the
            // disk settles before each measurement, so neither pays for the other's deletions.
            for subject in [SC_NAME, PLAIN_NAME] {
                cluster.exec(subject, operation.prepare).await?;
            }
            for subject in order(repeat, index) {
                settling += host::settle_disk()?;
                let output = cluster.exec(subject, &timed_script(operation.measured)).await?;
                let took =
                    parse_nanos(&output).ok_or_else(|| BenchError::Output { what: format!("{} in {subject}", operation.name), output })?;
                let side = if subject == SC_NAME { &mut sc } else { &mut plain };
                side[index].push(took);
            }
        }
        eprintln!("sc-bench: I/O repeat {}/{repeats} done", repeat + 1);
    }
    cluster.delete_scs(&[SC_NAME.to_owned()]).await?;
    cluster.delete_pods(&[PLAIN_NAME.to_owned()]).await?;
    cluster.wait_pods_gone(&[PLAIN_NAME.to_owned()]).await?;

    let mut rows = Vec::new();
    let mut targets = Vec::new();
    for (index, operation) in OPERATIONS.iter().enumerate() {
        let (plain, sc) = (Summary::of(&plain[index]), Summary::of(&sc[index]));
        let median = sc.zip(plain).and_then(|(sc, plain)| ratio(sc.median, plain.median));
        let min = sc.zip(plain).and_then(|(sc, plain)| ratio(sc.min, plain.min));
        let show =
            |summary: Option<Summary>| summary.map_or_else(|| "-".into(), |s| format!("{} (min {})", millis(s.median), millis(s.min)));
        rows.push(vec![
            operation.name.to_owned(),
            show(plain),
            show(sc),
            format_ratio(median),
            format_ratio(min),
            verdict(median, 1.1).to_owned(),
        ]);
        targets.push(Target::ratio(&format!("5. I/O {} / plain, median", operation.name), median, 1.1));
    }
    println!(
        "{}",
        table(
            &[
                "operation, median (min)",
                "plain container",
                "StoppableContainer",
                "ratio of medians",
                "ratio of minimums",
                "target <= 1.10"
            ],
            &rows
        )
    );
    println!("(waited {} in all for the disk to settle)", millis(settling));
    Ok(targets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tree_has_twenty_thousand_files() {
        assert_eq!(TREE_DIRS * FILES_PER_DIR, 20_000);
        let script = tree_script();
        assert!(script.contains("seq 1 100") && script.contains("head -c 409600 /dev/urandom | split -b 2048"), "{script}");
    }

    #[test]
    fn each_side_goes_first_equally_often_for_every_operation() {
        for operation in 0..OPERATIONS.len() {
            let sc_first = (0..10).filter(|repeat| order(*repeat, operation)[0] == SC_NAME).count();
            assert_eq!(sc_first, 5, "operation {operation}");
        }
        assert_ne!(order(0, 0), order(0, 1), "consecutive operations alternate too");
    }

    #[test]
    fn timings_come_from_the_last_line() {
        assert_eq!(parse_nanos("20100\n1500000000\n"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_nanos("sh: date: not found"), None);
        assert!(timed_script("sync").starts_with("set -e; s=$(date +%s%N); sync >/dev/null;"));
    }
}
