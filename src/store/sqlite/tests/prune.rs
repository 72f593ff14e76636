//! Pruning finished history, and what it keeps.

use super::{count, event, failure, open, record, routed};
use crate::clock::now_ms;
use crate::store::{Filter, Journaled, Routing, Settle, Store};

#[tokio::test]
async fn prune_removes_only_finished_history() {
    let (_dir, store) = open();
    for id in ["evt_done", "evt_dead", "evt_unmatched"] {
        store.journal(event(id)).await.unwrap();
    }
    store
        .save_routing("evt_done", routed(vec![record("evt_done", "r", &["a"])]))
        .await
        .unwrap();
    store
        .save_routing("evt_dead", routed(vec![record("evt_dead", "r", &["a"])]))
        .await
        .unwrap();
    store
        .save_routing("evt_unmatched", routed(vec![]))
        .await
        .unwrap();
    store
        .settle("evt_done:r", "a", Settle::Delivered)
        .await
        .unwrap();
    store
        .settle(
            "evt_dead:r",
            "a",
            Settle::Dead {
                error: "400".into(),
            },
        )
        .await
        .unwrap();

    assert_eq!(
        store.prune(now_ms() - 60_000, 100).await.unwrap(),
        0,
        "nothing is old yet"
    );
    let removed = store.prune(now_ms() + 60_000, 100).await.unwrap();
    assert_eq!(removed, 4, "the delivery, its record, and two events");
    assert_eq!(
        store.dead_letters(Filter::default()).await.unwrap().len(),
        1,
        "dead letters stay"
    );
    assert_eq!(
        store.journal(event("evt_dead")).await.unwrap(),
        Journaled::Duplicate
    );
    assert_eq!(
        store.journal(event("evt_done")).await.unwrap(),
        Journaled::Inserted,
        "forgotten after retention"
    );
}

#[tokio::test]
async fn prune_keeps_a_dead_route_and_its_records_and_then_removes_them() {
    let (_dir, store) = open();
    store.journal(event("evt_1")).await.unwrap();
    store
        .save_routing(
            "evt_1",
            Routing {
                records: vec![record("evt_1", "audit", &["file"])],
                failed: vec![failure("evt_1", "orders", 0, true)],
            },
        )
        .await
        .unwrap();
    store
        .settle("evt_1:audit", "file", Settle::Delivered)
        .await
        .unwrap();
    let after = now_ms() + 60_000;
    assert_eq!(
        store.prune(after, 100).await.unwrap(),
        1,
        "only the delivered delivery: a replay must not build the audit record again"
    );
    assert_eq!(
        store.dead_letters(Filter::default()).await.unwrap().len(),
        1
    );
    assert_eq!(count(&store, "SELECT COUNT(*) FROM records"), 1);

    store.replay(Filter::default()).await.unwrap();
    store
        .save_routing("evt_1", routed(vec![record("evt_1", "orders", &["file"])]))
        .await
        .unwrap();
    store
        .settle("evt_1:orders", "file", Settle::Delivered)
        .await
        .unwrap();
    assert_eq!(
        store.prune(after, 100).await.unwrap(),
        4,
        "a delivery, two records, the event"
    );
    for table in ["events", "records", "deliveries", "route_failures"] {
        assert_eq!(
            count(&store, &format!("SELECT COUNT(*) FROM {table}")),
            0,
            "{table}"
        );
    }
}

#[tokio::test]
async fn route_failures_go_with_their_event() {
    let (_dir, store) = open();
    store.journal(event("evt_1")).await.unwrap();
    store
        .save_routing(
            "evt_1",
            Routing {
                records: Vec::new(),
                failed: vec![failure("evt_1", "orders", 0, true)],
            },
        )
        .await
        .unwrap();
    let reader = store.reader.lock().unwrap();
    reader.execute("DELETE FROM events", []).unwrap();
    let left: i64 = reader
        .query_row("SELECT COUNT(*) FROM route_failures", [], |row| row.get(0))
        .unwrap();
    assert_eq!(left, 0);
}
