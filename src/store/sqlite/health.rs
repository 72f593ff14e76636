//! Whether the journal takes writes: the probe (one small real write),
//! the writer's and the checkpoint thread's troubles, logged when they begin
//! and end, and the reason [`Store::health`](crate::store::Store::health)
//! gives.

use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, params};

use crate::clock::now_ms;

/// While writes fail (a full disk, a read-only or failing volume), how often
/// the writer tries a small write of its own, so that health comes back as
/// soon as the journal takes writes again, even if no event arrives.
pub(super) const PROBE_EVERY: Duration = Duration::from_secs(1);

/// A small real write: one row rewritten, committed.
pub(super) fn probe(connection: &Connection) -> Result<(), rusqlite::Error> {
    connection
        .prepare_cached("INSERT OR REPLACE INTO probe (id, at) VALUES (1, ?1)")?
        .execute(params![now_ms()])?;
    Ok(())
}

pub(super) fn is_full(e: &rusqlite::Error) -> bool {
    e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull)
}

/// Why the journal does not take writes now, as its threads last saw it.
#[derive(Debug, Default)]
pub(super) struct Health {
    /// The writer's: the last transaction (or probe) failed.
    pub(super) write: Mutex<Trouble>,
    /// The checkpoint thread's: the log can neither be copied into the
    /// database nor start over, so it grows.
    pub(super) checkpoint: Mutex<Trouble>,
}

impl Health {
    pub(super) fn reason(&self) -> Option<String> {
        let lock = |m: &Mutex<Trouble>| m.lock().unwrap_or_else(|e| e.into_inner()).reason();
        if let Some(reason) = lock(&self.write) {
            return Some(format!("writes fail: {reason}"));
        }
        lock(&self.checkpoint).map(|reason| format!("checkpoints fail, so its log grows: {reason}"))
    }

    pub(super) fn writes_fail(&self) -> bool {
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
pub(super) struct Trouble {
    /// Why, since when, and how many attempts failed.
    failing: Option<(String, std::time::Instant, u64)>,
}

impl Trouble {
    fn reason(&self) -> Option<String> {
        self.failing.as_ref().map(|(reason, _, _)| reason.clone())
    }

    /// One failed attempt; true when it begins the trouble or changes its
    /// reason, so worth a log line.
    pub(super) fn fail(&mut self, reason: String) -> bool {
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
    pub(super) fn clear(&mut self) -> Option<(u64, Duration)> {
        self.failing
            .take()
            .map(|(_, since, attempts)| (attempts, since.elapsed()))
    }
}

/// Records a commit's outcome for [`crate::store::Store::health`], logging only when
/// writes begin to fail and when they succeed again.
pub(super) fn wrote(health: &Health, outcome: Result<(), String>) {
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
