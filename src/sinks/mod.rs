//! Sinks: where records go. Each plug-in is one module with a config struct
//! (`*Config`, deserialized from `routes.yaml`) and a runtime type that
//! implements [`Sink`]. Adding a sink type is one module plus one variant of
//! [`SinkConfig`].

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;

pub mod http;
pub mod jsonl;
pub mod stdout;

pub use http::{HttpConfig, HttpSink};
pub use jsonl::{JsonlConfig, JsonlSink};
pub use stdout::{StdoutConfig, StdoutSink};

/// One sink instance's settings, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SinkConfig {
    Jsonl(JsonlConfig),
    Http(HttpConfig),
    Stdout(StdoutConfig),
}

impl SinkConfig {
    /// How this sink's deliveries are scheduled.
    pub fn delivery(&self) -> Delivery {
        let (retry, concurrency) = match self {
            SinkConfig::Jsonl(c) => (c.retry, c.concurrency),
            SinkConfig::Http(c) => (c.retry, c.concurrency),
            SinkConfig::Stdout(c) => (c.retry, c.concurrency),
        };
        Delivery {
            retry,
            concurrency: concurrency.unwrap_or(DEFAULT_CONCURRENCY),
        }
    }

    /// Builds the runtime sink: opens files, creates clients. `base_dir` is
    /// the config file's folder, against which relative paths resolve.
    pub fn build(&self, base_dir: &Path) -> Result<Arc<dyn Sink>, BuildError> {
        Ok(match self {
            SinkConfig::Jsonl(c) => Arc::new(JsonlSink::build(c, base_dir)?),
            SinkConfig::Http(c) => Arc::new(HttpSink::build(c)?),
            SinkConfig::Stdout(c) => Arc::new(StdoutSink::build(c)),
        })
    }
}

/// Deliveries in flight per sink when `concurrency` is not set.
pub const DEFAULT_CONCURRENCY: usize = 16;

/// How a sink's deliveries are scheduled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Delivery {
    pub retry: RetryConfig,
    /// Deliveries in flight at once.
    pub concurrency: usize,
}

/// `retry: { initial, max, max_age }` of a sink: exponential backoff with
/// jitter from `initial` up to `max` between attempts; a delivery still
/// failing `max_age` after its record was built becomes a dead letter.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    #[serde(default = "default_initial", with = "crate::config::duration")]
    pub initial: Duration,
    #[serde(default = "default_max", with = "crate::config::duration")]
    pub max: Duration,
    #[serde(default = "default_max_age", with = "crate::config::duration")]
    pub max_age: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            initial: default_initial(),
            max: default_max(),
            max_age: default_max_age(),
        }
    }
}

fn default_initial() -> Duration {
    Duration::from_secs(1)
}
fn default_max() -> Duration {
    Duration::from_secs(600)
}
/// Stripe's own retry window.
fn default_max_age() -> Duration {
    Duration::from_secs(72 * 3600)
}

/// A record serialized once, ready for any sink: the same bytes on every
/// attempt and replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// The record's stable id, `<event id>:<route name>`.
    pub id: String,
    /// Compact JSON, no trailing newline.
    pub body: Bytes,
}

pub type DeliverFuture<'a> = Pin<Box<dyn Future<Output = Result<(), DeliveryError>> + Send + 'a>>;

/// A destination for records.
pub trait Sink: Send + Sync + std::fmt::Debug {
    /// Delivers one record. Ok means the destination has it (written and
    /// flushed, or answered 2xx).
    fn deliver<'a>(&'a self, record: &'a Encoded) -> DeliverFuture<'a>;
}

/// Why a delivery failed, and whether trying again may help.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct DeliveryError {
    /// True for failures that may pass on a later attempt: connection
    /// errors, timeouts, 408/409/425/429/5xx, a full disk.
    pub retryable: bool,
    /// Names the destination and the cause; never holds secrets or
    /// configured header values.
    pub message: String,
}

impl DeliveryError {
    /// A failure that may pass on a later attempt.
    pub fn retryable(message: impl Into<String>) -> DeliveryError {
        DeliveryError {
            retryable: true,
            message: message.into(),
        }
    }

    /// A failure that will repeat on every attempt with the same record.
    pub fn permanent(message: impl Into<String>) -> DeliveryError {
        DeliveryError {
            retryable: false,
            message: message.into(),
        }
    }
}

/// A sink that could not be built from its config.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BuildError(pub String);
