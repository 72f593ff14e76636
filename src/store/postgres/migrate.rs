//! The PostgreSQL journal's schema versions: an ordered list of SQL steps
//! and a `schema_version` table holding the steps applied. Every replica
//! runs `migrate` at start (and `stripe-router store migrate` does it
//! explicitly) inside one transaction holding a transaction-level advisory
//! lock, so replicas starting at once apply each step once, and the others
//! wait and find nothing left to do. A database newer than this binary is
//! refused. States are the integers of [`crate::store::sqlite::state`].

use tokio_postgres::Client;

/// The advisory lock every migration holds ("stripe-r" in ASCII): one
/// number of the database's lock space, taken by nothing else.
const LOCK: i64 = 0x7374_7269_7065_2d72;

/// Step 1: the journal's tables. Times are unix milliseconds; each row
/// that can be worked on carries its lease (`lease_until`, the database's
/// clock, and `lease_owner`, the replica holding it).
const SCHEMA_1: &str = "
CREATE TABLE events (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    state INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL DEFAULT 0,
    last_error TEXT,
    reroute BOOLEAN NOT NULL DEFAULT FALSE,
    updated_at BIGINT NOT NULL,
    lease_until BIGINT NOT NULL DEFAULT 0,
    lease_owner TEXT,
    body BYTEA NOT NULL
);
CREATE INDEX events_due ON events (next_attempt_at, received_at) WHERE state = 0;
CREATE INDEX events_routed ON events (updated_at) WHERE state = 1;
CREATE INDEX events_dead ON events (updated_at) WHERE state = 2;
CREATE INDEX events_held ON events (lease_owner) WHERE lease_owner IS NOT NULL;
CREATE TABLE records (
    id TEXT PRIMARY KEY,
    event_id TEXT NOT NULL,
    route TEXT NOT NULL,
    body BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX records_event ON records (event_id);
CREATE INDEX records_created ON records (created_at);
CREATE TABLE deliveries (
    record_id TEXT NOT NULL,
    sink TEXT NOT NULL,
    route TEXT NOT NULL,
    event_id TEXT NOT NULL,
    state INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    lease_until BIGINT NOT NULL DEFAULT 0,
    lease_owner TEXT,
    PRIMARY KEY (record_id, sink)
);
CREATE INDEX deliveries_due ON deliveries (sink, next_attempt_at, created_at) WHERE state = 0;
CREATE INDEX deliveries_dead ON deliveries (sink) WHERE state = 2;
CREATE INDEX deliveries_done ON deliveries (updated_at) WHERE state = 1;
CREATE INDEX deliveries_event ON deliveries (event_id);
CREATE INDEX deliveries_held ON deliveries (lease_owner) WHERE lease_owner IS NOT NULL;
CREATE TABLE route_failures (
    event_id TEXT NOT NULL,
    route TEXT NOT NULL,
    record_id TEXT NOT NULL,
    state INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (event_id, route)
);
CREATE INDEX route_failures_dead ON route_failures (updated_at) WHERE state = 2;
CREATE TABLE delivery_attempts (
    id BIGSERIAL PRIMARY KEY,
    record_id TEXT NOT NULL,
    sink TEXT NOT NULL,
    at BIGINT NOT NULL,
    outcome INTEGER NOT NULL,
    error TEXT
);
CREATE INDEX delivery_attempts_of ON delivery_attempts (record_id, sink, id);
";

/// Step 2: bodies are stored as they are, not compressed. A Stripe event
/// (2–8 KB) is over PostgreSQL's 2 KB toast threshold, and compressing
/// every body on insert was half of the server's CPU for an event; rows up
/// to a page now stay in the row uncompressed. Larger bodies are still
/// compressed and moved out of line as before.
const SCHEMA_2: &str = "
ALTER TABLE events SET (toast_tuple_target = 8160);
ALTER TABLE records SET (toast_tuple_target = 8160);
";

/// The steps, oldest first: step `n` (1-based) brings the database from
/// version `n - 1` to `n`. Append new steps; never edit a released one.
pub(super) const STEPS: &[&str] = &[SCHEMA_1, SCHEMA_2];

/// The version this binary writes.
pub fn latest() -> u32 {
    STEPS.len() as u32
}

/// Why migrating failed.
#[derive(Debug)]
pub(super) enum MigrateError {
    Db(tokio_postgres::Error),
    TooNew { found: u32, known: u32 },
}

impl From<tokio_postgres::Error> for MigrateError {
    fn from(e: tokio_postgres::Error) -> MigrateError {
        MigrateError::Db(e)
    }
}

/// Applies the missing steps in one transaction under the advisory lock;
/// the version before and after.
pub(super) async fn migrate(client: &mut Client) -> Result<(u32, u32), MigrateError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])
        .await?;
    // `IF NOT EXISTS` on an existing table is a NOTICE, which the driver
    // logs at info on every start and operator command: not news.
    tx.batch_execute("SET LOCAL client_min_messages = warning")
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_version (
            version INTEGER PRIMARY KEY,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )",
    )
    .await?;
    let before: i32 = tx
        .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])
        .await?
        .get(0);
    let before = u32::try_from(before).unwrap_or(0);
    let known = latest();
    if before > known {
        return Err(MigrateError::TooNew {
            found: before,
            known,
        });
    }
    for (n, step) in STEPS.iter().enumerate().skip(before as usize) {
        tx.batch_execute(step).await?;
        let version = i32::try_from(n + 1).unwrap_or(i32::MAX);
        tx.execute(
            "INSERT INTO schema_version (version) VALUES ($1)",
            &[&version],
        )
        .await?;
    }
    tx.commit().await?;
    Ok((before, known))
}
