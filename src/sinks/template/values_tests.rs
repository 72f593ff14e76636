//! Unit tests of the record's template values: every way a template can
//! read them gives what minijinja's own deserializer would.

use minijinja::{Environment, Value, context};

use super::*;

/// `source` rendered with `record` as built here and as minijinja builds it.
#[track_caller]
fn both(source: &str, json: &str) -> (String, String) {
    let env = Environment::new();
    let ours = from_json(json.as_bytes()).expect("JSON");
    let theirs: Value = serde_json::from_str(json).expect("JSON");
    let render = |record: Value| {
        env.render_str(source, context! { record => record })
            .unwrap_or_else(|e| format!("error: {e}"))
    };
    (render(ours), render(theirs))
}

const ORDER: &str = r#"{
    "id": "evt_1:paid", "amount_total": 10300, "refund": -5, "big": 18446744073709551615,
    "rate": 0.25, "paid": true, "note": null, "tags": ["a", "b", 3, [], {}],
    "customer": {"name": "Jenny \"JR\" Rosen", "email": "jenny@example.com", "phone": null},
    "a_string_longer_than_a_small_string_is_kept": "a value longer than twenty-two bytes",
    "line_items": [{"product": "Mug", "quantity": 3}, {"product": "Tote", "quantity": 2}]
}"#;

#[test]
fn templates_read_the_same_values_as_from_minijinjas_own_maps() {
    let templates = [
        "{{ record | tojson }}",
        "{{ record | tojson(indent=2) }}",
        "{{ record }}",
        "{{ record.customer }} {{ record.tags }} {{ record.note }} {{ record.big }}",
        "{% for key in record %}{{ key }},{% endfor %}",
        "{% for k, v in record.customer | items %}{{ k }}={{ v }};{% endfor %}",
        "{% for k, v in record.customer | dictsort %}{{ k }}={{ v }};{% endfor %}",
        "{{ record | length }} {{ record.customer | length }} {{ record.tags | length }}",
        "{{ 'customer' in record }} {{ 'nope' in record }} {{ record.customer is mapping }}",
        "{{ record['customer']['name'] }} {{ record.line_items[1].product }}",
        "{{ record.customer == record.customer }} {{ record.missing is defined }}",
        "{{ record.rate * 4 }} {{ record.refund + 1 }} {{ record.paid }}",
        "{% for item in record.line_items | reverse %}{{ item.product }}{% endfor %}",
        "{{ record.line_items | map(attribute='quantity') | sum }}",
        "{{ record.line_items | selectattr('quantity', 'gt', 2) | list }}",
        "{{ record.customer | list }} {{ record.customer | list | first }} {{ record.tags | last }}",
        "{{ record.customer.email | default('none') }} {{ record.x | default('none') }}",
        "{{ record.a_string_longer_than_a_small_string_is_kept | upper }}",
        "{{ record.customer.name | tojson }} {{ {} if record.note is none }}",
        "{% if record.customer %}yes{% endif %}{% if record.tags[3] %}no{% endif %}",
    ];
    for source in templates {
        let (ours, theirs) = both(source, ORDER);
        assert_eq!(ours, theirs, "{source}");
        assert!(!ours.starts_with("error"), "{source}: {ours}");
    }
}

#[test]
fn a_repeated_key_keeps_its_first_place_and_its_last_value() {
    let json = r#"{"a": 1, "b": 2, "a": 3}"#;
    let (ours, theirs) = both("{{ record | tojson }}", json);
    assert_eq!(ours, r#"{"a": 3, "b": 2}"#);
    assert_eq!(ours, theirs);
}

#[test]
fn a_large_object_keeps_its_order_and_merges_repeated_keys() {
    let mut json = String::from("{");
    for i in (0..40).rev() {
        json.push_str(&format!(r#""k{i}": {i}, "#));
    }
    json.push_str(r#""k39": "again", "k0": "last"}"#);
    for source in [
        "{{ record | tojson }}",
        "{{ record | length }} {{ record.k7 }} {{ record.k39 }}",
    ] {
        let (ours, theirs) = both(source, &json);
        assert_eq!(ours, theirs, "{source}");
    }
}

#[test]
fn what_is_not_one_json_value_is_refused() {
    for json in ["", "{", r#"{"a": 1} x"#, "[1,]", r#"{"a" 1}"#, "nul"] {
        let ours = from_json(json.as_bytes())
            .map(|_| ())
            .map_err(|e| e.to_string());
        let theirs = serde_json::from_str::<Value>(json)
            .map(|_| ())
            .map_err(|e| e.to_string());
        assert!(ours.is_err(), "{json:?}");
        assert_eq!(ours, theirs, "{json:?}");
    }
}

#[test]
fn nesting_is_bounded() {
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let error = from_json(deep.as_bytes()).expect_err("too deep");
    assert!(error.to_string().contains("recursion limit"), "{error}");
}

#[test]
fn a_record_that_is_not_utf8_is_refused_with_serde_jsons_words() {
    let json = b"{\"a\": \"\xff\"}";
    let ours = from_json(json).map(|_| ()).map_err(|e| e.to_string());
    let theirs = serde_json::from_slice::<Value>(json)
        .map(|_| ())
        .map_err(|e| e.to_string());
    assert!(ours.is_err());
    assert_eq!(ours, theirs);
}
