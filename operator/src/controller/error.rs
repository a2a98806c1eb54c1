//! Why a reconcile failed: one variant per step, so the failure metric and `error_policy` can tell
//! which step failed, and a conflict (a write against a stale read, fixed by reading again) from
//! a lost connection or a refusal.

use kube::runtime::finalizer;

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The StoppableContainer came without a namespace (the CRD is namespaced, so the API server
    /// never sends one; this guards against a broken cache).
    #[error("StoppableContainer {0:?} has no namespace")]
    NoNamespace(String),
    /// Reading a child or a fact failed.
    #[error("reading {what} failed: {source}")]
    Read {
        /// What was read.
        what: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// Creating a pod failed (a name already taken is not an error: the pod that holds it is read).
    #[error("creating pod {pod:?} failed: {source}")]
    CreatePod {
        /// The pod's name.
        pod: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// Deleting a pod failed (one already gone, or replaced by another UID, is not an error).
    #[error("deleting pod {pod:?} failed: {source}")]
    DeletePod {
        /// The pod's name.
        pod: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// Recording a created pod's UID in the instance status failed; the pod exists unrecorded,
    /// and the next reconcile deletes and replaces it.
    #[error("recording the UID of the created pod {pod:?} in the instance status failed: {source}")]
    RecordPodUid {
        /// The pod's name.
        pod: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// Creating the claim failed (a name already taken is not an error: the claim that holds it
    /// is read and judged).
    #[error("creating the claim {claim:?} failed: {source}")]
    CreateClaim {
        /// The claim's name.
        claim: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// Recording the created claim's UID in the instance failed; the next reconcile records it
    /// (it carries this StoppableContainer's UID and is newer than it: see `storage::claim::judge`).
    #[error("recording the UID of the created claim {claim:?} in the instance failed: {source}")]
    RecordClaimUid {
        /// The claim's name.
        claim: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// Deleting the claim failed (one already gone, or replaced by another UID, is not an error).
    #[error("deleting the claim {claim:?} failed: {source}")]
    DeleteClaim {
        /// The claim's name.
        claim: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// Setting the claim's owner references (by whenDeleted) failed.
    #[error("setting the owner references of the claim {claim:?} failed: {source}")]
    SetClaimOwners {
        /// The claim's name.
        claim: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// Applying the instance failed.
    #[error("applying the instance failed: {source}")]
    ApplyInstance {
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// Deleting the instance failed.
    #[error("deleting the instance failed: {source}")]
    DeleteInstance {
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// Recording the data node in the status failed; no provider is created until it is.
    #[error("recording node {node:?} as the data node failed: {source}")]
    RecordDataNode {
        /// The node.
        node: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// Adding or removing one of the operator's finalizers failed.
    #[error("updating finalizer {finalizer} failed: {source}")]
    SetFinalizer {
        /// The finalizer.
        finalizer: &'static str,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// Writing the StoppableContainer's status failed.
    #[error("writing the status failed: {source}")]
    WriteStatus {
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// Writing the instance's status failed.
    #[error("writing the instance status failed: {source}")]
    WriteInstanceStatus {
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// kube's finalizer helper failed to add or remove `SC_FINALIZER`, or the reconcile inside
    /// it failed.
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<finalizer::Error<Error>>),
}

/// What kind of failure an API error is, for the requeue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// 409: the object changed since it was read; reading it again is all it takes.
    Conflict,
    /// No answer from the API server (connection, TLS, timeout): it may be back soon or not.
    Unreachable,
    /// The API server answered with a refusal (RBAC, validation, 5xx), or the object is broken.
    Refused,
}

impl Error {
    /// For `Read(..)` and the like: the error of reading `what`.
    pub fn read(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let what = what.into();
        move |source| Error::Read { what, source }
    }

    /// Label of the error in metrics: the step that failed.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::NoNamespace(_) => "no_namespace",
            Error::Read { .. } => "read",
            Error::CreatePod { .. } => "create_pod",
            Error::DeletePod { .. } => "delete_pod",
            Error::RecordPodUid { .. } => "record_pod_uid",
            Error::CreateClaim { .. } => "create_claim",
            Error::RecordClaimUid { .. } => "record_claim_uid",
            Error::DeleteClaim { .. } => "delete_claim",
            Error::SetClaimOwners { .. } => "set_claim_owners",
            Error::ApplyInstance { .. } => "apply_instance",
            Error::DeleteInstance { .. } => "delete_instance",
            Error::RecordDataNode { .. } => "record_data_node",
            Error::SetFinalizer { .. } => "set_finalizer",
            Error::WriteStatus { .. } => "write_status",
            Error::WriteInstanceStatus { .. } => "write_instance_status",
            Error::Finalizer(error) => match error.as_ref() {
                finalizer::Error::ApplyFailed(inner) | finalizer::Error::CleanupFailed(inner) => inner.kind(),
                finalizer::Error::AddFinalizer(_) | finalizer::Error::RemoveFinalizer(_) => "finalizer",
                finalizer::Error::UnnamedObject | finalizer::Error::InvalidFinalizer => "finalizer",
            },
        }
    }

    /// What kind of failure this is.
    pub fn cause(&self) -> Cause {
        let source = match self {
            Error::NoNamespace(_) => return Cause::Refused,
            Error::Read { source, .. }
            | Error::CreatePod { source, .. }
            | Error::DeletePod { source, .. }
            | Error::RecordPodUid { source, .. }
            | Error::CreateClaim { source, .. }
            | Error::RecordClaimUid { source, .. }
            | Error::DeleteClaim { source, .. }
            | Error::SetClaimOwners { source, .. }
            | Error::ApplyInstance { source }
            | Error::DeleteInstance { source }
            | Error::RecordDataNode { source, .. }
            | Error::SetFinalizer { source, .. }
            | Error::WriteStatus { source }
            | Error::WriteInstanceStatus { source } => source,
            Error::Finalizer(error) => match error.as_ref() {
                finalizer::Error::ApplyFailed(inner) | finalizer::Error::CleanupFailed(inner) => return inner.cause(),
                finalizer::Error::AddFinalizer(source) | finalizer::Error::RemoveFinalizer(source) => source,
                finalizer::Error::UnnamedObject | finalizer::Error::InvalidFinalizer => return Cause::Refused,
            },
        };
        cause_of(source)
    }
}

fn cause_of(error: &kube::Error) -> Cause {
    match error {
        kube::Error::Api(status) if status.code == 409 => Cause::Conflict,
        kube::Error::Api(_) => Cause::Refused,
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::HttpError(_) => Cause::Unreachable,
        _ => Cause::Refused,
    }
}

/// Whether `error` is the API server's answer `code`.
pub(super) fn is_status(error: &kube::Error, code: u16) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == code)
}

#[cfg(test)]
mod tests {
    use kube::core::Status;

    use super::*;

    fn api(code: u16) -> kube::Error {
        kube::Error::Api(Box::new(Status { code, ..Status::default() }))
    }

    #[test]
    fn each_step_has_its_label_and_a_conflict_is_told_from_a_refusal() {
        let conflict = Error::SetFinalizer { finalizer: "f", source: api(409) };
        assert_eq!((conflict.kind(), conflict.cause()), ("set_finalizer", Cause::Conflict));
        let forbidden = Error::CreatePod { pod: "p".into(), source: api(403) };
        assert_eq!((forbidden.kind(), forbidden.cause()), ("create_pod", Cause::Refused));
        let inside = Error::Finalizer(Box::new(finalizer::Error::ApplyFailed(Error::WriteStatus { source: api(409) })));
        assert_eq!((inside.kind(), inside.cause()), ("write_status", Cause::Conflict), "the step inside the finalizer helper");
    }
}
