//! `check` (SPEC §2) through the real binary: `--no-env` as CI runs it,
//! every problem of every stage in one run with its place, warnings printed
//! always and denied on request, and the same warnings and refusals at
//! `serve` start, on a live reload and in the admin `/healthz`.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::harness::{
    Options, ROUTES, SECRET, TestApp, WAIT, run_router as run, serve_command, spawn_app,
    spawn_with, text,
};

/// Writes `routes` as `routes.yaml` in a fresh folder.
fn folder_with(routes: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temp dir");
    std::fs::write(dir.path().join("routes.yaml"), routes).expect("writes routes.yaml");
    dir
}

/// The repository's own routes.yaml.
fn shipped_routes() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("routes.yaml");
    std::fs::read_to_string(path).expect("the shipped routes.yaml")
}

/// A route whose type is a typo: it can never fire.
const TYPO: &str = "sinks: { out: { type: stdout } }\nroutes:\n  - name: paid\n    when: { type: checkout.sessions.completed }\n    emit: event\n    to: [out]\n";

/// Waits until `/healthz` satisfies `accept`, showing the log if it never does.
async fn wait_health(app: &TestApp, accept: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let health = app.health().await;
        if accept(&health) {
            return health;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/healthz never got there: {health}\n{}",
            app.stderr.all().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn warnings_of(health: &Value) -> Vec<String> {
    health["config"]["warnings"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|w| w.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn no_env_passes_the_shipped_routes_without_stripe_variables_and_says_what_it_left_out() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("routes.yaml");
    let shipped = shipped.display().to_string();
    let output = run(
        dir.path(),
        &["check", "--no-env", "--config", &shipped],
        &[],
    )
    .await;
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains(" is valid"), "{stdout}");
    assert!(
        stdout.contains("not checked (--no-env): STRIPE_WEBHOOK_SECRET, STRIPE_SECRET_API_KEY"),
        "{stdout}"
    );
    // No warnings about what CI lacks: --deny-warnings passes too.
    assert_eq!(stderr, "");
    let denied = run(
        dir.path(),
        &["check", "--no-env", "--deny-warnings", "--config", &shipped],
        &[],
    )
    .await;
    assert!(denied.status.success(), "{}", text(&denied.stderr));

    // Without --no-env, the same environment is refused, as serve refuses it.
    let output = run(dir.path(), &["check", "--config", &shipped], &[]).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("STRIPE_SECRET_API_KEY is not set")
            && stderr.contains("environment: STRIPE_WEBHOOK_SECRET is not set"),
        "{stderr}"
    );

    // The shipped file with a typo'd type: still valid, the warning printed
    // with its place, and denied on request.
    let typo = shipped_routes().replace(
        "checkout.session.async_payment_failed",
        "checkout.session.async_payment_faild",
    );
    let dir = folder_with(&typo);
    let output = run(dir.path(), &["check", "--no-env"], &[]).await;
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "warnings do not fail:\n{stderr}");
    assert!(
        stderr.contains("warnings (1):\n  warning: routes.yaml:32:13: route `failed-payments`")
            && stderr.contains("did you mean `checkout.session.async_payment_failed`?"),
        "{stderr}"
    );
    let output = run(dir.path(), &["check", "--no-env", "--deny-warnings"], &[]).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("has 1 warning, and --deny-warnings makes them fail the check"),
        "{stderr}"
    );
}

#[tokio::test]
async fn no_env_allows_unset_variables_and_names_them() {
    let routes = "sinks:\n  hook:\n    type: http\n    url: http://127.0.0.1:4000/orders\n    headers: { Authorization: \"Bearer ${SHIPPING_TOKEN}\" }\nroutes:\n  - name: all\n    when: { type: \"*\" }\n    emit: event\n    to: hook\n";
    let dir = folder_with(routes);
    let output = run(dir.path(), &["check", "--no-env"], &[]).await;
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(stdout.contains("${SHIPPING_TOKEN} (not set)"), "{stdout}");

    let env = [("STRIPE_WEBHOOK_SECRET", "whsec_c2VjcmV0")];
    let output = run(dir.path(), &["check"], &env).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("is not valid (1 problem):")
            && stderr.contains("${SHIPPING_TOKEN} is not set"),
        "{stderr}"
    );
}

#[tokio::test]
async fn one_run_reports_every_stage_each_at_its_key() {
    // Once three rounds: the file's problems, then a duplicate name, then an
    // unknown operator and a type mismatch.
    let routes = "sinks:\n  orders: { type: jsonl, pth: x.jsonl }\n  hook: { type: htp, url: http://x }\n  out: { type: stdout }\nroutes:\n  - name: paid\n    when:\n      type: checkout.session.completed\n      data.object.amount_total: { gtee: 5 }\n      livemode: { lt: \"x\" }\n    emit: order\n    to: [orders, missing]\n  - name: paid\n    when: { type: checkout.session.expired }\n    emit: event\n    to: [out]\n";
    let dir = folder_with(routes);
    let env = [
        ("STRIPE_WEBHOOK_SECRET", "whsec_c2VjcmV0"),
        ("STRIPE_SECRET_API_KEY", "rk_test_51CheckKey00000000"),
    ];
    let output = run(dir.path(), &["check"], &env).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let expected = [
        "routes.yaml is not valid (6 problems):",
        "  routes.yaml:2:26: unknown field `pth`",
        "  routes.yaml:3:17: unknown sink type `htp`",
        "  routes.yaml:9:35: route `paid`: condition `data.object.amount_total`: unknown operator `gtee`",
        "  routes.yaml:10:19: route `paid`: condition `livemode`: `lt` compares numbers, got a string",
        "  routes.yaml:12:18: route `paid` sends to sink `missing`, which is not defined",
        "  routes.yaml:13:11: route name `paid` is used twice",
    ];
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), expected.len(), "{stderr}");
    for (line, start) in lines.iter().zip(expected) {
        assert!(
            line.starts_with(start),
            "`{start}` does not start {line:?}\n{stderr}"
        );
    }
}

#[tokio::test]
async fn a_path_no_event_has_is_a_warning_with_the_path_meant() {
    let routes = "sinks: { out: { type: stdout } }\nroutes:\n  - name: big\n    when:\n      type: checkout.session.completed\n      amount_total: { gte: 10 }\n    emit: event\n    to: [out]\n";
    let dir = folder_with(routes);
    let output = run(dir.path(), &["check", "--no-env"], &[]).await;
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning: routes.yaml:6:7: route `big`: condition `amount_total`")
            && stderr.contains("did you mean `data.object.amount_total`?"),
        "{stderr}"
    );
    let output = run(dir.path(), &["check", "--no-env", "--deny-warnings"], &[]).await;
    assert_eq!(output.status.code(), Some(1));

    // Warnings come with errors too.
    let dir = folder_with(&routes.replace("to: [out]", "to: [ou]"));
    let output = run(dir.path(), &["check", "--no-env"], &[]).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "is not valid (1 problem):\n  routes.yaml:8:10: route `big` sends to sink `ou`"
        ) && stderr.contains("warnings (1):\n  warning: routes.yaml:6:7: route `big`"),
        "{stderr}"
    );
}

#[tokio::test]
async fn serve_logs_the_warnings_check_prints_at_start_and_on_reload() {
    let dir = folder_with(TYPO);
    let output = run(dir.path(), &["check", "--no-env"], &[]).await;
    let checked = text(&output.stderr);
    let warning = checked
        .lines()
        .find_map(|l| l.strip_prefix("  warning: "))
        .unwrap_or_else(|| panic!("no warning:\n{checked}"))
        .to_owned();
    assert!(warning.starts_with("routes.yaml:4:13: "), "{warning}");

    let app = spawn_app(TYPO).await;
    // The same text, a WARN line at start and in the admin status.
    app.stderr.wait_for(WAIT, |l| {
        (l.contains("WARN") && l.contains(&format!("config warning: {warning}"))).then_some(())
    });
    let health = wait_health(&app, |h| h["config"]["version"] == 1).await;
    assert_eq!(warnings_of(&health), vec![warning.clone()]);

    // A live edit with another typo: logged with the new version, shown.
    let edited = TYPO.replace("checkout.sessions.completed", "checkout.session.complete");
    std::fs::write(app.path("routes.yaml"), &edited).expect("edits routes.yaml");
    let health = wait_health(&app, |h| h["config"]["version"] == 2).await;
    let reloaded = warnings_of(&health);
    assert_eq!(reloaded.len(), 1, "{health}");
    assert!(
        reloaded[0].contains("did you mean `checkout.session.completed`?")
            && reloaded[0].contains("`checkout.session.complete`"),
        "{health}"
    );
    app.stderr.wait_for(WAIT, |l| {
        (l.contains("WARN")
            && l.contains("config warning: routes.yaml:4:13")
            && l.contains("`checkout.session.complete`")
            && l.contains("version=2"))
        .then_some(())
    });

    // Fixed: no warnings left.
    let fixed = TYPO.replace("checkout.sessions.completed", "checkout.session.completed");
    std::fs::write(app.path("routes.yaml"), fixed).expect("edits routes.yaml");
    let health = wait_health(&app, |h| h["config"]["version"] == 3).await;
    assert!(warnings_of(&health).is_empty(), "{health}");
}

/// Orders from PaymentIntents: the route matches, then every record fails.
fn orders_from_payment_intents(routes: &str) -> String {
    routes.replace(
        "when: { type: checkout.session.async_payment_failed }",
        "when: { type: [payment_intent.payment_failed, charge.failed] }",
    )
}

#[tokio::test]
async fn emit_order_on_types_that_are_never_sessions_is_refused_by_check_start_and_reload() {
    let routes = orders_from_payment_intents(&shipped_routes());
    assert_ne!(routes, shipped_routes());
    let dir = folder_with(&routes);
    let output = run(dir.path(), &["check", "--no-env"], &[]).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("routes.yaml:33:11: route `failed-payments` emits orders")
            && stderr.contains(
                "(`payment_intent.payment_failed`, `charge.failed`) are never Checkout Session \
                 events: write `emit: event`"
            ),
        "{stderr}"
    );

    // serve refuses to start on it...
    let env = vec![
        (
            "STRIPE_WEBHOOK_SECRET".to_owned(),
            "whsec_c2VjcmV0".to_owned(),
        ),
        (
            "STRIPE_SECRET_API_KEY".to_owned(),
            "rk_test_51CheckKey00000000".to_owned(),
        ),
    ];
    let mut serve = serve_command(dir.path(), &env);
    let output = tokio::task::spawn_blocking(move || serve.output().expect("serve runs"))
        .await
        .expect("serve exits");
    let stderr = text(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("never Checkout Session events"), "{stderr}");

    // ...and a reload to it keeps the running config.
    let app = spawn_app(ROUTES).await;
    let edited = orders_from_payment_intents(
        &std::fs::read_to_string(app.path("routes.yaml")).expect("reads"),
    );
    std::fs::write(app.path("routes.yaml"), edited).expect("edits routes.yaml");
    let health = wait_health(&app, |h| !h["config"]["last_reload_error"].is_null()).await;
    let problems = health["config"]["last_reload_error"]["problems"].to_string();
    assert!(
        problems.contains("route `failed-payments` emits orders")
            && problems.contains("never Checkout Session events"),
        "{health}"
    );
    assert_eq!(health["config"]["version"], 1, "{health}");
}

#[tokio::test]
async fn emit_order_on_a_mixed_type_list_is_refused_at_the_type_by_check_start_and_reload() {
    // Sessions and PaymentIntents in one order route: the PaymentIntents
    // would all be dead letters at run time.
    let mixed = |routes: &str| {
        routes.replace(
            "when: { type: checkout.session.async_payment_failed }",
            "when: { type: [payment_intent.payment_failed, checkout.session.async_payment_failed] }",
        )
    };
    let routes = mixed(&shipped_routes());
    assert_ne!(routes, shipped_routes());
    let dir = folder_with(&routes);
    let output = run(dir.path(), &["check", "--no-env"], &[]).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "routes.yaml:32:20: route `failed-payments` emits orders, which are built from \
             Checkout Sessions, but its type `payment_intent.payment_failed` is never a Checkout \
             Session event"
        ) && stderr.contains("split the route")
            && stderr.contains("`emit: event`"),
        "{stderr}"
    );

    let env = vec![
        ("STRIPE_WEBHOOK_SECRET".to_owned(), SECRET.to_owned()),
        (
            "STRIPE_SECRET_API_KEY".to_owned(),
            "rk_test_51CheckKey00000000".to_owned(),
        ),
    ];
    let mut serve = serve_command(dir.path(), &env);
    let output = tokio::task::spawn_blocking(move || serve.output().expect("serve runs"))
        .await
        .expect("serve exits");
    let stderr = text(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("`payment_intent.payment_failed` is never a Checkout Session event"),
        "{stderr}"
    );

    let app = spawn_app(ROUTES).await;
    let edited = mixed(&std::fs::read_to_string(app.path("routes.yaml")).expect("reads"));
    std::fs::write(app.path("routes.yaml"), edited).expect("edits routes.yaml");
    let health = wait_health(&app, |h| !h["config"]["last_reload_error"].is_null()).await;
    let problems = health["config"]["last_reload_error"]["problems"].to_string();
    assert!(
        problems.contains("`payment_intent.payment_failed` is never a Checkout Session event"),
        "{health}"
    );
    assert_eq!(health["config"]["version"], 1, "{health}");
}

#[tokio::test]
async fn serve_logs_the_environment_warning_check_prints() {
    // A second secret that is no endpoint signing secret: serve takes it,
    // both say it may be wrong.
    let secrets = format!("{SECRET}, not_a_whsec");
    let mut options = Options::new(TYPO);
    for (name, value) in &mut options.env {
        if name == "STRIPE_WEBHOOK_SECRET" {
            value.clone_from(&secrets);
        }
    }
    let dir = folder_with(TYPO);
    let output = run(
        dir.path(),
        &["check"],
        &[("STRIPE_WEBHOOK_SECRET", &secrets)],
    )
    .await;
    let checked = text(&output.stderr);
    assert!(output.status.success(), "{checked}");
    let expected = "STRIPE_WEBHOOK_SECRET: 1 of its secrets do not start with `whsec_`";
    assert!(
        checked.contains(&format!("warning: {expected}")),
        "{checked}"
    );

    let app = spawn_with(options).await;
    app.stderr.wait_for(WAIT, |l| {
        (l.contains("WARN") && l.contains(expected)).then_some(())
    });
    assert!(
        !app.stderr.all().join("\n").contains("not_a_whsec"),
        "a secret is logged"
    );
}

/// A file with nothing to warn about, after `head` (e.g. a `server:` line).
fn plain(head: &str) -> String {
    format!(
        "{head}sinks: {{ out: {{ type: stdout }} }}\nroutes:\n  - name: paid\n    when: {{ type: checkout.session.completed }}\n    emit: event\n    to: [out]\n"
    )
}

/// The `error:`/problem lines about the environment, in one list.
fn mentions(stderr: &str, needles: &[&str]) -> Vec<bool> {
    needles.iter().map(|n| stderr.contains(n)).collect()
}

#[tokio::test]
async fn check_and_serve_report_the_same_environment_problems_all_of_them() {
    let env = [
        ("STRIPE_WEBHOOK_SECRET", "sk_test_abcdefgh1234"),
        ("STRIPE_SECRET_API_KEY", "whsec_zzzz9876"),
    ];
    let secret = "STRIPE_WEBHOOK_SECRET holds an API key";
    let key = "STRIPE_SECRET_API_KEY holds a webhook signing secret";
    let token = "STRIPE_ROUTER_ADMIN_TOKEN is not set";
    for (head, wanted) in [
        ("server: { admin_listen: \"off\" }\n", [true, true, false]),
        (
            "server: { admin_listen: \"0.0.0.0:38999\" }\n",
            [true, true, true],
        ),
    ] {
        let dir = folder_with(&plain(head));
        let check = run(dir.path(), &["check"], &env).await;
        let serve = run(dir.path(), &["serve"], &env).await;
        let (check_err, serve_err) = (text(&check.stderr), text(&serve.stderr));
        assert_eq!(check.status.code(), Some(1), "{check_err}");
        assert_eq!(serve.status.code(), Some(1), "{serve_err}");
        let needles = [secret, key, token];
        assert_eq!(mentions(&check_err, &needles), wanted, "{head}{check_err}");
        assert_eq!(mentions(&serve_err, &needles), wanted, "{head}{serve_err}");
        for stderr in [&check_err, &serve_err] {
            assert!(
                !stderr.contains("STRIPE_SECRET_API_KEY: ")
                    && !stderr.contains("zzzz9876")
                    && !stderr.contains("abcdefgh1234"),
                "{stderr}"
            );
        }
    }
}

#[tokio::test]
async fn check_refuses_paths_serve_cannot_open_at_their_key_and_creates_nothing() {
    let dir = tempfile::tempdir().expect("a temp dir");
    std::fs::create_dir(dir.path().join("adir")).expect("a folder");
    std::fs::write(dir.path().join("afile"), "x").expect("a file");
    let routes = "store: { path: adir }\nsinks:\n  a: { type: jsonl, path: adir }\n  b: { type: jsonl, path: afile/o.jsonl }\nroutes:\n  - name: paid\n    when: { type: checkout.session.completed }\n    emit: event\n    to: [a, b]\n";
    std::fs::write(dir.path().join("routes.yaml"), routes).expect("routes.yaml");
    let listing = || {
        let mut names: Vec<_> = walk(dir.path());
        names.sort();
        names
    };
    let before = listing();
    let output = run(dir.path(), &["check", "--no-env"], &[]).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    for expected in [
        "routes.yaml:1:10: `store.path` ./adir is a folder, not a file: name a file in it, e.g. `./adir/stripe-router.db`",
        "routes.yaml:3:21: `sinks.a.path` ./adir is a folder, not a file: name a file in it, e.g. `./adir/a.jsonl`",
        "routes.yaml:4:21: `sinks.b.path` ./afile/o.jsonl: ./afile is a file, not a folder",
    ] {
        assert!(stderr.contains(expected), "`{expected}` not in\n{stderr}");
    }
    assert_eq!(listing(), before, "check created something");

    // serve refuses the same, at the same places, before opening anything.
    let serve = run(
        dir.path(),
        &["serve", "--admin-listen", "off"],
        &[("STRIPE_WEBHOOK_SECRET", SECRET)],
    )
    .await;
    let serve_err = text(&serve.stderr);
    assert_eq!(serve.status.code(), Some(1), "{serve_err}");
    assert!(
        serve_err.contains("routes.yaml:1:10: `store.path` ./adir is a folder")
            && serve_err.contains("routes.yaml:4:21: `sinks.b.path`"),
        "{serve_err}"
    );
    assert_eq!(listing(), before, "serve created something");

    // A journal below a file.
    std::fs::write(
        dir.path().join("routes.yaml"),
        plain("store: { path: afile/x.db }\n"),
    )
    .expect("routes.yaml");
    let output = run(dir.path(), &["check", "--no-env"], &[]).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "routes.yaml:1:10: `store.path` ./afile/x.db: ./afile is a file, not a folder"
        ),
        "{stderr}"
    );
}

/// Every path below `dir`, relative to it.
fn walk(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(folder) = stack.pop() {
        for entry in std::fs::read_dir(&folder)
            .expect("reads the folder")
            .flatten()
        {
            let path = entry.path();
            found.push(
                path.strip_prefix(dir)
                    .unwrap_or(&path)
                    .display()
                    .to_string(),
            );
            if path.is_dir() {
                stack.push(path);
            }
        }
    }
    found
}

#[tokio::test]
async fn no_env_leaves_a_missing_admin_token_unchecked_and_judges_a_short_one() {
    let dir = folder_with(&plain("server: { admin_listen: \"0.0.0.0:38999\" }\n"));
    let output = run(dir.path(), &["check", "--no-env", "--deny-warnings"], &[]).await;
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("not checked (--no-env): STRIPE_WEBHOOK_SECRET, STRIPE_SECRET_API_KEY, STRIPE_ROUTER_ADMIN_TOKEN (not set)"),
        "{stdout}"
    );
    let short = [("STRIPE_ROUTER_ADMIN_TOKEN", "short")];
    let output = run(
        dir.path(),
        &["check", "--no-env", "--deny-warnings"],
        &short,
    )
    .await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("warning: STRIPE_ROUTER_ADMIN_TOKEN is too short (5 characters)"),
        "{stderr}"
    );
}

#[tokio::test]
async fn denied_warnings_say_so_and_never_that_the_file_is_valid() {
    let dir = folder_with(TYPO);
    let output = run(dir.path(), &["check", "--no-env", "--deny-warnings"], &[]).await;
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(!stdout.contains("is valid"), "{stdout}");
    assert!(
        stdout.contains(
            "routes.yaml has no problems, but 1 warning fail the check (--deny-warnings)"
        ),
        "{stdout}"
    );
    assert!(
        stderr.contains("routes.yaml has 1 warning, and --deny-warnings makes them fail the check"),
        "{stderr}"
    );
}

#[tokio::test]
async fn serve_names_the_key_and_the_next_step_when_a_sink_or_the_journal_cannot_open() {
    // A symbolic link to itself: nothing in the way a look can see, and
    // yet nothing can be opened there.
    let dir = tempfile::tempdir().expect("a temp dir");
    for name in ["sloop", "jloop"] {
        std::os::unix::fs::symlink(name, dir.path().join(name)).expect("a link loop");
    }
    let sink = plain("server: { admin_listen: \"off\" }\n")
        .replace("{ type: stdout }", "{ type: jsonl, path: sloop }");
    std::fs::write(dir.path().join("routes.yaml"), &sink).expect("routes.yaml");
    let env = [("STRIPE_WEBHOOK_SECRET", SECRET)];
    let args = ["serve", "--listen", "127.0.0.1:0"];
    let output = run(dir.path(), &args, &env).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("sink `out` cannot start (`sinks.out.path`)")
            && stderr.contains("choose another `path`"),
        "{stderr}"
    );

    let journal = plain("server: { admin_listen: \"off\" }\nstore: { path: jloop }\n");
    std::fs::write(dir.path().join("routes.yaml"), journal).expect("routes.yaml");
    let output = run(dir.path(), &args, &env).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("(`store.path`): choose another `store.path`"),
        "{stderr}"
    );
}
