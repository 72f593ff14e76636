//! Journaling events: once per id, leased to the fast path, rerouted, and
//! event-level routing failures.

use std::sync::Arc;

use super::{event, open, record, routed};
use crate::clock::now_ms;
use crate::store::{Filter, Journaled, LEASE_MS, NewEvent, Store};

#[tokio::test]
async fn an_event_id_is_journaled_once_even_under_concurrency() {
    let (_dir, store) = open();
    let store = Arc::new(store);
    assert_eq!(
        store.journal(event("evt_1")).await.unwrap(),
        Journaled::Inserted
    );
    assert_eq!(
        store.journal(event("evt_1")).await.unwrap(),
        Journaled::Duplicate
    );

    // Many writers at once: batched into few transactions, each answered.
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..300 {
        let store = store.clone();
        tasks.spawn(async move {
            store
                .journal(event(&format!("evt_many_{}", n % 100)))
                .await
                .unwrap()
        });
    }
    let mut inserted = 0;
    while let Some(outcome) = tasks.join_next().await {
        if outcome.unwrap() == Journaled::Inserted {
            inserted += 1;
        }
    }
    assert_eq!(inserted, 100);
    let due = store.due_events(i64::MAX, 1000).await.unwrap();
    assert_eq!(due.len(), 101);
}

#[tokio::test]
async fn an_event_no_route_wants_is_journaled_routed_and_can_be_rerouted() {
    let (_dir, store) = open();
    let unwanted = NewEvent {
        routed: true,
        ..event("evt_unwanted")
    };
    assert_eq!(store.journal(unwanted).await.unwrap(), Journaled::Inserted);
    assert!(store.due_events(i64::MAX, 10).await.unwrap().is_empty());
    assert_eq!(store.depths().await.unwrap().events_pending, 0);
    assert!(store.reroute("evt_unwanted").await.unwrap());
    let due = store.due_events(now_ms(), 10).await.unwrap();
    assert_eq!((due[0].id.as_str(), due[0].reroute), ("evt_unwanted", true));
    assert_eq!(&due[0].body[..], br#"{"id":"evt_unwanted"}"#);
}

#[tokio::test]
async fn fresh_rows_are_leased_to_the_fast_path() {
    let (_dir, store) = open();
    store.journal(event("evt_1")).await.unwrap();
    assert!(store.due_events(now_ms(), 10).await.unwrap().is_empty());
    assert_eq!(
        store
            .due_events(now_ms() + LEASE_MS + 1000, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    store
        .save_routing("evt_1", routed(vec![record("evt_1", "r", &["a"])]))
        .await
        .unwrap();
    assert!(
        store
            .due_deliveries("a", now_ms(), 10, vec![])
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .due_deliveries("a", i64::MAX, 10, vec![])
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn failed_routing_is_retried_then_dead_then_replayable() {
    let (_dir, store) = open();
    store.journal(event("evt_1")).await.unwrap();
    let later = now_ms() + 5_000;
    store
        .event_failed("evt_1", "stripe api down".into(), later, false)
        .await
        .unwrap();
    assert!(store.due_events(now_ms(), 10).await.unwrap().is_empty());
    assert_eq!(store.due_events(later, 10).await.unwrap()[0].attempts, 1);
    store
        .event_failed("evt_1", "no such session".into(), 0, true)
        .await
        .unwrap();
    assert!(store.due_events(i64::MAX, 10).await.unwrap().is_empty());
    assert_eq!(store.depths().await.unwrap().events_dead, 1);
    let dead = store.dead_letters(Filter::default()).await.unwrap();
    assert_eq!(
        (dead[0].event_id.as_str(), dead[0].sink.as_deref()),
        ("evt_1", None)
    );
    assert!(
        store
            .dead_letters(Filter {
                sink: Some("x".into()),
                ..Filter::default()
            })
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .replay(Filter {
                event: Some("evt_1".into()),
                ..Filter::default()
            })
            .await
            .unwrap(),
        1
    );
    assert_eq!(store.due_events(now_ms(), 10).await.unwrap().len(), 1);
}
