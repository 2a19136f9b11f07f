//! The runtime API: what a gateway asks the control plane for, and what it gets back.
//!
//! Every call is authenticated as a gateway (a client certificate, or `Authorization: Bearer
//! <gateway key>`).
//! - `GET /runtime/v1/providers/{provider}/connections/{connection}/token` answers `200` with a
//!   [`RuntimeToken`], or an [`ErrorBody`](crate::ErrorBody) with a 4xx/5xx status. The
//!   caller is the gateway itself (identity-type `managed`), or, when the request carries
//!   [`CALLER_TOKEN_HEADER`], the holder of that JWT (identity-type `jwt`). Either way the
//!   control plane answers `403` unless the connection's access policies allow the caller.
//! - `GET /runtime/v1/trusted-issuers` ([`ISSUERS_PATH`]) answers [`TrustedIssuers`]: the
//!   issuers whose JWTs gateways accept, with their keys.

use crate::access::{ClaimNames, PolicyIdentity};
use serde::{Deserialize, Serialize};

/// Header of a token request made for a caller's JWT (identity-type `jwt`): the JWT itself.
pub const CALLER_TOKEN_HEADER: &str = "x-credmgr-caller-token";

/// Path of the trusted issuers and their keys. With `?issuer=ISS&kid=KID` (a token named a
/// key the gateway does not know), the control plane fetches that issuer's JWKS again first,
/// at most once per few seconds per issuer.
pub const ISSUERS_PATH: &str = "/runtime/v1/trusted-issuers";

/// The trusted issuers, as published to gateways.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TrustedIssuers {
    pub issuers: Vec<PublishedIssuer>,
    /// Gateways fetch the document again after this many seconds (keys rotate; issuers are
    /// added and removed).
    pub refresh_after_seconds: u64,
}

/// One trusted issuer and its current public keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PublishedIssuer {
    /// `iss`, compared exactly.
    pub issuer: String,
    /// Accepted `aud` values; a token must name one of them.
    pub audiences: Vec<String>,
    /// Which claims name the object, tenant, application and groups.
    #[serde(default)]
    pub claims: ClaimNames,
    /// Seconds of clock skew allowed on `exp` and `nbf`.
    pub leeway_seconds: i64,
    /// The issuer's JWKS (RFC 7517 §5): public keys only.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub jwks: serde_json::Value,
}

/// Path of the token endpoint for one connection. Both ids must be valid
/// (see [`crate::ids::validate_id`]), which makes them safe in a path without escaping.
pub fn token_path(provider_id: &str, connection_id: &str) -> String {
    format!("/runtime/v1/providers/{provider_id}/connections/{connection_id}/token")
}

/// Query parameter of a token request naming the token a backend refused (a 401 the gateway
/// saw) by its [`token_fingerprint`]: the control plane replaces the stored token if it is
/// that one (and was not obtained within its forced-refresh interval), and otherwise serves
/// the stored one, so many refusals of one token cost at most one refresh.
pub const REJECTED_FINGERPRINT_PARAM: &str = "rejected_fingerprint";

/// The older form of [`REJECTED_FINGERPRINT_PARAM`], still accepted from gateways that send
/// it: the refused token's `expires_at`. It cannot tell apart two tokens expiring in the same
/// second, so gateways send the fingerprint.
pub const REJECTED_EXPIRES_AT_PARAM: &str = "rejected_expires_at";

/// Names an access token without revealing it: the first 16 hex digits (64 bits) of its
/// SHA-256. Both sides compute it from the token itself, so it identifies the exact token a
/// gateway sent, and it may appear in logs and URLs where the token never may.
pub fn token_fingerprint(access_token: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(access_token.as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The `WWW-Authenticate` challenge that goes with a `401 consent_required` answer carrying a
/// login URL (a self-service connection that needs its user's consent). The control plane sends
/// it on the runtime API and the filter repeats it to the client, so both spell it alike:
///
/// `Credmgr-Consent realm="credmgr", provider_id="<p>", connection_id="<c>", login_url="<url>"`
///
/// A custom scheme, not `Bearer`: the client's own credential was accepted, and an OAuth client
/// seeing `Bearer` would try to renew it. Ids are valid ids and the URL is URL-safe, so no
/// quoting is needed inside the quoted strings.
pub fn consent_challenge(provider_id: &str, connection_id: &str, login_url: &str) -> String {
    format!(
        "Credmgr-Consent realm=\"credmgr\", provider_id=\"{provider_id}\", \
         connection_id=\"{connection_id}\", login_url=\"{login_url}\""
    )
}

/// A connection's current access token, as handed to a gateway.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub claims: serde_json::Map<String, serde_json::Value>,
    /// Who may use the connection: its access policies, so that a gateway can decide for
    /// callers' JWTs locally, as the control plane does. A gateway checks them again from
    /// `refresh_at` on, which the control plane sets no later than its policy refresh
    /// interval, so a changed policy reaches every gateway within that time.
    #[serde(default)]
    pub access_policies: Vec<PolicyIdentity>,
}

impl std::fmt::Debug for RuntimeToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeToken")
            .field("access_token", &"[redacted]")
            .field("token_type", &self.token_type)
            .field("expires_at", &self.expires_at)
            .field("refresh_at", &self.refresh_at)
            .field("claims", &self.claims)
            .field("access_policies", &self.access_policies)
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
            access_policies: Vec::new(),
        };
        let shown = format!("{t:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn the_consent_challenge_names_connection_and_url() {
        assert_eq!(
            consent_challenge("github", "gh-u1", "https://cp/consent/login/x"),
            "Credmgr-Consent realm=\"credmgr\", provider_id=\"github\", \
             connection_id=\"gh-u1\", login_url=\"https://cp/consent/login/x\""
        );
    }

    #[test]
    fn the_fingerprint_is_short_stable_and_tells_tokens_apart() {
        let a = token_fingerprint("token-a");
        assert_eq!(a.len(), 16);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(a, token_fingerprint("token-a"));
        assert_ne!(a, token_fingerprint("token-b"));
        assert!(!a.contains("token"));
    }

    #[test]
    fn path_names_provider_and_connection() {
        assert_eq!(
            token_path("gh", "alice"),
            "/runtime/v1/providers/gh/connections/alice/token"
        );
    }
}
