//! Checking `sinks:` and `routes:`: names that fit record ids, each sink's
//! settings through its own type, and routes whose `when`, `emit` and `to`
//! hold, each `to` naming a defined sink.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

use super::problems::{Checker, Pos};
use super::schema::{ConditionPlace, Emit, RouteConfig};
use super::yaml::{De, Node};
use crate::sinks::{SinkConfig, SinkKind};

const ROUTE_KEYS: &str = "`name`, `when`, `emit`, `to`";

impl Checker<'_> {
    pub(super) fn sinks(
        &mut self,
        node: &Spanned<Node>,
        defined: &mut Vec<String>,
    ) -> BTreeMap<String, SinkConfig> {
        let mut sinks = BTreeMap::new();
        let Node::Map(entries) = &node.value else {
            self.problem(
                node.referenced,
                "`sinks` must be a map of sink names to settings, e.g. `console: { type: stdout }`",
            );
            return sinks;
        };
        for (key, value) in entries {
            let Some(name) = key.value.as_str() else {
                self.problem(key.referenced, "a sink name must be a string");
                continue;
            };
            if defined.iter().any(|d| d == name) {
                continue; // reported as a duplicate
            }
            defined.push(name.to_owned());
            if let Some(problem) = name_problem("sink", name) {
                self.problem(key.referenced, problem);
            }
            let what = format!("sink `{name}`");
            if !matches!(value.value, Node::Map(_)) {
                self.problem(
                    value.referenced,
                    format!("{what} must be a map with a `type`, e.g. `{{ type: jsonl, path: sinks/{name}.jsonl }}`"),
                );
                continue;
            }
            if let Some(sink) = self.typed::<SinkConfig>(value, &what, Some("type")) {
                self.sink_checks(value, &what, &sink);
                if let SinkKind::Jsonl(jsonl) = &sink.kind {
                    let key = format!("sinks.{name}.path");
                    self.file_path(Some(value), &jsonl.path, &key, &format!("{name}.jsonl"));
                }
                sinks.insert(name.to_owned(), sink);
            }
        }
        sinks
    }

    /// What the sink's type checks beyond deserializing (a template, a
    /// program), each problem placed at its key's value, or inside a
    /// template's text when the value is a `|` block or a one-line scalar.
    fn sink_checks(&mut self, node: &Spanned<Node>, what: &str, sink: &SinkConfig) {
        let base_dir = super::base_dir(Path::new(&self.file));
        for problem in sink.kind.sink_type().check(&base_dir) {
            let Some(value) = node.value.get(problem.key) else {
                continue;
            };
            // A value holding an unset variable (`check --no-env`) is not judged.
            if self.unresolved.contains(&value.referenced.into()) {
                continue;
            }
            let key = problem.key;
            let message = format!("invalid `{key}` in {what}: {}", problem.message);
            match problem.within {
                Some((line, column)) => match self.place_in_text(value, line, column) {
                    Some(at) => self.problem(at, message),
                    None => self.problem(
                        value.referenced,
                        format!("{message} (template line {line}, column {column})"),
                    ),
                },
                None => self.problem(value.referenced, message),
            }
        }
    }

    /// Where `line`:`column` of a scalar's text is in the file: a literal
    /// block (`|`) keeps its lines, shifted by its indentation; a one-line
    /// plain or quoted scalar its columns. `None` for any other shape
    /// (folded, multi-line flow, escapes), whose lines do not map.
    fn place_in_text(&self, value: &Spanned<Node>, line: usize, column: usize) -> Option<Pos> {
        let at = value.referenced;
        let file_lines: Vec<&str> = self.text.lines().collect();
        let start_line = usize::try_from(at.line()).ok()?;
        let start_column = usize::try_from(at.column()).ok()?;
        let first = file_lines.get(start_line.checked_sub(1)?)?;
        let rest: String = first.chars().skip(start_column.checked_sub(1)?).collect();
        // A literal block's place is its first line of text, after the
        // line that ends in `|` (`|-`, `|+`).
        let after_bar = file_lines[..start_line - 1]
            .iter()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(|l| l.trim_end())
            .is_some_and(|l| l.ends_with('|') || l.ends_with("|-") || l.ends_with("|+"));
        let (file_line, file_column) = if after_bar {
            (start_line + line - 1, start_column - 1 + column)
        } else if line == 1 && !rest.contains('\\') {
            let quoted = rest.starts_with('"') || rest.starts_with('\'');
            (start_line, start_column + usize::from(quoted) + column - 1)
        } else {
            return None;
        };
        Some(Pos {
            line: u64::try_from(file_line).ok()?,
            column: u64::try_from(file_column).ok()?,
        })
    }

    /// Every route, those with problems too, as far as they could be read:
    /// a route whose `when` is broken still has its name, its sinks and its
    /// other conditions checked, here and in the later stages.
    pub(super) fn routes(&mut self, node: &Spanned<Node>, defined: &[String]) -> Vec<RouteConfig> {
        let mut routes = Vec::new();
        let items = match &node.value {
            Node::Seq(items) => items.as_slice(),
            _ => {
                self.problem(
                    node.referenced,
                    "`routes` must be a list: start each route with `- name: ...`",
                );
                return routes;
            }
        };
        let mut names: HashMap<String, Location> = HashMap::new();
        for (index, item) in items.iter().enumerate() {
            let Some(route) = self.route(item, index, defined) else {
                continue;
            };
            let at = item
                .value
                .get("name")
                .map_or(item.referenced, |v| v.referenced);
            match names.get(&route.name) {
                _ if route.name.is_empty() => routes.push(route),
                Some(&first) => {
                    let first = self.place(first);
                    self.problem(
                        at,
                        format!(
                            "route name `{}` is used twice (first at {first}): give each route its own name, records are identified by it",
                            route.name
                        ),
                    );
                    // Kept for the later stages' checks: the config has a
                    // problem, so it is never served.
                    routes.push(route);
                }
                None => {
                    names.insert(route.name.clone(), at);
                    routes.push(route);
                }
            }
        }
        routes
    }

    /// One route as far as it can be read, every problem reported; `None`
    /// only when it is not a map. What is broken is left out (a condition,
    /// a sink name) or stands in harmlessly (a missing name is empty, an
    /// unreadable `emit` is `event`): such a route is only fit for further
    /// checks, and its problems keep the config from being served.
    fn route(
        &mut self,
        item: &Spanned<Node>,
        index: usize,
        defined: &[String],
    ) -> Option<RouteConfig> {
        let Node::Map(entries) = &item.value else {
            self.problem(
                item.referenced,
                "a route must be a map with `name`, `when`, `emit` and `to`",
            );
            return None;
        };
        let name = match item.value.get("name").map(|n| (n, &n.value)) {
            Some((node, Node::Str(name))) if !name.trim().is_empty() => {
                if let Some(problem) = name_problem("route", name) {
                    self.problem(node.referenced, problem);
                }
                Some(name.clone())
            }
            Some((node, _)) => {
                self.problem(
                    node.referenced,
                    "a route's `name` must be a non-empty string",
                );
                None
            }
            None => {
                self.problem(
                    item.referenced,
                    format!(
                        "route #{} has no `name`: add one, it names the route in records and logs",
                        index + 1
                    ),
                );
                None
            }
        };
        let label = name.as_ref().map_or_else(
            || format!("route #{}", index + 1),
            |n| format!("route `{n}`"),
        );

        let mut route = RouteConfig {
            name: name.unwrap_or_default(),
            place: self.place(item.referenced),
            when: Vec::new(),
            when_places: Vec::new(),
            emit: Emit::Event,
            emit_place: self.place(item.referenced),
            to: Vec::new(),
        };
        for (key, value) in entries {
            match key.value.as_str() {
                Some("name") => {}
                Some("when") => (route.when, route.when_places) = self.when(value, &label),
                Some("emit") => {
                    route.emit_place = self.place(value.referenced);
                    match Emit::deserialize(De(value)) {
                        Ok(emit) => route.emit = emit,
                        Err(_) => self.problem(
                            value.referenced,
                            format!("`emit` in {label} must be `order` or `event`"),
                        ),
                    }
                }
                Some("to") => route.to = self.to(value, &label, defined),
                _ => self.problem(
                    key.referenced,
                    format!(
                        "unknown field `{}` in {label} (expected one of {ROUTE_KEYS})",
                        key.value.text()
                    ),
                ),
            }
        }
        let missing = [
            (
                "when",
                "add conditions, e.g. `when: { type: checkout.session.completed }`, or `when: {}` for every event",
            ),
            ("emit", "add `emit: order` or `emit: event`"),
            ("to", "list the sinks it delivers to, e.g. `to: [orders]`"),
        ];
        for (key, fix) in missing {
            if item.value.get(key).is_none() {
                self.problem(item.referenced, format!("{label} has no `{key}`: {fix}"));
            }
        }
        Some(route)
    }

    /// The conditions that could be read, with their places; each one that
    /// cannot is reported and left out.
    fn when(
        &mut self,
        node: &Spanned<Node>,
        label: &str,
    ) -> (Vec<(String, serde_json::Value)>, Vec<ConditionPlace>) {
        let (mut conditions, mut places) = (Vec::new(), Vec::new());
        let Node::Map(entries) = &node.value else {
            self.problem(
                node.referenced,
                format!("`when` in {label} must be a map of conditions, e.g. `{{ type: checkout.session.completed }}`"),
            );
            return (conditions, places);
        };
        for (key, value) in entries {
            let Some(name) = key.value.as_str() else {
                self.problem(
                    key.referenced,
                    format!("a condition key in {label} must be a string"),
                );
                continue;
            };
            // A condition on an unset variable (allowed, `check --no-env`)
            // stands on empty text: nothing can be said about it.
            if self.holds_unresolved(value) {
                continue;
            }
            match serde_json::Value::deserialize(De(value)) {
                Ok(json) => {
                    let operators = match &value.value {
                        Node::Map(ops) => ops
                            .iter()
                            .map(|(op, _)| (op.value.text(), self.place(op.referenced)))
                            .collect(),
                        _ => Vec::new(),
                    };
                    let items = match &value.value {
                        Node::Seq(items) => {
                            items.iter().map(|i| self.place(i.referenced)).collect()
                        }
                        _ => Vec::new(),
                    };
                    conditions.push((name.to_owned(), json));
                    places.push(ConditionPlace {
                        key: self.place(key.referenced),
                        operators,
                        items,
                    });
                }
                Err(e) => self.report(e, value, &format!("`when.{name}` in {label}")),
            }
        }
        (conditions, places)
    }

    /// The sink names of `to` that are defined; every other is reported.
    fn to(&mut self, node: &Spanned<Node>, label: &str, defined: &[String]) -> Vec<String> {
        let names: Vec<&Spanned<Node>> = match &node.value {
            Node::Str(_) => vec![node],
            Node::Seq(items) => items.iter().collect(),
            _ => {
                self.problem(
                    node.referenced,
                    format!(
                        "`to` in {label} must be a sink name or a list of them, e.g. `to: [orders]`"
                    ),
                );
                return Vec::new();
            }
        };
        if names.is_empty() {
            self.problem(
                node.referenced,
                format!("{label} sends to no sink: name at least one in `to`, e.g. `to: [orders]`"),
            );
            return Vec::new();
        }
        let mut to: Vec<String> = Vec::new();
        for name in names {
            let Some(text) = name.value.as_str() else {
                self.problem(
                    name.referenced,
                    format!("`to` in {label} must list sink names"),
                );
                continue;
            };
            if to.iter().any(|t| t == text) {
                self.problem(
                    name.referenced,
                    format!("{label} names sink `{text}` twice: it would receive each record twice, remove one"),
                );
            } else if !defined.iter().any(|d| d == text) {
                let known = if defined.is_empty() {
                    "no sinks are defined".to_owned()
                } else {
                    let mut known = defined.to_vec();
                    known.sort();
                    format!("defined: {}", known.join(", "))
                };
                self.problem(
                    name.referenced,
                    format!("{label} sends to sink `{text}`, which is not defined: add it under `sinks:` or fix the name ({known})"),
                );
            } else {
                to.push(text.to_owned());
            }
        }
        to
    }
}

impl Checker<'_> {
    /// Whether `node` or a value inside it holds an unset variable.
    fn holds_unresolved(&self, node: &Spanned<Node>) -> bool {
        match &node.value {
            Node::Seq(items) => items.iter().any(|item| self.holds_unresolved(item)),
            Node::Map(entries) => entries.iter().any(|(_, v)| self.holds_unresolved(v)),
            _ => self.unresolved.contains(&node.referenced.into()),
        }
    }
}

/// Why `name` cannot name a route or sink, with a name that can. Names go
/// into record ids (`<event id>:<route>`), sent as Standard Webhooks message
/// ids and HTTP header values, which allow no `.`, `:` or spaces.
fn name_problem(kind: &str, name: &str) -> Option<String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if name.chars().all(allowed) {
        return None;
    }
    let mut suggested = String::with_capacity(name.len());
    for c in name.chars() {
        if allowed(c) {
            suggested.push(c);
        } else if !suggested.ends_with('-') {
            suggested.push('-');
        }
    }
    let suggested = match suggested.trim_matches('-') {
        "" => kind,
        trimmed => trimmed,
    };
    Some(format!(
        "{kind} name `{name}` may only hold ASCII letters, digits, `-` and `_` (it becomes part of \
         record ids, which consumers receive as Standard Webhooks message ids): rename it, e.g. \
         `{suggested}`"
    ))
}

#[cfg(test)]
#[path = "routes_tests.rs"]
mod tests;
