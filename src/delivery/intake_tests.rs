//! Tests of the intake: what it queues for the router.

use crate::offline::standin::{SessionEvent, checkout_session_event};
use crate::routing::router::Counts;
use crate::routing::test_support;
use crate::store::SqliteStore;

use super::*;

const AUDIT: &str = "sinks:\n  out: { type: jsonl, path: out.jsonl }\nroutes:\n  - name: audit\n    when: {}\n    emit: event\n    to: [out]\n";

/// A paid order's event `evt_{n}`, its session metadata padded with
/// `pad` bytes.
fn event(n: u32, pad: usize) -> Bytes {
    let mut event = checkout_session_event(&SessionEvent {
        event_id: format!("evt_{n:03}"),
        ..SessionEvent::default()
    });
    event["data"]["object"]["metadata"]["note"] = serde_json::Value::String("x".repeat(pad));
    Bytes::from(serde_json::to_vec(&event).unwrap())
}

/// An intake whose router queue is `rx`, not being read, so that what the
/// intake queues stays there: no router runs and no scan takes a row.
fn intake(dir: &std::path::Path, queue_bytes: usize) -> (Engine, mpsc::Receiver<Routable>) {
    intake_of(dir, QUEUE, queue_bytes)
}

/// As [`intake`], with a queue of `events` events.
fn intake_of(
    dir: &std::path::Path,
    events: usize,
    queue_bytes: usize,
) -> (Engine, mpsc::Receiver<Routable>) {
    let (tx, rx) = mpsc::channel(events);
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.join("journal.db"), false, 64 << 20).unwrap());
    let engine = Engine {
        store,
        live: test_support::live(dir, AUDIT, false),
        router: tx,
        held: Held::default(),
        queue_bytes: ByteBudget::new(queue_bytes),
        scan_soon: ScanSoon::default(),
        counts: Arc::new(Counts::default()),
        metrics: Metrics::new(),
    };
    (engine, rx)
}

async fn accept(engine: &Engine, body: Bytes) {
    let arrival = engine.read(&body).expect("an event");
    let journaled = engine.accept(arrival, body).await.expect("journaled");
    assert_eq!(journaled, Journaled::Inserted);
}

/// The ids a scan would take now.
async fn due_now(engine: &Engine) -> Vec<String> {
    let due = engine.store.due_events(crate::clock::now_ms(), 10);
    due.await.unwrap().into_iter().map(|e| e.id).collect()
}

/// Whether the router has been asked to scan (and takes the ask).
async fn asked(engine: &Engine) -> bool {
    let ask = engine.scan_soon.asked();
    tokio::time::timeout(std::time::Duration::ZERO, ask)
        .await
        .is_ok()
}

#[tokio::test]
async fn past_its_events_the_queue_leaves_events_due_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, mut rx) = intake_of(dir.path(), 1, QUEUE_BYTES);
    accept(&engine, event(0, 0)).await;
    assert!(
        due_now(&engine).await.is_empty(),
        "the queued one is leased"
    );
    assert!(!asked(&engine).await, "no scan is asked for");
    accept(&engine, event(1, 0)).await;
    assert_eq!(due_now(&engine).await, ["evt_001"]);
    assert!(asked(&engine).await, "the router is asked to scan");
    assert_eq!(rx.try_recv().expect("queued").pending.id, "evt_000");
    assert!(rx.try_recv().is_err(), "the second is not queued");
    assert!(engine.held.hold("evt_001").is_some(), "nor held");
}

#[tokio::test]
async fn past_its_bytes_the_queue_leaves_events_to_a_scan() {
    let dir = tempfile::tempdir().unwrap();
    let share = queued_bytes(&event(0, 64 << 10));
    let (engine, mut rx) = intake(dir.path(), 3 * share);
    for n in 0..5 {
        accept(&engine, event(n, 64 << 10)).await;
    }
    // Three fit in the queue's bytes: they are queued, held, and counted
    // until the router is done with them.
    let mut queued = Vec::new();
    for n in 0..3 {
        let job = rx.try_recv().expect("queued");
        assert_eq!(job.pending.id, format!("evt_{n:03}"));
        assert!(job.queued.is_some(), "with its share");
        queued.push(job);
    }
    assert!(rx.try_recv().is_err(), "the other two are not queued");
    assert_eq!(engine.queue_bytes.used(), 3 * share);
    // The other two are journaled due at once, not held, and the router is
    // asked to scan: a scan takes them now, not once a lease ends.
    assert_eq!(due_now(&engine).await, ["evt_003", "evt_004"]);
    assert!(asked(&engine).await, "the router is asked to scan");
    for n in 3..5 {
        assert!(
            engine.held.hold(&format!("evt_{n:03}")).is_some(),
            "evt_{n:03} is left to a scan"
        );
    }
    assert_eq!(
        engine.store.due_events(i64::MAX, 10).await.unwrap().len(),
        5,
        "all five are in the journal, to be routed"
    );
    assert!(
        engine.held.hold("evt_000").is_none(),
        "a queued event stays held"
    );
    drop(queued);
    assert_eq!(engine.queue_bytes.used(), 0, "every share is given back");
}

#[tokio::test]
async fn a_pass_that_ends_gives_its_share_back_for_the_next_event() {
    let dir = tempfile::tempdir().unwrap();
    let share = queued_bytes(&event(0, 0));
    let (engine, mut rx) = intake(dir.path(), share);
    accept(&engine, event(0, 0)).await;
    accept(&engine, event(1, 0)).await;
    let first = rx.try_recv().expect("the first is queued");
    assert!(rx.try_recv().is_err(), "the second does not fit");
    // Its pass ends (the router drops what it was given).
    drop(first);
    assert_eq!(engine.queue_bytes.used(), 0);
    accept(&engine, event(2, 0)).await;
    assert_eq!(rx.try_recv().expect("queued").pending.id, "evt_002");
}
