//! The client→server half of the adapter without I/O: HTTP/2 framing and HPACK in, the same
//! bytes (or a re-encoded header block) out.
//!
//! Kept in one file, to be read whole: the frame state machine, the
//! header-block buffering and the HPACK re-encoding share one invariant — what tonic's decoder
//! has seen must leave its dynamic table consistent with every later block — and each piece
//! only makes sense against the others (see the parent module's comment for that invariant).
//! Split apart, that invariant would be spread over files that each look correct alone.

use loona_hpack::Decoder;
use tonic::codegen::http::uri::Authority;

use super::{AuthorityFixError, MAX_DECODED_HEADER_LIST_BYTES, MAX_HEADER_BLOCK_BYTES, REPLACEMENT_AUTHORITY};

/// Bound on the HPACK dynamic table the client may ask for. tonic (h2) advertises the default
/// 4096 bytes and rejects anything above what it advertised; this only bounds the memory of the
/// adapter's own decoder if that default ever grows.
const MAX_DYNAMIC_TABLE_BYTES: usize = 64 * 1024;

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
pub(super) struct ClientFrameRewriter {
    state: ReadState,
    open_block: Option<OpenHeaderBlock>,
    decoder: Decoder<'static>,
    /// Set by the first rewritten block; see the module documentation.
    downstream_table_diverged: bool,
}

impl ClientFrameRewriter {
    pub(super) fn new() -> Self {
        let mut decoder = Decoder::new();
        decoder.set_max_allowed_table_size(MAX_DYNAMIC_TABLE_BYTES);
        Self { state: ReadState::Preface { matched: 0 }, open_block: None, decoder, downstream_table_diverged: false }
    }

    /// Consumes `input`, appending what the server should read to `out`. Bytes of an incomplete
    /// frame header or header block are kept until the rest arrives.
    pub(super) fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), AuthorityFixError> {
        let result = self.feed_inner(input, out);
        if result.is_err() {
            self.state = ReadState::Failed;
        }
        result
    }

    /// Called when the client closed its side: forwards a partial frame header as it is (the
    /// server reports the truncation), but a partial header block cannot be forwarded.
    pub(super) fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), AuthorityFixError> {
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
mod tests;
