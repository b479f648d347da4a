//! The read-only commands: `check` (is there new mail?), `list` (what is
//! on the server) and `top` (headers, or the start of a message, without
//! downloading it).
//!
//! None of them changes anything anywhere: no RETR, no DELE, and the seen
//! state is only read — without the mailbox lock, so they can run while a
//! sync is busy (SQLite's WAL gives them a consistent snapshot), and
//! without creating the state database when there is none yet.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;

use crate::config::Account;
use crate::engine::identity;
use crate::engine::plan::{self, Policy, SkipReason};
use crate::error::{Error, ExitKind, Result};
use crate::source::connect::ConnectOptions;
use crate::source::{self, Entry, Fetched, Source};
use crate::state::store::Store;
use crate::ui::term;
use crate::ui::units::human_bytes;

/// The most of one header block `top` keeps for its summary line; the
/// rest is read and thrown away (a hostile server cannot fill memory).
const HEADER_CAP: usize = 256 * 1024;

/// The seen state of `account`, read without the lock and without
/// creating anything: no database or no record means nothing seen.
pub fn read_seen(account: &Account, state_dir: &Path) -> Result<HashMap<String, i64>> {
    let Some(store) = Store::open_existing(state_dir)? else {
        return Ok(HashMap::new());
    };
    match store.find_mailbox(&account.identity())? {
        Some(mailbox) => store.seen(mailbox),
        None => Ok(HashMap::new()),
    }
}

/// A logged-in source with the mailbox listing and the seen state.
pub struct Peek {
    pub source: Box<dyn Source>,
    pub listing: Vec<Entry>,
    pub seen: HashMap<String, i64>,
    pub warnings: Vec<String>,
}

impl Peek {
    /// Connects, logs in, lists the mailbox (POP3: LIST + UIDL, one round
    /// trip with PIPELINING) and reads the seen state.
    pub fn open(account: &Account, state_dir: &Path, opts: &ConnectOptions) -> Result<Peek> {
        source::refuse_peek(account)?;
        let seen = read_seen(account, state_dir)?;
        let opened = source::open(account, opts, &|| {})?;
        Peek::list(opened.source, seen, opened.warnings, (account, state_dir))
    }

    /// Lists the mailbox of a logged-in source, keying its messages the
    /// way `sync` records them.
    fn list(
        mut source: Box<dyn Source>,
        mut seen: HashMap<String, i64>,
        mut warnings: Vec<String>,
        (account, state_dir): (&Account, &Path),
    ) -> Result<Peek> {
        let mut listing = source.listing()?;
        // A renumbered IMAP folder: the keys `sync` will move its records
        // to (nothing is written here).
        if let Some(mut store) = Store::open_existing(state_dir)? {
            if let Some(mailbox) = store.find_mailbox(&account.identity())? {
                warnings.extend(identity::follow_uidvalidity(
                    source.as_mut(),
                    &mut store,
                    mailbox,
                    &listing,
                    &mut seen,
                    false,
                    &account.name,
                )?);
            }
        }
        // Without UIDL, the same header digests as `sync` (SPEC §4.5).
        identity::identify_without_uidl(source.as_mut(), &mut listing, true)?;
        // Messages sharing a UIDL: the keys `sync` records them under.
        let shared = identity::tell_shared_uidls_apart(source.as_mut(), &mut listing, &seen)?;
        warnings.extend(shared.warning);
        Ok(Peek {
            source,
            listing,
            seen,
            warnings,
        })
    }

    /// Each listed message's UIDL by its number.
    pub fn uidl_by_number(&self) -> HashMap<u32, String> {
        self.listing
            .iter()
            .filter_map(|e| e.id.clone().map(|u| (e.handle, u)))
            .collect()
    }

    pub fn is_seen(&self, entry: &Entry) -> bool {
        entry
            .id
            .as_deref()
            .is_some_and(|u| self.seen.contains_key(u))
    }

    /// Fails like `sync` does when the server cannot tell messages apart.
    pub fn require_uidl(&self, account: &Account) -> Result<()> {
        if self.listing.iter().any(|e| e.id.is_none()) {
            return Err(Error::config(format!(
                "{}: the server does not support UIDL, so popfetch cannot tell new messages from old ones",
                account.host
            )));
        }
        Ok(())
    }

    /// Ends the session. Nothing was marked for deletion, so a failing
    /// QUIT changes nothing and is not worth an error.
    pub fn close(self) {
        let _ = self.source.finish();
    }
}

// ---------------------------------------------------------------------------
// check

/// One account's answer to `check`.
#[derive(Debug, Default)]
pub struct CheckReport {
    pub account: String,
    /// Messages the next sync would download, and their size.
    pub new: u64,
    pub new_bytes: u64,
    /// Everything on the server.
    pub total: u64,
    pub total_bytes: u64,
    pub warnings: Vec<String>,
    pub error: Option<Error>,
}

/// Asks one account whether new mail has arrived: one session, LIST and
/// UIDL only. "New" means what the next `sync` would download.
pub fn check_account(account: &Account, state_dir: &Path, opts: &ConnectOptions) -> CheckReport {
    let mut report = CheckReport {
        account: account.name.clone(),
        ..CheckReport::default()
    };
    // An IMAP account's folders are mailboxes of their own: counted alike,
    // on one session that SELECTs each in turn (as `sync` does).
    let mailboxes = account.per_folder();
    let mut carried = None;
    for (i, mailbox) in mailboxes.iter().enumerate() {
        let more = i + 1 < mailboxes.len();
        if let Err(e) = check_into(mailbox, state_dir, opts, &mut report, &mut carried, more) {
            report.error = Some(e);
            break;
        }
    }
    // A session kept for a folder that was never reached: nothing was
    // changed on it, so a failing LOGOUT is not worth an error.
    if let Some(source) = carried {
        let _ = source.finish();
    }
    report
}

/// Counts one mailbox. `carried` is the session of the account's previous
/// folder, if it can switch folders; with `more`, this one's session is
/// left there for the next.
fn check_into(
    account: &Account,
    state_dir: &Path,
    opts: &ConnectOptions,
    report: &mut CheckReport,
    carried: &mut Option<Box<dyn Source>>,
    more: bool,
) -> Result<()> {
    let switched = match carried.take() {
        Some(source) => source::switch_folder(source, account)?,
        None => None,
    };
    let opened = match switched {
        Some(source) => source::Opened {
            source,
            warnings: Vec::new(),
        },
        None => source::open(account, opts, &|| {})?,
    };
    let mut source = opened.source;
    // A source that counts more cheaply than it lists (POP2: `READ n`
    // gives each length, but which messages are new is known only by
    // reading them) answers with every message as new: exact when the
    // account deletes what it fetches (keep = false), an upper bound
    // otherwise.
    if let Some((count, bytes)) = source.count()? {
        let _ = source.finish();
        report.warnings.extend(opened.warnings);
        report.total += count;
        report.total_bytes += bytes;
        report.new += count;
        report.new_bytes += bytes;
        if account.keep && count > 0 {
            report.warnings.push(format!(
                "{}: {} cannot tell new messages without reading them; {count} on the server, \
                 some may have been fetched before",
                account.name,
                account.protocol.name().to_uppercase()
            ));
        }
        return Ok(());
    }
    let seen = read_seen(account, state_dir)?;
    let mut peek = Peek::list(source, seen, opened.warnings, (account, state_dir))?;
    report.warnings.extend(peek.warnings.iter().cloned());
    report.total += peek.listing.len() as u64;
    report.total_bytes += peek.listing.iter().map(|e| e.size).sum::<u64>();
    let uidl_check = peek.require_uidl(account);
    // New is what the next sync would download: a message over max_size
    // stays on the server and would otherwise be "new" forever.
    let mut plan = plan::plan(
        &peek.listing,
        &peek.seen,
        Policy {
            max_size: account.max_size,
            ..Policy::keep_new()
        },
    );
    // What sync leaves alone this time (IMAP's fetch = "unseen") is not new.
    let held_back = peek.source.held_back();
    if more {
        *carried = Some(peek.source);
    } else {
        peek.close();
    }
    let held_back: std::collections::HashSet<u32> = held_back?.into_iter().collect();
    plan.fetch.retain(|f| !held_back.contains(&f.handle));
    uidl_check?;
    report.new += plan.fetch.len() as u64;
    report.new_bytes += plan.fetch_bytes();
    let too_large = plan
        .skip
        .iter()
        .filter(|(_, r)| matches!(r, SkipReason::TooLarge(_)))
        .count();
    let unusable = plan.skip.len() - too_large;
    if too_large > 0 {
        report.warnings.push(format!(
            "{}: {too_large} message(s) larger than max_size stay on the server and are not counted",
            account.name
        ));
    }
    if unusable > 0 {
        report.warnings.push(format!(
            "{}: {unusable} message(s) have no usable UIDL; sync leaves them on the server (see `popfetch list {}`)",
            account.name, account.name
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// list

/// One line of `list`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListEntry {
    pub number: u32,
    pub size: u64,
    pub uidl: Option<String>,
    pub seen: bool,
}

/// The mailbox as the server lists it, each message marked seen or new.
pub fn list_account(
    account: &Account,
    state_dir: &Path,
    opts: &ConnectOptions,
) -> Result<(Vec<ListEntry>, Vec<String>)> {
    let peek = Peek::open(account, state_dir, opts)?;
    let entries = peek
        .listing
        .iter()
        .map(|e| ListEntry {
            number: e.handle,
            size: e.size,
            uidl: e.id.clone(),
            seen: peek.is_seen(e),
        })
        .collect();
    let warnings = peek.warnings.clone();
    peek.close();
    Ok((entries, warnings))
}

/// `list`'s text. Piped (`terminal` false): one line per message, number,
/// size in octets, UIDL (`-` if none), state, and nothing else, for
/// scripts. On a terminal: a header row, and sizes in the units every
/// other size is shown in.
pub fn list_table(entries: &[ListEntry], terminal: bool) -> Vec<String> {
    let width = |f: &dyn Fn(&ListEntry) -> usize| entries.iter().map(f).max().unwrap_or(1);
    let nw = width(&|e| e.number.to_string().len());
    if !terminal || entries.is_empty() {
        let sw = width(&|e| e.size.to_string().len());
        return entries.iter().map(|e| list_line(e, nw, sw)).collect();
    }
    let nw = nw.max(1);
    let sw = width(&|e| human_bytes(e.size).len()).max("SIZE".len());
    let uw = width(&|e| e.uidl.as_deref().map_or(1, term::width)).max("UIDL".len());
    let mut lines = vec![format!(
        "{:>nw$}  {:>sw$}  {:<uw$}  STATE",
        "#", "SIZE", "UIDL"
    )];
    lines.extend(entries.iter().map(|e| {
        format!(
            "{:>nw$}  {:>sw$}  {:<uw$}  {}",
            e.number,
            human_bytes(e.size),
            term::escape_controls(e.uidl.as_deref().unwrap_or("-")),
            if e.seen { "seen" } else { "new" },
        )
    }));
    lines
}

/// `list`'s text line: number, size in octets, UIDL (`-` if none), state.
pub fn list_line(e: &ListEntry, number_width: usize, size_width: usize) -> String {
    format!(
        "{:>nw$} {:>sw$} {} {}",
        e.number,
        e.size,
        e.uidl.as_deref().unwrap_or("-"),
        if e.seen { "seen" } else { "new" },
        nw = number_width,
        sw = size_width,
    )
}

// ---------------------------------------------------------------------------
// top: the summary table

/// What `top` shows of one message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub number: u32,
    pub size: u64,
    /// The key `list` and `sync` know it by; `None` without UIDL.
    pub uidl: Option<String>,
    pub seen: bool,
    /// Unix time from the Date header, if it parses.
    pub date: Option<i64>,
    /// Display name, else address; decoded, one line.
    pub from: String,
    /// Decoded, one line.
    pub subject: String,
}

/// Summarises the header block of a message (RFC 2047 words decoded,
/// control characters removed).
pub fn summarize(header: &[u8]) -> (Option<i64>, String, String) {
    let headers = match mailparse::parse_headers(header) {
        Ok((h, _)) => h,
        Err(_) => return (None, String::new(), String::new()),
    };
    let find = |name: &str| {
        headers
            .iter()
            .find(|h| h.get_key_ref().eq_ignore_ascii_case(name))
    };
    // mailparse reads a Date it cannot make sense of as 0 (1970) rather
    // than failing: that is "no date" (a true 1970 date is no mail of ours).
    let date = find("Date")
        .and_then(|h| mailparse::dateparse(&h.get_value()).ok())
        .filter(|&secs| secs != 0);
    let subject = find("Subject")
        .map(|h| term::one_line(&h.get_value()))
        .unwrap_or_default();
    let from = find("From").map(sender_name).unwrap_or_default();
    (date, from, subject)
}

/// The display name of the first sender, else its address, else the raw
/// decoded header.
fn sender_name(h: &mailparse::MailHeader) -> String {
    use mailparse::MailAddr;
    let fallback = || term::one_line(&h.get_value());
    let Ok(list) = mailparse::addrparse_header(h) else {
        return fallback();
    };
    let name = match list.iter().next() {
        Some(MailAddr::Single(info)) => info
            .display_name
            .clone()
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| info.addr.clone()),
        Some(MailAddr::Group(group)) => group.group_name.clone(),
        None => return fallback(),
    };
    let name = term::one_line(&name);
    if name.is_empty() {
        fallback()
    } else {
        name
    }
}

/// Fetches the header block of each listed message with `TOP n 0`
/// (pipelined when the server allows) and summarises it.
pub fn summaries(peek: &mut Peek, only_new: bool) -> Result<Vec<Summary>> {
    let mut rows: Vec<Summary> = peek
        .listing
        .iter()
        .filter(|e| !only_new || !peek.is_seen(e))
        .map(|e| Summary {
            number: e.handle,
            size: e.size,
            uidl: e.id.clone(),
            seen: peek.is_seen(e),
            ..Summary::default()
        })
        .collect();
    let numbers: Vec<u32> = rows.iter().map(|r| r.number).collect();
    let mut buf = Vec::new();
    peek.source.top(&numbers, 0, &mut |i, reply| {
        match reply {
            Fetched::Body(body) => {
                buf.clear();
                let mut chunk = [0u8; 16 * 1024];
                loop {
                    // A read error is the network's; top_many reports it.
                    let n = body.read(&mut chunk).map_err(|e| {
                        Error::with_source(ExitKind::TempFail, "reading a header", e)
                    })?;
                    if n == 0 {
                        break;
                    }
                    let room = HEADER_CAP.saturating_sub(buf.len());
                    buf.extend_from_slice(&chunk[..n.min(room)]);
                }
                let (date, from, subject) = summarize(&buf);
                rows[i].date = date;
                rows[i].from = from;
                rows[i].subject = subject;
            }
            Fetched::Refused(reason) => {
                rows[i].subject = term::one_line(&format!("(the server refused TOP: {reason})"));
            }
        }
        Ok(())
    })?;
    Ok(rows)
}

/// Lays the summaries out as a table in SPEC order: number, size, date,
/// from, subject, new/seen. On a terminal (`width` known) the sender and
/// subject are cut and padded so every line fits and new/seen stays in
/// its column; piped, the subject is whole and new/seen is the last word.
pub fn summary_table(rows: &[Summary], width: Option<usize>, now: i64) -> Vec<String> {
    const FROM_MAX: usize = 22;
    const FROM_MIN: usize = 8;
    const SUBJECT_MIN: usize = 12;
    let nw = rows
        .iter()
        .map(|r| r.number.to_string().len())
        .max()
        .unwrap_or(1);
    let mut fw = rows
        .iter()
        .map(|r| term::width(&r.from))
        .max()
        .unwrap_or(0)
        .clamp(FROM_MIN.min(FROM_MAX), FROM_MAX);
    let sw = rows
        .iter()
        .map(|r| human_bytes(r.size).len())
        .max()
        .unwrap_or(1);
    // number, size, date, state and the gaps between the six columns.
    let fixed = nw + 2 + sw + 2 + 12 + 2 + 2 + 4;
    let subject_room = width.map(|w| {
        let left = w.saturating_sub(fixed + fw + 2);
        if left < SUBJECT_MIN {
            let shrink = (SUBJECT_MIN - left).min(fw - FROM_MIN);
            fw -= shrink;
        }
        w.saturating_sub(fixed + fw + 2)
    });
    rows.iter()
        .map(|r| {
            let date = r
                .date
                .map(|d| term::compact_date(d, now))
                .unwrap_or_default();
            let from = match width {
                Some(_) => term::fit(&r.from, fw),
                None => format!("{:<fw$}", r.from),
            };
            let subject = match subject_room {
                Some(room) => term::fit(&r.subject, room),
                None => r.subject.clone(),
            };
            let line = format!(
                "{:>nw$}  {:>sw$}  {:<12}  {}  {}  {}",
                r.number,
                human_bytes(r.size),
                date,
                from,
                subject,
                if r.seen { "seen" } else { "new" },
            );
            let line = line.trim_end().to_string();
            match width {
                Some(w) => term::cut(&line, w),
                None => line,
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------
// top MSG: the start of one message

/// Finds the messages the user named: a number is a message number; any
/// other word (or a number that is not a message number) is a UIDL.
pub fn resolve(listing: &[Entry], wanted: &[String], host: &str) -> Result<Vec<u32>> {
    wanted
        .iter()
        .map(|w| {
            if let Ok(n) = w.parse::<u32>() {
                if listing.iter().any(|e| e.handle == n) {
                    return Ok(n);
                }
            }
            let by_uidl: Vec<u32> = listing
                .iter()
                .filter(|e| e.id.as_deref() == Some(w.as_str()))
                .map(|e| e.handle)
                .collect();
            match by_uidl.as_slice() {
                [n] => Ok(*n),
                [] => Err(Error::new(
                    ExitKind::Usage,
                    format!(
                        "{host} has no message {w:?} (there are {} messages; give a number or a UIDL from `popfetch list`)",
                        listing.len()
                    ),
                )),
                _ => Err(Error::new(
                    ExitKind::Usage,
                    format!("{host} gives the UIDL {w:?} to several messages; name one by number"),
                )),
            }
        })
        .collect()
}

/// Longest line `top MSG` prints; the rest of a longer line is read and
/// dropped, and the line ends in `…`. Far above RFC 5322's 998, so real
/// mail shows whole; a server sending one endless line cannot fill memory
/// or the terminal.
const TOP_LINE_CAP: usize = 16 * 1024;

/// Most header-block bytes `top MSG` prints (the same bound the summary
/// table keeps); a header block that never ends is cut there.
const TOP_HEADER_CAP: usize = HEADER_CAP;

/// Copies a TOP reply to `out`: the header block, the empty line after
/// it, then at most `lines` body lines (a server that sends more is cut
/// short). Line ends are LF, and the last line always ends in one. Memory
/// and output are bounded whatever the server sends: lines longer than
/// [`TOP_LINE_CAP`] are cut, and so is a header block longer than
/// [`TOP_HEADER_CAP`] (the rest of the reply is then skipped).
pub fn copy_top(body: &mut dyn Read, lines: u32, out: &mut dyn Write) -> std::io::Result<()> {
    let mut reader = BufReader::new(body);
    let mut line = Vec::new();
    let mut in_body = false;
    let mut body_lines = 0u32;
    let mut header_bytes = 0usize;
    loop {
        if in_body && body_lines >= lines {
            return Ok(());
        }
        if !in_body && header_bytes >= TOP_HEADER_CAP {
            out.write_all(
                format!("… (header block cut at {} KiB)\n", TOP_HEADER_CAP / 1024).as_bytes(),
            )?;
            return Ok(());
        }
        line.clear();
        let cut = read_capped_line(&mut reader, &mut line, TOP_LINE_CAP)?;
        if line.is_empty() {
            return Ok(());
        }
        if cut {
            line.extend_from_slice("…\n".as_bytes());
        } else if !line.ends_with(b"\n") {
            line.push(b'\n');
        }
        out.write_all(&line)?;
        if in_body {
            body_lines += 1;
        } else if line == b"\n" {
            in_body = true;
        } else {
            header_bytes += line.len();
        }
    }
}

/// Reads one line (with its LF) into `line`, keeping at most `cap` bytes;
/// the rest of a longer line is read and dropped. Returns whether the line
/// was cut. An empty `line` means the end of the input.
fn read_capped_line(
    reader: &mut impl BufRead,
    line: &mut Vec<u8>,
    cap: usize,
) -> std::io::Result<bool> {
    let mut cut = false;
    loop {
        let avail = reader.fill_buf()?;
        if avail.is_empty() {
            return Ok(cut);
        }
        let (take, end) = match memchr::memchr(b'\n', avail) {
            Some(i) => (i + 1, true),
            None => (avail.len(), false),
        };
        let room = cap.saturating_sub(line.len());
        if take > room {
            cut = true;
        }
        line.extend_from_slice(&avail[..take.min(room)]);
        reader.consume(take);
        if end {
            return Ok(cut);
        }
    }
}

/// Prints the start of each named message on stdout: the header block
/// and `lines` body lines. With several messages, each is introduced by a
/// `==> N UIDL <==` line, as `head` does.
pub fn print_messages(
    peek: &mut Peek,
    numbers: &[u32],
    lines: u32,
    out: &mut dyn Write,
) -> Result<()> {
    let host = peek.source.host().to_string();
    let uidl_of = peek.uidl_by_number();
    let several = numbers.len() > 1;
    let stdout_error = |e: std::io::Error| Error::with_source(ExitKind::Io, "writing to stdout", e);
    peek.source.top(numbers, lines, &mut |i, reply| {
        let n = numbers[i];
        match reply {
            Fetched::Body(body) => {
                if several {
                    if i > 0 {
                        writeln!(out).map_err(stdout_error)?;
                    }
                    let uidl = uidl_of.get(&n).map(String::as_str).unwrap_or("-");
                    writeln!(out, "==> {n} {uidl} <==").map_err(stdout_error)?;
                }
                copy_top(body, lines, out).map_err(|e| {
                    // A network error is reported by top_many itself.
                    Error::with_source(ExitKind::Io, "writing to stdout", e)
                })?;
                out.flush().map_err(stdout_error)?;
                Ok(())
            }
            Fetched::Refused(reason) => Err(top_refused(&host, n, lines, &reason)),
        }
    })?;
    Ok(())
}

fn top_refused(host: &str, n: u32, lines: u32, reason: &str) -> Error {
    Error::new(
        ExitKind::Protocol,
        format!(
            "{host} refused TOP {n} {lines}: {reason} (TOP is optional in POP3; this server may not offer it)"
        ),
    )
}

/// `top --json` without MSG: one record per summary.
pub fn summary_json(r: &Summary) -> serde_json::Value {
    serde_json::json!({
        "number": r.number,
        "size": r.size,
        "uidl": r.uidl,
        "date": r.date,
        "from": r.from,
        "subject": r.subject,
        "seen": r.seen,
    })
}

/// `top --json MSG...`: one record per message, its header block and its
/// first `lines` body lines as text (LF line ends, the same bounds as the
/// text form; bytes that are not UTF-8 become U+FFFD).
pub fn message_records(
    peek: &mut Peek,
    numbers: &[u32],
    lines: u32,
) -> Result<Vec<serde_json::Value>> {
    let host = peek.source.host().to_string();
    let uidl_of = peek.uidl_by_number();
    let mut records = Vec::new();
    peek.source.top(numbers, lines, &mut |i, reply| {
        let n = numbers[i];
        match reply {
            Fetched::Body(body) => {
                let mut text = Vec::new();
                copy_top(body, lines, &mut text)
                    .map_err(|e| Error::with_source(ExitKind::TempFail, "reading a message", e))?;
                let text = String::from_utf8_lossy(&text);
                // The empty line between them belongs to neither.
                let (header, body) = match text.find("\n\n") {
                    Some(at) => (&text[..at + 1], &text[at + 2..]),
                    None => (&text[..], ""),
                };
                records.push(serde_json::json!({
                    "number": n,
                    "uidl": uidl_of.get(&n),
                    "header": header,
                    "body": body,
                }));
                Ok(())
            }
            Fetched::Refused(reason) => Err(top_refused(&host, n, lines, &reason)),
        }
    })?;
    Ok(records)
}

/// Now, for the relative dates of the table.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc2047_subjects_and_senders_are_decoded() {
        let header = b"From: =?ISO-8859-1?Q?Andr=E9_Pirard?= <pirard@example.org>\r\n\
Subject: =?UTF-8?B?w4Bsb3JzIMOnYSB2YQ==?= =?iso-8859-1?q?_d=E9j=E0?=\r\n\
Date: Tue, 14 May 2024 09:12:00 +0000\r\n\r\n";
        let (date, from, subject) = summarize(header);
        assert_eq!(from, "André Pirard");
        assert_eq!(subject, "Àlors ça va déjà");
        assert_eq!(date, Some(1_715_677_920));
    }

    #[test]
    fn sender_falls_back_to_address_and_defuses_escapes() {
        let (_, from, subject) = summarize(b"From: bob@example.org\nSubject: hi\x1b[2J there\n\n");
        assert_eq!(from, "bob@example.org");
        assert_eq!(subject, "hi [2J there");
        let (date, from, subject) = summarize(b"\n");
        assert_eq!((date, from.as_str(), subject.as_str()), (None, "", ""));
    }

    /// A Date header that does not parse is no date (JSON null), not 1970.
    #[test]
    fn an_unparsable_date_is_none() {
        let (date, _, _) = summarize(b"Date: bogus\nSubject: x\n\n");
        assert_eq!(date, None);
    }

    #[test]
    fn top_copy_stops_after_n_body_lines() {
        let msg = b"A: 1\nB: 2\n\nl1\nl2\nl3\nl4\n";
        let mut out = Vec::new();
        copy_top(&mut &msg[..], 2, &mut out).unwrap();
        assert_eq!(out, b"A: 1\nB: 2\n\nl1\nl2\n");
        out.clear();
        copy_top(&mut &msg[..], 0, &mut out).unwrap();
        assert_eq!(out, b"A: 1\nB: 2\n\n");
        out.clear();
        copy_top(&mut &b"A: 1\n\nno newline"[..], 5, &mut out).unwrap();
        assert_eq!(out, b"A: 1\n\nno newline\n");
    }

    #[test]
    fn top_copy_is_bounded_whatever_the_server_sends() {
        // One endless header line: cut, never held whole.
        let mut msg = b"Subject: ".to_vec();
        msg.extend(std::iter::repeat_n(b'x', 10 * TOP_LINE_CAP));
        msg.extend_from_slice(b"\nB: 2\n\nbody\n");
        let mut out = Vec::new();
        copy_top(&mut &msg[..], 1, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let first = text.lines().next().unwrap();
        assert!(
            first.len() <= TOP_LINE_CAP + 4 && first.ends_with('…'),
            "{}",
            first.len()
        );
        assert!(text.ends_with("\nB: 2\n\nbody\n"), "the rest follows");
        // A header block that never ends is cut at the cap.
        let mut msg = Vec::new();
        while msg.len() < 4 * TOP_HEADER_CAP {
            msg.extend_from_slice(b"X-Header: filler filler filler\n");
        }
        let mut out = Vec::new();
        copy_top(&mut &msg[..], 0, &mut out).unwrap();
        assert!(out.len() < TOP_HEADER_CAP + 1024, "{}", out.len());
        assert!(String::from_utf8(out).unwrap().ends_with("KiB)\n"));
    }

    #[test]
    fn table_lines_fit_the_width() {
        let rows: Vec<Summary> = (1..=12)
            .map(|n| Summary {
                number: n,
                size: 1234 * n as u64,
                uidl: None,
                seen: n % 2 == 0,
                date: Some(1_700_000_000),
                from: "Somebody With A Very Long Display Name".into(),
                subject: "日本語の件名 and a long subject that goes on and on".into(),
            })
            .collect();
        for w in [40, 60, 80, 200] {
            for line in summary_table(&rows, Some(w), 1_700_000_000) {
                assert!(term::width(&line) <= w, "{w}: {line:?}");
            }
        }
        let uncut = summary_table(&rows, None, 1_700_000_000);
        assert!(uncut[0].contains("goes on and on"));
        assert!(uncut[0].starts_with(" 1   1.2 KiB  "), "{:?}", uncut[0]);
        assert!(uncut[0].ends_with("goes on and on  new"), "{:?}", uncut[0]);
        for line in summary_table(&rows, Some(80), 1_700_000_000) {
            let state = line.split_whitespace().last().unwrap();
            assert!(state == "new" || state == "seen", "{line:?}");
        }
    }

    #[test]
    fn numbers_win_over_numeric_uidls() {
        let listing = vec![
            Entry {
                handle: 1,
                size: 1,
                id: Some("7".into()),
            },
            Entry {
                handle: 2,
                size: 1,
                id: Some("abc".into()),
            },
        ];
        let w = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            resolve(&listing, &w(&["2", "abc", "7"]), "h").unwrap(),
            vec![2, 2, 1]
        );
        assert_eq!(
            resolve(&listing, &w(&["9"]), "h").unwrap_err().kind(),
            ExitKind::Usage
        );
    }
}
