//! `/metrics` as an operator scrapes it: the values move with what the control plane does,
//! and no connection id ever becomes a label.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::post;
use credmgr_control_plane::tokens::scheduler;

use crate::harness::*;

const TOKEN_ROUTE: &str = "/runtime/v1/providers/{provider_id}/connections/{connection_id}/token";

/// A token endpoint that hands out one-hour tokens after `delay`.
async fn token_endpoint(delay: Duration) -> String {
    let app = axum::Router::new().route(
        "/token",
        post(move || async move {
            tokio::time::sleep(delay).await;
            axum::Json(serde_json::json!({
                "access_token": "issued-token", "token_type": "Bearer", "expires_in": 3600,
            }))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/token")
}

/// `/metrics` as a scraper gets it, with the store's gauges read again.
async fn scrape(h: &Harness) -> String {
    h.state.metrics.expire_store_gauges();
    let r = h
        .raw(Request::get("/metrics").body(Body::empty()).unwrap())
        .await;
    assert_eq!(r.status, StatusCode::OK);
    r.json.as_str().unwrap().to_owned()
}

/// The value of the sample `series` (name and labels, exactly as exposed).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.split(' ').next().unwrap().parse().unwrap())
}

#[tokio::test]
async fn scrapes_follow_connections_tokens_and_runtime_requests() {
    let h = Harness::new().await;
    let url = token_endpoint(Duration::ZERO).await;
    h.provider("works", &url).await;
    h.connection("works", "conn-alpha-7").await;
    h.unreachable_connection("down", "conn-bravo-9").await;

    let text = scrape(&h).await;
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        value(
            &text,
            &format!(r#"credmgr_build_info{{version="{version}"}}"#)
        ),
        Some(1.0),
        "{text}"
    );
    // Creating a client-credentials connection fetched its first token, or failed to.
    let connected = r#"credmgr_connections{status="connected",error_code="none"}"#;
    let unreachable = r#"credmgr_connections{status="error",error_code="provider_unreachable"}"#;
    assert_eq!(value(&text, connected), Some(1.0), "{text}");
    assert_eq!(value(&text, unreachable), Some(1.0), "{text}");
    let took = |provider: &str, outcome: &str| {
        format!(
            r#"credmgr_provider_token_request_duration_seconds_count{{provider="{provider}",grant_type="client_credentials",outcome="{outcome}"}}"#
        )
    };
    assert_eq!(value(&text, &took("works", "success")), Some(1.0), "{text}");
    assert_eq!(
        value(&text, &took("down", "provider_unreachable")),
        Some(1.0),
        "{text}"
    );
    assert_eq!(value(&text, "credmgr_tokens_in_refresh_window"), Some(0.0));

    // Runtime requests: one served, one failing (503), timed by route template and status.
    assert_eq!(
        h.runtime("works", "conn-alpha-7").await.status,
        StatusCode::OK
    );
    let r = h.runtime("down", "conn-bravo-9").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.json);
    let text = scrape(&h).await;
    for code in ["200", "503"] {
        let series = format!(
            r#"credmgr_runtime_request_duration_seconds_count{{route="{TOKEN_ROUTE}",code="{code}"}}"#
        );
        assert_eq!(value(&text, &series), Some(1.0), "{series}: {text}");
    }
    assert_eq!(
        value(
            &text,
            r#"credmgr_runtime_token_requests_total{outcome="hit"}"#
        ),
        Some(1.0)
    );

    // A token past its refresh point, and one past its expiry.
    let t = now();
    h.store_token("works", "conn-alpha-7", "due", t - 3000, t - 60, t + 600)
        .await;
    h.store_token("down", "conn-bravo-9", "gone", t - 4000, t - 700, t - 10)
        .await;
    // The connection deleted: its status leaves the count, which goes to 0 (not away).
    let text = scrape(&h).await;
    assert_eq!(
        value(&text, "credmgr_tokens_in_refresh_window"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(value(&text, "credmgr_tokens_expired"), Some(1.0), "{text}");
    let r = h
        .admin(
            axum::http::Method::DELETE,
            "/v1/providers/down/connections/conn-bravo-9",
            None,
        )
        .await;
    assert!(r.status.is_success(), "{}", r.json);
    let text = scrape(&h).await;
    assert_eq!(value(&text, unreachable), Some(0.0), "{text}");
    assert_eq!(value(&text, "credmgr_tokens_expired"), Some(0.0), "{text}");
    assert!(
        value(&text, "credmgr_store_gauges_updated_timestamp_seconds").unwrap() >= t as f64,
        "{text}"
    );

    // Ids of connections are never labels: they would be a series each.
    for id in ["conn-alpha-7", "conn-bravo-9"] {
        assert!(!text.contains(id), "{id} in {text}");
    }
}

#[tokio::test]
async fn the_scheduler_reports_its_backlog_and_how_late_it_refreshed() {
    let h = Harness::new().await;
    let url = token_endpoint(Duration::from_millis(50)).await;
    h.provider("p", &url).await;
    for c in ["c1", "c2"] {
        h.connection("p", c).await;
    }
    // Both tokens due 100 s ago (one-hour tokens: at most 30 s of lead).
    let t = now();
    for c in ["c1", "c2"] {
        h.store_token("p", c, "old", t - 3000, t - 100, t + 600)
            .await;
    }
    assert_eq!(
        value(
            &scrape(&h).await,
            "credmgr_refresh_scheduler_last_run_timestamp_seconds"
        ),
        Some(0.0)
    );
    // One run now, the next in a minute: the test reads what the first one found.
    let task = scheduler::spawn(
        h.state.tokens.clone(),
        h.state.store.clone(),
        Duration::from_secs(60),
        4,
    )
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let text = loop {
        let text = scrape(&h).await;
        if value(
            &text,
            "credmgr_refresh_scheduler_last_run_timestamp_seconds",
        ) != Some(0.0)
        {
            break text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no scheduler run: {text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    task.abort();
    assert_eq!(
        value(&text, "credmgr_refresh_scheduler_backlog"),
        Some(2.0),
        "{text}"
    );
    let lag = value(&text, "credmgr_refresh_scheduler_lag_seconds").unwrap();
    assert!((100.0..200.0).contains(&lag), "{lag}: {text}");
    // Both were refreshed: nothing left in the refresh window.
    assert_eq!(
        value(&text, "credmgr_tokens_in_refresh_window"),
        Some(0.0),
        "{text}"
    );
}
