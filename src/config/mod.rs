//! `routes.yaml`: the typed configuration and its loading.
//!
//! Loading is two steps (parse, don't validate): [`Config::parse`] turns text
//! into typed structs with `deny_unknown_fields`, interpolating `${VAR}` and
//! collecting every error with its place; building runtime objects (opening
//! files, HTTP clients) happens later, in `app` and `sinks`.
//!
//! The parts: `schema` (the typed config and its defaults), `yaml` (the tree
//! with places and its deserializer), `checker` and `routes` (every value
//! checked), `problems` (every problem with its place), `interpolate`
//! (`${VAR}`), `env`
//! (the environment), `command` (`stripe-router check`), and two leaves that
//! import nothing of the crate, `units` (durations, sizes) and `redact` (the
//! one URL redactor).

mod checker;
pub mod env;
mod interpolate;
mod problems;
mod routes;
mod schema;
mod yaml;

use std::path::{Path, PathBuf};

use crate::config::env::Env;

pub use interpolate::UnsetVars;
pub use problems::{ConfigError, ConfigProblem};
pub use schema::{AdminListen, Config, Emit, RouteConfig, ServerConfig, StoreConfig, StripeConfig};

impl Config {
    /// Reads and parses the file at `path`; `path` as given names the file in
    /// error places (`x/routes.yaml:12:5`).
    pub fn load(path: &Path, env: &Env) -> Result<Config, ConfigError> {
        let text = read(path)?;
        Config::parse(&text, path, env)
    }

    /// Parses config text; `file` names it in error places and its folder is
    /// the base for relative paths. `env` answers `${VAR}`.
    pub fn parse(text: &str, file: &Path, env: &Env) -> Result<Config, ConfigError> {
        Config::parse_with(text, file, env, UnsetVars::Refused)
    }

    /// [`Config::load`], with `${VAR}`s naming unset variables allowed or not.
    pub fn load_with(path: &Path, env: &Env, unset: UnsetVars) -> Result<Config, ConfigError> {
        let text = read(path)?;
        Config::parse_with(&text, path, env, unset)
    }

    /// [`Config::parse`], with `${VAR}`s naming unset variables allowed or
    /// not. Allowed (`check --no-env`), such a variable reads as empty text
    /// and the value that holds it is not judged: the config is only fit to
    /// be checked, not to be served.
    pub fn parse_with(
        text: &str,
        file: &Path,
        env: &Env,
        unset: UnsetVars,
    ) -> Result<Config, ConfigError> {
        let parts = checker::check(text, &file.display().to_string(), env, unset)?;
        let base_dir = base_dir(file);
        Ok(Config {
            server: parts.server,
            stripe: parts.stripe,
            sinks: parts.sinks,
            routes: parts.routes,
            store: parts.store,
            file: file.to_path_buf(),
            base_dir,
        })
    }
}

/// The config file's folder, against which sinks resolve relative paths.
fn base_dir(file: &Path) -> PathBuf {
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The config file's text, or why it cannot be read.
fn read(path: &Path) -> Result<String, ConfigError> {
    let place = path.display().to_string();
    std::fs::read_to_string(path).map_err(|e| {
        let message = match e.kind() {
            std::io::ErrorKind::NotFound => {
                "the config file does not exist: create it, or pass another with --config"
                    .to_owned()
            }
            std::io::ErrorKind::InvalidData => {
                "the config file is not UTF-8 text: save it as UTF-8".to_owned()
            }
            _ => format!("cannot read the config file: {e}"),
        };
        ConfigError::one(place, message)
    })
}

#[cfg(test)]
pub(crate) mod test_support;
#[cfg(test)]
mod tests;
