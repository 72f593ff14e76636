//! A real PostgreSQL for the tests that need one: the server named by
//! `STRIPE_ROUTER_TEST_DATABASE_URL` (`.ci/run` starts a throwaway cluster
//! and sets it), one fresh database per test with a random name, dropped
//! when the test ends. Without the variable a test says it was skipped;
//! with `CI` set it fails instead, so CI cannot pass without PostgreSQL.

use std::time::Duration;

use rand::Rng as _;

/// The server the PostgreSQL tests run against: any database on it, as a
/// user that may create databases.
pub const URL_VAR: &str = "STRIPE_ROUTER_TEST_DATABASE_URL";

/// How long connecting to the test server may take.
const CONNECT: Duration = Duration::from_secs(10);

/// A database of its own for one test, dropped (its connections closed
/// first) when this guard goes.
#[derive(Debug)]
pub struct TestDatabase {
    /// `postgres://…/<name>`: what the router's `store: { url }` gets.
    pub url: String,
    pub name: String,
    /// The server's URL from [`URL_VAR`], to create and drop databases.
    server: String,
}

impl TestDatabase {
    /// A fresh, empty database; `None` (the test should return) when
    /// [`URL_VAR`] is unset outside CI. `test` names the caller in the
    /// skip line.
    pub async fn create(test: &str) -> Option<TestDatabase> {
        let server = match std::env::var(URL_VAR) {
            Ok(url) if !url.trim().is_empty() => url,
            _ if std::env::var_os("CI").is_some() => {
                panic!(
                    "{URL_VAR} is not set: in CI the PostgreSQL tests must run (.ci/run sets it)"
                )
            }
            _ => {
                eprintln!("skipped {test}: set {URL_VAR}=postgres://… to run it on PostgreSQL");
                return None;
            }
        };
        let name = format!("stripe_router_test_{:016x}", rand::rng().random::<u64>());
        execute(&server, &format!("CREATE DATABASE {name}")).await;
        let url = with_database(&server, &name);
        Some(TestDatabase { url, name, server })
    }

    /// A connection to this database, for the test's own reads.
    pub async fn connect(&self) -> tokio_postgres::Client {
        connect(&self.url).await
    }

    /// One number from this database.
    pub async fn count(&self, sql: &str) -> i64 {
        self.connect()
            .await
            .query_one(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .get(0)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime, which cannot be blocked on:
        // the drop gets a thread and a runtime of its own.
        let (server, name) = (self.server.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime to drop the test database")
                .block_on(execute(
                    &server,
                    &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                ));
        })
        .join();
        if dropped.is_err() && !std::thread::panicking() {
            panic!("the test database {} was not dropped", self.name);
        }
    }
}

/// `url` with its database (the path) replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let mut parsed = url::Url::parse(url).unwrap_or_else(|e| panic!("{URL_VAR}: {e}"));
    parsed.set_path(&format!("/{name}"));
    parsed.to_string()
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let connecting = tokio_postgres::connect(url, tokio_postgres::NoTls);
    let (client, connection) = tokio::time::timeout(CONNECT, connecting)
        .await
        .unwrap_or_else(|_| panic!("{URL_VAR}: no answer within {CONNECT:?}"))
        .unwrap_or_else(|e| panic!("{URL_VAR}: cannot connect: {e}"));
    tokio::spawn(connection);
    client
}

async fn execute(server: &str, sql: &str) {
    connect(server)
        .await
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

#[tokio::test]
async fn each_test_gets_a_fresh_database_dropped_at_its_end() {
    let Some(db) = TestDatabase::create("each_test_gets_a_fresh_database").await else {
        return;
    };
    let other = TestDatabase::create("each_test_gets_a_fresh_database")
        .await
        .expect("the variable is set");
    assert_ne!(db.name, other.name);
    assert_eq!(
        db.count("SELECT COUNT(*) FROM pg_tables WHERE schemaname = 'public'")
            .await,
        0,
        "empty"
    );
    let client = db.connect().await;
    client
        .batch_execute("CREATE TABLE t (n INT); INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    assert_eq!(
        other
            .count("SELECT COUNT(*) FROM pg_tables WHERE tablename = 't'")
            .await,
        0
    );

    // Dropped even with a connection still open.
    let (server, name) = (db.server.clone(), db.name.clone());
    drop(db);
    assert!(
        client.simple_query("SELECT 1").await.is_err(),
        "closed by the drop"
    );
    let exists = connect(&server)
        .await
        .query_one(
            "SELECT COUNT(*) FROM pg_database WHERE datname = $1",
            &[&name],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(exists, 0, "{name} is dropped");
}
