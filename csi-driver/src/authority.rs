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

use loona_hpack::Decoder;
use loona_hpack::decoder::DecoderError;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{UnixListener, UnixStream};
use tokio_stream::wrappers::UnixListenerStream;
use tokio_stream::{Stream, StreamExt};
use tonic::codegen::http::uri::Authority;
use tonic::transport::server::Connected;

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

/// Bound on the HPACK dynamic table the client may ask for. tonic (h2) advertises the default
/// 4096 bytes and rejects anything above what it advertised; this only bounds the memory of the
/// adapter's own decoder if that default ever grows.
const MAX_DYNAMIC_TABLE_BYTES: usize = 64 * 1024;

/// How many bytes are read from the socket at a time.
const READ_CHUNK_BYTES: usize = 8 * 1024;

const CLIENT_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER_LEN: usize = 9;
const FRAME_TYPE_HEADERS: u8 = 0x1;
const FRAME_TYPE_CONTINUATION: u8 = 0x9;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;
const PRIORITY_FIELDS_LEN: usize = 5;
/// The initial SETTINGS_MAX_FRAME_SIZE: every HTTP/2 server accepts frames this large, whatever
/// it advertised, so re-encoded blocks are cut at this size.
const MAX_EMITTED_FRAME_PAYLOAD: usize = 16_384;
const AUTHORITY_HEADER: &[u8] = b":authority";
/// HPACK "literal header field never indexed, new name" (RFC 7541 §6.2.3).
const HPACK_LITERAL_NEVER_INDEXED_NEW_NAME: u8 = 0x10;
/// HPACK "dynamic table size update" (RFC 7541 §6.3): pattern `001` and a 5-bit prefix.
const HPACK_TABLE_SIZE_UPDATE_MASK: u8 = 0xE0;
const HPACK_TABLE_SIZE_UPDATE_PATTERN: u8 = 0x20;
const HPACK_TABLE_SIZE_UPDATE_PREFIX_BITS: u32 = 5;
const HPACK_STRING_LENGTH_PREFIX_BITS: u32 = 7;

/// Decoded header fields (name, value) in the order the client sent them.
type HeaderFields = Vec<(Vec<u8>, Vec<u8>)>;

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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FrameHeader {
    /// The 9 bytes as received, so a forwarded frame keeps even its reserved bit.
    raw: [u8; FRAME_HEADER_LEN],
    payload_len: usize,
    frame_type: u8,
    flags: u8,
    stream_id: u32,
}

impl FrameHeader {
    fn parse(raw: [u8; FRAME_HEADER_LEN]) -> Self {
        let payload_len = usize::from(raw[0]) << 16 | usize::from(raw[1]) << 8 | usize::from(raw[2]);
        let stream_id = u32::from_be_bytes([raw[5], raw[6], raw[7], raw[8]]) & 0x7FFF_FFFF;
        Self { raw, payload_len, frame_type: raw[3], flags: raw[4], stream_id }
    }
}

fn push_frame_header(out: &mut Vec<u8>, payload_len: usize, frame_type: u8, flags: u8, stream_id: u32) {
    // Callers never exceed MAX_EMITTED_FRAME_PAYLOAD, which fits the 24-bit length field.
    let length_bytes = (payload_len as u32).to_be_bytes();
    out.extend_from_slice(&length_bytes[1..]);
    out.push(frame_type);
    out.push(flags);
    out.extend_from_slice(&stream_id.to_be_bytes());
}

/// Where the reader is in the client's byte stream.
enum ReadState {
    /// Matching the 24-byte client connection preface.
    Preface {
        matched: usize,
    },
    /// The client did not open with the HTTP/2 preface: not HTTP/2 with prior knowledge, so there
    /// are no frames to follow; everything is forwarded for tonic to reject.
    Opaque,
    FrameHeader {
        raw: [u8; FRAME_HEADER_LEN],
        filled: usize,
    },
    /// Forwarding the payload of a frame that carries no header block.
    ForwardPayload {
        remaining: usize,
    },
    /// Buffering the payload of a HEADERS or CONTINUATION frame.
    HeaderPayload {
        header: FrameHeader,
        payload: Vec<u8>,
    },
    /// An error was returned; nothing more is parsed.
    Failed,
}

impl ReadState {
    fn next_frame() -> Self {
        Self::FrameHeader { raw: [0; FRAME_HEADER_LEN], filled: 0 }
    }
}

/// A header block whose END_HEADERS has not arrived yet.
struct OpenHeaderBlock {
    stream_id: u32,
    end_stream: bool,
    priority: Option<[u8; PRIORITY_FIELDS_LEN]>,
    /// The HPACK bytes of all frames so far, without padding and priority fields.
    fragment: Vec<u8>,
    /// The frames as received, forwarded as they are when no rewrite is needed.
    raw_frames: Vec<u8>,
}

/// The client→server half of the adapter, without I/O: bytes in, rewritten bytes out.
struct ClientFrameRewriter {
    state: ReadState,
    open_block: Option<OpenHeaderBlock>,
    decoder: Decoder<'static>,
    /// Set by the first rewritten block; see the module documentation.
    downstream_table_diverged: bool,
}

impl ClientFrameRewriter {
    fn new() -> Self {
        let mut decoder = Decoder::new();
        decoder.set_max_allowed_table_size(MAX_DYNAMIC_TABLE_BYTES);
        Self { state: ReadState::Preface { matched: 0 }, open_block: None, decoder, downstream_table_diverged: false }
    }

    /// Consumes `input`, appending what the server should read to `out`. Bytes of an incomplete
    /// frame header or header block are kept until the rest arrives.
    fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), AuthorityFixError> {
        let result = self.feed_inner(input, out);
        if result.is_err() {
            self.state = ReadState::Failed;
        }
        result
    }

    /// Called when the client closed its side: forwards a partial frame header as it is (the
    /// server reports the truncation), but a partial header block cannot be forwarded.
    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), AuthorityFixError> {
        if let Some(block) = &self.open_block {
            return Err(AuthorityFixError::TruncatedHeaderBlock { stream_id: block.stream_id });
        }
        match &self.state {
            ReadState::HeaderPayload { header, .. } => Err(AuthorityFixError::TruncatedHeaderBlock { stream_id: header.stream_id }),
            ReadState::FrameHeader { raw, filled } => {
                out.extend_from_slice(&raw[..*filled]);
                Ok(())
            }
            ReadState::Failed => Err(AuthorityFixError::AlreadyFailed),
            ReadState::Preface { .. } | ReadState::Opaque | ReadState::ForwardPayload { .. } => Ok(()),
        }
    }

    fn feed_inner(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), AuthorityFixError> {
        while !input.is_empty() {
            match &mut self.state {
                ReadState::Preface { matched } => {
                    let expected = &CLIENT_PREFACE[*matched..];
                    let count = expected.len().min(input.len());
                    if input[..count] != expected[..count] {
                        self.state = ReadState::Opaque;
                        continue;
                    }
                    out.extend_from_slice(&input[..count]);
                    input = &input[count..];
                    *matched += count;
                    if *matched == CLIENT_PREFACE.len() {
                        self.state = ReadState::next_frame();
                    }
                }
                ReadState::Opaque => {
                    out.extend_from_slice(input);
                    input = &[];
                }
                ReadState::FrameHeader { raw, filled } => {
                    let count = (FRAME_HEADER_LEN - *filled).min(input.len());
                    raw[*filled..*filled + count].copy_from_slice(&input[..count]);
                    *filled += count;
                    input = &input[count..];
                    if *filled == FRAME_HEADER_LEN {
                        let header = FrameHeader::parse(*raw);
                        self.state = self.start_frame(header, out)?;
                    }
                }
                ReadState::ForwardPayload { remaining } => {
                    let count = (*remaining).min(input.len());
                    out.extend_from_slice(&input[..count]);
                    input = &input[count..];
                    *remaining -= count;
                    if *remaining == 0 {
                        self.state = ReadState::next_frame();
                    }
                }
                ReadState::HeaderPayload { header, payload } => {
                    let count = (header.payload_len - payload.len()).min(input.len());
                    payload.extend_from_slice(&input[..count]);
                    input = &input[count..];
                    if payload.len() == header.payload_len {
                        let header = *header;
                        let payload = std::mem::take(payload);
                        self.state = ReadState::next_frame();
                        self.finish_header_frame(header, payload, out)?;
                    }
                }
                ReadState::Failed => return Err(AuthorityFixError::AlreadyFailed),
            }
        }
        Ok(())
    }

    /// Decides, from a complete frame header, how the frame's payload is handled.
    fn start_frame(&mut self, header: FrameHeader, out: &mut Vec<u8>) -> Result<ReadState, AuthorityFixError> {
        let buffered_so_far = match &self.open_block {
            Some(block) if header.frame_type != FRAME_TYPE_CONTINUATION => {
                return Err(AuthorityFixError::InterruptedHeaderBlock { stream_id: block.stream_id, frame_type: header.frame_type });
            }
            Some(block) if header.stream_id != block.stream_id => {
                return Err(AuthorityFixError::ContinuationOnOtherStream {
                    stream_id: block.stream_id,
                    continuation_stream_id: header.stream_id,
                });
            }
            Some(block) => block.raw_frames.len(),
            // A CONTINUATION outside a header block is a protocol error tonic reports itself;
            // like every frame without a header block it is forwarded untouched.
            None if header.frame_type != FRAME_TYPE_HEADERS => {
                out.extend_from_slice(&header.raw);
                return Ok(if header.payload_len == 0 {
                    ReadState::next_frame()
                } else {
                    ReadState::ForwardPayload { remaining: header.payload_len }
                });
            }
            None => 0,
        };
        if buffered_so_far + FRAME_HEADER_LEN + header.payload_len > MAX_HEADER_BLOCK_BYTES {
            return Err(AuthorityFixError::HeaderBlockTooLarge { stream_id: header.stream_id, limit: MAX_HEADER_BLOCK_BYTES });
        }
        let payload = Vec::with_capacity(header.payload_len);
        if header.payload_len == 0 {
            self.finish_header_frame(header, payload, out)?;
            return Ok(ReadState::next_frame());
        }
        Ok(ReadState::HeaderPayload { header, payload })
    }

    fn finish_header_frame(&mut self, header: FrameHeader, payload: Vec<u8>, out: &mut Vec<u8>) -> Result<(), AuthorityFixError> {
        match &mut self.open_block {
            Some(block) => {
                block.fragment.extend_from_slice(&payload);
                block.raw_frames.extend_from_slice(&header.raw);
                block.raw_frames.extend_from_slice(&payload);
            }
            None => {
                let (priority, fragment) = split_headers_payload(&header, &payload)?;
                let mut raw_frames = Vec::with_capacity(FRAME_HEADER_LEN + payload.len());
                raw_frames.extend_from_slice(&header.raw);
                raw_frames.extend_from_slice(&payload);
                self.open_block = Some(OpenHeaderBlock {
                    stream_id: header.stream_id,
                    end_stream: header.flags & FLAG_END_STREAM != 0,
                    priority,
                    fragment: fragment.to_vec(),
                    raw_frames,
                });
            }
        }
        if header.flags & FLAG_END_HEADERS != 0
            && let Some(block) = self.open_block.take()
        {
            self.finish_header_block(block, out)?;
        }
        Ok(())
    }

    fn finish_header_block(&mut self, block: OpenHeaderBlock, out: &mut Vec<u8>) -> Result<(), AuthorityFixError> {
        let fields = self.decode(&block)?;
        let has_unusable_authority = fields.iter().any(|(name, value)| is_unusable_authority(name, value));
        if !has_unusable_authority && !self.downstream_table_diverged {
            out.extend_from_slice(&block.raw_frames);
            return Ok(());
        }
        self.downstream_table_diverged = true;
        let fields: HeaderFields = fields
            .into_iter()
            .map(|(name, value)| {
                if is_unusable_authority(&name, &value) {
                    tracing::debug!(
                        stream_id = block.stream_id,
                        authority = %String::from_utf8_lossy(&value),
                        replacement = REPLACEMENT_AUTHORITY,
                        "replacing an :authority that is not a URI authority (kubelet 1.20 sends \
                         the socket path)"
                    );
                    (name, REPLACEMENT_AUTHORITY.as_bytes().to_vec())
                } else {
                    (name, value)
                }
            })
            .collect();
        let encoded = encode_stateless_header_block(leading_table_size_updates(&block.fragment), &fields);
        push_header_block_frames(out, &block, &encoded);
        Ok(())
    }

    /// Decodes a whole block, keeping the decoder's dynamic table in step with the client's
    /// encoder whether or not the block is rewritten.
    fn decode(&mut self, block: &OpenHeaderBlock) -> Result<HeaderFields, AuthorityFixError> {
        let mut fields = Vec::new();
        let mut decoded_size = 0usize;
        self.decoder
            .decode_with_cb(&block.fragment, |name, value| {
                decoded_size = decoded_size.saturating_add(name.len() + value.len() + 32);
                // Past the limit, decoding still runs to the end (the callback cannot stop it)
                // but nothing more is kept.
                if decoded_size <= MAX_DECODED_HEADER_LIST_BYTES {
                    fields.push((name.into_owned(), value.into_owned()));
                }
            })
            .map_err(|source| AuthorityFixError::Hpack { stream_id: block.stream_id, source })?;
        if decoded_size > MAX_DECODED_HEADER_LIST_BYTES {
            return Err(AuthorityFixError::HeaderListTooLarge { stream_id: block.stream_id, limit: MAX_DECODED_HEADER_LIST_BYTES });
        }
        Ok(fields)
    }
}

/// The same test h2 applies (`uri::Authority::from_maybe_shared`), so exactly the requests h2
/// would refuse are rewritten.
fn is_unusable_authority(name: &[u8], value: &[u8]) -> bool {
    name == AUTHORITY_HEADER && Authority::try_from(value).is_err()
}

/// Splits a HEADERS payload into its priority fields and its header block fragment, dropping
/// padding (RFC 9113 §6.2).
fn split_headers_payload<'p>(
    header: &FrameHeader,
    payload: &'p [u8],
) -> Result<(Option<[u8; PRIORITY_FIELDS_LEN]>, &'p [u8]), AuthorityFixError> {
    let malformed = || AuthorityFixError::MalformedHeadersFrame { stream_id: header.stream_id, payload_len: payload.len() };
    let mut rest = payload;
    let mut padding_len = 0;
    if header.flags & FLAG_PADDED != 0 {
        let (&pad_length_field, after) = rest.split_first().ok_or_else(malformed)?;
        padding_len = usize::from(pad_length_field);
        rest = after;
    }
    let mut priority = None;
    if header.flags & FLAG_PRIORITY != 0 {
        let (fields, after) = rest.split_first_chunk::<PRIORITY_FIELDS_LEN>().ok_or_else(malformed)?;
        priority = Some(*fields);
        rest = after;
    }
    let fragment_len = rest.len().checked_sub(padding_len).ok_or_else(malformed)?;
    Ok((priority, &rest[..fragment_len]))
}

/// The dynamic table size updates a block starts with (RFC 7541 §4.2 allows them only there).
/// They are kept in a re-encoded block so the server's table limit follows the client's.
fn leading_table_size_updates(fragment: &[u8]) -> &[u8] {
    let mut end = 0;
    while fragment.get(end).is_some_and(|&byte| byte & HPACK_TABLE_SIZE_UPDATE_MASK == HPACK_TABLE_SIZE_UPDATE_PATTERN) {
        match hpack_integer_len(&fragment[end..], HPACK_TABLE_SIZE_UPDATE_PREFIX_BITS) {
            Some(len) => end += len,
            // Unreachable for a block the decoder accepted; stop rather than guess.
            None => break,
        }
    }
    &fragment[..end]
}

/// Length in bytes of the HPACK integer (RFC 7541 §5.1) at the start of `bytes`.
fn hpack_integer_len(bytes: &[u8], prefix_bits: u32) -> Option<usize> {
    let prefix_max = ((1u16 << prefix_bits) - 1) as u8;
    let first = *bytes.first()?;
    if first & prefix_max != prefix_max {
        return Some(1);
    }
    let continuation_bytes = bytes[1..].iter().position(|byte| byte & 0x80 == 0)? + 1;
    Some(1 + continuation_bytes)
}

fn push_hpack_integer(out: &mut Vec<u8>, value: usize, prefix_bits: u32, first_byte_flags: u8) {
    let prefix_max = (1usize << prefix_bits) - 1;
    if value < prefix_max {
        out.push(first_byte_flags | value as u8);
        return;
    }
    out.push(first_byte_flags | prefix_max as u8);
    let mut rest = value - prefix_max;
    while rest >= 0x80 {
        out.push((rest & 0x7F) as u8 | 0x80);
        rest >>= 7;
    }
    out.push(rest as u8);
}

fn push_hpack_string(out: &mut Vec<u8>, octets: &[u8]) {
    push_hpack_integer(out, octets.len(), HPACK_STRING_LENGTH_PREFIX_BITS, 0);
    out.extend_from_slice(octets);
}

/// Encodes fields so that decoding them neither reads nor changes the dynamic table: every field
/// is a literal with a literal name. "Never indexed" rather than "without indexing", because the
/// decoder does not say which fields the client marked never-indexed, and RFC 7541 §6.2.3 requires
/// an intermediary to keep that marking; applying it to all fields costs nothing here.
fn encode_stateless_header_block(size_updates: &[u8], fields: &HeaderFields) -> Vec<u8> {
    let fields_len: usize = fields.iter().map(|(name, value)| name.len() + value.len() + 2 * 5 + 1).sum();
    let mut block = Vec::with_capacity(size_updates.len() + fields_len);
    block.extend_from_slice(size_updates);
    for (name, value) in fields {
        block.push(HPACK_LITERAL_NEVER_INDEXED_NEW_NAME);
        push_hpack_string(&mut block, name);
        push_hpack_string(&mut block, value);
    }
    block
}

/// Frames a re-encoded block as one HEADERS frame with END_HEADERS, or HEADERS plus CONTINUATION
/// frames when it does not fit [`MAX_EMITTED_FRAME_PAYLOAD`]. Padding is dropped; END_STREAM and
/// priority fields are kept.
fn push_header_block_frames(out: &mut Vec<u8>, block: &OpenHeaderBlock, encoded: &[u8]) {
    let priority_len = block.priority.map_or(0, |fields| fields.len());
    let (first, mut rest) = encoded.split_at(encoded.len().min(MAX_EMITTED_FRAME_PAYLOAD - priority_len));
    let mut flags = 0;
    if block.end_stream {
        flags |= FLAG_END_STREAM;
    }
    if block.priority.is_some() {
        flags |= FLAG_PRIORITY;
    }
    if rest.is_empty() {
        flags |= FLAG_END_HEADERS;
    }
    push_frame_header(out, priority_len + first.len(), FRAME_TYPE_HEADERS, flags, block.stream_id);
    if let Some(fields) = &block.priority {
        out.extend_from_slice(fields);
    }
    out.extend_from_slice(first);
    while !rest.is_empty() {
        let (chunk, after) = rest.split_at(rest.len().min(MAX_EMITTED_FRAME_PAYLOAD));
        let flags = if after.is_empty() { FLAG_END_HEADERS } else { 0 };
        push_frame_header(out, chunk.len(), FRAME_TYPE_CONTINUATION, flags, block.stream_id);
        out.extend_from_slice(chunk);
        rest = after;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use loona_hpack::Encoder;
    use loona_hpack::huffman::HuffmanDecoder;

    type Fields = HeaderFields;

    const SOCKET_PATH: &str = "/var/lib/kubelet/plugins/sc.example.com/csi.sock";

    fn frame(frame_type: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
        let mut bytes = Vec::new();
        push_frame_header(&mut bytes, payload.len(), frame_type, flags, stream_id);
        bytes.extend_from_slice(payload);
        bytes
    }

    fn headers_frame(stream_id: u32, block: &[u8]) -> Vec<u8> {
        frame(FRAME_TYPE_HEADERS, FLAG_END_HEADERS, stream_id, block)
    }

    /// SETTINGS (empty), as every client sends right after the preface.
    fn connection_start() -> Vec<u8> {
        let mut bytes = CLIENT_PREFACE.to_vec();
        bytes.extend(frame(0x4, 0, 0, &[]));
        bytes
    }

    /// An empty gRPC message, ending the request stream.
    fn grpc_data_frame(stream_id: u32) -> Vec<u8> {
        frame(0x0, FLAG_END_STREAM, stream_id, &[0, 0, 0, 0, 0])
    }

    /// The fields grpc-go 1.27 sends for a unary call, in its order.
    fn request_fields(authority: &str) -> Fields {
        [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/csi.v1.Identity/GetPluginInfo"),
            (":authority", authority),
            ("content-type", "application/grpc"),
            ("user-agent", "grpc-go/1.27.1"),
            ("te", "trailers"),
        ]
        .iter()
        .map(|(name, value)| (name.as_bytes().to_vec(), value.as_bytes().to_vec()))
        .collect()
    }

    fn with_authority(fields: &Fields, authority: &str) -> Fields {
        fields
            .iter()
            .map(
                |(name, value)| {
                    if name == AUTHORITY_HEADER { (name.clone(), authority.as_bytes().to_vec()) } else { (name.clone(), value.clone()) }
                },
            )
            .collect()
    }

    /// Encodes like grpc-go: with incremental indexing, sharing the table across requests.
    fn encode(encoder: &mut Encoder<'static>, fields: &Fields) -> Vec<u8> {
        encoder.encode(fields.iter().map(|(name, value)| (&name[..], &value[..])))
    }

    /// Encodes the way grpc-go's encoder treats these fields: a field already sent on the
    /// connection becomes a one-byte table reference, any other a literal added to the table
    /// (the `:authority` included, which `Encoder` would never index).
    #[derive(Default)]
    struct IndexingEncoder {
        /// Newest entry first, as HPACK numbers them.
        table: Fields,
    }

    impl IndexingEncoder {
        fn encode(&mut self, fields: &Fields) -> Vec<u8> {
            let mut block = Vec::new();
            for (name, value) in fields {
                match self.table.iter().position(|entry| entry.0 == *name && entry.1 == *value) {
                    Some(position) => push_hpack_integer(&mut block, 62 + position, 7, 0x80),
                    None => {
                        block.push(0x40);
                        push_hpack_string(&mut block, name);
                        push_hpack_string(&mut block, value);
                        self.table.insert(0, (name.clone(), value.clone()));
                    }
                }
            }
            let table_size: usize = self.table.iter().map(|(n, v)| n.len() + v.len() + 32).sum();
            assert!(table_size <= 4096, "this test encoder does not evict");
            block
        }
    }

    fn rewrite(input: &[u8]) -> Result<Vec<u8>, AuthorityFixError> {
        let mut rewriter = ClientFrameRewriter::new();
        let mut out = Vec::new();
        rewriter.feed(input, &mut out)?;
        rewriter.finish(&mut out)?;
        Ok(out)
    }

    fn rewrite_byte_by_byte(input: &[u8]) -> Result<Vec<u8>, AuthorityFixError> {
        let mut rewriter = ClientFrameRewriter::new();
        let mut out = Vec::new();
        for byte in input {
            rewriter.feed(std::slice::from_ref(byte), &mut out)?;
        }
        rewriter.finish(&mut out)?;
        Ok(out)
    }

    /// Splits what the server reads into frames, checking the preface.
    fn frames(bytes: &[u8]) -> Vec<(FrameHeader, Vec<u8>)> {
        assert!(bytes.starts_with(CLIENT_PREFACE), "output lost the client preface");
        let mut rest = &bytes[CLIENT_PREFACE.len()..];
        let mut frames = Vec::new();
        while !rest.is_empty() {
            let (raw, after) = rest.split_first_chunk::<FRAME_HEADER_LEN>().expect("truncated frame header in output");
            let header = FrameHeader::parse(*raw);
            assert!(after.len() >= header.payload_len, "truncated frame payload in output");
            frames.push((header, after[..header.payload_len].to_vec()));
            rest = &after[header.payload_len..];
        }
        frames
    }

    /// A header block as the server's HTTP/2 layer assembles it.
    struct ReceivedBlock {
        stream_id: u32,
        first_frame_flags: u8,
        priority: Option<[u8; PRIORITY_FIELDS_LEN]>,
        block: Vec<u8>,
        frame_count: usize,
    }

    fn received_blocks(bytes: &[u8]) -> Vec<ReceivedBlock> {
        let mut blocks: Vec<ReceivedBlock> = Vec::new();
        let mut open = false;
        for (header, payload) in frames(bytes) {
            match header.frame_type {
                FRAME_TYPE_HEADERS => {
                    assert!(!open, "HEADERS inside an open header block");
                    assert!(header.payload_len <= MAX_EMITTED_FRAME_PAYLOAD);
                    let (priority, fragment) = split_headers_payload(&header, &payload).expect("malformed HEADERS in output");
                    blocks.push(ReceivedBlock {
                        stream_id: header.stream_id,
                        first_frame_flags: header.flags,
                        priority,
                        block: fragment.to_vec(),
                        frame_count: 1,
                    });
                    open = header.flags & FLAG_END_HEADERS == 0;
                }
                FRAME_TYPE_CONTINUATION => {
                    assert!(open, "CONTINUATION outside a header block");
                    assert!(header.payload_len <= MAX_EMITTED_FRAME_PAYLOAD);
                    let last = blocks.last_mut().expect("CONTINUATION before any HEADERS");
                    assert_eq!(last.stream_id, header.stream_id);
                    last.block.extend_from_slice(&payload);
                    last.frame_count += 1;
                    open = header.flags & FLAG_END_HEADERS == 0;
                }
                _ => assert!(!open, "frame inside an open header block"),
            }
        }
        assert!(!open, "output ends inside a header block");
        blocks
    }

    /// Decodes blocks in order with one decoder, as the server does on one connection.
    fn decode_in_order(blocks: &[ReceivedBlock]) -> Vec<Fields> {
        let mut decoder = Decoder::new();
        blocks.iter().map(|received| decoder.decode(&received.block).expect("server cannot decode a block")).collect()
    }

    #[test]
    fn valid_authorities_leave_the_connection_byte_identical() {
        let mut encoder = Encoder::new();
        let mut input = connection_start();
        input.extend(headers_frame(1, &encode(&mut encoder, &request_fields("localhost"))));
        input.extend(grpc_data_frame(1));
        input.extend(frame(0x8, 0, 0, &[0, 0, 0x10, 0])); // WINDOW_UPDATE
        input.extend(headers_frame(3, &encode(&mut encoder, &request_fields("localhost"))));
        input.extend(grpc_data_frame(3));
        input.extend(frame(0x6, 0, 0, &[1, 2, 3, 4, 5, 6, 7, 8])); // PING

        assert_eq!(rewrite(&input).expect("rewrite"), input);
    }

    #[test]
    fn socket_path_authority_becomes_localhost_and_other_frames_pass_unchanged() {
        let fields = request_fields(SOCKET_PATH);
        let mut input = connection_start();
        input.extend(headers_frame(1, &encode(&mut Encoder::new(), &fields)));
        input.extend(grpc_data_frame(1));

        let output = rewrite(&input).expect("rewrite");

        let blocks = received_blocks(&output);
        assert_eq!(blocks.len(), 1);
        assert_eq!(blocks[0].stream_id, 1);
        assert_eq!(blocks[0].first_frame_flags, FLAG_END_HEADERS);
        let mut fresh_decoder = Decoder::new();
        assert_eq!(fresh_decoder.decode(&blocks[0].block).expect("decode"), with_authority(&fields, REPLACEMENT_AUTHORITY));
        assert!(output.ends_with(&grpc_data_frame(1)));
        let output_frames = frames(&output);
        assert_eq!(output_frames[0], frames(&input)[0], "SETTINGS changed");
    }

    #[test]
    fn feeding_byte_by_byte_gives_the_same_output_as_one_chunk() {
        let mut encoder = Encoder::new();
        let mut input = connection_start();
        let first = encode(&mut encoder, &request_fields(SOCKET_PATH));
        let (start, end) = first.split_at(first.len() / 2);
        input.extend(frame(FRAME_TYPE_HEADERS, FLAG_PADDED, 1, &[[3].as_slice(), start, &[0; 3]].concat()));
        input.extend(frame(FRAME_TYPE_CONTINUATION, FLAG_END_HEADERS, 1, end));
        input.extend(grpc_data_frame(1));
        input.extend(headers_frame(3, &encode(&mut encoder, &request_fields(SOCKET_PATH))));
        input.extend(grpc_data_frame(3));

        let in_one_chunk = rewrite(&input).expect("rewrite");
        let byte_by_byte = rewrite_byte_by_byte(&input).expect("rewrite byte by byte");

        assert_eq!(byte_by_byte, in_one_chunk);
        let decoded = decode_in_order(&received_blocks(&byte_by_byte));
        let expected = with_authority(&request_fields(SOCKET_PATH), REPLACEMENT_AUTHORITY);
        assert_eq!(decoded, vec![expected.clone(), expected]);
    }

    #[test]
    fn padded_headers_with_priority_lose_padding_but_keep_priority_and_end_stream() {
        let fields = request_fields("/tmp/x/csi.sock");
        let block = encode(&mut Encoder::new(), &fields);
        let priority = [0x80, 0, 0, 0, 0x0F];
        let padding_len = 7;
        let payload = [[padding_len].as_slice(), &priority, &block, &[0; 7]].concat();
        let flags = FLAG_PADDED | FLAG_PRIORITY | FLAG_END_HEADERS | FLAG_END_STREAM;
        let mut input = connection_start();
        input.extend(frame(FRAME_TYPE_HEADERS, flags, 5, &payload));

        let blocks = received_blocks(&rewrite(&input).expect("rewrite"));

        assert_eq!(blocks.len(), 1);
        assert_eq!(blocks[0].first_frame_flags, FLAG_PRIORITY | FLAG_END_HEADERS | FLAG_END_STREAM);
        assert_eq!(blocks[0].priority, Some(priority));
        assert_eq!(decode_in_order(&blocks), vec![with_authority(&fields, REPLACEMENT_AUTHORITY)]);
    }

    #[test]
    fn padded_headers_with_valid_authority_stay_byte_identical() {
        let block = encode(&mut Encoder::new(), &request_fields("localhost"));
        let payload = [[2].as_slice(), &block, &[0, 0]].concat();
        let mut input = connection_start();
        input.extend(frame(FRAME_TYPE_HEADERS, FLAG_PADDED | FLAG_END_HEADERS, 1, &payload));

        assert_eq!(rewrite(&input).expect("rewrite"), input);
    }

    #[test]
    fn padding_longer_than_the_frame_fails_the_connection() {
        let mut input = connection_start();
        input.extend(frame(FRAME_TYPE_HEADERS, FLAG_PADDED | FLAG_END_HEADERS, 1, &[9, 0x82]));

        let error = rewrite(&input).expect_err("padding beyond the payload was accepted");

        assert!(matches!(error, AuthorityFixError::MalformedHeadersFrame { stream_id: 1, payload_len: 2 }));
    }

    #[test]
    fn continuation_frames_pass_unchanged_without_rewrite_and_are_coalesced_with_one() {
        for (authority, expect_identical) in [("localhost", true), (SOCKET_PATH, false)] {
            let fields = request_fields(authority);
            let block = encode(&mut Encoder::new(), &fields);
            let (first, rest) = block.split_at(10);
            let (second, third) = rest.split_at(10);
            let mut input = connection_start();
            input.extend(frame(FRAME_TYPE_HEADERS, 0, 1, first));
            input.extend(frame(FRAME_TYPE_CONTINUATION, 0, 1, second));
            input.extend(frame(FRAME_TYPE_CONTINUATION, FLAG_END_HEADERS, 1, third));
            input.extend(grpc_data_frame(1));

            let output = rewrite(&input).expect("rewrite");

            if expect_identical {
                assert_eq!(output, input);
            } else {
                let blocks = received_blocks(&output);
                assert_eq!(blocks.len(), 1);
                assert_eq!(blocks[0].frame_count, 1, "re-encoded block was not coalesced");
                assert_eq!(decode_in_order(&blocks), vec![with_authority(&fields, REPLACEMENT_AUTHORITY)]);
            }
        }
    }

    #[test]
    fn indexed_fields_across_requests_decode_correctly_on_the_server() {
        // The client indexes every field, so later blocks refer to entries that earlier blocks
        // added: before and after the first rewrite, and for the authority itself.
        let mut encoder = IndexingEncoder::default();
        let good = request_fields("localhost");
        let bad = request_fields(SOCKET_PATH);
        let mut custom = request_fields("localhost");
        custom.push((b"x-trace".to_vec(), b"abc".to_vec()));
        let sequence = [&good, &bad, &custom, &bad, &good];
        let mut input = connection_start();
        let mut client_blocks = Vec::new();
        for (position, fields) in sequence.iter().enumerate() {
            let stream_id = 1 + 2 * position as u32;
            let block = encoder.encode(fields);
            input.extend(headers_frame(stream_id, &block));
            input.extend(grpc_data_frame(stream_id));
            client_blocks.push(block);
        }
        assert_eq!(client_blocks[3].len(), bad.len(), "the client should have sent the repeated request as one-byte references only");

        let output = rewrite(&input).expect("rewrite");

        let blocks = received_blocks(&output);
        let decoded = decode_in_order(&blocks);
        let expected: Vec<Fields> = sequence.iter().map(|fields| with_authority(fields, "localhost")).collect();
        assert_eq!(decoded, expected);
        assert_eq!(blocks[0].block, client_blocks[0], "block before any rewrite was changed");
        for (received, expected_fields) in blocks.iter().zip(&expected).skip(1) {
            let mut fresh_decoder = Decoder::new();
            assert_eq!(
                &fresh_decoder.decode(&received.block).expect("decode"),
                expected_fields,
                "a block after the first rewrite depends on the dynamic table"
            );
        }
    }

    #[test]
    fn rfc7541_huffman_request_sequence_passes_through_and_keeps_the_table_in_step() {
        // RFC 7541 Appendix C.4: three requests with Huffman-coded, indexed fields.
        let rfc_blocks: [&[u8]; 3] = [
            &[0x82, 0x86, 0x84, 0x41, 0x8c, 0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff],
            &[0x82, 0x86, 0x84, 0xbe, 0x58, 0x86, 0xa8, 0xeb, 0x10, 0x64, 0x9c, 0xbf],
            &[
                0x82, 0x87, 0x85, 0xbf, 0x40, 0x88, 0x25, 0xa8, 0x49, 0xe9, 0x5b, 0xa9, 0x7d, 0x7f, 0x89, 0x25, 0xa8, 0x49, 0xe9, 0x5b,
                0xb8, 0xe8, 0xb4, 0xbf,
            ],
        ];
        let mut input = connection_start();
        for (position, block) in rfc_blocks.iter().enumerate() {
            input.extend(headers_frame(1 + 2 * position as u32, block));
        }
        assert_eq!(rewrite(&input).expect("rewrite"), input);

        // A fourth request refers to the newest entry ("custom-key: custom-value", index 62)
        // and carries a Huffman-coded socket path: the rewrite must resolve both.
        let mut fourth = vec![0x82, 0x86, 0x84, 0xbe, 0x01];
        let socket_path = "/tmp/x/csi.sock";
        let huffman_path = huffman_encode(socket_path);
        push_hpack_integer(&mut fourth, huffman_path.len(), HPACK_STRING_LENGTH_PREFIX_BITS, 0x80);
        fourth.extend(huffman_path);
        input.extend(headers_frame(7, &fourth));

        let blocks = received_blocks(&rewrite(&input).expect("rewrite"));

        let last = &blocks[3].block;
        let mut fresh_decoder = Decoder::new();
        let expected: Fields =
            [(":method", "GET"), (":scheme", "http"), (":path", "/"), ("custom-key", "custom-value"), (":authority", "localhost")]
                .iter()
                .map(|(name, value)| (name.as_bytes().to_vec(), value.as_bytes().to_vec()))
                .collect();
        assert_eq!(fresh_decoder.decode(last).expect("decode"), expected);
    }

    /// Huffman-codes the few characters socket paths in these tests use (RFC 7541 Appendix B).
    fn huffman_encode(text: &str) -> Vec<u8> {
        let mut bits: Vec<bool> = Vec::new();
        for character in text.chars() {
            let (code, len): (u32, u32) = match character {
                '/' => (0x18, 6),
                '.' => (0x17, 6),
                'c' => (0x4, 5),
                'i' => (0x6, 5),
                'k' => (0x75, 7),
                'm' => (0x29, 6),
                'o' => (0x7, 5),
                'p' => (0x2b, 6),
                's' => (0x8, 5),
                't' => (0x9, 5),
                'x' => (0x79, 7),
                other => panic!("no Huffman code for {other:?} in this test table"),
            };
            bits.extend((0..len).rev().map(|bit| code >> bit & 1 == 1));
        }
        // Pad with the most significant bits of EOS (all ones).
        while !bits.len().is_multiple_of(8) {
            bits.push(true);
        }
        let encoded: Vec<u8> = bits.chunks(8).map(|byte| byte.iter().fold(0u8, |acc, &bit| acc << 1 | u8::from(bit))).collect();
        let decoded = HuffmanDecoder::new().decode(&encoded).expect("test Huffman table is wrong");
        assert_eq!(decoded, text.as_bytes(), "test Huffman table is wrong");
        encoded
    }

    #[test]
    fn table_size_updates_at_the_start_of_a_rewritten_block_are_kept() {
        // Size update to 0, then back to 4096 (0x3f 0xe1 0x1f), as an encoder that flushed its
        // table would send.
        let size_updates = [0x20, 0x3f, 0xe1, 0x1f];
        let fields = request_fields(SOCKET_PATH);
        let block = [size_updates.as_slice(), &encode(&mut Encoder::new(), &fields)].concat();
        let mut input = connection_start();
        input.extend(headers_frame(1, &block));

        let blocks = received_blocks(&rewrite(&input).expect("rewrite"));

        assert!(blocks[0].block.starts_with(&size_updates));
        assert_eq!(decode_in_order(&blocks), vec![with_authority(&fields, REPLACEMENT_AUTHORITY)]);
    }

    #[test]
    fn rewritten_block_larger_than_a_frame_is_split_into_continuations() {
        let mut fields = request_fields(SOCKET_PATH);
        fields.push((b"x-large".to_vec(), vec![b'a'; 40_000]));
        let block = encode(&mut Encoder::new(), &fields);
        let mut input = connection_start();
        let mut chunks = block.chunks(MAX_EMITTED_FRAME_PAYLOAD).peekable();
        let mut frame_type = FRAME_TYPE_HEADERS;
        while let Some(chunk) = chunks.next() {
            let flags = if chunks.peek().is_none() { FLAG_END_HEADERS } else { 0 };
            input.extend(frame(frame_type, flags, 1, chunk));
            frame_type = FRAME_TYPE_CONTINUATION;
        }

        let blocks = received_blocks(&rewrite(&input).expect("rewrite"));

        assert_eq!(blocks.len(), 1);
        assert_eq!(blocks[0].frame_count, 3);
        assert_eq!(decode_in_order(&blocks), vec![with_authority(&fields, REPLACEMENT_AUTHORITY)]);
    }

    #[test]
    fn header_frame_longer_than_the_limit_fails_before_buffering() {
        let mut input = connection_start();
        let oversized_len = MAX_HEADER_BLOCK_BYTES;
        push_frame_header(&mut input, oversized_len, FRAME_TYPE_HEADERS, FLAG_END_HEADERS, 1);

        let error = rewrite(&input).expect_err("oversized HEADERS frame was accepted");

        assert!(matches!(error, AuthorityFixError::HeaderBlockTooLarge { stream_id: 1, limit: MAX_HEADER_BLOCK_BYTES }));
    }

    #[test]
    fn continuations_adding_up_past_the_limit_fail_the_connection() {
        let mut input = connection_start();
        input.extend(frame(FRAME_TYPE_HEADERS, 0, 1, &[0x82]));
        let filler = vec![0x82; MAX_EMITTED_FRAME_PAYLOAD];
        for _ in 0..=(MAX_HEADER_BLOCK_BYTES / MAX_EMITTED_FRAME_PAYLOAD) {
            input.extend(frame(FRAME_TYPE_CONTINUATION, 0, 1, &filler));
        }
        let mut rewriter = ClientFrameRewriter::new();
        let mut out = Vec::new();

        let error = rewriter.feed(&input, &mut out).expect_err("oversized block was accepted");

        assert!(matches!(error, AuthorityFixError::HeaderBlockTooLarge { stream_id: 1, .. }));
        assert_eq!(out, connection_start(), "part of the oversized block was forwarded");
        assert!(matches!(rewriter.feed(&[0], &mut out), Err(AuthorityFixError::AlreadyFailed)));
    }

    #[test]
    fn references_to_a_large_table_entry_cannot_blow_up_memory() {
        let mut encoder = Encoder::new();
        let mut input = connection_start();
        let big_field: Fields = vec![(b"x-big".to_vec(), vec![b'b'; 4000])];
        input.extend(headers_frame(1, &encode(&mut encoder, &big_field)));
        // 300 one-byte references to that 4 KiB entry: 1.2 MB of decoded headers.
        input.extend(headers_frame(3, &vec![0x80 | 62; 300]));

        let error = rewrite(&input).expect_err("header list bomb was accepted");

        assert!(matches!(error, AuthorityFixError::HeaderListTooLarge { stream_id: 3, .. }));
    }

    #[test]
    fn a_frame_inside_a_header_block_fails_the_connection() {
        let mut input = connection_start();
        input.extend(frame(FRAME_TYPE_HEADERS, 0, 1, &[0x82]));
        input.extend(grpc_data_frame(1));

        let error = rewrite(&input).expect_err("DATA inside a header block was accepted");

        assert!(matches!(error, AuthorityFixError::InterruptedHeaderBlock { stream_id: 1, frame_type: 0x0 }));
    }

    #[test]
    fn continuation_for_another_stream_fails_the_connection() {
        let mut input = connection_start();
        input.extend(frame(FRAME_TYPE_HEADERS, 0, 1, &[0x82]));
        input.extend(frame(FRAME_TYPE_CONTINUATION, FLAG_END_HEADERS, 3, &[0x84]));

        let error = rewrite(&input).expect_err("CONTINUATION for another stream was accepted");

        assert!(matches!(error, AuthorityFixError::ContinuationOnOtherStream { stream_id: 1, continuation_stream_id: 3 }));
    }

    #[test]
    fn corrupt_hpack_fails_the_connection() {
        let mut input = connection_start();
        // Index 70 refers to an empty dynamic table.
        input.extend(headers_frame(1, &[0x80 | 70]));

        let error = rewrite(&input).expect_err("corrupt block was accepted");

        assert!(matches!(error, AuthorityFixError::Hpack { stream_id: 1, .. }));
    }

    #[test]
    fn connection_closed_inside_a_header_block_is_reported() {
        let mut input = connection_start();
        input.extend(frame(FRAME_TYPE_HEADERS, 0, 1, &[0x82]));

        let error = rewrite(&input).expect_err("truncated block was accepted");

        assert!(matches!(error, AuthorityFixError::TruncatedHeaderBlock { stream_id: 1 }));
        assert_eq!(io::Error::from(error).kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn non_http2_bytes_are_forwarded_untouched() {
        let input = b"GET / HTTP/1.1\r\nHost: /tmp/x/csi.sock\r\n\r\n";
        assert_eq!(rewrite(input).expect("rewrite"), input);
        assert_eq!(rewrite_byte_by_byte(input).expect("rewrite"), input);
    }

    #[test]
    fn partial_frame_header_at_close_is_forwarded_for_the_server_to_report() {
        let mut input = connection_start();
        input.extend([0, 0, 4, 0x8]);
        assert_eq!(rewrite(&input).expect("rewrite"), input);
    }

    #[test]
    fn authority_check_matches_what_h2_accepts() {
        assert!(is_unusable_authority(AUTHORITY_HEADER, SOCKET_PATH.as_bytes()));
        assert!(is_unusable_authority(AUTHORITY_HEADER, b""));
        assert!(!is_unusable_authority(AUTHORITY_HEADER, b"localhost"));
        assert!(!is_unusable_authority(AUTHORITY_HEADER, b"csi.sock"));
        assert!(!is_unusable_authority(AUTHORITY_HEADER, b"127.0.0.1:8080"));
        assert!(!is_unusable_authority(b"x-socket", SOCKET_PATH.as_bytes()));
    }

    #[test]
    fn hpack_integers_match_rfc7541_appendix_c1() {
        let cases: [(usize, u32, u8, &[u8]); 3] = [(10, 5, 0x00, &[0x0a]), (1337, 5, 0x00, &[0x1f, 0x9a, 0x0a]), (42, 8, 0x00, &[0x2a])];
        for (value, prefix_bits, flags, expected) in cases {
            let mut encoded = Vec::new();
            push_hpack_integer(&mut encoded, value, prefix_bits, flags);
            assert_eq!(encoded, expected, "encoding {value} with a {prefix_bits}-bit prefix");
            assert_eq!(hpack_integer_len(&encoded, prefix_bits), Some(expected.len()));
        }
    }
}
