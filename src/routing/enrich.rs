//! The Stripe API client used to complete order records: a Checkout
//! Session's line items, every page, with retries.
//!
//! Each request is retried on its own (a later page does not refetch the
//! earlier ones) with the one backoff ([`crate::retry`]), on the failures
//! Stripe documents as transient: connection errors, timeouts, 409, 429 and
//! 5xx, and whatever `Stripe-Should-Retry` says. The API key never appears in
//! logs, `Debug` output or errors: only its [`ApiKey::hint`].
//!
//! Whatever answers at the API base is trusted for nothing: one session's
//! pages (`stripe.max_pages`), items (`stripe.max_line_items`) and bytes
//! (`stripe.max_response`, all pages together, read as a stream) are
//! bounded, and passing a bound is a permanent [`EnrichErrorKind::OverLimit`].
//! What all routing passes together hold of answers being read is bounded
//! too ([`ANSWER_BYTES`]): an answer past it is a transient failure, tried
//! again with the backoff, so an API that answers every session with its
//! largest allowed answer cannot make the router hold one per pass.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use url::Url;

use crate::budget::{ByteBudget, ByteShare};
use crate::config::StripeConfig;
use crate::http_serve::throttle::Quiet;
use crate::metrics::{ApiOutcome, Metrics};
use crate::retry::{self, RetryConfig};
use crate::routing::line_items::{self, Page};
use crate::routing::record::LineItem;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_MAX_ATTEMPTS: u32 = 4;
/// Stripe's maximum page size for list endpoints.
const PAGE_SIZE: &str = "100";
/// Bytes of an error answer read for its message; Stripe's are under 1 KB.
const ERROR_BODY_BYTES: u64 = 64 * 1024;
/// The bytes of answers being read that every request of a client holds
/// at once (each answer from its first byte until its page is read into
/// line items), or one session's `stripe.max_response` when that is more.
/// Real pages are under 200 KB: 64 passes of them hold 12.5 MiB. Without
/// it, 64 passes could hold `stripe.max_response` (8 MiB) each.
pub const ANSWER_BYTES: u64 = 64 * 1024 * 1024;
/// The least time between two warnings about failing requests; those in
/// between are debug lines, counted in the next warning. One event offline
/// would otherwise write a warning per try, dozens a minute.
const WARN_EVERY: Duration = Duration::from_secs(30);
/// Said when the real API cannot be reached: most often, work offline that
/// forgot the stand-in.
const OFFLINE_HINT: &str = "working offline? run `stripe-router serve --offline`, or point \
                            STRIPE_API_BASE at `stripe-router stripe-standin`";
const ACCESS_NEEDED: &str =
    "a restricted key needs read access to Checkout Sessions, prices and products";

/// `STRIPE_SECRET_API_KEY`: a secret (`sk_`) or restricted (`rk_`) key.
/// `Debug` and errors show only [`ApiKey::hint`].
#[derive(Clone)]
pub struct ApiKey(String);

/// A value that cannot be used to read line items. Messages never repeat it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiKeyError {
    #[error("STRIPE_SECRET_API_KEY is empty: expected {EXPECTED}")]
    Empty,
    #[error(
        "STRIPE_SECRET_API_KEY holds a publishable key (`pk_…`), which cannot read Checkout \
         Sessions: expected {EXPECTED}"
    )]
    Publishable,
    #[error(
        "STRIPE_SECRET_API_KEY holds a webhook signing secret (`whsec_…`), which belongs in \
         STRIPE_WEBHOOK_SECRET: expected {EXPECTED}"
    )]
    WebhookSecret,
    #[error("STRIPE_SECRET_API_KEY is not an API key: expected {EXPECTED}")]
    Unrecognized,
}

const EXPECTED: &str = "a secret key (`sk_test_…`, `sk_live_…`) or a restricted key \
                        (`rk_test_…`, `rk_live_…`) from Dashboard → Developers → API keys";

const KEY_PREFIXES: [&str; 4] = ["sk_test_", "sk_live_", "rk_test_", "rk_live_"];

impl ApiKey {
    /// Accepts a secret or restricted key, test or live; surrounding
    /// whitespace is ignored.
    pub fn parse(value: &str) -> Result<ApiKey, ApiKeyError> {
        let value = value.trim();
        if value.is_empty() {
            return Err(ApiKeyError::Empty);
        }
        if value.starts_with("pk_") {
            return Err(ApiKeyError::Publishable);
        }
        if value.starts_with("whsec_") {
            return Err(ApiKeyError::WebhookSecret);
        }
        let well_formed = KEY_PREFIXES
            .iter()
            .any(|p| value.len() > p.len() && value.starts_with(p))
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !well_formed {
            return Err(ApiKeyError::Unrecognized);
        }
        Ok(ApiKey(value.to_owned()))
    }

    /// Enough to tell keys apart, as the Dashboard does: the kind and mode
    /// prefix and the last four characters, e.g. `rk_test_…a1b2`.
    pub fn hint(&self) -> String {
        let prefix = &self.0[..8]; // `parse` guarantees one of KEY_PREFIXES
        let rest = &self.0[8..];
        // A short key would be half revealed by its last four characters.
        if rest.len() >= 12 {
            format!("{prefix}…{}", &rest[rest.len() - 4..])
        } else {
            format!("{prefix}…")
        }
    }

    pub fn is_live(&self) -> bool {
        self.0.starts_with("sk_live_") || self.0.starts_with("rk_live_")
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKey({})", self.hint())
    }
}

/// What went wrong, for callers that branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnrichErrorKind {
    /// 401 or 403: the key is wrong, revoked or lacks permissions.
    Unauthorized,
    /// 404: no such session for this key's account and mode.
    NotFound,
    /// A request Stripe refused (other 4xx), or a session id that cannot be
    /// one.
    Invalid,
    /// 429.
    RateLimited,
    /// Connection errors, timeouts, 409 and 5xx.
    Unavailable,
    /// A 2xx answer that is not a line items list.
    BadResponse,
    /// The answers pass a bound of `stripe:` (pages, items or bytes): a
    /// session Stripe could not have made, so trying again cannot help.
    OverLimit,
}

/// Line items could not be fetched.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct EnrichError {
    pub kind: EnrichErrorKind,
    /// True when a later attempt (a redelivery, a replay) may succeed.
    pub retryable: bool,
    pub message: String,
}

/// The client could not be built from its settings.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the stripe api base `{}` must be an http or https URL", crate::redact::redact_url(.0))]
    Base(Url),
    #[error("stripe.api_version `{0}` is not a valid header value")]
    ApiVersion(String),
    #[error("cannot build the stripe api client: {0}")]
    Http(#[source] reqwest::Error),
}

/// Reads Checkout Session line items from the Stripe API.
#[derive(Debug, Clone)]
pub struct StripeApi {
    client: reqwest::Client,
    /// `{base}/v1/checkout/sessions`, to which the id and `line_items` are
    /// appended.
    sessions: Url,
    key: ApiKey,
    api_version: Option<String>,
    timeout: Duration,
    max_attempts: u32,
    /// Between the tries of one request (see [`crate::retry`]).
    retry: RetryConfig,
    limits: Limits,
    /// Warnings about failing requests, at most one per [`WARN_EVERY`].
    warnings: Arc<Quiet>,
    /// Counts and times each request, when a router runs the client.
    metrics: Option<Arc<Metrics>>,
    /// The answers being read, by every clone of this client
    /// ([`ANSWER_BYTES`]).
    answers: ByteBudget,
}

/// `stripe.max_pages`, `stripe.max_line_items`, `stripe.max_response`: what
/// one session's line items may take, so an API (or whatever answers at
/// `STRIPE_API_BASE`) that never stops can never hold the router.
#[derive(Debug, Clone, Copy)]
struct Limits {
    pages: u32,
    items: u32,
    /// Bytes of all the session's answers together, so also of one answer
    /// and of the record built from them.
    bytes: u64,
}

impl StripeApi {
    pub fn new(base: Url, key: ApiKey, config: &StripeConfig) -> Result<StripeApi, ClientError> {
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(ClientError::Base(base));
        }
        if let Some(version) = &config.api_version {
            reqwest::header::HeaderValue::from_str(version)
                .map_err(|_| ClientError::ApiVersion(version.clone()))?;
        }
        let mut sessions = base.clone();
        sessions
            .path_segments_mut()
            .map_err(|()| ClientError::Base(base.clone()))?
            .pop_if_empty()
            .extend(["v1", "checkout", "sessions"]);
        let timeout = config.timeout.unwrap_or(DEFAULT_TIMEOUT);
        let client = reqwest::Client::builder()
            .user_agent(concat!("stripe-router/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(timeout)
            .build()
            .map_err(ClientError::Http)?;
        Ok(StripeApi {
            client,
            sessions,
            key,
            api_version: config.api_version.clone(),
            timeout,
            max_attempts: config.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS).max(1),
            retry: retry::STRIPE_API_RETRY,
            limits: Limits {
                pages: config.max_pages.max(1),
                items: config.max_line_items,
                bytes: config.max_response,
            },
            warnings: Arc::new(Quiet::new(WARN_EVERY)),
            metrics: None,
            answers: ByteBudget::new(answer_bytes(ANSWER_BYTES, config.max_response)),
        })
    }

    /// Replaces the default policy between the tries of one request
    /// ([`retry::STRIPE_API_RETRY`]).
    pub fn with_retry(mut self, retry: RetryConfig) -> StripeApi {
        self.retry = retry;
        self
    }

    /// Records each request in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> StripeApi {
        self.metrics = Some(metrics);
        self
    }

    /// Every line item of the session, all pages, in Stripe's order.
    /// `livemode` is the event's, used to explain a 404 caused by a test key
    /// reading a live session or the reverse.
    pub async fn line_items(
        &self,
        session_id: &str,
        livemode: bool,
    ) -> Result<Vec<LineItem>, EnrichError> {
        let valid_id = !session_id.is_empty()
            && session_id.len() <= 255
            && session_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid_id {
            return Err(EnrichError {
                kind: EnrichErrorKind::Invalid,
                retryable: false,
                message: format!(
                    "`{}` is not a checkout session id (letters, digits and `_` only)",
                    session_id.escape_debug()
                ),
            });
        }
        let mut url = self.sessions.clone();
        url.path_segments_mut()
            .map_err(|()| bad_response(session_id, "the api base URL cannot take a path"))?
            .extend([session_id, "line_items"]);

        let mut items = Vec::new();
        let mut starting_after: Option<String> = None;
        let mut pages = 0;
        let mut bytes_left = self.limits.bytes;
        loop {
            let mut page_url = url.clone();
            {
                let mut query = page_url.query_pairs_mut();
                query
                    .append_pair("expand[]", "data.price.product")
                    .append_pair("limit", PAGE_SIZE);
                if let Some(after) = &starting_after {
                    query.append_pair("starting_after", after);
                }
            }
            let limit = self.limits.items;
            let max_items = usize::try_from(limit).unwrap_or(usize::MAX);
            let room = max_items.saturating_sub(items.len());
            let (page, size) = self
                .get(&page_url, session_id, livemode, bytes_left, room)
                .await?;
            bytes_left = bytes_left.saturating_sub(size);
            pages += 1;
            let Some(data) = page.data else {
                return Err(bad_response(session_id, "the answer has no `data` list"));
            };
            if items.len() + data.len > max_items {
                return Err(over_limit(
                    session_id,
                    format!("more than stripe.max_line_items ({limit}) items"),
                ));
            }
            items.extend(data.items);
            if !page.has_more {
                break;
            }
            if pages >= self.limits.pages {
                return Err(over_limit(
                    session_id,
                    format!("more than stripe.max_pages ({pages}) pages"),
                ));
            }
            // A page that says there is more must move the cursor forward,
            // or we would ask for it forever.
            match data.last_id {
                Some(last) if starting_after.as_ref() != Some(&last) => {
                    starting_after = Some(last);
                }
                _ => {
                    return Err(bad_response(
                        session_id,
                        "`has_more` is true but the page does not advance",
                    ));
                }
            }
        }
        tracing::debug!(
            session = session_id,
            items = items.len(),
            "fetched line items"
        );
        Ok(items)
    }

    /// One GET with retries: the 2xx page, holding at most `max_items`
    /// items, and its size in bytes, at most `max_bytes`; or why not.
    async fn get(
        &self,
        url: &Url,
        session_id: &str,
        livemode: bool,
        max_bytes: u64,
        max_items: usize,
    ) -> Result<(Page, u64), EnrichError> {
        let mut attempt = 1;
        loop {
            let started = std::time::Instant::now();
            let result = self
                .attempt(url, session_id, livemode, max_bytes, max_items)
                .await;
            if let Some(metrics) = &self.metrics {
                let outcome = match &result {
                    Ok(_) => ApiOutcome::Ok,
                    Err(failure) if failure.retry => ApiOutcome::Retryable,
                    Err(_) => ApiOutcome::Failed,
                };
                metrics.stripe_api(outcome, started.elapsed());
            }
            let failure = match result {
                Ok(body) => return Ok(body),
                Err(failure) => failure,
            };
            if !failure.retry {
                return Err(EnrichError {
                    kind: failure.kind,
                    retryable: false,
                    message: failure.message,
                });
            }
            if attempt >= self.max_attempts {
                match self.warnings.admit("", tokio::time::Instant::now()) {
                    Some(quieted) => tracing::warn!(session = session_id, attempt,
                        error = %failure.message, quieted,
                        "stripe api: giving up (at most one warning every {}s)", WARN_EVERY.as_secs()),
                    None => tracing::debug!(session = session_id, attempt,
                        error = %failure.message, "stripe api: giving up"),
                }
                let attempts = if attempt == 1 { "attempt" } else { "attempts" };
                return Err(EnrichError {
                    kind: failure.kind,
                    retryable: true,
                    message: format!(
                        "line items of `{session_id}`: gave up after {attempt} {attempts}: {}",
                        failure.message
                    ),
                });
            }
            let delay = retry::backoff_or_after(&self.retry, attempt - 1, failure.retry_after);
            match self.warnings.admit("", tokio::time::Instant::now()) {
                Some(quieted) => tracing::warn!(session = session_id, attempt,
                    retry_in_ms = delay.as_millis() as u64, error = %failure.message, quieted,
                    "stripe api: retrying (at most one warning every {}s)", WARN_EVERY.as_secs()),
                None => tracing::debug!(session = session_id, attempt,
                    retry_in_ms = delay.as_millis() as u64, error = %failure.message,
                    "stripe api: retrying"),
            }
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    async fn attempt(
        &self,
        url: &Url,
        session_id: &str,
        livemode: bool,
        max_bytes: u64,
        max_items: usize,
    ) -> Result<(Page, u64), Failure> {
        let mut request = self.client.get(url.clone()).bearer_auth(&self.key.0);
        if let Some(version) = &self.api_version {
            request = request.header("stripe-version", version);
        }
        let response = request.send().await.map_err(|e| self.transport(e))?;
        let status = response.status();
        let should_retry = response
            .headers()
            .get("stripe-should-retry")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<bool>().ok());
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        // An error's message is all we read of it: Stripe's are a few hundred
        // bytes.
        let max_bytes = if status.is_success() {
            max_bytes
        } else {
            max_bytes.min(ERROR_BODY_BYTES)
        };
        let body = match read_at_most(response, max_bytes, &self.answers)
            .await
            .map_err(|e| self.transport(e))?
        {
            Answer::Read(body, share) => Some((body, share)),
            Answer::OverLimit => None,
            Answer::Busy(read) => {
                let held = crate::units::byte_size::show(self.answers.used() as u64);
                return Err(Failure {
                    kind: EnrichErrorKind::Unavailable,
                    retry: true,
                    retry_after: None,
                    message: format!(
                        "the answers being read by all routing passes hold {held}, and this \
                         one's {read} bytes read so far would pass their bound: tried again \
                         once some are read"
                    ),
                });
            }
        };
        tracing::debug!(
            session = session_id,
            status = status.as_u16(),
            "stripe api answered"
        );

        if status.is_success() {
            let Some((body, _share)) = body else {
                let limit = crate::units::byte_size::show(self.limits.bytes);
                let error = over_limit(
                    session_id,
                    format!("the answers are larger than stripe.max_response ({limit})"),
                );
                return Err(Failure {
                    kind: error.kind,
                    retry: false,
                    retry_after: None,
                    message: error.message,
                });
            };
            let size = body.len() as u64;
            return line_items::read_page(&body, max_items)
                .map(|page| (page, size))
                .map_err(|e| Failure {
                    kind: EnrichErrorKind::BadResponse,
                    retry: false,
                    retry_after: None,
                    message: format!("line items of `{session_id}`: the answer is not JSON: {e}"),
                });
        }
        let body = body.map(|(body, _share)| body).unwrap_or_default();
        let stripe_says = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v.get("error")?.get("message")?.as_str().map(str::to_owned))
            .map(|m| format!(" (stripe: {m})"))
            .unwrap_or_default();
        let hint = self.key.hint();
        let code = status.as_u16();
        let (kind, message) = match status {
            StatusCode::UNAUTHORIZED => (
                EnrichErrorKind::Unauthorized,
                format!(
                    "stripe refused the api key `{hint}` (401): it may be revoked, mistyped or \
                     from another account; {ACCESS_NEEDED}{stripe_says}"
                ),
            ),
            StatusCode::FORBIDDEN => (
                EnrichErrorKind::Unauthorized,
                format!(
                    "the api key `{hint}` may not read checkout session `{session_id}` (403): \
                     {ACCESS_NEEDED}{stripe_says}"
                ),
            ),
            StatusCode::NOT_FOUND => {
                let mismatch = match (self.key.is_live(), livemode) {
                    (false, true) => {
                        format!(": the key `{hint}` is a test key but the event is livemode")
                    }
                    (true, false) => {
                        format!(": the key `{hint}` is a live key but the event is from test mode")
                    }
                    _ => String::new(),
                };
                (
                    EnrichErrorKind::NotFound,
                    format!(
                        "checkout session `{session_id}` does not exist in this account/mode \
                         (test vs live){mismatch}{stripe_says}"
                    ),
                )
            }
            StatusCode::TOO_MANY_REQUESTS => (
                EnrichErrorKind::RateLimited,
                format!("stripe rate-limited the line items request (429){stripe_says}"),
            ),
            s if s == StatusCode::CONFLICT || s.is_server_error() => (
                EnrichErrorKind::Unavailable,
                format!("stripe answered {code} for the line items of `{session_id}`{stripe_says}"),
            ),
            _ => (
                EnrichErrorKind::Invalid,
                format!(
                    "stripe refused the line items request for `{session_id}` ({code}){stripe_says}"
                ),
            ),
        };
        let transient = matches!(code, 409 | 429) || status.is_server_error();
        Err(Failure {
            kind,
            retry: should_retry.unwrap_or(transient),
            retry_after: retry_after.filter(|_| status == StatusCode::TOO_MANY_REQUESTS),
            message,
        })
    }

    fn transport(&self, e: reqwest::Error) -> Failure {
        let host = self
            .sessions
            .host_str()
            .unwrap_or("the stripe api")
            .to_owned();
        let cause = std::iter::successors(std::error::Error::source(&e), |e| e.source())
            .last()
            .map(|root| format!(": {root}"))
            .unwrap_or_default();
        // Only the real API: a stand-in that is down needs no such hint.
        let hint = if host == "api.stripe.com" {
            format!("; {OFFLINE_HINT}")
        } else {
            String::new()
        };
        let message = if e.is_timeout() {
            format!(
                "the stripe api at {host} did not answer within {:?}{hint}",
                self.timeout
            )
        } else if e.is_connect() {
            format!("cannot connect to the stripe api at {host}{cause}{hint}")
        } else {
            format!("the request to the stripe api at {host} failed{cause}{hint}")
        };
        Failure {
            kind: EnrichErrorKind::Unavailable,
            retry: true,
            retry_after: None,
            message,
        }
    }
}

/// One failed attempt, before the retry decision.
struct Failure {
    kind: EnrichErrorKind,
    retry: bool,
    retry_after: Option<Duration>,
    message: String,
}

/// What all of a client's answers may hold at once: [`ANSWER_BYTES`], or
/// one session's `max_response` when that is more, so that a session
/// alone can always be read.
fn answer_bytes(all: u64, max_response: u64) -> usize {
    usize::try_from(all.max(max_response)).unwrap_or(usize::MAX)
}

/// An answer as [`read_at_most`] read it.
enum Answer {
    /// The whole body, with its share of the client's answer bytes.
    Read(Vec<u8>, ByteShare),
    /// Longer than the limit.
    OverLimit,
    /// The client's answers being read would pass their bound with this
    /// one's next bytes (so many read so far); nothing of it is kept.
    Busy(usize),
}

/// The body, or `OverLimit` as soon as it is known to be longer than
/// `limit` bytes: from `Content-Length` before reading anything, else while
/// reading, so no more than `limit` bytes (plus one chunk) are ever held.
/// Each byte is held with a share of `answers` (the announced length at
/// once), or not read: `Busy`.
async fn read_at_most(
    mut response: reqwest::Response,
    limit: u64,
    answers: &ByteBudget,
) -> Result<Answer, reqwest::Error> {
    let announced = response.content_length();
    if announced.is_some_and(|length| length > limit) {
        return Ok(Answer::OverLimit);
    }
    let announced = announced.map_or(0, |length| length as usize);
    let Some(mut share) = answers.take(announced) else {
        return Ok(Answer::Busy(0));
    };
    let mut body = Vec::with_capacity(announced);
    while let Some(chunk) = response.chunk().await? {
        let length = body.len() + chunk.len();
        if length as u64 > limit {
            return Ok(Answer::OverLimit);
        }
        let more = length.saturating_sub(share.bytes());
        if more > 0 && !answers.add_to(&mut share, more) {
            return Ok(Answer::Busy(body.len()));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Answer::Read(body, share))
}

/// Past a bound: permanent, so the route's record becomes a dead letter
/// that says which bound and how to raise it.
fn over_limit(session_id: &str, what: String) -> EnrichError {
    EnrichError {
        kind: EnrichErrorKind::OverLimit,
        retryable: false,
        message: format!(
            "line items of `{session_id}`: {what}; no real Checkout Session comes near it \
             (raise it under `stripe:` in routes.yaml if this one is genuine)"
        ),
    }
}

fn bad_response(session_id: &str, why: &str) -> EnrichError {
    EnrichError {
        kind: EnrichErrorKind::BadResponse,
        retryable: false,
        message: format!("line items of `{session_id}`: {why}"),
    }
}

#[cfg(test)]
#[path = "enrich_tests.rs"]
mod tests;
