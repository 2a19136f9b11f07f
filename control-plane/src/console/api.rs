//! The management API, called in process by the console's pages: the same handlers,
//! validation, error messages and audit records as `/v1` over HTTP. The admin check is the console's
//! session, done before any of these calls.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use serde_json::Value;
use tower::ServiceExt as _;

use crate::state::AppState;

/// Largest API answer the console reads.
const MAX_ANSWER: usize = 16 * 1024 * 1024;

/// The management routes the console uses, ready to call.
#[derive(Clone)]
pub struct Api(Router);

/// The API refused: its status and its error message (never a secret).
#[derive(Debug)]
pub struct Refusal {
    pub status: StatusCode,
    pub message: String,
}

impl Api {
    pub fn new(state: AppState) -> Api {
        // Changes made from the console are recorded in the audit trail like those over HTTP.
        let routes = crate::management::routes().with_state(state.clone());
        Api(crate::audit::changes::record_changes(routes, state))
    }

    pub async fn get(&self, path: &str) -> Result<Value, Refusal> {
        self.call(Method::GET, path, None).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Result<Value, Refusal> {
        self.call(Method::PUT, path, Some(body)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Result<Value, Refusal> {
        self.call(Method::POST, path, Some(body)).await
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Refusal> {
        let internal = |what: &str| Refusal {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: format!("the console could not call the API: {what}"),
        };
        let mut request = Request::builder().method(method).uri(path);
        let body = match body {
            Some(v) => {
                request = request.header("content-type", "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        let request = request
            .body(body)
            .map_err(|_| internal("bad request path"))?;
        let response = match self.0.clone().oneshot(request).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), MAX_ANSWER)
            .await
            .map_err(|_| internal("answer too large"))?;
        let value: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).map_err(|_| internal("answer not JSON"))?
        };
        if status.is_success() {
            return Ok(value);
        }
        let message = value["error"]["message"]
            .as_str()
            .unwrap_or("the request was refused")
            .to_owned();
        Err(Refusal { status, message })
    }
}

/// An id as one URL path segment.
pub fn seg(id: &str) -> String {
    url::form_urlencoded::byte_serialize(id.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}
