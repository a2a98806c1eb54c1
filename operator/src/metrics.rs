//! Prometheus metrics in the text exposition format, kept in memory (a handful of counters, two
//! histograms and a gauge per phase do not justify a metrics framework).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sc_api::Phase;

/// Bucket upper bounds (seconds) of the start and stop latency histograms.
const LATENCY_BUCKETS: &[f64] = &[0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0];

/// A cumulative histogram.
#[derive(Debug, Default)]
struct Histogram {
    bucket_counts: Vec<u64>,
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        if self.bucket_counts.is_empty() {
            self.bucket_counts = vec![0; LATENCY_BUCKETS.len()];
        }
        for (bound, count) in LATENCY_BUCKETS.iter().zip(self.bucket_counts.iter_mut()) {
            if seconds <= *bound {
                *count += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }

    fn render(&self, name: &str, help: &str, out: &mut String) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (index, bound) in LATENCY_BUCKETS.iter().enumerate() {
            let count = self.bucket_counts.get(index).copied().unwrap_or(0);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}\n{name}_sum {}\n{name}_count {}", self.count, self.sum, self.count);
    }
}

/// Identifies one StoppableContainer: `namespace/name`.
pub type ObjectKey = String;

#[derive(Debug, Default)]
struct Tracked {
    errors_by_kind: BTreeMap<&'static str, u64>,
    start_latency: Histogram,
    stop_latency: Histogram,
    starts_in_progress: HashMap<ObjectKey, Instant>,
    stops_in_progress: HashMap<ObjectKey, Instant>,
    phases: HashMap<ObjectKey, Phase>,
}

/// The operator's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    reconciles: AtomicU64,
    tracked: Mutex<Tracked>,
}

impl Metrics {
    fn tracked(&self) -> std::sync::MutexGuard<'_, Tracked> {
        // A panic while holding the lock cannot leave these counters inconsistent enough to matter.
        self.tracked.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// One reconcile ran.
    pub fn reconciled(&self) {
        self.reconciles.fetch_add(1, Ordering::Relaxed);
    }

    /// One reconcile failed with an error of `kind`.
    pub fn failed(&self, kind: &'static str) {
        *self.tracked().errors_by_kind.entry(kind).or_default() += 1;
    }

    /// A start began (the consumer pod was created).
    pub fn start_began(&self, key: &str) {
        self.tracked().starts_in_progress.entry(key.to_owned()).or_insert_with(Instant::now);
    }

    /// A stop began (the consumer pod was deleted).
    pub fn stop_began(&self, key: &str) {
        let mut tracked = self.tracked();
        tracked.starts_in_progress.remove(key);
        tracked.stops_in_progress.entry(key.to_owned()).or_insert_with(Instant::now);
    }

    /// Records the phase of `key`, completing a start (Running) or a stop (Stopped) in progress.
    pub fn phase_observed(&self, key: &str, phase: Phase) {
        let mut tracked = self.tracked();
        tracked.phases.insert(key.to_owned(), phase);
        let elapsed = |began: Instant| Duration::as_secs_f64(&began.elapsed());
        match phase {
            Phase::Running => {
                if let Some(began) = tracked.starts_in_progress.remove(key) {
                    tracked.start_latency.observe(elapsed(began));
                }
            }
            Phase::Stopped => {
                if let Some(began) = tracked.stops_in_progress.remove(key) {
                    tracked.stop_latency.observe(elapsed(began));
                }
            }
            Phase::Pending | Phase::ProviderReady | Phase::Stopping | Phase::Failed => {}
        }
    }

    /// `key` was deleted: it no longer counts in any phase.
    pub fn forget(&self, key: &str) {
        let mut tracked = self.tracked();
        tracked.phases.remove(key);
        tracked.starts_in_progress.remove(key);
        tracked.stops_in_progress.remove(key);
    }

    /// The metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        let tracked = self.tracked();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP sc_operator_reconciles_total Reconciles run.\n# TYPE sc_operator_reconciles_total counter\nsc_operator_reconciles_total {}",
            self.reconciles.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP sc_operator_reconcile_errors_total Failed reconciles by error kind.\n# TYPE sc_operator_reconcile_errors_total counter"
        );
        for (kind, count) in &tracked.errors_by_kind {
            let _ = writeln!(out, "sc_operator_reconcile_errors_total{{kind=\"{kind}\"}} {count}");
        }
        tracked.start_latency.render("sc_operator_start_seconds", "Time from creating the consumer pod to phase Running.", &mut out);
        tracked.stop_latency.render("sc_operator_stop_seconds", "Time from deleting the consumer pod to phase Stopped.", &mut out);
        let _ = writeln!(
            out,
            "# HELP sc_operator_stoppablecontainers StoppableContainers by phase.\n# TYPE sc_operator_stoppablecontainers gauge"
        );
        for phase in Phase::ALL {
            let count = tracked.phases.values().filter(|observed| **observed == phase).count();
            let _ = writeln!(out, "sc_operator_stoppablecontainers{{phase=\"{}\"}} {count}", phase.as_str());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_phases() {
        let metrics = Metrics::default();
        metrics.reconciled();
        metrics.reconciled();
        metrics.failed("kube_api");
        metrics.start_began("ns/a");
        metrics.phase_observed("ns/a", Phase::Running);
        metrics.phase_observed("ns/b", Phase::Stopped);
        let text = metrics.render();
        assert!(text.contains("sc_operator_reconciles_total 2"), "{text}");
        assert!(text.contains("sc_operator_reconcile_errors_total{kind=\"kube_api\"} 1"), "{text}");
        assert!(text.contains("sc_operator_start_seconds_count 1"), "{text}");
        assert!(text.contains("sc_operator_start_seconds_bucket{le=\"0.5\"} 1"), "{text}");
        assert!(text.contains("sc_operator_stop_seconds_count 0"), "{text}");
        assert!(text.contains("sc_operator_stoppablecontainers{phase=\"Running\"} 1"), "{text}");
        assert!(text.contains("sc_operator_stoppablecontainers{phase=\"Stopped\"} 1"), "{text}");
        metrics.forget("ns/a");
        assert!(metrics.render().contains("sc_operator_stoppablecontainers{phase=\"Running\"} 0"));
    }
}
