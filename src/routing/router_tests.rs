//! Tests of the router task: a pass that panics frees its event, a permit wait ends on shutdown.

use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::delivery::workers::Workers;
use crate::metrics::Metrics;
use crate::offline::standin::{SessionEvent, checkout_session_event};
use crate::routing::enrich::{ApiKey, StripeApi};
use crate::routing::test_support;
use crate::store::SqliteStore;
use tokio_util::task::TaskTracker;

#[tokio::test]
async fn a_pass_that_panics_lets_go_of_its_event_and_frees_its_permit() {
    let held = Held::default();
    let permits = Arc::new(Semaphore::new(1));
    let mut tasks = JoinSet::new();
    let guard = held.hold("evt_1").expect("not held yet");
    assert!(held.hold("evt_1").is_none(), "held once");
    let permit = permits.clone().acquire_owned().await.unwrap();
    spawn_pass(&mut tasks, guard, permit, async {
        panic!("a bug while routing");
    });
    let joined = tasks.join_next().await.expect("one task");
    assert!(joined.expect_err("it panicked").is_panic());
    assert!(held.hold("evt_1").is_some(), "the event can be taken again");
    assert_eq!(permits.available_permits(), 1);
}

const ORDERS: &str = "sinks:\n  out: { type: jsonl, path: out.jsonl }\nroutes:\n  - name: orders\n    when: {}\n    emit: order\n    to: [out]\n";

fn session_event(n: u32) -> (Event, PendingEvent) {
    let body = serde_json::to_vec(&checkout_session_event(&SessionEvent {
        event_id: format!("evt_{n}"),
        ..SessionEvent::default()
    }))
    .unwrap();
    let event = Event::parse(&body).unwrap();
    let pending = PendingEvent {
        id: event.id.clone(),
        kind: event.kind.clone(),
        body: Bytes::from(body),
        received_at_ms: crate::clock::now_ms(),
        attempts: 0,
        reroute: false,
        settled: Vec::new(),
    };
    (event, pending)
}

#[tokio::test]
async fn the_wait_for_a_routing_permit_watches_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    // A Stripe API that takes connections and never answers: every pass
    // that reads line items hangs until the client's timeout (20 s).
    let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = url::Url::parse(&format!("http://{}", api.local_addr().unwrap())).unwrap();
    let live = test_support::live(dir.path(), ORDERS, true);
    let stripe = StripeApi::new(
        base,
        ApiKey::parse("sk_test_51RouterTestKey0000").unwrap(),
        &live.load().config.stripe,
    )
    .unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.path().join("journal.db"), false, 64 << 20).unwrap());
    let (shutdown, tracker) = (CancellationToken::new(), TaskTracker::new());
    let workers = Workers::start(
        store.clone(),
        live.clone(),
        Metrics::new(),
        shutdown.clone(),
        &tracker,
    );
    let router = Router::new(
        store,
        live.clone(),
        Builder::new(Some(stripe)),
        workers,
        Arc::default(),
        Metrics::new(),
    )
    .with_concurrency(1);
    let (tx, rx) = mpsc::channel(8);
    tracker.spawn(router.run(rx, shutdown.clone()));
    for n in 1..=2 {
        let (event, pending) = session_event(n);
        let snapshot = live.load();
        tx.send(Routable {
            pending,
            accepted: Some(Accepted { event, snapshot }),
            held: None,
            queued: None,
        })
        .await
        .unwrap();
    }
    // The first pass is waiting for the API; the second waits for its permit.
    let (_held, _) = api.accept().await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), async {
        while tx.capacity() < 8 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the router took both events");
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(2), tx.closed())
        .await
        .expect("the router stopped taking events at shutdown");
}

/// The SQLite store, except that the first `panics` routing passes it is
/// asked to save panic, as a bug would; it notes when each scan for due
/// events came.
#[derive(Debug)]
struct Panics {
    inner: SqliteStore,
    panics: std::sync::atomic::AtomicU32,
    scans: Mutex<Vec<std::time::Instant>>,
    scan_every: Duration,
}

impl Store for Panics {
    fn journal(&self, event: store::NewEvent) -> store::StoreFuture<'_, store::Journaled> {
        self.inner.journal(event)
    }
    fn due_events_within(
        &self,
        now_ms: i64,
        limit: usize,
        max_bytes: usize,
    ) -> store::StoreFuture<'_, Vec<PendingEvent>> {
        self.scans.lock().unwrap().push(std::time::Instant::now());
        self.inner.due_events_within(now_ms, limit, max_bytes)
    }
    fn record_body(&self, record_id: &str) -> store::StoreFuture<'_, Bytes> {
        self.inner.record_body(record_id)
    }
    fn save_routing(
        &self,
        event_id: &str,
        routing: Routing,
    ) -> store::StoreFuture<'_, Vec<String>> {
        if self
            .panics
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            panic!("a bug while saving {event_id}");
        }
        self.inner.save_routing(event_id, routing)
    }
    fn event_failed(
        &self,
        event_id: &str,
        error: String,
        next_attempt_ms: i64,
        dead: bool,
    ) -> store::StoreFuture<'_, ()> {
        self.inner
            .event_failed(event_id, error, next_attempt_ms, dead)
    }
    fn due_deliveries(
        &self,
        sink: &str,
        now_ms: i64,
        limit: usize,
        busy: Vec<String>,
    ) -> store::StoreFuture<'_, Vec<PendingDelivery>> {
        self.inner.due_deliveries(sink, now_ms, limit, busy)
    }
    fn settle(
        &self,
        record_id: &str,
        sink: &str,
        outcome: store::Settle,
    ) -> store::StoreFuture<'_, ()> {
        self.inner.settle(record_id, sink, outcome)
    }
    fn dead_letters(
        &self,
        filter: store::Filter,
    ) -> store::StoreFuture<'_, Vec<store::DeadLetter>> {
        self.inner.dead_letters(filter)
    }
    fn replay(&self, filter: store::Filter) -> store::StoreFuture<'_, u64> {
        self.inner.replay(filter)
    }
    fn reroute(&self, event_id: &str) -> store::StoreFuture<'_, bool> {
        self.inner.reroute(event_id)
    }
    fn depths(&self) -> store::StoreFuture<'_, store::Depths> {
        self.inner.depths()
    }
    fn events(&self, query: store::EventQuery) -> store::StoreFuture<'_, store::EventPage> {
        self.inner.events(query)
    }
    fn event(&self, event_id: &str) -> store::StoreFuture<'_, Option<store::EventDetail>> {
        self.inner.event(event_id)
    }
    fn dead_letter_page(
        &self,
        query: store::DeadLetterQuery,
    ) -> store::StoreFuture<'_, store::DeadLetterPage> {
        self.inner.dead_letter_page(query)
    }
    fn health(&self) -> store::StoreFuture<'_, ()> {
        self.inner.health()
    }
    fn prune(&self, before_ms: i64, limit: usize) -> store::StoreFuture<'_, u64> {
        self.inner.prune(before_ms, limit)
    }
    fn scan_every(&self) -> Duration {
        self.scan_every
    }
}

const AUDIT: &str = "sinks:\n  out: { type: jsonl, path: out.jsonl }\nroutes:\n  - name: audit\n    when: {}\n    emit: event\n    to: [out]\n";

/// A router (not yet running) on the audit routes in `dir` over `store`,
/// counting into `counts`, with its sink workers started on `tracker`.
fn audit_router(
    dir: &std::path::Path,
    store: Arc<dyn Store>,
    counts: Arc<Counts>,
    shutdown: &CancellationToken,
    tracker: &TaskTracker,
) -> (Router, Arc<Live>) {
    let live = test_support::live(dir, AUDIT, false);
    let workers = Workers::start(
        store.clone(),
        live.clone(),
        Metrics::new(),
        shutdown.clone(),
        tracker,
    );
    let router = Router::new(
        store,
        live.clone(),
        Builder::new(None),
        workers,
        counts,
        Metrics::new(),
    );
    (router, live)
}

/// A router (not yet running) on the audit routes in `dir` over `store`,
/// with the token that shuts it down and the tracker its workers run on.
fn router_over(
    dir: &std::path::Path,
    store: Arc<Panics>,
) -> (Router, CancellationToken, TaskTracker) {
    let (shutdown, tracker) = (CancellationToken::new(), TaskTracker::new());
    let (router, _) = audit_router(dir, store, Arc::default(), &shutdown, &tracker);
    (router, shutdown, tracker)
}

/// The SQLite journal in `dir`, through [`Panics`] (the first `panics`
/// saves panic).
fn panics_store(dir: &std::path::Path, panics: u32) -> Arc<Panics> {
    panics_store_scanning_every(dir, panics, SCAN_EVERY)
}

/// As [`panics_store`], with the router's idle scans `every` apart.
fn panics_store_scanning_every(dir: &std::path::Path, panics: u32, every: Duration) -> Arc<Panics> {
    Arc::new(Panics {
        inner: SqliteStore::open(&dir.join("journal.db"), false, 64 << 20).unwrap(),
        panics: std::sync::atomic::AtomicU32::new(panics),
        scans: Mutex::default(),
        scan_every: every,
    })
}

/// Journals `pending` as received at `received_at_ms`, not yet routed.
async fn journal(store: &dyn Store, pending: &PendingEvent, received_at_ms: i64) {
    store
        .journal(store::NewEvent {
            id: pending.id.clone(),
            kind: pending.kind.clone(),
            received_at_ms,
            body: pending.body.clone(),
            routed: false,
            leased: true,
        })
        .await
        .unwrap();
}

/// A router over a store whose first `panics` saves panic, running on the
/// audit routes in `dir`, with event `evt_{n}` journaled and not yet routed.
/// Answers the live routes, the router's queue, its shutdown token, and the
/// event (parsed, and as journaled).
async fn router_over_panics(
    dir: &std::path::Path,
    panics: u32,
    n: u32,
) -> (
    Arc<Live>,
    mpsc::Sender<Routable>,
    CancellationToken,
    Event,
    PendingEvent,
) {
    let store = panics_store(dir, panics);
    let (shutdown, tracker) = (CancellationToken::new(), TaskTracker::new());
    let (router, live) = audit_router(dir, store.clone(), Arc::default(), &shutdown, &tracker);
    let (event, pending) = session_event(n);
    journal(store.as_ref(), &pending, pending.received_at_ms).await;
    let (tx, rx) = mpsc::channel(8);
    tracker.spawn(router.run(rx, shutdown.clone()));
    (live, tx, shutdown, event, pending)
}

#[tokio::test]
async fn an_event_whose_routing_panicked_is_routed_again() {
    let dir = tempfile::tempdir().unwrap();
    let (live, tx, shutdown, event, pending) = router_over_panics(dir.path(), 1, 7).await;
    let snapshot = live.load();
    tx.send(Routable {
        pending,
        accepted: Some(Accepted { event, snapshot }),
        held: None,
        queued: None,
    })
    .await
    .unwrap();
    // The panicked pass left the event due; once its lease ends a scan
    // routes it again.
    let out = dir.path().join("out.jsonl");
    test_support::eventually("the event is routed again", || {
        test_support::contains(&out, "evt_7:audit")
    })
    .await;
    shutdown.cancel();
}

#[tokio::test]
async fn a_pass_that_keeps_panicking_puts_its_event_off_with_the_routing_backoff() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal.db");
    // Nothing on the fast path: the first scan takes the journaled event.
    let (_live, _tx, shutdown, _, _) = router_over_panics(dir.path(), u32::MAX, 8).await;
    // The first scan takes the event; its pass panics. The event is then
    // due again later, with the reason kept, instead of at the next scan.
    let row = || {
        let c = rusqlite::Connection::open(&journal).unwrap();
        c.query_row(
            "SELECT attempts, last_error, next_attempt_at FROM events WHERE id = 'evt_8'",
            [],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            },
        )
        .unwrap()
    };
    test_support::eventually("the panic is recorded on the event", || {
        row().1.as_deref() == Some("routing the event panicked")
    })
    .await;
    let (attempts, _, next) = row();
    assert!(attempts >= 1, "{attempts}");
    assert!(next > 0, "due again at a time of the backoff, not at once");
    shutdown.cancel();
}

/// The audit routes in `dir` over a SQLite journal, routed one pass at a
/// time, with events `evt_{n}` of `ns` journaled (in that order) and not
/// yet routed. Answers the router (not started), its journal, the router's
/// counts, and the events (parsed, and as journaled).
async fn router_one_at_a_time(
    dir: &std::path::Path,
    ns: &[u32],
) -> (Router, Arc<Live>, Arc<Counts>, Vec<(Event, PendingEvent)>) {
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.join("journal.db"), false, 64 << 20).unwrap());
    let counts = Arc::new(Counts::default());
    let (router, live) = audit_router(
        dir,
        store.clone(),
        counts.clone(),
        &CancellationToken::new(),
        &TaskTracker::new(),
    );
    let router = router.with_concurrency(1);
    let mut events = Vec::new();
    for (i, n) in ns.iter().enumerate() {
        let (event, pending) = session_event(*n);
        // Distinct arrival times: a scan takes them in this order.
        let received_at_ms = pending.received_at_ms + i64::try_from(i).unwrap();
        journal(store.as_ref(), &pending, received_at_ms).await;
        events.push((event, pending));
    }
    (router, live, counts, events)
}

#[tokio::test]
async fn a_scan_leaves_an_event_waiting_in_the_queue_to_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let (router, live, counts, mut events) = router_one_at_a_time(dir.path(), &[21, 22]).await;
    // The intake held evt_21 and queued it; the router has not taken it
    // yet (as when it is busy past the event's lease).
    let held = router.held();
    let hold = held.hold("evt_21").expect("not held yet");
    let (tx, rx) = mpsc::channel(8);
    let shutdown = CancellationToken::new();
    tokio::spawn(router.run(rx, shutdown.clone()));
    // The first scan takes every journaled row, lease or not, in order, one
    // pass at a time: evt_21's pass would end before evt_22's starts.
    let out = dir.path().join("out.jsonl");
    test_support::eventually("the scan routes evt_22", || {
        test_support::contains(&out, "evt_22:audit")
    })
    .await;
    let records_of_21 = || -> i64 {
        rusqlite::Connection::open(dir.path().join("journal.db"))
            .unwrap()
            .query_row(
                "SELECT count(*) FROM records WHERE event_id = 'evt_21'",
                [],
                |r| r.get(0),
            )
            .unwrap()
    };
    assert_eq!(records_of_21(), 0, "the scan left the queued event alone");
    // The queue delivers it: routed once, by its pass.
    let (event, pending) = events.remove(0);
    tx.send(Routable {
        pending,
        accepted: Some(Accepted {
            event,
            snapshot: live.load(),
        }),
        held: Some(hold),
        queued: None,
    })
    .await
    .unwrap();
    test_support::eventually("the queue routes evt_21", || {
        test_support::contains(&out, "evt_21:audit")
    })
    .await;
    assert_eq!(records_of_21(), 1);
    test_support::eventually("evt_21's pass ends", || held.hold("evt_21").is_some()).await;
    assert_eq!(
        counts.routed.load(Ordering::Relaxed),
        2,
        "one routing pass per event"
    );
    shutdown.cancel();
}

#[tokio::test]
async fn a_page_of_held_events_is_not_read_again_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = panics_store(dir.path(), 0);
    let (router, shutdown, tracker) = router_over(dir.path(), store.clone());
    // A full page of due events (their lease long over), every one waiting
    // in the queue, as when the router is far behind.
    let held = router.held();
    let mut holds = Vec::new();
    for n in 0..u32::try_from(SCAN_PAGE).unwrap() {
        let (_, pending) = session_event(1000 + n);
        journal(store.as_ref(), &pending, pending.received_at_ms - 60_000).await;
        holds.push(held.hold(&pending.id).expect("not held yet"));
    }
    let (_tx, rx) = mpsc::channel(8);
    tracker.spawn(router.run(rx, shutdown.clone()));
    let scans = || store.scans.lock().unwrap().clone();
    test_support::eventually("two scans", || scans().len() >= 2).await;
    // The first page was full, but nothing in it could be taken: the next
    // scan waits its interval instead of reading the same page at once.
    let gap = scans()[1] - scans()[0];
    assert!(
        gap >= SCAN_EVERY - Duration::from_millis(100),
        "the second scan came {gap:?} after the first"
    );
    shutdown.cancel();
}

#[tokio::test]
async fn an_event_left_to_a_scan_is_routed_once_the_intake_asks() {
    let dir = tempfile::tempdir().unwrap();
    // No idle scan comes in the test's time: only the first, and those
    // asked for.
    let store = panics_store_scanning_every(dir.path(), 0, Duration::from_secs(3600));
    let (router, shutdown, tracker) = router_over(dir.path(), store.clone());
    let scan_soon = router.scan_soon();
    let (_tx, rx) = mpsc::channel(8);
    tracker.spawn(router.run(rx, shutdown.clone()));
    let scans = || store.scans.lock().unwrap().len();
    test_support::eventually("the first scan", || scans() == 1).await;
    // The intake found no room in the queue: the event is journaled due at
    // once, and a scan asked for.
    let (_, pending) = session_event(41);
    store
        .journal(store::NewEvent {
            id: pending.id.clone(),
            kind: pending.kind.clone(),
            received_at_ms: crate::clock::now_ms(),
            body: pending.body.clone(),
            routed: false,
            leased: false,
        })
        .await
        .unwrap();
    scan_soon.ask();
    let out = dir.path().join("out.jsonl");
    test_support::eventually("the asked scan routes evt_41", || {
        test_support::contains(&out, "evt_41:audit")
    })
    .await;
    assert_eq!(scans(), 2, "one scan for the ask");
    shutdown.cancel();
}

#[test]
fn an_event_the_full_queue_refuses_is_no_longer_held() {
    let held = Held::default();
    let (tx, _rx) = mpsc::channel(1);
    for n in [31, 32] {
        let (_, pending) = session_event(n);
        let hold = held.hold(&pending.id);
        let _ = tx.try_send(Routable {
            pending,
            accepted: None,
            held: hold,
            queued: None,
        });
    }
    assert!(held.hold("evt_31").is_none(), "queued: still held");
    assert!(
        held.hold("evt_32").is_some(),
        "refused: no longer held, so a scan may take it"
    );
}

#[test]
fn a_failing_route_warns_at_once_then_at_most_once_every_30s() {
    let warnings = Quiet::new(RETRY_WARN_EVERY);
    let start = tokio::time::Instant::now();
    let at = |secs: u64| start + Duration::from_secs(secs);
    // A route that starts failing is seen at once.
    assert_eq!(warnings.admit("orders", at(0)), Some(0));
    // Its retries 1, 2, 4, 8, 16 s later are at debug: one warning in 30 s.
    for secs in [1, 3, 7, 15, 29] {
        assert_eq!(warnings.admit("orders", at(secs)), None, "{secs}s");
    }
    // Another route failing is its own news.
    assert_eq!(warnings.admit("failed", at(3)), Some(0));
    // Past 30 s, one more warning, saying how many retries were quiet.
    assert_eq!(warnings.admit("orders", at(31)), Some(5));
    assert_eq!(warnings.admit("orders", at(32)), None);
}
