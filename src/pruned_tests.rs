//! Tests of the pruned parse.

use serde_json::json;

use super::*;

const DOC: &str = r#"{
  "id": "evt_1",
  "skip": {"deep": [1, 2, {"x": "y"}], "s": "\u00e9\"\\"},
  "data": {"object": {"a": 1, "b": {"c": true, "d": null}, "list": [{"k": 1, "z": 2}, 3, {"z": 4}], "e": 1.5}},
  "id": "evt_2",
  "n": -7
}"#;

fn keep(paths: &[&str]) -> Keep {
    let mut keep = Keep::default();
    for path in paths {
        keep.path(path);
    }
    keep
}

#[test]
fn keeps_the_named_paths_in_document_order() {
    let value = keep(&["n", "id", "data.object.b.c", "data.object.e"])
        .parse(DOC.as_bytes())
        .unwrap();
    // A key written twice keeps its last value at its first place, as a
    // whole parse does.
    assert_eq!(
        value.to_string(),
        r#"{"id":"evt_2","data":{"object":{"b":{"c":true},"e":1.5}},"n":-7}"#
    );
}

#[test]
fn a_kept_path_reads_what_the_whole_tree_has() {
    let whole: Value = serde_json::from_str(DOC).unwrap();
    let paths = [
        "id",
        "n",
        "skip",
        "data.object.b",
        "data.object.list",
        "data.object.missing",
        "data.object.a.under_a_number",
    ];
    let pruned = keep(&paths).parse(DOC.as_bytes()).unwrap();
    for path in paths {
        let pointer = format!("/{}", path.replace('.', "/"));
        assert_eq!(pruned.pointer(&pointer), whole.pointer(&pointer), "{path}");
    }
}

#[test]
fn a_shorter_path_keeps_the_whole_value() {
    let mut keep = keep(&["data.object.b.c"]);
    keep.path("data.object");
    let value = keep.parse(DOC.as_bytes()).unwrap();
    let whole: Value = serde_json::from_str(DOC).unwrap();
    assert_eq!(value["data"], whole["data"]);
    // A longer path under a whole value changes nothing.
    keep.path("data.object.b.c.deeper");
    assert_eq!(keep.parse(DOC.as_bytes()).unwrap(), value);
}

#[test]
fn each_element_of_an_array() {
    let mut item = Keep::default();
    item.path("z");
    let mut keep = Keep::default();
    keep.path("id").at("data.object.list").each(item);
    assert_eq!(
        keep.parse(DOC.as_bytes()).unwrap(),
        json!({"id": "evt_2", "data": {"object": {"list": [{"z": 2}, 3, {"z": 4}]}}})
    );
    // A path through the array keeps it whole.
    keep.path("data.object.list.0.k");
    let whole: Value = serde_json::from_str(DOC).unwrap();
    assert_eq!(
        keep.parse(DOC.as_bytes()).unwrap()["data"]["object"]["list"],
        whole["data"]["object"]["list"]
    );
}

#[test]
fn refuses_what_a_whole_parse_refuses() {
    let keep = keep(&["id"]);
    for bad in [
        "",
        "{",
        r#"{"id": 1,}"#,
        r#"{"id": 1} trailing"#,
        r#"{"skip": [1, 2}"#,
        r#"{"skip": tru}"#,
        r#"{"skip": "\q"}"#,
        "{\"skip\": \"a\u{1}b\"}",
    ] {
        assert!(serde_json::from_str::<Value>(bad).is_err(), "{bad}");
        assert!(keep.parse(bad.as_bytes()).is_err(), "{bad}");
    }
}

#[test]
fn anything_but_an_object_is_kept_whole() {
    let keep = keep(&["a"]);
    assert_eq!(
        keep.parse(b"[1, {\"b\": 2}]").unwrap(),
        json!([1, {"b": 2}])
    );
    assert_eq!(keep.parse(b"\"text\"").unwrap(), json!("text"));
    assert_eq!(
        keep.parse(br#"{"a": [1, {"b": 2}], "c": 3}"#).unwrap(),
        json!({"a": [1, {"b": 2}]})
    );
}

#[test]
fn whole_is_a_plain_parse() {
    assert_eq!(
        Keep::Whole.parse(DOC.as_bytes()).unwrap(),
        serde_json::from_str::<Value>(DOC).unwrap()
    );
}
