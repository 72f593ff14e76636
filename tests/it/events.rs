//! What tests send and what they read back: Stripe-shaped events built from
//! the composed fixtures, a stream of signed events from many senders, and
//! the record ids of a JSONL file.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use stripe_router::ingest::verify;

use crate::harness::{SECRET, TestApp, eventually, now, pretty, read_jsonl};

/// A composed Stripe fixture from tests/fixtures/stripe/composed.
pub fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/stripe/composed/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// A Checkout Session event shaped like the composed fixture, with fresh ids.
pub fn session_event(event_id: &str, kind: &str, session_id: &str, payment_status: &str) -> Value {
    let mut event = fixture("event_checkout.session.completed_paid.json");
    event["id"] = json!(event_id);
    event["type"] = json!(kind);
    event["created"] = json!(now());
    let session = &mut event["data"]["object"];
    session["id"] = json!(session_id);
    session["payment_status"] = json!(payment_status);
    session["customer_details"]["name"] = json!("Jenny Rosen");
    session["customer_details"]["email"] = json!("jenny.rosen@example.com");
    session["customer_details"]["address"] = json!({
        "city": "San Francisco", "country": "US", "line1": "510 Townsend St",
        "line2": null, "postal_code": "94103", "state": "CA"
    });
    session["metadata"] = json!({"channel": "web"});
    event
}

/// The two line items of the composed fixture pages (5198 in all).
pub fn line_items() -> Vec<Value> {
    [
        "line_items_page1_has_more.json",
        "line_items_page2_last.json",
    ]
    .iter()
    .flat_map(|page| fixture(page)["data"].as_array().unwrap().clone())
    .collect()
}

/// The `id`s of records.
pub fn ids(records: &[Value]) -> BTreeSet<String> {
    records
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Waits until every acknowledged record id is in the JSONL file at
/// `relative`, then asserts that nothing else is (nothing that was refused).
pub async fn assert_exactly_delivered(
    app: &TestApp,
    relative: &str,
    acknowledged: &BTreeSet<String>,
    timeout: Duration,
) {
    let delivered = eventually(timeout, || {
        let got = ids(&read_jsonl(&app.path(relative)));
        acknowledged.is_subset(&got).then_some(got)
    })
    .await;
    assert_eq!(
        delivered.len(),
        acknowledged.len(),
        "and nothing that was refused"
    );
}

/// Senders that post signed events to a router as fast as it answers, each
/// taking the next number, until the numbers run out or the router stops
/// answering (a kill). Remembers which events were acknowledged with 200.
pub struct Stream {
    acknowledged: Arc<Mutex<BTreeSet<String>>>,
    senders: tokio::task::JoinSet<()>,
}

impl Stream {
    /// `senders` at once post `event(n)` for every `n` in `numbers`.
    pub fn start(
        app: &TestApp,
        senders: usize,
        numbers: std::ops::Range<usize>,
        event: impl Fn(usize) -> Value + Send + Sync + 'static,
    ) -> Stream {
        let acknowledged = Arc::new(Mutex::new(BTreeSet::new()));
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(numbers.start));
        let event = Arc::new(event);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..senders {
            let (acknowledged, next, event) = (acknowledged.clone(), next.clone(), event.clone());
            let (http, url, end) = (app.http.clone(), app.url("/api/webhook"), numbers.end);
            tasks.spawn(async move {
                loop {
                    let n = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if n >= end {
                        break;
                    }
                    let event = event(n);
                    let body = pretty(&event);
                    let signature = verify::sign(&body, SECRET, now());
                    let sent = http
                        .post(&url)
                        .header("Stripe-Signature", signature)
                        .body(body)
                        .send()
                        .await;
                    match sent {
                        Ok(response) if response.status() == 200 => {
                            let id = event["id"].as_str().unwrap_or_default().to_owned();
                            acknowledged.lock().unwrap().insert(id);
                        }
                        Ok(_) | Err(_) => break,
                    }
                }
            });
        }
        Stream {
            acknowledged,
            senders: tasks,
        }
    }

    /// How many events were acknowledged so far.
    pub fn acknowledged(&self) -> usize {
        self.acknowledged.lock().unwrap().len()
    }

    /// Waits for every sender to stop; the ids of the acknowledged events.
    pub async fn finish(mut self) -> BTreeSet<String> {
        while self.senders.join_next().await.is_some() {}
        self.acknowledged.lock().unwrap().clone()
    }
}
