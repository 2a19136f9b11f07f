//! The SQLite backend: one file, WAL mode, for a single control-plane node.

mod identities;

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::rows::{
    connection_from_row, consent_from_row, envelope_keys, envelope_select, envelope_update,
    link_from_row, provider_from_row, runtime_select, runtime_view_from_row, schedule_from_row,
    split_error, stored_envelope_from_row, to_json, token_from_row, EnvelopeKey, CONNECTION_SELECT,
    CONSENT_COLUMNS, ENVELOPE_FIELDS, LINK_COLUMNS, PROVIDER_COLUMNS, SCHEDULE_COLUMNS,
    TOKEN_COLUMNS,
};
use super::{
    ConnectionError, ConnectionRecord, ConsentState, LoginLink, ProviderRecord, PutToken,
    RuntimeView, StoreError, StoredEnvelope, TokenRecord, TokenSchedule,
};
use crate::crypto::Envelope;

/// Write transactions take the write lock up front. A deferred transaction that reads first
/// and writes later can fail with SQLITE_BUSY when another writer got in between, and SQLite
/// does not retry that case even with a busy timeout.
const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

/// How long a statement waits for another connection's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How often the write-ahead log is checkpointed and truncated in the background. SQLite's own
/// checkpoints after each commit can copy the log into the database but cannot start it over
/// while some connection is always reading, and the pool's readers overlap under steady load:
/// `make bench`'s scale run grew the log to 3.4 GiB next to a 50 MiB database. A TRUNCATE
/// checkpoint waits (up to the busy timeout) for the readers of the moment, then empties it.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(30);

/// A log that a checkpoint does start over is cut back to this size (`journal_size_limit`).
const WAL_SIZE_LIMIT_BYTES: u64 = 64 * 1024 * 1024;

/// Checkpoints the log every [`CHECKPOINT_EVERY`] until the pool is closed.
async fn checkpoints(pool: SqlitePool) {
    let mut every = tokio::time::interval(CHECKPOINT_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    loop {
        every.tick().await;
        if pool.is_closed() {
            return;
        }
        match checkpoint(&pool).await {
            Ok(true) => {}
            Ok(false) => tracing::debug!("SQLite checkpoint: readers kept the log; next time"),
            Err(e) => tracing::warn!("SQLite checkpoint failed: {e}"),
        }
    }
}

/// Copies the write-ahead log into the database and empties it; `Ok(false)` when readers
/// kept it from finishing (the next run tries again).
async fn checkpoint(pool: &SqlitePool) -> Result<bool, StoreError> {
    // One row: busy (1 when it could not finish), log frames, frames checkpointed.
    let (busy, _, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
        .fetch_one(pool)
        .await?;
    Ok(busy == 0)
}

#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing) the database and runs the migrations.
    pub async fn connect(url: &str) -> Result<Self, sqlx::Error> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL is durable across application crashes in WAL mode; only an OS crash
            // can lose the last transactions, which at worst costs a token re-fetch.
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            .pragma("journal_size_limit", WAL_SIZE_LIMIT_BYTES.to_string());
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        sqlx::migrate!("migrations/sqlite").run(&pool).await?;
        tokio::spawn(checkpoints(pool.clone()));
        Ok(SqliteStore { pool })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn get_provider(&self, id: &str) -> Result<Option<ProviderRecord>, StoreError> {
        let sql = format!("SELECT {PROVIDER_COLUMNS} FROM providers WHERE id = ?");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(provider_from_row).transpose()
    }

    pub async fn list_providers(&self) -> Result<Vec<ProviderRecord>, StoreError> {
        let sql = format!("SELECT {PROVIDER_COLUMNS} FROM providers ORDER BY id");
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter().map(provider_from_row).collect()
    }

    pub async fn insert_provider(&self, p: &ProviderRecord) -> Result<bool, StoreError> {
        let sql = format!(
            "INSERT INTO providers ({PROVIDER_COLUMNS}) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING"
        );
        let done = sqlx::query(&sql)
            .bind(&p.id)
            .bind(&p.display_name)
            .bind(p.identity_provider.as_str())
            .bind(p.grant_type.as_str())
            .bind(&p.client_id)
            .bind(p.client_secret.to_bytes())
            .bind(&p.token_url)
            .bind(to_json(&p.scopes)?)
            .bind(p.token_endpoint_auth_method.as_str())
            .bind(to_json(&p.token_params)?)
            .bind(p.created_at)
            .bind(p.updated_at)
            .bind(&p.authorization_url)
            .bind(&p.refresh_url)
            .bind(&p.issuer)
            .bind(to_json(&p.authorize_params)?)
            .bind(to_json(&p.allowed_redirect_urls)?)
            .bind(&p.etag)
            .bind(to_json(&p.parameters)?)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn replace_provider(
        &self,
        p: &ProviderRecord,
        invalidate_tokens: bool,
        expected_etag: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        let done = sqlx::query(
            "UPDATE providers SET display_name = ?, identity_provider = ?, grant_type = ?, \
             client_id = ?, client_secret = ?, token_url = ?, scopes = ?, \
             token_endpoint_auth_method = ?, token_params = ?, updated_at = ?, \
             authorization_url = ?, refresh_url = ?, issuer = ?, authorize_params = ?, \
             allowed_redirect_urls = ?, etag = ?, preset_parameters = ? \
             WHERE id = ? AND etag = ?",
        )
        .bind(&p.display_name)
        .bind(p.identity_provider.as_str())
        .bind(p.grant_type.as_str())
        .bind(&p.client_id)
        .bind(p.client_secret.to_bytes())
        .bind(&p.token_url)
        .bind(to_json(&p.scopes)?)
        .bind(p.token_endpoint_auth_method.as_str())
        .bind(to_json(&p.token_params)?)
        .bind(p.updated_at)
        .bind(&p.authorization_url)
        .bind(&p.refresh_url)
        .bind(&p.issuer)
        .bind(to_json(&p.authorize_params)?)
        .bind(to_json(&p.allowed_redirect_urls)?)
        .bind(&p.etag)
        .bind(to_json(&p.parameters)?)
        .bind(&p.id)
        .bind(expected_etag)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        if invalidate_tokens {
            sqlx::query("DELETE FROM tokens WHERE provider_id = ?")
                .bind(&p.id)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "UPDATE connections SET token_generation = token_generation + 1, \
                 status = 'not_connected', error_code = NULL, error_message = NULL \
                 WHERE provider_id = ?",
            )
            .bind(&p.id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    pub async fn delete_provider(
        &self,
        id: &str,
        expected_etag: Option<&str>,
    ) -> Result<bool, StoreError> {
        // Connections and tokens go with it: ON DELETE CASCADE.
        let done = sqlx::query("DELETE FROM providers WHERE id = ? AND (? IS NULL OR etag = ?)")
            .bind(id)
            .bind(expected_etag)
            .bind(expected_etag)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn get_connection(
        &self,
        provider_id: &str,
        id: &str,
    ) -> Result<Option<ConnectionRecord>, StoreError> {
        let sql = format!("{CONNECTION_SELECT} WHERE c.provider_id = ? AND c.id = ?");
        let row = sqlx::query(&sql)
            .bind(provider_id)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(connection_from_row).transpose()
    }

    pub async fn list_connections(
        &self,
        provider_id: &str,
    ) -> Result<Vec<ConnectionRecord>, StoreError> {
        let sql = format!("{CONNECTION_SELECT} WHERE c.provider_id = ? ORDER BY c.id");
        let rows = sqlx::query(&sql)
            .bind(provider_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(connection_from_row).collect()
    }

    pub async fn list_connections_page(
        &self,
        provider_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ConnectionRecord>, StoreError> {
        let sql = format!(
            "{CONNECTION_SELECT} WHERE c.provider_id = ? AND c.id > ? ORDER BY c.id LIMIT ?"
        );
        let rows = sqlx::query(&sql)
            .bind(provider_id)
            .bind(after.unwrap_or(""))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(connection_from_row).collect()
    }

    pub async fn insert_connection(&self, c: &ConnectionRecord) -> Result<bool, StoreError> {
        let (error_code, error_message) = split_error(&c.error);
        let done = sqlx::query(
            "INSERT INTO connections (provider_id, id, display_name, client_id, client_secret, \
             status, error_code, error_message, token_generation, last_refresh_at, created_at, \
             updated_at, etag) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (provider_id, id) DO NOTHING",
        )
        .bind(&c.provider_id)
        .bind(&c.id)
        .bind(&c.display_name)
        .bind(&c.client_id)
        .bind(c.client_secret.as_ref().map(Envelope::to_bytes))
        .bind(c.status.as_str())
        .bind(error_code)
        .bind(error_message)
        .bind(c.token_generation)
        .bind(c.last_refresh_at)
        .bind(c.created_at)
        .bind(c.updated_at)
        .bind(&c.etag)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn replace_connection(
        &self,
        c: &ConnectionRecord,
        invalidate_token: bool,
        expected_etag: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        let done = sqlx::query(
            "UPDATE connections SET display_name = ?, client_id = ?, client_secret = ?, \
             updated_at = ?, etag = ? WHERE provider_id = ? AND id = ? AND etag = ?",
        )
        .bind(&c.display_name)
        .bind(&c.client_id)
        .bind(c.client_secret.as_ref().map(Envelope::to_bytes))
        .bind(c.updated_at)
        .bind(&c.etag)
        .bind(&c.provider_id)
        .bind(&c.id)
        .bind(expected_etag)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        if invalidate_token {
            sqlx::query("DELETE FROM tokens WHERE provider_id = ? AND connection_id = ?")
                .bind(&c.provider_id)
                .bind(&c.id)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "UPDATE connections SET token_generation = token_generation + 1, \
                 status = 'not_connected', error_code = NULL, error_message = NULL \
                 WHERE provider_id = ? AND id = ?",
            )
            .bind(&c.provider_id)
            .bind(&c.id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    pub async fn delete_connection(
        &self,
        provider_id: &str,
        id: &str,
        expected_etag: Option<&str>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "DELETE FROM connections WHERE provider_id = ? AND id = ? \
             AND (? IS NULL OR etag = ?)",
        )
        .bind(provider_id)
        .bind(id)
        .bind(expected_etag)
        .bind(expected_etag)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn get_token(
        &self,
        provider_id: &str,
        connection_id: &str,
    ) -> Result<Option<TokenRecord>, StoreError> {
        let sql = format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens WHERE provider_id = ? AND connection_id = ?"
        );
        let row = sqlx::query(&sql)
            .bind(provider_id)
            .bind(connection_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    pub async fn runtime_view(
        &self,
        provider_id: &str,
        connection_id: &str,
    ) -> Result<RuntimeView, StoreError> {
        let row = sqlx::query(&runtime_select(|n| format!("?{n}")))
            .bind(provider_id)
            .bind(connection_id)
            .fetch_optional(&self.pool)
            .await?;
        runtime_view_from_row(row.as_ref())
    }

    pub async fn put_token(
        &self,
        provider_id: &str,
        connection_id: &str,
        generation: i64,
        t: &TokenRecord,
    ) -> Result<bool, StoreError> {
        let put = self
            .put_token_if(provider_id, connection_id, generation, None, t)
            .await?;
        Ok(put == PutToken::Stored)
    }

    pub async fn put_refreshed_token(
        &self,
        provider_id: &str,
        connection_id: &str,
        generation: i64,
        presented: &Envelope,
        t: &TokenRecord,
    ) -> Result<PutToken, StoreError> {
        self.put_token_if(provider_id, connection_id, generation, Some(presented), t)
            .await
    }

    /// Every token write first updates the connection's row, which serialises the writers
    /// of one connection; the refresh token is compared after that, so it is the one the
    /// previous writer committed.
    async fn put_token_if(
        &self,
        provider_id: &str,
        connection_id: &str,
        generation: i64,
        presented: Option<&Envelope>,
        t: &TokenRecord,
    ) -> Result<PutToken, StoreError> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        let done = sqlx::query(
            "UPDATE connections SET status = 'connected', error_code = NULL, \
             error_message = NULL, last_refresh_at = ? \
             WHERE provider_id = ? AND id = ? AND token_generation = ?",
        )
        .bind(t.obtained_at)
        .bind(provider_id)
        .bind(connection_id)
        .bind(generation)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(PutToken::Reconfigured);
        }
        if let Some(presented) = presented {
            let current: Option<Option<Vec<u8>>> = sqlx::query_scalar(
                "SELECT refresh_token FROM tokens WHERE provider_id = ? AND connection_id = ?",
            )
            .bind(provider_id)
            .bind(connection_id)
            .fetch_optional(&mut *tx)
            .await?;
            if current.flatten() != Some(presented.to_bytes()) {
                return Ok(PutToken::RefreshTokenChanged);
            }
        }
        sqlx::query(
            "INSERT INTO tokens (provider_id, connection_id, access_token, token_type, claims, \
             obtained_at, expires_at, refresh_at, refresh_token, refresh_token_expires_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (provider_id, connection_id) DO UPDATE SET \
             access_token = excluded.access_token, token_type = excluded.token_type, \
             refresh_token = excluded.refresh_token, \
             refresh_token_expires_at = excluded.refresh_token_expires_at, \
             claims = excluded.claims, obtained_at = excluded.obtained_at, \
             expires_at = excluded.expires_at, refresh_at = excluded.refresh_at",
        )
        .bind(provider_id)
        .bind(connection_id)
        .bind(t.access_token.to_bytes())
        .bind(&t.token_type)
        .bind(to_json(&t.claims)?)
        .bind(t.obtained_at)
        .bind(t.expires_at)
        .bind(t.refresh_at)
        .bind(t.refresh_token.as_ref().map(Envelope::to_bytes))
        .bind(t.refresh_token_expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(PutToken::Stored)
    }

    pub async fn record_token_error(
        &self,
        provider_id: &str,
        connection_id: &str,
        generation: i64,
        e: &ConnectionError<'_>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE connections SET status = ?, error_code = ?, error_message = ? \
             WHERE provider_id = ? AND id = ? AND token_generation = ?",
        )
        .bind(e.status.as_str())
        .bind(e.code)
        .bind(e.message)
        .bind(provider_id)
        .bind(connection_id)
        .bind(generation)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn insert_login_link(&self, l: &LoginLink) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        // Expired links are useless; a used one is kept until it expires, so that opening
        // it again says "already used" rather than "unknown".
        sqlx::query("DELETE FROM login_links WHERE expires_at < ?")
            .bind(l.created_at)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO login_links (id_hash, provider_id, connection_id, redirect_url, \
             created_at, expires_at, used_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
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
    }

    pub async fn get_login_link(&self, id_hash: &[u8]) -> Result<Option<LoginLink>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {LINK_COLUMNS} FROM login_links WHERE id_hash = ?"
        ))
        .bind(id_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(link_from_row).transpose()
    }

    pub async fn use_login_link(
        &self,
        id_hash: &[u8],
        now: i64,
    ) -> Result<Option<LoginLink>, StoreError> {
        let sql = format!(
            "UPDATE login_links SET used_at = ? \
             WHERE id_hash = ? AND used_at IS NULL AND expires_at > ? RETURNING {LINK_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(now)
            .bind(id_hash)
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(link_from_row).transpose()
    }

    pub async fn insert_consent_state(&self, c: &ConsentState) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        sqlx::query("DELETE FROM consent_states WHERE expires_at < strftime('%s', 'now')")
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO consent_states (state_hash, browser_hash, provider_id, \
             connection_id, redirect_url, code_verifier, token_generation, expires_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
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
    }

    pub async fn take_consent_state(
        &self,
        state_hash: &[u8],
    ) -> Result<Option<ConsentState>, StoreError> {
        let sql =
            format!("DELETE FROM consent_states WHERE state_hash = ? RETURNING {CONSENT_COLUMNS}");
        let row = sqlx::query(&sql)
            .bind(state_hash)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(consent_from_row).transpose()
    }

    pub async fn try_refresh_lease(
        &self,
        provider_id: &str,
        connection_id: &str,
        owner: &str,
        now: i64,
        until: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE connections SET refresh_lease_owner = ?, refresh_lease_until = ? \
             WHERE provider_id = ? AND id = ? AND (refresh_lease_owner IS NULL \
             OR refresh_lease_owner = ? OR refresh_lease_until <= ?)",
        )
        .bind(owner)
        .bind(until)
        .bind(provider_id)
        .bind(connection_id)
        .bind(owner)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn release_refresh_lease(
        &self,
        provider_id: &str,
        connection_id: &str,
        owner: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE connections SET refresh_lease_owner = NULL, refresh_lease_until = NULL \
             WHERE provider_id = ? AND id = ? AND refresh_lease_owner = ?",
        )
        .bind(provider_id)
        .bind(connection_id)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn all_envelopes(&self) -> Result<Vec<StoredEnvelope>, StoreError> {
        let mut out = Vec::new();
        for field in ENVELOPE_FIELDS {
            let rows = sqlx::query(&envelope_select(field))
                .fetch_all(&self.pool)
                .await?;
            for row in &rows {
                out.push(stored_envelope_from_row(field, row)?);
            }
        }
        Ok(out)
    }

    pub async fn replace_envelope(
        &self,
        old: &StoredEnvelope,
        new: &Envelope,
    ) -> Result<bool, StoreError> {
        let sql = envelope_update(old.field, |_| "?".to_owned());
        let mut query = sqlx::query(&sql).bind(new.to_bytes());
        for key in envelope_keys(old) {
            query = match key {
                EnvelopeKey::Text(t) => query.bind(t),
                EnvelopeKey::Bytes(b) => query.bind(b),
            };
        }
        let done = query
            .bind(old.envelope.to_bytes())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn tokens_due_by(&self, horizon: i64) -> Result<Vec<TokenSchedule>, StoreError> {
        let sql = format!(
            "SELECT {SCHEDULE_COLUMNS} FROM tokens WHERE refresh_at <= ? ORDER BY refresh_at"
        );
        let rows = sqlx::query(&sql)
            .bind(horizon)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(schedule_from_row).collect()
    }

    pub async fn drop_tokens_with_error(
        &self,
        provider_id: &str,
        connection_id: &str,
        generation: i64,
        e: &ConnectionError<'_>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        let done = sqlx::query(
            "UPDATE connections SET status = ?, error_code = ?, error_message = ? \
             WHERE provider_id = ? AND id = ? AND token_generation = ?",
        )
        .bind(e.status.as_str())
        .bind(e.code)
        .bind(e.message)
        .bind(provider_id)
        .bind(connection_id)
        .bind(generation)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM tokens WHERE provider_id = ? AND connection_id = ?")
            .bind(provider_id)
            .bind(connection_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wal_len(db: &std::path::Path) -> u64 {
        let wal = db.with_file_name(format!(
            "{}-wal",
            db.file_name().unwrap_or_default().to_string_lossy()
        ));
        std::fs::metadata(wal).map(|m| m.len()).unwrap_or(0)
    }

    #[tokio::test]
    async fn a_log_that_readers_kept_growing_is_emptied_by_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("wal.db");
        let store = SqliteStore::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        sqlx::query("CREATE TABLE filler (b BLOB)")
            .execute(&store.pool)
            .await
            .unwrap();
        // A reader that stays inside a snapshot, as overlapping requests do under load: the
        // log cannot start over while it reads.
        let mut reader = store.pool.acquire().await.unwrap();
        sqlx::query("BEGIN").execute(&mut *reader).await.unwrap();
        sqlx::query("SELECT count(*) FROM filler")
            .fetch_one(&mut *reader)
            .await
            .unwrap();
        for _ in 0..200 {
            sqlx::query("INSERT INTO filler VALUES (randomblob(16384))")
                .execute(&store.pool)
                .await
                .unwrap();
        }
        assert!(wal_len(&db) > 3_000_000, "the log grew: {}", wal_len(&db));
        sqlx::query("COMMIT").execute(&mut *reader).await.unwrap();
        drop(reader);

        assert!(checkpoint(&store.pool).await.unwrap());
        assert_eq!(wal_len(&db), 0, "the log is empty after the checkpoint");
        let (rows,): (i64,) = sqlx::query_as("SELECT count(*) FROM filler")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(rows, 200, "nothing written was lost");
        store.close().await;
    }
}
