//! Micro-benchmarks of the pure core, in time per operation: signature
//! verification of a realistic event, matching one event against a
//! 50-route table, reading a page of line items, building and encoding an
//! order record, and recording the metrics of one webhook answer and one
//! delivery.
//!
//! Run with `cargo bench --bench core`. Figures vary by machine; compare
//! runs on the same one.

use std::path::Path;
use std::time::Duration;

use divan::{Bencher, black_box};
use serde_json::Value;

use stripe_router::config::Config;
use stripe_router::config::env::Env;
use stripe_router::event::Event;
use stripe_router::ingest::verify::{self, Secrets};
use stripe_router::metrics::{Answer, Delivery, Metrics};
use stripe_router::routing::rules::When;
use stripe_router::routing::snapshot;
use stripe_router::routing::{line_items, record};

mod support;

use support::{NOW, encoded_order, event_body, line_items_page, three_items};

const SECRET: &str = "whsec_benchmarkbenchmarkbenchmark00";

fn main() {
    divan::main();
}

#[divan::bench]
fn verify_signature(bencher: Bencher) {
    let body = event_body();
    let header = verify::sign(&body, SECRET, NOW);
    let secrets = Secrets::parse(SECRET).expect("a webhook secret");
    let tolerance = Duration::from_secs(300);
    bencher.bench(|| {
        verify::verify(
            black_box(&body),
            black_box(&header),
            &secrets,
            NOW,
            tolerance,
        )
    });
}

/// The request path's parse (id and type only) and the full parse routing does.
#[divan::bench]
fn parse_event_head(bencher: Bencher) {
    let body = event_body();
    bencher.bench(|| Event::head(black_box(&body)));
}

#[divan::bench]
fn parse_event_full(bencher: Bencher) {
    let body = event_body();
    bencher.bench(|| Event::parse(black_box(&body)));
}

/// What the door parses of a paid order's event for an order route
/// (`Snapshot::keep`): the record's session fields and the route's own.
#[divan::bench]
fn parse_event_for_an_order_route(bencher: Bencher) {
    let body = event_body();
    let mut keep = Event::keep();
    record::keep_order(&mut keep);
    keep.path("data.object.payment_status");
    bencher.bench(|| Event::parse_keeping(black_box(&body), &keep));
}

/// 50 routes of the kinds a shop writes: type globs, lists, dotted paths and
/// operators; the benchmarked event matches a few of them.
fn fifty_routes() -> Vec<When> {
    let mut yaml = String::from("sinks:\n  out: { type: stdout }\nroutes:\n");
    for i in 0..50 {
        let when = match i % 5 {
            0 => format!(
                "{{ type: [checkout.session.completed, checkout.session.async_payment_succeeded], payment_status: paid, data.object.metadata.channel: shop-{i} }}"
            ),
            1 => format!(
                "{{ type: \"charge.*\", data.object.amount: {{ gte: {} }} }}",
                i * 100
            ),
            2 => format!(
                "{{ type: \"checkout.session.*\", data.object.currency: [eur, gbp, c{i}] }}"
            ),
            3 => format!(
                "{{ type: invoice.paid, livemode: true, data.object.customer: {{ exists: true }}, data.object.id: in_{i} }}"
            ),
            _ => format!(
                "{{ type: \"*\", data.object.amount_total: {{ gte: {}, lt: 100000 }}, data.object.customer_details.address.country: {{ not: C{i} }} }}",
                i * 10
            ),
        };
        yaml.push_str(&format!(
            "  - name: route-{i}\n    when: {when}\n    emit: event\n    to: [out]\n"
        ));
    }
    let config =
        Config::parse(&yaml, Path::new("routes.yaml"), &Env::empty()).expect("a valid config");
    snapshot::compile(&config, false).expect("routes compile")
}

#[divan::bench]
fn match_50_routes(bencher: Bencher) {
    let routes = fifty_routes();
    let event: Value = serde_json::from_slice(&event_body()).expect("JSON");
    bencher.bench(|| {
        routes
            .iter()
            .filter(|when| when.matches(black_box(&event)))
            .count()
    });
}

#[divan::bench]
fn order_record_3_items(bencher: Bencher) {
    let event = Event::parse(&event_body()).expect("an event");
    let items = three_items();
    bencher.bench(|| {
        let order = record::order(
            black_box(&event),
            "paid-orders",
            items.clone(),
            "2026-11-29T01:30:00Z",
        )
        .expect("an order");
        order.encode()
    });
}

/// What the door records per request: a counter and a histogram, through
/// handles resolved when the router starts. Must stay well under 1 µs.
#[divan::bench(threads = [1, 2], sample_count = 200, sample_size = 1000)]
fn metrics_record_answer(bencher: Bencher) {
    let metrics = Metrics::new();
    bencher.bench(|| {
        metrics.answered(
            black_box(Answer::Accepted),
            black_box(Duration::from_micros(850)),
        );
    });
}

/// What a sink worker records per delivered attempt: a counter and a
/// histogram looked up by sink name.
#[divan::bench(sample_count = 200, sample_size = 1000)]
fn metrics_record_delivery(bencher: Bencher) {
    let metrics = Metrics::new();
    bencher.bench(|| {
        metrics.delivery(
            black_box("shipping"),
            Delivery::Delivered,
            Some(black_box(Duration::from_millis(12))),
        );
    });
}

/// The Slack recipe's body template (tests/recipes/slack.yaml) rendered
/// from an order record with three line items: the per-record cost of a
/// templated sink (the record's JSON parsed, then rendered).
#[divan::bench]
fn render_slack_template(bencher: Bencher) {
    use stripe_router::sinks::SinkKind;
    use stripe_router::sinks::template::Template;

    let recipe = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/recipes/slack.yaml");
    let text = std::fs::read_to_string(&recipe).expect("the Slack recipe");
    let env = Env::from_map(vec![(
        "SLACK_WEBHOOK_URL".to_owned(),
        "https://hooks.slack.com/services/T0/B0/x".to_owned(),
    )]);
    let config = Config::parse(&text, &recipe, &env).expect("the recipe parses");
    let SinkKind::Http(http) = &config.sinks["slack"].kind else {
        panic!("the Slack sink is http")
    };
    let template = Template::compile(http.body.as_deref().expect("a body")).expect("compiles");

    let order = encoded_order();
    template.render(&order.body).expect("the order renders");
    bencher.bench(|| template.render(black_box(&order.body)));
}

/// The share of [`render_slack_template`] that turns the record's JSON
/// into the template's values (the rest is the rendering).
#[divan::bench]
fn record_into_template_values(bencher: Bencher) {
    let order = encoded_order();
    bencher.bench(|| stripe_router::sinks::template::record_values(black_box(&order.body)));
}

/// Reading a page of line items as the router does, per page.
#[divan::bench(args = [3, 100])]
fn read_line_items_page(bencher: Bencher, n: i64) {
    let body = line_items_page(n);
    bencher.bench(|| line_items::read_page(black_box(&body), usize::MAX));
}
