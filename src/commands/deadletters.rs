//! Dead letters for operators: the `deadletters` and `replay` commands.
//! List them (deliveries, routes and events that gave up), re-queue them,
//! or route a journaled event again; both work against the journal named
//! by the routes file, while the server runs.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;

use crate::clock::now_ms;
use crate::config::Config;
use crate::config::env::Env;
use crate::store::replay::replay;
use crate::store::{DeadLetter, Filter, Purpose, Store, open};

/// A store command, as the command line asks it.
#[derive(Debug, Clone)]
pub enum Command {
    /// `deadletters`: a table, or JSON lines.
    List { filter: Filter, json: bool },
    /// `replay`: `all`, or those matching `filter`; with `reroute`, the
    /// event `filter.event` through the current routes.
    Replay {
        filter: Filter,
        all: bool,
        reroute: bool,
    },
}

/// Runs `command` against the journal named by the routes file at
/// `config`: its answer on stdout, an error on stderr and in the exit code.
pub async fn run(config: &Path, env: &Env, command: Command) -> ExitCode {
    let store = match open_journal(config, env).await {
        Ok(store) => store,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::FAILURE;
        }
    };
    let out = &mut std::io::stdout();
    let done = match command {
        Command::List { filter, json } => list(&*store, filter, json, out).await.map(drop),
        Command::Replay {
            filter,
            all,
            reroute,
        } => replay(&*store, filter, all, reroute, out).await.map(drop),
    };
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The journal the routes file at `config` names: a SQLite journal must
/// exist (the server creates it); a PostgreSQL one is shared with the
/// running replicas. The error is the message to show.
async fn open_journal(config: &Path, env: &Env) -> Result<Arc<dyn Store>, String> {
    let loaded = Config::load(config, env)
        .map_err(|error| format!("{} is not valid:\n{error}", config.display()))?;
    open(&loaded.store, &loaded.base_dir, Purpose::Operate, None)
        .await
        .map_err(|e| format!("error: {e}"))
}

/// Writes the dead letters matching `filter` to `out`, as a table or as
/// JSON lines.
pub async fn list(
    store: &dyn Store,
    filter: Filter,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<usize> {
    let letters = store
        .dead_letters(filter)
        .await
        .context("reading dead letters")?;
    if json {
        for letter in &letters {
            writeln!(out, "{}", serde_json::to_string(letter)?)?;
        }
        return Ok(letters.len());
    }
    if letters.is_empty() {
        writeln!(out, "no dead letters")?;
        return Ok(0);
    }
    writeln!(
        out,
        "{:<44} {:<14} {:>8} {:>9}  LAST ERROR",
        "ID", "SINK", "ATTEMPTS", "AGE"
    )?;
    for letter in &letters {
        writeln!(
            out,
            "{:<44} {:<14} {:>8} {:>9}  {}",
            letter.record_id.as_deref().unwrap_or(&letter.event_id),
            match (&letter.sink, &letter.route) {
                (Some(sink), _) => sink.as_str(),
                (None, Some(_)) => "-",
                (None, None) => "(routing)",
            },
            letter.attempts,
            age(letter),
            error_column(letter),
        )?;
    }
    writeln!(
        out,
        "\n{} dead letter(s); `stripe-router replay --help` re-queues them",
        letters.len()
    )?;
    Ok(letters.len())
}

/// The last error on one line; a route-level dead letter (no sink) names
/// its route first.
fn error_column(letter: &DeadLetter) -> String {
    let error = letter
        .last_error
        .as_deref()
        .unwrap_or("")
        .replace('\n', " ");
    match (&letter.sink, &letter.route) {
        (None, Some(route)) => format!("route {route}: {error}"),
        _ => error,
    }
}

fn age(letter: &DeadLetter) -> String {
    let seconds = (now_ms() - letter.created_at_ms).max(0) / 1000;
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
#[path = "deadletters_tests.rs"]
mod tests;
