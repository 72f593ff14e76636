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

use crate::event::Event;
use crate::pruned::Keep;
use crate::sinks::Encoded;

/// What [`order`] reads of the Checkout Session (`data.object`): an order
/// route's event is parsed keeping these ([`keep_order`]), so a field read
/// here must be listed.
const SESSION_FIELDS: &[&str] = &[
    "object",
    "id",
    "payment_intent",
    "payment_status",
    "customer_details",
    "customer_email",
    "collected_information.shipping_details",
    "shipping_details",
    "shipping",
    "amount_subtotal",
    "amount_total",
    "currency",
    "metadata",
    "client_reference_id",
];

/// What [`line_item`] reads of a line item.
#[cfg(test)]
const LINE_ITEM_FIELDS: &[&str] = &[
    "id",
    "description",
    "currency",
    "quantity",
    "amount_subtotal",
    "amount_discount",
    "amount_tax",
    "amount_total",
    "price.id",
    "price.unit_amount",
    "price.currency",
    "price.product.id",
    "price.product.name",
];

/// Adds to `keep` what [`order`] reads of an event.
pub fn keep_order(keep: &mut Keep) {
    let session = keep.at("data.object");
    for field in SESSION_FIELDS {
        session.path(field);
    }
}

/// What a page of line items (a list object) is parsed keeping to read it
/// with [`line_item`]: `has_more` and, of each item, what that reads. The
/// router reads pages with [`crate::routing::line_items`] instead, which
/// builds no tree; this is the reference its tests compare it with.
#[cfg(test)]
pub fn line_items_page() -> Keep {
    let mut item = Keep::default();
    for field in LINE_ITEM_FIELDS {
        item.path(field);
    }
    let mut page = Keep::default();
    page.path("has_more").at("data").each(item);
    page
}

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

/// Reads one Checkout Session line item (`object: "item"`), whole or as
/// [`line_items_page`] keeps it. `price.product`
/// may be expanded (a product object: name and id) or not (an id only: the
/// name is then unknown, and `description` is not taken for it). The
/// reference for [`crate::routing::line_items`], which reads the same
/// fields without a tree.
#[cfg(test)]
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
#[path = "record_tests.rs"]
mod tests;
