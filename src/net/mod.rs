//! The transport under POP3: a TCP connection with timeouts, optionally
//! wrapped in rustls (implicit TLS, or upgraded in place after STLS).
//!
//! Trust is webpki-roots plus the account's `ca_file`; a `tls_fingerprint`
//! pin replaces chain validation with an exact match on the server
//! certificate, which is what users of self-signed servers want. Whatever
//! fails, the error says how to fix it.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use sha2::{Digest, Sha256};

use crate::error::{Error, ExitKind, Result};

mod socket;
pub use socket::Socket;

/// A SHA-256 certificate fingerprint.
pub type Fingerprint = [u8; 32];

/// Formats a fingerprint the way `tls_fingerprint` takes it.
pub fn format_fingerprint(fp: &Fingerprint) -> String {
    let hex: Vec<String> = fp.iter().map(|b| format!("{b:02X}")).collect();
    format!("sha256:{}", hex.join(":"))
}

/// Parses `sha256:AB:CD:…` (colons optional, case-insensitive).
pub fn parse_fingerprint(s: &str) -> Option<Fingerprint> {
    let hex = s.trim();
    let hex = hex
        .strip_prefix("sha256:")
        .or_else(|| hex.strip_prefix("SHA256:"))
        .unwrap_or(hex);
    let digits: String = hex.chars().filter(|c| *c != ':').collect();
    if digits.len() != 64 {
        return None;
    }
    let mut fp = [0u8; 32];
    for (i, byte) in fp.iter_mut().enumerate() {
        *byte = u8::from_str_radix(digits.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(fp)
}

/// What an account says about trusting its server.
#[derive(Clone, Debug, Default)]
pub struct TlsTrust {
    pub ca_file: Option<PathBuf>,
    pub fingerprints: Vec<Fingerprint>,
}

fn provider() -> Arc<CryptoProvider> {
    // Chosen explicitly: no process-wide default, no aws-lc build.
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Checks the chain (or the pin) and remembers the certificate it was shown,
/// so an error can print the fingerprint to pin.
#[derive(Debug)]
struct Verifier {
    chain: Arc<WebPkiServerVerifier>,
    pins: Vec<Fingerprint>,
    provider: Arc<CryptoProvider>,
    presented: Mutex<Option<Fingerprint>>,
    /// `popfetch info`: record the verdict but let the handshake finish, so
    /// an untrusted certificate can be shown (no secret is ever sent then).
    probe: bool,
    verdict: Mutex<Option<std::result::Result<(), String>>>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let fp: Fingerprint = Sha256::digest(end_entity.as_ref()).into();
        *self.presented.lock().unwrap() = Some(fp);
        let result = if !self.pins.is_empty() {
            if self.pins.contains(&fp) {
                Ok(ServerCertVerified::assertion())
            } else {
                Err(rustls::Error::General(
                    "the certificate changed: it does not match tls_fingerprint".into(),
                ))
            }
        } else {
            self.chain.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            )
        };
        *self.verdict.lock().unwrap() = Some(match &result {
            Ok(_) => Ok(()),
            Err(rustls::Error::InvalidCertificate(reason)) => Err(describe_cert_error(reason)),
            Err(e) => Err(e.to_string()),
        });
        if self.probe {
            return Ok(ServerCertVerified::assertion());
        }
        result
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A ready TLS client configuration for one account.
pub struct TlsContext {
    config: Arc<ClientConfig>,
    verifier: Arc<Verifier>,
    /// The account's name, so advice can name the command to run.
    account: Option<String>,
}

impl TlsContext {
    pub fn new(trust: &TlsTrust) -> Result<TlsContext> {
        TlsContext::build(trust, false)
    }

    /// For `popfetch info` only: completes the handshake whatever the
    /// certificate, recording whether it would have been trusted. Never
    /// use it for a connection that logs in.
    pub fn for_probe(trust: &TlsTrust) -> Result<TlsContext> {
        TlsContext::build(trust, true)
    }

    /// Names the account in advice (`popfetch info ACCOUNT`).
    pub fn for_account(mut self, name: &str) -> TlsContext {
        self.account = Some(name.to_string());
        self
    }

    /// Whether the server's certificate passed (`Err` says why not); `None`
    /// before a handshake.
    pub fn verdict(&self) -> Option<std::result::Result<(), String>> {
        self.verifier.verdict.lock().unwrap().clone()
    }

    fn build(trust: &TlsTrust, probe: bool) -> Result<TlsContext> {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = &trust.ca_file {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect())
                .map_err(|e| {
                    Error::config(format!(
                        "cannot read ca_file {}: {e}; it must be a PEM file with one or more certificates",
                        path.display()
                    ))
                })?;
            if certs.is_empty() {
                return Err(Error::config(format!(
                    "ca_file {} holds no PEM certificate",
                    path.display()
                )));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| {
                    Error::config(format!(
                        "ca_file {}: unusable certificate: {e}",
                        path.display()
                    ))
                })?;
            }
        }
        let provider = provider();
        let chain = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| Error::new(ExitKind::Internal, format!("TLS setup: {e}")))?;
        let verifier = Arc::new(Verifier {
            chain,
            pins: trust.fingerprints.clone(),
            provider: provider.clone(),
            presented: Mutex::new(None),
            probe,
            verdict: Mutex::new(None),
        });
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::new(ExitKind::Internal, format!("TLS setup: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone())
            .with_no_client_auth();
        Ok(TlsContext {
            config: Arc::new(config),
            verifier,
            account: None,
        })
    }

    /// Runs the TLS handshake over `tcp` and returns the encrypted stream,
    /// after `upgrade`'s command (STLS, STARTTLS) was accepted.
    pub fn wrap(&self, tcp: TcpStream, host: &str, upgrade: Upgrade) -> Result<Stream> {
        self.handshake(tcp, host, Expect::Upgrade(upgrade))
    }

    /// Like [`TlsContext::wrap`], on a connection that should speak TLS
    /// from its first byte. A plain-text port greets at once, where a
    /// ServerHello should come; rustls would call that a corrupt message,
    /// so the first bytes of the answer are looked at before rustls reads
    /// them, and a plain-text greeting is refused with what it said and
    /// `plain_fix` (the setting that suits such a port).
    pub fn wrap_implicit(&self, tcp: TcpStream, host: &str, plain_fix: &str) -> Result<Stream> {
        self.handshake(tcp, host, Expect::Implicit(plain_fix))
    }

    fn handshake(&self, tcp: TcpStream, host: &str, expect: Expect) -> Result<Stream> {
        let name = ServerName::try_from(host.to_string())
            .map_err(|_| Error::config(format!("host {host:?} is not a valid TLS server name")))?;
        let conn = ClientConnection::new(self.config.clone(), name)
            .map_err(|e| Error::new(ExitKind::Internal, format!("TLS setup: {e}")))?;
        let mut tls = rustls::StreamOwned::new(conn, Socket::new(tcp));
        if let Expect::Implicit(fix) = expect {
            // Send the ClientHello, then peek (not read) at the answer: a
            // TLS answer is left whole for rustls.
            while tls.conn.wants_write() {
                if let Err(e) = tls.conn.write_tls(&mut tls.sock) {
                    return Err(self.explain_handshake_error(host, e, expect));
                }
            }
            let mut first = [0u8; 128];
            if let Ok(n) = tls.sock.tcp().peek(&mut first) {
                if let Some(said) = plain_text_line(&first[..n]) {
                    let port = tls
                        .sock
                        .tcp()
                        .peer_addr()
                        .map(|a| a.port())
                        .unwrap_or_default();
                    let what = if said.starts_with("+OK") || said.starts_with("-ERR") {
                        "plain POP3"
                    } else {
                        "plain text"
                    };
                    return Err(Error::new(
                        ExitKind::Protocol,
                        format!(
                            "{host} port {port} speaks {what}, not TLS (it greeted with \"{said}\" \
                             where a TLS handshake should be): {fix}"
                        ),
                    ));
                }
            }
        }
        while tls.conn.is_handshaking() {
            if let Err(e) = tls.conn.complete_io(&mut tls.sock) {
                return Err(self.explain_handshake_error(host, e, expect));
            }
        }
        Ok(Stream::Tls(Box::new(tls)))
    }

    fn explain_handshake_error(&self, host: &str, err: io::Error, expect: Expect) -> Error {
        let presented = *self.verifier.presented.lock().unwrap();
        if let Some(fp) = presented {
            let pins = &self.verifier.pins;
            if !pins.is_empty() && !pins.contains(&fp) && !self.verifier.probe {
                return Error::new(
                    ExitKind::NoPerm,
                    pin_changed_advice(host, pins, &fp, self.account.as_deref()),
                );
            }
        }
        let tls_err = err
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>())
            .cloned();
        match tls_err {
            Some(rustls::Error::InvalidCertificate(reason)) if ca_as_leaf(&reason) => {
                Error::new(ExitKind::NoPerm, ca_as_leaf_advice(host, presented))
            }
            Some(rustls::Error::InvalidCertificate(reason)) => Error::new(
                ExitKind::NoPerm,
                cert_advice(host, &describe_cert_error(&reason), presented),
            ),
            Some(rustls::Error::General(msg)) if msg.contains("tls_fingerprint") => {
                Error::new(ExitKind::NoPerm, cert_advice(host, &msg, presented))
            }
            // Not TLS after the server agreed to it: its TLS is broken,
            // not the port (Courier answers OK before its couriertls has
            // started).
            Some(rustls::Error::InvalidMessage(_))
            | Some(rustls::Error::InappropriateMessage { .. })
                if matches!(expect, Expect::Upgrade(_)) =>
            {
                let Expect::Upgrade(upgrade) = expect else {
                    unreachable!()
                };
                Error::new(
                    ExitKind::Protocol,
                    format!(
                        "{host}: the server accepted {} but then did not speak TLS. {}",
                        upgrade.verb,
                        upgrade.broken_advice()
                    ),
                )
            }
            Some(rustls::Error::InvalidMessage(_))
            | Some(rustls::Error::InappropriateMessage { .. }) => Error::new(
                ExitKind::Protocol,
                format!(
                    "TLS handshake with {host} failed: the server did not answer in TLS \
                         (is this port a plain POP3 port? then set tls = \"starttls\")"
                ),
            ),
            Some(other) => Error::new(
                ExitKind::NoPerm,
                format!("TLS handshake with {host} failed: {other}"),
            ),
            None => Error::with_source(
                ExitKind::of_io(&err),
                format!("TLS handshake with {host} failed"),
                err,
            ),
        }
    }
}

/// Why a certificate was refused, in words.
fn describe_cert_error(e: &rustls::CertificateError) -> String {
    use rustls::CertificateError as C;
    match e {
        C::UnknownIssuer => "signed by an authority that is not trusted".into(),
        C::NotValidForName | C::NotValidForNameContext { .. } => {
            "issued for another host name".into()
        }
        C::Expired | C::ExpiredContext { .. } => "expired".into(),
        C::NotValidYet | C::NotValidYetContext { .. } => "not valid yet (check the clock)".into(),
        C::Revoked => "revoked".into(),
        C::BadSignature => "its signature does not verify".into(),
        C::UnsupportedSignatureAlgorithmContext { .. }
        | C::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => {
            "signed with an algorithm popfetch does not accept".into()
        }
        C::InvalidPurpose | C::InvalidPurposeContext { .. } => "not issued for servers".into(),
        C::BadEncoding => "malformed".into(),
        C::UnhandledCriticalExtension => "marked with an extension popfetch cannot check".into(),
        C::UnknownRevocationStatus => "of unknown revocation status".into(),
        C::ExpiredRevocationList | C::ExpiredRevocationListContext { .. } => {
            "checked against an expired revocation list".into()
        }
        // webpki's reasons come only as Debug text: matched here, never
        // shown (a user reads words, not Rust enum names).
        C::Other(_) if ca_as_leaf(e) => "self-signed and marked as a CA (CA:TRUE)".into(),
        _ => "rejected by the certificate checks".into(),
    }
}

/// A server certificate made as a CA (plain `openssl req -x509` does that):
/// webpki refuses it as a server's own whatever the trust store, so
/// `ca_file` cannot help; a pin can.
fn ca_as_leaf(e: &rustls::CertificateError) -> bool {
    // webpki's reasons come only as Debug text.
    matches!(e, rustls::CertificateError::Other(o) if format!("{o:?}").contains("CaUsedAsEndEntity"))
}

fn ca_as_leaf_advice(host: &str, presented: Option<Fingerprint>) -> String {
    let pin = match presented {
        Some(fp) => format!("tls_fingerprint = \"{}\"", format_fingerprint(&fp)),
        None => "tls_fingerprint".into(),
    };
    format!(
        "the certificate of {host} is self-signed and marked as a CA (CA:TRUE, as plain \
         `openssl req -x509` makes them), which TLS never accepts as a server's own certificate, \
         not even from ca_file. Once you have checked that this is really your server's \
         certificate, pin it: {pin}; or have it reissued with basicConstraints CA:FALSE"
    )
}

fn cert_advice(host: &str, reason: &str, presented: Option<Fingerprint>) -> String {
    let mut msg = format!("the certificate of {host} is not trusted ({reason}).");
    msg.push_str(
        " To trust it, put the CA certificate that signed it in a PEM file and set ca_file = \"/path/to/ca.pem\"",
    );
    if let Some(fp) = presented {
        msg.push_str(&format!(
            ", or, once you have checked that this is really your server's certificate, pin it: tls_fingerprint = \"{}\"",
            format_fingerprint(&fp)
        ));
    } else {
        msg.push_str(", or pin the certificate with tls_fingerprint");
    }
    msg
}

/// The certificate no longer matches the pin. That is what a renewed
/// certificate looks like, and also what an attacker in the middle looks
/// like: so both fingerprints are shown, and the pin is to be updated only
/// once the new one has been checked by other means.
fn pin_changed_advice(
    host: &str,
    pins: &[Fingerprint],
    presented: &Fingerprint,
    account: Option<&str>,
) -> String {
    let pinned: Vec<String> = pins.iter().map(format_fingerprint).collect();
    let presented = format_fingerprint(presented);
    let info = format!("popfetch info {}", account.unwrap_or("ACCOUNT"));
    format!(
        "the certificate of {host} has changed: it does not match tls_fingerprint \
         (pinned: {}; presented now: {presented}). If the server's certificate was renewed, \
         check the new fingerprint out of band (ask the server's administrator, or compare it \
         with the certificate on the server), then update the pin: tls_fingerprint = \"{presented}\" \
         (`{info}` shows the certificate). If you expected no change, keep the pin: someone may \
         be intercepting the connection",
        pinned.join(", ")
    )
}

/// The first line of `bytes` if they are plain text (a greeting) rather
/// than a TLS record: a record starts with its content type, 0x14 to 0x18
/// (0x80 and up for an SSLv2-style hello), never with a printable
/// character. Control characters are escaped: it ends up on a terminal.
fn plain_text_line(bytes: &[u8]) -> Option<String> {
    if !bytes.first()?.is_ascii_graphic() {
        return None;
    }
    let end = bytes
        .iter()
        .position(|b| *b == b'\r' || *b == b'\n')
        .unwrap_or(bytes.len())
        .min(80);
    Some(crate::ui::term::escape_controls(&String::from_utf8_lossy(
        &bytes[..end],
    )))
}

/// Whether `bytes`, the first a server sent, begin a TLS record: a
/// handshake (0x16) or an alert (0x15), then major version 3. No POP3 or
/// POP2 reply starts that way.
fn looks_like_tls(bytes: &[u8]) -> bool {
    matches!(bytes, [0x15 | 0x16] | [0x15 | 0x16, 0x03, ..])
}

/// How long a plain connection may stay silent before popfetch checks
/// whether the port speaks TLS instead. Servers greet at once (some
/// after a reverse-DNS lookup, which is why it is not shorter).
const SILENCE_BEFORE_PROBE: Duration = Duration::from_secs(2);
/// How long that check waits for an answer to its ClientHello.
const PROBE_BUDGET: Duration = Duration::from_secs(3);

/// On a plain connection (`tls = "none"` or `"starttls"`), waits for the
/// server's first bytes, up to `timeout`, and makes sure they are not TLS:
/// a TLS port waits for a ClientHello while the client waits for a
/// greeting, which would last the whole timeout and end in "try again
/// later" (75), retried for ever by schedulers. The bytes are only peeked
/// at: the greeting stays for the POP3 client to read.
///
/// A TLS record where the greeting should be is recognised at once. If
/// nothing comes for [`SILENCE_BEFORE_PROBE`], a second, short connection
/// to the same address sends a ClientHello: an answer in TLS means this is
/// a TLS port, and the account fails with 76 and the fix. Nothing is ever
/// sent on the first connection, since a server that is merely slow to
/// greet would take any byte for a command and fall out of step with us;
/// the second connection carries no password and, on a slow plain server,
/// only draws an `-ERR` before it is closed. Otherwise the wait goes on
/// for the rest of `timeout`, as before.
pub fn await_plain_greeting(tcp: &TcpStream, host: &str, timeout: Duration) -> Result<()> {
    let started = Instant::now();
    let port = tcp.peer_addr().map(|a| a.port()).unwrap_or_default();
    let speaks_tls = |how: String| {
        Error::new(
            ExitKind::Protocol,
            format!(
                "{host} port {port} speaks TLS ({how}): set tls = \"implicit\" for this port \
                 (tls = \"starttls\" and \"none\" need the server's plain port, usually 110)"
            ),
        )
    };
    let mut probed = false;
    let result = loop {
        let wait = if probed {
            timeout.saturating_sub(started.elapsed())
        } else {
            SILENCE_BEFORE_PROBE.min(timeout / 2)
        };
        if wait.is_zero() {
            break Err(greeting_timeout(host));
        }
        if let Err(e) = tcp.set_read_timeout(Some(wait)) {
            break Err(Error::with_source(
                ExitKind::Io,
                "cannot set socket options",
                e,
            ));
        }
        let mut first = [0u8; 8];
        match tcp.peek(&mut first) {
            Ok(n) if looks_like_tls(&first[..n]) => {
                break Err(speaks_tls(
                    "it sent a TLS record where the greeting should be".into(),
                ))
            }
            // A greeting, or the end of the connection: the client reads it.
            Ok(_) => break Ok(()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
                ) =>
            {
                if probed {
                    break Err(greeting_timeout(host));
                }
                probed = true;
                let budget = PROBE_BUDGET.min(timeout.saturating_sub(started.elapsed()));
                if let Ok(addr) = tcp.peer_addr() {
                    if answers_tls(addr, host, budget) {
                        break Err(speaks_tls(format!(
                            "it sent no greeting within {} s, and answers a TLS handshake",
                            started.elapsed().as_secs()
                        )));
                    }
                }
            }
            // Any other failure is the client's to read and report.
            Err(_) => break Ok(()),
        }
    };
    if let Err(e) = tcp.set_read_timeout(Some(timeout)) {
        return Err(Error::with_source(
            ExitKind::Io,
            "cannot set socket options",
            e,
        ));
    }
    result
}

fn greeting_timeout(host: &str) -> Error {
    Error::new(
        ExitKind::TempFail,
        format!(
            "{host}: timed out waiting for the greeting (raise `timeout` if the server is slow)"
        ),
    )
}

/// Opens a connection to `addr`, sends a ClientHello and says whether the
/// first answer, within `budget`, is a TLS record. The handshake is never
/// finished: the answer's first bytes are all it needs.
fn answers_tls(addr: SocketAddr, host: &str, budget: Duration) -> bool {
    if budget.is_zero() {
        return false;
    }
    let deadline = Instant::now() + budget;
    let Ok(ctx) = TlsContext::build(&TlsTrust::default(), true) else {
        return false;
    };
    let name = ServerName::try_from(host.to_string())
        .unwrap_or_else(|_| ServerName::IpAddress(addr.ip().into()));
    let Ok(mut conn) = ClientConnection::new(ctx.config.clone(), name) else {
        return false;
    };
    let Ok(mut tcp) = TcpStream::connect_timeout(&addr, budget) else {
        return false;
    };
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero()
        || tcp.set_read_timeout(Some(left)).is_err()
        || tcp.set_write_timeout(Some(left)).is_err()
    {
        return false;
    }
    while conn.wants_write() {
        if conn.write_tls(&mut tcp).is_err() {
            return false;
        }
    }
    let mut first = [0u8; 8];
    let answered = match tcp.read(&mut first) {
        Ok(n) => looks_like_tls(&first[..n]),
        Err(_) => false,
    };
    let _ = tcp.shutdown(std::net::Shutdown::Both);
    answered
}

/// A plain connection being turned into TLS by the protocol's command,
/// for what to say when the server then does not speak TLS.
#[derive(Clone, Copy, Debug)]
pub struct Upgrade {
    /// The command the server accepted: `STLS`, `STARTTLS`.
    pub verb: &'static str,
    /// The protocol's usual implicit-TLS port, to suggest instead.
    pub tls_port: u16,
}

impl Upgrade {
    /// What to do about a server that accepts the upgrade and then cannot
    /// start TLS.
    pub fn broken_advice(&self) -> String {
        format!(
            "Its TLS setup is broken (its log says why; Courier does this when couriertls cannot \
             start): ask its administrator, or use tls = \"implicit\" with its TLS port \
             (usually {})",
            self.tls_port
        )
    }
}

/// What the handshake expects of the connection, for its error messages.
#[derive(Clone, Copy)]
enum Expect<'a> {
    /// TLS from the first byte; a plain-text greeting gets this fix.
    Implicit(&'a str),
    /// TLS after the protocol's upgrade command.
    Upgrade(Upgrade),
}

/// What the protocol code needs from the byte stream under it, beyond
/// `Read + Write`. The POP3 and POP2 clients are generic over it so that
/// unit tests can drive them over a scripted in-memory stream; [`Stream`]
/// is the real one. The defaults suit a stream that is never encrypted
/// and cannot look ahead.
pub trait Transport: Read + Write {
    /// Whether the bytes travel encrypted (decides what login may be sent).
    fn is_tls(&self) -> bool {
        false
    }

    /// Copies into `buf`, without consuming them and without waiting, the
    /// server's bytes that have arrived but not been read; returns how many.
    /// Used to catch replies that answer no command (see
    /// `pop3::Connection::ensure_in_step`). 0 when it cannot tell.
    fn peek_unread(&self, buf: &mut [u8]) -> usize {
        let _ = buf;
        0
    }

    /// Upgrades the stream in place to TLS, after `upgrade`'s command was
    /// accepted.
    fn start_tls(self, tls: &TlsContext, host: &str, upgrade: Upgrade) -> Result<Self>
    where
        Self: Sized,
    {
        let _ = (tls, upgrade);
        Err(Error::new(
            ExitKind::Internal,
            format!("{host}: this connection cannot be upgraded to TLS"),
        ))
    }
}

impl Transport for Stream {
    fn is_tls(&self) -> bool {
        Stream::is_tls(self)
    }

    fn peek_unread(&self, buf: &mut [u8]) -> usize {
        // Over TLS the socket holds records, not replies: nothing to see.
        let Stream::Plain(tcp) = self else {
            return 0;
        };
        let mut n = 0;
        if tcp.set_nonblocking(true).is_ok() {
            n = tcp.peek(buf).unwrap_or(0);
            let _ = tcp.set_nonblocking(false);
        }
        n
    }

    fn start_tls(self, tls: &TlsContext, host: &str, upgrade: Upgrade) -> Result<Stream> {
        let tcp = self
            .into_plain()
            .expect("STLS is only sent on a plain connection");
        tls.wrap(tcp, host, upgrade)
    }
}

/// A connection to the server: plain TCP, or TLS over TCP.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<ClientConnection, Socket>>),
}

impl Stream {
    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    /// Negotiated TLS version and cipher suite, for `-v` and `info`.
    pub fn tls_description(&self) -> Option<String> {
        match self {
            Stream::Plain(_) => None,
            Stream::Tls(tls) => {
                let version = tls.conn.protocol_version().map(|v| format!("{v:?}"));
                let suite = tls
                    .conn
                    .negotiated_cipher_suite()
                    .map(|s| format!("{:?}", s.suite()));
                Some(format!(
                    "{} {}",
                    version.unwrap_or_default(),
                    suite.unwrap_or_default()
                ))
            }
        }
    }

    /// The server's certificate chain (DER), leaf first.
    pub fn peer_certificates(&self) -> Vec<Vec<u8>> {
        match self {
            Stream::Plain(_) => Vec::new(),
            Stream::Tls(tls) => tls
                .conn
                .peer_certificates()
                .map(|c| c.iter().map(|d| d.as_ref().to_vec()).collect())
                .unwrap_or_default(),
        }
    }

    /// The TCP connection underneath, for timeouts and waiting.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(tls) => tls.sock.tcp(),
        }
    }

    /// Bytes that came from the server and wait in this process, below
    /// the protocol's own reader: TLS records read ahead from the socket.
    /// Waiting on the socket while there are some would wait for nothing.
    pub fn read_ahead(&self) -> usize {
        match self {
            Stream::Plain(_) => 0,
            Stream::Tls(tls) => tls.sock.buffered(),
        }
    }

    /// Takes the TCP stream back, for the STLS upgrade.
    pub fn into_plain(self) -> Option<TcpStream> {
        match self {
            Stream::Plain(s) => Some(s),
            Stream::Tls(_) => None,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// Connects to `host:port`, trying every resolved address in turn with the
/// timeout, and sets the read and write timeouts on the result. Resolving
/// the name is bounded by the timeout too.
pub fn connect(host: &str, port: u16, timeout: Duration) -> Result<TcpStream> {
    let addrs = resolve(host, port, timeout, system_resolver)?;
    if addrs.is_empty() {
        return Err(Error::new(
            ExitKind::Unavailable,
            format!("host {host:?} has no address"),
        ));
    }
    let mut last: Option<io::Error> = None;
    for addr in &addrs {
        match TcpStream::connect_timeout(addr, timeout) {
            Ok(tcp) => {
                let set = tcp
                    .set_read_timeout(Some(timeout))
                    .and_then(|_| tcp.set_write_timeout(Some(timeout)))
                    .and_then(|_| tcp.set_nodelay(true));
                if let Err(e) = set {
                    return Err(Error::with_source(
                        ExitKind::Io,
                        "cannot set socket options",
                        e,
                    ));
                }
                return Ok(tcp);
            }
            Err(e) => last = Some(e),
        }
    }
    let err = last.expect("at least one address was tried");
    let kind = match err.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => ExitKind::TempFail,
        _ => ExitKind::Unavailable,
    };
    let what = if kind == ExitKind::TempFail {
        format!("connecting to {host} port {port} timed out")
    } else {
        format!("cannot connect to {host} port {port}")
    };
    Err(Error::with_source(kind, what, err))
}

/// A name lookup: the system's, or a stand-in in tests.
type Resolver = fn(&str, u16) -> io::Result<Vec<SocketAddr>>;

fn system_resolver(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    (host, port).to_socket_addrs().map(Iterator::collect)
}

/// Resolves `host` within `timeout`. The system's lookup (getaddrinfo) has
/// no timeout of its own: with a DNS server that does not answer it blocks
/// for the resolver's whole retry cycle, which the account's `timeout` does
/// not cover. So it runs on a thread of its own and is waited for at most
/// `timeout`; a lookup that overruns cannot be cancelled, so its thread is
/// left to finish and its answer is dropped.
fn resolve(
    host: &str,
    port: u16,
    timeout: Duration,
    resolver: Resolver,
) -> Result<Vec<SocketAddr>> {
    // An address needs no lookup (and no thread).
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let name = host.to_string();
    let spawned = std::thread::Builder::new()
        .name("resolve".into())
        .spawn(move || {
            let _ = tx.send(resolver(&name, port));
        });
    let answer = match spawned {
        Ok(_) => rx.recv_timeout(timeout),
        // No thread to spare: look it up here, unbounded, as before.
        Err(_) => Ok(resolver(host, port)),
    };
    match answer {
        Ok(Ok(addrs)) => Ok(addrs),
        Ok(Err(e)) => Err(Error::with_source(
            ExitKind::Unavailable,
            format!("cannot resolve host {host:?}: check `host` in the config and your network"),
            e,
        )),
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(Error::new(
            ExitKind::TempFail,
            format!(
                "timed out resolving {host} (no answer within {} s): check your network and DNS \
                 server; the account's `timeout` sets the limit",
                timeout.as_secs_f64()
            ),
        )),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(Error::new(
            ExitKind::Internal,
            format!("the lookup of {host} failed without an answer"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lookup is bounded by the timeout (a hanging DNS server cannot be
    /// had without the network, so the resolver is a stand-in).
    #[test]
    fn name_resolution_is_covered_by_the_timeout() {
        fn hangs(_: &str, _: u16) -> io::Result<Vec<SocketAddr>> {
            std::thread::sleep(Duration::from_secs(30));
            Ok(Vec::new())
        }
        let started = std::time::Instant::now();
        let err = resolve("pop.example.com", 995, Duration::from_millis(200), hangs).unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(err.kind(), ExitKind::TempFail);
        assert!(
            err.to_string()
                .contains("timed out resolving pop.example.com"),
            "{err}"
        );

        fn fails(_: &str, _: u16) -> io::Result<Vec<SocketAddr>> {
            Err(io::Error::other("no such host"))
        }
        let err = resolve("nowhere.invalid", 995, Duration::from_secs(5), fails).unwrap_err();
        assert_eq!(err.kind(), ExitKind::Unavailable);

        fn answers(_: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
            Ok(vec![SocketAddr::from(([127, 0, 0, 1], port))])
        }
        let addrs = resolve("localhost", 110, Duration::from_secs(5), answers).unwrap();
        assert_eq!(addrs, vec![SocketAddr::from(([127, 0, 0, 1], 110))]);
        // An address is never looked up.
        let addrs = resolve("::1", 110, Duration::from_millis(1), hangs).unwrap();
        assert_eq!(addrs, vec!["[::1]:110".parse().unwrap()]);
    }

    #[test]
    fn tls_records_and_plain_greetings_are_told_apart() {
        // A handshake record, an alert, and a first byte alone.
        assert!(looks_like_tls(&[0x16, 0x03, 0x01, 0x00, 0x7a]));
        assert!(looks_like_tls(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x0a]));
        assert!(looks_like_tls(&[0x16]));
        assert!(!looks_like_tls(b"+OK POP3 ready\r\n"));
        assert!(!looks_like_tls(b"-ERR go away\r\n"));
        assert!(!looks_like_tls(&[0x16, 0x01]));
        assert!(!looks_like_tls(b""));

        assert_eq!(
            plain_text_line(b"+OK Dovecot ready.\r\n-ERR x\r\n").as_deref(),
            Some("+OK Dovecot ready.")
        );
        assert_eq!(plain_text_line(&[0x16, 0x03, 0x03]), None);
        assert_eq!(plain_text_line(b""), None);
        // What a hostile server says is defused before it is shown.
        let shown = plain_text_line(b"+OK \x1b[2Jgone\r\n").unwrap();
        assert!(!shown.contains('\x1b'), "{shown:?}");
    }

    #[test]
    fn fingerprints_round_trip() {
        let mut fp = [0u8; 32];
        fp[0] = 0x9f;
        fp[31] = 0x01;
        let s = format_fingerprint(&fp);
        assert!(s.starts_with("sha256:9F:00:"));
        assert_eq!(parse_fingerprint(&s), Some(fp));
        assert_eq!(
            parse_fingerprint(&s.replace(':', "").replace("sha256", "sha256:")),
            Some(fp)
        );
        assert_eq!(parse_fingerprint("sha256:12:34"), None);
        assert_eq!(parse_fingerprint(&"zz".repeat(32)), None);
    }

    #[test]
    fn refused_connection_is_unavailable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let err = connect("127.0.0.1", port, Duration::from_secs(2)).unwrap_err();
        assert_eq!(err.kind(), ExitKind::Unavailable);
    }
}
