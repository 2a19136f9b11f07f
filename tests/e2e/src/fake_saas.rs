//! A SaaS identity provider that cannot be reached from here (GitHub, Salesforce, Slack...),
//! stood in for by a small HTTP server on 127.0.0.1 and a free port. Its token endpoint
//! answers with the provider's documented responses (`tests/provider-responses/`) byte for
//! byte; its authorization endpoint sends the browser straight back with a code, as the
//! provider does once its user consents; and it answers introspection for the tokens the test
//! declares active, so the real demo backend can check the token that reached it (and the
//! test can see exactly which token that was).

use crate::local_server::LocalServer;
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};

/// A documented response: status, `Content-Type`, body.
pub struct Answer {
    pub status: u16,
    pub content_type: &'static str,
    pub body: &'static str,
}

#[derive(Default)]
struct State {
    answers: VecDeque<Answer>,
    token_requests: Vec<HashMap<String, String>>,
    active: HashMap<String, Value>,
    introspected: Vec<String>,
    /// With no answer queued, the token endpoint mints a new active token (a fast provider
    /// for thousands of client-credentials connections, each with a token of its own).
    minting: bool,
    minted: u64,
}

pub struct FakeSaas {
    pub url: String,
    state: Arc<Mutex<State>>,
    _server: LocalServer,
}

impl FakeSaas {
    pub fn start() -> FakeSaas {
        let state = Arc::new(Mutex::new(State::default()));
        let server = LocalServer::start("fake provider", state.clone(), serve);
        FakeSaas {
            url: format!("http://{}", server.addr),
            state,
            _server: server,
        }
    }

    /// A provider whose token endpoint, when no answer is queued, hands out a new token on
    /// every request (`minted-<n>`, valid for an hour) and reports it active to introspection.
    pub fn start_minting() -> FakeSaas {
        let saas = FakeSaas::start();
        saas.lock().minting = true;
        saas
    }

    pub fn token_url(&self) -> String {
        format!("{}/token", self.url)
    }

    pub fn authorization_url(&self) -> String {
        format!("{}/authorize", self.url)
    }

    pub fn introspection_url(&self) -> String {
        format!("{}/introspect", self.url)
    }

    /// The token endpoint's next answer.
    pub fn answer(&self, status: u16, content_type: &'static str, body: &'static str) {
        self.lock().answers.push_back(Answer {
            status,
            content_type,
            body,
        });
    }

    /// Introspection reports `token` active, with `scope`.
    pub fn activate(&self, token: &str, scope: &str) {
        self.lock().active.insert(
            token.to_owned(),
            json!({"active": true, "token_type": "Bearer", "sub": "alice",
                   "client_id": "client-1", "scope": scope}),
        );
    }

    /// The form of each token request so far.
    pub fn token_requests(&self) -> Vec<HashMap<String, String>> {
        self.lock().token_requests.clone()
    }

    /// Every token the backend asked about, in order.
    pub fn introspected(&self) -> Vec<String> {
        self.lock().introspected.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One request, one response, then the connection is closed.
fn serve(stream: TcpStream, state: &Mutex<State>) {
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, target) = (
        parts.next().unwrap_or("").to_owned(),
        parts.next().unwrap_or("").to_owned(),
    );
    let mut length = 0usize;
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_owned());
            if k == "content-length" {
                length = v.parse().unwrap_or(0);
            }
            headers.insert(k, v);
        }
    }
    let mut body = vec![0u8; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let url = url::Url::parse(&format!("http://fake{target}"))
        .unwrap_or_else(|_| url::Url::parse("http://fake/").unwrap_or_else(|e| panic!("{e}")));
    let query: HashMap<String, String> = url.query_pairs().into_owned().collect();
    let (status, content_type, body, location) = {
        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
        match (method.as_str(), url.path()) {
            ("GET", "/authorize") => {
                let mut back = url::Url::parse(query.get("redirect_uri").map_or("", |v| v))
                    .unwrap_or_else(|e| panic!("redirect_uri: {e}"));
                back.query_pairs_mut()
                    .append_pair("code", "fake-code")
                    .append_pair("state", query.get("state").map_or("", |v| v));
                (302, "text/plain", String::new(), Some(back.to_string()))
            }
            ("POST", "/token") => {
                let mut seen = form.clone();
                if let Some(a) = headers.get("authorization") {
                    seen.insert("(authorization)".into(), a.clone());
                }
                if let Some(a) = headers.get("accept") {
                    seen.insert("(accept)".into(), a.clone());
                }
                s.token_requests.push(seen);
                match s.answers.pop_front() {
                    Some(a) => (a.status, a.content_type, a.body.to_owned(), None),
                    None if s.minting => {
                        s.minted += 1;
                        let token = format!("minted-{}", s.minted);
                        s.active.insert(
                            token.clone(),
                            json!({"active": true, "token_type": "Bearer", "scope": "api:read"}),
                        );
                        let body = json!({"access_token": token, "token_type": "Bearer",
                                          "expires_in": 3600, "scope": "api:read"});
                        (200, "application/json", body.to_string(), None)
                    }
                    None => (500, "text/plain", "no answer queued".into(), None),
                }
            }
            ("POST", "/introspect") => {
                let token = form.get("token").cloned().unwrap_or_default();
                s.introspected.push(token.clone());
                let info = s
                    .active
                    .get(&token)
                    .cloned()
                    .unwrap_or_else(|| json!({"active": false}));
                (200, "application/json", info.to_string(), None)
            }
            _ => (404, "text/plain", "not found".into(), None),
        }
    };
    let mut out = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    if let Some(l) = location {
        out.push_str(&format!("location: {l}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(&body);
    let mut stream = stream;
    let _ = stream.write_all(out.as_bytes());
}
