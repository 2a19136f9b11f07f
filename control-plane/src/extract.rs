//! Request extractors whose rejections are [`ApiError`]s, so a malformed request gets the same
//! JSON error shape as every other failure, naming the field at fault.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::StatusCode;
use credmgr_common::ids::validate_id;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::domain::ConnectionKey;
use crate::error::ApiError;

/// A JSON body (`Content-Type: application/json`), deserialized with the path of the field
/// that failed.
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers().get(CONTENT_TYPE)) {
            return Err(ApiError::UnsupportedMediaType(
                "the body must be JSON: send `Content-Type: application/json`".into(),
            ));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(body_rejection)?;
        require_object(&bytes)?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Every body of the API is a JSON object (as the OpenAPI document says). serde would also
/// read a struct from a JSON array, its fields by position, which no client means: refuse it.
fn require_object(bytes: &[u8]) -> Result<(), ApiError> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => Err(ApiError::InvalidRequest {
            field: None,
            message: "the body must be a JSON object, not an array".into(),
        }),
        _ => Ok(()),
    }
}

fn is_json(value: Option<&axum::http::HeaderValue>) -> bool {
    let Some(mime) = value.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = mime
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn body_rejection(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge("the request body is too large".into())
    } else {
        ApiError::InvalidRequest {
            field: None,
            message: format!("could not read the request body: {rejection}"),
        }
    }
}

/// Parses JSON, naming the field at fault (`scopes[1]`, `token_params.audience`) in the error.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(json_error)?;
    de.end().map_err(|e| ApiError::InvalidRequest {
        field: None,
        message: format!("malformed JSON: {e}"),
    })?;
    Ok(value)
}

fn json_error(err: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = err.path().to_string();
    let inner = err.into_inner();
    if inner.is_syntax() || inner.is_eof() {
        return ApiError::InvalidRequest {
            field: None,
            message: format!("malformed JSON: {inner}"),
        };
    }
    let message = strip_position(&inner.to_string());
    // serde reports a missing field at the enclosing object; name the field anyway.
    let field = match (path.as_str(), missing_field(&message)) {
        (".", Some(name)) => Some(name.to_owned()),
        (".", None) => None,
        (p, Some(name)) => Some(format!("{p}.{name}")),
        (p, None) => Some(p.to_owned()),
    };
    match field {
        Some(field) => ApiError::InvalidRequest {
            message: format!("invalid field `{field}`: {message}"),
            field: Some(field),
        },
        None => ApiError::InvalidRequest {
            field: None,
            message: format!("invalid JSON body: {message}"),
        },
    }
}

/// `name` in serde's "missing field `name`".
fn missing_field(message: &str) -> Option<&str> {
    if !message.starts_with("missing field") {
        return None;
    }
    let start = message.find('`')? + 1;
    let len = message.get(start..)?.find('`')?;
    message.get(start..start + len)
}

/// serde_json appends " at line 1 column 42"; the field name says more.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message.get(..i).unwrap_or(message).to_owned(),
        None => message.to_owned(),
    }
}

/// A path that does not parse, as a 400.
pub fn path_error(rejection: axum::extract::rejection::PathRejection) -> ApiError {
    ApiError::InvalidRequest {
        field: None,
        message: format!("invalid path: {rejection}"),
    }
}

/// `id` if it is a valid identifier; else a 400 naming `field`.
pub fn checked(field: &str, id: String) -> Result<String, ApiError> {
    validate_id(&id).map_err(|why| ApiError::invalid(field, format!("`{field}` {why}")))?;
    Ok(id)
}

/// `/.../providers/{provider_id}`, with the id validated.
pub struct ProviderPath {
    pub provider_id: String,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct RawProviderPath {
    /// The provider's id: ASCII letters, digits, `-`, `_`, `.`; 1 to 64, not starting with `.`.
    #[param(pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")]
    provider_id: String,
}

impl<S: Send + Sync> FromRequestParts<S> for ProviderPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<RawProviderPath>::from_request_parts(parts, state)
            .await
            .map_err(path_error)?;
        Ok(ProviderPath {
            provider_id: checked("provider_id", raw.provider_id)?,
        })
    }
}

/// `/.../providers/{provider_id}/connections/{connection_id}`, with both ids validated.
pub struct ConnectionPath {
    pub provider_id: String,
    pub connection_id: String,
}

impl ConnectionPath {
    /// The connection this path names.
    pub fn key(&self) -> ConnectionKey {
        ConnectionKey::new(self.provider_id.as_str(), self.connection_id.as_str())
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct RawConnectionPath {
    /// The provider's id: ASCII letters, digits, `-`, `_`, `.`; 1 to 64, not starting with `.`.
    #[param(pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")]
    provider_id: String,
    /// The connection's id, under the provider; the same rules.
    #[param(pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")]
    connection_id: String,
}

impl<S: Send + Sync> FromRequestParts<S> for ConnectionPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<RawConnectionPath>::from_request_parts(parts, state)
            .await
            .map_err(path_error)?;
        Ok(ConnectionPath {
            provider_id: checked("provider_id", raw.provider_id)?,
            connection_id: checked("connection_id", raw.connection_id)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        #[serde(default)]
        scopes: Vec<String>,
        #[serde(default)]
        params: BTreeMap<String, String>,
    }

    fn field_of(json: &str) -> (Option<String>, String) {
        match parse_json::<Body>(json.as_bytes()) {
            Err(ApiError::InvalidRequest { field, message }) => (field, message),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn errors_name_the_field() {
        let (field, msg) = field_of(r#"{"name": "a", "bogus": 1}"#);
        assert_eq!(field.as_deref(), Some("bogus"), "{msg}");
        assert!(msg.contains("unknown field"), "{msg}");
        assert_eq!(field_of(r#"{}"#).0.as_deref(), Some("name"));
        assert_eq!(
            field_of(r#"{"name": "a", "scopes": ["x", 2]}"#)
                .0
                .as_deref(),
            Some("scopes[1]")
        );
        assert_eq!(
            field_of(r#"{"name": "a", "params": {"k": 1}}"#)
                .0
                .as_deref(),
            Some("params.k")
        );
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Outer {
            inner: Body,
        }
        match parse_json::<Outer>(br#"{"inner": {}}"#) {
            Err(ApiError::InvalidRequest { field, .. }) => {
                assert_eq!(field.as_deref(), Some("inner.name"))
            }
            other => panic!("unexpected {other:?}"),
        }
        let (field, msg) = field_of(r#"{"name": "#);
        assert_eq!(field, None);
        assert!(msg.starts_with("malformed JSON"), "{msg}");
        assert!(parse_json::<Body>(br#"{"name": "a"} trailing"#).is_err());
    }

    #[test]
    fn accepts_json_media_types_only() {
        use axum::http::HeaderValue;
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/merge-patch+json",
        ] {
            assert!(is_json(Some(&HeaderValue::from_static(ok))), "{ok}");
        }
        assert!(!is_json(Some(&HeaderValue::from_static("text/plain"))));
        assert!(!is_json(None));
    }
}
