//! The load: events built and signed before the clock starts, sent over
//! `concurrency` keep-alive connections, each sending its next event as soon
//! as the previous one is answered. Answer latency goes into an HDR
//! histogram (microseconds); the send instant of every event is kept so the
//! JSONL tail can measure send-to-record latency.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::header::{CONTENT_TYPE, HOST, HeaderValue, USER_AGENT};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;

use stripe_router::ingest::verify;
use stripe_router::offline::standin::{SessionEvent, checkout_session_event};

/// What the events are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `checkout.session.expired`, unpaid: no benchmark route matches it.
    Unmatched,
    /// `checkout.session.completed`, paid: an order with 3 line items.
    Order,
    /// A paid order whose session metadata is padded to about 100 KB.
    LargeOrder,
}

/// One event, serialized as Stripe sends it (pretty-printed) and signed.
pub struct Signed {
    pub body: Bytes,
    pub signature: HeaderValue,
}

/// The id of event `i`: fixed width, so the JSONL tail can read `i` back.
pub fn event_id(i: usize) -> String {
    format!("evt_1Bench{i:010}")
}

/// Reads `i` back from an [`event_id`].
pub fn event_index(id: &[u8]) -> Option<usize> {
    let digits = id.strip_prefix(b"evt_1Bench")?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Builds and signs `n` distinct events of `kind`; with `signed` false
/// their `Stripe-Signature` header is not one (the router refuses them
/// at the header, without a hash).
pub fn prepare(kind: Kind, n: usize, signed: bool) -> Vec<Signed> {
    let now = stripe_router::clock::unix_now();
    let padding = (kind == Kind::LargeOrder).then(large_metadata);
    (0..n)
        .map(|i| {
            let paid = kind != Kind::Unmatched;
            let mut metadata = padding.clone().unwrap_or_else(|| json!({}));
            metadata["order_ref"] = json!(format!("bench-{i}"));
            let event = checkout_session_event(&SessionEvent {
                event_id: event_id(i),
                event_type: if paid {
                    "checkout.session.completed"
                } else {
                    "checkout.session.expired"
                }
                .to_owned(),
                session_id: stripe_router::offline::standin::catalogue_session_id(
                    &format!("a1Bench{i:010}"),
                    3,
                ),
                payment_intent: paid.then(|| format!("pi_3Bench{i:010}PaymentIntent")),
                payment_status: if paid { "paid" } else { "unpaid" }.to_owned(),
                amount_total: 5198,
                metadata,
                created: now,
                ..SessionEvent::default()
            });
            let body = serde_json::to_vec_pretty(&event).unwrap_or_default();
            let signature = if signed {
                verify::sign(&body, crate::WEBHOOK_SECRET, now)
            } else {
                "not-a-signature".to_owned()
            };
            Signed {
                body: Bytes::from(body),
                signature: HeaderValue::try_from(signature).unwrap_or(HeaderValue::from_static("")),
            }
        })
        .collect()
}

/// Session metadata of about 100 KB. (Stripe itself caps metadata far
/// lower; the size stands in for a large session, e.g. many custom fields.)
fn large_metadata() -> Value {
    let mut map = serde_json::Map::new();
    let value = "x".repeat(480);
    for k in 0..205 {
        map.insert(format!("note_{k:03}"), json!(value));
    }
    Value::Object(map)
}

/// What the senders saw.
pub struct Sent {
    pub elapsed: Duration,
    /// Answer latency, microseconds.
    pub answers: Histogram<u64>,
    pub statuses: BTreeMap<u16, u64>,
    pub errors: u64,
}

impl Sent {
    pub fn new() -> Sent {
        Sent {
            elapsed: Duration::ZERO,
            answers: histogram(),
            statuses: BTreeMap::new(),
            errors: 0,
        }
    }

    /// The sum of what each connection's task saw, timed from `started`.
    pub async fn gather(
        mut tasks: tokio::task::JoinSet<anyhow::Result<Sent>>,
        started: Instant,
    ) -> anyhow::Result<Sent> {
        let mut sent = Sent::new();
        while let Some(done) = tasks.join_next().await {
            let part = done??;
            sent.answers.add(&part.answers)?;
            for (status, n) in part.statuses {
                *sent.statuses.entry(status).or_default() += n;
            }
            sent.errors += part.errors;
        }
        sent.elapsed = started.elapsed();
        Ok(sent)
    }
}

/// Sends every event once over `concurrency` connections, spread round
/// robin over `addrs` (several replicas behind one sender, as a load
/// balancer spreads connections). `sent_at[i]` gets the send instant of
/// event `i` in nanoseconds after `t0`.
pub async fn send(
    addrs: &[SocketAddr],
    path: &str,
    events: Arc<Vec<Signed>>,
    concurrency: usize,
    sent_at: Arc<Vec<AtomicU64>>,
    t0: Instant,
) -> anyhow::Result<Sent> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..concurrency {
        let Some(&addr) = addrs.get(n % addrs.len().max(1)) else {
            anyhow::bail!("no router to send to");
        };
        let (events, sent_at, next) = (events.clone(), sent_at.clone(), next.clone());
        let path = path.to_owned();
        tasks.spawn(async move { connection(addr, &path, &events, &next, &sent_at, t0).await });
    }
    Sent::gather(tasks, started).await
}

pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

pub async fn connect(addr: SocketAddr) -> anyhow::Result<Sender> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

async fn connection(
    addr: SocketAddr,
    path: &str,
    events: &[Signed],
    next: &AtomicUsize,
    sent_at: &[AtomicU64],
    t0: Instant,
) -> anyhow::Result<Sent> {
    let mut sent = Sent::new();
    let host = HeaderValue::try_from(addr.to_string())?;
    let mut sender = connect(addr).await?;
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(event) = events.get(i) else {
            return Ok(sent);
        };
        let request = Request::post(path)
            .header(HOST, host.clone())
            .header(CONTENT_TYPE, "application/json; charset=utf-8")
            .header(USER_AGENT, "Stripe/1.0 (+https://stripe.com/docs/webhooks)")
            .header("stripe-signature", event.signature.clone())
            .body(Full::new(event.body.clone()))?;
        if sender.ready().await.is_err() {
            sender = connect(addr).await?;
        }
        let start = Instant::now();
        sent_at[i].store(
            start.duration_since(t0).as_nanos().max(1) as u64,
            Ordering::Relaxed,
        );
        match sender.send_request(request).await {
            Ok(response) => {
                let status = response.status().as_u16();
                let read = response.into_body().collect().await;
                let micros = start.elapsed().as_micros() as u64;
                sent.answers.saturating_record(micros.max(1));
                if read.is_err() {
                    sent.errors += 1;
                }
                *sent.statuses.entry(status).or_default() += 1;
            }
            Err(_) => {
                sent.errors += 1;
                sender = connect(addr).await?;
            }
        }
    }
}
