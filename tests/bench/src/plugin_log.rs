//! The node plugin's own account of a start, from its log (plain format, as the chart installs
//! it): when each `NodePublishVolume` finished, how long it took and how much of that it waited
//! for the provider container; when each rootfs preparation finished and how long it took.

use std::str::FromStr;
use std::time::{Duration, SystemTime};

use k8s_openapi::jiff::Timestamp;

#[derive(Clone, Debug, PartialEq)]
pub enum PluginEvent {
    /// `NodePublishVolume` succeeded for StoppableContainer `sc` (`namespace/name`).
    Published { sc: String, elapsed: Duration, provider_wait: Duration },
    /// The consumer `pod` (`namespace/name`, host PID `pid`) had its rootfs prepared.
    Prepared { pod: String, pid: Option<i32>, elapsed: Duration },
}

#[derive(Clone, Debug, PartialEq)]
pub struct PluginLine {
    /// When the plugin logged it: the end of the operation.
    pub at: SystemTime,
    pub event: PluginEvent,
}

impl PluginLine {
    /// When the operation began.
    pub fn began(&self) -> SystemTime {
        let elapsed = match &self.event {
            PluginEvent::Published { elapsed, .. } | PluginEvent::Prepared { elapsed, .. } => *elapsed,
        };
        self.at - elapsed
    }
}

/// One line of `tracing`'s plain format: `<RFC 3339 time>  INFO <target>: <message> k=v ...`.
pub fn parse_line(line: &str) -> Option<PluginLine> {
    let (time, rest) = line.trim_start().split_once(char::is_whitespace)?;
    let at = SystemTime::from(Timestamp::from_str(time).ok()?);
    let (_, message) = rest.split_once(": ")?;
    let event = if message.starts_with("published ") {
        PluginEvent::Published {
            sc: field(message, "sc")?.to_owned(),
            elapsed: millis(field(message, "elapsed_ms")?)?,
            provider_wait: millis(field(message, "provider_wait_ms")?)?,
        }
    } else if message.starts_with("prepared the consumer's rootfs ") {
        PluginEvent::Prepared {
            pod: field(message, "pod")?.to_owned(),
            pid: field(message, "pid").and_then(|pid| pid.parse().ok()),
            elapsed: millis(field(message, "elapsed_ms")?)?,
        }
    } else {
        return None;
    };
    Some(PluginLine { at, event })
}

/// The value of ` key=` up to the next space.
fn field<'a>(message: &'a str, key: &str) -> Option<&'a str> {
    let start = message.find(&format!(" {key}="))? + key.len() + 2;
    message[start..].split(' ').next()
}

fn millis(text: &str) -> Option<Duration> {
    let value: f64 = text.parse().ok()?;
    (value.is_finite() && value >= 0.0).then(|| Duration::from_secs_f64(value / 1e3))
}

pub fn parse_log(log: &str) -> Vec<PluginLine> {
    log.lines().filter_map(parse_line).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PUBLISHED: &str = "2026-11-22T09:40:01.250000Z  INFO csi_driver::node: published volume_id=csi-5f2a sc=sc-bench/resume-0 (uid 0b1c) target=/var/lib/kubelet/pods/u/volumes/kubernetes.io~csi/sc-rootfs/mount lower=/proc/4242/root elapsed_ms=812.5 provider_wait_ms=640.25";
    const PREPARED: &str = "2026-11-22T09:40:02.000000Z  INFO csi_driver::control: prepared the consumer's rootfs volume_id=csi-5f2a pod=sc-bench/resume-0 pid=5151 elapsed_ms=20 report=[\"/proc\", \"/dev\"]";

    fn at(text: &str) -> SystemTime {
        SystemTime::from(Timestamp::from_str(text).expect("a valid timestamp"))
    }

    #[test]
    fn a_publish_line_gives_its_durations_and_its_start() {
        let line = parse_line(PUBLISHED).expect("a publish line");
        assert_eq!(
            line.event,
            PluginEvent::Published {
                sc: "sc-bench/resume-0".into(),
                elapsed: Duration::from_micros(812_500),
                provider_wait: Duration::from_micros(640_250)
            }
        );
        assert_eq!(line.at, at("2026-11-22T09:40:01.25Z"));
        assert_eq!(line.began(), at("2026-11-22T09:40:00.4375Z"));
    }

    #[test]
    fn a_prepare_line_names_the_pod_and_the_wrapper_pid() {
        let line = parse_line(PREPARED).expect("a prepare line");
        assert_eq!(
            line.event,
            PluginEvent::Prepared { pod: "sc-bench/resume-0".into(), pid: Some(5151), elapsed: Duration::from_millis(20) }
        );
    }

    #[test]
    fn other_lines_and_malformed_figures_are_skipped() {
        let log = [
            "2026-11-22T09:40:00.000000Z DEBUG csi_driver::control: serving the control socket volume_id=csi-5f2a",
            "not a log line",
            "2026-11-22T09:40:01.250000Z  INFO csi_driver::node: published volume_id=x sc=a/b elapsed_ms=abc provider_wait_ms=1",
            "2026-11-22T09:40:01.250000Z  INFO csi_driver::node: published volume_id=x sc=a/b elapsed_ms=-1 provider_wait_ms=1",
            PUBLISHED,
            PREPARED,
        ]
        .join("\n");
        assert_eq!(parse_log(&log).len(), 2);
    }
}
