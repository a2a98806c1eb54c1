//! Durations as the plugin's log lines carry them. The `*_ms` fields of the `published` and
//! `prepared the consumer's rootfs` lines (`elapsed_ms`, `provider_wait_ms`, `image_read_ms`)
//! are read by the cluster benchmark, so they keep this one unit.

use std::time::Duration;

/// A duration in milliseconds with microsecond precision, for log fields.
pub(crate) fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}
