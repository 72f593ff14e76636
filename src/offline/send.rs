//! `stripe-router send`: an offline `stripe trigger`. Builds a realistic
//! event (or reads one from a file), changes the fields `--set` names,
//! signs it with the endpoint secret exactly as Stripe does, and POSTs it
//! to a running router, or with `--print` shows the request instead.
//!
//! Built Checkout Sessions have ids that the stand-in's catalogue mode
//! understands (`cs_test_send_<token>_<N>items`), so with `stripe-router
//! stripe-standin` as `STRIPE_API_BASE` the router fetches `N` real-shaped
//! line items whose total is the session's total.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rand::Rng;
use rand::distr::Alphanumeric;
use serde_json::Value;
use url::Url;

use crate::config::env::{self, Env};
use crate::config::{Config, ConfigError};
use crate::event::{Event, EventError};
use crate::ingest::verify::{self, Secrets, SecretsError};
use crate::offline::standin::{self, SessionEvent};
use crate::redact::redact_url;
use crate::routing::event_types;

/// The event types `send` can build.
pub const BUILDS: [&str; 5] = [
    "checkout.session.completed",
    "checkout.session.async_payment_succeeded",
    "checkout.session.async_payment_failed",
    "checkout.session.expired",
    "payment_intent.succeeded",
];

const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PaymentStatus {
    Paid,
    Unpaid,
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error(
        "`{kind}` is not a Stripe event type{}",
        .suggestion.as_ref().map(|s| format!(": did you mean `{s}`?")).unwrap_or_default()
    )]
    NotAStripeType {
        kind: String,
        suggestion: Option<String>,
    },
    #[error(
        "send cannot build `{0}` events: it builds {list}; for any other type, pass a JSON \
         file with --file",
        list = BUILDS.join(", ")
    )]
    CannotBuild(String),
    #[error("--items {0} is too many: at most {max}", max = standin::CATALOGUE_MAX)]
    TooManyItems(usize),
    #[error("cannot read {}: {source}", path.display())]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    NotAnEvent { path: PathBuf, source: EventError },
    #[error(
        "STRIPE_WEBHOOK_SECRET is not set: set it (or put it in .env) to the secret the router \
         verifies with, whsec_...; `stripe-router serve --offline` writes one to .env.local, \
         which `send` reads too"
    )]
    NoSecret,
    /// Its messages name the variable.
    #[error(transparent)]
    Secret(#[from] SecretsError),
    #[error("cannot tell where to send from {path} (pass --to URL instead):\n{error}")]
    Config { path: String, error: ConfigError },
    #[error(
        "connection refused at {}: is `stripe-router serve` running? (start it in another \
         terminal, or pass --to URL)",
        crate::redact::redact_url(.url)
    )]
    NotListening { url: Url },
    #[error("cannot POST to {}: {source}", crate::redact::redact_url(.url))]
    Request { url: Url, source: reqwest::Error },
    #[error("--set {path}: {reason}")]
    Set { path: String, reason: String },
}

/// What `send` does besides sending: `--set` and `--print`.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Applied in order, after the fresh id.
    pub sets: Vec<Set>,
    /// Print the signed request instead of sending it.
    pub print: bool,
}

/// `--set PATH=VALUE`: a dotted path into the event (`data.object.currency`,
/// an array index as a number: `data.object.payment_method_types.0`) and a
/// value, JSON when it parses as JSON (`5000`, `true`, `null`, `{"a":1}`),
/// else the text as a string (`eur`).
#[derive(Debug, Clone, PartialEq)]
pub struct Set {
    pub path: String,
    pub value: Value,
}

impl std::str::FromStr for Set {
    type Err = String;

    fn from_str(text: &str) -> Result<Set, String> {
        let (path, value) = text.split_once('=').ok_or_else(|| {
            format!(
                "`{text}` is not PATH=VALUE: write e.g. data.object.amount_total=5000 or \
                 data.object.currency=eur"
            )
        })?;
        let path = path.trim();
        if path.is_empty() || path.split('.').any(str::is_empty) {
            return Err(format!(
                "`{path}` is not a dotted path: write e.g. data.object.customer_details.email"
            ));
        }
        let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.into()));
        Ok(Set {
            path: path.to_owned(),
            value,
        })
    }
}

/// Sets `set.path` in `event` to `set.value`, creating the objects on the
/// way that are missing. Errors name the part of the path in the way.
pub fn apply(event: &mut Value, set: &Set) -> Result<(), SendError> {
    let fail = |reason: String| SendError::Set {
        path: set.path.clone(),
        reason,
    };
    let parts: Vec<&str> = set.path.split('.').collect();
    let mut here = event;
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let walked = parts[..i].join(".");
        let at = if walked.is_empty() {
            "the event".to_owned()
        } else {
            format!("`{walked}`")
        };
        here = match here {
            Value::Object(map) if last => {
                map.insert((*part).to_owned(), set.value.clone());
                return Ok(());
            }
            Value::Object(map) => map
                .entry((*part).to_owned())
                .or_insert_with(|| Value::Object(serde_json::Map::new())),
            Value::Array(items) => {
                let len = items.len();
                let slot = part
                    .parse::<usize>()
                    .ok()
                    .and_then(|n| items.get_mut(n))
                    .ok_or_else(|| {
                        fail(format!(
                            "{at} is a list of {len}: `{part}` is not an index into it (0 to {})",
                            len.saturating_sub(1)
                        ))
                    })?;
                if last {
                    *slot = set.value.clone();
                    return Ok(());
                }
                slot
            }
            other => {
                let kind = match other {
                    Value::Null => "null",
                    Value::Bool(_) => "a boolean",
                    Value::Number(_) => "a number",
                    Value::String(_) => "a string",
                    _ => "a value",
                };
                return Err(fail(format!("{at} is {kind}, which has no `{part}`")));
            }
        };
    }
    Ok(())
}

/// What `send` sends.
#[derive(Debug, Clone)]
pub enum Source {
    /// A fresh event of type `kind`, built by [`build`].
    Build {
        kind: String,
        payment_status: Option<PaymentStatus>,
        items: usize,
    },
    /// The event in a file, with a fresh id unless `keep_id` ([`from_file`]).
    File { path: PathBuf, keep_id: bool },
}

/// `stripe-router send`: prepares the body from `source`, signs it with the
/// first secret of `STRIPE_WEBHOOK_SECRET`, POSTs it to `to` (default: the
/// config's listen address and path), and writes what was sent and the
/// router's answer to `out`. Whether a non-2xx answer is a failure is the
/// caller's call.
/// With `options.print`, nothing is sent: the signed request (headers and
/// body) is written to `out`, and the answer is `None`.
pub async fn run(
    source: Source,
    to: Option<Url>,
    options: &Options,
    config_path: &Path,
    env: &Env,
    out: &mut dyn Write,
) -> Result<Option<Answer>, SendError> {
    let mut body = match source {
        Source::File { path, keep_id } => from_file(&path, !keep_id)?,
        Source::Build {
            kind,
            payment_status,
            items,
        } => {
            let event = build(&kind, payment_status, items, crate::clock::unix_now())?;
            serde_json::to_vec_pretty(&event).unwrap_or_default()
        }
    };
    if !options.sets.is_empty() {
        // `from_file` made sure it is an event, so JSON.
        let mut event: Value = serde_json::from_slice(&body).unwrap_or_default();
        for set in &options.sets {
            apply(&mut event, set)?;
        }
        body = serde_json::to_vec_pretty(&event).unwrap_or(body);
    }
    let secret = first_secret(env)?;
    let url = target(to, config_path, env)?;
    let now = crate::clock::unix_now();
    if options.print {
        let _ = out.write_all(&request_text(&url, &body, &secret, now));
        return Ok(None);
    }
    // What is printed is the command's output; a closed stdout does not
    // stop the event from being sent.
    let _ = writeln!(
        out,
        "POST {}: {}, signed with {}",
        redact_url(&url),
        summary(&body),
        env::hint(&secret)
    );
    let client = reqwest::Client::new();
    let answer = post(&client, &url, body, &secret, now).await?;
    let _ = writeln!(out, "HTTP {}\n{}", answer.status, answer.body);
    Ok(Some(answer))
}

/// The request `post` would send, as HTTP/1.1 text: the request line, the
/// headers (the signature included) and the body byte for byte.
pub fn request_text(url: &Url, body: &[u8], secret: &str, now: i64) -> Vec<u8> {
    let host = url.host_str().unwrap_or("localhost");
    let host = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    let mut target = url.path().to_owned();
    if let Some(query) = url.query() {
        target = format!("{target}?{query}");
    }
    let mut text = format!("POST {target} HTTP/1.1\r\nHost: {host}\r\n");
    for (name, value) in headers(body, secret, now) {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    // `send --print | nc 127.0.0.1 3000` must end: the router closes the
    // connection once it has answered.
    text.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    let mut bytes = text.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// The headers Stripe sends with an event, `Stripe-Signature` for `secret`
/// at `now` included.
fn headers(body: &[u8], secret: &str, now: i64) -> [(&'static str, String); 3] {
    [
        ("Content-Type", "application/json; charset=utf-8".to_owned()),
        (
            "User-Agent",
            "Stripe/1.0 (+https://stripe.com/docs/webhooks)".to_owned(),
        ),
        ("Stripe-Signature", verify::sign(body, secret, now)),
    ]
}

/// `type id (session id)` of the event in `body`, or nothing when it is not
/// JSON.
fn summary(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .map(|event| {
            let session = &event["data"]["object"]["id"];
            format!(
                "{} {} ({})",
                event["type"].as_str().unwrap_or("?"),
                event["id"].as_str().unwrap_or("?"),
                session.as_str().unwrap_or("?")
            )
        })
        .unwrap_or_default()
}

/// A random alphanumeric token for fresh ids.
pub fn token(len: usize) -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// Builds a fresh event of type `kind` at time `now`. `items` line items
/// (from the stand-in's catalogue) make the session's total.
pub fn build(
    kind: &str,
    payment_status: Option<PaymentStatus>,
    items: usize,
    now: i64,
) -> Result<Value, SendError> {
    if !event_types::matches_known(kind) || kind.contains('*') {
        return Err(SendError::NotAStripeType {
            kind: kind.to_owned(),
            suggestion: event_types::closest(kind),
        });
    }
    if !BUILDS.contains(&kind) {
        return Err(SendError::CannotBuild(kind.to_owned()));
    }
    if items > standin::CATALOGUE_MAX {
        return Err(SendError::TooManyItems(items));
    }
    let session_token = token(14);
    let total = standin::items_total(&standin::catalogue_items(items));
    let event_id = format!("evt_1{}", token(23));
    let payment_intent = format!("pi_3{}", token(21));
    if kind == "payment_intent.succeeded" {
        return Ok(standin::payment_intent_event(
            &event_id,
            &payment_intent,
            total,
            "usd",
            now,
        ));
    }
    let expired = kind == "checkout.session.expired";
    let paid = match payment_status {
        Some(status) => status == PaymentStatus::Paid,
        None => matches!(
            kind,
            "checkout.session.completed" | "checkout.session.async_payment_succeeded"
        ),
    };
    let session = SessionEvent {
        event_id,
        event_type: kind.to_owned(),
        session_id: standin::catalogue_session_id(&session_token, items),
        payment_intent: (!expired).then_some(payment_intent),
        payment_status: if paid { "paid" } else { "unpaid" }.to_owned(),
        amount_total: total,
        created: now,
        ..SessionEvent::default()
    };
    Ok(standin::checkout_session_event(&session))
}

/// The body to send from an event file. With `fresh_id` the event gets a
/// new id (so the router does not take it for a duplicate) and is sent
/// 2-space indented as Stripe sends it; without, the file's bytes go as is.
pub fn from_file(path: &Path, fresh_id: bool) -> Result<Vec<u8>, SendError> {
    let bytes = std::fs::read(path).map_err(|source| SendError::ReadFile {
        path: path.to_owned(),
        source,
    })?;
    let event = Event::parse(&bytes).map_err(|source| SendError::NotAnEvent {
        path: path.to_owned(),
        source,
    })?;
    if !fresh_id {
        return Ok(bytes);
    }
    let mut raw = event.raw;
    raw["id"] = Value::String(format!("evt_1{}", token(23)));
    Ok(serde_json::to_vec_pretty(&raw).unwrap_or(bytes))
}

/// The first of the comma-separated `STRIPE_WEBHOOK_SECRET`: what Stripe
/// would sign with.
pub fn first_secret(env: &Env) -> Result<String, SendError> {
    let value = env
        .get("STRIPE_WEBHOOK_SECRET")
        .ok_or(SendError::NoSecret)?;
    Secrets::parse(&value)?;
    value
        .split(',')
        .map(str::trim)
        .find(|s| !s.is_empty())
        .map(str::to_owned)
        .ok_or(SendError::NoSecret)
}

/// `--to` when given, else the config's `server.listen` and `server.path`
/// (an unspecified listen address is reached on loopback).
pub fn target(to: Option<Url>, config_path: &Path, env: &Env) -> Result<Url, SendError> {
    if let Some(to) = to {
        return Ok(to);
    }
    let config = Config::load(config_path, env).map_err(|error| SendError::Config {
        path: config_path.display().to_string(),
        error,
    })?;
    let mut addr = config.server.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    Url::parse(&format!("http://{addr}{}", config.server.path)).map_err(|e| SendError::Config {
        path: config_path.display().to_string(),
        error: ConfigError {
            problems: vec![crate::config::ConfigProblem {
                place: config_path.display().to_string(),
                message: format!("server.listen and server.path do not make a URL: {e}"),
            }],
        },
    })
}

/// The router's answer.
#[derive(Debug)]
pub struct Answer {
    pub status: reqwest::StatusCode,
    pub body: String,
}

/// POSTs `body` to `url` with the `Stripe-Signature` Stripe would send at
/// `now` for `secret`, as Stripe does (`application/json; charset=utf-8`).
pub async fn post(
    client: &reqwest::Client,
    url: &Url,
    body: Vec<u8>,
    secret: &str,
    now: i64,
) -> Result<Answer, SendError> {
    // reqwest's message repeats the whole URL; the error shows it redacted.
    let failed = |source: reqwest::Error| {
        if refused(&source) {
            SendError::NotListening { url: url.clone() }
        } else {
            SendError::Request {
                url: url.clone(),
                source: source.without_url(),
            }
        }
    };
    let mut request = client.post(url.clone()).timeout(TIMEOUT);
    for (name, value) in headers(&body, secret, now) {
        request = request.header(name, value);
    }
    let response = request.body(body).send().await.map_err(failed)?;
    let status = response.status();
    let body = response.text().await.map_err(failed)?;
    Ok(Answer { status, body })
}

/// Whether nothing listens where the request went: the connection was
/// refused (not a name that does not resolve, not a timeout).
fn refused(error: &reqwest::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return true;
        }
        cause = e.source();
    }
    false
}

#[cfg(test)]
#[path = "send_tests.rs"]
mod tests;
