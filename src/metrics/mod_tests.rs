use std::collections::BTreeSet;
use std::time::Duration;

use hyper::header::HeaderValue;

use super::expose::Format;
use super::*;
use crate::store::{Depths, SinkQueue};

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

fn classic(metrics: &Metrics) -> String {
    metrics.render(None, Format::Classic).expect("encodes")
}

/// The value of the one sample line that starts with `series `.
#[track_caller]
fn sample(text: &str, series: &str) -> f64 {
    let values: Vec<f64> = text
        .lines()
        .filter_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().expect("a number"))
        .collect();
    assert_eq!(values.len(), 1, "one sample {series} in:\n{text}");
    values[0]
}

#[test]
fn an_answer_counts_once_with_its_outcome_and_reason_and_is_timed() {
    let metrics = Metrics::new();
    metrics.answered(Answer::Accepted, Duration::from_millis(3));
    metrics.answered(Answer::BadSignature, Duration::from_micros(200));
    metrics.answered(Answer::BadSignature, Duration::from_micros(300));
    let text = classic(&metrics);
    assert_eq!(
        sample(
            &text,
            r#"stripe_router_requests_total{outcome="accepted",reason="none"}"#
        ),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            r#"stripe_router_requests_total{outcome="refused",reason="bad_signature"}"#
        ),
        2.0
    );
    assert_eq!(
        sample(
            &text,
            r#"stripe_router_request_duration_seconds_count{outcome="refused"}"#
        ),
        2.0
    );
    assert_eq!(
        sample(
            &text,
            r#"stripe_router_request_duration_seconds_bucket{outcome="accepted",le="0.0025"}"#
        ),
        0.0
    );
    assert_eq!(
        sample(
            &text,
            r#"stripe_router_request_duration_seconds_bucket{outcome="accepted",le="0.005"}"#
        ),
        1.0
    );
    // Every answer is there from the start, at zero.
    assert_eq!(
        sample(
            &text,
            r#"stripe_router_requests_total{outcome="failed",reason="journal"}"#
        ),
        0.0
    );
}

#[test]
fn the_classic_format_has_help_and_type_for_every_family_and_no_eof() {
    let text = classic(&Metrics::new());
    assert!(
        text.contains("# TYPE stripe_router_requests_total counter\n"),
        "{text}"
    );
    assert!(
        text.contains("# HELP stripe_router_requests_total "),
        "{text}"
    );
    assert!(
        text.contains("# TYPE stripe_router_journal_commit_duration_seconds histogram\n"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "stripe_router_build_info{{version=\"{}\"}} 1\n",
            env!("CARGO_PKG_VERSION")
        )),
        "{text}"
    );
    assert!(!text.contains("# EOF"), "{text}");
}

#[test]
fn openmetrics_only_when_the_accept_header_asks_for_it() {
    let ask = |v: &'static str| Format::from_accept(Some(&HeaderValue::from_static(v)));
    assert_eq!(Format::from_accept(None), Format::Classic);
    assert_eq!(ask("text/plain"), Format::Classic);
    assert_eq!(ask("*/*"), Format::Classic);
    assert_eq!(
        ask("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"),
        Format::OpenMetrics
    );
    let text = Metrics::new()
        .render(None, Format::OpenMetrics)
        .expect("encodes");
    assert!(text.ends_with("# EOF\n"), "{text}");
}

#[test]
fn two_routers_never_share_a_count() {
    let (one, two) = (Metrics::new(), Metrics::new());
    one.event_routed(true);
    one.event_routed(true);
    two.event_routed(true);
    let series = r#"stripe_router_events_total{outcome="routed"}"#;
    assert_eq!(sample(&classic(&one), series), 2.0);
    assert_eq!(sample(&classic(&two), series), 1.0);
}

#[test]
fn a_reload_that_removes_a_route_or_sink_drops_its_series() {
    let metrics = Metrics::new();
    metrics.config(1, names(&["paid", "old"]), names(&["shipping", "legacy"]));
    metrics.record("paid", RecordOutcome::Built);
    metrics.record("old", RecordOutcome::Dead);
    metrics.delivery(
        "shipping",
        Delivery::Delivered,
        Some(Duration::from_secs(1)),
    );
    metrics.delivery("legacy", Delivery::Retry, None);
    metrics.config(2, names(&["paid", "new"]), names(&["shipping"]));
    let text = classic(&metrics);
    assert!(text.contains(r#"route="paid""#), "{text}");
    assert!(!text.contains(r#"route="old""#), "{text}");
    assert!(!text.contains(r#"sink="legacy""#), "{text}");
    assert_eq!(
        sample(
            &text,
            r#"stripe_router_delivery_attempts_total{sink="shipping",outcome="delivered"}"#
        ),
        1.0
    );
    assert_eq!(sample(&text, "stripe_router_config_version"), 2.0);
}

#[test]
fn queue_gauges_show_every_configured_sink_and_every_sink_with_rows() {
    let metrics = Metrics::new();
    metrics.config(1, names(&["paid"]), names(&["orders", "shipping"]));
    let mut depths = Depths {
        events_pending: 2,
        events_dead: 0,
        routes_dead: 1,
        ..Depths::default()
    };
    depths.sinks.insert(
        "shipping".into(),
        SinkQueue {
            pending: 3,
            dead: 1,
        },
    );
    depths.sinks.insert(
        "removed".into(),
        SinkQueue {
            pending: 0,
            dead: 4,
        },
    );
    let text = metrics
        .render(Some(&depths), Format::Classic)
        .expect("encodes");
    assert_eq!(
        sample(&text, r#"stripe_router_queue_depth{sink="orders"}"#),
        0.0
    );
    assert_eq!(
        sample(&text, r#"stripe_router_queue_depth{sink="shipping"}"#),
        3.0
    );
    assert_eq!(
        sample(&text, r#"stripe_router_dead_letters{sink="shipping"}"#),
        1.0
    );
    assert_eq!(
        sample(&text, r#"stripe_router_dead_letters{sink="removed"}"#),
        4.0
    );
    assert_eq!(sample(&text, "stripe_router_events_pending"), 2.0);
    assert_eq!(sample(&text, "stripe_router_route_dead_letters"), 1.0);

    // Once its rows are gone, the removed sink's series goes too.
    depths.sinks.remove("removed");
    let text = metrics
        .render(Some(&depths), Format::Classic)
        .expect("encodes");
    assert!(!text.contains(r#"sink="removed""#), "{text}");
}

#[test]
fn a_journal_commit_records_its_time_its_writes_and_a_failure() {
    let metrics = Metrics::new();
    metrics.committed(5, Duration::from_micros(800), true);
    metrics.committed(1, Duration::from_micros(100), false);
    let text = classic(&metrics);
    assert_eq!(
        sample(&text, "stripe_router_journal_commit_duration_seconds_count"),
        2.0
    );
    assert_eq!(
        sample(&text, "stripe_router_journal_commit_writes_sum"),
        6.0
    );
    assert_eq!(
        sample(&text, "stripe_router_journal_commit_failures_total"),
        1.0
    );
}

#[test]
fn every_answer_has_its_own_handles() {
    for (i, answer) in Answer::ALL.iter().enumerate() {
        assert_eq!(*answer as usize, i, "{answer:?} is at its index in ALL");
    }
    let labels: BTreeSet<_> = Answer::ALL.iter().map(|a| a.labels()).collect();
    assert_eq!(labels.len(), Answer::ALL.len(), "one label set per answer");
}
