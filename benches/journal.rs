//! The SQLite journal alone: paid orders' writes through the real store
//! (its writer thread and group commit, its checkpoint thread), with no
//! HTTP, no routing and no sink around them. Each order is what scenario (b)
//! of `stripe-router-bench` writes for it: the event as received before its
//! 200, the order record with its one delivery row, and the settle once the
//! sink has it; `--writes unmatched` is scenario (a)'s one write of an
//! event no route wants. `--in-flight` orders run at once, as the
//! benchmark's 32 connections do, so commits group about as many writes.
//!
//! It prints the CPU time of the journal's own threads (from
//! `/proc/self/task/*/schedstat`, in nanoseconds) per order: what the
//! journal costs at least, whatever the router around it does. Compare it
//! with the router's profile, where the same threads are one area.
//!
//! ```sh
//! cargo bench --bench journal -- [--orders 20000] [--in-flight 32] [--fsync off] [--random-ids]
//!     [--writes unmatched|event|record|all]
//! ```

// A benchmark's figures are its output.
#![allow(clippy::print_stdout)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use stripe_router::clock::now_ms;
use stripe_router::config::StoreConfig;
use stripe_router::sinks::Encoded;
use stripe_router::store::{NewEvent, NewRecord, Routing, Settle, SqliteStore, Store};

mod support;

struct Options {
    orders: usize,
    in_flight: usize,
    fsync: bool,
    random_ids: bool,
    writes: Writes,
}

/// Which of an order's three writes run: the split of its cost; or an
/// unmatched event's one write, as scenario (a) makes it.
#[derive(Clone, Copy, PartialEq)]
enum Writes {
    /// An event no route wants: journaled as routed, nothing else.
    Unmatched,
    /// The event, as before its 200.
    Event,
    /// The event, then its record and delivery row.
    Record,
    /// The event, the record and delivery row, then the settle.
    All,
}

fn options() -> Options {
    let mut o = Options {
        orders: 20_000,
        in_flight: 32,
        fsync: true,
        random_ids: false,
        writes: Writes::All,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |name: &str| -> usize {
            args.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} takes a number"))
        };
        match arg.as_str() {
            "--orders" => o.orders = number("--orders").max(1),
            "--in-flight" => o.in_flight = number("--in-flight").max(1),
            "--fsync" => o.fsync = args.next().as_deref() != Some("off"),
            "--random-ids" => o.random_ids = true,
            "--writes" => {
                o.writes = match args.next().as_deref() {
                    Some("unmatched") => Writes::Unmatched,
                    Some("event") => Writes::Event,
                    Some("record") => Writes::Record,
                    Some("all") => Writes::All,
                    _ => panic!("--writes takes unmatched, event, record or all"),
                }
            }
            // `cargo bench` passes `--bench`; other harness flags are no concern here.
            _ => {}
        }
    }
    o
}

/// Event ids as the benchmark's load generator makes them (in order, as
/// Stripe's own ids mostly are), or scattered, for events that arrive out
/// of order (retries, several accounts).
fn event_id(n: usize, random: bool) -> String {
    if !random {
        return format!("evt_1Bench{n:010}");
    }
    let mut x = (n as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut id = String::from("evt_1");
    for _ in 0..24 {
        x ^= x >> 29;
        x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        id.push(alphabet[(x % 62) as usize] as char);
    }
    id
}

/// The event of scenario (b), pretty-printed as Stripe sends it, and its
/// order record with three line items, encoded as sinks receive it.
fn bodies() -> (Bytes, Bytes) {
    (
        Bytes::from(support::event_body()),
        support::encoded_order().body,
    )
}

/// CPU nanoseconds of this process's threads, by name.
fn thread_cpu() -> HashMap<String, u64> {
    let mut by_name = HashMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return by_name;
    };
    for task in tasks.flatten() {
        let path = task.path();
        let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        let ns = std::fs::read_to_string(path.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0);
        *by_name.entry(name.trim().to_owned()).or_insert(0) += ns;
    }
    by_name
}

async fn one_order(store: &dyn Store, writes: Writes, id: String, body: Bytes, record_body: Bytes) {
    let received_at_ms = now_ms();
    store
        .journal(NewEvent {
            id: id.clone(),
            kind: "checkout.session.completed".to_owned(),
            received_at_ms,
            body,
            routed: writes == Writes::Unmatched,
            leased: true,
        })
        .await
        .expect("journaled");
    if matches!(writes, Writes::Unmatched | Writes::Event) {
        return;
    }
    let record_id = format!("{id}:paid-orders");
    store
        .save_routing(
            &id,
            Routing {
                records: vec![NewRecord {
                    record: Encoded {
                        id: record_id.clone(),
                        body: record_body,
                    },
                    route: "paid-orders".to_owned(),
                    sinks: vec!["orders".to_owned()],
                }],
                failed: Vec::new(),
            },
        )
        .await
        .expect("routed");
    if writes == Writes::Record {
        return;
    }
    store
        .settle(&record_id, "orders", Settle::Delivered)
        .await
        .expect("settled");
}

/// The journal's threads, as `SqliteStore::open` names them and the kernel
/// keeps the names: 15 bytes at most.
const WRITER: &str = "journal-writer";
const CHECKPOINT: &str = "journal-checkpo";

fn main() {
    let o = options();
    let (body, record_body) = bodies();
    let dir = tempfile::tempdir().expect("a temporary folder");
    // The log's bound as `serve` has it by default.
    let wal_limit = StoreConfig::default().wal_limit;
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&dir.path().join("journal.db"), o.fsync, wal_limit)
            .expect("the journal opens"),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let before = thread_cpu();
    let started = Instant::now();
    runtime.block_on(async {
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..o.in_flight {
            let (store, next) = (store.clone(), next.clone());
            let (body, record_body) = (body.clone(), record_body.clone());
            let (orders, random, writes) = (o.orders, o.random_ids, o.writes);
            tasks.push(tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if n >= orders {
                        break;
                    }
                    let id = event_id(n, random);
                    one_order(
                        store.as_ref(),
                        writes,
                        id,
                        body.clone(),
                        record_body.clone(),
                    )
                    .await;
                }
            }));
        }
        for task in tasks {
            task.await.expect("a task ends");
        }
    });
    let elapsed = started.elapsed();
    let after = thread_cpu();
    if !after.contains_key(WRITER) {
        eprintln!("no thread CPU without Linux's /proc/self/task: the figures below are zero");
    }
    let spent = |names: &[&str]| -> f64 {
        let ns: u64 = after
            .iter()
            .filter(|(name, _)| names.contains(&name.as_str()))
            .map(|(name, ns)| ns.saturating_sub(before.get(name).copied().unwrap_or(0)))
            .sum();
        ns as f64 / 1e3 / o.orders as f64
    };
    println!(
        "journal: {} orders: {} ({} ids, {} in flight, fsync {}), event {} B, record {} B",
        o.orders,
        match o.writes {
            Writes::Unmatched => "unmatched events",
            Writes::Event => "the event only",
            Writes::Record => "the event, record and delivery row",
            Writes::All => "the event, record and delivery row, settle",
        },
        if o.random_ids { "scattered" } else { "ordered" },
        o.in_flight,
        if o.fsync { "on" } else { "off" },
        body.len(),
        record_body.len(),
    );
    println!(
        "  {:.0} orders/s; CPU per order: writer thread {:.1} µs, checkpoint thread {:.1} µs, \
         together {:.1} µs; the runtime's threads (the callers) {:.1} µs",
        o.orders as f64 / elapsed.as_secs_f64(),
        spent(&[WRITER]),
        spent(&[CHECKPOINT]),
        spent(&[WRITER, CHECKPOINT]),
        spent(&["tokio-rt-worker"]),
    );
}
