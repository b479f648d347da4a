//! A scripted LMTP/SMTP server on loopback: records every envelope and the
//! data as it came on the wire, notes whether MAIL, RCPT and DATA (or the
//! first BDAT) arrived pipelined, and answers by the message: a header
//! `X-Test: tempfail` gets 451 after the data, `X-Test: reject` gets 550,
//! a recipient `nobody` gets 550 at RCPT. On request it offers CHUNKING
//! (BDAT), STARTTLS or TLS from the first byte, and AUTH PLAIN, LOGIN and
//! CRAM-MD5 (only once TLS is up, as real relays do).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use base64::Engine;
use hmac::Mac;

use super::certs::TestPki;
use super::server::Stream;

/// How the scripted server speaks TLS.
#[derive(Clone, Default)]
pub enum SmtpTls {
    #[default]
    None,
    /// Offers STARTTLS.
    StartTls(Arc<TestPki>),
    /// TLS from the first byte (`smtps://`).
    Implicit(Arc<TestPki>),
}

/// What the scripted server offers and accepts.
#[derive(Clone)]
pub struct Options {
    /// Answers LHLO (else EHLO).
    pub lmtp: bool,
    pub pipelining: bool,
    /// Offers CHUNKING (RFC 3030).
    pub chunking: bool,
    pub greeting: String,
    pub tls: SmtpTls,
    /// The AUTH mechanisms offered once TLS is up (none: no AUTH line).
    pub auth: Vec<&'static str>,
    /// The login AUTH accepts.
    pub credentials: (String, String),
}

impl Default for Options {
    fn default() -> Options {
        Options {
            lmtp: true,
            pipelining: true,
            chunking: false,
            greeting: "220 test ready".to_string(),
            tls: SmtpTls::None,
            auth: Vec::new(),
            credentials: ("relayuser".to_string(), "relay secret".to_string()),
        }
    }
}

/// One transaction that reached the final dot.
#[derive(Clone, Debug)]
pub struct Received {
    pub from: String,
    pub to: String,
    /// MAIL FROM's parameters (`BODY=8BITMIME`…).
    pub params: String,
    /// The data as sent, dot-stuffed, CRLF, without the final dot line;
    /// with BDAT the chunks' bytes as they came.
    pub wire: Vec<u8>,
    /// MAIL, RCPT and DATA came in one write.
    pub pipelined: bool,
    /// The reply it got after the final dot.
    pub code: u16,
    /// Sent with BDAT: the sizes of its chunks.
    pub chunks: Option<Vec<usize>>,
    /// Over TLS, and logged in as this user if at all.
    pub tls: bool,
    pub user: Option<String>,
}

impl Received {
    /// The message as the client meant it: CRLF to LF, and for DATA
    /// dot-unstuffed.
    pub fn content(&self) -> Vec<u8> {
        match self.chunks {
            Some(_) => crlf_to_lf(&self.wire),
            None => unwire(&self.wire),
        }
    }
}

fn crlf_to_lf(wire: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(wire.len());
    let mut i = 0;
    while i < wire.len() {
        if wire[i] == b'\r' && wire.get(i + 1) == Some(&b'\n') {
            i += 1;
            continue;
        }
        out.push(wire[i]);
        i += 1;
    }
    out
}

#[derive(Default)]
struct State {
    received: Vec<Received>,
    commands: Vec<String>,
    connections: usize,
    /// A session is being served (the acceptor serves one at a time).
    serving: bool,
}

pub struct SmtpServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    state: Arc<Mutex<State>>,
    acceptor: Option<JoinHandle<()>>,
}

impl SmtpServer {
    /// `lmtp`: answers LHLO (else EHLO); `pipelining`: offers PIPELINING.
    pub fn start(lmtp: bool, pipelining: bool) -> SmtpServer {
        SmtpServer::start_greeting(lmtp, pipelining, "220 test ready")
    }

    /// Like [`SmtpServer::start`], greeting with `greeting` (a 554 refuses
    /// every connection: it then closes it).
    pub fn start_greeting(lmtp: bool, pipelining: bool, greeting: &str) -> SmtpServer {
        SmtpServer::with(Options {
            lmtp,
            pipelining,
            greeting: greeting.to_string(),
            ..Options::default()
        })
    }

    pub fn with(opts: Options) -> SmtpServer {
        let opts = Arc::new(opts);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let state = Arc::new(Mutex::new(State::default()));
        let (st, sh) = (stop.clone(), state.clone());
        let acceptor = thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((sock, _)) => {
                        sock.set_nonblocking(false).unwrap();
                        sock.set_read_timeout(Some(Duration::from_secs(30)))
                            .unwrap();
                        {
                            let mut state = sh.lock().unwrap();
                            state.connections += 1;
                            state.serving = true;
                        }
                        let _ = serve(sock, &opts, &sh);
                        sh.lock().unwrap().serving = false;
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        SmtpServer {
            addr,
            stop,
            state,
            acceptor: Some(acceptor),
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    pub fn commands(&self) -> Vec<String> {
        self.state.lock().unwrap().commands.clone()
    }

    pub fn connections(&self) -> usize {
        self.state.lock().unwrap().connections
    }

    /// Waits until the server has taken in all a (perhaps killed) client
    /// sent: no session in progress, and none started, for 200 ms running.
    /// A client killed right after writing a message's final dot leaves it
    /// in the server's socket buffer; the server still reads and accepts it
    /// after the client is gone, so what was accepted is known only then.
    pub fn settle(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut quiet_since: Option<(Instant, usize)> = None;
        while Instant::now() < deadline {
            let (serving, connections) = {
                let state = self.state.lock().unwrap();
                (state.serving, state.connections)
            };
            match quiet_since {
                _ if serving => quiet_since = None,
                Some((since, seen)) if seen == connections => {
                    if since.elapsed() >= Duration::from_millis(200) {
                        return;
                    }
                }
                _ => quiet_since = Some((Instant::now(), connections)),
            }
            thread::sleep(Duration::from_millis(5));
        }
        panic!("the test SMTP/LMTP server was still serving a session after 30 s");
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

/// Undoes the wire form: dot-unstuffing, CRLF to LF.
pub fn unwire(wire: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(wire.len());
    for line in wire.split_inclusive(|&b| b == b'\n') {
        let line = line.strip_prefix(b".").unwrap_or(line);
        match line.strip_suffix(b"\r\n") {
            Some(l) => {
                out.extend_from_slice(l);
                out.push(b'\n');
            }
            None => out.extend_from_slice(line),
        }
    }
    out
}

fn serve(sock: TcpStream, opts: &Options, state: &Mutex<State>) -> std::io::Result<()> {
    let stream = match &opts.tls {
        SmtpTls::Implicit(pki) => Stream::tls(sock, pki)?,
        _ => Stream::Plain(sock),
    };
    let mut tls = matches!(opts.tls, SmtpTls::Implicit(_));
    let mut r = BufReader::new(stream);
    r.get_mut()
        .write_all(format!("{}\r\n", opts.greeting).as_bytes())?;
    r.get_mut().flush()?;
    if !opts.greeting.starts_with("220") {
        return Ok(());
    }
    let (mut from, mut params, mut to, mut pipelined) =
        (None::<String>, String::new(), None::<String>, false);
    let mut user: Option<String> = None;
    // BDAT: the chunks so far, and whether the transaction already failed.
    let mut chunks: Vec<usize> = Vec::new();
    let mut chunked = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        state.lock().unwrap().commands.push(text.clone());
        let upper = text.to_ascii_uppercase();
        let out = |r: &mut BufReader<Stream>, what: &[u8]| -> std::io::Result<()> {
            r.get_mut().write_all(what)?;
            r.get_mut().flush()
        };
        if upper.starts_with("LHLO") || upper.starts_with("EHLO") {
            let want = if opts.lmtp { "LHLO" } else { "EHLO" };
            if !upper.starts_with(want) {
                out(&mut r, b"500 wrong greeting\r\n")?;
                continue;
            }
            let mut reply = String::from("250-test\r\n250-8BITMIME\r\n");
            if opts.pipelining {
                reply.push_str("250-PIPELINING\r\n");
            }
            if opts.chunking {
                reply.push_str("250-CHUNKING\r\n");
            }
            if matches!(opts.tls, SmtpTls::StartTls(_)) && !tls {
                reply.push_str("250-STARTTLS\r\n");
            }
            if tls && !opts.auth.is_empty() {
                reply.push_str(&format!("250-AUTH {}\r\n", opts.auth.join(" ")));
            }
            reply.push_str("250 ENHANCEDSTATUSCODES\r\n");
            out(&mut r, reply.as_bytes())?;
        } else if upper == "STARTTLS" {
            let SmtpTls::StartTls(pki) = &opts.tls else {
                out(&mut r, b"502 5.5.1 no STARTTLS here\r\n")?;
                continue;
            };
            if tls {
                out(&mut r, b"503 5.5.1 already TLS\r\n")?;
                continue;
            }
            out(&mut r, b"220 2.0.0 go ahead\r\n")?;
            // Anything pipelined after STARTTLS is dropped (RFC 3207 §4.2).
            let Stream::Plain(tcp) = r.into_inner() else {
                unreachable!("not TLS yet")
            };
            r = BufReader::new(Stream::tls(tcp, pki)?);
            tls = true;
            user = None;
        } else if upper.starts_with("AUTH ") {
            if !tls || opts.auth.is_empty() {
                out(&mut r, b"503 5.5.1 AUTH not offered\r\n")?;
                continue;
            }
            let mut words = text[5..].split_whitespace();
            let mech = words.next().unwrap_or("").to_ascii_uppercase();
            let initial = words.next().map(str::to_string);
            let (want_user, want_pass) = &opts.credentials;
            let ok = match mech.as_str() {
                "PLAIN" => {
                    let response = match initial {
                        Some(i) => i,
                        None => {
                            out(&mut r, b"334 \r\n")?;
                            read_line(&mut r, state)?
                        }
                    };
                    let decoded = b64d(&response);
                    decoded == format!("\0{want_user}\0{want_pass}").into_bytes()
                }
                "LOGIN" => {
                    out(&mut r, b"334 VXNlcm5hbWU6\r\n")?;
                    let u = b64d(&read_line(&mut r, state)?);
                    out(&mut r, b"334 UGFzc3dvcmQ6\r\n")?;
                    let p = b64d(&read_line(&mut r, state)?);
                    u == want_user.as_bytes() && p == want_pass.as_bytes()
                }
                "CRAM-MD5" => {
                    let challenge = "<1896.697170952@test.example>";
                    let b64 = base64::engine::general_purpose::STANDARD.encode(challenge);
                    out(&mut r, format!("334 {b64}\r\n").as_bytes())?;
                    let answer =
                        String::from_utf8_lossy(&b64d(&read_line(&mut r, state)?)).into_owned();
                    let mut mac =
                        hmac::Hmac::<md5::Md5>::new_from_slice(want_pass.as_bytes()).unwrap();
                    mac.update(challenge.as_bytes());
                    let digest: String = mac
                        .finalize()
                        .into_bytes()
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect();
                    answer == format!("{want_user} {digest}")
                }
                _ => {
                    out(&mut r, b"504 5.5.4 unknown mechanism\r\n")?;
                    continue;
                }
            };
            if ok && opts.auth.contains(&mech.as_str()) {
                user = Some(want_user.clone());
                out(&mut r, b"235 2.7.0 authenticated\r\n")?;
            } else {
                out(&mut r, b"535 5.7.8 authentication credentials invalid\r\n")?;
            }
        } else if upper.starts_with("MAIL FROM:") {
            if !opts.auth.is_empty() && user.is_none() {
                out(&mut r, b"530 5.7.0 authentication required\r\n")?;
                continue;
            }
            let rest = &text[10..];
            let (addr, p) = rest.split_once('>').unwrap_or((rest, ""));
            from = Some(addr.trim_start_matches('<').to_string());
            params = p.trim().to_string();
            pipelined = {
                let buffered = String::from_utf8_lossy(r.buffer()).to_ascii_uppercase();
                buffered.contains("RCPT TO:")
                    && (buffered.contains("DATA") || buffered.contains("BDAT"))
            };
            out(&mut r, b"250 2.1.0 ok\r\n")?;
        } else if upper.starts_with("RCPT TO:") {
            let addr = text[8..].trim_start_matches('<').trim_end_matches('>');
            if addr == "nobody" {
                out(&mut r, b"550 5.1.1 no such user\r\n")?;
            } else {
                to = Some(addr.to_string());
                out(&mut r, b"250 2.1.5 ok\r\n")?;
            }
        } else if upper.starts_with("BDAT ") && opts.chunking {
            let mut words = upper[5..].split_whitespace();
            let Some(n) = words.next().and_then(|n| n.parse::<usize>().ok()) else {
                out(&mut r, b"501 5.5.4 BDAT needs a size\r\n")?;
                continue;
            };
            let last = words.next() == Some("LAST");
            let mut data = vec![0u8; n];
            r.read_exact(&mut data)?;
            if from.is_none() || to.is_none() {
                // The chunk is read all the same (RFC 3030 §3).
                chunks.clear();
                chunked.clear();
                out(&mut r, b"503 5.5.1 no valid recipients\r\n")?;
                continue;
            }
            chunks.push(n);
            chunked.extend_from_slice(&data);
            if !last {
                out(
                    &mut r,
                    format!("250 2.0.0 {n} octets received\r\n").as_bytes(),
                )?;
                continue;
            }
            let wire = std::mem::take(&mut chunked);
            let code = verdict(&crlf_to_lf(head_of(&wire)));
            state.lock().unwrap().received.push(Received {
                from: from.take().unwrap(),
                to: to.take().unwrap(),
                params: std::mem::take(&mut params),
                wire,
                pipelined,
                code,
                chunks: Some(std::mem::take(&mut chunks)),
                tls,
                user: user.clone(),
            });
            out(&mut r, reply_for(code))?;
        } else if upper == "DATA" {
            if from.is_none() || to.is_none() {
                out(&mut r, b"503 5.5.1 no valid recipients\r\n")?;
                continue;
            }
            out(&mut r, b"354 go ahead\r\n")?;
            let mut wire = Vec::new();
            loop {
                line.clear();
                if r.read_until(b'\n', &mut line)? == 0 {
                    return Ok(());
                }
                if line == b".\r\n" {
                    break;
                }
                wire.extend_from_slice(&line);
            }
            let code = verdict(&unwire(head_of(&wire)));
            state.lock().unwrap().received.push(Received {
                from: from.take().unwrap(),
                to: to.take().unwrap(),
                params: std::mem::take(&mut params),
                wire,
                pipelined,
                code,
                chunks: None,
                tls,
                user: user.clone(),
            });
            out(&mut r, reply_for(code))?;
        } else if upper == "RSET" {
            from = None;
            to = None;
            chunks.clear();
            chunked.clear();
            out(&mut r, b"250 2.0.0 ok\r\n")?;
        } else if upper == "QUIT" {
            out(&mut r, b"221 2.0.0 bye\r\n")?;
            return Ok(());
        } else {
            out(&mut r, b"500 5.5.2 what\r\n")?;
        }
    }
}

/// Only the header block is searched: a 50 MB body must not keep the
/// client waiting for its reply.
fn head_of(wire: &[u8]) -> &[u8] {
    let end = wire
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(wire.len(), |i| i + 2);
    &wire[..end]
}

fn verdict(head: &[u8]) -> u16 {
    if contains(head, b"\nX-Test: tempfail\n") {
        451
    } else if contains(head, b"\nX-Test: reject\n") {
        550
    } else {
        250
    }
}

fn reply_for(code: u16) -> &'static [u8] {
    match code {
        451 => b"451 4.3.0 try later\r\n",
        550 => b"550 5.7.1 rejected\r\n",
        _ => b"250 2.0.0 delivered\r\n",
    }
}

/// One line of a login exchange (logged as commands are).
fn read_line(r: &mut BufReader<Stream>, state: &Mutex<State>) -> std::io::Result<String> {
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line)?;
    let text = String::from_utf8_lossy(&line).trim_end().to_string();
    state.lock().unwrap().commands.push(text.clone());
    Ok(text)
}

fn b64d(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .unwrap_or_default()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
