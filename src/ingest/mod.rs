//! The webhook door: `POST {server.path}` for Stripe and a bare `GET
//! /healthz` on the port that faces the internet. The details for operators
//! are on the admin listener ([`crate::admin`]), never here.
//!
//! A verified event is answered 200 once it is durably journaled; routing
//! and delivery happen afterwards ([`crate::delivery`]).
//!
//! Every answer of the webhook port is decided in [`respond`]; [`serve`]
//! runs it on the shared accept loop ([`crate::http_serve`]) with the
//! door's bounds ([`limits`]).

pub mod hints;
pub mod limits;
pub mod verify;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONNECTION, CONTENT_LENGTH, HeaderValue, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::delivery::Engine;
use crate::http_serve::{self, Activity, Cap, Options, Throttle, json_response, message, only_get};
use crate::ingest::verify::Secrets;
use crate::metrics::{Answer, Metrics};
use crate::routing::live::Live;
use crate::store::Journaled;

use limits::{BodyBuffer, Reservation};

pub use crate::http_serve::throttle::REFUSAL_LOGS_PER_SEC;

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
    /// The routes in force; the webhook door itself does not read it, the
    /// admin listener shows its version and reload errors.
    pub live: Arc<Live>,
    pub engine: Engine,
    pub counters: Counters,
    /// The router's metrics: the door records each answer.
    pub metrics: Arc<Metrics>,
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
    pub(crate) async fn unavailable(&self) -> Option<String> {
        self.engine
            .store()
            .health()
            .await
            .err()
            .map(|e| e.to_string())
    }
}

/// Running totals of the door, shown on the admin listener's `/healthz`.
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

/// Serves the webhook port until `shutdown`, then gives in-flight requests
/// `drain` to finish. At most `max_connections` at once
/// (`server.max_connections`, lowered to fit the open-file limit).
pub async fn serve(
    listener: TcpListener,
    max_connections: usize,
    endpoint: Arc<Endpoint>,
    shutdown: CancellationToken,
    drain: Duration,
) {
    let options = Options {
        cap: Some(Cap {
            max_connections,
            // A connection that has waited on its client for half of what
            // `read_timeout` allows may make room for a new one at the cap.
            evict_after: endpoint.read_timeout / 2,
        }),
        header_read_timeout: Some(endpoint.read_timeout),
        max_buf_size: Some(limits::READ_BUFFER),
        drain,
        ..Options::new("webhook")
    };
    let handler = move |request, peer| {
        let endpoint = endpoint.clone();
        async move { respond(&endpoint, request, peer).await }
    };
    http_serve::serve(listener, options, handler, shutdown.cancelled_owned()).await;
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

/// Answers a webhook request and records how it was answered.
async fn webhook(
    endpoint: &Endpoint,
    request: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Full<Bytes>> {
    let started = std::time::Instant::now();
    let (response, answer) = decide(endpoint, request, peer).await;
    endpoint.metrics.answered(answer, started.elapsed());
    response
}

/// Decides the answer to a webhook request, and says which kind it is.
async fn decide(
    endpoint: &Endpoint,
    request: Request<Incoming>,
    peer: SocketAddr,
) -> (Response<Full<Bytes>>, Answer) {
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > endpoint.max_body) {
        Counters::bump(&endpoint.counters.rejected);
        return (too_large(endpoint.max_body), Answer::TooLarge);
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
            return (too_large(endpoint.max_body), Answer::TooLarge);
        }
        Ok(Err(BodyError::Busy)) => {
            Counters::bump(&endpoint.counters.rejected);
            if endpoint.log_refusal() {
                tracing::warn!(%peer, "server.body_buffer is full; answered 503 with Retry-After");
            }
            return (busy(), Answer::Busy);
        }
        Ok(Err(BodyError::Unreadable(e))) => {
            tracing::debug!(error = %e, %peer, "request body could not be read");
            return (
                message(
                    StatusCode::BAD_REQUEST,
                    "Bad request: the body could not be read",
                ),
                Answer::Unreadable,
            );
        }
        Err(_) => {
            Counters::bump(&endpoint.counters.rejected);
            if endpoint.log_refusal() {
                tracing::warn!(%peer, read_timeout = ?endpoint.read_timeout, "request body not received within server.read_timeout; connection closed");
            }
            return (timed_out(endpoint.read_timeout), Answer::Timeout);
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
        return (
            message(StatusCode::BAD_REQUEST, "Bad request"),
            Answer::NoSignature,
        );
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
        let refusal = json_response(
            StatusCode::BAD_REQUEST,
            &json!({
                "message": format!("Webhook signature verification failed: {e}"),
                "hint": hint,
            }),
        );
        return (refusal, Answer::BadSignature);
    }
    // The intake reads it under the snapshot that will route it: the whole
    // event only when a route admits its type.
    let arrival = match endpoint.engine.read(&body) {
        Ok(arrival) => arrival,
        Err(e) => {
            Counters::bump(&endpoint.counters.rejected);
            if endpoint.log_refusal() {
                tracing::warn!(%peer, reason = %e, "refused a verified body that is not an event");
            }
            let refusal = message(StatusCode::BAD_REQUEST, &format!("Bad request: {e}"));
            return (refusal, Answer::NotAnEvent);
        }
    };

    let span = tracing::info_span!("webhook", event_id = %arrival.id, event_type = %arrival.kind);
    let id = arrival.id.clone();
    match endpoint
        .engine
        .accept(arrival, body)
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
            let answer = if duplicate {
                Answer::Duplicate
            } else {
                Answer::Accepted
            };
            (received(&id, duplicate), answer)
        }
        Err(e) => {
            Counters::bump(&endpoint.counters.failed);
            span.in_scope(|| tracing::error!(error = %e, "event not journaled; answering 5xx so that Stripe retries"));
            // A journal database out of reach (PostgreSQL down) is
            // unavailability, not a fault: 503, and Stripe retries.
            let failed = if e.is_unavailable() {
                let mut response = message(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The journal database is unavailable; retry later",
                );
                response.headers_mut().insert(
                    RETRY_AFTER,
                    HeaderValue::from(crate::http_serve::cap::RETRY_AFTER_SECS),
                );
                response
            } else {
                message(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "The event could not be stored; retry later",
                )
            };
            (failed, Answer::NotJournaled)
        }
    }
}

/// The 200: `{"received":true,"id":…,"duplicate":bool}`, serialized
/// straight from its fields (the answer every event gets).
fn received(id: &str, duplicate: bool) -> Response<Full<Bytes>> {
    #[derive(serde::Serialize)]
    struct Received<'a> {
        received: bool,
        id: &'a str,
        duplicate: bool,
    }
    let body = serde_json::to_vec(&Received {
        received: true,
        id,
        duplicate,
    })
    .unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
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

/// `server.body_buffer` is full. The body is left unread, so the connection
/// closes.
fn busy() -> Response<Full<Bytes>> {
    let mut response = message(
        StatusCode::SERVICE_UNAVAILABLE,
        "Busy: too many request bodies are being read at once (server.body_buffer); retry later",
    );
    let headers = response.headers_mut();
    headers.insert(
        RETRY_AFTER,
        HeaderValue::from(crate::http_serve::cap::RETRY_AFTER_SECS),
    );
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
