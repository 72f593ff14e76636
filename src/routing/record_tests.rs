//! Tests of the records: orders from each session shape, line items and serialized names.

use super::*;
use serde_json::json;

const PAID: &str = "tests/fixtures/stripe/composed/event_checkout.session.completed_paid.json";
const ASYNC: &str =
    "tests/fixtures/stripe/composed/event_checkout.session.completed_unpaid_async.json";
const PI: &str = "tests/fixtures/stripe/composed/event_payment_intent.succeeded.json";
const PAGE1: &str = "tests/fixtures/stripe/composed/line_items_page1_has_more.json";
const PAGE2: &str = "tests/fixtures/stripe/composed/line_items_page2_last.json";
const AT: &str = "2026-11-29T01:30:00Z";

fn read(path: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn fixture_event(path: &str) -> Event {
    Event::parse(&read(path)).expect("fixture is an event")
}

fn fixture_items() -> Vec<LineItem> {
    [PAGE1, PAGE2]
        .iter()
        .flat_map(|page| {
            let page: Value = serde_json::from_slice(&read(page)).expect("page is JSON");
            page["data"]
                .as_array()
                .expect("page has data")
                .iter()
                .map(line_item)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The composed paid event with its session edited by `edit`.
fn edited(edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Event {
    let mut raw: Value = serde_json::from_slice(&read(PAID)).expect("fixture is JSON");
    edit(
        raw["data"]["object"]
            .as_object_mut()
            .expect("session is an object"),
    );
    Event::parse(&serde_json::to_vec(&raw).expect("serializes")).expect("still an event")
}

fn blank_address() -> Address {
    Address::default()
}

#[track_caller]
fn check(event: &Event, expect: Order) {
    let record = order(event, "paid-orders", expect.line_items.clone(), AT).expect("an order");
    assert_eq!(record.id, format!("{}:paid-orders", event.id));
    assert_eq!(record.kind, "order");
    // An order route's event is parsed keeping only what `order` reads:
    // the record is the same, byte for byte.
    let mut keep = Event::keep();
    keep_order(&mut keep);
    let body = serde_json::to_vec(&event.raw).expect("serializes");
    let pruned = Event::parse_keeping(&body, &keep).expect("an event");
    let again = order(&pruned, "paid-orders", expect.line_items.clone(), AT).expect("an order");
    assert_eq!(again.encode(), record.encode());
    match record.body {
        RecordBody::Order(got) => assert_eq!(*got, expect),
        RecordBody::Event { .. } => panic!("an event record"),
    }
}

fn paid_order() -> Order {
    Order {
        checkout_session: "cs_test_a1YS1URlnyQCN5fUUduORoQ7Pw41PJqDWkIVQCpJPqkfIhd6tVY8XB1OLY"
            .to_owned(),
        payment_intent: Some("pi_1PgafyB7WZ01zgkWSjxsAJo3".to_owned()),
        payment_status: Some("paid".to_owned()),
        customer: Customer {
            email: Some("example@example.com".to_owned()),
            address: Some(blank_address()),
            ..Customer::default()
        },
        shipping: Some(Shipping {
            name: Some("name".to_owned()),
            phone: None,
            address: Some(blank_address()),
        }),
        amount_subtotal: Some(5198),
        amount_total: Some(5198),
        currency: Some("usd".to_owned()),
        metadata: json!({}),
        client_reference_id: None,
        line_items: fixture_items(),
    }
}

#[test]
fn orders_from_session_shapes() {
    check(&fixture_event(PAID), paid_order());

    check(
        &fixture_event(ASYNC),
        Order {
            checkout_session: "cs_test_composed_async_sepa_debit".to_owned(),
            payment_intent: Some("pi_composed_async_sepa_debit".to_owned()),
            payment_status: Some("unpaid".to_owned()),
            amount_subtotal: Some(3000),
            amount_total: Some(3000),
            currency: Some("eur".to_owned()),
            line_items: vec![],
            ..paid_order()
        },
    );

    // 2022-08-01 .. basil: `shipping_details` at the top, with a phone-less
    // address; a filled customer; an expanded payment intent; metadata.
    let address = json!({"city": "San Francisco", "country": "US", "line1": "510 Townsend St",
        "line2": null, "postal_code": "94103", "state": "CA"});
    let event = edited(|s| {
        s.remove("collected_information");
        s.insert(
            "shipping_details".into(),
            json!({"address": address, "name": "Jenny Rosen"}),
        );
        s.insert(
            "customer_details".into(),
            json!({"address": address, "email": "jenny@example.com", "name": "Jenny Rosen",
                "phone": "+14155550100", "tax_exempt": "none", "tax_ids": []}),
        );
        s.insert(
            "payment_intent".into(),
            json!({"id": "pi_expanded", "object": "payment_intent"}),
        );
        s.insert("metadata".into(), json!({"channel": "web"}));
        s.insert("client_reference_id".into(), json!("cart_42"));
    });
    let filled = Address {
        line1: Some("510 Townsend St".to_owned()),
        line2: None,
        city: Some("San Francisco".to_owned()),
        state: Some("CA".to_owned()),
        postal_code: Some("94103".to_owned()),
        country: Some("US".to_owned()),
    };
    check(
        &event,
        Order {
            payment_intent: Some("pi_expanded".to_owned()),
            customer: Customer {
                name: Some("Jenny Rosen".to_owned()),
                email: Some("jenny@example.com".to_owned()),
                phone: Some("+14155550100".to_owned()),
                address: Some(filled.clone()),
            },
            shipping: Some(Shipping {
                name: Some("Jenny Rosen".to_owned()),
                phone: None,
                address: Some(filled.clone()),
            }),
            metadata: json!({"channel": "web"}),
            client_reference_id: Some("cart_42".to_owned()),
            ..paid_order()
        },
    );

    // Before 2022-08-01: `shipping` with a phone; no customer details but
    // `customer_email`; no payment intent; no metadata.
    let event = edited(|s| {
        s.remove("collected_information");
        s.remove("metadata");
        s.insert(
            "shipping".into(),
            json!({"address": address, "name": "Jenny Rosen", "phone": "+14155550100"}),
        );
        s.insert("customer_details".into(), Value::Null);
        s.insert("customer_email".into(), json!("old@example.com"));
        s.insert("payment_intent".into(), Value::Null);
    });
    check(
        &event,
        Order {
            payment_intent: None,
            customer: Customer {
                email: Some("old@example.com".to_owned()),
                ..Customer::default()
            },
            shipping: Some(Shipping {
                name: Some("Jenny Rosen".to_owned()),
                phone: Some("+14155550100".to_owned()),
                address: Some(filled),
            }),
            metadata: json!({}),
            ..paid_order()
        },
    );

    // No shipping collected at all.
    let event = edited(|s| {
        s.insert(
            "collected_information".into(),
            json!({"shipping_details": null}),
        );
    });
    check(
        &event,
        Order {
            shipping: None,
            ..paid_order()
        },
    );
}

#[test]
fn a_payment_intent_is_not_an_order() {
    let event = fixture_event(PI);
    assert_eq!(session_id(&event), None);
    let err = order(&event, "paid-orders", vec![], AT).expect_err("not a session");
    assert_eq!(
        err.to_string(),
        "route `paid-orders` emits orders but event `evt_composed_pi_succeeded` \
             (`payment_intent.succeeded`) carries a `payment_intent`, not a Checkout Session: \
             use `emit: event`"
    );
}

#[test]
fn line_items_expanded_or_not() {
    let items = fixture_items();
    assert_eq!(
        items[0],
        LineItem {
            id: "li_1Pgc73B7WZ01zgkWx8kcmZPK".to_owned(),
            product: Some("myproduct".to_owned()),
            product_id: Some("prod_QXg1hqf4jFNsqG".to_owned()),
            price_id: Some("price_1PgafmB7WZ01zgkW02Hf9z6c".to_owned()),
            description: Some("myproduct".to_owned()),
            unit_amount: Some(1500),
            currency: Some("usd".to_owned()),
            quantity: Some(2),
            amount_subtotal: Some(3000),
            amount_discount: Some(0),
            amount_tax: Some(0),
            amount_total: Some(3000),
        }
    );
    assert_eq!(items[1].product.as_deref(), Some("T-shirt"));
    // A page parsed keeping only what `line_item` reads gives the same items.
    let pruned: Vec<LineItem> = [PAGE1, PAGE2]
        .iter()
        .flat_map(|page| {
            let page = line_items_page().parse(&read(page)).expect("page is JSON");
            page["data"]
                .as_array()
                .expect("page has data")
                .iter()
                .map(line_item)
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(pruned, items);

    // Not expanded (the API reference example): the id only, no name.
    let raw = json!({"id": "li_1", "object": "item", "description": "T-shirt",
        "price": {"id": "price_1", "product": "prod_1", "unit_amount": null,
            "currency": "eur"}, "quantity": 1});
    let item = line_item(&raw);
    assert_eq!(
        (
            item.product,
            item.product_id.as_deref(),
            item.unit_amount,
            item.currency.as_deref()
        ),
        (None, Some("prod_1"), None, Some("eur"))
    );
}

#[test]
fn serialized_field_names() {
    let record = order(&fixture_event(PAID), "paid-orders", fixture_items(), AT).expect("order");
    let encoded = record.encode();
    assert_eq!(encoded.id, "evt_composed_cs_completed_paid:paid-orders");
    assert!(!encoded.body.contains(&b'\n'), "compact JSON");
    let json: Value = serde_json::from_slice(&encoded.body).expect("JSON");
    let keys = |v: &Value| {
        v.as_object()
            .expect("object")
            .keys()
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        keys(&json),
        [
            "id",
            "kind",
            "route",
            "event_id",
            "event_type",
            "event_created",
            "livemode",
            "received_at",
            "checkout_session",
            "payment_intent",
            "payment_status",
            "customer",
            "shipping",
            "amount_subtotal",
            "amount_total",
            "currency",
            "metadata",
            "client_reference_id",
            "line_items",
        ]
    );
    assert_eq!(
        keys(&json["customer"]),
        ["name", "email", "phone", "address"]
    );
    assert_eq!(
        keys(&json["customer"]["address"]),
        ["line1", "line2", "city", "state", "postal_code", "country"]
    );
    assert_eq!(keys(&json["shipping"]), ["name", "phone", "address"]);
    assert_eq!(
        keys(&json["line_items"][1]),
        [
            "id",
            "product",
            "product_id",
            "price_id",
            "description",
            "unit_amount",
            "currency",
            "quantity",
            "amount_subtotal",
            "amount_discount",
            "amount_tax",
            "amount_total",
        ]
    );
    assert_eq!(json["kind"], "order");
    assert_eq!(json["event_created"], 1721954100);
    assert_eq!(json["received_at"], AT);

    let raw = read(PAID);
    let passed = event(&fixture_event(PAID), "audit", AT).encode();
    let json: Value = serde_json::from_slice(&passed.body).expect("JSON");
    assert_eq!(json["kind"], "event");
    assert_eq!(json["id"], "evt_composed_cs_completed_paid:audit");
    assert_eq!(
        json["event"],
        serde_json::from_slice::<Value>(&raw).expect("JSON")
    );
    assert_eq!(
        keys(&json["event"]),
        keys(&serde_json::from_slice(&raw).expect("JSON"))
    );
}

#[test]
fn received_at_format() {
    assert_eq!(received_at(1_795_915_800_123), "2026-11-29T01:30:00Z");
    let now = received_at(crate::clock::now_ms());
    assert!(now.len() == 20 && now.ends_with('Z'), "{now}");
}
