//! The router, the introspection call, and the pure helpers (bearer parsing, fingerprints,
//! the redacted header echo) that the tests check.

use std::fmt;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use url::Url;

/// A secret that never shows in `Debug` output or logs.
#[derive(Clone)]
pub struct Secret(String);

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// What every request handler shares.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    http: reqwest::Client,
    introspection_url: Url,
    /// `Basic ...` for the introspection endpoint, computed once, marked sensitive.
    client_auth: HeaderValue,
}

impl AppState {
    pub fn new(
        http: reqwest::Client,
        introspection_url: Url,
        client_id: &str,
        client_secret: &Secret,
    ) -> anyhow::Result<Self> {
        let mut client_auth = HeaderValue::try_from(basic_auth(client_id, &client_secret.0))
            .map_err(|_| anyhow::anyhow!("the client id or secret makes an invalid header"))?;
        client_auth.set_sensitive(true);
        Ok(Self(Arc::new(Inner {
            http,
            introspection_url,
            client_auth,
        })))
    }
}

/// `GET /healthz` answers without a token; every other path and method wants one.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz).fallback(protected))
        .fallback(protected)
        .with_state(state)
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// The fields of an RFC 7662 introspection response that this backend reports.
#[derive(Debug, Deserialize)]
struct Introspection {
    active: bool,
    sub: Option<String>,
    client_id: Option<String>,
    scope: Option<String>,
    token_type: Option<String>,
    exp: Option<i64>,
}

async fn protected(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let token = match bearer_token(&headers) {
        Ok(token) => token,
        Err(message) => {
            tracing::info!(%method, path = uri.path(), message, "401 unauthenticated");
            return ApiError::Unauthenticated(message).into_response();
        }
    };
    let fingerprint = fingerprint(token);

    let info = match introspect(&state, token).await {
        Ok(info) => info,
        Err(err) => {
            tracing::warn!(%method, path = uri.path(), %fingerprint, "502: {}", err.log_message());
            return err.into_response();
        }
    };
    if !info.active {
        tracing::info!(%method, path = uri.path(), %fingerprint, "401 token inactive");
        return ApiError::TokenInactive("the token is not active").into_response();
    }
    // oidc-provider reports refresh tokens as active too, but without a token_type.
    let Some(token_type) = info.token_type else {
        tracing::info!(%method, path = uri.path(), %fingerprint, "401 not an access token");
        return ApiError::TokenInactive("the token is not an access token").into_response();
    };

    tracing::info!(
        %method,
        path = uri.path(),
        %fingerprint,
        client_id = info.client_id.as_deref().unwrap_or(""),
        "200 accepted"
    );
    Json(json!({
        "active": true,
        "sub": info.sub,
        "client_id": info.client_id,
        "scope": info.scope,
        "token_type": token_type,
        "exp": info.exp,
        "token_fingerprint": fingerprint,
        "method": method.as_str(),
        "path": uri.path(),
        "query": uri.query(),
        "headers": echo_headers(&headers, token),
        // What arrived of the body, to show it passed the gateway intact.
        "body_length": body.len(),
        "body_sha256": hex::encode(Sha256::digest(&body)),
    }))
    .into_response()
}

/// Asks the OAuth server whether `token` is active (RFC 7662 §2.1).
async fn introspect(state: &AppState, token: &str) -> Result<Introspection, ApiError> {
    let inner = &state.0;
    let response = inner
        .http
        .post(inner.introspection_url.clone())
        .header(AUTHORIZATION, inner.client_auth.clone())
        .form(&[("token", token), ("token_type_hint", "access_token")])
        .send()
        .await
        // Without the URL: reqwest's error would name it, which is fine, but keep it short.
        .map_err(|err| ApiError::IntrospectionUnavailable(err.without_url().to_string()))?;
    let status = response.status();
    if !status.is_success() {
        return Err(ApiError::IntrospectionFailed(format!(
            "introspection endpoint answered {status}"
        )));
    }
    response.json::<Introspection>().await.map_err(|err| {
        ApiError::IntrospectionFailed(format!("unreadable introspection response: {err}"))
    })
}

/// The token of the request's single `Authorization: Bearer <token>` header (RFC 6750
/// §2.1; the scheme is case-insensitive, RFC 9110 §11.1). Errors say what is wrong.
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, &'static str> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let value = values.next().ok_or("missing Authorization header")?;
    if values.next().is_some() {
        return Err("more than one Authorization header");
    }
    let value = value
        .to_str()
        .map_err(|_| "Authorization header is not visible ASCII")?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or("Authorization header is not `Bearer <token>`")?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err("Authorization scheme is not Bearer");
    }
    let token = token.trim_start_matches(' ');
    if token.is_empty() || token.contains([' ', '\t']) {
        return Err("Authorization header is not `Bearer <token>`");
    }
    Ok(token)
}

/// First 16 hex characters of SHA-256(token): enough to tell tokens apart, useless to replay.
pub fn fingerprint(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let mut hex = hex::encode(digest);
    hex.truncate(16);
    hex
}

/// The request's headers as JSON, one value as a string and repeated ones as an array.
/// `Authorization` shows as `Bearer <fingerprint>`, and the token is replaced by its
/// fingerprint wherever else it appears, so no response ever carries it.
pub fn echo_headers(headers: &HeaderMap, token: &str) -> Map<String, Value> {
    let fp = fingerprint(token);
    let mut out = Map::new();
    for name in headers.keys() {
        let values: Vec<Value> = headers
            .get_all(name)
            .iter()
            .map(|value| {
                let text = String::from_utf8_lossy(value.as_bytes());
                let shown = if name == AUTHORIZATION {
                    match text.split_once(' ') {
                        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => {
                            format!("Bearer {}", fingerprint(rest.trim_start_matches(' ')))
                        }
                        _ => "[redacted]".to_owned(),
                    }
                } else if token.is_empty() {
                    text.into_owned()
                } else {
                    text.replace(token, &fp)
                };
                Value::String(shown)
            })
            .collect();
        let value = match <[Value; 1]>::try_from(values) {
            Ok([one]) => one,
            Err(many) => Value::Array(many),
        };
        out.insert(name.as_str().to_owned(), value);
    }
    out
}

/// `Basic base64(urlencode(id) ":" urlencode(secret))`: RFC 6749 §2.3.1 form-encodes both
/// before base64, so ids and secrets with `:`, `%` or non-ASCII survive.
pub fn basic_auth(client_id: &str, client_secret: &str) -> String {
    let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let pair = format!("{}:{}", encode(client_id), encode(client_secret));
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// Every answer that is not a 200, as `{"error": {"code", "message"}}`.
#[derive(Debug)]
enum ApiError {
    /// 401: no usable `Authorization: Bearer` header.
    Unauthenticated(&'static str),
    /// 401: the OAuth server says the token is not an active access token.
    TokenInactive(&'static str),
    /// 502: the introspection endpoint could not be reached or timed out.
    IntrospectionUnavailable(String),
    /// 502: the introspection endpoint answered, but not with a usable answer.
    IntrospectionFailed(String),
}

impl ApiError {
    /// The detail for the log; the client gets a fixed message (5xx details stay here).
    fn log_message(&self) -> String {
        match self {
            Self::Unauthenticated(m) | Self::TokenInactive(m) => (*m).to_owned(),
            Self::IntrospectionUnavailable(m) | Self::IntrospectionFailed(m) => m.clone(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = match self {
            Self::Unauthenticated(m) => (StatusCode::UNAUTHORIZED, "unauthenticated", m),
            Self::TokenInactive(m) => (StatusCode::UNAUTHORIZED, "token_inactive", m),
            Self::IntrospectionUnavailable(_) => (
                StatusCode::BAD_GATEWAY,
                "introspection_unavailable",
                "the OAuth server's introspection endpoint cannot be reached",
            ),
            Self::IntrospectionFailed(_) => (
                StatusCode::BAD_GATEWAY,
                "introspection_failed",
                "the OAuth server's introspection endpoint gave no usable answer",
            ),
        };
        let body = Json(json!({ "error": { "code": code, "message": message } }));
        let mut response = (status, body).into_response();
        if status == StatusCode::UNAUTHORIZED {
            // RFC 6750 §3: say which scheme, and whether a presented token was refused.
            let challenge = if code == "token_inactive" {
                r#"Bearer realm="demo-backend", error="invalid_token""#
            } else {
                r#"Bearer realm="demo-backend""#
            };
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
        response
    }
}

#[cfg(test)]
mod tests {

    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt as _;

    use super::*;

    #[test]
    fn fingerprint_is_the_first_16_hex_chars_of_sha256() {
        // SHA-256("abc") = ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad
        assert_eq!(fingerprint("abc"), "ba7816bf8f01cfea");
        assert_ne!(fingerprint("abd"), fingerprint("abc"));
    }

    fn auth_headers(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn bearer_token_takes_one_well_formed_bearer_header() {
        assert_eq!(
            bearer_token(&auth_headers(&["Bearer abc.DEF-_~+/="])),
            Ok("abc.DEF-_~+/=")
        );
        assert_eq!(bearer_token(&auth_headers(&["bearer abc"])), Ok("abc"));
        assert!(bearer_token(&auth_headers(&[])).is_err());
        assert!(bearer_token(&auth_headers(&["Bearer"])).is_err());
        assert!(bearer_token(&auth_headers(&["Bearer "])).is_err());
        assert!(bearer_token(&auth_headers(&["Bearer a b"])).is_err());
        assert!(bearer_token(&auth_headers(&["Basic YTpi"])).is_err());
        assert!(bearer_token(&auth_headers(&["Bearer a", "Bearer b"])).is_err());
    }

    #[test]
    fn echo_headers_never_shows_the_token() {
        let token = "s3cr3t-token";
        let fp = fingerprint(token);
        let mut headers = auth_headers(&[&format!("Bearer {token}")]);
        headers.append("x-multi", HeaderValue::from_static("one"));
        headers.append("x-multi", HeaderValue::from_static("two"));
        headers.insert(
            "x-copy",
            HeaderValue::from_str(&format!("token={token};")).unwrap(),
        );
        headers.insert("host", HeaderValue::from_static("api.example"));

        let echo = Value::Object(echo_headers(&headers, token));
        assert_eq!(echo["authorization"], json!(format!("Bearer {fp}")));
        assert_eq!(echo["x-multi"], json!(["one", "two"]));
        assert_eq!(echo["x-copy"], json!(format!("token={fp};")));
        assert_eq!(echo["host"], json!("api.example"));
        assert!(!echo.to_string().contains(token));
    }

    #[test]
    fn echo_headers_redacts_other_authorization_schemes() {
        let mut headers = auth_headers(&["Basic dXNlcjpwYXNz"]);
        headers.insert("x-empty-token-safe", HeaderValue::from_static("abc"));
        let echo = Value::Object(echo_headers(&headers, ""));
        assert_eq!(echo["authorization"], json!("[redacted]"));
        assert_eq!(echo["x-empty-token-safe"], json!("abc"));
    }

    #[test]
    fn basic_auth_form_encodes_before_base64() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        assert_eq!(
            basic_auth("demo-backend", "demo-backend-secret"),
            format!("Basic {}", b64("demo-backend:demo-backend-secret"))
        );
        // RFC 6749 §2.3.1 / Appendix B: space is `+`, reserved characters percent-encoded.
        assert_eq!(
            basic_auth("a b:c", "p%&+é"),
            format!("Basic {}", b64("a+b%3Ac:p%25%26%2B%C3%A9"))
        );
    }

    #[test]
    fn secret_debug_is_redacted() {
        let secret = Secret::from("hunter2".to_owned());
        assert_eq!(format!("{secret:?}"), "[redacted]");
    }

    fn app_for(url: Url) -> Router {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(5))
            .build()
            .unwrap();
        let secret = Secret::from("demo-backend-secret".to_owned());
        router(AppState::new(http, url, "demo-backend", &secret).unwrap())
    }

    async fn call(
        app: &Router,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, HeaderMap, Value) {
        let mut request = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = app
            .clone()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, headers, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn healthz_needs_no_token_but_other_methods_on_it_do() {
        let app = app_for(Url::parse("http://127.0.0.1:9/unused").unwrap());
        let (status, _, body) = call(&app, "GET", "/healthz", &[]).await;
        assert_eq!((status, body), (StatusCode::OK, json!({"status": "ok"})));
        let (status, _, body) = call(&app, "POST", "/healthz", &[]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["error"]["code"], "unauthenticated");
    }

    #[tokio::test]
    async fn missing_or_malformed_token_is_401_without_introspection() {
        let app = app_for(Url::parse("http://127.0.0.1:9/unused").unwrap());
        for headers in [
            &[][..],
            &[("authorization", "Basic YTpi")][..],
            &[("authorization", "Bearer ")][..],
        ] {
            let (status, response_headers, body) = call(&app, "GET", "/api/items", headers).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
            assert_eq!(body["error"]["code"], "unauthenticated");
            assert!(body["error"]["message"].is_string());
            assert_eq!(
                response_headers[WWW_AUTHENTICATE],
                r#"Bearer realm="demo-backend""#
            );
        }
    }

    #[tokio::test]
    async fn unreachable_introspection_is_502() {
        // A port that was free a moment ago: nothing listens there.
        let closed = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap()
        };
        let app = app_for(Url::parse(&format!("http://{closed}/token/introspection")).unwrap());
        let (status, _, body) = call(&app, "GET", "/", &[("authorization", "Bearer good")]).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY);
        assert_eq!(body["error"]["code"], "introspection_unavailable");
    }
}
