//! #19 item 6: a failing token endpoint sees a bounded rate per connection whatever the
//! traffic: one attempt at a time, then a backoff kept on the connection in the database and
//! so shared by the runtime API, the scheduler and every replica; callers get the remembered
//! failure at once, and a still-valid stored token keeps being served.

use std::time::{Duration, Instant};

use axum::http::StatusCode;

use crate::fake_saas::{FakeSaas, JSON};
use crate::harness::*;

const TOKEN: &str = r#"{"access_token":"back-again","token_type":"Bearer","expires_in":3600}"#;

/// Runtime calls from `clients` concurrent callers on both replicas for `window`; returns
/// the statuses seen.
async fn traffic(a: &Harness, b: &Harness, clients: usize, window: Duration) -> Vec<StatusCode> {
    let until = Instant::now() + window;
    let mut statuses = Vec::new();
    while Instant::now() < until {
        let calls = (0..clients).map(|i| {
            let h = if i % 2 == 0 { a } else { b };
            async move { h.runtime("p", "c").await.status }
        });
        statuses.extend(futures_util::future::join_all(calls).await);
    }
    statuses
}

#[tokio::test]
async fn a_failing_provider_sees_a_bounded_rate_however_many_callers_ask() {
    let a = Harness::new().await;
    let b = a.replica().await;
    let fake = FakeSaas::start().await;
    // No answers queued: every token request gets a 500.
    a.provider("p", &fake.token_url).await;
    a.connection("p", "c").await;

    // 3 s of 8 concurrent callers on two replicas: hundreds of runtime calls. Before the fix
    // each one reached the provider. With backoffs of 1-2 s, 2-4 s, ... at most 3 attempts
    // fit (the one at creation, one after 1-2 s, one after 2-4 s more).
    let statuses = traffic(&a, &b, 8, Duration::from_secs(3)).await;
    let asked = fake.seen().len();
    eprintln!(
        "{} runtime calls in 3 s, {asked} token requests (with the one at creation)",
        statuses.len()
    );
    assert!(statuses.len() > 50, "only {} calls made", statuses.len());
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::SERVICE_UNAVAILABLE),
        "{statuses:?}"
    );
    assert!(
        asked <= 3,
        "{asked} token requests for {} runtime calls",
        statuses.len()
    );

    // The provider recovers: a caller gets a token once the backoff ends (bounded wait).
    fake.answer(200, JSON, TOKEN);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = a.runtime("p", "c").await;
        if r.status == StatusCode::OK {
            assert_eq!(r.json["access_token"], "back-again");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no token after the provider recovered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // And the backoff is over: the next token is served from the store.
    assert_eq!(b.runtime("p", "c").await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_valid_stored_token_is_served_while_the_provider_backs_off() {
    let h = Harness::new().await;
    let fake = FakeSaas::start().await;
    h.provider("p", &fake.token_url).await;
    h.connection("p", "c").await;
    // Due now, valid for ten more minutes.
    h.store_token("p", "c", "still-good", now() - 3000, now() - 1, now() + 600)
        .await;
    let before = fake.seen().len();
    let until = Instant::now() + Duration::from_secs(1);
    let mut calls = 0;
    while Instant::now() < until {
        let r = h.runtime("p", "c").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        assert_eq!(r.json["access_token"], "still-good");
        calls += 1;
    }
    assert!(calls > 10, "{calls}");
    assert!(
        fake.seen().len() - before <= 2,
        "{:?}",
        fake.seen().len() - before
    );
}
