//! The status of a StoppableContainer and its instance, computed from what the operator observed.
//! Pure: the controller gathers the facts, this module says what they mean. By concern:
//! [`progress`] (what a pod is doing, kubelet's reasons), [`provider_loss`], [`image`] (the
//! image's config against the template), [`redo`] (a start stuck before anything ran),
//! [`conditions`] (the whole status), [`phase`] (phase, message, the instance's status) and
//! [`notices`] (the Events a change calls for).

pub mod conditions;
pub mod image;
pub mod notices;
pub mod phase;
pub mod progress;
pub mod provider_loss;
pub mod redo;

#[cfg(test)]
mod fixtures;

use k8s_openapi::api::core::v1::{Container, Pod, PodSecurityContext};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use sc_api::exec_config::ArgvSource;
use sc_api::image_config::ImageSummary;
use sc_api::process::{ArgvError, ContainerRef, verify_run_as_non_root, working_dir, workload_argv};
use sc_api::stoppable_container::ImageStatus;
use sc_api::{InstancePhase, Phase, StoppableContainerInstanceStatus, StoppableContainerStatus};

use crate::ownership::RecordedPods;
use crate::provider_pod::has_terminated;

pub use self::conditions::*;
pub use self::image::*;
pub use self::notices::*;
pub use self::phase::*;
pub use self::progress::*;
pub use self::provider_loss::*;
pub use self::redo::*;

/// Condition types of a StoppableContainer (the API's vocabulary, [`sc_api::lifecycle`]).
pub use sc_api::lifecycle::condition;

/// A pod the operator looked for, as found (see [`crate::ownership::classify`]).
#[derive(Clone, Copy, Debug)]
pub enum Found<'a> {
    /// No pod by that name.
    Absent,
    /// The operator's pod: its UID is the one the instance status records.
    Owned(&'a Pod),
    /// A pod by that name that claims to be the operator's (controller reference to the instance,
    /// or the operator's labels) but whose UID is not recorded: forged, or created by an operator
    /// that crashed before recording it. Never trusted; deleted and replaced.
    Unrecorded(&'a Pod),
    /// A pod by that name that does not claim to be the operator's: never touched.
    Foreign(&'a Pod),
}

impl<'a> Found<'a> {
    /// The operator's pod, if that is what was found.
    pub fn owned(self) -> Option<&'a Pod> {
        match self {
            Found::Owned(pod) => Some(pod),
            Found::Absent | Found::Unrecorded(_) | Found::Foreign(_) => None,
        }
    }

    /// The pod that claims to be the operator's without being it, if that is what was found.
    pub fn unrecorded(self) -> Option<&'a Pod> {
        match self {
            Found::Unrecorded(pod) => Some(pod),
            Found::Absent | Found::Owned(_) | Found::Foreign(_) => None,
        }
    }
}

/// The message about a pod that claims to be ours and is not, for conditions, status and Events.
pub fn unrecorded_pod_message(pod: &Pod, what: &str) -> String {
    format!(
        "pod {:?} (uid {}) claims to be this StoppableContainer's {what} but was not created by the operator (its UID is not the one recorded in the instance status); it is deleted and the operator creates its own",
        pod_name(pod),
        pod.metadata.uid.as_deref().unwrap_or("unknown")
    )
}

pub(crate) fn pod_name(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}
