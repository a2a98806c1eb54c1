//! What the node plugin knows, in memory, of its live publications: which target each upper is
//! mounted at (the one-live-overlay rule) and what each publication's image config file says
//! (the usage reports).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use sc_api::image_config::{ImageSummary, PublishedImage};

use super::claim::ClaimLayer;
use crate::layout::ScKey;

/// What "one live overlay per upper" is keyed on.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum UpperKey {
    /// A node-local upper, by its directory (below the data root, so it names its SC).
    Dir(PathBuf),
    /// An upper on a claim, by the claim's PersistentVolume: kubelet mounts the volume at a path
    /// of each pod that uses it, so two pods on this node reach the same upper by two paths.
    Claim(String),
}

impl UpperKey {
    pub fn of_claim(layer: &ClaimLayer) -> Self {
        UpperKey::Claim(layer.claim.volume_name.clone())
    }
}

/// A live publication of one upper directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveTarget {
    pub target: PathBuf,
    /// The overlay's lower directory (the provider's root filesystem).
    pub lower: PathBuf,
    /// On a claim: its StoppableContainer and where the claim is (`None` for a node-local upper,
    /// and for a claim-backed publication found with no record, whose SC is not known).
    pub on_claim: Option<(ScKey, ClaimLayer)>,
}

/// The target of every live publication, by upper: "one live overlay per upper" without
/// reading the mount table on every publish. Built from the records by start-up recovery
/// (which checks them against the mount table) and kept by publish and unpublish, all under
/// the mount lock.
#[derive(Default)]
pub struct LiveUppers {
    targets: Mutex<HashMap<UpperKey, LiveTarget>>,
}

impl LiveUppers {
    fn lock(&self) -> MutexGuard<'_, HashMap<UpperKey, LiveTarget>> {
        self.targets.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn get(&self, upper: &UpperKey) -> Option<LiveTarget> {
        self.lock().get(upper).cloned()
    }

    pub fn target_of(&self, upper: &UpperKey) -> Option<PathBuf> {
        self.get(upper).map(|live| live.target)
    }

    /// A node-local publication of the upper directory `upper`.
    pub fn insert(&self, upper: PathBuf, target: PathBuf, lower: PathBuf) {
        self.lock().insert(UpperKey::Dir(upper), LiveTarget { target, lower, on_claim: None });
    }

    /// A publication of any kind.
    pub fn insert_key(&self, upper: UpperKey, live: LiveTarget) {
        self.lock().insert(upper, live);
    }

    pub fn remove(&self, upper: &UpperKey) {
        self.lock().remove(upper);
    }

    pub fn targets(&self) -> Vec<PathBuf> {
        self.lock().values().map(|live| live.target.clone()).collect()
    }

    /// The node-local upper directories that are live.
    pub fn uppers(&self) -> Vec<PathBuf> {
        self.lock()
            .keys()
            .filter_map(|key| match key {
                UpperKey::Dir(upper) => Some(upper.clone()),
                UpperKey::Claim(_) => None,
            })
            .collect()
    }

    /// The claim-backed publications that are live (of a known SC): each SC with its target.
    pub fn claims(&self) -> Vec<(ScKey, PathBuf)> {
        self.lock().values().filter_map(|live| live.on_claim.as_ref().map(|(sc, _)| (sc.clone(), live.target.clone()))).collect()
    }

    pub fn remove_target(&self, target: &Path) {
        self.lock().retain(|_, live| live.target != target);
    }
}

/// The image config of every live publication, by target, as its file says: what the usage
/// reports tell the operator. Kept by publish and unpublish, rebuilt by start-up recovery from
/// the files.
#[derive(Default)]
pub struct KnownImages {
    by_target: Mutex<HashMap<PathBuf, (ScKey, ImageSummary)>>,
}

impl KnownImages {
    fn lock(&self) -> MutexGuard<'_, HashMap<PathBuf, (ScKey, ImageSummary)>> {
        self.by_target.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn remember(&self, target: &Path, sc: &ScKey, image: &PublishedImage) {
        self.lock().insert(target.to_path_buf(), (sc.clone(), image.summary()));
    }

    pub fn forget(&self, target: &Path) {
        self.lock().remove(target);
    }

    pub fn by_sc_uid(&self) -> HashMap<String, ImageSummary> {
        self.lock().values().map(|(sc, summary)| (sc.uid.clone(), summary.clone())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_image_of_each_live_publication_is_known_by_sc_uid_until_it_is_unpublished() {
        let images = KnownImages::default();
        let (first, second) = (PathBuf::from("/kubelet/pods/a/volumes/x/mount"), PathBuf::from("/kubelet/pods/b/volumes/x/mount"));
        let sc = |uid: &str| ScKey { namespace: "team-a".into(), name: uid.into(), uid: uid.into() };
        let runs = PublishedImage::Runtime {
            image_ref: "sha256:1".into(),
            config: sc_api::image_config::ImageConfig {
                cmd: vec!["sh".into()],
                env: vec!["TOKEN=secret".into()],
                ..sc_api::image_config::ImageConfig::default()
            },
        };
        let unknown = PublishedImage::Unavailable { image_ref: "sha256:2".into(), reason: "no runtime socket".into() };
        images.remember(&first, &sc("uid-a"), &runs);
        images.remember(&second, &sc("uid-b"), &unknown);
        let known = images.by_sc_uid();
        assert_eq!(known.get("uid-a"), Some(&runs.summary()), "the summary: no environment");
        assert_eq!(known.get("uid-b").and_then(|summary| summary.unavailable.as_deref()), Some("no runtime socket"));
        images.forget(&first);
        assert_eq!(images.by_sc_uid().keys().map(String::as_str).collect::<Vec<_>>(), ["uid-b"]);
    }
}
