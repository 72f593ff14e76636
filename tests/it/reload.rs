//! Live reload (SPEC §8): edits apply without a restart; a broken file
//! never replaces a working config.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::events::{line_items, session_event};
use crate::harness::{ROUTES, TestApp, WAIT, read_jsonl, spawn_app, spawn_in_process};

const RELOAD: Duration = Duration::from_secs(10);

/// Waits until `/healthz` shows config `version`.
async fn wait_version(app: &TestApp, version: u64) -> Value {
    let deadline = tokio::time::Instant::now() + RELOAD;
    loop {
        let health = app.health().await;
        if health["config"]["version"] == version {
            return health;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "config version {version} not applied: {health}\n{}",
            app.stderr.all().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits until `/healthz` shows a refused reload.
async fn wait_error(app: &TestApp) -> Value {
    let deadline = tokio::time::Instant::now() + RELOAD;
    loop {
        let health = app.health().await;
        if !health["config"]["last_reload_error"].is_null() {
            return health;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no reload error shown: {health}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn routes_file(app: &TestApp) -> std::path::PathBuf {
    app.path("routes.yaml")
}

fn consumer_routes(app: &TestApp, text: &str) -> String {
    text.replace("{consumer}", &app.consumer.url())
}

/// Sends one paid order through the current config and waits until
/// `orders.jsonl` holds `n` records; returns the last one's id.
async fn send_paid(app: &TestApp, n: u32) -> String {
    let session = format!("cs_test_reload_{n}");
    app.stripe.add_session(&session, line_items());
    let answer = app
        .send(&session_event(
            &format!("evt_reload_{n}"),
            "checkout.session.completed",
            &session,
            "paid",
        ))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let orders = app.wait_lines("sinks/orders.jsonl", n as usize).await;
    orders[n as usize - 1]["id"].as_str().unwrap().to_owned()
}

fn write_atomically(path: &Path, text: &str) {
    let temp = path.with_extension("yaml.tmp");
    std::fs::write(&temp, text).unwrap();
    std::fs::rename(&temp, path).unwrap();
}

#[tokio::test]
async fn an_in_place_edit_applies_and_untouched_sinks_keep_running() {
    let app = spawn_in_process(ROUTES).await;
    assert_eq!(send_paid(&app, 1).await, "evt_reload_1:paid-orders");
    let edited = consumer_routes(
        &app,
        &ROUTES.replace("name: paid-orders", "name: paid-orders-v2"),
    );
    std::fs::write(routes_file(&app), edited).unwrap();
    wait_version(&app, 2).await;
    assert_eq!(send_paid(&app, 2).await, "evt_reload_2:paid-orders-v2");
    // The jsonl sink was carried over: both records are in the same file.
    let orders = read_jsonl(&app.path("sinks/orders.jsonl"));
    let ids: Vec<_> = orders
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        ids,
        ["evt_reload_1:paid-orders", "evt_reload_2:paid-orders-v2"]
    );
}

#[tokio::test]
async fn a_save_through_a_temporary_file_and_rename_applies() {
    let app = spawn_in_process(ROUTES).await;
    let edited = consumer_routes(
        &app,
        &ROUTES.replace("to: [orders, shipping, console]", "to: [orders]"),
    );
    write_atomically(&routes_file(&app), &edited);
    wait_version(&app, 2).await;
    assert_eq!(send_paid(&app, 1).await, "evt_reload_1:paid-orders");
    assert_eq!(read_jsonl(&app.path("sinks/orders.jsonl")).len(), 1);
    // The same event's record went to every sink of the route in one step;
    // had `shipping` still been a target, its delivery would be queued too.
    let health = app.health().await;
    assert!(
        health["queues"]["sinks"].get("shipping").is_none(),
        "{health}"
    );
    assert!(
        app.consumer.received().is_empty(),
        "the http sink was removed from the route"
    );
}

#[tokio::test]
async fn truncation_to_empty_is_refused_and_the_old_config_keeps_running() {
    let app = spawn_app(ROUTES).await;
    std::fs::write(routes_file(&app), "").unwrap();
    let health = wait_error(&app).await;
    assert_eq!(health["status"], "degraded");
    assert_eq!(health["config"]["version"], 1);
    assert!(
        health["config"]["last_reload_error"]["problems"][0]
            .as_str()
            .unwrap()
            .contains("empty"),
        "{health}"
    );
    assert_eq!(send_paid(&app, 1).await, "evt_reload_1:paid-orders");
    app.stderr
        .wait_for(WAIT, |l| l.contains("config reload refused").then_some(()));
}

#[tokio::test]
async fn invalid_yaml_is_refused_with_its_place() {
    let app = spawn_app(ROUTES).await;
    std::fs::write(
        routes_file(&app),
        "sinks:\n  orders: { type: jsonl, path: [unclosed\nroutes: []\n",
    )
    .unwrap();
    let health = wait_error(&app).await;
    let problem = health["config"]["last_reload_error"]["problems"][0]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        problem.starts_with("routes.yaml:"),
        "the place comes first: {problem}"
    );
    assert!(
        problem.split(':').nth(1).unwrap().parse::<u32>().is_ok(),
        "with a line number: {problem}"
    );
    assert_eq!(send_paid(&app, 1).await, "evt_reload_1:paid-orders");

    // Fixing the file clears the error.
    std::fs::write(
        routes_file(&app),
        consumer_routes(&app, &ROUTES.replace("paid-orders", "fixed")),
    )
    .unwrap();
    let health = wait_version(&app, 2).await;
    assert_eq!(health["config"]["last_reload_error"], Value::Null);
    assert_eq!(health["status"], "ok");
}

#[tokio::test]
async fn a_route_naming_a_missing_sink_is_refused() {
    let app = spawn_in_process(ROUTES).await;
    let broken = consumer_routes(
        &app,
        &ROUTES.replace("to: [failed]", "to: [failed, warehouse]"),
    );
    std::fs::write(routes_file(&app), broken).unwrap();
    let health = wait_error(&app).await;
    let problem = health["config"]["last_reload_error"]["problems"][0]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(problem.contains("warehouse"), "{problem}");
    assert_eq!(health["config"]["version"], 1);
    assert_eq!(send_paid(&app, 1).await, "evt_reload_1:paid-orders");
}

#[tokio::test]
async fn a_new_sink_and_route_receive_the_next_event() {
    let app = spawn_in_process(ROUTES).await;
    let extended = format!(
        "{}\n  - name: eu-orders\n    when: {{ type: checkout.session.completed, data.object.currency: usd }}\n    emit: order\n    to: [warehouse]\n",
        consumer_routes(&app, ROUTES).trim_end()
    )
    .replace("sinks:\n", "sinks:\n  warehouse: { type: jsonl, path: sinks/warehouse.jsonl }\n");
    std::fs::write(routes_file(&app), extended).unwrap();
    wait_version(&app, 2).await;
    assert_eq!(send_paid(&app, 1).await, "evt_reload_1:paid-orders");
    let warehouse = app.wait_lines("sinks/warehouse.jsonl", 1).await;
    assert_eq!(warehouse.len(), 1);
    assert_eq!(warehouse[0]["id"], "evt_reload_1:eu-orders");
}

#[tokio::test]
async fn sighup_rereads_the_file() {
    let app = spawn_app(ROUTES).await;
    app.signal("HUP");
    app.stderr
        .wait_for(WAIT, |l| l.contains("SIGHUP received").then_some(()));
    // The file did not change, so the reload finds nothing to apply.
    app.stderr
        .wait_for(WAIT, |l| l.contains("config unchanged").then_some(()));
    assert_eq!(app.health().await["config"]["version"], 1);
}
