//! A loopback OAuth2 server for the tests (plain HTTP on 127.0.0.1): the
//! authorization endpoint (answers a GET with the redirect a browser would
//! follow), the token endpoint (authorization code with its PKCE verifier
//! checked, device code, refresh with or without rotation), the device
//! authorization endpoint (a script of pending / slow_down / denied
//! answers), revocation (RFC 7009) and introspection (RFC 7662, what
//! Dovecot's `oauth2` passdb asks).
//!
//! Tokens are numbered, `at1-…`, `at2-…` and `rt1-…`, so a test knows which
//! access token the next grant gives, and long enough that finding one in
//! popfetch's output cannot be chance. Every request is logged (endpoint
//! and grant type, never a token).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use sha2::{Digest, Sha256};

pub const CLIENT_ID: &str = "popfetch-test-client";

/// The n-th access token the server hands out (from 1).
pub fn access_token(n: usize) -> String {
    format!("at{n}-Zq7vK2pL9xW4mN8rT3yB")
}

/// The n-th refresh token (from 1).
pub fn refresh_token(n: usize) -> String {
    format!("rt{n}-Hs5dF1gJ6kQ0wE2uI7oP")
}

/// What the token endpoint answers a device-code poll, in turn; once the
/// script is used up, the tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Poll {
    Pending,
    SlowDown,
    Denied,
    /// Microsoft's word for Denied.
    Declined,
    Expired,
}

#[derive(Clone, Debug)]
pub struct Config {
    /// The user the tokens are for (introspection's `username`).
    pub username: String,
    /// `expires_in` sent with each access token.
    pub expires_in: u64,
    /// How long the server itself takes an access token as valid
    /// (introspection); `None`: `expires_in`.
    pub lifetime: Option<Duration>,
    /// A new refresh token with every refresh; the old one is void.
    pub rotate: bool,
    /// Give no refresh token at all.
    pub no_refresh: bool,
    pub device_interval: u64,
    pub device_script: Vec<Poll>,
    /// Required with every token request, when set.
    pub client_secret: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            username: "alice".into(),
            expires_in: 3600,
            lifetime: None,
            rotate: false,
            no_refresh: false,
            device_interval: 1,
            device_script: Vec::new(),
            client_secret: None,
        }
    }
}

struct Code {
    challenge: String,
    redirect_uri: String,
}

#[derive(Default)]
struct State {
    log: Vec<String>,
    codes: HashMap<String, Code>,
    next_code: usize,
    /// Device code → answers left.
    devices: HashMap<String, Vec<Poll>>,
    /// When each device poll arrived.
    polls: Vec<Instant>,
    /// Token → valid until.
    access: HashMap<String, Instant>,
    refresh: HashMap<String, bool>,
    issued_access: usize,
    issued_refresh: usize,
    sockets: Vec<TcpStream>,
    threads: Vec<JoinHandle<()>>,
}

struct Shared {
    cfg: Config,
    stop: AtomicBool,
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running OAuth server; stops on drop.
pub struct OAuthServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    acceptor: Option<JoinHandle<()>>,
}

impl OAuthServer {
    pub fn start(cfg: Config) -> OAuthServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            cfg,
            stop: AtomicBool::new(false),
            state: Mutex::new(State::default()),
        });
        let sh = shared.clone();
        let acceptor = thread::Builder::new()
            .name("oauth-test-accept".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    if sh.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let mut st = sh.lock();
                    if let Ok(c) = stream.try_clone() {
                        st.sockets.push(c);
                    }
                    let sh2 = sh.clone();
                    st.threads.push(thread::spawn(move || serve(stream, &sh2)));
                }
            })
            .unwrap();
        OAuthServer {
            shared,
            addr,
            acceptor: Some(acceptor),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.addr.port())
    }

    /// The config keys of an account or target signing in here.
    pub fn keys(&self) -> String {
        format!(
            "oauth_auth_url = \"{}\"\noauth_token_url = \"{}\"\noauth_device_url = \"{}\"\noauth_scopes = [\"mail\", \"offline\"]\noauth_client_id = \"{CLIENT_ID}\"\n",
            self.url("/authorize"),
            self.url("/token"),
            self.url("/device")
        )
    }

    /// "authorize", "token authorization_code", "device", "token refresh_token"…
    pub fn log(&self) -> Vec<String> {
        self.shared.lock().log.clone()
    }

    pub fn count(&self, entry: &str) -> usize {
        self.log().iter().filter(|l| *l == entry).count()
    }

    /// When each device-code poll arrived.
    pub fn polls(&self) -> Vec<Instant> {
        self.shared.lock().polls.clone()
    }

    /// Every token handed out so far.
    pub fn issued(&self) -> Vec<String> {
        let st = self.shared.lock();
        (1..=st.issued_access)
            .map(access_token)
            .chain((1..=st.issued_refresh).map(refresh_token))
            .collect()
    }

    /// Revokes every refresh token (what a user does in the provider's
    /// account settings).
    pub fn revoke_all(&self) {
        for valid in self.shared.lock().refresh.values_mut() {
            *valid = false;
        }
    }

    /// Ends the life of every access token now (the server's view only).
    pub fn expire_access_tokens(&self) {
        let past = Instant::now() - Duration::from_secs(1);
        for until in self.shared.lock().access.values_mut() {
            *until = past;
        }
    }
}

impl Drop for OAuthServer {
    fn drop(&mut self) {
        let shared = &self.shared;
        super::server::stop_server(&shared.stop, self.addr, self.acceptor.take(), || {
            let mut st = shared.lock();
            (
                std::mem::take(&mut st.sockets),
                std::mem::take(&mut st.threads),
            )
        });
    }
}

/// A plain HTTP GET, for the tests' "browser": status line, headers (lower
/// case names) and body.
pub fn http_get(url: &str) -> (u16, HashMap<String, String>, String) {
    let rest = url.strip_prefix("http://").expect("http:// URL");
    let (hostport, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut s = TcpStream::connect(hostport).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /{path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

pub fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if b.len() >= i + 3 => {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub fn form(s: &str) -> HashMap<String, String> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn serve(stream: TcpStream, sh: &Shared) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let Ok(clone) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(clone);
    let mut out = stream;
    // Keep-alive: Dovecot's HTTP client may send several requests.
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0usize;
        let mut close = false;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h == "\r\n" || h == "\n" {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.trim().eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap_or(0);
                }
                if k.trim().eq_ignore_ascii_case("connection")
                    && v.trim().eq_ignore_ascii_case("close")
                {
                    close = true;
                }
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("").to_string();
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let params = if method == "POST" {
            form(&String::from_utf8_lossy(&body))
        } else {
            form(query)
        };
        let (status, headers, reply) = handle(sh, &method, path, &params);
        let mut head = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n", reply.len());
        for h in headers {
            head.push_str(&h);
            head.push_str("\r\n");
        }
        head.push_str("Content-Type: application/json\r\n\r\n");
        if out.write_all(head.as_bytes()).is_err() || out.write_all(reply.as_bytes()).is_err() {
            return;
        }
        let _ = out.flush();
        if close {
            // A clone of the socket is kept for the shutdown on drop: say
            // the end outright.
            let _ = out.shutdown(Shutdown::Both);
            return;
        }
    }
}

fn oauth_error(error: &str) -> (&'static str, Vec<String>, String) {
    (
        "400 Bad Request",
        Vec::new(),
        format!("{{\"error\":\"{error}\",\"error_description\":\"test server: {error}\"}}"),
    )
}

fn handle(
    sh: &Shared,
    method: &str,
    path: &str,
    p: &HashMap<String, String>,
) -> (&'static str, Vec<String>, String) {
    let cfg = &sh.cfg;
    let get = |k: &str| p.get(k).cloned().unwrap_or_default();
    let mut st = sh.lock();
    match (method, path) {
        ("GET", "/authorize") => {
            st.log.push("authorize".into());
            if get("client_id") != CLIENT_ID
                || get("response_type") != "code"
                || get("code_challenge_method") != "S256"
                || get("code_challenge").len() != 43
                || get("state").is_empty()
            {
                return ("400 Bad Request", Vec::new(), "{}".into());
            }
            st.next_code += 1;
            let code = format!("code{}", st.next_code);
            st.codes.insert(
                code.clone(),
                Code {
                    challenge: get("code_challenge"),
                    redirect_uri: get("redirect_uri"),
                },
            );
            // As a browser goes there: an empty path is `/`.
            let mut base = get("redirect_uri");
            if base.matches('/').count() == 2 {
                base.push('/');
            }
            let location = format!(
                "{base}?code={}&state={}",
                encode(&code),
                encode(&get("state"))
            );
            (
                "302 Found",
                vec![format!("Location: {location}")],
                String::new(),
            )
        }
        ("POST", "/device") => {
            st.log.push("device".into());
            if get("client_id") != CLIENT_ID {
                return oauth_error("invalid_client");
            }
            let code = format!("dev{}", st.devices.len() + 1);
            st.devices.insert(code.clone(), cfg.device_script.clone());
            (
                "200 OK",
                Vec::new(),
                format!(
                    "{{\"device_code\":\"{code}\",\"user_code\":\"WDJB-MJHT\",\"verification_uri\":\"https://example.com/device\",\"expires_in\":60,\"interval\":{}}}",
                    cfg.device_interval
                ),
            )
        }
        ("POST", "/token") => {
            let grant = get("grant_type");
            st.log.push(format!("token {grant}"));
            if get("client_id") != CLIENT_ID {
                return oauth_error("invalid_client");
            }
            if cfg.client_secret.is_some() && p.get("client_secret") != cfg.client_secret.as_ref() {
                return oauth_error("invalid_client");
            }
            let mut refresh: Option<Option<String>> = None;
            match grant.as_str() {
                "authorization_code" => {
                    let Some(c) = st.codes.remove(&get("code")) else {
                        return oauth_error("invalid_grant");
                    };
                    let verifier = B64URL.encode(Sha256::digest(get("code_verifier").as_bytes()));
                    if c.challenge != verifier || c.redirect_uri != get("redirect_uri") {
                        return oauth_error("invalid_grant");
                    }
                }
                "urn:ietf:params:oauth:grant-type:device_code" => {
                    st.polls.push(Instant::now());
                    let Some(script) = st.devices.get_mut(&get("device_code")) else {
                        return oauth_error("invalid_grant");
                    };
                    if !script.is_empty() {
                        let answer = match script.remove(0) {
                            Poll::Pending => "authorization_pending",
                            Poll::SlowDown => "slow_down",
                            Poll::Denied => "access_denied",
                            Poll::Declined => "authorization_declined",
                            Poll::Expired => "expired_token",
                        };
                        return oauth_error(answer);
                    }
                    st.devices.remove(&get("device_code"));
                }
                "refresh_token" => {
                    let rt = get("refresh_token");
                    if st.refresh.get(&rt) != Some(&true) {
                        return oauth_error("invalid_grant");
                    }
                    if cfg.rotate {
                        st.refresh.insert(rt, false);
                    } else {
                        refresh = Some(None);
                    }
                }
                _ => return oauth_error("unsupported_grant_type"),
            }
            st.issued_access += 1;
            let at = access_token(st.issued_access);
            let life = cfg.lifetime.unwrap_or(Duration::from_secs(cfg.expires_in));
            st.access.insert(at.clone(), Instant::now() + life);
            let rt = match refresh {
                // A refresh without rotation: no new refresh token.
                Some(None) => None,
                _ if cfg.no_refresh => None,
                _ => {
                    st.issued_refresh += 1;
                    let rt = refresh_token(st.issued_refresh);
                    st.refresh.insert(rt.clone(), true);
                    Some(rt)
                }
            };
            let rt = rt
                .map(|r| format!(",\"refresh_token\":\"{r}\""))
                .unwrap_or_default();
            (
                "200 OK",
                vec!["Cache-Control: no-store".into()],
                format!(
                    "{{\"access_token\":\"{at}\",\"token_type\":\"Bearer\",\"expires_in\":{}{rt}}}",
                    cfg.expires_in
                ),
            )
        }
        ("POST", "/revoke") => {
            st.log.push("revoke".into());
            let t = get("token");
            if let Some(v) = st.refresh.get_mut(&t) {
                *v = false;
            }
            st.access.remove(&t);
            ("200 OK", Vec::new(), "{}".into())
        }
        ("POST", "/introspect") => {
            st.log.push("introspect".into());
            let active = st
                .access
                .get(&get("token"))
                .is_some_and(|until| *until > Instant::now());
            let body = if active {
                format!(
                    "{{\"active\":true,\"username\":\"{}\",\"scope\":\"mail\"}}",
                    cfg.username
                )
            } else {
                "{\"active\":false}".to_string()
            };
            ("200 OK", Vec::new(), body)
        }
        _ => ("404 Not Found", Vec::new(), "{}".into()),
    }
}
