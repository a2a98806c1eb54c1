//! Rounds in which a StoppableContainer start and a plain pod start take turns (sections 4, 8 and
//! 9): alternating which side goes first, so that neither always runs after the other's clean-up,
//! and with a pause after each, so that one start's tear-down does not land in the next.

use std::time::Duration;

use crate::error::BenchError;
use crate::measure::settle;
use crate::report::{LATENCY_HEADER, Target, latency_row, steps_table, table};
use crate::stats::{Summary, format_ratio, ratio};
use crate::timeline::{PlainStart, ScStart, sc_steps};

/// Which side goes first in a round: they take turns.
pub fn sc_first(round: usize) -> bool {
    round.is_multiple_of(2)
}

/// The starts both sides made, in round order.
pub struct Paired {
    pub sc: Vec<ScStart>,
    pub plain: Vec<PlainStart>,
}

/// Runs `rounds` rounds of one start of each side. Each side's closure gets the round number and
/// does the whole turn (prepare, start, tear down) and returns the measured start.
pub async fn alternate(
    section: &str,
    rounds: usize,
    mut sc_turn: impl AsyncFnMut(usize) -> Result<ScStart, BenchError>,
    mut plain_turn: impl AsyncFnMut(usize) -> Result<PlainStart, BenchError>,
) -> Result<Paired, BenchError> {
    let mut paired = Paired { sc: Vec::with_capacity(rounds), plain: Vec::with_capacity(rounds) };
    for round in 0..rounds {
        for sc_side in [sc_first(round), !sc_first(round)] {
            if sc_side {
                paired.sc.push(sc_turn(round).await?);
            } else {
                paired.plain.push(plain_turn(round).await?);
            }
            settle().await;
        }
        eprintln!("sc-bench: {section} round {}/{rounds} done", round + 1);
    }
    Ok(paired)
}

impl Paired {
    fn summaries(&self) -> (Option<Summary>, Option<Summary>) {
        let sc = Summary::of(&self.sc.iter().map(|start| start.ready).collect::<Vec<_>>());
        let plain = Summary::of(&self.plain.iter().map(|start| start.ready).collect::<Vec<_>>());
        (sc, plain)
    }

    /// Prints both sides' latencies and the StoppableContainer's steps, named as given.
    pub fn print(&self, plain_label: &str, sc_label: &str, steps_label: &str) {
        let (sc, plain) = self.summaries();
        println!("{}", table(&LATENCY_HEADER, &[latency_row(plain_label, plain, None), latency_row(sc_label, sc, plain)]));
        println!("{}", steps_table(&[steps_label], &[sc_steps(&self.sc)]));
    }

    /// The median and p90 ratios against `bound`, and the minimum's ratio beside them.
    pub fn targets(&self, figure: &str, bound: f64) -> Vec<Target> {
        let (sc, plain) = self.summaries();
        let of = |pick: fn(&Summary) -> Duration| sc.zip(plain).and_then(|(sc, plain)| ratio(pick(&sc), pick(&plain)));
        let number = figure.split_once(' ').map_or(figure, |(number, _)| number);
        vec![
            Target::ratio(&format!("{figure}, median"), of(|s| s.median), bound),
            Target::ratio(&format!("{figure}, p90"), of(|s| s.p90), bound),
            Target::informative(&format!("{number} (min ratio)"), format_ratio(of(|s| s.min))),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sides_take_turns() {
        assert_eq!((0..10).filter(|round| sc_first(*round)).count(), 5);
        assert!(sc_first(0) && !sc_first(1));
    }

    fn plain(ready_ms: u64) -> PlainStart {
        PlainStart { scheduled: None, container_started: None, ready: Duration::from_millis(ready_ms) }
    }

    #[test]
    fn the_targets_are_ratios_of_the_same_rounds() {
        let sc = |ready_ms| ScStart { ready: Duration::from_millis(ready_ms), ..ScStart::default() };
        let paired = Paired { sc: vec![sc(200), sc(300), sc(260)], plain: vec![plain(100), plain(200), plain(130)] };
        let targets = paired.targets("9. start / plain", 1.3);
        let rows: Vec<(&str, &str, &str)> =
            targets.iter().map(|target| (target.figure.as_str(), target.value.as_str(), target.verdict.as_str())).collect();
        assert_eq!(
            rows,
            [("9. start / plain, median", "2.00", "MISSED"), ("9. start / plain, p90", "1.50", "MISSED"), ("9. (min ratio)", "2.00", "")]
        );
    }
}
