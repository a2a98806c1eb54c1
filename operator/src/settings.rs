//! Operator-wide settings that shape the pods it builds (from flags; see `cli`).

/// What the pod builders need to know about the installation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodSettings {
    /// Image holding `/.sc-bin/sc-exec`: the consumer's workload container runs it, and the
    /// provider's init container installs `sc-exec` from it.
    pub exec_wrapper_image: String,
    /// `imagePullPolicy` for the exec-wrapper image.
    pub exec_wrapper_pull_policy: String,
    /// How long `sc-exec` waits for the node plugin to prepare the rootfs before failing.
    pub rootfs_wait_seconds: u32,
    /// Grace period of the provider pod (it runs only a pause process).
    pub provider_grace_period_seconds: i64,
}

impl PodSettings {
    /// Settings used by the snapshot tests; the values are what a default install uses.
    pub fn for_tests() -> Self {
        Self {
            exec_wrapper_image: "ghcr.io/xtlsoft/stoppablecontainer/exec-wrapper:0.2.0".into(),
            exec_wrapper_pull_policy: "IfNotPresent".into(),
            rootfs_wait_seconds: 120,
            provider_grace_period_seconds: 5,
        }
    }
}
