//! `stripe-router store migrate`: brings the journal `store:` names (the
//! SQLite file or the PostgreSQL database) to this binary's schema
//! version, and says the version before and after. `serve` does the same
//! at start; this runs it alone, e.g. before rolling out new replicas.

use std::path::Path;
use std::process::ExitCode;

use crate::config::Config;
use crate::config::env::Env;
use crate::store::open::{describe, migrate};

/// Migrates the journal the routes file at `config` names.
pub async fn run_migrate(config: &Path, env: &Env, out: &mut dyn std::io::Write) -> ExitCode {
    let loaded = match Config::load(config, env) {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("{} is not valid:\n{error}", config.display());
            return ExitCode::FAILURE;
        }
    };
    let journal = describe(&loaded.store, &loaded.base_dir);
    match migrate(&loaded.store, &loaded.base_dir).await {
        Ok((before, after)) => {
            let said = if before == after {
                format!("journal {journal}: schema version {after}, up to date")
            } else {
                format!("journal {journal}: schema version {before} -> {after}")
            };
            match writeln!(out, "{said}") {
                Ok(()) => ExitCode::SUCCESS,
                Err(_) => ExitCode::FAILURE,
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
