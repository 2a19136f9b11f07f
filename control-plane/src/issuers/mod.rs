//! Trusted issuers: the OpenID Connect (or any JWT) issuers whose tokens identify callers
//! (`identity-type: jwt`). Management API under `/v1/trusted-issuers`.
//!
//! An issuer names its `iss`, the audiences a token must be meant for, its keys (a JWKS URI,
//! fetched and cached by [`Registry`], or an inline JWKS), which claims name the caller, and
//! the clock skew allowed. Gateways get all of it from the runtime API and verify callers'
//! JWTs locally; the control plane verifies the same token again before it hands out a
//! connection's token.

mod keys;
pub mod registry;

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use credmgr_common::access::ClaimNames;
use credmgr_common::jwt::TrustedIssuer;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use registry::{KeyStatus, Registry, Snapshot};

use crate::clock::{rfc3339, unix_now};
use crate::error::ApiError;
use crate::etag::{self, IfMatch};
use crate::extract::{checked, path_error, ApiJson};
use crate::providers::{validate_display_name, validate_endpoint};
use crate::state::AppState;
use crate::store::{new_etag, IssuerRecord};

/// Default clock skew allowed on `exp` and `nbf`, seconds.
const DEFAULT_LEEWAY: i64 = 60;
/// Most clock skew an issuer may allow: more would keep expired tokens working for long.
const MAX_LEEWAY: i64 = 300;
/// Most audiences one issuer may list.
const MAX_AUDIENCES: usize = 20;

/// Body of `PUT /v1/trusted-issuers/{issuer_id}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IssuerBody {
    #[serde(default)]
    display_name: Option<String>,
    /// `iss` exactly as the issuer writes it in its tokens.
    issuer: String,
    /// A token must name at least one of these in `aud`.
    audiences: Vec<String>,
    /// Where the issuer publishes its keys (its discovery document's `jwks_uri`).
    #[serde(default)]
    jwks_uri: Option<String>,
    /// Or the keys themselves (public keys only).
    #[serde(default)]
    jwks: Option<Value>,
    #[serde(default)]
    claims: ClaimNames,
    #[serde(default)]
    leeway_seconds: Option<i64>,
}

/// An issuer as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IssuerView {
    pub id: String,
    pub display_name: Option<String>,
    pub issuer: String,
    pub audiences: Vec<String>,
    pub jwks_uri: Option<String>,
    pub jwks: Option<Value>,
    pub claims: ClaimNames,
    pub leeway_seconds: i64,
    /// The keys in use: how many, and for a JWKS URI when they were fetched and the last error.
    pub keys: KeyStatus,
    pub etag: String,
    pub created_at: String,
    pub updated_at: String,
}

fn view(r: &IssuerRecord, keys: KeyStatus) -> IssuerView {
    IssuerView {
        id: r.id.clone(),
        display_name: r.display_name.clone(),
        issuer: r.issuer.clone(),
        audiences: r.audiences.clone(),
        jwks_uri: r.jwks_uri.clone(),
        jwks: r.jwks.clone(),
        claims: r.claims.clone(),
        leeway_seconds: r.leeway_seconds,
        keys,
        etag: r.etag.clone(),
        created_at: rfc3339(r.created_at),
        updated_at: rfc3339(r.updated_at),
    }
}

/// The operations of this module, for the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(list, show, put, delete))]
pub struct Api;

pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/trusted-issuers", get(list)).route(
        "/v1/trusted-issuers/{issuer_id}",
        get(show).put(put).delete(delete),
    )
}

/// `/v1/trusted-issuers/{issuer_id}`, with the id validated.
pub struct IssuerPath {
    pub issuer_id: String,
}

impl<S: Send + Sync> FromRequestParts<S> for IssuerPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(path_error)?;
        Ok(IssuerPath {
            issuer_id: checked("issuer_id", id)?,
        })
    }
}

/// Lists the trusted issuers, with the state of their keys.
#[utoipa::path(
    get,
    path = "/v1/trusted-issuers",
    operation_id = "list_trusted_issuers",
    tag = "trusted issuers",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Every trusted issuer, in id order", body = Vec<IssuerView>),
        crate::openapi_answers::AdminErrors
    )
)]
async fn list(State(state): State<AppState>) -> Result<Json<Vec<IssuerView>>, ApiError> {
    let records = state.store.list_issuers().await?;
    let mut views = Vec::with_capacity(records.len());
    for r in &records {
        views.push(view(r, state.issuers.key_status(r).await));
    }
    Ok(Json(views))
}

/// Reads a trusted issuer.
#[utoipa::path(
    get,
    path = "/v1/trusted-issuers/{issuer_id}",
    operation_id = "get_trusted_issuer",
    tag = "trusted issuers",
    params(
        (
            "issuer_id" = String,
            Path,
            pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$",
            description = "The trusted issuer's id"
        )
    ),
    security(("admin_token" = [])),
    responses(
        (
            status = 200,
            description = "The trusted issuer",
            body = IssuerView,
            headers(("ETag" = String, description = "The resource's version, for `If-Match`"))
        ),
        crate::openapi_answers::AdminErrors,
        crate::openapi_answers::LookupErrors
    )
)]
async fn show(State(state): State<AppState>, path: IssuerPath) -> Result<Response, ApiError> {
    let r = find(&state, &path.issuer_id).await?;
    let keys = state.issuers.key_status(&r).await;
    Ok(etag::respond(StatusCode::OK, &r.etag, view(&r, keys)))
}

async fn find(state: &AppState, id: &str) -> Result<IssuerRecord, ApiError> {
    state
        .store
        .get_issuer(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("trusted issuer `{id}` does not exist")))
}

/// Creates or replaces a trusted issuer; keys from `jwks_uri` are fetched at once, and the
/// answer's `keys` says whether that worked.
#[utoipa::path(
    put,
    path = "/v1/trusted-issuers/{issuer_id}",
    operation_id = "put_trusted_issuer",
    tag = "trusted issuers",
    params(
        (
            "issuer_id" = String,
            Path,
            pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$",
            description = "The trusted issuer's id"
        ),
        crate::etag::IfMatchParam
    ),
    request_body = IssuerBody,
    security(("admin_token" = [])),
    responses(
        (
            status = 200,
            description = "Replaced",
            body = IssuerView,
            headers(("ETag" = String, description = "The resource's version, for `If-Match`"))
        ),
        (
            status = 201,
            description = "Created",
            body = IssuerView,
            headers(("ETag" = String, description = "The resource's version, for `If-Match`"))
        ),
        crate::openapi_answers::AdminErrors,
        crate::openapi_answers::LookupErrors,
        crate::openapi_answers::WriteErrors
    )
)]
async fn put(
    State(state): State<AppState>,
    path: IssuerPath,
    headers: HeaderMap,
    ApiJson(body): ApiJson<IssuerBody>,
) -> Result<Response, ApiError> {
    let if_match = IfMatch::from_headers(&headers)?;
    validate(&body)?;
    let id = path.issuer_id;
    let what = format!("trusted issuer `{id}`");
    let existing = state.store.get_issuer(&id).await?;
    if_match.check(existing.as_ref().map(|r| r.etag.as_str()), &what)?;
    let now = unix_now();
    let record = IssuerRecord {
        id: id.clone(),
        display_name: body.display_name,
        issuer: body.issuer,
        audiences: body.audiences,
        jwks_uri: body.jwks_uri,
        jwks: body.jwks,
        claims: body.claims,
        leeway_seconds: body.leeway_seconds.unwrap_or(DEFAULT_LEEWAY),
        etag: new_etag(),
        created_at: existing.as_ref().map_or(now, |r| r.created_at),
        updated_at: now,
    };
    let others = state.store.list_issuers().await?;
    if others
        .iter()
        .any(|o| o.issuer == record.issuer && o.id != record.id)
    {
        return Err(ApiError::Conflict(format!(
            "another trusted issuer has `issuer` {:?}; an issuer is trusted once",
            record.issuer
        )));
    }
    let status = match &existing {
        None => {
            if !state.store.insert_issuer(&record).await? {
                return Err(ApiError::Conflict(format!(
                    "{what} (or one with the same `issuer`) was created by another request at \
                     the same time; retry"
                )));
            }
            tracing::info!(issuer_id = %id, issuer = %record.issuer, "trusted issuer created");
            StatusCode::CREATED
        }
        Some(old) => {
            if !state.store.replace_issuer(&record, &old.etag).await? {
                return Err(if if_match.is_present() {
                    etag::stale(&what)
                } else {
                    ApiError::Conflict(format!(
                        "{what} was changed by another request at the same time; retry"
                    ))
                });
            }
            tracing::info!(issuer_id = %id, issuer = %record.issuer, "trusted issuer replaced");
            StatusCode::OK
        }
    };
    state.issuers.forget(&id).await;
    // Fetch the keys now, so the answer says whether the JWKS URI works.
    let keys = state.issuers.key_status_fresh(&record).await;
    Ok(etag::respond(status, &record.etag, view(&record, keys)))
}

/// Deletes a trusted issuer: its JWTs no longer identify callers.
#[utoipa::path(
    delete,
    path = "/v1/trusted-issuers/{issuer_id}",
    operation_id = "delete_trusted_issuer",
    tag = "trusted issuers",
    params(
        (
            "issuer_id" = String,
            Path,
            pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$",
            description = "The trusted issuer's id"
        ),
        crate::etag::IfMatchParam
    ),
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
    path: IssuerPath,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let if_match = IfMatch::from_headers(&headers)?;
    let current = find(&state, &path.issuer_id).await?;
    let what = format!("trusted issuer `{}`", path.issuer_id);
    if_match.check(Some(&current.etag), &what)?;
    let expected = if_match.is_present().then_some(current.etag.as_str());
    if !state.store.delete_issuer(&path.issuer_id, expected).await? {
        return Err(if if_match.is_present() {
            etag::stale(&what)
        } else {
            ApiError::NotFound(format!("{what} does not exist"))
        });
    }
    state.issuers.forget(&path.issuer_id).await;
    tracing::info!(issuer_id = %path.issuer_id, "trusted issuer deleted");
    Ok(StatusCode::NO_CONTENT)
}

fn validate(body: &IssuerBody) -> Result<(), ApiError> {
    validate_display_name(&body.display_name)?;
    validate_endpoint("issuer", &body.issuer)?;
    if body.audiences.is_empty() {
        return Err(ApiError::invalid(
            "audiences",
            "`audiences` must name at least one audience: a token meant for another API must \
             not identify a caller here",
        ));
    }
    if body.audiences.len() > MAX_AUDIENCES {
        return Err(ApiError::invalid(
            "audiences",
            format!("`audiences` may list at most {MAX_AUDIENCES} values"),
        ));
    }
    for (i, a) in body.audiences.iter().enumerate() {
        if a.trim().is_empty() || a.chars().any(char::is_control) {
            return Err(ApiError::invalid(
                format!("audiences[{i}]"),
                "an audience must be non-empty and free of control characters",
            ));
        }
    }
    match (&body.jwks_uri, &body.jwks) {
        (Some(uri), None) => {
            validate_endpoint("jwks_uri", uri)?;
        }
        (None, Some(jwks)) => validate_inline_jwks(jwks)?,
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "jwks",
                "give `jwks_uri` or `jwks`, not both",
            ))
        }
        (None, None) => {
            return Err(ApiError::invalid(
                "jwks_uri",
                "`jwks_uri` (where the issuer publishes its keys) or an inline `jwks` is \
                 required",
            ))
        }
    }
    let leeway = body.leeway_seconds.unwrap_or(DEFAULT_LEEWAY);
    if !(0..=MAX_LEEWAY).contains(&leeway) {
        return Err(ApiError::invalid(
            "leeway_seconds",
            format!("`leeway_seconds` must be between 0 and {MAX_LEEWAY}"),
        ));
    }
    if body.claims.object.is_empty() {
        return Err(ApiError::invalid(
            "claims.object",
            "`claims.object` must name at least one claim (such as `oid` or `sub`)",
        ));
    }
    Ok(())
}

/// Members of a JWK that only private or symmetric keys have (RFC 7518 §6.2.2, §6.3.2,
/// §6.4.1; RFC 8037 §2).
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// An inline JWKS must be readable, hold at least one usable key, and no private key: it is
/// published to every gateway and shown by the API.
fn validate_inline_jwks(jwks: &Value) -> Result<(), ApiError> {
    if let Some(keys) = jwks.get("keys").and_then(Value::as_array) {
        for (i, key) in keys.iter().enumerate() {
            if PRIVATE_MEMBERS.iter().any(|m| key.get(m).is_some()) {
                return Err(ApiError::invalid(
                    format!("jwks.keys[{i}]"),
                    "the JWKS holds a private or symmetric key; give public keys only",
                ));
            }
        }
    }
    let issuer = TrustedIssuer::new(String::new(), vec![], ClaimNames::default(), 0, jwks)
        .map_err(|e| ApiError::invalid("jwks", format!("`jwks` is not usable: {e}")))?;
    if issuer.key_count() == 0 {
        return Err(ApiError::invalid(
            "jwks",
            "`jwks` holds no usable signing key (RS256, ES256 or Ed25519)",
        ));
    }
    Ok(())
}

/// A JWKS with only public members of signing keys: what may leave the control plane.
pub fn public_jwks(jwks: &Value) -> Value {
    let keys = jwks
        .get("keys")
        .and_then(Value::as_array)
        .map(|keys| {
            keys.iter()
                .filter(|k| k.get("kty").and_then(Value::as_str) != Some("oct"))
                .filter_map(|k| {
                    let mut k = k.as_object()?.clone();
                    for m in PRIVATE_MEMBERS {
                        k.remove(m);
                    }
                    Some(Value::Object(k))
                })
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    serde_json::json!({ "keys": keys })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn private_and_symmetric_members_never_leave() {
        let jwks = json!({"keys": [
            {"kty": "RSA", "kid": "a", "n": "AQAB", "e": "AQAB", "d": "secret", "p": "x"},
            {"kty": "oct", "kid": "h", "k": "c2VjcmV0"},
        ]});
        let public = public_jwks(&jwks);
        assert_eq!(
            public,
            json!({"keys": [{"kty": "RSA", "kid": "a", "n": "AQAB", "e": "AQAB"}]})
        );
        assert!(validate_inline_jwks(&jwks).is_err());
    }
}
