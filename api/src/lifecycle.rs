//! The lifecycle vocabulary of a StoppableContainer's status, once: the condition types and
//! their reasons, as the operator writes them and `kubectl sc`, the benchmark and users' tools
//! read them. A rename here is a compile error everywhere it matters, not a silent mismatch.
//!
//! The phase itself is [`crate::Phase`]; `Ready`'s reason is the phase's name.

/// Condition types of a StoppableContainer.
pub mod condition {
    /// True only when the phase is Running; the reason is the phase (as earlier releases).
    pub const READY: &str = "Ready";
    /// Whether the spec passed validation.
    pub const SPEC_VALID: &str = "SpecValid";
    /// Whether the consumer pod is ready.
    pub const CONSUMER_READY: &str = "ConsumerReady";
    /// Whether the provider pod is ready.
    pub const PROVIDER_READY: &str = "ProviderReady";
    /// Whether the persistent rootfs is mounted in the consumer pod.
    pub const ROOTFS_VOLUME: &str = "RootfsVolume";
    /// Whether a node holds the data, and whether that node still exists.
    pub const DATA_NODE: &str = "DataNode";
    /// True when the template changed since the running consumer pod was created.
    pub const RESTART_REQUIRED: &str = "RestartRequired";
    /// True when a pod the operator must create exists and is not its own.
    pub const NAME_CONFLICT: &str = "NameConflict";
    /// True when `spec.hostPathPrefix` is set to a value other than the legacy default.
    pub const HOST_PATH_PREFIX_IGNORED: &str = "HostPathPrefixIgnored";
    /// True while the provider of a running workload is lost (deleted, terminated or being
    /// deleted) and until its replacement is ready.
    pub const PROVIDER_LOST: &str = "ProviderLost";
    /// Whether the workload can run as templated with its image's config (ENTRYPOINT, CMD, USER)
    /// as the data node's container runtime reported it; Unknown until it is reported.
    pub const IMAGE_CONFIG: &str = "ImageConfig";
    /// With `spec.storage` only: whether the claim `<name>-rootfs` is this StoppableContainer's
    /// (its UID the one the operator recorded when it created it) and bound.
    pub const STORAGE: &str = "Storage";

    /// Every condition type, in the order the operator writes them.
    pub const ALL: [&str; 12] = [
        READY,
        SPEC_VALID,
        CONSUMER_READY,
        PROVIDER_READY,
        ROOTFS_VOLUME,
        DATA_NODE,
        RESTART_REQUIRED,
        NAME_CONFLICT,
        PROVIDER_LOST,
        IMAGE_CONFIG,
        STORAGE,
        HOST_PATH_PREFIX_IGNORED,
    ];
}

/// Reasons of the conditions (besides kubelet's own waiting reasons, which `ConsumerReady` and
/// `ProviderReady` pass on as kubelet wrote them, and `Ready`'s, which is the phase).
pub mod reason {
    /// `SpecValid` True.
    pub const VALID: &str = "Valid";
    /// `SpecValid` False; `ImageConfig` Unknown while the spec is invalid.
    pub const INVALID_SPEC: &str = "InvalidSpec";

    /// `ConsumerReady`/`ProviderReady` True.
    pub const POD_READY: &str = "PodReady";
    /// No pod.
    pub const NOT_CREATED: &str = "NotCreated";
    /// Waiting for the scheduler.
    pub const SCHEDULING: &str = "Scheduling";
    /// The scheduler cannot place the pod (its message says why).
    pub const UNSCHEDULABLE: &str = "Unschedulable";
    /// Containers are being created.
    pub const CONTAINER_CREATING: &str = "ContainerCreating";
    /// Containers run and are not ready.
    pub const NOT_READY: &str = "NotReady";
    /// The pod is terminating.
    pub const TERMINATING: &str = "Terminating";
    /// Every container exited and none restarts.
    pub const POD_FINISHED: &str = "PodFinished";
    /// A pod with our pod's name is someone else's (also `NameConflict` True).
    pub const POD_NOT_OWNED: &str = "PodNotOwned";
    /// A pod claims to be ours and its UID is not recorded: deleted and replaced.
    pub const NOT_CREATED_BY_OPERATOR: &str = "NotCreatedByOperator";

    /// `RootfsVolume` True.
    pub const MOUNTED: &str = "Mounted";
    /// `RootfsVolume` False: the provider is ready and the consumer pod is being created.
    pub const MOUNTING: &str = "Mounting";
    /// `RootfsVolume` False: no running consumer pod.
    pub const NOT_MOUNTED: &str = "NotMounted";

    /// `DataNode` True.
    pub const ASSIGNED: &str = "Assigned";
    /// `DataNode` False: never started.
    pub const NOT_ASSIGNED: &str = "NotAssigned";
    /// `DataNode` False: the node that holds the data no longer exists.
    pub const NODE_GONE: &str = "NodeGone";

    /// `RestartRequired` True.
    pub const TEMPLATE_CHANGED: &str = "TemplateChanged";
    /// `RestartRequired` False.
    pub const UP_TO_DATE: &str = "UpToDate";

    /// `NameConflict` True: an instance of our name is controlled by something else.
    pub const INSTANCE_NOT_OWNED: &str = "InstanceNotOwned";
    /// `NameConflict` False.
    pub const NO_CONFLICT: &str = "NoConflict";

    /// `HostPathPrefixIgnored` True.
    pub const ADMIN_SETTING: &str = "AdminSetting";

    /// `ProviderLost` True: the recorded provider pod no longer exists.
    pub const PROVIDER_DELETED: &str = "ProviderDeleted";
    /// `ProviderLost` True: the provider pod terminated for good.
    pub const PROVIDER_TERMINATED: &str = "ProviderTerminated";
    /// `ProviderLost` True: the provider pod is being deleted.
    pub const PROVIDER_TERMINATING: &str = "ProviderTerminating";
    /// `ProviderLost` False: the running workload's provider is in place.
    pub const PROVIDER_IN_PLACE: &str = "ProviderInPlace";
    /// `ProviderLost` False: no workload runs.
    pub const NO_WORKLOAD: &str = "NoWorkload";

    /// `ImageConfig` True: the argv, user and directory are known.
    pub const RESOLVED: &str = "Resolved";
    /// `ImageConfig` True: the runtime gave no config, and the template's command needs none.
    pub const TEMPLATE_COMMAND: &str = "TemplateCommand";
    /// `ImageConfig` False: neither the image nor the template gives a command.
    pub const NO_COMMAND: &str = "NoCommand";
    /// `ImageConfig` False: runAsNonRoot against an image user that is root or a name.
    pub const RUN_AS_NON_ROOT: &str = "RunAsNonRoot";
    /// `ImageConfig` False: the image's config is needed and the runtime gave none.
    pub const CONFIG_UNAVAILABLE: &str = "ConfigUnavailable";
    /// `ImageConfig` Unknown: not reported yet.
    pub const NOT_REPORTED: &str = "NotReported";

    /// `Storage` True: the claim is ours and bound to a volume.
    pub const CLAIM_BOUND: &str = "ClaimBound";
    /// `Storage` False: the claim is ours and waits for a volume (Kubernetes' `Pending`; a class
    /// that binds on first use binds when the consumer pod is scheduled).
    pub const CLAIM_PENDING: &str = "ClaimPending";
    /// `Storage` False: the claim is not created yet (it is at the first start).
    pub const CLAIM_NOT_CREATED: &str = "ClaimNotCreated";
    /// `Storage` False: a claim with the claim's name exists and is not the one the operator
    /// created; it is never used.
    pub const CLAIM_NOT_OWNED: &str = "ClaimNotOwned";
    /// `Storage` False: the claim the operator created is gone, or Kubernetes reports it `Lost`.
    pub const CLAIM_LOST: &str = "ClaimLost";
}

#[cfg(test)]
mod tests {
    use super::condition;

    #[test]
    fn condition_types_are_distinct() {
        let mut types = condition::ALL.to_vec();
        types.sort_unstable();
        types.dedup();
        assert_eq!(types.len(), condition::ALL.len());
    }
}
