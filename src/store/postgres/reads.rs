//! The queries of the delivery path and the operator commands: due scans
//! that claim what they return, record bodies, dead letters and depths.
//!
//! A scan claims rows in one statement: `UPDATE ... WHERE key IN (SELECT
//! ... FOR UPDATE SKIP LOCKED) RETURNING ...` sets this replica's lease on
//! them, so two replicas scanning at once never get the same row, and a row
//! whose lease another live replica holds is not taken. This replica's own
//! rows are taken once due, as the SQLite store's scans do.

use std::collections::HashMap;

use bytes::Bytes;
use deadpool_postgres::GenericClient;
use tokio_postgres::{Error, Row};

use super::Shared;
use super::writes::{DB_NOW, query};
use crate::sinks::Encoded;
use crate::store::{DeadLetter, Depths, Filter, PendingDelivery, PendingEvent, SinkQueue};

/// Claims the events due for routing at `now_ms`, oldest first, each with
/// the record ids it must not build again.
pub(super) async fn due_events(
    shared: &Shared,
    c: &mut deadpool_postgres::Client,
    now_ms: i64,
    limit: usize,
    max_bytes: usize,
) -> Result<Vec<PendingEvent>, Error> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let max_bytes = i64::try_from(max_bytes).unwrap_or(i64::MAX);
    // The page's rows are locked first, then only those whose bodies before
    // them come to less than `max_bytes` are claimed (a window function
    // cannot run where rows are locked); the others are let go at commit.
    let rows = query(
        &*c,
        &format!(
            "WITH page AS (
                SELECT seq, next_attempt_at, received_at, octet_length(body) AS size
                FROM events WHERE state = 0 AND next_attempt_at <= $1
                AND (lease_until <= {DB_NOW} OR lease_owner = $4)
                ORDER BY next_attempt_at, received_at LIMIT $2 FOR UPDATE SKIP LOCKED),
             kept AS (
                SELECT seq FROM (
                    SELECT seq, SUM(size) OVER (ORDER BY next_attempt_at, received_at, seq
                        ROWS UNBOUNDED PRECEDING) - size AS before
                    FROM page) p
                WHERE before < $5)
             UPDATE events e SET lease_until = {DB_NOW} + $3::BIGINT, lease_owner = $4
             WHERE e.seq IN (SELECT seq FROM kept)
             RETURNING e.id, e.body, e.received_at, e.attempts, e.reroute, e.type,
                e.next_attempt_at"
        ),
        &[&now_ms, &limit, &shared.lease_ms, &shared.owner, &max_bytes],
    )
    .await?;
    let mut due: Vec<(i64, PendingEvent)> = rows
        .iter()
        .map(|row| {
            (
                row.get::<_, i64>(6),
                PendingEvent {
                    id: row.get(0),
                    body: Bytes::from(row.get::<_, Vec<u8>>(1)),
                    received_at_ms: row.get(2),
                    attempts: attempts(row, 3),
                    reroute: row.get(4),
                    kind: row.get(5),
                    settled: Vec::new(),
                },
            )
        })
        .collect();
    due.sort_by_key(|(next, event)| (*next, event.received_at_ms));
    let mut due: Vec<PendingEvent> = due.into_iter().map(|(_, event)| event).collect();
    if due.is_empty() {
        return Ok(due);
    }
    let page: Vec<&str> = due.iter().map(|e| e.id.as_str()).collect();
    let rows = query(
        &*c,
        "SELECT event_id, id FROM records WHERE event_id = ANY($1)
         UNION ALL
         SELECT event_id, record_id FROM route_failures WHERE state = 2 AND event_id = ANY($1)",
        &[&page],
    )
    .await?;
    let mut settled: HashMap<String, Vec<String>> = HashMap::new();
    for row in rows {
        settled.entry(row.get(0)).or_default().push(row.get(1));
    }
    for event in &mut due {
        if let Some(ids) = settled.remove(&event.id) {
            event.settled = ids;
        }
    }
    Ok(due)
}

pub(super) async fn record_body(
    c: &impl GenericClient,
    record_id: &str,
) -> Result<Option<Bytes>, Error> {
    let rows = query(c, "SELECT body FROM records WHERE id = $1", &[&record_id]).await?;
    Ok(rows
        .first()
        .map(|row| Bytes::from(row.get::<_, Vec<u8>>(0))))
}

/// Claims the deliveries due for `sink` at `now_ms`, oldest first,
/// skipping `busy` (record ids this process is attempting).
pub(super) async fn due_deliveries(
    shared: &Shared,
    c: &mut deadpool_postgres::Client,
    sink: String,
    now_ms: i64,
    limit: usize,
    busy: Vec<String>,
) -> Result<Vec<PendingDelivery>, Error> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = query(
        &*c,
        &format!(
            "UPDATE deliveries d SET lease_until = {DB_NOW} + $5::BIGINT, lease_owner = $6
             FROM (SELECT record_id, sink FROM deliveries WHERE state = 0 AND sink = $1
                   AND next_attempt_at <= $2 AND (lease_until <= {DB_NOW} OR lease_owner = $6)
                   AND NOT (record_id = ANY($4))
                   ORDER BY next_attempt_at, created_at LIMIT $3 FOR UPDATE SKIP LOCKED) c,
                  records r LEFT JOIN events e ON e.id = r.event_id
             WHERE d.record_id = c.record_id AND d.sink = c.sink AND r.id = d.record_id
             RETURNING d.record_id, d.sink, d.route, r.body, d.attempts, d.created_at,
                COALESCE(e.received_at, d.created_at), d.next_attempt_at"
        ),
        &[
            &sink,
            &now_ms,
            &limit,
            &busy,
            &shared.lease_ms,
            &shared.owner,
        ],
    )
    .await?;
    let mut due: Vec<(i64, PendingDelivery)> = rows
        .iter()
        .map(|row| {
            (
                row.get::<_, i64>(7),
                PendingDelivery {
                    record: Encoded {
                        id: row.get(0),
                        body: Bytes::from(row.get::<_, Vec<u8>>(3)),
                    },
                    sink: row.get(1),
                    route: row.get(2),
                    attempts: attempts(row, 4),
                    created_at_ms: row.get(5),
                    received_at_ms: row.get(6),
                },
            )
        })
        .collect();
    due.sort_by_key(|(next, delivery)| (*next, delivery.created_at_ms));
    Ok(due.into_iter().map(|(_, delivery)| delivery).collect())
}

/// Dead deliveries, then dead routes (no sink), then events that cannot be
/// routed (no sink, no route), each oldest first.
pub(super) async fn dead_letters(
    c: &mut deadpool_postgres::Client,
    filter: Filter,
) -> Result<Vec<DeadLetter>, Error> {
    let c = &*c;
    let mut letters: Vec<DeadLetter> = query(
        c,
        "SELECT record_id, event_id, sink, route, attempts, last_error, created_at, updated_at
         FROM deliveries WHERE state = 2 AND ($1::TEXT IS NULL OR sink = $1)
         AND ($2::TEXT IS NULL OR route = $2) AND ($3::TEXT IS NULL OR event_id = $3)
         ORDER BY updated_at",
        &[&filter.sink, &filter.route, &filter.event],
    )
    .await?
    .iter()
    .map(dead_letter)
    .collect();
    if filter.sink.is_none() {
        letters.extend(
            query(
                c,
                "SELECT record_id, event_id, NULL::TEXT, route, attempts, last_error, created_at,
                 updated_at FROM route_failures WHERE state = 2
                 AND ($1::TEXT IS NULL OR route = $1) AND ($2::TEXT IS NULL OR event_id = $2)
                 ORDER BY updated_at",
                &[&filter.route, &filter.event],
            )
            .await?
            .iter()
            .map(dead_letter),
        );
    }
    if filter.sink.is_none() && filter.route.is_none() {
        letters.extend(
            query(
                c,
                "SELECT NULL::TEXT, id, NULL::TEXT, NULL::TEXT, attempts, last_error, received_at,
                 updated_at FROM events WHERE state = 2 AND ($1::TEXT IS NULL OR id = $1)
                 ORDER BY updated_at",
                &[&filter.event],
            )
            .await?
            .iter()
            .map(dead_letter),
        );
    }
    Ok(letters)
}

/// Queue figures, all from one snapshot.
pub(super) async fn depths(c: &mut deadpool_postgres::Client) -> Result<Depths, Error> {
    let tx = c
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let counts = query(
        &tx,
        "SELECT (SELECT COUNT(*) FROM events WHERE state = 0),
                (SELECT COUNT(*) FROM events WHERE state = 2),
                (SELECT COUNT(*) FROM route_failures WHERE state = 2)",
        &[],
    )
    .await?;
    let count = |i: usize| counts.first().map_or(0, |row| row.get::<_, i64>(i) as u64);
    let mut depths = Depths {
        events_pending: count(0),
        events_dead: count(1),
        routes_dead: count(2),
        sinks: Default::default(),
    };
    for row in query(
        &tx,
        "SELECT sink, state, COUNT(*) FROM deliveries WHERE state IN (0, 2) GROUP BY sink, state",
        &[],
    )
    .await?
    {
        let entry: &mut SinkQueue = depths.sinks.entry(row.get(0)).or_default();
        let n = row.get::<_, i64>(2) as u64;
        if row.get::<_, i32>(1) == 0 {
            entry.pending = n;
        } else {
            entry.dead = n;
        }
    }
    tx.commit().await?;
    Ok(depths)
}

/// A dead letter from a row of `record_id, event_id, sink, route, attempts,
/// last_error, created_at, updated_at`.
pub(super) fn dead_letter(row: &Row) -> DeadLetter {
    DeadLetter {
        record_id: row.get(0),
        event_id: row.get(1),
        sink: row.get(2),
        route: row.get(3),
        attempts: attempts(row, 4),
        last_error: row.get(5),
        created_at_ms: row.get(6),
        updated_at_ms: row.get(7),
    }
}

/// An `INTEGER` count column as the rows carry it.
pub(super) fn attempts(row: &Row, i: usize) -> u32 {
    u32::try_from(row.get::<_, i32>(i)).unwrap_or(0)
}
