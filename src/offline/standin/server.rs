//! The stand-in's HTTP server: `GET /v1/checkout/sessions/{id}/line_items`
//! with Stripe's pagination, expansion, authentication and error shapes,
//! catalogue mode for `send`, scripted faults and [`Misbehaviour`].
//!
//! It is a real hyper server on a loopback port, kept light: a request takes
//! one read lock and serializes one page.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::http_serve::{self, Options};

use super::payloads::{
    API_VERSION, cart_for, catalogue_count, catalogue_items, line_item_fixture, named_count,
};

/// A running stand-in. Dropping it (or [`StripeStandIn::shutdown`]) stops
/// the listener and closes every connection.
#[derive(Debug)]
pub struct StripeStandIn {
    addr: SocketAddr,
    state: Arc<State>,
    stop: CancellationToken,
}

#[derive(Debug)]
struct State {
    /// The key requests must carry, as Bearer or Basic auth.
    api_key: String,
    sessions: RwLock<HashMap<String, Arc<Vec<Value>>>>,
    misbehaving: RwLock<HashMap<String, Misbehaviour>>,
    fault: Mutex<Option<Fault>>,
    requests: AtomicU64,
    last_headers: Mutex<Option<HeaderMap>>,
    /// Serve unknown sessions: [`catalogue_items`] when the id names a
    /// count, else a cart made from the id.
    catalogue: AtomicBool,
    /// How long every answer waits before it is sent, in milliseconds.
    delay_ms: AtomicU64,
}

/// How the stand-in misbehaves for a session, in Stripe's shapes over real
/// HTTP: what a broken or hostile API at `STRIPE_API_BASE` could send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misbehaviour {
    /// Every page says `has_more: true` and holds `per_page` new items (at
    /// most the request's `limit`), so the cursor always moves on.
    EndlessPages { per_page: usize },
    /// One page of one item whose `description` makes the body `bytes`
    /// long. `announced`: with a `Content-Length`; otherwise chunked.
    Huge { bytes: u64, announced: bool },
}

#[derive(Debug, Clone, Copy)]
struct Fault {
    remaining: u32,
    status: StatusCode,
    should_retry: Option<bool>,
}

impl StripeStandIn {
    /// Binds `addr` (port 0 for an ephemeral one) and serves on the current
    /// tokio runtime. Requests must carry the key as Stripe's clients do:
    /// `Authorization: Bearer <api_key>`, or Basic auth with the key as the
    /// user name (`curl -u <api_key>:`).
    pub async fn start(addr: SocketAddr, api_key: &str) -> io::Result<StripeStandIn> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            api_key: api_key.to_owned(),
            sessions: RwLock::default(),
            misbehaving: RwLock::default(),
            fault: Mutex::default(),
            requests: AtomicU64::new(0),
            last_headers: Mutex::default(),
            catalogue: AtomicBool::new(false),
            delay_ms: AtomicU64::new(0),
        });
        let stop = CancellationToken::new();
        let handler = {
            let state = Arc::clone(&state);
            move |request, _peer| {
                let state = Arc::clone(&state);
                async move {
                    let delay = state.delay_ms.load(Ordering::Relaxed);
                    if delay > 0 {
                        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
                    }
                    respond(&state, request)
                }
            }
        };
        let options = Options::new("stripe stand-in");
        tokio::spawn(http_serve::serve(
            listener,
            options,
            handler,
            stop.clone().cancelled_owned(),
        ));
        Ok(StripeStandIn { addr, state, stop })
    }

    /// The base URL to use as `STRIPE_API_BASE`, e.g. `http://127.0.0.1:4242`.
    pub fn url(&self) -> url::Url {
        let mut url = url::Url::parse("http://127.0.0.1/").expect("a valid literal URL");
        // Both calls only fail for URLs that cannot have a host or port.
        let _ = url.set_ip_host(self.addr.ip());
        let _ = url.set_port(Some(self.addr.port()));
        url
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stores (or replaces) a session's line items, in list order. Items are
    /// stored as built by [`line_item_fixture`], with the product expanded.
    pub fn add_session(&self, session_id: &str, line_items: Vec<Value>) {
        let mut sessions = self
            .state
            .sessions
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        sessions.insert(session_id.to_owned(), Arc::new(line_items));
    }

    /// From now on, answers for `session_id` misbehave as `how` says.
    pub fn misbehave(&self, session_id: &str, how: Misbehaviour) {
        self.state
            .misbehaving
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(session_id.to_owned(), how);
    }

    /// Catalogue mode, for offline work with `stripe-router send`: a session
    /// that was not added but whose id ends in `_<N>items` (see
    /// [`super::catalogue_session_id`]) has the `N` items of
    /// [`super::catalogue_items`]; any other id has a plausible cart of one
    /// to four items, the same for the same id, so events from files and
    /// fixtures complete too.
    pub fn serve_catalogue(&self) {
        self.state.catalogue.store(true, Ordering::Relaxed);
    }

    /// From now on every answer waits `delay` before it is sent, as a
    /// Stripe API that is slow to answer does (at most an hour).
    pub fn answer_after(&self, delay: std::time::Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.state
            .delay_ms
            .store(ms.min(3_600_000), Ordering::Relaxed);
    }

    /// The next `n` requests answer `status` with a Stripe error body.
    pub fn fail_next(&self, n: u32, status: u16) {
        self.fail_next_with(n, status, None);
    }

    /// Like [`Self::fail_next`], with a `Stripe-Should-Retry` header when
    /// `should_retry` is set.
    pub fn fail_next_with(&self, n: u32, status: u16, should_retry: Option<bool>) {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let fault = (n > 0).then_some(Fault {
            remaining: n,
            status,
            should_retry,
        });
        *self
            .state
            .fault
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = fault;
    }

    /// Requests received so far, failed ones included.
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::Relaxed)
    }

    /// The headers of the last request received.
    pub fn last_headers(&self) -> Option<HeaderMap> {
        self.state
            .last_headers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn shutdown(self) {
        self.stop.cancel();
    }
}

impl Drop for StripeStandIn {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn respond(state: &State, request: Request<Incoming>) -> Response<Answer> {
    let number = state.requests.fetch_add(1, Ordering::Relaxed) + 1;
    *state
        .last_headers
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = Some(request.headers().clone());
    let mut response = route(state, &request);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let version = request.headers().get("stripe-version").cloned();
    headers.insert(
        "stripe-version",
        version.unwrap_or(HeaderValue::from_static(API_VERSION)),
    );
    if let Ok(id) = HeaderValue::try_from(format!("req_standin{number:014}")) {
        headers.insert("request-id", id);
    }
    response
}

fn route(state: &State, request: &Request<Incoming>) -> Response<Answer> {
    if let Some(fault) = take_fault(state) {
        let mut response = fault_response(fault.status);
        if let Some(retry) = fault.should_retry {
            let value = HeaderValue::from_static(if retry { "true" } else { "false" });
            response.headers_mut().insert("stripe-should-retry", value);
        }
        return response;
    }
    let given = request
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(presented_key);
    if given.as_deref() != Some(state.api_key.as_str()) {
        return error(
            StatusCode::UNAUTHORIZED,
            None,
            &key_refused(given.as_deref()),
            None,
            "invalid_request_error",
        );
    }
    let path = request.uri().path();
    let session_id = path
        .strip_prefix("/v1/checkout/sessions/")
        .and_then(|rest| rest.strip_suffix("/line_items"))
        .filter(|id| !id.is_empty() && !id.contains('/'));
    match (request.method(), session_id) {
        (&Method::GET, Some(id)) => line_items(state, id, request.uri().query().unwrap_or("")),
        _ => {
            let message = format!(
                "Unrecognized request URL ({}: {path}).",
                request.method().as_str()
            );
            error(
                StatusCode::NOT_FOUND,
                None,
                &message,
                None,
                "invalid_request_error",
            )
        }
    }
}

/// The API key of an `Authorization` header: `Bearer <key>`, or Basic auth
/// whose user name is the key (the password is ignored, as Stripe does).
fn presented_key(value: &HeaderValue) -> Option<String> {
    use base64::Engine as _;
    let value = value.to_str().ok()?.trim();
    let (scheme, credentials) = value.split_once(' ')?;
    let credentials = credentials.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(credentials.to_owned());
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(credentials)
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, _password) = decoded.split_once(':').unwrap_or((&decoded, ""));
    Some(user.to_owned())
}

/// Stripe's 401 message, naming the kind of key that was given (masked as
/// Stripe masks it) and the kinds the stand-in takes.
fn key_refused(given: Option<&str>) -> String {
    const ACCEPTED: &str = "use the key the stand-in was started with, a secret key \
                            (sk_test_...) or a restricted key (rk_test_...), as \
                            `Authorization: Bearer KEY` or Basic auth (`curl -u KEY:`)";
    match given {
        None | Some("") => format!(
            "You did not provide an API key. You need to provide your API key in the \
             Authorization header: {ACCEPTED}."
        ),
        Some(key) => {
            let kind = ["sk_test_", "sk_live_", "rk_test_", "rk_live_"]
                .into_iter()
                .find(|p| key.starts_with(p))
                .unwrap_or("");
            let tail: String = if key.len() > kind.len() + 8 && key.is_char_boundary(key.len() - 4)
            {
                key[key.len() - 4..].to_owned()
            } else {
                String::new()
            };
            format!("Invalid API Key provided: {kind}********{tail}; {ACCEPTED}.")
        }
    }
}

fn take_fault(state: &State) -> Option<Fault> {
    let mut slot = state.fault.lock().unwrap_or_else(PoisonError::into_inner);
    let fault = (*slot)?;
    *slot = (fault.remaining > 1).then_some(Fault {
        remaining: fault.remaining - 1,
        ..fault
    });
    Some(fault)
}

#[derive(Serialize)]
struct Page<'a> {
    object: &'static str,
    data: &'a [Value],
    has_more: bool,
    url: &'a str,
}

fn line_items(state: &State, session_id: &str, query: &str) -> Response<Answer> {
    let misbehaving = state
        .misbehaving
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(session_id)
        .copied();
    if let Some(how) = misbehaving {
        return misbehave(how, session_id, query);
    }
    let items = {
        let sessions = state
            .sessions
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        sessions.get(session_id).cloned()
    };
    let items = items.or_else(|| {
        state.catalogue.load(Ordering::Relaxed).then(|| {
            match (catalogue_count(session_id), named_count(session_id)) {
                (Some(n), _) => Some(Arc::new(catalogue_items(n))),
                // Past CATALOGUE_MAX: no such session.
                (None, Some(_)) => None,
                (None, None) => Some(Arc::new(cart_for(session_id))),
            }
        })?
    });
    let Some(items) = items else {
        let message = format!("No such checkout.session: '{session_id}'");
        return error(
            StatusCode::NOT_FOUND,
            Some("resource_missing"),
            &message,
            Some("id"),
            "invalid_request_error",
        );
    };

    let mut limit = 10;
    let mut starting_after = None;
    let mut expand_product = false;
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        match &*key {
            "limit" => match value.parse::<usize>() {
                Ok(n) if (1..=100).contains(&n) => limit = n,
                _ => {
                    let message =
                        format!("Invalid integer: {value}; limit must be between 1 and 100");
                    return error(
                        StatusCode::BAD_REQUEST,
                        Some("parameter_invalid_integer"),
                        &message,
                        Some("limit"),
                        "invalid_request_error",
                    );
                }
            },
            "starting_after" => starting_after = Some(value.into_owned()),
            "expand[]" if value == "data.price.product" => expand_product = true,
            _ => {}
        }
    }

    let start = match starting_after {
        None => 0,
        Some(after) => match items.iter().position(|item| item["id"] == after.as_str()) {
            Some(i) => i + 1,
            None => {
                let message = format!("No such line item: '{after}'");
                return error(
                    StatusCode::BAD_REQUEST,
                    Some("resource_missing"),
                    &message,
                    Some("starting_after"),
                    "invalid_request_error",
                );
            }
        },
    };
    let end = (start + limit).min(items.len());
    let url = format!("/v1/checkout/sessions/{session_id}/line_items");
    let page = &items[start..end];
    let collapsed;
    let data = if expand_product {
        page
    } else {
        collapsed = page.iter().map(collapse_product).collect::<Vec<_>>();
        &collapsed[..]
    };
    let page = Page {
        object: "list",
        data,
        has_more: end < items.len(),
        url: &url,
    };
    json_response(StatusCode::OK, &page)
}

/// The id of the `n`th item of a misbehaving session.
fn endless_item_id(n: u64) -> String {
    format!("li_1Endless{n:014}")
}

fn misbehave(how: Misbehaviour, session_id: &str, query: &str) -> Response<Answer> {
    let url = format!("/v1/checkout/sessions/{session_id}/line_items");
    let item = |n: u64| {
        line_item_fixture(
            &endless_item_id(n),
            "prod_Endless0000",
            "Endless product",
            "price_1Endless0000000000",
            100,
            1,
            "usd",
        )
    };
    match how {
        Misbehaviour::EndlessPages { per_page } => {
            let mut limit = 10;
            let mut start = 0;
            for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
                match &*key {
                    "limit" => limit = value.parse().unwrap_or(limit),
                    "starting_after" => {
                        start = value
                            .strip_prefix("li_1Endless")
                            .and_then(|n| n.parse::<u64>().ok())
                            .map_or(0, |n| n + 1);
                    }
                    _ => {}
                }
            }
            let count = per_page.clamp(1, limit.clamp(1, 100)) as u64;
            let data: Vec<Value> = (start..start + count).map(item).collect();
            let page = Page {
                object: "list",
                data: &data,
                has_more: true,
                url: &url,
            };
            json_response(StatusCode::OK, &page)
        }
        Misbehaviour::Huge { bytes, announced } => {
            const MARK: &str = "@@FILL@@";
            let mut filled = item(0);
            filled["description"] = MARK.into();
            let page = Page {
                object: "list",
                data: &[filled],
                has_more: false,
                url: &url,
            };
            let text = serde_json::to_string_pretty(&page).unwrap_or_default();
            let (head, tail) = text.split_once(MARK).unwrap_or((&text, ""));
            let fill = bytes.saturating_sub((head.len() + tail.len()) as u64);
            let body = Answer {
                head: Some(Bytes::copy_from_slice(head.as_bytes())),
                fill,
                tail: Some(Bytes::copy_from_slice(tail.as_bytes())),
                announced: announced.then_some((head.len() + tail.len()) as u64 + fill),
            };
            Response::new(body)
        }
    }
}

/// A response body: one piece, or a huge one made as it is sent, so the
/// stand-in never holds it (`fill` bytes of `x` between `head` and `tail`).
#[derive(Debug)]
pub struct Answer {
    head: Option<Bytes>,
    fill: u64,
    tail: Option<Bytes>,
    /// The length for `Content-Length`; `None` sends it chunked.
    announced: Option<u64>,
}

impl Answer {
    fn whole(body: Bytes) -> Answer {
        Answer {
            announced: Some(body.len() as u64),
            head: Some(body),
            fill: 0,
            tail: None,
        }
    }
}

impl hyper::body::Body for Answer {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        static FILL: [u8; 64 * 1024] = [b'x'; 64 * 1024];
        let this = self.get_mut();
        let data = if let Some(head) = this.head.take() {
            head
        } else if this.fill > 0 {
            let n = this.fill.min(FILL.len() as u64);
            this.fill -= n;
            Bytes::from_static(&FILL[..n as usize])
        } else if let Some(tail) = this.tail.take() {
            tail
        } else {
            return Poll::Ready(None);
        };
        Poll::Ready(Some(Ok(Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        self.head.is_none() && self.fill == 0 && self.tail.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        self.announced
            .map_or_else(SizeHint::default, SizeHint::with_exact)
    }
}

/// Without `expand[]=data.price.product`, Stripe sends the product's id.
fn collapse_product(item: &Value) -> Value {
    let mut item = item.clone();
    if let Some(product) = item.get_mut("price").and_then(|p| p.get_mut("product"))
        && let Some(id) = product.get("id").cloned()
    {
        *product = id;
    }
    item
}

fn fault_response(status: StatusCode) -> Response<Answer> {
    let (kind, code, message) = match status.as_u16() {
        409 => (
            "invalid_request_error",
            Some("lock_timeout"),
            "This object cannot be accessed right now because another API request or Stripe \
             process is currently accessing it.",
        ),
        429 => (
            "invalid_request_error",
            Some("rate_limit"),
            "Too many requests hit the API too quickly.",
        ),
        500.. => (
            "api_error",
            None,
            "An unknown error occurred while processing your request.",
        ),
        _ => ("invalid_request_error", None, "Invalid request."),
    };
    error(status, code, message, None, kind)
}

fn error(
    status: StatusCode,
    code: Option<&str>,
    message: &str,
    param: Option<&str>,
    kind: &str,
) -> Response<Answer> {
    let mut error = serde_json::Map::new();
    if let Some(code) = code {
        error.insert("code".into(), code.into());
    }
    error.insert("message".into(), message.into());
    if let Some(param) = param {
        error.insert("param".into(), param.into());
    }
    error.insert("type".into(), kind.into());
    json_response(status, &json!({ "error": error }))
}

/// Stripe's API answers with 2-space pretty-printed JSON, as its webhooks do.
fn json_response(status: StatusCode, body: &impl Serialize) -> Response<Answer> {
    let body = serde_json::to_vec_pretty(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut response = Response::new(Answer::whole(Bytes::from(body)));
    *response.status_mut() = status;
    response
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
