//! Optimistic concurrency: entity tags on providers and connections, and `If-Match`
//! (RFC 9110 §8.8.3, §13.1.1).
//!
//! A resource's tag changes with every write of its configuration; token refreshes and status
//! changes do not change it, so a background refresh never makes an operator's update fail.
//! `If-Match` is optional; when sent, an update or delete happens only if the resource still
//! has one of the listed tags (`*`: if it exists), else the answer is 412.

use axum::http::header::{ETAG, IF_MATCH};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::error::ApiError;

/// The `If-Match` header of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfMatch {
    Absent,
    /// `*`: the resource must exist.
    Any,
    /// Strong tags, without quotes.
    Tags(Vec<String>),
}

impl IfMatch {
    /// Parses `If-Match`. Weak tags (`W/"..."`) never match: RFC 9110 §13.1.1 requires the
    /// strong comparison.
    pub fn from_headers(headers: &HeaderMap) -> Result<IfMatch, ApiError> {
        let values: Vec<&HeaderValue> = headers.get_all(IF_MATCH).iter().collect();
        if values.is_empty() {
            return Ok(IfMatch::Absent);
        }
        let mut tags = Vec::new();
        for value in values {
            let text = value.to_str().map_err(|_| malformed())?;
            for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                if item == "*" {
                    return Ok(IfMatch::Any);
                }
                if item.starts_with("W/") {
                    continue;
                }
                let tag = item
                    .strip_prefix('"')
                    .and_then(|t| t.strip_suffix('"'))
                    .ok_or_else(malformed)?;
                tags.push(tag.to_owned());
            }
        }
        Ok(IfMatch::Tags(tags))
    }

    pub fn is_present(&self) -> bool {
        !matches!(self, IfMatch::Absent)
    }

    /// Checks the precondition against the resource's current tag (`None`: it does not
    /// exist). `what` names the resource in the error.
    pub fn check(&self, current: Option<&str>, what: &str) -> Result<(), ApiError> {
        let ok = match (self, current) {
            (IfMatch::Absent, _) => true,
            (IfMatch::Any, current) => current.is_some(),
            (IfMatch::Tags(tags), Some(current)) => tags.iter().any(|t| t == current),
            (IfMatch::Tags(_), None) => false,
        };
        if ok {
            Ok(())
        } else {
            Err(stale(what))
        }
    }
}

/// The `If-Match` header as the OpenAPI document names it, on every conditional write.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IfMatchParam {
    /// Only if the resource still has one of these ETags (`*`: if it exists); else 412.
    #[param(rename = "If-Match")]
    pub if_match: Option<String>,
}

/// The 412 for a resource changed (or deleted) since the client read it.
pub fn stale(what: &str) -> ApiError {
    ApiError::PreconditionFailed(format!(
        "{what} was changed or deleted since the ETag in If-Match was read; GET it again and \
         retry with its current ETag"
    ))
}

fn malformed() -> ApiError {
    ApiError::InvalidRequest {
        field: Some("If-Match".into()),
        message: "the If-Match header must be `*` or a list of quoted entity tags".into(),
    }
}

/// The `ETag` header for a tag.
pub fn header(tag: &str) -> (HeaderName, HeaderValue) {
    let value = HeaderValue::from_str(&format!("\"{tag}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("\"\""));
    (ETAG, value)
}

/// A resource as an answer: `status`, its `ETag`, and its view as JSON.
pub fn respond(status: StatusCode, tag: &str, view: impl Serialize) -> Response {
    (status, [header(tag)], Json(view)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: &'static str) -> Result<IfMatch, ApiError> {
        let mut h = HeaderMap::new();
        h.insert(IF_MATCH, HeaderValue::from_static(value));
        IfMatch::from_headers(&h)
    }

    #[test]
    fn parses_and_checks_if_match() {
        assert_eq!(
            IfMatch::from_headers(&HeaderMap::new()).unwrap(),
            IfMatch::Absent
        );
        assert_eq!(parse("*").unwrap(), IfMatch::Any);
        let tags = parse(r#""a", W/"b", "c""#).unwrap();
        assert_eq!(tags, IfMatch::Tags(vec!["a".into(), "c".into()]));
        assert!(tags.check(Some("c"), "x").is_ok());
        assert!(tags.check(Some("b"), "x").is_err());
        assert!(tags.check(None, "x").is_err());
        assert!(IfMatch::Any.check(None, "x").is_err());
        assert!(IfMatch::Absent.check(None, "x").is_ok());
        assert!(parse("unquoted").is_err());
    }
}
