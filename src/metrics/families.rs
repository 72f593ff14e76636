//! The metric families, their names, help texts, label sets and buckets:
//! the one place that says what `GET /metrics` shows. Names follow the
//! Prometheus conventions: the `stripe_router_` prefix, `_total` on
//! counters (added by the encoder), base units (`_seconds`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

/// How a webhook request was answered; `outcome` and `reason` labels of
/// `stripe_router_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 200, journaled for the first time.
    Accepted,
    /// 200, an event id already journaled.
    Duplicate,
    /// 413: past `server.max_body`.
    TooLarge,
    /// 408: the body did not arrive within `server.read_timeout`.
    Timeout,
    /// 400: the body could not be read.
    Unreadable,
    /// 400: no `Stripe-Signature` header.
    NoSignature,
    /// 400: the signature does not verify (or is too old).
    BadSignature,
    /// 400: verified, but not a Stripe event.
    NotAnEvent,
    /// 503: `server.body_buffer` is full (load shed; Stripe retries).
    Busy,
    /// 500: the journal did not take it (Stripe retries).
    NotJournaled,
}

impl Answer {
    pub const ALL: [Answer; 10] = [
        Answer::Accepted,
        Answer::Duplicate,
        Answer::TooLarge,
        Answer::Timeout,
        Answer::Unreadable,
        Answer::NoSignature,
        Answer::BadSignature,
        Answer::NotAnEvent,
        Answer::Busy,
        Answer::NotJournaled,
    ];

    /// `(outcome, reason)`; the reason is `none` unless the request was
    /// refused, shed or failed.
    pub fn labels(self) -> (&'static str, &'static str) {
        match self {
            Answer::Accepted => ("accepted", "none"),
            Answer::Duplicate => ("duplicate", "none"),
            Answer::TooLarge => ("refused", "too_large"),
            Answer::Timeout => ("refused", "timeout"),
            Answer::Unreadable => ("refused", "unreadable"),
            Answer::NoSignature => ("refused", "no_signature"),
            Answer::BadSignature => ("refused", "bad_signature"),
            Answer::NotAnEvent => ("refused", "not_an_event"),
            Answer::Busy => ("shed", "body_buffer"),
            Answer::NotJournaled => ("failed", "journal"),
        }
    }
}

/// What became of one route of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordOutcome {
    /// Its record was built and stored (once per record).
    Built,
    /// It could not be built now (the Stripe API failed); retried later.
    Retry,
    /// Given up: a route-level dead letter.
    Dead,
}

impl RecordOutcome {
    pub const ALL: [RecordOutcome; 3] = [
        RecordOutcome::Built,
        RecordOutcome::Retry,
        RecordOutcome::Dead,
    ];

    pub fn label(self) -> &'static str {
        match self {
            RecordOutcome::Built => "built",
            RecordOutcome::Retry => "retry",
            RecordOutcome::Dead => "dead",
        }
    }
}

/// How one request to the Stripe API ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiOutcome {
    /// A 2xx answer that was read whole.
    Ok,
    /// A failure worth another try: 429, 5xx, a timeout, a lost connection.
    Retryable,
    /// A failure another try will not mend: 4xx, a bad key, an answer past
    /// the bounds or not JSON.
    Failed,
}

impl ApiOutcome {
    pub fn label(self) -> &'static str {
        match self {
            ApiOutcome::Ok => "ok",
            ApiOutcome::Retryable => "retryable",
            ApiOutcome::Failed => "failed",
        }
    }
}

/// How one delivery attempt was settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Delivered,
    /// Failed; retried later.
    Retry,
    /// Failed for good: a dead letter.
    Dead,
}

impl Delivery {
    pub const ALL: [Delivery; 3] = [Delivery::Delivered, Delivery::Retry, Delivery::Dead];

    pub fn label(self) -> &'static str {
        match self {
            Delivery::Delivered => "delivered",
            Delivery::Retry => "retry",
            Delivery::Dead => "dead",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Request {
    pub outcome: &'static str,
    pub reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    pub outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteOutcome {
    pub route: String,
    pub outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Sink {
    pub sink: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkOutcome {
    pub sink: String,
    pub outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Version {
    version: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Answer latency: a verified event is answered after an fsync, so most
/// land between 1 ms and 100 ms; refusals are faster, slow clients slower.
const ANSWER_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// One journal transaction: an fsync on a fast disk is ~0.1-1 ms, on a
/// slow one tens of ms.
const COMMIT_BUCKETS: [f64; 13] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];
/// Writes per transaction, up to the writer's batch of 1024.
const BATCH_BUCKETS: [f64; 11] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];
/// One Stripe API request: usually 100 ms-1 s; the client's timeout is 30 s.
const API_BUCKETS: [f64; 11] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Accept to delivered: milliseconds when all is well, up to a day when a
/// sink was down and its retries waited (`retry.max_age`).
const DELIVERED_BUCKETS: [f64; 17] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0,
    7200.0, 86400.0,
];

fn answer_histogram() -> Histogram {
    Histogram::new(ANSWER_BUCKETS)
}

fn delivered_histogram() -> Histogram {
    Histogram::new(DELIVERED_BUCKETS)
}

/// Every family, registered in one registry (owned here, never global).
#[derive(Debug)]
pub struct Families {
    pub registry: Registry,
    pub requests: Family<Request, Counter>,
    pub request_duration: Histograms<Outcome>,
    pub commit_duration: Histogram,
    pub commit_writes: Histogram,
    pub commit_failures: Counter,
    pub events: Family<Outcome, Counter>,
    pub records: Family<RouteOutcome, Counter>,
    pub api_requests: Family<Outcome, Counter>,
    pub api_duration: Histogram,
    pub deliveries: Family<SinkOutcome, Counter>,
    pub delivery_latency: Histograms<Sink>,
    pub queue_depth: Family<Sink, Gauge>,
    pub dead_letters: Family<Sink, Gauge>,
    pub events_pending: Gauge,
    pub events_dead: Gauge,
    pub routes_dead: Gauge,
    pub reloads: Family<Outcome, Counter>,
    pub config_version: Gauge,
}

impl Families {
    pub fn register() -> Families {
        let mut registry = Registry::with_prefix("stripe_router");
        let f = Families {
            registry: Registry::default(),
            requests: Family::default(),
            request_duration: Family::new_with_constructor(answer_histogram),
            commit_duration: Histogram::new(COMMIT_BUCKETS),
            commit_writes: Histogram::new(BATCH_BUCKETS),
            commit_failures: Counter::default(),
            events: Family::default(),
            records: Family::default(),
            api_requests: Family::default(),
            api_duration: Histogram::new(API_BUCKETS),
            deliveries: Family::default(),
            delivery_latency: Family::new_with_constructor(delivered_histogram),
            queue_depth: Family::default(),
            dead_letters: Family::default(),
            events_pending: Gauge::default(),
            events_dead: Gauge::default(),
            routes_dead: Gauge::default(),
            reloads: Family::default(),
            config_version: Gauge::default(),
        };
        let r = &mut registry;
        r.register(
            "build",
            "The router's version; always 1",
            Info::new(Version {
                version: env!("CARGO_PKG_VERSION"),
            }),
        );
        r.register(
            "requests",
            "Webhook requests answered, by outcome (accepted, duplicate, refused, shed, failed) and reason",
            f.requests.clone(),
        );
        r.register_with_unit(
            "request_duration",
            "Time from a webhook request's headers to its answer, by outcome",
            Unit::Seconds,
            f.request_duration.clone(),
        );
        r.register_with_unit(
            "journal_commit_duration",
            "Time one journal transaction took, its fsync included",
            Unit::Seconds,
            f.commit_duration.clone(),
        );
        r.register(
            "journal_commit_writes",
            "Writes (events, routing passes, settled deliveries) carried by one journal transaction",
            f.commit_writes.clone(),
        );
        r.register(
            "journal_commit_failures",
            "Journal transactions rolled back (disk full, I/O error); their writes were refused",
            f.commit_failures.clone(),
        );
        r.register(
            "events",
            "Events whose routing pass ended, by outcome (routed, unmatched)",
            f.events.clone(),
        );
        r.register(
            "records",
            "Routes of events, by route and outcome (built, retry, dead)",
            f.records.clone(),
        );
        r.register(
            "stripe_api_requests",
            "Requests to the Stripe API for line items, by outcome (ok, retryable, failed)",
            f.api_requests.clone(),
        );
        r.register_with_unit(
            "stripe_api_request_duration",
            "Time one Stripe API request took, its answer read",
            Unit::Seconds,
            f.api_duration.clone(),
        );
        r.register(
            "delivery_attempts",
            "Delivery attempts settled, by sink and outcome (delivered, retry, dead)",
            f.deliveries.clone(),
        );
        r.register_with_unit(
            "delivered_after",
            "Time from an event's 200 to a record's delivery, by sink",
            Unit::Seconds,
            f.delivery_latency.clone(),
        );
        r.register(
            "queue_depth",
            "Deliveries waiting (due now or retrying later), by sink; read from the journal at scrape time",
            f.queue_depth.clone(),
        );
        r.register(
            "dead_letters",
            "Deliveries given up (dead letters until replayed), by sink; read from the journal at scrape time",
            f.dead_letters.clone(),
        );
        r.register(
            "events_pending",
            "Events journaled and not yet routed (waiting for the Stripe API or a retry)",
            f.events_pending.clone(),
        );
        r.register(
            "event_dead_letters",
            "Events that cannot be routed at all (dead letters until replayed)",
            f.events_dead.clone(),
        );
        r.register(
            "route_dead_letters",
            "Routes of events given up (route-level dead letters until replayed)",
            f.routes_dead.clone(),
        );
        r.register(
            "reloads",
            "Config reloads, by outcome (applied, unchanged, refused)",
            f.reloads.clone(),
        );
        r.register(
            "config_version",
            "The version of the config in force: 1 at start, +1 per applied reload",
            f.config_version.clone(),
        );
        Families { registry, ..f }
    }
}
