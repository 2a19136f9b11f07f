//! `credmgr login-link`, `credmgr keys` and `credmgr status`.

use serde_json::{json, Value};

use super::args::{exit, KeysArgs, LoginLinkArgs, StatusArgs};
use super::client::{seg, Client, Failure};
use super::connections;
use super::output::{fields, items, print, text, Table};

pub async fn login_link(args: LoginLinkArgs) -> Result<u8, Failure> {
    let client = Client::new(&args.opts)?;
    let (p, c) = (&args.provider, &args.connection);
    let redirect = match args.redirect_url {
        Some(r) => r,
        None => {
            let provider = client.get(&format!("/v1/providers/{}", seg(p))).await?;
            match items(&provider["allowed_redirect_urls"]) {
                [only] => only.as_str().unwrap_or_default().to_owned(),
                [] => {
                    return Err(Failure::refused(format!(
                        "provider `{p}` has no allowed_redirect_urls: add one (credmgr provider \
                         create {p} --replace ... --redirect-url URL) so the user has somewhere \
                         to land after consent"
                    )))
                }
                _ => {
                    return Err(Failure::new(
                        exit::USAGE,
                        format!(
                            "provider `{p}` allows several redirect URLs: choose one with \
                             --redirect-url ({})",
                            text(&provider, "allowed_redirect_urls")
                        ),
                    ))
                }
            }
        }
    };
    let path = format!(
        "/v1/providers/{}/connections/{}/login-links",
        seg(p),
        seg(c)
    );
    let link = client
        .post(&path, Some(&json!({"post_login_redirect_url": redirect})))
        .await?;
    print(args.opts.output, &link, |l| {
        format!(
            "{}\n\nOpen it in the browser of the account's owner. It works once and expires at \
             {}.\n",
            text(l, "login_url"),
            text(l, "expires_at")
        )
    });
    Ok(exit::OK)
}

pub async fn keys(args: KeysArgs) -> Result<u8, Failure> {
    let client = Client::new(&args.opts)?;
    let report = if args.reload {
        client.post("/v1/keys/reload", None).await?
    } else {
        client.get("/v1/keys").await?
    };
    print(args.opts.output, &report, |r| {
        let mut t = Table::new(&["KEY", "ACTIVE", "CONFIGURED", "SECRETS", "REMOVABLE"]);
        for k in items(&r["keys"]) {
            t.row(vec![
                text(k, "id"),
                yes(&k["active"]),
                yes(&k["configured"]),
                text(k, "envelopes"),
                yes(&k["removable"]),
            ]);
        }
        let w = &r["rewrap"];
        format!(
            "{}\nre-wrap: {}, {} re-wrapped, {} failed, last finished {}\n",
            t.render(),
            if w["running"] == true {
                "running"
            } else {
                "idle"
            },
            text(w, "rewrapped"),
            text(w, "failed"),
            text(w, "last_finished_at"),
        )
    });
    Ok(exit::OK)
}

fn yes(v: &Value) -> String {
    if *v == true { "yes" } else { "no" }.to_owned()
}

pub async fn status(args: StatusArgs) -> Result<u8, Failure> {
    let client = Client::new(&args.opts)?;
    // `/readyz` answers 503 with a body when the database does not: that is a status too.
    let ready = match client.get("/readyz").await {
        Ok(v) => v,
        Err(f) if f.code == exit::UNAVAILABLE && !f.message.contains("unreachable") => {
            json!({"status": "not_ready", "reason": f.message})
        }
        Err(f) => return Err(f),
    };
    let providers = client.get("/v1/providers").await?;
    let conns = connections::list(&client, None).await?;
    let keys = client.get("/v1/keys").await?;
    let count = |s: &str| items(&conns).iter().filter(|c| c["status"] == s).count();
    let attention: Vec<Value> = items(&conns)
        .iter()
        .filter(|c| c["status"] != "connected")
        .cloned()
        .collect();
    let summary = json!({
        "url": client.base(),
        "ready": ready,
        "providers": items(&providers).len(),
        "connections": {"connected": count("connected"), "not_connected": count("not_connected"),
                        "error": count("error")},
        "active_key_id": keys["active_key_id"],
        "needs_attention": attention,
    });
    print(args.opts.output, &summary, |s| {
        let c = &s["connections"];
        let mut out = fields(&[
            (
                "control plane",
                format!("{} ({})", text(s, "url"), text(&s["ready"], "status")),
            ),
            ("store", text(&s["ready"], "store")),
            ("providers", text(s, "providers")),
            (
                "connections",
                format!(
                    "{} connected, {} not connected, {} error",
                    c["connected"], c["not_connected"], c["error"]
                ),
            ),
            ("active key", text(s, "active_key_id")),
        ]);
        if !attention.is_empty() {
            out.push_str("\nneeds attention (credmgr connection show PROVIDER CONNECTION says what to do):\n");
            out.push_str(&connections::table(&s["needs_attention"]));
        }
        out
    });
    let db_down = summary["ready"]["status"] != "ready";
    Ok(if db_down {
        exit::UNAVAILABLE
    } else if attention.is_empty() {
        exit::OK
    } else {
        exit::ATTENTION
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yes_no() {
        assert_eq!(yes(&json!(true)), "yes");
        assert_eq!(yes(&json!(false)), "no");
        assert_eq!(yes(&Value::Null), "no");
    }
}
