//! The runtime API that gateways call for a connection's token:
//! `GET /runtime/v1/providers/{provider_id}/connections/{connection_id}/token`
//! (the path of [`credmgr_common::runtime::token_path`]).

use axum::extract::State;
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

async fn token(
    State(state): State<AppState>,
    Extension(gateway): Extension<Gateway>,
    path: ConnectionPath,
) -> Result<Response, ApiError> {
    let (p, c) = (&path.provider_id, &path.connection_id);
    match state.tokens.runtime_token(p, c).await {
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
