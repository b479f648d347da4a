//! Fuzz target for the POP3 codec (`popfetch::pop3::codec`).
//!
//! Run from the repository root (stable toolchain; cargo-fuzz needs nightly
//! flags, which RUSTC_BOOTSTRAP=1 unlocks):
//!
//!     RUSTC_BOOTSTRAP=1 cargo fuzz run codec -- -max_total_time=300
//!
//! Needs `cargo install cargo-fuzz`. Corpus, artifacts and build output go to
//! fuzz/corpus, fuzz/artifacts and fuzz/target (all git-ignored).
//!
//! What it checks, on arbitrary bytes:
//! (a) `Unstuffer::decode`, fed in chunks and with output buffers (>= 2
//!     bytes) chosen by the input: never panics, never stalls, output never
//!     exceeds input, stops exactly after the first terminator line (CRLF
//!     "." CRLF only; the bytes after it are left unconsumed), and gives the
//!     same result as a one-shot decode, a byte-at-a-time decode and a
//!     simple line-based model; `stuff` and `stuff_raw` followed by decoding
//!     give the message back.
//! (b) `parse_status`, `parse_uidl_line`, `parse_list_line`,
//!     `apop_timestamp` and `Capabilities::parse_line` never panic.
//! (c) `read_multiline_line` over a `Cursor` never panics nor returns a line
//!     longer than `MAX_LINE`, and reads the same lines through a
//!     small-capacity `BufReader`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use popfetch::pop3::codec::{
    apop_timestamp, parse_list_line, parse_status, parse_uidl_line, read_multiline_line, stuff,
    stuff_raw, valid_uidl, Capabilities, LineError, Unstuffer, MAX_LINE,
};
use std::io::{BufRead, BufReader, Cursor};

fuzz_target!(|data: &[u8]| {
    unstuffing(data);
    parsers(data);
    multiline(data);
});

// ---------------------------------------------------------------- (a)

/// The first byte's low nibble says how many (chunk, room) byte pairs
/// follow as the chunking plan; the rest is the wire data.
fn unstuffing(data: &[u8]) {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let plan_len = ((ctl & 0x0f) as usize * 2).min(rest.len() & !1);
    let (plan, wire) = rest.split_at(plan_len);

    let (want, term_end) = model(wire);

    let one_shot = decode_all(wire, |_| (usize::MAX, wire.len() + 2));
    let bytewise = decode_all(wire, |_| (1, 2));
    let planned = decode_all(wire, |step| {
        if plan.is_empty() {
            return (1 + step % 7, 2 + step % 3);
        }
        let j = (step * 2) % plan.len();
        let (c, r) = (plan[j], plan[j + 1]);
        let chunk = if c >= 0xf0 {
            usize::MAX
        } else {
            1 + c as usize % 64
        };
        let room = if r >= 0xf0 {
            wire.len() + 2
        } else {
            2 + r as usize % 16
        };
        (chunk, room)
    });

    for (name, got) in [
        ("one-shot", &one_shot),
        ("byte-wise", &bytewise),
        ("planned", &planned),
    ] {
        assert_eq!(got.out, want, "{name}: output differs from the model");
        match term_end {
            Some(end) => {
                assert!(got.done, "{name}: terminator missed");
                assert_eq!(got.consumed, end, "{name}: consumed past the terminator");
            }
            None => {
                assert!(!got.done, "{name}: terminator invented");
                assert_eq!(got.consumed, wire.len(), "{name}: input left over");
            }
        }
    }

    // Encoding then decoding gives the message back (with a final LF).
    let wire = stuff(rest);
    let mut want = rest.to_vec();
    if !want.is_empty() && want.last() != Some(&b'\n') {
        want.push(b'\n');
    }
    let got = decode_all(&wire, |step| (1 + step % 13, 2 + step % 5));
    assert!(got.done);
    assert_eq!(got.consumed, wire.len());
    assert_eq!(got.out, want, "stuff/unstuff round trip");

    // A server that sends the bytes as they are, stuffing only at CRLF:
    // CRLF comes back as LF, every bare LF and CR as itself.
    let wire = stuff_raw(rest);
    let mut want = Vec::new();
    let mut i = 0;
    while i < rest.len() {
        if !(rest[i] == b'\r' && rest.get(i + 1) == Some(&b'\n')) {
            want.push(rest[i]);
        }
        i += 1;
    }
    if !rest.is_empty() && !rest.ends_with(b"\r\n") {
        want.push(b'\n');
    }
    let got = decode_all(&wire, |step| (1 + step % 11, 2 + step % 7));
    assert!(got.done);
    assert_eq!(got.consumed, wire.len());
    assert_eq!(got.out, want, "stuff_raw/unstuff round trip");
}

struct Run {
    out: Vec<u8>,
    consumed: usize,
    done: bool,
}

/// Decodes `wire` in pieces: `next(step)` gives each call's chunk length
/// (>= 1) and output buffer size (>= 2).
fn decode_all(wire: &[u8], mut next: impl FnMut(usize) -> (usize, usize)) -> Run {
    let mut u = Unstuffer::new();
    let mut out = Vec::new();
    let mut pos = 0;
    let mut scratch = vec![0u8; wire.len() + 2];
    let mut step = 0;
    while pos < wire.len() && !u.is_done() {
        let (chunk, room) = next(step);
        step += 1;
        assert!(chunk >= 1 && room >= 2);
        let chunk = &wire[pos..pos.saturating_add(chunk).min(wire.len())];
        let buf = &mut scratch[..room.min(wire.len() + 2)];
        let d = u.decode(chunk, buf);
        assert!(d.consumed <= chunk.len());
        assert!(d.written <= buf.len());
        assert_eq!(d.done, u.is_done());
        // Every call with input and room must make progress, or a caller
        // looping on it would hang.
        assert!(d.consumed > 0 || d.written > 0, "decode stalled");
        out.extend_from_slice(&buf[..d.written]);
        pos += d.consumed;
        assert!(out.len() <= pos, "output exceeds input");
    }
    if u.is_done() {
        // Once done, nothing more is taken.
        let d = u.decode(&wire[pos..], &mut scratch);
        assert_eq!((d.consumed, d.written, d.done), (0, 0, true));
    }
    Run {
        out,
        consumed: pos,
        done: u.is_done(),
    }
}

/// What decoding should give, line by line, where only CRLF ends a line
/// (a bare LF or CR is data): a line that is `.` CRLF ends the response;
/// otherwise a leading `.` is removed and the CRLF becomes LF. An
/// unfinished last line is emitted as far as known (a trailing CR is held
/// back). Returns the output and the end of the terminator, if there is one.
fn model(wire: &[u8]) -> (Vec<u8>, Option<usize>) {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < wire.len() {
        let rest = &wire[pos..];
        let (line, complete) = match rest.windows(2).position(|w| w == b"\r\n") {
            Some(k) => (&rest[..k + 2], true),
            None => (rest, false),
        };
        pos += line.len();
        let mut l = line;
        if let Some(unstuffed) = l.strip_prefix(b".") {
            if unstuffed == b"\r\n" {
                return (out, Some(pos));
            }
            l = unstuffed;
        }
        if complete {
            out.extend_from_slice(&l[..l.len() - 2]);
            out.push(b'\n');
        } else {
            out.extend_from_slice(l.strip_suffix(b"\r").unwrap_or(l));
        }
    }
    (out, None)
}

// ---------------------------------------------------------------- (b)

fn parsers(data: &[u8]) {
    let _ = parse_status(data);
    for line in data.split(|&b| b == b'\n') {
        let _ = parse_status(line);
        if let Some((_, uidl)) = parse_uidl_line(line) {
            assert!(!uidl.is_empty());
            let _ = valid_uidl(&uidl);
        }
        let _ = parse_list_line(line);
    }

    let text = String::from_utf8_lossy(data);
    if let Some(stamp) = apop_timestamp(&text) {
        assert!(stamp.starts_with('<') && stamp.ends_with('>') && stamp.contains('@'));
    }

    let mut caps = Capabilities::default();
    for line in data.split(|&b| b == b'\n') {
        caps.parse_line(line);
    }
    let _ = caps.sasl();
    for name in caps.names() {
        assert!(caps.has(name));
        assert!(caps.args(name).is_some());
    }
}

// ---------------------------------------------------------------- (c)

/// The first byte picks a `BufReader` capacity and, sometimes, a prefix of
/// about `MAX_LINE` bytes so that the line limit is reached.
fn multiline(data: &[u8]) {
    let Some((&ctl, body)) = data.split_first() else {
        return;
    };
    let mut input = Vec::new();
    if ctl & 0x03 == 0x03 {
        // A first line from MAX_LINE - 2 to MAX_LINE + 2 bytes long, maybe
        // dot-stuffed, continued by the fuzzer's bytes.
        input.resize(MAX_LINE - 2 + (ctl >> 2) as usize % 5, b'x');
        if ctl & 0x80 != 0 {
            input[0] = b'.';
        }
    }
    input.extend_from_slice(body);

    let direct = read_lines(Cursor::new(&input[..]));
    // Tiny buffers for short inputs; for the long first line, sizes that
    // still split it, but without 64 Ki one-byte reads per run.
    let cap = if input.len() > MAX_LINE {
        1000 + 1000 * ((ctl >> 4) & 7) as usize
    } else {
        1 << ((ctl >> 4) & 7)
    };
    let buffered = read_lines(BufReader::with_capacity(cap, Cursor::new(&input[..])));
    assert_eq!(direct, buffered, "result depends on the read buffer size");
}

#[derive(Debug, PartialEq, Eq)]
enum End {
    Terminator,
    Eof,
    TooLong,
    BareLf,
}

fn read_lines<R: BufRead>(mut r: R) -> (Vec<Vec<u8>>, End) {
    let mut lines = Vec::new();
    let mut buf = Vec::new();
    loop {
        match read_multiline_line(&mut r, &mut buf) {
            Ok(more) => {
                assert!(buf.len() <= MAX_LINE, "line of {} bytes", buf.len());
                if !more {
                    return (lines, End::Terminator);
                }
                lines.push(buf.clone());
            }
            Err(LineError::Eof) => return (lines, End::Eof),
            Err(LineError::TooLong) => return (lines, End::TooLong),
            Err(LineError::BareLf) => return (lines, End::BareLf),
            Err(e) => panic!("unexpected error from an in-memory reader: {e:?}"),
        }
    }
}
