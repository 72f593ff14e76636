//! The admin listener (`server.admin_listen`): what an operator asks the
//! running router, never answered on the port that faces the internet.
//! Probes a load balancer sends without credentials (`GET /healthz`, the
//! detailed health: versions, the journal's health, reload errors, the
//! door's counters and the queue depths; `GET /readyz`), then, behind the
//! bearer token when one is required ([`auth`]), the JSON API ([`api`]).

pub mod api;
pub mod auth;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, HeaderValue, WWW_AUTHENTICATE};
use hyper::{Request, Response, StatusCode};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::http_serve::{self, Cap, Options, json_response, message, only_get};
use crate::ingest::Endpoint;
use crate::ingest::limits::{ADMIN_MAX_CONNECTIONS, READ_BUFFER};

/// What the admin listener answers from.
pub struct Admin {
    pub endpoint: Arc<Endpoint>,
    /// Required on every path but the probes, when set.
    pub token: Option<auth::Token>,
}

/// Serves the admin listener until `shutdown`, then gives in-flight
/// requests `drain` to finish. It has its own connection cap, so a flood on
/// the webhook port never locks the operator out.
pub async fn serve(
    listener: TcpListener,
    admin: Arc<Admin>,
    shutdown: CancellationToken,
    drain: Duration,
) {
    let read_timeout = admin.endpoint.read_timeout;
    let options = Options {
        cap: Some(Cap {
            max_connections: ADMIN_MAX_CONNECTIONS,
            evict_after: read_timeout / 2,
        }),
        header_read_timeout: Some(read_timeout),
        max_buf_size: Some(READ_BUFFER),
        drain,
        ..Options::new("admin")
    };
    let handler = move |request, _peer| {
        let admin = admin.clone();
        async move { respond(&admin, request).await }
    };
    http_serve::serve(listener, options, handler, shutdown.cancelled_owned()).await;
}

/// Decides the answer to one request on the admin listener.
pub async fn respond(admin: &Admin, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let endpoint = &admin.endpoint;
    // The probes: a load balancer asks without credentials.
    match request.uri().path() {
        "/healthz" => {
            return match only_get(request.method()) {
                Some(refused) => refused,
                None => health_details(endpoint).await,
            };
        }
        "/readyz" => {
            return match only_get(request.method()) {
                Some(refused) => refused,
                None => readiness(endpoint).await,
            };
        }
        _ => {}
    }
    // Everything else needs the token, unknown paths included: a caller
    // without it learns nothing about what exists.
    if let Some(refused) = authorize(admin.token.as_ref(), &request) {
        return refused;
    }
    match request.uri().path() {
        "/metrics" => {
            crate::metrics::expose::answer(&endpoint.metrics, &**endpoint.engine.store(), &request)
                .await
        }
        path if path.starts_with("/api/") => api::respond(endpoint, request).await,
        _ => message(StatusCode::NOT_FOUND, "Not found"),
    }
}

/// `None` when the request may go on: no token is required, or it carries
/// the right one. Else `401`, with `WWW-Authenticate: Bearer` (and
/// `error="invalid_token"` when a token was given but is wrong). The token
/// is never echoed or logged.
fn authorize(
    token: Option<&auth::Token>,
    request: &Request<Incoming>,
) -> Option<Response<Full<Bytes>>> {
    let token = token?;
    let header = request
        .headers()
        .get(AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    let (text, challenge) = match auth::check(token, header) {
        Some(true) => return None,
        Some(false) => (
            "Unauthorized: the bearer token is wrong",
            r#"Bearer realm="stripe-router admin", error="invalid_token""#,
        ),
        None => (
            "Unauthorized: send `Authorization: Bearer <STRIPE_ROUTER_ADMIN_TOKEN>`",
            r#"Bearer realm="stripe-router admin""#,
        ),
    };
    let mut response = message(StatusCode::UNAUTHORIZED, text);
    response
        .headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    Some(response)
}

/// `GET /readyz`: `200` when the journal takes writes and a config is
/// loaded, so a load balancer sends events here; `503` with the reason
/// otherwise.
async fn readiness(endpoint: &Endpoint) -> Response<Full<Bytes>> {
    let snapshot = endpoint.live.load();
    // A running router always holds a built config (it does not start
    // without one, and a refused reload keeps the old one); said anyway,
    // so that the answer names what readiness means.
    let config = json!({ "loaded": true, "version": snapshot.version });
    match endpoint.unavailable().await {
        None => json_response(
            StatusCode::OK,
            &json!({ "status": "ready", "journal": { "writable": true }, "config": config }),
        ),
        Some(reason) => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({
                "status": "not ready",
                "reason": reason,
                "journal": { "writable": false },
                "config": config,
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
                "warnings": snapshot.warnings.iter().map(ToString::to_string).collect::<Vec<_>>(),
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
