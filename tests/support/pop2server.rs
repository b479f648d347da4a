//! A scripted POP2 (RFC 937) server for tests: HELO, FOLD, READ, RETR,
//! ACKS/ACKD/NACK, QUIT; deletions applied at QUIT; every line logged.

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

#[derive(Default)]
struct State {
    /// folder name → messages (raw bytes, LF or CRLF)
    folders: Vec<(String, Vec<Vec<u8>>)>,
    log: Vec<String>,
    /// Send messages as they are (a bare LF stays bare) instead of in
    /// [`network_form`].
    raw: bool,
    /// Announce every length this many octets short (RETR still sends the
    /// whole message): a server whose framing lies.
    short_by: usize,
    /// Wait this long before sending each message.
    retr_delay: Duration,
    /// Answer QUIT with this `-` reply instead of `+ bye` (nothing deleted).
    quit_refusal: Option<String>,
}

pub struct Pop2Server {
    port: u16,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    clients: Arc<Mutex<Vec<TcpStream>>>,
}

/// CRLF line ends, as POP2 sends messages.
fn network_form(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, &b) in data.iter().enumerate() {
        if b == b'\n' && (i == 0 || data[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

impl Pop2Server {
    /// `inbox` messages for user alice / password secret; more folders
    /// with [`Pop2Server::add_folder`].
    pub fn start(inbox: Vec<Vec<u8>>) -> Pop2Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State {
            folders: vec![("INBOX".to_string(), inbox)],
            ..State::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (st, sp, cl) = (state.clone(), stop.clone(), clients.clone());
        let thread = std::thread::spawn(move || {
            let mut workers = Vec::new();
            while !sp.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((sock, _)) => {
                        sock.set_nonblocking(false).unwrap();
                        cl.lock().unwrap().push(sock.try_clone().unwrap());
                        let st = st.clone();
                        workers.push(std::thread::spawn(move || {
                            let _ = serve(sock, st);
                        }));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            for w in workers {
                let _ = w.join();
            }
        });
        Pop2Server {
            port,
            state,
            stop,
            thread: Some(thread),
            clients,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn add_folder(&self, name: &str, msgs: Vec<Vec<u8>>) {
        self.state
            .lock()
            .unwrap()
            .folders
            .push((name.to_string(), msgs));
    }

    /// Like [`Pop2Server::start`], but the messages go out byte for byte:
    /// a bare LF or CR stays bare.
    pub fn start_raw(inbox: Vec<Vec<u8>>) -> Pop2Server {
        let server = Pop2Server::start(inbox);
        server.state.lock().unwrap().raw = true;
        server
    }

    /// From now on, announce each message `k` octets shorter than it is.
    pub fn announce_short_by(&self, k: usize) {
        self.state.lock().unwrap().short_by = k;
    }

    /// From now on, wait `delay` before sending each message.
    pub fn slow_retr(&self, delay: Duration) {
        self.state.lock().unwrap().retr_delay = delay;
    }

    /// From now on, refuse QUIT with `- text`: the deletions do not happen.
    pub fn refuse_quit(&self, text: &str) {
        self.state.lock().unwrap().quit_refusal = Some(text.to_string());
    }

    pub fn log(&self) -> Vec<String> {
        self.state.lock().unwrap().log.clone()
    }

    pub fn inbox(&self) -> Vec<Vec<u8>> {
        self.state.lock().unwrap().folders[0].1.clone()
    }
}

impl Drop for Pop2Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for c in self.clients.lock().unwrap().iter() {
            let _ = c.shutdown(Shutdown::Both);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(sock: TcpStream, state: Arc<Mutex<State>>) -> std::io::Result<()> {
    let mut out = sock.try_clone()?;
    let mut reader = BufReader::new(sock);
    out.write_all(b"+ POP2 test server ready\r\n")?;
    let mut folder = 0usize;
    let mut current = 0usize; // 1-based, 0: none
    let mut delete: Vec<(usize, usize)> = Vec::new();
    let mut logged_in = false;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(()); // no QUIT: nothing deleted
        }
        let cmd = line.trim_end().to_string();
        state.lock().unwrap().log.push(cmd.clone());
        let mut words = cmd.split_ascii_whitespace();
        let verb = words.next().unwrap_or("").to_ascii_uppercase();
        let count = |st: &State, f: usize| st.folders[f].1.len();
        let wire = |st: &State, m: &[u8]| {
            if st.raw {
                m.to_vec()
            } else {
                network_form(m)
            }
        };
        let len_of = |st: &State, f: usize, n: usize| -> usize {
            st.folders[f]
                .1
                .get(n.wrapping_sub(1))
                .map(|m| wire(st, m).len().saturating_sub(st.short_by).max(1))
                .unwrap_or(0)
        };
        let reply = match verb.as_str() {
            "HELO" => {
                let (u, p) = (words.next(), words.next());
                if u == Some("alice") && p == Some("secret") {
                    logged_in = true;
                    format!("#{}", count(&state.lock().unwrap(), 0))
                } else {
                    "- invalid user or password".to_string()
                }
            }
            _ if !logged_in => "- say HELO first".to_string(),
            "FOLD" => {
                let name = words.next().unwrap_or("");
                let st = state.lock().unwrap();
                match st.folders.iter().position(|(n, _)| n == name) {
                    Some(f) => {
                        folder = f;
                        current = 0;
                        format!("#{}", count(&st, f))
                    }
                    None => "- no such folder".to_string(),
                }
            }
            "READ" => {
                if let Some(n) = words.next().and_then(|n| n.parse::<usize>().ok()) {
                    current = n;
                } else {
                    current += 1;
                }
                format!("={}", len_of(&state.lock().unwrap(), folder, current))
            }
            "RETR" => {
                let st = state.lock().unwrap();
                let data = st.folders[folder]
                    .1
                    .get(current.wrapping_sub(1))
                    .map(|m| wire(&st, m));
                let delay = st.retr_delay;
                drop(st);
                std::thread::sleep(delay);
                match data {
                    Some(d) => {
                        out.write_all(&d)?;
                        continue;
                    }
                    None => "- no message".to_string(),
                }
            }
            "ACKS" | "ACKD" => {
                if verb == "ACKD" {
                    delete.push((folder, current));
                }
                current += 1;
                format!("={}", len_of(&state.lock().unwrap(), folder, current))
            }
            "NACK" => format!("={}", len_of(&state.lock().unwrap(), folder, current)),
            "QUIT" => {
                let mut st = state.lock().unwrap();
                if let Some(text) = st.quit_refusal.clone() {
                    drop(st);
                    out.write_all(format!("- {text}\r\n").as_bytes())?;
                    return Ok(());
                }
                delete.sort();
                delete.dedup();
                for &(f, n) in delete.iter().rev() {
                    if n >= 1 && n <= st.folders[f].1.len() {
                        st.folders[f].1.remove(n - 1);
                    }
                }
                drop(st);
                out.write_all(b"+ bye\r\n")?;
                return Ok(());
            }
            _ => "- unknown command".to_string(),
        };
        out.write_all(reply.as_bytes())?;
        out.write_all(b"\r\n")?;
    }
}
