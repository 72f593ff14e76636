//! Several `serve` replicas on one PostgreSQL database act as one router
//! (SPEC §10): three real processes started at once on a fresh database, a
//! stream of signed paid orders sent round robin across them with a fifth
//! of them sent again to another replica (as Stripe's retries would land),
//! one replica killed with SIGKILL mid-stream. Every acknowledged event's
//! record reaches the HTTP consumer, each record is built once, one replica
//! at most answers an event id as new, and the killed replica's leased rows
//! are finished by the others within the lease.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use stripe_router::ingest::verify;
use stripe_router::offline::standin::StripeStandIn;

use crate::consumer::Consumer;
use crate::events::{line_items, session_event};
use crate::harness::{
    API_KEY, Lines, SECRET, eventually, now, pretty, serve_command, wait_addresses,
};
use crate::pg::TestDatabase;

const REPLICAS: usize = 3;
const EVENTS: usize = 3_000;
/// The replica killed mid-stream.
const VICTIM: usize = 2;
const SENDERS: usize = 12;
/// How long a row belongs to its replica without a renewal (`store.lease`,
/// shorter than the default for the test).
const LEASE: Duration = Duration::from_secs(2);
/// How late after the lease the killed replica's rows may be finished: the
/// scans' period (a quarter lease), an enrichment and a delivery, on a busy
/// 2-core machine.
const TAKEOVER_SLACK: Duration = Duration::from_secs(4);
const SESSION: &str = "cs_test_replicas";

/// Paid orders to an HTTP consumer, retried fast; the journal is the
/// database `DATABASE_URL` names.
const ROUTES: &str = r#"
store: { url: "${DATABASE_URL}", pool_size: 6, lease: 2s }
sinks:
  shipping: { type: http, url: "{consumer}", timeout: 5s, retry: { initial: 50ms, max: 500ms } }
routes:
  - name: paid-orders
    when: { type: checkout.session.completed, payment_status: paid }
    emit: order
    to: [shipping]
"#;

fn record_id(n: usize) -> String {
    format!("evt_replicas_{n}:paid-orders")
}

/// One `serve` process in a folder of its own.
struct Replica {
    _dir: tempfile::TempDir,
    child: Child,
    addr: SocketAddr,
    stderr: Lines,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts every replica at once (they migrate the fresh database together),
/// then waits until each listens.
fn start_replicas(routes: &str, env: &[(String, String)]) -> Vec<Replica> {
    let mut starting = Vec::new();
    for n in 0..REPLICAS {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("routes.yaml"), routes).unwrap();
        let mut env = env.to_vec();
        // The replica's id in `lease_owner` starts with its host name.
        env.push(("HOSTNAME".into(), format!("replica{n}")));
        let mut child = serve_command(dir.path(), &env)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start stripe-router");
        let stderr = Lines::follow(child.stderr.take().unwrap());
        starting.push((dir, child, stderr));
    }
    starting
        .into_iter()
        .map(|(dir, mut child, stderr)| {
            let (addr, _) = wait_addresses(dir.path(), &mut child, &stderr);
            Replica {
                _dir: dir,
                child,
                addr,
                stderr,
            }
        })
        .collect()
}

/// One send of an event: the replica, and `Some(duplicate)` for a 200 or
/// `None` for anything else (a refusal, a connection cut by the kill).
type Sent = (usize, Option<bool>);

/// Every answer each event got.
#[derive(Default)]
struct Answers {
    by_event: Mutex<BTreeMap<usize, Vec<Sent>>>,
    /// Events answered 200 at least once.
    acknowledged: AtomicUsize,
}

impl Answers {
    fn note(&self, n: usize, replica: usize, answer: Option<bool>) {
        let mut by_event = self.by_event.lock().unwrap();
        let answers = by_event.entry(n).or_default();
        if answer.is_some() && answers.iter().all(|(_, a)| a.is_none()) {
            self.acknowledged.fetch_add(1, Ordering::SeqCst);
        }
        answers.push((replica, answer));
    }
}

/// Posts event `n` to `replica`, signed now: `Some(duplicate)` on a 200.
async fn post(http: &reqwest::Client, addr: SocketAddr, body: &[u8]) -> Option<bool> {
    let signature = verify::sign(body, SECRET, now());
    let response = http
        .post(format!("http://{addr}/api/webhook"))
        .header("Stripe-Signature", signature)
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await
        .ok()?;
    if response.status() != 200 {
        return None;
    }
    let answer: Value = response.json().await.ok()?;
    answer["duplicate"].as_bool()
}

/// Sends event `n` to `replica`, and on to the next replicas while it is
/// not acknowledged (a load balancer failing over, Stripe retrying).
async fn deliver(
    http: &reqwest::Client,
    addrs: &[SocketAddr],
    answers: &Answers,
    n: usize,
    body: &[u8],
    replica: usize,
) {
    for step in 0..REPLICAS {
        let target = (replica + step) % REPLICAS;
        let answer = post(http, addrs[target], body).await;
        answers.note(n, target, answer);
        if answer.is_some() {
            return;
        }
    }
}

/// `SENDERS` at once send every event to replica `n % 3`; every fifth event
/// goes to the next replica as well, half of those at the same moment,
/// half after the first answer.
fn stream(addrs: Vec<SocketAddr>, answers: Arc<Answers>) -> tokio::task::JoinSet<()> {
    let next = Arc::new(AtomicUsize::new(0));
    let addrs = Arc::new(addrs);
    let mut senders = tokio::task::JoinSet::new();
    for _ in 0..SENDERS {
        let (next, addrs, answers) = (next.clone(), addrs.clone(), answers.clone());
        senders.spawn(async move {
            let template = session_event(
                "evt_replicas",
                "checkout.session.completed",
                SESSION,
                "paid",
            );
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .build()
                .unwrap();
            loop {
                let n = next.fetch_add(1, Ordering::SeqCst);
                if n >= EVENTS {
                    break;
                }
                let mut event = template.clone();
                event["id"] = Value::from(format!("evt_replicas_{n}"));
                let body = pretty(&event);
                let (first, again) = (n % REPLICAS, (n + 1) % REPLICAS);
                let send = |replica| deliver(&http, &addrs, &answers, n, &body, replica);
                match n % 10 {
                    0 => {
                        tokio::join!(send(first), send(again));
                    }
                    5 => {
                        send(first).await;
                        send(again).await;
                    }
                    _ => send(first).await,
                }
            }
        });
    }
    senders
}

/// Strings from one query with one text parameter.
async fn strings(db: &tokio_postgres::Client, sql: &str, param: &str) -> Vec<String> {
    db.query(sql, &[&param])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// The rows the victim holds: deliveries it has not settled, and events it
/// has not routed yet (as the record ids they will have).
const HELD: &str = "SELECT record_id FROM deliveries WHERE state = 0 AND lease_owner LIKE $1
     UNION SELECT id || ':paid-orders' FROM events WHERE state = 0 AND lease_owner LIKE $1";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_on_one_database_route_each_event_once_and_survive_a_kill() {
    let Some(db) = TestDatabase::create("three_replicas_on_one_database").await else {
        return;
    };
    let stripe = StripeStandIn::start(SocketAddr::from(([127, 0, 0, 1], 0)), API_KEY)
        .await
        .unwrap();
    stripe.add_session(SESSION, line_items());
    let consumer = Consumer::start().await;
    // A slow consumer keeps deliveries in flight, so the killed replica
    // holds some.
    consumer.slow(Duration::from_millis(50));
    let env: Vec<(String, String)> = [
        ("STRIPE_WEBHOOK_SECRET", SECRET.to_owned()),
        ("STRIPE_SECRET_API_KEY", API_KEY.to_owned()),
        ("STRIPE_API_BASE", stripe.url().to_string()),
        ("DATABASE_URL", db.url.clone()),
        ("RUST_LOG", "warn".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let mut replicas = start_replicas(&ROUTES.replace("{consumer}", &consumer.url()), &env);
    let started = Instant::now();
    let client = db.connect().await;

    let answers = Arc::new(Answers::default());
    let senders = stream(replicas.iter().map(|r| r.addr).collect(), answers.clone());

    // Mid-stream, once the victim holds a few rows, it dies.
    eventually(Duration::from_secs(60), || {
        (answers.acknowledged.load(Ordering::SeqCst) >= EVENTS / 3).then_some(())
    })
    .await;
    let owner = format!("replica{VICTIM}-%");
    let holding = Instant::now() + Duration::from_secs(10);
    while strings(&client, HELD, &owner).await.len() < 5 && Instant::now() < holding {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let victim = &mut replicas[VICTIM];
    victim.child.kill().unwrap();
    victim.child.wait().unwrap();
    let killed_at = Instant::now();
    let held: Vec<String> = strings(&client, HELD, &owner).await;
    assert!(
        !held.is_empty(),
        "the killed replica held no rows: nothing to take over"
    );

    // The others take its rows over once their leases end, and finish them.
    let took = loop {
        let done: i64 = client
            .query_one(
                "SELECT COUNT(*) FROM deliveries WHERE state = 1 AND record_id = ANY($1)",
                &[&held],
            )
            .await
            .unwrap()
            .get(0);
        if done == held.len() as i64 {
            break killed_at.elapsed();
        }
        assert!(
            killed_at.elapsed() < LEASE + TAKEOVER_SLACK * 4,
            "{done} of the {} rows the killed replica held are finished {:?} after the kill",
            held.len(),
            killed_at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!(
        "the killed replica held {} rows; the others finished them {took:?} after the kill (lease {LEASE:?})",
        held.len()
    );
    assert!(
        took <= LEASE + TAKEOVER_SLACK,
        "takeover took {took:?}, more than the lease {LEASE:?} and {TAKEOVER_SLACK:?}"
    );

    let mut senders = senders;
    while let Some(done) = senders.join_next().await {
        done.unwrap();
    }
    let sent_in = started.elapsed();
    let by_event = std::mem::take(&mut *answers.by_event.lock().unwrap());
    let acknowledged: BTreeSet<String> = by_event
        .iter()
        .filter(|(_, a)| a.iter().any(|(_, answer)| answer.is_some()))
        .map(|(n, _)| record_id(*n))
        .collect();
    let resent = by_event.values().filter(|a| a.len() >= 2).count();
    assert!(resent >= EVENTS / 5, "{resent} events sent twice");

    // Exactly one replica answers an event id as new.
    for (n, answers) in &by_event {
        let new = answers.iter().filter(|(_, a)| *a == Some(false)).count();
        assert!(
            new <= 1,
            "event {n} answered as new {new} times: {answers:?}"
        );
        if answers.iter().all(|(_, a)| a.is_some()) {
            assert_eq!(new, 1, "event {n}: {answers:?}");
        }
    }

    // Every acknowledged event's record reaches the consumer.
    let deadline = Instant::now() + Duration::from_secs(60);
    let received: BTreeMap<String, usize> = loop {
        let mut received = BTreeMap::new();
        for r in consumer.received() {
            let id = r.header("webhook-id").unwrap_or_default().to_owned();
            *received.entry(id).or_insert(0) += 1;
        }
        let missing = acknowledged
            .iter()
            .filter(|id| !received.contains_key(*id))
            .count();
        if missing == 0 {
            break received;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} acknowledged records never reached the consumer"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    // And everything journaled is routed and delivered, the killed
    // replica's unanswered events included.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let unfinished = db
            .count(
                "SELECT (SELECT COUNT(*) FROM events WHERE state <> 1)
                 + (SELECT COUNT(*) FROM deliveries WHERE state <> 1)",
            )
            .await;
        if unfinished == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{unfinished} rows unfinished");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Each event routed once: one record per event, built once.
    let events = db.count("SELECT COUNT(*) FROM events").await;
    let records = db.count("SELECT COUNT(*) FROM records").await;
    let twice = db
        .count("SELECT COUNT(*) FROM (SELECT event_id FROM records GROUP BY event_id HAVING COUNT(*) > 1) t")
        .await;
    assert_eq!((records, twice), (events, 0), "one record per event");
    assert!(records as usize >= acknowledged.len());
    assert!(events as usize <= EVENTS);
    // A record reaches the consumer more than once only when its delivery
    // was tried again: settled as a retry, or taken over from the killed
    // replica.
    let retried: BTreeSet<String> = strings(
        &client,
        "SELECT record_id FROM deliveries WHERE attempts > 1 AND sink = $1",
        "shipping",
    )
    .await
    .into_iter()
    .chain(held.iter().cloned())
    .collect();
    let repeated: Vec<_> = received
        .iter()
        .filter(|(id, n)| **n > 1 && !retried.contains(*id))
        .collect();
    assert!(
        repeated.is_empty(),
        "delivered more than once without a retry: {repeated:?}"
    );
    let stored: BTreeSet<String> = strings(
        &client,
        "SELECT id FROM records WHERE route = $1",
        "paid-orders",
    )
    .await
    .into_iter()
    .collect();
    assert!(
        received.keys().all(|id| stored.contains(id)),
        "the consumer got only stored records"
    );

    for (n, replica) in replicas.iter_mut().enumerate() {
        if n != VICTIM {
            assert!(
                replica.child.try_wait().unwrap().is_none(),
                "replica {n} is still running:\n{}",
                replica.stderr.all().join("\n")
            );
        }
    }
    eprintln!(
        "{} events ({resent} sent twice), {} acknowledged, {records} records, {} deliveries to the consumer; sent in {sent_in:?}, finished in {:?}",
        by_event.len(),
        acknowledged.len(),
        received.values().sum::<usize>(),
        started.elapsed()
    );
}
