//! The console's session: a cookie signed with a key derived from the admin token
//! ([`crate::auth::Credentials::console_session_key`]), holding no token, and the CSRF token
//! of its forms.
//!
//! The cookie's value is `v1.<expiry>.<nonce>.<mac>`: the expiry (Unix seconds), 128 random
//! bits, and HMAC-SHA256 over both. Nothing is stored on the server, so replicas that share
//! the admin token share sessions; changing the admin token ends every session. Signing
//! out clears the cookie in that browser; a copied cookie stays valid until its expiry
//! (8 hours), like a bearer token, which is why it is `HttpOnly` (no script reads it),
//! `SameSite=Strict` (no other site's request carries it) and `Secure` over https.
//!
//! Each form carries a CSRF token (synchronizer pattern): HMAC-SHA256 of the session's nonce
//! under the same key, so it is bound to the session and needs no storage either.

use aes_gcm::aead::rand_core::RngCore;
use aes_gcm::aead::OsRng;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The cookie's name.
pub const COOKIE: &str = "credmgr_console";
/// How long a session lasts, seconds.
pub const LIFETIME_SECS: i64 = 8 * 3600;

/// A verified session.
#[derive(Debug, Clone)]
pub struct Session {
    nonce: String,
}

fn mac(key: &[u8; 32], parts: &[&str]) -> Vec<u8> {
    let mut m = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(m) => m,
        // Any key length is accepted: never taken.
        Err(_) => return Vec::new(),
    };
    for p in parts {
        m.update(p.as_bytes());
        m.update(b"|");
    }
    m.finalize().into_bytes().to_vec()
}

/// A new session expiring `LIFETIME_SECS` after `now`: the cookie value and the session.
pub fn issue(key: &[u8; 32], now: i64) -> (String, Session) {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    let nonce = B64URL.encode(bytes);
    let expires = now.saturating_add(LIFETIME_SECS).to_string();
    let tag = B64URL.encode(mac(key, &["session", "v1", &expires, &nonce]));
    (format!("v1.{expires}.{nonce}.{tag}"), Session { nonce })
}

/// The session a cookie value proves, if its signature holds and it has not expired.
pub fn verify(key: &[u8; 32], value: &str, now: i64) -> Option<Session> {
    let mut parts = value.split('.');
    let (Some("v1"), Some(expires), Some(nonce), Some(tag), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    let presented = B64URL.decode(tag).ok()?;
    let expected = mac(key, &["session", "v1", expires, nonce]);
    if expected.is_empty() || !bool::from(presented.ct_eq(&expected)) {
        return None;
    }
    let expires: i64 = expires.parse().ok()?;
    (now < expires).then(|| Session {
        nonce: nonce.to_owned(),
    })
}

impl Session {
    /// The CSRF token of this session's forms.
    pub fn csrf(&self, key: &[u8; 32]) -> String {
        B64URL.encode(mac(key, &["csrf", &self.nonce]))
    }

    /// Whether `presented` is this session's CSRF token (constant time).
    pub fn csrf_ok(&self, key: &[u8; 32], presented: &str) -> bool {
        let expected = self.csrf(key);
        !presented.is_empty() && bool::from(presented.as_bytes().ct_eq(expected.as_bytes()))
    }
}

/// The `Set-Cookie` value that stores `value` (empty with `max_age` 0: clears it).
pub fn set_cookie(value: &str, max_age: i64, secure: bool) -> String {
    format!(
        "{COOKIE}={value}; Path=/console; Max-Age={max_age}; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7; 32];

    #[test]
    fn a_session_verifies_until_it_expires() {
        let (cookie, s) = issue(&KEY, 1000);
        let back = verify(&KEY, &cookie, 1001).unwrap();
        assert_eq!(back.nonce, s.nonce);
        assert!(verify(&KEY, &cookie, 1000 + LIFETIME_SECS).is_none());
    }

    #[test]
    fn forged_or_altered_sessions_are_refused() {
        let (cookie, _) = issue(&KEY, 1000);
        assert!(
            verify(&[8; 32], &cookie, 1001).is_none(),
            "another admin token"
        );
        let later = cookie.replacen(&(1000 + LIFETIME_SECS).to_string(), "99999999999", 1);
        assert!(verify(&KEY, &later, 1001).is_none(), "extended expiry");
        assert!(verify(&KEY, "v1.99999999999.abc.def", 1).is_none());
        assert!(verify(&KEY, "", 1).is_none());
        assert!(verify(&KEY, &format!("{cookie}.x"), 1001).is_none());
    }

    #[test]
    fn csrf_tokens_are_bound_to_the_session() {
        let (_, a) = issue(&KEY, 1);
        let (_, b) = issue(&KEY, 1);
        assert!(a.csrf_ok(&KEY, &a.csrf(&KEY)));
        assert!(!a.csrf_ok(&KEY, &b.csrf(&KEY)));
        assert!(!a.csrf_ok(&KEY, ""));
    }

    #[test]
    fn the_cookie_is_http_only_strict_and_secure_over_https() {
        let c = set_cookie("v", 60, true);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.ends_with("Secure"));
        assert!(!set_cookie("v", 60, false).contains("Secure"));
    }
}
