//! The SQLite backend: one file, WAL mode, for a single control-plane node.

mod identities;

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::Row as _;

use super::{
    ConnectionError, ConnectionRecord, ConsentState, EnvelopeField, LoginLink, ProviderRecord,
    StoreError, StoredEnvelope, TokenRecord, TokenSchedule,
};
use crate::crypto::Envelope;

/// Write transactions take the write lock up front. A deferred transaction that reads first
/// and writes later can fail with SQLITE_BUSY when another writer got in between, and SQLite
/// does not retry that case even with a busy timeout.
const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

/// How long a statement waits for another connection's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
}

const PROVIDER_COLUMNS: &str = "id, display_name, identity_provider, grant_type, client_id, \
     client_secret, token_url, scopes, token_endpoint_auth_method, token_params, created_at, \
     updated_at, authorization_url, refresh_url, issuer, authorize_params, allowed_redirect_urls, \
     etag, preset_parameters";

const CONNECTION_SELECT: &str = "SELECT c.provider_id, c.id, c.display_name, c.client_id, \
     c.client_secret, c.status, c.error_code, c.error_message, c.token_generation, \
     c.last_refresh_at, c.created_at, c.updated_at, c.etag, t.expires_at AS token_expires_at, \
     t.refresh_token_expires_at \
     FROM connections c LEFT JOIN tokens t \
     ON t.provider_id = c.provider_id AND t.connection_id = c.id";

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
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        sqlx::migrate!("migrations/sqlite").run(&pool).await?;
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
        let row = sqlx::query(
            "SELECT access_token, refresh_token, token_type, claims, obtained_at, expires_at, \
             refresh_at, refresh_token_expires_at FROM tokens \
             WHERE provider_id = ? AND connection_id = ?",
        )
        .bind(provider_id)
        .bind(connection_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    pub async fn put_token(
        &self,
        provider_id: &str,
        connection_id: &str,
        generation: i64,
        t: &TokenRecord,
    ) -> Result<bool, StoreError> {
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
            return Ok(false);
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
        Ok(true)
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
        let row = sqlx::query(&format!("{LINK_SELECT} WHERE id_hash = ?"))
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
        let row = sqlx::query(
            "UPDATE login_links SET used_at = ? \
             WHERE id_hash = ? AND used_at IS NULL AND expires_at > ? \
             RETURNING id_hash, provider_id, connection_id, redirect_url, created_at, \
             expires_at, used_at",
        )
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
        let row = sqlx::query(
            "DELETE FROM consent_states WHERE state_hash = ? \
             RETURNING state_hash, browser_hash, provider_id, connection_id, redirect_url, \
             code_verifier, token_generation, expires_at",
        )
        .bind(state_hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(ConsentState {
            state_hash: row.try_get("state_hash")?,
            browser_hash: row.try_get("browser_hash")?,
            provider_id: row.try_get("provider_id")?,
            connection_id: row.try_get("connection_id")?,
            redirect_url: row.try_get("redirect_url")?,
            code_verifier: envelope("code_verifier", row.try_get("code_verifier")?)?,
            token_generation: row.try_get("token_generation")?,
            expires_at: row.try_get("expires_at")?,
        }))
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
            let (table, column, keys) = envelope_location(field);
            let sql =
                format!("SELECT {keys}, {column} AS env FROM {table} WHERE {column} IS NOT NULL");
            for row in sqlx::query(&sql).fetch_all(&self.pool).await? {
                let bytes: Vec<u8> = row.try_get("env")?;
                let text = |name: &str| -> Result<String, StoreError> {
                    Ok(row
                        .try_get::<Option<String>, _>(name)
                        .ok()
                        .flatten()
                        .unwrap_or_default())
                };
                out.push(StoredEnvelope {
                    field,
                    provider_id: text("provider_id")?,
                    connection_id: match field {
                        EnvelopeField::ProviderClientSecret => String::new(),
                        EnvelopeField::ConnectionClientSecret => text("id")?,
                        _ => text("connection_id")?,
                    },
                    state_hash: match field {
                        EnvelopeField::CodeVerifier => row.try_get("state_hash")?,
                        _ => Vec::new(),
                    },
                    envelope: envelope(column, &bytes)?,
                });
            }
        }
        Ok(out)
    }

    pub async fn replace_envelope(
        &self,
        old: &StoredEnvelope,
        new: &Envelope,
    ) -> Result<bool, StoreError> {
        let (table, column, _) = envelope_location(old.field);
        let old_bytes = old.envelope.to_bytes();
        let new_bytes = new.to_bytes();
        let done = match old.field {
            EnvelopeField::ProviderClientSecret => {
                sqlx::query(&format!(
                    "UPDATE {table} SET {column} = ? WHERE id = ? AND {column} = ?"
                ))
                .bind(new_bytes)
                .bind(&old.provider_id)
                .bind(old_bytes)
                .execute(&self.pool)
                .await?
            }
            EnvelopeField::ConnectionClientSecret => {
                sqlx::query(&format!(
                    "UPDATE {table} SET {column} = ? \
                     WHERE provider_id = ? AND id = ? AND {column} = ?"
                ))
                .bind(new_bytes)
                .bind(&old.provider_id)
                .bind(&old.connection_id)
                .bind(old_bytes)
                .execute(&self.pool)
                .await?
            }
            EnvelopeField::AccessToken | EnvelopeField::RefreshToken => {
                sqlx::query(&format!(
                    "UPDATE {table} SET {column} = ? \
                     WHERE provider_id = ? AND connection_id = ? AND {column} = ?"
                ))
                .bind(new_bytes)
                .bind(&old.provider_id)
                .bind(&old.connection_id)
                .bind(old_bytes)
                .execute(&self.pool)
                .await?
            }
            EnvelopeField::CodeVerifier => {
                sqlx::query(&format!(
                    "UPDATE {table} SET {column} = ? WHERE state_hash = ? AND {column} = ?"
                ))
                .bind(new_bytes)
                .bind(&old.state_hash)
                .bind(old_bytes)
                .execute(&self.pool)
                .await?
            }
        };
        Ok(done.rows_affected() == 1)
    }

    pub async fn tokens_due_by(&self, horizon: i64) -> Result<Vec<TokenSchedule>, StoreError> {
        let rows = sqlx::query(
            "SELECT provider_id, connection_id, obtained_at, expires_at, refresh_at \
             FROM tokens WHERE refresh_at <= ? ORDER BY refresh_at",
        )
        .bind(horizon)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(TokenSchedule {
                    provider_id: row.try_get("provider_id")?,
                    connection_id: row.try_get("connection_id")?,
                    obtained_at: row.try_get("obtained_at")?,
                    expires_at: row.try_get("expires_at")?,
                    refresh_at: row.try_get("refresh_at")?,
                })
            })
            .collect()
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

const ENVELOPE_FIELDS: [EnvelopeField; 5] = [
    EnvelopeField::ProviderClientSecret,
    EnvelopeField::ConnectionClientSecret,
    EnvelopeField::AccessToken,
    EnvelopeField::RefreshToken,
    EnvelopeField::CodeVerifier,
];

/// Table, column and key columns of each kind of envelope.
fn envelope_location(field: EnvelopeField) -> (&'static str, &'static str, &'static str) {
    match field {
        EnvelopeField::ProviderClientSecret => ("providers", "client_secret", "id AS provider_id"),
        EnvelopeField::ConnectionClientSecret => {
            ("connections", "client_secret", "provider_id, id")
        }
        EnvelopeField::AccessToken => ("tokens", "access_token", "provider_id, connection_id"),
        EnvelopeField::RefreshToken => ("tokens", "refresh_token", "provider_id, connection_id"),
        EnvelopeField::CodeVerifier => {
            ("consent_states", "code_verifier", "provider_id, state_hash")
        }
    }
}

const LINK_SELECT: &str = "SELECT id_hash, provider_id, connection_id, redirect_url, \
     created_at, expires_at, used_at FROM login_links";

fn link_from_row(row: &SqliteRow) -> Result<LoginLink, StoreError> {
    Ok(LoginLink {
        id_hash: row.try_get("id_hash")?,
        provider_id: row.try_get("provider_id")?,
        connection_id: row.try_get("connection_id")?,
        redirect_url: row.try_get("redirect_url")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        used_at: row.try_get("used_at")?,
    })
}

fn split_error(e: &Option<(String, String)>) -> (Option<&str>, Option<&str>) {
    match e {
        Some((code, message)) => (Some(code.as_str()), Some(message.as_str())),
        None => (None, None),
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn from_json<T: serde::de::DeserializeOwned>(column: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
}

fn parsed<T: FromStr>(column: &str, text: &str) -> Result<T, StoreError> {
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("{column}: unknown value {text:?}")))
}

fn envelope(column: &str, bytes: &[u8]) -> Result<Envelope, StoreError> {
    Envelope::from_bytes(bytes).map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
}

fn provider_from_row(row: &SqliteRow) -> Result<ProviderRecord, StoreError> {
    Ok(ProviderRecord {
        id: row.try_get("id")?,
        display_name: row.try_get("display_name")?,
        identity_provider: parsed("identity_provider", row.try_get("identity_provider")?)?,
        grant_type: parsed("grant_type", row.try_get("grant_type")?)?,
        client_id: row.try_get("client_id")?,
        client_secret: envelope("client_secret", row.try_get("client_secret")?)?,
        token_url: row.try_get("token_url")?,
        scopes: from_json("scopes", row.try_get("scopes")?)?,
        token_endpoint_auth_method: parsed(
            "token_endpoint_auth_method",
            row.try_get("token_endpoint_auth_method")?,
        )?,
        token_params: from_json("token_params", row.try_get("token_params")?)?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        authorization_url: row.try_get("authorization_url")?,
        refresh_url: row.try_get("refresh_url")?,
        issuer: row.try_get("issuer")?,
        authorize_params: from_json("authorize_params", row.try_get("authorize_params")?)?,
        allowed_redirect_urls: from_json(
            "allowed_redirect_urls",
            row.try_get("allowed_redirect_urls")?,
        )?,
        etag: row.try_get("etag")?,
        parameters: from_json("preset_parameters", row.try_get("preset_parameters")?)?,
    })
}

fn connection_from_row(row: &SqliteRow) -> Result<ConnectionRecord, StoreError> {
    let code: Option<String> = row.try_get("error_code")?;
    let message: Option<String> = row.try_get("error_message")?;
    let secret: Option<Vec<u8>> = row.try_get("client_secret")?;
    Ok(ConnectionRecord {
        provider_id: row.try_get("provider_id")?,
        id: row.try_get("id")?,
        display_name: row.try_get("display_name")?,
        client_id: row.try_get("client_id")?,
        client_secret: secret.map(|b| envelope("client_secret", &b)).transpose()?,
        status: parsed("status", row.try_get("status")?)?,
        error: code.map(|c| (c, message.unwrap_or_default())),
        token_generation: row.try_get("token_generation")?,
        last_refresh_at: row.try_get("last_refresh_at")?,
        etag: row.try_get("etag")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        token_expires_at: row.try_get("token_expires_at")?,
        refresh_token_expires_at: row.try_get("refresh_token_expires_at")?,
    })
}

fn token_from_row(row: &SqliteRow) -> Result<TokenRecord, StoreError> {
    Ok(TokenRecord {
        access_token: envelope("access_token", row.try_get("access_token")?)?,
        refresh_token: row
            .try_get::<Option<Vec<u8>>, _>("refresh_token")?
            .map(|b| envelope("refresh_token", &b))
            .transpose()?,
        token_type: row.try_get("token_type")?,
        claims: from_json("claims", row.try_get("claims")?)?,
        obtained_at: row.try_get("obtained_at")?,
        expires_at: row.try_get("expires_at")?,
        refresh_at: row.try_get("refresh_at")?,
        refresh_token_expires_at: row.try_get("refresh_token_expires_at")?,
    })
}
