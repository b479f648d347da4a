//! Property tests for the POP3 wire codec (`popfetch::source::pop3::codec`): any
//! message survives stuffing, arbitrary chunking and unstuffing into
//! arbitrary output buffers; on arbitrary bytes the decoders never panic and
//! never consume a byte past the terminator of the response they read. Only
//! CRLF frames (SPEC §8): bodies full of bare LFs, bare CRs, dots and
//! reply-like text come back whole ("POP3 smuggling" closed).

use std::io::{BufReader, Read};

use popfetch::source::pop3::codec::{self, Unstuffer};
use proptest::prelude::*;

/// Bytes biased towards the ones the codec cares about: each random byte is
/// mapped so that `.`, CR and LF make up about half of the result. (Mapping
/// a plain byte vector is far cheaper than a union strategy per byte.)
fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max).prop_map(|v| {
        v.into_iter()
            .map(|b| match b {
                0..=39 => b'.',
                40..=79 => b'\r',
                80..=119 => b'\n',
                120..=139 => b'x',
                _ => b.wrapping_mul(151),
            })
            .collect()
    })
}

/// Feeds `wire` to an [`Unstuffer`] the way `pop3::Body` does: the input
/// arrives in chunks of the given sizes (cycled), each call gets an output
/// buffer of the next size (cycled, all ≥ 2), and what a call consumed is
/// dropped from the input. Returns (output, bytes consumed, done).
fn decode_chunked(wire: &[u8], chunks: &[usize], rooms: &[usize]) -> (Vec<u8>, usize, bool) {
    let mut u = Unstuffer::new();
    let mut out = Vec::new();
    let mut pos = 0;
    let mut chunk_end = 0;
    let mut c = 0;
    let mut r = 0;
    while !u.is_done() && pos < wire.len() {
        if pos >= chunk_end {
            chunk_end = (pos + chunks[c % chunks.len()]).min(wire.len());
            c += 1;
        }
        let mut scratch = vec![0xAAu8; rooms[r % rooms.len()]];
        r += 1;
        let d = u.decode(&wire[pos..chunk_end], &mut scratch);
        assert!(
            d.consumed <= chunk_end - pos,
            "consumed more than it was given"
        );
        assert!(d.written <= scratch.len(), "wrote past its buffer");
        assert!(
            d.consumed > 0 || d.written > 0 || d.done,
            "no progress with {} input bytes and a {}-byte buffer",
            chunk_end - pos,
            scratch.len()
        );
        assert_eq!(d.done, u.is_done());
        out.extend_from_slice(&scratch[..d.written]);
        pos += d.consumed;
    }
    (out, pos, u.is_done())
}

/// What SPEC §3 delivers for a message given to `codec::stuff` (which turns
/// LF into CRLF and touches nothing else): the message itself, with a final
/// LF added if it is missing.
fn expected_delivery(msg: &[u8]) -> Vec<u8> {
    let mut v = msg.to_vec();
    if !v.is_empty() && !v.ends_with(b"\n") {
        v.push(b'\n');
    }
    v
}

/// A reference decoder, line by line, where only CRLF ends a line (SPEC
/// §8): where the first terminator line (`.` CRLF) ends, and the unstuffed
/// output before it. A bare LF or CR inside a line is data.
fn reference(wire: &[u8]) -> Option<(usize, Vec<u8>)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < wire.len() {
        let len = wire[pos..].windows(2).position(|w| w == b"\r\n")? + 2;
        let line = &wire[pos..pos + len];
        pos += len;
        if line == b".\r\n" {
            return Some((pos, out));
        }
        let line = line.strip_prefix(b".").unwrap_or(line);
        out.extend_from_slice(&line[..line.len() - 2]);
        out.push(b'\n');
    }
    None
}

/// What SPEC §3 delivers for a message a server keeps as-is and sends with
/// [`codec::stuff_raw`]: CRLF turned into LF, every bare LF and CR kept.
/// (The CRLF `stuff_raw` adds to a message that does not end in one gives
/// the final LF.)
fn expected_raw_delivery(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + 1);
    let mut i = 0;
    while i < msg.len() {
        if msg[i] == b'\r' && msg.get(i + 1) == Some(&b'\n') {
            i += 1;
            continue;
        }
        out.push(msg[i]);
        i += 1;
    }
    if !msg.is_empty() && !msg.ends_with(b"\r\n") {
        out.push(b'\n');
    }
    out
}

/// Message bodies a hostile sender might write: random pieces of text
/// joined with bare LFs, bare CRs, CRLFs, dots at line starts and after
/// bare LFs, and fragments that look like the server's own replies.
pub(crate) fn hostile_body(max_pieces: usize) -> impl Strategy<Value = Vec<u8>> {
    const PIECES: &[&[u8]] = &[
        b"\n",
        b"\r",
        b"\r\n",
        b".",
        b"..",
        b"\n.\n",
        b"\r\n.\r",
        b".\r\n",
        b"\n.\r\n",
        b"+OK 12 octets",
        b"+OK\r\n",
        b"-ERR no",
        b"From: forged@example.org",
        b"\n.\n+OK 40 octets\nSubject: forged\n\nforged body\n.\n",
        b"Subject: hi",
        b"text",
        b" ",
    ];
    prop::collection::vec((0..PIECES.len(), any::<u8>()), 0..max_pieces).prop_map(|picks| {
        let mut v = Vec::new();
        for (k, b) in picks {
            if k == 0 && b > 200 {
                v.push(b);
            } else {
                v.extend_from_slice(PIECES[k]);
            }
        }
        v
    })
}

const SENTINEL: &[u8] = b"+OK next reply\r\n";

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// stuff → random chunks → unstuff with random buffers gives back the
    /// delivery SPEC §3 describes, and stops exactly at the terminator.
    #[test]
    fn any_message_round_trips(
        msg in bytes(400),
        chunks in prop::collection::vec(1usize..40, 1..8),
        rooms in prop::collection::vec(2usize..20, 1..8),
    ) {
        let mut wire = codec::stuff(&msg);
        let stuffed_len = wire.len();
        wire.extend_from_slice(SENTINEL);
        let (out, consumed, done) = decode_chunked(&wire, &chunks, &rooms);
        prop_assert!(done, "no terminator found");
        prop_assert_eq!(consumed, stuffed_len, "stopped at the wrong place");
        prop_assert_eq!(&wire[consumed..], SENTINEL);
        prop_assert_eq!(out, expected_delivery(&msg));
    }

    /// Arbitrary bytes followed by a terminator and another reply: the
    /// decoder stops at the first terminator line, never past it, and its
    /// output matches a line-by-line reference, whatever the chunking.
    #[test]
    fn arbitrary_bytes_stop_at_the_first_terminator(
        data in bytes(400),
        chunks in prop::collection::vec(1usize..40, 1..8),
        rooms in prop::collection::vec(2usize..20, 1..8),
    ) {
        let mut wire = data.clone();
        wire.extend_from_slice(b"\r\n.\r\n");
        let (end, want) = reference(&wire).expect("the appended terminator ends it");
        wire.extend_from_slice(SENTINEL);
        let (out, consumed, done) = decode_chunked(&wire, &chunks, &rooms);
        prop_assert!(done);
        prop_assert_eq!(consumed, end);
        prop_assert!(wire[consumed..].ends_with(SENTINEL));
        prop_assert_eq!(out, want);
    }

    /// A server that keeps a message's bytes as they are and stuffs only at
    /// CRLF (as RFC 1939 asks): whatever the body holds (bare LF, bare CR,
    /// dots after bare LFs, text that looks like replies, a whole forged
    /// message after LF "." LF), it comes back as SPEC §3 says, and the
    /// decoder stops exactly at the real terminator: nothing of the body is
    /// ever taken for the server's next reply.
    #[test]
    fn hostile_bodies_round_trip_through_a_crlf_only_stuffer(
        msg in hostile_body(40),
        chunks in prop::collection::vec(1usize..40, 1..8),
        rooms in prop::collection::vec(2usize..20, 1..8),
    ) {
        let mut wire = codec::stuff_raw(&msg);
        let stuffed_len = wire.len();
        wire.extend_from_slice(SENTINEL);
        let (out, consumed, done) = decode_chunked(&wire, &chunks, &rooms);
        prop_assert!(done, "no terminator found");
        prop_assert_eq!(consumed, stuffed_len, "stopped at the wrong place");
        prop_assert_eq!(out, expected_raw_delivery(&msg));
    }

    /// The same for arbitrary bytes biased to `.`, CR and LF.
    #[test]
    fn any_raw_message_round_trips(
        msg in bytes(400),
        chunks in prop::collection::vec(1usize..40, 1..8),
        rooms in prop::collection::vec(2usize..20, 1..8),
    ) {
        let mut wire = codec::stuff_raw(&msg);
        let stuffed_len = wire.len();
        wire.extend_from_slice(SENTINEL);
        let (out, consumed, done) = decode_chunked(&wire, &chunks, &rooms);
        prop_assert!(done, "no terminator found");
        prop_assert_eq!(consumed, stuffed_len, "stopped at the wrong place");
        prop_assert_eq!(out, expected_raw_delivery(&msg));
    }

    /// Without a terminator the decoder takes everything and is not done:
    /// it never invents an end of message.
    #[test]
    fn no_terminator_means_not_done(
        data in bytes(400),
        chunks in prop::collection::vec(1usize..40, 1..8),
        rooms in prop::collection::vec(2usize..20, 1..8),
    ) {
        // Cut just before the LF of the first terminator line, if any: what
        // is left holds no complete terminator (at most ".\r" still waiting
        // for its LF). Bare-LF "terminators" stay in: they end nothing.
        let data = match reference(&data) {
            Some((end, _)) => data[..end - 1].to_vec(),
            None => data,
        };
        let (_, consumed, done) = decode_chunked(&data, &chunks, &rooms);
        prop_assert!(!done);
        prop_assert_eq!(consumed, data.len());
    }

    /// The line reader used for listings (CAPA, LIST, UIDL): never panics,
    /// stops at the terminator, leaves the next reply unread. Lines end at
    /// CRLF only: a bare LF is an error at once, never a line end.
    #[test]
    fn listing_reader_never_reads_past_the_terminator(
        data in bytes(400),
        capacity in 1usize..32,
    ) {
        let mut wire = data.clone();
        wire.extend_from_slice(b"\r\n.\r\n");
        let (end, _) = reference(&wire).expect("terminated");
        let has_bare_lf = wire[..end]
            .iter()
            .enumerate()
            .any(|(i, &b)| b == b'\n' && (i == 0 || wire[i - 1] != b'\r'));
        wire.extend_from_slice(SENTINEL);
        let mut r = BufReader::with_capacity(capacity, &wire[..]);
        let mut line = Vec::new();
        let mut lines = 0;
        loop {
            match codec::read_multiline_line(&mut r, &mut line) {
                Ok(true) => {}
                Ok(false) => break,
                Err(codec::LineError::BareLf) => {
                    prop_assert!(has_bare_lf, "BareLf without one");
                    return Ok(());
                }
                Err(e) => prop_assert!(false, "in memory, short lines: {:?}", e),
            }
            prop_assert!(!line.contains(&b'\n'));
            lines += 1;
            prop_assert!(lines <= wire.len(), "runaway");
        }
        prop_assert!(!has_bare_lf, "a bare LF went through as a line end");
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).unwrap();
        prop_assert_eq!(&rest[..], &wire[end..]);
    }

    /// Status and listing parsers take any line without panicking, and a
    /// status line reader never consumes past its LF.
    #[test]
    fn parsers_never_panic(line in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = codec::parse_status(&line);
        let _ = codec::parse_uidl_line(&line);
        let _ = codec::parse_list_line(&line);
        let mut caps = codec::Capabilities::default();
        caps.parse_line(&line);
        let _ = codec::printable(&line, 80);
        let mut wire = line.clone();
        wire.extend_from_slice(b"\r\n");
        wire.extend_from_slice(SENTINEL);
        let first_lf = wire.iter().position(|&b| b == b'\n').unwrap();
        let mut r = BufReader::with_capacity(7, &wire[..]);
        let mut buf = Vec::new();
        match codec::read_line(&mut r, &mut buf) {
            Ok(()) => prop_assert_eq!(wire[first_lf - 1], b'\r'),
            Err(codec::LineError::BareLf) => {
                prop_assert!(first_lf == 0 || wire[first_lf - 1] != b'\r')
            }
            Err(e) => prop_assert!(false, "{:?}", e),
        }
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).unwrap();
        prop_assert_eq!(&rest[..], &wire[first_lf + 1..]);
    }
}
