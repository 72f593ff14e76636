//! Tests of `send`: built events, files, secrets and targets.

use super::*;

const NOW: i64 = 1_760_000_000;

#[track_caller]
fn check(kind: &str, status: Option<PaymentStatus>, items: usize, want: &str) {
    let event = build(kind, status, items, NOW).expect("builds");
    let body = serde_json::to_vec_pretty(&event).expect("serializes");
    let parsed = Event::parse(&body).expect("an event");
    assert_eq!(parsed.kind, kind);
    assert_eq!(parsed.created, NOW);
    let object = &event["data"]["object"];
    let got = format!(
        "{} {} {}",
        object["payment_status"].as_str().unwrap_or("-"),
        object["amount_total"]
            .as_i64()
            .or(object["amount"].as_i64())
            .unwrap_or(-1),
        object["payment_intent"].as_str().map_or("no-pi", |_| "pi"),
    );
    assert_eq!(got, want, "{kind}");
}

#[test]
fn builds_each_type() {
    use PaymentStatus::*;
    check("checkout.session.completed", None, 2, "paid 6100 pi");
    check(
        "checkout.session.completed",
        Some(Unpaid),
        1,
        "unpaid 2500 pi",
    );
    check(
        "checkout.session.async_payment_succeeded",
        None,
        0,
        "paid 0 pi",
    );
    check(
        "checkout.session.async_payment_failed",
        None,
        1,
        "unpaid 2500 pi",
    );
    check("checkout.session.expired", None, 1, "unpaid 2500 no-pi");
    check("payment_intent.succeeded", None, 3, "- 10300 no-pi");
}

#[test]
fn ids_are_fresh_and_name_the_item_count() {
    let a = build("checkout.session.completed", None, 4, NOW).expect("builds");
    let b = build("checkout.session.completed", None, 4, NOW).expect("builds");
    assert_ne!(a["id"], b["id"]);
    assert_ne!(a["data"]["object"]["id"], b["data"]["object"]["id"]);
    let session = a["data"]["object"]["id"].as_str().expect("an id");
    assert!(
        session.starts_with("cs_test_send_") && session.ends_with("_4items"),
        "{session}"
    );
}

#[test]
fn refuses_what_it_cannot_build() {
    let err = build("checkout.sessions.completed", None, 1, NOW).unwrap_err();
    assert!(
        err.to_string()
            .contains("did you mean `checkout.session.completed`?"),
        "{err}"
    );
    let err = build("invoice.paid", None, 1, NOW).unwrap_err();
    assert!(err.to_string().contains("--file"), "{err}");
    assert!(matches!(
        build("checkout.*", None, 1, NOW),
        Err(SendError::NotAStripeType { .. })
    ));
    assert!(matches!(
        build(BUILDS[0], None, 5000, NOW),
        Err(SendError::TooManyItems(5000))
    ));
}

#[test]
fn the_first_secret_signs() {
    let env = Env::from_map([("STRIPE_WEBHOOK_SECRET", " whsec_a , whsec_b")]);
    assert_eq!(first_secret(&env).expect("a secret"), "whsec_a");
    let env = Env::from_map([("STRIPE_WEBHOOK_SECRET", "sk_test_123")]);
    assert!(matches!(first_secret(&env), Err(SendError::Secret(_))));
    assert!(matches!(
        first_secret(&Env::empty()),
        Err(SendError::NoSecret)
    ));
}

#[test]
fn a_missing_secret_names_the_offline_way_to_get_one() {
    let message = SendError::NoSecret.to_string();
    assert!(message.contains("serve --offline"), "{message}");
    assert!(message.contains(".env.local"), "{message}");
}

#[test]
fn files_keep_their_bytes_or_get_a_fresh_id() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("event.json");
    let text = "{\"id\":\"evt_file\",\"object\":\"event\",\"type\":\"invoice.paid\",\
                \"created\":1,\"livemode\":false,\"data\":{\"object\":{}}}";
    std::fs::write(&path, text).expect("writes");
    assert_eq!(from_file(&path, false).expect("reads"), text.as_bytes());
    let fresh: Value =
        serde_json::from_slice(&from_file(&path, true).expect("reads")).expect("JSON");
    assert_ne!(fresh["id"], "evt_file");
    assert_eq!(fresh["type"], "invoice.paid");
    std::fs::write(&path, "{}").expect("writes");
    assert!(matches!(
        from_file(&path, true),
        Err(SendError::NotAnEvent { .. })
    ));
}

#[test]
fn set_changes_the_field_a_dotted_path_names() {
    let mut event = serde_json::json!({
        "type": "checkout.session.completed",
        "data": { "object": { "amount_total": 100, "payment_method_types": ["card"] } }
    });
    for arg in [
        "data.object.amount_total=5000",
        "data.object.currency=eur",
        "data.object.metadata.order=\"42\"",
        "data.object.payment_method_types.0=sepa_debit",
        "livemode=true",
    ] {
        apply(&mut event, &arg.parse().expect("PATH=VALUE")).expect(arg);
    }
    let object = &event["data"]["object"];
    assert_eq!(object["amount_total"], 5000);
    assert_eq!(object["currency"], "eur");
    assert_eq!(object["metadata"]["order"], "42");
    assert_eq!(object["payment_method_types"][0], "sepa_debit");
    assert_eq!(event["livemode"], true);
}

#[test]
fn set_says_what_is_in_the_way() {
    let mut event = serde_json::json!({ "type": "x", "data": { "object": { "ids": [1] } } });
    let err = apply(&mut event, &"type.name=a".parse().unwrap()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "--set type.name: `type` is a string, which has no `name`"
    );
    let err = apply(&mut event, &"data.object.ids.3=a".parse().unwrap()).unwrap_err();
    assert!(err.to_string().contains("0 to 0"), "{err}");
    assert!("nothing".parse::<Set>().unwrap_err().contains("PATH=VALUE"));
    assert!("a..b=1".parse::<Set>().is_err());
}

#[test]
fn the_printed_request_carries_a_signature_that_verifies() {
    let url = Url::parse("http://127.0.0.1:3000/api/webhook").unwrap();
    let body = br#"{"id":"evt_1","type":"checkout.session.completed"}"#;
    let text = request_text(&url, body, "whsec_printed", NOW);
    let text = String::from_utf8(text).unwrap();
    let (head, printed_body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("POST /api/webhook HTTP/1.1\r\nHost: 127.0.0.1:3000\r\n"));
    assert_eq!(printed_body.as_bytes(), body);
    // Without it, `send --print | nc` waits for the router to close.
    assert!(head.lines().any(|l| l == "Connection: close"), "{head}");
    let signature = head
        .lines()
        .find_map(|l| l.strip_prefix("Stripe-Signature: "))
        .unwrap();
    assert_eq!(signature, verify::sign(body, "whsec_printed", NOW));
}
