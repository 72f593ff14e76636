//! Records: what sinks receive. Pure builders, no I/O.
//!
//! Every record carries a stable `id` (`<event id>:<route name>`) so a
//! consumer can deduplicate deliveries.

use serde::Serialize;

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
