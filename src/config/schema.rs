//! The typed configuration: what `routes.yaml` may hold, section by section
//! (`server`, `stripe`, `store`, `routes`; the sinks' own types live with
//! each sink), with every default and why it is what it is.
//!
//! Field-level checks that serde runs while deserializing live here too
//! (`admin_listen` an address or `off`, `api_version` a header value); checks that
//! span fields or sections are the checker's.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer};

use super::database_url::DatabaseUrl;
use crate::sinks::SinkConfig;
use crate::units::{byte_size, duration, opt_duration};

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
    /// A PostgreSQL journal shared by every replica (`postgres://...`),
    /// instead of the SQLite file at `path`; the two exclude each other.
    #[serde(default)]
    pub url: Option<DatabaseUrl>,
    /// The most connections one process opens to PostgreSQL (its pool).
    #[serde(default = "default_pool_size")]
    pub pool_size: u32,
    /// PostgreSQL: how long a row belongs to the replica that journaled,
    /// built or claimed it without a renewal, and so how soon another
    /// replica takes over the rows of one that died.
    #[serde(default = "default_lease", with = "duration")]
    pub lease: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            path: default_store_path(),
            retention: default_retention(),
            fsync: default_fsync(),
            wal_limit: default_wal_limit(),
            url: None,
            pool_size: default_pool_size(),
            lease: default_lease(),
        }
    }
}

/// The bounds of `store.pool_size`: one connection serves everything,
/// slowly; past the upper bound a server's own `max_connections` (100 by
/// default) would refuse the replicas long before.
pub const POOL_SIZE_MAX: u32 = 256;

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
/// Enough for the journal's group commit, the router's passes and every
/// sink's settles at once; a few replicas stay under a server's default
/// `max_connections` of 100.
fn default_pool_size() -> u32 {
    16
}
/// [`crate::store::LEASE_MS`]: long next to a renewal (a third of it),
/// short next to what a takeover may wait.
fn default_lease() -> Duration {
    Duration::from_secs(5)
}
/// The bounds of `store.lease`: renewals every third of it must be
/// cheap, and a dead replica's rows must not wait for hours.
pub const LEASE_MIN: Duration = Duration::from_millis(500);
pub const LEASE_MAX: Duration = Duration::from_secs(600);
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
    /// Where operators read status and metrics; `off` disables it. Off
    /// loopback it needs `STRIPE_ROUTER_ADMIN_TOKEN` (`crate::admin::auth`).
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

    /// An address, or `off`. Whether an address off loopback may be used
    /// depends on the environment (a token), so `crate::admin::auth`
    /// decides it, for `serve` and `check` alike.
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
    /// Where each condition of `when` is written, in the same order, so
    /// that a problem with one is placed at it rather than at the route.
    pub when_places: Vec<ConditionPlace>,
    pub emit: Emit,
    /// Where `emit` is written.
    pub emit_place: String,
    /// Sink names; each exists in [`Config::sinks`].
    pub to: Vec<String>,
}

/// Where one condition of a route's `when` is written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConditionPlace {
    /// Its key (`data.object.currency:`).
    pub key: String,
    /// Each operator of an operator map by name, at its key (`gte:`).
    pub operators: Vec<(String, String)>,
    /// Each item of a list value, in order (the patterns of
    /// `type: [a, b]`), so that a problem with one is placed at it.
    pub items: Vec<String>,
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
