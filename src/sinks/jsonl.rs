//! `jsonl`: one compact JSON record per line, appended to a file.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{BuildError, DeliverFuture, Encoded, Sink};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonlConfig {
    pub path: PathBuf,
}

#[derive(Debug)]
pub struct JsonlSink {}

impl JsonlSink {
    pub fn build(config: &JsonlConfig, base_dir: &Path) -> Result<JsonlSink, BuildError> {
        let _ = (config, base_dir);
        unimplemented!("sinks helper")
    }
}

impl Sink for JsonlSink {
    fn deliver<'a>(&'a self, record: &'a Encoded) -> DeliverFuture<'a> {
        let _ = record;
        unimplemented!("sinks helper")
    }
}
