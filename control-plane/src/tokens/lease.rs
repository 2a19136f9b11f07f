//! The refresh lease: one refresh per connection across the replicas that share a database.
//!
//! A replica takes the connection's lease in the store before it asks the provider and
//! releases it after. The lease outlives any refresh (`lease_secs`) and expires by itself if
//! its holder dies; a replica that finds it taken waits, and gives up waiting as soon as the
//! holder has stored a token that serves.

use super::error::{FailureKind, TokenError, TokenFailure};
use super::{Need, TokenService};
use crate::clock::unix_now;
use crate::domain::ConnectionKey;
use crate::store::TokenRecord;

/// How often a replica waiting for another one's refresh looks at the store.
const LEASE_POLL: std::time::Duration = std::time::Duration::from_millis(100);

impl TokenService {
    /// Takes the connection's refresh lease if no other replica holds it, without waiting.
    pub(super) async fn try_lease(&self, key: &ConnectionKey) -> Result<bool, TokenError> {
        let now = unix_now();
        Ok(self
            .store
            .try_refresh_lease(
                key.provider(),
                key.connection(),
                &self.instance,
                now,
                now + self.lease_secs,
            )
            .await?)
    }

    /// Waits for the connection's refresh lease. With `need`, gives up waiting as soon as
    /// another replica has stored a token that satisfies it ([`Need::satisfied_by`]), and
    /// returns it; `None` means the lease is ours.
    pub(super) async fn lease(
        &self,
        key: &ConnectionKey,
        need: Option<&Need>,
    ) -> Result<Option<TokenRecord>, TokenError> {
        let deadline = std::time::Instant::now()
            + std::time::Duration::from_secs(u64::try_from(self.lease_secs).unwrap_or(60) + 2);
        loop {
            let now = unix_now();
            let until = now.saturating_add(self.lease_secs);
            if self
                .store
                .try_refresh_lease(key.provider(), key.connection(), &self.instance, now, until)
                .await?
            {
                return Ok(None);
            }
            if std::time::Instant::now() > deadline {
                return Err(TokenError::Unavailable(TokenFailure::new(
                    FailureKind::ProviderUnreachable,
                    format!(
                        "another control-plane replica has been refreshing {key} for longer \
                         than {}s",
                        self.lease_secs
                    ),
                )));
            }
            tokio::time::sleep(LEASE_POLL).await;
            if let Some(need) = need {
                if let Some(t) = self
                    .store
                    .get_token(key.provider(), key.connection())
                    .await?
                {
                    if need.satisfied_by(self, key, &t) {
                        return Ok(Some(t));
                    }
                }
            }
        }
    }

    /// Gives the lease back, so another replica may refresh without waiting for it to expire.
    pub(super) async fn release_lease(&self, key: &ConnectionKey) {
        if let Err(e) = self
            .store
            .release_refresh_lease(key.provider(), key.connection(), &self.instance)
            .await
        {
            // It expires by itself; until then other replicas wait for it.
            tracing::warn!(provider = %key.provider(), connection = %key.connection(), error = %e,
                "could not release the refresh lease");
        }
    }
}
