//! The OpenAPI document: served at `/openapi.json` without credentials, identical to the
//! committed `control-plane/openapi.json`, and naming every route the router serves.

use std::collections::BTreeSet;

use axum::http::{Method, StatusCode};
use serde_json::Value;

use crate::harness::*;

/// How to bring the committed document up to date.
const REGENERATE: &str = "UPDATE_OPENAPI=1 cargo test -p credmgr-control-plane --test api openapi";

/// Routes that are not JSON operations and stay out of the document, by path prefix: the
/// web console's HTML pages.
const NOT_IN_DOCUMENT: &[&str] = &["/console"];

fn committed_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.json")
}

#[tokio::test]
async fn the_served_document_is_the_committed_one() {
    let h = Harness::new().await;
    let reply = h.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.json);
    assert_eq!(reply.headers["content-type"], "application/json");
    assert_eq!(reply.json["openapi"], "3.1.0");
    let served = credmgr_control_plane::http::openapi_document();
    assert_eq!(
        serde_json::from_str::<Value>(&served).unwrap(),
        reply.json,
        "the served document is not openapi_document()"
    );
    let path = committed_path();
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &served).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != served {
        let line = committed
            .lines()
            .zip(served.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(served.lines().count()));
        panic!(
            "control-plane/openapi.json differs from the document the code serves (first at \
             line {}). If the API changed on purpose, regenerate it with `{REGENERATE}`, \
             review the diff and commit it with the change",
            line + 1
        );
    }
}

/// The router's paths, read from its `Debug` output (axum offers no other way to list them):
/// `Router { path_router: ... Node { paths: {RouteId(0): "/v1/providers", ...} } ...`.
fn router_paths(router: &axum::Router) -> BTreeSet<String> {
    let shown = format!("{router:?}");
    // The fallback router's own paths (`/`, `/{*__private__axum_fallback}`) come after.
    let (routes, _) = shown.split_once("fallback_router:").unwrap();
    let mut paths = BTreeSet::new();
    let mut rest = routes;
    while let Some(i) = rest.find("): \"") {
        rest = &rest[i + 4..];
        let end = rest.find('"').unwrap();
        paths.insert(rest[..end].to_owned());
        rest = &rest[end..];
    }
    assert!(
        paths.contains("/healthz"),
        "cannot read the routes from the router's Debug output (axum changed it?): {shown}"
    );
    paths
}

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

#[tokio::test]
async fn every_route_of_the_router_is_in_the_document() {
    let h = Harness::new().await;
    let doc: Value =
        serde_json::from_str(&credmgr_control_plane::http::openapi_document()).unwrap();
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            METHODS
                .iter()
                .filter(|m| item.get(**m).is_some())
                .map(move |m| (path.clone(), m.to_string()))
        })
        .collect();
    // Without the audit recorder, whose fallback service hides the routes from `Debug`.
    let router = credmgr_control_plane::http::routes(h.state.clone());
    let mut served = BTreeSet::new();
    for path in router_paths(&router) {
        if NOT_IN_DOCUMENT.iter().any(|p| path.starts_with(p)) {
            continue;
        }
        // Which methods the path answers: every other one gets the router's 405.
        let concrete = path.replace('{', "x").replace('}', "");
        for method in METHODS {
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let reply = h.call(m, &concrete, None, None).await;
            if reply.status != StatusCode::METHOD_NOT_ALLOWED {
                served.insert((path.clone(), method.to_owned()));
            }
        }
    }
    // The gateways' TLS listener serves a subset: the runtime API, `/healthz`, `/readyz`.
    let gateway = credmgr_control_plane::http::gateway_app(h.state.clone());
    for path in router_paths(&gateway) {
        assert!(
            documented.iter().any(|(p, _)| *p == path),
            "the gateways' TLS listener serves {path}, which the document does not name"
        );
    }
    let missing: Vec<_> = served.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&served).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "the router and the OpenAPI document disagree.\nserved but not documented (add a \
         #[utoipa::path] to the handler and its module's `Api`, or, for a non-JSON route, a \
         prefix to NOT_IN_DOCUMENT): {missing:?}\ndocumented but not served: {extra:?}"
    );
}

#[tokio::test]
async fn the_document_describes_security_errors_and_etags() {
    let doc: Value =
        serde_json::from_str(&credmgr_control_plane::http::openapi_document()).unwrap();
    let schemes = &doc["components"]["securitySchemes"];
    for scheme in [
        "admin_token",
        "gateway_key",
        "gateway_certificate",
        "caller_jwt",
    ] {
        assert!(schemes.get(scheme).is_some(), "{scheme}");
    }
    let provider = &doc["paths"]["/v1/providers/{provider_id}"];
    assert_eq!(
        provider["get"]["security"][0]["admin_token"],
        Value::Array(vec![])
    );
    assert!(provider["get"]["responses"]["200"]["headers"]
        .get("ETag")
        .is_some());
    let params = provider["put"]["parameters"].as_array().unwrap();
    assert!(params
        .iter()
        .any(|p| p["name"] == "If-Match" && p["in"] == "header"));
    assert_eq!(
        provider["get"]["responses"]["404"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/ErrorBody"
    );
    // Secrets are write-only: in requests, never in answers.
    let body = &doc["components"]["schemas"]["ProviderBody"]["properties"]["client_secret"];
    assert_eq!(body["writeOnly"], true, "{body}");
    let view = &doc["components"]["schemas"]["ProviderView"]["properties"]["client_secret"];
    assert!(
        view.get("type").is_none() || view["type"] != "string",
        "{view}"
    );
    let body = &doc["components"]["schemas"]["WebhookBody"]["properties"]["secret"];
    assert_eq!(body["writeOnly"], true, "{body}");
    let view = &doc["components"]["schemas"]["WebhookView"]["properties"]["secret"];
    assert_eq!(view["$ref"], "#/components/schemas/SecretState", "{view}");
    assert!(doc["paths"]["/healthz"]["get"].get("security").is_none());
    assert!(doc["paths"]["/openapi.json"]["get"]
        .get("security")
        .is_none());
}
