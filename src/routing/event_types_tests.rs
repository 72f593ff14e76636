//! Tests of the known event types: patterns, suggestions and routes that never fire.

use super::*;

#[track_caller]
fn check(pattern: &str, known: bool, suggestion: Option<&str>) {
    assert_eq!(matches_known(pattern), known, "matches_known({pattern:?})");
    if !known {
        assert_eq!(
            closest(pattern).as_deref(),
            suggestion,
            "closest({pattern:?})"
        );
    }
}

#[test]
fn patterns_against_known_types() {
    check("checkout.session.completed", true, None);
    check("checkout.session.*", true, None);
    check("*", true, None);
    check("*.succeeded", true, None);
    check("charge.refund.updated", true, None);
    check("customer.subscription.*", true, None);
    check(
        "checkout.sessions.completed",
        false,
        Some("checkout.session.completed"),
    );
    check(
        "checkout.session.complete",
        false,
        Some("checkout.session.completed"),
    );
    check(
        "paymentintent.succeeded",
        false,
        Some("payment_intent.succeeded"),
    );
    check("checkout.sesion.*", false, Some("checkout.session.*"));
    check("order.created", false, None);
    check("shop.thing.happened", false, None);
}

#[test]
fn the_list_is_sorted_and_unique() {
    assert!(KNOWN.windows(2).all(|w| w[0] < w[1]));
    assert!(KNOWN.len() > 200, "{}", KNOWN.len());
}

#[track_caller]
fn check_distance(a: &str, b: &str, want: usize) {
    assert_eq!(edit_distance(a, b), want, "{a:?} vs {b:?}");
}

#[test]
fn edit_distances() {
    check_distance("", "", 0);
    check_distance("abc", "", 3);
    check_distance("kitten", "sitting", 3);
    check_distance("checkout.sessions", "checkout.session", 1);
}

#[test]
fn routes_that_never_fire_are_warned_about() {
    let yaml = r#"
sinks:
  out: { type: stdout }
routes:
  - name: typo
    when: { type: [checkout.session.completed, checkout.sessions.completed] }
    emit: event
    to: [out]
  - name: fine
    when: { type: "checkout.session.*" }
    emit: event
    to: [out]
  - name: negated
    when: { type: { not: nothing.here } }
    emit: event
    to: [out]
"#;
    let env = crate::config::env::Env::empty();
    let config =
        Config::parse(yaml, std::path::Path::new("routes.yaml"), &env).expect("a valid config");
    let warnings = route_warnings(&config);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let text = warnings[0].to_string();
    assert!(text.starts_with("routes.yaml:6:"), "{text}");
    assert!(
        text.contains("`typo`") && text.contains("did you mean `checkout.session.completed`?"),
        "{text}"
    );
}
