//! The column lists, and turning a row of either database into a record.
//!
//! The two schemas have the same tables and columns (TEXT, BLOB/BYTEA, INTEGER/BIGINT, JSON as
//! TEXT), so a row decodes the same way from either. [`Columns`] is the little that differs:
//! how a typed value is read from a SQLite or a PostgreSQL row.

use std::str::FromStr;

use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::Row as _;

use super::{
    ConnectionRecord, ConsentState, EnvelopeField, LinkUser, LoginLink, ProviderRecord,
    RuntimeView, StoreError, StoredEnvelope, TokenRecord, TokenSchedule,
};
use crate::connection_template::ConnectionTemplate;
use crate::crypto::Envelope;

/// A provider's columns that a replace writes, in the order they are bound.
macro_rules! provider_settings {
    () => {
        "display_name, identity_provider, grant_type, client_id, client_secret, token_url, \
         scopes, token_endpoint_auth_method, token_params, updated_at, authorization_url, \
         refresh_url, issuer, authorize_params, allowed_redirect_urls, etag, preset_parameters, \
         self_service"
    };
}

pub(super) const PROVIDER_SETTINGS: &str = provider_settings!();

pub(super) const PROVIDER_COLUMNS: &str = concat!("id, created_at, ", provider_settings!());

pub(super) const CONNECTION_SELECT: &str = "SELECT c.provider_id, c.id, c.display_name, \
     c.client_id, c.client_secret, c.status, c.error_code, c.error_message, c.token_generation, \
     c.last_refresh_at, c.created_at, c.updated_at, c.etag, t.expires_at AS token_expires_at, \
     t.refresh_token_expires_at \
     FROM connections c LEFT JOIN tokens t \
     ON t.provider_id = c.provider_id AND t.connection_id = c.id";

pub(super) const TOKEN_COLUMNS: &str =
    "access_token, refresh_token, token_type, claims, obtained_at, expires_at, refresh_at, \
     refresh_token_expires_at";

/// The one query of a runtime token request ([`super::Store::runtime_view`]): does the
/// provider exist (a row), does the connection (`connection_id`), its access policies
/// (`policies`: their `identity` JSON objects joined by commas, by id), its token, and the
/// provider's self-service template. Binds:
/// the provider id, then the connection id.
/// (`string_agg` with `ORDER BY`: PostgreSQL, and SQLite since 3.44; sqlx bundles 3.46.)
pub(super) const RUNTIME_SELECT: &str = "SELECT c.id AS connection_id, p.self_service, \
     (SELECT string_agg(a.identity, ',' ORDER BY a.id) FROM access_policies a \
      WHERE a.provider_id = c.provider_id AND a.connection_id = c.id) AS policies, \
     t.access_token, t.refresh_token, t.token_type, t.claims, t.obtained_at, \
     t.expires_at, t.refresh_at, t.refresh_token_expires_at \
     FROM providers p \
     LEFT JOIN connections c ON c.provider_id = p.id AND c.id = $2 \
     LEFT JOIN tokens t ON t.provider_id = c.provider_id AND t.connection_id = c.id \
     WHERE p.id = $1";

/// The row of [`RUNTIME_SELECT`] (no row: [`RuntimeView::NoProvider`]).
pub(super) fn runtime_view_from_row(row: &dyn Columns) -> Result<RuntimeView, StoreError> {
    let self_service = self_service_from(row)?;
    if row.opt_text("connection_id")?.is_none() {
        return Ok(RuntimeView::NoConnection { self_service });
    }
    let policies = match row.opt_text("policies")? {
        Some(joined) => from_json("policies", &format!("[{joined}]"))?,
        None => Vec::new(),
    };
    let token = match row.opt_bytes("access_token")? {
        Some(_) => Some(token_from_row(row)?),
        None => None,
    };
    Ok(RuntimeView::Connection {
        self_service,
        policies,
        token,
    })
}

/// The `self_service` column: a template, or NULL.
fn self_service_from(row: &dyn Columns) -> Result<Option<ConnectionTemplate>, StoreError> {
    row.opt_text("self_service")?
        .map(|t| from_json("self_service", &t))
        .transpose()
}

pub(super) const LINK_COLUMNS: &str = "id_hash, provider_id, connection_id, redirect_url, \
     created_at, expires_at, used_at, made_for_issuer, made_for_object_id";

pub(super) const CONSENT_COLUMNS: &str = "state_hash, browser_hash, provider_id, connection_id, \
     redirect_url, code_verifier, token_generation, expires_at";

pub(super) const SCHEDULE_COLUMNS: &str =
    "provider_id, connection_id, obtained_at, expires_at, refresh_at";

pub(super) const ENVELOPE_FIELDS: [EnvelopeField; 6] = [
    EnvelopeField::ProviderClientSecret,
    EnvelopeField::ConnectionClientSecret,
    EnvelopeField::AccessToken,
    EnvelopeField::RefreshToken,
    EnvelopeField::CodeVerifier,
    EnvelopeField::WebhookSecret,
];

/// Table, column and key columns of each kind of envelope.
pub(super) fn envelope_location(
    field: EnvelopeField,
) -> (&'static str, &'static str, &'static str) {
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
        EnvelopeField::WebhookSecret => ("webhooks", "secret", "id AS provider_id"),
    }
}

/// Typed reads of a row's columns, for either database.
pub(super) trait Columns {
    fn text(&self, column: &str) -> Result<String, sqlx::Error>;
    fn opt_text(&self, column: &str) -> Result<Option<String>, sqlx::Error>;
    fn int(&self, column: &str) -> Result<i64, sqlx::Error>;
    fn opt_int(&self, column: &str) -> Result<Option<i64>, sqlx::Error>;
    fn bytes(&self, column: &str) -> Result<Vec<u8>, sqlx::Error>;
    fn opt_bytes(&self, column: &str) -> Result<Option<Vec<u8>>, sqlx::Error>;
}

macro_rules! columns_for {
    ($row:ty) => {
        impl Columns for $row {
            fn text(&self, column: &str) -> Result<String, sqlx::Error> {
                self.try_get(column)
            }
            fn opt_text(&self, column: &str) -> Result<Option<String>, sqlx::Error> {
                self.try_get(column)
            }
            fn int(&self, column: &str) -> Result<i64, sqlx::Error> {
                self.try_get(column)
            }
            fn opt_int(&self, column: &str) -> Result<Option<i64>, sqlx::Error> {
                self.try_get(column)
            }
            fn bytes(&self, column: &str) -> Result<Vec<u8>, sqlx::Error> {
                self.try_get(column)
            }
            fn opt_bytes(&self, column: &str) -> Result<Option<Vec<u8>>, sqlx::Error> {
                self.try_get(column)
            }
        }
    };
}

columns_for!(SqliteRow);
columns_for!(PgRow);

pub(super) fn split_error(e: &Option<(String, String)>) -> (Option<&str>, Option<&str>) {
    match e {
        Some((code, message)) => (Some(code.as_str()), Some(message.as_str())),
        None => (None, None),
    }
}

pub(super) fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(super) fn from_json<T: serde::de::DeserializeOwned>(
    column: &str,
    text: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
}

fn parsed<T: FromStr>(column: &str, text: &str) -> Result<T, StoreError> {
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("{column}: unknown value {text:?}")))
}

fn envelope(column: &str, bytes: &[u8]) -> Result<Envelope, StoreError> {
    Envelope::from_bytes(bytes).map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
}

pub(super) fn provider_from_row(row: &dyn Columns) -> Result<ProviderRecord, StoreError> {
    Ok(ProviderRecord {
        id: row.text("id")?,
        display_name: row.opt_text("display_name")?,
        identity_provider: parsed("identity_provider", &row.text("identity_provider")?)?,
        grant_type: parsed("grant_type", &row.text("grant_type")?)?,
        client_id: row.text("client_id")?,
        client_secret: envelope("client_secret", &row.bytes("client_secret")?)?,
        token_url: row.text("token_url")?,
        scopes: from_json("scopes", &row.text("scopes")?)?,
        token_endpoint_auth_method: parsed(
            "token_endpoint_auth_method",
            &row.text("token_endpoint_auth_method")?,
        )?,
        token_params: from_json("token_params", &row.text("token_params")?)?,
        created_at: row.int("created_at")?,
        updated_at: row.int("updated_at")?,
        authorization_url: row.opt_text("authorization_url")?,
        refresh_url: row.opt_text("refresh_url")?,
        issuer: row.opt_text("issuer")?,
        authorize_params: from_json("authorize_params", &row.text("authorize_params")?)?,
        allowed_redirect_urls: from_json(
            "allowed_redirect_urls",
            &row.text("allowed_redirect_urls")?,
        )?,
        etag: row.text("etag")?,
        parameters: from_json("preset_parameters", &row.text("preset_parameters")?)?,
        self_service: self_service_from(row)?,
    })
}

pub(super) fn connection_from_row(row: &dyn Columns) -> Result<ConnectionRecord, StoreError> {
    let code = row.opt_text("error_code")?;
    let message = row.opt_text("error_message")?;
    let secret = row.opt_bytes("client_secret")?;
    Ok(ConnectionRecord {
        provider_id: row.text("provider_id")?,
        id: row.text("id")?,
        display_name: row.opt_text("display_name")?,
        client_id: row.opt_text("client_id")?,
        client_secret: secret.map(|b| envelope("client_secret", &b)).transpose()?,
        status: parsed("status", &row.text("status")?)?,
        error: code.map(|c| (c, message.unwrap_or_default())),
        token_generation: row.int("token_generation")?,
        last_refresh_at: row.opt_int("last_refresh_at")?,
        etag: row.text("etag")?,
        created_at: row.int("created_at")?,
        updated_at: row.int("updated_at")?,
        token_expires_at: row.opt_int("token_expires_at")?,
        refresh_token_expires_at: row.opt_int("refresh_token_expires_at")?,
    })
}

pub(super) fn token_from_row(row: &dyn Columns) -> Result<TokenRecord, StoreError> {
    Ok(TokenRecord {
        access_token: envelope("access_token", &row.bytes("access_token")?)?,
        refresh_token: row
            .opt_bytes("refresh_token")?
            .map(|b| envelope("refresh_token", &b))
            .transpose()?,
        token_type: row.text("token_type")?,
        claims: from_json("claims", &row.text("claims")?)?,
        obtained_at: row.int("obtained_at")?,
        expires_at: row.int("expires_at")?,
        refresh_at: row.int("refresh_at")?,
        refresh_token_expires_at: row.opt_int("refresh_token_expires_at")?,
    })
}

pub(super) fn link_from_row(row: &dyn Columns) -> Result<LoginLink, StoreError> {
    Ok(LoginLink {
        id_hash: row.bytes("id_hash")?,
        provider_id: row.text("provider_id")?,
        connection_id: row.text("connection_id")?,
        redirect_url: row.text("redirect_url")?,
        created_at: row.int("created_at")?,
        expires_at: row.int("expires_at")?,
        used_at: row.opt_int("used_at")?,
        made_for: match (
            row.opt_text("made_for_issuer")?,
            row.opt_text("made_for_object_id")?,
        ) {
            (Some(issuer), Some(object_id)) => Some(LinkUser { issuer, object_id }),
            _ => None,
        },
    })
}

pub(super) fn consent_from_row(row: &dyn Columns) -> Result<ConsentState, StoreError> {
    Ok(ConsentState {
        state_hash: row.bytes("state_hash")?,
        browser_hash: row.bytes("browser_hash")?,
        provider_id: row.text("provider_id")?,
        connection_id: row.text("connection_id")?,
        redirect_url: row.text("redirect_url")?,
        code_verifier: envelope("code_verifier", &row.bytes("code_verifier")?)?,
        token_generation: row.int("token_generation")?,
        expires_at: row.int("expires_at")?,
    })
}

pub(super) fn schedule_from_row(row: &dyn Columns) -> Result<TokenSchedule, StoreError> {
    Ok(TokenSchedule {
        provider_id: row.text("provider_id")?,
        connection_id: row.text("connection_id")?,
        obtained_at: row.int("obtained_at")?,
        expires_at: row.int("expires_at")?,
        refresh_at: row.int("refresh_at")?,
    })
}

/// The query that lists the envelopes of one kind, with their keys (`env`: the envelope).
pub(super) fn envelope_select(field: EnvelopeField) -> String {
    let (table, column, keys) = envelope_location(field);
    format!("SELECT {keys}, {column} AS env FROM {table} WHERE {column} IS NOT NULL")
}

/// One row of [`envelope_select`].
pub(super) fn stored_envelope_from_row(
    field: EnvelopeField,
    row: &dyn Columns,
) -> Result<StoredEnvelope, StoreError> {
    let (_, column, _) = envelope_location(field);
    Ok(StoredEnvelope {
        field,
        provider_id: row.text("provider_id")?,
        connection_id: match field {
            EnvelopeField::ProviderClientSecret
            | EnvelopeField::CodeVerifier
            | EnvelopeField::WebhookSecret => String::new(),
            EnvelopeField::ConnectionClientSecret => row.text("id")?,
            EnvelopeField::AccessToken | EnvelopeField::RefreshToken => {
                row.text("connection_id")?
            }
        },
        state_hash: match field {
            EnvelopeField::CodeVerifier => row.bytes("state_hash")?,
            _ => Vec::new(),
        },
        envelope: envelope(column, &row.bytes("env")?)?,
    })
}

/// The `UPDATE` that replaces one envelope, found by its keys and its current value (a
/// compare-and-swap). Binds: the new value, [`envelope_keys`], the old value.
pub(super) fn envelope_update(field: EnvelopeField) -> String {
    let (table, column, _) = envelope_location(field);
    let keys: &[&str] = match field {
        EnvelopeField::ProviderClientSecret | EnvelopeField::WebhookSecret => &["id"],
        EnvelopeField::ConnectionClientSecret => &["provider_id", "id"],
        EnvelopeField::AccessToken | EnvelopeField::RefreshToken => {
            &["provider_id", "connection_id"]
        }
        EnvelopeField::CodeVerifier => &["state_hash"],
    };
    let mut sql = format!("UPDATE {table} SET {column} = $1 WHERE ");
    for (i, key) in keys.iter().enumerate() {
        sql.push_str(&format!("{key} = ${} AND ", i + 2));
    }
    sql.push_str(&format!("{column} = ${}", keys.len() + 2));
    sql
}

pub(super) const ISSUER_COLUMNS: &str = "id, display_name, issuer, audiences, jwks_uri, jwks, \
     claims, leeway_seconds, etag, created_at, updated_at";

pub(super) const POLICY_COLUMNS: &str =
    "provider_id, connection_id, id, display_name, identity, etag, created_at, updated_at";

pub(super) fn issuer_from_row(row: &dyn Columns) -> Result<super::IssuerRecord, StoreError> {
    Ok(super::IssuerRecord {
        id: row.text("id")?,
        display_name: row.opt_text("display_name")?,
        issuer: row.text("issuer")?,
        audiences: from_json("audiences", &row.text("audiences")?)?,
        jwks_uri: row.opt_text("jwks_uri")?,
        jwks: row
            .opt_text("jwks")?
            .map(|j| from_json("jwks", &j))
            .transpose()?,
        claims: from_json("claims", &row.text("claims")?)?,
        leeway_seconds: row.int("leeway_seconds")?,
        etag: row.text("etag")?,
        created_at: row.int("created_at")?,
        updated_at: row.int("updated_at")?,
    })
}

pub(super) fn policy_from_row(row: &dyn Columns) -> Result<super::PolicyRecord, StoreError> {
    Ok(super::PolicyRecord {
        provider_id: row.text("provider_id")?,
        connection_id: row.text("connection_id")?,
        id: row.text("id")?,
        display_name: row.opt_text("display_name")?,
        identity: from_json("identity", &row.text("identity")?)?,
        etag: row.text("etag")?,
        created_at: row.int("created_at")?,
        updated_at: row.int("updated_at")?,
    })
}
