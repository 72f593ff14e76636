//! `stdout`: one compact JSON record per line on standard output.
//!
//! This sink is the only thing in the crate that writes to stdout (logs go to
//! stderr), so stdout carries nothing but records. Each line goes out as one
//! write under the stdout lock, on the blocking pool: a slow reader on the
//! other end of a pipe must not stall the async executor. A write that never
//! ends (a reader that stopped reading) does not hold shutdown either: the
//! process leaves it behind after the drain deadline, its record pending.

use std::io::Write;

use serde::Deserialize;

use std::path::Path;
use std::sync::Arc;

use super::{BuildError, DeliverFuture, DeliveryError, Encoded, Sink, SinkType};

#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct StdoutConfig {}

impl SinkType for StdoutConfig {
    fn name(&self) -> &'static str {
        "stdout"
    }

    fn target(&self, _base_dir: &Path) -> String {
        String::new()
    }

    fn build(
        &self,
        _base_dir: &Path,
        _delivery: &super::Delivery,
    ) -> Result<Arc<dyn Sink>, BuildError> {
        Ok(Arc::new(StdoutSink::build(self)))
    }
}

#[derive(Debug)]
pub struct StdoutSink {}

impl StdoutSink {
    pub fn build(_config: &StdoutConfig) -> StdoutSink {
        StdoutSink {}
    }
}

impl Sink for StdoutSink {
    fn deliver<'a>(&'a self, record: &'a Encoded) -> DeliverFuture<'a> {
        let mut line = Vec::with_capacity(record.body.len() + 1);
        line.extend_from_slice(&record.body);
        line.push(b'\n');
        Box::pin(async move {
            let written = tokio::task::spawn_blocking(move || {
                let mut out = std::io::stdout().lock();
                out.write_all(&line)?;
                out.flush()
            })
            .await;
            match written {
                Ok(Ok(())) => Ok(()),
                // Rust ignores SIGPIPE, so a closed reader shows up here as
                // EPIPE. Retryable, so the record is kept for a later attempt
                // or replay rather than dropped.
                Ok(Err(e)) => Err(DeliveryError::retryable(format!(
                    "stdout sink: cannot write: {e}"
                ))),
                Err(e) => Err(DeliveryError::retryable(format!(
                    "stdout sink: write task did not finish: {e}"
                ))),
            }
        })
    }
}

#[cfg(test)]
#[path = "stdout_tests.rs"]
mod tests;
