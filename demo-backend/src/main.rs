//! The demo backend API: answers a request only if its bearer token is active at the
//! OAuth server (RFC 7662 introspection), and says what it saw, so tests and the demo
//! can show that the backend accepted the token Envoy injected.
//!
//! Prints one line to stdout when ready: `demo-backend listening on http://<addr>`.
//! Logs go to stderr and never hold a token or a secret.

mod app;

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use tracing_subscriber::EnvFilter;
use url::Url;

use crate::app::{AppState, Secret};

/// Demo backend API for credmgr: accepts requests whose bearer token is active.
#[derive(Debug, Parser)]
#[command(name = "credmgr-demo-backend", version, about)]
struct Config {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, env = "DEMO_BACKEND_LISTEN", default_value = "127.0.0.1:8000")]
    listen: SocketAddr,

    /// The OAuth server's token introspection endpoint (RFC 7662), http only.
    #[arg(long, env = "DEMO_BACKEND_INTROSPECTION_URL")]
    introspection_url: Url,

    /// Client id this backend authenticates with at the introspection endpoint.
    #[arg(long, env = "DEMO_BACKEND_CLIENT_ID", default_value = "demo-backend")]
    client_id: String,

    /// Client secret for the introspection endpoint (client_secret_basic).
    #[arg(
        long,
        env = "DEMO_BACKEND_CLIENT_SECRET",
        default_value = "demo-backend-secret",
        hide_env_values = true,
        hide_default_value = true
    )]
    client_secret: Secret,
}

/// Whole introspection call, connect included: a hung OAuth server must not hang requests.
const INTROSPECTION_TIMEOUT: Duration = Duration::from_secs(5);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, not in test logs.
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();

    let config = Config::parse();
    if config.introspection_url.scheme() != "http" {
        // reqwest is built without TLS: the demo's OAuth server is plain http on loopback.
        bail!(
            "--introspection-url {} is not http:// (this demo backend has no TLS client); \
             point it at the OAuth server's http introspection endpoint",
            config.introspection_url
        );
    }

    let http = reqwest::Client::builder()
        // An OAuth client must not follow redirects (SSRF, credentials sent elsewhere).
        .redirect(reqwest::redirect::Policy::none())
        .timeout(INTROSPECTION_TIMEOUT)
        .build()
        .context("building the HTTP client for introspection")?;
    let state = AppState::new(
        http,
        config.introspection_url.clone(),
        &config.client_id,
        &config.client_secret,
    )?;

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| {
            format!(
                "binding {} (set --listen / DEMO_BACKEND_LISTEN to a free address, port 0 for any)",
                config.listen
            )
        })?;
    let addr = listener.local_addr().context("reading the bound address")?;

    // The one stdout line test harnesses wait for.
    let mut stdout = std::io::stdout();
    writeln!(stdout, "demo-backend listening on http://{addr}")?;
    stdout.flush()?;
    tracing::info!(%addr, introspection_url = %config.introspection_url, client_id = %config.client_id, "listening");

    axum::serve(listener, app::router(state))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving")?;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM; axum then stops accepting and drains.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(%err, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(err) => {
                tracing::error!(%err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();

    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT, shutting down"),
        () = term => tracing::info!("SIGTERM, shutting down"),
    }
}
