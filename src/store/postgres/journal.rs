//! Group commit of the journal: every `journal` call waits here until its
//! event's row is committed. A collector takes what is waiting (at most
//! [`BATCH`] events) and writes it in one transaction with one multi-row
//! `INSERT ... ON CONFLICT (id) DO NOTHING RETURNING id`: each caller learns
//! whether its id is new. Up to [`IN_FLIGHT`] batches commit at once (each
//! on its own pooled connection), so a commit's round trips do not hold
//! the next batch back. The unique index decides between replicas: a
//! replica inserting an id another one has not yet committed waits for
//! that commit, then finds a duplicate. Ids are sorted in each batch so
//! that two replicas' batches lock ids in the same order, never deadlock.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::Shared;
use crate::store::{Journaled, NewEvent, StoreError, StoreFuture};

/// The most events one transaction takes.
const BATCH: usize = 512;
/// The most batches committing at once: two keep one committing while the
/// next fills; more make smaller batches, and more server CPU per event.
const IN_FLIGHT: usize = 2;

/// One `journal` call waiting for its commit.
pub(super) struct Job {
    event: NewEvent,
    reply: oneshot::Sender<Result<Journaled, StoreError>>,
}

impl super::group::Weigh for Job {
    fn bytes(&self) -> usize {
        self.event.body.len()
    }
}

/// Queues `event`; the future answers once its batch committed (or failed:
/// then nothing of the batch is acknowledged).
pub(super) fn submit(
    jobs: &mpsc::UnboundedSender<Job>,
    event: NewEvent,
) -> StoreFuture<'static, Journaled> {
    let (reply, answer) = oneshot::channel();
    // Unbounded, yet bounded by its producers: each caller waits for its
    // answer, and callers are bounded by `server.max_connections`.
    let sent = jobs.send(Job { event, reply });
    super::group::answer(sent, answer)
}

/// Starts the collector; it stops with `stop`.
pub(super) fn start(shared: Arc<Shared>, stop: CancellationToken) -> mpsc::UnboundedSender<Job> {
    super::group::start(BATCH, IN_FLIGHT, stop, move |batch| {
        let shared = shared.clone();
        async move { commit(&shared, batch).await }
    })
}

/// Writes one batch and answers each job; see [`super::group::write_or_each`].
async fn commit(shared: &Shared, batch: Vec<Job>) {
    let write = |jobs: Vec<Job>| -> super::group::Written<'_, Job, HashSet<String>> {
        Box::pin(async move {
            let started = Instant::now();
            let outcome = insert(shared, &jobs).await;
            shared.committed(jobs.len(), started, outcome.is_ok());
            (jobs, outcome)
        })
    };
    super::group::write_or_each(batch, "journal", write, answer).await;
}

/// Answers each job of a batch with its outcome.
fn answer(batch: Vec<Job>, outcome: Result<HashSet<String>, StoreError>) {
    match outcome {
        Ok(inserted) => {
            // An id twice in one batch: the first caller's is new.
            let mut answered: HashSet<&str> = HashSet::new();
            let mut answers = Vec::with_capacity(batch.len());
            for job in &batch {
                let new = inserted.contains(job.event.id.as_str())
                    && answered.insert(job.event.id.as_str());
                answers.push(if new {
                    Journaled::Inserted
                } else {
                    Journaled::Duplicate
                });
            }
            for (job, answer) in batch.into_iter().zip(answers) {
                let _ = job.reply.send(Ok(answer));
            }
        }
        Err(e) => {
            if !e.is_unavailable() {
                tracing::error!(error = %e, events = batch.len(), "journal transaction failed");
            }
            for job in batch {
                let _ = job.reply.send(Err(super::group::error_for_each(&e)));
            }
        }
    }
}

/// One statement (its own transaction): the ids it inserted.
async fn insert(shared: &Shared, batch: &[Job]) -> Result<HashSet<String>, StoreError> {
    let mut events: Vec<&NewEvent> = batch.iter().map(|job| &job.event).collect();
    events.sort_by(|a, b| a.id.cmp(&b.id));
    events.dedup_by(|a, b| a.id == b.id);
    let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    let received: Vec<i64> = events.iter().map(|e| e.received_at_ms).collect();
    // 0: due (EventState::Due), 1: routed (no route wants it).
    let states: Vec<i32> = events.iter().map(|e| i32::from(e.routed)).collect();
    // Leased to this replica (queued for its router), or due at once.
    let leased: Vec<bool> = events.iter().map(|e| e.leased && !e.routed).collect();
    let bodies: Vec<&[u8]> = events.iter().map(|e| &e.body[..]).collect();
    let now = crate::clock::now_ms();
    let client = shared.client().await?;
    let run = async {
        // One statement is one transaction: no BEGIN and COMMIT round
        // trips around it.
        let statement = client
            .prepare_cached(
                "INSERT INTO events
                 (id, type, received_at, state, next_attempt_at, updated_at, lease_until,
                  lease_owner, body)
                 SELECT i, t, r, s, CASE WHEN l THEN r + $6::BIGINT ELSE r END, $7::BIGINT,
                   CASE WHEN l THEN (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT + $6
                        ELSE 0 END,
                   CASE WHEN l THEN $8::TEXT END, b
                 FROM unnest($1::TEXT[], $2::TEXT[], $3::BIGINT[], $4::INTEGER[], $5::BYTEA[],
                   $9::BOOLEAN[])
                   WITH ORDINALITY AS u(i, t, r, s, b, l, n)
                 ORDER BY n
                 ON CONFLICT (id) DO NOTHING RETURNING id",
            )
            .await?;
        let rows = client
            .query(
                &statement,
                &[
                    &ids,
                    &kinds,
                    &received,
                    &states,
                    &bodies,
                    &shared.lease_ms,
                    &now,
                    &shared.owner,
                    &leased,
                ],
            )
            .await?;
        Ok::<_, tokio_postgres::Error>(rows)
    };
    let rows = run.await.map_err(|e| shared.error(&e))?;
    Ok(rows
        .into_iter()
        .map(|row| row.get::<_, String>(0))
        .collect())
}
