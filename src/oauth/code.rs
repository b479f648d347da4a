//! `popfetch login`: the authorization code grant with PKCE (RFC 7636),
//! redirected to a loopback listener on 127.0.0.1 at a free port (RFC 8252
//! §7.3). The URL is always printed, and handed to a browser where there
//! is one; the listener takes the one redirect whose `state` is ours.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use super::{pkce, token, OAuth};
use crate::error::{Error, ExitKind, Result};

/// How long the listener waits for the browser.
const WAIT: Duration = Duration::from_secs(300);

/// Signs in in a browser and stores the tokens. `say` prints a line for
/// the user. Returns whether a refresh token came with them.
pub fn login(oauth: &OAuth, say: &dyn Fn(&str), trace: Option<&dyn Fn(&str)>) -> Result<bool> {
    let Some(auth_url) = &oauth.auth_url else {
        return Err(Error::config(format!(
            "`{}` has no oauth_auth_url: set it, or sign in with `popfetch login --device`",
            oauth.login_account
        )));
    };
    let client_id = oauth.client_id()?.to_string();
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| {
        Error::with_source(
            ExitKind::Io,
            "cannot listen on 127.0.0.1 for the sign-in",
            e,
        )
    })?;
    let port = listener
        .local_addr()
        .map_err(|e| Error::local_io("the listener", e))?
        .port();
    // No path: Google documents its loopback redirect as exactly this,
    // and Microsoft matches a registered http://127.0.0.1 with any port.
    let redirect_uri = format!("http://127.0.0.1:{port}");
    let state = pkce::random_string(16)?;
    let verifier = pkce::random_string(32)?;
    let mut params: Vec<(&str, String)> = vec![
        ("response_type", "code".into()),
        ("client_id", client_id),
        ("redirect_uri", redirect_uri.clone()),
        ("state", state.clone()),
        ("code_challenge", pkce::challenge(&verifier)),
        ("code_challenge_method", "S256".into()),
    ];
    if !oauth.scopes.is_empty() {
        params.push(("scope", oauth.scopes.join(" ")));
    }
    if let Some(p) = oauth.provider {
        params.extend(p.auth_params().iter().map(|(k, v)| (*k, v.to_string())));
    }
    let query: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{k}={}", pkce::encode(v)))
        .collect();
    let sep = if auth_url.contains('?') { '&' } else { '?' };
    let url = format!("{auth_url}{sep}{}", query.join("&"));
    say("Open this address in a browser and sign in:");
    say(&format!("  {url}"));
    open_browser(&url);
    say(&format!(
        "waiting for the browser at {redirect_uri} (Ctrl-C to give up) ..."
    ));
    let code = receive(&listener, &state)?;
    let grant = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", redirect_uri.as_str()),
        ("code_verifier", verifier.as_str()),
    ];
    let granted = token::request(oauth, &grant, trace)?
        .map_err(|r| token::refused(oauth, "exchanging the authorization code", &r))?;
    super::keep(oauth, granted)
}

/// Hands the URL to the desktop's browser, if there is a desktop. Never
/// fatal: the URL is printed anyway.
fn open_browser(url: &str) {
    let desktop = std::env::var_os("DISPLAY").is_some_and(|v| !v.is_empty())
        || std::env::var_os("WAYLAND_DISPLAY").is_some_and(|v| !v.is_empty());
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else if desktop {
        "xdg-open"
    } else {
        return;
    };
    let _ = std::process::Command::new(opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
}

/// Waits for the redirect that carries our `state` and returns its code.
/// Other requests (a favicon) get a 404; a redirect with a wrong `state`
/// is refused, since it did not come from the login we started.
fn receive(listener: &TcpListener, state: &str) -> Result<String> {
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::local_io("the listener", e))?;
    let deadline = Instant::now() + WAIT;
    loop {
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() > deadline {
                    return Err(Error::new(
                        ExitKind::TempFail,
                        format!(
                            "no sign-in arrived within {} minutes; run popfetch login again",
                            WAIT.as_secs() / 60
                        ),
                    ));
                }
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            Err(e) => return Err(Error::local_io("accepting the browser's request", e)),
        };
        if let Some(outcome) = answer(stream, state) {
            return outcome;
        }
    }
}

/// Reads one request; `None` when it was not the redirect.
fn answer(mut stream: TcpStream, state: &str) -> Option<Result<String>> {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    // The rest of the head is read so the browser sees a clean reply.
    let mut header = String::new();
    while reader.read_line(&mut header).ok()? > 2 {
        header.clear();
    }
    let target = line.split_whitespace().nth(1).unwrap_or("");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let pairs = pkce::query_pairs(query);
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    if path != "/" || (get("code").is_none() && get("error").is_none()) {
        reply(&mut stream, "404 Not Found", "Not the popfetch sign-in.");
        return None;
    }
    if get("state").as_deref() != Some(state) {
        reply(
            &mut stream,
            "400 Bad Request",
            "This sign-in was not started by this popfetch login. Run popfetch login again.",
        );
        return Some(Err(Error::new(
            ExitKind::NoPerm,
            "the browser came back with a `state` this login did not send (an old tab, or \
             someone else's sign-in): nothing was stored; run popfetch login again",
        )));
    }
    if let Some(error) = get("error") {
        reply(
            &mut stream,
            "200 OK",
            "Sign-in refused. You can close this tab.",
        );
        let detail = get("error_description")
            .map(|d| format!(" ({})", crate::ui::term::escape_controls(&d)))
            .unwrap_or_default();
        return Some(Err(Error::new(
            ExitKind::NoPerm,
            format!(
                "the provider did not sign you in: {}{detail}",
                crate::ui::term::escape_controls(&error)
            ),
        )));
    }
    reply(
        &mut stream,
        "200 OK",
        "popfetch is signed in. You can close this tab.",
    );
    get("code").map(Ok)
}

fn reply(stream: &mut TcpStream, status: &str, text: &str) {
    let body = format!("<!doctype html><title>popfetch</title><p>{text}</p>\n");
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.flush();
}
