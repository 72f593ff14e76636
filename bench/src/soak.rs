//! `soak`: sustained load at full speed for a fixed time, watching the
//! journal's files on disk. Their size must follow the events the journal
//! holds, never the load: the write-ahead log in particular stays under its
//! bound however long the load lasts.
//!
//! Events are made while sending, from one template whose fixed-width event
//! id is rewritten and which is signed again, so that a run of any length
//! needs no memory for its events.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::header::{CONTENT_TYPE, HOST, HeaderValue};

use crate::load::{self, Kind, Sent};
use crate::procs;

#[derive(Debug, clap::Args)]
pub struct SoakArgs {
    /// How long to send.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Connections sending at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// What to send: paid orders (enriched, written to JSONL) or events no
    /// route matches (verified, journaled, answered).
    #[arg(long, value_enum, default_value_t = SoakKind::Order)]
    kind: SoakKind,
    /// Sets `store.wal_limit` (left to the router's default when absent).
    #[arg(long)]
    wal_limit: Option<String>,
    /// The router binary under test.
    #[arg(long, default_value = "target/release/stripe-router")]
    router: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum SoakKind {
    Order,
    Unmatched,
}

/// Largest sizes seen, in bytes.
#[derive(Debug, Clone, Copy, Default)]
struct Peaks {
    db: u64,
    wal: u64,
    shm: u64,
    total: u64,
}

/// The journal's three files, sampled every 10 ms on a thread.
struct Watch {
    peaks: Arc<Mutex<Peaks>>,
    running: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    journal: PathBuf,
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

fn sizes(journal: &Path) -> Peaks {
    let with = |suffix: &str| {
        let mut name = journal.as_os_str().to_owned();
        name.push(suffix);
        file_size(Path::new(&name))
    };
    let (db, wal, shm) = (file_size(journal), with("-wal"), with("-shm"));
    Peaks {
        db,
        wal,
        shm,
        total: db + wal + shm,
    }
}

impl Watch {
    fn start(journal: PathBuf) -> Watch {
        let peaks = Arc::new(Mutex::new(Peaks::default()));
        let running = Arc::new(AtomicBool::new(true));
        let thread = std::thread::spawn({
            let (peaks, running, journal) = (peaks.clone(), running.clone(), journal.clone());
            move || {
                while running.load(Ordering::Relaxed) {
                    let now = sizes(&journal);
                    let mut p = peaks.lock().unwrap_or_else(|e| e.into_inner());
                    p.db = p.db.max(now.db);
                    p.wal = p.wal.max(now.wal);
                    p.shm = p.shm.max(now.shm);
                    p.total = p.total.max(now.total);
                    drop(p);
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        });
        Watch {
            peaks,
            running,
            thread: Some(thread),
            journal,
        }
    }

    /// The peaks so far, starting afresh.
    fn take(&self) -> Peaks {
        std::mem::take(&mut *self.peaks.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn now(&self) -> Peaks {
        sizes(&self.journal)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.running.store(false, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

pub fn run(args: &SoakArgs) -> anyhow::Result<()> {
    let router = crate::router_binary(&args.router)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(soak(&router, args))
}

async fn soak(router_bin: &Path, args: &SoakArgs) -> anyhow::Result<()> {
    let kind = match args.kind {
        SoakKind::Order => Kind::Order,
        SoakKind::Unmatched => Kind::Unmatched,
    };
    eprintln!(
        "== soak: {:?} events for {} s, {} connections, router {}",
        args.kind,
        args.seconds,
        args.concurrency,
        router_bin.display()
    );
    let dir = tempfile::Builder::new()
        .prefix("stripe-router-soak")
        .tempdir()?;
    let standin = procs::helper(&["standin", "--key", crate::API_KEY])?;
    let mut routes = crate::routes_yaml(true, None);
    if let Some(limit) = &args.wal_limit {
        routes = routes.replace(
            "fsync: true }",
            &format!("fsync: true, wal_limit: {limit} }}"),
        );
    }
    std::fs::write(dir.path().join("routes.yaml"), routes)?;
    let env = [
        ("STRIPE_WEBHOOK_SECRET", crate::WEBHOOK_SECRET.to_owned()),
        ("STRIPE_SECRET_API_KEY", crate::API_KEY.to_owned()),
        ("STRIPE_API_BASE", format!("http://{}", standin.addr)),
    ];
    let (router, _) = procs::router(router_bin, dir.path(), &env)?;
    let watch = Watch::start(dir.path().join("data/journal.db"));

    let template = load::prepare(kind, 1, true)
        .pop()
        .context("one event to copy")?
        .body;
    let sent = send_for(
        router.addr,
        template,
        args.concurrency,
        Duration::from_secs(args.seconds),
    )
    .await?;
    let during = watch.take();
    let answered = sent.statuses.get(&200).copied().unwrap_or(0);

    // After the load: the router routes and delivers what it acknowledged
    // (orders), then the journal is idle.
    let after_started = Instant::now();
    let jsonl = dir.path().join("sinks/orders.jsonl");
    let drained = if kind == Kind::Order {
        loop {
            let lines = std::fs::read(&jsonl)
                .map(|b| b.iter().filter(|&&c| c == b'\n').count() as u64)
                .unwrap_or(0);
            if lines >= answered {
                break Some(after_started.elapsed());
            }
            if after_started.elapsed() > Duration::from_secs(300) {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    } else {
        None
    };
    // A few idle seconds: checkpoints catch up and the log is cut back.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = watch.take();
    let end = watch.now();
    let usage = router.usage();
    drop(watch);
    drop(router);

    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let rate = answered as f64 / sent.elapsed.as_secs_f64();
    println!(
        "\n### soak: {:?}, {} s, {} connections",
        args.kind, args.seconds, args.concurrency
    );
    let statuses: Vec<String> = sent
        .statuses
        .iter()
        .map(|(s, n)| format!("{s}: {n}"))
        .collect();
    println!(
        "answered 200: {answered} in {:.1} s: {rate:.0} events/s (statuses {}, transport errors {})",
        sent.elapsed.as_secs_f64(),
        statuses.join(", "),
        sent.errors
    );
    println!(
        "answer latency: p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
        sent.answers.value_at_quantile(0.5) as f64 / 1000.0,
        sent.answers.value_at_quantile(0.99) as f64 / 1000.0,
        sent.answers.value_at_quantile(0.999) as f64 / 1000.0,
        sent.answers.max() as f64 / 1000.0
    );
    if kind == Kind::Order {
        match drained {
            Some(d) => println!(
                "every acknowledged order in JSONL {:.1} s after the load stopped",
                d.as_secs_f64()
            ),
            None => println!("NOT every acknowledged order reached JSONL within 300 s"),
        }
    }
    println!(
        "journal on disk during the load, largest: total {:.1} MiB (db {:.1}, wal {:.1}, shm {:.2})",
        mib(during.total),
        mib(during.db),
        mib(during.wal),
        mib(during.shm)
    );
    println!(
        "after the load, largest: total {:.1} MiB (db {:.1}, wal {:.1}, shm {:.2}); at the end: db {:.1}, wal {:.1}, shm {:.2}",
        mib(after.total),
        mib(after.db),
        mib(after.wal),
        mib(after.shm),
        mib(end.db),
        mib(end.wal),
        mib(end.shm)
    );
    println!(
        "router: peak RSS {:.1} MiB, CPU {:.1} s",
        usage.peak_rss_kib as f64 / 1024.0,
        usage.cpu_secs
    );
    Ok(())
}

/// Sends events made from `template` over `concurrency` connections until
/// `duration` has passed.
async fn send_for(
    addr: SocketAddr,
    template: Bytes,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<Sent> {
    let first_id = load::event_id(0);
    let at = template
        .windows(first_id.len())
        .position(|w| w == first_id.as_bytes())
        .context("the template holds its event id")?;
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (template, next) = (template.clone(), next.clone());
        tasks.spawn(async move { connection(addr, &template, at, &next, deadline).await });
    }
    Sent::gather(tasks, started).await
}

async fn connection(
    addr: SocketAddr,
    template: &[u8],
    id_at: usize,
    next: &AtomicUsize,
    deadline: Instant,
) -> anyhow::Result<Sent> {
    let mut sent = Sent::new();
    let host = HeaderValue::try_from(addr.to_string())?;
    let mut sender = load::connect(addr).await?;
    let mut body = template.to_vec();
    while Instant::now() < deadline {
        let id = load::event_id(next.fetch_add(1, Ordering::Relaxed));
        body[id_at..id_at + id.len()].copy_from_slice(id.as_bytes());
        let signature = stripe_router::ingest::verify::sign(
            &body,
            crate::WEBHOOK_SECRET,
            stripe_router::clock::unix_now(),
        );
        let request = Request::post("/api/webhook")
            .header(HOST, host.clone())
            .header(CONTENT_TYPE, "application/json; charset=utf-8")
            .header("stripe-signature", signature)
            .body(Full::new(Bytes::copy_from_slice(&body)))?;
        if sender.ready().await.is_err() {
            sender = load::connect(addr).await?;
        }
        let start = Instant::now();
        match sender.send_request(request).await {
            Ok(response) => {
                let status = response.status().as_u16();
                let read = response.into_body().collect().await;
                sent.answers
                    .saturating_record((start.elapsed().as_micros() as u64).max(1));
                if read.is_err() {
                    sent.errors += 1;
                }
                *sent.statuses.entry(status).or_default() += 1;
            }
            Err(_) => {
                sent.errors += 1;
                sender = load::connect(addr).await?;
            }
        }
    }
    Ok(sent)
}
