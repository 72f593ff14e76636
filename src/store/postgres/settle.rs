//! Group commit of settles: the outcomes of delivery attempts that finish
//! at once go to the database in one transaction, one statement per
//! round (`UPDATE deliveries ... FROM unnest(...)`), instead of one
//! transaction each. Each settle keeps its own rule: only a pending row is
//! settled; a failed attempt is kept with the newest [`ATTEMPTS_KEPT`]
//! before it, and a delivered one is told by the row itself (its state and
//! `updated_at`, as on SQLite), so the hot path writes one row. A (record, sink) settled twice in one batch goes in a later round
//! of the same transaction, so the second sees the first as the
//! one-by-one statements would.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};
use tokio_postgres::types::ToSql;
use tokio_util::sync::CancellationToken;

use super::Shared;
use crate::store::{ATTEMPTS_KEPT, Settle, StoreError, StoreFuture};

/// The most settles one transaction takes.
const BATCH: usize = 512;
/// The most batches committing at once.
const IN_FLIGHT: usize = 2;

#[cfg(test)]
#[path = "settle_tests.rs"]
mod tests;

/// One `settle` call waiting for its commit.
pub(super) struct Job {
    record_id: String,
    sink: String,
    outcome: Settle,
    at_ms: i64,
    reply: oneshot::Sender<Result<(), StoreError>>,
}

impl super::group::Weigh for Job {
    /// A settle has no body; a failed attempt carries the sink's error.
    fn bytes(&self) -> usize {
        match &self.outcome {
            Settle::Delivered => 0,
            Settle::Retry { error, .. } | Settle::Dead { error } => error.len(),
        }
    }
}

/// Queues a settle; the future answers once its batch committed (or
/// failed: then none of the batch was kept).
pub(super) fn submit(
    jobs: &mpsc::UnboundedSender<Job>,
    record_id: String,
    sink: String,
    outcome: Settle,
) -> StoreFuture<'static, ()> {
    let (reply, answer) = oneshot::channel();
    // Bounded by its producers: each delivery worker waits for its answer.
    let sent = jobs.send(Job {
        record_id,
        sink,
        outcome,
        at_ms: crate::clock::now_ms(),
        reply,
    });
    super::group::answer(sent, answer)
}

/// Starts the collector; it stops with `stop`.
pub(super) fn start(shared: Arc<Shared>, stop: CancellationToken) -> mpsc::UnboundedSender<Job> {
    super::group::start(BATCH, IN_FLIGHT, stop, move |batch| {
        let shared = shared.clone();
        async move { commit(&shared, batch).await }
    })
}

/// Writes one batch and answers each job.
async fn commit(shared: &Shared, batch: Vec<Job>) {
    // A sink's error text is the consumer's to say: a batch that fails may
    // fail for one settle's own, and is then written settle by settle.
    let write = |jobs: Vec<Job>| -> super::group::Written<'_, Job, ()> {
        Box::pin(async move {
            let outcome = attempt(shared, &jobs).await;
            (jobs, outcome)
        })
    };
    super::group::write_or_each(batch, "settle", write, answer).await;
}

/// One transaction for `batch`, tried again when it lost a deadlock.
async fn attempt(shared: &Shared, batch: &[Job]) -> Result<(), StoreError> {
    let started = Instant::now();
    let rounds = rounds(batch);
    let outcome = async {
        let mut client = shared.client().await?;
        let mut outcome = write(&mut client, &rounds).await;
        for _ in 1..super::group::DEADLOCK_TRIES {
            match &outcome {
                Err(e) if super::group::lost_a_conflict(e) => {
                    outcome = write(&mut client, &rounds).await;
                }
                _ => break,
            }
        }
        outcome.map_err(|e| shared.error(&e))
    }
    .await;
    shared.committed(batch.len(), started, outcome.is_ok());
    outcome
}

/// Answers each job of a batch with its outcome.
fn answer(batch: Vec<Job>, outcome: Result<(), StoreError>) {
    match outcome {
        Ok(()) => {
            for job in batch {
                let _ = job.reply.send(Ok(()));
            }
        }
        Err(e) => {
            if !e.is_unavailable() {
                tracing::error!(error = %e, settles = batch.len(), "settle transaction failed");
            }
            for job in batch {
                let _ = job.reply.send(Err(super::group::error_for_each(&e)));
            }
        }
    }
}

/// One statement's columns: settles of distinct (record, sink) pairs, in
/// key order so that concurrent batches meet rows in one order.
#[derive(Default)]
struct Round<'a> {
    records: Vec<&'a str>,
    sinks: Vec<&'a str>,
    states: Vec<i32>,
    next: Vec<i64>,
    errors: Vec<Option<&'a str>>,
    at: Vec<i64>,
}

/// Splits a batch into rounds with each (record, sink) at most once: the
/// n-th settle of a pair in the batch goes in round n, so a pair's settles
/// keep the calls' order.
fn rounds(batch: &[Job]) -> Vec<Round<'_>> {
    let mut seen: HashMap<(&str, &str), usize> = HashMap::new();
    let mut jobs: Vec<(usize, &Job)> = batch
        .iter()
        .map(|job| {
            let count = seen
                .entry((job.record_id.as_str(), job.sink.as_str()))
                .or_insert(0);
            *count += 1;
            (*count - 1, job)
        })
        .collect();
    jobs.sort_by(|(ra, a), (rb, b)| (ra, &a.record_id, &a.sink).cmp(&(rb, &b.record_id, &b.sink)));
    let mut rounds: Vec<Round<'_>> = Vec::new();
    for (r, job) in jobs {
        if rounds.len() <= r {
            rounds.resize_with(r + 1, Round::default);
        }
        let (state, next, error): (i32, i64, Option<&str>) = match &job.outcome {
            Settle::Delivered => (1, 0, None),
            Settle::Retry {
                next_attempt_ms,
                error,
            } => (0, *next_attempt_ms, Some(error)),
            Settle::Dead { error } => (2, 0, Some(error)),
        };
        let round = &mut rounds[r];
        round.records.push(&job.record_id);
        round.sinks.push(&job.sink);
        round.states.push(state);
        round.next.push(next);
        round.errors.push(error);
        round.at.push(job.at_ms);
    }
    rounds
}

/// The statement of one round. Only a pending row is settled (an attempt
/// that overlapped another of the same row cannot bring a delivered or
/// dead row back). Only a failed attempt gets a row (state 1 is
/// delivered). The statement's parts see one snapshot: the attempt
/// inserted here is not among those the DELETE counts, hence KEPT - 1
/// older ones stay.
const SETTLE: &str = "WITH input AS (
        SELECT * FROM unnest($1::TEXT[], $2::TEXT[], $3::INTEGER[], $4::BIGINT[], $5::TEXT[],
                             $6::BIGINT[]) AS u(r, s, st, nx, er, at)
     ), settled AS (
        UPDATE deliveries d SET state = i.st, attempts = d.attempts + 1, next_attempt_at = i.nx,
        last_error = COALESCE(i.er, d.last_error), updated_at = i.at, lease_until = 0,
        lease_owner = NULL
        FROM input i WHERE d.record_id = i.r AND d.sink = i.s AND d.state = 0
        RETURNING d.record_id, d.sink, i.st, i.er, i.at
     ), failed AS (
        SELECT * FROM settled WHERE st <> 1
     ), attempt AS (
        INSERT INTO delivery_attempts (record_id, sink, at, outcome, error)
        SELECT record_id, sink, at, st, er FROM failed
     )
     DELETE FROM delivery_attempts a USING failed s
     WHERE a.record_id = s.record_id AND a.sink = s.sink
     AND a.id <= (SELECT x.id FROM delivery_attempts x
                  WHERE x.record_id = s.record_id AND x.sink = s.sink
                  ORDER BY x.id DESC LIMIT 1 OFFSET $7)";

/// One transaction for every round; one round alone is one statement.
async fn write(
    client: &mut deadpool_postgres::Client,
    rounds: &[Round<'_>],
) -> Result<(), tokio_postgres::Error> {
    let older = i64::try_from(ATTEMPTS_KEPT.saturating_sub(1)).unwrap_or(0);
    let statement = client.prepare_cached(SETTLE).await?;
    if let [round] = rounds {
        client.execute(&statement, &params(round, &older)).await?;
        return Ok(());
    }
    let tx = client.transaction().await?;
    for round in rounds {
        tx.execute(&statement, &params(round, &older)).await?;
    }
    tx.commit().await
}

fn params<'r>(round: &'r Round<'_>, older: &'r i64) -> [&'r (dyn ToSql + Sync); 7] {
    [
        &round.records,
        &round.sinks,
        &round.states,
        &round.next,
        &round.errors,
        &round.at,
        older,
    ]
}
