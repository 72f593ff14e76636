//! Tests of the snapshot build: sinks carried over or replaced, what orders need, `wants_type`,
//! and the check of every stage at once.

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

/// Every problem of [`check_file`] on `text`, as `place: message` with the
/// folder left out, and its warnings the same way.
fn findings(text: &str, orders_enabled: bool) -> (Vec<String>, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("routes.yaml");
    std::fs::write(&path, text).unwrap();
    let findings = check_file(&path, &Env::empty(), UnsetVars::Refused, orders_enabled);
    let shown = |problems: &[ConfigProblem]| -> Vec<String> {
        let folder = format!("{}/", dir.path().display());
        problems
            .iter()
            .map(|p| p.to_string().replace(&folder, ""))
            .collect()
    };
    assert_eq!(findings.config.is_some(), findings.problems.is_empty());
    (shown(&findings.problems), shown(&findings.warnings))
}

#[track_caller]
fn assert_lines(got: &[String], expected: &[(&str, &str)]) {
    assert_eq!(got.len(), expected.len(), "{got:#?}");
    for (line, (place, fragment)) in got.iter().zip(expected) {
        assert!(
            line.starts_with(&format!("{place}: ")) && line.contains(fragment),
            "`{place}: ...{fragment}` is not {line:?}\n{got:#?}"
        );
    }
}

#[test]
fn every_stage_reports_in_one_run_in_file_order() {
    // The file's own problems (an unknown key, a duplicate name, an unknown
    // sink) and the rules' (an unknown operator, a type mismatch, orders
    // from PaymentIntents), where each stage once hid the next.
    let text = "sinks:\n  orders: { type: jsonl, pth: x.jsonl }\n  out: { type: stdout }\nroutes:\n  - name: paid\n    when:\n      type: checkout.session.completed\n      data.object.amount_total: { gtee: 5, lt: 9 }\n    emit: order\n    to: [orders]\n  - name: paid\n    when: { type: payment_intent.succeeded, livemode: { gt: \"x\" } }\n    emit: order\n    to: [out, nope]\n";
    let (problems, warnings) = findings(text, true);
    assert_lines(
        &problems,
        &[
            ("routes.yaml:2:26", "unknown field `pth`"),
            (
                "routes.yaml:8:35",
                "route `paid`: condition `data.object.amount_total`: unknown operator `gtee`",
            ),
            ("routes.yaml:11:11", "route name `paid` is used twice"),
            (
                "routes.yaml:12:57",
                "condition `livemode`: `gt` compares numbers, got a string",
            ),
            (
                "routes.yaml:13:11",
                "types (`payment_intent.succeeded`) are never Checkout Session events: write \
                 `emit: event`",
            ),
            ("routes.yaml:14:15", "sink `nope`, which is not defined"),
        ],
    );
    assert!(warnings.is_empty(), "{warnings:#?}");
}

#[test]
fn a_condition_with_a_bad_path_is_placed_at_its_key() {
    let (problems, _) = findings(
        "sinks: { out: { type: stdout } }\nroutes:\n  - name: a\n    when:\n      data..x: { gte: 1, lt: 2 }\n    emit: event\n    to: out\n",
        true,
    );
    // One problem, at the key: the operators are fine, the path is not.
    assert_lines(&problems, &[("routes.yaml:5:7", "non-empty segments")]);
}

#[test]
fn orders_need_a_type_that_can_be_a_checkout_session() {
    let route = |types: &str| {
        format!(
            "sinks: {{ out: {{ type: stdout }} }}\nroutes:\n  - name: r\n    when: {{ type: {types} }}\n    emit: order\n    to: out\n"
        )
    };
    for refused in [
        "payment_intent.succeeded",
        "\"payment_intent.*\"",
        "[charge.succeeded, invoice.paid]",
        "\"checkout.sessions.*\"",
    ] {
        let (problems, _) = findings(&route(refused), true);
        assert_lines(
            &problems,
            &[("routes.yaml:5:11", "never Checkout Session events")],
        );
    }
    for fine in [
        "\"*\"",
        "\"checkout.*\"",
        "\"checkout.session.*\"",
        "\"*.completed\"",
        "[checkout.session.completed, \"checkout.*\"]",
        "checkout.session.some_new_type",
    ] {
        let (problems, _) = findings(&route(fine), true);
        assert!(problems.is_empty(), "{fine}: {problems:#?}");
    }
    // `emit: event` takes any event.
    let (problems, _) = findings(
        &route("payment_intent.succeeded").replace("emit: order", "emit: event"),
        true,
    );
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn orders_on_a_mixed_type_list_are_refused_at_each_type_that_is_never_a_session() {
    // Each `payment_intent.succeeded` would be a dead letter at run time.
    let text = "sinks: { out: { type: stdout } }\nroutes:\n  - name: mixed\n    when: { type: [payment_intent.succeeded, checkout.session.completed, \"invoice.*\"] }\n    emit: order\n    to: out\n";
    let (problems, _) = findings(text, true);
    assert_lines(
        &problems,
        &[
            (
                "routes.yaml:4:20",
                "route `mixed` emits orders, which are built from Checkout Sessions, but its type \
                 `payment_intent.succeeded` is never a Checkout Session event",
            ),
            (
                "routes.yaml:4:74",
                "`invoice.*` is never a Checkout Session event",
            ),
        ],
    );
    assert!(
        problems
            .iter()
            .all(|p| p.contains("split the route") && p.contains("`emit: event`")),
        "{problems:#?}"
    );
    // The same list, its types in a block sequence: each at its own line.
    let text = "sinks: { out: { type: stdout } }\nroutes:\n  - name: mixed\n    when:\n      type:\n        - checkout.session.completed\n        - payment_intent.succeeded\n    emit: order\n    to: out\n";
    let (problems, _) = findings(text, true);
    assert_lines(
        &problems,
        &[("routes.yaml:7:11", "`payment_intent.succeeded`")],
    );
}

#[test]
fn warnings_come_with_a_broken_config_and_with_the_snapshot() {
    let text = "sinks: { out: { type: stdout } }\nroutes:\n  - name: a\n    when: { type: checkout.sessions.completed, amount_total: { gte: 10 } }\n    emit: event\n    to: [out, nope]\n";
    let (problems, warnings) = findings(text, true);
    assert_lines(&problems, &[("routes.yaml:6:15", "`nope`")]);
    assert_lines(
        &warnings,
        &[
            (
                "routes.yaml:4:13",
                "did you mean `checkout.session.completed`?",
            ),
            (
                "routes.yaml:4:48",
                "did you mean `data.object.amount_total`?",
            ),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let valid = config(dir.path(), &text.replace("[out, nope]", "[out]"));
    let snapshot = Snapshot::build(valid, None, 1, true).unwrap();
    assert_eq!(snapshot.warnings.len(), 2, "{:#?}", snapshot.warnings);
}

#[test]
fn a_condition_on_an_unset_variable_is_not_judged_when_unset_variables_are_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("routes.yaml");
    let text = "sinks: { out: { type: stdout } }\nroutes:\n  - name: r\n    when: { type: \"${TYPE}\", data.object.currency: \"${CURRENCY}\" }\n    emit: order\n    to: out\n";
    std::fs::write(&path, text).unwrap();
    let findings = check_file(&path, &Env::empty(), UnsetVars::Allowed, true);
    assert!(findings.problems.is_empty(), "{:#?}", findings.problems);
    assert!(findings.warnings.is_empty(), "{:#?}", findings.warnings);
    assert_eq!(findings.unset_vars, ["CURRENCY", "TYPE"]);

    // Refused (what serve does), each unset variable is the problem, once.
    let findings = check_file(&path, &Env::empty(), UnsetVars::Refused, true);
    let problems: Vec<String> = findings
        .problems
        .iter()
        .map(|p| p.message.clone())
        .collect();
    assert_eq!(
        problems,
        [
            "${TYPE} is not set: export it or put it in .env",
            "${CURRENCY} is not set: export it or put it in .env"
        ]
    );
}

#[test]
fn events_are_parsed_keeping_what_the_routes_read() {
    let dir = tempfile::tempdir().unwrap();
    // An `emit: event` route sends the whole event.
    let whole = Snapshot::build(config(dir.path(), ROUTES), None, 1, false).unwrap();
    assert!(whole.keep().is_whole());

    let orders = "sinks:\n  orders: { type: jsonl, path: orders.jsonl }\nroutes:\n  - name: big\n    when: { type: checkout.session.completed, data.object.amount_total: { gte: 100 }, data.object.custom_fields.0.key: gift }\n    emit: order\n    to: [orders]\n";
    let snapshot = Snapshot::build(config(dir.path(), orders), None, 1, true).unwrap();
    let body = serde_json::json!({
        "id": "evt_1", "object": "event", "type": "checkout.session.completed",
        "created": 1, "livemode": false, "api_version": "2025-01-27",
        "data": {"object": {
            "id": "cs_1", "object": "checkout.session", "amount_total": 500,
            "custom_fields": [{"key": "gift", "x": 1}], "locale": "fr",
            "metadata": {"a": "b"}, "payment_status": "paid"
        }}
    });
    let event = Event::parse_keeping(&serde_json::to_vec(&body).unwrap(), snapshot.keep()).unwrap();
    // The conditions' paths, the order's fields, the event's own; nothing else.
    assert_eq!(
        event.raw,
        serde_json::json!({
            "id": "evt_1", "object": "event", "type": "checkout.session.completed",
            "created": 1, "livemode": false,
            "data": {"object": {
                "id": "cs_1", "object": "checkout.session", "amount_total": 500,
                "custom_fields": [{"key": "gift", "x": 1}],
                "metadata": {"a": "b"}, "payment_status": "paid"
            }}
        })
    );
    assert_eq!(snapshot.matching(&event.raw).count(), 1);
}
