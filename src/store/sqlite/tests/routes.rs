//! Route-level outcomes on SQLite, checked in its tables: one route's
//! record stored while another is retried, a stale pass that adds nothing,
//! and a journal without the table upgrading in place.

use super::{count, event, failure, open, record, routed};
use crate::clock::now_ms;
use crate::store::{Filter, Routing, SqliteStore, Store};

#[tokio::test]
async fn the_audit_record_is_stored_while_the_order_route_is_retried() {
    let (_dir, store) = open();
    store.journal(event("evt_1")).await.unwrap();
    let later = now_ms() + 60_000;
    store
        .save_routing(
            "evt_1",
            Routing {
                records: vec![record("evt_1", "audit", &["file"])],
                failed: vec![failure("evt_1", "orders", later, false)],
            },
        )
        .await
        .unwrap();

    let due = store
        .due_deliveries("file", i64::MAX, 10, vec![])
        .await
        .unwrap();
    assert_eq!(due.len(), 1, "the audit record is queued at once");
    assert_eq!(due[0].record.id, "evt_1:audit");
    assert!(store.due_events(later - 1, 10).await.unwrap().is_empty());
    let again = store.due_events(later, 10).await.unwrap();
    assert_eq!(again.len(), 1, "due again when the order route is");
    assert_eq!(again[0].attempts, 1);
    assert_eq!(again[0].settled, ["evt_1:audit"]);
    assert_eq!(store.depths().await.unwrap().events_pending, 1);
    assert!(
        store
            .dead_letters(Filter::default())
            .await
            .unwrap()
            .is_empty(),
        "a route being retried is no dead letter"
    );

    // Two routes retried: the event is due at the earlier of them.
    store
        .save_routing(
            "evt_1",
            Routing {
                records: Vec::new(),
                failed: vec![
                    failure("evt_1", "orders", later + 5_000, false),
                    failure("evt_1", "refunds", later + 1_000, false),
                ],
            },
        )
        .await
        .unwrap();
    assert!(store.due_events(later + 999, 10).await.unwrap().is_empty());
    let again = store.due_events(later + 1_000, 10).await.unwrap();
    assert_eq!(again[0].attempts, 2);
    assert_eq!(
        count(
            &store,
            "SELECT attempts FROM route_failures WHERE route = 'orders'"
        ),
        2
    );

    // The order record is built at last; `refunds` is no longer
    // routed (a reload removed it): nothing is left to retry.
    store
        .save_routing(
            "evt_1",
            routed(vec![record("evt_1", "orders", &["file", "http"])]),
        )
        .await
        .unwrap();
    assert!(store.due_events(i64::MAX, 10).await.unwrap().is_empty());
    assert_eq!(count(&store, "SELECT COUNT(*) FROM route_failures"), 0);
    assert_eq!(
        store
            .due_deliveries("http", i64::MAX, 10, vec![])
            .await
            .unwrap()[0]
            .record
            .id,
        "evt_1:orders"
    );
}

#[tokio::test]
async fn a_journal_without_route_failures_upgrades_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.db");
    {
        let store = SqliteStore::open(&path, true, 64 << 20).unwrap();
        store.journal(event("evt_old")).await.unwrap();
        let reader = store.reader.lock().unwrap();
        // As a journal written before schema versions: version 0.
        reader
            .execute_batch(
                "DROP TRIGGER route_failures_follow; DROP TABLE route_failures;
                 PRAGMA user_version = 0;",
            )
            .unwrap();
    }
    let store = SqliteStore::open(&path, true, 64 << 20).unwrap();
    store
        .save_routing(
            "evt_old",
            Routing {
                records: Vec::new(),
                failed: vec![failure("evt_old", "orders", 0, true)],
            },
        )
        .await
        .unwrap();
    assert_eq!(store.depths().await.unwrap().routes_dead, 1);
}

/// A scan can read an event while a pass of it runs, and route it again
/// once that pass has stored its records: the second pass must send
/// nothing twice and undo nothing.
#[tokio::test]
async fn a_pass_that_read_the_event_before_an_earlier_pass_stored_adds_nothing() {
    let (_dir, store) = open();
    store.journal(event("evt_1")).await.unwrap();
    let first = store
        .save_routing(
            "evt_1",
            Routing {
                records: vec![record("evt_1", "orders", &["file"])],
                failed: vec![failure("evt_1", "refunds", 0, true)],
            },
        )
        .await
        .unwrap();
    assert_eq!(first, ["evt_1:orders"], "a fresh record is answered");
    let due = store
        .due_deliveries("file", i64::MAX, 10, vec![])
        .await
        .unwrap();
    store
        .settle(&due[0].record.id, "file", crate::store::Settle::Delivered)
        .await
        .unwrap();

    // The stale pass builds `orders` again, and fails both routes for a
    // while (the Stripe API is down now).
    let stale = store
        .save_routing(
            "evt_1",
            Routing {
                records: vec![record("evt_1", "orders", &["file"])],
                failed: vec![
                    failure("evt_1", "orders", now_ms() + 60_000, false),
                    failure("evt_1", "refunds", now_ms() + 60_000, false),
                ],
            },
        )
        .await
        .unwrap();
    assert!(stale.is_empty(), "nothing new to deliver: {stale:?}");
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM route_failures WHERE route = 'orders'"
        ),
        0,
        "a route whose record is stored has no failure"
    );
    let dead = store.dead_letters(Filter::default()).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].route.as_deref(), Some("refunds"), "still dead");
    assert_eq!(
        count(
            &store,
            "SELECT state FROM deliveries WHERE record_id = 'evt_1:orders'"
        ),
        1,
        "still delivered"
    );

    // A late attempt of the delivered row settles nothing.
    store
        .settle(
            "evt_1:orders",
            "file",
            crate::store::Settle::Dead {
                error: "an overlapping attempt".to_owned(),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        count(
            &store,
            "SELECT state FROM deliveries WHERE record_id = 'evt_1:orders'"
        ),
        1,
        "a delivered row stays delivered"
    );
}
