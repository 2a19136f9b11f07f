use std::path::PathBuf;
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

pub const ADMIN: &str = "admin-token-for-tests-0123456789";
pub const GATEWAY_KEY: &str = "gateway-key-for-tests-0123456789";
pub const CLIENT_SECRET: &str = "very-secret-client-secret-4f9a2c";

pub struct Harness {
    pub state: AppState,
    app: Router,
    pub dir: tempfile::TempDir,
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
        let dir = tempfile::tempdir().unwrap();
        let line = KeyEncryptionKey::generate_line("test-key");
        let key = KeyEncryptionKey::parse(line.expose_secret()).unwrap();
        let config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            database_url: DatabaseUrl::new(format!(
                "sqlite://{}",
                dir.path().join("credmgr.db").display()
            )),
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
            access_refresh: Duration::from_secs(30),
        };
        let state = AppState::build(config).await.unwrap();
        Harness {
            app: app(state.clone()),
            state,
            dir,
            seen: Default::default(),
        }
    }

    pub fn db_files(&self) -> Vec<PathBuf> {
        ["credmgr.db", "credmgr.db-wal", "credmgr.db-shm"]
            .iter()
            .map(|f| self.dir.path().join(f))
            .filter(|p| p.exists())
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
