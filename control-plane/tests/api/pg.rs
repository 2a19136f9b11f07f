//! A PostgreSQL database of its own for one test: created with a random name on the server
//! at `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`), dropped when the
//! guard is dropped, also when the test fails.

use sqlx::{Connection as _, PgConnection};

/// The server tests use, as a URL of its maintenance database.
pub fn server_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Replaces the database of `url` (its path) with `db`.
pub fn with_database(url: &str, db: &str) -> String {
    let mut u = url::Url::parse(url).unwrap();
    u.set_path(&format!("/{db}"));
    u.to_string()
}

pub struct TestDatabase {
    pub name: String,
    /// Where the control plane connects.
    pub url: String,
}

impl TestDatabase {
    /// A new, empty database; panics if the server cannot be reached.
    pub async fn create() -> TestDatabase {
        let server = server_url();
        let mut conn = PgConnection::connect(&server).await.unwrap_or_else(|e| {
            panic!("PostgreSQL at {server} (DATABASE_URL) is not reachable: {e}")
        });
        let name = format!("credmgr_test_{}", random_hex());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap();
        let _ = conn.close().await;
        TestDatabase {
            url: with_database(&server, &name),
            name,
        }
    }

    /// A new database, or `None` (printing why) when PostgreSQL is not reachable and
    /// neither `DATABASE_URL` nor `CI` is set. With either set, an unreachable server fails
    /// the test: CI always has one.
    pub async fn create_or_skip(test: &str) -> Option<TestDatabase> {
        let server = server_url();
        match PgConnection::connect(&server).await {
            Ok(conn) => {
                let _ = conn.close().await;
                Some(TestDatabase::create().await)
            }
            Err(e)
                if std::env::var_os("DATABASE_URL").is_none()
                    && std::env::var_os("CI").is_none() =>
            {
                eprintln!(
                    "SKIPPED {test}: PostgreSQL is not reachable at {server} ({e}); set \
                     DATABASE_URL to run it"
                );
                None
            }
            Err(e) => panic!("PostgreSQL at {server} is not reachable ({e}); CI must have it"),
        }
    }

    /// Every row of every table as text, with BYTEA values decoded back to their bytes, to
    /// search for secrets as in an SQLite file.
    pub async fn contents(&self) -> Vec<u8> {
        let mut conn = PgConnection::connect(&self.url).await.unwrap();
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        let mut out = Vec::new();
        for table in tables {
            let rows: Vec<String> = sqlx::query_scalar(&format!("SELECT t::text FROM {table} t"))
                .fetch_all(&mut conn)
                .await
                .unwrap();
            for row in rows {
                out.extend_from_slice(row.as_bytes());
                out.extend(decode_bytea(&row));
                out.push(b'\n');
            }
        }
        let _ = conn.close().await;
        out
    }
}

/// The bytes of every `\x<hex>` BYTEA literal in a row's text form.
fn decode_bytea(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    // Inside a row's text, a value's backslash may be doubled: `\\x..` ends in `\x..` too.
    for part in text.split("\\x").skip(1) {
        let hex: String = part.chars().take_while(char::is_ascii_hexdigit).collect();
        for pair in hex.as_bytes().chunks(2) {
            if let Ok(b) = u8::from_str_radix(std::str::from_utf8(pair).unwrap_or(""), 16) {
                out.push(b);
            }
        }
        out.push(b'\n');
    }
    out
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop runs outside any async context we could borrow: a thread with its own runtime.
        let (server, name) = (server_url(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut conn = PgConnection::connect(&server).await.ok()?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn)
                    .await
                    .ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(_))) {
            eprintln!("could not drop the test database {}", self.name);
        }
    }
}

fn random_hex() -> String {
    use std::io::Read as _;
    let mut bytes = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .unwrap();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
