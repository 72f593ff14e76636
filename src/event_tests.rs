//! Tests of the event head and parse.

use super::*;

#[track_caller]
fn check(body: &str, expect: Result<(&str, &str), &str>) {
    match (Event::parse(body.as_bytes()), expect) {
        (Ok(e), Ok((id, kind))) => assert_eq!((e.id.as_str(), e.kind.as_str()), (id, kind)),
        (Err(e), Err(fragment)) => assert!(e.to_string().contains(fragment), "{e}"),
        (got, want) => panic!("got {got:?}, want {want:?}"),
    }
    // The request path's shortcut accepts and refuses the same bodies.
    let head = Event::head(body.as_bytes());
    let full = Event::parse(body.as_bytes()).map(|e| Head {
        id: e.id,
        kind: e.kind,
    });
    assert_eq!(head, full, "head and parse disagree on {body}");
}

#[test]
fn parse() {
    check(
        r#"{"id":"evt_1","object":"event","type":"a.b","created":1}"#,
        Ok(("evt_1", "a.b")),
    );
    check("not json", Err("not JSON"));
    check("[1]", Err("an array"));
    check(
        r#"{"id":"cs_1","object":"checkout.session","created":1}"#,
        Err("`checkout.session`"),
    );
    check(r#"{"object":"event","type":"a","created":1}"#, Err("`id`"));
    check(
        r#"{"id":"evt_1","object":"event","created":1}"#,
        Err("`type`"),
    );
    check(
        r#"{"id":"evt_1","object":"event","type":"a"}"#,
        Err("`created`"),
    );
    check(
        r#"{"id":"evt_\u0031","object":"event","type":"a","created":1,"data":{"x":[1,{}]}}"#,
        Ok(("evt_1", "a")),
    );
    check(
        r#"{"id":"evt_1","id":"evt_2","object":"event","type":"a","created":1}"#,
        Ok(("evt_2", "a")),
    );
    check(
        r#"{"id":"","object":"event","type":"a","created":1}"#,
        Err("`id`"),
    );
    check(
        r#"{"id":"e","object":"event","type":"a","created":1.5}"#,
        Err("`created`"),
    );
    check(
        r#"{"id":7,"object":"event","type":"a","created":1}"#,
        Err("`id`"),
    );
}

/// An event whose `data.object` holds `levels` nested arrays, with
/// brackets inside strings that do not count.
fn nested(levels: usize) -> String {
    format!(
        r#"{{"id":"evt_1","object":"event","type":"a","created":1,"data":{{"object":{}"x\"[{{"{}}}}}"#,
        "[".repeat(levels),
        "]".repeat(levels)
    )
}

#[test]
fn depth_is_bounded_the_same_at_the_door_and_in_routing() {
    // The event and `data` are two levels, `data.object` the array.
    let deepest = nested(MAX_DEPTH - 2);
    check(&deepest, Ok(("evt_1", "a")));
    let deeper = nested(MAX_DEPTH - 1);
    check(&deeper, Err("more than 64 levels"));
    // Far past serde_json's own limit: the same refusal, the same words.
    check(&nested(500), Err("more than 64 levels"));
    // Brackets inside strings, escaped quotes included, are text.
    let text = format!(
        r#"{{"id":"evt_1","object":"event","type":"a","created":1,"s":"\"{}"}}"#,
        "[{".repeat(200)
    );
    check(&text, Ok(("evt_1", "a")));
}

/// The depth scan as it read before it jumped over strings: one byte at a
/// time.
fn depth_byte_by_byte(body: &[u8]) -> Result<(), EventError> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &byte in body {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(EventError::TooDeep);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

proptest::proptest! {
    #[test]
    fn the_depth_scan_agrees_with_a_byte_by_byte_scan(
        body in proptest::collection::vec(
            proptest::sample::select(b"{}[]\"\\ a,:".to_vec()), 0..400),
        nest in 0usize..80,
    ) {
        let mut deep = b"[".repeat(nest);
        deep.extend_from_slice(&body);
        for body in [&body, &deep] {
            proptest::prop_assert_eq!(check_depth(body), depth_byte_by_byte(body));
        }
    }
}
