//! PostgreSQL for the end-to-end tests: a database of its own per control plane (or per group
//! of replicas), created with a random name on the server at `DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`) and dropped when the last holder lets go,
//! also when the test fails.

use sqlx::{Connection as _, PgConnection};

/// The server, as a URL of its maintenance database.
pub fn server_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Does the suite run its control planes on PostgreSQL (`CREDMGR_E2E_STORE=postgres`)?
pub fn suite_store_is_postgres() -> bool {
    match std::env::var("CREDMGR_E2E_STORE").as_deref() {
        Ok("postgres") => true,
        Ok("sqlite") | Err(_) => false,
        Ok(other) => panic!("CREDMGR_E2E_STORE={other}: use sqlite or postgres"),
    }
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("tokio runtime: {e}"))
        .block_on(f)
}

/// Is the server reachable? `Err` says why not.
pub fn reachable() -> Result<(), String> {
    let server = server_url();
    block_on(async {
        let conn = PgConnection::connect(&server)
            .await
            .map_err(|e| format!("PostgreSQL is not reachable at {server}: {e}"))?;
        let _ = conn.close().await;
        Ok(())
    })
}

/// For tests that need PostgreSQL whatever the suite's store: `false` (having printed why)
/// when it is not reachable and neither `DATABASE_URL` nor `CI` is set; with either set, an
/// unreachable server fails the test, since CI always has one.
pub fn available_or_skip(test: &str) -> bool {
    match reachable() {
        Ok(()) => true,
        Err(why)
            if std::env::var_os("DATABASE_URL").is_none() && std::env::var_os("CI").is_none() =>
        {
            eprintln!("SKIPPED {test}: {why}; set DATABASE_URL to run it");
            false
        }
        Err(why) => panic!("{why} (DATABASE_URL or CI is set, so PostgreSQL must be there)"),
    }
}

pub struct TestDatabase {
    pub name: String,
    /// Where control planes connect.
    pub url: String,
}

impl TestDatabase {
    pub fn create() -> TestDatabase {
        let server = server_url();
        let name = format!("credmgr_e2e_{}", crate::stack::random_hex());
        block_on(async {
            let mut conn = PgConnection::connect(&server).await.unwrap_or_else(|e| {
                panic!("PostgreSQL is not reachable at {server} (DATABASE_URL): {e}")
            });
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
            let _ = conn.close().await;
        });
        let mut url =
            url::Url::parse(&server).unwrap_or_else(|e| panic!("DATABASE_URL {server}: {e}"));
        url.set_path(&format!("/{name}"));
        TestDatabase {
            name,
            url: url.to_string(),
        }
    }

    /// Runs `sql` on the test database and returns the first column of each row as text.
    pub fn query(&self, sql: &str) -> Vec<String> {
        let sql = format!("SELECT x::text FROM ({sql}) AS q(x)");
        block_on(async {
            let mut conn = PgConnection::connect(&self.url)
                .await
                .unwrap_or_else(|e| panic!("connecting to {}: {e}", self.name));
            let rows: Vec<Option<String>> = sqlx::query_scalar(&sql)
                .fetch_all(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            let _ = conn.close().await;
            rows.into_iter().map(Option::unwrap_or_default).collect()
        })
    }

    /// Kills every server process serving this database (a connection-level fault: what a
    /// restart or failover does to the clients), from the maintenance database. Returns how
    /// many it killed.
    pub fn terminate_connections(&self) -> usize {
        let server = server_url();
        block_on(async {
            let mut conn = PgConnection::connect(&server)
                .await
                .unwrap_or_else(|e| panic!("PostgreSQL at {server}: {e}"));
            let killed: Vec<bool> = sqlx::query_scalar(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
            )
            .bind(&self.name)
            .fetch_all(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("pg_terminate_backend: {e}"));
            let _ = conn.close().await;
            killed.into_iter().filter(|k| *k).count()
        })
    }

    /// Every row of every table as text, with BYTEA values decoded back to their bytes, to
    /// search for secrets as in an SQLite file.
    pub fn contents(&self) -> Vec<u8> {
        let tables = self.query(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'",
        );
        let mut out = Vec::new();
        for table in tables {
            for row in self.query(&format!("SELECT t::text FROM {table} t")) {
                out.extend_from_slice(row.as_bytes());
                out.push(b'\n');
                // Inside a row's text a BYTEA is `\x<hex>` (its backslash may be doubled).
                for part in row.split("\\x").skip(1) {
                    let hex: Vec<u8> = part.bytes().take_while(u8::is_ascii_hexdigit).collect();
                    for pair in hex.chunks(2) {
                        let text = std::str::from_utf8(pair).unwrap_or("");
                        if let Ok(b) = u8::from_str_radix(text, 16) {
                            out.push(b);
                        }
                    }
                    out.push(b'\n');
                }
            }
        }
        out
    }
}

impl TestDatabase {
    /// Drops the database now, with the control planes still connected (WITH (FORCE)
    /// disconnects them); `false` if it could not. Dropping the guard does this too.
    pub fn drop_now(&self) -> bool {
        let (server, name) = (server_url(), self.name.clone());
        let dropped = std::panic::catch_unwind(|| {
            block_on(async {
                let mut conn = PgConnection::connect(&server).await.ok()?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn)
                    .await
                    .ok()
            })
        });
        matches!(dropped, Ok(Some(_)))
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if !self.drop_now() {
            eprintln!("could not drop the test database {}", self.name);
        }
    }
}
