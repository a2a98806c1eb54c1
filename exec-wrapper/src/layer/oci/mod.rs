//! `kubectl sc export`'s image: the base image's layers, reused by digest, plus one new layer
//! holding the user's changes (the upper), with the config and manifest that name it.
//!
//! [`write_layer`] streams the upper's entries into a gzip-compressed tar as the OCI image-layer
//! spec reads it (whiteouts as `.wh.<name>`, opaque directories marked by `.wh..wh..opq`) and
//! hashes it on the way; [`exported_image`] builds the new config and manifest from the base's,
//! as pure functions over JSON bytes; [`select_platform`] picks one platform's manifest out of an
//! image index. Fetching and pushing blobs is the registry client's job, not this module's.

mod image;
mod layer;

pub use image::{
    Descriptor, EXPORT_CREATED_BY, ExportedImage, ImageDocument, ImageError, ManifestFamily, Platform, exported_image, select_platform,
};
pub use layer::{LayerDigests, LayerError, OPAQUE_MARKER, WHITEOUT_PREFIX, write_layer};

use sha2::{Digest, Sha256};

/// `sha256:<hex>`, the form digests take in manifests, configs and registry URLs.
fn sha256_digest(bytes: &[u8]) -> String {
    format_sha256(Sha256::digest(bytes).as_slice())
}

fn format_sha256(hash: &[u8]) -> String {
    format!("sha256:{}", hex::encode(hash))
}
