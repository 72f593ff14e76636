//! Tests of the refusal hints.

use super::*;

const SECRET: &str = "whsec_right";
const T: i64 = 1_700_000_000;

fn event() -> serde_json::Value {
    serde_json::json!({ "id": "evt_1", "object": "event", "type": "charge.succeeded" })
}

#[track_caller]
fn check(body: &[u8], header: &str, secrets: &str, wants: &[&str]) {
    let secrets = Secrets::parse(secrets).expect("test secrets");
    let now = T + 10_000;
    let error = verify::verify(body, header, &secrets, now, Duration::from_secs(300))
        .expect_err("the request is refused");
    let hint = refusal_hint(&error, body, header, &secrets);
    for want in wants {
        assert!(hint.contains(want), "{want:?} not in {hint:?}");
    }
    assert!(
        !hint.contains("whsec_right") && !hint.contains("whsec_other"),
        "{hint}"
    );
}

#[test]
fn hints_name_the_likely_cause() {
    let pretty = serde_json::to_vec_pretty(&event()).expect("serializes");
    let compact = serde_json::to_vec(&event()).expect("serializes");
    let signed = verify::sign(&pretty, SECRET, T);

    check(
        &pretty,
        &signed,
        "whsec_other",
        &["none of the 1 configured", "--print-secret"],
    );
    check(
        &pretty,
        &signed,
        "whsec_a, whsec_b",
        &["none of the 2 configured"],
    );
    check(
        &compact,
        &signed,
        SECRET,
        &["re-encoded the body", "raw body"],
    );
    // Re-serialised, but signed with another secret: not said to be re-serialised.
    check(
        &compact,
        &signed,
        "whsec_other",
        &["well-formed Stripe event"],
    );
    check(
        b"hello",
        &verify::sign(b"hi", SECRET, T),
        SECRET,
        &["not a Stripe event"],
    );
    // A large body is not parsed again: the hint says so.
    let mut big = event();
    big["data"] = serde_json::json!({ "pad": "x".repeat(HINT_MAX_BODY) });
    let big = serde_json::to_vec(&big).expect("serializes");
    check(
        &big,
        &verify::sign(
            &serde_json::to_vec_pretty(&event()).expect("serializes"),
            SECRET,
            T,
        ),
        SECRET,
        &["not examined further", "--print-secret"],
    );
    check(&pretty, "t=1", SECRET, &["no `v1` signature"]);
    check(
        &pretty,
        "nonsense",
        SECRET,
        &["`t=<unix seconds>,v1=<hex>`"],
    );
    check(
        &pretty,
        &signed,
        SECRET,
        &["2h 46m 40s behind", "NTP", "replayed"],
    );
    let future = verify::sign(&pretty, SECRET, T + 20_000);
    check(&pretty, &future, SECRET, &["2h 46m 40s ahead of"]);
}
