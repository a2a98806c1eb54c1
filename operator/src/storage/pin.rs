//! The base image stays the base: once the provider of an SC on a claim has run the template's
//! image, the digest it ran is recorded, and later providers (on any node) run that digest while
//! the template names the same image. A tag moved in the registry would otherwise change the
//! lower layer under the files on the claim. A changed template image is a change on purpose: the
//! pin no longer applies, and the next provider's digest is recorded in its place.

use k8s_openapi::api::core::v1::Pod;
use sc_api::consts::PROVIDER_CONTAINER_NAME;
use sc_api::storage::PinnedImage;

use crate::validate::Workload;

/// The prefix dockershim put before a pullable image ID.
const DOCKER_PULLABLE_PREFIX: &str = "docker-pullable://";

/// The image the provider of `workload` is to run: the pin's digest while the template's image
/// is the pinned one, else the template's image.
pub fn provider_image(workload: &mut Workload, pinned: Option<&PinnedImage>) {
    let Some(pin) = pinned.filter(|pin| pin.image == workload.image()) else { return };
    workload.pod_spec.containers[0].image = Some(pin.digest_ref.clone());
}

/// The pin to record once `provider` (the operator's own provider pod) ran `template_image`:
/// what kubelet reports its container ran (`imageID`, a status a tenant cannot write), when that
/// is a pullable `name@sha256:<hex>` reference. None when there is nothing new to record: the
/// current pin is for this image, the provider ran something else (an older pin's digest), or
/// the runtime reported no pullable reference.
pub fn pin_to_record(current: Option<&PinnedImage>, template_image: &str, provider: &Pod) -> Option<PinnedImage> {
    if current.is_some_and(|pin| pin.image == template_image) {
        return None;
    }
    let ran = provider.spec.as_ref()?.containers.iter().find(|container| container.name == PROVIDER_CONTAINER_NAME)?;
    if ran.image.as_deref() != Some(template_image) {
        return None;
    }
    let statuses = provider.status.as_ref()?.container_statuses.as_ref()?;
    let image_id = &statuses.iter().find(|status| status.name == PROVIDER_CONTAINER_NAME)?.image_id;
    let reference = image_id.strip_prefix(DOCKER_PULLABLE_PREFIX).unwrap_or(image_id);
    is_pullable_digest(reference).then(|| PinnedImage { image: template_image.to_owned(), digest_ref: reference.to_owned() })
}

/// Whether `reference` is `name@sha256:<64 lowercase hex>` with a name (a bare `sha256:...`
/// image ID names a local image, which another node cannot pull).
pub fn is_pullable_digest(reference: &str) -> bool {
    let Some((name, digest)) = reference.split_once('@') else { return false };
    let Some(hex) = digest.strip_prefix("sha256:") else { return false };
    !name.is_empty()
        && !name.contains("://")
        && !name.contains(char::is_whitespace)
        && hex.len() == 64
        && hex.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_named_sha256_digest_is_pullable() {
        let hex = "a".repeat(64);
        assert!(is_pullable_digest(&format!("docker.io/library/alpine@sha256:{hex}")));
        assert!(!is_pullable_digest(&format!("sha256:{hex}")), "a local image ID");
        assert!(!is_pullable_digest(&format!("@sha256:{hex}")), "no name");
        assert!(!is_pullable_digest("alpine@sha256:abc"), "a short digest");
        assert!(!is_pullable_digest(&format!("docker://alpine@sha256:{hex}")), "a scheme");
        assert!(!is_pullable_digest(&format!("alpine@sha512:{hex}")), "another algorithm");
        assert!(!is_pullable_digest("alpine:3.19"), "a tag");
    }
}
