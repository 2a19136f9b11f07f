//! The worker with ids chosen per request: templates over headers and verified claims, the
//! 400 for an id that breaks the rules, the bounded slots, and the consent (401) and rate
//! limit (429) answers that reach their caller.

use super::jwt_tests::{
    host_at_now, issuers_answer, jwks, key, last_call_header, Key, AUD, ISS, NOW,
};
use super::*;
use crate::host::CallResponse;
use crate::test_host::*;
use jwt_compact::alg::Es256;
use jwt_compact::{AlgorithmExt, Claims, Header};
use serde_json::{json, Value};

fn sign(sk: &Key, claims: Value) -> String {
    let mut custom = json!({"iss": ISS, "aud": AUD});
    for (k, v) in claims.as_object().unwrap() {
        custom[k] = v.clone();
    }
    let Value::Object(custom) = custom else {
        unreachable!()
    };
    let mut claims = Claims::new(custom);
    claims.expiration = chrono::DateTime::from_timestamp(NOW + 300, 0);
    Es256
        .token(&Header::empty().with_key_id("k1"), &claims, sk)
        .unwrap()
}

fn per_user(authorization_id: &str, max_entries: u32, ignore_error: bool) -> Worker {
    worker_from(json!({
        "control_plane": {"cluster": "cp", "gateway_key": "gw-key"},
        "cache": {"max_entries": max_entries},
        "default_policy": "p",
        "policies": {"p": [
            {"get-authorization-context": {"provider-id": "gh", "authorization-id": authorization_id,
                "context-variable-name": "auth", "identity-type": "jwt",
                "identity": "{{request.headers.authorization}}", "ignore-error": ignore_error}},
            {"set-header": {"name": "Authorization", "value": "Bearer {{auth.AccessToken}}"}}
        ]}
    }))
}

fn token_for(user: &str) -> CallResponse {
    let body = json!({"access_token": format!("token-of-{user}"), "token_type": "Bearer",
        "expires_at": NOW + 3600, "refresh_at": NOW + 1800, "claims": {},
        "access_policies": [{"kind": "user", "issuer": ISS, "object_id": user}]});
    CallResponse {
        status: Some(200),
        body: body.to_string().into_bytes(),
    }
}

/// A worker with the issuers loaded (the first request fetched them).
fn ready(w: &Worker, host: &FakeHost, jwk: &Value, first_jwt: &str) {
    host.set_headers(9, &[("authorization", &format!("Bearer {first_jwt}"))]);
    assert_eq!(start(w, host, 9), Flow::Pause);
    answer_last(w, host, issuers_answer(jwks(&[("k1", jwk)])));
}

fn send(w: &Worker, host: &FakeHost, ctx: u32, jwt: &str, extra: &[(&str, &str)]) -> Flow {
    let auth = format!("Bearer {jwt}");
    let mut headers = vec![("authorization", auth.as_str())];
    headers.extend_from_slice(extra);
    host.set_headers(ctx, &headers);
    start(w, host, ctx)
}

#[test]
fn each_verified_caller_gets_the_connection_its_claims_name() {
    let w = per_user("user-{{identity.Claims.sub}}", 64, false);
    let host = host_at_now();
    let (sk, jwk) = key();
    let alice = sign(&sk, json!({"sub": "alice", "oid": "u-alice"}));
    let bob = sign(&sk, json!({"sub": "bob", "oid": "u-bob"}));
    ready(&w, &host, &jwk, &alice);
    assert_eq!(
        host.last_call_path(),
        "/runtime/v1/providers/gh/connections/user-alice/token"
    );
    answer_last(&w, &host, token_for("u-alice"));
    assert_eq!(
        host.header_values(9, "authorization"),
        ["Bearer token-of-u-alice"]
    );

    assert_eq!(send(&w, &host, 10, &bob, &[]), Flow::Pause);
    assert_eq!(
        host.last_call_path(),
        "/runtime/v1/providers/gh/connections/user-bob/token"
    );
    assert_eq!(
        last_call_header(&host, "x-credmgr-caller-token").as_deref(),
        Some(bob.as_str())
    );
    answer_last(&w, &host, token_for("u-bob"));
    assert_eq!(
        host.header_values(10, "authorization"),
        ["Bearer token-of-u-bob"]
    );

    // Both cached now: no call, each their own token.
    let calls = host.calls();
    assert_eq!(send(&w, &host, 11, &alice, &[]), Flow::Continue);
    assert_eq!(send(&w, &host, 12, &bob, &[]), Flow::Continue);
    assert_eq!(
        host.header_values(11, "authorization"),
        ["Bearer token-of-u-alice"]
    );
    assert_eq!(
        host.header_values(12, "authorization"),
        ["Bearer token-of-u-bob"]
    );
    assert_eq!(host.calls(), calls);
    // Rendered ids live in slots, never at a key per user.
    let keys: Vec<String> = host.shared.borrow().keys().cloned().collect();
    assert!(
        keys.iter()
            .all(|k| k == crate::identity::ISSUERS_KEY || k.starts_with("credmgr/v1/slot/")),
        "{keys:?}"
    );
    assert!(keys.len() >= 2, "{keys:?}");
}

#[test]
fn claims_are_used_only_once_the_jwt_is_verified() {
    let w = per_user("user-{{identity.Claims.sub}}", 64, false);
    let host = host_at_now();
    let (sk, jwk) = key();
    ready(&w, &host, &jwk, &sign(&sk, json!({"sub": "alice"})));
    answer_last(&w, &host, token_for("u-alice"));
    let calls = host.calls();

    // A token signed by someone else claiming to be alice: refused, and no id is rendered
    // from it (no call, no cache look-up for user-alice).
    let (forger, _) = key();
    let reads = host.shared_reads.get();
    assert_eq!(
        send(&w, &host, 10, &sign(&forger, json!({"sub": "alice"})), &[]),
        Flow::Respond
    );
    let (status, body) = host.reply(10).unwrap();
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("jwt_bad_signature"))
    );
    assert_eq!(host.calls(), calls);
    assert_eq!(
        host.shared_reads.get(),
        reads,
        "no cache look-up for a refused caller"
    );
    // An unsigned (alg none) token: the same.
    let none = format!(
        "eyJhbGciOiJub25lIn0.{}.",
        base64_url(&json!({"iss": ISS, "aud": AUD, "sub": "alice", "exp": NOW + 300}).to_string())
    );
    assert_eq!(send(&w, &host, 11, &none, &[]), Flow::Respond);
    assert_eq!(host.reply(11).unwrap().0, 401);
    assert_eq!(host.calls(), calls);
}

fn base64_url(text: &str) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in text.as_bytes().chunks(3) {
        let n = chunk.iter().fold(0u32, |n, b| (n << 8) | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

#[test]
fn an_id_that_breaks_the_rules_is_answered_400_without_a_lookup() {
    let w = per_user(
        "{{request.headers.x-conn}}-{{identity.Claims.sub}}",
        64,
        false,
    );
    let host = host_at_now();
    let (sk, jwk) = key();
    let alice = sign(&sk, json!({"sub": "alice"}));
    ready(&w, &host, &jwk, &alice);
    // The first request had no x-conn header: "-alice" is a valid id... of its own.
    answer_last(&w, &host, token_for("u-alice"));
    let calls = host.calls();
    let reads = host.shared_reads.get();

    assert_eq!(
        send(&w, &host, 10, &alice, &[("x-conn", "../admin")]),
        Flow::Respond
    );
    let (status, body) = host.reply(10).unwrap();
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "invalid_request");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("authorization-id"), "{message}");
    assert!(
        message.contains("policies.p[0].get-authorization-context"),
        "{message}"
    );
    assert!(
        message.contains("{{request.headers.x-conn}}-{{identity.Claims.sub}}"),
        "{message}"
    );
    assert!(!message.contains(&alice), "never the JWT");
    assert_eq!(body["error"]["details"]["policy_set"], "p");
    assert_eq!(body["error"]["details"]["field"], "authorization-id");
    assert_eq!(host.calls(), calls, "no control-plane call");
    assert_eq!(host.shared_reads.get(), reads, "no cache look-up");

    // A verified caller without the claim: 400 too, never the id "x-" shared by all of them.
    let nosub = sign(&sk, json!({"oid": "u-9"}));
    assert_eq!(
        send(&w, &host, 11, &nosub, &[("x-conn", "x")]),
        Flow::Respond
    );
    let (status, body) = host.reply(11).unwrap();
    assert_eq!(status, 400);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("\"sub\""));
    assert_eq!(host.calls(), calls);
}

#[test]
fn a_header_cannot_lend_a_caller_another_users_connection() {
    let w = per_user("{{request.headers.x-user}}", 64, false);
    let host = host_at_now();
    let (sk, jwk) = key();
    let alice = sign(&sk, json!({"oid": "u-alice"}));
    let bob = sign(&sk, json!({"oid": "u-bob"}));
    host.set_headers(
        9,
        &[
            ("authorization", &format!("Bearer {alice}")),
            ("x-user", "alice"),
        ],
    );
    assert_eq!(start(&w, &host, 9), Flow::Pause);
    answer_last(&w, &host, issuers_answer(jwks(&[("k1", &jwk)])));
    answer_last(&w, &host, token_for("u-alice"));
    assert_eq!(
        host.header_values(9, "authorization"),
        ["Bearer token-of-u-alice"]
    );
    // Bob names alice's connection: the cached token's policies name alice only.
    assert_eq!(
        send(&w, &host, 10, &bob, &[("x-user", "alice")]),
        Flow::Respond
    );
    assert_eq!(host.reply(10).unwrap().0, 403);
}

#[test]
fn tokens_of_rendered_ids_stay_within_max_entries_and_each_caller_keeps_its_own() {
    let w = per_user("u-{{identity.Claims.sub}}", 4, false);
    let host = host_at_now();
    let (sk, jwk) = key();
    let users: Vec<String> = (0..40).map(|i| format!("user{i}")).collect();
    let jwts: Vec<String> = users.iter().map(|u| sign(&sk, json!({"sub": u}))).collect();
    ready(&w, &host, &jwk, &jwts[0]);
    answer_last(&w, &host, token_for("user0"));
    for round in 0..2 {
        for (i, (user, jwt)) in users.iter().zip(&jwts).enumerate() {
            let ctx = 1000 * (round + 1) + i as u32;
            if send(&w, &host, ctx, jwt, &[]) == Flow::Pause {
                assert_eq!(
                    host.last_call_path(),
                    format!("/runtime/v1/providers/gh/connections/u-{user}/token")
                );
                answer_last(&w, &host, token_for(user));
            }
            assert_eq!(
                host.header_values(ctx, "authorization"),
                [format!("Bearer token-of-{user}")],
                "a caller never gets a token of a slot's other occupant"
            );
            assert!(w.view.cache.copies() <= 4);
        }
    }
    let slots = host
        .shared
        .borrow()
        .keys()
        .filter(|k| k.starts_with("credmgr/v1/slot/"))
        .count();
    assert!(slots <= 4, "{slots} slots");
    // 40 callers in 4 slots: most were evicted and fetched again in the second round.
    assert!(host.calls() > 41, "{} calls", host.calls());
}

#[test]
fn literal_ids_are_keyed_once_at_load() {
    let w = bearer_worker();
    let Some(set) = &w.view.config.default_policy else {
        panic!("no default policy")
    };
    let crate::config::Step::GetAuthorizationContext(g) = &set.steps[0] else {
        panic!("not a get-authorization-context step")
    };
    let crate::config::Ids::Literal(ids) = &g.ids else {
        panic!("literal ids compiled as templates")
    };
    assert_eq!(
        ids.cache_key,
        crate::cache::token_key("gh", "alice", "managed")
    );
    assert!(w.view.config.identity_claims.is_empty());
}

fn consent_answer() -> CallResponse {
    let body = json!({"error": {"code": "consent_required", "message": "connect your account",
        "login_url": "https://cp.example/consent/login/secret-abc",
        "details": {"provider_id": "gh", "connection_id": "u-alice",
            "login_url_expires_at": "2027-01-15T08:00:00Z"}}});
    CallResponse {
        status: Some(401),
        body: body.to_string().into_bytes(),
    }
}

#[test]
fn consent_required_reaches_its_caller_with_the_login_url_and_is_never_kept() {
    let w = per_user("u-{{identity.Claims.sub}}", 64, false);
    let host = host_at_now();
    let (sk, jwk) = key();
    let alice = sign(&sk, json!({"sub": "alice"}));
    ready(&w, &host, &jwk, &alice);
    answer_last(&w, &host, consent_answer());
    let (status, body) = host.reply(9).unwrap();
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "consent_required");
    assert_eq!(
        body["error"]["login_url"],
        "https://cp.example/consent/login/secret-abc"
    );
    assert_eq!(
        body["error"]["details"]["login_url_expires_at"],
        "2027-01-15T08:00:00Z"
    );
    assert_eq!(
        host.reply_header(9, "www-authenticate").as_deref(),
        Some(
            "Credmgr-Consent realm=\"credmgr\", provider_id=\"gh\", connection_id=\"u-alice\", \
             login_url=\"https://cp.example/consent/login/secret-abc\""
        )
    );
    assert_eq!(
        host.reply_header(9, "cache-control").as_deref(),
        Some("no-store")
    );
    assert!(
        host.logs.borrow().iter().all(|l| !l.contains("secret-abc")),
        "the login URL is never logged"
    );
    // Not remembered as a refusal: the next request asks again (a new URL, or the token).
    let calls = host.calls();
    assert_eq!(send(&w, &host, 10, &alice, &[]), Flow::Pause);
    assert_eq!(host.calls(), calls + 1);
    answer_last(&w, &host, token_for("alice"));
    assert_eq!(
        host.header_values(10, "authorization"),
        ["Bearer token-of-alice"]
    );
}

#[test]
fn rate_limited_reaches_its_caller_with_retry_after() {
    let w = per_user("u-{{identity.Claims.sub}}", 64, false);
    let host = host_at_now();
    let (sk, jwk) = key();
    let alice = sign(&sk, json!({"sub": "alice"}));
    ready(&w, &host, &jwk, &alice);
    let limited = json!({"error": {"code": "rate_limited", "message": "too many login URLs",
        "details": {"retry_after_seconds": 42}}});
    answer_last(
        &w,
        &host,
        CallResponse {
            status: Some(429),
            body: limited.to_string().into_bytes(),
        },
    );
    let (status, body) = host.reply(9).unwrap();
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (429, Some("rate_limited"))
    );
    assert_eq!(host.reply_header(9, "retry-after").as_deref(), Some("42"));
    let calls = host.calls();
    assert_eq!(
        send(&w, &host, 10, &alice, &[]),
        Flow::Pause,
        "not remembered"
    );
    assert_eq!(host.calls(), calls + 1);
}

#[test]
fn ignore_error_goes_on_without_a_context_after_consent_required() {
    let w = per_user("u-{{identity.Claims.sub}}", 64, true);
    let host = host_at_now();
    let (sk, jwk) = key();
    ready(&w, &host, &jwk, &sign(&sk, json!({"sub": "alice"})));
    answer_last(&w, &host, consent_answer());
    assert!(host.reply(9).is_none());
    assert_eq!(*host.resumed.borrow(), vec![9]);
    assert!(host.header_values(9, "authorization")[0].starts_with("Bearer ey"));
}

#[test]
fn a_login_url_is_never_handed_to_the_gateway_identity() {
    let w = bearer_worker();
    let host = FakeHost::default();
    assert_eq!(start(&w, &host, 10), Flow::Pause);
    answer_last(&w, &host, consent_answer());
    let (status, body) = host.reply(10).unwrap();
    assert_eq!(status, 503);
    assert!(body["error"].get("login_url").is_none());
    assert!(host.reply_header(10, "www-authenticate").is_none());
}

#[test]
fn token_calls_in_flight_per_worker_are_bounded_too() {
    let w = per_user("u-{{identity.Claims.sub}}", 2, false);
    let host = host_at_now();
    let (sk, jwk) = key();
    ready(&w, &host, &jwk, &sign(&sk, json!({"sub": "first"})));
    // The first user's token call is in flight; one more fits, the third is refused at once.
    assert_eq!(
        send(&w, &host, 10, &sign(&sk, json!({"sub": "u1"})), &[]),
        Flow::Pause
    );
    let calls = host.calls();
    assert_eq!(
        send(&w, &host, 11, &sign(&sk, json!({"sub": "u2"})), &[]),
        Flow::Respond
    );
    assert_eq!(host.calls(), calls);
    let (status, body) = host.reply(11).unwrap();
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("control_plane_unavailable"))
    );
}
