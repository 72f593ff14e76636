//! Deliveries: settled, retried, dead and replayed; a record built once.

use bytes::Bytes;

use super::{event, open, record, routed};
use crate::clock::now_ms;
use crate::store::{Filter, Settle, SinkQueue, Store};

#[tokio::test]
async fn deliveries_settle_retry_die_and_replay() {
    let (_dir, store) = open();
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
    assert!(
        store.due_events(i64::MAX, 10).await.unwrap().is_empty(),
        "routed"
    );
    let http = store
        .due_deliveries("http", i64::MAX, 10, vec![])
        .await
        .unwrap();
    assert_eq!(http.len(), 2);
    let busy = vec!["evt_1:orders".to_owned()];
    let skipped = store
        .due_deliveries("http", i64::MAX, 10, busy)
        .await
        .unwrap();
    assert_eq!(skipped.len(), 1, "rows in flight are skipped");

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

    let depths = store.depths().await.unwrap();
    assert_eq!(
        depths.sinks["http"],
        SinkQueue {
            pending: 1,
            dead: 1
        }
    );
    assert!(!depths.sinks.contains_key("file"));

    let dead = store.dead_letters(Filter::default()).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].record_id.as_deref(), Some("evt_1:audit"));
    assert_eq!(dead[0].last_error.as_deref(), Some("HTTP 400: bad"));
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
    assert_eq!(due.len(), 1);
    assert_eq!(
        (due[0].record.id.as_str(), due[0].attempts),
        ("evt_1:audit", 0)
    );
}

#[tokio::test]
async fn a_record_is_built_once_and_reroute_adds_only_new_routes() {
    let (_dir, store) = open();
    store.journal(event("evt_1")).await.unwrap();
    store
        .save_routing("evt_1", routed(vec![record("evt_1", "orders", &["file"])]))
        .await
        .unwrap();
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
    let mut changed = record("evt_1", "orders", &["file"]);
    changed.record.body = Bytes::from_static(b"{}");
    store
        .save_routing(
            "evt_1",
            routed(vec![changed, record("evt_1", "new-route", &["file"])]),
        )
        .await
        .unwrap();
    let due = store
        .due_deliveries("file", i64::MAX, 10, vec![])
        .await
        .unwrap();
    assert_eq!(due.len(), 1, "the delivered record is not queued again");
    assert_eq!(due[0].record.id, "evt_1:new-route");
}
