//! Where mail comes from, behind one interface: [`Source`]. POP3
//! (`pop3/`), IMAP (`imap/`, one selected folder: `imap::Folder`), both
//! logged in by `connect`, and POP2 (`pop2`) implement it; the engine and
//! the read-only commands see nothing else.
//!
//! To add a source: a module here that implements [`Source`] (its wire
//! code generic over `net::Transport`, unit-tested on the scripted stream
//! of `pop3::mock`), and one arm in [`open`] (and [`probe`] if `info`
//! should speak it).

pub(crate) mod connect;
pub mod imap;
pub(crate) mod pop2;
pub mod pop3;

use std::io::Read;

use crate::config::{Account, Protocol};
use crate::error::{Error, ExitKind, Result};
use connect::ConnectOptions;

/// One message as the listing names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// How the session names it: the POP3 or POP2 message number, the
    /// IMAP UID.
    pub handle: u32,
    /// Octets, as the server counts them.
    pub size: u64,
    /// The key of its seen record: the UIDL, IMAP's `UIDVALIDITY/UID`, a
    /// header digest (`hdr:…`), a content digest (`pop2:…`); `None` when
    /// the server gives none.
    pub id: Option<String>,
}

/// What SELECT said of an IMAP folder: together these change whenever a
/// message arrives (UIDNEXT), goes (MESSAGES, with UIDNEXT when one also
/// arrives) or, when the server keeps HIGHESTMODSEQ, has a flag changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FolderState {
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub messages: u32,
    pub highestmodseq: Option<u64>,
}

/// One message handed to a sink.
pub enum Fetched<'a> {
    /// Read it to its end (or fail).
    Body(&'a mut dyn Message),
    /// The server would not send it, and said why.
    Refused(String),
}

/// A message's bytes as they stream in: LF line ends, as the target
/// stores them.
pub trait Message: Read {
    /// Octets so far as the server counts them (CRLF line ends, before any
    /// unstuffing): the size every report shows.
    fn octets(&self) -> u64;
    /// The message grew past the `max_size` given to [`Source::fetch`]:
    /// the read failed on purpose, and the source skips the rest.
    fn over_limit(&self) -> bool;
}

/// What the fetch sink says of a message once it returns `Ok`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Taken {
    /// Delivered (or skipped), its record not yet committed.
    Received,
    /// Its seen record is committed; `delete` asks a source that
    /// [acknowledges each message](Source::acks_each_message) to delete it
    /// with that acknowledgement.
    Recorded { delete: bool },
}

/// Receives `(index into handles, message)`, in order.
pub type Sink<'s> = dyn FnMut(usize, Fetched<'_>) -> Result<()> + 's;
/// [`Sink`] of [`Source::fetch`], which also says what became of each one.
pub type FetchSink<'s> = dyn FnMut(usize, Fetched<'_>) -> Result<Taken> + 's;

/// A logged-in mailbox.
///
/// Every call that takes a sink keeps this contract: when the sink
/// returns an error, the source still reads every reply it asked for (the
/// session stays in step, so the caller may go on to delete and finish),
/// then returns the sink's error as it was. A failure of the connection,
/// also one met while the sink was reading a body, comes back as the
/// transport error it is, never as the sink's. A sink marks its own
/// failures with [`Error::local`] (or makes them with [`Error::stopped`]
/// for Ctrl-C), so the caller tells them apart by origin
/// ([`Error::is_local`], [`Error::is_stop`]): after those only is the
/// session usable.
pub trait Source {
    /// The server's name, for messages.
    fn host(&self) -> &str;

    /// The whole mailbox, in server order.
    fn listing(&mut self) -> Result<Vec<Entry>>;

    /// The header block of each message (POP3 `TOP n 0`) into `sink`.
    /// `Ok(false)`, with the sink never called, when the source cannot
    /// send header blocks at all.
    fn headers(&mut self, handles: &[u32], sink: &mut Sink<'_>) -> Result<bool>;

    /// The header block and the first `lines` body lines (`popfetch top`).
    fn top(&mut self, handles: &[u32], lines: u32, sink: &mut Sink<'_>) -> Result<()>;

    /// Each message whole. A body growing past `max_size` fails to read
    /// (see [`Message::over_limit`]); the rest of it is skipped.
    fn fetch(
        &mut self,
        handles: &[u32],
        max_size: Option<u64>,
        sink: &mut FetchSink<'_>,
    ) -> Result<()>;

    /// Listed messages a sync leaves alone this time, though they stay
    /// listed (so their records are kept): IMAP's `fetch = "unseen"` holds
    /// back those with `\Seen`. Asked once, after [`Source::listing`].
    fn held_back(&mut self) -> Result<Vec<u32>> {
        Ok(Vec::new())
    }

    /// The records of these messages, fetched in this session, are
    /// committed: a source that flags what was delivered (IMAP's
    /// `mark_seen`) does it now, never before.
    fn recorded(&mut self, _handles: &[u32]) -> Result<()> {
        Ok(())
    }

    /// Marks messages for deletion (or moves them away, IMAP's
    /// `move_to`); whether the server accepted, per handle. POP3 and POP2
    /// delete nothing before [`Source::finish`] succeeds; IMAP expunges at
    /// once (the records are committed before this is called).
    fn delete(&mut self, handles: &[u32]) -> Result<Vec<bool>>;

    /// Switches to another folder of the account (IMAP: SELECT), for the
    /// next mailbox of a sync; `Ok(false)` when the source has no folders
    /// to switch between (then it is finished and a new one opened).
    /// Only a source whose deletions took effect before [`Source::finish`]
    /// (IMAP expunges at once) may say `true`.
    fn select_folder(&mut self, _folder: &str) -> Result<bool> {
        Ok(false)
    }

    /// Logs out (QUIT, LOGOUT). `Ok` means the deletions took effect.
    fn finish(self: Box<Self>) -> Result<()>;

    /// The number of messages and their total size, when the source can
    /// count more cheaply than [`Source::listing`] (POP2 reads every
    /// message to list it); `None` when the listing is the cheap way.
    fn count(&mut self) -> Result<Option<(u64, u64)>> {
        Ok(None)
    }

    /// Ids are digests of the message content: entries with the same id
    /// are copies of one message (for other sources, a server bug).
    fn ids_are_digests(&self) -> bool {
        false
    }

    /// Each message is answered as it is received, before the next one
    /// (POP2's ACKS/ACKD/NACK): the engine then commits each one at once
    /// and answers [`Taken::Recorded`] with `delete` when it is to go, so
    /// the deletion rides on the acknowledgement instead of re-reading it.
    fn acks_each_message(&self) -> bool {
        false
    }

    /// The selected folder's name and UIDVALIDITY, for a source whose ids
    /// are `UIDVALIDITY/UID` (IMAP): when it changes, every UID does, and
    /// the engine finds the messages again by their headers.
    fn uidvalidity(&self) -> Option<(&str, u32)> {
        None
    }

    /// The server deletes what is downloaded whatever the client asks
    /// (POP3 `EXPIRE 0`, RFC 2449): messages fetched with `keep` will not
    /// stay on the server.
    fn expires_what_is_fetched(&self) -> bool {
        false
    }

    /// The selected folder as SELECT found it, while this session has
    /// changed nothing in it (no flag set, nothing deleted or moved): the
    /// engine's no-new-mail snapshot. `None` for sources without such
    /// numbers, or once the session changed the folder (its numbers then
    /// are not the ones the next SELECT will give).
    fn folder_state(&self) -> Option<FolderState> {
        None
    }
}

/// A logged-in source plus what the caller should tell the user.
pub struct Opened {
    pub source: Box<dyn Source>,
    pub warnings: Vec<String>,
}

/// Moves a session kept from the account's previous folder on to this
/// account's (the mailbox of [`Account::per_folder`]): `Some` when it could
/// (IMAP SELECT), `None` when this source has no folders to switch between
/// and was finished (then a new one is opened). On an error the session
/// says goodbye if the connection still can.
pub fn switch_folder(
    mut source: Box<dyn Source>,
    account: &Account,
) -> Result<Option<Box<dyn Source>>> {
    let folder = account.imap.as_ref().and_then(|i| i.folders.first());
    match folder.map(|f| source.select_folder(f)).transpose() {
        Ok(Some(true)) => Ok(Some(source)),
        Ok(_) => {
            source.finish()?;
            Ok(None)
        }
        Err(e) => {
            if !e.is_transport() {
                let _ = source.finish();
            }
            Err(e)
        }
    }
}

/// Connects and logs in with the account's protocol; `logging_in` is
/// called once the server has greeted (for a progress display).
pub fn open(
    account: &Account,
    opts: &ConnectOptions,
    logging_in: &(dyn Fn() + Sync),
) -> Result<Opened> {
    match account.protocol {
        Protocol::Pop3 => {
            let opened = connect::open(account, opts, logging_in)?;
            Ok(Opened {
                source: Box::new(opened.session),
                warnings: opened.warnings,
            })
        }
        Protocol::Pop2 => Ok(Opened {
            source: Box::new(pop2::open(account, opts, logging_in)?),
            warnings: Vec::new(),
        }),
        Protocol::Imap => {
            let opened = connect::open_imap(account, opts, logging_in)?;
            let mut warnings = opened.warnings;
            let mut folder = imap::Folder::select(opened.session, account, opts.alerts.clone())?;
            warnings.extend(connect::alert_warnings(account, folder.take_alerts()));
            opts.verbose
                .say(|| format!("{}: {}", account.name, folder.describe()));
            Ok(Opened {
                source: Box::new(folder),
                warnings,
            })
        }
    }
}

/// Why `--dry-run` cannot plan for this account without changing or
/// reading everything, if it cannot.
pub fn refuse_dry_run(account: &Account) -> Result<()> {
    match account.protocol {
        Protocol::Pop3 | Protocol::Imap => Ok(()),
        Protocol::Pop2 => Err(Error::new(
            ExitKind::Usage,
            "--dry-run is not available for POP2 accounts: POP2 can only tell what is new by reading every message",
        )),
    }
}

/// Why the read-only commands that show messages (`list`, `top`, `seen
/// mark`) cannot work with this account, if they cannot.
pub fn refuse_peek(account: &Account) -> Result<()> {
    match account.protocol {
        Protocol::Imap => match &account.imap {
            // Message numbers (UIDs) are per folder: one list of several
            // folders would name different messages alike.
            Some(imap) if imap.folders.len() > 1 => Err(Error::new(
                ExitKind::Usage,
                format!(
                    "account {}: `list`, `top` and `seen mark` show one folder, and it has {} ({}); give each folder a section of its own (folders = [\"NAME\"]) to look into it",
                    account.name,
                    imap.folders.len(),
                    imap.folders.join(", ")
                ),
            )),
            _ => Ok(()),
        },
        Protocol::Pop3 => Ok(()),
        Protocol::Pop2 => Err(Error::new(
            ExitKind::Usage,
            format!(
                "account {}: POP2 has no UIDs and no TOP, so only `sync` and `check` work with it",
                account.name
            ),
        )),
    }
}

/// What a server shows before login (`popfetch info`).
pub struct Probe {
    pub greeting: String,
    /// Before login (`None`: the server has none to show).
    pub capabilities: Option<Vec<String>>,
    pub tls: Option<String>,
    /// DER, leaf first.
    pub peer_certificates: Vec<Vec<u8>>,
    /// `Ok` when the chain (or the pin) would be trusted; why not otherwise.
    pub trusted: Option<std::result::Result<(), String>>,
}

/// Connects and greets without logging in.
pub fn probe(account: &Account, opts: &ConnectOptions) -> Result<Probe> {
    match account.protocol {
        Protocol::Pop3 => connect::probe(account, opts),
        Protocol::Imap => connect::probe_imap(account, opts),
        Protocol::Pop2 => Err(Error::new(
            ExitKind::Usage,
            "`info` speaks POP3; POP2 has no capabilities to show",
        )),
    }
}
