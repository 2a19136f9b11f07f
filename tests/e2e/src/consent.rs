//! Authorization-code deployments: the OAuth server knows the control plane's callback, the
//! provider `demo` uses the authorization-code grant, and a real headless Chromium (driven by
//! `tests/browser/consent.mjs`) goes through the consent flow as a person would.

use crate::control_plane::ControlPlane;
use crate::stack::{Backend, Deployment, OAuthServer, CONNECTION, PROVIDER};
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

/// An authorization-code deployment before its Envoy: the OAuth server knows the control
/// plane's callback; no provider exists yet. A test configures the control plane, then starts
/// Envoy with [`ConsentParts::with_envoy`].
pub struct ConsentParts {
    pub dir: tempfile::TempDir,
    pub oauth: OAuthServer,
    pub control_plane: ControlPlane,
    pub backend: Backend,
}

impl ConsentParts {
    /// Starts the OAuth server (tokens living `access_token_ttl` seconds), the control plane
    /// (with `cp_env`) and the backend.
    pub fn start(access_token_ttl: u32, cp_env: &[(&str, &str)]) -> ConsentParts {
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
        ConsentParts {
            dir,
            oauth,
            control_plane,
            backend,
        }
    }

    /// Starts Envoy from `template` (under `envoy/`) in front of the rest.
    pub fn with_envoy(self, template: &str) -> Deployment {
        Deployment::with_envoy(
            self.dir,
            self.oauth,
            self.control_plane,
            self.backend,
            template,
        )
    }
}

impl Deployment {
    /// Starts a deployment whose provider `demo` uses the authorization-code grant (its
    /// connection `demo` starts `not_connected`); `cp_env` goes to the control plane.
    pub fn start_consent(access_token_ttl: u32, cp_env: &[(&str, &str)]) -> Deployment {
        let parts = ConsentParts::start(access_token_ttl, cp_env);
        let cp = &parts.control_plane;
        cp.create_provider(PROVIDER, consent_provider_body(&parts.oauth));
        cp.create_connection(PROVIDER, CONNECTION, "Alice's account");
        cp.allow_test_gateway(PROVIDER, CONNECTION);
        parts.with_envoy("demo.yaml")
    }

    /// The connection as the management API shows it.
    pub fn connection(&self) -> Value {
        self.control_plane.connection(PROVIDER, CONNECTION)
    }

    /// Asks for a login link; returns the status and body.
    pub fn request_login_link(&self, redirect: &str) -> (u16, Value) {
        self.control_plane
            .request_login_link(PROVIDER, CONNECTION, redirect)
    }

    /// A login link to [`LANDING`].
    pub fn login_link(&self) -> String {
        self.control_plane.login_link(PROVIDER, CONNECTION)
    }

    /// Opens `login_url` in a fresh headless Chromium and consents as `user`.
    pub fn consent_in_browser(&self, login_url: &str, user: &str) -> BrowserRun {
        let v = run_browser(json!({"login_url": login_url, "landing": LANDING, "user": user}));
        let text = |k: &str| v[k].as_str().map(str::to_owned);
        BrowserRun {
            interstitial: text("interstitial").unwrap_or_default(),
            callback_url: text("callback_url")
                .unwrap_or_else(|| panic!("the browser never reached the callback: {v}")),
            landing_url: text("landing_url"),
            page: text("page").unwrap_or_default(),
        }
    }

    /// In a fresh headless Chromium, a page of another site (`http://attacker.test`) submits
    /// a form to `login_url` by itself, as a cross-site request forgery of Continue would;
    /// returns the status of that POST and the page the browser shows.
    pub fn forged_continue_in_browser(&self, login_url: &str) -> (u16, String) {
        let v = run_browser(json!({"login_url": login_url, "forge_from": "http://attacker.test"}));
        let status = v["forged_status"]
            .as_u64()
            .and_then(|s| u16::try_from(s).ok())
            .unwrap_or_else(|| panic!("no forged_status in {v}"));
        (status, v["page"].as_str().unwrap_or_default().to_owned())
    }

    /// Begins a login in a fresh [`HttpBrowser`] (login link, Continue) and, instead of the
    /// provider's answer, presents the callback with `query` and the login's `state`;
    /// returns the callback's status and page.
    pub fn callback_in_fresh_browser(&self, query: &str) -> (u16, String) {
        let browser = HttpBrowser::new();
        let (status, authorize) = browser.continue_login(&self.login_link());
        let authorize = authorize.unwrap_or_else(|| panic!("Continue ({status}) did not redirect"));
        let state = state_of(&authorize);
        let (status, _, page) = browser.get(&format!(
            "{}/oauth2/callback?{query}&state={state}",
            self.control_plane.url
        ));
        (status, page)
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

/// Runs `tests/browser/consent.mjs` with `options`; its JSON answer.
fn run_browser(options: Value) -> Value {
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
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("browser output {stdout:?}: {e}"))
}

impl ControlPlane {
    /// Asks for a login link to a connection that sends the user to `redirect` afterwards;
    /// returns the status and body.
    pub fn request_login_link(
        &self,
        provider: &str,
        connection: &str,
        redirect: &str,
    ) -> (u16, Value) {
        self.admin(
            "POST",
            &format!("/v1/providers/{provider}/connections/{connection}/login-links"),
            Some(json!({"post_login_redirect_url": redirect})),
        )
    }

    /// A login link to a connection, with [`LANDING`] as the post-login page.
    pub fn login_link(&self, provider: &str, connection: &str) -> String {
        let (status, body) = self.request_login_link(provider, connection, LANDING);
        assert_eq!(
            status, 201,
            "login link for {provider}/{connection}: {body}"
        );
        body["login_url"]
            .as_str()
            .unwrap_or_else(|| panic!("no login_url in {body}"))
            .to_owned()
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

/// A browser without a browser: an HTTP client with its own cookie jar, for the tests that
/// need to stop half-way or to present one browser's answer from another.
pub struct HttpBrowser {
    pub client: reqwest::blocking::Client,
}

impl Default for HttpBrowser {
    fn default() -> Self {
        HttpBrowser::new()
    }
}

impl HttpBrowser {
    pub fn new() -> HttpBrowser {
        let client = reqwest::blocking::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(std::time::Duration::from_secs(15))
            .build()
            .unwrap_or_else(|e| panic!("HTTP client: {e}"));
        HttpBrowser { client }
    }

    /// Presses Continue on the interstitial; returns the status and the `Location`.
    pub fn continue_login(&self, login_url: &str) -> (u16, Option<String>) {
        let r = self
            .client
            .post(login_url)
            .send()
            .unwrap_or_else(|e| panic!("POST {login_url}: {e}"));
        (r.status().as_u16(), location(&r, login_url))
    }

    /// Logs in and consents at oidc-provider's dev pages, starting at the authorization URL;
    /// returns the callback URL the provider redirects to (not followed).
    pub fn consent_at_provider(&self, authorization_url: &str, user: &str) -> String {
        let mut url = authorization_url.to_owned();
        for _ in 0..10 {
            if url::Url::parse(&url).is_ok_and(|u| u.path() == "/oauth2/callback") {
                return url;
            }
            let response = if url.contains("/interaction/") {
                let page = self
                    .client
                    .get(&url)
                    .send()
                    .and_then(|r| r.text())
                    .unwrap_or_else(|e| panic!("GET {url}: {e}"));
                let form: &[(&str, &str)] = if page.contains("name=\"login\"") {
                    &[("prompt", "login"), ("login", user), ("password", "x")]
                } else {
                    &[("prompt", "consent")]
                };
                self.client.post(&url).form(form).send()
            } else {
                self.client.get(&url).send()
            }
            .unwrap_or_else(|e| panic!("{url}: {e}"));
            url = location(&response, &url)
                .unwrap_or_else(|| panic!("no redirect from {url}: {}", response.status()));
        }
        panic!("the provider never redirected to the callback (last: {url})")
    }

    /// GETs a URL; returns the status, `Location` and body.
    pub fn get(&self, url: &str) -> (u16, Option<String>, String) {
        let r = self
            .client
            .get(url)
            .send()
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let status = r.status().as_u16();
        let loc = location(&r, url);
        (status, loc, r.text().unwrap_or_default())
    }
}

/// The authorization URL's `state`.
pub fn state_of(authorization_url: &str) -> String {
    url::Url::parse(authorization_url)
        .unwrap_or_else(|e| panic!("{authorization_url}: {e}"))
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("no state in {authorization_url}"))
}

/// The `Location` of a response, resolved against the request URL.
fn location(r: &reqwest::blocking::Response, base: &str) -> Option<String> {
    let loc = r.headers().get("location")?.to_str().ok()?;
    url::Url::parse(base)
        .ok()?
        .join(loc)
        .ok()
        .map(|u| u.to_string())
}

impl Deployment {
    /// The client secret, and every access and refresh token the OAuth server issued, each
    /// with what it is.
    pub fn issued_secrets(&self) -> Vec<(String, String)> {
        let issued: Value = crate::http()
            .get(format!("{}/test/issued-tokens", self.oauth.url))
            .send()
            .and_then(|r| r.json())
            .unwrap_or_else(|e| panic!("reading the issued tokens: {e}"));
        let mut secrets: Vec<(String, String)> =
            vec![("client secret".into(), "credmgr-demo-secret".into())];
        for (kind, what) in [
            ("access_tokens", "access token"),
            ("refresh_tokens", "refresh token"),
        ] {
            for t in issued[kind].as_array().into_iter().flatten() {
                if let Some(t) = t.as_str() {
                    secrets.push((what.into(), t.to_owned()));
                }
            }
        }
        assert!(
            secrets.len() > 2,
            "the OAuth server issued no tokens to look for: {issued}"
        );
        secrets
    }

    /// Searches Envoy's and the control plane's logs (stderr and stdout) for `extra` and for
    /// everything [`Deployment::issued_secrets`] names: none may appear.
    pub fn assert_logs_free_of(&self, extra: &[(&str, String)]) {
        let mut secrets = self.issued_secrets();
        secrets.extend(extra.iter().map(|(w, s)| ((*w).to_owned(), s.clone())));
        let mut scanned = Vec::new();
        for entry in std::fs::read_dir(self.dir.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if (name.starts_with("control-plane") || name.starts_with("envoy"))
                && name.ends_with(".log")
            {
                let bytes = std::fs::read(entry.path()).unwrap_or_default();
                for (what, secret) in &secrets {
                    assert!(
                        !crate::contains_bytes(&bytes, secret.as_bytes()),
                        "a {what} is in {name}"
                    );
                }
                scanned.push(name);
            }
        }
        assert!(
            scanned.iter().any(|n| n.starts_with("envoy"))
                && scanned.iter().any(|n| n.starts_with("control-plane")),
            "no Envoy or control-plane log in {}: {scanned:?}",
            self.dir.path().display()
        );
        eprintln!(
            "log scan: {} secrets, none in {}",
            secrets.len(),
            scanned.join(", ")
        );
    }

    /// Searches the control plane's database files and logs for the client secret and every
    /// access and refresh token the OAuth server issued: none may appear in plaintext.
    pub fn assert_no_plaintext_secrets(&self) {
        let secrets = self.issued_secrets();
        let mut blobs = self.control_plane.database_contents();
        assert!(
            !blobs.is_empty(),
            "no database at {}",
            self.control_plane.database_url
        );
        for entry in std::fs::read_dir(self.dir.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("control-plane") && name.ends_with(".log") {
                let bytes = std::fs::read(entry.path()).unwrap_or_default();
                blobs.push((name, bytes));
            }
        }
        for (name, bytes) in &blobs {
            for (what, secret) in &secrets {
                assert!(
                    !crate::contains_bytes(bytes, secret.as_bytes()),
                    "a {what} is in plaintext in {name}"
                );
            }
        }
        eprintln!(
            "secret scan: {} secrets, {} places ({}), none in plaintext",
            secrets.len(),
            blobs.len(),
            blobs
                .iter()
                .map(|(name, _)| name.rsplit('/').next().unwrap_or(name))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
}
