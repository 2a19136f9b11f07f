//! Persistence of providers, connections and tokens.
//!
//! [`Store`] is the one door to the database. It speaks in records ([`records`]) whose secrets
//! are already encrypted: the store never sees a plaintext secret, and never holds a key.
//!
//! Two databases sit behind it: SQLite (one node, the default) and PostgreSQL (several
//! replicas on one database). Each statement is written once, with `$n` placeholders that both
//! sqlx drivers bind, and each method once: it hands its statement and [`exec::Arg`]s to
//! `exec.rs`, which runs them on whichever pool the store holds, or in a write transaction,
//! and `rows.rs` turns a row of either database into a record. The few real differences
//! (connecting, how a write transaction begins, SQLite's checkpoints) are in `dialect.rs`. Each database has its own migration folder (`migrations/sqlite/`,
//! `migrations/postgresql/`, numbered alike), since their DDL differs.
//!
//! The methods are grouped by what they keep: `providers.rs`, `connections.rs`, `tokens.rs`
//! (tokens, the refresh lease and the refresh schedule), `consent.rs` (login links and
//! authorization requests in progress), `identities.rs` (trusted issuers and access
//! policies), `envelopes.rs` (every stored envelope, for key rotation), `stats.rs` (counts
//! for the metrics), `webhooks.rs` (receivers and the outbox) and `audit.rs` (the audit
//! trail).

mod audit;
mod connections;
mod consent;
mod dialect;
mod envelopes;
mod exec;
mod identities;
mod providers;
pub mod records;
mod rows;
mod stats;
mod tokens;
mod webhooks;

use std::fmt;

use anyhow::Context as _;

pub use audit::{AuditEntry, AuditQuery};
use dialect::Pool;
pub use records::*;
pub use stats::StoreCounts;
pub use webhooks::{AttemptOutcome, ClaimedDelivery, DeliveryRecord, WebhookRecord};

/// The store: cheap to clone, shared by all requests.
#[derive(Clone, Debug)]
pub struct Store {
    pool: Pool,
}

impl Store {
    /// Opens the database named by `url` and brings its schema up to date.
    pub async fn connect(url: &DatabaseUrl) -> anyhow::Result<Store> {
        let raw = url.expose();
        let pool = if raw.starts_with("sqlite:") {
            Pool::Sqlite(dialect::connect_sqlite(raw).await.with_context(|| {
                format!(
                    "could not open the SQLite database {url}: check that its directory \
                     exists and is writable, or set CREDMGR_DATABASE_URL (--database-url)"
                )
            })?)
        } else if raw.starts_with("postgres:") || raw.starts_with("postgresql:") {
            Pool::Postgres(dialect::connect_postgres(raw).await.with_context(|| {
                format!(
                    "could not connect to the PostgreSQL database {url} or bring its schema \
                     up to date: check that the server runs, that the database exists and \
                     that the user may create tables in it (CREDMGR_DATABASE_URL, \
                     --database-url)"
                )
            })?)
        } else {
            anyhow::bail!(
                "unsupported database URL {url}: set CREDMGR_DATABASE_URL (--database-url) to \
                 sqlite://PATH (for example sqlite://credmgr.db) or \
                 postgres://USER:PASSWORD@HOST:PORT/DATABASE"
            )
        };
        Ok(Store { pool })
    }

    /// Which database this is: `sqlite` or `postgresql`.
    pub fn kind(&self) -> &'static str {
        match &self.pool {
            Pool::Sqlite(_) => "sqlite",
            Pool::Postgres(_) => "postgresql",
        }
    }

    /// Waits for open connections to finish and closes them.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.execute("SELECT 1", &[]).await.map(|_| ())
    }
}

/// A database failure. The details go to the log, never to a client.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Is the database unreachable (rather than refusing this statement)? A request that
    /// fails so may succeed when retried: the pool replaces dead connections by itself.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Database(e) => match e {
                sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed => true,
                // SQLSTATE class 08: connection exception; 57P01..57P03: the server is
                // shutting down, was shut down by an administrator, or cannot connect now.
                sqlx::Error::Database(db) => db
                    .code()
                    .is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
                _ => false,
            },
            StoreError::Corrupt(_) => false,
        }
    }
}

/// The database URL, shown without its password.
#[derive(Clone)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn new(url: impl Into<String>) -> Self {
        DatabaseUrl(url.into())
    }

    /// The URL itself, for the driver only: it may hold a password.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password replaced, safe to log.
    pub fn redacted(&self) -> String {
        match url::Url::parse(&self.0) {
            Ok(mut u) if u.password().is_some() => {
                let _ = u.set_password(Some("redacted"));
                u.to_string()
            }
            Ok(_) => self.0.clone(),
            Err(_) if self.0.contains('@') => "[unparseable URL, redacted]".to_owned(),
            Err(_) => self.0.clone(),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", self.redacted())
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_url_never_shows_a_password() {
        let url = DatabaseUrl::new("postgres://credmgr:hunter2@db:5432/credmgr");
        assert!(!format!("{url:?}").contains("hunter2"));
        assert!(!url.to_string().contains("hunter2"));
        assert!(url.to_string().contains("credmgr:redacted@db"), "{url}");
        let plain = DatabaseUrl::new("sqlite://credmgr.db");
        assert_eq!(plain.to_string(), "sqlite://credmgr.db");
    }
}
