//! The runtime API that gateways call:
//! - `GET /runtime/v1/providers/{provider_id}/connections/{connection_id}/token` (the path of
//!   [`credmgr_common::runtime::token_path`]): a connection's token, for the gateway itself or
//!   for the caller whose JWT it forwards, if the connection's access policies allow them; for
//!   a verified caller of a self-service provider, its own connection is created on first need
//!   and a login URL made for it answers while the connection needs consent
//!   ([`crate::self_service`]);
//! - `GET /runtime/v1/trusted-issuers`: the issuers whose JWTs gateways accept, with their
//!   keys.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header::{CACHE_CONTROL, PRAGMA};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use credmgr_common::access::{allowed, Caller, PolicyIdentity};
use credmgr_common::jwt::{self, JwtError};
use credmgr_common::runtime::{CALLER_TOKEN_HEADER, ISSUERS_PATH};

use crate::auth::Gateway;
use crate::clock::unix_now;
use crate::connection_template::ConnectionTemplate;
use crate::error::ApiError;
use crate::extract::ConnectionPath;
use crate::self_service;
use crate::state::AppState;
use crate::store::{RuntimeView, TokenRecord};
use crate::tokens::Rejected;

/// The route, spelled with the placeholders of `token_path`.
pub const TOKEN_ROUTE: &str =
    "/runtime/v1/providers/{provider_id}/connections/{connection_id}/token";

/// The operations of the runtime API, for the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(token, trusted_issuers))]
pub struct Api;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(TOKEN_ROUTE, get(token))
        .route(ISSUERS_PATH, get(trusted_issuers))
}

/// Query parameters of the token call.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenQuery {
    /// The fingerprint of a token a backend refused (a 401 seen by the gateway:
    /// [`credmgr_common::runtime::token_fingerprint`]): the control plane replaces the stored
    /// token first if it is that one.
    rejected_fingerprint: Option<String>,
    /// The older form, from gateways that do not send the fingerprint: the refused token's
    /// expiry.
    rejected_expires_at: Option<i64>,
}

impl TokenQuery {
    fn rejected(self) -> Result<Option<Rejected>, ApiError> {
        match (self.rejected_fingerprint, self.rejected_expires_at) {
            (Some(fp), _) => {
                if fp.len() != 16 || !fp.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(ApiError::invalid(
                        "rejected_fingerprint",
                        "must be 16 hexadecimal digits (the first 8 bytes of the refused \
                         token's SHA-256)",
                    ));
                }
                Ok(Some(Rejected::Fingerprint(fp.to_ascii_lowercase())))
            }
            (None, Some(at)) => Ok(Some(Rejected::ExpiresAt(at))),
            (None, None) => Ok(None),
        }
    }
}

/// A connection's current access token, for the gateway itself or for the caller whose JWT
/// it forwards in `x-credmgr-caller-token`, if the connection's access policies name them.
/// Refreshed first when due; answered `Cache-Control: no-store`.
#[utoipa::path(
    get,
    path = "/runtime/v1/providers/{provider_id}/connections/{connection_id}/token",
    operation_id = "get_runtime_token",
    tag = "runtime",
    security(
        ("gateway_key" = []),
        ("gateway_certificate" = []),
        ("gateway_key" = [], "caller_jwt" = []),
        ("gateway_certificate" = [], "caller_jwt" = [])
    ),
    params(
        crate::extract::RawConnectionPath,
        (
            "rejected_fingerprint" = Option<String>,
            Query,
            pattern = "^[0-9A-Fa-f]{16}$",
            description = "A backend refused the token with this fingerprint (first 16 hex digits of its SHA-256): replace it first if it is the stored one"
        ),
        (
            "rejected_expires_at" = Option<i64>,
            Query,
            description = "Older form: the refused token's expiry (Unix seconds)"
        )
    ),
    responses(
        (status = 200, description = "The token", body = credmgr_common::RuntimeToken),
        (
            status = 400,
            description = "`invalid_request`: an invalid id or query parameter",
            body = credmgr_common::ErrorBody
        ),
        (
            status = 401,
            description = "`unauthenticated` (no known gateway credential), `jwt_*` (the caller's JWT is refused), or `consent_required` with a `login_url` made for the caller of a self-service provider (and `WWW-Authenticate: Credmgr-Consent ...`)",
            body = credmgr_common::ErrorBody
        ),
        (
            status = 403,
            description = "`forbidden`: no access policy of the connection names the caller",
            body = credmgr_common::ErrorBody
        ),
        (
            status = 404,
            description = "`not_found`: no such provider or connection",
            body = credmgr_common::ErrorBody
        ),
        (
            status = 409,
            description = "`conflict`: the connection was reconfigured while a token was fetched; retry",
            body = credmgr_common::ErrorBody
        ),
        (
            status = 429,
            description = "`rate_limited`: too many login URLs for this caller or connection; see `Retry-After`",
            body = credmgr_common::ErrorBody,
            headers(("Retry-After" = i64, description = "Seconds to wait"))
        ),
        (status = 500, description = "`internal_error`", body = credmgr_common::ErrorBody),
        (
            status = 503,
            description = "No usable token (`consent_required`, `refresh_token_invalid`, `refresh_token_expired`, `client_secret_rejected`, `provider_unreachable`, `provider_error`), or `store_unavailable`",
            body = credmgr_common::ErrorBody
        )
    )
)]
async fn token(
    State(state): State<AppState>,
    Extension(gateway): Extension<Gateway>,
    path: ConnectionPath,
    headers: HeaderMap,
    query: Result<Query<TokenQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let rejected = query.rejected()?;
    let (p, c) = (&path.provider_id, &path.connection_id);
    let audit = |caller: Option<&Caller>, outcome: &str, detail: Option<serde_json::Value>| {
        if let Some(recorder) = &state.audit {
            recorder.record(crate::audit::token_entry(
                &gateway.name,
                caller,
                p,
                c,
                outcome,
                detail,
            ));
        }
    };
    let caller = caller(&state, &gateway, &headers).await.inspect_err(|e| {
        audit(None, e.code(), None);
        state.metrics.runtime_token_request("unauthenticated");
        tracing::info!(gateway = %gateway.name, provider = %p, connection = %c,
            code = e.code(), "the caller's JWT was refused: {e}");
    })?;
    let Authorized {
        policies,
        token: stored,
        self_service,
    } = authorize(&state, &path, &caller).await.inspect_err(|e| {
        audit(Some(&caller), e.code(), None);
        state.metrics.runtime_token_request("denied");
        tracing::info!(gateway = %gateway.name, provider = %p, connection = %c,
            code = e.code(), "no token for the caller: {e}");
    })?;
    if let Some(rejected) = &rejected {
        // A fingerprint names a token without revealing it: safe to log.
        tracing::info!(gateway = %gateway.name, provider = %p, connection = %c,
            rejected = ?rejected, "a gateway reports its token was refused by a backend");
    }
    match state
        .tokens
        .runtime_token(&path.key(), stored, rejected)
        .await
    {
        Ok((mut token, served)) => {
            state.metrics.runtime_token_request(served.as_str());
            // The token by its fingerprint (a hash prefix: it does not reveal the token).
            let fingerprint = credmgr_common::runtime::token_fingerprint(&token.access_token);
            audit(
                Some(&caller),
                served.as_str(),
                Some(
                    serde_json::json!({"fingerprint": fingerprint, "expires_at": token.expires_at}),
                ),
            );
            tracing::debug!(gateway = %gateway.name, provider = %p, connection = %c,
                outcome = served.as_str(), expires_at = token.expires_at, "token handed out");
            // The gateway decides for later callers with these policies until `refresh_at`,
            // then asks again: a changed policy reaches it within the access refresh interval.
            token.access_policies = policies;
            let revalidate = unix_now().saturating_add(state.access_revalidate_seconds());
            token.refresh_at = token.refresh_at.min(revalidate);
            // RFC 6749 §5.1: responses carrying tokens must not be cached.
            Ok((
                [(CACHE_CONTROL, "no-store"), (PRAGMA, "no-cache")],
                Json(token),
            )
                .into_response())
        }
        Err(e) => {
            let template = self_service.as_ref();
            if let Some(answer) =
                self_service::consent_answer(&state, &path.key(), &caller, template, &e).await
            {
                let outcome = match &answer {
                    ApiError::ConsentLink(_) => "consent_link",
                    ApiError::RateLimited { .. } => "rate_limited",
                    _ => "error",
                };
                state.metrics.runtime_token_request(outcome);
                audit(Some(&caller), answer.code(), None);
                // The answer's message names no URL: it is safe to log.
                tracing::info!(gateway = %gateway.name, provider = %p, connection = %c,
                    code = answer.code(), "the caller must consent first: {answer}");
                return Err(answer);
            }
            let e = ApiError::from(e);
            audit(Some(&caller), e.code(), None);
            state.metrics.runtime_token_request("error");
            tracing::info!(gateway = %gateway.name, provider = %p, connection = %c,
                code = e.code(), "no token for the gateway: {e}");
            Err(e)
        }
    }
}

/// Who asks: the gateway itself, or the holder of the JWT it forwards, verified here again.
async fn caller(
    state: &AppState,
    gateway: &Gateway,
    headers: &HeaderMap,
) -> Result<Caller, ApiError> {
    let Some(value) = headers.get(CALLER_TOKEN_HEADER) else {
        return Ok(Caller::Gateway {
            name: gateway.name.clone(),
        });
    };
    let token = value.to_str().map_err(|_| ApiError::CallerRejected {
        code: JwtError::Malformed(String::new()).code(),
        message: format!("the {CALLER_TOKEN_HEADER} header is not a JWT"),
    })?;
    let now = unix_now();
    let snapshot = state.issuers.snapshot(&state.store).await?;
    let verified = match jwt::verify(&snapshot.verifiers, token, now) {
        Err(JwtError::UnknownKey(Some(kid))) => {
            // The issuer may have rotated its keys since they were fetched.
            let issuer = jwt::peek_issuer_and_kid(token).map(|(iss, _)| iss);
            let renewed = match issuer {
                Some(iss) => state
                    .issuers
                    .refetch_for_kid(&state.store, &iss, &kid)
                    .await
                    .unwrap_or(false),
                None => false,
            };
            if renewed {
                let snapshot = state.issuers.snapshot(&state.store).await?;
                jwt::verify(&snapshot.verifiers, token, now)
            } else {
                Err(JwtError::UnknownKey(Some(kid)))
            }
        }
        other => other,
    };
    match verified {
        Ok(v) => Ok(Caller::Jwt(v.identity)),
        Err(e) => Err(ApiError::CallerRejected {
            code: e.code(),
            message: format!("the caller's JWT is refused: {e}"),
        }),
    }
}

/// What a token request found, once the caller is allowed.
struct Authorized {
    /// The connection's access policies.
    policies: Vec<PolicyIdentity>,
    /// Its stored token, read with the policies: the token service is handed it instead of
    /// reading it again.
    token: Option<TokenRecord>,
    /// The provider's self-service template, if it has one.
    self_service: Option<ConnectionTemplate>,
}

/// The connection's policies and its stored token, if the policies allow `caller`; 403
/// otherwise (404 first, for no provider or no connection). One store query, unless the
/// connection is a self-service caller's own and is created now
/// ([`self_service::create_own_connection`]).
async fn authorize(
    state: &AppState,
    path: &ConnectionPath,
    caller: &Caller,
) -> Result<Authorized, ApiError> {
    let (p, c) = (&path.provider_id, &path.connection_id);
    let mut view = state.store.runtime_view(p, c).await?;
    if let RuntimeView::NoConnection { self_service } = &view {
        self_service::create_own_connection(state, path, caller, self_service.as_ref()).await?;
        view = state.store.runtime_view(p, c).await?;
    }
    let (self_service, policies, token) = match view {
        RuntimeView::NoProvider => return Err(crate::providers::not_found(p)),
        RuntimeView::NoConnection { .. } => return Err(crate::connections::not_found(path)),
        RuntimeView::Connection {
            self_service,
            policies,
            token,
        } => (self_service, policies, token),
    };
    if allowed(&policies, caller) {
        return Ok(Authorized {
            policies,
            token,
            self_service,
        });
    }
    let who = match caller {
        Caller::Gateway { name } => format!("gateway `{name}`"),
        Caller::Jwt(id) => format!(
            "the caller (issuer {:?}, object {:?}, application {:?})",
            id.issuer,
            id.object_id.as_deref().unwrap_or("-"),
            id.application_id.as_deref().unwrap_or("-")
        ),
    };
    let why = if policies.is_empty() {
        "it has no access policies, so nobody may use it"
    } else {
        "none of its access policies names this identity"
    };
    let hint = self_service::own_connection_hint(self_service.as_ref(), caller);
    Err(ApiError::Forbidden(format!(
        "{who} may not use connection `{c}` of provider `{p}`: {why}{hint}"
    )))
}

/// Query of the trusted-issuers call: a token named a key the gateway does not know.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct IssuersQuery {
    issuer: Option<String>,
    kid: Option<String>,
}

/// The trusted issuers and their public keys, for gateways to verify callers' JWTs. With
/// `issuer` and `kid`, the issuer's keys are fetched again first if that key is unknown.
#[utoipa::path(
    get,
    path = "/runtime/v1/trusted-issuers",
    operation_id = "get_runtime_trusted_issuers",
    tag = "runtime",
    security(("gateway_key" = []), ("gateway_certificate" = [])),
    params(
        (
            "issuer" = Option<String>,
            Query,
            description = "With `kid`: an issuer whose key a token named"
        ),
        ("kid" = Option<String>, Query, description = "With `issuer`: the unknown key id")
    ),
    responses(
        (
            status = 200,
            description = "The trusted issuers",
            body = credmgr_common::runtime::TrustedIssuers
        ),
        (
            status = 400,
            description = "`invalid_request`: an unknown query parameter",
            body = credmgr_common::ErrorBody
        ),
        (
            status = 401,
            description = "`unauthenticated`: no known gateway credential",
            body = credmgr_common::ErrorBody
        ),
        (status = 500, description = "`internal_error`", body = credmgr_common::ErrorBody),
        (status = 503, description = "`store_unavailable`", body = credmgr_common::ErrorBody)
    )
)]
async fn trusted_issuers(
    State(state): State<AppState>,
    query: Result<Query<IssuersQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    if let (Some(issuer), Some(kid)) = (&query.issuer, &query.kid) {
        state
            .issuers
            .refetch_for_kid(&state.store, issuer, kid)
            .await?;
    }
    let snapshot = state.issuers.snapshot(&state.store).await?;
    Ok((
        [(CACHE_CONTROL, "no-store")],
        Json(snapshot.published.clone()),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_route_is_the_shared_token_path() {
        assert_eq!(
            credmgr_common::runtime::token_path("{provider_id}", "{connection_id}"),
            TOKEN_ROUTE
        );
    }
}
