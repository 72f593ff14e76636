//! The admin listener's JSON API, for operators and dashboards: recent
//! events with what routing and delivery made of them, one event in full
//! (its body, each record, each delivery's recent attempts), dead letters,
//! and replay with the options of the `replay` command. Every answer is
//! bounded: pages of at most [`MAX_LIMIT`], a replay body of at most
//! [`MAX_BODY`] bytes. Reads go through the [`Store`] trait.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{ALLOW, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};

use crate::http_serve::{json_response, message, only_get};
use crate::ingest::Endpoint;
use crate::store::{
    DeadLetterCursor, DeadLetterQuery, EventDetail, EventQuery, Filter, Store, StoreError,
};

/// Items per page unless `limit` says otherwise.
pub const DEFAULT_LIMIT: usize = 50;
/// The most items a page holds, whatever `limit` asks.
pub const MAX_LIMIT: usize = 500;
/// The largest `POST /api/replay` body read.
pub const MAX_BODY: usize = 4 * 1024;
/// The longest value taken for `type`, `sink`, `route`, `event` or `after`.
const MAX_PARAM: usize = 256;

/// Answers a request under `/api/`.
pub async fn respond(endpoint: &Endpoint, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let store = endpoint.engine.store();
    let path = request.uri().path().to_owned();
    let params = match Params::parse(request.uri().query()) {
        Ok(params) => params,
        Err(reason) => return bad_request(&reason),
    };
    match path.as_str() {
        "/api/replay" => {
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
            replay(store.as_ref(), request.into_body()).await
        }
        "/api/events" => match only_get(request.method()) {
            Some(refused) => refused,
            None => events(store.as_ref(), &params).await,
        },
        "/api/deadletters" => match only_get(request.method()) {
            Some(refused) => refused,
            None => dead_letters(store.as_ref(), &params).await,
        },
        _ => match path.strip_prefix("/api/events/") {
            Some(id) if !id.is_empty() && !id.contains('/') && id.len() <= MAX_PARAM => {
                match only_get(request.method()) {
                    Some(refused) => refused,
                    None => event(store.as_ref(), &decode(id)).await,
                }
            }
            _ => message(StatusCode::NOT_FOUND, "Not found"),
        },
    }
}

/// `GET /api/events?limit=&after=&type=`: newest first.
async fn events(store: &dyn Store, params: &Params) -> Response<Full<Bytes>> {
    let after = match params.get("after").map(str::parse::<i64>) {
        None => None,
        Some(Ok(after)) => Some(after),
        Some(Err(_)) => {
            return bad_request("`after` must be the `next` of the page before");
        }
    };
    let limit = match params.limit() {
        Ok(limit) => limit,
        Err(reason) => return bad_request(&reason),
    };
    let query = EventQuery {
        limit,
        after,
        kind: params.get("type").map(str::to_owned),
    };
    match store.events(query).await {
        Ok(page) => json_response(
            StatusCode::OK,
            &json!({
                "events": page.events,
                "next": page.next.map(|n| n.to_string()),
            }),
        ),
        Err(e) => store_error(&e),
    }
}

/// `GET /api/events/{id}`: the event, its body, each record and each
/// delivery's recent attempts.
async fn event(store: &dyn Store, id: &str) -> Response<Full<Bytes>> {
    match store.event(id).await {
        Ok(Some(detail)) => json_response(StatusCode::OK, &detail_json(detail)),
        Ok(None) => message(
            StatusCode::NOT_FOUND,
            "Not found: no such event in the journal (never received, or pruned after store.retention)",
        ),
        Err(e) => store_error(&e),
    }
}

/// The event's view with its body and each record's body and each
/// delivery's attempts put in their places.
fn detail_json(detail: EventDetail) -> Value {
    let EventDetail {
        event,
        body,
        record_bodies,
        attempts,
    } = detail;
    let mut value = serde_json::to_value(event).unwrap_or_default();
    value["body"] = as_json(&body);
    if let Some(records) = value["records"].as_array_mut() {
        for ((record, body), attempts) in records.iter_mut().zip(&record_bodies).zip(attempts) {
            record["body"] = as_json(body);
            if let Some(deliveries) = record["deliveries"].as_array_mut() {
                for (delivery, attempts) in deliveries.iter_mut().zip(attempts) {
                    delivery["history"] = serde_json::to_value(attempts).unwrap_or_default();
                }
            }
        }
    }
    value
}

/// Stored bytes as JSON when they are (events and records are), else as
/// text.
fn as_json(bytes: &Bytes) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

/// `GET /api/deadletters?limit=&after=&sink=&route=&event=`: newest first.
async fn dead_letters(store: &dyn Store, params: &Params) -> Response<Full<Bytes>> {
    let after = match params.get("after").map(decode_cursor) {
        None => None,
        Some(Some(cursor)) => Some(cursor),
        Some(None) => return bad_request("`after` must be the `next` of the page before"),
    };
    let limit = match params.limit() {
        Ok(limit) => limit,
        Err(reason) => return bad_request(&reason),
    };
    let query = DeadLetterQuery {
        filter: Filter {
            sink: params.get("sink").map(str::to_owned),
            route: params.get("route").map(str::to_owned),
            event: params.get("event").map(str::to_owned),
        },
        limit,
        after,
    };
    match store.dead_letter_page(query).await {
        Ok(page) => json_response(
            StatusCode::OK,
            &json!({
                "dead_letters": page.letters,
                "next": page.next.as_ref().map(encode_cursor),
            }),
        ),
        Err(e) => store_error(&e),
    }
}

/// What `POST /api/replay` takes: the options of `stripe-router replay`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayRequest {
    #[serde(default)]
    all: bool,
    sink: Option<String>,
    route: Option<String>,
    event: Option<String>,
    #[serde(default)]
    reroute: bool,
}

impl ReplayRequest {
    /// The command line's rules: `all` alone; `reroute` with `event` only;
    /// otherwise at least one filter.
    fn check(&self) -> Result<(), &'static str> {
        let filtered = self.sink.is_some() || self.route.is_some() || self.event.is_some();
        if self.all && filtered {
            return Err("`all` replays every dead letter: leave out `sink`, `route` and `event`");
        }
        if self.reroute && (self.event.is_none() || self.sink.is_some() || self.route.is_some()) {
            return Err("`reroute` routes one event again: give `event` and nothing else");
        }
        if !self.all && !filtered {
            return Err(
                "say which dead letters to replay: {\"all\": true}, or `sink`, `route` or `event`",
            );
        }
        Ok(())
    }
}

/// `POST /api/replay`: re-queues dead letters, or routes an event again,
/// through the `replay` command's own function.
async fn replay(store: &dyn Store, body: Incoming) -> Response<Full<Bytes>> {
    let bytes = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return message(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("Payload too large: a replay request is at most {MAX_BODY} bytes of JSON"),
            );
        }
    };
    let ask: ReplayRequest = match serde_json::from_slice(&bytes) {
        Ok(ask) => ask,
        Err(e) => {
            return bad_request(&format!(
                "the body must be JSON like {{\"sink\": \"shipping\"}} (keys: all, sink, route, event, reroute): {e}"
            ));
        }
    };
    if let Err(reason) = ask.check() {
        return bad_request(reason);
    }
    tracing::info!(
        all = ask.all, sink = ?ask.sink, route = ?ask.route, event = ?ask.event,
        reroute = ask.reroute, "replay asked on the admin listener"
    );
    let filter = Filter {
        sink: ask.sink,
        route: ask.route,
        event: ask.event,
    };
    let mut said = Vec::new();
    match crate::store::replay::replay(store, filter, ask.all, ask.reroute, &mut said).await {
        Ok(queued) => json_response(
            StatusCode::OK,
            &json!({
                "queued": queued,
                "message": String::from_utf8_lossy(&said).trim(),
            }),
        ),
        Err(e) => match e.downcast_ref::<StoreError>() {
            Some(store) => store_error(store),
            // The event to reroute is not in the journal.
            None => message(StatusCode::NOT_FOUND, &format!("Not found: {e}")),
        },
    }
}

/// The journal could not be read: `503`, as `/readyz` would say.
fn store_error(e: &StoreError) -> Response<Full<Bytes>> {
    tracing::warn!(error = %e, "the admin API cannot read the journal");
    message(
        StatusCode::SERVICE_UNAVAILABLE,
        &format!("Unavailable: {e}"),
    )
}

fn bad_request(reason: &str) -> Response<Full<Bytes>> {
    message(StatusCode::BAD_REQUEST, &format!("Bad request: {reason}"))
}

/// A query string's parameters, decoded; each bounded in length.
struct Params(Vec<(String, String)>);

impl Params {
    /// The parameters, or why they are refused.
    fn parse(query: Option<&str>) -> Result<Params, String> {
        let pairs: Vec<(String, String)> =
            url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
        if let Some((key, _)) = pairs.iter().find(|(_, v)| v.len() > MAX_PARAM) {
            return Err(format!("`{key}` is longer than {MAX_PARAM} bytes"));
        }
        Ok(Params(pairs))
    }

    /// The first non-empty value of `key`.
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, v)| k == key && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// `limit`: [`DEFAULT_LIMIT`] when absent, at most [`MAX_LIMIT`].
    fn limit(&self) -> Result<usize, String> {
        match self.get("limit").map(str::parse::<usize>) {
            None => Ok(DEFAULT_LIMIT),
            Some(Ok(n)) if n >= 1 => Ok(n.min(MAX_LIMIT)),
            Some(_) => Err(format!("`limit` must be a number from 1 to {MAX_LIMIT}")),
        }
    }
}

/// A path segment, percent-decoded.
fn decode(segment: &str) -> String {
    url::form_urlencoded::parse(format!("id={segment}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// A dead-letter cursor as one opaque, URL-safe word.
fn encode_cursor(cursor: &DeadLetterCursor) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}\n{}", cursor.updated_at_ms, cursor.key))
}

fn decode_cursor(text: &str) -> Option<DeadLetterCursor> {
    let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (at, key) = text.split_once('\n')?;
    Some(DeadLetterCursor {
        updated_at_ms: at.parse().ok()?,
        key: key.to_owned(),
    })
}

#[cfg(test)]
#[path = "api_tests.rs"]
mod tests;
