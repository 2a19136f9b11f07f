//! Proactive refresh: a background task that refreshes tokens before the runtime API would
//! have to, so that in steady state no gateway request waits for a provider.
//!
//! Every `interval` it looks for tokens whose refresh time is near and refreshes each one a
//! little ahead of it, up to `concurrency` at a time ([`DEFAULT_CONCURRENCY`] unless
//! configured): up to a tenth of the token's lifetime (at most 30 s) early, by an amount
//! derived from the connection and the token (jitter: connections connected at the same moment
//! do not all refresh in the same second, and the amount is stable across ticks). A connection
//! whose refresh fails backs off exponentially (1-2 s, 2-4 s, ... at most 5 min: the backoff
//! of `backoff.rs`, which the runtime API and the other replicas also keep, as it is stored on
//! the connection) while the runtime API keeps serving its still-valid token. Refreshes go through
//! [`TokenService`], so they share its one-refresh-per-connection rule with the runtime API.
//! Replicas sharing a database share the work: a scheduler takes a due connection's refresh
//! lease without waiting, and skips the connection if another replica holds it, so each
//! connection is refreshed by one replica.

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument as _;

use super::backoff::backoff_delay;
use super::error::TokenError;
use super::{Served, TokenService};
use crate::clock::unix_now;
use crate::domain::ConnectionKey;
use crate::store::{Store, TokenSchedule};

/// The most a token is refreshed ahead of its refresh time.
const MAX_LEAD_SECS: i64 = 30;
/// Refreshes in flight at once unless configured (`CREDMGR_REFRESH_CONCURRENCY`). A provider
/// takes tens to hundreds of milliseconds to answer, so one refresh at a time caps the
/// scheduler at a few a second, while 100,000 connections with one-hour tokens come due at 35
/// a second: `credmgr-bench scale`, against a provider answering in 100 ms, saw one at a time
/// manage 10 a second and miss 1,137 of the 2,083 refreshes due in a minute. The
/// per-connection lock and lease still allow one refresh per connection.
pub const DEFAULT_CONCURRENCY: u16 = 16;

/// Starts the scheduler, with at most `concurrency` (at least 1) refreshes in flight; `None`
/// when `interval` is zero (proactive refresh off).
pub fn spawn(
    tokens: Arc<TokenService>,
    store: Store,
    interval: Duration,
    concurrency: u16,
) -> Option<tokio::task::JoinHandle<()>> {
    if interval.is_zero() {
        return None;
    }
    let mut scheduler = Scheduler {
        tokens,
        store,
        concurrency: usize::from(concurrency.max(1)),
        backoff: HashMap::new(),
    };
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            scheduler.run_once().await;
        }
    }))
}

/// A refresh task's end: the token it was for, how long after its scheduled point the
/// refresh started, and how it went.
type Finished =
    Result<(TokenSchedule, Duration, Result<Option<Served>, TokenError>), tokio::task::JoinError>;

struct Backoff {
    failures: u32,
    next_attempt: i64,
}

struct Scheduler {
    tokens: Arc<TokenService>,
    store: Store,
    concurrency: usize,
    backoff: HashMap<ConnectionKey, Backoff>,
}

impl Scheduler {
    async fn run_once(&mut self) {
        let now = unix_now();
        let due = match self.store.tokens_due_by(now + MAX_LEAD_SECS).await {
            Ok(due) => due,
            Err(e) => {
                tracing::error!(error = %e, "refresh scheduler: cannot read the store");
                return;
            }
        };
        // Forget backoffs of connections that no longer have a token coming due (a set: in
        // a provider outage both the backoffs and the due tokens number thousands).
        {
            let due_keys: HashSet<(&str, &str)> = due
                .iter()
                .map(|t| (t.provider_id.as_str(), t.connection_id.as_str()))
                .collect();
            self.backoff
                .retain(|key, _| due_keys.contains(&(key.provider(), key.connection())));
        }
        let mut running = tokio::task::JoinSet::new();
        let mut run = Run::default();
        for t in due {
            let lead = lead(&t);
            if now < t.refresh_at.saturating_sub(lead) {
                continue;
            }
            let key = ConnectionKey::new(t.provider_id.as_str(), t.connection_id.as_str());
            let backoff = self.backoff.get(&key).map(|b| b.next_attempt);
            if backoff.is_some_and(|next| now < next) {
                continue;
            }
            run.backlog += 1;
            if running.len() >= self.concurrency {
                if let Some(done) = running.join_next().await {
                    self.settle(now, done, &mut run);
                }
            }
            let tokens = Arc::clone(&self.tokens);
            // Late after the scheduled point, or after the end of the connection's backoff.
            let late = late_by(t.refresh_at.saturating_sub(lead).max(backoff.unwrap_or(0)));
            // Each refresh is a trace of its own (no request made it).
            let span = tracing::debug_span!("scheduled_refresh", provider = %key.provider(),
                connection = %key.connection());
            running.spawn(
                async move {
                    let outcome = tokens.refresh_if_due(&key, lead).await;
                    (t, late, outcome)
                }
                .instrument(span),
            );
        }
        while let Some(done) = running.join_next().await {
            self.settle(now, done, &mut run);
        }
        self.tokens
            .metrics()
            .scheduler_run(run.backlog, run.worst_lag, unix_now());
    }

    /// Records how one refresh went: a success clears the connection's backoff, a failure
    /// lengthens it.
    fn settle(&mut self, now: i64, done: Finished, run: &mut Run) {
        let (t, late, outcome) = match done {
            Ok(done) => done,
            Err(e) => {
                tracing::error!(error = %e, "refresh scheduler: a refresh task failed");
                return;
            }
        };
        let key = ConnectionKey::new(t.provider_id.as_str(), t.connection_id.as_str());
        // Only refreshes that needed the provider count: a token that cannot be refreshed (an
        // authorization-code connection without a refresh token) is looked at on every run
        // and served until it expires, and would otherwise show as an ever-growing lag.
        if matches!(outcome, Ok(Some(Served::Fetched | Served::Stale)) | Err(_)) {
            run.worst_lag = run.worst_lag.max(late);
        }
        match outcome {
            // Another replica is refreshing it (it holds the lease): nothing to do here.
            Ok(None) => {}
            Ok(Some(Served::Hit | Served::Fetched)) => {
                self.backoff.remove(&key);
            }
            Ok(Some(Served::Stale)) | Err(_) => {
                let b = self.backoff.entry(key).or_insert(Backoff {
                    failures: 0,
                    next_attempt: now,
                });
                b.failures = b.failures.saturating_add(1);
                let delay = backoff_delay(b.failures);
                b.next_attempt = unix_now().saturating_add(delay);
                // The provider's failure has a code; any other error says what it is.
                let code = match &outcome {
                    Err(TokenError::Unavailable(f)) => Some(f.kind.code()),
                    Err(_) => None,
                    Ok(_) => Some("provider_failed_token_still_valid"),
                };
                let error = outcome.as_ref().err().map(tracing::field::display);
                if !matches!(outcome, Err(TokenError::NotFound(_))) {
                    tracing::info!(provider = %t.provider_id, connection = %t.connection_id,
                        code, error, failures = b.failures, retry_in_secs = delay,
                        "proactive refresh failed; backing off");
                }
            }
        }
    }
}

/// What one run of the scheduler found, for its metrics.
#[derive(Default)]
struct Run {
    /// Refreshes due (past their scheduled point, not backing off).
    backlog: usize,
    /// The latest start of a refresh that went to the provider, after its scheduled point.
    worst_lag: Duration,
}

/// How long ago the Unix time `scheduled` (seconds) was; zero if it is still to come.
fn late_by(scheduled: i64) -> Duration {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let scheduled = Duration::from_secs(u64::try_from(scheduled).unwrap_or(0));
    now.saturating_sub(scheduled)
}

/// How far ahead of its refresh time a token is refreshed: a stable fraction of a tenth of
/// its lifetime (at most [`MAX_LEAD_SECS`]). Public so that `credmgr-bench scale` computes
/// each refresh's scheduled point (`refresh_at - lead`) with the scheduler's own rule.
pub fn lead(t: &TokenSchedule) -> i64 {
    let window = ((t.expires_at - t.obtained_at) / 10).clamp(0, MAX_LEAD_SECS);
    if window == 0 {
        return 0;
    }
    let mut h = DefaultHasher::new();
    (&t.provider_id, &t.connection_id, t.obtained_at).hash(&mut h);
    i64::try_from(h.finish() % (window as u64 + 1)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(c: &str, obtained_at: i64, lifetime: i64) -> TokenSchedule {
        TokenSchedule {
            provider_id: "p".into(),
            connection_id: c.into(),
            obtained_at,
            expires_at: obtained_at + lifetime,
            refresh_at: obtained_at + lifetime * 4 / 5,
        }
    }

    #[test]
    fn the_lead_is_stable_bounded_and_spread() {
        let t = schedule("a", 1_000, 3_600);
        assert_eq!(lead(&t), lead(&t));
        let leads: std::collections::BTreeSet<i64> = (0..50)
            .map(|i| lead(&schedule(&format!("c{i}"), 1_000, 3_600)))
            .collect();
        assert!(leads.iter().all(|l| (0..=MAX_LEAD_SECS).contains(l)));
        assert!(leads.len() > 5, "jitter spreads connections: {leads:?}");
        assert_eq!(
            lead(&schedule("a", 0, 5)),
            0,
            "no lead for very short tokens"
        );
    }
}
