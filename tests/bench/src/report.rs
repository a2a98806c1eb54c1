//! The report: aligned tables printed as each section finishes, and the summary of every target
//! at the end.

use std::time::Duration;

use crate::stats::{Summary, format_ratio, ratio, seconds, verdict};
use crate::timeline::Step;

/// Left-aligned first column, right-aligned figures.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let columns = header.len();
    let width = |column: usize| {
        rows.iter()
            .filter_map(|row| row.get(column))
            .map(|cell| cell.chars().count())
            .chain([header[column].chars().count()])
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..columns).map(width).collect();
    let line = |cells: Vec<&str>| {
        let text: Vec<String> = cells
            .iter()
            .enumerate()
            .map(
                |(column, cell)| if column == 0 { format!("{cell:<w$}", w = widths[0]) } else { format!("{cell:>w$}", w = widths[column]) },
            )
            .collect();
        format!("  {}", text.join("  ").trim_end())
    };
    let mut out = vec![line(header.to_vec())];
    out.extend(rows.iter().map(|row| line(row.iter().map(String::as_str).collect())));
    out.join("\n")
}

/// A latency row: name, median, p90, min, max, rounds and the ratios against a baseline.
pub fn latency_row(name: &str, summary: Option<Summary>, baseline: Option<Summary>) -> Vec<String> {
    let Some(summary) = summary else {
        return vec![name.to_owned(), "-".into(), "-".into(), "-".into(), "-".into(), "0".into(), "-".into(), "-".into()];
    };
    let against = |pick: fn(&Summary) -> Duration| format_ratio(baseline.and_then(|base| ratio(pick(&summary), pick(&base))));
    vec![
        name.to_owned(),
        seconds(summary.median),
        seconds(summary.p90),
        seconds(summary.min),
        seconds(summary.max),
        summary.rounds.to_string(),
        against(|s| s.median),
        against(|s| s.p90),
    ]
}

pub const LATENCY_HEADER: [&str; 8] = ["", "median", "p90", "min", "max", "rounds", "ratio median", "ratio p90"];

/// Median of each step, for one or more series side by side.
pub fn steps_table(columns: &[&str], series: &[Vec<Step>]) -> String {
    let mut header = vec!["step (median)"];
    header.extend_from_slice(columns);
    let rows: Vec<Vec<String>> = (0..series.first().map_or(0, Vec::len))
        .map(|index| {
            let mut row = vec![series[0][index].name.to_owned()];
            row.extend(series.iter().map(|steps| Summary::of(&steps[index].durations).map_or_else(|| "-".into(), |s| millis(s.median))));
            row
        })
        .collect();
    table(&header, &rows)
}

pub fn millis(duration: Duration) -> String {
    format!("{:.0} ms", duration.as_secs_f64() * 1e3)
}

pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// One line of the final summary.
pub struct Target {
    pub figure: String,
    pub value: String,
    pub target: String,
    pub verdict: String,
}

impl Target {
    pub fn ratio(figure: &str, value: Option<f64>, bound: f64) -> Self {
        Self { figure: figure.into(), value: format_ratio(value), target: format!("<= {bound:.2}"), verdict: verdict(value, bound).into() }
    }

    pub fn informative(figure: &str, value: String) -> Self {
        Self { figure: figure.into(), value, target: "-".into(), verdict: String::new() }
    }

    /// A count that must be zero (errors, leaks).
    pub fn zero(figure: &str, count: usize) -> Self {
        Self {
            figure: figure.into(),
            value: count.to_string(),
            target: "0".into(),
            verdict: if count == 0 { "met" } else { "MISSED" }.into(),
        }
    }

    pub fn below_mib(figure: &str, kib: Option<u64>, bound_mib: u64) -> Self {
        let verdict = match kib {
            Some(kib) if kib < bound_mib * 1024 => "met",
            Some(_) => "MISSED",
            None => "no figure",
        };
        Self {
            figure: figure.into(),
            value: kib.map_or_else(|| "-".into(), mib),
            target: format!("< {bound_mib} MiB"),
            verdict: verdict.into(),
        }
    }
}

pub fn summary_table(targets: &[Target]) -> String {
    let rows: Vec<Vec<String>> =
        targets.iter().map(|t| vec![t.figure.clone(), t.value.clone(), t.target.clone(), t.verdict.clone()]).collect();
    table(&["figure", "value", "target", ""], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_figures_to_the_right() {
        let text = table(&["", "median"], &[vec!["plain pod".into(), "1.500 s".into()], vec!["sc".into(), "12.000 s".into()]]);
        assert_eq!(text, "               median\n  plain pod   1.500 s\n  sc         12.000 s");
    }

    #[test]
    fn latency_rows_carry_ratios_against_the_baseline() {
        let summary = |ms: u64| Summary::of(&[Duration::from_millis(ms)]);
        let row = latency_row("sc", summary(1500), summary(1000));
        assert_eq!(row, vec!["sc", "1.500 s", "1.500 s", "1.500 s", "1.500 s", "1", "1.50", "1.50"]);
        assert_eq!(latency_row("sc", None, summary(1000))[1], "-");
    }

    #[test]
    fn targets_say_met_or_missed() {
        assert_eq!(Target::ratio("resume", Some(1.31), 1.3).verdict, "MISSED");
        assert_eq!(Target::zero("leaked mounts", 0).verdict, "met");
        assert_eq!(Target::zero("errors", 2).verdict, "MISSED");
        let rss = Target::below_mib("operator peak RSS", Some(20 * 1024), 64);
        assert_eq!((rss.value.as_str(), rss.verdict.as_str()), ("20.0 MiB", "met"));
        assert_eq!(Target::below_mib("plugin", Some(32 * 1024), 32).verdict, "MISSED");
    }
}
