//! What a token endpoint that answered, but not with a token, is reported as: a
//! `provider_error` with the HTTP status (in the message and in `details.status`), never
//! `provider_unreachable`, which is kept for endpoints that did not answer.

use axum::http::StatusCode;

use crate::fake_saas::{FakeSaas, JSON};
use crate::harness::*;

#[tokio::test]
async fn a_5xx_an_empty_200_or_an_html_200_is_a_provider_error_with_the_status() {
    for (status, content_type, body, says) in [
        (500, "text/plain", "internal error", "HTTP 500"),
        (502, JSON, "", "HTTP 502"),
        (200, JSON, "", "an empty body"),
        (
            200,
            "text/html",
            "<html><body>Down for maintenance</body></html>",
            "not a JSON object",
        ),
    ] {
        let h = Harness::new().await;
        let fake = FakeSaas::start().await;
        h.provider("p", &fake.token_url).await;
        // Once when the connection is created; the runtime request right after is answered
        // from the remembered failure (the connection backs off).
        fake.answer(status, content_type, body);
        let r = h.connection("p", "c").await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
        assert_eq!(r.json["status"], "error", "{status}: {}", r.json);
        assert_eq!(r.json["error"]["code"], "provider_error", "{}", r.json);
        let message = r.json["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("HTTP {status}")) && message.contains(says),
            "{status} {body:?}: {message}"
        );

        let r = h.runtime("p", "c").await;
        assert_error(&r, StatusCode::SERVICE_UNAVAILABLE, "provider_error");
        assert_error_mentions(&r, says);
        h.assert_metric(
            r#"credmgr_provider_token_requests_total{grant_type="client_credentials",outcome="provider_error"} 1"#,
        );
    }
}

#[tokio::test]
async fn an_endpoint_that_does_not_answer_stays_provider_unreachable_without_a_status() {
    let h = Harness::new().await;
    h.unreachable_connection("p", "c").await;
    let r = h.runtime("p", "c").await;
    assert_error(&r, StatusCode::SERVICE_UNAVAILABLE, "provider_unreachable");
    assert!(
        r.json["error"]["details"].get("status").is_none(),
        "{}",
        r.json
    );
}
