//! The filter's pipeline in a real Envoy (`envoy/e2e.yaml`): routes choosing policy sets,
//! every set-header exists-action as the backend sees it, ignore-error, coalescing of cold
//! misses, a request body held while its request waits for a token, serving cached tokens
//! through a control-plane outage, and a backend's 401.

use credmgr_e2e::stack::{CONNECTION, PROVIDER};
use credmgr_e2e::{http, wait_for, Deployment};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};

fn fingerprint(seen: &Value) -> String {
    seen["token_fingerprint"]
        .as_str()
        .unwrap_or_else(|| panic!("no token_fingerprint in {seen}"))
        .to_owned()
}

fn unix_now() -> u64 {
    u64::try_from(credmgr_e2e::unix_now()).unwrap()
}

#[test]
fn routes_choose_policy_sets_and_every_exists_action_reaches_the_backend_as_specified() {
    let d = Deployment::start_with(3600, "e2e.yaml");
    let (status, body) = d.control_plane.admin(
        "PUT",
        &format!("/v1/providers/{PROVIDER}/connections/second"),
        Some(json!({"display_name": "Second service account"})),
    );
    assert_eq!(status, 201, "{body}");
    d.control_plane.allow_test_gateway(PROVIDER, "second");

    let old = [("x-demo", "old")];
    let (status, seen) = d.call_with("/override/a", &old);
    assert_eq!(status, 200, "{seen}");
    assert_eq!(
        seen["headers"]["x-demo"], "api:read",
        "override replaces: {seen}"
    );

    let (_, seen) = d.call_with("/skip/a", &old);
    assert_eq!(
        seen["headers"]["x-demo"], "old",
        "skip keeps an existing value: {seen}"
    );
    let (_, seen) = d.call("/skip/b");
    assert_eq!(
        seen["headers"]["x-demo"], "new",
        "skip sets an absent header: {seen}"
    );

    let (_, seen) = d.call_with("/append/a", &[("x-demo", "old"), ("x-user", "bob")]);
    assert_eq!(
        seen["headers"]["x-demo"],
        json!(["old", "new", "from bob"]),
        "{seen}"
    );

    let (status, seen) = d.call_with("/delete/a", &old);
    assert_eq!(status, 200, "{seen}");
    assert!(
        seen["headers"].get("x-demo").is_none(),
        "delete removes: {seen}"
    );

    // Another policy set, another connection, another token.
    let (status, first) = d.call("/bearer/a");
    assert_eq!(status, 200, "{first}");
    let (status, second) = d.call("/second/a");
    assert_eq!(status, 200, "{second}");
    assert_ne!(fingerprint(&first), fingerprint(&second));

    // A route without a policy set passes untouched: the backend sees no token.
    let (status, body) = d.call("/no-policy");
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        body["error"]["code"], "unauthenticated",
        "the backend's own answer: {body}"
    );

    // ignore-error: the missing connection leaves its variable null and its header unset;
    // the rest of the pipeline runs.
    let (status, seen) = d.call("/ignore/a");
    assert_eq!(status, 200, "{seen}");
    assert!(seen["headers"].get("x-broken").is_none(), "{seen}");

    // Envoy's /stats shows the filter's counters.
    d.envoy.wait_stat("credmgr.cache_hit", 1);
    d.envoy.wait_stat("credmgr.cache_miss", 2);
    d.envoy.wait_stat("credmgr.token_injected", 8);
    d.envoy.wait_stat("credmgr.control_plane_call", 3);
    d.envoy
        .wait_stat("credmgr.control_plane_failure.not_found", 1);
}

#[test]
fn two_hundred_concurrent_requests_on_a_cold_cache_make_at_most_one_call_per_worker() {
    let d = Deployment::start_with(3600, "e2e.yaml");
    let url = format!("{}/bearer/concurrent", d.envoy.url);
    let client = http();
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..200)
            .map(|_| {
                let (client, url) = (client.clone(), url.clone());
                s.spawn(move || {
                    client
                        .get(&url)
                        .send()
                        .map(|r| r.status().as_u16())
                        .unwrap_or(0)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let calls = d.envoy.wait_stat("credmgr.control_plane_call", 1);
    // The harness runs Envoy with two workers.
    assert!(
        (1..=2).contains(&calls),
        "{calls} control-plane calls for one key"
    );
}

#[test]
fn with_the_control_plane_stopped_cached_tokens_serve_until_they_expire_then_503() {
    let mut d = Deployment::start_with(8, "e2e.yaml");
    let (status, seen) = d.call("/bearer/warm");
    assert_eq!(status, 200, "{seen}");
    let exp = seen["exp"].as_u64().unwrap();
    d.control_plane.process.stop();

    // Requests until two seconds past expiry; the filter keeps a one-second margin.
    let deadline = Instant::now() + Duration::from_secs(exp.saturating_sub(unix_now()) + 2);
    let mut first_failure = None;
    let mut served = 0;
    while Instant::now() < deadline {
        let sent_at = unix_now();
        let (status, body) = d.call("/bearer/outage");
        if status == 200 {
            // The backend accepted it, so it was valid; it must not have been sent late.
            assert!(first_failure.is_none(), "a success after a failure: {body}");
            assert!(sent_at <= exp, "a token was sent after its expiry");
            served += 1;
        } else {
            assert_eq!(status, 503, "{body}");
            assert_eq!(body["error"]["code"], "control_plane_unavailable", "{body}");
            assert_eq!(
                body["error"]["details"]["authorization_id"], CONNECTION,
                "{body}"
            );
            assert!(
                sent_at + 2 >= exp,
                "failed {}s before the token expired: {body}",
                exp - sent_at
            );
            first_failure.get_or_insert(sent_at);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        served > 10,
        "only {served} requests served during the outage"
    );
    assert!(first_failure.is_some(), "no 503 after the token expired");
    d.envoy.wait_stat("credmgr.stale_token_served", 1);
}

#[test]
fn a_backend_401_gets_the_next_request_a_new_token() {
    let d = Deployment::start_with(3600, "e2e.yaml");
    let (status, seen) = d.call("/bearer/before");
    assert_eq!(status, 200, "{seen}");
    let before = fingerprint(&seen);

    // Revoke the token at the OAuth server: the backend's introspection now says inactive.
    let token = d.control_plane.runtime_token(PROVIDER, CONNECTION);
    let resp = http()
        .post(format!("{}/token/revocation", d.oauth.url))
        .basic_auth("credmgr-demo", Some("credmgr-demo-secret"))
        .form(&[
            ("token", token.access_token.as_str()),
            ("token_type_hint", "access_token"),
        ])
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);

    let (status, body) = d.call("/bearer/revoked");
    assert_eq!(status, 401, "the backend refuses the revoked token: {body}");
    let seen = wait_for(
        "a request with a new token",
        Duration::from_secs(10),
        || {
            let (status, seen) = d.call("/bearer/after");
            (status == 200).then_some(seen)
        },
    );
    assert_ne!(fingerprint(&seen), before);
    // The worker that got the 401 retired the token for all; the other worker may still send
    // it once from its own copy (cache.revalidate_ms), and retires its copy at that 401.
    // Requests here go one at a time, so Envoy's two workers see at most one 401 each.
    let refused = d.envoy.wait_stat("credmgr.upstream_unauthorized", 1);
    assert!(refused <= 2, "{refused} 401s for one refused token");
    assert_eq!(
        d.oauth.tokens_issued(),
        2,
        "one new token, however many 401s: {}",
        d.oauth.stats()
    );
}

#[test]
fn a_request_body_reaches_the_backend_intact_after_its_request_waited_for_a_token() {
    let d = Deployment::start_with(3600, "e2e.yaml");
    // Larger than one read from the socket: Envoy holds several chunks while the request waits
    // for the control plane (the filter implements no body callback, and exports none).
    let body: Vec<u8> = (0..256 * 1024u32).map(|i| (i % 251) as u8).collect();
    let resp = http()
        .post(format!("{}/bearer/upload", d.envoy.url))
        .header("content-type", "application/octet-stream")
        .body(body.clone())
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    let seen: Value = resp.json().unwrap();
    assert_eq!(status, 200, "{seen}");
    assert_eq!(seen["method"], "POST", "{seen}");
    assert_eq!(seen["body_length"], body.len(), "{seen}");
    assert_eq!(
        seen["body_sha256"],
        hex::encode(Sha256::digest(&body)),
        "the body arrived changed"
    );
    assert_eq!(
        d.envoy.wait_stat("credmgr.cache_miss", 1),
        1,
        "the request waited for its token"
    );
}
