//! `credmgr provider ...`: the provider types, and providers made from them.

use std::io::BufRead as _;

use serde_json::{json, Map, Value};

use super::args::{exit, ClientOpts, ProviderCommand, ProviderCreate};
use super::client::{seg, Client, Failure};
use super::output::{cell, fields, items, print, text, Table};

pub async fn run(opts: &ClientOpts, command: ProviderCommand) -> Result<u8, Failure> {
    let client = Client::new(opts)?;
    match command {
        ProviderCommand::Types { id: None } => {
            let types = client.get("/v1/provider-types").await?;
            print(opts.output, &types, types_table);
        }
        ProviderCommand::Types { id: Some(id) } => {
            let preset = client
                .get(&format!("/v1/provider-types/{}", seg(&id)))
                .await?;
            print(opts.output, &preset, describe_type);
        }
        ProviderCommand::List => {
            let providers = client.get("/v1/providers").await?;
            let mut counts = Vec::new();
            for p in items(&providers) {
                let id = text(p, "id");
                let conns = client
                    .get(&format!("/v1/providers/{}/connections", seg(&id)))
                    .await?;
                let connected = items(&conns)
                    .iter()
                    .filter(|c| c["status"] == "connected")
                    .count();
                counts.push((connected, items(&conns).len()));
            }
            print(opts.output, &providers, |v| {
                let mut t = Table::new(&["ID", "TYPE", "GRANT", "CLIENT ID", "CONNECTED"]);
                for (p, (ok, all)) in items(v).iter().zip(&counts) {
                    t.row(vec![
                        text(p, "id"),
                        text(p, "identity_provider"),
                        text(p, "grant_type"),
                        text(p, "client_id"),
                        format!("{ok}/{all}"),
                    ]);
                }
                t.render()
            });
        }
        ProviderCommand::Show { id } => {
            let p = client.get(&format!("/v1/providers/{}", seg(&id))).await?;
            print(opts.output, &p, describe);
        }
        ProviderCommand::Create(create) => {
            let body = create_body(&create)?;
            let path = format!("/v1/providers/{}", seg(&create.id));
            if !create.replace && client.find(&path).await?.is_some() {
                return Err(Failure::new(
                    exit::CONFLICT,
                    format!(
                        "provider `{}` exists already; add --replace to replace its \
                         configuration",
                        create.id
                    ),
                ));
            }
            let p = client.put(&path, &body).await?;
            print(opts.output, &p, |p| {
                let mut out = format!("created provider {}\n", text(p, "id"));
                out.push_str(&describe(p));
                out
            });
        }
        ProviderCommand::Delete { id } => {
            client
                .delete(&format!("/v1/providers/{}", seg(&id)))
                .await?;
            print(opts.output, &json!({"deleted": id}), |_| {
                format!("deleted provider {id} with its connections\n")
            });
        }
    }
    Ok(exit::OK)
}

fn create_body(c: &ProviderCreate) -> Result<Value, Failure> {
    let mut params = Map::new();
    for p in &c.params {
        let (name, value) = p.split_once('=').ok_or_else(|| {
            Failure::new(
                exit::USAGE,
                format!(
                    "--param `{p}` is not NAME=VALUE; `credmgr provider types {}` lists the \
                         parameters",
                    c.provider_type
                ),
            )
        })?;
        params.insert(name.to_owned(), Value::String(value.to_owned()));
    }
    let secret = if c.client_secret_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| Failure::new(exit::USAGE, format!("reading the client secret: {e}")))?;
        Some(line.trim_end_matches(['\r', '\n']).to_owned())
    } else {
        c.client_secret.clone()
    };
    let mut body = json!({
        "identity_provider": c.provider_type,
        "parameters": params,
        "client_id": c.client_id,
        "allowed_redirect_urls": c.redirect_urls,
    });
    let mut set = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            body[k] = v;
        }
    };
    set("client_secret", secret.map(Value::String));
    set("grant_type", c.grant.clone().map(Value::String));
    set("display_name", c.display_name.clone().map(Value::String));
    set("token_url", c.token_url.clone().map(Value::String));
    set(
        "authorization_url",
        c.authorization_url.clone().map(Value::String),
    );
    set("scopes", (!c.scopes.is_empty()).then(|| json!(c.scopes)));
    Ok(body)
}

fn types_table(v: &Value) -> String {
    let mut t = Table::new(&["TYPE", "NAME", "GRANTS", "PARAMETERS"]);
    for p in items(v) {
        let params: Vec<String> = items(&p["parameters"])
            .iter()
            .map(|q| text(q, "name"))
            .collect();
        t.row(vec![
            text(p, "id"),
            text(p, "display_name"),
            text(p, "grant_types"),
            if params.is_empty() {
                "-".into()
            } else {
                params.join(" ")
            },
        ]);
    }
    t.render()
}

fn describe_type(p: &Value) -> String {
    let mut out = fields(&[
        ("type", text(p, "id")),
        ("name", text(p, "display_name")),
        ("grants", text(p, "grant_types")),
        ("token url", text(p, "token_url")),
        ("authorization url", text(p, "authorization_url")),
    ]);
    out.push_str(&format!("\n{}\n", text(p, "description")));
    let params = items(&p["parameters"]);
    if !params.is_empty() {
        let mut t = Table::new(&["PARAMETER", "REQUIRED", "EXAMPLE", "DESCRIPTION"]);
        for q in params {
            t.row(vec![
                text(q, "name"),
                text(q, "required"),
                text(q, "example"),
                text(q, "description"),
            ]);
        }
        out.push('\n');
        out.push_str(&t.render());
    }
    let example: Vec<String> = params
        .iter()
        .map(|q| format!(" --param {}={}", text(q, "name"), text(q, "example")))
        .collect();
    out.push_str(&format!(
        "\ncreate one: credmgr provider create ID --type {}{} --client-id ID \
         (client secret from CREDMGR_CLIENT_SECRET or --client-secret-stdin)\n",
        text(p, "id"),
        example.concat()
    ));
    out
}

fn describe(p: &Value) -> String {
    fields(&[
        ("id", text(p, "id")),
        ("name", text(p, "display_name")),
        ("type", text(p, "identity_provider")),
        ("parameters", params_text(&p["parameters"])),
        ("grant", text(p, "grant_type")),
        ("client id", text(p, "client_id")),
        (
            "client secret",
            if p["client_secret"]["set"] == true {
                "set (write-only)".into()
            } else {
                "not set".into()
            },
        ),
        ("scopes", text(p, "scopes")),
        ("token url", text(p, "token_url")),
        ("authorization url", text(p, "authorization_url")),
        ("redirect urls", text(p, "allowed_redirect_urls")),
        ("updated", text(p, "updated_at")),
    ])
}

fn params_text(v: &Value) -> String {
    match v.as_object() {
        Some(m) if !m.is_empty() => m
            .iter()
            .map(|(k, v)| format!("{k}={}", cell(Some(v))))
            .collect::<Vec<_>>()
            .join(" "),
        _ => "-".into(),
    }
}
