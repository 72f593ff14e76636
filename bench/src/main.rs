//! `stripe-router-bench`: runs the release router under load and reports
//! what it did: acknowledged events/s, end-to-end records/s (first send
//! until the last record is in the JSONL file), the backlog when the last
//! answer arrived, answer latency, send-to-JSONL latency, status codes, and
//! the CPU time and peak memory of the router and its helpers.
//!
//! Each scenario gets a fresh folder with its own `routes.yaml`, journal and
//! sink files, a fresh router process, and (when it needs them) a Stripe API
//! stand-in and an HTTP consumer in their own processes. With `--store
//! postgres` the journal is a fresh database on a PostgreSQL server, whose
//! CPU time is counted beside the router's, and `--replicas N` runs N
//! routers on it, each in its own folder, the senders' connections spread
//! over them round robin.

mod load;
mod postgres;
mod procs;
mod services;
mod soak;
mod tail;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use hdrhistogram::Histogram;

use load::Kind;
use procs::{Process, Usage};

/// The endpoint secret the router verifies with (a test value).
pub const WEBHOOK_SECRET: &str = "whsec_benchmarkbenchmarkbenchmark00";
const API_KEY: &str = "sk_test_benchmark0000000000000000";

#[derive(Debug, Parser)]
#[command(
    name = "stripe-router-bench",
    about = "Load generator for stripe-router"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run scenarios against the router binary and print their figures.
    ///
    /// Example: cargo build --release && cargo run --release -p stripe-router-bench -- run
    Run(RunArgs),
    /// Send at full speed for a fixed time and watch the journal's size on
    /// disk (database, write-ahead log, shared memory) during and after.
    ///
    /// Example: cargo run --release -p stripe-router-bench -- soak --seconds 60
    Soak(soak::SoakArgs),
    /// (started by `run`) The Stripe API stand-in: 3 line items for any session.
    Standin {
        #[arg(long)]
        key: String,
        /// Every answer waits this long first (a slow Stripe API).
        #[arg(long, default_value_t = 0)]
        delay_ms: u64,
    },
    /// (started by `run`) An HTTP consumer that answers 200 and counts.
    Consumer,
}

/// The scenarios `run` runs when none are named: every one on SQLite; on
/// PostgreSQL those that do not switch SQLite's fsync off.
const ALL_SCENARIOS: &str = "refused,a,a-nofsync,b,b-nofsync,c,d,e,f,f-large,reload";
const POSTGRES_SCENARIOS: &str = "a,b,c,d,e,f,f-large";

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Scenarios to run, in order [default: refused,a,a-nofsync,b,b-nofsync,c,d,e,f,f-large,reload;
    /// with --store postgres: a,b,c,d,e,f,f-large].
    #[arg(long, value_delimiter = ',')]
    scenario: Option<Vec<Scenario>>,
    /// Where the routers journal: an embedded SQLite file each, or one
    /// PostgreSQL database (a fresh one per scenario, on the server of
    /// --database-url) that every replica shares.
    #[arg(long, value_enum, default_value_t = StoreKind::Sqlite)]
    store: StoreKind,
    /// The PostgreSQL server for --store postgres, as a user that may
    /// create databases; it must run on this machine for its CPU time to
    /// be counted.
    #[arg(long, env = "STRIPE_ROUTER_TEST_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Routers sharing the load (each in its own folder, on one PostgreSQL
    /// database); more than one needs --store postgres.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=16))]
    replicas: u16,
    /// Events per scenario (a, b, c).
    #[arg(long, default_value_t = 30_000)]
    events: usize,
    /// Events of about 100 KB (d).
    #[arg(long, default_value_t = 3_000)]
    large_events: usize,
    /// Events in the burst (e).
    #[arg(long, default_value_t = 50_000)]
    burst_events: usize,
    /// Events sent while the Stripe API answers slowly (f).
    #[arg(long, default_value_t = 5_000)]
    slow_api_events: usize,
    /// Events of about 100 KB sent while the Stripe API answers slowly
    /// (f-large).
    #[arg(long, default_value_t = 2_000)]
    slow_api_large_events: usize,
    /// Connections sending at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// The router binary under test.
    #[arg(long, default_value = "target/release/stripe-router")]
    router: PathBuf,
    /// `on`: the admin listener is on and `/metrics` is scraped every second
    /// during a scenario, as a tightly set Prometheus would; `off`: the
    /// admin listener is off and nothing scrapes. The router records its
    /// metrics either way (recording is not switchable); compare with the
    /// micro-benchmark `metrics_record_answer` for that part alone.
    #[arg(long, value_enum, default_value_t = Admin::On)]
    admin: Admin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Admin {
    On,
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum StoreKind {
    Sqlite,
    Postgres,
}

/// Where a scenario's routers journal, and how many there are.
#[derive(Debug, Clone, Copy)]
struct Setup<'a> {
    /// The PostgreSQL server, or `None` for SQLite.
    server: Option<&'a str>,
    replicas: usize,
}

impl Setup<'_> {
    /// What the report's headings add to a scenario's label.
    fn describe(&self) -> String {
        match (self.server, self.replicas) {
            (None, _) => String::new(),
            (Some(_), 1) => " [PostgreSQL]".to_owned(),
            (Some(_), n) => format!(" [PostgreSQL, {n} replicas]"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// (a)'s events with a `Stripe-Signature` header that is not one:
    /// read, refuse with 400. What a request costs the webhook port before
    /// any hash, parse or journal write.
    Refused,
    /// Events no route matches: verify, journal, answer.
    A,
    /// (a) with the journal's fsync off, to show what durability costs.
    ANofsync,
    /// Paid orders, 3 line items, enriched and written to JSONL.
    B,
    /// (b) with the journal's fsync off.
    BNofsync,
    /// (b) to JSONL plus an HTTP consumer.
    C,
    /// (b) with 100 KB events.
    D,
    /// A burst of paid orders as fast as possible; time to the last record.
    E,
    /// (b) while the Stripe API answers each request after 200 ms: the
    /// router falls behind, and events wait in its queue past their lease.
    /// Counts the Stripe API requests per order (the admin listener is on
    /// for it, to read `/metrics` at the end).
    F,
    /// (f) with (d)'s 100 KB events: what the router's queue holds while
    /// it is behind is bounded in bytes, not only in events.
    FLarge,
    /// Start-up time and how soon a saved routes.yaml applies.
    Reload,
}

impl Scenario {
    fn label(self) -> &'static str {
        match self {
            Scenario::Refused => "refused: no signature (read, 400)",
            Scenario::A => "a: unmatched (verify, journal, answer)",
            Scenario::ANofsync => "a: unmatched, fsync off",
            Scenario::B => "b: orders -> JSONL",
            Scenario::BNofsync => "b: orders -> JSONL, fsync off",
            Scenario::C => "c: orders -> JSONL + HTTP",
            Scenario::D => "d: 100 KB orders -> JSONL",
            Scenario::E => "e: burst -> JSONL",
            Scenario::F => "f: slow Stripe API (200 ms) -> JSONL",
            Scenario::FLarge => "f-large: slow Stripe API, 100 KB orders -> JSONL",
            Scenario::Reload => "reload",
        }
    }

    fn kind(self) -> Kind {
        match self {
            Scenario::Refused | Scenario::A | Scenario::ANofsync => Kind::Unmatched,
            Scenario::D | Scenario::FLarge => Kind::LargeOrder,
            _ => Kind::Order,
        }
    }

    fn fsync(self) -> bool {
        !matches!(self, Scenario::ANofsync | Scenario::BNofsync)
    }

    fn signed(self) -> bool {
        self != Scenario::Refused
    }

    fn delivers(self) -> bool {
        self.kind() != Kind::Unmatched
    }

    /// How long the Stripe stand-in waits before each answer.
    fn api_delay_ms(self) -> u64 {
        if self.slow_api() { SLOW_API_MS } else { 0 }
    }

    /// (f) and (f-large): the Stripe API answers slowly, and the requests
    /// it got per order are counted.
    fn slow_api(self) -> bool {
        matches!(self, Scenario::F | Scenario::FLarge)
    }
}

/// The Stripe API's answer time in (f).
const SLOW_API_MS: u64 = 200;

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Standin { key, delay_ms } => services::standin(&key, delay_ms),
        Command::Consumer => services::consumer(),
        Command::Run(args) => run(&args),
        Command::Soak(args) => soak::run(&args),
    }
}

/// One scenario's figures.
struct Outcome {
    scenario: Scenario,
    /// The store and replicas, as the label's suffix.
    setup: String,
    events: usize,
    body_bytes: usize,
    started: Duration,
    sent: load::Sent,
    tailed: Option<tail::Tailed>,
    /// Records not yet in the JSONL file when the last answer arrived.
    backlog: Option<usize>,
    consumer_received: Option<u64>,
    /// Stripe API requests the routers made (`/metrics`), when read.
    api_requests: Option<u64>,
    /// Every replica's CPU summed; the largest peak RSS of one.
    router: Usage,
    /// The PostgreSQL server's CPU seconds over the run (`None` on SQLite,
    /// or when the server is not on this machine).
    database_cpu: Option<f64>,
    standin: Option<Usage>,
    consumer: Option<Usage>,
    loadgen_cpu: f64,
}

/// The router binary under test, as an absolute path (routers run in
/// their own folders).
fn router_binary(path: &Path) -> anyhow::Result<PathBuf> {
    std::fs::canonicalize(path).with_context(|| {
        format!(
            "no router binary at {} (run `cargo build --release` first)",
            path.display()
        )
    })
}

fn run(args: &RunArgs) -> anyhow::Result<()> {
    let router = router_binary(&args.router)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let server = match args.store {
        StoreKind::Sqlite if args.replicas > 1 => {
            anyhow::bail!(
                "--replicas {} needs --store postgres: replicas on SQLite would each have a journal of their own",
                args.replicas
            )
        }
        StoreKind::Sqlite => None,
        StoreKind::Postgres => Some(args.database_url.as_deref().context(
            "--store postgres needs --database-url postgres://... (or STRIPE_ROUTER_TEST_DATABASE_URL)",
        )?),
    };
    let setup = Setup {
        server,
        replicas: usize::from(args.replicas),
    };
    let scenarios = match &args.scenario {
        Some(named) => named.clone(),
        None => {
            let all = if server.is_some() {
                POSTGRES_SCENARIOS
            } else {
                ALL_SCENARIOS
            };
            all.split(',')
                .map(|s| Scenario::from_str(s, true).map_err(anyhow::Error::msg))
                .collect::<anyhow::Result<_>>()?
        }
    };
    if server.is_some()
        && let Some(s) = scenarios.iter().find(|s| !s.fsync())
    {
        anyhow::bail!(
            "{}: fsync is SQLite's setting; on PostgreSQL it is the server's (synchronous_commit)",
            s.label()
        );
    }
    let mut outcomes = Vec::new();
    for &scenario in &scenarios {
        if scenario == Scenario::Reload {
            reload(&router)?;
            continue;
        }
        let events = match scenario {
            Scenario::D => args.large_events,
            Scenario::E => args.burst_events,
            Scenario::F => args.slow_api_events,
            Scenario::FLarge => args.slow_api_large_events,
            _ => args.events,
        };
        let outcome = runtime.block_on(run_scenario(
            &router,
            scenario,
            events,
            args.concurrency,
            args.admin,
            setup,
        ))?;
        report(&outcome);
        outcomes.push(outcome);
    }
    summary(&outcomes, args.concurrency);
    Ok(())
}

/// routes.yaml on SQLite (`store.fsync` as given) or, with `database`, on
/// the PostgreSQL database `${DATABASE_URL}` names.
fn routes_yaml(fsync: bool, consumer: Option<&Process>) -> String {
    routes_yaml_on(
        &format!("{{ path: data/journal.db, fsync: {fsync} }}"),
        consumer,
    )
}

fn routes_yaml_on(store: &str, consumer: Option<&Process>) -> String {
    let (http_sink, to) = match consumer {
        Some(c) => (
            format!(
                "  shipping: {{ type: http, url: \"http://{}/orders\" }}\n",
                c.addr
            ),
            "[orders, shipping]",
        ),
        None => (String::new(), "[orders]"),
    };
    format!(
        "store: {store}
sinks:
  orders: {{ type: jsonl, path: sinks/orders.jsonl }}
{http_sink}routes:
  - name: paid-orders
    when:
      type: [checkout.session.completed, checkout.session.async_payment_succeeded]
      payment_status: paid
    emit: order
    to: {to}
"
    )
}

/// Scrapes `/metrics` every second on its own thread until finished.
struct Scraper {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(u64, u64)>,
}

impl Scraper {
    fn start(admin: std::net::SocketAddr) -> Scraper {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let stop = stop.clone();
            move || {
                let (mut scrapes, mut failed) = (0, 0);
                while !stop.load(Ordering::Relaxed) {
                    match procs::http_get(admin, "/metrics") {
                        Some((200, _)) => scrapes += 1,
                        _ => failed += 1,
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
                (scrapes, failed)
            }
        });
        Scraper { stop, thread }
    }

    /// Stops scraping: how many scrapes answered 200, how many did not.
    fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or((0, 0))
    }
}

async fn run_scenario(
    router_bin: &Path,
    scenario: Scenario,
    n: usize,
    concurrency: usize,
    admin: Admin,
    setup: Setup<'_>,
) -> anyhow::Result<Outcome> {
    // (f) reads the routers' Stripe API request counts from `/metrics`.
    let admin = if scenario.slow_api() {
        Admin::On
    } else {
        admin
    };
    eprintln!(
        "== {}{} ({n} events, {concurrency} connections, admin {admin:?})",
        scenario.label(),
        setup.describe()
    );
    let dir = tempfile::Builder::new()
        .prefix("stripe-router-bench")
        .tempdir()?;
    let delay = scenario.api_delay_ms().to_string();
    let standin = procs::helper(&["standin", "--key", API_KEY, "--delay-ms", &delay])?;
    let consumer = match scenario {
        Scenario::C => Some(procs::helper(&["consumer"])?),
        _ => None,
    };
    let database = match setup.server {
        Some(server) => Some(postgres::Database::create(server).await?),
        None => None,
    };
    let postmaster = match setup.server {
        Some(server) => postgres::postmaster(server)
            .await
            .inspect_err(|e| eprintln!("PostgreSQL's CPU is not counted: {e:#}"))
            .ok(),
        None => None,
    };
    let routes = match &database {
        Some(_) => routes_yaml_on("{ url: \"${DATABASE_URL}\" }", consumer.as_ref()),
        None => routes_yaml(scenario.fsync(), consumer.as_ref()),
    };
    let events = Arc::new(load::prepare(scenario.kind(), n, scenario.signed()));
    let body_bytes = events.iter().map(|e| e.body.len()).sum::<usize>() / n.max(1);
    let mut env = vec![
        ("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET.to_owned()),
        ("STRIPE_SECRET_API_KEY", API_KEY.to_owned()),
        ("STRIPE_API_BASE", format!("http://{}", standin.addr)),
    ];
    if let Some(database) = &database {
        env.push(("DATABASE_URL", database.url.clone()));
    }
    // One folder per replica: its routes.yaml, log and JSONL file.
    let folders: Vec<PathBuf> = (0..setup.replicas)
        .map(|i| match setup.replicas {
            1 => dir.path().to_path_buf(),
            _ => dir.path().join(format!("replica-{i}")),
        })
        .collect();
    let mut routers = Vec::new();
    let mut started = Duration::ZERO;
    for folder in &folders {
        std::fs::create_dir_all(folder)?;
        std::fs::write(folder.join("routes.yaml"), &routes)?;
        let (router, took) = procs::router_with(router_bin, folder, &env, admin == Admin::On)?;
        started = started.max(took);
        // For `perf record -p` during a run.
        eprintln!("router pid {}", router.pid());
        routers.push(router);
    }
    let scrapers: Vec<Scraper> = routers
        .iter()
        .filter_map(|r| r.admin.map(Scraper::start))
        .collect();

    let loadgen_before = procs::usage("self")?.cpu_secs;
    let database_before = postmaster.map(postgres::server_cpu_secs);
    let sent_at: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
    let t0 = Instant::now();
    let tail = scenario.delivers().then(|| {
        let files = folders.iter().map(|f| f.join("sinks/orders.jsonl"));
        tail::Tail::start(files.collect(), n, sent_at.clone(), t0)
    });
    let addrs: Vec<_> = routers.iter().map(|r| r.addr).collect();
    let sent = load::send(
        &addrs,
        "/api/webhook",
        events.clone(),
        concurrency,
        sent_at,
        t0,
    )
    .await?;
    let backlog = tail.as_ref().map(|t| n.saturating_sub(t.records()));
    let tailed = tail.map(|t| t.finish(Duration::from_secs(180)));
    let consumer_received = consumer
        .as_ref()
        .map(|c| wait_for_count(c, n as u64, Duration::from_secs(120)));
    let loadgen_cpu = procs::usage("self")?.cpu_secs - loadgen_before;
    let database_cpu = postmaster
        .zip(database_before)
        .map(|(pid, before)| postgres::server_cpu_secs(pid) - before);
    for scraper in scrapers {
        let (scrapes, failed) = scraper.finish();
        eprintln!("/metrics scraped {scrapes} times during the run ({failed} failed)");
    }
    let api_requests = scenario
        .slow_api()
        .then(|| {
            routers
                .iter()
                .map(|r| r.admin.and_then(api_requests))
                .sum::<Option<u64>>()
        })
        .flatten();
    let router = routers
        .iter()
        .map(Process::usage)
        .fold(Usage::default(), |sum, u| Usage {
            cpu_secs: sum.cpu_secs + u.cpu_secs,
            peak_rss_kib: sum.peak_rss_kib.max(u.peak_rss_kib),
        });
    let outcome = Outcome {
        scenario,
        setup: setup.describe(),
        events: n,
        body_bytes,
        started,
        sent,
        tailed,
        backlog,
        consumer_received,
        api_requests,
        router,
        database_cpu,
        standin: scenario.delivers().then(|| standin.usage()),
        consumer: consumer.as_ref().map(Process::usage),
        loadgen_cpu,
    };
    for folder in &folders {
        let warnings = std::fs::read_to_string(folder.join("router.log")).unwrap_or_default();
        if !warnings.trim().is_empty() {
            let lines: Vec<&str> = warnings.lines().take(5).collect();
            eprintln!("router log (first lines):\n{}", lines.join("\n"));
        }
    }
    drop(routers);
    if let Some(database) = database {
        database.drop_now().await?;
    }
    Ok(outcome)
}

/// The Stripe API requests a router made, every outcome: the sum of
/// `stripe_router_stripe_api_requests_total` on its `/metrics`.
fn api_requests(admin: std::net::SocketAddr) -> Option<u64> {
    let (status, body) = procs::http_get(admin, "/metrics")?;
    if status != 200 {
        return None;
    }
    let sum = body
        .lines()
        .filter(|l| l.starts_with("stripe_router_stripe_api_requests_total"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum::<f64>();
    Some(sum as u64)
}

fn wait_for_count(consumer: &Process, n: u64, timeout: Duration) -> u64 {
    let deadline = Instant::now() + timeout;
    loop {
        let count = procs::http_get(consumer.addr, "/count")
            .and_then(|(_, body)| body.trim().parse().ok())
            .unwrap_or(0);
        if count >= n || Instant::now() > deadline {
            return count;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

fn quantiles(h: &Histogram<u64>) -> String {
    format!(
        "p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
        ms(h.value_at_quantile(0.50)),
        ms(h.value_at_quantile(0.99)),
        ms(h.value_at_quantile(0.999)),
        ms(h.max())
    )
}

fn report(o: &Outcome) {
    let rate = o.events as f64 / o.sent.elapsed.as_secs_f64();
    println!("\n### {}{}", o.scenario.label(), o.setup);
    let journal = if o.setup.is_empty() {
        format!(
            "journal fsync {}",
            if o.scenario.fsync() { "on" } else { "off" }
        )
    } else {
        "journal on PostgreSQL".to_owned()
    };
    println!(
        "events: {} of {} bytes (average), {journal}",
        o.events, o.body_bytes
    );
    println!(
        "router start to first /healthz answer: {:.1} ms",
        o.started.as_secs_f64() * 1000.0
    );
    println!(
        "sent in {:.2} s: {rate:.0} events/s",
        o.sent.elapsed.as_secs_f64()
    );
    println!("answer latency: {}", quantiles(&o.sent.answers));
    let statuses: Vec<String> = o
        .sent
        .statuses
        .iter()
        .map(|(s, n)| format!("{s}: {n}"))
        .collect();
    println!(
        "status codes: {} (transport errors: {})",
        statuses.join(", "),
        o.sent.errors
    );
    if let Some(t) = &o.tailed {
        if let Some(backlog) = o.backlog {
            println!("backlog when the last answer arrived: {backlog} records not yet in JSONL");
        }
        println!("records in JSONL: {} of {}", t.records, o.events);
        println!("send to JSONL: {}", quantiles(&t.latency));
        if let Some(last) = t.last_at {
            println!(
                "last record {:.2} s after the first send ({:.2} s after the last answer): {:.0} records/s end to end",
                last.as_secs_f64(),
                (last.saturating_sub(o.sent.elapsed)).as_secs_f64(),
                o.events as f64 / last.as_secs_f64()
            );
        }
    }
    if let Some(n) = o.consumer_received {
        println!("HTTP consumer received: {n}");
    }
    if let Some(n) = o.api_requests {
        println!(
            "Stripe API requests: {n} ({:.2} per order)",
            n as f64 / o.events as f64
        );
    }
    println!(
        "router: peak RSS {:.1} MiB, CPU {:.2} s ({:.0} µs per event)",
        o.router.peak_rss_kib as f64 / 1024.0,
        o.router.cpu_secs,
        o.router.cpu_secs * 1e6 / o.events as f64
    );
    if let Some(cpu) = o.database_cpu {
        println!(
            "PostgreSQL server CPU: {cpu:.2} s ({:.0} µs per event); router and server together {:.0} µs per event",
            cpu * 1e6 / o.events as f64,
            (cpu + o.router.cpu_secs) * 1e6 / o.events as f64
        );
    }
    if let Some(u) = o.standin {
        println!("Stripe stand-in CPU: {:.2} s", u.cpu_secs);
    }
    if let Some(u) = o.consumer {
        println!("HTTP consumer CPU: {:.2} s", u.cpu_secs);
    }
    println!("load generator CPU: {:.2} s", o.loadgen_cpu);
}

fn summary(outcomes: &[Outcome], concurrency: usize) {
    if outcomes.is_empty() {
        return;
    }
    println!("\n### Summary ({concurrency} connections)\n");
    println!(
        "| scenario | events | router CPU / event | PostgreSQL CPU / event | acked events/s | end-to-end records/s | answer p50 / p99 (ms) | send→JSONL p50 / p99 (ms) | router peak RSS | backlog at last answer | statuses |"
    );
    println!("|---|---:|---:|---:|---:|---:|---|---|---:|---:|---|");
    for o in outcomes {
        let a = &o.sent.answers;
        let rate = o.events as f64 / o.sent.elapsed.as_secs_f64();
        let (e2e, e2e_rate) = match &o.tailed {
            Some(t) => (
                format!(
                    "{:.1} / {:.1}",
                    ms(t.latency.value_at_quantile(0.5)),
                    ms(t.latency.value_at_quantile(0.99)),
                ),
                t.last_at
                    .map(|l| format!("{:.0}", o.events as f64 / l.as_secs_f64()))
                    .unwrap_or_else(|| format!("incomplete ({})", t.records)),
            ),
            None => ("—".to_owned(), "—".to_owned()),
        };
        let statuses: Vec<String> = o
            .sent
            .statuses
            .iter()
            .map(|(s, n)| format!("{s}×{n}"))
            .collect();
        println!(
            "| {}{} | {} | {:.0} µs | {} | {rate:.0} | {e2e_rate} | {:.2} / {:.2} | {e2e} | {:.1} MiB | {} | {} |",
            o.scenario.label(),
            o.setup,
            o.events,
            o.router.cpu_secs * 1e6 / o.events as f64,
            o.database_cpu.map_or("—".to_owned(), |cpu| format!(
                "{:.0} µs",
                cpu * 1e6 / o.events as f64
            )),
            ms(a.value_at_quantile(0.5)),
            ms(a.value_at_quantile(0.99)),
            o.router.peak_rss_kib as f64 / 1024.0,
            o.backlog.map_or("—".to_owned(), |b| b.to_string()),
            statuses.join(" "),
        );
    }
}

/// Starts a router, then saves an edited routes.yaml three times and times
/// each until `/healthz` shows the new config version.
fn reload(router_bin: &Path) -> anyhow::Result<()> {
    println!("\n### reload");
    let dir = tempfile::Builder::new()
        .prefix("stripe-router-bench")
        .tempdir()?;
    let config = dir.path().join("routes.yaml");
    std::fs::write(&config, routes_yaml(true, None))?;
    let env = [
        ("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET.to_owned()),
        ("STRIPE_SECRET_API_KEY", API_KEY.to_owned()),
        ("STRIPE_API_BASE", "http://127.0.0.1:9".to_owned()),
    ];
    let mut starts = Vec::new();
    for _ in 0..5 {
        let (router, started) = procs::router(router_bin, dir.path(), &env)?;
        starts.push(started.as_secs_f64() * 1000.0);
        drop(router);
    }
    starts.sort_by(f64::total_cmp);
    println!(
        "start to first /healthz answer (5 starts): min {:.1} ms, median {:.1} ms, max {:.1} ms",
        starts[0], starts[2], starts[4]
    );
    let (router, _) = procs::router(router_bin, dir.path(), &env)?;
    // Let the watcher settle before the first edit.
    std::thread::sleep(Duration::from_millis(300));
    for edit in 1..=3u64 {
        let text = format!(
            "{}  - name: refunds-{edit}\n    when: {{ type: charge.refunded }}\n    emit: event\n    to: [orders]\n",
            routes_yaml(true, None)
        );
        // Saved the way editors do: write aside, then rename over.
        let aside = dir.path().join(".routes.yaml.tmp");
        std::fs::write(&aside, text)?;
        let saved = Instant::now();
        std::fs::rename(&aside, &config)?;
        let applied = loop {
            let version = router
                .admin
                .and_then(|admin| procs::http_get(admin, "/healthz"))
                .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
                .and_then(|v| v["config"]["version"].as_u64());
            if version == Some(edit + 1) {
                break Some(saved.elapsed());
            }
            if saved.elapsed() > Duration::from_secs(10) {
                break None;
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        match applied {
            Some(d) => println!(
                "saved routes.yaml applied after {:.0} ms",
                d.as_secs_f64() * 1000.0
            ),
            None => println!("saved routes.yaml NOT applied within 10 s"),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}
