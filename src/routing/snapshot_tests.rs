//! Tests of the snapshot build: sinks carried over or replaced, what orders need, `wants_type`.

use std::path::Path;

use super::*;
use crate::config::env::Env;

fn config(dir: &Path, text: &str) -> Config {
    Config::parse(text, &dir.join("routes.yaml"), &Env::empty()).expect("valid config")
}

const ROUTES: &str = "sinks:\n  orders: { type: jsonl, path: orders.jsonl }\n  audit: { type: jsonl, path: audit.jsonl }\nroutes:\n  - name: all\n    when: {}\n    emit: event\n    to: [orders, audit]\n";

#[test]
fn a_rebuild_carries_over_unchanged_sinks_and_replaces_changed_ones() {
    let dir = tempfile::tempdir().unwrap();
    let first = Snapshot::build(config(dir.path(), ROUTES), None, 1, false).unwrap();
    let same = Snapshot::build(config(dir.path(), ROUTES), Some(&first), 2, false).unwrap();
    assert!(same.shares_sink(&first, "orders") && same.shares_sink(&first, "audit"));

    let edited = ROUTES.replace("audit.jsonl", "audit-2.jsonl");
    let changed = Snapshot::build(config(dir.path(), &edited), Some(&same), 3, false).unwrap();
    assert!(
        changed.shares_sink(&same, "orders"),
        "untouched sink carried over"
    );
    assert!(!changed.shares_sink(&same, "audit"), "edited sink rebuilt");
    assert!(!changed.shares_sink(&same, "missing"));
}

#[test]
fn a_rebuild_changing_only_retry_or_concurrency_keeps_the_sink_instance() {
    // Two instances of a jsonl sink on one file would each take the other's
    // line in progress for a torn one: a change to the common keys only must
    // keep the built sink, and still take effect through the new config.
    let dir = tempfile::tempdir().unwrap();
    let first = Snapshot::build(config(dir.path(), ROUTES), None, 1, false).unwrap();
    let edited = ROUTES
        .replace(
            "path: orders.jsonl }",
            "path: orders.jsonl, retry: { initial: 50ms, max: 200ms } }",
        )
        .replace("path: audit.jsonl }", "path: audit.jsonl, concurrency: 4 }");
    let second = Snapshot::build(config(dir.path(), &edited), Some(&first), 2, false).unwrap();
    assert!(
        second.shares_sink(&first, "orders"),
        "retry change kept the sink"
    );
    assert!(
        second.shares_sink(&first, "audit"),
        "concurrency change kept the sink"
    );
    let orders = second.sink("orders").unwrap();
    assert_eq!(orders.config.common.retry.initial.as_millis(), 50);
    assert_eq!(
        second.sink("audit").unwrap().config.common.concurrency,
        Some(4)
    );
    // The routes deliver to the carried-over instance too.
    let route_sink = &second.routes[0].to[0].1;
    assert!(Arc::ptr_eq(route_sink, &orders.sink));
}

#[test]
fn orders_need_an_api_key_and_rules_must_compile() {
    let dir = tempfile::tempdir().unwrap();
    let orders = ROUTES.replace("emit: event", "emit: order");
    let error = compile(&config(dir.path(), &orders), false).unwrap_err();
    assert!(
        error.problems[0].message.contains("STRIPE_SECRET_API_KEY"),
        "{error}"
    );
    assert!(compile(&config(dir.path(), &orders), true).is_ok());

    let bad = ROUTES.replace("when: {}", "when: { data.object.amount: { gtee: 1 } }");
    let error = compile(&config(dir.path(), &bad), true).unwrap_err();
    assert!(
        error.problems[0]
            .place
            .starts_with(&format!("{}", dir.path().join("routes.yaml").display()))
    );
    assert!(error.problems[0].message.contains("route `all`"), "{error}");
}

#[test]
fn wants_type_asks_every_route() {
    let dir = tempfile::tempdir().unwrap();
    let typed = ROUTES.replace("when: {}", "when: { type: \"checkout.session.*\" }");
    let snapshot = Snapshot::build(config(dir.path(), &typed), None, 1, false).unwrap();
    assert!(snapshot.wants_type("checkout.session.completed"));
    assert!(!snapshot.wants_type("invoice.paid"));
}
