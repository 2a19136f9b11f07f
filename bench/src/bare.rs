//! The bare axum handler the runtime API is compared with (`credmgr-bench bare-runtime`): the
//! same route, the same gateway-key check and a token answer of the same shape and size, but
//! no middleware, no store, no decryption and no metrics. The difference between the two is
//! what the control plane's own work per token fetch costs.

use axum::extract::{Path, State};
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, PRAGMA};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use credmgr_common::RuntimeToken;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// The environment variable holding the gateway key (not an argument: argv is public).
pub const KEY_ENV: &str = "CREDMGR_BENCH_GATEWAY_KEY";

async fn token(
    State(key): State<Arc<String>>,
    Path((_provider, _connection)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let presented = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if presented != Some(key.as_str()) {
        let body = serde_json::json!({"error": {"code": "unauthorized", "message": "missing or unknown gateway key"}});
        return (StatusCode::UNAUTHORIZED, Json(body)).into_response();
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let mut claims = serde_json::Map::new();
    claims.insert("scope".into(), "api:read".into());
    claims.insert("token_type".into(), "Bearer".into());
    claims.insert("expires_in".into(), 3600.into());
    let token = RuntimeToken {
        // As long as the OAuth server's opaque tokens.
        access_token: "0123456789abcdefghijklmnopqrstuvwxyzABCDEFG".into(),
        token_type: "Bearer".into(),
        expires_at: now + 3600,
        refresh_at: now + 2880,
        claims,
        access_policies: Vec::new(),
    };
    (
        [(CACHE_CONTROL, "no-store"), (PRAGMA, "no-cache")],
        Json(token),
    )
        .into_response()
}

/// Serves on `listen` until killed, on a multi-threaded runtime like the control plane's.
/// Prints `bare-runtime listening on http://ADDR` once it accepts connections.
pub fn serve(listen: &str) -> anyhow::Result<()> {
    let key = std::env::var(KEY_ENV)
        .map_err(|_| anyhow::anyhow!("set {KEY_ENV} to the gateway key to accept"))?;
    let app = Router::new()
        .route(credmgr_control_plane_route(), get(token))
        .with_state(Arc::new(key));
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let listener = tokio::net::TcpListener::bind(listen).await?;
            println!(
                "bare-runtime listening on http://{}",
                listener.local_addr()?
            );
            axum::serve(listener, app).await?;
            Ok(())
        })
}

/// The runtime API's route, spelled with axum's placeholders.
fn credmgr_control_plane_route() -> &'static str {
    "/runtime/v1/providers/{provider_id}/connections/{connection_id}/token"
}
