//! What runs without Stripe: `demo`, `send`, the Stripe API stand-in and
//! `serve --offline` (`local`), which runs the stand-in in the router.

pub mod demo;
pub mod local;
pub mod send;
pub mod standin;
