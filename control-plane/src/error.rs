//! The one error type of the HTTP APIs.
//!
//! Every failure a handler can meet becomes an [`ApiError`], which answers with
//! [`credmgr_common::ErrorBody`] and the matching status. Server-side failures (database,
//! decryption) are logged with their details and answered with a generic message. The token
//! service speaks its own [`TokenError`]; this is where it becomes a status and a body.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use credmgr_common::error::codes;
use credmgr_common::runtime::consent_challenge;
use credmgr_common::ErrorBody;
use secrecy::{ExposeSecret as _, SecretString};

use crate::clock::rfc3339;
use crate::crypto::CryptoError;
use crate::domain::ConnectionKey;
use crate::store::StoreError;
use crate::tokens::{TokenError, TokenFailure};

/// The code of a 412: `If-Match` did not match. (Management API only, so not in the codes
/// shared with the filter.)
pub const PRECONDITION_FAILED: &str = "precondition_failed";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed or invalid input; `field` names the offending field when there is one.
    #[error("{message}")]
    InvalidRequest {
        field: Option<String>,
        message: String,
    },
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// The caller's JWT (identity-type `jwt`) was refused; `code` says why (`jwt_expired`, ...).
    #[error("{message}")]
    CallerRejected { code: &'static str, message: String },
    /// The caller is known but the connection's access policies do not allow it.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// `If-Match` named a version the resource no longer has.
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("method not allowed on this path")]
    MethodNotAllowed,
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The connection has no token and can only get one through a user's consent.
    #[error("{0}")]
    ConsentRequired(String),
    /// No usable token: the provider failed and nothing valid is stored.
    #[error("{0}")]
    TokenUnavailable(TokenFailure),
    /// A self-service connection needs the consent of the caller asking: 401 with a login
    /// URL made for them. (Its message holds no URL: errors are logged.)
    #[error("{} needs your consent: open the login_url of this answer in a browser (it works once, until login_url_expires_at)", .0.key)]
    ConsentLink(Box<ConsentLink>),
    /// Too many requests of one kind; the client may try again after `retry_after_secs`.
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after_secs: i64,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error("{0}")]
    Internal(String),
}

/// A login URL made for the caller of the runtime API, for its self-service connection.
#[derive(Debug)]
pub struct ConsentLink {
    pub key: ConnectionKey,
    /// Single use, and a secret until used: it goes in the answer and nowhere else.
    pub login_url: SecretString,
    pub expires_at: i64,
}

impl ApiError {
    /// An invalid value in the named field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::InvalidRequest {
            field: Some(field.into()),
            message: message.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthenticated(_)
            | ApiError::CallerRejected { .. }
            | ApiError::ConsentLink(_) => StatusCode::UNAUTHORIZED,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::ConsentRequired(_) | ApiError::TokenUnavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Store(e) if e.is_unavailable() => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Store(_) | ApiError::Crypto(_) | ApiError::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidRequest { .. }
            | ApiError::MethodNotAllowed
            | ApiError::UnsupportedMediaType(_)
            | ApiError::PayloadTooLarge(_) => codes::INVALID_REQUEST,
            ApiError::Unauthenticated(_) => codes::UNAUTHENTICATED,
            ApiError::CallerRejected { code, .. } => code,
            ApiError::Forbidden(_) => codes::FORBIDDEN,
            ApiError::NotFound(_) => codes::NOT_FOUND,
            ApiError::Conflict(_) => codes::CONFLICT,
            ApiError::PreconditionFailed(_) => PRECONDITION_FAILED,
            ApiError::ConsentRequired(_) | ApiError::ConsentLink(_) => codes::CONSENT_REQUIRED,
            ApiError::RateLimited { .. } => codes::RATE_LIMITED,
            ApiError::TokenUnavailable(f) => f.kind.code(),
            ApiError::Store(e) if e.is_unavailable() => codes::STORE_UNAVAILABLE,
            ApiError::Store(_) | ApiError::Crypto(_) | ApiError::Internal(_) => codes::INTERNAL,
        }
    }

    fn body(&self) -> ErrorBody {
        match self {
            ApiError::Store(e) if e.is_unavailable() => {
                tracing::error!(error = %self, "the database does not answer");
                ErrorBody::new(
                    self.code(),
                    "the control plane's database does not answer; retry shortly",
                )
            }
            ApiError::Store(_) | ApiError::Crypto(_) | ApiError::Internal(_) => {
                // The details may name tables, keys or records: the log gets them, the client
                // gets a pointer to the log.
                tracing::error!(error = %self, "internal error while answering a request");
                ErrorBody::new(
                    self.code(),
                    "internal error; the control plane's log has the details",
                )
            }
            ApiError::InvalidRequest {
                field: Some(field), ..
            } => ErrorBody::new(self.code(), self.to_string()).with_detail("field", field.clone()),
            ApiError::ConsentLink(link) => {
                let mut body = ErrorBody::new(self.code(), self.to_string())
                    .with_detail("provider_id", link.key.provider())
                    .with_detail("connection_id", link.key.connection())
                    .with_detail("login_url_expires_at", rfc3339(link.expires_at));
                body.error.login_url = Some(link.login_url.expose_secret().to_owned());
                body
            }
            ApiError::RateLimited {
                retry_after_secs, ..
            } => ErrorBody::new(self.code(), self.to_string())
                .with_detail("retry_after_seconds", *retry_after_secs),
            ApiError::TokenUnavailable(TokenFailure {
                status: Some(status),
                ..
            }) => ErrorBody::new(self.code(), self.to_string()).with_detail("status", *status),
            _ => ErrorBody::new(self.code(), self.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), Json(self.body())).into_response();
        let headers = response.headers_mut();
        match &self {
            // RFC 6750 §3: a 401 names the scheme the client should use.
            ApiError::Unauthenticated(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::ConsentLink(link) => {
                let challenge = consent_challenge(
                    link.key.provider(),
                    link.key.connection(),
                    link.login_url.expose_secret(),
                );
                if let Ok(mut value) = HeaderValue::from_str(&challenge) {
                    value.set_sensitive(true);
                    headers.insert(header::WWW_AUTHENTICATE, value);
                }
                // Made for one caller, once: no cache may keep or share it.
                headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            }
            // RFC 9110 §10.2.3: seconds to wait.
            ApiError::RateLimited {
                retry_after_secs, ..
            } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            _ => {}
        }
        response
    }
}

/// The token service's errors as the API answers them.
impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::NotFound(_) => ApiError::NotFound(e.to_string()),
            TokenError::Reconfigured(_) => ApiError::Conflict(e.to_string()),
            TokenError::ConsentRequired(key) => {
                ApiError::ConsentRequired(consent_required_message(&key))
            }
            TokenError::Unavailable(failure) => ApiError::TokenUnavailable(failure),
            TokenError::Store(e) => ApiError::Store(e),
            TokenError::Crypto(e) => ApiError::Crypto(e),
            TokenError::Internal(message) => ApiError::Internal(message),
        }
    }
}

/// The `(code, message)` error a new connection that only a user's consent connects carries.
pub fn consent_required_error(key: &ConnectionKey) -> (String, String) {
    (
        credmgr_common::error::codes::CONSENT_REQUIRED.to_owned(),
        consent_required_message(key),
    )
}

/// What a connection without tokens tells the operator to do: have a user consent, through
/// a login link of the management API.
pub fn consent_required_message(key: &ConnectionKey) -> String {
    format!(
        "{key} has no token: a user must consent first; create a login link with POST \
         /v1/providers/{}/connections/{}/login-links and open it",
        key.provider(),
        key.connection()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::FailureKind;

    #[test]
    fn token_errors_answer_as_the_api_always_did() {
        let key = || ConnectionKey::new("github", "alice");
        let cases = [
            (
                TokenError::NotFound(key()),
                StatusCode::NOT_FOUND,
                codes::NOT_FOUND,
                "connection `alice` of provider `github` does not exist",
            ),
            (
                TokenError::Reconfigured(key()),
                StatusCode::CONFLICT,
                codes::CONFLICT,
                "connection `alice` of provider `github` was reconfigured while a token was \
                 being fetched; retry",
            ),
            (
                TokenError::ConsentRequired(key()),
                StatusCode::SERVICE_UNAVAILABLE,
                codes::CONSENT_REQUIRED,
                "connection `alice` of provider `github` has no token: a user must consent \
                 first; create a login link with POST \
                 /v1/providers/github/connections/alice/login-links and open it",
            ),
            (
                TokenError::Unavailable(TokenFailure::new(FailureKind::InvalidGrant, "gone")),
                StatusCode::SERVICE_UNAVAILABLE,
                codes::REFRESH_TOKEN_INVALID,
                "gone",
            ),
        ];
        for (error, status, code, message) in cases {
            let e = ApiError::from(error);
            assert_eq!((e.status(), e.code()), (status, code), "{e}");
            assert_eq!(e.body().error.message, message);
        }
    }

    #[test]
    fn a_provider_that_answered_has_its_status_in_the_details() {
        let failure = TokenFailure::new(FailureKind::ProviderError, "HTTP 502").with_status(502);
        let body = ApiError::from(TokenError::Unavailable(failure)).body();
        assert_eq!(body.error.code, codes::PROVIDER_ERROR);
        assert_eq!(body.error.details["status"], 502);
        let failure = TokenFailure::new(FailureKind::ProviderUnreachable, "timed out");
        let body = ApiError::from(TokenError::Unavailable(failure)).body();
        assert!(!body.error.details.contains_key("status"));
    }
}
