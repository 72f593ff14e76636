//! The JSONL order log across `kill -9` (SPEC §6): after the router dies
//! mid-stream and starts again, every line of the file is whole JSON, each
//! record id is on exactly one line, and every acknowledged record is there.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::events::{Stream, line_items, session_event};
use crate::harness::{TestApp, WAIT, eventually, spawn_app};

/// Orders only, to one file, retried fast.
const ROUTES: &str = r#"
sinks:
  orders: { type: jsonl, path: sinks/orders.jsonl, retry: { initial: 50ms, max: 200ms } }
routes:
  - name: paid-orders
    when: { type: checkout.session.completed, payment_status: paid }
    emit: order
    to: [orders]
"#;
const FILE: &str = "sinks/orders.jsonl";
const TRIALS: usize = 6;
/// Events a trial may send; the kill comes long before they run out.
const PER_TRIAL: usize = 2_000;

/// Paid order `n`, padded to a few KB like a real order with many line items.
fn order(n: usize) -> Value {
    let mut event = session_event(
        &format!("evt_crash_{n}"),
        "checkout.session.completed",
        "cs_test_crash",
        "paid",
    );
    let padding = 2_000 + (n * 7_919) % 12_000;
    event["data"]["object"]["metadata"]["padding"] = json!("x".repeat(padding));
    event
}

/// What the file holds: the lines that are not whole JSON records, and how
/// many lines each record id has.
#[derive(Debug, Default)]
struct Contents {
    broken: Vec<String>,
    ids: BTreeMap<String, usize>,
    /// The file does not end with a newline.
    torn_end: bool,
}

impl Contents {
    fn read(app: &TestApp) -> Contents {
        let text = std::fs::read(app.path(FILE)).unwrap_or_default();
        let mut contents = Contents {
            torn_end: !text.is_empty() && !text.ends_with(b"\n"),
            ..Contents::default()
        };
        for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            match serde_json::from_slice::<Value>(line)
                .ok()
                .and_then(|record| record["id"].as_str().map(str::to_owned))
            {
                Some(id) => *contents.ids.entry(id).or_default() += 1,
                None => {
                    let shown = String::from_utf8_lossy(&line[..line.len().min(120)]);
                    contents
                        .broken
                        .push(format!("{shown}… ({} bytes)", line.len()));
                }
            }
        }
        contents
    }

    fn duplicated(&self) -> BTreeMap<&str, usize> {
        self.ids
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(id, n)| (id.as_str(), *n))
            .collect()
    }
}

/// Waits until the router has nothing left to route or deliver.
async fn settled(app: &TestApp) {
    app.wait_health_within(Duration::from_secs(30), |h| {
        h["queues"]["events_pending"] == 0
            && h["queues"]["sinks"]
                .as_object()
                .is_some_and(|s| s.is_empty())
    })
    .await;
}

#[tokio::test]
async fn kill_9_mid_stream_leaves_one_whole_line_per_record() {
    let mut app = spawn_app(ROUTES).await;
    app.stripe.add_session("cs_test_crash", line_items());
    let seed: u64 = rand::rng().random();
    eprintln!("seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut acknowledged = BTreeSet::new();
    let mut failures = Vec::new();
    let mut seen = (0, 0, 0);
    for trial in 0..TRIALS {
        let numbers = trial * PER_TRIAL..(trial + 1) * PER_TRIAL;
        let before = std::fs::metadata(app.path(FILE)).map_or(0, |m| m.len());
        let stream = Stream::start(&app, 6, numbers, order);
        // Killed while it writes: once the file has grown by a random amount.
        let grown = rng.random_range(16_000..400_000);
        eventually(Duration::from_secs(30), || {
            let len = std::fs::metadata(app.path(FILE)).map_or(0, |m| m.len());
            (len >= before + grown).then_some(())
        })
        .await;
        app.kill9();
        let this_trial = stream.finish().await;
        // A kill in the middle of a write leaves the first part of a line.
        // Linux (page cache, large folios) finishes a write of a few KB before
        // the process dies, so every other trial puts that part there itself: the start of the line of a
        // record that was acknowledged and not yet written, as it would be.
        let in_file = Contents::read(&app).ids;
        let unwritten: Vec<String> = this_trial
            .iter()
            .map(|event| format!("{event}:paid-orders"))
            .filter(|id| !in_file.contains_key(id))
            .collect();
        let torn = (trial % 2 == 0 && !unwritten.is_empty())
            .then(|| unwritten[rng.random_range(0..unwritten.len())].clone());
        if let Some(id) = &torn {
            let mut file = std::fs::OpenOptions::new()
                .append(true)
                .open(app.path(FILE))
                .unwrap();
            write!(file, r#"{{"id":"{id}","kind":"order","route":"paid-or"#).unwrap();
        }
        acknowledged.extend(
            this_trial
                .into_iter()
                .map(|event| format!("{event}:paid-orders")),
        );
        app.restart();
        settled(&app).await;
        let contents = Contents::read(&app);
        let duplicated = contents.duplicated();
        eprintln!(
            "trial {trial}: {} records, {} acknowledged in all, torn line {torn:?}, \
             {} duplicated ids, {} broken lines",
            contents.ids.len(),
            acknowledged.len(),
            duplicated.len(),
            contents.broken.len()
        );
        let missing: Vec<_> = acknowledged
            .iter()
            .filter(|id| !contents.ids.contains_key(*id))
            .collect();
        // What this trial added: earlier damage stays in the file.
        let problems = (duplicated.len(), contents.broken.len(), missing.len());
        if problems != seen || contents.torn_end {
            failures.push(format!(
                "trial {trial}: duplicated {duplicated:?}; broken lines {:?}; torn end {}; \
                 acknowledged but missing {missing:?}",
                contents.broken, contents.torn_end
            ));
        }
        seen = problems;
        if torn.is_some() && failures.is_empty() {
            // Completed in place, not cut off: a `tail -F` reader that saw
            // the first part gets the rest, and the file never shrinks.
            app.stderr.wait_for(WAIT, |l| {
                l.contains("completed the line a crash cut short")
                    .then_some(())
            });
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {TRIALS} trials (seed {seed}) left the file wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
