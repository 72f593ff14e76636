//! `routes.yaml`: the typed configuration and its loading.
//!
//! Loading is two steps (parse, don't validate): [`Config::parse`] turns text
//! into typed structs with `deny_unknown_fields`, interpolating `${VAR}` and
//! collecting every error with its place; building runtime objects (opening
//! files, HTTP clients) happens later, in `app` and `sinks`.
//!
//! The YAML is first read into a tree that keeps the place of every node, so
//! that each section, sink and route is then deserialized on its own and one
//! broken part does not hide the problems of the others. `${VAR}` is replaced
//! in the parsed scalar values, never in the raw text: quoting stays intact
//! whatever a value holds, keys are left alone, and places stay true to the
//! file. An interpolated value is always a string (typed fields such as
//! `max_attempts` still parse it).

pub mod env;

use std::collections::{BTreeMap, HashMap};
use std::fmt::{self, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::{
    self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor,
};
use serde_saphyr::{Location, MessageFormatter as _, Spanned};

use crate::config::env::Env;
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
    pub store: StoreConfig,
    /// The config file as it was named: places in errors start with it.
    pub file: PathBuf,
    /// The folder of the config file: relative sink paths resolve against it.
    pub base_dir: PathBuf,
}

/// `store:` — the journal of events and deliveries.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// The SQLite database; relative to the config file's folder.
    #[serde(default = "default_store_path")]
    pub path: PathBuf,
    /// How long delivered rows are kept (and so how long an event id is
    /// remembered for dedupe).
    #[serde(default = "default_retention", with = "duration")]
    pub retention: Duration,
    /// Whether a journal commit waits for the disk (fsync). Off, an
    /// acknowledged event survives a crash of the router but not of the
    /// machine; it exists to measure what durability costs.
    #[serde(default = "default_fsync")]
    pub fsync: bool,
    /// The most the journal's write-ahead log may take on disk: past half
    /// of it, the writer checkpoints and starts the log over, so the log
    /// is bounded by this, never by the load.
    #[serde(default = "default_wal_limit", with = "byte_size")]
    pub wal_limit: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            path: default_store_path(),
            retention: default_retention(),
            fsync: default_fsync(),
            wal_limit: default_wal_limit(),
        }
    }
}

impl StoreConfig {
    /// The database path, resolved against the config file's folder.
    pub fn path_in(&self, base_dir: &Path) -> PathBuf {
        if self.path.is_absolute() {
            self.path.clone()
        } else {
            base_dir.join(&self.path)
        }
    }
}

fn default_store_path() -> PathBuf {
    PathBuf::from("data/stripe-router.db")
}
fn default_retention() -> Duration {
    Duration::from_secs(30 * 24 * 3600)
}
fn default_fsync() -> bool {
    true
}
/// Far above what one commit adds (one batch of events, each at most
/// `server.max_body`), so restarting the log is rare; small next to any disk
/// that holds a journal.
fn default_wal_limit() -> u64 {
    64 * 1024 * 1024
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
    /// Connections open at once; past it, new ones get `503` and are closed.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Time to read a request's headers and its whole body.
    #[serde(default = "default_read_timeout", with = "duration")]
    pub read_timeout: Duration,
    /// Bytes of request bodies held in memory at once, over all connections;
    /// past it, requests get `503` with `Retry-After`.
    #[serde(default = "default_body_buffer", with = "byte_size")]
    pub body_buffer: u64,
    /// Where operators read status: loopback only, `off` disables it.
    #[serde(default)]
    pub admin_listen: AdminListen,
}

/// `server.admin_listen`: an address, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminListen {
    Off,
    On(SocketAddr),
}

impl Default for AdminListen {
    fn default() -> Self {
        AdminListen::On(SocketAddr::from(([127, 0, 0, 1], 9464)))
    }
}

impl std::str::FromStr for AdminListen {
    type Err = String;

    /// An address on loopback, or `off`: the admin listener shows the
    /// router's internals and has no authentication yet.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text == "off" {
            return Ok(AdminListen::Off);
        }
        let addr: SocketAddr = text.parse().map_err(|_| {
            format!(
                "invalid address `{text}`: write `127.0.0.1:9464`, or `off` to disable the admin listener"
            )
        })?;
        if !addr.ip().is_loopback() {
            return Err(format!(
                "`{text}` is not a loopback address: the admin listener has no authentication yet; write `127.0.0.1:{}`, or `off`",
                addr.port()
            ));
        }
        Ok(AdminListen::On(addr))
    }
}

impl<'de> Deserialize<'de> for AdminListen {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(de::Error::custom)
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            path: default_path(),
            tolerance: default_tolerance(),
            max_body: default_max_body(),
            shutdown_timeout: default_shutdown_timeout(),
            max_connections: default_max_connections(),
            read_timeout: default_read_timeout(),
            body_buffer: default_body_buffer(),
            admin_listen: AdminListen::default(),
        }
    }
}

/// How the Stripe API is called during enrichment.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StripeConfig {
    /// A pinned `Stripe-Version` header; the account's default when unset.
    #[serde(default, deserialize_with = "api_version")]
    pub api_version: Option<String>,
    /// Per-request timeout.
    #[serde(default, with = "opt_duration")]
    pub timeout: Option<Duration>,
    /// Attempts per request, the first included.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// Pages of line items read per session (100 items a page).
    #[serde(default = "default_max_pages")]
    pub max_pages: u32,
    /// Line items per session; past it the record is a dead letter.
    #[serde(default = "default_max_line_items")]
    pub max_line_items: u32,
    /// Bytes of the Stripe API's answers for one session's line items, all
    /// pages together (so also of one answer).
    #[serde(default = "default_max_response", with = "byte_size")]
    pub max_response: u64,
}

impl Default for StripeConfig {
    fn default() -> Self {
        StripeConfig {
            api_version: None,
            timeout: None,
            max_attempts: None,
            max_pages: default_max_pages(),
            max_line_items: default_max_line_items(),
            max_response: default_max_response(),
        }
    }
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
/// Far above what Stripe opens to one endpoint, far below the open-file
/// limit once it is raised.
fn default_max_connections() -> usize {
    1024
}
/// Stripe sends a whole event in milliseconds and waits at most 30 s for
/// the answer; a client still sending after 10 s is not Stripe.
fn default_read_timeout() -> Duration {
    Duration::from_secs(10)
}
/// 32 bodies of the default 2 MiB `max_body`, being read at once.
fn default_body_buffer() -> u64 {
    64 * 1024 * 1024
}
/// A Checkout Session holds at most 100 line items: one page at 100 a page;
/// 50 pages leave room for any future growth without looping forever.
fn default_max_pages() -> u32 {
    50
}
fn default_max_line_items() -> u32 {
    1000
}
/// A page of 100 items with expanded products is a few hundred KB (about
/// 2 KB an item, pretty-printed), so even `max_line_items` of them fit in
/// a quarter of it.
fn default_max_response() -> u64 {
    8 * 1024 * 1024
}

/// `stripe.api_version`: sent as the `Stripe-Version` header, so it must be
/// one (the client refuses to start otherwise).
fn api_version<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let Some(version) = Option::<String>::deserialize(d)? else {
        return Ok(None);
    };
    match reqwest::header::HeaderValue::from_str(&version) {
        Ok(_) => Ok(Some(version)),
        Err(_) => Err(de::Error::custom(format!(
            "`{version}` is not a Stripe API version: write one as the Dashboard shows it, \
             e.g. `2024-06-20`, or leave it out for the account's default"
        ))),
    }
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

    /// A size as it would be written in the config: `8MiB`, `64KiB`, `1000`.
    pub fn show(n: u64) -> String {
        match n {
            0 => "0".to_owned(),
            n if n % (1024 * 1024 * 1024) == 0 => format!("{}GiB", n / (1024 * 1024 * 1024)),
            n if n % (1024 * 1024) == 0 => format!("{}MiB", n / (1024 * 1024)),
            n if n % 1024 == 0 => format!("{}KiB", n / 1024),
            n => n.to_string(),
        }
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

impl ConfigError {
    fn one(place: String, message: impl Into<String>) -> ConfigError {
        ConfigError {
            problems: vec![ConfigProblem {
                place,
                message: message.into(),
            }],
        }
    }
}

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
        let mut checker = Checker {
            file: file.display().to_string(),
            text,
            problems: Vec::new(),
            expanded: Vec::new(),
            unset,
            unresolved: Vec::new(),
        };
        let config = checker.config(env);
        let base_dir = match file.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        match config {
            Some(parts) if checker.problems.is_empty() => Ok(Config {
                server: parts.server,
                stripe: parts.stripe,
                sinks: parts.sinks,
                routes: parts.routes,
                store: parts.store,
                file: file.to_path_buf(),
                base_dir,
            }),
            _ => Err(checker.finish()),
        }
    }

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
            let target = match sink {
                SinkConfig::Jsonl(c) => {
                    format!("jsonl   {}", self.base_dir.join(&c.path).display())
                }
                SinkConfig::Http(c) => {
                    let signed = if c.signing_secret.is_some() {
                        " (signed)"
                    } else {
                        ""
                    };
                    format!("http    {}{signed}", redact_url(&c.url))
                }
                SinkConfig::Stdout(_) => "stdout".to_owned(),
            };
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

/// What [`redact_url`] shows in place of a URL's credentials.
pub const REDACTED: &str = "<redacted>";

/// A URL fit to show in logs, errors, `check` output and HTTP answers: its
/// user, password and query may each hold a token, so they are replaced by
/// [`REDACTED`] (which still says that one is set); the fragment, never
/// sent, is dropped. The one URL redactor: every message that names a URL
/// shows it through this.
pub fn redact_url(url: &url::Url) -> String {
    let mut shown = url.clone();
    // Only fails for URLs that cannot have userinfo, which then have none.
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    let mut text = shown.to_string();
    if !url.username().is_empty() || url.password().is_some() {
        text = text.replacen("://", &format!("://{REDACTED}@"), 1);
    }
    if url.query().is_some() {
        text.push('?');
        text.push_str(REDACTED);
    }
    text
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

/// How `${VAR}` naming an unset variable is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnsetVars {
    /// An error naming it: what `serve` needs.
    Refused,
    /// Read as empty text, its value not judged: `check --no-env`, as a CI
    /// job without the secrets runs it.
    Allowed,
}

const TOP_LEVEL_KEYS: &str = "server, stripe, store, sinks, routes";
const ROUTE_KEYS: &str = "`name`, `when`, `emit`, `to`";

/// The checked sections, before they become a [`Config`].
struct Parts {
    server: ServerConfig,
    stripe: StripeConfig,
    sinks: BTreeMap<String, SinkConfig>,
    routes: Vec<RouteConfig>,
    store: StoreConfig,
}

/// One pass over one file, collecting every problem rather than stopping at
/// the first.
struct Checker<'a> {
    /// The file as the user named it, for places.
    file: String,
    text: &'a str,
    /// Sorted into file order at the end.
    problems: Vec<(Pos, ConfigProblem)>,
    /// `(value, as written)` for every scalar that `${VAR}` changed, so that
    /// no problem message repeats an interpolated secret.
    expanded: Vec<(String, String)>,
    unset: UnsetVars,
    /// Scalars holding an unset variable: later problems placed there are
    /// about the empty text standing in for it, not the file; the unset
    /// variable is the problem (or, allowed, none).
    unresolved: Vec<Pos>,
}

impl<'a> Checker<'a> {
    fn place(&self, at: impl Into<Pos>) -> String {
        let at = at.into();
        if at.line == 0 {
            self.file.clone()
        } else {
            format!("{}:{}:{}", self.file, at.line, at.column)
        }
    }

    fn problem(&mut self, at: impl Into<Pos>, message: impl Into<String>) {
        let at = at.into();
        // A value that holds an unset variable is not judged.
        if self.unresolved.contains(&at) {
            return;
        }
        let mut message = message.into();
        for (value, written) in &self.expanded {
            if !value.is_empty() && message.contains(value.as_str()) {
                message = message.replace(value.as_str(), written);
            }
        }
        let place = self.place(at);
        self.problems.push((at, ConfigProblem { place, message }));
    }

    fn finish(mut self) -> ConfigError {
        self.problems.sort_by_key(|&(at, _)| at);
        ConfigError {
            problems: self.problems.into_iter().map(|(_, p)| p).collect(),
        }
    }

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
        let (mut sinks, mut routes) = (None, None);
        for (key, value) in entries {
            match key.value.as_str() {
                Some("server") => parts.server = self.server(value).unwrap_or_default(),
                Some("stripe") => {
                    parts.stripe = self.section(value, "`stripe`").unwrap_or_default();
                }
                Some("store") => {
                    parts.store = self.section(value, "`store`").unwrap_or_default();
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
                self.problem(e.location().unwrap_or(Location::UNKNOWN), message);
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
    fn interpolate(&mut self, node: &mut Spanned<Node>, env: &Env) {
        match &mut node.value {
            Node::Str(text) if text.contains('$') => {
                let raw = self.raw(node.referenced);
                let (value, missing, unresolved) = expand(text, env, self.unset);
                for (name, problem) in missing {
                    let at = self.locate_in_raw(node.referenced, raw, &format!("${{{name}"));
                    self.problem(at, problem);
                }
                if unresolved {
                    self.unresolved.push(node.referenced.into());
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

/// A 1-based line and column; zero when unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Pos {
    line: u64,
    column: u64,
}

impl Pos {
    const UNKNOWN: Pos = Pos { line: 0, column: 0 };
}

impl From<Location> for Pos {
    fn from(at: Location) -> Pos {
        Pos {
            line: at.line(),
            column: at.column(),
        }
    }
}

impl Checker<'_> {
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

    /// A section that may be left out or empty (`server:`); its defaults then.
    fn section<T: serde::de::DeserializeOwned + Default>(
        &mut self,
        node: &Spanned<Node>,
        what: &str,
    ) -> Option<T> {
        if node.value == Node::Null {
            return Some(T::default());
        }
        self.typed(node, what, None)
    }

    /// Deserializes `T`, reporting every bad field. Serde stops at a
    /// struct's first error, so on failure each field is tried again alone
    /// (with the enum tag, `tag`, when `T` is internally tagged) to find the
    /// others too.
    fn typed<T: serde::de::DeserializeOwned>(
        &mut self,
        node: &Spanned<Node>,
        what: &str,
        tag: Option<&str>,
    ) -> Option<T> {
        let first = match T::deserialize(De(node)) {
            Ok(value) => return Some(value),
            Err(e) => e,
        };
        let mut errors: Vec<DeError> = Vec::new();
        if let Node::Map(entries) = &node.value {
            let tag = tag.and_then(|t| entries.iter().find(|(k, _)| k.value.as_str() == Some(t)));
            // What the tag alone says (a missing field, an unknown type):
            // any other error of a probe is about the probe's one field.
            let tag_alone = tag.and_then(|t| {
                let alone = Spanned::new(Node::Map(vec![t.clone()]), node.referenced, node.defined);
                T::deserialize(De(&alone)).err().map(|e| e.message)
            });
            for entry in entries {
                if tag.is_some_and(|t| std::ptr::eq(t, entry)) {
                    continue;
                }
                let alone = Node::Map(tag.into_iter().chain([entry]).cloned().collect());
                let probe = Spanned::new(alone, node.referenced, node.defined);
                if let Err(mut e) = T::deserialize(De(&probe)) {
                    // Internally tagged enums (sinks) buffer their input, so
                    // their errors come back without a place; the probe
                    // gives it, and messages need not repeat the value
                    // (which may be a secret) to be placed.
                    if tag.is_some()
                        && e.at.is_none()
                        && !e.message.starts_with("unknown field")
                        && tag_alone.as_deref() != Some(e.message.as_str())
                    {
                        e.at = Some(entry.1.referenced);
                    }
                    let known = errors
                        .iter()
                        .any(|k| k.message == e.message && k.at == e.at);
                    if !known && !e.message.starts_with("missing field") {
                        errors.push(e);
                    }
                }
            }
        }
        if errors.is_empty() {
            errors.push(first);
        }
        for error in errors {
            self.report(error, node, what);
        }
        None
    }

    fn sinks(
        &mut self,
        node: &Spanned<Node>,
        defined: &mut Vec<String>,
    ) -> BTreeMap<String, SinkConfig> {
        let mut sinks = BTreeMap::new();
        let Node::Map(entries) = &node.value else {
            self.problem(
                node.referenced,
                "`sinks` must be a map of sink names to settings, e.g. `console: { type: stdout }`",
            );
            return sinks;
        };
        for (key, value) in entries {
            let Some(name) = key.value.as_str() else {
                self.problem(key.referenced, "a sink name must be a string");
                continue;
            };
            if defined.iter().any(|d| d == name) {
                continue; // reported as a duplicate
            }
            defined.push(name.to_owned());
            if let Some(problem) = name_problem("sink", name) {
                self.problem(key.referenced, problem);
            }
            let what = format!("sink `{name}`");
            if !matches!(value.value, Node::Map(_)) {
                self.problem(
                    value.referenced,
                    format!("{what} must be a map with a `type`, e.g. `{{ type: jsonl, path: sinks/{name}.jsonl }}`"),
                );
                continue;
            }
            if let Some(sink) = self.typed(value, &what, Some("type")) {
                sinks.insert(name.to_owned(), sink);
            }
        }
        sinks
    }

    fn routes(&mut self, node: &Spanned<Node>, defined: &[String]) -> Vec<RouteConfig> {
        let mut routes = Vec::new();
        let items = match &node.value {
            Node::Seq(items) => items.as_slice(),
            _ => {
                self.problem(
                    node.referenced,
                    "`routes` must be a list: start each route with `- name: ...`",
                );
                return routes;
            }
        };
        let mut names: HashMap<String, Location> = HashMap::new();
        for (index, item) in items.iter().enumerate() {
            let Some(route) = self.route(item, index, defined) else {
                continue;
            };
            match names.get(&route.name) {
                Some(&first) => {
                    let first = self.place(first);
                    let at = item
                        .value
                        .get("name")
                        .map_or(item.referenced, |v| v.referenced);
                    self.problem(
                        at,
                        format!(
                            "route name `{}` is used twice (first at {first}): give each route its own name, records are identified by it",
                            route.name
                        ),
                    );
                }
                None => {
                    let at = item
                        .value
                        .get("name")
                        .map_or(item.referenced, |v| v.referenced);
                    names.insert(route.name.clone(), at);
                    routes.push(route);
                }
            }
        }
        routes
    }

    fn route(
        &mut self,
        item: &Spanned<Node>,
        index: usize,
        defined: &[String],
    ) -> Option<RouteConfig> {
        let Node::Map(entries) = &item.value else {
            self.problem(
                item.referenced,
                "a route must be a map with `name`, `when`, `emit` and `to`",
            );
            return None;
        };
        let name = match item.value.get("name").map(|n| (n, &n.value)) {
            Some((node, Node::Str(name))) if !name.trim().is_empty() => {
                if let Some(problem) = name_problem("route", name) {
                    self.problem(node.referenced, problem);
                }
                Some(name.clone())
            }
            Some((node, _)) => {
                self.problem(
                    node.referenced,
                    "a route's `name` must be a non-empty string",
                );
                None
            }
            None => {
                self.problem(
                    item.referenced,
                    format!(
                        "route #{} has no `name`: add one, it names the route in records and logs",
                        index + 1
                    ),
                );
                None
            }
        };
        let label = name.as_ref().map_or_else(
            || format!("route #{}", index + 1),
            |n| format!("route `{n}`"),
        );

        let (mut when, mut emit, mut to) = (None, None, None);
        for (key, value) in entries {
            match key.value.as_str() {
                Some("name") => {}
                Some("when") => when = self.when(value, &label),
                Some("emit") => {
                    emit = Emit::deserialize(De(value))
                        .map_err(|_| {
                            self.problem(
                                value.referenced,
                                format!("`emit` in {label} must be `order` or `event`"),
                            );
                        })
                        .ok();
                }
                Some("to") => to = self.to(value, &label, defined),
                _ => self.problem(
                    key.referenced,
                    format!(
                        "unknown field `{}` in {label} (expected one of {ROUTE_KEYS})",
                        key.value.text()
                    ),
                ),
            }
        }
        let missing = [
            (
                "when",
                "add conditions, e.g. `when: { type: checkout.session.completed }`, or `when: {}` for every event",
            ),
            ("emit", "add `emit: order` or `emit: event`"),
            ("to", "list the sinks it delivers to, e.g. `to: [orders]`"),
        ];
        for (key, fix) in missing {
            if item.value.get(key).is_none() {
                self.problem(item.referenced, format!("{label} has no `{key}`: {fix}"));
            }
        }
        Some(RouteConfig {
            name: name?,
            place: self.place(item.referenced),
            when: when?,
            emit: emit?,
            to: to?,
        })
    }

    fn when(
        &mut self,
        node: &Spanned<Node>,
        label: &str,
    ) -> Option<Vec<(String, serde_json::Value)>> {
        let Node::Map(entries) = &node.value else {
            self.problem(
                node.referenced,
                format!("`when` in {label} must be a map of conditions, e.g. `{{ type: checkout.session.completed }}`"),
            );
            return None;
        };
        let mut conditions = Vec::new();
        let mut ok = true;
        for (key, value) in entries {
            let Some(name) = key.value.as_str() else {
                self.problem(
                    key.referenced,
                    format!("a condition key in {label} must be a string"),
                );
                ok = false;
                continue;
            };
            match serde_json::Value::deserialize(De(value)) {
                Ok(value) => conditions.push((name.to_owned(), value)),
                Err(e) => {
                    self.report(e, value, &format!("`when.{name}` in {label}"));
                    ok = false;
                }
            }
        }
        ok.then_some(conditions)
    }

    fn to(&mut self, node: &Spanned<Node>, label: &str, defined: &[String]) -> Option<Vec<String>> {
        let names: Vec<&Spanned<Node>> = match &node.value {
            Node::Str(_) => vec![node],
            Node::Seq(items) => items.iter().collect(),
            _ => {
                self.problem(
                    node.referenced,
                    format!(
                        "`to` in {label} must be a sink name or a list of them, e.g. `to: [orders]`"
                    ),
                );
                return None;
            }
        };
        if names.is_empty() {
            self.problem(
                node.referenced,
                format!("{label} sends to no sink: name at least one in `to`, e.g. `to: [orders]`"),
            );
            return None;
        }
        let mut to: Vec<String> = Vec::new();
        let mut ok = true;
        for name in names {
            let Some(text) = name.value.as_str() else {
                self.problem(
                    name.referenced,
                    format!("`to` in {label} must list sink names"),
                );
                ok = false;
                continue;
            };
            if to.iter().any(|t| t == text) {
                self.problem(
                    name.referenced,
                    format!("{label} names sink `{text}` twice: it would receive each record twice, remove one"),
                );
                ok = false;
            } else if !defined.iter().any(|d| d == text) {
                let known = if defined.is_empty() {
                    "no sinks are defined".to_owned()
                } else {
                    let mut known = defined.to_vec();
                    known.sort();
                    format!("defined: {}", known.join(", "))
                };
                self.problem(
                    name.referenced,
                    format!("{label} sends to sink `{text}`, which is not defined: add it under `sinks:` or fix the name ({known})"),
                );
                ok = false;
            }
            to.push(text.to_owned());
        }
        ok.then_some(to)
    }

    /// Turns a deserialization error into a problem that names `what` and
    /// the field, placed as precisely as the error allows.
    fn report(&mut self, error: DeError, node: &Spanned<Node>, what: &str) {
        let message = error.message;
        let entries: &[(Spanned<Node>, Spanned<Node>)] = match &node.value {
            Node::Map(entries) => entries,
            _ => &[],
        };
        let unknown = between(&message, "unknown field `", "`");
        // Internally tagged enums (sinks) buffer their input, so errors from
        // inside them come back without a place: find the key or value that
        // the message names.
        let found = entries.iter().find(|(key, value)| {
            let key_named = unknown == key.value.as_str();
            let at_value = error.at == Some(value.referenced);
            let value_named = value.value.as_str().is_some_and(|v| {
                !v.is_empty()
                    && (message.contains(&format!("{v:?}")) || message.contains(&format!("`{v}`")))
            });
            key_named || at_value || (error.at.is_none() && value_named)
        });
        let at = match (unknown, found) {
            (Some(_), Some((key, _))) => key.referenced,
            (None, Some((_, value))) if error.at.is_none() => value.referenced,
            _ => error.at.unwrap_or(node.referenced),
        };
        let field = found.and_then(|(key, _)| key.value.as_str());

        let text = if let Some(name) = unknown {
            let expected = message
                .split_once(", expected ")
                .map(|(_, e)| format!("expected {e}"))
                .unwrap_or_else(|| "it takes no other options".to_owned());
            format!("unknown field `{name}` in {what} ({expected})")
        } else if let Some(variant) = between(&message, "unknown variant `", "`") {
            let expected = message
                .split_once(", expected ")
                .map_or(String::new(), |(_, e)| e.replace('`', ""));
            if field == Some("type") && what.starts_with("sink ") {
                format!("unknown sink type `{variant}` in {what} (expected {expected})")
            } else {
                format!("unknown value `{variant}` in {what} (expected {expected})")
            }
        } else if let Some(name) = between(&message, "missing field `", "`") {
            if name == "type" && what.starts_with("sink ") {
                format!("{what} has no `type`: add one, e.g. `type: jsonl`")
            } else {
                format!("{what} has no `{name}`: add it")
            }
        } else {
            let hint = match field {
                Some("listen") => " (write an address and port, e.g. `127.0.0.1:3000`)",
                Some("url") => " (write a full URL, e.g. `http://127.0.0.1:4000/orders`)",
                _ if message.ends_with("expected a string") => " (put the value in quotes)",
                _ => "",
            };
            match field {
                Some(field) => format!("invalid `{field}` in {what}: {message}{hint}"),
                None => format!("{what}: {message}{hint}"),
            }
        };
        self.problem(at, text);
    }
}

/// Why `name` cannot name a route or sink, with a name that can. Names go
/// into record ids (`<event id>:<route>`), sent as Standard Webhooks message
/// ids and HTTP header values, which allow no `.`, `:` or spaces.
fn name_problem(kind: &str, name: &str) -> Option<String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if name.chars().all(allowed) {
        return None;
    }
    let mut suggested = String::with_capacity(name.len());
    for c in name.chars() {
        if allowed(c) {
            suggested.push(c);
        } else if !suggested.ends_with('-') {
            suggested.push('-');
        }
    }
    let suggested = match suggested.trim_matches('-') {
        "" => kind,
        trimmed => trimmed,
    };
    Some(format!(
        "{kind} name `{name}` may only hold ASCII letters, digits, `-` and `_` (it becomes part of \
         record ids, which consumers receive as Standard Webhooks message ids): rename it, e.g. \
         `{suggested}`"
    ))
}

/// The text between `start` and the next `end` in `text`.
fn between<'t>(text: &'t str, start: &str, end: &str) -> Option<&'t str> {
    let (_, rest) = text.split_once(start)?;
    rest.split_once(end).map(|(inside, _)| inside)
}

/// Expands `${NAME}` and `$${`; returns the value, for each malformed
/// reference (and unset one, unless `unset` allows them) its name and a
/// problem message, and whether an unset variable was left empty.
fn expand(text: &str, env: &Env, unset: UnsetVars) -> (String, Vec<(String, String)>, bool) {
    let mut out = String::with_capacity(text.len());
    let mut problems = Vec::new();
    let mut unresolved = false;
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            let Some((name, tail)) = tail.split_once('}') else {
                problems.push((
                    String::new(),
                    "`${` is not closed: write `${NAME}`, or `$${` for a literal `${`".to_owned(),
                ));
                out.push_str(after);
                rest = "";
                continue;
            };
            let valid = name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            match env.get(name) {
                _ if !valid => problems.push((
                    name.to_owned(),
                    format!("`${{{name}}}` is not a variable name: use letters, digits and `_`, or write `$${{` for a literal `${{`"),
                )),
                Some(value) => out.push_str(&value),
                None => {
                    unresolved = true;
                    if unset == UnsetVars::Refused {
                        problems.push((
                            name.to_owned(),
                            format!("${{{name}}} is not set: export it or put it in .env"),
                        ));
                    }
                }
            }
            rest = tail;
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    (out, problems, unresolved)
}

/// A YAML value with the place of every node, so that each part of the file
/// can be checked on its own and every problem reported with its place.
#[derive(Debug, Clone, PartialEq)]
enum Node {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<Node>>),
    Map(Vec<(Spanned<Node>, Spanned<Node>)>),
}

impl Node {
    fn as_str(&self) -> Option<&str> {
        match self {
            Node::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A scalar as text (keys, messages).
    fn text(&self) -> String {
        match self {
            Node::Null => "null".to_owned(),
            Node::Bool(b) => b.to_string(),
            Node::Int(n) => n.to_string(),
            Node::UInt(n) => n.to_string(),
            Node::Float(n) => n.to_string(),
            Node::Str(s) => s.clone(),
            Node::Seq(_) => "[...]".to_owned(),
            Node::Map(_) => "{...}".to_owned(),
        }
    }

    fn get(&self, key: &str) -> Option<&Spanned<Node>> {
        match self {
            Node::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.value.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(Node::UInt(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key()? {
            entries.push((key, map.next_value()?));
        }
        Ok(Node::Map(entries))
    }
}

/// An error from deserializing a [`Node`]: where, when known.
#[derive(Debug)]
struct DeError {
    message: String,
    at: Option<Location>,
}

impl DeError {
    fn or_at(mut self, at: Location) -> DeError {
        self.at.get_or_insert(at);
        self
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(message: T) -> DeError {
        DeError {
            message: message.to_string(),
            at: None,
        }
    }
}

/// Numbers of every width read like `u64`: the visitor narrows them.
macro_rules! numbers_via_u64 {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            self.deserialize_u64(visitor)
        }
    )*};
}

/// Deserializes typed config from a [`Node`]; an error is placed at the
/// deepest node it came from.
#[derive(Clone, Copy)]
struct De<'a>(&'a Spanned<Node>);

impl<'de> Deserializer<'de> for De<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.0.value {
            Node::Null => visitor.visit_unit(),
            Node::Bool(b) => visitor.visit_bool(*b),
            Node::Int(n) => visitor.visit_i64(*n),
            Node::UInt(n) => visitor.visit_u64(*n),
            Node::Float(n) => visitor.visit_f64(*n),
            Node::Str(s) => visitor.visit_str(s),
            Node::Seq(items) => visitor.visit_seq(SeqDe(items.iter())),
            Node::Map(entries) => visitor.visit_map(MapDe {
                entries: entries.iter(),
                value: None,
            }),
        }
        .map_err(|e: DeError| e.or_at(self.0.referenced))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0.value {
            Node::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
        .map_err(|e: DeError| e.or_at(self.0.referenced))
    }

    /// A string field takes any scalar, as YAML readers expect: a header
    /// value `5` or a secret `123456` is text.
    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.0.value {
            Node::Bool(_) | Node::Int(_) | Node::UInt(_) | Node::Float(_) => {
                visitor.visit_string(self.0.value.text())
            }
            _ => return self.deserialize_any(visitor),
        }
        .map_err(|e: DeError| e.or_at(self.0.referenced))
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    /// `${VAR}` always yields a string; a typed field (`max_attempts:
    /// ${ATTEMPTS}`) still takes it when the text is a number or a bool.
    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.0.value {
            Node::Str(s) if matches!(s.as_str(), "true" | "false") => {
                visitor.visit_bool(s == "true")
            }
            _ => return self.deserialize_any(visitor),
        }
        .map_err(|e: DeError| e.or_at(self.0.referenced))
    }

    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let Node::Str(s) = &self.0.value else {
            return self.deserialize_any(visitor);
        };
        if let Ok(n) = s.parse::<u64>() {
            visitor.visit_u64(n)
        } else if let Ok(n) = s.parse::<i64>() {
            visitor.visit_i64(n)
        } else if s.contains(|c: char| c.is_ascii_digit()) && !s.contains(char::is_alphabetic) {
            match s.parse::<f64>() {
                Ok(n) => visitor.visit_f64(n),
                Err(_) => return self.deserialize_any(visitor),
            }
        } else {
            return self.deserialize_any(visitor);
        }
        .map_err(|e: DeError| e.or_at(self.0.referenced))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match &self.0.value {
            Node::Str(s) => visitor.visit_enum(s.as_str().into_deserializer()),
            _ => return self.deserialize_any(visitor),
        }
        .map_err(|e: DeError| e.or_at(self.0.referenced))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor
            .visit_newtype_struct(self)
            .map_err(|e: DeError| e.or_at(self.0.referenced))
    }

    numbers_via_u64! {
        deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_f32 deserialize_f64
    }

    serde::forward_to_deserialize_any! {
        i128 u128 char bytes byte_buf
        unit unit_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

struct SeqDe<'a>(std::slice::Iter<'a, Spanned<Node>>);

impl<'de> SeqAccess<'de> for SeqDe<'_> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        self.0
            .next()
            .map(|item| seed.deserialize(De(item)))
            .transpose()
    }
}

struct MapDe<'a> {
    entries: std::slice::Iter<'a, (Spanned<Node>, Spanned<Node>)>,
    value: Option<&'a Spanned<Node>>,
}

impl<'de> MapAccess<'de> for MapDe<'_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        self.value = Some(value);
        seed.deserialize(De(key)).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        match self.value.take() {
            // Errors raised after a value was read (`with` functions,
            // `FromStr`) still belong to that value.
            Some(value) => seed
                .deserialize(De(value))
                .map_err(|e| e.or_at(value.referenced)),
            None => Err(de::Error::custom("a map value was read before its key")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::{HttpConfig, JsonlConfig, RetryConfig, StdoutConfig};
    use serde_json::json;

    fn env() -> Env {
        Env::from_map([
            ("SHIPPING_TOKEN", "tok_123"),
            ("SIGNING", "whsec_c2VjcmV0"),
            ("PORT", "8080"),
        ])
    }

    #[track_caller]
    fn parse(text: &str) -> Config {
        Config::parse(text, Path::new("routes.yaml"), &env()).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Asserts the exact problems, in file order: (place, message fragments).
    #[track_caller]
    fn check_errors(text: &str, expected: &[(&str, &[&str])]) {
        let error = match Config::parse(text, Path::new("routes.yaml"), &env()) {
            Ok(config) => panic!("parsed, expected errors:\n{text}\n{config:#?}"),
            Err(e) => e,
        };
        let got: Vec<_> = error.problems.iter().map(ToString::to_string).collect();
        assert_eq!(error.problems.len(), expected.len(), "{text}\n{got:#?}");
        for (problem, (place, fragments)) in error.problems.iter().zip(expected) {
            assert_eq!(&problem.place, place, "{text}\n{got:#?}");
            for fragment in *fragments {
                assert!(
                    problem.message.contains(fragment),
                    "`{fragment}` not in {problem}\n{got:#?}"
                );
            }
        }
    }

    const VALID_TAIL: &str = "sinks:\n  console: { type: stdout }\nroutes:\n  - name: all\n    when: { type: \"*\" }\n    emit: event\n    to: console\n";

    #[test]
    fn every_option_parses() {
        let config = parse(
            r#"
server:
  listen: 0.0.0.0:${PORT}
  path: /hooks/stripe
  tolerance: 5m
  max_body: 512KiB
  shutdown_timeout: 30s
  max_connections: 200
  read_timeout: 5s
  body_buffer: 16MiB
  admin_listen: 127.0.0.1:0
stripe:
  api_version: 2025-03-31.basil
  timeout: 20s
  max_attempts: 4
  max_pages: 10
  max_line_items: 500
  max_response: 4MiB
store:
  path: /var/lib/stripe-router/journal.db
  retention: 7d
  fsync: false
  wal_limit: 16MiB
sinks:
  orders: { type: jsonl, path: sinks/orders.jsonl, concurrency: 2, mode: "0640" }
  shipping:
    type: http
    url: http://127.0.0.1:4000/orders
    headers:
      Authorization: "Bearer ${SHIPPING_TOKEN}"
      X-Shop: "5"
    signing_secret: ${SIGNING}
    timeout: 10s
    retry: { initial: 500ms, max: 5m, max_age: 24h }
    concurrency: 32
  console: { type: stdout, retry: { max_age: 1h } }
routes:
  - name: paid-orders
    when:
      type: [checkout.session.completed, checkout.session.async_payment_succeeded]
      payment_status: paid
      livemode: true
      data.object.currency: eur
      data.object.amount_total: { gte: 1000, lt: 100000 }
      data.object.metadata.channel: { exists: true }
      data.object.customer_details.address.country: { not: [US, CA] }
    emit: order
    to: [orders, shipping]
  - name: everything
    when: { type: "checkout.session.*" }
    emit: event
    to: console
"#,
        );
        let expected = Config {
            server: ServerConfig {
                listen: "0.0.0.0:8080".parse().expect("address"),
                path: "/hooks/stripe".to_owned(),
                tolerance: Duration::from_secs(300),
                max_body: 512 * 1024,
                shutdown_timeout: Duration::from_secs(30),
                max_connections: 200,
                read_timeout: Duration::from_secs(5),
                body_buffer: 16 * 1024 * 1024,
                admin_listen: AdminListen::On("127.0.0.1:0".parse().expect("address")),
            },
            stripe: StripeConfig {
                api_version: Some("2025-03-31.basil".to_owned()),
                timeout: Some(Duration::from_secs(20)),
                max_attempts: Some(4),
                max_pages: 10,
                max_line_items: 500,
                max_response: 4 * 1024 * 1024,
            },
            sinks: BTreeMap::from([
                (
                    "orders".to_owned(),
                    SinkConfig::Jsonl(JsonlConfig {
                        path: PathBuf::from("sinks/orders.jsonl"),
                        retry: RetryConfig::default(),
                        concurrency: Some(2),
                        mode: crate::sinks::jsonl::FileMode::parse("0640").ok(),
                    }),
                ),
                (
                    "shipping".to_owned(),
                    SinkConfig::Http(HttpConfig {
                        url: "http://127.0.0.1:4000/orders".parse().expect("url"),
                        headers: BTreeMap::from([
                            ("Authorization".to_owned(), "Bearer tok_123".to_owned()),
                            ("X-Shop".to_owned(), "5".to_owned()),
                        ]),
                        signing_secret: Some("whsec_c2VjcmV0".to_owned()),
                        timeout: Some(Duration::from_secs(10)),
                        retry: RetryConfig {
                            initial: Duration::from_millis(500),
                            max: Duration::from_secs(300),
                            max_age: Duration::from_secs(24 * 3600),
                        },
                        concurrency: Some(32),
                    }),
                ),
                (
                    "console".to_owned(),
                    SinkConfig::Stdout(StdoutConfig {
                        retry: RetryConfig {
                            max_age: Duration::from_secs(3600),
                            ..RetryConfig::default()
                        },
                        concurrency: None,
                    }),
                ),
            ]),
            routes: vec![
                RouteConfig {
                    name: "paid-orders".to_owned(),
                    place: "routes.yaml:38:5".to_owned(),
                    when: vec![
                        (
                            "type".to_owned(),
                            json!([
                                "checkout.session.completed",
                                "checkout.session.async_payment_succeeded"
                            ]),
                        ),
                        ("payment_status".to_owned(), json!("paid")),
                        ("livemode".to_owned(), json!(true)),
                        ("data.object.currency".to_owned(), json!("eur")),
                        (
                            "data.object.amount_total".to_owned(),
                            json!({"gte": 1000, "lt": 100000}),
                        ),
                        (
                            "data.object.metadata.channel".to_owned(),
                            json!({"exists": true}),
                        ),
                        (
                            "data.object.customer_details.address.country".to_owned(),
                            json!({"not": ["US", "CA"]}),
                        ),
                    ],
                    emit: Emit::Order,
                    to: vec!["orders".to_owned(), "shipping".to_owned()],
                },
                RouteConfig {
                    name: "everything".to_owned(),
                    place: "routes.yaml:49:5".to_owned(),
                    when: vec![("type".to_owned(), json!("checkout.session.*"))],
                    emit: Emit::Event,
                    to: vec!["console".to_owned()],
                },
            ],
            store: StoreConfig {
                path: PathBuf::from("/var/lib/stripe-router/journal.db"),
                retention: Duration::from_secs(7 * 24 * 3600),
                fsync: false,
                wal_limit: 16 * 1024 * 1024,
            },
            file: PathBuf::from("routes.yaml"),
            base_dir: PathBuf::from("."),
        };
        assert_eq!(config, expected);
        // `when` keeps the order written, not alphabetical order.
        assert_eq!(config.routes[0].when[0].0, "type");
    }

    #[test]
    fn defaults_apply_when_sections_are_left_out() {
        let config = parse(VALID_TAIL);
        assert_eq!(config.server, ServerConfig::default());
        assert_eq!(config.server.listen.to_string(), "127.0.0.1:3000");
        assert_eq!(config.server.path, "/api/webhook");
        assert_eq!(config.server.max_body, 2 * 1024 * 1024);
        assert_eq!(config.stripe, StripeConfig::default());
        let config = parse(&format!("server:\nstripe:\n{VALID_TAIL}"));
        assert_eq!(config.server, ServerConfig::default());
    }

    #[test]
    fn the_repository_default_parses() {
        let config = Config::parse(
            include_str!("../../routes.yaml"),
            Path::new("routes.yaml"),
            &Env::empty(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            config.sinks.keys().collect::<Vec<_>>(),
            ["console", "failed", "orders"]
        );
        assert_eq!(
            config.sinks["orders"],
            SinkConfig::Jsonl(JsonlConfig {
                path: PathBuf::from("sinks/orders.jsonl"),
                ..JsonlConfig::default()
            })
        );
        let routes: Vec<_> = config
            .routes
            .iter()
            .map(|r| (r.name.as_str(), r.emit, r.to.clone()))
            .collect();
        assert_eq!(
            routes,
            [
                (
                    "paid-orders",
                    Emit::Order,
                    vec!["orders".to_owned(), "console".to_owned()]
                ),
                ("failed-payments", Emit::Order, vec!["failed".to_owned()]),
            ]
        );
        assert_eq!(
            config.routes[0].when[1],
            ("payment_status".to_owned(), json!("paid"))
        );
    }

    #[test]
    fn broken_configs_report_every_problem_with_its_place() {
        // Three broken sinks and a route naming a missing one: four problems.
        check_errors(
            "sinks:\n  a: { type: jsnl, path: x }\n  b: { type: jsonl, pth: x }\n  c: { type: http, url: nope }\n  console: { type: stdout }\nroutes:\n  - name: r\n    when: {}\n    emit: order\n    to: [console, shipping]\n",
            &[
                (
                    "routes.yaml:2:14",
                    &[
                        "unknown sink type `jsnl` in sink `a`",
                        "jsonl, http, stdout",
                    ],
                ),
                (
                    "routes.yaml:3:21",
                    &["unknown field `pth` in sink `b`", "expected one of `path`"],
                ),
                (
                    "routes.yaml:4:25",
                    &[
                        "invalid `url` in sink `c`",
                        "relative URL",
                        "http://127.0.0.1:4000",
                    ],
                ),
                (
                    "routes.yaml:10:19",
                    &[
                        "route `r` sends to sink `shipping`, which is not defined",
                        "add it under `sinks:`",
                        "(defined: a, b, c, console)",
                    ],
                ),
            ],
        );
        // Unknown keys at every level.
        check_errors(
            &format!("sevrer: {{}}\nserver: {{ lisen: 1 }}\n{VALID_TAIL}"),
            &[
                (
                    "routes.yaml:1:1",
                    &[
                        "unknown key `sevrer` at the top level",
                        "server, stripe, store, sinks, routes",
                    ],
                ),
                (
                    "routes.yaml:2:11",
                    &["unknown field `lisen` in `server`", "`listen`"],
                ),
            ],
        );
        check_errors(
            "sinks:\n  console: { type: stdout, colour: true }\nroutes:\n  - name: r\n    when: {}\n    emit: event\n    to: console\n    too: [x]\n",
            &[
                (
                    "routes.yaml:2:28",
                    &[
                        "unknown field `colour` in sink `console`",
                        "expected `retry` or `concurrency`",
                    ],
                ),
                (
                    "routes.yaml:8:5",
                    &["unknown field `too` in route `r`", "`to`"],
                ),
            ],
        );
        // Duplicate route names; duplicate sink keys; duplicate keys elsewhere.
        check_errors(
            &format!(
                "{VALID_TAIL}  - name: all\n    when: {{}}\n    emit: event\n    to: console\n"
            ),
            &[(
                "routes.yaml:8:11",
                &["route name `all` is used twice (first at routes.yaml:4:11)"],
            )],
        );
        check_errors(
            "sinks:\n  console: { type: stdout }\n  console: { type: jsonl, path: x }\nroutes:\n  - name: r\n    when: { type: a, type: b }\n    emit: event\n    to: console\n",
            &[
                (
                    "routes.yaml:3:3",
                    &["sink `console` is defined twice (first at routes.yaml:2:3)"],
                ),
                (
                    "routes.yaml:6:22",
                    &["duplicate key `type` (first at routes.yaml:6:13)"],
                ),
            ],
        );
        // Route fields missing or wrong.
        check_errors(
            "sinks: { console: { type: stdout } }\nroutes:\n  - when: {}\n    emit: order\n    to: []\n  - name: r\n    when: paid\n    emit: orders\n",
            &[
                ("routes.yaml:3:5", &["route #1 has no `name`"]),
                ("routes.yaml:5:9", &["route #1 sends to no sink"]),
                ("routes.yaml:6:5", &["route `r` has no `to`"]),
                ("routes.yaml:7:11", &["`when` in route `r` must be a map"]),
                (
                    "routes.yaml:8:11",
                    &["`emit` in route `r` must be `order` or `event`"],
                ),
            ],
        );
        // Bounds that would refuse every request; an admin listener off loopback.
        check_errors(
            &format!(
                "server:\n  max_connections: 0\n  read_timeout: 0s\n  max_body: 4MiB\n  body_buffer: 1MiB\n{VALID_TAIL}"
            ),
            &[
                (
                    "routes.yaml:2:20",
                    &["`server.max_connections` must be at least 1"],
                ),
                (
                    "routes.yaml:3:17",
                    &["`server.read_timeout` must be more than 0s"],
                ),
                (
                    "routes.yaml:5:16",
                    &[
                        "`server.body_buffer` (1048576 bytes) is less than `server.max_body` (4194304 bytes)",
                    ],
                ),
            ],
        );
        check_errors(
            &format!("server: {{ max_body: 100MiB }}\n{VALID_TAIL}"),
            &[("routes.yaml:1:21", &["make body_buffer at least max_body"])],
        );
        check_errors(
            &format!("server:\n  admin_listen: 0.0.0.0:9464\n{VALID_TAIL}"),
            &[(
                "routes.yaml:2:17",
                &[
                    "`0.0.0.0:9464` is not a loopback address",
                    "`127.0.0.1:9464`, or `off`",
                ],
            )],
        );
        // Bad values in typed fields: every one, not only the first per section.
        check_errors(
            &format!(
                "server:\n  listen: localhost:3000\n  path: api/webhook\n  tolerance: 5 parsecs\nstripe:\n  timeout: 300\n  max_attempts: many\n{VALID_TAIL}"
            ),
            &[
                (
                    "routes.yaml:2:11",
                    &[
                        "invalid `listen` in `server`",
                        "invalid socket address",
                        "`127.0.0.1:3000`",
                    ],
                ),
                (
                    "routes.yaml:3:9",
                    &["`server.path` must start with `/`: write `/api/webhook`"],
                ),
                (
                    "routes.yaml:4:14",
                    &[
                        "invalid `tolerance` in `server`",
                        "invalid duration `5 parsecs`",
                        "`300s`",
                    ],
                ),
                (
                    "routes.yaml:6:12",
                    &[
                        "invalid `timeout` in `stripe`",
                        "invalid duration `300`",
                        "`300s`",
                    ],
                ),
                (
                    "routes.yaml:7:17",
                    &["invalid `max_attempts` in `stripe`", "expected u32"],
                ),
            ],
        );
        check_errors(
            "sinks:\n  web:\n    type: http\n    url: ftp//x\n    timeout: soon\n    headers: { X-Count: 5 }\n  c: { path: x }\n  d: 5\n  e: { type: jsonl }\nroutes: []\n",
            &[
                (
                    "routes.yaml:4:10",
                    &["invalid `url` in sink `web`", "relative URL without a base"],
                ),
                (
                    "routes.yaml:5:14",
                    &["invalid `timeout` in sink `web`", "invalid duration `soon`"],
                ),
                (
                    "routes.yaml:6:14",
                    &[
                        "invalid `headers` in sink `web`",
                        "expected a string (put the value in quotes)",
                    ],
                ),
                (
                    "routes.yaml:7:6",
                    &["sink `c` has no `type`: add one, e.g. `type: jsonl`"],
                ),
                ("routes.yaml:8:6", &["sink `d` must be a map with a `type`"]),
                ("routes.yaml:9:6", &["sink `e` has no `path`: add it"]),
            ],
        );
        // Empty, comment-only, document-marker-only, not a map.
        for empty in ["", "\n  \n", "# only\n\n  # comments\n", "---\n", "~\n"] {
            check_errors(empty, &[("routes.yaml", &["the config is empty"])]);
        }
        check_errors(
            "- a\n",
            &[(
                "routes.yaml:1:1",
                &["must be a map with `sinks:` and `routes:`"],
            )],
        );
        check_errors(
            "sinks: { console: { type: stdout } }\n",
            &[("routes.yaml:1:1", &["no `routes:`"])],
        );
        check_errors(
            "sinks: { console: { type: stdout } }\nroutes:\n",
            &[("routes.yaml:2:7", &["`routes` must be a list"])],
        );
        // Truncated mid-write: broken syntax is reported with its place and
        // a hint; a half-written route is incomplete, not silently smaller.
        check_errors(
            &VALID_TAIL.replace("to: console\n", "to: [cons"),
            &[(
                "routes.yaml:7:9",
                &[
                    "unclosed bracket",
                    "the file does not end with a newline: was it cut short",
                ],
            )],
        );
        check_errors(
            &VALID_TAIL[..VALID_TAIL.len() - 4],
            &[("routes.yaml:7:9", &["sink `cons`, which is not defined"])],
        );
        let text = format!("{VALID_TAIL}  - name: second\n    when: {{ type: a }}\n    emi");
        check_errors(
            &text,
            &[("routes.yaml:10:5", &["expected ':'", "was it cut short"])],
        );
        check_errors(
            &format!("{VALID_TAIL}  - name: second\n    when: {{ type: a }}\n    emit: ev"),
            &[
                ("routes.yaml:8:5", &["route `second` has no `to`"]),
                (
                    "routes.yaml:10:11",
                    &["`emit` in route `second` must be `order` or `event`"],
                ),
            ],
        );
        // An unset variable, with its place inside the value.
        check_errors(
            "sinks:\n  web:\n    type: http\n    url: http://127.0.0.1:4000/orders\n    headers: { Authorization: \"Bearer ${SHIPPING_TOKEN} ${MISSING}\" }\nroutes: []\n",
            &[(
                "routes.yaml:5:57",
                &["${MISSING} is not set: export it or put it in .env"],
            )],
        );
    }

    #[test]
    fn interpolates_values_only_and_keeps_escapes() {
        let config = parse(&format!(
            "server:\n  path: '/hooks/${{PORT}}'\n  listen: \"127.0.0.1:${{PORT}}\"\nstripe:\n  max_attempts: ${{PORT}}\n  api_version: a$${{PORT}}b$x$\n{VALID_TAIL}"
        ));
        assert_eq!(config.server.path, "/hooks/8080");
        assert_eq!(config.server.listen.port(), 8080);
        assert_eq!(config.stripe.max_attempts, Some(8080));
        assert_eq!(config.stripe.api_version.as_deref(), Some("a${PORT}b$x$"));

        // Keys are not interpolated: `${PORT}` here is an unknown field.
        check_errors(
            &format!("server: {{ \"${{PORT}}\": 1 }}\n{VALID_TAIL}"),
            &[("routes.yaml:1:11", &["unknown field `${PORT}` in `server`"])],
        );
        check_errors(
            &format!("stripe: {{ api_version: \"${{NOT A NAME}}\" }}\n{VALID_TAIL}"),
            &[(
                "routes.yaml:1:25",
                &["`${NOT A NAME}` is not a variable name", "`$${`"],
            )],
        );
    }

    #[test]
    fn problems_never_repeat_an_interpolated_secret() {
        let env = Env::from_map([("TOKEN", "sk_live_supersecret")]);
        let text = "sinks:\n  web: { type: http, url: \"${TOKEN}\" }\nroutes: []\n";
        let error = Config::parse(text, Path::new("routes.yaml"), &env).expect_err("bad url");
        let rendered = error.to_string();
        assert!(!rendered.contains("supersecret"), "{rendered}");
        assert!(
            rendered.starts_with("routes.yaml:2:27: invalid `url`"),
            "{rendered}"
        );
    }

    #[test]
    fn values_serve_would_refuse_are_refused_with_their_place() {
        check_errors(
            "stripe: { api_version: \"2024\\u0001\" }\nsinks:\n  web:\n    type: http\n    url: ftp://x/y\n    signing_secret: whsec_not base64!\n    timeout: 0s\n    headers: { Host: x }\n  bare:\n    type: http\n    url: http://x/\n    signing_secret: C2FVsBQIhrscChlQIMV+b5sSYspob7oD\n  file: { type: jsonl, path: sinks/ }\nroutes: []\n",
            &[
                (
                    "routes.yaml:1:24",
                    &["invalid `api_version` in `stripe`", "`2024-06-20`"],
                ),
                (
                    "routes.yaml:5:10",
                    &[
                        "invalid `url` in sink `web`",
                        "scheme `ftp`",
                        "http or https",
                    ],
                ),
                (
                    "routes.yaml:6:21",
                    &[
                        "invalid `signing_secret` in sink `web`",
                        "`whsec_` followed by",
                    ],
                ),
                (
                    "routes.yaml:7:14",
                    &["invalid `timeout` in sink `web`", "more than zero"],
                ),
                (
                    "routes.yaml:8:14",
                    &[
                        "invalid `headers` in sink `web`",
                        "`Host` is set by the sink",
                    ],
                ),
                (
                    "routes.yaml:12:21",
                    &["invalid `signing_secret` in sink `bare`", "`whsec_`"],
                ),
                (
                    "routes.yaml:13:30",
                    &["invalid `path` in sink `file`", "names a folder"],
                ),
            ],
        );
    }

    #[test]
    fn route_and_sink_names_fit_in_record_ids() {
        check_errors(
            "sinks:\n  a.b: { type: stdout }\n  \"ship to: us\": { type: stdout }\n  ok_name-2: { type: stdout }\nroutes:\n  - name: paid.orders\n    when: {}\n    emit: event\n    to: [a.b, \"ship to: us\", ok_name-2]\n  - name: \"..\"\n    when: {}\n    emit: event\n    to: ok_name-2\n",
            &[
                (
                    "routes.yaml:2:3",
                    &["sink name `a.b` may only hold", "e.g. `a-b`"],
                ),
                (
                    "routes.yaml:3:3",
                    &["sink name `ship to: us`", "e.g. `ship-to-us`"],
                ),
                (
                    "routes.yaml:6:11",
                    &[
                        "route name `paid.orders` may only hold ASCII letters, digits, `-` and `_`",
                        "e.g. `paid-orders`",
                    ],
                ),
                ("routes.yaml:10:11", &["route name `..`", "e.g. `route`"]),
            ],
        );
    }

    #[test]
    fn problems_never_repeat_a_secret_written_in_the_file() {
        let text = "sinks:\n  a: { type: http, url: \"http://user:hunter2secret@host:99999/x?token=tok_leak\" }\n  b: { type: http, url: \"http://x/\", signing_secret: \"whsec_sup3r secret\", headers: { X-Key: \"sk_live_leak\\nx\" } }\n  c: { type: http, url: \"https://u:pw@ho st/?token=tok_leak\" }\nroutes: []\n";
        let error = Config::parse(text, Path::new("routes.yaml"), &Env::empty())
            .expect_err("every sink is broken");
        let rendered = error.to_string();
        assert_eq!(error.problems.len(), 4, "{rendered}");
        for secret in ["hunter2secret", "tok_leak", "sup3r", "sk_live_leak", "pw@"] {
            assert!(!rendered.contains(secret), "`{secret}` in\n{rendered}");
        }
    }

    #[test]
    fn redact_url_hides_userinfo_and_query() {
        #[track_caller]
        fn check(url: &str, shown: &str) {
            assert_eq!(redact_url(&url::Url::parse(url).unwrap()), shown);
        }
        check(
            "http://127.0.0.1:4000/orders",
            "http://127.0.0.1:4000/orders",
        );
        check(
            "https://user:pw@example.com/hook?token=abc#frag",
            "https://<redacted>@example.com/hook?<redacted>",
        );
        check(
            "https://tok_123@example.com/",
            "https://<redacted>@example.com/",
        );
        check("https://:pw@example.com", "https://<redacted>@example.com/");
        check(
            "http://user:pa ss@host/x?",
            "http://<redacted>@host/x?<redacted>",
        );
        check("http://host/x#token=abc", "http://host/x");
    }

    #[test]
    fn base_dir_is_the_config_folder_and_places_name_the_file_as_given() {
        let at = |file: &str| {
            Config::parse(VALID_TAIL, Path::new(file), &Env::empty())
                .expect("valid")
                .base_dir
        };
        assert_eq!(at("routes.yaml"), PathBuf::from("."));
        assert_eq!(at("x/y.yaml"), PathBuf::from("x"));
        assert_eq!(
            at("/etc/stripe-router/routes.yaml"),
            PathBuf::from("/etc/stripe-router")
        );

        let error = Config::parse(
            "sinks: 5\nroutes: []\n",
            Path::new("x/y.yaml"),
            &Env::empty(),
        )
        .expect_err("sinks must be a map");
        assert_eq!(error.problems[0].place, "x/y.yaml:1:8");
    }

    #[test]
    fn load_reads_the_file_and_reports_a_missing_one() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("routes.yaml");
        std::fs::write(&path, VALID_TAIL).expect("write");
        let config = Config::load(&path, &Env::empty()).expect("valid");
        assert_eq!(config.base_dir, dir.path());

        let missing = dir.path().join("nope.yaml");
        let error = Config::load(&missing, &Env::empty()).expect_err("missing");
        assert_eq!(error.problems[0].place, missing.display().to_string());
        assert!(error.problems[0].message.contains("--config"), "{error}");
    }

    #[test]
    fn summary_names_sinks_and_routes_without_secrets() {
        let config = parse(
            "sinks:\n  orders: { type: jsonl, path: sinks/orders.jsonl }\n  web:\n    type: http\n    url: https://user:pw@example.com/hook?token=abc\n    signing_secret: ${SIGNING}\n    headers: { Authorization: \"Bearer ${SHIPPING_TOKEN}\" }\n  console: { type: stdout }\nroutes:\n  - name: paid\n    when: { type: [a, b], data.object.amount_total: { gte: 100 } }\n    emit: order\n    to: [orders, web]\n",
        );
        let summary = config.summary();
        for expected in [
            "listen: 127.0.0.1:3000, webhook path: /api/webhook",
            "orders   jsonl   ./sinks/orders.jsonl",
            "web      http    https://<redacted>@example.com/hook?<redacted> (signed)",
            "console  stdout",
            "paid  when {type: [a, b], data.object.amount_total: {gte: 100}}  emit order -> orders, web",
        ] {
            assert!(summary.contains(expected), "`{expected}` not in\n{summary}");
        }
        for secret in ["pw", "abc", "tok_123", "whsec_"] {
            assert!(!summary.contains(secret), "`{secret}` in\n{summary}");
        }
    }
}
