use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::*;

const CREATED: &str = "2026-12-02T19:07:43Z";

fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn base_config() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": { "Env": ["PATH=/usr/bin"], "Cmd": ["sh"], "Labels": { "team": "tools" } },
        "rootfs": { "type": "layers", "diff_ids": ["sha256:aaaa", "sha256:bbbb"] },
        "history": [
            { "created": "2024-01-01T00:00:00Z", "created_by": "ADD rootfs.tar /" },
            { "created": "2024-01-01T00:00:00Z", "created_by": "ENV PATH=/usr/bin", "empty_layer": true },
            { "created": "2024-01-01T00:00:00Z", "created_by": "RUN apt-get install -y curl" }
        ],
        "x-vendor-field": { "kept": true }
    }))
    .expect("encode")
}

/// A Docker schema 2 manifest over `config`, with two layers.
fn docker_manifest(config: &[u8]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": { "mediaType": "application/vnd.docker.container.image.v1+json", "size": config.len(), "digest": digest_of(config) },
        "layers": [
            { "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 100, "digest": "sha256:1111" },
            { "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 200, "digest": "sha256:2222" }
        ]
    }))
    .expect("encode")
}

/// An OCI manifest over `config`, with two layers and annotations.
fn oci_manifest(config: &[u8]) -> Value {
    json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "size": config.len(), "digest": digest_of(config) },
        "layers": [
            { "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "size": 100, "digest": "sha256:1111" },
            { "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "size": 200, "digest": "sha256:2222",
              "annotations": { "layer.note": "base" } }
        ],
        "annotations": { "org.opencontainers.image.source": "https://example.com/base" }
    })
}

fn new_layer() -> LayerDigests {
    LayerDigests {
        diff_id: "sha256:cccc".to_string(),
        tar_size: 4096,
        blob_digest: "sha256:3333".to_string(),
        blob_size: 300,
        skipped_sockets: Vec::new(),
    }
}

fn parse(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("JSON")
}

#[test]
fn a_docker_base_gets_a_docker_layer_and_keeps_its_layers() {
    let config = base_config();
    let image = exported_image(&docker_manifest(&config), &config, &new_layer(), CREATED).expect("export");
    assert_eq!(image.family, ManifestFamily::Docker);
    assert_eq!(image.manifest.media_type, "application/vnd.docker.distribution.manifest.v2+json");
    assert_eq!(image.config.media_type, "application/vnd.docker.container.image.v1+json");

    let manifest = parse(&image.manifest.bytes);
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 3);
    assert_eq!(layers[0]["digest"], "sha256:1111");
    assert_eq!(layers[1]["digest"], "sha256:2222");
    assert_eq!(
        layers[2],
        json!({ "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": "sha256:3333", "size": 300 })
    );
    assert_eq!(manifest["config"]["mediaType"], "application/vnd.docker.container.image.v1+json");
}

#[test]
fn an_oci_base_gets_an_oci_layer_and_keeps_its_annotations() {
    let config = base_config();
    let manifest = serde_json::to_vec(&oci_manifest(&config)).expect("encode");
    let image = exported_image(&manifest, &config, &new_layer(), CREATED).expect("export");
    assert_eq!(image.family, ManifestFamily::Oci);
    assert_eq!(image.manifest.media_type, "application/vnd.oci.image.manifest.v1+json");

    let manifest = parse(&image.manifest.bytes);
    assert_eq!(manifest["annotations"]["org.opencontainers.image.source"], "https://example.com/base");
    assert_eq!(manifest["layers"][1]["annotations"]["layer.note"], "base");
    assert_eq!(manifest["layers"][2]["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip");
    assert_eq!(manifest["layers"][2]["digest"], "sha256:3333");
}

#[test]
fn an_oci_manifest_without_a_media_type_is_known_by_its_config() {
    let config = base_config();
    let mut manifest = oci_manifest(&config);
    manifest.as_object_mut().expect("object").remove("mediaType");
    let image = exported_image(&serde_json::to_vec(&manifest).expect("encode"), &config, &new_layer(), CREATED).expect("export");
    assert_eq!(image.family, ManifestFamily::Oci);
    assert_eq!(parse(&image.manifest.bytes)["layers"][2]["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip");
}

#[test]
fn the_config_gains_the_diff_id_and_a_history_entry_and_keeps_the_rest() {
    let config = base_config();
    let image = exported_image(&docker_manifest(&config), &config, &new_layer(), CREATED).expect("export");
    let new_config = parse(&image.config.bytes);
    assert_eq!(new_config["rootfs"], json!({ "type": "layers", "diff_ids": ["sha256:aaaa", "sha256:bbbb", "sha256:cccc"] }));
    let history = new_config["history"].as_array().expect("history");
    assert_eq!(history.len(), 4);
    assert_eq!(history[3], json!({ "created": CREATED, "created_by": "kubectl sc export" }));
    assert_eq!(new_config["created"], CREATED);

    let mut base = parse(&config);
    let mut rest = new_config.clone();
    for value in [&mut base, &mut rest] {
        let object = value.as_object_mut().expect("object");
        for changed in ["rootfs", "history", "created"] {
            object.remove(changed);
        }
    }
    assert_eq!(rest, base, "everything but rootfs, history and created is the base's");
}

#[test]
fn a_base_without_history_gets_one() {
    let mut config = parse(&base_config());
    config.as_object_mut().expect("object").remove("history");
    let config = serde_json::to_vec(&config).expect("encode");
    let image = exported_image(&docker_manifest(&config), &config, &new_layer(), CREATED).expect("export");
    assert_eq!(parse(&image.config.bytes)["history"], json!([{ "created": CREATED, "created_by": "kubectl sc export" }]));
}

#[test]
fn the_digests_are_those_of_the_bytes_and_the_manifest_names_the_new_config() {
    let config = base_config();
    let image = exported_image(&docker_manifest(&config), &config, &new_layer(), CREATED).expect("export");
    assert_eq!(image.config.digest, digest_of(&image.config.bytes));
    assert_eq!(image.manifest.digest, digest_of(&image.manifest.bytes));
    let manifest = parse(&image.manifest.bytes);
    assert_eq!(manifest["config"]["digest"], image.config.digest.as_str());
    assert_eq!(manifest["config"]["size"], image.config.bytes.len());
}

#[test]
fn the_same_inputs_give_the_same_image() {
    let config = base_config();
    let manifest = docker_manifest(&config);
    let first = exported_image(&manifest, &config, &new_layer(), CREATED).expect("export");
    let second = exported_image(&manifest, &config, &new_layer(), CREATED).expect("export");
    assert_eq!(first, second);
    let later = exported_image(&manifest, &config, &new_layer(), "2026-12-03T00:00:00Z").expect("export");
    assert_ne!(later.config.digest, first.config.digest);
}

#[test]
fn a_config_other_than_the_manifests_is_refused() {
    let config = base_config();
    let manifest = docker_manifest(&config);
    let mut other = parse(&config);
    other["os"] = json!("windows");
    let other = serde_json::to_vec(&other).expect("encode");
    let error = exported_image(&manifest, &other, &new_layer(), CREATED).expect_err("wrong config");
    assert!(matches!(error, ImageError::ConfigMismatch { .. }), "{error:?}");
    assert!(error.to_string().contains(&digest_of(&config)), "{error}");
}

#[test]
fn mismatched_counts_of_layers_and_diff_ids_are_refused() {
    let mut config = parse(&base_config());
    config["rootfs"]["diff_ids"] = json!(["sha256:aaaa"]);
    let config = serde_json::to_vec(&config).expect("encode");
    let error = exported_image(&docker_manifest(&config), &config, &new_layer(), CREATED).expect_err("count mismatch");
    let message = error.to_string();
    assert!(message.contains("diff_ids lists 1") && message.contains("manifest lists 2"), "{message}");
}

#[test]
fn a_config_without_rootfs_is_refused() {
    let mut config = parse(&base_config());
    config.as_object_mut().expect("object").remove("rootfs");
    let config = serde_json::to_vec(&config).expect("encode");
    let error = exported_image(&docker_manifest(&config), &config, &new_layer(), CREATED).expect_err("no rootfs");
    assert!(error.to_string().contains("no `rootfs`"), "{error}");
}

#[test]
fn a_manifest_without_layers_is_refused() {
    let config = base_config();
    let mut manifest = oci_manifest(&config);
    manifest.as_object_mut().expect("object").remove("layers");
    let error = exported_image(&serde_json::to_vec(&manifest).expect("encode"), &config, &new_layer(), CREATED).expect_err("no layers");
    assert!(error.to_string().contains("no `layers`"), "{error}");
}

#[test]
fn an_index_or_an_old_manifest_is_not_a_base() {
    let config = base_config();
    let index = serde_json::to_vec(&json!({ "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [] }))
        .expect("encode");
    let error = exported_image(&index, &config, &new_layer(), CREATED).expect_err("an index");
    assert!(matches!(error, ImageError::IndexGivenAsManifest { .. }), "{error:?}");

    let schema1 =
        serde_json::to_vec(&json!({ "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v1+prettyjws" }))
            .expect("encode");
    let error = exported_image(&schema1, &config, &new_layer(), CREATED).expect_err("schema 1");
    assert!(matches!(error, ImageError::UnsupportedManifest { .. }), "{error:?}");

    let error = exported_image(b"<html>rate limited</html>", &config, &new_layer(), CREATED).expect_err("not JSON");
    assert!(matches!(error, ImageError::Json { document: "manifest", .. }), "{error:?}");
}

fn index() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            { "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:amd64", "size": 1000,
              "platform": { "architecture": "amd64", "os": "linux" } },
            { "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:arm64", "size": 1001,
              "platform": { "architecture": "arm64", "os": "linux", "variant": "v8" } },
            { "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:armv6", "size": 1002,
              "platform": { "architecture": "arm", "os": "linux", "variant": "v6" } },
            { "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:armv7", "size": 1003,
              "platform": { "architecture": "arm", "os": "linux", "variant": "v7" } },
            { "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:attestation", "size": 500,
              "platform": { "architecture": "unknown", "os": "unknown" },
              "annotations": { "vnd.docker.reference.type": "attestation-manifest" } }
        ]
    }))
    .expect("encode")
}

#[test]
fn the_platforms_manifest_is_selected() {
    let amd64 = select_platform(&index(), "linux", "amd64").expect("amd64");
    assert_eq!((amd64.digest.as_str(), amd64.size), ("sha256:amd64", 1000));
    assert_eq!(amd64.media_type, "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(select_platform(&index(), "linux", "arm64").expect("arm64").digest, "sha256:arm64");
    assert_eq!(select_platform(&index(), "linux", "arm64/v8").expect("arm64/v8").digest, "sha256:arm64");
    assert_eq!(select_platform(&index(), "linux", "arm/v7").expect("arm/v7").digest, "sha256:armv7");
}

#[test]
fn a_docker_manifest_list_is_an_index_too() {
    let list = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
        "manifests": [
            { "mediaType": "application/vnd.docker.distribution.manifest.v2+json", "digest": "sha256:amd64", "size": 528,
              "platform": { "architecture": "amd64", "os": "linux" } }
        ]
    }))
    .expect("encode");
    let selected = select_platform(&list, "linux", "amd64").expect("amd64");
    assert_eq!(selected.media_type, "application/vnd.docker.distribution.manifest.v2+json");
}

#[test]
fn no_matching_platform_says_which_there_are() {
    let error = select_platform(&index(), "linux", "s390x").expect_err("no s390x");
    assert!(matches!(error, ImageError::NoMatchingPlatform { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("linux/s390x") && message.contains("linux/amd64, linux/arm64/v8, linux/arm/v6"), "{message}");
    assert!(select_platform(&index(), "windows", "amd64").is_err());
    assert!(select_platform(&index(), "linux", "arm/v5").is_err());
}

#[test]
fn an_architecture_with_several_variants_needs_one_named() {
    let error = select_platform(&index(), "linux", "arm").expect_err("ambiguous");
    assert!(matches!(error, ImageError::AmbiguousPlatform { .. }), "{error:?}");
    assert!(error.to_string().contains("v6, v7"), "{error}");
}

#[test]
fn a_manifest_is_not_an_index() {
    let config = base_config();
    let error = select_platform(&docker_manifest(&config), "linux", "amd64").expect_err("not an index");
    assert!(error.to_string().contains("expected application/vnd.oci.image.index.v1+json"), "{error}");
}
