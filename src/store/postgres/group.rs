//! Group commit for calls that many tasks make at once (`journal`,
//! `save_routing`, `settle`): each call queues a job and waits for its
//! answer; a collector takes what is waiting (at most `max` jobs, and at
//! most [`BATCH_BYTES`] of bodies) and hands it to one transaction. A lone
//! job goes out at once, never waiting for company; batches form by
//! themselves under concurrency, while `in_flight` batches are committing
//! (each on its own pooled connection) and arrivals gather for the next
//! one.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::store::{StoreError, StoreFuture};

/// What a caller awaits after queueing its job: the answer its batch sends,
/// or `Stopped` when the collector is gone.
pub(super) fn answer<J, T: Send + 'static>(
    sent: Result<(), mpsc::error::SendError<J>>,
    answer: oneshot::Receiver<Result<T, StoreError>>,
) -> StoreFuture<'static, T> {
    let sent = sent.map_err(|_| StoreError::Stopped);
    Box::pin(async move {
        sent?;
        answer.await.map_err(|_| StoreError::Stopped)?
    })
}

/// Tries of a batch that lost a deadlock (or a serialization conflict) to
/// another replica's.
pub(super) const DEADLOCK_TRIES: usize = 3;

/// Whether `e` is a deadlock or serialization conflict, which the same
/// transaction may pass when tried again.
pub(super) fn lost_a_conflict(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE
    )
}

/// The error a batch that failed answers each of its callers: the same
/// `Unavailable` (a 503 at the door), any other failure as a write error.
pub(super) fn error_for_each(e: &StoreError) -> StoreError {
    match e {
        StoreError::Unavailable { url, reason } => StoreError::Unavailable {
            url: url.clone(),
            reason: reason.clone(),
        },
        other => StoreError::Write(other.to_string()),
    }
}

/// One batch's write: it hands the jobs back with the outcome.
pub(super) type Written<'s, J, T> =
    Pin<Box<dyn Future<Output = (Vec<J>, Result<T, StoreError>)> + Send + 's>>;

/// Writes `batch` with `write` and answers its jobs with `answer`. A batch
/// that failed for another reason than the database being down is written
/// again one job at a time: whatever failed may be one job's own (a row the
/// database refuses), and it then fails no other. `what` names the write
/// in the log.
pub(super) async fn write_or_each<'s, J, T>(
    batch: Vec<J>,
    what: &'static str,
    write: impl Fn(Vec<J>) -> Written<'s, J, T>,
    answer: impl Fn(Vec<J>, Result<T, StoreError>),
) {
    match write(batch).await {
        (batch, Err(e)) if batch.len() > 1 && !e.is_unavailable() => {
            tracing::warn!(error = %e, calls = batch.len(), "{what} transaction failed, writing its calls one by one");
            for job in batch {
                let (job, outcome) = write(vec![job]).await;
                answer(job, outcome);
            }
        }
        (batch, outcome) => answer(batch, outcome),
    }
}

/// The most bytes of bodies (events' or records') one batch takes; a job
/// bigger than this goes alone. A pooled connection keeps the buffer of
/// the largest statement it ever sent (the driver grows it and does not
/// give it back), so this, not `server.body_buffer`, bounds what each of
/// `store.pool_size` connections holds: about this plus one body.
pub(super) const BATCH_BYTES: usize = 1 << 20;

/// What a job adds to its batch's statement, about: its bodies' bytes.
pub(super) trait Weigh {
    fn bytes(&self) -> usize;
}

/// Starts a collector that runs `commit` on each batch; it stops with
/// `stop` (jobs then see their sender dropped).
pub(super) fn start<J, F, Fut>(
    max: usize,
    in_flight: usize,
    stop: CancellationToken,
    commit: F,
) -> mpsc::UnboundedSender<J>
where
    J: Weigh + Send + 'static,
    F: Fn(Vec<J>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (tx, mut rx) = mpsc::unbounded_channel::<J>();
    tokio::spawn(async move {
        let permits = Arc::new(Semaphore::new(in_flight));
        // A job taken that would have carried its batch past
        // `BATCH_BYTES`: the first of the next batch.
        let mut next: Option<J> = None;
        loop {
            // A permit first: while every batch is committing, arrivals
            // gather into the next one.
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let first = match next.take() {
                Some(job) => job,
                None => tokio::select! {
                    () = stop.cancelled() => return,
                    job = rx.recv() => match job {
                        Some(job) => job,
                        None => return,
                    },
                },
            };
            let mut bytes = first.bytes();
            let mut batch = vec![first];
            while batch.len() < max && bytes < BATCH_BYTES {
                match rx.try_recv() {
                    Ok(job) if bytes + job.bytes() > BATCH_BYTES => {
                        next = Some(job);
                        break;
                    }
                    Ok(job) => {
                        bytes += job.bytes();
                        batch.push(job);
                    }
                    Err(_) => break,
                }
            }
            let work = commit(batch);
            tokio::spawn(async move {
                work.await;
                drop(permit);
            });
        }
    });
    tx
}

#[cfg(test)]
#[path = "group_tests.rs"]
mod tests;
