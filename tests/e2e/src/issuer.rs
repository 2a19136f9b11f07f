//! Callers with JWTs, as the per-user tests make them: a trusted issuer run by the test itself
//! (an ES256 key whose JWKS a small server here publishes, so that thousands of users' JWTs
//! cost nothing to make), and requests through Envoy as one of its users.

use crate::local_server::LocalServer;
use crate::{http, status_and_json, ControlPlane, Envoy};
use jwt_compact::alg::Es256;
use jwt_compact::jwk::JsonWebKey;
use jwt_compact::{Algorithm, AlgorithmExt, Claims, Header};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};

/// The audience of the issuer's JWTs that the per-user Envoy configurations expect.
pub const AUDIENCE: &str = "api://per-user";

pub type Key = <Es256 as Algorithm>::SigningKey;

/// The issuer: its key, and the server publishing its JWKS at `<url>/jwks`.
pub struct Issuer {
    pub url: String,
    pub key: Key,
    _server: LocalServer,
}

fn serve_jwks(stream: TcpStream, jwks: &Mutex<String>) {
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
            break;
        }
    }
    let body = jwks.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
}

impl Issuer {
    pub fn start() -> Issuer {
        let key = Key::random(&mut rand::rngs::OsRng);
        let mut jwk = serde_json::to_value(JsonWebKey::from(key.verifying_key()))
            .unwrap_or_else(|e| panic!("the issuer's JWK: {e}"));
        jwk["kid"] = json!("k1");
        jwk["alg"] = json!("ES256");
        let jwks = Arc::new(Mutex::new(json!({"keys": [jwk]}).to_string()));
        let server = LocalServer::start("JWKS server", jwks, serve_jwks);
        Issuer {
            url: format!("http://{}", server.addr),
            key,
            _server: server,
        }
    }

    /// A JWT of user `sub`, valid for an hour.
    pub fn jwt(&self, sub: &str) -> String {
        sign(&self.key, &self.url, sub, 3600)
    }

    /// Makes the control plane trust this issuer's JWTs (trusted issuer `users`).
    pub fn trusted_by(&self, cp: &ControlPlane) {
        let (status, body) = cp.admin(
            "PUT",
            "/v1/trusted-issuers/users",
            Some(json!({"issuer": self.url, "audiences": [AUDIENCE],
                        "jwks_uri": format!("{}/jwks", self.url), "leeway_seconds": 0})),
        );
        assert_eq!(status, 201, "{body}");
    }

    /// Creates user `sub`'s connection `u-<sub>` of `provider`, with one access policy naming
    /// that user of this issuer: usable by nobody else.
    pub fn connect_user(&self, cp: &ControlPlane, provider: &str, sub: &str) {
        let connection = format!("u-{sub}");
        cp.create_connection(provider, &connection, &format!("{sub}'s account"));
        cp.allow(
            provider,
            &connection,
            "user",
            json!({"kind": "user", "issuer": self.url, "object_id": sub}),
        );
    }
}

/// A JWT for `sub` claiming to come from `iss`, signed by `key`, valid for `ttl` seconds.
pub fn sign(key: &Key, iss: &str, sub: &str, ttl: i64) -> String {
    let Value::Object(custom) = json!({"iss": iss, "aud": AUDIENCE, "sub": sub}) else {
        unreachable!()
    };
    let mut claims = Claims::new(custom);
    claims.expiration = chrono::DateTime::from_timestamp(crate::unix_now() + ttl, 0);
    Es256
        .token(&Header::empty().with_key_id("k1"), &claims, key)
        .unwrap_or_else(|e| panic!("signing a JWT: {e}"))
}

/// A request through `envoy` to `path` as the holder of `jwt` (with `extra` headers): the
/// status, and what the backend saw (or the filter's JSON answer).
pub fn call_as(envoy: &Envoy, path: &str, jwt: &str, extra: &[(&str, &str)]) -> (u16, Value) {
    let (status, _, body) = call_as_with_headers(envoy, path, jwt, extra);
    (status, body)
}

/// As [`call_as`], with the response's headers.
pub fn call_as_with_headers(
    envoy: &Envoy,
    path: &str,
    jwt: &str,
    extra: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = http().get(format!("{}{path}", envoy.url)).bearer_auth(jwt);
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let resp = req
        .send()
        .unwrap_or_else(|e| panic!("request through Envoy: {e}"));
    let headers = resp.headers().clone();
    let (status, body) = status_and_json(resp);
    (status, headers, body)
}

/// The bearer token the backend received.
pub fn seen_token(seen: &Value) -> String {
    let sent = seen["headers"]["authorization"]
        .as_str()
        .unwrap_or_default();
    sent.strip_prefix("Bearer ")
        .unwrap_or_else(|| panic!("no bearer token reached the backend: {seen}"))
        .to_owned()
}
