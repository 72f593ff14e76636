//! `routes.yaml`: the typed configuration and its loading.
//!
//! Loading is two steps (parse, don't validate): [`Config::parse`] turns text
//! into typed structs with `deny_unknown_fields`, interpolating `${VAR}` and
//! collecting every error with its place; building runtime objects (opening
//! files, HTTP clients) happens later, in `app` and `sinks`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::sinks::SinkConfig;

/// A fully parsed and cross-checked configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub server: ServerConfig,
    pub stripe: StripeConfig,
    /// Sinks by name, in name order.
    pub sinks: BTreeMap<String, SinkConfig>,
    /// Routes in file order.
    pub routes: Vec<RouteConfig>,
    /// The folder of the config file: relative sink paths resolve against it.
    pub base_dir: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    #[serde(default = "default_path")]
    pub path: String,
    /// Signature timestamp tolerance, both directions; zero turns the check off.
    #[serde(default = "default_tolerance", with = "duration")]
    pub tolerance: Duration,
    #[serde(default = "default_max_body", with = "byte_size")]
    pub max_body: u64,
    /// How long a graceful shutdown may take before in-flight work is abandoned.
    #[serde(default = "default_shutdown_timeout", with = "duration")]
    pub shutdown_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            path: default_path(),
            tolerance: default_tolerance(),
            max_body: default_max_body(),
            shutdown_timeout: default_shutdown_timeout(),
        }
    }
}

/// How the Stripe API is called during enrichment.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct StripeConfig {
    /// A pinned `Stripe-Version` header; the account's default when unset.
    #[serde(default)]
    pub api_version: Option<String>,
    /// Per-request timeout.
    #[serde(default, with = "opt_duration")]
    pub timeout: Option<Duration>,
    /// Attempts per request, the first included.
    #[serde(default)]
    pub max_attempts: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Emit {
    Order,
    Event,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RouteConfig {
    pub name: String,
    /// Where the route starts in the file (`routes.yaml:14:5`), for errors
    /// found when its conditions are compiled.
    pub place: String,
    /// Conditions by key, in file order; all must hold.
    pub when: Vec<(String, serde_json::Value)>,
    pub emit: Emit,
    /// Sink names; each exists in [`Config::sinks`].
    pub to: Vec<String>,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 3000))
}
fn default_path() -> String {
    "/api/webhook".to_owned()
}
fn default_tolerance() -> Duration {
    Duration::from_secs(300)
}
fn default_max_body() -> u64 {
    2 * 1024 * 1024
}
fn default_shutdown_timeout() -> Duration {
    Duration::from_secs(10)
}

/// Durations written as `300s`, `1.5s`, `10m`, `72h`, `250ms`.
pub mod duration {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(text.trim()).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid duration `{text}`: {e} (write e.g. `300s`, `10m`, `250ms`)"
            ))
        })
    }
}

pub mod opt_duration {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(text) => humantime::parse_duration(text.trim())
                .map(Some)
                .map_err(|e| {
                    serde::de::Error::custom(format!(
                        "invalid duration `{text}`: {e} (write e.g. `300s`, `10m`, `250ms`)"
                    ))
                }),
        }
    }
}

/// Sizes written as `2MiB`, `512KiB`, `1MB`, or a plain number of bytes.
pub mod byte_size {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(n),
            Raw::Text(text) => parse(&text).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "invalid size `{text}` (write e.g. `2MiB`, `512KiB`, `65536`)"
                ))
            }),
        }
    }

    pub fn parse(text: &str) -> Option<u64> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (digits, unit) = text.split_at(split);
        let n: u64 = digits.parse().ok()?;
        let mult: u64 = match unit.trim() {
            "" | "B" => 1,
            "KB" | "kB" => 1000,
            "KiB" => 1024,
            "MB" => 1000 * 1000,
            "MiB" => 1024 * 1024,
            "GB" => 1000 * 1000 * 1000,
            "GiB" => 1024 * 1024 * 1024,
            _ => return None,
        };
        n.checked_mul(mult)
    }
}

/// One problem in a config file, with its place and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// `routes.yaml:12:5`, or just the file name when no place is known.
    pub place: String,
    pub message: String,
}

impl std::fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.place, self.message)
    }
}

/// Every problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render(.problems))]
pub struct ConfigError {
    pub problems: Vec<ConfigProblem>,
}

fn render(problems: &[ConfigProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

impl Config {
    /// Reads and parses the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let _ = path;
        unimplemented!("config helper")
    }

    /// Parses config text; `file` names it in error places and its folder is
    /// the base for relative paths. `env` looks up `${VAR}`.
    pub fn parse(
        text: &str,
        file: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let _ = (text, file, env);
        unimplemented!("config helper")
    }
}
