//! `stdout`: one compact JSON record per line on standard output.

use serde::Deserialize;

use super::{DeliverFuture, Encoded, Sink};

#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct StdoutConfig {}

#[derive(Debug)]
pub struct StdoutSink {}

impl StdoutSink {
    pub fn build(config: &StdoutConfig) -> StdoutSink {
        let _ = config;
        StdoutSink {}
    }
}

impl Sink for StdoutSink {
    fn deliver<'a>(&'a self, record: &'a Encoded) -> DeliverFuture<'a> {
        let _ = record;
        unimplemented!("sinks helper")
    }
}
