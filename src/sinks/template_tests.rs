//! Unit tests of body templates: the shop filters, what the config check
//! refuses and where, what a render error says.

use super::*;

#[track_caller]
fn render(source: &str, record: &str) -> Result<String, String> {
    let template = Template::compile(source).map_err(|e| e.to_string())?;
    template.render(record.as_bytes()).map_err(|e| e.0)
}

#[test]
fn money_formats_minor_units_by_currency() {
    let table = [
        ("3000", "usd", "$30.00"),
        ("3000", "USD", "$30.00"),
        ("5", "usd", "$0.05"),
        ("0", "usd", "$0.00"),
        ("-1250", "usd", "-$12.50"),
        ("123456789", "eur", "€1,234,567.89"),
        ("1999", "gbp", "£19.99"),
        ("3000", "jpy", "¥3,000"),
        ("3000", "krw", "3,000 KRW"),
        ("1250", "chf", "12.50 CHF"),
        ("12345", "kwd", "12.345 KWD"),
    ];
    for (amount, currency, expected) in table {
        let record = format!(r#"{{"amount": {amount}, "currency": "{currency}"}}"#);
        let got = render("{{ record.amount | money(record.currency) }}", &record);
        assert_eq!(got.as_deref(), Ok(expected), "{amount} {currency}");
    }
}

#[test]
fn decimal_gives_major_units_without_symbol_or_grouping() {
    let table = [
        ("123456", "usd", "1234.56"),
        ("3000", "jpy", "3000"),
        ("-5", "eur", "-0.05"),
        ("12345", "bhd", "12.345"),
    ];
    for (amount, currency, expected) in table {
        let source = format!("{{{{ {amount} | decimal('{currency}') }}}}");
        assert_eq!(render(&source, "{}").as_deref(), Ok(expected), "{source}");
    }
}

#[test]
fn money_refuses_what_is_not_an_amount() {
    let error = render("{{ record.x | money('usd') }}", r#"{"x": "12"}"#).unwrap_err();
    assert!(error.contains("an amount in minor units"), "{error}");
    let error = render("{{ record.x | money('usd') }}", r#"{"x": 1.5}"#).unwrap_err();
    assert!(error.contains("an amount in minor units"), "{error}");
}

#[test]
fn json_filters_escape_into_valid_json() {
    let record = r#"{"name": "Jenny \"JR\" Rosen\n<b>&", "n": 3, "none": null}"#;
    for filter in ["tojson", "json"] {
        let source = format!(
            r#"{{"text": {{{{ record.name | {filter} }}}}, "n": {{{{ record.n | {filter} }}}}, "z": {{{{ record.none | {filter} }}}}}}"#
        );
        let body = render(&source, record).unwrap();
        let parsed: serde_json::Value = serde_json::from_str(&body).expect(&body);
        assert_eq!(parsed["text"], "Jenny \"JR\" Rosen\n<b>&");
        assert_eq!(parsed["n"], 3);
        assert!(parsed["z"].is_null());
    }
}

#[test]
fn text_is_never_html_escaped_and_block_tags_leave_no_blank_lines() {
    let source = "Items:\n{% for item in record.items %}\n- {{ item }}\n{% endfor %}\nend\n";
    let body = render(source, r#"{"items": ["<a>", "b & c"]}"#).unwrap();
    assert_eq!(body, "Items:\n- <a>\n- b & c\nend");
}

#[track_caller]
fn check_refused(source: &str, message: &str, line: usize, column: usize) {
    let error = Template::compile(source).expect_err(source);
    assert!(
        error.message.contains(message),
        "`{}` does not contain `{message}`",
        error.message
    );
    assert_eq!(
        (error.line, error.column),
        (line, column),
        "{source}: {error}"
    );
}

#[test]
fn compile_refuses_syntax_unknown_filters_tests_and_names_with_their_place() {
    check_refused("hello {{ record.x", "syntax error", 1, 17);
    check_refused("{% for x in record.items %}\n{{ x }}", "syntax error", 2, 6);
    check_refused("a\n  {{ record.x | nope }}", "unknown filter `nope`", 2, 17);
    check_refused(
        "{% if record.x is nope %}{% endif %}",
        "unknown test `nope`",
        1,
        19,
    );
    check_refused("{{ order.id }}", "unknown name `order`", 1, 4);
    check_refused(
        "\n\n{{ range(2) | list }} {{ recrd.x }}",
        "unknown name `recrd`",
        3,
        26,
    );
}

#[test]
fn compile_accepts_builtins_globals_and_names_set_in_the_template() {
    let source = "{% set total = record.items | length %}{% for i in range(total) %}{{ loop.index }}{% endfor %}{{ record.x | default('-') | upper }}{% if record.y is defined %}y{% endif %}";
    assert_eq!(render(source, r#"{"items": [1, 2]}"#).as_deref(), Ok("12-"));
}

#[test]
fn a_missing_field_names_itself() {
    for source in [
        "Ship to:\n{{ record.shipping.address.city }}",
        "Ship to:\n{{ record.shipping.address.city | tojson }}",
        "Ship to:\n{{ record.shipping.address.city | json }}",
        "Ship to:\n{{ record.shipping.address.city | upper }}",
        "Ship to:\n{{ record.shipping.address.city|money('usd') }}",
    ] {
        for record in [
            r#"{"shipping": {"address": {}}}"#,
            r#"{"shipping": {}}"#,
            r#"{"shipping": null}"#,
            r#"{}"#,
        ] {
            let error = render(source, record).unwrap_err();
            assert!(
                error.contains("record.shipping.address.city is undefined")
                    && error.contains("template line 2"),
                "{source} {record}: {error}"
            );
        }
    }
}

#[test]
fn a_condition_on_a_missing_field_is_false_not_an_error() {
    let source = "{% if record.metadata.gift %}gift{% else %}plain{% endif %}";
    assert_eq!(
        render(source, r#"{"metadata": {}}"#).as_deref(),
        Ok("plain")
    );
}

#[test]
fn line_column_counts_characters() {
    assert_eq!(line_column("ab\ncdé€f", 3), (2, 1));
    assert_eq!(line_column("ab\ncdé€f", 10), (2, 5));
    assert_eq!(line_column("ab", 99), (1, 3));
}
