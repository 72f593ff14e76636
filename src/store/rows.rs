//! The rows the [`Store`](super::Store) takes and gives: events to
//! journal and to route, records, routing passes, deliveries, dead letters
//! and queue figures.

use bytes::Bytes;

use crate::sinks::Encoded;

/// A verified event to journal.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub id: String,
    pub kind: String,
    pub received_at_ms: i64,
    /// The raw body as Stripe sent it.
    pub body: Bytes,
    /// Already routed: no route wants it, so there is nothing to build.
    pub routed: bool,
    /// Queued for this process's router, which leases it: due only once
    /// the lease ([`super::LEASE_MS`]) ends. Otherwise (the queue had no
    /// room) it is due at once, for a scan. Not read when `routed`.
    pub leased: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Journaled {
    /// First time this event id was seen; it will be routed.
    Inserted,
    /// The id is already in the journal; it is not routed again.
    Duplicate,
}

/// A journaled event waiting to be routed (first time, after a failed
/// enrichment, or asked to be re-routed).
#[derive(Debug, Clone)]
pub struct PendingEvent {
    pub id: String,
    /// The event's type, to skip parsing an event no route wants.
    pub kind: String,
    pub body: Bytes,
    pub received_at_ms: i64,
    pub attempts: u32,
    /// Route through the current config even if some records exist.
    pub reroute: bool,
    /// Record ids the router must not build: records already stored for
    /// the event, and routes given up at route level (dead letters until
    /// replayed). Empty for a fresh event.
    pub settled: Vec<String>,
}

/// A record built from an event for one route, and the sinks it goes to.
#[derive(Debug, Clone)]
pub struct NewRecord {
    /// The id and bytes every sink receives, in the one shape they keep
    /// from the router to the sink.
    pub record: Encoded,
    pub route: String,
    pub sinks: Vec<String>,
}

/// What one routing pass of an event produced.
#[derive(Debug, Clone, Default)]
pub struct Routing {
    /// Records built in this pass, each with its sinks; ids already stored
    /// are kept as they are.
    pub records: Vec<NewRecord>,
    /// Routes whose record could not be built in this pass.
    pub failed: Vec<RouteFailure>,
}

impl Routing {
    /// The bytes of this pass's record bodies: what it writes, about, and
    /// what both stores' group commits weigh it by.
    pub fn record_bytes(&self) -> usize {
        self.records.iter().map(|r| r.record.body.len()).sum()
    }
}

/// One route of an event whose record could not be built (its enrichment
/// failed): retried later, or given up as a route-level dead letter.
#[derive(Debug, Clone)]
pub struct RouteFailure {
    pub route: String,
    /// The id the record will have (`record::record_id(event_id, route)`).
    pub record_id: String,
    pub error: String,
    /// When to try this route again; ignored when `dead`.
    pub next_attempt_ms: i64,
    /// Give up on this route: a route-level dead letter.
    pub dead: bool,
}

/// One (record, sink) delivery that is due.
#[derive(Debug, Clone)]
pub struct PendingDelivery {
    /// The record as its sink gets it. Its `body` is empty when the bytes
    /// are to be read from the store ([`super::Store::record_body`]) at delivery
    /// time (a record is never empty).
    pub record: Encoded,
    pub sink: String,
    pub route: String,
    pub attempts: u32,
    pub created_at_ms: i64,
    /// When its event was journaled (its 200), for the accept-to-delivered
    /// latency.
    pub received_at_ms: i64,
}

/// How one delivery attempt ended.
#[derive(Debug, Clone)]
pub enum Settle {
    Delivered,
    Retry { next_attempt_ms: i64, error: String },
    Dead { error: String },
}

/// Which dead letters to list or replay.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub sink: Option<String>,
    pub route: Option<String>,
    pub event: Option<String>,
}

/// A delivery that gave up; or a route whose record could not be built
/// (`sink` None, `route` and `record_id` set); or an event that cannot be
/// routed at all (`sink`, `route` and `record_id` None).
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeadLetter {
    pub record_id: Option<String>,
    pub event_id: String,
    pub sink: Option<String>,
    pub route: Option<String>,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// Queue figures for one sink, for `/healthz`.
#[derive(Debug, Clone, Default, serde::Serialize, PartialEq, Eq)]
pub struct SinkQueue {
    pub pending: u64,
    pub dead: u64,
}

/// Queue figures for the whole store.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Depths {
    /// Events journaled but not yet routed (waiting for enrichment).
    pub events_pending: u64,
    pub events_dead: u64,
    /// Routes of events given up at route level (route-level dead letters).
    pub routes_dead: u64,
    pub sinks: std::collections::BTreeMap<String, SinkQueue>,
}
