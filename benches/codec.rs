//! Micro-benchmark of the RETR body decoder: MB/s of
//! `popfetch::source::pop3::codec::Unstuffer::decode` (dot-unstuffing, CRLF → LF,
//! terminator detection) over a realistic wire stream.
//!
//! Run: `cargo bench --bench codec` (env `BENCH_REPS`, default 5).
//!
//! The stream is 64 MB of dot-stuffed messages as a POP3 server sends them
//! (CRLF line ends, `..` for lines starting with a dot, `.` terminators):
//! text mail with 20–76 byte lines and base64 attachments with 76 byte
//! lines. It is fed in chunks the way `Body::read` sees it: 16 KiB (one TLS
//! record) and 128 KiB (the read buffer) input slices, into a 64 KiB output
//! buffer (what `copy_with_final_newline` uses).

use std::hint::black_box;
use std::time::Instant;

use popfetch::source::pop3::codec::{stuff, Unstuffer};

#[path = "common/rng.rs"]
mod rng;
use rng::Rng;

const WORDS: &[&str] = &[
    "the", "of", "and", "to", "in", "a", "is", "that", "for", "it", "with", "server", "message",
    "report", "meeting", "attached", "please", "review", "regards", "café", "über",
];

/// Wire bytes of many messages, each stuffed and terminated.
fn stream(total: usize) -> (Vec<u8>, usize) {
    let mut rng = Rng(42);
    let mut wire = Vec::with_capacity(total + total / 16);
    let mut messages = 0;
    while wire.len() < total {
        let mut m = Vec::new();
        m.extend_from_slice(b"From: a@example.org\nTo: b@example.com\nSubject: codec bench\n\n");
        let attach = rng.below(10) == 0;
        let size = if attach {
            50_000 + rng.below(450_000) as usize
        } else {
            2_000 + rng.below(8_000) as usize
        };
        while m.len() < size {
            if attach {
                for _ in 0..76 {
                    m.push(
                        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
                            [rng.below(64) as usize],
                    );
                }
            } else {
                if rng.below(40) == 0 {
                    m.push(b'.');
                }
                let len = 20 + rng.below(56) as usize;
                let start = m.len();
                while m.len() - start < len {
                    m.extend_from_slice(WORDS[rng.below(WORDS.len() as u64) as usize].as_bytes());
                    m.push(b' ');
                }
            }
            m.push(b'\n');
        }
        wire.extend_from_slice(&stuff(&m));
        messages += 1;
    }
    (wire, messages)
}

/// Decodes the whole stream feeding `chunk`-byte input slices; returns the
/// bytes written and messages seen.
fn decode_all(wire: &[u8], chunk: usize, out: &mut [u8]) -> (u64, usize) {
    let mut written = 0u64;
    let mut messages = 0;
    let mut u = Unstuffer::new();
    let mut pos = 0;
    while pos < wire.len() {
        let end = (pos + chunk).min(wire.len());
        let mut input = &wire[pos..end];
        while !input.is_empty() {
            let d = u.decode(input, out);
            black_box(&out[..d.written]);
            written += d.written as u64;
            input = &input[d.consumed..];
            if d.done {
                messages += 1;
                u = Unstuffer::new();
            }
        }
        pos = end;
    }
    (written, messages)
}

fn main() {
    let reps: usize = std::env::var("BENCH_REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5)
        .max(1);
    let (wire, count) = stream(64 * 1024 * 1024);
    let mut out = vec![0u8; 64 * 1024];
    println!(
        "codec: Unstuffer::decode over {:.1} MB of wire data ({count} messages), {reps} reps\n",
        wire.len() as f64 / 1e6
    );
    println!("| input chunk | output buffer | median MB/s (wire bytes) | min–max MB/s |");
    println!("|---:|---:|---:|---:|");
    for chunk in [16 * 1024, 128 * 1024] {
        let (_, seen) = decode_all(&wire, chunk, &mut out); // warm-up + check
        assert_eq!(seen, count, "every terminator found");
        let mut rates: Vec<f64> = (0..reps)
            .map(|_| {
                let t = Instant::now();
                black_box(decode_all(black_box(&wire), chunk, &mut out));
                wire.len() as f64 / 1e6 / t.elapsed().as_secs_f64()
            })
            .collect();
        rates.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!(
            "| {} KiB | {} KiB | {:.0} | {:.0}–{:.0} |",
            chunk / 1024,
            out.len() / 1024,
            rates[rates.len() / 2],
            rates[0],
            rates[rates.len() - 1]
        );
    }
}
