//! Inputs of the webhooks and audit APIs that a store cannot take as they are (a NUL byte,
//! which PostgreSQL refuses in text): each is refused with a 400 naming its field, or
//! matches nothing, on either store (`CREDMGR_TEST_STORE=postgres`), never a 500.

use axum::http::Method;
use serde_json::json;

use crate::harness::*;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[tokio::test]
async fn a_webhook_url_with_control_characters_is_refused() {
    let h = Harness::new().await;
    for url in [
        "https://hooks.example/a\u{0}b",
        "https://hooks.example/a\tb",
        "https://hooks.example/\n",
    ] {
        let r = h
            .admin(
                Method::PUT,
                "/v1/webhooks/ops",
                Some(json!({"url": url, "secret": SECRET, "events": ["connection.deleted"]})),
            )
            .await;
        assert_invalid_field(&r, "url");
    }
    let r = h.admin(Method::GET, "/v1/webhooks", None).await;
    assert_eq!(r.json, json!([]));
}

#[tokio::test]
async fn audit_filters_that_name_nothing_are_refused() {
    let h = Harness::new().await;
    for (filter, value) in [
        ("provider_id", "a%00b"),
        ("connection_id", "a%00b"),
        ("provider_id", ".hidden"),
        ("identity", "a%00b"),
        ("identity", "a%0Ab"),
    ] {
        let r = h
            .admin(Method::GET, &format!("/v1/audit?{filter}={value}"), None)
            .await;
        assert_invalid_field(&r, filter);
    }
    let r = h
        .admin(
            Method::GET,
            "/v1/audit?provider_id=gh&identity=00000000-0000",
            None,
        )
        .await;
    assert_eq!(r.json["entries"], json!([]), "{}", r.json);
}
