//! The admin API's queries on PostgreSQL: pages of events with what
//! routing made of them, one event in full, pages of dead letters. Each
//! page reads one snapshot (a read-only repeatable-read transaction), so
//! that an event and its rows agree.

use std::collections::HashMap;

use bytes::Bytes;
use deadpool_postgres::{GenericClient, Transaction};
use tokio_postgres::{Error, Row};

use super::reads::{attempts, dead_letter};
use super::writes::query;
use crate::store::views::kept_attempts;
use crate::store::{
    AttemptView, DeadLetter, DeadLetterCursor, DeadLetterPage, DeadLetterQuery, DeliveryView,
    EventDetail, EventPage, EventQuery, EventView, RecordView, RouteFailureView,
};

/// The columns every event query reads, in [`event_row`]'s order.
const EVENT_COLUMNS: &str =
    "e.seq, e.id, e.type, e.received_at, e.state, e.attempts, e.last_error, e.updated_at";

async fn snapshot(c: &mut deadpool_postgres::Client) -> Result<Transaction<'_>, Error> {
    c.build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
}

/// A page of events, newest first (by journal order).
pub(super) async fn events(
    c: &mut deadpool_postgres::Client,
    query_: EventQuery,
) -> Result<EventPage, Error> {
    let tx = snapshot(c).await?;
    let pattern = query_.kind.as_deref().map(like_pattern);
    let limit = i64::try_from(query_.limit).unwrap_or(i64::MAX - 1) + 1;
    let rows = query(
        &tx,
        &format!(
            "SELECT {EVENT_COLUMNS} FROM events e
             WHERE ($1::BIGINT IS NULL OR e.seq < $1) AND ($2::TEXT IS NULL OR e.type LIKE $2)
             ORDER BY e.seq DESC LIMIT $3"
        ),
        &[&query_.after, &pattern, &limit],
    )
    .await?;
    let mut rows: Vec<(i64, EventView)> = rows.iter().map(event_row).collect();
    let next = if rows.len() > query_.limit {
        rows.truncate(query_.limit);
        rows.last().map(|(seq, _)| *seq)
    } else {
        None
    };
    let mut events: Vec<EventView> = rows.into_iter().map(|(_, event)| event).collect();
    attach(&tx, &mut events).await?;
    tx.commit().await?;
    Ok(EventPage { events, next })
}

/// One event in full, or `None`.
pub(super) async fn event(
    c: &mut deadpool_postgres::Client,
    id: String,
) -> Result<Option<EventDetail>, Error> {
    let tx = snapshot(c).await?;
    let rows = query(
        &tx,
        &format!("SELECT {EVENT_COLUMNS}, e.body FROM events e WHERE e.id = $1"),
        &[&id],
    )
    .await?;
    let Some(row) = rows.first() else {
        tx.commit().await?;
        return Ok(None);
    };
    let body = Bytes::from(row.get::<_, Vec<u8>>(8));
    let mut events = vec![event_row(row).1];
    attach(&tx, &mut events).await?;
    let Some(event) = events.pop() else {
        return Ok(None);
    };
    let ids: Vec<&str> = event.records.iter().map(|r| r.id.as_str()).collect();
    let mut bodies: HashMap<String, Bytes> = HashMap::new();
    for row in query(
        &tx,
        "SELECT id, body FROM records WHERE id = ANY($1)",
        &[&ids],
    )
    .await?
    {
        bodies.insert(row.get(0), Bytes::from(row.get::<_, Vec<u8>>(1)));
    }
    let mut kept: HashMap<(String, String), Vec<AttemptView>> = HashMap::new();
    for row in query(
        &tx,
        "SELECT record_id, sink, at, outcome, error FROM delivery_attempts
         WHERE record_id = ANY($1) ORDER BY id",
        &[&ids],
    )
    .await?
    {
        kept.entry((row.get(0), row.get(1)))
            .or_default()
            .push(AttemptView {
                at_ms: row.get(2),
                outcome: match row.get::<_, i32>(3) {
                    0 => "retry",
                    1 => "delivered",
                    _ => "dead",
                },
                error: row.get(4),
            });
    }
    tx.commit().await?;
    let record_bodies = event
        .records
        .iter()
        .map(|r| bodies.remove(&r.id).unwrap_or_default())
        .collect();
    let attempts = event
        .records
        .iter()
        .map(|r| {
            r.deliveries
                .iter()
                .map(|d| {
                    let stored = kept
                        .remove(&(r.id.clone(), d.sink.clone()))
                        .unwrap_or_default();
                    kept_attempts(stored, d)
                })
                .collect()
        })
        .collect();
    Ok(Some(EventDetail {
        event,
        body,
        record_bodies,
        attempts,
    }))
}

/// Fills in each event's records, their deliveries and its failed routes:
/// one query per table for the whole page.
async fn attach(c: &impl GenericClient, events: &mut [EventView]) -> Result<(), Error> {
    if events.is_empty() {
        return Ok(());
    }
    let page: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
    let mut records: HashMap<String, Vec<RecordView>> = HashMap::new();
    for row in query(
        c,
        "SELECT event_id, id, route, created_at FROM records WHERE event_id = ANY($1)
         ORDER BY created_at, route",
        &[&page],
    )
    .await?
    {
        records.entry(row.get(0)).or_default().push(RecordView {
            id: row.get(1),
            route: row.get(2),
            created_at_ms: row.get(3),
            deliveries: Vec::new(),
        });
    }
    let mut deliveries: HashMap<String, Vec<DeliveryView>> = HashMap::new();
    for row in query(
        c,
        "SELECT record_id, sink, state, attempts, last_error, next_attempt_at, created_at,
         updated_at FROM deliveries WHERE event_id = ANY($1) ORDER BY sink",
        &[&page],
    )
    .await?
    {
        deliveries
            .entry(row.get(0))
            .or_default()
            .push(DeliveryView {
                sink: row.get(1),
                state: match row.get::<_, i32>(2) {
                    0 => "pending",
                    1 => "delivered",
                    _ => "dead",
                },
                attempts: attempts(&row, 3),
                last_error: row.get(4),
                next_attempt_at_ms: row.get(5),
                created_at_ms: row.get(6),
                updated_at_ms: row.get(7),
            });
    }
    let mut failures: HashMap<String, Vec<RouteFailureView>> = HashMap::new();
    for row in query(
        c,
        "SELECT event_id, route, record_id, state, attempts, last_error, updated_at
         FROM route_failures WHERE event_id = ANY($1) ORDER BY route",
        &[&page],
    )
    .await?
    {
        failures
            .entry(row.get(0))
            .or_default()
            .push(RouteFailureView {
                route: row.get(1),
                record_id: row.get(2),
                state: if row.get::<_, i32>(3) == 0 {
                    "retry"
                } else {
                    "dead"
                },
                attempts: attempts(&row, 4),
                last_error: row.get(5),
                updated_at_ms: row.get(6),
            });
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
fn event_row(row: &Row) -> (i64, EventView) {
    (
        row.get(0),
        EventView {
            id: row.get(1),
            kind: row.get(2),
            received_at_ms: row.get(3),
            state: match row.get::<_, i32>(4) {
                0 => "pending",
                1 => "routed",
                _ => "dead",
            },
            attempts: attempts(row, 5),
            last_error: row.get(6),
            updated_at_ms: row.get(7),
            records: Vec::new(),
            failed_routes: Vec::new(),
        },
    )
}

/// A route's type glob (`*` any run of characters) as a `LIKE` pattern:
/// `LIKE`'s own wildcards `%` and `_` (and its escape `\`) are literal.
fn like_pattern(kind: &str) -> String {
    let mut pattern = String::with_capacity(kind.len());
    for ch in kind.chars() {
        match ch {
            '*' => pattern.push('%'),
            '%' | '_' | '\\' => {
                pattern.push('\\');
                pattern.push(ch);
            }
            other => pattern.push(other),
        }
    }
    pattern
}

/// A page of dead letters of every kind, newest first; ties in
/// `updated_at` are ordered by a key unique across kinds (bytewise, so
/// the order is the database's collation's whatever it is).
pub(super) async fn dead_letter_page(
    c: &mut deadpool_postgres::Client,
    query_: DeadLetterQuery,
) -> Result<DeadLetterPage, Error> {
    let filter = &query_.filter;
    let (after_at, after_key) = match &query_.after {
        Some(cursor) => (Some(cursor.updated_at_ms), Some(cursor.key.as_str())),
        None => (None, None),
    };
    let limit = i64::try_from(query_.limit).unwrap_or(i64::MAX - 1) + 1;
    let rows = query(
        &*c,
        "SELECT * FROM (
            SELECT record_id, event_id, sink, route, attempts, last_error, created_at, updated_at,
                ('d ' || record_id || ' ' || sink) COLLATE \"C\" AS k
            FROM deliveries WHERE state = 2 AND ($1::TEXT IS NULL OR sink = $1)
            AND ($2::TEXT IS NULL OR route = $2) AND ($3::TEXT IS NULL OR event_id = $3)
          UNION ALL
            SELECT record_id, event_id, NULL, route, attempts, last_error, created_at, updated_at,
                ('r ' || record_id) COLLATE \"C\"
            FROM route_failures WHERE state = 2 AND $1::TEXT IS NULL
            AND ($2::TEXT IS NULL OR route = $2) AND ($3::TEXT IS NULL OR event_id = $3)
          UNION ALL
            SELECT NULL, id, NULL, NULL, attempts, last_error, received_at, updated_at,
                ('e ' || id) COLLATE \"C\"
            FROM events WHERE state = 2 AND $1::TEXT IS NULL AND $2::TEXT IS NULL
            AND ($3::TEXT IS NULL OR id = $3)
         ) letters
         WHERE $4::BIGINT IS NULL OR updated_at < $4
            OR (updated_at = $4 AND k < ($5::TEXT COLLATE \"C\"))
         ORDER BY updated_at DESC, k DESC LIMIT $6",
        &[
            &filter.sink,
            &filter.route,
            &filter.event,
            &after_at,
            &after_key,
            &limit,
        ],
    )
    .await?;
    let mut rows: Vec<(DeadLetter, String)> = rows
        .iter()
        .map(|row| (dead_letter(row), row.get::<_, String>(8)))
        .collect();
    let next = if rows.len() > query_.limit {
        rows.truncate(query_.limit);
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
