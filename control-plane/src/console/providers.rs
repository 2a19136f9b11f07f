//! Providers: the list, the form built from a preset's parameters, one provider with its
//! connections.

use axum::body::Bytes;
use axum::extract::{Path, Query};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::api::seg;
use super::connections::connections_table;
use super::form::Form;
use super::html::{csrf_field, esc, input, notice, table};
use super::{see_other, Ctx};

fn items(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or(&[])
}

fn s<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field].as_str().unwrap_or("")
}

pub async fn list(ctx: Ctx) -> Response {
    let (providers, types) = match (
        ctx.api.get("/v1/providers").await,
        ctx.api.get("/v1/provider-types").await,
    ) {
        (Ok(p), Ok(t)) => (p, t),
        (Err(e), _) | (_, Err(e)) => {
            return ctx.page(e.status, "Providers", &notice("error", &e.message))
        }
    };
    let mut rows = Vec::new();
    for p in items(&providers) {
        let id = s(p, "id");
        let conns = ctx
            .api
            .get(&format!("/v1/providers/{}/connections", seg(id)))
            .await
            .unwrap_or(Value::Null);
        let connected = items(&conns)
            .iter()
            .filter(|c| c["status"] == "connected")
            .count();
        rows.push(vec![
            format!(
                "<a href=\"/console/providers/{}\">{}</a>",
                esc(&seg(id)),
                esc(id)
            ),
            esc(p["display_name"].as_str().unwrap_or("")),
            esc(s(p, "identity_provider")),
            esc(s(p, "grant_type")),
            esc(s(p, "client_id")),
            format!("{connected}/{}", items(&conns).len()),
        ]);
    }
    let options: String = items(&types)
        .iter()
        .map(|t| {
            format!(
                "<option value=\"{}\">{}</option>",
                esc(s(t, "id")),
                esc(&format!("{} ({})", s(t, "display_name"), s(t, "id")))
            )
        })
        .collect();
    let body = format!(
        "{}<h2>New provider</h2>\
         <form method=\"get\" action=\"/console/providers/new\" class=\"box\">\
         <label>Provider type<select name=\"type\">{options}</select>\
         <small>The form then asks for what this type needs.</small></label>\
         <button type=\"submit\">Next</button></form>",
        table(
            &[
                "Provider",
                "Name",
                "Type",
                "Grant",
                "Client id",
                "Connected"
            ],
            &rows
        ),
    );
    ctx.page(StatusCode::OK, "Providers", &body)
}

#[derive(Deserialize)]
pub struct NewQuery {
    #[serde(rename = "type")]
    provider_type: String,
}

pub async fn new_form(ctx: Ctx, Query(q): Query<NewQuery>) -> Response {
    provider_form(&ctx, &q.provider_type, &Form::parse(b""), None).await
}

/// The creation form for a provider type: its parameters, then the fields every provider
/// has; `values` refills it after a refusal, `error` says why.
async fn provider_form(
    ctx: &Ctx,
    type_id: &str,
    values: &Form,
    error: Option<(StatusCode, String)>,
) -> Response {
    let preset = match ctx
        .api
        .get(&format!("/v1/provider-types/{}", seg(type_id)))
        .await
    {
        Ok(p) => p,
        Err(e) => return ctx.page(e.status, "New provider", &notice("error", &e.message)),
    };
    let mut fields = String::new();
    fields.push_str(&input(
        "id",
        "Provider id",
        values.get("id"),
        true,
        "Letters, digits, -, _ and . ; used in URLs and in the filter's configuration.",
    ));
    fields.push_str(&input(
        "display_name",
        "Display name",
        values.get("display_name"),
        false,
        "",
    ));
    for p in items(&preset["parameters"]) {
        let name = s(p, "name");
        let help = format!("{} (for example {})", s(p, "description"), s(p, "example"));
        fields.push_str(&input(
            &format!("param.{name}"),
            &format!("Parameter {name}"),
            values.get(&format!("param.{name}")),
            p["required"] == true,
            &help,
        ));
    }
    let grants: String = items(&preset["grant_types"])
        .iter()
        .filter_map(Value::as_str)
        .map(|g| {
            let selected = if values.get("grant_type") == g {
                " selected"
            } else {
                ""
            };
            format!("<option{selected}>{}</option>", esc(g))
        })
        .collect();
    fields.push_str(&format!(
        "<label>Grant type<select name=\"grant_type\">{grants}</select></label>"
    ));
    fields.push_str(&input(
        "client_id",
        "Client id",
        values.get("client_id"),
        true,
        "The client registered at the provider.",
    ));
    fields.push_str(
        "<label>Client secret *<input type=\"password\" name=\"client_secret\" \
        autocomplete=\"off\" required><small>Write-only: stored encrypted, never shown \
        again.</small></label>",
    );
    if preset.get("token_url").is_none() {
        fields.push_str(&input(
            "token_url",
            "Token URL",
            values.get("token_url"),
            true,
            "",
        ));
        fields.push_str(&input(
            "authorization_url",
            "Authorization URL",
            values.get("authorization_url"),
            false,
            "Needed for the authorization-code grant.",
        ));
    }
    let defaults = preset["default_scopes"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(g, v)| format!("{g}: {}", super::html::words(v)))
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_default();
    fields.push_str(&input(
        "scopes",
        "Scopes",
        values.get("scopes"),
        false,
        &if defaults.is_empty() {
            "Separated by spaces.".to_owned()
        } else {
            format!("Separated by spaces; empty for the type's defaults ({defaults}).")
        },
    ));
    fields.push_str(&input(
        "redirect_urls",
        "Post-login redirect URLs",
        values.get("redirect_urls"),
        false,
        "Where a login link may send the user after consent, separated by spaces.",
    ));
    let error = error.map(|(_, m)| notice("error", &m)).unwrap_or_default();
    let body = format!(
        "{error}<p>{}</p><form method=\"post\" action=\"/console/providers\" class=\"box\">{}\
         <input type=\"hidden\" name=\"type\" value=\"{}\">{fields}\
         <button type=\"submit\">Create provider</button></form>",
        esc(s(&preset, "description")),
        csrf_field(&ctx.csrf()),
        esc(type_id),
    );
    ctx.page(
        StatusCode::OK,
        &format!("New {} provider", s(&preset, "display_name")),
        &body,
    )
}

pub async fn create(ctx: Ctx, headers: HeaderMap, body: Bytes) -> Response {
    let form = match ctx.form(&headers, &body) {
        Ok(f) => f,
        Err(refused) => return refused.into_response(),
    };
    let type_id = form.get("type").to_owned();
    let id = form.get("id").to_owned();
    let mut params = Map::new();
    for (k, v) in form.prefixed("param.") {
        params.insert(k, Value::String(v));
    }
    let mut provider = json!({
        "identity_provider": type_id,
        "parameters": params,
        "client_id": form.get("client_id"),
        "client_secret": form.get("client_secret"),
        "allowed_redirect_urls": form.words("redirect_urls"),
    });
    for (field, value) in [
        ("display_name", form.opt("display_name")),
        ("grant_type", form.opt("grant_type")),
        ("token_url", form.opt("token_url")),
        ("authorization_url", form.opt("authorization_url")),
    ] {
        if let Some(v) = value {
            provider[field] = Value::String(v);
        }
    }
    let scopes = form.words("scopes");
    if !scopes.is_empty() {
        provider["scopes"] = json!(scopes);
    }
    let refused = |status, message: String| refuse(&ctx, &type_id, &form, status, message);
    if id.is_empty() {
        return refused(StatusCode::BAD_REQUEST, "Give the provider an id.".into()).await;
    }
    let path = format!("/v1/providers/{}", seg(&id));
    if ctx.api.get(&path).await.is_ok() {
        return refused(
            StatusCode::CONFLICT,
            format!("A provider `{id}` exists already."),
        )
        .await;
    }
    match ctx.api.put(&path, provider).await {
        Ok(_) => see_other(&format!("/console/providers/{}", seg(&id))),
        Err(e) => refused(e.status, e.message).await,
    }
}

/// The form again, with its values and why it was refused.
async fn refuse(
    ctx: &Ctx,
    type_id: &str,
    form: &Form,
    status: StatusCode,
    message: String,
) -> Response {
    let mut r = provider_form(ctx, type_id, form, Some((status, message))).await;
    *r.status_mut() = status;
    r
}

pub async fn show(ctx: Ctx, Path(id): Path<String>) -> Response {
    let path = format!("/v1/providers/{}", seg(&id));
    let (p, conns) = match (
        ctx.api.get(&path).await,
        ctx.api.get(&format!("{path}/connections")).await,
    ) {
        (Ok(p), Ok(c)) => (p, c),
        (Err(e), _) | (_, Err(e)) => {
            return ctx.page(e.status, "Provider", &notice("error", &e.message))
        }
    };
    let detail = table(
        &[
            "Type",
            "Grant",
            "Client id",
            "Client secret",
            "Scopes",
            "Token URL",
            "Redirect URLs",
        ],
        &[vec![
            esc(s(&p, "identity_provider")),
            esc(s(&p, "grant_type")),
            esc(s(&p, "client_id")),
            "set (write-only)".into(),
            esc(&super::html::words(&p["scopes"])),
            esc(s(&p, "token_url")),
            esc(&super::html::words(&p["allowed_redirect_urls"])),
        ]],
    );
    let body = format!(
        "{detail}<h2>Connections</h2>{}\
         <h2>New connection</h2><form method=\"post\" action=\"/console/providers/{}/connections\" \
         class=\"box\">{}{}{}<button type=\"submit\">Create connection</button></form>",
        connections_table(&ctx, &p, items(&conns)),
        esc(&seg(&id)),
        csrf_field(&ctx.csrf()),
        input(
            "id",
            "Connection id",
            "",
            true,
            "For example the account's owner: alice."
        ),
        input("display_name", "Display name", "", false, ""),
    );
    let title = format!("Provider {}", p["display_name"].as_str().unwrap_or(&id));
    ctx.page(StatusCode::OK, &title, &body)
}
