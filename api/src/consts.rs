//! API identity: every name that two components must spell the same way lives here, and only here.

/// API group of both custom resources (kept from the Go operator so existing manifests apply).
pub const GROUP: &str = "stoppablecontainer.xtlsoft.top";
/// API version of both custom resources.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` as written in manifests.
pub const API_VERSION: &str = "stoppablecontainer.xtlsoft.top/v1alpha1";
/// Kind of the user-facing resource.
pub const SC_KIND: &str = "StoppableContainer";
/// Kind of the live incarnation the operator creates (same name as its StoppableContainer).
pub const SCI_KIND: &str = "StoppableContainerInstance";

/// Name of the CSI driver (the `CSIDriver` object, the plugin's `GetPluginInfo` name, and the
/// `csi.driver` of the consumer's inline volume).
pub const CSI_DRIVER_NAME: &str = "rootfs.stoppablecontainer.xtlsoft.top";

/// Finalizer the operator keeps on a StoppableContainer until its pods and instance are gone
/// (same string as the Go operator, so resources it created are finalized by us).
pub const SC_FINALIZER: &str = "stoppablecontainer.xtlsoft.top/finalizer";
/// Finalizer the operator keeps on a StoppableContainerInstance until its pods are gone.
pub const SCI_FINALIZER: &str = "stoppablecontainerinstance.xtlsoft.top/finalizer";
/// Finalizer the operator puts on a StoppableContainer before its first start; the node plugin
/// that holds the SC's persistent data releases it after deleting that data. The operator releases
/// it when that node's plugin reports the data deleted (`node_report`), or when the data node no
/// longer exists in the cluster.
pub const NODE_DATA_FINALIZER: &str = "rootfs.stoppablecontainer.xtlsoft.top/node-data";

/// Prefix of the ConfigMaps, one per node in the release namespace, in which the node plugin
/// reports the StoppableContainer data it deleted (see `node_report`).
pub const NODE_REPORT_NAME_PREFIX: &str = "sc-node-data.";
/// Annotation on a report ConfigMap holding its node's full name (the ConfigMap's name may be cut).
pub const NODE_REPORT_NODE_ANNOTATION: &str = "stoppablecontainer.xtlsoft.top/node";
/// `app.kubernetes.io/component` label of the report ConfigMaps.
pub const NODE_REPORT_COMPONENT: &str = "node-data-report";
/// Prefix of the ConfigMaps, one per node in the release namespace, in which the node plugin
/// reports how much of its own filesystem each StoppableContainer published there uses (see
/// `node_report`).
pub const NODE_USAGE_NAME_PREFIX: &str = "sc-node-usage.";
/// `app.kubernetes.io/component` label of the usage ConfigMaps.
pub const NODE_USAGE_COMPONENT: &str = "node-rootfs-usage";

/// Field manager for server-side apply by the operator.
pub const OPERATOR_FIELD_MANAGER: &str = "stoppablecontainer-operator";
/// Field manager for patches by the node plugin.
pub const CSI_FIELD_MANAGER: &str = "stoppablecontainer-csi";
/// Field manager for patches by `kubectl sc`.
pub const CLI_FIELD_MANAGER: &str = "kubectl-sc";

/// Label on every pod the operator creates; value [`MANAGED_BY_VALUE`].
pub const LABEL_MANAGED_BY: &str = "stoppablecontainer.xtlsoft.top/managed-by";
/// Value of [`LABEL_MANAGED_BY`].
pub const MANAGED_BY_VALUE: &str = "stoppablecontainer";
/// Label naming the StoppableContainerInstance (== StoppableContainer name) a pod belongs to.
pub const LABEL_INSTANCE: &str = "stoppablecontainer.xtlsoft.top/instance";
/// Label holding a pod's role: [`ROLE_PROVIDER`] or [`ROLE_CONSUMER`].
pub const LABEL_ROLE: &str = "stoppablecontainer.xtlsoft.top/role";
/// Role of the pod that runs the user's image with a pause binary (the overlay's lower layer).
pub const ROLE_PROVIDER: &str = "provider";
/// Role of the pod that runs the workload in the persistent rootfs.
pub const ROLE_CONSUMER: &str = "consumer";

/// Suffix of the provider pod's name: `<sc-name>-provider`. The consumer pod is named like the SC.
pub const PROVIDER_POD_SUFFIX: &str = "-provider";
/// Name of the provider pod's only container.
pub const PROVIDER_CONTAINER_NAME: &str = "rootfs";

/// Name of the inline CSI volume the operator adds to the consumer pod.
pub const ROOTFS_VOLUME_NAME: &str = "sc-rootfs";
/// Where the consumer containers mount that volume. The volume holds [`ROOTFS_SUBDIR`] (the
/// overlay) and [`CONTROL_SUBDIR`] (the node plugin's per-volume control socket).
pub const ROOTFS_VOLUME_MOUNT_PATH: &str = "/.sc";
/// Directory inside the volume where the overlay (the persistent root filesystem) is mounted.
pub const ROOTFS_SUBDIR: &str = "rootfs";
/// Directory inside the volume holding the node plugin's control socket.
pub const CONTROL_SUBDIR: &str = "control";
/// File name of the control socket inside [`CONTROL_SUBDIR`].
pub const CONTROL_SOCKET_NAME: &str = "prepare.sock";
/// Path of the rootfs as seen from a consumer container: `/.sc/rootfs`.
pub const CONSUMER_ROOTFS_PATH: &str = "/.sc/rootfs";
/// Path of the control socket as seen from a consumer container.
pub const CONSUMER_CONTROL_SOCKET_PATH: &str = "/.sc/control/prepare.sock";

/// Volume attribute on the inline CSI volume naming the StoppableContainer. It is only a hint to
/// find the SC: the node plugin checks that the mounting pod really is that SC's consumer.
pub const VOLUME_ATTR_SC_NAME: &str = "stoppablecontainer.xtlsoft.top/name";
/// Volume attribute (value `"true"`) on the provider pod's inline CSI volume: the node plugin
/// publishes there, read-only, its own directory holding only `sc-exec` (no StoppableContainer,
/// so never with [`VOLUME_ATTR_SC_NAME`]).
pub const VOLUME_ATTR_EXEC_WRAPPER: &str = "stoppablecontainer.xtlsoft.top/exec-wrapper";
/// Volume attribute naming the StoppableContainer whose persistent layer (the overlay's upper,
/// and the list of its opaque directories) a pod of the SC's own namespace reads, read-only:
/// the layer volume of `kubectl sc diff`. Never with the other two attributes.
pub const VOLUME_ATTR_LAYER_OF: &str = "stoppablecontainer.xtlsoft.top/layer-of";

/// Directory in the consumer containers where `sc-exec` is installed.
pub const EXEC_WRAPPER_DIR: &str = "/.sc-bin";
/// Path of the `sc-exec` binary inside consumer containers.
pub const EXEC_WRAPPER_PATH: &str = "/.sc-bin/sc-exec";

/// `PATH` of the exec-wrapper image (`ENV` in `images/exec-wrapper.Containerfile`): the runtime's
/// default directories, then [`FARM_BY_NAME_DIR`]. When the consumer container's `PATH` is exactly
/// this, the pod did not set `PATH`, so the workload gets the image's (or the runtime default),
/// while `kubectl exec <pod> -- python` still finds a program that lives only on the image's
/// `PATH` through the by-name links.
pub const WRAPPER_IMAGE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/.sc-path";
/// Directory of the consumer container's own filesystem where `sc-exec` keeps one link per program
/// name found on the workload's `PATH` (the last entry of [`WRAPPER_IMAGE_PATH`]).
pub const FARM_BY_NAME_DIR: &str = "/.sc-path";
/// `HOME` of the exec-wrapper image (`ENV` in its Containerfile). The runtime sets `HOME` from the
/// container's own `/etc/passwd` when the environment lacks it, which for the consumer would say
/// `/`; this value instead tells `sc-exec` that the pod did not set `HOME`, so the workload gets the
/// home of its account in the rootfs, as runc gives a plain container.
pub const WRAPPER_IMAGE_HOME: &str = "/.sc-home-unset";

/// Default data root on the node (an admin setting of the node plugin, never a user's).
pub const DEFAULT_DATA_ROOT: &str = "/var/lib/stoppablecontainer";
/// Value of the legacy `spec.hostPathPrefix` default; it is accepted and ignored.
pub const LEGACY_HOST_PATH_PREFIX: &str = "/var/lib/stoppablecontainer";

/// Longest StoppableContainer name: it becomes a label value (63) and the provider pod's name adds
/// [`PROVIDER_POD_SUFFIX`].
pub const MAX_SC_NAME_LEN: usize = 63 - PROVIDER_POD_SUFFIX.len();

/// Name of the provider pod of the StoppableContainer `sc_name`.
pub fn provider_pod_name(sc_name: &str) -> String {
    format!("{sc_name}{PROVIDER_POD_SUFFIX}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_paths_agree_with_their_parts() {
        assert_eq!(API_VERSION, format!("{GROUP}/{VERSION}"));
        assert_eq!(CONSUMER_ROOTFS_PATH, format!("{ROOTFS_VOLUME_MOUNT_PATH}/{ROOTFS_SUBDIR}"));
        assert_eq!(CONSUMER_CONTROL_SOCKET_PATH, format!("{ROOTFS_VOLUME_MOUNT_PATH}/{CONTROL_SUBDIR}/{CONTROL_SOCKET_NAME}"));
        assert_eq!(EXEC_WRAPPER_PATH, format!("{EXEC_WRAPPER_DIR}/sc-exec"));
        assert!(WRAPPER_IMAGE_PATH.ends_with(&format!(":{FARM_BY_NAME_DIR}")));
        assert!(provider_pod_name(&"a".repeat(MAX_SC_NAME_LEN)).len() <= 63);
    }
}
