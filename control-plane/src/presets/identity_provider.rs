//! [`IdentityProvider`]: a provider's type, as a handle to its preset in the catalogue.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use super::Preset;

/// The kind of identity provider: a preset of the catalogue, generic `oauth2` and
/// `oauth2-pkce` included. Spelled as the preset's id in the API and the store.
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

/// Only the ids of the catalogue's presets parse.
impl FromStr for IdentityProvider {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        super::get(s).map(IdentityProvider).ok_or(())
    }
}

impl Serialize for IdentityProvider {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// In the OpenAPI document: a string, one of the catalogue's preset ids.
impl utoipa::PartialSchema for IdentityProvider {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .enum_values(Some(super::all().iter().map(|p| p.id.as_str())))
            .description(Some(
                "A provider type: the id of a preset of the catalogue (GET /v1/provider-types)",
            ))
            .into()
    }
}

impl utoipa::ToSchema for IdentityProvider {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_is_an_identity_provider_and_nothing_else_is() {
        for p in super::super::all() {
            let i: IdentityProvider = p.id.parse().unwrap();
            assert_eq!(i.as_str(), p.id);
            assert_eq!(serde_json::to_value(i).unwrap(), i.as_str());
        }
        assert!("nope".parse::<IdentityProvider>().is_err());
    }
}
