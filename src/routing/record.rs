//! Records: what sinks receive. Pure builders, no I/O.
//!
//! Every record carries a stable `id` (`<event id>:<route name>`) so a
//! consumer can deduplicate deliveries. An order record is read from the
//! Checkout Session the event carries; the session's shape varies with the
//! event's API version (where shipping details live, whether
//! `payment_intent` is expanded), and every such variant is accepted here.

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;

use crate::ingest::event::Event;
use crate::sinks::Encoded;

/// The fields every record has, then its kind's own.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    pub id: String,
    pub kind: &'static str,
    pub route: String,
    pub event_id: String,
    pub event_type: String,
    pub event_created: i64,
    pub livemode: bool,
    /// RFC 3339, UTC.
    pub received_at: String,
    #[serde(flatten)]
    pub body: RecordBody,
}

#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum RecordBody {
    Order(Box<Order>),
    Event { event: serde_json::Value },
}

/// SPEC §5 order fields.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Order {
    pub checkout_session: String,
    pub payment_intent: Option<String>,
    pub payment_status: Option<String>,
    pub customer: Customer,
    pub shipping: Option<Shipping>,
    pub amount_subtotal: Option<i64>,
    pub amount_total: Option<i64>,
    pub currency: Option<String>,
    pub metadata: serde_json::Value,
    pub client_reference_id: Option<String>,
    pub line_items: Vec<LineItem>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct Customer {
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub address: Option<Address>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct Shipping {
    pub name: Option<String>,
    pub phone: Option<String>,
    pub address: Option<Address>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct Address {
    pub line1: Option<String>,
    pub line2: Option<String>,
    pub city: Option<String>,
    pub state: Option<String>,
    pub postal_code: Option<String>,
    pub country: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LineItem {
    pub id: String,
    /// The product's name.
    pub product: Option<String>,
    pub product_id: Option<String>,
    pub price_id: Option<String>,
    pub description: Option<String>,
    pub unit_amount: Option<i64>,
    pub currency: Option<String>,
    pub quantity: Option<i64>,
    pub amount_subtotal: Option<i64>,
    pub amount_discount: Option<i64>,
    pub amount_tax: Option<i64>,
    pub amount_total: Option<i64>,
}

/// An event that a route asked to turn into an order but that cannot be one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error(
        "route `{route}` emits orders but event `{event_id}` (`{event_type}`) carries a \
         `{object}`, not a Checkout Session: use `emit: event`"
    )]
    NotACheckoutSession {
        route: String,
        event_id: String,
        event_type: String,
        /// The `data.object.object` found, `nothing` when absent.
        object: String,
    },
}

/// The Checkout Session id an order for this event would need line items
/// for; `None` when the event is not about a Checkout Session.
pub fn session_id(event: &Event) -> Option<&str> {
    let object = checkout_session(event)?;
    object.get("id")?.as_str().filter(|id| !id.is_empty())
}

/// Builds the order record of a Checkout Session event. `line_items` are the
/// session's items, every page, as [`crate::routing::enrich`] fetched them.
pub fn order(
    event: &Event,
    route: &str,
    line_items: Vec<LineItem>,
    received_at: &str,
) -> Result<Record, RecordError> {
    let (Some(session), Some(id)) = (checkout_session(event), session_id(event)) else {
        let object = event
            .object()
            .and_then(|o| o.get("object"))
            .and_then(Value::as_str)
            .unwrap_or("nothing");
        return Err(RecordError::NotACheckoutSession {
            route: route.to_owned(),
            event_id: event.id.clone(),
            event_type: event.kind.clone(),
            object: object.to_owned(),
        });
    };
    let order = Order {
        checkout_session: id.to_owned(),
        payment_intent: payment_intent(session.get("payment_intent")),
        payment_status: text(session, "payment_status"),
        customer: customer(session),
        shipping: shipping(session),
        amount_subtotal: int(session, "amount_subtotal"),
        amount_total: int(session, "amount_total"),
        currency: text(session, "currency"),
        metadata: match session.get("metadata") {
            Some(m @ Value::Object(_)) => m.clone(),
            _ => Value::Object(serde_json::Map::new()),
        },
        client_reference_id: text(session, "client_reference_id"),
        line_items,
    };
    Ok(envelope(
        event,
        route,
        "order",
        received_at,
        RecordBody::Order(Box::new(order)),
    ))
}

/// Builds the pass-through record of any event: the event exactly as
/// received, in the common envelope.
pub fn event(event: &Event, route: &str, received_at: &str) -> Record {
    let body = RecordBody::Event {
        event: event.raw.clone(),
    };
    envelope(event, route, "event", received_at, body)
}

/// Reads one Checkout Session line item (`object: "item"`). `price.product`
/// may be expanded (a product object: name and id) or not (an id only: the
/// name is then unknown, and `description` is not taken for it).
pub fn line_item(raw: &Value) -> LineItem {
    let price = raw.get("price").filter(|p| p.is_object());
    let (product, product_id) = match price.and_then(|p| p.get("product")) {
        Some(Value::String(id)) => (None, Some(id.clone())),
        Some(product @ Value::Object(_)) => (text(product, "name"), text(product, "id")),
        _ => (None, None),
    };
    LineItem {
        id: text(raw, "id").unwrap_or_default(),
        product,
        product_id,
        price_id: price.and_then(|p| text(p, "id")),
        description: text(raw, "description"),
        // Null for custom and decimal-only prices, whose amount is not a
        // whole number of minor units.
        unit_amount: price.and_then(|p| int(p, "unit_amount")),
        currency: text(raw, "currency").or_else(|| price.and_then(|p| text(p, "currency"))),
        quantity: int(raw, "quantity"),
        amount_subtotal: int(raw, "amount_subtotal"),
        amount_discount: int(raw, "amount_discount"),
        amount_tax: int(raw, "amount_tax"),
        amount_total: int(raw, "amount_total"),
    }
}

/// `received_at` for a time in unix milliseconds (as the journal keeps it):
/// RFC 3339, UTC, whole seconds.
pub fn received_at(unix_ms: i64) -> String {
    crate::clock::rfc3339(unix_ms)
}

/// The stable id of the record an event makes for a route.
pub fn record_id(event_id: &str, route: &str) -> String {
    format!("{event_id}:{route}")
}

impl Record {
    /// Serializes the record once, as compact JSON, for every sink and every
    /// attempt.
    pub fn encode(&self) -> Encoded {
        // Serializing cannot fail: every map key is a string and a
        // `serde_json::Value` holds no non-finite floats.
        let body = serde_json::to_vec(self).expect("a record serializes to JSON");
        Encoded {
            id: self.id.clone(),
            body: Bytes::from(body),
        }
    }
}

fn envelope(
    event: &Event,
    route: &str,
    kind: &'static str,
    received_at: &str,
    body: RecordBody,
) -> Record {
    Record {
        id: record_id(&event.id, route),
        kind,
        route: route.to_owned(),
        event_id: event.id.clone(),
        event_type: event.kind.clone(),
        event_created: event.created,
        livemode: event.livemode,
        received_at: received_at.to_owned(),
        body,
    }
}

fn checkout_session(event: &Event) -> Option<&Value> {
    event
        .object()
        .filter(|o| o.get("object").and_then(Value::as_str) == Some("checkout.session"))
}

/// `payment_intent` is an id, or the whole object when the sender expanded
/// it, or null for sessions that have none (yet).
fn payment_intent(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(id) => Some(id.clone()),
        object @ Value::Object(_) => text(object, "id"),
        _ => None,
    }
}

fn customer(session: &Value) -> Customer {
    let details = session.get("customer_details").filter(|d| d.is_object());
    let from_details = |key| details.and_then(|d| text(d, key));
    Customer {
        name: from_details("name"),
        email: from_details("email").or_else(|| text(session, "customer_email")),
        phone: from_details("phone"),
        address: details.and_then(|d| address(d.get("address"))),
    }
}

/// Shipping details moved twice across API versions: `shipping` (before
/// 2022-08-01), `shipping_details` (until basil), then
/// `collected_information.shipping_details`. The newest present wins.
fn shipping(session: &Value) -> Option<Shipping> {
    let details = session
        .get("collected_information")
        .and_then(|c| c.get("shipping_details"))
        .filter(|d| d.is_object())
        .or_else(|| session.get("shipping_details").filter(|d| d.is_object()))
        .or_else(|| session.get("shipping").filter(|d| d.is_object()))?;
    Some(Shipping {
        name: text(details, "name"),
        phone: text(details, "phone"),
        address: address(details.get("address")),
    })
}

fn address(value: Option<&Value>) -> Option<Address> {
    let a = value.filter(|a| a.is_object())?;
    Some(Address {
        line1: text(a, "line1"),
        line2: text(a, "line2"),
        city: text(a, "city"),
        state: text(a, "state"),
        postal_code: text(a, "postal_code"),
        country: text(a, "country"),
    })
}

fn text(object: &Value, key: &str) -> Option<String> {
    object.get(key)?.as_str().map(str::to_owned)
}

fn int(object: &Value, key: &str) -> Option<i64> {
    object.get(key)?.as_i64()
}

#[cfg(test)]
mod tests {
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
        let record =
            order(&fixture_event(PAID), "paid-orders", fixture_items(), AT).expect("order");
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
}
