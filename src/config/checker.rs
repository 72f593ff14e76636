//! The checker: one pass over one file that deserializes each section on
//! its own and checks every value, collecting every problem with its line
//! and column rather than stopping at the first (duplicate keys, unknown
//! keys, bad values, bounds that would refuse every request).
//!
//! Sinks and routes are checked in `routes`, `${VAR}` in `interpolate`.

use std::collections::{BTreeMap, HashMap};

use serde::de::Error as _;
use serde_saphyr::{Location, MessageFormatter as _, Spanned};

use super::env::Env;
use super::interpolate::UnsetVars;
use super::routes::sink_keys_expected;
use super::schema::{RouteConfig, ServerConfig, StoreConfig, StripeConfig};
use super::yaml::{De, DeError, Node};
use super::{ConfigError, ConfigProblem};
use crate::sinks::SinkConfig;

const TOP_LEVEL_KEYS: &str = "server, stripe, store, sinks, routes";
pub(super) const ROUTE_KEYS: &str = "`name`, `when`, `emit`, `to`";

/// The checked sections, before they become a [`Config`].
pub(super) struct Parts {
    pub(super) server: ServerConfig,
    pub(super) stripe: StripeConfig,
    pub(super) sinks: BTreeMap<String, SinkConfig>,
    pub(super) routes: Vec<RouteConfig>,
    pub(super) store: StoreConfig,
}

/// One pass over one file, collecting every problem rather than stopping at
/// the first.
pub(super) struct Checker<'a> {
    /// The file as the user named it, for places.
    pub(super) file: String,
    pub(super) text: &'a str,
    /// Sorted into file order at the end.
    pub(super) problems: Vec<(Pos, ConfigProblem)>,
    /// `(value, as written)` for every scalar that `${VAR}` changed, so that
    /// no problem message repeats an interpolated secret.
    pub(super) expanded: Vec<(String, String)>,
    pub(super) unset: UnsetVars,
    /// Scalars holding an unset variable: later problems placed there are
    /// about the empty text standing in for it, not the file; the unset
    /// variable is the problem (or, allowed, none).
    pub(super) unresolved: Vec<Pos>,
}

/// Checks the whole file: its sections, or every problem found, in file
/// order. `file` names the file in places.
pub(super) fn check(
    text: &str,
    file: &str,
    env: &Env,
    unset: UnsetVars,
) -> Result<Parts, ConfigError> {
    let mut checker = Checker {
        file: file.to_owned(),
        text,
        problems: Vec::new(),
        expanded: Vec::new(),
        unset,
        unresolved: Vec::new(),
    };
    match checker.config(env) {
        Some(parts) if checker.problems.is_empty() => Ok(parts),
        _ => Err(checker.finish()),
    }
}

impl<'a> Checker<'a> {
    pub(super) fn place(&self, at: impl Into<Pos>) -> String {
        let at = at.into();
        if at.line == 0 {
            self.file.clone()
        } else {
            format!("{}:{}:{}", self.file, at.line, at.column)
        }
    }

    pub(super) fn problem(&mut self, at: impl Into<Pos>, message: impl Into<String>) {
        let at = at.into();
        // A value that holds an unset variable is not judged.
        if self.unresolved.contains(&at) {
            return;
        }
        let mut message = message.into();
        for (value, written) in &self.expanded {
            if !value.is_empty() && message.contains(value.as_str()) {
                message = message.replace(value.as_str(), written);
            }
        }
        let place = self.place(at);
        self.problems.push((at, ConfigProblem { place, message }));
    }

    fn finish(mut self) -> ConfigError {
        self.problems.sort_by_key(|&(at, _)| at);
        ConfigError {
            problems: self.problems.into_iter().map(|(_, p)| p).collect(),
        }
    }

    /// Parses the whole file; `None` when there is nothing to check further.
    fn config(&mut self, env: &Env) -> Option<Parts> {
        let mut root = self.tree()?;
        self.duplicates(&root, true);
        self.interpolate(&mut root, env);
        let Node::Map(entries) = &root.value else {
            self.problem(
                root.referenced,
                "the config must be a map with `sinks:` and `routes:` at the top level",
            );
            return None;
        };

        let mut parts = Parts {
            server: ServerConfig::default(),
            stripe: StripeConfig::default(),
            sinks: BTreeMap::new(),
            routes: Vec::new(),
            store: StoreConfig::default(),
        };
        let (mut sinks, mut routes) = (None, None);
        for (key, value) in entries {
            match key.value.as_str() {
                Some("server") => parts.server = self.server(value).unwrap_or_default(),
                Some("stripe") => {
                    parts.stripe = self.section(value, "`stripe`").unwrap_or_default();
                }
                Some("store") => {
                    parts.store = self.section(value, "`store`").unwrap_or_default();
                }
                Some("sinks") => sinks = Some(value),
                Some("routes") => routes = Some(value),
                _ => self.problem(
                    key.referenced,
                    format!(
                        "unknown key `{}` at the top level (expected one of {TOP_LEVEL_KEYS})",
                        key.value.text()
                    ),
                ),
            }
        }

        // Names of every sink written, even one whose settings are broken,
        // so that a route naming it is not also reported.
        let mut defined = Vec::new();
        match sinks {
            Some(node) => parts.sinks = self.sinks(node, &mut defined),
            None => self.problem(
                root.referenced,
                "no `sinks:`: define where records go, e.g. `sinks: { console: { type: stdout } }`",
            ),
        }
        match routes {
            Some(node) => parts.routes = self.routes(node, &defined),
            None => self.problem(
                root.referenced,
                "no `routes:`: add a list of routes, each with `name`, `when`, `emit` and `to`",
            ),
        }
        Some(parts)
    }

    /// The YAML as a tree with places, or the syntax error.
    fn tree(&mut self) -> Option<Spanned<Node>> {
        let only_comments = self.text.lines().all(|line| {
            let line = line.trim();
            line.is_empty() || line.starts_with('#')
        });
        if only_comments {
            self.problem(Pos::UNKNOWN, EMPTY);
            return None;
        }
        let options = serde_saphyr::options! {
            // Duplicates are reported here, with both places, among all
            // other problems.
            duplicate_keys: serde_saphyr::DuplicateKeyPolicy::PassThrough,
            with_snippet: false,
        };
        match serde_saphyr::from_str_with_options::<Spanned<Node>>(self.text, options) {
            Ok(root) if root.value == Node::Null => {
                self.problem(Pos::UNKNOWN, EMPTY);
                None
            }
            Ok(root) => Some(root),
            Err(e) => {
                let mut message = serde_saphyr::UserMessageFormatter
                    .format_message(e.without_snippet())
                    .into_owned();
                if !self.text.ends_with('\n') {
                    message.push_str(
                        " (the file does not end with a newline: was it cut short or saved half-written?)",
                    );
                }
                self.problem(e.location().unwrap_or(Location::UNKNOWN), message);
                None
            }
        }
    }

    /// Reports keys written twice in any map; YAML requires unique keys, and
    /// taking either silently would hide a mistake.
    fn duplicates(&mut self, node: &Spanned<Node>, top: bool) {
        match &node.value {
            Node::Seq(items) => items.iter().for_each(|item| self.duplicates(item, false)),
            Node::Map(entries) => {
                let mut seen: HashMap<String, Location> = HashMap::new();
                for (key, value) in entries {
                    let name = key.value.text();
                    if let Some(&first) = seen.get(&name) {
                        let first = self.place(first);
                        let message = if top && name == "sinks" {
                            format!(
                                "`sinks:` appears twice (first at {first}): merge them into one map"
                            )
                        } else {
                            format!(
                                "duplicate key `{name}` (first at {first}): keys must be unique, rename or remove one"
                            )
                        };
                        self.problem(key.referenced, message);
                    } else {
                        seen.insert(name.clone(), key.referenced);
                    }
                    if top && name == "sinks" {
                        self.duplicate_sinks(value);
                    } else {
                        self.duplicates(value, false);
                    }
                }
            }
            _ => {}
        }
    }

    fn duplicate_sinks(&mut self, node: &Spanned<Node>) {
        let Node::Map(entries) = &node.value else {
            return;
        };
        let mut seen: HashMap<String, Location> = HashMap::new();
        for (key, value) in entries {
            let name = key.value.text();
            if let Some(&first) = seen.get(&name) {
                let first = self.place(first);
                self.problem(
                    key.referenced,
                    format!(
                        "sink `{name}` is defined twice (first at {first}): rename or remove one"
                    ),
                );
            } else {
                seen.insert(name, key.referenced);
            }
            self.duplicates(value, false);
        }
    }
}

const EMPTY: &str = "the config is empty: define `sinks:` and `routes:` (the repository's routes.yaml is a working start)";

/// A 1-based line and column; zero when unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Pos {
    pub(super) line: u64,
    pub(super) column: u64,
}

impl Pos {
    pub(super) const UNKNOWN: Pos = Pos { line: 0, column: 0 };
}

impl From<Location> for Pos {
    fn from(at: Location) -> Pos {
        Pos {
            line: at.line(),
            column: at.column(),
        }
    }
}

impl Checker<'_> {
    fn server(&mut self, node: &Spanned<Node>) -> Option<ServerConfig> {
        let mut path_ok = true;
        if let Some(path) = node.value.get("path")
            && let Node::Str(text) = &path.value
            && !text.starts_with('/')
        {
            let message = format!("`server.path` must start with `/`: write `/{text}`");
            self.problem(path.referenced, message);
            path_ok = false;
        }
        let server: ServerConfig = self.section(node, "`server`")?;
        // Bounds that would refuse every request are mistakes, said here so
        // that `check` catches them.
        let place = |key: &str| {
            node.value
                .get(key)
                .map_or(node.referenced, |v| v.referenced)
        };
        let mut bounds_ok = true;
        if server.max_connections == 0 {
            self.problem(
                place("max_connections"),
                "`server.max_connections` must be at least 1 (default 1024)",
            );
            bounds_ok = false;
        }
        if server.read_timeout.is_zero() {
            self.problem(
                place("read_timeout"),
                "`server.read_timeout` must be more than 0s (default 10s)",
            );
            bounds_ok = false;
        }
        if server.body_buffer < server.max_body {
            let at = if node.value.get("body_buffer").is_some() {
                place("body_buffer")
            } else {
                place("max_body")
            };
            self.problem(
                at,
                format!(
                    "`server.body_buffer` ({} bytes) is less than `server.max_body` ({} bytes), so \
                     the largest bodies could never be read: make body_buffer at least max_body",
                    server.body_buffer, server.max_body
                ),
            );
            bounds_ok = false;
        }
        (path_ok && bounds_ok).then_some(server)
    }

    /// A section that may be left out or empty (`server:`); its defaults then.
    fn section<T: serde::de::DeserializeOwned + Default>(
        &mut self,
        node: &Spanned<Node>,
        what: &str,
    ) -> Option<T> {
        if node.value == Node::Null {
            return Some(T::default());
        }
        self.typed(node, what, None)
    }

    /// Deserializes `T`, reporting every bad field. Serde stops at a
    /// struct's first error, so on failure each field is tried again alone
    /// (with the enum tag, `tag`, when `T` is internally tagged) to find the
    /// others too.
    pub(super) fn typed<T: serde::de::DeserializeOwned>(
        &mut self,
        node: &Spanned<Node>,
        what: &str,
        tag: Option<&str>,
    ) -> Option<T> {
        let first = match T::deserialize(De(node)) {
            Ok(value) => return Some(value),
            Err(e) => e,
        };
        let mut errors: Vec<DeError> = Vec::new();
        if let Node::Map(entries) = &node.value {
            let tag = tag.map(|t| entries.iter().find(|(k, _)| k.value.as_str() == Some(t)));
            // What the tag alone says (a missing field, an unknown type):
            // any other error of a probe is about the probe's one field.
            let tag_alone = tag.and_then(|t| {
                let alone = Node::Map(t.into_iter().cloned().collect());
                let alone = Spanned::new(alone, node.referenced, node.defined);
                T::deserialize(De(&alone)).err()
            });
            // The tag says what the other keys mean: missing or wrong, it is
            // the one problem said, at its value.
            if let Some(mut error) = tag_alone
                .as_ref()
                .filter(|e| tag == Some(None) || !e.message.starts_with("missing field"))
                .map(|e| DeError::custom(&e.message))
            {
                error.at = tag.flatten().map(|(_, value)| value.referenced);
                self.report(error, node, what);
                return None;
            }
            let tag = tag.flatten();
            let tag_alone = tag_alone.map(|e| e.message);
            for entry in entries {
                if tag.is_some_and(|t| std::ptr::eq(t, entry)) {
                    continue;
                }
                let alone = Node::Map(tag.into_iter().chain([entry]).cloned().collect());
                let probe = Spanned::new(alone, node.referenced, node.defined);
                if let Err(mut e) = T::deserialize(De(&probe)) {
                    // Internally tagged enums (sinks) buffer their input, so
                    // their errors come back without a place of their own,
                    // with the whole map's; the probe gives it, and messages
                    // need not repeat the value (which may be a secret) to
                    // be placed. An unknown key is found by its name, a
                    // duplicate tag is the map's.
                    if tag.is_some()
                        && e.at.is_none_or(|at| at == node.referenced)
                        && !e.message.starts_with("unknown field")
                        && !e.message.starts_with("duplicate field")
                        && tag_alone.as_deref() != Some(e.message.as_str())
                    {
                        e.at = Some(entry.1.referenced);
                    }
                    let known = errors
                        .iter()
                        .any(|k| k.message == e.message && k.at == e.at);
                    if !known && !e.message.starts_with("missing field") {
                        errors.push(e);
                    }
                }
            }
        }
        if errors.is_empty() {
            errors.push(first);
        }
        for error in errors {
            self.report(error, node, what);
        }
        None
    }

    /// Turns a deserialization error into a problem that names `what` and
    /// the field, placed as precisely as the error allows.
    pub(super) fn report(&mut self, error: DeError, node: &Spanned<Node>, what: &str) {
        let message = error.message;
        let entries: &[(Spanned<Node>, Spanned<Node>)] = match &node.value {
            Node::Map(entries) => entries,
            _ => &[],
        };
        let unknown = between(&message, "unknown field `", "`");
        // Internally tagged enums (sinks) buffer their input, so errors from
        // inside them come back without a place: find the key or value that
        // the message names.
        let found = entries.iter().find(|(key, value)| {
            let key_named = unknown == key.value.as_str();
            let at_value = error.at == Some(value.referenced);
            let value_named = value.value.as_str().is_some_and(|v| {
                !v.is_empty()
                    && (message.contains(&format!("{v:?}")) || message.contains(&format!("`{v}`")))
            });
            key_named || at_value || (error.at.is_none() && value_named)
        });
        let at = match (unknown, found) {
            (Some(_), Some((key, _))) => key.referenced,
            (None, Some((_, value))) if error.at.is_none() => value.referenced,
            _ => error.at.unwrap_or(node.referenced),
        };
        let field = found.and_then(|(key, _)| key.value.as_str());

        let text = if let Some(name) = unknown {
            // A sink's own keys (not those of a map inside it, `retry`'s)
            // are its type's and those every sink takes.
            let own_key = entries.iter().any(|(k, _)| k.value.as_str() == Some(name));
            let expected = if what.starts_with("sink ") && own_key {
                sink_keys_expected(&message)
            } else {
                message
                    .split_once(", expected ")
                    .map(|(_, e)| format!("expected {e}"))
                    .unwrap_or_else(|| "it takes no other options".to_owned())
            };
            format!("unknown field `{name}` in {what} ({expected})")
        } else if let Some(variant) = between(&message, "unknown variant `", "`") {
            let expected = message
                .split_once(", expected ")
                .map_or(String::new(), |(_, e)| e.replace('`', ""));
            if field == Some("type") && what.starts_with("sink ") {
                format!("unknown sink type `{variant}` in {what} (expected {expected})")
            } else {
                format!("unknown value `{variant}` in {what} (expected {expected})")
            }
        } else if let Some(name) = between(&message, "missing field `", "`") {
            if name == "type" && what.starts_with("sink ") {
                format!("{what} has no `type`: add one, e.g. `type: jsonl`")
            } else {
                format!("{what} has no `{name}`: add it")
            }
        } else {
            let hint = match field {
                Some("listen") => " (write an address and port, e.g. `127.0.0.1:3000`)",
                Some("url") => " (write a full URL, e.g. `http://127.0.0.1:4000/orders`)",
                _ if message.ends_with("expected a string") => " (put the value in quotes)",
                _ => "",
            };
            match field {
                Some(field) => format!("invalid `{field}` in {what}: {message}{hint}"),
                None => format!("{what}: {message}{hint}"),
            }
        };
        self.problem(at, text);
    }
}

/// The text between `start` and the next `end` in `text`.
fn between<'t>(text: &'t str, start: &str, end: &str) -> Option<&'t str> {
    let (_, rest) = text.split_once(start)?;
    rest.split_once(end).map(|(inside, _)| inside)
}

#[cfg(test)]
#[path = "checker_tests.rs"]
mod tests;
