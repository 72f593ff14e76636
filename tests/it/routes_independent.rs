//! Routes are independent (SPEC §4): one event's routes get their records,
//! retries and dead letters each on its own. An `emit: event` audit route
//! is written at once whatever happens to an `emit: order` route on the
//! same event.

use std::time::Duration;

use serde_json::Value;

use crate::events::{line_items, session_event};
use crate::harness::{eventually, read_jsonl, spawn_in_process};

const AUDIT_AND_ORDERS: &str = r#"
stripe: { max_attempts: 1 }
sinks:
  audit: { type: jsonl, path: sinks/audit.jsonl }
  orders: { type: jsonl, path: sinks/orders.jsonl }
routes:
  - name: audit
    when: { type: "checkout.session.*" }
    emit: event
    to: [audit]
  - name: orders
    when: { type: checkout.session.completed, payment_status: paid }
    emit: order
    to: [orders]
"#;

#[tokio::test]
async fn an_unreadable_session_dead_letters_only_the_order_route_and_replay_takes_it_back() {
    let app = spawn_in_process(AUDIT_AND_ORDERS).await;
    let event = session_event(
        "evt_unknown_session",
        "checkout.session.completed",
        "cs_test_not_there_yet",
        "paid",
    );
    let answer = app.send(&event).await;
    assert_eq!(answer.status, 200, "{}", answer.body);

    // The audit record is written at once, whatever the order route does.
    let audit = app.wait_lines("sinks/audit.jsonl", 1).await;
    assert_eq!(audit[0]["id"], "evt_unknown_session:audit");

    // The order route alone is a dead letter (Stripe answers 404), shown
    // with its route and record id.
    let listed = app.wait_dead_letters(|listed| !listed.is_empty()).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let letter = &listed[0];
    assert_eq!(letter["route"], "orders", "{letter}");
    assert_eq!(
        letter["record_id"], "evt_unknown_session:orders",
        "{letter}"
    );
    assert_eq!(letter["event_id"], "evt_unknown_session", "{letter}");
    assert!(letter["sink"].is_null(), "{letter}");
    let error = letter["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("cs_test_not_there_yet"), "{error}");
    assert!(read_jsonl(&app.path("sinks/orders.jsonl")).is_empty());

    // Once the session exists, replay builds the missing record, and only it.
    app.stripe
        .add_session("cs_test_not_there_yet", line_items());
    let replayed = app.cli(&["replay", "--route", "orders"]);
    assert!(replayed.contains('1'), "{replayed}");
    let orders = app.wait_lines("sinks/orders.jsonl", 1).await;
    assert_eq!(orders[0]["id"], "evt_unknown_session:orders");
    assert_eq!(orders[0]["amount_total"], 5198, "{}", orders[0]);
    assert_eq!(orders[0]["line_items"].as_array().map(Vec::len), Some(2));
    app.wait_dead_letters(<[Value]>::is_empty).await;
    assert_eq!(
        read_jsonl(&app.path("sinks/audit.jsonl")).len(),
        1,
        "audit not built twice"
    );
}

#[tokio::test]
async fn a_transient_api_failure_delays_only_the_order_route() {
    let app = spawn_in_process(AUDIT_AND_ORDERS).await;
    app.stripe.add_session("cs_test_flaky", line_items());
    // The Stripe API answers 500 until told otherwise.
    app.stripe.fail_next(u32::MAX, 500);
    let event = session_event(
        "evt_flaky",
        "checkout.session.completed",
        "cs_test_flaky",
        "paid",
    );
    let answer = app.send(&event).await;
    assert_eq!(answer.status, 200, "{}", answer.body);

    let audit = app.wait_lines("sinks/audit.jsonl", 1).await;
    assert_eq!(audit[0]["id"], "evt_flaky:audit");
    // The audit record is delivered before the line items are asked for:
    // wait for the API to have been tried, then no order may exist.
    eventually(Duration::from_secs(10), || {
        (app.stripe.requests() >= 1).then_some(())
    })
    .await;
    assert!(
        read_jsonl(&app.path("sinks/orders.jsonl")).is_empty(),
        "no order while the API fails"
    );

    // The API recovers: the order route is retried and delivered.
    app.stripe.fail_next(0, 500);
    let orders = app.wait_lines("sinks/orders.jsonl", 1).await;
    assert_eq!(orders[0]["id"], "evt_flaky:orders");
    assert_eq!(read_jsonl(&app.path("sinks/audit.jsonl")).len(), 1);
    assert!(
        app.cli(&["deadletters", "--json"]).trim().is_empty(),
        "nothing dead"
    );
}
