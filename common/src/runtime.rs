//! The runtime API: what a gateway asks the control plane for, and what it gets back.
//!
//! `GET /runtime/v1/providers/{provider}/connections/{connection}/token`, authenticated as a
//! gateway (`Authorization: Bearer <gateway key>` for now), answers `200` with a
//! [`RuntimeToken`], or an [`ErrorBody`](crate::ErrorBody) with a 4xx/5xx status.

use serde::{Deserialize, Serialize};

/// Path of the token endpoint for one connection. Both ids must be valid
/// (see [`crate::ids::validate_id`]), which makes them safe in a path without escaping.
pub fn token_path(provider_id: &str, connection_id: &str) -> String {
    format!("/runtime/v1/providers/{provider_id}/connections/{connection_id}/token")
}

/// A connection's current access token, as handed to a gateway.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct RuntimeToken {
    /// The access token to present to the backend. Secret: never log it.
    pub access_token: String,
    /// Usually `Bearer`.
    pub token_type: String,
    /// Unix time (seconds) after which the token must not be used.
    pub expires_at: i64,
    /// Unix time (seconds) from which the gateway should fetch the token again. The control
    /// plane refreshes at the same point, so one gateway fetch after `refresh_at` finds a
    /// fresh token, and no request has to wait for a refresh.
    pub refresh_at: i64,
    /// The token response's non-secret fields (`scope`, `token_type`, `expires_in`, and
    /// whatever else the provider returned, such as Salesforce's `instance_url`).
    #[serde(default)]
    pub claims: serde_json::Map<String, serde_json::Value>,
}

impl std::fmt::Debug for RuntimeToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeToken")
            .field("access_token", &"[redacted]")
            .field("token_type", &self.token_type)
            .field("expires_at", &self.expires_at)
            .field("refresh_at", &self.refresh_at)
            .field("claims", &self.claims)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_token() {
        let t = RuntimeToken {
            access_token: "s3cr3t-token".into(),
            token_type: "Bearer".into(),
            expires_at: 10,
            refresh_at: 8,
            claims: Default::default(),
        };
        let shown = format!("{t:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn path_names_provider_and_connection() {
        assert_eq!(
            token_path("gh", "alice"),
            "/runtime/v1/providers/gh/connections/alice/token"
        );
    }
}
