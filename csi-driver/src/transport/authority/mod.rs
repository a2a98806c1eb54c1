//! Lets kubelet 1.20 talk to the driver's gRPC servers.
//!
//! kubelet 1.20's gRPC client (grpc-go 1.27) sends the Unix socket path, e.g.
//! `/var/lib/kubelet/plugins/x/csi.sock`, as the HTTP/2 `:authority` of every request. The `h2`
//! crate under tonic rejects such a request as malformed (`PROTOCOL_ERROR`) before any tower layer
//! could look at it, so kubelet would never register the driver. [`AuthorityFixingStream`] sits
//! between an accepted socket and tonic and, in the client→server direction only, replaces an
//! `:authority` that is not a valid URI authority with [`REPLACEMENT_AUTHORITY`]. Every other byte
//! passes through untouched; the server→client direction is not looked at.
//!
//! How: the reader follows the HTTP/2 framing (RFC 9113) of what the client sends. Frames other
//! than HEADERS/CONTINUATION are forwarded as they arrive. A header block is buffered (at most
//! [`MAX_HEADER_BLOCK_BYTES`]) and HPACK-decoded (RFC 7541) by a decoder that lives as long as the
//! connection, because the client's encoder refers to its dynamic table across requests. Until a
//! block needs rewriting, blocks are forwarded byte for byte, so tonic's decoder builds exactly the
//! client's dynamic table. A rewritten block cannot replay the client's table insertions (the
//! entry sizes differ), so from the first rewrite on, tonic's table no longer matches the client's:
//! from then on every block of that connection is re-encoded from its decoded fields as literals
//! that neither read nor change the dynamic table, and tonic never depends on its table again.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use loona_hpack::decoder::DecoderError;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{UnixListener, UnixStream};
use tokio_stream::wrappers::UnixListenerStream;
use tokio_stream::{Stream, StreamExt};
use tonic::transport::server::Connected;

use rewriter::ClientFrameRewriter;

mod rewriter;

/// What an unusable `:authority` is replaced with: what newer kubelets send themselves.
pub const REPLACEMENT_AUTHORITY: &str = "localhost";

/// Largest header block (all HEADERS and CONTINUATION frames of one request, frame headers
/// included) the adapter buffers; a larger one fails the connection. gRPC requests from kubelet
/// carry well under a kilobyte of headers.
pub const MAX_HEADER_BLOCK_BYTES: usize = 1 << 20;

/// Largest decoded header list (RFC 9113 §6.5.2 size: name + value + 32 per field) accepted. An
/// HPACK block of one-byte references to a large dynamic-table entry decodes to thousands of times
/// its size, so the encoded limit alone would not bound memory.
pub const MAX_DECODED_HEADER_LIST_BYTES: usize = 1 << 20;

/// How many bytes are read from the socket at a time.
const READ_CHUNK_BYTES: usize = 8 * 1024;

/// Why the adapter closed a connection. Each one means the client did not speak HTTP/2 as a gRPC
/// client does; the client sees the connection drop and may reconnect.
#[derive(Debug, thiserror::Error)]
pub enum AuthorityFixError {
    #[error(
        "the HTTP/2 header block of stream {stream_id} is larger than {limit} bytes; gRPC requests \
         carry far less, so the connection was closed (check what connects to this socket)"
    )]
    HeaderBlockTooLarge { stream_id: u32, limit: usize },
    #[error(
        "the HTTP/2 header block of stream {stream_id} decodes to more than {limit} bytes of \
         headers; gRPC requests carry far less, so the connection was closed (check what connects \
         to this socket)"
    )]
    HeaderListTooLarge { stream_id: u32, limit: usize },
    #[error(
        "cannot HPACK-decode the header block of stream {stream_id}: {source}; the client's header \
         compression state is corrupt, so the connection was closed and the client must reconnect"
    )]
    Hpack {
        stream_id: u32,
        #[source]
        source: DecoderError,
    },
    #[error(
        "an HTTP/2 frame of type {frame_type:#x} arrived inside the header block of stream \
         {stream_id}, where only CONTINUATION frames may follow (RFC 9113 §6.10); the client is \
         not speaking HTTP/2 correctly"
    )]
    InterruptedHeaderBlock { stream_id: u32, frame_type: u8 },
    #[error(
        "a CONTINUATION frame for stream {continuation_stream_id} arrived inside the header block of \
         stream {stream_id} (RFC 9113 §6.10); the client is not speaking HTTP/2 correctly"
    )]
    ContinuationOnOtherStream { stream_id: u32, continuation_stream_id: u32 },
    #[error(
        "the HEADERS frame of stream {stream_id} has {payload_len} payload bytes, fewer than its \
         PADDED/PRIORITY flags require (RFC 9113 §6.2); the client is not speaking HTTP/2 correctly"
    )]
    MalformedHeadersFrame { stream_id: u32, payload_len: usize },
    #[error(
        "the client closed the connection inside the header block of stream {stream_id}; the \
         request was incomplete and is dropped"
    )]
    TruncatedHeaderBlock { stream_id: u32 },
    #[error("this connection already failed with an HTTP/2 framing error and cannot be read further")]
    AlreadyFailed,
}

impl From<AuthorityFixError> for io::Error {
    fn from(error: AuthorityFixError) -> Self {
        let kind = match error {
            AuthorityFixError::TruncatedHeaderBlock { .. } => io::ErrorKind::UnexpectedEof,
            AuthorityFixError::HeaderBlockTooLarge { .. }
            | AuthorityFixError::HeaderListTooLarge { .. }
            | AuthorityFixError::Hpack { .. }
            | AuthorityFixError::InterruptedHeaderBlock { .. }
            | AuthorityFixError::ContinuationOnOtherStream { .. }
            | AuthorityFixError::MalformedHeadersFrame { .. }
            | AuthorityFixError::AlreadyFailed => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, error)
    }
}

/// An accepted connection whose requests reach tonic with a usable `:authority`; see the module
/// documentation. Writes go to the inner stream unchanged.
pub struct AuthorityFixingStream<S> {
    inner: S,
    rewriter: ClientFrameRewriter,
    read_chunk: Box<[u8]>,
    /// Bytes produced by the rewriter that the reader has not taken yet, from `handed_out` on.
    rewritten: Vec<u8>,
    handed_out: usize,
    inner_at_eof: bool,
}

impl<S> AuthorityFixingStream<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            rewriter: ClientFrameRewriter::new(),
            read_chunk: vec![0; READ_CHUNK_BYTES].into_boxed_slice(),
            rewritten: Vec::new(),
            handed_out: 0,
            inner_at_eof: false,
        }
    }
}

/// Accepts connections on `listener`, each wrapped in an [`AuthorityFixingStream`]; feed this to
/// `tonic::transport::Server::serve_with_incoming`.
pub fn incoming(listener: UnixListener) -> impl Stream<Item = io::Result<AuthorityFixingStream<UnixStream>>> {
    UnixListenerStream::new(listener).map(|accepted| accepted.map(AuthorityFixingStream::new))
}

impl<S: Connected> Connected for AuthorityFixingStream<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityFixingStream<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if this.handed_out < this.rewritten.len() {
                let ready_bytes = &this.rewritten[this.handed_out..];
                let count = ready_bytes.len().min(buf.remaining());
                buf.put_slice(&ready_bytes[..count]);
                this.handed_out += count;
                if this.handed_out == this.rewritten.len() {
                    this.rewritten.clear();
                    this.handed_out = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.inner_at_eof {
                return Poll::Ready(Ok(()));
            }
            // Only read more once everything rewritten so far was handed out, so the buffer never
            // holds more than one read chunk plus one header block.
            let mut chunk = ReadBuf::new(&mut this.read_chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut chunk))?;
            let received = chunk.filled();
            if received.is_empty() {
                this.inner_at_eof = true;
                this.rewriter.finish(&mut this.rewritten)?;
            } else {
                this.rewriter.feed(received, &mut this.rewritten)?;
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityFixingStream<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
