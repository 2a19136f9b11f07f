//! A SaaS provider's token endpoint, which cannot be reached from here: it answers each
//! request with the next documented response from `tests/provider-responses/`, byte for
//! byte, and records what credmgr sent.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::http::{header, HeaderMap, StatusCode};
use axum::routing::post;

/// A documented response: status, `Content-Type`, body.
#[derive(Clone)]
pub struct Answer {
    pub status: u16,
    pub content_type: &'static str,
    pub body: &'static str,
}

pub const JSON: &str = "application/json; charset=utf-8";
pub const FORM: &str = "application/x-www-form-urlencoded; charset=utf-8";

/// One token request as the endpoint saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub authorization: Option<String>,
    pub accept: Option<String>,
    pub form: HashMap<String, String>,
}

#[derive(Default)]
struct State {
    answers: VecDeque<Answer>,
    seen: Vec<Seen>,
}

pub struct FakeSaas {
    pub token_url: String,
    state: Arc<Mutex<State>>,
}

impl FakeSaas {
    /// Listens on 127.0.0.1, a free port; stops with the test's runtime.
    pub async fn start() -> FakeSaas {
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let app = axum::Router::new().route(
            "/token",
            post(move |headers: HeaderMap, body: String| {
                let shared = shared.clone();
                async move {
                    let get = |name: header::HeaderName| {
                        headers
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned)
                    };
                    let seen = Seen {
                        authorization: get(header::AUTHORIZATION),
                        accept: get(header::ACCEPT),
                        form: url::form_urlencoded::parse(body.as_bytes())
                            .into_owned()
                            .collect(),
                    };
                    let answer = {
                        let mut s = shared.lock().unwrap();
                        s.seen.push(seen);
                        s.answers.pop_front()
                    };
                    match answer {
                        Some(a) => (
                            StatusCode::from_u16(a.status).unwrap(),
                            [(header::CONTENT_TYPE, a.content_type)],
                            a.body,
                        ),
                        None => (
                            StatusCode::INTERNAL_SERVER_ERROR,
                            [(header::CONTENT_TYPE, "text/plain")],
                            "the test gave no answer for this request",
                        ),
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeSaas {
            token_url: format!("http://{addr}/token"),
            state,
        }
    }

    pub fn answer(&self, status: u16, content_type: &'static str, body: &'static str) {
        self.state.lock().unwrap().answers.push_back(Answer {
            status,
            content_type,
            body,
        });
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }
}

/// The documented responses.
pub mod doc {
    macro_rules! response {
        ($name:ident, $file:literal) => {
            pub const $name: &str =
                include_str!(concat!("../../../tests/provider-responses/", $file));
        };
    }
    response!(GITHUB_TOKEN, "github-token.form");
    response!(GITHUB_BAD_CODE, "github-bad-verification-code.json");
    response!(GITHUB_APP_TOKEN, "github-app-token.json");
    response!(GITHUB_APP_BAD_REFRESH, "github-app-bad-refresh-token.form");
    response!(SALESFORCE_TOKEN, "salesforce-token.json");
    response!(SALESFORCE_REFRESH, "salesforce-refresh.json");
    response!(SLACK_ACCESS, "slack-oauth-v2-access.json");
    response!(SLACK_INVALID_CODE, "slack-invalid-code.json");
    response!(DROPBOX_TOKEN, "dropbox-token.json");
    response!(DROPBOX_REFRESH, "dropbox-refresh.json");
    response!(ZOOM_TOKEN, "zoom-token.json");
    response!(ENTRA_CLIENT_CREDENTIALS, "entra-client-credentials.json");
}
