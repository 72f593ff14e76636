//! `http`: POSTs each record to a URL, signed per Standard Webhooks.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use super::{BuildError, DeliverFuture, Encoded, Sink};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    pub url: Url,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub signing_secret: Option<String>,
    #[serde(default, with = "crate::config::opt_duration")]
    pub timeout: Option<Duration>,
}

#[derive(Debug)]
pub struct HttpSink {}

impl HttpSink {
    pub fn build(config: &HttpConfig) -> Result<HttpSink, BuildError> {
        let _ = config;
        unimplemented!("sinks helper")
    }
}

impl Sink for HttpSink {
    fn deliver<'a>(&'a self, record: &'a Encoded) -> DeliverFuture<'a> {
        let _ = record;
        unimplemented!("sinks helper")
    }
}
