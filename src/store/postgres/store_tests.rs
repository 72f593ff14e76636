//! The PostgreSQL store's own behaviour on a real server (see
//! `testing`): one id acknowledged once across replicas, leases taken
//! over only when their holder is gone, claims that never overlap,
//! migrations, and errors that name the problem without the password.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::testing::TestDb;
use super::{PostgresOptions, PostgresStore};
use crate::clock::now_ms;
use crate::sinks::Encoded;
use crate::store::{
    Filter, Journaled, NewEvent, NewRecord, RouteFailure, Routing, Settle, Store, StoreError,
};

/// An event as Stripe would send it, due now (also for `batch_tests`).
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

fn record(event_id: &str, route: &str, sinks: &[&str]) -> NewRecord {
    NewRecord {
        record: Encoded {
            id: format!("rec_{event_id}_{route}"),
            body: Bytes::from(format!(r#"{{"event":"{event_id}","route":"{route}"}}"#)),
        },
        route: route.to_owned(),
        sinks: sinks.iter().map(|s| (*s).to_owned()).collect(),
    }
}

/// A store on `db` (also for `batch_tests`).
pub(super) async fn store(db: &TestDb, lease: Duration) -> PostgresStore {
    PostgresStore::connect(
        &db.target(),
        PostgresOptions {
            pool_size: 8,
            lease,
            ..PostgresOptions::default()
        },
    )
    .await
    .unwrap()
}

/// Polls `check` until it answers `Some`, for at most `within`.
async fn eventually<T, F, Fut>(within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_id_is_new_on_exactly_one_of_two_replicas() {
    let Some(db) = TestDb::create("one_id_is_new_on_exactly_one_of_two_replicas").await else {
        return;
    };
    let a = Arc::new(store(&db, Duration::from_secs(5)).await);
    let b = Arc::new(store(&db, Duration::from_secs(5)).await);
    let ids: Vec<String> = (0..200).map(|i| format!("evt_dup_{i}")).collect();
    let mut tasks = tokio::task::JoinSet::new();
    for (n, id) in ids.iter().enumerate() {
        // Each id sent twice to each replica, concurrently.
        for replica in [&a, &b, &a, &b] {
            let (replica, id) = (replica.clone(), id.clone());
            tasks.spawn(async move { (id.clone(), replica.journal(event(&id)).await.unwrap()) });
        }
        if n % 50 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let mut new = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let (id, journaled) = done.unwrap();
        if journaled == Journaled::Inserted {
            new.push(id);
        }
    }
    new.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(new, expected, "each id new exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_replicas_rows_are_taken_over_after_its_lease_and_not_before() {
    let Some(db) = TestDb::create("takeover").await else {
        return;
    };
    let lease = Duration::from_millis(400);
    let a = store(&db, lease).await;
    let b = store(&db, lease).await;
    assert_eq!(
        a.journal(event("evt_held")).await.unwrap(),
        Journaled::Inserted
    );
    a.journal(event("evt_routed")).await.unwrap();
    let built = a
        .save_routing(
            "evt_routed",
            Routing {
                records: vec![record("evt_routed", "orders", &["hook"])],
                failed: Vec::new(),
            },
        )
        .await
        .unwrap();
    assert_eq!(built.len(), 1);
    // While A lives it renews: B, scanning as if everything were due,
    // gets none of A's rows for several leases.
    let until = tokio::time::Instant::now() + lease * 4;
    while tokio::time::Instant::now() < until {
        assert!(b.due_events(i64::MAX, 10).await.unwrap().is_empty());
        assert!(
            b.due_deliveries("hook", i64::MAX, 10, Vec::new())
                .await
                .unwrap()
                .is_empty()
        );
        tokio::time::sleep(lease / 4).await;
    }
    drop(a);
    let events = eventually(lease * 10, || async {
        let due = b.due_events(i64::MAX, 10).await.unwrap();
        (!due.is_empty()).then_some(due)
    })
    .await;
    assert_eq!(
        events.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        ["evt_held"]
    );
    let deliveries = eventually(lease * 10, || async {
        let due = b
            .due_deliveries("hook", i64::MAX, 10, Vec::new())
            .await
            .unwrap();
        (!due.is_empty()).then_some(due)
    })
    .await;
    assert_eq!(deliveries[0].record.id, "rec_evt_routed_orders");
    assert_eq!(deliveries[0].route, "orders");
    // B holds them now: another scan of B's own takes them again only
    // when due, and a third replica not at all while B lives.
    let c = store(&db, lease).await;
    assert!(c.due_events(i64::MAX, 10).await.unwrap().is_empty());
    b.settle("rec_evt_routed_orders", "hook", Settle::Delivered)
        .await
        .unwrap();
    assert!(
        c.due_deliveries("hook", i64::MAX, 10, Vec::new())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_scanning_at_once_never_get_the_same_row() {
    let Some(db) = TestDb::create("skip_locked").await else {
        return;
    };
    let lease = Duration::from_secs(30);
    let a = Arc::new(store(&db, lease).await);
    let b = Arc::new(store(&db, lease).await);
    for i in 0..300 {
        a.journal(event(&format!("evt_scan_{i:03}"))).await.unwrap();
    }
    // Released: as a replay leaves them, due now for anyone.
    let client = a.shared.client().await.unwrap();
    client
        .batch_execute("UPDATE events SET lease_until = 0, lease_owner = NULL")
        .await
        .unwrap();
    let (from_a, from_b) = tokio::join!(
        tokio::spawn(claim_all(a.clone())),
        tokio::spawn(claim_all(b.clone()))
    );
    let (from_a, from_b) = (from_a.unwrap(), from_b.unwrap());
    let a_set: HashSet<_> = from_a.iter().collect();
    let b_set: HashSet<_> = from_b.iter().collect();
    assert_eq!(a_set.len(), from_a.len(), "A got a row twice");
    assert_eq!(b_set.len(), from_b.len(), "B got a row twice");
    assert!(a_set.is_disjoint(&b_set), "a row claimed by both");
    assert_eq!(a_set.len() + b_set.len(), 300);
    assert!(!from_a.is_empty() && !from_b.is_empty(), "both took part");
}

/// Claims pages of due events and routes each (to nothing) until none is
/// due: the ids it claimed.
async fn claim_all(store: Arc<PostgresStore>) -> Vec<String> {
    let mut got = Vec::new();
    loop {
        let due = store.due_events(i64::MAX, 7).await.unwrap();
        if due.is_empty() {
            return got;
        }
        for event in due {
            store
                .save_routing(&event.id, Routing::default())
                .await
                .unwrap();
            got.push(event.id);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_is_built_once_across_replicas() {
    let Some(db) = TestDb::create("built_once").await else {
        return;
    };
    let a = store(&db, Duration::from_secs(5)).await;
    let b = store(&db, Duration::from_secs(5)).await;
    a.journal(event("evt_once")).await.unwrap();
    let routing = || Routing {
        records: vec![record("evt_once", "orders", &["hook", "log"])],
        failed: Vec::new(),
    };
    let (first, second) = tokio::join!(
        a.save_routing("evt_once", routing()),
        b.save_routing("evt_once", routing())
    );
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_eq!(first.len() + second.len(), 1, "{first:?} {second:?}");
    let page = b.event("evt_once").await.unwrap().unwrap();
    assert_eq!(page.event.state, "routed");
    assert_eq!(page.event.records.len(), 1);
    assert_eq!(page.event.records[0].deliveries.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_replay_reroute_and_prune_work_from_another_process() {
    let Some(db) = TestDb::create("operate").await else {
        return;
    };
    let serve = store(&db, Duration::from_secs(5)).await;
    let operator = PostgresStore::connect(
        &db.target(),
        PostgresOptions {
            background: false,
            ..PostgresOptions::default()
        },
    )
    .await
    .unwrap();
    let mut woken = serve.wakeups().unwrap();
    serve.journal(event("evt_dl")).await.unwrap();
    serve
        .save_routing(
            "evt_dl",
            Routing {
                records: vec![record("evt_dl", "orders", &["hook"])],
                failed: vec![RouteFailure {
                    route: "crm".to_owned(),
                    record_id: "rec_evt_dl_crm".to_owned(),
                    error: "enrichment failed".to_owned(),
                    next_attempt_ms: 0,
                    dead: true,
                }],
            },
        )
        .await
        .unwrap();
    serve
        .settle(
            "rec_evt_dl_orders",
            "hook",
            Settle::Dead {
                error: "HTTP 500".to_owned(),
            },
        )
        .await
        .unwrap();
    let letters = operator.dead_letters(Filter::default()).await.unwrap();
    assert_eq!(letters.len(), 2, "{letters:?}");
    let depths = operator.depths().await.unwrap();
    assert_eq!(depths.routes_dead, 1);
    assert_eq!(depths.sinks["hook"].dead, 1);
    let page = operator
        .dead_letter_page(crate::store::DeadLetterQuery {
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.letters.len(), 1);
    let rest = operator
        .dead_letter_page(crate::store::DeadLetterQuery {
            limit: 5,
            after: page.next.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(rest.letters.len(), 1);
    assert_ne!(rest.letters[0].record_id, page.letters[0].record_id);

    let before = *woken.borrow_and_update();
    assert_eq!(operator.replay(Filter::default()).await.unwrap(), 2);
    // The serving replica is woken by the operator's NOTIFY.
    tokio::time::timeout(Duration::from_secs(10), woken.changed())
        .await
        .expect("a wake-up")
        .unwrap();
    assert_ne!(*woken.borrow(), before);
    let due = serve.due_events(now_ms(), 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].settled, ["rec_evt_dl_orders"]);
    let deliveries = serve
        .due_deliveries("hook", now_ms(), 10, Vec::new())
        .await
        .unwrap();
    assert_eq!(deliveries.len(), 1);
    serve
        .settle("rec_evt_dl_orders", "hook", Settle::Delivered)
        .await
        .unwrap();
    serve
        .save_routing("evt_dl", Routing::default())
        .await
        .unwrap();
    assert!(operator.reroute("evt_dl").await.unwrap());
    assert!(!operator.reroute("evt_missing").await.unwrap());
    serve
        .save_routing("evt_dl", Routing::default())
        .await
        .unwrap();
    let pruned = operator.prune(now_ms() + 1_000, 100).await.unwrap();
    assert_eq!(pruned, 3, "delivery, record, event");
    assert!(operator.event("evt_dl").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_versioned_idempotent_concurrent_and_refuse_newer() {
    let Some(db) = TestDb::create("migrations").await else {
        return;
    };
    let target = db.target();
    let latest = super::migrate::latest();
    let (one, two) = tokio::join!(
        PostgresStore::migrate(&target),
        PostgresStore::migrate(&target)
    );
    let mut outcomes = vec![one.unwrap(), two.unwrap()];
    outcomes.sort();
    assert_eq!(outcomes, [(0, latest), (latest, latest)]);
    assert_eq!(
        PostgresStore::migrate(&target).await.unwrap(),
        (latest, latest)
    );
    let store = store(&db, Duration::from_secs(5)).await;
    store
        .shared
        .client()
        .await
        .unwrap()
        .batch_execute("INSERT INTO schema_version (version) VALUES (999)")
        .await
        .unwrap();
    drop(store);
    let refused = PostgresStore::connect(&target, PostgresOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(refused, StoreError::TooNew { found: 999, .. }));
    let message = refused.to_string();
    assert!(
        message.contains("999") && message.contains(&format!("binary's {latest}")),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_errors_say_what_is_wrong_without_the_password() {
    let Some(db) = TestDb::create("errors").await else {
        return;
    };
    let mut missing = url::Url::parse(&db.url).unwrap();
    missing.set_password(Some("hunter22-secret")).unwrap();
    missing.set_path("/pg_no_such_database");
    let target = crate::config::database_url::parse(missing.as_str()).unwrap();
    let error = PostgresStore::connect(&target, PostgresOptions::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("does not exist"), "{error}");
    assert!(error.contains("createdb"), "{error}");
    assert!(!error.contains("hunter22"), "{error}");

    // Nothing listens there: unavailable, said quickly.
    let down = crate::config::database_url::parse(
        "postgres://router:hunter22-secret@127.0.0.1:1/db?connect_timeout=2",
    )
    .unwrap();
    let error = PostgresStore::connect(&down, PostgresOptions::default())
        .await
        .unwrap_err();
    assert!(error.is_unavailable(), "{error}");
    assert!(!error.to_string().contains("hunter22"), "{error}");
}

#[test]
fn state_integers_match_the_sqlite_ones() {
    use crate::store::sqlite::state::{DeliveryState, EventState, RouteState};
    // The SQL of this backend writes them as literals.
    assert_eq!(
        [EventState::Due, EventState::Routed, EventState::Dead].map(EventState::sql),
        [0, 1, 2]
    );
    assert_eq!(
        [
            DeliveryState::Pending,
            DeliveryState::Delivered,
            DeliveryState::Dead
        ]
        .map(DeliveryState::sql),
        [0, 1, 2]
    );
    assert_eq!(
        [RouteState::Retry, RouteState::Dead].map(RouteState::sql),
        [0, 2]
    );
}

/// A TCP forwarder to the test server that can be cut and restored on
/// the same port: PostgreSQL going down and coming back, as the store sees
/// it.
struct Outage {
    port: u16,
    upstream: std::net::SocketAddr,
    stop: Option<tokio_util::sync::CancellationToken>,
}

impl Outage {
    async fn start(upstream: std::net::SocketAddr) -> Outage {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut outage = Outage {
            port,
            upstream,
            stop: None,
        };
        outage.serve(listener);
        outage
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let stop = tokio_util::sync::CancellationToken::new();
        self.stop = Some(stop.clone());
        let upstream = self.upstream;
        tokio::spawn(async move {
            loop {
                let (mut inbound, _) = tokio::select! {
                    () = stop.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok(accepted) => accepted,
                        Err(_) => return,
                    },
                };
                let stop = stop.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        () = stop.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    }
                });
            }
        });
    }

    /// Every connection cut, nothing accepted.
    fn cut(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop.cancel();
        }
    }

    /// Accepting again on the same port.
    async fn restore(&mut self) {
        let listener = eventually(Duration::from_secs(5), || async {
            tokio::net::TcpListener::bind(("127.0.0.1", self.port))
                .await
                .ok()
        })
        .await;
        self.serve(listener);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_goes_away_is_unavailable_then_healthy_again_by_itself() {
    let Some(db) = TestDb::create("outage").await else {
        return;
    };
    let direct = url::Url::parse(&db.url).unwrap();
    let upstream =
        tokio::net::lookup_host((direct.host_str().unwrap(), direct.port().unwrap_or(5432)))
            .await
            .unwrap()
            .next()
            .unwrap();
    let mut outage = Outage::start(upstream).await;
    let mut through = direct.clone();
    through.set_host(Some("127.0.0.1")).unwrap();
    through.set_port(Some(outage.port)).unwrap();
    let target = crate::config::database_url::parse(through.as_str()).unwrap();
    let store = PostgresStore::connect(
        &target,
        PostgresOptions {
            pool_size: 2,
            ..PostgresOptions::default()
        },
    )
    .await
    .unwrap();
    store.health().await.unwrap();
    assert_eq!(
        store.journal(event("evt_before")).await.unwrap(),
        Journaled::Inserted
    );
    outage.cut();
    let refused = eventually(Duration::from_secs(15), || async {
        store.journal(event("evt_during")).await.err()
    })
    .await;
    assert!(refused.is_unavailable(), "{refused}");
    assert!(store.health().await.is_err());
    outage.restore().await;
    eventually(Duration::from_secs(15), || async {
        store.health().await.ok()
    })
    .await;
    // Acknowledged before is still there.
    assert_eq!(
        store.journal(event("evt_before")).await.unwrap(),
        Journaled::Duplicate
    );
    // The event refused during the outage is taken when Stripe sends it
    // again: new, or already there when a commit went through but its
    // answer was lost with the connection (an earlier try, or the refused
    // one itself; then it is a due row, routed by the scan like any other).
    store.journal(event("evt_during")).await.unwrap();
    let during = store.event("evt_during").await.unwrap().expect("journaled");
    assert_eq!(during.event.state, "pending", "to be routed");
    assert_eq!(
        store.journal(event("evt_during")).await.unwrap(),
        Journaled::Duplicate
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_and_record_bodies_under_a_page_are_stored_uncompressed() {
    let Some(db) = TestDb::create("bodies_uncompressed").await else {
        return;
    };
    let store = store(&db, Duration::from_secs(5)).await;
    // JSON of a few kilobytes compresses well: stored as it is all the same.
    let filler = "\"x\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\",".repeat(120);
    let small = format!(r#"{{{filler}"id":"evt_small"}}"#);
    let large = format!(r#"{{{}"id":"evt_large"}}"#, filler.repeat(20));
    assert!(
        small.len() > 4_000 && small.len() < 8_000,
        "{}",
        small.len()
    );
    for (id, body) in [("evt_small", &small), ("evt_large", &large)] {
        let mut new = event(id);
        new.body = Bytes::from(body.clone());
        assert_eq!(store.journal(new).await.unwrap(), Journaled::Inserted);
    }
    let mut routing = Routing::default();
    let mut built = record("evt_small", "r", &["c"]);
    built.record.body = Bytes::from(small.clone());
    routing.records.push(built);
    store.save_routing("evt_small", routing).await.unwrap();
    let client = store.shared.client().await.unwrap();
    let compression = |sql: &'static str, id: &'static str| {
        let client = &client;
        async move {
            let row = client.query_one(sql, &[&id]).await.unwrap();
            (row.get::<_, Option<String>>(0), row.get::<_, Vec<u8>>(1))
        }
    };
    let events = "SELECT pg_column_compression(body), body FROM events WHERE id = $1";
    let (method, stored) = compression(events, "evt_small").await;
    assert_eq!(method, None, "a 5 KB event body is not compressed");
    assert_eq!(stored, small.as_bytes());
    let (method, stored) = compression(events, "evt_large").await;
    assert!(
        method.is_some(),
        "a body over a page is compressed as before"
    );
    assert_eq!(stored, large.as_bytes());
    let records = "SELECT pg_column_compression(body), body FROM records WHERE event_id = $1";
    let (method, stored) = compression(records, "evt_small").await;
    assert_eq!(method, None, "a 5 KB record body is not compressed");
    assert_eq!(stored, small.as_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_of_an_older_version_is_brought_up_keeping_its_rows() {
    let Some(db) = TestDb::create("older_version").await else {
        return;
    };
    // A database as the first released schema left it, with one event.
    let (client, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(super::migrate::STEPS[0])
        .await
        .unwrap();
    client
        .batch_execute(
            "CREATE TABLE schema_version (version INTEGER PRIMARY KEY,
               applied_at TIMESTAMPTZ NOT NULL DEFAULT now());
             INSERT INTO schema_version (version) VALUES (1);
             INSERT INTO events (id, type, received_at, updated_at, body)
               VALUES ('evt_old', 'checkout.session.completed', 1, 1, '\\x7b7d');",
        )
        .await
        .unwrap();
    let latest = super::migrate::latest();
    assert!(latest >= 2);
    assert_eq!(
        PostgresStore::migrate(&db.target()).await.unwrap(),
        (1, latest)
    );
    let store = store(&db, Duration::from_secs(5)).await;
    let old = store.event("evt_old").await.unwrap().expect("the old row");
    assert_eq!(&old.body[..], b"{}");
    assert_eq!(
        store.journal(event("evt_old")).await.unwrap(),
        Journaled::Duplicate
    );
}
