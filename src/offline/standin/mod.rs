//! A local stand-in for the slice of the Stripe API that stripe-router calls:
//! `GET /v1/checkout/sessions/{id}/line_items`, with Stripe's pagination,
//! expansion, authentication and error shapes. Integration tests, the `demo`
//! command and the benchmark point `STRIPE_API_BASE` at it.
//!
//! Two parts: [`server`] answers over real HTTP (catalogue mode, scripted
//! faults, [`Misbehaviour`] for tests of the client's bounds: pages that
//! never end, an answer of any size); [`payloads`] builds what Stripe sends
//! (line items, `checkout.session.*` and `payment_intent.succeeded` events,
//! API version `2026-07-29.dahlia`), so everything downstream sees real
//! shapes. A session with many items is just [`StripeStandIn::add_session`]
//! with many items. [`run`] is the `stripe-standin` command.

pub mod payloads;
pub mod server;

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;

use crate::config::env::Env;

pub use payloads::{
    API_VERSION, CATALOGUE_MAX, SessionEvent, catalogue_items, catalogue_session_id,
    checkout_session_event, items_total, line_item_fixture, payment_intent_event,
};
pub use server::{Answer, Misbehaviour, StripeStandIn};

/// Why `stripe-router stripe-standin` cannot run.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("pass --api-key, or set STRIPE_SECRET_API_KEY")]
    NoApiKey,
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// `stripe-router stripe-standin`: the stand-in in catalogue mode on
/// `listen` until `stop` completes, for offline work with `send`. Requests
/// must carry `api_key`, else `STRIPE_SECRET_API_KEY`. How to point a router
/// at it is written to `out`.
pub async fn run(
    listen: SocketAddr,
    api_key: Option<String>,
    env: &Env,
    out: &mut dyn Write,
    stop: impl Future<Output = ()>,
) -> Result<(), CommandError> {
    let key = api_key
        .or_else(|| env.get("STRIPE_SECRET_API_KEY"))
        .ok_or(CommandError::NoApiKey)?;
    let standin = StripeStandIn::start(listen, key.trim())
        .await
        .map_err(|source| CommandError::Bind {
            addr: listen,
            source,
        })?;
    standin.serve_catalogue();
    let _ = writeln!(
        out,
        "Stripe API stand-in on {}: start the router with STRIPE_API_BASE={} and this key as \
         STRIPE_SECRET_API_KEY; Ctrl-C stops it",
        standin.url(),
        standin.url().as_str().trim_end_matches('/')
    );
    stop.await;
    standin.shutdown();
    Ok(())
}
