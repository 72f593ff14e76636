//! The bound on the write-ahead log (`store.wal_limit`): what the writer
//! and the checkpoint thread know of the log's size, the writer's restart
//! of the log between two commits, and the checkpoint thread.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, wal::CheckpointMode};

use super::LOCK_WAIT;
use super::health::Health;

/// How long the writer's own checkpoint waits for readers to be done with
/// the log. The router's reads take milliseconds; past this the writer goes
/// on committing and tries again a little later, rather than stall every
/// request behind a slow reader.
const RESTART_WAIT: Duration = Duration::from_millis(200);

/// How often checkpoints copy the log into the database, off the commit
/// path.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);

/// Bytes SQLite adds to each page it appends to the log.
const FRAME_HEADER: u64 = 24;

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
pub(super) struct Wal {
    pub(super) log: Arc<Log>,
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
    pub(super) batch_bytes: u64,
    /// The log is past the limit (a reader outside the router holds it).
    over: bool,
}

/// What the writer and the checkpoint thread know of the log, in frames.
#[derive(Debug, Default)]
pub(super) struct Log {
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
    pub(super) fn watch(connection: &mut Connection, limit: u64) -> Result<Wal, rusqlite::Error> {
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
    pub(super) fn after_commit(&mut self, connection: &Connection) {
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
pub(super) fn checkpoint_loop(
    connection: Connection,
    alive: std::sync::Weak<()>,
    log: &Log,
    health: &Health,
) {
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
