//! The POP3 state machine on a scripted in-memory stream ([`MockStream`]):
//! each test plays a server's side of a dialogue and pins the exact bytes
//! the client writes and what it makes of the replies, without sockets.

use std::io::{self, Read};

use base64::Engine;

use super::mock::{Handle, MockStream};
use super::*;

const READY: &[u8] = b"+OK POP3 ready\r\n";
const CAPA_PIPE: &[u8] = b"+OK\r\nUSER\r\nPIPELINING\r\nUIDL\r\n.\r\n";
const CAPA_PLAIN: &[u8] = b"+OK\r\nUSER\r\nUIDL\r\n.\r\n";

fn b64(s: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn greet(stream: MockStream) -> Result<Client<MockStream>> {
    Client::new(stream, "mock", None)
}

/// Greeting, CAPA, USER/PASS, CAPA again: a session whose server offers
/// `capa`, with `then` scripting what follows. What the login wrote is
/// forgotten, so tests assert on their own commands only.
fn logged_in(
    capa: &[u8],
    chunk: usize,
    then: impl FnOnce(MockStream) -> MockStream,
) -> (Session<MockStream>, Handle) {
    let stream = MockStream::new(READY)
        .on("CAPA", capa)
        .on("USER alice", b"+OK\r\n")
        .on("PASS hunter2", b"+OK logged in\r\n")
        .on("CAPA", capa);
    let stream = then(stream).chunked(chunk);
    let handle = stream.handle();
    let mut client = greet(stream).unwrap();
    client.refresh_capa().unwrap();
    let session = client
        .login(AuthMethod::User, "alice", &Secret::new("hunter2"))
        .unwrap();
    handle.clear();
    (session, handle)
}

/// Reads every RETR reply: bodies as text, refusals as `-reason`.
fn fetch_all(session: &mut Session<MockStream>, numbers: &[u32]) -> Result<Vec<String>> {
    let mut got = Vec::new();
    session.retr_many(numbers, &mut |_, r| {
        match r {
            Retrieved::Body(body) => {
                let mut text = String::new();
                body.read_to_string(&mut text)
                    .map_err(|e| Error::local_io("writing the message", e))?;
                got.push(text);
            }
            Retrieved::Refused(reason) => got.push(format!("-{reason}")),
        }
        Ok(())
    })?;
    Ok(got)
}

#[test]
fn greeting_is_read_and_nothing_is_sent() {
    let stream = MockStream::new(b"+OK Dovecot ready <1.2@host>\r\n").chunked(1);
    let handle = stream.handle();
    let client = greet(stream).unwrap();
    assert_eq!(client.greeting(), "Dovecot ready <1.2@host>");
    assert_eq!(client.apop_timestamp(), Some("<1.2@host>"));
    assert!(!client.is_tls());
    assert_eq!(handle.written(), "");
}

#[test]
fn refused_greeting_is_classified_by_its_response_code() {
    for (line, kind) in [
        (&b"-ERR [SYS/TEMP] overloaded\r\n"[..], ExitKind::TempFail),
        (b"-ERR [IN-USE] locked\r\n", ExitKind::TempFail),
        (b"-ERR [SYS/PERM] gone\r\n", ExitKind::Unavailable),
        (b"-ERR go away\r\n", ExitKind::Unavailable),
    ] {
        let err = greet(MockStream::new(line)).err().unwrap();
        assert_eq!(err.kind(), kind, "{}", err.message());
        let text = String::from_utf8_lossy(&line[5..line.len() - 2]).into_owned();
        assert!(err.message().contains(&text), "{}", err.message());
    }
}

#[test]
fn greeting_with_a_bare_lf_is_a_protocol_error() {
    let err = greet(MockStream::new(b"+OK ready\n")).err().unwrap();
    assert_eq!(err.kind(), ExitKind::Protocol);
    assert!(err.message().contains("bare LF"), "{}", err.message());
}

#[test]
fn connection_closed_before_the_greeting_is_a_network_error() {
    let err = greet(MockStream::new(b"+OK rea").then_eof()).err().unwrap();
    assert_eq!(err.kind(), ExitKind::TempFail);
    assert!(
        err.message().contains("closed the connection"),
        "{}",
        err.message()
    );
}

#[test]
fn capa_is_read_in_any_chunking_and_its_absence_means_rfc1939() {
    let stream = MockStream::new(READY)
        .on(
            "CAPA",
            b"+OK list\r\nSTLS\r\nSASL PLAIN CRAM-MD5\r\nPIPELINING\r\n.\r\n",
        )
        .chunked(1);
    let handle = stream.handle();
    let mut client = greet(stream).unwrap();
    let capa = client.refresh_capa().unwrap();
    assert!(capa.known && capa.has("PIPELINING") && capa.has("STLS"));
    assert_eq!(capa.sasl(), ["PLAIN", "CRAM-MD5"]);
    assert_eq!(handle.written(), "CAPA\r\n");

    // An old server: `-ERR` to CAPA leaves the set unknown, not empty.
    let mut client = greet(MockStream::new(READY).on("CAPA", b"-ERR what?\r\n")).unwrap();
    assert!(!client.refresh_capa().unwrap().known);
    // ... so USER is assumed.
    assert_eq!(
        client.choose_auth(AuthMethod::Auto).unwrap(),
        AuthMethod::User
    );
}

#[test]
fn user_pass_login_sends_utf8_first_and_asks_capa_after() {
    let capa = b"+OK\r\nUSER\r\nUTF8\r\n.\r\n";
    let stream = MockStream::new(READY)
        .on("CAPA", capa)
        .on("UTF8", b"+OK\r\n")
        .on("USER alice", b"+OK\r\n")
        .on("PASS hunter2", b"+OK\r\n")
        .on("CAPA", capa)
        .chunked(3);
    let handle = stream.handle();
    let mut client = greet(stream).unwrap();
    client.refresh_capa().unwrap();
    let session = client
        .login(AuthMethod::Auto, "alice", &Secret::new("hunter2"))
        .unwrap();
    assert!(session.capabilities().has("UTF8"));
    assert_eq!(
        handle.written(),
        // UTF8 only in the AUTHORIZATION state (RFC 6856 §2), so before
        // USER; never again after the login.
        "CAPA\r\nUTF8\r\nUSER alice\r\nPASS hunter2\r\nCAPA\r\n"
    );
    assert!(handle.unsent().is_empty());
}

#[test]
fn refused_user_stops_before_the_password_is_sent() {
    let stream = MockStream::new(READY)
        .on("USER alice", b"-ERR [AUTH] no such user\r\n")
        .on("PASS hunter2", b"+OK\r\n");
    let handle = stream.handle();
    let err = greet(stream)
        .unwrap()
        .login(AuthMethod::User, "alice", &Secret::new("hunter2"))
        .err()
        .unwrap();
    assert_eq!(err.kind(), ExitKind::NoPerm);
    assert!(err.message().contains("no such user"), "{}", err.message());
    assert_eq!(handle.written(), "USER alice\r\n");
}

#[test]
fn refused_password_is_an_auth_failure_unless_the_mailbox_is_in_use() {
    for (reply, kind) in [
        (&b"-ERR wrong password\r\n"[..], ExitKind::NoPerm),
        (b"-ERR [IN-USE] another session\r\n", ExitKind::TempFail),
        (b"-ERR [LOGIN-DELAY] wait\r\n", ExitKind::TempFail),
    ] {
        let stream = MockStream::new(READY)
            .on("USER alice", b"+OK\r\n")
            .on("PASS hunter2", reply);
        let err = greet(stream)
            .unwrap()
            .login(AuthMethod::User, "alice", &Secret::new("hunter2"))
            .err()
            .unwrap();
        assert_eq!(err.kind(), kind, "{}", err.message());
    }
}

#[test]
fn user_with_a_line_break_never_reaches_the_wire() {
    let stream = MockStream::new(READY);
    let handle = stream.handle();
    let err = greet(stream)
        .unwrap()
        .login(AuthMethod::User, "alice\r\nDELE 1", &Secret::new("x"))
        .err()
        .unwrap();
    assert_eq!(err.kind(), ExitKind::Config);
    assert_eq!(handle.written(), "");
}

#[test]
fn apop_sends_the_rfc1939_digest() {
    // The example of RFC 1939 §7.
    let stream = MockStream::new(b"+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n")
        .on("APOP mrose c4c9334bac560ecc979e58001b3e22fb", b"+OK\r\n")
        .on("CAPA", b"-ERR\r\n");
    let handle = stream.handle();
    greet(stream)
        .unwrap()
        .login(AuthMethod::Apop, "mrose", &Secret::new("tanstaaf"))
        .unwrap();
    assert!(handle.unsent().is_empty(), "{:?}", handle.unsent());

    // Without a timestamp in the greeting, nothing is sent.
    let stream = MockStream::new(READY);
    let handle = stream.handle();
    let err = greet(stream)
        .unwrap()
        .login(AuthMethod::Apop, "mrose", &Secret::new("tanstaaf"))
        .err()
        .unwrap();
    assert_eq!(err.kind(), ExitKind::NoPerm);
    assert_eq!(handle.written(), "");
}

#[test]
fn auth_plain_goes_inline_up_to_255_octets_and_after_a_challenge_beyond() {
    // "AUTH PLAIN " + base64 + CRLF: 173 password bytes give a 253-octet
    // line, 174 give 257 (base64 grows in steps of 4).
    for (len, inline) in [(7, true), (173, true), (174, false)] {
        let password = "p".repeat(len);
        let response = b64(format!("\0alice\0{password}").as_bytes());
        let line = format!("AUTH PLAIN {response}");
        assert_eq!(line.len() + 2 <= 255, inline, "{len}");
        let stream = if inline {
            MockStream::new(READY).on(&line, b"+OK\r\n")
        } else {
            MockStream::new(READY)
                .on("AUTH PLAIN", b"+ \r\n")
                .on(&response, b"+OK\r\n")
        };
        let stream = stream.on("CAPA", b"-ERR\r\n");
        let handle = stream.handle();
        greet(stream)
            .unwrap()
            .login(AuthMethod::Plain, "alice", &Secret::new(&password))
            .unwrap();
        assert!(handle.unsent().is_empty(), "{len}: {:?}", handle.unsent());
    }
}

#[test]
fn auth_login_answers_each_challenge_in_turn() {
    let stream = MockStream::new(READY)
        .on(
            "AUTH LOGIN",
            format!("+ {}\r\n", b64(b"Username:")).as_bytes(),
        )
        .on(
            &b64(b"alice"),
            format!("+ {}\r\n", b64(b"Password:")).as_bytes(),
        )
        .on(&b64(b"hunter2"), b"+OK\r\n")
        .on("CAPA", b"-ERR\r\n")
        .chunked(1);
    let handle = stream.handle();
    greet(stream)
        .unwrap()
        .login(AuthMethod::Login, "alice", &Secret::new("hunter2"))
        .unwrap();
    assert_eq!(
        handle.written(),
        "AUTH LOGIN\r\nYWxpY2U=\r\naHVudGVyMg==\r\nCAPA\r\n"
    );
}

#[test]
fn auth_cram_md5_answers_the_rfc2195_example() {
    let stream = MockStream::new(READY)
        .on(
            "AUTH CRAM-MD5",
            b"+ PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+\r\n",
        )
        .on(
            "dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw",
            b"+OK\r\n",
        )
        .on("CAPA", b"-ERR\r\n");
    let handle = stream.handle();
    greet(stream)
        .unwrap()
        .login(AuthMethod::CramMd5, "tim", &Secret::new("tanstaaftanstaaf"))
        .unwrap();
    assert!(handle.unsent().is_empty(), "{:?}", handle.unsent());
}

#[test]
fn refused_auth_is_an_auth_failure_in_the_servers_words() {
    let stream =
        MockStream::new(READY).on("AUTH PLAIN AGFsaWNlAGh1bnRlcjI=", b"-ERR [AUTH] denied\r\n");
    let handle = stream.handle();
    let err = greet(stream)
        .unwrap()
        .login(AuthMethod::Plain, "alice", &Secret::new("hunter2"))
        .err()
        .unwrap();
    assert_eq!(err.kind(), ExitKind::NoPerm);
    assert!(err.message().contains("[AUTH] denied"), "{}", err.message());
    assert_eq!(handle.written(), "AUTH PLAIN AGFsaWNlAGh1bnRlcjI=\r\n");
}

#[test]
fn listing_is_pipelined_in_one_write_with_pipelining() {
    let (mut session, handle) = logged_in(CAPA_PIPE, 1, |s| {
        s.on("LIST", b"+OK 2 messages\r\n2 200\r\n1 100\r\n.\r\n")
            .on("UIDL", b"+OK\r\n1 aaa\r\n2 bbb\r\n.\r\n")
    });
    let listed = session.listing().unwrap();
    assert_eq!(
        listed,
        [
            Listed {
                number: 1,
                size: 100,
                uidl: Some("aaa".into())
            },
            Listed {
                number: 2,
                size: 200,
                uidl: Some("bbb".into())
            },
        ]
    );
    assert_eq!(handle.writes(), ["LIST\r\nUIDL\r\n"]);
}

#[test]
fn listing_without_pipelining_waits_for_list_before_uidl() {
    let (mut session, handle) = logged_in(CAPA_PLAIN, usize::MAX, |s| {
        s.on("LIST", b"+OK\r\n1 100\r\n.\r\n")
            .on("UIDL", b"-ERR not supported\r\n")
    });
    let listed = session.listing().unwrap();
    // A plain refusal of UIDL: messages without identities.
    assert_eq!(
        listed,
        [Listed {
            number: 1,
            size: 100,
            uidl: None
        }]
    );
    assert_eq!(handle.writes(), ["LIST\r\n", "UIDL\r\n"]);
}

#[test]
fn temporary_uidl_refusal_is_not_taken_for_no_uidl() {
    let (mut session, _) = logged_in(CAPA_PLAIN, usize::MAX, |s| {
        s.on("LIST", b"+OK\r\n1 100\r\n.\r\n")
            .on("UIDL", b"-ERR [SYS/TEMP] try later\r\n")
    });
    let err = session.listing().unwrap_err();
    assert_eq!(err.kind(), ExitKind::TempFail);
}

#[test]
fn malformed_listing_lines_are_protocol_errors() {
    for (list, uidl, what) in [
        (
            &b"+OK\r\n1 lots\r\n.\r\n"[..],
            &b""[..],
            "malformed LIST line",
        ),
        (
            b"+OK\r\n1 100\r\n.\r\n",
            b"+OK\r\n1\r\n.\r\n",
            "malformed UIDL line",
        ),
        (
            b"+OK\r\n1 100\r\n.\r\n",
            b"+OK\r\n1 has\x7fdel\r\n.\r\n",
            "RFC 1939 does not allow",
        ),
    ] {
        let (mut session, _) = logged_in(CAPA_PIPE, usize::MAX, |s| {
            s.on("LIST", list).on("UIDL", uidl)
        });
        let err = session.listing().unwrap_err();
        assert_eq!(err.kind(), ExitKind::Protocol, "{}", err.message());
        assert!(err.message().contains(what), "{}", err.message());
    }
}

#[test]
fn a_listing_past_the_entry_cap_is_refused() {
    let mut list = b"+OK\r\n".to_vec();
    for n in 1..=codec::MAX_LISTING_ENTRIES + 1 {
        list.extend_from_slice(format!("{n} 1\r\n").as_bytes());
    }
    list.extend_from_slice(b".\r\n");
    let (mut session, _) = logged_in(CAPA_PLAIN, usize::MAX, |s| s.on("LIST", &list));
    let err = session.listing().unwrap_err();
    assert_eq!(err.kind(), ExitKind::Protocol);
    assert!(err.message().contains("entries"), "{}", err.message());
}

#[test]
fn retr_is_pipelined_and_bodies_survive_one_byte_chunks() {
    let (mut session, handle) = logged_in(CAPA_PIPE, 1, |s| {
        s.on("RETR 1", b"+OK\r\nSubject: a\r\n\r\n..dot\r\nend\r\n.\r\n")
            .on("RETR 2", b"+OK\r\n.\r\n")
            .on("RETR 3", b"+OK\r\nx\ry\r\n.\r\n")
    });
    let got = fetch_all(&mut session, &[1, 2, 3]).unwrap();
    assert_eq!(got, ["Subject: a\n\n.dot\nend\n", "", "x\ry\n"]);
    assert_eq!(handle.writes(), ["RETR 1\r\nRETR 2\r\nRETR 3\r\n"]);
}

#[test]
fn retr_refused_in_the_middle_is_handed_over_and_the_rest_follows() {
    let (mut session, _) = logged_in(CAPA_PIPE, usize::MAX, |s| {
        s.on("RETR 1", b"+OK\r\none\r\n.\r\n")
            .on("RETR 2", b"-ERR no such message\r\n")
            .on("RETR 3", b"+OK\r\nthree\r\n.\r\n")
    });
    let got = fetch_all(&mut session, &[1, 2, 3]).unwrap();
    assert_eq!(got, ["one\n", "-no such message", "three\n"]);
}

#[test]
fn temporary_retr_refusal_stops_asking_and_fails_temporarily() {
    let (mut session, handle) = logged_in(CAPA_PLAIN, usize::MAX, |s| {
        s.on("RETR 1", b"-ERR [SYS/TEMP] disk trouble\r\n")
            .on("RETR 2", b"+OK\r\ntwo\r\n.\r\n")
    });
    let err = fetch_all(&mut session, &[1, 2]).unwrap_err();
    assert_eq!(err.kind(), ExitKind::TempFail);
    assert_eq!(handle.written(), "RETR 1\r\n");
    // The server's refusal, with its code: not ours, not the network's.
    assert_eq!(
        err.server_reply(),
        Some((Some(&RespCode::SysTemp), "disk trouble"))
    );
}

#[test]
fn eof_inside_a_body_is_the_networks_failure_not_the_targets() {
    let (mut session, _) = logged_in(CAPA_PIPE, 4, |s| {
        s.on("RETR 1", b"+OK\r\none\r\n.\r\n")
            .on("RETR 2", b"+OK\r\nhalf a mess")
            .then_eof()
    });
    let err = fetch_all(&mut session, &[1, 2]).unwrap_err();
    // The callback saw an I/O error and failed with a local one (74); the
    // session reports what really happened: the server hung up (75).
    assert_eq!(err.kind(), ExitKind::TempFail, "{}", err.message());
    assert!(
        err.message().contains("receiving message 2"),
        "{}",
        err.message()
    );
    assert!(err.is_transport() && !err.is_local());
}

#[test]
fn failed_delivery_drains_the_outstanding_replies_and_quit_still_works() {
    let (mut session, handle) = logged_in(CAPA_PIPE, 2, |s| {
        s.on("RETR 1", b"+OK\r\none\r\n.\r\n")
            .on("RETR 2", b"+OK\r\ntwo\r\n.\r\n")
            .on("QUIT", b"+OK bye\r\n")
    });
    let err = session
        .retr_many(&[1, 2], &mut |i, _| {
            Err(Error::new(ExitKind::Io, format!("disk full at {i}")).local())
        })
        .unwrap_err();
    assert_eq!(err.message(), "disk full at 0");
    // The callback's own error comes back as itself: still ours.
    assert!(err.is_local());
    session.quit().unwrap();
    assert_eq!(handle.written(), "RETR 1\r\nRETR 2\r\nQUIT\r\n");
}

#[test]
fn a_message_over_the_limit_fails_to_read_and_is_skipped() {
    let (mut session, _) = logged_in(CAPA_PIPE, usize::MAX, |s| {
        s.on("RETR 1", b"+OK\r\n0123456789abcdef\r\n.\r\n")
            .on("RETR 2", b"+OK\r\nok\r\n.\r\n")
    });
    session.limit_retr(Some(8));
    let mut seen = Vec::new();
    session
        .retr_many(&[1, 2], &mut |_, r| {
            let Retrieved::Body(body) = r else {
                panic!("refused")
            };
            let mut text = String::new();
            let read = body.read_to_string(&mut text);
            seen.push((read.is_ok(), body.over_limit(), text));
            Ok(())
        })
        .unwrap();
    assert!(!seen[0].0 && seen[0].1, "{seen:?}");
    assert_eq!(seen[1], (true, false, "ok\n".to_string()));
}

#[test]
fn dele_goes_out_in_one_batch_and_each_answer_is_kept() {
    let (mut session, handle) = logged_in(CAPA_PIPE, 1, |s| {
        s.on("DELE 1", b"+OK\r\n")
            .on("DELE 2", b"-ERR already deleted\r\n")
            .on("DELE 3", b"+OK\r\n")
            .on("QUIT", b"+OK 2 deleted\r\n")
    });
    assert_eq!(session.dele_many(&[1, 2, 3]).unwrap(), [true, false, true]);
    session.quit().unwrap();
    assert_eq!(
        handle.writes(),
        ["DELE 1\r\nDELE 2\r\nDELE 3\r\n", "QUIT\r\n"]
    );
}

#[test]
fn quit_refused_means_the_deletions_are_not_confirmed() {
    let (session, _) = logged_in(CAPA_PLAIN, usize::MAX, |s| {
        s.on("QUIT", b"-ERR [SYS/TEMP] could not update\r\n")
    });
    let err = session.quit().unwrap_err();
    assert_eq!(err.kind(), ExitKind::TempFail);
    assert!(err.message().contains("QUIT"), "{}", err.message());

    // The server hangs up instead of confirming: not a success either.
    let (session, _) = logged_in(CAPA_PLAIN, usize::MAX, |s| s.on("QUIT", b"").then_eof());
    assert_eq!(session.quit().unwrap_err().kind(), ExitKind::TempFail);
}

#[test]
fn unsolicited_reply_after_the_last_retr_stops_before_any_dele() {
    // One more `+OK` than was asked for: whether it sits in the read
    // buffer or has only arrived on the stream, the session must stop.
    for chunk in [usize::MAX, 1] {
        let (mut session, handle) = logged_in(CAPA_PIPE, chunk, |s| {
            s.on("RETR 1", b"+OK\r\none\r\n.\r\n+OK extra\r\n")
                .on("DELE 1", b"+OK\r\n")
        });
        let err = fetch_all(&mut session, &[1]).unwrap_err();
        assert_eq!(err.kind(), ExitKind::Protocol, "chunk {chunk}");
        assert!(err.message().contains("+OK extra"), "{}", err.message());
        assert!(session.dele_many(&[1]).is_err());
        assert_eq!(handle.written(), "RETR 1\r\n", "chunk {chunk}");
    }
}

#[test]
fn stls_upgrades_then_asks_capa_again() {
    let stream = MockStream::new(READY)
        .on("CAPA", b"+OK\r\nSTLS\r\n.\r\n")
        .on("STLS", b"+OK begin TLS\r\n")
        .on("CAPA", b"+OK\r\nUSER\r\nSASL PLAIN\r\n.\r\n");
    let handle = stream.handle();
    let tls = TlsContext::new(&crate::net::TlsTrust::default()).unwrap();
    let mut client = greet(stream).unwrap();
    client.refresh_capa().unwrap();
    let client = client.starttls(&tls).unwrap();
    assert!(client.is_tls() && handle.is_tls());
    assert_eq!(client.capabilities().sasl(), ["PLAIN"]);
    assert_eq!(handle.written(), "CAPA\r\nSTLS\r\nCAPA\r\n");
}

#[test]
fn stls_refuses_bytes_sent_before_tls_started_and_a_missing_offer() {
    let tls = TlsContext::new(&crate::net::TlsTrust::default()).unwrap();
    // Injected after the STLS reply, in the clear (CVE-2011-0411).
    let stream = MockStream::new(READY).on("STLS", b"+OK\r\n+OK injected\r\n");
    let handle = stream.handle();
    let err = greet(stream).unwrap().starttls(&tls).err().unwrap();
    assert_eq!(err.kind(), ExitKind::Protocol);
    assert!(!handle.is_tls());

    // CAPA without STLS: nothing is sent, no downgrade.
    let stream = MockStream::new(READY).on("CAPA", CAPA_PLAIN);
    let handle = stream.handle();
    let mut client = greet(stream).unwrap();
    client.refresh_capa().unwrap();
    let err = client.starttls(&tls).err().unwrap();
    assert_eq!(err.kind(), ExitKind::NoPerm);
    assert_eq!(handle.written(), "CAPA\r\n");
}

#[test]
fn connection_reset_inside_a_listing_is_a_network_error() {
    let (mut session, _) = logged_in(CAPA_PLAIN, usize::MAX, |s| {
        s.on("LIST", b"+OK\r\n1 100\r\n2 2")
            .then_fail(io::ErrorKind::ConnectionReset)
    });
    let err = session.listing().unwrap_err();
    assert_eq!(err.kind(), ExitKind::TempFail);
    assert!(err.message().contains("LIST listing"), "{}", err.message());
}
