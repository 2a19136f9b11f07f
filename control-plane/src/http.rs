//! Assembles the HTTP routers: on the plain listener the management API (admin token), the
//! runtime API (gateway keys) and the unauthenticated operational endpoints; on the gateways'
//! TLS listener the runtime API (client certificates) and `/healthz`.

use std::any::Any;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use credmgr_common::error::codes;
use credmgr_common::ErrorBody;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::{DefaultOnFailure, TraceLayer};
use tracing::Level;

use crate::audit;
use crate::error::ApiError;
use crate::state::AppState;
use crate::{
    access_policies, auth, connections, consent, gateway_tls, issuers, keys, metrics, providers,
    runtime, webhooks,
};

/// The whole HTTP surface of the control plane.
pub fn app(state: AppState) -> Router {
    let management = Router::new()
        .merge(providers::routes())
        .merge(providers::catalogue::routes())
        .merge(connections::routes())
        .merge(consent::management_routes())
        .merge(keys::routes())
        .merge(issuers::routes())
        .merge(access_policies::routes())
        .merge(webhooks::routes().merge(audit::routes()))
        .route_layer(from_fn_with_state(state.clone(), auth::require_admin));
    let runtime =
        runtime::routes().route_layer(from_fn_with_state(state.clone(), auth::require_gateway));
    let router = Router::new()
        .merge(management)
        .merge(runtime)
        .merge(consent::browser_routes())
        .route("/metrics", get(metrics_text));
    audit::changes::record_changes(finish(router, state.clone()), state)
}

/// What the gateways' TLS listener serves: the runtime API, whose gateway is the one the
/// client certificate names, and `/healthz`. The management API, the consent pages and
/// `/metrics` are on the plain listener only.
pub fn gateway_app(state: AppState) -> Router {
    let runtime = runtime::routes().route_layer(from_fn(gateway_tls::require_client_certificate));
    finish(Router::new().merge(runtime), state)
}

/// What every listener has: `/healthz`, JSON errors for unknown paths and methods, request
/// tracing, panics answered as 500.
fn finish(router: Router<AppState>, state: AppState) -> Router {
    router
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        // After all routes: applies to the paths registered above.
        .method_not_allowed_fallback(method_not_allowed)
        // Failures are logged by the handlers, with their meaning; the trace layer's own
        // "response failed" line would only repeat them at ERROR.
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_failure(DefaultOnFailure::new().level(Level::DEBUG)),
        )
        .layer(CatchPanicLayer::custom(panicked))
        .with_state(state)
}

/// The request log's span: the method and the route's template, never the URI, whose path
/// and query carry login-link secrets and the callback's `code` and `state`.
fn request_span(request: &Request) -> tracing::Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("(no route)", MatchedPath::as_str);
    tracing::debug_span!("request", method = %request.method(), route)
}

/// Liveness: `200 {"status":"ok"}` while the process serves HTTP. It does not look at the
/// database, so an orchestrator does not restart every replica during a database outage
/// (they recover by themselves); `/readyz` says whether a replica can serve.
async fn healthz() -> Response {
    Json(serde_json::json!({"status": "ok"})).into_response()
}

/// How long readiness waits for the database.
const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Readiness: `200 {"status":"ready","store":"<kind>"}` when the database answers within
/// two seconds, else `503` with the usual error body and `"store"`. For load balancers and
/// Envoy health checks: a replica whose database is unreachable gets no traffic.
async fn readyz(State(state): State<AppState>) -> Response {
    let kind = state.store.kind();
    let failure = match tokio::time::timeout(READY_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => {
            return Json(serde_json::json!({"status": "ready", "store": kind})).into_response()
        }
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no answer within {}s", READY_TIMEOUT.as_secs()),
    };
    tracing::error!(store = kind, error = %failure, "readiness check: the database does not answer");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(
            ErrorBody::new(
                codes::STORE_UNAVAILABLE,
                format!("the {kind} database does not answer"),
            )
            .with_detail("store", kind),
        ),
    )
        .into_response()
}

async fn metrics_text(State(state): State<AppState>) -> Result<Response, ApiError> {
    let text = state
        .metrics
        .encode()
        .map_err(|e| ApiError::Internal(format!("encoding metrics: {e}")))?;
    Ok(([(CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response())
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint".into())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// A panic in a handler is a bug: log it, answer 500 in the usual shape, keep serving.
fn panicked(payload: Box<dyn Any + Send + 'static>) -> Response {
    let what = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("non-string panic payload");
    ApiError::Internal(format!("handler panicked: {what}")).into_response()
}
