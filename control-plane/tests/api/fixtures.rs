//! What the API tests build and check without a harness: request bodies, URLs, clock, and
//! the checks on answers that many tests make.

use axum::http::StatusCode;
use serde_json::Value;

use crate::harness::{Reply, CLIENT_SECRET};

pub fn provider_body(token_url: &str) -> Value {
    serde_json::json!({
        "display_name": "Test provider",
        "identity_provider": "oauth2",
        "grant_type": "client_credentials",
        "client_id": "credmgr-demo",
        "client_secret": CLIENT_SECRET,
        "token_url": token_url,
        "scopes": ["api:read"],
        "token_params": {"audience": "https://api.example"}
    })
}

/// A 127.0.0.1 URL where nothing listens.
pub fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}/token")
}

pub fn now() -> i64 {
    credmgr_control_plane::clock::unix_now()
}

pub fn assert_error(r: &Reply, status: StatusCode, code: &str) {
    assert_eq!(r.status, status, "{}", r.json);
    assert_eq!(r.json["error"]["code"], code, "{}", r.json);
    assert!(
        r.json["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{}",
        r.json
    );
}

/// A 400 `invalid_request` that names `field` as the wrong one.
pub fn assert_invalid_field(r: &Reply, field: &str) {
    assert_error(r, StatusCode::BAD_REQUEST, "invalid_request");
    assert_eq!(
        r.json["error"]["details"]["field"], field,
        "the field named: {}",
        r.json
    );
}

/// The error's message mentions `text`.
pub fn assert_error_mentions(r: &Reply, text: &str) {
    let message = r.json["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(text), "{text:?} not in {}", r.json);
}

/// The ids of a listed collection, in order.
pub fn ids(r: &Reply) -> Vec<String> {
    r.json
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {}", r.json))
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect()
}

/// The test provider's body (`provider_body`) without `key`.
pub fn provider_body_without(token_url: &str, key: &str) -> Value {
    let mut body = provider_body(token_url);
    body.as_object_mut().unwrap().remove(key);
    body
}

/// Whether `bytes` hold `text` anywhere.
pub fn holds(bytes: &[u8], text: &str) -> bool {
    bytes.windows(text.len()).any(|w| w == text.as_bytes())
}
