//! The reader's queries: due events and deliveries, record bodies, dead
//! letters and queue depths. They run on the reader connection, which WAL
//! lets read beside the writer. A state in a `WHERE` clause is written into
//! the statement's text, so that SQLite matches its partial index.

use std::collections::HashMap;

use bytes::Bytes;
use rusqlite::{Connection, params};

use super::state::{DeliveryState, EventState, RouteState};
use crate::sinks::Encoded;
use crate::store::{DeadLetter, Depths, Filter, PendingDelivery, PendingEvent};

/// Events due for routing at `now_ms`, oldest first, each with the record
/// ids it must not build again.
pub(super) fn due_events(
    c: &Connection,
    now_ms: i64,
    limit: usize,
    max_bytes: usize,
) -> Result<Vec<PendingEvent>, rusqlite::Error> {
    let mut statement = c.prepare_cached(&format!(
        "SELECT e.id, b.body, e.received_at, e.attempts, e.reroute, e.type
         FROM events e JOIN event_bodies b ON b.seq = e.seq
         WHERE e.state = {} AND e.next_attempt_at <= ?1
         ORDER BY e.next_attempt_at, e.received_at LIMIT ?2",
        EventState::Due
    ))?;
    let rows = statement.query_map(params![now_ms, limit as i64], |row| {
        Ok(PendingEvent {
            id: row.get(0)?,
            body: Bytes::from(row.get::<_, Vec<u8>>(1)?),
            received_at_ms: row.get(2)?,
            attempts: row.get(3)?,
            reroute: row.get::<_, i64>(4)? != 0,
            kind: row.get(5)?,
            settled: Vec::new(),
        })
    })?;
    let mut due: Vec<PendingEvent> = Vec::new();
    let mut bytes = 0usize;
    for row in rows {
        if bytes >= max_bytes {
            break;
        }
        let event = row?;
        bytes = bytes.saturating_add(event.body.len());
        due.push(event);
    }
    drop(statement);
    if due.is_empty() {
        return Ok(due);
    }
    // The ids of this page, as one JSON array: one query for the page,
    // whatever its size.
    let page = serde_json::to_string(&due.iter().map(|e| &e.id).collect::<Vec<_>>())
        .unwrap_or_else(|_| "[]".to_owned());
    let mut statement = c.prepare_cached(&format!(
        "SELECT event_id, id FROM records WHERE event_id IN (SELECT value FROM json_each(?1))
         UNION ALL
         SELECT event_id, record_id FROM route_failures
         WHERE state = {} AND event_id IN (SELECT value FROM json_each(?1))",
        RouteState::Dead,
    ))?;
    let rows = statement.query_map(params![page], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
    })?;
    let mut settled: HashMap<String, Vec<String>> = HashMap::new();
    for row in rows {
        let (event_id, record_id) = row?;
        settled.entry(event_id).or_default().push(record_id);
    }
    for event in &mut due {
        if let Some(ids) = settled.remove(&event.id) {
            event.settled = ids;
        }
    }
    Ok(due)
}

pub(super) fn record_body(c: &Connection, record_id: &str) -> Result<Bytes, rusqlite::Error> {
    c.prepare_cached("SELECT body FROM records WHERE id = ?1")?
        .query_row(params![record_id], |row| row.get::<_, Vec<u8>>(0))
        .map(Bytes::from)
}

/// Deliveries due for `sink` at `now_ms`, oldest first, skipping `busy`.
pub(super) fn due_deliveries(
    c: &Connection,
    sink: &str,
    now_ms: i64,
    limit: usize,
    busy: &[String],
) -> Result<Vec<PendingDelivery>, rusqlite::Error> {
    let mut statement = c.prepare_cached(&format!(
        "SELECT d.record_id, d.sink, d.route, r.body, d.attempts, d.created_at,
                COALESCE(e.received_at, d.created_at)
         FROM deliveries d JOIN records r ON r.id = d.record_id
         LEFT JOIN events e ON e.id = r.event_id
         WHERE d.state = {} AND d.sink = ?1 AND d.next_attempt_at <= ?2
         ORDER BY d.next_attempt_at, d.created_at LIMIT ?3",
        DeliveryState::Pending
    ))?;
    let rows = statement.query_map(params![sink, now_ms, (limit + busy.len()) as i64], |row| {
        Ok(PendingDelivery {
            record: Encoded {
                id: row.get(0)?,
                body: Bytes::from(row.get::<_, Vec<u8>>(3)?),
            },
            sink: row.get(1)?,
            route: row.get(2)?,
            attempts: row.get(4)?,
            created_at_ms: row.get(5)?,
            received_at_ms: row.get(6)?,
        })
    })?;
    let mut due = Vec::with_capacity(limit);
    for row in rows {
        let row = row?;
        if !busy.contains(&row.record.id) && due.len() < limit {
            due.push(row);
        }
    }
    Ok(due)
}

/// Dead deliveries, then dead routes (no sink), then events that cannot be
/// routed (no sink, no route), each oldest first.
pub(super) fn dead_letters(
    c: &Connection,
    filter: &Filter,
) -> Result<Vec<DeadLetter>, rusqlite::Error> {
    let mut letters = Vec::new();
    let mut statement = c.prepare_cached(&format!(
        "SELECT record_id, event_id, sink, route, attempts, last_error, created_at, updated_at
         FROM deliveries WHERE state = {} AND (?1 IS NULL OR sink = ?1) AND (?2 IS NULL OR route = ?2)
         AND (?3 IS NULL OR event_id = ?3) ORDER BY updated_at",
        DeliveryState::Dead
    ))?;
    let rows = statement.query_map(
        params![filter.sink, filter.route, filter.event],
        dead_letter,
    )?;
    for row in rows {
        letters.push(row?);
    }
    if filter.sink.is_none() {
        // Routes whose record could not be built: no sink.
        let mut statement = c.prepare_cached(&format!(
            "SELECT record_id, event_id, NULL, route, attempts, last_error, created_at, updated_at
             FROM route_failures WHERE state = {} AND (?1 IS NULL OR route = ?1)
             AND (?2 IS NULL OR event_id = ?2) ORDER BY updated_at",
            RouteState::Dead
        ))?;
        for row in statement.query_map(params![filter.route, filter.event], dead_letter)? {
            letters.push(row?);
        }
    }
    if filter.sink.is_none() && filter.route.is_none() {
        // Events whose routing gave up: no record, sink or route yet.
        let mut statement = c.prepare_cached(&format!(
            "SELECT NULL, id, NULL, NULL, attempts, last_error, received_at, updated_at FROM events
             WHERE state = {} AND (?1 IS NULL OR id = ?1) ORDER BY updated_at",
            EventState::Dead
        ))?;
        for row in statement.query_map(params![filter.event], dead_letter)? {
            letters.push(row?);
        }
    }
    Ok(letters)
}

/// Queue figures. Each count reads one partial index, whatever the size of
/// the delivered history.
pub(super) fn depths(c: &Connection) -> Result<Depths, rusqlite::Error> {
    // One read transaction, so that every figure comes from the same
    // commit: a routing pass moves an event and its routes together.
    let read = c.unchecked_transaction()?;
    let count = |sql: &str| {
        c.prepare_cached(sql)?
            .query_row([], |row| row.get::<_, i64>(0))
            .map(|n| n as u64)
    };
    let mut depths = Depths {
        events_pending: count(&format!(
            "SELECT COUNT(*) FROM events WHERE state = {}",
            EventState::Due
        ))?,
        events_dead: count(&format!(
            "SELECT COUNT(*) FROM events WHERE state = {}",
            EventState::Dead
        ))?,
        routes_dead: count(&format!(
            "SELECT COUNT(*) FROM route_failures WHERE state = {}",
            RouteState::Dead
        ))?,
        sinks: Default::default(),
    };
    for state in [DeliveryState::Pending, DeliveryState::Dead] {
        let mut statement = c.prepare_cached(&format!(
            "SELECT sink, COUNT(*) FROM deliveries WHERE state = {state} GROUP BY sink"
        ))?;
        let rows = statement.query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
        })?;
        for row in rows {
            let (sink, n) = row?;
            let entry = depths.sinks.entry(sink).or_default();
            if state == DeliveryState::Pending {
                entry.pending = n as u64;
            } else {
                entry.dead = n as u64;
            }
        }
    }
    read.finish()?;
    Ok(depths)
}

/// A dead letter from a row of `record_id, event_id, sink, route, attempts,
/// last_error, created_at, updated_at`.
pub(super) fn dead_letter(row: &rusqlite::Row<'_>) -> Result<DeadLetter, rusqlite::Error> {
    Ok(DeadLetter {
        record_id: row.get(0)?,
        event_id: row.get(1)?,
        sink: row.get(2)?,
        route: row.get(3)?,
        attempts: row.get(4)?,
        last_error: row.get(5)?,
        created_at_ms: row.get(6)?,
        updated_at_ms: row.get(7)?,
    })
}
