//! Each declared quirk, through the control plane, against a local token endpoint that
//! replays the provider's documented responses byte for byte (`fake_saas`).

use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::fake_saas::{doc, FakeSaas, FORM, JSON};
use crate::harness::*;
use crate::presets::{consent, create, left, make_due, preset_body};

/// Provider `id` made from `preset` with the fake's token endpoint, and its connection `alice`.
async fn from_preset(h: &Harness, fake: &FakeSaas, id: &str, preset: &str) -> Reply {
    let r = create(
        h,
        id,
        preset_body(preset, json!({"token_url": fake.token_url})),
    )
    .await;
    h.connection(id, "alice").await;
    r
}

/// The runtime API served an access token that starts with `prefix`.
fn assert_access_token_starts(t: &Reply, prefix: &str) {
    let token = t.json["access_token"].as_str().unwrap_or_default();
    assert!(token.starts_with(prefix), "{prefix}…: {}", t.json);
}

/// A harness and a fake provider; provider `id` made from `preset`, and `alice` connected by
/// consent with the provider's answer `body`.
async fn connected(
    id: &str,
    preset: &str,
    content_type: &'static str,
    body: &'static str,
) -> (Harness, FakeSaas) {
    let h = Harness::new().await;
    let fake = FakeSaas::start().await;
    from_preset(&h, &fake, id, preset).await;
    consented(&h, &fake, id, content_type, body).await;
    (h, fake)
}

/// `alice`'s token is due, the provider answers the refresh with `body`, and the gateway asks
/// for the token: the runtime API's answer.
async fn refreshed(
    h: &Harness,
    fake: &FakeSaas,
    id: &str,
    content_type: &'static str,
    body: &'static str,
) -> Reply {
    make_due(h, id, "alice", false).await;
    fake.answer(200, content_type, body);
    h.runtime(id, "alice").await
}

/// `alice` consents, and the provider answers the code with `body`: the callback sends the
/// browser on to the landing page.
async fn consented(
    h: &Harness,
    fake: &FakeSaas,
    id: &str,
    content_type: &'static str,
    body: &'static str,
) {
    fake.answer(200, content_type, body);
    let r = consent(h, id, "alice").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{id}: {}", r.json);
}

#[tokio::test]
async fn github_form_encoded_answer_is_read_and_gets_the_declared_lifetime() {
    let (h, fake) = connected("gh", "github", FORM, doc::GITHUB_TOKEN).await;
    let seen = &fake.seen()[0];
    assert_eq!(seen.accept.as_deref(), Some("application/json"));
    assert_eq!(seen.authorization, None, "client_secret_post");
    assert_eq!(seen.form["client_id"], "client-1");
    assert_eq!(seen.form["client_secret"], CLIENT_SECRET);
    assert_eq!(seen.form["code"], "the-code");

    let conn = h.shown_connection("gh", "alice").await;
    assert_eq!(conn["status"], "connected", "{conn}");
    // No expires_in: GitHub's documented horizon of a year, not "never".
    let (left, _) = left(&h, "gh", "alice").await;
    assert!((365 * 86400 - 60..=365 * 86400).contains(&left), "{left}");
    let t = h.runtime("gh", "alice").await;
    assert_eq!(
        t.json["access_token"],
        "gho_16C7e42F292c6912E7710c838347Ae178B4a"
    );
    assert_eq!(t.json["token_type"], "Bearer");
    assert_eq!(t.json["claims"]["scope"], "repo,gist");
}

#[tokio::test]
async fn github_errors_with_http_200_are_errors_and_store_nothing() {
    let h = Harness::new().await;
    let fake = FakeSaas::start().await;
    from_preset(&h, &fake, "gh", "github").await;
    fake.answer(200, JSON, doc::GITHUB_BAD_CODE);
    let r = consent(&h, "gh", "alice").await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{}", r.json);
    assert!(
        r.json.as_str().unwrap().contains("bad_verification_code"),
        "{}",
        r.json
    );
    let conn = h.shown_connection("gh", "alice").await;
    assert_eq!(conn["status"], "not_connected", "{conn}");
    assert!(!h.has_token("gh", "alice").await);
}

#[tokio::test]
async fn github_app_refresh_token_expiry_is_stored_shown_and_honoured() {
    let (h, fake) = connected("gha", "github-app", JSON, doc::GITHUB_APP_TOKEN).await;
    let conn = h.shown_connection("gha", "alice").await;
    assert!(
        conn["refresh_token_expires_at"].is_string(),
        "shown: {conn}"
    );
    let (at_left, rt_left) = left(&h, "gha", "alice").await;
    assert!((28800 - 60..=28800).contains(&at_left), "{at_left}");
    assert!(
        (15897600 - 60..=15897600).contains(&rt_left.unwrap()),
        "{rt_left:?}"
    );

    // A refused refresh (form-encoded, HTTP 200, GitHub's own code) needs consent again.
    let r = refreshed(&h, &fake, "gha", FORM, doc::GITHUB_APP_BAD_REFRESH).await;
    assert_error(&r, StatusCode::SERVICE_UNAVAILABLE, "refresh_token_invalid");
    assert_eq!(
        fake.seen()[1].form["refresh_token"],
        "ghr_1B4a2e77838347a7E420ce178F2E7c6912E169246c34E1ccbF66C46812d16D5B1A9Dc86A1498"
    );
    assert_eq!(
        h.shown_connection("gha", "alice").await["error"]["code"],
        "refresh_token_invalid"
    );

    // Consent again; then both tokens run out: the provider is not asked, the reason is given.
    consented(&h, &fake, "gha", JSON, doc::GITHUB_APP_TOKEN).await;
    h.change_token("gha", "alice", |t| {
        t.refresh_at = now() - 2;
        t.expires_at = now() - 1;
        t.refresh_token_expires_at = Some(now() - 1);
    })
    .await;
    let asked = fake.seen().len();
    let r = h.runtime("gha", "alice").await;
    assert_error(&r, StatusCode::SERVICE_UNAVAILABLE, "refresh_token_expired");
    assert_error_mentions(&r, "login link");
    assert_eq!(
        fake.seen().len(),
        asked,
        "an expired refresh token is not sent"
    );
    let conn = h.shown_connection("gha", "alice").await;
    assert_eq!(conn["status"], "error");
    assert_eq!(conn["error"]["code"], "refresh_token_expired", "{conn}");
    let r = h.runtime("gha", "alice").await;
    assert_error(&r, StatusCode::SERVICE_UNAVAILABLE, "refresh_token_expired");
}

#[tokio::test]
async fn salesforce_without_expires_in_keeps_instance_url_and_its_refresh_token() {
    let h = Harness::new().await;
    let fake = FakeSaas::start().await;
    let r = from_preset(&h, &fake, "sf", "salesforce").await;
    assert_eq!(
        r.json["authorization_url"],
        "https://login.salesforce.com/services/oauth2/authorize"
    );
    consented(&h, &fake, "sf", JSON, doc::SALESFORCE_TOKEN).await;
    let (at_left, _) = left(&h, "sf", "alice").await;
    assert!((900 - 60..=900).contains(&at_left), "{at_left}");
    let t = h.runtime("sf", "alice").await;
    assert_eq!(
        t.json["claims"]["instance_url"],
        "https://yourInstance.salesforce.com"
    );
    assert_access_token_starts(&t, "00Dxx0000001gPL!AR8AQJXg");

    let t = refreshed(&h, &fake, "sf", JSON, doc::SALESFORCE_REFRESH).await;
    assert_access_token_starts(&t, "00Dxx0000001gPL!AR8AQBM8");
    let first_rt =
        "5Aep861TSESvWeug_ztpnAk6BGQxRdovMLhHso6KOdF04ihXGxNCHBgfKTfGsgotLogtW6V9mHmYgzPS5WV_eyT";
    assert_eq!(fake.seen()[1].form["refresh_token"], first_rt);
    // The refresh brought no refresh token: the old one is kept for the next.
    assert_eq!(
        refreshed(&h, &fake, "sf", JSON, doc::SALESFORCE_REFRESH)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(fake.seen()[2].form["refresh_token"], first_rt);
}

#[tokio::test]
async fn slack_bot_and_user_tokens_and_the_nested_secret_never_leaks() {
    let h = Harness::new().await;
    let fake = FakeSaas::start().await;
    for preset in ["slack", "slack-user"] {
        from_preset(&h, &fake, preset, preset).await;
        consented(&h, &fake, preset, JSON, doc::SLACK_ACCESS).await;
    }
    let bot = h.runtime("slack", "alice").await;
    assert_eq!(
        bot.json["access_token"],
        "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy"
    );
    assert_eq!(bot.json["claims"]["team_id"], "T9TK3CUKW");
    assert_eq!(bot.json["claims"]["authed_user_id"], "U1234");
    assert_eq!(bot.json["claims"]["scope"], "commands,incoming-webhook");
    assert!(!bot.json.to_string().contains("xoxp-1234"), "{}", bot.json);
    let user = h.runtime("slack-user", "alice").await;
    assert_eq!(user.json["access_token"], "xoxp-1234");
    assert_eq!(user.json["claims"]["scope"], "chat:write");
    assert_eq!(user.json["claims"]["team_id"], "T9TK3CUKW");
    assert!(
        !user.json["claims"].to_string().contains("xoxb-"),
        "{}",
        user.json
    );
    // Without token rotation Slack gives no expiry: a year, declared.
    let (at_left, _) = left(&h, "slack", "alice").await;
    assert!(at_left > 364 * 86400, "{at_left}");
    h.assert_not_at_rest(&["xoxp-1234", "xoxb-17653672481"])
        .await;
    // Slack's errors come with HTTP 200.
    h.connection("slack", "bob").await;
    fake.answer(200, JSON, doc::SLACK_INVALID_CODE);
    let r = consent(&h, "slack", "bob").await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{}", r.json);
    assert!(r.json.as_str().unwrap().contains("invalid_code"));
}

#[tokio::test]
async fn dropbox_keeps_the_refresh_token_and_account_ids() {
    let (h, fake) = connected("dbx", "dropbox", JSON, doc::DROPBOX_TOKEN).await;
    assert!(fake.seen()[0]
        .authorization
        .as_deref()
        .unwrap()
        .starts_with("Basic "));
    assert!(!fake.seen()[0].form.contains_key("client_secret"));
    let t = h.runtime("dbx", "alice").await;
    assert_eq!(
        t.json["claims"]["account_id"],
        "dbid:AAH4f99T0taONIb-OurWxbNQ6ywGRopQngc"
    );
    assert_eq!(t.json["claims"]["uid"], "12345");
    for _ in 0..2 {
        let t = refreshed(&h, &fake, "dbx", JSON, doc::DROPBOX_REFRESH).await;
        assert_access_token_starts(&t, "sl.u.");
    }
    let rt = "nBiM85CZALsAAAAAAAAAAQXHBoNpNutK4ngsXHsqW4iGz9tisb3JyjGqikMJIYbd";
    assert_eq!(fake.seen()[1].form["refresh_token"], rt);
    assert_eq!(fake.seen()[2].form["refresh_token"], rt);
}

#[tokio::test]
async fn client_authentication_follows_the_preset() {
    // Zoom wants HTTP Basic.
    let (h, fake) = connected("zoom", "zoom", JSON, doc::ZOOM_TOKEN).await;
    let seen = &fake.seen()[0];
    assert!(seen.authorization.as_deref().unwrap().starts_with("Basic "));
    assert!(!seen.form.contains_key("client_secret"));
    assert_eq!(
        h.runtime("zoom", "alice").await.json["claims"]["api_url"],
        "https://api.zoom.us"
    );
    // Entra ID's client credentials: the secret in the body, the `.default` scope.
    let body = preset_body(
        "entra-id",
        json!({"parameters": {"tenant": "contoso.onmicrosoft.com"}, "grant_type": "client_credentials",
               "token_url": fake.token_url}),
    );
    create(&h, "entra", body).await;
    fake.answer(200, JSON, doc::ENTRA_CLIENT_CREDENTIALS);
    let r = h.connection("entra", "svc").await;
    assert_eq!(r.json["status"], "connected", "{}", r.json);
    let seen = &fake.seen()[1];
    assert_eq!(seen.authorization, None);
    assert_eq!(seen.form["client_secret"], CLIENT_SECRET);
    assert_eq!(seen.form["grant_type"], "client_credentials");
    assert_eq!(seen.form["scope"], "https://graph.microsoft.com/.default");
}

#[tokio::test]
async fn without_expires_in_a_jwt_access_token_lives_until_its_exp() {
    use base64::Engine as _;
    let h = Harness::new().await;
    let fake = FakeSaas::start().await;
    let exp = now() + 1234;
    let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let jwt = format!(
        "{}.{}.sig",
        b64(json!({"alg": "RS256"})),
        b64(json!({"exp": exp}))
    );
    let body: &'static str =
        Box::leak(format!(r#"{{"access_token":"{jwt}","token_type":"Bearer"}}"#).into_boxed_str());
    h.provider("cc", &fake.token_url).await;
    fake.answer(200, JSON, body);
    let r = h.connection("cc", "svc").await;
    assert_eq!(r.json["status"], "connected", "{}", r.json);
    let t = h.runtime("cc", "svc").await;
    assert_eq!(t.json["expires_at"], exp, "{}", t.json);
}
