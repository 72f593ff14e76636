//! Per-sink workers: each sink of the current config has one worker, which
//! delivers that sink's rows with bounded concurrency (`concurrency`) and
//! settles each in the store: delivered, retry at a later time (the one
//! backoff, [`crate::retry`], with the sink's `retry:` policy), or
//! dead letter. A sink that is down or slow delays nothing else.
//!
//! Workers follow the config: a reload that adds a sink starts its worker
//! (which then delivers the rows waiting for it); one that removes a sink
//! stops its worker, whose rows stay pending in the store until a config
//! has the sink again. Besides what the router hands them, workers scan the
//! store for rows that are due (retries, replays, rows left by a crash or a
//! long queue).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use crate::budget::{ByteBudget, ByteShare};
use crate::metrics::{Delivery, Metrics};
use crate::retry::{self, ROUTING_RETRY};
use crate::routing::live::Live;
use crate::routing::router::{Handoff, woken};
use crate::routing::snapshot::Snapshot;
use crate::store::{PendingDelivery, Settle, Store};

/// Deliveries a worker holds with their bodies beyond those in flight;
/// past them a handed-over delivery holds its ids only, and its body is
/// read from the store when its turn comes.
const BACKLOG: usize = 4096;
/// The bytes of the bodies those deliveries hold at most: past them, too, a
/// handed-over delivery holds its ids only. 4,096 records of 4 KB fit, 16
/// of 1 MiB.
const BACKLOG_BYTES: usize = 16 * 1024 * 1024;
/// Deliveries a worker holds in memory at most (ids only past
/// [`BACKLOG`]); past them a new record's delivery is not handed over: its
/// row waits in the store, and a scan takes it once its lease ends. A sink
/// far slower than routing cannot grow memory with its backlog.
const HELD: usize = 4 * BACKLOG;

/// The sink workers: one per sink of the current config.
pub struct Workers {
    store: Arc<dyn Store>,
    live: Arc<Live>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    running: Mutex<HashMap<String, WorkerHandle>>,
}

struct WorkerHandle {
    /// Each delivery with its share of [`BACKLOG_BYTES`] when it kept its
    /// body.
    queue: mpsc::UnboundedSender<(PendingDelivery, Option<ByteShare>)>,
    queued: Arc<AtomicUsize>,
    /// The bytes of the bodies the queued deliveries hold.
    bodies: ByteBudget,
    /// Stops this worker alone (its sink left the config).
    stop: CancellationToken,
}

impl Workers {
    /// Starts a worker for every sink of the current config, so rows left
    /// from an earlier run are delivered without waiting for new events,
    /// and keeps the set of workers in step with reloads until `shutdown`.
    pub fn start(
        store: Arc<dyn Store>,
        live: Arc<Live>,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
        tracker: &TaskTracker,
    ) -> Arc<Workers> {
        let changes = live.subscribe();
        let workers = Arc::new(Workers {
            store,
            live,
            metrics,
            shutdown: shutdown.clone(),
            tracker: tracker.clone(),
            running: Mutex::new(HashMap::new()),
        });
        workers.sync(&workers.live.load(), true);
        tracker.spawn(workers.clone().follow(changes, shutdown));
        workers
    }

    /// The deliveries `sink`'s worker holds in memory, handed over and not
    /// yet attempted.
    #[cfg(test)]
    fn held(&self, sink: &str) -> usize {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running
            .get(sink)
            .map_or(0, |handle| handle.queued.load(Ordering::Relaxed))
    }

    /// The bytes of the bodies those deliveries hold.
    #[cfg(test)]
    fn held_bytes(&self, sink: &str) -> usize {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running.get(sink).map_or(0, |handle| handle.bodies.used())
    }

    /// The sinks that have a worker, sorted.
    pub fn running(&self) -> Vec<String> {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let mut names: Vec<String> = running.keys().cloned().collect();
        names.sort();
        names
    }
}

impl Handoff for Workers {
    /// Hands a delivery to its sink's worker. A sink the current config no
    /// longer has gets nothing: its row waits in the store.
    fn dispatch(&self, mut delivery: PendingDelivery) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if !running.contains_key(&delivery.sink) {
            if self.live.load().sink(&delivery.sink).is_none() {
                return;
            }
            let handle = self.spawn(&delivery.sink, false);
            running.insert(delivery.sink.clone(), handle);
        }
        let Some(handle) = running.get(&delivery.sink) else {
            return;
        };
        let held = handle.queued.fetch_add(1, Ordering::Relaxed);
        if held >= HELD {
            handle.queued.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        let share = if held < BACKLOG {
            handle.bodies.take(delivery.record.body.len())
        } else {
            None
        };
        if share.is_none() {
            // A long queue holds ids only; each body is read from the store
            // when its turn comes, so memory stays bounded in a burst.
            delivery.record.body = bytes::Bytes::new();
        }
        if handle.queue.send((delivery, share)).is_err() {
            handle.queued.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Workers {
    /// Starts a worker for each sink of `snapshot` that has none and stops
    /// the workers of sinks it does not have. `resume`: the workers pick up
    /// every pending row at once, leases or not (at start-up nothing else
    /// holds them).
    fn sync(&self, snapshot: &Snapshot, resume: bool) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running.retain(|name, handle| {
            let keep = snapshot.sink(name).is_some();
            if !keep {
                tracing::info!(sink = %name, "sink removed from the config; its worker stops, its pending deliveries wait in the journal");
                handle.stop.cancel();
            }
            keep
        });
        for name in snapshot.config.sinks.keys() {
            if !running.contains_key(name) {
                let handle = self.spawn(name, resume);
                running.insert(name.clone(), handle);
            }
        }
    }

    /// Follows reloads: every applied config syncs the workers.
    async fn follow(
        self: Arc<Self>,
        mut changes: watch::Receiver<u64>,
        shutdown: CancellationToken,
    ) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                changed = changes.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    self.sync(&self.live.load(), false);
                }
            }
        }
    }

    fn spawn(&self, sink: &str, resume: bool) -> WorkerHandle {
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let stop = self.shutdown.child_token();
        let worker = Worker {
            sink: sink.to_owned(),
            store: self.store.clone(),
            live: self.live.clone(),
            metrics: self.metrics.clone(),
            queued: queued.clone(),
            failing_since: None,
        };
        self.tracker.spawn(worker.run(rx, stop.clone(), resume));
        WorkerHandle {
            queue: tx,
            queued,
            bodies: ByteBudget::new(BACKLOG_BYTES),
            stop,
        }
    }
}

struct Worker {
    sink: String,
    store: Arc<dyn Store>,
    live: Arc<Live>,
    metrics: Arc<Metrics>,
    queued: Arc<AtomicUsize>,
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
        mut rx: mpsc::UnboundedReceiver<(PendingDelivery, Option<ByteShare>)>,
        shutdown: CancellationToken,
        resume: bool,
    ) {
        // Each with whether it was handed over (counted in `queued` until
        // it leaves the backlog, its body's bytes with it) or found by a
        // scan.
        let mut backlog: VecDeque<(PendingDelivery, bool, Option<ByteShare>)> = VecDeque::new();
        // Rows attempted and not yet settled; `sending` counts those still
        // talking to the sink, which is what `concurrency` limits.
        let mut in_flight: HashSet<String> = HashSet::new();
        let sending = Arc::new(Sending::default());
        let mut tasks: JoinSet<Attempt> = JoinSet::new();
        let mut scan_at = tokio::time::Instant::now();
        let mut first_scan = resume;
        let scan_every = self.store.scan_every();
        let mut wakeups = self.store.wakeups();
        loop {
            let limit = self.concurrency();
            while sending.count() < limit {
                let Some((delivery, handed, share)) = backlog.pop_front() else {
                    break;
                };
                if handed {
                    self.queued.fetch_sub(1, Ordering::Relaxed);
                }
                // Out of the backlog: its body counts no more.
                drop(share);
                // A row can reach the backlog twice (fast path and scan).
                if in_flight.insert(delivery.record.id.clone()) {
                    sending.start();
                    let span = delivery_span(&delivery);
                    tasks.spawn(
                        attempt(
                            self.store.clone(),
                            self.live.clone(),
                            self.metrics.clone(),
                            delivery,
                            sending.clone(),
                        )
                        .instrument(span),
                    );
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = sending.freed.notified() => {}
                () = woken(&mut wakeups) => scan_at = tokio::time::Instant::now(),
                Some((delivery, share)) = rx.recv() => backlog.push_back((delivery, true, share)),
                Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                    if let Ok(done) = done {
                        in_flight.remove(&done.record_id);
                        self.observe(done);
                    }
                }
                () = tokio::time::sleep_until(scan_at), if backlog.is_empty() => {
                    scan_at = tokio::time::Instant::now() + scan_every;
                    let free = limit.saturating_sub(sending.count());
                    if free == 0 {
                        continue;
                    }
                    // After a restart nothing else holds fresh rows: ignore the lease.
                    let horizon = if first_scan { i64::MAX } else { crate::clock::now_ms() };
                    first_scan = false;
                    let busy = in_flight.iter().cloned().collect();
                    match self.store.due_deliveries(&self.sink, horizon, free, busy).await {
                        Ok(due) => {
                            if due.len() == free {
                                scan_at = tokio::time::Instant::now();
                            }
                            backlog.extend(due.into_iter().map(|d| (d, false, None)));
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
        match health(&mut self.failing_since, &attempt) {
            Some(Health::Recovered { failures }) => {
                tracing::info!(sink = %self.sink, failures, "sink recovered");
            }
            Some(Health::Failing) => {
                if let Some(error) = &attempt.error {
                    tracing::warn!(
                        sink = %self.sink, record_id = %attempt.record_id, error = %error,
                        "sink is failing; deliveries will be retried"
                    );
                }
            }
            None => {}
        }
    }
}

/// A change in a sink's health worth one log line.
#[derive(Debug, PartialEq, Eq)]
enum Health {
    Failing,
    Recovered { failures: u32 },
}

/// What `attempt` changes in a sink's health, `failing_since` counting the
/// failed attempts since the last success. A permanent refusal of one
/// record (a 4xx: kept as a dead letter, never retried) says the sink is
/// up and answering: it neither starts an outage nor ends one.
fn health(failing_since: &mut Option<u32>, attempt: &Attempt) -> Option<Health> {
    match &attempt.error {
        None => failing_since
            .take()
            .map(|failures| Health::Recovered { failures }),
        Some(error) if !error.retryable => None,
        Some(_) => {
            let started = failing_since.is_none() && attempt.sink_known;
            *failing_since.get_or_insert(0) += 1;
            started.then_some(Health::Failing)
        }
    }
}

/// The span of one delivery attempt: every line it logs carries the event,
/// the route, the sink and the record (JSON logs). The event id is the
/// record id less its `:{route}` (`routing::record::record_id`).
fn delivery_span(delivery: &PendingDelivery) -> tracing::Span {
    let suffix = format!(":{}", delivery.route);
    let event_id = delivery
        .record
        .id
        .strip_suffix(&suffix)
        .unwrap_or(&delivery.record.id);
    tracing::info_span!(
        "delivery",
        event_id = %event_id,
        route = %delivery.route,
        sink = %delivery.sink,
        record_id = %delivery.record.id,
    )
}

/// How many attempts of one worker are talking to the sink right now.
#[derive(Default)]
struct Sending {
    count: AtomicUsize,
    /// Wakes the worker when an attempt is done with the sink.
    freed: Notify,
}

impl Sending {
    fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    fn start(&self) {
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn done(&self) {
        self.count.fetch_sub(1, Ordering::Relaxed);
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
    metrics: Arc<Metrics>,
    delivery: PendingDelivery,
    sending: Arc<Sending>,
) -> Attempt {
    let snapshot = live.load();
    let built = snapshot.sink(&delivery.sink);
    let policy = built.map_or(ROUTING_RETRY, |s| s.config.delivery().retry);
    let mut delivery = delivery;
    // Queued past the backlog, the bytes waited in the store.
    let unreadable = if delivery.record.body.is_empty() {
        match store.record_body(&delivery.record.id).await {
            Ok(body) => {
                delivery.record.body = body;
                None
            }
            Err(e) => Some(crate::sinks::DeliveryError::retryable(format!(
                "record not readable from the journal: {e}"
            ))),
        }
    } else {
        None
    };
    let (result, sink_known) = match (built, unreadable) {
        (_, Some(error)) => (Err(error), true),
        (Some(built), None) => (built.sink.deliver(&delivery.record).await, true),
        (None, None) => (
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
        Ok(()) => {
            tracing::debug!("delivered");
            Settle::Delivered
        }
        Err(error) => {
            if !error.retryable {
                tracing::error!(
                    sink = %delivery.sink, record_id = %delivery.record.id, error = %error,
                    "delivery refused; kept as a dead letter"
                );
                Settle::Dead {
                    error: error.message.clone(),
                }
            } else if retry::expired(&policy, delivery.created_at_ms, crate::clock::now_ms()) {
                tracing::error!(
                    sink = %delivery.sink, record_id = %delivery.record.id, error = %error,
                    "delivery gave up after retry.max_age; kept as a dead letter"
                );
                Settle::Dead {
                    error: error.message.clone(),
                }
            } else {
                let next =
                    retry::next_attempt_ms(&policy, delivery.attempts, crate::clock::now_ms());
                Settle::Retry {
                    next_attempt_ms: next,
                    error: error.message.clone(),
                }
            }
        }
    };
    let settled = match &outcome {
        Settle::Delivered => Delivery::Delivered,
        Settle::Retry { .. } => Delivery::Retry,
        Settle::Dead { .. } => Delivery::Dead,
    };
    match store
        .settle(&delivery.record.id, &delivery.sink, outcome)
        .await
    {
        Ok(()) => {
            let after = (settled == Delivery::Delivered).then(|| {
                let ms = crate::clock::now_ms().saturating_sub(delivery.received_at_ms);
                std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0))
            });
            metrics.delivery(&delivery.sink, settled, after);
        }
        Err(e) => {
            tracing::error!(
                sink = %delivery.sink, record_id = %delivery.record.id, error = %e,
                "cannot record the delivery outcome; it will be attempted again"
            );
        }
    }
    Attempt {
        record_id: delivery.record.id,
        error: result.err(),
        sink_known,
    }
}

#[cfg(test)]
#[path = "workers_tests.rs"]
mod tests;
