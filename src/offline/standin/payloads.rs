//! Realistic Stripe payloads: line items and `checkout.session.*` and
//! `payment_intent.succeeded` events shaped like the ones Stripe sends (API
//! version [`API_VERSION`]), so everything downstream sees real shapes; and
//! the catalogue that `send` and the stand-in agree on.

use serde_json::{Value, json};

use crate::routing::record::Address;

/// The API version the stand-in answers with when the request pins none.
pub const API_VERSION: &str = "2026-07-29.dahlia";

/// A Checkout Session line item (`object: "item"`) as
/// `GET /v1/checkout/sessions/{id}/line_items?expand[]=data.price.product`
/// returns it: a one-time price with its product expanded.
pub fn line_item_fixture(
    id: &str,
    product_id: &str,
    product_name: &str,
    price_id: &str,
    unit_amount: i64,
    quantity: i64,
    currency: &str,
) -> Value {
    let amount = unit_amount.saturating_mul(quantity);
    let created = 1_721_948_530;
    json!({
        "amount_discount": 0,
        "amount_subtotal": amount,
        "amount_tax": 0,
        "amount_total": amount,
        "currency": currency,
        "description": product_name,
        "id": id,
        "object": "item",
        "price": {
            "active": true,
            "billing_scheme": "per_unit",
            "created": created,
            "currency": currency,
            "custom_unit_amount": null,
            "id": price_id,
            "livemode": false,
            "lookup_key": null,
            "metadata": {},
            "nickname": null,
            "object": "price",
            "product": {
                "active": true,
                "created": created,
                "default_price": price_id,
                "description": null,
                "id": product_id,
                "images": [],
                "livemode": false,
                "marketing_features": [],
                "metadata": {},
                "name": product_name,
                "object": "product",
                "package_dimensions": null,
                "shippable": null,
                "statement_descriptor": null,
                "tax_code": null,
                "unit_label": null,
                "updated": created,
                "url": null,
                "type": "good"
            },
            "recurring": null,
            "tax_behavior": "unspecified",
            "tiers_mode": null,
            "transform_quantity": null,
            "type": "one_time",
            "unit_amount": unit_amount,
            "unit_amount_decimal": unit_amount.to_string()
        },
        "quantity": quantity,
        "metadata": null,
        "adjustable_quantity": null
    })
}

/// The most items a catalogue session may have: a bound on what one request
/// makes the stand-in build.
pub const CATALOGUE_MAX: usize = 1000;

/// A session id that catalogue mode serves `items` line items for:
/// `cs_test_send_<token>_<items>items`.
pub fn catalogue_session_id(token: &str, items: usize) -> String {
    format!("cs_test_send_{token}_{items}items")
}

/// The count a [`catalogue_session_id`] names, if at most [`CATALOGUE_MAX`].
pub(super) fn catalogue_count(session_id: &str) -> Option<usize> {
    named_count(session_id)?
        .try_into()
        .ok()
        .filter(|n| *n <= CATALOGUE_MAX)
}

/// The count an id of the [`catalogue_session_id`] shape names, however
/// large: one past [`CATALOGUE_MAX`] is refused, not given a cart.
pub(super) fn named_count(session_id: &str) -> Option<u64> {
    let (_, count) = session_id.strip_suffix("items")?.rsplit_once('_')?;
    count.parse().ok()
}

/// `n` deterministic line items in USD: a few shop products in turn, with
/// quantities 1 to 3. The same `n` always gives the same items and totals.
pub fn catalogue_items(n: usize) -> Vec<Value> {
    shop_items(n, 0)
}

/// A plausible cart for any session id that names no count (a fixture's, a
/// real one pasted from the Dashboard): one to four items, chosen from the
/// id alone, so the same id always gets the same cart.
pub(super) fn cart_for(session_id: &str) -> Vec<Value> {
    // FNV-1a: stable across builds and platforms, unlike std's hasher.
    let hash = session_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let n = usize::try_from(hash % 4).unwrap_or(0) + 1;
    let first = usize::try_from((hash >> 8) % SHOP.len() as u64).unwrap_or(0);
    shop_items(n, first)
}

const SHOP: [(&str, i64); 6] = [
    ("Organic cotton T-shirt", 2500),
    ("Canvas tote bag", 1800),
    ("Ceramic mug", 1400),
    ("Linen tea towel", 1200),
    ("Enamel pin", 700),
    ("Sticker pack", 500),
];

/// `n` items of [`SHOP`], starting at product `first`, quantities 1 to 3.
fn shop_items(n: usize, first: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let product = (first + i) % SHOP.len();
            let (name, unit_amount) = SHOP[product];
            line_item_fixture(
                &format!("li_1Catalogue{i:014}"),
                &format!("prod_Catalogue{product:04}"),
                name,
                &format!("price_1Catalogue{product:010}"),
                unit_amount,
                i64::try_from(i % 3 + 1).unwrap_or(1),
                "usd",
            )
        })
        .collect()
}

/// The sum of the items' `amount_total`: the session's total for them.
pub fn items_total(items: &[Value]) -> i64 {
    items
        .iter()
        .filter_map(|item| item["amount_total"].as_i64())
        .sum()
}

/// A `payment_intent.succeeded` event as Stripe delivers it (API version
/// [`API_VERSION`]) for a card payment of `amount` in `currency`.
pub fn payment_intent_event(
    event_id: &str,
    payment_intent: &str,
    amount: i64,
    currency: &str,
    created: i64,
) -> Value {
    let intent = json!({
        "amount": amount,
        "amount_capturable": 0,
        "amount_details": { "tip": {} },
        "amount_received": amount,
        "application": null,
        "application_fee_amount": null,
        "automatic_payment_methods": { "enabled": true },
        "canceled_at": null,
        "cancellation_reason": null,
        "capture_method": "automatic",
        "client_secret": null,
        "confirmation_method": "automatic",
        "created": created - 5,
        "currency": currency,
        "customer": null,
        "description": null,
        "id": payment_intent,
        "last_payment_error": null,
        "latest_charge": null,
        "livemode": false,
        "metadata": {},
        "next_action": null,
        "object": "payment_intent",
        "on_behalf_of": null,
        "payment_method": null,
        "payment_method_configuration_details": null,
        "payment_method_options": {},
        "payment_method_types": ["card"],
        "processing": null,
        "receipt_email": null,
        "review": null,
        "setup_future_usage": null,
        "shipping": null,
        "statement_descriptor": null,
        "statement_descriptor_suffix": null,
        "status": "succeeded",
        "transfer_data": null,
        "transfer_group": null,
        "source": null,
        "excluded_payment_method_types": null,
        "customer_account": null
    });
    json!({
        "api_version": API_VERSION,
        "created": created,
        "data": { "object": intent },
        "id": event_id,
        "livemode": false,
        "object": "event",
        "pending_webhooks": 1,
        "request": { "id": null, "idempotency_key": null },
        "type": "payment_intent.succeeded"
    })
}

/// The values of a [`checkout_session_event`]. [`Default`] gives a paid
/// `checkout.session.completed` in test mode for Stripe's documentation
/// customer.
#[derive(Debug, Clone)]
pub struct SessionEvent {
    pub event_id: String,
    /// `checkout.session.completed`, `.async_payment_succeeded`,
    /// `.async_payment_failed` or `.expired`.
    pub event_type: String,
    pub session_id: String,
    /// `None` for sessions without one (expired, or not yet confirmed).
    pub payment_intent: Option<String>,
    /// `paid`, `unpaid` or `no_payment_required`.
    pub payment_status: String,
    pub livemode: bool,
    pub customer_name: Option<String>,
    pub customer_email: Option<String>,
    pub customer_phone: Option<String>,
    /// Also used as the shipping address.
    pub customer_address: Address,
    pub amount_total: i64,
    pub currency: String,
    pub client_reference_id: Option<String>,
    pub metadata: Value,
    /// The event's `created`; the session was created 100 s earlier.
    pub created: i64,
}

impl Default for SessionEvent {
    fn default() -> SessionEvent {
        SessionEvent {
            event_id: "evt_1QStandInCheckoutCompleted0".to_owned(),
            event_type: "checkout.session.completed".to_owned(),
            session_id: "cs_test_a1StandInCheckoutSession0000000000000000000000000000000000"
                .to_owned(),
            payment_intent: Some("pi_3QStandInPaymentIntent00".to_owned()),
            payment_status: "paid".to_owned(),
            livemode: false,
            customer_name: Some("Jenny Rosen".to_owned()),
            customer_email: Some("jenny.rosen@example.com".to_owned()),
            customer_phone: None,
            customer_address: Address {
                line1: Some("510 Townsend St".to_owned()),
                line2: None,
                city: Some("San Francisco".to_owned()),
                state: Some("CA".to_owned()),
                postal_code: Some("94103".to_owned()),
                country: Some("US".to_owned()),
            },
            amount_total: 5198,
            currency: "usd".to_owned(),
            client_reference_id: None,
            metadata: json!({}),
            created: 1_721_954_100,
        }
    }
}

/// A `checkout.session.*` event as Stripe delivers it (API version
/// [`API_VERSION`]), about 4 KB once pretty-printed. Stripe sends webhook
/// bodies 2-space pretty-printed; serializing is the caller's job.
pub fn checkout_session_event(e: &SessionEvent) -> Value {
    let created = e.created - 100;
    let status = if e.event_type.ends_with(".expired") {
        "expired"
    } else {
        "complete"
    };
    let payment_method_types = if e.currency == "eur" && e.payment_status != "paid" {
        json!(["sepa_debit"])
    } else {
        json!(["card"])
    };
    let address = json!({
        "city": e.customer_address.city,
        "country": e.customer_address.country,
        "line1": e.customer_address.line1,
        "line2": e.customer_address.line2,
        "postal_code": e.customer_address.postal_code,
        "state": e.customer_address.state
    });
    // Built in parts: one `json!` this large overflows the macro recursion limit.
    let customer_details = json!({
        "address": address,
        "email": e.customer_email,
        "name": e.customer_name,
        "phone": e.customer_phone,
        "tax_exempt": "none",
        "tax_ids": [],
        "business_name": null,
        "individual_name": null
    });
    let invoice_creation = json!({
        "enabled": false,
        "invoice_data": {
            "account_tax_ids": null,
            "custom_fields": null,
            "description": null,
            "footer": null,
            "issuer": null,
            "metadata": {},
            "rendering_options": null
        }
    });
    let collected_information = json!({
        "shipping_details": {
            "address": address,
            "name": e.customer_name
        },
        "business_name": null,
        "individual_name": null
    });
    let automatic_tax = json!({
        "enabled": false,
        "liability": null,
        "status": null,
        "provider": null
    });
    let custom_text = json!({
        "after_submit": null,
        "shipping_address": null,
        "submit": null,
        "terms_of_service_acceptance": null
    });
    let mut session = json!({
        "after_expiration": null,
        "allow_promotion_codes": null,
        "amount_subtotal": e.amount_total,
        "amount_total": e.amount_total,
        "automatic_tax": automatic_tax,
        "billing_address_collection": null,
        "cancel_url": "https://example.com/cancel",
        "client_reference_id": e.client_reference_id,
        "client_secret": null,
        "consent": null,
        "consent_collection": null,
        "created": created,
        "currency": e.currency,
        "custom_fields": [],
        "custom_text": custom_text,
        "customer": null,
        "customer_creation": "if_required",
        "customer_details": customer_details,
        "customer_email": null,
        "expires_at": created + 86_400,
        "id": e.session_id,
        "invoice": null,
        "invoice_creation": invoice_creation,
    });
    let rest = json!({
        "livemode": e.livemode,
        "locale": null,
        "metadata": e.metadata,
        "mode": "payment",
        "object": "checkout.session",
        "payment_intent": e.payment_intent,
        "payment_link": null,
        "payment_method_collection": "if_required",
        "payment_method_configuration_details": null,
        "payment_method_options": {},
        "payment_method_types": payment_method_types,
        "payment_status": e.payment_status,
        "phone_number_collection": {
            "enabled": false
        },
        "recovered_from": null,
        "saved_payment_method_options": null,
        "setup_intent": null,
        "shipping_address_collection": {
            "allowed_countries": [e.customer_address.country.as_deref().unwrap_or("US")]
        },
        "shipping_cost": null,
        "shipping_options": [],
        "status": status,
        "submit_type": null,
        "subscription": null,
        "success_url": "https://example.com/success",
        "total_details": {
            "amount_discount": 0,
            "amount_shipping": 0,
            "amount_tax": 0
        },
        "ui_mode": "hosted",
        "url": null,
        "adaptive_pricing": {
            "enabled": true
        },
        "discounts": [],
        "collected_information": collected_information,
        "permissions": null,
        "wallet_options": null,
        "origin_context": null,
        "currency_conversion": null,
        "customer_account": null,
        "integration_identifier": null,
        "managed_payments": {
            "enabled": false
        }
    });
    if let (Value::Object(session), Value::Object(rest)) = (&mut session, rest) {
        session.extend(rest);
    }
    json!({
        "api_version": API_VERSION,
        "created": e.created,
        "data": {
            "object": session
        },
        "id": e.event_id,
        "livemode": e.livemode,
        "object": "event",
        "pending_webhooks": 1,
        "request": {
            "id": null,
            "idempotency_key": null
        },
        "type": e.event_type
    })
}

#[cfg(test)]
#[path = "payloads_tests.rs"]
mod tests;
