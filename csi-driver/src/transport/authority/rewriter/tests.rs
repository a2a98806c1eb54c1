//! The rewriter against hand-made and `loona_hpack`-encoded client byte streams: framing,
//! padding, CONTINUATION, the HPACK table across requests (RFC 7541 Appendix C), and every way a
//! client can fail the connection.

use std::io;

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
            0x82, 0x87, 0x85, 0xbf, 0x40, 0x88, 0x25, 0xa8, 0x49, 0xe9, 0x5b, 0xa9, 0x7d, 0x7f, 0x89, 0x25, 0xa8, 0x49, 0xe9, 0x5b, 0xb8,
            0xe8, 0xb4, 0xbf,
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
