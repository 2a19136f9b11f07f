//! Each HTTP request's span, and the runtime API's latency histogram.
//!
//! The span is named by the method and the route's template (`GET
//! /runtime/v1/providers/{provider_id}/connections/{connection_id}/token`), never the URI,
//! whose path and query carry login-link secrets and the callback's `code` and `state`. With
//! traces exported ([`super::otlp`]), a request that carries a W3C `traceparent` header
//! (a gateway forwards the one of the request it fetches a token for) continues that trace.

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry_http::HeaderExtractor;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::state::AppState;

/// The request log's span (`RUST_LOG=debug`), and with OTLP export on, the trace's server span.
pub fn request_span(request: &Request) -> tracing::Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("(no route)", MatchedPath::as_str);
    let method = request.method();
    let span = tracing::debug_span!("request", %method, route,
        "otel.name" = %format_args!("{method} {route}"), "otel.kind" = "server",
        "http.request.method" = %method, "http.route" = route,
        "http.response.status_code" = tracing::field::Empty,
        "otel.status_code" = tracing::field::Empty);
    if super::otlp::enabled() {
        // W3C Trace Context (`traceparent`, `tracestate`); without them, a trace of its own.
        let parent = TraceContextPropagator::new().extract(&HeaderExtractor(request.headers()));
        let _ = span.set_parent(parent);
    }
    span
}

/// Records the answer's status on the request's span (a 5xx marks it failed), then logs
/// the answer as tower-http does by default.
#[derive(Clone, Copy, Default)]
pub struct RecordStatus;

impl<B> tower_http::trace::OnResponse<B> for RecordStatus {
    fn on_response(self, response: &Response<B>, latency: Duration, span: &tracing::Span) {
        let status = response.status();
        span.record("http.response.status_code", status.as_u16());
        if status.is_server_error() {
            span.record("otel.status_code", "ERROR");
        }
        tower_http::trace::DefaultOnResponse::default().on_response(response, latency, span);
    }
}

/// Middleware of the runtime API's routes: times each answer into
/// `credmgr_runtime_request_duration_seconds`, by route template and status code.
pub async fn time_runtime(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let started = Instant::now();
    let response = next.run(request).await;
    state
        .metrics
        .runtime_request(&route, response.status().as_u16(), started.elapsed());
    response
}
