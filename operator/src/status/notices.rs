//! The Events a change of status calls for, each said once.

use super::*;

/// An Event to publish about a change of status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// A Warning (else Normal).
    pub warning: bool,
    /// The Event's reason.
    pub reason: String,
    /// The Event's note.
    pub note: String,
}

impl Notice {
    fn warning(reason: &str, note: impl Into<String>) -> Self {
        Notice { warning: true, reason: reason.to_owned(), note: note.into() }
    }
}

/// The Events that the change from `previous` to `status` calls for. The previous status is the
/// memory (so an operator restart repeats nothing): each is said once, when it becomes true.
///
/// - A pod that gets stuck on a failing reason (`ErrImageNeverPull`, `CrashLoopBackOff`, ...): a
///   Warning with kubelet's reason and message, once per transition into that reason
///   (`ErrImagePull` and `ImagePullBackOff`, which kubelet alternates, are one).
/// - `ImageConfig` turning False, or False for another reason: a Warning with that reason.
/// - A phase change: an Event named after the new phase (a Warning for Failed, unless one of the
///   Warnings above already says why).
/// - `ProviderLost` whenever what is lost changes; `RestartRequired`, `NameConflict`,
///   `HostPathPrefixIgnored` turning True; `SpecValid` turning False (or False at the first
///   status).
pub fn transition_notices(previous: Option<&StoppableContainerStatus>, status: &StoppableContainerStatus) -> Vec<Notice> {
    let before = |type_: &str| previous.and_then(|previous| previous.conditions.iter().find(|c| c.type_ == type_));
    let mut notices = Vec::new();
    for (type_, role) in [(condition::CONSUMER_READY, "consumer"), (condition::PROVIDER_READY, "provider")] {
        let Some(current) = status.conditions.iter().find(|c| c.type_ == type_) else { continue };
        if current.status != "False" || !is_failing_reason(&current.reason) {
            continue;
        }
        let was = before(type_).filter(|old| old.status == "False").map(|old| reason_family(&old.reason));
        if was != Some(reason_family(&current.reason)) {
            notices.push(Notice::warning(&current.reason, format!("the {role} pod is in {}: {}", current.reason, current.message)));
        }
    }
    if let Some(current) = status.conditions.iter().find(|c| c.type_ == condition::IMAGE_CONFIG && c.status == "False") {
        let was = before(condition::IMAGE_CONFIG).filter(|old| old.status == "False").map(|old| old.reason.as_str());
        if was != Some(current.reason.as_str()) {
            notices.push(Notice::warning(&current.reason, current.message.clone()));
        }
    }
    let explained = !notices.is_empty();
    let old_phase = previous.and_then(|status| status.phase);
    let new_phase = status.phase.unwrap_or_default();
    if old_phase != Some(new_phase) && !(new_phase == Phase::Failed && explained) {
        notices.push(Notice {
            warning: new_phase == Phase::Failed,
            reason: new_phase.as_str().to_owned(),
            note: status.message.clone().unwrap_or_default(),
        });
    }
    let was_true = |type_: &str| before(type_).is_some_and(|old| old.status == "True");
    for current in &status.conditions {
        if current.type_ == condition::PROVIDER_LOST {
            // Whenever what is lost changes (a provider being deleted, then gone; a replacement
            // lost before it was ready), not again while the same loss lasts.
            let unchanged = before(&current.type_)
                .is_some_and(|old| old.status == current.status && old.reason == current.reason && old.message == current.message);
            if current.status == "True" && !unchanged {
                notices.push(Notice::warning(condition::PROVIDER_LOST, current.message.clone()));
            }
            continue;
        }
        let newly = match (current.type_.as_str(), current.status.as_str()) {
            (condition::RESTART_REQUIRED | condition::NAME_CONFLICT | condition::HOST_PATH_PREFIX_IGNORED, "True") => {
                !was_true(&current.type_)
            }
            (condition::SPEC_VALID, "False") => previous.is_none() || was_true(&current.type_),
            _ => false,
        };
        if newly {
            notices.push(Notice::warning(&current.reason, current.message.clone()));
        }
    }
    notices
}

#[cfg(test)]
mod tests;
