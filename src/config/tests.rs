//! Tests of the config types: every option, defaults, the shipped file, paths and load.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use super::test_support::{VALID_TAIL, parse};
use super::*;
use crate::sinks::{
    Common, HttpConfig, JsonlConfig, RetryConfig, SinkConfig, SinkKind, StdoutConfig,
};

#[test]
fn every_option_parses() {
    let config = parse(
        r#"
server:
  listen: 0.0.0.0:${PORT}
  path: /hooks/stripe
  tolerance: 5m
  max_body: 512KiB
  shutdown_timeout: 30s
  max_connections: 200
  read_timeout: 5s
  body_buffer: 16MiB
  admin_listen: 127.0.0.1:0
stripe:
  api_version: 2025-03-31.basil
  timeout: 20s
  max_attempts: 4
  max_pages: 10
  max_line_items: 500
  max_response: 4MiB
store:
  path: /var/lib/stripe-router/journal.db
  retention: 7d
  fsync: false
  wal_limit: 16MiB
sinks:
  orders: { type: jsonl, path: sinks/orders.jsonl, concurrency: 2, mode: "0640" }
  shipping:
    type: http
    url: http://127.0.0.1:4000/orders
    headers:
      Authorization: "Bearer ${SHIPPING_TOKEN}"
      X-Shop: "5"
    signing_secret: ${SIGNING}
    timeout: 10s
    retry: { initial: 500ms, max: 5m, max_age: 24h }
    concurrency: 32
  console: { type: stdout, retry: { max_age: 1h } }
routes:
  - name: paid-orders
    when:
      type: [checkout.session.completed, checkout.session.async_payment_succeeded]
      payment_status: paid
      livemode: true
      data.object.currency: eur
      data.object.amount_total: { gte: 1000, lt: 100000 }
      data.object.metadata.channel: { exists: true }
      data.object.customer_details.address.country: { not: [US, CA] }
    emit: order
    to: [orders, shipping]
  - name: everything
    when: { type: "checkout.session.*" }
    emit: event
    to: console
"#,
    );
    let expected = Config {
        server: ServerConfig {
            listen: "0.0.0.0:8080".parse().expect("address"),
            path: "/hooks/stripe".to_owned(),
            tolerance: Duration::from_secs(300),
            max_body: 512 * 1024,
            shutdown_timeout: Duration::from_secs(30),
            max_connections: 200,
            read_timeout: Duration::from_secs(5),
            body_buffer: 16 * 1024 * 1024,
            admin_listen: AdminListen::On("127.0.0.1:0".parse().expect("address")),
        },
        stripe: StripeConfig {
            api_version: Some("2025-03-31.basil".to_owned()),
            timeout: Some(Duration::from_secs(20)),
            max_attempts: Some(4),
            max_pages: 10,
            max_line_items: 500,
            max_response: 4 * 1024 * 1024,
        },
        sinks: BTreeMap::from([
            (
                "orders".to_owned(),
                SinkConfig {
                    common: Common {
                        retry: RetryConfig::default(),
                        concurrency: Some(2),
                    },
                    kind: SinkKind::Jsonl(JsonlConfig {
                        path: PathBuf::from("sinks/orders.jsonl"),
                        mode: crate::sinks::jsonl::FileMode::parse("0640").ok(),
                    }),
                },
            ),
            (
                "shipping".to_owned(),
                SinkConfig {
                    common: Common {
                        retry: RetryConfig {
                            initial: Duration::from_millis(500),
                            max: Duration::from_secs(300),
                            max_age: Duration::from_secs(24 * 3600),
                        },
                        concurrency: Some(32),
                    },
                    kind: SinkKind::Http(HttpConfig {
                        url: "http://127.0.0.1:4000/orders".parse().expect("url"),
                        headers: BTreeMap::from([
                            ("Authorization".to_owned(), "Bearer tok_123".to_owned()),
                            ("X-Shop".to_owned(), "5".to_owned()),
                        ]),
                        signing_secret: Some("whsec_c2VjcmV0".to_owned()),
                        timeout: Some(Duration::from_secs(10)),
                        body: None,
                        content_type: None,
                        method: crate::sinks::http::Method::Post,
                    }),
                },
            ),
            (
                "console".to_owned(),
                SinkConfig {
                    common: Common {
                        retry: RetryConfig {
                            max_age: Duration::from_secs(3600),
                            ..RetryConfig::default()
                        },
                        concurrency: None,
                    },
                    kind: SinkKind::Stdout(StdoutConfig {}),
                },
            ),
        ]),
        routes: vec![
            RouteConfig {
                name: "paid-orders".to_owned(),
                place: "routes.yaml:38:5".to_owned(),
                when: vec![
                    (
                        "type".to_owned(),
                        json!([
                            "checkout.session.completed",
                            "checkout.session.async_payment_succeeded"
                        ]),
                    ),
                    ("payment_status".to_owned(), json!("paid")),
                    ("livemode".to_owned(), json!(true)),
                    ("data.object.currency".to_owned(), json!("eur")),
                    (
                        "data.object.amount_total".to_owned(),
                        json!({"gte": 1000, "lt": 100000}),
                    ),
                    (
                        "data.object.metadata.channel".to_owned(),
                        json!({"exists": true}),
                    ),
                    (
                        "data.object.customer_details.address.country".to_owned(),
                        json!({"not": ["US", "CA"]}),
                    ),
                ],
                when_places: vec![
                    listing(place(40, 7, &[]), 40, &[14, 42]),
                    place(41, 7, &[]),
                    place(42, 7, &[]),
                    place(43, 7, &[]),
                    place(44, 7, &[("gte", 35), ("lt", 46)]),
                    place(45, 7, &[("exists", 39)]),
                    place(46, 7, &[("not", 55)]),
                ],
                emit: Emit::Order,
                emit_place: "routes.yaml:47:11".to_owned(),
                to: vec!["orders".to_owned(), "shipping".to_owned()],
            },
            RouteConfig {
                name: "everything".to_owned(),
                place: "routes.yaml:49:5".to_owned(),
                when: vec![("type".to_owned(), json!("checkout.session.*"))],
                when_places: vec![place(50, 13, &[])],
                emit: Emit::Event,
                emit_place: "routes.yaml:51:11".to_owned(),
                to: vec!["console".to_owned()],
            },
        ],
        store: StoreConfig {
            path: PathBuf::from("/var/lib/stripe-router/journal.db"),
            retention: Duration::from_secs(7 * 24 * 3600),
            fsync: false,
            wal_limit: 16 * 1024 * 1024,
            ..StoreConfig::default()
        },
        file: PathBuf::from("routes.yaml"),
        base_dir: PathBuf::from("."),
    };
    assert_eq!(config, expected);
    // `when` keeps the order written, not alphabetical order.
    assert_eq!(config.routes[0].when[0].0, "type");
}

/// Where a condition is written: its key at `line:column`, its operators'
/// keys on the same line.
fn place(line: u32, column: u32, operators: &[(&str, u32)]) -> ConditionPlace {
    ConditionPlace {
        key: format!("routes.yaml:{line}:{column}"),
        operators: operators
            .iter()
            .map(|(op, at)| ((*op).to_owned(), format!("routes.yaml:{line}:{at}")))
            .collect(),
        items: Vec::new(),
    }
}

/// `place` with the items of its list value at `columns` of its line.
fn listing(place: ConditionPlace, line: u32, columns: &[u32]) -> ConditionPlace {
    ConditionPlace {
        items: columns
            .iter()
            .map(|at| format!("routes.yaml:{line}:{at}"))
            .collect(),
        ..place
    }
}

#[test]
fn defaults_apply_when_sections_are_left_out() {
    let config = parse(VALID_TAIL);
    assert_eq!(config.server, ServerConfig::default());
    assert_eq!(config.server.listen.to_string(), "127.0.0.1:3000");
    assert_eq!(config.server.path, "/api/webhook");
    assert_eq!(config.server.max_body, 2 * 1024 * 1024);
    assert_eq!(config.stripe, StripeConfig::default());
    let config = parse(&format!("server:\nstripe:\n{VALID_TAIL}"));
    assert_eq!(config.server, ServerConfig::default());
}

#[test]
fn the_repository_default_parses() {
    let config = Config::parse(
        include_str!("../../routes.yaml"),
        Path::new("routes.yaml"),
        &Env::empty(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        config.sinks.keys().collect::<Vec<_>>(),
        ["console", "failed", "orders"]
    );
    assert_eq!(
        config.sinks["orders"],
        SinkConfig {
            common: Common::default(),
            kind: SinkKind::Jsonl(JsonlConfig {
                path: PathBuf::from("sinks/orders.jsonl"),
                ..JsonlConfig::default()
            }),
        }
    );
    let routes: Vec<_> = config
        .routes
        .iter()
        .map(|r| (r.name.as_str(), r.emit, r.to.clone()))
        .collect();
    assert_eq!(
        routes,
        [
            (
                "paid-orders",
                Emit::Order,
                vec!["orders".to_owned(), "console".to_owned()]
            ),
            ("failed-payments", Emit::Order, vec!["failed".to_owned()]),
        ]
    );
    assert_eq!(
        config.routes[0].when[1],
        ("payment_status".to_owned(), json!("paid"))
    );
}

#[test]
fn base_dir_is_the_config_folder_and_places_name_the_file_as_given() {
    let at = |file: &str| {
        Config::parse(VALID_TAIL, Path::new(file), &Env::empty())
            .expect("valid")
            .base_dir
    };
    assert_eq!(at("routes.yaml"), PathBuf::from("."));
    assert_eq!(at("x/y.yaml"), PathBuf::from("x"));
    assert_eq!(
        at("/etc/stripe-router/routes.yaml"),
        PathBuf::from("/etc/stripe-router")
    );

    let error = Config::parse(
        "sinks: 5\nroutes: []\n",
        Path::new("x/y.yaml"),
        &Env::empty(),
    )
    .expect_err("sinks must be a map");
    assert_eq!(error.problems[0].place, "x/y.yaml:1:8");
}

#[test]
fn load_reads_the_file_and_reports_a_missing_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("routes.yaml");
    std::fs::write(&path, VALID_TAIL).expect("write");
    let config = Config::load(&path, &Env::empty()).expect("valid");
    assert_eq!(config.base_dir, dir.path());

    let missing = dir.path().join("nope.yaml");
    let error = Config::load(&missing, &Env::empty()).expect_err("missing");
    assert_eq!(error.problems[0].place, missing.display().to_string());
    assert!(error.problems[0].message.contains("--config"), "{error}");
}
