//! Webhooks and the audit trail from the outside: a receiver (a small axum server on
//! 127.0.0.1, checking signatures with its own HMAC) hears a revoked grant as
//! `refresh_failed` then `consent_required`, and a new consent as `connected`; an event
//! written before the control plane is killed arrives after its restart, once; every token
//! the filter was handed is in `/v1/audit`, one entry per time it was handed out.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use credmgr_e2e::control_plane::ControlPlane;
use credmgr_e2e::stack::{Backend, Deployment, OAuthServer, CONNECTION, PROVIDER};
use credmgr_e2e::{artifact, free_port, http, run_ok, wait_for};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};

/// The signing secret: `whsec_` and base64, as Standard Webhooks.
const SECRET: &str = "whsec_c2lnbmluZy1rZXktb2YtdGhlLWUyZS1yZWNlaXZlcg==";
/// The control plane's settings for a receiver on 127.0.0.1 that hears retries soon.
const CP_ENV: [(&str, &str); 2] = [
    ("CREDMGR_WEBHOOK_ALLOW_LOOPBACK_HTTP", "true"),
    ("CREDMGR_WEBHOOK_RETRY_BASE", "1s"),
];

/// What the receiver got: the `webhook-id`, the payload, and whether its signature held.
#[derive(Debug, Clone)]
struct Delivery {
    id: String,
    body: String,
    json: Value,
    signed: bool,
}

/// A webhook receiver on 127.0.0.1:`port`, on a runtime of its own; stops when dropped.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Delivery>>>,
    _runtime: tokio::runtime::Runtime,
}

impl Receiver {
    fn start(port: u16) -> Receiver {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("receiver runtime: {e}"));
        let got: Arc<Mutex<Vec<Delivery>>> = Default::default();
        let sink = got.clone();
        let app = axum::Router::new().route(
            "/hooks",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
                let sink = sink.clone();
                async move {
                    let h = |n: &str| {
                        headers
                            .get(n)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned()
                    };
                    let id = h("webhook-id");
                    let signed =
                        verify(&id, &h("webhook-timestamp"), &body, &h("webhook-signature"));
                    let json = serde_json::from_str(&body).unwrap_or(Value::Null);
                    sink.lock().unwrap().push(Delivery {
                        id,
                        body,
                        json,
                        signed,
                    });
                    axum::http::StatusCode::NO_CONTENT
                }
            }),
        );
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(("127.0.0.1", port)))
            .unwrap_or_else(|e| panic!("receiver on port {port}: {e}"));
        runtime.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            url: url(port),
            got,
            _runtime: runtime,
        }
    }

    fn deliveries(&self) -> Vec<Delivery> {
        self.got.lock().unwrap().clone()
    }

    fn types(&self) -> Vec<String> {
        self.deliveries()
            .iter()
            .map(|d| d.json["type"].as_str().unwrap_or("?").to_owned())
            .collect()
    }

    /// Waits until the receiver got `n` deliveries of `kind`.
    fn wait_for(&self, kind: &str, n: usize) {
        wait_for(
            &format!("{n} `{kind}` webhook(s)"),
            Duration::from_secs(60),
            || (self.types().iter().filter(|t| *t == kind).count() >= n).then_some(()),
        );
    }
}

fn url(port: u16) -> String {
    format!("http://127.0.0.1:{port}/hooks")
}

/// A receiver's check, written from the Standard Webhooks specification rather than with
/// credmgr's code: HMAC-SHA256 over `id.timestamp.body` with the base64-decoded secret,
/// compared with each `v1,` signature; the timestamp within five minutes.
fn verify(id: &str, timestamp: &str, body: &str, header: &str) -> bool {
    let b64 = base64::engine::general_purpose::STANDARD;
    let Some(key) = SECRET
        .strip_prefix("whsec_")
        .and_then(|k| b64.decode(k).ok())
    else {
        return false;
    };
    let Ok(ts) = timestamp.parse::<i64>() else {
        return false;
    };
    if (credmgr_e2e::unix_now() - ts).abs() > 300 {
        return false;
    }
    header
        .split(' ')
        .filter_map(|s| s.strip_prefix("v1,"))
        .any(|sig| {
            let Ok(sig) = b64.decode(sig) else {
                return false;
            };
            let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(&key) else {
                return false;
            };
            mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
            mac.verify_slice(&sig).is_ok()
        })
}

fn register(cp: &ControlPlane, url: &str, events: &[&str]) {
    let (status, body) = cp.admin(
        "PUT",
        "/v1/webhooks/ops",
        Some(json!({"url": url, "secret": SECRET, "events": events})),
    );
    assert_eq!(status, 201, "{body}");
}

#[test]
fn a_revoked_grant_is_heard_as_refresh_failed_then_consent_required_and_a_new_consent_as_connected()
{
    let d = Deployment::start_consent(4, &CP_ENV);
    let receiver = Receiver::start(free_port());
    register(
        &d.control_plane,
        &receiver.url,
        &[
            "connection.connected",
            "connection.refresh_failed",
            "connection.consent_required",
            "connection.recovered",
        ],
    );
    d.consent("carol");
    receiver.wait_for("connection.connected", 1);

    // The user revokes the app at the provider: every token of the grant dies.
    let token = d.control_plane.runtime_token(PROVIDER, CONNECTION);
    let revoked = http()
        .post(format!("{}/token/revocation", d.oauth.url))
        .basic_auth("credmgr-demo", Some("credmgr-demo-secret"))
        .form(&[("token", token.access_token.as_str())])
        .send()
        .unwrap();
    assert_eq!(revoked.status().as_u16(), 200);
    wait_for(
        "the next refresh to be refused",
        Duration::from_secs(30),
        || {
            let (status, body) = d.call("/after-revocation");
            (status == 503 && body["error"]["code"] == "refresh_token_invalid").then_some(())
        },
    );
    receiver.wait_for("connection.consent_required", 1);
    d.consent("carol");
    receiver.wait_for("connection.connected", 2);

    let got = receiver.deliveries();
    assert_eq!(
        receiver.types(),
        [
            "connection.connected",
            "connection.refresh_failed",
            "connection.consent_required",
            "connection.connected"
        ],
        "{got:#?}"
    );
    let failed = &got[1].json;
    assert_eq!(
        failed["data"]["error"]["code"], "refresh_token_invalid",
        "{failed}"
    );
    assert_eq!(failed["data"]["provider_id"], PROVIDER);
    assert_eq!(failed["data"]["connection_id"], CONNECTION);
    let ids: BTreeSet<&str> = got.iter().map(|g| g.id.as_str()).collect();
    assert_eq!(ids.len(), got.len(), "each event has its own id");
    let secrets = d.issued_secrets();
    for g in &got {
        assert!(g.signed, "the signature holds: {}", g.body);
        assert_eq!(g.json["id"], g.id.as_str());
        for (what, secret) in &secrets {
            assert!(
                !g.body.contains(secret.as_str()),
                "a {what} in a webhook: {}",
                g.body
            );
        }
    }
    d.assert_no_plaintext_secrets();
}

#[test]
fn an_event_written_before_the_control_plane_is_killed_arrives_after_its_restart_once() {
    let dir = tempfile::tempdir().unwrap();
    let oauth = OAuthServer::start(dir.path(), &[("ACCESS_TOKEN_TTL", "3600")]);
    let key = run_ok(
        "credmgr gen-key",
        std::process::Command::new(artifact("CREDMGR_BIN", "target/debug/credmgr"))
            .args(["gen-key", "--id", "test-key"]),
    );
    let key = String::from_utf8_lossy(&key).trim().to_owned();
    let admin = "admin-token-of-the-restart-test-0123";
    let mut env = CP_ENV.to_vec();
    env.extend([
        ("CREDMGR_KEYS", key.as_str()),
        ("CREDMGR_ADMIN_TOKEN", admin),
    ]);
    let port = free_port();
    let mut first = ControlPlane::start_with(dir.path(), port, &env);
    let receiver_port = free_port();
    register(&first, &url(receiver_port), &["connection.deleted"]);
    first.create_client_credentials_connection(&oauth, PROVIDER, CONNECTION);

    // The receiver is down: the event is in the outbox, its first attempt failed.
    let (status, _) = first.admin(
        "DELETE",
        &format!("/v1/providers/{PROVIDER}/connections/{CONNECTION}"),
        None,
    );
    assert_eq!(status, 204);
    let pending = wait_for("a failed attempt", Duration::from_secs(30), || {
        let (_, d) = first.admin("GET", "/v1/webhooks/ops/deliveries", None);
        (d[0]["attempts"].as_i64() >= Some(1)).then_some(d)
    });
    assert_eq!(pending[0]["state"], "pending", "{pending}");
    let event_id = pending[0]["event_id"].as_str().unwrap().to_owned();
    first.process.kill();

    let receiver = Receiver::start(receiver_port);
    let logs = tempfile::tempdir().unwrap();
    env.push(("CREDMGR_DATABASE_URL", first.database_url.as_str()));
    let second = ControlPlane::start_with(logs.path(), port, &env);
    receiver.wait_for("connection.deleted", 1);
    let delivered = wait_for(
        "the delivery to be recorded",
        Duration::from_secs(30),
        || {
            let (_, d) = second.admin("GET", "/v1/webhooks/ops/deliveries", None);
            (d[0]["state"] == "delivered").then_some(d)
        },
    );
    assert_eq!(delivered.as_array().map(Vec::len), Some(1), "{delivered}");
    let got = receiver.deliveries();
    assert_eq!(got.len(), 1, "once: {got:#?}");
    assert_eq!(got[0].id, event_id);
    assert!(got[0].signed);
    assert_eq!(got[0].json["data"]["connection_id"], CONNECTION);
}

#[test]
fn every_token_the_filter_was_handed_appears_once_in_the_audit_trail() {
    let dir = tempfile::Builder::new()
        .prefix("credmgr-e2e-audit-")
        .tempdir()
        .unwrap();
    // Access tokens of 8 s: the filter is handed several in the test's time.
    let oauth = OAuthServer::start(dir.path(), &[("ACCESS_TOKEN_TTL", "8")]);
    let cp = ControlPlane::start_with(dir.path(), free_port(), &[]);
    let backend = Backend::start(dir.path(), &oauth);
    cp.create_client_credentials_connection(&oauth, PROVIDER, CONNECTION);
    let d = Deployment::with_envoy(dir, oauth, cp, backend, "demo.yaml");

    let mut seen = BTreeSet::new();
    let until = credmgr_e2e::unix_now() + 12;
    while credmgr_e2e::unix_now() < until {
        let (status, body) = d.call("/audited");
        assert_eq!(status, 200, "{body}");
        // The backend shows the token by its fingerprint (the same as the runtime API's).
        let fingerprint = body["token_fingerprint"].as_str().unwrap_or_default();
        assert_eq!(fingerprint.len(), 16, "{body}");
        seen.insert(fingerprint.to_owned());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        seen.len() >= 2,
        "the filter was handed several tokens: {seen:?}"
    );

    // The runtime API's own count of the tokens it handed out, against the trail.
    let handed_out = wait_for(
        "the audit trail to catch up",
        Duration::from_secs(10),
        || {
            let metrics = http()
                .get(format!("{}/metrics", d.control_plane.url))
                .send()
                .and_then(|r| r.text())
                .unwrap_or_default();
            let served: u64 = ["hit", "fetched", "stale"]
                .iter()
                .filter_map(|o| {
                    let prefix =
                        format!("credmgr_runtime_token_requests_total{{outcome=\"{o}\"}} ");
                    metrics
                        .lines()
                        .find_map(|l| l.strip_prefix(prefix.as_str())?.parse::<u64>().ok())
                })
                .sum();
            let entries = audit_tokens(&d.control_plane);
            (entries.len() as u64 == served).then_some(entries)
        },
    );
    let mut per_token: BTreeMap<String, usize> = BTreeMap::new();
    for e in &handed_out {
        assert_eq!(e["actor"], "test-gateway", "{e}");
        assert_eq!(e["provider_id"], PROVIDER);
        *per_token
            .entry(e["detail"]["fingerprint"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    // Each handing-out is one entry (the count above), and each token the backend saw is
    // there once: tokens live 8 s, less than the 15 s after which the filter asks again for
    // a token it holds, so it was handed each once.
    for fp in &seen {
        assert_eq!(
            per_token.get(fp),
            Some(&1),
            "token {fp} once in {per_token:?}"
        );
    }
}

/// Every `token` entry of the audit trail that handed a token out, through every page.
fn audit_tokens(cp: &ControlPlane) -> Vec<Value> {
    let mut out = Vec::new();
    let mut path = "/v1/audit?limit=50".to_owned();
    loop {
        let (status, page) = cp.admin("GET", &path, None);
        assert_eq!(status, 200, "{page}");
        out.extend(
            page["entries"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|e| e["kind"] == "token" && e["detail"]["fingerprint"].is_string())
                .cloned(),
        );
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/audit?limit=50&cursor={c}"),
            None => return out,
        }
    }
}
