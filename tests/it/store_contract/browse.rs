//! The admin API's reads: pages of events and dead letters, newest first,
//! with cursors; one event in full with its bounded attempt history.

use std::sync::Arc;

use stripe_router::clock::now_ms;
use stripe_router::store::{
    ATTEMPTS_KEPT, DeadLetterQuery, EventQuery, Filter, NewEvent, Routing, Settle, Store,
};

use super::{event, failure, record, routed};

fn query(limit: usize, after: Option<i64>, kind: Option<&str>) -> EventQuery {
    EventQuery {
        limit,
        after,
        kind: kind.map(str::to_owned),
    }
}

fn page_ids(page: &stripe_router::store::EventPage) -> Vec<&str> {
    page.events.iter().map(|e| e.id.as_str()).collect()
}

pub async fn events_page_newest_first_with_their_records_and_deliveries(store: Arc<dyn Store>) {
    let start = now_ms() - 60_000;
    for n in 1..=5 {
        let fresh = NewEvent {
            received_at_ms: start + n * 1_000,
            ..event(&format!("evt_{n}"))
        };
        store.journal(fresh).await.unwrap();
    }
    store
        .journal(NewEvent {
            kind: "invoice.paid".into(),
            received_at_ms: start + 6_000,
            ..event("evt_other")
        })
        .await
        .unwrap();
    store
        .save_routing(
            "evt_2",
            routed(vec![record("evt_2", "orders", &["file", "http"])]),
        )
        .await
        .unwrap();
    store
        .settle("evt_2:orders", "file", Settle::Delivered)
        .await
        .unwrap();

    let first = store.events(query(2, None, None)).await.unwrap();
    assert_eq!(page_ids(&first), ["evt_other", "evt_5"]);
    let second = store.events(query(2, first.next, None)).await.unwrap();
    assert_eq!(page_ids(&second), ["evt_4", "evt_3"]);
    let last = store.events(query(2, second.next, None)).await.unwrap();
    assert_eq!(page_ids(&last), ["evt_2", "evt_1"]);
    assert_eq!(last.next, None, "the last page says so");

    let routed = &last.events[0];
    assert_eq!(routed.state, "routed");
    assert_eq!(routed.kind, "checkout.session.completed");
    assert_eq!(routed.records.len(), 1);
    assert_eq!(
        (
            routed.records[0].id.as_str(),
            routed.records[0].route.as_str()
        ),
        ("evt_2:orders", "orders")
    );
    let mut states: Vec<_> = routed.records[0]
        .deliveries
        .iter()
        .map(|d| (d.sink.as_str(), d.state, d.attempts))
        .collect();
    states.sort();
    assert_eq!(states, [("file", "delivered", 1), ("http", "pending", 0)]);
    assert_eq!(last.events[1].state, "pending");
    assert!(last.events[1].records.is_empty());

    let checkout = store
        .events(query(10, None, Some("checkout.*")))
        .await
        .unwrap();
    assert_eq!(checkout.events.len(), 5);
    let exact = store
        .events(query(10, None, Some("invoice.paid")))
        .await
        .unwrap();
    assert_eq!(page_ids(&exact), ["evt_other"]);
    // A database's own wildcards are literal, as in routes.
    for literal in ["invoice.pai?", "invoice.pai_", "invoice%", "[i]nvoice.paid"] {
        let found = store.events(query(10, None, Some(literal))).await.unwrap();
        assert!(found.events.is_empty(), "{literal}: {:?}", page_ids(&found));
    }
}

pub async fn one_event_in_full_keeps_the_newest_attempts_only(store: Arc<dyn Store>) {
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
    assert_eq!(attempts.last().unwrap().error, None);
    assert_eq!(attempts[0].outcome, "retry");
    assert!(
        attempts[0].error.as_deref().unwrap().contains("(try 6)"),
        "the oldest kept is the sixth: {attempts:?}"
    );
    assert!(attempts.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
    assert_eq!(detail.event.failed_routes[0].state, "dead");
    assert!(store.event("evt_none").await.unwrap().is_none());

    // Pruned with its delivery; the record stays for the dead route.
    store.prune(now_ms() + 1_000, 100).await.unwrap();
    let detail = store.event("evt_1").await.unwrap().expect("kept");
    assert!(detail.event.records[0].deliveries.is_empty());
    assert!(detail.attempts[0].is_empty());
}

pub async fn dead_letters_page_newest_first_across_kinds(store: Arc<dyn Store>) {
    for n in 1..=3 {
        let id = format!("evt_{n}");
        store.journal(event(&id)).await.unwrap();
        store
            .save_routing(
                &id,
                Routing {
                    records: vec![record(&id, "orders", &["http"])],
                    failed: vec![failure(&id, "audit", 0, true)],
                },
            )
            .await
            .unwrap();
        let error = "answered 400".to_owned();
        store
            .settle(&format!("{id}:orders"), "http", Settle::Dead { error })
            .await
            .unwrap();
    }
    let all = store.dead_letters(Filter::default()).await.unwrap();
    assert_eq!(all.len(), 6);
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .dead_letter_page(DeadLetterQuery {
                filter: Filter::default(),
                limit: 4,
                after,
            })
            .await
            .unwrap();
        assert!(page.letters.len() <= 4);
        seen.extend(page.letters);
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen.len(), 6, "every letter once: {seen:?}");
    assert!(
        seen.windows(2)
            .all(|w| w[0].updated_at_ms >= w[1].updated_at_ms)
    );
    let mut keys: Vec<_> = seen
        .iter()
        .map(|l| (l.record_id.clone(), l.sink.clone()))
        .collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 6);

    let http = store
        .dead_letter_page(DeadLetterQuery {
            filter: Filter {
                sink: Some("http".into()),
                ..Filter::default()
            },
            limit: 10,
            after: None,
        })
        .await
        .unwrap();
    assert_eq!(http.letters.len(), 3);
    assert!(http.next.is_none());
    let audit = store
        .dead_letter_page(DeadLetterQuery {
            filter: Filter {
                route: Some("audit".into()),
                ..Filter::default()
            },
            limit: 10,
            after: None,
        })
        .await
        .unwrap();
    assert_eq!(audit.letters.len(), 3);
    assert!(audit.letters.iter().all(|l| l.sink.is_none()));
}
