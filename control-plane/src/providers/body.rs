//! The body of `PUT /v1/providers/{id}`: what the preset fills in, and the checks that name
//! the offending field.

use std::collections::BTreeMap;

use secrecy::SecretString;
use serde::{Deserialize, Deserializer};

use super::validate::{
    validate_client_id, validate_client_secret, validate_display_name, validate_endpoint,
};
use crate::connection_template::ConnectionTemplate;
use crate::domain::{AuthMethod, GrantType};
use crate::error::ApiError;
use crate::presets::IdentityProvider;

/// A provider type in a request body: the id of a preset, or an error that says where the
/// catalogue is.
fn identity_provider<'de, D: Deserializer<'de>>(d: D) -> Result<IdentityProvider, D::Error> {
    let id = String::deserialize(d)?;
    id.parse().map_err(|()| {
        serde::de::Error::custom(format!(
            "unknown provider type `{id}`; GET /v1/provider-types lists them"
        ))
    })
}

/// Body of `PUT /v1/providers/{id}`. With a preset (`identity_provider` other than the
/// generic ones) most fields may be left out: they come from the preset and its
/// `parameters`; a field that is given wins over the preset.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderBody {
    #[serde(default)]
    pub(super) display_name: Option<String>,
    #[serde(deserialize_with = "identity_provider")]
    pub(super) identity_provider: IdentityProvider,
    /// The preset's parameters (tenant, domain, realm, ...).
    #[serde(default)]
    pub(super) parameters: BTreeMap<String, String>,
    /// Defaults to the preset's first grant.
    #[serde(default)]
    pub(super) grant_type: Option<GrantType>,
    pub(super) client_id: String,
    /// Write-only. Required on create; omitted on replace keeps the stored one.
    #[serde(default)]
    #[schema(value_type = Option<String>, format = Password, write_only)]
    pub(super) client_secret: Option<SecretString>,
    #[serde(default)]
    pub(super) token_url: Option<String>,
    #[serde(default)]
    pub(super) scopes: Option<Vec<String>>,
    #[serde(default)]
    pub(super) token_endpoint_auth_method: Option<AuthMethod>,
    /// Extra parameters for the token endpoint, such as `audience` or `resource`, added to
    /// the preset's. Not for secrets: they are stored and shown in plain text.
    #[serde(default)]
    pub(super) token_params: BTreeMap<String, String>,
    /// The authorization endpoint; required for the authorization-code grant.
    #[serde(default)]
    pub(super) authorization_url: Option<String>,
    /// Where refresh tokens are redeemed; defaults to `token_url`.
    #[serde(default)]
    pub(super) refresh_url: Option<String>,
    /// The provider's issuer identifier, compared with the `iss` of authorization responses
    /// (RFC 9207). Without it, `iss` must have the authorization URL's origin.
    #[serde(default)]
    pub(super) issuer: Option<String>,
    /// Extra parameters of the authorization request, such as `access_type=offline`, added
    /// to the preset's.
    #[serde(default)]
    pub(super) authorize_params: BTreeMap<String, String>,
    /// Where a login link may send the user after consent (exact match).
    #[serde(default)]
    pub(super) allowed_redirect_urls: Vec<String>,
    /// Makes the provider self-service (authorization code only): the runtime API creates a
    /// verified caller's connection from this template on first need.
    #[serde(default)]
    pub(super) self_service: Option<ConnectionTemplate>,
}

/// A provider's configuration once its preset has filled in what the body left out.
#[derive(Debug)]
pub(super) struct Resolved {
    pub(super) grant_type: GrantType,
    pub(super) token_url: String,
    pub(super) scopes: Vec<String>,
    pub(super) token_endpoint_auth_method: AuthMethod,
    pub(super) token_params: BTreeMap<String, String>,
    pub(super) authorization_url: Option<String>,
    pub(super) refresh_url: Option<String>,
    pub(super) issuer: Option<String>,
    pub(super) authorize_params: BTreeMap<String, String>,
}

/// Fills in from the preset what `body` leaves out; refuses missing or invalid parameters
/// and grants the provider does not support, naming the field.
pub(super) fn resolve(body: &ProviderBody) -> Result<Resolved, ApiError> {
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

pub(super) fn validate(body: &ProviderBody, r: &Resolved) -> Result<(), ApiError> {
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
    if let Some(template) = &body.self_service {
        if !r.grant_type.needs_consent() {
            return Err(ApiError::invalid(
                "self_service",
                format!(
                    "`self_service` needs the authorization_code grant: a self-service \
                     connection is connected by its user's consent, not with the {} grant",
                    r.grant_type
                ),
            ));
        }
        template
            .validate(&body.allowed_redirect_urls)
            .map_err(|e| ApiError::invalid(e.field, e.message))?;
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
