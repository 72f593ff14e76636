//! The [`Store`] on an embedded SQLite database in WAL mode.
//!
//! All writes go through one writer thread (`writer`) that batches
//! whatever is waiting into a single transaction (group commit): with 32
//! concurrent requests, one fsync covers many events, so durability does
//! not cost throughput. Reads (`reads`, and `browse` for the admin API)
//! use their own connection, which WAL lets run beside the writer. A
//! checkpoint thread keeps the log within `store.wal_limit` (`wal`);
//! `health` says whether the journal takes writes; `lock` keeps a second
//! `serve` off the journal. This file opens the journal (private files and
//! folders) and hands each [`Store`] call to
//! its thread.

mod browse;
mod health;
pub mod lock;
pub mod migrate;
mod reads;
mod schema;
pub mod state;
mod wal;
mod writer;
mod writes;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rusqlite::Connection;
use tokio::sync::oneshot;

use self::health::{Health, is_full, probe};
use self::wal::{Wal, checkpoint_loop};
use self::writer::{Write, write_loop};
use crate::store::{
    CommitObserver, DeadLetter, DeadLetterPage, DeadLetterQuery, Depths, EventDetail, EventPage,
    EventQuery, Filter, Journaled, NewEvent, PendingDelivery, PendingEvent, Routing, Settle, Store,
    StoreError, StoreFuture,
};

/// How long a connection waits for a lock another one holds (a CLI
/// `replay`, the writer's checkpoint) before its statement fails.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// Page caches (`PRAGMA cache_size`, in KiB; SQLite's default is 2000 for
/// each connection). A cache fills up to its size and stays that size for
/// the life of the process, so it is a fixed part of the router's memory.
/// The writer's keeps the pages commits touch again and again (the ends of
/// the tables, the inner pages of the indexes): in the benchmark's orders
/// scenario 1 MiB costs about one more read of a page from the OS's cache
/// per twenty events than 2 MiB. The reader's is emptied whenever a read
/// begins after a commit (WAL), so it never holds more than a query's pages;
/// the checkpointer copies the log into the database without it.
const WRITER_CACHE_KIB: u32 = 1024;
const READER_CACHE_KIB: u32 = 256;
const CHECKPOINTER_CACHE_KIB: u32 = 64;

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
        SqliteStore::open_observed(path, fsync, wal_limit, None)
    }

    /// [`SqliteStore::open`], telling `observer` about every transaction.
    pub fn open_observed(
        path: &Path,
        fsync: bool,
        wal_limit: u64,
        observer: Option<Arc<dyn CommitObserver>>,
    ) -> Result<SqliteStore, StoreError> {
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
             PRAGMA journal_size_limit = {wal_limit}; PRAGMA cache_size = -{WRITER_CACHE_KIB};",
            if fsync { "FULL" } else { "OFF" },
        ))?;
        migrate::migrate(&mut writer, &path.display().to_string())?;
        // Every statement of the writer stays prepared (the hot path's,
        // BEGIN and COMMIT, replay's and pruning's): more than the default 16.
        writer.set_prepared_statement_cache_capacity(64);
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
        let reader = connect(&format!("PRAGMA cache_size = -{READER_CACHE_KIB};"))?;
        let checkpointer = connect(&format!("PRAGMA cache_size = -{CHECKPOINTER_CACHE_KIB};"))?;

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
            Box::new(move || write_loop(writer, rx, wal, &writer_health, observer.as_deref())),
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

    /// Brings the journal at `path` (created if missing) to this binary's
    /// schema version: `stripe-router store migrate`. The version before
    /// and after.
    pub fn migrate(path: &Path) -> Result<(u32, u32), StoreError> {
        create_private(path)?;
        let open_err = |source| StoreError::Open {
            path: path.display().to_string(),
            source,
        };
        let mut connection = Connection::open(path).map_err(open_err)?;
        connection.busy_timeout(LOCK_WAIT).map_err(open_err)?;
        migrate::migrate(&mut connection, &path.display().to_string())
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

impl Store for SqliteStore {
    fn journal(&self, event: NewEvent) -> StoreFuture<'_, Journaled> {
        self.write(|reply| Write::Journal(event, reply))
    }

    fn due_events_within(
        &self,
        now_ms: i64,
        limit: usize,
        max_bytes: usize,
    ) -> StoreFuture<'_, Vec<PendingEvent>> {
        self.read(move |c| reads::due_events(c, now_ms, limit, max_bytes))
    }

    fn record_body(&self, record_id: &str) -> StoreFuture<'_, Bytes> {
        let record_id = record_id.to_owned();
        self.read(move |c| reads::record_body(c, &record_id))
    }

    fn save_routing(&self, event_id: &str, routing: Routing) -> StoreFuture<'_, Vec<String>> {
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
        self.read(move |c| reads::due_deliveries(c, &sink, now_ms, limit, &busy))
    }

    fn settle(&self, record_id: &str, sink: &str, outcome: Settle) -> StoreFuture<'_, ()> {
        let (record_id, sink) = (record_id.to_owned(), sink.to_owned());
        self.write(|reply| Write::Settle(record_id, sink, outcome, reply))
    }

    fn dead_letters(&self, filter: Filter) -> StoreFuture<'_, Vec<DeadLetter>> {
        self.read(move |c| reads::dead_letters(c, &filter))
    }

    fn replay(&self, filter: Filter) -> StoreFuture<'_, u64> {
        self.write(|reply| Write::Replay(filter, reply))
    }

    fn reroute(&self, event_id: &str) -> StoreFuture<'_, bool> {
        let event_id = event_id.to_owned();
        self.write(|reply| Write::Reroute(event_id, reply))
    }

    fn depths(&self) -> StoreFuture<'_, Depths> {
        self.read(reads::depths)
    }

    fn events(&self, query: EventQuery) -> StoreFuture<'_, EventPage> {
        self.read(move |c| browse::events(c, &query))
    }

    fn event(&self, event_id: &str) -> StoreFuture<'_, Option<EventDetail>> {
        let event_id = event_id.to_owned();
        self.read(move |c| browse::event(c, &event_id))
    }

    fn dead_letter_page(&self, query: DeadLetterQuery) -> StoreFuture<'_, DeadLetterPage> {
        self.read(move |c| browse::dead_letter_page(c, &query))
    }

    fn health(&self) -> StoreFuture<'_, ()> {
        let reason = self.health.reason();
        Box::pin(async move { reason.map_or(Ok(()), |r| Err(StoreError::Unhealthy(r))) })
    }

    fn prune(&self, before_ms: i64, limit: usize) -> StoreFuture<'_, u64> {
        self.write(|reply| Write::Prune(before_ms, limit, reply))
    }
}
