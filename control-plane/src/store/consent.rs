//! The consent flow's state: login links (kept by the hash of their secret) and
//! authorization requests in progress (by the hash of their `state`), each single-use.

use super::exec::args;
use super::rows::{consent_from_row, link_from_row, CONSENT_COLUMNS, LINK_COLUMNS};
use super::{ConsentState, LoginLink, Store, StoreError};
use crate::clock::unix_now;

impl Store {
    /// Stores a new login link, dropping expired ones.
    pub async fn insert_login_link(&self, l: &LoginLink) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        // Expired links are useless; a used one is kept until it expires, so that opening it
        // again says "already used" rather than "unknown".
        tx.execute(
            "DELETE FROM login_links WHERE expires_at < $1",
            &args![l.created_at],
        )
        .await?;
        tx.execute(
            "INSERT INTO login_links (id_hash, provider_id, connection_id, redirect_url, \
             created_at, expires_at, used_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &args![
                &l.id_hash,
                &l.provider_id,
                &l.connection_id,
                &l.redirect_url,
                l.created_at,
                l.expires_at,
                l.used_at,
            ],
        )
        .await?;
        tx.commit().await
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
