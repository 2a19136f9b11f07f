//! Gateways over mTLS, end to end: the control plane's gateway TLS listener, with the
//! certificates of `pki.rs` (the gateway `edge-mtls` is named by its URI SAN
//! spiffe://credmgr.test/gateway/edge-mtls), and Envoy running the shipped
//! `envoy/sidecar.yaml`.

mod pki;

use credmgr_e2e::stack::{CONNECTION, PROVIDER};
use credmgr_e2e::{
    contains_bytes, free_port, wait_for, Backend, ControlPlane, Deployment, Envoy, OAuthServer,
};
use pki::{Pki, GATEWAY};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Starts the control plane with its gateway TLS listener; returns it and the TLS URL.
fn control_plane(dir: &Path, pki: &Pki) -> (ControlPlane, String) {
    let env = pki.control_plane_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut cp = ControlPlane::start_with(dir, free_port(), &env);
    let tls_url = cp
        .process
        .wait_for_line("credmgr gateway TLS listening on ", Duration::from_secs(60));
    assert!(tls_url.starts_with("https://127.0.0.1:"), "{tls_url}");
    (cp, tls_url)
}

fn port_of(url: &str) -> String {
    url.rsplit(':').next().unwrap().to_owned()
}

#[test]
fn a_sidecar_with_a_client_certificate_gets_tokens_as_the_gateway_its_san_names() {
    let dir = tempfile::Builder::new()
        .prefix("credmgr-e2e-")
        .tempdir()
        .unwrap();
    let pki = Pki::make(dir.path());
    let oauth = OAuthServer::start(dir.path(), &[("ACCESS_TOKEN_TTL", "3600")]);
    let (control_plane, tls_url) = control_plane(dir.path(), &pki);
    let backend = Backend::start(dir.path(), &oauth);
    control_plane.create_client_credentials_connection(&oauth, PROVIDER, CONNECTION);
    let path = |p: &PathBuf| p.display().to_string();
    let vars = vec![
        ("CONTROL_PLANE_HOST", "127.0.0.1".to_owned()),
        ("CONTROL_PLANE_TLS_PORT", port_of(&tls_url)),
        ("CONTROL_PLANE_TLS_NAME", "localhost".to_owned()),
        ("CONTROL_PLANE_CA", path(&pki.ca)),
        ("GATEWAY_TLS_CERT", path(&pki.gateway_cert)),
        ("GATEWAY_TLS_KEY", path(&pki.gateway_key)),
        ("BACKEND_HOST", "127.0.0.1".to_owned()),
        ("BACKEND_PORT", backend.port.to_string()),
        ("CREDMGR_PROVIDER_ID", PROVIDER.to_owned()),
        ("CREDMGR_CONNECTION_ID", CONNECTION.to_owned()),
    ];
    let envoy = Envoy::start(dir.path(), "sidecar.yaml", &vars.clone());
    let d = Deployment {
        envoy,
        backend,
        control_plane,
        oauth,
        dir,
    };

    // Only the key-authenticated `test-gateway` may use the connection so far: the sidecar,
    // known by its certificate, is refused, by the name its SAN gives it.
    d.control_plane
        .disallow(PROVIDER, CONNECTION, "test-gateway");
    d.control_plane.allow(
        PROVIDER,
        CONNECTION,
        "key-gateway",
        serde_json::json!({"kind": "gateway", "name": "test-gateway"}),
    );
    let (status, body) = d.call("/orders");
    assert_eq!(status, 403, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(&format!("`{GATEWAY}`")), "{body}");

    // A policy naming the certificate's gateway lets it in (once the filter's memory of the
    // refusal, cache.denial_ttl_ms, has passed).
    d.control_plane.allow(
        PROVIDER,
        CONNECTION,
        GATEWAY,
        serde_json::json!({"kind": "gateway", "name": GATEWAY}),
    );
    let (status, seen) = wait_for(
        "the gateway policy to let the sidecar in",
        Duration::from_secs(10),
        || {
            let (status, seen) = d.call("/orders");
            (status != 403).then_some((status, seen))
        },
    );
    assert_eq!(status, 200, "the backend must accept the token: {seen}");
    assert_eq!(seen["active"], true, "{seen}");
    assert_eq!(seen["client_id"], "credmgr-demo", "{seen}");

    // The runtime API handed the token to the gateway the certificate names; the sidecar
    // has no gateway key, so it cannot have been the key-authenticated `test-gateway`.
    let log = wait_for(
        "the control plane to log the token fetch",
        Duration::from_secs(10),
        || {
            let log = d.control_plane.process.log_text();
            log.lines()
                .any(|l| {
                    l.contains("token handed out") && l.contains(&format!("gateway={GATEWAY}"))
                })
                .then_some(log)
        },
    );
    assert!(
        !log.lines()
            .any(|l| l.contains("token handed out") && l.contains("gateway=test-gateway")),
        "{log}"
    );

    // The sidecar checks whom it talks to: a control plane whose certificate is not from
    // CONTROL_PLANE_CA, or does not carry CONTROL_PLANE_TLS_NAME, gets no request.
    let foreign_ca = d.dir.path().join("foreign-ca.pem");
    std::fs::write(&foreign_ca, &pki.foreign_ca).unwrap();
    for (name, value) in [
        ("CONTROL_PLANE_CA", foreign_ca.display().to_string()),
        ("CONTROL_PLANE_TLS_NAME", "credmgr.invalid".to_owned()),
    ] {
        let sub = d.dir.path().join(format!("envoy-{name}"));
        std::fs::create_dir_all(&sub).unwrap();
        let mut vars = vars.clone();
        vars.retain(|(k, _)| *k != name);
        vars.push((name, value));
        let envoy = Envoy::start(&sub, "sidecar.yaml", &vars);
        let resp = credmgr_e2e::http()
            .get(format!("{}/orders", envoy.url))
            .send()
            .unwrap();
        assert_eq!(resp.status().as_u16(), 503, "{name}");
        let body: serde_json::Value = resp.json().unwrap();
        assert_eq!(
            body["error"]["code"], "control_plane_unavailable",
            "{name}: {body}"
        );
    }

    // No private key in any log.
    let keys = [&pki.server_key, &pki.gateway_key].map(|p| std::fs::read_to_string(p).unwrap());
    for entry in std::fs::read_dir(d.dir.path()).unwrap().flatten() {
        let file = entry.path();
        if file.extension().is_some_and(|e| e == "log") {
            let bytes = std::fs::read(&file).unwrap();
            for key in &keys {
                let body = key.lines().nth(1).unwrap();
                assert!(
                    !contains_bytes(&bytes, body.as_bytes()),
                    "{}",
                    file.display()
                );
            }
        }
    }
}

#[test]
fn the_runtime_api_refuses_no_certificate_a_foreign_or_nameless_one_and_a_wrong_key() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::make(dir.path());
    let (mut cp, tls_url) = control_plane(dir.path(), &pki);
    let token_path = credmgr_common::runtime::token_path(PROVIDER, CONNECTION);
    let tls_token_url = format!("{tls_url}{token_path}");

    // The gateway's own certificate is accepted: the connection does not exist, so 404
    // after authentication.
    let resp = pki
        .client(Some(&pki.gateway_identity))
        .get(&tls_token_url)
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    let body: serde_json::Value = resp.json().unwrap();
    assert_eq!(body["error"]["code"], "not_found", "{body}");

    // Refused at the handshake: no HTTP answer at all. A valid gateway key does not make up
    // for a missing certificate.
    let refused: [(&str, Option<&[u8]>, &str); 3] = [
        ("no client certificate", None, "peer sent no certificates"),
        (
            "a certificate from another CA",
            Some(&pki.foreign_identity),
            "UnknownIssuer",
        ),
        (
            "a certificate that names no gateway",
            Some(&pki.nameless_identity),
            "names no gateway",
        ),
    ];
    for (what, identity, reason) in refused {
        let result = pki
            .client(identity)
            .get(&tls_token_url)
            .bearer_auth(&cp.gateway_key)
            .send();
        assert!(
            result.is_err(),
            "{what}: the TLS listener must refuse the connection, got {:?}",
            result.map(|r| r.status())
        );
        wait_for(
            &format!("the control plane to log why it refused {what}"),
            Duration::from_secs(10),
            || {
                cp.process
                    .log_text()
                    .lines()
                    .any(|l| l.contains("gateway TLS handshake refused") && l.contains(reason))
                    .then_some(())
            },
        );
    }

    // The plain listener: a wrong key is 401 JSON; the right one gets through (404).
    let plain = credmgr_e2e::http();
    let resp = plain
        .get(format!("{}{token_path}", cp.url))
        .bearer_auth("wrong-gateway-key")
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let body: serde_json::Value = resp.json().unwrap();
    assert_eq!(body["error"]["code"], "unauthenticated", "{body}");
    let resp = plain
        .get(format!("{}{token_path}", cp.url))
        .bearer_auth(&cp.gateway_key)
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);

    // The management API is not served on the TLS listener, even with the admin token.
    let resp = pki
        .client(Some(&pki.gateway_identity))
        .get(format!("{tls_url}/v1/providers"))
        .bearer_auth(&cp.admin_token)
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    cp.process.stop();
}

#[test]
fn the_example_certificates_of_the_readme_commands_work() {
    // scripts/example-certs runs the openssl commands of README "Gateways over mTLS".
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let made = std::process::Command::new(credmgr_e2e::repo_root().join("scripts/example-certs"))
        .arg(&certs)
        .arg("edge-example")
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let file = |name: &str| certs.join(name).display().to_string();
    let env = [
        ("CREDMGR_GATEWAY_TLS_LISTEN", "127.0.0.1:0".to_owned()),
        ("CREDMGR_TLS_CERT", file("control-plane.pem")),
        ("CREDMGR_TLS_KEY", file("control-plane.key")),
        ("CREDMGR_GATEWAY_CLIENT_CA", file("ca.pem")),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut cp = ControlPlane::start_with(dir.path(), free_port(), &env);
    let tls_url = cp
        .process
        .wait_for_line("credmgr gateway TLS listening on ", Duration::from_secs(60));
    let read = |name: &str| std::fs::read(certs.join(name)).unwrap();
    let identity = [read("gateway.pem"), read("gateway.key")].concat();
    let client = reqwest::blocking::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&read("ca.pem")).unwrap())
        .identity(reqwest::Identity::from_pem(&identity).unwrap())
        .no_proxy()
        .build()
        .unwrap();
    let path = credmgr_common::runtime::token_path(PROVIDER, CONNECTION);
    // `localhost`, the DNS name in the example server certificate.
    let url = format!("https://localhost:{}{path}", port_of(&tls_url));
    let resp = client.get(url).send().unwrap();
    assert_eq!(
        resp.status().as_u16(),
        404,
        "authenticated, no such connection"
    );
    wait_for(
        "the runtime API to log the gateway",
        Duration::from_secs(10),
        || {
            cp.process
                .log_text()
                .contains("gateway=edge-example")
                .then_some(())
        },
    );
}

#[test]
fn sighup_reloads_the_gateway_ca_and_a_broken_file_keeps_the_previous_one() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::make(dir.path());
    let (mut cp, tls_url) = control_plane(dir.path(), &pki);
    let url = format!(
        "{tls_url}{}",
        credmgr_common::runtime::token_path(PROVIDER, CONNECTION)
    );
    // 404: authenticated (there is no such connection); Err: refused at the handshake.
    let accepted = |identity: &[u8]| {
        let result = pki.client(Some(identity)).get(&url).send();
        result.map(|r| r.status().as_u16() == 404).unwrap_or(false)
    };
    let hangup = |cp: &ControlPlane| {
        let pid = libc::pid_t::try_from(cp.process.pid()).unwrap();
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    };
    let logged = |cp: &ControlPlane, what: &str, times: usize| {
        wait_for(what, Duration::from_secs(10), || {
            (cp.process.log_text().matches(what).count() >= times).then_some(())
        })
    };
    assert!(accepted(&pki.gateway_identity) && !accepted(&pki.foreign_identity));

    // A broken CA file: the reload fails, the previous CA stays in use.
    std::fs::write(&pki.client_ca, "not a certificate").unwrap();
    hangup(&cp);
    logged(&cp, "gateway TLS files not reloaded", 1);
    assert!(accepted(&pki.gateway_identity) && !accepted(&pki.foreign_identity));

    // The other CA: its gateways are accepted, the first CA's no longer.
    std::fs::write(&pki.client_ca, &pki.foreign_ca).unwrap();
    hangup(&cp);
    logged(
        &cp,
        "gateway TLS certificate, key and client CA reloaded",
        1,
    );
    assert!(accepted(&pki.foreign_identity), "{}", cp.process.log_text());
    assert!(!accepted(&pki.gateway_identity));
    cp.process.stop();
}
