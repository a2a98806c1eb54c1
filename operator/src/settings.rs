//! Operator-wide settings that shape the pods it builds (from flags; see `cli`).

use sc_api::rootfs_size::{RootfsSize, format_bytes};

/// What the pod builders need to know about the installation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodSettings {
    /// Image holding `/.sc-bin/sc-exec`: the consumer's workload container runs it (the provider
    /// gets the node DaemonSet's copy of it through the node plugin's exec-wrapper volume).
    pub exec_wrapper_image: String,
    /// `imagePullPolicy` for the exec-wrapper image.
    pub exec_wrapper_pull_policy: String,
    /// How long `sc-exec` waits for the node plugin to prepare the rootfs before failing.
    pub rootfs_wait_seconds: u32,
    /// Grace period of the provider pod (it runs only a pause process).
    pub provider_grace_period_seconds: i64,
    /// The administrator's default and maximum size of a root filesystem.
    pub rootfs: RootfsLimits,
}

impl PodSettings {
    /// Settings used by the snapshot tests; the values are what a default install uses.
    pub fn for_tests() -> Self {
        Self {
            exec_wrapper_image: "ghcr.io/xtlsoft/stoppablecontainer/exec-wrapper:0.2.0".into(),
            exec_wrapper_pull_policy: "IfNotPresent".into(),
            rootfs_wait_seconds: 120,
            provider_grace_period_seconds: 5,
            rootfs: RootfsLimits { default_bytes: 10 << 30, max_bytes: 100 << 30 },
        }
    }
}

/// The administrator's limits on the size of a root filesystem (`--default-rootfs-size`,
/// `--max-rootfs-size`): the size of one whose StoppableContainer names none, and the most one
/// may ask for. Both are valid rootfs sizes and the default is at most the maximum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RootfsLimits {
    default_bytes: u64,
    max_bytes: u64,
}

impl RootfsLimits {
    /// The limits from the two flags' values; refused when the default is above the maximum.
    pub fn new(default: RootfsSize, max: RootfsSize) -> Result<Self, String> {
        if default > max {
            return Err(format!(
                "--default-rootfs-size {default} is more than --max-rootfs-size {max}: every StoppableContainer without \
                 spec.rootfsSize would ask for more than it may have; lower the default or raise the maximum"
            ));
        }
        Ok(Self { default_bytes: default.bytes(), max_bytes: max.bytes() })
    }

    /// The size of a root filesystem whose StoppableContainer names none, in bytes.
    pub fn default_bytes(&self) -> u64 {
        self.default_bytes
    }

    /// The most a StoppableContainer may ask for, in bytes.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }
}

impl std::fmt::Display for RootfsLimits {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "default {}, maximum {}", format_bytes(self.default_bytes), format_bytes(self.max_bytes))
    }
}

#[cfg(test)]
mod tests {
    use sc_api::rootfs_size::parse_size;

    use super::*;

    fn size(text: &str) -> RootfsSize {
        parse_size(text).expect("a valid size")
    }

    #[test]
    fn the_default_may_not_exceed_the_maximum() {
        let limits = RootfsLimits::new(size("10Gi"), size("100Gi")).expect("valid limits");
        assert_eq!((limits.default_bytes(), limits.max_bytes()), (10 << 30, 100 << 30));
        assert_eq!(limits, PodSettings::for_tests().rootfs, "the tests use the defaults of a default install");
        assert_eq!(limits.to_string(), "default 10Gi, maximum 100Gi");
        assert!(RootfsLimits::new(size("100Gi"), size("100Gi")).is_ok(), "equal is fine");
        assert_eq!(
            RootfsLimits::new(size("200Gi"), size("100Gi")),
            Err("--default-rootfs-size 200Gi is more than --max-rootfs-size 100Gi: every StoppableContainer without \
                 spec.rootfsSize would ask for more than it may have; lower the default or raise the maximum"
                .to_owned())
        );
    }
}
