//! The pods of a node that is gone, for an SC whose root filesystem is on a claim: its data is
//! not on the node, so the workload can come back elsewhere, once the claim is free of that
//! node. Kubernetes' own rules decide when that is (never two writers): the Node object deleted
//! (Kubernetes' pod garbage collector then force-deletes its pods too), or the node marked with
//! the `node.kubernetes.io/out-of-service` taint by an administrator who knows it is down (the
//! non-graceful node shutdown). A node that is merely NotReady may still run the workload, and
//! its pods are left alone.

use k8s_openapi::api::core::v1::Node;

/// The taint an administrator puts on a node known to be shut down.
pub const OUT_OF_SERVICE_TAINT: &str = "node.kubernetes.io/out-of-service";

/// What was read about the node a pod is bound to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeState {
    /// The Node object exists and is not marked out of service (NotReady or not).
    Present,
    /// The Node object is gone.
    Gone,
    /// The node carries [`OUT_OF_SERVICE_TAINT`].
    OutOfService,
}

impl NodeState {
    /// The state of a node as read (None: it is gone).
    pub fn of(node: Option<&Node>) -> NodeState {
        let Some(node) = node else { return NodeState::Gone };
        let taints = node.spec.as_ref().and_then(|spec| spec.taints.as_ref());
        if taints.into_iter().flatten().any(|taint| taint.key == OUT_OF_SERVICE_TAINT) {
            NodeState::OutOfService
        } else {
            NodeState::Present
        }
    }

    /// Why the pods of node `node` are deleted, when they are.
    pub fn loss(self, node: &str) -> Option<String> {
        match self {
            NodeState::Present => None,
            NodeState::Gone => Some(format!(
                "its node {node:?} no longer exists; the root filesystem is on its claim, so the workload can run on another node"
            )),
            NodeState::OutOfService => Some(format!(
                "its node {node:?} is out of service ({OUT_OF_SERVICE_TAINT} taint); the root filesystem is on its claim, so the \
                 workload can run on another node"
            )),
        }
    }
}
