//! Presets for providers that cannot be reached from here, end to end: a real control plane,
//! Envoy with the filter (`envoy/e2e.yaml`) and the demo backend, with the SaaS provider stood
//! in for by a local server replaying its documented responses (`credmgr_e2e::fake_saas`).
//! The user consents through the real interstitial and callback; the backend checks the token
//! it receives by introspection at the stand-in, which shows which token reached it.

use credmgr_e2e::consent::{HttpBrowser, LANDING};
use credmgr_e2e::fake_saas::FakeSaas;
use credmgr_e2e::{http, status_and_json, Backend, ControlPlane, Envoy};
use serde_json::{json, Value};

const JSON: &str = "application/json; charset=utf-8";
const FORM: &str = "application/x-www-form-urlencoded; charset=utf-8";

macro_rules! documented {
    ($file:literal) => {
        include_str!(concat!("../../provider-responses/", $file))
    };
}

/// Field order is drop order: Envoy first, the stand-in provider last.
struct SaasStack {
    envoy: Envoy,
    _backend: Backend,
    control_plane: ControlPlane,
    fake: FakeSaas,
    _dir: tempfile::TempDir,
}

const CONNECTION: &str = "alice";

impl SaasStack {
    /// A provider `preset` (with its id as provider id) whose endpoints are the stand-in's,
    /// and a connection `alice` under it.
    fn start(preset: &str) -> SaasStack {
        let dir = tempfile::Builder::new()
            .prefix("credmgr-e2e-presets-")
            .tempdir()
            .unwrap_or_else(|e| panic!("temp dir: {e}"));
        let fake = FakeSaas::start();
        let control_plane = ControlPlane::start(dir.path());
        let backend = Backend::start_introspecting(dir.path(), &fake.introspection_url());
        control_plane.create_provider(
            preset,
            json!({
                "identity_provider": preset,
                "client_id": "client-1",
                "client_secret": "client-secret-of-the-test-app",
                "token_url": fake.token_url(),
                "authorization_url": fake.authorization_url(),
                "allowed_redirect_urls": [LANDING],
            }),
        );
        control_plane.create_connection(preset, CONNECTION, "Alice");
        control_plane.allow_test_gateway(preset, CONNECTION);
        let envoy = Envoy::start(
            dir.path(),
            "e2e.yaml",
            &[
                ("CONTROL_PLANE_PORT", control_plane.port.to_string()),
                ("BACKEND_PORT", backend.port.to_string()),
                ("CREDMGR_GATEWAY_KEY", control_plane.gateway_key.clone()),
                ("CREDMGR_PROVIDER_ID", preset.to_owned()),
                ("CREDMGR_CONNECTION_ID", CONNECTION.to_owned()),
            ],
        );
        SaasStack {
            envoy,
            _backend: backend,
            control_plane,
            fake,
            _dir: dir,
        }
    }

    /// A user consents: login link, interstitial, the provider's redirect back, callback.
    fn consent(&self, preset: &str) {
        let login = self.control_plane.login_link(preset, CONNECTION);
        let browser = HttpBrowser::new();
        let (status, to_provider) = browser.continue_login(&login);
        assert_eq!(status, 303);
        let to_provider = to_provider.unwrap_or_else(|| panic!("no redirect to the provider"));
        let (status, callback, _) = browser.get(&to_provider);
        assert_eq!(status, 302, "{to_provider}");
        let callback = callback.unwrap_or_else(|| panic!("the provider did not redirect"));
        let (status, landing, page) = browser.get(&callback);
        assert_eq!(
            status,
            303,
            "{page}\n{}",
            self.control_plane.process.log_text()
        );
        let landing = landing.unwrap_or_default();
        assert!(landing.contains("credmgr_status=connected"), "{landing}");
    }

    /// A request through Envoy's `/override/` route (Bearer token, and the token's `scope`
    /// claim in `x-demo`): the backend's answer.
    fn call(&self) -> (u16, Value) {
        status_and_json(
            http()
                .get(format!("{}/override/api", self.envoy.url))
                .send()
                .unwrap_or_else(|e| panic!("request through Envoy: {e}")),
        )
    }
}

#[test]
fn github_form_encoded_token_reaches_the_backend() {
    let s = SaasStack::start("github");
    s.fake.answer(200, FORM, documented!("github-token.form"));
    let token = "gho_16C7e42F292c6912E7710c838347Ae178B4a";
    s.fake.activate(token, "repo,gist");
    s.consent("github");
    let request = &s.fake.token_requests()[0];
    assert_eq!(request["(accept)"], "application/json");
    assert_eq!(request["client_secret"], "client-secret-of-the-test-app");
    let (status, seen) = s.call();
    assert_eq!(status, 200, "{seen}");
    assert_eq!(s.fake.introspected(), [token], "the token the backend got");
    assert_eq!(seen["headers"]["x-demo"], "repo,gist", "{seen}");
    assert!(s.control_plane.connection("github", CONNECTION)["token_expires_at"].is_string());
}

#[test]
fn salesforce_token_without_expires_in_reaches_the_backend() {
    let s = SaasStack::start("salesforce");
    s.fake
        .answer(200, JSON, documented!("salesforce-token.json"));
    let token = "00Dxx0000001gPL!AR8AQJXg5oj8jXSgxJfA0lBog.39AsX.LVpxezPwuX5VAIrrbbHMuol7GQxnMeYMN7cj8EoWr78nt1u44zU31IbYNNJguseu";
    s.fake.activate(token, "refresh_token api");
    s.consent("salesforce");
    let (status, seen) = s.call();
    assert_eq!(status, 200, "{seen}");
    assert_eq!(s.fake.introspected(), [token]);
    assert_eq!(seen["headers"]["x-demo"], "refresh_token api");
    // The runtime API hands the gateway instance_url, and an expiry 15 minutes out.
    let t = s.control_plane.runtime_token("salesforce", CONNECTION);
    assert_eq!(
        t.claims["instance_url"],
        "https://yourInstance.salesforce.com"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    assert!(
        (840..=900).contains(&(t.expires_at - now)),
        "{}",
        t.expires_at - now
    );
}

#[test]
fn slack_user_token_from_authed_user_reaches_the_backend() {
    let s = SaasStack::start("slack-user");
    s.fake
        .answer(200, JSON, documented!("slack-oauth-v2-access.json"));
    s.fake.activate("xoxp-1234", "chat:write");
    s.consent("slack-user");
    let (status, seen) = s.call();
    assert_eq!(status, 200, "{seen}");
    assert_eq!(
        s.fake.introspected(),
        ["xoxp-1234"],
        "the user token, not the bot's"
    );
    assert_eq!(seen["headers"]["x-demo"], "chat:write");
}
