//! Webhooks: the receivers' configuration, and the outbox. Events are written by the
//! transaction that makes the change ([`enqueue`]); deliveries are claimed with a lease by
//! whichever replica's worker gets them first ([`Store::claim_deliveries`]).

use crate::crypto::Envelope;
use crate::events::{Event, EventType};

use super::exec::{args, Tx};
use super::rows::Columns;
use super::{Store, StoreError};

/// A webhook endpoint as stored.
#[derive(Debug, Clone)]
pub struct WebhookRecord {
    pub id: String,
    pub url: String,
    /// The signing secret, encrypted.
    pub secret: Envelope,
    pub events: Vec<EventType>,
    pub description: Option<String>,
    pub enabled: bool,
    pub etag: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A delivery a worker claimed: what to send where.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    pub webhook_id: String,
    pub event_id: String,
    /// Attempts made before this one.
    pub attempts: i64,
    pub url: String,
    pub secret: Envelope,
    pub payload: String,
}

/// A delivery as `GET /v1/webhooks/{id}/deliveries` shows it.
#[derive(Debug, Clone)]
pub struct DeliveryRecord {
    pub event_id: String,
    pub event_type: String,
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at: Option<i64>,
    pub last_attempt_at: Option<i64>,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub delivered_at: Option<i64>,
    pub created_at: i64,
}

/// How an attempt ended.
#[derive(Debug, Clone)]
pub enum AttemptOutcome {
    Delivered {
        status: i64,
    },
    /// Try again at `retry_at`, or never (`None`: the delivery failed for good).
    Failed {
        status: Option<i64>,
        error: String,
        retry_at: Option<i64>,
    },
}

const WEBHOOK_COLUMNS: &str =
    "id, url, secret, events, description, enabled, etag, created_at, updated_at";

/// The `events` column: the types between commas, so that `LIKE '%,type,%'` finds them.
fn events_column(events: &[EventType]) -> String {
    let mut s = String::from(",");
    for e in events {
        s.push_str(e.as_str());
        s.push(',');
    }
    s
}

fn webhook_from_row(row: &dyn Columns) -> Result<WebhookRecord, StoreError> {
    let events = row
        .text("events")?
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<EventType>()
                .map_err(|()| StoreError::Corrupt(format!("webhooks.events: unknown `{s}`")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(WebhookRecord {
        id: row.text("id")?,
        url: row.text("url")?,
        secret: Envelope::from_bytes(&row.bytes("secret")?)
            .map_err(|e| StoreError::Corrupt(format!("webhooks.secret: {e}")))?,
        events,
        description: row.opt_text("description")?,
        enabled: row.int("enabled")? != 0,
        etag: row.text("etag")?,
        created_at: row.int("created_at")?,
        updated_at: row.int("updated_at")?,
    })
}

fn delivery_from_row(row: &dyn Columns) -> Result<DeliveryRecord, StoreError> {
    let state = row.text("state")?;
    Ok(DeliveryRecord {
        event_id: row.text("event_id")?,
        event_type: row.text("type")?,
        next_attempt_at: Some(row.int("next_attempt_at")?).filter(|_| state == "pending"),
        state,
        attempts: row.int("attempts")?,
        last_attempt_at: row.opt_int("last_attempt_at")?,
        last_status: row.opt_int("last_status")?,
        last_error: row.opt_text("last_error")?,
        delivered_at: row.opt_int("delivered_at")?,
        created_at: row.int("created_at")?,
    })
}

/// The microseconds since the epoch, strictly increasing within the process: the order of
/// events written one after the other (in one transaction, or by one request after another).
fn next_seq() -> i64 {
    use std::sync::atomic::{AtomicI64, Ordering};
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
    let previous = LAST
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
            Some(now.max(last.saturating_add(1)))
        })
        .unwrap_or(now);
    now.max(previous.saturating_add(1))
}

/// Writes `event` into the outbox inside `tx`, with a delivery for every enabled webhook
/// subscribed to its type: committed with the change, or not at all.
pub(super) async fn enqueue(tx: &mut Tx, event: &Event) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO webhook_events (id, type, payload, created_at) VALUES ($1, $2, $3, $4)",
        &args![
            &event.id,
            event.kind.as_str(),
            &event.payload,
            event.created_at
        ],
    )
    .await?;
    tx.execute(
        "INSERT INTO webhook_deliveries (webhook_id, event_id, state, attempts, \
         next_attempt_at, created_at, seq) \
         SELECT id, $1, 'pending', 0, $2, $2, $4 FROM webhooks WHERE enabled = 1 AND events LIKE $3",
        &args![
            &event.id,
            event.created_at,
            format!("%,{},%", event.kind.as_str()),
            next_seq(),
        ],
    )
    .await?;
    Ok(())
}

impl Store {
    /// Writes an event that no other change goes with (a key rotation finished).
    pub async fn insert_event(&self, event: &Event) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        enqueue(&mut tx, event).await?;
        tx.commit().await
    }

    pub async fn list_webhooks(&self) -> Result<Vec<WebhookRecord>, StoreError> {
        let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks ORDER BY id");
        self.fetch_all(&sql, &[], webhook_from_row).await
    }

    pub async fn get_webhook(&self, id: &str) -> Result<Option<WebhookRecord>, StoreError> {
        let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = $1");
        self.fetch_optional(&sql, &args![id], webhook_from_row)
            .await
    }

    /// Inserts a webhook; `false` if one with that id exists.
    pub async fn insert_webhook(&self, w: &WebhookRecord) -> Result<bool, StoreError> {
        let sql = format!(
            "INSERT INTO webhooks ({WEBHOOK_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (id) DO NOTHING"
        );
        let binds = args![
            &w.id,
            &w.url,
            w.secret.to_bytes(),
            events_column(&w.events),
            &w.description,
            i64::from(w.enabled),
            &w.etag,
            w.created_at,
            w.updated_at,
        ];
        Ok(self.execute(&sql, &binds).await? == 1)
    }

    /// Replaces a webhook if its etag is still `expected_etag`.
    pub async fn replace_webhook(
        &self,
        w: &WebhookRecord,
        expected_etag: &str,
    ) -> Result<bool, StoreError> {
        let sql = "UPDATE webhooks SET url = $2, secret = $3, events = $4, description = $5, \
                   enabled = $6, etag = $7, updated_at = $8 WHERE id = $1 AND etag = $9";
        let binds = args![
            &w.id,
            &w.url,
            w.secret.to_bytes(),
            events_column(&w.events),
            &w.description,
            i64::from(w.enabled),
            &w.etag,
            w.updated_at,
            expected_etag,
        ];
        Ok(self.execute(sql, &binds).await? == 1)
    }

    /// Deletes a webhook and its deliveries (only if its etag is `expected_etag`, when given).
    pub async fn delete_webhook(
        &self,
        id: &str,
        expected_etag: Option<&str>,
    ) -> Result<bool, StoreError> {
        let sql = "DELETE FROM webhooks WHERE id = $1 AND (CAST($2 AS TEXT) IS NULL OR etag = $2)";
        Ok(self.execute(sql, &args![id, expected_etag]).await? == 1)
    }

    /// A webhook's latest deliveries, newest first: at most `limit`.
    pub async fn list_deliveries(
        &self,
        webhook_id: &str,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        let sql = "SELECT d.event_id, e.type, d.state, d.attempts, d.next_attempt_at, \
                   d.last_attempt_at, d.last_status, d.last_error, d.delivered_at, d.created_at \
                   FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id \
                   WHERE d.webhook_id = $1 ORDER BY d.seq DESC LIMIT $2";
        self.fetch_all(sql, &args![webhook_id, i64::from(limit)], delivery_from_row)
            .await
    }

    /// Claims at most `limit` due deliveries for `owner` until `until`: those pending, due
    /// at `now` and not leased by anyone (or whose lease expired: its holder died). One
    /// UPDATE, re-checked by PostgreSQL against the committed row after it waits on the row
    /// lock (and `SKIP LOCKED` there lets replicas claim different rows rather than queue),
    /// inside SQLite's write lock: two replicas never hold one delivery at once.
    pub async fn claim_deliveries(
        &self,
        owner: &str,
        now: i64,
        until: i64,
        limit: u32,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        const DUE: &str = "state = 'pending' AND next_attempt_at <= $3 \
                           AND (leased_until IS NULL OR leased_until <= $3)";
        let sql = format!(
            "UPDATE webhook_deliveries SET lease_owner = $1, leased_until = $2 WHERE {DUE} \
             AND (webhook_id, event_id) IN (SELECT webhook_id, event_id FROM \
             webhook_deliveries WHERE {DUE} ORDER BY next_attempt_at, seq LIMIT $4{})",
            self.pool.skip_locked()
        );
        let claimed = self
            .execute(&sql, &args![owner, until, now, i64::from(limit)])
            .await?;
        if claimed == 0 {
            return Ok(Vec::new());
        }
        self.fetch_all(
            "SELECT d.webhook_id, d.event_id, d.attempts, w.url, w.secret, e.payload \
             FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id \
             JOIN webhook_events e ON e.id = d.event_id \
             WHERE d.lease_owner = $1 AND d.leased_until = $2 AND d.state = 'pending' \
             ORDER BY d.seq",
            &args![owner, until],
            |row| {
                Ok(ClaimedDelivery {
                    webhook_id: row.text("webhook_id")?,
                    event_id: row.text("event_id")?,
                    attempts: row.int("attempts")?,
                    url: row.text("url")?,
                    secret: Envelope::from_bytes(&row.bytes("secret")?)
                        .map_err(|e| StoreError::Corrupt(format!("webhooks.secret: {e}")))?,
                    payload: row.text("payload")?,
                })
            },
        )
        .await
    }

    /// Records an attempt's outcome and gives the lease back, if `owner` still holds it
    /// (`false`: its lease ran out and another replica took the delivery over).
    pub async fn finish_attempt(
        &self,
        d: &ClaimedDelivery,
        owner: &str,
        now: i64,
        outcome: &AttemptOutcome,
    ) -> Result<bool, StoreError> {
        let (state, status, error, next, delivered) = match outcome {
            AttemptOutcome::Delivered { status } => {
                ("delivered", Some(*status), None, now, Some(now))
            }
            AttemptOutcome::Failed {
                status,
                error,
                retry_at: Some(at),
            } => ("pending", *status, Some(error.clone()), *at, None),
            AttemptOutcome::Failed {
                status,
                error,
                retry_at: None,
            } => ("failed", *status, Some(error.clone()), now, None),
        };
        let sql = "UPDATE webhook_deliveries SET state = $4, attempts = attempts + 1, \
                   last_attempt_at = $5, last_status = $6, last_error = $7, next_attempt_at = $8, \
                   delivered_at = $9, lease_owner = NULL, leased_until = NULL \
                   WHERE webhook_id = $1 AND event_id = $2 AND lease_owner = $3";
        let binds = args![
            &d.webhook_id,
            &d.event_id,
            owner,
            state,
            now,
            status,
            error,
            next,
            delivered,
        ];
        Ok(self.execute(sql, &binds).await? == 1)
    }

    /// Forgets finished deliveries created before `cutoff`, and the events left without any
    /// delivery that are that old. Pending deliveries are kept whatever their age.
    pub async fn purge_deliveries(&self, cutoff: i64) -> Result<u64, StoreError> {
        let n = self
            .execute(
                "DELETE FROM webhook_deliveries WHERE state <> 'pending' AND created_at < $1",
                &args![cutoff],
            )
            .await?;
        self.execute(
            "DELETE FROM webhook_events WHERE created_at < $1 AND NOT EXISTS \
             (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = webhook_events.id)",
            &args![cutoff],
        )
        .await?;
        Ok(n)
    }
}
