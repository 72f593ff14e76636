//! The admin API's queries: pages of events with what routing made of
//! them, one event in full, pages of dead letters. They run on the reader
//! connection, beside the writer, each page in one read transaction so
//! that an event and its rows come from the same commit.

use std::collections::HashMap;

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension as _, params};

use super::reads::dead_letter;
use super::state::{DeliveryState, EventState, RouteState};
use crate::store::views::kept_attempts;
use crate::store::{
    AttemptView, DeadLetter, DeadLetterCursor, DeadLetterPage, DeadLetterQuery, DeliveryView,
    EventDetail, EventPage, EventQuery, EventView, RecordView, RouteFailureView,
};

/// The columns every event query reads, in [`event_row`]'s order.
const EVENT_COLUMNS: &str =
    "e.seq, e.id, e.type, e.received_at, e.state, e.attempts, e.last_error, e.updated_at";

/// A page of events, newest first (by journal order).
pub(super) fn events(c: &Connection, query: &EventQuery) -> Result<EventPage, rusqlite::Error> {
    let read = c.unchecked_transaction()?;
    let pattern = query.kind.as_deref().map(glob_pattern);
    // One more than asked: whether there is a next page.
    let mut statement = c.prepare_cached(&format!(
        "SELECT {EVENT_COLUMNS} FROM events e
         WHERE (?1 IS NULL OR e.seq < ?1) AND (?2 IS NULL OR e.type GLOB ?2)
         ORDER BY e.seq DESC LIMIT ?3"
    ))?;
    let mut rows: Vec<(i64, EventView)> = statement
        .query_map(
            params![query.after, pattern, query.limit as i64 + 1],
            event_row,
        )?
        .collect::<Result<_, _>>()?;
    drop(statement);
    let next = if rows.len() > query.limit {
        rows.truncate(query.limit);
        rows.last().map(|(seq, _)| *seq)
    } else {
        None
    };
    let mut events: Vec<EventView> = rows.into_iter().map(|(_, event)| event).collect();
    attach(c, &mut events)?;
    read.finish()?;
    Ok(EventPage { events, next })
}

/// One event in full, or `None`.
pub(super) fn event(c: &Connection, id: &str) -> Result<Option<EventDetail>, rusqlite::Error> {
    let read = c.unchecked_transaction()?;
    let found = c
        .prepare_cached(&format!(
            "SELECT {EVENT_COLUMNS}, b.body FROM events e JOIN event_bodies b ON b.seq = e.seq
             WHERE e.id = ?1"
        ))?
        .query_row(params![id], |row| {
            Ok((event_row(row)?.1, Bytes::from(row.get::<_, Vec<u8>>(8)?)))
        })
        .optional()?;
    let Some((event, body)) = found else {
        return Ok(None);
    };
    let mut events = vec![event];
    attach(c, &mut events)?;
    let event = events
        .pop()
        .unwrap_or_else(|| unreachable!("one event in, one out"));
    let mut record_bodies = Vec::with_capacity(event.records.len());
    let mut attempts = Vec::with_capacity(event.records.len());
    for record in &event.records {
        record_bodies.push(super::reads::record_body(c, &record.id)?);
        let mut per_sink = Vec::with_capacity(record.deliveries.len());
        for delivery in &record.deliveries {
            per_sink.push(delivery_attempts(c, &record.id, delivery)?);
        }
        attempts.push(per_sink);
    }
    read.finish()?;
    Ok(Some(EventDetail {
        event,
        body,
        record_bodies,
        attempts,
    }))
}

/// A delivery's kept attempts, oldest first: the failed ones from
/// `delivery_attempts`, and for a delivered row the attempt that delivered it,
/// which only the row records (`writes::settle`); see [`kept_attempts`].
fn delivery_attempts(
    c: &Connection,
    record_id: &str,
    delivery: &DeliveryView,
) -> Result<Vec<AttemptView>, rusqlite::Error> {
    let mut statement = c.prepare_cached(
        "SELECT at, outcome, error FROM delivery_attempts WHERE record_id = ?1 AND sink = ?2
         ORDER BY id",
    )?;
    let rows = statement.query_map(params![record_id, delivery.sink], |row| {
        Ok(AttemptView {
            at_ms: row.get(0)?,
            outcome: match row.get::<_, DeliveryState>(1)? {
                DeliveryState::Pending => "retry",
                DeliveryState::Delivered => "delivered",
                DeliveryState::Dead => "dead",
            },
            error: row.get(2)?,
        })
    })?;
    let stored: Vec<AttemptView> = rows.collect::<Result<_, _>>()?;
    Ok(kept_attempts(stored, delivery))
}

/// Fills in each event's records, their deliveries and its failed
/// routes: one query per table for the whole page.
fn attach(c: &Connection, events: &mut [EventView]) -> Result<(), rusqlite::Error> {
    if events.is_empty() {
        return Ok(());
    }
    let page = serde_json::to_string(&events.iter().map(|e| &e.id).collect::<Vec<_>>())
        .unwrap_or_else(|_| "[]".to_owned());
    let mut records: HashMap<String, Vec<RecordView>> = HashMap::new();
    let mut statement = c.prepare_cached(
        "SELECT event_id, id, route, created_at FROM records
         WHERE event_id IN (SELECT value FROM json_each(?1)) ORDER BY created_at, route",
    )?;
    for row in statement.query_map(params![page], |row| {
        Ok((
            row.get::<_, String>(0)?,
            RecordView {
                id: row.get(1)?,
                route: row.get(2)?,
                created_at_ms: row.get(3)?,
                deliveries: Vec::new(),
            },
        ))
    })? {
        let (event_id, record) = row?;
        records.entry(event_id).or_default().push(record);
    }
    let mut deliveries: HashMap<String, Vec<DeliveryView>> = HashMap::new();
    let mut statement = c.prepare_cached(
        "SELECT record_id, sink, state, attempts, last_error, next_attempt_at, created_at,
         updated_at FROM deliveries WHERE event_id IN (SELECT value FROM json_each(?1))
         ORDER BY sink",
    )?;
    for row in statement.query_map(params![page], |row| {
        Ok((
            row.get::<_, String>(0)?,
            DeliveryView {
                sink: row.get(1)?,
                state: match row.get::<_, DeliveryState>(2)? {
                    DeliveryState::Pending => "pending",
                    DeliveryState::Delivered => "delivered",
                    DeliveryState::Dead => "dead",
                },
                attempts: row.get(3)?,
                last_error: row.get(4)?,
                next_attempt_at_ms: row.get(5)?,
                created_at_ms: row.get(6)?,
                updated_at_ms: row.get(7)?,
            },
        ))
    })? {
        let (record_id, delivery) = row?;
        deliveries.entry(record_id).or_default().push(delivery);
    }
    let mut failures: HashMap<String, Vec<RouteFailureView>> = HashMap::new();
    let mut statement = c.prepare_cached(
        "SELECT event_id, route, record_id, state, attempts, last_error, updated_at
         FROM route_failures WHERE event_id IN (SELECT value FROM json_each(?1))
         ORDER BY route",
    )?;
    for row in statement.query_map(params![page], |row| {
        Ok((
            row.get::<_, String>(0)?,
            RouteFailureView {
                route: row.get(1)?,
                record_id: row.get(2)?,
                state: match row.get::<_, RouteState>(3)? {
                    RouteState::Retry => "retry",
                    RouteState::Dead => "dead",
                },
                attempts: row.get(4)?,
                last_error: row.get(5)?,
                updated_at_ms: row.get(6)?,
            },
        ))
    })? {
        let (event_id, failure) = row?;
        failures.entry(event_id).or_default().push(failure);
    }
    for event in events {
        event.records = records.remove(&event.id).unwrap_or_default();
        for record in &mut event.records {
            record.deliveries = deliveries.remove(&record.id).unwrap_or_default();
        }
        event.failed_routes = failures.remove(&event.id).unwrap_or_default();
    }
    Ok(())
}

/// An event from a row of [`EVENT_COLUMNS`], with its `seq`.
fn event_row(row: &rusqlite::Row<'_>) -> Result<(i64, EventView), rusqlite::Error> {
    Ok((
        row.get(0)?,
        EventView {
            id: row.get(1)?,
            kind: row.get(2)?,
            received_at_ms: row.get(3)?,
            state: match row.get::<_, EventState>(4)? {
                EventState::Due => "pending",
                EventState::Routed => "routed",
                EventState::Dead => "dead",
            },
            attempts: row.get(5)?,
            last_error: row.get(6)?,
            updated_at_ms: row.get(7)?,
            records: Vec::new(),
            failed_routes: Vec::new(),
        },
    ))
}

/// A route's type glob (`*` any run of characters) as a SQLite `GLOB`
/// pattern: its own wildcards `?` and `[` are made literal.
fn glob_pattern(kind: &str) -> String {
    let mut pattern = String::with_capacity(kind.len());
    for ch in kind.chars() {
        match ch {
            '?' => pattern.push_str("[?]"),
            '[' => pattern.push_str("[[]"),
            other => pattern.push(other),
        }
    }
    pattern
}

/// A page of dead letters of every kind, newest first; ties in
/// `updated_at` are ordered by a key unique across kinds.
pub(super) fn dead_letter_page(
    c: &Connection,
    query: &DeadLetterQuery,
) -> Result<DeadLetterPage, rusqlite::Error> {
    let filter = &query.filter;
    let (after_at, after_key) = match &query.after {
        Some(cursor) => (Some(cursor.updated_at_ms), Some(cursor.key.as_str())),
        None => (None, None),
    };
    let mut statement = c.prepare_cached(&format!(
        "SELECT * FROM (
            SELECT record_id, event_id, sink, route, attempts, last_error, created_at, updated_at,
                'd ' || record_id || ' ' || sink AS k
            FROM deliveries WHERE state = {delivery_dead} AND (?1 IS NULL OR sink = ?1)
            AND (?2 IS NULL OR route = ?2) AND (?3 IS NULL OR event_id = ?3)
          UNION ALL
            SELECT record_id, event_id, NULL, route, attempts, last_error, created_at, updated_at,
                'r ' || record_id
            FROM route_failures WHERE state = {route_dead} AND ?1 IS NULL
            AND (?2 IS NULL OR route = ?2) AND (?3 IS NULL OR event_id = ?3)
          UNION ALL
            SELECT NULL, id, NULL, NULL, attempts, last_error, received_at, updated_at, 'e ' || id
            FROM events WHERE state = {event_dead} AND ?1 IS NULL AND ?2 IS NULL
            AND (?3 IS NULL OR id = ?3)
         ) WHERE ?4 IS NULL OR updated_at < ?4 OR (updated_at = ?4 AND k < ?5)
         ORDER BY updated_at DESC, k DESC LIMIT ?6",
        delivery_dead = DeliveryState::Dead,
        route_dead = RouteState::Dead,
        event_dead = EventState::Dead,
    ))?;
    let rows = statement.query_map(
        params![
            filter.sink,
            filter.route,
            filter.event,
            after_at,
            after_key,
            query.limit as i64 + 1
        ],
        |row| Ok((dead_letter(row)?, row.get::<_, String>(8)?)),
    )?;
    let mut rows: Vec<(DeadLetter, String)> = rows.collect::<Result<_, _>>()?;
    let next = if rows.len() > query.limit {
        rows.truncate(query.limit);
        rows.last().map(|(letter, key)| DeadLetterCursor {
            updated_at_ms: letter.updated_at_ms,
            key: key.clone(),
        })
    } else {
        None
    };
    Ok(DeadLetterPage {
        letters: rows.into_iter().map(|(letter, _)| letter).collect(),
        next,
    })
}
