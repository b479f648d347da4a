//! OAuth2 built in (issue 17): `popfetch login` (code + PKCE with the
//! loopback redirect, and --device), the token store, refresh, rotation,
//! a revoked login (77 and the hint), and no token in any output, `-vv`
//! included. Against tests/support/oauthserver.rs and the scripted POP3
//! server, which takes one bearer token: the test server numbers its
//! tokens, so a test knows which one the next grant gives. At the end,
//! Dovecot's `oauth2` passdb validating tokens against the test server.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use crate::support::oauthserver::{self, access_token, refresh_token, OAuthServer, Poll};
use crate::support::server::{Config, Msg, Server};
use crate::support::{maildir_messages, Env, Run};

/// A POP3 server that takes `token` by XOAUTH2 and OAUTHBEARER only.
fn pop3(token: &str, messages: usize) -> Server {
    Server::start(Config {
        password: token.to_string(),
        user_cmd: false,
        sasl: vec!["XOAUTH2".into(), "OAUTHBEARER".into()],
        messages: (0..messages)
            .map(|i| Msg::new(format!("U{i}"), format!("Subject: {i}\n\nbody {i}\n")))
            .collect(),
        ..Config::default()
    })
}

fn config(oauth: &OAuthServer, port: u16, extra: &str) -> String {
    format!(
        "[accounts.mail]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nuser = \"alice\"\nmaildir = \"~/Mail/mail\"\n{}{extra}",
        oauth.keys()
    )
}

fn token_file(env: &Env) -> PathBuf {
    env.state_dir().join("oauth/account-mail.json")
}

fn stored(env: &Env) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(token_file(env)).unwrap()).unwrap()
}

/// Moves the stored access token's expiry to `secs` from now.
fn expire_in(env: &Env, secs: i64) {
    let mut v = stored(env);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    v["expires_at"] = serde_json::json!(now + secs);
    std::fs::write(token_file(env), v.to_string()).unwrap();
}

/// No token the server handed out appears in the run's output, as it is
/// or inside a SASL response (base64) for any of the tests' users.
#[track_caller]
fn assert_no_token(oauth: &OAuthServer, run: &Run) {
    use base64::Engine as _;
    let b64 = |s: String| base64::engine::general_purpose::STANDARD.encode(s);
    for t in oauth.issued() {
        let mut forms = vec![t.clone()];
        for user in ["alice", "bob"] {
            forms.push(b64(format!("user={user}\x01auth=Bearer {t}\x01\x01")));
            forms.push(b64(format!("n,a={user},\x01auth=Bearer {t}\x01\x01")));
        }
        for f in forms {
            assert!(
                !run.stdout.contains(&f) && !run.stderr.contains(&f),
                "token {t} in the output:\n{}\n{}",
                run.stdout,
                run.stderr
            );
        }
    }
}

/// `popfetch login ACCOUNT` with the test as the browser: it follows the
/// printed URL to the authorization endpoint, then `tamper`s with the
/// redirect it gets before following it to popfetch's listener.
fn browser_login(env: &Env, tamper: impl Fn(String) -> String) -> Run {
    let mut child = env
        .command(&["-vv", "login", "mail"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines() {
            let line = line.unwrap();
            let _ = tx.send(line.clone());
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let url = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("popfetch login printed no URL");
        if let Some(url) = line.trim().strip_prefix("http://127.0.0.1") {
            if url.contains("/authorize?") {
                break format!("http://127.0.0.1{url}");
            }
        }
    };
    let (status, headers, _) = oauthserver::http_get(&url);
    assert_eq!(status, 302, "{url}");
    let location = tamper(headers["location"].clone());
    assert!(location.starts_with("http://127.0.0.1:"), "{location}");
    let (status, _, body) = oauthserver::http_get(&location);
    assert!(status == 200 || status == 400, "{status} {body}");
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: reader.join().unwrap(),
    }
}

#[test]
fn browser_login_with_pkce_then_sync_logs_in_with_the_token() {
    let env = Env::new();
    let oauth = OAuthServer::start(Default::default());
    let server = pop3(&access_token(1), 2);
    env.write_config(&config(&oauth, server.port(), ""));

    let run = browser_login(&env, |l| l);
    run.expect_code(0);
    assert_no_token(&oauth, &run);
    // The server checked the verifier against the S256 challenge.
    assert_eq!(oauth.log(), ["authorize", "token authorization_code"]);
    let file = token_file(&env);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(file.parent().unwrap()), 0o700);
    assert_eq!(stored(&env)["refresh_token"], refresh_token(1));

    let run = env.run(&["-vv", "sync"]);
    run.expect_code(0);
    assert_no_token(&oauth, &run);
    assert!(run.stderr.contains("AUTH XOAUTH2"), "{}", run.stderr);
    assert_eq!(maildir_messages(&env.maildir("mail")).len(), 2);
    // The token was fresh: no refresh.
    assert_eq!(oauth.count("token refresh_token"), 0);
    let run = env.run(&["-vv", "list", "mail"]);
    run.expect_code(0);
    assert_no_token(&oauth, &run);
    let run = env.run(&["check"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
}

#[test]
fn a_redirect_with_another_state_is_refused_and_nothing_stored() {
    let env = Env::new();
    let oauth = OAuthServer::start(Default::default());
    env.write_config(&config(&oauth, 9, ""));
    let run = browser_login(&env, |l| {
        let (head, _) = l.split_once("&state=").unwrap();
        format!("{head}&state=forged")
    });
    run.expect_code(77);
    assert!(run.stderr.contains("`state`"), "{}", run.stderr);
    assert!(!token_file(&env).exists());
    assert_eq!(oauth.count("token authorization_code"), 0);
}

#[test]
fn device_login_waits_out_pending_and_slow_down() {
    let env = Env::new();
    let oauth = OAuthServer::start(oauthserver::Config {
        device_script: vec![Poll::Pending, Poll::SlowDown],
        ..Default::default()
    });
    env.write_config(&config(&oauth, 9, ""));
    let run = env.run(&["-vv", "login", "--device", "mail"]);
    run.expect_code(0);
    assert_no_token(&oauth, &run);
    assert!(
        run.stderr.contains("< HTTP 400 error=slow_down") && run.stderr.contains("device_code=***"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("https://example.com/device") && run.stderr.contains("WDJB-MJHT"),
        "{}",
        run.stderr
    );
    let polls = oauth.polls();
    assert_eq!(polls.len(), 3, "pending, slow_down, then the tokens");
    // interval = 1 s; after slow_down 5 s more (RFC 8628 §3.5).
    assert!(polls[1] - polls[0] >= Duration::from_millis(950));
    assert!(polls[2] - polls[1] >= Duration::from_millis(5950));
    assert_eq!(stored(&env)["access_token"], access_token(1));
}

#[test]
fn device_login_denied_or_expired_stores_nothing() {
    for (poll, code, words) in [
        (Poll::Denied, 77, "declined"),
        (Poll::Declined, 77, "declined"),
        (Poll::Expired, 75, "expired"),
    ] {
        let env = Env::new();
        let oauth = OAuthServer::start(oauthserver::Config {
            device_script: vec![poll],
            ..Default::default()
        });
        env.write_config(&config(&oauth, 9, ""));
        let run = env.run(&["login", "--device", "mail"]);
        run.expect_code(code);
        assert!(run.stderr.contains(words), "{}", run.stderr);
        assert!(!token_file(&env).exists());
    }
}

#[test]
fn a_token_about_to_expire_is_refreshed_and_a_rotated_refresh_token_replaces_the_old() {
    let env = Env::new();
    let oauth = OAuthServer::start(oauthserver::Config {
        rotate: true,
        ..Default::default()
    });
    let server = pop3(&access_token(2), 1);
    env.write_config(&config(&oauth, server.port(), ""));
    env.run(&["login", "--device", "mail"]).expect_code(0);
    // Within the 60 s margin: refreshed before the login.
    expire_in(&env, 30);
    let run = env.run(&["-vv", "sync"]);
    run.expect_code(0);
    assert_no_token(&oauth, &run);
    assert_eq!(oauth.count("token refresh_token"), 1);
    assert_eq!(server.connections(), 1, "no refused login first");
    assert!(
        run.stderr
            .contains("mail: refreshing the OAuth access token (it has expired or is about to)"),
        "{}",
        run.stderr
    );
    // -vv shows the exchange, every secret as ***.
    for line in [
        "[mail] > POST http://127.0.0.1:",
        "/token grant_type=refresh_token refresh_token=*** client_id=popfetch-test-client\n",
        "[mail] < HTTP 200 access_token=*** ",
        " refresh_token=*** ",
    ] {
        assert!(run.stderr.contains(line), "{line:?} in:\n{}", run.stderr);
    }
    let s = stored(&env);
    assert_eq!(s["access_token"], access_token(2));
    assert_eq!(s["refresh_token"], refresh_token(2));

    // The old refresh token is void at the server; the new one works.
    expire_in(&env, -10);
    let server = pop3(&access_token(3), 1);
    env.write_config(&config(&oauth, server.port(), ""));
    // Logged in: "no new mail" (U0 was fetched above).
    let run = env.run(&["-vv", "check"]);
    run.expect_code(1);
    assert_no_token(&oauth, &run);
    assert_eq!(stored(&env)["refresh_token"], refresh_token(3));
}

#[test]
fn a_refused_token_is_refreshed_and_the_login_retried_once() {
    let env = Env::new();
    let oauth = OAuthServer::start(Default::default());
    // The server wants the next token, though ours has not expired (the
    // provider revoked it early).
    let server = pop3(&access_token(2), 1);
    env.write_config(&config(&oauth, server.port(), ""));
    env.run(&["login", "--device", "mail"]).expect_code(0);
    let run = env.run(&["-v", "sync"]);
    run.expect_code(0);
    assert!(
        run.stderr.contains("refused the OAuth access token"),
        "{}",
        run.stderr
    );
    assert_eq!(oauth.count("token refresh_token"), 1);
    assert_eq!(server.connections(), 2);
    // Without rotation the refresh token stays.
    assert_eq!(stored(&env)["refresh_token"], refresh_token(1));

    // Refused again after the refresh: no loop, 77.
    let server = pop3("no-token-works", 1);
    env.write_config(&config(&oauth, server.port(), ""));
    let run = env.run(&["sync"]);
    run.expect_code(77);
    assert_eq!(oauth.count("token refresh_token"), 2);
    assert_eq!(server.connections(), 2);
}

#[test]
fn a_revoked_login_exits_77_naming_popfetch_login() {
    let env = Env::new();
    let oauth = OAuthServer::start(Default::default());
    let server = pop3(&access_token(2), 1);
    env.write_config(&config(&oauth, server.port(), ""));
    env.run(&["login", "--device", "mail"]).expect_code(0);
    oauth.revoke_all();
    expire_in(&env, -1);
    for cmd in ["sync", "check"] {
        let run = env.run(&["-vv", cmd]);
        run.expect_code(77);
        assert_no_token(&oauth, &run);
        assert!(
            run.stderr.contains("invalid_grant")
                && run.stderr.contains("run `popfetch login mail`"),
            "{}",
            run.stderr
        );
    }
    assert!(
        !server.log().iter().any(|l| l.starts_with("AUTH")),
        "nothing sent without a token: {:?}",
        server.log()
    );

    // logout forgets the tokens; then there is no login at all.
    let run = env.run(&["logout", "mail"]);
    run.expect_code(0);
    assert!(!token_file(&env).exists());
    let run = env.run(&["sync"]);
    run.expect_code(77);
    assert!(
        run.stderr.contains("not signed in") && run.stderr.contains("popfetch login mail"),
        "{}",
        run.stderr
    );
}

#[test]
fn parallel_sessions_sharing_one_login_refresh_it_once() {
    let env = Env::new();
    let oauth = OAuthServer::start(Default::default());
    let server = pop3(&access_token(2), 1);
    env.write_config(&config(&oauth, server.port(), ""));
    env.run(&["login", "--device", "mail"]).expect_code(0);
    expire_in(&env, -1);
    let children: Vec<_> = (0..4)
        .map(|_| {
            env.command(&["check", "mail"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(oauth.count("token refresh_token"), 1);
}

#[test]
fn a_client_secret_is_sent_and_kept_out_of_sight() {
    let env = Env::new();
    let oauth = OAuthServer::start(oauthserver::Config {
        client_secret: Some("cs-Very-Secret-42".into()),
        ..Default::default()
    });
    env.write_config(&config(&oauth, 9, ""));
    let run = env.run(&["login", "--device", "mail"]);
    run.expect_code(78);
    assert!(run.stderr.contains("invalid_client"), "{}", run.stderr);
    env.write_config(&config(
        &oauth,
        9,
        "oauth_client_secret_command = \"echo cs-Very-Secret-42\"\n",
    ));
    let run = env.run(&["-vv", "login", "--device", "mail"]);
    run.expect_code(0);
    let run = env.run(&["accounts"]);
    run.expect_code(0);
    assert!(!run.stdout.contains("cs-Very-Secret-42"), "{}", run.stdout);
}

/// Issue 17, "Must show" 2: Dovecot's `oauth2` passdb checks each token
/// with the test server's introspection endpoint. `login --device`, then
/// sync over IMAP with XOAUTH2 and over POP3 with OAUTHBEARER; then the
/// server ends the access tokens' life early (Dovecot refuses them,
/// popfetch refreshes and logs in again), and an access token past its
/// stored expiry is refreshed before the login.
#[test]
fn dovecot_oauth2_passdb_takes_the_tokens_over_imap_xoauth2_and_pop3_oauthbearer() {
    use crate::support::dovecot::{oauth2_passdb, require_dovecot_imap, Dovecot};
    if !require_dovecot_imap() {
        return;
    }
    let oauth = OAuthServer::start(Default::default());
    let args_dir = tempfile::Builder::new()
        .prefix("pfoauth-")
        .tempdir_in("/tmp")
        .unwrap();
    let dc = Dovecot::start_with(
        &[("alice", "pw-alice")],
        &oauth2_passdb(args_dir.path(), &oauth.url("/introspect")),
    );
    dc.add_messages(
        "alice",
        &[
            b"Subject: one\n\n1\n".to_vec(),
            b"Subject: two\n\n2\n".to_vec(),
        ],
    );
    let env = Env::new();
    let ca = dc.pki().ca_path.display().to_string();
    let account = |name: &str, protocol: &str, port: u16, auth: &str| {
        format!(
            "[accounts.{name}]\nprotocol = \"{protocol}\"\nhost = \"localhost\"\nport = {port}\nuser = \"alice\"\nauth = \"{auth}\"\nca_file = \"{ca}\"\ntimeout = 20\nmaildir = \"~/Mail/{name}\"\n{}",
            oauth.keys()
        )
    };
    env.write_config(&format!(
        "{}{}",
        account("im", "imap", dc.imaps_port(), "xoauth2"),
        account("pop", "pop3", dc.pop3s_port(), "oauthbearer")
    ));
    for name in ["im", "pop"] {
        let run = env.run(&["login", "--device", name]);
        run.expect_code(0);
        assert_no_token(&oauth, &run);
    }

    let run = env.run(&["-vv", "sync"]);
    run.expect_code(0);
    assert_no_token(&oauth, &run);
    assert!(
        run.stderr.contains("AUTHENTICATE XOAUTH2") && run.stderr.contains("AUTH OAUTHBEARER"),
        "{}",
        run.stderr
    );
    assert_eq!(maildir_messages(&env.maildir("im")).len(), 2);
    assert_eq!(maildir_messages(&env.maildir("pop")).len(), 2);
    assert!(oauth.count("introspect") >= 2, "{:?}", oauth.log());
    assert_eq!(oauth.count("token refresh_token"), 0);

    // Dovecot now refuses the tokens popfetch holds as valid.
    oauth.expire_access_tokens();
    dc.add_message("alice", b"Subject: three\n\n3\n");
    let run = env.run(&["-vv", "sync"]);
    run.expect_code(0);
    assert_no_token(&oauth, &run);
    assert_eq!(
        run.stderr.matches("refused the OAuth access token").count(),
        2,
        "{}",
        run.stderr
    );
    assert_eq!(maildir_messages(&env.maildir("im")).len(), 3);
    assert_eq!(maildir_messages(&env.maildir("pop")).len(), 3);
    assert_eq!(oauth.count("token refresh_token"), 2);

    // Past its stored expiry: refreshed first, no refused login.
    let file = env.state_dir().join("oauth/account-im.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    v["expires_at"] = serde_json::json!(1);
    std::fs::write(&file, v.to_string()).unwrap();
    dc.add_message("alice", b"Subject: four\n\n4\n");
    let run = env.run(&["-vv", "sync", "im"]);
    run.expect_code(0);
    assert_no_token(&oauth, &run);
    assert!(!run.stderr.contains("refused the OAuth"), "{}", run.stderr);
    assert_eq!(oauth.count("token refresh_token"), 3);
    assert_eq!(maildir_messages(&env.maildir("im")).len(), 4);
}

/// The IMAP target signs in with OAuth too: `popfetch login ACCOUNT`
/// signs in the account's `[targets.NAME]`; two accounts appending to it
/// in parallel with its access token expired refresh it once.
#[test]
fn an_oauth_imap_target_shared_by_two_accounts_is_refreshed_once() {
    use crate::support::dovecot::{oauth2_passdb, require_dovecot_imap, Dovecot};
    if !require_dovecot_imap() {
        return;
    }
    let oauth = OAuthServer::start(oauthserver::Config {
        username: "bob".into(),
        ..Default::default()
    });
    let args_dir = tempfile::Builder::new()
        .prefix("pfoauth-")
        .tempdir_in("/tmp")
        .unwrap();
    let dc = Dovecot::start_with(
        &[
            ("alice", "pw-alice"),
            ("carol", "pw-carol"),
            ("bob", "pw-bob"),
        ],
        &oauth2_passdb(args_dir.path(), &oauth.url("/introspect")),
    );
    dc.add_message("alice", b"Message-ID: <a@test>\nSubject: for alice\n\na\n");
    dc.add_message("carol", b"Message-ID: <c@test>\nSubject: for carol\n\nc\n");
    let ca = dc.pki().ca_path.display().to_string();
    let pop = |user: &str| {
        format!(
            "[accounts.{user}]\nhost = \"localhost\"\nport = {}\nuser = \"{user}\"\npassword = \"pw-{user}\"\nca_file = \"{ca}\"\ntimeout = 20\nimap_target = \"home\"\n",
            dc.pop3s_port()
        )
    };
    let env = Env::new();
    env.write_config(&format!(
        "{}{}[targets.home]\nurl = \"imaps://localhost:{}/INBOX\"\nuser = \"bob\"\nca_file = \"{ca}\"\ntimeout = 20\n{}",
        pop("alice"),
        pop("carol"),
        dc.imaps_port(),
        oauth.keys()
    ));
    let run = env.run(&["sync"]);
    run.expect_code(77);
    assert!(
        run.stderr.contains("run `popfetch login alice`")
            && run.stderr.contains("run `popfetch login carol`"),
        "{}",
        run.stderr
    );
    let run = env.run(&["login", "--device", "carol"]);
    run.expect_code(0);
    assert!(run.stderr.contains("[targets.home]"), "{}", run.stderr);
    let file = env.state_dir().join("oauth/target-home.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    v["expires_at"] = serde_json::json!(1);
    std::fs::write(&file, v.to_string()).unwrap();

    let run = env.run(&["-vv", "sync", "-j", "2"]);
    run.expect_code(0);
    assert_no_token(&oauth, &run);
    assert_eq!(oauth.count("token refresh_token"), 1, "{:?}", oauth.log());
    assert_eq!(dc.message_count("bob"), 2);
}

#[test]
fn without_a_refresh_token_login_warns_and_an_expired_token_asks_for_login_again() {
    let env = Env::new();
    let oauth = OAuthServer::start(oauthserver::Config {
        no_refresh: true,
        ..Default::default()
    });
    let server = pop3(&access_token(1), 1);
    env.write_config(&config(&oauth, server.port(), ""));
    let run = env.run(&["login", "--device", "mail"]);
    run.expect_code(0);
    assert!(run.stderr.contains("no refresh token"), "{}", run.stderr);
    env.run(&["sync"]).expect_code(0);
    expire_in(&env, -1);
    let run = env.run(&["sync"]);
    run.expect_code(77);
    assert!(
        run.stderr
            .contains("has expired and the provider gave no refresh token")
            && run.stderr.contains("run `popfetch login mail`"),
        "{}",
        run.stderr
    );
    assert_eq!(oauth.count("token refresh_token"), 0);
}
