use super::*;

#[test]
fn a_dead_letter_cursor_survives_the_round_trip() {
    let cursor = DeadLetterCursor {
        updated_at_ms: 1_764_000_000_123,
        key: "d evt_1:paid orders shipping\nodd".into(),
    };
    let word = encode_cursor(&cursor);
    assert!(
        word.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
    assert_eq!(decode_cursor(&word), Some(cursor));
    assert_eq!(decode_cursor("not a cursor"), None);
    assert_eq!(decode_cursor(&URL_SAFE_NO_PAD.encode("x\ny")), None);
}

#[test]
fn replay_requests_follow_the_command_lines_rules() {
    let ask = |text: &str| serde_json::from_str::<ReplayRequest>(text).unwrap().check();
    assert!(ask(r#"{"all": true}"#).is_ok());
    assert!(ask(r#"{"sink": "shipping"}"#).is_ok());
    assert!(ask(r#"{"event": "evt_1", "reroute": true}"#).is_ok());
    assert!(ask("{}").is_err());
    assert!(ask(r#"{"all": true, "sink": "x"}"#).is_err());
    assert!(ask(r#"{"reroute": true}"#).is_err());
    assert!(ask(r#"{"event": "evt_1", "sink": "x", "reroute": true}"#).is_err());
    assert!(serde_json::from_str::<ReplayRequest>(r#"{"sinks": "x"}"#).is_err());
}

#[test]
fn limits_are_bounded_and_parameters_decoded() {
    let params = Params::parse(Some("limit=9999&type=checkout.%2A&after=")).unwrap();
    assert_eq!(params.limit().unwrap(), MAX_LIMIT);
    assert_eq!(params.get("type"), Some("checkout.*"));
    assert_eq!(params.get("after"), None);
    assert_eq!(Params::parse(None).unwrap().limit().unwrap(), DEFAULT_LIMIT);
    assert!(Params::parse(Some("limit=0")).unwrap().limit().is_err());
    assert!(Params::parse(Some("limit=-1")).unwrap().limit().is_err());
    let long = format!("type={}", "a".repeat(MAX_PARAM + 1));
    assert!(Params::parse(Some(&long)).is_err());
    assert_eq!(decode("evt_1%3Aa%20b"), "evt_1:a b");
}
