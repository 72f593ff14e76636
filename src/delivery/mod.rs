//! Durable delivery: everything that happens after Stripe got its 200.
//!
//! The server journals a verified event and hands it to the router task
//! (the fast path). The router builds the event's records with the current
//! snapshot, stores them with one delivery row per (record, sink), and
//! hands each delivery to its sink's worker. A worker delivers with bounded
//! concurrency and settles each row: delivered, retry at a later time, or
//! dead letter. Each sink has its own worker, so a sink that is down or slow
//! delays nothing else.
//!
//! The database is the truth; channels only save a round trip. Fresh rows
//! carry a short lease ([`store::LEASE_MS`]), and both the router and the workers scan the store
//! for rows that are due (retries, replays, rows left by a crash or a full
//! channel), skipping what they hold in flight. Records and deliveries are
//! inserted idempotently under stable ids, so routing an event twice builds
//! nothing twice.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::ingest::event::Event;
use crate::routing::live::Live;
use crate::routing::pipeline::Pipeline;
use crate::sinks::{Encoded, RetryConfig};
use crate::store::{
    self, Journaled, NewEvent, NewRecord, PendingDelivery, PendingEvent, Settle, Store, StoreError,
};

/// Rows one scan takes at most.
const SCAN_PAGE: usize = 256;
/// How often idle loops look for due rows (retries, replays, recovery).
const SCAN_EVERY: Duration = Duration::from_millis(500);
/// Events routed at once.
const ROUTING_CONCURRENCY: usize = 64;
/// Deliveries a worker holds in memory beyond those in flight; more wait in
/// the store until a scan picks them up.
const BACKLOG: usize = 4096;
/// Enrichment retries: Stripe's own schedule is hours; ours is shorter
/// but gives up only after Stripe's 72 h window.
const ROUTING_RETRY: RetryConfig = RetryConfig {
    initial: Duration::from_secs(1),
    max: Duration::from_secs(600),
    max_age: Duration::from_secs(72 * 3600),
};

/// Counts for `/healthz`.
#[derive(Debug, Default)]
pub struct Counts {
    pub routed: std::sync::atomic::AtomicU64,
    pub unmatched: std::sync::atomic::AtomicU64,
}

/// The handle the server uses: journal an event, then let it go.
pub struct Engine {
    store: Arc<dyn Store>,
    live: Arc<Live>,
    router: mpsc::Sender<PendingEvent>,
    pub counts: Arc<Counts>,
}

impl Engine {
    /// Starts the router and sink workers on `tracker`; they stop when
    /// `shutdown` is cancelled, leaving unfinished rows pending in the store.
    pub fn start(
        store: Arc<dyn Store>,
        live: Arc<Live>,
        pipeline: Pipeline,
        shutdown: CancellationToken,
        tracker: &TaskTracker,
    ) -> Engine {
        let (tx, rx) = mpsc::channel(BACKLOG);
        let counts = Arc::new(Counts::default());
        let workers = Arc::new(Workers {
            store: store.clone(),
            live: live.clone(),
            shutdown: shutdown.clone(),
            tracker: tracker.clone(),
            running: Mutex::new(HashMap::new()),
        });
        workers.ensure_all();
        let router = Router {
            store: store.clone(),
            live: live.clone(),
            pipeline,
            workers,
            counts: counts.clone(),
        };
        tracker.spawn(router.run(rx, shutdown));
        Engine {
            store,
            live,
            router: tx,
            counts,
        }
    }

    /// Journals a verified event durably, then queues it for routing.
    /// `Duplicate` events are not routed again. An event whose type no
    /// current route admits is journaled as routed (to nothing) in the same
    /// write: it needs no routing pass, and `replay --reroute` still has it.
    pub async fn accept(
        &self,
        event: crate::ingest::event::Head,
        body: bytes::Bytes,
    ) -> Result<Journaled, StoreError> {
        let received_at_ms = store::now_ms();
        let wanted = self.live.load().wants_type(&event.kind);
        let journaled = self
            .store
            .journal(NewEvent {
                id: event.id.clone(),
                kind: event.kind.clone(),
                received_at_ms,
                body: body.clone(),
                routed: !wanted,
            })
            .await?;
        if journaled == Journaled::Inserted && !wanted {
            self.counts
                .unmatched
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::info!(event_id = %event.id, event_type = %event.kind, "no route matched");
        } else if journaled == Journaled::Inserted {
            let pending = PendingEvent {
                id: event.id,
                kind: event.kind,
                body,
                received_at_ms,
                attempts: 0,
                reroute: false,
                settled: Vec::new(),
            };
            // A full queue is fine: the row is in the store and a scan
            // takes it once its lease ends.
            let _ = self.router.try_send(pending);
        }
        Ok(journaled)
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }
}

/// Backoff with full jitter: a random delay up to `initial * 2^attempts`,
/// capped at `max`, never below a tenth of the nominal delay.
pub fn backoff(policy: &RetryConfig, attempts: u32) -> Duration {
    let nominal = policy
        .initial
        .saturating_mul(2u32.saturating_pow(attempts.min(30)))
        .min(policy.max);
    let floor = nominal / 10;
    let spread = nominal.saturating_sub(floor).as_millis() as u64;
    floor + Duration::from_millis(rand::rng().random_range(0..=spread))
}

struct Router {
    store: Arc<dyn Store>,
    live: Arc<Live>,
    pipeline: Pipeline,
    workers: Arc<Workers>,
    counts: Arc<Counts>,
}

impl Router {
    async fn run(self, mut rx: mpsc::Receiver<PendingEvent>, shutdown: CancellationToken) {
        let this = Arc::new(self);
        let permits = Arc::new(Semaphore::new(ROUTING_CONCURRENCY));
        let in_flight: Arc<Mutex<HashSet<String>>> = Arc::default();
        let mut tasks = JoinSet::new();
        // The first scan resumes whatever a previous run left, due or not:
        // after a restart nothing else holds those rows.
        let mut scan_at = tokio::time::Instant::now();
        let mut first_scan = true;
        loop {
            let job = tokio::select! {
                () = shutdown.cancelled() => break,
                Some(job) = rx.recv() => vec![job],
                Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
                () = tokio::time::sleep_until(scan_at) => {
                    scan_at = tokio::time::Instant::now() + SCAN_EVERY;
                    let horizon = if first_scan { i64::MAX } else { store::now_ms() };
                    first_scan = false;
                    match this.store.due_events(horizon, SCAN_PAGE).await {
                        Ok(due) => {
                            if due.len() == SCAN_PAGE {
                                // More are waiting: scan again right away.
                                scan_at = tokio::time::Instant::now();
                            }
                            due
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "cannot read due events");
                            continue;
                        }
                    }
                }
            };
            for job in job {
                if !in_flight
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(job.id.clone())
                {
                    continue;
                }
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    break;
                };
                let (this, in_flight) = (this.clone(), in_flight.clone());
                tasks.spawn(async move {
                    let id = job.id.clone();
                    this.route(job).await;
                    in_flight
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&id);
                    drop(permit);
                });
            }
        }
        // Routing in progress finishes (its writes are short); what it does
        // not finish stays due in the store.
        while tasks.join_next().await.is_some() {}
    }

    async fn route(&self, job: PendingEvent) {
        let snapshot = self.live.load();
        if !snapshot.wants_type(&job.kind) {
            // No route can want this type: done, without parsing the body.
            self.routed(&job, &job.kind, Vec::new()).await;
            return;
        }
        let event = match Event::parse(&job.body) {
            Ok(event) => event,
            Err(e) => {
                // The door parsed it under the same rules before answering
                // 200; only a body journaled by an older version (or a changed
                // store) gets here. Keep it as a dead letter rather than lose it.
                tracing::error!(event_id = %job.id, error = %e, "journaled event cannot be parsed; kept as a dead letter (see `stripe-router deadletters`)");
                if let Err(store_error) = self
                    .store
                    .event_failed(&job.id, e.to_string(), 0, true)
                    .await
                {
                    tracing::error!(event_id = %job.id, error = %store_error, "cannot record the routing failure");
                }
                return;
            }
        };
        let existing = if job.reroute {
            match self.store.record_ids(&job.id).await {
                Ok(ids) => ids,
                Err(e) => {
                    tracing::error!(event_id = %job.id, error = %e, "cannot read the event's records");
                    return;
                }
            }
        } else {
            Vec::new()
        };
        let received_at = crate::routing::record::received_at(job.received_at_ms);
        match self
            .pipeline
            .records(&snapshot, &event, &received_at, &existing)
            .await
        {
            Ok(records) => self.routed(&job, &event.kind, records).await,
            Err(e) => {
                let age = Duration::from_millis(
                    u64::try_from(store::now_ms() - job.received_at_ms).unwrap_or(0),
                );
                let dead = !e.retryable() || age > ROUTING_RETRY.max_age;
                let next =
                    store::now_ms() + backoff(&ROUTING_RETRY, job.attempts).as_millis() as i64;
                if dead {
                    tracing::error!(event_id = %job.id, error = %e, "event cannot be routed; kept as a dead letter (see `stripe-router deadletters`)");
                } else {
                    tracing::warn!(event_id = %job.id, error = %e, attempt = job.attempts + 1, "event routing failed; will retry");
                }
                if let Err(store_error) = self
                    .store
                    .event_failed(&job.id, e.to_string(), next, dead)
                    .await
                {
                    tracing::error!(event_id = %job.id, error = %store_error, "cannot record the routing failure");
                }
            }
        }
    }
}

impl Router {
    /// Stores an event's records and hands their deliveries to the sink
    /// workers.
    async fn routed(&self, job: &PendingEvent, kind: &str, records: Vec<NewRecord>) {
        let created_at_ms = store::now_ms();
        let deliveries: Vec<PendingDelivery> = records
            .iter()
            .flat_map(|r| {
                r.sinks.iter().map(|sink| PendingDelivery {
                    record_id: r.id.clone(),
                    sink: sink.clone(),
                    route: r.route.clone(),
                    body: Some(r.body.clone()),
                    attempts: 0,
                    created_at_ms,
                })
            })
            .collect();
        let routes: Vec<String> = records.iter().map(|r| r.route.clone()).collect();
        if let Err(e) = self
            .store
            .save_routing(
                &job.id,
                store::Routing {
                    records,
                    failed: Vec::new(),
                },
            )
            .await
        {
            tracing::error!(event_id = %job.id, error = %e, "cannot store the event's records; retrying later");
            return;
        }
        if routes.is_empty() && !job.reroute {
            self.counts
                .unmatched
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::info!(event_id = %job.id, event_type = %kind, "no route matched");
        } else {
            self.counts
                .routed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::info!(event_id = %job.id, event_type = %kind, ?routes, "routed");
        }
        for delivery in deliveries {
            self.workers.dispatch(delivery);
        }
    }
}

/// The sink workers, started on first use.
struct Workers {
    store: Arc<dyn Store>,
    live: Arc<Live>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    running: Mutex<HashMap<String, WorkerHandle>>,
}

struct WorkerHandle {
    queue: mpsc::UnboundedSender<PendingDelivery>,
    queued: Arc<std::sync::atomic::AtomicUsize>,
}

impl Workers {
    fn dispatch(self: &Arc<Self>, delivery: PendingDelivery) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let handle = running
            .entry(delivery.sink.clone())
            .or_insert_with(|| self.spawn(&delivery.sink));
        let mut delivery = delivery;
        if handle
            .queued
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            >= BACKLOG
        {
            // A long queue holds ids only; each body is read from the store
            // when its turn comes, so memory stays bounded in a burst.
            delivery.body = None;
        }
        let _ = handle.queue.send(delivery);
    }

    /// Starts workers for every sink of the current config, so rows left
    /// from an earlier run are delivered without waiting for new events.
    fn ensure_all(self: &Arc<Self>) {
        let names: Vec<String> = self.live.load().config.sinks.keys().cloned().collect();
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        for name in names {
            running
                .entry(name.clone())
                .or_insert_with(|| self.spawn(&name));
        }
    }

    fn spawn(self: &Arc<Self>, sink: &str) -> WorkerHandle {
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let worker = Worker {
            sink: sink.to_owned(),
            store: self.store.clone(),
            live: self.live.clone(),
            queued: queued.clone(),
            failing_since: None,
        };
        self.tracker.spawn(worker.run(rx, self.shutdown.clone()));
        WorkerHandle { queue: tx, queued }
    }
}

struct Worker {
    sink: String,
    store: Arc<dyn Store>,
    live: Arc<Live>,
    queued: Arc<std::sync::atomic::AtomicUsize>,
    /// Failed attempts since the last success, for one log line per outage.
    failing_since: Option<u32>,
}

/// What one finished attempt tells the worker.
struct Attempt {
    record_id: String,
    /// `None` when delivered; the error otherwise.
    error: Option<crate::sinks::DeliveryError>,
    /// False when the sink is not in the current config (not its fault).
    sink_known: bool,
}

impl Worker {
    async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<PendingDelivery>,
        shutdown: CancellationToken,
    ) {
        let mut backlog: VecDeque<PendingDelivery> = VecDeque::new();
        // Rows attempted and not yet settled; `sending` counts those still
        // talking to the sink, which is what `concurrency` limits.
        let mut in_flight: HashSet<String> = HashSet::new();
        let sending = Arc::new(Sending::default());
        let mut tasks: JoinSet<Attempt> = JoinSet::new();
        let mut scan_at = tokio::time::Instant::now();
        let mut first_scan = true;
        loop {
            let limit = self.concurrency();
            while sending.count() < limit {
                let Some(delivery) = backlog.pop_front() else {
                    break;
                };
                // A row can reach the backlog twice (fast path and scan).
                if in_flight.insert(delivery.record_id.clone()) {
                    sending.start();
                    tasks.spawn(attempt(
                        self.store.clone(),
                        self.live.clone(),
                        delivery,
                        sending.clone(),
                    ));
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = sending.freed.notified() => {}
                Some(delivery) = rx.recv() => {
                    self.queued.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                    backlog.push_back(delivery);
                }
                Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                    if let Ok(done) = done {
                        in_flight.remove(&done.record_id);
                        self.observe(done);
                    }
                }
                () = tokio::time::sleep_until(scan_at), if backlog.is_empty() => {
                    scan_at = tokio::time::Instant::now() + SCAN_EVERY;
                    let free = limit.saturating_sub(sending.count());
                    if free == 0 {
                        continue;
                    }
                    // After a restart nothing else holds fresh rows: ignore the lease.
                    let horizon = if first_scan { i64::MAX } else { store::now_ms() };
                    first_scan = false;
                    let busy = in_flight.iter().cloned().collect();
                    match self.store.due_deliveries(&self.sink, horizon, free, busy).await {
                        Ok(due) => {
                            if due.len() == free {
                                scan_at = tokio::time::Instant::now();
                            }
                            backlog.extend(due);
                        }
                        Err(e) => tracing::error!(sink = %self.sink, error = %e, "cannot read due deliveries"),
                    }
                }
            }
        }
        // Attempts in flight finish (each has its own timeout) or are
        // abandoned at the shutdown deadline; either way their rows stay
        // pending until settled.
        while let Some(done) = tasks.join_next().await {
            if let Ok(done) = done {
                self.observe(done);
            }
        }
    }

    fn concurrency(&self) -> usize {
        self.live
            .load()
            .sink(&self.sink)
            .map_or(1, |s| s.config.delivery().concurrency.max(1))
    }

    /// Logs when the sink starts failing and when it recovers, once each.
    fn observe(&mut self, attempt: Attempt) {
        match attempt.error {
            None => {
                if let Some(failures) = self.failing_since.take() {
                    tracing::info!(sink = %self.sink, failures, "sink recovered");
                }
            }
            Some(error) => {
                if self.failing_since.is_none() && attempt.sink_known {
                    tracing::warn!(
                        sink = %self.sink, record_id = %attempt.record_id, error = %error,
                        "sink is failing; deliveries will be retried"
                    );
                }
                *self.failing_since.get_or_insert(0) += 1;
            }
        }
    }
}

/// How many attempts of one worker are talking to the sink right now.
#[derive(Default)]
struct Sending {
    count: std::sync::atomic::AtomicUsize,
    /// Wakes the worker when an attempt is done with the sink.
    freed: Notify,
}

impl Sending {
    fn count(&self) -> usize {
        self.count.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn start(&self) {
        self.count
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    fn done(&self) {
        self.count
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        self.freed.notify_one();
    }
}

/// One delivery attempt, settled in the store before it counts as done:
/// the row leaves the worker's in-flight set only once its outcome is
/// committed, so no scan can take it twice. Settles from concurrent
/// attempts share the writer's transactions.
async fn attempt(
    store: Arc<dyn Store>,
    live: Arc<Live>,
    delivery: PendingDelivery,
    sending: Arc<Sending>,
) -> Attempt {
    let snapshot = live.load();
    let built = snapshot.sink(&delivery.sink);
    let policy = built.map_or(ROUTING_RETRY, |s| s.config.delivery().retry);
    let body = match &delivery.body {
        Some(body) => Ok(body.clone()),
        None => store.record_body(&delivery.record_id).await.map_err(|e| {
            crate::sinks::DeliveryError::retryable(format!(
                "record not readable from the journal: {e}"
            ))
        }),
    };
    let (result, sink_known) = match (built, body) {
        (_, Err(error)) => (Err(error), true),
        (Some(built), Ok(body)) => {
            let encoded = Encoded {
                id: delivery.record_id.clone(),
                body,
            };
            (built.sink.deliver(&encoded).await, true)
        }
        (None, Ok(_)) => (
            Err(crate::sinks::DeliveryError {
                retryable: true,
                message: format!("sink `{}` is not in the current config", delivery.sink),
            }),
            false,
        ),
    };
    drop(snapshot);
    sending.done();
    let outcome = match &result {
        Ok(()) => Settle::Delivered,
        Err(error) => {
            let age = Duration::from_millis(
                u64::try_from(store::now_ms() - delivery.created_at_ms).unwrap_or(0),
            );
            if !error.retryable {
                tracing::error!(
                    sink = %delivery.sink, record_id = %delivery.record_id, error = %error,
                    "delivery refused; kept as a dead letter"
                );
                Settle::Dead {
                    error: error.message.clone(),
                }
            } else if age > policy.max_age {
                tracing::error!(
                    sink = %delivery.sink, record_id = %delivery.record_id, error = %error,
                    "delivery gave up after retry.max_age; kept as a dead letter"
                );
                Settle::Dead {
                    error: error.message.clone(),
                }
            } else {
                let next = store::now_ms() + backoff(&policy, delivery.attempts).as_millis() as i64;
                Settle::Retry {
                    next_attempt_ms: next,
                    error: error.message.clone(),
                }
            }
        }
    };
    if let Err(e) = store
        .settle(&delivery.record_id, &delivery.sink, outcome)
        .await
    {
        tracing::error!(
            sink = %delivery.sink, record_id = %delivery.record_id, error = %e,
            "cannot record the delivery outcome; it will be attempted again"
        );
    }
    Attempt {
        record_id: delivery.record_id,
        error: result.err(),
        sink_known,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_stays_capped() {
        let policy = RetryConfig {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
            max_age: Duration::from_secs(60),
        };
        for (attempts, nominal) in [
            (0, 100),
            (1, 200),
            (3, 800),
            (4, 1600),
            (5, 2000),
            (40, 2000),
        ] {
            let nominal = Duration::from_millis(nominal);
            for _ in 0..50 {
                let delay = backoff(&policy, attempts);
                assert!(
                    delay >= nominal / 10 && delay <= nominal,
                    "{attempts}: {delay:?} vs {nominal:?}"
                );
            }
        }
        let spread: HashSet<Duration> = (0..50).map(|_| backoff(&policy, 4)).collect();
        assert!(spread.len() > 1, "jittered");
    }
}
