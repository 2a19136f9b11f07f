//! What differs between the two databases, and nothing else: how to connect, how a write
//! transaction begins, and SQLite's write-ahead-log checkpoints.
//!
//! Every statement is the same text on both (`$n` placeholders, which both sqlx drivers bind;
//! `CAST($n AS TEXT)` where PostgreSQL must be told a parameter's type; the current time bound
//! from Rust rather than written as a SQL function, since the two spell it differently).

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgSslMode, Postgres};
use sqlx::sqlite::{
    Sqlite, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::Transaction;

use super::StoreError;

/// One of a pair of things of the same role, one per database: a pool, a transaction.
#[derive(Clone, Debug)]
pub(super) enum Either<S, P> {
    Sqlite(S),
    Postgres(P),
}

/// The pool of whichever database is configured: SQLite (one file, WAL mode, for a single
/// control-plane node) or PostgreSQL (several control-plane replicas on one database).
pub(super) type Pool = Either<SqlitePool, PgPool>;

impl Pool {
    /// What ends a `SELECT ... LIMIT n` that picks rows to claim: on PostgreSQL, rows another
    /// transaction has locked are skipped rather than waited for, so replicas claim different
    /// rows; SQLite has one writer at a time and no row locks.
    pub(super) fn skip_locked(&self) -> &'static str {
        match self {
            Pool::Sqlite(_) => "",
            Pool::Postgres(_) => " FOR UPDATE SKIP LOCKED",
        }
    }

    pub(super) async fn close(&self) {
        match self {
            Pool::Sqlite(pool) => pool.close().await,
            Pool::Postgres(pool) => pool.close().await,
        }
    }
}

/// How a transaction that will write begins.
pub(super) trait BeginWrite {
    type Database: sqlx::Database;

    async fn begin_write(&self) -> Result<Transaction<'static, Self::Database>, sqlx::Error>;
}

/// Write transactions take the write lock up front. A deferred transaction that reads first
/// and writes later can fail with SQLITE_BUSY when another writer got in between, and SQLite
/// does not retry that case even with a busy timeout.
impl BeginWrite for SqlitePool {
    type Database = Sqlite;

    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
        self.begin_with("BEGIN IMMEDIATE").await
    }
}

/// READ COMMITTED, PostgreSQL's default: every conditional write (`... WHERE etag = $n`, the
/// refresh lease, the token generation) is one UPDATE, which PostgreSQL serialises on the row
/// lock and re-checks against the row as committed by the other writer, so of two replicas
/// racing one wins.
impl BeginWrite for PgPool {
    type Database = Postgres;

    async fn begin_write(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        self.begin().await
    }
}

/// PostgreSQL: a lock on a name (a 64-bit hash of it), held until the transaction ends, for
/// work that must not run twice at once across replicas but has no row to lock (counting the
/// login links of a caller before making another). Bind: the name. SQLite needs none: a write
/// transaction holds the database's write lock from its start ([`BeginWrite`]).
pub(super) const LOCK_NAME: &str = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))";

/// How long a SQLite statement waits for another connection's write lock.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections to the SQLite file.
const SQLITE_MAX_CONNECTIONS: u32 = 8;

/// How often the write-ahead log is checkpointed and truncated in the background. SQLite's own
/// checkpoints after each commit can copy the log into the database but cannot start it over
/// while some connection is always reading, and the pool's readers overlap under steady load:
/// `make bench`'s scale run grew the log to 3.4 GiB next to a 50 MiB database. A TRUNCATE
/// checkpoint waits (up to the busy timeout) for the readers of the moment, then empties it.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(30);

/// A log that a checkpoint does start over is cut back to this size (`journal_size_limit`).
const WAL_SIZE_LIMIT_BYTES: u64 = 64 * 1024 * 1024;

/// How long a PostgreSQL request waits for a pooled connection before it fails (and
/// `/readyz` says the database is down) rather than hanging while the database is unreachable.
const POSTGRES_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// PostgreSQL connections per replica. Several replicas share the server's `max_connections`
/// (100 by default), so this stays modest.
const POSTGRES_MAX_CONNECTIONS: u32 = 10;

/// Opens (creating if missing) the SQLite database, runs its migrations and starts the
/// checkpoint task.
pub(super) async fn connect_sqlite(url: &str) -> Result<SqlitePool, sqlx::Error> {
    let options = SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // NORMAL is durable across application crashes in WAL mode; only an OS crash can lose
        // the last transactions, which at worst costs a token re-fetch.
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(SQLITE_BUSY_TIMEOUT)
        .pragma("journal_size_limit", WAL_SIZE_LIMIT_BYTES.to_string());
    let pool = SqlitePoolOptions::new()
        .max_connections(SQLITE_MAX_CONNECTIONS)
        .connect_with(options)
        .await?;
    sqlx::migrate!("migrations/sqlite").run(&pool).await?;
    tokio::spawn(checkpoints(pool.clone()));
    Ok(pool)
}

/// Connects to PostgreSQL and runs its migrations. Replicas starting at once are safe: sqlx's
/// migrator holds a PostgreSQL advisory lock (keyed by the database name) while it checks and
/// applies migrations, so one replica migrates and the others wait, then find nothing left
/// to do.
pub(super) async fn connect_postgres(url: &str) -> Result<PgPool, sqlx::Error> {
    let options = PgConnectOptions::from_str(url)?.application_name("credmgr");
    if let Some(warning) = weak_tls(&options) {
        tracing::warn!("{warning}");
    }
    let pool = PgPoolOptions::new()
        .max_connections(POSTGRES_MAX_CONNECTIONS)
        .acquire_timeout(POSTGRES_ACQUIRE_TIMEOUT)
        // A connection the server closed (restart, pg_terminate_backend, failover) is found
        // dead by this check and replaced, so the store recovers by itself.
        .test_before_acquire(true)
        .connect_with(options)
        .await?;
    sqlx::migrate!("migrations/postgresql").run(&pool).await?;
    Ok(pool)
}

/// Why the connection to a PostgreSQL server on another machine can be read or taken over
/// on the way, if it can. In sqlx, as in libpq, only `sslmode=verify-full` checks both the
/// server's certificate (against the system's CAs, or `sslrootcert`) and its host name:
/// `require` encrypts but accepts any certificate, `verify-ca` accepts a certificate made
/// for another host, and `prefer` (the default) and `allow` fall back to plaintext. A
/// server on the loopback interface or a Unix socket is not warned about: its traffic does
/// not leave the machine.
fn weak_tls(options: &PgConnectOptions) -> Option<String> {
    let host = options.get_host();
    let local = options.get_socket().is_some()
        || host.starts_with('/')
        || host == "localhost"
        || host
            .trim_matches(|c| c == '[' || c == ']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    let mode = options.get_ssl_mode();
    if local || matches!(mode, PgSslMode::VerifyFull) {
        return None;
    }
    let what = match mode {
        PgSslMode::Disable => "sslmode=disable: no TLS at all",
        PgSslMode::Allow | PgSslMode::Prefer => {
            "sslmode is prefer or allow (prefer is the default): TLS only if the server offers it, \
             and no certificate check"
        }
        PgSslMode::Require => "sslmode=require: encrypted, but any certificate is accepted",
        PgSslMode::VerifyCa | PgSslMode::VerifyFull => {
            "sslmode=verify-ca: the certificate is checked, but not that it names this host"
        }
    };
    Some(format!(
        "the connection to PostgreSQL at {host} is not protected against a man in the middle \
         ({what}); add ?sslmode=verify-full to CREDMGR_DATABASE_URL (with sslrootcert=PATH \
         when the server's CA is not among the system's)"
    ))
}

/// Checkpoints the log every [`CHECKPOINT_EVERY`] until the pool is closed.
async fn checkpoints(pool: SqlitePool) {
    let mut every = tokio::time::interval(CHECKPOINT_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    loop {
        every.tick().await;
        if pool.is_closed() {
            return;
        }
        match checkpoint(&pool).await {
            Ok(true) => {}
            Ok(false) => tracing::debug!("SQLite checkpoint: readers kept the log; next time"),
            Err(e) => tracing::warn!("SQLite checkpoint failed: {e}"),
        }
    }
}

/// Copies the write-ahead log into the database and empties it; `Ok(false)` when readers
/// kept it from finishing (the next run tries again).
async fn checkpoint(pool: &SqlitePool) -> Result<bool, StoreError> {
    // One row: busy (1 when it could not finish), log frames, frames checkpointed.
    let (busy, _, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
        .fetch_one(pool)
        .await?;
    Ok(busy == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wal_len(db: &std::path::Path) -> u64 {
        let wal = db.with_file_name(format!(
            "{}-wal",
            db.file_name().unwrap_or_default().to_string_lossy()
        ));
        std::fs::metadata(wal).map(|m| m.len()).unwrap_or(0)
    }

    #[tokio::test]
    async fn a_log_that_readers_kept_growing_is_emptied_by_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("wal.db");
        let pool = connect_sqlite(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        sqlx::query("CREATE TABLE filler (b BLOB)")
            .execute(&pool)
            .await
            .unwrap();
        // A reader that stays inside a snapshot, as overlapping requests do under load: the
        // log cannot start over while it reads.
        let mut reader = pool.acquire().await.unwrap();
        sqlx::query("BEGIN").execute(&mut *reader).await.unwrap();
        sqlx::query("SELECT count(*) FROM filler")
            .fetch_one(&mut *reader)
            .await
            .unwrap();
        for _ in 0..200 {
            sqlx::query("INSERT INTO filler VALUES (randomblob(16384))")
                .execute(&pool)
                .await
                .unwrap();
        }
        assert!(wal_len(&db) > 3_000_000, "the log grew: {}", wal_len(&db));
        sqlx::query("COMMIT").execute(&mut *reader).await.unwrap();
        drop(reader);

        assert!(checkpoint(&pool).await.unwrap());
        assert_eq!(wal_len(&db), 0, "the log is empty after the checkpoint");
        let (rows,): (i64,) = sqlx::query_as("SELECT count(*) FROM filler")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(rows, 200, "nothing written was lost");
        pool.close().await;
    }

    #[test]
    fn only_verify_full_is_quiet_for_a_remote_postgres() {
        let warn = |url: &str| weak_tls(&PgConnectOptions::from_str(url).unwrap());
        for weak in ["disable", "prefer", "require", "verify-ca"] {
            let w = warn(&format!("postgres://u@db.example/credmgr?sslmode={weak}"));
            assert!(w.is_some_and(|w| w.contains("verify-full")), "{weak}");
        }
        assert!(warn("postgres://u:pw@db.example/credmgr?sslmode=verify-full").is_none());
        assert!(warn("postgres://u@127.0.0.1:5432/credmgr").is_none());
        assert!(warn("postgres://u@localhost/credmgr?sslmode=disable").is_none());
        let w = warn("postgres://u:hunter2@db.example/credmgr").unwrap();
        assert!(!w.contains("hunter2"), "{w}");
    }
}
