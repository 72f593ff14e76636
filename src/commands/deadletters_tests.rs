//! Tests of the dead-letter commands: the table and JSON lines with every
//! kind of dead letter, replay by route, and a missing journal.

use bytes::Bytes;

use super::*;
use crate::sinks::Encoded;
use crate::store::{NewEvent, NewRecord, RouteFailure, Routing, Settle, SqliteStore};

/// A journal with one dead letter of each kind: a delivery (`file`), a
/// route (`orders`) and an event that cannot be routed.
async fn journal() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("journal.db"), true, 64 << 20).unwrap();
    for id in ["evt_1", "evt_2"] {
        store
            .journal(NewEvent {
                id: id.to_owned(),
                kind: "checkout.session.completed".to_owned(),
                received_at_ms: now_ms(),
                body: Bytes::from_static(b"{}"),
                routed: false,
                leased: true,
            })
            .await
            .unwrap();
    }
    store
        .save_routing(
            "evt_1",
            Routing {
                records: vec![NewRecord {
                    record: Encoded {
                        id: "evt_1:audit".to_owned(),
                        body: Bytes::from_static(b"{}"),
                    },
                    route: "audit".to_owned(),
                    sinks: vec!["file".to_owned()],
                }],
                failed: vec![RouteFailure {
                    route: "orders".to_owned(),
                    record_id: "evt_1:orders".to_owned(),
                    error: "no such checkout session:\ncs_missing".to_owned(),
                    next_attempt_ms: 0,
                    dead: true,
                }],
            },
        )
        .await
        .unwrap();
    store
        .settle(
            "evt_1:audit",
            "file",
            Settle::Dead {
                error: "disk full".to_owned(),
            },
        )
        .await
        .unwrap();
    store
        .event_failed("evt_2", "cannot parse".to_owned(), 0, true)
        .await
        .unwrap();
    (dir, store)
}

fn listed(lines: &[u8]) -> Vec<String> {
    String::from_utf8(lines.to_vec())
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn the_table_shows_a_dead_route_with_no_sink_and_its_route_named() {
    let (_dir, store) = journal().await;
    let mut out = Vec::new();
    let n = list(&store, Filter::default(), false, &mut out)
        .await
        .unwrap();
    assert_eq!(n, 3);
    let lines = listed(&out);
    let row = |id: &str| {
        lines
            .iter()
            .find(|l| l.starts_with(&format!("{id} ")))
            .unwrap_or_else(|| panic!("no row for {id}: {lines:?}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let delivery = row("evt_1:audit");
    assert_eq!(&delivery[1..3], ["file", "1"]);
    assert_eq!(&delivery[4..], ["disk", "full"]);
    let route = row("evt_1:orders");
    assert_eq!(&route[1..3], ["-", "1"]);
    assert_eq!(
        route[4..].join(" "),
        "route orders: no such checkout session: cs_missing"
    );
    let event = row("evt_2");
    assert_eq!(&event[1..3], ["(routing)", "1"]);
    assert_eq!(&event[4..], ["cannot", "parse"]);
    assert!(lines.last().unwrap().starts_with("3 dead letter(s)"));
}

#[tokio::test]
async fn json_lines_include_route_level_dead_letters() {
    let (_dir, store) = journal().await;
    let mut out = Vec::new();
    let by_route = Filter {
        route: Some("orders".to_owned()),
        ..Filter::default()
    };
    assert_eq!(list(&store, by_route, true, &mut out).await.unwrap(), 1);
    let lines = listed(&out);
    let letter: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(letter["record_id"], "evt_1:orders");
    assert_eq!(letter["event_id"], "evt_1");
    assert_eq!(letter["route"], "orders");
    assert!(letter["sink"].is_null());
}

#[tokio::test]
async fn replay_by_route_takes_the_route_level_dead_letter_back() {
    let (_dir, store) = journal().await;
    let mut out = Vec::new();
    let by_route = Filter {
        route: Some("orders".to_owned()),
        ..Filter::default()
    };
    assert_eq!(
        replay(&store, by_route.clone(), false, false, &mut out)
            .await
            .unwrap(),
        1
    );
    assert!(listed(&out)[0].starts_with("1 dead letter(s) queued"));
    assert!(store.dead_letters(by_route).await.unwrap().is_empty());
    let due = store.due_events(now_ms(), 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].id, "evt_1");
}

#[tokio::test]
async fn a_command_without_a_journal_fails_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("routes.yaml");
    let env = Env::default();
    assert!(
        open_journal(&config, &env)
            .await
            .unwrap_err()
            .contains("is not valid")
    );
    std::fs::write(
        &config,
        "sinks:\n  orders: { type: stdout }\nroutes:\n  - name: paid\n    when: { type: checkout.session.completed }\n    emit: event\n    to: [orders]\n",
    )
    .unwrap();
    let error = open_journal(&config, &env).await.err().unwrap();
    assert!(error.starts_with("error: no journal at"), "{error}");
}
