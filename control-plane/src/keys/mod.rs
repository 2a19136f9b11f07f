//! Key rotation without downtime, and the key-usage report.
//!
//! Rotating: add the new key to the key file and name it active (`active=ID`), then reload
//! (`POST /v1/keys/reload` or SIGHUP). New secrets are wrapped with the new key at once; a
//! background task re-wraps every stored data key that another key wraps (the ciphertexts
//! stay as they are), while requests keep being served. `GET /v1/keys` says how many stored
//! secrets each key still wraps; a key that wraps none and is not active can be removed from
//! the file, and the next reload forgets it. A reload that would drop a key still in use is
//! refused, so no secret becomes unreadable.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;

pub mod rotation;

pub use rotation::{RewrapStatus, Rotation};

use crate::clock::{rfc3339, unix_now};
use crate::config::load_key_file;
use crate::crypto::Aad;
use crate::error::ApiError;
use crate::events::Event;
use crate::state::AppState;
use crate::store::{EnvelopeField, StoredEnvelope};

/// How many passes one re-wrap run makes at most: secrets rewritten meanwhile by a request
/// that still used the old key are caught by the next pass.
const MAX_PASSES: usize = 3;

/// The operations of this module, for the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(report, reload_handler))]
pub struct Api;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/keys", get(report))
        .route("/v1/keys/reload", post(reload_handler))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KeyUsage {
    pub id: String,
    pub active: bool,
    pub configured: bool,
    /// Stored secrets whose data key this key wraps.
    pub envelopes: u64,
    /// Whether the key can be removed from the configuration now.
    pub removable: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KeyReport {
    pub active_key_id: String,
    pub keys: Vec<KeyUsage>,
    pub rewrap: RewrapStatus,
}

/// Key usage: how many stored secrets each key-encryption key wraps, and which can go.
#[utoipa::path(
    get,
    path = "/v1/keys",
    operation_id = "get_keys",
    tag = "keys",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The keys and the background re-wrap", body = KeyReport),
        crate::openapi_answers::AdminErrors
    )
)]
async fn report(State(state): State<AppState>) -> Result<Json<KeyReport>, ApiError> {
    Ok(Json(key_report(&state).await?))
}

/// How many stored secrets each key wraps.
pub async fn key_report(state: &AppState) -> Result<KeyReport, ApiError> {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for e in state.store.all_envelopes().await? {
        *counts.entry(e.envelope.kek_id().to_owned()).or_default() += 1;
    }
    let active = state.keyring.active_id();
    let configured = state.keyring.ids();
    let mut ids: Vec<String> = configured.clone();
    ids.extend(counts.keys().filter(|k| !configured.contains(k)).cloned());
    let keys = ids
        .into_iter()
        .map(|id| {
            let envelopes = counts.get(&id).copied().unwrap_or(0);
            KeyUsage {
                active: id == active,
                configured: configured.contains(&id),
                removable: id != active && envelopes == 0,
                envelopes,
                id,
            }
        })
        .collect();
    Ok(KeyReport {
        active_key_id: active,
        keys,
        rewrap: state.rotation.status().clone(),
    })
}

/// Reads the key file again (as SIGHUP does), switches to its active key and re-wraps the
/// stored data keys in the background.
#[utoipa::path(
    post,
    path = "/v1/keys/reload",
    operation_id = "reload_keys",
    tag = "keys",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Reloaded; the keys as they are now", body = KeyReport),
        (
            status = 400,
            description = "`invalid_request`: the key file cannot be read or is invalid",
            body = credmgr_common::ErrorBody
        ),
        (
            status = 409,
            description = "`conflict`: keys come from CREDMGR_KEYS (not a file), or the file drops a key still in use",
            body = credmgr_common::ErrorBody
        ),
        crate::openapi_answers::AdminErrors
    )
)]
async fn reload_handler(State(state): State<AppState>) -> Result<Json<KeyReport>, ApiError> {
    reload(&state).await?;
    Ok(Json(key_report(&state).await?))
}

/// Reads the key file again, switches to its keys and starts re-wrapping.
pub async fn reload(state: &AppState) -> Result<(), ApiError> {
    let rotation = &state.rotation;
    let _one_at_a_time = rotation.reloading.lock().await;
    let Some(path) = &rotation.key_file else {
        return Err(ApiError::Conflict(
            "the keys come from CREDMGR_KEYS, which a running process cannot re-read: use \
             CREDMGR_KEY_FILE to rotate keys without a restart"
                .into(),
        ));
    };
    let new = load_key_file(path, rotation.active_env.as_deref()).map_err(|e| {
        ApiError::InvalidRequest {
            field: None,
            message: format!("the key file was not reloaded: {e:#}"),
        }
    })?;
    let new_ids = new.ids();
    let mut in_use: BTreeMap<String, u64> = BTreeMap::new();
    for e in state.store.all_envelopes().await? {
        *in_use.entry(e.envelope.kek_id().to_owned()).or_default() += 1;
    }
    if let Some((id, n)) = in_use.iter().find(|(id, _)| !new_ids.contains(id)) {
        return Err(ApiError::Conflict(format!(
            "the key file no longer has key `{id}`, which still wraps {n} stored secret(s): \
             keep it until GET /v1/keys reports it removable"
        )));
    }
    let active = new.active_id();
    state.keyring.replace_with(new);
    tracing::info!(active_key = %active, keys = ?new_ids, "key-encryption keys reloaded");
    rotation.wake.notify_one();
    Ok(())
}

/// Runs the re-wrap at start-up and after every reload.
pub fn spawn_rewrapper(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            rewrap_all(&state).await;
            state.rotation.wake.notified().await;
        }
    })
}

fn aad_of(e: &StoredEnvelope) -> Aad {
    let (p, c) = (e.provider_id.as_str(), e.connection_id.as_str());
    match e.field {
        EnvelopeField::ProviderClientSecret => Aad::provider_client_secret(p),
        EnvelopeField::ConnectionClientSecret => Aad::connection_client_secret(p, c),
        EnvelopeField::AccessToken => Aad::connection_access_token(p, c),
        EnvelopeField::RefreshToken => Aad::connection_refresh_token(p, c),
        EnvelopeField::CodeVerifier => {
            let hex: String = e.state_hash.iter().map(|b| format!("{b:02x}")).collect();
            Aad::consent_code_verifier(&hex)
        }
        EnvelopeField::WebhookSecret => Aad::webhook_secret(p),
    }
}

/// Re-wraps every stored data key that the active key does not wrap.
async fn rewrap_all(state: &AppState) {
    state.rotation.status().running = true;
    let mut rewrapped = 0u64;
    let mut failed = 0u64;
    for _ in 0..MAX_PASSES {
        let active = state.keyring.active_id();
        let stale: Vec<StoredEnvelope> = match state.store.all_envelopes().await {
            Ok(all) => all
                .into_iter()
                .filter(|e| e.envelope.kek_id() != active)
                .collect(),
            Err(e) => {
                tracing::error!(error = %e, "key rotation: cannot read the store");
                break;
            }
        };
        if stale.is_empty() {
            break;
        }
        failed = 0;
        let mut raced = 0;
        for e in &stale {
            let new = match state.keyring.rewrap(&aad_of(e), &e.envelope) {
                Ok(new) => new,
                Err(err) => {
                    failed += 1;
                    tracing::error!(error = %err, "key rotation: a secret cannot be re-wrapped");
                    continue;
                }
            };
            match state.store.replace_envelope(e, &new).await {
                Ok(true) => rewrapped += 1,
                // Rewritten meanwhile (a token refresh): the next pass looks again.
                Ok(false) => raced += 1,
                Err(err) => {
                    failed += 1;
                    tracing::error!(error = %err, "key rotation: cannot write a re-wrapped secret");
                }
            }
        }
        if raced == 0 {
            break;
        }
    }
    {
        let mut status = state.rotation.status();
        status.running = false;
        status.rewrapped += rewrapped;
        status.failed = failed;
        status.last_finished_at = Some(rfc3339(unix_now()));
    }
    if rewrapped > 0 || failed > 0 {
        let active = state.keyring.active_id();
        tracing::info!(rewrapped, failed, active_key = %active, "key rotation: data keys re-wrapped");
        let event = Event::key_rotation_finished(unix_now(), &active, rewrapped, failed);
        if let Err(e) = state.store.insert_event(&event).await {
            tracing::warn!(error = %e, "key rotation: the webhook event could not be written");
        }
    }
}
