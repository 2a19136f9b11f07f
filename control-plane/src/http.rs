//! Assembles the HTTP routers: on the plain listener the management API (admin token), the
//! runtime API (gateway keys) and the unauthenticated operational endpoints; on the gateways'
//! TLS listener the runtime API (client certificates) and `/healthz`.

use std::any::Any;

use axum::extract::State;
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
use utoipa::OpenApi as _;

use crate::audit;
use crate::error::ApiError;
use crate::state::AppState;
use crate::{auth, consent, gateway_tls, metrics, runtime, telemetry};

/// The whole HTTP surface of the control plane: [`routes`], with the management changes
/// recorded in the audit trail.
pub fn app(state: AppState) -> Router {
    audit::changes::record_changes(routes(state.clone()), state)
}

/// The routes of [`app`] without the audit recorder around them (a fallback service, which
/// hides them): what the OpenAPI test lists the served paths from.
pub fn routes(state: AppState) -> Router {
    let management = crate::management::routes()
        .route_layer(from_fn_with_state(state.clone(), auth::require_admin));
    let runtime = runtime::routes()
        .route_layer(from_fn_with_state(state.clone(), auth::require_gateway))
        .route_layer(from_fn_with_state(
            state.clone(),
            telemetry::request::time_runtime,
        ));
    let router = Router::new()
        .merge(management)
        .merge(runtime)
        .merge(consent::browser_routes())
        // The web console: one line, so merges with other route changes stay easy.
        .merge(crate::console::routes(state.clone()))
        .route("/metrics", get(metrics_text))
        .route("/openapi.json", get(openapi_json));
    finish(router, state)
}

/// What the gateways' TLS listener serves: the runtime API, whose gateway is the one the
/// client certificate names, and `/healthz`. The management API, the consent pages and
/// `/metrics` are on the plain listener only.
pub fn gateway_app(state: AppState) -> Router {
    let runtime = runtime::routes()
        .route_layer(from_fn(gateway_tls::require_client_certificate))
        .route_layer(from_fn_with_state(
            state.clone(),
            telemetry::request::time_runtime,
        ));
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
                .make_span_with(telemetry::request::request_span)
                .on_response(telemetry::request::RecordStatus)
                .on_failure(DefaultOnFailure::new().level(Level::DEBUG)),
        )
        .layer(CatchPanicLayer::custom(panicked))
        .with_state(state)
}

/// The operations of this module, for the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(healthz, readyz, metrics_text, openapi_json))]
pub struct Api;

/// The answer of `/healthz`.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: &'static str,
}

/// The answer of `/readyz` when the database answers.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Ready {
    /// Always `ready`.
    pub status: &'static str,
    /// `sqlite` or `postgresql`.
    pub store: &'static str,
}

/// Liveness: `200 {"status":"ok"}` while the process serves HTTP. It does not look at the
/// database, so an orchestrator does not restart every replica during a database outage
/// (they recover by themselves); `/readyz` says whether a replica can serve.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "operations",
    responses((status = 200, description = "The process serves HTTP", body = Health))
)]
async fn healthz() -> Response {
    Json(Health { status: "ok" }).into_response()
}

/// How long readiness waits for the database.
const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Readiness: `200 {"status":"ready","store":"<kind>"}` when the database answers within
/// two seconds, else `503` with the usual error body and `"store"`. For load balancers and
/// Envoy health checks: a replica whose database is unreachable gets no traffic.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "operations",
    responses(
        (status = 200, description = "The database answers", body = Ready),
        (
            status = 503,
            description = "`store_unavailable`: the database does not answer within 2 s (`details.store` names it)",
            body = credmgr_common::ErrorBody
        )
    )
)]
async fn readyz(State(state): State<AppState>) -> Response {
    let kind = state.store.kind();
    let failure = match tokio::time::timeout(READY_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => {
            return Json(Ready {
                status: "ready",
                store: kind,
            })
            .into_response()
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

/// Prometheus metrics (OpenMetrics text). Unauthenticated: keep the plain listener off
/// public networks, or filter `/metrics` in front of it.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "operations",
    responses(
        (
            status = 200,
            description = "The metrics",
            content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8",
            body = String
        ),
        (status = 500, description = "`internal_error`", body = credmgr_common::ErrorBody)
    )
)]
async fn metrics_text(State(state): State<AppState>) -> Result<Response, ApiError> {
    telemetry::gauges::refresh(&state).await;
    let text = state
        .metrics
        .encode()
        .map_err(|e| ApiError::Internal(format!("encoding metrics: {e}")))?;
    Ok(([(CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response())
}

/// This document: the OpenAPI 3.1 description of every JSON operation above, generated from
/// the handlers and their types (committed as `control-plane/openapi.json`). Unauthenticated,
/// like `/healthz`: it describes the API's shape and holds no configuration or secret.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi",
    tag = "operations",
    responses(
        (
            status = 200,
            description = "The OpenAPI document",
            content_type = "application/json",
            body = Object
        )
    )
)]
async fn openapi_json() -> Response {
    static DOCUMENT: std::sync::LazyLock<String> = std::sync::LazyLock::new(openapi_document);
    ([(CONTENT_TYPE, "application/json")], DOCUMENT.as_str()).into_response()
}

/// The OpenAPI document of [`app`], as `/openapi.json` serves it.
pub fn openapi_document() -> String {
    crate::openapi::to_json(&crate::openapi::document(Api::openapi()))
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
