//! The HTTP server: `POST {server.path}` for Stripe, `GET /healthz`.
//!
//! A verified event is answered 200 once it is durably journaled; routing
//! and delivery happen afterwards ([`crate::deliver`]).
//!
//! Every answer is decided in [`respond`]; the connection loop in [`serve`]
//! only accepts, drives hyper and drains on shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::deliver::Engine;
use crate::diagnose;
use crate::event::Event;
use crate::reload::Live;
use crate::store::Journaled;
use crate::verify::{self, Secrets};

/// What the endpoint needs to answer a request.
pub struct Endpoint {
    pub path: String,
    pub max_body: u64,
    pub tolerance: Duration,
    pub secrets: Secrets,
    pub live: Arc<Live>,
    pub engine: Engine,
    pub counters: Counters,
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

/// Accepts connections on `listener` until `shutdown`, then stops accepting
/// and gives in-flight requests `drain` to finish.
pub async fn serve(
    listener: TcpListener,
    endpoint: Arc<Endpoint>,
    shutdown: CancellationToken,
    drain: Duration,
) {
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30));
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let endpoint = endpoint.clone();
        let service = hyper::service::service_fn(move |request| {
            let endpoint = endpoint.clone();
            async move { Ok::<_, Infallible>(respond(&endpoint, request, peer).await) }
        });
        let connection = http.serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections drained"),
        () = tokio::time::sleep(drain) => tracing::warn!(?drain, "shutdown deadline reached, closing open connections"),
    }
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
        if request.method() != Method::GET && request.method() != Method::HEAD {
            let mut response = message(
                StatusCode::METHOD_NOT_ALLOWED,
                "Method not allowed: send GET",
            );
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }
        return health(endpoint).await;
    }
    message(StatusCode::NOT_FOUND, "Not found")
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
    let limit = usize::try_from(endpoint.max_body).unwrap_or(usize::MAX);
    let body = match Limited::new(request.into_body(), limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Counters::bump(&endpoint.counters.rejected);
            return too_large(endpoint.max_body);
        }
        Err(e) => {
            tracing::debug!(error = %e, %peer, "request body could not be read");
            return message(
                StatusCode::BAD_REQUEST,
                "Bad request: the body could not be read",
            );
        }
    };
    Counters::bump(&endpoint.counters.received);

    let Some(signature) = signature else {
        Counters::bump(&endpoint.counters.rejected);
        tracing::warn!(%peer, "refused a request without a Stripe-Signature header");
        return message(StatusCode::BAD_REQUEST, "Bad request");
    };
    if let Err(e) = verify::verify(
        &body,
        &signature,
        &endpoint.secrets,
        verify::unix_now(),
        endpoint.tolerance,
    ) {
        Counters::bump(&endpoint.counters.rejected);
        let hint = diagnose::refusal_hint(&e, &body, &signature, &endpoint.secrets);
        tracing::warn!(%peer, reason = %e, %hint, "refused a request whose signature does not verify");
        return json_response(
            StatusCode::BAD_REQUEST,
            &json!({
                "message": format!("Webhook signature verification failed: {e}"),
                "hint": hint,
            }),
        );
    }
    let event = match Event::head(&body) {
        Ok(event) => event,
        Err(e) => {
            Counters::bump(&endpoint.counters.rejected);
            tracing::warn!(%peer, reason = %e, "refused a verified body that is not an event");
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

async fn health(endpoint: &Endpoint) -> Response<Full<Bytes>> {
    let snapshot = endpoint.live.load();
    let last_error = endpoint.live.last_error().map(|failure| {
        json!({
            "at": failure.at,
            "problems": failure.error.problems.iter().map(ToString::to_string).collect::<Vec<_>>(),
        })
    });
    let c = &endpoint.counters;
    let routing = &endpoint.engine.counts;
    let queues = match endpoint.engine.store().depths().await {
        Ok(depths) => serde_json::to_value(depths).unwrap_or_default(),
        Err(e) => json!({ "error": e.to_string() }),
    };
    json_response(
        StatusCode::OK,
        &json!({
            "status": if last_error.is_some() { "degraded" } else { "ok" },
            "version": env!("CARGO_PKG_VERSION"),
            "config": {
                "path": endpoint.live.path().display().to_string(),
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
