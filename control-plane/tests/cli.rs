//! The client commands (`credmgr provider ...`) as processes against a live control plane
//! (the real binary on SQLite): what they print, their exit codes, and that no secret is
//! ever printed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_credmgr");
const ADMIN: &str = "cli-test-admin-token-0123456789";
const SECRET: &str = "cli-test-client-secret-abcdef";

/// The control plane, killed on drop.
struct Server {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let key = Command::new(BIN)
        .args(["gen-key", "--id", "k1"])
        .output()
        .unwrap();
    let mut child = Command::new(BIN)
        .arg("serve")
        .env_clear()
        .env("CREDMGR_LISTEN", "127.0.0.1:0")
        .env(
            "CREDMGR_DATABASE_URL",
            format!("sqlite://{}", dir.path().join("credmgr.db").display()),
        )
        .env("CREDMGR_ADMIN_TOKEN", ADMIN)
        .env(
            "CREDMGR_KEYS",
            String::from_utf8(key.stdout).unwrap().trim(),
        )
        // Token requests to the unreachable provider below fail at once.
        .env("CREDMGR_PROVIDER_TIMEOUT", "2s")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("credmgr listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    Server {
        child,
        url,
        _dir: dir,
    }
}

/// Runs `credmgr ARGS` against `server`; stdin empty.
fn cli(server: &Server, args: &[&str]) -> Output {
    cli_with(server, args, &[])
}

fn cli_with(server: &Server, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_clear()
        .env("CREDMGR_URL", &server.url)
        .env("CREDMGR_ADMIN_TOKEN", ADMIN)
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!all.contains(SECRET), "client secret printed: {all}");
    assert!(!all.contains(ADMIN), "admin token printed: {all}");
    out
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap()
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(o)))
}

#[test]
fn an_operator_sets_up_providers_and_sees_what_is_broken() {
    let s = start();

    // The catalogue, and one type's parameters with an example command.
    let types = cli(&s, &["provider", "types"]);
    assert_eq!(code(&types), 0, "{}", stderr(&types));
    assert!(stdout(&types).contains("entra-id") && stdout(&types).contains("tenant"));
    let keycloak = cli(&s, &["provider", "types", "keycloak"]);
    assert!(stdout(&keycloak).contains("--param base_url=https://keycloak.example.com"));
    assert_eq!(code(&cli(&s, &["provider", "types", "nope"])), 3);

    // A preset with its parameters, authorization code: not connected until consent.
    let created = cli_with(
        &s,
        &[
            "provider",
            "create",
            "kc",
            "--type",
            "keycloak",
            "--param",
            "base_url=https://keycloak.example.com",
            "--param",
            "realm=staff",
            "--client-id",
            "credmgr",
            "--redirect-url",
            "https://app.example.com/done",
        ],
        &[("CREDMGR_CLIENT_SECRET", SECRET)],
    );
    assert_eq!(code(&created), 0, "{}", stderr(&created));
    assert!(
        stdout(&created)
            .contains("https://keycloak.example.com/realms/staff/protocol/openid-connect/token"),
        "{}",
        stdout(&created)
    );
    assert!(stdout(&created).contains("set (write-only)"));

    // The same id again: exit 4; a missing parameter: exit 1 with the API's message.
    let again = cli_with(
        &s,
        &[
            "provider",
            "create",
            "kc",
            "--type",
            "keycloak",
            "--client-id",
            "x",
        ],
        &[("CREDMGR_CLIENT_SECRET", SECRET)],
    );
    assert_eq!(code(&again), 4);
    assert!(stderr(&again).contains("--replace"), "{}", stderr(&again));
    let missing = cli_with(
        &s,
        &[
            "provider",
            "create",
            "kc2",
            "--type",
            "keycloak",
            "--client-id",
            "x",
        ],
        &[("CREDMGR_CLIENT_SECRET", SECRET)],
    );
    assert_eq!(code(&missing), 1);
    assert!(
        stderr(&missing).contains("needs the parameter `base_url`")
            && stderr(&missing).contains("invalid_request, HTTP 400"),
        "{}",
        stderr(&missing)
    );

    // A connection awaiting consent: show says so, exits 7, and names the command.
    assert_eq!(code(&cli(&s, &["connection", "create", "kc", "alice"])), 0);
    let show = cli(&s, &["connection", "show", "kc", "alice"]);
    assert_eq!(code(&show), 7);
    assert!(stdout(&show).contains("not_connected"));
    assert!(
        stdout(&show).contains("credmgr login-link kc alice"),
        "{}",
        stdout(&show)
    );

    // The login link, to the only allowed redirect URL.
    let link = cli(&s, &["login-link", "kc", "alice", "-o", "json"]);
    assert_eq!(code(&link), 0, "{}", stderr(&link));
    let url = json(&link)["login_url"].as_str().unwrap().to_owned();
    assert!(
        url.starts_with(&format!("{}/oauth2/login/", s.url)),
        "{url}"
    );

    // Client credentials against a token endpoint nobody listens on: broken, and why.
    let cc = cli_with(
        &s,
        &[
            "provider",
            "create",
            "svc",
            "--type",
            "oauth2",
            "--grant",
            "client_credentials",
            "--token-url",
            "http://127.0.0.1:9/token",
            "--client-id",
            "svc",
        ],
        &[("CREDMGR_CLIENT_SECRET", SECRET)],
    );
    assert_eq!(code(&cc), 0, "{}", stderr(&cc));
    assert_eq!(code(&cli(&s, &["connection", "create", "svc", "batch"])), 0);
    let broken = cli(&s, &["connection", "show", "svc", "batch"]);
    assert_eq!(code(&broken), 7);
    assert!(
        stdout(&broken).contains("provider_unreachable")
            && stdout(&broken).contains("what to do: The provider's token endpoint did not answer"),
        "{}",
        stdout(&broken)
    );

    // Lists: a table for people, the API's JSON for scripts.
    let list = cli(&s, &["connection", "list"]);
    assert_eq!(code(&list), 0);
    let table = stdout(&list);
    assert!(table.starts_with("PROVIDER  CONNECTION  STATUS"), "{table}");
    assert!(
        table.contains("kc        alice       not_connected"),
        "{table}"
    );
    let listed = json(&cli(&s, &["connection", "list", "svc", "--output", "json"]));
    assert_eq!(listed[0]["error"]["code"], "provider_unreachable");
    let providers = stdout(&cli(&s, &["provider", "list"]));
    assert!(providers.contains("0/1"), "{providers}");

    // Policies and issuers.
    let policy = cli(
        &s,
        &[
            "policy",
            "add",
            "svc",
            "batch",
            "edge",
            "--gateway",
            "edge-1",
        ],
    );
    assert_eq!(code(&policy), 0, "{}", stderr(&policy));
    assert!(stdout(&cli(&s, &["policy", "list", "svc", "batch"])).contains("gateway  edge-1"));
    let no_identity = cli(&s, &["policy", "add", "svc", "batch", "p2"]);
    assert_eq!(code(&no_identity), 2);
    let issuer = cli(
        &s,
        &[
            "issuer",
            "add",
            "corp",
            "--issuer",
            "https://login.example.com/",
            "--audience",
            "api://credmgr",
            "--jwks-uri",
            "https://login.example.com/keys",
        ],
    );
    assert_eq!(code(&issuer), 0, "{}", stderr(&issuer));
    assert!(stdout(&cli(&s, &["issuer", "list"])).contains("https://login.example.com/"));

    // Keys: the active key wraps the two client secrets.
    let keys = stdout(&cli(&s, &["keys"]));
    assert!(keys.contains("k1   yes     yes         2"), "{keys}");

    // Status: two connections need attention.
    let status = cli(&s, &["status"]);
    assert_eq!(code(&status), 7);
    assert!(
        stdout(&status).contains("0 connected, 1 not connected, 1 error"),
        "{}",
        stdout(&status)
    );

    // Not found, wrong token, unreachable.
    let gone = cli(&s, &["connection", "show", "kc", "bob"]);
    assert_eq!(code(&gone), 3);
    assert!(stderr(&gone).contains("bob"), "{}", stderr(&gone));
    let wrong = cli_with(
        &s,
        &["provider", "list"],
        &[("CREDMGR_ADMIN_TOKEN", "wrong")],
    );
    assert_eq!(code(&wrong), 5);
    assert!(stderr(&wrong).contains("CREDMGR_ADMIN_TOKEN"));
    let down = cli_with(&s, &["status"], &[("CREDMGR_URL", "http://127.0.0.1:9")]);
    assert_eq!(code(&down), 6);
    assert!(stderr(&down).contains("unreachable"), "{}", stderr(&down));

    // Deleting.
    assert_eq!(code(&cli(&s, &["provider", "delete", "svc"])), 0);
    assert_eq!(code(&cli(&s, &["provider", "show", "svc"])), 3);
}
