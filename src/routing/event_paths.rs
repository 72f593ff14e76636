//! The paths a `when` condition can read in a Stripe event, and the `check`
//! warnings for paths that no event has: the keys every event has at its top
//! level, and the usual fields of the objects routes read, to say
//! `data.object.` was left out.
//!
//! Like the event types, it only warns: under `data.object` each object type
//! has its own fields and Stripe adds more over time, so nothing there is
//! judged; only a path whose first key is not an event's can be said never
//! to be there.

use serde_json::json;

use crate::config::{Config, ConfigProblem};
use crate::routing::event_types::edit_distance;

/// The keys of a Stripe event object, as its API reference lists them
/// (`account` and `context` only on Connect and event-destination events).
pub const EVENT_KEYS: &[&str] = &[
    "account",
    "api_version",
    "context",
    "created",
    "data",
    "id",
    "livemode",
    "object",
    "pending_webhooks",
    "request",
    "type",
];

/// Top-level keys that hold one value (a string, a number), never fields.
const SINGLE_VALUES: &[&str] = &[
    "account",
    "api_version",
    "context",
    "created",
    "id",
    "livemode",
    "object",
    "pending_webhooks",
    "type",
];

/// The keys of `data` and of `request`.
const DATA_KEYS: &[&str] = &["object", "previous_attributes"];
const REQUEST_KEYS: &[&str] = &["id", "idempotency_key"];

/// Fields of the objects routes most often read (Checkout Session,
/// PaymentIntent, Charge, Invoice), not also an event's own: a path starting
/// with one of them had `data.object.` left out. A small list is enough: it
/// only chooses the suggestion.
#[rustfmt::skip]
const OBJECT_FIELDS: &[&str] = &[
    // Checkout Session
    "after_expiration", "allow_promotion_codes", "amount_subtotal", "amount_total",
    "automatic_tax", "billing_address_collection", "cancel_url", "client_reference_id",
    "consent", "currency", "custom_fields", "customer", "customer_creation",
    "customer_details", "customer_email", "discounts", "expires_at", "invoice", "line_items",
    "locale", "metadata", "mode", "payment_intent", "payment_link", "payment_method_types",
    "payment_status", "phone_number_collection", "recovered_from", "setup_intent",
    "shipping_address_collection", "shipping_cost", "shipping_details", "shipping_options",
    "status", "submit_type", "subscription", "success_url", "total_details", "ui_mode", "url",
    // PaymentIntent
    "amount", "amount_capturable", "amount_received", "application", "canceled_at",
    "cancellation_reason", "capture_method", "confirmation_method", "description",
    "last_payment_error", "latest_charge", "next_action", "on_behalf_of", "payment_method",
    "receipt_email", "review", "setup_future_usage", "shipping", "statement_descriptor",
    "transfer_data", "transfer_group",
    // Charge
    "amount_captured", "amount_refunded", "balance_transaction", "billing_details", "captured",
    "disputed", "failure_code", "failure_message", "outcome", "paid", "payment_method_details",
    "receipt_url", "refunded", "refunds",
    // Invoice
    "amount_due", "amount_paid", "amount_remaining", "billing_reason", "customer_name",
    "hosted_invoice_url", "lines", "number", "period_end", "period_start", "subtotal", "total",
];

/// Why no Stripe event has `path` (a `when` key other than `type` and
/// `payment_status`) and what was likely meant; `None` when an event can
/// have it.
pub fn missing_path(path: &str) -> Option<(String, String)> {
    let (root, rest) = match path.split_once('.') {
        Some((root, rest)) => (root, Some(rest)),
        None => (path, None),
    };
    let under_object = "the fields of the object the event is about are under `data.object.`";
    if EVENT_KEYS.contains(&root) {
        let rest = rest?;
        let second = rest.split('.').next().unwrap_or(rest);
        let (why, advice) = match root {
            "data" if !DATA_KEYS.contains(&second) => (
                "an event's `data` holds only `object` and `previous_attributes`".to_owned(),
                format!("did you mean `data.object.{rest}`?"),
            ),
            "request" if !REQUEST_KEYS.contains(&second) => (
                "an event's `request` holds only `id` and `idempotency_key`".to_owned(),
                under_object.to_owned(),
            ),
            "object" => (
                "an event's `object` is the text `event`, with no fields".to_owned(),
                format!("did you mean `data.{path}`?"),
            ),
            _ if SINGLE_VALUES.contains(&root) => (
                format!("an event's `{root}` is a single value, with no fields"),
                under_object.to_owned(),
            ),
            _ => return None,
        };
        return Some((why, advice));
    }
    let advice = if OBJECT_FIELDS.contains(&root) {
        format!("did you mean `data.object.{path}`?")
    } else if let Some(key) = EVENT_KEYS
        .iter()
        .find(|key| edit_distance(root, key) <= (root.chars().count() / 4).max(1))
    {
        let fixed = match rest {
            Some(rest) => format!("{key}.{rest}"),
            None => (*key).to_owned(),
        };
        format!("did you mean `{fixed}`?")
    } else {
        format!("{under_object}, e.g. `data.object.{path}`")
    };
    let why = format!(
        "no Stripe event has a top-level `{root}` (an event has {})",
        EVENT_KEYS.join(", ")
    );
    Some((why, advice))
}

/// One warning per `when` path that no Stripe event has, at the
/// condition's key. Such a path is always missing, so its condition never
/// holds (or, `{exists: false}`, always does).
pub fn route_warnings(config: &Config) -> Vec<ConfigProblem> {
    let mut warnings = Vec::new();
    for route in &config.routes {
        for (index, (key, value)) in route.when.iter().enumerate() {
            if matches!(key.as_str(), "type" | "payment_status") {
                continue;
            }
            let Some((why, advice)) = missing_path(key) else {
                continue;
            };
            let effect = if *value == json!({ "exists": false }) {
                "so this condition holds for every event"
            } else {
                "so this condition never holds and the route never fires"
            };
            let place = route
                .when_places
                .get(index)
                .map_or(&route.place, |p| &p.key);
            warnings.push(ConfigProblem {
                place: place.clone(),
                message: format!(
                    "route `{}`: condition `{key}`: {why}, {effect}: {advice}",
                    route.name
                ),
            });
        }
    }
    warnings
}

#[cfg(test)]
#[path = "event_paths_tests.rs"]
mod tests;
