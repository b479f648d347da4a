//! APPEND (RFC 3501 §6.3.11) for the IMAP target: a message streamed as
//! one literal, its size known beforehand, with UIDPLUS's APPENDUID
//! (RFC 4315) when the server gives it; and the look-up that tells, after
//! a crash, whether an append reached the folder.

use std::io::{self, Read};

use super::codec::{self, Code, Encoded, Head};
use super::{check_arg, refused, Phase, Session, StatusKind};
use crate::error::{ExitKind, Result};
use crate::net::Transport;

/// Where an appended message went, when the server says (APPENDUID).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendUid {
    pub uidvalidity: u32,
    pub uid: u32,
}

/// One message for [`Session::append_all`]: `size` bytes from `body`,
/// CRLF line ends already, and its internal date (IMAP `date-time`).
pub struct Appending<'a> {
    pub date: Option<&'a str>,
    pub size: u64,
    pub body: &'a mut dyn Read,
}

impl<S: Transport> Session<S> {
    /// Appends every message of `batch` to `folder`: `size` bytes read
    /// from its `body` (already with CRLF line ends), without flags (the
    /// message shows as unread), with its `date` (IMAP `date-time`) as
    /// internal date when given. Returns APPENDUID's answer per message.
    ///
    /// With LITERAL+ (RFC 7888) the commands are pipelined: all are sent,
    /// then the replies are read, so a batch costs one round trip instead
    /// of one per message; without it, each literal waits for the server's
    /// `+` (LITERAL- spares that for small ones). Every reply is read even
    /// after a refusal (the session stays in step); the first refusal is
    /// returned.
    pub fn append_all(
        &mut self,
        folder: &str,
        batch: &mut [Appending],
    ) -> Result<Vec<Option<AppendUid>>> {
        check_arg("the target folder", folder)?;
        let what = format!("APPEND to {folder:?}");
        let name = match codec::astring(codec::mailbox_name(folder).as_bytes()) {
            Encoded::Inline(t) => t,
            Encoded::Literal(_) => {
                return Err(crate::error::Error::config(format!(
                    "the target folder {folder:?} cannot be named on an IMAP command line"
                )))
            }
        };
        if self.conn.literal_plus && batch.len() > 1 && self.capabilities().has("MULTIAPPEND") {
            return self.multiappend(&name, batch, &what);
        }
        if !self.conn.literal_plus {
            let mut out = Vec::with_capacity(batch.len());
            for m in batch.iter_mut() {
                let tag = self.send_append(&name, m, &what)?;
                out.push(self.append_reply(&tag, &what)?);
            }
            return Ok(out);
        }
        let mut tags = Vec::with_capacity(batch.len());
        for m in batch.iter_mut() {
            tags.push(self.send_append(&name, m, &what)?);
        }
        let mut out = Vec::with_capacity(batch.len());
        let mut first_error = None;
        for tag in &tags {
            match self.append_reply(tag, &what) {
                Ok(uid) => out.push(uid),
                Err(e) if e.server_reply().is_some() => {
                    out.push(None);
                    first_error.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// The whole batch in one APPEND (MULTIAPPEND, RFC 3502), literals
    /// non-synchronizing (LITERAL+): the server stores all of them in one
    /// transaction, or none (a refusal then leaves nothing behind), where
    /// one APPEND each is a transaction each, with its own flushes to
    /// disk. APPENDUID's set gives each message its UID, in order.
    fn multiappend(
        &mut self,
        name: &str,
        batch: &mut [Appending],
        what: &str,
    ) -> Result<Vec<Option<AppendUid>>> {
        let tag = self.conn.tag();
        let mut head = format!("{tag} APPEND {name}");
        for m in batch.iter_mut() {
            let date = m.date.map(|d| format!(" \"{d}\"")).unwrap_or_default();
            head.push_str(&format!("{date} {{{}+}}\r\n", m.size));
            self.send_literal(&head, m, what)?;
            head.clear();
        }
        let conn = &mut self.conn;
        conn.out.extend_from_slice(b"\r\n");
        conn.flush(what)?;
        let status = conn.finish(&tag, what, &mut |_, _| Ok(false))?;
        if status.kind != StatusKind::Ok {
            return Err(refused(&conn.host, what, Phase::Transaction, &status));
        }
        let uids = match &status.code {
            Some(Code::Other(c)) => parse_multi_appenduid(c, batch.len()),
            _ => None,
        };
        Ok(match uids {
            Some((uidvalidity, uids)) => uids
                .into_iter()
                .map(|uid| Some(AppendUid { uidvalidity, uid }))
                .collect(),
            None => vec![None; batch.len()],
        })
    }

    /// Writes `line` (the command up to a literal's size), then the
    /// literal: `m.size` bytes of `m.body`.
    fn send_literal(&mut self, line: &str, m: &mut Appending, what: &str) -> Result<()> {
        let conn = &mut self.conn;
        if !line.is_empty() {
            if let Some(label) = &conn.trace {
                eprintln!("{label} > {}", line.trim_end());
            }
            conn.out.extend_from_slice(line.as_bytes());
            conn.flush(what)?;
        }
        let size = m.size;
        let stream = conn.reader.get_mut();
        let sent = match io::copy(&mut (&mut m.body).take(size), stream) {
            Ok(n) => n,
            Err(e) => return Err(conn.net_error(&format!("sending {what}"), e)),
        };
        if sent != size {
            // The spool file is ours and was measured: it cannot shrink.
            return Err(crate::error::Error::new(
                ExitKind::Io,
                format!("{what}: the spooled message ended after {sent} of {size} bytes"),
            ));
        }
        if let Some(label) = &conn.trace {
            eprintln!("{label} > ({size} literal bytes)");
        }
        Ok(())
    }

    /// Sends one APPEND with its literal; returns its tag. Without a
    /// non-synchronizing literal, waits for the server's `+` first.
    fn send_append(&mut self, name: &str, m: &mut Appending, what: &str) -> Result<String> {
        let conn = &mut self.conn;
        let size = m.size;
        let tag = conn.tag();
        let plus = conn.literal_plus || (conn.literal_minus && size <= 4096);
        let date = m.date.map(|d| format!(" \"{d}\"")).unwrap_or_default();
        let marker = if plus { "+" } else { "" };
        let line = format!("{tag} APPEND {name}{date} {{{size}{marker}}}\r\n");
        if let Some(label) = &conn.trace {
            eprintln!("{label} > {}", line.trim_end());
        }
        conn.out.extend_from_slice(line.as_bytes());
        conn.flush(what)?;
        if !plus {
            loop {
                match conn.head(what)? {
                    Head::Continue(_) => break,
                    Head::Tagged(t, status) if t == tag => {
                        return Err(refused(&conn.host, what, Phase::Transaction, &status))
                    }
                    Head::Tagged(t, _) => {
                        return Err(conn.protocol(
                            what,
                            format!("a reply tagged {}", codec::printable(t.as_bytes(), 40)),
                        ))
                    }
                    other => {
                        if !conn.common_untagged(&other, what)? {
                            conn.skip_response(what)?;
                        }
                    }
                }
            }
        }
        self.send_literal("", m, what)?;
        let conn = &mut self.conn;
        conn.out.extend_from_slice(b"\r\n");
        conn.flush(what)?;
        Ok(tag)
    }

    /// Reads an APPEND's replies up to its tagged one.
    fn append_reply(&mut self, tag: &str, what: &str) -> Result<Option<AppendUid>> {
        let conn = &mut self.conn;
        let status = conn.finish(tag, what, &mut |_, _| Ok(false))?;
        if status.kind != StatusKind::Ok {
            return Err(refused(&conn.host, what, Phase::Transaction, &status));
        }
        Ok(match &status.code {
            Some(Code::Other(c)) => parse_appenduid(c),
            _ => None,
        })
    }

    /// The UIDs of the selected folder's messages of exactly `size` bytes
    /// whose `header` field contains `value`: how a journaled append is
    /// found after a crash. `None` when `value` cannot be sent as a quoted
    /// string (8-bit or control characters).
    pub fn find(&mut self, header: &str, value: &str, size: u64) -> Result<Option<Vec<u32>>> {
        self.selected("searching")?;
        let Encoded::Inline(quoted) = codec::astring(value.as_bytes()) else {
            return Ok(None);
        };
        if self.conn.exists == 0 {
            return Ok(Some(Vec::new()));
        }
        let criteria = format!(
            "HEADER {header} {quoted} LARGER {} SMALLER {}",
            size.saturating_sub(1),
            size + 1
        );
        self.search(&criteria).map(Some)
    }
}

/// `APPENDUID uidvalidity uid-set` after a MULTIAPPEND of `count`
/// messages: the UIDs in the order of the messages, when the set names
/// exactly that many.
fn parse_multi_appenduid(code: &str, count: usize) -> Option<(u32, Vec<u32>)> {
    let mut words = code.split_ascii_whitespace();
    if !words.next()?.eq_ignore_ascii_case("APPENDUID") {
        return None;
    }
    let uidvalidity = words.next()?.parse().ok()?;
    let uids = codec::parse_set(words.next()?, count + 1)?;
    (uids.len() == count).then_some((uidvalidity, uids))
}

/// `APPENDUID uidvalidity uid`.
fn parse_appenduid(code: &str) -> Option<AppendUid> {
    let mut words = code.split_ascii_whitespace();
    if !words.next()?.eq_ignore_ascii_case("APPENDUID") {
        return None;
    }
    let uidvalidity = words.next()?.parse().ok()?;
    let uid = words.next()?.parse().ok()?;
    Some(AppendUid { uidvalidity, uid })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appenduid_is_read() {
        assert_eq!(
            parse_appenduid("APPENDUID 38505 3955"),
            Some(AppendUid {
                uidvalidity: 38505,
                uid: 3955
            })
        );
        assert_eq!(parse_appenduid("APPENDUID 38505"), None);
        assert_eq!(parse_appenduid("TRYCREATE"), None);
    }

    #[test]
    fn a_multiappends_uid_set_gives_each_message_its_uid() {
        assert_eq!(
            parse_multi_appenduid("APPENDUID 7 10:12,15", 4),
            Some((7, vec![10, 11, 12, 15]))
        );
        // A set of another size names other messages: no UID is trusted.
        assert_eq!(parse_multi_appenduid("APPENDUID 7 10:12", 4), None);
        assert_eq!(parse_multi_appenduid("APPENDUID 7 1:4000000000", 4), None);
        assert_eq!(parse_multi_appenduid("APPENDUID 7", 1), None);
    }
}
