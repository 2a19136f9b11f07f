//! The proactive refresh scheduler against a provider that takes its time: due tokens are
//! refreshed several at a time, up to the configured bound and never more, each exactly once.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::post;
use credmgr_control_plane::tokens::scheduler;

use crate::harness::{now, Harness};

/// The scheduler's bound, as `CREDMGR_REFRESH_CONCURRENCY` would set it.
const BOUND: u16 = 6;
const DELAY: Duration = Duration::from_millis(300);

#[derive(Default)]
struct Slow {
    /// Answer after DELAY (off while the connections are created).
    slow: AtomicBool,
    requests: AtomicUsize,
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
}

/// A token endpoint that counts the requests it is answering at once.
async fn slow_endpoint(state: Arc<Slow>) -> String {
    let app = axum::Router::new().route(
        "/token",
        post(move || {
            let s = state.clone();
            async move {
                let n = s.requests.fetch_add(1, Ordering::SeqCst) + 1;
                let now_in = s.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                s.most_in_flight.fetch_max(now_in, Ordering::SeqCst);
                if s.slow.load(Ordering::SeqCst) {
                    tokio::time::sleep(DELAY).await;
                }
                s.in_flight.fetch_sub(1, Ordering::SeqCst);
                axum::Json(serde_json::json!({
                    "access_token": format!("token-{n}"),
                    "token_type": "Bearer",
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn due_tokens_are_refreshed_concurrently_within_the_bound_each_once() {
    const CONNECTIONS: usize = 24;
    let h = Harness::new().await;
    let state = Arc::new(Slow::default());
    let url = slow_endpoint(state.clone()).await;
    h.provider("p", &url).await;
    for i in 0..CONNECTIONS {
        h.connection("p", &format!("c{i}")).await;
    }
    // Every token due now, as if fetched 2,900 s ago with a lifetime of an hour.
    let t = now();
    for i in 0..CONNECTIONS {
        h.store_token("p", &format!("c{i}"), "old", t - 2900, t - 20, t + 700)
            .await;
    }
    state.slow.store(true, Ordering::SeqCst);
    state.most_in_flight.store(0, Ordering::SeqCst);
    let before = state.requests.load(Ordering::SeqCst);
    let task = scheduler::spawn(
        h.state.tokens.clone(),
        h.state.store.clone(),
        Duration::from_millis(100),
        BOUND,
    )
    .unwrap();
    // One at a time this takes 24 x 300 ms = 7.2 s; 6 at a time, 1.2 s.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while state.requests.load(Ordering::SeqCst) < before + CONNECTIONS {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {CONNECTIONS} refreshed within 5 s",
            state.requests.load(Ordering::SeqCst) - before
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Long enough for a second refresh of any connection to show.
    tokio::time::sleep(DELAY * 2).await;
    task.abort();
    assert_eq!(
        state.requests.load(Ordering::SeqCst) - before,
        CONNECTIONS,
        "each due token refreshed exactly once"
    );
    let most = state.most_in_flight.load(Ordering::SeqCst);
    // The bound is used, and never exceeded.
    assert!(
        (usize::from(BOUND / 2)..=usize::from(BOUND)).contains(&most),
        "refreshes in flight at once: {most}, bound {BOUND}"
    );
    for i in 0..CONNECTIONS {
        let stored = h
            .state
            .store
            .get_token("p", &format!("c{i}"))
            .await
            .unwrap()
            .unwrap();
        assert!(stored.refresh_at > t + 2000, "c{i} holds its new token");
    }
}
