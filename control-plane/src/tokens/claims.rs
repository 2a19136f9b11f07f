//! Which fields of a token response become a connection's claims: stored, and handed to
//! gateways in plain text, so an allowlist (standard fields and what a preset declares),
//! never a denylist of secrets.

use serde_json::{Map, Value};

use crate::presets::Quirks;

/// Fields of a token response that are secrets and never leave the store (RFC 6749 §5.1;
/// OpenID Connect Core §3.1.3.3 for `id_token`).
const SECRET_FIELDS: &[&str] = &["access_token", "refresh_token", "id_token"];

/// The fields of a token response kept as claims (stored, and handed to gateways in plain
/// text): an allowlist, because providers put secrets under names nobody can list in
/// advance (Slack's `incoming_webhook.url` and legacy `bot.bot_access_token`, OpenID Connect
/// native SSO's `device_secret`). Top-level scalars only: RFC 6749 §5.1's `token_type`,
/// `expires_in` and `scope`, RFC 8693's `issued_token_type`, the refresh-token lifetimes
/// (`refresh_token_expires_in`: GitHub, LinkedIn; `refresh_expires_in`: Keycloak), Entra
/// ID's `ext_expires_in` and Salesforce's `instance_url`. Anything else a preset wants
/// passed on it declares in its `claims` quirk, by JSON pointer.
const STANDARD_CLAIMS: &[&str] = &[
    "token_type",
    "expires_in",
    "scope",
    "issued_token_type",
    "refresh_token_expires_in",
    "refresh_expires_in",
    "ext_expires_in",
    "instance_url",
];

/// The claims kept from a token response: the standard fields of the whole answer, then of
/// the object holding the token when the preset puts it in a nested one (its own scope, type
/// and lifetime win), then what the preset's `claims` quirk lifts out by JSON pointer.
pub(super) fn kept(
    whole: &Value,
    holder: &Map<String, Value>,
    quirks: &Quirks,
) -> Map<String, Value> {
    let pick = |from: &Map<String, Value>, claims: &mut Map<String, Value>| {
        for name in STANDARD_CLAIMS {
            if let Some(v) = from.get(*name).filter(|v| scalar(v)) {
                claims.insert((*name).to_owned(), v.clone());
            }
        }
    };
    let mut claims = Map::new();
    if let Some(top) = whole.as_object() {
        pick(top, &mut claims);
    }
    if quirks.token_pointer.is_some() {
        pick(holder, &mut claims);
    }
    for (name, pointer) in &quirks.claims {
        let secret = pointer
            .rsplit('/')
            .next()
            .is_some_and(|last| SECRET_FIELDS.contains(&last));
        if let Some(v) = whole.pointer(pointer).filter(|v| !secret && scalar(v)) {
            claims.insert(name.clone(), v.clone());
        }
    }
    claims
}

/// Claims as a gateway may get them, for tokens stored before claims were an allowlist: the
/// standard fields and the names some preset declares, scalars only. Tokens stored since
/// hold nothing else; older ones (a Slack token lives a year) lose what the allowlist
/// would not have kept, such as Slack's `incoming_webhook`.
pub(crate) fn served_claims(stored: &Map<String, Value>) -> Map<String, Value> {
    let declared = |name: &str| {
        crate::presets::all()
            .iter()
            .any(|p| p.quirks.claims.contains_key(name))
    };
    stored
        .iter()
        .filter(|(k, v)| scalar(v) && (STANDARD_CLAIMS.contains(&k.as_str()) || declared(k)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// A claim's value is passed on only if it is a scalar: an object or an array may hold
/// anything, secrets included.
fn scalar(value: &Value) -> bool {
    !value.is_object() && !value.is_array()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_stored_before_the_allowlist_are_filtered_when_served() {
        let stored: Map<String, Value> = serde_json::from_str(
            r#"{"scope":"commands","team_id":"T1","device_secret":"ds-1",
                "incoming_webhook":{"url":"https://hooks.slack.com/services/SECRET"}}"#,
        )
        .unwrap();
        let served = served_claims(&stored);
        let keys: Vec<_> = served.keys().map(String::as_str).collect();
        assert_eq!(keys, ["scope", "team_id"]);
    }
}
