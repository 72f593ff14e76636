//! The admin listener (`server.admin_listen`, loopback only): what an
//! operator asks the running router, never answered on the port that faces
//! the internet. Today one answer, the detailed `GET /healthz`: versions,
//! the journal's health, reload errors, the door's counters and the queue
//! depths.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::http_serve::{self, Cap, Options, json_response, message, only_get};
use crate::ingest::Endpoint;
use crate::ingest::limits::{ADMIN_MAX_CONNECTIONS, READ_BUFFER};

/// Serves the admin listener until `shutdown`, then gives in-flight
/// requests `drain` to finish. It has its own connection cap, so a flood on
/// the webhook port never locks the operator out.
pub async fn serve(
    listener: TcpListener,
    endpoint: Arc<Endpoint>,
    shutdown: CancellationToken,
    drain: Duration,
) {
    let options = Options {
        cap: Some(Cap {
            max_connections: ADMIN_MAX_CONNECTIONS,
            evict_after: endpoint.read_timeout / 2,
        }),
        header_read_timeout: Some(endpoint.read_timeout),
        max_buf_size: Some(READ_BUFFER),
        drain,
        ..Options::new("admin")
    };
    let handler = move |request, _peer| {
        let endpoint = endpoint.clone();
        async move { respond(&endpoint, &request).await }
    };
    http_serve::serve(listener, options, handler, shutdown.cancelled_owned()).await;
}

/// Decides the answer to one request on the admin listener.
pub async fn respond(endpoint: &Endpoint, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    if request.uri().path() == "/metrics" {
        return crate::metrics::expose::answer(
            &endpoint.metrics,
            &**endpoint.engine.store(),
            request,
        )
        .await;
    }
    if request.uri().path() != "/healthz" {
        return message(StatusCode::NOT_FOUND, "Not found");
    }
    if let Some(refused) = only_get(request.method()) {
        return refused;
    }
    health_details(endpoint).await
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
