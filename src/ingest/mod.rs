//! The HTTP server: `POST {server.path}` for Stripe and a bare `GET
//! /healthz` on the webhook port; the details for operators on the admin
//! listener (`server.admin_listen`), never on the port that faces the
//! internet.
//!
//! A verified event is answered 200 once it is durably journaled; routing
//! and delivery happen afterwards ([`crate::delivery`]).
//!
//! Every answer is decided in [`respond`] (webhook port) and [`admin`]; the
//! one accept loop, [`accept`], serves both listeners: it admits connections
//! up to their cap, drives hyper and drains on shutdown. The bounds it
//! enforces are in [`limits`].

pub mod event;
pub mod hints;
pub mod limits;
pub mod verify;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::delivery::Engine;
use crate::ingest::event::Event;
use crate::ingest::verify::Secrets;
use crate::routing::live::Live;
use crate::store::Journaled;

use limits::{Activity, Admission, BodyBuffer, Reservation, Slots, Throttle};

/// Log lines a second about refused requests (bad signatures, bodies too
/// large or too slow, load shed): enough to see what is going on, while a
/// flood of forged requests writes a few lines a second, not megabytes.
pub const REFUSAL_LOGS_PER_SEC: u32 = 10;

/// `accept failed` lines a second: the error repeats for as long as its
/// cause (out of file descriptors) lasts, and one line says it.
const ACCEPT_FAILURE_LOGS_PER_SEC: u32 = 1;

/// What the endpoint needs to answer a request.
pub struct Endpoint {
    pub path: String,
    pub max_body: u64,
    pub tolerance: Duration,
    /// Time to read a request's headers (and an idle connection's next
    /// request), then again to read its whole body.
    pub read_timeout: Duration,
    pub body_buffer: BodyBuffer,
    pub secrets: Secrets,
    pub live: Arc<Live>,
    pub engine: Engine,
    pub counters: Counters,
    /// Rate-limits the log lines about refused requests.
    pub refusals: Arc<Throttle>,
}

impl Endpoint {
    /// Whether to log one more refused request.
    fn log_refusal(&self) -> bool {
        self.refusals.admit()
    }

    /// Why the router cannot take events now, if it cannot. A config is
    /// always loaded (`serve` does not start without one, and a refused
    /// reload keeps the old), so the journal is the question.
    async fn unavailable(&self) -> Option<String> {
        self.engine
            .store()
            .health()
            .await
            .err()
            .map(|e| e.to_string())
    }
}

/// The listeners `serve` accepts on.
pub struct Listeners {
    pub webhook: TcpListener,
    /// The webhook port's connection cap (`server.max_connections`, lowered
    /// to fit the open-file limit).
    pub max_connections: usize,
    pub admin: Option<TcpListener>,
}

/// Which answers a listener gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Door {
    Webhook,
    Admin,
}

/// Running totals shown on `/healthz`.
#[derive(Debug, Default)]
pub struct Counters {
    /// Requests with a body, before verification.
    pub received: AtomicU64,
    pub duplicates: AtomicU64,
    /// Refused with 4xx.
    pub rejected: AtomicU64,
    /// Answered 500: not journaled.
    pub failed: AtomicU64,
}

impl Counters {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Accepts connections on both listeners until `shutdown`, then stops
/// accepting and gives in-flight requests `drain` to finish.
pub async fn serve(
    listeners: Listeners,
    endpoint: Arc<Endpoint>,
    shutdown: CancellationToken,
    drain: Duration,
) {
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    // The header timeout also runs while a kept-alive connection waits for
    // its next request, so it bounds idle connections too.
    http.timer(TokioTimer::new())
        .header_read_timeout(endpoint.read_timeout)
        .max_buf_size(limits::READ_BUFFER);
    let webhook = accept(
        listeners.webhook,
        Door::Webhook,
        listeners.max_connections,
        &endpoint,
        &http,
        &graceful,
        &shutdown,
    );
    let admin = async {
        if let Some(listener) = listeners.admin {
            let cap = limits::ADMIN_MAX_CONNECTIONS;
            accept(
                listener,
                Door::Admin,
                cap,
                &endpoint,
                &http,
                &graceful,
                &shutdown,
            )
            .await;
        }
    };
    tokio::join!(webhook, admin);
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections drained"),
        () = tokio::time::sleep(drain) => tracing::warn!(?drain, "shutdown deadline reached, closing open connections"),
    }
}

/// The accept loop of one listener: admits up to `max_connections` at once
/// and answers the rest `503` at once ([`limits::shed`]).
async fn accept(
    listener: TcpListener,
    door: Door,
    max_connections: usize,
    endpoint: &Arc<Endpoint>,
    http: &hyper::server::conn::http1::Builder,
    graceful: &GracefulShutdown,
    shutdown: &CancellationToken,
) {
    // A connection that has waited on its client for half of what
    // `read_timeout` allows may make room for a new one at the cap.
    let connections = Slots::new(max_connections, endpoint.read_timeout / 2);
    let lingering = Arc::new(Semaphore::new(limits::SHED_LINGERING));
    let failures = Throttle::new("accept failures", ACCEPT_FAILURE_LOGS_PER_SEC);
    let sheds = Throttle::new("connections shed", REFUSAL_LOGS_PER_SEC);
    let evictions = Throttle::new("stalled connections closed", REFUSAL_LOGS_PER_SEC);
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    if failures.admit() {
                        tracing::warn!(error = %e, ?door, "accept failed");
                    }
                    // EMFILE and friends: back off briefly instead of spinning.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let slot = match connections.admit() {
            Admission::Admitted(slot) => slot,
            Admission::Replaced(slot) => {
                if evictions.admit() {
                    tracing::warn!(%peer, ?door, max_connections, "connection limit reached; closed the connection that waited longest on its client to make room");
                }
                slot
            }
            Admission::Full => {
                if sheds.admit() {
                    tracing::warn!(%peer, ?door, max_connections, "connection limit reached; answered 503 with Retry-After");
                }
                limits::shed(stream, &lingering);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let endpoint = endpoint.clone();
        let activity = slot.activity.clone();
        let service = hyper::service::service_fn(move |mut request| {
            let endpoint = endpoint.clone();
            let activity = activity.clone();
            request.extensions_mut().insert(activity.clone());
            async move {
                let response = match door {
                    Door::Webhook => respond(&endpoint, request, peer).await,
                    Door::Admin => admin(&endpoint, &request).await,
                };
                activity.answered();
                Ok::<_, Infallible>(response)
            }
        });
        let connection = http.serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            tokio::select! {
                ended = connection => {
                    if let Err(e) = ended {
                        tracing::debug!(error = %e, %peer, "connection ended with an error");
                    }
                }
                () = slot.evicted.cancelled() => {
                    tracing::debug!(%peer, "closed to make room for a new connection");
                }
            }
            drop(slot);
        });
    }
    drop(listener);
}

/// Decides the answer to one request.
pub async fn respond(
    endpoint: &Endpoint,
    request: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    if path == endpoint.path {
        if request.method() != Method::POST {
            let mut response = message(
                StatusCode::METHOD_NOT_ALLOWED,
                "Method not allowed: send POST",
            );
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("POST"));
            return response;
        }
        return webhook(endpoint, request, peer).await;
    }
    if path == "/healthz" {
        if let Some(refused) = only_get(request.method()) {
            return refused;
        }
        return health(endpoint).await;
    }
    message(StatusCode::NOT_FOUND, "Not found")
}

/// Decides the answer to one request on the admin listener.
pub async fn admin(endpoint: &Endpoint, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    if request.uri().path() != "/healthz" {
        return message(StatusCode::NOT_FOUND, "Not found");
    }
    if let Some(refused) = only_get(request.method()) {
        return refused;
    }
    health_details(endpoint).await
}

/// `405` unless `method` reads.
fn only_get(method: &Method) -> Option<Response<Full<Bytes>>> {
    if method == Method::GET || method == Method::HEAD {
        return None;
    }
    let mut response = message(
        StatusCode::METHOD_NOT_ALLOWED,
        "Method not allowed: send GET",
    );
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
    Some(response)
}

async fn webhook(
    endpoint: &Endpoint,
    request: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Full<Bytes>> {
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > endpoint.max_body) {
        Counters::bump(&endpoint.counters.rejected);
        return too_large(endpoint.max_body);
    }
    let signature = request
        .headers()
        .get("stripe-signature")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let activity = request.extensions().get::<Arc<Activity>>().cloned();
    let deadline = tokio::time::Instant::now() + endpoint.read_timeout;
    let read = read_body(endpoint, request.into_body(), declared);
    let (body, _reservation) = match tokio::time::timeout_at(deadline, read).await {
        Ok(Ok(read)) => read,
        Ok(Err(BodyError::TooLarge)) => {
            Counters::bump(&endpoint.counters.rejected);
            return too_large(endpoint.max_body);
        }
        Ok(Err(BodyError::Busy)) => {
            Counters::bump(&endpoint.counters.rejected);
            if endpoint.log_refusal() {
                tracing::warn!(%peer, "server.body_buffer is full; answered 503 with Retry-After");
            }
            return busy();
        }
        Ok(Err(BodyError::Unreadable(e))) => {
            tracing::debug!(error = %e, %peer, "request body could not be read");
            return message(
                StatusCode::BAD_REQUEST,
                "Bad request: the body could not be read",
            );
        }
        Err(_) => {
            Counters::bump(&endpoint.counters.rejected);
            if endpoint.log_refusal() {
                tracing::warn!(%peer, read_timeout = ?endpoint.read_timeout, "request body not received within server.read_timeout; connection closed");
            }
            return timed_out(endpoint.read_timeout);
        }
    };
    // The whole request is in hand: its connection is not closed to make
    // room for another while it is verified, journaled and answered.
    let _working = activity.as_ref().map(Activity::working);
    Counters::bump(&endpoint.counters.received);

    let Some(signature) = signature else {
        Counters::bump(&endpoint.counters.rejected);
        if endpoint.log_refusal() {
            tracing::warn!(%peer, "refused a request without a Stripe-Signature header");
        }
        return message(StatusCode::BAD_REQUEST, "Bad request");
    };
    if let Err(e) = verify::verify(
        &body,
        &signature,
        &endpoint.secrets,
        crate::clock::unix_now(),
        endpoint.tolerance,
    ) {
        Counters::bump(&endpoint.counters.rejected);
        let hint = hints::refusal_hint(&e, &body, &signature, &endpoint.secrets);
        if endpoint.log_refusal() {
            tracing::warn!(%peer, reason = %e, %hint, "refused a request whose signature does not verify");
        }
        return json_response(
            StatusCode::BAD_REQUEST,
            &json!({
                "message": format!("Webhook signature verification failed: {e}"),
                "hint": hint,
            }),
        );
    }
    // Parsed whole, once: the intake hands the parsed event to the router.
    let event = match Event::parse(&body) {
        Ok(event) => event,
        Err(e) => {
            Counters::bump(&endpoint.counters.rejected);
            if endpoint.log_refusal() {
                tracing::warn!(%peer, reason = %e, "refused a verified body that is not an event");
            }
            return message(StatusCode::BAD_REQUEST, &format!("Bad request: {e}"));
        }
    };

    let span = tracing::info_span!("webhook", event_id = %event.id, event_type = %event.kind);
    let id = event.id.clone();
    match endpoint
        .engine
        .accept(event, body)
        .instrument(span.clone())
        .await
    {
        Ok(journaled) => {
            let duplicate = journaled == Journaled::Duplicate;
            if duplicate {
                Counters::bump(&endpoint.counters.duplicates);
                span.in_scope(|| tracing::info!("duplicate event acknowledged, not routed again"));
            } else {
                span.in_scope(|| tracing::debug!("journaled"));
            }
            json_response(
                StatusCode::OK,
                &json!({ "received": true, "id": id, "duplicate": duplicate }),
            )
        }
        Err(e) => {
            Counters::bump(&endpoint.counters.failed);
            span.in_scope(|| tracing::error!(error = %e, "event not journaled; answering 500 so that Stripe retries"));
            message(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The event could not be stored; retry later",
            )
        }
    }
}

/// Why a request body was not read whole.
enum BodyError {
    TooLarge,
    /// `server.body_buffer` has no room for it.
    Busy,
    Unreadable(hyper::Error),
}

/// Reads a request body up to `server.max_body`, holding room for it in
/// `server.body_buffer` (reserved from the declared length up front, else
/// as bytes arrive) until the reservation is dropped.
async fn read_body(
    endpoint: &Endpoint,
    mut body: Incoming,
    declared: Option<u64>,
) -> Result<(Bytes, Reservation), BodyError> {
    let declared = declared.unwrap_or(0);
    let mut reservation = endpoint
        .body_buffer
        .reserve(declared)
        .ok_or(BodyError::Busy)?;
    let mut bytes = Vec::with_capacity(usize::try_from(declared).unwrap_or(0));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(BodyError::Unreadable)?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let needed = bytes.len() + data.len();
        if needed as u64 > endpoint.max_body {
            return Err(BodyError::TooLarge);
        }
        if needed > bytes.capacity() {
            // Grown as a `Vec` grows (doubling), but only as far as the
            // reservation covers: the memory held is the memory counted.
            let max = usize::try_from(endpoint.max_body).unwrap_or(usize::MAX);
            let doubled = bytes.capacity().saturating_mul(2).min(max).max(needed);
            let target = if reservation.grow_to(doubled as u64) {
                doubled
            } else if reservation.grow_to(needed as u64) {
                needed
            } else {
                return Err(BodyError::Busy);
            };
            bytes.reserve_exact(target - bytes.len());
        }
        bytes.extend_from_slice(&data);
    }
    Ok((Bytes::from(bytes), reservation))
}

/// The webhook port's `/healthz`: whether events can be taken now, and
/// nothing else, since anyone can ask (SPEC §7).
async fn health(endpoint: &Endpoint) -> Response<Full<Bytes>> {
    match endpoint.unavailable().await {
        None => json_response(StatusCode::OK, &json!({ "status": "ok" })),
        // Not logged: anyone can ask, as often as they like; the journal's
        // own errors are logged where they happen.
        Some(_) => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({
                "status": "unavailable",
                "reason": "the journal cannot be written; the admin listener's /healthz says why",
            }),
        ),
    }
}

/// The admin listener's `/healthz`: versions, reload errors, counters and
/// queue depths.
async fn health_details(endpoint: &Endpoint) -> Response<Full<Bytes>> {
    let snapshot = endpoint.live.load();
    let last_error = endpoint.live.last_error().map(|failure| {
        json!({
            "at": failure.at,
            "problems": failure.error.problems.iter().map(ToString::to_string).collect::<Vec<_>>(),
        })
    });
    let unavailable = endpoint.unavailable().await;
    let c = &endpoint.counters;
    let routing = &endpoint.engine.counts;
    let queues = match endpoint.engine.store().depths().await {
        Ok(depths) => serde_json::to_value(depths).unwrap_or_default(),
        Err(e) => json!({ "error": e.to_string() }),
    };
    let status = match (&unavailable, &last_error) {
        (Some(_), _) => "unavailable",
        (None, Some(_)) => "degraded",
        (None, None) => "ok",
    };
    // The file's name only: the folder layout is nobody's business.
    let file = endpoint
        .live
        .path()
        .file_name()
        .map(|name| name.to_string_lossy().into_owned());
    json_response(
        StatusCode::OK,
        &json!({
            "status": status,
            "version": env!("CARGO_PKG_VERSION"),
            "journal": { "writable": unavailable.is_none(), "error": unavailable },
            "config": {
                "file": file,
                "version": snapshot.version,
                "routes": snapshot.routes.len(),
                "sinks": snapshot.config.sinks.len(),
                "last_reload_error": last_error,
            },
            "events": {
                "received": c.received.load(Ordering::Relaxed),
                "duplicates": c.duplicates.load(Ordering::Relaxed),
                "rejected": c.rejected.load(Ordering::Relaxed),
                "failed": c.failed.load(Ordering::Relaxed),
                "routed": routing.routed.load(Ordering::Relaxed),
                "unmatched": routing.unmatched.load(Ordering::Relaxed),
            },
            "queues": queues,
        }),
    )
}

/// `server.body_buffer` is full. The body is left unread, so the connection
/// closes.
fn busy() -> Response<Full<Bytes>> {
    let mut response = message(
        StatusCode::SERVICE_UNAVAILABLE,
        "Busy: too many request bodies are being read at once (server.body_buffer); retry later",
    );
    let headers = response.headers_mut();
    headers.insert(RETRY_AFTER, HeaderValue::from(limits::RETRY_AFTER_SECS));
    headers.insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

/// The body did not arrive in time: the connection closes.
fn timed_out(limit: Duration) -> Response<Full<Bytes>> {
    let mut response = message(
        StatusCode::REQUEST_TIMEOUT,
        &format!(
            "Request timeout: the body did not arrive within {} (server.read_timeout)",
            humantime::format_duration(limit)
        ),
    );
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

/// The rest of the body is left unread, so the connection cannot carry
/// another request: say so, or the client would reuse it.
fn too_large(max: u64) -> Response<Full<Bytes>> {
    let mut response = message(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("Payload too large: the limit is {max} bytes (server.max_body)"),
    );
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

fn message(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    json_response(status, &json!({ "message": text }))
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
