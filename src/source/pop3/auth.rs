//! Authentication mechanisms: the bytes each one puts on the wire, and how
//! `auth = "auto"` chooses among what the server offers. Pure functions; the
//! dialogue itself is in the client.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use md5::{Digest, Md5};

use crate::config::secret::Secret;

/// The `auth` setting of an account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    Auto,
    User,
    Apop,
    Plain,
    Login,
    CramMd5,
    XOAuth2,
    OAuthBearer,
}

impl AuthMethod {
    pub const ALL: [(&'static str, AuthMethod); 8] = [
        ("auto", AuthMethod::Auto),
        ("user", AuthMethod::User),
        ("apop", AuthMethod::Apop),
        ("plain", AuthMethod::Plain),
        ("login", AuthMethod::Login),
        ("cram-md5", AuthMethod::CramMd5),
        ("xoauth2", AuthMethod::XOAuth2),
        ("oauthbearer", AuthMethod::OAuthBearer),
    ];

    pub fn name(self) -> &'static str {
        AuthMethod::ALL
            .iter()
            .find(|(_, m)| *m == self)
            .map(|(n, _)| *n)
            .unwrap_or("auto")
    }

    /// The SASL mechanism name, for the SASL ones.
    pub fn sasl_name(self) -> Option<&'static str> {
        match self {
            AuthMethod::Plain => Some("PLAIN"),
            AuthMethod::Login => Some("LOGIN"),
            AuthMethod::CramMd5 => Some("CRAM-MD5"),
            AuthMethod::XOAuth2 => Some("XOAUTH2"),
            AuthMethod::OAuthBearer => Some("OAUTHBEARER"),
            _ => None,
        }
    }

    /// Whether the password or token crosses the wire readable by anyone
    /// who can read the connection. A bearer token is only base64-encoded,
    /// and whoever reads it can use it until it expires.
    pub fn sends_cleartext(self) -> bool {
        matches!(
            self,
            AuthMethod::User
                | AuthMethod::Plain
                | AuthMethod::Login
                | AuthMethod::XOAuth2
                | AuthMethod::OAuthBearer
        )
    }

    /// What the secret is called for this mechanism, in messages.
    pub fn secret_name(self) -> &'static str {
        match self {
            AuthMethod::XOAuth2 | AuthMethod::OAuthBearer => "OAuth token",
            _ => "password",
        }
    }
}

/// What the server offers, as far as choosing a mechanism goes.
pub struct Offer<'a> {
    pub sasl: &'a [String],
    /// The greeting carried an APOP timestamp.
    pub apop: bool,
    /// CAPA listed USER, or the server has no CAPA (USER is then assumed).
    pub user: bool,
    pub encrypted: bool,
}

/// Picks a mechanism for `auth = "auto"` with a password (never OAuth: a
/// token has to be asked for by name).
///
/// On an encrypted connection the simple mechanisms are preferred: the
/// channel already protects the password, and PLAIN/USER work with every
/// password backend (challenge–response ones fail where the server keeps
/// only hashes). On a clear connection (only with `tls = "none"`), a
/// challenge–response mechanism keeps the password off the wire; clear-text
/// ones are the last resort, and the caller warns about them.
pub fn choose(offer: &Offer) -> Option<AuthMethod> {
    let has = |m: &str| offer.sasl.iter().any(|s| s == m);
    let secure_first = [
        (has("PLAIN"), AuthMethod::Plain),
        (offer.user, AuthMethod::User),
        (has("LOGIN"), AuthMethod::Login),
        (has("CRAM-MD5"), AuthMethod::CramMd5),
        (offer.apop, AuthMethod::Apop),
    ];
    let clear_first = [
        (has("CRAM-MD5"), AuthMethod::CramMd5),
        (offer.apop, AuthMethod::Apop),
        (has("PLAIN"), AuthMethod::Plain),
        (offer.user, AuthMethod::User),
        (has("LOGIN"), AuthMethod::Login),
    ];
    let order = if offer.encrypted {
        &secure_first
    } else {
        &clear_first
    };
    order.iter().find(|(ok, _)| *ok).map(|(_, m)| *m)
}

pub fn b64(data: &[u8]) -> String {
    B64.encode(data)
}

pub fn unb64(data: &str) -> Option<Vec<u8>> {
    B64.decode(data.trim()).ok()
}

/// APOP digest: lower-case hex MD5 of timestamp + password (RFC 1939 §7).
pub fn apop_digest(timestamp: &str, password: &Secret) -> Secret {
    let mut h = Md5::new();
    h.update(timestamp.as_bytes());
    h.update(password.expose().as_bytes());
    Secret::new(hex(&h.finalize()))
}

/// SASL PLAIN response (RFC 4616), base64: no authzid, user, password.
pub fn plain_response(user: &str, password: &Secret) -> Secret {
    let mut raw = Vec::new();
    raw.push(0);
    raw.extend_from_slice(user.as_bytes());
    raw.push(0);
    raw.extend_from_slice(password.expose().as_bytes());
    Secret::new(b64(&raw))
}

/// CRAM-MD5 response (RFC 2195): base64 of `user hex(HMAC-MD5(password, challenge))`.
pub fn cram_md5_response(user: &str, password: &Secret, challenge: &[u8]) -> Secret {
    let mac = hmac_md5(password.expose().as_bytes(), challenge);
    Secret::new(b64(format!("{user} {}", hex(&mac)).as_bytes()))
}

/// XOAUTH2 initial response (Google/Microsoft).
pub fn xoauth2_response(user: &str, token: &Secret) -> Secret {
    let raw = format!("user={user}\x01auth=Bearer {}\x01\x01", token.expose());
    Secret::new(b64(raw.as_bytes()))
}

/// OAUTHBEARER initial response (RFC 7628 §3.1).
pub fn oauthbearer_response(user: &str, token: &Secret) -> Secret {
    let raw = format!(
        "n,a={},\x01auth=Bearer {}\x01\x01",
        gs2_escape(user),
        token.expose()
    );
    Secret::new(b64(raw.as_bytes()))
}

/// RFC 5801 saslname escaping: `,` → `=2C`, `=` → `=3D`.
fn gs2_escape(s: &str) -> String {
    s.replace('=', "=3D").replace(',', "=2C")
}

fn hmac_md5(key: &[u8], message: &[u8]) -> [u8; 16] {
    use hmac::Mac;
    // HMAC takes a key of any length (longer ones are hashed first).
    let mut mac = hmac::Hmac::<Md5>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apop_matches_rfc1939_example() {
        let d = apop_digest(
            "<1896.697170952@dbc.mtview.ca.us>",
            &Secret::new("tanstaaf"),
        );
        assert_eq!(d.expose(), "c4c9334bac560ecc979e58001b3e22fb");
    }

    #[test]
    fn cram_md5_matches_rfc2195_example() {
        let challenge = unb64("PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+").unwrap();
        let r = cram_md5_response("tim", &Secret::new("tanstaaftanstaaf"), &challenge);
        assert_eq!(
            r.expose(),
            "dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw"
        );
    }

    #[test]
    fn plain_and_oauth_encodings() {
        let p = plain_response("alice", &Secret::new("pw"));
        assert_eq!(unb64(p.expose()).unwrap(), b"\0alice\0pw");
        let x = xoauth2_response("a@b", &Secret::new("tok"));
        assert_eq!(
            unb64(x.expose()).unwrap(),
            b"user=a@b\x01auth=Bearer tok\x01\x01"
        );
        let o = oauthbearer_response("a,b=c", &Secret::new("tok"));
        assert_eq!(
            unb64(o.expose()).unwrap(),
            b"n,a=a=2Cb=3Dc,\x01auth=Bearer tok\x01\x01"
        );
    }

    #[test]
    fn auto_prefers_plain_over_tls_and_challenge_in_clear() {
        let sasl = vec!["PLAIN".to_string(), "CRAM-MD5".to_string()];
        let mut offer = Offer {
            sasl: &sasl,
            apop: true,
            user: true,
            encrypted: true,
        };
        assert_eq!(choose(&offer), Some(AuthMethod::Plain));
        offer.encrypted = false;
        assert_eq!(choose(&offer), Some(AuthMethod::CramMd5));
        let none: Vec<String> = vec![];
        let offer = Offer {
            sasl: &none,
            apop: true,
            user: true,
            encrypted: false,
        };
        assert_eq!(choose(&offer), Some(AuthMethod::Apop));
        let offer = Offer {
            sasl: &none,
            apop: false,
            user: false,
            encrypted: true,
        };
        assert_eq!(choose(&offer), None);
    }
}
