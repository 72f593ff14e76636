//! Tests of the paths events have: which `when` paths warn, and what they suggest.

use super::*;

#[track_caller]
fn check(path: &str, expected: Option<&[&str]>) {
    let found = missing_path(path).map(|(why, advice)| format!("{why}: {advice}"));
    match (found, expected) {
        (None, None) => {}
        (Some(text), Some(fragments)) => {
            for fragment in fragments {
                assert!(text.contains(fragment), "`{fragment}` not in {text:?}");
            }
        }
        (found, _) => panic!("{path}: got {found:?}, expected {expected:?}"),
    }
}

#[test]
fn paths_an_event_can_have_are_left_alone() {
    for path in [
        "livemode",
        "id",
        "account",
        "data.object.amount_total",
        "data.object.anything.at.all",
        "data.previous_attributes.status",
        "request.idempotency_key",
        "created",
    ] {
        check(path, None);
    }
}

#[test]
fn paths_no_event_has_say_what_was_meant() {
    check(
        "amount_total",
        Some(&[
            "no Stripe event has a top-level `amount_total`",
            "did you mean `data.object.amount_total`?",
        ]),
    );
    check(
        "metadata.channel",
        Some(&["did you mean `data.object.metadata.channel`?"]),
    );
    check("livemod", Some(&["did you mean `livemode`?"]));
    check(
        "data.currency",
        Some(&["`data` holds only", "did you mean `data.object.currency`?"]),
    );
    check(
        "object.amount_total",
        Some(&["did you mean `data.object.amount_total`?"]),
    );
    check("type.name", Some(&["single value"]));
    check(
        "wholly_unknown",
        Some(&["e.g. `data.object.wholly_unknown`"]),
    );
}

#[test]
fn route_warnings_are_placed_at_the_condition() {
    let yaml = "sinks: { out: { type: stdout } }\nroutes:\n  - name: a\n    when:\n      type: checkout.session.completed\n      amount_total: { gte: 10 }\n      payment_status: paid\n      data.object.currency: eur\n    emit: event\n    to: [out]\n  - name: b\n    when: { metadata.x: { exists: false } }\n    emit: event\n    to: [out]\n";
    let env = crate::config::env::Env::empty();
    let config =
        Config::parse(yaml, std::path::Path::new("routes.yaml"), &env).expect("a valid config");
    let warnings: Vec<String> = route_warnings(&config)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(warnings.len(), 2, "{warnings:#?}");
    assert!(
        warnings[0].starts_with("routes.yaml:6:7: route `a`: condition `amount_total`:")
            && warnings[0].contains("never holds"),
        "{warnings:#?}"
    );
    assert!(
        warnings[1].starts_with("routes.yaml:12:13: route `b`")
            && warnings[1].contains("holds for every event"),
        "{warnings:#?}"
    );
}
