//! Sinks: where records go. A sink type is one file here: its config struct
//! (`*Config`, its own keys and checks, deserialized from `routes.yaml`)
//! implementing [`SinkType`] (its line in `check` and its build step), and
//! a runtime type implementing [`Sink`]. [`SinkKind`] has one variant per
//! type and [`SinkKind::sink_type`] one match arm per type; the keys every
//! sink takes (`retry`, `concurrency`) are declared once, in [`Common`].
//!
//! Sinks import nothing of the crate but leaves: the config's units and the
//! URL redactor. The config imports the sinks, never the other way round.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;

pub use crate::retry::RetryConfig;

pub mod command;
pub mod http;
pub mod jsonl;
pub mod stdout;
pub mod template;

pub use command::{CommandConfig, CommandSink};
pub use http::{HttpConfig, HttpSink};
pub use jsonl::{JsonlConfig, JsonlSink};
pub use stdout::{StdoutConfig, StdoutSink};

/// One sink instance's settings: the keys every sink takes, and those of
/// its type, selected by `type`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SinkConfig {
    // Both flattened, so that every key is read from the same buffer and a
    // bad value is reported alike wherever it is declared; `common` first,
    // so that the type's own `deny_unknown_fields` sees only its keys.
    #[serde(flatten)]
    pub common: Common,
    #[serde(flatten)]
    pub kind: SinkKind,
}

/// The keys every sink type takes.
#[derive(Debug, Clone, Copy, PartialEq, Default, Deserialize)]
pub struct Common {
    /// Retry schedule for this sink's deliveries.
    #[serde(default)]
    pub retry: RetryConfig,
    /// Deliveries in flight at once ([`DEFAULT_CONCURRENCY`] when unset).
    #[serde(default)]
    pub concurrency: Option<usize>,
}

/// A sink type's own settings, tagged by `type`. Every variant wraps a
/// struct with `deny_unknown_fields`, even an empty one: a unit variant
/// would silently accept unknown keys (serde #2123).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SinkKind {
    Jsonl(JsonlConfig),
    Http(HttpConfig),
    Stdout(StdoutConfig),
    Command(CommandConfig),
}

impl SinkKind {
    /// The key a failed start is about: a jsonl sink fails on its file.
    pub fn start_key(&self, name: &str) -> String {
        match self {
            SinkKind::Jsonl(_) => format!("sinks.{name}.path"),
            _ => format!("sinks.{name}"),
        }
    }

    /// The type's config, through what every type provides.
    pub fn sink_type(&self) -> &dyn SinkType {
        match self {
            SinkKind::Jsonl(c) => c,
            SinkKind::Http(c) => c,
            SinkKind::Stdout(c) => c,
            SinkKind::Command(c) => c,
        }
    }
}

/// What each sink type's config provides beyond its keys.
pub trait SinkType {
    /// Its `type:` in `routes.yaml`.
    fn name(&self) -> &'static str;

    /// Where its records go, for `check`'s summary: a path, a URL through
    /// the redactor; never a secret. Empty when there is nothing to say.
    fn target(&self, base_dir: &Path) -> String;

    /// Builds the runtime sink: opens files, creates clients. `base_dir` is
    /// the config file's folder, against which relative paths resolve;
    /// `delivery` is how the sink's deliveries will be scheduled (a JSONL
    /// sink sizes its memory of written ids by the concurrency).
    fn build(&self, base_dir: &Path, delivery: &Delivery) -> Result<Arc<dyn Sink>, BuildError>;

    /// What deserializing a key cannot tell: a template's names and
    /// syntax, a program that must exist. Asked when the config loads
    /// (`check`, `serve`, reload: one path), so a config that `check`
    /// accepts builds; the build asks the same functions again.
    fn check(&self, _base_dir: &Path) -> Vec<KeyProblem> {
        Vec::new()
    }
}

/// A problem with one key's value, found by [`SinkType::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyProblem {
    /// The key as written in `routes.yaml` (`body`, `command`).
    pub key: &'static str,
    pub message: String,
    /// The 1-based line and column inside the value's text (a template's),
    /// when the problem has a place there.
    pub within: Option<(usize, usize)>,
}

impl KeyProblem {
    /// A problem with the value as a whole.
    pub fn of(key: &'static str, message: impl Into<String>) -> KeyProblem {
        KeyProblem {
            key,
            message: message.into(),
            within: None,
        }
    }

    /// A problem at `line`:`column` of the value's text (0 when unknown).
    pub fn in_text(
        key: &'static str,
        message: impl Into<String>,
        line: usize,
        column: usize,
    ) -> KeyProblem {
        KeyProblem {
            key,
            message: message.into(),
            within: (line > 0).then_some((line, column.max(1))),
        }
    }
}

impl SinkConfig {
    /// How this sink's deliveries are scheduled.
    pub fn delivery(&self) -> Delivery {
        Delivery {
            retry: self.common.retry,
            concurrency: self.common.concurrency.unwrap_or(DEFAULT_CONCURRENCY),
        }
    }

    /// Builds the runtime sink: opens files, creates clients. `base_dir` is
    /// the config file's folder, against which relative paths resolve.
    pub fn build(&self, base_dir: &Path) -> Result<Arc<dyn Sink>, BuildError> {
        self.kind.sink_type().build(base_dir, &self.delivery())
    }

    /// The sink as `check` shows it: its type, then where its records go
    /// (`jsonl   ./sinks/orders.jsonl`).
    pub fn summary(&self, base_dir: &Path) -> String {
        let sink = self.kind.sink_type();
        let target = sink.target(base_dir);
        if target.is_empty() {
            sink.name().to_owned()
        } else {
            format!("{:7} {target}", sink.name())
        }
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

/// `text` as an error message may show it: a consumer's answer or a
/// command's output can hold control characters (a NUL, which a
/// PostgreSQL journal refuses; terminal escapes, which `deadletters` would
/// print). Each one but newline and tab becomes U+FFFD.
pub(crate) fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                '\u{FFFD}'
            } else {
                c
            }
        })
        .collect()
}
