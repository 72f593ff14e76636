//! Integration tests: one binary, the real `stripe-router` process on a
//! loopback port, real sinks writing into a temporary folder, a local
//! stand-in for the Stripe API and a local consumer that records what it
//! receives.

mod consumer;
mod events;
mod harness;

mod admin_api;
mod check;
mod crash_jsonl;
mod durable;
mod first_hour;
mod flow;
mod integrations;
mod limits_config;
mod limits_door;
mod limits_journal;
mod limits_upstream;
mod metrics;
mod pg;
mod postgres_store;
mod reload;
mod replicas;
mod routes_independent;
mod server;
mod store_contract;
mod ux;
