//! `GET /metrics` on the admin listener (SPEC §11): after a scripted story
//! through the real router, every family holds exactly what happened; the
//! text passes `promtool check metrics`; the webhook port never shows it;
//! the Grafana dashboard only asks for metrics that exist.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::events::{line_items, session_event};
use crate::harness::{TestApp, WAIT, now, pretty, spawn_app, spawn_in_process};

/// Orders to a file and to the recording consumer, retried fast.
const ROUTES: &str = r#"
sinks:
  orders: { type: jsonl, path: sinks/orders.jsonl }
  shipping:
    type: http
    url: "{consumer}"
    timeout: 2s
    retry: { initial: 50ms, max: 200ms }
routes:
  - name: paid-orders
    when: { type: checkout.session.completed, payment_status: paid }
    emit: order
    to: [orders, shipping]
"#;

/// One sample: its metric name and labels.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Series {
    name: String,
    labels: BTreeMap<String, String>,
}

/// The samples of an exposition text, and the families its `# TYPE` lines
/// declare (name → type).
#[derive(Debug)]
struct Exposition {
    samples: BTreeMap<Series, f64>,
    types: BTreeMap<String, String>,
}

impl Exposition {
    /// Parses the classic text format as the router writes it (label
    /// values without commas or escaped quotes).
    fn parse(text: &str) -> Exposition {
        let mut samples = BTreeMap::new();
        let mut types = BTreeMap::new();
        for line in text.lines() {
            if let Some(declared) = line.strip_prefix("# TYPE ") {
                let (name, kind) = declared.split_once(' ').expect("a TYPE line");
                types.insert(name.to_owned(), kind.to_owned());
                continue;
            }
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("a sample line");
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                value => value.parse().unwrap_or_else(|_| panic!("a number: {line}")),
            };
            let (name, labels) = match series.split_once('{') {
                None => (series, BTreeMap::new()),
                Some((name, rest)) => {
                    let inner = rest.strip_suffix('}').expect("labels end with }");
                    let labels = inner
                        .split(',')
                        .filter(|pair| !pair.is_empty())
                        .map(|pair| {
                            let (key, value) = pair.split_once('=').expect("key=value");
                            (key.to_owned(), value.trim_matches('"').to_owned())
                        })
                        .collect();
                    (name, labels)
                }
            };
            let series = Series {
                name: name.to_owned(),
                labels,
            };
            assert!(
                samples.insert(series.clone(), value).is_none(),
                "{series:?} twice"
            );
        }
        Exposition { samples, types }
    }

    /// The value of the sample `name` with exactly these labels.
    #[track_caller]
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let series = Series {
            name: name.to_owned(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        *self.samples.get(&series).unwrap_or_else(|| {
            panic!(
                "no sample {series:?}; samples of {name}: {:?}",
                self.samples
                    .keys()
                    .filter(|s| s.name == name)
                    .collect::<Vec<_>>()
            )
        })
    }

    /// The sum of `name` over every label set that includes `labels`.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|(s, _)| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, v)| v)
            .sum()
    }

    /// Every sample name a query may use: those with samples, and for each
    /// declared family the names its type gives (a histogram's `_bucket`,
    /// `_sum`, `_count`), series or not.
    fn names(&self) -> BTreeSet<String> {
        let mut names: BTreeSet<String> = self.samples.keys().map(|s| s.name.clone()).collect();
        for (family, kind) in &self.types {
            names.insert(family.clone());
            if kind == "histogram" {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{family}{suffix}"));
                }
            }
        }
        names
    }
}

async fn scrape(app: &TestApp) -> String {
    let response = app
        .http
        .get(format!("http://{}/metrics", app.admin))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    response.text().await.unwrap()
}

/// Scrapes until `accept` holds for the parsed text.
async fn wait_metrics(app: &TestApp, accept: impl Fn(&Exposition) -> bool) -> Exposition {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let metrics = Exposition::parse(&scrape(app).await);
        if accept(&metrics) {
            return metrics;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the metrics never got there: {:#?}",
            metrics.samples
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Sends paid order `n`: its session has line items at the stand-in.
async fn send_order(app: &TestApp, n: usize) -> crate::harness::Answer {
    let session = format!("cs_test_metrics_{n}");
    app.stripe.add_session(&session, line_items());
    app.send(&session_event(
        &format!("evt_metrics_{n}"),
        "checkout.session.completed",
        &session,
        "paid",
    ))
    .await
}

/// Runs `promtool check metrics` on `text`. Without promtool the check is
/// skipped, except in CI (`CI` set), where it is a failure: `.ci/run`
/// installs it.
fn promtool_check(text: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!("promtool is not installed ({e}); skipping its check outside CI");
            return;
        }
        Err(e) => panic!("promtool is required in CI (Debian's `prometheus` package): {e}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics refused the text:\n{}{}\n{text}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn after_a_scripted_story_every_family_holds_exactly_what_happened() {
    let app = spawn_app(ROUTES).await;

    // An order whose first Stripe API request fails once with a 500, and
    // whose first delivery to the consumer is answered 500, then 200.
    app.stripe.fail_next(1, 500);
    app.consumer.script(&[500]);
    assert_eq!(send_order(&app, 1).await.status, 200);
    // The same event again: a duplicate.
    let duplicate = send_order(&app, 1).await;
    assert_eq!(duplicate.status, 200);
    assert_eq!(duplicate.body["duplicate"], true);
    // A forged signature.
    let forged = app
        .post(
            pretty(&json!({"id": "evt_forged", "type": "checkout.session.completed"})),
            Some(format!("t={},v1={}", now(), "00".repeat(32))),
        )
        .await;
    assert_eq!(forged.status, 400);
    // An event no route wants.
    let unmatched = app
        .send(&json!({
            "id": "evt_metrics_unmatched",
            "object": "event",
            "type": "customer.created",
            "created": now(),
            "livemode": false,
            "data": { "object": { "id": "cus_1", "object": "customer" } },
        }))
        .await;
    assert_eq!(unmatched.status, 200, "{:?}", unmatched.body);
    app.consumer.wait_for(1, WAIT).await;
    app.wait_lines("sinks/orders.jsonl", 1).await;

    // A second order, which the consumer refuses with a 400: a dead letter.
    app.consumer.script(&[400]);
    assert_eq!(send_order(&app, 2).await.status, 200);
    app.wait_lines("sinks/orders.jsonl", 2).await;
    wait_metrics(&app, |m| {
        m.sum("stripe_router_dead_letters", &[("sink", "shipping")]) == 1.0
    })
    .await;

    // A reload refused: the file is not YAML.
    write_atomically(&app.path("routes.yaml"), "sinks: [unclosed\n");
    let m = wait_metrics(&app, |m| {
        m.sum("stripe_router_reloads_total", &[("outcome", "refused")]) >= 1.0
    })
    .await;

    let requests = |outcome, reason| {
        m.value(
            "stripe_router_requests_total",
            &[("outcome", outcome), ("reason", reason)],
        )
    };
    assert_eq!(
        requests("accepted", "none"),
        3.0,
        "two orders and the unmatched"
    );
    assert_eq!(requests("duplicate", "none"), 1.0);
    assert_eq!(requests("refused", "bad_signature"), 1.0);
    for (outcome, reason) in [
        ("refused", "no_signature"),
        ("refused", "too_large"),
        ("refused", "timeout"),
        ("refused", "unreadable"),
        ("refused", "not_an_event"),
        ("shed", "body_buffer"),
        ("failed", "journal"),
    ] {
        assert_eq!(requests(outcome, reason), 0.0, "{outcome} {reason}");
    }
    let answered = |outcome| {
        m.value(
            "stripe_router_request_duration_seconds_count",
            &[("outcome", outcome)],
        )
    };
    assert_eq!(answered("accepted"), 3.0);
    assert_eq!(answered("duplicate"), 1.0);
    assert_eq!(answered("refused"), 1.0);
    assert_eq!(
        m.value(
            "stripe_router_request_duration_seconds_bucket",
            &[("outcome", "accepted"), ("le", "+Inf")]
        ),
        3.0
    );

    let events = |outcome| m.value("stripe_router_events_total", &[("outcome", outcome)]);
    assert_eq!(events("routed"), 2.0);
    assert_eq!(events("unmatched"), 1.0);
    assert_eq!(
        m.value(
            "stripe_router_records_total",
            &[("route", "paid-orders"), ("outcome", "built")]
        ),
        2.0
    );
    assert_eq!(
        m.sum("stripe_router_records_total", &[]),
        2.0,
        "no failed route"
    );

    let api = |outcome| {
        m.value(
            "stripe_router_stripe_api_requests_total",
            &[("outcome", outcome)],
        )
    };
    assert_eq!(api("retryable"), 1.0, "the 500");
    let stand_in = app.stripe.requests() as f64;
    assert!(
        stand_in >= 3.0,
        "a retry and one request per order at least"
    );
    assert_eq!(
        api("retryable") + api("ok"),
        stand_in,
        "every request the stand-in answered"
    );
    assert_eq!(
        m.value(
            "stripe_router_stripe_api_request_duration_seconds_count",
            &[]
        ),
        stand_in
    );

    let attempts = |sink, outcome| {
        m.value(
            "stripe_router_delivery_attempts_total",
            &[("sink", sink), ("outcome", outcome)],
        )
    };
    assert_eq!(attempts("orders", "delivered"), 2.0);
    assert_eq!(attempts("shipping", "retry"), 1.0, "the 500");
    assert_eq!(attempts("shipping", "delivered"), 1.0);
    assert_eq!(attempts("shipping", "dead"), 1.0, "the 400");
    assert_eq!(m.sum("stripe_router_delivery_attempts_total", &[]), 5.0);
    let delivered = |sink| {
        m.value(
            "stripe_router_delivered_after_seconds_count",
            &[("sink", sink)],
        )
    };
    assert_eq!(delivered("orders"), 2.0);
    assert_eq!(delivered("shipping"), 1.0);

    for sink in ["orders", "shipping"] {
        assert_eq!(m.value("stripe_router_queue_depth", &[("sink", sink)]), 0.0);
    }
    assert_eq!(
        m.value("stripe_router_dead_letters", &[("sink", "orders")]),
        0.0
    );
    assert_eq!(
        m.value("stripe_router_dead_letters", &[("sink", "shipping")]),
        1.0
    );
    assert_eq!(m.value("stripe_router_events_pending", &[]), 0.0);
    assert_eq!(m.value("stripe_router_route_dead_letters", &[]), 0.0);
    assert_eq!(m.value("stripe_router_event_dead_letters", &[]), 0.0);

    assert_eq!(
        m.value("stripe_router_reloads_total", &[("outcome", "refused")]),
        1.0
    );
    assert_eq!(m.sum("stripe_router_reloads_total", &[]), 1.0);
    assert_eq!(m.value("stripe_router_config_version", &[]), 1.0);
    assert_eq!(
        m.value(
            "stripe_router_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );

    // Each journaled event, routing pass and settled attempt is a write of
    // some commit; commits batch them, so only bounds hold exactly.
    let commits = m.value("stripe_router_journal_commit_duration_seconds_count", &[]);
    assert!(commits >= 1.0);
    assert_eq!(
        m.value("stripe_router_journal_commit_writes_count", &[]),
        commits
    );
    let writes = m.value("stripe_router_journal_commit_writes_sum", &[]);
    assert!(
        writes >= 4.0 + 2.0 + 5.0,
        "four journal writes, two routing passes, five settles: {writes}"
    );
    assert_eq!(
        m.value("stripe_router_journal_commit_failures_total", &[]),
        0.0
    );

    // The real output passes promtool.
    promtool_check(&scrape(&app).await);
}

#[tokio::test]
async fn openmetrics_only_when_asked_and_never_on_the_webhook_port() {
    let app = spawn_in_process(ROUTES).await;
    let response = app
        .http
        .get(format!("http://{}/metrics", app.admin))
        .header("accept", "application/openmetrics-text; version=1.0.0")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text"),
    );
    let text = response.text().await.unwrap();
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert!(
        text.contains("# TYPE stripe_router_requests counter"),
        "{text}"
    );

    let plain = scrape(&app).await;
    assert!(!plain.contains("# EOF"));
    promtool_check(&plain);

    let webhook = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(
        webhook.status(),
        404,
        "the webhook port never shows metrics"
    );
    let post = app
        .http
        .post(format!("http://{}/metrics", app.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 405);
}

#[tokio::test]
async fn the_grafana_dashboard_asks_only_for_metrics_that_exist() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("ops/grafana-dashboard.json");
    let dashboard: Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).expect("the dashboard is JSON");
    let mut expressions = Vec::new();
    collect_expressions(&dashboard, &mut expressions);
    assert!(expressions.len() >= 7, "a query per panel: {expressions:?}");

    let app = spawn_in_process(ROUTES).await;
    let exposed = Exposition::parse(&scrape(&app).await).names();
    let mut asked = BTreeSet::new();
    for expression in &expressions {
        let found = metric_names(expression);
        assert!(
            !found.is_empty(),
            "no stripe_router_ metric in {expression}"
        );
        asked.extend(found);
    }
    let missing: Vec<_> = asked.difference(&exposed).collect();
    assert!(
        missing.is_empty(),
        "the dashboard asks for {missing:?}, not in /metrics"
    );

    let scrape_config =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("ops/prometheus.yml"))
            .unwrap();
    assert!(scrape_config.contains("/metrics") || scrape_config.contains("127.0.0.1:9464"));
}

/// Every `expr` in the dashboard's panels.
fn collect_expressions(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr", Value::String(expr)) => out.push(expr.clone()),
                    _ => collect_expressions(value, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_expressions(v, out)),
        _ => {}
    }
}

/// The `stripe_router_*` metric names a PromQL expression reads.
fn metric_names(expression: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expression;
    while let Some(at) = rest.find("stripe_router_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

/// Writes `text` beside `path` and renames it into place: one change for
/// the watcher.
fn write_atomically(path: &Path, text: &str) {
    let partial = path.with_extension("partial");
    std::fs::write(&partial, text).unwrap();
    std::fs::rename(&partial, path).unwrap();
}
