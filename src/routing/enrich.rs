//! The Stripe API client used to complete order records: a Checkout
//! Session's line items, every page, with retries.
//!
//! Each request is retried on its own (a later page does not refetch the
//! earlier ones) with exponential backoff and full jitter, on the failures
//! Stripe documents as transient: connection errors, timeouts, 409, 429 and
//! 5xx, and whatever `Stripe-Should-Retry` says. The API key never appears in
//! logs, `Debug` output or errors: only its [`ApiKey::hint`].
//!
//! Whatever answers at the API base is trusted for nothing: one session's
//! pages (`stripe.max_pages`), items (`stripe.max_line_items`) and bytes
//! (`stripe.max_response`, all pages together, read as a stream) are
//! bounded, and passing a bound is a permanent [`EnrichErrorKind::OverLimit`].

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use url::Url;

use crate::config::StripeConfig;
use crate::routing::record::{self, LineItem};

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_MAX_ATTEMPTS: u32 = 4;
/// Stripe's maximum page size for list endpoints.
const PAGE_SIZE: &str = "100";
/// Bytes of an error answer read for its message; Stripe's are under 1 KB.
const ERROR_BODY_BYTES: u64 = 64 * 1024;
const ACCESS_NEEDED: &str =
    "a restricted key needs read access to Checkout Sessions, prices and products";

/// `STRIPE_SECRET_API_KEY`: a secret (`sk_`) or restricted (`rk_`) key.
/// `Debug` and errors show only [`ApiKey::hint`].
#[derive(Clone)]
pub struct ApiKey(String);

/// A value that cannot be used to read line items. Messages never repeat it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiKeyError {
    #[error("the stripe api key is empty: expected {EXPECTED}")]
    Empty,
    #[error(
        "the stripe api key is a publishable key (`pk_…`), which cannot read Checkout \
         Sessions: expected {EXPECTED}"
    )]
    Publishable,
    #[error(
        "the stripe api key is a webhook signing secret (`whsec_…`), which belongs in \
         STRIPE_WEBHOOK_SECRET: expected {EXPECTED}"
    )]
    WebhookSecret,
    #[error("the stripe api key is not one: expected {EXPECTED}")]
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
#[derive(Debug, thiserror::Error)]
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

/// Exponential backoff with full jitter: before retry `n` (1-based) wait a
/// random time in `[0, min(cap, base × 2^(n-1))]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            base: Duration::from_millis(250),
            cap: Duration::from_secs(5),
        }
    }
}

impl Backoff {
    fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(after) = retry_after {
            return after.min(self.cap);
        }
        let ceiling = self
            .base
            .saturating_mul(1 << retry.saturating_sub(1).min(20))
            .min(self.cap);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rand::random_range(0..=nanos))
    }
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
    backoff: Backoff,
    limits: Limits,
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
            backoff: Backoff::default(),
            limits: Limits {
                pages: config.max_pages.max(1),
                items: config.max_line_items,
                bytes: config.max_response,
            },
        })
    }

    /// Replaces the default backoff (250 ms base, 5 s cap).
    pub fn with_backoff(mut self, backoff: Backoff) -> StripeApi {
        self.backoff = backoff;
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
            let (page, size) = self
                .get(&page_url, session_id, livemode, bytes_left)
                .await?;
            bytes_left = bytes_left.saturating_sub(size);
            pages += 1;
            let Some(data) = page.get("data").and_then(Value::as_array) else {
                return Err(bad_response(session_id, "the answer has no `data` list"));
            };
            let limit = self.limits.items;
            if items.len() + data.len() > usize::try_from(limit).unwrap_or(usize::MAX) {
                return Err(over_limit(
                    session_id,
                    format!("more than stripe.max_line_items ({limit}) items"),
                ));
            }
            items.extend(data.iter().map(record::line_item));
            if page.get("has_more").and_then(Value::as_bool) != Some(true) {
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
            let last = data
                .last()
                .and_then(|item| item.get("id"))
                .and_then(Value::as_str);
            match last {
                Some(last) if starting_after.as_deref() != Some(last) => {
                    starting_after = Some(last.to_owned());
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

    /// One GET with retries: the parsed 2xx body and its size in bytes, at
    /// most `max_bytes`, or why not.
    async fn get(
        &self,
        url: &Url,
        session_id: &str,
        livemode: bool,
        max_bytes: u64,
    ) -> Result<(Value, u64), EnrichError> {
        let mut attempt = 1;
        loop {
            let failure = match self.attempt(url, session_id, livemode, max_bytes).await {
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
                tracing::warn!(session = session_id, attempt, error = %failure.message,
                    "stripe api: giving up");
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
            let delay = self.backoff.delay(attempt, failure.retry_after);
            tracing::warn!(session = session_id, attempt, retry_in_ms = delay.as_millis() as u64,
                error = %failure.message, "stripe api: retrying");
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
    ) -> Result<(Value, u64), Failure> {
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
        let body = read_at_most(response, max_bytes)
            .await
            .map_err(|e| self.transport(e))?;
        tracing::debug!(
            session = session_id,
            status = status.as_u16(),
            "stripe api answered"
        );

        if status.is_success() {
            let Some(body) = body else {
                let limit = crate::config::byte_size::show(self.limits.bytes);
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
            return serde_json::from_slice(&body)
                .map(|page| (page, size))
                .map_err(|e| Failure {
                    kind: EnrichErrorKind::BadResponse,
                    retry: false,
                    retry_after: None,
                    message: format!("line items of `{session_id}`: the answer is not JSON: {e}"),
                });
        }
        let body = body.unwrap_or_default();
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
        let message = if e.is_timeout() {
            format!(
                "the stripe api at {host} did not answer within {:?}",
                self.timeout
            )
        } else if e.is_connect() {
            format!("cannot connect to the stripe api at {host}{cause}")
        } else {
            format!("the request to the stripe api at {host} failed{cause}")
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

/// The body, or `None` as soon as it is known to be longer than `limit`
/// bytes: from `Content-Length` before reading anything, else while
/// reading, so no more than `limit` bytes (plus one chunk) are ever held.
async fn read_at_most(
    mut response: reqwest::Response,
    limit: u64,
) -> Result<Option<Vec<u8>>, reqwest::Error> {
    if response
        .content_length()
        .is_some_and(|length| length > limit)
    {
        return Ok(None);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if (body.len() + chunk.len()) as u64 > limit {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
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
mod tests {
    use super::*;
    use crate::offline::standin::{Misbehaviour, StripeStandIn, line_item_fixture};

    const KEY: &str = "rk_test_51PgafyB7WZ01zgkWstandinKeya1b2";
    const SESSION: &str = "cs_test_a1YS1URlnyQCN5fUUduORoQ7Pw41PJqDWkIVQCpJPqkfIhd6tVY8XB1OLY";

    #[track_caller]
    fn check_key(value: &str, expect: Result<(&str, bool), &str>) {
        match (ApiKey::parse(value), expect) {
            (Ok(key), Ok((hint, live))) => {
                assert_eq!((key.hint().as_str(), key.is_live()), (hint, live));
                assert_eq!(format!("{key:?}"), format!("ApiKey({hint})"));
            }
            (Err(e), Err(fragment)) => {
                let message = e.to_string();
                assert!(message.contains(fragment), "{message}");
                // The value is never echoed (short ones are mere prefixes).
                let value = value.trim();
                assert!(value.len() < 10 || !message.contains(value), "{message}");
            }
            (got, want) => panic!("{value}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn api_keys() {
        check_key(KEY, Ok(("rk_test_…a1b2", false)));
        check_key(
            " sk_live_51Abcdefghijklmnopqrstuvwxyz\n",
            Ok(("sk_live_…wxyz", true)),
        );
        check_key("rk_live_short", Ok(("rk_live_…", true)));
        check_key("", Err("empty"));
        check_key("   ", Err("empty"));
        check_key("pk_test_51Abcdefghijklmnop", Err("publishable"));
        check_key("whsec_abcdefghijklmnop", Err("STRIPE_WEBHOOK_SECRET"));
        check_key("sk_test_", Err("is not one"));
        check_key("sk_test_abc def", Err("is not one"));
        check_key("Bearer sk_test_abcdef", Err("is not one"));
    }

    #[test]
    fn backoff_stays_within_its_bounds() {
        let backoff = Backoff::default();
        for retry in 1..=30 {
            let ceiling = (Duration::from_millis(250) * 2u32.pow(retry.min(10) - 1))
                .min(Duration::from_secs(5));
            assert!(backoff.delay(retry, None) <= ceiling, "retry {retry}");
        }
        let after = Some(Duration::from_secs(2));
        assert_eq!(backoff.delay(1, after), Duration::from_secs(2));
        assert_eq!(
            backoff.delay(1, Some(Duration::from_secs(60))),
            Duration::from_secs(5)
        );
    }

    fn fast() -> Backoff {
        Backoff {
            base: Duration::from_millis(1),
            cap: Duration::from_millis(5),
        }
    }

    fn api(base: Url, key: &str, config: &StripeConfig) -> StripeApi {
        let key = ApiKey::parse(key).expect("a valid key");
        StripeApi::new(base, key, config)
            .expect("builds")
            .with_backoff(fast())
    }

    async fn standin(items: usize) -> StripeStandIn {
        let standin = StripeStandIn::start(([127, 0, 0, 1], 0).into(), KEY)
            .await
            .expect("stand-in starts");
        let items = (0..items)
            .map(|i| {
                line_item_fixture(
                    &format!("li_{i:04}"),
                    &format!("prod_{i:04}"),
                    &format!("Product {i}"),
                    &format!("price_{i:04}"),
                    100 + i as i64,
                    1 + (i as i64 % 3),
                    "eur",
                )
            })
            .collect();
        standin.add_session(SESSION, items);
        standin
    }

    #[tokio::test]
    async fn fetches_every_page_in_order() {
        let standin = standin(250).await;
        let config = StripeConfig {
            api_version: Some("2026-07-29.dahlia".to_owned()),
            ..StripeConfig::default()
        };
        let items = api(standin.url(), KEY, &config)
            .line_items(SESSION, false)
            .await
            .expect("line items");
        assert_eq!(items.len(), 250);
        assert_eq!(standin.requests(), 3);
        for (i, item) in items.iter().enumerate() {
            let quantity = 1 + (i as i64 % 3);
            let expect = LineItem {
                id: format!("li_{i:04}"),
                product: Some(format!("Product {i}")),
                product_id: Some(format!("prod_{i:04}")),
                price_id: Some(format!("price_{i:04}")),
                description: Some(format!("Product {i}")),
                unit_amount: Some(100 + i as i64),
                currency: Some("eur".to_owned()),
                quantity: Some(quantity),
                amount_subtotal: Some((100 + i as i64) * quantity),
                amount_discount: Some(0),
                amount_tax: Some(0),
                amount_total: Some((100 + i as i64) * quantity),
            };
            assert_eq!(item, &expect);
        }
        let headers = standin.last_headers().expect("requests were seen");
        assert_eq!(headers["stripe-version"], "2026-07-29.dahlia");
        assert_eq!(headers["authorization"], format!("Bearer {KEY}").as_str());
        let agent = headers["user-agent"].to_str().expect("ascii");
        assert_eq!(agent, concat!("stripe-router/", env!("CARGO_PKG_VERSION")));
    }

    #[tokio::test]
    async fn no_version_header_unless_pinned() {
        let standin = standin(1).await;
        let api = api(standin.url(), KEY, &StripeConfig::default());
        assert_eq!(
            api.line_items(SESSION, false)
                .await
                .expect("line items")
                .len(),
            1
        );
        let headers = standin.last_headers().expect("a request was seen");
        assert!(headers.get("stripe-version").is_none());
    }

    /// Injects `fault`, fetches one page, and checks the outcome and how many
    /// requests it took.
    #[track_caller]
    fn check_retries(
        fault: (u32, u16, Option<bool>),
        expect: Result<(), (EnrichErrorKind, bool, &'static str)>,
        requests: u64,
    ) -> impl Future<Output = ()> {
        let caller = std::panic::Location::caller();
        async move {
            let standin = standin(3).await;
            standin.fail_next_with(fault.0, fault.1, fault.2);
            let result = api(standin.url(), KEY, &StripeConfig::default())
                .line_items(SESSION, false)
                .await;
            match (result, expect) {
                (Ok(items), Ok(())) => assert_eq!(items.len(), 3, "{caller}"),
                (Err(e), Err((kind, retryable, fragment))) => {
                    assert_eq!((e.kind, e.retryable), (kind, retryable), "{caller}: {e}");
                    assert!(e.message.contains(fragment), "{caller}: {e}");
                }
                (got, want) => panic!("{caller}: got {got:?}, want {want:?}"),
            }
            assert_eq!(standin.requests(), requests, "{caller}: requests");
        }
    }

    #[tokio::test]
    async fn retries_transient_failures_only() {
        use EnrichErrorKind::*;
        check_retries((2, 500, None), Ok(()), 3).await;
        check_retries((1, 429, None), Ok(()), 2).await;
        check_retries((1, 409, None), Ok(()), 2).await;
        check_retries((1, 400, Some(true)), Ok(()), 2).await;
        check_retries((1, 400, None), Err((Invalid, false, "(400)")), 1).await;
        check_retries((1, 503, Some(false)), Err((Unavailable, false, "503")), 1).await;
        check_retries(
            (9, 502, None),
            Err((
                Unavailable,
                true,
                "gave up after 4 attempts: stripe answered 502",
            )),
            4,
        )
        .await;
        check_retries(
            (9, 429, None),
            Err((RateLimited, true, "(stripe: Too many")),
            4,
        )
        .await;
    }

    #[tokio::test]
    async fn auth_and_missing_session_errors() {
        let standin = standin(1).await;
        let other = "sk_test_51OtherAccountKeyzz9z";
        let err = api(standin.url(), other, &StripeConfig::default())
            .line_items(SESSION, false)
            .await
            .expect_err("wrong key");
        assert_eq!(
            (err.kind, err.retryable),
            (EnrichErrorKind::Unauthorized, false)
        );
        assert!(err.message.contains("`sk_test_…zz9z`"), "{err}");
        assert!(
            err.message.contains("read access to Checkout Sessions"),
            "{err}"
        );
        assert!(!err.message.contains(other), "{err}");
        assert_eq!(standin.requests(), 1);

        let api = api(standin.url(), KEY, &StripeConfig::default());
        let err = api
            .line_items("cs_live_nope", true)
            .await
            .expect_err("no such session");
        assert_eq!(
            (err.kind, err.retryable),
            (EnrichErrorKind::NotFound, false)
        );
        assert_eq!(
            err.message,
            "checkout session `cs_live_nope` does not exist in this account/mode (test vs live): \
             the key `rk_test_…a1b2` is a test key but the event is livemode \
             (stripe: No such checkout.session: 'cs_live_nope')"
        );
        let err = api
            .line_items("cs_test_nope", false)
            .await
            .expect_err("no such session");
        assert!(!err.message.contains("livemode"), "{err}");

        let err = api
            .line_items("../v1/charges", false)
            .await
            .expect_err("not an id");
        assert_eq!((err.kind, err.retryable), (EnrichErrorKind::Invalid, false));
        assert_eq!(standin.requests(), 3, "an invalid id is never sent");
    }

    #[tokio::test]
    async fn connection_refused_is_retryable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
        let port = listener.local_addr().expect("has an address").port();
        drop(listener);
        let base = Url::parse(&format!("http://127.0.0.1:{port}")).expect("a URL");
        let config = StripeConfig {
            max_attempts: Some(2),
            ..StripeConfig::default()
        };
        let err = api(base, KEY, &config)
            .line_items(SESSION, false)
            .await
            .expect_err("refused");
        assert_eq!(
            (err.kind, err.retryable),
            (EnrichErrorKind::Unavailable, true)
        );
        assert!(
            err.message
                .contains("gave up after 2 attempts: cannot connect"),
            "{err}"
        );
    }

    /// Fetches `SESSION` under `config` and checks that a bound stopped it,
    /// after `requests` requests, with a message naming `key`.
    #[track_caller]
    fn check_bound(
        standin: &StripeStandIn,
        config: StripeConfig,
        key: &'static str,
        requests: u64,
    ) -> impl Future<Output = ()> {
        let caller = std::panic::Location::caller();
        let before = standin.requests();
        let api = api(standin.url(), KEY, &config);
        async move {
            let err = api
                .line_items(SESSION, false)
                .await
                .expect_err("a bound stops it");
            assert_eq!(
                (err.kind, err.retryable),
                (EnrichErrorKind::OverLimit, false),
                "{caller}: {err}"
            );
            assert!(err.message.contains(key), "{caller}: {err}");
            assert!(err.message.contains(SESSION), "{caller}: {err}");
            assert_eq!(standin.requests() - before, requests, "{caller}: requests");
        }
    }

    #[tokio::test]
    async fn pages_items_and_bytes_are_bounded() {
        let standin = standin(12).await;
        let items = |n| StripeConfig {
            max_line_items: n,
            ..StripeConfig::default()
        };
        check_bound(&standin, items(11), "stripe.max_line_items (11)", 1).await;
        let twelve = api(standin.url(), KEY, &items(12));
        let ok = twelve.line_items(SESSION, false).await;
        assert_eq!(ok.expect("12 items are allowed").len(), 12);

        standin.misbehave(SESSION, Misbehaviour::EndlessPages { per_page: 1 });
        let pages = StripeConfig {
            max_pages: 3,
            ..StripeConfig::default()
        };
        check_bound(&standin, pages, "stripe.max_pages (3)", 3).await;
        standin.misbehave(SESSION, Misbehaviour::EndlessPages { per_page: 100 });
        check_bound(&standin, items(250), "stripe.max_line_items (250)", 3).await;

        let bytes = StripeConfig {
            max_response: 64 * 1024,
            ..StripeConfig::default()
        };
        for announced in [true, false] {
            let how = Misbehaviour::Huge {
                bytes: 10 * 1024 * 1024,
                announced,
            };
            standin.misbehave(SESSION, how);
            check_bound(&standin, bytes.clone(), "stripe.max_response (64KiB)", 1).await;
        }
        // All pages together: 3 pages of 100 items are past 64 KiB.
        standin.misbehave(SESSION, Misbehaviour::EndlessPages { per_page: 100 });
        let bytes = StripeConfig {
            max_response: 256 * 1024,
            ..StripeConfig::default()
        };
        check_bound(&standin, bytes, "stripe.max_response (256KiB)", 2).await;
    }

    #[test]
    fn base_must_be_http() {
        let key = ApiKey::parse(KEY).expect("valid");
        let base = Url::parse("ftp://example.com").expect("a URL");
        let err = StripeApi::new(base, key, &StripeConfig::default()).expect_err("not http");
        assert!(err.to_string().contains("http or https"), "{err}");
    }
}
