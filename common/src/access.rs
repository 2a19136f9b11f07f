//! Identities and access policies: who may use a connection.
//!
//! A connection's access policies each name one identity: a gateway (the `managed` identity
//! of an Envoy), an application (a service principal: issuer and client id), a user (issuer
//! and object id) or a group (issuer and group id). A caller may use the connection when any
//! policy names it; with no policy, nobody may. The control plane and the filter both decide
//! with [`allowed`], so they cannot disagree.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Who asks for a connection's token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A gateway acting as itself (`identity-type: managed`), by its registered name.
    Gateway { name: String },
    /// A caller proven by a verified JWT (`identity-type: jwt`).
    Jwt(JwtIdentity),
}

/// What a verified JWT says about its subject, read with the issuer's [`ClaimNames`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwtIdentity {
    /// The token's `iss`, exactly as in the token.
    pub issuer: String,
    /// The user or service principal (`oid`, else `sub`).
    pub object_id: Option<String>,
    /// The tenant (`tid`), where the issuer has tenants.
    pub tenant_id: Option<String>,
    /// The application the token was issued to (`azp`, `appid` or `client_id`).
    pub application_id: Option<String>,
    /// Group ids (`groups`).
    #[serde(default)]
    pub groups: Vec<String>,
}

/// The identity one access policy names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum PolicyIdentity {
    /// A gateway, by its registered name.
    Gateway { name: String },
    /// An application (service principal) of an issuer, by client id.
    Application { issuer: String, client_id: String },
    /// A user (or any principal) of an issuer, by object id.
    User { issuer: String, object_id: String },
    /// Members of a group of an issuer, by group id (from the groups claim).
    Group { issuer: String, group_id: String },
}

impl PolicyIdentity {
    /// Does this policy name `caller`? Issuers compare exactly, as OpenID Connect requires
    /// (Core 1.0 §3.1.3.7): no trailing-slash or case folding.
    pub fn allows(&self, caller: &Caller) -> bool {
        match (self, caller) {
            (PolicyIdentity::Gateway { name }, Caller::Gateway { name: caller }) => name == caller,
            (PolicyIdentity::Application { issuer, client_id }, Caller::Jwt(id)) => {
                *issuer == id.issuer && id.application_id.as_deref() == Some(client_id.as_str())
            }
            (PolicyIdentity::User { issuer, object_id }, Caller::Jwt(id)) => {
                *issuer == id.issuer && id.object_id.as_deref() == Some(object_id.as_str())
            }
            (PolicyIdentity::Group { issuer, group_id }, Caller::Jwt(id)) => {
                *issuer == id.issuer && id.groups.iter().any(|g| g == group_id)
            }
            _ => false,
        }
    }
}

/// May `caller` use a connection with these policies? Nobody may when there are none.
pub fn allowed<'a>(
    policies: impl IntoIterator<Item = &'a PolicyIdentity>,
    caller: &Caller,
) -> bool {
    policies.into_iter().any(|p| p.allows(caller))
}

/// Which claims of an issuer's tokens name the object, tenant, application and groups.
/// The defaults fit Microsoft Entra ID and plain OpenID Connect providers alike.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ClaimNames {
    /// Tried in order; the first present names the object.
    #[serde(default = "default_object")]
    pub object: Vec<String>,
    #[serde(default = "default_tenant")]
    pub tenant: Option<String>,
    /// Tried in order; the first present names the application.
    #[serde(default = "default_application")]
    pub application: Vec<String>,
    #[serde(default = "default_groups")]
    pub groups: String,
}

fn default_object() -> Vec<String> {
    vec!["oid".into(), "sub".into()]
}

fn default_tenant() -> Option<String> {
    Some("tid".into())
}

fn default_application() -> Vec<String> {
    vec!["azp".into(), "appid".into(), "client_id".into()]
}

fn default_groups() -> String {
    "groups".into()
}

impl Default for ClaimNames {
    fn default() -> Self {
        ClaimNames {
            object: default_object(),
            tenant: default_tenant(),
            application: default_application(),
            groups: default_groups(),
        }
    }
}

impl ClaimNames {
    /// The identity that the (already verified) claims of a token from `issuer` describe.
    pub fn identity(&self, issuer: &str, claims: &Map<String, Value>) -> JwtIdentity {
        let first = |names: &[String]| {
            names
                .iter()
                .find_map(|n| claims.get(n).and_then(Value::as_str))
                .map(str::to_owned)
        };
        let groups = match claims.get(&self.groups) {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            // Some providers send one space-separated string.
            Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
            _ => Vec::new(),
        };
        JwtIdentity {
            issuer: issuer.to_owned(),
            object_id: first(&self.object),
            tenant_id: self
                .tenant
                .as_ref()
                .and_then(|t| claims.get(t))
                .and_then(Value::as_str)
                .map(str::to_owned),
            application_id: first(&self.application),
            groups,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ISS: &str = "https://login.example/tenant-1/v2.0";

    fn jwt(claims: Value) -> Caller {
        let Value::Object(map) = claims else { panic!() };
        Caller::Jwt(ClaimNames::default().identity(ISS, &map))
    }

    #[test]
    fn each_kind_of_policy_names_only_its_identity() {
        let user =
            jwt(json!({"oid": "u-1", "sub": "pairwise", "azp": "app-1", "groups": ["g-1", "g-2"]}));
        let policies = [
            PolicyIdentity::User {
                issuer: ISS.into(),
                object_id: "u-1".into(),
            },
            PolicyIdentity::Application {
                issuer: ISS.into(),
                client_id: "app-1".into(),
            },
            PolicyIdentity::Group {
                issuer: ISS.into(),
                group_id: "g-2".into(),
            },
        ];
        for p in &policies {
            assert!(p.allows(&user), "{p:?}");
        }
        let gateway = Caller::Gateway {
            name: "edge".into(),
        };
        assert!(policies.iter().all(|p| !p.allows(&gateway)));
        assert!(PolicyIdentity::Gateway {
            name: "edge".into()
        }
        .allows(&gateway));
        assert!(!PolicyIdentity::Gateway {
            name: "edge".into()
        }
        .allows(&user));
    }

    #[test]
    fn issuers_must_match_exactly() {
        let user = jwt(json!({"oid": "u-1"}));
        for other in [
            format!("{ISS}/"),
            ISS.to_uppercase(),
            "https://evil.example".into(),
        ] {
            let p = PolicyIdentity::User {
                issuer: other.clone(),
                object_id: "u-1".into(),
            };
            assert!(!p.allows(&user), "{other}");
        }
    }

    #[test]
    fn no_policy_allows_nobody() {
        assert!(!allowed(
            &[],
            &Caller::Gateway {
                name: "edge".into()
            }
        ));
        assert!(!allowed(&[], &jwt(json!({"oid": "u-1"}))));
    }

    #[test]
    fn claims_are_read_in_the_configured_order() {
        let Caller::Jwt(id) =
            jwt(json!({"sub": "s", "client_id": "c", "tid": "t", "groups": "a b"}))
        else {
            panic!()
        };
        assert_eq!(id.object_id.as_deref(), Some("s"));
        assert_eq!(id.application_id.as_deref(), Some("c"));
        assert_eq!(id.tenant_id.as_deref(), Some("t"));
        assert_eq!(id.groups, vec!["a", "b"]);

        let names: ClaimNames =
            serde_json::from_value(json!({"object": ["email"], "groups": "roles"})).unwrap();
        let Value::Object(claims) = json!({"email": "e@x", "sub": "s", "roles": ["admin"]}) else {
            panic!()
        };
        let id = names.identity(ISS, &claims);
        assert_eq!(id.object_id.as_deref(), Some("e@x"));
        assert_eq!(id.groups, vec!["admin"]);
        assert!(serde_json::from_value::<ClaimNames>(json!({"objekt": []})).is_err());
    }

    #[test]
    fn policies_have_a_tagged_json_shape() {
        let p: PolicyIdentity =
            serde_json::from_value(json!({"kind": "group", "issuer": ISS, "group_id": "g"}))
                .unwrap();
        assert_eq!(
            p,
            PolicyIdentity::Group {
                issuer: ISS.into(),
                group_id: "g".into()
            }
        );
        assert!(
            serde_json::from_value::<PolicyIdentity>(json!({"kind": "user", "issuer": ISS}))
                .is_err()
        );
        assert!(
            serde_json::from_value::<PolicyIdentity>(json!({"kind": "robot", "name": "r"}))
                .is_err()
        );
    }
}
