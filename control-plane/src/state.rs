//! [`AppState`]: the services a request handler uses (store, keyring, token service,
//! credentials, consent settings, key rotation, trusted issuers), wired together once at start.

use std::sync::Arc;

use anyhow::Context as _;

use crate::auth::credentials::Credentials;
use crate::config::Config;
use crate::consent::settings::Settings;
use crate::crypto::Keyring;
use crate::issuers::registry::Registry;
use crate::keys::rotation::Rotation;
use crate::metrics::Metrics;
use crate::presets;
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
    pub consent: Arc<Settings>,
    pub rotation: Arc<Rotation>,
    /// Trusted issuers' keys, and what gateways are sent of them.
    pub issuers: Arc<Registry>,
    /// How stale a gateway's access decisions may get (CREDMGR_ACCESS_REFRESH).
    pub access_refresh: std::time::Duration,
    /// How webhooks are delivered.
    pub webhooks: Arc<crate::webhooks::settings::Settings>,
    /// The runtime API's audit entries' queue; `None` when CREDMGR_AUDIT_TOKENS is off.
    pub audit: Option<crate::audit::recorder::Recorder>,
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
        let consent = Arc::new(Settings::new(
            public_url,
            config.login_link_ttl,
            config.self_service_limits,
        ));
        if let Some(warning) = consent.plain_http_warning() {
            tracing::warn!("{warning}");
        }
        let rotation = Arc::new(Rotation::new(
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
            config.forced_refresh_interval,
        ));
        if config.gateway_keys.is_empty() && config.gateway_tls.is_none() {
            tracing::warn!(
                "no gateway keys configured (CREDMGR_GATEWAY_KEYS / --gateway-key) and no \
                 gateway TLS listener (CREDMGR_GATEWAY_TLS_LISTEN): the runtime API refuses \
                 every request"
            );
        }
        let issuers = Arc::new(
            Registry::new(config.provider_timeout, config.access_refresh / 2)
                .context("could not set up the HTTP client for JWKS URIs")?,
        );
        let credentials = Arc::new(Credentials::new(config.admin_token, config.gateway_keys));
        let audit = config
            .events
            .audit_tokens
            .then(|| crate::audit::recorder::Recorder::start(store.clone(), metrics.clone()));
        Ok(AppState {
            webhooks: Arc::new(config.events.webhooks.clone()),
            audit,
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
