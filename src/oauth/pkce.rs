//! Random strings for `state` and the PKCE verifier (RFC 7636), the S256
//! challenge, and the percent-encoding of URL query values.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::error::{Error, ExitKind, Result};

/// `bytes` random bytes from the kernel, base64url without padding: 32
/// bytes give the 43 characters RFC 7636 §4.1 asks of a verifier.
pub fn random_string(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    let mut filled = 0;
    while filled < buf.len() {
        let n = rustix::rand::getrandom(&mut buf[filled..], rustix::rand::GetRandomFlags::empty())
            .map_err(|e| {
                Error::with_source(
                    ExitKind::Io,
                    "cannot get random bytes",
                    std::io::Error::from(e),
                )
            })?;
        filled += n;
    }
    Ok(B64URL.encode(&buf))
}

/// The S256 code challenge of a verifier (RFC 7636 §4.2).
pub fn challenge(verifier: &str) -> String {
    B64URL.encode(Sha256::digest(verifier.as_bytes()))
}

/// Percent-encodes a query value: everything but RFC 3986's unreserved
/// characters.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes a query value (`+` is a space, as browsers send forms).
pub fn decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The `key=value` pairs of a query string, decoded.
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Some((decode(k)?, decode(v)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s256_matches_rfc7636_appendix_b() {
        assert_eq!(
            challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn verifier_is_43_unreserved_characters_and_random() {
        let a = random_string(32).unwrap();
        assert_eq!(a.len(), 43);
        assert!(a
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b)));
        assert_ne!(a, random_string(32).unwrap());
    }

    #[test]
    fn encoding_round_trips() {
        let s = "https://mail.google.com/ a+b&c=d~é";
        assert_eq!(
            encode(s),
            "https%3A%2F%2Fmail.google.com%2F%20a%2Bb%26c%3Dd~%C3%A9"
        );
        assert_eq!(decode(&encode(s)).unwrap(), s);
        assert_eq!(
            query_pairs("code=a%2Fb&state=x+y&empty"),
            vec![
                ("code".into(), "a/b".into()),
                ("state".into(), "x y".into()),
                ("empty".into(), "".into())
            ]
        );
    }
}
