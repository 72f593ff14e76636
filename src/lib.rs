//! stripe-router: verified Stripe webhook events, routed by declarative rules
//! into complete order records, delivered to sinks.
//!
//! The modules follow the data flow of one webhook request:
//!
//! - [`server`]: the hyper HTTP server, the webhook endpoint and `/healthz`.
//! - [`verify`]: Stripe signature verification; pure, the clock is a parameter.
//! - [`event`]: the verified event object and its few routed fields.
//! - [`rules`]: route conditions (`when`) and matching; pure.
//! - [`enrich`]: the Stripe API client that fetches a session's line items.
//! - [`record`]: order and event records; pure builders.
//! - [`sinks`]: the [`sinks::Sink`] trait and its plug-ins (`jsonl`, `http`, `stdout`).
//! - [`pipeline`]: one event through the routes: matching records, enriched and encoded.
//! - [`store`]: the journal (SQLite, WAL, group commit) and the delivery queues.
//! - [`deliver`]: after the answer: routing, per-sink workers, retries, dead letters.
//! - [`config`]: `routes.yaml` parsing, `${VAR}` interpolation, errors with places.
//! - [`env`]: the process environment over `.env.local` over `.env`.
//! - [`reload`]: the routing snapshot, file watching and `SIGHUP`.
//! - [`deadletters`]: listing and replaying dead letters (`deadletters`, `replay`).
//! - [`app`]: builds everything from a config and runs it until shutdown.
//! - [`clock`]: the wall clock (unix ms, unix seconds, RFC 3339); a leaf.
//! - [`diagnose`]: hints for refused requests and environment warnings; pure.
//! - [`event_types`]: the event types Stripe sends; `check` warns about routes
//!   that can never match one.
//! - [`send`]: `stripe-router send`, a signed test event to a running router.
//! - [`demo`]: `stripe-router demo`, the whole flow with no Stripe account.
//! - [`standin`]: a local stand-in for the Stripe API and realistic event
//!   payloads, for tests, `demo` and benchmarks.

pub mod admin;
pub mod app;
pub mod clock;
pub mod commands;
pub mod config;
pub mod delivery;
pub mod event;
pub mod http_serve;
pub mod ingest;
pub mod logs;
pub mod offline;
#[cfg(test)]
mod proptests;
pub mod redact;
pub mod retry;
pub mod routing;
pub mod sinks;
pub mod store;
pub mod units;
