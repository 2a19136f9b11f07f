//! The credentials the control plane accepts: the admin token and the gateways' keys, compared
//! in constant time; and [`Gateway`], the gateway a runtime request came from.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

/// A gateway allowed on the runtime API, known by name (for logs) and key.
#[derive(Clone)]
pub struct GatewayKey {
    pub name: String,
    pub key: SecretString,
}

impl fmt::Debug for GatewayKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GatewayKey({}, [redacted])", self.name)
    }
}

/// The credentials the control plane accepts.
#[derive(Debug)]
pub struct Credentials {
    admin_token: SecretString,
    pub(super) gateway_keys: Vec<GatewayKey>,
}

/// The gateway that made a runtime request, for logs (a request extension).
#[derive(Clone, Debug)]
pub struct Gateway {
    pub name: String,
}

impl Credentials {
    pub fn new(admin_token: SecretString, gateway_keys: Vec<GatewayKey>) -> Self {
        Credentials {
            admin_token,
            gateway_keys,
        }
    }

    /// Whether `presented` is the admin token (constant time).
    pub fn is_admin(&self, presented: &str) -> bool {
        ct_eq(presented, self.admin_token.expose_secret())
    }

    /// The console's session-signing key: HMAC-SHA256 of a fixed label under the admin token.
    /// Derived, not stored: every replica with the same admin token accepts the same
    /// sessions, and changing the admin token ends every session.
    pub fn console_session_key(&self) -> [u8; 32] {
        use hmac::Mac as _;
        let mut mac = match hmac::Hmac::<sha2::Sha256>::new_from_slice(
            self.admin_token.expose_secret().as_bytes(),
        ) {
            Ok(m) => m,
            // HMAC takes keys of any length, so this arm is never taken; were it, the key
            // would still be secret.
            Err(_) => {
                use sha2::Digest as _;
                let mut h = sha2::Sha256::new();
                h.update(self.admin_token.expose_secret().as_bytes());
                h.update(b"credmgr console session key v1");
                return h.finalize().into();
            }
        };
        mac.update(b"credmgr console session key v1");
        mac.finalize().into_bytes().into()
    }

    /// The gateway whose key was presented. Every key is compared, matching or not, so the
    /// time taken says nothing about which key (or how much of one) matched.
    pub(super) fn gateway(&self, presented: &str) -> Option<&str> {
        let mut found = None;
        for k in &self.gateway_keys {
            if ct_eq(presented, k.key.expose_secret()) {
                found = Some(k.name.as_str());
            }
        }
        found
    }
}

/// Constant-time equality. Only the lengths can leak, which reveals nothing useful about a
/// randomly generated token.
fn ct_eq(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}
