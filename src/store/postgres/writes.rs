//! The writes other than the journal, each one transaction on a pooled
//! connection: routing passes with failed routes, failed events, settles, replays, reroutes
//! and pruning, with the rules of the SQLite store
//! ([`crate::store::sqlite`]'s `writes`). States are the integers of
//! [`crate::store::sqlite::state`]: events 0 due, 1 routed, 2 dead;
//! deliveries 0 pending, 1 delivered, 2 dead; route failures 0 retry,
//! 2 dead. A row that changes hands is released: its lease ends
//! (`lease_until = 0`, no owner), and any replica's scan may take it when
//! due. Replays and reroutes `NOTIFY` the replicas, whose scans then run at
//! once.

use deadpool_postgres::GenericClient;
use tokio_postgres::Error;
use tokio_postgres::types::ToSql;

use super::Shared;
use super::passes::{RecordRows, stored_of};
use crate::clock::now_ms;
use crate::store::{Filter, Routing};

/// The database's clock in unix milliseconds: leases are on one clock,
/// whatever the replicas' own say.
pub(super) const DB_NOW: &str = db_now!();

/// Runs a statement (prepared once per connection).
pub(super) async fn exec(
    c: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, Error> {
    let statement = c.prepare_cached(sql).await?;
    c.execute(&statement, params).await
}

/// Runs a query (prepared once per connection).
pub(super) async fn query(
    c: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<tokio_postgres::Row>, Error> {
    let statement = c.prepare_cached(sql).await?;
    c.query(&statement, params).await
}

/// A route built now has failed for the last time. A route this pass
/// neither built nor retried has nothing left to retry.
const CLEAR_FAILURES: &str = "DELETE FROM route_failures WHERE event_id = $1
     AND (route = ANY($2::TEXT[]) OR (state = 0 AND NOT route = ANY($3::TEXT[])))";

const ROUTED: &str = "UPDATE events SET state = 1, reroute = FALSE, last_error = NULL,
     updated_at = $2, lease_until = 0, lease_owner = NULL WHERE id = $1";

const RETRY: &str = "UPDATE events SET state = 0, attempts = attempts + 1, next_attempt_at = $2,
     last_error = $3, updated_at = $4, lease_until = 0, lease_owner = NULL WHERE id = $1";

/// A dead route stays dead until `replay` or `reroute` removes it.
const FAILURE: &str = "INSERT INTO route_failures
     (event_id, route, record_id, state, attempts, last_error, created_at, updated_at)
     VALUES ($1, $2, $3, $4, 1, $5, $6, $6)
     ON CONFLICT (event_id, route) DO UPDATE SET record_id = excluded.record_id,
     state = excluded.state, attempts = route_failures.attempts + 1,
     last_error = excluded.last_error, updated_at = excluded.updated_at
     WHERE route_failures.state = 0";

const BUILT: &str = "SELECT id FROM records WHERE id = ANY($1)";

/// One routing pass with failed routes (see
/// [`Store::save_routing`](crate::store::Store::save_routing); passes
/// without are [`super::passes`]'), in one transaction: `BEGIN`, records
/// with deliveries ([`super::passes::RECORDS`]) and cleared failures go out
/// pipelined, then it learns which of the failed routes' records exist,
/// stores the failures and the event's state. A failed statement aborts
/// the transaction; the connection is rolled back before it returns to the
/// pool. Run it where no caller can drop it half-way (its own task).
pub(super) async fn save_routing(
    shared: &Shared,
    c: &deadpool_postgres::Client,
    event_id: &str,
    routing: &Routing,
) -> Result<Vec<String>, Error> {
    let done = pass(shared, c, event_id, routing).await;
    if done.is_err() {
        // Outside a transaction this is only a warning.
        let _ = c.batch_execute("ROLLBACK").await;
    }
    done
}

async fn pass(
    shared: &Shared,
    c: &deadpool_postgres::Client,
    event_id: &str,
    routing: &Routing,
) -> Result<Vec<String>, Error> {
    let now = now_ms();
    // Prepared first (once per connection), so that the pipeline below
    // sends its statements in this order without waiting in between.
    let (records_sql, clear_sql) = futures_util::try_join!(
        c.prepare_cached(super::passes::RECORDS),
        c.prepare_cached(CLEAR_FAILURES),
    )?;
    let records = RecordRows::new(std::iter::once((event_id, routing)));
    let built_routes: Vec<&str> = routing.records.iter().map(|r| r.route.as_str()).collect();
    let retried_routes: Vec<&str> = routing.failed.iter().map(|f| f.route.as_str()).collect();

    let begin = c.batch_execute("BEGIN");
    let stored = async {
        let mut fresh = records.insert(shared, c, &records_sql, now).await?;
        // In the pass's order, as the callers expect.
        Ok::<_, Error>(stored_of(routing, &mut fresh))
    };
    let clear_params: [&(dyn ToSql + Sync); 3] = [&event_id, &built_routes, &retried_routes];
    let clear = c.execute(&clear_sql, &clear_params);
    let ((), stored, _) = futures_util::try_join!(begin, stored, clear)?;
    // A pass that started before an earlier one (here or on another
    // replica) stored a route's record has nothing to say about it.
    let failed_ids: Vec<&str> = routing
        .failed
        .iter()
        .map(|f| f.record_id.as_str())
        .collect();
    let built: Vec<String> = query(c, BUILT, &[&failed_ids])
        .await?
        .into_iter()
        .map(|row| row.get(0))
        .collect();
    let failed: Vec<_> = routing
        .failed
        .iter()
        .filter(|f| !built.contains(&f.record_id))
        .collect();
    for failure in &failed {
        let state: i32 = if failure.dead { 2 } else { 0 };
        exec(
            c,
            FAILURE,
            &[
                &event_id,
                &failure.route,
                &failure.record_id,
                &state,
                &failure.error,
                &now,
            ],
        )
        .await?;
    }
    let retry = failed.iter().filter(|f| !f.dead);
    match retry.clone().map(|f| f.next_attempt_ms).min() {
        None => {
            exec(c, ROUTED, &[&event_id, &now]).await?;
        }
        Some(next) => {
            let error = retry.map(|f| f.error.as_str()).next();
            exec(c, RETRY, &[&event_id, &next, &error, &now]).await?;
        }
    }
    c.batch_execute("COMMIT").await?;
    Ok(stored)
}

/// The event as a whole could not be routed.
pub(super) async fn event_failed(
    c: &mut deadpool_postgres::Client,
    id: String,
    error: String,
    next: i64,
    dead: bool,
) -> Result<(), Error> {
    let state: i32 = if dead { 2 } else { 0 };
    exec(
        &*c,
        "UPDATE events SET attempts = attempts + 1, last_error = $2, next_attempt_at = $3,
         state = $4, updated_at = $5, lease_until = 0, lease_owner = NULL WHERE id = $1",
        &[&id, &error, &next, &state, &now_ms()],
    )
    .await?;
    Ok(())
}

/// Re-queues the dead letters `filter` matches; how many.
pub(super) async fn replay(
    c: &mut deadpool_postgres::Client,
    filter: Filter,
) -> Result<u64, Error> {
    let now = now_ms();
    let tx = c.transaction().await?;
    let deliveries = exec(
        &tx,
        "UPDATE deliveries SET state = 0, next_attempt_at = 0, attempts = 0, created_at = $4,
         updated_at = $4, lease_until = 0, lease_owner = NULL
         WHERE state = 2 AND ($1::TEXT IS NULL OR sink = $1) AND ($2::TEXT IS NULL OR route = $2)
         AND ($3::TEXT IS NULL OR event_id = $3)",
        &[&filter.sink, &filter.route, &filter.event, &now],
    )
    .await?;
    // A route whose record could not be built has no sink: its event is
    // routed again, and builds only what is missing.
    let routes = if filter.sink.is_none() {
        exec(
            &tx,
            "UPDATE events SET state = 0, next_attempt_at = 0, attempts = 0, updated_at = $3,
             lease_until = 0, lease_owner = NULL
             WHERE id IN (SELECT event_id FROM route_failures WHERE state = 2
             AND ($1::TEXT IS NULL OR route = $1) AND ($2::TEXT IS NULL OR event_id = $2))",
            &[&filter.route, &filter.event, &now],
        )
        .await?;
        exec(
            &tx,
            "DELETE FROM route_failures WHERE state = 2 AND ($1::TEXT IS NULL OR route = $1)
             AND ($2::TEXT IS NULL OR event_id = $2)",
            &[&filter.route, &filter.event],
        )
        .await?
    } else {
        0
    };
    let events = if filter.sink.is_none() && filter.route.is_none() {
        exec(
            &tx,
            "UPDATE events SET state = 0, next_attempt_at = 0, attempts = 0, updated_at = $2,
             lease_until = 0, lease_owner = NULL
             WHERE state = 2 AND ($1::TEXT IS NULL OR id = $1)",
            &[&filter.event, &now],
        )
        .await?
    } else {
        0
    };
    let total = deliveries + routes + events;
    if total > 0 {
        notify(&tx).await?;
    }
    tx.commit().await?;
    Ok(total)
}

/// Queues an event to be routed again by the current routes, its dead
/// routes included; false when it is not in the journal.
pub(super) async fn reroute(
    c: &mut deadpool_postgres::Client,
    event_id: String,
) -> Result<bool, Error> {
    let tx = c.transaction().await?;
    let found = exec(
        &tx,
        "UPDATE events SET state = 0, reroute = TRUE, next_attempt_at = 0, attempts = 0,
         updated_at = $2, lease_until = 0, lease_owner = NULL WHERE id = $1",
        &[&event_id, &now_ms()],
    )
    .await?;
    exec(
        &tx,
        "DELETE FROM route_failures WHERE event_id = $1 AND state = 2",
        &[&event_id],
    )
    .await?;
    if found == 1 {
        notify(&tx).await?;
    }
    tx.commit().await?;
    Ok(found == 1)
}

/// Wakes every replica's scans once the transaction commits.
async fn notify(c: &impl GenericClient) -> Result<(), Error> {
    exec(c, "SELECT pg_notify($1, '')", &[&super::CHANNEL]).await?;
    Ok(())
}

/// Deletes finished history (see [`Store::prune`](crate::store::Store::prune)):
/// at most `limit` rows of each table, so several replicas pruning at once
/// hold few locks each.
pub(super) async fn prune(
    c: &mut deadpool_postgres::Client,
    before: i64,
    limit: usize,
) -> Result<u64, Error> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let tx = c.transaction().await?;
    let mut removed: i64 = query(
        &tx,
        "WITH gone AS (
            DELETE FROM deliveries WHERE (record_id, sink) IN (
                SELECT record_id, sink FROM deliveries WHERE state = 1 AND updated_at < $1
                LIMIT $2 FOR UPDATE SKIP LOCKED)
            RETURNING record_id, sink
         ), attempts AS (
            DELETE FROM delivery_attempts a USING gone g
            WHERE a.record_id = g.record_id AND a.sink = g.sink
         )
         SELECT COUNT(*) FROM gone",
        &[&before, &limit],
    )
    .await?
    .first()
    .map_or(0, |row| row.get(0));
    // A record or an event with a route failure stays: a replay of that
    // route must find the records already built, not build them again.
    removed += i64::try_from(
        exec(
            &tx,
            "DELETE FROM records WHERE id IN (SELECT id FROM records r WHERE created_at < $1
             AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.record_id = r.id)
             AND NOT EXISTS (SELECT 1 FROM route_failures f WHERE f.event_id = r.event_id)
             LIMIT $2 FOR UPDATE SKIP LOCKED)",
            &[&before, &limit],
        )
        .await?,
    )
    .unwrap_or(0);
    removed += i64::try_from(
        exec(
            &tx,
            "DELETE FROM events WHERE seq IN (SELECT seq FROM events e WHERE state = 1
             AND updated_at < $1
             AND NOT EXISTS (SELECT 1 FROM records r WHERE r.event_id = e.id)
             AND NOT EXISTS (SELECT 1 FROM route_failures f WHERE f.event_id = e.id)
             LIMIT $2 FOR UPDATE SKIP LOCKED)",
            &[&before, &limit],
        )
        .await?,
    )
    .unwrap_or(0);
    tx.commit().await?;
    Ok(u64::try_from(removed).unwrap_or(0))
}
