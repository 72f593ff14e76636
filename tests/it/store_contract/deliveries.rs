//! Deliveries: due oldest first, skipping what is in flight; settled,
//! retried, dead, and replayed by sink, route or event.

use std::sync::Arc;

use stripe_router::clock::now_ms;
use stripe_router::store::{Filter, Settle, SinkQueue, Store};

use super::{delivery_state, event, far, record, routed};

/// `n` events routed to one record each, for the sink `http`.
async fn routed_to_http(store: &dyn Store, n: usize) {
    for i in 0..n {
        let id = format!("evt_{i}");
        store.journal(event(&id)).await.unwrap();
        store
            .save_routing(&id, routed(vec![record(&id, "orders", &["http"])]))
            .await
            .unwrap();
    }
}

pub async fn due_deliveries_skip_busy_rows_and_keep_to_the_limit(store: Arc<dyn Store>) {
    routed_to_http(&*store, 5).await;
    let ids = |due: &[stripe_router::store::PendingDelivery]| -> Vec<String> {
        let mut ids: Vec<_> = due.iter().map(|d| d.record.id.clone()).collect();
        ids.sort();
        ids
    };
    assert_eq!(
        store
            .due_deliveries("http", far(), 3, vec![])
            .await
            .unwrap()
            .len(),
        3
    );
    let busy = vec!["evt_0:orders".to_owned(), "evt_3:orders".to_owned()];
    let due = store
        .due_deliveries("http", far(), 10, busy.clone())
        .await
        .unwrap();
    assert_eq!(
        ids(&due),
        ["evt_1:orders", "evt_2:orders", "evt_4:orders"],
        "rows in flight are skipped"
    );
    // Busy rows do not eat into the limit.
    let due = store.due_deliveries("http", far(), 3, busy).await.unwrap();
    assert_eq!(due.len(), 3);
    assert!(
        store
            .due_deliveries("file", far(), 10, vec![])
            .await
            .unwrap()
            .is_empty(),
        "another sink has nothing"
    );
}

pub async fn due_deliveries_come_oldest_due_first(store: Arc<dyn Store>) {
    routed_to_http(&*store, 3).await;
    let now = now_ms();
    for (i, next) in [(0, now + 3_000), (1, now + 1_000), (2, now + 2_000)] {
        store
            .settle(
                &format!("evt_{i}:orders"),
                "http",
                Settle::Retry {
                    next_attempt_ms: next,
                    error: "503".into(),
                },
            )
            .await
            .unwrap();
    }
    assert!(
        store
            .due_deliveries("http", now + 999, 10, vec![])
            .await
            .unwrap()
            .is_empty()
    );
    let due = store
        .due_deliveries("http", now + 2_000, 10, vec![])
        .await
        .unwrap();
    let ids: Vec<_> = due.iter().map(|d| d.record.id.as_str()).collect();
    assert_eq!(ids, ["evt_1:orders", "evt_2:orders"]);
    assert!(due.iter().all(|d| d.attempts == 1));
}

pub async fn deliveries_settle_retry_die_and_replay(store: Arc<dyn Store>) {
    store.journal(event("evt_1")).await.unwrap();
    store
        .save_routing(
            "evt_1",
            routed(vec![
                record("evt_1", "orders", &["file", "http"]),
                record("evt_1", "audit", &["http"]),
            ]),
        )
        .await
        .unwrap();
    store
        .settle("evt_1:orders", "file", Settle::Delivered)
        .await
        .unwrap();
    let later = now_ms() + 60_000;
    store
        .settle(
            "evt_1:orders",
            "http",
            Settle::Retry {
                next_attempt_ms: later,
                error: "503".into(),
            },
        )
        .await
        .unwrap();
    store
        .settle(
            "evt_1:audit",
            "http",
            Settle::Dead {
                error: "HTTP 400: bad".into(),
            },
        )
        .await
        .unwrap();
    assert!(
        store
            .due_deliveries("file", i64::MAX, 10, vec![])
            .await
            .unwrap()
            .is_empty(),
        "a delivered row is never due again"
    );
    assert!(
        store
            .due_deliveries("http", now_ms(), 10, vec![])
            .await
            .unwrap()
            .is_empty()
    );
    let retried = store
        .due_deliveries("http", later, 10, vec![])
        .await
        .unwrap();
    assert_eq!((retried.len(), retried[0].attempts), (1, 1));
    assert_eq!(retried[0].record.id, "evt_1:orders");

    let depths = store.depths().await.unwrap();
    assert_eq!(
        depths.sinks["http"],
        SinkQueue {
            pending: 1,
            dead: 1
        }
    );
    assert!(!depths.sinks.contains_key("file"), "{depths:?}");

    let dead = store.dead_letters(Filter::default()).await.unwrap();
    assert_eq!(dead.len(), 1);
    let letter = &dead[0];
    assert_eq!(letter.record_id.as_deref(), Some("evt_1:audit"));
    assert_eq!(
        (
            letter.event_id.as_str(),
            letter.sink.as_deref(),
            letter.route.as_deref()
        ),
        ("evt_1", Some("http"), Some("audit"))
    );
    assert_eq!(letter.last_error.as_deref(), Some("HTTP 400: bad"));
    assert_eq!(letter.attempts, 1);
    let by_other_sink = Filter {
        sink: Some("file".into()),
        ..Filter::default()
    };
    assert!(
        store
            .dead_letters(by_other_sink.clone())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.replay(by_other_sink).await.unwrap(), 0);
    assert_eq!(
        store
            .replay(Filter {
                route: Some("audit".into()),
                ..Filter::default()
            })
            .await
            .unwrap(),
        1
    );
    let due = store
        .due_deliveries("http", now_ms(), 10, vec![])
        .await
        .unwrap();
    assert_eq!(due.len(), 1, "a replayed row is due now");
    assert_eq!(
        (due[0].record.id.as_str(), due[0].attempts),
        ("evt_1:audit", 0)
    );
    assert_eq!(store.depths().await.unwrap().sinks["http"].dead, 0);
    assert_eq!(
        delivery_state(&*store, "evt_1", "evt_1:audit", "http").await,
        "pending"
    );
}

pub async fn replay_by_event_takes_every_kind_of_dead_letter(store: Arc<dyn Store>) {
    for id in ["evt_1", "evt_2"] {
        store.journal(event(id)).await.unwrap();
        store
            .save_routing(
                id,
                stripe_router::store::Routing {
                    records: vec![record(id, "orders", &["http"])],
                    failed: vec![super::failure(id, "audit", 0, true)],
                },
            )
            .await
            .unwrap();
        store
            .settle(
                &format!("{id}:orders"),
                "http",
                Settle::Dead {
                    error: "HTTP 410".into(),
                },
            )
            .await
            .unwrap();
    }
    assert_eq!(
        store.dead_letters(Filter::default()).await.unwrap().len(),
        4
    );
    let replayed = store
        .replay(Filter {
            event: Some("evt_2".into()),
            ..Filter::default()
        })
        .await
        .unwrap();
    assert_eq!(replayed, 2, "its delivery and its route");
    let left = store.dead_letters(Filter::default()).await.unwrap();
    assert!(left.iter().all(|l| l.event_id == "evt_1"), "{left:?}");
    assert_eq!(left.len(), 2);
    let depths = store.depths().await.unwrap();
    assert_eq!((depths.routes_dead, depths.sinks["http"].dead), (1, 1));
    let due = store.due_events(now_ms(), 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].id, "evt_2");
    assert_eq!(due[0].settled, ["evt_2:orders"]);
}
