//! The backoff of a connection whose provider fails, shared by the background scheduler, the
//! runtime API and every replica on one database: it lives on the connection's row
//! (`refresh_failures`, `refresh_retry_at`). After the n-th failure in a row the provider is
//! not asked again for `2 s * 2^(n-1)` (between half and all of it, at random; at most five
//! minutes): 1-2 s, 2-4 s, 4-8 s, ... 150-300 s. Meanwhile a still-valid stored token is
//! served, and a request without one gets the remembered failure at once (503). A stored
//! token, or a change of the connection's configuration, ends the backoff.

use aes_gcm::aead::rand_core::RngCore as _;
use aes_gcm::aead::OsRng;

use super::error::{FailureKind, TokenError, TokenFailure};
use super::TokenService;
use crate::clock::unix_now;
use crate::domain::ConnectionKey;
use crate::store::ConnectionRecord;

const BACKOFF_BASE_SECS: i64 = 2;
const BACKOFF_MAX_SECS: i64 = 300;

/// Exponential backoff with jitter: the n-th failure waits between half and all of
/// `2 s * 2^(n-1)`, capped at five minutes.
pub(super) fn backoff_delay(failures: u32) -> i64 {
    let exp = BACKOFF_BASE_SECS.saturating_mul(1i64 << failures.saturating_sub(1).min(20));
    let cap = exp.min(BACKOFF_MAX_SECS);
    let half = cap / 2;
    half + i64::from(OsRng.next_u32()) % (cap - half + 1)
}

impl TokenService {
    /// The remembered failure, while the connection's backoff lasts: the provider is not to
    /// be asked now.
    pub(super) async fn backing_off(
        &self,
        key: &ConnectionKey,
        conn: &ConnectionRecord,
    ) -> Result<Option<TokenFailure>, TokenError> {
        let now = unix_now();
        let Some((failures, Some(retry_at))) = self
            .store
            .refresh_backoff(key.provider(), key.connection())
            .await?
        else {
            return Ok(None);
        };
        if now >= retry_at {
            return Ok(None);
        }
        let (kind, message) = match &conn.error {
            Some((code, message)) => (
                FailureKind::from_code(code).unwrap_or(FailureKind::ProviderError),
                message.as_str(),
            ),
            None => (FailureKind::ProviderError, "the token endpoint failed"),
        };
        Ok(Some(TokenFailure::new(
            kind,
            format!(
                "{message} ({failures} failures in a row; the provider is asked again in {}s)",
                retry_at - now
            ),
        )))
    }

    /// How long to leave the provider alone after one more failure.
    pub(super) async fn next_backoff(&self, key: &ConnectionKey) -> Result<i64, TokenError> {
        let failures = self
            .store
            .refresh_backoff(key.provider(), key.connection())
            .await?
            .map_or(0, |(failures, _)| failures);
        let failures = u32::try_from(failures.saturating_add(1)).unwrap_or(u32::MAX);
        Ok(backoff_delay(failures))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_five_minutes() {
        for _ in 0..20 {
            assert!((1..=2).contains(&backoff_delay(1)));
            assert!((4..=8).contains(&backoff_delay(3)));
            assert!((150..=300).contains(&backoff_delay(30)));
        }
    }
}
