//! Durable delivery: acknowledged means journaled; every record reaches
//! every matched sink at least once, with a stable id; nothing routes twice.

use serde_json::json;
use std::collections::BTreeSet;

use crate::consumer::Consumer;
use crate::events::{Stream, assert_exactly_delivered, ids, line_items, session_event};
use crate::harness::{
    SmallDisk, TestApp, WAIT, eventually, read_jsonl, spawn_app, spawn_in_process,
};

/// Orders to a file and to an HTTP consumer at `{shipping}`, retried fast.
const DURABLE_ROUTES: &str = r#"
sinks:
  orders: { type: jsonl, path: sinks/orders.jsonl, retry: { initial: 50ms, max: 200ms } }
  shipping:
    type: http
    url: "{shipping}"
    timeout: 2s
    retry: { initial: 50ms, max: 200ms }
routes:
  - name: paid-orders
    when: { type: checkout.session.completed, payment_status: paid }
    emit: order
    to: [orders, shipping]
"#;

async fn spawn_durable(shipping: &str) -> TestApp {
    spawn_app(&DURABLE_ROUTES.replace("{shipping}", shipping)).await
}

/// [`spawn_durable`] run in process, for tests that need no process.
async fn spawn_durable_in_process(shipping: &str) -> TestApp {
    spawn_in_process(&DURABLE_ROUTES.replace("{shipping}", shipping)).await
}

/// Sends paid order `n` (session and event ids derived from it).
async fn send_order(app: &TestApp, n: usize) -> crate::harness::Answer {
    let session = format!("cs_test_durable_{n}");
    app.stripe.add_session(&session, line_items());
    app.send(&session_event(
        &format!("evt_durable_{n}"),
        "checkout.session.completed",
        &session,
        "paid",
    ))
    .await
}

/// A consumer that is down: connections to its port are closed at once,
/// with nothing read or answered, until [`Down::up`] hands the same port to
/// a real consumer (so no other process can take it in between).
struct Down {
    listener: std::net::TcpListener,
    refusing: tokio::task::JoinHandle<()>,
}

impl Down {
    fn start() -> (Down, String) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/orders", listener.local_addr().unwrap());
        let refusing = listener.try_clone().unwrap();
        refusing.set_nonblocking(true).unwrap();
        let refusing = tokio::net::TcpListener::from_std(refusing).unwrap();
        let refusing = tokio::spawn(async move {
            while let Ok((stream, _)) = refusing.accept().await {
                drop(stream);
            }
        });
        (Down { listener, refusing }, url)
    }

    fn up(self) -> Consumer {
        self.refusing.abort();
        Consumer::serve(self.listener)
    }
}

#[tokio::test]
async fn a_consumer_that_is_down_gets_every_record_once_it_is_back() {
    let (down, url) = Down::start();
    let app = spawn_durable(&url).await;
    for n in 0..5 {
        assert_eq!(send_order(&app, n).await.status, 200);
    }
    // The file sink is not held up by the HTTP sink being down.
    let orders = app.wait_lines("sinks/orders.jsonl", 5).await;
    let health = app
        .wait_health(|h| h["queues"]["sinks"]["shipping"]["pending"] == 5)
        .await;
    assert_eq!(health["queues"]["sinks"]["shipping"]["dead"], 0);
    app.stderr
        .wait_for(WAIT, |l| l.contains("sink is failing").then_some(()));

    let consumer = down.up();
    let received: Vec<_> = consumer
        .wait_for(5, WAIT)
        .await
        .iter()
        .map(|r| r.json())
        .collect();
    assert_eq!(ids(&received), ids(&orders), "each record once");
    for record in &received {
        let in_file = orders.iter().find(|o| o["id"] == record["id"]).unwrap();
        assert_eq!(record, in_file, "the same record as in the file");
    }
    app.stderr
        .wait_for(WAIT, |l| l.contains("sink recovered").then_some(()));
    let failing_lines = app
        .stderr
        .all()
        .iter()
        .filter(|l| l.contains("sink is failing"))
        .count();
    assert_eq!(
        failing_lines, 1,
        "one log line per outage, not one per retry"
    );
    app.wait_health(|h| h["queues"]["sinks"].get("shipping").is_none())
        .await;
}

#[tokio::test]
async fn a_consumer_answering_500_is_retried_until_it_answers_200() {
    let consumer = Consumer::start().await;
    consumer.script(&[500, 503, 429]);
    let app = spawn_durable_in_process(&consumer.url()).await;
    assert_eq!(send_order(&app, 1).await.status, 200);
    let received = consumer.wait_for(1, WAIT).await;
    assert_eq!(
        received[0].header("webhook-id"),
        Some("evt_durable_1:paid-orders")
    );
    assert_eq!(consumer.requests(), 4, "three refusals, then the delivery");
    app.wait_health(|h| h["queues"]["sinks"].get("shipping").is_none())
        .await;
    assert_eq!(consumer.received().len(), 1);
}

#[tokio::test]
async fn a_400_is_a_dead_letter_until_replayed() {
    let consumer = Consumer::start().await;
    consumer.script(&[400]);
    let app = spawn_durable_in_process(&consumer.url()).await;
    assert_eq!(send_order(&app, 1).await.status, 200);
    app.wait_health(|h| h["queues"]["sinks"]["shipping"]["dead"] == 1)
        .await;
    assert_eq!(consumer.requests(), 1, "a 400 is not retried");
    let listed = app.cli(&["deadletters", "--sink", "shipping"]);
    assert!(
        listed.contains("evt_durable_1:paid-orders") && listed.contains("400"),
        "{listed}"
    );
    assert!(
        app.cli(&["deadletters", "--sink", "orders"])
            .contains("no dead letters")
    );

    // The consumer is fixed; replay delivers, with the same id and bytes.
    let replayed = app.cli(&["replay", "--sink", "shipping"]);
    assert!(replayed.contains("1 dead letter"), "{replayed}");
    let received = consumer.wait_for(1, WAIT).await;
    let orders = read_jsonl(&app.path("sinks/orders.jsonl"));
    assert_eq!(received[0].json(), orders[0]);
    app.wait_health(|h| h["queues"]["sinks"].get("shipping").is_none())
        .await;
    assert!(app.cli(&["deadletters"]).contains("no dead letters"));
}

#[tokio::test]
async fn the_same_event_twice_or_three_times_at_once_makes_one_record() {
    let consumer = Consumer::start().await;
    let app = spawn_durable_in_process(&consumer.url()).await;
    let first = send_order(&app, 1).await;
    assert_eq!(first.body["duplicate"], false);
    let again = send_order(&app, 1).await;
    assert_eq!(
        (again.status, again.body["duplicate"].clone()),
        (200, json!(true))
    );

    app.stripe.add_session("cs_test_durable_2", line_items());
    let event = session_event(
        "evt_durable_2",
        "checkout.session.completed",
        "cs_test_durable_2",
        "paid",
    );
    let (a, b, c) = tokio::join!(app.send(&event), app.send(&event), app.send(&event));
    let fresh = [&a, &b, &c]
        .iter()
        .filter(|x| x.status == 200 && x.body["duplicate"] == false)
        .count();
    let dupes = [&a, &b, &c]
        .iter()
        .filter(|x| x.status == 200 && x.body["duplicate"] == true)
        .count();
    assert_eq!((fresh, dupes), (1, 2));

    consumer.wait_for(2, WAIT).await;
    app.wait_health(|h| {
        h["events"]["routed"] == 2
            && h["queues"]["sinks"]
                .as_object()
                .is_some_and(|s| s.is_empty())
    })
    .await;
    let orders = read_jsonl(&app.path("sinks/orders.jsonl"));
    assert_eq!(orders.len(), 2);
    assert_eq!(consumer.received().len(), 2);
    assert_eq!(app.health().await["events"]["duplicates"], 3);
}

#[tokio::test]
async fn kill_9_loses_no_acknowledged_event() {
    let consumer = Consumer::start().await;
    let mut app = spawn_durable(&consumer.url()).await;
    for n in 0..200 {
        app.stripe
            .add_session(&format!("cs_test_durable_{n}"), line_items());
    }
    // Eight senders stream signed events; the router dies under them.
    let stream = Stream::start(&app, 8, 0..200, |n| {
        session_event(
            &format!("evt_durable_{n}"),
            "checkout.session.completed",
            &format!("cs_test_durable_{n}"),
            "paid",
        )
    });
    eventually(WAIT, || (stream.acknowledged() >= 60).then_some(())).await;
    app.kill9();
    let acknowledged: BTreeSet<String> = stream
        .finish()
        .await
        .into_iter()
        .map(|event| format!("{event}:paid-orders"))
        .collect();
    assert!(acknowledged.len() >= 60);

    app.restart();
    let long = std::time::Duration::from_secs(30);
    let orders = eventually(long, || {
        let got = ids(&read_jsonl(&app.path("sinks/orders.jsonl")));
        acknowledged.is_subset(&got).then_some(got)
    })
    .await;
    assert!(orders.len() >= acknowledged.len());
    let delivered = eventually(long, || {
        let got: BTreeSet<String> = consumer
            .received()
            .iter()
            .map(|r| r.header("webhook-id").unwrap().to_owned())
            .collect();
        acknowledged.is_subset(&got).then_some(got)
    })
    .await;
    assert!(delivered.len() >= acknowledged.len());
    // Deliveries may repeat after a crash, always with the same id.
    for line in read_jsonl(&app.path("sinks/orders.jsonl")) {
        let id = line["id"].as_str().unwrap();
        assert_eq!(
            id,
            format!("{}:paid-orders", line["event_id"].as_str().unwrap())
        );
    }
}

#[tokio::test]
async fn an_unwritable_jsonl_target_recovers_without_losing_records() {
    let consumer = Consumer::start().await;
    let app = spawn_durable_in_process(&consumer.url()).await;
    let path = app.path("sinks/orders.jsonl");
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir(&path).unwrap();
    for n in 0..3 {
        assert_eq!(send_order(&app, n).await.status, 200);
    }
    consumer.wait_for(3, WAIT).await;
    app.wait_health(|h| h["queues"]["sinks"]["orders"]["pending"] == 3)
        .await;
    std::fs::remove_dir(&path).unwrap();
    let orders = app.wait_lines("sinks/orders.jsonl", 3).await;
    assert_eq!(orders.len(), 3);
    app.wait_health(|h| h["queues"]["sinks"].get("orders").is_none())
        .await;
}

#[tokio::test]
async fn sigterm_with_a_consumer_down_keeps_deliveries_for_the_next_start() {
    let (down, url) = Down::start();
    let mut app = spawn_durable(&url).await;
    assert_eq!(send_order(&app, 1).await.status, 200);
    app.wait_health(|h| h["queues"]["sinks"]["shipping"]["pending"] == 1)
        .await;
    app.signal("TERM");
    assert_eq!(app.wait_exit(WAIT), Some(0));

    let consumer = down.up();
    app.restart();
    let received = consumer.wait_for(1, WAIT).await;
    assert_eq!(
        received[0].header("webhook-id"),
        Some("evt_durable_1:paid-orders")
    );
}

#[tokio::test]
async fn replay_reroute_runs_an_old_event_through_a_route_added_later() {
    let consumer = Consumer::start().await;
    let app = spawn_durable_in_process(&consumer.url()).await;
    assert_eq!(send_order(&app, 1).await.status, 200);
    app.wait_lines("sinks/orders.jsonl", 1).await;

    let extended = DURABLE_ROUTES.replace("{shipping}", &consumer.url())
        + "  - name: audit\n    when: { type: \"checkout.session.*\" }\n    emit: event\n    to: [audit]\n";
    let extended = extended.replace(
        "sinks:\n",
        "sinks:\n  audit: { type: jsonl, path: sinks/audit.jsonl }\n",
    );
    std::fs::write(app.path("routes.yaml"), extended).unwrap();
    app.wait_health(|h| h["config"]["version"] == 2).await;

    let out = app.cli(&["replay", "--event", "evt_durable_1", "--reroute"]);
    assert!(out.contains("evt_durable_1"), "{out}");
    let audit = app.wait_lines("sinks/audit.jsonl", 1).await;
    assert_eq!(audit[0]["id"], "evt_durable_1:audit");
    assert_eq!(audit[0]["event"]["id"], "evt_durable_1");
    app.wait_health(|h| {
        h["queues"]["sinks"]
            .as_object()
            .is_some_and(|s| s.is_empty())
    })
    .await;
    assert_eq!(
        read_jsonl(&app.path("sinks/orders.jsonl")).len(),
        1,
        "the existing record is not sent again"
    );
    assert_eq!(consumer.received().len(), 1);

    let missing = std::process::Command::new(env!("CARGO_BIN_EXE_stripe-router"))
        .args(["replay", "--event", "evt_never_seen", "--reroute"])
        .current_dir(app.path(""))
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("not in the journal"));
}

#[tokio::test]
async fn a_full_disk_answers_500_and_loses_no_acknowledged_event() {
    let Some(disk) = SmallDisk::mount("1m") else {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    };
    let routes = format!(
        "store: {{ path: {}/journal.db }}\nsinks:\n  audit: {{ type: jsonl, path: sinks/audit.jsonl }}\n\
         routes:\n  - name: audit\n    when: {{ type: \"checkout.session.*\" }}\n    emit: event\n    to: [audit]\n",
        disk.path().display()
    );
    let app = spawn_app(&routes).await;
    // Leave the journal a little room only.
    disk.fill(200 * 1024);

    let mut acknowledged = BTreeSet::new();
    let mut refused = None;
    for n in 0..200 {
        let mut event = session_event(
            &format!("evt_full_{n}"),
            "checkout.session.completed",
            "cs_test_full",
            "paid",
        );
        event["data"]["object"]["metadata"]["padding"] = json!("x".repeat(20_000));
        let answer = app.send(&event).await;
        match answer.status {
            200 => {
                acknowledged.insert(format!("evt_full_{n}:audit"));
            }
            500 => {
                refused = Some(answer.body);
                break;
            }
            other => panic!("unexpected {other}: {}", answer.body),
        }
    }
    let refused = refused.expect("the disk filled up");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("could not be stored"),
        "{refused}"
    );
    app.stderr.wait_for(WAIT, |l| {
        l.contains("journal transaction failed").then_some(())
    });

    // Space comes back: new events are accepted, and none acknowledged before is lost.
    disk.unfill();
    let mut event = session_event(
        "evt_full_after",
        "checkout.session.completed",
        "cs_test_full",
        "paid",
    );
    event["data"]["object"]["metadata"]["padding"] = json!("after");
    let answer = app.send(&event).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    acknowledged.insert("evt_full_after:audit".to_owned());
    assert_exactly_delivered(
        &app,
        "sinks/audit.jsonl",
        &acknowledged,
        std::time::Duration::from_secs(20),
    )
    .await;
}
