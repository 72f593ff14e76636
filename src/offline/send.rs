//! `stripe-router send`: an offline `stripe trigger`. Builds a realistic
//! event (or reads one from a file), signs it with the endpoint secret
//! exactly as Stripe does, and POSTs it to a running router.
//!
//! Built Checkout Sessions have ids that the stand-in's catalogue mode
//! understands (`cs_test_send_<token>_<N>items`), so with `stripe-router
//! stripe-standin` as `STRIPE_API_BASE` the router fetches `N` real-shaped
//! line items whose total is the session's total.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rand::Rng;
use rand::distr::Alphanumeric;
use serde_json::Value;
use url::Url;

use crate::config::env::Env;
use crate::config::{Config, ConfigError};
use crate::ingest::event::{Event, EventError};
use crate::ingest::verify::{self, Secrets, SecretsError};
use crate::offline::standin::{self, SessionEvent};
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
    #[error("cannot POST to {}: {source}", crate::config::redact_url(.url))]
    Request { url: Url, source: reqwest::Error },
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
mod tests {
    use super::*;

    const NOW: i64 = 1_760_000_000;

    #[track_caller]
    fn check(kind: &str, status: Option<PaymentStatus>, items: usize, want: &str) {
        let event = build(kind, status, items, NOW).expect("builds");
        let body = serde_json::to_vec_pretty(&event).expect("serializes");
        let parsed = Event::parse(&body).expect("an event");
        assert_eq!(parsed.kind, kind);
        assert_eq!(parsed.created, NOW);
        let object = &event["data"]["object"];
        let got = format!(
            "{} {} {}",
            object["payment_status"].as_str().unwrap_or("-"),
            object["amount_total"]
                .as_i64()
                .or(object["amount"].as_i64())
                .unwrap_or(-1),
            object["payment_intent"].as_str().map_or("no-pi", |_| "pi"),
        );
        assert_eq!(got, want, "{kind}");
    }

    #[test]
    fn builds_each_type() {
        use PaymentStatus::*;
        check("checkout.session.completed", None, 2, "paid 6100 pi");
        check(
            "checkout.session.completed",
            Some(Unpaid),
            1,
            "unpaid 2500 pi",
        );
        check(
            "checkout.session.async_payment_succeeded",
            None,
            0,
            "paid 0 pi",
        );
        check(
            "checkout.session.async_payment_failed",
            None,
            1,
            "unpaid 2500 pi",
        );
        check("checkout.session.expired", None, 1, "unpaid 2500 no-pi");
        check("payment_intent.succeeded", None, 3, "- 10300 no-pi");
    }

    #[test]
    fn ids_are_fresh_and_name_the_item_count() {
        let a = build("checkout.session.completed", None, 4, NOW).expect("builds");
        let b = build("checkout.session.completed", None, 4, NOW).expect("builds");
        assert_ne!(a["id"], b["id"]);
        assert_ne!(a["data"]["object"]["id"], b["data"]["object"]["id"]);
        let session = a["data"]["object"]["id"].as_str().expect("an id");
        assert!(
            session.starts_with("cs_test_send_") && session.ends_with("_4items"),
            "{session}"
        );
    }

    #[test]
    fn refuses_what_it_cannot_build() {
        let err = build("checkout.sessions.completed", None, 1, NOW).unwrap_err();
        assert!(
            err.to_string()
                .contains("did you mean `checkout.session.completed`?"),
            "{err}"
        );
        let err = build("invoice.paid", None, 1, NOW).unwrap_err();
        assert!(err.to_string().contains("--file"), "{err}");
        assert!(matches!(
            build("checkout.*", None, 1, NOW),
            Err(SendError::NotAStripeType { .. })
        ));
        assert!(matches!(
            build(BUILDS[0], None, 5000, NOW),
            Err(SendError::TooManyItems(5000))
        ));
    }

    #[test]
    fn the_first_secret_signs() {
        let env = Env::from_map([("STRIPE_WEBHOOK_SECRET", " whsec_a , whsec_b")]);
        assert_eq!(first_secret(&env).expect("a secret"), "whsec_a");
        let env = Env::from_map([("STRIPE_WEBHOOK_SECRET", "sk_test_123")]);
        assert!(matches!(first_secret(&env), Err(SendError::Secret(_))));
        assert!(matches!(
            first_secret(&Env::empty()),
            Err(SendError::NoSecret)
        ));
    }

    #[test]
    fn files_keep_their_bytes_or_get_a_fresh_id() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("event.json");
        let text = "{\"id\":\"evt_file\",\"object\":\"event\",\"type\":\"invoice.paid\",\
                    \"created\":1,\"livemode\":false,\"data\":{\"object\":{}}}";
        std::fs::write(&path, text).expect("writes");
        assert_eq!(from_file(&path, false).expect("reads"), text.as_bytes());
        let fresh: Value =
            serde_json::from_slice(&from_file(&path, true).expect("reads")).expect("JSON");
        assert_ne!(fresh["id"], "evt_file");
        assert_eq!(fresh["type"], "invoice.paid");
        std::fs::write(&path, "{}").expect("writes");
        assert!(matches!(
            from_file(&path, true),
            Err(SendError::NotAnEvent { .. })
        ));
    }
}
