//! The IMAP client (`popfetch::source::imap`) against a real Dovecot IMAP
//! server: login over IMAPS and STARTTLS, listing, byte-exact streaming of
//! mixed messages, headers, `max_size`, UID EXPUNGE.

use std::time::Duration;

use popfetch::config::secret::Secret;
use popfetch::error::ExitKind;
use popfetch::net::{self, Stream, TlsContext, TlsTrust};
use popfetch::source::imap::{Client, Fetched, Session};
use popfetch::source::pop3::auth::AuthMethod;

use crate::support::dovecot::{require_dovecot_imap, Dovecot};
use crate::support::mixed_messages;

const TIMEOUT: Duration = Duration::from_secs(20);

fn tls(dc: &Dovecot) -> TlsContext {
    TlsContext::new(&TlsTrust {
        ca_file: Some(dc.pki().ca_path.clone()),
        fingerprints: Vec::new(),
    })
    .unwrap()
}

/// Logged in over IMAPS with `auth = "auto"`.
fn imaps_session(dc: &Dovecot, user: &str) -> Session {
    let tcp = net::connect("127.0.0.1", dc.imaps_port(), TIMEOUT).unwrap();
    let stream = tls(dc)
        .wrap_implicit(tcp, "localhost", "the test expects implicit TLS")
        .unwrap();
    let client = Client::new(stream, "localhost", None).unwrap();
    assert!(client.is_tls());
    client
        .login(AuthMethod::Auto, user, &Secret::new(dc.password(user)))
        .unwrap()
}

/// The stored message as the source delivers it: CRLF → LF, nothing added.
fn delivered_form(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        if !(data[i] == b'\r' && data.get(i + 1) == Some(&b'\n')) {
            out.push(data[i]);
        }
        i += 1;
    }
    out
}

/// RFC822.SIZE of a stored message: its lines end in CRLF on the wire.
fn wire_size(data: &[u8]) -> u64 {
    let lf = delivered_form(data);
    (lf.len() + lf.iter().filter(|&&b| b == b'\n').count()) as u64
}

/// Fetches `uids`; each body with its octets, `None` when refused or over
/// the limit.
fn fetch(session: &mut Session, uids: &[u32], max: Option<u64>) -> Vec<Option<(Vec<u8>, u64)>> {
    let mut got = vec![None; uids.len()];
    let mut seen = vec![0; uids.len()];
    session
        .fetch(uids, max, &mut |i, f| {
            seen[i] += 1;
            if let Fetched::Body(body) = f {
                let mut data = Vec::new();
                match body.read_to_end(&mut data) {
                    Ok(_) => got[i] = Some((data, body.octets())),
                    Err(_) => assert!(body.over_limit(), "message {i} failed to read"),
                }
            }
            Ok(())
        })
        .unwrap();
    assert!(seen.iter().all(|&n| n == 1), "each message once: {seen:?}");
    got
}

#[test]
fn imap_lists_fetches_byte_exact_and_deletes_with_uid_expunge() {
    if !require_dovecot_imap() {
        return;
    }
    let dc = Dovecot::start(&[("alice", "pw-alice")]);
    let datas = mixed_messages(50, 300 * 1024);
    dc.add_messages("alice", &datas);

    let mut s = imaps_session(&dc, "alice");
    for cap in ["IMAP4REV1", "UIDPLUS", "LITERAL+"] {
        assert!(s.capabilities().has(cap), "{cap} missing");
    }
    let mb = s.select("INBOX", false).unwrap().clone();
    assert_eq!(mb.exists, 50);
    assert!(mb.uidvalidity > 0 && !mb.read_only);

    let listing = s.listing().unwrap();
    assert_eq!(listing.len(), 50);
    for (entry, data) in listing.iter().zip(&datas) {
        assert_eq!(entry.size, wire_size(data), "UID {}", entry.handle);
        assert_eq!(
            entry.id.as_deref(),
            Some(format!("{}/{}", mb.uidvalidity, entry.handle).as_str())
        );
    }
    let uids: Vec<u32> = listing.iter().map(|e| e.handle).collect();

    // Every message in one go, byte-exact, with the server's octet count.
    let got = fetch(&mut s, &uids, None);
    for ((g, data), entry) in got.iter().zip(&datas).zip(&listing) {
        let (body, octets) = g.as_ref().expect("fetched");
        assert!(
            *body == delivered_form(data),
            "UID {} differs",
            entry.handle
        );
        assert_eq!(*octets, entry.size);
    }

    // Headers: the block up to and with the blank line.
    let mut headers = vec![Vec::new(); uids.len()];
    let ok = s
        .headers(&uids, &mut |i, f| {
            if let Fetched::Body(b) = f {
                b.read_to_end(&mut headers[i]).unwrap();
            }
            Ok(())
        })
        .unwrap();
    assert!(ok);
    for (h, data) in headers.iter().zip(&datas) {
        let lf = delivered_form(data);
        let end = lf.windows(2).position(|w| w == b"\n\n").unwrap() + 2;
        assert_eq!(h, &lf[..end]);
    }

    // max_size: the big ones stop, the session stays in step.
    let got = fetch(&mut s, &uids, Some(100 * 1024));
    for ((g, data), entry) in got.iter().zip(&datas).zip(&listing) {
        if entry.size > 100 * 1024 {
            assert!(g.is_none(), "UID {} is over the limit", entry.handle);
        } else {
            assert!(g.as_ref().unwrap().0 == delivered_form(data));
        }
    }

    // Delete every third message (and one that does not exist).
    let doomed: Vec<u32> = uids.iter().copied().step_by(3).collect();
    let mut asked = doomed.clone();
    asked.push(999_999);
    let gone = s.delete(&asked).unwrap();
    assert!(gone[..doomed.len()].iter().all(|&g| g), "{gone:?}");
    let left: Vec<u32> = s.listing().unwrap().iter().map(|e| e.handle).collect();
    let want: Vec<u32> = uids
        .iter()
        .copied()
        .filter(|u| !doomed.contains(u))
        .collect();
    assert_eq!(left, want);
    // The UIDs gone are refused, the rest still come.
    let got = fetch(&mut s, &[doomed[0], want[0]], None);
    assert!(got[0].is_none() && got[1].is_some());
    s.finish().unwrap();

    assert_eq!(dc.message_count("alice"), 50 - doomed.len());
    // A new session sees the same folder under the same UIDVALIDITY.
    let mut s = imaps_session(&dc, "alice");
    let again = s.select("INBOX", true).unwrap().clone();
    assert_eq!(again.uidvalidity, mb.uidvalidity);
    assert!(again.read_only);
    assert_eq!(s.listing().unwrap().len(), want.len());
    s.finish().unwrap();
}

#[test]
fn imap_starttls_then_login_and_every_sasl_mechanism_dovecot_offers() {
    if !require_dovecot_imap() {
        return;
    }
    let dc = Dovecot::start(&[("bob", "pw bob \"quoted\"")]);
    dc.add_messages("bob", &mixed_messages(3, 1000));
    let connect = || -> Client<Stream> {
        let tcp = net::connect("127.0.0.1", dc.imap_port(), TIMEOUT).unwrap();
        Client::new(Stream::Plain(tcp), "localhost", None).unwrap()
    };
    for method in [
        AuthMethod::User,
        AuthMethod::Plain,
        AuthMethod::Login,
        AuthMethod::CramMd5,
    ] {
        let mut client = connect();
        client.refresh_capabilities().unwrap();
        assert!(client.capabilities().has("STARTTLS"));
        let client = client.starttls(&tls(&dc)).unwrap();
        assert!(client.is_tls());
        assert!(!client.capabilities().has("STARTTLS"));
        let mut s = client
            .login(method, "bob", &Secret::new(dc.password("bob")))
            .unwrap_or_else(|e| panic!("{method:?}: {e}"));
        s.select("INBOX", true).unwrap();
        assert_eq!(s.listing().unwrap().len(), 3, "{method:?}");
        s.finish().unwrap();
    }

    // A wrong password: 77, with Dovecot's code and words.
    let client = connect().starttls(&tls(&dc)).unwrap();
    let err = client
        .login(AuthMethod::Plain, "bob", &Secret::new("wrong"))
        .err()
        .unwrap();
    assert_eq!(err.kind(), ExitKind::NoPerm, "{err}");
    assert!(err.to_string().contains("AUTHENTICATIONFAILED"), "{err}");
    assert!(!err.to_string().contains("wrong"));

    // A folder that does not exist: a configuration matter.
    let tcp = net::connect("127.0.0.1", dc.imaps_port(), TIMEOUT).unwrap();
    let stream = tls(&dc)
        .wrap_implicit(tcp, "localhost", "the test expects implicit TLS")
        .unwrap();
    let mut s = Client::new(stream, "localhost", None)
        .unwrap()
        .login(AuthMethod::Auto, "bob", &Secret::new(dc.password("bob")))
        .unwrap();
    let err = s.select("No such folder", true).unwrap_err();
    assert_eq!(err.kind(), ExitKind::Config, "{err}");
    s.finish().unwrap();
}
