//! `stripe-router check`: the config's problems and, unless `--no-env`,
//! what `serve` would refuse in the environment, found by the same functions
//! `serve` uses, so that `check` and `serve` agree on every value; then the
//! summary of what the router would do, and warnings.

use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;

use crate::admin::auth;
use crate::app;
use crate::config::env::Env;
use crate::config::{Config, Emit, UnsetVars};
use crate::ingest::hints::WHICH_SECRET;
use crate::ingest::verify::Secrets;
use crate::routing::enrich::ApiKey;
use crate::routing::{event_types, snapshot};

/// Checks the config at `path` against `env`: the summary goes to `out`,
/// problems and warnings to `err`. Warnings are printed whether or not
/// there are problems. True when there are none: `serve` would start.
pub fn check(
    path: &Path,
    env: &Env,
    no_env: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> bool {
    let unset = if no_env {
        UnsetVars::Allowed
    } else {
        UnsetVars::Refused
    };
    let orders_enabled = no_env
        || env
            .get("STRIPE_SECRET_API_KEY")
            .is_some_and(|k| !k.trim().is_empty());
    let mut problems: Vec<String> = Vec::new();
    let config = Config::load_with(path, env, unset)
        .map_err(|error| problems.extend(error.problems.iter().map(ToString::to_string)))
        .ok();
    if let Some(config) = &config
        && let Err(error) = snapshot::compile(config, orders_enabled)
    {
        problems.extend(error.problems.iter().map(ToString::to_string));
    }
    let config_problems = problems.len();
    let mut warnings: Vec<String> = config
        .as_ref()
        .map(|c| {
            event_types::route_warnings(c)
                .iter()
                .map(ToString::to_string)
                .collect()
        })
        .unwrap_or_default();
    let stripe = config
        .as_ref()
        .map(|c| c.stripe.clone())
        .unwrap_or_default();
    match app::stripe_environment(env, &stripe) {
        Ok(_) => warnings.extend(environment(env)),
        // Left out, a CI job without secrets: what serve would refuse is
        // only a warning.
        Err(_) if no_env => warnings.extend(environment(env)),
        Err(e) => problems.push(format!("environment: {e}")),
    }
    // The admin listener's token, decided as `serve` decides it.
    let admin_listen = config
        .as_ref()
        .map(|c| c.server.admin_listen)
        .unwrap_or_default();
    match auth::access(env, admin_listen) {
        Ok(_) => {}
        Err(e) if no_env => warnings.push(format!("{e} (`serve` will not start)")),
        Err(e) => problems.push(format!("environment: {e}")),
    }

    match &config {
        Some(config) if problems.is_empty() => {
            // The summary is the command's output; problems go to `err`.
            let _ = writeln!(out, "{} is valid\n\n{}", path.display(), config.summary());
        }
        _ => {
            let verdict = if config_problems > 0 {
                "is not valid"
            } else {
                "is valid, but serve would not start with this environment"
            };
            let _ = writeln!(
                err,
                "{} {verdict} ({} problems):",
                path.display(),
                problems.len()
            );
            for problem in &problems {
                let _ = writeln!(err, "  {problem}");
            }
        }
    }
    if !warnings.is_empty() {
        let _ = writeln!(err, "warnings ({}):", warnings.len());
        for warning in &warnings {
            let _ = writeln!(err, "  warning: {warning}");
        }
    }
    problems.is_empty()
}

impl Config {
    /// A one-screen description for `stripe-router check`: where it listens,
    /// each sink and its target, each route. Shows no secrets: URLs lose
    /// their credentials and query, headers and signing secrets are not shown.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "listen: {}, webhook path: {}",
            self.server.listen, self.server.path
        );
        let _ = writeln!(out, "sinks:");
        let width = self.sinks.keys().map(String::len).max().unwrap_or(0);
        for (name, sink) in &self.sinks {
            let target = sink.summary(&self.base_dir);
            let _ = writeln!(out, "  {name:width$}  {target}");
        }
        let _ = writeln!(out, "routes:");
        let width = self.routes.iter().map(|r| r.name.len()).max().unwrap_or(0);
        for route in &self.routes {
            let when = route
                .when
                .iter()
                .map(|(key, value)| format!("{key}: {}", compact(value)))
                .collect::<Vec<_>>()
                .join(", ");
            let emit = match route.emit {
                Emit::Order => "order",
                Emit::Event => "event",
            };
            let _ = writeln!(
                out,
                "  {:width$}  when {{{when}}}  emit {emit} -> {}",
                route.name,
                route.to.join(", ")
            );
        }
        out
    }
}

/// A `when` value as written in flow YAML: `paid`, `[a, b]`, `{gte: 100}`.
fn compact(value: &serde_json::Value) -> String {
    use serde_json::Value;
    match value {
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            let items: Vec<_> = items.iter().map(compact).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Object(map) => {
            let items: Vec<_> = map
                .iter()
                .map(|(k, v)| format!("{k}: {}", compact(v)))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
        other => other.to_string(),
    }
}

/// Warnings about the Stripe variables, for `check`: what `serve` would
/// refuse, and what would fail later. Never quotes a value.
pub fn environment(env: &Env) -> Vec<String> {
    let mut warnings = Vec::new();
    match env.get("STRIPE_WEBHOOK_SECRET") {
        None => warnings.push(
            "STRIPE_WEBHOOK_SECRET is not set, so `serve` will not start: set it to the \
             endpoint signing secret (whsec_...); "
                .to_owned()
                + WHICH_SECRET,
        ),
        Some(value) => match Secrets::parse(&value) {
            Err(e) => warnings.push(format!("{e} (`serve` will not start)")),
            Ok(_) => {
                let odd = value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty() && !s.starts_with("whsec_"))
                    .count();
                if odd > 0 {
                    warnings.push(format!(
                        "STRIPE_WEBHOOK_SECRET: {odd} of its secrets do not start with `whsec_`, \
                         as endpoint signing secrets do; {WHICH_SECRET}"
                    ));
                }
            }
        },
    }
    if let Some(key) = env
        .get("STRIPE_SECRET_API_KEY")
        .filter(|k| !k.trim().is_empty())
        && let Err(e) = ApiKey::parse(&key)
    {
        warnings.push(format!(
            "STRIPE_SECRET_API_KEY: {e} (`serve` will not start)"
        ));
    }
    warnings
}

#[cfg(test)]
#[path = "check_tests.rs"]
mod tests;
