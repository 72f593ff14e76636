//! Pruning finished history within its limit, what it keeps; a fresh
//! store's health and figures.

use std::sync::Arc;

use stripe_router::clock::now_ms;
use stripe_router::store::{Filter, Journaled, Routing, Settle, Store};

use super::{event, failure, record, routed};

pub async fn prune_removes_only_finished_history(store: Arc<dyn Store>) {
    for id in ["evt_done", "evt_dead", "evt_unmatched", "evt_pending"] {
        store.journal(event(id)).await.unwrap();
    }
    for id in ["evt_done", "evt_dead"] {
        store
            .save_routing(id, routed(vec![record(id, "r", &["a"])]))
            .await
            .unwrap();
    }
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
    for (id, journaled) in [
        ("evt_dead", Journaled::Duplicate),
        ("evt_pending", Journaled::Duplicate),
        ("evt_done", Journaled::Inserted),
        ("evt_unmatched", Journaled::Inserted),
    ] {
        assert_eq!(
            store.journal(event(id)).await.unwrap(),
            journaled,
            "{id}: forgotten only once finished and past retention"
        );
    }
}

pub async fn prune_keeps_a_dead_route_and_its_records_until_replayed(store: Arc<dyn Store>) {
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
    assert_eq!(super::detail(&*store, "evt_1").await.event.records.len(), 1);

    store.replay(Filter::default()).await.unwrap();
    let due = store.due_events(now_ms(), 10).await.unwrap();
    assert_eq!(due[0].settled, ["evt_1:audit"]);
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
    assert!(store.event("evt_1").await.unwrap().is_none());
    assert!(
        store
            .dead_letters(Filter::default())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.journal(event("evt_1")).await.unwrap(),
        Journaled::Inserted
    );
}

pub async fn prune_removes_at_most_limit_rows_of_each_table_a_call(store: Arc<dyn Store>) {
    let ids: Vec<String> = (0..5).map(|n| format!("evt_{n}")).collect();
    for id in &ids {
        store.journal(event(id)).await.unwrap();
        store
            .save_routing(id, routed(vec![record(id, "r", &["a"])]))
            .await
            .unwrap();
        store
            .settle(&format!("{id}:r"), "a", Settle::Delivered)
            .await
            .unwrap();
    }
    let after = now_ms() + 60_000;
    let (mut total, mut calls) = (0, 0);
    loop {
        let removed = store.prune(after, 2).await.unwrap();
        // Deliveries, records, events: at most 2 of each.
        assert!(removed <= 6, "{removed} rows in one call");
        if removed == 0 {
            break;
        }
        if calls == 0 {
            let left = store
                .events(stripe_router::store::EventQuery {
                    limit: 10,
                    ..Default::default()
                })
                .await
                .unwrap();
            assert!(!left.events.is_empty(), "one call does not take everything");
        }
        total += removed;
        calls += 1;
        assert!(calls < 20, "pruning never ends");
    }
    assert!(calls >= 3, "five of each at two a call: {calls} calls");
    let left = store
        .events(stripe_router::store::EventQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(left.events.is_empty(), "{:?}", left.events);
    assert!(total >= 15, "{total}");
}

pub async fn a_fresh_store_is_healthy_and_empty(store: Arc<dyn Store>) {
    store.health().await.unwrap();
    let depths = store.depths().await.unwrap();
    assert_eq!(
        (
            depths.events_pending,
            depths.events_dead,
            depths.routes_dead
        ),
        (0, 0, 0)
    );
    assert!(depths.sinks.is_empty());
    assert!(store.due_events(i64::MAX, 10).await.unwrap().is_empty());
    assert!(
        store
            .due_deliveries("a", i64::MAX, 10, vec![])
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .dead_letters(Filter::default())
            .await
            .unwrap()
            .is_empty()
    );
    let page = store
        .events(stripe_router::store::EventQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(page.events.is_empty() && page.next.is_none());
    assert_eq!(store.prune(now_ms() + 60_000, 100).await.unwrap(), 0);
    assert!(store.event("evt_none").await.unwrap().is_none());
}
