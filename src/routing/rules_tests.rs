//! Tests of the rules: globs, keys, values and operators, missing paths, compile errors.

use super::*;
use serde_json::json;

#[track_caller]
fn check_glob(pattern: &str, text: &str, want: bool) {
    assert_eq!(
        Glob::new(pattern).matches(text),
        want,
        "glob {pattern:?} on {text:?}"
    );
}

#[test]
fn globs() {
    check_glob(
        "checkout.session.completed",
        "checkout.session.completed",
        true,
    );
    check_glob(
        "checkout.session.completed",
        "checkout.session.completed.x",
        false,
    );
    check_glob("checkout.session.completed", "checkout.session", false);
    check_glob("checkout.session.*", "checkout.session.completed", true);
    check_glob(
        "checkout.session.*",
        "checkout.session.async_payment_succeeded",
        true,
    );
    check_glob("checkout.session.*", "checkout.session.", true);
    check_glob("checkout.session.*", "checkout.sessions.completed", false);
    check_glob("checkout.session.*", "payment_intent.succeeded", false);
    check_glob("*", "", true);
    check_glob("*", "anything.at.all", true);
    check_glob("*.succeeded", "payment_intent.succeeded", true);
    check_glob(
        "*.succeeded",
        "checkout.session.async_payment_succeeded",
        false,
    );
    check_glob(
        "*succeeded",
        "checkout.session.async_payment_succeeded",
        true,
    );
    check_glob("checkout.*.completed", "checkout.session.completed", true);
    check_glob("checkout.*.completed", "checkout.a.b.completed", true);
    check_glob("checkout.*.completed", "checkout.completed", false);
    check_glob("a*a", "a", false);
    check_glob("a*a", "aa", true);
    check_glob("a**b", "ab", true);
    check_glob("*a*b*", "xxbxxaxx", false);
    check_glob("*a*b*", "xxaxxbxx", true);
    check_glob("", "", true);
    // Many stars over a long near-miss: must finish at once.
    let text = "a".repeat(10_000);
    check_glob(&format!("{}b", "*a".repeat(50)), &text, false);
}

/// A Checkout Session event, shaped as Stripe sends it (trimmed).
fn event() -> Value {
    json!({
        "id": "evt_1PgZ3kLkdIwHu7ixQ0K2fYtS",
        "object": "event",
        "type": "checkout.session.completed",
        "livemode": false,
        "created": 1721954100,
        "data": {
            "object": {
                "id": "cs_test_a1b2",
                "object": "checkout.session",
                "amount_total": 3000,
                "currency": "eur",
                "customer_details": { "email": "jenny@example.com", "phone": null },
                "metadata": { "channel": "web", "order_ref": "1042" },
                "payment_method_types": ["card", "sepa_debit"],
                "payment_status": "paid",
                "shipping_options": [{ "shipping_amount": 500 }],
                "total_details": { "amount_discount": 0.0 }
            }
        }
    })
}

fn when(conditions: Value) -> Result<When, Vec<String>> {
    let pairs: Vec<(String, Value)> = conditions
        .as_object()
        .expect("conditions are a map")
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    When::compile(&pairs)
}

#[track_caller]
fn check(conditions: Value, want: bool) {
    let compiled = when(conditions.clone()).unwrap_or_else(|e| panic!("{conditions}: {e:?}"));
    assert_eq!(compiled.matches(&event()), want, "when {conditions}");
}

#[test]
fn keys() {
    check(json!({}), true);
    check(json!({ "type": "checkout.session.completed" }), true);
    check(json!({ "type": "checkout.session.*" }), true);
    check(json!({ "type": "*" }), true);
    check(json!({ "type": "payment_intent.*" }), false);
    check(
        json!({ "type": ["invoice.paid", "checkout.session.completed"] }),
        true,
    );
    check(
        json!({ "type": ["invoice.paid", "*.async_payment_succeeded"] }),
        false,
    );
    check(json!({ "payment_status": "paid" }), true);
    check(json!({ "payment_status": "unpaid" }), false);
    check(json!({ "livemode": false }), true);
    check(json!({ "livemode": true }), false);
    check(json!({ "data.object.currency": "eur" }), true);
    check(json!({ "data.object.metadata.channel": "web" }), true);
    check(json!({ "data.object.metadata.channel": "pos" }), false);
    check(
        json!({ "data.object.payment_method_types.1": "sepa_debit" }),
        true,
    );
    check(
        json!({ "data.object.payment_method_types.2": { "exists": false } }),
        true,
    );
    check(
        json!({ "data.object.shipping_options.0.shipping_amount": 500 }),
        true,
    );
    // Every condition must hold.
    check(
        json!({ "type": "checkout.session.completed", "payment_status": "unpaid" }),
        false,
    );
    check(
        json!({ "type": "invoice.paid", "payment_status": "paid" }),
        false,
    );
    check(
        json!({ "type": "checkout.session.*", "data.object.currency": "eur" }),
        true,
    );
}

#[test]
fn values() {
    // Numbers compare by value, strictly by type.
    check(json!({ "data.object.amount_total": 3000 }), true);
    check(json!({ "data.object.amount_total": 3000.0 }), true);
    check(json!({ "data.object.amount_total": "3000" }), false);
    check(json!({ "data.object.metadata.order_ref": 1042 }), false);
    check(json!({ "data.object.metadata.order_ref": "1042" }), true);
    check(
        json!({ "data.object.total_details.amount_discount": 0 }),
        true,
    );
    // Any of.
    check(json!({ "data.object.currency": ["usd", "eur"] }), true);
    check(json!({ "data.object.currency": ["usd", "gbp"] }), false);
    // Null is a value.
    check(json!({ "data.object.customer_details.phone": null }), true);
    check(json!({ "data.object.customer_details.email": null }), false);
    check(
        json!({ "data.object.customer_details.phone": { "exists": true } }),
        true,
    );
    // A scalar never equals a list or a map.
    check(json!({ "data.object.payment_method_types": "card" }), false);
    check(json!({ "data.object.metadata": "web" }), false);
}

#[test]
fn operators() {
    let amount = "data.object.amount_total";
    let currency = "data.object.currency";
    let cases = [
        (json!({ "eq": 3000 }), amount, true),
        (json!({ "eq": 2999 }), amount, false),
        (json!({ "not": 2999 }), amount, true),
        (json!({ "not": 3000 }), amount, false),
        (json!({ "not": ["usd", "gbp"] }), currency, true),
        (json!({ "not": ["usd", "eur"] }), currency, false),
        (json!({ "in": ["usd", "eur"] }), currency, true),
        (json!({ "in": ["usd"] }), currency, false),
        (json!({ "not_in": ["usd"] }), currency, true),
        (json!({ "not_in": ["eur"] }), currency, false),
        (json!({ "exists": true }), currency, true),
        (json!({ "exists": false }), currency, false),
        (json!({ "gt": 2999 }), amount, true),
        (json!({ "gt": 3000 }), amount, false),
        (json!({ "gte": 3000 }), amount, true),
        (json!({ "gte": 3000.5 }), amount, false),
        (json!({ "lt": 3001 }), amount, true),
        (json!({ "lt": 3000 }), amount, false),
        (json!({ "lte": 3000 }), amount, true),
        (json!({ "lte": -1 }), amount, false),
        (json!({ "gte": 1000, "lt": 5000 }), amount, true),
        (json!({ "gte": 1000, "lt": 2000 }), amount, false),
        (json!({ "gt": 0 }), currency, false),
        (json!({ "prefix": "cs_test_" }), "data.object.id", true),
        (json!({ "prefix": "cs_live_" }), "data.object.id", false),
        (
            json!({ "suffix": "@example.com" }),
            "data.object.customer_details.email",
            true,
        ),
        (
            json!({ "suffix": "@example.org" }),
            "data.object.customer_details.email",
            false,
        ),
        (json!({ "prefix": "3" }), amount, false),
        (
            json!({ "contains": "@" }),
            "data.object.customer_details.email",
            true,
        ),
        (
            json!({ "contains": "#" }),
            "data.object.customer_details.email",
            false,
        ),
        (
            json!({ "contains": "sepa_debit" }),
            "data.object.payment_method_types",
            true,
        ),
        (
            json!({ "contains": "ideal" }),
            "data.object.payment_method_types",
            false,
        ),
        (json!({ "contains": 3 }), amount, false),
    ];
    for (ops, path, want) in cases {
        check(json!({ path: ops }), want);
    }
}

#[test]
fn missing_paths_fail_all_but_exists_false() {
    for path in [
        "data.object.nope",
        "data.object.currency.deeper",
        "data.object.metadata.0",
    ] {
        check(json!({ path: { "exists": false } }), true);
        check(json!({ path: { "exists": true } }), false);
        check(json!({ path: null }), false);
        check(json!({ path: "eur" }), false);
        check(json!({ path: { "not": "eur" } }), false);
        check(json!({ path: { "not_in": ["eur"] } }), false);
        check(json!({ path: { "lt": 1 } }), false);
        check(json!({ path: { "exists": false, "not": "x" } }), false);
    }
    let compiled = when(json!({ "payment_status": "paid", "type": "*" })).unwrap();
    assert!(!compiled.matches(&json!({ "object": "event" })));
    assert!(!compiled.matches(&json!("not even an object")));
}

#[track_caller]
fn check_error(conditions: Value, want: &[&str]) {
    let errors = match when(conditions.clone()) {
        Ok(_) => panic!("{conditions} compiled"),
        Err(errors) => errors,
    };
    assert_eq!(errors.len(), want.len(), "{conditions}: {errors:#?}");
    for (error, want) in errors.iter().zip(want) {
        assert!(
            error.contains(want),
            "{conditions}: {error:?} lacks {want:?}"
        );
    }
}

#[test]
fn compile_errors() {
    check_error(
        json!({ "data.object.amount_total": { "gtee": 5 } }),
        &["condition `data.object.amount_total`: unknown operator `gtee` (expected one of eq,"],
    );
    check_error(
        json!({ "data.object.amount_total": { "gte": "abc" } }),
        &["`gte` compares numbers, got a string"],
    );
    check_error(
        json!({ "data.object.x": { "exists": 3 } }),
        &["`exists` takes true or false, got a number"],
    );
    check_error(
        json!({ "data.object.x": { "prefix": 3 } }),
        &["`prefix` takes a string"],
    );
    check_error(
        json!({ "data.object.x": { "in": "eur" } }),
        &["`in`: expected a list, got a string"],
    );
    check_error(
        json!({ "data.object.x": { "not_in": [] } }),
        &["`not_in`: an empty list"],
    );
    check_error(
        json!({ "data.object.x": { "eq": ["a"] } }),
        &["`eq`: expected a single value"],
    );
    check_error(
        json!({ "data.object.x": { "contains": {} } }),
        &["`contains`: expected a single value"],
    );
    check_error(
        json!({ "data.object.x": { "not": [["a"]] } }),
        &["`not`: list item 1"],
    );
    check_error(
        json!({ "data.object.x": {} }),
        &["condition `data.object.x`: empty operator map"],
    );
    check_error(
        json!({ "data.object.x": [] }),
        &["an empty list matches nothing"],
    );
    check_error(
        json!({ "data.object.x": ["a", { "b": 1 }] }),
        &["list item 2: expected a single value"],
    );
    check_error(
        json!({ "data..x": 1 }),
        &["condition `data..x`: a path needs non-empty segments"],
    );
    check_error(json!({ "": 1 }), &["condition ``: a path needs"]);
    check_error(
        json!({ "type": { "in": ["a"] } }),
        &["condition `type`: operator maps are not supported for `type`"],
    );
    check_error(
        json!({ "type": 3 }),
        &["condition `type`: expected an event type"],
    );
    check_error(
        json!({ "type": [] }),
        &["condition `type`: an empty list matches no event"],
    );
    check_error(
        json!({ "type": ["a", ""] }),
        &["an event type cannot be empty"],
    );
    check_error(
        json!({ "payment_status": { "nope": 1 } }),
        &["condition `payment_status`: unknown operator `nope`"],
    );
    // Every problem, not the first.
    check_error(
        json!({
            "type": 3,
            "data.object.amount_total": { "gtee": 5, "lt": "x" },
            "livemode": { "exists": "yes" },
            "data..x": { "eq": [] },
        }),
        &[
            "condition `type`",
            "condition `data.object.amount_total`: unknown operator `gtee`",
            "condition `data.object.amount_total`: `lt` compares numbers",
            "condition `livemode`: `exists` takes true or false",
            "condition `data..x`: a path needs",
            "condition `data..x`: `eq`: expected a single value",
        ],
    );
}

#[test]
fn admits_type_looks_only_at_type_conditions() {
    let when = |conditions: Value| {
        let pairs: Vec<(String, Value)> = conditions
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        When::compile(&pairs).unwrap()
    };
    let paid = when(json!({"type": ["checkout.session.*"], "payment_status": "paid"}));
    assert!(paid.admits_type("checkout.session.completed"));
    assert!(!paid.admits_type("payment_intent.succeeded"));
    let any = when(json!({"data.object.currency": "eur"}));
    assert!(any.admits_type("anything.at_all"));
}
