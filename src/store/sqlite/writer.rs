//! The single writer thread: every write of the journal goes through it.
//! It batches whatever is waiting into one transaction (group commit, at
//! most [`BATCH`] writes or about a quarter of `store.wal_limit`), commits,
//! and only then answers each write; a failed batch is rolled back and every
//! write in it is refused. The statements themselves are in [`super::writes`].

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::health::{Health, PROBE_EVERY, probe, wrote};
use super::wal::Wal;
use super::writes;
use crate::clock::now_ms;
use crate::store::{CommitObserver, Filter, Journaled, NewEvent, Routing, Settle, StoreError};

/// Writes, each answered once its transaction committed.
pub(super) enum Write {
    Journal(NewEvent, oneshot::Sender<Result<Journaled, StoreError>>),
    Routing(
        String,
        Routing,
        oneshot::Sender<Result<Vec<String>, StoreError>>,
    ),
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

pub(super) fn write_loop(
    mut connection: Connection,
    rx: std::sync::mpsc::Receiver<Write>,
    mut wal: Wal,
    health: &Health,
    observer: Option<&dyn CommitObserver>,
) {
    use std::sync::mpsc::RecvTimeoutError;
    let mut batch = Vec::with_capacity(BATCH);
    let mut probed = std::time::Instant::now();
    loop {
        let first = if health.writes_fail() {
            // Only an event or the probe clears a failure (see `apply`):
            // probe on time even while other writes keep coming.
            if probed.elapsed() >= PROBE_EVERY {
                probed = std::time::Instant::now();
                wrote(health, probe(&connection).map_err(|e| e.to_string()));
                continue;
            }
            match rx.recv_timeout(PROBE_EVERY.saturating_sub(probed.elapsed())) {
                Ok(write) => write,
                Err(RecvTimeoutError::Timeout) => continue,
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
        let (writes, started) = (batch.len(), std::time::Instant::now());
        let ok = apply(&mut connection, &mut batch, health);
        if !ok {
            // The next probe a whole interval after this failure.
            probed = std::time::Instant::now();
        }
        if let Some(observer) = observer {
            observer.committed(writes, started.elapsed(), ok);
        }
        wal.after_commit(&connection);
    }
}

impl Write {
    /// About the bytes this write adds to the log.
    fn bytes(&self) -> u64 {
        let body = match self {
            Write::Journal(event, _) => event.body.len(),
            Write::Routing(_, routing, _) => routing.record_bytes(),
            _ => 0,
        };
        // Small rows and index entries besides.
        body as u64 + 256
    }
}

/// Applies a batch of writes in one transaction, then answers each. If any
/// statement or the commit fails (disk full, I/O error), the transaction is
/// rolled back and every write in the batch is answered with that error:
/// nothing of it is acknowledged. The outcome reaches [`crate::store::Store::health`]
/// before any answer does: a write refused means health says so.
/// True when the transaction committed.
fn apply(connection: &mut Connection, batch: &mut Vec<Write>, health: &Health) -> bool {
    let now = now_ms();
    let mut answers: Answers = Vec::with_capacity(batch.len());
    let mut failure: Option<rusqlite::Error> = None;
    let journals = batch.iter().any(|w| matches!(w, Write::Journal(..)));
    // A rollback that failed after the last batch left its transaction
    // open: end it first, or no batch could begin.
    if !connection.is_autocommit() {
        let _ = run_cached(connection, "ROLLBACK");
    }
    // BEGIN and COMMIT as cached statements: `Connection::transaction`
    // parses both again for every batch.
    match run_cached(connection, "BEGIN") {
        Err(e) => {
            failure = Some(e);
            for write in batch.drain(..) {
                refuse(write, &mut answers);
            }
        }
        Ok(()) => {
            for write in batch.drain(..) {
                if failure.is_some() {
                    refuse(write, &mut answers);
                } else {
                    execute(connection, write, now, &mut answers, &mut failure);
                }
            }
            if failure.is_none()
                && let Err(e) = run_cached(connection, "COMMIT")
            {
                failure = Some(e);
            }
            if failure.is_some() && !connection.is_autocommit() {
                // Nothing of a failed batch stays.
                let _ = run_cached(connection, "ROLLBACK");
            }
        }
    }
    let failure = failure.map(|e| e.to_string());
    // Health says whether an event can be journaled: a failure of any
    // write says it cannot, but only a committed event (or the probe) says
    // it can again. A delivered settle is one small UPDATE that may still
    // fit on a nearly full disk where an event's body does not.
    if failure.is_some() || journals {
        wrote(health, failure.clone().map_or(Ok(()), Err));
    }
    for answer in answers {
        answer(failure.as_deref());
    }
    failure.is_none()
}

fn run_cached(connection: &Connection, sql: &str) -> Result<(), rusqlite::Error> {
    connection.prepare_cached(sql)?.execute([]).map(drop)
}

type Answers = Vec<Box<dyn FnOnce(Option<&str>)>>;

/// Runs one write's statements; its answer waits for the commit.
fn execute(
    tx: &Connection,
    write: Write,
    now: i64,
    answers: &mut Answers,
    failure: &mut Option<rusqlite::Error>,
) {
    match write {
        Write::Journal(event, reply) => {
            run(answers, failure, reply, || writes::journal(tx, &event, now));
        }
        Write::Routing(event_id, routing, reply) => run(answers, failure, reply, || {
            writes::save_routing(tx, &event_id, &routing, now)
        }),
        Write::EventFailed {
            id,
            error,
            next,
            dead,
            reply,
        } => run(answers, failure, reply, || {
            writes::event_failed(tx, &id, &error, next, dead, now)
        }),
        Write::Settle(record_id, sink, outcome, reply) => run(answers, failure, reply, || {
            writes::settle(tx, &record_id, &sink, outcome, now)
        }),
        Write::Replay(filter, reply) => {
            run(answers, failure, reply, || writes::replay(tx, &filter, now));
        }
        Write::Reroute(event_id, reply) => {
            run(answers, failure, reply, || {
                writes::reroute(tx, &event_id, now)
            });
        }
        Write::Prune(before, limit, reply) => {
            run(answers, failure, reply, || writes::prune(tx, before, limit));
        }
    }
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
        Write::Routing(_, _, reply) => run(answers, &mut skip, reply, || Ok(Vec::new())),
        Write::EventFailed { reply, .. } | Write::Settle(_, _, _, reply) => {
            run(answers, &mut skip, reply, || Ok(()));
        }
        Write::Replay(_, reply) | Write::Prune(_, _, reply) => {
            run(answers, &mut skip, reply, || Ok(0));
        }
        Write::Reroute(_, reply) => run(answers, &mut skip, reply, || Ok(false)),
    }
}
