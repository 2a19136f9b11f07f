//! Connections: one set of tokens obtained through a provider. Management API under
//! `/v1/providers/{provider_id}/connections`.
//!
//! A client-credentials connection is connected as soon as a token can be fetched, so
//! creating one (or changing its credentials) fetches a token right away and records the
//! outcome on the connection; the request succeeds either way.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::clock::{rfc3339, unix_now};
use crate::crypto::{Aad, Envelope};
use crate::domain::ConnectionStatus;
use crate::error::ApiError;
use crate::etag::{self, IfMatch};
use crate::extract::{checked, ApiJson, ConnectionPath, ProviderPath};
use crate::providers::{self, validate_client_id, validate_client_secret, SecretState};
use crate::state::AppState;
use crate::store::{new_etag, ConnectionRecord};

/// Body of `PUT /v1/providers/{provider_id}/connections/{connection_id}`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectionBody {
    #[serde(default)]
    display_name: Option<String>,
    /// Overrides the provider's client id; needs `client_secret` unless the connection has
    /// its own secret already.
    #[serde(default)]
    client_id: Option<String>,
    /// Write-only. Overrides the provider's client secret, together with `client_id`.
    #[serde(default)]
    #[schema(value_type = Option<String>, format = Password, write_only)]
    client_secret: Option<SecretString>,
}

/// A connection as the API shows it. Never its tokens or secret.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConnectionView {
    pub id: String,
    pub provider_id: String,
    pub display_name: Option<String>,
    /// The connection's own client id, or null when it uses the provider's.
    pub client_id: Option<String>,
    pub client_secret: SecretState,
    pub status: ConnectionStatus,
    pub error: Option<ErrorView>,
    pub token_expires_at: Option<String>,
    /// When the refresh token expires, if the provider said (after that a user must consent
    /// again).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token_expires_at: Option<String>,
    pub last_refresh_at: Option<String>,
    /// The `ETag` of this connection's configuration, for `If-Match`.
    pub etag: String,
    pub created_at: String,
    pub updated_at: String,
}

/// The last failure to obtain a token.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorView {
    pub code: String,
    pub message: String,
}

impl From<&ConnectionRecord> for ConnectionView {
    fn from(c: &ConnectionRecord) -> Self {
        ConnectionView {
            id: c.id.clone(),
            provider_id: c.provider_id.clone(),
            display_name: c.display_name.clone(),
            client_id: c.client_id.clone(),
            client_secret: SecretState {
                set: c.client_secret.is_some(),
            },
            status: c.status,
            error: c.error.as_ref().map(|(code, message)| ErrorView {
                code: code.clone(),
                message: message.clone(),
            }),
            token_expires_at: c.token_expires_at.map(rfc3339),
            refresh_token_expires_at: c.refresh_token_expires_at.map(rfc3339),
            last_refresh_at: c.last_refresh_at.map(rfc3339),
            etag: c.etag.clone(),
            created_at: rfc3339(c.created_at),
            updated_at: rfc3339(c.updated_at),
        }
    }
}

/// The operations of this module, for the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(list, show, put, delete))]
pub struct Api;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/providers/{provider_id}/connections", get(list))
        .route(
            "/v1/providers/{provider_id}/connections/{connection_id}",
            get(show).put(put).delete(delete),
        )
}

/// Page size of the connection list when the request names none.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
/// Largest page of the connection list a request may ask for.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// `GET .../connections?limit=N&after=ID`: a page in id order.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// Kept as text so that a bad value is answered naming `limit`.
    limit: Option<String>,
    /// The last id of the previous page.
    after: Option<String>,
}

/// One page of a provider's connections, in id order, at most `limit` (default
/// [`DEFAULT_PAGE_SIZE`]). When more follow, a `Link: <...?limit=N&after=ID>; rel="next"`
/// header (RFC 8288) names the next page; the last page has none. Paging by the last id seen
/// (not by an offset) means connections created or deleted meanwhile never shift a page.
#[utoipa::path(
    get,
    path = "/v1/providers/{provider_id}/connections",
    operation_id = "list_connections",
    tag = "connections",
    params(
        crate::extract::RawProviderPath,
        (
            "limit" = Option<u32>,
            Query,
            minimum = 1,
            maximum = 1000,
            description = "Page size (default 100)"
        ),
        (
            "after" = Option<String>,
            Query,
            pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$",
            description = "The last id of the previous page"
        )
    ),
    security(("admin_token" = [])),
    responses(
        (
            status = 200,
            description = "A page of connections, in id order",
            body = Vec<ConnectionView>,
            headers(
                (
                    "Link" = String,
                    description = "`<...?limit=N&after=ID>; rel=\"next\"` while more follow"
                )
            )
        ),
        crate::openapi_answers::AdminErrors,
        crate::openapi_answers::LookupErrors
    )
)]
async fn list(
    State(state): State<AppState>,
    path: ProviderPath,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let limit = match query.limit.as_deref() {
        None => DEFAULT_PAGE_SIZE,
        Some(raw) => raw
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_PAGE_SIZE).contains(n))
            .ok_or_else(|| {
                ApiError::invalid(
                    "limit",
                    format!("`limit` must be a whole number from 1 to {MAX_PAGE_SIZE}"),
                )
            })?,
    };
    let after = query.after.map(|a| checked("after", a)).transpose()?;
    providers::find(&state, &path.provider_id).await?;
    // One more than asked says whether another page follows.
    let mut page = state
        .store
        .list_connections_page(&path.provider_id, after.as_deref(), limit.saturating_add(1))
        .await?;
    let more = page.len() > limit as usize;
    page.truncate(limit as usize);
    let body = Json(page.iter().map(ConnectionView::from).collect::<Vec<_>>());
    match page.last().filter(|_| more) {
        // Ids need no escaping in a URL (`credmgr_common::ids`).
        Some(last) => {
            let next = format!(
                "</v1/providers/{}/connections?limit={limit}&after={}>; rel=\"next\"",
                path.provider_id, last.id
            );
            Ok(([(header::LINK, next)], body).into_response())
        }
        None => Ok(body.into_response()),
    }
}

/// Reads a connection: its status, last error and token expiry (never its tokens).
#[utoipa::path(
    get,
    path = "/v1/providers/{provider_id}/connections/{connection_id}",
    operation_id = "get_connection",
    tag = "connections",
    params(crate::extract::RawConnectionPath),
    security(("admin_token" = [])),
    responses(
        (
            status = 200,
            description = "The connection",
            body = ConnectionView,
            headers(("ETag" = String, description = "The resource's version, for `If-Match`"))
        ),
        crate::openapi_answers::AdminErrors,
        crate::openapi_answers::LookupErrors
    )
)]
async fn show(State(state): State<AppState>, path: ConnectionPath) -> Result<Response, ApiError> {
    let c = find(&state, &path).await?;
    Ok(etag::respond(
        StatusCode::OK,
        &c.etag,
        ConnectionView::from(&c),
    ))
}

/// Loads a connection (after its provider) or answers 404.
pub async fn find(state: &AppState, path: &ConnectionPath) -> Result<ConnectionRecord, ApiError> {
    providers::find(state, &path.provider_id).await?;
    state
        .store
        .get_connection(&path.provider_id, &path.connection_id)
        .await?
        .ok_or_else(|| not_found(path))
}

/// The answer for a connection that does not exist (under a provider that does).
pub fn not_found(path: &ConnectionPath) -> ApiError {
    ApiError::NotFound(format!(
        "connection `{}` of provider `{}` does not exist",
        path.connection_id, path.provider_id
    ))
}

/// The connection's own client credentials after a PUT, and whether they changed.
struct Credentials {
    client_id: Option<String>,
    client_secret: Option<Envelope>,
    changed: bool,
}

fn credentials(
    state: &AppState,
    path: &ConnectionPath,
    body: &ConnectionBody,
    existing: Option<&ConnectionRecord>,
) -> Result<Credentials, ApiError> {
    let old_id = existing.and_then(|c| c.client_id.clone());
    match (&body.client_id, &body.client_secret) {
        (Some(id), Some(secret)) => {
            validate_client_id("client_id", id)?;
            validate_client_secret("client_secret", secret)?;
            let aad = Aad::connection_client_secret(&path.provider_id, &path.connection_id);
            let plaintext = secret.expose_secret().as_bytes();
            // Re-sending the same credentials is not a change. A stored secret that cannot be
            // decrypted any more counts as changed: replacing it is how to recover.
            let same_secret = existing
                .and_then(|c| c.client_secret.as_ref())
                .is_some_and(|old| state.keyring.holds(&aad, old, plaintext).unwrap_or(false));
            Ok(Credentials {
                changed: !same_secret || old_id.as_deref() != Some(id.as_str()),
                client_id: Some(id.clone()),
                client_secret: Some(state.keyring.encrypt(&aad, plaintext)?),
            })
        }
        (Some(id), None) => {
            validate_client_id("client_id", id)?;
            let old_secret = existing.and_then(|c| c.client_secret.clone());
            match old_secret {
                Some(secret) => Ok(Credentials {
                    changed: old_id.as_deref() != Some(id.as_str()),
                    client_id: Some(id.clone()),
                    client_secret: Some(secret),
                }),
                None => Err(ApiError::invalid(
                    "client_secret",
                    "`client_secret` is required with `client_id`: the connection has no \
                     client secret of its own yet",
                )),
            }
        }
        (None, Some(_)) => Err(ApiError::invalid(
            "client_id",
            "`client_id` is required with `client_secret`: a connection overrides both of \
             the provider's client credentials or neither",
        )),
        (None, None) => Ok(Credentials {
            client_id: None,
            client_secret: None,
            changed: old_id.is_some(),
        }),
    }
}

/// Creates or replaces a connection. A client-credentials connection fetches its first
/// token at once and reports the outcome in `status` and `error` (the call succeeds either
/// way); an authorization-code one starts `not_connected` until a user consents.
#[utoipa::path(
    put,
    path = "/v1/providers/{provider_id}/connections/{connection_id}",
    operation_id = "put_connection",
    tag = "connections",
    params(crate::extract::RawConnectionPath, crate::etag::IfMatchParam),
    request_body = ConnectionBody,
    security(("admin_token" = [])),
    responses(
        (
            status = 200,
            description = "Replaced",
            body = ConnectionView,
            headers(("ETag" = String, description = "The resource's version, for `If-Match`"))
        ),
        (
            status = 201,
            description = "Created",
            body = ConnectionView,
            headers(("ETag" = String, description = "The resource's version, for `If-Match`"))
        ),
        crate::openapi_answers::AdminErrors,
        crate::openapi_answers::LookupErrors,
        crate::openapi_answers::WriteErrors
    )
)]
async fn put(
    State(state): State<AppState>,
    path: ConnectionPath,
    headers: HeaderMap,
    ApiJson(body): ApiJson<ConnectionBody>,
) -> Result<Response, ApiError> {
    let if_match = IfMatch::from_headers(&headers)?;
    providers::validate_display_name(&body.display_name)?;
    let provider = providers::find(&state, &path.provider_id).await?;
    if provider.grant_type.needs_consent() && body.client_id.is_some() {
        return Err(ApiError::invalid(
            "client_id",
            "only connections of client-credentials providers can override the client \
             credentials",
        ));
    }
    let (p, c) = (&path.provider_id, &path.connection_id);
    let existing = state.store.get_connection(p, c).await?;
    let what = format!("connection `{c}` of provider `{p}`");
    if_match.check(existing.as_ref().map(|c| c.etag.as_str()), &what)?;
    let creds = credentials(&state, &path, &body, existing.as_ref())?;
    let now = unix_now();
    let (status, fetch) = match existing {
        None => {
            // What to do next, for connections that only a user's consent connects.
            let error = provider
                .grant_type
                .needs_consent()
                .then(|| crate::error::consent_required_error(&path.key()));
            let record = ConnectionRecord {
                client_id: creds.client_id,
                client_secret: creds.client_secret,
                ..ConnectionRecord::new(p, c, body.display_name, error, now)
            };
            if !state.store.insert_connection(&record).await? {
                if if_match.is_present() {
                    return Err(etag::stale(&what));
                }
                return Err(ApiError::Conflict(format!(
                    "connection `{c}` was created by another request at the same time; retry"
                )));
            }
            tracing::info!(provider = %p, connection = %c, "connection created");
            (StatusCode::CREATED, true)
        }
        Some(old) => {
            let fetch = creds.changed || old.status != ConnectionStatus::Connected;
            let expected = old.etag.clone();
            let record = ConnectionRecord {
                display_name: body.display_name,
                client_id: creds.client_id,
                client_secret: creds.client_secret,
                updated_at: now,
                etag: new_etag(),
                ..old
            };
            if !state
                .store
                .replace_connection(&record, creds.changed, &expected)
                .await?
            {
                return Err(if if_match.is_present() {
                    etag::stale(&what)
                } else {
                    ApiError::Conflict(format!(
                        "{what} was changed by another request at the same time; retry"
                    ))
                });
            }
            tracing::info!(
                provider = %p, connection = %c, credentials_changed = creds.changed,
                "connection replaced"
            );
            (StatusCode::OK, fetch)
        }
    };
    if fetch && !provider.grant_type.needs_consent() {
        state.tokens.connect(&path.key()).await?;
    }
    let stored = state
        .store
        .get_connection(p, c)
        .await?
        .ok_or_else(|| not_found(&path))?;
    Ok(etag::respond(
        status,
        &stored.etag,
        ConnectionView::from(&stored),
    ))
}

/// Deletes a connection with its tokens and access policies.
#[utoipa::path(
    delete,
    path = "/v1/providers/{provider_id}/connections/{connection_id}",
    operation_id = "delete_connection",
    tag = "connections",
    params(crate::extract::RawConnectionPath, crate::etag::IfMatchParam),
    security(("admin_token" = [])),
    responses(
        (status = 204, description = "Deleted"),
        crate::openapi_answers::AdminErrors,
        crate::openapi_answers::LookupErrors,
        crate::openapi_answers::DeleteErrors
    )
)]
async fn delete(
    State(state): State<AppState>,
    path: ConnectionPath,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let if_match = IfMatch::from_headers(&headers)?;
    let current = find(&state, &path).await?;
    let what = format!(
        "connection `{}` of provider `{}`",
        path.connection_id, path.provider_id
    );
    if_match.check(Some(&current.etag), &what)?;
    let expected = if_match.is_present().then_some(current.etag.as_str());
    if !state
        .store
        .delete_connection(&path.provider_id, &path.connection_id, expected)
        .await?
    {
        return Err(if if_match.is_present() {
            etag::stale(&what)
        } else {
            not_found(&path)
        });
    }
    tracing::info!(
        provider = %path.provider_id, connection = %path.connection_id,
        "connection deleted with its token"
    );
    Ok(StatusCode::NO_CONTENT)
}
