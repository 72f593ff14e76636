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
