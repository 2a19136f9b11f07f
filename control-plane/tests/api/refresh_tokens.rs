//! Refresh-token handling against a small local token endpoint whose answers the test
//! chooses (the real oidc-provider always rotates; providers that do not are tested here).

use std::sync::{Arc, Mutex};

use axum::http::{Method, StatusCode};
use axum::routing::post;
use credmgr_control_plane::crypto::Aad;
use credmgr_control_plane::store::TokenRecord;
use secrecy::ExposeSecret as _;
use serde_json::{json, Value};

use crate::harness::*;

/// What the endpoint answers next, and the refresh tokens it was sent.
#[derive(Default)]
struct Endpoint {
    answers: Vec<(u16, Value)>,
    seen: Vec<String>,
    /// Stored before the next answer: another replica's refresh landing meanwhile.
    inject: Option<(credmgr_control_plane::store::Store, TokenRecord)>,
}

async fn token_endpoint(endpoint: Arc<Mutex<Endpoint>>) -> String {
    let app = axum::Router::new().route(
        "/token",
        post(move |body: String| {
            let endpoint = endpoint.clone();
            async move {
                let form: std::collections::HashMap<String, String> =
                    url::form_urlencoded::parse(body.as_bytes())
                        .into_owned()
                        .collect();
                let (status, answer, inject) = {
                    let mut e = endpoint.lock().unwrap();
                    e.seen
                        .push(form.get("refresh_token").cloned().unwrap_or_default());
                    let (status, answer) = e.answers.remove(0);
                    (status, answer, e.inject.take())
                };
                if let Some((store, record)) = inject {
                    assert!(store.put_token("gh", "alice", 0, &record).await.unwrap());
                }
                (StatusCode::from_u16(status).unwrap(), axum::Json(answer))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/token")
}

/// gh/alice on an authorization-code provider whose token endpoint is a new `Endpoint`, with
/// an expired access token `at-0` and the refresh token `rt-1` stored.
async fn setup(h: &Harness) -> Arc<Mutex<Endpoint>> {
    let endpoint = Arc::new(Mutex::new(Endpoint::default()));
    let mut body = provider_body(&token_endpoint(endpoint.clone()).await);
    body["grant_type"] = json!("authorization_code");
    body["authorization_url"] = json!("https://idp.example/authorize");
    let r = h.admin(Method::PUT, "/v1/providers/gh", Some(body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    h.connection("gh", "alice").await;
    let t = now() - 100;
    let ring = &h.state.keyring;
    let record = TokenRecord {
        access_token: ring
            .encrypt(&Aad::connection_access_token("gh", "alice"), b"at-0")
            .unwrap(),
        refresh_token: Some(
            ring.encrypt(&Aad::connection_refresh_token("gh", "alice"), b"rt-1")
                .unwrap(),
        ),
        refresh_token_expires_at: None,
        token_type: "Bearer".into(),
        claims: Default::default(),
        obtained_at: t,
        expires_at: t + 60,
        refresh_at: t + 30,
    };
    h.put_token("gh", "alice", &record).await;
    endpoint
}

async fn stored_refresh_token(h: &Harness) -> Option<String> {
    let t = h.state.store.get_token("gh", "alice").await.unwrap()?;
    let env = t.refresh_token?;
    let rt = h
        .state
        .keyring
        .decrypt_string(&Aad::connection_refresh_token("gh", "alice"), &env)
        .unwrap();
    Some(rt.expose_secret().to_owned())
}

#[tokio::test]
async fn a_response_without_a_refresh_token_keeps_the_old_one_and_a_new_one_replaces_it() {
    let h = Harness::new().await;
    let endpoint = setup(&h).await;
    endpoint.lock().unwrap().answers = vec![
        (200, json!({"access_token": "at-1", "expires_in": 1})),
        (
            200,
            json!({"access_token": "at-2", "expires_in": 3600, "refresh_token": "rt-2"}),
        ),
    ];
    let r = h.runtime("gh", "alice").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["access_token"], "at-1");
    assert_eq!(stored_refresh_token(&h).await.as_deref(), Some("rt-1"));
    // at-1 lives 1 s, so it is due at once: the next request refreshes with rt-1 again.
    let r = h.runtime("gh", "alice").await;
    assert_eq!(r.json["access_token"], "at-2", "{}", r.json);
    assert_eq!(stored_refresh_token(&h).await.as_deref(), Some("rt-2"));
    assert_eq!(endpoint.lock().unwrap().seen, ["rt-1", "rt-1"]);
    assert!(!r.json.to_string().contains("rt-2"), "never handed out");
}

#[tokio::test]
async fn invalid_grant_with_no_newer_refresh_token_stored_gives_up_at_once() {
    let h = Harness::new().await;
    let endpoint = setup(&h).await;
    let refused = (
        400,
        json!({"error": "invalid_grant", "error_description": "used"}),
    );
    endpoint.lock().unwrap().answers = vec![refused.clone()];
    let r = h.runtime("gh", "alice").await;
    assert_error(&r, StatusCode::SERVICE_UNAVAILABLE, "refresh_token_invalid");
    assert_eq!(
        endpoint.lock().unwrap().seen,
        ["rt-1"],
        "same token stored: no retry"
    );
    let conn = h.shown_connection("gh", "alice").await;
    assert_eq!(conn["status"], "error");
    assert_eq!(conn["error"]["code"], "refresh_token_invalid");
    assert_eq!(
        stored_refresh_token(&h).await,
        None,
        "dead tokens are dropped"
    );
    // Later requests do not ask the provider again.
    let r = h.runtime("gh", "alice").await;
    assert_error(&r, StatusCode::SERVICE_UNAVAILABLE, "refresh_token_invalid");
    assert_eq!(endpoint.lock().unwrap().seen.len(), 1);
}

#[tokio::test]
async fn invalid_grant_after_another_replica_rotated_retries_with_the_newer_refresh_token() {
    let h = Harness::new().await;
    let endpoint = setup(&h).await;
    let mut newer = h.stored_token("gh", "alice").await;
    newer.refresh_token = Some(
        h.state
            .keyring
            .encrypt(&Aad::connection_refresh_token("gh", "alice"), b"rt-newer")
            .unwrap(),
    );
    {
        let mut e = endpoint.lock().unwrap();
        e.inject = Some((h.state.store.clone(), newer));
        e.answers = vec![
            (400, json!({"error": "invalid_grant"})),
            (
                200,
                json!({"access_token": "at-3", "expires_in": 3600, "refresh_token": "rt-3"}),
            ),
        ];
    }
    let r = h.runtime("gh", "alice").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["access_token"], "at-3");
    assert_eq!(endpoint.lock().unwrap().seen, ["rt-1", "rt-newer"]);
    assert_eq!(stored_refresh_token(&h).await.as_deref(), Some("rt-3"));
}

#[tokio::test]
async fn a_provider_that_is_down_leaves_the_tokens_and_serves_the_valid_one() {
    let h = Harness::new().await;
    let endpoint = setup(&h).await;
    // Due (its refresh time has passed) but still valid.
    let t = now();
    h.change_token("gh", "alice", |record| {
        record.obtained_at = t - 50;
        record.refresh_at = t - 10;
        record.expires_at = t + 50;
    })
    .await;
    endpoint.lock().unwrap().answers = vec![(503, json!({"message": "down"}))];
    let r = h.runtime("gh", "alice").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["access_token"], "at-0");
    assert_eq!(stored_refresh_token(&h).await.as_deref(), Some("rt-1"));
    let conn = h.shown_connection("gh", "alice").await;
    assert_eq!(conn["status"], "connected", "{conn}");
    assert_eq!(conn["error"]["code"], "provider_error", "{conn}");
}

/// Log lines written while `work` runs on this thread (a current-thread runtime runs every
/// task here).
async fn logged<F: std::future::Future>(work: F) -> (F::Output, String) {
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let output = {
        let _guard = tracing::subscriber::set_default(subscriber);
        work.await
    };
    let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    (output, text)
}

#[tokio::test]
async fn the_log_says_rotated_only_when_the_refresh_token_changed() {
    let h = Harness::new().await;
    let endpoint = setup(&h).await;
    endpoint.lock().unwrap().answers = vec![
        // The same refresh token back: no rotation.
        (
            200,
            json!({"access_token": "at-1", "expires_in": 1, "refresh_token": "rt-1"}),
        ),
        (
            200,
            json!({"access_token": "at-2", "expires_in": 3600, "refresh_token": "rt-2"}),
        ),
    ];
    let (r, log) = logged(h.runtime("gh", "alice")).await;
    assert_eq!(r.json["access_token"], "at-1", "{}", r.json);
    let line = log.lines().find(|l| l.contains("token obtained")).unwrap();
    assert!(line.contains("rotated=false"), "{line}");
    // at-1 lives 1 s: the next request refreshes, and gets a new refresh token.
    let (r, log) = logged(h.runtime("gh", "alice")).await;
    assert_eq!(r.json["access_token"], "at-2", "{}", r.json);
    let line = log.lines().find(|l| l.contains("token obtained")).unwrap();
    assert!(line.contains("rotated=true"), "{line}");
    assert!(!log.contains("rt-1") && !log.contains("rt-2"), "{log}");
}
