//! For tests: a fresh database per test on the server that
//! `STRIPE_ROUTER_TEST_DATABASE_URL` names, dropped when the test ends.
//! Without that variable a test is skipped (it says so), unless `CI` is
//! set: then a missing PostgreSQL fails the run.

use std::str::FromStr as _;

use crate::config::database_url::{Target, parse};

/// The variable naming the test server.
pub const URL_VAR: &str = "STRIPE_ROUTER_TEST_DATABASE_URL";

/// A database made for one test; dropped with this.
pub struct TestDb {
    /// The server's URL (its own database), to make and drop others.
    server: String,
    pub name: String,
    /// A URL of the test database.
    pub url: String,
}

impl TestDb {
    /// A fresh database, or `None` (said on stderr) when no server is
    /// configured outside CI.
    pub async fn create(test: &str) -> Option<TestDb> {
        let Ok(server) = std::env::var(URL_VAR) else {
            assert!(
                std::env::var_os("CI").is_none(),
                "{URL_VAR} is not set: CI must run the PostgreSQL tests"
            );
            eprintln!("skipped {test}: {URL_VAR} is not set");
            return None;
        };
        use rand::Rng as _;
        let name = format!("pg_test_{:012x}", rand::rng().random::<u64>() >> 16);
        let (client, connection) = tokio_postgres::Config::from_str(&server)
            .unwrap_or_else(|e| panic!("{URL_VAR}: {e}"))
            .connect(tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("cannot reach the server of {URL_VAR}: {e}"));
        tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let mut url = url::Url::parse(&server).unwrap();
        url.set_path(&format!("/{name}"));
        Some(TestDb {
            server,
            name,
            url: url.to_string(),
        })
    }

    pub fn target(&self) -> Target {
        parse(&self.url).unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        // Its own thread and runtime: drop may run inside a runtime.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let (client, connection) = tokio_postgres::Config::from_str(&server)
                    .ok()?
                    .connect(tokio_postgres::NoTls)
                    .await
                    .ok()?;
                tokio::spawn(connection);
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .ok()
            })
        });
        let _ = dropped.join();
    }
}
