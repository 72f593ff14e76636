//! The endpoint's answers (SPEC §7) and graceful shutdown.

use serde_json::json;

use crate::harness::{
    ADDRESSES_FILE, Lines, ROUTES, SECRET, WAIT, serve_command, spawn_app, spawn_in_process,
    wait_addresses,
};

#[tokio::test]
async fn answers_other_methods_paths_and_bodies_as_the_spec_says() {
    let app = spawn_in_process(ROUTES).await;

    let get = app.http.get(app.url("/api/webhook")).send().await.unwrap();
    assert_eq!(get.status(), 405);
    assert_eq!(get.headers()["allow"], "POST");
    assert_eq!(
        app.http
            .post(app.url("/api/other"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    // Verified, but not an event object.
    let body = br#"{"id":"cs_123","object":"checkout.session"}"#.to_vec();
    let answer = app.post_signed(body.clone()).await;
    assert_eq!(answer.status, 400);
    assert!(
        answer.message().contains("checkout.session"),
        "{}",
        answer.body
    );
    let body = b"definitely not json".to_vec();
    let answer = app.post_signed(body.clone()).await;
    assert_eq!(answer.status, 400);
    assert!(answer.message().contains("not JSON"), "{}", answer.body);

    // Over max_body (2 MiB by default): answered from the declared length,
    // before the body is read. A raw connection reads the answer whatever
    // happens to the unsent rest of the body.
    let head = raw_request(
        app.addr,
        "POST /api/webhook HTTP/1.1\r\nhost: x\r\ncontent-length: 3145728\r\nstripe-signature: t=1,v1=00\r\n\r\n{",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );

    let health = app.health().await;
    assert_eq!(health["status"], "ok");
    assert_eq!(health["config"]["version"], 1);
    assert_eq!(health["config"]["last_reload_error"], json!(null));
}

#[tokio::test]
async fn max_body_comes_from_the_config() {
    let routes = format!("server: {{ max_body: 1KiB }}\n{ROUTES}");
    let app = spawn_in_process(&routes).await;
    let body = vec![b' '; 2048];
    let answer = app.post_signed(body.clone()).await;
    assert_eq!(answer.status, 413);
}

#[tokio::test]
async fn sigterm_stops_the_server_cleanly() {
    let mut app = spawn_app(ROUTES).await;
    assert_eq!(app.health().await["status"], "ok");
    app.signal("TERM");
    assert_eq!(app.wait_exit(WAIT), Some(0));
    app.stderr
        .wait_for(WAIT, |l| l.contains("stopped").then_some(()));
    assert!(
        !app.path(ADDRESSES_FILE).exists(),
        "the addresses file goes with the router"
    );
}

#[tokio::test]
async fn a_sigterm_as_soon_as_the_addresses_file_appears_drains() {
    // A supervisor reads the file and may signal at once: by then the
    // router must handle SIGTERM (drain, remove the file, exit 0), not die
    // of it. Watched without a pause, to signal as early as one can.
    for _ in 0..20 {
        let (dir, mut child, stderr) = serve_without_routes();
        let file = dir.path().join(ADDRESSES_FILE);
        let deadline = std::time::Instant::now() + WAIT;
        while !file.exists() {
            assert!(
                std::time::Instant::now() < deadline && child.try_wait().unwrap().is_none(),
                "no {ADDRESSES_FILE}:\n{}",
                stderr.all().join("\n")
            );
            std::thread::yield_now();
        }
        let status = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = child.wait().unwrap();
        assert_eq!(exit.code(), Some(0), "{exit}:\n{}", stderr.all().join("\n"));
        assert!(!file.exists(), "the addresses file goes with the router");
    }
}

#[tokio::test]
async fn serve_writes_its_bound_addresses_to_the_addresses_file() {
    let app = spawn_app(ROUTES).await;
    let text = std::fs::read_to_string(app.path(ADDRESSES_FILE)).unwrap();
    let addresses: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        addresses,
        serde_json::json!({
            "webhook": format!("http://{}/api/webhook", app.addr),
            "listen": app.addr.to_string(),
            "admin": app.admin.to_string(),
        })
    );
    // With the admin listener off, `admin` is null.
    let (dir, mut child, stderr) = serve_without_routes();
    let (addr, admin) = wait_addresses(dir.path(), &mut child, &stderr);
    let _ = child.kill();
    let _ = child.wait();
    assert!(addr.port() != 0 && admin.is_none(), "{addr} {admin:?}");
}

#[tokio::test]
async fn a_secret_that_is_an_api_key_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("routes.yaml"),
        ROUTES.replace("{consumer}", "http://127.0.0.1:9/x"),
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_stripe-router"))
        .args(["serve", "--listen", "127.0.0.1:0", "--admin-listen", "off"])
        .current_dir(dir.path())
        .env_clear()
        .env("STRIPE_WEBHOOK_SECRET", "sk_test_51AbCdEfGhIjKlMnOp")
        .env("STRIPE_SECRET_API_KEY", crate::harness::API_KEY)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("whsec_"), "{stderr}");
    assert!(
        !stderr.contains("sk_test_51AbCdEfGhIjKlMnOp"),
        "the key itself is never printed: {stderr}"
    );
}

/// Writes `request` on a fresh connection and returns what comes back until
/// the server closes it.
async fn raw_request(addr: std::net::SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(WAIT, stream.read_to_end(&mut answer)).await;
    assert!(
        read.is_ok(),
        "the server keeps the connection open after a 413"
    );
    String::from_utf8_lossy(&answer).into_owned()
}

/// `serve` (admin listener off) in a fresh folder whose `routes.yaml` has
/// no routes, with its stderr followed.
fn serve_without_routes() -> (tempfile::TempDir, std::process::Child, Lines) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("routes.yaml"),
        "sinks: { out: { type: stdout } }\nroutes: []\n",
    )
    .unwrap();
    let env = [("STRIPE_WEBHOOK_SECRET".to_owned(), SECRET.to_owned())];
    let mut child = serve_command(dir.path(), &env)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = Lines::follow(child.stderr.take().unwrap());
    (dir, child, stderr)
}
