//! The authorization-code consent flow, end to end: a real headless Chromium goes through the
//! interstitial and the real `oidc-provider`'s login and consent pages; then requests through
//! Envoy carry the user's token, refreshed with rotating refresh tokens.

use credmgr_e2e::http;
use std::time::{Duration, Instant};

#[test]
fn a_user_consents_in_a_browser_and_requests_through_envoy_carry_their_token() {
    let d = credmgr_e2e::Deployment::start_consent(3600, &[]);

    let conn = d.connection();
    assert_eq!(conn["status"], "not_connected", "{conn}");
    assert_eq!(conn["error"]["code"], "consent_required", "{conn}");
    let (status, body) = d.call("/before-consent");
    assert_eq!(status, 503, "no token before consent: {body}");
    assert_eq!(body["error"]["code"], "consent_required", "{body}");

    let run = d.consent("alice");
    assert!(
        run.interstitial.contains("Test OAuth server")
            && run.interstitial.contains("Alice's account")
            && run
                .interstitial
                .contains("Continue only if you asked for this link"),
        "the interstitial must say what is connected to what: {}",
        run.interstitial
    );
    let conn = d.connection();
    assert_eq!(conn["status"], "connected", "{conn}");
    assert!(conn["error"].is_null(), "{conn}");
    assert!(conn["token_expires_at"].is_string(), "{conn}");
    assert!(
        conn.get("access_token").is_none() && conn.get("refresh_token").is_none(),
        "{conn}"
    );
    let stats = d.oauth.stats();
    assert_eq!(stats["token_requests"]["authorization_code"], 1, "{stats}");

    let (status, seen) = d.call("/after-consent");
    assert_eq!(
        status, 200,
        "the backend must accept the user's token: {seen}"
    );
    assert_eq!(seen["active"], true, "{seen}");
    assert_eq!(seen["sub"], "alice", "the token is the user's: {seen}");
    assert_eq!(seen["client_id"], "credmgr-demo", "{seen}");

    // The provider's answer cannot be used twice, and a replay changes nothing.
    let before = d.connection();
    let replay = http().get(&run.callback_url).send().unwrap();
    assert_eq!(replay.status().as_u16(), 400);
    let text = replay.text().unwrap();
    assert!(text.contains("already completed"), "{text}");
    assert_eq!(d.connection(), before);
    assert_eq!(d.oauth.stats()["token_requests"]["authorization_code"], 1);
}

#[test]
fn with_tokens_of_a_few_seconds_requests_keep_working_for_a_minute_and_no_refresh_token_is_reused()
{
    let d = credmgr_e2e::Deployment::start_consent(4, &[]);
    d.consent("bob");
    let started = Instant::now();
    let mut requests = 0;
    let mut fingerprints = std::collections::BTreeSet::new();
    while started.elapsed() < Duration::from_secs(60) {
        let (status, seen) = d.call(&format!("/minute/{requests}"));
        assert_eq!(
            status,
            200,
            "request {requests} after {:?}: {seen}",
            started.elapsed()
        );
        assert_eq!(seen["sub"], "bob", "{seen}");
        if let Some(f) = seen["token_fingerprint"].as_str() {
            fingerprints.insert(f.to_owned());
        }
        requests += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    let stats = d.oauth.stats();
    assert_eq!(
        stats["token_errors"]["invalid_grant"], 0,
        "a refresh token was presented twice: {stats}"
    );
    let refreshes = stats["token_requests"]["refresh_token"].as_u64().unwrap();
    assert!(
        refreshes >= 15,
        "4-second tokens for a minute need many refreshes: {stats}"
    );
    assert!(
        fingerprints.len() >= 15,
        "{} tokens seen",
        fingerprints.len()
    );
    assert_eq!(d.connection()["status"], "connected");
    eprintln!(
        "{requests} requests, {refreshes} refreshes, {} tokens",
        fingerprints.len()
    );
}
