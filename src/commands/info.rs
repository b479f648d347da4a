//! `popfetch info ACCOUNT`: what the server offers, before trusting it —
//! the greeting, CAPA, the TLS version and cipher, and the certificate
//! chain with SHA-256 fingerprints (what `tls_fingerprint` pins). Like
//! mpop's `--serverinfo`. It never logs in and never sends a secret, so it
//! may complete a TLS handshake with a certificate that is not trusted, to
//! show it; the verdict is printed too.

use sha2::{Digest, Sha256};

use crate::config::{Account, Target};
use crate::error::{Error, Result};
use crate::net;
use crate::source::connect::{self, ConnectOptions};
use crate::source::Probe;
use crate::target::lmtp::Wired;
use crate::ui::term;

/// What the probe found.
#[derive(Debug)]
pub struct ServerInfo {
    pub greeting: String,
    /// CAPA before login (`None`: the server has no CAPA).
    pub capabilities: Option<Vec<String>>,
    pub tls: Option<String>,
    /// Leaf first.
    pub chain: Vec<CertInfo>,
    /// `Ok` when the chain (or the pin) would be trusted; why not otherwise.
    pub trusted: Option<std::result::Result<(), String>>,
    /// The key that pins this server's certificate.
    pub pin_key: &'static str,
    /// The target, when it is a server (LMTP, SMTP, IMAP): probed the
    /// same way, without a login.
    pub target: Option<TargetInfo>,
}

/// What the probe of the target found, or why it could not.
#[derive(Debug)]
pub struct TargetInfo {
    /// `lmtp unix:/run/dovecot/lmtp`, `imap_target gmail (imaps://…)`.
    pub title: String,
    pub result: std::result::Result<Box<ServerInfo>, Error>,
}

#[derive(Debug)]
pub struct CertInfo {
    pub subject: String,
    pub issuer: String,
    pub fingerprint: String,
}

/// Probes the server (no login, no secret sent) and describes what it
/// showed; then the target the same way, when it is a server.
pub fn probe(account: &Account, opts: &ConnectOptions) -> Result<ServerInfo> {
    let probe = crate::source::probe(account, opts)?;
    let mut info = describe(probe, "tls_fingerprint");
    info.target = probe_target(account, opts);
    Ok(info)
}

/// The target's probe: LHLO/EHLO (after STARTTLS where a delivery would
/// use it) or the IMAP greeting and CAPABILITY; `None` for a Maildir, an
/// mbox or an MDA.
fn probe_target(account: &Account, opts: &ConnectOptions) -> Option<TargetInfo> {
    let (result, pin_key) = match &account.target {
        Target::Lmtp(w) => (
            Wired::prober(w, true, account, opts).probe(),
            "smtp_tls_fingerprint",
        ),
        Target::Smtp(w) => (
            Wired::prober(w, false, account, opts).probe(),
            "smtp_tls_fingerprint",
        ),
        Target::Imap(t) => {
            let label = format!("{} target {}", account.name, t.name);
            let conn = t.connection(&label, account.command_timeout);
            (connect::probe_imap(&conn, opts), "tls_fingerprint")
        }
        Target::Maildir(_) | Target::Mbox(_) | Target::Mda(_) => return None,
    };
    Some(TargetInfo {
        title: account.target.describe(),
        result: result.map(|p| Box::new(describe(p, pin_key))),
    })
}

fn describe(probe: Probe, pin_key: &'static str) -> ServerInfo {
    let chain = probe
        .peer_certificates
        .iter()
        .map(|der| {
            let fp: net::Fingerprint = Sha256::digest(der).into();
            let (subject, issuer) = names(der).unwrap_or_else(|| ("?".into(), "?".into()));
            CertInfo {
                subject: term::escape_controls(&subject),
                issuer: term::escape_controls(&issuer),
                fingerprint: net::format_fingerprint(&fp),
            }
        })
        .collect();
    // The greeting and the certificate's names come from the server: their
    // control characters are escaped as they are captured (CAPA already
    // was, by the client), so a hostile server's escape sequences never
    // reach the terminal.
    ServerInfo {
        greeting: term::escape_controls(&probe.greeting),
        capabilities: probe.capabilities,
        tls: probe.tls,
        chain,
        trusted: probe.trusted,
        pin_key,
        target: None,
    }
}

impl TargetInfo {
    /// `ACCOUNT delivers to …`, then what its probe found.
    fn lines(&self, account: &Account) -> Vec<String> {
        let mut out = vec![format!("{} delivers to {}", account.name, self.title)];
        match &self.result {
            Ok(info) => out.extend(info.lines()),
            Err(e) => out.push(format!(
                "  error         {}",
                term::escape_controls(&e.to_string())
            )),
        }
        out
    }
}

/// The target's probe alone, for when the source's failed: one `info`
/// run then shows what is wrong on both sides. `None` when the target is
/// not a server.
pub fn target_report(account: &Account, opts: &ConnectOptions) -> Option<String> {
    probe_target(account, opts).map(|t| t.lines(account).join("\n"))
}

impl ServerInfo {
    /// The exit code: 0, or the target's probe's failure.
    pub fn code(&self) -> u8 {
        match &self.target {
            Some(TargetInfo { result: Err(e), .. }) => e.kind().code(),
            _ => 0,
        }
    }

    pub fn render(&self, account: &Account) -> String {
        let mut out = vec![format!(
            "{} ({}:{})",
            account.name, account.host, account.port
        )];
        out.extend(self.lines());
        if let Some(target) = &self.target {
            out.extend(target.lines(account));
        }
        out.join("\n")
    }

    /// Greeting, TLS, certificates, capabilities: one server's lines.
    fn lines(&self) -> Vec<String> {
        let mut out = vec![format!("  greeting      {}", self.greeting)];
        match &self.tls {
            Some(t) => out.push(format!("  TLS           {t}")),
            None => out.push("  TLS           none (plain text)".to_string()),
        }
        for (i, c) in self.chain.iter().enumerate() {
            let role = if i == 0 { "certificate" } else { "issued by" };
            out.push(format!("  {role:<13} {}", c.subject));
            out.push(format!("                issuer {}", c.issuer));
            out.push(format!("                {}", c.fingerprint));
        }
        match &self.trusted {
            Some(Ok(())) => out.push("  trusted       yes".to_string()),
            Some(Err(why)) => {
                out.push(format!("  trusted       NO: {why}"));
                if let Some(leaf) = self.chain.first() {
                    out.push(format!(
                        "                after checking it out of band, pin it with: {} = \"{}\"",
                        self.pin_key, leaf.fingerprint
                    ));
                }
            }
            None => {}
        }
        match &self.capabilities {
            Some(caps) => out.push(format!("  capabilities  {}", caps.join(", "))),
            None => out.push("  capabilities  (the server has no CAPA)".to_string()),
        }
        out
    }
}

/// Subject and issuer common names (or the whole name) of a DER
/// certificate. A small reader, enough for display.
fn names(der: &[u8]) -> Option<(String, String)> {
    let (cert, _) = der_item(der, 0x30)?;
    let (tbs, _) = der_item(cert, 0x30)?;
    let mut rest = tbs;
    // Optional [0] version.
    if rest.first() == Some(&0xa0) {
        rest = der_skip(rest)?;
    }
    rest = der_skip(rest)?; // serial
    rest = der_skip(rest)?; // signature algorithm
    let (issuer, after) = der_item(rest, 0x30)?;
    let after = der_skip(after)?; // validity
    let (subject, _) = der_item(after, 0x30)?;
    Some((name_text(subject), name_text(issuer)))
}

fn name_text(mut name: &[u8]) -> String {
    const CN: &[u8] = &[0x55, 0x04, 0x03];
    const O: &[u8] = &[0x55, 0x04, 0x0a];
    let mut cn = None;
    let mut org = None;
    while let Some((set, rest)) = der_item(name, 0x31) {
        name = rest;
        let Some((atv, _)) = der_item(set, 0x30) else {
            continue;
        };
        let Some((oid, value)) = der_item(atv, 0x06) else {
            continue;
        };
        let Some((tag, text, _)) = der_any(value) else {
            continue;
        };
        if !matches!(tag, 0x0c | 0x13 | 0x16 | 0x14) {
            continue;
        }
        let text = String::from_utf8_lossy(text).into_owned();
        if oid == CN {
            cn = Some(text);
        } else if oid == O {
            org = Some(text);
        }
    }
    match (cn, org) {
        (Some(cn), _) => format!("CN={cn}"),
        (None, Some(o)) => format!("O={o}"),
        (None, None) => "(no common name)".to_string(),
    }
}

/// One TLV: (tag, contents, rest).
fn der_any(data: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *data.first()?;
    let first = *data.get(1)? as usize;
    let (len, header) = if first < 0x80 {
        (first, 2)
    } else {
        let n = first & 0x7f;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *data.get(2 + i)? as usize;
        }
        (len, 2 + n)
    };
    let end = header.checked_add(len)?;
    Some((tag, data.get(header..end)?, &data[end..]))
}

fn der_item(data: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (t, body, rest) = der_any(data)?;
    (t == tag).then_some((body, rest))
}

fn der_skip(data: &[u8]) -> Option<&[u8]> {
    der_any(data).map(|(_, _, rest)| rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_reader_is_bounded() {
        assert!(
            der_any(&[0x30, 0x05, 0x01]).is_none(),
            "length past the end"
        );
        assert!(der_any(&[0x30, 0x89]).is_none());
        assert!(names(&[0x30, 0x00]).is_none());
        assert_eq!(
            der_any(&[0x04, 0x01, 0xaa, 0x05]),
            Some((0x04, &[0xaa][..], &[0x05][..]))
        );
    }
}
