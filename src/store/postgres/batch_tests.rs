//! Grouped writes keep the rule of each call: settles made at once (one
//! batch, the same delivery several times in it), routing passes made at
//! once (one transaction; the same event or record twice, failed routes)
//! and routing passes with failed routes (the slower path).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::testing::TestDb;
use super::tests::{event, store};
use crate::clock::now_ms;
use crate::sinks::Encoded;
use crate::store::{
    ATTEMPTS_KEPT, Filter, Journaled, NewRecord, RouteFailure, Routing, Settle, Store,
};

const LEASE: Duration = Duration::from_secs(5);

fn record(id: &str, route: &str) -> NewRecord {
    NewRecord {
        record: Encoded {
            id: id.to_owned(),
            body: Bytes::from(format!(r#"{{"record":"{id}"}}"#)),
        },
        route: route.to_owned(),
        sinks: vec!["hook".to_owned()],
    }
}

fn retry(n: usize) -> Settle {
    Settle::Retry {
        next_attempt_ms: now_ms() + 60_000,
        error: format!("HTTP 503 #{n}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settles_made_at_once_keep_each_calls_rule() {
    let Some(db) = TestDb::create("settles_made_at_once_keep_each_calls_rule").await else {
        return;
    };
    let store = store(&db, LEASE).await;
    store.journal(event("evt_many")).await.unwrap();
    let records: Vec<NewRecord> = (0..40)
        .map(|i| record(&format!("rec_{i:02}"), &format!("route_{i:02}")))
        .collect();
    let stored = store
        .save_routing(
            "evt_many",
            Routing {
                records,
                failed: Vec::new(),
            },
        )
        .await
        .unwrap();
    assert_eq!(stored.len(), 40);
    // Each delivery's outcomes in order (as its worker makes them), all
    // deliveries at once: they meet in few batches.
    let store = std::sync::Arc::new(store);
    let mut tasks = Vec::new();
    for i in 0..40 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let id = format!("rec_{i:02}");
            let retries = if i == 0 { ATTEMPTS_KEPT + 5 } else { 1 };
            for n in 0..retries {
                store.settle(&id, "hook", retry(n)).await.unwrap();
            }
            store.settle(&id, "hook", Settle::Delivered).await.unwrap();
            // Settled already: a late outcome changes nothing.
            let late = Settle::Dead {
                error: "late".to_owned(),
            };
            store.settle(&id, "hook", late).await.unwrap();
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let detail = store.event("evt_many").await.unwrap().unwrap();
    assert_eq!(detail.event.records.len(), 40);
    for (r, record) in detail.event.records.iter().enumerate() {
        let delivery = &record.deliveries[0];
        let retries = if record.id == "rec_00" {
            ATTEMPTS_KEPT + 5
        } else {
            1
        };
        assert_eq!(delivery.state, "delivered", "{record:?}");
        assert_eq!(delivery.attempts as usize, retries + 1, "{record:?}");
        assert_eq!(
            delivery.last_error.as_deref(),
            Some(format!("HTTP 503 #{}", retries - 1).as_str()),
            "{record:?}"
        );
        let attempts = &detail.attempts[r][0];
        assert_eq!(
            attempts.len(),
            (retries + 1).min(ATTEMPTS_KEPT),
            "{record:?}"
        );
        assert_eq!(attempts.last().unwrap().outcome, "delivered");
    }
    let letters = store.dead_letters(Filter::default()).await.unwrap();
    assert!(letters.is_empty(), "{letters:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_routing_pass_with_failed_routes_retries_then_clears_them() {
    let Some(db) =
        TestDb::create("a_routing_pass_with_failed_routes_retries_then_clears_them").await
    else {
        return;
    };
    let store = store(&db, LEASE).await;
    store.journal(event("evt_fail")).await.unwrap();
    let crm_failed = |next| RouteFailure {
        route: "crm".to_owned(),
        record_id: "rec_crm".to_owned(),
        error: "enrichment failed".to_owned(),
        next_attempt_ms: next,
        dead: false,
    };
    let next = now_ms() + 60_000;
    let stored = store
        .save_routing(
            "evt_fail",
            Routing {
                records: vec![record("rec_orders", "orders")],
                failed: vec![crm_failed(next)],
            },
        )
        .await
        .unwrap();
    assert_eq!(stored, vec!["rec_orders".to_owned()]);
    let view = store.event("evt_fail").await.unwrap().unwrap().event;
    assert_eq!(view.state, "pending");
    assert_eq!(view.attempts, 1);
    assert_eq!(view.last_error.as_deref(), Some("enrichment failed"));
    assert_eq!(view.failed_routes.len(), 1);
    assert_eq!(view.failed_routes[0].state, "retry");

    // The retry builds the route: its failure goes, the event is routed,
    // and only the new record is new.
    let stored = store
        .save_routing(
            "evt_fail",
            Routing {
                records: vec![record("rec_orders", "orders"), record("rec_crm", "crm")],
                failed: Vec::new(),
            },
        )
        .await
        .unwrap();
    assert_eq!(stored, vec!["rec_crm".to_owned()]);
    let view = store.event("evt_fail").await.unwrap().unwrap().event;
    assert_eq!(view.state, "routed");
    assert!(view.failed_routes.is_empty(), "{view:?}");
    assert_eq!(view.records.len(), 2);

    // A late pass that failed a route whose record is stored says nothing.
    let stored = store
        .save_routing(
            "evt_fail",
            Routing {
                records: Vec::new(),
                failed: vec![crm_failed(next)],
            },
        )
        .await
        .unwrap();
    assert!(stored.is_empty());
    let view = store.event("evt_fail").await.unwrap().unwrap().event;
    assert_eq!(view.state, "routed");
    assert!(view.failed_routes.is_empty(), "{view:?}");
    assert_eq!(view.records.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_passes_made_at_once_each_answer_what_they_stored() {
    let Some(db) = TestDb::create("routing_passes_made_at_once").await else {
        return;
    };
    let store = Arc::new(store(&db, LEASE).await);
    let events = 60;
    for i in 0..events {
        store.journal(event(&format!("evt_{i}"))).await.unwrap();
    }
    let mut passes = tokio::task::JoinSet::new();
    for i in 0..events {
        // Each event twice (a scan and a late pass), and every fifth pass
        // with a failed route: these cannot share the group.
        for copy in 0..2 {
            let store = store.clone();
            passes.spawn(async move {
                let mut records = vec![
                    record(&format!("rec_{i}_orders"), "orders"),
                    record(&format!("rec_{i}_crm"), "crm"),
                ];
                // An id twice in one pass: the first one's sinks.
                let mut again = record(&format!("rec_{i}_orders"), "orders");
                again.sinks = vec!["other".to_owned()];
                records.push(again);
                let failed = if i % 5 == 0 && copy == 1 {
                    records.truncate(1);
                    vec![RouteFailure {
                        route: "crm".to_owned(),
                        record_id: format!("rec_{i}_crm"),
                        error: "enrichment failed".to_owned(),
                        next_attempt_ms: now_ms() + 60_000,
                        dead: false,
                    }]
                } else {
                    Vec::new()
                };
                let stored = store
                    .save_routing(&format!("evt_{i}"), Routing { records, failed })
                    .await
                    .unwrap();
                (i, stored)
            });
        }
    }
    let mut answered: HashSet<String> = HashSet::new();
    while let Some(done) = passes.join_next().await {
        let (i, stored) = done.unwrap();
        for id in &stored {
            assert!(id.starts_with(&format!("rec_{i}_")), "{i}: {stored:?}");
            assert!(answered.insert(id.clone()), "{id} answered twice");
        }
        // In the pass's order.
        let orders = stored.iter().position(|id| id.ends_with("_orders"));
        let crm = stored.iter().position(|id| id.ends_with("_crm"));
        if let (Some(orders), Some(crm)) = (orders, crm) {
            assert!(orders < crm, "{stored:?}");
        }
    }
    assert_eq!(answered.len(), events * 2, "each record stored once");
    for i in 0..events {
        let view = store
            .event(&format!("evt_{i}"))
            .await
            .unwrap()
            .unwrap()
            .event;
        assert_eq!(view.records.len(), 2, "{view:?}");
        for record in &view.records {
            let sinks: Vec<&str> = record.deliveries.iter().map(|d| d.sink.as_str()).collect();
            assert_eq!(sinks, ["hook"], "{view:?}");
        }
        // The crm record is stored, whichever pass came last: nothing to
        // retry unless the failed pass came after the group's.
        if view.failed_routes.is_empty() {
            assert_eq!(view.state, "routed", "{view:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_routing_group_that_fails_keeps_nothing_and_each_pass_answers_its_error() {
    let Some(db) = TestDb::create("a_routing_group_that_fails").await else {
        return;
    };
    let store = Arc::new(store(&db, LEASE).await);
    for i in 0..20 {
        store.journal(event(&format!("evt_{i}"))).await.unwrap();
    }
    let admin = store.shared.client().await.unwrap();
    admin
        .batch_execute("ALTER TABLE deliveries RENAME TO deliveries_away")
        .await
        .unwrap();
    let mut passes = tokio::task::JoinSet::new();
    for i in 0..20 {
        let store = store.clone();
        passes.spawn(async move {
            store
                .save_routing(
                    &format!("evt_{i}"),
                    Routing {
                        records: vec![record(&format!("rec_{i}"), "orders")],
                        failed: Vec::new(),
                    },
                )
                .await
        });
    }
    while let Some(done) = passes.join_next().await {
        assert!(done.unwrap().is_err(), "a pass of a failed group succeeded");
    }
    admin
        .batch_execute("ALTER TABLE deliveries_away RENAME TO deliveries")
        .await
        .unwrap();
    for i in 0..20 {
        let view = store
            .event(&format!("evt_{i}"))
            .await
            .unwrap()
            .unwrap()
            .event;
        assert_eq!(view.state, "pending");
        assert!(view.records.is_empty(), "{view:?}");
    }
    // Routed again, the passes store what they build.
    let stored = store
        .save_routing(
            "evt_0",
            Routing {
                records: vec![record("rec_0", "orders")],
                failed: Vec::new(),
            },
        )
        .await
        .unwrap();
    assert_eq!(stored, vec!["rec_0".to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_the_database_refuses_fails_alone_not_its_group() {
    let Some(db) = TestDb::create("a_pass_the_database_refuses").await else {
        return;
    };
    let store = Arc::new(store(&db, LEASE).await);
    for i in 0..40 {
        store.journal(event(&format!("evt_{i}"))).await.unwrap();
    }
    let mut passes = tokio::task::JoinSet::new();
    for i in 0..40 {
        let store = store.clone();
        passes.spawn(async move {
            // PostgreSQL's TEXT takes no NUL: this pass's statement fails.
            let id = if i == 7 {
                "rec_\u{0}bad".to_owned()
            } else {
                format!("rec_{i}")
            };
            let routing = Routing {
                records: vec![record(&id, "orders")],
                failed: Vec::new(),
            };
            (i, store.save_routing(&format!("evt_{i}"), routing).await)
        });
    }
    while let Some(done) = passes.join_next().await {
        let (i, stored) = done.unwrap();
        if i == 7 {
            assert!(stored.is_err(), "{stored:?}");
        } else {
            assert_eq!(stored.unwrap(), vec![format!("rec_{i}")]);
        }
    }
    for i in (0..40).filter(|i| *i != 7) {
        let view = store
            .event(&format!("evt_{i}"))
            .await
            .unwrap()
            .unwrap()
            .event;
        assert_eq!(view.state, "routed");
        assert_eq!(view.records.len(), 1);
    }
    let refused = store.event("evt_7").await.unwrap().unwrap().event;
    assert_eq!(refused.state, "pending");
    assert!(refused.records.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_the_database_refuses_fails_alone_not_its_batch() {
    let Some(db) = TestDb::create("an_event_the_database_refuses").await else {
        return;
    };
    let store = Arc::new(store(&db, LEASE).await);
    let mut journaled = tokio::task::JoinSet::new();
    for i in 0..40 {
        let store = store.clone();
        journaled.spawn(async move {
            // PostgreSQL's TEXT takes no NUL: this event's row is refused.
            let id = if i == 7 {
                "evt_\u{0}bad".to_owned()
            } else {
                format!("evt_{i}")
            };
            (i, store.journal(event(&id)).await)
        });
    }
    while let Some(done) = journaled.join_next().await {
        let (i, outcome) = done.unwrap();
        if i == 7 {
            assert!(outcome.is_err(), "{outcome:?}");
        } else {
            assert_eq!(outcome.unwrap(), Journaled::Inserted, "evt_{i}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settle_the_database_refuses_fails_alone_not_its_batch() {
    let Some(db) = TestDb::create("a_settle_the_database_refuses").await else {
        return;
    };
    let store = Arc::new(store(&db, LEASE).await);
    store.journal(event("evt_many")).await.unwrap();
    let records: Vec<NewRecord> = (0..40)
        .map(|i| record(&format!("rec_{i:02}"), &format!("route_{i:02}")))
        .collect();
    let routing = Routing {
        records,
        failed: Vec::new(),
    };
    assert_eq!(
        store.save_routing("evt_many", routing).await.unwrap().len(),
        40
    );
    let mut settles = tokio::task::JoinSet::new();
    for i in 0..40 {
        let store = store.clone();
        settles.spawn(async move {
            // A consumer's answer is the sink's error; PostgreSQL's TEXT
            // takes no NUL.
            let error = if i == 7 {
                "HTTP 500: \u{0}".to_owned()
            } else {
                format!("HTTP 500 #{i}")
            };
            let outcome = Settle::Retry {
                next_attempt_ms: now_ms() + 60_000,
                error,
            };
            (
                i,
                store.settle(&format!("rec_{i:02}"), "hook", outcome).await,
            )
        });
    }
    while let Some(done) = settles.join_next().await {
        let (i, outcome) = done.unwrap();
        if i == 7 {
            assert!(outcome.is_err(), "{outcome:?}");
        } else {
            outcome.unwrap();
        }
    }
    let view = store.event("evt_many").await.unwrap().unwrap();
    for (record, attempts) in view.event.records.iter().zip(&view.attempts) {
        let tried = if record.id == "rec_07" { 0 } else { 1 };
        assert_eq!(record.deliveries[0].attempts, tried, "{}", record.id);
        assert_eq!(attempts[0].len(), tried as usize, "{}", record.id);
    }
}
