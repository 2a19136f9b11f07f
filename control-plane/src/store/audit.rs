//! The audit trail: appended in batches, read newest first in pages (by id), purged by age.

use super::exec::{args, placeholders, Arg};
use super::rows::Columns;
use super::{Store, StoreError};

/// One entry of the audit trail (see `migrations/*/0010_audit.sql` for the columns' meaning).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditEntry {
    /// Assigned by the database; 0 before the entry is written.
    pub id: i64,
    pub at: i64,
    /// `token` or `change`.
    pub kind: String,
    pub actor: Option<String>,
    pub identity: Option<String>,
    pub issuer: Option<String>,
    pub provider_id: Option<String>,
    pub connection_id: Option<String>,
    pub action: String,
    pub outcome: String,
    /// JSON, never a secret.
    pub detail: Option<String>,
}

/// Which entries `GET /v1/audit` wants: all filters optional, newest first, ids below
/// `before_id` (the cursor).
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub provider_id: Option<String>,
    pub connection_id: Option<String>,
    pub identity: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub before_id: Option<i64>,
    pub limit: u32,
}

const COLUMNS: &str =
    "at, kind, actor, identity, issuer, provider_id, connection_id, action, outcome, detail";

fn entry_from_row(row: &dyn Columns) -> Result<AuditEntry, StoreError> {
    Ok(AuditEntry {
        id: row.int("id")?,
        at: row.int("at")?,
        kind: row.text("kind")?,
        actor: row.opt_text("actor")?,
        identity: row.opt_text("identity")?,
        issuer: row.opt_text("issuer")?,
        provider_id: row.opt_text("provider_id")?,
        connection_id: row.opt_text("connection_id")?,
        action: row.text("action")?,
        outcome: row.text("outcome")?,
        detail: row.opt_text("detail")?,
    })
}

fn values(e: &AuditEntry) -> [Arg<'_>; 10] {
    args![
        e.at,
        &e.kind,
        &e.actor,
        &e.identity,
        &e.issuer,
        &e.provider_id,
        &e.connection_id,
        &e.action,
        &e.outcome,
        &e.detail,
    ]
}

/// Rows per INSERT statement, largest first: a batch is cut into these, so that only four
/// statement texts exist and each connection prepares each once (sqlx caches prepared
/// statements per connection; a text per batch size would be prepared again and again). 10
/// values a row, far below either database's limit of bound parameters.
const STATEMENT_ROWS: [usize; 4] = [128, 32, 8, 1];

/// `INSERT ... VALUES (...), (...)` for `rows` entries.
fn insert_statement(rows: usize) -> String {
    let mut sql = format!("INSERT INTO audit_log ({COLUMNS}) VALUES ");
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        sql.push_str(&placeholders(r * 10 + 1..=r * 10 + 10));
        sql.push(')');
    }
    sql
}

impl Store {
    /// Appends entries: many rows per statement, all statements in one transaction. Per
    /// statement, sqlx hands the work to SQLite's thread or sends a PostgreSQL round trip;
    /// per row that cost would be paid by the core that serves the runtime API.
    pub async fn insert_audit(&self, entries: &[AuditEntry]) -> Result<(), StoreError> {
        let mut chunks = Vec::new();
        let mut rest = entries;
        while let Some(&rows) = STATEMENT_ROWS.iter().find(|&&n| n <= rest.len()) {
            let (chunk, tail) = rest.split_at(rows);
            chunks.push(chunk);
            rest = tail;
        }
        if let [one] = chunks.as_slice() {
            let binds: Vec<Arg<'_>> = one.iter().flat_map(values).collect();
            self.execute(&insert_statement(one.len()), &binds).await?;
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        for chunk in chunks {
            let binds: Vec<Arg<'_>> = chunk.iter().flat_map(values).collect();
            tx.execute(&insert_statement(chunk.len()), &binds).await?;
        }
        tx.commit().await
    }

    /// One page of the trail, newest first.
    pub async fn query_audit(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let sql = format!(
            "SELECT id, {COLUMNS} FROM audit_log WHERE \
             (CAST($1 AS TEXT) IS NULL OR provider_id = $1) AND \
             (CAST($2 AS TEXT) IS NULL OR connection_id = $2) AND \
             (CAST($3 AS TEXT) IS NULL OR identity = $3) AND \
             (CAST($4 AS BIGINT) IS NULL OR at >= $4) AND \
             (CAST($5 AS BIGINT) IS NULL OR at <= $5) AND \
             (CAST($6 AS BIGINT) IS NULL OR id < $6) \
             ORDER BY id DESC LIMIT $7"
        );
        let binds = args![
            &q.provider_id,
            &q.connection_id,
            &q.identity,
            q.since,
            q.until,
            q.before_id,
            i64::from(q.limit),
        ];
        self.fetch_all(&sql, &binds, entry_from_row).await
    }

    /// Deletes the entries older than `cutoff`; how many.
    pub async fn purge_audit(&self, cutoff: i64) -> Result<u64, StoreError> {
        self.execute("DELETE FROM audit_log WHERE at < $1", &args![cutoff])
            .await
    }
}
