//! The authorization-code consent flow, end to end: a real headless Chromium goes through the
//! interstitial and the real `oidc-provider`'s login and consent pages; then requests through
//! Envoy carry the user's token, refreshed with rotating refresh tokens.

use credmgr_e2e::http;
use credmgr_e2e::stack::{CONNECTION, PROVIDER};
use std::time::{Duration, Instant};

#[test]
fn a_user_consents_in_a_browser_and_requests_through_envoy_carry_their_token() {
    let d = credmgr_e2e::Deployment::start_consent(3600, &[]);
    // The generic `oauth2-pkce` provider type, against an oidc-provider that requires PKCE
    // (S256) of this client: the consent below only succeeds if credmgr sends it.
    let (_, provider) = d
        .control_plane
        .admin("GET", &format!("/v1/providers/{PROVIDER}"), None);
    assert_eq!(provider["identity_provider"], "oauth2-pkce", "{provider}");

    let conn = d.connection();
    assert_eq!(conn["status"], "not_connected", "{conn}");
    assert_eq!(conn["error"]["code"], "consent_required", "{conn}");
    let (status, body) = d.call("/before-consent");
    assert_eq!(status, 503, "no token before consent: {body}");
    assert_eq!(body["error"]["code"], "consent_required", "{body}");

    // Another site's page submitting the login link (cross-site request forgery of
    // Continue) is refused, and does not spend the link: the user's own Continue works.
    let link = d.login_link();
    let (status, page) = d.forged_continue_in_browser(&link);
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("Continue refused"), "{page}");
    let run = d.consent_in_browser(&link, "alice");
    assert!(
        run.landing_url
            .as_deref()
            .is_some_and(|l| l.contains("credmgr_status=connected")),
        "{run:?}"
    );
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

    let seen = d.call_accepted("/after-consent");
    assert_eq!(seen["sub"], "alice", "the token is the user's: {seen}");

    // The provider's answer cannot be used twice, and a replay changes nothing.
    let before = d.connection();
    let replay = http().get(&run.callback_url).send().unwrap();
    assert_eq!(replay.status().as_u16(), 400);
    let text = replay.text().unwrap();
    assert!(text.contains("already completed"), "{text}");
    assert_eq!(d.connection(), before);
    assert_eq!(d.oauth.stats()["token_requests"]["authorization_code"], 1);

    // Consent again on a connected connection: a failed one replaces nothing...
    let token = d.control_plane.runtime_token(PROVIDER, CONNECTION);
    let (status, page) = d.callback_in_fresh_browser(&format!("code=forged&iss={}", d.oauth.url));
    assert_eq!(status, 502, "{page}");
    assert_eq!(d.connection(), before);
    assert_eq!(
        d.control_plane
            .runtime_token(PROVIDER, CONNECTION)
            .access_token,
        token.access_token
    );
    // ...and a successful one replaces the tokens.
    d.consent("alice-again");
    let renewed = d.control_plane.runtime_token(PROVIDER, CONNECTION);
    assert_ne!(renewed.access_token, token.access_token);
    assert_eq!(d.connection()["status"], "connected");
    // The first consent, the forged code (refused) and the new consent.
    assert_eq!(d.oauth.stats()["token_requests"]["authorization_code"], 3);
    d.assert_no_plaintext_secrets();
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
    d.assert_no_plaintext_secrets();
}

#[test]
fn a_grant_revoked_at_the_provider_turns_the_connection_to_refresh_token_invalid_until_a_new_consent(
) {
    let d = credmgr_e2e::Deployment::start_consent(4, &[]);
    d.consent("carol");
    let (status, seen) = d.call("/before-revocation");
    assert_eq!(status, 200, "{seen}");

    // The user revokes the app at the provider: every token of the grant dies.
    let token = d
        .control_plane
        .runtime_token(credmgr_e2e::stack::PROVIDER, credmgr_e2e::stack::CONNECTION);
    let revoked = http()
        .post(format!("{}/token/revocation", d.oauth.url))
        .basic_auth("credmgr-demo", Some("credmgr-demo-secret"))
        .form(&[("token", token.access_token.as_str())])
        .send()
        .unwrap();
    assert_eq!(revoked.status().as_u16(), 200);

    // Requests keep coming; at the next refresh the provider refuses the refresh token.
    let body = credmgr_e2e::wait_for(
        "requests through Envoy to get 503 refresh_token_invalid",
        Duration::from_secs(30),
        || {
            let (status, body) = d.call("/after-revocation");
            (status == 503 && body["error"]["code"] == "refresh_token_invalid").then_some(body)
        },
    );
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("login link") && message.contains("consent"),
        "the 503 must say what to do: {body}"
    );
    let conn = d.connection();
    assert_eq!(conn["status"], "error", "{conn}");
    assert_eq!(conn["error"]["code"], "refresh_token_invalid", "{conn}");
    assert!(
        conn["token_expires_at"].is_null(),
        "the dead tokens are dropped: {conn}"
    );
    // Asked once, refused once: the store was re-read, and nothing newer was there.
    let stats = d.oauth.stats();
    assert_eq!(stats["token_errors"]["invalid_grant"], 1, "{stats}");
    for i in 0..3 {
        let (status, body) = d.call(&format!("/still-revoked/{i}"));
        assert_eq!(status, 503, "{body}");
    }
    assert_eq!(d.oauth.stats()["token_errors"]["invalid_grant"], 1);

    // A new consent restores service.
    d.consent("carol");
    assert_eq!(d.connection()["status"], "connected");
    let seen = credmgr_e2e::wait_for(
        "requests through Envoy to succeed again",
        Duration::from_secs(30),
        || {
            let (status, seen) = d.call("/after-new-consent");
            (status == 200).then_some(seen)
        },
    );
    assert_eq!(seen["sub"], "carol", "{seen}");
    d.assert_no_plaintext_secrets();
}
