//! The Istio recipe, proven in a real Envoy: `envoy/istio-sidecar.yaml` is an Istio sidecar's
//! outbound side as istiod generates it for `deploy/istio/wasmplugin.yaml` (the filter
//! configured as pilot converts a WasmPlugin, the control plane reached through its cluster
//! under Istio's name `outbound|8080||credmgr.credmgr.svc.cluster.local`, a route with no
//! metadata), and the `pluginConfig` is the shipped manifest's, read by the test. A request
//! the manifest's rules match reaches the backend with the connection's token; one they do
//! not match passes untouched; the filter's counters appear as `wasmcustom.credmgr.*`, the
//! prefix the recipe's proxyStatsMatcher includes.

use credmgr_e2e::stack::{Backend, Envoy, OAuthServer};
use credmgr_e2e::{http, repo_root, run_ok, status_and_json, ControlPlane};
use serde_json::Value;
use std::process::Command;

/// The control plane's Service (`deploy/base/service.yaml`, namespace `credmgr`, port 8080)
/// as an Istio sidecar names its cluster.
const ISTIO_CONTROL_PLANE_CLUSTER: &str = "outbound|8080||credmgr.credmgr.svc.cluster.local";

/// The shipped WasmPlugin's `pluginConfig` as istiod serializes it, with `gateway_key`
/// replaced by `key` (the manifest holds a placeholder).
fn shipped_plugin_config(key: &str) -> String {
    let mut cmd = Command::new(repo_root().join(".venv/bin/python"));
    cmd.arg(repo_root().join("scripts/wasmplugin-config"))
        .arg(repo_root().join("deploy/istio/wasmplugin.yaml"))
        .args(["--gateway-key", key]);
    let out = run_ok("scripts/wasmplugin-config", &mut cmd);
    String::from_utf8(out)
        .unwrap_or_else(|e| panic!("wasmplugin-config printed non-UTF-8: {e}"))
        .trim()
        .to_owned()
}

/// A request through the sidecar as the workload sends it: plain HTTP for `host`.
fn send(envoy: &Envoy, host: &str, path: &str) -> (u16, Value) {
    status_and_json(
        http()
            .get(format!("{}{path}", envoy.url))
            .header("host", host)
            .send()
            .unwrap_or_else(|e| panic!("request through the sidecar: {e}")),
    )
}

#[test]
fn the_shipped_wasmplugin_config_injects_the_token_in_an_istio_shaped_sidecar() {
    let dir = tempfile::Builder::new()
        .prefix("credmgr-e2e-istio-")
        .tempdir()
        .unwrap();
    let oauth = OAuthServer::start(dir.path(), &[("ACCESS_TOKEN_TTL", "3600")]);
    let control_plane = ControlPlane::start(dir.path());
    let backend = Backend::start(dir.path(), &oauth);

    let text = shipped_plugin_config(&control_plane.gateway_key);
    let config: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        config["control_plane"]["cluster"], ISTIO_CONTROL_PLANE_CLUSTER,
        "the manifest must name the control plane's cluster as Istio does"
    );
    // The connection the manifest's one policy set uses, created for real.
    let rule = &config["rules"][0];
    let policy = rule["policy"].as_str().unwrap();
    let context = &config["policies"][policy][0]["get-authorization-context"];
    let provider = context["provider-id"].as_str().unwrap();
    let connection = context["authorization-id"].as_str().unwrap();
    control_plane.create_client_credentials_connection(&oauth, provider, connection);

    let envoy = Envoy::start(
        dir.path(),
        "istio-sidecar.yaml",
        &[
            ("CONTROL_PLANE_PORT", control_plane.port.to_string()),
            ("BACKEND_PORT", backend.port.to_string()),
            ("ISTIO_PLUGIN_NAME", "apps.credmgr-orders".to_owned()),
            ("ISTIO_ROOT_ID", "credmgr".to_owned()),
            // A JSON string literal is a YAML scalar: the StringValue's value, verbatim.
            ("ISTIO_PLUGIN_CONFIG", serde_json::to_string(&text).unwrap()),
        ],
    );

    // A request the manifest's rule matches: the backend accepts the injected token.
    let host = rule["match"]["host"].as_str().unwrap();
    let prefix = rule["match"]["path_prefix"].as_str().unwrap();
    let (status, seen) = send(&envoy, host, &format!("{prefix}orders/42"));
    assert_eq!(status, 200, "the backend must accept the token: {seen}");
    assert_eq!(seen["active"], true, "{seen}");
    assert_eq!(seen["client_id"], "credmgr-demo", "{seen}");

    // A request no rule matches (no default_policy): untouched, the backend refuses it.
    let (status, seen) = send(&envoy, host, "/other");
    assert_eq!(status, 401, "{seen}");
    assert_eq!(seen["error"]["code"], "unauthenticated", "{seen}");

    // The counters the recipe's proxyStatsMatcher (`wasmcustom.credmgr`) lets Istio keep.
    assert!(envoy.wait_stat("wasmcustom.credmgr.token_injected", 1) >= 1);
    assert!(envoy.stat("wasmcustom.credmgr.control_plane_call") >= 1);
}
