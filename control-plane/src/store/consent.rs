//! The consent flow's state: login links (kept by the hash of their secret) and
//! authorization requests in progress (by the hash of their `state`), each single-use.

use super::exec::{args, Tx};
use super::rows::{consent_from_row, link_from_row, CONSENT_COLUMNS, LINK_COLUMNS};
use super::{ConsentState, LinkInsert, LinkLimits, LoginLink, Store, StoreError, LINK_WINDOW_SECS};
use crate::clock::unix_now;

impl Store {
    /// Stores a new login link, dropping expired ones.
    pub async fn insert_login_link(&self, l: &LoginLink) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        insert_link(&mut tx, l).await?;
        tx.commit().await
    }

    /// Stores a new self-service login link (`l.made_for` set) unless one of `limits` is
    /// reached: the links made in the last [`LINK_WINDOW_SECS`] for the same caller, or for
    /// the same connection, are counted in the same transaction, which holds a lock per caller
    /// and per connection, so replicas sharing the database count together.
    pub async fn insert_login_link_limited(
        &self,
        l: &LoginLink,
        limits: LinkLimits,
    ) -> Result<LinkInsert, StoreError> {
        let user = l
            .made_for
            .as_ref()
            .ok_or_else(|| StoreError::Corrupt("a limited login link names no caller".into()))?;
        let since = l.created_at.saturating_sub(LINK_WINDOW_SECS);
        let mut tx = self.begin_write().await?;
        // Always caller, then connection: two transactions never wait for each other in a
        // circle.
        tx.lock_name(&format!(
            "login-links caller {} {}",
            user.issuer, user.object_id
        ))
        .await?;
        tx.lock_name(&format!(
            "login-links connection {} {}",
            l.provider_id, l.connection_id
        ))
        .await?;
        let counts = [
            (
                "made_for_issuer = $1 AND made_for_object_id = $2",
                args![&user.issuer, &user.object_id, since],
                limits.per_caller,
                true,
            ),
            (
                "provider_id = $1 AND connection_id = $2",
                args![&l.provider_id, &l.connection_id, since],
                limits.per_connection,
                false,
            ),
        ];
        for (filter, binds, limit, per_caller) in counts {
            let sql = format!(
                "SELECT count(*) AS n, min(created_at) AS oldest FROM login_links \
                 WHERE {filter} AND created_at > $3"
            );
            let window = tx
                .fetch_optional(&sql, &binds, |row| {
                    Ok((row.int("n")?, row.opt_int("oldest")?))
                })
                .await?;
            let (n, oldest) = window.unwrap_or((0, None));
            if n >= i64::from(limit) {
                // The oldest link counted leaves the window first.
                let frees_at = oldest
                    .unwrap_or(l.created_at)
                    .saturating_add(LINK_WINDOW_SECS);
                return Ok(LinkInsert::Limited {
                    retry_after_secs: frees_at.saturating_sub(l.created_at).max(1),
                    per_caller,
                });
            }
        }
        insert_link(&mut tx, l).await?;
        tx.commit().await?;
        Ok(LinkInsert::Stored)
    }

    /// The login link with this hash, used or not.
    pub async fn get_login_link(&self, id_hash: &[u8]) -> Result<Option<LoginLink>, StoreError> {
        let sql = format!("SELECT {LINK_COLUMNS} FROM login_links WHERE id_hash = $1");
        self.fetch_optional(&sql, &args![id_hash], link_from_row)
            .await
    }

    /// Marks the link used, if it is unused and unexpired at `now`; returns it then. Atomic:
    /// of two concurrent uses, one wins.
    pub async fn use_login_link(
        &self,
        id_hash: &[u8],
        now: i64,
    ) -> Result<Option<LoginLink>, StoreError> {
        let sql = format!(
            "UPDATE login_links SET used_at = $2 \
             WHERE id_hash = $1 AND used_at IS NULL AND expires_at > $2 RETURNING {LINK_COLUMNS}"
        );
        self.fetch_optional(&sql, &args![id_hash, now], link_from_row)
            .await
    }

    /// Stores an authorization request in progress, dropping expired ones.
    pub async fn insert_consent_state(&self, c: &ConsentState) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        tx.execute(
            "DELETE FROM consent_states WHERE expires_at < $1",
            &args![unix_now()],
        )
        .await?;
        tx.execute(
            "INSERT INTO consent_states (state_hash, browser_hash, provider_id, \
             connection_id, redirect_url, code_verifier, token_generation, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &args![
                &c.state_hash,
                &c.browser_hash,
                &c.provider_id,
                &c.connection_id,
                &c.redirect_url,
                c.code_verifier.to_bytes(),
                c.token_generation,
                c.expires_at,
            ],
        )
        .await?;
        tx.commit().await
    }

    /// Removes and returns the authorization request with this state hash: a state is
    /// consumed by its first use, whatever the outcome.
    pub async fn take_consent_state(
        &self,
        state_hash: &[u8],
    ) -> Result<Option<ConsentState>, StoreError> {
        let sql =
            format!("DELETE FROM consent_states WHERE state_hash = $1 RETURNING {CONSENT_COLUMNS}");
        self.fetch_optional(&sql, &args![state_hash], consent_from_row)
            .await
    }
}

/// Inserts a login link, first dropping those expired more than [`LINK_WINDOW_SECS`] ago
/// (sooner, they still count towards the rate limits). A used one is kept until then, so
/// that opening it again says "already used" rather than "unknown".
async fn insert_link(tx: &mut Tx, l: &LoginLink) -> Result<(), StoreError> {
    tx.execute(
        "DELETE FROM login_links WHERE expires_at < $1",
        &args![l.created_at.saturating_sub(LINK_WINDOW_SECS)],
    )
    .await?;
    let (issuer, object_id) = match &l.made_for {
        Some(u) => (Some(u.issuer.as_str()), Some(u.object_id.as_str())),
        None => (None, None),
    };
    tx.execute(
        "INSERT INTO login_links (id_hash, provider_id, connection_id, redirect_url, \
         created_at, expires_at, used_at, made_for_issuer, made_for_object_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &args![
            &l.id_hash,
            &l.provider_id,
            &l.connection_id,
            &l.redirect_url,
            l.created_at,
            l.expires_at,
            l.used_at,
            issuer,
            object_id,
        ],
    )
    .await?;
    Ok(())
}
