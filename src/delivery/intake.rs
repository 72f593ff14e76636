//! Intake: what the door calls once an event is verified. [`Engine::read`]
//! loads the routing snapshot once and reads the body: its id and type
//! (`Event::head`, a borrowed read of four fields), and the event only when
//! a route of that snapshot admits the type, keeping of it only what that
//! snapshot's routes and records read (`Snapshot::keep`: the whole event
//! when a route emits it). [`Engine::accept`] journals the event durably
//! (the 200 waits for that), then hands the router the parsed event and
//! that snapshot, which routes it: the body is parsed once, and an event no
//! route wants never is.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::budget::{ByteBudget, ByteShare};
use crate::delivery::workers::Workers;
use crate::event::{Event, EventError};
use crate::metrics::Metrics;
use crate::routing::build::Builder;
use crate::routing::live::Live;
use crate::routing::router::{Accepted, Counts, Held, InFlight, Routable, Router, ScanSoon};
use crate::store::{Journaled, NewEvent, PendingEvent, Store, StoreError};

/// Events queued for the router beyond those it is routing; more wait in
/// the store until a scan picks them up.
const QUEUE: usize = 4096;

/// What the events queued for the router may hold, with those being routed
/// from the queue, counted by [`queued_bytes`]; past it an event waits in
/// the store for a scan, as past [`QUEUE`]. 2,048 events of 4 KB fit, 4 of
/// the largest `server.max_body` allows by default (2 MiB).
pub(crate) const QUEUE_BYTES: usize = 32 * 1024 * 1024;

/// What a queued event is counted as holding: its body and what the routes
/// read of it, parsed into a tree, with what the allocator adds: four times
/// the body. A paid order's 3.9 KB event, with the fields an order route
/// keeps, measured 2.8 times; a route that emits the event keeps all of it.
pub(crate) fn queued_bytes(body: &[u8]) -> usize {
    body.len().saturating_mul(4)
}

/// A verified body as the intake read it, for [`Engine::accept`].
#[derive(Debug)]
pub struct Arrival {
    pub id: String,
    pub kind: String,
    /// The event (what the snapshot reads of it) and the snapshot that
    /// routes it; `None` when no route of that snapshot admits the type.
    routed_by: Option<Accepted>,
}

/// The handle the door uses: journal an event, then let it go.
pub struct Engine {
    store: Arc<dyn Store>,
    live: Arc<Live>,
    router: mpsc::Sender<Routable>,
    held: Held,
    queue_bytes: ByteBudget,
    scan_soon: ScanSoon,
    pub counts: Arc<Counts>,
    metrics: Arc<Metrics>,
}

impl Engine {
    /// Starts the router and the sink workers on `tracker`; they stop when
    /// `shutdown` is cancelled, leaving unfinished rows pending in the store.
    pub fn start(
        store: Arc<dyn Store>,
        live: Arc<Live>,
        builder: Builder,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
        tracker: &TaskTracker,
    ) -> Engine {
        let (tx, rx) = mpsc::channel(QUEUE);
        let counts = Arc::new(Counts::default());
        let workers = Workers::start(
            store.clone(),
            live.clone(),
            metrics.clone(),
            shutdown.clone(),
            tracker,
        );
        let router = Router::new(
            store.clone(),
            live.clone(),
            builder,
            workers,
            counts.clone(),
            metrics.clone(),
        );
        let held = router.held();
        let scan_soon = router.scan_soon();
        tracker.spawn(router.run(rx, shutdown));
        Engine {
            store,
            live,
            router: tx,
            held,
            queue_bytes: ByteBudget::new(QUEUE_BYTES),
            scan_soon,
            counts,
            metrics,
        }
    }

    /// Reads a verified body under the current snapshot, loaded here once:
    /// its id and type, and the event (what the snapshot reads of it) when
    /// a route admits the type.
    /// The error says why the body is not an event (the door answers 400).
    pub fn read(&self, body: &[u8]) -> Result<Arrival, EventError> {
        let head = Event::head(body)?;
        let snapshot = self.live.load();
        let routed_by = if snapshot.wants_type(&head.kind) {
            Some(Accepted {
                // `head` checked the depth: the body is not scanned again.
                event: Event::parse_checked(body, snapshot.keep())?,
                snapshot,
            })
        } else {
            None
        };
        Ok(Arrival {
            id: head.id,
            kind: head.kind,
            routed_by,
        })
    }

    /// Journals a verified event durably, then queues it for routing.
    /// `Duplicate` events are not routed again. An event whose type no
    /// route admits is journaled as routed (to nothing) in the same write:
    /// it needs no routing pass, and `replay --reroute` still has it.
    ///
    /// The event's place in the router's queue is taken before the write,
    /// so that the row says who routes it: a queued event is leased to this
    /// process for [`crate::store::LEASE_MS`], and one the queue has no room
    /// for is journaled due at once, for the next scan (any replica's).
    pub async fn accept(&self, arrival: Arrival, body: Bytes) -> Result<Journaled, StoreError> {
        let received_at_ms = crate::clock::now_ms();
        let Arrival {
            id,
            kind,
            routed_by,
        } = arrival;
        let place = match routed_by {
            Some(_) => self.place(&id, &body),
            None => None,
        };
        let journaled = self
            .store
            .journal(NewEvent {
                id: id.clone(),
                kind: kind.clone(),
                received_at_ms,
                body: body.clone(),
                routed: routed_by.is_none(),
                leased: place.is_some(),
            })
            .await?;
        if journaled == Journaled::Duplicate {
            return Ok(journaled);
        }
        match (routed_by, place) {
            (None, _) => {
                self.counts.unmatched.fetch_add(1, Ordering::Relaxed);
                self.metrics.event_routed(false);
                tracing::info!(event_id = %id, event_type = %kind, "no route matched");
            }
            (Some(accepted), Some(place)) => place.slot.send(Routable {
                pending: PendingEvent {
                    id,
                    kind,
                    body,
                    received_at_ms,
                    attempts: 0,
                    reroute: false,
                    settled: Vec::new(),
                },
                accepted: Some(accepted),
                held: Some(place.held),
                queued: Some(place.share),
            }),
            (Some(_), None) => {
                // Journaled due at once: a scan takes it, and this one is
                // asked for now rather than at its interval.
                tracing::debug!(event_id = %id, "the router's queue is full: left to a scan");
                self.scan_soon.ask();
            }
        }
        Ok(journaled)
    }

    /// A place in the router's queue for event `id`, or `None` when the
    /// queue has no room for it (its events or its bytes) or the event is
    /// held already (a Stripe retry while the first delivery of it is
    /// queued or being routed; the journal then finds it a duplicate).
    /// Dropping the place gives all of it back.
    fn place(&self, id: &str, body: &[u8]) -> Option<Place<'_>> {
        // Held from here until its pass ends, so that a scan leaves it to
        // the queue even when it waits there past its lease.
        let held = self.held.hold(id)?;
        let share = self.queue_bytes.take(queued_bytes(body))?;
        let slot = self.router.try_reserve().ok()?;
        Some(Place { held, share, slot })
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }
}

/// An event's place in the router's queue, taken before it is journaled:
/// its hold, its share of the queue's bytes and its slot.
struct Place<'a> {
    held: InFlight,
    share: ByteShare,
    slot: mpsc::Permit<'a, Routable>,
}

#[cfg(test)]
#[path = "intake_tests.rs"]
mod tests;
