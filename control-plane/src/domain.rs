//! The words of the domain: what a connection's status, a provider's grant and client
//! authentication are called, and how a connection is named.
//!
//! This module is the ground floor of the control plane: it imports nothing of the crate, and
//! the handlers, the store, the token service and the preset catalogue all speak in its types.
//! Each enum is spelled the same in the API and in the database (`as_str` / `FromStr`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Whether the runtime API can hand out a token for the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionStatus {
    /// A token was obtained and the last attempt to get one did not leave the connection
    /// without a valid token. (A failed refresh while the stored token is still valid keeps
    /// the connection `connected` and records the failure in `error`.)
    Connected,
    /// No token yet: just created, its configuration changed, or it awaits consent.
    NotConnected,
    /// The last attempt to obtain a token failed and no valid token is stored.
    Error,
}

/// The grant a provider's connections use to obtain tokens.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    /// RFC 6749 §4.4: the client's own credentials; no user involved.
    ClientCredentials,
    /// RFC 6749 §4.1: a user consents in a browser (login link, interstitial, provider,
    /// callback); the access token is then refreshed with the refresh token.
    AuthorizationCode,
}

impl GrantType {
    /// Whether a connection needs a user's consent before it can have a token.
    pub fn needs_consent(self) -> bool {
        matches!(self, GrantType::AuthorizationCode)
    }
}

/// How the client authenticates at the token endpoint (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// HTTP Basic with the form-urlencoded client id and secret; every server must support it.
    #[default]
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
}

/// `as_str` / `FromStr` / `Display` for the enums above, spelled as in the API and the
/// database.
macro_rules! wire_names {
    ($ty:ty { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $name),+ }
            }
        }
        impl FromStr for $ty {
            type Err = ();
            fn from_str(s: &str) -> Result<Self, ()> {
                match s { $($name => Ok(Self::$variant),)+ _ => Err(()) }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_names!(ConnectionStatus {
    Connected => "connected",
    NotConnected => "not_connected",
    Error => "error",
});
wire_names!(GrantType {
    ClientCredentials => "client_credentials",
    AuthorizationCode => "authorization_code",
});
wire_names!(AuthMethod {
    ClientSecretBasic => "client_secret_basic",
    ClientSecretPost => "client_secret_post",
});

/// A connection's name: its provider's id and its own, unique together. Tokens, leases and
/// refresh locks are per connection, so this is the key they travel under.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionKey {
    provider: String,
    connection: String,
}

impl ConnectionKey {
    pub fn new(provider_id: impl Into<String>, connection_id: impl Into<String>) -> Self {
        ConnectionKey {
            provider: provider_id.into(),
            connection: connection_id.into(),
        }
    }

    pub fn provider(&self) -> &str {
        &self.provider
    }

    pub fn connection(&self) -> &str {
        &self.connection
    }
}

/// "connection `c` of provider `p`", as messages name a connection.
impl fmt::Display for ConnectionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "connection `{}` of provider `{}`",
            self.connection, self.provider
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in [
            ConnectionStatus::Connected,
            ConnectionStatus::NotConnected,
            ConnectionStatus::Error,
        ] {
            assert_eq!(s.as_str().parse::<ConnectionStatus>(), Ok(s));
            assert_eq!(
                serde_json::to_value(s).unwrap(),
                serde_json::json!(s.as_str())
            );
        }
        for g in [GrantType::ClientCredentials, GrantType::AuthorizationCode] {
            assert_eq!(g.as_str().parse::<GrantType>(), Ok(g));
        }
        for a in [AuthMethod::ClientSecretBasic, AuthMethod::ClientSecretPost] {
            assert_eq!(a.as_str().parse::<AuthMethod>(), Ok(a));
        }
        assert!("nope".parse::<GrantType>().is_err());
    }

    #[test]
    fn a_key_names_its_connection() {
        let key = ConnectionKey::new("github", "alice");
        assert_eq!(key.to_string(), "connection `alice` of provider `github`");
        assert_eq!((key.provider(), key.connection()), ("github", "alice"));
    }
}
