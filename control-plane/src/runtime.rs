//! The runtime API that gateways call for a connection's token:
//! `GET /runtime/v1/providers/{provider_id}/connections/{connection_id}/token`
//! (the path of [`credmgr_common::runtime::token_path`]).

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header::{CACHE_CONTROL, PRAGMA};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};

use crate::auth::Gateway;
use crate::error::ApiError;
use crate::extract::ConnectionPath;
use crate::AppState;

/// The route, spelled with the placeholders of `token_path`.
pub const TOKEN_ROUTE: &str =
    "/runtime/v1/providers/{provider_id}/connections/{connection_id}/token";

pub fn routes() -> Router<AppState> {
    Router::new().route(TOKEN_ROUTE, get(token))
}

/// Query parameters of the token call.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenQuery {
    /// The expiry of a token a backend refused (a 401 seen by the gateway): the control plane
    /// replaces a stored token that is not newer than it before answering.
    rejected_expires_at: Option<i64>,
}

async fn token(
    State(state): State<AppState>,
    Extension(gateway): Extension<Gateway>,
    path: ConnectionPath,
    query: Result<Query<TokenQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let (p, c) = (&path.provider_id, &path.connection_id);
    if let Some(rejected) = query.rejected_expires_at {
        tracing::info!(gateway = %gateway.name, provider = %p, connection = %c,
            rejected_expires_at = rejected, "a gateway reports its token was refused by a backend");
    }
    match state
        .tokens
        .runtime_token(p, c, query.rejected_expires_at)
        .await
    {
        Ok((token, served)) => {
            state.metrics.runtime_token_request(served.as_str());
            tracing::debug!(gateway = %gateway.name, provider = %p, connection = %c,
                outcome = served.as_str(), expires_at = token.expires_at, "token handed out");
            // RFC 6749 §5.1: responses carrying tokens must not be cached.
            Ok((
                [(CACHE_CONTROL, "no-store"), (PRAGMA, "no-cache")],
                Json(token),
            )
                .into_response())
        }
        Err(e) => {
            state.metrics.runtime_token_request("error");
            tracing::info!(gateway = %gateway.name, provider = %p, connection = %c,
                code = e.code(), "no token for the gateway: {e}");
            Err(e)
        }
    }
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
