//! `credmgr connection ...`: connections with their status, and why one is broken.

use serde_json::{json, Value};

use super::args::{exit, ClientOpts, ConnectionCommand};
use super::client::{seg, Client, Failure};
use super::output::{fields, items, print, text, Table};
use crate::advice::advice;

pub async fn run(opts: &ClientOpts, command: ConnectionCommand) -> Result<u8, Failure> {
    let client = Client::new(opts)?;
    match command {
        ConnectionCommand::List { provider } => {
            let all = list(&client, provider.as_deref()).await?;
            print(opts.output, &all, table);
        }
        ConnectionCommand::Show {
            provider,
            connection,
        } => {
            let c = client.get(&path(&provider, &connection)).await?;
            let p = client
                .get(&format!("/v1/providers/{}", seg(&provider)))
                .await?;
            let grant = text(&p, "grant_type");
            print(opts.output, &c, |c| describe(c, &grant));
            if c["status"] != "connected" {
                return Ok(exit::ATTENTION);
            }
        }
        ConnectionCommand::Create {
            provider,
            connection,
            display_name,
        } => {
            let path = path(&provider, &connection);
            if client.find(&path).await?.is_some() {
                return Err(Failure::new(
                    exit::CONFLICT,
                    format!("connection `{connection}` of provider `{provider}` exists already"),
                ));
            }
            let body = match display_name {
                Some(name) => json!({"display_name": name}),
                None => json!({}),
            };
            let c = client.put(&path, &body).await?;
            let p = client
                .get(&format!("/v1/providers/{}", seg(&provider)))
                .await?;
            let grant = text(&p, "grant_type");
            print(opts.output, &c, |c| {
                format!(
                    "created connection {provider}/{connection}\n{}",
                    describe(c, &grant)
                )
            });
        }
        ConnectionCommand::Delete {
            provider,
            connection,
        } => {
            client.delete(&path(&provider, &connection)).await?;
            print(
                opts.output,
                &json!({"deleted": format!("{provider}/{connection}")}),
                |_| format!("deleted connection {provider}/{connection} and its tokens\n"),
            );
        }
    }
    Ok(exit::OK)
}

fn path(provider: &str, connection: &str) -> String {
    format!(
        "/v1/providers/{}/connections/{}",
        seg(provider),
        seg(connection)
    )
}

/// The connections of one provider, or of every provider; every page.
pub async fn list(client: &Client, provider: Option<&str>) -> Result<Value, Failure> {
    let providers = match provider {
        Some(p) => vec![p.to_owned()],
        None => items(&client.get("/v1/providers").await?)
            .iter()
            .map(|p| text(p, "id"))
            .collect(),
    };
    let mut all = Vec::new();
    for p in providers {
        let mut after: Option<String> = None;
        loop {
            let mut url = format!("/v1/providers/{}/connections?limit=1000", seg(&p));
            if let Some(a) = &after {
                url.push_str(&format!("&after={}", seg(a)));
            }
            let page = client.get(&url).await?;
            let got = items(&page).to_vec();
            let full = got.len() == 1000;
            after = got.last().map(|c| text(c, "id"));
            all.extend(got);
            if !full {
                break;
            }
        }
    }
    Ok(Value::Array(all))
}

pub fn table(v: &Value) -> String {
    let mut t = Table::new(&[
        "PROVIDER",
        "CONNECTION",
        "STATUS",
        "TOKEN EXPIRES",
        "LAST ERROR",
    ]);
    for c in items(v) {
        let error = match c.get("error") {
            Some(e) if !e.is_null() => text(e, "code"),
            _ => "-".into(),
        };
        t.row(vec![
            text(c, "provider_id"),
            text(c, "id"),
            text(c, "status"),
            text(c, "token_expires_at"),
            error,
        ]);
    }
    t.render()
}

fn describe(c: &Value, grant: &str) -> String {
    let error = c.get("error").filter(|e| !e.is_null());
    let mut pairs = vec![
        (
            "connection",
            format!("{}/{}", text(c, "provider_id"), text(c, "id")),
        ),
        ("name", text(c, "display_name")),
        ("status", text(c, "status")),
        ("grant", grant.to_owned()),
        ("token expires", text(c, "token_expires_at")),
        ("last refresh", text(c, "last_refresh_at")),
    ];
    if let Some(e) = error {
        pairs.push((
            "last error",
            format!("{}: {}", text(e, "code"), text(e, "message")),
        ));
    }
    let mut out = fields(&pairs);
    let code = error.and_then(|e| e["code"].as_str());
    if let Some(todo) = advice(c["status"].as_str().unwrap_or(""), code, grant) {
        out.push_str(&format!("what to do: {todo}\n"));
        if grant == "authorization_code" && c["status"] != "connected" {
            out.push_str(&format!(
                "  credmgr login-link {} {}\n",
                text(c, "provider_id"),
                text(c, "id")
            ));
        }
    }
    out
}
