//! `credmgr policy ...` and `credmgr issuer ...`: who may use a connection, and whose JWTs
//! prove it.

use serde_json::{json, Value};

use super::args::{exit, ClientOpts, IssuerCommand, PolicyAdd, PolicyCommand};
use super::client::{seg, Client, Failure};
use super::output::{fields, items, print, text, Table};

fn policies_path(provider: &str, connection: &str) -> String {
    format!(
        "/v1/providers/{}/connections/{}/access-policies",
        seg(provider),
        seg(connection)
    )
}

pub async fn policy(opts: &ClientOpts, command: PolicyCommand) -> Result<u8, Failure> {
    let client = Client::new(opts)?;
    match command {
        PolicyCommand::List {
            provider,
            connection,
        } => {
            let list = client.get(&policies_path(&provider, &connection)).await?;
            print(opts.output, &list, |v| {
                let mut t = Table::new(&["POLICY", "KIND", "IDENTITY", "ISSUER"]);
                for p in items(v) {
                    let id = &p["identity"];
                    let who = ["name", "object_id", "client_id", "group_id"]
                        .iter()
                        .find_map(|k| id.get(*k).and_then(Value::as_str))
                        .unwrap_or("-");
                    t.row(vec![
                        text(p, "id"),
                        text(id, "kind"),
                        who.to_owned(),
                        text(id, "issuer"),
                    ]);
                }
                t.render()
            });
        }
        PolicyCommand::Add(add) => {
            let body = json!({"display_name": add.display_name, "identity": identity(&add)?});
            let path = format!(
                "{}/{}",
                policies_path(&add.provider, &add.connection),
                seg(&add.policy)
            );
            let p = client.put(&path, &body).await?;
            print(opts.output, &p, |p| {
                format!(
                    "policy {} allows {} on {}/{}\n",
                    text(p, "id"),
                    p["identity"],
                    add.provider,
                    add.connection
                )
            });
        }
        PolicyCommand::Delete {
            provider,
            connection,
            policy,
        } => {
            let path = format!("{}/{}", policies_path(&provider, &connection), seg(&policy));
            client.delete(&path).await?;
            print(opts.output, &json!({"deleted": policy}), |_| {
                format!("deleted policy {policy} of {provider}/{connection}\n")
            });
        }
    }
    Ok(exit::OK)
}

fn identity(add: &PolicyAdd) -> Result<Value, Failure> {
    let issuer = add.issuer.clone().unwrap_or_default();
    Ok(
        match (&add.gateway, &add.user, &add.application, &add.group) {
            (Some(name), ..) => json!({"kind": "gateway", "name": name}),
            (_, Some(user), ..) => json!({"kind": "user", "issuer": issuer, "object_id": user}),
            (_, _, Some(app), _) => {
                json!({"kind": "application", "issuer": issuer, "client_id": app})
            }
            (.., Some(group)) => json!({"kind": "group", "issuer": issuer, "group_id": group}),
            _ => {
                return Err(Failure::new(
                    exit::USAGE,
                    "say whom the policy allows: --gateway NAME, or --user, --application or \
                 --group with --issuer",
                ))
            }
        },
    )
}

pub async fn issuer(opts: &ClientOpts, command: IssuerCommand) -> Result<u8, Failure> {
    let client = Client::new(opts)?;
    match command {
        IssuerCommand::List => {
            let list = client.get("/v1/trusted-issuers").await?;
            print(opts.output, &list, |v| {
                let mut t = Table::new(&["ID", "ISSUER", "AUDIENCES", "KEYS", "KEY ERROR"]);
                for i in items(v) {
                    t.row(vec![
                        text(i, "id"),
                        text(i, "issuer"),
                        text(i, "audiences"),
                        text(&i["keys"], "count"),
                        text(&i["keys"], "error"),
                    ]);
                }
                t.render()
            });
        }
        IssuerCommand::Show { id } => {
            let i = client
                .get(&format!("/v1/trusted-issuers/{}", seg(&id)))
                .await?;
            print(opts.output, &i, describe_issuer);
        }
        IssuerCommand::Add {
            id,
            issuer,
            audiences,
            jwks_uri,
            display_name,
        } => {
            let body = json!({"display_name": display_name, "issuer": issuer,
                "audiences": audiences, "jwks_uri": jwks_uri});
            let i = client
                .put(&format!("/v1/trusted-issuers/{}", seg(&id)), &body)
                .await?;
            print(opts.output, &i, describe_issuer);
        }
        IssuerCommand::Delete { id } => {
            client
                .delete(&format!("/v1/trusted-issuers/{}", seg(&id)))
                .await?;
            print(opts.output, &json!({"deleted": id}), |_| {
                format!("deleted trusted issuer {id}\n")
            });
        }
    }
    Ok(exit::OK)
}

fn describe_issuer(i: &Value) -> String {
    fields(&[
        ("id", text(i, "id")),
        ("issuer", text(i, "issuer")),
        ("audiences", text(i, "audiences")),
        ("jwks uri", text(i, "jwks_uri")),
        ("keys", text(&i["keys"], "count")),
        ("keys fetched", text(&i["keys"], "fetched_at")),
        ("key error", text(&i["keys"], "error")),
    ])
}
