//! One token fetch per connection at a time, within this process.
//!
//! Each connection being refreshed has a [`Flight`]: a lock held for the duration of a fetch
//! and a count of finished attempts. A request that finds the lock taken waits, then sees
//! that an attempt finished while it waited and uses that attempt's outcome (the new token in
//! the store, or the failure) instead of asking the provider again. Entries live only while
//! someone holds or waits for them.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

use super::error::TokenFailure;

/// What the last finished attempt left behind.
#[derive(Default)]
pub struct FlightState {
    /// The failure of the last attempt, with the connection's token generation it ran under;
    /// `None` after a success.
    pub last_failure: Option<(i64, TokenFailure)>,
}

struct Flight {
    finished: AtomicU64,
    state: Arc<AsyncMutex<FlightState>>,
}

/// The flights in progress, by key.
pub struct Flights<K> {
    map: Mutex<HashMap<K, Arc<Flight>>>,
}

impl<K: Eq + Hash + Clone> Default for Flights<K> {
    fn default() -> Self {
        Flights {
            map: Mutex::new(HashMap::new()),
        }
    }
}

/// Holding this means holding the fetch lock of one key.
pub struct FlightGuard<'a, K: Eq + Hash + Clone> {
    flights: &'a Flights<K>,
    key: K,
    flight: Arc<Flight>,
    seen: u64,
    guard: Option<OwnedMutexGuard<FlightState>>,
}

impl<K: Eq + Hash + Clone> Flights<K> {
    /// Waits until no other fetch for `key` is in progress in this process, and takes the lock.
    pub async fn lock(&self, key: K) -> FlightGuard<'_, K> {
        let flight = {
            let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
            map.entry(key.clone())
                .or_insert_with(|| {
                    Arc::new(Flight {
                        finished: AtomicU64::new(0),
                        state: Arc::new(AsyncMutex::new(FlightState::default())),
                    })
                })
                .clone()
        };
        // Read before waiting: a change once the lock is ours means an attempt finished
        // while we waited.
        let seen = flight.finished.load(Ordering::Acquire);
        let guard = flight.state.clone().lock_owned().await;
        FlightGuard {
            flights: self,
            key,
            flight,
            seen,
            guard: Some(guard),
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl<K: Eq + Hash + Clone> FlightGuard<'_, K> {
    /// Whether another request finished an attempt while this one waited for the lock.
    pub fn attempt_finished_while_waiting(&self) -> bool {
        self.flight.finished.load(Ordering::Acquire) != self.seen
    }

    /// The failure of the last finished attempt, if it failed.
    pub fn last_failure(&self) -> Option<&(i64, TokenFailure)> {
        self.guard.as_ref().and_then(|g| g.last_failure.as_ref())
    }

    /// Records the outcome of this attempt for the requests waiting behind it.
    pub fn finish(&mut self, failure: Option<(i64, TokenFailure)>) {
        if let Some(g) = self.guard.as_mut() {
            g.last_failure = failure;
        }
        self.flight.finished.fetch_add(1, Ordering::AcqRel);
    }
}

impl<K: Eq + Hash + Clone> Drop for FlightGuard<'_, K> {
    fn drop(&mut self) {
        // Release the lock first, so a waiter can proceed, then forget the entry if nobody
        // else holds or waits for it (the map's reference and ours are the only ones left).
        drop(self.guard.take());
        let mut map = self
            .flights
            .map
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if Arc::strong_count(&self.flight) == 2 {
            map.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::error::FailureKind;
    use std::time::Duration;

    #[tokio::test]
    async fn waiters_see_the_attempt_that_finished_while_they_waited() {
        let flights = Arc::new(Flights::<&'static str>::default());
        let mut first = flights.lock("gh/alice").await;
        assert!(!first.attempt_finished_while_waiting());
        let waiter = {
            let flights = flights.clone();
            tokio::spawn(async move {
                let g = flights.lock("gh/alice").await;
                (
                    g.attempt_finished_while_waiting(),
                    g.last_failure().map(|f| f.0),
                )
            })
        };
        // An unrelated key is not blocked.
        drop(flights.lock("gh/bob").await);
        tokio::time::sleep(Duration::from_millis(20)).await;
        first.finish(Some((
            3,
            TokenFailure::new(FailureKind::ProviderError, "x"),
        )));
        drop(first);
        assert_eq!(waiter.await.unwrap(), (true, Some(3)));
        assert_eq!(flights.len(), 0, "entries are dropped when unused");
        let later = flights.lock("gh/alice").await;
        assert!(!later.attempt_finished_while_waiting());
        assert!(later.last_failure().is_none());
    }
}
