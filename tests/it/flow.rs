//! The seed's whole flow: paid Checkout Sessions become order records in
//! every sink; async payments produce exactly one order; failures reach
//! their route; nothing unsigned is accepted.

use serde_json::{Value, json};

use crate::events::{fixture, line_items, session_event};
use crate::harness::{
    ROUTES, SECRET, WAIT, eventually, now, pretty, read_jsonl, spawn_app, spawn_in_process,
};

#[tokio::test]
async fn a_paid_card_order_reaches_every_sink() {
    let app = spawn_app(ROUTES).await;
    app.stripe.add_session("cs_test_card_1", line_items());
    let answer = app
        .send(&session_event(
            "evt_card_1",
            "checkout.session.completed",
            "cs_test_card_1",
            "paid",
        ))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        answer.body,
        json!({"received": true, "id": "evt_card_1", "duplicate": false})
    );

    let orders = app.wait_lines("sinks/orders.jsonl", 1).await;
    assert_eq!(orders.len(), 1);
    let order = &orders[0];
    assert_eq!(order["id"], "evt_card_1:paid-orders");
    assert_eq!(order["kind"], "order");
    assert_eq!(order["route"], "paid-orders");
    assert_eq!(order["event_type"], "checkout.session.completed");
    assert_eq!(order["checkout_session"], "cs_test_card_1");
    assert_eq!(order["payment_status"], "paid");
    assert_eq!(order["customer"]["name"], "Jenny Rosen");
    assert_eq!(order["customer"]["email"], "jenny.rosen@example.com");
    assert_eq!(order["customer"]["address"]["line1"], "510 Townsend St");
    assert_eq!(order["customer"]["address"]["postal_code"], "94103");
    assert_eq!(order["shipping"]["name"], "name");
    assert_eq!(order["amount_total"], 5198);
    assert_eq!(order["metadata"]["channel"], "web");
    let items = order["line_items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["id"], "li_1Pgc73B7WZ01zgkWx8kcmZPK");
    assert_eq!(items[0]["product"], "myproduct");
    assert_eq!(items[0]["quantity"], 2);
    assert_eq!(items[1]["product"], "T-shirt");
    assert_eq!(items[1]["unit_amount"], 1099);
    let total: i64 = items
        .iter()
        .map(|i| i["amount_total"].as_i64().unwrap())
        .sum();
    assert_eq!(total, 5198);

    // The HTTP consumer got the same record, signed per Standard Webhooks.
    let received = app.consumer.wait_for(1, WAIT).await;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].json(), *order);
    assert_eq!(
        received[0].header("webhook-id"),
        Some("evt_card_1:paid-orders")
    );
    let timestamp = received[0].header("webhook-timestamp").unwrap();
    let expected =
        stripe_router::sinks::http::SigningKey::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD")
            .unwrap()
            .sign(
                "evt_card_1:paid-orders",
                timestamp.parse().unwrap(),
                &received[0].body,
            );
    assert_eq!(
        received[0].header("webhook-signature"),
        Some(expected.as_str())
    );

    // And stdout carries exactly the record, one compact line.
    let line = app.stdout.wait_for(WAIT, |l| Some(l.to_owned()));
    assert_eq!(serde_json::from_str::<Value>(&line).unwrap(), *order);
    assert!(!line.contains('\n') && !line.contains("  "));

    // Nothing else happened: the failure route stayed quiet.
    assert!(read_jsonl(&app.path("sinks/failed.jsonl")).is_empty());
}

#[tokio::test]
async fn an_async_payment_becomes_exactly_one_paid_order() {
    let app = spawn_in_process(ROUTES).await;
    app.stripe.add_session("cs_test_sepa_1", line_items());
    let completed = app
        .send(&session_event(
            "evt_sepa_completed",
            "checkout.session.completed",
            "cs_test_sepa_1",
            "unpaid",
        ))
        .await;
    assert_eq!(completed.status, 200);
    app.wait_health(|h| h["events"]["unmatched"] == 1).await;
    assert!(
        read_jsonl(&app.path("sinks/orders.jsonl")).is_empty(),
        "an unpaid session is not an order yet"
    );

    let succeeded = app
        .send(&session_event(
            "evt_sepa_succeeded",
            "checkout.session.async_payment_succeeded",
            "cs_test_sepa_1",
            "paid",
        ))
        .await;
    assert_eq!(succeeded.status, 200);
    let orders = app.wait_lines("sinks/orders.jsonl", 1).await;
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0]["id"], "evt_sepa_succeeded:paid-orders");
    assert_eq!(orders[0]["payment_status"], "paid");
    assert_eq!(
        orders[0]["event_type"],
        "checkout.session.async_payment_succeeded"
    );
    assert_eq!(app.consumer.wait_for(1, WAIT).await.len(), 1);
    app.wait_health(|h| h["events"]["routed"] == 1).await;
    assert!(read_jsonl(&app.path("sinks/failed.jsonl")).is_empty());
    assert_eq!(app.health().await["events"]["unmatched"], 1);
}

#[tokio::test]
async fn a_failed_async_payment_reaches_the_failure_route() {
    let app = spawn_in_process(ROUTES).await;
    app.stripe.add_session("cs_test_sepa_2", line_items());
    let answer = app
        .send(&session_event(
            "evt_sepa_failed",
            "checkout.session.async_payment_failed",
            "cs_test_sepa_2",
            "unpaid",
        ))
        .await;
    assert_eq!(answer.status, 200);
    let failed = app.wait_lines("sinks/failed.jsonl", 1).await;
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["route"], "failed-payments");
    assert_eq!(failed[0]["payment_status"], "unpaid");
    assert_eq!(failed[0]["line_items"].as_array().unwrap().len(), 2);
    assert!(read_jsonl(&app.path("sinks/orders.jsonl")).is_empty());
    assert!(app.consumer.received().is_empty());
}

#[tokio::test]
async fn unsigned_and_forged_requests_are_refused_and_write_nothing() {
    let app = spawn_app(ROUTES).await;
    app.stripe.add_session("cs_test_forged", line_items());
    let event = session_event(
        "evt_forged",
        "checkout.session.completed",
        "cs_test_forged",
        "paid",
    );
    let body = pretty(&event);

    let unsigned = app.post(body.clone(), None).await;
    assert_eq!(
        (unsigned.status, unsigned.body.clone()),
        (400, json!({"message": "Bad request"}))
    );

    let forged = stripe_router::ingest::verify::sign(&body, "whsec_not_the_secret", now());
    let answer = app.post(body.clone(), Some(forged)).await;
    assert_eq!(answer.status, 400);
    assert!(answer.message().contains("signature"), "{}", answer.body);

    let mut tampered_event = event.clone();
    tampered_event["data"]["object"]["amount_total"] = json!(1);
    let signature = stripe_router::ingest::verify::sign(&body, SECRET, now());
    let tampered = app.post(pretty(&tampered_event), Some(signature)).await;
    assert_eq!(tampered.status, 400);

    let stale = stripe_router::ingest::verify::sign(&body, SECRET, now() - 3600);
    let answer = app.post(body.clone(), Some(stale)).await;
    assert_eq!(answer.status, 400);
    assert!(answer.message().contains("tolerance"), "{}", answer.body);

    let garbage = app.post(body, Some("garbage".to_owned())).await;
    assert_eq!(garbage.status, 400);

    assert_eq!(
        app.stripe.requests(),
        0,
        "nothing unverified reaches the Stripe API"
    );
    assert!(read_jsonl(&app.path("sinks/orders.jsonl")).is_empty());
    assert!(app.consumer.received().is_empty());
    assert!(app.stdout.all().is_empty());
    assert_eq!(app.health().await["events"]["rejected"], 5);
    // Each refusal is logged with its reason, and never with a secret.
    let logs = eventually(WAIT, || {
        let logs = app.stderr.all().join("\n");
        (logs.matches("refused a request").count() == 5).then_some(logs)
    })
    .await;
    assert!(
        !logs.contains(SECRET) && !logs.contains("whsec_not_the_secret"),
        "{logs}"
    );
}

#[tokio::test]
async fn event_routes_pass_the_event_through_and_unmatched_events_are_counted() {
    let routes = r#"
sinks:
  audit: { type: jsonl, path: audit/events.jsonl }
routes:
  - name: audit-intents
    when: { type: "payment_intent.*", data.object.amount: { gte: 1000 } }
    emit: event
    to: [audit]
"#;
    let app = crate::harness::spawn_in_process_with(crate::harness::Options {
        routes: routes.to_owned(),
        env: vec![(
            "STRIPE_WEBHOOK_SECRET".into(),
            format!(" whsec_other , {SECRET} "),
        )],
        wrapper: Vec::new(),
    })
    .await;
    let mut intent = fixture("event_payment_intent.succeeded.json");
    intent["id"] = json!("evt_pi_1");
    let answer = app.send(&intent).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let records = app.wait_lines("audit/events.jsonl", 1).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["kind"], "event");
    assert_eq!(records[0]["id"], "evt_pi_1:audit-intents");
    assert_eq!(records[0]["event"], intent, "the event as received");

    let mut small = intent.clone();
    small["id"] = json!("evt_pi_2");
    small["data"]["object"]["amount"] = json!(999);
    assert_eq!(app.send(&small).await.status, 200);
    let health = app.wait_health(|h| h["events"]["unmatched"] == 1).await;
    assert_eq!(health["events"]["routed"], 1);
    assert_eq!(read_jsonl(&app.path("audit/events.jsonl")).len(), 1);
}

#[tokio::test]
async fn a_session_the_stripe_api_does_not_know_becomes_a_dead_letter_until_replayed() {
    let app = spawn_app(ROUTES).await;
    let event = session_event(
        "evt_unknown_session",
        "checkout.session.completed",
        "cs_test_missing",
        "paid",
    );
    let answer = app.send(&event).await;
    assert_eq!(
        answer.status, 200,
        "the event is journaled whatever happens next: {}",
        answer.body
    );
    // The order route alone gives up (routes are independent): a
    // route-level dead letter; the event itself is routed.
    let health = app.wait_health(|h| h["queues"]["routes_dead"] == 1).await;
    assert_eq!(health["queues"]["events_pending"], 0);
    assert_eq!(health["queues"]["events_dead"], 0);
    let listed = app.cli(&["deadletters"]);
    assert!(
        listed.contains("evt_unknown_session") && listed.contains("cs_test_missing"),
        "{listed}"
    );
    assert!(
        !app.stderr
            .all()
            .iter()
            .any(|l| l.contains(crate::harness::API_KEY)),
        "the API key never appears in logs"
    );
    assert!(read_jsonl(&app.path("sinks/orders.jsonl")).is_empty());

    // Once the session exists, replaying the event builds and delivers the order.
    app.stripe.add_session("cs_test_missing", line_items());
    let replayed = app.cli(&["replay", "--event", "evt_unknown_session"]);
    assert!(replayed.contains("1 dead letter"), "{replayed}");
    let orders = app.wait_lines("sinks/orders.jsonl", 1).await;
    assert_eq!(orders[0]["id"], "evt_unknown_session:paid-orders");
    assert!(app.cli(&["deadletters"]).contains("no dead letters"));
}
