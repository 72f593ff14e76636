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

use crate::pruned::Keep;

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

    /// Adds to `keep` every path these conditions read (`type` is one of
    /// [`crate::event::Event::keep`]'s).
    pub fn keep(&self, keep: &mut Keep) {
        for condition in &self.conditions {
            if let Condition::Path { path, .. } = condition {
                let keys: Vec<&str> = path.iter().map(|s| s.key.as_str()).collect();
                keep.path(&keys.join("."));
            }
        }
    }

    /// Whether an event of type `kind` can satisfy these conditions at all:
    /// false only when a `type` condition rules it out. Lets the router skip
    /// parsing an event that no route can want.
    pub fn admits_type(&self, kind: &str) -> bool {
        self.conditions.iter().all(|condition| match condition {
            Condition::Type(globs) => globs.iter().any(|g| g.matches(kind)),
            Condition::Path { .. } => true,
        })
    }

    /// Whether `event` (a Stripe event object, whole or as
    /// [`When::keep`] kept it) satisfies every condition.
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
#[path = "rules_tests.rs"]
mod tests;
