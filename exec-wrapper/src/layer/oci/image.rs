//! The exported image's config and manifest, made from the base image's: pure functions over JSON
//! bytes, so whatever the base declares (labels, annotations, fields of later spec versions) is
//! carried over as it was, and only what the new layer changes is touched.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{LayerDigests, sha256_digest};

/// The `created_by` of the history entry the exported layer gets (what `docker history` shows).
pub const EXPORT_CREATED_BY: &str = "kubectl sc export";

const DOCKER_MANIFEST_MEDIA_TYPE: &str = "application/vnd.docker.distribution.manifest.v2+json";
const OCI_MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const DOCKER_MANIFEST_LIST_MEDIA_TYPE: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const OCI_INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_CONFIG_MEDIA_TYPE: &str = "application/vnd.docker.container.image.v1+json";
const OCI_CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const DOCKER_LAYER_MEDIA_TYPE: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const OCI_LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// Which of the two manifest formats registries serve the base image is in. The exported image
/// keeps it, so its layers' media types are all of one family (some runtimes refuse a mix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestFamily {
    /// Docker image manifest v2, schema 2.
    Docker,
    /// OCI image manifest.
    Oci,
}

impl ManifestFamily {
    pub fn manifest_media_type(self) -> &'static str {
        match self {
            ManifestFamily::Docker => DOCKER_MANIFEST_MEDIA_TYPE,
            ManifestFamily::Oci => OCI_MANIFEST_MEDIA_TYPE,
        }
    }

    /// The media type of a gzip-compressed tar layer in this family.
    pub fn layer_media_type(self) -> &'static str {
        match self {
            ManifestFamily::Docker => DOCKER_LAYER_MEDIA_TYPE,
            ManifestFamily::Oci => OCI_LAYER_MEDIA_TYPE,
        }
    }
}

/// A content descriptor: what an index lists for each platform's manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// `annotations`, `urls` and whatever else the index says about the entry.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// `os.version`, `os.features` and fields of later spec versions.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One JSON document of the exported image, as it is to be uploaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageDocument {
    pub bytes: Vec<u8>,
    /// `sha256:<hex>` of `bytes`: the name the registry stores it under.
    pub digest: String,
    /// The `Content-Type` to upload it with.
    pub media_type: String,
}

/// The exported image's config and manifest. Its layers are the base's (already in the registry
/// or mounted from the base's repository) and the new one [`super::write_layer`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportedImage {
    pub config: ImageDocument,
    pub manifest: ImageDocument,
    pub family: ManifestFamily,
}

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(
        "the base image's {document} is not valid JSON: {source}. Check the image reference; the registry may have served an error page."
    )]
    Json { document: &'static str, source: serde_json::Error },

    #[error("the base image's {document} cannot be used: {problem}")]
    Malformed { document: &'static str, problem: String },

    #[error(
        "the base image's manifest is a {media_type}, which an exported image cannot be built on: expected a Docker schema 2 \
         ({DOCKER_MANIFEST_MEDIA_TYPE}) or an OCI ({OCI_MANIFEST_MEDIA_TYPE}) image manifest. Re-push the base image with a \
         current tool, or start the StoppableContainer from one that is."
    )]
    UnsupportedManifest { media_type: String },

    #[error(
        "the base image's manifest is an image index ({media_type}), not one platform's manifest: select the platform's entry \
         first (select_platform) and fetch the manifest it names."
    )]
    IndexGivenAsManifest { media_type: String },

    #[error(
        "the base image's config does not match its manifest: the manifest names {expected_digest} ({expected_size} bytes), \
         the config given is {found_digest} ({found_size} bytes). Fetch the config by the manifest's digest."
    )]
    ConfigMismatch { expected_digest: String, expected_size: u64, found_digest: String, found_size: u64 },

    #[error("the image index lists no manifest for {wanted}; it has: {available}. Export on a node of one of these platforms.")]
    NoMatchingPlatform { wanted: String, available: String },

    #[error("the image index lists several manifests for {wanted}, with variants {variants}: name one, as in {wanted}/<variant>.")]
    AmbiguousPlatform { wanted: String, variants: String },

    #[error("cannot encode the exported image's {document}: {source}")]
    Encode { document: &'static str, source: serde_json::Error },
}

/// The manifest for `os`/`architecture` in an image index (OCI) or manifest list (Docker).
///
/// `architecture` may name a variant after a slash (`arm/v7`), as `--platform` spells it; without
/// one, the only entry of that os and architecture is taken, or the one without a variant. arm64's
/// only variant is v8, so an entry that names none is v8 (as containerd normalizes it).
pub fn select_platform(index: &[u8], os: &str, architecture: &str) -> Result<Descriptor, ImageError> {
    const DOCUMENT: &str = "image index";
    let index: Value = serde_json::from_slice(index).map_err(|source| ImageError::Json { document: DOCUMENT, source })?;
    if let Some(media_type) = index.get("mediaType").and_then(Value::as_str)
        && media_type != OCI_INDEX_MEDIA_TYPE
        && media_type != DOCKER_MANIFEST_LIST_MEDIA_TYPE
    {
        return Err(malformed(
            DOCUMENT,
            format!("it is a {media_type}, expected {OCI_INDEX_MEDIA_TYPE} or {DOCKER_MANIFEST_LIST_MEDIA_TYPE}"),
        ));
    }
    let entries = index.get("manifests").cloned().ok_or_else(|| malformed(DOCUMENT, "it has no `manifests` list".to_string()))?;
    let entries: Vec<Descriptor> =
        serde_json::from_value(entries).map_err(|error| malformed(DOCUMENT, format!("its `manifests` are not descriptors: {error}")))?;

    let (architecture, wanted_variant) = match architecture.split_once('/') {
        Some((architecture, variant)) => (architecture, Some(variant)),
        None => (architecture, None),
    };
    let wanted = match wanted_variant {
        Some(variant) => format!("{os}/{architecture}/{variant}"),
        None => format!("{os}/{architecture}"),
    };
    let candidates: Vec<&Descriptor> = entries
        .iter()
        .filter(|entry| entry.platform.as_ref().is_some_and(|platform| platform.os == os && platform.architecture == architecture))
        .collect();
    let variant_of =
        |entry: &Descriptor| normalized_variant(entry.platform.as_ref().and_then(|platform| platform.variant.as_deref()), architecture);

    let chosen = match wanted_variant {
        Some(variant) => candidates.iter().find(|entry| variant_of(entry) == normalized_variant(Some(variant), architecture)).copied(),
        None if candidates.len() <= 1 => candidates.first().copied(),
        None => {
            let without_variant =
                candidates.iter().find(|entry| entry.platform.as_ref().is_some_and(|platform| platform.variant.is_none()));
            match without_variant {
                Some(entry) => Some(*entry),
                None => {
                    let variants: Vec<String> = candidates.iter().filter_map(|entry| variant_of(entry)).collect();
                    return Err(ImageError::AmbiguousPlatform { wanted, variants: variants.join(", ") });
                }
            }
        }
    };
    chosen.cloned().ok_or_else(|| ImageError::NoMatchingPlatform { wanted, available: platform_list(&entries) })
}

/// A variant as containerd compares it: arm64 without one is v8.
fn normalized_variant(variant: Option<&str>, architecture: &str) -> Option<String> {
    match variant {
        None if architecture == "arm64" => Some("v8".to_string()),
        variant => variant.map(str::to_string),
    }
}

fn platform_list(entries: &[Descriptor]) -> String {
    let platforms: Vec<String> = entries
        .iter()
        .filter_map(|entry| entry.platform.as_ref())
        .map(|platform| match &platform.variant {
            Some(variant) => format!("{}/{}/{variant}", platform.os, platform.architecture),
            None => format!("{}/{}", platform.os, platform.architecture),
        })
        .collect();
    if platforms.is_empty() { "no platform at all".to_string() } else { platforms.join(", ") }
}

/// The exported image: the base's config with the new layer's `diff_id` and a history entry, the
/// base's manifest with its layers unchanged plus the new layer, naming the new config.
///
/// `created` is the export's time, RFC 3339 (`2026-12-02T19:07:43Z`), passed in so the same
/// inputs give the same image. The base config is checked against the manifest's descriptor of
/// it, so a config fetched for another image cannot slip in.
pub fn exported_image(base_manifest: &[u8], base_config: &[u8], layer: &LayerDigests, created: &str) -> Result<ExportedImage, ImageError> {
    let mut manifest: Value = serde_json::from_slice(base_manifest).map_err(|source| ImageError::Json { document: "manifest", source })?;
    let mut config: Value = serde_json::from_slice(base_config).map_err(|source| ImageError::Json { document: "config", source })?;
    let family = manifest_family(&manifest)?;
    check_config_matches(&manifest, base_config)?;

    let base_layers = layer_count(&manifest)?;
    let base_diff_ids = extend_config(&mut config, &layer.diff_id, created)?;
    if base_layers != base_diff_ids {
        return Err(malformed(
            "config",
            format!(
                "its rootfs.diff_ids lists {base_diff_ids} layers, but the manifest lists {base_layers}; each layer of the manifest \
                 needs its diff_id in the config"
            ),
        ));
    }
    let config_bytes = serde_json::to_vec(&config).map_err(|source| ImageError::Encode { document: "config", source })?;
    let config_digest = sha256_digest(&config_bytes);

    extend_manifest(&mut manifest, &config_digest, config_bytes.len() as u64, family, layer)?;
    let manifest_bytes = serde_json::to_vec(&manifest).map_err(|source| ImageError::Encode { document: "manifest", source })?;
    let config_media_type = manifest["config"]["mediaType"].as_str().unwrap_or(default_config_media_type(family)).to_string();
    Ok(ExportedImage {
        config: ImageDocument { bytes: config_bytes, digest: config_digest, media_type: config_media_type },
        manifest: ImageDocument {
            digest: sha256_digest(&manifest_bytes),
            bytes: manifest_bytes,
            media_type: family.manifest_media_type().to_string(),
        },
        family,
    })
}

fn default_config_media_type(family: ManifestFamily) -> &'static str {
    match family {
        ManifestFamily::Docker => DOCKER_CONFIG_MEDIA_TYPE,
        ManifestFamily::Oci => OCI_CONFIG_MEDIA_TYPE,
    }
}

fn malformed(document: &'static str, problem: String) -> ImageError {
    ImageError::Malformed { document, problem }
}

/// The manifest's `mediaType`, or (OCI lets it be left out) its config's.
fn manifest_family(manifest: &Value) -> Result<ManifestFamily, ImageError> {
    if !manifest.is_object() {
        return Err(malformed("manifest", "it is not a JSON object".to_string()));
    }
    if manifest.get("schemaVersion").and_then(Value::as_u64) != Some(2) {
        return Err(malformed(
            "manifest",
            format!("its schemaVersion is {}, expected 2", manifest.get("schemaVersion").unwrap_or(&Value::Null)),
        ));
    }
    match manifest.get("mediaType").and_then(Value::as_str) {
        Some(DOCKER_MANIFEST_MEDIA_TYPE) => Ok(ManifestFamily::Docker),
        Some(OCI_MANIFEST_MEDIA_TYPE) => Ok(ManifestFamily::Oci),
        Some(media_type @ (OCI_INDEX_MEDIA_TYPE | DOCKER_MANIFEST_LIST_MEDIA_TYPE)) => {
            Err(ImageError::IndexGivenAsManifest { media_type: media_type.to_string() })
        }
        Some(media_type) => Err(ImageError::UnsupportedManifest { media_type: media_type.to_string() }),
        None if manifest.get("manifests").is_some() => {
            Err(ImageError::IndexGivenAsManifest { media_type: OCI_INDEX_MEDIA_TYPE.to_string() })
        }
        None => match manifest.pointer("/config/mediaType").and_then(Value::as_str) {
            Some(OCI_CONFIG_MEDIA_TYPE) => Ok(ManifestFamily::Oci),
            Some(DOCKER_CONFIG_MEDIA_TYPE) => Ok(ManifestFamily::Docker),
            other => Err(malformed(
                "manifest",
                format!(
                    "it names no mediaType, and its config's ({}) is neither {OCI_CONFIG_MEDIA_TYPE} nor {DOCKER_CONFIG_MEDIA_TYPE}",
                    other.unwrap_or("none")
                ),
            )),
        },
    }
}

fn check_config_matches(manifest: &Value, base_config: &[u8]) -> Result<(), ImageError> {
    let descriptor = manifest.get("config").ok_or_else(|| malformed("manifest", "it has no `config` descriptor".to_string()))?;
    let expected_digest = descriptor.get("digest").and_then(Value::as_str);
    let expected_size = descriptor.get("size").and_then(Value::as_u64);
    let (Some(expected_digest), Some(expected_size)) = (expected_digest, expected_size) else {
        return Err(malformed("manifest", "its `config` descriptor lacks a digest or a size".to_string()));
    };
    if !expected_digest.starts_with("sha256:") {
        return Err(malformed(
            "manifest",
            format!("its config's digest {expected_digest} is not sha256, the only algorithm supported here"),
        ));
    }
    let found_digest = sha256_digest(base_config);
    let found_size = base_config.len() as u64;
    if found_digest != expected_digest || found_size != expected_size {
        return Err(ImageError::ConfigMismatch { expected_digest: expected_digest.to_string(), expected_size, found_digest, found_size });
    }
    Ok(())
}

fn layer_count(manifest: &Value) -> Result<usize, ImageError> {
    manifest
        .get("layers")
        .and_then(Value::as_array)
        .map(Vec::len)
        .ok_or_else(|| malformed("manifest", "it has no `layers` list".to_string()))
}

/// Appends the layer's diff_id and history entry to the config and dates it `created`; returns
/// how many diff_ids the base had.
fn extend_config(config: &mut Value, diff_id: &str, created: &str) -> Result<usize, ImageError> {
    let config = config.as_object_mut().ok_or_else(|| malformed("config", "it is not a JSON object".to_string()))?;
    let rootfs =
        config.get_mut("rootfs").and_then(Value::as_object_mut).ok_or_else(|| malformed("config", "it has no `rootfs`".to_string()))?;
    match rootfs.get("type").and_then(Value::as_str) {
        Some("layers") => {}
        other => return Err(malformed("config", format!("its rootfs.type is {}, expected \"layers\"", other.unwrap_or("missing")))),
    }
    let diff_ids = rootfs
        .get_mut("diff_ids")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| malformed("config", "its rootfs has no `diff_ids` list".to_string()))?;
    let base_diff_ids = diff_ids.len();
    diff_ids.push(Value::String(diff_id.to_string()));

    let history = config.entry("history").or_insert_with(|| Value::Array(Vec::new()));
    let history = history.as_array_mut().ok_or_else(|| malformed("config", "its `history` is not a list".to_string()))?;
    history.push(json!({ "created": created, "created_by": EXPORT_CREATED_BY }));
    config.insert("created".to_string(), Value::String(created.to_string()));
    Ok(base_diff_ids)
}

/// Points the manifest's config descriptor at the new config and appends the new layer.
fn extend_manifest(
    manifest: &mut Value,
    config_digest: &str,
    config_size: u64,
    family: ManifestFamily,
    layer: &LayerDigests,
) -> Result<(), ImageError> {
    let descriptor = manifest
        .get_mut("config")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| malformed("manifest", "its `config` is not a descriptor".to_string()))?;
    descriptor.insert("digest".to_string(), Value::String(config_digest.to_string()));
    descriptor.insert("size".to_string(), Value::from(config_size));
    let layers = manifest
        .get_mut("layers")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| malformed("manifest", "it has no `layers` list".to_string()))?;
    layers.push(json!({
        "mediaType": family.layer_media_type(),
        "digest": layer.blob_digest,
        "size": layer.blob_size,
    }));
    Ok(())
}

#[cfg(test)]
#[path = "image_tests.rs"]
mod tests;
