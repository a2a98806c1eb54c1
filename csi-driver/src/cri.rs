//! The provider image's config, from the container runtime that pulled it: the CRI image
//! service's `ImageStatus` with `verbose`, over the runtime's Unix socket.
//!
//! The operator never sees the image (it would need the registry and the pull secrets); the
//! runtime on the node already has it for the provider container. Both runtimes answer
//! `ImageStatus{verbose: true}` with the image's OCI config blob in `info["info"]`:
//!
//! - containerd: `{"chainID": ..., "imageSpec": <the OCI image config>}`;
//! - CRI-O: `{"labels": ..., "imageSpec": <the OCI image config>}` (`imageSpec` may be `null`).
//!
//! The process defaults are that blob's `config` (`Entrypoint`, `Cmd`, `Env`, `User`,
//! `WorkingDir`, `Labels`). Whatever keeps the plugin from that answer (no socket, a runtime
//! that does not answer in time, an answer without the blob) becomes
//! [`PublishedImage::Unavailable`] with the reason; nothing is guessed in its place.
//!
//! The service is asked for as `runtime.v1.ImageService` first and, when the runtime does not
//! implement that, as `runtime.v1alpha2.ImageService` (CRI-O before 1.23); containerd 1.x serves
//! both, containerd 2.x only v1. Every call is a new connection: a publish asks once.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use sc_api::image_config::{ImageConfig, PublishedImage};
use sc_proto::runtime::v1::{ImageSpec, ImageStatusRequest, ImageStatusResponse};
use serde::Deserialize;
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

/// The flag naming the runtime's socket; reasons that a missing socket gives name it.
pub const RUNTIME_ENDPOINT_FLAG: &str = "--runtime-endpoint";

/// Where the runtimes put their CRI socket by default, in the order they are tried when
/// `--runtime-endpoint` is empty: containerd, k3s's containerd, CRI-O (both of its usual paths),
/// cri-dockerd.
pub const DEFAULT_RUNTIME_SOCKETS: &[&str] = &[
    "/run/containerd/containerd.sock",
    "/run/k3s/containerd/containerd.sock",
    "/var/run/crio/crio.sock",
    "/run/crio/crio.sock",
    "/var/run/cri-dockerd.sock",
];

/// How long one `ImageStatus` (connection included) may take: a runtime that hangs must not keep
/// a consumer from starting for long.
pub const IMAGE_STATUS_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest part of an unreadable answer quoted in a reason.
const QUOTED_ANSWER_CHARS: usize = 160;

/// Which socket the runtime is asked on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuntimeEndpoint {
    /// The socket `--runtime-endpoint` names.
    Socket(PathBuf),
    /// The first of [`DEFAULT_RUNTIME_SOCKETS`] that exists, looked up at each question (so a
    /// runtime that comes up after the plugin is found).
    Detect,
}

impl RuntimeEndpoint {
    /// Parses `--runtime-endpoint`: empty (detect), `unix:///path/to/socket` or `/path/to/socket`.
    pub fn parse(flag: &str) -> Result<Self, String> {
        let flag = flag.trim();
        if flag.is_empty() {
            return Ok(RuntimeEndpoint::Detect);
        }
        let path = flag.strip_prefix("unix://").unwrap_or(flag);
        if !path.starts_with('/') {
            return Err(format!(
                "{RUNTIME_ENDPOINT_FLAG} {flag:?} is neither unix:///path/to/socket nor an absolute path; the plugin speaks to the container runtime over its Unix socket only (leave it empty to find the socket automatically)"
            ));
        }
        Ok(RuntimeEndpoint::Socket(PathBuf::from(path)))
    }

    /// The socket to ask on now, or why there is none.
    pub fn socket(&self) -> Result<PathBuf, CriError> {
        match self {
            RuntimeEndpoint::Socket(path) => Ok(path.clone()),
            RuntimeEndpoint::Detect => detect_socket(DEFAULT_RUNTIME_SOCKETS, is_socket)
                .map(Path::to_path_buf)
                .ok_or_else(|| CriError::NoSocket { tried: DEFAULT_RUNTIME_SOCKETS.join(", ") }),
        }
    }
}

/// The first of `candidates` that `is_socket` says is one.
pub fn detect_socket<'a>(candidates: &[&'a str], is_socket: impl Fn(&Path) -> bool) -> Option<&'a Path> {
    candidates.iter().map(|candidate| Path::new(*candidate)).find(|path| is_socket(path))
}

fn is_socket(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|metadata| metadata.file_type().is_socket())
}

/// Why the runtime gave no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CriError {
    #[error(
        "no container runtime socket found (tried {tried}); set the node plugin's {RUNTIME_ENDPOINT_FLAG} (chart value node.runtimeEndpoint) to the runtime's CRI socket"
    )]
    NoSocket { tried: String },
    #[error(
        "cannot connect to the container runtime at {socket}: {message}; check the node plugin's {RUNTIME_ENDPOINT_FLAG} (chart value node.runtimeEndpoint)"
    )]
    Connect { socket: String, message: String },
    #[error("the container runtime at {socket} did not answer {rpc} within {timeout:?}")]
    Timeout { socket: String, rpc: &'static str, timeout: Duration },
    #[error("the container runtime at {socket} serves neither runtime.v1 nor runtime.v1alpha2 {service}: {message}")]
    NoService { socket: String, service: &'static str, message: String },
    #[error("the container runtime at {socket} failed {rpc} ({service}, {code:?}): {message}")]
    Failed { socket: String, rpc: &'static str, service: &'static str, code: Code, message: String },
}

/// One CRI call to the runtime at `socket`, within `timeout`: `v1` on a new connection, then, when
/// the runtime does not implement `runtime.v1`'s `service`, `v1alpha2` on the same connection.
pub(crate) async fn call_with_fallback<T, V1, V1Future, Alpha, AlphaFuture>(
    socket: &Path,
    service: &'static str,
    rpc: &'static str,
    timeout: Duration,
    v1: V1,
    v1alpha2: Alpha,
) -> Result<T, CriError>
where
    V1: FnOnce(Channel) -> V1Future,
    V1Future: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    Alpha: FnOnce(Channel) -> AlphaFuture,
    AlphaFuture: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let display = socket.display().to_string();
    let call = async {
        let channel = connect(socket).await.map_err(|error| CriError::Connect { socket: display.clone(), message: error_chain(&error) })?;
        let failed = |service_name: &'static str, status: tonic::Status| CriError::Failed {
            socket: display.clone(),
            rpc,
            service: service_name,
            code: status.code(),
            message: status.message().to_owned(),
        };
        match v1(channel.clone()).await {
            Ok(response) => Ok(response.into_inner()),
            Err(status) if status.code() == Code::Unimplemented => match v1alpha2(channel).await {
                Ok(response) => Ok(response.into_inner()),
                Err(status) if status.code() == Code::Unimplemented => {
                    Err(CriError::NoService { socket: display.clone(), service, message: status.message().to_owned() })
                }
                Err(status) => Err(failed("runtime.v1alpha2", status)),
            },
            Err(status) => Err(failed("runtime.v1", status)),
        }
    };
    tokio::time::timeout(timeout, call).await.map_err(|_| CriError::Timeout { socket: display.clone(), rpc, timeout })?
}

/// Asks the runtime at `socket` for the verbose status of `image`, within `timeout`.
pub async fn image_status(socket: &Path, image: &str, timeout: Duration) -> Result<ImageStatusResponse, CriError> {
    let request = || ImageStatusRequest { image: Some(ImageSpec { image: image.to_owned(), ..ImageSpec::default() }), verbose: true };
    call_with_fallback(
        socket,
        "ImageService",
        "ImageStatus",
        timeout,
        |channel| async move { sc_proto::runtime::v1::image_service_client::ImageServiceClient::new(channel).image_status(request()).await },
        |channel| async move {
            sc_proto::runtime::v1alpha2::image_service_client::ImageServiceClient::new(channel).image_status(request()).await
        },
    )
    .await
}

/// A channel over the Unix socket. The URI only sets `:authority` (`localhost`, which every gRPC
/// server accepts); the connector dials the socket.
async fn connect(socket: &Path) -> Result<Channel, tonic::transport::Error> {
    let socket = socket.to_path_buf();
    Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_| {
            let socket = socket.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(socket).await?)) }
        }))
        .await
}

/// An error and its sources, one after the other (a transport error alone says only "transport
/// error").
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        // Some wrappers print their source as their own text: say it once.
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The name to ask the runtime about for kubelet's `imageID`: kubelet's dockershim-era prefixes
/// (`docker-pullable://`, `docker://`) are not part of any CRI image reference.
pub fn cri_image_name(image_ref: &str) -> &str {
    ["docker-pullable://", "docker://"].iter().find_map(|prefix| image_ref.strip_prefix(prefix)).unwrap_or(image_ref)
}

/// The verbose info both runtimes give: only `imageSpec` is read.
#[derive(Deserialize)]
struct VerboseInfo {
    #[serde(rename = "imageSpec", default)]
    image_spec: Option<OciImage>,
}

/// The OCI image config blob; only its `config` (which the OCI spec allows to be `null` or
/// absent: an image with no process defaults) is read.
#[derive(Deserialize)]
struct OciImage {
    #[serde(default)]
    config: Option<ImageConfig>,
}

/// The image's process defaults from a verbose `ImageStatus` answer, or why the answer has none.
pub fn image_config(response: &ImageStatusResponse) -> Result<ImageConfig, String> {
    if response.image.is_none() {
        return Err("the container runtime does not have the image (ImageStatus answered without one)".into());
    }
    image_config_from_info(&response.info)
}

/// The image's process defaults from the `info` map of a verbose `ImageStatus` answer.
pub fn image_config_from_info(info: &HashMap<String, String>) -> Result<ImageConfig, String> {
    let Some(text) = info.get("info") else {
        return Err(
            "the container runtime's ImageStatus answer has no verbose \"info\" entry (this runtime does not give image configs through the CRI)"
                .into(),
        );
    };
    let verbose: VerboseInfo = serde_json::from_str(text).map_err(|error| {
        format!("the container runtime's verbose image info cannot be read ({error}); it begins {:?}", quoted_start(text))
    })?;
    let image = verbose.image_spec.ok_or("the container runtime's verbose image info has no \"imageSpec\" (the image's config)")?;
    Ok(image.config.unwrap_or_default())
}

fn quoted_start(text: &str) -> String {
    text.chars().take(QUOTED_ANSWER_CHARS).collect()
}

/// What a publish tells the consumer about the image `image_ref`, from the runtime's answer.
pub fn published_image(image_ref: &str, answer: Result<ImageStatusResponse, CriError>) -> PublishedImage {
    let unavailable = |reason: String| PublishedImage::Unavailable { image_ref: image_ref.to_owned(), reason };
    match answer.map_err(|error| error.to_string()).and_then(|response| image_config(&response)) {
        Ok(config) => PublishedImage::Runtime { image_ref: image_ref.to_owned(), config },
        Err(reason) => unavailable(reason),
    }
}

/// Reads image configs from the node's container runtime.
#[derive(Clone, Debug)]
pub struct ImageConfigReader {
    pub endpoint: RuntimeEndpoint,
    pub timeout: Duration,
}

impl ImageConfigReader {
    pub fn new(endpoint: RuntimeEndpoint) -> Self {
        Self { endpoint, timeout: IMAGE_STATUS_TIMEOUT }
    }

    /// The config of `image_ref` (kubelet's `imageID` of the provider container), or why there is
    /// none. Never fails: a runtime problem is an [`PublishedImage::Unavailable`].
    pub async fn read(&self, image_ref: &str) -> PublishedImage {
        if image_ref.is_empty() {
            return PublishedImage::Unavailable {
                image_ref: String::new(),
                reason: "kubelet reports no image for the provider container".into(),
            };
        }
        let answer = match self.endpoint.socket() {
            Ok(socket) => image_status(&socket, cri_image_name(image_ref), self.timeout).await,
            Err(error) => Err(error),
        };
        published_image(image_ref, answer)
    }
}

#[cfg(test)]
mod tests {
    use sc_proto::runtime::v1::Image;

    use super::*;

    fn fixture(name: &str) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cri").join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
    }

    fn answer(info: Option<&str>) -> ImageStatusResponse {
        ImageStatusResponse {
            image: Some(Image { id: "sha256:abc".into(), ..Image::default() }),
            info: info.map(|text| HashMap::from([("info".to_owned(), text.to_owned())])).unwrap_or_default(),
        }
    }

    fn strings(words: &[&str]) -> Vec<String> {
        words.iter().map(|word| (*word).to_owned()).collect()
    }

    #[test]
    fn containerds_verbose_answer_gives_the_images_process_defaults() {
        let config = image_config(&answer(Some(&fixture("containerd-1.6-image-status-info.json")))).expect("a config");
        assert_eq!(config.entrypoint, strings(&["tini", "-g", "--"]));
        assert_eq!(config.cmd, strings(&["start-notebook.sh"]));
        assert_eq!(config.user, "1000");
        assert_eq!(config.working_dir, "/home/jovyan");
        assert_eq!(
            config.env,
            strings(&[
                "PATH=/opt/conda/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "DEBIAN_FRONTEND=noninteractive",
                "CONDA_DIR=/opt/conda",
                "SHELL=/bin/bash",
                "NB_USER=jovyan",
                "HOME=/home/jovyan",
            ])
        );
        assert_eq!(config.labels.get("maintainer").map(String::as_str), Some("Jupyter Project <jupyter@googlegroups.com>"));
    }

    #[test]
    fn cri_os_verbose_answer_gives_the_images_process_defaults() {
        let config = image_config(&answer(Some(&fixture("crio-1.20-image-status-info.json")))).expect("a config");
        assert_eq!(config.entrypoint, strings(&["/docker-entrypoint.sh"]));
        assert_eq!(config.cmd, strings(&["nginx", "-g", "daemon off;"]));
        assert_eq!(config.user, "", "no User: root");
        assert_eq!(config.working_dir, "");
        assert_eq!(config.env, strings(&["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "NGINX_VERSION=1.25.3"]));
        assert_eq!(config.labels.get("maintainer").map(String::as_str), Some("NGINX Docker Maintainers <docker-maint@nginx.com>"));
    }

    #[test]
    fn docker_style_nulls_and_an_image_without_a_config_are_empty_defaults_not_errors() {
        let nulls = r#"{"chainID":"sha256:1","imageSpec":{"architecture":"amd64","os":"linux","config":{"Entrypoint":null,"Cmd":["sh"],"Env":null,"Labels":null,"User":"","WorkingDir":""}}}"#;
        assert_eq!(image_config(&answer(Some(nulls))), Ok(ImageConfig { cmd: strings(&["sh"]), ..ImageConfig::default() }));
        for blob in [r#"{"imageSpec":{"os":"linux","config":null}}"#, r#"{"imageSpec":{"os":"linux"}}"#] {
            assert_eq!(image_config(&answer(Some(blob))), Ok(ImageConfig::default()), "{blob}");
        }
    }

    #[test]
    fn an_answer_without_the_config_says_what_is_missing() {
        let reason = image_config(&answer(None)).expect_err("no info");
        assert!(reason.contains("no verbose \"info\" entry"), "{reason}");
        // CRI-O writes `"imageSpec": null` for an image it has no config of.
        for blob in [r#"{"labels":{"a":"b"},"imageSpec":null}"#, r#"{"chainID":"sha256:1"}"#] {
            let reason = image_config(&answer(Some(blob))).expect_err("no imageSpec");
            assert!(reason.contains("has no \"imageSpec\""), "{blob}: {reason}");
        }
        // containerd puts its marshalling error there instead of JSON.
        let reason = image_config(&answer(Some("json: unsupported value: NaN"))).expect_err("not JSON");
        assert!(reason.starts_with("the container runtime's verbose image info cannot be read ("), "{reason}");
        assert!(reason.ends_with("it begins \"json: unsupported value: NaN\""), "{reason}");
        let reason = image_config(&answer(Some(r#"{"imageSpec":{"config":{"Cmd":"sh"}}}"#))).expect_err("a string for a list");
        assert!(reason.contains("cannot be read"), "{reason}");
        let reason = image_config(&ImageStatusResponse { image: None, info: HashMap::new() }).expect_err("no image");
        assert!(reason.contains("does not have the image"), "{reason}");
    }

    #[test]
    fn every_failure_is_an_unavailable_image_with_its_reason_and_the_image_named() {
        let published = published_image("sha256:abc", Err(CriError::NoSocket { tried: "/run/containerd/containerd.sock".into() }));
        let PublishedImage::Unavailable { image_ref, reason } = published else { panic!("unavailable") };
        assert_eq!(image_ref, "sha256:abc");
        assert!(reason.contains("set the node plugin's --runtime-endpoint (chart value node.runtimeEndpoint)"), "{reason}");
        let timeout = CriError::Timeout { socket: "/run/crio/crio.sock".into(), rpc: "ImageStatus", timeout: Duration::from_secs(5) };
        assert_eq!(
            published_image("x", Err(timeout)),
            PublishedImage::Unavailable {
                image_ref: "x".into(),
                reason: "the container runtime at /run/crio/crio.sock did not answer ImageStatus within 5s".into()
            }
        );
        let blob = r#"{"imageSpec":{"config":{"Cmd":["sh"]}}}"#;
        assert_eq!(
            published_image("x", Ok(answer(Some(blob)))),
            PublishedImage::Runtime { image_ref: "x".into(), config: ImageConfig { cmd: strings(&["sh"]), ..ImageConfig::default() } }
        );
    }

    #[test]
    fn the_endpoint_flag_takes_a_unix_url_or_a_path_and_empty_detects() {
        assert_eq!(RuntimeEndpoint::parse(""), Ok(RuntimeEndpoint::Detect));
        assert_eq!(RuntimeEndpoint::parse("  "), Ok(RuntimeEndpoint::Detect));
        let containerd = RuntimeEndpoint::Socket(PathBuf::from("/run/containerd/containerd.sock"));
        assert_eq!(RuntimeEndpoint::parse("unix:///run/containerd/containerd.sock"), Ok(containerd.clone()));
        assert_eq!(RuntimeEndpoint::parse("/run/containerd/containerd.sock"), Ok(containerd));
        for wrong in ["tcp://10.0.0.1:1234", "unix://run/crio.sock", "crio.sock"] {
            let error = RuntimeEndpoint::parse(wrong).expect_err(wrong);
            assert!(error.contains("is neither unix:///path/to/socket nor an absolute path"), "{error}");
        }
    }

    #[test]
    fn detection_takes_the_first_existing_socket_in_order() {
        let existing = |present: &'static [&'static str]| move |path: &Path| present.iter().any(|candidate| Path::new(candidate) == path);
        assert_eq!(detect_socket(DEFAULT_RUNTIME_SOCKETS, existing(&[])), None);
        assert_eq!(
            detect_socket(DEFAULT_RUNTIME_SOCKETS, existing(&["/var/run/cri-dockerd.sock", "/run/crio/crio.sock"])),
            Some(Path::new("/run/crio/crio.sock"))
        );
        assert_eq!(
            detect_socket(DEFAULT_RUNTIME_SOCKETS, existing(&["/run/k3s/containerd/containerd.sock", "/run/containerd/containerd.sock"])),
            Some(Path::new("/run/containerd/containerd.sock")),
            "containerd's own path first"
        );
        assert_eq!(
            detect_socket(DEFAULT_RUNTIME_SOCKETS, existing(&["/var/run/crio/crio.sock"])),
            Some(Path::new("/var/run/crio/crio.sock"))
        );
    }

    #[test]
    fn dockershim_prefixes_are_not_part_of_the_name_asked_for() {
        assert_eq!(cri_image_name("docker-pullable://nginx@sha256:0a1b"), "nginx@sha256:0a1b");
        assert_eq!(cri_image_name("docker://sha256:0a1b"), "sha256:0a1b");
        assert_eq!(cri_image_name("docker.io/library/nginx@sha256:0a1b"), "docker.io/library/nginx@sha256:0a1b");
        assert_eq!(cri_image_name("sha256:0a1b"), "sha256:0a1b");
    }

    #[tokio::test]
    async fn a_missing_socket_or_image_is_unavailable_without_waiting() {
        let dir = tempfile::tempdir().expect("tempdir");
        let reader = ImageConfigReader::new(RuntimeEndpoint::Socket(dir.path().join("absent.sock")));
        let started = std::time::Instant::now();
        let PublishedImage::Unavailable { reason, .. } = reader.read("sha256:abc").await else { panic!("unavailable") };
        assert!(
            reason.starts_with(&format!("cannot connect to the container runtime at {}", dir.path().join("absent.sock").display())),
            "{reason}"
        );
        assert!(reason.contains("No such file or directory"), "{reason}");
        assert!(started.elapsed() < Duration::from_secs(2));
        let PublishedImage::Unavailable { reason, .. } = reader.read("").await else { panic!("unavailable") };
        assert_eq!(reason, "kubelet reports no image for the provider container");
    }
}
