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
fn id_templates_are_checked_where_they_are_written() {
    let step = |ids: serde_json::Value, identity_type: &str| {
        let mut c = base();
        let g = &mut c["policies"]["p"][0]["get-authorization-context"];
        for (k, v) in ids.as_object().unwrap() {
            g[k] = v.clone();
        }
        g["identity-type"] = json!(identity_type);
        if identity_type == "jwt" {
            g["identity"] = json!("{{request.headers.authorization}}");
        }
        c
    };
    // Verified claims need a jwt step.
    let e = err(step(
        json!({"authorization-id": "u-{{identity.Claims.oid}}"}),
        "managed",
    ));
    assert!(
        e.contains("policies.p[0].get-authorization-context.authorization-id"),
        "{e}"
    );
    assert!(e.contains("identity-type \"jwt\""), "{e}");
    // Context variables are not ids.
    let e = err(step(json!({"provider-id": "{{auth.AccessToken}}"}), "jwt"));
    assert!(e.contains("get-authorization-context.provider-id"), "{e}");
    // Literal ids are still checked at load.
    let e = err(step(json!({"authorization-id": "a/b"}), "managed"));
    assert!(e.contains("authorization-id") && e.contains("'/'"), "{e}");
    // The claims of a verified caller, and headers, are fine in a jwt step; the claims used
    // are the only ones kept.
    let c = FilterConfig::parse(
        step(
            json!({"provider-id": "{{request.headers.x-p}}",
                   "authorization-id": "u-{{identity.Claims.oid}}-{{identity.Claims.tid}}"}),
            "jwt",
        )
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    assert_eq!(c.identity_claims, ["oid", "tid"]);
    assert_eq!(c.max_entries, crate::config_raw::DEFAULT_MAX_ENTRIES);
    // Nowhere else.
    let mut c = base();
    c["policies"]["p"][1]["set-header"]["value"] = json!("{{identity.Claims.oid}}");
    let e = err(c);
    assert!(e.contains("policies.p[1].set-header.value"), "{e}");
    let mut c = step(json!({}), "jwt");
    c["policies"]["p"][0]["get-authorization-context"]["identity"] =
        json!("{{identity.Claims.oid}}");
    assert!(err(c).contains("get-authorization-context.identity"));
    let mut c = base();
    c["policies"]["p"][0]["get-authorization-context"]["context-variable-name"] = json!("identity");
    assert!(err(c).contains("context-variable-name"));
}

#[test]
fn the_cache_bound_is_checked() {
    for bad in [0u64, 1 << 21] {
        let mut c = base();
        c["cache"] = json!({"max_entries": bad});
        assert!(err(c).contains("at cache.max_entries"), "{bad}");
    }
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
