//! A scripted LMTP/SMTP server on loopback: records every envelope and the
//! data as it came on the wire, notes whether MAIL, RCPT and DATA arrived
//! pipelined, and answers by the message: a header `X-Test: tempfail`
//! gets 451 after the data, `X-Test: reject` gets 550, a recipient
//! `nobody` gets 550 at RCPT.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// One transaction that reached the final dot.
#[derive(Clone, Debug)]
pub struct Received {
    pub from: String,
    pub to: String,
    /// MAIL FROM's parameters (`BODY=8BITMIME`…).
    pub params: String,
    /// The data as sent, dot-stuffed, CRLF, without the final dot line.
    pub wire: Vec<u8>,
    /// MAIL, RCPT and DATA came in one write.
    pub pipelined: bool,
    /// The reply it got after the final dot.
    pub code: u16,
}

#[derive(Default)]
struct State {
    received: Vec<Received>,
    commands: Vec<String>,
    connections: usize,
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
        let greeting = format!("{greeting}\r\n");
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
                        sh.lock().unwrap().connections += 1;
                        let _ = serve(sock, lmtp, pipelining, &greeting, &sh);
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

fn serve(
    sock: TcpStream,
    lmtp: bool,
    pipelining: bool,
    greeting: &str,
    state: &Mutex<State>,
) -> std::io::Result<()> {
    let mut out = sock.try_clone()?;
    let mut r = BufReader::new(sock);
    out.write_all(greeting.as_bytes())?;
    if !greeting.starts_with("220") {
        return Ok(());
    }
    let (mut from, mut params, mut to, mut pipelined) =
        (None::<String>, String::new(), None::<String>, false);
    let mut line = Vec::new();
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        state.lock().unwrap().commands.push(text.clone());
        let upper = text.to_ascii_uppercase();
        if upper.starts_with("LHLO") || upper.starts_with("EHLO") {
            let want = if lmtp { "LHLO" } else { "EHLO" };
            if !upper.starts_with(want) {
                out.write_all(b"500 wrong greeting\r\n")?;
                continue;
            }
            let mut reply = String::from("250-test\r\n250-8BITMIME\r\n");
            if pipelining {
                reply.push_str("250-PIPELINING\r\n");
            }
            reply.push_str("250 ENHANCEDSTATUSCODES\r\n");
            out.write_all(reply.as_bytes())?;
        } else if upper.starts_with("MAIL FROM:") {
            let rest = &text[10..];
            let (addr, p) = rest.split_once('>').unwrap_or((rest, ""));
            from = Some(addr.trim_start_matches('<').to_string());
            params = p.trim().to_string();
            pipelined = {
                let buffered = String::from_utf8_lossy(r.buffer()).to_ascii_uppercase();
                buffered.contains("RCPT TO:") && buffered.contains("DATA")
            };
            out.write_all(b"250 2.1.0 ok\r\n")?;
        } else if upper.starts_with("RCPT TO:") {
            let addr = text[8..].trim_start_matches('<').trim_end_matches('>');
            if addr == "nobody" {
                out.write_all(b"550 5.1.1 no such user\r\n")?;
            } else {
                to = Some(addr.to_string());
                out.write_all(b"250 2.1.5 ok\r\n")?;
            }
        } else if upper == "DATA" {
            if from.is_none() || to.is_none() {
                out.write_all(b"503 5.5.1 no valid recipients\r\n")?;
                continue;
            }
            out.write_all(b"354 go ahead\r\n")?;
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
            // Only the header block is searched: a 50 MB body must not
            // keep the client waiting for its reply.
            let head_end = wire
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map_or(wire.len(), |i| i + 2);
            let head = unwire(&wire[..head_end]);
            let code = if contains(&head, b"\nX-Test: tempfail\n") {
                451
            } else if contains(&head, b"\nX-Test: reject\n") {
                550
            } else {
                250
            };
            let reply: &[u8] = match code {
                451 => b"451 4.3.0 try later\r\n",
                550 => b"550 5.7.1 rejected\r\n",
                _ => b"250 2.0.0 delivered\r\n",
            };
            state.lock().unwrap().received.push(Received {
                from: from.take().unwrap(),
                to: to.take().unwrap(),
                params: std::mem::take(&mut params),
                wire,
                pipelined,
                code,
            });
            out.write_all(reply)?;
        } else if upper == "RSET" {
            from = None;
            to = None;
            out.write_all(b"250 2.0.0 ok\r\n")?;
        } else if upper == "QUIT" {
            out.write_all(b"221 2.0.0 bye\r\n")?;
            return Ok(());
        } else {
            out.write_all(b"500 5.5.2 what\r\n")?;
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
