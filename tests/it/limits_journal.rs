//! The journal under load and on a bad disk: its log stays under
//! `store.wal_limit`, a full disk is refused with 500 and recovered from
//! without a restart, an unwritable journal stops the start, and its files
//! are private.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::events::assert_exactly_delivered;
use crate::events::session_event;
use crate::harness::{SmallDisk, TestApp, WAIT, serve_command, spawn_app};

/// Every checkout event to one JSONL file, journal at `{store}`.
fn audit_routes(store: &str) -> String {
    format!(
        "store: {store}\nsinks:\n  audit: {{ type: jsonl, path: sinks/audit.jsonl }}\n\
         routes:\n  - name: audit\n    when: {{ type: \"checkout.session.*\" }}\n    emit: event\n    to: [audit]\n"
    )
}

fn padded_event(id: &str, padding: usize) -> serde_json::Value {
    let mut event = session_event(id, "checkout.session.completed", "cs_test_journal", "paid");
    event["data"]["object"]["metadata"]["padding"] = json!("x".repeat(padding));
    event
}

/// The largest size `path` had while `running`, sampled every 2 ms.
fn sample_size(path: PathBuf, running: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut max = 0;
        while running.load(Ordering::Relaxed) {
            if let Ok(meta) = std::fs::metadata(&path) {
                max = max.max(meta.len());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        max
    })
}

#[tokio::test]
async fn the_journal_log_stays_under_its_limit_under_sustained_load() {
    const LIMIT: u64 = 1024 * 1024;
    const EVENTS: usize = 1_600;
    const SENDERS: usize = 8;
    let app =
        Arc::new(spawn_app(&audit_routes("{ path: data/journal.db, wal_limit: 1MiB }")).await);
    let running = Arc::new(AtomicBool::new(true));
    let sampler = sample_size(app.path("data/journal.db-wal"), running.clone());

    // Several senders at full speed: every commit, routing and delivery
    // appends pages to the log, about 40 times the limit in all.
    let mut senders = tokio::task::JoinSet::new();
    for sender in 0..SENDERS {
        let app = app.clone();
        senders.spawn(async move {
            for n in (sender..EVENTS).step_by(SENDERS) {
                let answer = app
                    .send(&padded_event(&format!("evt_load_{n}"), 2_000))
                    .await;
                assert_eq!(answer.status, 200, "{}", answer.body);
            }
        });
    }
    while let Some(done) = senders.join_next().await {
        done.unwrap();
    }
    app.wait_lines("sinks/audit.jsonl", EVENTS).await;
    running.store(false, Ordering::Relaxed);
    let largest = sampler.join().unwrap();
    assert!(largest > 0, "the log was never seen");
    assert!(
        largest <= LIMIT,
        "the journal's log reached {largest} bytes, over store.wal_limit ({LIMIT})"
    );
}

#[tokio::test]
async fn a_full_disk_is_refused_then_recovered_from_without_a_restart_and_after_one() {
    let Some(disk) = SmallDisk::mount("2m") else {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    };
    let store = format!(
        "{{ path: {}/journal.db, wal_limit: 256KiB }}",
        disk.path().display()
    );
    let mut app = spawn_app(&audit_routes(&store)).await;
    disk.fill(200 * 1024);

    let mut acknowledged = std::collections::BTreeSet::new();
    let mut n = 0;
    let mut send = async |app: &TestApp| {
        n += 1;
        let id = format!("evt_disk_{n}");
        let answer = app.send(&padded_event(&id, 20_000)).await;
        match answer.status {
            200 => {
                acknowledged.insert(format!("{id}:audit"));
            }
            500 => {}
            other => panic!("unexpected {other}: {}", answer.body),
        }
        answer.status
    };
    let mut refused = false;
    for _ in 0..200 {
        if send(&app).await == 500 {
            refused = true;
            break;
        }
    }
    assert!(refused, "the disk never filled up");
    // The load balancer's probe says so, and the admin listener says why.
    let (status, body) = public_health(&app).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "unavailable", "{body}");
    let details = app.health().await;
    assert_eq!(details["journal"]["writable"], false, "{details}");
    assert!(
        details["journal"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("full")),
        "{details}"
    );
    // Full for over a second, events still arriving: the journal's threads
    // say so when it begins and when it ends, not at every attempt
    // (checkpoints run five times a second).
    let full_since = Instant::now();
    while full_since.elapsed() < Duration::from_millis(1_500) {
        send(&app).await;
    }
    let lines = app.stderr.all();
    let count = |text: &str| lines.iter().filter(|l| l.contains(text)).count();
    assert!(count("journal transaction failed") >= 1, "{lines:#?}");
    assert!(
        count("journal transaction failed") <= count("the journal takes writes again") + 1,
        "a failing journal is logged once, not per transaction:\n{lines:#?}"
    );
    assert!(
        count("journal checkpoint failed") <= count("journal checkpoints succeed again") + 1,
        "a failing checkpoint is logged once, not every 200 ms:\n{lines:#?}"
    );

    // Room again: healthy and accepting without a restart, even before an
    // event arrives (the journal probes itself).
    disk.unfill();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = public_health(&app).await;
        if status == 200 {
            assert_eq!(body, serde_json::json!({ "status": "ok" }));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/healthz stayed {status}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(send(&app).await, 200);

    // Restarted on a nearly full disk: it starts, and takes events once
    // there is room.
    disk.fill(100 * 1024);
    app.restart();
    disk.unfill();
    assert_eq!(send(&app).await, 200);

    assert_exactly_delivered(
        &app,
        "sinks/audit.jsonl",
        &acknowledged,
        Duration::from_secs(30),
    )
    .await;
}

/// The webhook port's `/healthz`: its status and body.
async fn public_health(app: &TestApp) -> (u16, serde_json::Value) {
    let response = app.http.get(app.url("/healthz")).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

/// Runs `serve` in `dir`; its exit code and stderr, or None for the code if
/// it was still running after `WAIT` (then it is killed).
async fn serve_once(dir: &Path, env: &[(String, String)]) -> (Option<i32>, String) {
    let mut child = serve_command(dir, env)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + WAIT;
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    (code, stderr)
}

fn remount_read_only(disk: &SmallDisk) {
    let status = Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(disk.path())
        .status()
        .unwrap();
    assert!(status.success(), "remount read-only");
}

#[tokio::test]
async fn an_unwritable_journal_stops_the_start_and_says_which() {
    // Root ignores file modes; a read-only mount stops root too.
    let (Some(existing), Some(fresh)) = (SmallDisk::mount("4m"), SmallDisk::mount("1m")) else {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    };
    let journal = existing.path().join("journal.db");
    let mut app = spawn_app(&audit_routes(&format!("{{ path: {} }}", journal.display()))).await;
    assert_eq!(app.send(&padded_event("evt_ro_1", 10)).await.status, 200);
    app.signal("TERM");
    assert_eq!(app.wait_exit(WAIT), Some(0));

    // The journal exists, its volume went read-only.
    remount_read_only(&existing);
    let (code, stderr) = serve_once(app.path("").as_path(), &app.env).await;
    assert!(
        code.is_some_and(|c| c != 0),
        "serve must not start with a read-only journal (exit {code:?}):\n{stderr}"
    );
    assert!(stderr.contains(&journal.display().to_string()), "{stderr}");
    assert!(!stderr.contains("listening"), "{stderr}");

    // No journal yet, and its folder cannot be created.
    remount_read_only(&fresh);
    let folder = fresh.path().join("journal");
    std::fs::write(
        app.path("routes.yaml"),
        audit_routes(&format!("{{ path: {}/journal.db }}", folder.display())),
    )
    .unwrap();
    let (code, stderr) = serve_once(app.path("").as_path(), &app.env).await;
    assert!(code.is_some_and(|c| c != 0), "exit {code:?}:\n{stderr}");
    assert!(stderr.contains(&folder.display().to_string()), "{stderr}");
}

#[tokio::test]
async fn the_journal_and_the_folders_made_for_it_are_private() {
    let app = spawn_app(&audit_routes("{ path: state/journal/router.db }")).await;
    assert_eq!(app.send(&padded_event("evt_private", 10)).await.status, 200);
    app.wait_lines("sinks/audit.jsonl", 1).await;
    let mode = |relative: &str| {
        std::fs::metadata(app.path(relative))
            .unwrap_or_else(|e| panic!("{relative}: {e}"))
            .permissions()
            .mode()
            & 0o777
    };
    for folder in ["state", "state/journal"] {
        assert_eq!(mode(folder), 0o700, "{folder}");
    }
    // The -wal and -shm files exist while the router runs.
    for file in ["router.db", "router.db-wal", "router.db-shm"] {
        assert_eq!(mode(&format!("state/journal/{file}")), 0o600, "{file}");
    }
}
