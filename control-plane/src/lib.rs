//! credmgr's control plane: the management API for credential providers and connections,
//! the encrypted token store, token fetching and refresh, and the runtime API that gateways
//! call for tokens.
//!
//! [`app`] builds the HTTP router from an [`AppState`]; [`serve`] runs it on a socket.

pub mod access_policies;
pub mod auth;
pub mod clock;
pub mod config;
pub mod connections;
pub mod consent;
pub mod crypto;
pub mod domain;
pub mod error;
pub mod etag;
pub mod extract;
pub mod gateway_tls;
pub mod http;
pub mod issuers;
pub mod keys;
pub mod metrics;
pub mod presets;
pub mod providers;
pub mod runtime;
pub mod store;
pub mod tokens;

use std::future::IntoFuture as _;
use std::io::Write as _;
use std::sync::Arc;

use anyhow::Context as _;

pub use config::Config;
pub use error::ApiError;
pub use http::app;

use crate::auth::Credentials;
use crate::crypto::Keyring;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::tokens::{OAuthClient, TokenService};

/// Everything a request handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub keyring: Arc<Keyring>,
    pub tokens: Arc<TokenService>,
    pub metrics: Arc<Metrics>,
    pub credentials: Arc<Credentials>,
    pub consent: Arc<consent::Settings>,
    pub rotation: Arc<keys::Rotation>,
    /// Trusted issuers' keys, and what gateways are sent of them.
    pub issuers: Arc<issuers::Registry>,
    /// How stale a gateway's access decisions may get (CREDMGR_ACCESS_REFRESH).
    pub access_refresh: std::time::Duration,
}

impl AppState {
    /// Seconds after which a gateway asks again for a token it was handed (and the policies
    /// that came with it): half the access refresh interval, so that a change reaches it
    /// within the interval even when the request that notices waits for the next tick.
    pub fn access_revalidate_seconds(&self) -> i64 {
        i64::try_from(self.access_refresh.as_secs() / 2)
            .unwrap_or(i64::MAX)
            .max(1)
    }
}

impl AppState {
    /// Opens the store (running migrations) and wires the services together.
    pub async fn build(config: Config) -> anyhow::Result<AppState> {
        let listen = config.listen;
        Self::build_at(config, listen).await
    }

    /// As [`AppState::build`], for a server bound to `bound` (the default public URL).
    pub async fn build_at(config: Config, bound: std::net::SocketAddr) -> anyhow::Result<AppState> {
        let public_url = match config.public_url.clone() {
            Some(u) => u,
            None => url::Url::parse(&format!("http://{bound}"))
                .context("the listen address does not make a URL; set CREDMGR_PUBLIC_URL")?,
        };
        let consent = Arc::new(consent::Settings::new(public_url, config.login_link_ttl));
        let rotation = Arc::new(keys::Rotation::new(
            config.key_file.clone(),
            config.active_key_id.clone(),
        ));
        presets::check()
            .map_err(|e| anyhow::anyhow!("the built-in provider catalogue is broken: {e}"))?;
        let store = Store::connect(&config.database_url).await?;
        let keyring = Arc::new(config.keyring);
        let metrics = Arc::new(Metrics::new());
        let client = OAuthClient::new(config.provider_timeout)
            .context("could not set up the HTTP client for token endpoints")?;
        let tokens = Arc::new(TokenService::new(
            store.clone(),
            keyring.clone(),
            client,
            metrics.clone(),
            config.refresh_skew,
        ));
        if config.gateway_keys.is_empty() && config.gateway_tls.is_none() {
            tracing::warn!(
                "no gateway keys configured (CREDMGR_GATEWAY_KEYS / --gateway-key) and no \
                 gateway TLS listener (CREDMGR_GATEWAY_TLS_LISTEN): the runtime API refuses \
                 every request"
            );
        }
        let issuers = Arc::new(
            issuers::Registry::new(config.provider_timeout, config.access_refresh / 2)
                .context("could not set up the HTTP client for JWKS URIs")?,
        );
        let credentials = Arc::new(Credentials::new(config.admin_token, config.gateway_keys));
        Ok(AppState {
            store,
            keyring,
            tokens,
            metrics,
            credentials,
            consent,
            rotation,
            issuers,
            access_refresh: config.access_refresh,
        })
    }
}

/// Runs the control plane until SIGTERM or SIGINT.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let listen = config.listen;
    let database = config.database_url.clone();
    let active_key = config.keyring.active_id().to_owned();
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| {
            format!(
                "could not listen on {listen}: is another process using it? Choose another \
             address with CREDMGR_LISTEN (--listen)"
            )
        })?;
    let addr = listener.local_addr()?;
    // Bound before anything starts, so a bad certificate stops the start-up at once.
    let gateway_listener = match &config.gateway_tls {
        Some(settings) => Some(gateway_tls::GatewayTlsListener::bind(settings).await?),
        None => None,
    };
    let (refresh_interval, refresh_concurrency) =
        (config.refresh_interval, config.refresh_concurrency);
    let state = AppState::build_at(config, addr).await?;
    let scheduler = tokens::scheduler::spawn(
        state.tokens.clone(),
        state.store.clone(),
        refresh_interval,
        refresh_concurrency,
    );
    let rewrapper = keys::spawn_rewrapper(state.clone());
    let tls_reloader = gateway_listener.as_ref().map(|l| l.reloader());
    let reloader = tokio::spawn(reload_on_sighup(state.clone(), tls_reloader));
    tracing::info!(%addr, %database, active_key, public_url = %state.consent.public_url,
        "credmgr control plane started");
    {
        // Test harnesses and scripts wait for this exact line.
        let mut out = std::io::stdout().lock();
        writeln!(out, "credmgr listening on http://{addr}")?;
        if let Some(l) = &gateway_listener {
            writeln!(
                out,
                "credmgr gateway TLS listening on https://{}",
                l.local_addr()
            )?;
        }
        out.flush()?;
    }
    // One signal stops both listeners.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let signal = tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    let until_stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let plain = axum::serve(listener, app(state.clone()))
        .with_graceful_shutdown(until_stopped(stopped.clone()))
        .into_future();
    match gateway_listener {
        None => plain.await.context("the HTTP server failed")?,
        Some(l) => {
            let service = http::gateway_app(state.clone())
                .into_make_service_with_connect_info::<gateway_tls::ClientCertificate>();
            let tls = axum::serve(l, service)
                .with_graceful_shutdown(until_stopped(stopped))
                .into_future();
            tokio::try_join!(
                async { plain.await.context("the HTTP server failed") },
                async { tls.await.context("the gateway TLS server failed") },
            )?;
        }
    }
    signal.abort();
    if let Some(scheduler) = scheduler {
        scheduler.abort();
    }
    rewrapper.abort();
    reloader.abort();
    state.store.close().await;
    tracing::info!("credmgr control plane stopped");
    Ok(())
}

/// SIGHUP reloads the key file, as `POST /v1/keys/reload` does, and the gateway TLS files.
async fn reload_on_sighup(state: AppState, tls: Option<gateway_tls::Reloader>) {
    #[cfg(unix)]
    {
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGHUP; reload keys with POST /v1/keys/reload");
                return;
            }
        };
        while hangup.recv().await.is_some() {
            if let Err(e) = keys::reload(&state).await {
                tracing::error!("SIGHUP: {e}");
            }
            match tls.as_ref().map(gateway_tls::Reloader::reload) {
                None => {}
                Some(Ok(())) => tracing::info!(
                    "SIGHUP: gateway TLS certificate, key and client CA reloaded; new \
                     connections use them"
                ),
                Some(Err(e)) => tracing::error!(
                    "SIGHUP: gateway TLS files not reloaded, the previous ones stay in use: {e:#}"
                ),
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (state, tls);
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM (what container runtimes and systemd send).
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
    tracing::info!("shutting down: finishing requests in flight");
}
