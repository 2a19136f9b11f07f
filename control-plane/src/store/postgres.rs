//! The PostgreSQL backend: several control-plane replicas on one database.
//!
//! The same statements as the SQLite backend, with `$n` placeholders. Transactions run at
//! READ COMMITTED: every conditional write (`... WHERE etag = $n`, the refresh lease, the
//! token generation) is one UPDATE, which PostgreSQL serialises on the row lock and re-checks
//! against the row as committed by the other writer, so of two replicas racing one wins.

mod identities;

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

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

/// How long a request waits for a pooled connection before it fails (and `/readyz` says the
/// database is down) rather than hanging while the database is unreachable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections per replica. Several replicas share the server's `max_connections` (100 by
/// default), so this stays modest.
const MAX_CONNECTIONS: u32 = 10;

#[derive(Clone, Debug)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects and runs the migrations. Replicas starting at once are safe: sqlx's migrator
    /// holds a PostgreSQL advisory lock (keyed by the database name) while it checks and
    /// applies migrations, so one replica migrates and the others wait, then find nothing
    /// left to do.
    pub async fn connect(url: &str) -> Result<Self, sqlx::Error> {
        let options = PgConnectOptions::from_str(url)?.application_name("credmgr");
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            // A connection the server closed (restart, pg_terminate_backend, failover) is
            // found dead by this check and replaced, so the store recovers by itself.
            .test_before_acquire(true)
            .connect_with(options)
            .await?;
        sqlx::migrate!("migrations/postgresql").run(&pool).await?;
        Ok(PostgresStore { pool })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn get_provider(&self, id: &str) -> Result<Option<ProviderRecord>, StoreError> {
        let sql = format!("SELECT {PROVIDER_COLUMNS} FROM providers WHERE id = $1");
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
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19) ON CONFLICT (id) DO NOTHING"
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
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE providers SET display_name = $1, identity_provider = $2, grant_type = $3, \
             client_id = $4, client_secret = $5, token_url = $6, scopes = $7, \
             token_endpoint_auth_method = $8, token_params = $9, updated_at = $10, \
             authorization_url = $11, refresh_url = $12, issuer = $13, authorize_params = $14, \
             allowed_redirect_urls = $15, etag = $16, preset_parameters = $17 \
             WHERE id = $18 AND etag = $19",
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
            sqlx::query("DELETE FROM tokens WHERE provider_id = $1")
                .bind(&p.id)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "UPDATE connections SET token_generation = token_generation + 1, \
                 status = 'not_connected', error_code = NULL, error_message = NULL \
                 WHERE provider_id = $1",
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
        let done = sqlx::query("DELETE FROM providers WHERE id = $1 AND ($2 IS NULL OR etag = $3)")
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
        let sql = format!("{CONNECTION_SELECT} WHERE c.provider_id = $1 AND c.id = $2");
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
        let sql = format!("{CONNECTION_SELECT} WHERE c.provider_id = $1 ORDER BY c.id");
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
            "{CONNECTION_SELECT} WHERE c.provider_id = $1 AND c.id > $2 ORDER BY c.id LIMIT $3"
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
             updated_at, etag) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
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
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE connections SET display_name = $1, client_id = $2, client_secret = $3, \
             updated_at = $4, etag = $5 WHERE provider_id = $6 AND id = $7 AND etag = $8",
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
            sqlx::query("DELETE FROM tokens WHERE provider_id = $1 AND connection_id = $2")
                .bind(&c.provider_id)
                .bind(&c.id)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "UPDATE connections SET token_generation = token_generation + 1, \
                 status = 'not_connected', error_code = NULL, error_message = NULL \
                 WHERE provider_id = $1 AND id = $2",
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
            "DELETE FROM connections WHERE provider_id = $1 AND id = $2 \
             AND ($3 IS NULL OR etag = $4)",
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
            "SELECT {TOKEN_COLUMNS} FROM tokens WHERE provider_id = $1 AND connection_id = $2"
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
        let row = sqlx::query(&runtime_select(|n| format!("${n}")))
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
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE connections SET status = 'connected', error_code = NULL, \
             error_message = NULL, last_refresh_at = $1 \
             WHERE provider_id = $2 AND id = $3 AND token_generation = $4",
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
                "SELECT refresh_token FROM tokens WHERE provider_id = $1 AND connection_id = $2",
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
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
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
            "UPDATE connections SET status = $1, error_code = $2, error_message = $3 \
             WHERE provider_id = $4 AND id = $5 AND token_generation = $6",
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
        let mut tx = self.pool.begin().await?;
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
    }

    pub async fn get_login_link(&self, id_hash: &[u8]) -> Result<Option<LoginLink>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {LINK_COLUMNS} FROM login_links WHERE id_hash = $1"
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
            "UPDATE login_links SET used_at = $1 \
             WHERE id_hash = $2 AND used_at IS NULL AND expires_at > $3 RETURNING {LINK_COLUMNS}"
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
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "DELETE FROM consent_states WHERE expires_at < extract(epoch FROM now())::bigint",
        )
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
    }

    pub async fn take_consent_state(
        &self,
        state_hash: &[u8],
    ) -> Result<Option<ConsentState>, StoreError> {
        let sql =
            format!("DELETE FROM consent_states WHERE state_hash = $1 RETURNING {CONSENT_COLUMNS}");
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
            "UPDATE connections SET refresh_lease_owner = $1, refresh_lease_until = $2 \
             WHERE provider_id = $3 AND id = $4 AND (refresh_lease_owner IS NULL \
             OR refresh_lease_owner = $5 OR refresh_lease_until <= $6)",
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
             WHERE provider_id = $1 AND id = $2 AND refresh_lease_owner = $3",
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
        let sql = envelope_update(old.field, |n| format!("${n}"));
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
            "SELECT {SCHEDULE_COLUMNS} FROM tokens WHERE refresh_at <= $1 ORDER BY refresh_at"
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
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE connections SET status = $1, error_code = $2, error_message = $3 \
             WHERE provider_id = $4 AND id = $5 AND token_generation = $6",
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
        sqlx::query("DELETE FROM tokens WHERE provider_id = $1 AND connection_id = $2")
            .bind(provider_id)
            .bind(connection_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }
}
