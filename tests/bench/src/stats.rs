//! Summaries of repeated measurements and the ratios the report prints.

use std::time::Duration;

/// Median and 90th percentile of one series of measurements.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    pub rounds: usize,
    pub median: Duration,
    pub p90: Duration,
    pub min: Duration,
    pub max: Duration,
}

impl Summary {
    /// None for an empty series: a figure without measurements is not printed as zero.
    pub fn of(samples: &[Duration]) -> Option<Self> {
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        let (first, last) = (*sorted.first()?, *sorted.last()?);
        Some(Self { rounds: sorted.len(), median: median_of_sorted(&sorted), p90: nearest_rank(&sorted, 90), min: first, max: last })
    }
}

fn median_of_sorted(sorted: &[Duration]) -> Duration {
    let middle = sorted.len() / 2;
    if sorted.len() % 2 == 1 { sorted[middle] } else { (sorted[middle - 1] + sorted[middle]) / 2 }
}

/// The nearest-rank percentile: always one of the measured values, never an interpolation.
fn nearest_rank(sorted: &[Duration], percent: usize) -> Duration {
    let rank = (percent * sorted.len()).div_ceil(100).max(1);
    sorted[rank - 1]
}

/// `subject / baseline`; None when the baseline is zero.
pub fn ratio(subject: Duration, baseline: Duration) -> Option<f64> {
    (!baseline.is_zero()).then(|| subject.as_secs_f64() / baseline.as_secs_f64())
}

/// Whether a ratio meets an upper-bound target, as the report words it.
pub fn verdict(ratio: Option<f64>, target: f64) -> &'static str {
    match ratio {
        Some(value) if value <= target => "met",
        Some(_) => "MISSED",
        None => "no figure",
    }
}

pub fn format_ratio(ratio: Option<f64>) -> String {
    ratio.map_or_else(|| "-".into(), |value| format!("{value:.2}"))
}

/// Seconds with millisecond precision: the unit every latency in the report uses.
pub fn seconds(duration: Duration) -> String {
    format!("{:.3} s", duration.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(values: &[u64]) -> Vec<Duration> {
        values.iter().map(|value| Duration::from_millis(*value)).collect()
    }

    #[test]
    fn median_of_an_odd_series_is_its_middle_value() {
        let summary = Summary::of(&ms(&[30, 10, 20])).expect("three samples");
        assert_eq!(summary.median, Duration::from_millis(20));
        assert_eq!((summary.min, summary.max, summary.rounds), (Duration::from_millis(10), Duration::from_millis(30), 3));
    }

    #[test]
    fn median_of_an_even_series_is_the_mean_of_the_middle_pair() {
        assert_eq!(Summary::of(&ms(&[40, 10, 20, 30])).expect("four samples").median, Duration::from_millis(25));
    }

    #[test]
    fn p90_of_ten_rounds_is_the_ninth_smallest() {
        let summary = Summary::of(&ms(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 100])).expect("ten samples");
        assert_eq!(summary.p90, Duration::from_millis(9));
    }

    #[test]
    fn p90_of_one_round_is_that_round() {
        assert_eq!(Summary::of(&ms(&[7])).expect("one sample").p90, Duration::from_millis(7));
    }

    #[test]
    fn no_samples_give_no_summary() {
        assert_eq!(Summary::of(&[]), None);
    }

    #[test]
    fn ratio_against_a_zero_baseline_is_undefined() {
        assert_eq!(ratio(Duration::from_secs(1), Duration::ZERO), None);
        assert_eq!(ratio(Duration::from_secs(3), Duration::from_secs(2)), Some(1.5));
    }

    #[test]
    fn verdicts_name_missed_targets_loudly() {
        assert_eq!(verdict(Some(1.3), 1.3), "met");
        assert_eq!(verdict(Some(1.31), 1.3), "MISSED");
        assert_eq!(verdict(None, 1.3), "no figure");
        assert_eq!(format_ratio(Some(1.234)), "1.23");
        assert_eq!(seconds(Duration::from_millis(1500)), "1.500 s");
    }
}
