//! The second layer for `[accounts.NAME]`: validators, one per key or group
//! of keys, turn a raw section (its own keys over `[defaults]`) into an
//! [`Account`]. The order of the calls is part of the behaviour: when a
//! section has several mistakes, the first in this order is the one named.

use std::collections::HashMap;
use std::path::Path;

use super::imap_target::Targets;
use super::raw::{RawConfig, Source};
use super::section::Section;
use super::{imap, imap_target, oauth, password, policy, server, targets};
use super::{Account, PasswordSource, Protocol, Target};
use crate::error::Result;

/// Every account in the file, refusing two sections for one mailbox.
pub(super) fn accounts(src: &Source, raw: &RawConfig, state_dir: &Path) -> Result<Vec<Account>> {
    let mut accounts: Vec<Account> = Vec::new();
    let mut mailboxes: HashMap<(String, Option<String>), usize> = HashMap::new();
    let imap_targets = imap_target::targets(src, raw, state_dir)?;
    for (i, section) in raw.accounts.iter().enumerate() {
        let s = Section::new("accounts", section, &raw.defaults, src);
        let account = account(&s, &imap_targets, state_dir)?;
        // The seen state belongs to the mailbox, not the section: two
        // sections for one mailbox would share it, and the second would
        // never fetch what the first recorded.
        for one in account.per_folder() {
            let mailbox = (one.identity(), account.folder.clone());
            if let Some(&other) = mailboxes.get(&mailbox) {
                // Name them in file order: the later one is the one to remove.
                let other = &raw.accounts[other];
                let (first, second) = if other.span.start < section.span.start {
                    (other, section)
                } else {
                    (section, other)
                };
                return Err(src.err(
                    &second.span,
                    format!(
                    "[accounts.{}] is the same mailbox as [accounts.{}] ({}): they would share one \
                     seen state, so one of them would never fetch anything; keep one section",
                    second.name, first.name, mailbox.0
                ),
                ));
            }
            mailboxes.insert(mailbox, i);
        }
        accounts.push(account);
    }
    Ok(accounts)
}

fn account(s: &Section, imap_targets: &Targets, state_dir: &Path) -> Result<Account> {
    let host = server::required(s, "host")?;
    let user = server::required(s, "user")?;
    let protocol = server::protocol(s.get("protocol"))?;
    let folder = server::folder(s.get("folder"), protocol)?;
    if protocol == Protocol::Pop2 {
        server::pop2_rules(s)?;
    }
    let imap = imap::settings(s, protocol)?;
    let port = server::port(s.get("port"))?;
    let tls = server::tls(s.get("tls"), port, protocol)?;
    let port = port.unwrap_or_else(|| server::default_port(protocol, tls));
    let auth = server::auth(s.get("auth"), protocol)?;
    let password = password::source(s)?;
    let trust = server::trust(s, tls)?;
    let mut target = targets::target(s, imap_targets)?;
    // A target's login is renewed with `popfetch login` of an account
    // that delivers to it: this one.
    if let Target::Imap(t) = &mut target {
        if let PasswordSource::OAuth(o) = &mut t.password {
            o.login_account = s.name().to_string();
        }
    }
    let keep = policy::flag(s.get("keep"), true)?;
    let timeout = policy::seconds(s.get("timeout"), 60)?;
    // Under the 10 minutes a POP3 server may wait before it drops an idle
    // session (RFC 1939 §3), yet long enough for an MDA on a big message
    // or a passphrase typed at a gpg prompt.
    let command_timeout = policy::seconds(s.get("command_timeout"), 300)?;
    let keep_days = policy::keep_days(s.get("keep_days"), keep)?;
    let max_size = policy::max_size(s.get("max_size"))?;
    let filter = policy::filter(s.get("filter"), protocol, &s.header)?;
    let (auth, password) = oauth::apply(
        s,
        protocol,
        auth,
        password,
        oauth::Login {
            store: crate::oauth::store::path(state_dir, "account", s.name()),
            account: s.name().to_string(),
            command_timeout,
        },
    )?;
    let interval = policy::interval(s.get("interval"))?;

    Ok(Account {
        name: s.name().to_string(),
        protocol,
        folder,
        imap,
        host,
        port,
        user,
        tls,
        auth,
        password,
        trust,
        target,
        keep,
        keep_days,
        max_size,
        filter,
        timeout,
        command_timeout,
        interval,
    })
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use crate::config::{parse, Config, PasswordSource, Target, TlsMode};
    use crate::error::Result;
    use crate::source::pop3::auth::AuthMethod;

    fn parse_str(s: &str) -> Result<Config> {
        parse(s, Path::new("/etc/popfetch/config.toml"))
    }

    const MINIMAL: &str =
        "[accounts.work]\nhost = \"Pop.Example.com\"\nuser = \"alice\"\nmaildir = \"Mail\"\n";

    #[test]
    fn minimal_account_gets_safe_defaults() {
        let c = parse_str(MINIMAL).unwrap();
        let a = &c.accounts[0];
        assert_eq!(a.tls, TlsMode::Implicit);
        assert_eq!(a.port, 995);
        assert!(a.keep);
        assert_eq!(a.auth, AuthMethod::Auto);
        assert_eq!(a.identity(), "alice@pop.example.com");
        assert_eq!(
            a.target,
            Target::Maildir(PathBuf::from("/etc/popfetch/Mail"))
        );
        assert!(matches!(a.password, PasswordSource::Prompt));
    }

    #[test]
    fn port_110_means_starttls_and_defaults_inherit() {
        let c = parse_str(&format!(
            "[defaults]\nkeep = false\ntimeout = 5\n{MINIMAL}port = 110\n"
        ))
        .unwrap();
        let a = &c.accounts[0];
        assert_eq!(a.tls, TlsMode::StartTls);
        assert!(!a.keep);
        assert_eq!(a.timeout, Duration::from_secs(5));
    }

    /// An account's own destination or secret source replaces the one in
    /// [defaults] (with the keys that go with it) instead of clashing.
    #[test]
    fn an_accounts_own_choice_replaces_the_defaults_one() {
        let acct = |own: &str| format!("[accounts.a]\nhost = \"h\"\nuser = \"u\"\n{own}");
        let defaults = "[defaults]\nmaildir = \"Mail\"\npassword = \"pw\"\n";
        let c = parse_str(&format!(
            "{defaults}{}{}",
            acct("mbox = \"inbox.mbox\"\npassword_command = \"pass mail\"\n"),
            acct("")
                .replace("accounts.a", "accounts.b")
                .replace("\"u\"", "\"v\""),
        ))
        .unwrap();
        let (a, b) = (&c.accounts[0], &c.accounts[1]);
        assert_eq!(
            a.target,
            Target::Mbox(PathBuf::from("/etc/popfetch/inbox.mbox"))
        );
        assert!(matches!(&a.password, PasswordSource::Command(c) if c == "pass mail"));
        assert_eq!(
            b.target,
            Target::Maildir(PathBuf::from("/etc/popfetch/Mail"))
        );
        assert!(matches!(b.password, PasswordSource::Inline(_)));

        // deliver_to goes with an inherited or own lmtp, not with maildir.
        let lmtp = "[defaults]\nlmtp = \"unix:/run/dovecot/lmtp\"\ndeliver_to = \"bob\"\n";
        let c = parse_str(&format!("{lmtp}{}", acct("maildir = \"M\"\n"))).unwrap();
        assert_eq!(
            c.accounts[0].target,
            Target::Maildir(PathBuf::from("/etc/popfetch/M"))
        );
        let c = parse_str(&format!(
            "[defaults]\ndeliver_to = \"bob\"\n{}",
            acct("lmtp = \"unix:/run/dovecot/lmtp\"\n")
        ))
        .unwrap();
        assert!(
            matches!(&c.accounts[0].target, Target::Lmtp(w) if w.deliver_to.as_deref() == Some("bob"))
        );

        // Two of its own are still a mistake, named.
        let err = parse_str(&acct("maildir = \"M\"\nmbox = \"x\"\n")).unwrap_err();
        assert!(err.to_string().contains("sets maildir and mbox"), "{err}");
    }

    #[test]
    fn imap_ports_follow_tls_and_each_folder_is_a_mailbox() {
        let imap = MINIMAL.replace("maildir", "protocol = \"imap\"\nmaildir");
        let a = &parse_str(&imap).unwrap().accounts[0];
        assert_eq!((a.port, a.tls), (993, TlsMode::Implicit));
        assert_eq!(a.identity(), "alice@pop.example.com/INBOX");
        let a = &parse_str(&format!("{imap}tls = \"starttls\"\n"))
            .unwrap()
            .accounts[0];
        assert_eq!((a.port, a.tls), (143, TlsMode::StartTls));
        let a = &parse_str(&format!("{imap}port = 143\n")).unwrap().accounts[0];
        assert_eq!(a.tls, TlsMode::StartTls);
        let err = parse_str(&format!("{imap}auth = \"apop\"\n")).unwrap_err();
        assert!(err.to_string().contains("POP3 mechanism"), "{err}");

        // A folder in two sections is one mailbox; other folders are not.
        let two = format!(
            "{imap}folders = [\"INBOX\", \"A\"]\n[accounts.b]\nprotocol = \"imap\"\nhost = \"pop.example.com\"\nuser = \"alice\"\nmbox = \"m\"\nfolders = [\"A\"]\n"
        );
        let msg = parse_str(&two).unwrap_err().to_string();
        assert!(
            msg.contains("[accounts.b] is the same mailbox as [accounts.work]")
                && msg.contains("alice@pop.example.com/A"),
            "{msg}"
        );
        parse_str(&two.replace("[\"A\"]\n", "[\"B\"]\n")).unwrap();
    }

    #[test]
    fn two_sections_for_one_mailbox_are_refused_naming_both() {
        let text = format!(
            "{MINIMAL}\n[accounts.again]\nhost = \"POP.example.com\"\nuser = \"alice\"\nmbox = \"~/m\"\n"
        );
        let msg = parse_str(&text).unwrap_err().to_string();
        assert!(
            msg.contains("[accounts.again] is the same mailbox as [accounts.work]")
                && msg.contains("alice@pop.example.com"),
            "{msg}"
        );
        // Another user on the same host is another mailbox.
        parse_str(&text.replace("user = \"alice\"\nmbox", "user = \"bob\"\nmbox")).unwrap();
    }

    #[test]
    fn invalid_values_are_named() {
        for (extra, needle) in [
            ("tls = \"startls\"", "did you mean \"starttls\""),
            ("port = 70000", "not a TCP port"),
            ("keep = \"yes\"", "true or false"),
            ("auth = \"kerberos\"", "expected one of"),
            ("mbox = \"x\"", "choose exactly one"),
            ("max_size = \"12 parsecs\"", "expected a size"),
            ("keep_days = -1", "0 or more"),
            ("tls_fingerprint = \"sha256:12\"", "not a SHA-256"),
            ("folder = \"x\"", "for protocol = \"pop2\" only"),
            ("protocol = \"pop2\"", "POP2 has no TLS"),
            (
                "protocol = \"pop2\"\ntls = \"none\"\nfilter = \"f\"",
                "`filter` needs POP3",
            ),
        ] {
            let err = parse_str(&format!("{MINIMAL}{extra}\n")).unwrap_err();
            assert!(err.to_string().contains(needle), "{extra}: {err}");
        }
        let err = parse_str("[accounts.x]\nhost = \"h\"\nmaildir = \"m\"\n").unwrap_err();
        assert!(err.to_string().contains("no `user`"), "{err}");
        let err = parse_str("stat_dir = \"x\"\n").unwrap_err();
        assert!(
            err.to_string().contains("did you mean `state_dir`"),
            "{err}"
        );
    }

    #[test]
    fn with_several_mistakes_the_first_validator_in_order_names_its_own() {
        for (section, needle) in [
            // Required keys come first, whatever else is wrong.
            ("keep = \"yes\"\nmaildir = \"m\"", "no `host`"),
            // POP2's TLS rule comes before the port's own check.
            (
                "host = \"h\"\nuser = \"u\"\nprotocol = \"pop2\"\nport = \"x\"",
                "POP2 has no TLS",
            ),
            // The connection before the target, the target before the policy.
            (
                "host = \"h\"\nuser = \"u\"\nport = 0\nkeep = 1",
                "port = 0 is not a TCP port",
            ),
            (
                "host = \"h\"\nuser = \"u\"\nkeep = 1",
                "has no destination",
            ),
            (
                "host = \"h\"\nuser = \"u\"\nmaildir = \"m\"\nkeep = false\nkeep_days = 3\ntimeout = 0",
                "timeout = 0: expected 1 to 3600 seconds",
            ),
        ] {
            let err = parse_str(&format!("[accounts.a]\n{section}\n")).unwrap_err();
            assert!(err.to_string().contains(needle), "{section}: {err}");
        }
    }
}
