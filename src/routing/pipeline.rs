//! One journaled event through a routing snapshot: match every route, build
//! each matching route's record (enriching orders from the Stripe API once
//! per event), and encode it once. Delivery is [`crate::delivery`]'s job.

use crate::config::Emit;
use crate::ingest::event::Event;
use crate::routing::enrich::{EnrichError, StripeApi};
use crate::routing::live::Snapshot;
use crate::routing::record::{self, LineItem, RecordError};
use crate::store::NewRecord;

/// Everything a record needs besides the event and the snapshot.
#[derive(Debug, Clone)]
pub struct Pipeline {
    stripe: Option<StripeApi>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("route `{route}`: {source}")]
    Record {
        route: String,
        #[source]
        source: RecordError,
    },
    #[error("route `{route}`: line items could not be read: {source}")]
    Enrich {
        route: String,
        #[source]
        source: EnrichError,
    },
    #[error("route `{route}` emits orders but STRIPE_SECRET_API_KEY is not set")]
    NoApiKey { route: String },
}

impl ProcessError {
    /// Whether routing the event again later may succeed.
    pub fn retryable(&self) -> bool {
        match self {
            ProcessError::Enrich { source, .. } => source.retryable,
            ProcessError::Record { .. } | ProcessError::NoApiKey { .. } => false,
        }
    }
}

impl Pipeline {
    pub fn new(stripe: Option<StripeApi>) -> Pipeline {
        Pipeline { stripe }
    }

    /// The records `event` makes under `snapshot`, in route order, each with
    /// the sinks it goes to. Routes whose record id is in `existing` are
    /// skipped: a record is built once.
    pub async fn records(
        &self,
        snapshot: &Snapshot,
        event: &Event,
        received_at: &str,
        existing: &[String],
    ) -> Result<Vec<NewRecord>, ProcessError> {
        let mut records = Vec::new();
        let mut line_items: Option<Vec<LineItem>> = None;
        for route in snapshot.matching(&event.raw) {
            let id = record::record_id(&event.id, &route.name);
            if existing.contains(&id) {
                continue;
            }
            let record = match route.emit {
                Emit::Event => record::event(event, &route.name, received_at),
                Emit::Order => {
                    let items = match &line_items {
                        Some(items) => items.clone(),
                        None => line_items
                            .insert(self.line_items(&route.name, event).await?)
                            .clone(),
                    };
                    record::order(event, &route.name, items, received_at).map_err(|source| {
                        ProcessError::Record {
                            route: route.name.clone(),
                            source,
                        }
                    })?
                }
            };
            let encoded = record.encode();
            records.push(NewRecord {
                id: encoded.id,
                route: route.name.clone(),
                body: encoded.body,
                sinks: route.to.iter().map(|(name, _)| name.clone()).collect(),
            });
        }
        Ok(records)
    }

    async fn line_items(&self, route: &str, event: &Event) -> Result<Vec<LineItem>, ProcessError> {
        let Some(stripe) = &self.stripe else {
            return Err(ProcessError::NoApiKey {
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
            .map_err(|source| ProcessError::Enrich {
                route: route.to_owned(),
                source,
            })
    }
}
