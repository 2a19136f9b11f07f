//! The audit trail: every token the runtime API handed out (or refused), with the gateway,
//! the caller's identity when it forwarded a JWT, the connection, the outcome and the time;
//! and every change made through the management API, by whom, with the resource before and
//! after (as the API shows it: never a secret). `GET /v1/audit` reads it, newest first, in
//! pages; entries older than CREDMGR_AUDIT_RETENTION are purged in the background.
//!
//! Runtime entries go through [`recorder`] (batched, off the request path); management
//! changes are written by [`changes`] before the answer is sent.

pub mod changes;
pub mod recorder;

use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use credmgr_common::access::Caller;
use serde::{Deserialize, Serialize};

pub use recorder::Recorder;

use crate::clock::{rfc3339, unix_now};
use crate::error::ApiError;
use crate::extract::checked;
use crate::state::AppState;
use crate::store::{AuditEntry, AuditQuery};

/// How often old entries (and finished webhook deliveries) are purged.
const PURGE_EVERY: Duration = Duration::from_secs(3600);
const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1000;

/// The operations of this module, for the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(list))]
pub struct Api;

pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/audit", get(list))
}

/// An entry as `GET /v1/audit` shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EntryView {
    pub id: i64,
    pub at: String,
    /// `token` (runtime API) or `change` (management API).
    pub kind: String,
    /// The gateway's name, or `admin`.
    pub actor: Option<String>,
    /// The caller's object id (or application id), when the gateway forwarded its JWT.
    pub identity: Option<String>,
    pub issuer: Option<String>,
    pub provider_id: Option<String>,
    pub connection_id: Option<String>,
    /// `token`, or the management call's method and route (`PUT /v1/providers/{provider_id}`).
    pub action: String,
    /// For a token: `hit`, `fetched`, `stale`, or the error code; for a change: the status.
    pub outcome: String,
    /// For a token: its fingerprint (`credmgr_common::runtime::token_fingerprint`) and
    /// expiry; for a change: `before` and `after`.
    #[schema(value_type = Option<Object>)]
    pub detail: Option<serde_json::Value>,
}

impl From<&AuditEntry> for EntryView {
    fn from(e: &AuditEntry) -> Self {
        EntryView {
            id: e.id,
            at: rfc3339(e.at),
            kind: e.kind.clone(),
            actor: e.actor.clone(),
            identity: e.identity.clone(),
            issuer: e.issuer.clone(),
            provider_id: e.provider_id.clone(),
            connection_id: e.connection_id.clone(),
            action: e.action.clone(),
            outcome: e.outcome.clone(),
            detail: e
                .detail
                .as_deref()
                .and_then(|d| serde_json::from_str(d).ok()),
        }
    }
}

/// `GET /v1/audit?provider_id=&connection_id=&identity=&since=&until=&limit=&cursor=`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// Only the entries about this provider (an id, as in the paths).
    #[param(pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")]
    provider_id: Option<String>,
    /// Only the entries about this connection (an id, as in the paths).
    #[param(pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")]
    connection_id: Option<String>,
    /// Only the token entries of this caller (object id or application id; no control
    /// characters).
    identity: Option<String>,
    /// Only the entries from this time on: RFC 3339 (`2026-01-31T12:00:00Z`) or Unix
    /// seconds, inclusive.
    since: Option<String>,
    /// Only the entries up to this time: RFC 3339 or Unix seconds, inclusive.
    until: Option<String>,
    /// Entries per page: 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// A page of audit entries, newest first.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = AuditPage)]
struct Page {
    entries: Vec<EntryView>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

/// Reads the audit trail, newest first, in pages: the tokens the runtime API handed out (or
/// refused) and the changes made through the management API (never a secret).
#[utoipa::path(
    get,
    path = "/v1/audit",
    operation_id = "list_audit_entries",
    tag = "audit",
    params(ListQuery),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "A page of entries", body = Page),
        crate::openapi_answers::AdminErrors,
        crate::openapi_answers::QueryErrors
    )
)]
async fn list(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            format!("`limit` must be from 1 to {MAX_PAGE}"),
        ));
    }
    let before_id = q
        .cursor
        .as_deref()
        .map(|c| {
            c.parse::<i64>().map_err(|_| {
                ApiError::invalid(
                    "cursor",
                    "`cursor` must be a `next_cursor` given by this API",
                )
            })
        })
        .transpose()?;
    // A filter no entry can match is refused rather than sent to the store (PostgreSQL
    // refuses a NUL byte in text: that was a 500).
    if q.identity
        .as_deref()
        .is_some_and(|i| i.chars().any(char::is_control))
    {
        return Err(ApiError::invalid(
            "identity",
            "`identity` must not contain control characters",
        ));
    }
    let query = AuditQuery {
        provider_id: q
            .provider_id
            .map(|p| checked("provider_id", p))
            .transpose()?,
        connection_id: q
            .connection_id
            .map(|c| checked("connection_id", c))
            .transpose()?,
        identity: q.identity,
        since: q
            .since
            .as_deref()
            .map(|t| parse_time("since", t))
            .transpose()?,
        until: q
            .until
            .as_deref()
            .map(|t| parse_time("until", t))
            .transpose()?,
        before_id,
        limit: limit.saturating_add(1),
    };
    let mut found = state.store.query_audit(&query).await?;
    let more = found.len() > limit as usize;
    found.truncate(limit as usize);
    let next_cursor = found.last().filter(|_| more).map(|e| e.id.to_string());
    Ok(Json(Page {
        entries: found.iter().map(EntryView::from).collect(),
        next_cursor,
    })
    .into_response())
}

/// RFC 3339 (`2026-12-03T17:00:00Z`) or Unix seconds.
fn parse_time(field: &str, text: &str) -> Result<i64, ApiError> {
    if let Ok(secs) = text.parse::<i64>() {
        return Ok(secs);
    }
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|_| {
            ApiError::invalid(
                field,
                format!(
                    "`{field}` must be an RFC 3339 time (2026-01-31T12:00:00Z) or Unix seconds"
                ),
            )
        })
}

/// The runtime API's entry for one token request.
pub fn token_entry(
    gateway: &str,
    caller: Option<&Caller>,
    provider_id: &str,
    connection_id: &str,
    outcome: &str,
    detail: Option<serde_json::Value>,
) -> AuditEntry {
    let (identity, issuer) = match caller {
        Some(Caller::Jwt(id)) => (
            id.object_id.clone().or_else(|| id.application_id.clone()),
            Some(id.issuer.clone()),
        ),
        _ => (None, None),
    };
    AuditEntry {
        id: 0,
        at: unix_now(),
        kind: "token".into(),
        actor: Some(gateway.to_owned()),
        identity,
        issuer,
        provider_id: Some(provider_id.to_owned()),
        connection_id: Some(connection_id.to_owned()),
        action: "token".into(),
        outcome: outcome.to_owned(),
        detail: detail.map(|d| d.to_string()),
    }
}

/// Purges audit entries older than `retention`, and finished webhook deliveries as old, every
/// hour (and once at start).
pub fn spawn_purger(state: AppState, retention: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(PURGE_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let keep = i64::try_from(retention.as_secs()).unwrap_or(i64::MAX);
            let cutoff = unix_now().saturating_sub(keep);
            match state.store.purge_audit(cutoff).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(entries = n, "audit: entries past the retention purged"),
                Err(e) => tracing::warn!(error = %e, "audit: cannot purge old entries"),
            }
            if let Err(e) = state.store.purge_deliveries(cutoff).await {
                tracing::warn!(error = %e, "webhooks: cannot purge old deliveries");
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_rfc3339_or_seconds() {
        assert_eq!(parse_time("since", "60").ok(), Some(60));
        assert_eq!(parse_time("since", "1970-01-01T00:01:00Z").ok(), Some(60));
        assert!(parse_time("since", "yesterday").is_err());
    }
}
