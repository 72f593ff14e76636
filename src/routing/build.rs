//! The records one event makes under one snapshot: match every route, then
//! build each matching route's record on its own. `emit: event` records
//! need nothing but the event ([`Builder::event_records`]); `emit: order`
//! records need the session's line items, fetched from the Stripe API once
//! per event and shared by every order route ([`Builder::order_records`]).
//! A route whose record cannot be built is a [`Failed`] route, each on its
//! own: the other routes' records are unaffected. Storing and delivering
//! the records is [`crate::routing::router`]'s job.

use crate::config::Emit;
use crate::event::Event;
use crate::routing::enrich::{EnrichError, StripeApi};
use crate::routing::record::{self, LineItem, RecordError};
use crate::routing::snapshot::{Route, Snapshot};
use crate::store::NewRecord;

/// Everything a record needs besides the event and the snapshot.
#[derive(Debug, Clone)]
pub struct Builder {
    stripe: Option<StripeApi>,
}

/// Why one route's record could not be built.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BuildError {
    /// The record error names the route already.
    #[error("{error}")]
    Record { route: String, error: RecordError },
    #[error("route `{route}`: line items could not be read: {source}")]
    Enrich {
        route: String,
        #[source]
        source: EnrichError,
    },
    #[error("route `{route}` emits orders but STRIPE_SECRET_API_KEY is not set")]
    NoApiKey { route: String },
}

impl BuildError {
    /// Whether building the record again later may succeed.
    pub fn retryable(&self) -> bool {
        match self {
            BuildError::Enrich { source, .. } => source.retryable,
            BuildError::Record { .. } | BuildError::NoApiKey { .. } => false,
        }
    }
}

/// A matching route whose record could not be built in this pass.
#[derive(Debug, Clone)]
pub struct Failed {
    pub route: String,
    /// The id its record will have.
    pub record_id: String,
    pub error: BuildError,
}

/// What building some of an event's records produced, in route order.
#[derive(Debug, Default)]
pub struct Built {
    pub records: Vec<NewRecord>,
    pub failed: Vec<Failed>,
}

/// The routes of `snapshot` that `event` matches and that emit `emit`,
/// except those whose record id is in `settled` (already built, or given
/// up on): a record is built once.
fn matching<'a>(
    snapshot: &'a Snapshot,
    event: &'a Event,
    emit: Emit,
    settled: &'a [String],
) -> impl Iterator<Item = (&'a Route, String)> + 'a {
    snapshot
        .matching(&event.raw)
        .filter(move |route| route.emit == emit)
        .map(|route| (route, record::record_id(&event.id, &route.name)))
        .filter(|(_, id)| !settled.contains(id))
}

fn new_record(route: &Route, record: &record::Record) -> NewRecord {
    NewRecord {
        record: record.encode(),
        route: route.name.clone(),
        sinks: route.to.iter().map(|(name, _)| name.clone()).collect(),
    }
}

impl Builder {
    pub fn new(stripe: Option<StripeApi>) -> Builder {
        Builder { stripe }
    }

    /// The records of the matching `emit: event` routes. No I/O: these
    /// never wait for the Stripe API.
    pub fn event_records(
        snapshot: &Snapshot,
        event: &Event,
        received_at: &str,
        settled: &[String],
    ) -> Vec<NewRecord> {
        matching(snapshot, event, Emit::Event, settled)
            .map(|(route, _)| new_record(route, &record::event(event, &route.name, received_at)))
            .collect()
    }

    /// The `emit: order` routes `event` matches that are not settled yet,
    /// each with the id its record will have: what
    /// [`Builder::order_records`] builds.
    pub fn order_routes<'a>(
        snapshot: &'a Snapshot,
        event: &'a Event,
        settled: &'a [String],
    ) -> Vec<(&'a Route, String)> {
        matching(snapshot, event, Emit::Order, settled).collect()
    }

    /// The records of `orders` (from [`Builder::order_routes`]). The line
    /// items are read once for all of them; when that fails, every order
    /// route fails with the same error, and each record that cannot be
    /// built from them fails on its own.
    pub async fn order_records(
        &self,
        event: &Event,
        orders: &[(&Route, String)],
        received_at: &str,
    ) -> Built {
        let mut built = Built::default();
        let Some(((last, last_id), others)) = orders.split_last() else {
            return built;
        };
        let first = orders.first().map_or(last, |(route, _)| route);
        let line_items = self.line_items(&first.name, event).await;
        for (route, record_id) in others {
            built.add(event, route, record_id, line_items.clone(), received_at);
        }
        // The last route takes the items; the others got copies.
        built.add(event, last, last_id, line_items, received_at);
        built
    }

    async fn line_items(&self, route: &str, event: &Event) -> Result<Vec<LineItem>, BuildError> {
        let Some(stripe) = &self.stripe else {
            return Err(BuildError::NoApiKey {
                route: route.to_owned(),
            });
        };
        let Some(session_id) = record::session_id(event) else {
            // Not a Checkout Session: building the record says why.
            return Ok(Vec::new());
        };
        stripe
            .line_items(session_id, event.livemode)
            .await
            .map_err(|source| BuildError::Enrich {
                route: route.to_owned(),
                source,
            })
    }
}

impl Built {
    /// The record of one order route from the session's line items, or why
    /// it cannot be built.
    fn add(
        &mut self,
        event: &Event,
        route: &Route,
        record_id: &str,
        line_items: Result<Vec<LineItem>, BuildError>,
        received_at: &str,
    ) {
        let record = line_items.and_then(|items| {
            record::order(event, &route.name, items, received_at).map_err(|error| {
                BuildError::Record {
                    route: route.name.clone(),
                    error,
                }
            })
        });
        match record {
            Ok(record) => self.records.push(new_record(route, &record)),
            Err(error) => self.failed.push(Failed {
                route: route.name.clone(),
                record_id: record_id.to_owned(),
                // The shared fetch failure names the route that asked
                // first; each failure names its own.
                error: error.for_route(&route.name),
            }),
        }
    }
}

impl BuildError {
    fn for_route(self, name: &str) -> BuildError {
        let route = name.to_owned();
        match self {
            BuildError::Record { error, .. } => BuildError::Record { route, error },
            BuildError::Enrich { source, .. } => BuildError::Enrich { route, source },
            BuildError::NoApiKey { .. } => BuildError::NoApiKey { route },
        }
    }
}

#[cfg(test)]
#[path = "build_tests.rs"]
mod tests;
