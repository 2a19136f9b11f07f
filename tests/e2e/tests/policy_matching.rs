//! Policy sets chosen by request matching in a real Envoy (`envoy/matching.yaml`): rules on the
//! host, path, method and a header each pick their set, the first match wins, an unmatched
//! request passes untouched or takes `default_policy`, and route metadata, when the
//! configuration reads it, wins over the rules.

use credmgr_e2e::stack::{Envoy, PROVIDER};
use credmgr_e2e::{http, status_and_json, Deployment};
use serde_json::Value;

/// A request to `base` + `path`, with `method` and `headers`; the status and what the backend
/// saw (or its refusal).
fn send(base: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = http().request(method, format!("{base}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    status_and_json(
        req.send()
            .unwrap_or_else(|e| panic!("request through Envoy: {e}")),
    )
}

/// The policy set that handled the request, by the `x-policy` header it set, and the
/// fingerprint of the token the backend accepted.
fn chosen(answer: (u16, Value)) -> (String, String) {
    let (status, seen) = answer;
    assert_eq!(
        status, 200,
        "the backend must accept the injected token: {seen}"
    );
    let policy = seen["headers"]["x-policy"]
        .as_str()
        .unwrap_or_else(|| panic!("no x-policy in {seen}"))
        .to_owned();
    let fingerprint = seen["token_fingerprint"]
        .as_str()
        .unwrap_or_else(|| panic!("no token_fingerprint in {seen}"))
        .to_owned();
    (policy, fingerprint)
}

/// The request reached the backend as sent: no token (the backend refuses it), no tag.
fn untouched(answer: (u16, Value)) {
    let (status, body) = answer;
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        body["error"]["code"], "unauthenticated",
        "the backend's own answer: {body}"
    );
}

/// The URL of the listener `name`, which Envoy bound to a port of its choosing.
fn listener_url(admin_url: &str, name: &str) -> String {
    let listeners: Value = http()
        .get(format!("{admin_url}/listeners?format=json"))
        .send()
        .and_then(|r| r.json())
        .unwrap_or_else(|e| panic!("reading Envoy's /listeners: {e}"));
    let port = listeners["listener_statuses"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|l| l["name"] == name)
        .and_then(|l| l["local_address"]["socket_address"]["port_value"].as_u64())
        .unwrap_or_else(|| panic!("no listener {name} in {listeners}"));
    format!("http://127.0.0.1:{port}")
}

#[test]
fn host_path_method_and_header_rules_each_choose_their_set_and_route_metadata_wins() {
    let d = Deployment::start_with(3600, "matching.yaml");
    let (status, body) = d.control_plane.admin(
        "PUT",
        &format!("/v1/providers/{PROVIDER}/connections/second"),
        Some(serde_json::json!({"display_name": "Second service account"})),
    );
    assert_eq!(status, 201, "{body}");
    d.control_plane.allow_test_gateway(PROVIDER, "second");
    let url = d.envoy.url.as_str();

    // Host: `*.tenant.example`, any case, any port; not the bare `tenant.example`.
    let (policy, demo) = chosen(send(url, "GET", "/x", &[("host", "a.tenant.example")]));
    assert_eq!(policy, "by-host");
    let (policy, _) = chosen(send(
        url,
        "GET",
        "/x",
        &[("host", "B.c.Tenant.Example:8443")],
    ));
    assert_eq!(policy, "by-host");
    untouched(send(url, "GET", "/x", &[("host", "tenant.example")]));

    // Path: exactly `/exact`, whatever the query string.
    let (policy, fp) = chosen(send(url, "GET", "/exact?page=2", &[]));
    assert_eq!((policy.as_str(), fp.as_str()), ("by-path", demo.as_str()));
    untouched(send(url, "GET", "/exact/more", &[]));

    // Method: DELETE or PATCH, and this set uses the other connection: another token.
    let (policy, second) = chosen(send(url, "DELETE", "/x", &[]));
    assert_eq!(policy, "by-method");
    assert_ne!(second, demo, "by-method uses the connection `second`");
    let (policy, _) = chosen(send(url, "PATCH", "/x", &[]));
    assert_eq!(policy, "by-method");
    untouched(send(url, "POST", "/x", &[]));

    // Header value, exactly.
    let (policy, fp) = chosen(send(url, "GET", "/x", &[("x-tenant", "acme")]));
    assert_eq!(
        (policy.as_str(), fp.as_str()),
        ("by-header", second.as_str())
    );
    untouched(send(url, "GET", "/x", &[("x-tenant", "other")]));

    // First match wins: host (rule 0) over path (1), method (2) and header (3).
    let all = [("host", "a.tenant.example"), ("x-tenant", "acme")];
    let (policy, _) = chosen(send(url, "DELETE", "/exact", &all));
    assert_eq!(policy, "by-host");
    let (policy, _) = chosen(send(url, "DELETE", "/exact", &[("x-tenant", "acme")]));
    assert_eq!(policy, "by-path");

    // Route metadata (read here: `"route_metadata": true`) wins over every rule.
    let (policy, _) = chosen(send(url, "DELETE", "/routed/exact", &all));
    assert_eq!(policy, "by-route");

    // The other listener: same rules, a default_policy, route metadata not read.
    let other = listener_url(&d.envoy.admin_url, "with-default");
    let (policy, _) = chosen(send(&other, "GET", "/x", &[]));
    assert_eq!(
        policy, "fallback",
        "an unmatched request takes default_policy"
    );
    let (policy, _) = chosen(send(&other, "GET", "/routed/x", &[]));
    assert_eq!(
        policy, "fallback",
        "route metadata is not read without route_metadata"
    );
    let (policy, _) = chosen(send(&other, "GET", "/routed/x", &[("x-tenant", "acme")]));
    assert_eq!(policy, "by-header");
    let (policy, _) = chosen(send(&other, "GET", "/x", &[("host", "z.tenant.example")]));
    assert_eq!(policy, "by-host");
}

#[test]
fn envoy_refuses_a_bad_rule_and_the_log_names_its_field() {
    let dir = tempfile::tempdir().unwrap();
    let vars = [
        ("CONTROL_PLANE_PORT", "1".to_owned()),
        ("BACKEND_PORT", "1".to_owned()),
        ("CREDMGR_GATEWAY_KEY", "unused".to_owned()),
        ("CREDMGR_PROVIDER_ID", "demo".to_owned()),
        ("CREDMGR_CONNECTION_ID", "demo".to_owned()),
    ];
    let (code, log) = Envoy::run_expecting_exit(dir.path(), "matching.yaml", &vars, |config| {
        config.replace("\"path\": \"/exact\"", "\"path\": \"exact\"")
    });
    assert_ne!(code, 0, "Envoy must refuse the configuration; log:\n{log}");
    assert!(
        log.contains("invalid credmgr filter configuration: at rules[1].match.path"),
        "the log must name the rule's field; log:\n{log}"
    );
}
