//! The first hour of a new user, through the real binary: completions
//! below the top level, errors that name the next step, what `serve` says
//! at start, `serve --offline` from an empty folder to an order on disk,
//! `send --set` / `--print`, and one `serve` per journal.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use serde_json::Value;
use stripe_router::ingest::verify;

use crate::harness::{
    self, ADDRESSES_FILE, API_KEY, Lines, ROUTES, SECRET, WAIT, eventually, read_jsonl,
    router_command, run_router as run, spawn_app, text, wait_addresses,
};

/// A loopback port nothing listens on (bound, then let go).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A folder with `routes.yaml` (the consumer, if named, never answers).
fn folder(routes: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temp dir");
    let routes = routes.replace("{consumer}", "http://127.0.0.1:9/orders");
    std::fs::write(dir.path().join("routes.yaml"), routes).expect("write routes.yaml");
    dir
}

/// A router process this test started, killed when the test ends.
struct Running {
    child: Child,
    stderr: Lines,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `stripe-router args...` in `dir` with only PATH and `env`.
fn start(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Running {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let _ = std::fs::remove_file(dir.join(ADDRESSES_FILE));
    let mut child = router_command(dir, &env, args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start stripe-router");
    let stderr = Lines::follow(child.stderr.take().expect("stderr"));
    Running { child, stderr }
}

/// What bash completes for `words`, the last one being completed, with the
/// script `stripe-router completions bash` prints sourced in a real bash.
async fn complete(words: &[&str]) -> Vec<String> {
    let dir = tempfile::tempdir().expect("a temp dir");
    let output = run(dir.path(), &["completions", "bash"], &[]).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let script = text(&output.stdout);
    let function = script
        .lines()
        .find_map(|l| l.trim().strip_prefix("complete -F "))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the script registers a function")
        .to_owned();
    let path = dir.path().join("stripe-router.bash");
    std::fs::write(&path, script).expect("write the script");
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let cword = words.len() - 1;
    let program = format!(
        "source '{}'; COMP_WORDS=({}); COMP_CWORD={cword}; COMP_LINE='{}'; \
         {function} stripe-router '{}' '{}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        path.display(),
        quoted.join(" "),
        words.join(" "),
        words[cword],
        words[cword - 1],
    );
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("bash")
            .args(["--norc", "--noprofile", "-c", &program])
            .output()
            .expect("bash runs")
    })
    .await
    .expect("bash finishes");
    assert!(output.status.success(), "{}", text(&output.stderr));
    text(&output.stdout).lines().map(str::to_owned).collect()
}

#[tokio::test]
async fn bash_completes_the_flags_of_a_subcommand() {
    let serve = complete(&["stripe-router", "serve", "--"]).await;
    for flag in ["--config", "--listen", "--admin-listen", "--offline"] {
        assert!(serve.contains(&flag.to_owned()), "{flag} in {serve:?}");
    }
    let send = complete(&["stripe-router", "send", "--s"]).await;
    assert_eq!(send, ["--set"], "{send:?}");
    let top = complete(&["stripe-router", "se"]).await;
    assert!(top.contains(&"serve".to_owned()) && top.contains(&"send".to_owned()));
}

#[tokio::test]
async fn bash_completes_the_log_formats_not_file_names() {
    let formats = complete(&["stripe-router", "serve", "--log-format", ""]).await;
    assert_eq!(formats, ["text", "json"], "{formats:?}");
    let json = complete(&["stripe-router", "check", "--log-format", "j"]).await;
    assert_eq!(json, ["json"], "{json:?}");
}

#[tokio::test]
async fn send_with_no_router_says_to_start_serve() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let to = format!("http://127.0.0.1:{}/api/webhook", free_port());
    let args = ["send", "checkout.session.completed", "--to", &to];
    let output = run(dir.path(), &args, &[("STRIPE_WEBHOOK_SECRET", SECRET)]).await;
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "error: connection refused at {to}: is `stripe-router serve` running? (start it \
             in another terminal, or pass --to URL)"
        )),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_taken_port_suggests_another_listen_address() {
    let dir = folder(ROUTES);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("an address").to_string();
    let args = ["serve", "--listen", &addr, "--admin-listen", "off"];
    let env = [
        ("STRIPE_WEBHOOK_SECRET", SECRET),
        ("STRIPE_SECRET_API_KEY", API_KEY),
    ];
    let output = run(dir.path(), &args, &env).await;
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on {addr}"))
            && stderr.contains("--listen ADDR")
            && stderr.contains("`server.listen`"),
        "{stderr}"
    );
}

#[tokio::test]
async fn listen_takes_a_bare_port_and_explains_what_it_cannot_read() {
    let dir = folder(ROUTES);
    let port = free_port().to_string();
    let env = [
        ("STRIPE_WEBHOOK_SECRET", SECRET),
        ("STRIPE_SECRET_API_KEY", API_KEY),
        ("STRIPE_API_BASE", "http://127.0.0.1:9"),
    ];
    let args = [
        "serve",
        "--listen",
        &port,
        "--admin-listen",
        "off",
        "--addresses-file",
        ADDRESSES_FILE,
    ];
    let mut router = start(dir.path(), &env, &args);
    let (listen, _) = wait_addresses(dir.path(), &mut router.child, &router.stderr);
    assert_eq!(
        listen,
        format!("127.0.0.1:{port}").parse::<SocketAddr>().unwrap()
    );
    router.stderr.wait_for(WAIT, |l| {
        l.contains(&format!("--listen {port} taken as 127.0.0.1:{port}"))
            .then_some(())
    });
    drop(router);

    let output = run(dir.path(), &["serve", "--listen", "localhost"], &env).await;
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("expected HOST:PORT, e.g. 127.0.0.1:3000")
            && stderr.contains("a bare port such as 3000"),
        "{stderr}"
    );
}

#[tokio::test]
async fn every_missing_secret_is_reported_in_one_run_each_named_once() {
    let dir = folder(ROUTES);
    let output = run(dir.path(), &["serve", "--admin-listen", "off"], &[]).await;
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("error: STRIPE_WEBHOOK_SECRET is not set")
            && stderr.contains("STRIPE_SECRET_API_KEY is not set"),
        "{stderr}"
    );
    // A first start with no Stripe account: the next step is offline.
    assert!(
        stderr.contains("`stripe-router serve --offline`"),
        "{stderr}"
    );

    // A secret that is an API key and a key that is not one: both, and the
    // variable's name once per message.
    let env = [
        ("STRIPE_WEBHOOK_SECRET", "sk_test_notawebhooksecret"),
        ("STRIPE_SECRET_API_KEY", "not-a-key"),
    ];
    for args in [
        &["serve", "--admin-listen", "off"][..],
        &[
            "send",
            "checkout.session.completed",
            "--to",
            "http://127.0.0.1:9/",
        ][..],
    ] {
        let output = run(dir.path(), args, &env).await;
        let stderr = text(&output.stderr);
        assert!(
            stderr.contains("error: STRIPE_WEBHOOK_SECRET holds an API key (sk_test_...)"),
            "{args:?}: {stderr}"
        );
        assert!(
            !stderr.contains("STRIPE_WEBHOOK_SECRET: STRIPE_WEBHOOK_SECRET"),
            "{stderr}"
        );
        assert!(!stderr.contains("sk_test_notawebhooksecret"), "{stderr}");
    }
    let output = run(dir.path(), &["serve", "--admin-listen", "off"], &env).await;
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("error: STRIPE_SECRET_API_KEY is not an API key"),
        "{stderr}"
    );
}

#[tokio::test]
async fn start_up_shows_the_api_base_journal_and_secrets_by_their_last_four() {
    let app = spawn_app(ROUTES).await;
    let secrets = app.stderr.wait_for(WAIT, |l| {
        l.contains("webhook signing secrets").then(|| l.to_owned())
    });
    assert!(secrets.contains("secrets=whsec_…cret"), "{secrets}");
    let api = app
        .stderr
        .wait_for(WAIT, |l| l.contains("stripe api").then(|| l.to_owned()));
    let base = app.stripe.url().to_string();
    assert!(
        api.contains(&format!("api_base={base}")) && api.contains("api_key=rk_test_…0000"),
        "{api}"
    );
    let journal = app.stderr.wait_for(WAIT, |l| {
        l.contains(" journal journal=").then(|| l.to_owned())
    });
    assert!(journal.contains("stripe-router.db"), "{journal}");
    let all = app.stderr.all().join("\n");
    assert!(!all.contains(SECRET) && !all.contains(API_KEY), "{all}");
}

#[tokio::test]
async fn serve_offline_delivers_orders_from_an_empty_environment() {
    let routes = Path::new(env!("CARGO_MANIFEST_DIR")).join("routes.yaml");
    let dir = folder(&std::fs::read_to_string(routes).expect("the repository's routes"));
    let args = [
        "serve",
        "--offline",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "off",
        "--addresses-file",
        ADDRESSES_FILE,
    ];
    let mut router = start(dir.path(), &[], &args);
    wait_addresses(dir.path(), &mut router.child, &router.stderr);

    // The line to paste, run as printed, in the same folder.
    let line = router.stderr.wait_for(WAIT, |l| {
        l.trim()
            .strip_prefix("stripe-router ")
            .filter(|rest| rest.starts_with("send "))
            .map(str::to_owned)
    });
    let env_local = dir.path().join(".env.local");
    let written = std::fs::read_to_string(&env_local).expect(".env.local is written");
    assert!(
        written.contains("STRIPE_WEBHOOK_SECRET=whsec_"),
        "{written}"
    );
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&env_local).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    let pasted: Vec<&str> = line.split_whitespace().collect();
    let output = run(dir.path(), &pasted, &[]).await;
    assert!(
        output.status.success(),
        "{}\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    // And one of the repository's own fixtures, whose session id names no
    // count: the stand-in still has a cart for it.
    let to = line
        .split_whitespace()
        .skip_while(|w| *w != "--to")
        .nth(1)
        .expect("the line has --to")
        .to_owned();
    let fixture = fixture("event_checkout.session.completed_paid.json");
    let fixture = fixture.to_str().expect("a UTF-8 path");
    let output = run(dir.path(), &["send", "--file", fixture, "--to", &to], &[]).await;
    assert!(output.status.success(), "{}", text(&output.stderr));

    let orders = eventually(WAIT, || {
        let orders = read_jsonl(&dir.path().join("sinks/orders.jsonl"));
        (orders.len() >= 2).then_some(orders)
    })
    .await;
    let items = |order: &Value| order["line_items"].as_array().map_or(0, Vec::len);
    let built = orders
        .iter()
        .find(|o| {
            o["checkout_session"]
                .as_str()
                .unwrap_or("")
                .ends_with("_3items")
        })
        .expect("the pasted send's order");
    assert_eq!(items(built), 3);
    let from_fixture = orders
        .iter()
        .find(|o| {
            o["checkout_session"]
                .as_str()
                .unwrap_or("")
                .starts_with("cs_test_a1")
        })
        .expect("the fixture's order");
    assert!((1..=4).contains(&items(from_fixture)), "{from_fixture}");
    let dead = run(dir.path(), &["deadletters", "--json"], &[]).await;
    assert_eq!(text(&dead.stdout).trim(), "", "{}", text(&dead.stderr));
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/stripe/composed")
        .join(name)
}

#[tokio::test]
async fn the_standin_command_takes_basic_auth_and_any_session() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let args = [
        "stripe-standin",
        "--listen",
        "127.0.0.1:0",
        "--api-key",
        API_KEY,
    ];
    let standin = start(dir.path(), &[], &args);
    let base = standin.stderr.wait_for(WAIT, |l| {
        let rest = l.strip_prefix("Stripe API stand-in on ")?;
        rest.split_once(": ").map(|(url, _)| url.to_owned())
    });
    let url = format!("{base}v1/checkout/sessions/cs_test_a1AnyIdAtAll/line_items");
    let client = reqwest::Client::new();
    let page: Value = client
        .get(&url)
        .basic_auth(API_KEY, Some(""))
        .send()
        .await
        .expect("the stand-in answers")
        .json()
        .await
        .expect("JSON");
    assert!(
        (1..=4).contains(&page["data"].as_array().map_or(0, Vec::len)),
        "{page}"
    );
    let refused = client
        .get(&url)
        .bearer_auth("sk_test_wrongwrongwrong9999")
        .send()
        .await
        .expect("the stand-in answers");
    assert_eq!(refused.status(), 401);
    let body: Value = refused.json().await.expect("JSON");
    let message = body["error"]["message"].as_str().unwrap_or("");
    assert!(
        message.contains("sk_test_********9999") && message.contains("rk_test_"),
        "{message}"
    );
}

#[tokio::test]
async fn send_set_changes_the_body_and_the_signature_still_verifies() {
    let app = spawn_app(ROUTES).await;
    app.stripe.serve_catalogue();
    let to = app.url("/api/webhook");
    let args = [
        "send",
        "checkout.session.completed",
        "--set",
        "data.object.metadata.order_ref=A-42",
        "--set",
        "data.object.client_reference_id=\"user_7\"",
        "--set",
        "data.object.amount_total=123456",
        "--to",
        &to,
    ];
    let output = run(app.dir.path(), &args, &[("STRIPE_WEBHOOK_SECRET", SECRET)]).await;
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        text(&output.stderr)
    );
    assert!(stdout.contains("signed with whsec_…cret"), "{stdout}");
    let orders = app.wait_lines("sinks/orders.jsonl", 1).await;
    assert_eq!(orders[0]["metadata"]["order_ref"], "A-42");
    assert_eq!(orders[0]["client_reference_id"], "user_7");
    assert_eq!(orders[0]["amount_total"], 123456);
}

#[tokio::test]
async fn send_print_shows_a_signed_request_and_sends_nothing() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let to = format!("http://127.0.0.1:{}/api/webhook", free_port());
    let args = [
        "send",
        "checkout.session.completed",
        "--set",
        "data.object.currency=eur",
        "--print",
        "--to",
        &to,
    ];
    let output = run(dir.path(), &args, &[("STRIPE_WEBHOOK_SECRET", SECRET)]).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let printed = text(&output.stdout);
    let (head, body) = printed
        .split_once("\r\n\r\n")
        .expect("headers, then the body");
    assert!(head.starts_with("POST /api/webhook HTTP/1.1\r\n"), "{head}");
    let signature = head
        .lines()
        .find_map(|l| l.strip_prefix("Stripe-Signature: "))
        .expect("a signature");
    let secrets = verify::Secrets::parse(SECRET).expect("the secret");
    let now = harness::now();
    verify::verify(
        body.as_bytes(),
        signature,
        &secrets,
        now,
        std::time::Duration::from_secs(300),
    )
    .expect("the printed signature verifies the printed body");
    let event: Value = serde_json::from_str(body).expect("the body is the event");
    assert_eq!(event["data"]["object"]["currency"], "eur");
    assert!(head.contains(&format!("Content-Length: {}", body.len())));
}

#[tokio::test]
async fn a_printed_request_piped_to_the_router_gets_its_answer_and_the_connection_ends() {
    // What `send --print | nc 127.0.0.1 3000` does: the router must close
    // once it has answered, or nc waits forever.
    let app = spawn_app(ROUTES).await;
    let to = format!("http://{}/api/webhook", app.addr);
    let args = ["send", "checkout.session.expired", "--print", "--to", &to];
    let output = run(app.dir.path(), &args, &[("STRIPE_WEBHOOK_SECRET", SECRET)]).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let request = output.stdout;
    let addr = app.addr;
    let answer = tokio::time::timeout(WAIT, async move {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .expect("connects");
        stream
            .write_all(&request)
            .await
            .expect("writes the request");
        // Read to the end: only a closed connection ends it.
        let mut answer = Vec::new();
        stream
            .read_to_end(&mut answer)
            .await
            .expect("reads the answer");
        answer
    })
    .await
    .expect("the router closes the connection after answering");
    let answer = text(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn send_without_a_secret_names_serve_offline_and_env_local() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let to = format!("http://127.0.0.1:{}/api/webhook", free_port());
    let output = run(
        dir.path(),
        &["send", "checkout.session.completed", "--to", &to],
        &[],
    )
    .await;
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("STRIPE_WEBHOOK_SECRET is not set")
            && stderr.contains("serve --offline")
            && stderr.contains(".env.local"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_taken_admin_port_names_the_flag_and_the_key() {
    let dir = folder(ROUTES);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let admin = taken.local_addr().expect("an address").to_string();
    let listen = format!("127.0.0.1:{}", free_port());
    let args = ["serve", "--listen", &listen, "--admin-listen", &admin];
    let env = [
        ("STRIPE_WEBHOOK_SECRET", SECRET),
        ("STRIPE_SECRET_API_KEY", API_KEY),
    ];
    let output = run(dir.path(), &args, &env).await;
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on {admin} for the admin listener"))
            && stderr.contains("--admin-listen ADDR")
            && stderr.contains("`server.admin_listen`"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_tab_in_the_yaml_suggests_spaces_and_a_secret_line_says_it_is_not_shown() {
    let env = [("STRIPE_WEBHOOK_SECRET", SECRET)];
    let dir = folder("sinks:\n\torders: { type: jsonl, path: a.jsonl }\nroutes: []\n");
    let output = run(dir.path(), &["check"], &env).await;
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(stderr.contains("routes.yaml:2:"), "{stderr}");
    assert!(
        stderr.contains("YAML indents with spaces, never tabs"),
        "{stderr}"
    );

    let dir = folder(
        "sinks:\n  hook: { type: http, url: \"http://127.0.0.1:9/x\", signing_secret: whsec_abc\nroutes: []\n",
    );
    let output = run(dir.path(), &["check"], &env).await;
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("(line not shown: it may hold a secret)") && !stderr.contains("whsec_abc"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_second_serve_on_the_journal_is_refused_naming_the_first() {
    let mut app = spawn_app(ROUTES).await;
    let pid = app.pid();
    let owned = app.env.clone();
    let env: Vec<(&str, &str)> = owned
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let args = ["serve", "--listen", "127.0.0.1:0", "--admin-listen", "off"];
    let output = run(app.dir.path(), &args, &env).await;
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "another stripe-router serve (pid {pid} listening on {}) is using the journal",
            app.addr
        )),
        "{stderr}"
    );
    // The tools meant to run beside it still do.
    app.cli(&["deadletters"]);
    app.cli(&["replay", "--all"]);
    // Once it is gone, its lock goes with it: the file left behind is no
    // obstacle.
    app.kill9();
    let mut again = start(
        app.dir.path(),
        &env,
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "off",
            "--addresses-file",
            ADDRESSES_FILE,
        ],
    );
    wait_addresses(app.dir.path(), &mut again.child, &again.stderr);
}

#[tokio::test]
async fn a_yaml_syntax_error_shows_its_line_and_a_caret() {
    let dir = folder("sinks:\n  orders: { type: jsonl, path: a.jsonl\nroutes: []\n");
    let env = [("STRIPE_WEBHOOK_SECRET", SECRET)];
    for args in [&["check"][..], &["serve", "--admin-listen", "off"][..]] {
        let output = run(dir.path(), args, &env).await;
        assert!(!output.status.success());
        let stderr = text(&output.stderr);
        let want = "routes.yaml:3:7: while parsing a flow mapping, did not find expected ',' or '}'\n    \
                    2 |   orders: { type: jsonl, path: a.jsonl\n    3 | routes: []\n      |       ^";
        assert!(stderr.contains(want), "{args:?}:\n{stderr}");
    }
}
