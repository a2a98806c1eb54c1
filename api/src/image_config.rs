//! The image's own process defaults — the OCI image config's `Entrypoint`, `Cmd`, `Env`, `User`,
//! `WorkingDir` and `Labels` — as the node plugin read them from the container runtime (CRI
//! `ImageStatus` with `verbose`), and how they travel.
//!
//! The operator never sees the image (it would need the registry and the pull secrets); the node
//! plugin asks the runtime that already pulled it for the provider. At each publish it writes a
//! [`PublishedImage`] as JSON into the volume's control directory ([`IMAGE_CONFIG_FILE_NAME`],
//! read-only to the consumer), where `sc-exec` reads it at [`CONSUMER_IMAGE_CONFIG_PATH`] for the
//! workload and for every `kubectl exec`. The plugin also reports an [`ImageSummary`] (no `Env`:
//! images bake values there that do not belong in a system ConfigMap) in its usage report, from
//! which the operator tells the user what the image runs, or why it cannot run.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// File name, in a publication's control directory, of the [`PublishedImage`] JSON.
pub const IMAGE_CONFIG_FILE_NAME: &str = "image-config.json";
/// Where a consumer container sees that file.
pub const CONSUMER_IMAGE_CONFIG_PATH: &str = "/.sc/control/image-config.json";

/// The process part of an OCI image config (`config` in the image's config blob), with the
/// OCI/Docker JSON field names. Absent fields are empty.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// `Entrypoint`. `[""]` (written by `ENTRYPOINT []`-style builders) means "no entrypoint", as
    /// the runtimes treat it.
    #[serde(rename = "Entrypoint", default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_as_default")]
    pub entrypoint: Vec<String>,
    /// `Cmd`.
    #[serde(rename = "Cmd", default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_as_default")]
    pub cmd: Vec<String>,
    /// `Env`: `NAME=value` strings, in the image's order.
    #[serde(rename = "Env", default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_as_default")]
    pub env: Vec<String>,
    /// `User`: empty, `name`, `uid`, `uid:gid`, `name:group`, `uid:group` or `name:gid`.
    #[serde(rename = "User", default, skip_serializing_if = "String::is_empty", deserialize_with = "null_as_default")]
    pub user: String,
    /// `WorkingDir`; empty means `/`.
    #[serde(rename = "WorkingDir", default, skip_serializing_if = "String::is_empty", deserialize_with = "null_as_default")]
    pub working_dir: String,
    /// `Labels`.
    #[serde(rename = "Labels", default, skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
}

/// Docker writes `null` for empty lists and maps; treat it as empty.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// What the node plugin learnt about the image of the rootfs it published.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "source")]
pub enum PublishedImage {
    /// The runtime answered with the image's config.
    #[serde(rename_all = "camelCase")]
    Runtime {
        /// The provider container's image as kubelet reports it (`imageID`: a digest reference).
        image_ref: String,
        config: ImageConfig,
    },
    /// The runtime gave no config for the image; `reason` says why (no `verbose` support, no
    /// runtime socket, an answer that could not be read). Nothing is guessed in its place.
    #[serde(rename_all = "camelCase")]
    Unavailable { image_ref: String, reason: String },
}

impl PublishedImage {
    /// The image's config, when the runtime gave one.
    pub fn config(&self) -> Option<&ImageConfig> {
        match self {
            PublishedImage::Runtime { config, .. } => Some(config),
            PublishedImage::Unavailable { .. } => None,
        }
    }

    /// The image reference this is about.
    pub fn image_ref(&self) -> &str {
        match self {
            PublishedImage::Runtime { image_ref, .. } | PublishedImage::Unavailable { image_ref, .. } => image_ref,
        }
    }

    /// What the operator is told: everything but `Env` and `Labels`.
    pub fn summary(&self) -> ImageSummary {
        match self {
            PublishedImage::Runtime { image_ref, config } => ImageSummary {
                image_ref: image_ref.clone(),
                entrypoint: config.entrypoint.clone(),
                cmd: config.cmd.clone(),
                user: config.user.clone(),
                working_dir: config.working_dir.clone(),
                unavailable: None,
            },
            PublishedImage::Unavailable { image_ref, reason } => {
                ImageSummary { image_ref: image_ref.clone(), unavailable: Some(reason.clone()), ..ImageSummary::default() }
            }
        }
    }
}

/// The part of a [`PublishedImage`] the node plugin reports to the operator.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageSummary {
    pub image_ref: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entrypoint: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cmd: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub working_dir: String,
    /// Set when the runtime gave no config: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
}

impl ImageSummary {
    /// The process defaults, as an [`ImageConfig`] without `Env` and `Labels`; `None` when the
    /// runtime gave no config.
    pub fn config(&self) -> Option<ImageConfig> {
        self.unavailable.is_none().then(|| ImageConfig {
            entrypoint: self.entrypoint.clone(),
            cmd: self.cmd.clone(),
            user: self.user.clone(),
            working_dir: self.working_dir.clone(),
            ..ImageConfig::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_nulls_and_absent_fields_are_empty() {
        let config: ImageConfig = serde_json::from_str(
            r#"{"Entrypoint":null,"Cmd":["nginx","-g","daemon off;"],"Env":null,"Labels":null,"User":"","ExposedPorts":{"80/tcp":{}}}"#,
        )
        .expect("parses");
        assert_eq!(config, ImageConfig { cmd: vec!["nginx".into(), "-g".into(), "daemon off;".into()], ..ImageConfig::default() });
    }

    #[test]
    fn the_published_file_round_trips_and_names_its_source() {
        let published = PublishedImage::Runtime {
            image_ref: "sha256:abc".into(),
            config: ImageConfig {
                entrypoint: vec!["/entrypoint.sh".into()],
                env: vec!["PATH=/opt/bin:/bin".into()],
                ..ImageConfig::default()
            },
        };
        let text = serde_json::to_string(&published).expect("serializes");
        assert!(text.starts_with(r#"{"source":"runtime","imageRef":"sha256:abc","config":{"Entrypoint":["/entrypoint.sh"]"#), "{text}");
        assert_eq!(serde_json::from_str::<PublishedImage>(&text).expect("parses"), published);
        let unavailable = PublishedImage::Unavailable { image_ref: "x".into(), reason: "no runtime socket".into() };
        let text = serde_json::to_string(&unavailable).expect("serializes");
        assert_eq!(text, r#"{"source":"unavailable","imageRef":"x","reason":"no runtime socket"}"#);
    }

    #[test]
    fn the_summary_leaves_out_the_environment() {
        let published = PublishedImage::Runtime {
            image_ref: "sha256:abc".into(),
            config: ImageConfig {
                cmd: vec!["sh".into()],
                env: vec!["TOKEN=secret".into()],
                user: "jovyan".into(),
                ..ImageConfig::default()
            },
        };
        let summary = published.summary();
        assert!(!serde_json::to_string(&summary).expect("serializes").contains("secret"));
        assert_eq!(summary.config().expect("known").user, "jovyan");
        let unavailable = PublishedImage::Unavailable { image_ref: "x".into(), reason: "why".into() }.summary();
        assert_eq!(unavailable.config(), None);
        assert_eq!(unavailable.unavailable.as_deref(), Some("why"));
    }
}
