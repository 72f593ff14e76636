//! Tests of the typed line items reader: for every page, odd or broken, it
//! answers what the pruned tree and `record::line_item` answered (the same
//! items, cursor and `has_more`, or the same error), and keeps only the
//! items it is asked to.

use proptest::prelude::*;
use serde_json::Value;

use super::*;
use crate::offline::standin::{catalogue_items, line_item_fixture};
use crate::routing::record;

const PAGE1: &str = "tests/fixtures/stripe/composed/line_items_page1_has_more.json";
const PAGE2: &str = "tests/fixtures/stripe/composed/line_items_page2_last.json";

fn read(path: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The page as the router read it with a tree: parsed keeping
/// `record::line_items_page`, each item read by `record::line_item`, the
/// cursor and `has_more` read from the tree.
fn by_tree(body: &[u8]) -> Result<Page, String> {
    let page = record::line_items_page()
        .parse(body)
        .map_err(|e| e.to_string())?;
    let data = page.get("data").and_then(Value::as_array).map(|data| Data {
        items: data.iter().map(record::line_item).collect(),
        len: data.len(),
        last_id: data
            .last()
            .and_then(|item| item.get("id"))
            .and_then(Value::as_str)
            .map(str::to_owned),
    });
    Ok(Page {
        data,
        has_more: page.get("has_more").and_then(Value::as_bool) == Some(true),
    })
}

/// Reads `body` both ways and asserts the same answer, also when fewer
/// items are kept; returns it.
#[track_caller]
fn check_same(body: &[u8]) -> Result<Page, String> {
    let want = by_tree(body);
    let got = read_page(body, usize::MAX).map_err(|e| e.to_string());
    assert_eq!(got, want, "page: {}", String::from_utf8_lossy(body));
    if let Ok(Page {
        data: Some(data),
        has_more,
    }) = &want
    {
        for keep in [0, 1, data.len / 2, data.len.saturating_sub(1)] {
            let got = read_page(body, keep).expect("read once, read again");
            let Some(Data {
                items,
                len,
                last_id,
            }) = got.data
            else {
                panic!("no list keeping {keep}: {}", String::from_utf8_lossy(body));
            };
            let kept = &data.items[..keep.min(data.len)];
            assert_eq!(
                (items.as_slice(), len, &last_id, got.has_more),
                (kept, data.len, &data.last_id, *has_more),
                "keeping {keep}: {}",
                String::from_utf8_lossy(body)
            );
        }
    }
    want
}

/// A page whose `data` holds these items (JSON texts), then `rest`.
fn page_of(items: &[&str], rest: &str) -> Vec<u8> {
    format!(
        r#"{{"object": "list", "data": [{}]{rest}, "url": "/v1/checkout/sessions/cs_1/line_items"}}"#,
        items.join(", ")
    )
    .into_bytes()
}

#[track_caller]
fn items_of(body: &[u8]) -> Vec<LineItem> {
    check_same(body)
        .expect("a page")
        .data
        .expect("a list")
        .items
}

#[test]
fn fixture_pages_read_as_before() {
    let first = check_same(&read(PAGE1)).expect("page 1");
    let data = first.data.expect("page 1 has items");
    assert!(first.has_more);
    assert_eq!(data.len, data.items.len());
    assert!(data.len >= 1, "{data:?}");
    assert_eq!(
        data.last_id.as_deref(),
        Some(data.items[data.len - 1].id.as_str())
    );
    let last = check_same(&read(PAGE2)).expect("page 2");
    assert!(!last.has_more);
    assert!(!last.data.expect("page 2 has items").items.is_empty());
}

#[test]
fn catalogue_pages_of_0_1_and_100_items() {
    for n in [0, 1, 3, 100] {
        let items: Vec<String> = catalogue_items(n).iter().map(Value::to_string).collect();
        let items: Vec<&str> = items.iter().map(String::as_str).collect();
        for (has_more, want) in [
            (r#", "has_more": true"#, true),
            (r#", "has_more": false"#, false),
            ("", false),
            (r#", "has_more": "true""#, false),
            (r#", "has_more": 1"#, false),
            (r#", "has_more": null"#, false),
            (r#", "has_more": [true]"#, false),
            (r#", "has_more": false, "has_more": true"#, true),
            (r#", "has_more": true, "has_more": false"#, false),
        ] {
            let page = check_same(&page_of(&items, has_more)).expect("a page");
            assert_eq!(page.has_more, want, "{has_more}");
            let data = page.data.expect("a list");
            assert_eq!((data.len, data.items.len()), (n, n));
            if let Some(last) = data.items.last() {
                assert_eq!(last.id, format!("li_1Catalogue{:014}", n - 1));
                assert_eq!(data.last_id.as_deref(), Some(last.id.as_str()));
                assert_eq!(last.currency.as_deref(), Some("usd"));
                assert!(last.product.is_some() && last.product_id.is_some());
            }
        }
    }
}

#[test]
fn an_expanded_product_is_read_whole() {
    let item = line_item_fixture(
        "li_1",
        "prod_1",
        "Caf\u{e9} \"Noir\" \\ 1\u{2028}",
        "price_1",
        1250,
        3,
        "eur",
    )
    .to_string();
    let items = items_of(&page_of(&[&item], ""));
    assert_eq!(
        items,
        [LineItem {
            id: "li_1".to_owned(),
            product: Some("Caf\u{e9} \"Noir\" \\ 1\u{2028}".to_owned()),
            product_id: Some("prod_1".to_owned()),
            price_id: Some("price_1".to_owned()),
            description: Some("Caf\u{e9} \"Noir\" \\ 1\u{2028}".to_owned()),
            unit_amount: Some(1250),
            currency: Some("eur".to_owned()),
            quantity: Some(3),
            amount_subtotal: Some(3750),
            amount_discount: Some(0),
            amount_tax: Some(0),
            amount_total: Some(3750),
        }]
    );
}

/// Items of every odd shape: each read alone and all together, both ways.
const ODD_ITEMS: &[&str] = &[
    // The product not expanded: its id only.
    r#"{"id": "li_1", "object": "item", "description": "T-shirt", "price": {"id": "price_1",
        "product": "prod_1", "unit_amount": null, "currency": "eur"}, "quantity": 1}"#,
    // A custom price: no unit amount.
    r#"{"id": "li_2", "price": {"id": "price_2", "unit_amount": null,
        "unit_amount_decimal": "12.5", "custom_unit_amount": {"maximum": null, "minimum": 100},
        "product": {"id": "prod_2", "name": "Gift", "images": ["https://x/y.png"]}},
        "currency": "usd", "amount_total": 1250}"#,
    "{}",
    r#"{"id": "li_3"}"#,
    r#"{"id": ""}"#,
    // Fields of unexpected types.
    r#"{"id": 5, "quantity": "3", "description": 5, "currency": ["usd"], "amount_total": {"a": 1},
        "amount_tax": true, "amount_subtotal": false, "amount_discount": null, "price": "price_123"}"#,
    r#"{"id": null, "price": null}"#,
    r#"{"id": ["li_4"], "price": [1, {"id": "price_4"}]}"#,
    r#"{"id": {"id": "li_5"}, "price": 7}"#,
    r#"{"price": {"product": null, "id": 1, "unit_amount": "100", "currency": 3}}"#,
    r#"{"price": {"product": 5}}"#,
    r#"{"price": {"product": ["prod_6"]}}"#,
    r#"{"price": {"product": {"id": 7, "name": null}}}"#,
    r#"{"price": {"product": {"id": "prod_8", "name": ["Mug"]}}}"#,
    r#"{"price": {"product": {}}}"#,
    r#"{"price": {"product": true}}"#,
    // The currency from the price when the item has none (or not a string).
    r#"{"price": {"currency": "eur"}}"#,
    r#"{"currency": null, "price": {"currency": "eur"}}"#,
    r#"{"currency": 1, "price": {"currency": "gbp"}}"#,
    r#"{"currency": "usd", "price": {"currency": "eur"}}"#,
    // Numbers that are not i64.
    r#"{"quantity": 1e3, "amount_total": 1.5, "amount_tax": -0, "amount_subtotal": 18446744073709551615}"#,
    r#"{"quantity": 9223372036854775807, "amount_total": 9223372036854775808,
        "amount_tax": -9223372036854775808, "amount_subtotal": -9223372036854775809}"#,
    r#"{"quantity": 0, "amount_total": -1, "amount_tax": 1E2, "amount_discount": 0.0,
        "price": {"unit_amount": 2.0}}"#,
    r#"{"price": {"unit_amount": 18446744073709551615}}"#,
    r#"{"price": {"unit_amount": -5}}"#,
    // Escapes, in values and in keys.
    r#"{"id": "li_\u0039", "description": "caf\u00e9 \"quoted\" \\ \/ \n\t\u0000",
        "price": {"product": {"name": "\ud83d\ude00 smile", "id": "prod\u005f9"}}}"#,
    r#"{"qu\u0061ntity": 4, "pr\u0069ce": {"\u0069d": "price_10", "product": "prod_10"},
        "\u0063urrency": "chf"}"#,
    // Keys written twice: the last value wins, the whole of it.
    r#"{"quantity": 1, "quantity": 2}"#,
    r#"{"quantity": 1, "quantity": "x"}"#,
    r#"{"id": "a", "id": "b"}"#,
    r#"{"id": "a", "id": 1}"#,
    r#"{"price": {"id": "a", "unit_amount": 5, "currency": "eur"}, "price": {"id": "b"}}"#,
    r#"{"price": {"id": "a"}, "price": "x"}"#,
    r#"{"price": {"product": {"name": "A", "id": "prod_a"}, "product": "prod_b"}}"#,
    r#"{"price": {"product": "prod_b", "product": {"name": "A"}}}"#,
    r#"{"price": {"product": {"name": "A", "name": "B", "id": "p", "id": null}}}"#,
    r#"{"currency": "usd", "currency": null, "price": {"currency": "eur"}}"#,
    // What is not read, of any shape.
    r#"{"id": "li_11", "object": "item", "metadata": {"a": [1, {"b": null}], "c": 1e300},
        "adjustable_quantity": null, "discounts": [], "taxes": [{"amount": 1}],
        "price": {"recurring": {"interval": "month"}, "tiers": [[[]]], "product":
        {"marketing_features": [{"name": "x"}], "name": "Plan", "package_dimensions": null}}}"#,
    // Items that are not objects.
    "5",
    r#""li_12""#,
    "null",
    "true",
    "[1, 2]",
    "[]",
    "-1.5",
];

#[test]
fn odd_items_read_as_before() {
    for item in ODD_ITEMS {
        check_same(&page_of(&[item], "")).expect(item);
        check_same(&page_of(&[item], r#", "has_more": true"#)).expect(item);
    }
    let items = items_of(&page_of(ODD_ITEMS, ""));
    assert_eq!(items.len(), ODD_ITEMS.len());
    let by_id = |id: &str| {
        items
            .iter()
            .find(|item| item.id == id)
            .unwrap_or_else(|| panic!("no item {id}"))
    };
    // A few answers spelled out, beside the comparison.
    let li_1 = by_id("li_1");
    assert_eq!(
        (li_1.product.as_deref(), li_1.product_id.as_deref()),
        (None, Some("prod_1"))
    );
    assert_eq!(li_1.currency.as_deref(), Some("eur"));
    let li_2 = by_id("li_2");
    assert_eq!(
        (li_2.unit_amount, li_2.product.as_deref()),
        (None, Some("Gift"))
    );
    let wrong = &items[5];
    assert_eq!(wrong.id, "");
    assert_eq!(
        (wrong.quantity, &wrong.description, wrong.amount_total),
        (None, &None, None)
    );
    assert_eq!(wrong.price_id, None);
    assert_eq!(
        by_id("li_9").description.as_deref(),
        Some("caf\u{e9} \"quoted\" \\ / \n\t\0")
    );
    let escaped_keys = &items[26];
    assert_eq!(
        (escaped_keys.quantity, escaped_keys.price_id.as_deref()),
        (Some(4), Some("price_10"))
    );
    assert_eq!(by_id("b").id, "b");
    let big = &items[21];
    assert_eq!(
        (
            big.quantity,
            big.amount_total,
            big.amount_tax,
            big.amount_subtotal
        ),
        (Some(i64::MAX), None, Some(i64::MIN), None)
    );
}

#[test]
fn the_page_around_the_items_reads_as_before() {
    for (body, data, last_id) in [
        (r#"{"data": []}"#, Some(0), None),
        (r#"{"has_more": true}"#, None, None),
        (r#"{"data": null, "has_more": true}"#, None, None),
        (r#"{"data": {"0": {"id": "li_1"}}}"#, None, None),
        (r#"{"data": "li_1"}"#, None, None),
        (r#"{"data": 1}"#, None, None),
        ("[]", None, None),
        (r#"[{"data": []}]"#, None, None),
        (r#""page""#, None, None),
        ("5", None, None),
        ("null", None, None),
        (r#"{"data": [], "data": [{"id": "a"}]}"#, Some(1), Some("a")),
        (r#"{"data": [{"id": "a"}], "data": {}}"#, None, None),
        (r#"{"data": [{"id": "a"}, 5]}"#, Some(2), None),
        (r#"{"data": [5, {"id": "a"}]}"#, Some(2), Some("a")),
        (r#"{"data": [{"id": ""}]}"#, Some(1), Some("")),
        (r#"{"data": [{"id": 1}]}"#, Some(1), None),
        (r#"{"d\u0061ta": [{"id": "a"}]}"#, Some(1), Some("a")),
        (
            r#" {"has_more": true, "data": [{"id": "z"}]} "#,
            Some(1),
            Some("z"),
        ),
    ] {
        let page = check_same(body.as_bytes()).expect(body);
        assert_eq!(page.data.as_ref().map(|d| d.len), data, "{body}");
        assert_eq!(
            page.data.and_then(|d| d.last_id).as_deref(),
            last_id,
            "{body}"
        );
    }
}

/// `depth` nested arrays around `inner`.
fn nested(depth: usize, inner: &str) -> String {
    format!("{}{inner}{}", "[".repeat(depth), "]".repeat(depth))
}

#[test]
fn what_the_tree_refused_is_refused_with_the_same_error() {
    let refused = |body: &[u8], fragment: &str| {
        let error = check_same(body).expect_err(&String::from_utf8_lossy(body));
        assert!(error.contains(fragment), "{error}");
    };
    refused(b"", "EOF");
    refused(b"{", "EOF");
    refused(br#"{"data": [{"id": "a"}]"#, "EOF");
    refused(br#"{"data": []} x"#, "trailing characters");
    refused(br#"{"data": [{"id": "a",}]}"#, "trailing comma");
    refused(br#"{"data": [{"id": 'a'}]}"#, "expected value");
    refused(
        br#"{"data": [{"id": "a"} {"id": "b"}]}"#,
        "expected `,` or `]`",
    );
    // Invalid UTF-8 in a string read, and in a key.
    refused(b"{\"data\": [{\"id\": \"li_\xff\"}]}", "invalid unicode");
    refused(
        b"{\"data\": [{\"price\": {\"product\": \"\xc3\"}}]}",
        "invalid unicode",
    );
    refused(b"{\"data\": [{\"\xff\": 1}]}", "invalid unicode");
    refused(br#"{"data": [{"description": "\ud800"}]}"#, "hex escape");
    refused(b"{\"data\": [{\"id\": \"a\nb\"}]}", "control character");
    // A number out of range, where it is read and inside a value read
    // whole.
    refused(br#"{"data": [{"quantity": 1e400}]}"#, "number out of range");
    refused(br#"{"data": [{"price": [1e400]}]}"#, "number out of range");
    refused(
        br#"{"has_more": {"a": -1e999}, "data": []}"#,
        "number out of range",
    );
    // serde_json's nesting bound (128), counted from the page: the page,
    // `data` and the item take three levels, a read field the rest.
    let deep = |depth: usize| {
        page_of(
            &[&format!(r#"{{"description": {}}}"#, nested(depth, "1"))],
            "",
        )
    };
    assert!(check_same(&deep(124)).is_ok());
    refused(&deep(125), "recursion limit exceeded");
    let deep_price =
        |depth: usize| page_of(&[&format!(r#"{{"price": {}}}"#, nested(depth, ""))], "");
    assert!(check_same(&deep_price(124)).is_ok());
    refused(&deep_price(125), "recursion limit exceeded");
    let deep_items = |depth: usize| format!(r#"{{"data": [{}]}}"#, nested(depth, "")).into_bytes();
    assert!(check_same(&deep_items(125)).is_ok());
    refused(&deep_items(126), "recursion limit exceeded");
}

#[test]
fn what_the_tree_skipped_unbuilt_is_skipped_alike() {
    // Fields nobody reads are checked for syntax only, as serde_json skips
    // them: no nesting bound, no number range.
    for item in [
        format!(r#"{{"id": "li_1", "metadata": {}}}"#, nested(500, "1")),
        r#"{"id": "li_1", "metadata": 1e400}"#.to_owned(),
        format!(
            r#"{{"id": "li_1", "price": {{"tiers": {}}}}}"#,
            nested(500, "")
        ),
    ] {
        let items = items_of(&page_of(&[&item], ""));
        assert_eq!(items[0].id, "li_1");
    }
    let skipped = format!(r#"{{"data": [], "url": {}}}"#, nested(500, "1e999"));
    assert!(check_same(skipped.as_bytes()).is_ok());
    // Nor is a skipped string checked as UTF-8 (serde_json skips it
    // byte by byte), then or now: the record never holds it.
    let items = items_of(b"{\"data\": [{\"id\": \"li_1\", \"object\": \"\xff\"}]}");
    assert_eq!(items[0].id, "li_1");
    assert!(check_same(b"{\"data\": [], \"url\": \"\xc3(\"}").is_ok());
}

#[test]
fn items_past_the_limit_are_counted_not_kept() {
    let items: Vec<String> = catalogue_items(10).iter().map(Value::to_string).collect();
    let items: Vec<&str> = items.iter().map(String::as_str).collect();
    let body = page_of(&items, r#", "has_more": true"#);
    let page = read_page(&body, 3).expect("a page");
    let data = page.data.expect("a list");
    assert_eq!((data.items.len(), data.len), (3, 10));
    assert_eq!(data.items[2].id, "li_1Catalogue00000000000002");
    assert_eq!(data.last_id.as_deref(), Some("li_1Catalogue00000000000009"));
    assert!(page.has_more);
}

/// JSON value texts of every type, strings with escapes, numbers in and out
/// of `i64`, arrays and objects.
fn any_json() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        prop::sample::select(vec![
            "null",
            "true",
            "false",
            "0",
            "-0",
            "1e3",
            "1.5",
            "1E400",
            "-1e-400",
            "2.0",
            "18446744073709551615",
            "18446744073709551616",
            "9223372036854775808",
            r#""li_1""#,
            r#""""#,
            r#""caf\u00e9""#,
            r#""say \"hi\"""#,
            r#""\ud83d\ude00""#,
            r#""prod_1""#,
            r#""usd""#,
            r#""true""#,
            r#""3""#,
        ])
        .prop_map(str::to_owned),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec((key(&["id", "name", "a"]), inner), 0..4).prop_map(object),
        ]
    })
}

/// A key text (quoted) among `names`, sometimes spelled with an escape.
fn key(names: &'static [&'static str]) -> impl Strategy<Value = String> {
    (prop::sample::select(names), any::<bool>()).prop_map(|(name, escaped)| {
        match name.char_indices().next() {
            Some((_, first)) if escaped => format!(r#""\u{:04x}{}""#, first as u32, &name[1..]),
            _ => format!("\"{name}\""),
        }
    })
}

fn object(entries: Vec<(String, String)>) -> String {
    let entries: Vec<String> = entries
        .into_iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    format!("{{{}}}", entries.join(", "))
}

/// An object of `entries` (keys may repeat), or now and then any value.
fn object_or_any(
    entries: impl Strategy<Value = (String, String)>,
) -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::collection::vec(entries, 0..7).prop_map(object),
        1 => any_json(),
    ]
}

fn product() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => object_or_any((key(&["id", "name", "object", "images"]), any_json())),
        1 => Just(r#""prod_1""#.to_owned()),
    ]
}

fn price() -> impl Strategy<Value = String> {
    object_or_any(prop_oneof![
        3 => (key(&["id", "unit_amount", "currency", "object", "metadata"]), any_json()),
        1 => (key(&["product"]), product()),
    ])
}

fn item() -> impl Strategy<Value = String> {
    const FIELDS: &[&str] = &[
        "id",
        "description",
        "currency",
        "quantity",
        "amount_subtotal",
        "amount_discount",
        "amount_tax",
        "amount_total",
        "object",
        "metadata",
    ];
    object_or_any(prop_oneof![
        5 => (key(FIELDS), any_json()),
        1 => (key(&["price"]), price()),
    ])
}

fn page() -> impl Strategy<Value = String> {
    let data = prop_oneof![
        8 => prop::collection::vec(item(), 0..5).prop_map(|items| format!("[{}]", items.join(", "))),
        1 => any_json(),
    ];
    let has_more = prop_oneof![Just("true".to_owned()), any_json()];
    let entry = prop_oneof![
        4 => (key(&["data"]), data),
        2 => (key(&["has_more"]), has_more),
        1 => (key(&["object", "url"]), any_json()),
    ];
    object_or_any(entry)
}

fn cases() -> ProptestConfig {
    ProptestConfig::with_cases(512)
}

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn generated_pages_read_as_before(page in page()) {
        check_same(page.as_bytes()).ok();
    }

    #[test]
    fn broken_pages_are_refused_as_before(
        page in page(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        how in 0..3u8,
    ) {
        let mut body = page.into_bytes();
        match how {
            0 if !body.is_empty() => {
                let at = at.index(body.len());
                body[at] = byte;
            }
            1 => body.insert(at.index(body.len() + 1), byte),
            _ if !body.is_empty() => {
                body.remove(at.index(body.len()));
            }
            _ => {}
        }
        check_same(&body).ok();
    }
}
