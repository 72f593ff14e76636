//! `stripe-router check`: every problem of every stage of the config (the
//! file, its rules, `emit: order` on types that are not Checkout Sessions)
//! and, unless `--no-env`, what `serve` would refuse in the environment,
//! found by the same functions `serve` and a reload use, so that `check` and
//! `serve` agree on every value; then the summary of what the router would
//! do, and the warnings (the same ones `serve` logs), errors or not.

use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;

use crate::app;
use crate::config::env::Env;
use crate::config::{Config, Emit, UnsetVars};
use crate::ingest::hints::WHICH_SECRET;
use crate::ingest::verify::Secrets;
use crate::routing::enrich::ApiKey;
use crate::routing::snapshot;

/// The Stripe variables `serve` reads, which `--no-env` leaves out.
const STRIPE_VARIABLES: [&str; 2] = ["STRIPE_WEBHOOK_SECRET", "STRIPE_SECRET_API_KEY"];

/// How `check` judges.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// The file alone, as a CI job without secrets runs it: unset `${VAR}`s
    /// and missing Stripe variables are not problems, and are said to be
    /// unchecked.
    pub no_env: bool,
    /// Warnings fail the check too (for CI).
    pub deny_warnings: bool,
}

/// Checks the config at `path` against `env`: the summary goes to `out`,
/// problems and warnings to `err`. Warnings are printed whether or not
/// there are problems. True when there are no problems (and, with
/// `deny_warnings`, no warnings): `serve` would start.
pub fn check(
    path: &Path,
    env: &Env,
    options: Options,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> bool {
    let Options {
        no_env,
        deny_warnings,
    } = options;
    let (unset, orders_enabled) = if no_env {
        // Left out, the API key is taken to be there, as where `serve` runs.
        (UnsetVars::Allowed, true)
    } else {
        let key = env.get("STRIPE_SECRET_API_KEY");
        (
            UnsetVars::Refused,
            key.is_some_and(|k| !k.trim().is_empty()),
        )
    };
    let findings = snapshot::check_file(path, env, unset, orders_enabled);
    let mut problems: Vec<String> = findings.problems.iter().map(ToString::to_string).collect();
    let config_problems = problems.len();
    let mut warnings: Vec<String> = findings.warnings.iter().map(ToString::to_string).collect();
    // The environment, judged by the very function `serve` starts with:
    // every refusal of it, with or without --no-env, only told apart.
    let (stripe, admin_listen) = findings
        .config
        .as_ref()
        .map(|c| (c.stripe.clone(), c.server.admin_listen))
        .unwrap_or_default();
    let refusals = app::environment(env, &stripe, admin_listen)
        .err()
        .unwrap_or_default();
    let mut left_out = Vec::new();
    for refusal in refusals {
        match refusal.unset_variable() {
            // Not set where CI runs: what --no-env leaves unchecked.
            Some(name) if no_env => left_out.push(name),
            _ if no_env => warnings.push(format!("{refusal} (`serve` will not start)")),
            _ => problems.push(format!("environment: {refusal}")),
        }
    }
    warnings.extend(oddities(env));
    let not_checked = no_env
        .then(|| unchecked(env, &left_out, &findings.unset_vars))
        .flatten();

    let denied = deny_warnings && !warnings.is_empty();
    match &findings.config {
        Some(config) if problems.is_empty() => {
            // The summary is the command's output; problems go to `err`.
            // Denied, the warnings fail it: never "is valid" on a failure.
            let verdict = if denied {
                format!(
                    "has no problems, but {} fail the check (--deny-warnings)",
                    counted(warnings.len(), "warning")
                )
            } else {
                "is valid".to_owned()
            };
            let _ = writeln!(out, "{} {verdict}\n\n{}", path.display(), config.summary());
            if let Some(note) = &not_checked {
                let _ = writeln!(out, "{note}");
            }
        }
        _ => {
            let verdict = if config_problems > 0 {
                "is not valid"
            } else {
                "is valid, but serve would not start with this environment"
            };
            let _ = writeln!(
                err,
                "{} {verdict} ({}):",
                path.display(),
                counted(problems.len(), "problem")
            );
            for problem in &problems {
                let _ = writeln!(err, "  {problem}");
            }
            if let Some(note) = &not_checked {
                let _ = writeln!(err, "{note}");
            }
        }
    }
    if !warnings.is_empty() {
        let _ = writeln!(err, "warnings ({}):", warnings.len());
        for warning in &warnings {
            let _ = writeln!(err, "  warning: {warning}");
        }
        if deny_warnings {
            let _ = writeln!(
                err,
                "{} has {}, and --deny-warnings makes them fail the check: fix them, or drop \
                 --deny-warnings",
                path.display(),
                counted(warnings.len(), "warning")
            );
        }
    }
    problems.is_empty() && !denied
}

/// `1 problem`, `2 problems`.
fn counted(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// What `--no-env` left unchecked: the Stripe variables that are not set,
/// those `serve` would need here (`left_out`, e.g. the admin token for an
/// admin listener off loopback) and the unset variables `${VAR}`s name; `None` when nothing was.
fn unchecked(env: &Env, left_out: &[&str], unset_vars: &[String]) -> Option<String> {
    let mut names: Vec<String> = STRIPE_VARIABLES
        .iter()
        .filter(|name| env.get(name).is_none_or(|v| v.trim().is_empty()))
        .chain(
            left_out
                .iter()
                .filter(|name| !STRIPE_VARIABLES.contains(name)),
        )
        .map(|name| (*name).to_owned())
        .collect();
    names.extend(unset_vars.iter().map(|name| format!("${{{name}}}")));
    if names.is_empty() {
        return None;
    }
    Some(format!(
        "not checked (--no-env): {} (not set); run `stripe-router check` without --no-env \
         where `serve` runs, with its environment, to check them too",
        names.join(", ")
    ))
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

/// Warnings about the Stripe variables that are set, for `check`: what
/// `serve` would refuse (only a warning with `--no-env`; without it, the
/// refusal is a problem) and what would fail later. A variable that is not
/// set is not judged here. Never quotes a value.
pub fn environment(env: &Env) -> Vec<String> {
    let mut warnings = Vec::new();
    if let Some(value) = env.get("STRIPE_WEBHOOK_SECRET")
        && let Err(e) = Secrets::parse(&value)
    {
        warnings.push(format!("{e} (`serve` will not start)"));
    }
    if let Some(key) = env
        .get("STRIPE_SECRET_API_KEY")
        .filter(|k| !k.trim().is_empty())
        && let Err(e) = ApiKey::parse(&key)
    {
        warnings.push(format!("{e} (`serve` will not start)"));
    }
    warnings.extend(oddities(env));
    warnings
}

/// What is accepted in the environment but likely wrong: webhook secrets
/// that do not look like endpoint signing secrets. Never quotes a value.
fn oddities(env: &Env) -> Vec<String> {
    let Some(value) = env.get("STRIPE_WEBHOOK_SECRET") else {
        return Vec::new();
    };
    if Secrets::parse(&value).is_err() {
        return Vec::new();
    }
    let odd = value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty() && !s.starts_with("whsec_"))
        .count();
    if odd == 0 {
        return Vec::new();
    }
    vec![format!(
        "STRIPE_WEBHOOK_SECRET: {odd} of its secrets do not start with `whsec_`, as endpoint \
         signing secrets do; {WHICH_SECRET}"
    )]
}

#[cfg(test)]
#[path = "check_tests.rs"]
mod tests;
