//! Durable delivery: everything that happens after Stripe got its 200.
//!
//! - [`intake`]: the door's handle ([`Engine`]): journal a verified event,
//!   then hand it to the router ([`crate::routing::router`]), which builds
//!   and stores its records.
//! - [`workers`]: one worker per sink, delivering that sink's rows and
//!   settling each (delivered, retry later, dead letter).
//!
//! Both follow the one retry policy, [`crate::retry`].
//!
//! The database is the truth; channels only save a round trip. Fresh rows
//! carry a short lease ([`crate::store::LEASE_MS`]), and both the router and
//! the workers scan the store for rows that are due (retries, replays, rows
//! left by a crash or a full channel), skipping what they hold in flight.
//! Records and deliveries are inserted idempotently under stable ids, so
//! routing an event twice builds nothing twice.

pub mod intake;
pub mod workers;

pub use intake::Engine;
