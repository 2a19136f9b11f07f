//! The connection template of a self-service provider: how the connection of a verified caller
//! is named, what it is called, and where its user lands after consent.
//!
//! Patterns may use one placeholder, `{{object_id}}`: the caller's object id, read from its
//! verified JWT with its issuer's claim names (`JwtIdentity::object_id`, `oid` then `sub` by
//! default). The connection id pattern must use it, so that every user gets a connection of
//! their own, and the rendered id must be a valid id (`credmgr_common::ids`): it is rendered
//! literally, as the filter renders its `authorization-id` templates, so both arrive at the
//! same id. Scopes are the provider's: connections carry none of their own.
//!
//! This module sits on the ground floor: the store keeps templates, the provider API checks
//! them and the self-service service renders them.

use credmgr_common::access::JwtIdentity;
use credmgr_common::ids::{validate_id, MAX_ID_LEN};
use serde::{Deserialize, Serialize};

/// The one placeholder patterns may use.
pub const OBJECT_ID: &str = "{{object_id}}";

/// Longest display name a pattern may render (as a connection's `display_name`).
const MAX_DISPLAY_NAME: usize = 200;

/// A self-service provider's template for the connections it creates on first need.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectionTemplate {
    /// The id of a caller's connection, e.g. `gh-{{object_id}}`.
    pub connection_id: String,
    /// The display name of a caller's connection, e.g. `GitHub of {{object_id}}`; without
    /// it the connection has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Where the user's browser goes after consent; one of the provider's
    /// `allowed_redirect_urls`.
    pub post_login_redirect_url: String,
}

/// A template field that is wrong: the field's name (under `self_service.`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    pub field: String,
    pub message: String,
}

fn invalid(field: &str, message: String) -> TemplateError {
    TemplateError {
        field: format!("self_service.{field}"),
        message,
    }
}

impl ConnectionTemplate {
    /// Checks the patterns, and that the redirect is one of `allowed_redirect_urls`.
    pub fn validate(&self, allowed_redirect_urls: &[String]) -> Result<(), TemplateError> {
        let id = &self.connection_id;
        if id.matches(OBJECT_ID).count() != 1 {
            return Err(invalid(
                "connection_id",
                format!(
                    "`self_service.connection_id` must contain {OBJECT_ID} exactly once, so \
                     that each user gets a connection of their own (e.g. `gh-{OBJECT_ID}`)"
                ),
            ));
        }
        unknown_placeholder("connection_id", id)?;
        // The literal parts must be valid in an id: render with a valid one-character id.
        validate_id(&id.replace(OBJECT_ID, "x")).map_err(|why| {
            invalid(
                "connection_id",
                format!("`self_service.connection_id` without {OBJECT_ID}: {why}"),
            )
        })?;
        if let Some(name) = &self.display_name {
            unknown_placeholder("display_name", name)?;
            if name.chars().count() > MAX_DISPLAY_NAME || name.chars().any(char::is_control) {
                return Err(invalid(
                    "display_name",
                    format!(
                        "`self_service.display_name` must be at most {MAX_DISPLAY_NAME} \
                         characters, without control characters"
                    ),
                ));
            }
        }
        if !allowed_redirect_urls.contains(&self.post_login_redirect_url) {
            return Err(invalid(
                "post_login_redirect_url",
                "`self_service.post_login_redirect_url` must be one of the provider's \
                 `allowed_redirect_urls` (exact match)"
                    .into(),
            ));
        }
        Ok(())
    }

    /// The id of `caller`'s connection, or why the caller has none.
    pub fn connection_id_for(&self, caller: &JwtIdentity) -> Result<String, String> {
        let oid = caller.object_id.as_deref().ok_or_else(|| {
            "the caller's JWT names no object id (its issuer's `claims.object` names none of \
             its claims)"
                .to_owned()
        })?;
        let id = self.connection_id.replace(OBJECT_ID, oid);
        validate_id(&id).map_err(|why| {
            format!(
                "the caller's object id does not make a valid connection id with the pattern \
                 `{}`: the id {why} (at most {MAX_ID_LEN} characters)",
                self.connection_id
            )
        })?;
        Ok(id)
    }

    /// The display name of `caller`'s connection.
    pub fn display_name_for(&self, caller: &JwtIdentity) -> Option<String> {
        let oid = caller.object_id.as_deref().unwrap_or_default();
        self.display_name.as_ref().map(|n| {
            n.replace(OBJECT_ID, oid)
                .chars()
                .take(MAX_DISPLAY_NAME)
                .collect()
        })
    }
}

/// Refuses `{{...}}` other than [`OBJECT_ID`].
fn unknown_placeholder(field: &str, pattern: &str) -> Result<(), TemplateError> {
    let rest = pattern.replace(OBJECT_ID, "");
    if rest.contains("{{") || rest.contains("}}") {
        return Err(invalid(
            field,
            format!(
                "`self_service.{field}` may use only the placeholder {OBJECT_ID} (the verified \
                 caller's object id)"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(id: &str) -> ConnectionTemplate {
        ConnectionTemplate {
            connection_id: id.into(),
            display_name: Some(format!("GitHub of {OBJECT_ID}")),
            post_login_redirect_url: "https://app.example/done".into(),
        }
    }

    fn caller(oid: Option<&str>) -> JwtIdentity {
        JwtIdentity {
            issuer: "https://login.example".into(),
            object_id: oid.map(str::to_owned),
            ..Default::default()
        }
    }

    #[test]
    fn patterns_are_checked_naming_the_field() {
        let allowed = vec!["https://app.example/done".to_owned()];
        assert_eq!(template("gh-{{object_id}}").validate(&allowed), Ok(()));
        for (id, field) in [
            ("gh-fixed", "self_service.connection_id"),
            ("{{object_id}}-{{object_id}}", "self_service.connection_id"),
            ("gh/{{object_id}}", "self_service.connection_id"),
            ("{{tenant_id}}-{{object_id}}", "self_service.connection_id"),
        ] {
            let e = template(id).validate(&allowed).unwrap_err();
            assert_eq!(e.field, field, "{id}: {}", e.message);
        }
        let mut t = template("gh-{{object_id}}");
        t.display_name = Some("{{name}}".into());
        assert_eq!(
            t.validate(&allowed).unwrap_err().field,
            "self_service.display_name"
        );
        let e = template("gh-{{object_id}}").validate(&[]).unwrap_err();
        assert_eq!(e.field, "self_service.post_login_redirect_url");
    }

    #[test]
    fn a_callers_connection_is_named_by_its_object_id() {
        let t = template("gh-{{object_id}}");
        assert_eq!(t.connection_id_for(&caller(Some("u-1"))).unwrap(), "gh-u-1");
        assert_eq!(
            t.display_name_for(&caller(Some("u-1"))).as_deref(),
            Some("GitHub of u-1")
        );
        assert!(t
            .connection_id_for(&caller(None))
            .unwrap_err()
            .contains("object id"));
        let e = t.connection_id_for(&caller(Some("auth0|42"))).unwrap_err();
        assert!(e.contains("'|'"), "{e}");
        assert!(t.connection_id_for(&caller(Some(&"a".repeat(70)))).is_err());
    }
}
