//! Credential providers: an OAuth 2.0 authorization server, the client registered at it, and
//! how to ask it for tokens. Management API under `/v1/providers`.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::clock::{rfc3339, unix_now};
use crate::crypto::Aad;
use crate::error::ApiError;
use crate::etag::{self, IfMatch};
use crate::extract::{ApiJson, ProviderPath};
use crate::presets::{self, Preset};
use crate::store::{new_etag, ProviderRecord};
use crate::AppState;

/// The kind of identity provider: a preset of the catalogue (`crate::presets`), generic
/// `oauth2` and `oauth2-pkce` included. Spelled as the preset's id in the API and the store.
#[derive(Clone, Copy)]
pub struct IdentityProvider(&'static Preset);

impl IdentityProvider {
    pub fn preset(self) -> &'static Preset {
        self.0
    }

    pub fn as_str(self) -> &'static str {
        &self.0.id
    }
}

impl PartialEq for IdentityProvider {
    fn eq(&self, other: &Self) -> bool {
        self.0.id == other.0.id
    }
}

impl Eq for IdentityProvider {}

impl fmt::Debug for IdentityProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdentityProvider({})", self.0.id)
    }
}

impl fmt::Display for IdentityProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for IdentityProvider {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        presets::get(s).map(IdentityProvider).ok_or(())
    }
}

impl Serialize for IdentityProvider {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for IdentityProvider {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let id = String::deserialize(d)?;
        id.parse().map_err(|()| {
            serde::de::Error::custom(format!(
                "unknown provider type `{id}`; GET /v1/provider-types lists them"
            ))
        })
    }
}

/// The grant a provider's connections use to obtain tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    /// RFC 6749 §4.4: the client's own credentials; no user involved.
    ClientCredentials,
    /// RFC 6749 §4.1: a user consents in a browser (login link, interstitial, provider,
    /// callback); the access token is then refreshed with the refresh token.
    AuthorizationCode,
}

impl GrantType {
    /// Whether a connection needs a user's consent before it can have a token.
    pub fn needs_consent(self) -> bool {
        matches!(self, GrantType::AuthorizationCode)
    }
}

/// How the client authenticates at the token endpoint (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// HTTP Basic with the form-urlencoded client id and secret; every server must support it.
    #[default]
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
}

/// `as_str` / `FromStr` for the enums above, spelled as in the API (and in the database).
macro_rules! wire_names {
    ($ty:ty { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $name),+ }
            }
        }
        impl FromStr for $ty {
            type Err = ();
            fn from_str(s: &str) -> Result<Self, ()> {
                match s { $($name => Ok(Self::$variant),)+ _ => Err(()) }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_names!(GrantType {
    ClientCredentials => "client_credentials",
    AuthorizationCode => "authorization_code",
});
wire_names!(AuthMethod {
    ClientSecretBasic => "client_secret_basic",
    ClientSecretPost => "client_secret_post",
});

/// Body of `PUT /v1/providers/{id}`. With a preset (`identity_provider` other than the
/// generic ones) most fields may be left out: they come from the preset and its
/// `parameters`; a field that is given wins over the preset.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderBody {
    #[serde(default)]
    display_name: Option<String>,
    identity_provider: IdentityProvider,
    /// The preset's parameters (tenant, domain, realm, ...).
    #[serde(default)]
    parameters: BTreeMap<String, String>,
    /// Defaults to the preset's first grant.
    #[serde(default)]
    grant_type: Option<GrantType>,
    client_id: String,
    /// Write-only. Required on create; omitted on replace keeps the stored one.
    #[serde(default)]
    client_secret: Option<SecretString>,
    #[serde(default)]
    token_url: Option<String>,
    #[serde(default)]
    scopes: Option<Vec<String>>,
    #[serde(default)]
    token_endpoint_auth_method: Option<AuthMethod>,
    /// Extra parameters for the token endpoint, such as `audience` or `resource`, added to
    /// the preset's. Not for secrets: they are stored and shown in plain text.
    #[serde(default)]
    token_params: BTreeMap<String, String>,
    /// The authorization endpoint; required for the authorization-code grant.
    #[serde(default)]
    authorization_url: Option<String>,
    /// Where refresh tokens are redeemed; defaults to `token_url`.
    #[serde(default)]
    refresh_url: Option<String>,
    /// The provider's issuer identifier, compared with the `iss` of authorization responses
    /// (RFC 9207). Without it, `iss` must have the authorization URL's origin.
    #[serde(default)]
    issuer: Option<String>,
    /// Extra parameters of the authorization request, such as `access_type=offline`, added
    /// to the preset's.
    #[serde(default)]
    authorize_params: BTreeMap<String, String>,
    /// Where a login link may send the user after consent (exact match).
    #[serde(default)]
    allowed_redirect_urls: Vec<String>,
}

/// A provider's configuration once its preset has filled in what the body left out.
#[derive(Debug)]
struct Resolved {
    grant_type: GrantType,
    token_url: String,
    scopes: Vec<String>,
    token_endpoint_auth_method: AuthMethod,
    token_params: BTreeMap<String, String>,
    authorization_url: Option<String>,
    refresh_url: Option<String>,
    issuer: Option<String>,
    authorize_params: BTreeMap<String, String>,
}

/// Fills in from the preset what `body` leaves out; refuses missing or invalid parameters
/// and grants the provider does not support, naming the field.
fn resolve(body: &ProviderBody) -> Result<Resolved, ApiError> {
    let preset = body.identity_provider.preset();
    let endpoints = preset
        .endpoints(&body.parameters)
        .map_err(|e| ApiError::invalid(e.field, e.message))?;
    let grant_type = body.grant_type.unwrap_or(preset.grant_types[0]);
    if !preset.grant_types.contains(&grant_type) {
        let supported: Vec<_> = preset.grant_types.iter().map(|g| g.as_str()).collect();
        return Err(ApiError::invalid(
            "grant_type",
            format!(
                "provider type `{}` does not support the {grant_type} grant; it supports: {}",
                preset.id,
                supported.join(", ")
            ),
        ));
    }
    let token_url = body
        .token_url
        .clone()
        .or(endpoints.token_url)
        .ok_or_else(|| {
            ApiError::invalid(
                "token_url",
                format!("`token_url` is required with provider type `{}`", preset.id),
            )
        })?;
    let merged = |preset: &BTreeMap<String, String>, given: &BTreeMap<String, String>| {
        let mut all = preset.clone();
        all.extend(given.iter().map(|(k, v)| (k.clone(), v.clone())));
        all
    };
    let consent = grant_type.needs_consent();
    Ok(Resolved {
        grant_type,
        token_url,
        scopes: body
            .scopes
            .clone()
            .unwrap_or_else(|| preset.scopes_for(grant_type)),
        token_endpoint_auth_method: body
            .token_endpoint_auth_method
            .unwrap_or(preset.token_endpoint_auth_method),
        token_params: merged(&preset.token_params, &body.token_params),
        authorization_url: body
            .authorization_url
            .clone()
            .or(endpoints.authorization_url.filter(|_| consent)),
        refresh_url: body.refresh_url.clone().or(endpoints.refresh_url),
        issuer: body.issuer.clone().or(endpoints.issuer.filter(|_| consent)),
        authorize_params: if consent {
            merged(&preset.authorize_params, &body.authorize_params)
        } else {
            body.authorize_params.clone()
        },
    })
}

/// Token-request parameters that credmgr sets itself (RFC 6749 §4.1.3, §4.4.2, §6, §2.3.1,
/// RFC 7636 §4.5).
const RESERVED_TOKEN_PARAMS: &[&str] = &[
    "grant_type",
    "scope",
    "client_id",
    "client_secret",
    "code",
    "redirect_uri",
    "code_verifier",
    "refresh_token",
];

/// Authorization-request parameters that credmgr sets itself (RFC 6749 §4.1.1, RFC 7636).
const RESERVED_AUTHORIZE_PARAMS: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
];

/// A provider as the API shows it: everything but the secret.
#[derive(Debug, Serialize)]
pub struct ProviderView {
    pub id: String,
    pub display_name: Option<String>,
    pub identity_provider: IdentityProvider,
    pub parameters: BTreeMap<String, String>,
    pub grant_type: GrantType,
    pub client_id: String,
    pub client_secret: SecretState,
    pub token_url: String,
    pub scopes: Vec<String>,
    pub token_endpoint_auth_method: AuthMethod,
    pub token_params: BTreeMap<String, String>,
    pub authorization_url: Option<String>,
    /// The effective refresh endpoint: `token_url` unless set.
    pub refresh_url: String,
    pub issuer: Option<String>,
    pub authorize_params: BTreeMap<String, String>,
    pub allowed_redirect_urls: Vec<String>,
    /// The `ETag` of this provider, for `If-Match`.
    pub etag: String,
    pub created_at: String,
    pub updated_at: String,
}

/// What the API says about a write-only secret: only whether it is set.
#[derive(Debug, Serialize)]
pub struct SecretState {
    pub set: bool,
}

impl From<&ProviderRecord> for ProviderView {
    fn from(p: &ProviderRecord) -> Self {
        ProviderView {
            id: p.id.clone(),
            display_name: p.display_name.clone(),
            identity_provider: p.identity_provider,
            parameters: p.parameters.clone(),
            grant_type: p.grant_type,
            client_id: p.client_id.clone(),
            client_secret: SecretState { set: true },
            token_url: p.token_url.clone(),
            scopes: p.scopes.clone(),
            token_endpoint_auth_method: p.token_endpoint_auth_method,
            token_params: p.token_params.clone(),
            authorization_url: p.authorization_url.clone(),
            refresh_url: p.refresh_endpoint().to_owned(),
            issuer: p.issuer.clone(),
            authorize_params: p.authorize_params.clone(),
            allowed_redirect_urls: p.allowed_redirect_urls.clone(),
            etag: p.etag.clone(),
            created_at: rfc3339(p.created_at),
            updated_at: rfc3339(p.updated_at),
        }
    }
}

pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/providers", get(list)).route(
        "/v1/providers/{provider_id}",
        get(show).put(put).delete(delete),
    )
}

async fn list(State(state): State<AppState>) -> Result<Json<Vec<ProviderView>>, ApiError> {
    let providers = state.store.list_providers().await?;
    Ok(Json(providers.iter().map(ProviderView::from).collect()))
}

async fn show(State(state): State<AppState>, path: ProviderPath) -> Result<Response, ApiError> {
    let p = find(&state, &path.provider_id).await?;
    Ok(([etag::header(&p.etag)], Json(ProviderView::from(&p))).into_response())
}

/// Loads a provider or answers 404.
pub async fn find(state: &AppState, id: &str) -> Result<ProviderRecord, ApiError> {
    state
        .store
        .get_provider(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("provider `{id}` does not exist")))
}

async fn put(
    State(state): State<AppState>,
    path: ProviderPath,
    headers: HeaderMap,
    ApiJson(body): ApiJson<ProviderBody>,
) -> Result<Response, ApiError> {
    let if_match = IfMatch::from_headers(&headers)?;
    let resolved = resolve(&body)?;
    validate(&body, &resolved)?;
    let id = path.provider_id;
    let now = unix_now();
    let existing = state.store.get_provider(&id).await?;
    let what = format!("provider `{id}`");
    if_match.check(existing.as_ref().map(|p| p.etag.as_str()), &what)?;
    let lost_race = || {
        if if_match.is_present() {
            etag::stale(&what)
        } else {
            concurrent_change(&id)
        }
    };
    let client_secret = match (&body.client_secret, &existing) {
        (Some(secret), _) => state.keyring.encrypt(
            &Aad::provider_client_secret(&id),
            secret.expose_secret().as_bytes(),
        )?,
        (None, Some(old)) => old.client_secret.clone(),
        (None, None) => {
            return Err(ApiError::invalid(
                "client_secret",
                "`client_secret` is required when creating a provider",
            ))
        }
    };
    let record = ProviderRecord {
        id: id.clone(),
        display_name: body.display_name,
        identity_provider: body.identity_provider,
        parameters: body.parameters,
        grant_type: resolved.grant_type,
        client_id: body.client_id,
        client_secret,
        scopes: resolved.scopes,
        token_endpoint_auth_method: resolved.token_endpoint_auth_method,
        token_params: resolved.token_params,
        // Re-sending the effective refresh URL (what GET shows) is the same as leaving it out.
        refresh_url: resolved.refresh_url.filter(|u| *u != resolved.token_url),
        token_url: resolved.token_url,
        authorization_url: resolved.authorization_url,
        issuer: resolved.issuer,
        authorize_params: resolved.authorize_params,
        allowed_redirect_urls: body.allowed_redirect_urls,
        etag: new_etag(),
        created_at: existing.as_ref().map_or(now, |old| old.created_at),
        updated_at: now,
    };
    let status = match existing {
        None => {
            if !state.store.insert_provider(&record).await? {
                return Err(lost_race());
            }
            tracing::info!(provider = %id, grant_type = %record.grant_type, "provider created");
            StatusCode::CREATED
        }
        Some(old) => {
            let invalidate = changes_tokens(&old, &record)
                || body.client_secret.as_ref().is_some_and(|new| {
                    // A secret that cannot be decrypted any more counts as changed: replacing
                    // it is how an operator recovers.
                    let aad = Aad::provider_client_secret(&id);
                    let same = state.keyring.holds(
                        &aad,
                        &old.client_secret,
                        new.expose_secret().as_bytes(),
                    );
                    !same.unwrap_or(false)
                });
            if !state
                .store
                .replace_provider(&record, invalidate, &old.etag)
                .await?
            {
                return Err(lost_race());
            }
            if invalidate && record.grant_type.needs_consent() {
                // The old tokens are gone; say what to do next, as for a new connection.
                for conn in state.store.list_connections(&id).await? {
                    let message = crate::tokens::consent_required_message(&id, &conn.id);
                    let error = crate::store::ConnectionError {
                        status: crate::connections::ConnectionStatus::NotConnected,
                        code: credmgr_common::error::codes::CONSENT_REQUIRED,
                        message: &message,
                    };
                    state
                        .store
                        .record_token_error(&id, &conn.id, conn.token_generation, &error)
                        .await?;
                }
            }
            tracing::info!(provider = %id, tokens_invalidated = invalidate, "provider replaced");
            StatusCode::OK
        }
    };
    Ok((
        status,
        [etag::header(&record.etag)],
        Json(ProviderView::from(&record)),
    )
        .into_response())
}

fn concurrent_change(id: &str) -> ApiError {
    ApiError::Conflict(format!(
        "provider `{id}` was changed by another request at the same time; retry"
    ))
}

/// Whether a replacement makes the stored tokens wrong for the new configuration: they were
/// issued to another client, for other scopes or by another endpoint. Such tokens are
/// dropped so the next request gets one that matches (and a new client secret is tried at
/// once). Re-sending the same configuration, as declarative tooling does, keeps them.
fn changes_tokens(old: &ProviderRecord, new: &ProviderRecord) -> bool {
    old.identity_provider != new.identity_provider
        || old.grant_type != new.grant_type
        || old.client_id != new.client_id
        || old.token_url != new.token_url
        || old.scopes != new.scopes
        || old.token_endpoint_auth_method != new.token_endpoint_auth_method
        || old.token_params != new.token_params
        || old.refresh_url != new.refresh_url
}

async fn delete(
    State(state): State<AppState>,
    path: ProviderPath,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let if_match = IfMatch::from_headers(&headers)?;
    let id = &path.provider_id;
    let current = find(&state, id).await?;
    let what = format!("provider `{id}`");
    if_match.check(Some(&current.etag), &what)?;
    let expected = if_match.is_present().then_some(current.etag.as_str());
    if !state.store.delete_provider(id, expected).await? {
        return Err(if if_match.is_present() {
            etag::stale(&what)
        } else {
            ApiError::NotFound(format!("provider `{id}` does not exist"))
        });
    }
    tracing::info!(provider = %path.provider_id, "provider deleted with its connections");
    Ok(StatusCode::NO_CONTENT)
}

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

fn validate(body: &ProviderBody, r: &Resolved) -> Result<(), ApiError> {
    validate_display_name(&body.display_name)?;
    validate_client_id("client_id", &body.client_id)?;
    if let Some(secret) = &body.client_secret {
        validate_client_secret("client_secret", secret)?;
    }
    let url = validate_endpoint("token_url", &r.token_url)?;
    if url.scheme() == "http" {
        tracing::warn!(
            token_url = %url,
            "token_url uses plain http: client secrets and tokens cross it unencrypted"
        );
    }
    if let Some(refresh) = &r.refresh_url {
        validate_endpoint("refresh_url", refresh)?;
    }
    match (&r.authorization_url, r.grant_type) {
        (Some(a), _) => {
            validate_endpoint("authorization_url", a)?;
        }
        (None, GrantType::AuthorizationCode) => {
            return Err(ApiError::invalid(
                "authorization_url",
                "`authorization_url` is required with the authorization_code grant",
            ))
        }
        (None, GrantType::ClientCredentials) => {}
    }
    if let Some(issuer) = &r.issuer {
        // RFC 8414 §2: an https URL without query or fragment; http is allowed for tests.
        let u = validate_endpoint("issuer", issuer)?;
        if u.query().is_some() {
            return Err(ApiError::invalid(
                "issuer",
                "`issuer` must not have a query (RFC 8414 §2)",
            ));
        }
    }
    for (i, redirect) in body.allowed_redirect_urls.iter().enumerate() {
        validate_endpoint(&format!("allowed_redirect_urls[{i}]"), redirect)?;
    }
    check_params(
        "authorize_params",
        &r.authorize_params,
        RESERVED_AUTHORIZE_PARAMS,
    )?;
    for (i, scope) in r.scopes.iter().enumerate() {
        // RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ).
        let ok = !scope.is_empty()
            && scope
                .chars()
                .all(|c| matches!(c, '\x21' | '\x23'..='\x5b' | '\x5d'..='\x7e'));
        if !ok {
            return Err(ApiError::invalid(
                format!("scopes[{i}]"),
                format!(
                    "`scopes[{i}]` is not a valid scope token (RFC 6749 §3.3): one or more \
                     printable ASCII characters other than space, '\"' and '\\'"
                ),
            ));
        }
    }
    check_params("token_params", &r.token_params, RESERVED_TOKEN_PARAMS)
}

/// Extra request parameters: none of those credmgr sets itself, no control characters.
fn check_params(
    name: &str,
    params: &BTreeMap<String, String>,
    reserved: &[&str],
) -> Result<(), ApiError> {
    for (key, value) in params {
        let field = format!("{name}.{key}");
        if reserved.contains(&key.as_str()) {
            return Err(ApiError::invalid(
                &field,
                format!("`{field}` is set by credmgr itself and cannot be overridden"),
            ));
        }
        if key.is_empty() || key.chars().chain(value.chars()).any(char::is_control) {
            return Err(ApiError::invalid(
                &field,
                format!("`{field}`: names must be non-empty; no control characters"),
            ));
        }
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

    #[test]
    fn wire_names_roundtrip() {
        for g in [GrantType::ClientCredentials, GrantType::AuthorizationCode] {
            assert_eq!(g.as_str().parse::<GrantType>(), Ok(g));
            assert_eq!(serde_json::to_value(g).unwrap(), g.as_str());
        }
        for p in presets::all() {
            let i: IdentityProvider = p.id.parse().unwrap();
            assert_eq!(i.as_str(), p.id);
            assert_eq!(serde_json::to_value(i).unwrap(), i.as_str());
        }
        assert!("nope".parse::<IdentityProvider>().is_err());
        for a in [AuthMethod::ClientSecretBasic, AuthMethod::ClientSecretPost] {
            assert_eq!(a.as_str().parse::<AuthMethod>(), Ok(a));
            assert_eq!(serde_json::to_value(a).unwrap(), a.as_str());
        }
    }
}
