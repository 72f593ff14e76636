//! From a journaled event to records: the compiled routes and matching, the
//! live snapshot and its watcher, enrichment from the Stripe API, records.

pub mod enrich;
pub mod event_types;
pub mod live;
pub mod pipeline;
pub mod record;
pub mod rules;
