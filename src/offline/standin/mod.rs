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
//! with many items.

pub mod payloads;
pub mod server;

pub use payloads::{
    API_VERSION, CATALOGUE_MAX, SessionEvent, catalogue_items, catalogue_session_id,
    checkout_session_event, items_total, line_item_fixture, payment_intent_event,
};
pub use server::{Answer, Misbehaviour, StripeStandIn};
