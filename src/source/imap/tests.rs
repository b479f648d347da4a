//! The IMAP client on a scripted in-memory stream (the POP3 tests'
//! [`MockStream`]): each test plays a server's side and pins the exact
//! bytes the client writes and what it makes of the replies.

use std::io;

use super::*;
use crate::source::pop3::mock::{Handle, MockStream};

const GREET: &[u8] = b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR STARTTLS] ready\r\n";
const SELECT_REPLY: &[u8] = b"* FLAGS (\\Answered \\Deleted \\Seen)\r\n\
* 3 EXISTS\r\n\
* OK [UIDVALIDITY 42] UIDs valid\r\n\
* OK [UIDNEXT 9] next\r\n\
A0002 OK [READ-WRITE] selected\r\n";

/// Greeting, LOGIN (capabilities in the OK), SELECT INBOX with 3
/// messages (UIDs 4, 5, 7 once listed), then `then`. What the setup wrote
/// is forgotten.
fn selected(
    caps: &str,
    chunk: usize,
    then: impl FnOnce(MockStream) -> MockStream,
) -> (Session<MockStream>, Handle) {
    let stream = MockStream::new(GREET)
        .on(
            "A0001 LOGIN alice hunter2",
            format!("A0001 OK [CAPABILITY IMAP4rev1 {caps}] logged in\r\n").as_bytes(),
        )
        .on("A0002 SELECT INBOX", SELECT_REPLY);
    let stream = then(stream).chunked(chunk);
    let handle = stream.handle();
    let client = Client::new(stream, "mock", None).unwrap();
    let mut session = client
        .login(AuthMethod::User, "alice", &Secret::new("hunter2"))
        .unwrap();
    let mb = session.select("INBOX", false).unwrap();
    assert_eq!((mb.uidvalidity, mb.exists, mb.uidnext), (42, 3, Some(9)));
    handle.clear();
    (session, handle)
}

/// Every requested message: its text, `-reason` when refused, `OVER` when
/// it grew past max_size.
fn fetch_all(
    session: &mut Session<MockStream>,
    handles: &[u32],
    max: Option<u64>,
) -> Result<Vec<String>> {
    let mut got = vec![String::from("?"); handles.len()];
    session.fetch(handles, max, &mut |i, f| {
        got[i] = match f {
            Fetched::Body(body) => {
                let mut v = Vec::new();
                match body.read_to_end(&mut v) {
                    Ok(_) => String::from_utf8_lossy(&v).into_owned(),
                    Err(_) if body.over_limit() => "OVER".into(),
                    Err(e) => return Err(Error::local_io("writing the message", e)),
                }
            }
            Fetched::Refused(r) => format!("-{r}"),
        };
        Ok(())
    })?;
    Ok(got)
}

fn literal(body: &str) -> String {
    format!("{{{}}}\r\n{body}", body.len())
}

#[test]
fn greeting_variants() {
    let client = Client::new(MockStream::new(GREET), "mock", None).unwrap();
    assert_eq!(client.greeting(), "ready");
    assert!(client.capabilities().has("starttls"));
    assert_eq!(client.capabilities().sasl(), vec!["PLAIN"]);
    assert!(!client.is_preauth());

    // PREAUTH: logged in already, nothing is sent for the login.
    let stream = MockStream::new(b"* PREAUTH [CAPABILITY IMAP4rev1] hi\r\n").on(
        "A0001 CAPABILITY",
        b"* CAPABILITY IMAP4rev1 UIDPLUS\r\nA0001 OK done\r\n",
    );
    let handle = stream.handle();
    let client = Client::new(stream, "mock", None).unwrap();
    assert!(client.is_preauth());
    let session = client
        .login(AuthMethod::User, "alice", &Secret::new("pw"))
        .unwrap();
    assert!(session.capabilities().has("UIDPLUS"));
    assert_eq!(handle.written(), "A0001 CAPABILITY\r\n");

    for (greeting, kind) in [
        (&b"* BYE go away\r\n"[..], ExitKind::Unavailable),
        (b"* BYE [UNAVAILABLE] maintenance\r\n", ExitKind::TempFail),
        (b"+OK POP3 ready\r\n", ExitKind::Protocol),
        (b"A1 OK what\r\n", ExitKind::Protocol),
    ] {
        let err = Client::new(MockStream::new(greeting).chunked(1), "mock", None)
            .err()
            .unwrap();
        assert_eq!(err.kind(), kind, "{}", err);
    }
    let err = Client::new(
        MockStream::new(b"* BYE [UNAVAILABLE] later\r\n"),
        "mock",
        None,
    )
    .err()
    .unwrap();
    assert_eq!(
        err.server_reply(),
        Some((Some(&RespCode::SysTemp), "later"))
    );
    assert!(err.to_string().contains("BYE [UNAVAILABLE] later"), "{err}");
}

#[test]
fn alerts_are_kept_for_the_user_and_escaped() {
    // No capabilities in the greeting: they are asked before the login.
    let stream = MockStream::new(b"* OK [ALERT] maintenance at 5\x1b[2J\r\n")
        .on(
            "A0001 CAPABILITY",
            b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\nA0001 OK\r\n",
        )
        .on(
            "A0002 LOGIN alice pw",
            b"* OK [ALERT] quota almost full\r\nA0002 OK [CAPABILITY IMAP4rev1] ok\r\n",
        );
    let mut client = Client::new(stream, "mock", None).unwrap();
    let greeting_alerts = client.take_alerts();
    assert_eq!(greeting_alerts.len(), 1);
    assert!(!greeting_alerts[0].contains('\x1b'));
    let mut s = client
        .login(AuthMethod::User, "alice", &Secret::new("pw"))
        .unwrap();
    assert_eq!(s.take_alerts(), vec!["quota almost full"]);
    assert!(s.take_alerts().is_empty());
}

#[test]
fn login_quotes_or_sends_a_literal_and_never_traces_the_password() {
    // A 7-bit password with a quote goes quoted.
    let stream = MockStream::new(GREET).on(
        "A0001 LOGIN alice \"pa ss\\\"w\"",
        b"A0001 OK [CAPABILITY IMAP4rev1] ok\r\n",
    );
    let client = Client::new(stream.chunked(1), "mock", None).unwrap();
    client
        .login(AuthMethod::User, "alice", &Secret::new("pa ss\"w"))
        .unwrap();

    // 8-bit: a synchronising literal, sent after the server's `+`.
    let pw = "pässwörd";
    let stream = MockStream::new(GREET)
        .on(
            &format!("A0001 LOGIN alice {{{}}}", pw.len()),
            b"+ go ahead\r\n",
        )
        .on(pw, b"A0001 OK [CAPABILITY IMAP4rev1] ok\r\n");
    let handle = stream.handle();
    let client = Client::new(stream, "mock", None).unwrap();
    client
        .login(AuthMethod::User, "alice", &Secret::new(pw))
        .unwrap();
    assert_eq!(handle.unsent(), Vec::<String>::new());

    // With LITERAL+ it goes at once.
    let stream = MockStream::new(b"* OK [CAPABILITY IMAP4rev1 LITERAL+] hi\r\n")
        .on(&format!("A0001 LOGIN alice {{{}+}}", pw.len()), b"");
    let stream = stream.on(pw, b"A0001 OK [CAPABILITY IMAP4rev1] ok\r\n");
    let client = Client::new(stream, "mock", None).unwrap();
    client
        .login(AuthMethod::User, "alice", &Secret::new(pw))
        .unwrap();

    let parts = [
        Part::Text("LOGIN".into()),
        Part::arg("alice"),
        Part::secret(&Secret::new("hunter2")),
    ];
    assert_eq!(shown(&parts), "LOGIN alice ***");
    let parts = [Part::Text("LOGIN".into()), Part::secret(&Secret::new(pw))];
    assert_eq!(shown(&parts), "LOGIN ***");

    // A refused login is a permission error with the server's words.
    let stream = MockStream::new(GREET).on(
        "A0001 LOGIN alice wrong",
        b"A0001 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n",
    );
    let client = Client::new(stream, "mock", None).unwrap();
    let err = client
        .login(AuthMethod::User, "alice", &Secret::new("wrong"))
        .err()
        .unwrap();
    assert_eq!(err.kind(), ExitKind::NoPerm);
    assert_eq!(
        err.server_reply(),
        Some((Some(&RespCode::Auth), "Authentication failed."))
    );
    assert!(!err.to_string().contains("wrong"));

    // LOGINDISABLED: nothing is sent.
    let stream = MockStream::new(b"* OK [CAPABILITY IMAP4rev1 LOGINDISABLED STARTTLS] hi\r\n");
    let handle = stream.handle();
    let client = Client::new(stream, "mock", None).unwrap();
    let err = client
        .login(AuthMethod::User, "alice", &Secret::new("pw"))
        .err()
        .unwrap();
    assert_eq!(err.kind(), ExitKind::NoPerm);
    assert_eq!(handle.written(), "");
}

#[test]
fn sasl_plain_with_and_without_initial_response_then_id() {
    let ir = auth::plain_response("alice", &Secret::new("pw"));
    let ir = ir.expose().to_string();
    let version = env!("CARGO_PKG_VERSION");
    let stream = MockStream::new(GREET)
        .on(
            &format!("A0001 AUTHENTICATE PLAIN {ir}"),
            b"A0001 OK [CAPABILITY IMAP4rev1 ID] ok\r\n",
        )
        .on(
            &format!("A0002 ID (\"name\" \"popfetch\" \"version\" \"{version}\")"),
            b"* ID (\"name\" \"Dovecot\")\r\nA0002 OK ID done\r\n",
        );
    let handle = stream.handle();
    let client = Client::new(stream.chunked(1), "mock", None).unwrap();
    client
        .login(AuthMethod::Plain, "alice", &Secret::new("pw"))
        .unwrap();
    assert!(handle.unsent().is_empty());

    // No SASL-IR: the initial response waits for the empty challenge.
    let stream = MockStream::new(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi\r\n")
        .on("A0001 AUTHENTICATE PLAIN", b"+ \r\n")
        .on(&ir, b"A0001 OK [CAPABILITY IMAP4rev1] ok\r\n");
    let client = Client::new(stream, "mock", None).unwrap();
    client
        .login(AuthMethod::Plain, "alice", &Secret::new("pw"))
        .unwrap();

    // A mechanism the server does not offer is refused before sending.
    let stream = MockStream::new(GREET);
    let handle = stream.handle();
    let client = Client::new(stream, "mock", None).unwrap();
    let err = client
        .login(AuthMethod::CramMd5, "alice", &Secret::new("pw"))
        .err()
        .unwrap();
    assert_eq!(err.kind(), ExitKind::NoPerm);
    assert!(err.to_string().contains("CRAM-MD5"), "{err}");
    assert_eq!(handle.written(), "");
}

#[test]
fn starttls_refuses_injection_and_missing_support() {
    use crate::net::{TlsContext, TlsTrust};
    let tls = TlsContext::new(&TlsTrust::default()).unwrap();

    // Bytes after the OK, before the handshake: injected in clear.
    let stream = MockStream::new(GREET).on(
        "A0001 STARTTLS",
        b"A0001 OK begin TLS\r\n* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] forged\r\n",
    );
    let handle = stream.handle();
    let client = Client::new(stream, "mock", None).unwrap();
    let err = client.starttls(&tls).err().unwrap();
    assert_eq!(err.kind(), ExitKind::Protocol);
    assert!(!handle.is_tls());

    // Not offered: never a silent downgrade.
    let stream = MockStream::new(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi\r\n");
    let client = Client::new(stream, "mock", None).unwrap();
    let err = client.starttls(&tls).err().unwrap();
    assert_eq!(err.kind(), ExitKind::NoPerm);

    // Refused.
    let stream = MockStream::new(GREET).on("A0001 STARTTLS", b"A0001 NO not now\r\n");
    let err = Client::new(stream, "mock", None)
        .unwrap()
        .starttls(&tls)
        .err()
        .unwrap();
    assert_eq!(err.kind(), ExitKind::NoPerm);

    // PREAUTH before TLS: nothing could be protected.
    let stream = MockStream::new(b"* PREAUTH [CAPABILITY IMAP4rev1 STARTTLS] hi\r\n");
    let err = Client::new(stream, "mock", None)
        .unwrap()
        .starttls(&tls)
        .err()
        .unwrap();
    assert_eq!(err.kind(), ExitKind::NoPerm);

    // Success: the capabilities said in clear are forgotten and asked again.
    let stream = MockStream::new(GREET)
        .on("A0001 STARTTLS", b"A0001 OK begin TLS\r\n")
        .on(
            "A0002 CAPABILITY",
            b"* CAPABILITY IMAP4rev1 AUTH=PLAIN AUTH=LOGIN\r\nA0002 OK\r\n",
        );
    let handle = stream.handle();
    let client = Client::new(stream, "mock", None)
        .unwrap()
        .starttls(&tls)
        .unwrap();
    assert!(handle.is_tls() && client.is_tls());
    assert_eq!(client.capabilities().sasl(), vec!["PLAIN", "LOGIN"]);
    assert!(!client.capabilities().has("STARTTLS"));
}

#[test]
fn listing_gives_uid_size_and_uidvalidity_id() {
    let (mut s, handle) = selected("UIDPLUS", 1, |st| {
        st.on(
            "A0003 UID FETCH 1:* (UID RFC822.SIZE)",
            b"* 1 FETCH (UID 4 RFC822.SIZE 100)\r\n\
              * 2 FETCH (RFC822.SIZE 20 UID 5 FLAGS (\\Seen))\r\n\
              * 3 FETCH (UID 7 RFC822.SIZE 3000)\r\n\
              * 2 FETCH (FLAGS (\\Seen \\Answered))\r\n\
              A0003 OK done\r\n",
        )
    });
    let entries = s.listing().unwrap();
    let got: Vec<(u32, u64, String)> = entries
        .iter()
        .map(|e| (e.handle, e.size, e.id.clone().unwrap()))
        .collect();
    assert_eq!(
        got,
        vec![
            (4, 100, "42/4".to_string()),
            (5, 20, "42/5".to_string()),
            (7, 3000, "42/7".to_string())
        ]
    );
    assert_eq!(
        handle.written(),
        "A0003 UID FETCH 1:* (UID RFC822.SIZE)\r\n"
    );
}

/// What a listing of UIDs 4, 5, 7 looks like (sizes may lie).
fn listed(st: MockStream) -> MockStream {
    st.on(
        "A0003 UID FETCH 1:* (UID RFC822.SIZE)",
        b"* 1 FETCH (UID 4 RFC822.SIZE 5)\r\n\
          * 2 FETCH (UID 5 RFC822.SIZE 5)\r\n\
          * 3 FETCH (UID 7 RFC822.SIZE 5)\r\n\
          A0003 OK done\r\n",
    )
}

#[test]
fn fetch_streams_literals_that_look_like_responses_in_one_byte_reads() {
    let tricky = "Subject: x\r\n\r\n* 3 FETCH (UID 7 BODY[] {5}\r\n)\r\nA0004 OK fake\r\n";
    let reply = format!(
        "* 1 FETCH (UID 4 BODY[] {})\r\n\
         * 2 FETCH (FLAGS (\\Seen))\r\n\
         * 9 EXISTS\r\n\
         * 3 FETCH (BODY[] {} UID 7)\r\n\
         A0004 OK done\r\n",
        literal(tricky),
        literal("bare\rcr\nlf\r\n"),
    );
    let (mut s, handle) = selected("UIDPLUS", 1, |st| {
        listed(st).on("A0004 UID FETCH 4:5,7 (UID BODY.PEEK[])", reply.as_bytes())
    });
    s.listing().unwrap();
    let got = fetch_all(&mut s, &[7, 4, 5], None).unwrap();
    assert_eq!(
        got,
        vec![
            "bare\rcr\nlf\n".to_string(),
            "Subject: x\n\n* 3 FETCH (UID 7 BODY[] {5}\n)\nA0004 OK fake\n".to_string(),
            "-the server did not return UID 5 (deleted by another client?)".to_string(),
        ]
    );
    assert!(handle
        .written()
        .ends_with("A0004 UID FETCH 4:5,7 (UID BODY.PEEK[])\r\n"));
}

#[test]
fn unsolicited_expunge_during_a_fetch_keeps_bodies_placed() {
    // Message 1 (UID 4) is expunged by another client mid-fetch: UID 7 is
    // now message 2, and its body comes before its UID.
    let reply = format!(
        "* 1 FETCH (UID 4 BODY[] {})\r\n\
         * 1 EXPUNGE\r\n\
         * 2 FETCH (BODY[] {} UID 7)\r\n\
         A0004 OK done\r\n",
        literal("four\r\n"),
        literal("seven\r\n"),
    );
    let (mut s, _) = selected("UIDPLUS", 3, |st| {
        listed(st).on("A0004 UID FETCH 4,7 (UID BODY.PEEK[])", reply.as_bytes())
    });
    s.listing().unwrap();
    assert_eq!(
        fetch_all(&mut s, &[4, 7], None).unwrap(),
        vec!["four\n", "seven\n"]
    );

    // A body placed by number whose UID then disagrees is a protocol error.
    let reply = format!(
        "* 3 FETCH (BODY[] {} UID 5)\r\nA0004 OK done\r\n",
        literal("x\r\n"),
    );
    let (mut s, _) = selected("UIDPLUS", 64, |st| {
        listed(st).on("A0004 UID FETCH 7 (UID BODY.PEEK[])", reply.as_bytes())
    });
    s.listing().unwrap();
    let err = fetch_all(&mut s, &[7], None).unwrap_err();
    assert_eq!(err.kind(), ExitKind::Protocol);
}

#[test]
fn bye_mid_fetch_and_drop_inside_a_literal_are_transport_failures() {
    let reply = format!(
        "* 1 FETCH (UID 4 BODY[] {})\r\n* BYE [UNAVAILABLE] shutting down\r\n",
        literal("four\r\n"),
    );
    let (mut s, _) = selected("UIDPLUS", 1, |st| {
        st.on("A0003 UID FETCH 4:5 (UID BODY.PEEK[])", reply.as_bytes())
            .then_eof()
    });
    let mut got = Vec::new();
    let err = s
        .fetch(&[4, 5], None, &mut |i, f| {
            if let Fetched::Body(b) = f {
                let mut v = Vec::new();
                b.read_to_end(&mut v).unwrap();
                got.push((i, v));
            }
            Ok(())
        })
        .unwrap_err();
    assert_eq!(got, vec![(0, b"four\n".to_vec())]);
    assert!(err.is_transport());
    assert_eq!(err.kind(), ExitKind::TempFail);
    assert!(err.to_string().contains("shutting down"), "{err}");

    // The connection drops in the middle of a literal: the reader fails,
    // and the error is the network's, not the sink's.
    let (mut s, _) = selected("UIDPLUS", 2, |st| {
        st.on(
            "A0003 UID FETCH 4 (UID BODY.PEEK[])",
            b"* 1 FETCH (UID 4 BODY[] {100}\r\nonly a part",
        )
        .then_eof()
    });
    let err = fetch_all(&mut s, &[4], None).unwrap_err();
    assert!(err.is_transport(), "{err}");
    assert!(err.to_string().contains("message 4"), "{err}");
}

/// Found by `hostile_tests::mutated_sessions_are_contained`: a UID past 32
/// bits was cut to 32, so the body of `UID 4294967300` was handed out as
/// UID 4's (which was then deleted), and a listing named UID 4 for it.
#[test]
fn a_uid_past_32_bits_is_refused_not_cut() {
    let (mut s, _) = selected("UIDPLUS", 64, |st| {
        listed(st).on(
            "A0004 UID FETCH 4 (UID BODY.PEEK[])",
            b"* 1 FETCH (UID 4294967300 BODY[] {2}\r\nhi)\r\nA0004 OK done\r\n",
        )
    });
    s.listing().unwrap();
    let err = fetch_all(&mut s, &[4], None).unwrap_err();
    assert_eq!(err.kind(), ExitKind::Protocol);
    assert!(
        err.to_string().contains("UID out of range: 4294967300"),
        "{err}"
    );

    let (mut s, _) = selected("UIDPLUS", 64, |st| {
        st.on(
            "A0003 UID FETCH 1:* (UID RFC822.SIZE)",
            b"* 1 FETCH (UID 4294967300 RFC822.SIZE 4)\r\nA0003 OK done\r\n",
        )
    });
    assert_eq!(s.listing().unwrap_err().kind(), ExitKind::Protocol);

    // UID 0 is none (RFC 3501 §2.3.1.1: UIDs are non-zero).
    let (mut s, _) = selected("UIDPLUS", 64, |st| {
        st.on(
            "A0003 UID FETCH 1:* (UID RFC822.SIZE)",
            b"* 1 FETCH (UID 0 RFC822.SIZE 4)\r\nA0003 OK done\r\n",
        )
    });
    assert_eq!(s.listing().unwrap_err().kind(), ExitKind::Protocol);
}

/// Found by `hostile_tests`: a tag, a word or a string the server sent
/// went into the error message raw (a terminal escape reached stderr as
/// is) and whole (a 64 KiB tag made a 64 KiB message).
#[test]
fn server_bytes_in_protocol_errors_are_escaped_and_cut() {
    let long = "T".repeat(codec::MAX_LINE - 100);
    for reply in [
        "A0003\x1b]0;pwned\x07 OK done\r\n".to_string(),
        "\x1b[2J BYE now\r\n".to_string(),
        "\x1b[2J\r\n".to_string(),
        format!("{long} OK done\r\n"),
        format!("{long}\r\n"),
        format!("* 1 FETCH (\"{long}\x1b[2J\")\r\nA0003 OK\r\n"),
        format!("* 1 FETCH ({long}\x07)\r\nA0003 OK\r\n"),
        format!("* {long} EXISTS\r\nA0003 OK\r\n").replace('T', "7"),
    ] {
        let (mut s, _) = selected("UIDPLUS", 64, |st| {
            st.on("A0003 UID FETCH 4 (UID BODY.PEEK[])", reply.as_bytes())
        });
        let err = fetch_all(&mut s, &[4], None).unwrap_err();
        assert_eq!(err.kind(), ExitKind::Protocol, "{err}");
        let msg = err.to_string();
        assert!(!msg.chars().any(char::is_control), "{msg:?}");
        assert!(msg.len() < 300, "{} bytes: {msg}", msg.len());
    }
}

#[test]
fn no_unavailable_is_temporary_and_plain_no_refuses_the_rest() {
    let (mut s, _) = selected("UIDPLUS", 64, |st| {
        st.on(
            "A0003 UID FETCH 4 (UID BODY.PEEK[])",
            b"A0003 NO [UNAVAILABLE] backend down\r\n",
        )
    });
    let err = fetch_all(&mut s, &[4], None).unwrap_err();
    assert_eq!(err.kind(), ExitKind::TempFail);
    assert_eq!(
        err.server_reply(),
        Some((Some(&RespCode::SysTemp), "backend down"))
    );

    let reply = format!(
        "* 1 FETCH (UID 4 BODY[] {})\r\nA0003 NO Some messages could not be FETCHed\r\n",
        literal("a\r\n"),
    );
    let (mut s, _) = selected("UIDPLUS", 64, |st| {
        st.on("A0003 UID FETCH 4:5 (UID BODY.PEEK[])", reply.as_bytes())
    });
    assert_eq!(
        fetch_all(&mut s, &[4, 5], None).unwrap(),
        vec!["a\n", "-NO Some messages could not be FETCHed"]
    );
}

#[test]
fn lying_size_is_ignored_and_max_size_skips_the_rest_in_step() {
    let big = "x".repeat(40) + "\r\n";
    let reply = format!(
        "* 1 FETCH (UID 4 BODY[] {})\r\n* 2 FETCH (UID 5 BODY[] {})\r\nA0004 OK done\r\n",
        literal(&big),
        literal("ok\r\n"),
    );
    let (mut s, _) = selected("UIDPLUS", 7, |st| {
        listed(st)
            .on("A0004 UID FETCH 4:5 (UID BODY.PEEK[])", reply.as_bytes())
            .on(
                "A0005 UID FETCH 4:5 (UID BODY.PEEK[])",
                reply.replace("A0004", "A0005").as_bytes(),
            )
            .on("A0006 LOGOUT", b"* BYE bye\r\nA0006 OK done\r\n")
    });
    let listing = s.listing().unwrap();
    assert_eq!(listing[0].size, 5, "the server's word, whatever it is");
    // The literal frames the message, not RFC822.SIZE.
    let got = fetch_all(&mut s, &[4, 5], None).unwrap();
    assert_eq!(got[0].len(), 41);
    assert_eq!(
        fetch_all(&mut s, &[4, 5], Some(10)).unwrap(),
        vec!["OVER", "ok\n"]
    );
    s.finish().unwrap();
}

#[test]
fn a_failing_sink_reads_every_pending_response_then_fails() {
    let reply = format!(
        "* 1 FETCH (UID 4 BODY[] {})\r\n* 2 FETCH (UID 5 BODY[] {})\r\nA0003 OK done\r\n",
        literal("one\r\n"),
        literal("two\r\n"),
    );
    let (mut s, handle) = selected("UIDPLUS", 1, |st| {
        st.on("A0003 UID FETCH 4:5 (UID BODY.PEEK[])", reply.as_bytes())
            .on("A0004 LOGOUT", b"* BYE\r\nA0004 OK\r\n")
    });
    let mut calls = 0;
    let err = s
        .fetch(&[4, 5], None, &mut |_, _| {
            calls += 1;
            Err(Error::local_io(
                "disk full",
                io::ErrorKind::StorageFull.into(),
            ))
        })
        .unwrap_err();
    assert!(err.is_local());
    assert_eq!(calls, 1, "nothing more is handed out after a failure");
    s.finish().unwrap();
    assert!(handle.unsent().is_empty());
}

#[test]
fn headers_and_top() {
    let reply = format!(
        "* 1 FETCH (UID 4 BODY[HEADER] {})\r\nA0003 OK done\r\n",
        literal("Subject: a\r\n\r\n"),
    );
    let top = format!(
        "* 1 FETCH (UID 4 BODY[HEADER] {} BODY[TEXT]<0> {})\r\nA0004 OK done\r\n",
        literal("Subject: a\r\n\r\n"),
        literal("l1\r\nl2\r\nl3\r\n"),
    );
    let (mut s, _) = selected("UIDPLUS", 5, |st| {
        st.on(
            "A0003 UID FETCH 4 (UID BODY.PEEK[HEADER])",
            reply.as_bytes(),
        )
        .on(
            "A0004 UID FETCH 4 (UID BODY.PEEK[HEADER] BODY.PEEK[TEXT]<0.2000>)",
            top.as_bytes(),
        )
    });
    let mut got = Vec::new();
    let mut read = |_: usize, f: Fetched<'_>| -> Result<()> {
        if let Fetched::Body(b) = f {
            let mut v = String::new();
            b.read_to_string(&mut v).unwrap();
            got.push(v);
        }
        Ok(())
    };
    assert!(s.headers(&[4], &mut read).unwrap());
    s.top(&[4], 2, &mut read).unwrap();
    assert_eq!(got, vec!["Subject: a\n\n", "Subject: a\n\nl1\nl2\n"]);
}

#[test]
fn delete_with_uidplus_and_without() {
    let (mut s, handle) = selected("UIDPLUS", 64, |st| {
        st.on(
            "A0003 UID STORE 4:5 +FLAGS.SILENT (\\Deleted)",
            b"A0003 OK stored\r\n",
        )
        .on(
            "A0004 UID EXPUNGE 4:5",
            b"* 1 EXPUNGE\r\n* 1 EXPUNGE\r\nA0004 OK expunged\r\n",
        )
    });
    assert_eq!(s.delete(&[5, 4]).unwrap(), vec![true, true]);
    assert!(handle.unsent().is_empty());

    // Without UIDPLUS, another message carries \Deleted: nothing expunged.
    let (mut s, handle) = selected("", 64, |st| {
        st.on(
            "A0003 UID STORE 4 +FLAGS.SILENT (\\Deleted)",
            b"A0003 OK stored\r\n",
        )
        .on(
            "A0004 UID SEARCH DELETED",
            b"* SEARCH 4 7\r\nA0004 OK searched\r\n",
        )
    });
    assert_eq!(s.delete(&[4]).unwrap(), vec![false]);
    assert!(!handle.written().contains("EXPUNGE"));

    // Only ours: plain EXPUNGE (ESEARCH form, as IMAP4rev2 answers).
    let (mut s, _) = selected("", 64, |st| {
        st.on(
            "A0003 UID STORE 4 +FLAGS.SILENT (\\Deleted)",
            b"A0003 OK stored\r\n",
        )
        .on(
            "A0004 UID SEARCH DELETED",
            b"* ESEARCH (TAG \"A0004\") UID ALL 4\r\nA0004 OK searched\r\n",
        )
        .on("A0005 EXPUNGE", b"* 1 EXPUNGE\r\nA0005 OK\r\n")
    });
    assert_eq!(s.delete(&[4]).unwrap(), vec![true]);
}

#[test]
fn hostile_responses_stay_bounded() {
    // A line without end, a literal marker in a response we skip (drained,
    // not kept), deep nesting.
    let long = vec![b'a'; codec::MAX_LINE + 10];
    let mut reply = b"* OK ".to_vec();
    reply.extend_from_slice(&long);
    let (mut s, _) = selected("UIDPLUS", 4096, |st| {
        st.on("A0003 UID FETCH 4 (UID BODY.PEEK[])", &reply)
    });
    assert_eq!(
        fetch_all(&mut s, &[4], None).unwrap_err().kind(),
        ExitKind::Protocol
    );

    let deep = format!(
        "* 1 FETCH (UID 4 X-THING {}{})\r\nA0003 OK\r\n",
        "(".repeat(100),
        ")".repeat(100)
    );
    let (mut s, _) = selected("UIDPLUS", 64, |st| {
        st.on("A0003 UID FETCH 4 (UID BODY.PEEK[])", deep.as_bytes())
    });
    assert_eq!(
        fetch_all(&mut s, &[4], None).unwrap_err().kind(),
        ExitKind::Protocol
    );

    // An unknown response with literals is skipped whole.
    let reply = format!(
        "* LIST () \"/\" {}\r\n* 1 FETCH (UID 4 BODY[] {})\r\nA0003 OK\r\n",
        literal("weird\r\nname"),
        literal("m\r\n")
    );
    let (mut s, _) = selected("UIDPLUS", 64, |st| {
        st.on("A0003 UID FETCH 4 (UID BODY.PEEK[])", reply.as_bytes())
    });
    assert_eq!(fetch_all(&mut s, &[4], None).unwrap(), vec!["m\n"]);
}

#[test]
fn oauth_error_challenge_is_answered_and_its_words_reported() {
    let ir = auth::oauthbearer_response("alice", &Secret::new("tok"));
    let challenge = auth::b64(br#"{"status":"invalid_token"}"#);
    let stream = MockStream::new(b"* OK [CAPABILITY IMAP4rev1 AUTH=OAUTHBEARER SASL-IR] hi\r\n")
        .on(
            &format!("A0001 AUTHENTICATE OAUTHBEARER {}", ir.expose()),
            format!("+ {challenge}\r\n").as_bytes(),
        )
        .on("AQ==", b"A0001 NO [AUTHENTICATIONFAILED] bad token\r\n");
    let handle = stream.handle();
    let client = Client::new(stream.chunked(2), "mock", None).unwrap();
    let err = client
        .login(AuthMethod::OAuthBearer, "alice", &Secret::new("tok"))
        .err()
        .unwrap();
    assert_eq!(err.kind(), ExitKind::NoPerm);
    assert!(err.to_string().contains("invalid_token"), "{err}");
    assert!(handle.unsent().is_empty());
}

#[test]
fn a_top_literal_too_large_to_hold_is_refused_before_reading_it() {
    let reply = format!(
        "* 1 FETCH (UID 4 BODY[HEADER] {{{}}}\r\n",
        codec::MAX_SMALL_LITERAL + 1
    );
    let (mut s, _) = selected("UIDPLUS", 64, |st| {
        st.on(
            "A0003 UID FETCH 4 (UID BODY.PEEK[HEADER] BODY.PEEK[TEXT]<0.5000>)",
            reply.as_bytes(),
        )
    });
    let err = s.top(&[4], 5, &mut |_, _| Ok(())).unwrap_err();
    assert_eq!(err.kind(), ExitKind::Protocol, "{err}");
}

#[test]
fn move_to_uses_move_or_copy_then_delete_and_creates_on_trycreate() {
    // MOVE offered; the folder is missing at first.
    let (mut s, handle) = selected("MOVE UIDPLUS", 64, |st| {
        st.on(
            "A0003 UID MOVE 4:5 Archive",
            b"A0003 NO [TRYCREATE] Mailbox doesn't exist: Archive\r\n",
        )
        .on("A0004 CREATE Archive", b"A0004 OK created\r\n")
        .on(
            "A0005 UID MOVE 4:5 Archive",
            b"* OK [COPYUID 7 4:5 1:2] moved\r\n* 1 EXPUNGE\r\n* 1 EXPUNGE\r\nA0005 OK done\r\n",
        )
    });
    assert_eq!(s.move_to(&[5, 4], "Archive").unwrap(), vec![true, true]);
    assert!(handle.unsent().is_empty());

    // Without MOVE: UID COPY, then the deletion as for `delete`.
    let (mut s, handle) = selected("UIDPLUS", 64, |st| {
        st.on("A0003 UID COPY 4 Archive", b"A0003 OK copied\r\n")
            .on(
                "A0004 UID STORE 4 +FLAGS.SILENT (\\Deleted)",
                b"A0004 OK stored\r\n",
            )
            .on("A0005 UID EXPUNGE 4", b"* 1 EXPUNGE\r\nA0005 OK\r\n")
    });
    assert_eq!(s.move_to(&[4], "Archive").unwrap(), vec![true]);
    assert!(handle.unsent().is_empty());

    // A refusal that is not TRYCREATE (or a second TRYCREATE) is an error
    // naming the key; nothing is deleted.
    let (mut s, handle) = selected("", 64, |st| {
        st.on("A0003 UID COPY 4 Archive", b"A0003 NO [OVERQUOTA] full\r\n")
    });
    let err = s.move_to(&[4], "Archive").unwrap_err().to_string();
    assert!(err.contains("move_to") && err.contains("full"), "{err}");
    assert!(!handle.written().contains("STORE"));
}

#[test]
fn flag_seen_and_unseen_search() {
    let (mut s, handle) = selected("", 64, |st| {
        st.on(
            "A0003 UID SEARCH UNSEEN",
            b"* SEARCH 7 4\r\nA0003 OK searched\r\n",
        )
        .on(
            "A0004 UID STORE 4,7 +FLAGS.SILENT (\\Seen)",
            b"A0004 OK stored\r\n",
        )
        .on(
            "A0005 UID STORE 5 +FLAGS.SILENT (\\Seen)",
            b"A0005 NO [CANNOT] not now\r\n",
        )
    });
    assert_eq!(s.unseen().unwrap(), vec![4, 7]);
    assert_eq!(s.flag_seen(&[7, 4]).unwrap(), vec![true, true]);
    assert_eq!(s.flag_seen(&[5]).unwrap(), vec![false]);
    assert!(handle.unsent().is_empty());
}

#[test]
fn append_pipelines_with_literal_plus_and_waits_for_plus_without() {
    let dated = "01-Jan-2026 00:00:00 +0000";
    // LITERAL+: both commands go before any reply is read; APPENDUID kept.
    let (mut s, handle) = selected("LITERAL+ UIDPLUS", 7, |st| {
        st.on(&format!("A0003 APPEND INBOX \"{dated}\" {{6+}}"), b"")
            .on("ab", b"")
            .on("c!", b"* 4 EXISTS\r\nA0003 OK [APPENDUID 42 9] done\r\n")
            .on("A0004 APPEND INBOX {4+}", b"")
            .on("xy", b"")
            .on("", b"A0004 OK done\r\n")
    });
    let (mut one, mut two) = (&b"ab\r\nc!"[..], &b"xy\r\n"[..]);
    let mut batch = [
        Appending {
            date: Some(dated),
            size: 6,
            body: &mut one,
        },
        Appending {
            date: None,
            size: 4,
            body: &mut two,
        },
    ];
    let got = s.append_all("INBOX", &mut batch).unwrap();
    assert_eq!(
        got,
        vec![
            Some(AppendUid {
                uidvalidity: 42,
                uid: 9
            }),
            None
        ]
    );
    assert_eq!(
        handle.written(),
        format!("A0003 APPEND INBOX \"{dated}\" {{6+}}\r\nab\r\nc!\r\nA0004 APPEND INBOX {{4+}}\r\nxy\r\n\r\n")
    );

    // Without: each literal waits for `+`; a refusal there is the error.
    let (mut s, handle) = selected("", 64, |st| {
        st.on("A0003 APPEND INBOX {2}", b"+ go\r\n")
            .on("ok", b"A0003 OK done\r\n")
            .on("A0004 APPEND INBOX {2}", b"A0004 NO [OVERQUOTA] full\r\n")
    });
    let (mut one, mut two) = (&b"ok"[..], &b"no"[..]);
    let mut batch = [
        Appending {
            date: None,
            size: 2,
            body: &mut one,
        },
        Appending {
            date: None,
            size: 2,
            body: &mut two,
        },
    ];
    let err = s.append_all("INBOX", &mut batch).unwrap_err();
    assert!(err.to_string().contains("OVERQUOTA"), "{err}");
    assert!(handle.unsent().is_empty());
}
