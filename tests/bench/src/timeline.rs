//! Where a start's time goes. Every source runs on the one node and reads one clock: the
//! benchmark's watch (when the API server showed each pod change), the node plugin's log (when
//! the publish and the rootfs preparation began and ended) and /proc (when the wrapper and the
//! workload processes started).

use std::time::{Duration, SystemTime};

use crate::plugin_log::{PluginEvent, PluginLine};

/// The moments of one StoppableContainer start, as offsets from the `running: true` patch.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScStart {
    pub consumer_created: Option<Duration>,
    pub consumer_scheduled: Option<Duration>,
    pub provider_created: Option<Duration>,
    pub provider_running: Option<Duration>,
    pub publish_began: Option<Duration>,
    pub publish_ended: Option<Duration>,
    pub provider_wait: Option<Duration>,
    pub wrapper_started: Option<Duration>,
    pub prepare_began: Option<Duration>,
    pub prepare_ended: Option<Duration>,
    pub workload_started: Option<Duration>,
    pub ready: Duration,
}

/// The moments of one plain pod start, as offsets from its creation request.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PlainStart {
    pub scheduled: Option<Duration>,
    pub container_started: Option<Duration>,
    pub ready: Duration,
}

pub fn offset(since: SystemTime, at: SystemTime) -> Duration {
    at.duration_since(since).unwrap_or_default()
}

/// The plugin's publish and prepare of the given SC (`namespace/name`) after `since`: the first
/// of each, the ones of this start.
pub fn plugin_moments<'a>(lines: &'a [PluginLine], sc: &str, since: SystemTime) -> (Option<&'a PluginLine>, Option<&'a PluginLine>) {
    let after = |line: &&PluginLine| line.began() >= since - Duration::from_millis(5);
    let published = lines.iter().filter(after).find(|line| matches!(&line.event, PluginEvent::Published { sc: name, .. } if name == sc));
    let prepared = lines.iter().filter(after).find(|line| matches!(&line.event, PluginEvent::Prepared { pod, .. } if pod == sc));
    (published, prepared)
}

/// One step of a start: a name and its duration in each start measured.
pub struct Step {
    pub name: &'static str,
    pub durations: Vec<Duration>,
}

fn between(from: Option<Duration>, to: Option<Duration>) -> Option<Duration> {
    Some(to?.saturating_sub(from?))
}

/// The steps a StoppableContainer start goes through, in order; they add up to the start.
pub fn sc_steps(starts: &[ScStart]) -> Vec<Step> {
    type Span = fn(&ScStart) -> Option<Duration>;
    let spans: [(&'static str, Span); 8] = [
        ("operator creates the consumer pod", |s| s.consumer_created),
        ("scheduler binds it", |s| between(s.consumer_created, s.consumer_scheduled)),
        ("kubelet until NodePublishVolume", |s| between(s.consumer_scheduled, s.publish_began)),
        ("CSI publish (incl. waiting for the provider)", |s| between(s.publish_began, s.publish_ended)),
        ("kubelet: sandbox, container start", |s| between(s.publish_ended, s.wrapper_started)),
        ("wrapper until it asks for preparation", |s| between(s.wrapper_started, s.prepare_began)),
        ("rootfs preparation (node plugin)", |s| between(s.prepare_began, s.prepare_ended)),
        ("wrapper until the workload runs", |s| between(s.prepare_ended, s.workload_started)),
    ];
    let mut steps: Vec<Step> =
        spans.iter().map(|(name, span)| Step { name, durations: starts.iter().filter_map(span).collect() }).collect();
    steps.push(Step {
        name: "kubelet reports Ready",
        durations: starts.iter().filter_map(|s| between(s.workload_started, Some(s.ready))).collect(),
    });
    steps
}

/// Facts of a StoppableContainer start that overlap the steps: the provider's own start.
pub fn sc_side_facts(starts: &[ScStart]) -> Vec<Step> {
    vec![
        Step { name: "  of which the publish waited for the provider", durations: starts.iter().filter_map(|s| s.provider_wait).collect() },
        Step { name: "  provider pod created (after the patch)", durations: starts.iter().filter_map(|s| s.provider_created).collect() },
        Step {
            name: "  provider reported running (after the patch)",
            durations: starts.iter().filter_map(|s| s.provider_running).collect(),
        },
    ]
}

pub fn plain_steps(starts: &[PlainStart]) -> Vec<Step> {
    vec![
        Step { name: "scheduler binds it", durations: starts.iter().filter_map(|s| s.scheduled).collect() },
        Step {
            name: "kubelet: sandbox, container start",
            durations: starts.iter().filter_map(|s| between(s.scheduled, s.container_started)).collect(),
        },
        Step {
            name: "kubelet reports Ready",
            durations: starts.iter().filter_map(|s| between(s.container_started, Some(s.ready))).collect(),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(value: u64) -> Option<Duration> {
        Some(Duration::from_millis(value))
    }

    fn start() -> ScStart {
        ScStart {
            consumer_created: ms(20),
            consumer_scheduled: ms(30),
            provider_created: ms(40),
            provider_running: ms(900),
            publish_began: ms(130),
            publish_ended: ms(1000),
            provider_wait: ms(850),
            wrapper_started: ms(1400),
            prepare_began: ms(1410),
            prepare_ended: ms(1440),
            workload_started: ms(1450),
            ready: Duration::from_millis(2100),
        }
    }

    #[test]
    fn the_steps_of_a_start_add_up_to_it() {
        let steps = sc_steps(&[start()]);
        let total: Duration = steps.iter().map(|step| step.durations[0]).sum();
        assert_eq!(total, Duration::from_millis(2100));
        let publish = steps.iter().find(|step| step.name.starts_with("CSI publish")).expect("a publish step");
        assert_eq!(publish.durations, vec![Duration::from_millis(870)]);
    }

    #[test]
    fn a_missing_moment_leaves_out_only_the_steps_it_bounds() {
        let steps = sc_steps(&[ScStart { wrapper_started: None, ..start() }]);
        let empty: Vec<&str> = steps.iter().filter(|step| step.durations.is_empty()).map(|step| step.name).collect();
        assert_eq!(empty, vec!["kubelet: sandbox, container start", "wrapper until it asks for preparation"]);
    }

    #[test]
    fn plugin_lines_are_matched_to_the_start_by_name_and_time() {
        let at = |ms: u64| SystemTime::UNIX_EPOCH + Duration::from_millis(ms);
        let published = |sc: &str, end: u64| PluginLine {
            at: at(end),
            event: PluginEvent::Published { sc: sc.into(), elapsed: Duration::from_millis(100), provider_wait: Duration::ZERO },
        };
        let lines = vec![published("ns/a", 1_000), published("ns/b", 5_100), published("ns/a", 5_200)];
        let (found, prepared) = plugin_moments(&lines, "ns/a", at(5_000));
        assert_eq!(found.map(|line| line.at), Some(at(5_200)));
        assert!(prepared.is_none());
        assert_eq!(offset(at(5_000), at(4_000)), Duration::ZERO);
    }
}
