//! The OAuth 2.0 client that talks to token endpoints.
//!
//! Redirects are never followed: a token request carries the client secret, and following a
//! redirect would hand it to wherever the response points (SSRF and secret leakage). A
//! provider that redirects is reported with a message to set `token_url` to the final URL.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION};
use secrecy::{ExposeSecret, SecretString};

use super::error::{FailureKind, TokenFailure};
use super::response::{interpret, BodyFormat, TokenResponse};
use crate::domain::AuthMethod;
use crate::presets::Quirks;

/// Largest token endpoint response read.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// HTTP client for token endpoints.
#[derive(Clone, Debug)]
pub struct OAuthClient {
    http: reqwest::Client,
    timeout: Duration,
}

/// The client and endpoint of a token request.
pub struct ClientAuth<'a> {
    pub token_url: &'a str,
    pub client_id: &'a str,
    pub client_secret: &'a SecretString,
    pub auth_method: AuthMethod,
    /// The provider's extra token parameters.
    pub extra_params: &'a BTreeMap<String, String>,
    /// How the provider departs from RFC 6749 (its preset's).
    pub quirks: &'a Quirks,
}

/// What to ask the token endpoint for.
pub enum Grant<'a> {
    /// RFC 6749 §4.4.2.
    ClientCredentials { scopes: &'a [String] },
    /// RFC 6749 §4.1.3 with RFC 7636 §4.5.
    AuthorizationCode {
        code: &'a SecretString,
        redirect_uri: &'a str,
        code_verifier: &'a SecretString,
    },
    /// RFC 6749 §6. No `scope`: the new token gets the scope of the grant.
    RefreshToken { refresh_token: &'a SecretString },
}

impl Grant<'_> {
    pub fn name(&self) -> &'static str {
        match self {
            Grant::ClientCredentials { .. } => "client_credentials",
            Grant::AuthorizationCode { .. } => "authorization_code",
            Grant::RefreshToken { .. } => "refresh_token",
        }
    }
}

impl OAuthClient {
    pub fn new(timeout: Duration) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            // No idle connections: a pooled connection that the provider closes just as a
            // request is sent on it (Node's default keep-alive timeout is 5 s) fails the
            // request, and a token request must not be retried blindly: a refresh token that
            // reached the provider is used up, and sending it again revokes the grant. Token
            // requests are rare (one per token lifetime), so a fresh connection costs little.
            .pool_max_idle_per_host(0)
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("credmgr/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(OAuthClient { http, timeout })
    }

    /// The timeout of one token request.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Asks the token endpoint for a token.
    pub async fn request(
        &self,
        req: &ClientAuth<'_>,
        grant: &Grant<'_>,
    ) -> Result<TokenResponse, TokenFailure> {
        let scope;
        let mut form: Vec<(&str, &str)> = vec![("grant_type", grant.name())];
        match grant {
            Grant::ClientCredentials { scopes } => {
                // RFC 6749 §3.3: space-delimited, unless the provider wants otherwise.
                scope = req.quirks.join_scopes(scopes);
                if !scope.is_empty() {
                    form.push(("scope", &scope));
                }
            }
            Grant::AuthorizationCode {
                code,
                redirect_uri,
                code_verifier,
            } => {
                form.push(("code", code.expose_secret()));
                form.push(("redirect_uri", redirect_uri));
                form.push(("code_verifier", code_verifier.expose_secret()));
            }
            Grant::RefreshToken { refresh_token } => {
                form.push(("refresh_token", refresh_token.expose_secret()));
            }
        }
        form.extend(
            req.extra_params
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        let mut request = self
            .http
            .post(req.token_url)
            .header(ACCEPT, "application/json");
        match req.auth_method {
            AuthMethod::ClientSecretBasic => {
                request =
                    request.header(AUTHORIZATION, basic_auth(req.client_id, req.client_secret));
            }
            AuthMethod::ClientSecretPost => {
                form.push(("client_id", req.client_id));
                form.push(("client_secret", req.client_secret.expose_secret()));
            }
        }
        let response = request
            .form(&form)
            .send()
            .await
            .map_err(|e| self.transport_failure(req.token_url, &e))?;
        let status = response.status();
        let form_encoded = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("application/x-www-form-urlencoded")
            });
        let body = self.read_body(req.token_url, status, response).await?;
        let format = if form_encoded {
            BodyFormat::Form
        } else {
            BodyFormat::Json
        };
        interpret(status, format, &body, req.quirks)
    }

    /// The response body, refusing more than [`MAX_RESPONSE_BYTES`]: a token response is a
    /// few kilobytes, and a provider must not be able to make credmgr buffer gigabytes.
    async fn read_body(
        &self,
        url: &str,
        status: reqwest::StatusCode,
        mut response: reqwest::Response,
    ) -> Result<Vec<u8>, TokenFailure> {
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.transport_failure(url, &e))?
        {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                // It answered: a provider error, not an unreachable provider.
                return Err(TokenFailure::new(
                    FailureKind::ProviderError,
                    format!(
                        "the token endpoint {url} answered HTTP {status} with more than {} KiB",
                        MAX_RESPONSE_BYTES / 1024
                    ),
                )
                .with_status(status.as_u16()));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// The endpoint did not answer (or stopped answering): `provider_unreachable`. One message
    /// for a refused connection, a timeout and a broken exchange: the message reaches API
    /// answers, and telling them apart would let whoever may set `token_url` map which
    /// internal hosts and ports are open. The cause goes to the log only.
    fn transport_failure(&self, url: &str, e: &reqwest::Error) -> TokenFailure {
        tracing::warn!(token_url = %url, timeout_secs = self.timeout.as_secs_f32(),
            cause = %root_cause(e), "token request got no answer");
        TokenFailure::new(
            FailureKind::ProviderUnreachable,
            format!(
                "the token endpoint {url} could not be reached or did not answer within {}s",
                self.timeout.as_secs_f32()
            ),
        )
    }
}

/// The innermost error, without the URL reqwest adds at the top.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// RFC 6749 §2.3.1: the client id and secret are each form-urlencoded (Appendix B), then
/// joined with ':' and base64-encoded as in HTTP Basic (RFC 7617). Skipping the encoding
/// breaks secrets that contain ':' or '%', which real providers issue.
fn basic_auth(client_id: &str, client_secret: &SecretString) -> HeaderValue {
    let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let credentials = zeroize::Zeroizing::new(format!(
        "{}:{}",
        encode(client_id),
        encode(client_secret.expose_secret())
    ));
    let encoded =
        zeroize::Zeroizing::new(format!("Basic {}", BASE64.encode(credentials.as_bytes())));
    // Base64 output is always a valid header value.
    let mut value =
        HeaderValue::from_str(&encoded).unwrap_or_else(|_| HeaderValue::from_static(""));
    value.set_sensitive(true);
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_form_encodes_before_base64() {
        let value = basic_auth("my client", &SecretString::from("p@ss:w%rd+"));
        assert!(value.is_sensitive());
        let encoded = value.to_str().unwrap().strip_prefix("Basic ").unwrap();
        let decoded = String::from_utf8(BASE64.decode(encoded).unwrap()).unwrap();
        assert_eq!(decoded, "my+client:p%40ss%3Aw%25rd%2B");
    }
}
