//! When the control plane's proactive scheduler refreshes a token, computed with its own
//! functions (`tokens::refresh_at` and `tokens::scheduler::lead`), so that the scale run
//! measures lag against the control plane's schedule rather than a copy of it; and the lag of
//! the refreshes the token endpoint saw, against that schedule.

use crate::token_endpoint::Issued;
use credmgr_control_plane::store::TokenSchedule;
use credmgr_control_plane::tokens::{refresh_at, scheduler};
use serde::Serialize;

/// The most the scheduler refreshes ahead of a token's refresh point (its `MAX_LEAD_SECS`);
/// only used to plan the window, never to measure.
pub const MAX_LEAD_S: i64 = 30;

/// How long past the last scheduled point the run waits for refreshes still missing; a
/// refresh later than that counts as missed.
pub const GRACE_S: f64 = 30.0;
/// A connection counts as due when its scheduled point is at least this long before the end
/// of observation (the scheduler ticks every second).
pub const SETTLE_S: f64 = 2.0;

/// The refresh skew the scale run gives the control plane (`CREDMGR_REFRESH_SKEW`).
pub const SKEW_S: i64 = 1;

/// One token's schedule, Unix seconds.
#[derive(Debug, Clone, Copy)]
pub struct Point {
    pub expires_at: i64,
    /// When the runtime API would refresh it on a gateway's request.
    pub refresh_at: i64,
    /// `refresh_at - lead`: the first instant the scheduler's tick refreshes it.
    pub scheduled_at: i64,
}

impl Point {
    /// The schedule of a token that expires at `expires_at` (as the connection shows it) and
    /// was issued for `lifetime` seconds: the control plane stores `obtained_at + lifetime`
    /// as its expiry, `obtained_at` being when it sent the token request.
    pub fn new(provider: &str, connection: &str, expires_at: i64, lifetime: i64) -> Point {
        let obtained_at = expires_at - lifetime;
        let refresh_at = refresh_at(obtained_at, lifetime, SKEW_S);
        let lead = scheduler::lead(&TokenSchedule {
            provider_id: provider.to_owned(),
            connection_id: connection.to_owned(),
            obtained_at,
            expires_at,
            refresh_at,
        });
        Point {
            expires_at,
            refresh_at,
            scheduled_at: refresh_at - lead,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Refresh {
    /// Connections whose scheduled point fell in the window (should be refreshed once).
    pub due: usize,
    /// Of those, refreshed exactly once.
    pub refreshed_once: usize,
    /// Due, but no refresh reached the token endpoint within the grace period.
    pub missed: usize,
    /// Connections refreshed more than once.
    pub refreshed_more_than_once: usize,
    /// Connections refreshed although not due (one-hour tokens).
    pub refreshed_not_due: usize,
    /// Refreshes earlier than the scheduled point computed here (by more than the clock's
    /// second): a sign that this harness's model of the scheduler is wrong.
    pub earlier_than_scheduled: usize,
    /// Refreshes after `refresh_at` (when the runtime API itself would refresh on a
    /// gateway's request), and after the token expired.
    pub after_refresh_point: usize,
    pub after_expiry: usize,
    pub lag_p50_ms: f64,
    pub lag_p99_ms: f64,
    pub lag_max_ms: f64,
    /// First and last scheduled point, seconds after the end of creation.
    pub window_from_s: f64,
    pub window_to_s: f64,
    pub refreshes_per_second: f64,
}

pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Compares what the token endpoint saw with each connection's scheduled point. A connection
/// is due if its scheduled point is at least [`SETTLE_S`] before the end of observation.
pub fn analyse(
    plans: &[Point],
    issued: &[Vec<Issued>],
    observed_until: f64,
    created_at: f64,
) -> Refresh {
    let mut lags = Vec::new();
    let (mut due, mut once, mut missed, mut more, mut not_due) = (0, 0, 0, 0, 0);
    let (mut early, mut after_point, mut after_expiry) = (0, 0, 0);
    let (mut from, mut to) = (f64::INFINITY, f64::NEG_INFINITY);
    for (p, tokens) in plans.iter().zip(issued) {
        let scheduled = p.scheduled_at as f64;
        let is_due = scheduled + SETTLE_S <= observed_until;
        let refreshes = &tokens[1.min(tokens.len())..];
        if refreshes.len() > 1 {
            more += 1;
        }
        if !is_due {
            if !refreshes.is_empty() {
                not_due += 1;
            }
            continue;
        }
        due += 1;
        from = from.min(scheduled);
        to = to.max(scheduled);
        let Some(r) = refreshes.first() else {
            missed += 1;
            continue;
        };
        if refreshes.len() == 1 {
            once += 1;
        }
        let lag = r.at - scheduled;
        if lag < -1.0 {
            early += 1;
        }
        if r.at >= (p.refresh_at + 1) as f64 {
            after_point += 1;
        }
        if r.at >= p.expires_at as f64 {
            after_expiry += 1;
        }
        lags.push(lag * 1e3);
    }
    lags.sort_by(f64::total_cmp);
    let span = (to - from).max(1.0);
    Refresh {
        due,
        refreshed_once: once,
        missed,
        refreshed_more_than_once: more,
        refreshed_not_due: not_due,
        earlier_than_scheduled: early,
        after_refresh_point: after_point,
        after_expiry,
        lag_p50_ms: quantile(&lags, 0.5),
        lag_p99_ms: quantile(&lags, 0.99),
        lag_max_ms: lags.last().copied().unwrap_or(f64::NAN),
        window_from_s: from - created_at,
        window_to_s: to - created_at,
        refreshes_per_second: due as f64 / span,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_hour_token_is_scheduled_at_80_percent_less_a_lead_of_at_most_30_s() {
        let p = Point::new("scale", "c1", 10_000 + 3600, 3600);
        assert_eq!(p.refresh_at, 10_000 + 2880);
        assert!((p.refresh_at - MAX_LEAD_S..=p.refresh_at).contains(&p.scheduled_at));
    }

    #[test]
    fn each_due_token_counts_once_late_missed_twice_or_not_due() {
        let point = |scheduled_at: i64| Point {
            expires_at: scheduled_at + 100,
            refresh_at: scheduled_at + 10,
            scheduled_at,
        };
        let token = |at: f64| Issued { at, expires_in: 0 };
        let plans = [point(100), point(100), point(100), point(100), point(1_000)];
        let issued = vec![
            vec![token(0.0), token(100.5)],              // on time
            vec![token(0.0), token(115.0)],              // after refresh_at
            vec![token(0.0)],                            // missed
            vec![token(0.0), token(99.0), token(101.0)], // twice
            vec![token(0.0), token(150.0)],              // not due yet
        ];
        let r = analyse(&plans, &issued, 200.0, 90.0);
        assert_eq!((r.due, r.refreshed_once, r.missed), (4, 2, 1));
        assert_eq!(r.refreshed_more_than_once, 1);
        assert_eq!(r.refreshed_not_due, 1);
        assert_eq!((r.after_refresh_point, r.after_expiry), (1, 0));
        assert_eq!(r.earlier_than_scheduled, 0);
        assert_eq!(r.lag_max_ms, 15_000.0);
        assert_eq!((r.window_from_s, r.window_to_s), (10.0, 10.0));
    }
}
