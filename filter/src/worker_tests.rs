use super::*;
use crate::host::CallResponse;
use crate::test_host::*;
use serde_json::json;

#[test]
fn a_miss_pauses_and_fetches_once_then_the_header_is_set_and_later_requests_hit_the_cache() {
    let w = bearer_worker();
    let host = FakeHost::default();
    host.set_headers(10, &[("authorization", "Basic caller-sent-this")]);
    assert_eq!(start(&w, &host, 10), Flow::Pause);
    assert_eq!(
        host.last_call_path(),
        "/runtime/v1/providers/gh/connections/alice/token"
    );

    answer_last(&w, &host, answer("tok-1", 3600, 3000));
    assert_eq!(
        host.header_values(10, "authorization"),
        vec!["Bearer tok-1"]
    );
    assert_eq!(*host.resumed.borrow(), vec![10]);

    for ctx in 11..21 {
        assert_eq!(start(&w, &host, ctx), Flow::Continue);
        assert_eq!(
            host.header_values(ctx, "authorization"),
            vec!["Bearer tok-1"]
        );
    }
    assert_eq!(host.calls(), 1);
    w.view.stats.flush(&host);
    assert_eq!(host.counter(stats::CACHE_MISS), 1);
    assert_eq!(host.counter(stats::CACHE_HIT), 10);
    assert_eq!(host.counter(stats::CONTROL_PLANE_CALL), 1);
    assert_eq!(host.counter(stats::TOKEN_INJECTED), 11);
}

#[test]
fn concurrent_misses_for_one_key_share_one_call_and_all_resume() {
    let w = bearer_worker();
    let host = FakeHost::default();
    for ctx in 10..60 {
        assert_eq!(start(&w, &host, ctx), Flow::Pause);
    }
    assert_eq!(host.calls(), 1, "one call per key per worker");
    answer_last(&w, &host, answer("shared", 3600, 3000));
    for ctx in 10..60 {
        assert_eq!(
            host.header_values(ctx, "authorization"),
            vec!["Bearer shared"],
            "ctx {ctx}"
        );
    }
    let mut resumed = host.resumed.borrow().clone();
    resumed.sort();
    assert_eq!(resumed, (10..60).collect::<Vec<_>>());
}

#[test]
fn when_the_calling_request_ends_early_the_root_calls_again_for_the_others() {
    let w = bearer_worker();
    let host = FakeHost::default();
    start(&w, &host, 10);
    start(&w, &host, 11);
    w.on_done(10); // Envoy cancels request 10's call with it.
    w.on_tick(host.on(ROOT), ROOT);
    assert_eq!(host.calls(), 2);
    assert_eq!(
        host.calls.borrow()[1].0,
        ROOT,
        "the second call is the root's"
    );
    answer_last(&w, &host, answer("t", 3600, 3000));
    assert_eq!(host.header_values(11, "authorization"), vec!["Bearer t"]);
    assert_eq!(*host.resumed.borrow(), vec![11]);
}

#[test]
fn past_the_refresh_point_the_cached_token_serves_while_the_root_fetches_a_new_one() {
    let w = bearer_worker();
    let host = FakeHost::default();
    start(&w, &host, 10);
    answer_last(&w, &host, answer("old", 100, 80));

    host.now_ms.set(85_000);
    assert_eq!(
        start(&w, &host, 11),
        Flow::Continue,
        "no request waits for a refresh"
    );
    assert_eq!(host.header_values(11, "authorization"), vec!["Bearer old"]);
    assert_eq!(
        host.calls(),
        1,
        "the refresh happens on the tick, not in the request"
    );

    w.on_tick(host.on(ROOT), ROOT);
    assert_eq!(host.calls(), 2);
    // A second worker's tick finds the first worker's claim and does not call again.
    let other = bearer_worker();
    other.refresh_in_background(TokenNeed {
        key: crate::cache::token_key("gh", "alice", "managed"),
        location: crate::cache::token_key("gh", "alice", "managed"),
        fetch_key: crate::cache::token_key("gh", "alice", "managed"),
        provider_id: "gh".into(),
        connection_id: "alice".into(),
        caller_token: None,
    });
    other.on_tick(host.on(ROOT), ROOT);
    assert_eq!(host.calls(), 2);

    answer_last(&w, &host, answer("new", 200, 180));
    assert_eq!(start(&w, &host, 12), Flow::Continue);
    assert_eq!(host.header_values(12, "authorization"), vec!["Bearer new"]);
}

#[test]
fn an_expired_token_is_fetched_again() {
    let w = bearer_worker();
    let host = FakeHost::default();
    start(&w, &host, 10);
    answer_last(&w, &host, answer("old", 5, 4));
    host.now_ms.set(5_000);
    assert_eq!(start(&w, &host, 11), Flow::Pause);
    answer_last(&w, &host, answer("new", 10, 9));
    assert_eq!(host.header_values(11, "authorization"), vec!["Bearer new"]);
}

#[test]
fn control_plane_down_keeps_a_valid_token_serving_and_without_one_answers_503_json() {
    let w = bearer_worker();
    let host = FakeHost::default();
    start(&w, &host, 10);
    answer_last(&w, &host, answer("cached", 100, 80));

    // Past the refresh point with the control plane down: the cached token keeps serving.
    host.now_ms.set(90_000);
    assert_eq!(start(&w, &host, 11), Flow::Continue);
    w.on_tick(host.on(ROOT), ROOT);
    answer_last(&w, &host, DOWN);
    answer_last(&w, &host, DOWN); // the retry
    assert_eq!(start(&w, &host, 12), Flow::Continue);
    assert_eq!(
        host.header_values(12, "authorization"),
        vec!["Bearer cached"]
    );

    // Expired, control plane down: 503 with a JSON body, no token forwarded. Requests read
    // the time of the last tick: the clock moves for them when the tick reads it.
    host.now_ms.set(100_000);
    w.view.tick(&host);
    host.set_headers(13, &[]);
    assert_eq!(start(&w, &host, 13), Flow::Pause);
    answer_last(&w, &host, DOWN);
    assert!(
        host.reply(13).is_none(),
        "a call nobody answered is made once more"
    );
    answer_last(&w, &host, DOWN);
    let (status, body) = host.reply(13).unwrap();
    assert_eq!(status, 503);
    assert_eq!(body["error"]["code"], "control_plane_unavailable");
    assert_eq!(body["error"]["details"]["provider_id"], "gh");
    assert_eq!(body["error"]["details"]["authorization_id"], "alice");
    assert!(host.header_values(13, "authorization").is_empty());
    w.view.stats.flush(&host);
    assert_eq!(
        host.counter("credmgr.control_plane_failure.control_plane_unavailable"),
        2
    );
    assert_eq!(host.counter(stats::STALE_SERVED), 1);
    assert_eq!(host.counter(stats::CONTROL_PLANE_RETRY), 2);
    assert_eq!(host.counter("credmgr.request_rejected.503"), 1);
    assert!(!host.resumed.borrow().contains(&13));
}

#[test]
fn a_control_plane_error_is_passed_on_and_never_leaks_the_gateway_key() {
    let w = bearer_worker();
    let host = FakeHost::default();
    start(&w, &host, 10);
    let body = ErrorBody::new(
        "client_secret_rejected",
        "the provider refused the client credentials",
    );
    answer_last(
        &w,
        &host,
        CallResponse {
            status: Some(503),
            body: body.to_json().into_bytes(),
        },
    );
    let (status, body) = host.reply(10).unwrap();
    assert_eq!(status, 503);
    assert_eq!(body["error"]["code"], "client_secret_rejected");
    assert!(!body.to_string().contains("gw-key"));
    assert!(host.logs.borrow().iter().all(|l| !l.contains("gw-key")));

    // Envoy's own answer for an unreachable cluster says what happened.
    start(&w, &host, 11);
    answer_last(
        &w,
        &host,
        CallResponse {
            status: Some(503),
            body: b"upstream connect error or disconnect/reset before headers".to_vec(),
        },
    );
    // Not the control plane's answer: the call is made once more, then the failure stands.
    assert!(host.reply(11).is_none());
    answer_last(
        &w,
        &host,
        CallResponse {
            status: Some(503),
            body: b"upstream connect error or disconnect/reset before headers".to_vec(),
        },
    );
    let (_, body) = host.reply(11).unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("upstream connect error"),
        "{body}"
    );
}

#[test]
fn dispatch_failure_without_a_token_answers_503() {
    let w = bearer_worker();
    let host = FakeHost::default();
    host.fail_dispatch.set(true);
    assert_eq!(start(&w, &host, 10), Flow::Respond);
    assert_eq!(host.reply(10).unwrap().0, 503);
}

#[test]
fn ignore_error_continues_with_a_null_context_and_leaves_headers_alone() {
    let w = worker(
        json!({"name": "Authorization", "value": "Bearer {{auth.AccessToken}}"}),
        true,
    );
    let host = FakeHost::default();
    host.set_headers(10, &[("authorization", "Basic mine")]);
    start(&w, &host, 10);
    answer_last(&w, &host, DOWN);
    answer_last(&w, &host, DOWN);
    assert_eq!(host.header_values(10, "authorization"), vec!["Basic mine"]);
    assert!(host.reply(10).is_none());
    assert_eq!(*host.resumed.borrow(), vec![10]);
}

fn run_with_cached(set_header: serde_json::Value, headers: &[(&str, &str)]) -> FakeHost {
    let w = worker(set_header, false);
    let host = FakeHost::default();
    host.set_headers(10, headers);
    let key = crate::cache::token_key("gh", "alice", "managed");
    host.set_shared(&key, &cache_entry(&key, &answer("tok", 3600, 3000)), None)
        .unwrap();
    assert_eq!(start(&w, &host, 10), Flow::Continue);
    host
}

#[test]
fn exists_actions_follow_apim_semantics() {
    let v = "{{auth.Claims.scope}}";
    let h = run_with_cached(
        json!({"name": "x-scope", "value": v}),
        &[("x-scope", "old")],
    );
    assert_eq!(h.header_values(10, "x-scope"), vec!["api:read"]);
    let h = run_with_cached(
        json!({"name": "x-scope", "exists-action": "skip", "value": v}),
        &[("x-scope", "old")],
    );
    assert_eq!(h.header_values(10, "x-scope"), vec!["old"]);
    let h = run_with_cached(
        json!({"name": "x-scope", "exists-action": "skip", "value": v}),
        &[],
    );
    assert_eq!(h.header_values(10, "x-scope"), vec!["api:read"]);
    let h = run_with_cached(
        json!({"name": "x-scope", "exists-action": "append", "value": [v, "b"]}),
        &[("x-scope", "old")],
    );
    assert_eq!(h.header_values(10, "x-scope"), vec!["old", "api:read", "b"]);
    let h = run_with_cached(
        json!({"name": "x-scope", "exists-action": "delete"}),
        &[("x-scope", "old")],
    );
    assert!(h.header_values(10, "x-scope").is_empty());
    let h = run_with_cached(
        json!({"name": "x-scope", "value": [v, "{{request.headers.x-user}}"]}),
        &[("x-user", "bob")],
    );
    assert_eq!(h.header_values(10, "x-scope"), vec!["api:read", "bob"]);
}

#[test]
fn a_newer_cached_token_is_not_overwritten_by_an_older_answer() {
    let w = bearer_worker();
    let other = bearer_worker();
    let host = FakeHost::default();
    start(&w, &host, 10);
    let slow_call = 101;
    start(&other, &host, 20);
    answer_last(&other, &host, answer("newer", 200, 160));
    w.on_call_response(host.on(10), 10, slow_call, answer("older", 100, 80));
    assert_eq!(start(&w, &host, 11), Flow::Continue);
    assert_eq!(
        host.header_values(11, "authorization"),
        vec!["Bearer newer"]
    );
}

#[test]
fn without_a_policy_the_request_passes_untouched() {
    let w = worker_from(
        json!({"control_plane": {"cluster": "cp", "gateway_key": "k"}, "policies": {"p": []}}),
    );
    let host = FakeHost::default();
    host.set_headers(10, &[("authorization", "Basic x")]);
    assert_eq!(start(&w, &host, 10), Flow::Continue);
    assert_eq!(host.header_values(10, "authorization"), vec!["Basic x"]);
    assert_eq!(host.calls(), 0);
}

#[test]
fn the_route_metadata_chooses_the_policy_set_and_an_unknown_one_fails_closed() {
    let w = worker_from(json!({
        "control_plane": {"cluster": "cp", "gateway_key": "k"},
        "default_policy": "tag",
        "policies": {
            "tag": [{"set-header": {"name": "x-policy", "value": "tag"}}],
            "other": [{"set-header": {"name": "x-policy", "value": "other"}}]
        }
    }));
    let host = FakeHost::default();
    assert_eq!(start(&w, &host, 10), Flow::Continue);
    assert_eq!(host.header_values(10, "x-policy"), vec!["tag"]);

    *host.route_policy.borrow_mut() = Some("other".into());
    assert_eq!(start(&w, &host, 11), Flow::Continue);
    assert_eq!(host.header_values(11, "x-policy"), vec!["other"]);

    *host.route_policy.borrow_mut() = Some("missing".into());
    assert_eq!(start(&w, &host, 12), Flow::Respond);
    let (status, body) = host.reply(12).unwrap();
    assert_eq!(status, 500);
    assert_eq!(body["error"]["code"], "unknown_policy");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("missing"));
}

#[test]
fn the_gateway_key_is_sent_when_configured_and_no_authorization_header_without_one() {
    let host = FakeHost::default();
    assert_eq!(start(&bearer_worker(), &host, 10), Flow::Pause);
    let w = worker_from(json!({
        "control_plane": {"cluster": "cp"},
        "default_policy": "p",
        "policies": {"p": [
            {"get-authorization-context": {"provider-id": "gh", "authorization-id": "alice",
                "context-variable-name": "auth"}}
        ]}
    }));
    assert_eq!(start(&w, &host, 11), Flow::Pause);
    assert_eq!(
        host.call_auth(),
        vec![Some("Bearer gw-key".to_owned()), None]
    );
}

#[test]
fn workers_serve_their_own_copy_and_see_another_workers_retirement_within_revalidate_ms() {
    // Two workers of one VM: the same shared data, each its own memory.
    let (a, b) = (bearer_worker(), bearer_worker());
    let host = FakeHost::default();
    assert_eq!(start(&a, &host, 10), Flow::Pause);
    answer_last(&a, &host, answer("tok-1", 3600, 3000));

    let reads = host.shared_reads.get();
    for ctx in 20..30 {
        assert_eq!(start(&b, &host, ctx), Flow::Continue);
        assert_eq!(
            host.header_values(ctx, "authorization"),
            vec!["Bearer tok-1"]
        );
    }
    assert_eq!(
        host.shared_reads.get() - reads,
        1,
        "one look-up in shared data, then the worker's copy"
    );

    // A's backend refuses the token: B serves its copy until it checks again.
    a.on_response_status(host.on(10), 10, 401);
    host.now_ms.set(999);
    assert_eq!(start(&b, &host, 30), Flow::Continue);
    host.now_ms.set(1_000);
    assert_eq!(
        start(&b, &host, 31),
        Flow::Pause,
        "after revalidate_ms the retired token is seen"
    );
    assert_eq!(host.calls(), 2);
}

#[test]
fn a_token_or_claim_with_cr_or_lf_is_refused_with_a_clear_error() {
    for (token, scope) in [("tok\r\nx-injected: 1", "api:read"), ("tok", "a\nb")] {
        let w = worker(
            json!({"name": "authorization", "value": "Bearer {{auth.AccessToken}} {{auth.Claims.scope}}"}),
            false,
        );
        let host = FakeHost::default();
        let key = crate::cache::token_key("gh", "alice", "managed");
        let body = json!({"access_token": token, "token_type": "Bearer", "expires_at": 3600,
            "refresh_at": 3000, "claims": {"scope": scope}});
        let entry = json!({"key": key, "token": body}).to_string();
        host.set_shared(&key, entry.as_bytes(), None).unwrap();
        start(&w, &host, 10);
        let (status, reply) = host.reply(10).expect("answered by the filter");
        assert_eq!(status, 502, "{reply}");
        assert_eq!(reply["error"]["code"], "provider_error", "{reply}");
        assert!(host.header_values(10, "authorization").is_empty());
        assert!(host.header_values(10, "x-injected").is_empty());
    }
}

/// #19 item 8: a control-plane call nobody answered (a replica died: the connection was
/// reset) is made once more, and the request gets its token from the second answer instead
/// of a 503. An answer of the control plane's own is not retried (see
/// `a_control_plane_error_is_passed_on_and_never_leaks_the_gateway_key`).
#[test]
fn a_call_the_control_plane_did_not_answer_is_made_once_more() {
    let w = bearer_worker();
    let host = FakeHost::default();
    assert_eq!(start(&w, &host, 10), Flow::Pause);
    answer_last(&w, &host, DOWN);
    assert_eq!(host.calls(), 2, "called again");
    assert!(host.reply(10).is_none());
    answer_last(&w, &host, answer("from-another-replica", 3600, 3000));
    assert_eq!(
        host.header_values(10, "authorization"),
        vec!["Bearer from-another-replica"]
    );
    assert_eq!(*host.resumed.borrow(), vec![10]);
    w.view.stats.flush(&host);
    assert_eq!(host.counter(stats::CONTROL_PLANE_RETRY), 1);
    assert_eq!(
        host.counter("credmgr.control_plane_failure.control_plane_unavailable"),
        0
    );
}
