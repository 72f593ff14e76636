//! The webhook port under attack (SPEC §9, issue #8 items 2, 3, 5, 6): slow
//! clients are cut off, connections and body memory are capped with `503`
//! and `Retry-After` while admitted connections keep being served, a small
//! open-file limit never stops the router, forged requests cost no
//! diagnosis and few log lines, deep nesting is a `400` at the door, and
//! the public `/healthz` tells nothing but ok.
//!
//! These tests speak raw HTTP/1.1 over their own sockets: they need to hold
//! connections open, send bytes slowly and read answers exactly.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{Options, ROUTES, SECRET, WAIT, now, pretty, spawn_app, spawn_with};
use stripe_router::ingest::verify;

/// One answer read off a raw connection.
#[derive(Debug)]
struct Reply {
    status: u16,
    head: String,
    body: Value,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }
}

/// A raw HTTP/1.1 client connection, kept alive between requests.
struct Conn {
    stream: TcpStream,
    read: Vec<u8>,
}

impl Conn {
    async fn open(addr: SocketAddr) -> Conn {
        Conn {
            stream: TcpStream::connect(addr).await.expect("connect"),
            read: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("send");
    }

    async fn request(&mut self, request: &[u8]) -> Reply {
        self.send(request).await;
        self.reply().await
    }

    /// Reads one answer (its `content-length` body included).
    async fn reply(&mut self) -> Reply {
        tokio::time::timeout(WAIT, async {
            loop {
                if let Some(end) = find(&self.read, b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&self.read[..end]).into_owned();
                    let length: usize = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse().ok())?
                        })
                        .unwrap_or(0);
                    if self.read.len() >= end + 4 + length {
                        let body = self.read[end + 4..end + 4 + length].to_vec();
                        self.read.drain(..end + 4 + length);
                        let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
                        return Reply {
                            status,
                            head,
                            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                        };
                    }
                }
                let mut chunk = [0u8; 8192];
                let n = self.stream.read(&mut chunk).await.expect("read the answer");
                assert!(
                    n > 0,
                    "closed before a whole answer: {:?}",
                    String::from_utf8_lossy(&self.read)
                );
                self.read.extend_from_slice(&chunk[..n]);
            }
        })
        .await
        .expect("an answer in time")
    }

    /// Waits until the server closes the connection; how long that took.
    async fn closed(&mut self, timeout: Duration) -> Duration {
        let started = Instant::now();
        tokio::time::timeout(timeout, async {
            let mut chunk = [0u8; 8192];
            while let Ok(1..) = self.stream.read(&mut chunk).await {}
        })
        .await
        .unwrap_or_else(|_| panic!("the connection is still open after {timeout:?}"));
        started.elapsed()
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A small verified-to-be event no route wants: journaled, answered 200.
fn event(id: &str) -> Vec<u8> {
    pretty(&json!({
        "id": id,
        "object": "event",
        "type": "charge.succeeded",
        "created": now(),
        "livemode": false,
        "data": { "object": { "id": "ch_1", "object": "charge", "amount": 1500 } },
    }))
}

fn post(body: &[u8], signature: &str) -> Vec<u8> {
    let mut request = format!(
        "POST /api/webhook HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nstripe-signature: {signature}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

fn signed(body: &[u8]) -> Vec<u8> {
    post(body, &verify::sign(body, SECRET, now()))
}

const GET_HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n";

/// Log lines containing `text`.
fn count(app: &crate::harness::TestApp, text: &str) -> usize {
    app.stderr.all().iter().filter(|l| l.contains(text)).count()
}

#[tokio::test]
async fn slow_and_idle_clients_are_cut_off_at_read_timeout() {
    let routes = format!("server: {{ read_timeout: 2s }}\n{ROUTES}");
    let app = spawn_app(&routes).await;

    // A body trickled one byte at a time: 408, then closed.
    let mut conn = Conn::open(app.addr).await;
    conn.send(b"POST /api/webhook HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\nstripe-signature: t=1,v1=00\r\n\r\n")
        .await;
    let (mut reader, mut writer) = conn.stream.into_split();
    let trickle = tokio::spawn(async move {
        while writer.write_all(b" ").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    let started = Instant::now();
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, reader.read_to_end(&mut answer))
        .await
        .expect("the trickling connection is closed within read_timeout")
        .ok();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("server.read_timeout"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(8));
    trickle.abort();

    // Headers trickled: closed too.
    let mut conn = Conn::open(app.addr).await;
    let started = Instant::now();
    let trickled = async {
        for byte in b"POST /api/webhook HTTP/1.1\r\nhost: x\r\nx-slow: "
            .iter()
            .cycle()
        {
            if conn.stream.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    };
    assert!(
        tokio::time::timeout(WAIT, trickled).await.is_ok(),
        "trickled headers are still being read after {WAIT:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(8));

    // A kept-alive connection that goes quiet is closed as well.
    let mut conn = Conn::open(app.addr).await;
    let reply = conn.request(&signed(&event("evt_door_idle"))).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let idle = conn.closed(WAIT).await;
    assert!(idle < Duration::from_secs(8), "{idle:?}");
}

#[tokio::test]
async fn past_max_connections_new_ones_get_503_while_admitted_ones_are_served() {
    let routes = format!("server: {{ max_connections: 4, read_timeout: 60s }}\n{ROUTES}");
    let app = spawn_app(&routes).await;

    let mut admitted = Conn::open(app.addr).await;
    let reply = admitted.request(&signed(&event("evt_door_cap_1"))).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    // Three more that send nothing fill the cap (the server accepts in order).
    let mut stalled = Vec::new();
    for _ in 0..3 {
        stalled.push(Conn::open(app.addr).await);
    }

    let mut extra = Conn::open(app.addr).await;
    let reply = extra.reply().await;
    assert_eq!(reply.status, 503, "{reply:?}");
    assert_eq!(reply.header("retry-after"), Some("5"), "{reply:?}");
    extra.closed(WAIT).await;

    // The connection already admitted keeps being served.
    let reply = admitted.request(&signed(&event("evt_door_cap_2"))).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    // The admin listener has its own cap.
    assert_eq!(app.health().await["status"], "ok");
    app.stderr.wait_for(WAIT, |l| {
        l.contains("connection limit reached").then_some(())
    });
    drop(stalled);
}

#[tokio::test]
async fn at_the_cap_a_connection_stalled_for_half_the_read_timeout_makes_room() {
    // Stalled connections would hold their places for `read_timeout` (12 s);
    // at the cap, one that has waited 6 s is closed for a new one, so a real
    // event gets in long before that.
    let routes = format!("server: {{ max_connections: 3, read_timeout: 12s }}\n{ROUTES}");
    let app = spawn_app(&routes).await;
    let mut stalled = Vec::new();
    for _ in 0..3 {
        stalled.push(Conn::open(app.addr).await);
    }
    let filled = Instant::now();
    let mut early = Conn::open(app.addr).await;
    let reply = early.request(&signed(&event("evt_door_evict_0"))).await;
    assert_eq!(
        reply.status, 503,
        "nobody has waited long enough yet: {reply:?}"
    );

    let mut n = 0;
    let answered = loop {
        n += 1;
        let mut conn = Conn::open(app.addr).await;
        let reply = conn
            .request(&signed(&event(&format!("evt_door_evict_{n}"))))
            .await;
        if reply.status == 200 {
            break filled.elapsed();
        }
        assert_eq!(reply.status, 503, "{reply:?}");
        assert!(
            filled.elapsed() < Duration::from_secs(11),
            "no room was made before the stalled connections timed out"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        answered >= Duration::from_secs(6),
        "made room too early: {answered:?}"
    );
    app.stderr.wait_for(WAIT, |l| {
        l.contains("closed the connection that waited longest on its client")
            .then_some(())
    });
    // The one closed was a stalled one.
    let mut closed = 0;
    for conn in &mut stalled {
        let mut chunk = [0u8; 1];
        if let Ok(Ok(0)) =
            tokio::time::timeout(Duration::from_millis(100), conn.stream.read(&mut chunk)).await
        {
            closed += 1;
        }
    }
    assert_eq!(closed, 1, "one stalled connection made room");
}

#[tokio::test]
async fn past_body_buffer_bodies_get_503_while_a_small_event_gets_200() {
    // Three stalled 32 KiB bodies hold 96 of the 120 KiB.
    let routes =
        format!("server: {{ max_body: 32KiB, body_buffer: 120KiB, read_timeout: 60s }}\n{ROUTES}");
    let app = spawn_app(&routes).await;
    let full = 32 * 1024;
    let mut stalled = Vec::new();
    for _ in 0..3 {
        let mut conn = Conn::open(app.addr).await;
        let mut request = post(&vec![b' '; full], "t=1,v1=00");
        request.pop();
        conn.send(&request).await;
        stalled.push(conn);
    }

    // Once the stalled bodies are being read, another 32 KiB gets no room.
    // On a busy machine the probe may be read before the last stalled body
    // is: then that one is refused instead, and its connection holds the
    // answer.
    let deadline = Instant::now() + WAIT;
    let refused = 'refused: loop {
        let mut conn = Conn::open(app.addr).await;
        let reply = conn.request(&post(&vec![b' '; full], "t=1,v1=00")).await;
        if reply.status == 503 {
            break reply;
        }
        assert_eq!(reply.status, 400, "{reply:?}");
        for stalled in &mut stalled {
            let mut first = [0u8; 1];
            let answered =
                tokio::time::timeout(Duration::from_millis(5), stalled.stream.peek(&mut first));
            if let Ok(Ok(1..)) = answered.await {
                let reply = stalled.reply().await;
                assert_eq!(reply.status, 503, "{reply:?}");
                break 'refused reply;
            }
        }
        assert!(Instant::now() < deadline, "never refused for body memory");
    };
    assert_eq!(refused.header("retry-after"), Some("5"), "{refused:?}");
    assert!(
        refused.body["message"]
            .as_str()
            .is_some_and(|m| m.contains("server.body_buffer")),
        "{refused:?}"
    );

    // A real event is small: it still fits, and is taken.
    let mut conn = Conn::open(app.addr).await;
    let reply = conn.request(&signed(&event("evt_door_buffer"))).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    drop(stalled);
}

#[tokio::test]
async fn with_few_open_files_stalled_connections_never_stop_the_router() {
    const LIMIT: usize = 256;
    if std::process::Command::new("prlimit")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!(
            "skipped: `prlimit` (util-linux) is not installed, so the open-file limit cannot be set"
        );
        return;
    }
    let mut options = Options::new(&format!("server: {{ read_timeout: 60s }}\n{ROUTES}"));
    options.wrapper = vec!["prlimit".into(), format!("--nofile={LIMIT}:{LIMIT}")];
    let app = spawn_with(options).await;
    app.stderr.wait_for(WAIT, |l| {
        l.contains("server.max_connections is more than the open-file limit allows")
            .then_some(())
    });

    let mut admitted = Conn::open(app.addr).await;
    let reply = admitted.request(&signed(&event("evt_door_fd_1"))).await;
    assert_eq!(reply.status, 200, "{reply:?}");

    // More connections than the router may open files, all silent.
    let mut stalled = Vec::new();
    for _ in 0..LIMIT + 100 {
        stalled.push(TcpStream::connect(app.addr).await.expect("connect"));
    }

    // A new connection is answered at once: 503 with Retry-After.
    let mut extra = Conn::open(app.addr).await;
    let reply = extra.reply().await;
    assert_eq!(reply.status, 503, "{reply:?}");
    assert!(reply.header("retry-after").is_some(), "{reply:?}");

    // A valid event and /healthz on an admitted connection, the admin
    // listener: all answered.
    let reply = admitted.request(&signed(&event("evt_door_fd_2"))).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let reply = admitted.request(GET_HEALTHZ).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(app.health().await["events"]["received"], 2);
    assert!(
        count(&app, "accept failed") <= 3,
        "{} `accept failed` lines",
        count(&app, "accept failed")
    );
    drop(stalled);
}

#[tokio::test]
async fn forged_requests_get_no_diagnosis_when_large_and_few_log_lines() {
    let app = spawn_app(ROUTES).await;
    const SIGNATURE: &str = "refused a request whose signature does not verify";

    // A forged ~1 MiB event: refused without parsing it again for a hint.
    let mut big = serde_json::from_slice::<Value>(&event("evt_door_forged")).unwrap();
    big["data"]["object"]["description"] = json!("x".repeat(1 << 20));
    let big = pretty(&big);
    let forged = verify::sign(&big, "whsec_not_the_router_secret", now());
    let answer = app.post(big, Some(forged)).await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    let hint = answer.body["hint"].as_str().unwrap_or_default();
    assert!(hint.contains("not examined further"), "{hint}");

    // A flood of small forged requests: a few lines a second, and summaries
    // that account for every one of them.
    let flood = 300;
    let started = Instant::now();
    for n in 0..flood {
        let body = event(&format!("evt_door_forged_{n}"));
        let forged = verify::sign(&body, "whsec_not_the_router_secret", now());
        let answer = app.post(body, Some(forged)).await;
        assert_eq!(answer.status, 400);
    }
    let seconds = started.elapsed().as_secs() as usize + 1;
    let sum_of = |app: &crate::harness::TestApp| -> usize {
        let lines = app.stderr.all();
        let logged = lines.iter().filter(|l| l.contains(SIGNATURE)).count();
        let suppressed: usize = lines
            .iter()
            .filter(|l| l.contains("refused requests:"))
            .filter_map(|l| {
                l.split("suppressed=")
                    .nth(1)?
                    .split_whitespace()
                    .next()?
                    .parse::<usize>()
                    .ok()
            })
            .sum();
        logged + suppressed
    };
    crate::harness::eventually(WAIT, || (sum_of(&app) == flood + 1).then_some(())).await;
    let logged = count(&app, SIGNATURE);
    assert!(
        logged <= 10 * (seconds + 1),
        "{logged} refusal lines for {flood} requests in {seconds} s"
    );
}

#[tokio::test]
async fn a_verified_event_nested_too_deeply_is_refused_at_the_door() {
    let app = spawn_app(ROUTES).await;
    let body = format!(
        r#"{{"id":"evt_door_deep","object":"event","type":"checkout.session.completed","created":{},"data":{{"object":{}1{}}}}}"#,
        now(),
        "[".repeat(200),
        "]".repeat(200)
    );
    let answer = app.post_signed(body.into_bytes()).await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    let message = answer.message();
    assert!(message.contains("more than 64 levels"), "{message}");
    assert_eq!(app.health().await["events"]["rejected"], 1);
}

#[tokio::test]
async fn the_public_healthz_says_only_ok_and_the_admin_one_has_the_details() {
    let app = spawn_app(ROUTES).await;
    let mut conn = Conn::open(app.addr).await;
    let reply = conn.request(GET_HEALTHZ).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body, json!({ "status": "ok" }));

    let admin = app.health().await;
    assert_eq!(admin["status"], "ok");
    assert_eq!(admin["config"]["version"], 1);
    assert_eq!(admin["config"]["file"], "routes.yaml");
    assert_eq!(admin["journal"]["writable"], true);
    let folder = app.dir.path().display().to_string();
    assert!(!admin.to_string().contains(&folder), "{admin}");
    // The admin listener serves nothing else; the webhook is not there.
    let status = app
        .http
        .post(format!("http://{}/api/webhook", app.admin))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 404);
}

#[tokio::test]
async fn the_admin_listener_stays_on_loopback_and_a_busy_port_stops_the_start() {
    let app = spawn_app(ROUTES).await;
    let dir = tempfile::tempdir().unwrap();
    let serve = |routes: String, args: &[&str]| {
        std::fs::write(dir.path().join("routes.yaml"), routes).unwrap();
        // Under `timeout`: a router that starts after all fails the test
        // (exit 124) instead of hanging it.
        std::process::Command::new("timeout")
            .args(["30", env!("CARGO_BIN_EXE_stripe-router")])
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .current_dir(dir.path())
            .env_clear()
            .env("STRIPE_WEBHOOK_SECRET", SECRET)
            .env("STRIPE_SECRET_API_KEY", crate::harness::API_KEY)
            .output()
            .unwrap()
    };
    let routes = ROUTES.replace("{consumer}", "http://127.0.0.1:9/x");

    let busy = app.admin.to_string();
    let output = serve(routes.clone(), &["--admin-listen", &busy]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("server.admin_listen") && stderr.contains(&busy),
        "{stderr}"
    );

    let output = serve(
        // Port 0: should it be taken after all, it is not the default one.
        format!("server: {{ admin_listen: \"0.0.0.0:0\" }}\n{routes}"),
        &[],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("not a loopback address"), "{stderr}");
}
