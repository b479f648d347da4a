//! From an account to a logged-in session: connect, TLS (implicit or
//! STLS/STARTTLS), capabilities, the secret, login. The pieces that do not
//! depend on the protocol (reaching the server with TLS as the account
//! says, the `-v` lines, the cleartext warning, the login's context) serve
//! POP3 and IMAP alike; `source::open` calls [`open`] for POP3 accounts
//! and [`open_imap`] for IMAP ones. Also `info`'s probe ([`probe`],
//! [`probe_imap`]), which stops before the login.

use crate::config::secret::Secret;
use crate::config::{Account, TlsMode};
use crate::error::{Error, ExitKind, Result};
use crate::net::{self, Stream, TlsContext};
use crate::source::imap;
use crate::source::pop3::auth::AuthMethod;
use crate::source::pop3::{Client, Session};
use crate::ui::notice::{Alerts, Verbose};

/// Options that shape how a session is opened.
#[derive(Clone, Debug, Default)]
pub struct ConnectOptions {
    /// Print the protocol dialogue (secrets redacted) on stderr.
    pub trace: bool,
    /// Where a warning about a secret sent in clear goes (at once).
    pub alerts: Alerts,
    /// `-v`: a line per step.
    pub verbose: Verbose,
}

/// The `-v` and `-vv` lines of an OAuth refresh, for `account` under
/// `opts` (a macro: the closures must live as long as the call).
macro_rules! oauth_log {
    ($account:expr, $opts:expr) => {
        crate::oauth::Log {
            verbose: &|line: &str| $opts.verbose.say(|| line.to_string()),
            trace: $opts
                .trace
                .then_some(&|line: &str| eprintln!("[{}] {line}", $account.name)),
        }
    };
}

/// A logged-in session plus what the caller should tell the user.
pub struct Opened {
    pub session: Session,
    pub warnings: Vec<String>,
}

/// What to set when `tls = "implicit"` meets a port that greets in plain
/// POP3.
pub const PLAIN_POP3_FIX: &str =
    "set tls = \"starttls\" (or \"none\") for this port, or use the server's TLS port (usually 995)";

/// What to set when `tls = "implicit"` meets a port that greets in plain
/// IMAP.
pub const PLAIN_IMAP_FIX: &str =
    "set tls = \"starttls\" (or \"none\") for this port, or use the server's TLS port (usually 993)";

/// `-v`: where the session goes, before it connects.
fn say_connecting(account: &Account, opts: &ConnectOptions) {
    opts.verbose.say(|| {
        let tls = match account.tls {
            TlsMode::Implicit => "TLS",
            TlsMode::StartTls => "STARTTLS",
            TlsMode::None => "no TLS",
        };
        format!(
            "{}: connecting to {}:{} ({tls})",
            account.name, account.host, account.port
        )
    });
}

/// `-v`: how the connection is protected, once it is up.
fn say_connected(account: &Account, opts: &ConnectOptions, stream: &Stream) {
    opts.verbose.say(|| match stream.tls_description() {
        Some(tls) => format!("{}: connected, {tls}", account.name),
        None => format!("{}: connected, not encrypted", account.name),
    });
}

/// Reaches the server: TCP, then at once TLS with `implicit`; otherwise the
/// plain connection, once the server has greeted in plain text (for the
/// protocol's own STARTTLS, or none). `plain_fix` says what to set when an
/// implicit-TLS port greets in plain text.
fn reach(account: &Account, tls: Option<&TlsContext>, plain_fix: &str) -> Result<Stream> {
    let tcp = net::connect(&account.host, account.port, account.timeout)?;
    match (account.tls, tls) {
        (TlsMode::Implicit, Some(tls)) => tls.wrap_implicit(tcp, &account.host, plain_fix),
        _ => {
            net::await_plain_greeting(&tcp, &account.host, account.timeout)?;
            Ok(Stream::Plain(tcp))
        }
    }
}

/// The TLS settings of a login (`None` with `tls = "none"`).
fn login_tls(account: &Account) -> Result<Option<TlsContext>> {
    if account.tls == TlsMode::None {
        return Ok(None);
    }
    Ok(Some(
        TlsContext::new(&account.trust)?.for_account(&account.name),
    ))
}

/// Connects and greets, with TLS as the account says, and reads CAPA.
pub fn connect(account: &Account, opts: &ConnectOptions) -> Result<Client> {
    let label = opts.trace.then(|| format!("[{}]", account.name));
    say_connecting(account, opts);
    let tcp = net::connect(&account.host, account.port, account.timeout)?;
    if account.tls != TlsMode::Implicit {
        net::await_plain_greeting(&tcp, &account.host, account.timeout)?;
    }
    let client = match account.tls {
        TlsMode::Implicit => {
            let tls = TlsContext::new(&account.trust)?.for_account(&account.name);
            let stream = tls.wrap_implicit(tcp, &account.host, PLAIN_POP3_FIX)?;
            let mut client = Client::new(stream, &account.host, label)?;
            client.refresh_capa()?;
            client
        }
        TlsMode::StartTls => {
            let tls = TlsContext::new(&account.trust)?.for_account(&account.name);
            let mut client = Client::new(Stream::Plain(tcp), &account.host, label)?;
            client.refresh_capa()?;
            client.starttls(&tls)?
        }
        TlsMode::None => {
            let mut client = Client::new(Stream::Plain(tcp), &account.host, label)?;
            client.refresh_capa()?;
            client
        }
    };
    say_connected(account, opts, client.stream());
    Ok(client)
}

/// Connects and logs in, calling `logging_in` once the server has greeted
/// (and TLS is up), for a progress display.
pub fn open(
    account: &Account,
    opts: &ConnectOptions,
    logging_in: &(dyn Fn() + Sync),
) -> Result<Opened> {
    let client = connect(account, opts)?;
    logging_in();
    let method = client.choose_auth(account.auth)?;
    if !client.is_tls() && method.sends_cleartext() {
        let offers_stls = client.capabilities().has("STLS");
        warn_cleartext(account, opts, method.secret_name(), offers_stls);
    }
    let secret = account.secret_noting(oauth_log!(account, opts))?;
    opts.verbose.say(|| {
        format!(
            "{}: logging in as {} ({})",
            account.name,
            account.user,
            method_label(method)
        )
    });
    let session = match client.login(method, &account.user, &secret) {
        Ok(session) => session,
        Err(e) => match retry_secret(account, opts, &e, &secret)? {
            // A new connection: after a refused AUTH some servers end the
            // session, and the ones that do not may count the failure.
            Some(fresh) => connect(account, opts)?
                .login(method, &account.user, &fresh)
                .map_err(|e| login_context(account, e))?,
            None => return Err(login_context(account, e)),
        },
    };
    // RFC 2449 §6.5: the figure after the login is the one that applies
    // to this user (before it, a server may say only `USER`).
    if let Some(secs) = session
        .capabilities()
        .args("LOGIN-DELAY")
        .and_then(|args| args.first())
        .and_then(|secs| secs.parse::<u64>().ok())
    {
        opts.verbose.say(|| {
            format!(
                "{}: the server allows one login every {secs} s (LOGIN-DELAY): syncing more often gets \"try later\" (exit 75)",
                account.name
            )
        });
    }
    Ok(Opened {
        session,
        warnings: Vec::new(),
    })
}

/// Says, at once and even with `--quiet` (SPEC §5), that the secret of
/// `account` (its `secret`: "password", "OAuth token") is about to cross
/// the network unencrypted; and how to avoid it when the server offers STLS.
pub fn warn_cleartext(account: &Account, opts: &ConnectOptions, secret: &str, offers_stls: bool) {
    warn_cleartext_offering(account, opts, secret, offers_stls.then_some("STLS"));
}

/// [`warn_cleartext`] for any protocol: `upgrade` names the command the
/// server offers to start TLS (STLS, STARTTLS), if it offers one.
fn warn_cleartext_offering(
    account: &Account,
    opts: &ConnectOptions,
    secret: &str,
    upgrade: Option<&str>,
) {
    let advice = match upgrade {
        Some(command) => {
            format!("; the server offers {command}: set tls = \"starttls\" to protect it")
        }
        None => String::new(),
    };
    opts.alerts.security(&format!(
        "{}: sending the {secret} unencrypted (tls = \"none\"); anyone on the network path can read it{advice}",
        account.name
    ));
}

/// How `-v` names a login method: its SASL name, or the RFC 1939 command.
fn method_label(method: AuthMethod) -> &'static str {
    match method {
        AuthMethod::User => "USER/PASS",
        AuthMethod::Apop => "APOP",
        other => other.sasl_name().unwrap_or(other.name()),
    }
}

/// When the server refused an OAuth access token: the token once more,
/// refreshed (the provider may have revoked it before its expiry, or the
/// clocks disagree), to log in again once. `None`: no second try (a
/// password, or a failure other than the refusal of the login).
fn retry_secret(
    account: &Account,
    opts: &ConnectOptions,
    e: &Error,
    rejected: &Secret,
) -> Result<Option<Secret>> {
    if e.kind() != ExitKind::NoPerm || e.server_reply().is_none() {
        return Ok(None);
    }
    let fresh = account.secret_after_refusal(rejected, oauth_log!(account, opts))?;
    if fresh.is_some() {
        opts.verbose.say(|| {
            format!(
                "{}: the server refused the OAuth access token; logging in again with a fresh one",
                account.name
            )
        });
    }
    Ok(fresh)
}

fn login_context(account: &Account, e: Error) -> Error {
    if e.kind() == ExitKind::NoPerm {
        return e.context(format!("logging in as {}", account.user));
    }
    e
}

/// Connects and greets with TLS as the account says (any certificate is
/// accepted, to be shown with its verdict), reads CAPA and leaves without
/// logging in: no secret is sent.
pub fn probe(account: &Account, opts: &ConnectOptions) -> Result<crate::source::Probe> {
    let label = opts.trace.then(|| format!("[{}]", account.name));
    say_connecting(account, opts);
    let tcp = net::connect(&account.host, account.port, account.timeout)?;
    if account.tls != TlsMode::Implicit {
        net::await_plain_greeting(&tcp, &account.host, account.timeout)?;
    }
    let tls = TlsContext::for_probe(&account.trust)?;
    let client = match account.tls {
        TlsMode::Implicit => {
            let stream = tls.wrap_implicit(tcp, &account.host, PLAIN_POP3_FIX)?;
            let mut c = Client::new(stream, &account.host, label)?;
            c.refresh_capa()?;
            c
        }
        TlsMode::StartTls => {
            let mut c = Client::new(Stream::Plain(tcp), &account.host, label)?;
            c.refresh_capa()?;
            c.starttls(&tls)?
        }
        TlsMode::None => {
            let mut c = Client::new(Stream::Plain(tcp), &account.host, label)?;
            c.refresh_capa()?;
            c
        }
    };
    say_connected(account, opts, client.stream());
    let caps = client.capabilities();
    let capabilities = caps.known.then(|| {
        caps.names()
            .map(|n| match caps.args(n) {
                Some(args) if !args.is_empty() => format!("{n} {}", args.join(" ")),
                _ => n.to_string(),
            })
            .collect()
    });
    let stream = client.stream();
    let probe = crate::source::Probe {
        greeting: client.greeting().to_string(),
        capabilities,
        tls: stream.tls_description(),
        peer_certificates: stream.peer_certificates(),
        trusted: if stream.is_tls() { tls.verdict() } else { None },
    };
    client.quit();
    Ok(probe)
}

/// A logged-in IMAP session plus what the caller should tell the user.
pub struct ImapOpened {
    pub session: imap::Session,
    pub warnings: Vec<String>,
}

/// Connects to an IMAP server with TLS as the account says (STARTTLS is
/// never skipped: a server that cannot do it is refused), reads
/// CAPABILITY.
pub fn connect_imap(account: &Account, opts: &ConnectOptions) -> Result<imap::Client> {
    let label = opts.trace.then(|| format!("[{}]", account.name));
    say_connecting(account, opts);
    let tls = login_tls(account)?;
    let stream = reach(account, tls.as_ref(), PLAIN_IMAP_FIX)?;
    let mut client = imap::Client::new(stream, &account.host, label)?;
    let client = match (account.tls, &tls) {
        (TlsMode::StartTls, Some(tls)) => client.starttls(tls)?,
        _ => {
            if !client.capabilities().known {
                client.refresh_capabilities()?;
            }
            client
        }
    };
    say_connected(account, opts, client.stream());
    Ok(client)
}

/// Connects and logs in to an IMAP server, calling `logging_in` once it
/// has greeted (and TLS is up). `[ALERT]`s of the server so far come back
/// as warnings. A server that greets with PREAUTH is not sent the secret
/// (nor is it asked for).
pub fn open_imap(
    account: &Account,
    opts: &ConnectOptions,
    logging_in: &(dyn Fn() + Sync),
) -> Result<ImapOpened> {
    let mut client = connect_imap(account, opts)?;
    logging_in();
    let mut warnings = alert_warnings(account, client.take_alerts());
    let (method, secret) = if client.is_preauth() {
        opts.verbose
            .say(|| format!("{}: logged in by the server (PREAUTH)", account.name));
        (account.auth, Secret::new(String::new()))
    } else {
        let method = client.choose_auth(account.auth)?;
        if !client.is_tls() && method.sends_cleartext() {
            let upgrade = client.capabilities().has("STARTTLS").then_some("STARTTLS");
            warn_cleartext_offering(account, opts, method.secret_name(), upgrade);
        }
        let secret = account.secret_noting(oauth_log!(account, opts))?;
        opts.verbose.say(|| {
            let label = match method {
                AuthMethod::User => "LOGIN",
                other => other.sasl_name().unwrap_or(other.name()),
            };
            format!("{}: logging in as {} ({label})", account.name, account.user)
        });
        (method, secret)
    };
    let mut session = match client.login(method, &account.user, &secret) {
        Ok(session) => session,
        Err(e) => match retry_secret(account, opts, &e, &secret)? {
            Some(fresh) => connect_imap(account, opts)?
                .login(method, &account.user, &fresh)
                .map_err(|e| login_context(account, e))?,
            None => return Err(login_context(account, e)),
        },
    };
    warnings.extend(alert_warnings(account, session.take_alerts()));
    Ok(ImapOpened { session, warnings })
}

/// A server's `[ALERT]` texts (already escaped) as warnings: RFC 3501 §7.1
/// wants the user to see them.
pub fn alert_warnings(account: &Account, alerts: Vec<String>) -> Vec<String> {
    alerts
        .into_iter()
        .map(|a| format!("{}: the server says: {a}", account.name))
        .collect()
}

/// Connects and greets an IMAP server with TLS as the account says (any
/// certificate is accepted, to be shown with its verdict), asks
/// CAPABILITY and leaves without logging in: no secret is sent.
pub fn probe_imap(account: &Account, opts: &ConnectOptions) -> Result<crate::source::Probe> {
    let label = opts.trace.then(|| format!("[{}]", account.name));
    say_connecting(account, opts);
    let tls = TlsContext::for_probe(&account.trust)?;
    let stream = reach(account, Some(&tls), PLAIN_IMAP_FIX)?;
    let mut client = imap::Client::new(stream, &account.host, label)?;
    let client = if account.tls == TlsMode::StartTls {
        client.starttls(&tls)?
    } else {
        if !client.capabilities().known {
            client.refresh_capabilities()?;
        }
        client
    };
    // Atoms cannot hold control characters, but what is shown is escaped
    // all the same: it comes from a server not yet trusted.
    let capabilities = Some(
        client
            .capabilities()
            .names()
            .map(crate::ui::term::escape_controls)
            .collect(),
    );
    say_connected(account, opts, client.stream());
    let stream = client.stream();
    let probe = crate::source::Probe {
        greeting: client.greeting().to_string(),
        capabilities,
        tls: stream.tls_description(),
        peer_certificates: stream.peer_certificates(),
        trusted: if stream.is_tls() { tls.verdict() } else { None },
    };
    client.logout();
    Ok(probe)
}
