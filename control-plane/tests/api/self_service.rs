//! Consent on demand: a self-service provider's connection created for a verified caller on
//! first need, the login URL made for them, the consent through the existing flow, and the
//! token handed to that caller afterwards. (Who may not, rate limits and validation:
//! `self_service_access.rs`.)

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use credmgr_common::runtime::{consent_challenge, CALLER_TOKEN_HEADER};
use jwt_compact::alg::Es256;
use serde_json::{json, Value};

use crate::fake_saas::{FakeSaas, JSON};
use crate::harness::*;
use crate::identities::{es256_keys, sign};
use crate::presets::{make_due, query, LANDING};

pub(crate) const ISS: &str = "https://login.example/tenant-1/v2.0";
pub(crate) const AUD: &str = "api://backend";

pub(crate) type SigningKey = <Es256 as jwt_compact::Algorithm>::SigningKey;

/// An authorization-code provider `p` whose token endpoint is `token_url`, self-service with
/// connections named `<p>-{{object_id}}`, and the trusted issuer `ISS` whose key it returns.
pub(crate) async fn self_service_provider(h: &Harness, p: &str, token_url: &str) -> SigningKey {
    let r = h
        .admin(
            Method::PUT,
            &format!("/v1/providers/{p}"),
            Some(body(p, token_url)),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    trust_issuer(h).await
}

/// The body of a self-service provider `p`.
pub(crate) fn body(p: &str, token_url: &str) -> Value {
    json!({
        "display_name": "Git forge",
        "identity_provider": "oauth2",
        "grant_type": "authorization_code",
        "client_id": "credmgr-demo",
        "client_secret": CLIENT_SECRET,
        "token_url": token_url,
        "authorization_url": "https://idp.example/authorize",
        "scopes": ["repo"],
        "allowed_redirect_urls": [LANDING],
        "self_service": {
            "connection_id": format!("{p}-{{{{object_id}}}}"),
            "display_name": "Forge account of {{object_id}}",
            "post_login_redirect_url": LANDING
        }
    })
}

/// Trusts `ISS` (once per harness; again is a replace) with a fresh key; returns it.
pub(crate) async fn trust_issuer(h: &Harness) -> SigningKey {
    let (sk, jwks) = es256_keys();
    let r = h
        .admin(
            Method::PUT,
            "/v1/trusted-issuers/entra",
            Some(json!({"issuer": ISS, "audiences": [AUD], "jwks": jwks})),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.json);
    sk
}

/// The runtime call for connection `c` of `p` with the JWT of user `oid`.
pub(crate) async fn as_user(h: &Harness, sk: &SigningKey, oid: &str, p: &str, c: &str) -> Reply {
    let jwt = sign(sk, json!({"iss": ISS, "aud": AUD, "oid": oid}));
    let path = credmgr_common::runtime::token_path(p, c);
    h.call_with_headers(
        Method::GET,
        &path,
        &[
            ("authorization", &format!("Bearer {GATEWAY_KEY}")),
            (CALLER_TOKEN_HEADER, &jwt),
        ],
    )
    .await
}

/// Checks a 401 with a login URL for `p`/`c`; returns the URL.
pub(crate) fn assert_login_answer(r: &Reply, p: &str, c: &str) -> String {
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.json);
    assert_eq!(r.json["error"]["code"], "consent_required", "{}", r.json);
    let url = r.json["error"]["login_url"]
        .as_str()
        .unwrap_or_else(|| panic!("no login_url: {}", r.json))
        .to_owned();
    assert!(url.starts_with("http://127.0.0.1:0/oauth2/login/"), "{url}");
    assert_eq!(r.json["error"]["details"]["provider_id"], p);
    assert_eq!(r.json["error"]["details"]["connection_id"], c);
    assert!(r.json["error"]["details"]["login_url_expires_at"].is_string());
    assert_eq!(
        r.headers["www-authenticate"].to_str().unwrap(),
        consent_challenge(p, c, &url)
    );
    assert_eq!(r.headers["cache-control"], "no-store");
    url
}

fn path_of(url: &str) -> String {
    url.strip_prefix("http://127.0.0.1:0").unwrap().to_owned()
}

/// Everything the control plane logs while it lives, at every level.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Log {
    type Writer = Log;
    fn make_writer(&'a self) -> Log {
        self.clone()
    }
}

impl Log {
    /// The log of this test process, at every level, from the first call on. (Global: a
    /// thread's own subscriber misses events whose call sites other tests' threads, which
    /// have none, marked as uninteresting.)
    fn global() -> Log {
        static LOG: std::sync::OnceLock<Log> = std::sync::OnceLock::new();
        LOG.get_or_init(|| {
            let log = Log::default();
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_ansi(false)
                .with_writer(log.clone())
                .finish();
            tracing::subscriber::set_global_default(subscriber).unwrap();
            log
        })
        .clone()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn a_first_call_creates_the_callers_connection_and_consent_hands_them_its_token() {
    let log = Log::global();

    let h = Harness::new().await;
    let saas = FakeSaas::start().await;
    let sk = self_service_provider(&h, "forge", &saas.token_url).await;

    // First call: the connection is made for alice, with one policy naming her.
    let r = as_user(&h, &sk, "u-alice", "forge", "forge-u-alice").await;
    let first_url = assert_login_answer(&r, "forge", "forge-u-alice");
    let conn = h.shown_connection("forge", "forge-u-alice").await;
    assert_eq!(conn["status"], "not_connected", "{conn}");
    assert_eq!(conn["display_name"], "Forge account of u-alice");
    let policies = h
        .admin(
            Method::GET,
            "/v1/providers/forge/connections/forge-u-alice/access-policies",
            None,
        )
        .await;
    assert_eq!(
        policies.json.as_array().map(|p| p.len()),
        Some(1),
        "{}",
        policies.json
    );
    assert_eq!(
        policies.json[0]["identity"],
        json!({"kind": "user", "issuer": ISS, "object_id": "u-alice"})
    );
    h.assert_metric(r#"credmgr_runtime_token_requests_total{outcome="consent_link"} 1"#);

    // Each call that still needs consent gets a fresh link.
    let r = as_user(&h, &sk, "u-alice", "forge", "forge-u-alice").await;
    let url = assert_login_answer(&r, "forge", "forge-u-alice");
    assert_ne!(url, first_url);

    // The interstitial names the connection and the user the link was made for.
    let path = path_of(&url);
    let page = h
        .raw(Request::get(&path).body(Body::empty()).unwrap())
        .await;
    assert_eq!(page.status, StatusCode::OK);
    let html = page.json.as_str().unwrap().to_owned();
    for text in [
        "Forge account of u-alice",
        "forge/forge-u-alice",
        "u-alice",
        ISS,
    ] {
        assert!(html.contains(text), "{text} not in {html}");
    }

    // Continue, the provider's redirect back, the code exchanged: connected.
    let go = h
        .raw(Request::post(&path).body(Body::empty()).unwrap())
        .await;
    assert_eq!(go.status, StatusCode::SEE_OTHER, "{}", go.json);
    let location = url::Url::parse(go.headers["location"].to_str().unwrap()).unwrap();
    let state = query(&location, "state").unwrap();
    let cookie = go.headers["set-cookie"].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_owned();
    saas.answer(
        200,
        JSON,
        r#"{"access_token":"alice-access-token-7d1e","token_type":"Bearer","expires_in":3600,"refresh_token":"alice-refresh-token-2b9c"}"#,
    );
    let cb = Request::get(format!("/oauth2/callback?code=alice-code-55&state={state}"))
        .header("cookie", cookie)
        .body(Body::empty())
        .unwrap();
    let back = h.raw(cb).await;
    assert_eq!(back.status, StatusCode::SEE_OTHER, "{}", back.json);
    let landing = back.headers["location"].to_str().unwrap();
    assert!(landing.starts_with(LANDING), "{landing}");
    assert_eq!(saas.seen()[0].form["code"], "alice-code-55");

    // The link worked once; the user's next call gets their token, with no operator action.
    let again = h
        .raw(Request::get(&path).body(Body::empty()).unwrap())
        .await;
    assert_eq!(again.status, StatusCode::GONE);
    let r = as_user(&h, &sk, "u-alice", "forge", "forge-u-alice").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["access_token"], "alice-access-token-7d1e");
    assert_eq!(
        h.shown_connection("forge", "forge-u-alice").await["status"],
        "connected"
    );

    // The provider revokes the refresh token: the next call gets a new login URL.
    make_due(&h, "forge", "forge-u-alice", true).await;
    saas.answer(
        400,
        JSON,
        r#"{"error":"invalid_grant","error_description":"revoked"}"#,
    );
    let r = as_user(&h, &sk, "u-alice", "forge", "forge-u-alice").await;
    let after_revoke = assert_login_answer(&r, "forge", "forge-u-alice");
    let conn = h.shown_connection("forge", "forge-u-alice").await;
    assert_eq!(conn["error"]["code"], "refresh_token_invalid", "{conn}");
    // And again on the call after (the status says so now; no provider call).
    let r = as_user(&h, &sk, "u-alice", "forge", "forge-u-alice").await;
    assert_login_answer(&r, "forge", "forge-u-alice");
    assert_eq!(saas.seen().len(), 2, "one exchange, one refresh");

    // No login URL or link secret in any log line, at any level.
    let text = log.text();
    assert!(
        text.contains("self-service login link made for the caller"),
        "the log was captured: {text}"
    );
    for url in [&first_url, &url, &after_revoke] {
        let secret = url.rsplit('/').next().unwrap();
        assert!(
            !text.contains(secret),
            "a login link's secret is in the log"
        );
    }
    for secret in [
        "alice-access-token-7d1e",
        "alice-refresh-token-2b9c",
        "alice-code-55",
        &state,
        CLIENT_SECRET,
    ] {
        assert!(!text.contains(secret), "{secret} is in the log");
    }
    h.assert_not_at_rest(&[first_url.rsplit('/').next().unwrap()])
        .await;
}
