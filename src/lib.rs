//! stripe-router: verified Stripe webhook events, routed by declarative rules
//! into complete order records, delivered to sinks.
//!
//! The modules follow one webhook request, then what builds, runs and
//! surrounds the router:
//!
//! - [`http_serve`]: the one accept loop every HTTP server runs on: cap, drain, timeouts.
//! - [`ingest`]: the webhook door: bounds, signature verification, refusal hints, the 200.
//! - [`event`]: a verified event's head (id, type) and its parsed object; pure.
//! - [`pruned`]: a JSON document parsed keeping only the parts that will be read; pure.
//! - [`delivery`]: after the 200: the intake that journals and hands over, per-sink workers.
//! - [`store`]: the journal and the queues: the [`store::Store`] trait, its rows, SQLite.
//! - [`routing`]: journaled event to stored records: rules, live snapshot, router, enrichment.
//! - [`sinks`]: where records go: the [`sinks::Sink`] trait, one file per sink type.
//! - [`budget`]: byte budgets for what queues and the Stripe client hold in memory; a leaf.
//! - [`retry`]: the one retry policy (backoff with jitter) for sinks, routing and the API.
//! - [`config`]: `routes.yaml`: types, spanned YAML, checks with places, `${VAR}`, the env.
//! - [`units`]: durations and byte sizes as `routes.yaml` writes them; a leaf.
//! - [`redact`]: the one URL redactor for messages, logs and answers; a leaf.
//! - [`clock`]: the wall clock (unix ms, unix seconds, RFC 3339); a leaf.
//! - [`arenas`]: how many malloc arenas `main` lets glibc keep; a leaf.
//! - [`app`]: builds everything from a config and runs it until shutdown.
//! - [`admin`]: the admin listener: detailed `/healthz`, `/readyz`, the token, the JSON API, `/metrics`.
//! - [`metrics`]: the router's Prometheus families, one instance per router; their exposition.
//! - [`commands`]: `serve`, `check`, `deadletters` and `replay`, which `main` calls.
//! - [`logs`]: `tracing` lines on stderr, filtered by `RUST_LOG`.
//! - [`offline`]: what runs without Stripe: `demo`, `send` and the Stripe API stand-in.

pub mod admin;
pub mod app;
pub mod arenas;
pub mod budget;
pub mod clock;
pub mod commands;
pub mod config;
pub mod delivery;
pub mod event;
pub mod http_serve;
pub mod ingest;
pub mod logs;
pub mod metrics;
pub mod offline;
#[cfg(test)]
mod proptests;
pub mod pruned;
pub mod redact;
pub mod retry;
pub mod routing;
pub mod sinks;
pub mod store;
pub mod units;
