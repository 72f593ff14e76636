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
//! - [`pipeline`]: one verified event through routes, enrichment and sinks.
//! - [`config`]: `routes.yaml` parsing, `${VAR}` interpolation, errors with places.
//! - [`env`]: the process environment over `.env.local` over `.env`.
//! - [`reload`]: the routing snapshot, file watching and `SIGHUP`.
//! - [`app`]: builds everything from a config and runs it until shutdown.

pub mod app;
pub mod config;
pub mod enrich;
pub mod env;
pub mod event;
pub mod pipeline;
pub mod record;
pub mod reload;
pub mod rules;
pub mod server;
pub mod sinks;
pub mod verify;
