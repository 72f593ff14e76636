//! Journaling events: once per id, even from many writers at once; due
//! oldest first; leased to the fast path; rerouted; event-level failures.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use stripe_router::clock::now_ms;
use stripe_router::store::{Filter, Journaled, LEASE_MS, NewEvent, PendingEvent, Store};

use super::{event, far, record, routed};

pub async fn an_event_id_is_journaled_once_even_under_concurrency(store: Arc<dyn Store>) {
    assert_eq!(
        store.journal(event("evt_1")).await.unwrap(),
        Journaled::Inserted
    );
    assert_eq!(
        store.journal(event("evt_1")).await.unwrap(),
        Journaled::Duplicate
    );

    // Many writers at once, three of each id: one of them is told "new".
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..300 {
        let store = store.clone();
        tasks.spawn(async move {
            let id = format!("evt_many_{}", n % 100);
            (id.clone(), store.journal(event(&id)).await.unwrap())
        });
    }
    let mut inserted = BTreeSet::new();
    while let Some(outcome) = tasks.join_next().await {
        let (id, journaled) = outcome.unwrap();
        if journaled == Journaled::Inserted {
            assert!(inserted.insert(id.clone()), "{id} inserted twice");
        }
    }
    assert_eq!(inserted.len(), 100);
    let due = store.due_events(far(), 1000).await.unwrap();
    let ids: BTreeSet<_> = due.iter().map(|e| e.id.clone()).collect();
    assert_eq!((due.len(), ids.len()), (101, 101), "each id due once");
}

pub async fn a_journaled_event_comes_back_as_it_was_sent(store: Arc<dyn Store>) {
    let sent = NewEvent {
        kind: "invoice.paid".to_owned(),
        // Bytes as Stripe sends them: not normalized, not even UTF-8 checked.
        body: bytes::Bytes::from_static(b"{\n  \"id\": \"evt_raw\",\n  \"n\": 1.50\n}\xff"),
        ..event("evt_raw")
    };
    store.journal(sent.clone()).await.unwrap();
    let due = store.due_events(far(), 10).await.unwrap();
    assert_eq!(due.len(), 1);
    let got = &due[0];
    assert_eq!(got.id, "evt_raw");
    assert_eq!(got.kind, "invoice.paid");
    assert_eq!(got.body, sent.body);
    assert_eq!(got.received_at_ms, sent.received_at_ms);
    assert_eq!((got.attempts, got.reroute), (0, false));
    assert!(got.settled.is_empty());
    assert_eq!(super::detail(&*store, "evt_raw").await.body, sent.body);
    assert_eq!(store.depths().await.unwrap().events_pending, 1);
}

pub async fn due_events_come_oldest_first_up_to_the_limit(store: Arc<dyn Store>) {
    let start = now_ms() - 60_000;
    // Journaled newest first: the order comes from the times, not the inserts.
    for n in (0..5).rev() {
        let fresh = NewEvent {
            received_at_ms: start + n * 1_000,
            ..event(&format!("evt_{n}"))
        };
        store.journal(fresh).await.unwrap();
    }
    let due = store.due_events(now_ms(), 3).await.unwrap();
    let ids: Vec<_> = due.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["evt_0", "evt_1", "evt_2"]);
    assert_eq!(store.due_events(now_ms(), 10).await.unwrap().len(), 5);
}

pub async fn an_event_no_route_wants_is_journaled_routed_and_can_be_rerouted(
    store: Arc<dyn Store>,
) {
    let unwanted = NewEvent {
        routed: true,
        ..event("evt_unwanted")
    };
    assert_eq!(store.journal(unwanted).await.unwrap(), Journaled::Inserted);
    assert!(store.due_events(i64::MAX, 10).await.unwrap().is_empty());
    assert_eq!(store.depths().await.unwrap().events_pending, 0);
    assert_eq!(
        store.journal(event("evt_unwanted")).await.unwrap(),
        Journaled::Duplicate,
        "a routed event's id is still known"
    );
    assert!(store.reroute("evt_unwanted").await.unwrap());
    let due = store.due_events(now_ms(), 10).await.unwrap();
    assert_eq!(due.len(), 1, "due at once: {due:?}");
    assert_eq!((due[0].id.as_str(), due[0].reroute), ("evt_unwanted", true));
    assert_eq!(&due[0].body[..], br#"{"id":"evt_unwanted"}"#);
}

/// An event the intake could not queue (the router's queue was full) is
/// journaled unleased: due at once for a scan, while a queued one beside
/// it stays leased.
pub async fn an_event_left_to_a_scan_is_due_at_once(store: Arc<dyn Store>) {
    store.journal(event("evt_queued")).await.unwrap();
    let left = NewEvent {
        leased: false,
        ..event("evt_left")
    };
    assert_eq!(store.journal(left).await.unwrap(), Journaled::Inserted);
    let due = store.due_events(now_ms(), 10).await.unwrap();
    let ids: Vec<_> = due.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["evt_left"], "only the unleased event is due now");
}

pub async fn fresh_rows_are_leased_to_the_fast_path(store: Arc<dyn Store>) {
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
        1,
        "a scan after a restart takes fresh rows at once"
    );
}

pub async fn a_failed_event_is_retried_then_dead_then_replayable(store: Arc<dyn Store>) {
    store.journal(event("evt_1")).await.unwrap();
    let later = now_ms() + 5_000;
    store
        .event_failed("evt_1", "stripe api down".into(), later, false)
        .await
        .unwrap();
    assert!(store.due_events(now_ms(), 10).await.unwrap().is_empty());
    assert!(store.due_events(later - 1, 10).await.unwrap().is_empty());
    let due = store.due_events(later, 10).await.unwrap();
    assert_eq!((due.len(), due[0].attempts), (1, 1));
    let shown = super::detail(&*store, "evt_1").await.event;
    assert_eq!(
        (shown.state, shown.last_error.as_deref()),
        ("pending", Some("stripe api down"))
    );

    store
        .event_failed("evt_1", "no such session".into(), 0, true)
        .await
        .unwrap();
    assert!(store.due_events(i64::MAX, 10).await.unwrap().is_empty());
    let depths = store.depths().await.unwrap();
    assert_eq!((depths.events_dead, depths.events_pending), (1, 0));
    let dead = store.dead_letters(Filter::default()).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (
            dead[0].event_id.as_str(),
            dead[0].sink.as_deref(),
            dead[0].route.as_deref(),
            dead[0].record_id.as_deref()
        ),
        ("evt_1", None, None, None)
    );
    assert_eq!(dead[0].last_error.as_deref(), Some("no such session"));
    assert_eq!(dead[0].attempts, 2);
    for filter in [
        Filter {
            sink: Some("x".into()),
            ..Filter::default()
        },
        Filter {
            route: Some("x".into()),
            ..Filter::default()
        },
    ] {
        assert!(
            store.dead_letters(filter.clone()).await.unwrap().is_empty(),
            "{filter:?}"
        );
    }
    let by_event = Filter {
        event: Some("evt_1".into()),
        ..Filter::default()
    };
    assert_eq!(store.replay(by_event).await.unwrap(), 1);
    assert_eq!(store.due_events(now_ms(), 10).await.unwrap().len(), 1);
    assert_eq!(store.depths().await.unwrap().events_dead, 0);
}

pub async fn a_page_of_due_events_ends_with_the_one_that_reaches_its_bytes(store: Arc<dyn Store>) {
    let start = now_ms() - 60_000;
    for n in 0..5 {
        let fresh = NewEvent {
            received_at_ms: start + n * 1_000,
            body: Bytes::from(vec![b' '; 1_000]),
            ..event(&format!("evt_{n}"))
        };
        store.journal(fresh).await.unwrap();
    }
    let ids = |due: Vec<PendingEvent>| due.into_iter().map(|e| e.id).collect::<Vec<_>>();
    // 2,500 bytes: the third event's body reaches them; it ends the page.
    let due = store.due_events_within(now_ms(), 10, 2_500).await.unwrap();
    assert_eq!(ids(due), ["evt_0", "evt_1", "evt_2"]);
    // An event bigger than the bound on its own is still taken.
    let due = store.due_events_within(far(), 10, 1).await.unwrap();
    assert_eq!(ids(due), ["evt_0"]);
    // The count bounds the page too.
    let due = store.due_events_within(far(), 2, usize::MAX).await.unwrap();
    assert_eq!(ids(due), ["evt_0", "evt_1"]);
}
