//! `GET /metrics` on the admin listener: the classic Prometheus text format
//! (0.0.4) to a plain GET, OpenMetrics only when the `Accept` header asks
//! for `application/openmetrics-text`. Classic first, because that is what
//! every scraper and `promtool check metrics` read without surprises.
//!
//! The queue gauges are read from the journal at scrape time (one read
//! transaction of indexed counts, [`Store::depths`]), so they are true
//! whatever wrote the rows (this router, a CLI `replay`, a previous run).

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{ACCEPT, CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response, StatusCode};
use prometheus_client::encoding::{prometheus_text, text};

use super::Metrics;
use super::families::{Families, Sink};
use crate::http_serve::{message, only_get};
use crate::store::{Depths, Store};

/// The OpenMetrics content type.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Which text format to answer in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text 0.0.4.
    Classic,
    OpenMetrics,
}

impl Format {
    /// OpenMetrics when the `Accept` header names it, else classic.
    pub fn from_accept(accept: Option<&HeaderValue>) -> Format {
        let asks = accept
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("application/openmetrics-text"));
        if asks {
            Format::OpenMetrics
        } else {
            Format::Classic
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Classic => prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => OPENMETRICS,
        }
    }
}

/// Answers `GET /metrics`.
pub async fn answer<B>(
    metrics: &Metrics,
    store: &dyn Store,
    request: &Request<B>,
) -> Response<Full<Bytes>> {
    if let Some(refused) = only_get(request.method()) {
        return refused;
    }
    let format = Format::from_accept(request.headers().get(ACCEPT));
    let depths = match store.depths().await {
        Ok(depths) => Some(depths),
        Err(e) => {
            // The rest is still worth scraping; the gauges keep their last
            // values and the journal's own health says what is wrong.
            tracing::warn!(error = %e, "cannot read the queue depths for /metrics");
            None
        }
    };
    match metrics.render(depths.as_ref(), format) {
        Ok(text) => {
            let mut response = Response::new(Full::new(Bytes::from(text)));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(format.content_type()),
            );
            response
        }
        Err(_) => message(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the metrics could not be encoded",
        ),
    }
}

impl Metrics {
    /// The exposition text, with the queue gauges set from `depths`.
    pub fn render(
        &self,
        depths: Option<&Depths>,
        format: Format,
    ) -> Result<String, std::fmt::Error> {
        let f = &self.families;
        // Scrapes one at a time: setting the gauges and encoding them is
        // one step, so two scrapes never interleave a clear and a set.
        let _one = self.scraping.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(depths) = depths {
            set_depths(f, depths, &self.sinks());
        }
        let mut text = String::with_capacity(8 * 1024);
        match format {
            Format::Classic => prometheus_text::encode(&mut text, &f.registry)?,
            Format::OpenMetrics => text::encode(&mut text, &f.registry)?,
        }
        Ok(text)
    }
}

/// Sets the queue gauges to what the journal holds: one series per sink of
/// the config (zero when nothing waits), and one per other sink with rows,
/// so a sink that left the config shows while rows wait for it, and its
/// series goes once they are gone.
fn set_depths(f: &Families, depths: &Depths, configured: &[String]) {
    f.queue_depth.clear();
    f.dead_letters.clear();
    for sink in configured {
        let label = Sink { sink: sink.clone() };
        f.queue_depth.get_or_create(&label).set(0);
        f.dead_letters.get_or_create(&label).set(0);
    }
    for (sink, queue) in &depths.sinks {
        let label = Sink { sink: sink.clone() };
        f.queue_depth
            .get_or_create(&label)
            .set(gauge(queue.pending));
        f.dead_letters.get_or_create(&label).set(gauge(queue.dead));
    }
    f.events_pending.set(gauge(depths.events_pending));
    f.events_dead.set(gauge(depths.events_dead));
    f.routes_dead.set(gauge(depths.routes_dead));
}

fn gauge(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
