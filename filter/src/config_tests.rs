//! The configuration's parsing and compile step: what is accepted, and how a mistake is named.

use super::*;
use serde_json::json;

fn base() -> serde_json::Value {
    json!({
        "control_plane": {"cluster": "cp", "gateway_key": "k"},
        "default_policy": "p",
        "policies": {"p": [
            {"get-authorization-context": {"provider-id": "gh", "authorization-id": "alice",
                "context-variable-name": "auth", "identity-type": "managed"}},
            {"set-header": {"name": "Authorization", "value": "Bearer {{auth.AccessToken}}"}}
        ]}
    })
}

fn err(v: serde_json::Value) -> String {
    FilterConfig::parse(v.to_string().as_bytes())
        .unwrap_err()
        .to_string()
}

#[test]
fn parses_the_documented_example() {
    let c = FilterConfig::parse(base().to_string().as_bytes()).unwrap();
    assert_eq!(c.control_plane.authority, "cp");
    assert_eq!(c.control_plane.timeout_ms, 5000);
    let p = c.default_policy.unwrap();
    assert_eq!(p.steps.len(), 2);
    match &p.steps[1] {
        Step::SetHeader(s) => {
            assert_eq!(s.name, "authorization");
            assert_eq!(s.exists_action, ExistsAction::Override);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_missing_required_field_is_named_with_its_place() {
    let mut v = base();
    v["policies"]["p"][0]["get-authorization-context"]
        .as_object_mut()
        .unwrap()
        .remove("provider-id");
    let e = err(v);
    assert!(e.contains("policies.p[0].get-authorization-context"), "{e}");
    assert!(e.contains("provider-id"), "{e}");
}

#[test]
fn unknown_steps_fields_and_actions_are_refused() {
    let mut v = base();
    v["policies"]["p"][1] = json!({"set-cookie": {}});
    assert!(err(v).contains("set-cookie"));

    let mut v = base();
    v["policies"]["p"][1]["set-header"]["colour"] = json!("red");
    let e = err(v);
    assert!(
        e.contains("colour") && e.contains("policies.p[1].set-header"),
        "{e}"
    );

    let mut v = base();
    v["policies"]["p"][1]["set-header"]["exists-action"] = json!("replace");
    let e = err(v);
    assert!(e.contains("exists-action") && e.contains("replace"), "{e}");

    let mut v = base();
    v["control_plane"]["gateway_key"] = json!("");
    let e = err(v);
    assert!(e.contains("control_plane.gateway_key"), "{e}");
}

#[test]
fn the_gateway_key_is_optional_for_mtls_gateways() {
    let config = FilterConfig::parse(base().to_string().as_bytes()).unwrap();
    assert_eq!(config.control_plane.gateway_key.as_deref(), Some("k"));
    let mut v = base();
    v["control_plane"]
        .as_object_mut()
        .unwrap()
        .remove("gateway_key");
    let config = FilterConfig::parse(v.to_string().as_bytes()).unwrap();
    assert_eq!(config.control_plane.gateway_key, None);
}

#[test]
fn jwt_identities_need_an_identity_template_of_request_values() {
    let mut v = base();
    v["policies"]["p"][0]["get-authorization-context"]["identity-type"] = json!("jwt");
    let e = err(v.clone());
    assert!(
        e.contains("get-authorization-context.identity") && e.contains("missing"),
        "{e}"
    );

    v["policies"]["p"][0]["get-authorization-context"]["identity"] =
        json!("{{request.headers.authorization}}");
    let c = FilterConfig::parse(v.to_string().as_bytes()).unwrap();
    assert!(c.uses_jwt);

    v["policies"]["p"][0]["get-authorization-context"]["identity"] = json!("{{auth.AccessToken}}");
    assert!(err(v).contains("request values"));

    let mut v = base();
    v["policies"]["p"][0]["get-authorization-context"]["identity"] =
        json!("{{request.headers.authorization}}");
    assert!(err(v).contains("only used with identity-type"));
    assert!(
        !FilterConfig::parse(base().to_string().as_bytes())
            .unwrap()
            .uses_jwt
    );
}

#[test]
fn templates_are_checked_against_earlier_steps() {
    let mut v = base();
    v["policies"]["p"][1]["set-header"]["value"] = json!("Bearer {{other.AccessToken}}");
    let e = err(v);
    assert!(
        e.contains("\"other\"") && e.contains("set-header.value"),
        "{e}"
    );

    let mut v = base();
    v["policies"]["p"][1]["set-header"]["value"] = json!("Bearer {{auth.AccessToken");
    assert!(err(v).contains("set-header.value"));
}

#[test]
fn default_policy_must_exist_and_ids_must_be_valid() {
    let mut v = base();
    v["default_policy"] = json!("nope");
    assert!(err(v).contains("default_policy"));

    let mut v = base();
    v["policies"]["p"][0]["get-authorization-context"]["provider-id"] = json!("a/b");
    assert!(err(v).contains("provider-id"));
}

#[test]
fn delete_takes_no_value_and_others_need_one() {
    let mut v = base();
    v["policies"]["p"][1] = json!({"set-header": {"name": "x-a", "exists-action": "delete"}});
    assert!(FilterConfig::parse(v.to_string().as_bytes()).is_ok());

    let mut v = base();
    v["policies"]["p"][1] = json!({"set-header": {"name": "x-a"}});
    assert!(err(v).contains("value"));
}

#[test]
fn malformed_json_is_reported() {
    let e = FilterConfig::parse(b"{not json").unwrap_err().to_string();
    assert!(e.contains("invalid credmgr filter configuration"), "{e}");
}

#[test]
fn nothing_may_follow_the_configuration_object() {
    // Found by fuzz/fuzz_targets/filter_config.rs: trailing text was silently ignored.
    let text = format!("{}context-variable", base());
    let e = FilterConfig::parse(text.as_bytes())
        .unwrap_err()
        .to_string();
    assert!(e.contains("after the configuration object"), "{e}");
    assert!(FilterConfig::parse(format!("{}\n  ", base()).as_bytes()).is_ok());
}
