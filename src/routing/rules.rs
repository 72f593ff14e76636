//! Route conditions (`when`) and matching. Pure, no I/O.
//!
//! A `when` map is compiled once per config into [`When`]: paths are split,
//! globs cut into literals and operands type-checked, so matching an event
//! walks the JSON tree and compares without allocating. Every condition must
//! hold; an empty `when` matches every event.
//!
//! Keys: `type` (the event type; a glob or a list of globs, `*` matching any
//! run of characters), `payment_status` (shorthand for
//! `data.object.payment_status`), `livemode`, or a dotted path into the event.
//! A path segment made only of digits indexes an array (`data.object.items.0`)
//! and is an ordinary key in an object.
//!
//! Values: a scalar is compared for equality, strictly by JSON type (the
//! string `"10"` is not the number `10`, but `10` equals `10.0`); a list means
//! any of; a map is a set of operators that must all hold. A path that is
//! missing fails every condition except `{exists: false}`, including `not`
//! and `not_in`: "not `paid`" is a statement about a value that is there.
//! A present `null` exists and equals `null`.

use std::cmp::Ordering;

use serde_json::{Number, Value};

/// The operators an operator map may use, in the order error messages list them.
const OPERATORS: &str = "eq, not, in, not_in, exists, gt, gte, lt, lte, prefix, suffix, contains";

/// A compiled `when` map: every condition must hold.
#[derive(Debug, Clone)]
pub struct When {
    conditions: Vec<Condition>,
}

#[derive(Debug, Clone)]
enum Condition {
    /// The event's `type` matches any of the globs.
    Type(Vec<Glob>),
    /// The value at `path` passes every test.
    Path {
        path: Vec<Segment>,
        tests: Vec<Test>,
    },
}

#[derive(Debug, Clone)]
struct Segment {
    key: String,
    /// Set when `key` is all digits: the position in an array.
    index: Option<usize>,
}

/// One test on the value at a path. Operands are checked when compiled:
/// scalars are strings, numbers, booleans or null; lists are non-empty.
#[derive(Debug, Clone)]
enum Test {
    AnyOf(Vec<Value>),
    NoneOf(Vec<Value>),
    Exists(bool),
    /// The value is a number on the `Ordering` side of the bound, or equal
    /// to it when the flag is set (`gte`, `lte`).
    Compare(Ordering, bool, Number),
    Prefix(String),
    Suffix(String),
    Contains(Value),
}

impl When {
    /// Compiles the conditions of one route; every problem is returned,
    /// each naming its key.
    pub fn compile(conditions: &[(String, Value)]) -> Result<When, Vec<String>> {
        let mut compiled = Vec::new();
        let mut errors = Vec::new();
        for (key, value) in conditions {
            match compile_condition(key, value) {
                Ok(condition) => compiled.push(condition),
                Err(problems) => errors.extend(
                    problems
                        .into_iter()
                        .map(|p| format!("condition `{key}`: {p}")),
                ),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        // The event type is the cheapest and most selective test: try it first.
        compiled.sort_by_key(|c| !matches!(c, Condition::Type(_)));
        Ok(When {
            conditions: compiled,
        })
    }

    /// Whether `event` (a Stripe event object) satisfies every condition.
    /// Whether an event of type `kind` can satisfy these conditions at all:
    /// false only when a `type` condition rules it out. Lets the router skip
    /// parsing an event that no route can want.
    pub fn admits_type(&self, kind: &str) -> bool {
        self.conditions.iter().all(|condition| match condition {
            Condition::Type(globs) => globs.iter().any(|g| g.matches(kind)),
            Condition::Path { .. } => true,
        })
    }

    pub fn matches(&self, event: &Value) -> bool {
        self.conditions.iter().all(|condition| match condition {
            Condition::Type(globs) => event
                .get("type")
                .and_then(Value::as_str)
                .is_some_and(|kind| globs.iter().any(|g| g.matches(kind))),
            Condition::Path { path, tests } => {
                let value = lookup(event, path);
                tests.iter().all(|test| test.holds(value))
            }
        })
    }
}

fn lookup<'a>(event: &'a Value, path: &[Segment]) -> Option<&'a Value> {
    path.iter().try_fold(event, |value, segment| match value {
        Value::Object(map) => map.get(&segment.key),
        Value::Array(items) => items.get(segment.index?),
        _ => None,
    })
}

fn compile_condition(key: &str, value: &Value) -> Result<Condition, Vec<String>> {
    if key == "type" {
        return compile_type(value)
            .map(Condition::Type)
            .map_err(|e| vec![e]);
    }
    let path = match key {
        "payment_status" => "data.object.payment_status",
        _ => key,
    };
    let mut errors = Vec::new();
    let path = compile_path(path).map_err(|e| errors.push(e));
    let tests = compile_tests(value).map_err(|e| errors.extend(e));
    match (path, tests) {
        (Ok(path), Ok(tests)) => Ok(Condition::Path { path, tests }),
        _ => Err(errors),
    }
}

fn segment(key: &str) -> Segment {
    let index = if key.bytes().all(|b| b.is_ascii_digit()) {
        key.parse().ok()
    } else {
        None
    };
    Segment {
        key: key.to_owned(),
        index,
    }
}

fn compile_path(key: &str) -> Result<Vec<Segment>, String> {
    if key.split('.').any(str::is_empty) {
        return Err("a path needs non-empty segments separated by single dots, \
                    like `data.object.currency`"
            .to_owned());
    }
    Ok(key.split('.').map(segment).collect())
}

fn compile_type(value: &Value) -> Result<Vec<Glob>, String> {
    let glob = |v: &Value| match v.as_str() {
        Some("") => Err("an event type cannot be empty".to_owned()),
        Some(pattern) => Ok(Glob::new(pattern)),
        None => Err(format!(
            "expected an event type like `checkout.session.completed` (`*` matches any run \
             of characters) or a list of them, got {}",
            describe(v)
        )),
    };
    match value {
        Value::Object(_) => Err(
            "operator maps are not supported for `type`; give an event type \
                                 like `checkout.session.*` or a list of them"
                .to_owned(),
        ),
        Value::Array(items) if items.is_empty() => {
            Err("an empty list matches no event; list at least one event type".to_owned())
        }
        Value::Array(items) => items.iter().map(glob).collect(),
        _ => glob(value).map(|g| vec![g]),
    }
}

/// A scalar or a list of scalars is equality or any-of; a map is operators.
fn compile_tests(value: &Value) -> Result<Vec<Test>, Vec<String>> {
    match value {
        Value::Object(ops) if ops.is_empty() => Err(vec![format!(
            "empty operator map (expected one of {OPERATORS})"
        )]),
        Value::Object(ops) => {
            let mut tests = Vec::new();
            let mut errors = Vec::new();
            for (op, operand) in ops {
                match compile_operator(op, operand) {
                    Ok(test) => tests.push(test),
                    Err(e) => errors.push(e),
                }
            }
            if errors.is_empty() {
                Ok(tests)
            } else {
                Err(errors)
            }
        }
        Value::Array(_) => scalars(value)
            .map(|s| vec![Test::AnyOf(s)])
            .map_err(|e| vec![e]),
        _ => scalar(value)
            .map(|s| vec![Test::AnyOf(vec![s])])
            .map_err(|e| vec![e]),
    }
}

fn compile_operator(op: &str, operand: &Value) -> Result<Test, String> {
    let with_op = |e: String| format!("`{op}`: {e}");
    let number = || match operand {
        Value::Number(n) => Ok(n.clone()),
        other => Err(format!("`{op}` compares numbers, got {}", describe(other))),
    };
    let string = || match operand {
        Value::String(s) => Ok(s.clone()),
        other => Err(format!("`{op}` takes a string, got {}", describe(other))),
    };
    match op {
        "eq" => scalar(operand)
            .map(|s| Test::AnyOf(vec![s]))
            .map_err(with_op),
        "not" => match operand {
            Value::Array(_) => scalars(operand).map(Test::NoneOf),
            _ => scalar(operand).map(|s| Test::NoneOf(vec![s])),
        }
        .map_err(with_op),
        "in" | "not_in" => match operand {
            Value::Array(_) => scalars(operand),
            other => Err(format!("expected a list, got {}", describe(other))),
        }
        .map(|list| {
            if op == "in" {
                Test::AnyOf(list)
            } else {
                Test::NoneOf(list)
            }
        })
        .map_err(with_op),
        "exists" => match operand {
            Value::Bool(b) => Ok(Test::Exists(*b)),
            other => Err(format!(
                "`exists` takes true or false, got {}",
                describe(other)
            )),
        },
        "gt" => number().map(|n| Test::Compare(Ordering::Greater, false, n)),
        "gte" => number().map(|n| Test::Compare(Ordering::Greater, true, n)),
        "lt" => number().map(|n| Test::Compare(Ordering::Less, false, n)),
        "lte" => number().map(|n| Test::Compare(Ordering::Less, true, n)),
        "prefix" => string().map(Test::Prefix),
        "suffix" => string().map(Test::Suffix),
        "contains" => scalar(operand).map(Test::Contains).map_err(with_op),
        _ => Err(format!(
            "unknown operator `{op}` (expected one of {OPERATORS})"
        )),
    }
}

fn scalar(value: &Value) -> Result<Value, String> {
    match value {
        Value::Array(_) | Value::Object(_) => Err(format!(
            "expected a single value (a string, number, boolean or null), got {}",
            describe(value)
        )),
        _ => Ok(value.clone()),
    }
}

fn scalars(value: &Value) -> Result<Vec<Value>, String> {
    match value {
        Value::Array(items) if items.is_empty() => {
            Err("an empty list matches nothing; list at least one value".to_owned())
        }
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| scalar(item).map_err(|e| format!("list item {}: {e}", i + 1)))
            .collect(),
        _ => scalar(value).map(|s| vec![s]),
    }
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

impl Test {
    /// `value` is `None` when the path is missing: then only `exists: false` holds.
    fn holds(&self, value: Option<&Value>) -> bool {
        let Some(value) = value else {
            return matches!(self, Test::Exists(false));
        };
        match self {
            Test::AnyOf(wanted) => wanted.iter().any(|w| scalar_eq(w, value)),
            Test::NoneOf(unwanted) => !unwanted.iter().any(|u| scalar_eq(u, value)),
            Test::Exists(wanted) => *wanted,
            Test::Compare(direction, or_equal, bound) => match value {
                Value::Number(n) => match number_cmp(n, bound) {
                    Some(Ordering::Equal) => *or_equal,
                    Some(ordering) => ordering == *direction,
                    None => false,
                },
                _ => false,
            },
            Test::Prefix(prefix) => value
                .as_str()
                .is_some_and(|s| s.starts_with(prefix.as_str())),
            Test::Suffix(suffix) => value.as_str().is_some_and(|s| s.ends_with(suffix.as_str())),
            Test::Contains(needle) => match (value, needle) {
                (Value::String(s), Value::String(n)) => s.contains(n.as_str()),
                (Value::Array(items), _) => items.iter().any(|item| scalar_eq(needle, item)),
                _ => false,
            },
        }
    }
}

/// JSON equality for a compiled scalar; numbers compare by value.
fn scalar_eq(wanted: &Value, actual: &Value) -> bool {
    match (wanted, actual) {
        (Value::Number(a), Value::Number(b)) => number_cmp(a, b) == Some(Ordering::Equal),
        (Value::String(a), Value::String(b)) => a == b,
        (Value::Bool(a), Value::Bool(b)) => a == b,
        (Value::Null, Value::Null) => true,
        _ => false,
    }
}

/// Integers compare exactly (Stripe amounts can exceed f64's 2^53); anything
/// else as f64.
fn number_cmp(a: &Number, b: &Number) -> Option<Ordering> {
    if let (Some(a), Some(b)) = (a.as_i64(), b.as_i64()) {
        return Some(a.cmp(&b));
    }
    if let (Some(a), Some(b)) = (a.as_u64(), b.as_u64()) {
        return Some(a.cmp(&b));
    }
    a.as_f64()?.partial_cmp(&b.as_f64()?)
}

/// A pattern where `*` matches any run of characters, dots and nothing
/// included. Matching is linear: with `*` as the only wildcard, taking the
/// leftmost occurrence of each literal is always right, so nothing backtracks.
#[derive(Debug, Clone)]
pub(crate) struct Glob {
    /// The literals between the stars; a single one when there is no star.
    parts: Vec<String>,
}

impl Glob {
    pub(crate) fn new(pattern: &str) -> Glob {
        Glob {
            parts: pattern.split('*').map(str::to_owned).collect(),
        }
    }

    pub(crate) fn matches(&self, text: &str) -> bool {
        let (first, rest) = match self.parts.split_first() {
            Some(split) => split,
            None => return false,
        };
        let Some((last, middle)) = rest.split_last() else {
            return text == first;
        };
        let Some(text) = text.strip_prefix(first.as_str()) else {
            return false;
        };
        let Some(mut text) = text.strip_suffix(last.as_str()) else {
            return false;
        };
        for part in middle {
            match text.find(part.as_str()) {
                Some(at) => text = &text[at + part.len()..],
                None => return false,
            }
        }
        true
    }
}

#[cfg(test)]
mod admits_type_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn admits_type_looks_only_at_type_conditions() {
        let when = |conditions: Value| {
            let pairs: Vec<(String, Value)> = conditions
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            When::compile(&pairs).unwrap()
        };
        let paid = when(json!({"type": ["checkout.session.*"], "payment_status": "paid"}));
        assert!(paid.admits_type("checkout.session.completed"));
        assert!(!paid.admits_type("payment_intent.succeeded"));
        let any = when(json!({"data.object.currency": "eur"}));
        assert!(any.admits_type("anything.at_all"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[track_caller]
    fn check_glob(pattern: &str, text: &str, want: bool) {
        assert_eq!(
            Glob::new(pattern).matches(text),
            want,
            "glob {pattern:?} on {text:?}"
        );
    }

    #[test]
    fn globs() {
        check_glob(
            "checkout.session.completed",
            "checkout.session.completed",
            true,
        );
        check_glob(
            "checkout.session.completed",
            "checkout.session.completed.x",
            false,
        );
        check_glob("checkout.session.completed", "checkout.session", false);
        check_glob("checkout.session.*", "checkout.session.completed", true);
        check_glob(
            "checkout.session.*",
            "checkout.session.async_payment_succeeded",
            true,
        );
        check_glob("checkout.session.*", "checkout.session.", true);
        check_glob("checkout.session.*", "checkout.sessions.completed", false);
        check_glob("checkout.session.*", "payment_intent.succeeded", false);
        check_glob("*", "", true);
        check_glob("*", "anything.at.all", true);
        check_glob("*.succeeded", "payment_intent.succeeded", true);
        check_glob(
            "*.succeeded",
            "checkout.session.async_payment_succeeded",
            false,
        );
        check_glob(
            "*succeeded",
            "checkout.session.async_payment_succeeded",
            true,
        );
        check_glob("checkout.*.completed", "checkout.session.completed", true);
        check_glob("checkout.*.completed", "checkout.a.b.completed", true);
        check_glob("checkout.*.completed", "checkout.completed", false);
        check_glob("a*a", "a", false);
        check_glob("a*a", "aa", true);
        check_glob("a**b", "ab", true);
        check_glob("*a*b*", "xxbxxaxx", false);
        check_glob("*a*b*", "xxaxxbxx", true);
        check_glob("", "", true);
        // Many stars over a long near-miss: must finish at once.
        let text = "a".repeat(10_000);
        check_glob(&format!("{}b", "*a".repeat(50)), &text, false);
    }

    /// A Checkout Session event, shaped as Stripe sends it (trimmed).
    fn event() -> Value {
        json!({
            "id": "evt_1PgZ3kLkdIwHu7ixQ0K2fYtS",
            "object": "event",
            "type": "checkout.session.completed",
            "livemode": false,
            "created": 1721954100,
            "data": {
                "object": {
                    "id": "cs_test_a1b2",
                    "object": "checkout.session",
                    "amount_total": 3000,
                    "currency": "eur",
                    "customer_details": { "email": "jenny@example.com", "phone": null },
                    "metadata": { "channel": "web", "order_ref": "1042" },
                    "payment_method_types": ["card", "sepa_debit"],
                    "payment_status": "paid",
                    "shipping_options": [{ "shipping_amount": 500 }],
                    "total_details": { "amount_discount": 0.0 }
                }
            }
        })
    }

    fn when(conditions: Value) -> Result<When, Vec<String>> {
        let pairs: Vec<(String, Value)> = conditions
            .as_object()
            .expect("conditions are a map")
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        When::compile(&pairs)
    }

    #[track_caller]
    fn check(conditions: Value, want: bool) {
        let compiled = when(conditions.clone()).unwrap_or_else(|e| panic!("{conditions}: {e:?}"));
        assert_eq!(compiled.matches(&event()), want, "when {conditions}");
    }

    #[test]
    fn keys() {
        check(json!({}), true);
        check(json!({ "type": "checkout.session.completed" }), true);
        check(json!({ "type": "checkout.session.*" }), true);
        check(json!({ "type": "*" }), true);
        check(json!({ "type": "payment_intent.*" }), false);
        check(
            json!({ "type": ["invoice.paid", "checkout.session.completed"] }),
            true,
        );
        check(
            json!({ "type": ["invoice.paid", "*.async_payment_succeeded"] }),
            false,
        );
        check(json!({ "payment_status": "paid" }), true);
        check(json!({ "payment_status": "unpaid" }), false);
        check(json!({ "livemode": false }), true);
        check(json!({ "livemode": true }), false);
        check(json!({ "data.object.currency": "eur" }), true);
        check(json!({ "data.object.metadata.channel": "web" }), true);
        check(json!({ "data.object.metadata.channel": "pos" }), false);
        check(
            json!({ "data.object.payment_method_types.1": "sepa_debit" }),
            true,
        );
        check(
            json!({ "data.object.payment_method_types.2": { "exists": false } }),
            true,
        );
        check(
            json!({ "data.object.shipping_options.0.shipping_amount": 500 }),
            true,
        );
        // Every condition must hold.
        check(
            json!({ "type": "checkout.session.completed", "payment_status": "unpaid" }),
            false,
        );
        check(
            json!({ "type": "invoice.paid", "payment_status": "paid" }),
            false,
        );
        check(
            json!({ "type": "checkout.session.*", "data.object.currency": "eur" }),
            true,
        );
    }

    #[test]
    fn values() {
        // Numbers compare by value, strictly by type.
        check(json!({ "data.object.amount_total": 3000 }), true);
        check(json!({ "data.object.amount_total": 3000.0 }), true);
        check(json!({ "data.object.amount_total": "3000" }), false);
        check(json!({ "data.object.metadata.order_ref": 1042 }), false);
        check(json!({ "data.object.metadata.order_ref": "1042" }), true);
        check(
            json!({ "data.object.total_details.amount_discount": 0 }),
            true,
        );
        // Any of.
        check(json!({ "data.object.currency": ["usd", "eur"] }), true);
        check(json!({ "data.object.currency": ["usd", "gbp"] }), false);
        // Null is a value.
        check(json!({ "data.object.customer_details.phone": null }), true);
        check(json!({ "data.object.customer_details.email": null }), false);
        check(
            json!({ "data.object.customer_details.phone": { "exists": true } }),
            true,
        );
        // A scalar never equals a list or a map.
        check(json!({ "data.object.payment_method_types": "card" }), false);
        check(json!({ "data.object.metadata": "web" }), false);
    }

    #[test]
    fn operators() {
        let amount = "data.object.amount_total";
        let currency = "data.object.currency";
        let cases = [
            (json!({ "eq": 3000 }), amount, true),
            (json!({ "eq": 2999 }), amount, false),
            (json!({ "not": 2999 }), amount, true),
            (json!({ "not": 3000 }), amount, false),
            (json!({ "not": ["usd", "gbp"] }), currency, true),
            (json!({ "not": ["usd", "eur"] }), currency, false),
            (json!({ "in": ["usd", "eur"] }), currency, true),
            (json!({ "in": ["usd"] }), currency, false),
            (json!({ "not_in": ["usd"] }), currency, true),
            (json!({ "not_in": ["eur"] }), currency, false),
            (json!({ "exists": true }), currency, true),
            (json!({ "exists": false }), currency, false),
            (json!({ "gt": 2999 }), amount, true),
            (json!({ "gt": 3000 }), amount, false),
            (json!({ "gte": 3000 }), amount, true),
            (json!({ "gte": 3000.5 }), amount, false),
            (json!({ "lt": 3001 }), amount, true),
            (json!({ "lt": 3000 }), amount, false),
            (json!({ "lte": 3000 }), amount, true),
            (json!({ "lte": -1 }), amount, false),
            (json!({ "gte": 1000, "lt": 5000 }), amount, true),
            (json!({ "gte": 1000, "lt": 2000 }), amount, false),
            (json!({ "gt": 0 }), currency, false),
            (json!({ "prefix": "cs_test_" }), "data.object.id", true),
            (json!({ "prefix": "cs_live_" }), "data.object.id", false),
            (
                json!({ "suffix": "@example.com" }),
                "data.object.customer_details.email",
                true,
            ),
            (
                json!({ "suffix": "@example.org" }),
                "data.object.customer_details.email",
                false,
            ),
            (json!({ "prefix": "3" }), amount, false),
            (
                json!({ "contains": "@" }),
                "data.object.customer_details.email",
                true,
            ),
            (
                json!({ "contains": "#" }),
                "data.object.customer_details.email",
                false,
            ),
            (
                json!({ "contains": "sepa_debit" }),
                "data.object.payment_method_types",
                true,
            ),
            (
                json!({ "contains": "ideal" }),
                "data.object.payment_method_types",
                false,
            ),
            (json!({ "contains": 3 }), amount, false),
        ];
        for (ops, path, want) in cases {
            check(json!({ path: ops }), want);
        }
    }

    #[test]
    fn missing_paths_fail_all_but_exists_false() {
        for path in [
            "data.object.nope",
            "data.object.currency.deeper",
            "data.object.metadata.0",
        ] {
            check(json!({ path: { "exists": false } }), true);
            check(json!({ path: { "exists": true } }), false);
            check(json!({ path: null }), false);
            check(json!({ path: "eur" }), false);
            check(json!({ path: { "not": "eur" } }), false);
            check(json!({ path: { "not_in": ["eur"] } }), false);
            check(json!({ path: { "lt": 1 } }), false);
            check(json!({ path: { "exists": false, "not": "x" } }), false);
        }
        let compiled = when(json!({ "payment_status": "paid", "type": "*" })).unwrap();
        assert!(!compiled.matches(&json!({ "object": "event" })));
        assert!(!compiled.matches(&json!("not even an object")));
    }

    #[track_caller]
    fn check_error(conditions: Value, want: &[&str]) {
        let errors = match when(conditions.clone()) {
            Ok(_) => panic!("{conditions} compiled"),
            Err(errors) => errors,
        };
        assert_eq!(errors.len(), want.len(), "{conditions}: {errors:#?}");
        for (error, want) in errors.iter().zip(want) {
            assert!(
                error.contains(want),
                "{conditions}: {error:?} lacks {want:?}"
            );
        }
    }

    #[test]
    fn compile_errors() {
        check_error(
            json!({ "data.object.amount_total": { "gtee": 5 } }),
            &["condition `data.object.amount_total`: unknown operator `gtee` (expected one of eq,"],
        );
        check_error(
            json!({ "data.object.amount_total": { "gte": "abc" } }),
            &["`gte` compares numbers, got a string"],
        );
        check_error(
            json!({ "data.object.x": { "exists": 3 } }),
            &["`exists` takes true or false, got a number"],
        );
        check_error(
            json!({ "data.object.x": { "prefix": 3 } }),
            &["`prefix` takes a string"],
        );
        check_error(
            json!({ "data.object.x": { "in": "eur" } }),
            &["`in`: expected a list, got a string"],
        );
        check_error(
            json!({ "data.object.x": { "not_in": [] } }),
            &["`not_in`: an empty list"],
        );
        check_error(
            json!({ "data.object.x": { "eq": ["a"] } }),
            &["`eq`: expected a single value"],
        );
        check_error(
            json!({ "data.object.x": { "contains": {} } }),
            &["`contains`: expected a single value"],
        );
        check_error(
            json!({ "data.object.x": { "not": [["a"]] } }),
            &["`not`: list item 1"],
        );
        check_error(
            json!({ "data.object.x": {} }),
            &["condition `data.object.x`: empty operator map"],
        );
        check_error(
            json!({ "data.object.x": [] }),
            &["an empty list matches nothing"],
        );
        check_error(
            json!({ "data.object.x": ["a", { "b": 1 }] }),
            &["list item 2: expected a single value"],
        );
        check_error(
            json!({ "data..x": 1 }),
            &["condition `data..x`: a path needs non-empty segments"],
        );
        check_error(json!({ "": 1 }), &["condition ``: a path needs"]);
        check_error(
            json!({ "type": { "in": ["a"] } }),
            &["condition `type`: operator maps are not supported for `type`"],
        );
        check_error(
            json!({ "type": 3 }),
            &["condition `type`: expected an event type"],
        );
        check_error(
            json!({ "type": [] }),
            &["condition `type`: an empty list matches no event"],
        );
        check_error(
            json!({ "type": ["a", ""] }),
            &["an event type cannot be empty"],
        );
        check_error(
            json!({ "payment_status": { "nope": 1 } }),
            &["condition `payment_status`: unknown operator `nope`"],
        );
        // Every problem, not the first.
        check_error(
            json!({
                "type": 3,
                "data.object.amount_total": { "gtee": 5, "lt": "x" },
                "livemode": { "exists": "yes" },
                "data..x": { "eq": [] },
            }),
            &[
                "condition `type`",
                "condition `data.object.amount_total`: unknown operator `gtee`",
                "condition `data.object.amount_total`: `lt` compares numbers",
                "condition `livemode`: `exists` takes true or false",
                "condition `data..x`: a path needs",
                "condition `data..x`: `eq`: expected a single value",
            ],
        );
    }
}
