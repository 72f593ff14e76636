//! The statements of each write, run by the writer thread inside its batch
//! transaction ([`super::writer`]). A state in a `WHERE` clause is written
//! into the statement's text, so that SQLite matches its partial index; a
//! state set is bound.

use rusqlite::{Connection, params};

use super::state::{DeliveryState, EventState, RouteState};
use crate::store::{ATTEMPTS_KEPT, Filter, Journaled, LEASE_MS, NewEvent, Routing, Settle};

/// Journals an event, unless its id is already there.
pub(super) fn journal(
    tx: &Connection,
    event: &NewEvent,
    now: i64,
) -> Result<Journaled, rusqlite::Error> {
    let state = if event.routed {
        EventState::Routed
    } else {
        EventState::Due
    };
    let inserted = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO events (id, type, received_at, state, next_attempt_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            event.id,
            event.kind,
            event.received_at_ms,
            state,
            if event.leased {
                event.received_at_ms + LEASE_MS
            } else {
                event.received_at_ms
            },
            now
        ])?;
    if inserted == 0 {
        return Ok(Journaled::Duplicate);
    }
    tx.prepare_cached("INSERT INTO event_bodies (seq, body) VALUES (?1, ?2)")?
        .execute(params![tx.last_insert_rowid(), &event.body[..]])?;
    Ok(Journaled::Inserted)
}

/// One routing pass (see [`Store::save_routing`](crate::store::Store::save_routing)).
pub(super) fn save_routing(
    tx: &Connection,
    event_id: &str,
    routing: &Routing,
    now: i64,
) -> Result<Vec<String>, rusqlite::Error> {
    let mut stored = Vec::new();
    // The routes an earlier pass left failed, read once: on an event's first
    // pass there are none, and nothing below is looked up per route.
    let earlier: Vec<(String, i64)> = {
        let mut statement =
            tx.prepare_cached("SELECT route, state FROM route_failures WHERE event_id = ?1")?;
        let rows = statement.query_map(params![event_id], |row| Ok((row.get(0)?, row.get(1)?)))?;
        rows.collect::<Result<_, _>>()?
    };
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
        if fresh == 0 {
            continue;
        }
        stored.push(record.record.id.clone());
        for sink in &record.sinks {
            tx.prepare_cached(
                "INSERT OR IGNORE INTO deliveries
                 (record_id, sink, route, event_id, state, next_attempt_at, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?7, ?6, ?5, ?5)",
            )?
            .execute(params![
                record.record.id,
                sink,
                record.route,
                event_id,
                now,
                now + LEASE_MS,
                DeliveryState::Pending
            ])?;
        }
    }
    // A route built now has failed for the last time. A route this pass
    // neither built nor retried (removed by a reload, or built under another
    // id) has nothing left to retry.
    for (route, state) in earlier {
        let built = routing.records.iter().any(|r| r.route == route);
        let retried = routing.failed.iter().any(|f| f.route == route);
        if built || (state == RouteState::Retry.sql() && !retried) {
            tx.prepare_cached("DELETE FROM route_failures WHERE event_id = ?1 AND route = ?2")?
                .execute(params![event_id, route])?;
        }
    }
    // A pass that started before an earlier one stored a route's record
    // (a scan read the event while that pass ran) has nothing to say about
    // that route.
    let built = |record_id: &str| -> Result<bool, rusqlite::Error> {
        tx.prepare_cached("SELECT 1 FROM records WHERE id = ?1")?
            .exists(params![record_id])
    };
    let mut failed = Vec::new();
    for failure in &routing.failed {
        if !built(&failure.record_id)? {
            failed.push(failure);
        }
    }
    for failure in &failed {
        let state = if failure.dead {
            RouteState::Dead
        } else {
            RouteState::Retry
        };
        // A dead route stays dead until `replay` or `reroute` removes its
        // row: only a pass that read the event before it died can fail it
        // again.
        tx.prepare_cached(&format!(
            "INSERT INTO route_failures
             (event_id, route, record_id, state, attempts, last_error, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, 1, ?5, ?6, ?6)
             ON CONFLICT (event_id, route) DO UPDATE SET record_id = excluded.record_id,
             state = excluded.state, attempts = attempts + 1, last_error = excluded.last_error,
             updated_at = excluded.updated_at WHERE route_failures.state = {}",
            RouteState::Retry
        ))?
        .execute(params![
            event_id,
            failure.route,
            failure.record_id,
            state,
            failure.error,
            now
        ])?;
    }
    let retry = failed.iter().filter(|f| !f.dead);
    match retry.clone().map(|f| f.next_attempt_ms).min() {
        None => {
            tx.prepare_cached(
                "UPDATE events SET state = ?2, reroute = 0, last_error = NULL, updated_at = ?3
                 WHERE id = ?1",
            )?
            .execute(params![event_id, EventState::Routed, now])?;
        }
        Some(next) => {
            let error = retry.map(|f| f.error.as_str()).next();
            tx.prepare_cached(
                "UPDATE events SET state = ?5, attempts = attempts + 1, next_attempt_at = ?2,
                 last_error = ?3, updated_at = ?4 WHERE id = ?1",
            )?
            .execute(params![event_id, next, error, now, EventState::Due])?;
        }
    }
    Ok(stored)
}

/// The event as a whole could not be routed.
pub(super) fn event_failed(
    tx: &Connection,
    id: &str,
    error: &str,
    next: i64,
    dead: bool,
    now: i64,
) -> Result<(), rusqlite::Error> {
    let state = if dead {
        EventState::Dead
    } else {
        EventState::Due
    };
    tx.prepare_cached(
        "UPDATE events SET attempts = attempts + 1, last_error = ?2, next_attempt_at = ?3,
         state = ?4, updated_at = ?5 WHERE id = ?1",
    )?
    .execute(params![id, error, next, state, now])?;
    Ok(())
}

/// How one delivery attempt ended.
pub(super) fn settle(
    tx: &Connection,
    record_id: &str,
    sink: &str,
    outcome: Settle,
    now: i64,
) -> Result<(), rusqlite::Error> {
    let (state, next, error) = match outcome {
        Settle::Delivered => (DeliveryState::Delivered, 0, None),
        Settle::Retry {
            next_attempt_ms,
            error,
        } => (DeliveryState::Pending, next_attempt_ms, Some(error)),
        Settle::Dead { error } => (DeliveryState::Dead, 0, Some(error)),
    };
    // Only a pending row is settled: an attempt that overlapped another
    // of the same row (a fast path and a scan) cannot bring a delivered or
    // dead row back.
    let settled = tx
        .prepare_cached(&format!(
            "UPDATE deliveries SET state = ?3, attempts = attempts + 1, next_attempt_at = ?4,
             last_error = COALESCE(?5, last_error), updated_at = ?6
             WHERE record_id = ?1 AND sink = ?2 AND state = {}",
            DeliveryState::Pending
        ))?
        .execute(params![record_id, sink, state, next, error, now])?;
    // A delivered attempt is told by the row itself (its state and
    // `updated_at`, which `browse` shows as the last attempt): the hot path
    // writes one row, not three. Failed attempts are kept in the history,
    // bounded: the newest ATTEMPTS_KEPT stay.
    if settled == 1 && state != DeliveryState::Delivered {
        tx.prepare_cached(
            "INSERT INTO delivery_attempts (record_id, sink, at, outcome, error)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![record_id, sink, now, state, error])?;
        tx.prepare_cached(
            "DELETE FROM delivery_attempts WHERE record_id = ?1 AND sink = ?2 AND id <=
             (SELECT id FROM delivery_attempts WHERE record_id = ?1 AND sink = ?2
              ORDER BY id DESC LIMIT 1 OFFSET ?3)",
        )?
        .execute(params![record_id, sink, ATTEMPTS_KEPT as i64])?;
    }
    Ok(())
}

/// Re-queues the dead letters `filter` matches; how many.
pub(super) fn replay(tx: &Connection, filter: &Filter, now: i64) -> Result<u64, rusqlite::Error> {
    let deliveries = tx
        .prepare_cached(&format!(
            "UPDATE deliveries SET state = ?5, next_attempt_at = 0, attempts = 0, created_at = ?4,
             updated_at = ?4
             WHERE state = {} AND (?1 IS NULL OR sink = ?1) AND (?2 IS NULL OR route = ?2)
             AND (?3 IS NULL OR event_id = ?3)",
            DeliveryState::Dead
        ))?
        .execute(params![
            filter.sink,
            filter.route,
            filter.event,
            now,
            DeliveryState::Pending
        ])?;
    // A route whose record could not be built has no sink: its event is
    // routed again, and builds only what is missing.
    let routes = if filter.sink.is_none() {
        tx.prepare_cached(&format!(
            "UPDATE events SET state = ?4, next_attempt_at = 0, attempts = 0, updated_at = ?3
             WHERE id IN (SELECT event_id FROM route_failures WHERE state = {}
             AND (?1 IS NULL OR route = ?1) AND (?2 IS NULL OR event_id = ?2))",
            RouteState::Dead
        ))?
        .execute(params![filter.route, filter.event, now, EventState::Due])?;
        tx.prepare_cached(&format!(
            "DELETE FROM route_failures WHERE state = {} AND (?1 IS NULL OR route = ?1)
             AND (?2 IS NULL OR event_id = ?2)",
            RouteState::Dead
        ))?
        .execute(params![filter.route, filter.event])?
    } else {
        0
    };
    // Events that cannot be routed at all have no sink or route; a filter
    // by sink or route does not select them.
    let events = if filter.sink.is_none() && filter.route.is_none() {
        tx.prepare_cached(&format!(
            "UPDATE events SET state = ?3, next_attempt_at = 0, attempts = 0, updated_at = ?2
             WHERE state = {} AND (?1 IS NULL OR id = ?1)",
            EventState::Dead
        ))?
        .execute(params![filter.event, now, EventState::Due])?
    } else {
        0
    };
    Ok((deliveries + routes + events) as u64)
}

/// Queues an event to be routed again by the current routes, its dead
/// routes included; false when it is not in the journal.
pub(super) fn reroute(tx: &Connection, event_id: &str, now: i64) -> Result<bool, rusqlite::Error> {
    let found = tx
        .prepare_cached(
            "UPDATE events SET state = ?3, reroute = 1, next_attempt_at = 0, attempts = 0,
             updated_at = ?2 WHERE id = ?1",
        )?
        .execute(params![event_id, now, EventState::Due])?;
    tx.prepare_cached(&format!(
        "DELETE FROM route_failures WHERE event_id = ?1 AND state = {}",
        RouteState::Dead
    ))?
    .execute(params![event_id])?;
    Ok(found == 1)
}

/// Deletes finished history (see [`Store::prune`](crate::store::Store::prune)).
pub(super) fn prune(tx: &Connection, before: i64, limit: usize) -> Result<u64, rusqlite::Error> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut removed = tx
        .prepare_cached(&format!(
            "DELETE FROM deliveries WHERE rowid IN (SELECT rowid FROM deliveries
             WHERE state = {} AND updated_at < ?1 LIMIT ?2)",
            DeliveryState::Delivered
        ))?
        .execute(params![before, limit])?;
    // A record or an event with a route failure stays: a replay of that
    // route must find the records already built, not build them again.
    removed += tx
        .prepare_cached(
            "DELETE FROM records WHERE rowid IN (SELECT rowid FROM records WHERE created_at < ?1
             AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.record_id = records.id)
             AND NOT EXISTS (SELECT 1 FROM route_failures f WHERE f.event_id = records.event_id)
             LIMIT ?2)",
        )?
        .execute(params![before, limit])?;
    removed += tx
        .prepare_cached(&format!(
            "DELETE FROM events WHERE rowid IN (SELECT rowid FROM events WHERE state = {}
             AND updated_at < ?1
             AND NOT EXISTS (SELECT 1 FROM records r WHERE r.event_id = events.id)
             AND NOT EXISTS (SELECT 1 FROM route_failures f WHERE f.event_id = events.id)
             LIMIT ?2)",
            EventState::Routed
        ))?
        .execute(params![before, limit])?;
    Ok(removed as u64)
}
