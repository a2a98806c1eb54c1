//! The node plugin's CRI client against a real gRPC server on a Unix socket (no root needed):
//! a runtime serving both service names, one serving only `runtime.v1alpha2` (CRI-O before
//! 1.23), one without verbose info, one that hangs, one serving neither, and no runtime at all.

#[path = "common/fake_cri.rs"]
mod fake_cri;

use std::time::{Duration, Instant};

use csi_driver::cri::{ImageConfigReader, RuntimeEndpoint};
use fake_cri::{Asked, CONTAINERD_FIXTURE, CRIO_FIXTURE, FakeRuntime, Serves, fixture};
use sc_api::image_config::PublishedImage;

const IMAGE: &str = "docker.io/jupyter/base-notebook@sha256:5d9c1f0b1a5a8e2f6c4a0d3e7b9f1c2d4e6a8b0c2d4e6f8a0b2c4d6e8f0a1b2c";

fn reader(runtime: &FakeRuntime) -> ImageConfigReader {
    ImageConfigReader::new(RuntimeEndpoint::Socket(runtime.socket.clone()))
}

fn unavailable_reason(image: PublishedImage) -> String {
    match image {
        PublishedImage::Unavailable { reason, .. } => reason,
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn a_runtime_serving_v1_gives_the_images_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = FakeRuntime::serve(&dir.path().join("containerd.sock"), Serves::Both);
    runtime.add_image(IMAGE, Some(&fixture(CONTAINERD_FIXTURE)));
    let PublishedImage::Runtime { image_ref, config } = reader(&runtime).read(IMAGE).await else { panic!("a config") };
    assert_eq!(image_ref, IMAGE);
    assert_eq!(config.entrypoint, ["tini", "-g", "--"]);
    assert_eq!(config.cmd, ["start-notebook.sh"]);
    assert_eq!(config.user, "1000");
    assert_eq!(config.working_dir, "/home/jovyan");
    assert!(config.env.contains(&"PATH=/opt/conda/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned()));
    assert_eq!(runtime.asked(), [Asked { service: "runtime.v1", image: IMAGE.into(), verbose: true }], "v1 first, verbose");
}

#[tokio::test]
async fn a_runtime_serving_only_v1alpha2_is_asked_again_under_that_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = FakeRuntime::serve(&dir.path().join("crio.sock"), Serves::V1alpha2Only);
    runtime.add_image("docker.io/library/nginx@sha256:0a1b", Some(&fixture(CRIO_FIXTURE)));
    // Kubelet with dockershim-era naming: the prefix is not part of the name asked for.
    let PublishedImage::Runtime { image_ref, config } =
        reader(&runtime).read("docker-pullable://docker.io/library/nginx@sha256:0a1b").await
    else {
        panic!("a config")
    };
    assert_eq!(image_ref, "docker-pullable://docker.io/library/nginx@sha256:0a1b", "the image as kubelet named it");
    assert_eq!(config.entrypoint, ["/docker-entrypoint.sh"]);
    assert_eq!(config.cmd, ["nginx", "-g", "daemon off;"]);
    assert_eq!(
        runtime.asked(),
        [Asked { service: "runtime.v1alpha2", image: "docker.io/library/nginx@sha256:0a1b".into(), verbose: true }],
        "runtime.v1 was refused before the service was reached"
    );
}

#[tokio::test]
async fn an_answer_without_verbose_info_or_without_the_image_is_unavailable_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = FakeRuntime::serve(&dir.path().join("runtime.sock"), Serves::Both);
    runtime.add_image(IMAGE, None);
    let reason = unavailable_reason(reader(&runtime).read(IMAGE).await);
    assert!(reason.contains("has no verbose \"info\" entry"), "{reason}");
    let reason = unavailable_reason(reader(&runtime).read("sha256:not-there").await);
    assert!(reason.contains("does not have the image"), "{reason}");
    runtime.add_image("sha256:crio-without-spec", Some(r#"{"labels":{},"imageSpec":null}"#));
    let reason = unavailable_reason(reader(&runtime).read("sha256:crio-without-spec").await);
    assert!(reason.contains("has no \"imageSpec\""), "{reason}");
}

#[tokio::test]
async fn a_runtime_that_hangs_is_given_up_on_after_the_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = FakeRuntime::serve(&dir.path().join("runtime.sock"), Serves::Both);
    runtime.add_image(IMAGE, Some(&fixture(CONTAINERD_FIXTURE)));
    runtime.hang();
    let reader = ImageConfigReader { timeout: Duration::from_millis(300), ..reader(&runtime) };
    let started = Instant::now();
    let reason = unavailable_reason(reader.read(IMAGE).await);
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    assert_eq!(reason, format!("the container runtime at {} did not answer ImageStatus within 300ms", runtime.socket.display()));
}

#[tokio::test]
async fn a_socket_without_the_image_service_or_without_a_server_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let other = FakeRuntime::serve(&dir.path().join("other.sock"), Serves::Neither);
    let reason = unavailable_reason(reader(&other).read(IMAGE).await);
    assert!(reason.contains("serves neither runtime.v1 nor runtime.v1alpha2 ImageService"), "{reason}");
    let gone = ImageConfigReader::new(RuntimeEndpoint::Socket(dir.path().join("gone.sock")));
    let reason = unavailable_reason(gone.read(IMAGE).await);
    assert!(reason.contains("cannot connect to the container runtime at"), "{reason}");
    assert!(reason.contains("check the node plugin's --runtime-endpoint"), "{reason}");
}
