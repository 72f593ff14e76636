//! One verified event through the routing snapshot: match, build records
//! (enriching orders from the Stripe API once per event), deliver to every
//! sink of every matching route.
//!
//! This is the seam between answering Stripe and delivering: today the
//! answer waits for [`Pipeline::process`]; a journal can take its place
//! without changing how records are built or sinks called.

use std::sync::Arc;

use tokio::task::JoinSet;

use crate::config::Emit;
use crate::enrich::{EnrichError, StripeApi};
use crate::event::Event;
use crate::record::{self, LineItem, RecordError};
use crate::reload::Snapshot;
use crate::sinks::DeliveryError;

/// Everything a record needs besides the event and the snapshot.
#[derive(Debug, Clone)]
pub struct Pipeline {
    stripe: Option<StripeApi>,
}

/// What became of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Names of the routes that matched, in file order.
    pub routes: Vec<String>,
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
    #[error("route `{route}`: emits orders but no Stripe API key is configured")]
    NoApiKey { route: String },
    #[error("route `{route}`, sink `{sink}`: {source}")]
    Delivery {
        route: String,
        sink: String,
        #[source]
        source: DeliveryError,
    },
}

impl Pipeline {
    pub fn new(stripe: Option<StripeApi>) -> Pipeline {
        Pipeline { stripe }
    }

    /// Routes `event` with `snapshot` and delivers every record. Returns
    /// once every sink of every matching route has accepted its record, or
    /// with the first failure (after the other deliveries have finished).
    pub async fn process(
        &self,
        snapshot: &Snapshot,
        event: &Event,
        received_at: &str,
    ) -> Result<Outcome, ProcessError> {
        let mut routes = Vec::new();
        let mut line_items: Option<Vec<LineItem>> = None;
        let mut deliveries = JoinSet::new();
        for route in snapshot.matching(&event.raw) {
            routes.push(route.name.clone());
            let record = match route.emit {
                Emit::Event => record::event(event, &route.name, received_at),
                Emit::Order => {
                    let items = match &line_items {
                        Some(items) => items.clone(),
                        None => {
                            let items = self.line_items(&route.name, event).await?;
                            line_items = Some(items.clone());
                            items
                        }
                    };
                    record::order(event, &route.name, items, received_at).map_err(|source| {
                        ProcessError::Record {
                            route: route.name.clone(),
                            source,
                        }
                    })?
                }
            };
            let encoded = Arc::new(record.encode());
            for (sink_name, sink) in &route.to {
                let (sink, encoded) = (sink.clone(), encoded.clone());
                let (route, sink_name) = (route.name.clone(), sink_name.clone());
                deliveries.spawn(async move {
                    sink.deliver(&encoded)
                        .await
                        .map_err(|source| ProcessError::Delivery {
                            route,
                            sink: sink_name,
                            source,
                        })
                });
            }
        }
        let mut first_error = None;
        while let Some(joined) = deliveries.join_next().await {
            match joined {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "delivery failed");
                    first_error.get_or_insert(e);
                }
                Err(join_error) => {
                    tracing::error!(error = %join_error, "delivery task failed");
                    first_error.get_or_insert(ProcessError::Delivery {
                        route: String::new(),
                        sink: String::new(),
                        source: DeliveryError {
                            retryable: true,
                            message: join_error.to_string(),
                        },
                    });
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(Outcome { routes }),
        }
    }

    async fn line_items(&self, route: &str, event: &Event) -> Result<Vec<LineItem>, ProcessError> {
        let Some(stripe) = &self.stripe else {
            return Err(ProcessError::NoApiKey {
                route: route.to_owned(),
            });
        };
        let Some(session_id) = record::session_id(event) else {
            // Not a Checkout Session: building the record reports why.
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
