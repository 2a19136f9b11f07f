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

    pub(super) fn is_admin(&self, presented: &str) -> bool {
        ct_eq(presented, self.admin_token.expose_secret())
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
