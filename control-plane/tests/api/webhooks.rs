//! Webhooks: the management API, events written with the changes that cause them, signed
//! deliveries to a receiver on 127.0.0.1, retries, leases shared by replicas.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, Method, StatusCode};
use credmgr_control_plane::webhooks::signature;
use credmgr_control_plane::webhooks::worker::Worker;
use serde_json::{json, Value};

use crate::harness::*;

pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub id: String,
    pub body: String,
    pub json: Value,
    pub signature_ok: bool,
}

/// A webhook receiver on 127.0.0.1 that checks signatures; answers `status`.
pub struct Receiver {
    pub url: String,
    pub got: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    pub async fn start() -> Receiver {
        Self::on(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()).await
    }

    async fn on(listener: tokio::net::TcpListener) -> Receiver {
        let url = format!("http://{}/hooks", listener.local_addr().unwrap());
        let got: Arc<Mutex<Vec<Received>>> = Default::default();
        let sink = got.clone();
        let app = axum::Router::new().route(
            "/hooks",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let sink = sink.clone();
                async move {
                    let h = |n: &str| headers[n].to_str().unwrap().to_owned();
                    let (id, ts, sig) = (
                        h("webhook-id"),
                        h("webhook-timestamp"),
                        h("webhook-signature"),
                    );
                    let key = signature::key_bytes(SECRET).unwrap();
                    let signature_ok =
                        signature::verify(&key, &id, ts.parse().unwrap(), &body, &sig);
                    sink.lock().unwrap().push(Received {
                        id,
                        json: serde_json::from_str(&body).unwrap(),
                        body,
                        signature_ok,
                    });
                    StatusCode::NO_CONTENT
                }
            }),
        );
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver { url, got, task }
    }

    pub fn types(&self) -> Vec<String> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.json["type"].as_str().unwrap().to_owned())
            .collect()
    }
}

pub async fn webhook(h: &Harness, id: &str, url: &str, events: &[&str]) -> Reply {
    h.admin(
        Method::PUT,
        &format!("/v1/webhooks/{id}"),
        Some(json!({"url": url, "secret": SECRET, "events": events})),
    )
    .await
}

const ALL: [&str; 6] = [
    "connection.connected",
    "connection.refresh_failed",
    "connection.consent_required",
    "connection.recovered",
    "connection.deleted",
    "keys.rotation_finished",
];

#[tokio::test]
async fn webhooks_are_managed_with_etags_and_a_write_only_secret() {
    let h = Harness::new().await;
    let r = h
        .admin(
            Method::PUT,
            "/v1/webhooks/ops",
            Some(json!({"url": "https://hooks.example/x", "events": ["connection.deleted"]})),
        )
        .await;
    assert_invalid_field(&r, "secret");
    let r = webhook(&h, "ops", "http://hooks.example/x", &["connection.deleted"]).await;
    assert_invalid_field(&r, "url");
    let r = webhook(
        &h,
        "ops",
        "https://hooks.example/x",
        &["connection.exploded"],
    )
    .await;
    assert_invalid_field(&r, "events[0]");
    let r = h
        .admin(
            Method::PUT,
            "/v1/webhooks/ops",
            Some(json!({"url": "https://hooks.example/x", "secret": "short", "events": ["connection.deleted"]})),
        )
        .await;
    assert_invalid_field(&r, "secret");

    let created = webhook(&h, "ops", "https://hooks.example/x", &ALL).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.json);
    assert_eq!(created.json["secret"], json!({"set": true}));
    assert_eq!(created.json["events"].as_array().unwrap().len(), 6);
    let tag = created.headers["etag"].to_str().unwrap().to_owned();
    // Replaced without the secret: it is kept.
    let r = h
        .admin_if_match(
            Method::PUT,
            "/v1/webhooks/ops",
            &tag,
            Some(json!({"url": "https://hooks.example/y", "events": ["connection.deleted"], "enabled": false})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["enabled"], false);
    let r = h
        .admin_if_match(Method::DELETE, "/v1/webhooks/ops", &tag, None)
        .await;
    assert_error(&r, StatusCode::PRECONDITION_FAILED, "precondition_failed");
    let list = h.admin(Method::GET, "/v1/webhooks", None).await;
    assert_eq!(ids(&list), ["ops"]);
    let r = h.admin(Method::DELETE, "/v1/webhooks/ops", None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = h.admin(Method::GET, "/v1/webhooks/ops", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    let seen = h.seen.lock().unwrap().join("\n");
    assert!(
        !seen.contains("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        "the secret never leaves"
    );
    h.assert_not_at_rest(&["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"])
        .await;
}

/// Runs the worker until `done` holds of what the receiver got, or 20 s.
async fn deliver_until(h: &Harness, receiver: &Receiver, done: impl Fn(&[Received]) -> bool) {
    let worker = Worker::new(h.state.clone()).unwrap();
    for _ in 0..200 {
        worker.run_once().await;
        if done(&receiver.got.lock().unwrap()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("not delivered: {:?}", receiver.types());
}

#[tokio::test]
async fn connection_events_arrive_signed_without_any_secret() {
    let h = Harness::new().await;
    let receiver = Receiver::start().await;
    let r = webhook(&h, "ops", &receiver.url, &ALL).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);

    // The provider is unreachable: the connection's first fetch fails.
    h.unreachable_connection("gh", "alice").await;
    // Then a token is stored: the connection recovered.
    h.store_fresh_token("gh", "alice", "access-token-never-in-a-payload")
        .await;
    let r = h
        .admin(Method::DELETE, "/v1/providers/gh/connections/alice", None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);

    deliver_until(&h, &receiver, |got| got.len() >= 3).await;
    assert_eq!(
        receiver.types(),
        [
            "connection.refresh_failed",
            "connection.recovered",
            "connection.deleted"
        ]
    );
    let got = receiver.got.lock().unwrap().clone();
    for r in &got {
        assert!(r.signature_ok, "signed: {}", r.body);
        assert_eq!(r.json["id"], r.id.as_str(), "webhook-id is the event id");
        assert_eq!(r.json["data"]["provider_id"], "gh");
        assert_eq!(r.json["data"]["connection_id"], "alice");
        for secret in [
            "access-token-never-in-a-payload",
            CLIENT_SECRET,
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        ] {
            assert!(!r.body.contains(secret), "no secret in {}", r.body);
        }
    }
    assert_eq!(got[0].json["data"]["error"]["code"], "provider_unreachable");

    let d = h
        .admin(Method::GET, "/v1/webhooks/ops/deliveries", None)
        .await;
    let d = d.json.as_array().unwrap().clone();
    assert_eq!(d.len(), 3);
    assert!(
        d.iter()
            .all(|d| d["state"] == "delivered" && d["attempts"] == 1 && d["last_status"] == 204),
        "{d:?}"
    );
}

#[tokio::test]
async fn a_receiver_that_is_down_gets_the_event_later_and_once() {
    let h = Harness::new().await;
    // A port that refuses connections, then a receiver on it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let url = format!("http://{addr}/hooks");
    webhook(&h, "ops", &url, &["connection.deleted"]).await;
    h.unreachable_connection("gh", "alice").await;
    h.admin(Method::DELETE, "/v1/providers/gh/connections/alice", None)
        .await;

    let worker = Worker::new(h.state.clone()).unwrap();
    assert_eq!(worker.run_once().await, 1);
    let d = h
        .admin(Method::GET, "/v1/webhooks/ops/deliveries", None)
        .await;
    assert_eq!(d.json[0]["state"], "pending", "{}", d.json);
    assert_eq!(d.json[0]["attempts"], 1);
    assert!(
        d.json[0]["last_error"]
            .as_str()
            .unwrap()
            .contains("cannot reach"),
        "{}",
        d.json
    );
    assert!(d.json[0]["next_attempt_at"].is_string());
    h.assert_metric(r#"credmgr_webhook_delivery_failures_total{outcome="retrying"} 1"#);
    // Not due yet: nothing is claimed.
    assert_eq!(worker.run_once().await, 0);

    let receiver = Receiver::on(tokio::net::TcpListener::bind(addr).await.unwrap()).await;
    // Two replicas' workers race for it; it arrives once.
    let other = h.replica().await;
    let other_worker = Worker::new(other.state.clone()).unwrap();
    for _ in 0..100 {
        tokio::join!(worker.run_once(), other_worker.run_once());
        if !receiver.got.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::join!(worker.run_once(), other_worker.run_once());
    assert_eq!(receiver.types(), ["connection.deleted"]);
    let d = h
        .admin(Method::GET, "/v1/webhooks/ops/deliveries", None)
        .await;
    assert_eq!(d.json[0]["state"], "delivered", "{}", d.json);
    assert_eq!(d.json[0]["attempts"], 2);
}

#[tokio::test]
async fn only_subscribed_events_of_enabled_webhooks_are_written() {
    let h = Harness::new().await;
    let receiver = Receiver::start().await;
    webhook(&h, "deletions", &receiver.url, &["connection.deleted"]).await;
    let off = h
        .admin(
            Method::PUT,
            "/v1/webhooks/off",
            Some(json!({"url": receiver.url, "secret": SECRET, "events": ALL, "enabled": false})),
        )
        .await;
    assert_eq!(off.status, StatusCode::CREATED);
    h.unreachable_connection("gh", "alice").await;
    h.admin(Method::DELETE, "/v1/providers/gh/connections/alice", None)
        .await;
    deliver_until(&h, &receiver, |got| !got.is_empty()).await;
    assert_eq!(receiver.types(), ["connection.deleted"]);
    let d = h
        .admin(Method::GET, "/v1/webhooks/off/deliveries", None)
        .await;
    assert_eq!(d.json, json!([]));
}

#[tokio::test]
async fn a_finished_key_rotation_is_announced_without_key_material() {
    let h = Harness::new().await;
    let receiver = Receiver::start().await;
    let r = webhook(&h, "ops", &receiver.url, &["keys.rotation_finished"]).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    h.unreachable_connection("gh", "alice").await;
    h.store_fresh_token("gh", "alice", "access-token-never-in-a-payload")
        .await;

    let rewrapper = credmgr_control_plane::keys::spawn_rewrapper(h.state.clone());
    let new_key = h.add_active_key("k2");
    let r = h.admin(Method::POST, "/v1/keys/reload", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);

    deliver_until(&h, &receiver, |got| !got.is_empty()).await;
    rewrapper.abort();
    let got = receiver.got.lock().unwrap().clone();
    assert_eq!(receiver.types(), ["keys.rotation_finished"]);
    let event = &got[0];
    assert!(event.signature_ok, "signed: {}", event.body);
    assert_eq!(event.json["data"]["active_key_id"], "k2");
    assert_eq!(event.json["data"]["failed"], 0);
    // The provider's client secret, the access token and the webhook's own secret were
    // wrapped with the old key.
    assert!(
        event.json["data"]["rewrapped"].as_u64().unwrap() >= 3,
        "{}",
        event.body
    );
    let new_key_material = new_key.split_once(':').map_or(new_key.as_str(), |(_, k)| k);
    for secret in [
        new_key_material,
        "access-token-never-in-a-payload",
        CLIENT_SECRET,
        SECRET,
    ] {
        assert!(!event.body.contains(secret), "no secret in {}", event.body);
    }
    let report = h.admin(Method::GET, "/v1/keys", None).await;
    assert_eq!(report.status, StatusCode::OK, "{}", report.json);
}
