use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use credmgr_control_plane::auth::GatewayKey;
use credmgr_control_plane::crypto::{Aad, KeyEncryptionKey, Keyring};
use credmgr_control_plane::store::{DatabaseUrl, TokenRecord};
use credmgr_control_plane::{app, AppState, Config};
use http_body_util::BodyExt as _;
use secrecy::ExposeSecret as _;
use serde_json::Value;
use tower::ServiceExt as _;

use crate::pg::TestDatabase;

pub const ADMIN: &str = "admin-token-for-tests-0123456789";
pub const GATEWAY_KEY: &str = "gateway-key-for-tests-0123456789";
pub const CLIENT_SECRET: &str = "very-secret-client-secret-4f9a2c";

pub struct Harness {
    pub state: AppState,
    app: Router,
    pub dir: tempfile::TempDir,
    /// With `CREDMGR_TEST_STORE=postgres`: the test's own PostgreSQL database.
    pub pg: Option<TestDatabase>,
    /// The database URL, for [`Harness::replica`].
    state_url: String,
    key_line: String,
    /// Every response body seen, to check that no secret ever left.
    pub seen: std::sync::Mutex<Vec<String>>,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub json: Value,
}

impl Harness {
    pub async fn new() -> Harness {
        Self::with_timeout(Duration::from_secs(2)).await
    }

    pub async fn with_timeout(provider_timeout: Duration) -> Harness {
        let pg = match std::env::var("CREDMGR_TEST_STORE").as_deref() {
            Ok("postgres") => Some(TestDatabase::create().await),
            Ok("sqlite") | Err(_) => None,
            Ok(other) => panic!("CREDMGR_TEST_STORE={other}: use sqlite or postgres"),
        };
        let key_line = KeyEncryptionKey::generate_line("test-key");
        Self::build(provider_timeout, pg, None, key_line.expose_secret()).await
    }

    /// A harness on its own PostgreSQL database, whatever `CREDMGR_TEST_STORE` says.
    pub async fn on_postgres(db: TestDatabase) -> Harness {
        let key_line = KeyEncryptionKey::generate_line("test-key");
        Self::build(
            Duration::from_secs(2),
            Some(db),
            None,
            key_line.expose_secret(),
        )
        .await
    }

    /// Another replica: its own state and router on this harness's database, with the same
    /// key (replicas share their key file).
    pub async fn replica(&self) -> Harness {
        let url = self.state_url.clone();
        Self::build(Duration::from_secs(2), None, Some(url), &self.key_line).await
    }

    async fn build(
        provider_timeout: Duration,
        pg: Option<TestDatabase>,
        shared_url: Option<String>,
        key_line: &str,
    ) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let database_url = match (&pg, shared_url) {
            (_, Some(url)) => url,
            (Some(db), None) => db.url.clone(),
            (None, None) => format!("sqlite://{}", dir.path().join("credmgr.db").display()),
        };
        let key = KeyEncryptionKey::parse(key_line).unwrap();
        let config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            database_url: DatabaseUrl::new(database_url.clone()),
            admin_token: ADMIN.into(),
            gateway_keys: vec![GatewayKey {
                name: "edge-1".into(),
                key: GATEWAY_KEY.into(),
            }],
            gateway_tls: None,
            keyring: Keyring::new(vec![key], None).unwrap(),
            key_file: None,
            active_key_id: None,
            provider_timeout,
            public_url: None,
            login_link_ttl: Duration::from_secs(600),
            refresh_skew: Duration::from_secs(60),
            refresh_interval: Duration::ZERO,
            refresh_concurrency: credmgr_control_plane::tokens::scheduler::DEFAULT_CONCURRENCY,
            access_refresh: Duration::from_secs(30),
        };
        let state = AppState::build(config).await.unwrap();
        Harness {
            app: app(state.clone()),
            state,
            dir,
            pg,
            state_url: database_url,
            key_line: key_line.to_owned(),
            seen: Default::default(),
        }
    }

    /// What the database holds at rest, to search for secrets: each SQLite file (WAL
    /// included), or every PostgreSQL row; by name.
    pub async fn db_contents(&self) -> Vec<(String, Vec<u8>)> {
        if let Some(db) = &self.pg {
            return vec![(format!("database {}", db.name), db.contents().await)];
        }
        ["credmgr.db", "credmgr.db-wal", "credmgr.db-shm"]
            .iter()
            .map(|f| self.dir.path().join(f))
            .filter(|p| p.exists())
            .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
            .collect()
    }

    pub async fn raw(&self, request: Request<Body>) -> Reply {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        self.seen.lock().unwrap().push(text.clone());
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Reply {
            status,
            headers,
            json,
        }
    }

    pub async fn call(
        &self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let body = match body {
            Some(v) => {
                req = req.header("content-type", "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        self.raw(req.body(body).unwrap()).await
    }

    /// A request with exactly these headers and no body.
    pub async fn call_with_headers(
        &self,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut req = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.raw(req.body(Body::empty()).unwrap()).await
    }

    pub async fn admin(&self, method: Method, uri: &str, body: Option<Value>) -> Reply {
        self.call(method, uri, Some(ADMIN), body).await
    }

    pub async fn runtime(&self, p: &str, c: &str) -> Reply {
        let path = credmgr_common::runtime::token_path(p, c);
        self.call(Method::GET, &path, Some(GATEWAY_KEY), None).await
    }

    /// Creates a provider whose token endpoint is `token_url`.
    pub async fn provider(&self, id: &str, token_url: &str) -> Reply {
        let r = self
            .admin(
                Method::PUT,
                &format!("/v1/providers/{id}"),
                Some(provider_body(token_url)),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
        r
    }

    /// Creates a connection that the test gateway (`edge-1`) may use.
    pub async fn connection(&self, p: &str, c: &str) -> Reply {
        let r = self
            .admin(
                Method::PUT,
                &format!("/v1/providers/{p}/connections/{c}"),
                Some(serde_json::json!({"display_name": "Test"})),
            )
            .await;
        if r.status == StatusCode::CREATED {
            self.allow_gateway(p, c).await;
        }
        r
    }

    /// Adds an access policy for the test gateway (`edge-1`) to a connection.
    pub async fn allow_gateway(&self, p: &str, c: &str) {
        let r = self
            .admin(
                Method::PUT,
                &format!("/v1/providers/{p}/connections/{c}/access-policies/edge-1"),
                Some(serde_json::json!({"identity": {"kind": "gateway", "name": "edge-1"}})),
            )
            .await;
        assert!(r.status.is_success(), "{}", r.json);
    }

    /// Stores a token for a connection as if it had been fetched at `obtained_at`.
    pub async fn store_token(
        &self,
        p: &str,
        c: &str,
        token: &str,
        obtained_at: i64,
        refresh_at: i64,
        expires_at: i64,
    ) {
        let conn = self
            .state
            .store
            .get_connection(p, c)
            .await
            .unwrap()
            .unwrap();
        let record = TokenRecord {
            refresh_token: None,
            access_token: self
                .state
                .keyring
                .encrypt(&Aad::connection_access_token(p, c), token.as_bytes())
                .unwrap(),
            refresh_token_expires_at: None,
            token_type: "Bearer".into(),
            claims: serde_json::from_value(
                serde_json::json!({"scope": "api:read", "token_type": "Bearer"}),
            )
            .unwrap(),
            obtained_at,
            expires_at,
            refresh_at,
        };
        assert!(self
            .state
            .store
            .put_token(p, c, conn.token_generation, &record)
            .await
            .unwrap());
    }

    pub fn metrics(&self) -> String {
        self.state.metrics.encode().unwrap()
    }
}

pub fn provider_body(token_url: &str) -> Value {
    serde_json::json!({
        "display_name": "Test provider",
        "identity_provider": "oauth2",
        "grant_type": "client_credentials",
        "client_id": "credmgr-demo",
        "client_secret": CLIENT_SECRET,
        "token_url": token_url,
        "scopes": ["api:read"],
        "token_params": {"audience": "https://api.example"}
    })
}

/// A 127.0.0.1 URL where nothing listens.
pub fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}/token")
}

pub fn now() -> i64 {
    credmgr_control_plane::clock::unix_now()
}

pub fn assert_error(r: &Reply, status: StatusCode, code: &str) {
    assert_eq!(r.status, status, "{}", r.json);
    assert_eq!(r.json["error"]["code"], code, "{}", r.json);
    assert!(
        r.json["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{}",
        r.json
    );
}
