//! What can go wrong in the token service, in its own words.
//!
//! [`TokenError`] names what the service met; it knows nothing of HTTP. The API turns it into
//! a status, a machine code and a message once, at the edge (in `crate::error`, which this
//! module does not import). [`TokenFailure`] is the provider's side of it: why no new token
//! could be obtained. [`ConsentFailure`] is why a user's consent could not be completed.

use credmgr_common::error::codes;

use crate::crypto::CryptoError;
use crate::domain::ConnectionKey;
use crate::store::StoreError;

/// Why the token service could not answer.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The connection, or its provider, does not exist.
    #[error("{0} does not exist")]
    NotFound(ConnectionKey),
    /// The connection's configuration changed under every fetch tried; the tokens obtained
    /// under the old configuration were discarded.
    #[error("{0} was reconfigured while a token was being fetched; retry")]
    Reconfigured(ConnectionKey),
    /// The connection has no token and can only get one through a user's consent.
    #[error("{0} has no token: a user must consent first")]
    ConsentRequired(ConnectionKey),
    /// No usable token: the provider failed and nothing valid is stored.
    #[error("{0}")]
    Unavailable(TokenFailure),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error("{0}")]
    Internal(String),
}

/// Why no new token could be obtained from a provider.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct TokenFailure {
    pub kind: FailureKind,
    /// Says what happened and what to check; never contains a secret.
    pub message: String,
    /// The HTTP status the provider answered with, when it answered at all.
    pub status: Option<u16>,
}

impl TokenFailure {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        TokenFailure {
            kind,
            message: message.into(),
            status: None,
        }
    }

    /// The provider answered with this HTTP status.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }
}

/// Why a consent could not be completed. Nothing was stored.
#[derive(Debug)]
pub enum ConsentFailure {
    /// The provider refused the code exchange or could not be reached.
    Provider(TokenFailure),
    /// The provider or connection was changed or deleted while the user consented.
    Reconfigured,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The provider did not answer: connection refused or reset, DNS, TLS, timeout.
    ProviderUnreachable,
    /// `invalid_client` / `unauthorized_client` (RFC 6749 §5.2), or HTTP 401.
    ClientSecretRejected,
    /// The provider answered, but not with a token: any other OAuth error, a 5xx or another
    /// status without an OAuth error, a redirect, an empty or non-JSON body, a body too large,
    /// a token response without `access_token`.
    ProviderError,
    /// `invalid_grant` (RFC 6749 §5.2): the refresh token (or code) is invalid, expired or
    /// revoked.
    InvalidGrant,
    /// The refresh token is past the expiry the provider gave it; not even sent.
    RefreshTokenExpired,
}

impl FailureKind {
    /// The code a failure of this kind is known by: in the connection's stored error, in the
    /// provider-request metric, and in the API's answer.
    pub fn code(self) -> &'static str {
        match self {
            FailureKind::ProviderUnreachable => codes::PROVIDER_UNREACHABLE,
            FailureKind::ClientSecretRejected => codes::CLIENT_SECRET_REJECTED,
            FailureKind::ProviderError => codes::PROVIDER_ERROR,
            FailureKind::InvalidGrant => codes::REFRESH_TOKEN_INVALID,
            FailureKind::RefreshTokenExpired => codes::REFRESH_TOKEN_EXPIRED,
        }
    }

    /// The kind a stored error code names, if it names one.
    pub fn from_code(code: &str) -> Option<FailureKind> {
        [
            FailureKind::ProviderUnreachable,
            FailureKind::ClientSecretRejected,
            FailureKind::ProviderError,
            FailureKind::InvalidGrant,
            FailureKind::RefreshTokenExpired,
        ]
        .into_iter()
        .find(|k| k.code() == code)
    }
}
