//! Delivery to a mail delivery agent: the message on the stdin of
//! `sh -c COMMAND` (procmail, maildrop, dovecot-lda, `sendmail -i`, …).
//!
//! The message is spooled first, streamed into an unlinked owner-only file
//! in the state directory, and the MDA is started only once the message is
//! complete, with that file as its stdin: a connection that drops inside a
//! message never reaches the MDA, which would take a cut-off stdin for the
//! whole message. The MDA runs in a process group of its own under
//! `command_timeout`; past it the group is killed and the message stays
//! unseen (exit 75).
//!
//! Exit 0 means delivered (the MDA is durable by its own contract), even
//! if the MDA did not read its stdin to the end: the whole message was
//! there to read, and an MDA may rightly stop early (a rule that discards
//! it, a bounce). Any other exit leaves the message unseen and on the
//! server; 75 (EX_TEMPFAIL) is reported as temporary. Facts about the
//! message travel in environment variables, never spliced into the
//! command line, so a hostile header can never become shell syntax.
//!
//! The duplicate window: each MDA delivery is recorded on its own, right
//! after the MDA exits 0. A crash (or kill -9) of popfetch from the moment
//! the MDA is started until that record is committed can deliver that one
//! message twice: the MDA, in its own process group, runs to its end
//! without us, and the next sync delivers the message again. No other
//! message is at risk, and none is ever handed over partial.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use super::{
    copy_with_final_newline, read_header_block, return_path, Delivered, Delivery, MessageInfo,
};
use crate::error::{Error, ExitKind, Result};
use crate::external::{self, Ended};
use crate::state::store::PendingEntry;

/// Most of the MDA's stderr kept for the error message.
const STDERR_KEEP: u64 = 4096;

pub struct Mda {
    command: String,
    account: String,
    /// Where messages are spooled: the state directory.
    spool_dir: PathBuf,
    limit: Duration,
    delivered: usize,
}

impl Mda {
    pub fn new(command: &str, account: &str, spool_dir: &Path, limit: Duration) -> Mda {
        Mda {
            command: command.to_string(),
            account: account.to_string(),
            spool_dir: spool_dir.to_path_buf(),
            limit,
            delivered: 0,
        }
    }

    /// Streams the whole message into a fresh spool file (one per message,
    /// so an MDA's leftover child never reads the next message), rewound.
    /// Returns the file, the bytes in it and the sender.
    fn spool(&self, body: &mut dyn Read) -> Result<(File, u64, String)> {
        let head = read_header_block(body)
            .map_err(|e| Error::with_source(ExitKind::TempFail, "reading the message", e))?;
        let sender = return_path(&head).unwrap_or_else(|| "MAILER-DAEMON".to_string());
        let mut file = crate::state::files::spool_file(&self.spool_dir)?;
        let mut whole = Receiving {
            inner: (&head[..]).chain(body),
            failed: false,
        };
        let size = copy_with_final_newline(&mut whole, &mut file)
            .and_then(|n| file.seek(SeekFrom::Start(0)).map(|_| n))
            .map_err(|e| {
                if whole.failed {
                    // The connection failed (a POP3 session reports that
                    // as itself): temporary, as any network failure.
                    Error::with_source(ExitKind::TempFail, "receiving the message", e)
                } else {
                    Error::local_io(
                        format!("spooling a message in {}", self.spool_dir.display()),
                        e,
                    )
                }
            })?;
        Ok((file, size, sender))
    }
}

/// A reader that notes whether it failed, to tell a failure receiving the
/// message from one writing the spool.
struct Receiving<R> {
    inner: R,
    failed: bool,
}

impl<R: Read> Read for Receiving<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buf);
        if let Err(e) = &read {
            self.failed |= e.kind() != std::io::ErrorKind::Interrupted;
        }
        read
    }
}

impl Delivery for Mda {
    fn deliver(&mut self, info: &MessageInfo, body: &mut dyn Read) -> Result<Delivered> {
        let (message, _, sender) = self.spool(body)?;
        // The MDA's stderr goes to a file too: a pipe could be held open by
        // a child the MDA leaves running, and reading it to the end would
        // then never return.
        let mut stderr = crate::state::files::spool_file(&self.spool_dir)?;
        let child_stderr = stderr
            .try_clone()
            .map_err(|e| Error::local_io("the mda's stderr file", e))?;
        let mut cmd = external::shell(&self.command);
        cmd.env("POPFETCH_ACCOUNT", &self.account)
            .env("POPFETCH_UIDL", info.uidl)
            .env("POPFETCH_SENDER", &sender)
            .stdin(Stdio::from(message))
            .stdout(Stdio::null())
            .stderr(Stdio::from(child_stderr));
        let (ended, ()) = external::run(&mut cmd, self.limit, false, |_| ()).map_err(|e| {
            Error::with_source(
                ExitKind::Io,
                format!("cannot run the mda {:?}", self.command),
                e,
            )
        })?;
        // Dropped by `cmd` only now: its copies of the files are closed.
        drop(cmd);
        let mut said = Vec::new();
        let _ = stderr.seek(SeekFrom::Start(0));
        let _ = (&mut stderr).take(STDERR_KEEP).read_to_end(&mut said);
        let said = String::from_utf8_lossy(&said).trim().to_string();
        let said = if said.is_empty() {
            String::new()
        } else {
            format!(": {said}")
        };
        let status = match ended {
            Ended::Exited(status) => status,
            Ended::TimedOut => {
                return Err(Error::new(
                    ExitKind::TempFail,
                    format!(
                        "the mda {:?} did not finish within {} s and was killed with the processes it \
                         started (command_timeout); the message stays on the server for the next sync{said}",
                        self.command,
                        self.limit.as_secs()
                    ),
                ))
            }
        };
        match status.code() {
            Some(0) => {
                self.delivered += 1;
                Ok(Delivered::Stored)
            }
            Some(75) => Err(Error::new(
                ExitKind::TempFail,
                format!(
                    "the mda {:?} failed temporarily (exit 75){said}",
                    self.command
                ),
            )),
            Some(code) => Err(Error::new(
                ExitKind::Io,
                format!("the mda {:?} failed (exit {code}){said}", self.command),
            )),
            None => Err(Error::new(
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

    fn destination(&self, _name: Option<&str>) -> String {
        // The same command for every message; `popfetch accounts` shows it.
        "mda".to_string()
    }

    fn batch_limit(&self) -> usize {
        // Each MDA delivery is final at once: record it at once too.
        1
    }
}
