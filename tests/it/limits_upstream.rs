//! Limits on what the other side of an outbound connection controls: the
//! Stripe API's pages, items and bytes; a stdout reader that stopped
//! reading; and the files the JSONL sink leaves on disk.

use std::time::{Duration, Instant};

use serde_json::Value;
use stripe_router::standin::{Misbehaviour, catalogue_items};

use crate::flow::{line_items, session_event};
use crate::harness::{TestApp, WAIT, read_jsonl, spawn_app};

/// Polls `deadletters --json` until it lists `n` dead letters.
async fn wait_dead_letters(app: &TestApp, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let listed: Vec<Value> = app
            .cli(&["deadletters", "--json"])
            .lines()
            .map(|line| serde_json::from_str(line).expect("one JSON object a line"))
            .collect();
        if listed.len() >= n {
            return listed;
        }
        assert!(
            Instant::now() < deadline,
            "{} dead letters within {WAIT:?}, not {n}: {listed:?}",
            listed.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

const API_LIMITS: &str = r#"
stripe: { max_pages: 3, max_line_items: 250, max_response: 1MiB }
sinks:
  orders: { type: jsonl, path: sinks/orders.jsonl }
  shipping: { type: http, url: "{consumer}", timeout: 5s }
routes:
  - name: paid-orders
    when: { type: checkout.session.completed, payment_status: paid }
    emit: order
    to: [orders, shipping]
"#;

#[tokio::test]
async fn a_stripe_api_past_its_bounds_makes_dead_letters_saying_which_bound() {
    let app = spawn_app(API_LIMITS).await;
    // (session, what the stand-in does, the bound its dead letter names)
    let cases = [
        (
            "cs_test_endless",
            Some(Misbehaviour::EndlessPages { per_page: 1 }),
            "stripe.max_pages (3)",
        ),
        ("cs_test_many", None, "stripe.max_line_items (250)"),
        (
            "cs_test_huge_announced",
            Some(Misbehaviour::Huge {
                bytes: 64 * 1024 * 1024,
                announced: true,
            }),
            "stripe.max_response (1MiB)",
        ),
        (
            "cs_test_huge_chunked",
            Some(Misbehaviour::Huge {
                bytes: 64 * 1024 * 1024,
                announced: false,
            }),
            "stripe.max_response (1MiB)",
        ),
    ];
    for (session, how, _) in &cases {
        match how {
            Some(how) => app.stripe.misbehave(session, *how),
            None => app.stripe.add_session(session, catalogue_items(251)),
        }
        let event_id = format!("evt_{session}");
        let answer = app
            .send(&session_event(
                &event_id,
                "checkout.session.completed",
                session,
                "paid",
            ))
            .await;
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
    // A real session next to them is delivered as usual.
    app.stripe.add_session("cs_test_real", line_items());
    let real = session_event(
        "evt_real",
        "checkout.session.completed",
        "cs_test_real",
        "paid",
    );
    assert_eq!(app.send(&real).await.status, 200);

    let dead = wait_dead_letters(&app, cases.len()).await;
    assert_eq!(dead.len(), cases.len(), "{dead:?}");
    for (session, _, bound) in &cases {
        let event_id = format!("evt_{session}");
        let letter = dead
            .iter()
            .find(|d| d["event_id"] == event_id.as_str())
            .unwrap_or_else(|| panic!("no dead letter for {event_id}: {dead:?}"));
        let error = letter["last_error"].as_str().unwrap_or_default();
        assert!(
            error.contains(bound) && error.contains(session),
            "{event_id}: {error}"
        );
        // Logged too, as a dead letter, once.
        app.stderr.wait_for(WAIT, |line| {
            (line.contains(&event_id) && line.contains(bound) && line.contains("dead letter"))
                .then_some(())
        });
    }

    let orders = app.wait_lines("sinks/orders.jsonl", 1).await;
    assert_eq!(orders.len(), 1, "only the real order: {orders:?}");
    assert_eq!(orders[0]["id"], "evt_real:paid-orders");
    assert_eq!(app.consumer.wait_for(1, WAIT).await.len(), 1);
    // Permanent: nothing was retried. 3 pages, 3 pages of 100 items (the
    // 251st is refused on the third), one answer each for the huge ones and
    // one for the real session.
    assert_eq!(app.stripe.requests(), 3 + 3 + 1 + 1 + 1);
    assert_eq!(read_jsonl(&app.path("sinks/orders.jsonl")).len(), 1);
}
