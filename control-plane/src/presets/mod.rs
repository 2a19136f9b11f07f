//! The provider catalogue: one preset per identity provider, as data.
//!
//! Each preset is a JSON file in `control-plane/presets/`, compiled in with `include_str!`
//! and cited to the provider's documentation. A preset declares its endpoints (templates over
//! its parameters, such as `{tenant}`), default scopes, the grants it supports, how the client
//! authenticates, and its quirks: how the provider departs from RFC 6749, which the token
//! client and the refresh logic then handle ([`Quirks`]). No provider has code of its own.

mod identity_provider;
mod quirks;
mod template;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

use crate::domain::{AuthMethod, GrantType};

pub use identity_provider::IdentityProvider;
pub use quirks::Quirks;
pub use template::{ParamFormat, Parameter};

/// The preset files, by file name, each compiled in. Adding a provider is adding a file to
/// `control-plane/presets/` and its name here.
macro_rules! preset_files {
    ($($file:literal),+ $(,)?) => {
        &[$(($file, include_str!(concat!("../../presets/", $file)))),+]
    };
}

const FILES: &[(&str, &str)] = preset_files![
    "oauth2.json",
    "oauth2-pkce.json",
    "entra-id.json",
    "google.json",
    "github.json",
    "github-app.json",
    "salesforce.json",
    "slack.json",
    "slack-user.json",
    "dropbox.json",
    "box.json",
    "zoom.json",
    "atlassian.json",
    "linkedin.json",
    "spotify.json",
    "okta.json",
    "auth0.json",
    "keycloak.json",
];

/// A provider type: what credmgr knows about one identity provider.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Preset {
    /// The `identity_provider` value that selects it.
    pub id: String,
    pub display_name: String,
    pub description: String,
    /// The provider's documentation pages the endpoints and quirks are taken from.
    pub documentation: Vec<String>,
    /// What a provider of this type must be told (tenant, domain, realm, ...).
    #[serde(default)]
    pub parameters: Vec<Parameter>,
    /// The grants this provider supports; the first is the default.
    pub grant_types: Vec<GrantType>,
    /// Endpoint templates; `None` in the generic presets, where the operator gives them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Scopes used when the provider is created without `scopes`, by grant.
    #[serde(default)]
    pub default_scopes: BTreeMap<GrantType, Vec<String>>,
    #[serde(default)]
    pub token_endpoint_auth_method: AuthMethod,
    /// Authorization-request parameters every provider of this type needs (for instance
    /// those without which no refresh token is issued).
    #[serde(default)]
    pub authorize_params: BTreeMap<String, String>,
    #[serde(default)]
    pub token_params: BTreeMap<String, String>,
    #[serde(default)]
    pub quirks: Quirks,
}

/// A preset's endpoints with its parameters filled in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Endpoints {
    pub authorization_url: Option<String>,
    pub token_url: Option<String>,
    pub refresh_url: Option<String>,
    pub issuer: Option<String>,
}

/// Why a preset's parameters were refused: the parameter (`parameters.<name>`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamError {
    pub field: String,
    pub message: String,
}

impl Preset {
    /// The endpoints for `params`, which must name every required parameter and no unknown
    /// one; optional parameters left out take their default.
    pub fn endpoints(&self, params: &BTreeMap<String, String>) -> Result<Endpoints, ParamError> {
        let values = self.parameter_values(params)?;
        let fill = |t: &Option<String>| t.as_deref().map(|t| template::render(t, &values));
        Ok(Endpoints {
            authorization_url: fill(&self.authorization_url),
            token_url: fill(&self.token_url),
            refresh_url: fill(&self.refresh_url),
            issuer: fill(&self.issuer),
        })
    }

    /// Every parameter's value: given and checked, or its default.
    fn parameter_values(
        &self,
        params: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, ParamError> {
        if let Some(unknown) = params
            .keys()
            .find(|k| !self.parameters.iter().any(|p| &p.name == *k))
        {
            let known: Vec<_> = self.parameters.iter().map(|p| p.name.as_str()).collect();
            return Err(ParamError {
                field: format!("parameters.{unknown}"),
                message: format!(
                    "provider type `{}` has no parameter `{unknown}`; it takes: {}",
                    self.id,
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                ),
            });
        }
        let mut values = BTreeMap::new();
        for p in &self.parameters {
            let value = match (params.get(&p.name), &p.default) {
                (Some(v), _) => p.check(&self.id, v)?,
                (None, Some(default)) => default.clone(),
                (None, None) => {
                    return Err(ParamError {
                        field: format!("parameters.{}", p.name),
                        message: format!(
                            "provider type `{}` needs the parameter `{}`: {} (for example `{}`)",
                            self.id, p.name, p.description, p.example
                        ),
                    })
                }
            };
            values.insert(p.name.clone(), value);
        }
        Ok(values)
    }

    /// The parameters' example values, as a client would fill in the form.
    pub fn example_parameters(&self) -> BTreeMap<String, String> {
        self.parameters
            .iter()
            .map(|p| (p.name.clone(), p.example.clone()))
            .collect()
    }

    /// Default scopes for `grant`.
    pub fn scopes_for(&self, grant: GrantType) -> Vec<String> {
        self.default_scopes.get(&grant).cloned().unwrap_or_default()
    }
}

static CATALOGUE: LazyLock<Result<Vec<Preset>, String>> = LazyLock::new(load);

fn load() -> Result<Vec<Preset>, String> {
    let mut presets: Vec<Preset> = Vec::with_capacity(FILES.len());
    for (file, text) in FILES {
        let preset: Preset =
            serde_json::from_str(text).map_err(|e| format!("control-plane/presets/{file}: {e}"))?;
        if format!("{}.json", preset.id) != *file {
            return Err(format!("control-plane/presets/{file}: id `{}`", preset.id));
        }
        if preset.grant_types.is_empty() {
            return Err(format!("control-plane/presets/{file}: no grant_types"));
        }
        presets.push(preset);
    }
    Ok(presets)
}

/// Checks at start-up that every preset file parses (a unit test does too).
pub fn check() -> Result<(), String> {
    CATALOGUE.as_ref().map(|_| ()).map_err(Clone::clone)
}

/// Every preset, in catalogue order.
pub fn all() -> &'static [Preset] {
    CATALOGUE.as_deref().unwrap_or(&[])
}

/// The preset with this id.
pub fn get(id: &str) -> Option<&'static Preset> {
    all().iter().find(|p| p.id == id)
}
