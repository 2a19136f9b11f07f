//! Traces exported over OTLP: the `credmgr` binary with `CREDMGR_OTLP_ENDPOINT` pointing at an
//! OTLP/HTTP collector in this test, which decodes what it receives (protobuf) with
//! `opentelemetry-proto`. A runtime request that carries a W3C `traceparent` (as the filter
//! forwards it) continues that trace: its server span, the token fetch and the provider's token
//! request all carry the caller's trace id, each the child of the one before.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message as _;

const BIN: &str = env!("CARGO_BIN_EXE_credmgr");
const ADMIN: &str = "traces-test-admin-token-0123";
const GATEWAY_KEY: &str = "traces-test-gateway-key-0123";
const CLIENT_SECRET: &str = "traces-test-client-secret-4f9a";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN: &str = "00f067aa0ba902b7";

/// Kills the process if a test fails before it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One span as the collector received it.
#[derive(Debug, Clone)]
struct Span {
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    attributes: Vec<(String, String)>,
}

impl Span {
    fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Collector {
    spans: Mutex<Vec<Span>>,
    /// Every request body received, to look for secrets.
    bodies: Mutex<Vec<Vec<u8>>>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An OTLP/HTTP collector (protobuf): `POST /v1/traces`.
async fn collector() -> (Arc<Collector>, String) {
    let state = Arc::new(Collector::default());
    let s = state.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        post(move |body: Bytes| {
            let s = s.clone();
            async move {
                s.bodies.lock().unwrap().push(body.to_vec());
                let request = ExportTraceServiceRequest::decode(body).unwrap();
                let mut spans = s.spans.lock().unwrap();
                for rs in request.resource_spans {
                    for ss in rs.scope_spans {
                        for span in ss.spans {
                            let attributes = span
                                .attributes
                                .iter()
                                .map(|kv| {
                                    let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                                        Some(AnyValue::StringValue(s)) => s.clone(),
                                        Some(AnyValue::IntValue(i)) => i.to_string(),
                                        Some(AnyValue::BoolValue(b)) => b.to_string(),
                                        other => format!("{other:?}"),
                                    };
                                    (kv.key.clone(), v)
                                })
                                .collect();
                            spans.push(Span {
                                name: span.name,
                                trace_id: hex(&span.trace_id),
                                span_id: hex(&span.span_id),
                                parent_span_id: hex(&span.parent_span_id),
                                attributes,
                            });
                        }
                    }
                }
                // An empty ExportTraceServiceResponse: everything accepted.
                (
                    [("content-type", "application/x-protobuf")],
                    Vec::<u8>::new(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (state, format!("http://{addr}"))
}

/// A token endpoint that issues `tok-1`, `tok-2`, ...
async fn token_endpoint() -> String {
    let issued = Arc::new(AtomicUsize::new(0));
    let app = axum::Router::new().route(
        "/token",
        post(move || {
            let n = issued.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                axum::Json(serde_json::json!({
                    "access_token": format!("tok-{n}"), "token_type": "Bearer",
                    "expires_in": 3600,
                }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/token")
}

fn gen_key() -> String {
    let out = Command::new(BIN)
        .args(["gen-key", "--id", "k1"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Starts `credmgr serve` exporting to `otlp`; its base URL.
async fn serve(dir: &std::path::Path, otlp: &str) -> (Running, String) {
    let mut child = Command::new(BIN)
        .arg("serve")
        .env_clear()
        .env("CREDMGR_LISTEN", "127.0.0.1:0")
        .env(
            "CREDMGR_DATABASE_URL",
            format!("sqlite://{}", dir.join("credmgr.db").display()),
        )
        .env("CREDMGR_ADMIN_TOKEN", ADMIN)
        .env("CREDMGR_GATEWAY_KEYS", format!("edge-1={GATEWAY_KEY}"))
        .env("CREDMGR_KEYS", gen_key())
        .env("CREDMGR_OTLP_ENDPOINT", otlp)
        // Batches leave every 100 ms instead of every 5 s.
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let running = Running(child);
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        line
    })
    .await
    .unwrap();
    let base = line
        .trim_end()
        .strip_prefix("credmgr listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    (running, base)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_request_with_a_traceparent_continues_its_trace_to_the_provider() {
    let (collected, otlp) = collector().await;
    let token_url = token_endpoint().await;
    let dir = tempfile::tempdir().unwrap();
    let (_process, base) = serve(dir.path(), &otlp).await;
    let http = reqwest::Client::new();
    let admin = |method: reqwest::Method, path: &str, body: serde_json::Value| {
        http.request(method, format!("{base}{path}"))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
    };
    let r = admin(
        reqwest::Method::PUT,
        "/v1/providers/p",
        serde_json::json!({"identity_provider": "oauth2", "grant_type": "client_credentials",
            "client_id": "credmgr-test", "client_secret": CLIENT_SECRET,
            "token_url": token_url, "scopes": ["api:read"]}),
    )
    .await
    .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    // The connection fetches its first token, `tok-1`, when it is created.
    let r = admin(
        reqwest::Method::PUT,
        "/v1/providers/p/connections/c",
        serde_json::json!({}),
    )
    .await
    .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let r = admin(
        reqwest::Method::PUT,
        "/v1/providers/p/connections/c/access-policies/edge-1",
        serde_json::json!({"identity": {"kind": "gateway", "name": "edge-1"}}),
    )
    .await
    .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());

    // A gateway reports `tok-1` refused by a backend: the control plane asks the provider
    // again, within the request's trace.
    let fingerprint = credmgr_common::runtime::token_fingerprint("tok-1");
    let path = credmgr_common::runtime::token_path("p", "c");
    let r = http
        .get(format!("{base}{path}?rejected_fingerprint={fingerprint}"))
        .bearer_auth(GATEWAY_KEY)
        .header("traceparent", format!("00-{TRACE_ID}-{PARENT_SPAN}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let token: serde_json::Value = r.json().await.unwrap();
    assert_eq!(token["access_token"], "tok-2");

    let deadline = Instant::now() + Duration::from_secs(20);
    let spans = loop {
        let spans: Vec<Span> = collected
            .spans
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.trace_id == TRACE_ID)
            .cloned()
            .collect();
        if spans.iter().any(|s| s.name == "provider_token_request")
            && spans.iter().any(|s| s.name.starts_with("GET "))
        {
            break spans;
        }
        assert!(
            Instant::now() < deadline,
            "the trace never arrived complete: {spans:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let find = |name: &str| {
        spans
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no span {name} in {spans:#?}"))
    };
    let server = find("GET /runtime/v1/providers/{provider_id}/connections/{connection_id}/token");
    let fetch = find("token_fetch");
    let provider = find("provider_token_request");
    assert_eq!(server.parent_span_id, PARENT_SPAN, "{server:?}");
    assert_eq!(server.attribute("http.response.status_code"), Some("200"));
    assert_eq!(
        server.attribute("http.route"),
        Some("/runtime/v1/providers/{provider_id}/connections/{connection_id}/token")
    );
    assert_eq!(fetch.parent_span_id, server.span_id, "{fetch:?}");
    assert_eq!(fetch.attribute("outcome"), Some("fetched"));
    assert_eq!(fetch.attribute("connection"), Some("c"));
    // The provider's request is the fetch's descendant (the refresh runs in a task of its own,
    // in the fetch's span).
    let mut ancestor = provider.parent_span_id.clone();
    while ancestor != fetch.span_id {
        ancestor = spans
            .iter()
            .find(|s| s.span_id == ancestor)
            .unwrap_or_else(|| panic!("the provider span is not under the fetch: {spans:#?}"))
            .parent_span_id
            .clone();
    }
    assert_eq!(provider.attribute("provider"), Some("p"));
    assert_eq!(provider.attribute("grant_type"), Some("client_credentials"));
    assert_eq!(provider.attribute("outcome"), Some("success"));
    assert_eq!(provider.attribute("server.address"), Some("127.0.0.1"));

    // No secret left in what was exported.
    let bodies = collected.bodies.lock().unwrap();
    for secret in [CLIENT_SECRET, "tok-1", "tok-2", ADMIN, GATEWAY_KEY] {
        assert!(
            !bodies
                .iter()
                .any(|b| b.windows(secret.len()).any(|w| w == secret.as_bytes())),
            "{secret} was exported"
        );
    }
}
