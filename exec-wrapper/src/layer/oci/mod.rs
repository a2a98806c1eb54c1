//! `kubectl sc export`'s image: the base image's layers, reused by digest, plus one new layer
//! holding the user's changes (the upper), with the config and manifest that name it.
//!
//! [`write_layer`] streams the upper's entries into a gzip-compressed tar as the OCI image-layer
//! spec reads it (whiteouts as `.wh.<name>`, opaque directories marked by `.wh..wh..opq`) and
//! hashes it on the way. Fetching and pushing blobs is the registry client's job, not this
//! module's.

mod layer;

pub use layer::{LayerDigests, LayerError, OPAQUE_MARKER, WHITEOUT_PREFIX, write_layer};

/// `sha256:<hex>`, the form digests take in manifests, configs and registry URLs.
fn format_sha256(hash: &[u8]) -> String {
    format!("sha256:{}", hex::encode(hash))
}
