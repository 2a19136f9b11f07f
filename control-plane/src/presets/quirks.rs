//! How a provider departs from RFC 6749, declared per preset and handled by the token client
//! (`tokens/client.rs`) and the refresh logic (`tokens/mod.rs`). Behaviour every provider
//! gets anyway is not a quirk: an error answered with HTTP 200 is an error, a refresh
//! response without a refresh token keeps the old one, a new one replaces it in the same
//! transaction, and `refresh_token_expires_in` is stored and honoured whoever sends it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A preset's quirks. The defaults are RFC 6749's behaviour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Quirks {
    /// The token endpoint may answer `application/x-www-form-urlencoded` instead of JSON
    /// (GitHub, when the request lacks `Accept: application/json`). credmgr always sends that
    /// `Accept`; with this quirk it also reads a form-encoded answer.
    pub form_encoded_response: bool,
    /// Lifetime assumed when a token response has no `expires_in` and the access token is not
    /// a JWT with an `exp` (RFC 6749 §5.1 leaves the default to the provider's documentation).
    /// Without it, one hour.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_lifetime_secs: Option<i64>,
    /// JSON pointer (RFC 6901) of the object holding the connection's token, when it is not
    /// at the top of the response (Slack's user token, in `/authed_user`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_pointer: Option<String>,
    /// Claims lifted out of nested fields of the response: claim name → JSON pointer, so a
    /// template can use them as `{{auth.Claims.<name>}}`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub claims: BTreeMap<String, String>,
    /// How scopes are joined in requests: RFC 6749 §3.3 says space; Slack wants commas.
    pub scope_separator: String,
    /// The authorization-request parameter that carries the scopes (Slack's user scopes go
    /// in `user_scope`).
    pub scope_param: String,
    /// Error codes that mean what `invalid_grant` means (the code or refresh token is dead):
    /// GitHub's `bad_refresh_token`, Slack's `invalid_refresh_token`. A refresh refused with
    /// one of them needs a new consent rather than a retry.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub invalid_grant_errors: Vec<String>,
    /// The provider does not send `iss` in its authorization responses (RFC 9207) although
    /// it has an issuer identifier (Okta, Auth0). Otherwise a provider whose `issuer` is
    /// known must send it, and an answer without it is refused: an attacker's server that
    /// shares the callback (mix-up, RFC 9207 §2) could otherwise leave it out.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub omits_authorization_response_iss: bool,
}

impl Default for Quirks {
    fn default() -> Self {
        Quirks {
            form_encoded_response: false,
            default_lifetime_secs: None,
            token_pointer: None,
            claims: BTreeMap::new(),
            scope_separator: " ".into(),
            scope_param: "scope".into(),
            invalid_grant_errors: Vec::new(),
            omits_authorization_response_iss: false,
        }
    }
}

impl Quirks {
    /// The scopes as one request parameter value.
    pub fn join_scopes(&self, scopes: &[String]) -> String {
        scopes.join(&self.scope_separator)
    }

    /// Whether an OAuth error code means the grant is dead.
    pub fn is_invalid_grant(&self, code: &str) -> bool {
        code == "invalid_grant" || self.invalid_grant_errors.iter().any(|c| c == code)
    }
}
