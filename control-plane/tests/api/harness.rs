use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use credmgr_control_plane::auth::GatewayKey;
use credmgr_control_plane::crypto::{Aad, KeyEncryptionKey, Keyring};
use credmgr_control_plane::store::{DatabaseUrl, LinkLimits, TokenRecord};
use credmgr_control_plane::{app, AppState, Config};
use http_body_util::BodyExt as _;
use secrecy::ExposeSecret as _;
use serde_json::Value;
use tower::ServiceExt as _;

pub use crate::fixtures::*;
use crate::pg::TestDatabase;

pub const ADMIN: &str = "admin-token-for-tests-0123456789";
pub const GATEWAY_KEY: &str = "gateway-key-for-tests-0123456789";
pub const CLIENT_SECRET: &str = "very-secret-client-secret-4f9a2c";
/// Self-service login links per minute in tests: per caller, per connection.
pub const LINK_LIMITS: LinkLimits = LinkLimits {
    per_caller: 8,
    per_connection: 4,
};

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
        // The key also in a key file, as operators who rotate keep it: a test can add a key
        // and reload (`POST /v1/keys/reload`).
        let key_file = dir.path().join("keys");
        std::fs::write(&key_file, format!("{key_line}\n")).unwrap();
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
            key_file: Some(key_file),
            active_key_id: None,
            provider_timeout,
            public_url: None,
            login_link_ttl: Duration::from_secs(600),
            self_service_limits: LINK_LIMITS,
            refresh_skew: Duration::from_secs(60),
            forced_refresh_interval: Duration::from_secs(10),
            refresh_interval: Duration::ZERO,
            refresh_concurrency: credmgr_control_plane::tokens::scheduler::DEFAULT_CONCURRENCY,
            access_refresh: Duration::from_secs(30),
            http: Default::default(),
            events: credmgr_control_plane::config::EventSettings {
                webhooks: credmgr_control_plane::webhooks::Settings {
                    allow_loopback_http: true,
                    retry_base: Duration::from_secs(1),
                    ..Default::default()
                },
                ..Default::default()
            },
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

    /// Adds a new key `id` to the key file and names it active (a reload picks it up);
    /// returns the new key's line, to search for.
    pub fn add_active_key(&self, id: &str) -> String {
        let new = KeyEncryptionKey::generate_line(id);
        let new = new.expose_secret();
        let text = format!("{}\n{new}\nactive={id}\n", self.key_line);
        std::fs::write(self.dir.path().join("keys"), text).unwrap();
        new.to_owned()
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
        let bearer = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = bearer
            .iter()
            .map(|b| ("authorization", b.as_str()))
            .collect();
        self.raw(request(method, uri, &headers, body)).await
    }

    /// A request with exactly these headers and no body.
    pub async fn call_with_headers(
        &self,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
    ) -> Reply {
        self.raw(request(method, uri, headers, None)).await
    }

    /// A management request made only if the resource's ETag matches `if_match`.
    pub async fn admin_if_match(
        &self,
        method: Method,
        uri: &str,
        if_match: &str,
        body: Option<Value>,
    ) -> Reply {
        let bearer = format!("Bearer {ADMIN}");
        let headers = [("authorization", bearer.as_str()), ("if-match", if_match)];
        self.raw(request(method, uri, &headers, body)).await
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

    /// A client-credentials provider `p` whose token endpoint is a closed port, and its
    /// connection `c` for the test gateway: fetching a token always fails.
    pub async fn unreachable_connection(&self, p: &str, c: &str) {
        self.provider(p, &closed_port_url()).await;
        let r = self.connection(p, c).await;
        assert_eq!(r.status, StatusCode::CREATED, "{p}/{c}: {}", r.json);
    }

    /// Stores `token` as fetched now, due in 48 minutes and expiring in an hour; returns
    /// those three times.
    pub async fn store_fresh_token(&self, p: &str, c: &str, token: &str) -> (i64, i64, i64) {
        let times = (now(), now() + 2880, now() + 3600);
        self.store_token(p, c, token, times.0, times.1, times.2)
            .await;
        times
    }

    /// A connection as the management API shows it.
    pub async fn shown_connection(&self, p: &str, c: &str) -> Value {
        let r = self
            .admin(
                Method::GET,
                &format!("/v1/providers/{p}/connections/{c}"),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{p}/{c}: {}", r.json);
        r.json
    }

    /// A provider as the management API shows it, less what a PUT does not take: a body to
    /// send back.
    pub async fn provider_to_resend(&self, id: &str) -> Value {
        let mut body = self
            .admin(Method::GET, &format!("/v1/providers/{id}"), None)
            .await
            .json;
        let fields = body
            .as_object_mut()
            .unwrap_or_else(|| panic!("provider {id} not found"));
        for k in ["id", "etag", "created_at", "updated_at", "client_secret"] {
            fields.remove(k);
        }
        body
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
        self.put_token(p, c, &record).await;
    }

    /// Stores `record` for the connection's current configuration, and checks it was stored.
    pub async fn put_token(&self, p: &str, c: &str, record: &TokenRecord) {
        let conn = self
            .state
            .store
            .get_connection(p, c)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("no connection {p}/{c}"));
        let stored = self
            .state
            .store
            .put_token(p, c, conn.token_generation, record)
            .await
            .unwrap();
        assert!(stored, "the token of {p}/{c} was not stored");
    }

    /// The connection's stored token, which must exist.
    pub async fn stored_token(&self, p: &str, c: &str) -> TokenRecord {
        self.state
            .store
            .get_token(p, c)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("no token stored for {p}/{c}"))
    }

    /// Whether the connection has a stored token.
    pub async fn has_token(&self, p: &str, c: &str) -> bool {
        self.state.store.get_token(p, c).await.unwrap().is_some()
    }

    /// Changes the connection's stored token with `change` and stores it back.
    pub async fn change_token(&self, p: &str, c: &str, change: impl FnOnce(&mut TokenRecord)) {
        let mut record = self.stored_token(p, c).await;
        change(&mut record);
        self.put_token(p, c, &record).await;
    }

    pub fn metrics(&self) -> String {
        self.state.metrics.encode().unwrap()
    }

    /// The metrics hold this line (a sample with its value).
    pub fn assert_metric(&self, line: &str) {
        let metrics = self.metrics();
        assert!(metrics.contains(line), "{line} not in {metrics}");
    }

    /// None of `secrets` is in the database at rest, in plaintext.
    pub async fn assert_not_at_rest(&self, secrets: &[&str]) {
        for (place, bytes) in self.db_contents().await {
            for secret in secrets {
                assert!(!holds(&bytes, secret), "{secret} in {place}");
            }
        }
    }
}

/// A request with these headers, and `body` as JSON if there is one.
fn request(
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> Request<Body> {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let body = match body {
        Some(v) => {
            req = req.header("content-type", "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    req.body(body).unwrap()
}
