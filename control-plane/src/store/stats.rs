//! Counts for the metrics: connections by status and error code, tokens past their refresh
//! point. Two aggregate queries, read when `/metrics` is scraped (at most every few seconds:
//! `telemetry::gauges`): the connections' is one scan of the table (about ten milliseconds
//! for 100,000 connections on SQLite), the tokens' reads only the tokens past their refresh
//! point, through the `tokens_refresh_at` index the scheduler uses.

use super::exec::args;
use super::{Store, StoreError};
use crate::metrics::ConnectionCount;

/// What [`Store::counts`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreCounts {
    pub connections: Vec<ConnectionCount>,
    /// Tokens past their refresh point, still valid.
    pub in_refresh_window: i64,
    /// Tokens past their expiry.
    pub expired: i64,
}

impl Store {
    /// Connections by status and error code, and tokens past their refresh point at `now`.
    pub async fn counts(&self, now: i64) -> Result<StoreCounts, StoreError> {
        let connections = self
            .fetch_all(
                "SELECT status, error_code, COUNT(*) AS n FROM connections \
                 GROUP BY status, error_code",
                &args![],
                |row| {
                    Ok(ConnectionCount {
                        status: row.text("status")?,
                        error_code: row.opt_text("error_code")?,
                        count: row.int("n")?,
                    })
                },
            )
            .await?;
        let (in_refresh_window, expired) = self
            .fetch_optional(
                "SELECT COALESCE(SUM(CASE WHEN expires_at > $1 THEN 1 ELSE 0 END), 0) AS valid, \
                 COALESCE(SUM(CASE WHEN expires_at <= $1 THEN 1 ELSE 0 END), 0) AS expired \
                 FROM tokens WHERE refresh_at <= $1",
                &args![now],
                |row| Ok((row.int("valid")?, row.int("expired")?)),
            )
            .await?
            .unwrap_or_default();
        Ok(StoreCounts {
            connections,
            in_refresh_window,
            expired,
        })
    }
}
