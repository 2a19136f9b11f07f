//! Traces through Envoy: a request that carries a W3C `traceparent` and misses the filter's
//! cache makes the filter call the control plane with that `traceparent`, and the control
//! plane, exporting to an OTLP collector, puts its spans (the runtime request, the token
//! fetch) in the request's trace.

use std::time::Duration;

use credmgr_e2e::control_plane::ControlPlane;
use credmgr_e2e::otlp_collector::OtlpCollector;
use credmgr_e2e::stack::{Backend, OAuthServer, CONNECTION, PROVIDER};
use credmgr_e2e::{free_port, wait_for, Deployment};

const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const CALLER_SPAN: &str = "b7ad6b7169203331";

#[test]
fn a_request_with_a_traceparent_gets_the_control_planes_spans_in_its_trace() {
    let collector = OtlpCollector::start();
    let otlp = collector.url();
    let dir = tempfile::Builder::new()
        .prefix("credmgr-e2e-")
        .tempdir()
        .unwrap();
    let oauth = OAuthServer::start(dir.path(), &[("ACCESS_TOKEN_TTL", "3600")]);
    let control_plane = ControlPlane::start_with(
        dir.path(),
        free_port(),
        &[
            ("CREDMGR_OTLP_ENDPOINT", otlp.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );
    let backend = Backend::start(dir.path(), &oauth);
    control_plane.create_client_credentials_connection(&oauth, PROVIDER, CONNECTION);
    let d = Deployment::with_envoy(dir, oauth, control_plane, backend, "demo.yaml");

    // The first request misses the filter's cache: the filter asks the control plane.
    let traceparent = format!("00-{TRACE_ID}-{CALLER_SPAN}-01");
    let (status, seen) = d.call_with("/hello", &[("traceparent", traceparent.as_str())]);
    assert_eq!(status, 200, "{seen}");

    let spans = wait_for(
        "the control plane's spans in the caller's trace",
        Duration::from_secs(20),
        || {
            let spans = collector.trace(TRACE_ID);
            spans
                .iter()
                .any(|s| s.name == "token_fetch")
                .then_some(spans)
        },
    );
    let server = spans
        .iter()
        .find(|s| {
            s.attribute("http.route")
                .is_some_and(|r| r.contains("/token"))
        })
        .unwrap_or_else(|| panic!("no runtime request span: {spans:#?}"));
    let fetch = spans.iter().find(|s| s.name == "token_fetch").unwrap();
    // Envoy does not trace here (no tracer configured): the filter forwarded the caller's
    // own traceparent, so the control plane's span is the child of the caller's span.
    assert_eq!(server.parent_span_id, CALLER_SPAN, "{spans:#?}");
    assert_eq!(fetch.parent_span_id, server.span_id, "{spans:#?}");
    assert_eq!(fetch.attribute("provider"), Some(PROVIDER));
    assert_eq!(fetch.attribute("outcome"), Some("hit"), "{fetch:?}");
    assert_eq!(server.attribute("http.response.status_code"), Some("200"));
}
