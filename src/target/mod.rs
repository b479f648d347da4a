//! Delivery targets behind one small interface: write a message, then
//! commit a batch (make it durable and visible), or roll back what was not
//! committed. Maildir, mbox, MDA, LMTP/SMTP and IMAP APPEND are its implementations.
//!
//! A message handed to a target is the server's bytes after dot-unstuffing
//! with LF line ends; targets change nothing else (SPEC §3), except the
//! mboxrd framing that an mbox needs.

pub mod imap;
pub mod lmtp;
pub mod maildir;
pub mod mbox;
pub mod mda;

use std::io::Read;
use std::path::Path;

use crate::config::{Account, Target};
use crate::error::Result;
use crate::source::connect::ConnectOptions;
use crate::state::store::PendingEntry;

/// What a target needs to know about a message.
pub struct MessageInfo<'a> {
    pub uidl: &'a str,
}

/// What became of one message handed to a target.
#[derive(Debug)]
pub enum Delivered {
    /// Taken (durable and visible at commit).
    Stored,
    /// A mail server's permanent refusal of this message alone (an
    /// LMTP/SMTP 5xx, with its reply kept in the error): the message stays
    /// on the source and is reported, and the session goes on with the
    /// next one.
    Refused(crate::error::Error),
}

/// A delivery target for one sync.
pub trait Delivery {
    /// Writes one message from `body` (read it to the end). On an error or
    /// a refusal nothing of this message remains anywhere. An error stops
    /// the account's delivery; a [`Delivered::Refused`] only this message.
    fn deliver(&mut self, info: &MessageInfo, body: &mut dyn Read) -> Result<Delivered>;

    /// Makes every message delivered since the last commit durable and
    /// visible. `journal` is called first with the names the messages will
    /// have, for crash recovery; only when it returns are they published.
    /// Returns the journal names to clear once the messages are recorded:
    /// when the target names its messages, one per message first, in order
    /// (see [`Delivery::destination`]), then any other entries to clear.
    fn commit(
        &mut self,
        journal: &mut dyn FnMut(&[PendingEntry]) -> Result<()>,
    ) -> Result<Vec<String>>;

    /// Discards messages delivered since the last commit.
    fn rollback(&mut self);

    /// Takes back the last message delivered, before any commit made it
    /// visible (it turned out to be one delivered by an earlier session).
    /// Returns whether it is gone: a target that hands each message over at
    /// once (an MDA) cannot take it back.
    fn discard_last(&mut self) -> bool {
        false
    }

    /// Names the last message delivered, not yet committed, by the key its
    /// seen record will have, when that key is known only once the message
    /// was read to the end (a digest of its content). A crash after the
    /// journal entry then recovers it under that key.
    fn set_last_uidl(&mut self, _uidl: &str) {}

    /// Where a committed message is, for `-v`: `name` is the name
    /// [`Delivery::commit`] returned for it (`None` when it returns none).
    /// Called only when asked, after the commit: delivery pays nothing.
    fn destination(&self, name: Option<&str>) -> String;

    /// Most messages to gather before a commit.
    fn batch_limit(&self) -> usize {
        256
    }
}

/// Opens the account's target, creating folders and files as needed. An
/// MDA's messages are spooled in `state_dir`. `opts` gives `-v` and the
/// trace (`-vv`) for a target that is a server (LMTP, SMTP).
pub fn open(
    account: &Account,
    state_dir: &Path,
    opts: &ConnectOptions,
) -> Result<Box<dyn Delivery>> {
    Ok(match &account.target {
        Target::Maildir(path) => Box::new(maildir::Maildir::open(path)?),
        Target::Mbox(path) => Box::new(mbox::Mbox::open(path)?),
        Target::Mda(command) => Box::new(mda::Mda::new(
            command,
            &account.name,
            state_dir,
            account.command_timeout,
        )),
        Target::Imap(target) => Box::new(imap::ImapAppend::new(target, account, state_dir, opts)),
        Target::Lmtp(wire) => Box::new(lmtp::Wired::new(wire, true, account, opts)?),
        Target::Smtp(wire) => Box::new(lmtp::Wired::new(wire, false, account, opts)?),
    })
}

/// Longest header block searched for `Return-Path`.
const MAX_HEADER_SCAN: usize = 256 * 1024;

/// Reads from `body` until the end of the header block (or a bound), and
/// returns what was read; the caller writes it before the rest.
pub(crate) fn read_header_block(body: &mut dyn Read) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::new();
    let mut chunk = [0u8; 8192];
    while head.len() < MAX_HEADER_SCAN && !has_header_end(&head) {
        let n = body.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..n]);
    }
    Ok(head)
}

fn has_header_end(head: &[u8]) -> bool {
    head.starts_with(b"\n") || memchr::memmem::find(head, b"\n\n").is_some()
}

/// The address in the first `Return-Path:` header, `<>` as MAILER-DAEMON.
pub(crate) fn return_path(head: &[u8]) -> Option<String> {
    let end = memchr::memmem::find(head, b"\n\n").unwrap_or(head.len());
    for line in head[..end].split(|&b| b == b'\n') {
        if line.len() > 12 && line[..12].eq_ignore_ascii_case(b"return-path:") {
            let value = String::from_utf8_lossy(&line[12..]);
            let addr: String = value
                .trim()
                .trim_start_matches('<')
                .split('>')
                .next()
                .unwrap_or("")
                .chars()
                .filter(|c| !c.is_whitespace() && !c.is_control())
                .collect();
            return Some(if addr.is_empty() {
                "MAILER-DAEMON".to_string()
            } else {
                addr
            });
        }
    }
    None
}

/// Copies `body` into `out`, adding a final LF when the message does not
/// end with one, and returns the bytes written.
///
/// The body arrives in pieces of a TLS record or so; they are gathered in
/// a per-thread buffer and written in blocks of [`COPY_BLOCK`], so a small
/// message is one `write`. The buffer is reused: a fresh zeroed 64 KiB for
/// every message cost more than the copy itself.
pub(crate) fn copy_with_final_newline(
    body: &mut dyn Read,
    out: &mut dyn std::io::Write,
) -> std::io::Result<u64> {
    thread_local! {
        static BLOCK: std::cell::RefCell<Box<[u8]>> =
            std::cell::RefCell::new(vec![0u8; COPY_BLOCK].into_boxed_slice());
    }
    BLOCK.with(|block| match block.try_borrow_mut() {
        Ok(mut buf) => copy_blocks(body, out, &mut buf),
        // Only if a body's reader itself delivers a message: use a buffer
        // of its own rather than share.
        Err(_) => copy_blocks(body, out, &mut vec![0u8; COPY_BLOCK]),
    })
}

/// Size of the blocks [`copy_with_final_newline`] writes.
const COPY_BLOCK: usize = 64 * 1024;

fn copy_blocks(
    body: &mut dyn Read,
    out: &mut dyn std::io::Write,
    buf: &mut [u8],
) -> std::io::Result<u64> {
    let mut total = 0u64;
    let mut last = b'\n';
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            match body.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        if filled == 0 {
            break;
        }
        out.write_all(&buf[..filled])?;
        last = buf[filled - 1];
        total += filled as u64;
        if filled < buf.len() {
            break;
        }
    }
    if total > 0 && last != b'\n' {
        out.write_all(b"\n")?;
        total += 1;
    }
    Ok(total)
}
