//! Tests of build errors: each names its route once.

use super::*;

#[test]
fn a_record_error_names_its_route_once() {
    let error = BuildError::Record {
        route: "mixed".to_owned(),
        error: RecordError::NotACheckoutSession {
            route: "mixed".to_owned(),
            event_id: "evt_1".to_owned(),
            event_type: "payment_intent.succeeded".to_owned(),
            object: "payment_intent".to_owned(),
        },
    }
    .for_route("mixed");
    let message = error.to_string();
    assert!(
        message.starts_with("route `mixed` emits orders but event `evt_1`"),
        "{message}"
    );
    assert_eq!(message.matches("route `mixed`").count(), 1, "{message}");
}
