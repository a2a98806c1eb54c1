//! A real tonic server on a Unix socket, called the way kubelet 1.20 (grpc-go 1.27) calls it: with
//! the socket path as `:authority`. Behind the adapter the calls succeed; without it the server
//! refuses them with PROTOCOL_ERROR, which is what kubelet 1.20 saw.

// csi-driver is a binary crate, so the module is compiled into this test directly; not every
// public item of it is used here.
use csi_driver::transport::authority;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use loona_hpack::Decoder;
use prost::Message;
use sc_proto::csi::identity_server::{Identity, IdentityServer};
use sc_proto::csi::{
    GetPluginCapabilitiesRequest, GetPluginCapabilitiesResponse, GetPluginInfoRequest, GetPluginInfoResponse, ProbeRequest, ProbeResponse,
};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio_stream::wrappers::UnixListenerStream;
use tonic::codegen::Bytes;
use tonic::codegen::http;
use tonic::transport::Server;
use tonic::transport::server::UdsConnectInfo;
use tonic::{Request, Response, Status};

const DRIVER_NAME: &str = "authority-test.example.com";
const GET_PLUGIN_INFO_PATH: &str = "/csi.v1.Identity/GetPluginInfo";
const CLIENT_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_DATA: u8 = 0x0;
const FRAME_HEADERS: u8 = 0x1;
const FRAME_RST_STREAM: u8 = 0x3;
const FRAME_SETTINGS: u8 = 0x4;
const FRAME_PING: u8 = 0x6;
const FRAME_GOAWAY: u8 = 0x7;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_ACK: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const PROTOCOL_ERROR: u32 = 0x1;
/// An empty protobuf message in gRPC's length-prefixed framing.
const EMPTY_GRPC_MESSAGE: [u8; 5] = [0, 0, 0, 0, 0];

/// Answers GetPluginInfo with the caller's uid as seen through tonic's connect info, which proves
/// the adapter hands tonic the socket's peer credentials.
struct TestIdentity;

#[tonic::async_trait]
impl Identity for TestIdentity {
    async fn get_plugin_info(&self, request: Request<GetPluginInfoRequest>) -> Result<Response<GetPluginInfoResponse>, Status> {
        let peer_uid = request
            .extensions()
            .get::<UdsConnectInfo>()
            .and_then(|info| info.peer_cred)
            .map(|cred| cred.uid())
            .ok_or_else(|| Status::internal("no Unix peer credentials in the request"))?;
        Ok(Response::new(GetPluginInfoResponse {
            name: DRIVER_NAME.to_owned(),
            vendor_version: format!("peer-uid={peer_uid}"),
            manifest: Default::default(),
        }))
    }

    async fn get_plugin_capabilities(
        &self,
        _request: Request<GetPluginCapabilitiesRequest>,
    ) -> Result<Response<GetPluginCapabilitiesResponse>, Status> {
        Err(Status::unimplemented("this test only calls GetPluginInfo"))
    }

    async fn probe(&self, _request: Request<ProbeRequest>) -> Result<Response<ProbeResponse>, Status> {
        Err(Status::unimplemented("this test only calls GetPluginInfo"))
    }
}

struct TestServer {
    socket: PathBuf,
    /// Owner of the socket directory: the uid the server must report for our calls.
    our_uid: u32,
    _dir: TempDir,
    task: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start_server(behind_adapter: bool) -> TestServer {
    let dir = tempfile::tempdir().expect("create socket directory");
    let socket = dir.path().join("csi.sock");
    let listener = UnixListener::bind(&socket).expect("bind test socket");
    let router = Server::builder().add_service(IdentityServer::new(TestIdentity));
    let task = if behind_adapter {
        tokio::spawn(router.serve_with_incoming(authority::incoming(listener)))
    } else {
        tokio::spawn(router.serve_with_incoming(UnixListenerStream::new(listener)))
    };
    let our_uid = std::fs::metadata(dir.path()).expect("stat socket directory").uid();
    TestServer { socket, our_uid, _dir: dir, task }
}

/// What the server answered on one stream.
#[derive(Debug, Default)]
struct StreamOutcome {
    headers: BTreeMap<String, String>,
    trailers: BTreeMap<String, String>,
    data: Vec<u8>,
    reset_code: Option<u32>,
    ended: bool,
}

impl StreamOutcome {
    fn plugin_info(&self) -> GetPluginInfoResponse {
        assert_eq!(self.reset_code, None, "stream was reset: {self:?}");
        assert_eq!(self.headers.get(":status").map(String::as_str), Some("200"), "{self:?}");
        assert_eq!(self.trailers.get("grpc-status").map(String::as_str), Some("0"), "{self:?}");
        let message = self.data.get(5..).expect("response shorter than the gRPC message prefix");
        GetPluginInfoResponse::decode(message).expect("decode GetPluginInfoResponse")
    }
}

/// Encodes the way grpc-go's encoder does for these fields: a field already sent on the
/// connection becomes a one-byte table reference, any other a literal added to the dynamic table,
/// so later requests refer to the socket-path `:authority` by index.
#[derive(Default)]
struct GrpcGoLikeEncoder {
    /// Newest entry first, as HPACK numbers them (from 62 on).
    table: Vec<(String, String)>,
}

impl GrpcGoLikeEncoder {
    fn encode(&mut self, fields: &[(&str, &str)]) -> Vec<u8> {
        let mut block = Vec::new();
        for &(name, value) in fields {
            match self.table.iter().position(|entry| entry.0 == name && entry.1 == value) {
                Some(position) => {
                    let index = 62 + position;
                    assert!(index < 127, "this test encoder writes one-byte indexes only");
                    block.push(0x80 | index as u8);
                }
                None => {
                    block.push(0x40);
                    for octets in [name.as_bytes(), value.as_bytes()] {
                        assert!(octets.len() < 127, "this test encoder writes short strings only");
                        block.push(octets.len() as u8);
                        block.extend_from_slice(octets);
                    }
                    self.table.insert(0, (name.to_owned(), value.to_owned()));
                }
            }
        }
        block
    }
}

fn frame(frame_type: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
    let length = u32::try_from(payload.len()).expect("frame length").to_be_bytes();
    let mut bytes = length[1..].to_vec();
    bytes.extend([frame_type, flags]);
    bytes.extend(stream_id.to_be_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

/// Makes `calls` GetPluginInfo calls on one connection the way kubelet 1.20 does, with
/// `authority` as `:authority`, and collects what the server answers per stream.
async fn call_like_kubelet_1_20(socket: &Path, authority: &str, calls: u32) -> BTreeMap<u32, StreamOutcome> {
    let mut connection = UnixStream::connect(socket).await.expect("connect to test socket");
    let mut encoder = GrpcGoLikeEncoder::default();
    let mut request = CLIENT_PREFACE.to_vec();
    request.extend(frame(FRAME_SETTINGS, 0, 0, &[]));
    let stream_ids: Vec<u32> = (0..calls).map(|call| 1 + 2 * call).collect();
    for &stream_id in &stream_ids {
        let block = encoder.encode(&[
            (":method", "POST"),
            (":scheme", "http"),
            (":path", GET_PLUGIN_INFO_PATH),
            (":authority", authority),
            ("content-type", "application/grpc"),
            ("user-agent", "grpc-go/1.27.1"),
            ("te", "trailers"),
        ]);
        request.extend(frame(FRAME_HEADERS, FLAG_END_HEADERS, stream_id, &block));
        request.extend(frame(FRAME_DATA, FLAG_END_STREAM, stream_id, &EMPTY_GRPC_MESSAGE));
    }
    connection.write_all(&request).await.expect("send requests");

    let mut outcomes: BTreeMap<u32, StreamOutcome> = stream_ids.iter().map(|&id| (id, StreamOutcome::default())).collect();
    let mut decoder = Decoder::new();
    let read_answers = async {
        while !outcomes.values().all(|outcome| outcome.ended) {
            let mut header = [0u8; 9];
            if connection.read_exact(&mut header).await.is_err() {
                break;
            }
            let length = usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
            let (frame_type, flags) = (header[3], header[4]);
            let stream_id = u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7FFF_FFFF;
            let mut payload = vec![0; length];
            connection.read_exact(&mut payload).await.expect("read frame payload");
            match frame_type {
                FRAME_SETTINGS if flags & FLAG_ACK == 0 => {
                    connection.write_all(&frame(FRAME_SETTINGS, FLAG_ACK, 0, &[])).await.expect("acknowledge SETTINGS");
                }
                FRAME_PING if flags & FLAG_ACK == 0 => {
                    connection.write_all(&frame(FRAME_PING, FLAG_ACK, 0, &payload)).await.expect("answer PING");
                }
                FRAME_GOAWAY => break,
                FRAME_HEADERS => {
                    assert!(flags & FLAG_END_HEADERS != 0, "server split its headers");
                    let fields: BTreeMap<String, String> = decoder
                        .decode(&payload)
                        .expect("decode server headers")
                        .into_iter()
                        .map(|(name, value)| (String::from_utf8_lossy(&name).into_owned(), String::from_utf8_lossy(&value).into_owned()))
                        .collect();
                    let outcome = outcomes.get_mut(&stream_id).expect("HEADERS on an unknown stream");
                    if outcome.headers.is_empty() {
                        outcome.headers = fields;
                    } else {
                        outcome.trailers = fields;
                    }
                    outcome.ended |= flags & FLAG_END_STREAM != 0;
                }
                FRAME_DATA => {
                    let outcome = outcomes.get_mut(&stream_id).expect("DATA on an unknown stream");
                    outcome.data.extend_from_slice(&payload);
                    outcome.ended |= flags & FLAG_END_STREAM != 0;
                }
                FRAME_RST_STREAM => {
                    let outcome = outcomes.get_mut(&stream_id).expect("RST_STREAM on an unknown stream");
                    let code = payload.first_chunk::<4>().expect("RST_STREAM without error code");
                    outcome.reset_code = Some(u32::from_be_bytes(*code));
                    outcome.ended = true;
                }
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read_answers).await.expect("the server did not answer every call within 20 s");
    outcomes
}

#[tokio::test]
async fn socket_path_authority_is_served_behind_the_adapter() {
    let server = start_server(true).await;

    // Two calls on one connection: the second refers to the socket-path authority by index.
    let outcomes = call_like_kubelet_1_20(&server.socket, "/tmp/x/csi.sock", 2).await;

    assert_eq!(outcomes.len(), 2);
    for outcome in outcomes.values() {
        let info = outcome.plugin_info();
        assert_eq!(info.name, DRIVER_NAME);
        assert_eq!(info.vendor_version, format!("peer-uid={}", server.our_uid));
    }
}

#[tokio::test]
async fn socket_path_authority_is_refused_with_protocol_error_without_the_adapter() {
    let server = start_server(false).await;

    let outcomes = call_like_kubelet_1_20(&server.socket, "/tmp/x/csi.sock", 1).await;

    assert_eq!(outcomes[&1].reset_code, Some(PROTOCOL_ERROR), "{:?}", outcomes[&1]);
}

#[tokio::test]
async fn valid_authority_from_the_same_client_is_served_both_ways() {
    for behind_adapter in [true, false] {
        let server = start_server(behind_adapter).await;

        let outcomes = call_like_kubelet_1_20(&server.socket, "localhost", 2).await;

        for outcome in outcomes.values() {
            assert_eq!(outcome.plugin_info().name, DRIVER_NAME);
        }
    }
}

#[tokio::test]
async fn h2_client_is_served_behind_the_adapter() {
    let server = start_server(true).await;
    let connection = UnixStream::connect(&server.socket).await.expect("connect to test socket");
    let (client, driver) = h2::client::handshake(connection).await.expect("HTTP/2 handshake");
    let driver_task = tokio::spawn(driver);
    let mut client = client.ready().await.expect("h2 client ready");
    let request = http::Request::builder()
        .method(http::Method::POST)
        .uri(format!("http://localhost{GET_PLUGIN_INFO_PATH}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .expect("build request");

    let (response, mut request_body) = client.send_request(request, false).expect("send request");
    request_body.send_data(Bytes::from_static(&EMPTY_GRPC_MESSAGE), true).expect("send request message");
    let response = response.await.expect("response headers");
    assert_eq!(response.status(), http::StatusCode::OK);
    let mut body = response.into_body();
    let mut data = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("response data");
        body.flow_control().release_capacity(chunk.len()).expect("release capacity");
        data.extend_from_slice(&chunk);
    }
    let trailers = body.trailers().await.expect("response trailers").expect("no trailers");

    assert_eq!(trailers.get("grpc-status").map(|value| value.as_bytes()), Some(&b"0"[..]));
    let info = GetPluginInfoResponse::decode(&data[5..]).expect("decode GetPluginInfoResponse");
    assert_eq!(info.name, DRIVER_NAME);
    driver_task.abort();
}
