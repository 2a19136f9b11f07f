//! The REST client behind the CLI: one request at a time with the admin token, the API's
//! error body turned into a message and an exit code.

use std::fmt;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::args::{exit, ClientOpts};

/// A failed command: what to tell the user, and the exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
        }
    }

    pub fn refused(message: impl Into<String>) -> Self {
        Failure::new(exit::REFUSED, message)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The exit code for an HTTP status of the management API.
pub fn exit_code(status: StatusCode) -> u8 {
    match status.as_u16() {
        401 | 403 => exit::UNAUTHENTICATED,
        404 => exit::NOT_FOUND,
        409 | 412 => exit::CONFLICT,
        500..=599 => exit::UNAVAILABLE,
        _ => exit::REFUSED,
    }
}

pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

/// A whole request, connect to last byte, takes at most this long.
const TIMEOUT: Duration = Duration::from_secs(30);

impl Client {
    pub fn new(opts: &ClientOpts) -> Result<Self, Failure> {
        let token = opts.admin_token.clone().ok_or_else(|| {
            Failure::new(
                exit::USAGE,
                "no admin token: set CREDMGR_ADMIN_TOKEN (or pass --admin-token) to the token \
                 the control plane was started with",
            )
        })?;
        let base = opts.url.trim_end_matches('/').to_owned();
        url::Url::parse(&base).map_err(|e| {
            Failure::new(
                exit::USAGE,
                format!("--url / CREDMGR_URL `{base}` is not a URL ({e})"),
            )
        })?;
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            // The admin token must not follow a redirect to another host.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Failure::new(exit::UNAVAILABLE, format!("HTTP client: {e}")))?;
        Ok(Client { http, base, token })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub async fn get(&self, path: &str) -> Result<Value, Failure> {
        self.send(Method::GET, path, None).await
    }

    /// GET that answers `None` for 404.
    pub async fn find(&self, path: &str) -> Result<Option<Value>, Failure> {
        match self.get(path).await {
            Ok(v) => Ok(Some(v)),
            Err(f) if f.code == exit::NOT_FOUND => Ok(None),
            Err(f) => Err(f),
        }
    }

    pub async fn put(&self, path: &str, body: &Value) -> Result<Value, Failure> {
        self.send(Method::PUT, path, Some(body)).await
    }

    pub async fn post(&self, path: &str, body: Option<&Value>) -> Result<Value, Failure> {
        self.send(Method::POST, path, body).await
    }

    pub async fn delete(&self, path: &str) -> Result<Value, Failure> {
        self.send(Method::DELETE, path, None).await
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, Failure> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| unreachable(&self.base, &e))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| unreachable(&self.base, &e))?;
        if status.is_success() {
            if text.trim().is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_str(&text).map_err(|_| {
                Failure::new(
                    exit::UNAVAILABLE,
                    format!("{url} did not answer JSON: is --url a credmgr control plane?"),
                )
            });
        }
        Err(api_failure(status, &text))
    }
}

/// The API's error body as one line: its message, then code and status.
fn api_failure(status: StatusCode, text: &str) -> Failure {
    let body: Option<Value> = serde_json::from_str(text).ok();
    let error = body.as_ref().and_then(|b| b.get("error"));
    let message = error
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .unwrap_or("the control plane gave no reason");
    let code = error
        .and_then(|e| e.get("code"))
        .and_then(Value::as_str)
        .unwrap_or("no_code");
    let mut line = format!("{message} ({code}, HTTP {})", status.as_u16());
    if status == StatusCode::UNAUTHORIZED {
        line.push_str(
            "\nhint: CREDMGR_ADMIN_TOKEN (or --admin-token) must be the token the control plane \
             was started with",
        );
    }
    Failure::new(exit_code(status), line)
}

fn unreachable(base: &str, e: &reqwest::Error) -> Failure {
    let why = if e.is_timeout() {
        "no answer in time".to_owned()
    } else if e.is_connect() {
        "cannot connect".to_owned()
    } else {
        e.to_string()
    };
    Failure::new(
        exit::UNAVAILABLE,
        format!(
            "control plane at {base} unreachable: {why}\nhint: is it running? Set CREDMGR_URL \
             (or --url) to its address"
        ),
    )
}

/// Encodes one path segment (ids are validated by the server; this only keeps `/` and the
/// like from changing the path).
pub fn seg(id: &str) -> String {
    url::form_urlencoded::byte_serialize(id.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_documented_exit_codes() {
        assert_eq!(exit_code(StatusCode::NOT_FOUND), 3);
        assert_eq!(exit_code(StatusCode::CONFLICT), 4);
        assert_eq!(exit_code(StatusCode::PRECONDITION_FAILED), 4);
        assert_eq!(exit_code(StatusCode::UNAUTHORIZED), 5);
        assert_eq!(exit_code(StatusCode::SERVICE_UNAVAILABLE), 6);
        assert_eq!(exit_code(StatusCode::BAD_REQUEST), 1);
    }

    #[test]
    fn the_api_message_is_shown() {
        let f = api_failure(
            StatusCode::BAD_REQUEST,
            r#"{"error":{"code":"invalid_request","message":"`client_id` is required"}}"#,
        );
        assert_eq!(f.code, 1);
        assert_eq!(
            f.message,
            "`client_id` is required (invalid_request, HTTP 400)"
        );
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(seg("a/b c"), "a%2Fb%20c");
    }
}
