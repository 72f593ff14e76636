//! One whole routing table, compiled from one config: the routes (their
//! compiled `when`, what they emit, the sinks they deliver to) and the built
//! sinks. [`compile`] is the pure step `check` shares; [`Snapshot::build`]
//! also builds the sinks, carrying over those whose own settings did not
//! change (same file handle, same connection pool), whatever their common
//! `retry`/`concurrency` keys say.
//!
//! A snapshot never changes once built: a reload builds a new one
//! ([`crate::routing::live`]). An event is routed, and its records handed to
//! their sinks, under the one snapshot loaded when it was accepted.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::config::{Config, ConfigError, ConfigProblem, Emit};
use crate::routing::rules::When;
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
    sinks: BTreeMap<String, BuiltSink>,
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
                            message: format!("sink `{name}` cannot start: {e}"),
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

        let routes = config
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
            config,
            routes,
            sinks,
        })
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

/// The pure compile step: every route's conditions, in file order, and
/// every problem with its place. `orders_enabled` says whether a Stripe API
/// key is configured for `emit: order`.
pub fn compile(config: &Config, orders_enabled: bool) -> Result<Vec<When>, ConfigError> {
    let mut problems = Vec::new();
    let mut compiled = Vec::with_capacity(config.routes.len());
    for route in &config.routes {
        match When::compile(&route.when) {
            Ok(when) => compiled.push(when),
            Err(errors) => problems.extend(errors.into_iter().map(|message| ConfigProblem {
                place: route.place.clone(),
                message: format!("route `{}`: {message}", route.name),
            })),
        }
        if route.emit == Emit::Order && !orders_enabled {
            problems.push(ConfigProblem {
                place: route.place.clone(),
                message: format!(
                    "route `{}` emits orders, which needs the Stripe API to read line items, \
                     but STRIPE_SECRET_API_KEY is not set: set it to a secret key (sk_...) or a \
                     restricted key (rk_...) with read access to Checkout Sessions, prices and \
                     products, or use `emit: event`",
                    route.name
                ),
            });
        }
    }
    if problems.is_empty() {
        Ok(compiled)
    } else {
        Err(ConfigError { problems })
    }
}

#[cfg(test)]
#[path = "snapshot_tests.rs"]
mod tests;
