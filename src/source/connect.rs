//! From an account to a logged-in POP3 session: connect, TLS (implicit or
//! STLS), CAPA, the secret, login. Shared by every command that talks to a
//! POP3 server; `source::open` calls it for POP3 accounts. Also the POP3
//! side of `info`'s probe, which stops before the login.

use crate::config::{Account, TlsMode};
use crate::error::{Error, ExitKind, Result};
use crate::net::{self, Stream, TlsContext};
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

/// A logged-in session plus what the caller should tell the user.
pub struct Opened {
    pub session: Session,
    pub warnings: Vec<String>,
}

/// What to set when `tls = "implicit"` meets a port that greets in plain
/// POP3.
pub const PLAIN_POP3_FIX: &str =
    "set tls = \"starttls\" (or \"none\") for this port, or use the server's TLS port (usually 995)";

/// Connects and greets, with TLS as the account says, and reads CAPA.
pub fn connect(account: &Account, opts: &ConnectOptions) -> Result<Client> {
    let label = opts.trace.then(|| format!("[{}]", account.name));
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
    opts.verbose
        .say(|| match client.stream().tls_description() {
            Some(tls) => format!("{}: connected, {tls}", account.name),
            None => format!("{}: connected, not encrypted", account.name),
        });
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
    let mut warnings = Vec::new();
    let method = client.choose_auth(account.auth)?;
    if !client.is_tls() && method.sends_cleartext() {
        let offers_stls = client.capabilities().has("STLS");
        warn_cleartext(account, opts, method.secret_name(), offers_stls);
    }
    if let Some(delay) = client.capabilities().args("LOGIN-DELAY") {
        if let Some(secs) = delay.first() {
            if opts.trace {
                eprintln!(
                    "[{}] the server allows one login every {secs} s",
                    account.name
                );
            }
        }
    }
    let secret = account.secret()?;
    opts.verbose.say(|| {
        format!(
            "{}: logging in as {} ({})",
            account.name,
            account.user,
            method_label(method)
        )
    });
    let session = client
        .login(method, &account.user, &secret)
        .map_err(|e| login_context(account, e))?;
    if account.keep {
        if let Some(args) = session.capabilities().args("EXPIRE") {
            if args.first().map(String::as_str) == Some("0") {
                warnings.push(format!(
                    "{}: the server says EXPIRE 0: it deletes messages once they are downloaded, even with keep = true",
                    account.name
                ));
            }
        }
    }
    Ok(Opened { session, warnings })
}

/// Says, at once and even with `--quiet` (SPEC §5), that the secret of
/// `account` (its `secret`: "password", "OAuth token") is about to cross
/// the network unencrypted; and how to avoid it when the server offers STLS.
pub fn warn_cleartext(account: &Account, opts: &ConnectOptions, secret: &str, offers_stls: bool) {
    let advice = if offers_stls {
        "; the server offers STLS: set tls = \"starttls\" to protect it"
    } else {
        ""
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

fn login_context(account: &Account, e: Error) -> Error {
    if e.kind() == ExitKind::NoPerm {
        return e.context(format!("logging in as {}", account.user));
    }
    e
}

/// Connects and greets with TLS as the account says (any certificate is
/// accepted, to be shown with its verdict), reads CAPA and leaves without
/// logging in: no secret is sent.
pub fn probe(account: &Account, trace: bool) -> Result<crate::source::Probe> {
    let label = trace.then(|| format!("[{}]", account.name));
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
