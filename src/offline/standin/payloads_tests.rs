//! Tests of the payloads: catalogue ids and totals, events that route.

use super::*;

#[track_caller]
fn check_count(id: &str, want: Option<usize>) {
    assert_eq!(catalogue_count(id), want, "{id}");
}

#[test]
fn catalogue_ids_and_totals() {
    check_count(&catalogue_session_id("x_y", 12), Some(12));
    check_count(&catalogue_session_id("t", 0), Some(0));
    check_count("cs_test_send_t_items", None);
    check_count("cs_test_a1b2", None);
    check_count("cs_test_send_t_-1items", None);
    assert_eq!(items_total(&catalogue_items(3)), 2500 + 2 * 1800 + 3 * 1400);
    assert_eq!(catalogue_items(8), catalogue_items(8));
    let event = payment_intent_event("evt_1", "pi_1", 5198, "usd", 1_721_954_095);
    let body = serde_json::to_vec_pretty(&event).expect("serializes");
    let parsed = crate::event::Event::parse(&body).expect("an event");
    assert_eq!(parsed.kind, "payment_intent.succeeded");
}

#[test]
fn session_events_are_routable_checkout_sessions() {
    let event = checkout_session_event(&SessionEvent::default());
    let body = serde_json::to_vec_pretty(&event).expect("serializes");
    let parsed = crate::event::Event::parse(&body).expect("an event");
    assert_eq!(parsed.kind, "checkout.session.completed");
    assert_eq!(
        crate::routing::record::session_id(&parsed),
        Some(SessionEvent::default().session_id.as_str())
    );
    let order = crate::routing::record::order(&parsed, "r", vec![], "2026-11-29T01:30:00Z")
        .expect("an order");
    let json: Value = serde_json::from_slice(&order.encode().body).expect("JSON");
    assert_eq!(json["customer"]["address"]["city"], "San Francisco");
    assert_eq!(json["shipping"]["name"], "Jenny Rosen");
    assert!((3_000..6_000).contains(&body.len()), "{} bytes", body.len());
}

#[test]
fn any_session_id_gets_a_plausible_cart_of_its_own() {
    let fixture = "cs_test_a1xqqSDtDBmbhXD2cQWVnpCQSjDXnlsMEGNNPQVlEyoyHcKtvt5zLj2lBG";
    assert_eq!(cart_for(fixture), cart_for(fixture));
    for id in [fixture, "cs_test_b", "cs_live_c", "x"] {
        let cart = cart_for(id);
        assert!((1..=4).contains(&cart.len()), "{id}: {}", cart.len());
        assert!(items_total(&cart) > 0);
    }
    let carts: std::collections::HashSet<String> = (0..20)
        .map(|i| serde_json::to_string(&cart_for(&format!("cs_test_{i}"))).unwrap())
        .collect();
    assert!(carts.len() > 3, "ids get different carts");
}
