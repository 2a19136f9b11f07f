//! The delivery worker: every replica runs one. It claims due deliveries from the outbox with
//! a lease ([`crate::store::Store::claim_deliveries`]), POSTs each signed to its receiver,
//! and records the attempt: delivered on a 2xx answer, else retried later with exponential
//! backoff and jitter ([`super::Settings::retry_delay`]) until the last attempt.
//!
//! At least once: a delivery is marked delivered only after the receiver answered 2xx, so a
//! replica killed mid-delivery leaves it pending; its lease runs out and a replica (this one
//! after a restart, or another) sends it again, with the same `webhook-id`.

use std::sync::atomic::{AtomicU64, Ordering};

use aes_gcm::aead::rand_core::RngCore as _;
use secrecy::ExposeSecret as _;

use super::signature;
use crate::clock::unix_now;
use crate::crypto::Aad;
use crate::state::AppState;
use crate::store::{AttemptOutcome, ClaimedDelivery};

/// Deliveries claimed at once by one worker.
const BATCH: u32 = 16;
/// How long a claim lasts beyond the receiver's timeout: a worker that died is replaced after
/// this.
const LEASE_MARGIN_SECS: i64 = 30;
/// The part of a receiver's error answer kept in the delivery's `last_error`.
const MAX_ERROR_LEN: usize = 200;

/// The worker of this process.
pub struct Worker {
    state: AppState,
    client: reqwest::Client,
    /// This process's name in leases.
    replica: String,
    claims: AtomicU64,
}

impl Worker {
    pub fn new(state: AppState) -> anyhow::Result<Worker> {
        let client = reqwest::Client::builder()
            .timeout(state.webhooks.timeout)
            // A receiver's redirect is not followed: it could point the signed event anywhere.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("credmgr/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let mut bytes = [0u8; 8];
        aes_gcm::aead::OsRng.fill_bytes(&mut bytes);
        let replica = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Ok(Worker {
            state,
            client,
            replica,
            claims: AtomicU64::new(0),
        })
    }

    /// Runs until the task is aborted.
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut every = tokio::time::interval(self.state.webhooks.poll);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                // A full batch: more may be due at once.
                while self.run_once().await >= BATCH as usize {}
            }
        })
    }

    /// Claims the due deliveries and attempts each; how many it claimed.
    pub async fn run_once(&self) -> usize {
        let now = unix_now();
        let timeout = i64::try_from(self.state.webhooks.timeout.as_secs()).unwrap_or(60);
        let until = now.saturating_add(timeout + LEASE_MARGIN_SECS);
        let n = self.claims.fetch_add(1, Ordering::Relaxed);
        let owner = format!("{}-{n}", self.replica);
        let claimed = match self
            .state
            .store
            .claim_deliveries(&owner, now, until, BATCH)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "webhooks: cannot claim deliveries");
                return 0;
            }
        };
        let count = claimed.len();
        // One endpoint's deliveries one after the other, in the order their events were
        // written; endpoints in parallel.
        let mut by_webhook: Vec<Vec<ClaimedDelivery>> = Vec::new();
        for d in claimed {
            match by_webhook
                .iter_mut()
                .find(|g| g[0].webhook_id == d.webhook_id)
            {
                Some(group) => group.push(d),
                None => by_webhook.push(vec![d]),
            }
        }
        let mut attempts = tokio::task::JoinSet::new();
        for group in by_webhook {
            let (state, client, owner) = (self.state.clone(), self.client.clone(), owner.clone());
            attempts.spawn(async move {
                for d in group {
                    attempt(&state, &client, &owner, d).await;
                }
            });
        }
        while attempts.join_next().await.is_some() {}
        count
    }
}

/// One attempt of one delivery, recorded.
async fn attempt(state: &AppState, client: &reqwest::Client, owner: &str, d: ClaimedDelivery) {
    let outcome = match send(state, client, &d).await {
        Ok(status) if (200..300).contains(&status) => AttemptOutcome::Delivered {
            status: i64::from(status),
        },
        result => {
            let (status, error) = match result {
                Ok(status) => (
                    Some(i64::from(status)),
                    format!("the receiver answered {status}"),
                ),
                Err(e) => (None, e),
            };
            let attempts = u32::try_from(d.attempts.saturating_add(1)).unwrap_or(u32::MAX);
            let retry_at = (attempts < state.webhooks.max_attempts).then(|| {
                let random = f64::from(aes_gcm::aead::OsRng.next_u32()) / f64::from(u32::MAX);
                let wait = state.webhooks.retry_delay(attempts, random);
                unix_now().saturating_add(i64::try_from(wait.as_secs().max(1)).unwrap_or(3600))
            });
            let gave_up = retry_at.is_none();
            state
                .metrics
                .webhook_delivery_failure(if gave_up { "gave_up" } else { "retrying" });
            tracing::warn!(webhook_id = %d.webhook_id, event_id = %d.event_id, attempts,
                gave_up, "webhook delivery failed: {error}");
            AttemptOutcome::Failed {
                status,
                error,
                retry_at,
            }
        }
    };
    match state
        .store
        .finish_attempt(&d, owner, unix_now(), &outcome)
        .await
    {
        Ok(true) => {}
        Ok(false) => tracing::warn!(webhook_id = %d.webhook_id, event_id = %d.event_id,
            "webhooks: a delivery's lease ran out during the attempt; another worker owns it now"),
        Err(e) => tracing::warn!(error = %e, "webhooks: cannot record a delivery attempt"),
    }
}

/// POSTs the event, signed; the receiver's status, or why there was none.
async fn send(
    state: &AppState,
    client: &reqwest::Client,
    d: &ClaimedDelivery,
) -> Result<u16, String> {
    let secret = state
        .keyring
        .decrypt_string(&Aad::webhook_secret(&d.webhook_id), &d.secret)
        .map_err(|e| format!("the webhook's secret cannot be decrypted: {e}"))?;
    let key = signature::key_bytes(secret.expose_secret())
        .ok_or_else(|| "the webhook's secret is not valid base64 after whsec_".to_owned())?;
    let timestamp = unix_now();
    let signature = signature::sign(&key, &d.event_id, timestamp, &d.payload);
    let response = client
        .post(&d.url)
        .header("content-type", "application/json")
        .header("webhook-id", &d.event_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(d.payload.clone())
        .send()
        .await
        .map_err(|e| {
            let e = e.without_url();
            if e.is_timeout() {
                format!("no answer within {}s", state.webhooks.timeout.as_secs_f32())
            } else {
                format!("cannot reach the receiver: {e}")
            }
        })?;
    let status = response.status().as_u16();
    if !response.status().is_success() {
        let text = response.text().await.unwrap_or_default();
        let short: String = text.chars().take(MAX_ERROR_LEN).collect();
        tracing::debug!(webhook_id = %d.webhook_id, status, body = %short, "receiver refused");
    }
    Ok(status)
}
