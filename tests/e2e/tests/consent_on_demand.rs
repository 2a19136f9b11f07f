//! Consent on demand through a real Envoy (`envoy/e2e.yaml`, routes `/me/`, whose
//! `authorization-id` is `u-{{identity.Claims.sub}}`, and `/as/`, which reads it from the
//! `x-user` header): provider `demo` is a self-service authorization-code provider at the real
//! `oidc-provider` (`self_service.connection_id` `u-{{object_id}}`), and users with JWTs of a
//! trusted issuer call through Envoy. A user who never connected gets 401 with a login URL made
//! for them; a real headless Chromium opens it and consents; their next request reaches the
//! backend with their own token. Two users get two tokens and cannot use each other's
//! connection; a grant revoked at the provider brings the 401 back; no secret reaches a log.

use std::time::Duration;

use credmgr_e2e::consent::{consent_provider_body, ConsentParts, LANDING};
use credmgr_e2e::issuer::{call_as, call_as_with_headers, seen_token, Issuer};
use credmgr_e2e::stack::PROVIDER;
use credmgr_e2e::{http, wait_for, Deployment};
use serde_json::{json, Value};

/// Access tokens live this long, so that a revoked grant shows at the next refresh soon.
const ACCESS_TOKEN_TTL: u32 = 8;

/// Everything running; provider `demo` self-service; the issuer trusted before Envoy starts.
fn setup() -> (Deployment, Issuer) {
    let parts = ConsentParts::start(ACCESS_TOKEN_TTL, &[]);
    let mut provider = consent_provider_body(&parts.oauth);
    provider["self_service"] = json!({
        "connection_id": "u-{{object_id}}",
        "display_name": "Forge account of {{object_id}}",
        "post_login_redirect_url": LANDING,
    });
    parts.control_plane.create_provider(PROVIDER, provider);
    let issuer = Issuer::start();
    issuer.trusted_by(&parts.control_plane);
    (parts.with_envoy("e2e.yaml"), issuer)
}

/// `user`'s request to `/me/` answered 401 `consent_required` by Envoy: the login URL, with
/// the body and the `WWW-Authenticate` challenge checked.
fn login_url_through_envoy(d: &Deployment, jwt: &str, user: &str) -> String {
    let (status, headers, body) = call_as_with_headers(&d.envoy, "/me/x", jwt, &[]);
    login_url_of(status, &headers, &body, user)
}

fn login_url_of(
    status: u16,
    headers: &reqwest::header::HeaderMap,
    body: &Value,
    user: &str,
) -> String {
    let connection = format!("u-{user}");
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "consent_required", "{body}");
    assert_eq!(
        body["error"]["details"]["connection_id"],
        connection.as_str()
    );
    let url = body["error"]["login_url"]
        .as_str()
        .unwrap_or_else(|| panic!("no login_url in {body}"))
        .to_owned();
    let challenge = headers
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no WWW-Authenticate with {body}"));
    assert_eq!(
        challenge,
        credmgr_common::runtime::consent_challenge(PROVIDER, &connection, &url)
    );
    url
}

/// Opens `url` in Chromium, checks the interstitial names the connection and the user it was
/// made for, consents at the OAuth server as `user`; returns the authorization code the
/// provider sent back.
fn consent(d: &Deployment, issuer: &Issuer, url: &str, user: &str) -> String {
    let run = d.consent_in_browser(url, user);
    for text in [
        format!("Forge account of {user}"),
        format!("{PROVIDER}/u-{user}"),
        format!("made for the user {user} of {}", issuer.url),
    ] {
        assert!(
            run.interstitial.contains(&text),
            "{text} not in the interstitial: {}",
            run.interstitial
        );
    }
    let landing = run.landing_url.clone().unwrap_or_else(|| {
        panic!(
            "no landing; page:\n{}\n{}",
            run.page,
            d.control_plane.process.log_text()
        )
    });
    assert!(landing.starts_with(LANDING) && landing.contains("credmgr_status=connected"));
    url::Url::parse(&run.callback_url)
        .unwrap_or_else(|e| panic!("{}: {e}", run.callback_url))
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("no code in {}", run.callback_url))
}

/// `user`'s request through `path` reaches the backend with a token of their own: the backend
/// saw an active token of the OAuth server's `credmgr-demo` client whose subject is `user`.
/// Returns that token.
fn served_as(d: &Deployment, path: &str, jwt: &str, extra: &[(&str, &str)], user: &str) -> String {
    let (status, seen) = call_as(&d.envoy, path, jwt, extra);
    assert_eq!(status, 200, "{user} through {path}: {seen}");
    assert_eq!(seen["active"], true, "{seen}");
    assert_eq!(seen["client_id"], "credmgr-demo", "{seen}");
    assert_eq!(
        seen["sub"], user,
        "the backend sees {user}'s own token: {seen}"
    );
    let token = seen_token(&seen);
    assert_ne!(token, jwt, "never the caller's JWT");
    token
}

/// Revokes `user`'s grant at the OAuth server, as "disconnect this app" does: their live
/// refresh token (found by introspecting every refresh token it issued) is revoked, and with
/// it, by the server's `revokeGrantPolicy`, every token of the grant. (Not through an access
/// token: oidc-provider's memory store forgets which tokens belong to a grant once the
/// grant's first token expires, so revoking a later access token leaves the refresh token.)
fn revoke_grant_of(d: &Deployment, user: &str) {
    let (id, secret) = ("credmgr-demo", Some("credmgr-demo-secret"));
    let token_url = d.oauth.token_url();
    let issued: Value = http()
        .get(format!("{}/test/issued-tokens", d.oauth.url))
        .send()
        .and_then(|r| r.json())
        .unwrap_or_else(|e| panic!("reading the issued tokens: {e}"));
    let mut revoked = 0;
    for token in issued["refresh_tokens"].as_array().into_iter().flatten() {
        let Some(token) = token.as_str() else {
            continue;
        };
        let info: Value = http()
            .post(format!("{token_url}/introspection"))
            .basic_auth(id, secret)
            .form(&[("token", token)])
            .send()
            .and_then(|r| r.json())
            .unwrap_or_else(|e| panic!("introspecting a refresh token: {e}"));
        if info["active"] == true && info["sub"] == user {
            let r = http()
                .post(format!("{token_url}/revocation"))
                .basic_auth(id, secret)
                .form(&[("token", token)])
                .send()
                .unwrap_or_else(|e| panic!("revoking: {e}"));
            assert_eq!(r.status().as_u16(), 200);
            revoked += 1;
        }
    }
    assert!(revoked > 0, "{user} has no live refresh token to revoke");
}

#[test]
fn users_consent_on_demand_through_envoy_and_then_call_with_their_own_tokens() {
    let (d, issuer) = setup();
    let cp = &d.control_plane;
    let (alice, bob) = (issuer.jwt("alice"), issuer.jwt("bob"));
    let mut secrets: Vec<(&str, String)> = vec![
        ("caller's JWT", alice.clone()),
        ("caller's JWT", bob.clone()),
        ("gateway key", cp.gateway_key.clone()),
    ];

    // Alice never connected: 401 with a login URL made for her; her connection now exists,
    // not connected, usable by her alone.
    let url_a = login_url_through_envoy(&d, &alice, "alice");
    let conn = cp.connection(PROVIDER, "u-alice");
    assert_eq!(conn["status"], "not_connected", "{conn}");
    // Bob naming her connection through the header route is refused, and gets no login URL.
    let (status, body) = call_as(&d.envoy, "/as/x", &bob, &[("x-user", "alice")]);
    assert_eq!(status, 403, "{body}");
    assert!(body["error"].get("login_url").is_none(), "{body}");

    // Chromium: the interstitial names the connection and her; she consents.
    let code_a = consent(&d, &issuer, &url_a, "alice");
    assert_eq!(cp.connection(PROVIDER, "u-alice")["status"], "connected");
    // Her next request carries her own token, with no operator action; the link is used up.
    let token_a = served_as(&d, "/me/x", &alice, &[], "alice");
    let used = http().get(&url_a).send().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(used.status().as_u16(), 410, "a login URL works once");

    // Bob does the same and gets a token of his own.
    let url_b = login_url_through_envoy(&d, &bob, "bob");
    assert_ne!(url_b, url_a);
    let code_b = consent(&d, &issuer, &url_b, "bob");
    let token_b = served_as(&d, "/me/x", &bob, &[], "bob");
    assert_ne!(token_a, token_b);

    // Neither can use the other's connection, also by forging the header the /as/ route reads.
    served_as(&d, "/as/x", &alice, &[("x-user", "alice")], "alice");
    for (jwt, other) in [(&bob, "alice"), (&alice, "bob")] {
        let (status, body) = call_as(&d.envoy, "/as/x", jwt, &[("x-user", other)]);
        assert_eq!(status, 403, "{body}");
        assert_eq!(body["error"]["code"], "forbidden", "{body}");
        assert!(body["error"].get("login_url").is_none(), "{body}");
    }
    // Nor make a connection under anyone else's id: refused, nothing created.
    let (status, body) = call_as(&d.envoy, "/as/x", &bob, &[("x-user", "carol")]);
    assert_eq!(status, 403, "{body}");
    let (status, _) = cp.admin(
        "GET",
        &format!("/v1/providers/{PROVIDER}/connections/u-carol"),
        None,
    );
    assert_eq!(status, 404, "no connection made for a forged id");

    // The provider revokes Alice's grant: at the next refresh, her request through Envoy
    // gets the 401 with a new login URL again; Bob's grant is untouched.
    revoke_grant_of(&d, "alice");
    let mut last = String::new();
    let (headers, body) = wait_for(
        "a new login URL through Envoy after the revocation",
        Duration::from_secs(60),
        || {
            let (status, headers, body) = call_as_with_headers(&d.envoy, "/me/x", &alice, &[]);
            let seen = format!("{status} {} {}", body["error"]["code"], body["sub"]);
            if seen != last {
                eprintln!("after the revocation: {seen}");
                last = seen;
            }
            (status == 401 && body["error"]["code"] == "consent_required")
                .then_some((headers, body))
        },
    );
    let again = login_url_of(401, &headers, &body, "alice");
    assert_ne!(again, url_a);
    let conn = cp.connection(PROVIDER, "u-alice");
    assert_eq!(conn["error"]["code"], "refresh_token_invalid", "{conn}");
    served_as(&d, "/me/y", &bob, &[], "bob");

    // Nothing secret in Envoy's or the control plane's logs, nor in the database.
    for url in [&url_a, &url_b, &again] {
        secrets.push(("login URL", url.clone()));
        let secret = url.rsplit('/').next().unwrap_or_default().to_owned();
        secrets.push(("login link's secret", secret));
    }
    secrets.push(("authorization code", code_a));
    secrets.push(("authorization code", code_b));
    d.assert_logs_free_of(&secrets);
    d.assert_no_plaintext_secrets();
}
