//! Identities and access policies end to end: callers prove themselves with JWT access
//! tokens issued by a real `oidc-provider` (RFC 9068, RS256), Envoy's filter verifies them
//! locally and decides with the connection's access policies, the control plane checks the
//! same again. Also: the managed identity refused, policy changes under traffic, the issuer
//! rotating its keys, and one signature verification per worker.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use credmgr_e2e::stack::{CONNECTION, PROVIDER};
use credmgr_e2e::{free_port, http, wait_for, Backend, ControlPlane, Deployment, OAuthServer};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

/// The audience the trusted issuer's tokens must name.
const AUDIENCE: &str = "api://credmgr-callers";
/// How stale a gateway's access decisions may get in these tests (CREDMGR_ACCESS_REFRESH).
const ACCESS_REFRESH: Duration = Duration::from_secs(4);

/// Client-credentials clients of the identity issuer; the subject of their tokens is their
/// client id.
const CLIENTS: [&str; 5] = [
    "app-allowed",
    "app-user",
    "app-grouped",
    "app-denied",
    "app-short-lived",
];

/// Where the web client's users are sent back with a code; nothing listens there, the test
/// reads the code from the redirect.
const WEB_REDIRECT: &str = "http://127.0.0.1:9/callback";

fn clients_json() -> String {
    let mut clients: Vec<Value> = CLIENTS
        .iter()
        .map(|id| {
            json!({
                "client_id": id, "client_secret": format!("{id}-secret"),
                "grant_types": ["client_credentials"], "response_types": [], "redirect_uris": [],
                "token_endpoint_auth_method": "client_secret_post", "scope": "api:read",
            })
        })
        .collect();
    // A web application whose users sign in: their tokens' subject is the user.
    clients.push(json!({
        "client_id": "web-app", "client_secret": "web-app-secret",
        "grant_types": ["authorization_code"], "response_types": ["code"],
        "redirect_uris": [WEB_REDIRECT], "token_endpoint_auth_method": "client_secret_post",
        "scope": "openid api:read",
    }));
    Value::Array(clients).to_string()
}

/// A user's JWT access token: `login` signs in on the issuer's login and consent pages (the
/// web application's authorization-code flow with PKCE, driven over HTTP as a browser would).
fn user_token(issuer: &OAuthServer, login: &str) -> String {
    let browser = reqwest::blocking::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap();
    let location = |r: reqwest::blocking::Response| -> String {
        let to = r
            .headers()
            .get("location")
            .unwrap_or_else(|| panic!("no redirect: {}", r.status()))
            .to_str()
            .unwrap()
            .to_owned();
        if to.starts_with('/') {
            format!("{}{to}", issuer.url)
        } else {
            to
        }
    };
    let verifier = B64.encode(format!("verifier-for-{login}-0123456789abcdefghijklmnop"));
    let script = format!(
        "process.stdout.write(require('crypto').createHash('sha256').update('{verifier}').digest('base64url'))"
    );
    let out = credmgr_e2e::run_ok(
        "node hashing the PKCE verifier",
        std::process::Command::new("node").args(["-e", &script]),
    );
    let challenge = String::from_utf8(out).unwrap();
    let auth = browser
        .get(format!("{}/auth", issuer.url))
        .query(&[
            ("client_id", "web-app"),
            ("response_type", "code"),
            ("redirect_uri", WEB_REDIRECT),
            ("scope", "openid api:read"),
            ("state", "s1"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ])
        .send()
        .unwrap();
    let login_page = location(auth);
    let r = browser
        .post(&login_page)
        .form(&[("prompt", "login"), ("login", login), ("password", "x")])
        .send()
        .unwrap();
    let consent = location(browser.get(location(r)).send().unwrap());
    let r = browser
        .post(&consent)
        .form(&[("prompt", "consent")])
        .send()
        .unwrap();
    let back = location(browser.get(location(r)).send().unwrap());
    let code = url::Url::parse(&back)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("no code in {back}"));
    let r = http()
        .post(issuer.token_url())
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", WEB_REDIRECT),
            ("code_verifier", verifier.as_str()),
            ("client_id", "web-app"),
            ("client_secret", "web-app-secret"),
        ])
        .send()
        .unwrap();
    let body: Value = r.json().unwrap();
    let token = body["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"));
    assert_eq!(part(token, 1)["sub"], login, "{body}");
    token.to_owned()
}

/// An RSA signing key as a private JWK, made by Node's crypto like the server's own keys.
fn signing_key(kid: &str) -> Value {
    let script = format!(
        "const {{generateKeyPairSync}} = require('crypto'); \
         const k = generateKeyPairSync('rsa', {{modulusLength: 2048}}).privateKey.export({{format: 'jwk'}}); \
         process.stdout.write(JSON.stringify({{...k, kid: '{kid}', alg: 'RS256', use: 'sig'}}));"
    );
    let out = credmgr_e2e::run_ok(
        &format!("node generating signing key {kid}"),
        std::process::Command::new("node").args(["-e", &script]),
    );
    serde_json::from_slice(&out).unwrap()
}

/// The identity issuer: `oidc-provider` issuing JWT access tokens, on a fixed port so that
/// it can be restarted with other keys under the same issuer URL.
fn start_issuer(dir: &Path, port: u16, keys: &[Value]) -> OAuthServer {
    let file = dir.join("issuer-keys.json");
    std::fs::write(&file, Value::Array(keys.to_vec()).to_string()).unwrap();
    OAuthServer::start(
        dir,
        &[
            ("PORT", &port.to_string()),
            ("JWT_AUDIENCE", AUDIENCE),
            ("OAUTH_CLIENTS", &clients_json()),
            ("TOKEN_GROUPS", r#"{"app-grouped": ["g-ops", "g-other"]}"#),
            ("CLIENT_TOKEN_TTLS", r#"{"app-short-lived": 1}"#),
            ("SIGNING_KEYS_FILE", file.to_str().unwrap()),
        ],
    )
}

/// A JWT access token for `client` (for `resource`, when given, instead of the audience).
fn token(issuer: &OAuthServer, client: &str, resource: Option<&str>) -> String {
    let secret = format!("{client}-secret");
    let mut form = vec![
        ("grant_type", "client_credentials"),
        ("client_id", client),
        ("client_secret", secret.as_str()),
        ("scope", "api:read"),
    ];
    if let Some(r) = resource {
        form.push(("resource", r));
    }
    let r = http().post(issuer.token_url()).form(&form).send().unwrap();
    let body: Value = r.json().unwrap();
    let token = body["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"));
    assert_eq!(token.split('.').count(), 3, "not a JWT: {body}");
    token.to_owned()
}

fn part(token: &str, i: usize) -> Value {
    let p = token.split('.').nth(i).unwrap();
    serde_json::from_slice(&B64.decode(p).unwrap()).unwrap()
}

/// The token with one field of its header (`i` = 0) or payload (1) set to `value`; the
/// signature is kept, so it no longer matches.
fn edited(token: &str, i: usize, field: &str, value: &str) -> String {
    let mut edited = part(token, i);
    edited[field] = json!(value);
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[i] = B64.encode(edited.to_string());
    parts.join(".")
}

struct Setup {
    d: Deployment,
    issuer: OAuthServer,
    issuer_port: u16,
}

fn setup(dir_keys: &[Value]) -> Setup {
    let dir = tempfile::Builder::new()
        .prefix("credmgr-e2e-")
        .tempdir()
        .unwrap();
    let oauth = OAuthServer::start(dir.path(), &[]);
    let issuer_port = free_port();
    let issuer = start_issuer(dir.path(), issuer_port, dir_keys);
    let refresh = format!("{}s", ACCESS_REFRESH.as_secs());
    let cp = ControlPlane::start_with(
        dir.path(),
        free_port(),
        &[("CREDMGR_ACCESS_REFRESH", refresh.as_str())],
    );
    let backend = Backend::start(dir.path(), &oauth);
    cp.create_client_credentials_connection(&oauth, PROVIDER, CONNECTION);
    let (status, body) = cp.admin(
        "PUT",
        "/v1/trusted-issuers/callers",
        Some(json!({
            "issuer": issuer.url, "audiences": [AUDIENCE],
            "jwks_uri": format!("{}/jwks", issuer.url), "leeway_seconds": 0,
        })),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["keys"]["count"], 1, "the JWKS was fetched: {body}");
    let iss = issuer.url.clone();
    cp.allow(
        PROVIDER,
        CONNECTION,
        "app",
        json!({"kind": "application", "issuer": iss, "client_id": "app-allowed"}),
    );
    cp.allow(
        PROVIDER,
        CONNECTION,
        "user",
        json!({"kind": "user", "issuer": iss, "object_id": "alice"}),
    );
    cp.allow(
        PROVIDER,
        CONNECTION,
        "svc",
        json!({"kind": "user", "issuer": iss, "object_id": "app-user"}),
    );
    cp.allow(
        PROVIDER,
        CONNECTION,
        "ops",
        json!({"kind": "group", "issuer": iss, "group_id": "g-ops"}),
    );
    let d = Deployment::with_envoy(dir, oauth, cp, backend, "e2e.yaml");
    Setup {
        d,
        issuer,
        issuer_port,
    }
}

fn call_as(d: &Deployment, jwt: &str) -> (u16, Value) {
    let auth = format!("Bearer {jwt}");
    d.call_with("/jwt/x", &[("authorization", auth.as_str())])
}

#[test]
fn each_identity_kind_is_allowed_denied_or_refused_with_the_reason() {
    let s = setup(&[signing_key("key-a")]);
    let d = &s.d;

    // Allowed by an application, a user (a person signed in, and a service principal by its
    // object id) and a group policy: the backend gets the connection's token, not the
    // caller's.
    let alice = user_token(&s.issuer, "alice");
    let bob = user_token(&s.issuer, "bob");
    for (client, jwt) in [
        ("alice", alice.clone()),
        ("app-allowed", token(&s.issuer, "app-allowed", None)),
        ("app-user", token(&s.issuer, "app-user", None)),
        ("app-grouped", token(&s.issuer, "app-grouped", None)),
    ] {
        let (status, seen) = call_as(d, &jwt);
        assert_eq!(status, 200, "{client}: {seen}");
        let sent = seen["headers"]["authorization"]
            .as_str()
            .unwrap_or_default();
        assert!(
            sent.starts_with("Bearer ") && !sent.contains(&jwt),
            "{client}: {seen}"
        );
    }

    // Valid identities that no policy names: 403.
    let denied = token(&s.issuer, "app-denied", None);
    for jwt in [&denied, &bob] {
        let (status, body) = call_as(d, jwt);
        assert_eq!(status, 403, "{body}");
        assert_eq!(body["error"]["code"], "forbidden", "{body}");
    }

    // Bad tokens: 401, with the reason.
    let good = token(&s.issuer, "app-allowed", None);
    let mut none_header = part(&good, 0);
    none_header["alg"] = json!("none");
    let alg_none = format!(
        "{}.{}.",
        B64.encode(none_header.to_string()),
        good.split('.').nth(1).unwrap()
    );
    let wrong_audience = token(&s.issuer, "app-allowed", Some("urn:another-api"));
    let short = token(&s.issuer, "app-short-lived", None);
    let exp = part(&short, 1)["exp"].as_i64().unwrap();
    wait_for(
        "the short-lived token to expire",
        Duration::from_secs(10),
        || (credmgr_e2e::unix_now() > exp).then_some(()),
    );
    let cases = [
        ("alg none", alg_none, "jwt_algorithm_not_allowed"),
        (
            "HMAC with the public key",
            edited(&good, 0, "alg", "HS256"),
            "jwt_algorithm_not_allowed",
        ),
        (
            "unknown kid",
            edited(&good, 0, "kid", "no-such-key"),
            "jwt_unknown_key",
        ),
        (
            "wrong issuer",
            edited(&good, 1, "iss", "https://evil.example"),
            "jwt_untrusted_issuer",
        ),
        (
            "tampered claims",
            edited(&good, 1, "client_id", "app-admin"),
            "jwt_bad_signature",
        ),
        ("wrong audience", wrong_audience, "jwt_wrong_audience"),
        ("expired", short, "jwt_expired"),
        ("malformed", "not-a-jwt".to_owned(), "jwt_malformed"),
        ("no token", String::new(), "jwt_malformed"),
    ];
    for (what, jwt, code) in &cases {
        let (status, body) = call_as(d, jwt);
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(body["error"]["code"], *code, "{what}: {body}");
    }

    // The managed identity: a connection whose policies do not name this gateway is 403.
    d.control_plane
        .create_connection(PROVIDER, "second", "Nobody's connection");
    let (status, body) = d.call("/second/x");
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "forbidden", "{body}");
    let (status, _) = d.call("/bearer/x");
    assert_eq!(
        status, 200,
        "the gateway's own policy allows it on the first connection"
    );

    // The control plane checks the same: a forwarded JWT of a caller it does not allow.
    let r = http()
        .get(format!(
            "{}{}",
            d.control_plane.url,
            credmgr_common::runtime::token_path(PROVIDER, CONNECTION)
        ))
        .bearer_auth(&d.control_plane.gateway_key)
        .header(credmgr_common::runtime::CALLER_TOKEN_HEADER, &denied)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);

    // Callers' JWTs are credentials: none appears in a log.
    let logs = [
        d.control_plane.process.log_text(),
        d.envoy.process.log_text(),
        d.backend.process.log_text(),
    ];
    for jwt in [&good, &denied, &alice] {
        let signature = jwt.rsplit('.').next().unwrap();
        for log in &logs {
            assert!(!log.contains(signature), "a caller's JWT was logged");
        }
    }
}

#[test]
fn policy_changes_reach_envoy_within_the_access_refresh_and_keys_rotate_without_restart() {
    let key_a = signing_key("key-a");
    let mut s = setup(std::slice::from_ref(&key_a));
    let d = &s.d;
    let jwt = token(&s.issuer, "app-allowed", None);
    assert_eq!(call_as(d, &jwt).0, 200);

    // Removed while traffic flows: refused within the access refresh interval, even though
    // Envoy holds a valid cached token.
    d.control_plane.disallow(PROVIDER, CONNECTION, "app");
    let removed = Instant::now();
    let took = wait_for(
        "the removed policy to take effect",
        Duration::from_secs(20),
        || {
            let (status, _) = call_as(d, &jwt);
            (status == 403).then(|| removed.elapsed())
        },
    );
    println!("policy removal took effect after {took:?}");
    // One tick (200 ms) and a call's round trip on top of the interval, on a loaded machine.
    assert!(took <= ACCESS_REFRESH + Duration::from_secs(2), "{took:?}");

    // Added back: allowed again within the same time.
    d.control_plane.allow(
        PROVIDER,
        CONNECTION,
        "app",
        json!({"kind": "application", "issuer": s.issuer.url, "client_id": "app-allowed"}),
    );
    let added = Instant::now();
    let took = wait_for(
        "the added policy to take effect",
        Duration::from_secs(20),
        || (call_as(d, &jwt).0 == 200).then(|| added.elapsed()),
    );
    println!("policy addition took effect after {took:?}");
    assert!(took <= ACCESS_REFRESH + Duration::from_secs(2), "{took:?}");

    // The issuer rotates its keys (a restart with a new signing key, the old one still
    // published): the first request with a token signed by the new key is accepted, after
    // the filter and the control plane fetch the keys again.
    s.issuer.process.stop();
    s.issuer = start_issuer(
        s.d.dir.path(),
        s.issuer_port,
        &[signing_key("key-b"), key_a],
    );
    let rotated = token(&s.issuer, "app-allowed", None);
    assert_eq!(part(&rotated, 0)["kid"], "key-b");
    let (status, body) = call_as(&s.d, &rotated);
    assert_eq!(status, 200, "a token signed with the new key: {body}");
    assert_eq!(call_as(&s.d, &jwt).0, 200, "the old key is still published");
}

#[test]
fn ten_thousand_requests_of_one_caller_verify_its_signature_once_per_worker() {
    let s = setup(&[signing_key("key-a")]);
    let d = &s.d;
    let jwt = token(&s.issuer, "app-grouped", None);
    assert_eq!(call_as(d, &jwt).0, 200);
    let verified_before = d.envoy.wait_stat("credmgr.jwt_verified", 1);
    let injected_before = d.envoy.wait_stat("credmgr.token_injected", 1);

    let fresh = token(&s.issuer, "app-grouped", None);
    const THREADS: usize = 4;
    const EACH: usize = 2_500;
    std::thread::scope(|scope| {
        for _ in 0..THREADS {
            scope.spawn(|| {
                let client = http();
                let auth = format!("Bearer {fresh}");
                for _ in 0..EACH {
                    let r = client
                        .get(format!("{}/jwt/x", d.envoy.url))
                        .header("authorization", &auth)
                        .send()
                        .unwrap();
                    assert_eq!(r.status().as_u16(), 200);
                }
            });
        }
    });
    // Both workers have handed their counts to Envoy once every request is counted.
    let total = u64::try_from(THREADS * EACH).unwrap();
    d.envoy
        .wait_stat("credmgr.token_injected", injected_before + total);
    let verified = d.envoy.stat("credmgr.jwt_verified") - verified_before;
    println!("{total} requests of one caller: {verified} signature verification(s)");
    // Envoy runs two workers here: at most one verification on each.
    assert!((1..=2).contains(&verified), "{verified}");
}
