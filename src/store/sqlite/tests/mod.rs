//! Tests of what is the SQLite store's own (its tables, triggers, upgrades
//! and full-disk health), by topic; the helpers they share. What every
//! backend must do is the store-contract suite's (`tests/it/store_contract`),
//! which runs on SQLite too.

mod browse;
mod health;
mod migrate;
mod prune;
mod routes;
mod state;

use bytes::Bytes;

use super::SqliteStore;
use crate::clock::now_ms;
use crate::sinks::Encoded;
use crate::store::{NewEvent, NewRecord, RouteFailure, Routing};

pub(super) fn open() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("data/journal.db"), true, 64 << 20).unwrap();
    (dir, store)
}

pub(super) fn event(id: &str) -> NewEvent {
    NewEvent {
        id: id.to_owned(),
        kind: "checkout.session.completed".to_owned(),
        received_at_ms: now_ms(),
        body: Bytes::from(format!(r#"{{"id":"{id}"}}"#)),
        routed: false,
        leased: true,
    }
}

pub(super) fn routed(records: Vec<NewRecord>) -> Routing {
    Routing {
        records,
        failed: Vec::new(),
    }
}

pub(super) fn record(event_id: &str, route: &str, sinks: &[&str]) -> NewRecord {
    NewRecord {
        record: Encoded {
            id: format!("{event_id}:{route}"),
            body: Bytes::from(format!(r#"{{"id":"{event_id}:{route}"}}"#)),
        },
        route: route.to_owned(),
        sinks: sinks.iter().map(|s| (*s).to_owned()).collect(),
    }
}

pub(super) fn failure(
    event_id: &str,
    route: &str,
    next_attempt_ms: i64,
    dead: bool,
) -> RouteFailure {
    RouteFailure {
        route: route.to_owned(),
        record_id: format!("{event_id}:{route}"),
        error: format!("{route}: session not found"),
        next_attempt_ms,
        dead,
    }
}

/// One number from the journal, read beside the store.
pub(super) fn count(store: &SqliteStore, sql: &str) -> i64 {
    let reader = store.reader.lock().unwrap();
    reader.query_row(sql, [], |row| row.get(0)).unwrap()
}
