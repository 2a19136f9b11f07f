//! The web console, end to end in a real headless Chromium (`tests/browser/console.mjs`):
//! an operator signs in with the admin token, creates a provider from the preset catalogue
//! (against the real `oidc-provider`), a connection and its login link; the account's owner
//! consents through the link in another browser; the console then shows the connection
//! connected. Also: the console's forms refuse requests without the session's CSRF token or
//! from another site, and its pages carry the security headers.
//!
//! With `CREDMGR_SCREENSHOTS=DIR` the browser run saves its PNGs there (the README's come
//! from `CREDMGR_SCREENSHOTS=docs/console`).

use credmgr_e2e::consent::{ConsentParts, LANDING};
use credmgr_e2e::{http, repo_root};
use serde_json::{json, Value};
use std::process::Command;

fn run_console_browser(options: Value) -> Value {
    let script = repo_root().join("tests/browser/console.mjs");
    let out = Command::new("node")
        .arg(&script)
        .arg(options.to_string())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the browser run failed ({}):\n{}\n{stdout}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("browser output {stdout:?}: {e}"))
}

#[test]
fn an_operator_connects_an_account_from_the_console() {
    let parts = ConsentParts::start(3600, &[]);
    let cp = &parts.control_plane;
    let screenshots = std::env::var("CREDMGR_SCREENSHOTS").ok().map(|d| {
        let path = std::path::Path::new(&d);
        if path.is_absolute() {
            d
        } else {
            repo_root().join(path).display().to_string()
        }
    });
    let out = run_console_browser(json!({
        "console": cp.url,
        "admin_token": cp.admin_token,
        "issuer": parts.oauth.url,
        "landing": LANDING,
        "user": "alice",
        "screenshots": screenshots,
    }));
    let page = |k: &str| out[k].as_str().unwrap_or_default().to_owned();

    assert!(
        page("wrong_token_page").contains("not the admin token"),
        "{}",
        page("wrong_token_page")
    );
    // Before consent the provider's page said what to do; the link is the control plane's.
    assert!(
        page("provider_page").contains("not_connected")
            && page("provider_page").contains("make a login link"),
        "{}",
        page("provider_page")
    );
    assert!(page("login_url").starts_with(&format!("{}/oauth2/login/", cp.url)));
    // After consent: connected, with an expiry, as the API says too.
    let connections = page("connections_page");
    assert!(
        connections.contains("alice") && connections.contains("connected"),
        "{connections}"
    );
    assert!(!connections.contains("not_connected"), "{connections}");
    let conn = cp.connection("demo", "alice");
    assert_eq!(conn["status"], "connected", "{conn}");
    assert!(
        page("providers_page").contains("1/1"),
        "{}",
        page("providers_page")
    );
    assert!(
        page("keys_page").contains("test-key"),
        "{}",
        page("keys_page")
    );
    // What the console changed is in the audit trail, as a change over HTTP would be, without
    // the client secret.
    let (status, audit) = cp.admin("GET", "/v1/audit?provider_id=demo", None);
    assert_eq!(status, 200, "{audit}");
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["action"].as_str())
        .collect();
    for made in [
        "PUT /v1/providers/demo",
        "PUT /v1/providers/demo/connections/alice",
    ] {
        assert!(actions.contains(&made), "{made} not audited: {audit}");
    }
    assert!(
        !audit.to_string().contains("credmgr-demo-secret"),
        "{audit}"
    );
    // No page showed a secret: the client secret, the admin token, a token.
    for (name, text) in out.as_object().into_iter().flatten() {
        let text = text.as_str().unwrap_or_default();
        assert!(!text.contains("credmgr-demo-secret"), "{name}: {text}");
        assert!(!text.contains(&cp.admin_token), "{name}: {text}");
    }
    let issued: Value = http()
        .get(format!("{}/test/issued-tokens", parts.oauth.url))
        .send()
        .and_then(|r| r.json())
        .unwrap();
    let tokens = ["access_tokens", "refresh_tokens"]
        .iter()
        .flat_map(|k| issued[*k].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t.as_str().map(str::to_owned));
    for token in tokens {
        for (name, text) in out.as_object().into_iter().flatten() {
            assert!(
                !text.as_str().unwrap_or_default().contains(&token),
                "token on {name}"
            );
        }
    }
}

#[test]
fn console_forms_need_the_session_and_its_csrf_token_from_the_console_itself() {
    let parts = ConsentParts::start(3600, &[]);
    let cp = &parts.control_plane;
    let client = reqwest::blocking::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap();

    // Without a session: sent to sign-in. The sign-in page has the consent pages' headers.
    let r = client
        .get(format!("{}/console/providers", cp.url))
        .send()
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/console/sign-in");
    let r = client
        .get(format!("{}/console/sign-in", cp.url))
        .send()
        .unwrap();
    let h = r.headers();
    assert!(h["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("frame-ancestors 'none'"));
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["cache-control"], "no-store");

    // Signing in from another site is refused; from the console, the cookie holds no token.
    let sign_in = |origin: &str| {
        client
            .post(format!("{}/console/sign-in", cp.url))
            .header("origin", origin)
            .form(&[("admin_token", cp.admin_token.as_str())])
            .send()
            .unwrap()
    };
    assert_eq!(sign_in("http://attacker.test").status(), 403);
    let r = sign_in(&cp.url);
    assert_eq!(r.status(), 303);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(!cookie.contains(&cp.admin_token), "{cookie}");

    // Signed in: a form without the CSRF token, or from another site, changes nothing.
    let page = client
        .get(format!("{}/console/providers", cp.url))
        .send()
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().unwrap();
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();
    let create = |origin: &str, csrf: &str| {
        client
            .post(format!("{}/console/providers", cp.url))
            .header("origin", origin)
            .form(&[
                ("csrf", csrf),
                ("type", "oauth2"),
                ("id", "forged"),
                ("grant_type", "client_credentials"),
                ("client_id", "x"),
                ("client_secret", "y"),
                ("token_url", "https://idp.example/token"),
            ])
            .send()
            .unwrap()
            .status()
    };
    assert_eq!(create(&cp.url, "not-the-token"), 403);
    assert_eq!(create("http://attacker.test", &csrf), 403);
    let (status, _) = cp.admin("GET", "/v1/providers/forged", None);
    assert_eq!(status, 404, "a refused form created nothing");
    // With both, the provider is made; a preset's form lists its parameters.
    assert_eq!(create(&cp.url, &csrf), 303);
    let form = client
        .get(format!("{}/console/providers/new?type=keycloak", cp.url))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        form.contains("name=\"param.base_url\"") && form.contains("name=\"param.realm\""),
        "{form}"
    );

    // Names are shown as text, never as markup.
    let (status, _) = cp.admin(
        "PUT",
        "/v1/providers/forged/connections/x",
        Some(json!({"display_name": "<script>alert(1)</script>"})),
    );
    assert_eq!(status, 201);
    let (status, _) = cp.admin(
        "PUT",
        "/v1/trusted-issuers/evil",
        Some(json!({"display_name": "<img src=x onerror=alert(1)>",
            "issuer": "https://x.example/\"><script>alert(2)</script>",
            "audiences": ["<b>aud</b>"], "jwks_uri": "https://x.example/keys"})),
    );
    assert_eq!(status, 201);
    for path in [
        "/console/providers/forged/connections/x",
        "/console/issuers",
    ] {
        let html = client
            .get(format!("{}{path}", cp.url))
            .send()
            .unwrap()
            .text()
            .unwrap();
        assert!(
            !html.contains("<script>alert") && !html.contains("<b>aud") && !html.contains("<img"),
            "{path}: {html}"
        );
        assert!(
            html.contains("&lt;"),
            "{path} shows the names, escaped: {html}"
        );
    }

    // Signing out clears the cookie: the console sends the browser to sign-in again.
    let r = client
        .post(format!("{}/console/sign-out", cp.url))
        .header("origin", &cp.url)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    let r = client
        .get(format!("{}/console/keys", cp.url))
        .send()
        .unwrap();
    assert_eq!(r.status(), 303, "signed out");
}
