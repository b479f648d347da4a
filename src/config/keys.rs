//! The names the file may use: one list per table feeds the reader (unknown
//! keys), "did you mean" and the documentation (`popfetch man`).

use std::sync::LazyLock;

/// Where an account's server is and how it is spoken to.
const ACCOUNT_SERVER_KEYS: &[(&str, &str)] = &[
    ("host", "server name (required)"),
    ("user", "login name (required)"),
    (
        "protocol",
        "pop3 (default) | pop2 (RFC 937; port 109) | imap (port 993, or 143 with STARTTLS)",
    ),
    ("tls", "implicit | starttls | none"),
    (
        "port",
        "server port (995 with implicit TLS, else 110; IMAP: 993, else 143)",
    ),
    (
        "auth",
        "auto | user | apop | plain | login | cram-md5 | xoauth2 | oauthbearer",
    ),
];

/// Where the secret comes from, for an account or a `[targets.NAME]` table.
const SECRET_KEYS: &[(&str, &str)] = &[
    (
        "password",
        "the password (only in a file readable by you alone)",
    ),
    (
        "password_command",
        "shell command printing the password or token",
    ),
];

/// OAuth2 sign-in (`popfetch login`), for an account or a table.
pub(super) const OAUTH_KEYS: &[(&str, &str)] = &[
    (
        "oauth",
        "OAuth2 sign-in (`popfetch login`): google | microsoft (endpoints and scopes built in)",
    ),
    (
        "oauth_auth_url",
        "OAuth2 authorization endpoint (browser sign-in)",
    ),
    ("oauth_token_url", "OAuth2 token endpoint"),
    (
        "oauth_device_url",
        "OAuth2 device authorization endpoint (`popfetch login --device`)",
    ),
    ("oauth_scopes", "OAuth2 scopes to ask for (a list)"),
    (
        "oauth_client_id",
        "the OAuth2 client id you registered with the provider",
    ),
    (
        "oauth_client_secret",
        "the OAuth2 client secret, where the provider gives one",
    ),
    (
        "oauth_client_secret_command",
        "shell command printing the OAuth2 client secret",
    ),
];

/// How a server's certificate is trusted, for an account or a table.
const TRUST_KEYS: &[(&str, &str)] = &[
    ("ca_file", "PEM file with extra trust anchors"),
    (
        "tls_fingerprint",
        "pin the server certificate: \"sha256:AB:CD:…\" or a list",
    ),
];

/// Where an account's mail goes: one of these (`deliver_to` with lmtp
/// or smtp).
const DELIVERY_KEYS: &[(&str, &str)] = &[
    ("maildir", "deliver into this Maildir"),
    ("mbox", "deliver into this mbox file (mboxrd)"),
    ("mda", "deliver by piping to this command"),
    (
        "imap_target",
        "deliver by IMAP APPEND into the mailbox of this [targets.NAME] table",
    ),
    (
        "lmtp",
        "deliver to this LMTP server: \"unix:/run/dovecot/lmtp\" or \"lmtp://host:port\"",
    ),
    (
        "smtp",
        "deliver to this SMTP server: \"smtp://host:port\" or \"smtps://host:port\"",
    ),
    (
        "deliver_to",
        "lmtp/smtp: the envelope recipient (default: your local user name)",
    ),
];

/// The keys of an SMTP relay's login and trust: only with `smtp`.
pub(super) const SMTP_KEYS: &[(&str, &str)] = &[
    (
        "smtp_user",
        "smtp: log in to the relay as this user (AUTH, only over TLS)",
    ),
    ("smtp_auth", "smtp: auto | plain | login | cram-md5"),
    (
        "smtp_password",
        "smtp: the relay's password (only in a file readable by you alone)",
    ),
    (
        "smtp_password_command",
        "smtp: shell command printing the relay's password",
    ),
    (
        "smtp_ca_file",
        "smtp: PEM file with extra trust anchors for the relay",
    ),
    (
        "smtp_tls_fingerprint",
        "smtp: pin the relay's certificate: \"sha256:AB:CD:…\" or a list",
    ),
];

/// How long a server may take, for an account or a table.
const TIMEOUT_KEY: (&str, &str) = (
    "timeout",
    "seconds for the name lookup, connect and each read or write (default 60)",
);

/// What an account does with its mail, and how often.
const POLICY_KEYS: &[(&str, &str)] = &[
    ("keep", "leave messages on the server (default true)"),
    ("keep_days", "with keep: delete N days after the first download"),
    ("max_size", "leave larger messages on the server"),
    ("filter", "command deciding from the headers"),
    TIMEOUT_KEY,
    ("command_timeout", "seconds the mda, filter or password_command may run before it is killed with its children (default 300)"),
    ("folder", "POP2 mailbox"),
    ("folders", "IMAP: the folders to fetch from (default [\"INBOX\"])"),
    ("fetch", "IMAP: new (not fetched before, the default) | unseen (no \\Seen flag)"),
    ("mark_seen", "IMAP: set \\Seen on each message once it is delivered (default false)"),
    ("move_to", "IMAP: move to this folder instead of deleting"),
    ("idle", "IMAP: let `watch` wait for new mail with IDLE"),
    ("interval", "how often `watch` syncs the account: \"30s\", \"5m\" (the default), \"1h\""),
];

/// Every account key, with what it takes: the lists above, in the order
/// the documentation gives them.
pub static ACCOUNT_KEYS: LazyLock<Vec<(&str, &str)>> = LazyLock::new(|| {
    [
        ACCOUNT_SERVER_KEYS,
        SECRET_KEYS,
        OAUTH_KEYS,
        TRUST_KEYS,
        DELIVERY_KEYS,
        SMTP_KEYS,
        POLICY_KEYS,
    ]
    .concat()
});

/// Where a `[targets.NAME]` mailbox is and how it is logged in to.
const TARGET_SERVER_KEYS: &[(&str, &str)] = &[
    (
        "url",
        "imaps://host[:port]/FOLDER (or imap:// with STARTTLS; folder default INBOX)",
    ),
    ("user", "login name (required)"),
    (
        "auth",
        "auto | user | plain | login | cram-md5 | xoauth2 | oauthbearer",
    ),
];

/// Every key of a `[targets.NAME]` table (an IMAP mailbox to append to).
pub static TARGET_KEYS: LazyLock<Vec<(&str, &str)>> = LazyLock::new(|| {
    [
        TARGET_SERVER_KEYS,
        SECRET_KEYS,
        OAUTH_KEYS,
        TRUST_KEYS,
        &[TIMEOUT_KEY],
    ]
    .concat()
});

/// Keys that belong to features not built yet: refused, never ignored.
pub(super) const NOT_YET: &[&str] = &[];

/// The keys outside any section.
pub(super) const TOP_KEYS: &[&str] = &["state_dir", "defaults", "accounts", "targets"];

/// The closest candidate within a small edit distance, if any.
pub fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::levenshtein(word, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn did_you_mean_is_conservative() {
        assert_eq!(
            did_you_mean("pasword", &["password", "port"]),
            Some("password")
        );
        assert_eq!(did_you_mean("zzzzzz", &["password", "port"]), None);
    }
}
