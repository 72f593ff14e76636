//! The one accept loop that every HTTP server of the crate runs on: the
//! webhook port ([`crate::ingest`]), the admin listener ([`crate::admin`]),
//! the Stripe stand-in and the demo's shipping service ([`crate::offline`]),
//! and the consumers of the benchmark and of the tests.
//!
//! [`serve`] takes a bound listener and a handler, accepts until its
//! shutdown token is cancelled, drives each connection with hyper's HTTP/1,
//! then drains: connections finish the request in hand within
//! [`Options::drain`] and are closed once it is over. The bounds a public
//! port needs are options: a connection [`Cap`] ([`cap`]), hyper's header
//! read timeout and read buffer. A few small JSON answers shared by the
//! router's two listeners live here too.

pub mod cap;
pub mod throttle;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Incoming};
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use cap::{Activity, RETRY_AFTER_SECS, Working};
pub use throttle::Throttle;

/// `accept failed` lines a second: the error repeats for as long as its
/// cause (out of file descriptors) lasts, and one line says it.
const ACCEPT_FAILURE_LOGS_PER_SEC: u32 = 1;

/// How long the loop pauses after a failed accept (EMFILE and friends)
/// instead of spinning on it.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// How one listener is served. [`Options::new`] gives a loopback helper's
/// defaults: no cap, hyper's own limits, connections closed at shutdown.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Names the listener in log lines, e.g. `webhook`.
    pub name: &'static str,
    /// At most this many connections at once; `None`: no cap.
    pub cap: Option<Cap>,
    /// Time to read a request's headers; it also runs while a kept-alive
    /// connection waits for its next request, so it bounds idle
    /// connections too. `None`: no limit.
    pub header_read_timeout: Option<Duration>,
    /// Bytes hyper buffers per connection; `None`: hyper's default.
    pub max_buf_size: Option<usize>,
    /// Once shutdown starts, how long open connections have to finish the
    /// request in hand; they are closed after it. Zero closes them at once.
    pub drain: Duration,
}

impl Options {
    pub fn new(name: &'static str) -> Options {
        Options {
            name,
            cap: None,
            header_read_timeout: None,
            max_buf_size: None,
            drain: Duration::ZERO,
        }
    }
}

/// A connection cap. At the cap, the connection that has waited longest on
/// its client makes room if it has waited at least `evict_after`; otherwise
/// the new connection is answered `503` with `Retry-After` and closed.
/// Requests on a capped listener carry their connection's [`Activity`] as an
/// extension, so that a handler can mark a request being worked on
/// ([`Activity::working`]) as not to be closed.
#[derive(Debug, Clone, Copy)]
pub struct Cap {
    pub max_connections: usize,
    pub evict_after: Duration,
}

/// Serves `listener` with `handler` until `shutdown` completes (e.g. a
/// [`CancellationToken::cancelled_owned`]), then stops accepting and drains
/// within [`Options::drain`]. Returns once every connection is closed or the
/// drain is over.
pub async fn serve<H, F, B>(
    listener: TcpListener,
    options: Options,
    handler: H,
    shutdown: impl Future<Output = ()>,
) where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let name = options.name;
    let mut http = hyper::server::conn::http1::Builder::new();
    // Set even when `None`: with a timer, hyper would otherwise apply its own
    // 30 s default.
    http.timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout);
    if let Some(bytes) = options.max_buf_size {
        http.max_buf_size(bytes);
    }
    let gate = options.cap.map(cap::Gate::new);
    let handler = Arc::new(handler);
    let graceful = GracefulShutdown::new();
    // Cancelled when the drain is over: what is still open then is closed.
    let closed = CancellationToken::new();
    let failures = Throttle::new("accept failures", ACCEPT_FAILURE_LOGS_PER_SEC);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    if failures.admit() {
                        tracing::warn!(error = %e, listener = name, "accept failed");
                    }
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let (stream, slot) = match &gate {
            None => (stream, None),
            Some(gate) => match gate.admit(stream, peer, name) {
                Some((stream, slot)) => (stream, Some(slot)),
                None => continue,
            },
        };
        let _ = stream.set_nodelay(true);
        let activity = slot.as_ref().map(|slot| slot.activity.clone());
        let handler = handler.clone();
        let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            if let Some(activity) = &activity {
                request.extensions_mut().insert(activity.clone());
            }
            let answer = handler(request, peer);
            let activity = activity.clone();
            async move {
                let response = answer.await;
                if let Some(activity) = activity {
                    activity.answered();
                }
                Ok::<_, Infallible>(response)
            }
        });
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        let evicted = slot
            .as_ref()
            .map_or_else(CancellationToken::new, |slot| slot.evicted.clone());
        let closed = closed.clone();
        tokio::spawn(async move {
            tokio::select! {
                ended = connection => {
                    if let Err(e) = ended {
                        tracing::debug!(error = %e, %peer, listener = name, "connection ended with an error");
                    }
                }
                () = evicted.cancelled() => {
                    tracing::debug!(%peer, listener = name, "closed to make room for a new connection");
                }
                () = closed.cancelled() => {}
            }
            drop(slot);
        });
    }
    drop(listener);
    if !options.drain.is_zero() {
        let drain = options.drain;
        tokio::select! {
            () = graceful.shutdown() => tracing::info!(listener = name, "all connections drained"),
            () = tokio::time::sleep(drain) => tracing::warn!(listener = name, ?drain, "shutdown deadline reached, closing open connections"),
        }
    }
    closed.cancel();
}

/// A JSON answer.
pub fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// `{"message": text}`.
pub fn message(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    json_response(status, &serde_json::json!({ "message": text }))
}

/// `405` unless `method` reads.
pub fn only_get(method: &Method) -> Option<Response<Full<Bytes>>> {
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

#[cfg(test)]
mod tests;
