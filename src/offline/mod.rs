//! What runs without Stripe: `demo`, `send` and the Stripe API stand-in.

pub mod demo;
pub mod send;
pub mod standin;
