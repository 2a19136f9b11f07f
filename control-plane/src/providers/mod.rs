//! Credential providers: an OAuth 2.0 authorization server, the client registered at it, and
//! how to ask it for tokens. Management API under `/v1/providers`.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use secrecy::ExposeSecret;
use serde::Serialize;
use std::collections::BTreeMap;

use crate::clock::{rfc3339, unix_now};
use crate::connection_template::ConnectionTemplate;
use crate::crypto::Aad;
use crate::domain::{AuthMethod, ConnectionKey, ConnectionStatus, GrantType};
use crate::error::{consent_required_message, ApiError};
use crate::etag::{self, IfMatch};
use crate::extract::{ApiJson, ProviderPath};
use crate::presets::IdentityProvider;
use crate::state::AppState;
use crate::store::{new_etag, ProviderRecord};

mod body;
pub mod catalogue;
mod validate;

use body::{resolve, validate, ProviderBody, Resolved};
pub use validate::{
    validate_client_id, validate_client_secret, validate_display_name, validate_endpoint,
    validate_token_url,
};

/// A provider as the API shows it: everything but the secret.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProviderView {
    pub id: String,
    pub display_name: Option<String>,
    pub identity_provider: IdentityProvider,
    pub parameters: BTreeMap<String, String>,
    pub grant_type: GrantType,
    pub client_id: String,
    pub client_secret: SecretState,
    pub token_url: String,
    pub scopes: Vec<String>,
    pub token_endpoint_auth_method: AuthMethod,
    pub token_params: BTreeMap<String, String>,
    pub authorization_url: Option<String>,
    /// The effective refresh endpoint: `token_url` unless set.
    pub refresh_url: String,
    pub issuer: Option<String>,
    pub authorize_params: BTreeMap<String, String>,
    pub allowed_redirect_urls: Vec<String>,
    /// The connection template, when the provider is self-service; otherwise null.
    pub self_service: Option<ConnectionTemplate>,
    /// The `ETag` of this provider, for `If-Match`.
    pub etag: String,
    pub created_at: String,
    pub updated_at: String,
}

/// What the API says about a write-only secret: only whether it is set.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SecretState {
    pub set: bool,
}

impl From<&ProviderRecord> for ProviderView {
    fn from(p: &ProviderRecord) -> Self {
        ProviderView {
            id: p.id.clone(),
            display_name: p.display_name.clone(),
            identity_provider: p.identity_provider,
            parameters: p.parameters.clone(),
            grant_type: p.grant_type,
            client_id: p.client_id.clone(),
            client_secret: SecretState { set: true },
            token_url: p.token_url.clone(),
            scopes: p.scopes.clone(),
            token_endpoint_auth_method: p.token_endpoint_auth_method,
            token_params: p.token_params.clone(),
            authorization_url: p.authorization_url.clone(),
            refresh_url: p.refresh_endpoint().to_owned(),
            issuer: p.issuer.clone(),
            authorize_params: p.authorize_params.clone(),
            allowed_redirect_urls: p.allowed_redirect_urls.clone(),
            self_service: p.self_service.clone(),
            etag: p.etag.clone(),
            created_at: rfc3339(p.created_at),
            updated_at: rfc3339(p.updated_at),
        }
    }
}

/// The operations of this module, for the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(list, show, put, delete))]
pub struct Api;

pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/providers", get(list)).route(
        "/v1/providers/{provider_id}",
        get(show).put(put).delete(delete),
    )
}

/// Lists the credential providers.
#[utoipa::path(
    get,
    path = "/v1/providers",
    operation_id = "list_providers",
    tag = "providers",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Every provider, in id order", body = Vec<ProviderView>),
        crate::openapi_answers::AdminErrors
    )
)]
async fn list(State(state): State<AppState>) -> Result<Json<Vec<ProviderView>>, ApiError> {
    let providers = state.store.list_providers().await?;
    Ok(Json(providers.iter().map(ProviderView::from).collect()))
}

/// Reads a credential provider (never its client secret).
#[utoipa::path(
    get,
    path = "/v1/providers/{provider_id}",
    operation_id = "get_provider",
    tag = "providers",
    params(crate::extract::RawProviderPath),
    security(("admin_token" = [])),
    responses(
        (
            status = 200,
            description = "The provider",
            body = ProviderView,
            headers(("ETag" = String, description = "The resource's version, for `If-Match`"))
        ),
        crate::openapi_answers::AdminErrors,
        crate::openapi_answers::LookupErrors
    )
)]
async fn show(State(state): State<AppState>, path: ProviderPath) -> Result<Response, ApiError> {
    let p = find(&state, &path.provider_id).await?;
    Ok(etag::respond(
        StatusCode::OK,
        &p.etag,
        ProviderView::from(&p),
    ))
}

/// Loads a provider or answers 404.
pub async fn find(state: &AppState, id: &str) -> Result<ProviderRecord, ApiError> {
    state
        .store
        .get_provider(id)
        .await?
        .ok_or_else(|| not_found(id))
}

/// The answer for a provider that does not exist.
pub fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("provider `{id}` does not exist"))
}

/// Creates or replaces a credential provider. A preset (`identity_provider`) fills in what
/// the body leaves out; `client_secret` is write-only, required on create, kept when left out
/// on replace (unless the token or refresh URL moves to another origin).
#[utoipa::path(
    put,
    path = "/v1/providers/{provider_id}",
    operation_id = "put_provider",
    tag = "providers",
    params(crate::extract::RawProviderPath, crate::etag::IfMatchParam),
    request_body = ProviderBody,
    security(("admin_token" = [])),
    responses(
        (
            status = 200,
            description = "Replaced",
            body = ProviderView,
            headers(("ETag" = String, description = "The resource's version, for `If-Match`"))
        ),
        (
            status = 201,
            description = "Created",
            body = ProviderView,
            headers(("ETag" = String, description = "The resource's version, for `If-Match`"))
        ),
        crate::openapi_answers::AdminErrors,
        crate::openapi_answers::LookupErrors,
        crate::openapi_answers::WriteErrors
    )
)]
async fn put(
    State(state): State<AppState>,
    path: ProviderPath,
    headers: HeaderMap,
    ApiJson(body): ApiJson<ProviderBody>,
) -> Result<Response, ApiError> {
    let if_match = IfMatch::from_headers(&headers)?;
    let resolved = resolve(&body)?;
    validate(&body, &resolved)?;
    let id = path.provider_id;
    let now = unix_now();
    let existing = state.store.get_provider(&id).await?;
    let what = format!("provider `{id}`");
    if_match.check(existing.as_ref().map(|p| p.etag.as_str()), &what)?;
    let lost_race = || {
        if if_match.is_present() {
            etag::stale(&what)
        } else {
            concurrent_change(&id)
        }
    };
    let client_secret = match (&body.client_secret, &existing) {
        (Some(secret), _) => state.keyring.encrypt(
            &Aad::provider_client_secret(&id),
            secret.expose_secret().as_bytes(),
        )?,
        (None, Some(old)) => {
            secret_stays_with(old, &resolved)?;
            old.client_secret.clone()
        }
        (None, None) => {
            return Err(ApiError::invalid(
                "client_secret",
                "`client_secret` is required when creating a provider",
            ))
        }
    };
    let record = ProviderRecord {
        id: id.clone(),
        display_name: body.display_name,
        identity_provider: body.identity_provider,
        parameters: body.parameters,
        grant_type: resolved.grant_type,
        client_id: body.client_id,
        client_secret,
        scopes: resolved.scopes,
        token_endpoint_auth_method: resolved.token_endpoint_auth_method,
        token_params: resolved.token_params,
        // Re-sending the effective refresh URL (what GET shows) is the same as leaving it out.
        refresh_url: resolved.refresh_url.filter(|u| *u != resolved.token_url),
        token_url: resolved.token_url,
        authorization_url: resolved.authorization_url,
        issuer: resolved.issuer,
        authorize_params: resolved.authorize_params,
        allowed_redirect_urls: body.allowed_redirect_urls,
        self_service: body.self_service,
        etag: new_etag(),
        created_at: existing.as_ref().map_or(now, |old| old.created_at),
        updated_at: now,
    };
    let status = match existing {
        None => {
            if !state.store.insert_provider(&record).await? {
                return Err(lost_race());
            }
            tracing::info!(provider = %id, grant_type = %record.grant_type, "provider created");
            StatusCode::CREATED
        }
        Some(old) => {
            let invalidate = changes_tokens(&old, &record)
                || body.client_secret.as_ref().is_some_and(|new| {
                    // A secret that cannot be decrypted any more counts as changed: replacing
                    // it is how an operator recovers.
                    let aad = Aad::provider_client_secret(&id);
                    let same = state.keyring.holds(
                        &aad,
                        &old.client_secret,
                        new.expose_secret().as_bytes(),
                    );
                    !same.unwrap_or(false)
                });
            if !state
                .store
                .replace_provider(&record, invalidate, &old.etag)
                .await?
            {
                return Err(lost_race());
            }
            if invalidate && record.grant_type.needs_consent() {
                // The old tokens are gone; say what to do next, as for a new connection.
                for conn in state.store.list_connections(&id).await? {
                    let key = ConnectionKey::new(id.as_str(), conn.id.as_str());
                    let message = consent_required_message(&key);
                    let error = crate::store::ConnectionError {
                        status: ConnectionStatus::NotConnected,
                        code: credmgr_common::error::codes::CONSENT_REQUIRED,
                        message: &message,
                        drop_tokens: false,
                        retry_at: None,
                    };
                    state
                        .store
                        .record_token_error(&id, &conn.id, conn.token_generation, &error)
                        .await?;
                }
            }
            tracing::info!(provider = %id, tokens_invalidated = invalidate, "provider replaced");
            StatusCode::OK
        }
    };
    Ok(etag::respond(
        status,
        &record.etag,
        ProviderView::from(&record),
    ))
}

/// The kept client secret may only go where it went before: a replacement that moves the
/// token or refresh URL to another origin must send the secret again, or whoever may
/// replace the provider could point it at their own host and read the stored secret in
/// the next token request (the secret is write-only).
fn secret_stays_with(old: &ProviderRecord, new: &Resolved) -> Result<(), ApiError> {
    let origin = |raw: &str| url::Url::parse(raw).map(|u| u.origin()).ok();
    let old_refresh = old.refresh_url.as_deref().unwrap_or(&old.token_url);
    let new_refresh = new.refresh_url.as_deref().unwrap_or(&new.token_url);
    for (field, before, after) in [
        ("token_url", old.token_url.as_str(), new.token_url.as_str()),
        ("refresh_url", old_refresh, new_refresh),
    ] {
        if origin(before) != origin(after) {
            return Err(ApiError::invalid(
                "client_secret",
                format!(
                    "`client_secret` is required when `{field}` moves to another origin \
                     (scheme, host and port): the stored secret is only sent where it was \
                     sent before"
                ),
            ));
        }
    }
    Ok(())
}

fn concurrent_change(id: &str) -> ApiError {
    ApiError::Conflict(format!(
        "provider `{id}` was changed by another request at the same time; retry"
    ))
}

/// Whether a replacement makes the stored tokens wrong for the new configuration: they were
/// issued to another client, for other scopes or by another endpoint. Such tokens are
/// dropped so the next request gets one that matches (and a new client secret is tried at
/// once). Re-sending the same configuration, as declarative tooling does, keeps them.
fn changes_tokens(old: &ProviderRecord, new: &ProviderRecord) -> bool {
    old.identity_provider != new.identity_provider
        || old.grant_type != new.grant_type
        || old.client_id != new.client_id
        || old.token_url != new.token_url
        || old.scopes != new.scopes
        || old.token_endpoint_auth_method != new.token_endpoint_auth_method
        || old.token_params != new.token_params
        || old.refresh_url != new.refresh_url
}

/// Deletes a credential provider with its connections and their tokens.
#[utoipa::path(
    delete,
    path = "/v1/providers/{provider_id}",
    operation_id = "delete_provider",
    tag = "providers",
    params(crate::extract::RawProviderPath, crate::etag::IfMatchParam),
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
    path: ProviderPath,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let if_match = IfMatch::from_headers(&headers)?;
    let id = &path.provider_id;
    let current = find(&state, id).await?;
    let what = format!("provider `{id}`");
    if_match.check(Some(&current.etag), &what)?;
    let expected = if_match.is_present().then_some(current.etag.as_str());
    if !state.store.delete_provider(id, expected).await? {
        return Err(if if_match.is_present() {
            etag::stale(&what)
        } else {
            ApiError::NotFound(format!("provider `{id}` does not exist"))
        });
    }
    tracing::info!(provider = %path.provider_id, "provider deleted with its connections");
    Ok(StatusCode::NO_CONTENT)
}
