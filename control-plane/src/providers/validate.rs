//! Checks of provider and connection fields shared by both APIs.

use secrecy::{ExposeSecret, SecretString};

use crate::error::ApiError;

const MAX_DISPLAY_NAME: usize = 200;

/// Checks a display name (shown to people; plain text of reasonable length).
pub fn validate_display_name(name: &Option<String>) -> Result<(), ApiError> {
    if let Some(name) = name {
        if name.chars().count() > MAX_DISPLAY_NAME {
            return Err(ApiError::invalid(
                "display_name",
                format!("`display_name` must be at most {MAX_DISPLAY_NAME} characters"),
            ));
        }
        if name.chars().any(char::is_control) {
            return Err(ApiError::invalid(
                "display_name",
                "`display_name` must not contain control characters",
            ));
        }
    }
    Ok(())
}

/// Checks a client id: RFC 6749 Appendix A.1 allows printable ASCII (VSCHAR).
pub fn validate_client_id(field: &str, id: &str) -> Result<(), ApiError> {
    if id.is_empty() || !id.chars().all(|c| matches!(c, '\x20'..='\x7e')) {
        return Err(ApiError::invalid(
            field,
            format!("`{field}` must be non-empty printable ASCII (RFC 6749 Appendix A.1)"),
        ));
    }
    Ok(())
}

/// Checks a client secret: non-empty (RFC 6749 Appendix A.2 allows printable ASCII, but
/// providers issue others, so only emptiness and control characters are refused).
pub fn validate_client_secret(field: &str, secret: &SecretString) -> Result<(), ApiError> {
    let s = secret.expose_secret();
    if s.is_empty() || s.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            field,
            format!("`{field}` must be non-empty and free of control characters"),
        ));
    }
    Ok(())
}

/// The token endpoint must be an absolute http(s) URL without a fragment (RFC 6749 §3.2).
/// Plain http is accepted for local development and tests, with a warning: RFC 6749 §3.2
/// requires TLS, since the client secret and the tokens cross this connection.
pub fn validate_token_url(raw: &str) -> Result<url::Url, ApiError> {
    validate_endpoint("token_url", raw)
}

/// An absolute http(s) URL without fragment or credentials (RFC 6749 §3.1, §3.1.2, §3.2).
pub fn validate_endpoint(field: &str, raw: &str) -> Result<url::Url, ApiError> {
    let bad = |why: &str| {
        ApiError::invalid(
            field,
            format!("`{field}` must be an absolute http or https URL: {why}"),
        )
    };
    let url = url::Url::parse(raw).map_err(|e| bad(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad(&format!(
            "scheme `{}` is not http or https",
            url.scheme()
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("it has no host"));
    }
    if url.fragment().is_some() {
        return Err(bad("it must not have a fragment (RFC 6749 §3.2)"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("it must not carry a user name or password"));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_urls_must_be_absolute_http() {
        assert!(validate_token_url("https://idp.example/oauth/token").is_ok());
        assert!(validate_token_url("http://127.0.0.1:8080/token?x=1").is_ok());
        for bad in [
            "/token",
            "ftp://idp.example/token",
            "https://idp.example/token#frag",
            "https://user:pw@idp.example/token",
            "not a url",
        ] {
            assert!(validate_token_url(bad).is_err(), "{bad}");
        }
    }
}
