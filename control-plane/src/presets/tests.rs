//! Each preset, filled with its example parameters, against the provider's documentation
//! (the pages cited in its file): the endpoints, scopes, grants, authentication and the
//! parameters without which a provider issues no refresh token.

use super::*;

struct Expected {
    authorization_url: Option<&'static str>,
    token_url: Option<&'static str>,
    issuer: Option<&'static str>,
    grants: &'static [GrantType],
    auth: AuthMethod,
    /// Default scopes of the first grant.
    scopes: &'static [&'static str],
    authorize_params: &'static [(&'static str, &'static str)],
}

const AC: GrantType = GrantType::AuthorizationCode;
const CC: GrantType = GrantType::ClientCredentials;
const POST: AuthMethod = AuthMethod::ClientSecretPost;
const BASIC: AuthMethod = AuthMethod::ClientSecretBasic;

fn check(id: &str, want: Expected) -> &'static Preset {
    let preset = get(id).unwrap_or_else(|| panic!("no preset {id}"));
    let endpoints = preset.endpoints(&preset.example_parameters()).unwrap();
    assert_eq!(
        endpoints.authorization_url.as_deref(),
        want.authorization_url
    );
    assert_eq!(endpoints.token_url.as_deref(), want.token_url);
    assert_eq!(endpoints.issuer.as_deref(), want.issuer);
    assert_eq!(preset.grant_types, want.grants);
    assert_eq!(preset.token_endpoint_auth_method, want.auth);
    assert_eq!(preset.scopes_for(preset.grant_types[0]), want.scopes);
    let params: Vec<_> = preset
        .authorize_params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(params, want.authorize_params);
    assert!(
        preset
            .documentation
            .iter()
            .all(|d| d.starts_with("https://")),
        "{id} cites its documentation"
    );
    preset
}

#[test]
fn every_file_parses_and_names_only_declared_parameters() {
    check_catalogue();
    assert_eq!(all().len(), FILES.len());
    for p in all() {
        let names: Vec<_> = p.parameters.iter().map(|x| x.name.as_str()).collect();
        for t in [
            &p.authorization_url,
            &p.token_url,
            &p.refresh_url,
            &p.issuer,
        ]
        .into_iter()
        .flatten()
        {
            for used in template::placeholders(t) {
                assert!(names.contains(&used.as_str()), "{}: {{{used}}}", p.id);
            }
        }
        for param in &p.parameters {
            assert_eq!(param.required, param.default.is_none(), "{}", p.id);
            param.check(&p.id, &param.example).unwrap();
        }
        for grant in p.default_scopes.keys() {
            assert!(
                p.grant_types.contains(grant),
                "{}: scopes for {grant}",
                p.id
            );
        }
    }
}

fn check_catalogue() {
    super::check().unwrap();
}

#[test]
fn generic_oauth2() {
    let p = check(
        "oauth2",
        Expected {
            authorization_url: None,
            token_url: None,
            issuer: None,
            grants: &[CC, AC],
            auth: BASIC,
            scopes: &[],
            authorize_params: &[],
        },
    );
    assert_eq!(p.quirks, Quirks::default());
}

#[test]
fn generic_oauth2_pkce() {
    check(
        "oauth2-pkce",
        Expected {
            authorization_url: None,
            token_url: None,
            issuer: None,
            grants: &[AC],
            auth: BASIC,
            scopes: &[],
            authorize_params: &[],
        },
    );
}

#[test]
fn entra_id_v2_endpoints_of_the_tenant_and_offline_access() {
    let p = check(
        "entra-id",
        Expected {
            authorization_url: Some(
                "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/authorize",
            ),
            token_url: Some(
                "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token",
            ),
            issuer: None,
            grants: &[AC, CC],
            auth: POST,
            scopes: &[
                "openid",
                "offline_access",
                "https://graph.microsoft.com/User.Read",
            ],
            authorize_params: &[],
        },
    );
    // Client credentials ask for the resource's `.default` scope.
    assert_eq!(p.scopes_for(CC), ["https://graph.microsoft.com/.default"]);
    let params = BTreeMap::from([("tenant".to_owned(), "common".to_owned())]);
    assert_eq!(
        p.endpoints(&params).unwrap().token_url.as_deref(),
        Some("https://login.microsoftonline.com/common/oauth2/v2.0/token")
    );
}

#[test]
fn google_asks_for_offline_access_and_consent() {
    check(
        "google",
        Expected {
            authorization_url: Some("https://accounts.google.com/o/oauth2/v2/auth"),
            token_url: Some("https://oauth2.googleapis.com/token"),
            issuer: Some("https://accounts.google.com"),
            grants: &[AC],
            auth: POST,
            scopes: &["openid", "email"],
            authorize_params: &[("access_type", "offline"), ("prompt", "consent")],
        },
    );
}

#[test]
fn github_oauth_app() {
    let p = check(
        "github",
        Expected {
            authorization_url: Some("https://github.com/login/oauth/authorize"),
            token_url: Some("https://github.com/login/oauth/access_token"),
            issuer: None,
            grants: &[AC],
            auth: POST,
            scopes: &["read:user"],
            authorize_params: &[],
        },
    );
    assert!(p.quirks.form_encoded_response);
    assert_eq!(p.quirks.default_lifetime_secs, Some(365 * 24 * 3600));
}

#[test]
fn github_app_user_tokens() {
    let p = check(
        "github-app",
        Expected {
            authorization_url: Some("https://github.com/login/oauth/authorize"),
            token_url: Some("https://github.com/login/oauth/access_token"),
            issuer: None,
            grants: &[AC],
            auth: POST,
            scopes: &[],
            authorize_params: &[],
        },
    );
    assert!(p.quirks.form_encoded_response);
    assert!(p.quirks.is_invalid_grant("bad_refresh_token"));
}

#[test]
fn salesforce_login_host_defaults_and_no_expires_in() {
    let p = check(
        "salesforce",
        Expected {
            authorization_url: Some("https://login.salesforce.com/services/oauth2/authorize"),
            token_url: Some("https://login.salesforce.com/services/oauth2/token"),
            issuer: None,
            grants: &[AC],
            auth: POST,
            scopes: &["api", "refresh_token"],
            authorize_params: &[],
        },
    );
    let sandbox = BTreeMap::from([("login_host".to_owned(), "test.salesforce.com".to_owned())]);
    assert_eq!(
        p.endpoints(&sandbox).unwrap().token_url.as_deref(),
        Some("https://test.salesforce.com/services/oauth2/token")
    );
    assert_eq!(
        p.endpoints(&BTreeMap::new()).unwrap(),
        p.endpoints(&p.example_parameters()).unwrap()
    );
    assert_eq!(p.quirks.default_lifetime_secs, Some(900));
}

#[test]
fn slack_bot_token_with_comma_separated_scopes() {
    let p = check(
        "slack",
        Expected {
            authorization_url: Some("https://slack.com/oauth/v2/authorize"),
            token_url: Some("https://slack.com/api/oauth.v2.access"),
            issuer: None,
            grants: &[AC],
            auth: POST,
            scopes: &["chat:write"],
            authorize_params: &[],
        },
    );
    assert_eq!(
        p.quirks.join_scopes(&["a:b".into(), "c:d".into()]),
        "a:b,c:d"
    );
    assert_eq!(p.quirks.scope_param, "scope");
    assert_eq!(p.quirks.token_pointer, None);
}

#[test]
fn slack_user_token_in_authed_user() {
    let p = check(
        "slack-user",
        Expected {
            authorization_url: Some("https://slack.com/oauth/v2/authorize"),
            token_url: Some("https://slack.com/api/oauth.v2.access"),
            issuer: None,
            grants: &[AC],
            auth: POST,
            scopes: &["users:read"],
            authorize_params: &[],
        },
    );
    assert_eq!(p.quirks.scope_param, "user_scope");
    assert_eq!(p.quirks.token_pointer.as_deref(), Some("/authed_user"));
}

#[test]
fn dropbox_asks_for_offline_access() {
    check(
        "dropbox",
        Expected {
            authorization_url: Some("https://www.dropbox.com/oauth2/authorize"),
            token_url: Some("https://api.dropboxapi.com/oauth2/token"),
            issuer: None,
            grants: &[AC],
            auth: BASIC,
            scopes: &[],
            authorize_params: &[("token_access_type", "offline")],
        },
    );
}

#[test]
fn box_endpoints() {
    check(
        "box",
        Expected {
            authorization_url: Some("https://account.box.com/api/oauth2/authorize"),
            token_url: Some("https://api.box.com/oauth2/token"),
            issuer: None,
            grants: &[AC],
            auth: POST,
            scopes: &[],
            authorize_params: &[],
        },
    );
}

#[test]
fn zoom_wants_basic() {
    check(
        "zoom",
        Expected {
            authorization_url: Some("https://zoom.us/oauth/authorize"),
            token_url: Some("https://zoom.us/oauth/token"),
            issuer: None,
            grants: &[AC],
            auth: BASIC,
            scopes: &[],
            authorize_params: &[],
        },
    );
}

#[test]
fn atlassian_audience_consent_and_offline_access() {
    check(
        "atlassian",
        Expected {
            authorization_url: Some("https://auth.atlassian.com/authorize"),
            token_url: Some("https://auth.atlassian.com/oauth/token"),
            issuer: None,
            grants: &[AC],
            auth: POST,
            scopes: &["read:jira-user", "offline_access"],
            authorize_params: &[("audience", "api.atlassian.com"), ("prompt", "consent")],
        },
    );
}

#[test]
fn linkedin_both_flows() {
    check(
        "linkedin",
        Expected {
            authorization_url: Some("https://www.linkedin.com/oauth/v2/authorization"),
            token_url: Some("https://www.linkedin.com/oauth/v2/accessToken"),
            issuer: None,
            grants: &[AC, CC],
            auth: POST,
            scopes: &["openid", "profile", "email"],
            authorize_params: &[],
        },
    );
}

#[test]
fn spotify_both_flows_with_basic() {
    check(
        "spotify",
        Expected {
            authorization_url: Some("https://accounts.spotify.com/authorize"),
            token_url: Some("https://accounts.spotify.com/api/token"),
            issuer: None,
            grants: &[AC, CC],
            auth: BASIC,
            scopes: &["user-read-private", "user-read-email"],
            authorize_params: &[],
        },
    );
}

#[test]
fn okta_domain_and_authorization_server() {
    let p = check(
        "okta",
        Expected {
            authorization_url: Some("https://dev-123456.okta.com/oauth2/default/v1/authorize"),
            token_url: Some("https://dev-123456.okta.com/oauth2/default/v1/token"),
            issuer: Some("https://dev-123456.okta.com/oauth2/default"),
            grants: &[AC, CC],
            auth: BASIC,
            scopes: &["openid", "offline_access"],
            authorize_params: &[],
        },
    );
    let only_domain = BTreeMap::from([("domain".to_owned(), "acme.okta.com".to_owned())]);
    assert_eq!(
        p.endpoints(&only_domain).unwrap().issuer.as_deref(),
        Some("https://acme.okta.com/oauth2/default")
    );
}

#[test]
fn auth0_domain() {
    check(
        "auth0",
        Expected {
            authorization_url: Some("https://example.us.auth0.com/authorize"),
            token_url: Some("https://example.us.auth0.com/oauth/token"),
            issuer: Some("https://example.us.auth0.com/"),
            grants: &[AC, CC],
            auth: POST,
            scopes: &["openid", "offline_access"],
            authorize_params: &[],
        },
    );
}

#[test]
fn keycloak_realm() {
    check(
        "keycloak",
        Expected {
            authorization_url: Some(
                "https://keycloak.example.com/realms/myrealm/protocol/openid-connect/auth",
            ),
            token_url: Some(
                "https://keycloak.example.com/realms/myrealm/protocol/openid-connect/token",
            ),
            issuer: Some("https://keycloak.example.com/realms/myrealm"),
            grants: &[AC, CC],
            auth: BASIC,
            scopes: &["openid"],
            authorize_params: &[],
        },
    );
}

#[test]
fn parameters_are_checked_and_named() {
    let okta = get("okta").unwrap();
    let err = |params: &[(&str, &str)]| {
        let map = params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        okta.endpoints(&map).unwrap_err()
    };
    let e = err(&[]);
    assert_eq!(e.field, "parameters.domain");
    assert!(e.message.contains("dev-123456.okta.com"), "{}", e.message);
    assert_eq!(
        err(&[("domain", "a.b"), ("tenant", "x")]).field,
        "parameters.tenant"
    );
    for bad in ["evil.com/x", "evil.com?x", "a@b", "", "-x.com", "a b"] {
        assert_eq!(err(&[("domain", bad)]).field, "parameters.domain", "{bad}");
    }
    assert_eq!(
        err(&[("domain", "a.b"), ("authorization_server", "../x")]).field,
        "parameters.authorization_server"
    );
    let kc = get("keycloak").unwrap();
    for bad in [
        "ftp://x",
        "https://x/auth",
        "https://u:p@x",
        "keycloak.example.com",
    ] {
        let params = BTreeMap::from([
            ("base_url".to_owned(), bad.to_owned()),
            ("realm".to_owned(), "r".to_owned()),
        ]);
        assert_eq!(
            kc.endpoints(&params).unwrap_err().field,
            "parameters.base_url",
            "{bad}"
        );
    }
    let local = BTreeMap::from([
        ("base_url".to_owned(), "http://127.0.0.1:8080/".to_owned()),
        ("realm".to_owned(), "r".to_owned()),
    ]);
    assert_eq!(
        kc.endpoints(&local).unwrap().token_url.as_deref(),
        Some("http://127.0.0.1:8080/realms/r/protocol/openid-connect/token")
    );
}
