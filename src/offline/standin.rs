//! A local stand-in for the slice of the Stripe API that stripe-router calls:
//! `GET /v1/checkout/sessions/{id}/line_items`, with Stripe's pagination,
//! expansion, authentication and error shapes. Integration tests, the `demo`
//! command and the benchmark point `STRIPE_API_BASE` at it.
//!
//! It also builds realistic payloads: line items and `checkout.session.*`
//! events shaped like the ones Stripe sends (API version
//! `2026-07-29.dahlia`), so everything downstream sees real shapes.
//!
//! It is a real hyper server on a loopback port, kept light: a request takes
//! one read lock and serializes one page.
//!
//! For tests of the client's bounds it can also misbehave for a session
//! ([`Misbehaviour`]): pages that never end, an answer of any size (sent
//! without holding it in memory, announced or chunked). A session with many
//! items is just [`StripeStandIn::add_session`] with many items.

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
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::routing::record::Address;

/// The API version the stand-in answers with when the request pins none.
pub const API_VERSION: &str = "2026-07-29.dahlia";

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
    /// `Bearer <key>`, compared byte for byte.
    authorization: String,
    sessions: RwLock<HashMap<String, Arc<Vec<Value>>>>,
    misbehaving: RwLock<HashMap<String, Misbehaviour>>,
    fault: Mutex<Option<Fault>>,
    requests: AtomicU64,
    last_headers: Mutex<Option<HeaderMap>>,
    /// Serve [`catalogue_items`] for unknown sessions whose id names a count.
    catalogue: AtomicBool,
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
    /// tokio runtime. Requests must carry `Authorization: Bearer <api_key>`.
    pub async fn start(addr: SocketAddr, api_key: &str) -> io::Result<StripeStandIn> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            authorization: format!("Bearer {api_key}"),
            sessions: RwLock::default(),
            misbehaving: RwLock::default(),
            fault: Mutex::default(),
            requests: AtomicU64::new(0),
            last_headers: Mutex::default(),
            catalogue: AtomicBool::new(false),
        });
        let stop = CancellationToken::new();
        tokio::spawn(accept(listener, Arc::clone(&state), stop.clone()));
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
    /// [`catalogue_session_id`]) has the `N` items of [`catalogue_items`].
    pub fn serve_catalogue(&self) {
        self.state.catalogue.store(true, Ordering::Relaxed);
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

async fn accept(listener: TcpListener, state: Arc<State>, stop: CancellationToken) {
    loop {
        let stream = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of file descriptors and the like: keep serving others.
                Err(e) => {
                    tracing::warn!(error = %e, "stripe stand-in: accept failed");
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let state = Arc::clone(&state);
        let stop = stop.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let state = Arc::clone(&state);
                async move { Ok::<_, Infallible>(respond(&state, request)) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                () = stop.cancelled() => {}
                _ = connection => {}
            }
        });
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
    let authorized = request
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .is_some_and(|v| v.as_bytes() == state.authorization.as_bytes());
    if !authorized {
        return error(
            StatusCode::UNAUTHORIZED,
            None,
            "Invalid API Key provided: sk_test_********************",
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
        let n = catalogue_count(session_id)?;
        state
            .catalogue
            .load(Ordering::Relaxed)
            .then(|| Arc::new(catalogue_items(n)))
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

/// A Checkout Session line item (`object: "item"`) as
/// `GET /v1/checkout/sessions/{id}/line_items?expand[]=data.price.product`
/// returns it: a one-time price with its product expanded.
pub fn line_item_fixture(
    id: &str,
    product_id: &str,
    product_name: &str,
    price_id: &str,
    unit_amount: i64,
    quantity: i64,
    currency: &str,
) -> Value {
    let amount = unit_amount.saturating_mul(quantity);
    let created = 1_721_948_530;
    json!({
        "amount_discount": 0,
        "amount_subtotal": amount,
        "amount_tax": 0,
        "amount_total": amount,
        "currency": currency,
        "description": product_name,
        "id": id,
        "object": "item",
        "price": {
            "active": true,
            "billing_scheme": "per_unit",
            "created": created,
            "currency": currency,
            "custom_unit_amount": null,
            "id": price_id,
            "livemode": false,
            "lookup_key": null,
            "metadata": {},
            "nickname": null,
            "object": "price",
            "product": {
                "active": true,
                "created": created,
                "default_price": price_id,
                "description": null,
                "id": product_id,
                "images": [],
                "livemode": false,
                "marketing_features": [],
                "metadata": {},
                "name": product_name,
                "object": "product",
                "package_dimensions": null,
                "shippable": null,
                "statement_descriptor": null,
                "tax_code": null,
                "unit_label": null,
                "updated": created,
                "url": null,
                "type": "good"
            },
            "recurring": null,
            "tax_behavior": "unspecified",
            "tiers_mode": null,
            "transform_quantity": null,
            "type": "one_time",
            "unit_amount": unit_amount,
            "unit_amount_decimal": unit_amount.to_string()
        },
        "quantity": quantity,
        "metadata": null,
        "adjustable_quantity": null
    })
}

/// The most items a catalogue session may have: a bound on what one request
/// makes the stand-in build.
pub const CATALOGUE_MAX: usize = 1000;

/// A session id that catalogue mode serves `items` line items for:
/// `cs_test_send_<token>_<items>items`.
pub fn catalogue_session_id(token: &str, items: usize) -> String {
    format!("cs_test_send_{token}_{items}items")
}

/// The count a [`catalogue_session_id`] names, if at most [`CATALOGUE_MAX`].
fn catalogue_count(session_id: &str) -> Option<usize> {
    let (_, count) = session_id.strip_suffix("items")?.rsplit_once('_')?;
    count.parse().ok().filter(|n| *n <= CATALOGUE_MAX)
}

/// `n` deterministic line items in USD: a few shop products in turn, with
/// quantities 1 to 3. The same `n` always gives the same items and totals.
pub fn catalogue_items(n: usize) -> Vec<Value> {
    const PRODUCTS: [(&str, i64); 6] = [
        ("Organic cotton T-shirt", 2500),
        ("Canvas tote bag", 1800),
        ("Ceramic mug", 1400),
        ("Linen tea towel", 1200),
        ("Enamel pin", 700),
        ("Sticker pack", 500),
    ];
    (0..n)
        .map(|i| {
            let (name, unit_amount) = PRODUCTS[i % PRODUCTS.len()];
            let product = i % PRODUCTS.len();
            line_item_fixture(
                &format!("li_1Catalogue{i:014}"),
                &format!("prod_Catalogue{product:04}"),
                name,
                &format!("price_1Catalogue{product:010}"),
                unit_amount,
                i64::try_from(i % 3 + 1).unwrap_or(1),
                "usd",
            )
        })
        .collect()
}

/// The sum of the items' `amount_total`: the session's total for them.
pub fn items_total(items: &[Value]) -> i64 {
    items
        .iter()
        .filter_map(|item| item["amount_total"].as_i64())
        .sum()
}

/// A `payment_intent.succeeded` event as Stripe delivers it (API version
/// [`API_VERSION`]) for a card payment of `amount` in `currency`.
pub fn payment_intent_event(
    event_id: &str,
    payment_intent: &str,
    amount: i64,
    currency: &str,
    created: i64,
) -> Value {
    let intent = json!({
        "amount": amount,
        "amount_capturable": 0,
        "amount_details": { "tip": {} },
        "amount_received": amount,
        "application": null,
        "application_fee_amount": null,
        "automatic_payment_methods": { "enabled": true },
        "canceled_at": null,
        "cancellation_reason": null,
        "capture_method": "automatic",
        "client_secret": null,
        "confirmation_method": "automatic",
        "created": created - 5,
        "currency": currency,
        "customer": null,
        "description": null,
        "id": payment_intent,
        "last_payment_error": null,
        "latest_charge": null,
        "livemode": false,
        "metadata": {},
        "next_action": null,
        "object": "payment_intent",
        "on_behalf_of": null,
        "payment_method": null,
        "payment_method_configuration_details": null,
        "payment_method_options": {},
        "payment_method_types": ["card"],
        "processing": null,
        "receipt_email": null,
        "review": null,
        "setup_future_usage": null,
        "shipping": null,
        "statement_descriptor": null,
        "statement_descriptor_suffix": null,
        "status": "succeeded",
        "transfer_data": null,
        "transfer_group": null,
        "source": null,
        "excluded_payment_method_types": null,
        "customer_account": null
    });
    json!({
        "api_version": API_VERSION,
        "created": created,
        "data": { "object": intent },
        "id": event_id,
        "livemode": false,
        "object": "event",
        "pending_webhooks": 1,
        "request": { "id": null, "idempotency_key": null },
        "type": "payment_intent.succeeded"
    })
}

/// The values of a [`checkout_session_event`]. [`Default`] gives a paid
/// `checkout.session.completed` in test mode for Stripe's documentation
/// customer.
#[derive(Debug, Clone)]
pub struct SessionEvent {
    pub event_id: String,
    /// `checkout.session.completed`, `.async_payment_succeeded`,
    /// `.async_payment_failed` or `.expired`.
    pub event_type: String,
    pub session_id: String,
    /// `None` for sessions without one (expired, or not yet confirmed).
    pub payment_intent: Option<String>,
    /// `paid`, `unpaid` or `no_payment_required`.
    pub payment_status: String,
    pub livemode: bool,
    pub customer_name: Option<String>,
    pub customer_email: Option<String>,
    pub customer_phone: Option<String>,
    /// Also used as the shipping address.
    pub customer_address: Address,
    pub amount_total: i64,
    pub currency: String,
    pub client_reference_id: Option<String>,
    pub metadata: Value,
    /// The event's `created`; the session was created 100 s earlier.
    pub created: i64,
}

impl Default for SessionEvent {
    fn default() -> SessionEvent {
        SessionEvent {
            event_id: "evt_1QStandInCheckoutCompleted0".to_owned(),
            event_type: "checkout.session.completed".to_owned(),
            session_id: "cs_test_a1StandInCheckoutSession0000000000000000000000000000000000"
                .to_owned(),
            payment_intent: Some("pi_3QStandInPaymentIntent00".to_owned()),
            payment_status: "paid".to_owned(),
            livemode: false,
            customer_name: Some("Jenny Rosen".to_owned()),
            customer_email: Some("jenny.rosen@example.com".to_owned()),
            customer_phone: None,
            customer_address: Address {
                line1: Some("510 Townsend St".to_owned()),
                line2: None,
                city: Some("San Francisco".to_owned()),
                state: Some("CA".to_owned()),
                postal_code: Some("94103".to_owned()),
                country: Some("US".to_owned()),
            },
            amount_total: 5198,
            currency: "usd".to_owned(),
            client_reference_id: None,
            metadata: json!({}),
            created: 1_721_954_100,
        }
    }
}

/// A `checkout.session.*` event as Stripe delivers it (API version
/// [`API_VERSION`]), about 4 KB once pretty-printed. Stripe sends webhook
/// bodies 2-space pretty-printed; serializing is the caller's job.
pub fn checkout_session_event(e: &SessionEvent) -> Value {
    let created = e.created - 100;
    let status = if e.event_type.ends_with(".expired") {
        "expired"
    } else {
        "complete"
    };
    let payment_method_types = if e.currency == "eur" && e.payment_status != "paid" {
        json!(["sepa_debit"])
    } else {
        json!(["card"])
    };
    let address = json!({
        "city": e.customer_address.city,
        "country": e.customer_address.country,
        "line1": e.customer_address.line1,
        "line2": e.customer_address.line2,
        "postal_code": e.customer_address.postal_code,
        "state": e.customer_address.state
    });
    // Built in parts: one `json!` this large overflows the macro recursion limit.
    let customer_details = json!({
        "address": address,
        "email": e.customer_email,
        "name": e.customer_name,
        "phone": e.customer_phone,
        "tax_exempt": "none",
        "tax_ids": [],
        "business_name": null,
        "individual_name": null
    });
    let invoice_creation = json!({
        "enabled": false,
        "invoice_data": {
            "account_tax_ids": null,
            "custom_fields": null,
            "description": null,
            "footer": null,
            "issuer": null,
            "metadata": {},
            "rendering_options": null
        }
    });
    let collected_information = json!({
        "shipping_details": {
            "address": address,
            "name": e.customer_name
        },
        "business_name": null,
        "individual_name": null
    });
    let automatic_tax = json!({
        "enabled": false,
        "liability": null,
        "status": null,
        "provider": null
    });
    let custom_text = json!({
        "after_submit": null,
        "shipping_address": null,
        "submit": null,
        "terms_of_service_acceptance": null
    });
    let mut session = json!({
        "after_expiration": null,
        "allow_promotion_codes": null,
        "amount_subtotal": e.amount_total,
        "amount_total": e.amount_total,
        "automatic_tax": automatic_tax,
        "billing_address_collection": null,
        "cancel_url": "https://example.com/cancel",
        "client_reference_id": e.client_reference_id,
        "client_secret": null,
        "consent": null,
        "consent_collection": null,
        "created": created,
        "currency": e.currency,
        "custom_fields": [],
        "custom_text": custom_text,
        "customer": null,
        "customer_creation": "if_required",
        "customer_details": customer_details,
        "customer_email": null,
        "expires_at": created + 86_400,
        "id": e.session_id,
        "invoice": null,
        "invoice_creation": invoice_creation,
    });
    let rest = json!({
        "livemode": e.livemode,
        "locale": null,
        "metadata": e.metadata,
        "mode": "payment",
        "object": "checkout.session",
        "payment_intent": e.payment_intent,
        "payment_link": null,
        "payment_method_collection": "if_required",
        "payment_method_configuration_details": null,
        "payment_method_options": {},
        "payment_method_types": payment_method_types,
        "payment_status": e.payment_status,
        "phone_number_collection": {
            "enabled": false
        },
        "recovered_from": null,
        "saved_payment_method_options": null,
        "setup_intent": null,
        "shipping_address_collection": {
            "allowed_countries": [e.customer_address.country.as_deref().unwrap_or("US")]
        },
        "shipping_cost": null,
        "shipping_options": [],
        "status": status,
        "submit_type": null,
        "subscription": null,
        "success_url": "https://example.com/success",
        "total_details": {
            "amount_discount": 0,
            "amount_shipping": 0,
            "amount_tax": 0
        },
        "ui_mode": "hosted",
        "url": null,
        "adaptive_pricing": {
            "enabled": true
        },
        "discounts": [],
        "collected_information": collected_information,
        "permissions": null,
        "wallet_options": null,
        "origin_context": null,
        "currency_conversion": null,
        "customer_account": null,
        "integration_identifier": null,
        "managed_payments": {
            "enabled": false
        }
    });
    if let (Value::Object(session), Value::Object(rest)) = (&mut session, rest) {
        session.extend(rest);
    }
    json!({
        "api_version": API_VERSION,
        "created": e.created,
        "data": {
            "object": session
        },
        "id": e.event_id,
        "livemode": e.livemode,
        "object": "event",
        "pending_webhooks": 1,
        "request": {
            "id": null,
            "idempotency_key": null
        },
        "type": e.event_type
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "sk_test_standin0000000000000000";

    async fn get(base: &url::Url, path: &str, key: &str) -> (u16, Value) {
        let response = reqwest::Client::new()
            .get(base.join(path).expect("a valid path"))
            .bearer_auth(key)
            .send()
            .await
            .expect("the stand-in answers");
        let status = response.status().as_u16();
        (status, response.json().await.expect("a JSON body"))
    }

    fn items(n: usize) -> Vec<Value> {
        (0..n)
            .map(|i| {
                line_item_fixture(
                    &format!("li_{i:04}"),
                    &format!("prod_{i:04}"),
                    &format!("Product {i}"),
                    &format!("price_{i:04}"),
                    1000 + i as i64,
                    2,
                    "usd",
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn serves_pages_like_stripe() {
        let standin = StripeStandIn::start(([127, 0, 0, 1], 0).into(), KEY)
            .await
            .expect("starts");
        standin.add_session("cs_test_1", items(12));
        let base = standin.url();
        let path = "/v1/checkout/sessions/cs_test_1/line_items";

        // Default limit 10, product not expanded: an id, like Stripe.
        let (status, page) = get(&base, path, KEY).await;
        assert_eq!(status, 200);
        assert_eq!(page["data"].as_array().map(Vec::len), Some(10));
        assert_eq!(page["has_more"], true);
        assert_eq!(page["url"], path);
        assert_eq!(page["data"][0]["price"]["product"], "prod_0000");

        let query = "?expand%5B%5D=data.price.product&limit=5&starting_after=li_0009";
        let (status, page) = get(&base, &format!("{path}{query}"), KEY).await;
        assert_eq!(status, 200);
        assert_eq!(page["has_more"], false);
        assert_eq!(page["data"][0]["id"], "li_0010");
        assert_eq!(page["data"][1]["price"]["product"]["name"], "Product 11");
        assert_eq!(page["data"][1]["amount_total"], 2022);

        let (status, body) = get(&base, "/v1/checkout/sessions/cs_nope/line_items", KEY).await;
        assert_eq!(status, 404);
        assert_eq!(body["error"]["code"], "resource_missing");
        assert_eq!(
            body["error"]["message"],
            "No such checkout.session: 'cs_nope'"
        );

        let (status, body) = get(&base, path, "sk_test_other").await;
        assert_eq!(status, 401);
        assert_eq!(body["error"]["type"], "invalid_request_error");

        standin.fail_next_with(2, 503, Some(false));
        for _ in 0..2 {
            let (status, body) = get(&base, path, KEY).await;
            assert_eq!(
                (status, body["error"]["type"].as_str()),
                (503, Some("api_error"))
            );
        }
        assert_eq!(get(&base, path, KEY).await.0, 200);
        assert_eq!(standin.requests(), 7);
        let headers = standin.last_headers().expect("a request was seen");
        assert_eq!(headers["authorization"], format!("Bearer {KEY}").as_str());
    }

    #[tokio::test]
    async fn catalogue_mode_serves_the_count_the_id_names() {
        let standin = StripeStandIn::start(([127, 0, 0, 1], 0).into(), KEY)
            .await
            .expect("starts");
        let id = catalogue_session_id("abc", 3);
        let path = format!("/v1/checkout/sessions/{id}/line_items?expand%5B%5D=data.price.product");
        assert_eq!(
            get(&standin.url(), &path, KEY).await.0,
            404,
            "off by default"
        );
        standin.serve_catalogue();
        let (status, page) = get(&standin.url(), &path, KEY).await;
        assert_eq!(status, 200);
        assert_eq!(page["data"].as_array().map(Vec::len), Some(3));
        assert_eq!(
            page["data"][1]["price"]["product"]["name"],
            "Canvas tote bag"
        );
        assert_eq!(page["data"][1]["quantity"], 2);
        let too_many = catalogue_session_id("abc", CATALOGUE_MAX + 1);
        let path = format!("/v1/checkout/sessions/{too_many}/line_items");
        assert_eq!(get(&standin.url(), &path, KEY).await.0, 404);
    }

    #[track_caller]
    fn check_count(id: &str, want: Option<usize>) {
        assert_eq!(catalogue_count(id), want, "{id}");
    }

    #[test]
    fn catalogue_ids_and_totals() {
        check_count(&catalogue_session_id("x_y", 12), Some(12));
        check_count(&catalogue_session_id("t", 0), Some(0));
        check_count("cs_test_send_t_items", None);
        check_count("cs_test_a1b2", None);
        check_count("cs_test_send_t_-1items", None);
        assert_eq!(items_total(&catalogue_items(3)), 2500 + 2 * 1800 + 3 * 1400);
        assert_eq!(catalogue_items(8), catalogue_items(8));
        let event = payment_intent_event("evt_1", "pi_1", 5198, "usd", 1_721_954_095);
        let body = serde_json::to_vec_pretty(&event).expect("serializes");
        let parsed = crate::ingest::event::Event::parse(&body).expect("an event");
        assert_eq!(parsed.kind, "payment_intent.succeeded");
    }

    #[test]
    fn session_events_are_routable_checkout_sessions() {
        let event = checkout_session_event(&SessionEvent::default());
        let body = serde_json::to_vec_pretty(&event).expect("serializes");
        let parsed = crate::ingest::event::Event::parse(&body).expect("an event");
        assert_eq!(parsed.kind, "checkout.session.completed");
        assert_eq!(
            crate::routing::record::session_id(&parsed),
            Some(SessionEvent::default().session_id.as_str())
        );
        let order = crate::routing::record::order(&parsed, "r", vec![], "2026-11-29T01:30:00Z")
            .expect("an order");
        let json: Value = serde_json::from_slice(&order.encode().body).expect("JSON");
        assert_eq!(json["customer"]["address"]["city"], "San Francisco");
        assert_eq!(json["shipping"]["name"], "Jenny Rosen");
        assert!((3_000..6_000).contains(&body.len()), "{} bytes", body.len());
    }
}
