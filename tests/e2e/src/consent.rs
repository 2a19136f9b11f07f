//! Authorization-code deployments: the OAuth server knows the control plane's callback, the
//! provider `demo` uses the authorization-code grant, and a real headless Chromium (driven by
//! `tests/browser/consent.mjs`) goes through the consent flow as a person would.

use crate::stack::{Backend, ControlPlane, Deployment, Envoy, OAuthServer, CONNECTION, PROVIDER};
use crate::{free_port, repo_root};
use serde_json::{json, Value};
use std::process::Command;

/// The post-login page of the operator's application. Nothing listens there: the browser
/// script answers it itself, and the tests only look at the URL it was sent to.
pub const LANDING: &str = "http://127.0.0.1:9/after-consent";

/// What the browser saw.
#[derive(Debug)]
pub struct BrowserRun {
    /// Text of the interstitial page.
    pub interstitial: String,
    /// The provider's redirect to the control plane's callback (with `code` and `state`).
    pub callback_url: String,
    /// Where the browser landed, if it reached the post-login page.
    pub landing_url: Option<String>,
    /// Text of the last page shown.
    pub page: String,
}

impl Deployment {
    /// Starts a deployment whose provider `demo` uses the authorization-code grant (its
    /// connection `demo` starts `not_connected`); `cp_env` goes to the control plane.
    pub fn start_consent(access_token_ttl: u32, cp_env: &[(&str, &str)]) -> Deployment {
        let dir = tempfile::Builder::new()
            .prefix("credmgr-e2e-consent-")
            .tempdir()
            .unwrap_or_else(|e| panic!("temp dir: {e}"));
        let port = free_port();
        let callback = format!("http://127.0.0.1:{port}/oauth2/callback");
        let oauth = OAuthServer::start(
            dir.path(),
            &[
                ("ACCESS_TOKEN_TTL", &access_token_ttl.to_string()),
                ("REDIRECT_URIS", &callback),
            ],
        );
        let control_plane = ControlPlane::start_with(dir.path(), port, cp_env);
        let backend = Backend::start(dir.path(), &oauth);
        let (status, body) = control_plane.admin(
            "PUT",
            &format!("/v1/providers/{PROVIDER}"),
            Some(consent_provider_body(&oauth)),
        );
        assert_eq!(status, 201, "creating provider {PROVIDER}: {body}");
        let (status, body) = control_plane.admin(
            "PUT",
            &format!("/v1/providers/{PROVIDER}/connections/{CONNECTION}"),
            Some(json!({"display_name": "Alice's account"})),
        );
        assert_eq!(status, 201, "creating connection: {body}");
        let envoy = Envoy::start(
            dir.path(),
            "demo.yaml",
            &Deployment::envoy_vars(&control_plane, &backend),
        );
        Deployment {
            envoy,
            backend,
            control_plane,
            oauth,
            dir,
        }
    }

    /// The connection as the management API shows it.
    pub fn connection(&self) -> Value {
        let (status, body) = self.control_plane.admin(
            "GET",
            &format!("/v1/providers/{PROVIDER}/connections/{CONNECTION}"),
            None,
        );
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Asks for a login link; returns the status and body.
    pub fn request_login_link(&self, redirect: &str) -> (u16, Value) {
        self.control_plane.admin(
            "POST",
            &format!("/v1/providers/{PROVIDER}/connections/{CONNECTION}/login-links"),
            Some(json!({"post_login_redirect_url": redirect})),
        )
    }

    /// A login link to [`LANDING`].
    pub fn login_link(&self) -> String {
        let (status, body) = self.request_login_link(LANDING);
        assert_eq!(status, 201, "login link: {body}");
        body["login_url"]
            .as_str()
            .unwrap_or_else(|| panic!("no login_url in {body}"))
            .to_owned()
    }

    /// Opens `login_url` in a fresh headless Chromium and consents as `user`.
    pub fn consent_in_browser(&self, login_url: &str, user: &str) -> BrowserRun {
        let options = json!({"login_url": login_url, "landing": LANDING, "user": user});
        let script = repo_root().join("tests/browser/consent.mjs");
        assert!(
            repo_root().join("tests/browser/node_modules").exists(),
            "tests/browser/node_modules is missing: run `make test` (it runs npm ci there)"
        );
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
        let v: Value = serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("browser output {stdout:?}: {e}"));
        let text = |k: &str| v[k].as_str().map(str::to_owned);
        BrowserRun {
            interstitial: text("interstitial").unwrap_or_default(),
            callback_url: text("callback_url")
                .unwrap_or_else(|| panic!("the browser never reached the callback: {v}")),
            landing_url: text("landing_url"),
            page: text("page").unwrap_or_default(),
        }
    }

    /// Consents in the browser and checks the user landed on the post-login page, connected.
    pub fn consent(&self, user: &str) -> BrowserRun {
        let run = self.consent_in_browser(&self.login_link(), user);
        let landing = run.landing_url.clone().unwrap_or_else(|| {
            panic!(
                "the browser did not reach the post-login page; last page:\n{}\ncontrol plane log:\n{}",
                run.page,
                self.control_plane.process.log_text()
            )
        });
        assert!(
            landing.contains("credmgr_status=connected"),
            "post-login URL without the outcome: {landing}"
        );
        run
    }
}

/// The authorization-code provider for the test OAuth server.
pub fn consent_provider_body(oauth: &OAuthServer) -> Value {
    json!({
        "display_name": "Test OAuth server",
        "identity_provider": "oauth2-pkce",
        "grant_type": "authorization_code",
        "client_id": "credmgr-demo",
        "client_secret": "credmgr-demo-secret",
        "authorization_url": format!("{}/auth", oauth.url),
        "token_url": oauth.token_url(),
        "issuer": oauth.url,
        "scopes": ["openid", "api:read"],
        "allowed_redirect_urls": [LANDING],
    })
}
