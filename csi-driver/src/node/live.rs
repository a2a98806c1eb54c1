//! What the node plugin knows, in memory, of its live publications: which target each upper is
//! mounted at (the one-live-overlay rule) and what each publication's image config file says
//! (the usage reports).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use sc_api::image_config::{ImageSummary, PublishedImage};

use crate::layout::ScKey;

/// A live publication of one upper directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveTarget {
    pub target: PathBuf,
    /// The overlay's lower directory (the provider's root filesystem).
    pub lower: PathBuf,
}

/// The target of every live publication, by upper directory: "one live overlay per upper"
/// without reading the mount table on every publish. Built from the records by start-up
/// recovery (which checks them against the mount table) and kept by publish and unpublish,
/// all under the mount lock.
#[derive(Default)]
pub struct LiveUppers {
    targets: Mutex<HashMap<PathBuf, LiveTarget>>,
}

impl LiveUppers {
    fn lock(&self) -> MutexGuard<'_, HashMap<PathBuf, LiveTarget>> {
        self.targets.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn get(&self, upper: &Path) -> Option<LiveTarget> {
        self.lock().get(upper).cloned()
    }

    pub fn target_of(&self, upper: &Path) -> Option<PathBuf> {
        self.get(upper).map(|live| live.target)
    }

    pub fn insert(&self, upper: PathBuf, target: PathBuf, lower: PathBuf) {
        self.lock().insert(upper, LiveTarget { target, lower });
    }

    pub fn remove(&self, upper: &Path) {
        self.lock().remove(upper);
    }

    pub fn targets(&self) -> Vec<PathBuf> {
        self.lock().values().map(|live| live.target.clone()).collect()
    }

    pub fn uppers(&self) -> Vec<PathBuf> {
        self.lock().keys().cloned().collect()
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
