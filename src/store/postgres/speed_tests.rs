//! A throughput harness (ignored by default): 32 tasks × N events on the
//! PostgreSQL store next to SQLite, in the benchmark's two shapes:
//! (a) unmatched events (journal only), (b) paid orders (journal,
//! save_routing with one record and one sink, settle). Run with
//! `STRIPE_ROUTER_TEST_DATABASE_URL=… SPEED_EVENTS=150 cargo nextest run
//! -E 'test(/store_speed/)' --run-ignored only --no-capture`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::testing::TestDb;
use super::{PostgresOptions, PostgresStore};
use crate::clock::now_ms;
use crate::sinks::Encoded;
use crate::store::{Journaled, NewEvent, NewRecord, Routing, Settle, SqliteStore, Store};

const TASKS: usize = 32;

fn events_per_task() -> usize {
    std::env::var("SPEED_EVENTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(150)
}

/// Events per second of `TASKS` tasks each handling `n` events.
async fn run(store: Arc<dyn Store>, tag: &str, n: usize, orders: bool) -> f64 {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let store = store.clone();
        let tag = tag.to_owned();
        tasks.push(tokio::spawn(async move {
            for i in 0..n {
                let id = format!("evt_{tag}_{t}_{i}");
                let journaled = store
                    .journal(NewEvent {
                        id: id.clone(),
                        kind: "checkout.session.completed".to_owned(),
                        received_at_ms: now_ms(),
                        body: Bytes::from(format!(
                            r#"{{"id":"{id}","pad":"{}"}}"#,
                            "x".repeat(900)
                        )),
                        routed: !orders,
                    })
                    .await
                    .unwrap();
                assert_eq!(journaled, Journaled::Inserted);
                if !orders {
                    continue;
                }
                let record_id = format!("rec_{id}");
                let stored = store
                    .save_routing(
                        &id,
                        Routing {
                            records: vec![NewRecord {
                                record: Encoded {
                                    id: record_id.clone(),
                                    body: Bytes::from(format!(r#"{{"order":"{id}"}}"#)),
                                },
                                route: "paid".to_owned(),
                                sinks: vec!["orders".to_owned()],
                            }],
                            failed: Vec::new(),
                        },
                    )
                    .await
                    .unwrap();
                assert_eq!(stored, vec![record_id.clone()]);
                store
                    .settle(&record_id, "orders", Settle::Delivered)
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    (TASKS * n) as f64 / started.elapsed().as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measure, not a test: run by hand"]
async fn store_speed_postgres_next_to_sqlite() {
    let Some(db) = TestDb::create("store_speed_postgres_next_to_sqlite").await else {
        return;
    };
    let n = events_per_task();
    let pg: Arc<dyn Store> = Arc::new(
        PostgresStore::connect(
            &db.target(),
            PostgresOptions {
                pool_size: 16,
                lease: Duration::from_secs(5),
                ..PostgresOptions::default()
            },
        )
        .await
        .unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let sqlite: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.path().join("journal.db"), true, 64 << 20).unwrap());
    for (scenario, orders) in [("a (journal only)", false), ("b (orders)", true)] {
        let tag = if orders { "b" } else { "a" };
        let p = run(pg.clone(), tag, n, orders).await;
        let s = run(sqlite.clone(), tag, n, orders).await;
        eprintln!(
            "scenario {scenario}: {TASKS} tasks × {n}: postgres {p:.0}/s, sqlite {s:.0}/s, {:.0}%",
            100.0 * p / s
        );
    }
}
