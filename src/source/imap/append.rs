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

impl<S: Transport> Session<S> {
    /// Appends `size` bytes read from `body` (already with CRLF line ends)
    /// to `folder`, without flags (the message shows as unread), with
    /// `date` (IMAP `date-time`) as its internal date when given. With
    /// LITERAL+ (or LITERAL- for small ones) the literal goes without
    /// waiting for the server's `+`.
    pub fn append(
        &mut self,
        folder: &str,
        date: Option<&str>,
        size: u64,
        body: &mut dyn Read,
    ) -> Result<Option<AppendUid>> {
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
        let conn = &mut self.conn;
        let tag = conn.tag();
        let plus = conn.literal_plus || (conn.literal_minus && size <= 4096);
        let date = date.map(|d| format!(" \"{d}\"")).unwrap_or_default();
        let marker = if plus { "+" } else { "" };
        let line = format!("{tag} APPEND {name}{date} {{{size}{marker}}}\r\n");
        if let Some(label) = &conn.trace {
            eprintln!("{label} > {}", line.trim_end());
        }
        conn.out.extend_from_slice(line.as_bytes());
        conn.flush(&what)?;
        if !plus {
            loop {
                match conn.head(&what)? {
                    Head::Continue(_) => break,
                    Head::Tagged(t, status) if t == tag => {
                        return Err(refused(&conn.host, &what, Phase::Transaction, &status))
                    }
                    Head::Tagged(t, _) => {
                        return Err(conn.protocol(&what, format!("a reply tagged {t}")))
                    }
                    other => {
                        if !conn.common_untagged(&other, &what)? {
                            conn.skip_response(&what)?;
                        }
                    }
                }
            }
        }
        let stream = conn.reader.get_mut();
        let sent = io::copy(&mut body.take(size), stream);
        let sent = match sent {
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
        conn.out.extend_from_slice(b"\r\n");
        conn.flush(&what)?;
        let status = conn.finish(&tag, &what, &mut |_, _| Ok(false))?;
        if status.kind != StatusKind::Ok {
            return Err(refused(&conn.host, &what, Phase::Transaction, &status));
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
}
