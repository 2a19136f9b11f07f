//! Why a request got no token, in the words its caller is answered with: the status and the
//! error body. Made by the pipeline (a refused JWT, an access policy that names someone else)
//! and by the control-plane calls (their answers), and remembered by [`crate::denials`].

use credmgr_common::error::codes;
use credmgr_common::jwt::JwtError;
use credmgr_common::runtime::consent_challenge;
use credmgr_common::ErrorBody;

/// Why no token could be had, as answered to the caller.
#[derive(Debug, Clone)]
pub struct Failure {
    pub status: u16,
    pub body: ErrorBody,
}

impl Failure {
    pub fn unavailable(message: String) -> Failure {
        Failure {
            status: 503,
            body: ErrorBody::new(codes::CONTROL_PLANE_UNAVAILABLE, message),
        }
    }

    /// The caller's JWT is refused.
    pub fn unauthenticated(e: &JwtError) -> Failure {
        Failure {
            status: 401,
            body: ErrorBody::new(e.code(), format!("the caller's JWT is refused: {e}")),
        }
    }

    /// A failure that only the control plane could fix (the gateway holds no usable
    /// token): a cached token that is still valid may stand in for the answer.
    pub fn is_unavailable(&self) -> bool {
        self.status == 503
    }
}

/// The headers of a local reply with `status` and `body`: always JSON; with a self-service
/// connection's `401 consent_required`, the `WWW-Authenticate: Credmgr-Consent ...` challenge
/// carrying the login URL; with `429 rate_limited`, `Retry-After`. Neither may be cached by
/// anyone in between: a login URL is single-use and made for one caller.
pub fn reply_headers(status: u16, body: &ErrorBody) -> Vec<(&'static str, String)> {
    let mut headers = vec![("content-type", "application/json".to_owned())];
    let detail = |name: &str| body.error.details.get(name).and_then(|v| v.as_str());
    match (status, body.error.code.as_str(), &body.error.login_url) {
        (401, codes::CONSENT_REQUIRED, Some(url)) => {
            let provider = detail("provider_id").unwrap_or_default();
            let connection = detail("authorization_id")
                .or_else(|| detail("connection_id"))
                .unwrap_or_default();
            headers.push((
                "www-authenticate",
                consent_challenge(provider, connection, url),
            ));
            headers.push(("cache-control", "no-store".to_owned()));
        }
        (429, codes::RATE_LIMITED, _) => {
            let after = body
                .error
                .details
                .get("retry_after_seconds")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(1);
            headers.push(("retry-after", after.to_string()));
            headers.push(("cache-control", "no-store".to_owned()));
        }
        _ => {}
    }
    headers
}
