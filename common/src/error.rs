//! The JSON error body used by every credmgr HTTP answer: the management API, the runtime API
//! and the filter's own local replies. One shape everywhere lets clients handle errors once.

use serde::{Deserialize, Serialize};

/// `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// One error: a stable machine-readable code and a message a person can act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    /// Stable, snake_case; clients may branch on it. See [`codes`].
    pub code: String,
    /// Human-readable. Never contains a secret.
    pub message: String,
    /// Extra structured context: `field` (the request field at fault), `provider_id` and
    /// `connection_id`, `login_url_expires_at`, `retry_after_seconds` (with `rate_limited`),
    /// `status` (the provider's HTTP status, with `provider_error`), `store` (with
    /// `store_unavailable` from `/readyz`).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub details: serde_json::Map<String, serde_json::Value>,
    /// With `consent_required` for a self-service connection: a single-use URL that the caller
    /// the answer was made for opens in a browser to consent (see
    /// [`crate::runtime::consent_challenge`]). A secret until used: never log it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_url: Option<String>,
}

impl ErrorBody {
    /// An error body with no details.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        ErrorBody {
            error: ErrorDetail {
                code: code.into(),
                message: message.into(),
                details: serde_json::Map::new(),
                login_url: None,
            },
        }
    }

    /// Adds one detail field.
    pub fn with_detail(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.error.details.insert(key.to_owned(), value.into());
        self
    }

    /// The body serialized as JSON.
    pub fn to_json(&self) -> String {
        // Serializing a struct of strings and a JSON map cannot fail.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }
}

/// Error codes shared by the control plane and the filter.
pub mod codes {
    /// The request body, path or query is malformed.
    pub const INVALID_REQUEST: &str = "invalid_request";
    /// No credential, or an unknown one, was presented.
    pub const UNAUTHENTICATED: &str = "unauthenticated";
    /// The caller is known but not allowed to do this.
    pub const FORBIDDEN: &str = "forbidden";
    /// The named resource does not exist.
    pub const NOT_FOUND: &str = "not_found";
    /// The resource exists already or changed since it was read.
    pub const CONFLICT: &str = "conflict";
    /// The connection has no usable token and needs a user's consent.
    pub const CONSENT_REQUIRED: &str = "consent_required";
    /// The provider refused the client's credentials.
    pub const CLIENT_SECRET_REJECTED: &str = "client_secret_rejected";
    /// The provider refused the refresh token; consent is needed again.
    pub const REFRESH_TOKEN_INVALID: &str = "refresh_token_invalid";
    /// The refresh token reached the expiry the provider gave it; consent is needed again.
    pub const REFRESH_TOKEN_EXPIRED: &str = "refresh_token_expired";
    /// The provider did not answer: connection refused, DNS, TLS, timeout.
    pub const PROVIDER_UNREACHABLE: &str = "provider_unreachable";
    /// The provider answered, but not with a token: an OAuth error other than the above, a
    /// 5xx, an empty or non-JSON body (the details carry the HTTP `status`).
    pub const PROVIDER_ERROR: &str = "provider_error";
    /// The gateway could not reach the control plane and holds no usable token.
    pub const CONTROL_PLANE_UNAVAILABLE: &str = "control_plane_unavailable";
    /// The route names a policy set that the filter's configuration does not define.
    pub const UNKNOWN_POLICY: &str = "unknown_policy";
    /// The control plane's database does not answer (down, unreachable, or out of
    /// connections); retrying shortly, or through another replica, may succeed.
    pub const STORE_UNAVAILABLE: &str = "store_unavailable";
    /// Too many requests of one kind (for example login URLs made for one caller or one
    /// connection); the answer's `Retry-After` says when to try again.
    pub const RATE_LIMITED: &str = "rate_limited";
    /// Something failed inside credmgr; details are in its log, not in the answer.
    pub const INTERNAL: &str = "internal_error";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_in_the_documented_shape() {
        let body =
            ErrorBody::new(codes::NOT_FOUND, "no such provider").with_detail("provider", "p1");
        let json: serde_json::Value = serde_json::from_str(&body.to_json()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"error": {"code": "not_found", "message": "no such provider", "details": {"provider": "p1"}}})
        );
        let plain = ErrorBody::new(codes::INTERNAL, "x").to_json();
        assert!(!plain.contains("details"), "{plain}");
        assert!(!plain.contains("login_url"), "{plain}");
        let mut consent = ErrorBody::new(codes::CONSENT_REQUIRED, "consent needed");
        consent.error.login_url = Some("https://cp/consent/login/abc".into());
        let json: serde_json::Value = serde_json::from_str(&consent.to_json()).unwrap();
        assert_eq!(json["error"]["login_url"], "https://cp/consent/login/abc");
    }
}
