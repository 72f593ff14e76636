//! `routes.yaml`: the typed configuration and its loading.
//!
//! Loading is two steps (parse, don't validate): [`Config::parse`] turns text
//! into typed structs with `deny_unknown_fields`, interpolating `${VAR}` and
//! collecting every error with its place; building runtime objects (opening
//! files, HTTP clients) happens later, in `app` and `sinks`.
//! [`Config::check`] also returns the config as far as it could be read
//! ([`Checked`]), so that the later stages (the rules' compile step in
//! `routing::snapshot`, the warnings) still check what is there.
//!
//! The parts: `schema` (the typed config and its defaults), `yaml` (the tree
//! with places and its deserializer), `checker` and `routes` (every value
//! checked), `paths` (file paths checked on disk, by looking only), `problems` (every problem with its place), `excerpt` (a
//! syntax error's line and caret), `interpolate` (`${VAR}`) and `env` (the
//! environment).

mod checker;
pub mod database_url;
pub mod env;
mod excerpt;
mod interpolate;
mod paths;
mod problems;
mod routes;
mod schema;
mod yaml;

use std::path::{Path, PathBuf};

use crate::config::env::Env;

pub use interpolate::UnsetVars;
pub use problems::{ConfigError, ConfigProblem};
pub use schema::{
    AdminListen, ConditionPlace, Config, Emit, RouteConfig, ServerConfig, StoreConfig, StripeConfig,
};

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
        Config::check(text, file, env, UnsetVars::Refused).into_result()
    }

    /// Reads and checks the file at `path`: see [`Config::check`].
    pub fn check_file(path: &Path, env: &Env, unset: UnsetVars) -> Checked {
        match read(path) {
            Ok(text) => Config::check(&text, path, env, unset),
            Err(error) => Checked {
                config: None,
                problems: error.problems,
                unset_vars: Vec::new(),
            },
        }
    }

    /// Checks config text: every problem, and the config as far as it
    /// could be read, so that the later stages (the rules' compile step, the
    /// warnings) still check what is there when this one found problems.
    /// With `UnsetVars::Allowed` (`check --no-env`) a `${VAR}` naming an
    /// unset variable reads as empty text and the value that holds it is
    /// not judged: such a config is only fit to be checked, not served.
    pub fn check(text: &str, file: &Path, env: &Env, unset: UnsetVars) -> Checked {
        let (parts, problems, unset_vars) =
            checker::check(text, &file.display().to_string(), env, unset);
        let base_dir = base_dir(file);
        let config = parts.map(|parts| Config {
            server: parts.server,
            stripe: parts.stripe,
            sinks: parts.sinks,
            routes: parts.routes,
            store: parts.store,
            file: file.to_path_buf(),
            base_dir,
        });
        Checked {
            config,
            problems,
            unset_vars,
        }
    }
}

/// What checking a config found: every problem in file order, and the
/// config as far as it could be read (`None` when not even its top level
/// could). With problems, the config has its broken parts left out: it is
/// fit for further checks, never to be served.
#[derive(Debug)]
pub struct Checked {
    pub config: Option<Config>,
    pub problems: Vec<ConfigProblem>,
    /// The unset variables that `${VAR}`s name, sorted: problems unless
    /// they were allowed (`check --no-env`), when they are what was not
    /// checked.
    pub unset_vars: Vec<String>,
}

impl Checked {
    /// The config when it has no problem at all, else every problem.
    pub fn into_result(self) -> Result<Config, ConfigError> {
        match self.config {
            Some(config) if self.problems.is_empty() => Ok(config),
            _ => Err(ConfigError {
                problems: self.problems,
            }),
        }
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
