//! Intake: what the door calls once an event is verified. It journals the
//! event durably (the 200 waits for that), then hands it to the router with
//! what the door already has: the parsed event and the routing snapshot,
//! loaded once here, which the event is routed by.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::delivery::workers::Workers;
use crate::event::Event;
use crate::routing::build::Builder;
use crate::routing::live::Live;
pub use crate::routing::router::Counts;
use crate::routing::router::{Accepted, Routable, Router};
use crate::store::{self, Journaled, NewEvent, PendingEvent, Store, StoreError};

/// Events queued for the router beyond those it is routing; more wait in
/// the store until a scan picks them up.
const QUEUE: usize = 4096;

/// The handle the door uses: journal an event, then let it go.
pub struct Engine {
    store: Arc<dyn Store>,
    live: Arc<Live>,
    router: mpsc::Sender<Routable>,
    pub counts: Arc<Counts>,
}

impl Engine {
    /// Starts the router and the sink workers on `tracker`; they stop when
    /// `shutdown` is cancelled, leaving unfinished rows pending in the store.
    pub fn start(
        store: Arc<dyn Store>,
        live: Arc<Live>,
        builder: Builder,
        shutdown: CancellationToken,
        tracker: &TaskTracker,
    ) -> Engine {
        let (tx, rx) = mpsc::channel(QUEUE);
        let counts = Arc::new(Counts::default());
        let workers = Workers::start(store.clone(), live.clone(), shutdown.clone(), tracker);
        let router = Router::new(
            store.clone(),
            live.clone(),
            builder,
            workers,
            counts.clone(),
        );
        tracker.spawn(router.run(rx, shutdown));
        Engine {
            store,
            live,
            router: tx,
            counts,
        }
    }

    /// Journals a verified event durably, then queues it for routing.
    /// `Duplicate` events are not routed again. An event whose type no
    /// current route admits is journaled as routed (to nothing) in the same
    /// write: it needs no routing pass, and `replay --reroute` still has it.
    pub async fn accept(&self, event: Event, body: Bytes) -> Result<Journaled, StoreError> {
        let received_at_ms = store::now_ms();
        let snapshot = self.live.load();
        let wanted = snapshot.wants_type(&event.kind);
        let journaled = self
            .store
            .journal(NewEvent {
                id: event.id.clone(),
                kind: event.kind.clone(),
                received_at_ms,
                body: body.clone(),
                routed: !wanted,
            })
            .await?;
        if journaled == Journaled::Inserted && !wanted {
            self.counts.unmatched.fetch_add(1, Ordering::Relaxed);
            tracing::info!(event_id = %event.id, event_type = %event.kind, "no route matched");
        } else if journaled == Journaled::Inserted {
            let pending = PendingEvent {
                id: event.id.clone(),
                kind: event.kind.clone(),
                body,
                received_at_ms,
                attempts: 0,
                reroute: false,
                settled: Vec::new(),
            };
            // A full queue is fine: the row is in the store and a scan
            // takes it once its lease ends.
            let _ = self.router.try_send(Routable {
                pending,
                accepted: Some(Accepted { event, snapshot }),
            });
        }
        Ok(journaled)
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }
}
