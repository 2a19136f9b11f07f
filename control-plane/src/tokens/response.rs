//! Reading a token endpoint's answer: a token (RFC 6749 §5.1) or an error (§5.2), with the
//! quirks of the provider's preset (form-encoded bodies, the token in a nested object, extra
//! error codes, claims lifted out of nested fields).

use secrecy::SecretString;
use serde_json::{Map, Value};

use super::error::{FailureKind, TokenFailure};
use crate::presets::Quirks;

/// Longest `error_description` quoted back from a provider.
const MAX_DESCRIPTION: usize = 300;

/// A successful token response (RFC 6749 §5.1).
pub struct TokenResponse {
    pub access_token: SecretString,
    /// A new refresh token, if the provider sent one.
    pub refresh_token: Option<SecretString>,
    pub token_type: String,
    /// Lifetime in seconds, if the provider said.
    pub expires_in: Option<i64>,
    /// Lifetime of the refresh token in seconds, if the provider said
    /// (`refresh_token_expires_in`: GitHub App user tokens, LinkedIn).
    pub refresh_token_expires_in: Option<i64>,
    /// The allowlisted fields ([`super::claims`]) and the preset's declared claims.
    pub claims: Map<String, Value>,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &"[redacted]")
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "[redacted]"),
            )
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("refresh_token_expires_in", &self.refresh_token_expires_in)
            .field("claims", &self.claims)
            .finish()
    }
}

/// What the token endpoint said its body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyFormat {
    Json,
    /// `application/x-www-form-urlencoded`.
    Form,
}

/// The body as a JSON object: JSON, or, for providers whose preset says they answer
/// form-encoded (GitHub), a form read into string values.
fn parse_body(format: BodyFormat, body: &[u8], quirks: &Quirks) -> Option<Map<String, Value>> {
    if let Ok(json) = serde_json::from_slice::<Map<String, Value>>(body) {
        return Some(json);
    }
    if !quirks.form_encoded_response {
        return None;
    }
    // GitHub labels its form answers `application/x-www-form-urlencoded`; without the label
    // a body is taken as a form only if it looks like one (`name=value&...`).
    let text = std::str::from_utf8(body).ok()?.trim();
    let looks_like_form = !text.is_empty()
        && text.split('&').all(|pair| {
            pair.split_once('=').is_some_and(|(k, _)| {
                !k.is_empty()
                    && k.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
            })
        });
    if format != BodyFormat::Form && !looks_like_form {
        return None;
    }
    Some(
        url::form_urlencoded::parse(text.as_bytes())
            .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
            .collect(),
    )
}

/// A number of seconds: RFC 6749 §5.1 says a number; some servers send a numeric string
/// (and form-encoded answers have nothing else).
fn seconds(value: Option<&Value>) -> Option<i64> {
    match value {
        Some(Value::Number(n)) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|secs| *secs >= 0)
}

/// Reads a token endpoint's answer: a token (RFC 6749 §5.1) or an error (§5.2).
pub(crate) fn interpret(
    status: reqwest::StatusCode,
    format: BodyFormat,
    body: &[u8],
    quirks: &Quirks,
) -> Result<TokenResponse, TokenFailure> {
    // The provider answered: whatever is wrong with the answer is a `provider_error` with its
    // status (`provider_unreachable` is for endpoints that did not answer; see `client.rs`).
    let code = status.as_u16();
    let unusable =
        |why: String| TokenFailure::new(FailureKind::ProviderError, why).with_status(code);
    if status.is_redirection() {
        return Err(unusable(format!(
            "the token endpoint answered with a redirect (HTTP {status}); redirects are not \
             followed: set token_url to the final URL"
        )));
    }
    let json = parse_body(format, body, quirks);
    if !status.is_success() {
        return Err(match json.as_ref().and_then(|j| oauth_error(j, quirks)) {
            Some(failure) => failure.with_status(code),
            // RFC 6749 §5.2: 401 is how a server says client authentication failed.
            None if status == reqwest::StatusCode::UNAUTHORIZED => TokenFailure::new(
                FailureKind::ClientSecretRejected,
                "the token endpoint refused the client credentials (HTTP 401); check the \
                 client id and client secret",
            )
            .with_status(code),
            None => unusable(format!(
                "the token endpoint answered HTTP {status} without an OAuth error; check \
                 token_url and the provider's health"
            )),
        });
    }
    let Some(json) = json else {
        let what = if body.iter().all(u8::is_ascii_whitespace) {
            "an empty body"
        } else {
            "a body that is not a JSON object"
        };
        return Err(unusable(format!(
            "the token endpoint answered HTTP {status} with {what}, not a token response \
             (RFC 6749 §5.1); check token_url and the provider's health"
        )));
    };
    if let Some(failure) = oauth_error(&json, quirks) {
        // Some servers send an error with 200 (GitHub, Slack); it is still an error.
        return Err(failure.with_status(code));
    }
    let whole = Value::Object(json);
    let holder = match &quirks.token_pointer {
        None => whole.as_object(),
        Some(pointer) => whole.pointer(pointer).and_then(Value::as_object),
    };
    let holder = match (holder, &quirks.token_pointer) {
        (Some(h), _) => h,
        (None, pointer) => {
            let pointer = pointer.as_deref().unwrap_or("");
            {
                return Err(unusable(format!(
                    "the token response has no object at {pointer}, where this provider puts \
                     the token"
                )));
            }
        }
    };
    let access_token = match holder.get("access_token") {
        Some(Value::String(t)) if !t.is_empty() => SecretString::from(t.as_str()),
        _ => {
            return Err(unusable(format!(
                "the token endpoint answered HTTP {status} without an access_token (RFC 6749 \
                 §5.1)"
            )))
        }
    };
    // token_type is required by §5.1, but some servers omit it; their tokens are bearer
    // tokens. The scheme is case-insensitive (§7.1); normalize to RFC 6750's spelling.
    let token_type = match holder.get("token_type").and_then(Value::as_str) {
        None => "Bearer".to_owned(),
        Some(t) if t.eq_ignore_ascii_case("bearer") => "Bearer".to_owned(),
        Some(t) => t.to_owned(),
    };
    let expires_in = seconds(holder.get("expires_in"));
    let refresh_token_expires_in = seconds(holder.get("refresh_token_expires_in"));
    let refresh_token = match holder.get("refresh_token") {
        Some(Value::String(t)) if !t.is_empty() => Some(SecretString::from(t.as_str())),
        _ => None,
    };
    let claims = super::claims::kept(&whole, holder, quirks);
    Ok(TokenResponse {
        access_token,
        refresh_token,
        token_type,
        expires_in,
        refresh_token_expires_in,
        claims,
    })
}

/// The `exp` of an access token that is a JWT (RFC 7519 §4.1.4), read without verifying the
/// signature: credmgr is the token's holder, not its audience, and only wants to know how
/// long the provider means it to live when the response does not say (RFC 9068 tokens).
pub(crate) fn jwt_exp(token: &str) -> Option<i64> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    let mut parts = token.split('.');
    let (_header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: Map<String, Value> = serde_json::from_slice(&bytes).ok()?;
    claims.get("exp")?.as_i64()
}

/// An OAuth error response (RFC 6749 §5.2), if `json` is one.
fn oauth_error(json: &Map<String, Value>, quirks: &Quirks) -> Option<TokenFailure> {
    let code = json.get("error")?.as_str()?;
    let description = json
        .get("error_description")
        .and_then(Value::as_str)
        .map(sanitize)
        .filter(|d| !d.is_empty());
    let quoted = match &description {
        Some(d) => format!("`{}`: {d}", sanitize(code)),
        None => format!("`{}`", sanitize(code)),
    };
    Some(match code {
        "invalid_client" | "unauthorized_client" => TokenFailure::new(
            FailureKind::ClientSecretRejected,
            format!(
                "the provider refused the client credentials ({quoted}); check the client id \
                 and client secret, and that the client may use this grant"
            ),
        ),
        // RFC 6749 §5.2: the code or refresh token is invalid, expired, revoked or was
        // issued to another client (and the provider's own words for it).
        code if quirks.is_invalid_grant(code) => TokenFailure::new(
            FailureKind::InvalidGrant,
            format!("the provider refused the grant ({quoted})"),
        ),
        _ => TokenFailure::new(
            FailureKind::ProviderError,
            format!("the provider refused the token request ({quoted})"),
        ),
    })
}

/// A provider's text, made safe to show: printable, bounded.
fn sanitize(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .take(MAX_DESCRIPTION)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;
    use secrecy::ExposeSecret as _;

    fn ok(json: &str) -> TokenResponse {
        interpret(
            StatusCode::OK,
            BodyFormat::Json,
            json.as_bytes(),
            &Quirks::default(),
        )
        .unwrap()
    }

    fn err(status: u16, body: &str) -> TokenFailure {
        interpret(
            StatusCode::from_u16(status).unwrap(),
            BodyFormat::Json,
            body.as_bytes(),
            &Quirks::default(),
        )
        .unwrap_err()
    }

    #[test]
    fn a_token_response_keeps_only_non_secret_claims() {
        let t = ok(
            r#"{"access_token":"at-1","token_type":"bearer","expires_in":3600,
                       "refresh_token":"rt","id_token":"idt","scope":"api:read","instance_url":"x"}"#,
        );
        assert_eq!(t.access_token.expose_secret(), "at-1");
        assert_eq!(t.refresh_token.as_ref().unwrap().expose_secret(), "rt");
        assert_eq!(t.token_type, "Bearer");
        assert_eq!(t.expires_in, Some(3600));
        let keys: Vec<_> = t.claims.keys().map(String::as_str).collect();
        assert_eq!(keys, ["expires_in", "instance_url", "scope", "token_type"]);
        let shown = format!("{t:?}");
        assert!(
            !shown.contains("at-1") && !shown.contains("\"rt"),
            "{shown}"
        );
    }

    #[test]
    fn lenient_about_what_real_providers_send() {
        assert_eq!(
            ok(r#"{"access_token":"a","expires_in":"59"}"#).expires_in,
            Some(59)
        );
        let t = ok(r#"{"access_token":"a"}"#);
        assert_eq!((t.token_type.as_str(), t.expires_in), ("Bearer", None));
        assert_eq!(
            ok(r#"{"access_token":"a","token_type":"DPoP"}"#).token_type,
            "DPoP"
        );
    }

    #[test]
    fn oauth_errors_are_classified() {
        let e = err(
            401,
            r#"{"error":"invalid_client","error_description":"no such client"}"#,
        );
        assert_eq!(e.kind, FailureKind::ClientSecretRejected);
        assert!(e.message.contains("no such client"), "{}", e.message);
        assert_eq!(
            err(400, r#"{"error":"unauthorized_client"}"#).kind,
            FailureKind::ClientSecretRejected
        );
        let e = err(
            400,
            r#"{"error":"invalid_scope","error_description":"scope x"}"#,
        );
        assert_eq!(e.kind, FailureKind::ProviderError);
        assert!(e.message.contains("invalid_scope") && e.message.contains("scope x"));
        assert_eq!(
            err(400, r#"{"error":"invalid_grant"}"#).kind,
            FailureKind::InvalidGrant
        );
        assert_eq!(
            err(200, r#"{"error":"invalid_request"}"#).kind,
            FailureKind::ProviderError
        );
        assert_eq!(err(401, "").kind, FailureKind::ClientSecretRejected);
    }

    /// Whatever the provider answered that is not a token is a `provider_error` with the
    /// status, in the failure and in its message: the provider did answer.
    #[test]
    fn an_answer_that_is_not_a_token_is_a_provider_error_with_its_status() {
        for (status, body) in [
            (500, "oops"),
            (500, ""),
            (503, r#"{"message":"down"}"#),
            (404, "<html>"),
            (302, ""),
            (200, ""),
            (200, "<html><body>maintenance</body></html>"),
            (200, r#"{"token_type":"Bearer"}"#),
            (200, r#"[1]"#),
        ] {
            let e = err(status, body);
            assert_eq!(e.kind, FailureKind::ProviderError, "{status} {body}");
            assert_eq!(e.status, Some(status), "{status} {body}");
            assert!(
                e.message.contains(&format!("HTTP {status}")),
                "{status} {body}: {}",
                e.message
            );
        }
        assert!(err(302, "").message.contains("token_url"));
        assert!(err(200, " ").message.contains("an empty body"));
        assert!(err(200, "<html>").message.contains("not a JSON object"));
        assert_eq!(err(400, r#"{"error":"invalid_scope"}"#).status, Some(400));
    }

    #[test]
    fn form_encoded_answers_only_where_the_preset_says() {
        let github = Quirks {
            form_encoded_response: true,
            ..Quirks::default()
        };
        let body = b"access_token=gho_x&scope=repo%2Cgist&token_type=bearer";
        let t = interpret(StatusCode::OK, BodyFormat::Form, body, &github).unwrap();
        assert_eq!(t.access_token.expose_secret(), "gho_x");
        assert_eq!(t.claims["scope"], "repo,gist");
        // Unlabelled, but shaped like a form.
        let t = interpret(StatusCode::OK, BodyFormat::Json, body, &github).unwrap();
        assert_eq!(t.access_token.expose_secret(), "gho_x");
        let generic = Quirks::default();
        let e = interpret(StatusCode::OK, BodyFormat::Form, body, &generic).unwrap_err();
        assert_eq!(e.kind, FailureKind::ProviderError);
        let e = interpret(StatusCode::OK, BodyFormat::Json, b"<html>", &github).unwrap_err();
        assert_eq!(e.kind, FailureKind::ProviderError);
        let e = interpret(
            StatusCode::OK,
            BodyFormat::Form,
            b"error=bad_refresh_token&error_description=gone",
            &Quirks {
                invalid_grant_errors: vec!["bad_refresh_token".into()],
                ..github.clone()
            },
        )
        .unwrap_err();
        assert_eq!(e.kind, FailureKind::InvalidGrant);
    }

    #[test]
    fn only_allowlisted_and_declared_claims_are_kept() {
        // Slack's answer with an incoming webhook and a legacy bot object, plus an OpenID
        // Connect native-SSO `device_secret`: none of it may become a claim.
        let body = r##"{"ok":true,"access_token":"xoxb-1","token_type":"bot","scope":"commands",
            "team":{"id":"T1","name":"Team"},"authed_user":{"id":"U1","access_token":"xoxp",
            "refresh_token":"r"},"incoming_webhook":{"channel":"#c","url":"https://hooks.slack.com/services/SECRET"},
            "bot":{"bot_user_id":"B1","bot_access_token":"xoxb-legacy"},
            "device_secret":"ds-1","list":[{"id_token":"i","k":1}],"instance_url":"https://x"}"##;
        let mut quirks = Quirks::default();
        quirks.claims.insert("team_id".into(), "/team/id".into());
        quirks.claims.insert("team".into(), "/team".into());
        quirks
            .claims
            .insert("user_token".into(), "/authed_user/access_token".into());
        let t = interpret(
            reqwest::StatusCode::OK,
            BodyFormat::Json,
            body.as_bytes(),
            &quirks,
        )
        .unwrap();
        let shown = serde_json::to_string(&t.claims).unwrap();
        for secret in ["xoxp", "SECRET", "xoxb-legacy", "ds-1", "\"r\"", "\"i\""] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        let keys: Vec<_> = t.claims.keys().map(String::as_str).collect();
        // Declared scalars are lifted; a declared object (`team`) is not passed whole.
        assert_eq!(keys, ["instance_url", "scope", "team_id", "token_type"]);
    }

    #[test]
    fn a_lifted_claim_never_carries_a_nested_secret() {
        // Slack's preset lifts `/team/id`; a provider that puts an object there must not
        // smuggle a token into the claims (fuzz/fuzz_targets/token_response.rs checks it).
        let slack = crate::presets::get("slack").unwrap().quirks.clone();
        let body = br#"{"access_token":"a","team":{"id":{"access_token":"xoxb-nested","k":1}}}"#;
        let t = interpret(reqwest::StatusCode::OK, BodyFormat::Json, body, &slack).unwrap();
        let shown = serde_json::to_string(&t.claims).unwrap();
        assert!(!shown.contains("xoxb-nested"), "{shown}");
        // Claims are scalars only: an object where the preset expects an id is not lifted.
        assert!(t.claims.get("team_id").is_none(), "{shown}");
    }

    #[test]
    fn the_exp_of_a_jwt_access_token() {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine as _;
        let payload = URL_SAFE_NO_PAD.encode(br#"{"exp":1700000000,"sub":"x"}"#);
        assert_eq!(
            jwt_exp(&format!("eyJhbGciOiJub25lIn0.{payload}.sig")),
            Some(1700000000)
        );
        assert_eq!(jwt_exp("opaque-token"), None);
        assert_eq!(jwt_exp(&format!("a.{payload}.b.c")), None);
        assert_eq!(jwt_exp("a.!!!.b"), None);
    }
}
