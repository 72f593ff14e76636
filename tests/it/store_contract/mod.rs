//! The store's contract, one suite for every backend (SPEC §10): each test
//! is a function of a `Arc<dyn Store>` and reads back only through the
//! trait, so the same assertions hold for SQLite and PostgreSQL. The
//! [`contract!`] list instantiates every function once per backend:
//! `store_contract::sqlite::<name>` and `store_contract::postgres::<name>`
//! (a fresh database each, skipped without a test server outside CI).

mod browse;
mod deliveries;
mod journal;
mod prune;
mod routing;

use std::sync::Arc;

use bytes::Bytes;
use stripe_router::clock::now_ms;
use stripe_router::config::database_url;
use stripe_router::sinks::Encoded;
use stripe_router::store::{
    EventDetail, NewEvent, NewRecord, PostgresOptions, PostgresStore, RouteFailure, Routing,
    SqliteStore, Store,
};

use crate::pg::TestDatabase;

/// A time far ahead: every row is due by then, leases included.
pub fn far() -> i64 {
    now_ms() + 3_600_000
}

pub fn event(id: &str) -> NewEvent {
    NewEvent {
        id: id.to_owned(),
        kind: "checkout.session.completed".to_owned(),
        received_at_ms: now_ms(),
        body: Bytes::from(format!(r#"{{"id":"{id}"}}"#)),
        routed: false,
        leased: true,
    }
}

pub fn routed(records: Vec<NewRecord>) -> Routing {
    Routing {
        records,
        failed: Vec::new(),
    }
}

pub fn record(event_id: &str, route: &str, sinks: &[&str]) -> NewRecord {
    NewRecord {
        record: Encoded {
            id: format!("{event_id}:{route}"),
            body: Bytes::from(format!(r#"{{"id":"{event_id}:{route}"}}"#)),
        },
        route: route.to_owned(),
        sinks: sinks.iter().map(|s| (*s).to_owned()).collect(),
    }
}

pub fn failure(event_id: &str, route: &str, next_attempt_ms: i64, dead: bool) -> RouteFailure {
    RouteFailure {
        route: route.to_owned(),
        record_id: format!("{event_id}:{route}"),
        error: format!("{route}: session not found"),
        next_attempt_ms,
        dead,
    }
}

/// One event in full, which must be in the journal.
pub async fn detail(store: &dyn Store, event_id: &str) -> EventDetail {
    store
        .event(event_id)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{event_id} is in the journal"))
}

/// The state of one (record, sink) delivery, read through the admin view.
pub async fn delivery_state(
    store: &dyn Store,
    event_id: &str,
    record_id: &str,
    sink: &str,
) -> &'static str {
    let detail = detail(store, event_id).await;
    let record = detail
        .event
        .records
        .iter()
        .find(|r| r.id == record_id)
        .unwrap_or_else(|| panic!("{record_id} is stored"));
    record
        .deliveries
        .iter()
        .find(|d| d.sink == sink)
        .unwrap_or_else(|| panic!("{record_id} has a delivery to {sink}"))
        .state
}

/// A SQLite store in a temporary folder (kept while the test runs).
fn sqlite() -> (tempfile::TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("data/journal.db"), true, 64 << 20).unwrap();
    (dir, Arc::new(store))
}

/// A PostgreSQL store on a fresh database (dropped with the guard), as
/// `serve` opens it; `None` when the test is skipped.
async fn postgres(test: &str) -> Option<(TestDatabase, Arc<dyn Store>)> {
    let db = TestDatabase::create(test).await?;
    let target = database_url::parse(&db.url).unwrap();
    let store = PostgresStore::connect(&target, PostgresOptions::default())
        .await
        .unwrap();
    Some((db, Arc::new(store)))
}

/// Every contract test, once per backend.
macro_rules! contract {
    ($($topic:ident :: $name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (_dir, store) = super::sqlite();
                    super::$topic::$name(store).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some((_db, store)) = super::postgres(stringify!($name)).await else {
                        return;
                    };
                    super::$topic::$name(store).await;
                }
            )*
        }
    };
}

contract!(
    journal::an_event_id_is_journaled_once_even_under_concurrency,
    journal::a_journaled_event_comes_back_as_it_was_sent,
    journal::due_events_come_oldest_first_up_to_the_limit,
    journal::a_page_of_due_events_ends_with_the_one_that_reaches_its_bytes,
    journal::an_event_no_route_wants_is_journaled_routed_and_can_be_rerouted,
    journal::fresh_rows_are_leased_to_the_fast_path,
    journal::an_event_left_to_a_scan_is_due_at_once,
    journal::a_failed_event_is_retried_then_dead_then_replayable,
    routing::save_routing_stores_each_record_once_with_one_delivery_per_sink,
    routing::a_record_is_built_once_and_reroute_adds_only_new_routes,
    routing::one_route_is_stored_while_another_is_retried,
    routing::a_dead_route_is_listed_by_route_and_event_and_replayed,
    routing::reroute_tries_dead_routes_again,
    routing::each_due_event_gets_its_own_settled_ids,
    routing::a_stale_pass_adds_nothing_and_undoes_nothing,
    deliveries::due_deliveries_skip_busy_rows_and_keep_to_the_limit,
    deliveries::due_deliveries_come_oldest_due_first,
    deliveries::deliveries_settle_retry_die_and_replay,
    deliveries::replay_by_event_takes_every_kind_of_dead_letter,
    browse::events_page_newest_first_with_their_records_and_deliveries,
    browse::one_event_in_full_keeps_the_newest_attempts_only,
    browse::dead_letters_page_newest_first_across_kinds,
    prune::prune_removes_only_finished_history,
    prune::prune_keeps_a_dead_route_and_its_records_until_replayed,
    prune::prune_removes_at_most_limit_rows_of_each_table_a_call,
    prune::a_fresh_store_is_healthy_and_empty,
);
