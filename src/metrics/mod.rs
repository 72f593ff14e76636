//! The router's Prometheus metrics (SPEC §11): one [`Metrics`] instance per
//! router, built by `App::build` and handed to each stage that records
//! into it (the door, the journal writer, the router, the Stripe API
//! client, the sink workers, live reload). No process-wide registry: two
//! routers in one process (the tests, `demo`) never share a count.
//!
//! The families and their labels are in [`families`]; what `GET /metrics`
//! answers (classic text, or OpenMetrics when asked) is in [`expose`].
//! Labels are low-cardinality only: outcome and reason come from fixed
//! sets, route and sink from the config. A reload that removes a route or
//! a sink removes its series ([`Metrics::config`]), so renames never grow
//! the label sets without bound.

pub mod expose;
pub mod families;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;

pub use families::{Answer, ApiOutcome, Delivery, RecordOutcome};

use families::{Families, Sink, SinkOutcome};

/// Every family of one router, and the handles of the request path
/// resolved up front: recording a webhook answer touches no map and no
/// lock but the histogram's own.
#[derive(Debug)]
pub struct Metrics {
    families: Families,
    /// Indexed by [`Answer`]: its counter and its outcome's histogram.
    answers: Vec<(Counter, Histogram)>,
    /// The routes and sinks of the config in force.
    names: Mutex<Names>,
    /// Held while a scrape sets the queue gauges and encodes.
    scraping: Mutex<()>,
}

#[derive(Debug, Default)]
struct Names {
    routes: BTreeSet<String>,
    sinks: BTreeSet<String>,
}

impl Metrics {
    /// A fresh set of families, all at zero, with the build's version.
    pub fn new() -> Arc<Metrics> {
        let families = Families::register();
        let answers = Answer::ALL
            .iter()
            .map(|answer| {
                let (outcome, reason) = answer.labels();
                (
                    families
                        .requests
                        .get_or_create_owned(&families::Request { outcome, reason }),
                    families
                        .request_duration
                        .get_or_create_owned(&families::Outcome { outcome }),
                )
            })
            .collect();
        // Every series with a fixed label set exists from the start, at
        // zero, so that `rate()` and dashboards see it before its first
        // event.
        for outcome in ["routed", "unmatched"] {
            families
                .events
                .get_or_create_owned(&families::Outcome { outcome });
        }
        for outcome in ["applied", "unchanged", "refused"] {
            families
                .reloads
                .get_or_create_owned(&families::Outcome { outcome });
        }
        for outcome in [ApiOutcome::Ok, ApiOutcome::Retryable, ApiOutcome::Failed] {
            families
                .api_requests
                .get_or_create_owned(&families::Outcome {
                    outcome: outcome.label(),
                });
        }
        Arc::new(Metrics {
            families,
            answers,
            names: Mutex::default(),
            scraping: Mutex::new(()),
        })
    }

    /// One webhook request answered, and how long it took from its headers
    /// to its answer.
    pub fn answered(&self, answer: Answer, took: Duration) {
        let (count, duration) = &self.answers[answer as usize];
        count.inc();
        duration.observe(took.as_secs_f64());
    }

    /// One journal transaction: how many writes it carried, how long it
    /// took, whether it committed.
    pub fn committed(&self, writes: usize, took: Duration, ok: bool) {
        let f = &self.families;
        f.commit_duration.observe(took.as_secs_f64());
        f.commit_writes.observe(writes as f64);
        if !ok {
            f.commit_failures.inc();
        }
    }

    /// An event's routing pass ended: `routed` when any route took it,
    /// else no route matched.
    pub fn event_routed(&self, routed: bool) {
        let outcome = if routed { "routed" } else { "unmatched" };
        self.families
            .events
            .get_or_create(&families::Outcome { outcome })
            .inc();
    }

    /// A route's record was built and stored, or could not be built.
    pub fn record(&self, route: &str, outcome: RecordOutcome) {
        self.families
            .records
            .get_or_create(&families::RouteOutcome {
                route: route.to_owned(),
                outcome: outcome.label(),
            })
            .inc();
    }

    /// One request to the Stripe API, whatever its answer.
    pub fn stripe_api(&self, outcome: ApiOutcome, took: Duration) {
        let f = &self.families;
        f.api_requests
            .get_or_create(&families::Outcome {
                outcome: outcome.label(),
            })
            .inc();
        f.api_duration.observe(took.as_secs_f64());
    }

    /// One delivery attempt settled. `delivered_after`: for a delivery, the
    /// time since its event was accepted.
    pub fn delivery(&self, sink: &str, outcome: Delivery, delivered_after: Option<Duration>) {
        let f = &self.families;
        f.deliveries
            .get_or_create(&SinkOutcome {
                sink: sink.to_owned(),
                outcome: outcome.label(),
            })
            .inc();
        if let Some(after) = delivered_after {
            f.delivery_latency
                .get_or_create(&Sink {
                    sink: sink.to_owned(),
                })
                .observe(after.as_secs_f64());
        }
    }

    /// A reload ended: `applied`, `unchanged` or `refused`.
    pub fn reload(&self, outcome: &'static str) {
        self.families
            .reloads
            .get_or_create(&families::Outcome { outcome })
            .inc();
    }

    /// A config is in force (at start, then after each applied reload):
    /// its version, and its routes and sinks, whose series start at zero.
    /// The series of routes and
    /// sinks it no longer has are dropped: a renamed route starts again
    /// from zero under its new name, and the label sets stay bounded by
    /// the names of the config in force (plus the sinks that still have
    /// rows in the journal, for the queue gauges). A delivery still in
    /// flight for a removed sink may record it once more; the next reload
    /// or a restart drops it.
    pub fn config(&self, version: u64, routes: BTreeSet<String>, sinks: BTreeSet<String>) {
        let f = &self.families;
        f.config_version
            .set(i64::try_from(version).unwrap_or(i64::MAX));
        let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        for route in names.routes.difference(&routes) {
            for outcome in RecordOutcome::ALL {
                f.records.remove(&families::RouteOutcome {
                    route: route.clone(),
                    outcome: outcome.label(),
                });
            }
        }
        for sink in names.sinks.difference(&sinks) {
            for outcome in Delivery::ALL {
                f.deliveries.remove(&SinkOutcome {
                    sink: sink.clone(),
                    outcome: outcome.label(),
                });
            }
            f.delivery_latency.remove(&Sink { sink: sink.clone() });
        }
        // The new names' series exist at zero from now on.
        for route in &routes {
            for outcome in RecordOutcome::ALL {
                f.records.get_or_create_owned(&families::RouteOutcome {
                    route: route.clone(),
                    outcome: outcome.label(),
                });
            }
        }
        for sink in &sinks {
            for outcome in Delivery::ALL {
                f.deliveries.get_or_create_owned(&SinkOutcome {
                    sink: sink.clone(),
                    outcome: outcome.label(),
                });
            }
            f.delivery_latency
                .get_or_create_owned(&Sink { sink: sink.clone() });
        }
        *names = Names { routes, sinks };
    }

    /// The sinks of the config in force.
    fn sinks(&self) -> Vec<String> {
        let names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        names.sinks.iter().cloned().collect()
    }
}

impl crate::store::CommitObserver for Metrics {
    fn committed(&self, writes: usize, took: Duration, ok: bool) {
        Metrics::committed(self, writes, took, ok);
    }
}

#[cfg(test)]
#[path = "mod_tests.rs"]
mod tests;
