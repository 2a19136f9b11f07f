//! [`serve`]: the process around the HTTP app: the listeners, the background tasks (refresh
//! scheduler, key re-wrapping, SIGHUP reloads) and a graceful stop on SIGTERM or SIGINT.

use std::future::IntoFuture as _;
use std::io::Write as _;

use anyhow::Context as _;

use crate::config::Config;
use crate::http::{self, app};
use crate::state::AppState;
use crate::{audit, gateway_tls, http_server, keys, tokens, webhooks};

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
    let limits = config.http;
    let audit_retention = config.events.audit_retention;
    let state = AppState::build_at(config, addr).await?;
    let scheduler = tokens::scheduler::spawn(
        state.tokens.clone(),
        state.store.clone(),
        refresh_interval,
        refresh_concurrency,
    );
    let rewrapper = keys::spawn_rewrapper(state.clone());
    let deliveries = webhooks::worker::Worker::new(state.clone())
        .context("could not set up the HTTP client for webhooks")?
        .spawn();
    let purger = audit::spawn_purger(state.clone(), audit_retention);
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
    let plain = {
        let (router, stop) = (app(state.clone()), until_stopped(stopped.clone()));
        async move {
            http_server::serve(listener, router, limits, stop).await;
            Ok::<(), std::io::Error>(())
        }
    };
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
    deliveries.abort();
    purger.abort();
    if let Some(audit) = &state.audit {
        audit.flush(std::time::Duration::from_secs(5)).await;
    }
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
