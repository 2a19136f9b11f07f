//! The runtime API's audit entries, written off the request path: a request hands its entry
//! to a bounded queue ([`Recorder::record`], which never waits) and one writer task stores
//! them in batches, one transaction each.
//!
//! When the queue is full (the database cannot keep up, or is down) the entry is dropped and
//! counted in `credmgr_audit_entries_dropped_total`: the token is still handed out. A batch
//! the database refuses is dropped and counted too. Entries still queued when the process is
//! killed are lost (at most one queue's worth); a graceful stop writes them first
//! ([`Recorder::flush`]).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::metrics::Metrics;
use crate::store::{AuditEntry, Store};

/// Entries the queue holds before it drops new ones.
pub const QUEUE: usize = 16_384;
/// Most entries written in one transaction.
const BATCH: usize = 2048;
/// After the first entry of a batch, how long the writer lets more gather: fewer, larger
/// writes cost the runtime API's core less. Entries show in `GET /v1/audit` this much later.
const GATHER: Duration = Duration::from_millis(50);

enum Message {
    Entry(Box<AuditEntry>),
    /// Answered once everything queued before it is written.
    Flush(oneshot::Sender<()>),
}

/// The sending side, in the application state.
#[derive(Debug, Clone)]
pub struct Recorder {
    queue: mpsc::Sender<Message>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("audit message")
    }
}

impl Recorder {
    /// Starts the writer task.
    pub fn start(store: Store, metrics: Arc<Metrics>) -> Recorder {
        let (queue, rx) = mpsc::channel(QUEUE);
        tokio::spawn(writer(store, metrics.clone(), rx));
        Recorder { queue, metrics }
    }

    /// Queues an entry; never waits. A full queue drops it (counted).
    pub fn record(&self, entry: AuditEntry) {
        if self
            .queue
            .try_send(Message::Entry(Box::new(entry)))
            .is_err()
        {
            self.metrics.audit_dropped(1);
        }
    }

    /// Waits until the entries queued so far are written (tests, graceful stop), at most
    /// `limit`.
    pub async fn flush(&self, limit: Duration) {
        let (tx, rx) = oneshot::channel();
        if self.queue.send(Message::Flush(tx)).await.is_ok() {
            let _ = tokio::time::timeout(limit, rx).await;
        }
    }
}

async fn writer(store: Store, metrics: Arc<Metrics>, mut rx: mpsc::Receiver<Message>) {
    let mut batch: Vec<AuditEntry> = Vec::with_capacity(BATCH);
    let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
    while let Some(first) = rx.recv().await {
        // Unless a full batch is waiting already (the writer is behind: no time to lose).
        if matches!(first, Message::Entry(_)) && rx.len() < BATCH {
            tokio::time::sleep(GATHER).await;
        }
        let mut next = Some(first);
        // Whatever else is queued now goes into the same transaction.
        while let Some(message) = next {
            match message {
                Message::Entry(e) => batch.push(*e),
                Message::Flush(done) => waiting.push(done),
            }
            next = if batch.len() < BATCH {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        if !batch.is_empty() {
            if let Err(e) = store.insert_audit(&batch).await {
                metrics.audit_dropped(u64::try_from(batch.len()).unwrap_or(u64::MAX));
                tracing::error!(error = %e, entries = batch.len(),
                    "audit: a batch of runtime entries could not be written and is lost");
            }
            batch.clear();
        }
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
    }
}
