//! Group commit of routing passes: passes that finish at once share one
//! transaction, as journal writes and settles do. The common pass — every
//! route built, none failed — joins the group: the records and deliveries
//! of all of them go in one statement, their cleared failures in one, the
//! events' state in one, then one `COMMIT`, all pipelined. A pass with
//! failed routes, or one whose event or record ids are already in the
//! group, runs after the group in its own transaction (the latter as a
//! group of one, the former through [`writes::save_routing`]), with the
//! same rules. Each pass answers the
//! record ids it stored first, in its own order. A group that fails keeps
//! nothing: with the database unavailable each pass answers the error
//! (its event stays due); otherwise its passes are written one by one, so
//! that a failure one pass causes is its own.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};
use tokio_postgres::types::ToSql;
use tokio_util::sync::CancellationToken;

use super::{Shared, writes};
use crate::clock::now_ms;
use crate::store::{Routing, StoreError, StoreFuture};

/// The most passes one transaction takes.
const BATCH: usize = 128;
/// The most groups committing at once.
const IN_FLIGHT: usize = 2;

/// One `save_routing` call waiting for its commit.
pub(super) struct Job {
    event_id: String,
    routing: Routing,
    reply: oneshot::Sender<Result<Vec<String>, StoreError>>,
}

impl super::group::Weigh for Job {
    fn bytes(&self) -> usize {
        self.routing.record_bytes()
    }
}

/// Queues a pass; the future answers once it committed.
pub(super) fn submit(
    jobs: &mpsc::UnboundedSender<Job>,
    event_id: String,
    routing: Routing,
) -> StoreFuture<'static, Vec<String>> {
    let (reply, answer) = oneshot::channel();
    // Unbounded, yet bounded by its producers: each router task waits for
    // its answer.
    let sent = jobs.send(Job {
        event_id,
        routing,
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

/// Splits a batch into the passes that go together (no failed route; an
/// event and record ids no earlier pass of the group has) and the rest,
/// each in arrival order.
fn split(batch: Vec<Job>) -> (Vec<Job>, Vec<Job>) {
    let mut events: HashSet<String> = HashSet::new();
    let mut records: HashSet<String> = HashSet::new();
    let (mut group, mut alone) = (Vec::new(), Vec::new());
    for job in batch {
        let fits = job.routing.failed.is_empty()
            && !events.contains(&job.event_id)
            && job
                .routing
                .records
                .iter()
                .all(|r| !records.contains(&r.record.id));
        if fits {
            events.insert(job.event_id.clone());
            records.extend(job.routing.records.iter().map(|r| r.record.id.clone()));
            group.push(job);
        } else {
            alone.push(job);
        }
    }
    (group, alone)
}

async fn commit(shared: &Shared, batch: Vec<Job>) {
    let (group, mut alone) = split(batch);
    if !group.is_empty() {
        let started = Instant::now();
        let outcome = async {
            let client = shared.client().await?;
            let mut outcome = together(shared, &client, &group).await;
            for _ in 1..super::group::DEADLOCK_TRIES {
                match &outcome {
                    Err(e) if super::group::lost_a_conflict(e) => {
                        outcome = together(shared, &client, &group).await;
                    }
                    _ => break,
                }
            }
            outcome.map_err(|e| shared.error(&e))
        }
        .await;
        shared.committed(group.len(), started, outcome.is_ok());
        match outcome {
            Ok(mut fresh) => {
                for job in group {
                    let stored = stored_of(&job.routing, &mut fresh);
                    let _ = job.reply.send(Ok(stored));
                }
            }
            Err(e) if e.is_unavailable() => {
                for job in group {
                    let _ = job.reply.send(Err(super::group::error_for_each(&e)));
                }
            }
            // Whatever failed may be one pass's own: each goes alone, so
            // that it fails no other.
            Err(e) => {
                tracing::warn!(error = %e, passes = group.len(), "routing transaction failed, writing its passes one by one");
                alone.splice(0..0, group);
            }
        }
    }
    for job in alone {
        let started = Instant::now();
        let outcome = async {
            let client = shared.client().await?;
            let done = if job.routing.failed.is_empty() {
                together(shared, &client, std::slice::from_ref(&job))
                    .await
                    .map(|mut fresh| stored_of(&job.routing, &mut fresh))
            } else {
                writes::save_routing(shared, &client, &job.event_id, &job.routing).await
            };
            done.map_err(|e| shared.error(&e))
        }
        .await;
        shared.committed(1, started, outcome.is_ok());
        let _ = job.reply.send(outcome);
    }
}

/// The record ids of `routing` the group inserted, in the pass's order,
/// each once.
pub(super) fn stored_of(routing: &Routing, fresh: &mut HashSet<String>) -> Vec<String> {
    routing
        .records
        .iter()
        .filter_map(|r| fresh.take(&r.record.id))
        .collect()
}

/// Records of every pass and their deliveries in one statement: only
/// records inserted now (fresh ids) get deliveries; answers the fresh ids.
pub(super) const RECORDS: &str = concat!(
    "WITH fresh AS (
        INSERT INTO records (id, event_id, route, body, created_at)
        SELECT i, e, r, b, $5::BIGINT
        FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::BYTEA[])
          WITH ORDINALITY AS u(i, e, r, b, n)
        ORDER BY n
        ON CONFLICT (id) DO NOTHING RETURNING id
     ), delivery AS (
        INSERT INTO deliveries
        (record_id, sink, route, event_id, state, next_attempt_at, created_at, updated_at,
         lease_until, lease_owner)
        SELECT i, s, r, e, 0, $5::BIGINT + $10::BIGINT, $5::BIGINT, $5::BIGINT,
          ",
    db_now!(),
    " + $10::BIGINT, $11::TEXT
        FROM unnest($6::TEXT[], $7::TEXT[], $8::TEXT[], $9::TEXT[]) AS u(i, s, r, e)
        WHERE i IN (SELECT id FROM fresh)
        ON CONFLICT (record_id, sink) DO NOTHING
     )
     SELECT id FROM fresh"
);

/// Each event's failures that its pass settles: a route built now has
/// failed for the last time, and a pass that failed no route leaves
/// nothing to retry. One (event, NULL) pair per event stands for "no route
/// built".
const CLEAR_FAILURES: &str = "DELETE FROM route_failures f
     USING unnest($1::TEXT[], $2::TEXT[]) AS u(e, r)
     WHERE f.event_id = u.e AND (f.route = u.r OR f.state = 0)";

const ROUTED: &str = "UPDATE events SET state = 1, reroute = FALSE, last_error = NULL,
     updated_at = $2, lease_until = 0, lease_owner = NULL WHERE id = ANY($1::TEXT[])";

/// The group's transaction; the record ids it inserted.
async fn together(
    shared: &Shared,
    c: &deadpool_postgres::Client,
    group: &[Job],
) -> Result<HashSet<String>, tokio_postgres::Error> {
    let done = pipelined(shared, c, group).await;
    if done.is_err() {
        // Outside a transaction this is only a warning.
        let _ = c.batch_execute("ROLLBACK").await;
    }
    done
}

async fn pipelined(
    shared: &Shared,
    c: &deadpool_postgres::Client,
    group: &[Job],
) -> Result<HashSet<String>, tokio_postgres::Error> {
    let now = now_ms();
    // Prepared first (once per connection), so that the pipeline below
    // sends its statements in this order without waiting in between.
    let (records_sql, clear_sql, routed_sql) = futures_util::try_join!(
        c.prepare_cached(RECORDS),
        c.prepare_cached(CLEAR_FAILURES),
        c.prepare_cached(ROUTED),
    )?;
    let records = RecordRows::new(
        group
            .iter()
            .map(|job| (job.event_id.as_str(), &job.routing)),
    );
    let mut clear_events: Vec<&str> = Vec::new();
    let mut clear_routes: Vec<Option<&str>> = Vec::new();
    for job in group {
        for record in &job.routing.records {
            clear_events.push(&job.event_id);
            clear_routes.push(Some(&record.route));
        }
        clear_events.push(&job.event_id);
        clear_routes.push(None);
    }
    let mut events: Vec<&str> = group.iter().map(|job| job.event_id.as_str()).collect();
    events.sort_unstable();

    let begin = c.batch_execute("BEGIN");
    let stored = records.insert(shared, c, &records_sql, now);
    let clear_params: [&(dyn ToSql + Sync); 2] = [&clear_events, &clear_routes];
    let routed_params: [&(dyn ToSql + Sync); 2] = [&events, &now];
    let clear = c.execute(&clear_sql, &clear_params);
    let routed = c.execute(&routed_sql, &routed_params);
    let commit = c.batch_execute("COMMIT");
    let ((), fresh, _, _, ()) = futures_util::try_join!(begin, stored, clear, routed, commit)?;
    Ok(fresh)
}

/// The records of one or more passes and their deliveries, as the arrays
/// [`RECORDS`] takes. Records are in id order, so that two replicas' writes
/// lock them in one order. An id already stored is kept as it is, its
/// deliveries not made again: a record is built once. An id twice in one
/// pass: the first one's sinks.
pub(super) struct RecordRows<'a> {
    ids: Vec<&'a str>,
    events: Vec<&'a str>,
    routes: Vec<&'a str>,
    bodies: Vec<&'a [u8]>,
    d_ids: Vec<&'a str>,
    d_sinks: Vec<&'a str>,
    d_routes: Vec<&'a str>,
    d_events: Vec<&'a str>,
}

impl<'a> RecordRows<'a> {
    pub(super) fn new(passes: impl Iterator<Item = (&'a str, &'a Routing)> + Clone) -> Self {
        let mut records: Vec<(&str, &crate::store::NewRecord)> = passes
            .clone()
            .flat_map(|(event, routing)| routing.records.iter().map(move |r| (event, r)))
            .collect();
        records.sort_by(|a, b| a.1.record.id.cmp(&b.1.record.id));
        let mut rows = RecordRows {
            ids: records.iter().map(|(_, r)| r.record.id.as_str()).collect(),
            events: records.iter().map(|(e, _)| *e).collect(),
            routes: records.iter().map(|(_, r)| r.route.as_str()).collect(),
            bodies: records.iter().map(|(_, r)| &r.record.body[..]).collect(),
            d_ids: Vec::new(),
            d_sinks: Vec::new(),
            d_routes: Vec::new(),
            d_events: Vec::new(),
        };
        for (event, routing) in passes {
            let mut seen: Vec<&str> = Vec::new();
            for record in &routing.records {
                if seen.contains(&record.record.id.as_str()) {
                    continue;
                }
                seen.push(&record.record.id);
                for sink in &record.sinks {
                    rows.d_ids.push(record.record.id.as_str());
                    rows.d_sinks.push(sink.as_str());
                    rows.d_routes.push(record.route.as_str());
                    rows.d_events.push(event);
                }
            }
        }
        rows
    }

    /// Runs [`RECORDS`] (`statement`, prepared from it); the ids it
    /// inserted.
    pub(super) async fn insert(
        &self,
        shared: &Shared,
        c: &deadpool_postgres::Client,
        statement: &tokio_postgres::Statement,
        now: i64,
    ) -> Result<HashSet<String>, tokio_postgres::Error> {
        if self.ids.is_empty() {
            return Ok(HashSet::new());
        }
        let rows = c
            .query(
                statement,
                &[
                    &self.ids,
                    &self.events,
                    &self.routes,
                    &self.bodies,
                    &now,
                    &self.d_ids,
                    &self.d_sinks,
                    &self.d_routes,
                    &self.d_events,
                    &shared.lease_ms,
                    &shared.owner,
                ],
            )
            .await?;
        Ok(rows.into_iter().map(|row| row.get(0)).collect())
    }
}
