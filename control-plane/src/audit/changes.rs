//! Management changes in the audit trail. The whole HTTP app is wrapped once
//! ([`record_changes`]): a successful `PUT`, `POST`, `PATCH` or `DELETE` under `/v1/` is
//! recorded with the resource before (the answer of a `GET` of the same path just before the
//! change) and after (the change's answer). Both are what the API shows, which never includes
//! a secret (write-only fields appear as `{"set": true}`); the answers of `POST`s (login links,
//! whose URL is a secret; key reloads) are not recorded, only that they happened. The few
//! field names that could hold a secret are redacted anyway ([`scrub`]).
//!
//! One wrapper rather than a line in every handler: a new resource is audited without anyone
//! remembering to.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{to_bytes, Body};
use axum::extract::Request;
use axum::http::header::AUTHORIZATION;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};
use tower::{Service, ServiceExt as _};

use crate::clock::unix_now;
use crate::state::AppState;
use crate::store::AuditEntry;

/// Largest management answer kept as `before`/`after`.
const MAX_BODY: usize = 1 << 20;
/// Fields whose string values are never recorded.
const SECRET_FIELDS: [&str; 6] = [
    "secret",
    "client_secret",
    "access_token",
    "refresh_token",
    "login_url",
    "code_verifier",
];

/// `app`, with its management changes recorded.
pub fn record_changes(app: Router, state: AppState) -> Router {
    Router::new().fallback_service(Changes { inner: app, state })
}

#[derive(Clone)]
struct Changes {
    inner: Router,
    state: AppState,
}

impl Service<Request> for Changes {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        if !is_change(&request) {
            // The runtime API and every read: straight through, nothing cloned but the router.
            return Box::pin(self.inner.clone().oneshot(request));
        }
        let this = self.clone();
        Box::pin(async move { Ok(this.handle(request).await) })
    }
}

/// A write to the management API.
fn is_change(request: &Request) -> bool {
    matches!(
        *request.method(),
        Method::PUT | Method::POST | Method::PATCH | Method::DELETE
    ) && request.uri().path().starts_with("/v1/")
}

impl Changes {
    async fn handle(self, request: Request) -> Response {
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let auth = request.headers().get(AUTHORIZATION).cloned();
        let before = if method == Method::POST {
            None
        } else {
            let mut get = Request::new(Body::empty());
            *get.uri_mut() = path.parse().unwrap_or_default();
            if let Some(auth) = auth {
                get.headers_mut().insert(AUTHORIZATION, auth);
            }
            let answer = self.call_inner(get).await;
            if answer.status() == StatusCode::OK {
                json_body(answer).await.1
            } else {
                None
            }
        };
        let answer = self.call_inner(request).await;
        if !answer.status().is_success() {
            return answer;
        }
        let status = answer.status();
        let (answer, after) = if method == Method::PUT || method == Method::PATCH {
            json_body(answer).await
        } else {
            (answer, None)
        };
        let segments: Vec<&str> = path.split('/').collect();
        let (provider_id, connection_id) = match segments.as_slice() {
            ["", "v1", "providers", p, "connections", c, ..] => (Some(*p), Some(*c)),
            ["", "v1", "providers", p, ..] => (Some(*p), None),
            _ => (None, None),
        };
        let entry = AuditEntry {
            id: 0,
            at: unix_now(),
            kind: "change".into(),
            actor: Some("admin".into()),
            identity: None,
            issuer: None,
            provider_id: provider_id.map(str::to_owned),
            connection_id: connection_id.map(str::to_owned),
            action: format!("{method} {path}"),
            outcome: status.as_u16().to_string(),
            detail: Some(
                json!({"before": before.map(scrub), "after": after.map(scrub)}).to_string(),
            ),
        };
        if let Err(e) = self.state.store.insert_audit(&[entry]).await {
            self.state.metrics.audit_dropped(1);
            tracing::error!(error = %e, action = %format!("{method} {path}"),
                "audit: a management change could not be recorded");
        }
        answer
    }

    async fn call_inner(&self, request: Request) -> Response {
        match self.inner.clone().oneshot(request).await {
            Ok(r) => r,
            Err(never) => match never {},
        }
    }
}

/// The answer, rebuilt, and its body as JSON if it is JSON.
async fn json_body(answer: Response) -> (Response, Option<Value>) {
    let (parts, body) = answer.into_parts();
    match to_bytes(body, MAX_BODY).await {
        Ok(bytes) => {
            let value = serde_json::from_slice(&bytes).ok();
            (Response::from_parts(parts, Body::from(bytes)), value)
        }
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR.into_response(), None),
    }
}

/// `value` with the string values of [`SECRET_FIELDS`] replaced, at any depth.
pub fn scrub(mut value: Value) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(map) => {
                for (k, v) in map.iter_mut() {
                    if SECRET_FIELDS.contains(&k.as_str()) && v.is_string() {
                        *v = Value::String("[redacted]".into());
                    } else {
                        walk(v);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut value);
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_recorded() {
        let v = scrub(
            json!({"client_secret": {"set": true}, "nested": [{"secret": "s3"}], "name": "x"}),
        );
        assert_eq!(
            v,
            json!({"client_secret": {"set": true}, "nested": [{"secret": "[redacted]"}], "name": "x"})
        );
    }
}
