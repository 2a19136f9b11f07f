//! The consent flow's state: login links (kept by the hash of their secret) and
//! authorization requests in progress (by the hash of their `state`), each single-use.

use super::dialect::BeginWrite as _;
use super::rows::{consent_from_row, link_from_row, CONSENT_COLUMNS, LINK_COLUMNS};
use super::{ConsentState, LoginLink, Store, StoreError};
use crate::clock::unix_now;

impl Store {
    /// Stores a new login link, dropping expired ones.
    pub async fn insert_login_link(&self, l: &LoginLink) -> Result<(), StoreError> {
        on_db!(self, |db| {
            let mut tx = db.begin_write().await?;
            // Expired links are useless; a used one is kept until it expires, so that opening
            // it again says "already used" rather than "unknown".
            sqlx::query("DELETE FROM login_links WHERE expires_at < $1")
                .bind(l.created_at)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO login_links (id_hash, provider_id, connection_id, redirect_url, \
                 created_at, expires_at, used_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&l.id_hash)
            .bind(&l.provider_id)
            .bind(&l.connection_id)
            .bind(&l.redirect_url)
            .bind(l.created_at)
            .bind(l.expires_at)
            .bind(l.used_at)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// The login link with this hash, used or not.
    pub async fn get_login_link(&self, id_hash: &[u8]) -> Result<Option<LoginLink>, StoreError> {
        on_db!(self, |db| {
            let row = sqlx::query(&format!(
                "SELECT {LINK_COLUMNS} FROM login_links WHERE id_hash = $1"
            ))
            .bind(id_hash)
            .fetch_optional(db)
            .await?;
            row.as_ref().map(link_from_row).transpose()
        })
    }

    /// Marks the link used, if it is unused and unexpired at `now`; returns it then. Atomic:
    /// of two concurrent uses, one wins.
    pub async fn use_login_link(
        &self,
        id_hash: &[u8],
        now: i64,
    ) -> Result<Option<LoginLink>, StoreError> {
        on_db!(self, |db| {
            let sql = format!(
                "UPDATE login_links SET used_at = $1 \
                 WHERE id_hash = $2 AND used_at IS NULL AND expires_at > $3 RETURNING {LINK_COLUMNS}"
            );
            let row = sqlx::query(&sql)
                .bind(now)
                .bind(id_hash)
                .bind(now)
                .fetch_optional(db)
                .await?;
            row.as_ref().map(link_from_row).transpose()
        })
    }

    /// Stores an authorization request in progress, dropping expired ones.
    pub async fn insert_consent_state(&self, c: &ConsentState) -> Result<(), StoreError> {
        on_db!(self, |db| {
            let mut tx = db.begin_write().await?;
            sqlx::query("DELETE FROM consent_states WHERE expires_at < $1")
                .bind(unix_now())
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO consent_states (state_hash, browser_hash, provider_id, \
                 connection_id, redirect_url, code_verifier, token_generation, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&c.state_hash)
            .bind(&c.browser_hash)
            .bind(&c.provider_id)
            .bind(&c.connection_id)
            .bind(&c.redirect_url)
            .bind(c.code_verifier.to_bytes())
            .bind(c.token_generation)
            .bind(c.expires_at)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// Removes and returns the authorization request with this state hash: a state is
    /// consumed by its first use, whatever the outcome.
    pub async fn take_consent_state(
        &self,
        state_hash: &[u8],
    ) -> Result<Option<ConsentState>, StoreError> {
        on_db!(self, |db| {
            let sql = format!(
                "DELETE FROM consent_states WHERE state_hash = $1 RETURNING {CONSENT_COLUMNS}"
            );
            let row = sqlx::query(&sql)
                .bind(state_hash)
                .fetch_optional(db)
                .await?;
            row.as_ref().map(consent_from_row).transpose()
        })
    }
}
