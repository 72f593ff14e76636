//! The admin API's reads on SQLite: one event in full with its bounded
//! attempt history, and the rows behind it (pages are the contract's).

use super::{event, failure, open, record, routed};
use crate::clock::now_ms;
use crate::store::{ATTEMPTS_KEPT, Routing, Settle, Store};

#[tokio::test]
async fn one_event_in_full_keeps_the_newest_attempts_only() {
    let (_dir, store) = open();
    store.journal(event("evt_1")).await.unwrap();
    store
        .save_routing(
            "evt_1",
            Routing {
                records: vec![record("evt_1", "orders", &["http"])],
                failed: vec![failure("evt_1", "audit", 0, true)],
            },
        )
        .await
        .unwrap();
    let tries = ATTEMPTS_KEPT + 5;
    for n in 0..tries {
        let error = format!("http sink POST http://x/: answered 503 (try {n})");
        store
            .settle(
                "evt_1:orders",
                "http",
                Settle::Retry {
                    next_attempt_ms: 0,
                    error,
                },
            )
            .await
            .unwrap();
    }
    store
        .settle("evt_1:orders", "http", Settle::Delivered)
        .await
        .unwrap();
    // Settling a row that is no longer pending is no attempt.
    store
        .settle("evt_1:orders", "http", Settle::Delivered)
        .await
        .unwrap();

    let detail = store.event("evt_1").await.unwrap().expect("found");
    assert_eq!(&detail.body[..], br#"{"id":"evt_1"}"#);
    assert_eq!(&detail.record_bodies[0][..], br#"{"id":"evt_1:orders"}"#);
    let delivery = &detail.event.records[0].deliveries[0];
    assert_eq!(
        (delivery.state, delivery.attempts),
        ("delivered", tries as u32 + 1)
    );
    let attempts = &detail.attempts[0][0];
    assert_eq!(attempts.len(), ATTEMPTS_KEPT);
    assert_eq!(attempts.last().unwrap().outcome, "delivered");
    assert_eq!(attempts[0].outcome, "retry");
    assert!(
        attempts[0].error.as_deref().unwrap().contains("(try 6)"),
        "the oldest kept is the sixth: {attempts:?}"
    );
    assert!(attempts.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
    assert_eq!(detail.event.failed_routes[0].state, "dead");
    assert!(store.event("evt_none").await.unwrap().is_none());

    // Pruned with its delivery.
    store.prune(now_ms() + 1_000, 100).await.unwrap();
    assert_eq!(
        super::count(&store, "SELECT COUNT(*) FROM delivery_attempts"),
        0
    );
}

#[tokio::test]
async fn a_delivered_attempt_is_kept_on_its_row_and_shown_in_the_history() {
    let (_dir, store) = open();
    store.journal(event("evt_1")).await.unwrap();
    store
        .save_routing(
            "evt_1",
            routed(vec![record("evt_1", "orders", &["file", "http"])]),
        )
        .await
        .unwrap();
    store
        .settle("evt_1:orders", "file", Settle::Delivered)
        .await
        .unwrap();
    let error = "http sink POST http://x/: answered 503".to_owned();
    store
        .settle(
            "evt_1:orders",
            "http",
            Settle::Retry {
                next_attempt_ms: 0,
                error: error.clone(),
            },
        )
        .await
        .unwrap();
    store
        .settle("evt_1:orders", "http", Settle::Delivered)
        .await
        .unwrap();
    // Only the failed attempt is a row of its own.
    assert_eq!(
        super::count(&store, "SELECT COUNT(*) FROM delivery_attempts"),
        1
    );
    let detail = store.event("evt_1").await.unwrap().expect("found");
    let deliveries = &detail.event.records[0].deliveries;
    let (file, http) = (&detail.attempts[0][0], &detail.attempts[0][1]);
    assert_eq!(deliveries[0].sink, "file");
    let outcomes = |attempts: &[crate::store::AttemptView]| -> Vec<(&str, Option<String>)> {
        attempts
            .iter()
            .map(|a| (a.outcome, a.error.clone()))
            .collect()
    };
    assert_eq!(outcomes(file), [("delivered", None)]);
    assert_eq!(file[0].at_ms, deliveries[0].updated_at_ms);
    assert_eq!(
        outcomes(http),
        [("retry", Some(error)), ("delivered", None)]
    );
    assert!(http[0].at_ms <= http[1].at_ms);
}
