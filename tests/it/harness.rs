//! Test routers in a temporary folder, each with a Stripe stand-in and a
//! recording consumer: `spawn_app` / `spawn_with` start the real binary (for
//! crashes, signals, limits and log lines), `spawn_in_process` /
//! `spawn_in_process_with` run `App::build` + `App::run` inside the test (for
//! flows through HTTP on loopback). Both give a [`TestApp`].

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use stripe_router::app::{App, Settings};
use stripe_router::config::AdminListen;
use stripe_router::config::env::Env;
use stripe_router::ingest::verify;
use stripe_router::offline::standin::StripeStandIn;
use tokio_util::sync::CancellationToken;

use crate::consumer::Consumer;

pub const SECRET: &str = "whsec_test_router_secret";
pub const API_KEY: &str = "rk_test_51TestKeyForTheStandIn0000";
pub const WAIT: Duration = Duration::from_secs(10);

/// Lines a child process wrote, shared with the thread reading them.
#[derive(Clone, Default)]
pub struct Lines(Arc<(Mutex<Vec<String>>, Condvar)>);

impl Lines {
    pub fn follow(stream: impl std::io::Read + Send + 'static) -> Lines {
        let lines = Lines::default();
        let writer = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                let (store, changed) = &*writer.0;
                store.lock().unwrap().push(line);
                changed.notify_all();
            }
        });
        lines
    }

    pub fn all(&self) -> Vec<String> {
        self.0.0.lock().unwrap().clone()
    }

    /// Waits for the first line that `accept` returns something for.
    pub fn wait_for<T>(&self, timeout: Duration, accept: impl Fn(&str) -> Option<T>) -> T {
        let (store, changed) = &*self.0;
        let deadline = Instant::now() + timeout;
        let mut lines = store.lock().unwrap();
        loop {
            if let Some(found) = lines.iter().find_map(|l| accept(l)) {
                return found;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no matching line within {timeout:?}; got:\n{}",
                lines.join("\n")
            );
            lines = changed.wait_timeout(lines, left).unwrap().0;
        }
    }
}

pub struct TestApp {
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    /// The admin listener, where `/healthz` has the details.
    pub admin: SocketAddr,
    pub stripe: StripeStandIn,
    pub consumer: Consumer,
    /// The process's output; empty for a router run in process.
    pub stdout: Lines,
    pub stderr: Lines,
    pub http: reqwest::Client,
    /// The environment the router runs with.
    pub env: Vec<(String, String)>,
    runner: Runner,
}

/// How the router of a [`TestApp`] runs.
enum Runner {
    /// `stripe-router serve`, started through `wrapper` if any.
    Process { child: Child, wrapper: Vec<String> },
    /// `App::run` on its own runtime in a thread of the test; cancelling
    /// stops it.
    InProcess { shutdown: CancellationToken },
}

/// What to start the router with.
pub struct Options {
    /// routes.yaml; `{consumer}` is replaced by the consumer's URL.
    pub routes: String,
    pub env: Vec<(String, String)>,
    /// A command that runs the router, e.g. `prlimit --nofile=256:256`.
    pub wrapper: Vec<String>,
}

impl Options {
    pub fn new(routes: &str) -> Options {
        Options {
            routes: routes.to_owned(),
            env: vec![
                ("STRIPE_WEBHOOK_SECRET".into(), SECRET.into()),
                ("STRIPE_SECRET_API_KEY".into(), API_KEY.into()),
            ],
            wrapper: Vec::new(),
        }
    }
}

/// The routes most tests use: the seed's paid-orders flow to every sink
/// type, failed payments to their own file.
pub const ROUTES: &str = r#"
sinks:
  orders: { type: jsonl, path: sinks/orders.jsonl }
  failed: { type: jsonl, path: sinks/failed.jsonl }
  shipping: { type: http, url: "{consumer}", signing_secret: whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD, timeout: 5s }
  console: { type: stdout }
routes:
  - name: paid-orders
    when:
      type: [checkout.session.completed, checkout.session.async_payment_succeeded]
      payment_status: paid
    emit: order
    to: [orders, shipping, console]
  - name: failed-payments
    when: { type: checkout.session.async_payment_failed }
    emit: order
    to: [failed]
"#;

pub async fn spawn_app(routes: &str) -> TestApp {
    spawn_with(Options::new(routes)).await
}

pub async fn spawn_with(options: Options) -> TestApp {
    let wrapper = options.wrapper.clone();
    let mut app = prepare(options).await;
    let (child, [addr, admin], stdout, stderr) = start_router(app.dir.path(), &app.env, &wrapper);
    (app.addr, app.admin, app.stdout, app.stderr) = (addr, admin, stdout, stderr);
    app.runner = Runner::Process { child, wrapper };
    app
}

/// The router built and run in this process (`App::build`, `App::run`),
/// for tests of flows through HTTP that need no process: no signals, no
/// kill, no log lines, no stdout.
pub async fn spawn_in_process(routes: &str) -> TestApp {
    spawn_in_process_with(Options::new(routes)).await
}

pub async fn spawn_in_process_with(options: Options) -> TestApp {
    assert!(options.wrapper.is_empty(), "a wrapper needs a process");
    let mut app = prepare(options).await;
    let settings = Settings {
        config_path: app.path("routes.yaml"),
        listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        admin_listen: Some(AdminListen::On(SocketAddr::from(([127, 0, 0, 1], 0)))),
        env: Env::from_map(app.env.clone()),
    };
    let shutdown = CancellationToken::new();
    let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
    // Its own runtime, as in its own process: a test blocking its thread
    // (a CLI run, a wait on lines) does not stop the router.
    std::thread::spawn({
        let shutdown = shutdown.clone();
        move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a runtime for the router");
            runtime.block_on(async move {
                match App::build(settings).await {
                    Ok(router) => {
                        let bound = (router.local_addr(), router.admin_addr());
                        let _ = bound_tx.send(Ok(bound));
                        router.run(shutdown).await;
                    }
                    Err(e) => {
                        let _ = bound_tx.send(Err(e.to_string()));
                    }
                }
            });
        }
    });
    let (addr, admin) = bound_rx
        .await
        .expect("the router thread answers")
        .unwrap_or_else(|e| panic!("the router did not start: {e}"));
    app.addr = addr;
    app.admin = admin.expect("the admin listener is on");
    app.runner = Runner::InProcess { shutdown };
    app
}

/// The folder with routes.yaml, the stand-ins and the environment; the
/// router not started yet.
async fn prepare(options: Options) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let stripe = StripeStandIn::start(SocketAddr::from(([127, 0, 0, 1], 0)), API_KEY)
        .await
        .expect("start the Stripe stand-in");
    let consumer = Consumer::start().await;
    let routes = options.routes.replace("{consumer}", &consumer.url());
    std::fs::write(dir.path().join("routes.yaml"), routes).expect("write routes.yaml");

    let mut env = vec![
        ("PATH".to_owned(), std::env::var("PATH").unwrap_or_default()),
        ("RUST_LOG".to_owned(), "info,stripe_router=debug".to_owned()),
        ("STRIPE_API_BASE".to_owned(), stripe.url().to_string()),
    ];
    env.extend(options.env);
    let unbound = SocketAddr::from(([127, 0, 0, 1], 0));
    TestApp {
        dir,
        addr: unbound,
        admin: unbound,
        stripe,
        consumer,
        stdout: Lines::default(),
        stderr: Lines::default(),
        http: reqwest::Client::new(),
        env,
        runner: Runner::InProcess {
            shutdown: CancellationToken::new(),
        },
    }
}

/// Starts `stripe-router serve` in `dir` (through `wrapper`, if any) and
/// waits until it listens; returns its webhook and admin addresses.
fn start_router(
    dir: &Path,
    env: &[(String, String)],
    wrapper: &[String],
) -> (Child, [SocketAddr; 2], Lines, Lines) {
    let router = env!("CARGO_BIN_EXE_stripe-router");
    let mut command = match wrapper.split_first() {
        Some((program, args)) => {
            let mut command = Command::new(program);
            command.args(args).arg(router);
            command
        }
        None => Command::new(router),
    };
    let _ = std::fs::remove_file(dir.join(ADDRESSES_FILE));
    let mut child = command
        .args(serve_args("127.0.0.1:0"))
        .current_dir(dir)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start stripe-router");
    let stdout = Lines::follow(child.stdout.take().unwrap());
    let stderr = Lines::follow(child.stderr.take().unwrap());
    let (addr, admin) = wait_addresses(dir, &mut child, &stderr);
    let admin = admin.expect("the admin listener is on");
    (child, [addr, admin], stdout, stderr)
}

/// The file that `serve --addresses-file` writes, in the router's folder.
pub const ADDRESSES_FILE: &str = "addresses.json";

/// Waits until the router started in `dir` has written [`ADDRESSES_FILE`]
/// (it does once it listens); its webhook and admin addresses. Fails at once,
/// with its log, if the router exits first.
pub fn wait_addresses(
    dir: &Path,
    child: &mut Child,
    stderr: &Lines,
) -> (SocketAddr, Option<SocketAddr>) {
    let path = dir.join(ADDRESSES_FILE);
    let deadline = Instant::now() + WAIT;
    loop {
        // Renamed into place whole: there is no half-written file to see.
        if let Ok(text) = std::fs::read_to_string(&path) {
            let addresses: Value = serde_json::from_str(&text).expect("addresses as JSON");
            let parse = |key: &str| addresses[key].as_str().map(|a| a.parse().expect(key));
            return (parse("listen").expect("listen"), parse("admin"));
        }
        if let Some(status) = child.try_wait().expect("the router's status") {
            panic!(
                "stripe-router exited ({status}) before listening:\n{}",
                stderr.all().join("\n")
            );
        }
        assert!(
            Instant::now() < deadline,
            "stripe-router wrote no {ADDRESSES_FILE} within {WAIT:?}:\n{}",
            stderr.all().join("\n")
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `stripe-router serve` in `dir` with `routes.yaml`, on port 0, with only
/// `env` (and `PATH`) set and the admin listener off (its default port
/// would collide with other tests): for tests that start and stop the
/// router themselves. It writes [`ADDRESSES_FILE`] once it listens (a stale
/// one is removed here); [`wait_addresses`] reads it.
pub fn serve_command(dir: &Path, env: &[(String, String)]) -> Command {
    let _ = std::fs::remove_file(dir.join(ADDRESSES_FILE));
    router_command(dir, env, &serve_args("off"))
}

/// `serve` with `routes.yaml` on port 0, writing [`ADDRESSES_FILE`], with
/// the admin listener at `admin` (`127.0.0.1:0`, or `off`).
fn serve_args(admin: &'static str) -> [&'static str; 9] {
    [
        "serve",
        "--config",
        "routes.yaml",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        admin,
        "--addresses-file",
        ADDRESSES_FILE,
    ]
}

/// Runs `stripe-router args...` in `dir` with only PATH and `env` set, off
/// the test's runtime so the stand-ins it serves keep answering.
pub async fn run_router(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let mut command = router_command(dir, &env, args);
    tokio::task::spawn_blocking(move || command.output().expect("stripe-router runs"))
        .await
        .expect("the command finishes")
}

/// A command's output as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `stripe-router args...` in `dir`, with only `env` (and `PATH`) set.
pub fn router_command(dir: &Path, env: &[(String, String)], args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_stripe-router"));
    command
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null());
    command
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A body as Stripe sends it: pretty-printed with two spaces.
pub fn pretty(event: &Value) -> Vec<u8> {
    serde_json::to_vec_pretty(event).unwrap()
}

pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Answer {
    /// The `message` of a refusal; empty if there is none.
    pub fn message(&self) -> &str {
        self.body["message"].as_str().unwrap_or_default()
    }
}

impl TestApp {
    /// The router's process; only `spawn_app` / `spawn_with` have one.
    fn child(&mut self) -> &mut Child {
        match &mut self.runner {
            Runner::Process { child, .. } => child,
            Runner::InProcess { .. } => panic!("this test needs a process: use spawn_app"),
        }
    }

    /// The router process's id.
    pub fn pid(&mut self) -> u32 {
        self.child().id()
    }

    /// Kills the router with SIGKILL: no shutdown, no flush, no goodbye.
    pub fn kill9(&mut self) {
        let child = self.child();
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts the router again in the same folder (same config, same
    /// journal), as after a crash or a deploy.
    pub fn restart(&mut self) {
        self.kill9();
        let Runner::Process { wrapper, .. } = &self.runner else {
            unreachable!("kill9 checked it is a process")
        };
        let (child, [addr, admin], stdout, stderr) =
            start_router(self.dir.path(), &self.env, wrapper);
        (self.addr, self.admin) = (addr, admin);
        (self.stdout, self.stderr) = (stdout, stderr);
        *self.child() = child;
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// POSTs raw bytes to the webhook endpoint with the given signature header.
    pub async fn post(&self, body: Vec<u8>, signature: Option<String>) -> Answer {
        let mut request = self
            .http
            .post(self.url("/api/webhook"))
            .header("content-type", "application/json")
            .body(body);
        if let Some(signature) = signature {
            request = request.header("Stripe-Signature", signature);
        }
        let response = request.send().await.expect("webhook request");
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        Answer { status, body }
    }

    /// POSTs raw bytes signed with the router's secret, now.
    pub async fn post_signed(&self, body: Vec<u8>) -> Answer {
        let signature = verify::sign(&body, SECRET, now());
        self.post(body, Some(signature)).await
    }

    /// Sends `event` signed as Stripe would, now.
    pub async fn send(&self, event: &Value) -> Answer {
        self.post_signed(pretty(event)).await
    }

    /// Waits until the JSONL file at `relative` has at least `n` records.
    pub async fn wait_lines(&self, relative: &str, n: usize) -> Vec<Value> {
        let path = self.path(relative);
        eventually(WAIT, || {
            Some(read_jsonl(&path)).filter(|lines| lines.len() >= n)
        })
        .await
    }

    /// Waits until the admin `/healthz` satisfies `accept`, returning it.
    pub async fn wait_health(&self, accept: impl Fn(&Value) -> bool) -> Value {
        self.wait_health_within(WAIT, accept).await
    }

    /// [`TestApp::wait_health`] with its own deadline.
    pub async fn wait_health_within(
        &self,
        timeout: Duration,
        accept: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let health = self.health().await;
            if accept(&health) {
                return health;
            }
            assert!(
                Instant::now() < deadline,
                "/healthz never got there: {health}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Runs a CLI command (`deadletters`, `replay`, ...) against this
    /// router's config and journal; returns its stdout, asserting success.
    pub fn cli(&self, args: &[&str]) -> String {
        let output = Command::new(env!("CARGO_BIN_EXE_stripe-router"))
            .args(args)
            .current_dir(self.dir.path())
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .expect("run stripe-router");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "stripe-router {args:?} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }

    /// Polls `deadletters --json` until `accept` takes what it lists.
    pub async fn wait_dead_letters(&self, accept: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + WAIT;
        loop {
            let listed: Vec<Value> = self
                .cli(&["deadletters", "--json"])
                .lines()
                .map(|line| serde_json::from_str(line).expect("one JSON object a line"))
                .collect();
            if accept(&listed) {
                return listed;
            }
            assert!(
                Instant::now() < deadline,
                "dead letters within {WAIT:?}: {listed:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The admin listener's `/healthz`, with the details.
    pub async fn health(&self) -> Value {
        self.http
            .get(format!("http://{}/healthz", self.admin))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Sends SIGHUP or SIGTERM.
    pub fn signal(&self, name: &str) {
        let Runner::Process { child, .. } = &self.runner else {
            panic!("this test needs a process: use spawn_app")
        };
        let pid = child.id().to_string();
        let status = Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit, returning its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child().try_wait().unwrap() {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "stripe-router did not exit within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        match &mut self.runner {
            Runner::Process { child, .. } => {
                let _ = child.kill();
                let _ = child.wait();
            }
            // Its thread drains what it can and ends on its own.
            Runner::InProcess { shutdown } => shutdown.cancel(),
        }
    }
}

/// The JSON lines of a JSONL file (none if it does not exist): the lines
/// its newline ends. Bytes after the last newline are a write still in
/// progress (the sink writes a batch of lines with one `write_all`, which a
/// reader can see half done), as for any `tail -F` reader; every complete
/// line must be whole JSON.
pub fn read_jsonl(path: &Path) -> Vec<Value> {
    let Ok(bytes) = std::fs::read(path) else {
        return Vec::new();
    };
    let complete = bytes
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(&[][..], |end| &bytes[..end]);
    std::str::from_utf8(complete)
        .expect("complete lines are UTF-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a whole JSON line"))
        .collect()
}

/// Polls `probe` until it returns something or `timeout` passes.
pub async fn eventually<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(found) = probe() {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "condition not met within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A small tmpfs, unmounted (lazily) on drop, for tests of a full or
/// read-only disk. Mounting needs root, which CI has; elsewhere `mount` is
/// `None` and the test says it was skipped.
pub struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    pub fn mount(size: &str) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().ok()?;
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stderr(Stdio::null())
            .status()
            .ok()?;
        status.success().then_some(SmallDisk { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the disk with a ballast file, leaving `room` bytes free (or
    /// none, if the router takes some of it meanwhile).
    pub fn fill(&self, room: u64) {
        use std::io::Write as _;
        let mut left = self.free().saturating_sub(room);
        let mut ballast = std::fs::File::create(self.ballast()).expect("create the ballast");
        let chunk = [0u8; 64 * 1024];
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            match ballast.write_all(&chunk[..n]) {
                Ok(()) => left -= n as u64,
                Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
                Err(e) => panic!("write the ballast: {e}"),
            }
        }
    }

    /// Removes the ballast [`SmallDisk::fill`] wrote.
    pub fn unfill(&self) {
        std::fs::remove_file(self.ballast()).expect("remove the ballast");
    }

    fn ballast(&self) -> PathBuf {
        self.path().join("ballast")
    }

    /// Free bytes on the disk.
    fn free(&self) -> u64 {
        let output = Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(self.path())
            .output()
            .expect("run df");
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .nth(1)
            .and_then(|line| line.trim().parse().ok())
            .expect("df says how much is free")
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}
