//! Steady traffic for tests that break something under load: threads sending paced requests,
//! each outcome recorded with when it started, and the longest outage seen per target.

use crate::http;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request's outcome: when it started (since the traffic began), what it was, its status.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub at: Duration,
    pub target: String,
    pub status: u16,
    pub body: String,
}

/// Requests in `threads` threads until `stop`, each sent by `send(thread, n)` and paced to
/// about 20 a second per thread (a load a 2-core machine shared with other builds carries).
pub struct Traffic {
    stop: Arc<AtomicBool>,
    outcomes: Arc<Mutex<Vec<Outcome>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    pub started: Instant,
}

impl Traffic {
    pub fn start(
        threads: usize,
        send: impl Fn(usize, usize) -> (String, u16, String) + Send + Sync + 'static,
    ) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let started = Instant::now();
        let send = Arc::new(send);
        let threads = (0..threads)
            .map(|t| {
                let (stop, outcomes, send) = (stop.clone(), outcomes.clone(), send.clone());
                std::thread::spawn(move || {
                    let mut n = 0;
                    while !stop.load(Ordering::SeqCst) {
                        let at = started.elapsed();
                        let (target, status, body) = send(t, n);
                        outcomes.lock().unwrap().push(Outcome {
                            at,
                            target,
                            status,
                            body,
                        });
                        n += 1;
                        let next = at + Duration::from_millis(50);
                        if let Some(pause) = next.checked_sub(started.elapsed()) {
                            std::thread::sleep(pause);
                        }
                    }
                })
            })
            .collect();
        Traffic {
            stop,
            outcomes,
            threads,
            started,
        }
    }

    pub fn count(&self) -> usize {
        self.outcomes.lock().unwrap().len()
    }

    pub fn finish(self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            t.join().unwrap();
        }
        let mut all = self.outcomes.lock().unwrap().clone();
        all.sort_by_key(|o| o.at);
        all
    }
}

/// Sends `GET url` with an optional bearer token; a transport error is status 0.
pub fn get(url: &str, bearer: Option<&str>) -> (u16, String) {
    let mut req = http().get(url);
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    match req.send() {
        Ok(r) => (r.status().as_u16(), r.text().unwrap_or_default()),
        Err(e) => (0, e.to_string()),
    }
}

/// The longest time between a failed request and the next successful one of the same target.
pub fn longest_outage(outcomes: &[Outcome]) -> Duration {
    let mut longest = Duration::ZERO;
    let mut first_failure: std::collections::HashMap<&str, Duration> = Default::default();
    for o in outcomes {
        if o.status == 200 {
            if let Some(since) = first_failure.remove(o.target.as_str()) {
                longest = longest.max(o.at - since);
            }
        } else {
            first_failure.entry(o.target.as_str()).or_insert(o.at);
        }
    }
    if let Some(end) = outcomes.last().map(|o| o.at) {
        for since in first_failure.values() {
            longest = longest.max(end - *since);
        }
    }
    longest
}
