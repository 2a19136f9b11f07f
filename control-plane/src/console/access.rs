//! Access policies (who may use a connection) and trusted issuers.

use axum::body::Bytes;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::api::seg;
use super::html::{csrf_field, esc, input, notice, table, words};
use super::{see_other, Ctx};

fn s<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field].as_str().unwrap_or("")
}

fn items(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// A connection's policies and the form that adds one.
pub async fn policies_section(ctx: &Ctx, p: &str, c: &str) -> String {
    let path = format!(
        "/v1/providers/{}/connections/{}/access-policies",
        seg(p),
        seg(c)
    );
    let list = match ctx.api.get(&path).await {
        Ok(l) => l,
        Err(e) => return notice("error", &e.message),
    };
    let rows: Vec<Vec<String>> = items(&list)
        .iter()
        .map(|pol| {
            let id = &pol["identity"];
            let who = ["name", "object_id", "client_id", "group_id"]
                .iter()
                .find_map(|k| id[*k].as_str())
                .unwrap_or("");
            vec![
                esc(s(pol, "id")),
                esc(s(id, "kind")),
                esc(who),
                esc(id["issuer"].as_str().unwrap_or("-")),
            ]
        })
        .collect();
    let empty_warning = if rows.is_empty() {
        notice(
            "error",
            "No access policy: nobody may use this connection yet.",
        )
    } else {
        String::new()
    };
    format!(
        "<h2>Access policies</h2>{empty_warning}{}\
         <form method=\"post\" action=\"/console/providers/{}/connections/{}/policies\" \
         class=\"box\">{}{}<label>Kind<select name=\"kind\"><option>gateway</option>\
         <option>user</option><option>application</option><option>group</option></select></label>\
         {}{}<button type=\"submit\">Add policy</button></form>",
        table(&["Policy", "Kind", "Identity", "Issuer"], &rows),
        esc(&seg(p)),
        esc(&seg(c)),
        csrf_field(&ctx.csrf()),
        input("id", "Policy id", "", true, ""),
        input(
            "value",
            "Identity",
            "",
            true,
            "Gateway name, or the user's object id, application's client id or group id."
        ),
        input(
            "issuer",
            "Issuer",
            "",
            false,
            "For user, application and group: the tokens' iss."
        ),
    )
}

pub async fn add_policy(
    ctx: Ctx,
    Path((p, c)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = match ctx.form(&headers, &body) {
        Ok(f) => f,
        Err(refused) => return refused.into_response(),
    };
    let (value, issuer) = (form.get("value"), form.get("issuer"));
    let identity = match form.get("kind") {
        "gateway" => json!({"kind": "gateway", "name": value}),
        "user" => json!({"kind": "user", "issuer": issuer, "object_id": value}),
        "application" => json!({"kind": "application", "issuer": issuer, "client_id": value}),
        _ => json!({"kind": "group", "issuer": issuer, "group_id": value}),
    };
    let back = format!("/console/providers/{}/connections/{}", seg(&p), seg(&c));
    let path = format!(
        "/v1/providers/{}/connections/{}/access-policies/{}",
        seg(&p),
        seg(&c),
        seg(form.get("id"))
    );
    match ctx.api.put(&path, json!({"identity": identity})).await {
        Ok(_) => see_other(&back),
        Err(e) => ctx.page(
            e.status,
            "Policy not added",
            &format!(
                "{}<p><a href=\"{}\">Back</a></p>",
                notice("error", &e.message),
                esc(&back)
            ),
        ),
    }
}

pub async fn issuers(ctx: Ctx) -> Response {
    let list = match ctx.api.get("/v1/trusted-issuers").await {
        Ok(l) => l,
        Err(e) => return ctx.page(e.status, "Trusted issuers", &notice("error", &e.message)),
    };
    let rows: Vec<Vec<String>> = items(&list)
        .iter()
        .map(|i| {
            let keys = &i["keys"];
            vec![
                esc(s(i, "id")),
                esc(s(i, "issuer")),
                esc(&words(&i["audiences"])),
                esc(&keys["count"].to_string()),
                esc(keys["fetched_at"].as_str().unwrap_or("-")),
                esc(keys["error"].as_str().unwrap_or("")),
            ]
        })
        .collect();
    let body = format!(
        "<p>Issuers whose JWTs identify callers (<code>identity-type: jwt</code>).</p>{}\
         <h2>Trust an issuer</h2><form method=\"post\" action=\"/console/issuers\" class=\"box\">\
         {}{}{}{}{}<button type=\"submit\">Add issuer</button></form>",
        table(
            &[
                "Id",
                "Issuer",
                "Audiences",
                "Keys",
                "Keys fetched",
                "Key error"
            ],
            &rows
        ),
        csrf_field(&ctx.csrf()),
        input("id", "Id", "", true, ""),
        input(
            "issuer",
            "Issuer (iss)",
            "",
            true,
            "Exactly as in the tokens."
        ),
        input("audiences", "Audiences", "", true, "Separated by spaces."),
        input(
            "jwks_uri",
            "JWKS URI",
            "",
            true,
            "Where the issuer publishes its keys."
        ),
    );
    ctx.page(StatusCode::OK, "Trusted issuers", &body)
}

pub async fn add_issuer(ctx: Ctx, headers: HeaderMap, body: Bytes) -> Response {
    let form = match ctx.form(&headers, &body) {
        Ok(f) => f,
        Err(refused) => return refused.into_response(),
    };
    let body = json!({"issuer": form.get("issuer"), "audiences": form.words("audiences"),
        "jwks_uri": form.get("jwks_uri")});
    match ctx
        .api
        .put(
            &format!("/v1/trusted-issuers/{}", seg(form.get("id"))),
            body,
        )
        .await
    {
        Ok(_) => see_other("/console/issuers"),
        Err(e) => ctx.page(
            e.status,
            "Issuer not added",
            &format!(
                "{}<p><a href=\"/console/issuers\">Back</a></p>",
                notice("error", &e.message)
            ),
        ),
    }
}
