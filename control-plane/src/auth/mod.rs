//! Authentication of the two APIs: the admin token for the management API, gateway keys for
//! the runtime API. Both are bearer tokens (RFC 6750 §2.1) compared in constant time.

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;

pub mod credentials;

pub use credentials::{Credentials, Gateway, GatewayKey};

use crate::error::ApiError;
use crate::state::AppState;

/// The token of an `Authorization: Bearer <token>` header. The scheme is case-insensitive
/// (RFC 9110 §11.1).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Middleware: the management API needs the admin token.
pub async fn require_admin(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    match bearer(request.headers()) {
        Some(token) if state.credentials.is_admin(token) => Ok(next.run(request).await),
        _ => Err(ApiError::Unauthenticated(
            "missing or wrong admin token: send `Authorization: Bearer <admin token>`",
        )),
    }
}

/// Middleware: the runtime API needs a gateway key; the gateway's name goes into the
/// request's extensions.
pub async fn require_gateway(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if state.credentials.gateway_keys.is_empty() {
        return Err(ApiError::Unauthenticated(
            "no gateway keys are configured: the runtime API on this listener refuses every \
             request (set CREDMGR_GATEWAY_KEYS, or use the gateway TLS listener)",
        ));
    }
    let name = bearer(request.headers()).and_then(|t| state.credentials.gateway(t));
    match name {
        Some(name) => {
            let gateway = Gateway {
                name: name.to_owned(),
            };
            request.extensions_mut().insert(gateway);
            Ok(next.run(request).await)
        }
        None => Err(ApiError::Unauthenticated(
            "missing or unknown gateway key: send `Authorization: Bearer <gateway key>`",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(value: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_static(value));
        h
    }

    #[test]
    fn parses_bearer_tokens() {
        assert_eq!(bearer(&headers("Bearer abc")), Some("abc"));
        assert_eq!(bearer(&headers("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(&headers("Basic abc")), None);
        assert_eq!(bearer(&headers("Bearer ")), None);
        assert_eq!(bearer(&HeaderMap::new()), None);
    }

    #[test]
    fn finds_the_gateway_by_key() {
        let creds = Credentials::new(
            "admin".into(),
            vec![
                GatewayKey {
                    name: "edge-1".into(),
                    key: "key-one".into(),
                },
                GatewayKey {
                    name: "edge-2".into(),
                    key: "key-two".into(),
                },
            ],
        );
        assert_eq!(creds.gateway("key-two"), Some("edge-2"));
        assert_eq!(creds.gateway("key-tw"), None);
        assert!(creds.is_admin("admin") && !creds.is_admin("admin2"));
        let shown = format!("{creds:?}");
        assert!(
            !shown.contains("key-one") && !shown.contains("admin\""),
            "{shown}"
        );
    }
}
