//! Connections: status, expiry, last error and what to do; creating one; its login link.

use axum::body::Bytes;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::access::policies_section;
use super::api::seg;
use super::html::{csrf_field, esc, notice, status_badge, table};
use super::{see_other, Ctx};
use crate::advice::advice;

fn s<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field].as_str().unwrap_or("")
}

fn items(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or(&[])
}

fn conn_url(p: &str, c: &str) -> String {
    format!("/console/providers/{}/connections/{}", seg(p), seg(c))
}

/// The login-link button of an authorization-code connection (empty for other grants).
fn login_link_button(ctx: &Ctx, provider: &Value, conn: &Value) -> String {
    if s(provider, "grant_type") != "authorization_code" {
        return String::new();
    }
    let redirects = items(&provider["allowed_redirect_urls"]);
    let Some(first) = redirects.first().and_then(Value::as_str) else {
        return "<small>add a post-login redirect URL to the provider for login links</small>"
            .into();
    };
    let choice = if redirects.len() > 1 {
        let options: String = redirects
            .iter()
            .filter_map(Value::as_str)
            .map(|r| format!("<option>{}</option>", esc(r)))
            .collect();
        format!("<select name=\"redirect\">{options}</select>")
    } else {
        format!(
            "<input type=\"hidden\" name=\"redirect\" value=\"{}\">",
            esc(first)
        )
    };
    format!(
        "<form method=\"post\" action=\"{}/login-link\" class=\"inline\">{}{choice}\
         <button type=\"submit\">Login link</button></form>",
        esc(&conn_url(s(conn, "provider_id"), s(conn, "id"))),
        csrf_field(&ctx.csrf()),
    )
}

fn error_cell(conn: &Value, grant: &str) -> String {
    let error = conn.get("error").filter(|e| !e.is_null());
    let mut out = match error {
        Some(e) => format!(
            "<code>{}</code> {}",
            esc(s(e, "code")),
            esc(s(e, "message"))
        ),
        None => String::new(),
    };
    let code = error.and_then(|e| e["code"].as_str());
    if let Some(todo) = advice(s(conn, "status"), code, grant) {
        out.push_str(&format!("<div class=\"advice\">{}</div>", esc(todo)));
    }
    out
}

/// The connections of `provider` as a table with their login-link buttons.
pub fn connections_table(ctx: &Ctx, provider: &Value, conns: &[Value]) -> String {
    let grant = s(provider, "grant_type");
    let rows: Vec<Vec<String>> = conns
        .iter()
        .map(|c| {
            vec![
                format!(
                    "<a href=\"{}\">{}</a>",
                    esc(&conn_url(s(c, "provider_id"), s(c, "id"))),
                    esc(s(c, "id"))
                ),
                status_badge(s(c, "status")),
                esc(c["token_expires_at"].as_str().unwrap_or("-")),
                error_cell(c, grant),
                login_link_button(ctx, provider, c),
            ]
        })
        .collect();
    table(
        &[
            "Connection",
            "Status",
            "Token expires",
            "Last error / what to do",
            "",
        ],
        &rows,
    )
}

pub async fn list(ctx: Ctx) -> Response {
    let providers = match ctx.api.get("/v1/providers").await {
        Ok(p) => p,
        Err(e) => return ctx.page(e.status, "Connections", &notice("error", &e.message)),
    };
    let mut body = String::new();
    for p in items(&providers) {
        let id = s(p, "id");
        let conns = ctx
            .api
            .get(&format!("/v1/providers/{}/connections?limit=1000", seg(id)))
            .await
            .unwrap_or(Value::Null);
        body.push_str(&format!(
            "<h2><a href=\"/console/providers/{}\">{}</a> <small>{}</small></h2>{}",
            esc(&seg(id)),
            esc(id),
            esc(s(p, "grant_type")),
            connections_table(&ctx, p, items(&conns))
        ));
    }
    if body.is_empty() {
        body = "<p class=\"empty\">No providers yet: <a href=\"/console/providers\">create one</a>.</p>".into();
    }
    ctx.page(StatusCode::OK, "Connections", &body)
}

pub async fn show(ctx: Ctx, Path((p, c)): Path<(String, String)>) -> Response {
    let api_path = format!("/v1/providers/{}/connections/{}", seg(&p), seg(&c));
    let (provider, conn) = match (
        ctx.api.get(&format!("/v1/providers/{}", seg(&p))).await,
        ctx.api.get(&api_path).await,
    ) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            return ctx.page(e.status, "Connection", &notice("error", &e.message))
        }
    };
    let policies = policies_section(&ctx, &p, &c).await;
    let body = format!(
        "<p>{} of provider <a href=\"/console/providers/{}\">{}</a></p>{}{policies}",
        esc(conn["display_name"].as_str().unwrap_or("Unnamed")),
        esc(&seg(&p)),
        esc(&p),
        table(
            &[
                "Status",
                "Token expires",
                "Last refresh",
                "Last error / what to do",
                ""
            ],
            &[vec![
                status_badge(s(&conn, "status")),
                esc(conn["token_expires_at"].as_str().unwrap_or("-")),
                esc(conn["last_refresh_at"].as_str().unwrap_or("-")),
                error_cell(&conn, s(&provider, "grant_type")),
                login_link_button(&ctx, &provider, &conn),
            ]]
        ),
    );
    ctx.page(StatusCode::OK, &format!("Connection {p}/{c}"), &body)
}

pub async fn create(ctx: Ctx, Path(p): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    let form = match ctx.form(&headers, &body) {
        Ok(f) => f,
        Err(refused) => return refused.into_response(),
    };
    let id = form.get("id");
    let path = format!("/v1/providers/{}/connections/{}", seg(&p), seg(id));
    let back = format!(
        "<p><a href=\"/console/providers/{}\">Back</a></p>",
        esc(&seg(&p))
    );
    if id.is_empty() {
        return ctx.page(
            StatusCode::BAD_REQUEST,
            "Connection not created",
            &format!("{}{back}", notice("error", "Give the connection an id.")),
        );
    }
    if ctx.api.get(&path).await.is_ok() {
        return ctx.page(
            StatusCode::CONFLICT,
            "Connection not created",
            &format!(
                "{}{back}",
                notice("error", &format!("Connection `{id}` exists already."))
            ),
        );
    }
    let body = match form.opt("display_name") {
        Some(name) => json!({"display_name": name}),
        None => json!({}),
    };
    match ctx.api.put(&path, body).await {
        Ok(_) => see_other(&format!("/console/providers/{}", seg(&p))),
        Err(e) => ctx.page(
            e.status,
            "Connection not created",
            &format!("{}{back}", notice("error", &e.message)),
        ),
    }
}

pub async fn login_link(
    ctx: Ctx,
    Path((p, c)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = match ctx.form(&headers, &body) {
        Ok(f) => f,
        Err(refused) => return refused.into_response(),
    };
    let path = format!(
        "/v1/providers/{}/connections/{}/login-links",
        seg(&p),
        seg(&c)
    );
    let back = format!(
        "<p><a href=\"{}\">Back to the connection</a></p>",
        esc(&conn_url(&p, &c))
    );
    match ctx
        .api
        .post(
            &path,
            json!({"post_login_redirect_url": form.get("redirect")}),
        )
        .await
    {
        Ok(link) => {
            let body = format!(
                "<p>Send this link to the owner of the account to connect. It works once and \
                 expires at {}.</p>\
                 <p><input class=\"link\" id=\"login-link\" readonly value=\"{}\"> \
                 <button type=\"button\" data-copy=\"login-link\">Copy</button></p>{back}",
                esc(s(&link, "expires_at")),
                esc(s(&link, "login_url")),
            );
            ctx.page(StatusCode::OK, &format!("Login link for {p}/{c}"), &body)
        }
        Err(e) => ctx.page(
            e.status,
            "No login link",
            &format!("{}{back}", notice("error", &e.message)),
        ),
    }
}
