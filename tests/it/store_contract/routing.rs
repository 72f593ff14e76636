//! Routing passes: records built once with one delivery per sink; routes
//! retried or dead-lettered on their own; route-level dead letters listed,
//! replayed and rerouted; a stale pass that changes nothing.

use std::sync::Arc;

use bytes::Bytes;
use stripe_router::clock::now_ms;
use stripe_router::store::{Filter, Routing, Settle, Store};

use super::{delivery_state, detail, event, failure, far, record, routed};

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

pub async fn save_routing_stores_each_record_once_with_one_delivery_per_sink(
    store: Arc<dyn Store>,
) {
    store.journal(event("evt_1")).await.unwrap();
    let fresh = store
        .save_routing(
            "evt_1",
            routed(vec![
                record("evt_1", "orders", &["file", "http"]),
                record("evt_1", "audit", &["http"]),
            ]),
        )
        .await
        .unwrap();
    assert_eq!(sorted(fresh), ["evt_1:audit", "evt_1:orders"]);
    assert!(
        store.due_events(i64::MAX, 10).await.unwrap().is_empty(),
        "routed"
    );
    assert_eq!(detail(&*store, "evt_1").await.event.state, "routed");
    let file = store
        .due_deliveries("file", far(), 10, vec![])
        .await
        .unwrap();
    let http = store
        .due_deliveries("http", far(), 10, vec![])
        .await
        .unwrap();
    assert_eq!((file.len(), http.len()), (1, 2));
    assert_eq!(
        (
            file[0].record.id.as_str(),
            file[0].route.as_str(),
            file[0].sink.as_str()
        ),
        ("evt_1:orders", "orders", "file")
    );
    assert_eq!(file[0].attempts, 0);
    assert_eq!(
        file[0].received_at_ms,
        detail(&*store, "evt_1").await.event.received_at_ms
    );
    // The bytes travel with the delivery, or are read when it is attempted.
    let body = if file[0].record.body.is_empty() {
        store.record_body("evt_1:orders").await.unwrap()
    } else {
        file[0].record.body.clone()
    };
    assert_eq!(&body[..], br#"{"id":"evt_1:orders"}"#);
    assert_eq!(
        &store.record_body("evt_1:audit").await.unwrap()[..],
        br#"{"id":"evt_1:audit"}"#
    );
    assert!(store.record_body("evt_1:nothing").await.is_err());
    let depths = store.depths().await.unwrap();
    assert_eq!(
        (depths.sinks["file"].pending, depths.sinks["http"].pending),
        (1, 2)
    );
}

pub async fn a_record_is_built_once_and_reroute_adds_only_new_routes(store: Arc<dyn Store>) {
    store.journal(event("evt_1")).await.unwrap();
    store
        .save_routing("evt_1", routed(vec![record("evt_1", "orders", &["file"])]))
        .await
        .unwrap();
    // The same pass again (a second replica, a scan): nothing new.
    let mut changed = record("evt_1", "orders", &["file", "http"]);
    changed.record.body = Bytes::from_static(b"{}");
    let again = store
        .save_routing("evt_1", routed(vec![changed.clone()]))
        .await
        .unwrap();
    assert!(again.is_empty(), "{again:?}");
    assert_eq!(
        &store.record_body("evt_1:orders").await.unwrap()[..],
        br#"{"id":"evt_1:orders"}"#,
        "the first bytes stay"
    );
    assert!(
        store
            .due_deliveries("http", far(), 10, vec![])
            .await
            .unwrap()
            .is_empty(),
        "no delivery for a sink the stored record did not have"
    );
    store
        .settle("evt_1:orders", "file", Settle::Delivered)
        .await
        .unwrap();

    assert!(store.reroute("evt_1").await.unwrap());
    assert!(!store.reroute("evt_unknown").await.unwrap());
    let due = store.due_events(now_ms(), 10).await.unwrap();
    assert_eq!((due.len(), due[0].reroute), (1, true));
    assert_eq!(
        due[0].settled,
        ["evt_1:orders"],
        "built records are settled"
    );
    let fresh = store
        .save_routing(
            "evt_1",
            routed(vec![changed, record("evt_1", "new-route", &["file"])]),
        )
        .await
        .unwrap();
    assert_eq!(fresh, ["evt_1:new-route"]);
    let due = store
        .due_deliveries("file", far(), 10, vec![])
        .await
        .unwrap();
    assert_eq!(due.len(), 1, "the delivered record is not queued again");
    assert_eq!(due[0].record.id, "evt_1:new-route");
    assert_eq!(
        delivery_state(&*store, "evt_1", "evt_1:orders", "file").await,
        "delivered"
    );
    let shown = detail(&*store, "evt_1").await.event;
    assert_eq!(shown.records.len(), 2);
    assert_eq!(shown.state, "routed");
}

pub async fn one_route_is_stored_while_another_is_retried(store: Arc<dyn Store>) {
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
        .due_deliveries("file", far(), 10, vec![])
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
    let shown = detail(&*store, "evt_1").await.event;
    assert_eq!(shown.failed_routes.len(), 1);
    let orders = &shown.failed_routes[0];
    assert_eq!(
        (
            orders.route.as_str(),
            orders.record_id.as_str(),
            orders.state,
            orders.attempts
        ),
        ("orders", "evt_1:orders", "retry", 1)
    );
    assert_eq!(
        orders.last_error.as_deref(),
        Some("orders: session not found")
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
    let shown = detail(&*store, "evt_1").await.event;
    let attempts = |route: &str| {
        shown
            .failed_routes
            .iter()
            .find(|f| f.route == route)
            .map(|f| f.attempts)
    };
    assert_eq!(
        (attempts("orders"), attempts("refunds")),
        (Some(2), Some(1))
    );

    // The order record is built at last; `refunds` is no longer routed (a
    // reload removed it): nothing is left to retry.
    store
        .save_routing(
            "evt_1",
            routed(vec![record("evt_1", "orders", &["file", "http"])]),
        )
        .await
        .unwrap();
    assert!(store.due_events(i64::MAX, 10).await.unwrap().is_empty());
    let shown = detail(&*store, "evt_1").await.event;
    assert!(shown.failed_routes.is_empty(), "{:?}", shown.failed_routes);
    assert_eq!(shown.state, "routed");
    assert_eq!(store.depths().await.unwrap().events_pending, 0);
    assert_eq!(
        store
            .due_deliveries("http", far(), 10, vec![])
            .await
            .unwrap()[0]
            .record
            .id,
        "evt_1:orders"
    );
}

pub async fn a_dead_route_is_listed_by_route_and_event_and_replayed(store: Arc<dyn Store>) {
    store.journal(event("evt_1")).await.unwrap();
    let later = now_ms() + 60_000;
    store
        .save_routing(
            "evt_1",
            Routing {
                records: vec![record("evt_1", "audit", &["file"])],
                failed: vec![
                    failure("evt_1", "orders", 0, true),
                    failure("evt_1", "refunds", later, false),
                ],
            },
        )
        .await
        .unwrap();
    let due = store.due_events(later, 10).await.unwrap();
    assert_eq!(
        sorted(due[0].settled.clone()),
        ["evt_1:audit", "evt_1:orders"],
        "a dead route is not built again"
    );
    store
        .save_routing("evt_1", routed(vec![record("evt_1", "refunds", &["file"])]))
        .await
        .unwrap();
    assert!(
        store.due_events(i64::MAX, 10).await.unwrap().is_empty(),
        "only a dead route is left: routed"
    );

    let dead = store.dead_letters(Filter::default()).await.unwrap();
    assert_eq!(dead.len(), 1);
    let letter = &dead[0];
    assert_eq!(letter.record_id.as_deref(), Some("evt_1:orders"));
    assert_eq!(letter.event_id, "evt_1");
    assert_eq!(letter.sink, None);
    assert_eq!(letter.route.as_deref(), Some("orders"));
    assert_eq!(letter.attempts, 1);
    assert_eq!(
        letter.last_error.as_deref(),
        Some("orders: session not found")
    );
    assert_eq!(store.depths().await.unwrap().routes_dead, 1);
    let matching = |sink: Option<&str>, route: Option<&str>, event: Option<&str>| Filter {
        sink: sink.map(str::to_owned),
        route: route.map(str::to_owned),
        event: event.map(str::to_owned),
    };
    for (filter, found) in [
        (matching(Some("file"), None, None), 0),
        (matching(None, Some("orders"), None), 1),
        (matching(None, Some("audit"), None), 0),
        (matching(None, None, Some("evt_1")), 1),
        (matching(None, None, Some("evt_2")), 0),
    ] {
        assert_eq!(
            store.dead_letters(filter.clone()).await.unwrap().len(),
            found,
            "{filter:?}"
        );
    }
    assert_eq!(
        store
            .replay(matching(Some("file"), Some("orders"), None))
            .await
            .unwrap(),
        0,
        "a route-level dead letter has no sink"
    );
    assert_eq!(
        store
            .replay(matching(None, Some("orders"), None))
            .await
            .unwrap(),
        1
    );
    assert!(
        store
            .dead_letters(Filter::default())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.depths().await.unwrap().routes_dead, 0);
    let due = store.due_events(now_ms(), 10).await.unwrap();
    assert_eq!(due.len(), 1, "its event is due now");
    assert_eq!((due[0].attempts, due[0].reroute), (0, false));
    assert_eq!(
        sorted(due[0].settled.clone()),
        ["evt_1:audit", "evt_1:refunds"]
    );
}

pub async fn reroute_tries_dead_routes_again(store: Arc<dyn Store>) {
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
    assert!(store.reroute("evt_1").await.unwrap());
    assert!(
        store
            .dead_letters(Filter::default())
            .await
            .unwrap()
            .is_empty()
    );
    let due = store.due_events(now_ms(), 10).await.unwrap();
    assert!(due[0].reroute);
    assert_eq!(due[0].settled, ["evt_1:audit"]);
}

pub async fn each_due_event_gets_its_own_settled_ids(store: Arc<dyn Store>) {
    for id in ["evt_1", "evt_2", "evt_3"] {
        store.journal(event(id)).await.unwrap();
    }
    let later = now_ms() + 60_000;
    for id in ["evt_1", "evt_2"] {
        store
            .save_routing(
                id,
                Routing {
                    records: vec![record(id, "audit", &["file"])],
                    failed: vec![
                        failure(id, "orders", later, false),
                        failure(id, "refunds", 0, true),
                    ],
                },
            )
            .await
            .unwrap();
    }
    let mut due = store.due_events(later, 10).await.unwrap();
    due.sort_by(|a, b| a.id.cmp(&b.id));
    let settled: Vec<(String, Vec<String>)> =
        due.into_iter().map(|e| (e.id, sorted(e.settled))).collect();
    let ids = |id: &str| vec![format!("{id}:audit"), format!("{id}:refunds")];
    assert_eq!(
        settled,
        [
            ("evt_1".to_owned(), ids("evt_1")),
            ("evt_2".to_owned(), ids("evt_2")),
            ("evt_3".to_owned(), Vec::new()),
        ]
    );
}

/// A scan can read an event while a pass of it runs (on another replica),
/// and route it again once that pass has stored its records: the second
/// pass must send nothing twice and undo nothing.
pub async fn a_stale_pass_adds_nothing_and_undoes_nothing(store: Arc<dyn Store>) {
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
    store
        .settle("evt_1:orders", "file", Settle::Delivered)
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
    let shown = detail(&*store, "evt_1").await.event;
    assert!(
        shown.failed_routes.iter().all(|f| f.route != "orders"),
        "a route whose record is stored has no failure: {:?}",
        shown.failed_routes
    );
    let dead = store.dead_letters(Filter::default()).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].route.as_deref(), Some("refunds"), "still dead");
    assert_eq!(
        delivery_state(&*store, "evt_1", "evt_1:orders", "file").await,
        "delivered",
        "still delivered"
    );

    // A late attempt of the delivered row settles nothing.
    store
        .settle(
            "evt_1:orders",
            "file",
            Settle::Dead {
                error: "an overlapping attempt".to_owned(),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        delivery_state(&*store, "evt_1", "evt_1:orders", "file").await,
        "delivered",
        "a delivered row stays delivered"
    );
}
