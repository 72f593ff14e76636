//! What both benchmarks build their inputs from: a paid Checkout Session
//! event as Stripe sends it, a page of line items as the Stripe API answers
//! it, and the order record the router makes of them.

use serde_json::Value;

use stripe_router::event::Event;
use stripe_router::offline::standin::{SessionEvent, checkout_session_event, line_item_fixture};
use stripe_router::routing::{line_items, record};

/// The events' `created`, and the signatures' time.
pub const NOW: i64 = 1_721_954_100;

/// A paid `checkout.session.completed`, pretty-printed as Stripe sends it.
pub fn event_body() -> Vec<u8> {
    let event = checkout_session_event(&SessionEvent {
        created: NOW,
        ..SessionEvent::default()
    });
    serde_json::to_vec_pretty(&event).expect("serializes")
}

/// A page of `n` line items as the Stripe API answers it.
pub fn line_items_page(n: i64) -> Vec<u8> {
    let items: Vec<Value> = (0..n)
        .map(|i| {
            line_item_fixture(
                &format!("li_{i:04}"),
                &format!("prod_{i:04}"),
                &format!("Product {i}"),
                &format!("price_{i:04}"),
                1000 + i,
                2,
                "usd",
            )
        })
        .collect();
    let page = serde_json::json!({
        "object": "list",
        "data": items,
        "has_more": false,
        "url": "/v1/checkout/sessions/cs_test_a1/line_items",
    });
    serde_json::to_vec_pretty(&page).expect("a page serializes")
}

/// Three line items, as the Stripe API gives them, read into records.
pub fn three_items() -> Vec<record::LineItem> {
    let page = line_items::read_page(&line_items_page(3), usize::MAX).expect("a page");
    page.data.expect("a list").items
}

/// An order record of [`event_body`] with [`three_items`], encoded as sinks
/// receive it.
pub fn encoded_order() -> stripe_router::sinks::Encoded {
    let event = Event::parse(&event_body()).expect("an event");
    record::order(&event, "paid-orders", three_items(), "2026-11-29T01:30:00Z")
        .expect("an order")
        .encode()
}
