//! What the admin API reads from the journal: pages of events with their
//! records, deliveries and route failures, one event in full with each
//! delivery's recent attempts, and pages of dead letters. Backend-neutral:
//! states are words, times unix milliseconds, cursors plain values each
//! backend orders by.

use bytes::Bytes;

use super::{DeadLetter, Filter};

/// Attempts kept per (record, sink) delivery: the newest ones, so a
/// delivery retried for days keeps a bounded history.
pub const ATTEMPTS_KEPT: usize = 20;

/// Which events to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    /// At most this many.
    pub limit: usize,
    /// Only events older than this cursor ([`EventPage::next`] of the page
    /// before).
    pub after: Option<i64>,
    /// Only this event type: exact, or a glob where `*` matches any run of
    /// characters (as in routes).
    pub kind: Option<String>,
}

/// One page of events, newest first.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct EventPage {
    pub events: Vec<EventView>,
    /// The cursor for the next (older) page; `None` on the last page.
    pub next: Option<i64>,
}

/// An event as the journal holds it, with what routing made of it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EventView {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub received_at_ms: i64,
    /// `pending` (to be routed), `routed`, or `dead` (cannot be routed).
    pub state: &'static str,
    /// Routing passes that failed.
    pub attempts: u32,
    pub last_error: Option<String>,
    pub updated_at_ms: i64,
    pub records: Vec<RecordView>,
    /// Routes whose record could not be built (yet).
    pub failed_routes: Vec<RouteFailureView>,
}

/// A record built for one route, and its deliveries.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RecordView {
    pub id: String,
    pub route: String,
    pub created_at_ms: i64,
    pub deliveries: Vec<DeliveryView>,
}

/// One (record, sink) delivery.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeliveryView {
    pub sink: String,
    /// `pending`, `delivered` or `dead`.
    pub state: &'static str,
    pub attempts: u32,
    pub last_error: Option<String>,
    /// When a pending delivery is next due (0: now).
    pub next_attempt_at_ms: i64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// A route of an event whose record could not be built.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RouteFailureView {
    pub route: String,
    pub record_id: String,
    /// `retry` or `dead`.
    pub state: &'static str,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub updated_at_ms: i64,
}

/// One delivery attempt, as settled.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AttemptView {
    pub at_ms: i64,
    /// `delivered`, `retry` or `dead`.
    pub outcome: &'static str,
    /// The sink's error; an HTTP sink's names the status it answered.
    pub error: Option<String>,
}

/// A delivery's kept attempts, oldest first, from the failed ones a backend
/// stored (`stored`, oldest first): a delivered attempt is told by the
/// delivery row itself (its state and `updated_at`), which both backends
/// write instead of an attempt row on the hot path, so it is added here;
/// the newest [`ATTEMPTS_KEPT`] in all.
pub(crate) fn kept_attempts(
    mut stored: Vec<AttemptView>,
    delivery: &DeliveryView,
) -> Vec<AttemptView> {
    // A journal written by an older version has the delivered attempt as a
    // row already.
    let told = stored.last().is_some_and(|a| a.outcome == "delivered");
    if delivery.state == "delivered" && !told {
        stored.push(AttemptView {
            at_ms: delivery.updated_at_ms,
            outcome: "delivered",
            error: None,
        });
    }
    let over = stored.len().saturating_sub(ATTEMPTS_KEPT);
    stored.drain(..over);
    stored
}

/// One event in full: its raw body, each record's bytes, and each
/// delivery's last [`ATTEMPTS_KEPT`] attempts, oldest first.
#[derive(Debug, Clone)]
pub struct EventDetail {
    pub event: EventView,
    pub body: Bytes,
    /// Per record of `event.records`, in the same order.
    pub record_bodies: Vec<Bytes>,
    /// Per record, per delivery of `event.records`, in the same order.
    pub attempts: Vec<Vec<Vec<AttemptView>>>,
}

/// Where a page of dead letters starts: after the letter with this
/// `updated_at_ms` and key (newest first, ties by key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterCursor {
    pub updated_at_ms: i64,
    pub key: String,
}

/// Which dead letters to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct DeadLetterQuery {
    pub filter: Filter,
    pub limit: usize,
    pub after: Option<DeadLetterCursor>,
}

/// One page of dead letters, newest first.
#[derive(Debug, Clone, Default)]
pub struct DeadLetterPage {
    pub letters: Vec<DeadLetter>,
    pub next: Option<DeadLetterCursor>,
}
