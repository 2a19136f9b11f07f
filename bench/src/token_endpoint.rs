//! The scale run's token endpoint: a measurement instrument, not a stand-in for the project's
//! OAuth server in tests. `oidc-provider` cannot issue 100,000 tokens in a few minutes on this
//! machine; this endpoint can, and it records every token it issues (which client, when, for
//! how long), so the run can tell when each connection was refreshed.
//!
//! It answers as an RFC 6749 §5.1 token endpoint for the client credentials grant (§4.4):
//! `client_secret_post` authentication, a JSON body with `access_token`, `token_type` and
//! `expires_in`. Client `c{i}` has the secret [`secret`]`(i)`. Refreshes (every request of a
//! client after its first) are answered after a set latency, as a provider across a network
//! would; first tokens at once, so that creation measures the control plane. Every token lives an hour,
//! except the first token of a client that the run's [`DuePlan`] names: that one lives just
//! long enough for the control plane's refresh point to fall at the planned instant.

use anyhow::{Context, Result};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Form, Json, Router};
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The lifetime of every token but the planned first ones.
pub const HOUR_S: i64 = 3600;

/// Shortest lifetime handed out, so a late first token is still a token.
const MIN_LIFETIME_S: i64 = 10;

/// The client id of connection `i`.
pub fn client_id(i: usize) -> String {
    format!("c{i}")
}

/// The client secret of client `c{i}`.
pub fn secret(i: usize) -> String {
    format!("scale-secret-{i}")
}

fn index_of(client_id: &str) -> Option<usize> {
    client_id.strip_prefix('c')?.parse().ok()
}

/// One token handed out.
#[derive(Debug, Clone, Copy)]
pub struct Issued {
    /// When the request arrived, Unix seconds.
    pub at: f64,
    pub expires_in: i64,
}

/// Whose first token is short, and when its refresh point should fall: clients
/// `first..first + targets.len()`, client `first + k` at `targets[k]` (Unix seconds).
#[derive(Debug, Clone, Default)]
pub struct DuePlan {
    pub first: usize,
    pub targets: Vec<f64>,
}

impl DuePlan {
    fn target(&self, i: usize) -> Option<f64> {
        self.targets.get(i.checked_sub(self.first)?).copied()
    }
}

struct Shared {
    issued: Mutex<Vec<Vec<Issued>>>,
    plan: Mutex<DuePlan>,
    refused: Mutex<u64>,
    /// How long a refresh (any request after a client's first) takes to answer.
    refresh_latency: std::time::Duration,
}

pub struct TokenEndpoint {
    pub url: String,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

fn now_unix() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The lifetime whose refresh point (80 % of it, as the control plane computes it with a
/// skew shorter than a fifth of it) falls `from_now` seconds after issue.
fn lifetime_for(from_now: f64) -> i64 {
    ((from_now / 0.8).round() as i64).max(MIN_LIFETIME_S)
}

async fn token(
    State(s): State<Arc<Shared>>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let at = now_unix();
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
    let client = index_of(field("client_id")).filter(|i| field("client_secret") == secret(*i));
    let (Some(i), "client_credentials") = (client, field("grant_type")) else {
        if let Ok(mut r) = s.refused.lock() {
            *r += 1;
        }
        // RFC 6749 §5.2.
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_client"})),
        )
            .into_response();
    };
    let target = s.plan.lock().ok().and_then(|p| p.target(i));
    // The lock is held in this block only: the answer may wait (a refresh's latency).
    let recorded = s.issued.lock().ok().map(|mut issued| {
        if issued.len() <= i {
            issued.resize_with(i + 1, Vec::new);
        }
        let mine = &mut issued[i];
        let expires_in = match target {
            Some(t) if mine.is_empty() => lifetime_for(t - at),
            _ => HOUR_S,
        };
        mine.push(Issued { at, expires_in });
        (mine.len(), expires_in)
    });
    let Some((n, expires_in)) = recorded else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    if n > 1 && !s.refresh_latency.is_zero() {
        tokio::time::sleep(s.refresh_latency).await;
    }
    Json(json!({
        "access_token": format!("scale-token-{i}-{n}"),
        "token_type": "Bearer",
        "expires_in": expires_in,
    }))
    .into_response()
}

impl TokenEndpoint {
    /// Serves on 127.0.0.1, a free port, on the current Tokio runtime until dropped; refreshes
    /// are answered after `refresh_latency`, as a provider across a network would.
    pub async fn start(refresh_latency: std::time::Duration) -> Result<TokenEndpoint> {
        let shared = Arc::new(Shared {
            issued: Mutex::new(Vec::new()),
            plan: Mutex::new(DuePlan::default()),
            refused: Mutex::new(0),
            refresh_latency,
        });
        let app = Router::new()
            .route("/token", post(token))
            .with_state(Arc::clone(&shared));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the scale run's token endpoint")?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(TokenEndpoint {
            url: format!("http://{addr}/token"),
            shared,
            stop: Some(stop),
        })
    }

    pub fn set_plan(&self, plan: DuePlan) {
        if let Ok(mut p) = self.shared.plan.lock() {
            *p = plan;
        }
    }

    /// Every token issued so far, by client index.
    pub fn issued(&self) -> Vec<Vec<Issued>> {
        self.shared
            .issued
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default()
    }

    /// Tokens issued so far, all clients.
    pub fn count(&self) -> usize {
        self.shared
            .issued
            .lock()
            .map(|v| v.iter().map(Vec::len).sum())
            .unwrap_or(0)
    }

    /// Requests refused (unknown client, wrong secret or grant): 0 in a sound run.
    pub fn refused(&self) -> u64 {
        self.shared.refused.lock().map(|r| *r).unwrap_or(0)
    }
}

impl Drop for TokenEndpoint {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_planned_first_token_puts_the_refresh_point_on_its_target() {
        assert_eq!(lifetime_for(80.0), 100);
        assert_eq!(lifetime_for(-5.0), MIN_LIFETIME_S);
        let plan = DuePlan {
            first: 10,
            targets: vec![1.0, 2.0],
        };
        assert_eq!(plan.target(9), None);
        assert_eq!(plan.target(11), Some(2.0));
        assert_eq!(plan.target(12), None);
        assert_eq!(index_of("c42"), Some(42));
        assert_eq!(index_of("x42"), None);
    }
}
