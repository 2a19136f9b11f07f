//! Consent on demand, through the runtime API (the filter's side comes with it later): a
//! caller with a JWT from a trusted issuer asks for its own connection of a self-service
//! provider, gets a login URL, consents in a real headless Chromium at the real
//! `oidc-provider`, and then gets its token; after the provider revokes the grant, it gets a
//! new login URL.

use std::time::Duration;

use credmgr_e2e::consent::{consent_provider_body, LANDING};
use credmgr_e2e::stack::{Deployment, OAuthServer};
use credmgr_e2e::{free_port, http, wait_for};
use serde_json::{json, Value};

const AUDIENCE: &str = "api://credmgr-callers";
const PROVIDER: &str = "forge";

/// The issuer of callers' JWTs: client-credentials tokens, whose subject is the client.
fn start_issuer(d: &Deployment) -> OAuthServer {
    let dir = d.dir.path().join("issuer");
    std::fs::create_dir_all(&dir).unwrap();
    let clients: Vec<Value> = ["user-alice", "user-bob"]
        .iter()
        .map(|id| {
            json!({
                "client_id": id, "client_secret": format!("{id}-secret"),
                "grant_types": ["client_credentials"], "response_types": [], "redirect_uris": [],
                "token_endpoint_auth_method": "client_secret_post", "scope": "api:read",
            })
        })
        .collect();
    OAuthServer::start(
        &dir,
        &[
            ("PORT", &free_port().to_string()),
            ("JWT_AUDIENCE", AUDIENCE),
            ("OAUTH_CLIENTS", &Value::Array(clients).to_string()),
        ],
    )
}

/// A JWT of `client` (its subject) from the issuer.
fn caller_jwt(issuer: &OAuthServer, client: &str) -> String {
    let secret = format!("{client}-secret");
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", client),
        ("client_secret", secret.as_str()),
        ("scope", "api:read"),
    ];
    let body: Value = http()
        .post(issuer.token_url())
        .form(&form)
        .send()
        .and_then(|r| r.json())
        .unwrap();
    body["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_owned()
}

/// The runtime API's answer for connection `c` of the caller `jwt`: status, headers, body.
fn runtime_as(d: &Deployment, jwt: &str, c: &str) -> (u16, reqwest::header::HeaderMap, Value) {
    let cp = &d.control_plane;
    let path = credmgr_common::runtime::token_path(PROVIDER, c);
    let r = http()
        .get(format!("{}{path}", cp.url))
        .bearer_auth(&cp.gateway_key)
        .header(credmgr_common::runtime::CALLER_TOKEN_HEADER, jwt)
        .send()
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.json().unwrap_or(Value::Null))
}

/// The login URL of a 401 answer, checked.
fn login_url(status: u16, headers: &reqwest::header::HeaderMap, body: &Value, c: &str) -> String {
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "consent_required", "{body}");
    let url = body["error"]["login_url"].as_str().unwrap().to_owned();
    let challenge = headers["www-authenticate"].to_str().unwrap();
    assert_eq!(
        challenge,
        credmgr_common::runtime::consent_challenge(PROVIDER, c, &url)
    );
    url
}

#[test]
fn a_caller_consents_through_the_login_url_of_the_runtime_api_and_then_gets_its_token() {
    let d = Deployment::start_consent(4, &[]);
    let issuer = start_issuer(&d);
    let cp = &d.control_plane;
    let (status, body) = cp.admin(
        "PUT",
        "/v1/trusted-issuers/callers",
        Some(json!({"issuer": issuer.url, "audiences": [AUDIENCE],
                    "jwks_uri": format!("{}/jwks", issuer.url)})),
    );
    assert_eq!(status, 201, "{body}");
    let mut provider = consent_provider_body(&d.oauth);
    provider["self_service"] = json!({
        "connection_id": "forge-{{object_id}}",
        "display_name": "Forge account of {{object_id}}",
        "post_login_redirect_url": LANDING,
    });
    cp.create_provider(PROVIDER, provider);

    // Alice's first call: her connection is made, and she gets a login URL.
    let alice = caller_jwt(&issuer, "user-alice");
    let (status, headers, body) = runtime_as(&d, &alice, "forge-user-alice");
    let url = login_url(status, &headers, &body, "forge-user-alice");
    // Bob can neither use it nor make another under any id but his own.
    let bob = caller_jwt(&issuer, "user-bob");
    let (status, _, body) = runtime_as(&d, &bob, "forge-user-alice");
    assert_eq!(status, 403, "{body}");
    let (status, _, body) = runtime_as(&d, &bob, "forge-someone");
    assert_eq!(status, 403, "{body}");

    // Chromium: the interstitial names the connection and the user; she consents.
    let run = d.consent_in_browser(&url, "alice");
    for text in [
        "Forge account of user-alice",
        "user-alice",
        issuer.url.as_str(),
    ] {
        assert!(
            run.interstitial.contains(text),
            "{text} not in the interstitial: {}",
            run.interstitial
        );
    }
    let landing = run
        .landing_url
        .clone()
        .unwrap_or_else(|| panic!("no landing; page:\n{}\n{}", run.page, cp.process.log_text()));
    assert!(landing.starts_with(LANDING) && landing.contains("credmgr_status=connected"));
    assert_eq!(
        cp.connection(PROVIDER, "forge-user-alice")["status"],
        "connected"
    );

    // Her next call gets her token, no operator involved; the link does not work twice.
    let (status, _, token) = runtime_as(&d, &alice, "forge-user-alice");
    assert_eq!(status, 200, "{token}");
    let used = http().get(&url).send().unwrap();
    assert_eq!(used.status().as_u16(), 410);

    // The provider revokes the grant: at the next refresh her call gets a new login URL.
    let revoked = http()
        .post(format!("{}/token/revocation", d.oauth.url))
        .basic_auth("credmgr-demo", Some("credmgr-demo-secret"))
        .form(&[("token", token["access_token"].as_str().unwrap())])
        .send()
        .unwrap();
    assert_eq!(revoked.status().as_u16(), 200);
    let (headers, body) = wait_for(
        "a new login URL after the revocation",
        Duration::from_secs(30),
        || {
            let (status, headers, body) = runtime_as(&d, &alice, "forge-user-alice");
            (status == 401).then_some((headers, body))
        },
    );
    let again = login_url(401, &headers, &body, "forge-user-alice");
    assert_ne!(again, url);
    let conn = cp.connection(PROVIDER, "forge-user-alice");
    assert_eq!(conn["error"]["code"], "refresh_token_invalid", "{conn}");

    // No login URL in the control plane's log, nor any token or secret.
    let log = cp.process.log_text();
    for u in [&url, &again] {
        let secret = u.rsplit('/').next().unwrap();
        assert!(!log.contains(secret), "a login link's secret is in the log");
    }
    d.assert_no_plaintext_secrets();
}
