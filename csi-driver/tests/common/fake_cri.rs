//! A fake container runtime for tests: a real tonic server of the CRI image service's
//! `ImageStatus` on a Unix socket, serving `runtime.v1`, `runtime.v1alpha2`, both or neither,
//! answering from a table of images and recording what it was asked. No root needed.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sc_proto::runtime::v1::{Image, ImageStatusRequest, ImageStatusResponse};
use sc_proto::runtime::{v1, v1alpha2};
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request, Response, Status};

/// Which service names the fake serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Serves {
    /// Both, as containerd 1.x does.
    Both,
    /// `runtime.v1alpha2` only, as CRI-O before 1.23 does: `runtime.v1` is `Unimplemented`.
    V1alpha2Only,
    /// Neither (another gRPC server on the socket).
    Neither,
}

/// How the fake answers.
#[derive(Clone, Debug, Default)]
struct State {
    /// Image name → the verbose `info["info"]` value (`None`: an answer without verbose info).
    images: HashMap<String, Option<String>>,
    /// Never answer (a runtime that hangs).
    hang: bool,
    asked: Vec<Asked>,
}

/// One question the fake was asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Asked {
    /// `runtime.v1` or `runtime.v1alpha2`.
    pub service: &'static str,
    pub image: String,
    pub verbose: bool,
}

#[derive(Clone)]
struct Service {
    name: &'static str,
    state: Arc<Mutex<State>>,
}

impl Service {
    async fn answer(&self, request: ImageStatusRequest) -> Result<Response<ImageStatusResponse>, Status> {
        let image = request.image.map(|spec| spec.image).unwrap_or_default();
        let (known, hang) = {
            let mut state = self.state.lock().expect("state");
            state.asked.push(Asked { service: self.name, image: image.clone(), verbose: request.verbose });
            (state.images.get(&image).cloned(), state.hang)
        };
        if hang {
            std::future::pending::<()>().await;
        }
        // As the runtimes answer an image they do not have: no image, no error.
        let Some(info) = known else { return Ok(Response::new(ImageStatusResponse::default())) };
        let info = match (info, request.verbose) {
            (Some(text), true) => HashMap::from([("info".to_owned(), text)]),
            _ => HashMap::new(),
        };
        Ok(Response::new(ImageStatusResponse { image: Some(Image { id: image, size: 4096, ..Image::default() }), info }))
    }
}

#[tonic::async_trait]
impl v1::image_service_server::ImageService for Service {
    async fn image_status(&self, request: Request<ImageStatusRequest>) -> Result<Response<ImageStatusResponse>, Status> {
        self.answer(request.into_inner()).await
    }
}

#[tonic::async_trait]
impl v1alpha2::image_service_server::ImageService for Service {
    async fn image_status(&self, request: Request<ImageStatusRequest>) -> Result<Response<ImageStatusResponse>, Status> {
        self.answer(request.into_inner()).await
    }
}

/// The running fake; stops when dropped.
pub struct FakeRuntime {
    pub socket: PathBuf,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeRuntime {
    /// Serves on `socket` (created; must not exist) from the current Tokio runtime.
    pub fn serve(socket: &Path, serves: Serves) -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let listener = UnixListener::bind(socket).expect("bind the fake runtime's socket");
        let v1 = (serves == Serves::Both)
            .then(|| v1::image_service_server::ImageServiceServer::new(Service { name: "runtime.v1", state: Arc::clone(&state) }));
        let v1alpha2 = (serves != Serves::Neither).then(|| {
            v1alpha2::image_service_server::ImageServiceServer::new(Service { name: "runtime.v1alpha2", state: Arc::clone(&state) })
        });
        let server = tonic::transport::Server::builder()
            .add_optional_service(v1)
            .add_optional_service(v1alpha2)
            .serve_with_incoming(UnixListenerStream::new(listener));
        let task = tokio::spawn(async move {
            let _ = server.await;
        });
        Self { socket: socket.to_path_buf(), state, task }
    }

    /// Knows `image`, answering `info` as its verbose info (`None`: no verbose info at all).
    pub fn add_image(&self, image: &str, info: Option<&str>) {
        self.state.lock().expect("state").images.insert(image.to_owned(), info.map(str::to_owned));
    }

    /// Never answers from now on.
    pub fn hang(&self) {
        self.state.lock().expect("state").hang = true;
    }

    /// Every question so far, in order.
    pub fn asked(&self) -> Vec<Asked> {
        self.state.lock().expect("state").asked.clone()
    }
}

impl Drop for FakeRuntime {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// The verbose info of one of the recorded runtime answers in `tests/fixtures/cri/`.
pub fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cri").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// containerd 1.6's verbose info of a Jupyter-like image (user 1000, tini entrypoint, conda PATH).
pub const CONTAINERD_FIXTURE: &str = "containerd-1.6-image-status-info.json";
/// CRI-O 1.20's verbose info of an nginx-like image.
pub const CRIO_FIXTURE: &str = "crio-1.20-image-status-info.json";
