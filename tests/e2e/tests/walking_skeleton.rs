//! The walking skeleton, end to end: a token from a real OAuth server (`oidc-provider`) reaches
//! a backend through a real Envoy running the credmgr filter, with the real control plane in
//! between. The caller sends no credentials of its own.

use credmgr_e2e::stack::{CONNECTION, PROVIDER};
use credmgr_e2e::{contains_bytes, wait_for, Deployment, Envoy};
use std::time::Duration;

fn fingerprint(seen: &serde_json::Value) -> String {
    seen["token_fingerprint"]
        .as_str()
        .unwrap_or_else(|| panic!("no token_fingerprint in {seen}"))
        .to_owned()
}

#[test]
fn a_token_reaches_the_backend_once_fetched_then_comes_from_envoys_cache_and_is_never_stored_in_plaintext(
) {
    let d = Deployment::start(3600);

    let seen = d.call_accepted("/hello");
    assert!(
        seen["scope"]
            .as_str()
            .unwrap_or_default()
            .contains("api:read"),
        "{seen}"
    );
    assert_eq!(seen["path"], "/hello");
    let first = fingerprint(&seen);

    for i in 0..10 {
        let (status, seen) = d.call(&format!("/again/{i}"));
        assert_eq!(status, 200, "request {i}: {seen}");
        assert_eq!(
            fingerprint(&seen),
            first,
            "request {i} must reuse the cached token"
        );
    }
    assert_eq!(
        d.oauth.tokens_issued(),
        1,
        "eleven requests through Envoy must cost one token at the provider: {}",
        d.oauth.stats()
    );

    // The token and the client secret at rest: never in plaintext in the database files.
    let token = d.control_plane.runtime_token(PROVIDER, CONNECTION);
    assert_eq!(
        d.oauth.tokens_issued(),
        1,
        "the runtime API serves the stored token"
    );
    let secrets: [(&str, &[u8]); 3] = [
        ("access token", token.access_token.as_bytes()),
        ("client secret", b"credmgr-demo-secret"),
        ("gateway key", d.control_plane.gateway_key.as_bytes()),
    ];
    let stored = d.control_plane.database_contents();
    for (name, bytes) in &stored {
        for (what, secret) in &secrets {
            assert!(
                !contains_bytes(bytes, secret),
                "the {what} is in plaintext in {name}"
            );
        }
    }
    assert!(
        !stored.is_empty(),
        "no database at {}",
        d.control_plane.database_url
    );

    // Nor in any process's log.
    for entry in std::fs::read_dir(d.dir.path()).unwrap().flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "log") {
            let bytes = std::fs::read(&path).unwrap();
            for (what, secret) in &secrets {
                assert!(
                    !contains_bytes(&bytes, secret),
                    "the {what} appears in {}",
                    path.display()
                );
            }
        }
    }
}

#[test]
fn after_the_token_expires_requests_carry_a_new_valid_token() {
    let d = Deployment::start(5);
    let (status, seen) = d.call("/");
    assert_eq!(status, 200, "{seen}");
    let first = fingerprint(&seen);
    let first_exp = seen["exp"]
        .as_u64()
        .unwrap_or_else(|| panic!("no exp in {seen}"));

    wait_for("the first token to expire", Duration::from_secs(30), || {
        let now = u64::try_from(credmgr_e2e::unix_now()).ok()?;
        (now > first_exp).then_some(())
    });
    let (status, seen) = d.call("/after-expiry");
    assert_eq!(
        status, 200,
        "a request after expiry must carry a valid token: {seen}"
    );
    assert_ne!(
        fingerprint(&seen),
        first,
        "the expired token must not be sent again"
    );
    assert!(
        seen["exp"].as_u64().unwrap_or_default() > first_exp,
        "{seen}"
    );
    assert!(d.oauth.tokens_issued() >= 2, "{}", d.oauth.stats());
}

#[test]
fn with_the_control_plane_down_cached_tokens_serve_and_without_one_the_answer_is_503_json() {
    let mut d = Deployment::start(3600);
    let (status, seen) = d.call("/warm");
    assert_eq!(status, 200, "{seen}");

    d.control_plane.process.stop();
    for i in 0..5 {
        let (status, seen) = d.call(&format!("/cp-down/{i}"));
        assert_eq!(
            status, 200,
            "a cached token must keep serving with the control plane down: {seen}"
        );
    }

    // A second Envoy with the same configuration starts with an empty cache.
    let dir2 = d.dir.path().join("second-envoy");
    std::fs::create_dir_all(&dir2).unwrap();
    let vars = Deployment::envoy_vars(&d.control_plane, &d.backend);
    let cold = Envoy::start(&dir2, "demo.yaml", &vars);
    let resp = credmgr_e2e::http()
        .get(format!("{}/cold", cold.url))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    let body: serde_json::Value = resp.json().unwrap();
    assert_eq!(body["error"]["code"], "control_plane_unavailable", "{body}");
    assert_eq!(body["error"]["details"]["provider_id"], PROVIDER, "{body}");
    assert_eq!(
        body["error"]["details"]["authorization_id"], CONNECTION,
        "{body}"
    );
    assert!(!body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .is_empty());
}

#[test]
fn a_filter_configuration_missing_a_required_field_is_refused_when_envoy_loads_it() {
    let dir = tempfile::tempdir().unwrap();
    let vars = vec![
        ("CONTROL_PLANE_PORT", "1".to_owned()),
        ("BACKEND_PORT", "1".to_owned()),
        ("CREDMGR_GATEWAY_KEY", "k".to_owned()),
        ("CREDMGR_PROVIDER_ID", "demo".to_owned()),
        ("CREDMGR_CONNECTION_ID", "demo".to_owned()),
    ];
    let (code, log) = Envoy::run_expecting_exit(dir.path(), "demo.yaml", &vars, |config| {
        config
            .lines()
            .filter(|l| !l.contains("\"provider-id\""))
            .collect::<Vec<_>>()
            .join("\n")
    });
    assert_ne!(code, 0, "Envoy must refuse the configuration; log:\n{log}");
    assert!(
        log.contains("invalid credmgr filter configuration") && log.contains("provider-id"),
        "the log must name the missing field; log:\n{log}"
    );
}
