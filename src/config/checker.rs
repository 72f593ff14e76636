//! The checker: one pass over one file that reads the YAML tree, reports
//! keys written twice, fills in `${VAR}`, then deserializes each section on
//! its own and checks every value, collecting every problem with its line
//! and column rather than stopping at the first (unknown keys, bad values,
//! bounds that would refuse every request).
//!
//! Sinks and routes are checked in `routes`; problems are collected and
//! serde's errors placed in `problems`.

use std::collections::{BTreeMap, HashMap};

use serde_saphyr::{Location, MessageFormatter as _, Spanned};

use super::env::Env;
use super::interpolate::{UnsetVars, expand};
use super::problems::{Checker, ConfigProblem, Pos};
use super::schema::{
    LEASE_MAX, LEASE_MIN, POOL_SIZE_MAX, RouteConfig, ServerConfig, StoreConfig, StripeConfig,
};
use super::yaml::Node;
use crate::sinks::SinkConfig;

const TOP_LEVEL_KEYS: &str = "server, stripe, store, sinks, routes";

/// The checked sections, before they become a [`super::Config`].
pub(super) struct Parts {
    pub(super) server: ServerConfig,
    pub(super) stripe: StripeConfig,
    pub(super) sinks: BTreeMap<String, SinkConfig>,
    pub(super) routes: Vec<RouteConfig>,
    pub(super) store: StoreConfig,
}

/// Checks the whole file: its sections as far as they could be read (`None`
/// when the file is no map at all), every problem found, in file order, and
/// the names of the unset variables that `${VAR}`s name, sorted.
/// `file` names the file in places.
pub(super) fn check(
    text: &str,
    file: &str,
    env: &Env,
    unset: UnsetVars,
) -> (Option<Parts>, Vec<ConfigProblem>, Vec<String>) {
    let mut checker = Checker {
        file: file.to_owned(),
        text,
        problems: Vec::new(),
        expanded: Vec::new(),
        unset,
        unresolved: Vec::new(),
        unset_names: Vec::new(),
    };
    let parts = checker.config(env);
    let mut unset_names = std::mem::take(&mut checker.unset_names);
    unset_names.sort();
    unset_names.dedup();
    (parts, checker.finish().problems, unset_names)
}

impl<'a> Checker<'a> {
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
        let (mut sinks, mut routes, mut store) = (None, None, None);
        for (key, value) in entries {
            match key.value.as_str() {
                Some("server") => parts.server = self.server(value).unwrap_or_default(),
                Some("stripe") => {
                    parts.stripe = self.section(value, "`stripe`").unwrap_or_default();
                }
                Some("store") => {
                    parts.store = self.section(value, "`store`").unwrap_or_default();
                    store = Some(value);
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

        // The journal is opened there (the default path too), unless it
        // is PostgreSQL's.
        if !self.store(store, &mut parts.store) {
            let journal = parts.store.path.clone();
            self.file_path(store, &journal, "store.path", "stripe-router.db");
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
                let at = e.location().unwrap_or(Location::UNKNOWN);
                if let Some(hint) = super::excerpt::tab_hint(&message, self.text, at.into()) {
                    message.push_str(hint);
                }
                message.push_str(&super::excerpt::excerpt(self.text, at.into()));
                self.problem(at, message);
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

    /// Replaces `${NAME}` in every scalar value (never in keys) and `$${`
    /// with a literal `${`. Working on parsed scalars rather than on the raw
    /// text keeps quoting intact whatever a value contains, and keeps every
    /// place true to the file.
    pub(super) fn interpolate(&mut self, node: &mut Spanned<Node>, env: &Env) {
        match &mut node.value {
            Node::Str(text) if text.contains('$') => {
                let raw = self.raw(node.referenced);
                let (value, missing, unresolved) = expand(text, env, self.unset);
                for (name, problem) in missing {
                    let at = self.locate_in_raw(node.referenced, raw, &format!("${{{name}"));
                    self.problem(at, problem);
                }
                if !unresolved.is_empty() {
                    self.unresolved.push(node.referenced.into());
                    self.unset_names.extend(unresolved);
                }
                if value != *text {
                    self.expanded
                        .push((value.clone(), std::mem::replace(text, value)));
                }
            }
            Node::Seq(items) => items
                .iter_mut()
                .for_each(|item| self.interpolate(item, env)),
            Node::Map(entries) => entries
                .iter_mut()
                .for_each(|(_, value)| self.interpolate(value, env)),
            _ => {}
        }
    }

    /// The file text of a scalar: from its start for its length, or to the
    /// end of its line when the length is unknown.
    fn raw(&self, at: Location) -> &'a str {
        let span = at.span();
        let Some(start) = span.byte_offset().and_then(|o| usize::try_from(o).ok()) else {
            return "";
        };
        let rest = self.text.get(start..).unwrap_or("");
        match span.byte_len().and_then(|l| usize::try_from(l).ok()) {
            Some(len) if len > 0 => rest.get(..len).unwrap_or(rest),
            _ => rest.split('\n').next().unwrap_or(""),
        }
    }

    /// The place of `needle` inside a scalar written at `at`, or `at`.
    fn locate_in_raw(&self, at: Location, raw: &str, needle: &str) -> Pos {
        let at = Pos::from(at);
        let Some(offset) = raw.find(needle) else {
            return at;
        };
        let before = &raw[..offset];
        match before.rfind('\n') {
            Some(newline) => Pos {
                line: at.line + before.matches('\n').count() as u64,
                column: before[newline + 1..].chars().count() as u64 + 1,
            },
            None => Pos {
                line: at.line,
                column: at.column + before.chars().count() as u64,
            },
        }
    }
}

const EMPTY: &str = "the config is empty: define `sinks:` and `routes:` (the repository's routes.yaml is a working start)";

impl Checker<'_> {
    /// `store.url` against `store.path` and `store.pool_size`: true when
    /// the journal is PostgreSQL's (there is no file to check). A URL
    /// that holds an unset variable (`check --no-env`) is not judged; a
    /// refused one leaves the store as it would be without it, so the rest
    /// is still checked.
    fn store(&mut self, node: Option<&Spanned<Node>>, store: &mut StoreConfig) -> bool {
        let Some(node) = node else {
            return false;
        };
        let key = |name: &str| match &node.value {
            Node::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.value.as_str() == Some(name))
                .map(|(k, v)| (k.referenced, v.referenced)),
            _ => None,
        };
        if let Some((at, _)) = key("pool_size")
            && !(1..=POOL_SIZE_MAX).contains(&store.pool_size)
        {
            self.problem(
                at,
                format!(
                    "`store.pool_size` must be between 1 and {POOL_SIZE_MAX} (default 16): it bounds the connections each replica opens"
                ),
            );
        }
        if let Some((at, _)) = key("lease")
            && !(LEASE_MIN..=LEASE_MAX).contains(&store.lease)
        {
            self.problem(
                at,
                "`store.lease` must be between 500ms and 10m (default 5s): a dead replica's rows are taken over after it",
            );
        }
        let Some((url_key, url_value)) = key("url") else {
            return false;
        };
        if let Some((path_key, _)) = key("path") {
            self.problem(
                path_key,
                "`store.path` and `store.url` exclude each other: keep `url` for a PostgreSQL journal shared by replicas, or `path` for a SQLite file",
            );
        }
        let Some(url) = &store.url else {
            return false;
        };
        if self.unresolved.contains(&Pos::from(url_value)) {
            return true;
        }
        match url.target() {
            Ok(_) => true,
            Err(message) => {
                self.problem(url_key, format!("`store.url` {message}"));
                store.url = None;
                false
            }
        }
    }

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
}

#[cfg(test)]
#[path = "checker_tests.rs"]
mod tests;
