//! Key status: which key-encryption key wraps how many stored secrets.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value;

use super::html::{esc, notice, table};
use super::Ctx;

pub async fn page(ctx: Ctx) -> Response {
    let report = match ctx.api.get("/v1/keys").await {
        Ok(r) => r,
        Err(e) => return ctx.page(e.status, "Keys", &notice("error", &e.message)),
    };
    let yes = |v: &Value| if *v == true { "yes" } else { "no" };
    let rows: Vec<Vec<String>> = report["keys"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .map(|k| {
            vec![
                esc(k["id"].as_str().unwrap_or("")),
                yes(&k["active"]).into(),
                yes(&k["configured"]).into(),
                esc(&k["envelopes"].to_string()),
                yes(&k["removable"]).into(),
            ]
        })
        .collect();
    let w = &report["rewrap"];
    let body = format!(
        "{}<p>Re-wrapping: {}; {} secrets re-wrapped, {} failed since start. To rotate, add a \
         key to the key file, name it active, and run <code>credmgr keys --reload</code>.</p>",
        table(
            &[
                "Key",
                "Active",
                "Configured",
                "Secrets it wraps",
                "Removable"
            ],
            &rows
        ),
        if w["running"] == true {
            "running"
        } else {
            "idle"
        },
        esc(&w["rewrapped"].to_string()),
        esc(&w["failed"].to_string()),
    );
    ctx.page(StatusCode::OK, "Keys", &body)
}
