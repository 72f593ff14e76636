//! One whole routing table, compiled from one config: the routes (their
//! compiled `when`, what they emit, the sinks they deliver to) and the built
//! sinks. [`compile`] is the pure step; [`check_file`] runs every stage of
//! checking a file at once (the config's own problems, then [`compile`] on
//! what could be read, then the [`warnings`]), and [`load`] is the same
//! judgement for `serve` and reloads, so `check` and `serve` never differ.
//! [`Snapshot::build`] also builds the sinks, carrying over those whose own
//! settings did not change (same file handle, same connection pool),
//! whatever their common `retry`/`concurrency` keys say.
//!
//! A snapshot never changes once built: a reload builds a new one
//! ([`crate::routing::live`]). An event is routed, and its records handed to
//! their sinks, under the one snapshot loaded when it was accepted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::json;

use crate::config::env::Env;
use crate::config::{Config, ConfigError, ConfigProblem, Emit, RouteConfig, UnsetVars};
use crate::event::Event;
use crate::pruned::Keep;
use crate::routing::rules::When;
use crate::routing::{event_paths, event_types, record};
use crate::sinks::{Sink, SinkConfig};

/// One compiled route.
#[derive(Debug)]
pub struct Route {
    pub name: String,
    pub when: When,
    pub emit: Emit,
    /// The sinks this route delivers to, by name.
    pub to: Vec<(String, Arc<dyn Sink>)>,
}

/// A built sink with the settings it was built from.
#[derive(Debug, Clone)]
pub struct BuiltSink {
    pub config: SinkConfig,
    pub base_dir: PathBuf,
    pub sink: Arc<dyn Sink>,
}

/// A complete routing table, built from one config.
#[derive(Debug)]
pub struct Snapshot {
    /// Counts up from 1 with every applied config.
    pub version: u64,
    pub config: Config,
    pub routes: Vec<Route>,
    /// The config's [`warnings`], for the logs and `/healthz`.
    pub warnings: Vec<ConfigProblem>,
    sinks: BTreeMap<String, BuiltSink>,
    /// What its routes and records read of an event ([`Snapshot::keep`]).
    keep: Keep,
}

impl Snapshot {
    /// Compiles the routes of `config` and builds its sinks, reusing the
    /// sinks of `previous` whose type settings are unchanged. `orders_enabled`
    /// says whether a Stripe API key is configured for `emit: order`.
    pub fn build(
        config: Config,
        previous: Option<&Snapshot>,
        version: u64,
        orders_enabled: bool,
    ) -> Result<Snapshot, ConfigError> {
        // Pure compile step first: no sink is built for a config that has
        // errors in its rules.
        let compiled = compile(&config, orders_enabled)?;
        let mut problems = Vec::new();
        let mut sinks = BTreeMap::new();
        for (name, sink_config) in &config.sinks {
            // Reuse hangs on the type's own settings only: a change to the
            // common keys (retry, concurrency) takes effect through the new
            // config below, while the instance stays. A second jsonl sink on
            // the same file would take the first one's line in progress for
            // a torn one and cut it off.
            let reused = previous.and_then(|p| p.sinks.get(name)).filter(|old| {
                old.config.kind == sink_config.kind && old.base_dir == config.base_dir
            });
            let built = match reused {
                Some(old) => BuiltSink {
                    config: sink_config.clone(),
                    base_dir: old.base_dir.clone(),
                    sink: old.sink.clone(),
                },
                None => match sink_config.build(&config.base_dir) {
                    Ok(sink) => BuiltSink {
                        config: sink_config.clone(),
                        base_dir: config.base_dir.clone(),
                        sink,
                    },
                    Err(e) => {
                        problems.push(ConfigProblem {
                            place: config.file.display().to_string(),
                            message: format!(
                                "sink `{name}` cannot start (`{}`): {e}",
                                sink_config.kind.start_key(name)
                            ),
                        });
                        continue;
                    }
                },
            };
            sinks.insert(name.clone(), built);
        }
        if !problems.is_empty() {
            return Err(ConfigError { problems });
        }

        let routes: Vec<Route> = config
            .routes
            .iter()
            .zip(compiled)
            .map(|(route, when)| Route {
                name: route.name.clone(),
                when,
                emit: route.emit,
                to: route
                    .to
                    .iter()
                    .filter_map(|name| Some((name.clone(), sinks.get(name)?.sink.clone())))
                    .collect(),
            })
            .collect();
        Ok(Snapshot {
            version,
            warnings: warnings(&config),
            keep: keep(&routes),
            config,
            routes,
            sinks,
        })
    }

    /// What an event routed by this snapshot is parsed keeping
    /// ([`Event::parse_keeping`]): the paths its conditions read and the
    /// fields order records read; the whole event when a route emits it
    /// (`emit: event`).
    pub fn keep(&self) -> &Keep {
        &self.keep
    }

    /// Whether any route could want an event of type `kind`.
    pub fn wants_type(&self, kind: &str) -> bool {
        self.routes.iter().any(|r| r.when.admits_type(kind))
    }

    /// The routes whose conditions `event` satisfies, in file order.
    pub fn matching<'a>(
        &'a self,
        event: &'a serde_json::Value,
    ) -> impl Iterator<Item = &'a Route> + 'a {
        self.routes.iter().filter(move |r| r.when.matches(event))
    }

    /// The sink called `name`, if this config has it.
    pub fn sink(&self, name: &str) -> Option<&BuiltSink> {
        self.sinks.get(name)
    }

    /// Whether the sink `name` of this snapshot is the very same instance as
    /// in `other` (it was carried over by a reload).
    pub fn shares_sink(&self, other: &Snapshot, name: &str) -> bool {
        match (self.sinks.get(name), other.sinks.get(name)) {
            (Some(a), Some(b)) => Arc::ptr_eq(&a.sink, &b.sink),
            _ => false,
        }
    }
}

/// What routing by `routes` reads of an event: a pruned parse builds only
/// these parts of its tree, and skips the rest of a body unbuilt.
fn keep(routes: &[Route]) -> Keep {
    if routes.iter().any(|route| route.emit == Emit::Event) {
        return Keep::Whole;
    }
    let mut keep = Event::keep();
    if routes.iter().any(|route| route.emit == Emit::Order) {
        record::keep_order(&mut keep);
    }
    for route in routes {
        route.when.keep(&mut keep);
    }
    keep
}

/// Everything a config file holds wrong, every stage at once: the file's
/// own problems, then those of the compile step on what could be read, so
/// that a broken `when` never hides a duplicate name or an unknown sink.
#[derive(Debug)]
pub struct Findings {
    /// The config, when it has no problem.
    pub config: Option<Config>,
    /// Every problem of every stage, in file order.
    pub problems: Vec<ConfigProblem>,
    /// What can never work as written but does not stop the router
    /// ([`warnings`]), errors or not.
    pub warnings: Vec<ConfigProblem>,
    /// The unset variables that `${VAR}`s name, sorted.
    pub unset_vars: Vec<String>,
}

/// Checks the config file at `path` as `serve` reads it, every stage:
/// `unset` says whether `${VAR}`s naming unset variables are problems,
/// `orders_enabled` whether a Stripe API key is configured for `emit: order`.
pub fn check_file(path: &Path, env: &Env, unset: UnsetVars, orders_enabled: bool) -> Findings {
    let checked = Config::check_file(path, env, unset);
    let mut problems = checked.problems;
    let mut warnings = Vec::new();
    if let Some(config) = &checked.config {
        if let Err(error) = compile(config, orders_enabled) {
            problems.extend(error.problems);
        }
        warnings = self::warnings(config);
    }
    // Stable: each stage's problems are in file order already.
    problems.sort_by_key(ConfigProblem::position);
    Findings {
        config: checked.config.filter(|_| problems.is_empty()),
        problems,
        warnings,
        unset_vars: checked.unset_vars,
    }
}

/// The config at `path` when no stage finds a problem in it: what `serve`
/// starts with and a reload swaps in, judged as `check` judges it.
pub fn load(path: &Path, env: &Env, orders_enabled: bool) -> Result<Config, ConfigError> {
    let findings = check_file(path, env, UnsetVars::Refused, orders_enabled);
    findings.config.ok_or(ConfigError {
        problems: findings.problems,
    })
}

/// The warnings of a config, in file order: `type`s that match no Stripe
/// event type and paths that no Stripe event has. `check` prints them,
/// `serve` logs them at start and on every reload, `/healthz` shows them.
pub fn warnings(config: &Config) -> Vec<ConfigProblem> {
    let mut warnings = event_types::route_warnings(config);
    warnings.extend(event_paths::route_warnings(config));
    warnings.sort_by_key(ConfigProblem::position);
    warnings
}

/// The pure compile step: every route's conditions, in file order, and
/// every problem with its place (a condition's at its key, an operator's at
/// its own). `orders_enabled` says whether a Stripe API key is configured
/// for `emit: order`.
pub fn compile(config: &Config, orders_enabled: bool) -> Result<Vec<When>, ConfigError> {
    let mut problems = Vec::new();
    let mut compiled = Vec::with_capacity(config.routes.len());
    for route in &config.routes {
        let label = if route.name.is_empty() {
            "the route with no name".to_owned()
        } else {
            format!("route `{}`", route.name)
        };
        match When::compile(&route.when) {
            Ok(when) => compiled.push(when),
            Err(_) => problems.extend(condition_problems(route, &label)),
        }
        if route.emit != Emit::Order {
            continue;
        }
        if !orders_enabled {
            problems.push(ConfigProblem {
                place: route.place.clone(),
                message: format!(
                    "{label} emits orders, which needs the Stripe API to read line items, \
                     but STRIPE_SECRET_API_KEY is not set: set it to a secret key (sk_...) or a \
                     restricted key (rk_...) with read access to Checkout Sessions, prices and \
                     products, or use `emit: event`"
                ),
            });
        }
        problems.extend(never_sessions(route, &label));
    }
    if problems.is_empty() {
        Ok(compiled)
    } else {
        Err(ConfigError { problems })
    }
}

/// The problems of a route's conditions, each at its condition's key, or
/// at its operator's key when the condition's path is sound.
fn condition_problems(route: &RouteConfig, label: &str) -> Vec<ConfigProblem> {
    let mut problems = Vec::new();
    for (index, (key, value)) in route.when.iter().enumerate() {
        let place = route.when_places.get(index);
        let Err(errors) = When::compile(&[(key.clone(), value.clone())]) else {
            continue;
        };
        let at = |place: Option<&String>, message: String| ConfigProblem {
            place: place.unwrap_or(&route.place).clone(),
            message: format!("{label}: {message}"),
        };
        let path_sound = When::compile(&[(key.clone(), json!({ "exists": true }))]).is_ok();
        match value {
            serde_json::Value::Object(ops) if key != "type" && path_sound && !ops.is_empty() => {
                for (op, operand) in ops {
                    let alone = json!({ op.clone(): operand.clone() });
                    let Err(errors) = When::compile(&[(key.clone(), alone)]) else {
                        continue;
                    };
                    let op_place = place.and_then(|p| {
                        p.operators
                            .iter()
                            .find_map(|(name, at)| (name == op).then_some(at))
                    });
                    let op_place = op_place.or(place.map(|p| &p.key));
                    problems.extend(errors.into_iter().map(|e| at(op_place, e)));
                }
            }
            _ => problems.extend(errors.into_iter().map(|e| at(place.map(|p| &p.key), e))),
        }
    }
    problems
}

/// The problems of an `emit: order` route whose `type` patterns include
/// some that can never match a Checkout Session event
/// (`checkout.session.*`), where orders come from: when none can, one
/// problem at `emit` (the route can never build an order); when only some
/// cannot, one at each of those (their events would all be dead letters).
/// Nothing when every pattern can, or when it has no `type`.
fn never_sessions(route: &RouteConfig, label: &str) -> Vec<ConfigProblem> {
    const SESSIONS: &str = "checkout.session.";
    // Each pattern with where it is written: a list's items at their own
    // places, a single pattern at its condition's key.
    let mut patterns: Vec<(&str, &str)> = Vec::new();
    for (index, (key, value)) in route.when.iter().enumerate() {
        if key != "type" {
            continue;
        }
        let place = route.when_places.get(index);
        let key_place = place.map_or(route.place.as_str(), |p| p.key.as_str());
        match value {
            serde_json::Value::String(s) => patterns.push((s, key_place)),
            serde_json::Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let Some(pattern) = item.as_str() else {
                        continue;
                    };
                    let at = place
                        .and_then(|p| p.items.get(i))
                        .map_or(key_place, String::as_str);
                    patterns.push((pattern, at));
                }
            }
            _ => {}
        }
    }
    // `*` matches any run of characters: a pattern can match a name that
    // starts with SESSIONS when its text before the first `*` and SESSIONS
    // agree as far as both go; without a `*`, when it starts with SESSIONS.
    let can_be_session = |pattern: &str| match pattern.split_once('*') {
        Some((literal, _)) => literal.starts_with(SESSIONS) || SESSIONS.starts_with(literal),
        None => pattern.starts_with(SESSIONS),
    };
    let never: Vec<(&str, &str)> = patterns
        .iter()
        .copied()
        .filter(|(pattern, _)| !can_be_session(pattern))
        .collect();
    if never.is_empty() {
        return Vec::new();
    }
    if never.len() == patterns.len() {
        let listed: Vec<String> = never.iter().map(|(p, _)| format!("`{p}`")).collect();
        return vec![ConfigProblem {
            place: route.emit_place.clone(),
            message: format!(
                "{label} emits orders, which are built from Checkout Sessions, but its \
                 types ({}) are never Checkout Session events: write `emit: event` to \
                 pass these events on, or match `checkout.session.*` types",
                listed.join(", ")
            ),
        }];
    }
    never
        .into_iter()
        .map(|(pattern, at)| ConfigProblem {
            place: at.to_owned(),
            message: format!(
                "{label} emits orders, which are built from Checkout Sessions, but its type \
                 `{pattern}` is never a Checkout Session event, so each such event would be a \
                 dead letter: split the route, keeping `emit: order` for the \
                 `checkout.session.*` types and moving `{pattern}` to a route with \
                 `emit: event`"
            ),
        })
        .collect()
}

#[cfg(test)]
#[path = "snapshot_tests.rs"]
mod tests;
