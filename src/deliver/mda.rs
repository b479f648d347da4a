//! Delivery to a mail delivery agent: the message on the stdin of
//! `sh -c COMMAND` (procmail, maildrop, dovecot-lda, `sendmail -i`, …).
//!
//! Exit 0 means delivered (the MDA is durable by its own contract). Any
//! other exit leaves the message unseen and on the server; 75 (EX_TEMPFAIL)
//! is reported as temporary. Facts about the message travel in environment
//! variables, never spliced into the command line, so a hostile header can
//! never become shell syntax.
//!
//! The duplicate window: a crash after the MDA exits 0 and before the seen
//! record is committed (each MDA delivery is committed on its own) delivers
//! that one message again.

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use super::{copy_with_final_newline, read_header_block, return_path, Delivery, MessageInfo};
use crate::error::{Error, ExitKind, Result};
use crate::store::PendingEntry;

/// Most of the MDA's stderr kept for the error message.
const STDERR_KEEP: usize = 4096;

pub struct Mda {
    command: String,
    account: String,
    delivered: usize,
}

impl Mda {
    pub fn new(command: &str, account: &str) -> Mda {
        Mda {
            command: command.to_string(),
            account: account.to_string(),
            delivered: 0,
        }
    }
}

impl Delivery for Mda {
    fn deliver(&mut self, info: &MessageInfo, body: &mut dyn Read) -> Result<u64> {
        let head = read_header_block(body)
            .map_err(|e| Error::with_source(ExitKind::TempFail, "reading the message", e))?;
        let sender = return_path(&head).unwrap_or_else(|| "MAILER-DAEMON".to_string());
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(&self.command)
            .env("POPFETCH_ACCOUNT", &self.account)
            .env("POPFETCH_UIDL", info.uidl)
            .env("POPFETCH_SENDER", &sender)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                Error::with_source(
                    ExitKind::Io,
                    format!("cannot run the mda {:?}", self.command),
                    e,
                )
            })?;
        // Read stderr on a thread so a chatty MDA cannot block on a full pipe
        // while we are still writing its stdin.
        let mut stderr = child.stderr.take().expect("piped");
        let collector = std::thread::spawn(move || {
            let mut kept = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let room = STDERR_KEEP.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
            kept
        });
        let mut stdin = child.stdin.take().expect("piped");
        let mut whole = (&head[..]).chain(body);
        let written =
            copy_with_final_newline(&mut whole, &mut stdin).and_then(|n| stdin.flush().map(|_| n));
        drop(stdin);
        let status = child
            .wait()
            .map_err(|e| Error::with_source(ExitKind::Io, "waiting for the mda", e))?;
        let stderr = collector.join().unwrap_or_default();
        let stderr = String::from_utf8_lossy(&stderr).trim().to_string();
        let said = if stderr.is_empty() {
            String::new()
        } else {
            format!(": {stderr}")
        };
        match (status.code(), written) {
            (Some(0), Ok(n)) => {
                self.delivered += 1;
                Ok(n)
            }
            // The MDA stopped reading early and still said yes: trust it
            // only if it consumed everything, which a broken pipe denies.
            (Some(0), Err(e)) => Err(Error::with_source(
                ExitKind::Io,
                format!(
                    "the mda {:?} exited 0 without reading the whole message",
                    self.command
                ),
                e,
            )),
            (Some(75), _) => Err(Error::new(
                ExitKind::TempFail,
                format!(
                    "the mda {:?} failed temporarily (exit 75){said}",
                    self.command
                ),
            )),
            (Some(code), _) => Err(Error::new(
                ExitKind::Io,
                format!("the mda {:?} failed (exit {code}){said}", self.command),
            )),
            (None, _) => Err(Error::new(
                ExitKind::Io,
                format!("the mda {:?} was killed by a signal{said}", self.command),
            )),
        }
    }

    fn commit(
        &mut self,
        _journal: &mut dyn FnMut(&[PendingEntry]) -> Result<()>,
    ) -> Result<Vec<String>> {
        self.delivered = 0;
        Ok(Vec::new())
    }

    fn rollback(&mut self) {
        // Delivered is delivered: an MDA cannot take a message back.
        self.delivered = 0;
    }

    fn uncommitted(&self) -> usize {
        self.delivered
    }

    fn batch_limit(&self) -> usize {
        // Each MDA delivery is final at once: record it at once too.
        1
    }
}
