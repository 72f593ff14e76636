//! Limits on what the other side of an outbound connection controls: the
//! Stripe API's pages, items and bytes; a stdout reader that stopped
//! reading; and the files the JSONL sink leaves on disk.

use std::collections::BTreeSet;
use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use stripe_router::offline::standin::{Misbehaviour, catalogue_items};

use crate::events::{line_items, session_event};
use crate::harness::{
    Lines, SECRET, SmallDisk, WAIT, eventually, now, pretty, read_jsonl, serve_command, spawn_app,
    wait_addresses,
};
use std::os::unix::fs::PermissionsExt;

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

    let dead = app.wait_dead_letters(|l| l.len() >= cases.len()).await;
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
    // Permanent: nothing was retried (the first retry in a while is always
    // a warning). 3 pages, 3 pages of 100 items (the 251st is refused on the
    // third), one answer each for the huge ones and one for the real
    // session; more only if an event waited in the router's queue past its
    // lease on a loaded machine and a scan routed it as well.
    let retried: Vec<String> = app
        .stderr
        .all()
        .into_iter()
        .filter(|l| l.contains("stripe api: retrying"))
        .collect();
    assert!(retried.is_empty(), "{retried:?}");
    let fetches = 3 + 3 + 1 + 1 + 1;
    assert!(
        app.stripe.requests() >= fetches,
        "{}",
        app.stripe.requests()
    );
    assert_eq!(read_jsonl(&app.path("sinks/orders.jsonl")).len(), 1);
}

/// Starts `stripe-router serve` in `dir` with its stdout going to `stdout`;
/// returns it once it listens, with its stderr followed.
fn serve(dir: &Path, stdout: Stdio) -> (Child, SocketAddr, Lines) {
    let env = [
        ("RUST_LOG".to_owned(), "info,stripe_router=debug".to_owned()),
        ("STRIPE_WEBHOOK_SECRET".to_owned(), SECRET.to_owned()),
    ];
    let mut child = serve_command(dir, &env)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start stripe-router");
    let stderr = Lines::follow(child.stderr.take().expect("piped stderr"));
    let (addr, _) = wait_addresses(dir, &mut child, &stderr);
    (child, addr, stderr)
}

/// The `id` of a record line.
fn record_id(line: &str) -> Option<String> {
    let record: Value = serde_json::from_str(line).ok()?;
    record["id"].as_str().map(str::to_owned)
}

/// Whether a thread of process `pid` is blocked writing to a full pipe, or
/// `None` where the kernel does not say (`wchan` hidden).
fn blocked_on_a_pipe(pid: u32) -> Option<bool> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut known = false;
    for task in tasks.flatten() {
        let wchan = std::fs::read_to_string(task.path().join("wchan")).unwrap_or_default();
        if wchan.contains("pipe_write") {
            return Some(true);
        }
        known |= !wchan.is_empty() && wchan != "0";
    }
    known.then_some(false)
}

const STDOUT_ROUTES: &str = r#"
server: { shutdown_timeout: 2s }
sinks:
  console: { type: stdout }
routes:
  - name: everything
    when: { type: "*" }
    emit: event
    to: console
"#;

#[tokio::test]
async fn sigterm_exits_within_the_shutdown_timeout_while_stdout_is_not_read() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("routes.yaml"), STDOUT_ROUTES).expect("write routes.yaml");
    // The reader stops reading: its end of the pipe stays open, unread.
    let (mut child, addr, stderr) = serve(dir.path(), Stdio::piped());
    let unread = child.stdout.take().expect("piped stdout");

    // 8 records of 20 KB: more than a pipe holds (64 KiB on Linux).
    let http = reqwest::Client::new();
    let mut sent = BTreeSet::new();
    for n in 0..8 {
        let id = format!("evt_stuck_{n}");
        let mut event = session_event(&id, "checkout.session.completed", "cs_test_stuck", "paid");
        event["data"]["object"]["metadata"] = json!({ "pad": "x".repeat(20_000) });
        let body = pretty(&event);
        let signature = stripe_router::ingest::verify::sign(&body, SECRET, now());
        let answer = http
            .post(format!("http://{addr}/api/webhook"))
            .header("Stripe-Signature", signature)
            .body(body)
            .send()
            .await
            .expect("webhook request");
        assert_eq!(answer.status(), 200);
        sent.insert(format!("{id}:everything"));
    }
    let deadline = Instant::now() + WAIT;
    loop {
        match blocked_on_a_pipe(child.id()) {
            Some(true) => break,
            None => {
                eprintln!("wchan is hidden here: cannot see the stdout write block; going on");
                stderr.wait_for(WAIT, |l| l.contains("evt_stuck_7").then_some(()));
                break;
            }
            Some(false) => {
                assert!(Instant::now() < deadline, "the stdout write never blocked");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    let signalled = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    // shutdown_timeout (2 s) + 1 s, and 1 s more for a loaded machine; today's
    // main never exits at all.
    let limit = Duration::from_secs(4);
    let code = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status.code();
        }
        if signalled.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still running {limit:?} after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = signalled.elapsed();
    eprintln!("exited with {code:?} {took:?} after SIGTERM");
    assert_eq!(code, Some(0), "a clean stop after SIGTERM");

    // What reached the reader before the stop, whole lines only.
    let mut first = Vec::new();
    let mut unread = unread;
    unread.read_to_end(&mut first).expect("read the pipe");
    let seen: BTreeSet<String> = String::from_utf8_lossy(&first)
        .split_inclusive('\n')
        .filter(|line| line.ends_with('\n'))
        .filter_map(record_id)
        .collect();
    assert!(seen.len() < sent.len(), "some records were still pending");

    // The rest stayed pending in the journal: a restart delivers them.
    let (mut child, _, _) = serve(dir.path(), Stdio::piped());
    let stdout = Lines::follow(child.stdout.take().expect("piped stdout"));
    eventually(WAIT, || {
        let again: BTreeSet<String> = stdout
            .all()
            .iter()
            .filter_map(|line| record_id(line))
            .collect();
        (seen.union(&again).cloned().collect::<BTreeSet<_>>() == sent).then_some(())
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
}

const FILE_ROUTES: &str = r#"
sinks:
  private: { type: jsonl, path: sinks/orders.jsonl }
  shared: { type: jsonl, path: team/exports/orders.jsonl, mode: "0640" }
routes:
  - name: everything
    when: { type: "*" }
    emit: event
    to: [private, shared]
"#;

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

#[tokio::test]
async fn jsonl_files_and_their_folders_are_private_unless_a_mode_says() {
    let app = spawn_app(FILE_ROUTES).await;
    let event = session_event(
        "evt_modes",
        "checkout.session.completed",
        "cs_test_modes",
        "paid",
    );
    assert_eq!(app.send(&event).await.status, 200);
    app.wait_lines("sinks/orders.jsonl", 1).await;
    app.wait_lines("team/exports/orders.jsonl", 1).await;

    assert_eq!(mode_of(&app.path("sinks/orders.jsonl")), 0o600);
    assert_eq!(mode_of(&app.path("sinks")), 0o700);
    assert_eq!(mode_of(&app.path("team/exports/orders.jsonl")), 0o640);
    assert_eq!(mode_of(&app.path("team/exports")), 0o750);
    assert_eq!(mode_of(&app.path("team")), 0o750);
}

const FULL_JOURNAL_ROUTES: &str = r#"
store: { path: "{journal}/journal.db" }
sinks:
  orders: { type: jsonl, path: sinks/orders.jsonl, retry: { initial: 50ms, max: 100ms } }
routes:
  - name: everything
    when: { type: "*" }
    emit: event
    to: orders
"#;

#[tokio::test]
async fn a_journal_that_cannot_record_a_jsonl_delivery_never_makes_a_second_line() {
    let Some(journal) = SmallDisk::mount("4m") else {
        eprintln!("skipped: mounting a tmpfs to fill needs root, as in CI");
        return;
    };
    let routes = FULL_JOURNAL_ROUTES.replace("{journal}", &journal.path().display().to_string());
    let mut app = spawn_app(&routes).await;
    // The file's place is taken: deliveries fail and are retried, each
    // outcome recorded while the journal still has room.
    let file = app.path("sinks/orders.jsonl");
    std::fs::remove_file(&file).expect("the sink created its file");
    std::fs::create_dir(&file).expect("a folder in its place");
    let ids: BTreeSet<String> = (0..3).map(|n| format!("evt_full_{n}:everything")).collect();
    for n in 0..3 {
        let id = format!("evt_full_{n}");
        let event = session_event(&id, "checkout.session.completed", "cs_test_full", "paid");
        assert_eq!(app.send(&event).await.status, 200);
    }
    app.stderr
        .wait_for(WAIT, |l| l.contains("sink is failing").then_some(()));

    // Now the journal cannot record anything: its volume is full, and a
    // reader holds its WAL so it cannot start over at its beginning.
    let reader = rusqlite::Connection::open(journal.path().join("journal.db")).expect("open");
    reader
        .execute_batch("BEGIN; SELECT count(*) FROM sqlite_master;")
        .expect("a read transaction");
    journal.fill(0);
    std::fs::remove_dir(&file).expect("the file's place is free again");

    // Every record reaches the file, and deliveries are tried again and
    // again since the journal cannot record them. (A commit can still fit
    // in what the volume had left, so not every record need be among the
    // retried ones; those that are must not make a second line.)
    let failed = |l: &String| l.contains("cannot record the delivery outcome");
    eventually(Duration::from_secs(30), || {
        let lines = app.stderr.all();
        let in_file: BTreeSet<String> = read_jsonl(&file)
            .iter()
            .map(|r| r["id"].as_str().unwrap_or_default().to_owned())
            .collect();
        let retried = ids.iter().any(|id| {
            lines
                .iter()
                .filter(|l| failed(l) && l.contains(id.as_str()))
                .count()
                >= 3
        });
        (in_file == ids && retried).then_some(())
    })
    .await;
    let written: Vec<String> = read_jsonl(&file)
        .iter()
        .map(|r| r["id"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        written.len(),
        ids.len(),
        "one line per record id: {written:?}"
    );
    assert_eq!(written.iter().cloned().collect::<BTreeSet<_>>(), ids);

    // Room again: the deliveries are recorded, nothing more is written, not
    // after a restart either.
    drop(reader);
    journal.unfill();
    app.wait_health(|h| h["queues"]["sinks"].get("orders").is_none())
        .await;
    app.restart();
    let event = session_event(
        "evt_after",
        "checkout.session.completed",
        "cs_test_full",
        "paid",
    );
    assert_eq!(app.send(&event).await.status, 200);
    let records = app.wait_lines("sinks/orders.jsonl", ids.len() + 1).await;
    assert_eq!(records.len(), ids.len() + 1, "{records:?}");
    assert_eq!(records.last().unwrap()["id"], "evt_after:everything");
}
