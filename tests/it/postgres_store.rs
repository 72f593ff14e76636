//! The PostgreSQL journal through the real binary: two `serve` replicas on
//! one database acknowledge an event id once and route it once; the
//! operator commands work against the shared database; `store migrate`
//! says the schema version of either backend; `check` judges `store.url`
//! without printing its password.
//!
//! They need a server: `STRIPE_ROUTER_TEST_DATABASE_URL` (each test makes
//! its own database and drops it). Without it they say they were skipped,
//! unless `CI` is set: then they fail.

use std::time::Duration;

use crate::consumer::Consumer;
use crate::events::{line_items, session_event};
use crate::harness::{Options, WAIT, eventually, run_router, spawn_with, text};
use crate::pg::TestDatabase;

const ROUTES: &str = r#"
store:
  url: ${DATABASE_URL}
  pool_size: 4
sinks:
  shipping: { type: http, url: "{shipping}", timeout: 2s, retry: { initial: 50ms, max: 200ms } }
routes:
  - name: paid-orders
    when: { type: checkout.session.completed, payment_status: paid }
    emit: order
    to: [shipping]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_database_acknowledge_and_route_an_event_once() {
    let Some(db) = TestDatabase::create("two_replicas_on_one_database").await else {
        return;
    };
    let shipping = Consumer::start().await;
    let replica = || {
        let mut options = Options::new(&ROUTES.replace("{shipping}", &shipping.url()));
        options
            .env
            .push(("DATABASE_URL".to_owned(), db.url.clone()));
        spawn_with(options)
    };
    let a = replica().await;
    let b = replica().await;
    let mut sent = 0;
    for n in 0..20 {
        let session = format!("cs_test_pg_{n}");
        a.stripe.add_session(&session, line_items());
        b.stripe.add_session(&session, line_items());
        let event = session_event(
            &format!("evt_pg_{n}"),
            "checkout.session.completed",
            &session,
            "paid",
        );
        // As Stripe retrying on the other replica: both at once.
        let (first, second) = tokio::join!(a.send(&event), b.send(&event));
        assert_eq!((first.status, second.status), (200, 200));
        let duplicates = [&first, &second]
            .iter()
            .filter(|answer| answer.body["duplicate"] == true)
            .count();
        assert_eq!(duplicates, 1, "{:?} {:?}", first.body, second.body);
        sent += 1;
    }
    let received = shipping.wait_for(sent, WAIT).await;
    let mut ids: Vec<String> = received
        .iter()
        .map(|r| r.json()["id"].as_str().unwrap_or_default().to_owned())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), sent, "each record delivered: {ids:?}");
    // No record was built twice: as many deliveries as records.
    let after = eventually(Duration::from_secs(2), || {
        (shipping.requests() >= sent).then_some(shipping.requests())
    })
    .await;
    assert_eq!(after, sent);

    // The operator commands read the shared database from anywhere.
    let listed = a.cli(&["deadletters", "--config", "routes.yaml"]);
    assert!(listed.contains("no dead letters"), "{listed}");
    let migrated = a.cli(&["store", "migrate", "--config", "routes.yaml"]);
    assert!(migrated.contains("up to date"), "{migrated}");
}

#[tokio::test]
async fn store_migrate_says_the_sqlite_version_before_and_after() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("routes.yaml"),
        "store: { path: data/journal.db }\nsinks:\n  c: { type: stdout }\nroutes:\n  - name: r\n    when: { type: \"*\" }\n    emit: event\n    to: c\n",
    )
    .unwrap();
    let first = run_router(dir.path(), &["store", "migrate"], &[]).await;
    assert!(first.status.success(), "{}", text(&first.stderr));
    assert!(
        text(&first.stdout).contains("schema version 0 -> 1"),
        "{}",
        text(&first.stdout)
    );
    let again = run_router(dir.path(), &["store", "migrate"], &[]).await;
    assert!(
        text(&again.stdout).contains("schema version 1, up to date"),
        "{}",
        text(&again.stdout)
    );
}

#[tokio::test]
async fn check_judges_store_url_without_connecting_or_printing_its_password() {
    let dir = tempfile::tempdir().unwrap();
    let routes = "store:\n  url: ${DATABASE_URL}\nsinks:\n  c: { type: stdout }\nroutes:\n  - name: r\n    when: { type: \"*\" }\n    emit: event\n    to: c\n";
    std::fs::write(dir.path().join("routes.yaml"), routes).unwrap();
    // Unset and allowed: not judged.
    let no_env = run_router(dir.path(), &["check", "--no-env"], &[]).await;
    assert!(
        no_env.status.success(),
        "{}{}",
        text(&no_env.stdout),
        text(&no_env.stderr)
    );
    // Malformed: said at its key, the password never shown.
    let bad = run_router(
        dir.path(),
        &["check", "--no-env"],
        &[(
            "DATABASE_URL",
            "postgres://router:hunter22@db.internal/orders?sslmode=maybe",
        )],
    )
    .await;
    let said = format!("{}{}", text(&bad.stdout), text(&bad.stderr));
    assert!(!bad.status.success(), "{said}");
    assert!(said.contains("routes.yaml:2:3"), "{said}");
    assert!(said.contains("sslmode=maybe"), "{said}");
    assert!(!said.contains("hunter22"), "{said}");
}
