//! The router task: takes journaled events (fresh from the intake, or due
//! again from the store: retries, replays, what a crash left) and routes
//! each once at a time, with bounded concurrency: builds its records
//! ([`crate::routing::build`]), stores them with one delivery row per
//! (record, sink), and hands each delivery to its sink's worker
//! ([`Handoff`], the sink workers of [`crate::delivery::workers`]).
//!
//! An event fresh from the intake arrives parsed, with the snapshot it was
//! accepted under: it is neither parsed nor matched against a newer config
//! again. An event read back from the store is parsed here, under the
//! current snapshot.
//!
//! An event is held ([`Held`]) from the moment the intake queues it, or a
//! scan takes it, until its routing pass ends, however it ends: a pass that
//! panics lets go on unwind ([`InFlight`]), so the next scan takes the event
//! again. A scan leaves held events out: one that waits in the queue past
//! its lease is routed once, by the queue, not a second time by the scan.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::budget::ByteShare;
use crate::event::Event;
use crate::http_serve::throttle::Quiet;
use crate::metrics::{Metrics, RecordOutcome};
use crate::retry::{self, ROUTING_RETRY};
use crate::routing::build::{Builder, Built, Failed};
use crate::routing::live::Live;
use crate::routing::snapshot::Snapshot;
use crate::store::{self, NewRecord, PendingDelivery, PendingEvent, RouteFailure, Routing, Store};

/// Rows one scan takes at most.
pub const SCAN_PAGE: usize = 256;
/// The bytes of the bodies one scan takes at most: the page ends with the
/// event that reaches them. A page of 256 events of 4 KB is 1 MiB; of the
/// largest bodies `server.max_body` allows by default (2 MiB), it ends at
/// the fourth.
pub const SCAN_BYTES: usize = 8 * 1024 * 1024;
/// How often idle loops look for due rows (retries, replays, recovery),
/// unless the store says otherwise ([`Store::scan_every`]).
pub const SCAN_EVERY: Duration = store::SCAN_EVERY;
/// Events routed at once.
const ROUTING_CONCURRENCY: usize = 64;

/// Waits until the store's wake-ups (if any) change; never returns when
/// there are none, or once their sender is gone.
pub async fn woken(wakeups: &mut Option<tokio::sync::watch::Receiver<u64>>) {
    match wakeups {
        Some(receiver) => {
            if receiver.changed().await.is_err() {
                *wakeups = None;
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending::<()>().await,
    }
}

/// Counts for `/healthz`.
#[derive(Debug, Default)]
pub struct Counts {
    pub routed: AtomicU64,
    pub unmatched: AtomicU64,
}

/// An event for the router.
#[derive(Debug)]
pub struct Routable {
    pub pending: PendingEvent,
    /// Set on the fast path: what the intake already has.
    pub accepted: Option<Accepted>,
    /// Set on the fast path: the hold the intake took on the event before
    /// queueing it ([`Held::hold`]). The router takes one itself otherwise.
    pub held: Option<InFlight>,
    /// Set on the fast path: the event's share of the queue's bytes
    /// ([`ByteBudget::take`]), given back when its pass ends.
    pub queued: Option<ByteShare>,
}

/// A fresh event as the intake accepted it: parsed once, and the snapshot
/// loaded once, which routes it.
#[derive(Debug)]
pub struct Accepted {
    pub event: Event,
    pub snapshot: Arc<Snapshot>,
}

/// Where the router hands each stored delivery: the sink workers
/// ([`crate::delivery::workers::Workers`]). A trait, so that routing knows
/// nothing of how deliveries are made.
pub trait Handoff: Send + Sync {
    /// Takes one delivery whose row is committed; may drop it (the row
    /// stays due in the store and a scan finds it).
    fn dispatch(&self, delivery: PendingDelivery);
}

pub struct Router {
    store: Arc<dyn Store>,
    live: Arc<Live>,
    builder: Builder,
    workers: Arc<dyn Handoff>,
    counts: Arc<Counts>,
    metrics: Arc<Metrics>,
    concurrency: usize,
    retries: Quiet,
    held: Held,
    scan_soon: ScanSoon,
}

/// Asks the router to scan now rather than at its interval: the intake
/// journaled an event due at once because the queue had no room for it.
/// Asks made while a scan is pending make one scan.
#[derive(Debug, Clone, Default)]
pub struct ScanSoon(Arc<tokio::sync::Notify>);

impl ScanSoon {
    pub fn ask(&self) {
        self.0.notify_one();
    }

    pub(crate) async fn asked(&self) {
        self.0.notified().await;
    }
}

/// How often a route whose records keep failing to build is warned about:
/// the first failure is a warning at once, the retries within this much
/// time of it are at debug, so one failing event (the Stripe API out of
/// reach) writes a line or two every 30 s, not one per retry.
const RETRY_WARN_EVERY: Duration = Duration::from_secs(30);

/// The events the router holds: queued for it by the intake, or taken by a
/// scan, until their routing pass ends. A scan leaves them out, and an event
/// is routed by one holder at a time.
#[derive(Debug, Clone, Default)]
pub struct Held(Arc<Mutex<HashSet<String>>>);

impl Held {
    /// Holds event `id` until the guard is dropped; `None` when it is held
    /// already (queued, or being routed).
    pub fn hold(&self, id: &str) -> Option<InFlight> {
        let mut held = self.0.lock().unwrap_or_else(|e| e.into_inner());
        held.insert(id.to_owned()).then(|| InFlight {
            set: self.0.clone(),
            id: id.to_owned(),
        })
    }

    /// The ids held now.
    fn ids(&self) -> HashSet<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Holds an event id in the router's [`Held`] set and takes it out when
/// dropped, also when the routing pass panics, or when the intake finds no
/// room for the event in the queue or cannot journal it.
#[derive(Debug)]
pub struct InFlight {
    set: Arc<Mutex<HashSet<String>>>,
    id: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
    }
}

impl Router {
    pub fn new(
        store: Arc<dyn Store>,
        live: Arc<Live>,
        builder: Builder,
        workers: Arc<dyn Handoff>,
        counts: Arc<Counts>,
        metrics: Arc<Metrics>,
    ) -> Router {
        Router {
            store,
            live,
            builder,
            workers,
            counts,
            metrics,
            concurrency: ROUTING_CONCURRENCY,
            retries: Quiet::new(RETRY_WARN_EVERY),
            held: Held::default(),
            scan_soon: ScanSoon::default(),
        }
    }

    /// The set of events this router holds, for the intake to hold an
    /// event in before queueing it.
    pub fn held(&self) -> Held {
        self.held.clone()
    }

    /// The handle the intake asks for a scan with.
    pub fn scan_soon(&self) -> ScanSoon {
        self.scan_soon.clone()
    }

    /// Routes at most `n` events at once instead of `ROUTING_CONCURRENCY`.
    pub fn with_concurrency(mut self, n: usize) -> Router {
        self.concurrency = n.max(1);
        self
    }

    /// Routes until `shutdown`. Passes in progress then finish (or are left
    /// at the shutdown deadline); what they do not finish stays due in the
    /// store. The queue is closed as soon as `shutdown` fires.
    pub async fn run(self, mut rx: mpsc::Receiver<Routable>, shutdown: CancellationToken) {
        let this = Arc::new(self);
        let permits = Arc::new(Semaphore::new(this.concurrency));
        let mut tasks = JoinSet::new();
        // Which event each pass routes, so that a pass that panicked puts
        // its event off rather than have every scan take it again at once.
        let mut passes: HashMap<tokio::task::Id, (String, u32)> = HashMap::new();
        // The first scan resumes whatever a previous run left, due or not:
        // after a restart nothing else holds those rows.
        let mut scan_at = tokio::time::Instant::now();
        let mut first_scan = true;
        let scan_every = this.store.scan_every();
        let mut wakeups = this.store.wakeups();
        'run: loop {
            let jobs = tokio::select! {
                () = shutdown.cancelled() => break,
                () = woken(&mut wakeups) => {
                    // Rows became due through another process: scan now.
                    scan_at = tokio::time::Instant::now();
                    continue;
                }
                () = this.scan_soon.asked() => {
                    // The intake journaled events due at once, for want
                    // of room in the queue.
                    scan_at = tokio::time::Instant::now();
                    continue;
                }
                Some(job) = rx.recv() => vec![job],
                Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                    this.ended(done, &mut passes).await;
                    continue;
                }
                () = tokio::time::sleep_until(scan_at) => {
                    scan_at = tokio::time::Instant::now() + scan_every;
                    let horizon = if first_scan { i64::MAX } else { crate::clock::now_ms() };
                    first_scan = false;
                    // What is being routed as the scan reads may be stored
                    // before the scan's answer comes back: the answer is
                    // stale for those events, so they are left to a later
                    // scan. Queued events are held too: the queue routes
                    // them.
                    let busy = this.held.ids();
                    match this.store.due_events_within(horizon, SCAN_PAGE, SCAN_BYTES).await {
                        Ok(due) => {
                            let full = due.len() == SCAN_PAGE
                                || due.iter().map(|e| e.body.len()).sum::<usize>() >= SCAN_BYTES;
                            let jobs: Vec<Routable> = due
                                .into_iter()
                                .filter(|pending| !busy.contains(&pending.id))
                                .map(|pending| Routable {
                                    pending,
                                    accepted: None,
                                    held: None,
                                    queued: None,
                                })
                                .collect();
                            // More are waiting: scan again right away. Not
                            // when every row of the page is held (queued or
                            // being routed): the next scan would read the
                            // same page, over and over, while the router is
                            // behind.
                            if full && !jobs.is_empty() {
                                scan_at = tokio::time::Instant::now();
                            }
                            jobs
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "cannot read due events");
                            continue;
                        }
                    }
                }
            };
            for mut job in jobs {
                let Some(guard) = job.held.take().or_else(|| this.held.hold(&job.pending.id))
                else {
                    continue;
                };
                // Waiting for room watches shutdown too: passes stuck on a
                // slow API must not hold the router past it.
                let permit = tokio::select! {
                    () = shutdown.cancelled() => break 'run,
                    permit = permits.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break 'run,
                    },
                };
                let event = (job.pending.id.clone(), job.pending.attempts);
                // Every line of the pass carries the event (JSON logs).
                let span = tracing::info_span!(
                    "routing",
                    event_id = %job.pending.id,
                    event_type = %job.pending.kind,
                );
                let task = spawn_pass(&mut tasks, guard, permit, {
                    let this = this.clone();
                    async move { this.route(job).await }.instrument(span)
                });
                passes.insert(task, event);
            }
        }
        drop(rx);
        while tasks.join_next().await.is_some() {}
    }

    /// A pass ended. One that panicked (a bug) leaves its event due later,
    /// with the routing backoff, and says so.
    async fn ended(
        &self,
        done: Result<(tokio::task::Id, ()), tokio::task::JoinError>,
        passes: &mut HashMap<tokio::task::Id, (String, u32)>,
    ) {
        let (task, panicked) = match done {
            Ok((task, ())) => (task, false),
            Err(e) => (e.id(), e.is_panic()),
        };
        let Some((event_id, attempts)) = passes.remove(&task) else {
            return;
        };
        if !panicked {
            return;
        }
        let next = retry::next_attempt_ms(&ROUTING_RETRY, attempts, crate::clock::now_ms());
        tracing::error!(event_id = %event_id, "routing the event panicked; it will be routed again later");
        if let Err(e) = self
            .store
            .event_failed(
                &event_id,
                "routing the event panicked".to_owned(),
                next,
                false,
            )
            .await
        {
            tracing::error!(event_id = %event_id, error = %e, "cannot record the routing failure");
        }
    }

    async fn route(&self, job: Routable) {
        // The queue's share of the event's bytes is held to the pass's end.
        let Routable {
            pending,
            accepted,
            held: _,
            queued: _queued,
        } = job;
        let Accepted { event, snapshot } = match accepted {
            Some(accepted) => accepted,
            None => {
                let snapshot = self.live.load();
                if !snapshot.wants_type(&pending.kind) {
                    // No route can want this type: done, without parsing the body.
                    self.finish(&pending, &pending.kind, Vec::new(), Vec::new(), Vec::new())
                        .await;
                    return;
                }
                match Event::parse_keeping(&pending.body, snapshot.keep()) {
                    Ok(event) => Accepted { event, snapshot },
                    Err(e) => {
                        // The door parsed it under the same rules before
                        // answering 200; only a body journaled by an older
                        // version (or a changed store) gets here. Keep it as a
                        // dead letter rather than lose it.
                        tracing::error!(event_id = %pending.id, error = %e, "journaled event cannot be parsed; kept as a dead letter (see `stripe-router deadletters`)");
                        if let Err(store_error) = self
                            .store
                            .event_failed(&pending.id, e.to_string(), 0, true)
                            .await
                        {
                            tracing::error!(event_id = %pending.id, error = %store_error, "cannot record the routing failure");
                        }
                        return;
                    }
                }
            }
        };
        let received_at = crate::routing::record::received_at(pending.received_at_ms);
        let settled = &pending.settled;
        let mut routes = Vec::new();
        let records = Builder::event_records(&snapshot, &event, &received_at, settled);
        let orders = Builder::order_routes(&snapshot, &event, settled);
        if orders.is_empty() {
            self.finish(&pending, &event.kind, records, Vec::new(), routes)
                .await;
            return;
        }
        if !records.is_empty() {
            // `emit: event` records never wait for the Stripe API: they are
            // stored and delivered now. The order routes are stored as due
            // once the lease ends, so a crash while their line items are
            // read loses none of them.
            let waiting = orders
                .iter()
                .map(|(route, record_id)| RouteFailure {
                    route: route.name.clone(),
                    record_id: record_id.clone(),
                    error: "line items not read yet".to_owned(),
                    next_attempt_ms: crate::clock::now_ms() + store::LEASE_MS,
                    dead: false,
                })
                .collect();
            routes.extend(records.iter().map(|r| r.route.clone()));
            if !self.save(&pending, records, waiting).await {
                return;
            }
        }
        let Built { records, failed } = self
            .builder
            .order_records(&event, &orders, &received_at)
            .await;
        let failed = failed
            .into_iter()
            .map(|failed| route_failure(&pending, failed, &self.retries))
            .collect();
        self.finish(&pending, &event.kind, records, failed, routes)
            .await;
    }

    /// Stores the last part of a routing pass and says what it did.
    /// `routes`: those whose records an earlier part of the pass stored.
    async fn finish(
        &self,
        job: &PendingEvent,
        kind: &str,
        records: Vec<NewRecord>,
        failed: Vec<RouteFailure>,
        mut routes: Vec<String>,
    ) {
        routes.extend(records.iter().map(|r| r.route.clone()));
        let failures: Vec<(String, bool)> =
            failed.iter().map(|f| (f.route.clone(), f.dead)).collect();
        if !self.save(job, records, failed).await {
            return;
        }
        for (route, dead) in &failures {
            let outcome = if *dead {
                RecordOutcome::Dead
            } else {
                RecordOutcome::Retry
            };
            self.metrics.record(route, outcome);
        }
        if routes.is_empty() && failures.is_empty() && !job.reroute {
            self.counts.unmatched.fetch_add(1, Ordering::Relaxed);
            self.metrics.event_routed(false);
            tracing::info!(event_id = %job.id, event_type = %kind, "no route matched");
        } else {
            self.counts.routed.fetch_add(1, Ordering::Relaxed);
            self.metrics.event_routed(true);
            tracing::info!(event_id = %job.id, event_type = %kind, ?routes, failures = failures.len(), "routed");
        }
    }

    /// Stores records and failed routes in one transaction and hands the
    /// records' deliveries to the sink workers. False when the store
    /// refused: the event stays due and is routed again.
    async fn save(
        &self,
        job: &PendingEvent,
        records: Vec<NewRecord>,
        failed: Vec<RouteFailure>,
    ) -> bool {
        let created_at_ms = crate::clock::now_ms();
        let built: Vec<(String, String)> = records
            .iter()
            .map(|r| (r.record.id.clone(), r.route.clone()))
            .collect();
        let deliveries: Vec<PendingDelivery> = records
            .iter()
            .flat_map(|r| {
                r.sinks.iter().map(|sink| PendingDelivery {
                    record: r.record.clone(),
                    sink: sink.clone(),
                    route: r.route.clone(),
                    attempts: 0,
                    created_at_ms,
                    received_at_ms: job.received_at_ms,
                })
            })
            .collect();
        let stored = match self
            .store
            .save_routing(&job.id, Routing { records, failed })
            .await
        {
            Ok(stored) => stored,
            Err(e) => {
                tracing::error!(event_id = %job.id, error = %e, "cannot store the event's records; retrying later");
                return false;
            }
        };
        for (record_id, route) in &built {
            if stored.contains(record_id) {
                self.metrics.record(route, RecordOutcome::Built);
            }
        }
        // Records stored by an earlier pass have their deliveries already.
        for delivery in deliveries {
            if stored.contains(&delivery.record.id) {
                self.workers.dispatch(delivery);
            }
        }
        true
    }
}

/// What the store keeps of a route whose record could not be built: retry
/// it with the one backoff, or give up (a permanent error, or past
/// [`ROUTING_RETRY`]'s `max_age`): a route-level dead letter. A retry is a
/// warning when `warnings` admits it, at debug otherwise; a dead letter is
/// always an error.
fn route_failure(job: &PendingEvent, failed: Failed, warnings: &Quiet) -> RouteFailure {
    let now = crate::clock::now_ms();
    let dead = !failed.error.retryable() || retry::expired(&ROUTING_RETRY, job.received_at_ms, now);
    let error = failed.error.to_string();
    let attempt = job.attempts + 1;
    if dead {
        tracing::error!(event_id = %job.id, route = %failed.route, %error, "route cannot be built; kept as a route-level dead letter (see `stripe-router deadletters`)");
    } else if let Some(quieted) = warnings.admit(&failed.route, tokio::time::Instant::now()) {
        tracing::warn!(event_id = %job.id, route = %failed.route, %error, attempt, quieted,
            "route could not be built; will retry (retries within {}s are logged at debug)",
            RETRY_WARN_EVERY.as_secs());
    } else {
        tracing::debug!(event_id = %job.id, route = %failed.route, %error, attempt, "route could not be built; will retry");
    }
    RouteFailure {
        route: failed.route,
        record_id: failed.record_id,
        error,
        next_attempt_ms: retry::next_attempt_ms(&ROUTING_RETRY, job.attempts, now),
        dead,
    }
}

/// Runs one routing pass on `tasks`, holding its event ([`Held`]) and a
/// permit until it ends, also by a panic.
fn spawn_pass<F>(
    tasks: &mut JoinSet<()>,
    guard: InFlight,
    permit: OwnedSemaphorePermit,
    pass: F,
) -> tokio::task::Id
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    tasks
        .spawn(async move {
            let _held = (guard, permit);
            pass.await;
        })
        .id()
}

#[cfg(test)]
#[path = "router_tests.rs"]
mod tests;
