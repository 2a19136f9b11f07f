//! Running a statement on whichever database the store has, so that the store's methods are
//! written once: [`Arg`], a value bound to a `$n`; [`Store::fetch_optional`],
//! [`Store::fetch_all`] and [`Store::execute`] on the pool; [`Tx`], a write transaction with
//! the same three. A row comes back as `&dyn Columns` ([`super::rows`]), which decodes the
//! same from either database.

use std::borrow::Cow;

use sqlx::postgres::Postgres;
use sqlx::query::Query;
use sqlx::sqlite::Sqlite;
use sqlx::{Database, Encode, Transaction, Type};

use super::dialect::{BeginWrite as _, Either, LOCK_NAME};
use super::rows::Columns;
use super::{Store, StoreError};

/// A value bound to a statement's `$n`: text, integer or bytes, each possibly NULL. Borrowed
/// where the caller has the value, owned where it was made for the statement (JSON, an
/// envelope's bytes).
#[derive(Debug, Clone)]
pub(super) enum Arg<'a> {
    Text(Option<Cow<'a, str>>),
    Int(Option<i64>),
    Bytes(Option<Cow<'a, [u8]>>),
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(v: &'a str) -> Self {
        Arg::Text(Some(Cow::Borrowed(v)))
    }
}

impl<'a> From<&'a String> for Arg<'a> {
    fn from(v: &'a String) -> Self {
        Arg::Text(Some(Cow::Borrowed(v)))
    }
}

impl From<String> for Arg<'_> {
    fn from(v: String) -> Self {
        Arg::Text(Some(Cow::Owned(v)))
    }
}

impl<'a> From<Option<&'a str>> for Arg<'a> {
    fn from(v: Option<&'a str>) -> Self {
        Arg::Text(v.map(Cow::Borrowed))
    }
}

impl<'a> From<&'a Option<String>> for Arg<'a> {
    fn from(v: &'a Option<String>) -> Self {
        Arg::Text(v.as_deref().map(Cow::Borrowed))
    }
}

impl From<Option<String>> for Arg<'_> {
    fn from(v: Option<String>) -> Self {
        Arg::Text(v.map(Cow::Owned))
    }
}

impl From<i64> for Arg<'_> {
    fn from(v: i64) -> Self {
        Arg::Int(Some(v))
    }
}

impl From<Option<i64>> for Arg<'_> {
    fn from(v: Option<i64>) -> Self {
        Arg::Int(v)
    }
}

impl<'a> From<&'a [u8]> for Arg<'a> {
    fn from(v: &'a [u8]) -> Self {
        Arg::Bytes(Some(Cow::Borrowed(v)))
    }
}

impl<'a> From<&'a Vec<u8>> for Arg<'a> {
    fn from(v: &'a Vec<u8>) -> Self {
        Arg::Bytes(Some(Cow::Borrowed(v)))
    }
}

impl From<Vec<u8>> for Arg<'_> {
    fn from(v: Vec<u8>) -> Self {
        Arg::Bytes(Some(Cow::Owned(v)))
    }
}

impl From<Option<Vec<u8>>> for Arg<'_> {
    fn from(v: Option<Vec<u8>>) -> Self {
        Arg::Bytes(v.map(Cow::Owned))
    }
}

/// The argument list of a statement: `args![a, b, c]` for `$1, $2, $3`.
macro_rules! args {
    ($($value:expr),* $(,)?) => {
        [$($crate::store::exec::Arg::from($value)),*]
    };
}
pub(super) use args;

/// `$a, ..., $b`: the placeholders of a run of arguments.
pub(super) fn placeholders(range: std::ops::RangeInclusive<usize>) -> String {
    range
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Binds every [`Arg`] in order.
trait BindArgs<'q> {
    fn bind_args(self, args: &'q [Arg<'_>]) -> Self;
}

impl<'q, DB: Database> BindArgs<'q> for Query<'q, DB, <DB as Database>::Arguments<'q>>
where
    Option<&'q str>: Encode<'q, DB> + Type<DB>,
    Option<i64>: Encode<'q, DB> + Type<DB>,
    Option<&'q [u8]>: Encode<'q, DB> + Type<DB>,
{
    fn bind_args(mut self, args: &'q [Arg<'_>]) -> Self {
        for arg in args {
            self = match arg {
                Arg::Text(v) => self.bind(v.as_deref()),
                Arg::Int(v) => self.bind(*v),
                Arg::Bytes(v) => self.bind(v.as_deref()),
            };
        }
        self
    }
}

/// Runs `$body` with `$db` bound to the pool or transaction of whichever database `$on`
/// holds: the body is compiled once per database. It is spelled like a closure so that
/// rustfmt formats it, but it is not one: `?` in it leaves the function.
macro_rules! on_db {
    ($on:expr, |$db:ident| $body:expr) => {
        match $on {
            Either::Sqlite($db) => $body,
            Either::Postgres($db) => $body,
        }
    };
}

impl Store {
    /// The row `sql` finds, decoded, if it finds one.
    pub(super) async fn fetch_optional<T>(
        &self,
        sql: &str,
        args: &[Arg<'_>],
        decode: impl Fn(&dyn Columns) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        on_db!(&self.pool, |db| {
            let row = sqlx::query(sql).bind_args(args).fetch_optional(db).await?;
            row.as_ref().map(|r| decode(r)).transpose()
        })
    }

    /// Every row `sql` finds, decoded.
    pub(super) async fn fetch_all<T>(
        &self,
        sql: &str,
        args: &[Arg<'_>],
        decode: impl Fn(&dyn Columns) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        on_db!(&self.pool, |db| {
            let rows = sqlx::query(sql).bind_args(args).fetch_all(db).await?;
            rows.iter().map(|r| decode(r)).collect()
        })
    }

    /// Runs `sql`; how many rows it changed.
    pub(super) async fn execute(&self, sql: &str, args: &[Arg<'_>]) -> Result<u64, StoreError> {
        on_db!(&self.pool, |db| {
            Ok(sqlx::query(sql)
                .bind_args(args)
                .execute(db)
                .await?
                .rows_affected())
        })
    }

    /// Begins a transaction that will write (see [`super::dialect::BeginWrite`]). Dropped
    /// without [`Tx::commit`], it rolls back.
    pub(super) async fn begin_write(&self) -> Result<Tx, StoreError> {
        Ok(Tx(match &self.pool {
            Either::Sqlite(db) => Either::Sqlite(db.begin_write().await?),
            Either::Postgres(db) => Either::Postgres(db.begin_write().await?),
        }))
    }
}

/// A write transaction on either database.
pub(super) struct Tx(Either<Transaction<'static, Sqlite>, Transaction<'static, Postgres>>);

impl Tx {
    /// As [`Store::fetch_optional`], inside the transaction.
    pub(super) async fn fetch_optional<T>(
        &mut self,
        sql: &str,
        args: &[Arg<'_>],
        decode: impl Fn(&dyn Columns) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        on_db!(&mut self.0, |tx| {
            let row = sqlx::query(sql)
                .bind_args(args)
                .fetch_optional(&mut **tx)
                .await?;
            row.as_ref().map(|r| decode(r)).transpose()
        })
    }

    /// As [`Store::execute`], inside the transaction.
    pub(super) async fn execute(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<u64, StoreError> {
        on_db!(&mut self.0, |tx| {
            Ok(sqlx::query(sql)
                .bind_args(args)
                .execute(&mut **tx)
                .await?
                .rows_affected())
        })
    }

    /// Makes the transactions that lock the same `name` wait for each other until they end
    /// (see [`super::dialect::LOCK_NAME`]).
    pub(super) async fn lock_name(&mut self, name: &str) -> Result<(), StoreError> {
        match &mut self.0 {
            // A write transaction holds the database's write lock from its start.
            Either::Sqlite(_) => Ok(()),
            Either::Postgres(tx) => {
                sqlx::query(LOCK_NAME).bind(name).execute(&mut **tx).await?;
                Ok(())
            }
        }
    }

    pub(super) async fn commit(self) -> Result<(), StoreError> {
        on_db!(self.0, |tx| Ok(tx.commit().await?))
    }
}
