//! The journal's tables and indexes. Every statement is `IF NOT EXISTS`:
//! opening a journal written by an older version adds what it lacks
//! (`route_failures`, `delivery_attempts`) in place.

use super::state::{DeliveryState, EventState, RouteState};

/// The statements that create the journal; state integers from [`super::state`].
pub(super) fn schema() -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    state INTEGER NOT NULL DEFAULT {event_due},      -- EventState
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    reroute INTEGER NOT NULL DEFAULT 0,
    updated_at INTEGER NOT NULL
) STRICT;
-- The raw body apart from the row whose state changes: SQLite rewrites a
-- whole row on UPDATE, and the body is most of it.
CREATE TABLE IF NOT EXISTS event_bodies (
    seq INTEGER PRIMARY KEY,
    body BLOB NOT NULL
) STRICT;
CREATE TRIGGER IF NOT EXISTS event_bodies_follow AFTER DELETE ON events
BEGIN
    DELETE FROM event_bodies WHERE seq = OLD.seq;
END;
CREATE INDEX IF NOT EXISTS events_due ON events (next_attempt_at) WHERE state = {event_due};
CREATE INDEX IF NOT EXISTS events_routed ON events (updated_at) WHERE state = {event_routed};
CREATE INDEX IF NOT EXISTS events_dead ON events (updated_at) WHERE state = {event_dead};
CREATE TABLE IF NOT EXISTS records (
    id TEXT PRIMARY KEY,
    event_id TEXT NOT NULL,
    route TEXT NOT NULL,
    body BLOB NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS records_event ON records (event_id);
CREATE INDEX IF NOT EXISTS records_created ON records (created_at);
CREATE TABLE IF NOT EXISTS deliveries (
    record_id TEXT NOT NULL,
    sink TEXT NOT NULL,
    route TEXT NOT NULL,
    event_id TEXT NOT NULL,
    state INTEGER NOT NULL DEFAULT {pending},      -- DeliveryState
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (record_id, sink)
) STRICT;
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (sink, next_attempt_at) WHERE state = {pending};
CREATE INDEX IF NOT EXISTS deliveries_dead ON deliveries (sink) WHERE state = {delivery_dead};
CREATE INDEX IF NOT EXISTS deliveries_done ON deliveries (updated_at) WHERE state = {delivered};
-- Routes of an event whose record could not be built: retried with the
-- event, or given up (a route-level dead letter).
CREATE TABLE IF NOT EXISTS route_failures (
    event_id TEXT NOT NULL,
    route TEXT NOT NULL,
    record_id TEXT NOT NULL,
    state INTEGER NOT NULL,                -- RouteState
    attempts INTEGER NOT NULL,
    last_error TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (event_id, route)
) STRICT;
CREATE INDEX IF NOT EXISTS route_failures_dead ON route_failures (updated_at) WHERE state = {route_dead};
CREATE TRIGGER IF NOT EXISTS route_failures_follow AFTER DELETE ON events
BEGIN
    DELETE FROM route_failures WHERE event_id = OLD.id;
END;
-- The newest attempts of each delivery (`store::ATTEMPTS_KEPT`), for the
-- admin API: when, how it ended (a DeliveryState: pending means retried),
-- the sink's error.
CREATE TABLE IF NOT EXISTS delivery_attempts (
    id INTEGER PRIMARY KEY,
    record_id TEXT NOT NULL,
    sink TEXT NOT NULL,
    at INTEGER NOT NULL,
    outcome INTEGER NOT NULL,              -- DeliveryState
    error TEXT
) STRICT;
CREATE INDEX IF NOT EXISTS delivery_attempts_of ON delivery_attempts (record_id, sink, id);
CREATE TRIGGER IF NOT EXISTS delivery_attempts_follow AFTER DELETE ON deliveries
BEGIN
    DELETE FROM delivery_attempts WHERE record_id = OLD.record_id AND sink = OLD.sink;
END;
-- One row the writer rewrites to find out whether the journal takes writes:
-- at start, and while writes fail.
CREATE TABLE IF NOT EXISTS probe (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    at INTEGER NOT NULL
) STRICT;
",
        event_due = EventState::Due,
        event_routed = EventState::Routed,
        event_dead = EventState::Dead,
        pending = DeliveryState::Pending,
        delivered = DeliveryState::Delivered,
        delivery_dead = DeliveryState::Dead,
        route_dead = RouteState::Dead,
    )
}
