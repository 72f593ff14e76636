//! The admin listener through the real binary (SPEC §11): the JSON API
//! after a delivered and a dead-lettered event (pages, one event in full,
//! dead letters, replay), the bearer token off loopback, readiness while
//! the journal cannot be written, JSON logs, and a webhook port that
//! answers none of it.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::events::session_event;
use crate::harness::{
    ADDRESSES_FILE, Lines, Options, SECRET, SmallDisk, TestApp, WAIT, router_command, spawn_app,
    spawn_with, wait_addresses,
};

/// Every checkout event to a file; expired sessions also to a service
/// (the test consumer, which refuses the first one with a 400).
const ROUTES: &str = r#"
sinks:
  audit: { type: jsonl, path: sinks/audit.jsonl }
  shipping: { type: http, url: "{consumer}", timeout: 5s }
routes:
  - name: audit
    when: { type: "checkout.session.*" }
    emit: event
    to: [audit]
  - name: ship
    when: { type: checkout.session.expired }
    emit: event
    to: [shipping]
"#;

/// The token the tests run with: long enough, and easy to spot in output.
const TOKEN: &str = "test-admin-token-0123456789abcdef";

/// `GET` on the admin listener; status and JSON body.
async fn get(app: &TestApp, path: &str) -> (u16, Value) {
    let response = app
        .http
        .get(format!("http://{}{path}", app.admin))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// `POST /api/replay` with `body`; status and JSON body.
async fn replay(app: &TestApp, body: &str) -> (u16, Value) {
    let response = app
        .http
        .post(format!("http://{}/api/replay", app.admin))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Polls `GET path` until `accept` takes the 200 answer.
async fn wait_get(app: &TestApp, path: &str, accept: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = get(app, path).await;
        if status == 200 && accept(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{path} never got there: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn ids(page: &Value) -> Vec<&str> {
    page["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["id"].as_str().expect("id"))
        .collect()
}

/// The state of `sink`'s delivery of the event's record for `route`.
fn delivery<'a>(event: &'a Value, route: &str, sink: &str) -> &'a Value {
    event["records"]
        .as_array()
        .and_then(|records| records.iter().find(|r| r["route"] == route))
        .and_then(|record| record["deliveries"].as_array())
        .and_then(|deliveries| deliveries.iter().find(|d| d["sink"] == sink))
        .unwrap_or(&Value::Null)
}

#[tokio::test]
async fn the_api_lists_events_shows_one_lists_dead_letters_and_replays_them() {
    let app = spawn_app(ROUTES).await;
    app.consumer.script(&[400]);
    let sent = [
        ("evt_api_paid", "checkout.session.completed"),
        ("evt_api_expired", "checkout.session.expired"),
        ("evt_api_other", "payment_intent.succeeded"),
    ];
    for (id, kind) in sent {
        let answer = app
            .send(&session_event(id, kind, "cs_test_api", "paid"))
            .await;
        assert_eq!(answer.status, 200, "{}", answer.body);
    }

    // Newest first, each with its records and their delivery states.
    let page = wait_get(&app, "/api/events", |page| {
        page["events"][1]["records"]
            .as_array()
            .is_some_and(|r| r.len() == 2)
            && delivery(&page["events"][1], "ship", "shipping")["state"] == "dead"
            && delivery(&page["events"][2], "audit", "audit")["state"] == "delivered"
    })
    .await;
    assert_eq!(
        ids(&page),
        ["evt_api_other", "evt_api_expired", "evt_api_paid"]
    );
    assert_eq!(page["next"], Value::Null, "{page}");
    let other = &page["events"][0];
    assert_eq!(other["type"], "payment_intent.succeeded");
    assert_eq!(other["state"], "routed");
    assert_eq!(other["records"], json!([]));
    let paid = &page["events"][2];
    assert_eq!(paid["records"][0]["id"], "evt_api_paid:audit");
    assert_eq!(delivery(paid, "audit", "audit")["attempts"], 1);
    let dead = delivery(&page["events"][1], "ship", "shipping");
    assert!(
        dead["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("400")),
        "{dead}"
    );

    // Pages: `after` is the `next` of the page before.
    let (status, first) = get(&app, "/api/events?limit=2").await;
    assert_eq!(status, 200);
    assert_eq!(ids(&first), ["evt_api_other", "evt_api_expired"]);
    let next = first["next"].as_str().expect("a next page").to_owned();
    let (_, second) = get(&app, &format!("/api/events?limit=2&after={next}")).await;
    assert_eq!(ids(&second), ["evt_api_paid"]);
    assert_eq!(second["next"], Value::Null);
    // By type: exact or a glob, as in routes.
    let (_, checkout) = get(&app, "/api/events?type=checkout.session.*").await;
    assert_eq!(ids(&checkout), ["evt_api_expired", "evt_api_paid"]);
    let (_, exact) = get(&app, "/api/events?type=payment_intent.succeeded").await;
    assert_eq!(ids(&exact), ["evt_api_other"]);
    for bad in ["/api/events?limit=0", "/api/events?after=soon"] {
        let (status, body) = get(&app, bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }

    // One event in full: its body, each record, each delivery's attempts.
    let (status, expired) = get(&app, "/api/events/evt_api_expired").await;
    assert_eq!(status, 200, "{expired}");
    assert_eq!(expired["body"]["id"], "evt_api_expired");
    assert_eq!(expired["body"]["data"]["object"]["id"], "cs_test_api");
    let shipped = delivery(&expired, "ship", "shipping");
    let history = shipped["history"].as_array().expect("history");
    assert_eq!(history.len(), 1, "{shipped}");
    assert_eq!(history[0]["outcome"], "dead");
    assert!(history[0]["error"].as_str().unwrap().contains("400"));
    assert!(history[0]["at_ms"].as_i64().unwrap() > 0);
    let ship_record = expired["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["route"] == "ship")
        .unwrap();
    assert_eq!(ship_record["body"]["id"], "evt_api_expired:ship");
    let (status, _) = get(&app, "/api/events/evt_api_none").await;
    assert_eq!(status, 404);

    // Dead letters, paginated.
    let (status, letters) = get(&app, "/api/deadletters").await;
    assert_eq!(status, 200, "{letters}");
    let listed = letters["dead_letters"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{letters}");
    assert_eq!(listed[0]["record_id"], "evt_api_expired:ship");
    assert_eq!(listed[0]["sink"], "shipping");
    assert_eq!(letters["next"], Value::Null);
    let (_, none) = get(&app, "/api/deadletters?sink=audit").await;
    assert_eq!(none["dead_letters"], json!([]));

    // Replay: the command line's options as JSON, checked as it checks them.
    for (body, want) in [
        ("{}", 400),
        (r#"{"all": true, "sink": "shipping"}"#, 400),
        (r#"{"reroute": true}"#, 400),
        (r#"{"sinks": "shipping"}"#, 400),
        ("not json", 400),
        (r#"{"event": "evt_api_none", "reroute": true}"#, 404),
    ] {
        let (status, answer) = replay(&app, body).await;
        assert_eq!(status, want, "{body}: {answer}");
    }
    let (status, answer) = replay(&app, &format!(r#"{{"sink": "{}"}}"#, "x".repeat(5000))).await;
    assert_eq!(status, 413, "{answer}");
    let (status, _) = get(&app, "/api/replay").await;
    assert_eq!(status, 405);

    let (status, answer) = replay(&app, r#"{"sink": "shipping"}"#).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["queued"], 1, "{answer}");
    let received = app.consumer.wait_for(1, WAIT).await;
    assert_eq!(received[0].json()["id"], "evt_api_expired:ship");
    let expired = wait_get(&app, "/api/events/evt_api_expired", |event| {
        delivery(event, "ship", "shipping")["state"] == "delivered"
    })
    .await;
    let outcomes: Vec<_> = delivery(&expired, "ship", "shipping")["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(outcomes, ["dead", "delivered"]);
    let (_, letters) = get(&app, "/api/deadletters").await;
    assert_eq!(letters["dead_letters"], json!([]));

    // Ready, and the webhook port answers none of it; its /healthz stays
    // minimal.
    let (status, ready) = get(&app, "/readyz").await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["status"], "ready");
    for path in ["/metrics", "/readyz", "/api/events", "/api/deadletters"] {
        let status = app.http.get(app.url(path)).send().await.unwrap().status();
        assert_eq!(status, 404, "{path} on the webhook port");
    }
    let status = app
        .http
        .post(app.url("/api/replay"))
        .body(r#"{"all": true}"#)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 404);
    let public: Value = app
        .http
        .get(app.url("/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(public, json!({ "status": "ok" }));
}

/// A router started by the test with `args` after `serve`, in `dir` with
/// routes.yaml written, and `env`; killed on drop.
struct Served {
    child: Child,
    admin: SocketAddr,
    stderr: Lines,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(dir: &Path, env: &[(String, String)], admin_listen: &str) -> Served {
    let mut child = router_command(
        dir,
        env,
        &[
            "serve",
            "--config",
            "routes.yaml",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            admin_listen,
            "--addresses-file",
            ADDRESSES_FILE,
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .expect("start stripe-router");
    let stderr = Lines::follow(child.stderr.take().unwrap());
    let (_, admin) = wait_addresses(dir, &mut child, &stderr);
    Served {
        child,
        admin: admin.expect("the admin listener is on"),
        stderr,
    }
}

/// A folder with routes that need no Stripe API key.
fn folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let routes = ROUTES.replace("{consumer}", "http://127.0.0.1:9/orders");
    std::fs::write(dir.path().join("routes.yaml"), routes).unwrap();
    dir
}

fn env(token: Option<&str>) -> Vec<(String, String)> {
    let mut env = vec![("STRIPE_WEBHOOK_SECRET".to_owned(), SECRET.to_owned())];
    env.extend(token.map(|t| ("STRIPE_ROUTER_ADMIN_TOKEN".to_owned(), t.to_owned())));
    env
}

#[tokio::test]
async fn off_loopback_every_path_but_the_probes_needs_the_token() {
    let dir = folder();
    // Bound to every interface, reached through loopback: still a
    // non-loopback bind, so the token is required.
    let served = serve(dir.path(), &env(Some(TOKEN)), "0.0.0.0:0");
    assert!(served.admin.ip().is_unspecified(), "{}", served.admin);
    let base = format!("http://127.0.0.1:{}", served.admin.port());
    let http = reqwest::Client::new();
    let ask = |path: &str, token: Option<&str>| {
        let mut request = http.get(format!("{base}{path}"));
        if let Some(token) = token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        request.send()
    };

    for path in [
        "/api/events",
        "/api/deadletters",
        "/api/events/evt_x",
        "/metrics",
        "/nowhere",
    ] {
        let missing = ask(path, None).await.unwrap();
        assert_eq!(missing.status(), 401, "{path} without a token");
        let challenge = missing.headers()["www-authenticate"].to_str().unwrap();
        assert!(challenge.starts_with("Bearer"), "{challenge}");
        let wrong = ask(path, Some("test-admin-token-0123456789abcdeX"))
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401, "{path} with a wrong token");
        let body = wrong.text().await.unwrap();
        assert!(!body.contains(TOKEN), "{body}");
    }
    let replay = http
        .post(format!("{base}/api/replay"))
        .body(r#"{"all": true}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 401);

    let right = ask("/api/events", Some(TOKEN)).await.unwrap();
    assert_eq!(right.status(), 200);
    let page: Value = right.json().await.unwrap();
    assert_eq!(page["events"], json!([]));
    let replay = http
        .post(format!("{base}/api/replay"))
        .bearer_auth(TOKEN)
        .body(r#"{"all": true}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 200);

    // The probes answer anyone: a load balancer has no token.
    for path in ["/healthz", "/readyz"] {
        let answer = ask(path, None).await.unwrap();
        assert_eq!(answer.status(), 200, "{path}");
    }
    assert!(
        served.stderr.all().iter().all(|line| !line.contains(TOKEN)),
        "the token is never logged"
    );
}

#[tokio::test]
async fn off_loopback_without_a_token_serve_and_check_refuse_and_say_which_variable() {
    let dir = folder();
    let routes = format!(
        "server: {{ admin_listen: \"0.0.0.0:0\" }}\n{}",
        std::fs::read_to_string(dir.path().join("routes.yaml")).unwrap()
    );
    std::fs::write(dir.path().join("routes.yaml"), routes).unwrap();

    let run = |args: &[&str], token: Option<&str>| {
        // Under `timeout`: a router that starts after all fails the test
        // (exit 124) instead of hanging it.
        std::process::Command::new("timeout")
            .args(["30", env!("CARGO_BIN_EXE_stripe-router")])
            .args(args)
            .current_dir(dir.path())
            .env_clear()
            .envs(env(token))
            .output()
            .unwrap()
    };
    let output = run(&["serve", "--listen", "127.0.0.1:0"], None);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("server.admin_listen")
            && stderr.contains("STRIPE_ROUTER_ADMIN_TOKEN")
            && stderr.contains("not a loopback address"),
        "{stderr}"
    );

    // check says the same, from the same function.
    let output = run(&["check"], None);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("STRIPE_ROUTER_ADMIN_TOKEN"), "{stderr}");
    assert!(stderr.contains("server.admin_listen"), "{stderr}");
    let output = run(&["check"], Some(TOKEN));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Left out of a CI job's environment, it is not checked (and said so).
    let output = run(&["check", "--no-env"], None);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stdout.contains("not checked (--no-env)") && stdout.contains("STRIPE_ROUTER_ADMIN_TOKEN"),
        "{stdout}"
    );

    // A token too short is refused, on loopback too, and never quoted.
    let output = run(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ],
        Some("short-token"),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("too short") && !stderr.contains("short-token"),
        "{stderr}"
    );
}

#[tokio::test]
async fn json_logs_are_one_object_a_line_with_the_event_route_and_sink() {
    let mut options = Options::new(ROUTES);
    options
        .env
        .push(("STRIPE_ROUTER_LOG_FORMAT".into(), "json".into()));
    let app = spawn_with(options).await;
    app.consumer.script(&[400]);
    let event = session_event(
        "evt_logs",
        "checkout.session.expired",
        "cs_test_logs",
        "paid",
    );
    assert_eq!(app.send(&event).await.status, 200);
    app.wait_lines("sinks/audit.jsonl", 1).await;
    // Waited for here, not in the log: reading lines blocks this thread,
    // which also runs the consumer.
    wait_get(&app, "/api/deadletters", |page| {
        page["dead_letters"][0].is_object()
    })
    .await;

    // The refusal is logged in the delivery's span.
    let refused = app.stderr.wait_for(WAIT, |line| {
        let value: Value = serde_json::from_str(line).ok()?;
        value["message"]
            .as_str()
            .is_some_and(|m| m.contains("kept as a dead letter"))
            .then_some(value)
    });
    let span = refused["spans"]
        .as_array()
        .and_then(|spans| spans.iter().find(|s| s["name"] == "delivery"))
        .unwrap_or_else(|| panic!("no delivery span: {refused}"));
    assert_eq!(span["event_id"], "evt_logs", "{refused}");
    assert_eq!(span["route"], "ship", "{refused}");
    assert_eq!(span["sink"], "shipping", "{refused}");
    assert_eq!(refused["level"], "ERROR");
    // The routing pass names the event and its type.
    let routed = app.stderr.wait_for(WAIT, |line| {
        let value: Value = serde_json::from_str(line).ok()?;
        (value["message"] == "routed").then_some(value)
    });
    let span = &routed["spans"][0];
    assert_eq!(span["name"], "routing", "{routed}");
    assert_eq!(span["event_id"], "evt_logs");
    assert_eq!(span["event_type"], "checkout.session.expired");
    // And every line is one JSON object.
    for line in app.stderr.all() {
        let value: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            value.is_object() && value["timestamp"].is_string(),
            "{line}"
        );
    }

    // Any other format is refused, naming the flag's values.
    let output = router_command(app.dir.path(), &[], &["check", "--log-format", "xml"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("`xml` is not a log format") && stderr.contains("`json`"),
        "{stderr}"
    );
}

#[tokio::test]
async fn readyz_turns_503_while_the_journal_cannot_be_written_then_back() {
    let Some(disk) = SmallDisk::mount("2m") else {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    };
    let routes = format!(
        "store: {{ path: {}/journal.db, wal_limit: 256KiB }}\n{ROUTES}",
        disk.path().display()
    );
    let app = spawn_app(&routes).await;
    let (status, ready) = get(&app, "/readyz").await;
    assert_eq!(status, 200, "{ready}");
    disk.fill(200 * 1024);
    let mut refused = false;
    for n in 0..200 {
        let mut event = session_event(
            &format!("evt_ready_{n}"),
            "checkout.session.completed",
            "cs_test_ready",
            "paid",
        );
        event["data"]["object"]["metadata"]["padding"] = json!("x".repeat(20_000));
        if app.send(&event).await.status == 500 {
            refused = true;
            break;
        }
    }
    assert!(refused, "the disk never filled up");
    let (status, ready) = get(&app, "/readyz").await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["status"], "not ready");
    assert!(
        ready["reason"].as_str().is_some_and(|r| r.contains("full")),
        "{ready}"
    );

    // Room again: ready again without a restart (the journal probes
    // itself).
    disk.unfill();
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = get(&app, "/readyz").await;
        if status == 200 {
            assert_eq!(body["status"], "ready", "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "/readyz stayed {status}: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
