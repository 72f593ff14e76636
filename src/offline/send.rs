//! `stripe-router send`: an offline `stripe trigger`. Builds a realistic
//! event (or reads one from a file), signs it with the endpoint secret
//! exactly as Stripe does, and POSTs it to a running router.
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

use crate::config::env::Env;
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
         verifies with, whsec_..."
    )]
    NoSecret,
    /// Its messages name the variable.
    #[error(transparent)]
    Secret(#[from] SecretsError),
    #[error("cannot tell where to send from {path} (pass --to URL instead):\n{error}")]
    Config { path: String, error: ConfigError },
    #[error("cannot POST to {}: {source}", crate::redact::redact_url(.url))]
    Request { url: Url, source: reqwest::Error },
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
pub async fn run(
    source: Source,
    to: Option<Url>,
    config_path: &Path,
    env: &Env,
    out: &mut dyn Write,
) -> Result<Answer, SendError> {
    let body = match source {
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
    let secret = first_secret(env)?;
    let url = target(to, config_path, env)?;
    // What is printed is the command's output; a closed stdout does not
    // stop the event from being sent.
    let _ = writeln!(out, "POST {}: {}", redact_url(&url), summary(&body));
    let client = reqwest::Client::new();
    let answer = post(&client, &url, body, &secret, crate::clock::unix_now()).await?;
    let _ = writeln!(out, "HTTP {}\n{}", answer.status, answer.body);
    Ok(answer)
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
    let signature = verify::sign(&body, secret, now);
    // reqwest's message repeats the whole URL; the error shows it redacted.
    let failed = |source: reqwest::Error| SendError::Request {
        url: url.clone(),
        source: source.without_url(),
    };
    let response = client
        .post(url.clone())
        .timeout(TIMEOUT)
        .header("content-type", "application/json; charset=utf-8")
        .header(
            "user-agent",
            "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        )
        .header("stripe-signature", signature)
        .body(body)
        .send()
        .await
        .map_err(failed)?;
    let status = response.status();
    let body = response.text().await.map_err(failed)?;
    Ok(Answer { status, body })
}

#[cfg(test)]
#[path = "send_tests.rs"]
mod tests;
