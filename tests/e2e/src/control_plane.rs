//! The credmgr control plane as a test starts it (`credmgr serve` on a database of its own),
//! and the REST calls the tests make to it: providers, connections, login links, access
//! policies and runtime tokens.

use crate::pg::TestDatabase;
use crate::stack::{random_hex, OAuthServer, READY_TIMEOUT};
use crate::{artifact, free_port, http, run_ok, Process};
use credmgr_common::RuntimeToken;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The credmgr control plane (`credmgr serve`) on its own SQLite file, or with
/// `CREDMGR_E2E_STORE=postgres` its own PostgreSQL database; a replica started with
/// `CREDMGR_DATABASE_URL` in its environment shares that database instead.
pub struct ControlPlane {
    // Field order is drop order: the process stops before its database is dropped.
    pub process: Process,
    pub url: String,
    pub port: u16,
    pub admin_token: String,
    pub gateway_key: String,
    /// What `CREDMGR_DATABASE_URL` was.
    pub database_url: String,
    /// The SQLite file, when the store is SQLite.
    pub database: PathBuf,
    /// The PostgreSQL database this control plane created (and drops when it goes).
    pub pg: Option<std::sync::Arc<TestDatabase>>,
}

impl ControlPlane {
    pub fn start(dir: &Path) -> ControlPlane {
        ControlPlane::start_with(dir, free_port(), &[])
    }

    /// Starts on a chosen port (a provider's redirect URI names it before the control plane
    /// runs) with extra environment, such as `CREDMGR_LOGIN_LINK_TTL`.
    pub fn start_with(dir: &Path, port: u16, env: &[(&str, &str)]) -> ControlPlane {
        let bin = artifact("CREDMGR_BIN", "target/debug/credmgr");
        let key = run_ok(
            "credmgr gen-key",
            Command::new(&bin).args(["gen-key", "--id", "test-key"]),
        );
        let key = String::from_utf8_lossy(&key).trim().to_owned();
        let database = dir.join("credmgr.db");
        let shared = env
            .iter()
            .find(|(k, _)| *k == "CREDMGR_DATABASE_URL")
            .map(|(_, v)| (*v).to_owned());
        let pg = (shared.is_none() && crate::pg::suite_store_is_postgres())
            .then(|| std::sync::Arc::new(TestDatabase::create()));
        let database_url = match (&shared, &pg) {
            (Some(url), _) => url.clone(),
            (None, Some(db)) => db.url.clone(),
            (None, None) => format!("sqlite://{}", database.display()),
        };
        // Replicas share their credentials: given in `env`, they are used as they are.
        let given = |name: &str| env.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
        let admin_token = given("CREDMGR_ADMIN_TOKEN")
            .map_or_else(|| format!("admin-{}", random_hex()), str::to_owned);
        let gateway_key = given("CREDMGR_GATEWAY_KEYS")
            .and_then(|v| v.strip_prefix("test-gateway="))
            .map_or_else(|| format!("gw-{}", random_hex()), str::to_owned);
        let mut cmd = Command::new(&bin);
        cmd.arg("serve")
            .env("CREDMGR_LISTEN", format!("127.0.0.1:{port}"))
            .env("CREDMGR_DATABASE_URL", &database_url)
            .env("CREDMGR_ADMIN_TOKEN", &admin_token)
            .env(
                "CREDMGR_GATEWAY_KEYS",
                format!("test-gateway={gateway_key}"),
            )
            .env("RUST_LOG", "info,credmgr=debug");
        // A test that rotates keys brings its own key file instead.
        if !env.iter().any(|(k, _)| *k == "CREDMGR_KEY_FILE") {
            cmd.env("CREDMGR_KEYS", key);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut process = Process::spawn("control-plane", cmd, dir);
        let url = process.wait_for_line("credmgr listening on ", READY_TIMEOUT);
        ControlPlane {
            process,
            url,
            port,
            admin_token,
            gateway_key,
            database_url,
            database,
            pg,
        }
    }

    /// What the store holds at rest, by name, to search for secrets: the SQLite files (WAL
    /// included), or every row of the PostgreSQL database (BYTEA decoded).
    pub fn database_contents(&self) -> Vec<(String, Vec<u8>)> {
        if let Some(db) = &self.pg {
            return vec![(format!("database {}", db.name), db.contents())];
        }
        let db = self.database.display().to_string();
        ["", "-wal", "-shm"]
            .iter()
            .filter_map(|suffix| {
                let name = format!("{db}{suffix}");
                std::fs::read(&name).ok().map(|bytes| (name, bytes))
            })
            .collect()
    }

    /// A management API call; returns the status and the JSON body (`null` when empty).
    pub fn admin(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap_or(reqwest::Method::GET);
        let mut req = http()
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.admin_token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().unwrap_or_else(|e| panic!("calling {path}: {e}"));
        let status = resp.status().as_u16();
        let text = resp.text().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Creates a client-credentials provider for `oauth` and one connection under it.
    pub fn create_client_credentials_connection(
        &self,
        oauth: &OAuthServer,
        provider: &str,
        connection: &str,
    ) -> Value {
        self.create_provider(
            provider,
            json!({
                "display_name": "Test OAuth server",
                "identity_provider": "oauth2",
                "grant_type": "client_credentials",
                "client_id": "credmgr-demo",
                "client_secret": "credmgr-demo-secret",
                "token_url": oauth.token_url(),
                "scopes": ["api:read"],
            }),
        );
        let body = self.create_connection(provider, connection, "Test service account");
        self.allow_test_gateway(provider, connection);
        body
    }

    /// Creates provider `provider` from `body` (the management API's provider fields).
    pub fn create_provider(&self, provider: &str, body: Value) {
        let (status, answer) = self.admin("PUT", &format!("/v1/providers/{provider}"), Some(body));
        assert_eq!(status, 201, "creating provider {provider}: {answer}");
    }

    /// Creates connection `connection` of `provider`; returns it as the API answered.
    pub fn create_connection(&self, provider: &str, connection: &str, display_name: &str) -> Value {
        let (status, body) = self.admin(
            "PUT",
            &format!("/v1/providers/{provider}/connections/{connection}"),
            Some(json!({ "display_name": display_name })),
        );
        assert_eq!(
            status, 201,
            "creating connection {provider}/{connection}: {body}"
        );
        body
    }

    /// A connection as the management API shows it.
    pub fn connection(&self, provider: &str, connection: &str) -> Value {
        let (status, body) = self.admin(
            "GET",
            &format!("/v1/providers/{provider}/connections/{connection}"),
            None,
        );
        assert_eq!(
            status, 200,
            "reading connection {provider}/{connection}: {body}"
        );
        body
    }

    /// Lets this control plane's test gateway (`test-gateway`, its gateway key) use a
    /// connection: the access policy every connection needs before a gateway may use it.
    pub fn allow_test_gateway(&self, provider: &str, connection: &str) {
        self.allow(
            provider,
            connection,
            "test-gateway",
            json!({"kind": "gateway", "name": "test-gateway"}),
        );
    }

    /// Adds (or replaces) an access policy `id` of a connection naming `identity`.
    pub fn allow(&self, provider: &str, connection: &str, id: &str, identity: Value) {
        let (status, body) = self.admin(
            "PUT",
            &format!("/v1/providers/{provider}/connections/{connection}/access-policies/{id}"),
            Some(json!({ "identity": identity })),
        );
        assert!(
            status == 201 || status == 200,
            "access policy {id} of {provider}/{connection}: {status} {body}"
        );
    }

    /// Removes access policy `id` of a connection.
    pub fn disallow(&self, provider: &str, connection: &str, id: &str) {
        let (status, body) = self.admin(
            "DELETE",
            &format!("/v1/providers/{provider}/connections/{connection}/access-policies/{id}"),
            None,
        );
        assert_eq!(status, 204, "deleting access policy {id}: {body}");
    }

    /// What a gateway gets from the runtime API.
    pub fn runtime_token(&self, provider: &str, connection: &str) -> RuntimeToken {
        let path = credmgr_common::runtime::token_path(provider, connection);
        let resp = http()
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.gateway_key)
            .send()
            .unwrap_or_else(|e| panic!("calling the runtime API: {e}"));
        assert_eq!(
            resp.status().as_u16(),
            200,
            "runtime API: {:?}",
            resp.text()
        );
        resp.json()
            .unwrap_or_else(|e| panic!("runtime API answer: {e}"))
    }
}
