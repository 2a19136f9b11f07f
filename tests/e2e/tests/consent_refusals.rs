//! Everything the consent flow and the management API must refuse, against the real
//! processes: each refusal is answered as specified and changes nothing stored.

use credmgr_e2e::consent::{HttpBrowser, LANDING};
use credmgr_e2e::stack::{CONNECTION, PROVIDER};
use credmgr_e2e::{http, status_and_json, wait_for, Deployment};
use reqwest::blocking::RequestBuilder;
use serde_json::{json, Value};
use std::time::Duration;

/// What must not change when something is refused.
fn snapshot(d: &Deployment) -> Value {
    let c = d.connection();
    json!([
        c["status"],
        c["error"],
        c["etag"],
        c["token_expires_at"],
        c["last_refresh_at"],
        c["display_name"],
        d.oauth.stats()["token_requests"]
    ])
}

/// Sends `req` (`what`, for the message) and checks it is refused with `status` and, when
/// given, the error `code` in its JSON body.
fn assert_refused(what: &str, req: RequestBuilder, status: u16, code: Option<&str>) {
    let (got, body) = status_and_json(req.send().unwrap_or_else(|e| panic!("{what}: {e}")));
    assert_eq!(got, status, "{what}: {body}");
    if let Some(code) = code {
        assert_eq!(body["error"]["code"], code, "{what}: {body}");
    }
}

#[test]
fn foreign_state_expired_links_bad_redirects_wrong_admin_tokens_and_stale_etags_are_refused() {
    let d = Deployment::start_consent(3600, &[("CREDMGR_LOGIN_LINK_TTL", "3s")]);
    let cp = &d.control_plane;
    let before = snapshot(&d);

    // A redirect URL outside the provider's allowlist.
    let (status, body) = d.request_login_link("https://attacker.example/collect");
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["error"]["details"]["field"], "post_login_redirect_url",
        "{body}"
    );
    assert_eq!(snapshot(&d), before);

    // A wrong admin token, on reads and writes.
    let url = format!(
        "{}/v1/providers/{PROVIDER}/connections/{CONNECTION}",
        cp.url
    );
    for token in ["wrong-admin-token", cp.gateway_key.as_str()] {
        let as_token = |what: &str| format!("{what} with {token}");
        assert_refused(
            &as_token("GET connection"),
            http().get(&url).bearer_auth(token),
            401,
            None,
        );
        assert_refused(
            &as_token("PUT connection"),
            http()
                .put(&url)
                .bearer_auth(token)
                .json(&json!({"display_name": "hijacked"})),
            401,
            Some("unauthenticated"),
        );
        assert_refused(
            &as_token("POST login-links"),
            http()
                .post(format!("{url}/login-links"))
                .bearer_auth(token)
                .json(&json!({"post_login_redirect_url": LANDING})),
            401,
            None,
        );
    }
    assert_eq!(snapshot(&d), before);

    // A stale ETag.
    let etag = d.connection()["etag"].as_str().unwrap().to_owned();
    let (status, body) = cp.admin(
        "PUT",
        &format!("/v1/providers/{PROVIDER}/connections/{CONNECTION}"),
        Some(json!({"display_name": "Alice's account"})),
    );
    assert_eq!(status, 200, "{body}");
    let before = snapshot(&d);
    assert_refused(
        "PUT with a stale ETag",
        http()
            .put(&url)
            .bearer_auth(&cp.admin_token)
            .header("if-match", format!("\"{etag}\""))
            .json(&json!({"display_name": "lost update"})),
        412,
        Some("precondition_failed"),
    );
    assert_refused(
        "DELETE with a stale ETag",
        http()
            .delete(&url)
            .bearer_auth(&cp.admin_token)
            .header("if-match", format!("\"{etag}\"")),
        412,
        None,
    );
    assert_eq!(snapshot(&d), before);

    // An expired login link: neither the interstitial nor Continue works.
    let link = d.login_link();
    let browser = HttpBrowser::new();
    let (status, _, page) = browser.get(&link);
    assert_eq!(status, 200, "{page}");
    wait_for("the login link to expire", Duration::from_secs(15), || {
        (browser.get(&link).0 == 410).then_some(())
    });
    let (status, _, page) = browser.get(&link);
    assert!(page.contains("expired"), "{page}");
    assert_eq!(status, 410);
    assert_eq!(browser.continue_login(&link).0, 410);
    assert_eq!(snapshot(&d), before);

    // A used login link cannot be used again.
    let link = d.login_link();
    let alice = HttpBrowser::new();
    let (status, authorize) = alice.continue_login(&link);
    assert_eq!(status, 303);
    let authorize = authorize.unwrap();
    assert!(
        authorize.contains("code_challenge_method=S256"),
        "{authorize}"
    );
    let (status, _, page) = HttpBrowser::new().get(&link);
    assert_eq!(status, 410);
    assert!(page.contains("already used"), "{page}");
    assert_eq!(HttpBrowser::new().continue_login(&link).0, 410);

    // State from another browser: Alice's answer presented by a browser without her cookie
    // is refused, and uses the state up, so Alice's own browser cannot complete it either.
    let callback = alice.consent_at_provider(&authorize, "alice");
    let (status, _, page) = HttpBrowser::new().get(&callback);
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("another browser"), "{page}");
    let (status, _, page) = alice.get(&callback);
    assert_eq!(status, 400, "{page}");
    assert_eq!(snapshot(&d), before, "no code was exchanged");

    // A provider error, and an answer claiming another issuer (mix-up, RFC 9207).
    let (status, page) = d.callback_in_fresh_browser(&format!(
        "error=access_denied&error_description=user+said+no&iss={}",
        d.oauth.url
    ));
    assert_eq!(status, 400, "{page}");
    assert!(
        page.contains("access_denied") && page.contains("user said no"),
        "{page}"
    );
    let (status, page) = d.callback_in_fresh_browser("code=abc&iss=http%3A%2F%2F127.0.0.1%3A1");
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("RFC 9207"), "{page}");
    // A forged code with a valid state and cookie: the exchange fails, nothing is stored.
    let (status, page) = d.callback_in_fresh_browser(&format!("code=forged&iss={}", d.oauth.url));
    assert_eq!(status, 502, "{page}");
    let after = d.connection();
    assert_eq!(after["status"], "not_connected", "{after}");
    assert_eq!(after["error"]["code"], "consent_required", "{after}");
    assert!(after["token_expires_at"].is_null(), "{after}");
    let stats = d.oauth.stats();
    assert_eq!(stats["tokens_issued"], 0, "{stats}");

    // After all that, a proper consent still works.
    let callback = {
        let b = HttpBrowser::new();
        let (_, authorize) = b.continue_login(&d.login_link());
        let callback = b.consent_at_provider(&authorize.unwrap(), "alice");
        let (status, landing, page) = b.get(&callback);
        assert_eq!(status, 303, "{page}");
        let landing = landing.unwrap();
        assert!(landing.starts_with(LANDING) && landing.contains("credmgr_status=connected"));
        callback
    };
    assert_eq!(d.connection()["status"], "connected");
    let (status, _, _) = HttpBrowser::new().get(&callback);
    assert_eq!(status, 400, "a replayed answer is refused");
    d.assert_no_plaintext_secrets();
}
