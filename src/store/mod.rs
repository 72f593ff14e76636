//! The journal: every verified event is written here, durably, before
//! Stripe gets its 200; every record, every (record, sink) delivery and
//! every route whose record could not be built is a row with its attempts,
//! next attempt time and last error.
//!
//! This module owns [`Store`], the one interface the rest of the router
//! uses, and the rows it takes and gives (`rows.rs`, re-exported here).
//! [`SqliteStore`] ([`sqlite`]) implements it on an embedded SQLite database
//! in WAL mode, [`PostgresStore`] ([`postgres`]) on a PostgreSQL database
//! shared by replicas; [`open()`] opens the one `store:` names. The operator commands over dead letters are
//! [`crate::commands::deadletters`].

pub mod open;
pub mod postgres;
pub mod replay;
mod rows;
pub mod sqlite;
mod views;

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;

pub use open::{Purpose, open};
pub use postgres::{PostgresOptions, PostgresStore};
pub use rows::*;
pub use sqlite::SqliteStore;
pub use views::*;

pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("journal database {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("journal database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the journal {path} cannot be written: {source}")]
    Unwritable {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("cannot create the journal {path}: {source}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// What [`Store::health`] says while the journal does not take writes.
    #[error("journal: {0}")]
    Unhealthy(String),
    #[error("cannot create the journal's folder {path}: {source}")]
    Folder {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start a journal thread: {0}")]
    Thread(#[source] std::io::Error),
    #[error("journal writer has stopped")]
    Stopped,
    #[error("journal write failed, nothing of it was kept: {0}")]
    Write(String),
    #[error("no journal at {path} yet (the server creates it on its first start)")]
    Missing { path: String },
    /// The journal's schema is newer than this binary's.
    #[error(
        "the journal {store} has schema version {found}, newer than this binary's {known}: run a newer stripe-router (or restore a backup made for this version)"
    )]
    TooNew {
        store: String,
        found: u32,
        known: u32,
    },
    /// PostgreSQL cannot be reached (down, refusing, timed out): the
    /// webhook answers 503 and Stripe retries.
    #[error("journal database {url} is unavailable: {reason}")]
    Unavailable { url: String, reason: String },
    /// PostgreSQL refused a statement or a login (the message never holds
    /// the password).
    #[error("journal database {url}: {reason}")]
    Postgres { url: String, reason: String },
}

impl StoreError {
    /// Whether the journal could not be reached at all (rather than
    /// refusing a write): worth a 503 and a retry.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }
}

/// How long a fresh event or delivery belongs to the in-memory fast path
/// before a scan of due rows may take it: a fresh row is due at its
/// creation time plus this lease.
pub const LEASE_MS: i64 = 5_000;

/// How often the router and the workers scan for due rows by default
/// (retries that came due, rows a full channel or a crash left).
pub const SCAN_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// Told about every journal transaction (the metrics of
/// [`crate::metrics`]): how many writes it carried, how long it took, its
/// fsync included, and whether it committed. Called on the writer's
/// thread, so it must be quick.
pub trait CommitObserver: Send + Sync + std::fmt::Debug {
    fn committed(&self, writes: usize, took: std::time::Duration, ok: bool);
}

/// The journal and the delivery queues.
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Durably records a verified event, or says it is a duplicate.
    fn journal(&self, event: NewEvent) -> StoreFuture<'_, Journaled>;
    /// Events due for routing at `now_ms`, oldest first.
    fn due_events(&self, now_ms: i64, limit: usize) -> StoreFuture<'_, Vec<PendingEvent>> {
        self.due_events_within(now_ms, limit, usize::MAX)
    }
    /// [`Store::due_events`], taking no more once the bodies taken come to
    /// `max_bytes`: the page ends with the event that reaches it (so the
    /// first is always taken, whatever its size).
    fn due_events_within(
        &self,
        now_ms: i64,
        limit: usize,
        max_bytes: usize,
    ) -> StoreFuture<'_, Vec<PendingEvent>>;
    /// A stored record's bytes.
    fn record_body(&self, record_id: &str) -> StoreFuture<'_, Bytes>;
    /// Stores one routing pass in one transaction: the records built and
    /// one delivery row per (record, sink); a row per failed route (state
    /// retry or dead, attempts + 1, last error); failure rows of routes
    /// whose record now exists, or that this pass no longer retries, are
    /// removed. Existing record ids are kept as they are (a record is built
    /// once). The event is then routed when no failed route is left to
    /// retry, else due again at the earliest `next_attempt_ms` (attempts +
    /// 1, last error the first retried route's). A failure of a route whose
    /// record is already stored is ignored. Answers the ids of the records
    /// this pass stored for the first time: only their deliveries are new.
    fn save_routing(&self, event_id: &str, routing: Routing) -> StoreFuture<'_, Vec<String>>;
    /// The event as a whole cannot be routed (its journaled body cannot be
    /// parsed); try again at `next_attempt_ms`, or give up (`dead`).
    fn event_failed(
        &self,
        event_id: &str,
        error: String,
        next_attempt_ms: i64,
        dead: bool,
    ) -> StoreFuture<'_, ()>;
    /// Deliveries due for `sink` at `now_ms`, oldest first, skipping `busy`.
    fn due_deliveries(
        &self,
        sink: &str,
        now_ms: i64,
        limit: usize,
        busy: Vec<String>,
    ) -> StoreFuture<'_, Vec<PendingDelivery>>;
    fn settle(&self, record_id: &str, sink: &str, outcome: Settle) -> StoreFuture<'_, ()>;
    fn dead_letters(&self, filter: Filter) -> StoreFuture<'_, Vec<DeadLetter>>;
    /// Re-queues dead letters matching `filter`, due now. A route-level
    /// one makes its event due for routing (the router builds only the
    /// missing records). Returns how many.
    fn replay(&self, filter: Filter) -> StoreFuture<'_, u64>;
    /// Queues a journaled event to be routed again by the current routes,
    /// its route-level dead letters included. False when the event id is
    /// not in the journal.
    fn reroute(&self, event_id: &str) -> StoreFuture<'_, bool>;
    fn depths(&self) -> StoreFuture<'_, Depths>;
    /// A page of events, newest first, each with its records, their
    /// deliveries and its failed routes (the admin API).
    fn events(&self, query: EventQuery) -> StoreFuture<'_, EventPage>;
    /// One event in full; `None` when it is not in the journal.
    fn event(&self, event_id: &str) -> StoreFuture<'_, Option<EventDetail>>;
    /// A page of dead letters, newest first (the admin API).
    fn dead_letter_page(&self, query: DeadLetterQuery) -> StoreFuture<'_, DeadLetterPage>;
    /// Whether the journal takes writes now; the error says why not (a full
    /// disk, a read-only folder, an I/O error). `/healthz` answers from it.
    fn health(&self) -> StoreFuture<'_, ()>;
    /// Deletes delivered deliveries, and events and records with nothing
    /// left to deliver, last touched before `before_ms`: at most `limit`
    /// rows of each table, so one call never holds the writer for long.
    /// An event with a route-level dead letter keeps it and its records
    /// (a replay must not build them again); its failure rows go with it.
    fn prune(&self, before_ms: i64, limit: usize) -> StoreFuture<'_, u64>;
    /// How often the router and the workers scan for due rows when nothing
    /// wakes them.
    fn scan_every(&self) -> std::time::Duration {
        SCAN_EVERY
    }
    /// Changes when rows became due through another process (a replay or
    /// reroute from the CLI or another replica): the scans run at once.
    /// `None` when only this process changes the journal's queues.
    fn wakeups(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }
}
