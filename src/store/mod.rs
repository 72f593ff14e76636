//! The journal: every verified event is written here, durably, before
//! Stripe gets its 200; every record and every (record, sink) delivery is a
//! row with its attempts, next attempt time and last error.
//!
//! [`Store`] is the one interface the rest of the router uses. [`SqliteStore`]
//! implements it on an embedded SQLite database in WAL mode. All writes go
//! through one writer thread that batches whatever is waiting into a single
//! transaction (group commit): with 32 concurrent requests, one fsync covers
//! many events, so durability does not cost throughput. Reads use their own
//! connection, which WAL lets run beside the writer.

pub mod deadletters;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rusqlite::{Connection, params, wal::CheckpointMode};
use tokio::sync::oneshot;

use crate::sinks::Encoded;

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
}

/// How long a fresh event or delivery belongs to the in-memory fast path
/// before a scan of due rows may take it: a fresh row is due at its
/// creation time plus this lease.
pub const LEASE_MS: i64 = 5_000;

/// Milliseconds since the Unix epoch: the store's only clock unit.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

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
/// `record` is the id and bytes every sink receives, in the one shape they
/// keep from the router to the sink.
#[derive(Debug, Clone)]
pub struct NewRecord {
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

/// One (record, sink) delivery that is due: the record as the sink gets
/// it, and where it stands.
#[derive(Debug, Clone)]
pub struct PendingDelivery {
    /// Its `body` is empty when the bytes are to be read from the store
    /// ([`Store::record_body`]) at delivery time (a record is never empty).
    pub record: Encoded,
    pub sink: String,
    pub route: String,
    pub attempts: u32,
    pub created_at_ms: i64,
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

/// The journal and the delivery queues.
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Durably records a verified event, or says it is a duplicate.
    fn journal(&self, event: NewEvent) -> StoreFuture<'_, Journaled>;
    /// Events due for routing at `now_ms`, oldest first.
    fn due_events(&self, now_ms: i64, limit: usize) -> StoreFuture<'_, Vec<PendingEvent>>;
    /// A stored record's bytes.
    fn record_body(&self, record_id: &str) -> StoreFuture<'_, Bytes>;
    /// Ids of the records already built from an event.
    fn record_ids(&self, event_id: &str) -> StoreFuture<'_, Vec<String>>;
    /// Stores one routing pass in one transaction: the records built and
    /// one delivery row per (record, sink); a row per failed route (state
    /// retry or dead, attempts + 1, last error); failure rows of routes
    /// whose record now exists, or that this pass no longer retries, are
    /// removed. Existing record ids are kept as they are (a record is built
    /// once). The event is then routed when no failed route is left to
    /// retry, else due again at the earliest `next_attempt_ms` (attempts +
    /// 1, last error the first retried route's).
    fn save_routing(&self, event_id: &str, routing: Routing) -> StoreFuture<'_, ()>;
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
    /// Whether the journal takes writes now; the error says why not (a full
    /// disk, a read-only folder, an I/O error). `/healthz` answers from it.
    fn health(&self) -> StoreFuture<'_, ()>;
    /// Deletes delivered deliveries, and events and records with nothing
    /// left to deliver, last touched before `before_ms`: at most `limit`
    /// rows of each table, so one call never holds the writer for long.
    /// An event with a route-level dead letter keeps it and its records
    /// (a replay must not build them again); its failure rows go with it.
    fn prune(&self, before_ms: i64, limit: usize) -> StoreFuture<'_, u64>;
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    state INTEGER NOT NULL DEFAULT 0,      -- 0 routing due, 1 routed, 2 dead
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    reroute INTEGER NOT NULL DEFAULT 0,
    updated_at INTEGER NOT NULL
) STRICT;
-- The raw body apart from the row whose state changes: SQLite rewrites a
-- whole row on UPDATE, and the body is most of it.
CREATE TABLE IF NOT EXISTS event_bodies (
    seq INTEGER PRIMARY KEY,
    body BLOB NOT NULL
) STRICT;
CREATE TRIGGER IF NOT EXISTS event_bodies_follow AFTER DELETE ON events
BEGIN
    DELETE FROM event_bodies WHERE seq = OLD.seq;
END;
CREATE INDEX IF NOT EXISTS events_due ON events (next_attempt_at) WHERE state = 0;
CREATE INDEX IF NOT EXISTS events_routed ON events (updated_at) WHERE state = 1;
CREATE INDEX IF NOT EXISTS events_dead ON events (updated_at) WHERE state = 2;
CREATE TABLE IF NOT EXISTS records (
    id TEXT PRIMARY KEY,
    event_id TEXT NOT NULL,
    route TEXT NOT NULL,
    body BLOB NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS records_event ON records (event_id);
CREATE INDEX IF NOT EXISTS records_created ON records (created_at);
CREATE TABLE IF NOT EXISTS deliveries (
    record_id TEXT NOT NULL,
    sink TEXT NOT NULL,
    route TEXT NOT NULL,
    event_id TEXT NOT NULL,
    state INTEGER NOT NULL DEFAULT 0,      -- 0 pending, 1 delivered, 2 dead
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (record_id, sink)
) STRICT;
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (sink, next_attempt_at) WHERE state = 0;
CREATE INDEX IF NOT EXISTS deliveries_dead ON deliveries (sink) WHERE state = 2;
CREATE INDEX IF NOT EXISTS deliveries_done ON deliveries (updated_at) WHERE state = 1;
-- Routes of an event whose record could not be built: retried (state 0)
-- with the event, or given up (state 2, a route-level dead letter).
CREATE TABLE IF NOT EXISTS route_failures (
    event_id TEXT NOT NULL,
    route TEXT NOT NULL,
    record_id TEXT NOT NULL,
    state INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    last_error TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (event_id, route)
) STRICT;
CREATE INDEX IF NOT EXISTS route_failures_dead ON route_failures (updated_at) WHERE state = 2;
CREATE TRIGGER IF NOT EXISTS route_failures_follow AFTER DELETE ON events
BEGIN
    DELETE FROM route_failures WHERE event_id = OLD.id;
END;
-- One row the writer rewrites to find out whether the journal takes writes:
-- at start, and while writes fail.
CREATE TABLE IF NOT EXISTS probe (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    at INTEGER NOT NULL
) STRICT;
";

/// Writes, each answered once its transaction committed.
enum Write {
    Journal(NewEvent, oneshot::Sender<Result<Journaled, StoreError>>),
    Routing(String, Routing, oneshot::Sender<Result<(), StoreError>>),
    EventFailed {
        id: String,
        error: String,
        next: i64,
        dead: bool,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    Settle(
        String,
        String,
        Settle,
        oneshot::Sender<Result<(), StoreError>>,
    ),
    Replay(Filter, oneshot::Sender<Result<u64, StoreError>>),
    Reroute(String, oneshot::Sender<Result<bool, StoreError>>),
    Prune(i64, usize, oneshot::Sender<Result<u64, StoreError>>),
}

/// How many writes one transaction takes at most.
const BATCH: usize = 1024;

/// How long a connection waits for a lock another one holds (a CLI
/// `replay`, the writer's checkpoint) before its statement fails.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// How long the writer's own checkpoint waits for readers to be done with
/// the log. The router's reads take milliseconds; past this the writer goes
/// on committing and tries again a little later, rather than stall every
/// request behind a slow reader.
const RESTART_WAIT: Duration = Duration::from_millis(200);

/// How often checkpoints copy the log into the database, off the commit
/// path.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);

/// While writes fail (a full disk, a read-only or failing volume), how often
/// the writer tries a small write of its own, so that health comes back as
/// soon as the journal takes writes again, even if no event arrives.
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// Bytes SQLite adds to each page it appends to the log.
const FRAME_HEADER: u64 = 24;

#[derive(Debug)]
pub struct SqliteStore {
    /// Unbounded, yet bounded by its producers: every write's sender waits
    /// for its answer, and the senders are bounded (connections, the
    /// router, each worker's concurrency, pruning).
    writes: std::sync::mpsc::Sender<Write>,
    reader: Arc<Mutex<Connection>>,
    path: PathBuf,
    health: Arc<Health>,
    /// The checkpoint thread runs while this lives.
    _alive: Arc<()>,
}

impl SqliteStore {
    /// Opens (creating) the database at `path`, and makes sure it takes
    /// writes: a journal that cannot be written (a read-only folder or
    /// volume, an I/O error) is an error here, not a `500` on every event
    /// later. A full disk is not: the store opens, says so in
    /// [`Store::health`], and takes writes again once there is room.
    ///
    /// With `fsync` off, commits survive a crash of the process but not of
    /// the machine; it exists to measure what durability costs.
    /// `wal_limit` bounds the write-ahead log on disk (`store.wal_limit`).
    ///
    /// The database, its `-wal` and `-shm` files (SQLite gives them the
    /// database's mode) and the folders created for it are private to the
    /// user: they hold customers' names and addresses.
    pub fn open(path: &Path, fsync: bool, wal_limit: u64) -> Result<SqliteStore, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.display().to_string(),
            source,
        };
        create_private(path)?;
        let connect = |pragmas: &str| -> Result<Connection, StoreError> {
            let connection = Connection::open(path).map_err(open_err)?;
            connection.execute_batch(pragmas).map_err(open_err)?;
            connection.busy_timeout(LOCK_WAIT).map_err(open_err)?;
            Ok(connection)
        };
        // No automatic checkpoints: they would run inside a commit. The
        // checkpoint thread copies the log into the database off the commit
        // path, and the writer starts the log over once it passes half of
        // `wal_limit` (`Wal`); the file is cut back to `wal_limit` when the
        // log starts over.
        let mut writer = connect(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = {}; PRAGMA wal_autocheckpoint = 0;
             PRAGMA journal_size_limit = {wal_limit}; {SCHEMA}",
            if fsync { "FULL" } else { "OFF" }
        ))?;
        let health = Arc::new(Health::default());
        if let Err(e) = probe(&writer) {
            if !is_full(&e) {
                return Err(StoreError::Unwritable {
                    path: path.display().to_string(),
                    source: e,
                });
            }
            tracing::error!(path = %path.display(), error = %e, "the journal's disk is full; events are answered 500 until there is room");
            health
                .write
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .fail(e.to_string());
        }
        let wal = Wal::watch(&mut writer, wal_limit).map_err(open_err)?;
        let log = wal.log.clone();
        let reader = connect("")?;
        let checkpointer = connect("")?;

        let (tx, rx) = std::sync::mpsc::channel();
        let spawn = |name: &str, work: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(work)
                .map_err(StoreError::Thread)
        };
        let writer_health = health.clone();
        spawn(
            "journal-writer",
            Box::new(move || write_loop(writer, rx, wal, &writer_health)),
        )?;
        let alive = Arc::new(());
        let watched = Arc::downgrade(&alive);
        let checkpoint_health = health.clone();
        spawn(
            "journal-checkpoint",
            Box::new(move || checkpoint_loop(checkpointer, watched, &log, &checkpoint_health)),
        )?;
        Ok(SqliteStore {
            writes: tx,
            reader: Arc::new(Mutex::new(reader)),
            path: path.to_path_buf(),
            health,
            _alive: alive,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write<T: Send + 'static>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Write,
    ) -> StoreFuture<'_, T> {
        let (reply, answer) = oneshot::channel();
        let sent = self.writes.send(make(reply));
        Box::pin(async move {
            sent.map_err(|_| StoreError::Stopped)?;
            answer.await.map_err(|_| StoreError::Stopped)?
        })
    }

    fn read<T: Send + 'static>(
        &self,
        query: impl FnOnce(&Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    ) -> StoreFuture<'_, T> {
        let reader = self.reader.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let connection = reader.lock().unwrap_or_else(|e| e.into_inner());
                query(&connection).map_err(StoreError::from)
            })
            .await
            .map_err(|_| StoreError::Stopped)?
        })
    }
}

/// Folders the journal needs, `0700` where missing (existing ones are left
/// as they are), and the database file `0600` if it does not exist yet.
fn create_private(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(|source| StoreError::Folder {
                path: parent.display().to_string(),
                source,
            })?;
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(StoreError::File {
            path: path.display().to_string(),
            source,
        }),
    }
}

/// A small real write: one row rewritten, committed.
fn probe(connection: &Connection) -> Result<(), rusqlite::Error> {
    connection
        .prepare_cached("INSERT OR REPLACE INTO probe (id, at) VALUES (1, ?1)")?
        .execute(params![now_ms()])?;
    Ok(())
}

fn is_full(e: &rusqlite::Error) -> bool {
    e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull)
}

/// Why the journal does not take writes now, as its threads last saw it.
#[derive(Debug, Default)]
struct Health {
    /// The writer's: the last transaction (or probe) failed.
    write: Mutex<Trouble>,
    /// The checkpoint thread's: the log can neither be copied into the
    /// database nor start over, so it grows.
    checkpoint: Mutex<Trouble>,
}

impl Health {
    fn reason(&self) -> Option<String> {
        let lock = |m: &Mutex<Trouble>| m.lock().unwrap_or_else(|e| e.into_inner()).reason();
        if let Some(reason) = lock(&self.write) {
            return Some(format!("writes fail: {reason}"));
        }
        lock(&self.checkpoint).map(|reason| format!("checkpoints fail, so its log grows: {reason}"))
    }

    fn writes_fail(&self) -> bool {
        self.write
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .reason()
            .is_some()
    }
}

/// A failing condition, logged when it begins and when it ends rather than
/// at every attempt.
#[derive(Debug, Default)]
struct Trouble {
    /// Why, since when, and how many attempts failed.
    failing: Option<(String, std::time::Instant, u64)>,
}

impl Trouble {
    fn reason(&self) -> Option<String> {
        self.failing.as_ref().map(|(reason, _, _)| reason.clone())
    }

    /// One failed attempt; true when it begins the trouble or changes its
    /// reason, so worth a log line.
    fn fail(&mut self, reason: String) -> bool {
        match &mut self.failing {
            Some((known, _, attempts)) if *known == reason => {
                *attempts += 1;
                false
            }
            Some((known, _, attempts)) => {
                *known = reason;
                *attempts += 1;
                true
            }
            None => {
                self.failing = Some((reason, std::time::Instant::now(), 1));
                true
            }
        }
    }

    /// One successful attempt: how many failed and for how long, if this
    /// ends a trouble.
    fn clear(&mut self) -> Option<(u64, Duration)> {
        self.failing
            .take()
            .map(|(_, since, attempts)| (attempts, since.elapsed()))
    }
}

/// The log's size as the writer's commits leave it, and starting it over.
///
/// SQLite appends every page a commit changes to the log; a checkpoint
/// copies them into the database, but only a writer that finds the whole
/// log copied and no reader in it starts the log over. Under steady load
/// that never happens by itself. So once the log passes half of the limit,
/// the checkpoint thread copies without pausing, and as soon as it is
/// nearly caught up the writer runs a RESTART checkpoint between two
/// commits: it copies the little that is left, waits for readers to leave
/// the log (at most [`RESTART_WAIT`]), and the next commit starts from the
/// log's beginning, cutting the file back to the limit
/// (`journal_size_limit`). If the checkpoint thread cannot keep up, the
/// writer restarts the log at five eighths of the limit whatever is left to
/// copy: commits then wait for that copy.
struct Wal {
    log: Arc<Log>,
    frame_bytes: u64,
    limit: u64,
    /// Frames at which the next restart is tried.
    next_try: u64,
    /// Frames left to copy under which a restart is cheap: the writer
    /// waits for the checkpoint thread to get there.
    catch_up: u64,
    /// Frames past which the writer restarts the log whatever is left to
    /// copy (the checkpoint thread cannot keep up): five eighths of the
    /// limit, so that one more batch still fits under it.
    force_at: u64,
    /// A batch stops taking writes past these bytes, so one commit adds
    /// about this much to the log at most (or one write, if bigger).
    batch_bytes: u64,
    /// The log is past the limit (a reader outside the router holds it).
    over: bool,
}

/// What the writer and the checkpoint thread know of the log, in frames.
#[derive(Debug, Default)]
struct Log {
    /// In the log after the writer's last commit (SQLite's WAL hook).
    frames: AtomicU64,
    /// Copied into the database by the checkpoint thread's last pass.
    copied: AtomicU64,
    /// Past this (half of the limit) the log is due to start over; the
    /// checkpoint thread then copies without pausing.
    restart_at: u64,
    /// Held during a pass of the checkpoint thread: the writer waits for
    /// one only past five eighths of the limit; before, it tries again
    /// after its next commit.
    pass: Mutex<()>,
}

impl Wal {
    fn watch(connection: &mut Connection, limit: u64) -> Result<Wal, rusqlite::Error> {
        let page: i64 = connection.query_row("PRAGMA page_size", [], |row| row.get(0))?;
        let frame_bytes = u64::try_from(page).unwrap_or(4096) + FRAME_HEADER;
        let frames_in = |bytes: u64| (bytes / frame_bytes).max(1);
        let log = Arc::new(Log {
            restart_at: frames_in(limit / 2),
            ..Log::default()
        });
        let seen = log.clone();
        connection.wal_hook(Some(
            move |_: &mut rusqlite::hooks::Wal, pages: std::ffi::c_int| {
                let pages = u64::try_from(pages).unwrap_or(0);
                seen.frames.store(pages, Ordering::Relaxed);
                Ok(())
            },
        ))?;
        Ok(Wal {
            next_try: log.restart_at,
            log,
            frame_bytes,
            limit,
            catch_up: frames_in(limit / 64),
            force_at: frames_in(limit / 8 * 5),
            batch_bytes: (limit / 4).max(1),
            over: false,
        })
    }

    /// After a commit: starts the log over if it passed half of the limit.
    fn after_commit(&mut self, connection: &Connection) {
        let log = &*self.log;
        let frames = log.frames.load(Ordering::Relaxed);
        if frames < log.restart_at {
            self.next_try = log.restart_at;
        }
        let over = frames.saturating_mul(self.frame_bytes) > self.limit;
        if over != self.over {
            self.over = over;
            if over {
                tracing::warn!(
                    bytes = frames.saturating_mul(self.frame_bytes),
                    limit = self.limit,
                    "the journal's log is past store.wal_limit: it cannot start over while another process reads the journal"
                );
            } else {
                tracing::info!("the journal's log is back under store.wal_limit");
            }
        }
        if frames < self.next_try {
            return;
        }
        let behind = frames.saturating_sub(log.copied.load(Ordering::Relaxed));
        if behind > self.catch_up && frames < self.force_at {
            return;
        }
        let forced = frames >= self.force_at;
        let _pass = match log.pass.try_lock() {
            Ok(held) => held,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            // Past five eighths, one or two more commits would pass the
            // limit: wait for the pass to end (a PASSIVE copy, which takes
            // no lock the writer holds) rather than commit again first.
            Err(std::sync::TryLockError::WouldBlock) if forced => {
                log.pass.lock().unwrap_or_else(|e| e.into_inner())
            }
            Err(std::sync::TryLockError::WouldBlock) => return,
        };
        let _ = connection.busy_timeout(RESTART_WAIT);
        let outcome = connection.wal_checkpoint_v2(rusqlite::DEFAULT_NAME, CheckpointMode::RESTART);
        let _ = connection.busy_timeout(LOCK_WAIT);
        match outcome {
            Ok(_) => {
                self.next_try = log.restart_at;
                log.copied.store(0, Ordering::Relaxed);
            }
            Err(e) => {
                // Busy (readers still in the log, or another process's
                // checkpoint) or failing (the checkpoint thread says why):
                // try again once the log grew by another sixteenth of the
                // limit.
                tracing::debug!(error = %e, frames, "the journal's log cannot start over yet");
                self.next_try = frames + (self.limit / 16 / self.frame_bytes).max(1);
            }
        }
    }
}

/// Copies committed log pages into the database without blocking the
/// writer (PASSIVE), a few times a second, and without pausing once the log
/// is due to start over, so that the restart finds little left to copy.
fn checkpoint_loop(connection: Connection, alive: std::sync::Weak<()>, log: &Log, health: &Health) {
    /// Between passes while the log is due to start over: the writer gets
    /// the log between two passes.
    const DUE_PAUSE: Duration = Duration::from_millis(5);
    while alive.upgrade().is_some() {
        std::thread::sleep(if log.frames.load(Ordering::Relaxed) >= log.restart_at {
            DUE_PAUSE
        } else {
            CHECKPOINT_EVERY
        });
        let held = log.pass.lock().unwrap_or_else(|e| e.into_inner());
        // The pragma, not `sqlite3_wal_checkpoint_v2`: on a connection
        // that has not read the database yet, that call does nothing.
        let outcome = connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            row.get::<_, i64>(2)
        });
        if let Ok(copied) = outcome {
            log.copied
                .store(u64::try_from(copied).unwrap_or(0), Ordering::Relaxed);
        }
        drop(held);
        let mut trouble = health.checkpoint.lock().unwrap_or_else(|e| e.into_inner());
        match outcome {
            Err(e) => {
                if trouble.fail(e.to_string()) {
                    tracing::warn!(error = %e, "journal checkpoint failed; the WAL file grows until one succeeds");
                }
            }
            Ok(_) => {
                if let Some((failed, lasted)) = trouble.clear() {
                    tracing::info!(failed, after = ?lasted, "journal checkpoints succeed again");
                }
            }
        }
    }
}

fn write_loop(
    mut connection: Connection,
    rx: std::sync::mpsc::Receiver<Write>,
    mut wal: Wal,
    health: &Health,
) {
    use std::sync::mpsc::RecvTimeoutError;
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let first = if health.writes_fail() {
            match rx.recv_timeout(PROBE_EVERY) {
                Ok(write) => write,
                Err(RecvTimeoutError::Timeout) => {
                    wrote(health, probe(&connection).map_err(|e| e.to_string()));
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            }
        } else {
            match rx.recv() {
                Ok(write) => write,
                Err(_) => return,
            }
        };
        let mut bytes = first.bytes();
        batch.push(first);
        while batch.len() < BATCH && bytes < wal.batch_bytes {
            match rx.try_recv() {
                Ok(next) => {
                    bytes += next.bytes();
                    batch.push(next);
                }
                Err(_) => break,
            }
        }
        apply(&mut connection, &mut batch, health);
        wal.after_commit(&connection);
    }
}

/// Records a commit's outcome for [`Store::health`], logging only when
/// writes begin to fail and when they succeed again.
fn wrote(health: &Health, outcome: Result<(), String>) {
    let mut trouble = health.write.lock().unwrap_or_else(|e| e.into_inner());
    match outcome {
        Err(e) => {
            if trouble.fail(e.clone()) {
                tracing::error!(error = %e, "journal transaction failed; events are answered 500 until the journal takes writes again");
            }
        }
        Ok(()) => {
            if let Some((failed, lasted)) = trouble.clear() {
                tracing::info!(failed, after = ?lasted, "the journal takes writes again");
            }
        }
    }
}

impl Write {
    /// About the bytes this write adds to the log.
    fn bytes(&self) -> u64 {
        let body = match self {
            Write::Journal(event, _) => event.body.len(),
            Write::Routing(_, routing, _) => {
                routing.records.iter().map(|r| r.record.body.len()).sum()
            }
            _ => 0,
        };
        // Small rows and index entries besides.
        body as u64 + 256
    }
}

/// Applies a batch of writes in one transaction, then answers each. If any
/// statement or the commit fails (disk full, I/O error), the transaction is
/// rolled back and every write in the batch is answered with that error:
/// nothing of it is acknowledged. The outcome reaches [`Store::health`]
/// before any answer does: a write refused means health says so.
fn apply(connection: &mut Connection, batch: &mut Vec<Write>, health: &Health) {
    let now = now_ms();
    let mut answers: Answers = Vec::with_capacity(batch.len());
    let mut failure: Option<rusqlite::Error> = None;
    match connection.transaction() {
        Err(e) => {
            failure = Some(e);
            for write in batch.drain(..) {
                refuse(write, &mut answers);
            }
        }
        Ok(tx) => {
            for write in batch.drain(..) {
                if failure.is_some() {
                    refuse(write, &mut answers);
                } else {
                    execute(&tx, write, now, &mut answers, &mut failure);
                }
            }
            if failure.is_none()
                && let Err(e) = tx.commit()
            {
                failure = Some(e);
            }
        }
    }
    let failure = failure.map(|e| e.to_string());
    wrote(health, failure.clone().map_or(Ok(()), Err));
    for answer in answers {
        answer(failure.as_deref());
    }
}

type Answers = Vec<Box<dyn FnOnce(Option<&str>)>>;

/// Runs one write's statements; its answer waits for the commit.
fn execute(
    tx: &rusqlite::Transaction<'_>,
    write: Write,
    now: i64,
    answers: &mut Answers,
    failure: &mut Option<rusqlite::Error>,
) {
    match write {
        Write::Journal(event, reply) => run(answers, failure, reply, || {
            let inserted = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO events (id, type, received_at, state, next_attempt_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![
                    event.id,
                    event.kind,
                    event.received_at_ms,
                    i64::from(event.routed),
                    event.received_at_ms + LEASE_MS,
                    now
                ])?;
            if inserted == 0 {
                return Ok(Journaled::Duplicate);
            }
            tx.prepare_cached("INSERT INTO event_bodies (seq, body) VALUES (?1, ?2)")?
                .execute(params![tx.last_insert_rowid(), &event.body[..]])?;
            Ok(Journaled::Inserted)
        }),
        Write::Routing(event_id, routing, reply) => run(answers, failure, reply, || {
            save_routing(tx, &event_id, &routing, now)
        }),
        Write::EventFailed {
            id,
            error,
            next,
            dead,
            reply,
        } => run(answers, failure, reply, || {
            tx.prepare_cached(
                "UPDATE events SET attempts = attempts + 1, last_error = ?2, next_attempt_at = ?3,
                 state = ?4, updated_at = ?5 WHERE id = ?1",
            )?
            .execute(params![id, error, next, if dead { 2 } else { 0 }, now])?;
            Ok(())
        }),
        Write::Settle(record_id, sink, outcome, reply) => run(answers, failure, reply, || {
            let (state, next, error) = match outcome {
                Settle::Delivered => (1, 0, None),
                Settle::Retry {
                    next_attempt_ms,
                    error,
                } => (0, next_attempt_ms, Some(error)),
                Settle::Dead { error } => (2, 0, Some(error)),
            };
            tx.prepare_cached(
                "UPDATE deliveries SET state = ?3, attempts = attempts + 1, next_attempt_at = ?4,
                 last_error = COALESCE(?5, last_error), updated_at = ?6
                 WHERE record_id = ?1 AND sink = ?2",
            )?
            .execute(params![record_id, sink, state, next, error, now])?;
            Ok(())
        }),
        Write::Replay(filter, reply) => {
            run(answers, failure, reply, || replay(tx, &filter, now));
        }
        Write::Reroute(event_id, reply) => run(answers, failure, reply, || {
            let found = tx
                .prepare_cached(
                    "UPDATE events SET state = 0, reroute = 1, next_attempt_at = 0, attempts = 0,
                     updated_at = ?2 WHERE id = ?1",
                )?
                .execute(params![event_id, now])?;
            tx.prepare_cached("DELETE FROM route_failures WHERE event_id = ?1 AND state = ?2")?
                .execute(params![event_id, RouteState::Dead.sql()])?;
            Ok(found == 1)
        }),
        Write::Prune(before, limit, reply) => run(answers, failure, reply, || {
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let mut removed = tx
                .prepare_cached(
                    "DELETE FROM deliveries WHERE rowid IN (SELECT rowid FROM deliveries
                     WHERE state = 1 AND updated_at < ?1 LIMIT ?2)",
                )?
                .execute(params![before, limit])?;
            removed += tx
                .prepare_cached(
                    "DELETE FROM records WHERE rowid IN (SELECT rowid FROM records WHERE created_at < ?1
                     AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.record_id = records.id)
                     AND NOT EXISTS (SELECT 1 FROM route_failures f WHERE f.event_id = records.event_id)
                     LIMIT ?2)",
                )?
                .execute(params![before, limit])?;
            removed += tx
                .prepare_cached(
                    "DELETE FROM events WHERE rowid IN (SELECT rowid FROM events WHERE state = 1
                     AND updated_at < ?1
                     AND NOT EXISTS (SELECT 1 FROM records r WHERE r.event_id = events.id)
                     AND NOT EXISTS (SELECT 1 FROM route_failures f WHERE f.event_id = events.id)
                     LIMIT ?2)",
                )?
                .execute(params![before, limit])?;
            Ok(removed as u64)
        }),
    }
}

/// The state of a route in `route_failures`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteState {
    /// Tried again when its event is next routed.
    Retry = 0,
    /// Given up: a route-level dead letter until replayed or rerouted.
    Dead = 2,
}

impl RouteState {
    pub const fn sql(self) -> i64 {
        self as i64
    }
}

/// Re-queues the dead letters `filter` matches; how many.
fn replay(
    tx: &rusqlite::Transaction<'_>,
    filter: &Filter,
    now: i64,
) -> Result<u64, rusqlite::Error> {
    let deliveries = tx
        .prepare_cached(
            "UPDATE deliveries SET state = 0, next_attempt_at = 0, attempts = 0, created_at = ?4,
             updated_at = ?4
             WHERE state = 2 AND (?1 IS NULL OR sink = ?1) AND (?2 IS NULL OR route = ?2)
             AND (?3 IS NULL OR event_id = ?3)",
        )?
        .execute(params![filter.sink, filter.route, filter.event, now])?;
    // A route whose record could not be built has no sink: its event is
    // routed again, and builds only what is missing.
    let routes = if filter.sink.is_none() {
        let dead = RouteState::Dead.sql();
        tx.prepare_cached(
            "UPDATE events SET state = 0, next_attempt_at = 0, attempts = 0, updated_at = ?3
             WHERE id IN (SELECT event_id FROM route_failures WHERE state = ?4
             AND (?1 IS NULL OR route = ?1) AND (?2 IS NULL OR event_id = ?2))",
        )?
        .execute(params![filter.route, filter.event, now, dead])?;
        tx.prepare_cached(
            "DELETE FROM route_failures WHERE state = ?3 AND (?1 IS NULL OR route = ?1)
             AND (?2 IS NULL OR event_id = ?2)",
        )?
        .execute(params![filter.route, filter.event, dead])?
    } else {
        0
    };
    // Events that cannot be routed at all have no sink or route; a filter
    // by sink or route does not select them.
    let events = if filter.sink.is_none() && filter.route.is_none() {
        tx.prepare_cached(
            "UPDATE events SET state = 0, next_attempt_at = 0, attempts = 0, updated_at = ?2
             WHERE state = 2 AND (?1 IS NULL OR id = ?1)",
        )?
        .execute(params![filter.event, now])?
    } else {
        0
    };
    Ok((deliveries + routes + events) as u64)
}

/// One routing pass's statements (see [`Store::save_routing`]).
fn save_routing(
    tx: &rusqlite::Transaction<'_>,
    event_id: &str,
    routing: &Routing,
    now: i64,
) -> Result<(), rusqlite::Error> {
    for record in &routing.records {
        let fresh = tx
            .prepare_cached(
                "INSERT OR IGNORE INTO records (id, event_id, route, body, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                record.record.id,
                event_id,
                record.route,
                &record.record.body[..],
                now
            ])?;
        tx.prepare_cached("DELETE FROM route_failures WHERE event_id = ?1 AND route = ?2")?
            .execute(params![event_id, record.route])?;
        if fresh == 0 {
            continue;
        }
        for sink in &record.sinks {
            tx.prepare_cached(
                "INSERT OR IGNORE INTO deliveries
                 (record_id, sink, route, event_id, next_attempt_at, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?6, ?5, ?5)",
            )?
            .execute(params![
                record.record.id,
                sink,
                record.route,
                event_id,
                now,
                now + LEASE_MS
            ])?;
        }
    }
    // A route this pass neither built nor retried (removed by a reload, or
    // built under another id) has nothing left to retry.
    let retried: Vec<String> = {
        let mut statement = tx.prepare_cached(
            "SELECT route FROM route_failures WHERE event_id = ?1 AND state = ?2",
        )?;
        let rows = statement.query_map(params![event_id, RouteState::Retry.sql()], |row| {
            row.get::<_, String>(0)
        })?;
        rows.collect::<Result<_, _>>()?
    };
    for route in retried {
        if !routing.failed.iter().any(|f| f.route == route) {
            tx.prepare_cached("DELETE FROM route_failures WHERE event_id = ?1 AND route = ?2")?
                .execute(params![event_id, route])?;
        }
    }
    for failure in &routing.failed {
        let state = if failure.dead {
            RouteState::Dead
        } else {
            RouteState::Retry
        };
        tx.prepare_cached(
            "INSERT INTO route_failures
             (event_id, route, record_id, state, attempts, last_error, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, 1, ?5, ?6, ?6)
             ON CONFLICT (event_id, route) DO UPDATE SET record_id = excluded.record_id,
             state = excluded.state, attempts = attempts + 1, last_error = excluded.last_error,
             updated_at = excluded.updated_at",
        )?
        .execute(params![
            event_id,
            failure.route,
            failure.record_id,
            state.sql(),
            failure.error,
            now
        ])?;
    }
    let retry = routing.failed.iter().filter(|f| !f.dead);
    match retry.clone().map(|f| f.next_attempt_ms).min() {
        None => {
            tx.prepare_cached(
                "UPDATE events SET state = 1, reroute = 0, last_error = NULL, updated_at = ?2
                 WHERE id = ?1",
            )?
            .execute(params![event_id, now])?;
        }
        Some(next) => {
            let error = retry.map(|f| f.error.as_str()).next();
            tx.prepare_cached(
                "UPDATE events SET state = 0, attempts = attempts + 1, next_attempt_at = ?2,
                 last_error = ?3, updated_at = ?4 WHERE id = ?1",
            )?
            .execute(params![event_id, next, error, now])?;
        }
    }
    Ok(())
}

/// Runs `op` unless the transaction already failed, and queues the answer.
fn run<T: Send + 'static>(
    answers: &mut Answers,
    failure: &mut Option<rusqlite::Error>,
    reply: oneshot::Sender<Result<T, StoreError>>,
    op: impl FnOnce() -> Result<T, rusqlite::Error>,
) {
    let value = match failure {
        Some(_) => None,
        None => match op() {
            Ok(value) => Some(value),
            Err(e) => {
                *failure = Some(e);
                None
            }
        },
    };
    answers.push(Box::new(move |failed: Option<&str>| {
        let _ = reply.send(match (failed, value) {
            (None, Some(value)) => Ok(value),
            (failed, _) => Err(StoreError::Write(
                failed.unwrap_or("transaction rolled back").to_owned(),
            )),
        });
    }));
}

/// Answers a write that never ran because its transaction had failed.
fn refuse(write: Write, answers: &mut Answers) {
    // A failure already recorded makes `run` answer without running.
    let mut skip = Some(rusqlite::Error::InvalidQuery);
    match write {
        Write::Journal(_, reply) => run(answers, &mut skip, reply, || Ok(Journaled::Duplicate)),
        Write::Routing(_, _, reply)
        | Write::EventFailed { reply, .. }
        | Write::Settle(_, _, _, reply) => {
            run(answers, &mut skip, reply, || Ok(()));
        }
        Write::Replay(_, reply) | Write::Prune(_, _, reply) => {
            run(answers, &mut skip, reply, || Ok(0));
        }
        Write::Reroute(_, reply) => run(answers, &mut skip, reply, || Ok(false)),
    }
}

impl Store for SqliteStore {
    fn journal(&self, event: NewEvent) -> StoreFuture<'_, Journaled> {
        self.write(|reply| Write::Journal(event, reply))
    }

    fn due_events(&self, now_ms: i64, limit: usize) -> StoreFuture<'_, Vec<PendingEvent>> {
        self.read(move |c| {
            // One read transaction: the settled ids are those of the page read.
            let tx = c.unchecked_transaction()?;
            let mut statement = tx.prepare_cached(
                "SELECT e.id, b.body, e.received_at, e.attempts, e.reroute, e.type
                 FROM events e JOIN event_bodies b ON b.seq = e.seq
                 WHERE e.state = 0 AND e.next_attempt_at <= ?1
                 ORDER BY e.next_attempt_at, e.received_at LIMIT ?2",
            )?;
            let rows = statement.query_map(params![now_ms, limit as i64], |row| {
                Ok(PendingEvent {
                    id: row.get(0)?,
                    body: Bytes::from(row.get::<_, Vec<u8>>(1)?),
                    received_at_ms: row.get(2)?,
                    attempts: row.get(3)?,
                    reroute: row.get::<_, i64>(4)? != 0,
                    kind: row.get(5)?,
                    settled: Vec::new(),
                })
            })?;
            let mut due: Vec<PendingEvent> = rows.collect::<Result<_, _>>()?;
            drop(statement);
            if due.is_empty() {
                return Ok(due);
            }
            let mut statement = tx.prepare_cached(
                "WITH page AS (SELECT id FROM events WHERE state = 0 AND next_attempt_at <= ?1
                               ORDER BY next_attempt_at, received_at LIMIT ?2)
                 SELECT event_id, id FROM records WHERE event_id IN page
                 UNION ALL
                 SELECT event_id, record_id FROM route_failures
                 WHERE state = ?3 AND event_id IN page",
            )?;
            let rows = statement.query_map(
                params![now_ms, limit as i64, RouteState::Dead.sql()],
                |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)),
            )?;
            let mut settled: std::collections::HashMap<String, Vec<String>> =
                std::collections::HashMap::new();
            for row in rows {
                let (event_id, record_id) = row?;
                settled.entry(event_id).or_default().push(record_id);
            }
            for event in &mut due {
                if let Some(ids) = settled.remove(&event.id) {
                    event.settled = ids;
                }
            }
            Ok(due)
        })
    }

    fn record_body(&self, record_id: &str) -> StoreFuture<'_, Bytes> {
        let record_id = record_id.to_owned();
        self.read(move |c| {
            c.prepare_cached("SELECT body FROM records WHERE id = ?1")?
                .query_row(params![record_id], |row| row.get::<_, Vec<u8>>(0))
                .map(Bytes::from)
        })
    }

    fn record_ids(&self, event_id: &str) -> StoreFuture<'_, Vec<String>> {
        let event_id = event_id.to_owned();
        self.read(move |c| {
            let mut statement = c.prepare_cached("SELECT id FROM records WHERE event_id = ?1")?;
            let rows = statement.query_map(params![event_id], |row| row.get(0))?;
            rows.collect()
        })
    }

    fn save_routing(&self, event_id: &str, routing: Routing) -> StoreFuture<'_, ()> {
        let event_id = event_id.to_owned();
        self.write(|reply| Write::Routing(event_id, routing, reply))
    }

    fn event_failed(
        &self,
        event_id: &str,
        error: String,
        next_attempt_ms: i64,
        dead: bool,
    ) -> StoreFuture<'_, ()> {
        let id = event_id.to_owned();
        self.write(|reply| Write::EventFailed {
            id,
            error,
            next: next_attempt_ms,
            dead,
            reply,
        })
    }

    fn due_deliveries(
        &self,
        sink: &str,
        now_ms: i64,
        limit: usize,
        busy: Vec<String>,
    ) -> StoreFuture<'_, Vec<PendingDelivery>> {
        let sink = sink.to_owned();
        self.read(move |c| {
            let mut statement = c.prepare_cached(
                "SELECT d.record_id, d.sink, d.route, r.body, d.attempts, d.created_at
                 FROM deliveries d JOIN records r ON r.id = d.record_id
                 WHERE d.state = 0 AND d.sink = ?1 AND d.next_attempt_at <= ?2
                 ORDER BY d.next_attempt_at, d.created_at LIMIT ?3",
            )?;
            let rows =
                statement.query_map(params![sink, now_ms, (limit + busy.len()) as i64], |row| {
                    Ok(PendingDelivery {
                        record: Encoded {
                            id: row.get(0)?,
                            body: Bytes::from(row.get::<_, Vec<u8>>(3)?),
                        },
                        sink: row.get(1)?,
                        route: row.get(2)?,
                        attempts: row.get(4)?,
                        created_at_ms: row.get(5)?,
                    })
                })?;
            let mut due = Vec::with_capacity(limit);
            for row in rows {
                let row = row?;
                if !busy.contains(&row.record.id) && due.len() < limit {
                    due.push(row);
                }
            }
            Ok(due)
        })
    }

    fn settle(&self, record_id: &str, sink: &str, outcome: Settle) -> StoreFuture<'_, ()> {
        let (record_id, sink) = (record_id.to_owned(), sink.to_owned());
        self.write(|reply| Write::Settle(record_id, sink, outcome, reply))
    }

    fn dead_letters(&self, filter: Filter) -> StoreFuture<'_, Vec<DeadLetter>> {
        self.read(move |c| {
            let mut letters = Vec::new();
            let mut statement = c.prepare_cached(
                "SELECT record_id, event_id, sink, route, attempts, last_error, created_at, updated_at
                 FROM deliveries WHERE state = 2 AND (?1 IS NULL OR sink = ?1) AND (?2 IS NULL OR route = ?2)
                 AND (?3 IS NULL OR event_id = ?3) ORDER BY updated_at",
            )?;
            let rows = statement.query_map(params![filter.sink, filter.route, filter.event], dead_letter)?;
            for row in rows {
                letters.push(row?);
            }
            if filter.sink.is_none() {
                // Routes whose record could not be built: no sink.
                let mut statement = c.prepare_cached(
                    "SELECT record_id, event_id, NULL, route, attempts, last_error, created_at, updated_at
                     FROM route_failures WHERE state = ?3 AND (?1 IS NULL OR route = ?1)
                     AND (?2 IS NULL OR event_id = ?2) ORDER BY updated_at",
                )?;
                let rows = statement.query_map(
                    params![filter.route, filter.event, RouteState::Dead.sql()],
                    dead_letter,
                )?;
                for row in rows {
                    letters.push(row?);
                }
            }
            if filter.sink.is_none() && filter.route.is_none() {
                // Events whose routing gave up: no record, sink or route yet.
                let mut statement = c.prepare_cached(
                    "SELECT NULL, id, NULL, NULL, attempts, last_error, received_at, updated_at FROM events
                     WHERE state = 2 AND (?1 IS NULL OR id = ?1) ORDER BY updated_at",
                )?;
                for row in statement.query_map(params![filter.event], dead_letter)? {
                    letters.push(row?);
                }
            }
            Ok(letters)
        })
    }

    fn replay(&self, filter: Filter) -> StoreFuture<'_, u64> {
        self.write(|reply| Write::Replay(filter, reply))
    }

    fn reroute(&self, event_id: &str) -> StoreFuture<'_, bool> {
        let event_id = event_id.to_owned();
        self.write(|reply| Write::Reroute(event_id, reply))
    }

    fn depths(&self) -> StoreFuture<'_, Depths> {
        // Each count reads one partial index, whatever the size of the
        // delivered history.
        self.read(|c| {
            let count = |sql: &str| {
                c.prepare_cached(sql)?
                    .query_row([], |row| row.get::<_, i64>(0))
            };
            let mut depths = Depths {
                events_pending: count("SELECT COUNT(*) FROM events WHERE state = 0")? as u64,
                events_dead: count("SELECT COUNT(*) FROM events WHERE state = 2")? as u64,
                routes_dead: count("SELECT COUNT(*) FROM route_failures WHERE state = 2")? as u64,
                sinks: Default::default(),
            };
            for (state, sql) in [
                (
                    0,
                    "SELECT sink, COUNT(*) FROM deliveries WHERE state = 0 GROUP BY sink",
                ),
                (
                    2,
                    "SELECT sink, COUNT(*) FROM deliveries WHERE state = 2 GROUP BY sink",
                ),
            ] {
                let mut statement = c.prepare_cached(sql)?;
                let rows = statement.query_map([], |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
                })?;
                for row in rows {
                    let (sink, n) = row?;
                    let entry = depths.sinks.entry(sink).or_default();
                    if state == 0 {
                        entry.pending = n as u64;
                    } else {
                        entry.dead = n as u64;
                    }
                }
            }
            Ok(depths)
        })
    }

    fn health(&self) -> StoreFuture<'_, ()> {
        let reason = self.health.reason();
        Box::pin(async move { reason.map_or(Ok(()), |r| Err(StoreError::Unhealthy(r))) })
    }

    fn prune(&self, before_ms: i64, limit: usize) -> StoreFuture<'_, u64> {
        self.write(|reply| Write::Prune(before_ms, limit, reply))
    }
}

/// A dead letter from a row of `record_id, event_id, sink, route, attempts,
/// last_error, created_at, updated_at`.
fn dead_letter(row: &rusqlite::Row<'_>) -> Result<DeadLetter, rusqlite::Error> {
    Ok(DeadLetter {
        record_id: row.get(0)?,
        event_id: row.get(1)?,
        sink: row.get(2)?,
        route: row.get(3)?,
        attempts: row.get(4)?,
        last_error: row.get(5)?,
        created_at_ms: row.get(6)?,
        updated_at_ms: row.get(7)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("data/journal.db"), true, 64 << 20).unwrap();
        (dir, store)
    }

    fn event(id: &str) -> NewEvent {
        NewEvent {
            id: id.to_owned(),
            kind: "checkout.session.completed".to_owned(),
            received_at_ms: now_ms(),
            body: Bytes::from(format!(r#"{{"id":"{id}"}}"#)),
            routed: false,
        }
    }

    fn routed(records: Vec<NewRecord>) -> Routing {
        Routing {
            records,
            failed: Vec::new(),
        }
    }

    fn record(event_id: &str, route: &str, sinks: &[&str]) -> NewRecord {
        NewRecord {
            record: Encoded {
                id: format!("{event_id}:{route}"),
                body: Bytes::from(format!(r#"{{"id":"{event_id}:{route}"}}"#)),
            },
            route: route.to_owned(),
            sinks: sinks.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    /// A 1 MiB tmpfs at a temporary folder, unmounted on drop; None (the
    /// test says it was skipped) without the root a mount needs.
    struct SmallDisk(tempfile::TempDir);

    impl SmallDisk {
        fn mount() -> Option<SmallDisk> {
            let dir = tempfile::tempdir().unwrap();
            std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
                .arg(dir.path())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
                .then_some(SmallDisk(dir))
        }
    }

    impl Drop for SmallDisk {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(self.0.path())
                .status();
        }
    }

    #[tokio::test]
    async fn a_full_disk_shows_in_health_until_there_is_room_again() {
        let Some(disk) = SmallDisk::mount() else {
            eprintln!("skipped: mounting a tmpfs needs root");
            return;
        };
        let store = SqliteStore::open(&disk.0.path().join("journal.db"), true, 256 << 10).unwrap();
        store.journal(event("evt_before")).await.unwrap();
        store.health().await.unwrap();

        let ballast = disk.0.path().join("ballast");
        let mut file = std::fs::File::create(&ballast).unwrap();
        while std::io::Write::write_all(&mut file, &[0; 64 * 1024]).is_ok() {}
        drop(file);
        let mut n = 0;
        while store.journal(event(&format!("evt_full_{n}"))).await.is_ok() {
            n += 1;
            assert!(n < 1000, "the disk never filled up");
        }
        let unhealthy = store.health().await.unwrap_err().to_string();
        assert!(unhealthy.contains("disk is full"), "{unhealthy}");

        // With room again, health comes back by itself: no event arrives.
        std::fs::remove_file(&ballast).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while let Err(e) = store.health().await {
            assert!(std::time::Instant::now() < deadline, "still unhealthy: {e}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            store.journal(event("evt_after")).await.unwrap(),
            Journaled::Inserted
        );
    }

    #[tokio::test]
    async fn an_event_id_is_journaled_once_even_under_concurrency() {
        let (_dir, store) = open();
        let store = Arc::new(store);
        assert_eq!(
            store.journal(event("evt_1")).await.unwrap(),
            Journaled::Inserted
        );
        assert_eq!(
            store.journal(event("evt_1")).await.unwrap(),
            Journaled::Duplicate
        );

        // Many writers at once: batched into few transactions, each answered.
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..300 {
            let store = store.clone();
            tasks.spawn(async move {
                store
                    .journal(event(&format!("evt_many_{}", n % 100)))
                    .await
                    .unwrap()
            });
        }
        let mut inserted = 0;
        while let Some(outcome) = tasks.join_next().await {
            if outcome.unwrap() == Journaled::Inserted {
                inserted += 1;
            }
        }
        assert_eq!(inserted, 100);
        let due = store.due_events(i64::MAX, 1000).await.unwrap();
        assert_eq!(due.len(), 101);
    }

    #[tokio::test]
    async fn an_event_no_route_wants_is_journaled_routed_and_can_be_rerouted() {
        let (_dir, store) = open();
        let unwanted = NewEvent {
            routed: true,
            ..event("evt_unwanted")
        };
        assert_eq!(store.journal(unwanted).await.unwrap(), Journaled::Inserted);
        assert!(store.due_events(i64::MAX, 10).await.unwrap().is_empty());
        assert_eq!(store.depths().await.unwrap().events_pending, 0);
        assert!(store.reroute("evt_unwanted").await.unwrap());
        let due = store.due_events(now_ms(), 10).await.unwrap();
        assert_eq!((due[0].id.as_str(), due[0].reroute), ("evt_unwanted", true));
        assert_eq!(&due[0].body[..], br#"{"id":"evt_unwanted"}"#);
    }

    #[tokio::test]
    async fn fresh_rows_are_leased_to_the_fast_path() {
        let (_dir, store) = open();
        store.journal(event("evt_1")).await.unwrap();
        assert!(store.due_events(now_ms(), 10).await.unwrap().is_empty());
        assert_eq!(
            store
                .due_events(now_ms() + LEASE_MS + 1000, 10)
                .await
                .unwrap()
                .len(),
            1
        );
        store
            .save_routing("evt_1", routed(vec![record("evt_1", "r", &["a"])]))
            .await
            .unwrap();
        assert!(
            store
                .due_deliveries("a", now_ms(), 10, vec![])
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            store
                .due_deliveries("a", i64::MAX, 10, vec![])
                .await
                .unwrap()
                .len(),
            1
        );
    }

    #[tokio::test]
    async fn deliveries_settle_retry_die_and_replay() {
        let (_dir, store) = open();
        store.journal(event("evt_1")).await.unwrap();
        store
            .save_routing(
                "evt_1",
                routed(vec![
                    record("evt_1", "orders", &["file", "http"]),
                    record("evt_1", "audit", &["http"]),
                ]),
            )
            .await
            .unwrap();
        assert!(
            store.due_events(i64::MAX, 10).await.unwrap().is_empty(),
            "routed"
        );
        let http = store
            .due_deliveries("http", i64::MAX, 10, vec![])
            .await
            .unwrap();
        assert_eq!(http.len(), 2);
        let busy = vec!["evt_1:orders".to_owned()];
        let skipped = store
            .due_deliveries("http", i64::MAX, 10, busy)
            .await
            .unwrap();
        assert_eq!(skipped.len(), 1, "rows in flight are skipped");

        store
            .settle("evt_1:orders", "file", Settle::Delivered)
            .await
            .unwrap();
        let later = now_ms() + 60_000;
        store
            .settle(
                "evt_1:orders",
                "http",
                Settle::Retry {
                    next_attempt_ms: later,
                    error: "503".into(),
                },
            )
            .await
            .unwrap();
        store
            .settle(
                "evt_1:audit",
                "http",
                Settle::Dead {
                    error: "HTTP 400: bad".into(),
                },
            )
            .await
            .unwrap();
        assert!(
            store
                .due_deliveries("http", now_ms(), 10, vec![])
                .await
                .unwrap()
                .is_empty()
        );
        let retried = store
            .due_deliveries("http", later, 10, vec![])
            .await
            .unwrap();
        assert_eq!((retried.len(), retried[0].attempts), (1, 1));

        let depths = store.depths().await.unwrap();
        assert_eq!(
            depths.sinks["http"],
            SinkQueue {
                pending: 1,
                dead: 1
            }
        );
        assert!(!depths.sinks.contains_key("file"));

        let dead = store.dead_letters(Filter::default()).await.unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].record_id.as_deref(), Some("evt_1:audit"));
        assert_eq!(dead[0].last_error.as_deref(), Some("HTTP 400: bad"));
        let by_other_sink = Filter {
            sink: Some("file".into()),
            ..Filter::default()
        };
        assert!(
            store
                .dead_letters(by_other_sink.clone())
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(store.replay(by_other_sink).await.unwrap(), 0);
        assert_eq!(
            store
                .replay(Filter {
                    route: Some("audit".into()),
                    ..Filter::default()
                })
                .await
                .unwrap(),
            1
        );
        let due = store
            .due_deliveries("http", now_ms(), 10, vec![])
            .await
            .unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(
            (due[0].record.id.as_str(), due[0].attempts),
            ("evt_1:audit", 0)
        );
    }

    #[tokio::test]
    async fn a_record_is_built_once_and_reroute_adds_only_new_routes() {
        let (_dir, store) = open();
        store.journal(event("evt_1")).await.unwrap();
        store
            .save_routing("evt_1", routed(vec![record("evt_1", "orders", &["file"])]))
            .await
            .unwrap();
        store
            .settle("evt_1:orders", "file", Settle::Delivered)
            .await
            .unwrap();

        assert!(store.reroute("evt_1").await.unwrap());
        assert!(!store.reroute("evt_unknown").await.unwrap());
        let due = store.due_events(now_ms(), 10).await.unwrap();
        assert_eq!((due.len(), due[0].reroute), (1, true));
        assert_eq!(store.record_ids("evt_1").await.unwrap(), ["evt_1:orders"]);
        assert_eq!(
            due[0].settled,
            ["evt_1:orders"],
            "built records are settled"
        );
        let mut changed = record("evt_1", "orders", &["file"]);
        changed.record.body = Bytes::from_static(b"{}");
        store
            .save_routing(
                "evt_1",
                routed(vec![changed, record("evt_1", "new-route", &["file"])]),
            )
            .await
            .unwrap();
        let due = store
            .due_deliveries("file", i64::MAX, 10, vec![])
            .await
            .unwrap();
        assert_eq!(due.len(), 1, "the delivered record is not queued again");
        assert_eq!(due[0].record.id, "evt_1:new-route");
    }

    #[tokio::test]
    async fn failed_routing_is_retried_then_dead_then_replayable() {
        let (_dir, store) = open();
        store.journal(event("evt_1")).await.unwrap();
        let later = now_ms() + 5_000;
        store
            .event_failed("evt_1", "stripe api down".into(), later, false)
            .await
            .unwrap();
        assert!(store.due_events(now_ms(), 10).await.unwrap().is_empty());
        assert_eq!(store.due_events(later, 10).await.unwrap()[0].attempts, 1);
        store
            .event_failed("evt_1", "no such session".into(), 0, true)
            .await
            .unwrap();
        assert!(store.due_events(i64::MAX, 10).await.unwrap().is_empty());
        assert_eq!(store.depths().await.unwrap().events_dead, 1);
        let dead = store.dead_letters(Filter::default()).await.unwrap();
        assert_eq!(
            (dead[0].event_id.as_str(), dead[0].sink.as_deref()),
            ("evt_1", None)
        );
        assert!(
            store
                .dead_letters(Filter {
                    sink: Some("x".into()),
                    ..Filter::default()
                })
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            store
                .replay(Filter {
                    event: Some("evt_1".into()),
                    ..Filter::default()
                })
                .await
                .unwrap(),
            1
        );
        assert_eq!(store.due_events(now_ms(), 10).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn prune_removes_only_finished_history() {
        let (_dir, store) = open();
        for id in ["evt_done", "evt_dead", "evt_unmatched"] {
            store.journal(event(id)).await.unwrap();
        }
        store
            .save_routing("evt_done", routed(vec![record("evt_done", "r", &["a"])]))
            .await
            .unwrap();
        store
            .save_routing("evt_dead", routed(vec![record("evt_dead", "r", &["a"])]))
            .await
            .unwrap();
        store
            .save_routing("evt_unmatched", routed(vec![]))
            .await
            .unwrap();
        store
            .settle("evt_done:r", "a", Settle::Delivered)
            .await
            .unwrap();
        store
            .settle(
                "evt_dead:r",
                "a",
                Settle::Dead {
                    error: "400".into(),
                },
            )
            .await
            .unwrap();

        assert_eq!(
            store.prune(now_ms() - 60_000, 100).await.unwrap(),
            0,
            "nothing is old yet"
        );
        let removed = store.prune(now_ms() + 60_000, 100).await.unwrap();
        assert_eq!(removed, 4, "the delivery, its record, and two events");
        assert_eq!(
            store.dead_letters(Filter::default()).await.unwrap().len(),
            1,
            "dead letters stay"
        );
        assert_eq!(
            store.journal(event("evt_dead")).await.unwrap(),
            Journaled::Duplicate
        );
        assert_eq!(
            store.journal(event("evt_done")).await.unwrap(),
            Journaled::Inserted,
            "forgotten after retention"
        );
    }

    fn failure(event_id: &str, route: &str, next_attempt_ms: i64, dead: bool) -> RouteFailure {
        RouteFailure {
            route: route.to_owned(),
            record_id: format!("{event_id}:{route}"),
            error: format!("{route}: session not found"),
            next_attempt_ms,
            dead,
        }
    }

    /// One number from the journal, read beside the store.
    fn count(store: &SqliteStore, sql: &str) -> i64 {
        let reader = store.reader.lock().unwrap();
        reader.query_row(sql, [], |row| row.get(0)).unwrap()
    }

    #[tokio::test]
    async fn the_audit_record_is_stored_while_the_order_route_is_retried() {
        let (_dir, store) = open();
        store.journal(event("evt_1")).await.unwrap();
        let later = now_ms() + 60_000;
        store
            .save_routing(
                "evt_1",
                Routing {
                    records: vec![record("evt_1", "audit", &["file"])],
                    failed: vec![failure("evt_1", "orders", later, false)],
                },
            )
            .await
            .unwrap();

        let due = store
            .due_deliveries("file", i64::MAX, 10, vec![])
            .await
            .unwrap();
        assert_eq!(due.len(), 1, "the audit record is queued at once");
        assert_eq!(due[0].record.id, "evt_1:audit");
        assert!(store.due_events(later - 1, 10).await.unwrap().is_empty());
        let again = store.due_events(later, 10).await.unwrap();
        assert_eq!(again.len(), 1, "due again when the order route is");
        assert_eq!(again[0].attempts, 1);
        assert_eq!(again[0].settled, ["evt_1:audit"]);
        assert_eq!(store.depths().await.unwrap().events_pending, 1);
        assert!(
            store
                .dead_letters(Filter::default())
                .await
                .unwrap()
                .is_empty(),
            "a route being retried is no dead letter"
        );

        // Two routes retried: the event is due at the earlier of them.
        store
            .save_routing(
                "evt_1",
                Routing {
                    records: Vec::new(),
                    failed: vec![
                        failure("evt_1", "orders", later + 5_000, false),
                        failure("evt_1", "refunds", later + 1_000, false),
                    ],
                },
            )
            .await
            .unwrap();
        assert!(store.due_events(later + 999, 10).await.unwrap().is_empty());
        let again = store.due_events(later + 1_000, 10).await.unwrap();
        assert_eq!(again[0].attempts, 2);
        assert_eq!(
            count(
                &store,
                "SELECT attempts FROM route_failures WHERE route = 'orders'"
            ),
            2
        );

        // The order record is built at last; `refunds` is no longer
        // routed (a reload removed it): nothing is left to retry.
        store
            .save_routing(
                "evt_1",
                routed(vec![record("evt_1", "orders", &["file", "http"])]),
            )
            .await
            .unwrap();
        assert!(store.due_events(i64::MAX, 10).await.unwrap().is_empty());
        assert_eq!(count(&store, "SELECT COUNT(*) FROM route_failures"), 0);
        assert_eq!(
            store
                .due_deliveries("http", i64::MAX, 10, vec![])
                .await
                .unwrap()[0]
                .record
                .id,
            "evt_1:orders"
        );
    }

    #[tokio::test]
    async fn a_dead_route_is_listed_by_route_and_event_and_replayed() {
        let (_dir, store) = open();
        store.journal(event("evt_1")).await.unwrap();
        let later = now_ms() + 60_000;
        store
            .save_routing(
                "evt_1",
                Routing {
                    records: vec![record("evt_1", "audit", &["file"])],
                    failed: vec![
                        failure("evt_1", "orders", 0, true),
                        failure("evt_1", "refunds", later, false),
                    ],
                },
            )
            .await
            .unwrap();
        let due = store.due_events(later, 10).await.unwrap();
        let mut settled = due[0].settled.clone();
        settled.sort();
        assert_eq!(
            settled,
            ["evt_1:audit", "evt_1:orders"],
            "a dead route is not built again"
        );
        store
            .save_routing("evt_1", routed(vec![record("evt_1", "refunds", &["file"])]))
            .await
            .unwrap();
        assert!(
            store.due_events(i64::MAX, 10).await.unwrap().is_empty(),
            "only a dead route is left: routed"
        );

        let dead = store.dead_letters(Filter::default()).await.unwrap();
        assert_eq!(dead.len(), 1);
        let letter = &dead[0];
        assert_eq!(letter.record_id.as_deref(), Some("evt_1:orders"));
        assert_eq!(letter.event_id, "evt_1");
        assert_eq!(letter.sink, None);
        assert_eq!(letter.route.as_deref(), Some("orders"));
        assert_eq!(letter.attempts, 1);
        assert_eq!(
            letter.last_error.as_deref(),
            Some("orders: session not found")
        );
        assert_eq!(store.depths().await.unwrap().routes_dead, 1);
        let matching = |sink: Option<&str>, route: Option<&str>, event: Option<&str>| Filter {
            sink: sink.map(str::to_owned),
            route: route.map(str::to_owned),
            event: event.map(str::to_owned),
        };
        for (filter, found) in [
            (matching(Some("file"), None, None), 0),
            (matching(None, Some("orders"), None), 1),
            (matching(None, Some("audit"), None), 0),
            (matching(None, None, Some("evt_1")), 1),
            (matching(None, None, Some("evt_2")), 0),
        ] {
            assert_eq!(
                store.dead_letters(filter.clone()).await.unwrap().len(),
                found,
                "{filter:?}"
            );
        }
        assert_eq!(
            store
                .replay(matching(Some("file"), Some("orders"), None))
                .await
                .unwrap(),
            0,
            "a route-level dead letter has no sink"
        );
        assert_eq!(
            store
                .replay(matching(None, Some("orders"), None))
                .await
                .unwrap(),
            1
        );
        assert!(
            store
                .dead_letters(Filter::default())
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(store.depths().await.unwrap().routes_dead, 0);
        let due = store.due_events(now_ms(), 10).await.unwrap();
        assert_eq!(due.len(), 1, "its event is due now");
        assert_eq!((due[0].attempts, due[0].reroute), (0, false));
        let mut settled = due[0].settled.clone();
        settled.sort();
        assert_eq!(settled, ["evt_1:audit", "evt_1:refunds"]);
    }

    #[tokio::test]
    async fn reroute_tries_dead_routes_again() {
        let (_dir, store) = open();
        store.journal(event("evt_1")).await.unwrap();
        store
            .save_routing(
                "evt_1",
                Routing {
                    records: vec![record("evt_1", "audit", &["file"])],
                    failed: vec![failure("evt_1", "orders", 0, true)],
                },
            )
            .await
            .unwrap();
        assert!(store.reroute("evt_1").await.unwrap());
        assert!(
            store
                .dead_letters(Filter::default())
                .await
                .unwrap()
                .is_empty()
        );
        let due = store.due_events(now_ms(), 10).await.unwrap();
        assert!(due[0].reroute);
        assert_eq!(due[0].settled, ["evt_1:audit"]);
    }

    #[tokio::test]
    async fn prune_keeps_a_dead_route_and_its_records_and_then_removes_them() {
        let (_dir, store) = open();
        store.journal(event("evt_1")).await.unwrap();
        store
            .save_routing(
                "evt_1",
                Routing {
                    records: vec![record("evt_1", "audit", &["file"])],
                    failed: vec![failure("evt_1", "orders", 0, true)],
                },
            )
            .await
            .unwrap();
        store
            .settle("evt_1:audit", "file", Settle::Delivered)
            .await
            .unwrap();
        let after = now_ms() + 60_000;
        assert_eq!(
            store.prune(after, 100).await.unwrap(),
            1,
            "only the delivered delivery: a replay must not build the audit record again"
        );
        assert_eq!(
            store.dead_letters(Filter::default()).await.unwrap().len(),
            1
        );
        assert_eq!(count(&store, "SELECT COUNT(*) FROM records"), 1);

        store.replay(Filter::default()).await.unwrap();
        store
            .save_routing("evt_1", routed(vec![record("evt_1", "orders", &["file"])]))
            .await
            .unwrap();
        store
            .settle("evt_1:orders", "file", Settle::Delivered)
            .await
            .unwrap();
        assert_eq!(
            store.prune(after, 100).await.unwrap(),
            4,
            "a delivery, two records, the event"
        );
        for table in ["events", "records", "deliveries", "route_failures"] {
            assert_eq!(
                count(&store, &format!("SELECT COUNT(*) FROM {table}")),
                0,
                "{table}"
            );
        }
    }

    #[tokio::test]
    async fn route_failures_go_with_their_event() {
        let (_dir, store) = open();
        store.journal(event("evt_1")).await.unwrap();
        store
            .save_routing(
                "evt_1",
                Routing {
                    records: Vec::new(),
                    failed: vec![failure("evt_1", "orders", 0, true)],
                },
            )
            .await
            .unwrap();
        let reader = store.reader.lock().unwrap();
        reader.execute("DELETE FROM events", []).unwrap();
        let left: i64 = reader
            .query_row("SELECT COUNT(*) FROM route_failures", [], |row| row.get(0))
            .unwrap();
        assert_eq!(left, 0);
    }

    #[tokio::test]
    async fn a_journal_without_route_failures_upgrades_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.db");
        {
            let store = SqliteStore::open(&path, true, 64 << 20).unwrap();
            store.journal(event("evt_old")).await.unwrap();
            let reader = store.reader.lock().unwrap();
            reader
                .execute_batch("DROP TRIGGER route_failures_follow; DROP TABLE route_failures;")
                .unwrap();
        }
        let store = SqliteStore::open(&path, true, 64 << 20).unwrap();
        store
            .save_routing(
                "evt_old",
                Routing {
                    records: Vec::new(),
                    failed: vec![failure("evt_old", "orders", 0, true)],
                },
            )
            .await
            .unwrap();
        assert_eq!(store.depths().await.unwrap().routes_dead, 1);
    }
}
