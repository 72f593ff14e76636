//! From a journaled event to stored records:
//!
//! - [`rules`]: route conditions (`when`), compiled and matched;
//! - [`snapshot`]: one compiled routing table and its built sinks;
//! - [`live`]: the current snapshot, its reload and the file watcher;
//! - [`router`]: the router task (fast path from the intake, scans of the
//!   store), storing each routing pass;
//! - [`build`]: the records one event makes, route by route;
//! - [`enrich`]: line items from the Stripe API, each page read by
//!   [`line_items`]; [`record`]: the record
//!   shapes; [`event_types`] and [`event_paths`]: Stripe's event types and
//!   the paths events have, for the warnings of `check`, start and reload.

pub mod build;
pub mod enrich;
pub mod event_paths;
pub mod event_types;
pub mod line_items;
pub mod live;
pub mod record;
pub mod router;
pub mod rules;
pub mod snapshot;
#[cfg(test)]
pub(crate) mod test_support;
