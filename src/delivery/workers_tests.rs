//! Tests of the sink workers: a removed sink's worker stops, a re-added one delivers what waited.

use bytes::Bytes;

use super::*;
use crate::metrics::Metrics;
use crate::routing::live::Reloaded;
use crate::routing::test_support::{self, contains, eventually};
use crate::sinks::Encoded;
use crate::store::{NewEvent, NewRecord, Routing, SqliteStore};

const BOTH: &str = "sinks:\n  a: { type: jsonl, path: a.jsonl }\n  b: { type: jsonl, path: b.jsonl }\nroutes:\n  - name: all\n    when: {}\n    emit: event\n    to: [a, b]\n";
const ONLY_A: &str = "sinks:\n  a: { type: jsonl, path: a.jsonl }\nroutes:\n  - name: all\n    when: {}\n    emit: event\n    to: [a]\n";

/// Sink workers of `config` over a fresh journal in `dir`.
struct Started {
    store: Arc<dyn Store>,
    live: Arc<Live>,
    workers: Arc<Workers>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

fn start(dir: &std::path::Path, config: &str) -> Started {
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.join("journal.db"), false, 64 << 20).unwrap());
    let live = test_support::live(dir, config, false);
    let (shutdown, tracker) = (CancellationToken::new(), TaskTracker::new());
    let workers = Workers::start(
        store.clone(),
        live.clone(),
        Metrics::new(),
        shutdown.clone(),
        &tracker,
    );
    Started {
        store,
        live,
        workers,
        shutdown,
        tracker,
    }
}

async fn reload(live: &Live, text: &str) {
    std::fs::write(live.path(), text).unwrap();
    assert!(matches!(live.reload().await, Ok(Reloaded::Applied(_))));
}

#[tokio::test]
async fn a_removed_sink_s_worker_stops_and_a_re_added_one_delivers_what_waited() {
    let dir = tempfile::tempdir().unwrap();
    let Started {
        store,
        live,
        workers,
        shutdown,
        tracker,
    } = start(dir.path(), BOTH);
    assert_eq!(workers.running(), ["a", "b"]);

    reload(&live, ONLY_A).await;
    eventually("b's worker stops", || workers.running() == ["a"]).await;

    // An event routed by the config that still had `b`.
    store
        .journal(NewEvent {
            id: "evt_1".to_owned(),
            kind: "invoice.paid".to_owned(),
            received_at_ms: crate::clock::now_ms(),
            body: Bytes::from_static(b"{}"),
            routed: false,
            leased: true,
        })
        .await
        .unwrap();
    let body = Bytes::from_static(br#"{"id":"evt_1:all"}"#);
    let record = NewRecord {
        record: Encoded {
            id: "evt_1:all".to_owned(),
            body: body.clone(),
        },
        route: "all".to_owned(),
        sinks: vec!["a".to_owned(), "b".to_owned()],
    };
    store
        .save_routing(
            "evt_1",
            Routing {
                records: vec![record],
                failed: Vec::new(),
            },
        )
        .await
        .unwrap();
    for sink in ["a", "b"] {
        workers.dispatch(PendingDelivery {
            record: Encoded {
                id: "evt_1:all".to_owned(),
                body: body.clone(),
            },
            sink: sink.to_owned(),
            route: "all".to_owned(),
            attempts: 0,
            created_at_ms: crate::clock::now_ms(),
            received_at_ms: crate::clock::now_ms(),
        });
    }
    let a = dir.path().join("a.jsonl");
    eventually("a delivers", || contains(&a, "evt_1:all")).await;
    assert_eq!(workers.running(), ["a"], "no worker for a removed sink");
    let waiting = store
        .due_deliveries("b", i64::MAX, 10, Vec::new())
        .await
        .unwrap();
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].attempts, 0, "nothing tried to deliver to b");

    reload(&live, BOTH).await;
    let b = dir.path().join("b.jsonl");
    eventually("b delivers what waited for it", || {
        contains(&b, "evt_1:all")
    })
    .await;
    assert_eq!(workers.running(), ["a", "b"]);
    shutdown.cancel();
    tracker.close();
    tracker.wait().await;
}

fn attempt_with(error: Option<(bool, &str)>) -> Attempt {
    Attempt {
        record_id: "evt_1:all".to_owned(),
        error: error.map(|(retryable, message)| crate::sinks::DeliveryError {
            retryable,
            message: message.to_owned(),
        }),
        sink_known: true,
    }
}

#[test]
fn a_permanent_refusal_does_not_call_the_sink_failing() {
    let mut failing = None;
    // A 4xx: the record is a dead letter, the sink answered.
    let refused = attempt_with(Some((false, "http 422")));
    assert_eq!(health(&mut failing, &refused), None);
    assert_eq!(failing, None);
    // An outage starts once, with the first retryable failure.
    let down = attempt_with(Some((true, "connection refused")));
    assert_eq!(health(&mut failing, &down), Some(Health::Failing));
    assert_eq!(health(&mut failing, &down), None);
    // A refusal during an outage neither ends nor lengthens it.
    assert_eq!(health(&mut failing, &refused), None);
    assert_eq!(
        health(&mut failing, &attempt_with(None)),
        Some(Health::Recovered { failures: 2 })
    );
    assert_eq!(health(&mut failing, &attempt_with(None)), None);
}

/// Workers on one sink, `stuck`, whose consumer accepts connections and
/// never answers (`concurrency: 1`), in `dir`; the listener must outlive the
/// test's use of them.
async fn stuck_sink(dir: &std::path::Path) -> (Started, tokio::net::TcpListener) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = format!(
        "sinks:\n  stuck: {{ type: http, url: \"http://{addr}/hook\", concurrency: 1 }}\nroutes:\n  - name: all\n    when: {{}}\n    emit: event\n    to: stuck\n"
    );
    (start(dir, &config), listener)
}

/// Hands `n` deliveries of `body` to `stuck`'s worker.
fn hand_over(workers: &Workers, n: usize, body: &Bytes) {
    for i in 0..n {
        workers.dispatch(PendingDelivery {
            record: Encoded {
                id: format!("evt_{i}:all"),
                body: body.clone(),
            },
            sink: "stuck".to_owned(),
            route: "all".to_owned(),
            attempts: 0,
            created_at_ms: 0,
            received_at_ms: 0,
        });
    }
}

#[tokio::test]
async fn a_stuck_sink_s_worker_holds_a_bounded_number_of_deliveries() {
    let dir = tempfile::tempdir().unwrap();
    let (stuck, listener) = stuck_sink(dir.path()).await;
    let workers = &stuck.workers;
    hand_over(workers, HELD + 500, &Bytes::from(vec![b'x'; 1024]));
    // One is being attempted; the rest wait, at most HELD of them, and the
    // ones past HELD were never taken: their rows wait in the store.
    eventually("the worker takes its first delivery", || {
        workers.held("stuck") < HELD
    })
    .await;
    let held = workers.held("stuck");
    assert!((HELD - 1..HELD).contains(&held), "{held}");
    stuck.shutdown.cancel();
    drop(listener);
}

#[tokio::test]
async fn a_stuck_sink_s_worker_holds_a_bounded_number_of_body_bytes() {
    const MIB: usize = 1024 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let (stuck, listener) = stuck_sink(dir.path()).await;
    let workers = &stuck.workers;
    let n = BACKLOG_BYTES / MIB + 24;
    hand_over(workers, n, &Bytes::from(vec![b'x'; MIB]));
    // Far fewer than BACKLOG deliveries, but only the first BACKLOG_BYTES
    // of them keep their bodies; the worker takes the first to attempt it.
    eventually("the worker takes its first delivery", || {
        workers.held("stuck") < n
    })
    .await;
    assert_eq!(workers.held("stuck"), n - 1);
    assert_eq!(workers.held_bytes("stuck"), BACKLOG_BYTES - MIB);
    stuck.shutdown.cancel();
    drop(listener);
}
