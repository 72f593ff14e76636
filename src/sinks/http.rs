//! `http`: POSTs each record to a URL, signed per Standard Webhooks.
//!
//! Every attempt carries `webhook-id` (the record id, stable across retries so
//! consumers can deduplicate), `webhook-timestamp` (this attempt's unix
//! seconds) and, with a `signing_secret`, `webhook-signature: v1,<base64>`
//! over `{id}.{timestamp}.{body}`, so any Standard Webhooks library verifies
//! it. Success is any 2xx. Redirects are not followed: a 3xx is reported as a
//! permanent failure naming the status, since re-POSTing a signed body to
//! wherever a server points is not something to do silently.
//!
//! One `reqwest::Client` per sink keeps connections pooled. Configured header
//! values and the signing secret may hold tokens: they never appear in
//! `Debug` output or error messages, nor does the URL's userinfo or query.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hmac::{Hmac, Mac};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Response, StatusCode};
use serde::Deserialize;
use sha2::Sha256;
use url::Url;

use super::{BuildError, DeliverFuture, DeliveryError, Encoded, Sink};
use crate::config::{REDACTED, redact_url};

/// Per-request limit when `timeout` is not set: connect, send and answer.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How much of an error response's body goes into the message.
const EXCERPT_BYTES: usize = 200;
/// How much of a 2xx body is read so the connection can be reused; a longer
/// body is dropped with its connection.
const DRAIN_BYTES: usize = 64 * 1024;
const USER_AGENT: &str = concat!("stripe-router/", env!("CARGO_PKG_VERSION"));
/// Headers this sink sets itself; configuring them would break the body's
/// framing or the signature contract.
const RESERVED_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "transfer-encoding",
    "host",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
];

/// Every value [`HttpSink::build`] would refuse is refused here already, by
/// the same functions, so `check` refuses what `serve` cannot start with.
/// No error repeats the value: URLs, headers and secrets may hold tokens.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    #[serde(deserialize_with = "parse_url")]
    pub url: Url,
    /// Extra request headers; values may be credentials and are never shown.
    #[serde(default, deserialize_with = "parse_headers")]
    pub headers: BTreeMap<String, String>,
    /// `whsec_<base64>`; the decoded bytes are the HMAC key.
    #[serde(default, deserialize_with = "parse_signing_secret")]
    pub signing_secret: Option<String>,
    /// Per-request limit, connect to answer; [`DEFAULT_TIMEOUT`] when unset.
    #[serde(default, deserialize_with = "parse_timeout")]
    pub timeout: Option<Duration>,
    /// Retry schedule for this sink's deliveries.
    #[serde(default)]
    pub retry: super::RetryConfig,
    /// Deliveries in flight at once (default 16).
    #[serde(default)]
    pub concurrency: Option<usize>,
}

impl fmt::Debug for HttpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: BTreeMap<&str, &str> = self
            .headers
            .keys()
            .map(|name| (name.as_str(), REDACTED))
            .collect();
        f.debug_struct("HttpConfig")
            .field("url", &redact_url(&self.url))
            .field("headers", &headers)
            .field(
                "signing_secret",
                &self.signing_secret.as_ref().map(|_| REDACTED),
            )
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .field("concurrency", &self.concurrency)
            .finish()
    }
}

pub struct HttpSink {
    client: reqwest::Client,
    url: Url,
    /// The URL without userinfo or query, for messages.
    shown_url: String,
    headers: HeaderMap,
    signing_key: Option<SigningKey>,
    /// What each request carries that a consumer's error answer might echo.
    sent_secrets: Vec<String>,
}

impl fmt::Debug for HttpSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<&str> = self.headers.keys().map(HeaderName::as_str).collect();
        f.debug_struct("HttpSink")
            .field("url", &self.shown_url)
            .field("headers", &headers)
            .field("signed", &self.signing_key.is_some())
            .finish_non_exhaustive()
    }
}

/// The URL of a sink: http or https.
fn check_url(url: &Url) -> Result<(), String> {
    if matches!(url.scheme(), "http" | "https") {
        Ok(())
    } else {
        Err(format!(
            "url scheme `{}` is not supported (use http or https)",
            url.scheme()
        ))
    }
}

fn check_timeout(timeout: Duration) -> Result<(), String> {
    if timeout.is_zero() {
        Err("timeout must be more than zero".into())
    } else {
        Ok(())
    }
}

/// The configured headers as they are sent; values are marked sensitive
/// (never logged by the HTTP stack).
fn header_map(headers: &BTreeMap<String, String>) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("header name `{name}` is not a valid HTTP header name"))?;
        if RESERVED_HEADERS.contains(&header.as_str()) {
            return Err(format!(
                "header `{name}` is set by the sink and cannot be configured"
            ));
        }
        let mut value = HeaderValue::from_str(value).map_err(|_| {
            format!("the value of header `{name}` is not a valid header value (visible ASCII only)")
        })?;
        value.set_sensitive(true);
        map.insert(header, value);
    }
    Ok(map)
}

fn parse_url<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Url, D::Error> {
    let text = String::deserialize(d)?;
    let url =
        Url::parse(text.trim()).map_err(|e| serde::de::Error::custom(format!("not a URL: {e}")))?;
    check_url(&url).map_err(serde::de::Error::custom)?;
    Ok(url)
}

fn parse_headers<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    let headers = BTreeMap::deserialize(d)?;
    header_map(&headers).map_err(serde::de::Error::custom)?;
    Ok(headers)
}

fn parse_signing_secret<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<String>, D::Error> {
    let secret = Option::<String>::deserialize(d)?;
    if let Some(secret) = &secret {
        SigningKey::parse(secret).map_err(serde::de::Error::custom)?;
    }
    Ok(secret)
}

fn parse_timeout<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let timeout = crate::config::opt_duration::deserialize(d)?;
    if let Some(timeout) = timeout {
        check_timeout(timeout).map_err(serde::de::Error::custom)?;
    }
    Ok(timeout)
}

impl HttpSink {
    /// Checks everything a request will need, so a bad secret or header fails
    /// at build rather than on each delivery.
    pub fn build(config: &HttpConfig) -> Result<HttpSink, BuildError> {
        let shown = redact_url(&config.url);
        let fail = |why: String| BuildError(format!("http sink {shown}: {why}"));
        check_url(&config.url).map_err(fail)?;
        let timeout = config.timeout.unwrap_or(DEFAULT_TIMEOUT);
        check_timeout(timeout).map_err(fail)?;
        let headers = header_map(&config.headers).map_err(fail)?;
        let signing_key = match &config.signing_secret {
            None => None,
            Some(secret) => Some(SigningKey::parse(secret).map_err(|e| fail(e.to_string()))?),
        };
        let client = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(CONNECT_TIMEOUT.min(timeout))
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| {
                fail(format!(
                    "cannot create the HTTP client: {}",
                    error_chain(&e)
                ))
            })?;
        Ok(HttpSink {
            client,
            url: config.url.clone(),
            shown_url: shown,
            headers,
            signing_key,
            sent_secrets: sent_secrets(&config.url, &config.headers),
        })
    }

    fn send_error(&self, e: reqwest::Error) -> DeliveryError {
        let what = if e.is_timeout() {
            "timed out"
        } else if e.is_connect() {
            "cannot connect"
        } else {
            "request failed"
        };
        // A builder error is ours and repeats; anything on the wire may pass.
        let retryable = !e.is_builder();
        // reqwest's message would repeat the full URL, query and all.
        let cause = error_chain(&e.without_url());
        let message = format!("http sink POST {}: {what}: {cause}", self.shown_url);
        DeliveryError { retryable, message }
    }

    async fn status_error(&self, response: Response) -> DeliveryError {
        let status = response.status();
        let hint = if status.is_redirection() {
            " (redirects are not followed; point `url` at the final address)"
        } else {
            ""
        };
        // A consumer's error page may echo the request: its URL, headers.
        // Redacted before the excerpt is cut, and read past it by the
        // longest secret, so that one cut by the excerpt's end is still
        // found whole and never shows in part.
        let longest = self.sent_secrets.first().map_or(0, String::len);
        let body = read_prefix(response, EXCERPT_BYTES + longest).await;
        let mut text = String::from_utf8_lossy(&body).into_owned();
        for secret in &self.sent_secrets {
            text = text.replace(secret.as_str(), REDACTED);
        }
        let mut end = text.len().min(EXCERPT_BYTES);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let excerpt = text[..end].trim();
        let mut message = format!("http sink POST {}: answered {status}{hint}", self.shown_url);
        if !excerpt.is_empty() {
            message.push_str(": ");
            message.push_str(excerpt);
        }
        DeliveryError {
            retryable: is_retryable(status),
            message,
        }
    }
}

impl Sink for HttpSink {
    fn deliver<'a>(&'a self, record: &'a Encoded) -> DeliverFuture<'a> {
        Box::pin(async move {
            let id = HeaderValue::from_str(&record.id).map_err(|_| {
                DeliveryError::permanent(format!(
                    "http sink POST {}: record id {:?} cannot be sent as a header value",
                    self.shown_url, record.id
                ))
            })?;
            let timestamp = unix_now();
            let mut request = self
                .client
                .post(self.url.clone())
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .header("webhook-id", id)
                .header("webhook-timestamp", timestamp)
                .headers(self.headers.clone());
            if let Some(key) = &self.signing_key {
                request = request.header(
                    "webhook-signature",
                    key.sign(&record.id, timestamp, &record.body),
                );
            }
            let response = request
                .body(record.body.clone())
                .send()
                .await
                .map_err(|e| self.send_error(e))?;
            if response.status().is_success() {
                read_prefix(response, DRAIN_BYTES).await;
                Ok(())
            } else {
                Err(self.status_error(response).await)
            }
        })
    }
}

/// 408, 409, 425, 429 and 5xx may pass later; other answers will repeat.
fn is_retryable(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 409 | 425 | 429) || status.is_server_error()
}

/// Reads at least `limit` bytes of the body if there are that many (possibly
/// a little more); a read error ends it early, since the status already says
/// what happened.
async fn read_prefix(mut response: Response, limit: usize) -> Vec<u8> {
    let mut read = Vec::new();
    while read.len() < limit {
        match response.chunk().await {
            Ok(Some(chunk)) => read.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    read
}

/// The error and its causes, `: `-separated, without the URL reqwest adds.
fn error_chain(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The URL's user, password and query (whole and each value), the Basic
/// credentials built from them, and the header values: what a request
/// carries that holds tokens. Longest first, so a part never shows through
/// the redaction of a whole; pieces under 4 characters protect nothing and
/// would mangle the text.
fn sent_secrets(url: &Url, headers: &BTreeMap<String, String>) -> Vec<String> {
    let decode = |raw: &str| -> String {
        url::form_urlencoded::parse(format!("x={}", raw.replace('+', "%2B")).as_bytes())
            .next()
            .map(|(_, value)| value.into_owned())
            .unwrap_or_default()
    };
    let (user, password) = (url.username(), url.password().unwrap_or(""));
    let mut secrets = vec![
        user.to_owned(),
        decode(user),
        password.to_owned(),
        decode(password),
        url.query().unwrap_or("").to_owned(),
    ];
    if !user.is_empty() || !password.is_empty() {
        let basic = format!("{}:{}", decode(user), decode(password));
        secrets.push(base64::engine::general_purpose::STANDARD.encode(basic));
    }
    secrets.extend(url.query_pairs().map(|(_, value)| value.into_owned()));
    secrets.extend(headers.values().cloned());
    secrets.retain(|s| s.chars().count() >= 4);
    secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    secrets.dedup();
    secrets
}

fn unix_now() -> u64 {
    u64::try_from(crate::clock::unix_now()).unwrap_or(0)
}

/// A Standard Webhooks signing key, from a `whsec_<base64>` secret.
#[derive(Clone)]
pub struct SigningKey(Hmac<Sha256>);

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "signing_secret must be `whsec_` followed by a non-empty base64 key \
     (the Standard Webhooks format, e.g. `whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD`)"
)]
pub struct InvalidSigningSecret;

impl SigningKey {
    pub fn parse(secret: &str) -> Result<SigningKey, InvalidSigningSecret> {
        // Standard base64; padding optional, as generators differ.
        const BASE64: GeneralPurpose = GeneralPurpose::new(
            &alphabet::STANDARD,
            GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
        );
        let encoded = secret.strip_prefix("whsec_").ok_or(InvalidSigningSecret)?;
        let key = BASE64.decode(encoded).map_err(|_| InvalidSigningSecret)?;
        if key.is_empty() {
            return Err(InvalidSigningSecret);
        }
        Hmac::new_from_slice(&key)
            .map(SigningKey)
            .map_err(|_| InvalidSigningSecret)
    }

    /// The `webhook-signature` value: `v1,<base64(HMAC-SHA256(key,
    /// "{id}.{timestamp}.{body}"))>`.
    pub fn sign(&self, id: &str, timestamp: u64, body: &[u8]) -> String {
        let mut mac = self.0.clone();
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        let tag = mac.finalize().into_bytes();
        format!(
            "v1,{}",
            base64::engine::general_purpose::STANDARD.encode(tag)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};

    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper::body::Incoming;
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use tokio::net::TcpListener;

    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

    #[test]
    fn signs_the_standard_webhooks_vector() {
        let key = SigningKey::parse(SECRET).unwrap();
        let signature = key.sign(
            "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
            1649367553,
            br#"{"email":"test@example.com","username":"test_user"}"#,
        );
        assert_eq!(signature, "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=");
    }

    #[track_caller]
    fn check_secret(secret: &str, valid: bool) {
        assert_eq!(SigningKey::parse(secret).is_ok(), valid, "{secret}");
    }

    #[test]
    fn parses_only_whsec_base64_secrets() {
        check_secret(SECRET, true);
        check_secret("whsec_MTIzNDU2Nzg5MDEyMzQ1Ng==", true);
        check_secret("whsec_MTIzNDU2Nzg5MDEyMzQ1Ng", true);
        check_secret("C2FVsBQIhrscChlQIMV+b5sSYspob7oD", false);
        check_secret("whsec_", false);
        check_secret("whsec_not base64!", false);
        check_secret("WHSEC_C2FVsBQIhrscChlQIMV+b5sSYspob7oD", false);
    }

    fn config(url: &str) -> HttpConfig {
        HttpConfig {
            url: Url::parse(url).unwrap(),
            headers: BTreeMap::new(),
            signing_secret: None,
            timeout: None,
            retry: Default::default(),
            concurrency: None,
        }
    }

    #[track_caller]
    fn check_build_error(config: HttpConfig, expected: &str) {
        let err = HttpSink::build(&config).expect_err("the build fails");
        assert!(
            err.0.contains(expected),
            "`{}` does not contain `{expected}`",
            err.0
        );
        assert!(!err.0.contains("s3cr3t"), "{}", err.0);
    }

    #[test]
    fn build_rejects_bad_settings() {
        let base = || config("https://example.com/hook");
        let with_header = |name: &str, value: &str| {
            let mut c = base();
            c.headers.insert(name.into(), value.into());
            c
        };
        let with_secret = HttpConfig {
            signing_secret: Some("s3cr3t".into()),
            ..base()
        };
        let with_zero_timeout = HttpConfig {
            timeout: Some(Duration::ZERO),
            ..base()
        };
        let table = [
            (
                config("ftp://example.com/x"),
                "scheme `ftp` is not supported",
            ),
            (
                with_secret,
                "must be `whsec_` followed by a non-empty base64 key",
            ),
            (
                with_header("bad name", "s3cr3t"),
                "header name `bad name` is not a valid",
            ),
            (
                with_header("x-token", "s3cr3t\n"),
                "the value of header `x-token` is not a valid",
            ),
            (
                with_header("Webhook-Signature", "s3cr3t"),
                "`Webhook-Signature` is set by the sink",
            ),
            (with_zero_timeout, "timeout must be more than zero"),
        ];
        for (config, expected) in table {
            check_build_error(config, expected);
        }
    }

    #[test]
    fn debug_hides_secrets() {
        let mut c = config("https://user:s3cr3t@example.com/hook?token=s3cr3t");
        c.signing_secret = Some(SECRET.into());
        c.headers
            .insert("authorization".into(), "Bearer s3cr3t".into());
        let sink = HttpSink::build(&c).unwrap();
        for shown in [format!("{c:?}"), format!("{sink:?}")] {
            assert!(!shown.contains("s3cr3t"), "{shown}");
            assert!(!shown.contains("C2FVsBQIhrsc"), "{shown}");
            assert!(shown.contains("authorization"), "{shown}");
            assert!(shown.contains("example.com/hook"), "{shown}");
        }
    }

    struct Received {
        headers: hyper::HeaderMap,
        body: Bytes,
    }

    /// A consumer stand-in that records requests and answers `status` with
    /// `reply`.
    async fn serve(status: u16, reply: &'static str) -> (SocketAddr, Arc<Mutex<Vec<Received>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&received);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let log = Arc::clone(&log);
                let service = service_fn(move |request: hyper::Request<Incoming>| {
                    let log = Arc::clone(&log);
                    async move {
                        let (parts, body) = request.into_parts();
                        let body = body.collect().await?.to_bytes();
                        log.lock().unwrap().push(Received {
                            headers: parts.headers,
                            body,
                        });
                        let mut response = hyper::Response::new(Full::new(Bytes::from(reply)));
                        *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                        Ok::<_, hyper::Error>(response)
                    }
                });
                tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
            }
        });
        (addr, received)
    }

    fn record() -> Encoded {
        Encoded {
            id: "evt_1NG8Du2eZvKYlo2CUI79vXWy:paid-orders".into(),
            body: Bytes::from_static(br#"{"order":{"id":"cs_test_a1"},"amount":2000}"#),
        }
    }

    #[tokio::test]
    async fn posts_signed_json_with_all_headers() {
        let (addr, received) = serve(200, "ok").await;
        let mut c = config(&format!("http://{addr}/hook"));
        c.signing_secret = Some(SECRET.into());
        c.headers
            .insert("Authorization".into(), "Bearer s3cr3t".into());
        c.headers.insert("x-tenant".into(), "acme".into());
        let sink = HttpSink::build(&c).unwrap();
        let record = record();
        sink.deliver(&record).await.unwrap();

        let received = received.lock().unwrap();
        let [request] = received.as_slice() else {
            panic!("one request, got {}", received.len())
        };
        let header = |name: &str| {
            request
                .headers
                .get(name)
                .unwrap_or_else(|| panic!("no {name}"))
                .to_str()
                .unwrap()
        };
        assert_eq!(request.body, record.body);
        assert_eq!(header("content-type"), "application/json");
        assert_eq!(
            header("user-agent"),
            format!("stripe-router/{}", env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(header("webhook-id"), record.id);
        assert_eq!(header("authorization"), "Bearer s3cr3t");
        assert_eq!(header("x-tenant"), "acme");
        let timestamp: u64 = header("webhook-timestamp").parse().unwrap();
        assert!(unix_now().abs_diff(timestamp) < 60, "timestamp {timestamp}");
        let expected = SigningKey::parse(SECRET)
            .unwrap()
            .sign(&record.id, timestamp, &record.body);
        assert_eq!(header("webhook-signature"), expected);
    }

    #[tokio::test]
    async fn unsigned_without_a_secret() {
        let (addr, received) = serve(204, "").await;
        let sink = HttpSink::build(&config(&format!("http://{addr}/"))).unwrap();
        sink.deliver(&record()).await.unwrap();
        assert!(
            received.lock().unwrap()[0]
                .headers
                .get("webhook-signature")
                .is_none()
        );
    }

    #[track_caller]
    fn check_outcome(result: Result<(), DeliveryError>, status: u16, retryable: Option<bool>) {
        match (result, retryable) {
            (Ok(()), None) => {}
            (Err(e), Some(retryable)) => {
                assert_eq!(e.retryable, retryable, "{status}: {}", e.message);
                assert!(e.message.contains(&status.to_string()), "{}", e.message);
                assert!(e.message.contains("consumer says no"), "{}", e.message);
                assert!(!e.message.contains("s3cr3t"), "{}", e.message);
            }
            (result, _) => panic!("{status}: unexpected {result:?}"),
        }
    }

    #[tokio::test]
    async fn classifies_answers_by_status() {
        let table = [
            (200, None),
            (201, None),
            (204, None),
            (301, Some(false)),
            (400, Some(false)),
            (401, Some(false)),
            (404, Some(false)),
            (422, Some(false)),
            (408, Some(true)),
            (409, Some(true)),
            (425, Some(true)),
            (429, Some(true)),
            (500, Some(true)),
            (503, Some(true)),
        ];
        for (status, retryable) in table {
            let (addr, _) = serve(status, "consumer says no").await;
            let mut c = config(&format!("http://{addr}/"));
            c.headers
                .insert("authorization".into(), "Bearer s3cr3t".into());
            let result = HttpSink::build(&c).unwrap().deliver(&record()).await;
            check_outcome(result, status, retryable);
        }
    }

    #[tokio::test]
    async fn long_error_bodies_are_cut() {
        let (addr, _) = serve(400, concat!("x", include_str!("http.rs"))).await;
        let sink = HttpSink::build(&config(&format!("http://{addr}/"))).unwrap();
        let err = sink.deliver(&record()).await.unwrap_err();
        assert!(err.message.len() < 400, "{}", err.message);
    }

    #[tokio::test]
    async fn errors_never_repeat_what_the_request_carried() {
        // An error page that echoes the request: the URL's password and
        // token, the Basic credentials built from them, a header value.
        let (addr, _) = serve(
            401,
            "denied /hook?token=tok_s3cr3t&x=1 as dXNlcjpodW50ZXIy (user:hunter2) with Bearer hdr_s3cr3t",
        )
        .await;
        let mut c = config(&format!(
            "http://user:hunter2@{addr}/hook?token=tok_s3cr3t&x=1"
        ));
        c.headers
            .insert("authorization".into(), "Bearer hdr_s3cr3t".into());
        let err = HttpSink::build(&c)
            .unwrap()
            .deliver(&record())
            .await
            .unwrap_err();
        for secret in ["hunter2", "tok_s3cr3t", "dXNlcjpodW50ZXIy", "hdr_s3cr3t"] {
            assert!(!err.message.contains(secret), "{}", err.message);
        }
        assert!(err.message.contains("answered 401"), "{}", err.message);
        assert!(err.message.contains("denied /hook"), "{}", err.message);

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let c = config(&format!("http://user:hunter2@{addr}/hook?token=tok_s3cr3t"));
        let err = HttpSink::build(&c)
            .unwrap()
            .deliver(&record())
            .await
            .unwrap_err();
        assert!(!err.message.contains("hunter2"), "{}", err.message);
        assert!(!err.message.contains("tok_s3cr3t"), "{}", err.message);
    }

    #[tokio::test]
    async fn a_secret_cut_by_the_end_of_the_excerpt_never_shows_in_part() {
        let echo = format!("{}tok_s3cr3t_value", "x".repeat(EXCERPT_BYTES - 5)).leak();
        let (addr, _) = serve(401, echo).await;
        let c = config(&format!("http://{addr}/hook?token=tok_s3cr3t_value"));
        let err = HttpSink::build(&c)
            .unwrap()
            .deliver(&record())
            .await
            .unwrap_err();
        assert!(err.message.contains("xxxxx"), "{}", err.message);
        assert!(!err.message.contains("tok_s"), "{}", err.message);
    }

    #[tokio::test]
    async fn connection_refused_is_retryable() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let sink = HttpSink::build(&config(&format!("http://{addr}/"))).unwrap();
        let err = sink.deliver(&record()).await.unwrap_err();
        assert!(err.retryable, "{}", err.message);
        assert!(err.message.contains("cannot connect"), "{}", err.message);
    }

    #[tokio::test]
    async fn a_silent_server_times_out_retryably() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Accepts and holds connections without ever answering.
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        let mut c = config(&format!("http://{addr}/"));
        c.timeout = Some(Duration::from_millis(200));
        let err = HttpSink::build(&c)
            .unwrap()
            .deliver(&record())
            .await
            .unwrap_err();
        assert!(err.retryable, "{}", err.message);
        assert!(err.message.contains("timed out"), "{}", err.message);
    }

    /// A consumer that answers `status` with a body that never ends: 64 KiB
    /// chunks as fast as they are taken, or one byte every 50 ms.
    async fn endless(status: u16, trickle: bool) -> SocketAddr {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut request = [0u8; 4096];
                    let _ = stream.read(&mut request).await;
                    let head = format!("HTTP/1.1 {status} X\r\ntransfer-encoding: chunked\r\n\r\n");
                    if stream.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    let chunk = if trickle {
                        b"1\r\nx\r\n".to_vec()
                    } else {
                        let mut chunk = b"10000\r\n".to_vec();
                        chunk.extend(std::iter::repeat_n(b'x', 0x10000));
                        chunk.extend_from_slice(b"\r\n");
                        chunk
                    };
                    while stream.write_all(&chunk).await.is_ok() {
                        if trickle {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn a_consumer_cannot_make_the_sink_read_or_wait_without_end() {
        for (status, trickle) in [(500, false), (200, false), (500, true), (200, true)] {
            let mut c = config(&format!("http://{}/", endless(status, trickle).await));
            c.timeout = Some(Duration::from_secs(1));
            let sink = HttpSink::build(&c).unwrap();
            let started = std::time::Instant::now();
            let result = tokio::time::timeout(Duration::from_secs(10), sink.deliver(&record()))
                .await
                .expect("the delivery ends");
            let case = format!("{status}, trickle: {trickle}, took {:?}", started.elapsed());
            match result {
                Ok(()) => assert_eq!(status, 200, "{case}"),
                Err(e) => {
                    assert_eq!(status, 500, "{case}: {}", e.message);
                    assert!(e.message.len() < 400, "{case}: {}", e.message);
                }
            }
            assert!(started.elapsed() < Duration::from_secs(5), "{case}");
        }
    }
}
