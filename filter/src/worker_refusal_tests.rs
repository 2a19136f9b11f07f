//! A backend's 401: the token is retired and replaced, each worker's copy too, and at most
//! one refresh per interval is forced.

use super::*;
use crate::test_host::*;
use credmgr_common::runtime::token_fingerprint;
use serde_json::json;

#[test]
fn a_backend_401_retires_the_token_and_the_next_fetch_asks_for_a_newer_one() {
    let w = bearer_worker();
    let host = FakeHost::default();
    start(&w, &host, 10);
    answer_last(&w, &host, answer("revoked", 3600, 3000));
    // Two requests carried the token; both come back 401.
    assert_eq!(start(&w, &host, 11), Flow::Continue);
    for ctx in [10, 11] {
        w.on_response_status(host.on(ctx), ctx, 401);
        w.on_done(ctx);
    }
    assert_eq!(
        host.counter(stats::UPSTREAM_UNAUTHORIZED),
        0,
        "counted on the tick"
    );
    w.on_tick(host.on(ROOT), ROOT);
    assert_eq!(host.counter(stats::UPSTREAM_UNAUTHORIZED), 2);
    assert_eq!(
        start(&w, &host, 12),
        Flow::Pause,
        "the refused token is not used again"
    );
    assert_eq!(
        host.last_call_path(),
        format!(
            "/runtime/v1/providers/gh/connections/alice/token?rejected_fingerprint={}",
            token_fingerprint("revoked")
        )
    );
    answer_last(&w, &host, answer("fresh", 3700, 3600));
    assert_eq!(
        host.header_values(12, "authorization"),
        vec!["Bearer fresh"]
    );
    // A late 401 for the old token does not retire the new one.
    assert!(!w.view.cache.retire(
        &host,
        &crate::cache::token_key("gh", "alice", "managed"),
        &RuntimeToken {
            access_token: "revoked".into(),
            token_type: "Bearer".into(),
            expires_at: 3600,
            refresh_at: 3000,
            claims: Default::default(),
            access_policies: Vec::new(),
        }
    ));
    assert_eq!(start(&w, &host, 13), Flow::Continue);
}

#[test]
fn a_401_to_a_worker_retires_its_own_copy_at_once_and_revalidate_zero_reads_every_time() {
    let w = bearer_worker();
    let host = FakeHost::default();
    start(&w, &host, 10);
    answer_last(&w, &host, answer("tok-1", 3600, 3000));
    assert_eq!(start(&w, &host, 11), Flow::Continue);
    w.on_response_status(host.on(11), 11, 401);
    assert_eq!(start(&w, &host, 12), Flow::Pause, "no request reuses it");

    let w = worker_from(json!({
        "control_plane": {"cluster": "cp", "gateway_key": "gw-key"},
        "cache": {"revalidate_ms": 0},
        "default_policy": "p",
        "policies": {"p": [
            {"get-authorization-context": {"provider-id": "gh", "authorization-id": "bob",
                "context-variable-name": "auth"}},
            {"set-header": {"name": "Authorization", "value": "Bearer {{auth.AccessToken}}"}}
        ]}
    }));
    start(&w, &host, 20);
    answer_last(&w, &host, answer("tok-2", 3600, 3000));
    let reads = host.shared_reads.get();
    for ctx in 21..26 {
        assert_eq!(start(&w, &host, ctx), Flow::Continue);
    }
    assert_eq!(host.shared_reads.get() - reads, 5);
}

/// #19 item 5: a backend refusing every token forces at most one refresh per key per
/// `cache.forced_refresh_interval_ms` (10 s by default). Before, each 401 retired the token
/// just fetched and the next request fetched again, asking the control plane to replace it.
#[test]
fn backend_401s_force_at_most_one_refresh_per_interval() {
    let w = bearer_worker();
    let host = FakeHost::default();
    host.now_ms.set(1_000);
    start(&w, &host, 10);
    answer_last(&w, &host, answer("first", 3600, 3000));
    w.on_response_status(host.on(10), 10, 401);
    w.on_done(10);
    assert_eq!(
        start(&w, &host, 11),
        Flow::Pause,
        "the refused token is retired"
    );
    answer_last(&w, &host, answer("second", 3600, 3000));
    assert_eq!(host.calls(), 2);

    // The backend refuses the new token too, many times, within the interval: it stays.
    for ctx in 12..32 {
        host.now_ms.set(1_000 + u64::from(ctx) * 100);
        assert_eq!(start(&w, &host, ctx), Flow::Continue);
        w.on_response_status(host.on(ctx), ctx, 401);
        w.on_done(ctx);
    }
    assert_eq!(start(&w, &host, 40), Flow::Continue);
    assert_eq!(host.calls(), 2, "no fetch forced within the interval");
    w.view.stats.flush(&host);
    assert_eq!(host.counter(stats::FORCED_REFRESH_SKIPPED), 20);

    // Past the interval, a refusal forces one more refresh, naming the token refused.
    host.now_ms.set(11_500);
    assert_eq!(start(&w, &host, 41), Flow::Continue);
    w.on_response_status(host.on(41), 41, 401);
    w.on_done(41);
    assert_eq!(start(&w, &host, 42), Flow::Pause);
    assert_eq!(
        host.last_call_path(),
        format!(
            "/runtime/v1/providers/gh/connections/alice/token?rejected_fingerprint={}",
            token_fingerprint("second")
        )
    );
}
