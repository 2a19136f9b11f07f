//! Webhooks: endpoints that hear about connection events. Management API under
//! `/v1/webhooks` (ETags and `If-Match` as the other resources; the signing secret is
//! write-only, encrypted at rest like client secrets), and `GET /v1/webhooks/{id}/deliveries`.
//!
//! Events are written to an outbox by the store in the transaction of the change that caused
//! them; [`worker`] delivers them, signed ([`signature`]), at least once.

pub mod settings;
pub mod signature;
pub mod worker;

use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};

pub use settings::Settings;

use crate::clock::{rfc3339, unix_now};
use crate::crypto::Aad;
use crate::error::ApiError;
use crate::etag::{self, IfMatch};
use crate::events::EventType;
use crate::extract::{checked, path_error, ApiJson};
use crate::providers::SecretState;
use crate::state::AppState;
use crate::store::{new_etag, DeliveryRecord, WebhookRecord};

/// Shortest signing key accepted, in bytes (Standard Webhooks: 24 to 64).
const MIN_KEY_BYTES: usize = 24;
const MAX_KEY_BYTES: usize = 64;
/// Longest receiver URL.
const MAX_URL_LEN: usize = 2048;

/// The operations of this module, for the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(list, show, put, delete, deliveries))]
pub struct Api;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/webhooks", get(list))
        .route(
            "/v1/webhooks/{webhook_id}",
            get(show).put(put).delete(delete),
        )
        .route("/v1/webhooks/{webhook_id}/deliveries", get(deliveries))
}

/// Body of `PUT /v1/webhooks/{webhook_id}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookBody {
    /// Where events are POSTed: `https://`, or `http://` on the loopback interface when
    /// CREDMGR_WEBHOOK_ALLOW_LOOPBACK_HTTP is on.
    url: String,
    /// Write-only. `whsec_` and the base64 of 24 to 64 random bytes (as Standard Webhooks),
    /// or any text of 24 to 64 bytes. Required when the webhook is created; kept when omitted.
    #[serde(default)]
    #[schema(value_type = Option<String>, format = Password, write_only)]
    secret: Option<SecretString>,
    /// The event types to send (at least one).
    #[schema(value_type = Vec<EventType>)]
    events: Vec<String>,
    #[serde(default)]
    description: Option<String>,
    /// Whether events are sent to it (default `true`).
    #[serde(default = "yes")]
    enabled: bool,
}

fn yes() -> bool {
    true
}

/// A webhook as the API shows it: never its secret.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WebhookView {
    pub id: String,
    pub url: String,
    pub secret: SecretState,
    pub events: Vec<EventType>,
    pub description: Option<String>,
    pub enabled: bool,
    pub etag: String,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&WebhookRecord> for WebhookView {
    fn from(w: &WebhookRecord) -> Self {
        WebhookView {
            id: w.id.clone(),
            url: w.url.clone(),
            secret: SecretState { set: true },
            events: w.events.clone(),
            description: w.description.clone(),
            enabled: w.enabled,
            etag: w.etag.clone(),
            created_at: rfc3339(w.created_at),
            updated_at: rfc3339(w.updated_at),
        }
    }
}

/// One delivery, as `GET /v1/webhooks/{id}/deliveries` shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeliveryView {
    pub event_id: String,
    pub event_type: String,
    /// `pending` (an attempt is due at `next_attempt_at`), `delivered`, or `failed` (no more
    /// attempts).
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at: Option<String>,
    pub last_attempt_at: Option<String>,
    /// The receiver's HTTP status in the last attempt, if it answered.
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub delivered_at: Option<String>,
    pub created_at: String,
}

impl From<&DeliveryRecord> for DeliveryView {
    fn from(d: &DeliveryRecord) -> Self {
        DeliveryView {
            event_id: d.event_id.clone(),
            event_type: d.event_type.clone(),
            state: d.state.clone(),
            attempts: d.attempts,
            next_attempt_at: d.next_attempt_at.map(rfc3339),
            last_attempt_at: d.last_attempt_at.map(rfc3339),
            last_status: d.last_status,
            last_error: d.last_error.clone(),
            delivered_at: d.delivered_at.map(rfc3339),
            created_at: rfc3339(d.created_at),
        }
    }
}

/// `/v1/webhooks/{webhook_id}`, with the id validated.
pub struct WebhookPath {
    pub webhook_id: String,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct RawWebhookPath {
    /// The webhook's id: ASCII letters, digits, `-`, `_`, `.`; 1 to 64, not starting with `.`.
    #[param(pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")]
    webhook_id: String,
}

impl<S: Send + Sync> FromRequestParts<S> for WebhookPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<RawWebhookPath>::from_request_parts(parts, state)
            .await
            .map_err(path_error)?;
        Ok(WebhookPath {
            webhook_id: checked("webhook_id", raw.webhook_id)?,
        })
    }
}

/// Lists the webhooks (never their secrets).
#[utoipa::path(
    get,
    path = "/v1/webhooks",
    operation_id = "list_webhooks",
    tag = "webhooks",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The webhooks", body = Vec<WebhookView>),
        crate::openapi_answers::AdminErrors
    )
)]
async fn list(State(state): State<AppState>) -> Result<Json<Vec<WebhookView>>, ApiError> {
    let all = state.store.list_webhooks().await?;
    Ok(Json(all.iter().map(WebhookView::from).collect()))
}

/// Reads a webhook (never its secret).
#[utoipa::path(
    get,
    path = "/v1/webhooks/{webhook_id}",
    operation_id = "get_webhook",
    tag = "webhooks",
    params(RawWebhookPath),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The webhook", body = WebhookView, headers(("ETag" = String, description = "The resource's version, for `If-Match`"))),
        crate::openapi_answers::AdminErrors,
        crate::openapi_answers::LookupErrors
    )
)]
async fn show(State(state): State<AppState>, path: WebhookPath) -> Result<Response, ApiError> {
    let w = find(&state, &path.webhook_id).await?;
    Ok(etag::respond(
        StatusCode::OK,
        &w.etag,
        WebhookView::from(&w),
    ))
}

async fn find(state: &AppState, id: &str) -> Result<WebhookRecord, ApiError> {
    state
        .store
        .get_webhook(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("webhook `{id}` does not exist")))
}

/// Creates or replaces a webhook. `secret` is write-only, required on create, kept when left
/// out on replace.
#[utoipa::path(
    put,
    path = "/v1/webhooks/{webhook_id}",
    operation_id = "put_webhook",
    tag = "webhooks",
    params(RawWebhookPath, crate::etag::IfMatchParam),
    request_body = WebhookBody,
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Replaced", body = WebhookView, headers(("ETag" = String, description = "The resource's version, for `If-Match`"))),
        (status = 201, description = "Created", body = WebhookView, headers(("ETag" = String, description = "The resource's version, for `If-Match`"))),
        crate::openapi_answers::AdminErrors,
        crate::openapi_answers::WriteErrors
    )
)]
async fn put(
    State(state): State<AppState>,
    path: WebhookPath,
    headers: HeaderMap,
    ApiJson(body): ApiJson<WebhookBody>,
) -> Result<Response, ApiError> {
    let if_match = IfMatch::from_headers(&headers)?;
    let id = path.webhook_id;
    let what = format!("webhook `{id}`");
    validate_url(&body.url, state.webhooks.allow_loopback_http)?;
    let events = parse_events(&body.events)?;
    crate::providers::validate_display_name(&body.description).map_err(|_| {
        ApiError::invalid(
            "description",
            "`description` is too long or has control characters",
        )
    })?;
    let existing = state.store.get_webhook(&id).await?;
    if_match.check(existing.as_ref().map(|w| w.etag.as_str()), &what)?;
    let secret = match (&body.secret, &existing) {
        (Some(secret), _) => {
            validate_secret(secret)?;
            state
                .keyring
                .encrypt(&Aad::webhook_secret(&id), secret.expose_secret().as_bytes())
                .map_err(|e| ApiError::Internal(format!("encrypting a webhook secret: {e}")))?
        }
        (None, Some(old)) => old.secret.clone(),
        (None, None) => {
            return Err(ApiError::invalid(
                "secret",
                "a new webhook needs a `secret` (e.g. `whsec_` and the base64 of 32 random \
                 bytes: `echo whsec_$(openssl rand -base64 32)`)",
            ))
        }
    };
    let now = unix_now();
    let record = WebhookRecord {
        id: id.clone(),
        url: body.url,
        secret,
        events,
        description: body.description,
        enabled: body.enabled,
        etag: new_etag(),
        created_at: existing.as_ref().map_or(now, |w| w.created_at),
        updated_at: now,
    };
    let status = match &existing {
        None => {
            if !state.store.insert_webhook(&record).await? {
                return Err(ApiError::Conflict(format!(
                    "{what} was created by another request at the same time; retry"
                )));
            }
            tracing::info!(webhook_id = %id, "webhook created");
            StatusCode::CREATED
        }
        Some(old) => {
            if !state.store.replace_webhook(&record, &old.etag).await? {
                return Err(if if_match.is_present() {
                    etag::stale(&what)
                } else {
                    ApiError::Conflict(format!(
                        "{what} was changed by another request at the same time; retry"
                    ))
                });
            }
            tracing::info!(webhook_id = %id, "webhook replaced");
            StatusCode::OK
        }
    };
    Ok(etag::respond(
        status,
        &record.etag,
        WebhookView::from(&record),
    ))
}

/// Deletes a webhook and its deliveries.
#[utoipa::path(
    delete,
    path = "/v1/webhooks/{webhook_id}",
    operation_id = "delete_webhook",
    tag = "webhooks",
    params(RawWebhookPath, crate::etag::IfMatchParam),
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
    path: WebhookPath,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let if_match = IfMatch::from_headers(&headers)?;
    let current = find(&state, &path.webhook_id).await?;
    let what = format!("webhook `{}`", path.webhook_id);
    if_match.check(Some(&current.etag), &what)?;
    let expected = if_match.is_present().then_some(current.etag.as_str());
    if !state
        .store
        .delete_webhook(&path.webhook_id, expected)
        .await?
    {
        return Err(if if_match.is_present() {
            etag::stale(&what)
        } else {
            ApiError::NotFound(format!("{what} does not exist"))
        });
    }
    tracing::info!(webhook_id = %path.webhook_id, "webhook deleted");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct DeliveriesQuery {
    /// How many deliveries, newest first: 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// The webhook's latest deliveries (default 100, at most 1000), newest first.
#[utoipa::path(
    get,
    path = "/v1/webhooks/{webhook_id}/deliveries",
    operation_id = "list_webhook_deliveries",
    tag = "webhooks",
    params(RawWebhookPath, DeliveriesQuery),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The deliveries, newest first", body = Vec<DeliveryView>),
        crate::openapi_answers::AdminErrors,
        crate::openapi_answers::LookupErrors
    )
)]
async fn deliveries(
    State(state): State<AppState>,
    path: WebhookPath,
    query: Result<Query<DeliveriesQuery>, QueryRejection>,
) -> Result<Json<Vec<DeliveryView>>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit", "`limit` must be from 1 to 1000"));
    }
    find(&state, &path.webhook_id).await?;
    let found = state.store.list_deliveries(&path.webhook_id, limit).await?;
    Ok(Json(found.iter().map(DeliveryView::from).collect()))
}

fn parse_events(names: &[String]) -> Result<Vec<EventType>, ApiError> {
    if names.is_empty() {
        return Err(ApiError::invalid(
            "events",
            "`events` must name at least one event type",
        ));
    }
    let mut events = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let t = name.parse::<EventType>().map_err(|()| {
            let known: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
            ApiError::invalid(
                format!("events[{i}]"),
                format!("unknown event type `{name}`; known: {}", known.join(", ")),
            )
        })?;
        if !events.contains(&t) {
            events.push(t);
        }
    }
    events.sort();
    Ok(events)
}

fn validate_secret(secret: &SecretString) -> Result<(), ApiError> {
    let key = signature::key_bytes(secret.expose_secret()).ok_or_else(|| {
        ApiError::invalid(
            "secret",
            "a `secret` starting with `whsec_` must be base64 after it",
        )
    })?;
    if !(MIN_KEY_BYTES..=MAX_KEY_BYTES).contains(&key.len()) {
        return Err(ApiError::invalid(
            "secret",
            format!("the signing key must be {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// Receivers get `https://` URLs. A plain `http://` one is accepted only on the loopback
/// interface and only when the operator opted in: events travel in the clear otherwise, and
/// their signature proves where they came from but hides nothing.
pub fn validate_url(raw: &str, allow_loopback_http: bool) -> Result<(), ApiError> {
    let bad = |why: &str| ApiError::invalid("url", format!("`url` {why}"));
    if raw.len() > MAX_URL_LEN {
        return Err(bad("is too long"));
    }
    // The URL parser drops tabs and newlines and escapes the rest, but the URL is stored as
    // given: a NUL byte would fail PostgreSQL's insert, and the others hide what is stored.
    if raw.chars().any(char::is_control) {
        return Err(bad("must not contain control characters"));
    }
    let url = url::Url::parse(raw).map_err(|e| bad(&format!("is not a URL: {e}")))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("must not carry credentials"));
    }
    if url.fragment().is_some() {
        return Err(bad("must not have a fragment"));
    }
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => return Err(bad("must name a host")),
    };
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback && allow_loopback_http => Ok(()),
        "http" if loopback => Err(bad(
            "must be https: plain http to the loopback interface needs \
             CREDMGR_WEBHOOK_ALLOW_LOOPBACK_HTTP=true",
        )),
        _ => Err(bad("must be https")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_or_opted_in_loopback_http() {
        assert!(validate_url("https://hooks.example/x", false).is_ok());
        assert!(validate_url("http://hooks.example/x", true).is_err());
        assert!(validate_url("http://127.0.0.1:9/x", false).is_err());
        assert!(validate_url("http://127.0.0.1:9/x", true).is_ok());
        assert!(validate_url("http://[::1]:9/x", true).is_ok());
        assert!(validate_url("https://u:p@hooks.example/", false).is_err());
        assert!(validate_url("ftp://hooks.example/", true).is_err());
        assert!(validate_url("https://hooks.example/a\tb", false).is_err());
    }
}
